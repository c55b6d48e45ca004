//! The server answers while its policy plugins are still loading: big plugins take tens of
//! seconds to compile, and nothing waits for them but the slots they guard. Until a slot's
//! chain is active its calls follow the slot's failure mode, and `/ready` and
//! `GET /api/v1/plugins` (`loading`) say which slots are loading.
//!
//! A chain that takes seconds to load is made deterministic here with the `slow` fixture:
//! its smoke call at load burns seconds of CPU, whatever the machine compiles at.

use std::time::{Duration, Instant};

use lyceum_plugin_runtime::fixtures;
use lyceum_tests::{
    Account, Backend, Reply, TestServer, backend_tests,
    chat::room_of,
    check::{as_client, sha256_hex},
    write_plugins_toml,
};
use serde_json::json;
use uuid::Uuid;

/// Burns about this much CPU per call (smoke call included) on this kind of machine; all
/// the test needs is that it is longer than what it does while the chain loads.
const SLOW_ITERATIONS: u64 = 4_000_000_000;

async fn start_slow_chat(backend: Backend, failure: &str) -> TestServer {
    let plugins = format!(
        "[chat]\nfailure = \"{failure}\"\n\n[[chat.plugins]]\nsource = '{}'\nconfig = {{ iterations = {SLOW_ITERATIONS} }}\nlimits = {{ deadline_ms = 60000 }}\n",
        fixtures::SLOW
    );
    TestServer::start_loading(backend, move |config| write_plugins_toml(config, &plugins)).await
}

async fn send(srv: &TestServer, who: &Account, room: &str) -> Reply {
    as_client(srv, who)
        .post(
            &format!("/api/v1/chat/rooms/{room}/messages"),
            json!({ "content": "hello while loading", "clientId": Uuid::new_v4().simple().to_string() }),
        )
        .await
}

async fn a_fail_closed_slot_refuses_until_its_chain_is_loaded_and_says_so(backend: Backend) {
    let started = Instant::now();
    let mut srv = start_slow_chat(backend, "fail-closed").await;
    let client = srv.client();

    assert_eq!(client.get("/health").await.status, 200);
    // The built-in chains of the other slots are ready within moments; chat is not.
    let waited = Instant::now();
    let ready = loop {
        let ready = client.get("/ready").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        if ready.body["error"]["details"]["loading"] == json!(["chat"]) {
            break ready;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the built-in chains did not load: {}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.body["error"]["code"], "UNAVAILABLE");
    assert_eq!(ready.body["error"]["details"]["reason"], "plugins_loading");

    let admin = srv.admin().await;
    let slots = as_client(&srv, &admin).get("/api/v1/plugins").await;
    assert_eq!(slots.status, 200, "{}", slots.body);
    assert_eq!(slots.data()["loading"], json!(["chat"]), "{}", slots.body);

    // Everything but the loading slot works: sign-ups, courses, enrollments.
    let (teacher, course) = srv.course().await;
    let refused = send(&srv, &teacher, &room_of(&course)).await;
    assert!(
        srv.plugins_still_loading(),
        "the chain loaded before the test could look ({:?}); raise SLOW_ITERATIONS",
        started.elapsed()
    );
    refused.assert_error(503, "UNAVAILABLE");

    srv.plugins_loaded().await;
    assert_eq!(client.get("/ready").await.status, 200);
    let slots = as_client(&srv, &admin).get("/api/v1/plugins").await;
    assert_eq!(slots.data()["loading"], json!([]), "{}", slots.body);
    // Nothing of the refused message was kept.
    let history = as_client(&srv, &teacher)
        .get(&format!("/api/v1/chat/rooms/{}/messages", room_of(&course)))
        .await;
    assert_eq!(history.data()["items"], json!([]), "{}", history.body);
}

async fn a_fail_open_slot_lets_calls_through_while_its_chain_loads(backend: Backend) {
    let mut srv = start_slow_chat(backend, "fail-open").await;
    let (teacher, course) = srv.course().await;
    let reply = send(&srv, &teacher, &room_of(&course)).await;
    assert!(
        srv.plugins_still_loading(),
        "the chain loaded before the test could look; raise SLOW_ITERATIONS"
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.data()["content"], "hello while loading");
    srv.plugins_loaded().await;
    assert_eq!(srv.client().get("/ready").await.status, 200);
}

backend_tests!(
    a_fail_closed_slot_refuses_until_its_chain_is_loaded_and_says_so,
    a_fail_open_slot_lets_calls_through_while_its_chain_loads,
);

/// Two servers with databases of their own share one plugin cache, as a fresh install on a
/// machine that ran Lyceum before would: the second finds the compiled code of the file's
/// chat plugins and uses it. The slots load side by side and the built-in ones finish first;
/// nothing they do may evict code the chat slot is about to use (it would compile again,
/// tens of seconds for a JavaScript or Python component).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_keeps_the_compiled_code_it_finds_in_the_cache() {
    let cache = lyceum_tests::tempdir::TempDir::new();
    // The slow fixture holds the chat slot in its smoke call while the other slots finish;
    // the template after it is the plugin whose compiled code must survive.
    let plugins = format!(
        "[[chat.plugins]]\nsource = '{}'\nconfig = {{ iterations = 1500000000 }}\nlimits = {{ deadline_ms = 60000 }}\n\n[[chat.plugins]]\nsource = '{}'\n",
        fixtures::SLOW,
        fixtures::TEMPLATE
    );
    let start = || {
        let plugins = plugins.clone();
        let cache = cache.path().to_owned();
        TestServer::start_with(Backend::Sqlite, move |config| {
            let path = config
                .data_dir
                .parent()
                .expect("the server's temp dir")
                .join("plugins.toml");
            std::fs::write(&path, plugins).expect("plugins.toml written");
            config.plugins_config = path;
            config.plugin_cache_dir = Some(cache);
        })
    };
    let template = sha256_hex(&std::fs::read(fixtures::TEMPLATE).unwrap());
    let compiled = || {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.to_string_lossy().contains(&template))
    };

    let first = start().await;
    let path = compiled().expect("the first server cached the template's compiled code");
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();
    first.stop().await.unwrap();

    let second = start().await;
    let kept = compiled().expect("the template's compiled code is still cached");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        written,
        "the second server compiled the template again instead of using the cached code"
    );
    second.stop().await.unwrap();
}
