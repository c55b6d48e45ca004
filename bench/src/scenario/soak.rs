//! `soak`: a bounded steady-state run of everything a class does at once, judged against
//! alarm thresholds. Chat sockets in course rooms send at a paced aggregate rate (each
//! message delivered to every socket of its room, its sender's included), pairs of WebRTC
//! peers in live sessions relay offers, answers and ICE candidates to each other at a paced
//! rate, and small multipart uploads (each checked, then deleted) start at a steady rate,
//! all for `--duration` seconds after a warm-up. The server's RSS, CPU time, descriptors and
//! threads are sampled every second; the report adds memory's linear trend over the window,
//! a timeline per `--slice`, and PASS/FAIL lines for the alarms ([`crate::alarm`]).
//!
//! Chat and signaling reuse the message engine ([`crate::traffic`]): every message carries
//! its sender's stream and sequence number, every receiver keeps a bit per message it got,
//! so losses and duplicates are counted exactly, per receiver.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt, stream};
use serde_json::json;
use tokio::{sync::watch, task::JoinSet, time::Instant as TokioInstant};

use super::{Env, Meter, Open, World, chat::content, open_all, room_payload};
use crate::{
    alarm::{self, Observed, Thresholds},
    api::{Account, Api},
    report::{Figures, ratio},
    server,
    stats::Histogram,
    traffic::{self, Load, Plan, Role, SenderRole, Shared, Template, Totals, Traffic},
};

const KIB: f64 = 1024.0;

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct SoakArgs {
    /// Chat sockets, dealt round-robin over the rooms (socket i in room i mod rooms).
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Course rooms.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Accounts behind the chat sockets (socket i is user i mod users); one per socket by
    /// default.
    #[arg(long)]
    pub users: Option<usize>,
    /// Chat messages per second over all senders (open loop, each sender on a fixed
    /// schedule): 200/s from 1,000 sockets is one message per student every 5 s.
    #[arg(long, default_value_t = 200.0)]
    pub chat_rate: f64,
    /// Chat sockets that send (the first ones, spread over the rooms); all by default.
    #[arg(long)]
    pub senders: Option<usize>,
    /// Characters per chat message.
    #[arg(long, default_value_t = 80)]
    pub size: usize,
    /// Pairs of WebRTC peers (two more sockets each). Every third pair trades offers and
    /// answers (SDP of `--sdp-size` bytes), the others ICE candidates; 0 turns signaling off.
    #[arg(long, default_value_t = 12)]
    pub pairs: usize,
    /// Live sessions the pairs are dealt over; one per six pairs by default.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Signals per second over all peers (open loop).
    #[arg(long, default_value_t = 40.0)]
    pub signal_rate: f64,
    /// Bytes of SDP in offers and answers.
    #[arg(long, default_value_t = 2500)]
    pub sdp_size: usize,
    /// Uploads started per second (open loop: they overlap when slow); 0 turns uploads off.
    #[arg(long, default_value_t = 2.0)]
    pub upload_rate: f64,
    /// Bytes per uploaded file (a PDF into `documents`; K, M suffixes).
    #[arg(long, default_value = "256K", value_parser = crate::parse_size)]
    pub upload_size: u64,
    /// Accounts the uploads are dealt over.
    #[arg(long, default_value_t = 4)]
    pub upload_users: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 180.0)]
    pub duration: f64,
    /// Unmeasured load before the window, in seconds; the RSS start is read after it. A
    /// minute: the server's memory grows for about that long under this load before it
    /// levels off (SQLite's page cache of each pooled connection filling, about 25 MiB in
    /// all), and that is not what the memory alarm is about.
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// How long a socket event may wait for its acknowledgement after the window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub ack_timeout: f64,
    /// How long deliveries may trail the last acknowledgement, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Timeout of one HTTP request (an upload, a delete), in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub request_timeout: f64,
    /// Length of a timeline slice (RSS, CPU, p99 per slice), in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub slice: f64,
    /// Alarm: server errors (5xx, transport failures, INTERNAL/UNAVAILABLE acks) plus
    /// timeouts (HTTP, unanswered events) under this percentage of requests.
    #[arg(long, default_value_t = 0.025)]
    pub max_error_pct: f64,
    /// Alarm: other failures (4xx, other error acks, wrong upload answers) under this
    /// percentage of requests.
    #[arg(long, default_value_t = 0.025)]
    pub max_refused_pct: f64,
    /// Alarm: chat send → delivery p99 under this many milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub max_chat_p99_ms: f64,
    /// Alarm: server RSS at the window's end at most this percentage above its start (read
    /// after set-up and warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub max_rss_growth_pct: f64,
}

/// What one signaling peer sends and hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignalRole {
    Offer,
    Answer,
    Candidate,
}

impl SignalRole {
    /// Peer `i`: in every third pair the even peer offers and the odd one answers; the
    /// other pairs trickle candidates both ways.
    fn of(peer: usize) -> SignalRole {
        match (peer / 2 % 3, peer % 2) {
            (0, 0) => SignalRole::Offer,
            (0, _) => SignalRole::Answer,
            _ => SignalRole::Candidate,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SignalRole::Offer => "offer",
            SignalRole::Answer => "answer",
            SignalRole::Candidate => "candidate",
        }
    }

