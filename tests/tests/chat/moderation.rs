//! The chat moderation plugin slot: its word lists reject, mask and flag on send and on edit,
//! and a failing plugin fails closed or open as configured.

use lyceum::config::Config;
use lyceum_plugin_runtime::fixtures;
use lyceum_tests::{
    Backend, TestServer, backend_tests,
    chat::{connect, post_message},
    check::{as_client, id_of},
    write_plugins_toml,
};
use serde_json::json;

use crate::support::*;

backend_tests!(
    the_moderation_plugin_rejects_masks_and_flags_on_send_and_edit,
    a_failing_moderation_plugin_fails_closed_or_open_as_configured,
);

/// Word lists for each of the plugin's three actions.
const WORD_LISTS: &str = r#"
[chat]
failure = "fail-closed"

[[chat.plugins]]
source = "builtin:chat-moderation"

[[chat.plugins.config.lists]]
name = "banned"
action = "reject"
words = ["forbiddenword"]
code = "banned_word"
reason = "That word is not allowed here."

[[chat.plugins.config.lists]]
name = "masked"
action = "mask"
words = ["darn"]

[[chat.plugins.config.lists]]
name = "watch"
action = "flag"
words = ["cheating"]
"#;

/// Starts a server whose `plugins.toml` (written into the server's own temp dir) is `plugins`.
async fn start_with_plugins(
    backend: Backend,
    plugins: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let text = plugins.to_owned();
    TestServer::start_small(backend, move |config| {
        write_plugins_toml(config, &text);
        adjust(config);
    })
    .await
}

