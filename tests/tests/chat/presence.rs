//! Presence: a user counts once across tabs until the last tab goes, diffs are net per batch
//! and never contradict an acknowledgement, and a burst of joins reaches the room as a few
//! diffs.

use std::time::Duration;

use futures::future::join_all;
use lyceum_tests::{
    Account, Backend, TestServer, backend_tests,
    chat::{connect, room_of},
    check::assert_keys,
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    presence_counts_a_user_once_across_tabs_until_the_last_tab_goes,
    presence_diffs_are_net_per_batch_and_never_contradict_an_ack,
    a_burst_of_20_joins_reaches_the_room_as_a_few_diffs,
);

/// A server whose rooms hear of presence changes within `interval`.
async fn presence_server(backend: Backend, interval: Duration) -> TestServer {
    TestServer::start_small(backend, |config| {
        config.presence_batch_interval = interval;
    })
    .await
}

async fn presence_counts_a_user_once_across_tabs_until_the_last_tab_goes(backend: Backend) {
    let srv = presence_server(backend, Duration::from_millis(50)).await;
    let w = world(&srv).await;
    let (a, b) = (&w.a, &w.b);
    let mut watcher = connect(&srv, b).await;
    let ack = join(&watcher, &w.r1).await;
    assert_keys(&ack, &["ok", "onlineUsers", "roomId"]);
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[b]));
    // The joiner hears of its own join too: a repeat of its ack.
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (ids_of(&[b]), vec![]));
    // C is in room 2 only: nothing that happens in room 1 reaches it (checked at the end).
    let mut c = connect(&srv, &w.c).await;
    join(&c, &w.r2).await;
    assert_eq!(next_diff(&mut c, &w.r2).await, (ids_of(&[&w.c]), vec![]));

    // A's first tab: A comes online, with its name, in the ack and in the room's diff.
    let mut tab1 = connect(&srv, a).await;
    let ack = join(&tab1, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[a, b]));
    assert!(
        ack["onlineUsers"]
            .as_array()
            .unwrap()
            .contains(&json!({ "userId": a.id, "name": a.name })),
        "{ack}"
    );
    let diff = watcher.expect_event("chat:presence_diff", WAIT).await;
    assert_eq!(
        diff,
        json!({ "roomId": w.r1, "joins": [{ "userId": a.id, "name": a.name }], "leaves": [] })
    );
    assert_eq!(tab1.expect_event("chat:presence_diff", WAIT).await, diff);

    // A second tab changes nothing: A counts once, and nobody is told anything.
    let mut tab2 = connect(&srv, a).await;
    let ack = join(&tab2, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[a, b]));
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // The first tab leaves: A is still online through the second.
    assert_eq!(
        tab1.emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
            .await,
        json!({ "ok": true })
    );
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[a, b]));
    // The tab that left gets the room's messages no more; the other still does.
    let said = say(&watcher, &w.r1, "still there?").await;
    assert_eq!(tab2.expect_event("chat:new_message", WAIT).await, said);
    tab1.expect_no_event("chat:new_message", QUIET).await;
    // Leaving a room one is not in changes nothing.
    ok(&tab1
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // The last tab disconnects (the client's Socket.IO disconnect): A goes offline.
    tab2.send_raw("41");
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (vec![], ids_of(&[a])));
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[b]));

    // Two more tabs; one's connection just closes (Engine.IO close), which is a disconnect
    // too: A stays online, and goes offline once the other leaves.
    let tab3 = connect(&srv, a).await;
    join(&tab3, &w.r1).await;
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (ids_of(&[a]), vec![]));
    let tab4 = connect(&srv, a).await;
    join(&tab4, &w.r1).await;
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    tab3.send_raw("1");
    assert!(tab3.closed_within(WAIT).await, "the closed tab stays open");
    watcher.expect_no_event("chat:presence_diff", QUIET).await;
    ok(&tab4
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    assert_eq!(next_diff(&mut watcher, &w.r1).await, (vec![], ids_of(&[a])));
    // Room 1's diffs never reached room 2.
    c.expect_no_event("chat:presence_diff", QUIET).await;
    // Nor was the whole list ever broadcast again (contract v1.1).
    watcher.expect_no_event("chat:online_users", QUIET).await;
}

