//! `lyceum plugin …` as an operator runs it: the real binary checking modules offline, and
//! driving a real `lyceum serve` through its admin API with an administrator's token —
//! install, activate, list, revisions, shadow, rollback and the decision audit — with the
//! exit status and output each answer gives. No output ever contains the token.

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use lyceum_plugin_runtime::fixtures;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod support;

use support::{KillOnDrop, RemoveDirOnDrop, lyceum, serve_in, sign_in, temp_dir, user_create};

/// What one run of the binary printed, and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    fn succeeded(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        self
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `lyceum plugin ARGS` with no server (for `check`).
fn offline(args: &[&str]) -> Run {
    let dir = temp_dir("cli-plugin");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    Run::from(lyceum(&dir).arg("plugin").args(args).output().unwrap())
}

fn sha256_of(path: &str) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn check_passes_the_template_for_the_chat_slot() {
    let run = offline(&["check", fixtures::TEMPLATE, "--slot", "chat"]);
    run.succeeded();
    assert!(run.stdout.starts_with("passed: "), "{}", run.describe());
    assert!(
        run.stdout.contains("in the chat slot"),
        "{}",
        run.describe()
    );

    let run = offline(&["check", fixtures::TEMPLATE, "--slot", "chat", "--json"]);
    let module = run.succeeded().json();
    assert_eq!(module["sha256"], sha256_of(fixtures::TEMPLATE));
    assert_eq!(module["abi"], "component");
    assert_eq!(module["world"], "chat-moderation");
    assert_eq!(module["witVersion"], "0.1.0");
    assert_eq!(module["slots"], json!(["chat"]));
}

#[test]
fn check_passes_the_extism_sample_and_says_what_it_is() {
    let run = offline(&["check", fixtures::EXTISM_SAMPLE, "--slot", "chat"]);
    run.succeeded();
    assert!(
        run.stdout
            .contains("is an Extism module implementing chat-moderation at WIT 0.1.0"),
        "{}",
        run.describe()
    );
    let run = offline(&["check", fixtures::EXTISM_HOSTILE, "--json"]);
    let module = run.succeeded().json();
    assert_eq!(module["abi"], "extism");
    assert_eq!(module["slots"], json!(["chat", "files", "signaling"]));
}

#[test]
fn check_without_a_slot_prepares_every_slot_the_module_exports() {
    let run = offline(&["check", fixtures::PANIC, "--json"]);
    let module = run.succeeded().json();
    assert_eq!(module["slots"], json!(["chat", "files", "signaling"]));
}

