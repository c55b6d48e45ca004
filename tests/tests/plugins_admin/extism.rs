//! An Extism module is a module like any other to operators: uploaded and named by its
//! SHA-256 (`abi: "extism"`), checked against the slot's world, activated as a revision,
//! counted and audited; students meet its verdicts exactly as they meet a component's.

use super::*;

backend_tests!(
    an_extism_module_is_installed_and_serves_the_chat_slot_like_a_component,
    an_extism_module_for_another_world_or_version_is_refused_with_the_reason,
);

async fn an_extism_module_is_installed_and_serves_the_chat_slot_like_a_component(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);

    let reply = upload(
        &admin,
        component(fixtures::EXTISM_SAMPLE),
        Some("extism-sample"),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let module = reply.data();
    assert_eq!(module["abi"], "extism", "{module}");
    assert_eq!(module["world"], "chat-moderation", "{module}");
    assert_eq!(module["witVersion"], "0.1.0", "{module}");
    let sha256 = module["sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha256, sha256_hex(&component(fixtures::EXTISM_SAMPLE)));

    let slot = activate(
        &admin,
        "chat",
        json!([{ "module": sha256, "name": "extism-sample", "config": { "blocked": ["buy followers"] } }]),
    )
    .await;
    assert_eq!(slot["chain"][0]["abi"], "extism", "{slot}");

    assert_accepted(&say(&srv, &cast.student, &cast.room, "Hello, class.").await);
    let refused = say(
        &srv,
        &cast.student,
        &cast.room,
        "Cheap: BUY FOLLOWERS today",
    )
    .await;
    assert_rejected(&refused, "blocked_phrase");
    assert_eq!(
        refused.body["error"]["message"],
        "This message contains a blocked phrase."
    );

    let plugin = slot_of(&admin, "chat").await["chain"][0].clone();
    assert_plugin(&plugin);
    assert_eq!(plugin["stats"]["calls"], 2, "{plugin}");
    assert_eq!(plugin["stats"]["verdicts"]["reject"], 1, "{plugin}");

    let audited = decisions_within(&admin, "slot=chat&verdict=reject", 1).await;
    assert_eq!(
        audited[0]["plugin"]["sha256"],
        sha256.as_str(),
        "{audited:?}"
    );
    assert_eq!(audited[0]["reason"], "blocked_phrase", "{audited:?}");
}

async fn an_extism_module_for_another_world_or_version_is_refused_with_the_reason(
    backend: Backend,
) {
    let srv = start(backend).await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let sha256 = install(&admin, fixtures::EXTISM_SAMPLE, "extism-sample").await;

    let reply = put_chain(&admin, "files", json!([{ "module": sha256 }])).await;
    assert_refused(&reply, "wrong_world");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`precheck`, `finish`"), "{message}");

    // The same module declaring a WIT version this server does not provide.
    let mut bytes = component(fixtures::EXTISM_SAMPLE);
    let at = bytes
        .windows(20)
        .position(|w| w == b"lyceum_policy_v0_1_0")
        .expect("the sample exports its version marker");
    bytes[at..at + 20].copy_from_slice(b"lyceum_policy_v0_2_0");
    let reply = upload(&admin, bytes, None).await;
    assert_refused(&reply, "unsupported_wit_version");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`lyceum:policy@0.2.0`"), "{message}");
    assert!(message.contains("`lyceum:policy@0.1.0`"), "{message}");
}
