//! Chat, per the Chat and Socket.IO sections of the contract: course rooms and live-session
//! side chats over Socket.IO and REST, fan-out, presence, typing notices, idempotent resends,
//! edits and deletes, the moderation slot, limits, history paging, search, malformed input and
//! bursts.
//!
//! Most tests share one cast: three students and two courses. A and B are enrolled in course 1,
//! B and C in course 2, so A reads only room 1, C only room 2 and B both.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::future::join_all;
use lyceum::config::Config;
use lyceum_plugin_runtime::fixtures;
use lyceum_tests::{
    Account, Backend, Reply, TestServer, backend_tests,
    check::{api, as_client, assert_keys, id_of},
    socket::SocketClient,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

backend_tests!(
    events_emitted_right_after_connecting_are_answered,
    messages_reach_their_room_sender_included_and_no_other_room,
    outsiders_can_neither_join_nor_send_nor_read_and_admins_can,
    a_sessions_side_chat_is_a_room_of_its_own_for_the_course_members,
    typing_reaches_the_others_but_never_the_sender_or_its_other_tabs,
    presence_counts_a_user_once_across_tabs_until_the_last_tab_goes,
    presence_diffs_are_net_per_batch_and_never_contradict_an_ack,
    a_burst_of_20_joins_reaches_the_room_as_a_few_diffs,
    a_resend_with_the_same_client_id_returns_the_first_message_and_broadcasts_nothing,
    client_ids_are_required_on_the_socket_optional_over_rest_and_at_most_64_characters,
    content_must_be_non_blank_and_within_the_configured_length,
    sending_too_fast_is_rate_limited_with_a_retry_delay,
    only_the_sender_edits_and_the_room_sees_the_update,
    sender_instructor_and_admin_delete_leaving_a_tombstone,
    the_moderation_plugin_rejects_masks_and_flags_on_send_and_edit,
    a_failing_moderation_plugin_fails_closed_or_open_as_configured,
    history_pages_newest_first_without_skips_or_repeats_under_concurrent_sends,
    search_ranks_matches_within_readable_rooms_and_forgets_deleted_messages,
    hostile_search_syntax_is_never_a_server_error,
    malformed_socket_payloads_get_error_acks_and_the_socket_stays_usable,
    an_oversized_socket_payload_is_refused_and_the_server_keeps_serving,
    a_burst_of_200_messages_reaches_every_member_exactly_once_and_history,
    removing_an_enrollment_cuts_chat_access_at_once,
    rest_chat_endpoints_answer_the_contract_error_codes,
    attachments_carry_the_file_until_it_is_deleted_and_then_say_so,
);

#[path = "chat/capacity.rs"]
mod capacity;

// ---------------------------------------------------------------------------------------------
// Helpers

/// How long an expected event may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long to listen for an event that must not come.
const QUIET: Duration = Duration::from_millis(400);
/// A well-formed UUIDv7 that names nothing.
const UNKNOWN_ID: &str = "0190a000-0000-7000-8000-000000000000";

const MESSAGE_KEYS: [&str; 12] = [
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

/// Word lists for each of the plugin's three actions.
const WORD_LISTS: &str = r#"
[chat]
failure = "fail-closed"

[[chat.plugins]]
source = "builtin:chat-moderation"

[[chat.plugins.config.lists]]
name = "banned"
action = "reject"
words = ["forbiddenword"]
code = "banned_word"
reason = "That word is not allowed here."

[[chat.plugins.config.lists]]
name = "masked"
action = "mask"
words = ["darn"]

[[chat.plugins.config.lists]]
name = "watch"
action = "flag"
words = ["cheating"]
"#;

/// A stopped server's database pool is never dropped (the chat service and the Socket.IO
/// state hold each other), so its idle connections stay open until the test process exits.
/// On PostgreSQL they all count against one `max_connections`: each server here keeps a
/// small pool.
fn small_pool(backend: Backend, config: &mut Config) {
    if backend == Backend::Postgres {
        config.db_max_connections = 3;
    }
}

/// A server with the default configuration (but a small PostgreSQL pool).
async fn start(backend: Backend) -> TestServer {
    start_adjusted(backend, |_| {}).await
}

/// A server with the default plugins, whose moderation adds no rate limit to the server's
/// own, and the settings `adjust` changes (and a small PostgreSQL pool).
async fn start_adjusted(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(backend, |config| {
        small_pool(backend, config);
        adjust(config);
    })
    .await
}

/// Starts a server whose `plugins.toml` (written into the server's own temp dir) is `plugins`.
async fn start_with_plugins(
    backend: Backend,
    plugins: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let text = plugins.to_owned();
    TestServer::start_with(backend, move |config| {
        small_pool(backend, config);
        let path = config
            .data_dir
            .parent()
            .expect("the server's temp dir")
            .join("plugins.toml");
        std::fs::write(&path, text).expect("plugins.toml written");
        config.plugins_config = path;
        adjust(config);
    })
    .await
}

/// A server where no rate limit gets in the way of a test's own pace.
async fn fast_server(backend: Backend) -> TestServer {
    start_adjusted(backend, |c| {
        c.chat_rate_burst = 1000;
        c.chat_rate_per_second = 1000.0;
    })
    .await
}

struct World {
    t1: Account,
    c1: Value,
    r1: String,
    t2: Account,
    r2: String,
    a: Account,
    b: Account,
    c: Account,
}

async fn world(srv: &TestServer) -> World {
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

fn room_of(course_or_session: &Value) -> String {
    course_or_session["roomId"]
        .as_str()
        .unwrap_or_else(|| panic!("no roomId in {course_or_session}"))
        .to_owned()
}

fn messages_path(room: &str) -> String {
    api(&format!("/chat/rooms/{room}/messages"))
}

fn message_path(id: &str) -> String {
    api(&format!("/chat/messages/{id}"))
}

fn uuid_of(value: &Value) -> Uuid {
    Uuid::parse_str(id_of(value)).expect("a uuid")
}

fn fresh_client_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A fresh message as the contract shapes it.
#[track_caller]
fn assert_message(message: &Value, room: &str, sender: &Account, content: &str) {
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
fn ok(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "expected an ok ack, got {ack}");
    ack
}

/// Asserts a failed acknowledgement with `code` and returns its `error`.
#[track_caller]
fn refused<'a>(ack: &'a Value, code: &str) -> &'a Value {
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

/// Asserts a VALIDATION_FAILED acknowledgement naming `field`.
#[track_caller]
fn refused_field(ack: &Value, field: &str) {
    let error = refused(ack, "VALIDATION_FAILED");
    assert_eq!(error["details"]["field"], field, "ack: {ack}");
}

/// Asserts a VALIDATION_FAILED reply naming `field`.
#[track_caller]
fn assert_field(reply: &Reply, field: &str) {
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), field, "body: {}", reply.body);
}

/// Connects, then waits until the server answers events on the new socket.
///
/// The server sends CONNECT before its event handlers are registered (see
/// [`events_emitted_right_after_connecting_are_answered`]); tests of other behaviour probe with
/// a harmless event until one is answered, so that race does not make them flaky.
async fn connect(srv: &TestServer, who: &Account) -> SocketClient {
    SocketClient::ready(srv.addr, &who.token).await
}

/// Joins `room`, asserting success; returns the ack.
async fn join(socket: &SocketClient, room: &str) -> Value {
    let ack = socket
        .emit_ack("chat:join_room", json!({ "roomId": room }))
        .await;
    ok(&ack);
    assert_eq!(ack["roomId"], room, "join ack: {ack}");
    ack
}

/// Sends over the socket with a fresh clientId; returns the acked message.
async fn say(socket: &SocketClient, room: &str, content: &str) -> Value {
    say_with_id(socket, room, content, &fresh_client_id()).await
}

async fn say_with_id(socket: &SocketClient, room: &str, content: &str, client_id: &str) -> Value {
    let ack = socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": room, "content": content, "clientId": client_id }),
        )
        .await;
    ok(&ack)["message"].clone()
}

async fn post_message(srv: &TestServer, who: &Account, room: &str, body: Value) -> Reply {
    as_client(srv, who).post(&messages_path(room), body).await
}

