//! Chat throughput benchmark (a reproducible measurement, not a timed test).
//!
//! 200 Socket.IO clients in 10 course rooms (20 members each) send messages through the
//! real server, in-process on 127.0.0.1:0, with persistence (SQLite in a temporary
//! directory) and the default moderation plugin (`builtin:chat-moderation` with its
//! default word lists) on. Only the per-user rate limits are relaxed — the host's token
//! bucket and the plugin's `rate_limit` — so that the load is measured rather than refused.
//!
//! Each client sends a fixed number of messages, waiting for the acknowledgement and then
//! for its pacing tick before the next (a closed loop: a slow server slows the senders
//! rather than piling up work). The run is bounded in count and in time and stops by itself.
//!
//! Reported: messages/s accepted (acks with `ok: true`), deliveries/s (`chat:new_message`
//! received across all clients, sender included), send→deliver latency p50/p99 (the send
//! instant travels in the `clientId`, the arrival instant is taken by the client's socket
//! reader), plus send→ack latency and correctness counters (duplicates, cross-room
//! deliveries, messages found in history).
//!
//! Run: `cargo bench -p lyceum-tests --bench chat`. Knobs (environment): `LYCEUM_BENCH_CLIENTS`
//! (200), `LYCEUM_BENCH_ROOMS` (10), `LYCEUM_BENCH_MESSAGES` per client (50),
//! `LYCEUM_BENCH_PACING_MS` (100; 0 sends again as soon as the ack is in); the server's
//! warnings go to stderr (`LYCEUM_LOG` sets another filter). Without `--bench` (as under
//! `cargo test --benches`) it makes a small smoke run instead. It exits non-zero when the
//! deliveries or the history do not add up.
//!
//! Clients and server share this process and its cores, so the numbers are a lower bound
//! of what the server alone does on the same machine.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use lyceum_tests::{
    Account, Backend, TestServer,
    socket::{SocketClient, TimedEvent},
    tempdir::TempDir,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// No sender starts a message after this long; the run always ends.
const MAX_SEND_TIME: Duration = Duration::from_secs(120);
/// How long an unanswered send waits before it counts as lost.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long deliveries may trail the last acknowledgement.
const DRAIN_TIME: Duration = Duration::from_secs(15);
/// How long a join waits for its acknowledgement.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// Concurrent requests while setting up (registration hashes passwords).
const SETUP_CONCURRENCY: usize = 8;

/// The moderation chain of the benchmark: the default plugin with its default word lists
/// and link policy, its per-user message rate limit off (`messages = 0`).
const PLUGINS_TOML: &str = r#"
[[chat.plugins]]
source = "builtin:chat-moderation"

[chat.plugins.config]
rate_limit = { messages = 0, window_seconds = 10, exempt_roles = [] }
"#;

struct Params {
    clients: usize,
    rooms: usize,
    messages: usize,
    pacing: Duration,
    smoke: bool,
}

impl Params {
    fn from_env(bench: bool) -> Params {
        let knob = |name: &str, default: usize| -> usize {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
                Err(_) => default,
            }
        };
        let (clients, rooms, messages, pacing) = if bench {
            (200, 10, 50, 100)
        } else {
            (20, 2, 3, 20)
        };
        let params = Params {
            clients: knob("LYCEUM_BENCH_CLIENTS", clients),
            rooms: knob("LYCEUM_BENCH_ROOMS", rooms),
            messages: knob("LYCEUM_BENCH_MESSAGES", messages),
            pacing: Duration::from_millis(knob("LYCEUM_BENCH_PACING_MS", pacing) as u64),
            smoke: !bench,
        };
        assert!(
            params.rooms >= 1 && params.clients >= params.rooms,
            "need at least one room and one client per room"
        );
        params
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let params = Params::from_env(bench);
    // The server's own warnings (a database or plugin failure behind a refusal) go to
    // stderr; `LYCEUM_LOG` chooses another filter.
    if std::env::var_os("LYCEUM_LOG").is_none() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("LYCEUM_LOG", "warn") };
    }
    lyceum::telemetry::init_tracing(lyceum::config::LogFormat::Text);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if !runtime.block_on(run(params)) {
        std::process::exit(1);
    }
}

/// What one sender saw.
#[derive(Default)]
struct Sent {
    attempted: u64,
    accepted: u64,
    /// Refusals by `CODE: message`, with how long each took to come back.
    refused: HashMap<String, Vec<Duration>>,
    lost: u64,
    ack_latencies: Vec<Duration>,
    last_ack: Option<Instant>,
}

