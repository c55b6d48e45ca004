//! How the slots start: each serves its builtin plugin, and that chain (from `plugins.toml`
//! or the defaults) is already a recorded `file` revision, with the plugin described as the
//! contract says and counting the calls it answers.

use super::*;

backend_tests!(
    every_slot_starts_on_its_builtin_chain_recorded_as_a_file_revision,
    a_plugins_stats_count_the_calls_it_answered,
);

async fn every_slot_starts_on_its_builtin_chain_recorded_as_a_file_revision(backend: Backend) {
    let srv = start(backend).await;
    let admin = as_client(&srv, &srv.admin().await);
    let overview = admin.get(&plugins("")).await.data();
    let slots = overview["slots"].as_array().expect("slots");
    let names: Vec<&str> = slots.iter().map(|s| s["slot"].as_str().unwrap()).collect();
    assert_eq!(names, ["chat", "files", "signaling"]);
    assert_eq!(overview["loading"], json!([]), "every chain is active");

    let builtins = [
        ("chat", "chat-moderation", builtin::CHAT_MODERATION),
        ("files", "file-validation", builtin::FILE_VALIDATION),
        ("signaling", "signaling-policy", builtin::SIGNALING_POLICY),
    ];
    for (slot, (name, world, bytes)) in slots.iter().zip(builtins) {
        assert_slot(slot);
        assert_eq!(slot["slot"], name);
        assert_eq!(slot["failure"], "fail-closed", "{slot}");
        assert_eq!(slot["activatedBy"], Value::Null, "no one: the file: {slot}");
        assert_eq!(slot["shadow"], Value::Null, "{slot}");
        let chain = slot["chain"].as_array().unwrap();
        assert_eq!(chain.len(), 1, "{slot}");
        let plugin = &chain[0];
        assert_eq!(plugin["sha256"], sha256_hex(bytes), "{plugin}");
        assert_eq!(plugin["abi"], "component", "{plugin}");
        assert_eq!(plugin["witVersion"], "0.1.0", "{plugin}");
        assert_eq!(plugin["failure"], "fail-closed", "{plugin}");
        assert_eq!(
            plugin["config"],
            json!({}),
            "the default configuration: {plugin}"
        );
        assert!(
            plugin["name"].as_str().is_some_and(|n| n.contains(world)),
            "{plugin}"
        );
        assert!(
            plugin["limits"]["deadlineMs"]
                .as_u64()
                .is_some_and(|d| d > 0),
            "{plugin}"
        );
        assert!(
            plugin["limits"]["memoryMib"]
                .as_u64()
                .is_some_and(|m| m > 0),
            "{plugin}"
        );

        // GET /plugins/{slot} is the same slot.
        let alone = slot_of(&admin, name).await;
        assert_eq!(alone["revision"], slot["revision"]);
        assert_eq!(alone["chain"][0]["sha256"], plugin["sha256"]);

        // The chain it serves is a recorded revision: the file's.
        let revisions = revisions_of(&admin, name).await;
        assert_eq!(revisions.len(), 1, "{revisions:?}");
        let revision = &revisions[0];
        assert_eq!(revision["revision"], slot["revision"]);
        assert_eq!(revision["source"], "file");
        assert_eq!(revision["activatedBy"], Value::Null);
        assert_eq!(revision["activatedAt"], slot["activatedAt"]);
        assert_eq!(
            revision["chain"],
            json!([{ "module": format!("builtin:{world}") }]),
            "{revision}"
        );
    }
}

async fn a_plugins_stats_count_the_calls_it_answered(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let stats = |slot: &Value| slot["chain"][0]["stats"].clone();
    let before = stats(&slot_of(&admin, "chat").await);
    assert_eq!(before["calls"], 0, "{before}");
    assert_eq!(before["verdicts"], json!({}), "{before}");

    for n in 0..3 {
        assert_accepted(&say(&srv, &cast.student, &cast.room, &format!("hello {n}")).await);
    }
    // The default plugin masks profanity: a rewrite, not an allow.
    let masked = assert_accepted(&say(&srv, &cast.student, &cast.room, "oh shit").await);
    assert_eq!(masked["content"], "oh ****", "{masked}");

    let after = stats(&slot_of(&admin, "chat").await);
    assert_eq!(after["calls"], 4, "{after}");
    assert_eq!(after["errors"], 0, "{after}");
    assert_eq!(after["timeouts"], 0, "{after}");
    assert_eq!(
        after["verdicts"],
        json!({ "allow": 3, "rewrite": 1 }),
        "{after}"
    );
    assert!(after["p50Us"].as_u64().unwrap() > 0, "{after}");
    assert!(
        after["p99Us"].as_u64().unwrap() >= after["p50Us"].as_u64().unwrap(),
        "{after}"
    );
    // Other slots were not asked.
    let files = stats(&slot_of(&admin, "files").await);
    assert_eq!(files["calls"], 0, "{files}");
}