/// Sends over REST, asserting 201; returns the message.
async fn posted(srv: &TestServer, who: &Account, room: &str, content: &str) -> Value {
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

/// Walks a room's history with `?limit=` and `?before=`, checking each page's cursor.
async fn pages(srv: &TestServer, who: &Account, room: &str, limit: u32) -> Vec<Vec<Value>> {
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
async fn history(srv: &TestServer, who: &Account, room: &str) -> Vec<Value> {
    pages(srv, who, room, 100).await.concat()
}

#[track_caller]
fn assert_newest_first(items: &[Value]) {
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
fn user_ids(users: &Value) -> Vec<String> {
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

fn ids_of(accounts: &[&Account]) -> Vec<String> {
    let mut ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    ids
}

/// A presence diff as its sorted `(joins, leaves)` user ids, after checking its shape.
type Diff = (Vec<String>, Vec<String>);

#[track_caller]
fn diff_of(diff: &Value) -> Diff {
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
async fn next_diff(socket: &mut SocketClient, room: &str) -> Diff {
    let diff = socket.expect_event("chat:presence_diff", WAIT).await;
    assert_eq!(diff["roomId"], room, "{diff}");
    diff_of(&diff)
}

/// The next `n` presence diffs, which must be about `n` different rooms, by room.
async fn diffs_by_room(socket: &mut SocketClient, n: usize) -> HashMap<String, Diff> {
    let mut rooms = HashMap::new();
    for _ in 0..n {
        let diff = socket.expect_event("chat:presence_diff", WAIT).await;
        let room = diff["roomId"].as_str().expect("roomId").to_owned();
        let previous = rooms.insert(room, diff_of(&diff));
        assert!(previous.is_none(), "two diffs for one room: {diff}");
    }
    rooms
}

/// A server whose rooms hear of presence changes within `interval`.
async fn presence_server(backend: Backend, interval: Duration) -> TestServer {
    TestServer::start_with(backend, |config| {
        small_pool(backend, config);
        config.presence_batch_interval = interval;
    })
    .await
}

async fn new_session(srv: &TestServer, teacher: &Account, course: &Value) -> Value {
    let reply = as_client(srv, teacher)
        .post(
            &api(&format!("/courses/{}/sessions", id_of(course))),
            json!({ "title": "Office hours" }),
        )
        .await;
    assert_eq!(reply.status, 201, "schedule: {}", reply.body);
    reply.data()
}

async fn search(srv: &TestServer, who: &Account, params: &[(&str, &str)]) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            client
                .request(Method::GET, &api("/chat/search"))
                .query(params),
        )
        .await
}

/// The ids of a successful search, in order.
#[track_caller]
fn found(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "search: {}", reply.body);
    reply.data()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| id_of(v).to_owned())
        .collect()
}

fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Fan-out

/// Browser clients join their rooms in their `connect` handler, the moment CONNECT arrives.
async fn events_emitted_right_after_connecting_are_answered(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let room = room_of(&course);
    let attempts = join_all((0..100).map(|_| async {
        let socket = SocketClient::with_token(srv.addr, &teacher.token).await;
        let ack = socket
            .try_emit_ack("chat:join_room", json!({ "roomId": room }), WAIT)
            .await;
        (socket, ack)
    }))
    .await;
    let unanswered = attempts.iter().filter(|(_, ack)| ack.is_none()).count();
    assert_eq!(
        unanswered, 0,
        "{unanswered} of 100 chat:join_room emitted right after CONNECT were never answered"
    );
    for (_, ack) in &attempts {
        assert_eq!(ok(ack.as_ref().unwrap())["roomId"], room.as_str());
    }
}

async fn messages_reach_their_room_sender_included_and_no_other_room(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let mut a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    let mut c = connect(&srv, &w.c).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    join(&b, &w.r2).await;
    join(&c, &w.r2).await;

    // Room 1, over the socket: the ack carries the stored message, and the room, sender
    // included, gets exactly that message.
    let one = say(&a, &w.r1, "hello room one").await;
    assert_message(&one, &w.r1, &w.a, "hello room one");
    assert_eq!(
        b.expect_event("chat:new_message", WAIT).await,
        one,
        "B gets room 1's message"
    );
    // Broadcast after the commit: whoever got the event finds the message in history.
    assert_eq!(history(&srv, &w.b, &w.r1).await, vec![one.clone()]);
    assert_eq!(
        a.expect_event("chat:new_message", WAIT).await,
        one,
        "the sender gets its own message"
    );

    // Room 2: C's first chat:new_message is its own, so room 1's never reached it.
    let two = say(&c, &w.r2, "hello room two").await;
    assert_message(&two, &w.r2, &w.c, "hello room two");
    assert_eq!(c.expect_event("chat:new_message", WAIT).await, two);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, two);

    // Room 1 over REST: the same event as a socket send, the same message as the reply.
    let reply = post_message(
        &srv,
        &w.b,
        &w.r1,
        json!({ "content": "over rest", "clientId": "rest-1" }),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let three = reply.data();
    assert_message(&three, &w.r1, &w.b, "over rest");
    assert_eq!(three["clientId"], "rest-1");
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, three);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, three);

    // Nothing else arrived anywhere: no copies, nothing from a room one is not in.
    a.expect_no_event("chat:new_message", QUIET).await;
    b.expect_no_event("chat:new_message", QUIET).await;
    c.expect_no_event("chat:new_message", QUIET).await;

    assert_eq!(history(&srv, &w.a, &w.r1).await, vec![three, one]);
    assert_eq!(history(&srv, &w.c, &w.r2).await, vec![two]);
}

// ---------------------------------------------------------------------------------------------
// Membership

async fn outsiders_can_neither_join_nor_send_nor_read_and_admins_can(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let mut a = connect(&srv, &w.a).await;
    join(&a, &w.r1).await;
    assert_eq!(next_diff(&mut a, &w.r1).await, (ids_of(&[&w.a]), vec![]));

    // C (a student of course 2) and T2 (course 2's instructor) are outsiders to room 1.
    for outsider in [&w.c, &w.t2] {
        let socket = connect(&srv, outsider).await;
        let room = json!({ "roomId": w.r1 });
        refused(
            &socket.emit_ack("chat:join_room", room.clone()).await,
            "FORBIDDEN",
        );
        refused(
            &socket
                .emit_ack(
                    "chat:send_message",
                    json!({ "roomId": w.r1, "content": "let me in", "clientId": fresh_client_id() }),
                )
                .await,
            "FORBIDDEN",
        );
        refused(
            &socket.emit_ack("chat:online_users", room.clone()).await,
            "FORBIDDEN",
        );
        refused(
            &socket
                .emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
                .await,
            "FORBIDDEN",
        );
        post_message(&srv, outsider, &w.r1, json!({ "content": "let me in" }))
            .await
            .assert_error(403, "FORBIDDEN");
        as_client(&srv, outsider)
            .get(&messages_path(&w.r1))
            .await
            .assert_error(403, "FORBIDDEN");
        assert!(!socket.closed_within(Duration::from_millis(50)).await);
    }
    // The room saw none of it: no message, no typing, nobody new online.
    a.expect_no_event("chat:new_message", QUIET).await;
    let users = a
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[&w.a]));
    assert!(history(&srv, &w.a, &w.r1).await.is_empty());

    // An unknown room is NOT_FOUND, on the socket and over REST.
    let c = connect(&srv, &w.c).await;
    let unknown = json!({ "roomId": UNKNOWN_ID });
    refused(
        &c.emit_ack("chat:join_room", unknown.clone()).await,
        "NOT_FOUND",
    );
    refused(
        &c.emit_ack("chat:online_users", unknown.clone()).await,
        "NOT_FOUND",
    );
    refused(
        &c.emit_ack(
            "chat:send_message",
            json!({ "roomId": UNKNOWN_ID, "content": "anyone?", "clientId": "x" }),
        )
        .await,
        "NOT_FOUND",
    );
    post_message(&srv, &w.c, UNKNOWN_ID, json!({ "content": "anyone?" }))
        .await
        .assert_error(404, "NOT_FOUND");
    as_client(&srv, &w.c)
        .get(&messages_path(UNKNOWN_ID))
        .await
        .assert_error(404, "NOT_FOUND");

    // An admin reads and writes every room without being a member.
    let admin = srv.admin().await;
    let mut root = connect(&srv, &admin).await;
    let ack = join(&root, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[&w.a, &admin]));
    assert_eq!(next_diff(&mut a, &w.r1).await, (ids_of(&[&admin]), vec![]));
    let said = say(&root, &w.r1, "an announcement").await;
    assert_message(&said, &w.r1, &admin, "an announcement");
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, said);
    assert_eq!(root.expect_event("chat:new_message", WAIT).await, said);
    let elsewhere = posted(&srv, &admin, &w.r2, "room two too").await;
    assert_eq!(history(&srv, &admin, &w.r1).await, vec![said]);
    assert_eq!(history(&srv, &admin, &w.r2).await, vec![elsewhere]);
}

async fn a_sessions_side_chat_is_a_room_of_its_own_for_the_course_members(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let session = new_session(&srv, &w.t1, &w.c1).await;
    let side = room_of(&session);
    assert_ne!(side, w.r1, "the side chat is not the course room");

    let mut a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &side).await;
    join(&b, &w.r1).await;

    let said = say(&a, &side, "a question during the session").await;
    assert_message(&said, &side, &w.a, "a question during the session");
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, said);
    let from_teacher = posted(&srv, &w.t1, &side, "good question").await;
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, from_teacher);
    // B is in the course room only: the side chat's messages do not reach it.
    b.expect_no_event("chat:new_message", QUIET).await;

    // Members of the course (B too) read it; C, of another course, may not.
    assert_eq!(
        history(&srv, &w.b, &side).await,
        vec![from_teacher, said.clone()]
    );
    assert!(history(&srv, &w.a, &w.r1).await.is_empty());
    let c = connect(&srv, &w.c).await;
    refused(
        &c.emit_ack("chat:join_room", json!({ "roomId": side }))
            .await,
        "FORBIDDEN",
    );
    as_client(&srv, &w.c)
        .get(&messages_path(&side))
        .await
        .assert_error(403, "FORBIDDEN");
    post_message(&srv, &w.c, &side, json!({ "content": "hi" }))
        .await
        .assert_error(403, "FORBIDDEN");
}

// ---------------------------------------------------------------------------------------------
// Typing and presence