/// What one receiver saw of the benchmark's messages.
#[derive(Default)]
struct Received {
    deliveries: u64,
    duplicates: u64,
    cross_room: u64,
    latencies: Vec<Duration>,
    last: Option<Instant>,
}

/// Runs the benchmark; false when the deliveries or history do not add up.
async fn run(p: Params) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Lyceum chat benchmark{}: {} clients in {} rooms, {} messages each, {} ms pacing; {cores} cores",
        if p.smoke { " (smoke run)" } else { "" },
        p.clients,
        p.rooms,
        p.messages,
        p.pacing.as_millis()
    );

    // ---- server -----------------------------------------------------------------------
    let setup_started = Instant::now();
    let plugins_dir = TempDir::new();
    let plugins_toml = plugins_dir.path().join("plugins.toml");
    std::fs::write(&plugins_toml, PLUGINS_TOML).expect("write plugins.toml");
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.plugins_config = plugins_toml.clone();
        // The host's per-user token bucket: far above what one paced client sends.
        c.chat_rate_per_second = 1000.0;
        c.chat_rate_burst = 1000;
        // The production pool size rather than the harness's smaller one.
        c.db_max_connections = lyceum::config::Config::default().db_max_connections;
    })
    .await;
    let addr = srv.addr;

    // ---- users, courses, enrollments ---------------------------------------------------
    let courses: Vec<Value> = stream::iter(0..p.rooms)
        .map(|_| async { srv.course().await.1 })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let students: Vec<Account> = stream::iter(0..p.clients)
        .map(|_| srv.register("student"))
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    stream::iter(students.iter().enumerate())
        .map(|(i, s)| srv.enroll(s, &courses[i % p.rooms]))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let room_of = |i: usize| courses[i % p.rooms]["roomId"].as_str().unwrap().to_owned();

    // ---- sockets, each in its course room -------------------------------------------------
    let mut sockets: Vec<SocketClient> = stream::iter(students.iter().enumerate())
        .map(|(i, s)| {
            let room = room_of(i);
            async move { connect_and_join(addr, &s.token, &room).await }
        })
        .buffered(SETUP_CONCURRENCY * 2)
        .collect()
        .await;

    // The default moderation plugin is in the path: a listed word comes back masked.
    let probe = sockets[0]
        .emit_ack(
            "chat:send_message",
            json!({"roomId": room_of(0), "content": "well this is shit", "clientId": "probe"}),
        )
        .await;
    let masked = probe["message"]["content"].as_str().unwrap_or_default();
    assert!(
        probe["ok"] == true && masked != "well this is shit" && masked.contains('*'),
        "the default moderation plugin did not mask a listed word: {probe}"
    );
    let setup_time = setup_started.elapsed();
    println!(
        "setup: {} users, {} courses, {} sockets joined in {:.1} s; moderation probe stored {masked:?}",
        p.clients + p.rooms,
        p.rooms,
        sockets.len(),
        setup_time.as_secs_f64()
    );

    // ---- receivers --------------------------------------------------------------------
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let receivers: Vec<_> = sockets
        .iter_mut()
        .enumerate()
        .map(|(i, socket)| {
            tokio::spawn(receive(
                socket.take_timed_events(),
                room_of(i),
                base,
                delivered.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    // ---- senders ----------------------------------------------------------------------
    let started = Instant::now();
    let sockets: Vec<Arc<SocketClient>> = sockets.into_iter().map(Arc::new).collect();
    let senders: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(i, socket)| {
            // Spread the first sends over one pacing interval.
            let offset = p.pacing.mul_f64(i as f64 / p.clients as f64);
            tokio::spawn(send(
                socket.clone(),
                i,
                room_of(i),
                p.messages,
                p.pacing,
                offset,
                base,
                started,
            ))
        })
        .collect();
    let room_size = |room: usize| (0..p.clients).filter(|j| j % p.rooms == room).count() as u64;
    let mut sent = Sent::default();
    // Every accepted message is due once to every member of its room, sender included.
    let mut expected = 0u64;
    for (i, task) in senders.into_iter().enumerate() {
        let s = task.await.expect("sender task");
        expected += s.accepted * room_size(i % p.rooms);
        sent.attempted += s.attempted;
        sent.accepted += s.accepted;
        sent.lost += s.lost;
        for (reason, took) in s.refused {
            sent.refused.entry(reason).or_default().extend(took);
        }
        sent.ack_latencies.extend(s.ack_latencies);
        sent.last_ack = sent.last_ack.max(s.last_ack);
    }
    let drain_deadline = Instant::now() + DRAIN_TIME;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let mut received = Received::default();
    for task in receivers {
        let r = task.await.expect("receiver task");
        received.deliveries += r.deliveries;
        received.duplicates += r.duplicates;
        received.cross_room += r.cross_room;
        received.latencies.extend(r.latencies);
        received.last = received.last.max(r.last);
    }

    // ---- persistence: every accepted message is in its room's history ------------------
    let mut persisted = 0u64;
    for (r, course) in courses.iter().enumerate() {
        persisted +=
            count_in_history(&srv, &students[r].token, course["roomId"].as_str().unwrap()).await;
    }
    drop(sockets);
    srv.stop().await.expect("server stops");

    report(&p, &sent, &received, expected, persisted, started)
}

/// Connects and joins `room`, sending the join right after the handshake as frontends do.
async fn connect_and_join(addr: SocketAddr, token: &str, room: &str) -> SocketClient {
    let socket = SocketClient::with_token(addr, token).await;
    let ack = socket
        .try_emit_ack("chat:join_room", json!({ "roomId": room }), JOIN_WAIT)
        .await
        .unwrap_or_else(|| {
            panic!("chat:join_room sent right after connecting got no ack within {JOIN_WAIT:?}")
        });
    assert_eq!(ack["ok"], true, "join: {ack}");
    socket
}

#[allow(clippy::too_many_arguments)]
async fn send(
    socket: Arc<SocketClient>,
    client: usize,
    room: String,
    messages: usize,
    pacing: Duration,
    offset: Duration,
    base: Instant,
    started: Instant,
) -> Sent {
    let mut out = Sent::default();
    // A zero pacing sends again as soon as the ack is in.
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + offset,
        pacing.max(Duration::from_micros(1)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..messages {
        ticks.tick().await;
        if started.elapsed() > MAX_SEND_TIME {
            break;
        }
        let at = Instant::now();
        let nanos = at.duration_since(base).as_nanos();
        let payload = json!({
            "roomId": room,
            "clientId": format!("bench-{client}-{seq}-{nanos}"),
            "content": format!("Message {seq} from client {client}: the quick brown fox jumps over the lazy dog."),
        });
        out.attempted += 1;
        match socket
            .try_emit_ack("chat:send_message", payload, ACK_WAIT)
            .await
        {
            Some(ack) if ack["ok"] == true => {
                let now = Instant::now();
                out.accepted += 1;
                out.ack_latencies.push(now - at);
                out.last_ack = Some(now);
            }
            Some(ack) => {
                let reason = format!(
                    "{}: {}",
                    ack["error"]["code"].as_str().unwrap_or("?"),
                    ack["error"]["message"].as_str().unwrap_or("")
                );
                out.refused.entry(reason).or_default().push(at.elapsed());
            }
            None => out.lost += 1,
        }
    }
    out
}

async fn receive(
    mut events: mpsc::UnboundedReceiver<TimedEvent>,
    room: String,
    base: Instant,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut out = Received::default();
    let mut seen = HashSet::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            _ = stop.changed() => break,
        };
        if event.name != "chat:new_message" {
            continue;
        }
        let Some(nanos) = event.data["clientId"]
            .as_str()
            .and_then(|id| id.strip_prefix("bench-"))
            .and_then(|id| id.rsplit('-').next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if event.data["roomId"].as_str() != Some(room.as_str()) {
            out.cross_room += 1;
        }
        let id = event.data["id"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id) {
            out.duplicates += 1;
            continue;
        }
        out.deliveries += 1;
        delivered.fetch_add(1, Ordering::Relaxed);
        let sent_at = base + Duration::from_nanos(nanos);
        out.latencies
            .push(event.received.saturating_duration_since(sent_at));
        out.last = Some(event.received);
    }
    out
}

/// Benchmark messages (`clientId` starting `bench-`) in a room's history, paging to the end.
async fn count_in_history(srv: &TestServer, token: &str, room: &str) -> u64 {
    let client = srv.client().bearer(token);
    let mut count = 0;
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(id) => format!("/api/v1/chat/rooms/{room}/messages?limit=100&before={id}"),
            None => format!("/api/v1/chat/rooms/{room}/messages?limit=100"),
        };
        let data = client.get(&path).await.data();
        let items = data["items"].as_array().cloned().unwrap_or_default();
        count += items
            .iter()
            .filter(|m| {
                m["clientId"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("bench-"))
            })
            .count() as u64;
        match (data["nextCursor"].as_str(), items.last()) {
            (Some(_), Some(last)) => before = last["id"].as_str().map(str::to_owned),
            _ => return count,
        }
    }
}

