//! What plugin operations cost while the chat slot serves:
//!
//! 1. installing a chain, from `prepare` to the first call the new version answers, for a
//!    module compiled on the spot and for one whose compiled code is still in memory (a
//!    rollback);
//! 2. `moderate_blocking` from one and two threads while another thread swaps between two
//!    versions (every 10 ms, or back to back), against the same without swapping;
//! 3. the enforced path with and without a shadow candidate, and how many shadow calls
//!    were compared or dropped;
//! 4. the async path (`moderate().await`, a hop to tokio's blocking pool) against
//!    `moderate_blocking` on the calling worker.
//!
//! A plain program with its own clock: the figures are percentiles of single operations
//! under concurrent load, which criterion's per-iteration means do not give. `cargo bench`
//! passes `--bench` and gets the full measurement (about a minute); without it (`cargo test
//! --benches`) every scenario runs briefly, as a check that none fails. Arguments without
//! `--` pick parts by name: `install`, `swap`, `shadow`, `async`.
//!
//! Latencies are wall clock. The threads that measure are pinned, the first to the last
//! allowed core and a second caller to the one before it; swapper, shadow runner, epoch
//! ticker and tokio threads are left to the scheduler. "CPU/call" is the callers' own
//! thread CPU time per call, which preemption by other processes does not inflate.
//! Every failed or unrecognised answer is counted in its row and fails the run at the end.

use std::collections::HashSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use lyceum_plugin_runtime::{
    Activation, Builtin, ChainSpec, ModerationDecision, ModerationInput, PluginSource, PluginSpec,
    PluginsConfig, PolicyContext, PolicyEngine, Role, Slot, fixtures,
};
use serde_json::json;

/// The same 200 bytes as the `policy` bench: a link and words to mask, so every rule of
/// the chat plugin does work.
const MESSAGE: &str = "Hi all! For tomorrow's lab, read chapter 4 and bring your notes. The slides are at \
                       https://example.edu/slides. Damn, this shit is hard, but we will get through it together. \
                       See you at nine in room B1!";

/// What the template refuses once installed: proof that the new chain serves.
const BLOCKED: &str = "buy followers";

/// How long and how often each scenario runs.
struct Plan {
    window: Duration,
    repeats: usize,
    installs: usize,
    swap_every: Duration,
}

impl Plan {
    fn full() -> Self {
        Self {
            window: Duration::from_secs(2),
            repeats: 3,
            installs: 20,
            swap_every: Duration::from_millis(10),
        }
    }

    fn smoke() -> Self {
        Self {
            window: Duration::from_millis(150),
            repeats: 1,
            installs: 2,
            swap_every: Duration::from_millis(10),
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { Plan::full() } else { Plan::smoke() };
    let cores = Cores::allowed();
    println!(
        "plugin operations: {} allowed cores {:?}, load average {}",
        if full {
            "full run,"
        } else {
            "smoke run (no --bench),"
        },
        cores.0,
        load_average()
    );

    // Like criterion's filter: `cargo bench --bench operations -- shadow` runs one part.
    let filters: Vec<_> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |part: &str| filters.is_empty() || filters.iter().any(|f| part.contains(f));

    let engine = build_engine();
    let mut errors = Vec::new();
    if wanted("install") {
        install(&engine, &plan, &cores);
    }
    if wanted("swap") {
        swapping(&engine, &plan, &cores, &mut errors);
    }
    if wanted("shadow") {
        shadow(&engine, &plan, &cores, &mut errors);
    }
    if wanted("async") {
        async_path(&engine, &plan, &mut errors);
    }

    println!("\nload average at the end {}", load_average());
    assert!(
        errors.is_empty(),
        "{} calls failed or were answered by neither version; first: {}",
        errors.len(),
        errors[0]
    );
}

/// Two configurations of the builtin chat plugin, same module, same work per call: each
/// masks one of the two rude words of [`MESSAGE`], so every answer names its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    A,
    B,
}

impl Version {
    fn other(self) -> Self {
        match self {
            Version::A => Version::B,
            Version::B => Version::A,
        }
    }

    fn plugin(self) -> PluginSpec {
        let word = match self {
            Version::A => "damn",
            Version::B => "shit",
        };
        PluginSpec::new(PluginSource::Builtin(Builtin::ChatModeration)).with_config(json!({
            // Counted on every call (the store is hit) but never reached.
            "rate_limit": { "messages": 1_000_000_000_000u64, "window_seconds": 10 },
            "lists": [{ "name": "profanity", "action": "mask", "words": [word] }],
        }))
    }

