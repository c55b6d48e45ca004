//! Chat plugins written in JavaScript and in Python, in the chat slot of a real server: the
//! templates `plugins/template-js` (componentize-js) and `plugins/template-python`
//! (componentize-py), built by `plugins/build-guests` into `target/plugins/guests/`. Each
//! runs under the default limits (16 MiB, 50 ms) and, seen from a client, behaves as its
//! configuration says: a blocked phrase is refused with the plugin's code and sentence, a
//! clean message is stored, the fixed-window limit of its SDK helper refuses the message past
//! it, and the admin API shows the plugin with the calls it answered.
//!
//! The components are 12–18 MB of JavaScript or Python engine, and compiling one takes tens
//! of seconds, so the servers of one language start one after the other, and each test
//! prints its component's size and how long its server took to have the chat slot ready.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use lyceum::config::Config;
use lyceum_tests::{
    Account, Backend, Reply, TestServer, backend_tests,
    chat::post_message,
    check::{api, as_client, id_of, sha256_hex},
    socket::SocketClient,
    write_plugins_toml,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

backend_tests!(
    a_javascript_plugin_moderates_the_chat,
    a_python_plugin_moderates_the_chat,
);

/// Messages one sender may send per window under the test configuration.
const PER_WINDOW: usize = 4;
/// The window: an hour, so that a test never straddles two (see `clear_of_a_window_edge`).
const WINDOW_MS: u64 = 3_600_000;

struct Guest {
    /// The file `plugins/build-guests` writes, under the repository's target directory.
    file: &'static str,
    /// The plugin's name in the chain (and its key-value namespace).
    name: &'static str,
    /// Held while a server of this language starts, so that two servers never compile the
    /// same bytes at once and each start's time is its own.
    starting: Mutex<()>,
}

static JAVASCRIPT: Guest = Guest {
    file: "template_js.wasm",
    name: "template-js",
    starting: Mutex::const_new(()),
};

static PYTHON: Guest = Guest {
    file: "template_python.wasm",
    name: "template-python",
    starting: Mutex::const_new(()),
};

async fn a_javascript_plugin_moderates_the_chat(backend: Backend) {
    moderates_the_chat(&JAVASCRIPT, backend).await;
}

async fn a_python_plugin_moderates_the_chat(backend: Backend) {
    moderates_the_chat(&PYTHON, backend).await;
}

async fn moderates_the_chat(guest: &Guest, backend: Backend) {
    let path = component_path(guest);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The JavaScript and Python plugin components are built outside cargo: run \
             plugins/build-guests first",
            path.display()
        )
    });
    let srv = {
        let _turn = guest.starting.lock().await;
        let started = Instant::now();
        let srv = start(backend, guest, &path).await;
        eprintln!(
            "{} ({backend:?}): component {:.1} MiB, chat slot ready after {:.1} s",
            guest.name,
            bytes.len() as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64(),
        );
        srv
    };

    let (_, course) = srv.course().await;
    let room = course["roomId"].as_str().unwrap().to_owned();
    let alice = student_of(&srv, &course).await;
    let bob = student_of(&srv, &course).await;
    let admin = as_client(&srv, &srv.admin().await);

    // A blocked phrase, in another case than configured: refused with the plugin's code and
    // sentence, over the socket and over REST, and not stored.
    let socket = SocketClient::ready(srv.addr, &alice.token).await;
    let ack = send(&socket, &room, "Want to BUY FOLLOWERS cheap?", "spam-1").await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "REJECTED_BY_POLICY", "{ack}");
    assert_eq!(ack["error"]["details"]["reason"], "blocked_phrase", "{ack}");
    assert_eq!(
        ack["error"]["message"], "This message contains a blocked phrase.",
        "{ack}"
    );
    let reply = post(&srv, &alice, &room, "buy followers here").await;
    reply.assert_error(422, "REJECTED_BY_POLICY");
    assert_eq!(reply.body["error"]["details"]["reason"], "blocked_phrase");
    assert_eq!(
        reply.body["error"]["message"],
        "This message contains a blocked phrase."
    );

    // A clean message is stored as written.
    let ack = send(&socket, &room, "Is the exam on Friday?", "clean-1").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let stored = &ack["message"];
    assert_eq!(stored["content"], "Is the exam on Friday?", "{ack}");
    assert_eq!(stored["flagged"], false, "{ack}");
    let history = history(&srv, &alice, &room).await;
    assert_eq!(
        history.iter().map(id_of).collect::<Vec<_>>(),
        [id_of(stored)],
        "only the clean message was stored: {history:?}"
    );

    // The SDK's fixed-window helper: PER_WINDOW messages per sender, then `rate_limited`,
    // which the server answers like its own limit. Alice's three sends so far, refused or
    // not, counted in a window of her own.
    clear_of_a_window_edge().await;
    for n in 0..PER_WINDOW {
        let reply = post(&srv, &bob, &room, &format!("answer {n}")).await;
        assert_eq!(reply.status, 201, "message {n}: {}", reply.body);
    }
    let reply = post(&srv, &bob, &room, "one more").await;
    reply.assert_error(429, "RATE_LIMITED");
    assert_eq!(reply.headers["retry-after"], "1", "{:?}", reply.headers);
    let bob_socket = SocketClient::ready(srv.addr, &bob.token).await;
    let ack = send(&bob_socket, &room, "and over the socket", "late-1").await;
    assert_eq!(ack["error"]["code"], "RATE_LIMITED", "{ack}");
    assert_eq!(ack["error"]["details"]["retryAfter"], 1, "{ack}");
    // Alice's fourth message is still within her window.
    let ack = send(&socket, &room, "Thanks!", "clean-2").await;
    assert_eq!(ack["ok"], true, "{ack}");

    // The admin API shows the plugin serving the slot, with what it answered: alice's four
    // messages (two refused for the phrase, two stored) and bob's six (four stored, two over
    // the limit).
    let reply = admin.get(&api("/plugins/chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let slot = reply.data();
    let chain = slot["chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 1, "{slot}");
    let plugin = &chain[0];
    assert_eq!(plugin["name"], guest.name, "{plugin}");
    assert_eq!(plugin["sha256"], sha256_hex(&bytes), "{plugin}");
    assert_eq!(plugin["abi"], "component", "{plugin}");
    assert_eq!(plugin["witVersion"], "0.1.0", "{plugin}");
    assert_eq!(plugin["limits"]["deadlineMs"], 50, "the default: {plugin}");
    assert_eq!(plugin["limits"]["memoryMib"], 16, "the default: {plugin}");
    let stats = &plugin["stats"];
    assert_eq!(stats["calls"], 10, "{plugin}");
    assert_eq!(stats["errors"], 0, "{plugin}");
    assert_eq!(stats["timeouts"], 0, "{plugin}");
    assert_eq!(
        stats["verdicts"],
        json!({ "allow": 6, "reject": 4 }),
        "{plugin}"
    );
}

/// A server whose chat slot runs only the component at `path`, configured to refuse "buy
/// followers" and to let each sender send PER_WINDOW messages per WINDOW_MS; the server's
/// own chat rate limit is out of reach, so every refusal is the plugin's.
async fn start(backend: Backend, guest: &Guest, path: &std::path::Path) -> TestServer {
    let plugins = format!(
        r#"
[[chat.plugins]]
source = {source}
name = "{name}"
config = {{ blocked = ["Buy Followers"], maxPerWindow = {PER_WINDOW}, windowMs = {WINDOW_MS} }}
"#,
        source = Value::from(path.to_str().expect("a UTF-8 path")),
        name = guest.name,
    );
    let cache = std::env::temp_dir().join(format!("lyceum-test-plugin-cache-{}", guest.name));
    TestServer::start_with(backend, move |config: &mut Config| {
        // A cache of this language's own: a server forgets the compiled code of modules its
        // database does not name, so in the cache all tests share this one would not last.
        config.plugin_cache_dir = Some(cache);
        config.chat_rate_burst = 100_000;
        config.chat_rate_per_second = 100_000.0;
        if backend == Backend::Postgres {
            config.db_max_connections = 4;
        }
        write_plugins_toml(config, &plugins);
    })
    .await
}

/// Where `plugins/build-guests` puts `guest`: `plugins/guests/` in the target directory this
/// test binary was built in (the one cargo marks with CACHEDIR.TAG, wherever
/// `CARGO_TARGET_DIR` points).
fn component_path(guest: &Guest) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| panic!("{} is not inside a cargo target directory", exe.display()));
    target.join("plugins").join("guests").join(guest.file)
}

/// Waits, if need be, until the current window has more than a minute left, so that the
/// messages counted against the limit fall in one window.
async fn clear_of_a_window_edge() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = WINDOW_MS - now % WINDOW_MS;
    if left < 60_000 {
        tokio::time::sleep(Duration::from_millis(left + 100)).await;
    }
}

async fn student_of(srv: &TestServer, course: &Value) -> Account {
    let student = srv.register("student").await;
    srv.enroll(&student, course).await;
    student
}

async fn send(socket: &SocketClient, room: &str, content: &str, client_id: &str) -> Value {
    socket
        .emit_ack(
            "chat:send_message",
            json!({ "roomId": room, "content": content, "clientId": client_id }),
        )
        .await
}

async fn post(srv: &TestServer, who: &Account, room: &str, content: &str) -> Reply {
    post_message(srv, who, room, json!({ "content": content })).await
}

/// The room's messages, newest first (one page: the tests send fewer than a hundred).
async fn history(srv: &TestServer, who: &Account, room: &str) -> Vec<Value> {
    let reply = as_client(srv, who)
        .get(&api(&format!("/chat/rooms/{room}/messages?limit=100")))
        .await;
    reply.data()["items"].as_array().expect("items").clone()
}
