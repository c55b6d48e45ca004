//! `lyceum-bench`: a load generator for a Lyceum server running in its own process.
//!
//! The in-process benchmarks share their process, and so their cores, with the server;
//! this one measures capacity the way a deployment sees it: the server pinned to one core,
//! the generator on others, talking HTTP and Socket.IO over loopback, with the server's CPU
//! time and memory read from `/proc`. See `bench/README.md` for the scenarios and figures.
//!
//! # Layout
//! - [`protocol`]: Engine.IO / Socket.IO text framing, parsed without building JSON trees.
//! - [`conn`]: one WebSocket connection driven by one task, bound to a chosen source address.
//! - [`traffic`]: the message engine (tags, pacing, acknowledgements, delivery accounting).
//! - [`scenario`]: `fanout`/`ingest`, `idle`, `signaling`, `upload`, `signup`, `soak`, and what
//!   they share.
//! - [`alarm`]: the soak's alarm thresholds (PASS/FAIL) and its memory trend.
//! - [`server`]: starting or attaching to the server; `/proc`, rlimits, CPU affinity.
//! - [`api`]: provisioning over the REST API. [`stats`], [`bitset`], [`report`]: the numbers.

mod alarm;
mod api;
mod bitset;
mod conn;
mod protocol;
mod report;
mod scenario;
mod server;
mod stats;
mod traffic;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::{
    report::Report,
    scenario::{
        Env,
        chat::{FanoutArgs, IngestArgs},
        idle::IdleArgs,
        signaling::SignalingArgs,
        signup::SignupArgs,
        soak::SoakArgs,
        upload::UploadArgs,
    },
    server::{Database, Server, SpawnSpec},
};

/// Time allowed for provisioning and connecting on top of a scenario's own length, before
/// the run's hard deadline stops it.
const SETUP_ALLOWANCE: Duration = Duration::from_secs(900);

#[derive(Parser, Debug)]
#[command(
    name = "lyceum-bench",
    version,
    about = "Load generator for a Lyceum server in its own process (loopback only)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug)]
