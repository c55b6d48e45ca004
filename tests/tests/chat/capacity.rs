//! Chat under load and the memory the send path keeps: a full write queue refuses at once and
//! loses nothing it acknowledged; remembered memberships never outlive a change of them.

use std::collections::HashSet;

use futures::future::join_all;
use lyceum_tests::{
    Backend, TestServer, backend_tests,
    chat::{connect, messages_path},
    check::{api, as_client, id_of},
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    a_full_write_queue_refuses_at_once_and_loses_no_acknowledged_message,
    membership_changes_take_effect_at_once_on_the_send_path,
);

/// A writer that holds one message at a time: a burst must overflow it.
async fn one_slot_writer(backend: Backend) -> TestServer {
    start_adjusted(backend, |c| {
        c.chat_rate_burst = 10_000;
        c.chat_rate_per_second = 10_000.0;
        c.chat_write_queue = 1;
        c.chat_write_batch = 1;
    })
    .await
}

async fn a_full_write_queue_refuses_at_once_and_loses_no_acknowledged_message(backend: Backend) {
    let srv = one_slot_writer(backend).await;
    let w = world(&srv).await;
    let (a, b) = (connect(&srv, &w.a).await, connect(&srv, &w.b).await);
    let room = &w.r1;
    let sends = (0..100).map(|i| {
        let socket = if i % 2 == 0 { &a } else { &b };
        let client_id = format!("burst-{i}");
        async move {
            let ack = socket
                .emit_ack(
                    "chat:send_message",
                    json!({"roomId": room, "content": format!("message {i}"), "clientId": client_id}),
                )
                .await;
            (client_id, ack)
        }
    });
    let acks = join_all(sends).await;

    let mut acked = HashSet::new();
    let mut refused_ids = HashSet::new();
    for (client_id, ack) in &acks {
        if ack["ok"] == true {
            acked.insert(client_id.clone());
        } else {
            let error = refused(ack, "RATE_LIMITED");
            assert!(
                error["details"]["retryAfter"]
                    .as_u64()
                    .is_some_and(|s| s >= 1),
                "a refusal says when to retry: {ack}"
            );
            refused_ids.insert(client_id.clone());
        }
    }
    assert!(
        !refused_ids.is_empty(),
        "100 sends at once must overflow a one-message queue"
    );
    assert!(
        !acked.is_empty(),
        "the writer keeps storing while it refuses"
    );

    // History holds exactly the acknowledged messages.
    let history = as_client(&srv, &w.a)
        .get(&format!("{}?limit=100", messages_path(&w.r1)))
        .await;
    assert_eq!(history.status, 200, "{}", history.body);
    let stored: HashSet<String> = history.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["clientId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, acked);

    // A refused message was not stored, so sending it again creates it.
    let retry = refused_ids.iter().next().unwrap();
    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({"roomId": w.r1, "content": "again", "clientId": retry}),
        )
        .await;
    assert_eq!(ok(&ack)["message"]["content"], "again", "{ack}");
}

async fn membership_changes_take_effect_at_once_on_the_send_path(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let c = as_client(&srv, &w.c);
    let send = |text: &str| json!({"content": text});

    // C is not in course 1: refused, and the refusal is remembered...
    c.post(&messages_path(&w.r1), send("knock"))
        .await
        .assert_error(403, "FORBIDDEN");
    c.post(&messages_path(&w.r1), send("knock"))
        .await
        .assert_error(403, "FORBIDDEN");
    // ...until C enrolls: then C may write at once.
    srv.enroll(&w.c, &w.c1).await;
    let reply = c.post(&messages_path(&w.r1), send("hello")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let socket = connect(&srv, &w.c).await;
    ok(&socket
        .emit_ack("chat:join_room", json!({"roomId": w.r1}))
        .await);

    // Leaving the course shuts the door at once, over REST and on the socket.
    let leave = c
        .delete(&api(&format!(
            "/courses/{}/enrollments/{}",
            id_of(&w.c1),
            w.c.id
        )))
        .await;
    assert_eq!(leave.status, 200, "{}", leave.body);
    c.post(&messages_path(&w.r1), send("still here?"))
        .await
        .assert_error(403, "FORBIDDEN");
    refused(
        &socket
            .emit_ack(
                "chat:send_message",
                json!({"roomId": w.r1, "content": "still here?", "clientId": fresh_client_id()}),
            )
            .await,
        "FORBIDDEN",
    );

    // A deleted course takes its room with it, though members had just written there.
    let a = as_client(&srv, &w.a);
    assert_eq!(
        a.post(&messages_path(&w.r1), send("last")).await.status,
        201
    );
    let gone = as_client(&srv, &w.t1)
        .delete(&api(&format!("/courses/{}", id_of(&w.c1))))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    a.post(&messages_path(&w.r1), send("anyone?"))
        .await
        .assert_error(404, "NOT_FOUND");
}
