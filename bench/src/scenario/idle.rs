//! `idle`: many sockets connected, authenticated and joined to course rooms, then held.
//! Measures what a connection costs the server: CPU per connect + auth + join, memory per
//! held socket, and whether they all stay up (pings answered) while nothing happens.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::sync::{Notify, Semaphore, watch};

use super::{Env, Meter, Open, World, open_one, room_payload};
use crate::{
    conn::Conn,
    protocol::{self, Packet},
    report::{Figures, ratio},
    server,
    stats::Histogram,
};

/// Time after the last join before memory is read, for the server to finish the work the
/// joins caused (presence updates).
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct IdleArgs {
    /// Sockets to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Sockets per course room.
    #[arg(long, default_value_t = 50)]
    pub room_size: usize,
    /// Accounts behind the sockets (several sockets of one account are several tabs).
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    /// Seconds to hold every socket open once all have joined (the server pings every 25 s).
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
}

impl IdleArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.sockets >= 1, "--sockets must be at least 1");
        anyhow::ensure!(self.room_size >= 1, "--room-size must be at least 1");
        anyhow::ensure!(self.users >= 1, "--users must be at least 1");
        anyhow::ensure!(
            self.hold.is_finite() && self.hold >= 0.0,
            "--hold must be a number of seconds"
        );
        Ok(())
    }

    pub fn rooms(&self) -> usize {
        self.sockets.div_ceil(self.room_size)
    }
}

