//! The message engine shared by `fanout`, `ingest` and `signaling`: connections of which
//! some send an event (open loop at a rate, or closed loop with a window of unanswered
//! sends) and all count the deliveries it causes.
//!
//! Every sent payload carries a tag `m<stream>.<seq>.<nanos>` (`w` instead of `m` during
//! the warm-up, which nothing counts): the sender's stream number, its sequence number and
//! the send instant in nanoseconds since the process's base instant. The server relays the
//! tag unchanged (a chat message's `clientId`, an ICE candidate's `usernameFragment`, a line
//! of an SDP), so the receiver learns who sent what when without any shared table.
//!
//! One task drives each connection: it reads frames, answers pings, matches
//! acknowledgements to its sends and records deliveries. Receivers keep a bit per message
//! per sender they hear; at the end those bits, against the senders' sets of accepted
//! messages, give the losses, duplicates and misdeliveries exactly.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{Notify, watch},
    time::Instant as TokioInstant,
};

use crate::{
    bitset::BitSet,
    conn::Conn,
    protocol::{self, AckOutcome, Packet},
    stats::Histogram,
};

/// The instant every tag's nanoseconds count from.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

pub fn nanos_now() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// The parts of a tag.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Tag {
    pub warm_up: bool,
    pub stream: u32,
    pub seq: u64,
    pub nanos: u64,
}

impl Tag {
    pub fn encode(&self) -> String {
        format!(
            "{}{}.{}.{}",
            if self.warm_up { 'w' } else { 'm' },
            self.stream,
            self.seq,
            self.nanos
        )
    }

    /// Reads the tag at the start of `text` (which may continue after it).
    pub fn decode(text: &str) -> Option<Tag> {
        let warm_up = match text.as_bytes().first()? {
            b'm' => false,
            b'w' => true,
            _ => return None,
        };
        let body = &text[1..];
        let len = body
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let mut parts = body[..len].split('.');
        let tag = Tag {
            warm_up,
            stream: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            nanos: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(tag)
    }
}

/// How senders pace themselves.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Open loop: each sender sends every `interval`, whatever the answers.
    Rate { interval: Duration },
    /// Closed loop: each sender keeps `in_flight` sends unanswered, sending again on each answer.
    Closed { in_flight: usize },
}

/// The timeline of a run, shared by every connection.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The warm-up starts: senders begin.
    pub start: TokioInstant,
    /// Sends from here on are measured.
    pub measure: TokioInstant,
    /// No send starts at or after this.
    pub end: TokioInstant,
    /// Sends unanswered by now count as unanswered.
    pub ack_deadline: TokioInstant,
    pub load: Load,
}

/// The event a sender emits and the delivery it causes.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub event: &'static str,
    pub delivery: &'static str,
    /// What precedes the tag in a delivery's text.
    pub marker: &'static str,
}

/// One sender's payload around its tag: `prefix + tag + suffix` is the event's JSON data.
#[derive(Clone, Debug)]
pub struct Template {
    pub prefix: String,
    pub suffix: String,
}

/// What one connection does.
pub struct Role {
    pub sender: Option<SenderRole>,
}

pub struct SenderRole {
    pub stream: u32,
    pub template: Template,
    /// Receivers due each accepted message.
    pub fanout: u64,
    /// Open loop: the delay of this sender's first send, spreading senders over an interval.
    pub offset: Duration,
    /// Measured sends this sender makes at most.
    pub limit: Option<u64>,
}

/// Counters every connection task updates as it goes.
#[derive(Default)]
pub struct Shared {
    pub ack_latency: Histogram,
    pub delivery_latency: Histogram,
    /// Open loop: how late each measured send went out against its schedule.
    pub send_lag: Histogram,
    /// Unique measured deliveries so far.
    pub delivered: AtomicU64,
    /// Deliveries due for the messages accepted so far.
    pub expected: AtomicU64,
    pub senders_left: AtomicUsize,
    pub senders_done: Notify,
    pub last_ack: AtomicU64,
    pub last_delivery: AtomicU64,
}

/// What one connection saw.
#[derive(Default)]
pub struct Outcome {
    pub stream: Option<u32>,
    pub sent: u64,
    pub warm_up_sent: u64,
    pub accepted: BitSet,
    pub refused: BTreeMap<String, u64>,
    pub unanswered: u64,
    /// Per stream heard, the measured sequence numbers received.
    pub seen: HashMap<u32, BitSet>,
    pub duplicates: u64,
    /// Why the connection ended early, if it did.
    pub failure: Option<String>,
}

