//! History: pages come newest first without skips or repeats while messages are being sent.

use std::collections::HashSet;

use futures::future::join_all;
use lyceum_tests::{
    Account, Backend, TestServer, backend_tests,
    chat::messages_path,
    check::{as_client, id_of},
};
use serde_json::json;

use crate::support::*;

backend_tests!(history_pages_newest_first_without_skips_or_repeats_under_concurrent_sends,);

/// Sends `per_sender` messages from each of `senders` over REST, all at once, on a task of
/// their own; yields the ids.
fn send_concurrently(
    srv: &TestServer,
    senders: &[&Account],
    room: &str,
    per_sender: usize,
    tag: &str,
) -> tokio::task::JoinHandle<Vec<String>> {
    let mut jobs = Vec::new();
    for (s, who) in senders.iter().enumerate() {
        for n in 0..per_sender {
            let client = as_client(srv, who);
            let path = messages_path(room);
            let body = json!({ "content": format!("{tag} {s} {n}"), "clientId": format!("{tag}-{s}-{n}") });
            jobs.push(async move {
                let reply = client.post(&path, body).await;
                assert_eq!(reply.status, 201, "send: {}", reply.body);
                id_of(&reply.data()).to_owned()
            });
        }
    }
    tokio::spawn(join_all(jobs))
}

async fn history_pages_newest_first_without_skips_or_repeats_under_concurrent_sends(
    backend: Backend,
) {
    let srv = fast_server(backend).await;
    let w = world(&srv).await;
    let d = srv.register("student").await;
    srv.enroll(&d, &w.c1).await;
    let senders = [&w.t1, &w.a, &w.b, &d];

    // 4 senders × 25 messages, all at once.
    let before = send_concurrently(&srv, &senders, &w.r1, 25, "early")
        .await
        .expect("first batch");
    assert_eq!(set(&before).len(), 100);

    // Walk pages of 7 while another 100 arrive: the walk sees each message at most once, in
    // order, every earlier message, and nothing but the two batches.
    let during = send_concurrently(&srv, &senders, &w.r1, 25, "late");
    let walked = pages(&srv, &w.a, &w.r1, 7).await.concat();
    let during = during.await.expect("second batch");
    assert_newest_first(&walked);
    let walked_ids: Vec<String> = walked.iter().map(|v| id_of(v).to_owned()).collect();
    assert_eq!(
        set(&walked_ids).len(),
        walked_ids.len(),
        "a message repeated"
    );
    let walked_ids = set(&walked_ids);
    assert!(
        set(&before).is_subset(&walked_ids),
        "{} earlier messages skipped",
        set(&before).difference(&walked_ids).count()
    );
    let all: HashSet<String> = before.iter().chain(&during).cloned().collect();
    assert_eq!(all.len(), 200);
    assert!(walked_ids.is_subset(&all));

    // Afterwards: all 200, once each, newest first, in full pages of 7 but the last.
    let walk = pages(&srv, &w.b, &w.r1, 7).await;
    let sizes: Vec<usize> = walk.iter().map(Vec::len).collect();
    assert_eq!(sizes, [vec![7; 28], vec![4]].concat());
    let everything = walk.concat();
    assert_newest_first(&everything);
    assert_eq!(
        set(&everything
            .iter()
            .map(|v| id_of(v).to_owned())
            .collect::<Vec<_>>()),
        all
    );
    // A page that ends exactly at the oldest message says there is no more.
    let walk = pages(&srv, &w.b, &w.r1, 50).await;
    assert_eq!(
        walk.iter().map(Vec::len).collect::<Vec<_>>(),
        [50, 50, 50, 50]
    );
    assert_eq!(walk.concat(), everything);
    // `cursor` is accepted as a synonym of `before`; the default page is 50.
    let first = as_client(&srv, &w.a)
        .get(&messages_path(&w.r1))
        .await
        .data();
    assert_eq!(first["items"].as_array().unwrap().len(), 50);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = as_client(&srv, &w.a)
        .get(&format!("{}?cursor={cursor}", messages_path(&w.r1)))
        .await
        .data();
    assert_eq!(second["items"].as_array().unwrap()[..], everything[50..100]);

    // Paging parameters are validated.
    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
        assert_field(
            &as_client(&srv, &w.a)
                .get(&format!("{}?{query}", messages_path(&w.r1)))
                .await,
            "limit",
        );
    }
    assert_field(
        &as_client(&srv, &w.a)
            .get(&format!("{}?before=not-an-id", messages_path(&w.r1)))
            .await,
        "before",
    );
}