async fn presence_diffs_are_net_per_batch_and_never_contradict_an_ack(backend: Backend) {
    // The longest batch the contract allows, so that each step below fits in one.
    let srv = presence_server(backend, Duration::from_secs(1)).await;
    let w = world(&srv).await;
    let mut watcher = connect(&srv, &w.b).await;
    join(&watcher, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.b]), vec![])
    );

    // A comes and goes within one batch: the room hears nothing at all.
    let tab = connect(&srv, &w.a).await;
    join(&tab, &w.r1).await;
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    watcher
        .expect_no_event("chat:presence_diff", Duration::from_millis(1500))
        .await;

    // The same, but the teacher joins in between and its ack lists A: the room must then be
    // told that A left, or the teacher would show A online for good. The watcher, who never
    // listed A, gets a leave of someone it does not list, which changes nothing for it.
    join(&tab, &w.r1).await;
    let mut teacher = connect(&srv, &w.t1).await;
    let ack = join(&teacher, &w.r1).await;
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&[&w.a, &w.b, &w.t1]));
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    let expected = (ids_of(&[&w.t1]), ids_of(&[&w.a]));
    assert_eq!(next_diff(&mut teacher, &w.r1).await, expected);
    assert_eq!(next_diff(&mut watcher, &w.r1).await, expected);

    // Leaving and coming back within a batch is no news either, unless someone listed the
    // user in between: the watcher's question comes while A is away, so the room is told A
    // is back.
    join(&tab, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    assert_eq!(
        next_diff(&mut teacher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    join(&tab, &w.r1).await;
    watcher
        .expect_no_event("chat:presence_diff", Duration::from_millis(1500))
        .await;
    ok(&tab
        .emit_ack("chat:leave_room", json!({ "roomId": w.r1 }))
        .await);
    let users = watcher
        .emit_ack("chat:online_users", json!({ "roomId": w.r1 }))
        .await;
    assert_eq!(user_ids(&ok(&users)["users"]), ids_of(&[&w.b, &w.t1]));
    join(&tab, &w.r1).await;
    assert_eq!(
        next_diff(&mut watcher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
    assert_eq!(
        next_diff(&mut teacher, &w.r1).await,
        (ids_of(&[&w.a]), vec![])
    );
}

async fn a_burst_of_20_joins_reaches_the_room_as_a_few_diffs(backend: Backend) {
    let srv = presence_server(backend, Duration::from_millis(500)).await;
    let (teacher, course) = srv.course().await;
    let room = room_of(&course);
    let students = join_all((0..20).map(|_| async {
        let student = srv.register("student").await;
        srv.enroll(&student, &course).await;
        student
    }))
    .await;
    let mut watcher = connect(&srv, &teacher).await;
    join(&watcher, &room).await;
    assert_eq!(
        next_diff(&mut watcher, &room).await,
        (ids_of(&[&teacher]), vec![])
    );

    let sockets = join_all(students.iter().map(|s| connect(&srv, s))).await;
    join_all(sockets.iter().map(|s| join(s, &room))).await;
    let mut joined = Vec::new();
    let mut diffs = 0;
    while joined.len() < students.len() {
        let diff = watcher.expect_event("chat:presence_diff", WAIT).await;
        assert_eq!(diff["roomId"], room.as_str(), "{diff}");
        let (joins, leaves) = diff_of(&diff);
        assert!(leaves.is_empty(), "{diff}");
        for entry in diff["joins"].as_array().unwrap() {
            let student = students
                .iter()
                .find(|s| entry["userId"] == s.id.as_str())
                .unwrap_or_else(|| panic!("{entry} is none of the joiners"));
            assert_eq!(entry["name"], student.name.as_str());
        }
        joined.extend(joins);
        diffs += 1;
    }
    // Joins within one interval share a diff; a burst may straddle a batch boundary or two.
    assert!(diffs <= 3, "20 joins came as {diffs} diffs");
    joined.sort();
    assert_eq!(joined, ids_of(&students.iter().collect::<Vec<_>>()));
    watcher.expect_no_event("chat:presence_diff", QUIET).await;

    // A later joiner's ack holds the whole room, in one list.
    let late = connect(&srv, &teacher).await;
    let ack = join(&late, &room).await;
    let mut everyone: Vec<&Account> = students.iter().collect();
    everyone.push(&teacher);
    assert_eq!(user_ids(&ack["onlineUsers"]), ids_of(&everyone));
}