async fn typing_reaches_the_others_but_never_the_sender_or_its_other_tabs(backend: Backend) {
    let srv = start(backend).await;
    let w = world(&srv).await;
    let mut a1 = connect(&srv, &w.a).await;
    let mut a2 = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    let mut c = connect(&srv, &w.c).await;
    join(&a1, &w.r1).await;
    join(&a2, &w.r1).await;
    join(&b, &w.r1).await;
    join(&b, &w.r2).await;
    join(&c, &w.r2).await;

    let ack = a1
        .emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    assert_eq!(
        b.expect_event("chat:typing", WAIT).await,
        json!({ "roomId": w.r1, "userId": w.a.id, "name": w.a.name, "isTyping": true })
    );
    a1.expect_no_event("chat:typing", QUIET).await;
    a2.expect_no_event("chat:typing", QUIET).await;
    c.expect_no_event("chat:typing", QUIET).await;

    // B's notice reaches both of A's tabs, not B.
    ok(&b
        .emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": false }))
        .await);
    let notice = json!({ "roomId": w.r1, "userId": w.b.id, "name": w.b.name, "isTyping": false });
    assert_eq!(a1.expect_event("chat:typing", WAIT).await, notice);
    assert_eq!(a2.expect_event("chat:typing", WAIT).await, notice);
    b.expect_no_event("chat:typing", QUIET).await;

    // In room 2 only C hears B.
    ok(&b
        .emit_ack("chat:typing", json!({ "roomId": w.r2, "isTyping": true }))
        .await);
    assert_eq!(
        c.expect_event("chat:typing", WAIT).await,
        json!({ "roomId": w.r2, "userId": w.b.id, "name": w.b.name, "isTyping": true })
    );
    a1.expect_no_event("chat:typing", QUIET).await;
    a2.expect_no_event("chat:typing", QUIET).await;

    // Typing needs a joined room: a member's tab that has not joined, a tab that left, and an
    // outsider are all refused, and nobody hears them.
    let a3 = connect(&srv, &w.a).await;
    refused(
        &a3.emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
            .await,
        "FORBIDDEN",
    );
    ok(&a2
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    refused(
        &a2.emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
            .await,
        "FORBIDDEN",
    );
    refused(
        &c.emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
            .await,
        "FORBIDDEN",
    );
    b.expect_no_event("chat:typing", QUIET).await;
    a1.expect_no_event("chat:typing", QUIET).await;
}

async fn presence_counts_a_user_once_across_tabs_until_the_last_tab_goes(backend: Backend) {
    let srv = presence_server(backend, Duration::from_millis(50)).await;
    let w = world(&srv).await;
    let (a, b) = (&w.a, &w.b);
    let mut watcher = connect(&srv, b).await;
    let ack = join(&watcher, &w.r1).await;
    assert_keys(&ack, &["ok", "onlineUsers", "roomId"]);
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[b]));
    // The joiner hears of its own join too: a repeat of its ack.
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (ids_of(&[b]), vec![]));
    // C is in room 2 only: nothing that happens in room 1 reaches it (checked at the end).
    let mut c = connect(&srv, &w.c).await;
    join(&c, &w.r2).await;
    assert_eq!(next_diff(&mut c, &w.r2).await, (ids_of(&[&w.c]), vec![]));

    // A's first tab: A comes online, with its name, in the ack and in the room's diff.
    let mut tab1 = connect(&srv, a).await;
    let ack = join(&tab1, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[a, b]));
    assert!(
        ack["onlineUsers"]
            .as_array()
            .unwrap()
            .contains(&json!({ "userId": a.id, "name": a.name })),
        "{ack}"
    );
    let diff = watcher.expect_event("chat:presence_diff", WAIT).await;
    assert_eq!(
        diff,
        json!({ "roomId": w.r1, "joins": [{ "userId": a.id, "name": a.name }], "leaves": [] })
    );
    assert_eq!(tab1.expect_event("chat:presence_diff", WAIT).await, diff);

    // A second tab changes nothing: A counts once, and nobody is told anything.
    let mut tab2 = connect(&srv, a).await;
    let ack = join(&tab2, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[a, b]));
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // The first tab leaves: A is still online through the second.
    assert_eq!(
        tab1.emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
            .await,
        json!({ "ok": true })
    );
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[a, b]));
    // The tab that left gets the room's messages no more; the other still does.
    let said = say(&watcher, &w.r1, "still there?").await;
    assert_eq!(tab2.expect_event("chat:new_message", WAIT).await, said);
    tab1.expect_no_event("chat:new_message", QUIET).await;
    // Leaving a room one is not in changes nothing.
    ok(&tab1
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // The last tab disconnects (the client's Socket.IO disconnect): A goes offline.
    tab2.send_raw("41");
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (vec![], ids_of(&[a])));
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[b]));

    // Two more tabs; one's connection just closes (Engine.IO close), which is a disconnect
    // too: A stays online, and goes offline once the other leaves.
    let tab3 = connect(&srv, a).await;
    join(&tab3, &w.r1).await;
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (ids_of(&[a]), vec![]));
    let tab4 = connect(&srv, a).await;
    join(&tab4, &w.r1).await;
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    tab3.send_raw("1");
    assert!(tab3.closed_within(WAIT).await, "the closed tab stays open");
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    ok(&tab4
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (vec![], ids_of(&[a])));
    // Room 1's diffs never reached room 2.
    c.expect_no_event("chat:presence_diff", QUIET).await;
    // Nor was the whole list ever broadcast again (contract v1.1).
    watcher.expect_no_event("chat:online_users", QUIET).await;
}

async fn presence_diffs_are_net_per_batch_and_never_contradict_an_ack(backend: Backend) {
    // The longest batch the contract allows, so that each step below fits in one.
    let srv = presence_server(backend, Duration::from_secs(1)).await;
    let w = world(&srv).await;
    let mut watcher = connect(&srv, &w.b).await;
    join(&watcher, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.b]), vec![])
    );

    // A comes and goes within one batch: the room hears nothing at all.
    let tab = connect(&srv, &w.a).await;
    join(&tab, &w.r1).await;
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    watcher
        .expect_no_event("chat:presence_diff", Duration::from_millis(1500))
        .await;

    // The same, but the teacher joins in between and its ack lists A: the room must then be
    // told that A left, or the teacher would show A online for good. The watcher, who never
    // listed A, gets a leave of someone it does not list, which changes nothing for it.
    join(&tab, &w.r1).await;
    let mut teacher = connect(&srv, &w.t1).await;
    let ack = join(&teacher, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[&w.a, &w.b, &w.t1]));
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    let expected = (ids_of(&[&w.t1]), ids_of(&[&w.a]));
    assert_eq!(next_diff(&mut teacher, &w.r1).await, expected);
    assert_eq!(next_diff(&mut watcher, &w.r1).await, expected);

    // Leaving and coming back within a batch is no news either, unless someone listed the
    // user in between: the watcher's question comes while A is away, so the room is told A
    // is back.
    join(&tab, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    assert_eq!(
        next_diff(&mut teacher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    join(&tab, &w.r1).await;
    watcher
        .expect_no_event("chat:presence_diff", Duration::from_millis(1500))
        .await;
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[&w.b, &w.t1]));
    join(&tab, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    assert_eq!(
        next_diff(&mut teacher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
}

async fn a_burst_of_20_joins_reaches_the_room_as_a_few_diffs(backend: Backend) {
    let srv = presence_server(backend, Duration::from_millis(500)).await;
    let (teacher, course) = srv.course().await;
    let room = room_of(&course);
    let students = join_all((0..20).map(|_| async {
        let student = srv.register("student").await;
        srv.enroll(&student, &course).await;
        student
    }))
    .await;
    let mut watcher = connect(&srv, &teacher).await;
    join(&watcher, &room).await;
    assert_eq!(
        next_diff(&mut watcher, &room).await,
        (ids_of(&[&teacher]), vec![])
    );

    let sockets = join_all(students.iter().map(|s| connect(&srv, s))).await;
    join_all(sockets.iter().map(|s| join(s, &room))).await;
    let mut joined = Vec::new();
    let mut diffs = 0;
    while joined.len() < students.len() {
        let diff = watcher.expect_event("chat:presence_diff", WAIT).await;
        assert_eq!(diff["roomId"], room.as_str(), "{diff}");
        let (joins, leaves) = diff_of(&diff);
        assert!(leaves.is_empty(), "{diff}");
        for entry in diff["joins"].as_array().unwrap() {
            let student = students
                .iter()
                .find(|s| entry["userId"] == s.id.as_str())
                .unwrap_or_else(|| panic!("{entry} is none of the joiners"));
            assert_eq!(entry["name"], student.name.as_str());
        }
        joined.extend(joins);
        diffs += 1;
    }
    // Joins within one interval share a diff; a burst may straddle a batch boundary or two.
    assert!(diffs <= 3, "20 joins came as {diffs} diffs");
    joined.sort();
    assert_eq!(joined, ids_of(&students.iter().collect::<Vec<_>>()));
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // A later joiner's ack holds the whole room, in one list.
    let late = connect(&srv, &teacher).await;
    let ack = join(&late, &room).await;
    let mut everyone: Vec<&Account> = students.iter().collect();
    everyone.push(&teacher);
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&everyone));
}

// ---------------------------------------------------------------------------------------------
// Idempotency and input rules

async fn a_resend_with_the_same_client_id_returns_the_first_message_and_broadcasts_nothing(
    backend: Backend,
) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let mut a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;

    // Over the socket.
    let first = say_with_id(&a, &w.r1, "first try", "retry-1").await;
    assert_eq!(first["clientId"], "retry-1");
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, first);
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, first);
    let again = a
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "second try", "clientId": "retry-1" }),
        )
        .await;
    assert_eq!(again, json!({ "ok": true, "message": first }));
    // Over REST, the same clientId answers 200 with the socket's first message.
    let reply = post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "third try", "clientId": "retry-1" }),
    )
    .await;
    assert_eq!(reply.status, 200, "a resend is not created: {}", reply.body);
    assert_eq!(reply.data(), first);
    b.expect_no_event("chat:new_message", QUIET).await;
    a.expect_no_event("chat:new_message", QUIET).await;

    // Over REST first: 201, then 200 with the same message, over REST and the socket.
    let body = json!({ "content": "over rest", "clientId": "retry-2" });
    let created = post_message(&srv, &w.a, &w.r1, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let second = created.data();
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, second);
    let resent = post_message(&srv, &w.a, &w.r1, body).await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(resent.data(), second);
    let over_socket = say_with_id(&a, &w.r1, "over the socket now", "retry-2").await;
    assert_eq!(over_socket, second);
    b.expect_no_event("chat:new_message", QUIET).await;

    assert_eq!(a.expect_event("chat:new_message", WAIT).await, second);

    // The key is (sender, clientId): B may use A's clientId for a message of its own.
    let bs = say_with_id(&b, &w.r1, "mine", "retry-1").await;
    assert_ne!(bs["id"], first["id"]);
    assert_message(&bs, &w.r1, &w.b, "mine");
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, bs);
    assert_eq!(a.expect_event("chat:new_message", WAIT).await, bs);

    // Eight concurrent sends with one clientId: one message, one 201, one broadcast.
    let body = json!({ "content": "racing", "clientId": "retry-3" });
    let replies = join_all((0..8).map(|_| post_message(&srv, &w.a, &w.r1, body.clone()))).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201]);
    let raced: HashSet<String> = replies
        .iter()
        .map(|r| id_of(&r.data()).to_owned())
        .collect();
    assert_eq!(raced.len(), 1, "one message for one clientId");
    let event = b.expect_event("chat:new_message", WAIT).await;
    assert!(raced.contains(id_of(&event)));
    // The same over the socket.
    let acks = join_all((0..5).map(|n| {
        a.emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": format!("racing {n}"), "clientId": "retry-4" }),
        )
    }))
    .await;
    let raced: HashSet<String> = acks
        .iter()
        .map(|ack| id_of(&ok(ack)["message"]).to_owned())
        .collect();
    assert_eq!(raced.len(), 1, "one message for one clientId: {acks:?}");
    let event = b.expect_event("chat:new_message", WAIT).await;
    assert!(raced.contains(id_of(&event)));
    b.expect_no_event("chat:new_message", QUIET).await;

    let stored = history(&srv, &w.b, &w.r1).await;
    assert_eq!(stored.len(), 5, "first, second, B's, two races: {stored:?}");
}

