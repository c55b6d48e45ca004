//! Per-call cost of each default plugin through the runtime, against the same rules
//! compiled natively (the plugins' `policy.rs` files are included below as they are), and
//! the cost of a fresh instance per call, which is what the instance pool avoids.
//!
//! Run with `RUST_BACKTRACE` unset: when set, every trap captures a host backtrace.
//!
//! Times are the benchmarking thread's CPU time, not wall-clock time: on a small machine
//! shared with builds, preemption would otherwise inflate every figure.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, criterion_group, criterion_main};
use lyceum_plugin_runtime::{
    Builtin, FileFinish, FilePrecheck, JoinCheck, KvStore, MemoryKv, ModerationInput, PluginSource,
    PluginSpec, PluginsConfig, PolicyContext, PolicyEngine, Role, SessionState, SignalCheck,
    SignalKind,
};
use serde_json::json;

#[allow(dead_code)]
#[path = "../../../plugins/chat-moderation/src/policy.rs"]
mod chat_native;
#[allow(dead_code)]
#[path = "../../../plugins/file-validation/src/policy.rs"]
mod files_native;
#[allow(dead_code)]
#[path = "../../../plugins/signaling-policy/src/policy.rs"]
mod signaling_native;

/// 200 bytes of ordinary chat, with a link and a word to mask, so every rule does work.
const MESSAGE: &str = "Hi all! For tomorrow's lab, read chapter 4 and bring your notes. The slides are at \
                       https://example.edu/slides. Damn, this shit is hard, but we will get through it together. \
                       See you at nine in room B1!";

/// A rate limit that is counted on every call (the store is hit) but never reached.
fn chat_config() -> serde_json::Value {
    json!({ "rate_limit": { "messages": 1_000_000_000_000u64, "window_seconds": 10 } })
}

fn build_engine(pool_size: u32) -> PolicyEngine {
    let mut config = PluginsConfig::default();
    config.engine.pool_size = pool_size;
    config.engine.max_instances = 64;
    config.chat.plugins = Some(vec![
        PluginSpec::new(PluginSource::Builtin(Builtin::ChatModeration)).with_config(chat_config()),
    ]);
    PolicyEngine::builder(config).build().expect("engine")
}

fn pdf_head() -> Vec<u8> {
    let mut head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    head.resize(FilePrecheck::HEAD_LEN, b'x');
    head
}

fn sdp_offer() -> String {
    let mut sdp = String::from("v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for m in 0..3 {
        sdp.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:{m}\r\na=msid:cam-stream track-{m}\r\n"
        ));
        for i in 0..20 {
            sdp.push_str(&format!(
                "a=rtpmap:{} VP8/90000\r\na=rtcp-fb:{} nack pli\r\n",
                96 + i,
                96 + i
            ));
        }
    }
    json!({ "type": "offer", "sdp": sdp }).to_string()
}

/// CPU time of the calling thread, in nanoseconds.
struct ThreadCpuTime;

static WALL_TIME: WallTime = WallTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "no thread CPU clock");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns() - started
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // The same nanosecond values as wall time, so the same formatting.
        WALL_TIME.formatter()
    }
}