    /// The event sent, the relay heard back from the partner, and what precedes the tag.
    fn traffic(self) -> Traffic {
        match self {
            SignalRole::Offer => Traffic {
                event: "webrtc:offer",
                delivery: "webrtc:answer_received",
                marker: "a=ice-ufrag:",
            },
            SignalRole::Answer => Traffic {
                event: "webrtc:answer",
                delivery: "webrtc:offer_received",
                marker: "a=ice-ufrag:",
            },
            SignalRole::Candidate => Traffic {
                event: "webrtc:ice_candidate",
                delivery: "webrtc:ice_candidate_received",
                marker: "\"usernameFragment\":\"",
            },
        }
    }
}

impl SoakArgs {
    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.sockets)
    }

    pub fn senders(&self) -> usize {
        self.senders.unwrap_or(self.sockets)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.unwrap_or(self.pairs.div_ceil(6)).max(1)
    }

    fn signaling(&self) -> bool {
        self.pairs > 0 && self.signal_rate > 0.0
    }

    fn uploads(&self) -> bool {
        self.upload_rate > 0.0
    }

    /// Sockets open at once.
    pub fn connections(&self) -> usize {
        self.sockets + if self.signaling() { 2 * self.pairs } else { 0 }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rooms >= 1, "--rooms must be at least 1");
        anyhow::ensure!(
            self.sockets >= self.rooms,
            "--sockets must be at least --rooms (a room needs a socket)"
        );
        anyhow::ensure!(
            (1..=self.sockets).contains(&self.senders()),
            "--senders must be between 1 and --sockets"
        );
        anyhow::ensure!(self.users() >= 1, "--users must be at least 1");
        anyhow::ensure!(
            self.chat_rate.is_finite() && self.chat_rate > 0.0,
            "--chat-rate must be positive"
        );
        for (name, v) in [
            ("--signal-rate", self.signal_rate),
            ("--upload-rate", self.upload_rate),
        ] {
            anyhow::ensure!(v.is_finite() && v >= 0.0, "{name} must be 0 or more");
        }
        if self.signaling() {
            anyhow::ensure!(
                self.sessions() <= self.pairs,
                "--sessions must not exceed --pairs"
            );
        }
        if self.uploads() {
            anyhow::ensure!(
                self.upload_size >= PDF_HEADER.len() as u64,
                "--upload-size must be at least {} bytes",
                PDF_HEADER.len()
            );
            anyhow::ensure!(self.upload_users >= 1, "--upload-users must be at least 1");
        }
        for (name, v) in [
            ("--warmup", self.warmup),
            ("--ack-timeout", self.ack_timeout),
            ("--drain", self.drain),
        ] {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "{name} must be a number of seconds"
            );
        }
        for (name, v) in [
            ("--duration", self.duration),
            ("--request-timeout", self.request_timeout),
            ("--slice", self.slice),
        ] {
            anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be positive");
        }
        Ok(())
    }

    /// The longest the run takes, setup excluded.
    pub fn budget(&self) -> Duration {
        Duration::from_secs_f64(
            self.warmup
                + self.duration
                + self.ack_timeout.max(2.0 * self.request_timeout)
                + self.drain
                + 10.0,
        )
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_error_pct: self.max_error_pct,
            max_refused_pct: self.max_refused_pct,
            max_chat_p99_ms: self.max_chat_p99_ms,
            max_rss_growth_pct: self.max_rss_growth_pct,
        }
    }
}

/// The payload around the tag of one signal to `to` in `session`.
fn signal_template(role: SignalRole, session: &str, to: &str, sdp_size: usize) -> Template {
    let head = format!("{{\"sessionId\":{},\"to\":{},", json!(session), json!(to));
    let kind = match role {
        SignalRole::Candidate => {
            return Template {
                prefix: format!(
                    "{head}\"candidate\":{{\"candidate\":\"candidate:842163049 1 udp 1677729535 \
                     203.0.113.57 61432 typ srflx raddr 192.168.1.20 rport 61432 generation 0 \
                     ufrag 4ZcD network-id 1 network-cost 10\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\
                     \"usernameFragment\":\""
                ),
                suffix: "\"}}".into(),
            };
        }
        SignalRole::Offer => "offer",
        SignalRole::Answer => "answer",
    };
    let start = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n\
                 a=group:BUNDLE 0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n\
                 c=IN IP4 0.0.0.0\\r\\na=mid:0\\r\\na=ice-ufrag:";
    let line = "a=rtpmap:111 opus/48000/2\\r\\n";
    // The SDP's own bytes: each escaped line break is two of them.
    let bytes = |s: &str| s.len() - 2 * s.matches("\\r\\n").count();
    let pad = sdp_size.saturating_sub(bytes(start) + 40) / bytes(line);
    Template {
        prefix: format!("{head}\"sdp\":{{\"type\":\"{kind}\",\"sdp\":\"{start}"),
        suffix: format!("\\r\\n{}\"}}}}", line.repeat(pad)),
    }
}

