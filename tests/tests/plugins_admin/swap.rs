//! Swapping chains under load: while students send over their sockets, the admin swaps the
//! chat chain back and forth between a version that refuses a word and one that flags it.
//! Every message is answered exactly once, by one version or the other and never by a
//! failure, and the room's history holds exactly the messages that were accepted.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use super::*;

backend_tests!(chains_swapped_under_load_answer_every_message_once_and_lose_none);

const SENDERS: usize = 4;
const SWAPS: usize = 16;
/// Each sender goes on at least this long, whatever the swaps take.
const MIN_SENDS: usize = 20;

async fn chains_swapped_under_load_answer_every_message_once_and_lose_none(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let refuse = json!([builtin_list("reject", "zebra", "no_zebras")]);
    let flag = json!([builtin_list("flag", "zebra", "zebra_spotted")]);
    let first = activate(&admin, "chat", refuse.clone()).await;

    let mut students = vec![cast.student.clone()];
    for _ in 1..SENDERS {
        let student = srv.register("student").await;
        srv.enroll(&student, &cast.course).await;
        students.push(student);
    }
    let mut sockets = Vec::new();
    for student in &students {
        sockets.push(connect(&srv, student).await);
    }

    let swapping = Arc::new(AtomicBool::new(true));
    let senders = sockets.iter().enumerate().map(|(s, socket)| {
        let swapping = swapping.clone();
        let room = cast.room.clone();
        async move {
            let mut acks = Vec::new();
            let mut n = 0;
            while swapping.load(Ordering::Relaxed) || n < MIN_SENDS {
                let client_id = format!("s{s}-{n}");
                let ack = socket
                    .emit_ack(
                        "chat:send_message",
                        json!({ "roomId": room, "content": format!("a zebra, {client_id}"), "clientId": client_id }),
                    )
                    .await;
                acks.push((client_id, ack));
                n += 1;
            }
            acks
        }
    });
    let swapper = async {
        for i in 0..SWAPS {
            let chain = if i % 2 == 0 { &flag } else { &refuse };
            activate(&admin, "chat", chain.clone()).await;
        }
        swapping.store(false, Ordering::Relaxed);
    };
    let (acks, ()) = tokio::join!(futures::future::join_all(senders), swapper);

    let mut accepted = BTreeSet::new();
    let (mut flagged, mut refused) = (0, 0);
    for (client_id, ack) in acks.iter().flatten() {
        if ack["ok"] == true {
            let message = &ack["message"];
            assert_eq!(message["clientId"], client_id.as_str(), "{ack}");
            assert_eq!(
                message["flagged"], true,
                "accepted only by the flagging version: {ack}"
            );
            assert!(accepted.insert(client_id.clone()), "{client_id} twice");
            flagged += 1;
        } else {
            assert_eq!(
                (&ack["error"]["code"], &ack["error"]["details"]["reason"]),
                (&json!("REJECTED_BY_POLICY"), &json!("no_zebras")),
                "refused only by the refusing version, never by a failure: {ack}"
            );
            refused += 1;
        }
    }
    assert!(
        flagged > 0 && refused > 0,
        "both versions served while the swaps ran: {flagged} flagged, {refused} refused"
    );
    for socket in &sockets {
        assert_eq!(socket.stray_acks(), 0, "an event acknowledged twice");
    }

    // History holds exactly the accepted messages, each once.
    let mut stored = Vec::new();
    let mut before: Option<String> = None;
    let reader = as_client(&srv, &cast.student);
    loop {
        let mut path = api(&format!("/chat/rooms/{}/messages?limit=100", cast.room));
        if let Some(before) = &before {
            path.push_str(&format!("&before={before}"));
        }
        let page = reader.get(&path).await.data();
        for message in page["items"].as_array().unwrap() {
            stored.push(message["clientId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        stored.len(),
        accepted.len(),
        "no message stored twice or lost"
    );
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), accepted);

    // Every swap was a revision of its own, in order.
    let revisions = revisions_of(&admin, "chat").await;
    let numbers: Vec<u64> = revisions
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    let newest = first["revision"].as_u64().unwrap() + SWAPS as u64;
    assert_eq!(numbers, (1..=newest).rev().collect::<Vec<_>>());
    assert_eq!(slot_of(&admin, "chat").await["revision"], newest);
    // The last swap (an odd one) put the refusing version back.
    assert_eq!(revisions[0]["chain"], refuse);
}
