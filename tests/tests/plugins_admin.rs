//! The policy plugin admin API, per the "Policy plugins" section of the contract, from the
//! outside: an admin's HTTP client changes the chains while students chat through the real
//! server, and what the students meet is the evidence that a change took effect (or did not).
//!
//! - `access`: admins only; everyone else is FORBIDDEN, whatever they ask.
//! - `overview`: the three slots as they start (the builtin chains, recorded from the file).
//! - `modules`: uploads named by SHA-256, and the modules refused before they are stored.
//! - `extism`: an Extism module installed, activated and audited like a component.
//! - `chains`: PUT makes a chain active as a new revision; a refused chain changes nothing.
//! - `swap`: chains swapped many times under concurrent chat; no message is lost or failed.
//! - `revisions`: the history of a slot, rollback, and a restart on the same database.
//! - `shadow`: a candidate chain that is judged, never enforced, and then promoted.
//! - `decisions`: the audit of what plugins refused, filtered and paged, without content.
//! - `file`: `plugins.toml` edited while the server runs.
//! - `openapi`: every route is documented.

use std::time::Duration;

use lyceum::config::Config;
use lyceum_plugin_runtime::{builtin, fixtures};
use lyceum_tests::{
    Account, Backend, Client, Reply, TestServer, backend_tests,
    chat::{connect, post_message},
    check::{api, as_client, assert_keys, assert_utc_time, sha256_hex},
};
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::{Value, json};

#[path = "plugins_admin/access.rs"]
mod access;
#[path = "plugins_admin/chains.rs"]
mod chains;
#[path = "plugins_admin/decisions.rs"]
mod decisions;
#[path = "plugins_admin/extism.rs"]
mod extism;
#[path = "plugins_admin/file.rs"]
mod file;
#[path = "plugins_admin/modules.rs"]
mod modules;
#[path = "plugins_admin/openapi.rs"]
mod openapi;
#[path = "plugins_admin/overview.rs"]
mod overview;
#[path = "plugins_admin/revisions.rs"]
mod revisions;
#[path = "plugins_admin/shadow.rs"]
mod shadow;
#[path = "plugins_admin/swap.rs"]
mod swap;

// ---------------------------------------------------------------------------------------------
// Servers and people

/// A server whose own chat rate limit is out of reach, so that every refusal a test sees is
/// a plugin's.
async fn start(backend: Backend) -> TestServer {
    start_adjusted(backend, |_| {}).await
}

async fn start_adjusted(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(backend, |config| {
        config.chat_rate_burst = 100_000;
        config.chat_rate_per_second = 100_000.0;
        if backend == Backend::Postgres {
            // Tests run side by side: each server keeps to a few connections.
            config.db_max_connections = 4;
        }
        adjust(config);
    })
    .await
}

/// What most tests need: an admin's client and a student in a course with a chat room.
struct Cast {
    admin: Account,
    student: Account,
    course: Value,
    room: String,
}