/// The start of a PDF, which the file-validation plugin sniffs for.
const PDF_HEADER: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";

/// One upload's body: a PDF header, then pseudo-random bytes; leaked once, shared by all.
fn pdf_body(size: u64) -> &'static [u8] {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut body = Vec::with_capacity(size as usize + 8);
    body.extend_from_slice(PDF_HEADER);
    while (body.len() as u64) < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.extend_from_slice(&state.to_le_bytes());
    }
    body.truncate(size as usize);
    body.leak()
}

/// How one HTTP request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HttpOutcome {
    Ok,
    /// A status other than the one expected.
    Status(u16),
    /// The expected status with an answer that does not say what was sent (another size,
    /// no id).
    BadAnswer,
    Timeout,
    /// The connection failed, or the answer broke off.
    Transport,
}

impl HttpOutcome {
    fn of_error(error: &reqwest::Error) -> HttpOutcome {
        if error.is_timeout() {
            HttpOutcome::Timeout
        } else {
            HttpOutcome::Transport
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HttpKind {
    Upload,
    Delete,
}

struct HttpRecord {
    kind: HttpKind,
    measured: bool,
    outcome: HttpOutcome,
}

/// What the uploads of a run did.
#[derive(Default)]
struct HttpTally {
    /// Per request kind and outcome, measured requests only.
    counts: BTreeMap<(HttpKind, HttpOutcome), u64>,
    warm_up: u64,
}

impl HttpTally {
    fn add(&mut self, records: Vec<HttpRecord>) {
        for r in records {
            if r.measured {
                *self.counts.entry((r.kind, r.outcome)).or_default() += 1;
            } else {
                self.warm_up += 1;
            }
        }
    }

    fn count(&self, kind: Option<HttpKind>, pick: impl Fn(HttpOutcome) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|((k, o), _)| kind.is_none_or(|kind| *k == kind) && pick(*o))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Uploads one file, checks the answer, deletes the file.
async fn upload_and_delete(
    api: Api,
    account: Account,
    body: &'static [u8],
    timeout: Duration,
    measured: bool,
    latency: Arc<(Histogram, Histogram)>,
) -> Vec<HttpRecord> {
    let size = body.len() as u64;
    let record = |kind, outcome| HttpRecord {
        kind,
        measured,
        outcome,
    };
    let part = reqwest::multipart::Part::bytes(body)
        .file_name("handout.pdf")
        .mime_str("application/pdf")
        .expect("a valid MIME type");
    let form = reqwest::multipart::Form::new()
        .text("folder", "documents")
        .part("file", part);
    let started = Instant::now();
    let reply = api
        .http
        .post(api.url("/files/upload"))
        .bearer_auth(&account.token)
        .multipart(form)
        .timeout(timeout)
        .send()
        .await;
    let (outcome, id) = match reply {
        Err(error) => (HttpOutcome::of_error(&error), None),
        Ok(reply) => {
            let status = reply.status().as_u16();
            match reply.json::<serde_json::Value>().await {
                Err(error) if status == 201 => (HttpOutcome::of_error(&error), None),
                Err(_) => (HttpOutcome::Status(status), None),
                Ok(answer) => {
                    let id = answer["data"]["id"].as_str().map(str::to_owned);
                    if status != 201 {
                        (HttpOutcome::Status(status), id)
                    } else if answer["data"]["size"] == size && id.is_some() {
                        (HttpOutcome::Ok, id)
                    } else {
                        (HttpOutcome::BadAnswer, id)
                    }
                }
            }
        }
    };
    if outcome == HttpOutcome::Ok && measured {
        latency.0.record(started.elapsed().as_nanos() as u64);
    }
    let mut records = vec![record(HttpKind::Upload, outcome)];
    // Whatever the answer said, a file that was created goes again: the disk stays level.
    if let Some(id) = id {
        let started = Instant::now();
        let reply = api
            .http
            .delete(api.url(&format!("/files/{id}")))
            .bearer_auth(&account.token)
            .timeout(timeout)
            .send()
            .await;
        let outcome = match reply {
            Err(error) => HttpOutcome::of_error(&error),
            Ok(reply) if reply.status().as_u16() == 200 => match reply.bytes().await {
                Ok(_) => HttpOutcome::Ok,
                Err(error) => HttpOutcome::of_error(&error),
            },
            Ok(reply) => HttpOutcome::Status(reply.status().as_u16()),
        };
        if outcome == HttpOutcome::Ok && measured {
            latency.1.record(started.elapsed().as_nanos() as u64);
        }
        records.push(record(HttpKind::Delete, outcome));
    }
    records
}

/// Starts uploads at `rate` per second from `start` until `end` (open loop), and waits for
/// all of them.
#[allow(clippy::too_many_arguments)]
async fn upload_loop(
    api: Api,
    accounts: Vec<Account>,
    body: &'static [u8],
    rate: f64,
    timeout: Duration,
    plan: Plan,
    latency: Arc<(Histogram, Histogram)>,
) -> Vec<HttpRecord> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut running = JoinSet::new();
    let mut records = Vec::new();
    for k in 0u64.. {
        let at = plan.start + interval.mul_f64(k as f64);
        if at >= plan.end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let account = accounts[k as usize % accounts.len()].clone();
        running.spawn(upload_and_delete(
            api.clone(),
            account,
            body,
            timeout,
            at >= plan.measure,
            latency.clone(),
        ));
        while let Some(done) = running.try_join_next() {
            records.extend(done.unwrap_or_default());
        }
    }
    while let Some(done) = running.join_next().await {
        records.extend(done.unwrap_or_default());
    }
    records
}

/// The server at one instant of the window.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds since the window opened.
    t: f64,
    rss_kib: f64,
    cpu_s: f64,
    fds: Option<u64>,
    threads: Option<u64>,
}

fn take_sample(pid: u32, t: f64) -> Option<Sample> {
    let s = server::sample(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|dir| dir.count() as u64);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
        });
    Some(Sample {
        t,
        rss_kib: s.rss_kib as f64,
        cpu_s: s.cpu_seconds,
        fds,
        threads,
    })
}

