//! Who is online in which chat room, and what each room is told about it.
//!
//! A user with several tabs counts once: online from its first socket's join, offline after its
//! last socket leaves or disconnects. A socket that joins gets the room's whole list once (its
//! join acknowledgement); after that the room learns only of changes, as one
//! `chat:presence_diff` per room per batch, built by [`Presence::take_diffs`] and sent by the
//! task running [`Presence::run`]. This is this node's view; several nodes will share it
//! through Redis.
//!
//! # Diffs are net changes, and never contradict a snapshot
//!
//! For every user whose state changed since the last flush, the room is told the state at flush
//! time when it differs from what the room was last told: a user who joins and leaves within
//! one batch (or leaves and comes back) appears in no list. That alone would break a socket
//! whose snapshot (join ack or `chat:online_users` answer) was taken in the middle of such a
//! round trip: it would keep a state nobody corrects. So when a snapshot was taken while a
//! user's state differed from the published one, the final state is sent even though it
//! matches the published one; sockets that never saw the change get a join of someone they
//! already list, or a leave of someone they do not, which changes nothing for them. A
//! snapshot taken by the user itself does not count: its socket leaves with it.
//!
//! Snapshots are delivered, and diffs computed and emitted, under one gate (shared by
//! snapshots, exclusive for a flush): a socket never receives a diff computed before its
//! snapshot, so every diff it receives is news or a harmless repeat.

use std::{
    collections::{HashMap, hash_map::Entry},
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::Serialize;
use socketioxide::socket::Sid;
use tokio::sync::{Notify, RwLock};

use crate::domain::{CourseId, RoomId, UserId};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUser {
    pub user_id: UserId,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct OfflineUser {
    pub user_id: UserId,
}

/// `chat:presence_diff`: the net changes of one room since its previous diff.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceDiff {
    pub room_id: RoomId,
    pub joins: Vec<OnlineUser>,
    pub leaves: Vec<OfflineUser>,
}

pub struct Presence {
    inner: Mutex<Inner>,
    gate: RwLock<()>,
    /// Tells the flushing task that a room has news.
    wake: Notify,
    interval: Duration,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, Room>,
    /// Each socket's joined rooms, for typing checks and clean-up on disconnect.
    sockets: HashMap<Sid, Vec<RoomId>>,
    /// Rooms with pending changes, each once.
    dirty: Vec<RoomId>,
}

struct Room {
    course: CourseId,
    users: HashMap<UserId, Online>,
    /// Users whose state changed since the last flush. Empty exactly when the room is not in
    /// `Inner::dirty`.
    pending: HashMap<UserId, Pending>,
    /// Orders changes and snapshots within the room.
    clock: u64,
    /// The latest snapshot, and the latest one by another user than its taker: enough to
    /// answer "was a snapshot taken by someone else since then" for any user.
    latest: Option<(u64, UserId)>,
    latest_by_other: Option<u64>,
}

struct Online {
    name: String,
    sockets: Vec<Sid>,
}

struct Pending {
    /// Whether the room was last told this user is online.
    published: bool,
    /// The clock when the state moved away from `published`; `None` while it matches.
    diverged_at: Option<u64>,
    /// Someone took a snapshot while the state differed from `published`.
    seen: bool,
}

impl Room {
    fn new(course: CourseId) -> Room {
        Room {
            course,
            users: HashMap::new(),
            pending: HashMap::new(),
            clock: 0,
            latest: None,
            latest_by_other: None,
        }
    }

    fn snapshot_by_other_since(&self, user: UserId, since: u64) -> bool {
        let at = match self.latest {
            Some((at, taker)) if taker != user => Some(at),
            _ => self.latest_by_other,
        };
        at.is_some_and(|at| at > since)
    }

    /// Records that `user` went online or offline; true when the room just became dirty.
    fn changed(&mut self, user: UserId, online: bool) -> bool {
        self.clock += 1;
        let newly_dirty = self.pending.is_empty();
        let mut entry = self.pending.remove(&user).unwrap_or(Pending {
            published: !online,
            diverged_at: None,
            seen: false,
        });
        if online != entry.published {
            entry.diverged_at = Some(self.clock);
        } else if let Some(since) = entry.diverged_at.take() {
            entry.seen |= self.snapshot_by_other_since(user, since);
        }
        self.pending.insert(user, entry);
        newly_dirty
    }

    fn record_snapshot(&mut self, taker: UserId) {
        self.clock += 1;
        match self.latest {
            Some((at, previous)) if previous != taker => {
                self.latest_by_other = Some(at);
            }
            _ => {}
        }
        self.latest = Some((self.clock, taker));
    }

    fn list(&self) -> Vec<OnlineUser> {
        let mut users: Vec<OnlineUser> = self
            .users
            .iter()
            .map(|(id, online)| OnlineUser {
                user_id: *id,
                name: online.name.clone(),
            })
            .collect();
        users.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.user_id.cmp(&b.user_id)));
        users
    }
}

