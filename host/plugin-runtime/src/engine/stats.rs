//! Per-plugin counters since its revision was activated, and the circuit breaker that stops
//! calling a plugin that keeps failing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Outcome;
use crate::config::BreakerConfig;
use crate::error::FailureKind;
use crate::status::{CircuitState, PluginStats};

/// Latency buckets grow by √2: bucket `2l+1` ends at 2^l·√2 µs, bucket `2l+2` at 2^(l+1) µs,
/// so a quantile read from them is within 41% of the truth, from 1 µs to about 4 s.
const BUCKETS: usize = 46;

/// Lock-free counters: every call adds to them from whatever thread ran it.
pub(crate) struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    outcomes: [AtomicU64; Outcome::COUNT],
    latency: [AtomicU64; BUCKETS],
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stats {
    pub(crate) fn record(&self, outcome: Outcome, elapsed: Option<Duration>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Failed(FailureKind::Timeout) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(elapsed) = elapsed {
            let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            self.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, circuit: CircuitState) -> PluginStats {
        let verdicts = Outcome::ALL
            .into_iter()
            .filter_map(|outcome| {
                let n = self.outcomes[outcome.index()].load(Ordering::Relaxed);
                (n > 0).then(|| (outcome.as_str().to_owned(), n))
            })
            .collect();
        let latency: Vec<u64> = self
            .latency
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        PluginStats {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            verdicts,
            p50_us: quantile(&latency, 0.50),
            p99_us: quantile(&latency, 0.99),
            circuit,
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let log = 63 - micros.leading_zeros() as usize;
    // √2·2^log, compared in integers: micros² ≥ 2·4^log.
    let upper_half = u128::from(micros) * u128::from(micros) >= 2u128 << (2 * log);
    (2 * log + 1 + usize::from(upper_half)).min(BUCKETS - 1)
}

fn bucket_end(index: usize) -> u64 {
    if index == 0 {
        return 1;
    }
    let log = (index - 1) / 2;
    if index % 2 == 1 {
        ((1u64 << log) as f64 * std::f64::consts::SQRT_2).round() as u64
    } else {
        1u64 << (log + 1)
    }
}

/// The end of the bucket holding the `q` quantile; 0 when nothing was recorded.
fn quantile(buckets: &[u64], q: f64) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_end(index);
        }
    }
    bucket_end(buckets.len() - 1)
}

/// When a plugin last showed itself slow, so that calls from async code stop running it on
/// an async worker for a while (the engine's adaptive call mode).
pub(crate) struct Slowness {
    /// Milliseconds since [`epoch`] until which the plugin counts as slow; 0: not slow.
    until_ms: AtomicU64,
    /// Over-budget calls in a row: one alone is more likely a preempted thread than a slow
    /// plugin (the budget is wall-clock time).
    streak: std::sync::atomic::AtomicU32,
}

/// Over-budget calls in a row that make a plugin slow.
const SLOW_STREAK: u32 = 3;

/// How long a plugin that was slow once is kept off the async workers.
const SLOW_FOR: Duration = Duration::from_secs(60);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Slowness {
    pub(crate) fn new() -> Self {
        epoch();
        Self {
            until_ms: AtomicU64::new(0),
            streak: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Counts a call's time against the budget.
    pub(crate) fn timed(&self, over_budget: bool) {
        if !over_budget {
            if self.streak.load(Ordering::Relaxed) != 0 {
                self.streak.store(0, Ordering::Relaxed);
            }
        } else if self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_STREAK {
            self.mark();
        }
    }

    pub(crate) fn mark(&self) {
        let until = now_ms().saturating_add(SLOW_FOR.as_millis() as u64);
        self.until_ms.store(until.max(1), Ordering::Relaxed);
    }

    pub(crate) fn is_slow(&self) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }
}

/// Whether to call a plugin now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed circuit: call it.
    Call,
    /// Half-open: this call is the probe that decides whether the circuit closes.
    Probe,
    /// Open: do not call it; its failure mode applies.
    Skip,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant, backoff: Duration },
    HalfOpen { backoff: Duration },
}

