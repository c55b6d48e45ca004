//! The server's side of the policy plugin path, seen from a client: "too fast" has one
//! shape whoever says it (a plugin's `rate_limited` refusal is RATE_LIMITED with a retry
//! delay, like the server's own limit), the default moderation plugin adds no rate limit of
//! its own, and the request id a client sends is the request's id.
//!
//! (That plugins are told that id is checked where it is handed over, in the server's unit
//! tests of `service::policy` and `http`; the plugin metrics have a test binary of their
//! own, `plugin_metrics`.)

use lyceum::config::Config;
use lyceum_tests::{
    Account, Backend, Reply, TestServer, backend_tests, chat::connect, check::*, small_pool,
    socket::SocketClient, write_plugins_toml,
};
use serde_json::{Value, json};

backend_tests!(
    a_plugins_rate_limit_answers_rate_limited_with_a_retry_delay_on_socket_and_rest,
    with_the_default_plugins_the_only_chat_rate_limit_is_the_servers,
    a_request_keeps_the_id_its_client_sent_when_it_is_fit_for_logs,
);

/// The default moderation plugin with a rate limit of its own: two messages per hour.
const PLUGIN_RATE_LIMIT: &str = r#"
[[chat.plugins]]
source = "builtin:chat-moderation"

[chat.plugins.config]
rate_limit = { messages = 2, window_seconds = 3600 }
"#;

/// A server whose `plugins.toml` is `plugins` (none: the defaults) and whose own chat rate
/// limit is `burst` messages, then one per 20 s.
async fn start(backend: Backend, plugins: Option<&str>, burst: u32) -> TestServer {
    let plugins = plugins.map(str::to_owned);
    TestServer::start_with(backend, move |config: &mut Config| {
        small_pool(backend, config);
        config.chat_rate_burst = burst;
        config.chat_rate_per_second = 0.05;
        if let Some(text) = plugins {
            write_plugins_toml(config, &text);
        }
    })
    .await
}

/// A student enrolled in a fresh course, and the course's room.
async fn student_in_a_course(srv: &TestServer) -> (Account, String) {
    let (_, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    (student, course["roomId"].as_str().unwrap().to_owned())
}

async fn send(socket: &SocketClient, room: &str, n: usize) -> Value {
    socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": room, "content": format!("message {n}"), "clientId": format!("c-{n}") }),
        )
        .await
}

/// Sends over the socket until a send is refused (at most `limit` sends); the refusal and
/// how many passed before it.
async fn send_until_refused(socket: &SocketClient, room: &str, limit: usize) -> (Value, usize) {
    for n in 0..limit {
        let ack = send(socket, room, n).await;
        if ack["ok"] != true {
            return (ack, n);
        }
    }
    panic!("{limit} sends in a row passed");
}

/// The `error` of an ack refusing with RATE_LIMITED, after checking its shape; the delay.
#[track_caller]
fn rate_limited_ack(ack: &Value) -> u64 {
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "RATE_LIMITED", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    ack["error"]["details"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no details.retryAfter in {ack}"))
}

/// The delay of a 429 RATE_LIMITED reply, after checking that header and body agree.
#[track_caller]
fn rate_limited_reply(reply: &Reply) -> u64 {
    reply.assert_error(429, "RATE_LIMITED");
    let header: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        reply.body["error"]["details"]["retryAfter"], header,
        "{}",
        reply.body
    );
    header
}

async fn a_plugins_rate_limit_answers_rate_limited_with_a_retry_delay_on_socket_and_rest(
    backend: Backend,
) {
    // The server's own limit is out of reach: every refusal below is the plugin's.
    let srv = start(backend, Some(PLUGIN_RATE_LIMIT), 1000).await;
    let (student, room) = student_in_a_course(&srv).await;
    let socket = connect(&srv, &student).await;

    let (refusal, passed) = send_until_refused(&socket, &room, 5).await;
    // Two per window (one of an hour: it would take an unlucky moment for a new window to
    // begin during this test and let up to two more through).
    assert!(
        (2..=4).contains(&passed),
        "{passed} passed before {refusal}"
    );
    assert_eq!(rate_limited_ack(&refusal), 1, "the documented fixed delay");

    let rest = as_client(&srv, &student);
    let reply = rest
        .post(
            &api(&format!("/chat/rooms/{room}/messages")),
            json!({ "content": "over rest" }),
        )
        .await;
    assert_eq!(rate_limited_reply(&reply), 1);

    // Edits are moderated, so the plugin's limit counts them too.
    let first = send(&socket, &room, 0).await;
    assert_eq!(
        first["ok"], true,
        "a resend is answered without moderation: {first}"
    );
    let id = first["message"]["id"].as_str().unwrap();
    let edit = rest
        .patch(
            &api(&format!("/chat/messages/{id}")),
            json!({ "content": "edited" }),
        )
        .await;
    assert_eq!(rate_limited_reply(&edit), 1);
    let edit = socket
        .emit_ack(
            "chat:edit_message",
            json!({ "messageId": id, "content": "edited" }),
        )
        .await;
    assert_eq!(rate_limited_ack(&edit), 1);
}

async fn with_the_default_plugins_the_only_chat_rate_limit_is_the_servers(backend: Backend) {
    // Far beyond what the moderation plugin used to allow by default (20 per 10 s).
    let srv = start(backend, None, 30).await;
    let (student, room) = student_in_a_course(&srv).await;
    let socket = connect(&srv, &student).await;
    let (refusal, passed) = send_until_refused(&socket, &room, 40).await;
    assert_eq!(passed, 30, "the server's burst, no less: {refusal}");
    // The server's token bucket: one more message in 20 s.
    let retry = rate_limited_ack(&refusal);
    assert!((1..=20).contains(&retry), "retryAfter {retry}");
    let reply = as_client(&srv, &student)
        .post(
            &api(&format!("/chat/rooms/{room}/messages")),
            json!({ "content": "over rest" }),
        )
        .await;
    assert!((1..=20).contains(&rate_limited_reply(&reply)));
}

async fn a_request_keeps_the_id_its_client_sent_when_it_is_fit_for_logs(backend: Backend) {
    let srv = start(backend, None, 1000).await;
    let (student, room) = student_in_a_course(&srv).await;
    let client = as_client(&srv, &student);
    let post = |ids: &[String]| {
        let mut request = client
            .request(
                reqwest::Method::POST,
                &api(&format!("/chat/rooms/{room}/messages")),
            )
            .json(&json!({ "content": "traced" }));
        for id in ids {
            request = request.header("x-request-id", id);
        }
        client.send(request)
    };

    // A plugin call was made on the way (moderation), under this id.
    let reply = post(&["lesson-42.send:7".to_owned()]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.headers["x-request-id"], "lesson-42.send:7");

    // Unfit to be logged or handed on: too long, with spaces, or more than one. The request
    // gets an id of its own instead.
    let unfit = [
        vec!["x".repeat(129)],
        vec!["two words".to_owned()],
        vec!["one".to_owned(), "two".to_owned()],
    ];
    for sent in unfit {
        let reply = post(&sent).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{sent:?} answered {id}");
    }
}
