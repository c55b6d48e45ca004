//! What a send must carry and how it is answered: a resend with the same `clientId` returns the
//! first message and broadcasts nothing, `clientId` is required on the socket and optional
//! over REST, content must be non-blank and within the configured length, and sending too
//! fast is rate limited with a retry delay.

use std::collections::HashSet;

use futures::future::join_all;
use lyceum_tests::{
    Backend, backend_tests,
    chat::{connect, post_message},
    check::{as_client, id_of},
};
use serde_json::{Value, json};

use crate::support::*;

backend_tests!(
    a_resend_with_the_same_client_id_returns_the_first_message_and_broadcasts_nothing,
    client_ids_are_required_on_the_socket_optional_over_rest_and_at_most_64_characters,
    content_must_be_non_blank_and_within_the_configured_length,
    sending_too_fast_is_rate_limited_with_a_retry_delay,
);

/// Asserts a VALIDATION_FAILED acknowledgement naming `field`.
#[track_caller]
fn refused_field(ack: &Value, field: &str) {
    let error = refused(ack, "VALIDATION_FAILED");
    assert_eq!(error["details"]["field"], field, "ack: {ack}");
}

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