/// Trips after `failures` consecutive failed calls; then the plugin is not called for a
/// backoff that doubles (up to a ceiling) each time a probe call fails again.
pub(crate) struct Breaker {
    config: BreakerConfig,
    phase: Mutex<Phase>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
        }
    }

    pub(crate) fn admit(&self) -> Admit {
        if self.config.failures == 0 {
            return Admit::Call;
        }
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match *phase {
            Phase::Closed { .. } => Admit::Call,
            Phase::Open { until, backoff } if Instant::now() >= until => {
                *phase = Phase::HalfOpen { backoff };
                Admit::Probe
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => Admit::Skip,
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.config.failures == 0 {
            return;
        }
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = Phase::Closed { failures: 0 };
    }

    /// A call admitted but never run (no instance slot was free): it says nothing about
    /// the plugin, so the circuit stays as it was, except that a probe gives its turn back.
    pub(crate) fn not_run(&self) {
        if self.config.failures == 0 {
            return;
        }
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::HalfOpen { backoff } = *phase {
            *phase = Phase::Open {
                until: Instant::now(),
                backoff,
            };
        }
    }

    /// Counts a failure; true when it opened the circuit.
    pub(crate) fn failed(&self) -> bool {
        if self.config.failures == 0 {
            return false;
        }
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let (open, backoff) = match *phase {
            Phase::Closed { failures } if failures + 1 >= self.config.failures => {
                (true, self.config.backoff)
            }
            Phase::Closed { failures } => {
                *phase = Phase::Closed {
                    failures: failures + 1,
                };
                (false, Duration::ZERO)
            }
            Phase::HalfOpen { backoff } => (true, (backoff * 2).min(self.config.max_backoff)),
            // A call admitted before the circuit opened finished late: nothing changes.
            Phase::Open { .. } => (false, Duration::ZERO),
        };
        if open {
            *phase = Phase::Open {
                until: Instant::now() + backoff,
                backoff,
            };
        }
        open
    }

    pub(crate) fn state(&self) -> CircuitState {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until, .. } if Instant::now() < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_the_value_within_a_factor_of_root_two() {
        for micros in [1u64, 2, 3, 5, 7, 10, 100, 999, 4096, 50_000, 3_000_000] {
            let end = bucket_end(bucket(micros));
            assert!(
                end >= micros,
                "{micros} µs landed in a bucket ending at {end}"
            );
            assert!(
                (end as f64) <= (micros as f64) * 1.5 + 1.0,
                "{micros} µs landed in a bucket ending at {end}"
            );
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_calls() {
        let stats = Stats::default();
        for _ in 0..99 {
            stats.record(Outcome::Allow, Some(Duration::from_micros(10)));
        }
        stats.record(Outcome::Reject, Some(Duration::from_millis(5)));
        let snapshot = stats.snapshot(CircuitState::Closed);
        assert_eq!(snapshot.calls, 100);
        assert!((10..=15).contains(&snapshot.p50_us), "{snapshot:?}");
        assert!(
            (10..=15).contains(&snapshot.p99_us),
            "one slow call in a hundred is the 100th percentile, not the 99th: {snapshot:?}"
        );
        stats.record(Outcome::Reject, Some(Duration::from_millis(5)));
        let snapshot = stats.snapshot(CircuitState::Closed);
        assert!(snapshot.p99_us >= 5000, "{snapshot:?}");
        assert_eq!(snapshot.verdicts["reject"], 2);
        assert_eq!(snapshot.verdicts["allow"], 99);
    }

    #[test]
    fn failures_count_as_errors_or_timeouts() {
        let stats = Stats::default();
        stats.record(Outcome::Failed(FailureKind::Timeout), None);
        stats.record(Outcome::Failed(FailureKind::Trap), None);
        stats.record(Outcome::Failed(FailureKind::CircuitOpen), None);
        let snapshot = stats.snapshot(CircuitState::Open);
        assert_eq!(
            (snapshot.calls, snapshot.errors, snapshot.timeouts),
            (3, 2, 1)
        );
    }

    fn breaker(failures: u32, backoff_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failures,
            backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_millis(backoff_ms * 4),
        })
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_only() {
        let b = breaker(3, 10_000);
        assert!(!b.failed());
        assert!(!b.failed());
        b.succeeded();
        assert!(!b.failed());
        assert!(!b.failed());
        assert_eq!(b.admit(), Admit::Call);
        assert!(b.failed(), "the third failure in a row opens it");
        assert_eq!(b.admit(), Admit::Skip);
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn after_the_backoff_one_probe_decides() {
        let b = breaker(1, 20);
        assert!(b.failed());
        assert_eq!(b.admit(), Admit::Skip);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::Skip, "one probe at a time");
        assert!(b.failed(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            b.admit(),
            Admit::Skip,
            "the backoff doubled to 40 ms after the failed probe"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.admit(), Admit::Probe);
        b.succeeded();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.admit(), Admit::Call);
    }

    #[test]
    fn a_call_that_never_ran_neither_opens_nor_closes_the_circuit() {
        let b = breaker(2, 20);
        assert!(!b.failed());
        b.not_run();
        assert!(b.failed(), "the earlier failure still counts");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admit::Probe);
        b.not_run();
        assert_eq!(
            b.admit(),
            Admit::Probe,
            "the probe that never ran gave its turn back"
        );
        b.succeeded();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn zero_failures_disables_the_breaker() {
        let b = breaker(0, 10);
        for _ in 0..10 {
            assert!(!b.failed());
        }
        assert_eq!(b.admit(), Admit::Call);
    }
}