struct Common {
    /// Start this `lyceum` binary for every run, in a fresh temporary directory. The default
    /// is the `lyceum` beside this binary, else `target/release/lyceum`.
    #[arg(long, global = true, conflicts_with = "url")]
    spawn: Option<PathBuf>,
    /// Load an already running server instead (`http://127.0.0.1:PORT`; loopback only).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The running server's process id, for its CPU time and memory (with `--url`).
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Database of a spawned server: `sqlite`, or a `postgres://` URL in which each run gets
    /// a fresh schema, dropped afterwards.
    #[arg(long, global = true, default_value = "sqlite")]
    database: String,
    /// Core a spawned server is pinned to (`taskset -c`).
    #[arg(long, global = true, default_value_t = 1)]
    server_core: usize,
    /// Cores the generator pins itself to (`0`, `0,2`, `0-3`).
    #[arg(long, global = true, default_value = "0")]
    client_cores: String,
    /// Pin nothing: neither the server nor the generator.
    #[arg(long, global = true)]
    no_pin: bool,
    /// Tokio worker threads of the generator (default: one per client core).
    #[arg(long, global = true)]
    client_threads: Option<usize>,
    /// Extra configuration for a spawned server, applied last (repeatable).
    #[arg(long = "server-env", global = true, value_name = "KEY=VALUE", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// Runs of the scenario (a fresh server each, when spawning); medians are reported.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: usize,
    /// Write the JSON report here instead of standard output.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// REST requests in flight while provisioning.
    #[arg(long, global = true, default_value_t = 8)]
    setup_concurrency: usize,
    /// Sockets connecting and joining at once during setup.
    #[arg(long, global = true, default_value_t = 64)]
    connect_concurrency: usize,
    /// WebSocket read buffer per connection (K, M suffixes).
    #[arg(long, global = true, default_value = "16K", value_parser = parse_size)]
    read_buffer: u64,
    /// Hard limit of one run in seconds, setup included (default: the scenario's length
    /// plus 900 s).
    #[arg(long, global = true)]
    deadline: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Chat messages into course rooms, each delivered to every socket in the room.
    Fanout(FanoutArgs),
    /// One sending socket per room, rooms of one: persistence throughput.
    Ingest(IngestArgs),
    /// Many sockets connected, authenticated, joined and held: cost per connection.
    Idle(IdleArgs),
    /// Pairs of peers in live sessions relaying WebRTC signals to each other.
    Signaling(SignalingArgs),
    /// Multipart uploads to /api/v1/files/upload.
    Upload(UploadArgs),
    /// Registrations against the server's default password hashing.
    Signup(SignupArgs),
    /// Chat, signaling and uploads at once for minutes, judged against alarm thresholds.
    Soak(SoakArgs),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Ingest(_) => "ingest",
            Scenario::Idle(_) => "idle",
            Scenario::Signaling(_) => "signaling",
            Scenario::Upload(_) => "upload",
            Scenario::Signup(_) => "signup",
            Scenario::Soak(_) => "soak",
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        match self {
            Scenario::Fanout(a) => a.validate(),
            Scenario::Ingest(a) => a.as_fanout().validate(),
            Scenario::Idle(a) => a.validate(),
            Scenario::Signaling(a) => a.validate(),
            Scenario::Upload(a) => a.validate(),
            Scenario::Signup(a) => a.validate(),
            Scenario::Soak(a) => a.validate(),
        }
    }

    /// Sockets the scenario opens at once (for descriptor limits).
    fn sockets(&self) -> u64 {
        (match self {
            Scenario::Fanout(a) => a.clients,
            Scenario::Ingest(a) => a.rooms,
            Scenario::Idle(a) => a.sockets,
            Scenario::Signaling(a) => 2 * a.pairs,
            Scenario::Upload(a) => a.concurrency,
            Scenario::Signup(a) => a.concurrency,
            // Plus the uploads' HTTP connections, which overlap when the server is slow.
            Scenario::Soak(a) => a.connections() + 64,
        }) as u64
    }

    /// How long the scenario itself runs, setup excluded, as far as known in advance.
    fn length(&self) -> Duration {
        match self {
            Scenario::Fanout(a) => a.load.budget(),
            Scenario::Ingest(a) => a.load.budget(),
            Scenario::Signaling(a) => a.load.budget(),
            Scenario::Idle(a) => Duration::from_secs_f64(a.hold + 10.0),
            Scenario::Soak(a) => a.budget(),
            Scenario::Upload(_) | Scenario::Signup(_) => Duration::ZERO,
        }
    }

    fn params(&self) -> serde_json::Value {
        let args = match self {
            Scenario::Fanout(a) => serde_json::to_value(a),
            Scenario::Ingest(a) => serde_json::to_value(a),
            Scenario::Idle(a) => serde_json::to_value(a),
            Scenario::Signaling(a) => serde_json::to_value(a),
            Scenario::Upload(a) => serde_json::to_value(a),
            Scenario::Signup(a) => serde_json::to_value(a),
            Scenario::Soak(a) => serde_json::to_value(a),
        };
        args.unwrap_or_default()
    }

    async fn run(
        &self,
        env: &mut Env,
        spawned: bool,
    ) -> anyhow::Result<(report::Figures, serde_json::Value)> {
        match self {
            Scenario::Fanout(a) => scenario::chat::fanout(env, a).await,
            Scenario::Ingest(a) => scenario::chat::fanout(env, &a.as_fanout()).await,
            Scenario::Idle(a) => scenario::idle::idle(env, a).await,
            Scenario::Signaling(a) => scenario::signaling::signaling(env, a).await,
            Scenario::Upload(a) => scenario::upload::upload(env, a, spawned).await,
            Scenario::Signup(a) => scenario::signup::signup(env, a).await,
            Scenario::Soak(a) => scenario::soak::soak(env, a).await,
        }
    }
}

/// `KEY=VALUE`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// A byte count with an optional binary suffix: `512`, `16K`, `16KiB`, `4M`, `1G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512, 16K or 4M"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (K, M or G)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lyceum-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Where and how the server runs.
enum Target {
    Spawn(SpawnSpec),
    Attach { url: String, pid: Option<u32> },
}

