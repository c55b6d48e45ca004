//! What the sections share: servers, the cast of students and courses, message paths and
//! shapes, acknowledgements, sending and reading over the socket and REST, presence diffs,
//! sessions and search.

use std::{collections::HashSet, time::Duration};

use lyceum::config::Config;
use lyceum_tests::{
    Account, Backend, Reply, TestServer,
    chat::{post_message, room_of},
    check::{api, as_client, assert_keys, id_of},
    socket::SocketClient,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

pub use lyceum_tests::chat::{history, pages};

/// How long an expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to listen for an event that must not come.
pub const QUIET: Duration = Duration::from_millis(400);

pub const MESSAGE_KEYS: [&str; 12] = [
    "attachments",
    "clientId",
    "content",
    "createdAt",
    "deletedAt",
    "editedAt",
    "flagged",
    "id",
    "replyTo",
    "roomId",
    "senderId",
    "senderName",
];

/// A server with the default configuration (but a small PostgreSQL pool).
pub async fn start(backend: Backend) -> TestServer {
    start_adjusted(backend, |_| {}).await
}

/// A server with the default plugins, whose moderation adds no rate limit to the server's
/// own, and the settings `adjust` changes (and a small PostgreSQL pool).
pub async fn start_adjusted(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_small(backend, adjust).await
}

/// A server where no rate limit gets in the way of a test's own pace.
pub async fn fast_server(backend: Backend) -> TestServer {
    start_adjusted(backend, |c| {
        c.chat_rate_burst = 1000;
        c.chat_rate_per_second = 1000.0;
    })
    .await
}

/// The cast most tests share: three students and two courses. A and B are enrolled in
/// course 1, B and C in course 2, so A reads only room 1, C only room 2 and B both.
pub struct World {
    pub t1: Account,
    pub c1: Value,
    pub r1: String,
    pub t2: Account,
    pub r2: String,
    pub a: Account,
    pub b: Account,
    pub c: Account,
}

pub async fn world(srv: &TestServer) -> World {
    let (t1, c1) = srv.course().await;
    let (t2, c2) = srv.course().await;
    let a = srv.register("student").await;
    let b = srv.register("student").await;
    let c = srv.register("student").await;
    srv.enroll(&a, &c1).await;
    srv.enroll(&b, &c1).await;
    srv.enroll(&b, &c2).await;
    srv.enroll(&c, &c2).await;
    let (r1, r2) = (room_of(&c1), room_of(&c2));
    assert_ne!(r1, r2);
    World {
        t1,
        c1,
        r1,
        t2,
        r2,
        a,
        b,
        c,
    }
}

pub fn message_path(id: &str) -> String {
    api(&format!("/chat/messages/{id}"))
}

fn uuid_of(value: &Value) -> Uuid {
    Uuid::parse_str(id_of(value)).expect("a uuid")
}

pub fn fresh_client_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A fresh message as the contract shapes it.
#[track_caller]
pub fn assert_message(message: &Value, room: &str, sender: &Account, content: &str) {
    assert_keys(message, &MESSAGE_KEYS);
    assert_eq!(
        uuid_of(message).get_version_num(),
        7,
        "ids are UUIDv7: {message}"
    );
    assert_eq!(message["roomId"], room, "{message}");
    assert_eq!(message["senderId"], sender.id.as_str(), "{message}");
    assert_eq!(message["senderName"], sender.name.as_str(), "{message}");
    assert_eq!(message["content"], content, "{message}");
    assert_eq!(message["attachments"], json!([]), "{message}");
    assert_eq!(message["flagged"], false, "{message}");
    assert_eq!(message["replyTo"], Value::Null, "{message}");
    assert_eq!(message["editedAt"], Value::Null, "{message}");
    assert_eq!(message["deletedAt"], Value::Null, "{message}");
    let created = message["createdAt"].as_str().expect("createdAt");
    assert!(created.ends_with('Z'), "createdAt is not UTC: {created}");
    chrono::DateTime::parse_from_rfc3339(created).expect("createdAt is RFC 3339");
}

/// Asserts a successful acknowledgement and returns it.
#[track_caller]
pub fn ok(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "expected an ok ack, got {ack}");
    ack
}