/// The nearest-rank percentile of sorted durations, in milliseconds.
fn percentile_ms(sorted: &[Duration], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn report(
    p: &Params,
    sent: &Sent,
    received: &Received,
    expected: u64,
    persisted: u64,
    started: Instant,
) -> bool {
    let mut delivery = received.latencies.clone();
    delivery.sort_unstable();
    let mut acks = sent.ack_latencies.clone();
    acks.sort_unstable();
    let send_window = sent.last_ack.map_or(Duration::ZERO, |t| t - started);
    let delivery_window = received.last.map_or(Duration::ZERO, |t| t - started);
    let per_second = |n: u64, window: Duration| {
        if window.is_zero() {
            0.0
        } else {
            n as f64 / window.as_secs_f64()
        }
    };
    let refused = sent
        .refused
        .values()
        .map(Vec::len)
        .sum::<usize>()
        .to_string();
    let rows: Vec<(&str, String)> = vec![
        (
            "clients / rooms / per room",
            format!("{} / {} / {}", p.clients, p.rooms, p.clients / p.rooms),
        ),
        (
            "messages per client, pacing",
            format!("{}, {} ms", p.messages, p.pacing.as_millis()),
        ),
        ("messages sent", sent.attempted.to_string()),
        ("accepted (ack ok: true)", sent.accepted.to_string()),
        ("refused (ack ok: false)", refused),
        ("lost (no ack within 10 s)", sent.lost.to_string()),
        (
            "send window (first send → last ack)",
            format!("{:.2} s", send_window.as_secs_f64()),
        ),
        (
            "messages/s accepted",
            format!("{:.0}", per_second(sent.accepted, send_window)),
        ),
        (
            "deliveries (chat:new_message)",
            format!("{} of {expected} due", received.deliveries),
        ),
        (
            "delivery window (first send → last delivery)",
            format!("{:.2} s", delivery_window.as_secs_f64()),
        ),
        (
            "deliveries/s",
            format!("{:.0}", per_second(received.deliveries, delivery_window)),
        ),
        (
            "send→deliver latency p50",
            format!("{:.1} ms", percentile_ms(&delivery, 50.0)),
        ),
        (
            "send→deliver latency p99",
            format!("{:.1} ms", percentile_ms(&delivery, 99.0)),
        ),
        (
            "send→deliver latency max",
            format!(
                "{:.1} ms",
                delivery
                    .last()
                    .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
            ),
        ),
        (
            "send→ack latency p50 / p99",
            format!(
                "{:.1} / {:.1} ms",
                percentile_ms(&acks, 50.0),
                percentile_ms(&acks, 99.0)
            ),
        ),
        (
            "duplicate / cross-room deliveries",
            format!("{} / {}", received.duplicates, received.cross_room),
        ),
        (
            "accepted messages found in history",
            format!("{persisted} of {}", sent.accepted),
        ),
    ];
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v)| v.chars().count())
        .max()
        .unwrap_or(0);
    println!();
    println!("| {:<width$} | {:>value_width$} |", "metric", "value");
    println!(
        "|{}|{}|",
        "-".repeat(width + 2),
        "-".repeat(value_width + 2)
    );
    for (k, v) in &rows {
        println!("| {k:<width$} | {v:>value_width$} |");
    }
    let mut reasons: Vec<_> = sent.refused.iter().collect();
    reasons.sort();
    for (reason, took) in reasons {
        let mut took = took.clone();
        took.sort_unstable();
        println!(
            "refused {}× with {reason} (answered after {:.0} ms median, {:.0} ms max)",
            took.len(),
            percentile_ms(&took, 50.0),
            percentile_ms(&took, 100.0)
        );
    }
    println!();
    let complete = received.deliveries == expected
        && received.duplicates == 0
        && received.cross_room == 0
        && persisted == sent.accepted;
    if complete {
        println!(
            "every accepted message was delivered once to every member of its room and is in history"
        );
    } else {
        println!("FAILED: deliveries, duplicates, leaks or history do not add up (see the table)");
    }
    complete
}