async fn the_moderation_plugin_rejects_masks_and_flags_on_send_and_edit(backend: Backend) {
    let srv = start_with_plugins(backend, WORD_LISTS, |_| {}).await;
    let w = world(&srv).await;
    let a = connect(&srv, &w.a).await;
    let mut b = connect(&srv, &w.b).await;
    join(&a, &w.r1).await;
    join(&b, &w.r1).await;

    // Reject: 422 with the plugin's reason and code; nothing stored, nothing broadcast.
    let ack = a
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": w.r1, "content": "a forbiddenword here", "clientId": "mod-1" }),
        )
        .await;
    let error = refused(&ack, "REJECTED_BY_POLICY");
    assert_eq!(error["details"]["reason"], "banned_word", "{ack}");
    assert_eq!(error["message"], "That word is not allowed here.", "{ack}");
    let reply = post_message(
        &srv,
        &w.a,
        &w.r1,
        json!({ "content": "FORBIDDENWORD!", "clientId": "mod-2" }),
    )
    .await;
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(reply.body["error"]["details"]["reason"], "banned_word");
    assert_eq!(
        reply.body["error"]["message"],
        "That word is not allowed here."
    );
    b.expect_no_event("chat:new_message", QUIET).await;
    assert!(history(&srv, &w.a, &w.r1).await.is_empty());
    // Nothing was stored, so the refused clientId is still free.
    let clean = say_with_id(&a, &w.r1, "a clean message", "mod-1").await;
    assert_message(&clean, &w.r1, &w.a, "a clean message");
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, clean);

    // Mask: the rewritten text is what is stored and broadcast.
    let masked = say(&a, &w.r1, "oh darn it").await;
    let text = masked["content"].as_str().unwrap();
    assert!(
        !text.to_lowercase().contains("darn") && text.contains('*'),
        "not masked: {text}"
    );
    assert!(text.starts_with("oh ") && text.ends_with(" it"), "{text}");
    assert_eq!(masked["flagged"], false);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, masked);

    // Flag: stored as written, flagged.
    let flagged = posted(&srv, &w.a, &w.r1, "is this cheating?").await;
    assert_eq!(flagged["content"], "is this cheating?");
    assert_eq!(flagged["flagged"], true);
    assert_eq!(b.expect_event("chat:new_message", WAIT).await, flagged);

    // Edits pass through the same plugin.
    let clean_id = id_of(&clean);
    let reply = as_client(&srv, &w.a)
        .patch(
            &message_path(clean_id),
            json!({ "content": "now a forbiddenword" }),
        )
        .await;
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(reply.body["error"]["details"]["reason"], "banned_word");
    let ack = a
        .emit_ack(
            "chat:edit_message",
            json!({ "messageId": clean_id, "content": "forbiddenword" }),
        )
        .await;
    assert_eq!(
        refused(&ack, "REJECTED_BY_POLICY")["details"]["reason"],
        "banned_word"
    );
    b.expect_no_event("chat:message_updated", QUIET).await;
    let ack = a
        .emit_ack(
            "chat:edit_message",
            json!({ "messageId": clean_id, "content": "darn, that again" }),
        )
        .await;
    let edited = ok(&ack)["message"].clone();
    let text = edited["content"].as_str().unwrap();
    assert!(
        !text.to_lowercase().contains("darn") && text.ends_with(", that again"),
        "not masked: {text}"
    );
    assert_eq!(edited["flagged"], false);
    assert_eq!(b.expect_event("chat:message_updated", WAIT).await, edited);
    let reply = as_client(&srv, &w.a)
        .patch(
            &message_path(id_of(&masked)),
            json!({ "content": "was that cheating?" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reflagged = reply.data();
    assert_eq!(reflagged["content"], "was that cheating?");
    assert_eq!(reflagged["flagged"], true);
    assert_eq!(
        b.expect_event("chat:message_updated", WAIT).await,
        reflagged
    );

    let stored = history(&srv, &w.b, &w.r1).await;
    assert_eq!(stored, vec![flagged, reflagged, edited]);
}

async fn a_failing_moderation_plugin_fails_closed_or_open_as_configured(backend: Backend) {
    // Two hostile fixtures in the chat chain: one traps ("panic"), one never returns ("loop",
    // stopped by the deadline).
    for failure in ["fail-closed", "fail-open"] {
        let plugins = format!(
            "[chat]\nfailure = \"{failure}\"\n\n[[chat.plugins]]\nsource = '{}'\n\n[[chat.plugins]]\nsource = '{}'\n",
            fixtures::PANIC,
            fixtures::INFINITE_LOOP
        );
        let srv = start_with_plugins(backend, &plugins, |c| {
            c.chat_rate_burst = 1000;
            c.chat_rate_per_second = 1000.0;
        })
        .await;
        let w = world(&srv).await;
        let a = connect(&srv, &w.a).await;
        let mut b = connect(&srv, &w.b).await;
        join(&a, &w.r1).await;
        join(&b, &w.r1).await;

        // A message neither fixture minds passes either way.
        let fine = say(&a, &w.r1, "an ordinary message").await;
        assert_eq!(b.expect_event("chat:new_message", WAIT).await, fine);

        let trapping = ["please panic now", "stuck in a loop"];
        if failure == "fail-closed" {
            for content in trapping {
                post_message(&srv, &w.a, &w.r1, json!({ "content": content }))
                    .await
                    .assert_error(503, "UNAVAILABLE");
                refused(
                    &a.emit_ack(
                        "chat:send_message",
                        json!({ "roomId": w.r1, "content": content, "clientId": fresh_client_id() }),
                    )
                    .await,
                    "UNAVAILABLE",
                );
            }
            b.expect_no_event("chat:new_message", QUIET).await;
            assert_eq!(history(&srv, &w.a, &w.r1).await, vec![fine]);
        } else {
            let mut stored = vec![fine];
            for content in trapping {
                let over_rest = posted(&srv, &w.a, &w.r1, content).await;
                assert_eq!(over_rest["content"], content);
                assert_eq!(b.expect_event("chat:new_message", WAIT).await, over_rest);
                let over_socket = say(&a, &w.r1, content).await;
                assert_eq!(b.expect_event("chat:new_message", WAIT).await, over_socket);
                stored.insert(0, over_rest);
                stored.insert(0, over_socket);
            }
            assert_eq!(history(&srv, &w.a, &w.r1).await, stored);
        }
    }
}
