//! Shadow candidates: a chain that sees the same messages as the active one but is never
//! enforced, whatever it decides or however it fails; what it would have decided is counted
//! and sampled (verdicts only, never content), its disagreements audited; promoted, it is
//! enforced as a new revision.

use super::*;

backend_tests!(
    a_shadow_chain_is_judged_never_enforced_and_promoted_when_ready,
    a_failing_shadow_chain_changes_nothing,
);

/// Waits until the shadow has judged `calls` messages (it runs after the active chain has
/// answered, off the request's path); the slot then.
async fn shadow_after(admin: &Client, calls: u64) -> Value {
    eventually(
        Duration::from_secs(5),
        &format!("{calls} shadow calls"),
        || async {
            let slot = slot_of(admin, "chat").await;
            (slot["shadow"]["calls"].as_u64() >= Some(calls)).then_some(slot)
        },
    )
    .await
}

async fn a_shadow_chain_is_judged_never_enforced_and_promoted_when_ready(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let template = install(&admin, fixtures::TEMPLATE, "template").await;
    let before = slot_of(&admin, "chat").await;

    // A candidate is checked like an active chain before it runs.
    for (chain, reason) in [
        (json!([{ "module": "f".repeat(64) }]), "unknown_module"),
        (
            json!([{ "module": "builtin:signaling-policy" }]),
            "wrong_world",
        ),
    ] {
        let reply = admin
            .put(&plugins("/chat/shadow"), json!({ "chain": chain }))
            .await;
        assert_refused(&reply, reason);
    }
    assert_eq!(slot_of(&admin, "chat").await["shadow"], Value::Null);

    let reply = admin
        .put(
            &plugins("/chat/shadow"),
            json!({ "chain": [template_link(&template, "forbidden words")] }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let slot = reply.data();
    assert_slot(&slot);
    assert_eq!(
        slot["revision"], before["revision"],
        "a shadow is no revision"
    );
    assert_eq!(slot["chain"][0]["sha256"], chat_builtin_sha256());
    let shadow = &slot["shadow"];
    assert_eq!(shadow["chain"][0]["sha256"], template.as_str(), "{shadow}");
    assert_eq!(
        (
            &shadow["calls"],
            &shadow["agree"],
            &shadow["disagree"],
            &shadow["samples"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!([]))
    );
    assert_eq!(revisions_of(&admin, "chat").await.len(), 1);

    // Not enforced: both messages are stored.
    let secret = "these forbidden words are in the shadow's list";
    assert_accepted(&say(&srv, &cast.student, &cast.room, secret).await);
    assert_accepted(&say(&srv, &cast.student, &cast.room, "hello").await);

    let slot = shadow_after(&admin, 2).await;
    assert_slot(&slot);
    let shadow = &slot["shadow"];
    assert_eq!(
        (&shadow["calls"], &shadow["agree"], &shadow["disagree"]),
        (&json!(2), &json!(1), &json!(1)),
        "{shadow}"
    );
    let samples = shadow["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1, "{shadow}");
    assert_keys(&samples[0], &["at", "active", "shadow"]);
    assert_utc_time(&samples[0]["at"]);
    assert_eq!(samples[0]["active"], json!({ "verdict": "allow" }));
    assert_eq!(
        samples[0]["shadow"],
        json!({ "verdict": "reject", "reason": "blocked_phrase" })
    );
    assert!(
        !slot.to_string().contains("forbidden words are"),
        "content never shows: {slot}"
    );

    // The disagreement is audited as the shadow's; the agreement is not.
    let audited = decisions_within(&admin, "shadow=true", 1).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    let decision = &audited[0];
    assert_eq!(decision["shadow"], true);
    assert_eq!(decision["verdict"], "reject");
    assert_eq!(decision["reason"], "blocked_phrase");
    assert_eq!(decision["plugin"]["sha256"], template.as_str());
    assert_eq!(decision["actorId"], cast.student.id.as_str());
    assert_eq!(decision["contentSha256"], sha256_hex(secret.as_bytes()));
    assert_eq!(decisions(&admin, "shadow=false").await, Vec::<Value>::new());

    // Promoted, the candidate is the active chain and is enforced.
    let reply = admin
        .post(&plugins("/chat/shadow/promote"), json!({}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let promoted = reply.data();
    assert_slot(&promoted);
    assert_eq!(
        promoted["revision"],
        before["revision"].as_u64().unwrap() + 1
    );
    assert_eq!(promoted["shadow"], Value::Null);
    assert_eq!(promoted["chain"][0]["sha256"], template.as_str());
    assert_eq!(promoted["activatedBy"], cast.admin.id.as_str());
    let newest = &revisions_of(&admin, "chat").await[0];
    assert_eq!(newest["source"], "promote");
    assert_eq!(
        newest["chain"],
        json!([template_link(&template, "forbidden words")])
    );
    assert_rejected(
        &say(&srv, &cast.student, &cast.room, secret).await,
        "blocked_phrase",
    );

    // Nothing left to promote.
    admin
        .post(&plugins("/chat/shadow/promote"), json!({}))
        .await
        .assert_error(409, "CONFLICT");

    // A shadow started and stopped: gone from the slot, and no longer asked.
    let started = admin
        .put(
            &plugins("/chat/shadow"),
            json!({ "chain": [{ "module": "builtin:chat-moderation" }] }),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(started.data()["shadow"].is_object());
    let stopped = admin.delete(&plugins("/chat/shadow")).await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_slot(&stopped.data());
    assert_eq!(stopped.data()["shadow"], Value::Null);
    assert_eq!(
        stopped.data()["revision"],
        promoted["revision"],
        "stopping a shadow is no revision"
    );
    assert_accepted(&say(&srv, &cast.student, &cast.room, "after the shadow").await);
    assert_eq!(slot_of(&admin, "chat").await["shadow"], Value::Null);
    admin
        .post(&plugins("/chat/shadow/promote"), json!({}))
        .await
        .assert_error(409, "CONFLICT");
    // Stopping when there is none is no error: the slot has no shadow, as asked.
    let again = admin.delete(&plugins("/chat/shadow")).await;
    assert_eq!(again.status, 200, "{}", again.body);
}

async fn a_failing_shadow_chain_changes_nothing(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let panic = install(&admin, fixtures::PANIC, "panic").await;
    let reply = admin
        .put(
            &plugins("/chat/shadow"),
            json!({ "chain": [{ "module": panic }] }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The candidate traps on this message; the message is stored all the same.
    assert_accepted(&say(&srv, &cast.student, &cast.room, "don't panic").await);
    let slot = shadow_after(&admin, 1).await;
    let shadow = &slot["shadow"];
    assert_eq!(shadow["disagree"], 1, "{shadow}");
    assert_eq!(
        shadow["samples"][0]["active"]["verdict"], "allow",
        "{shadow}"
    );
    assert_ne!(
        shadow["samples"][0]["shadow"]["verdict"], "allow",
        "{shadow}"
    );
    assert_eq!(shadow["chain"][0]["stats"]["errors"], 1, "{shadow}");
    // The active chain did not notice.
    assert_eq!(slot["chain"][0]["stats"]["errors"], 0, "{slot}");
    assert_eq!(slot["chain"][0]["stats"]["calls"], 1, "{slot}");
}
