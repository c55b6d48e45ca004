//! Who is in a room: outsiders can neither join nor send nor read (admins can), a live
//! session's side chat is a room of its own for the course members, and removing an
//! enrollment cuts chat access at once.

use std::{collections::HashMap, time::Duration};

use lyceum_tests::{
    Backend, backend_tests,
    chat::{connect, messages_path, post_message, room_of},
    check::{UNKNOWN_ID, api, as_client, id_of},
    socket::SocketClient,
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    outsiders_can_neither_join_nor_send_nor_read_and_admins_can,
    a_sessions_side_chat_is_a_room_of_its_own_for_the_course_members,
    removing_an_enrollment_cuts_chat_access_at_once,
);

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