struct Sending {
    role: SenderRole,
    /// Send instants (nanoseconds) by sequence number; warm-up ones included.
    sent_at: Vec<u64>,
    answered: BitSet,
    measured_outstanding: u64,
    /// The first measured sequence number, once the warm-up is over.
    first_measured: Option<u64>,
    measured_sent: u64,
    /// Open loop: sends scheduled so far.
    scheduled: u64,
    /// No more sends.
    stopped: bool,
    /// Stopped and every measured send answered or given up on.
    finished: bool,
}

impl Sending {
    fn outstanding(&self) -> u64 {
        self.sent_at.len() as u64 - self.answered.len()
    }

    fn at_limit(&self) -> bool {
        self.role.limit.is_some_and(|n| self.measured_sent >= n)
    }
}

/// Drives one connection until `stop` says so (or the connection fails).
pub async fn drive(
    mut conn: Conn,
    role: Role,
    traffic: Arc<Traffic>,
    plan: Plan,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut out = Outcome {
        stream: role.sender.as_ref().map(|s| s.stream),
        ..Outcome::default()
    };
    let mut sending = role.sender.map(|role| Sending {
        role,
        sent_at: Vec::new(),
        answered: BitSet::default(),
        measured_outstanding: 0,
        first_measured: None,
        measured_sent: 0,
        scheduled: 0,
        stopped: false,
        finished: false,
    });
    loop {
        let now = TokioInstant::now();
        let mut wake = None;
        if let Some(s) = sending.as_mut().filter(|s| !s.finished) {
            if !s.stopped {
                if let Load::Closed { in_flight } = plan.load
                    && now >= plan.start
                {
                    while s.outstanding() < in_flight as u64
                        && TokioInstant::now() < plan.end
                        && !s.at_limit()
                    {
                        if let Err(e) = send(&mut conn, s, &traffic, &plan, &shared, None).await {
                            out.failure = Some(format!("{e:#}"));
                            break;
                        }
                    }
                }
                if TokioInstant::now() >= plan.end || s.at_limit() || out.failure.is_some() {
                    s.stopped = true;
                }
            }
            if out.failure.is_some() {
                break;
            }
            if s.stopped && (s.measured_outstanding == 0 || now >= plan.ack_deadline) {
                finish(s, &mut out, &shared);
            } else if s.stopped {
                wake = Some(plan.ack_deadline);
            } else {
                wake = Some(match plan.load {
                    // Waking at the end at the latest stops a sender with a long interval on time.
                    Load::Rate { interval } => due(s, &plan, interval).min(plan.end),
                    Load::Closed { .. } if now < plan.start => plan.start,
                    Load::Closed { .. } => plan.end,
                });
            }
        }
        // Stop first, then sends that are due (a busy receiver must not delay them), then frames.
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(wake.unwrap_or(plan.ack_deadline)), if wake.is_some() => {
                if let (Some(s), Load::Rate { interval }) = (sending.as_mut(), plan.load) {
                    while !s.stopped {
                        let at = due(s, &plan, interval);
                        let now = TokioInstant::now();
                        if at > now {
                            break;
                        }
                        if at >= plan.end || s.at_limit() {
                            s.stopped = true;
                            break;
                        }
                        s.scheduled += 1;
                        if let Err(e) = send(&mut conn, s, &traffic, &plan, &shared, Some(now - at)).await {
                            out.failure = Some(format!("{e:#}"));
                            s.stopped = true;
                        }
                    }
                }
            }
            frame = conn.next_text() => {
                let text = match frame {
                    Ok(Some(text)) => text,
                    Ok(None) => {
                        out.failure = Some("closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        out.failure = Some(format!("{e:#}"));
                        break;
                    }
                };
                if let Err(e) = receive(&mut conn, &text, sending.as_mut(), &traffic, &shared, &mut out).await {
                    out.failure = Some(format!("{e:#}"));
                    break;
                }
            }
        }
    }
    if let Some(s) = sending.as_mut().filter(|s| !s.finished) {
        finish(s, &mut out, &shared);
    }
    conn.close().await;
    out
}

/// When the next open-loop send of `s` is due.
fn due(s: &Sending, plan: &Plan, interval: Duration) -> TokioInstant {
    plan.start + s.role.offset + interval.mul_f64(s.scheduled as f64)
}

async fn send(
    conn: &mut Conn,
    s: &mut Sending,
    traffic: &Traffic,
    plan: &Plan,
    shared: &Shared,
    lag: Option<Duration>,
) -> anyhow::Result<()> {
    let seq = s.sent_at.len() as u64;
    let warm_up = TokioInstant::now() < plan.measure;
    if !warm_up && s.first_measured.is_none() {
        s.first_measured = Some(seq);
    }
    let nanos = nanos_now();
    let tag = Tag {
        warm_up,
        stream: s.role.stream,
        seq,
        nanos,
    }
    .encode();
    let template = &s.role.template;
    let mut data = String::with_capacity(template.prefix.len() + tag.len() + template.suffix.len());
    data.push_str(&template.prefix);
    data.push_str(&tag);
    data.push_str(&template.suffix);
    s.sent_at.push(nanos);
    if !warm_up {
        s.measured_sent += 1;
        s.measured_outstanding += 1;
        if let Some(lag) = lag {
            shared.send_lag.record(lag.as_nanos() as u64);
        }
    }
    // Acknowledgement ids are sequence numbers plus one; 0 stays free for setup requests.
    conn.send(protocol::event(Some(seq + 1), traffic.event, &data))
        .await
}

fn finish(s: &mut Sending, out: &mut Outcome, shared: &Shared) {
    s.finished = true;
    s.stopped = true;
    out.sent = s.measured_sent;
    out.warm_up_sent = s.sent_at.len() as u64 - s.measured_sent;
    out.unanswered = s.measured_outstanding;
    if shared.senders_left.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.senders_done.notify_waiters();
    }
}

