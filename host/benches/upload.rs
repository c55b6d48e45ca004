//! What a large upload costs: `POST /api/v1/files/upload` of a streamed MP4 through the real
//! (release) `lyceum serve` over loopback, against `dd conv=fsync` writing as much to the same
//! filesystem, with the server's memory sampled throughout.
//!
//! `cargo bench -p lyceum --bench upload`; `LYCEUM_BENCH_UPLOAD_MIB` sets the size of one
//! upload (default 1024). Numbers depend on the machine and its disk; compare runs on one.
//! Fails only when an upload is refused or the server's sha256 is not that of the bytes sent.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use axum::body::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The binary of the profile being built: `target/release/lyceum` under `cargo bench`.
const BIN: &str = env!("CARGO_BIN_EXE_lyceum");
const RUNS: usize = 3;
const MIB: u64 = 1024 * 1024;
/// The start of a real MP4 (an `ftyp` box), which the file-validation plugin sniffs for.
const MP4_HEADER: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mib = match std::env::var("LYCEUM_BENCH_UPLOAD_MIB") {
        Ok(text) => parse_mib(&text)
            .with_context(|| format!("LYCEUM_BENCH_UPLOAD_MIB={text} is not a positive number"))?,
        Err(_) => 1024,
    };
    let size = mib * MIB;

    // The server's files and dd's file share one directory, hence one filesystem.
    let dir = std::env::temp_dir().join(format!("lyceum-bench-upload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveDirOnDrop(dir.clone());
    println!("binary:     {BIN}");
    if !BIN.contains("/release/") {
        println!("            (not a release build: numbers are not representative)");
    }
    println!("directory:  {} ({})", dir.display(), filesystem_of(&dir));
    println!("size:       {mib} MiB per run, {RUNS} runs of each\n");

    let (server, addr) = serve_in(&dir, size)?;
    let pid = server.0.id();
    let client = reqwest::Client::new();
    let token = register(&client, &addr).await?;

    let (first, chunk) = chunks();
    let expected = {
        let mut hasher = Sha256::new();
        for bytes in body_chunks(size, &first, &chunk) {
            hasher.update(&bytes);
        }
        hex::encode(hasher.finalize())
    };

    let baseline_kib = vm_kib(pid, "VmRSS").context("server RSS")?;
    let mut upload_rates = Vec::with_capacity(RUNS);
    let mut hwm_kib = Vec::with_capacity(RUNS);
    let mut sampled_kib = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        // Each run's peak is its own, not start-up's (plugin compilation) or the last run's.
        sync();
        let reset = reset_peak_rss(pid);
        let sampler = RssSampler::start(pid);
        let body = reqwest::Body::wrap_stream(futures::stream::iter(
            body_chunks(size, &first, &chunk).map(Ok::<_, std::io::Error>),
        ));
        let part = reqwest::multipart::Part::stream_with_length(body, size)
            .file_name("lecture.mp4")
            .mime_str("video/mp4")?;
        let form = reqwest::multipart::Form::new()
            .text("folder", "videos")
            .part("file", part);
        let started = Instant::now();
        let reply = client
            .post(format!("http://{addr}/api/v1/files/upload"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("upload run {run}: request failed"))?;
        let status = reply.status();
        let text = reply.text().await?;
        let elapsed = started.elapsed();
        let sampled = sampler.stop();
        let hwm = vm_kib(pid, "VmHWM").context("server VmHWM")?;
        ensure!(status == 201, "upload run {run}: {status} {text}");
        let reply: Value = serde_json::from_str(&text)
            .with_context(|| format!("upload run {run}: reply is not JSON: {text}"))?;
        let file = &reply["data"];
        ensure!(
            file["sha256"] == expected.as_str(),
            "upload run {run}: sha256 {} but the bytes sent hash to {expected}",
            file["sha256"]
        );
        ensure!(
            file["size"] == size,
            "upload run {run}: size {} but {size} bytes were sent",
            file["size"]
        );
        let rate = mib as f64 / elapsed.as_secs_f64();
        println!(
            "upload {run}: {:>7.2} s {rate:>8.1} MiB/s   server peak RSS {:>6.1} MiB (VmHWM{}), \
             {:>6.1} MiB (sampled every 10 ms)",
            elapsed.as_secs_f64(),
            hwm as f64 / 1024.0,
            if reset {
                ""
            } else {
                ", not reset: includes start-up"
            },
            sampled as f64 / 1024.0,
        );
        upload_rates.push(rate);
        hwm_kib.push(hwm);
        sampled_kib.push(sampled);

        let id = file["id"].as_str().context("file id")?;
        let delete = client
            .delete(format!("http://{addr}/api/v1/files/{id}"))
            .bearer_auth(&token)
            .send()
            .await?;
        if !delete.status().is_success() {
            println!(
                "WARNING: DELETE /api/v1/files/{id} answered {}: {}",
                delete.status(),
                delete.text().await.unwrap_or_default()
            );
        }
    }
    let after_kib = vm_kib(pid, "VmRSS").context("server RSS")?;
    let leftovers = files_under(&dir.join("uploads"));
    drop(server);

    let target = dir.join("dd.bin");
    let mut dd_rates = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        sync();
        let started = Instant::now();
        let output = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", target.display()))
            .args(["bs=1M", &format!("count={mib}"), "conv=fsync"])
            .output()
            .context("running dd")?;
        let elapsed = started.elapsed();
        ensure!(
            output.status.success(),
            "dd: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::remove_file(&target)?;
        let rate = mib as f64 / elapsed.as_secs_f64();
        println!(
            "dd {run}:     {:>7.2} s {rate:>8.1} MiB/s",
            elapsed.as_secs_f64()
        );
        dd_rates.push(rate);
    }

    let upload = Stats::of(&upload_rates);
    let dd = Stats::of(&dd_rates);
    let to_mib = |kib: u64| kib as f64 / 1024.0;
    let peak = hwm_kib.iter().copied().max().unwrap_or(0);
    println!();
    println!("{mib} MiB, {RUNS} runs                       min    median       max");
    println!(
        "upload (MiB/s)                  {:>9.1} {:>9.1} {:>9.1}",
        upload.min, upload.median, upload.max
    );
    println!(
        "dd conv=fsync (MiB/s)           {:>9.1} {:>9.1} {:>9.1}",
        dd.min, dd.median, dd.max
    );
    println!(
        "upload / dd                     {:>9.2} {:>9.2} {:>9.2}",
        upload.min / dd.min,
        upload.median / dd.median,
        upload.max / dd.max
    );
    println!(
        "server RSS baseline (MiB)       {:>9.1}",
        to_mib(baseline_kib)
    );
    let per_run = |values: &[u64]| {
        values
            .iter()
            .map(|&kib| format!("{:.1}", to_mib(kib)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "server peak RSS, VmHWM (MiB)    {:>9.1}   per run {}",
        to_mib(peak),
        per_run(&hwm_kib)
    );
    println!(
        "server peak RSS, sampled (MiB)  {:>9.1}   per run {}",
        to_mib(sampled_kib.iter().copied().max().unwrap_or(0)),
        per_run(&sampled_kib)
    );
    println!("server RSS after the runs (MiB) {:>9.1}", to_mib(after_kib));
    if !leftovers.is_empty() {
        println!(
            "WARNING: {} file(s) left under uploads/ after every upload was deleted: {leftovers:?}",
            leftovers.len()
        );
    }
    Ok(())
}

fn parse_mib(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&n: &u64| n > 0)
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Stats {
            min: sorted[0],
            median: sorted[sorted.len() / 2],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The first 1 MiB chunk (an `ftyp` box, then pseudo-random bytes) and the pseudo-random MiB
/// every later chunk repeats; made once, so the client spends nothing generating data.
fn chunks() -> (Bytes, Bytes) {
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
fn body_chunks(size: u64, first: &Bytes, chunk: &Bytes) -> impl Iterator<Item = Bytes> + use<> {
    let (first, chunk) = (first.clone(), chunk.clone());
    (0..size.div_ceil(MIB)).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        let source = if i == 0 { &first } else { &chunk };
        source.slice(..len)
    })
}

/// `lyceum serve` rooted in `dir` on a free loopback port, and the address it announced.
fn serve_in(dir: &Path, size: u64) -> anyhow::Result<(KillOnDrop, String)> {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("LYCEUM_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("LYCEUM_BIND", "127.0.0.1:0")
        .env("LYCEUM_DATA_DIR", dir.join("data"))
        .env("LYCEUM_UPLOAD_DIR", dir.join("uploads"))
        .env("LYCEUM_ARGON2_MEMORY_KIB", "8192")
        .env("LYCEUM_ARGON2_ITERATIONS", "1")
        .env("LYCEUM_LOG", "info")
        .env("NO_COLOR", "1");
    // Only a size above the defaults (2 GiB per video, 5 GiB per user) raises the caps.
    if size > 2 * 1024 * MIB {
        command
            .env("LYCEUM_UPLOAD_MAX_VIDEOS", size.to_string())
            .env("LYCEUM_UPLOAD_USER_QUOTA", (2 * size).to_string());
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
    // Reads the log to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("lyceum listening")
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
            {
                let _ = addr_tx.send(addr.to_owned());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not announce its address within 60 s")?;
    Ok((server, addr))
}

async fn register(client: &reqwest::Client, addr: &str) -> anyhow::Result<String> {
    let reply = client
        .post(format!("http://{addr}/api/v1/auth/register"))
        .json(&json!({
            "email": "bench@example.com",
            "password": "correct horse battery",
            "name": "Bench",
            "role": "student",
        }))
        .send()
        .await?;
    let status = reply.status();
    let body: Value = reply.json().await?;
    if status != 201 {
        bail!("register: {status} {body}");
    }
    Ok(body["data"]["accessToken"]
        .as_str()
        .context("accessToken")?
        .to_owned())
}

/// Samples the server's `VmRSS` every 10 ms until stopped; the highest value seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(vm_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
fn vm_kib(pid: u32, field: &str) -> Option<u64> {
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
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn filesystem_of(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype,source"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            Some(
                text.lines()
                    .nth(1)?
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" on "),
            )
        })
        .unwrap_or_else(|| "filesystem unknown".into())
}

/// Writes back whatever the previous run left dirty, so it is not charged to the next one.
fn sync() {
    let _ = Command::new("sync").status();
}

/// Regular files left anywhere under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
