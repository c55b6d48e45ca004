//! The chat gateway spoken to by the official JavaScript client (`socket.io-client` from
//! npm, run with node), the one frontends use: `tests/js/chat_e2e.mjs` against the real
//! server. Needs `npm ci --prefix tests/js` first.

use std::{path::Path, process::Stdio, time::Duration};

use lyceum_tests::{Backend, TestServer};
use serde_json::json;

/// More than the script's own global timeout, so the script reports its failing step first.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_javascript_client_chats_end_to_end() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let script = js.join("chat_e2e.mjs");
    assert!(
        js.join("node_modules/socket.io-client/package.json")
            .is_file(),
        "{} is missing socket.io-client: run `npm ci --prefix tests/js` from the repository root first",
        js.join("node_modules").display()
    );

    let srv = TestServer::start(Backend::Sqlite).await;
    let (_teacher, course) = srv.course().await;
    let alice = srv.register("student").await;
    let bob = srv.register("student").await;
    let outsider = srv.register("student").await;
    srv.enroll(&alice, &course).await;
    srv.enroll(&bob, &course).await;
    let credentials = json!({
        "roomId": course["roomId"],
        "alice": {"id": alice.id, "name": alice.name, "token": alice.token},
        "bob": {"id": bob.id, "name": bob.name, "token": bob.token},
        "outsider": {"id": outsider.id, "token": outsider.token},
    });

    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
    let child = tokio::process::Command::new(&node)
        .arg(&script)
        .current_dir(&js)
        .env("LYCEUM_URL", srv.url(""))
        .env("LYCEUM_E2E", credentials.to_string())
        .env_remove("DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{node}` (Node.js 20 or later is needed): {e}"));
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {NODE_TIMEOUT:?}",
                script.display()
            )
        })
        .expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}).\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        output.status
    );
    print!("{stdout}");
    assert!(
        stdout.contains("chat_e2e: all checks passed"),
        "the script exited 0 without finishing:\n{stdout}"
    );
    srv.stop().await.expect("server stops cleanly");
}
