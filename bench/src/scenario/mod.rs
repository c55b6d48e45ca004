//! The scenarios, and what they share: the run's environment, resource meters around a
//! measured window, and the provisioning of users, courses and sockets.

pub mod chat;
pub mod idle;
pub mod load;
pub mod signaling;
pub mod signup;
pub mod soak;
pub mod upload;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use serde_json::json;

use crate::{
    api::{Account, Api, Course},
    conn::{Conn, Connector},
    report::{Figures, ratio},
    server::{self, ProcSample},
};

/// How long a join (`chat:join_room`, `webrtc:join_session`) may take during setup.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// What a run may use.
pub struct Env {
    pub api: Api,
    pub addr: SocketAddr,
    /// The server's process, for `/proc` readings.
    pub pid: Option<u32>,
    pub setup_concurrency: usize,
    pub connect_concurrency: usize,
    /// Cores the generator runs on, to tell when it, not the server, was the bottleneck.
    pub client_cores: usize,
    pub read_buffer: usize,
    /// Warnings for the report.
    pub warnings: Vec<String>,
    /// Alarm verdicts (`soak`); a failed one fails the run's exit status.
    pub alarms: Vec<crate::alarm::Check>,
}

impl Env {
    pub fn connector(&self, connections: usize) -> Connector {
        Connector::new(
            self.addr,
            crate::conn::source_addrs(self.addr, connections),
            self.read_buffer,
        )
    }
}

/// Server and generator resource use over a measured window.
pub struct Meter {
    pid: Option<u32>,
    before: Option<ProcSample>,
    hwm_reset: bool,
    own_cpu: f64,
    cores_busy: Option<f64>,
    started: Instant,
    peak_rss: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
}

/// What a [`Meter`] read.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub wall_s: f64,
    /// NaN without a server pid.
    pub server_cpu_s: f64,
    pub server_rss_before_kib: f64,
    pub server_rss_after_kib: f64,
    pub server_rss_peak_kib: f64,
    pub client_cpu_s: f64,
    pub client_cores: usize,
    /// CPU time other processes took on the server's and the generator's cores (NaN when
    /// they are not both pinned).
    pub foreign_cpu_s: f64,
    pub watched_cores: usize,
}

