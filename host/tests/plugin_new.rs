//! `lyceum plugin new` and `lyceum plugin test` as a plugin author uses them.
//!
//! Every kind of project is written into a temporary folder outside the repository, built
//! with its language's own tools (cargo, npm with componentize-js, pip with
//! componentize-py), and tested by its own test command, which runs the real
//! `lyceum plugin test` on the built module with the project's `cases.json`. The generated
//! Rust and Extism projects share one cargo target directory, `target/plugin-new`, so their
//! wasm dependencies compile once; npm and pip use their caches.
//!
//! `lyceum plugin test` itself is then shown on the components this repository builds:
//! what a passing run, a failing expectation, a failing call, a refused module and a
//! malformed cases file each print, and how each exits.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
};

use lyceum_plugin_runtime::fixtures;
use serde_json::{Value, json};

mod support;

use support::{BIN, RemoveDirOnDrop, lyceum, temp_dir};

/// Builds take both cores of a small machine: one at a time, and never beside the tests
/// that call plugins, whose calls run under a wall-clock deadline.
static BUILDS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    BUILDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one command printed, and how it exited.
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

    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn exited(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives at host/")
        .to_path_buf()
}

/// `lyceum plugin ARGS`, run in `dir`.
fn plugin(dir: &Path, args: &[&str]) -> Run {
    Run::from(lyceum(dir).arg("plugin").args(args).output().unwrap())
}

/// A project's own command, run in its folder as its author would run it, with `lyceum`
/// named by LYCEUM_BIN.
fn project_command(project: &Path, program: &str, args: &[&str]) -> Run {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(project)
        .env("LYCEUM_BIN", BIN)
        .env("CARGO_TARGET_DIR", repository().join("target/plugin-new"));
    // What the outer cargo set for this test would misdirect the projects' own builds.
    for key in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(key);
    }
    // Outside the repository, rustup would pick the machine's default toolchain, which may
    // lack the wasm targets: keep the repository's.
    if std::env::var_os("RUSTUP_TOOLCHAIN").is_none()
        && let Some(channel) = repository_toolchain()
    {
        command.env("RUSTUP_TOOLCHAIN", channel);
    }
    Run::from(
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}")),
    )
}

/// The channel of the repository's `rust-toolchain.toml`.
fn repository_toolchain() -> Option<String> {
    let text = std::fs::read_to_string(repository().join("rust-toolchain.toml")).ok()?;
    text.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("channel")?
            .trim()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

/// How many cases a project's `cases.json` holds.
fn case_count(project: &Path) -> usize {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("cases.json")).unwrap())
            .unwrap();
    cases["cases"].as_array().map_or(0, Vec::len)
}

/// Writes the project NAME for `slot` in `lang` under `parent` and returns its folder.
#[track_caller]
fn new_project(parent: &Path, name: &str, slot: &str, lang: &str) -> PathBuf {
    let run = plugin(
        parent,
        &[
            "new",
            name,
            "--slot",
            slot,
            "--lang",
            lang,
            "--dir",
            parent.to_str().unwrap(),
        ],
    );
    run.exited(0);
    let project = parent.join(name);
    assert!(
        run.stdout.contains(&project.display().to_string()),
        "{}",
        run.describe()
    );
    for needed in ["wit/worlds.wit", "cases.json", "README.md", ".gitignore"] {
        assert!(
            project.join(needed).is_file(),
            "{lang}/{slot} lacks {needed}"
        );
    }
    project
}

/// The project's test passed every one of its cases.
#[track_caller]
fn passed_every_case(run: &Run, project: &Path) {
    run.exited(0);
    let total = case_count(project);
    assert!(total > 0, "{} has no case", project.display());
    assert!(
        run.stdout.contains(&format!("{total} passed, 0 failed")),
        "{}",
        run.describe()
    );
    assert!(!run.stdout.contains("FAILED"), "{}", run.describe());
}

