//! Typing notices reach the others in the room, never the sender or its other tabs.

use lyceum_tests::{Backend, backend_tests, chat::connect};
use serde_json::json;

use crate::support::*;

backend_tests!(typing_reaches_the_others_but_never_the_sender_or_its_other_tabs,);

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