fn start(cli: Cli) -> anyhow::Result<ExitCode> {
    cli.scenario.validate()?;
    let common = &cli.common;
    anyhow::ensure!(common.repeat >= 1, "--repeat must be at least 1");
    let mut warnings = Vec::new();

    let client_cores = server::parse_cpu_list(&common.client_cores)?;
    // Affinity is inherited: pinning before the runtime starts pins every worker thread.
    let cores = if common.no_pin {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        server::pin_to(&client_cores)?;
        client_cores.len()
    };
    let threads = common.client_threads.unwrap_or(cores).max(1);

    // Each socket is a descriptor in both processes; the rest (pools, files, epoll) is a
    // few dozen.
    let wanted_fds = cli.scenario.sockets() + 256;
    let fds = server::raise_nofile(wanted_fds);
    if fds < wanted_fds {
        warnings.push(format!(
            "the descriptor limit is {fds} (raising the hard limit needs CAP_SYS_RESOURCE): \
             sockets beyond about {} may fail with \"Too many open files\"",
            fds.saturating_sub(64)
        ));
    }

    let target = match &common.url {
        Some(url) => {
            server::loopback_addr(url)?;
            if common.database != "sqlite"
                || common.spawn.is_some()
                || !common.server_env.is_empty()
            {
                bail!("--database, --spawn and --server-env are for a spawned server, not --url");
            }
            if common.server_pid.is_none() {
                warnings.push(
                    "no --server-pid: the server's CPU time and memory are not reported".into(),
                );
            }
            Target::Attach {
                url: url.clone(),
                pid: common.server_pid,
            }
        }
        None => {
            anyhow::ensure!(common.server_pid.is_none(), "--server-pid goes with --url");
            let database = match common.database.as_str() {
                "sqlite" => Database::Sqlite,
                url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    Database::Postgres(url.to_owned())
                }
                other => bail!("--database must be sqlite or a postgres:// URL, not {other:?}"),
            };
            let pin = !common.no_pin;
            if pin {
                let mut watched = client_cores.clone();
                watched.push(common.server_core);
                watched.sort_unstable();
                watched.dedup();
                let _ = server::WATCHED_CORES.set(watched);
            }
            if pin && client_cores.contains(&common.server_core) {
                warnings.push(format!(
                    "the server's core {} is also one of the generator's ({}): they compete",
                    common.server_core, common.client_cores
                ));
            }
            Target::Spawn(SpawnSpec {
                binary: common.spawn.clone().map_or_else(default_binary, Ok)?,
                database,
                core: pin.then_some(common.server_core),
                cheap_hashing: !matches!(cli.scenario, Scenario::Signup(_)),
                env: common.server_env.clone(),
                nofile: fds.max(wanted_fds),
            })
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_all(&cli, target, cores, threads, warnings))?;
    let text = serde_json::to_string_pretty(&report.to_json())?;
    match &common.json {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    eprint!("{}", report.human());
    Ok(if report.errors.is_empty() && !report.alarm_failed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `lyceum` beside this binary (both build into the same `target/<profile>/`), else
/// `target/release/lyceum` under the working directory.
fn default_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("lyceum")))
        .filter(|p| p.is_file());
    let candidate = beside.unwrap_or_else(|| PathBuf::from("target/release/lyceum"));
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(anyhow!(
            "no server binary: build it with `cargo build --release -p lyceum -p lyceum-bench`, \
             or name one with --spawn, or load a running server with --url"
        ))
    }
}