#[test]
fn rust_projects_of_every_slot_build_and_pass_their_cases() {
    let _alone = one_at_a_time();
    let parent = temp_dir("plugin-new-rust");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    for slot in ["chat", "files", "signaling"] {
        let project = new_project(&parent, &format!("rust-{slot}"), slot, "rust");
        // Nothing of the repository is reachable from the project: it carries its SDK.
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("path = \"lyceum-plugin-sdk\""),
            "{manifest}"
        );
        let run = project_command(&project, "./test.sh", &[]);
        passed_every_case(&run, &project);
        assert!(project.join(format!("dist/rust-{slot}.wasm")).is_file());
    }
}

#[test]
fn extism_projects_build_and_run_their_cases_once_the_server_accepts_extism_modules() {
    let _alone = one_at_a_time();
    let parent = temp_dir("plugin-new-extism");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    for slot in ["chat", "files", "signaling"] {
        let name = format!("extism-{slot}");
        let project = new_project(&parent, &name, slot, "extism");
        project_command(&project, "./build.sh", &[]).exited(0);
        let wasm = format!("dist/{name}.wasm");
        let check = plugin(&project, &["check", &wasm, "--slot", slot, "--json"]);
        if check.code == Some(0) {
            let module: Value = serde_json::from_str(&check.stdout).unwrap();
            assert_eq!(module["abi"], "extism", "{}", check.describe());
            assert_eq!(module["witVersion"], "0.1.0", "{}", check.describe());
            let run = project_command(&project, "./test.sh", &[]);
            passed_every_case(&run, &project);
        } else {
            // Only a server that runs no Extism module at all may refuse it, and then for
            // being a core module, not for anything the project put in it.
            check.exited(1);
            let error: Value = serde_json::from_str(&check.stdout).unwrap();
            assert!(
                error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("a plugin must be a WebAssembly component")),
                "{}",
                check.describe()
            );
        }
    }
}

#[test]
fn js_projects_build_with_componentize_js_and_pass_their_cases() {
    let _alone = one_at_a_time();
    let parent = temp_dir("plugin-new-js");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    for slot in ["chat", "files", "signaling"] {
        let project = new_project(&parent, &format!("js-{slot}"), slot, "js");
        project_command(&project, "npm", &["install", "--no-audit", "--no-fund"]).exited(0);
        let run = project_command(&project, "npm", &["test"]);
        passed_every_case(&run, &project);
    }
}

#[test]
fn python_projects_build_with_componentize_py_and_pass_their_cases() {
    let _alone = one_at_a_time();
    let parent = temp_dir("plugin-new-python");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    for slot in ["chat", "files", "signaling"] {
        let project = new_project(&parent, &format!("python-{slot}"), slot, "python");
        let run = project_command(&project, "./test.sh", &[]);
        passed_every_case(&run, &project);
    }
}

#[test]
fn new_refuses_a_folder_that_holds_something() {
    let parent = temp_dir("plugin-new-taken");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    let taken = parent.join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let dir = parent.to_str().unwrap();

    let run = plugin(
        &parent,
        &[
            "new", "taken", "--slot", "chat", "--lang", "rust", "--dir", dir,
        ],
    );
    run.exited(2);
    assert!(
        run.stderr.contains("not an empty folder"),
        "{}",
        run.describe()
    );
    assert_eq!(
        std::fs::read_dir(&taken).unwrap().count(),
        1,
        "nothing was written beside the file"
    );

    // An empty folder is as good as none.
    std::fs::create_dir_all(parent.join("empty")).unwrap();
    plugin(
        &parent,
        &[
            "new", "empty", "--slot", "chat", "--lang", "rust", "--dir", dir,
        ],
    )
    .exited(0);
    assert!(parent.join("empty/src/lib.rs").is_file());
}

