//! The REST chat endpoints answer the contract's error codes: 401 without a valid token, 400
//! naming the field, 404 for unknown rooms, messages and files, 403 for other courses' rooms,
//! 405 and 413; and no refusal stores anything.

use lyceum_tests::{
    Backend, backend_tests,
    chat::{messages_path, post_message},
    check::{UNKNOWN_ID, api, as_client, id_of},
};
use reqwest::Method;
use serde_json::json;

use crate::support::*;

backend_tests!(rest_chat_endpoints_answer_the_contract_error_codes,);

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
