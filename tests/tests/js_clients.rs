//! The server spoken to by what frontends use: the official JavaScript Socket.IO client
//! (`socket.io-client` from npm) under node for chat, and two pages of a real headless Chromium
//! for a WebRTC call negotiated through the signaling gateway. Scripts live in `tests/js/`
//! and need `npm ci --prefix tests/js` first; the browser test needs `LYCEUM_TEST_CHROMIUM`
//! (the path of a Chromium binary) and says it skipped without it.

use std::{path::Path, process::Stdio, time::Duration};

use lyceum_tests::{Backend, TestServer, check::*};
use serde_json::{Value, json};

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

    let stdout = run_node(&script, &srv, &credentials, &[]).await;
    assert!(
        stdout.contains("chat_e2e: all checks passed"),
        "the script exited 0 without finishing:\n{stdout}"
    );
    srv.stop().await.expect("server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_connect_over_webrtc_negotiated_through_the_signaling_gateway() {
    let Some(chromium) = std::env::var("LYCEUM_TEST_CHROMIUM")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!("skipped the WebRTC browser test: LYCEUM_TEST_CHROMIUM is not set");
        return;
    };
    assert!(
        Path::new(&chromium).is_file(),
        "LYCEUM_TEST_CHROMIUM is set but {chromium} does not exist"
    );
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        js.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is missing: run `npm ci --prefix tests/js` from the repository root first"
    );
    let srv = TestServer::start(Backend::Sqlite).await;
    let (teacher, course) = srv.course().await;
    let alice = srv.register("student").await;
    let bob = srv.register("student").await;
    srv.enroll(&alice, &course).await;
    srv.enroll(&bob, &course).await;
    let teach = as_client(&srv, &teacher);
    let session: Value = teach
        .post(
            &api(&format!("/courses/{}/sessions", id_of(&course))),
            json!({ "title": "Browsers" }),
        )
        .await
        .data();
    let session_id = id_of(&session).to_owned();
    teach
        .post(&api(&format!("/sessions/{session_id}/start")), json!({}))
        .await
        .data();
    let credentials = json!({
        "sessionId": session_id,
        "alice": {"id": alice.id, "token": alice.token},
        "bob": {"id": bob.id, "token": bob.token},
    });
    let stdout = run_node(
        &js.join("webrtc_e2e.mjs"),
        &srv,
        &credentials,
        &[("LYCEUM_CHROMIUM", chromium.as_str())],
    )
    .await;
    assert!(
        stdout.contains("webrtc_e2e: all checks passed"),
        "the script exited 0 without finishing:\n{stdout}"
    );
    // Both joins are on the attendance record, still open.
    let rows = teach
        .get(&api(&format!("/sessions/{session_id}/participants")))
        .await
        .data();
    let rows = rows["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    srv.stop().await.expect("server stops cleanly");
}

/// Runs a script of `tests/js` with node against `srv`; panics with its output unless it
/// exits 0, and returns its standard output.
async fn run_node(script: &Path, srv: &TestServer, e2e: &Value, env: &[(&str, &str)]) -> String {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
    let mut command = tokio::process::Command::new(&node);
    command
        .arg(script)
        .current_dir(script.parent().unwrap())
        .env("LYCEUM_URL", srv.url(""))
        .env("LYCEUM_E2E", e2e.to_string())
        .env_remove("DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
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
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}).\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        output.status
    );
    print!("{stdout}");
    stdout
}
