//! The server under load: a `lyceum serve` the generator starts itself (pinned to its own
//! core, in a fresh temporary directory, optionally on a fresh PostgreSQL schema) or one
//! already running on a loopback address. Also what the kernel says about a process: CPU
//! time and memory from `/proc`, the generator's own CPU from `getrusage`, file-descriptor
//! limits and CPU affinity.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};

/// How long a spawned server may take to be ready, `/ready` answering 200: it answers at once,
/// but its policy plugins compile beside it on a first start (the shared cache then spares
/// later starts), and until they are active a fail-closed slot refuses every message.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The chain of the chat slot: the default moderation plugin with its default word lists,
/// its own per-user rate limit off (`messages = 0`), so that load is measured rather than
/// refused. The file and signaling slots keep their builtin defaults.
const PLUGINS_TOML: &str = r#"
[[chat.plugins]]
source = "builtin:chat-moderation"

[chat.plugins.config]
rate_limit = { messages = 0, window_seconds = 10, exempt_roles = [] }
"#;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    pub binary: PathBuf,
    pub database: Database,
    /// Core to pin the server to; `None` leaves it unpinned.
    pub core: Option<usize>,
    /// Cheap password hashing (every scenario but `signup`, which measures the default).
    pub cheap_hashing: bool,
    /// `KEY=VALUE` pairs, applied last.
    pub env: Vec<(String, String)>,
    /// Descriptors the server needs (sockets plus its own files).
    pub nofile: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    /// A PostgreSQL URL; the run gets a fresh schema in it, dropped afterwards.
    Postgres(String),
}

/// The server a run talks to.
pub struct Server {
    pub addr: SocketAddr,
    /// For `/proc` readings; `None` when attached without `--server-pid`.
    pub pid: Option<u32>,
    spawned: Option<Spawned>,
}

struct Spawned {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    pg: Option<(String, String)>,
}

impl Server {
    /// A server already running at `url` (loopback only).
    pub fn attach(url: &str, pid: Option<u32>) -> anyhow::Result<Server> {
        let addr = loopback_addr(url)?;
        if let Some(pid) = pid {
            ensure!(
                Path::new(&format!("/proc/{pid}/stat")).exists(),
                "--server-pid {pid}: no such process"
            );
        }
        Ok(Server {
            addr,
            pid,
            spawned: None,
        })
    }