async fn client_ids_are_required_on_the_socket_optional_over_rest_and_at_most_64_characters(
    backend: Backend,
) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;

    let send = |client_id: Value| {
        let mut payload = json!({ "roomId": w.r1, "content": "hello" });
        if !client_id.is_null() {
            payload["clientId"] = client_id;
        }
        a.emit_ack("chat:send_message", payload)
    };
    refused_field(&send(Value::Null).await, "clientId");
    refused_field(&send(json!("")).await, "clientId");
    refused_field(&send(json!("x".repeat(65))).await, "clientId");
    refused_field(&send(json!(17)).await, "clientId");
    // 64 characters, counted in code points (128 bytes).
    let longest = "é".repeat(64);
    let sixty_four = say_with_id(&a, &w.r1, "sixty-four", &longest).await;
    assert_eq!(sixty_four["clientId"], longest.as_str());

    // Over REST clientId is optional; without one, nothing is deduplicated.
    let mut without = Vec::new();
    for _ in 0..2 {
        let reply = post_message(&srv, &w.a, &w.r1, json!({ "content": "no id" })).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let message = reply.data();
        assert_message(&message, &w.r1, &w.a, "no id");
        assert_eq!(message["clientId"], Value::Null);
        without.push(message);
    }
    assert_ne!(without[0]["id"], without[1]["id"]);
    assert_field(
        &post_message(
            &srv,
            &w.a,
            &w.r1,
            json!({ "content": "x", "clientId": "x".repeat(65) }),
        )
        .await,
        "clientId",
    );
    assert_field(
        &post_message(&srv, &w.a, &w.r1, json!({ "content": "x", "clientId": 5 })).await,
        "clientId",
    );

    // B saw exactly the three accepted messages.
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, sixty_four);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, without[0]);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, without[1]);
    b.expect_no_event("chat:new_message", QUIET).await;
    assert_eq!(history(&srv, &w.a, &w.r1).await.len(), 3);
}

async fn content_must_be_non_blank_and_within_the_configured_length(backend: Backend) {
    let srv = start_adjusted(backend, |c| {
        c.chat_max_message_chars = 10;
        c.chat_rate_burst = 1000;
        c.chat_rate_per_second = 1000.0;
    })
    .await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    join(&a, &w.r1).await;

    let too_long = ["a".repeat(11), "é".repeat(11), "😀".repeat(11)];
    let blank = [String::new(), "   ".into(), " \n\t ".into()];
    for content in too_long.iter().chain(&blank) {
        refused_field(
            &a.emit_ack(
                "chat:send_message",
                json!({ "roomId": w.r1, "content": content, "clientId": fresh_client_id() }),
            )
            .await,
            "content",
        );
        assert_field(
            &post_message(&srv, &w.a, &w.r1, json!({ "content": content })).await,
            "content",
        );
    }
    for body in [
        json!({}),
        json!({ "content": 5 }),
        json!({ "content": null }),
    ] {
        assert_field(&post_message(&srv, &w.a, &w.r1, body).await, "content");
    }
    refused_field(
        &a.emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "clientId": "no-content" }),
        )
        .await,
        "content",
    );

    // Exactly at the limit, in code points, whatever their byte length.
    let accented = say(&a, &w.r1, &"é".repeat(10)).await;
    assert_eq!(accented["content"], "é".repeat(10));
    let emoji = posted(&srv, &w.a, &w.r1, &"😀".repeat(10)).await;
    assert_eq!(emoji["content"], "😀".repeat(10));

    // Edits obey the same rules.
    let id = id_of(&accented);
    assert_field(
        &as_client(&srv, &w.a)
            .patch(&message_path(id), json!({ "content": "b".repeat(11) }))
            .await,
        "content",
    );
    refused_field(
        &a.emit_ack(
            "chat:edit_message",
            json!({ "messageId": id, "content": "  " }),
        )
        .await,
        "content",
    );
    let stored = history(&srv, &w.a, &w.r1).await;
    assert_eq!(stored, vec![emoji, accented]);
}

async fn sending_too_fast_is_rate_limited_with_a_retry_delay(backend: Backend) {
    let srv = start_adjusted(backend, |c| {
        c.chat_rate_burst = 3;
        c.chat_rate_per_second = 0.05;
    })
    .await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    join(&a, &w.r1).await;

    let first = say_with_id(&a, &w.r1, "one", "rl-1").await;
    say(&a, &w.r1, "two").await;
    say(&a, &w.r1, "three").await;

    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "four", "clientId": "rl-4" }),
        )
        .await;
    let retry = refused(&ack, "RATE_LIMITED")["details"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no details.retryAfter in {ack}"));
    assert!((1..=21).contains(&retry), "retryAfter {retry}");

    let reply = post_message(&srv, &w.a, &w.r1, json!({ "content": "five" })).await;
    reply.assert_error(429, "RATE_LIMITED");
    let header: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After header: {:?}", reply.headers));
    assert!((1..=21).contains(&header), "Retry-After {header}");
    let details = reply.body["error"]["details"]["retryAfter"].as_u64();
    assert!(
        details.is_some_and(|d| (1..=21).contains(&d)),
        "{}",
        reply.body
    );

    // A resend after a lost ack still gets its first message back.
    let resent = post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "one", "clientId": "rl-1" }),
    )
    .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(resent.data(), first);

    // The bucket is per user: B is not slowed down by A.
    posted(&srv, &w.b, &w.r1, "not limited").await;
    let stored = history(&srv, &w.b, &w.r1).await;
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["not limited", "three", "two", "one"]);
}

// ---------------------------------------------------------------------------------------------
// Edits and deletes

