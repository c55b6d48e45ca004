//! Who is online in which chat room. A user with several tabs counts once and stays online
//! until the last tab leaves. This node's view; several nodes will share it through Redis.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use serde::Serialize;

use crate::domain::{CourseId, RoomId, UserId};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    pub user_id: UserId,
    pub name: String,
}

#[derive(Default)]
pub struct Presence {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, Room>,
    /// socket id → the rooms it joined, for clean-up on disconnect.
    sockets: HashMap<String, HashSet<RoomId>>,
}

struct Room {
    course: CourseId,
    users: HashMap<UserId, (String, HashSet<String>)>,
}

impl Presence {
    /// Adds a socket; true when the user was not online in the room before.
    pub fn join(
        &self,
        room: RoomId,
        course: CourseId,
        user: UserId,
        name: &str,
        socket: &str,
    ) -> bool {
        let mut inner = self.inner.lock().unwrap();
        inner
            .sockets
            .entry(socket.to_owned())
            .or_default()
            .insert(room);
        let entry = inner.rooms.entry(room).or_insert_with(|| Room {
            course,
            users: HashMap::new(),
        });
        let (_, sockets) = entry
            .users
            .entry(user)
            .or_insert_with(|| (name.to_owned(), HashSet::new()));
        let was_online = !sockets.is_empty();
        sockets.insert(socket.to_owned());
        !was_online
    }

    /// Removes a socket from a room; true when that was the user's last tab there.
    pub fn leave(&self, room: RoomId, user: UserId, socket: &str) -> bool {
        let mut inner = self.inner.lock().unwrap();
        if let Some(rooms) = inner.sockets.get_mut(socket) {
            rooms.remove(&room);
            if rooms.is_empty() {
                inner.sockets.remove(socket);
            }
        }
        let Some(entry) = inner.rooms.get_mut(&room) else {
            return false;
        };
        let Some((_, sockets)) = entry.users.get_mut(&user) else {
            return false;
        };
        if !sockets.remove(socket) {
            return false;
        }
        let gone = sockets.is_empty();
        if gone {
            entry.users.remove(&user);
            if entry.users.is_empty() {
                inner.rooms.remove(&room);
            }
        }
        gone
    }

    pub fn rooms_of(&self, socket: &str) -> Vec<RoomId> {
        let inner = self.inner.lock().unwrap();
        inner
            .sockets
            .get(socket)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn is_in(&self, socket: &str, room: RoomId) -> bool {
        let inner = self.inner.lock().unwrap();
        inner.sockets.get(socket).is_some_and(|r| r.contains(&room))
    }

    /// The rooms of `course` where `user` has sockets, with those sockets.
    pub fn user_sockets_in_course(
        &self,
        course: CourseId,
        user: Option<UserId>,
    ) -> Vec<(RoomId, UserId, Vec<String>)> {
        let inner = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for (room_id, room) in &inner.rooms {
            if room.course != course {
                continue;
            }
            for (uid, (_, sockets)) in &room.users {
                if user.is_none_or(|u| u == *uid) {
                    out.push((*room_id, *uid, sockets.iter().cloned().collect()));
                }
            }
        }
        out
    }

    pub fn users(&self, room: RoomId) -> Vec<OnlineUser> {
        let inner = self.inner.lock().unwrap();
        let mut users: Vec<OnlineUser> = inner
            .rooms
            .get(&room)
            .map(|r| {
                r.users
                    .iter()
                    .map(|(id, (name, _))| OnlineUser {
                        user_id: *id,
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_two_tabs_counts_once_until_the_last_leaves() {
        let presence = Presence::default();
        let (room, course, ada) = (RoomId::new(), CourseId::new(), UserId::new());
        assert!(presence.join(room, course, ada, "Ada", "tab1"));
        assert!(!presence.join(room, course, ada, "Ada", "tab2"));
        assert_eq!(presence.users(room).len(), 1);
        assert!(!presence.leave(room, ada, "tab1"));
        assert_eq!(presence.users(room).len(), 1);
        assert!(presence.leave(room, ada, "tab2"));
        assert!(presence.users(room).is_empty());
        assert!(
            !presence.leave(room, ada, "tab2"),
            "leaving twice changes nothing"
        );
        assert!(presence.rooms_of("tab1").is_empty());
    }
}