    /// Starts `lyceum serve` as `spec` says and waits until `/ready` answers 200.
    pub async fn spawn(spec: &SpawnSpec, http: &reqwest::Client) -> anyhow::Result<Server> {
        ensure!(
            spec.binary.is_file(),
            "server binary {} not found (build it with `cargo build --release -p lyceum`)",
            spec.binary.display()
        );
        // The server runs in its own directory: a relative path would name nothing there.
        let binary = spec
            .binary
            .canonicalize()
            .with_context(|| format!("{}", spec.binary.display()))?;
        let dir = std::env::temp_dir().join(format!(
            "lyceum-bench-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // From here on, dropping the value cleans the directory and the schema up.
        let mut spawned = Spawned {
            child: None,
            dir: dir.clone(),
            log: dir.join("server.log"),
            pg: None,
        };
        let plugins = dir.join("plugins.toml");
        std::fs::write(&plugins, PLUGINS_TOML)?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));

        let database_url = match &spec.database {
            Database::Sqlite => None,
            Database::Postgres(base) => {
                let schema = format!("lyceum_bench_{}_{}", std::process::id(), unique_suffix());
                psql(base, &format!("CREATE SCHEMA {schema}"))?;
                spawned.pg = Some((base.clone(), schema.clone()));
                Some(with_search_path(base, &schema))
            }
        };

        let mut command = match spec.core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        // Its own process group: a Ctrl-C at the terminal reaches the generator alone, which
        // then stops the server in order (SIGTERM to the generator does the same).
        command.arg("serve").current_dir(&dir).process_group(0);
        // Only what the run sets: nothing of the caller's LYCEUM_* configuration leaks in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LYCEUM_") {
                command.env_remove(key);
            }
        }
        let mut env: Vec<(String, String)> = vec![
            ("LYCEUM_BIND".into(), addr.to_string()),
            ("LYCEUM_DATA_DIR".into(), path_str(&dir.join("data"))),
            ("LYCEUM_UPLOAD_DIR".into(), path_str(&dir.join("uploads"))),
            ("LYCEUM_PLUGINS_CONFIG".into(), path_str(&plugins)),
            // Shared between runs: the plugins compile once, not once per server.
            (
                "LYCEUM_PLUGIN_CACHE_DIR".into(),
                path_str(&std::env::temp_dir().join("lyceum-bench-plugin-cache")),
            ),
            ("LYCEUM_LOG".into(), "warn".into()),
            ("NO_COLOR".into(), "1".into()),
            // Per-user and per-socket limits out of the way: the load is measured, not refused.
            ("LYCEUM_CHAT_RATE_PER_SECOND".into(), "1000000".into()),
            ("LYCEUM_CHAT_RATE_BURST".into(), "1000000".into()),
            ("LYCEUM_SIGNAL_RATE_PER_SECOND".into(), "1000000".into()),
            ("LYCEUM_SIGNAL_RATE_BURST".into(), "1000000".into()),
            // Load comes from a few addresses, and may send faster than a person would.
            ("LYCEUM_SOCKET_MAX_PER_USER".into(), "1000000".into()),
            ("LYCEUM_SOCKET_MAX_PER_ADDRESS".into(), "1000000".into()),
            (
                "LYCEUM_SOCKET_EVENT_RATE_PER_SECOND".into(),
                "1000000".into(),
            ),
            ("LYCEUM_SOCKET_EVENT_BURST".into(), "1000000".into()),
            // Long runs connect sockets well after their users signed up.
            ("LYCEUM_ACCESS_TOKEN_TTL".into(), "21600".into()),
            // Uploads of any size and count the run asks for.
            ("LYCEUM_UPLOAD_MAX_VIDEOS".into(), (1u64 << 40).to_string()),
            ("LYCEUM_UPLOAD_USER_QUOTA".into(), (1u64 << 42).to_string()),
        ];
        if spec.cheap_hashing {
            env.push(("LYCEUM_ARGON2_MEMORY_KIB".into(), "8192".into()));
            env.push(("LYCEUM_ARGON2_ITERATIONS".into(), "1".into()));
        }
        if let Some(url) = database_url {
            env.push(("LYCEUM_DATABASE_URL".into(), url));
        }
        env.extend(spec.env.iter().cloned());
        for (key, value) in &env {
            command.env(key, value);
        }
        let log = File::create(&spawned.log)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let nofile = spec.nofile;
        // SAFETY: only setrlimit and prctl, both async-signal-safe, run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                // Best effort: the server reports its own failures to accept.
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                // A generator killed outright (SIGKILL) takes its server along rather than
                // leaving it running in its own process group. The signal follows the
                // forking thread, which is the main thread: servers are started from the
                // runtime's main future, never from a spawned task.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = spawned.child.insert(
            command
                .spawn()
                .with_context(|| format!("starting {}", spec.binary.display()))?,
        );
        let pid = child.id();

        let started = Instant::now();
        let ready = format!("http://{addr}/ready");
        loop {
            if let Some(status) = spawned
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the server exited with {status} before it was ready; its log:\n{}",
                    tail(&spawned.log, 40)
                );
            }
            if let Ok(reply) = http.get(&ready).send().await
                && reply.status().is_success()
            {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the server was not ready within {START_TIMEOUT:?}; its log:\n{}",
                    tail(&spawned.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server {
            addr,
            pid: Some(pid),
            spawned: Some(spawned),
        })
    }

    /// The end of the spawned server's log (empty when attached).
    pub fn log_tail(&self, lines: usize) -> String {
        self.spawned
            .as_ref()
            .map(|s| tail(&s.log, lines))
            .unwrap_or_default()
    }

    /// Stops a spawned server (SIGTERM, then SIGKILL after 5 s) and removes its directory
    /// and schema; leaves an attached one alone.
    pub fn stop(mut self) {
        if let Some(spawned) = self.spawned.take() {
            drop(spawned);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((base, schema)) = self.pg.take()
            && let Err(error) = psql(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        {
            eprintln!("warning: could not drop schema {schema}: {error:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The socket address of a loopback `http://` URL; anything else is refused, so that load
/// can only ever go to this machine.
pub fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must start with http:// (got {url})"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr: SocketAddr = authority.parse().map_err(|_| {
        anyhow!(
            "--url must name an IP literal and a port, such as http://127.0.0.1:3000 (got {url})"
        )
    })?;
    let loopback = match addr.ip() {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    ensure!(
        loopback,
        "--url {url}: only loopback servers (127.0.0.0/8, ::1) may be loaded"
    );
    Ok(addr)
}

fn free_port() -> anyhow::Result<u16> {
    // The port is free when we let go of it; the server binds it a moment later.
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `base` with its `search_path` set to `schema` (a libpq `options` parameter).
pub fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (needed to create and drop the run's schema)")?;
    ensure!(
        output.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// CPU time and memory of a process at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Reads `/proc/<pid>/stat` (utime + stime) and `/proc/<pid>/status` (VmRSS, VmHWM).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_seconds: cpu_ticks(&stat)? as f64 / clock_ticks(),
        rss_kib: status_kib(&status, "VmRSS")?,
        hwm_kib: status_kib(&status, "VmHWM")?,
    })
}

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
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

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Lowers a process's peak RSS (VmHWM) to its current RSS, so that a later reading is the
/// peak of the measured window (`clear_refs` mode 5, Linux 4.0+); false when not allowed.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The cores whose use is watched for other processes: the generator's and the spawned
/// server's, set once when both are pinned.
pub static WATCHED_CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// Busy time of `cores` since boot, in seconds, from `/proc/stat`: every process's user,
/// system and interrupt time on them (idle, I/O wait and hypervisor steal left out).
pub fn cores_busy_seconds(cores: &[usize]) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_ticks(&stat, cores).map(|ticks| ticks as f64 / clock_ticks())
}

/// The busy ticks of `cores` in a `/proc/stat` text.
pub fn busy_ticks(stat: &str, cores: &[usize]) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cores.contains(&cpu) {
            continue;
        }
        let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal …
        let busy = [0, 1, 2, 5, 6]
            .iter()
            .filter_map(|&i| ticks.get(i))
            .sum::<u64>();
        total += busy;
        found += 1;
    }
    (found == cores.len()).then_some(total)
}

