//! Running the message engine over a set of joined connections: the timeline (warm-up,
//! measured window, acknowledgements, drain), the meters, and the figures every message
//! scenario reports.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{sync::watch, time::Instant as TokioInstant};

use super::{Env, Meter, Usage};
use crate::{
    conn::Conn,
    report::{Figures, ratio},
    traffic::{self, Load, Plan, Role, Shared, Totals, Traffic},
};

/// How senders load the server, from the command line.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct LoadArgs {
    /// Aggregate sends per second over all senders (open loop: sends go out on schedule
    /// whatever the answers).
    #[arg(long, default_value_t = 100.0, conflicts_with = "max")]
    pub rate: f64,
    /// Closed loop instead: every sender sends as fast as acknowledgements allow, keeping
    /// `--in-flight` sends unanswered.
    #[arg(long)]
    pub max: bool,
    /// Unanswered sends per sender with `--max`.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured sending before the window, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// At most this many measured sends in all (the run ends sooner when they are done).
    #[arg(long)]
    pub messages: Option<u64>,
    /// How long a send may wait for its acknowledgement after the window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub ack_timeout: f64,
    /// How long deliveries may trail the last acknowledgement, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

impl LoadArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max || (self.rate.is_finite() && self.rate > 0.0),
            "--rate must be positive"
        );
        anyhow::ensure!(self.in_flight >= 1, "--in-flight must be at least 1");
        for (name, v) in [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--ack-timeout", self.ack_timeout),
            ("--drain", self.drain),
        ] {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "{name} must be a number of seconds"
            );
        }
        anyhow::ensure!(self.duration > 0.0, "--duration must be positive");
        Ok(())
    }

    /// The longest the engine runs, setup excluded.
    pub fn budget(&self) -> Duration {
        Duration::from_secs_f64(self.warmup + self.duration + self.ack_timeout + self.drain + 5.0)
    }

    /// Measured sends for sender `i` of `senders` under `--messages`.
    pub fn limit(&self, i: usize, senders: usize) -> Option<u64> {
        self.messages.map(|total| {
            let senders = senders as u64;
            total / senders + u64::from((i as u64) < total % senders)
        })
    }

    /// Open loop: sender `i`'s first-send delay, spreading senders over one interval.
    pub fn offset(&self, i: usize, senders: usize) -> Duration {
        match self.load(senders) {
            Load::Rate { interval } => interval.mul_f64(i as f64 / senders as f64),
            Load::Closed { .. } => Duration::ZERO,
        }
    }

    pub fn load(&self, senders: usize) -> Load {
        if self.max {
            Load::Closed {
                in_flight: self.in_flight,
            }
        } else {
            Load::Rate {
                interval: Duration::from_secs_f64(senders as f64 / self.rate),
            }
        }
    }
}

/// What a message run measured.
pub struct Measured {
    /// How late the meters started after the window opened: work done meanwhile is counted
    /// in the figures but not in the CPU times.
    pub late_meter: Duration,
    pub totals: Totals,
    pub shared: Arc<Shared>,
    pub usage: Usage,
    /// Measured window start to the last acknowledgement / delivery, in seconds.
    pub ack_window_s: f64,
    pub delivery_window_s: f64,
}

