//! `plugins.toml` while the server runs: an edit is picked up within a few seconds as a new
//! `file` revision of the slots it changed; a file that cannot be used is shown as refused
//! in `GET /plugins` while the active chains keep serving.
//!
//! (`SIGHUP` makes the server read the file the same way; a test cannot send it without
//! reaching every server in the test process, so it is not sent here.)

use std::path::PathBuf;

use super::*;

backend_tests!(an_edited_plugins_file_is_applied_and_a_broken_one_is_shown_not_applied);

/// How long the watcher may take: it polls every half second and waits for the file to
/// stay unchanged for one more poll.
const PICKED_UP: Duration = Duration::from_secs(10);

fn chat_list(action: &str) -> String {
    format!(
        r#"
[[chat.plugins]]
source = "builtin:chat-moderation"

[[chat.plugins.config.lists]]
action = "{action}"
words = ["zebra"]
code = "no_zebras"
"#
    )
}

async fn chat_revision(admin: &Client) -> u64 {
    slot_of(admin, "chat").await["revision"].as_u64().unwrap()
}

async fn an_edited_plugins_file_is_applied_and_a_broken_one_is_shown_not_applied(backend: Backend) {
    let mut path = PathBuf::new();
    let srv = start_adjusted(backend, |config| {
        path = config.data_dir.parent().unwrap().join("plugins.toml");
        std::fs::write(
            &path,
            "[[chat.plugins]]\nsource = \"builtin:chat-moderation\"\n",
        )
        .unwrap();
        config.plugins_config = path.clone();
    })
    .await;
    let cast = cast(&srv).await;
    let admin = cast.admin(&srv);
    let overview = admin.get(&plugins("")).await.data();
    assert_eq!(overview["file"]["path"], path.display().to_string());
    assert_eq!(overview["file"]["error"], Value::Null, "{overview}");
    let start = chat_revision(&admin).await;
    assert_accepted(&say(&srv, &cast.student, &cast.room, "a zebra").await);

    // An edit: the chat slot gets it as a `file` revision; the others are unchanged.
    std::fs::write(&path, chat_list("reject")).unwrap();
    let applied = eventually(PICKED_UP, "the edited file applied", || async {
        let revision = chat_revision(&admin).await;
        (revision > start).then_some(revision)
    })
    .await;
    assert_eq!(applied, start + 1);
    let newest = &revisions_of(&admin, "chat").await[0];
    assert_eq!(newest["source"], "file", "{newest}");
    assert_eq!(newest["activatedBy"], Value::Null, "{newest}");
    assert_eq!(
        newest["chain"],
        json!([{
            "module": "builtin:chat-moderation",
            "config": { "lists": [{ "action": "reject", "words": ["zebra"], "code": "no_zebras" }] }
        }])
    );
    assert_rejected(
        &say(&srv, &cast.student, &cast.room, "a zebra").await,
        "no_zebras",
    );
    assert_eq!(revisions_of(&admin, "files").await.len(), 1);
    assert_eq!(revisions_of(&admin, "signaling").await.len(), 1);

    // Files that cannot be used: not TOML, and a chain naming a module that is not there.
    let broken = [
        "[[chat.plugins]\nsource = ",
        "[[chat.plugins]]\nsource = \"plugins/not-there.wasm\"\n",
    ];
    for text in broken {
        std::fs::write(&path, text).unwrap();
        let error = eventually(PICKED_UP, "the broken file reported", || async {
            let overview = admin.get(&plugins("")).await.data();
            overview["file"]["error"].as_str().map(str::to_owned)
        })
        .await;
        assert!(!error.is_empty());
        // The active chain keeps serving, unchanged.
        assert_eq!(chat_revision(&admin).await, applied);
        assert_rejected(
            &say(&srv, &cast.student, &cast.room, "a zebra").await,
            "no_zebras",
        );
        // Mended, the error goes away (the chain is the one already active: no revision).
        std::fs::write(&path, chat_list("reject")).unwrap();
        eventually(PICKED_UP, "the mended file accepted", || async {
            let overview = admin.get(&plugins("")).await.data();
            overview["file"]["error"].is_null().then_some(())
        })
        .await;
        assert_eq!(chat_revision(&admin).await, applied);
    }

    // Another edit is another revision.
    std::fs::write(&path, chat_list("flag")).unwrap();
    eventually(PICKED_UP, "the second edit applied", || async {
        (chat_revision(&admin).await > applied).then_some(())
    })
    .await;
    let flagged = assert_accepted(&say(&srv, &cast.student, &cast.room, "a zebra").await);
    assert_eq!(flagged["flagged"], true, "{flagged}");
}
