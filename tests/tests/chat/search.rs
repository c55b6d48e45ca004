//! Search: matches ranked within the rooms the caller may read, deleted messages forgotten,
//! and hostile query syntax never a server error.

use std::collections::HashSet;

use lyceum_tests::{
    Account, Backend, Reply, TestServer, backend_tests,
    chat::room_of,
    check::{UNKNOWN_ID, as_client, assert_keys, id_of},
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    search_ranks_matches_within_readable_rooms_and_forgets_deleted_messages,
    hostile_search_syntax_is_never_a_server_error,
);

/// The ids of a successful search, in order.
#[track_caller]
fn found(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "search: {}", reply.body);
    reply.data()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| id_of(v).to_owned())
        .collect()
}

/// One message in `room` by `who`; its id.
async fn note(srv: &TestServer, who: &Account, room: &str, content: &str) -> String {
    id_of(&posted(srv, who, room, content).await).to_owned()
}

async fn search_ranks_matches_within_readable_rooms_and_forgets_deleted_messages(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let admin = srv.admin().await;
    let d = srv.register("student").await;
    let session = new_session(&srv, &w.t1, &w.c1).await;
    let side = room_of(&session);

    let both = note(&srv, &w.a, &w.r1, "Raft leader election explained slowly").await;
    let one = note(&srv, &w.b, &w.r1, "the raft paper is long").await;
    let _none = note(&srv, &w.a, &w.r1, "nothing to see here").await;
    let thrice = note(&srv, &w.a, &w.r1, "quorum quorum quorum").await;
    let once = note(&srv, &w.a, &w.r1, "a quorum of five").await;
    let in_side = note(&srv, &w.t1, &side, "side chat about raft").await;
    let in_r2 = note(&srv, &w.c, &w.r2, "raft election in the other room").await;

    // The message with both words comes first; every result has one of them; room 2 (which
    // A cannot read) never appears.
    let results = found(&search(&srv, &w.a, &[("q", "raft election")]).await);
    assert_eq!(
        results.first(),
        Some(&both),
        "best match first: {results:?}"
    );
    assert!(set(&results).is_subset(&set(&[both.clone(), one.clone(), in_side.clone()])));
    // Term frequency counts too.
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "quorum")]).await),
        [thrice.clone(), once.clone()]
    );

    // Across rooms: exactly what each caller may read, session side chats included.
    let readable = |ids: &[&String]| ids.iter().map(|id| (*id).clone()).collect::<HashSet<_>>();
    let cases: [(&Account, HashSet<String>); 5] = [
        (&w.a, readable(&[&both, &one, &in_side])),
        (&w.b, readable(&[&both, &one, &in_side, &in_r2])),
        (&w.c, readable(&[&in_r2])),
        (&d, readable(&[])),
        (&admin, readable(&[&both, &one, &in_side, &in_r2])),
    ];
    for (who, expected) in &cases {
        let results = found(&search(&srv, who, &[("q", "raft")]).await);
        assert_eq!(results.len(), expected.len(), "{results:?}");
        assert_eq!(&set(&results), expected, "raft for {}", who.name);
    }
    // Case does not matter.
    assert_eq!(
        set(&found(&search(&srv, &w.a, &[("q", "RAFT")]).await)),
        cases[0].1
    );
    // Within one room.
    assert_eq!(
        found(&search(&srv, &w.b, &[("q", "raft"), ("roomId", &w.r2)]).await),
        std::slice::from_ref(&in_r2)
    );
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "raft"), ("roomId", &side)]).await),
        std::slice::from_ref(&in_side)
    );
    search(&srv, &w.a, &[("q", "raft"), ("roomId", &w.r2)])
        .await
        .assert_error(403, "FORBIDDEN");
    search(&srv, &w.a, &[("q", "raft"), ("roomId", UNKNOWN_ID)])
        .await
        .assert_error(404, "NOT_FOUND");
    assert_field(
        &search(&srv, &w.a, &[("q", "raft"), ("roomId", "nope")]).await,
        "roomId",
    );

    // Paging one result at a time walks every match once.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("q", "raft"), ("limit", "1")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let reply = search(&srv, &w.b, &params).await;
        walked.extend(found(&reply));
        match reply.data()["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(walked.len() <= 10, "search paging never ends");
    }
    assert_eq!(walked.len(), 4, "{walked:?}");
    assert_eq!(set(&walked), cases[1].1);

    // q is required.
    for params in [vec![], vec![("q", "")], vec![("q", "   ")]] {
        assert_field(&search(&srv, &w.a, &params).await, "q");
    }

    // A deleted message never matches; an edited one matches its new words only.
    let reply = as_client(&srv, &w.a).delete(&message_path(&both)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(found(&search(&srv, &w.a, &[("q", "election")]).await).is_empty());
    assert!(found(&search(&srv, &w.a, &[("q", "leader explained")]).await).is_empty());
    assert_eq!(
        found(&search(&srv, &admin, &[("q", "election")]).await),
        std::slice::from_ref(&in_r2)
    );
    let reply = as_client(&srv, &w.b)
        .patch(
            &message_path(&one),
            json!({ "content": "the paxos paper is long" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        set(&found(&search(&srv, &w.a, &[("q", "raft")]).await)),
        set(std::slice::from_ref(&in_side))
    );
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "paxos")]).await),
        std::slice::from_ref(&one)
    );

    // Results are full messages.
    let reply = search(&srv, &w.a, &[("q", "paxos")]).await;
    let item = &reply.data()["items"][0];
    assert_keys(item, &MESSAGE_KEYS);
    assert_eq!(item["content"], "the paxos paper is long");
}