/// Latency histograms' bucket counts at a slice boundary.
struct Mark {
    t: f64,
    chat: Vec<u64>,
    signal: Vec<u64>,
}

/// Samples the server every second from the window's start to its end (both included),
/// and marks the latency histograms every `slice` seconds.
async fn sampler(
    pid: Option<u32>,
    plan: Plan,
    slice: Duration,
    chat: Arc<Shared>,
    signal: Arc<Shared>,
) -> (Vec<Sample>, Vec<Mark>) {
    let (mut samples, mut marks) = (Vec::new(), Vec::new());
    let mut next_mark = plan.measure;
    for i in 0u32.. {
        let at = plan.measure + Duration::from_secs(u64::from(i));
        let last = at >= plan.end;
        let at = at.min(plan.end);
        tokio::time::sleep_until(at).await;
        let t = (at - plan.measure).as_secs_f64();
        if let Some(sample) = pid.and_then(|pid| take_sample(pid, t)) {
            samples.push(sample);
        }
        if at >= next_mark || last {
            marks.push(Mark {
                t,
                chat: chat.delivery_latency.snapshot(),
                signal: signal.delivery_latency.snapshot(),
            });
            next_mark += slice;
        }
        if last {
            break;
        }
    }
    (samples, marks)
}

/// Waits until every sender of `shared` has finished.
async fn senders_done(shared: &Shared) {
    loop {
        let notified = shared.senders_done.notified();
        if shared.senders_left.load(Ordering::Acquire) == 0 {
            break;
        }
        notified.await;
    }
}

fn behind(shared: &Shared) -> bool {
    shared.delivered.load(Ordering::Relaxed) < shared.expected.load(Ordering::Relaxed)
}

/// Socket refusals that are the server failing (the 5xx of a socket) rather than refusing.
fn is_server_error(code: &str) -> bool {
    matches!(code, "INTERNAL" | "UNAVAILABLE" | "MALFORMED_ACK")
}

fn ms(nanos: Option<u64>) -> f64 {
    nanos.map_or(f64::NAN, |n| n as f64 / 1e6)
}

