//! WebRTC signaling relay benchmark (a reproducible measurement, not a timed test).
//!
//! 50 pairs of peers (100 Socket.IO clients, one student account each) in 10 live sessions
//! (5 pairs each, every peer joined to its session's call) trade ICE candidates through the
//! real server, in-process on 127.0.0.1:0, with persistence (SQLite in a temporary directory)
//! and the default signaling plugin chain on (`builtin:signaling-policy` with its default
//! configuration: no `plugins.toml`). Only the per-socket signal rate limit is relaxed, so
//! that the load is measured rather than refused. Every peer sends to its partner and
//! receives from it, as both ends of a call do while trickling candidates.
//!
//! Each signal is a realistic `RTCIceCandidateInit` (about 220 bytes of JSON) whose
//! `usernameFragment` carries the phase, the sender, a sequence number and the send instant;
//! the server relays the candidate as it is, so the receiver reads the send instant back.
//! The arrival instant is taken by the receiving client's socket reader; both instants come
//! from the one clock of this process.
//!
//! The run has phases of a fixed duration each (senders start no signal after it, then wait
//! for the acks still due), after a short unreported warm-up:
//!
//! 1. **baseline, paced**: every peer sends at the paced rate a `webrtc:leave_session` for a
//!    session it never joined, carrying the same candidate payload. The server parses it,
//!    finds nothing to leave and acknowledges `{ok: true}`: a round trip through the same
//!    sockets, Socket.IO dispatch and acknowledgement path, without a relay.
//! 2. **relay, paced**: the same, as `webrtc:ice_candidate` to the partner: the size and rate
//!    checks, the session membership check, the signaling plugin, the relay, the ack.
//! 3. **baseline, saturating** and 4. **relay, saturating**: as 1 and 2 with no pacing: each
//!    sender keeps a fixed number of signals awaiting their ack (8 by default), sending the
//!    next as soon as one is acknowledged (a closed loop), to find the most per second. With
//!    a single signal in flight the relay phase measures something else: a sender then sits
//!    out every occasional delivery stall of about 40 ms (seen only when sockets both send and
//!    receive relays), and the rate falls to a fraction of what the server can carry.
//!
//! Reported per phase: signals sent, acknowledged, relayed (delivered to the partner), the
//! rate (relayed/s for relays, acks/s for the baseline) over the phase's start to its last
//! delivery or ack, send→receive latency of relays (p50/p90/p99/max), and the ack round trip.
//! The **added latency per relay** is the relay's send→receive latency minus half the
//! baseline's round trip at the same load (an estimate of the baseline's one-way time: a
//! difference of percentiles, not a percentile of differences).
//!
//! Run: `cargo bench -p lyceum-tests --bench signaling`. Knobs (environment):
//! `LYCEUM_BENCH_SIGNAL_PAIRS` (50), `LYCEUM_BENCH_SIGNAL_SESSIONS` (10),
//! `LYCEUM_BENCH_SIGNAL_SECONDS` per phase (5), `LYCEUM_BENCH_SIGNAL_RATE` per sender per
//! second in the paced phases (20), `LYCEUM_BENCH_SIGNAL_WINDOW` signals in flight per
//! sender in the saturating phases (8); the server's warnings go to stderr (`LYCEUM_LOG` sets
//! another filter). Without `--bench` (as under `cargo test --benches`) it makes a small
//! smoke run instead. It exits non-zero when a signal goes unanswered, or an acknowledged
//! one is not delivered, delivered twice or delivered to anyone but the partner (or a
//! refused one is delivered). Refusals (`ok: false`) are counted, listed with their reasons
//! and warned about, as in the chat benchmark, without failing the run: the sender is told,
//! and a refused signal counts in no rate.
//!
//! Clients and server share this process and its cores, so the numbers are a lower bound
//! of what the server alone does on the same machine.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream, stream::FuturesUnordered};
use lyceum_tests::{
    Account, Backend, TestServer,
    socket::{SocketClient, TimedEvent},
    tempdir::TempDir,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// How long an unanswered signal waits before it counts as lost.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long deliveries may trail the last acknowledgement of a phase.
const DRAIN_TIME: Duration = Duration::from_secs(15);
/// How long a join waits for its acknowledgement.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// A pause between phases, so that nothing of one is still in flight in the next.
const SETTLE: Duration = Duration::from_millis(250);
/// Concurrent requests while setting up (registration hashes passwords).
const SETUP_CONCURRENCY: usize = 8;
/// Signals each peer sends before the measured phases (plugin instances, buffers).
const WARM_UP_SIGNALS: usize = 5;
/// A session nobody joined: `webrtc:leave_session` for it relays nothing and acks `ok`.
const UNJOINED_SESSION: &str = "0190a000-0000-7000-8000-000000000000";
/// The start of every benchmark `usernameFragment`.
const TAG: &str = "bench-";
/// What the receivers look for.
const RELAYED: &str = "webrtc:ice_candidate_received";

struct Params {
    pairs: usize,
    sessions: usize,
    duration: Duration,
    rate: f64,
    window: usize,
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
        let (pairs, sessions, seconds, rate, window) = if bench {
            (50, 10, 5, 20, 8)
        } else {
            (4, 2, 1, 20, 2)
        };
        let params = Params {
            pairs: knob("LYCEUM_BENCH_SIGNAL_PAIRS", pairs),
            sessions: knob("LYCEUM_BENCH_SIGNAL_SESSIONS", sessions),
            duration: Duration::from_secs(knob("LYCEUM_BENCH_SIGNAL_SECONDS", seconds) as u64),
            rate: knob("LYCEUM_BENCH_SIGNAL_RATE", rate) as f64,
            window: knob("LYCEUM_BENCH_SIGNAL_WINDOW", window),
            smoke: !bench,
        };
        assert!(
            params.sessions >= 1 && params.pairs >= params.sessions,
            "need at least one session and one pair per session"
        );
        assert!(
            params.rate > 0.0 && params.window >= 1 && !params.duration.is_zero(),
            "the rate, the window and the duration must be at least 1"
        );
        params
    }

    fn peers(&self) -> usize {
        self.pairs * 2
    }

    /// The session of peer `i`: pairs are dealt round the sessions.
    fn session_of(&self, i: usize) -> usize {
        (i / 2) % self.sessions
    }

    /// The phases in order; the first is the unreported warm-up.
    fn phases(&self) -> Vec<Phase> {
        let pacing = Some(Duration::from_secs_f64(1.0 / self.rate));
        let phase = |label, relay, pacing, window| Phase {
            label,
            relay,
            pacing,
            window,
            duration: self.duration,
            limit: None,
        };
        vec![
            Phase {
                label: "warm-up",
                relay: true,
                pacing: None,
                window: 1,
                duration: ACK_WAIT,
                limit: Some(WARM_UP_SIGNALS as u64),
            },
            phase("baseline, paced", false, pacing, 1),
            phase("relay, paced", true, pacing, 1),
            phase("baseline, saturating", false, None, self.window),
            phase("relay, saturating", true, None, self.window),
        ]
    }
}