#[test]
fn new_refuses_names_slots_and_languages_it_does_not_know() {
    let parent = temp_dir("plugin-new-args");
    let _cleanup = RemoveDirOnDrop(parent.clone());
    let dir = parent.to_str().unwrap();
    for name in ["Chat", "chat_filter", "-chat", "chat filter", "../escape"] {
        let run = plugin(
            &parent,
            &[
                "new", name, "--slot", "chat", "--lang", "rust", "--dir", dir,
            ],
        );
        run.exited(2);
        assert!(
            run.stderr.contains("cannot name a project") || run.stderr.contains("error:"),
            "{name}: {}",
            run.describe()
        );
    }
    let run = plugin(
        &parent,
        &[
            "new", "ok", "--slot", "video", "--lang", "rust", "--dir", dir,
        ],
    );
    run.exited(2);
    assert!(run.stderr.contains("video"), "{}", run.describe());
    let run = plugin(
        &parent,
        &["new", "ok", "--slot", "chat", "--lang", "go", "--dir", dir],
    );
    run.exited(2);
    assert!(run.stderr.contains("go"), "{}", run.describe());
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "a refused command writes nothing"
    );
}

/// A cases file in a fresh folder, and that folder.
fn cases_file(label: &str, cases: &Value) -> (PathBuf, RemoveDirOnDrop) {
    let dir = temp_dir(label);
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_string_pretty(cases).unwrap()).unwrap();
    (path, RemoveDirOnDrop(dir))
}

fn message(content: &str) -> Value {
    json!({"message": {"roomId": "room-1", "event": "send", "content": content}})
}