#[test]
fn check_refuses_a_module_that_imports_the_filesystem() {
    let run = offline(&["check", fixtures::WASI_FILESYSTEM, "--slot", "chat"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("forbidden_import") && run.stderr.contains("wasi:filesystem/"),
        "{}",
        run.describe()
    );

    let run = offline(&["check", fixtures::WASI_FILESYSTEM, "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let error = run.json();
    assert_eq!(error["reason"], "forbidden_import");
    let imports = error["imports"].as_array().expect("imports listed");
    assert!(
        imports
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:filesystem/")),
        "{error}"
    );
}

#[test]
fn check_refuses_bytes_that_are_not_webassembly_and_a_module_in_the_wrong_slot() {
    let dir = temp_dir("cli-plugin");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"this is a text file, not a module").unwrap();
    let run = offline(&["check", garbage.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("not_wasm"), "{}", run.describe());

    let run = offline(&["check", fixtures::TEMPLATE, "--slot", "files"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("wrong_world"), "{}", run.describe());
}

#[test]
fn check_smoke_calls_the_plugin_with_the_configuration_given() {
    // The slow fixture spins `iterations` rounds per call: its own deadline refuses a
    // configuration that makes even the first call too slow.
    let run = offline(&[
        "check",
        fixtures::SLOW,
        "--slot",
        "chat",
        "--config",
        r#"{"iterations": 1000}"#,
    ]);
    run.succeeded();
    let run = offline(&[
        "check",
        fixtures::SLOW,
        "--slot",
        "chat",
        "--config",
        r#"{"iterations": 100000000000}"#,
    ]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("config_rejected"), "{}", run.describe());
}

#[test]
fn a_command_line_that_cannot_be_acted_on_exits_2() {
    for args in [
        vec!["check", fixtures::TEMPLATE, "--config", "[1]"],
        vec!["check", fixtures::TEMPLATE, "--slot", "video"],
        vec!["check", "no-such-module.wasm"],
        vec!["activate", "chat"],
        vec!["activate", "chat", "--chain", "plugins/x.wasm"],
        vec![
            "activate",
            "chat",
            "--chain",
            "builtin:chat-moderation",
            "--config",
            "x={}",
        ],
        vec!["shadow", "chat", "--off", "--promote"],
        // Every remote command needs a token; none is set here.
        vec!["list"],
    ] {
        let run = offline(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.describe());
    }
}

#[test]
fn every_plugin_command_has_help() {
    for command in [
        "check",
        "list",
        "install",
        "modules",
        "activate",
        "rollback",
        "shadow",
        "decisions",
        "revisions",
    ] {
        let run = offline(&[command, "--help"]);
        run.succeeded();
        assert!(run.stdout.contains("Usage: lyceum plugin"), "{command}");
    }
    let run = offline(&["--help"]);
    assert!(run.succeeded().stdout.contains("LYCEUM_TOKEN"));
}

/// A running server in its own directory, an administrator's token for it, and the
/// binary run against both.
struct Operator {
    dir: PathBuf,
    addr: String,
    token: String,
    _server: KillOnDrop,
    _cleanup: RemoveDirOnDrop,
}

impl Operator {
    async fn start() -> Operator {
        let dir = temp_dir("cli-plugin");
        let cleanup = RemoveDirOnDrop(dir.clone());
        user_create(&dir, "root@example.com", "admin");
        // Shared with the other tests, so the builtins compile once per run.
        let cache = std::env::temp_dir().join("lyceum-test-plugin-cache");
        let (server, addr) = serve_in(
            &dir,
            &[("LYCEUM_PLUGIN_CACHE_DIR", cache.display().to_string())],
        )
        .unwrap();
        let login = sign_in(&reqwest::Client::new(), &addr, "root@example.com").await;
        let token = login["data"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("admin login: {login}"))
            .to_owned();
        Operator {
            dir,
            addr,
            token,
            _server: server,
            _cleanup: cleanup,
        }
    }

    /// `lyceum plugin ARGS` with the server's address and the admin's token in the
    /// environment, as an operator sets them.
    fn plugin(&self, args: &[&str]) -> Run {
        self.plugin_as(&self.token, args)
    }

    fn plugin_as(&self, token: &str, args: &[&str]) -> Run {
        let run = Run::from(
            lyceum(&self.dir)
                .env("LYCEUM_URL", format!("http://{}", self.addr))
                .env("LYCEUM_TOKEN", token)
                .arg("plugin")
                .args(args)
                .output()
                .unwrap(),
        );
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "the token was printed: {}",
            run.describe()
        );
        run
    }

    async fn api(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("http://{}/api/v1{path}", self.addr))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn register(&self, role: &str) -> String {
        let (status, body) = self
            .api(
                "",
                "/auth/register",
                json!({"email": format!("{role}@example.com"), "password": "correct horse battery",
                       "name": role, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["accessToken"].as_str().unwrap().to_owned()
    }
}

fn chat(overview: &Value) -> &Value {
    overview["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == "chat")
        .expect("a chat slot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_installs_activates_audits_and_rolls_back_a_chain() {
    let op = Operator::start().await;
    let sha = sha256_of(fixtures::TEMPLATE);
    let before = op.plugin(&["list", "--json"]).succeeded().json();
    let first = chat(&before)["revision"].as_u64().unwrap();

    let run = op.plugin(&["install", fixtures::TEMPLATE, "--name", "template"]);
    assert!(
        run.succeeded()
            .stdout
            .starts_with("installed module template"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.trim_end().ends_with(&sha), "{}", run.describe());
    let again = op.plugin(&["install", fixtures::TEMPLATE]);
    assert!(
        again.succeeded().stdout.starts_with("already installed"),
        "{}",
        again.describe()
    );

    // Named by a prefix, as `list` shows modules; configured by its name in the chain.
    let run = op.plugin(&[
        "activate",
        "chat",
        "--chain",
        &format!("{}:filter", &sha[..12]),
        "builtin:chat-moderation",
        "--config",
        r#"filter={"blocked": ["buy followers"]}"#,
    ]);
    assert!(
        run.succeeded()
            .stdout
            .starts_with(&format!("chat: revision {}", first + 1)),
        "{}",
        run.describe()
    );

    let list = op.plugin(&["list"]);
    let text = &list.succeeded().stdout;
    assert!(
        text.contains(&format!("chat: revision {}", first + 1)),
        "{text}"
    );
    let filter_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("filter "))
        .unwrap_or_else(|| panic!("no row for the filter plugin:\n{text}"));
    for column in [&sha[..12], "component", "0.1.0", "fail-closed", "closed"] {
        assert!(filter_row.contains(column), "{column} in {filter_row}");
    }
    let active = op.plugin(&["list", "chat", "--json"]).succeeded().json();
    assert_eq!(active["chain"][0]["sha256"], sha);
    assert_eq!(
        active["chain"][0]["config"]["blocked"],
        json!(["buy followers"])
    );

    // A message the new plugin refuses reaches the decision audit.
    let teacher = op.register("instructor").await;
    let (status, course) = op
        .api(&teacher, "/courses", json!({"title": "Networks"}))
        .await;
    assert_eq!(status, 201, "{course}");
    let room = course["data"]["roomId"].as_str().unwrap();
    let (status, refused) = op
        .api(
            &teacher,
            &format!("/chat/rooms/{room}/messages"),
            json!({"content": "cheap: buy followers here"}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let decisions = wait_for_decision(&op);
    let decision = &decisions["items"][0];
    assert_eq!(decision["plugin"]["name"], "filter");
    assert_eq!(decision["plugin"]["sha256"], sha);
    assert_eq!(decision["verdict"], "reject");
    assert_eq!(decision["reason"], "blocked_phrase");
    let table = op.plugin(&["decisions", "--slot", "chat"]);
    assert!(
        table.succeeded().stdout.contains("blocked_phrase"),
        "{}",
        table.describe()
    );

    // A shadow candidate shows under its slot until it is switched off.
    let run = op.plugin(&[
        "shadow",
        "chat",
        "--chain",
        "builtin:chat-moderation:candidate",
    ]);
    assert!(
        run.succeeded().stdout.contains("shadow since"),
        "{}",
        run.describe()
    );
    let run = op.plugin(&["shadow", "chat", "--off", "--json"]);
    assert_eq!(run.succeeded().json()["shadow"], Value::Null);

    let run = op.plugin(&["rollback", "chat"]);
    assert!(
        run.succeeded()
            .stdout
            .starts_with(&format!("chat: revision {}", first + 2)),
        "{}",
        run.describe()
    );
    let after = op.plugin(&["list", "--json"]).succeeded().json();
    // The plugins before the activation again (their counters have moved on).
    let names = |slot: &Value| -> Vec<String> {
        slot["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}@{}", p["name"], p["sha256"]))
            .collect()
    };
    assert_eq!(names(chat(&after)), names(chat(&before)));

    let revisions = op
        .plugin(&["revisions", "chat", "--json"])
        .succeeded()
        .json();
    let newest = &revisions["items"][0];
    assert_eq!(newest["source"], "rollback");
    assert_eq!(newest["restoredFrom"], first as i64);
    let table = op.plugin(&["revisions", "chat"]);
    assert!(
        table
            .succeeded()
            .stdout
            .contains(&format!("rollback of {first}")),
        "{}",
        table.describe()
    );
}

/// The audit is written off the request path: poll until the refusal is there.
fn wait_for_decision(op: &Operator) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = op
            .plugin(&[
                "decisions",
                "--json",
                "--slot",
                "chat",
                "--verdict",
                "reject",
            ])
            .succeeded()
            .json();
        if !page["items"].as_array().unwrap().is_empty() {
            return page;
        }
        assert!(Instant::now() < deadline, "no decision recorded: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_s_refusals_exit_1_with_their_code() {
    let op = Operator::start().await;

    let run = op.plugin_as("not-a-token", &["list"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("UNAUTHORIZED"), "{}", run.describe());
    let run = op.plugin_as("not-a-token", &["decisions", "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert_eq!(run.json()["code"], "UNAUTHORIZED");

    let student = op.register("student").await;
    let run = op.plugin_as(&student, &["modules"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("FORBIDDEN"), "{}", run.describe());

    // Refused by the server's checks: the code and details.reason, and nothing changes.
    let run = op.plugin(&["install", fixtures::WASI_FILESYSTEM]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("VALIDATION_FAILED (forbidden_import)"),
        "{}",
        run.describe()
    );
    let before = op.plugin(&["list", "chat", "--json"]).succeeded().json();
    let run = op.plugin(&["activate", "chat", "--chain", "builtin:file-validation"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("VALIDATION_FAILED"),
        "{}",
        run.describe()
    );
    let after = op.plugin(&["list", "chat", "--json"]).succeeded().json();
    assert_eq!(after["revision"], before["revision"]);

    let run = op.plugin(&["rollback", "signaling"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("CONFLICT"), "{}", run.describe());

    // Refusals of modules and chains are not plugin decisions.
    let run = op.plugin(&["decisions"]);
    assert_eq!(run.succeeded().stdout, "no decisions\n");

    // Nobody listening: exit 1, saying where it tried.
    let run = Run::from(
        lyceum(&op.dir)
            .env("LYCEUM_TOKEN", &op.token)
            .args(["plugin", "list", "--url", "http://127.0.0.1:9"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("127.0.0.1:9"), "{}", run.describe());
}