/// This process's CPU time (user + system, all threads), in seconds.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Raises this process's descriptor limit to `want` (or as far as allowed), returning the
/// soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with valid pointers.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let target = want.max(limit.rlim_max);
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: target,
        };
        // Above the hard limit needs privilege; otherwise settle for the hard limit.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return target;
        }
        let at_hard = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &at_hard) == 0 {
            limit.rlim_max
        } else {
            limit.rlim_cur
        }
    }
}

/// Parses a CPU list such as `0`, `0,2` or `0-3`.
pub fn parse_cpu_list(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
                ensure!(a <= b, "CPU range {part} runs backwards");
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse()?),
        }
    }
    ensure!(!cpus.is_empty(), "empty CPU list {text:?}");
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Pins the calling thread, and every thread it creates afterwards, to `cpus`.
pub fn pin_to(cpus: &[usize]) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within it for the indices
    // checked against its capacity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            ensure!(
                cpu < libc::CPU_SETSIZE as usize,
                "CPU {cpu} is beyond what the affinity mask holds"
            );
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({cpus:?}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_after_an_awkward_command_name() {
        let stat =
            "4242 (ly ceum) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn sums_busy_ticks_of_the_named_cores() {
        let stat = "cpu  100 0 50 1000 5 0 0 0 0 0\n\
                    cpu0 10 1 20 500 3 4 5 6 0 0\n\
                    cpu1 90 0 30 500 2 0 1 0 0 0\n\
                    intr 12345\n";
        assert_eq!(busy_ticks(stat, &[0]), Some(10 + 1 + 20 + 4 + 5));
        assert_eq!(busy_ticks(stat, &[0, 1]), Some(40 + 121));
        assert_eq!(busy_ticks(stat, &[2]), None);
    }

    #[test]
    fn reads_memory_lines() {
        let status = "Name:\tlyceum\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn accepts_only_loopback_urls() {
        assert_eq!(
            loopback_addr("http://127.0.0.1:3000").unwrap(),
            "127.0.0.1:3000".parse().unwrap()
        );
        assert!(loopback_addr("http://127.1.2.3:80/api").is_ok());
        assert!(loopback_addr("http://[::1]:3000").is_ok());
        assert!(loopback_addr("http://10.0.0.1:3000").is_err());
        assert!(loopback_addr("http://localhost:3000").is_err());
        assert!(loopback_addr("https://127.0.0.1:3000").is_err());
        assert!(loopback_addr("http://[::2]:3000").is_err());
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("3,0-2,2").unwrap(), vec![0, 1, 2, 3]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn search_path_joins_the_query() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "s1"),
            "postgres://u@h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }
}