impl Inner {
    fn mark_dirty(&mut self, room: RoomId, newly: bool) -> bool {
        if newly {
            self.dirty.push(room);
        }
        newly
    }

    /// Takes `socket` out of `room`; true when the room just became dirty.
    fn remove(&mut self, room_id: RoomId, user: UserId, socket: Sid) -> bool {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        let Entry::Occupied(mut online) = room.users.entry(user) else {
            return false;
        };
        let sockets = &mut online.get_mut().sockets;
        let Some(at) = sockets.iter().position(|s| *s == socket) else {
            return false;
        };
        sockets.swap_remove(at);
        if !sockets.is_empty() {
            return false;
        }
        online.remove();
        let newly = room.changed(user, false);
        self.mark_dirty(room_id, newly)
    }

    fn forget_socket_room(&mut self, socket: Sid, room: RoomId) {
        if let Entry::Occupied(mut rooms) = self.sockets.entry(socket) {
            rooms.get_mut().retain(|r| *r != room);
            if rooms.get().is_empty() {
                rooms.remove();
            }
        }
    }
}

impl Presence {
    /// `interval` is the longest a change waits before its room is told.
    pub fn new(interval: Duration) -> Presence {
        Presence {
            inner: Mutex::default(),
            gate: RwLock::new(()),
            wake: Notify::new(),
            interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `socket` (of `user`) to `room` and hands `deliver` the room's list including it.
    /// `deliver` runs before any later diff can be emitted: it is where the socket joins the
    /// broadcast room and the acknowledgement goes out.
    pub async fn join<R>(
        &self,
        room_id: RoomId,
        course: CourseId,
        user: UserId,
        name: &str,
        socket: Sid,
        deliver: impl FnOnce(Vec<OnlineUser>) -> R,
    ) -> R {
        let _gate = self.gate.read().await;
        let (list, wake) = {
            let mut inner = self.lock();
            let rooms = inner.sockets.entry(socket).or_default();
            if !rooms.contains(&room_id) {
                rooms.push(room_id);
            }
            let room = inner
                .rooms
                .entry(room_id)
                .or_insert_with(|| Room::new(course));
            let online = room.users.entry(user).or_insert_with(|| Online {
                name: name.to_owned(),
                sockets: Vec::new(),
            });
            let first = online.sockets.is_empty();
            if !online.sockets.contains(&socket) {
                online.sockets.push(socket);
            }
            let newly = first && room.changed(user, true);
            room.record_snapshot(user);
            let list = room.list();
            (list, inner.mark_dirty(room_id, newly))
        };
        if wake {
            self.wake.notify_one();
        }
        deliver(list)
    }

    /// The room's list for `socket`, handed to `deliver` in the same order as a join's.
    pub async fn snapshot<R>(
        &self,
        room_id: RoomId,
        user: UserId,
        socket: Sid,
        deliver: impl FnOnce(Vec<OnlineUser>) -> R,
    ) -> R {
        let _gate = self.gate.read().await;
        let list = {
            let mut inner = self.lock();
            let joined = inner
                .sockets
                .get(&socket)
                .is_some_and(|rooms| rooms.contains(&room_id));
            match inner.rooms.get_mut(&room_id) {
                Some(room) => {
                    // Only a socket in the room receives diffs, so only its view must be
                    // kept consistent.
                    if joined {
                        room.record_snapshot(user);
                    }
                    room.list()
                }
                None => Vec::new(),
            }
        };
        deliver(list)
    }

    /// Takes `socket` out of `room`; the room hears of it when that was the user's last tab.
    pub fn leave(&self, room: RoomId, user: UserId, socket: Sid) {
        let wake = {
            let mut inner = self.lock();
            inner.forget_socket_room(socket, room);
            inner.remove(room, user, socket)
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes a disconnected socket out of every room it had joined.
    pub fn disconnect(&self, user: UserId, socket: Sid) {
        let wake = {
            let mut inner = self.lock();
            let rooms = inner.sockets.remove(&socket).unwrap_or_default();
            let mut wake = false;
            for room in rooms {
                wake |= inner.remove(room, user, socket);
            }
            wake
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes every socket of `user` (of everyone when `None`) out of the rooms of `course`;
    /// returns them so that the caller takes them out of the broadcast rooms too.
    pub fn evict(&self, course: CourseId, user: Option<UserId>) -> Vec<(RoomId, Sid)> {
        let mut wake = false;
        let mut evicted = Vec::new();
        {
            let mut inner = self.lock();
            let targets: Vec<(RoomId, UserId, Sid)> = inner
                .rooms
                .iter()
                .filter(|(_, room)| room.course == course)
                .flat_map(|(room_id, room)| {
                    room.users
                        .iter()
                        .filter(|(uid, _)| user.is_none_or(|u| u == **uid))
                        .flat_map(move |(uid, online)| {
                            online.sockets.iter().map(move |s| (*room_id, *uid, *s))
                        })
                })
                .collect();
            for (room, uid, socket) in targets {
                inner.forget_socket_room(socket, room);
                wake |= inner.remove(room, uid, socket);
                evicted.push((room, socket));
            }
        }
        if wake {
            self.wake.notify_one();
        }
        evicted
    }

    pub fn is_in(&self, socket: Sid, room: RoomId) -> bool {
        self.lock()
            .sockets
            .get(&socket)
            .is_some_and(|rooms| rooms.contains(&room))
    }

    /// The room's online users, sorted by name.
    pub fn users(&self, room: RoomId) -> Vec<OnlineUser> {
        self.lock()
            .rooms
            .get(&room)
            .map(Room::list)
            .unwrap_or_default()
    }

    /// The net changes of every room with news since the previous call; rooms whose changes
    /// cancelled out are left out.
    pub fn take_diffs(&self) -> Vec<PresenceDiff> {
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        let mut diffs = Vec::with_capacity(dirty.len());
        for room_id in dirty {
            let Some(room) = inner.rooms.get_mut(&room_id) else {
                continue;
            };
            let (mut joins, mut leaves) = (Vec::new(), Vec::new());
            for (user, change) in std::mem::take(&mut room.pending) {
                match room.users.get(&user) {
                    Some(online) if !change.published || change.seen => joins.push(OnlineUser {
                        user_id: user,
                        name: online.name.clone(),
                    }),
                    None if change.published || change.seen => {
                        leaves.push(OfflineUser { user_id: user })
                    }
                    _ => {}
                }
            }
            // Snapshots before this flush cannot be contradicted by later diffs.
            room.latest = None;
            room.latest_by_other = None;
            if room.users.is_empty() {
                inner.rooms.remove(&room_id);
            }
            if joins.is_empty() && leaves.is_empty() {
                continue;
            }
            joins.sort_unstable();
            leaves.sort_unstable();
            diffs.push(PresenceDiff {
                room_id,
                joins,
                leaves,
            });
        }
        diffs
    }

    /// Sends each room its diff, at most `interval` after its first pending change, for as long
    /// as the returned future runs. An idle server does not wake up.
    pub async fn run<F, Fut>(self: Arc<Self>, emit: F)
    where
        F: Fn(PresenceDiff) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(self.interval).await;
            let _gate = self.gate.write().await;
            for diff in self.take_diffs() {
                emit(diff).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        presence: Presence,
        room: RoomId,
        course: CourseId,
    }

    fn sid() -> Sid {
        Sid::new()
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                presence: Presence::new(Duration::from_millis(10)),
                room: RoomId::new(),
                course: CourseId::new(),
            }
        }

        async fn join(&self, user: UserId, name: &str, socket: Sid) -> Vec<UserId> {
            self.presence
                .join(self.room, self.course, user, name, socket, |list| {
                    list.into_iter().map(|u| u.user_id).collect()
                })
                .await
        }

        fn leave(&self, user: UserId, socket: Sid) {
            self.presence.leave(self.room, user, socket);
        }

        /// The one diff of the fixture's room, as sorted (joins, leaves), or None.
        fn diff(&self) -> Option<(Vec<UserId>, Vec<UserId>)> {
            let mut diffs = self.presence.take_diffs();
            assert!(diffs.len() <= 1, "one room, one diff: {diffs:?}");
            diffs.pop().map(|d| {
                assert_eq!(d.room_id, self.room);
                (
                    d.joins.iter().map(|u| u.user_id).collect(),
                    d.leaves.iter().map(|u| u.user_id).collect(),
                )
            })
        }
    }

    fn sorted(mut ids: Vec<UserId>) -> Vec<UserId> {
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_user_with_two_tabs_counts_once_until_the_last_leaves() {
        let f = Fixture::new();
        let ada = UserId::new();
        let (tab1, tab2) = (sid(), sid());
        assert_eq!(f.join(ada, "Ada", tab1).await, vec![ada]);
        assert_eq!(f.diff(), Some((vec![ada], vec![])));
        assert_eq!(f.join(ada, "Ada", tab2).await, vec![ada]);
        assert_eq!(f.diff(), None, "a second tab is no news");
        f.leave(ada, tab1);
        assert_eq!(f.diff(), None, "A is still online through tab 2");
        assert_eq!(f.presence.users(f.room).len(), 1);
        f.leave(ada, tab2);
        assert_eq!(f.diff(), Some((vec![], vec![ada])));
        assert!(f.presence.users(f.room).is_empty());
        f.leave(ada, tab2);
        assert_eq!(f.diff(), None, "leaving twice changes nothing");
        assert!(!f.presence.is_in(tab1, f.room));
    }

    #[tokio::test]
    async fn changes_within_one_batch_are_net() {
        let f = Fixture::new();
        let (ada, bob, cy) = (UserId::new(), UserId::new(), UserId::new());
        let (a, b, c) = (sid(), sid(), sid());
        f.join(bob, "Bob", b).await;
        f.join(cy, "Cy", c).await;
        f.diff();
        // Ada comes and goes; Bob goes and comes back; Cy goes.
        f.join(ada, "Ada", a).await;
        f.leave(ada, a);
        f.leave(bob, b);
        let b2 = sid();
        f.join(bob, "Bob", b2).await;
        f.leave(cy, c);
        // Bob's own ack saw Bob back online, which nobody else saw differently.
        assert_eq!(f.diff(), Some((vec![], vec![cy])));
    }

    #[tokio::test]
    async fn a_snapshot_during_a_round_trip_gets_the_final_state() {
        let f = Fixture::new();
        let (ada, bob, cy) = (UserId::new(), UserId::new(), UserId::new());
        let (a, b) = (sid(), sid());
        f.join(bob, "Bob", b).await;
        f.diff();
        // Ada joins; Cy's ack lists her; she leaves again in the same batch. Cy must hear it.
        f.join(ada, "Ada", a).await;
        assert_eq!(
            sorted(f.join(cy, "Cy", sid()).await),
            sorted(vec![ada, bob, cy])
        );
        f.leave(ada, a);
        assert_eq!(f.diff(), Some((vec![cy], vec![ada])));

        // Bob leaves; Cy asks who is online (no Bob); Bob comes back: Cy must hear it.
        f.leave(bob, b);
        let cy_socket = {
            let inner = f.presence.lock();
            inner.rooms[&f.room].users[&cy].sockets[0]
        };
        let listed = f
            .presence
            .snapshot(f.room, cy, cy_socket, |list| {
                list.into_iter().map(|u| u.user_id).collect::<Vec<_>>()
            })
            .await;
        assert_eq!(listed, vec![cy]);
        f.join(bob, "Bob", sid()).await;
        assert_eq!(f.diff(), Some((vec![bob], vec![])));
    }

    #[tokio::test]
    async fn a_snapshot_by_a_socket_outside_the_room_changes_nothing() {
        let f = Fixture::new();
        let (ada, bob) = (UserId::new(), UserId::new());
        let a = sid();
        f.join(bob, "Bob", sid()).await;
        f.diff();
        f.join(ada, "Ada", a).await;
        f.presence.snapshot(f.room, bob, sid(), |_| ()).await;
        f.leave(ada, a);
        assert_eq!(f.diff(), None);
    }

    #[tokio::test]
    async fn disconnect_and_eviction_go_through_the_diffs() {
        let f = Fixture::new();
        let other = RoomId::new();
        let (ada, bob) = (UserId::new(), UserId::new());
        let (a, b) = (sid(), sid());
        f.join(ada, "Ada", a).await;
        f.join(bob, "Bob", b).await;
        f.presence
            .join(other, f.course, ada, "Ada", a, |_| ())
            .await;
        f.presence.take_diffs();

        f.presence.disconnect(ada, a);
        let mut diffs = f.presence.take_diffs();
        diffs.sort_by_key(|d| d.room_id);
        assert_eq!(diffs.len(), 2, "both of Ada's rooms hear it: {diffs:?}");
        assert!(
            diffs
                .iter()
                .all(|d| d.leaves == vec![OfflineUser { user_id: ada }])
        );
        assert!(f.presence.users(other).is_empty());

        let evicted = f.presence.evict(f.course, Some(bob));
        assert_eq!(evicted, vec![(f.room, b)]);
        assert_eq!(f.diff(), Some((vec![], vec![bob])));
        assert!(!f.presence.is_in(b, f.room));
        assert!(
            f.presence.lock().rooms.is_empty(),
            "empty rooms are dropped"
        );
        assert!(f.presence.lock().sockets.is_empty());
    }

    #[tokio::test]
    async fn the_flushing_task_sends_each_room_one_diff_per_batch() {
        let presence = Arc::new(Presence::new(Duration::from_millis(20)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(presence.clone().run(move |diff| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(diff);
            }
        }));
        let (room, course) = (RoomId::new(), CourseId::new());
        let users: Vec<UserId> = (0..20).map(|_| UserId::new()).collect();
        for user in &users {
            presence
                .join(room, course, *user, "someone", sid(), |_| ())
                .await;
        }
        let diff = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a diff within the interval")
            .expect("the task runs");
        let mut joined: Vec<UserId> = diff.joins.iter().map(|u| u.user_id).collect();
        while joined.len() < users.len() {
            let more = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("the rest of the burst")
                .expect("the task runs");
            joined.extend(more.joins.iter().map(|u| u.user_id));
        }
        assert_eq!(sorted(joined), sorted(users));
        task.abort();
    }
}