async fn only_the_sender_edits_and_the_room_sees_the_update(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let admin = srv.admin().await;
    let mut a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    let c = connect(&srv, &w.c).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    let original = say(&a, &w.r1, "original words").await;
    let id = id_of(&original);
    let edit = |content: &str| json!({ "messageId": id, "content": content });

    // Members who are not the sender, the course's instructor and admins included: FORBIDDEN.
    refused(
        &b.emit_ack("chat:edit_message", edit("hijacked")).await,
        "FORBIDDEN",
    );
    for who in [&w.b, &w.t1, &admin] {
        as_client(&srv, who)
            .patch(&message_path(id), json!({ "content": "hijacked" }))
            .await
            .assert_error(403, "FORBIDDEN");
    }
    // Those who cannot read the room do not learn the message exists.
    refused(
        &c.emit_ack("chat:edit_message", edit("hijacked")).await,
        "NOT_FOUND",
    );
    for who in [&w.c, &w.t2] {
        as_client(&srv, who)
            .patch(&message_path(id), json!({ "content": "hijacked" }))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    refused(
        &a.emit_ack(
            "chat:edit_message",
            json!({ "messageId": UNKNOWN_ID, "content": "x" }),
        )
        .await,
        "NOT_FOUND",
    );
    as_client(&srv, &w.a)
        .patch(&message_path(UNKNOWN_ID), json!({ "content": "x" }))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, original);
    b.expect_no_event("chat:message_updated", QUIET).await;

    // The sender, over the socket.
    let ack = a.emit_ack("chat:edit_message", edit("better words")).await;
    let updated = ok(&ack)["message"].clone();
    assert_keys(&updated, &MESSAGE_KEYS);
    assert_eq!(updated["id"], original["id"]);
    assert_eq!(updated["content"], "better words");
    assert_eq!(updated["createdAt"], original["createdAt"]);
    assert_eq!(updated["clientId"], original["clientId"]);
    let edited_at = updated["editedAt"].as_str().expect("editedAt is set");
    assert!(
        chrono::DateTime::parse_from_rfc3339(edited_at).unwrap()
            >= chrono::DateTime::parse_from_rfc3339(original["createdAt"].as_str().unwrap())
                .unwrap()
    );
    assert_eq!(updated["deletedAt"], Value::Null);
    assert_eq!(b.expect_event("chat:message_updated", WAIT).await, updated);
    assert_eq!(a.expect_event("chat:message_updated", WAIT).await, updated);

    // The sender, over REST.
    let reply = as_client(&srv, &w.a)
        .patch(&message_path(id), json!({ "content": "best words" }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rest_updated = reply.data();
    assert_eq!(rest_updated["content"], "best words");
    assert_eq!(
        b.expect_event("chat:message_updated", WAIT).await,
        rest_updated
    );
    assert_eq!(history(&srv, &w.b, &w.r1).await, vec![rest_updated]);

    // A deleted message can no longer be edited.
    let reply = as_client(&srv, &w.a).delete(&message_path(id)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    as_client(&srv, &w.a)
        .patch(&message_path(id), json!({ "content": "revived" }))
        .await
        .assert_error(409, "CONFLICT");
    refused(
        &a.emit_ack("chat:edit_message", edit("revived")).await,
        "CONFLICT",
    );
    b.expect_no_event("chat:message_updated", QUIET).await;
}

async fn sender_instructor_and_admin_delete_leaving_a_tombstone(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let admin = srv.admin().await;
    let mut a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    let mut sent = Vec::new();
    for n in 1..=4 {
        sent.push(say(&a, &w.r1, &format!("message {n}")).await);
    }
    let of_b = say(&b, &w.r1, "B's own").await;
    for _ in 0..5 {
        b.expect_event("chat:new_message", WAIT).await;
    }
    let ids: Vec<String> = sent.iter().map(|v| id_of(v).to_owned()).collect();

    // A fellow student may not delete; those who cannot read the room get NOT_FOUND.
    refused(
        &b.emit_ack("chat:delete_message", json!({ "messageId": ids[0] }))
            .await,
        "FORBIDDEN",
    );
    as_client(&srv, &w.b)
        .delete(&message_path(&ids[0]))
        .await
        .assert_error(403, "FORBIDDEN");
    for who in [&w.c, &w.t2] {
        as_client(&srv, who)
            .delete(&message_path(&ids[0]))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    as_client(&srv, &w.a)
        .delete(&message_path(UNKNOWN_ID))
        .await
        .assert_error(404, "NOT_FOUND");
    b.expect_no_event("chat:message_deleted", QUIET).await;

    // The sender, over the socket.
    let ack = a
        .emit_ack("chat:delete_message", json!({ "messageId": ids[0] }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    let notice = json!({ "roomId": w.r1, "messageId": ids[0] });
    assert_eq!(b.expect_event("chat:message_deleted", WAIT).await, notice);
    assert_eq!(a.expect_event("chat:message_deleted", WAIT).await, notice);
    // The course's instructor and an admin, over REST.
    for (who, id) in [(&w.t1, &ids[1]), (&admin, &ids[2])] {
        let reply = as_client(&srv, who).delete(&message_path(id)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.data(), json!({}));
        assert_eq!(
            b.expect_event("chat:message_deleted", WAIT).await,
            json!({ "roomId": w.r1, "messageId": id })
        );
    }
    // A student deletes their own.
    let reply = as_client(&srv, &w.b)
        .delete(&message_path(id_of(&of_b)))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        b.expect_event("chat:message_deleted", WAIT).await,
        json!({ "roomId": w.r1, "messageId": id_of(&of_b) })
    );

    // History keeps every message in place; the deleted ones are tombstones.
    let stored = history(&srv, &w.a, &w.r1).await;
    let stored_ids: Vec<String> = stored.iter().map(|v| id_of(v).to_owned()).collect();
    assert_eq!(
        stored_ids,
        [
            id_of(&of_b).to_owned(),
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone()
        ]
    );
    for (message, original) in [
        (&stored[0], &of_b),
        (&stored[2], &sent[2]),
        (&stored[3], &sent[1]),
        (&stored[4], &sent[0]),
    ] {
        assert_keys(message, &MESSAGE_KEYS);
        assert_eq!(
            message["content"], "",
            "a tombstone has no content: {message}"
        );
        let deleted = message["deletedAt"]
            .as_str()
            .unwrap_or_else(|| panic!("no deletedAt: {message}"));
        chrono::DateTime::parse_from_rfc3339(deleted).expect("deletedAt is RFC 3339");
        for key in [
            "id",
            "roomId",
            "senderId",
            "senderName",
            "createdAt",
            "clientId",
        ] {
            assert_eq!(message[key], original[key], "{key} of a tombstone");
        }
    }
    assert_eq!(stored[1], sent[3], "the untouched message is unchanged");
}

// ---------------------------------------------------------------------------------------------
// Moderation

async fn the_moderation_plugin_rejects_masks_and_flags_on_send_and_edit(backend: Backend) {
    let srv = start_with_plugins(backend, WORD_LISTS, |_| {}).await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;

    // Reject: 422 with the plugin's reason and code; nothing stored, nothing broadcast.
    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "a forbiddenword here", "clientId": "mod-1" }),
        )
        .await;
    let error = refused(&ack, "REJECTED_BY_POLICY");
    assert_eq!(error["details"]["reason"], "banned_word", "{ack}");
    assert_eq!(error["message"], "That word is not allowed here.", "{ack}");
    let reply = post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "FORBIDDENWORD!", "clientId": "mod-2" }),
    )
    .await;
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(reply.body["error"]["details"]["reason"], "banned_word");
    assert_eq!(
        reply.body["error"]["message"],
        "That word is not allowed here."
    );
    b.expect_no_event("chat:new_message", QUIET).await;
    assert!(history(&srv, &w.a, &w.r1).await.is_empty());
    // Nothing was stored, so the refused clientId is still free.
    let clean = say_with_id(&a, &w.r1, "a clean message", "mod-1").await;
    assert_message(&clean, &w.r1, &w.a, "a clean message");
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, clean);

    // Mask: the rewritten text is what is stored and broadcast.
    let masked = say(&a, &w.r1, "oh darn it").await;
    let text = masked["content"].as_str().unwrap();
    assert!(
        !text.to_lowercase().contains("darn") && text.contains('*'),
        "not masked: {text}"
    );
    assert!(text.starts_with("oh ") && text.ends_with(" it"), "{text}");
    assert_eq!(masked["flagged"], false);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, masked);

    // Flag: stored as written, flagged.
    let flagged = posted(&srv, &w.a, &w.r1, "is this cheating?").await;
    assert_eq!(flagged["content"], "is this cheating?");
    assert_eq!(flagged["flagged"], true);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, flagged);

    // Edits pass through the same plugin.
    let clean_id = id_of(&clean);
    let reply = as_client(&srv, &w.a)
        .patch(
            &message_path(clean_id),
            json!({ "content": "now a forbiddenword" }),
        )
        .await;
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(reply.body["error"]["details"]["reason"], "banned_word");
    let ack = a
        .emit_ack(
            "chat:edit_message",
            json!({ "messageId": clean_id, "content": "forbiddenword" }),
        )
        .await;
    assert_eq!(
        refused(&ack, "REJECTED_BY_POLICY")["details"]["reason"],
        "banned_word"
    );
    b.expect_no_event("chat:message_updated", QUIET).await;
    let ack = a
        .emit_ack(
            "chat:edit_message",
            json!({ "messageId": clean_id, "content": "darn, that again" }),
        )
        .await;
    let edited = ok(&ack)["message"].clone();
    let text = edited["content"].as_str().unwrap();
    assert!(
        !text.to_lowercase().contains("darn") && text.ends_with(", that again"),
        "not masked: {text}"
    );
    assert_eq!(edited["flagged"], false);
    assert_eq!(b.expect_event("chat:message_updated", WAIT).await, edited);
    let reply = as_client(&srv, &w.a)
        .patch(
            &message_path(id_of(&masked)),
            json!({ "content": "was that cheating?" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reflagged = reply.data();
    assert_eq!(reflagged["content"], "was that cheating?");
    assert_eq!(reflagged["flagged"], true);
    assert_eq!(
        b.expect_event("chat:message_updated", WAIT).await,
        reflagged
    );

    let stored = history(&srv, &w.b, &w.r1).await;
    assert_eq!(stored, vec![flagged, reflagged, edited]);
}

async fn a_failing_moderation_plugin_fails_closed_or_open_as_configured(backend: Backend) {
    // Two hostile fixtures in the chat chain: one traps ("panic"), one never returns ("loop",
    // stopped by the deadline).
    for failure in ["fail-closed", "fail-open"] {
        let plugins = format!(
            "[chat]\nfailure = \"{failure}\"\n\n[[chat.plugins]]\nsource = '{}'\n\n[[chat.plugins]]\nsource = '{}'\n",
            fixtures::PANIC,
            fixtures::INFINITE_LOOP
        );
        let srv = start_with_plugins(backend, &plugins, |c| {
            c.chat_rate_burst = 1000;
            c.chat_rate_per_second = 1000.0;
        })
        .await;
        let w = world(&srv).await;
        let a = connect(&srv, &w.a).await;
        let mut b = connect(&srv, &w.b).await;
        join(&a, &w.r1).await;
        join(&b, &w.r1).await;

        // A message neither fixture minds passes either way.
        let fine = say(&a, &w.r1, "an ordinary message").await;
        assert_eq!(b.expect_event("chat:new_message", WAIT).await, fine);

        let trapping = ["please panic now", "stuck in a loop"];
        if failure == "fail-closed" {
            for content in trapping {
                post_message(&srv, &w.a, &w.r1, json!({ "content": content }))
                    .await
                    .assert_error(503, "UNAVAILABLE");
                refused(
                    &a.emit_ack(
                        "chat:send_message",
                        json!({ "roomId": w.r1, "content": content, "clientId": fresh_client_id() }),
                    )
                    .await,
                    "UNAVAILABLE",
                );
            }
            b.expect_no_event("chat:new_message", QUIET).await;
            assert_eq!(history(&srv, &w.a, &w.r1).await, vec![fine]);
        } else {
            let mut stored = vec![fine];
            for content in trapping {
                let over_rest = posted(&srv, &w.a, &w.r1, content).await;
                assert_eq!(over_rest["content"], content);
                assert_eq!(b.expect_event("chat:new_message", WAIT).await, over_rest);
                let over_socket = say(&a, &w.r1, content).await;
                assert_eq!(b.expect_event("chat:new_message", WAIT).await, over_socket);
                stored.insert(0, over_rest);
                stored.insert(0, over_socket);
            }
            assert_eq!(history(&srv, &w.a, &w.r1).await, stored);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// History and search

/// Sends `per_sender` messages from each of `senders` over REST, all at once, on a task of
/// their own; yields the ids.
fn send_concurrently(
    srv: &TestServer,
    senders: &[&Account],
    room: &str,
    per_sender: usize,
    tag: &str,
) -> tokio::task::JoinHandle<Vec<String>> {
    let mut jobs = Vec::new();
    for (s, who) in senders.iter().enumerate() {
        for n in 0..per_sender {
            let client = as_client(srv, who);
            let path = messages_path(room);
            let body = json!({ "content": format!("{tag} {s} {n}"), "clientId": format!("{tag}-{s}-{n}") });
            jobs.push(async move {
                let reply = client.post(&path, body).await;
                assert_eq!(reply.status, 201, "send: {}", reply.body);
                id_of(&reply.data()).to_owned()
            });
        }
    }
    tokio::spawn(join_all(jobs))
}

async fn history_pages_newest_first_without_skips_or_repeats_under_concurrent_sends(
    backend: Backend,
) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let d = srv.register("student").await;
    srv.enroll(&d, &w.c1).await;
    let senders = [&w.t1, &w.a, &w.b, &d];

    // 4 senders × 25 messages, all at once.
    let before = send_concurrently(&srv, &senders, &w.r1, 25, "early")
        .await
        .expect("first batch");
    assert_eq!(set(&before).len(), 100);

    // Walk pages of 7 while another 100 arrive: the walk sees each message at most once, in
    // order, every earlier message, and nothing but the two batches.
    let during = send_concurrently(&srv, &senders, &w.r1, 25, "late");
    let walked = pages(&srv, &w.a, &w.r1, 7).await.concat();
    let during = during.await.expect("second batch");
    assert_newest_first(&walked);
    let walked_ids: Vec<String> = walked.iter().map(|v| id_of(v).to_owned()).collect();
    assert_eq!(
        set(&walked_ids).len(),
        walked_ids.len(),
        "a message repeated"
    );
    let walked_ids = set(&walked_ids);
    assert!(
        set(&before).is_subset(&walked_ids),
        "{} earlier messages skipped",
        set(&before).difference(&walked_ids).count()
    );
    let all: HashSet<String> = before.iter().chain(&during).cloned().collect();
    assert_eq!(all.len(), 200);
    assert!(walked_ids.is_subset(&all));

    // Afterwards: all 200, once each, newest first, in full pages of 7 but the last.
    let walk = pages(&srv, &w.b, &w.r1, 7).await;
    let sizes: Vec<usize> = walk.iter().map(Vec::len).collect();
    assert_eq!(sizes, [vec![7; 28], vec![4]].concat());
    let everything = walk.concat();
    assert_newest_first(&everything);
    assert_eq!(
        set(&everything
            .iter()
            .map(|v| id_of(v).to_owned())
            .collect::<Vec<_>>()),
        all
    );
    // A page that ends exactly at the oldest message says there is no more.
    let walk = pages(&srv, &w.b, &w.r1, 50).await;
    assert_eq!(
        walk.iter().map(Vec::len).collect::<Vec<_>>(),
        [50, 50, 50, 50]
    );
    assert_eq!(walk.concat(), everything);
    // `cursor` is accepted as a synonym of `before`; the default page is 50.
    let first = as_client(&srv, &w.a)
        .get(&messages_path(&w.r1))
        .await
        .data();
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = as_client(&srv, &w.a)
        .get(&format!("{}?cursor={cursor}", messages_path(&w.r1)))
        .await
        .data();
    assert_eq!(second["items"].as_array().unwrap()[..], everything[50..100]);

    // Paging parameters are validated.
    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
        assert_field(
            &as_client(&srv, &w.a)
                .get(&format!("{}?{query}", messages_path(&w.r1)))
                .await,
            "limit",
        );
    }
    assert_field(
        &as_client(&srv, &w.a)
            .get(&format!("{}?before=not-an-id", messages_path(&w.r1)))
            .await,
        "before",
    );
}

/// One message in `room` by `who`; its id.
async fn note(srv: &TestServer, who: &Account, room: &str, content: &str) -> String {
    id_of(&posted(srv, who, room, content).await).to_owned()
}

async fn search_ranks_matches_within_readable_rooms_and_forgets_deleted_messages(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let admin = srv.admin().await;
    let d = srv.register("student").await;
    let session = new_session(&srv, &w.t1, &w.c1).await;
    let side = room_of(&session);

    let both = note(&srv, &w.a, &w.r1, "Raft leader election explained slowly").await;
    let one = note(&srv, &w.b, &w.r1, "the raft paper is long").await;
    let _none = note(&srv, &w.a, &w.r1, "nothing to see here").await;
    let thrice = note(&srv, &w.a, &w.r1, "quorum quorum quorum").await;
    let once = note(&srv, &w.a, &w.r1, "a quorum of five").await;
    let in_side = note(&srv, &w.t1, &side, "side chat about raft").await;
    let in_r2 = note(&srv, &w.c, &w.r2, "raft election in the other room").await;

    // The message with both words comes first; every result has one of them; room 2 (which
    // A cannot read) never appears.
    let results = found(&search(&srv, &w.a, &[("q", "raft election")]).await);
    assert_eq!(
        results.first(),
        Some(&both),
        "best match first: {results:?}"
    );
    assert!(set(&results).is_subset(&set(&[both.clone(), one.clone(), in_side.clone()])));
    // Term frequency counts too.
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "quorum")]).await),
        [thrice.clone(), once.clone()]
    );

    // Across rooms: exactly what each caller may read, session side chats included.
    let readable = |ids: &[&String]| ids.iter().map(|id| (*id).clone()).collect::<HashSet<_>>();
    let cases: [(&Account, HashSet<String>); 5] = [
        (&w.a, readable(&[&both, &one, &in_side])),
        (&w.b, readable(&[&both, &one, &in_side, &in_r2])),
        (&w.c, readable(&[&in_r2])),
        (&d, readable(&[])),
        (&admin, readable(&[&both, &one, &in_side, &in_r2])),
    ];
    for (who, expected) in &cases {
        let results = found(&search(&srv, who, &[("q", "raft")]).await);
        assert_eq!(results.len(), expected.len(), "{results:?}");
        assert_eq!(&set(&results), expected, "raft for {}", who.name);
    }
    // Case does not matter.
    assert_eq!(
        set(&found(&search(&srv, &w.a, &[("q", "RAFT")]).await)),
        cases[0].1
    );
    // Within one room.
    assert_eq!(
        found(&search(&srv, &w.b, &[("q", "raft"), ("roomId", &w.r2)]).await),
        std::slice::from_ref(&in_r2)
    );
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "raft"), ("roomId", &side)]).await),
        std::slice::from_ref(&in_side)
    );
    search(&srv, &w.a, &[("q", "raft"), ("roomId", &w.r2)])
        .await
        .assert_error(403, "FORBIDDEN");
    search(&srv, &w.a, &[("q", "raft"), ("roomId", UNKNOWN_ID)])
        .await
        .assert_error(404, "NOT_FOUND");
    assert_field(
        &search(&srv, &w.a, &[("q", "raft"), ("roomId", "nope")]).await,
        "roomId",
    );

    // Paging one result at a time walks every match once.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("q", "raft"), ("limit", "1")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let reply = search(&srv, &w.b, &params).await;
        walked.extend(found(&reply));
        match reply.data()["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(walked.len() <= 10, "search paging never ends");
    }
    assert_eq!(walked.len(), 4, "{walked:?}");
    assert_eq!(set(&walked), cases[1].1);

    // q is required.
    for params in [vec![], vec![("q", "")], vec![("q", "   ")]] {
        assert_field(&search(&srv, &w.a, &params).await, "q");
    }

    // A deleted message never matches; an edited one matches its new words only.
    let reply = as_client(&srv, &w.a).delete(&message_path(&both)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(found(&search(&srv, &w.a, &[("q", "election")]).await).is_empty());
    assert!(found(&search(&srv, &w.a, &[("q", "leader explained")]).await).is_empty());
    assert_eq!(
        found(&search(&srv, &admin, &[("q", "election")]).await),
        std::slice::from_ref(&in_r2)
    );
    let reply = as_client(&srv, &w.b)
        .patch(
            &message_path(&one),
            json!({ "content": "the paxos paper is long" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        set(&found(&search(&srv, &w.a, &[("q", "raft")]).await)),
        set(std::slice::from_ref(&in_side))
    );
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "paxos")]).await),
        std::slice::from_ref(&one)
    );

    // Results are full messages.
    let reply = search(&srv, &w.a, &[("q", "paxos")]).await;
    let item = &reply.data()["items"][0];
    assert_keys(item, &MESSAGE_KEYS);
    assert_eq!(item["content"], "the paxos paper is long");
}

