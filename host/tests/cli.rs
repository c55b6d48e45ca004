//! The `lyceum` binary as an operator uses it: configuration errors, masked `config`, `migrate`,
//! `user create` against a running server (and beside its uploads in flight), `SIGHUP`
//! reading the plugins file again, a clean exit on SIGTERM, and a 1 GiB upload that leaves
//! the server's memory flat.

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

mod support;

use support::{
    BIN, MIB, RemoveDirOnDrop, body_chunks, lyceum, mp4_chunks, register_student, reset_peak_rss,
    serve_in, sign_in, temp_dir, user_create, vm_kib,
};

#[test]
fn an_invalid_value_stops_start_up_naming_the_key() {
    let dir = temp_dir("cli");
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
        ("LYCEUM_PASSWORD_HASH_QUEUE", "0", "password_hash_queue"),
        (
            "LYCEUM_PASSWORD_HASH_THREADS",
            "many",
            "password_hash_threads",
        ),
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
    let dir = temp_dir("cli");
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
    let dir = temp_dir("cli");
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
    let dir = temp_dir("cli");
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

#[test]
fn an_operator_changes_a_role_and_deletes_an_account() {
    let dir = temp_dir("cli");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    user_create(&dir, "ada@example.com", "student");
    let run = |args: &[&str]| {
        let output = lyceum(&dir).arg("user").args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, stdout, stderr) = run(&[
        "set-role",
        "--email",
        "Ada@example.com",
        "--role",
        "instructor",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ada@example.com") && stdout.contains("is now instructor"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(&[
        "set-role",
        "--email",
        "ada@example.com",
        "--role",
        "overlord",
    ]);
    assert!(!ok, "a role that does not exist was taken: {stderr}");

    let (ok, stdout, stderr) = run(&["delete", "--email", "ada@example.com"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("deleted instructor ada@example.com"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(&["delete", "--email", "ada@example.com"]);
    assert!(!ok);
    assert!(stderr.contains("NOT_FOUND"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_created_while_the_server_runs_can_sign_in_and_sigterm_stops_it_cleanly() {
    let dir = temp_dir("cli");
    let (server, addr) = serve_in(&dir, &[]).unwrap();

    user_create(&dir, "root@example.com", "admin");

    let client = reqwest::Client::new();
    let login = sign_in(&client, &addr, "root@example.com").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_plugins_file_again_and_the_server_carries_on() {
    let dir = temp_dir("cli");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let file = dir.join("plugins.toml");
    std::fs::write(&file, chat_chain("flag")).unwrap();
    // Not watching the file: only the signal can make the server read it again.
    let (mut server, addr) =
        serve_in(&dir, &[("LYCEUM_PLUGINS_WATCH", "false".to_owned())]).unwrap();
    user_create(&dir, "root@example.com", "admin");
    let client = reqwest::Client::new();
    let login = sign_in(&client, &addr, "root@example.com").await;
    let token = login["data"]["accessToken"].as_str().unwrap().to_owned();
    let chat_slot = async || -> serde_json::Value {
        let reply: serde_json::Value = client
            .get(format!("http://{addr}/api/v1/plugins/chat"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["data"].clone()
    };
    let before = chat_slot().await["revision"].as_u64().expect("a revision");

    std::fs::write(&file, chat_chain("reject")).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        chat_slot().await["revision"].as_u64(),
        Some(before),
        "the file was read without a signal"
    );
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let slot = loop {
        let slot = chat_slot().await;
        if slot["revision"].as_u64() > Some(before) {
            break slot;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not apply the file: {slot}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(slot["revision"].as_u64(), Some(before + 1), "{slot}");
    assert_eq!(
        slot["chain"][0]["config"]["lists"][0]["action"], "reject",
        "{slot}"
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited on SIGHUP"
    );
}

/// A plugins file whose chat chain is the builtin moderation plugin with one word list.
fn chat_chain(action: &str) -> String {
    format!(
        "[[chat.plugins]]\nsource = \"builtin:chat-moderation\"\n\n\
         [[chat.plugins.config.lists]]\naction = \"{action}\"\nwords = [\"zebra\"]\ncode = \"no_zebras\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_lands_while_an_operator_creates_a_user() {
    // `user create` used to run the server's whole start-up, which empties the upload
    // directory's temporary files: those of the live server's uploads in flight.
    const SIZE: u64 = 8 * MIB;
    let dir = temp_dir("cli");
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let (_server, addr) = serve_in(&dir, &[]).unwrap();
    let client = reqwest::Client::new();
    let token = register_student(&client, &addr, "uploader@example.com")
        .await
        .unwrap();

    // The body is sent in two halves; the second waits until the operator is done.
    let (first, chunk) = mp4_chunks();
    let chunks: Vec<_> = body_chunks(SIZE, &first, &chunk).collect();
    let expected = {
        let mut hasher = Sha256::new();
        chunks.iter().for_each(|c| hasher.update(c));
        hex::encode(hasher.finalize())
    };
    let (send, receive) = tokio::sync::mpsc::channel::<axum::body::Bytes>(chunks.len());
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(receive, |mut rx| async {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::io::Error>(bytes), rx))
    }));
    let upload = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move { upload_mp4(&client, &addr, &token, body, SIZE).await }
    });
    let half = chunks.len() / 2;
    for bytes in &chunks[..half] {
        send.send(bytes.clone()).await.unwrap();
    }
    let temporary = dir.join("uploads").join(".tmp");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The server writes through a buffer: some of what was sent may not be on disk yet.
    while temporary_bytes(&temporary) < 2 * MIB {
        assert!(
            Instant::now() < deadline,
            "the first half never reached the server's temporary file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let on_disk = temporary_bytes(&temporary);
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || user_create(&dir, "root@example.com", "admin")
    })
    .await
    .unwrap();
    assert!(
        temporary_bytes(&temporary) >= on_disk,
        "user create removed the temporary file of an upload in flight"
    );

    for bytes in &chunks[half..] {
        send.send(bytes.clone()).await.unwrap();
    }
    drop(send);
    let (status, reply) = upload.await.unwrap();
    assert_eq!(status, 201, "upload: {reply}");
    assert_eq!(reply["data"]["sha256"], expected.as_str(), "{reply}");
    let stored = dir
        .join("uploads")
        .join("videos")
        .join(reply["data"]["filename"].as_str().expect("filename"));
    assert_eq!(sha256_of_file(&stored), expected);
}

/// Bytes in the regular files directly under `dir` (none when it does not exist).
fn temporary_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

#[test]
fn processes_starting_together_on_a_fresh_database_all_succeed() {
    // A server and an operator's `user create` on a first run both apply the migrations.
    let dir = temp_dir("cli");
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

// ---- A large upload through the real binary ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_upload_keeps_the_server_memory_flat() {
    const SIZE: u64 = 1024 * MIB;
    // Bounds for the debug server: a body held in memory, even briefly, passes 1 GiB.
    const PEAK_LIMIT_KIB: u64 = 200 * 1024;
    const GROWTH_LIMIT_KIB: u64 = 100 * 1024;

    let dir = temp_dir("cli");
    // Declared before the server so it drops after it: the process is gone before the
    // directory, and the gigabyte in it, is removed, whether the test passes or not.
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let (server, addr) = serve_in(&dir, &[]).unwrap();
    let pid = server.0.id();
    let client = reqwest::Client::new();
    let token = register_student(&client, &addr, "uploader@example.com")
        .await
        .unwrap();

    // Start-up (compiling the plugins) sets its own peak; measure the upload's from here.
    let peak_reset = reset_peak_rss(pid);
    let rss_before = vm_kib(pid, "VmRSS").expect("VmRSS");
    let hwm_before = vm_kib(pid, "VmHWM").expect("VmHWM");

    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let started = Instant::now();
    let (status, reply) = tokio::time::timeout(
        Duration::from_secs(900),
        upload_mp4(&client, &addr, &token, mp4_body(SIZE, hasher.clone()), SIZE),
    )
    .await
    .expect("the upload finished within 15 minutes");
    let elapsed = started.elapsed();
    let rss_after = vm_kib(pid, "VmRSS").expect("VmRSS");
    let hwm_after = vm_kib(pid, "VmHWM").expect("VmHWM");
    let expected = hex::encode(hasher.lock().unwrap().clone().finalize());

    println!(
        "1 GiB upload: {:.1} s ({:.0} MiB/s); server VmRSS before {:.1} MiB, after {:.1} MiB; \
         VmHWM before {:.1} MiB, after {:.1} MiB (peak reset before the upload: {peak_reset})",
        elapsed.as_secs_f64(),
        SIZE as f64 / MIB as f64 / elapsed.as_secs_f64(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        hwm_after as f64 / 1024.0,
    );

    assert_eq!(status, 201, "upload: {reply}");
    assert_eq!(reply["success"], true, "{reply}");
    let file = &reply["data"];
    assert_eq!(file["size"], SIZE, "{reply}");
    assert_eq!(file["sha256"], expected.as_str(), "{reply}");
    assert_eq!(file["folder"], "videos", "{reply}");
    assert_eq!(file["originalName"], "lecture.mp4", "{reply}");
    assert_eq!(file["mimetype"], "video/mp4", "{reply}");
    let filename = file["filename"].as_str().expect("filename");
    let path = dir.join("uploads").join("videos").join(filename);
    let on_disk = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{} is not on disk: {e}", path.display()));
    assert_eq!(on_disk.len(), SIZE, "{}", path.display());
    let stored = tokio::task::spawn_blocking(move || sha256_of_file(&path))
        .await
        .unwrap();
    assert_eq!(stored, expected, "the bytes on disk are not the bytes sent");

    assert!(
        hwm_after < PEAK_LIMIT_KIB,
        "server peak RSS {hwm_after} KiB during a 1 GiB upload; the body is being buffered"
    );
    assert!(
        hwm_after.saturating_sub(rss_before) < GROWTH_LIMIT_KIB,
        "server peak RSS grew by {} KiB during a 1 GiB upload ({rss_before} KiB before)",
        hwm_after.saturating_sub(rss_before)
    );
}

/// `POST /api/v1/files/upload` of `body` as `lecture.mp4` into `videos`.
async fn upload_mp4(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    body: reqwest::Body,
    size: u64,
) -> (u16, serde_json::Value) {
    let part = reqwest::multipart::Part::stream_with_length(body, size)
        .file_name("lecture.mp4")
        .mime_str("video/mp4")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("folder", "videos")
        .part("file", part);
    let reply = client
        .post(format!("http://{addr}/api/v1/files/upload"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    let status = reply.status().as_u16();
    let text = reply.text().await.expect("upload reply");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// A `size`-byte MP4 made on the fly in 1 MiB chunks (an `ftyp` box, then one pseudo-random
/// MiB over and over), so only a chunk exists at a time. `hasher` sees every byte sent.
fn mp4_body(size: u64, hasher: Arc<Mutex<Sha256>>) -> reqwest::Body {
    let (first, chunk) = mp4_chunks();
    let chunks = body_chunks(size, &first, &chunk).map(move |bytes| {
        hasher.lock().unwrap().update(&bytes);
        Ok::<_, std::io::Error>(bytes)
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

fn sha256_of_file(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; MIB as usize];
    loop {
        let read = file.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    hex::encode(hasher.finalize())
}
