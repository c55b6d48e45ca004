//! What a run reports: named figures (numbers) per run, the median of each over the runs,
//! warnings; as JSON and as a table for people.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::{
    alarm::Check,
    stats::{Histogram, median},
};

/// The figures of one run, in the order they were set.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    values: Map<String, Value>,
}

impl Figures {
    /// A figure; NaN and infinities (nothing to measure) become `null`.
    pub fn set(&mut self, key: impl Into<String>, value: f64) {
        let value = if value.is_finite() {
            json!(value)
        } else {
            Value::Null
        };
        self.values.insert(key.into(), value);
    }

    pub fn count(&mut self, key: impl Into<String>, value: u64) {
        self.values.insert(key.into(), json!(value));
    }

    /// Percentiles of a nanosecond histogram, in milliseconds: `<key>_p50_ms` … `<key>_max_ms`.
    pub fn latency(&mut self, key: &str, h: &Histogram) {
        for (label, pct) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
            self.set(format!("{key}_{label}_ms"), ms(h.percentile(pct)));
        }
        self.set(format!("{key}_max_ms"), ms(h.max()));
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).and_then(Value::as_f64)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.values.keys()
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.values.clone())
    }
}

fn ms(nanos: Option<u64>) -> f64 {
    nanos.map_or(f64::NAN, |n| n as f64 / 1e6)
}

/// `numerator / denominator`, NaN when the denominator is zero (or either is unknown).
pub fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        f64::NAN
    } else {
        numerator / denominator
    }
}

/// Every run of one scenario.
pub struct Report {
    pub scenario: String,
    pub params: Value,
    pub setup: Value,
    pub runs: Vec<Figures>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    /// Alarm verdicts by run number (`soak`).
    pub alarms: Vec<(usize, Check)>,
}

impl Report {
    /// True when an alarm of any run failed.
    pub fn alarm_failed(&self) -> bool {
        self.alarms.iter().any(|(_, check)| check.failed())
    }

    /// Every figure that appears in any run, in first-seen order.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for run in &self.runs {
            for key in run.keys() {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
        keys
    }

    /// The median of each figure over the runs. A count missing from a run (a refusal code
    /// that run never saw) is zero there; a measurement missing is left out.
    pub fn medians(&self) -> Figures {
        let mut out = Figures::default();
        for key in self.keys() {
            let counted = key.starts_with("refused_") || key.starts_with("failed_");
            let values: Vec<f64> = self
                .runs
                .iter()
                .map(|run| match run.get(&key) {
                    Some(v) => v,
                    None if counted => 0.0,
                    None => f64::NAN,
                })
                .collect();
            out.set(key, median(&values).unwrap_or(f64::NAN));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "scenario": self.scenario,
            "params": self.params,
            "setup": self.setup,
            "runs": self.runs.iter().map(Figures::to_json).collect::<Vec<_>>(),
            "median": self.medians().to_json(),
            "warnings": self.warnings,
            "errors": self.errors,
        });
        if !self.alarms.is_empty() {
            out["alarms"] = self
                .alarms
                .iter()
                .map(|(run, check)| {
                    let mut v = check.to_json();
                    v["run"] = json!(run);
                    v
                })
                .collect();
        }
        out
    }

    /// A table: one row per figure, one column per run, then the median.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nlyceum-bench {}: {}", self.scenario, self.params);
        let _ = writeln!(out, "setup: {}", self.setup);
        let medians = self.medians();
        let keys = self.keys();
        let width = keys.iter().map(String::len).max().unwrap_or(6).max(6);
        let mut header = format!("{:<width$}", "figure");
        for i in 1..=self.runs.len() {
            let _ = write!(header, " {:>12}", format!("run {i}"));
        }
        if self.runs.len() > 1 {
            let _ = write!(header, " {:>12}", "median");
        }
        let _ = writeln!(out, "{header}");
        for key in &keys {
            let mut line = format!("{key:<width$}");
            for run in &self.runs {
                let _ = write!(line, " {:>12}", show(run.get(key)));
            }
            if self.runs.len() > 1 {
                let _ = write!(line, " {:>12}", show(medians.get(key)));
            }
            let _ = writeln!(out, "{line}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "WARNING: {warning}");
        }
        for (run, check) in &self.alarms {
            if self.runs.len() > 1 {
                let _ = writeln!(out, "run {run}: {}", check.line());
            } else {
                let _ = writeln!(out, "{}", check.line());
            }
        }
        for error in &self.errors {
            let _ = writeln!(out, "ERROR: {error}");
        }
        out
    }
}

fn show(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_treat_missing_counts_as_zero_and_missing_measures_as_unknown() {
        let mut a = Figures::default();
        a.count("sent", 10);
        a.count("refused_RATE_LIMITED", 4);
        a.set("deliver_p50_ms", 2.0);
        let mut b = Figures::default();
        b.count("sent", 30);
        b.set("deliver_p50_ms", f64::NAN);
        let mut c = Figures::default();
        c.count("sent", 20);
        c.set("deliver_p50_ms", 4.0);
        let report = Report {
            scenario: "fanout".into(),
            params: json!({}),
            setup: json!({}),
            runs: vec![a, b, c],
            warnings: vec![],
            errors: vec![],
            alarms: vec![],
        };
        let m = report.medians();
        assert_eq!(m.get("sent"), Some(20.0));
        assert_eq!(m.get("refused_RATE_LIMITED"), Some(0.0));
        assert_eq!(m.get("deliver_p50_ms"), Some(3.0));
        let json = report.to_json();
        assert_eq!(json["runs"][1]["deliver_p50_ms"], Value::Null);
        assert_eq!(json["median"]["sent"], json!(20.0));
    }
}
