//! The `lyceum` binary as an operator uses it: configuration errors, masked `config`, `migrate`,
//! `user create` against a running server, and a clean exit on SIGTERM.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_lyceum");

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lyceum-cli-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A command with a clean `LYCEUM_*` environment rooted in `dir`.
fn lyceum(dir: &PathBuf) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("LYCEUM_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("LYCEUM_DATA_DIR", dir.join("data"))
        .env("LYCEUM_ARGON2_MEMORY_KIB", "8192")
        .env("LYCEUM_ARGON2_ITERATIONS", "1");
    command
}

#[test]
fn an_invalid_value_stops_start_up_naming_the_key() {
    let dir = temp_dir();
    let cases = [
        ("LYCEUM_BIND", "not-an-address", "bind"),
        ("LYCEUM_ACCESS_TOKEN_TTL", "0", "access_token_ttl"),
        ("LYCEUM_ACCESS_TOKEN_TTL", "fortnight", "access_token_ttl"),
        (
            "LYCEUM_DATABASE_URL",
            "mysql://localhost/db",
            "database_url",
        ),
        ("LYCEUM_JWT_SECRET", "short", "jwt_secret"),
        ("LYCEUM_MAX_JSON_BODY", "12 parsecs", "max_json_body"),
    ];
    for (key, value, named) in cases {
        let output = lyceum(&dir).env(key, value).arg("serve").output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{key}={value} should stop start-up"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(named),
            "{key}={value}: message does not name `{named}`: {stderr}"
        );
    }
    std::fs::write(dir.join("lyceum.toml"), "bnid = \"127.0.0.1:1\"\n").unwrap();
    let output = lyceum(&dir).arg("config").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bnid"));
    // An explicitly named config file must exist.
    let output = lyceum(&dir)
        .args(["--config", "missing.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn config_prints_the_effective_values_with_secrets_masked() {
    let dir = temp_dir();
    std::fs::write(
        dir.join("lyceum.toml"),
        "access_token_ttl = \"5m\"\ncors_origins = [\"https://app.example\"]\n",
    )
    .unwrap();
    let output = lyceum(&dir)
        .env(
            "LYCEUM_JWT_SECRET",
            "an-operator-secret-of-at-least-32-bytes",
        )
        .env(
            "LYCEUM_DATABASE_URL",
            "postgres://app:hunter2@db.internal:5432/lyceum",
        )
        .env("LYCEUM_REDIS_URL", "redis://:redispass@cache:6379")
        .env("LYCEUM_BIND", "0.0.0.0:8080")
        .arg("config")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("bind = \"0.0.0.0:8080\""), "{text}");
    assert!(
        text.contains("access_token_ttl = \"5m\""),
        "file value kept: {text}"
    );
    assert!(text.contains("https://app.example"), "{text}");
    assert!(
        text.contains("postgres://app:********@db.internal:5432/lyceum"),
        "{text}"
    );
    for secret in ["an-operator-secret", "hunter2", "redispass"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "create", "--help"],
        vec!["config", "--help"],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = temp_dir();
    let output = lyceum(&dir).arg("migrate").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("data/lyceum.db").exists());
    // Applying again is a no-op.
    assert!(
        lyceum(&dir)
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn user_create_refuses_a_bad_role_and_never_takes_a_password_argument() {
    let dir = temp_dir();
    let output = lyceum(&dir)
        .args([
            "user",
            "create",
            "--email",
            "a@example.com",
            "--name",
            "A",
            "--role",
            "overlord",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let output = lyceum(&dir)
        .args([
            "user",
            "create",
            "--email",
            "a@example.com",
            "--name",
            "A",
            "--password",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "--password must not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_created_while_the_server_runs_can_sign_in_and_sigterm_stops_it_cleanly() {
    let dir = temp_dir();
    let mut server = lyceum(&dir)
        .env("LYCEUM_BIND", "127.0.0.1:0")
        .env("LYCEUM_LOG", "info")
        .env("NO_COLOR", "1")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let server = KillOnDrop(server);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("lyceum listening") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
                let _ = addr_tx.send(strip_ansi(&addr));
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server announced its address");

    let mut create = lyceum(&dir)
        .args([
            "user",
            "create",
            "--email",
            "root@example.com",
            "--name",
            "Root",
            "--role",
            "admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"operator-password\n")
        .unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "root@example.com", "password": "operator-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["data"]["user"]["role"], "admin", "{login}");

    let mut server = server;
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Kills the server if the test fails before stopping it, so no process outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn processes_starting_together_on_a_fresh_database_all_succeed() {
    // A server and an operator's `user create` on a first run both apply the migrations.
    let dir = temp_dir();
    let children: Vec<_> = (0..4)
        .map(|_| {
            lyceum(&dir)
                .arg("migrate")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
