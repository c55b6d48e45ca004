//! PUT /plugins/{slot}: a chain that passes every check serves the next message, as a new
//! revision; a chain that fails any check is refused with the reason and the slot goes on
//! exactly as before.

use super::*;

backend_tests!(
    a_chain_put_serves_the_next_message_as_a_new_revision,
    a_refused_chain_leaves_the_active_one_serving_unchanged,
);

async fn a_chain_put_serves_the_next_message_as_a_new_revision(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let before = slot_of(&admin, "chat").await;
    assert_accepted(&say(&srv, &cast.student, &cast.room, "no more forbidden words").await);

    let template = install(&admin, fixtures::TEMPLATE, "template").await;
    let chain = json!([template_link(&template, "forbidden words")]);
    let slot = activate(&admin, "chat", chain.clone()).await;
    assert_eq!(slot["slot"], "chat");
    assert_eq!(
        slot["revision"],
        before["revision"].as_u64().unwrap() + 1,
        "{slot}"
    );
    assert_eq!(slot["activatedBy"], cast.admin.id.as_str(), "{slot}");
    assert_eq!(slot["failure"], "fail-closed", "the default: {slot}");
    assert_eq!(slot["shadow"], Value::Null);
    let links = slot["chain"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{slot}");
    assert_eq!(links[0]["sha256"], template.as_str());
    assert_eq!(links[0]["name"], "template");
    assert_eq!(
        links[0]["config"],
        json!({ "blocked": ["forbidden words"] })
    );
    assert_eq!(
        links[0]["stats"]["calls"], 0,
        "stats start with the revision"
    );
    assert!(
        assert_utc_time(&slot["activatedAt"]) > assert_utc_time(&before["activatedAt"]),
        "{slot}"
    );

    // The very next message meets the new chain, over REST and over the socket.
    let refused = say(
        &srv,
        &cast.student,
        &cast.room,
        "These are FORBIDDEN WORDS.",
    )
    .await;
    assert_rejected(&refused, "blocked_phrase");
    assert_eq!(
        refused.body["error"]["message"], "This message contains a blocked phrase.",
        "the plugin's own reason: {}",
        refused.body
    );
    let socket = connect(&srv, &cast.student).await;
    let ack = socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": cast.room, "content": "forbidden words again", "clientId": "c-1" }),
        )
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "REJECTED_BY_POLICY", "{ack}");
    assert_eq!(ack["error"]["details"]["reason"], "blocked_phrase", "{ack}");
    // The default plugin is gone from the chain: profanity is no longer masked.
    let kept = assert_accepted(&say(&srv, &cast.student, &cast.room, "oh shit").await);
    assert_eq!(kept["content"], "oh shit");

    // The revision is listed, with the links as they were given.
    let revisions = revisions_of(&admin, "chat").await;
    assert_eq!(revisions[0]["revision"], slot["revision"]);
    assert_eq!(revisions[0]["source"], "api");
    assert_eq!(revisions[0]["activatedBy"], cast.admin.id.as_str());
    assert_eq!(revisions[0]["chain"], chain);

    // The slot's failure mode is the admin's to choose.
    let reply = admin
        .put(
            &plugins("/chat"),
            json!({ "chain": chain, "failure": "fail-open" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["failure"], "fail-open");
    assert_eq!(reply.data()["chain"][0]["failure"], "fail-open");
    assert_eq!(
        revisions_of(&admin, "chat").await[0]["failure"],
        "fail-open"
    );
}

async fn a_refused_chain_leaves_the_active_one_serving_unchanged(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let template = install(&admin, fixtures::TEMPLATE, "template").await;
    let slow = install(&admin, fixtures::SLOW, "slow").await;
    let active = activate(
        &admin,
        "chat",
        json!([template_link(&template, "forbidden words")]),
    )
    .await;
    let history = revisions_of(&admin, "chat").await;
    let files = slot_of(&admin, "files").await;

    let unknown = "0".repeat(64);
    let refusals = [
        (
            "a module never uploaded",
            "chat",
            json!([{ "module": unknown }]),
            "unknown_module",
        ),
        (
            "a builtin that does not exist",
            "chat",
            json!([{ "module": "builtin:spam-filter" }]),
            "unknown_module",
        ),
        (
            "neither a hash nor a builtin",
            "chat",
            json!([{ "module": "./template.wasm" }]),
            "unknown_module",
        ),
        (
            "the first link fine, the second unknown",
            "chat",
            json!([template_link(&template, "x"), { "module": unknown }]),
            "unknown_module",
        ),
        (
            "a smoke call that cannot finish within the deadline",
            "chat",
            json!([{ "module": slow, "config": { "iterations": 1_000_000_000_000_u64 }, "limits": { "deadlineMs": 5 } }]),
            "config_rejected",
        ),
        (
            "a chat plugin in the files slot",
            "files",
            // Named apart from the chat slot's `template`: a name is a key-value namespace.
            json!([{ "module": template, "name": "template-for-files" }]),
            "wrong_world",
        ),
        (
            "the chat builtin in the files slot",
            "files",
            json!([{ "module": "builtin:chat-moderation" }]),
            "wrong_world",
        ),
    ];
    for (what, slot, chain, reason) in refusals {
        let reply = put_chain(&admin, slot, chain).await;
        assert!(
            reply.status == 400 && reply.body["error"]["details"]["reason"] == reason,
            "{what}: {}",
            reply.body
        );
        assert_refused(&reply, reason);
    }

    // Bodies that are not a chain at all.
    for body in [
        json!({}),
        json!({ "chain": "builtin:chat-moderation" }),
        json!({ "chain": [{ "module": "builtin:chat-moderation", "colour": "red" }] }),
        json!({ "chain": [], "failure": "fail-sometimes" }),
        json!({ "chain": [{ "module": "builtin:chat-moderation", "limits": { "deadlineMs": -1 } }] }),
    ] {
        let reply = admin.put(&plugins("/chat"), body.clone()).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.body["success"], false, "{body}");
    }

    // Nothing changed: the same revision, the same history, the same behaviour.
    let now = slot_of(&admin, "chat").await;
    assert_eq!(now["revision"], active["revision"]);
    assert_eq!(now["chain"][0]["sha256"], template.as_str());
    assert_eq!(revisions_of(&admin, "chat").await, history);
    assert_eq!(
        slot_of(&admin, "files").await["revision"],
        files["revision"]
    );
    assert_eq!(revisions_of(&admin, "files").await.len(), 1);
    assert_rejected(
        &say(&srv, &cast.student, &cast.room, "forbidden words").await,
        "blocked_phrase",
    );
    assert_accepted(&say(&srv, &cast.student, &cast.room, "allowed words").await);
}