/// Runs the engine over `conns` (each with its role), then adds everything up against
/// `listens` (the streams each connection should hear).
pub async fn run(
    env: &Env,
    conns: Vec<Conn>,
    roles: Vec<Role>,
    listens: &[Vec<u32>],
    traffic: Traffic,
    args: &LoadArgs,
) -> anyhow::Result<Measured> {
    let senders = roles.iter().filter(|r| r.sender.is_some()).count();
    anyhow::ensure!(senders > 0, "no senders");
    let shared = Arc::new(Shared::default());
    shared.senders_left.store(senders, Ordering::Release);
    // A moment for every task to be polled once before the first send is due.
    let start = TokioInstant::now() + Duration::from_millis(100);
    let measure = start + Duration::from_secs_f64(args.warmup);
    let end = measure + Duration::from_secs_f64(args.duration);
    let plan = Plan {
        start,
        measure,
        end,
        ack_deadline: end + Duration::from_secs_f64(args.ack_timeout),
        load: args.load(senders),
    };
    let traffic = Arc::new(traffic);
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(roles)
        .map(|(conn, role)| {
            tokio::spawn(traffic::drive(
                conn,
                role,
                traffic.clone(),
                plan,
                shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    tokio::time::sleep_until(measure).await;
    let meter = Meter::start(env.pid);
    let late = TokioInstant::now().saturating_duration_since(measure);
    // Every sender finishes by the ack deadline; the margin covers a task busy sending.
    let all_done = async {
        loop {
            let notified = shared.senders_done.notified();
            if shared.senders_left.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout_at(plan.ack_deadline + Duration::from_secs(1), all_done).await;
    let drain_until = TokioInstant::now() + Duration::from_secs_f64(args.drain);
    while shared.delivered.load(Ordering::Relaxed) < shared.expected.load(Ordering::Relaxed)
        && TokioInstant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = meter.finish(env.client_cores);
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await?);
    }
    let totals = traffic::totals(&outcomes, listens);
    let measure_nanos = measure
        .into_std()
        .saturating_duration_since(traffic::base())
        .as_nanos() as u64;
    let window = |last: u64| {
        if last > measure_nanos {
            (last - measure_nanos) as f64 / 1e9
        } else {
            f64::NAN
        }
    };
    Ok(Measured {
        late_meter: late,
        totals,
        ack_window_s: window(shared.last_ack.load(Ordering::Relaxed)),
        delivery_window_s: window(shared.last_delivery.load(Ordering::Relaxed)),
        shared,
        usage,
    })
}

impl Measured {
    /// The figures every message scenario reports.
    pub fn write(&self, f: &mut Figures, open_loop: bool, warnings: &mut Vec<String>) {
        let t = &self.totals;
        f.count("sent", t.sent);
        f.count("acked", t.acked);
        f.count("refused", t.refused.values().sum());
        for (code, n) in &t.refused {
            f.count(format!("refused_{code}"), *n);
        }
        f.count("unanswered", t.unanswered);
        f.count("expected", t.expected);
        f.count("delivered", t.delivered);
        f.count("lost", t.lost);
        f.count("duplicated", t.duplicated);
        f.count("misdelivered", t.misdelivered);
        f.count("delivered_unacked", t.delivered_unacked);
        f.count("failed_connections", t.failed_connections);
        f.count("warmup_sent", t.warm_up_sent);
        f.latency("ack", &self.shared.ack_latency);
        f.latency("deliver", &self.shared.delivery_latency);
        if open_loop {
            f.set(
                "send_lag_p99_ms",
                self.shared
                    .send_lag
                    .percentile(99.0)
                    .map_or(f64::NAN, |n| n as f64 / 1e6),
            );
        }
        f.set("accepted_per_s", ratio(t.acked as f64, self.ack_window_s));
        f.set(
            "deliveries_per_s",
            ratio(t.delivered as f64, self.delivery_window_s),
        );
        self.usage.write(
            f,
            &[("delivery", t.delivered), ("accepted", t.acked)],
            warnings,
        );
        for (reason, n) in &t.failures {
            warnings.push(format!("{n} connection(s) ended early: {reason}"));
        }
        if t.lost > 0 || t.duplicated > 0 || t.misdelivered > 0 {
            warnings.push(format!(
                "deliveries do not add up: {} lost, {} duplicated, {} misdelivered",
                t.lost, t.duplicated, t.misdelivered
            ));
        }
        if self.late_meter > Duration::from_millis(50) {
            warnings.push(format!(
                "the meters started {:.0} ms into the window (the generator was not scheduled): \
                 CPU per delivery undercounts; was something else running on these cores?",
                self.late_meter.as_secs_f64() * 1e3
            ));
        }
        if t.unanswered > 0 {
            warnings.push(format!(
                "{} sends got no acknowledgement within the ack timeout",
                t.unanswered
            ));
        }
        if open_loop
            && let Some(lag) = self.shared.send_lag.percentile(99.0)
            && lag > 10_000_000
        {
            warnings.push(format!(
                "the generator fell behind its schedule (p99 send lag {:.1} ms): the offered \
                 rate was not what it asked for",
                lag as f64 / 1e6
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    #[test]
    fn message_limits_split_exactly() {
        let args = Cli::parse_from(["x", "--messages", "20"]).load;
        let limits: Vec<u64> = (0..3).map(|i| args.limit(i, 3).unwrap()).collect();
        assert_eq!(limits, vec![7, 7, 6]);
        assert_eq!(Cli::parse_from(["x"]).load.limit(0, 3), None);
    }

    #[test]
    fn open_loop_spreads_senders_over_one_interval() {
        let args = Cli::parse_from(["x", "--rate", "20"]).load;
        match args.load(4) {
            Load::Rate { interval } => assert_eq!(interval, Duration::from_millis(200)),
            Load::Closed { .. } => panic!("open loop expected"),
        }
        assert_eq!(args.offset(2, 4), Duration::from_millis(100));
        assert!(Cli::try_parse_from(["x", "--rate", "5", "--max"]).is_err());
        let closed = Cli::parse_from(["x", "--max", "--in-flight", "4"]).load;
        assert!(matches!(closed.load(4), Load::Closed { in_flight: 4 }));
        assert!(closed.validate().is_ok());
        assert!(
            Cli::parse_from(["x", "--rate", "0"])
                .load
                .validate()
                .is_err()
        );
    }
}
