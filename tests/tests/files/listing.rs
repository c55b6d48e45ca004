//! `GET /files`: the caller's own files, newest first, paged without repeats or skips, and its
//! paging parameters validated.

use lyceum_tests::{
    Backend, backend_tests,
    check::{api, as_client, assert_keys, ids},
};
use serde_json::Value;

use crate::{payloads::*, support::*};

backend_tests!(files_are_listed_newest_first_and_paged_without_repeats_or_skips,);

async fn files_are_listed_newest_first_and_paged_without_repeats_or_skips(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let mut created = Vec::new();
    for n in 0..5u64 {
        let file = uploaded(
            &srv,
            &ada,
            &format!("page{n}.png"),
            &png(160 + n),
            "image/png",
        )
        .await;
        created.push(id(&file).to_owned());
    }
    let bobs = uploaded(&srv, &bob, "bob.png", &png(170), "image/png").await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list_files(&srv, &ada).await), newest_first);
    assert_eq!(
        ids(&list_files(&srv, &bob).await),
        vec![id(&bobs).to_owned()]
    );

    let client = as_client(&srv, &ada);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => api(&format!("/files?limit=2&cursor={c}")),
            None => api("/files?limit=2"),
        };
        let reply = client.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let data = reply.data();
        assert_keys(&data, &["items", "nextCursor"]);
        let items = data["items"].as_array().unwrap();
        for item in items {
            assert_file(item);
        }
        sizes.push(items.len());
        seen.extend(ids(items));
        match &data["nextCursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            Value::Null => break,
            other => panic!("nextCursor {other}"),
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, newest_first, "each file once, newest first");

    let reply = client.get(&api("/files?cursor=&limit=100")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["nextCursor"], Value::Null);
    for limit in ["0", "101", "ten"] {
        let reply = client.get(&api(&format!("/files?limit={limit}"))).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), "limit");
    }
    let reply = client.get(&api("/files?cursor=!!!")).await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "cursor");
}