    fn chain(self) -> ChainSpec {
        ChainSpec {
            plugins: vec![self.plugin()],
            ..ChainSpec::default()
        }
    }

    fn answered(decision: &ModerationDecision) -> Option<Self> {
        match decision {
            ModerationDecision::Allow {
                content: Some(text),
                ..
            } if text.contains("****, this shit") => Some(Version::A),
            ModerationDecision::Allow {
                content: Some(text),
                ..
            } if text.contains("Damn, this ****") => Some(Version::B),
            _ => None,
        }
    }
}

/// The plugin template, which allows [`MESSAGE`] and refuses [`BLOCKED`].
fn template() -> ChainSpec {
    ChainSpec {
        plugins: vec![
            PluginSpec::new(PluginSource::File(fixtures::TEMPLATE.into()))
                .with_name("template")
                .with_config(json!({ "blocked": [BLOCKED] })),
        ],
        ..ChainSpec::default()
    }
}

/// Default engine settings (pool of 8, 256 instances), no disk cache, version A in chat.
fn build_engine() -> PolicyEngine {
    let mut config = PluginsConfig::default();
    config.chat.plugins = Some(Version::A.chain().plugins);
    PolicyEngine::builder(config).build().expect("engine")
}

fn activate(engine: &PolicyEngine, chain: &ChainSpec) {
    let prepared = engine.prepare(Slot::Chat, chain).expect("prepare");
    engine.activate(prepared, Activation::unrecorded());
}

fn ctx(actor: &str) -> PolicyContext {
    let mut ctx = PolicyContext::new("bench", actor, Role::Student);
    // A fixed instant keeps the rate-limit counter in one window.
    ctx.at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    ctx
}

// ---------------------------------------------------------------------------------------
// 1. Install: prepare + activate + first call.

struct Install {
    prepare: Duration,
    activate: Duration,
    total: Duration,
}

/// One install of the template over version A, timed until the template answers.
/// `compiled`: whether its compiled code is still in memory, as for a rollback.
fn install_once(engine: &PolicyEngine, compiled: bool) -> Install {
    activate(engine, &Version::A.chain());
    if !compiled {
        // Forgets compiled code of every module that does not serve now: the template's.
        engine.retain_compiled(&HashSet::new());
    }
    let blocked = ModerationInput::send("room-1", format!("{BLOCKED} here"));
    let ctx = ctx("installer");

    let started = Instant::now();
    let prepared = engine.prepare(Slot::Chat, &template()).expect("prepare");
    let prepared_at = Instant::now();
    engine.activate(prepared, Activation::unrecorded());
    let activated_at = Instant::now();
    let answer = engine.moderate_blocking(&ctx, &blocked);
    let answered_at = Instant::now();

    assert!(
        matches!(&answer, Ok(ModerationDecision::Reject(r)) if r.code == "blocked_phrase"),
        "the template serves after activation: {answer:?}"
    );
    let precompiled = engine
        .plugins()
        .into_iter()
        .find(|p| p.slot == Slot::Chat)
        .expect("a chat plugin")
        .precompiled;
    assert_eq!(precompiled, compiled, "compiled code taken from memory");
    Install {
        prepare: prepared_at - started,
        activate: activated_at - prepared_at,
        total: answered_at - started,
    }
}

fn install(engine: &PolicyEngine, plan: &Plan, cores: &Cores) {
    println!(
        "\n1. Install the template over the builtin chat plugin, until it answers \
         ({} runs each, thread pinned)",
        plan.installs
    );
    println!(
        "{:<34} {:>12} {:>12} {:>13} {:>13} {:>13}",
        "compiled code", "prepare p50", "prepare p95", "activate p50", "total p50", "total p95"
    );
    for compiled in [false, true] {
        let runs = cores.run_pinned(0, || {
            install_once(engine, compiled); // warm-up
            (0..plan.installs)
                .map(|_| install_once(engine, compiled))
                .collect::<Vec<_>>()
        });
        let prepare = Percentiles::of(runs.iter().map(|r| r.prepare));
        let activate = Percentiles::of(runs.iter().map(|r| r.activate));
        let total = Percentiles::of(runs.iter().map(|r| r.total));
        println!(
            "{:<34} {:>12} {:>12} {:>13} {:>13} {:>13}",
            if compiled {
                "in memory (rollback)"
            } else {
                "none: checks + compile"
            },
            ms(prepare.p50),
            ms(prepare.p95),
            us(activate.p50),
            ms(total.p50),
            ms(total.p95)
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Calls while another thread swaps versions.

#[derive(Clone, Copy)]
enum Swap {
    None,
    Every(Duration),
    BackToBack,
}

impl Swap {
    fn label(self) -> String {
        match self {
            Swap::None => "none".into(),
            Swap::Every(d) => format!("every {} ms", d.as_millis()),
            Swap::BackToBack => "back to back".into(),
        }
    }
}

/// One caller's account of a window.
#[derive(Default)]
struct Calls {
    latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
    by_version: [u64; 2],
}

/// Calls `moderate_blocking` until `stop`, timing each call. Failures and answers from
/// neither version go to `errors`.
fn call_until(
    engine: &PolicyEngine,
    actor: &str,
    stop: &AtomicBool,
    errors: &mut Vec<String>,
) -> Calls {
    let ctx = ctx(actor);
    let input = ModerationInput::send("room-1", MESSAGE);
    let mut calls = Calls {
        latencies: Vec::with_capacity(1 << 20),
        ..Calls::default()
    };
    let (started, cpu) = (Instant::now(), thread_cpu());
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let answer = engine.moderate_blocking(&ctx, &input);
        calls.latencies.push(asked.elapsed());
        match answer.as_ref().ok().and_then(Version::answered) {
            Some(Version::A) => calls.by_version[0] += 1,
            Some(Version::B) => calls.by_version[1] += 1,
            None => errors.push(format!("{answer:?}")),
        }
    }
    calls.elapsed = started.elapsed();
    calls.cpu = thread_cpu() - cpu;
    calls
}

/// Swaps between the two versions until `stop`, paced or not; returns each swap's time.
fn swap_until(engine: &PolicyEngine, swap: Swap, stop: &AtomicBool) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut next = Version::B;
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        activate(engine, &next.chain());
        times.push(started.elapsed());
        next = next.other();
        if let Swap::Every(period) = swap {
            due += period;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    times
}

struct Window {
    calls: u64,
    calls_per_s: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_call: Duration,
    by_version: [u64; 2],
    swaps_per_s: f64,
    swap_p50: Duration,
}

fn swap_window(
    engine: &PolicyEngine,
    threads: usize,
    swap: Swap,
    plan: &Plan,
    cores: &Cores,
    errors: &mut Vec<String>,
) -> Window {
    activate(engine, &Version::A.chain());
    let stop = AtomicBool::new(false);
    let start = Barrier::new(threads + 2);
    let (callers, swaps) = std::thread::scope(|s| {
        let callers: Vec<_> = (0..threads)
            .map(|i| {
                let (stop, start) = (&stop, &start);
                s.spawn(move || {
                    cores.pin(i);
                    let mut errors = Vec::new();
                    start.wait();
                    let calls = call_until(engine, &format!("student-{i}"), stop, &mut errors);
                    (calls, errors)
                })
            })
            .collect();
        let swapper = s.spawn(|| {
            start.wait();
            match swap {
                Swap::None => Vec::new(),
                swap => swap_until(engine, swap, &stop),
            }
        });
        start.wait();
        std::thread::sleep(plan.window);
        stop.store(true, Ordering::Relaxed);
        let callers: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        (callers, swapper.join().unwrap())
    });

    let mut latencies = Vec::new();
    let (mut calls_per_s, mut cpu, mut by_version) = (0.0, Duration::ZERO, [0, 0]);
    for (calls, caller_errors) in callers {
        calls_per_s += calls.latencies.len() as f64 / calls.elapsed.as_secs_f64();
        cpu += calls.cpu;
        by_version[0] += calls.by_version[0];
        by_version[1] += calls.by_version[1];
        latencies.extend(calls.latencies);
        errors.extend(caller_errors);
    }
    let count = latencies.len() as u64;
    let latency = Percentiles::of(latencies);
    let swap_time = Percentiles::of(swaps.iter().copied());
    Window {
        calls: count,
        calls_per_s,
        p50: latency.p50,
        p99: latency.p99,
        cpu_per_call: cpu / count.max(1) as u32,
        by_version,
        swaps_per_s: swaps.len() as f64 / plan.window.as_secs_f64(),
        swap_p50: swap_time.p50,
    }
}

fn swapping(engine: &PolicyEngine, plan: &Plan, cores: &Cores, errors: &mut Vec<String>) {
    println!(
        "\n2. moderate_blocking, builtin chat plugin, 200 B, while another thread swaps \
         versions (prepare + activate); medians of {} runs of {} s",
        plan.repeats,
        plan.window.as_secs_f64()
    );
    println!(
        "{:<8} {:<13} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8} {:>9} {:>15}",
        "threads",
        "swapping",
        "calls/s",
        "p50",
        "p99",
        "CPU/call",
        "errors",
        "swaps/s",
        "swap p50",
        "served by A / B"
    );
    for threads in [1, 2] {
        for swap in [Swap::None, Swap::Every(plan.swap_every), Swap::BackToBack] {
            let before = errors.len();
            let runs: Vec<_> = (0..plan.repeats)
                .map(|_| swap_window(engine, threads, swap, plan, cores, errors))
                .collect();
            let served: [u64; 2] = runs.iter().fold([0, 0], |acc, r| {
                [acc[0] + r.by_version[0], acc[1] + r.by_version[1]]
            });
            println!(
                "{:<8} {:<13} {:>9.0} {:>8} {:>8} {:>9} {:>7} {:>8.1} {:>9} {:>15}",
                threads,
                swap.label(),
                median(runs.iter().map(|r| r.calls_per_s)),
                us(median_duration(runs.iter().map(|r| r.p50))),
                us(median_duration(runs.iter().map(|r| r.p99))),
                us(median_duration(runs.iter().map(|r| r.cpu_per_call))),
                errors.len() - before,
                median(runs.iter().map(|r| r.swaps_per_s)),
                match swap {
                    Swap::None => "-".into(),
                    _ => ms(median_duration(runs.iter().map(|r| r.swap_p50))),
                },
                format!("{} / {}", served[0], served[1]),
            );
            assert!(runs.iter().all(|r| r.calls > 0), "every window made calls");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Shadow.

fn shadow(engine: &PolicyEngine, plan: &Plan, cores: &Cores, errors: &mut Vec<String>) {
    println!(
        "\n3. moderate_blocking from 1 pinned thread, as fast as it can, with and without the \
         template in shadow; medians of {} runs of {} s",
        plan.repeats,
        plan.window.as_secs_f64()
    );
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>9} {:>7} {:>10} {:>10} {:>11}",
        "shadow",
        "calls/s",
        "p50",
        "p99",
        "CPU/call",
        "errors",
        "compared",
        "dropped",
        "shadow p50"
    );
    activate(engine, &Version::A.chain());
    for with_shadow in [false, true] {
        let before = errors.len();
        let mut runs = Vec::new();
        let (mut compared, mut dropped, mut shadow_p50) = (0, 0, Vec::new());
        for _ in 0..plan.repeats {
            if with_shadow {
                let candidate = engine
                    .prepare_shadow(Slot::Chat, &template())
                    .expect("prepare shadow");
                engine.set_shadow(Slot::Chat, Some(candidate));
            }
            let window = swap_window(engine, 1, Swap::None, plan, cores, errors);
            if with_shadow {
                let status = shadow_settled(engine, window.calls);
                compared += status.calls;
                dropped += status.dropped;
                if let Some(plugin) = status.chain.first() {
                    shadow_p50.push(Duration::from_micros(plugin.stats.p50_us));
                }
                engine.set_shadow(Slot::Chat, None);
            }
            runs.push(window);
        }
        println!(
            "{:<10} {:>9.0} {:>8} {:>8} {:>9} {:>7} {:>10} {:>10} {:>11}",
            if with_shadow { "template" } else { "none" },
            median(runs.iter().map(|r| r.calls_per_s)),
            us(median_duration(runs.iter().map(|r| r.p50))),
            us(median_duration(runs.iter().map(|r| r.p99))),
            us(median_duration(runs.iter().map(|r| r.cpu_per_call))),
            errors.len() - before,
            if with_shadow {
                compared.to_string()
            } else {
                "-".into()
            },
            if with_shadow {
                dropped.to_string()
            } else {
                "-".into()
            },
            if with_shadow {
                format!("≤ {}", us(median_duration(shadow_p50.into_iter())))
            } else {
                "-".into()
            },
        );
    }
}

/// The shadow's status once every call was compared or dropped (or after 10 s).
fn shadow_settled(engine: &PolicyEngine, calls: u64) -> lyceum_plugin_runtime::ShadowStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = engine.status(Slot::Chat).shadow.expect("a shadow runs");
        if status.calls + status.dropped >= calls || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// 4. Async path.

fn async_path(engine: &PolicyEngine, plan: &Plan, errors: &mut Vec<String>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "\n4. One task on a multi-thread tokio runtime ({} workers), calls in sequence; \
         medians of {} runs of {} s",
        tokio_workers(&runtime),
        plan.repeats,
        plan.window.as_secs_f64()
    );
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>7}",
        "path", "calls/s", "p50", "p99", "errors"
    );
    activate(engine, &Version::A.chain());
    for on_pool in [false, true] {
        let before = errors.len();
        let runs: Vec<_> = (0..plan.repeats)
            .map(|_| {
                let (engine, window) = (engine.clone(), plan.window);
                // Spawned, so that the task runs on a worker as a request handler does.
                let task = runtime.spawn(async move { timed_task(&engine, window, on_pool).await });
                let (calls, task_errors) = runtime.block_on(task).expect("the task ends");
                errors.extend(task_errors);
                calls
            })
            .collect();
        let latency: Vec<_> = runs
            .iter()
            .map(|c| Percentiles::of(c.latencies.iter().copied()))
            .collect();
        println!(
            "{:<44} {:>9.0} {:>8} {:>8} {:>7}",
            if on_pool {
                "moderate().await (tokio blocking pool)"
            } else {
                "moderate_blocking on the async worker"
            },
            median(
                runs.iter()
                    .map(|c| c.latencies.len() as f64 / c.elapsed.as_secs_f64())
            ),
            us(median_duration(latency.iter().map(|p| p.p50))),
            us(median_duration(latency.iter().map(|p| p.p99))),
            errors.len() - before,
        );
    }
}

async fn timed_task(
    engine: &PolicyEngine,
    window: Duration,
    on_pool: bool,
) -> (Calls, Vec<String>) {
    let ctx = ctx("student-async");
    let input = ModerationInput::send("room-1", MESSAGE);
    let mut calls = Calls::default();
    let mut errors = Vec::new();
    let started = Instant::now();
    while started.elapsed() < window {
        let asked = Instant::now();
        let answer = if on_pool {
            engine.moderate(&ctx, &input).await
        } else {
            engine.moderate_blocking(&ctx, &input)
        };
        calls.latencies.push(asked.elapsed());
        if answer.as_ref().ok().and_then(Version::answered) != Some(Version::A) {
            errors.push(format!("{answer:?}"));
        }
    }
    calls.elapsed = started.elapsed();
    (calls, errors)
}

fn tokio_workers(runtime: &tokio::runtime::Runtime) -> usize {
    runtime.metrics().num_workers()
}

// ---------------------------------------------------------------------------------------
// Measuring.

struct Percentiles {
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    fn of(samples: impl IntoIterator<Item = Duration>) -> Self {
        let mut sorted: Vec<_> = samples.into_iter().collect();
        sorted.sort_unstable();
        let at = |p: f64| {
            let rank = (p * sorted.len() as f64).ceil() as usize;
            sorted
                .get(rank.saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<_> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn median_duration(values: impl Iterator<Item = Duration>) -> Duration {
    Percentiles::of(values).p50
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "no thread CPU clock");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How busy the machine was, since other work shares its cores.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The cores this process may run on, highest first: measuring thread `i` gets the i-th.
struct Cores(Vec<usize>);

impl Cores {
    #[cfg(target_os = "linux")]
    fn allowed() -> Self {
        // SAFETY: `cpu_set_t` is plain data; `sched_getaffinity` writes only into it.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Self(Vec::new());
            }
            set
        };
        let mut cores: Vec<_> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        cores.reverse();
        Self(cores)
    }

    #[cfg(not(target_os = "linux"))]
    fn allowed() -> Self {
        Self(Vec::new())
    }

    /// Pins the calling thread to the `i`-th core, if pinning is possible here.
    #[cfg(target_os = "linux")]
    fn pin(&self, i: usize) {
        let Some(&core) = self.0.get(i % self.0.len().max(1)) else {
            return;
        };
        // SAFETY: as above; `core` came from the allowed set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn pin(&self, _i: usize) {}

    /// Runs `f` on a new thread pinned to the `i`-th core.
    fn run_pinned<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.pin(i);
                f()
            })
            .join()
            .unwrap()
        })
    }
}
