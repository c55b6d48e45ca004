//! Edits and deletes: only the sender edits and the room sees the update; the sender, the
//! course instructor and admins delete, leaving a tombstone.

use lyceum_tests::{
    Backend, backend_tests,
    chat::connect,
    check::{UNKNOWN_ID, as_client, assert_keys, id_of},
};
use serde_json::{Value, json};

use crate::support::*;

backend_tests!(
    only_the_sender_edits_and_the_room_sees_the_update,
    sender_instructor_and_admin_delete_leaving_a_tombstone,
);

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
