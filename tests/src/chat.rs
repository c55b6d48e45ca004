//! Chat as a client meets it: a socket ready for events, a course's or session's room,
//! messages posted over REST, and a room's history read back page by page.

use serde_json::Value;

use crate::{
    Account, Reply, TestServer,
    check::{api, as_client, id_of},
    socket::SocketClient,
};

/// Connects, then waits until the server answers events on the new socket (see
/// [`SocketClient::ready`]: it sends CONNECT a moment before its handlers are in place).
pub async fn connect(srv: &TestServer, who: &Account) -> SocketClient {
    SocketClient::ready(srv.addr, &who.token).await
}

/// The chat room of a course or a live session.
#[track_caller]
pub fn room_of(course_or_session: &Value) -> String {
    course_or_session["roomId"]
        .as_str()
        .unwrap_or_else(|| panic!("no roomId in {course_or_session}"))
        .to_owned()
}

/// `/api/v1/chat/rooms/{room}/messages`: a room's history, and where REST sends go.
pub fn messages_path(room: &str) -> String {
    api(&format!("/chat/rooms/{room}/messages"))
}

/// POSTs `body` as a message to `room` as `who`.
pub async fn post_message(srv: &TestServer, who: &Account, room: &str, body: Value) -> Reply {
    as_client(srv, who).post(&messages_path(room), body).await
}

/// Walks a room's history with `?limit=` and `?before=`, checking each page's cursor.
pub async fn pages(srv: &TestServer, who: &Account, room: &str, limit: u32) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("{}?limit={limit}", messages_path(room));
        if let Some(before) = &before {
            path.push_str(&format!("&before={before}"));
        }
        let data = as_client(srv, who).get(&path).await.data();
        let items = data["items"].as_array().expect("items").clone();
        assert!(items.len() <= limit as usize, "page over its limit");
        let next = data["nextCursor"].as_str().map(str::to_owned);
        let last = items.last().map(|v| id_of(v).to_owned());
        pages.push(items);
        match next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    last.as_ref(),
                    "nextCursor is the id of the page's oldest item"
                );
                before = Some(next);
            }
            None => break,
        }
        assert!(pages.len() < 10_000, "paging never ends");
    }
    pages
}

/// A room's whole history, newest first.
pub async fn history(srv: &TestServer, who: &Account, room: &str) -> Vec<Value> {
    pages(srv, who, room, 100).await.concat()
}