async fn receive(
    conn: &mut Conn,
    text: &str,
    sending: Option<&mut Sending>,
    traffic: &Traffic,
    shared: &Shared,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    match protocol::parse(text) {
        Packet::Ping => conn.send(protocol::PONG.to_owned()).await?,
        Packet::Event { id: None, body } if protocol::is_event(body, traffic.delivery) => {
            let now = nanos_now();
            let Some(tag) = body
                .find(traffic.marker)
                .and_then(|at| Tag::decode(&body[at + traffic.marker.len()..]))
            else {
                return Ok(());
            };
            if tag.warm_up {
                return Ok(());
            }
            if out.seen.entry(tag.stream).or_default().insert(tag.seq) {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared
                    .delivery_latency
                    .record(now.saturating_sub(tag.nanos));
                shared.last_delivery.fetch_max(now, Ordering::Relaxed);
            } else {
                out.duplicates += 1;
            }
        }
        Packet::Ack { id, body } => {
            let Some(s) = sending else { return Ok(()) };
            let Some(seq) = id.checked_sub(1) else {
                return Ok(());
            };
            if seq >= s.sent_at.len() as u64 || !s.answered.insert(seq) {
                return Ok(());
            }
            let measured = s.first_measured.is_some_and(|first| seq >= first);
            if !measured || s.finished {
                return Ok(());
            }
            s.measured_outstanding -= 1;
            let now = nanos_now();
            match protocol::ack_outcome(body) {
                AckOutcome::Ok => {
                    out.accepted.insert(seq);
                    shared
                        .ack_latency
                        .record(now.saturating_sub(s.sent_at[seq as usize]));
                    shared.last_ack.fetch_max(now, Ordering::Relaxed);
                    shared.expected.fetch_add(s.role.fanout, Ordering::Relaxed);
                }
                AckOutcome::Refused(code) => *out.refused.entry(code).or_default() += 1,
                AckOutcome::Malformed => {
                    *out.refused.entry("MALFORMED_ACK".into()).or_default() += 1
                }
            }
        }
        Packet::Disconnect | Packet::Close => anyhow::bail!("disconnected by the server"),
        _ => {}
    }
    Ok(())
}