/// How one socket fared.
#[derive(Default)]
struct Held {
    /// Why it never joined, by stage.
    failed: Option<(&'static str, String)>,
    /// Why it closed during the hold.
    dropped: Option<String>,
    /// Events the server pushed after the join (presence updates of later joins), and
    /// their bytes: what idle sockets cost the server besides their memory.
    events: u64,
    event_bytes: u64,
}

pub async fn idle(env: &mut Env, args: &IdleArgs) -> anyhow::Result<(Figures, serde_json::Value)> {
    let setup_started = Instant::now();
    let users = args.users.min(args.sockets);
    let world = World::build(env, args.sockets, args.rooms(), users).await?;
    let connector = Arc::new(env.connector(args.sockets));
    let setup = json!({
        "setup_s": setup_started.elapsed().as_secs_f64(),
        "users": world.users.len(),
        "rooms": world.courses.len(),
        "sockets": args.sockets,
        "source_addresses": crate::conn::source_addrs(env.addr, args.sockets).len(),
    });

    let permits = Arc::new(Semaphore::new(env.connect_concurrency.max(1)));
    let latency = Arc::new(Histogram::default());
    let attempted = Arc::new(AtomicUsize::new(0));
    let all_attempted = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let meter = Meter::start(env.pid);
    let tasks: Vec<_> = (0..args.sockets)
        .map(|i| {
            let open = Open {
                token: world.user(i).token.clone(),
                join_event: "chat:join_room",
                join_data: room_payload(&world.room(i).room),
            };
            let (connector, permits, latency) =
                (connector.clone(), permits.clone(), latency.clone());
            let (attempted, all_attempted, stop) =
                (attempted.clone(), all_attempted.clone(), stop_rx.clone());
            let total = args.sockets;
            tokio::spawn(async move {
                let permit = permits.acquire_owned().await.expect("semaphore open");
                let started = Instant::now();
                let opened = open_one(&connector, &open).await;
                drop(permit);
                if attempted.fetch_add(1, Ordering::AcqRel) + 1 == total {
                    all_attempted.notify_waiters();
                }
                match opened {
                    Ok((_, conn)) => {
                        latency.record(started.elapsed().as_nanos() as u64);
                        hold(conn, stop).await
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        let stage = if text.contains("chat:join_room") {
                            "join"
                        } else if text.contains("refused") {
                            "auth"
                        } else {
                            "connect"
                        };
                        Held {
                            failed: Some((stage, text)),
                            ..Held::default()
                        }
                    }
                }
            })
        })
        .collect();
    loop {
        let notified = all_attempted.notified();
        if attempted.load(Ordering::Acquire) == args.sockets {
            break;
        }
        notified.await;
    }
    let connect = meter.finish(env.client_cores);

    tokio::time::sleep(SETTLE).await;
    let settled = env.pid.and_then(server::sample);
    let hold_meter = Meter::start(env.pid);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let held = hold_meter.finish(env.client_cores);
    let _ = stop_tx.send(true);
    let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut examples: BTreeMap<String, u64> = BTreeMap::new();
    let mut dropped = 0u64;
    let (mut events, mut event_bytes) = (0u64, 0u64);
    for task in tasks {
        let h = task.await?;
        events += h.events;
        event_bytes += h.event_bytes;
        if let Some((stage, text)) = h.failed {
            *failed.entry(stage).or_default() += 1;
            *examples.entry(text).or_default() += 1;
        }
        if let Some(reason) = h.dropped {
            dropped += 1;
            *examples
                .entry(format!("during the hold: {reason}"))
                .or_default() += 1;
        }
    }
    let connected = latency.count();

    let mut f = Figures::default();
    f.count("sockets", args.sockets as u64);
    f.count("connected", connected);
    for stage in ["connect", "auth", "join"] {
        f.count(
            format!("failed_{stage}"),
            failed.get(stage).copied().unwrap_or(0),
        );
    }
    f.count("dropped_during_hold", dropped);
    f.set("connect_phase_s", connect.wall_s);
    f.set("connects_per_s", ratio(connected as f64, connect.wall_s));
    f.latency("connect_join", &latency);
    f.set("server_cpu_connect_s", connect.server_cpu_s);
    f.set(
        "server_cpu_us_per_socket",
        1e6 * ratio(connect.server_cpu_s, connected as f64),
    );
    f.set(
        "client_cpu_us_per_socket",
        1e6 * ratio(connect.client_cpu_s, connected as f64),
    );
    f.set("client_busy_connect_pct", 100.0 * connect.client_busy());
    let mib = |kib: f64| kib / 1024.0;
    let settled_kib = settled.map_or(f64::NAN, |s| s.rss_kib as f64);
    f.set("server_rss_before_mib", mib(connect.server_rss_before_kib));
    f.set("server_rss_connected_mib", mib(settled_kib));
    f.set(
        "server_rss_per_socket_kib",
        ratio(
            settled_kib - connect.server_rss_before_kib,
            connected as f64,
        ),
    );
    f.set("server_rss_after_hold_mib", mib(held.server_rss_after_kib));
    f.set(
        "server_rss_peak_mib",
        mib(connect.server_rss_peak_kib.max(held.server_rss_peak_kib)),
    );
    f.set("events_per_socket", ratio(events as f64, connected as f64));
    f.set(
        "event_kib_per_socket",
        ratio(event_bytes as f64 / 1024.0, connected as f64),
    );
    f.set("hold_s", held.wall_s);
    f.set(
        "server_cpu_hold_pct",
        100.0 * ratio(held.server_cpu_s, held.wall_s),
    );
    if let Some(status) = std::fs::read_to_string("/proc/self/status").ok()
        && let Some(hwm) = server::status_kib(&status, "VmHWM")
    {
        f.set("client_rss_peak_mib", hwm as f64 / 1024.0);
    }
    f.set(
        "foreign_cpu_pct",
        100.0
            * ratio(
                connect.foreign_cpu_s + held.foreign_cpu_s,
                (connect.wall_s + held.wall_s) * connect.watched_cores as f64,
            ),
    );
    env.warnings
        .extend(connect.contention().into_iter().chain(held.contention()));
    if connect.client_busy() > 0.9 {
        env.warnings.push(format!(
            "the generator kept its core(s) {:.0}% busy while connecting: connects/s may be \
             its limit, not the server's",
            100.0 * connect.client_busy()
        ));
    }
    for (text, n) in examples.iter().take(5) {
        env.warnings.push(format!("{n} socket(s): {text}"));
    }
    Ok((f, setup))
}

/// Holds a joined socket open, answering pings and counting events, until `stop`.
async fn hold(mut conn: Conn, mut stop: watch::Receiver<bool>) -> Held {
    let mut held = Held::default();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = conn.next_text() => match frame {
                Ok(Some(text)) => match protocol::parse(&text) {
                    Packet::Ping => {
                        if let Err(e) = conn.send(protocol::PONG.to_owned()).await {
                            held.dropped = Some(format!("{e:#}"));
                            return held;
                        }
                    }
                    Packet::Disconnect | Packet::Close => {
                        held.dropped = Some("disconnected by the server".into());
                        return held;
                    }
                    Packet::Event { .. } => {
                        held.events += 1;
                        held.event_bytes += text.len() as u64;
                    }
                    _ => {}
                },
                Ok(None) => {
                    held.dropped = Some("closed by the server".into());
                    return held;
                }
                Err(e) => {
                    held.dropped = Some(format!("{e:#}"));
                    return held;
                }
            }
        }
    }
    conn.close().await;
    held
}