pub async fn soak(env: &mut Env, args: &SoakArgs) -> anyhow::Result<(Figures, serde_json::Value)> {
    let setup_started = Instant::now();
    let (sockets, senders) = (args.sockets, args.senders());
    let peers = if args.signaling() { 2 * args.pairs } else { 0 };
    let sessions = if args.signaling() { args.sessions() } else { 0 };

    // Chat: users, courses and enrollments as `fanout` makes them.
    let world = World::build(env, sockets, args.rooms, args.users()).await?;
    // Signaling: one account per peer, enrolled in the course of its session.
    let api = &env.api;
    let session_course = |session: usize| &world.courses[session % world.courses.len()];
    let mut session_ids = Vec::with_capacity(sessions);
    for s in 0..sessions {
        session_ids.push(
            api.live_session(&world.instructor.token, session_course(s))
                .await?,
        );
    }
    let session_of = |peer: usize| (peer / 2) % sessions.max(1);
    let peer_accounts: Vec<Account> = stream::iter(0..peers)
        .map(|n| {
            let email = api.email("peer", n);
            async move { api.register(&email, "student").await }
        })
        .buffered(env.setup_concurrency.max(1))
        .try_collect()
        .await?;
    let enrollments: Vec<_> = (0..peers)
        .map(|i| (&peer_accounts[i], session_course(session_of(i))))
        .collect();
    api.enroll_all(&enrollments, env.setup_concurrency).await?;
    let uploaders: Vec<Account> = if args.uploads() {
        stream::iter(0..args.upload_users)
            .map(|n| {
                let email = api.email("uploader", n);
                async move { api.register(&email, "student").await }
            })
            .buffered(env.setup_concurrency.max(1))
            .try_collect()
            .await?
    } else {
        Vec::new()
    };

    let connector = env.connector(args.connections());
    let mut opens: Vec<Open> = (0..sockets)
        .map(|i| Open {
            token: world.user(i).token.clone(),
            join_event: "chat:join_room",
            join_data: room_payload(&world.room(i).room),
        })
        .collect();
    opens.extend((0..peers).map(|i| Open {
        token: peer_accounts[i].token.clone(),
        join_event: "webrtc:join_session",
        join_data: json!({ "sessionId": session_ids[session_of(i)] }).to_string(),
    }));
    let (sids, mut conns): (Vec<String>, Vec<_>) =
        open_all(&connector, opens, env.connect_concurrency)
            .await?
            .into_iter()
            .unzip();
    let peer_conns = conns.split_off(sockets);
    let chat_conns = conns;

    // Chat roles: who sends, and which senders each socket should hear.
    let mut room_sockets = vec![0u64; args.rooms];
    let mut room_senders: Vec<Vec<u32>> = vec![Vec::new(); args.rooms];
    for i in 0..sockets {
        room_sockets[world.room_index(i)] += 1;
        if i < senders {
            room_senders[world.room_index(i)].push(i as u32);
        }
    }
    let chat_interval = Duration::from_secs_f64(senders as f64 / args.chat_rate);
    let filler = content(args.size);
    let chat_roles: Vec<Role> = (0..sockets)
        .map(|i| Role {
            sender: (i < senders).then(|| SenderRole {
                stream: i as u32,
                template: Template {
                    prefix: format!(
                        "{{\"roomId\":{},\"content\":{},\"clientId\":\"",
                        json!(world.room(i).room),
                        json!(filler)
                    ),
                    suffix: "\"}".into(),
                },
                fanout: room_sockets[world.room_index(i)],
                offset: chat_interval.mul_f64(i as f64 / senders as f64),
                limit: None,
            }),
        })
        .collect();
    let chat_listens: Vec<Vec<u32>> = (0..sockets)
        .map(|i| room_senders[world.room_index(i)].clone())
        .collect();

    // Signaling roles: peer i's partner is peer i xor 1.
    let peer_sids = &sids[sockets..];
    let signal_interval = Duration::from_secs_f64(peers.max(1) as f64 / args.signal_rate.max(1e-9));
    let signal_roles: Vec<(SignalRole, Role)> = (0..peers)
        .map(|i| {
            let role = SignalRole::of(i);
            let template = signal_template(
                role,
                &session_ids[session_of(i)],
                &peer_sids[i ^ 1],
                args.sdp_size,
            );
            let sender = SenderRole {
                stream: i as u32,
                template,
                fanout: 1,
                offset: signal_interval.mul_f64(i as f64 / peers as f64),
                limit: None,
            };
            (
                role,
                Role {
                    sender: Some(sender),
                },
            )
        })
        .collect();
    let signal_listens: Vec<Vec<u32>> = (0..peers).map(|i| vec![(i ^ 1) as u32]).collect();
    let body = args.uploads().then(|| pdf_body(args.upload_size));
    let rss_setup = env.pid.and_then(server::sample);
    let setup_s = setup_started.elapsed().as_secs_f64();

    // The timeline, shared by chat, signaling and uploads.
    let start = TokioInstant::now() + Duration::from_millis(100);
    let measure = start + Duration::from_secs_f64(args.warmup);
    let end = measure + Duration::from_secs_f64(args.duration);
    let ack_deadline = end + Duration::from_secs_f64(args.ack_timeout);
    let chat_plan = Plan {
        start,
        measure,
        end,
        ack_deadline,
        load: Load::Rate {
            interval: chat_interval,
        },
    };
    let signal_plan = Plan {
        load: Load::Rate {
            interval: signal_interval,
        },
        ..chat_plan
    };
    let chat_shared = Arc::new(Shared::default());
    chat_shared.senders_left.store(senders, Ordering::Release);
    let signal_shared = Arc::new(Shared::default());
    signal_shared.senders_left.store(peers, Ordering::Release);
    let (stop_tx, stop_rx) = watch::channel(false);
    let chat_traffic = Arc::new(Traffic {
        event: "chat:send_message",
        delivery: "chat:new_message",
        marker: "\"clientId\":\"",
    });
    let chat_tasks: Vec<_> = chat_conns
        .into_iter()
        .zip(chat_roles)
        .map(|(conn, role)| {
            tokio::spawn(traffic::drive(
                conn,
                role,
                chat_traffic.clone(),
                chat_plan,
                chat_shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let mut peer_kinds = Vec::with_capacity(peers);
    let signal_tasks: Vec<_> = peer_conns
        .into_iter()
        .zip(signal_roles)
        .map(|(conn, (kind, role))| {
            peer_kinds.push(kind);
            tokio::spawn(traffic::drive(
                conn,
                role,
                Arc::new(kind.traffic()),
                signal_plan,
                signal_shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let http_latency = Arc::new((Histogram::default(), Histogram::default()));
    let uploads = body.map(|body| {
        tokio::spawn(upload_loop(
            env.api.clone(),
            uploaders.clone(),
            body,
            args.upload_rate,
            Duration::from_secs_f64(args.request_timeout),
            chat_plan,
            http_latency.clone(),
        ))
    });
    let sampling = tokio::spawn(sampler(
        env.pid,
        chat_plan,
        Duration::from_secs_f64(args.slice),
        chat_shared.clone(),
        signal_shared.clone(),
    ));

    tokio::time::sleep_until(measure).await;
    let meter = Meter::start(env.pid);
    let late = TokioInstant::now().saturating_duration_since(measure);
    let _ = tokio::time::timeout_at(ack_deadline + Duration::from_secs(1), async {
        senders_done(&chat_shared).await;
        senders_done(&signal_shared).await;
    })
    .await;
    let mut http = HttpTally::default();
    if let Some(uploads) = uploads {
        http.add(uploads.await?);
    }
    let drain_until = TokioInstant::now() + Duration::from_secs_f64(args.drain);
    while (behind(&chat_shared) || behind(&signal_shared)) && TokioInstant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = meter.finish(env.client_cores);
    let _ = stop_tx.send(true);
    let mut chat_outcomes = Vec::with_capacity(sockets);
    for task in chat_tasks {
        chat_outcomes.push(task.await?);
    }
    let mut signal_outcomes = Vec::with_capacity(peers);
    for task in signal_tasks {
        signal_outcomes.push(task.await?);
    }
    let (samples, marks) = sampling.await?;
    let chat = traffic::totals(&chat_outcomes, &chat_listens);
    let signal = traffic::totals(&signal_outcomes, &signal_listens);
    let (upload_latency, delete_latency) = &*http_latency;

    // The figures.
    let mut f = Figures::default();
    f.count("sockets", (sockets + peers) as u64);
    write_messages(&mut f, "chat", &chat, &chat_shared);
    f.latency("chat_deliver", &chat_shared.delivery_latency);
    f.set(
        "chat_send_lag_p99_ms",
        ms(chat_shared.send_lag.percentile(99.0)),
    );
    write_messages(&mut f, "signal", &signal, &signal_shared);
    for kind in [SignalRole::Offer, SignalRole::Answer, SignalRole::Candidate] {
        let sent: u64 = signal_outcomes
            .iter()
            .zip(&peer_kinds)
            .filter(|(_, k)| **k == kind)
            .map(|(o, _)| o.sent)
            .sum();
        f.count(format!("signal_sent_{}", kind.name()), sent);
    }
    f.latency("signal_relay", &signal_shared.delivery_latency);

    let ok = |o: HttpOutcome| o == HttpOutcome::Ok;
    let any = |_: HttpOutcome| true;
    f.count("upload_sent", http.count(Some(HttpKind::Upload), any));
    f.count("upload_ok", http.count(Some(HttpKind::Upload), ok));
    f.latency("upload", upload_latency);
    f.count("delete_sent", http.count(Some(HttpKind::Delete), any));
    f.count("delete_ok", http.count(Some(HttpKind::Delete), ok));
    f.latency("delete", delete_latency);
    for ((kind, outcome), n) in &http.counts {
        let kind = match kind {
            HttpKind::Upload => "upload",
            HttpKind::Delete => "delete",
        };
        let what = match outcome {
            HttpOutcome::Ok => continue,
            HttpOutcome::Status(status) => status.to_string(),
            HttpOutcome::BadAnswer => "bad_answer".into(),
            HttpOutcome::Timeout => "timeout".into(),
            HttpOutcome::Transport => "transport".into(),
        };
        f.count(format!("failed_{kind}_{what}"), *n);
    }

    // Errors by kind, over every measured request and event.
    let http_requests = http.count(None, any);
    let requests = chat.sent + signal.sent + http_requests;
    let socket_refused = |t: &Totals, server: bool| -> u64 {
        t.refused
            .iter()
            .filter(|(code, _)| is_server_error(code) == server)
            .map(|(_, n)| n)
            .sum()
    };
    let http_5xx = http.count(None, |o| matches!(o, HttpOutcome::Status(s) if s >= 500));
    let http_transport = http.count(None, |o| o == HttpOutcome::Transport);
    let server_errors =
        http_5xx + http_transport + socket_refused(&chat, true) + socket_refused(&signal, true);
    let timeouts =
        chat.unanswered + signal.unanswered + http.count(None, |o| o == HttpOutcome::Timeout);
    let refused = socket_refused(&chat, false)
        + socket_refused(&signal, false)
        + http.count(None, |o| {
            matches!(o, HttpOutcome::BadAnswer) || matches!(o, HttpOutcome::Status(s) if s < 500)
        });
    f.count("requests", requests);
    f.count("errors_5xx", http_5xx);
    f.count("errors_transport", http_transport);
    f.count(
        "errors_error_ack",
        socket_refused(&chat, true) + socket_refused(&signal, true),
    );
    f.count("errors_timeout", timeouts);
    f.count("errors_refused", refused);
    f.set(
        "error_pct",
        100.0 * ratio((server_errors + timeouts) as f64, requests as f64),
    );

    // Memory and CPU over the window, from the per-second samples.
    let first = samples.first().copied();
    let last = samples.last().copied();
    let mib = |kib: f64| kib / KIB;
    let rss_start = first.map(|s| s.rss_kib);
    let rss_end = last.map(|s| s.rss_kib);
    let rss_max = samples.iter().map(|s| s.rss_kib).reduce(f64::max);
    f.set(
        "rss_setup_mib",
        rss_setup.map_or(f64::NAN, |s| mib(s.rss_kib as f64)),
    );
    f.set("rss_start_mib", rss_start.map_or(f64::NAN, mib));
    f.set("rss_end_mib", rss_end.map_or(f64::NAN, mib));
    f.set("rss_max_mib", rss_max.map_or(f64::NAN, mib));
    let growth = match (rss_start, rss_end) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    f.set("rss_growth_mib", mib(growth));
    f.set(
        "rss_growth_pct",
        100.0 * ratio(growth, rss_start.unwrap_or(f64::NAN)),
    );
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t / 60.0, s.rss_kib * KIB))
        .collect();
    f.set(
        "rss_trend_bytes_per_min",
        alarm::slope(&points).unwrap_or(f64::NAN),
    );
    f.count("rss_samples", samples.len() as u64);
    let cpu_pct = |a: Option<Sample>, b: Option<Sample>| match (a, b) {
        (Some(a), Some(b)) if b.t > a.t => 100.0 * (b.cpu_s - a.cpu_s) / (b.t - a.t),
        _ => f64::NAN,
    };
    f.set("server_cpu_window_pct", cpu_pct(first, last));
    let count = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
    f.set("server_fds_start", count(first.and_then(|s| s.fds)));
    f.set("server_fds_end", count(last.and_then(|s| s.fds)));
    f.set("server_threads_start", count(first.and_then(|s| s.threads)));
    f.set("server_threads_end", count(last.and_then(|s| s.threads)));

    // The timeline: per slice, RSS at its end, CPU, p99s.
    let sample_at = |t: f64| {
        samples
            .iter()
            .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
            .copied()
    };
    let mut timeline = Vec::new();
    let mut slice_p99 = Vec::new();
    let mut slice_cpu = Vec::new();
    for pair in marks.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let chat_p99 = ms(chat_shared
            .delivery_latency
            .percentile_between(&a.chat, &b.chat, 99.0));
        let signal_p99 = ms(signal_shared
            .delivery_latency
            .percentile_between(&a.signal, &b.signal, 99.0));
        let (sa, sb) = (sample_at(a.t), sample_at(b.t));
        let cpu = cpu_pct(sa, sb);
        slice_p99.push(chat_p99);
        slice_cpu.push(cpu);
        let round = |v: f64| {
            if v.is_finite() {
                json!((v * 100.0).round() / 100.0)
            } else {
                json!(null)
            }
        };
        timeline.push(json!({
            "from_s": a.t,
            "to_s": b.t,
            "rss_mib": round(sb.map_or(f64::NAN, |s| mib(s.rss_kib))),
            "server_cpu_pct": round(cpu),
            "chat_deliver_p99_ms": round(chat_p99),
            "signal_relay_p99_ms": round(signal_p99),
            "fds": sb.and_then(|s| s.fds),
        }));
    }
    let first_last = |values: &[f64]| {
        (
            values.first().copied().unwrap_or(f64::NAN),
            values.last().copied().unwrap_or(f64::NAN),
        )
    };
    let (p99_first, p99_last) = first_last(&slice_p99);
    f.set("chat_deliver_p99_first_slice_ms", p99_first);
    f.set("chat_deliver_p99_last_slice_ms", p99_last);
    let (cpu_first, cpu_last) = first_last(&slice_cpu);
    f.set("server_cpu_first_slice_pct", cpu_first);
    f.set("server_cpu_last_slice_pct", cpu_last);

    usage.write(
        &mut f,
        &[("delivery", chat.delivered + signal.delivered)],
        &mut env.warnings,
    );

    // The alarms.
    let observed = Observed {
        requests,
        server_errors,
        timeouts,
        refused,
        chat_p99_ms: chat_shared
            .delivery_latency
            .percentile(99.0)
            .map(|n| n as f64 / 1e6),
        chat_due: chat.expected,
        chat_lost: chat.lost,
        chat_duplicated: chat.duplicated,
        signal_due: signal.expected,
        signal_lost: signal.lost,
        signal_duplicated: signal.duplicated,
        misdelivered: chat.misdelivered + signal.misdelivered,
        dropped_connections: chat.failed_connections + signal.failed_connections,
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
    };
    let checks = alarm::evaluate(&observed, &args.thresholds());
    f.count(
        "alarms_failed",
        checks.iter().filter(|c| c.failed()).count() as u64,
    );

    // Warnings: what went wrong, in words.
    let warnings = &mut env.warnings;
    for (what, t) in [("chat", &chat), ("signaling", &signal)] {
        for (reason, n) in &t.failures {
            warnings.push(format!("{what}: {n} connection(s) ended early: {reason}"));
        }
        if t.unanswered > 0 {
            warnings.push(format!(
                "{what}: {} sends got no acknowledgement within the ack timeout",
                t.unanswered
            ));
        }
        if !t.refused.is_empty() {
            warnings.push(format!("{what}: refused {:?}", t.refused));
        }
    }
    if late > Duration::from_millis(50) {
        warnings.push(format!(
            "the meters started {:.0} ms into the window (the generator was not scheduled)",
            late.as_secs_f64() * 1e3
        ));
    }
    for (shared, what) in [(&chat_shared, "chat"), (&signal_shared, "signaling")] {
        if let Some(lag) = shared.send_lag.percentile(99.0)
            && lag > 10_000_000
        {
            warnings.push(format!(
                "{what}: the generator fell behind its schedule (p99 send lag {:.1} ms)",
                lag as f64 / 1e6
            ));
        }
    }
    env.alarms.extend(checks);

    let setup = json!({
        "setup_s": setup_s,
        "users": world.users.len(),
        "rooms": args.rooms,
        "chat_sockets": sockets,
        "chat_senders": senders,
        "room_sockets_max": room_sockets.iter().max(),
        "signal_peers": peers,
        "sessions": sessions,
        "uploaders": uploaders.len(),
        "warmup_http_requests": http.warm_up,
        "timeline": timeline,
    });
    Ok((f, setup))
}

/// Counts of one message engine: sent, acknowledged, refused by code, deliveries.
fn write_messages(f: &mut Figures, key: &str, t: &Totals, shared: &Shared) {
    f.count(format!("{key}_sent"), t.sent);
    f.count(format!("{key}_acked"), t.acked);
    for (code, n) in &t.refused {
        f.count(format!("refused_{key}_{code}"), *n);
    }
    f.count(format!("{key}_unanswered"), t.unanswered);
    f.count(format!("{key}_expected"), t.expected);
    f.count(format!("{key}_delivered"), t.delivered);
    f.count(format!("{key}_lost"), t.lost);
    f.count(format!("{key}_duplicated"), t.duplicated);
    f.count(format!("{key}_misdelivered"), t.misdelivered);
    f.count(format!("{key}_delivered_unacked"), t.delivered_unacked);
    f.count(format!("{key}_failed_connections"), t.failed_connections);
    f.latency(&format!("{key}_ack"), &shared.ack_latency);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Tag;

    fn filled(t: &Template, tag: &str) -> serde_json::Value {
        serde_json::from_str(&format!("{}{tag}{}", t.prefix, t.suffix)).expect("valid JSON")
    }

    #[test]
    fn peers_pair_offers_with_answers_and_candidates_with_candidates() {
        let roles: Vec<SignalRole> = (0..8).map(SignalRole::of).collect();
        assert_eq!(
            roles,
            [
                SignalRole::Offer,
                SignalRole::Answer,
                SignalRole::Candidate,
                SignalRole::Candidate,
                SignalRole::Candidate,
                SignalRole::Candidate,
                SignalRole::Offer,
                SignalRole::Answer,
            ]
        );
        // Each hears what its partner sends.
        assert_eq!(
            SignalRole::Offer.traffic().delivery,
            "webrtc:answer_received"
        );
        assert_eq!(
            SignalRole::Answer.traffic().delivery,
            "webrtc:offer_received"
        );
    }

    #[test]
    fn signal_templates_are_json_carrying_the_tag_where_the_receiver_looks() {
        let tag = Tag {
            warm_up: false,
            stream: 3,
            seq: 9,
            nanos: 12345,
        }
        .encode();
        for role in [SignalRole::Offer, SignalRole::Answer] {
            let v = filled(&signal_template(role, "s-1", "peer", 2500), &tag);
            assert_eq!(v["sdp"]["type"], role.name());
            let sdp = v["sdp"]["sdp"].as_str().unwrap();
            assert!(sdp.contains(&format!("a=ice-ufrag:{tag}\r\n")));
            assert!((2300..=2700).contains(&sdp.len()), "{} bytes", sdp.len());
        }
        let c = filled(
            &signal_template(SignalRole::Candidate, "s-1", "peer", 0),
            &tag,
        );
        assert_eq!(c["to"], "peer");
        assert_eq!(c["candidate"]["usernameFragment"], tag.as_str());
    }

    #[test]
    fn upload_bodies_are_pdfs_of_the_asked_size() {
        let body = pdf_body(1000);
        assert_eq!(body.len(), 1000);
        assert!(body.starts_with(b"%PDF-"));
    }

    #[test]
    fn defaults_describe_a_class() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            soak: SoakArgs,
        }
        let args = Cli::parse_from(["x"]).soak;
        args.validate().unwrap();
        assert_eq!((args.sockets, args.rooms, args.users()), (1000, 20, 1000));
        assert_eq!(args.sessions(), 2);
        assert_eq!(args.connections(), 1024);
        assert!(args.budget() >= Duration::from_secs(180));
        assert_eq!(args.thresholds().max_error_pct, 0.025);
        let off = Cli::parse_from(["x", "--pairs", "0", "--upload-rate", "0"]).soak;
        off.validate().unwrap();
        assert_eq!(off.connections(), 1000);
        assert!(
            Cli::parse_from(["x", "--sockets", "5", "--rooms", "6"])
                .soak
                .validate()
                .is_err()
        );
    }
}
