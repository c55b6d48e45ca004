//! The policy plugins' metrics reach `GET /metrics`, from every server of a process.
//!
//! A test binary of its own on purpose: the engine keeps the metric handles it resolves when
//! it loads its plugins, so what matters is the first server a process builds, before
//! anything else has installed a recorder. Here that is always the first server below.

use lyceum_tests::{Account, Backend, TestServer, check::*};
use serde_json::json;

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Posts one message to the room of a fresh course: one call of the chat slot.
async fn send_a_message(srv: &TestServer) -> Account {
    let (teacher, course) = srv.course().await;
    let room = course["roomId"].as_str().unwrap();
    let reply = as_client(srv, &teacher)
        .post(
            &api(&format!("/chat/rooms/{room}/messages")),
            json!({ "content": "hello" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    teacher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_calls_of_every_server_in_the_process_reach_metrics() {
    let first = TestServer::start(Backend::Sqlite).await;
    let second = TestServer::start(Backend::Sqlite).await;
    send_a_message(&first).await;
    send_a_message(&second).await;

    for srv in [&first, &second] {
        let reply = srv.client().get("/metrics").await;
        assert_eq!(reply.status, 200);
        let text = &reply.text;
        let chat = [("slot", "chat"), ("plugin", "chat-moderation")];
        let calls = sum(text, "lyceum_plugin_calls_total", &chat);
        assert!(
            calls >= 2.0,
            "one call per server, both in one registry; got {calls} in:\n{}",
            plugin_lines(text)
        );
        assert!(
            sum(
                text,
                "lyceum_plugin_calls_total",
                &[("slot", "chat"), ("outcome", "allow")]
            ) >= 2.0,
            "{}",
            plugin_lines(text)
        );
        let timed = sum(text, "lyceum_plugin_call_duration_seconds_count", &chat);
        assert!(timed >= 2.0, "durations: {}", plugin_lines(text));
        assert!(
            text.contains("# TYPE lyceum_plugin_call_duration_seconds histogram"),
            "{}",
            plugin_lines(text)
        );
    }
}

/// The plugin lines of a scrape, for failure messages.
fn plugin_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("lyceum_plugin_"))
        .collect();
    if lines.is_empty() {
        "(no lyceum_plugin_ metric at all)".to_owned()
    } else {
        lines.join("\n")
    }
}