/// Asserts a failed acknowledgement with `code` and returns its `error`.
#[track_caller]
pub fn refused<'a>(ack: &'a Value, code: &str) -> &'a Value {
    assert_eq!(
        (&ack["ok"], ack["error"]["code"].as_str()),
        (&json!(false), Some(code)),
        "ack: {ack}"
    );
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {ack}"
    );
    &ack["error"]
}

/// Asserts a VALIDATION_FAILED reply naming `field`.
#[track_caller]
pub fn assert_field(reply: &Reply, field: &str) {
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), field, "body: {}", reply.body);
}

/// Joins `room`, asserting success; returns the ack.
pub async fn join(socket: &SocketClient, room: &str) -> Value {
    let ack = socket
        .emit_ack("chat:join_room", json!({ "roomId": room }))
        .await;
    ok(&ack);
    assert_eq!(ack["roomId"], room, "join ack: {ack}");
    ack
}

/// Sends over the socket with a fresh clientId; returns the acked message.
pub async fn say(socket: &SocketClient, room: &str, content: &str) -> Value {
    say_with_id(socket, room, content, &fresh_client_id()).await
}

pub async fn say_with_id(
    socket: &SocketClient,
    room: &str,
    content: &str,
    client_id: &str,
) -> Value {
    let ack = socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": room, "content": content, "clientId": client_id }),
        )
        .await;
    ok(&ack)["message"].clone()
}

/// Sends over REST, asserting 201; returns the message.
pub async fn posted(srv: &TestServer, who: &Account, room: &str, content: &str) -> Value {
    let reply = post_message(
        srv,
        who,
        room,
        json!({ "content": content, "clientId": fresh_client_id() }),
    )
    .await;
    assert_eq!(reply.status, 201, "send: {}", reply.body);
    reply.data()
}

#[track_caller]
pub fn assert_newest_first(items: &[Value]) {
    for pair in items.windows(2) {
        assert!(
            uuid_of(&pair[0]) > uuid_of(&pair[1]),
            "not strictly newest first: {} then {}",
            pair[0]["id"],
            pair[1]["id"]
        );
    }
}

/// The sorted user ids of an `onlineUsers`/`users` list.
pub fn user_ids(users: &Value) -> Vec<String> {
    let mut ids: Vec<String> = users
        .as_array()
        .unwrap_or_else(|| panic!("{users} is not a list"))
        .iter()
        .map(|u| {
            assert_keys(u, &["name", "userId"]);
            u["userId"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

pub fn ids_of(accounts: &[&Account]) -> Vec<String> {
    let mut ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    ids
}

/// A presence diff as its sorted `(joins, leaves)` user ids, after checking its shape.
pub type Diff = (Vec<String>, Vec<String>);

#[track_caller]
pub fn diff_of(diff: &Value) -> Diff {
    assert_keys(diff, &["joins", "leaves", "roomId"]);
    let mut leaves: Vec<String> = diff["leaves"]
        .as_array()
        .unwrap_or_else(|| panic!("leaves is not a list: {diff}"))
        .iter()
        .map(|u| {
            assert_keys(u, &["userId"]);
            u["userId"].as_str().unwrap().to_owned()
        })
        .collect();
    leaves.sort();
    (user_ids(&diff["joins"]), leaves)
}

/// The next `chat:presence_diff`, which must be about `room`.
pub async fn next_diff(socket: &mut SocketClient, room: &str) -> Diff {
    let diff = socket.expect_event("chat:presence_diff", WAIT).await;
    assert_eq!(diff["roomId"], room, "{diff}");
    diff_of(&diff)
}

pub async fn new_session(srv: &TestServer, teacher: &Account, course: &Value) -> Value {
    let reply = as_client(srv, teacher)
        .post(
            &api(&format!("/courses/{}/sessions", id_of(course))),
            json!({ "title": "Office hours" }),
        )
        .await;
    assert_eq!(reply.status, 201, "schedule: {}", reply.body);
    reply.data()
}

pub async fn search(srv: &TestServer, who: &Account, params: &[(&str, &str)]) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            client
                .request(Method::GET, &api("/chat/search"))
                .query(params),
        )
        .await
}

pub fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}