impl Meter {
    /// Reads the server's CPU and memory now, resets its peak RSS, and samples its RSS
    /// every 100 ms until [`Meter::finish`] (the peak between samples comes from VmHWM).
    pub fn start(pid: Option<u32>) -> Meter {
        let before = pid.and_then(server::sample);
        let hwm_reset = pid.is_some_and(server::reset_peak_rss);
        let peak_rss = Arc::new(AtomicU64::new(before.map_or(0, |s| s.rss_kib)));
        let sampling = Arc::new(AtomicBool::new(true));
        if let Some(pid) = pid {
            let (peak, on) = (peak_rss.clone(), sampling.clone());
            tokio::spawn(async move {
                while on.load(Ordering::Relaxed) {
                    if let Some(s) = server::sample(pid) {
                        peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        Meter {
            pid,
            before,
            hwm_reset,
            own_cpu: server::own_cpu_seconds(),
            cores_busy: server::WATCHED_CORES
                .get()
                .and_then(|cores| server::cores_busy_seconds(cores)),
            started: Instant::now(),
            peak_rss,
            sampling,
        }
    }

    pub fn finish(&self, client_cores: usize) -> Usage {
        let after = self.pid.and_then(server::sample);
        self.sampling.store(false, Ordering::Relaxed);
        let kib = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
        let mut peak = self.peak_rss.load(Ordering::Relaxed);
        if self.hwm_reset
            && let Some(after) = after
        {
            peak = peak.max(after.hwm_kib);
        }
        if let Some(after) = after {
            peak = peak.max(after.rss_kib);
        }
        let server_cpu_s = match (self.before, after) {
            (Some(b), Some(a)) => a.cpu_seconds - b.cpu_seconds,
            _ => f64::NAN,
        };
        let client_cpu_s = server::own_cpu_seconds() - self.own_cpu;
        let watched = server::WATCHED_CORES.get();
        let foreign_cpu_s = match (self.cores_busy, watched) {
            (Some(before), Some(cores)) => server::cores_busy_seconds(cores)
                .map_or(f64::NAN, |now| {
                    (now - before - client_cpu_s - server_cpu_s).max(0.0)
                }),
            _ => f64::NAN,
        };
        Usage {
            wall_s: self.started.elapsed().as_secs_f64(),
            server_cpu_s,
            server_rss_before_kib: kib(self.before.map(|s| s.rss_kib)),
            server_rss_after_kib: kib(after.map(|s| s.rss_kib)),
            server_rss_peak_kib: if after.is_some() {
                peak as f64
            } else {
                f64::NAN
            },
            client_cpu_s,
            client_cores,
            foreign_cpu_s,
            watched_cores: watched.map_or(0, Vec::len),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
    }
}

impl Usage {
    /// The share of the generator's cores it kept busy.
    pub fn client_busy(&self) -> f64 {
        ratio(self.client_cpu_s, self.wall_s * self.client_cores as f64)
    }

    /// The share of the watched cores other processes used.
    pub fn foreign_busy(&self) -> f64 {
        ratio(self.foreign_cpu_s, self.wall_s * self.watched_cores as f64)
    }

    /// A warning when other processes took a noticeable share of the benchmark's cores.
    pub fn contention(&self) -> Option<String> {
        (self.foreign_busy() > 0.1).then(|| {
            format!(
                "other processes used {:.0}% of the server's and generator's cores during \
                 the window: the figures measure a shared machine",
                100.0 * self.foreign_busy()
            )
        })
    }

    /// Writes the resource figures, with CPU per unit of work for each `(name, count)`.
    pub fn write(&self, f: &mut Figures, per: &[(&str, u64)], warnings: &mut Vec<String>) {
        f.set("window_s", self.wall_s);
        f.set("server_cpu_s", self.server_cpu_s);
        f.set(
            "server_cpu_pct",
            100.0 * ratio(self.server_cpu_s, self.wall_s),
        );
        for (name, count) in per {
            f.set(
                format!("server_cpu_us_per_{name}"),
                1e6 * ratio(self.server_cpu_s, *count as f64),
            );
        }
        f.set("server_rss_before_mib", self.server_rss_before_kib / 1024.0);
        f.set("server_rss_after_mib", self.server_rss_after_kib / 1024.0);
        f.set("server_rss_peak_mib", self.server_rss_peak_kib / 1024.0);
        f.set("client_cpu_s", self.client_cpu_s);
        f.set("client_busy_pct", 100.0 * self.client_busy());
        for (name, count) in per {
            f.set(
                format!("client_cpu_us_per_{name}"),
                1e6 * ratio(self.client_cpu_s, *count as f64),
            );
        }
        if let Some(status) = std::fs::read_to_string("/proc/self/status").ok()
            && let Some(hwm) = server::status_kib(&status, "VmHWM")
        {
            f.set("client_rss_peak_mib", hwm as f64 / 1024.0);
        }
        f.set("foreign_cpu_pct", 100.0 * self.foreign_busy());
        warnings.extend(self.contention());
        if self.client_busy() > 0.9 {
            warnings.push(format!(
                "the generator kept its {} core(s) {:.0}% busy: it, not the server, may be the \
                 bottleneck (give it more cores with --client-cores, or lower the load)",
                self.client_cores,
                100.0 * self.client_busy()
            ));
        }
    }
}

/// Users and course rooms for socket scenarios. Socket `i` belongs to user `i % users` and
/// room `i % rooms`; each user is enrolled in every room one of its sockets joins (several
/// sockets of one user are several tabs, which the server allows).
pub struct World {
    pub instructor: Account,
    pub users: Vec<Account>,
    pub courses: Vec<Course>,
}

impl World {
    pub async fn build(
        env: &Env,
        sockets: usize,
        rooms: usize,
        users: usize,
    ) -> anyhow::Result<World> {
        anyhow::ensure!(
            rooms >= 1 && users >= 1,
            "need at least one room and one user"
        );
        let api = &env.api;
        let instructor = api
            .register(&api.email("instructor", 0), "instructor")
            .await?;
        let courses = api
            .courses(&instructor.token, rooms, env.setup_concurrency)
            .await?;
        let users = api.students(users, env.setup_concurrency).await?;
        let world = World {
            instructor,
            users,
            courses,
        };
        world.enroll(env, sockets).await?;
        Ok(world)
    }

    async fn enroll(&self, env: &Env, sockets: usize) -> anyhow::Result<()> {
        let mut pairs = HashSet::new();
        for i in 0..sockets {
            pairs.insert((self.user_index(i), self.room_index(i)));
        }
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort_unstable();
        let refs: Vec<(&Account, &Course)> = pairs
            .iter()
            .map(|&(u, r)| (&self.users[u], &self.courses[r]))
            .collect();
        env.api.enroll_all(&refs, env.setup_concurrency).await
    }

    pub fn user_index(&self, socket: usize) -> usize {
        socket % self.users.len()
    }

    pub fn room_index(&self, socket: usize) -> usize {
        socket % self.courses.len()
    }

    pub fn user(&self, socket: usize) -> &Account {
        &self.users[self.user_index(socket)]
    }

    pub fn room(&self, socket: usize) -> &Course {
        &self.courses[self.room_index(socket)]
    }
}

/// A socket to open: whose token, and what to join once connected.
pub struct Open {
    pub token: String,
    pub join_event: &'static str,
    pub join_data: String,
}

/// Opens and joins every socket, `concurrency` at a time, in order. Setup is not measured,
/// so a socket that fails is tried again twice (a busy machine drops the odd handshake);
/// a third failure ends the setup.
pub async fn open_all(
    connector: &Connector,
    opens: Vec<Open>,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, Conn)>> {
    stream::iter(opens)
        .map(|open| async move {
            let mut attempt = 1;
            loop {
                match open_one(connector, &open).await {
                    Ok(opened) => return Ok(opened),
                    Err(error) if attempt >= 3 => {
                        return Err(error.context(format!("{attempt} attempts")));
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        attempt += 1;
                    }
                }
            }
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Connects, authenticates and joins.
pub async fn open_one(connector: &Connector, open: &Open) -> anyhow::Result<(String, Conn)> {
    let (sid, mut conn) = connector.connect(&open.token).await?;
    let ack = conn
        .request(0, open.join_event, &open.join_data, JOIN_WAIT)
        .await?;
    anyhow::ensure!(ack["ok"] == true, "{} refused: {ack}", open.join_event);
    Ok((sid, conn))
}

/// `{"roomId": room}`.
pub fn room_payload(room: &str) -> String {
    json!({ "roomId": room }).to_string()
}