async fn hostile_search_syntax_is_never_a_server_error(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let target = note(&srv, &w.a, &w.r1, "consensus needs a quorum").await;

    let hostile = [
        "\"",
        "\"\"",
        "*",
        "quorum*",
        "NEAR(",
        "NEAR(quorum consensus, 2)",
        "OR",
        "quorum OR",
        "AND NOT",
        "-",
        "-quorum",
        ":",
        "content:quorum",
        "'",
        "'quorum",
        "(",
        ")",
        "((quorum",
        "quorum)",
        "^quorum",
        "quorum & consensus",
        "quorum | !consensus",
        "quorum <-> consensus",
        "quorum:*",
        "!!",
        "\\",
        "%",
        "_",
        "{}",
        "[quorum]",
        "'; DROP TABLE chat_messages; --",
        "\u{0}",
        "😀",
        "quorum \u{200b} consensus",
    ];
    let long = "quorum ".repeat(60);
    for q in hostile.iter().copied().chain([long.as_str()]) {
        let reply = search(&srv, &w.a, &[("q", q)]).await;
        assert_ne!(reply.status, 500, "q={q:?}: {}", reply.body);
        if reply.status == 200 {
            let data = reply.data();
            assert!(data["items"].is_array(), "q={q:?}: {}", reply.body);
            for item in data["items"].as_array().unwrap() {
                assert_eq!(item["roomId"], w.r1.as_str(), "q={q:?}");
            }
        } else {
            reply.assert_error(400, "VALIDATION_FAILED");
        }
    }
    // Words wrapped in syntax are still words.
    for q in [
        "\"quorum\"",
        "quorum*",
        "(quorum)",
        "-quorum",
        "quorum\"",
        "'quorum'",
    ] {
        let reply = search(&srv, &w.a, &[("q", q)]).await;
        assert_eq!(found(&reply), std::slice::from_ref(&target), "q={q:?}");
    }
    // And the server still answers normally afterwards.
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "consensus quorum")]).await),
        [target]
    );
    assert_eq!(srv.client().get("/ready").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Malformed input, oversize, bursts

async fn malformed_socket_payloads_get_error_acks_and_the_socket_stays_usable(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    let valid = say(&a, &w.r1, "a real message").await;
    let valid_id = id_of(&valid);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, valid);
    let r1 = w.r1.as_str();

    // Not an object at all: VALIDATION_FAILED, whatever the event.
    let not_objects = [
        json!("not an object"),
        json!(5),
        json!(null),
        json!(true),
        json!([r1, "hello", "cid"]),
    ];
    for event in [
        "chat:join_room",
        "chat:leave_room",
        "chat:send_message",
        "chat:typing",
        "chat:edit_message",
        "chat:delete_message",
        "chat:online_users",
    ] {
        for payload in &not_objects {
            refused(
                &a.emit_ack(event, payload.clone()).await,
                "VALIDATION_FAILED",
            );
        }
        refused(&a.emit_args_ack(event, &[]).await, "VALIDATION_FAILED");
    }

    // Wrong types and missing fields name the field.
    let send = |fields: Value| {
        let mut payload =
            json!({ "roomId": r1, "content": "hello", "clientId": fresh_client_id() });
        for (key, value) in fields.as_object().unwrap() {
            if value.is_null() {
                payload.as_object_mut().unwrap().remove(key);
            } else {
                payload[key] = value.clone();
            }
        }
        payload
    };
    let cases = [
        (
            "chat:send_message",
            send(json!({ "roomId": null })),
            "roomId",
        ),
        (
            "chat:send_message",
            send(json!({ "content": null })),
            "content",
        ),
        (
            "chat:send_message",
            send(json!({ "clientId": null })),
            "clientId",
        ),
        ("chat:send_message", send(json!({ "roomId": 5 })), "roomId"),
        (
            "chat:send_message",
            send(json!({ "roomId": "not-a-uuid" })),
            "roomId",
        ),
        (
            "chat:send_message",
            send(json!({ "content": 7 })),
            "content",
        ),
        (
            "chat:send_message",
            send(json!({ "content": { "text": "hi" } })),
            "content",
        ),
        (
            "chat:send_message",
            send(json!({ "clientId": ["x"] })),
            "clientId",
        ),
        (
            "chat:send_message",
            send(json!({ "replyTo": "nope" })),
            "replyTo",
        ),
        (
            "chat:send_message",
            send(json!({ "replyTo": UNKNOWN_ID })),
            "replyTo",
        ),
        (
            "chat:send_message",
            send(json!({ "attachments": "nope" })),
            "attachments",
        ),
        ("chat:join_room", json!({}), "roomId"),
        ("chat:join_room", json!({ "roomId": 1 }), "roomId"),
        (
            "chat:join_room",
            json!({ "roomId": "not-a-uuid" }),
            "roomId",
        ),
        ("chat:leave_room", json!({ "room": r1 }), "roomId"),
        ("chat:typing", json!({ "roomId": r1 }), "isTyping"),
        (
            "chat:typing",
            json!({ "roomId": r1, "isTyping": "yes" }),
            "isTyping",
        ),
        ("chat:typing", json!({ "isTyping": true }), "roomId"),
        ("chat:edit_message", json!({ "content": "x" }), "messageId"),
        (
            "chat:edit_message",
            json!({ "messageId": "nope", "content": "x" }),
            "messageId",
        ),
        (
            "chat:edit_message",
            json!({ "messageId": valid_id }),
            "content",
        ),
        (
            "chat:edit_message",
            json!({ "messageId": valid_id, "content": false }),
            "content",
        ),
        ("chat:delete_message", json!({}), "messageId"),
        (
            "chat:delete_message",
            json!({ "messageId": 42 }),
            "messageId",
        ),
        ("chat:online_users", json!({ "roomId": "nope" }), "roomId"),
    ];
    for (event, payload, field) in cases {
        let ack = a.emit_ack(event, payload.clone()).await;
        let error = refused(&ack, "VALIDATION_FAILED");
        assert_eq!(error["details"]["field"], field, "{event} {payload}: {ack}");
    }
    let ack = a
        .emit_ack(
            "chat:send_message",
            send(json!({ "attachments": ["nope"] })),
        )
        .await;
    let error = refused(&ack, "VALIDATION_FAILED");
    assert!(
        error["details"]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("attachments")),
        "{ack}"
    );
    // Well-formed but naming nothing.
    for (event, payload) in [
        ("chat:send_message", send(json!({ "roomId": UNKNOWN_ID }))),
        ("chat:join_room", json!({ "roomId": UNKNOWN_ID })),
        ("chat:online_users", json!({ "roomId": UNKNOWN_ID })),
        (
            "chat:edit_message",
            json!({ "messageId": UNKNOWN_ID, "content": "x" }),
        ),
        ("chat:delete_message", json!({ "messageId": UNKNOWN_ID })),
        (
            "chat:send_message",
            send(json!({ "attachments": [UNKNOWN_ID] })),
        ),
    ] {
        refused(&a.emit_ack(event, payload).await, "NOT_FOUND");
    }
    // Without an ack callback, the bad payload is dropped quietly.
    a.send_raw(r#"42["chat:send_message","not an object"]"#);
    a.send_raw(r#"42["chat:send_message",{"roomId":5}]"#);

    // Still connected, still working, and nothing leaked to the room or the database.
    assert!(
        !a.closed_within(Duration::from_millis(100)).await,
        "the socket was dropped"
    );
    b.expect_no_event("chat:new_message", QUIET).await;
    b.expect_no_event("chat:message_updated", QUIET).await;
    let after = say(&a, &w.r1, "still here").await;
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, after);
    assert_eq!(history(&srv, &w.b, &w.r1).await, vec![after, valid]);
}

