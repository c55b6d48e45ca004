//! `upload`: multipart uploads to `/api/v1/files/upload`, streamed from two generated
//! buffers (nothing is read from disk or copied per request), `--concurrency` at a time.
//! The body is an MP4 (an `ftyp` box, then pseudo-random bytes) into `videos`, the one
//! folder whose default cap (2 GiB) fits large files.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use futures::{StreamExt, stream};
use serde_json::json;

use super::{Env, Meter};
use crate::{
    api::Account,
    report::{Figures, ratio},
    stats::Histogram,
};

const MIB: u64 = 1024 * 1024;
/// The start of a real MP4 (an `ftyp` box), which the file-validation plugin sniffs for.
const MP4_HEADER: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct UploadArgs {
    /// Bytes per file (suffixes K, M, G: binary units).
    #[arg(long, default_value = "16M", value_parser = crate::parse_size)]
    pub size: u64,
    /// Files in all.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// Uploads in flight at once (each from its own account).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
}

impl UploadArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.size >= MP4_HEADER.len() as u64,
            "--size must be at least {} bytes",
            MP4_HEADER.len()
        );
        anyhow::ensure!(self.count >= 1, "--count must be at least 1");
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        Ok(())
    }
}

/// The first MiB of every body and the MiB every later one repeats, leaked once so that
/// every request streams `'static` slices of them without copying.
fn chunks() -> (&'static [u8], &'static [u8]) {
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
    (first.leak(), chunk.leak())
}

/// A body of `size` bytes as 1 MiB slices.
fn body(size: u64, first: &'static [u8], rest: &'static [u8]) -> reqwest::Body {
    let pieces = (0..size.div_ceil(MIB)).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        let source = if i == 0 { first } else { rest };
        Ok::<_, std::io::Error>(&source[..len])
    });
    reqwest::Body::wrap_stream(stream::iter(pieces))
}

/// One upload's status (0 for a transport error) and the id of the file it created.
type Answer = (u16, Option<String>);

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path and a zeroed struct statvfs fills.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then(|| s.f_bavail * s.f_frsize)
    }
}

pub async fn upload(
    env: &mut Env,
    args: &UploadArgs,
    spawned: bool,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let total = args.size * args.count as u64;
    if spawned && let Some(free) = free_bytes(&std::env::temp_dir()) {
        anyhow::ensure!(
            total < free / 10 * 8,
            "{} MiB of uploads would not fit in 80% of the {} MiB free in the temporary directory",
            total / MIB,
            free / MIB
        );
    }
    let setup_started = Instant::now();
    let accounts: Vec<Account> = env
        .api
        .students(args.concurrency, env.setup_concurrency)
        .await?;
    let (first, rest) = chunks();
    let setup = json!({
        "setup_s": setup_started.elapsed().as_secs_f64(),
        "users": accounts.len(),
    });

    let next = Arc::new(AtomicUsize::new(0));
    let latency = Histogram::default();
    let meter = Meter::start(env.pid);
    let results: Vec<(&Account, Vec<Answer>)> = stream::iter(&accounts)
        .map(|account| {
            let (next, latency, api) = (next.clone(), &latency, &env.api);
            async move {
                let mut done = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < args.count {
                    let form = reqwest::multipart::Form::new()
                        .text("folder", "videos")
                        .part(
                            "file",
                            reqwest::multipart::Part::stream_with_length(
                                body(args.size, first, rest),
                                args.size,
                            )
                            .file_name("lecture.mp4")
                            .mime_str("video/mp4")
                            .expect("a valid MIME type"),
                        );
                    let started = Instant::now();
                    let reply = api
                        .http
                        .post(api.url("/files/upload"))
                        .bearer_auth(&account.token)
                        .multipart(form)
                        .send()
                        .await;
                    let outcome = match reply {
                        Ok(reply) => {
                            let status = reply.status().as_u16();
                            let body: serde_json::Value = reply.json().await.unwrap_or_default();
                            if status == 201 && body["data"]["size"] == args.size {
                                latency.record(started.elapsed().as_nanos() as u64);
                            }
                            (status, body["data"]["id"].as_str().map(str::to_owned))
                        }
                        Err(_) => (0, None),
                    };
                    done.push(outcome);
                }
                (account, done)
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let usage = meter.finish(env.client_cores);

    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    for (account, done) in results {
        for (status, id) in done {
            *statuses.entry(status).or_default() += 1;
            ids.extend(id.map(|id| (account, id)));
        }
    }
    let ok = latency.count();
    let mib = (ok * args.size) as f64 / MIB as f64;
    let mut f = Figures::default();
    f.count("uploads", args.count as u64);
    f.count("ok", ok);
    for (status, n) in &statuses {
        if *status != 201 {
            f.count(format!("failed_status_{status}"), *n);
        }
    }
    f.set("mib", mib);
    f.set("mib_per_s", ratio(mib, usage.wall_s));
    f.latency("upload", &latency);
    usage.write(&mut f, &[], &mut env.warnings);
    f.set(
        "server_cpu_ms_per_mib",
        1e3 * ratio(usage.server_cpu_s, mib),
    );
    f.set(
        "client_cpu_ms_per_mib",
        1e3 * ratio(usage.client_cpu_s, mib),
    );
    if ok < args.count as u64 {
        env.warnings.push(format!(
            "{} of {} uploads failed (statuses {statuses:?}; 0 is a transport error)",
            args.count as u64 - ok,
            args.count
        ));
    }

    // Not measured: the files go again, so that a long-lived server keeps its disk.
    for (account, id) in &ids {
        let deleted = env
            .api
            .http
            .delete(env.api.url(&format!("/files/{id}")))
            .bearer_auth(&account.token)
            .send()
            .await
            .context("delete")?;
        if !deleted.status().is_success() {
            env.warnings
                .push(format!("DELETE /files/{id} answered {}", deleted.status()));
        }
    }
    Ok((f, setup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_start_with_the_mp4_header_and_have_the_asked_size() {
        let (first, rest) = chunks();
        assert_eq!(&first[..MP4_HEADER.len()], MP4_HEADER);
        assert_eq!(first.len() as u64, MIB);
        assert_eq!(rest.len() as u64, MIB);
        assert_eq!(first[MP4_HEADER.len()..], rest[MP4_HEADER.len()..]);
    }
}
