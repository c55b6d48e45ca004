//! A slot's history: every change a numbered revision, listed newest first and paged;
//! rollback restores the chain before the active one and, asked again, the one before that;
//! and the newest revision is what a restarted server serves.

use super::*;

backend_tests!(
    revisions_are_listed_newest_first_in_pages,
    each_rollback_goes_one_revision_further_back,
    a_restarted_server_serves_the_newest_revision_not_the_files_chain,
);

/// The contract's `revision` (and `restoredFrom`, which says what a rollback restored).
#[track_caller]
fn assert_revision(revision: &Value) {
    for key in [
        "revision",
        "activatedAt",
        "activatedBy",
        "source",
        "chain",
        "restoredFrom",
    ] {
        assert!(revision.get(key).is_some(), "no {key} in {revision}");
    }
    assert_utc_time(&revision["activatedAt"]);
    assert!(
        ["api", "file", "rollback", "promote"].contains(&revision["source"].as_str().unwrap()),
        "{revision}"
    );
    assert!(revision["chain"].is_array(), "{revision}");
}

async fn revisions_are_listed_newest_first_in_pages(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let mut chains = vec![json!([{ "module": "builtin:chat-moderation" }])];
    for word in ["alpha", "beta", "gamma", "delta"] {
        let chain = json!([builtin_list("reject", word, "no_greek")]);
        activate(&admin, "chat", chain.clone()).await;
        chains.push(chain);
    }

    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = plugins("/chat/revisions?limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = admin.get(&path).await.data();
        let items = page["items"].as_array().unwrap().clone();
        assert!(items.len() <= 2, "{page}");
        pages.push(items);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "paging never ends");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let all: Vec<Value> = pages.concat();
    let numbers: Vec<u64> = all
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [5, 4, 3, 2, 1]);
    for (revision, chain) in all.iter().zip(chains.iter().rev()) {
        assert_revision(revision);
        assert_eq!(&revision["chain"], chain, "{revision}");
    }
    assert!(all[..4].iter().all(|r| r["source"] == "api"));
    assert_eq!(all[4]["source"], "file");
    // Pages of the other slots are their own.
    assert_eq!(revisions_of(&admin, "files").await.len(), 1);

    for bad in ["limit=0", "limit=101", "cursor=yesterday", "limit=ten"] {
        admin
            .get(&plugins(&format!("/chat/revisions?{bad}")))
            .await
            .assert_error(400, "VALIDATION_FAILED");
    }
}

async fn each_rollback_goes_one_revision_further_back(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let template = install(&admin, fixtures::TEMPLATE, "template").await;
    let say = |text: &'static str| say(&srv, &cast.student, &cast.room, text);

    // 1: the file's default; 2: refuse zebras; 3: refuse forbidden words (only).
    let refuse_zebras = json!([builtin_list("reject", "zebra", "no_zebras")]);
    activate(&admin, "chat", refuse_zebras.clone()).await;
    activate(
        &admin,
        "chat",
        json!([template_link(&template, "forbidden words")]),
    )
    .await;
    assert_accepted(&say("a zebra").await);
    assert_rejected(&say("forbidden words").await, "blocked_phrase");

    // 4 restores 2.
    let reply = admin.post(&plugins("/chat/rollback"), json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let slot = reply.data();
    assert_slot(&slot);
    assert_eq!(slot["revision"], 4);
    assert_eq!(slot["activatedBy"], cast.admin.id.as_str());
    assert_rejected(&say("a zebra").await, "no_zebras");
    assert_accepted(&say("forbidden words").await);
    let newest = &revisions_of(&admin, "chat").await[0];
    assert_revision(newest);
    assert_eq!(
        (
            &newest["revision"],
            &newest["source"],
            &newest["restoredFrom"]
        ),
        (&json!(4), &json!("rollback"), &json!(2))
    );
    assert_eq!(newest["chain"], refuse_zebras);

    // 5 restores 1, the file's default chain: not 3 again, which a rollback of the rollback
    // would be.
    let slot = admin
        .post(&plugins("/chat/rollback"), json!({}))
        .await
        .data();
    assert_eq!(slot["revision"], 5);
    assert_eq!(slot["chain"][0]["sha256"], chat_builtin_sha256());
    assert_accepted(&say("a zebra").await);
    assert_accepted(&say("forbidden words").await);
    let newest = &revisions_of(&admin, "chat").await[0];
    assert_eq!(
        (
            &newest["revision"],
            &newest["source"],
            &newest["restoredFrom"]
        ),
        (&json!(5), &json!("rollback"), &json!(1))
    );
    assert_eq!(
        newest["chain"],
        json!([{ "module": "builtin:chat-moderation" }])
    );

    // Nothing before 1.
    admin
        .post(&plugins("/chat/rollback"), json!({}))
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(slot_of(&admin, "chat").await["revision"], 5);
    assert_eq!(revisions_of(&admin, "chat").await.len(), 5);

    // A slot never changed has nothing to roll back to either.
    admin
        .post(&plugins("/signaling/rollback"), json!({}))
        .await
        .assert_error(409, "CONFLICT");

    // Revisions other than rollbacks say nothing was restored.
    for revision in &revisions_of(&admin, "chat").await[2..] {
        assert_eq!(revision["restoredFrom"], Value::Null, "{revision}");
    }
}

async fn a_restarted_server_serves_the_newest_revision_not_the_files_chain(backend: Backend) {
    let mut srv = start(backend).await;
    let cast = cast(&srv).await;
    let template = install(&cast.admin(&srv), fixtures::TEMPLATE, "template").await;
    let chain = json!([template_link(&template, "forbidden words")]);
    let active = activate(&cast.admin(&srv), "chat", chain.clone()).await;
    let history = revisions_of(&cast.admin(&srv), "chat").await;

    srv.restart().await;
    let admin = cast.admin(&srv);

    let slot = slot_of(&admin, "chat").await;
    assert_eq!(slot["revision"], active["revision"], "{slot}");
    assert_eq!(slot["activatedAt"], active["activatedAt"]);
    assert_eq!(slot["activatedBy"], cast.admin.id.as_str());
    assert_eq!(slot["chain"][0]["sha256"], template.as_str());
    assert_eq!(slot["chain"][0]["config"], chain[0]["config"]);
    // Recorded once, not again at start-up.
    assert_eq!(revisions_of(&admin, "chat").await, history);
    // The uploaded module came back from disk and serves.
    assert_rejected(
        &say(&srv, &cast.student, &cast.room, "forbidden words").await,
        "blocked_phrase",
    );
    assert_accepted(&say(&srv, &cast.student, &cast.room, "oh shit").await);
    // And the history still rolls back across the restart.
    let slot = admin
        .post(&plugins("/chat/rollback"), json!({}))
        .await
        .data();
    assert_eq!(slot["chain"][0]["sha256"], chat_builtin_sha256());
}