/// `lyceum plugin test MODULE --slot SLOT --cases CASES EXTRA…`.
fn plugin_test(module: &str, slot: &str, cases: &Path, extra: &[&str]) -> Run {
    let dir = cases.parent().unwrap();
    let mut args = vec![
        "test",
        module,
        "--slot",
        slot,
        "--cases",
        cases.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    plugin(dir, &args)
}

#[test]
fn test_passes_when_every_verdict_is_the_one_expected() {
    let _alone = one_at_a_time();
    // The template refuses the phrases its configuration blocks.
    let (cases, _cleanup) = cases_file(
        "plugin-test-pass",
        &json!({
            "config": {"blocked": ["buy followers"]},
            "cases": [
                {"name": "a greeting", "call": "moderate", "input": message("hello"),
                 "expect": {"tag": "allow"}},
                {"name": "spam", "call": "moderate", "input": message("Buy Followers now"),
                 "expect": {"tag": "reject", "val": {"code": "blocked_phrase"}}},
                {"name": "no expectation", "call": "moderate", "input": message("anything")}
            ]
        }),
    );
    let run = plugin_test(fixtures::TEMPLATE, "chat", &cases, &[]);
    run.exited(0);
    assert!(
        run.stdout.contains("ok      a greeting"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout
            .contains(r#"ok      spam (moderate): {"tag":"reject""#),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("3 passed, 0 failed"),
        "{}",
        run.describe()
    );

    // --config replaces the file's configuration: now nothing is blocked.
    let run = plugin_test(
        fixtures::TEMPLATE,
        "chat",
        &cases,
        &["--config", r#"{"blocked": ["unrelated"]}"#],
    );
    run.exited(1);
    assert!(run.stdout.contains("FAILED  spam"), "{}", run.describe());
}

#[test]
fn a_wrong_verdict_fails_its_case_by_name_and_exits_1() {
    let _alone = one_at_a_time();
    let (cases, _cleanup) = cases_file(
        "plugin-test-fail",
        &json!({
            "cases": [
                {"name": "allowed as expected", "call": "moderate", "input": message("hi"),
                 "expect": {"tag": "allow"}},
                {"name": "wrongly expected refused", "call": "moderate", "input": message("hi"),
                 "expect": {"tag": "reject"}}
            ]
        }),
    );
    let config = cases.parent().unwrap().join("config.json");
    std::fs::write(&config, r#"{"blocked": []}"#).unwrap();
    let config_arg = format!("@{}", config.display());
    let run = plugin_test(
        fixtures::TEMPLATE,
        "chat",
        &cases,
        &["--config", &config_arg],
    );
    run.exited(1);
    assert!(
        run.stdout.contains(
            r#"FAILED  wrongly expected refused (moderate): expected {"tag":"reject"}, got {"tag":"allow"}"#
        ),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("1 passed, 1 failed"),
        "{}",
        run.describe()
    );

    let run = plugin_test(fixtures::TEMPLATE, "chat", &cases, &["--json"]);
    run.exited(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["cases"][1]["name"], "wrongly expected refused");
    assert_eq!(report["cases"][1]["passed"], false);
    assert_eq!(report["cases"][1]["got"], json!({"tag": "allow"}));
}

#[test]
fn a_call_that_fails_is_a_failed_case_with_its_kind() {
    let _alone = one_at_a_time();
    let (cases, _cleanup) = cases_file(
        "plugin-test-trap",
        &json!({
            "cases": [
                {"name": "calm", "call": "check_signal",
                 "input": {"signal": {"sessionId": "s", "kind": "offer", "from": "a", "to": "b",
                                      "payload": "{}"}},
                 "expect": {"tag": "relay"}},
                {"name": "panics", "call": "check_signal",
                 "input": {"signal": {"sessionId": "s", "kind": "offer", "from": "a", "to": "b",
                                      "payload": "\"panic\""}},
                 "expect": {"tag": "relay"}}
            ]
        }),
    );
    // The panic fixture exports every world; it panics on a payload containing "panic".
    let run = plugin_test(fixtures::PANIC, "signaling", &cases, &[]);
    run.exited(1);
    assert!(run.stdout.contains("ok      calm"), "{}", run.describe());
    assert!(
        run.stdout
            .contains("FAILED  panics (check_signal): the call failed: trap"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_refused_module_exits_1_with_the_reason_check_gives() {
    let _alone = one_at_a_time();
    let (cases, _cleanup) = cases_file(
        "plugin-test-refused",
        &json!({"cases": [{"call": "moderate", "input": message("hi")}]}),
    );
    let run = plugin_test(fixtures::WRONG_WORLD, "chat", &cases, &[]);
    run.exited(1);
    let check = plugin(
        cases.parent().unwrap(),
        &["check", fixtures::WRONG_WORLD, "--slot", "chat"],
    );
    check.exited(1);
    assert_eq!(run.stderr, check.stderr, "the same refusal as `check`");
    assert!(run.stderr.contains("refused ("), "{}", run.describe());
}

#[test]
fn a_malformed_cases_file_exits_2_naming_the_json_path() {
    let cases = [
        (
            json!({"cases": [
                {"call": "moderate", "input": message("fine")},
                {"call": "moderate", "input": {"message": {"roomId": "r", "event": "shout", "content": "x"}}}
            ]}),
            "at cases[1].input.message.event: unknown variant `shout`",
        ),
        (
            json!({"cases": [{"call": "precheck", "input": message("wrong slot")}]}),
            "at cases[0].call: `precheck` is a function of the files slot",
        ),
        (
            json!({"cases": [{"call": "moderate", "input": message("x"), "expect": {"tag": "deny"}}]}),
            "at cases[0].expect.tag: `deny` is not a verdict of `moderate`",
        ),
        (
            json!({"cases": [{"call": "moderate", "input": {"ctx": {"atUnixMS": 1}, "message": {"roomId": "r", "event": "send", "content": "x"}}}]}),
            "at cases[0].input.ctx: unknown field `atUnixMS`",
        ),
        (json!({"case": []}), "unknown field `case`"),
    ];
    for (file, said) in cases {
        let (cases, _cleanup) = cases_file("plugin-test-malformed", &file);
        let run = plugin_test(fixtures::TEMPLATE, "chat", &cases, &[]);
        run.exited(2);
        assert!(
            run.stderr.contains(said),
            "expected {said:?}: {}",
            run.describe()
        );
    }
}
