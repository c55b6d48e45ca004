//! The real `lyceum` binary as a separate process, for the CLI tests and the upload
//! benchmark: starting it in its own directory, signing up, reading its memory from `/proc`,
//! and the streamed MP4 bodies both upload.
// Each target that includes this module uses part of it.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use axum::body::Bytes;

/// The binary of the profile being built (`target/release/lyceum` under `cargo bench`).
pub const BIN: &str = env!("CARGO_BIN_EXE_lyceum");
pub const MIB: u64 = 1024 * 1024;
/// The start of a real MP4 (an `ftyp` box), which the file-validation plugin sniffs for.
pub const MP4_HEADER: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";

/// A fresh directory under the system's temporary one.
pub fn temp_dir(label: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("lyceum-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A command with a clean `LYCEUM_*` environment rooted in `dir`, hashing passwords cheaply.
pub fn lyceum(dir: &Path) -> Command {
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

/// Kills the server however its owner ends, so no process outlives a test or a benchmark.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes a directory however its owner ends.
pub struct RemoveDirOnDrop(pub PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `lyceum serve` rooted in `dir` (uploads in `dir/uploads`) on a free loopback port, with
/// `env` added, and the address it announced, once its policy plugins are loaded.
pub fn serve_in(dir: &Path, env: &[(&str, String)]) -> anyhow::Result<(KillOnDrop, String)> {
    let mut command = lyceum(dir);
    command
        .env("LYCEUM_BIND", "127.0.0.1:0")
        .env("LYCEUM_UPLOAD_DIR", dir.join("uploads"))
        .env("LYCEUM_LOG", "info")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {BIN}"))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = KillOnDrop(child);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Reads the log to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("policy plugins ready") {
                let _ = ready_tx.send(());
            }
            if line.contains("lyceum listening")
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
            {
                let _ = addr_tx.send(strip_ansi(addr));
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not announce its address within 60 s")?;
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .context("the server's policy plugins were not ready within 120 s")?;
    Ok((server, addr))
}

/// `lyceum user create` in `dir`, named Root, with the password `operator-password` on
/// standard input; panics unless it succeeds.
pub fn user_create(dir: &Path, email: &str, role: &str) {
    let mut create = lyceum(dir)
        .args([
            "user", "create", "--email", email, "--name", "Root", "--role", role,
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
}

/// `POST /auth/login` as an account [`user_create`] made; the reply's body.
pub async fn sign_in(client: &reqwest::Client, addr: &str, email: &str) -> serde_json::Value {
    client
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": "operator-password"}))
        .send()
        .await
        .expect("login request")
        .json()
        .await
        .expect("login reply")
}

/// Registers a student on the server at `addr`; its access token.
pub async fn register_student(
    client: &reqwest::Client,
    addr: &str,
    email: &str,
) -> anyhow::Result<String> {
    let reply = client
        .post(format!("http://{addr}/api/v1/auth/register"))
        .json(&serde_json::json!({
            "email": email,
            "password": "correct horse battery",
            "name": "Uploader",
            "role": "student",
        }))
        .send()
        .await?;
    let status = reply.status();
    let body: serde_json::Value = reply.json().await?;
    if status != 201 {
        bail!("register: {status} {body}");
    }
    Ok(body["data"]["accessToken"]
        .as_str()
        .context("accessToken")?
        .to_owned())
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
pub fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Lowers the peak RSS (`VmHWM`) to the current RSS (`clear_refs` mode 5, Linux 4.0+).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The first 1 MiB chunk of an MP4 body (an `ftyp` box, then pseudo-random bytes) and the
/// pseudo-random MiB every later chunk repeats; made once, so a client generates nothing.
pub fn mp4_chunks() -> (Bytes, Bytes) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = Vec::with_capacity(MIB as usize);
    while chunk.len() < MIB as usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.extend_from_slice(&state.to_le_bytes());
    }
    let mut first = chunk.clone();
    first[..MP4_HEADER.len()].copy_from_slice(MP4_HEADER);
    (Bytes::from(first), Bytes::from(chunk))
}

/// A `size`-byte body as 1 MiB chunks sharing the two buffers (no copies).
pub fn body_chunks(size: u64, first: &Bytes, chunk: &Bytes) -> impl Iterator<Item = Bytes> + use<> {
    let (first, chunk) = (first.clone(), chunk.clone());
    (0..size.div_ceil(MIB)).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        let source = if i == 0 { &first } else { &chunk };
        source.slice(..len)
    })
}

/// Text without ANSI escape sequences (log lines may carry colours).
pub fn strip_ansi(text: &str) -> String {
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
