//! Fan-out: events emitted the moment a socket connects are answered, a message reaches every
//! socket in its room (its sender's included) and no other room, and a burst of messages
//! reaches every member exactly once and history in order.

use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use lyceum_tests::{
    Backend, backend_tests,
    chat::{connect, post_message, room_of},
    check::id_of,
    socket::SocketClient,
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    events_emitted_right_after_connecting_are_answered,
    messages_reach_their_room_sender_included_and_no_other_room,
    a_burst_of_200_messages_reaches_every_member_exactly_once_and_history,
);

/// Browser clients join their rooms in their `connect` handler, the moment CONNECT arrives.
async fn events_emitted_right_after_connecting_are_answered(backend: Backend) {
    // A hundred sockets of one user, beyond the default cap of sockets per user.
    let srv = start_adjusted(backend, |c| c.socket_max_per_user = 100).await;
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
