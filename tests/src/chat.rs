//! Chat as a client meets it: a socket ready for events, a course's or session's room, and
//! messages posted over REST.

use serde_json::Value;

use crate::{
    Account, Reply, TestServer,
    check::{api, as_client},
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