async fn an_oversized_socket_payload_is_refused_and_the_server_keeps_serving(backend: Backend) {
    // 64 KiB for JSON bodies and Socket.IO payloads, but messages long enough that only the
    // payload limit can refuse the big one.
    let srv = start_adjusted(backend, |c| {
        c.max_json_body = 64 * 1024;
        c.chat_max_message_chars = 1_000_000;
        c.chat_rate_burst = 1000;
        c.chat_rate_per_second = 1000.0;
    })
    .await;
    let w = world(&srv).await;
    let big_sender = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&big_sender, &w.r1).await;
    join(&b, &w.r1).await;

    let big = "x".repeat(200 * 1024);
    let answer = big_sender
        .try_emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": big, "clientId": "too-big" }),
            WAIT,
        )
        .await;
    match &answer {
        // Refused with an error ack, or the connection was closed: both leave the server whole.
        Some(ack) => {
            assert_eq!(ack["ok"], false, "an over-limit payload was accepted");
            let code = ack["error"]["code"].as_str().unwrap_or("");
            assert!(
                ["PAYLOAD_TOO_LARGE", "VALIDATION_FAILED"].contains(&code),
                "{ack}"
            );
        }
        None => assert!(
            big_sender.closed_within(WAIT).await,
            "no ack and the socket is still open"
        ),
    }
    b.expect_no_event("chat:new_message", QUIET).await;

    // A protocol-level garbage frame from yet another socket.
    let garbage = connect(&srv, &w.a).await;
    garbage.send_raw(r#"42["chat:send_message",{"#);
    garbage.send_raw("\u{7f}not a packet");

    // Everyone else carries on, the server stored nothing big, and a fresh socket works.
    let fresh = connect(&srv, &w.a).await;
    join(&fresh, &w.r1).await;
    let after = say(&fresh, &w.r1, "business as usual").await;
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, after);
    let reply = say(&b, &w.r1, "agreed").await;
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, reply);
    assert_eq!(history(&srv, &w.b, &w.r1).await, vec![reply, after]);
    assert_eq!(srv.client().get("/health").await.status, 200);
    // The same size over REST is 413.
    post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "x".repeat(200 * 1024) }),
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");
}

async fn a_burst_of_200_messages_reaches_every_member_exactly_once_and_history(backend: Backend) {
    let srv = fast_server(backend).await;
    let (teacher, course) = srv.course().await;
    let room = room_of(&course);
    let mut members = vec![teacher];
    for _ in 0..3 {
        let student = srv.register("student").await;
        srv.enroll(&student, &course).await;
        members.push(student);
    }
    let mut sockets = Vec::new();
    for member in &members {
        let socket = connect(&srv, member).await;
        join(&socket, &room).await;
        sockets.push(socket);
    }
    // A second tab of one member receives everything too.
    let tab = connect(&srv, &members[1]).await;
    join(&tab, &room).await;
    sockets.push(tab);

    // 4 clients × 50 messages, all in flight at once.
    let sends = sockets[..4].iter().enumerate().flat_map(|(s, socket)| {
        let room = room.clone();
        (0..50).map(move |n| {
            let payload = json!({ "roomId": room, "content": format!("burst {s} {n}"), "clientId": format!("burst-{s}-{n}") });
            async move { socket.emit_ack("chat:send_message", payload).await }
        })
    });
    let acks = join_all(sends).await;
    let acked: HashSet<String> = acks
        .iter()
        .map(|ack| id_of(&ok(ack)["message"]).to_owned())
        .collect();
    assert_eq!(acked.len(), 200, "every send acked with its own message");

    let deliveries = join_all(sockets.iter_mut().map(|socket| async move {
        let mut ids = Vec::new();
        for _ in 0..200 {
            let message = socket
                .expect_event("chat:new_message", Duration::from_secs(20))
                .await;
            ids.push(id_of(&message).to_owned());
        }
        socket.expect_no_event("chat:new_message", QUIET).await;
        ids
    }))
    .await;
    for (n, ids) in deliveries.iter().enumerate() {
        assert_eq!(set(ids).len(), 200, "socket {n} got duplicates");
        assert_eq!(set(ids), acked, "socket {n} got other messages");
    }

    let stored = history(&srv, &members[2], &room).await;
    assert_eq!(stored.len(), 200);
    assert_newest_first(&stored);
    assert_eq!(
        set(&stored
            .iter()
            .map(|v| id_of(v).to_owned())
            .collect::<Vec<_>>()),
        acked
    );
}

// ---------------------------------------------------------------------------------------------
// Membership changes and REST errors