/// Failed calls, by error, reported at the end instead of aborting a long run.
static FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn failed(error: lyceum_plugin_runtime::PolicyFailure) {
    FAILURES.lock().unwrap().push(error.to_string());
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    assert!(
        std::env::var_os("RUST_BACKTRACE").is_none_or(|v| v == "0"),
        "unset RUST_BACKTRACE for benchmarks"
    );
    assert_eq!(MESSAGE.len(), 200);
    let mut ctx = PolicyContext::new("bench", "student-1", Role::Student);
    ctx.at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let engine = build_engine(8);
    let message = ModerationInput::send("room-1", MESSAGE);
    let precheck = FilePrecheck {
        name: "notes.pdf".into(),
        folder: Some("documents".into()),
        declared_type: Some("application/pdf".into()),
        declared_size: Some(1 << 20),
        sniffed_type: None,
        head: pdf_head(),
    };
    let finish = FileFinish {
        name: "notes.pdf".into(),
        folder: Some("documents".into()),
        declared_type: Some("application/pdf".into()),
        size: 1 << 20,
        sha256: "0".repeat(64),
        sniffed_type: Some("application/pdf".into()),
    };
    let join = JoinCheck {
        session_id: "s".into(),
        state: SessionState::Live,
        participant_count: 10,
        max_participants: Some(50),
    };
    let signal = SignalCheck {
        session_id: "s".into(),
        kind: SignalKind::Offer,
        from: "a".into(),
        to: "b".into(),
        payload: sdp_offer(),
    };

    let mut group = c.benchmark_group("wasm");
    group.bench_function("chat.moderate 200 B", |b| {
        b.iter(|| black_box(engine.moderate_blocking(&ctx, &message).map_err(failed)))
    });
    group.bench_function("files.precheck 64 KiB", |b| {
        b.iter(|| {
            black_box(
                engine
                    .precheck_file_blocking(&ctx, &precheck)
                    .map_err(failed),
            )
        })
    });
    group.bench_function("files.finish", |b| {
        b.iter(|| black_box(engine.finish_file_blocking(&ctx, &finish).map_err(failed)))
    });
    group.bench_function("signaling.check_join", |b| {
        b.iter(|| black_box(engine.check_join_blocking(&ctx, &join).map_err(failed)))
    });
    group.bench_function(
        format!("signaling.check_signal {} B SDP", signal.payload.len()),
        |b| b.iter(|| black_box(engine.check_signal_blocking(&ctx, &signal).map_err(failed))),
    );
    group.finish();

    let mut group = c.benchmark_group("native");
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let moderator = chat_native::Moderator::new(&serde_json::from_value(chat_config()).unwrap());
    group.bench_function("chat.moderate 200 B", |b| {
        b.iter(|| {
            let input = chat_native::Input {
                content: black_box(MESSAGE),
                actor_id: "student-1",
                role: chat_native::Role::Student,
                at_unix_ms: 1_700_000_000_000,
            };
            let mut count = |key: &str, ttl: u64| {
                kv.incr("chat-moderation", key, 1, Some(Duration::from_millis(ttl)))
                    .ok()
            };
            black_box(moderator.moderate(&input, &mut count))
        })
    });
    let validator = files_native::Validator::new(&files_native::Config::default());
    group.bench_function("files.precheck 64 KiB", |b| {
        b.iter(|| {
            black_box(validator.precheck(&files_native::Head {
                name: &precheck.name,
                folder: precheck.folder.as_deref(),
                declared_type: precheck.declared_type.as_deref(),
                declared_size: precheck.declared_size,
                host_sniffed: None,
                head: black_box(&precheck.head),
            }))
        })
    });
    group.bench_function("files.finish", |b| {
        b.iter(|| {
            let was_svg = kv
                .get("file-validation", "svg:bench")
                .ok()
                .flatten()
                .is_some();
            black_box(validator.finish(&files_native::Done {
                name: &finish.name,
                folder: finish.folder.as_deref(),
                size: finish.size,
                sha256: &finish.sha256,
                host_sniffed: finish.sniffed_type.as_deref(),
                was_svg,
            }))
        })
    });
    let rules = signaling_native::Policy::new(signaling_native::Config::default());
    group.bench_function("signaling.check_join", |b| {
        b.iter(|| {
            black_box(rules.check_join(signaling_native::State::Live, black_box(10), Some(50)))
        })
    });
    group.bench_function(
        format!("signaling.check_signal {} B SDP", signal.payload.len()),
        |b| {
            b.iter(|| {
                black_box(rules.check_signal(
                    signaling_native::Role::Student,
                    signaling_native::Kind::Offer,
                    black_box(&signal.payload),
                ))
            })
        },
    );
    group.finish();

    // No pooled instances: every call instantiates a fresh store and drops it afterwards.
    let fresh = build_engine(0);
    let mut group = c.benchmark_group("fresh-instance");
    group.bench_function("chat.moderate 200 B", |b| {
        b.iter(|| black_box(fresh.moderate_blocking(&ctx, &message).map_err(failed)))
    });
    group.finish();

    let failures = FAILURES.lock().unwrap();
    if !failures.is_empty() {
        eprintln!("{} calls failed; first: {}", failures.len(), failures[0]);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
