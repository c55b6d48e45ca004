//! Alarm thresholds, as a load-test report states them: each one checked against a run's
//! figures and printed as a PASS or FAIL line (SKIP when the figure could not be measured,
//! such as the server's memory when attached without `--server-pid`). A FAIL makes the
//! generator exit with status 1. Also the least-squares trend the memory check reports.

use serde_json::{Value, json};

/// The limits, from the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Server errors (HTTP 5xx, transport failures, `INTERNAL`/`UNAVAILABLE` acks) plus
    /// timeouts (HTTP timeouts, unanswered socket events) stay under this percentage of
    /// requests.
    pub max_error_pct: f64,
    /// Every other failure (HTTP 4xx, other error acks, wrong upload answers) likewise.
    pub max_refused_pct: f64,
    /// Chat send → delivery p99 stays under this.
    pub max_chat_p99_ms: f64,
    /// Server RSS at the end of the window is at most this much above its start (after
    /// set-up and warm-up), as a percentage of the start.
    pub max_rss_growth_pct: f64,
}

/// What a run measured, as far as the alarms need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Measured requests: socket events sent and HTTP requests made.
    pub requests: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub refused: u64,
    pub chat_p99_ms: Option<f64>,
    /// Deliveries due (each acked chat message × its room's sockets; each acked signal once).
    pub chat_due: u64,
    pub chat_lost: u64,
    pub chat_duplicated: u64,
    pub signal_due: u64,
    pub signal_lost: u64,
    pub signal_duplicated: u64,
    /// Deliveries to a socket that should not have had them (another room, another peer).
    pub misdelivered: u64,
    /// Sockets the server closed, or that failed, during the run.
    pub dropped_connections: u64,
    pub rss_start_kib: Option<f64>,
    pub rss_end_kib: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not measured, so not judged.
    Skip,
}

/// One alarm's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// The measured value and the limit, for people.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, pass: Option<bool>, detail: String) -> Check {
        let status = match pass {
            Some(true) => Status::Pass,
            Some(false) => Status::Fail,
            None => Status::Skip,
        };
        Check {
            name,
            status,
            detail,
        }
    }

    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }

    /// `PASS name: detail`.
    pub fn line(&self) -> String {
        let word = match self.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        format!("{word} {}: {}", self.name, self.detail)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "status": match self.status {
                Status::Pass => "pass",
                Status::Fail => "fail",
                Status::Skip => "skip",
            },
            "detail": self.detail,
        })
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Checks every alarm, in a fixed order.
pub fn evaluate(o: &Observed, t: &Thresholds) -> Vec<Check> {
    let mut checks = Vec::new();

    let errors = o.server_errors + o.timeouts;
    let error_pct = pct(errors, o.requests);
    checks.push(Check::new(
        "errors",
        Some(o.requests > 0 && error_pct < t.max_error_pct),
        format!(
            "{errors} server errors + timeouts ({} + {}) in {} requests = {:.4} % (limit: under {} %)",
            o.server_errors, o.timeouts, o.requests, error_pct, t.max_error_pct
        ),
    ));

    let refused_pct = pct(o.refused, o.requests);
    checks.push(Check::new(
        "refusals",
        Some(o.requests > 0 && refused_pct < t.max_refused_pct),
        format!(
            "{} other failures (4xx, error acks, wrong answers) = {:.4} % (limit: under {} %)",
            o.refused, refused_pct, t.max_refused_pct
        ),
    ));

    checks.push(Check::new(
        "chat_p99",
        Some(o.chat_p99_ms.is_some_and(|p99| p99 < t.max_chat_p99_ms)),
        match o.chat_p99_ms {
            Some(p99) => format!(
                "send → delivery p99 {p99:.1} ms (limit: under {} ms)",
                t.max_chat_p99_ms
            ),
            None => "no chat deliveries measured".to_owned(),
        },
    ));

    let missing = o.chat_lost + o.signal_lost;
    let extra = o.chat_duplicated + o.signal_duplicated + o.misdelivered;
    checks.push(Check::new(
        "lost_messages",
        Some(missing == 0 && extra == 0 && o.chat_due > 0),
        format!(
            "chat: {} missing, {} duplicated of {} deliveries due; signals: {} missing, {} \
             duplicated of {} due; {} misdelivered (limit: 0, every acked message delivered \
             exactly once to every socket that should have it)",
            o.chat_lost,
            o.chat_duplicated,
            o.chat_due,
            o.signal_lost,
            o.signal_duplicated,
            o.signal_due,
            o.misdelivered
        ),
    ));

    checks.push(Check::new(
        "connections",
        Some(o.dropped_connections == 0),
        format!(
            "{} socket(s) dropped during the run (limit: 0)",
            o.dropped_connections
        ),
    ));

    let rss = match (o.rss_start_kib, o.rss_end_kib) {
        (Some(start), Some(end)) if start > 0.0 => Some((start, end)),
        _ => None,
    };
    checks.push(match rss {
        Some((start, end)) => {
            let growth = end - start;
            let growth_pct = 100.0 * growth / start;
            Check::new(
                "rss_growth",
                Some(growth_pct <= t.max_rss_growth_pct),
                format!(
                    "{:.1} → {:.1} MiB: {:+.1} MiB = {:+.1} % (limit: {} % of the start)",
                    start / 1024.0,
                    end / 1024.0,
                    growth / 1024.0,
                    growth_pct,
                    t.max_rss_growth_pct
                ),
            )
        }
        None => Check::new(
            "rss_growth",
            None,
            "the server's memory was not measured (attached without --server-pid)".to_owned(),
        ),
    });
    checks
}