/// One load pattern, run by every peer at once.
#[derive(Clone, Copy)]
struct Phase {
    label: &'static str,
    /// `webrtc:ice_candidate` to the partner; otherwise the no-relay baseline event.
    relay: bool,
    /// Time between one sender's sends; `None` sends as soon as the window has room.
    pacing: Option<Duration>,
    /// Signals one sender may have awaiting their acknowledgement.
    window: usize,
    /// No signal starts after this long.
    duration: Duration,
    /// Signals per sender, when the phase is bounded by count too.
    limit: Option<u64>,
}

impl Phase {
    fn load(&self) -> String {
        match self.pacing {
            Some(interval) => format!("{:.0}/s each", 1.0 / interval.as_secs_f64()),
            None => format!("{} in flight each", self.window),
        }
    }
}

/// A peer: its socket, its call and its partner.
struct Peer {
    index: usize,
    socket: SocketClient,
    session: String,
    partner: usize,
    partner_sid: String,
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

/// What one sender saw in one phase.
#[derive(Default)]
struct Sent {
    attempted: u64,
    /// Sequence numbers acknowledged with `ok: true`.
    acked: HashSet<u64>,
    /// Refusals by `CODE: message`.
    refused: HashMap<String, u64>,
    lost: u64,
    round_trips: Vec<Duration>,
    last_ack: Option<Instant>,
}

/// What one receiver saw of the benchmark's signals in one phase.
#[derive(Default)]
struct Received {
    /// Sequence numbers from the partner, each once.
    seqs: HashSet<u64>,
    latencies: Vec<Duration>,
    duplicates: u64,
    /// Relays naming another sender or session than the partner's.
    misdirected: u64,
    last: Option<Instant>,
}

/// Runs the benchmark; false when any signal went missing, astray or twice.
async fn run(p: Params) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Lyceum signaling benchmark{}: {} pairs ({} peers) in {} sessions, {} s per phase, \
         paced {} signals/s per sender, saturating {} in flight per sender; {cores} cores",
        if p.smoke { " (smoke run)" } else { "" },
        p.pairs,
        p.peers(),
        p.sessions,
        p.duration.as_secs(),
        p.rate,
        p.window,
    );

    // ---- server -----------------------------------------------------------------------
    let setup_started = Instant::now();
    // No `plugins.toml` in this folder: every slot runs its builtin with its defaults,
    // whatever the working directory holds.
    let plugins_dir = TempDir::new();
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.plugins_config = plugins_dir.path().join("plugins.toml");
        // The host's per-socket token bucket: out of the way.
        c.signal_rate_per_second = 1e6;
        c.signal_rate_burst = 1_000_000;
        // The production pool size rather than the harness's smaller one.
        c.db_max_connections = lyceum::config::Config::default().db_max_connections;
    })
    .await;

    // ---- live sessions, students, enrollments --------------------------------------------
    let sessions: Vec<(Value, String)> = stream::iter(0..p.sessions)
        .map(|_| live_session(&srv))
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let students: Vec<Account> = stream::iter(0..p.peers())
        .map(|_| srv.register("student"))
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    stream::iter(students.iter().enumerate())
        .map(|(i, s)| srv.enroll(s, &sessions[p.session_of(i)].0))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;

    // ---- sockets, each in its session's call ------------------------------------------------
    let mut sockets: Vec<SocketClient> = stream::iter(students.iter().enumerate())
        .map(|(i, s)| {
            let session = sessions[p.session_of(i)].1.clone();
            let addr = srv.addr;
            async move { connect_and_join(addr, &s.token, &session).await }
        })
        .buffered(SETUP_CONCURRENCY * 2)
        .collect()
        .await;
    let sids: Vec<String> = sockets.iter().map(|s| s.sid.clone()).collect();

    // The default signaling plugin is in the path: a student's screen share is refused.
    let probe = sockets[0]
        .try_emit_ack(
            "webrtc:offer",
            json!({
                "sessionId": sessions[0].1,
                "to": sids[1],
                "sdp": { "type": "offer", "sdp": "v=0\r\na=msid:screen-stream video0\r\n" },
            }),
            ACK_WAIT,
        )
        .await
        .unwrap_or_default();
    assert!(
        probe["ok"] == false && probe["error"]["details"]["reason"] == "screen_share_forbidden",
        "the default signaling plugin did not refuse a student's screen share: {probe}"
    );
    println!(
        "setup: {} users, {} live sessions, {} sockets joined in {:.1} s; plugin probe refused a \
         student's screen share",
        p.peers() + p.sessions,
        p.sessions,
        sockets.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // ---- receivers --------------------------------------------------------------------
    let phases = p.phases();
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let events: Vec<_> = sockets.iter_mut().map(|s| s.take_timed_events()).collect();
    let peers: Vec<Arc<Peer>> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            Arc::new(Peer {
                index: i,
                socket,
                session: sessions[p.session_of(i)].1.clone(),
                partner: i ^ 1,
                partner_sid: sids[i ^ 1].clone(),
            })
        })
        .collect();
    let receivers: Vec<_> = events
        .into_iter()
        .zip(&peers)
        .map(|(events, peer)| {
            tokio::spawn(receive(
                events,
                peer.clone(),
                phases.len(),
                base,
                delivered.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    // ---- phases -----------------------------------------------------------------------
    let mut expected = 0u64;
    let mut sent: Vec<Vec<Sent>> = Vec::new();
    let mut starts = Vec::new();
    for (index, phase) in phases.iter().enumerate() {
        let (phase_sent, started) = run_phase(&peers, index, phase, base).await;
        if phase.relay {
            expected += phase_sent.iter().map(|s| s.acked.len() as u64).sum::<u64>();
            drain(&delivered, expected).await;
        }
        tokio::time::sleep(SETTLE).await;
        sent.push(phase_sent);
        starts.push(started);
    }
    let _ = stop_tx.send(true);
    let mut received: Vec<Vec<Received>> = Vec::new();
    for task in receivers {
        received.push(task.await.expect("receiver task"));
    }
    drop(peers);
    srv.stop().await.expect("server stops");

    let problems: Vec<String> = phases
        .iter()
        .enumerate()
        .flat_map(|(index, phase)| verify(index, phase, &sent[index], &received))
        .collect();
    let stats: Vec<Stats> = phases
        .iter()
        .enumerate()
        .map(|(index, phase)| Stats::of(index, phase, &sent[index], &received, starts[index]))
        .collect();
    report(&p, &phases, &stats);
    let refused: u64 = stats.iter().map(|s| s.refused).sum();
    if refused > 0 {
        println!("WARNING: {refused} signals were refused (reasons above); they were not relayed");
    }
    if problems.is_empty() {
        println!(
            "every acknowledged signal was relayed exactly once, to the partner alone; \
             none went unanswered"
        );
        true
    } else {
        println!("FAILED: {} problems", problems.len());
        for problem in problems.iter().take(20) {
            println!("  {problem}");
        }
        false
    }
}

/// A course of a fresh instructor, with a session started: (course, session id).
async fn live_session(srv: &TestServer) -> (Value, String) {
    let (teacher, course) = srv.course().await;
    let client = srv.client().bearer(&teacher.token);
    let course_id = course["id"].as_str().unwrap();
    let reply = client
        .post(
            &format!("/api/v1/courses/{course_id}/sessions"),
            json!({ "title": "Signaling benchmark" }),
        )
        .await;
    assert_eq!(reply.status, 201, "create session: {}", reply.body);
    let session = reply.data()["id"].as_str().unwrap().to_owned();
    let reply = client
        .post(&format!("/api/v1/sessions/{session}/start"), json!({}))
        .await;
    assert_eq!(reply.status, 200, "start session: {}", reply.body);
    (course, session)
}

/// Connects and joins the session's call.
async fn connect_and_join(addr: SocketAddr, token: &str, session: &str) -> SocketClient {
    let socket = SocketClient::with_token(addr, token).await;
    let ack = socket
        .try_emit_ack(
            "webrtc:join_session",
            json!({ "sessionId": session }),
            JOIN_WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("webrtc:join_session got no ack within {JOIN_WAIT:?}"));
    assert_eq!(ack["ok"], true, "join: {ack}");
    socket
}

/// Runs `phase` on every peer at once; returns what each sent and when the phase started.
async fn run_phase(
    peers: &[Arc<Peer>],
    index: usize,
    phase: &Phase,
    base: Instant,
) -> (Vec<Sent>, Instant) {
    let started = tokio::time::Instant::now();
    let senders: Vec<_> = peers
        .iter()
        .map(|peer| {
            // Spread the first paced sends over one interval.
            let offset = phase.pacing.map_or(Duration::ZERO, |i| {
                i.mul_f64(peer.index as f64 / peers.len() as f64)
            });
            tokio::spawn(drive(peer.clone(), index, *phase, started, offset, base))
        })
        .collect();
    let mut sent = Vec::with_capacity(senders.len());
    for task in senders {
        sent.push(task.await.expect("sender task"));
    }
    (sent, started.into_std())
}

/// Waits until `expected` benchmark relays have arrived, or `DRAIN_TIME` has passed.
async fn drain(delivered: &AtomicU64, expected: u64) {
    let deadline = Instant::now() + DRAIN_TIME;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One sender's part of a phase: sends (paced, or whenever the window has room) until the
/// phase's time or count is up, then waits for every ack still due.
async fn drive(
    peer: Arc<Peer>,
    phase_index: usize,
    phase: Phase,
    started: tokio::time::Instant,
    offset: Duration,
    base: Instant,
) -> Sent {
    let mut out = Sent::default();
    let deadline = started + phase.duration;
    let mut ticks = phase.pacing.map(|interval| {
        let mut ticks = tokio::time::interval_at(started + offset, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut in_flight = FuturesUnordered::new();
    let mut seq = 0u64;
    loop {
        if let Some(ticks) = ticks.as_mut() {
            ticks.tick().await;
        }
        if tokio::time::Instant::now() >= deadline || phase.limit.is_some_and(|n| seq >= n) {
            break;
        }
        // Its own task, so that it goes out now whatever this loop awaits next.
        in_flight.push(tokio::spawn(send_one(
            peer.clone(),
            phase_index,
            phase.relay,
            seq,
            base,
        )));
        seq += 1;
        out.attempted += 1;
        while in_flight.len() >= phase.window {
            let outcome = in_flight.next().await.expect("in flight");
            record(&mut out, outcome.expect("send task"));
        }
    }
    while let Some(outcome) = in_flight.next().await {
        record(&mut out, outcome.expect("send task"));
    }
    out
}

/// One signal and its acknowledgement.
struct Outcome {
    seq: u64,
    sent: Instant,
    answered: Instant,
    ack: Option<Value>,
}

/// Sends one signal: an ICE candidate to the partner, or (the baseline) the same payload as
/// a `webrtc:leave_session` for a session never joined.
async fn send_one(peer: Arc<Peer>, phase: usize, relay: bool, seq: u64, base: Instant) -> Outcome {
    let sent = Instant::now();
    let tag = format!(
        "{TAG}{phase}-{}-{seq}-{}",
        peer.index,
        sent.duration_since(base).as_nanos()
    );
    let (event, session) = if relay {
        ("webrtc:ice_candidate", peer.session.as_str())
    } else {
        ("webrtc:leave_session", UNJOINED_SESSION)
    };
    let payload = json!({
        "sessionId": session,
        "to": peer.partner_sid,
        "candidate": candidate(&tag),
    });
    let ack = peer.socket.try_emit_ack(event, payload, ACK_WAIT).await;
    Outcome {
        seq,
        sent,
        answered: Instant::now(),
        ack,
    }
}

/// A server-reflexive candidate as browsers trickle them (about 220 bytes as JSON), its
/// `usernameFragment` carrying the benchmark's tag.
fn candidate(tag: &str) -> Value {
    json!({
        "candidate": "candidate:842163049 1 udp 1677729535 203.0.113.57 61432 typ srflx \
                      raddr 192.168.1.20 rport 61432 generation 0 ufrag 4ZcD network-id 1 \
                      network-cost 10",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": tag,
    })
}

fn record(out: &mut Sent, outcome: Outcome) {
    match outcome.ack {
        Some(ack) if ack["ok"] == true => {
            out.acked.insert(outcome.seq);
            out.round_trips.push(outcome.answered - outcome.sent);
            out.last_ack = out.last_ack.max(Some(outcome.answered));
        }
        Some(ack) => {
            let reason = format!(
                "{}: {}",
                ack["error"]["code"].as_str().unwrap_or("?"),
                ack["error"]["message"].as_str().unwrap_or("")
            );
            *out.refused.entry(reason).or_default() += 1;
        }
        None => out.lost += 1,
    }
}

/// `(phase, sender, seq, nanos since base)` from a benchmark tag.
fn parse_tag(tag: &str) -> Option<(usize, usize, u64, u64)> {
    let mut parts = tag.strip_prefix(TAG)?.split('-');
    let mut next = || parts.next()?.parse::<u64>().ok();
    Some((next()? as usize, next()? as usize, next()?, next()?))
}

/// Collects, per phase, the relays one peer received, until told to stop.
async fn receive(
    mut events: mpsc::UnboundedReceiver<TimedEvent>,
    me: Arc<Peer>,
    phases: usize,
    base: Instant,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Received> {
    let mut out: Vec<Received> = (0..phases).map(|_| Received::default()).collect();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            _ = stop.changed() => break,
        };
        if event.name != RELAYED {
            continue;
        }
        let Some((phase, sender, seq, nanos)) = event.data["candidate"]["usernameFragment"]
            .as_str()
            .and_then(parse_tag)
            .filter(|(phase, ..)| *phase < phases)
        else {
            continue;
        };
        delivered.fetch_add(1, Ordering::Relaxed);
        let r = &mut out[phase];
        if sender != me.partner
            || event.data["from"].as_str() != Some(me.partner_sid.as_str())
            || event.data["sessionId"].as_str() != Some(me.session.as_str())
        {
            r.misdirected += 1;
            continue;
        }
        if !r.seqs.insert(seq) {
            r.duplicates += 1;
            continue;
        }
        let sent_at = base + Duration::from_nanos(nanos);
        r.latencies
            .push(event.received.saturating_duration_since(sent_at));
        r.last = r.last.max(Some(event.received));
    }
    out
}

/// What went wrong in a phase: lost acks, and per directed pair any relay missing,
/// unacknowledged, repeated or astray. A baseline phase must relay nothing.
fn verify(index: usize, phase: &Phase, sent: &[Sent], received: &[Vec<Received>]) -> Vec<String> {
    let mut problems = Vec::new();
    let none_due = HashSet::new();
    for (i, s) in sent.iter().enumerate() {
        let label = phase.label;
        if s.lost > 0 {
            problems.push(format!(
                "{label}: peer {i}: {} signals got no ack within {ACK_WAIT:?}",
                s.lost
            ));
        }
        let r = &received[i ^ 1][index];
        if r.duplicates > 0 || r.misdirected > 0 {
            problems.push(format!(
                "{label}: peer {}: {} duplicate and {} misdirected relays",
                i ^ 1,
                r.duplicates,
                r.misdirected
            ));
        }
        let due = if phase.relay { &s.acked } else { &none_due };
        if &r.seqs != due {
            problems.push(format!(
                "{label}: peer {i} → {}: {} acked, {} relayed; {} acked but not relayed, \
                 {} relayed but not acked",
                i ^ 1,
                due.len(),
                r.seqs.len(),
                due.difference(&r.seqs).count(),
                r.seqs.difference(due).count()
            ));
        }
    }
    problems
}

/// A phase's numbers, all peers together.
struct Stats {
    sent: u64,
    acked: u64,
    refused: u64,
    /// Refusals by `CODE: message`.
    reasons: BTreeMap<String, u64>,
    lost: u64,
    relayed: u64,
    faults: u64,
    /// Phase start to last delivery (relays) or last ack (baseline).
    window: Duration,
    latencies: Vec<Duration>,
    round_trips: Vec<Duration>,
}

impl Stats {
    fn of(
        index: usize,
        phase: &Phase,
        sent: &[Sent],
        received: &[Vec<Received>],
        started: Instant,
    ) -> Stats {
        let phase_received = received.iter().map(|r| &r[index]);
        let mut latencies: Vec<Duration> = phase_received
            .clone()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let mut round_trips: Vec<Duration> = sent
            .iter()
            .flat_map(|s| s.round_trips.iter().copied())
            .collect();
        round_trips.sort_unstable();
        let end = if phase.relay {
            phase_received.clone().filter_map(|r| r.last).max()
        } else {
            sent.iter().filter_map(|s| s.last_ack).max()
        };
        Stats {
            sent: sent.iter().map(|s| s.attempted).sum(),
            acked: sent.iter().map(|s| s.acked.len() as u64).sum(),
            refused: sent.iter().flat_map(|s| s.refused.values()).sum(),
            reasons: sent.iter().flat_map(|s| &s.refused).fold(
                BTreeMap::new(),
                |mut all, (reason, n)| {
                    *all.entry(reason.clone()).or_default() += n;
                    all
                },
            ),
            lost: sent.iter().map(|s| s.lost).sum(),
            relayed: phase_received.clone().map(|r| r.seqs.len() as u64).sum(),
            faults: phase_received.map(|r| r.duplicates + r.misdirected).sum(),
            window: end.map_or(Duration::ZERO, |t| t.saturating_duration_since(started)),
            latencies,
            round_trips,
        }
    }

    /// Relays per second for a relay phase, acks per second for the baseline.
    fn rate(&self, relay: bool) -> f64 {
        let n = if relay { self.relayed } else { self.acked };
        if self.window.is_zero() {
            0.0
        } else {
            n as f64 / self.window.as_secs_f64()
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

/// `p50 / p90 / p99 / max` in milliseconds, or a dash when there is nothing.
fn spread_ms(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "—".to_owned();
    }
    format!(
        "{:.3} / {:.3} / {:.3} / {:.3}",
        percentile_ms(sorted, 50.0),
        percentile_ms(sorted, 90.0),
        percentile_ms(sorted, 99.0),
        percentile_ms(sorted, 100.0)
    )
}

/// Prints a table with one column per measured phase, then the derived figures.
fn report(p: &Params, phases: &[Phase], stats: &[Stats]) {
    // The warm-up is verified but not reported.
    let shown: Vec<(&Phase, &Stats)> = phases.iter().zip(stats).skip(1).collect();
    let row = |name: &str, cell: &dyn Fn(&Phase, &Stats) -> String| -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(shown.iter().map(|(phase, s)| cell(phase, s)))
            .collect()
    };
    let rows: Vec<Vec<String>> = vec![
        row("metric", &|phase, _| phase.label.to_owned()),
        row("event", &|phase, _| {
            if phase.relay {
                "ice_candidate".to_owned()
            } else {
                "leave_session".to_owned()
            }
        }),
        row("load", &|phase, _| phase.load()),
        row("pairs / sessions / senders", &|_, _| {
            format!("{} / {} / {}", p.pairs, p.sessions, p.peers())
        }),
        row("signals sent", &|_, s| s.sent.to_string()),
        row("acked ok / refused / lost", &|_, s| {
            format!("{} / {} / {}", s.acked, s.refused, s.lost)
        }),
        row("relayed once to the partner", &|phase, s| {
            if phase.relay {
                s.relayed.to_string()
            } else {
                format!("{} (none due)", s.relayed)
            }
        }),
        row("duplicate or misdirected", &|_, s| s.faults.to_string()),
        row("window (start → last arrival)", &|_, s| {
            format!("{:.2} s", s.window.as_secs_f64())
        }),
        row("relayed/s (baseline: acks/s)", &|phase, s| {
            format!("{:.0}", s.rate(phase.relay))
        }),
        row("send→receive p50/p90/p99/max ms", &|_, s| {
            spread_ms(&s.latencies)
        }),
        row("ack round trip p50/p90/p99/max ms", &|_, s| {
            spread_ms(&s.round_trips)
        }),
    ];
    print_table(&rows);
    for (phase, s) in &shown {
        for (reason, n) in &s.reasons {
            println!("{}: refused {n}× with {reason}", phase.label);
        }
    }

    // The added latency: a relay's one-way time against half the baseline round trip at the
    // same load; phases come in (baseline, relay) pairs after the warm-up.
    for pair in shown.chunks(2) {
        let [(baseline, b), (relay, r)] = pair else {
            continue;
        };
        let added =
            |pct: f64| percentile_ms(&r.latencies, pct) - percentile_ms(&b.round_trips, pct) / 2.0;
        println!(
            "{}: baseline RTT p50 {:.3} ms / p99 {:.3} ms (one way ≈ {:.3} / {:.3}); relay \
             send→receive p50 {:.3} / p99 {:.3} ms; added per relay ≈ p50 {:.3} ms, p99 {:.3} ms",
            relay.load(),
            percentile_ms(&b.round_trips, 50.0),
            percentile_ms(&b.round_trips, 99.0),
            percentile_ms(&b.round_trips, 50.0) / 2.0,
            percentile_ms(&b.round_trips, 99.0) / 2.0,
            percentile_ms(&r.latencies, 50.0),
            percentile_ms(&r.latencies, 99.0),
            added(50.0),
            added(99.0),
        );
        if baseline.pacing.is_none() {
            println!(
                "saturating: {:.0} signals relayed/s against {:.0} no-relay acks/s through the \
                 same sockets",
                r.rate(true),
                b.rate(false)
            );
        }
    }
    println!();
}

/// A Markdown table; the first row is the header.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let line = |r: &[String]| {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                let pad = w - cell.chars().count();
                if c == 0 {
                    format!(" {cell}{} ", " ".repeat(pad))
                } else {
                    format!(" {}{cell} ", " ".repeat(pad))
                }
            })
            .collect();
        format!("|{}|", cells.join("|"))
    };
    println!();
    println!("{}", line(&rows[0]));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    println!("|{}|", rule.join("|"));
    for r in &rows[1..] {
        println!("{}", line(r));
    }
    println!();
}