async fn run_all(
    cli: &Cli,
    target: Target,
    cores: usize,
    threads: usize,
    warnings: Vec<String>,
) -> anyhow::Result<Report> {
    let common = &cli.common;
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()?;
    let (mode, setup_base) = match &target {
        Target::Spawn(spec) => (
            "spawn",
            json!({
                "binary": spec.binary,
                "database": match &spec.database { Database::Sqlite => "sqlite", Database::Postgres(_) => "postgres" },
                "server_core": spec.core,
                "default_password_hashing": !spec.cheap_hashing,
            }),
        ),
        Target::Attach { url, pid } => ("attach", json!({ "url": url, "server_pid": pid })),
    };
    let mut report = Report {
        scenario: cli.scenario.name().into(),
        params: cli.scenario.params(),
        setup: json!({
            "server": mode,
            "target": setup_base,
            "client_cores": if common.no_pin { json!(null) } else { json!(common.client_cores) },
            "client_threads": threads,
            "runs": [],
        }),
        runs: Vec::new(),
        warnings,
        errors: Vec::new(),
        alarms: Vec::new(),
    };
    let deadline = match common.deadline {
        Some(seconds) => Duration::from_secs_f64(seconds),
        None => cli.scenario.length() + SETUP_ALLOWANCE,
    };
    for run in 1..=common.repeat {
        let started = Instant::now();
        let server = match &target {
            Target::Spawn(spec) => Server::spawn(spec, &http).await,
            Target::Attach { url, pid } => Server::attach(url, *pid),
        };
        let server = match server {
            Ok(server) => server,
            Err(error) => {
                report.errors.push(format!("run {run}: {error:#}"));
                break;
            }
        };
        let mut env = Env {
            api: api::Api::new(http.clone(), server.addr),
            addr: server.addr,
            pid: server.pid,
            setup_concurrency: common.setup_concurrency,
            connect_concurrency: common.connect_concurrency,
            client_cores: cores,
            read_buffer: common.read_buffer as usize,
            warnings: Vec::new(),
            alarms: Vec::new(),
        };
        let spawned = matches!(target, Target::Spawn(_));
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(deadline, cli.scenario.run(&mut env, spawned)) => {
                outcome.unwrap_or_else(|_| Err(anyhow!("hard deadline of {deadline:?} reached")))
            }
            _ = interrupted() => Err(anyhow!("interrupted")),
        };
        let interrupted = outcome
            .as_ref()
            .is_err_and(|e| e.to_string() == "interrupted");
        report
            .warnings
            .extend(env.warnings.into_iter().map(|w| format!("run {run}: {w}")));
        report
            .alarms
            .extend(env.alarms.into_iter().map(|check| (run, check)));
        match outcome {
            Ok((figures, setup)) => {
                if let Some(runs) = report.setup["runs"].as_array_mut() {
                    runs.push(setup);
                }
                report.runs.push(figures);
            }
            Err(error) => {
                let tail = server.log_tail(20);
                let log = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; the server's log ends:\n{tail}")
                };
                report.errors.push(format!("run {run}: {error:#}{log}"));
            }
        }
        // Stopping waits for the process; off the runtime's threads.
        tokio::task::spawn_blocking(move || server.stop()).await?;
        eprintln!(
            "lyceum-bench: run {run} of {} done in {:.1} s",
            common.repeat,
            started.elapsed().as_secs_f64()
        );
        if interrupted {
            break;
        }
    }
    Ok(report)
}

/// Ctrl-C or SIGTERM (as `timeout` sends): the run stops and cleans up after itself.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(_) = async { term.as_mut()?.recv().await } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("16K"), Ok(16 * 1024));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn server_env_pairs() {
        assert_eq!(
            parse_env("LYCEUM_LOG=info"),
            Ok(("LYCEUM_LOG".into(), "info".into()))
        );
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn command_line_parses_each_scenario() {
        let cli = Cli::try_parse_from([
            "lyceum-bench",
            "fanout",
            "--clients",
            "4",
            "--rooms",
            "1",
            "--messages",
            "20",
            "--no-pin",
        ])
        .unwrap();
        assert!(cli.common.no_pin);
        match cli.scenario {
            Scenario::Fanout(a) => {
                assert_eq!((a.clients, a.senders(), a.load.messages), (4, 4, Some(20)));
            }
            other => panic!("parsed as {other:?}"),
        }
        for args in [
            vec![
                "lyceum-bench",
                "ingest",
                "--rooms",
                "3",
                "--max",
                "--in-flight",
                "2",
            ],
            vec![
                "lyceum-bench",
                "idle",
                "--sockets",
                "10",
                "--room-size",
                "5",
            ],
            vec![
                "lyceum-bench",
                "signaling",
                "--pairs",
                "2",
                "--kind",
                "offer",
            ],
            vec!["lyceum-bench", "upload", "--size", "1M", "--count", "2"],
            vec![
                "lyceum-bench",
                "soak",
                "--sockets",
                "40",
                "--rooms",
                "4",
                "--duration",
                "60",
                "--upload-size",
                "64K",
            ],
            vec![
                "lyceum-bench",
                "signup",
                "--count",
                "5",
                "--concurrency",
                "2",
            ],
        ] {
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            cli.scenario.validate().unwrap();
        }
        assert!(
            Cli::try_parse_from(["lyceum-bench", "fanout", "--url", "x", "--spawn", "y"]).is_err()
        );
        let too_few =
            Cli::try_parse_from(["lyceum-bench", "fanout", "--clients", "1", "--rooms", "2"])
                .unwrap();
        assert!(too_few.scenario.validate().is_err());
    }
}
