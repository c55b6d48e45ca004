//! What a large upload costs: `POST /api/v1/files/upload` of a streamed MP4 through the real
//! (release) `lyceum serve` over loopback, against `dd conv=fsync` writing as much to the same
//! filesystem, with the server's memory sampled throughout.
//!
//! `cargo bench -p lyceum --bench upload`; `LYCEUM_BENCH_UPLOAD_MIB` sets the size of one
//! upload (default 1024). Numbers depend on the machine and its disk; compare runs on one.
//! Fails only when an upload is refused or the server's sha256 is not that of the bytes sent.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{
    BIN, MIB, RemoveDirOnDrop, body_chunks, mp4_chunks, register_student, reset_peak_rss, serve_in,
    vm_kib,
};

const RUNS: usize = 3;

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

    // Only a size above the defaults (2 GiB per video, 5 GiB per user) raises the caps.
    let caps = if size > 2 * 1024 * MIB {
        vec![
            ("LYCEUM_UPLOAD_MAX_VIDEOS", size.to_string()),
            ("LYCEUM_UPLOAD_USER_QUOTA", (2 * size).to_string()),
        ]
    } else {
        Vec::new()
    };
    let (server, addr) = serve_in(&dir, &caps)?;
    let pid = server.0.id();
    let client = reqwest::Client::new();
    let token = register_student(&client, &addr, "bench@example.com").await?;

    let (first, chunk) = mp4_chunks();
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