async fn removing_an_enrollment_cuts_chat_access_at_once(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let side = room_of(&new_session(&srv, &w.t1, &w.c1).await);
    let mut a1 = connect(&srv, &w.a).await;
    let mut a2 = connect(&srv, &w.a).await;
    join(&a1, &w.r1).await;
    join(&a1, &side).await;
    join(&a2, &w.r1).await;
    let own = diffs_by_room(&mut a1, 2).await;
    assert_eq!(own[&w.r1], (ids_of(&[&w.a]), vec![]));
    assert_eq!(own[&side], (ids_of(&[&w.a]), vec![]));
    // B joins once A's joins are out, so its first diffs are its own joins.
    let mut b = connect(&srv, &w.b).await;
    for room in [&w.r1, &side] {
        let ack = join(&b, room).await;
        assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[&w.a, &w.b]));
    }
    let joined = diffs_by_room(&mut b, 2).await;
    assert_eq!(joined[&w.r1], (ids_of(&[&w.b]), vec![]));
    assert_eq!(joined[&side], (ids_of(&[&w.b]), vec![]));

    let reply = as_client(&srv, &w.t1)
        .delete(&api(&format!(
            "/courses/{}/enrollments/{}",
            id_of(&w.c1),
            w.a.id
        )))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The very next send is refused, on both paths and in both rooms.
    post_message(&srv, &w.a, &w.r1, json!({ "content": "am I still here?" }))
        .await
        .assert_error(403, "FORBIDDEN");
    for room in [&w.r1, &side] {
        refused(
            &a2.emit_ack(
                "chat:send_message",
                json!({ "roomId": room, "content": "am I still here?", "clientId": fresh_client_id() }),
            )
            .await,
            "FORBIDDEN",
        );
    }
    as_client(&srv, &w.a)
        .get(&messages_path(&w.r1))
        .await
        .assert_error(403, "FORBIDDEN");

    // The rooms are told A left, and A's tabs are out of them.
    let left = diffs_by_room(&mut b, 2).await;
    assert_eq!(left[&w.r1], (vec![], ids_of(&[&w.a])));
    assert_eq!(left[&side], (vec![], ids_of(&[&w.a])));
    let in_room = say(&b, &w.r1, "A is gone").await;
    let in_side = say(&b, &side, "gone here too").await;
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, in_room);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, in_side);
    a1.expect_no_event("chat:new_message", QUIET).await;
    a2.expect_no_event("chat:new_message", QUIET).await;
    refused(
        &a1.emit_ack("chat:typing", json!({ "roomId": w.r1, "isTyping": true }))
            .await,
        "FORBIDDEN",
    );
    refused(
        &a1.emit_ack("chat:join_room", json!({ "roomId": w.r1 }))
            .await,
        "FORBIDDEN",
    );
    let users = b
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[&w.b]));
    // A's sockets themselves stay connected (only the rooms are gone).
    assert!(!a1.closed_within(Duration::from_millis(50)).await);
}

async fn rest_chat_endpoints_answer_the_contract_error_codes(backend: Backend) {
    let srv = start(backend).await;
    let w = world(&srv).await;
    let message = posted(&srv, &w.a, &w.r1, "something").await;
    let id = id_of(&message);

    // No token, or a bad one: 401 everywhere.
    for client in [srv.client(), srv.client().bearer("not-a-token")] {
        client
            .get(&messages_path(&w.r1))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .post(&messages_path(&w.r1), json!({ "content": "hi" }))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .patch(&message_path(id), json!({ "content": "hi" }))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .delete(&message_path(id))
            .await
            .assert_error(401, "UNAUTHORIZED");
        client
            .get(&api("/chat/search?q=something"))
            .await
            .assert_error(401, "UNAUTHORIZED");
    }

    // 400 naming the field.
    let a = as_client(&srv, &w.a);
    assert_field(
        &a.post_raw(&messages_path(&w.r1), "application/json", "{\"content\":")
            .await,
        "body",
    );
    assert_field(
        &a.post_raw(&messages_path(&w.r1), "text/plain", "hello")
            .await,
        "body",
    );
    assert_field(
        &post_message(
            &srv,
            &w.a,
            &w.r1,
            json!({ "content": "x", "replyTo": "nope" }),
        )
        .await,
        "replyTo",
    );
    assert_field(
        &post_message(&srv, &w.b, &w.r2, json!({ "content": "x", "replyTo": id })).await,
        "replyTo",
    );
    assert_field(
        &post_message(
            &srv,
            &w.a,
            &w.r1,
            json!({ "content": "x", "attachments": "nope" }),
        )
        .await,
        "attachments",
    );
    assert_field(&a.patch(&message_path(id), json!({})).await, "content");
    assert_field(&a.get(&api("/chat/search")).await, "q");
    // The default length limit is 4,000 characters.
    let longest = post_message(&srv, &w.a, &w.r1, json!({ "content": "y".repeat(4000) })).await;
    assert_eq!(longest.status, 201, "{}", longest.body);
    assert_field(
        &post_message(&srv, &w.a, &w.r1, json!({ "content": "y".repeat(4001) })).await,
        "content",
    );
    // A reply within the room is fine and says what it answers.
    let reply = post_message(&srv, &w.b, &w.r1, json!({ "content": "re", "replyTo": id })).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["replyTo"], id);

    // 404: unknown or unparsable rooms and messages, files one may not read.
    for room in [UNKNOWN_ID, "not-a-room"] {
        a.get(&messages_path(room))
            .await
            .assert_error(404, "NOT_FOUND");
        post_message(&srv, &w.a, room, json!({ "content": "x" }))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    for message in [UNKNOWN_ID, "not-a-message"] {
        a.patch(&message_path(message), json!({ "content": "x" }))
            .await
            .assert_error(404, "NOT_FOUND");
        a.delete(&message_path(message))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "x", "attachments": [UNKNOWN_ID] }),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // 403: rooms of courses one is not in.
    as_client(&srv, &w.c)
        .get(&messages_path(&w.r1))
        .await
        .assert_error(403, "FORBIDDEN");
    post_message(&srv, &w.c, &w.r1, json!({ "content": "x" }))
        .await
        .assert_error(403, "FORBIDDEN");

    // 405 and 413.
    a.send(a.request(Method::PUT, &message_path(id)))
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "z".repeat(1_100_000) }),
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");

    // None of the refusals stored anything.
    assert_eq!(history(&srv, &w.b, &w.r1).await.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Attachments

/// A tiny but well-formed PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\0\x01\0\0\x05\0\x01\r\n-\xb4\0\0\0\0IEND\xaeB`\x82";

/// Uploads `PNG` as `name`, shared with `course` when given; returns the `file`.
async fn upload_png(srv: &TestServer, who: &Account, name: &str, course: Option<&Value>) -> Value {
    let mut form = reqwest::multipart::Form::new();
    if let Some(course) = course {
        form = form.text("courseId", id_of(course).to_owned());
    }
    let part = reqwest::multipart::Part::bytes(PNG)
        .file_name(name.to_owned())
        .mime_str("image/png")
        .unwrap();
    let client = as_client(srv, who);
    let reply = client
        .send(
            client
                .request(Method::POST, &api("/files/upload"))
                .multipart(form.part("file", part)),
        )
        .await;
    assert_eq!(reply.status, 201, "upload: {}", reply.body);
    reply.data()
}

/// Attachments without their `signedUrl`, whose expiry is set when each view is made.
fn unsigned(attachments: &Value) -> Value {
    let mut copy = attachments.clone();
    for item in copy.as_array_mut().expect("an array") {
        item.as_object_mut().unwrap().remove("signedUrl");
    }
    copy
}

async fn attachments_carry_the_file_until_it_is_deleted_and_then_say_so(backend: Backend) {
    let srv = start(backend).await;
    let w = world(&srv).await;
    let shared = upload_png(&srv, &w.a, "diagram.png", Some(&w.c1)).await;
    let private = upload_png(&srv, &w.a, "mine.png", None).await;

    // Over the socket: the room receives the message with both files in order, whole.
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;
    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({
                "roomId": w.r1,
                "content": "see attached",
                "clientId": fresh_client_id(),
                "attachments": [id_of(&shared), id_of(&private)],
            }),
        )
        .await;
    let sent = ok(&ack)["message"].clone();
    assert_eq!(
        unsigned(&sent["attachments"]),
        unsigned(&json!([shared, private]))
    );
    let received = b.expect_event("chat:new_message", WAIT).await;
    let attachments = received["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2);
    for (got, uploaded) in attachments.iter().zip([&shared, &private]) {
        for key in [
            "id",
            "url",
            "filename",
            "originalName",
            "size",
            "mimetype",
            "folder",
            "sha256",
            "courseId",
        ] {
            assert_eq!(got[key], uploaded[key], "{key}");
        }
    }
    // A member follows the attachment's signed link without any header.
    let bytes = reqwest::get(srv.url(attachments[0]["signedUrl"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), PNG);

    // Files the sender may not read cannot be attached: another user's private file, or a
    // course file seen from outside the course.
    let c_file = upload_png(&srv, &w.c, "c.png", None).await;
    refused(
        &a.emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "x", "clientId": fresh_client_id(), "attachments": [id_of(&c_file)] }),
        )
        .await,
        "NOT_FOUND",
    );
    post_message(
        &srv,
        &w.c,
        &w.r2,
        json!({ "content": "x", "attachments": [id_of(&shared)] }),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // A member of the course may pass its file on over REST.
    let passed_on = post_message(
        &srv,
        &w.b,
        &w.r1,
        json!({ "content": "again", "attachments": [id_of(&shared)] }),
    )
    .await;
    assert_eq!(passed_on.status, 201, "{}", passed_on.body);

    // Deleting the file leaves the messages readable; the attachment says it is gone.
    as_client(&srv, &w.a)
        .delete(&api(&format!("/files/{}", id_of(&shared))))
        .await
        .data();
    let items = history(&srv, &w.b, &w.r1).await;
    let first = items
        .iter()
        .find(|m| m["id"] == sent["id"])
        .expect("the message is still there");
    assert_eq!(
        unsigned(&first["attachments"]),
        unsigned(&json!([{ "id": shared["id"], "deleted": true }, private]))
    );
    let second = items
        .iter()
        .find(|m| m["id"] == passed_on.data()["id"])
        .unwrap();
    assert_eq!(
        second["attachments"],
        json!([{ "id": shared["id"], "deleted": true }])
    );
    // And the deleted file can no longer be attached.
    post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "x", "attachments": [id_of(&shared)] }),
    )
    .await
    .assert_error(404, "NOT_FOUND");
}