/// The least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        max_error_pct: 0.025,
        max_refused_pct: 0.025,
        max_chat_p99_ms: 100.0,
        max_rss_growth_pct: 10.0,
    };

    fn healthy() -> Observed {
        Observed {
            requests: 40_000,
            chat_p99_ms: Some(12.0),
            chat_due: 1_800_000,
            signal_due: 7_000,
            rss_start_kib: Some(100.0 * 1024.0),
            rss_end_kib: Some(104.0 * 1024.0),
            ..Observed::default()
        }
    }

    fn status(checks: &[Check], name: &str) -> Status {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .status
    }

    #[test]
    fn a_healthy_run_passes_everything() {
        let checks = evaluate(&healthy(), &LIMITS);
        assert_eq!(checks.len(), 6);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:?}"
        );
        assert!(checks[0].line().starts_with("PASS errors: 0 server errors"));
    }

    #[test]
    fn error_budget_is_strictly_under_the_limit() {
        // 0.025 % of 40,000 is 10: 9 pass, 10 fail; timeouts count with server errors.
        let mut o = healthy();
        o.server_errors = 5;
        o.timeouts = 4;
        assert_eq!(status(&evaluate(&o, &LIMITS), "errors"), Status::Pass);
        o.timeouts = 5;
        assert_eq!(status(&evaluate(&o, &LIMITS), "errors"), Status::Fail);
        o.refused = 10;
        assert_eq!(status(&evaluate(&o, &LIMITS), "refusals"), Status::Fail);
        // Nothing measured is not a pass.
        let empty = Observed::default();
        assert_eq!(status(&evaluate(&empty, &LIMITS), "errors"), Status::Fail);
    }

    #[test]
    fn latency_loss_and_drops_fail_their_alarms() {
        let mut o = healthy();
        o.chat_p99_ms = Some(100.0);
        assert_eq!(status(&evaluate(&o, &LIMITS), "chat_p99"), Status::Fail);
        o.chat_p99_ms = None;
        assert_eq!(status(&evaluate(&o, &LIMITS), "chat_p99"), Status::Fail);

        let changes: [fn(&mut Observed); 4] = [
            |o: &mut Observed| o.chat_lost = 1,
            |o: &mut Observed| o.chat_duplicated = 1,
            |o: &mut Observed| o.signal_lost = 1,
            |o: &mut Observed| o.misdelivered = 1,
        ];
        for change in changes {
            let mut o = healthy();
            change(&mut o);
            assert_eq!(
                status(&evaluate(&o, &LIMITS), "lost_messages"),
                Status::Fail
            );
        }
        let mut o = healthy();
        o.dropped_connections = 1;
        assert_eq!(status(&evaluate(&o, &LIMITS), "connections"), Status::Fail);
    }

    #[test]
    fn memory_growth_is_judged_against_the_start_or_skipped() {
        let mut o = healthy();
        o.rss_end_kib = Some(110.0 * 1024.0);
        assert_eq!(status(&evaluate(&o, &LIMITS), "rss_growth"), Status::Pass);
        o.rss_end_kib = Some(110.5 * 1024.0);
        let checks = evaluate(&o, &LIMITS);
        assert_eq!(status(&checks, "rss_growth"), Status::Fail);
        assert!(checks.iter().any(Check::failed));
        // Shrinking is fine.
        o.rss_end_kib = Some(90.0 * 1024.0);
        assert_eq!(status(&evaluate(&o, &LIMITS), "rss_growth"), Status::Pass);
        o.rss_start_kib = None;
        let checks = evaluate(&o, &LIMITS);
        assert_eq!(status(&checks, "rss_growth"), Status::Skip);
        assert!(!checks.iter().any(Check::failed));
    }

    #[test]
    fn slope_is_the_least_squares_trend() {
        // y = 3x + 7 exactly.
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        // Noise around a flat line: no trend.
        let flat = [
            (0.0, 10.0),
            (1.0, 12.0),
            (2.0, 8.0),
            (3.0, 8.0),
            (4.0, 12.0),
        ];
        assert!(slope(&flat).unwrap().abs() < 1e-9);
        // A step halfway weighs less than the end-to-end difference.
        let step = [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0), (3.0, 1.0)];
        assert!((slope(&step).unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }
}