async fn cast(srv: &TestServer) -> Cast {
    let admin = srv.admin().await;
    let (_, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let room = course["roomId"].as_str().unwrap().to_owned();
    Cast {
        admin,
        student,
        course,
        room,
    }
}

impl Cast {
    fn admin(&self, srv: &TestServer) -> Client {
        as_client(srv, &self.admin)
    }
}

/// `/api/v1/plugins` + `rest`.
fn plugins(rest: &str) -> String {
    api(&format!("/plugins{rest}"))
}

// ---------------------------------------------------------------------------------------------
// Modules and chains

/// The bytes of a component the runtime crate built.
fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The SHA-256 `GET /plugins` shows for the default chat plugin.
fn chat_builtin_sha256() -> String {
    sha256_hex(builtin::CHAT_MODERATION)
}

/// POST /plugins/modules with `bytes` as the `file` part (and `name`, when given).
async fn upload(client: &Client, bytes: Vec<u8>, name: Option<&str>) -> Reply {
    let part = Part::bytes(bytes)
        .file_name("plugin.wasm")
        .mime_str("application/wasm")
        .unwrap();
    let mut form = Form::new().part("file", part);
    if let Some(name) = name {
        form = form.text("name", name.to_owned());
    }
    client
        .send(
            client
                .request(Method::POST, &plugins("/modules"))
                .multipart(form),
        )
        .await
}

/// Uploads a module that must be accepted; its SHA-256.
async fn install(client: &Client, path: &str, name: &str) -> String {
    let reply = upload(client, component(path), Some(name)).await;
    assert!(
        reply.status == 201 || reply.status == 200,
        "upload {name}: {} {}",
        reply.status,
        reply.body
    );
    reply.data()["sha256"].as_str().unwrap().to_owned()
}

/// The plugin template, refusing messages that contain `phrase` (code `blocked_phrase`).
fn template_link(sha256: &str, phrase: &str) -> Value {
    json!({ "module": sha256, "name": "template", "config": { "blocked": [phrase] } })
}

/// The default chat plugin with one word list: `action` is `reject` or `flag`.
fn builtin_list(action: &str, word: &str, code: &str) -> Value {
    json!({
        "module": "builtin:chat-moderation",
        "config": { "lists": [{ "name": "test", "action": action, "words": [word], "code": code }] }
    })
}

/// PUT /plugins/{slot} with `chain`.
async fn put_chain(client: &Client, slot: &str, chain: Value) -> Reply {
    client
        .put(&plugins(&format!("/{slot}")), json!({ "chain": chain }))
        .await
}

/// A PUT that must be accepted; the new `slot`.
async fn activate(client: &Client, slot: &str, chain: Value) -> Value {
    let reply = put_chain(client, slot, chain.clone()).await;
    assert_eq!(reply.status, 200, "PUT {slot} {chain}: {}", reply.body);
    let slot = reply.data();
    assert_slot(&slot);
    slot
}

async fn slot_of(client: &Client, slot: &str) -> Value {
    let reply = client.get(&plugins(&format!("/{slot}"))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()
}

/// A slot's revisions, newest first (one page of up to 100).
async fn revisions_of(client: &Client, slot: &str) -> Vec<Value> {
    let reply = client
        .get(&plugins(&format!("/{slot}/revisions?limit=100")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()["items"].as_array().unwrap().clone()
}

/// Asserts a refusal of a chain or module: 400 VALIDATION_FAILED with `details.reason`.
#[track_caller]
fn assert_refused(reply: &Reply, reason: &str) {
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(
        reply.body["error"]["details"]["reason"], reason,
        "{}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------------
// Shapes

/// The contract's `slot`.
#[track_caller]
fn assert_slot(slot: &Value) {
    assert_keys(
        slot,
        &[
            "slot",
            "revision",
            "activatedAt",
            "activatedBy",
            "failure",
            "chain",
            "shadow",
        ],
    );
    assert!(slot["revision"].as_u64().is_some_and(|r| r >= 1), "{slot}");
    assert_utc_time(&slot["activatedAt"]);
    assert!(
        slot["activatedBy"].is_null() || slot["activatedBy"].is_string(),
        "{slot}"
    );
    assert!(
        ["fail-closed", "fail-open"].contains(&slot["failure"].as_str().unwrap_or("")),
        "{slot}"
    );
    for plugin in slot["chain"].as_array().expect("chain") {
        assert_plugin(plugin);
    }
    if !slot["shadow"].is_null() {
        let shadow = &slot["shadow"];
        for key in ["chain", "since", "calls", "agree", "disagree", "samples"] {
            assert!(shadow.get(key).is_some(), "no shadow.{key} in {slot}");
        }
        for plugin in shadow["chain"].as_array().expect("shadow chain") {
            assert_plugin(plugin);
        }
        assert_utc_time(&shadow["since"]);
    }
}

/// The contract's `plugin` (the server may add fields; these must be there).
#[track_caller]
fn assert_plugin(plugin: &Value) {
    for key in [
        "name",
        "sha256",
        "abi",
        "witVersion",
        "config",
        "failure",
        "limits",
        "stats",
    ] {
        assert!(plugin.get(key).is_some(), "no {key} in {plugin}");
    }
    assert!(
        plugin["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))),
        "sha256 must be lowercase hex: {plugin}"
    );
    assert!(
        ["component", "extism"].contains(&plugin["abi"].as_str().unwrap_or("")),
        "{plugin}"
    );
    assert!(plugin["config"].is_object(), "{plugin}");
    for key in ["deadlineMs", "memoryMib", "fuel"] {
        assert!(
            plugin["limits"].get(key).is_some(),
            "no limits.{key} in {plugin}"
        );
    }
    let stats = &plugin["stats"];
    for key in ["calls", "errors", "timeouts", "p50Us", "p99Us"] {
        assert!(stats[key].is_u64(), "stats.{key} in {plugin}");
    }
    assert!(stats["verdicts"].is_object(), "{plugin}");
}

// ---------------------------------------------------------------------------------------------
// Chat, as the students meet the chains

/// POSTs a chat message over REST.
async fn say(srv: &TestServer, who: &Account, room: &str, content: &str) -> Reply {
    post_message(srv, who, room, json!({ "content": content })).await
}

/// A message the chain must let through; the stored message.
#[track_caller]
fn assert_accepted(reply: &Reply) -> Value {
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.data()
}

/// A message the chain must refuse with `reason`.
#[track_caller]
fn assert_rejected(reply: &Reply, reason: &str) {
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(
        reply.body["error"]["details"]["reason"], reason,
        "{}",
        reply.body
    );
}

/// Polls `check` every 50 ms for up to `wait`; the first value it returns.
async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET /plugins/decisions with `query` (without the `?`); the items of that one page.
async fn decisions(client: &Client, query: &str) -> Vec<Value> {
    let reply = client.get(&plugins(&format!("/decisions?{query}"))).await;
    assert_eq!(reply.status, 200, "decisions?{query}: {}", reply.body);
    reply.data()["items"].as_array().unwrap().clone()
}

/// Decisions are written off the request's path: polls until `query` lists `n`.
async fn decisions_within(client: &Client, query: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(5),
        &format!("{n} decisions for ?{query}"),
        || async {
            let items = decisions(client, query).await;
            (items.len() >= n).then_some(items)
        },
    )
    .await
}
