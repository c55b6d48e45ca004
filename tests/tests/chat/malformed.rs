//! Malformed and oversized input: bad socket payloads get error acknowledgements (or are
//! dropped quietly without an ack callback) and the socket stays usable; a payload over the
//! limit, or a garbage frame, costs only its own socket, and the same size over REST is 413.

use std::time::Duration;

use lyceum_tests::{
    Backend, backend_tests,
    chat::{connect, post_message},
    check::{UNKNOWN_ID, id_of},
};
use serde_json::{Value, json};

use crate::support::*;

backend_tests!(
    malformed_socket_payloads_get_error_acks_and_the_socket_stays_usable,
    an_oversized_socket_payload_is_refused_and_the_server_keeps_serving,
);

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