async fn hostile_search_syntax_is_never_a_server_error(backend: Backend) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let target = note(&srv, &w.a, &w.r1, "consensus needs a quorum").await;

    let hostile = [
        "\"",
        "\"\"",
        "*",
        "quorum*",
        "NEAR(",
        "NEAR(quorum consensus, 2)",
        "OR",
        "quorum OR",
        "AND NOT",
        "-",
        "-quorum",
        ":",
        "content:quorum",
        "'",
        "'quorum",
        "(",
        ")",
        "((quorum",
        "quorum)",
        "^quorum",
        "quorum & consensus",
        "quorum | !consensus",
        "quorum <-> consensus",
        "quorum:*",
        "!!",
        "\\",
        "%",
        "_",
        "{}",
        "[quorum]",
        "'; DROP TABLE chat_messages; --",
        "\u{0}",
        "😀",
        "quorum \u{200b} consensus",
    ];
    let long = "quorum ".repeat(60);
    for q in hostile.iter().copied().chain([long.as_str()]) {
        let reply = search(&srv, &w.a, &[("q", q)]).await;
        assert_ne!(reply.status, 500, "q={q:?}: {}", reply.body);
        if reply.status == 200 {
            let data = reply.data();
            assert!(data["items"].is_array(), "q={q:?}: {}", reply.body);
            for item in data["items"].as_array().unwrap() {
                assert_eq!(item["roomId"], w.r1.as_str(), "q={q:?}");
            }
        } else {
            reply.assert_error(400, "VALIDATION_FAILED");
        }
    }
    // Words wrapped in syntax are still words.
    for q in [
        "\"quorum\"",
        "quorum*",
        "(quorum)",
        "-quorum",
        "quorum\"",
        "'quorum'",
    ] {
        let reply = search(&srv, &w.a, &[("q", q)]).await;
        assert_eq!(found(&reply), std::slice::from_ref(&target), "q={q:?}");
    }
    // And the server still answers normally afterwards.
    assert_eq!(
        found(&search(&srv, &w.a, &[("q", "consensus quorum")]).await),
        [target]
    );
    assert_eq!(srv.client().get("/ready").await.status, 200);
}