/// The totals of a run, from every connection's outcome and who should hear whom.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub warm_up_sent: u64,
    pub acked: u64,
    pub refused: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub expected: u64,
    /// Unique deliveries of measured messages to receivers that should hear them.
    pub delivered: u64,
    /// Acknowledged with `ok: true` yet never delivered to a receiver that should hear it.
    pub lost: u64,
    pub duplicated: u64,
    /// Delivered to a connection that should not hear the sender.
    pub misdelivered: u64,
    /// Delivered, though the sender got a refusal or no answer.
    pub delivered_unacked: u64,
    pub failed_connections: u64,
    pub failures: BTreeMap<String, u64>,
}

/// Adds up outcomes; `listens[c]` are the streams connection `c` should hear.
pub fn totals(outcomes: &[Outcome], listens: &[Vec<u32>]) -> Totals {
    let mut t = Totals::default();
    let mut accepted: HashMap<u32, &BitSet> = HashMap::new();
    for o in outcomes {
        t.sent += o.sent;
        t.warm_up_sent += o.warm_up_sent;
        t.acked += o.accepted.len();
        t.unanswered += o.unanswered;
        t.duplicated += o.duplicates;
        for (code, n) in &o.refused {
            *t.refused.entry(code.clone()).or_default() += n;
        }
        if let Some(reason) = &o.failure {
            t.failed_connections += 1;
            *t.failures.entry(reason.clone()).or_default() += 1;
        }
        if let Some(stream) = o.stream {
            accepted.insert(stream, &o.accepted);
        }
    }
    let empty = BitSet::default();
    for (o, streams) in outcomes.iter().zip(listens) {
        for stream in streams {
            let acc = accepted.get(stream).copied().unwrap_or(&empty);
            let seen = o.seen.get(stream).unwrap_or(&empty);
            t.expected += acc.len();
            t.lost += acc.count_without(seen);
            t.delivered += seen.len();
            t.delivered_unacked += seen.count_without(acc);
        }
        for (stream, seen) in &o.seen {
            if !streams.contains(stream) {
                t.misdelivered += seen.len();
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_stop_at_their_end() {
        let tag = Tag {
            warm_up: false,
            stream: 12,
            seq: 345,
            nanos: 6_789_000_111,
        };
        assert_eq!(tag.encode(), "m12.345.6789000111");
        assert_eq!(Tag::decode("m12.345.6789000111\",\"x\":1"), Some(tag));
        // In an SDP the tag is followed by an escaped line break.
        assert_eq!(Tag::decode("m12.345.6789000111\\r\\n"), Some(tag));
        let warm = Tag {
            warm_up: true,
            ..tag
        };
        assert_eq!(Tag::decode(&warm.encode()), Some(warm));
        assert_eq!(Tag::decode("x1.2.3"), None);
        assert_eq!(Tag::decode("m1.2"), None);
        assert_eq!(Tag::decode("m1.2.3.4"), None);
        assert_eq!(Tag::decode("m"), None);
    }

    fn bits(ns: &[u64]) -> BitSet {
        let mut b = BitSet::default();
        for &n in ns {
            b.insert(n);
        }
        b
    }

    #[test]
    fn totals_count_losses_duplicates_and_strays() {
        // Stream 0 (connection 0) had 0, 1, 2 accepted; stream 1 (connection 1) had 5.
        let sender0 = Outcome {
            stream: Some(0),
            sent: 4,
            accepted: bits(&[0, 1, 2]),
            unanswered: 1,
            seen: HashMap::from([(0, bits(&[0, 1, 2])), (1, bits(&[5]))]),
            ..Outcome::default()
        };
        let sender1 = Outcome {
            stream: Some(1),
            sent: 2,
            accepted: bits(&[5]),
            refused: BTreeMap::from([("RATE_LIMITED".into(), 1)]),
            // Missed message 1 of stream 0, got 3 (unanswered) of it, heard a stray stream.
            seen: HashMap::from([(0, bits(&[0, 2, 3])), (1, bits(&[5])), (9, bits(&[1]))]),
            duplicates: 2,
            ..Outcome::default()
        };
        let t = totals(&[sender0, sender1], &[vec![0, 1], vec![0, 1]]);
        assert_eq!(t.sent, 6);
        assert_eq!(t.acked, 4);
        assert_eq!(t.refused["RATE_LIMITED"], 1);
        assert_eq!(t.unanswered, 1);
        assert_eq!(t.expected, 8);
        assert_eq!(t.lost, 1);
        assert_eq!(t.delivered, 8);
        assert_eq!(t.delivered_unacked, 1);
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.misdelivered, 1);
    }
}
