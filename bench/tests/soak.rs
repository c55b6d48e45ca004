//! End to end: a few seconds of `soak` (chat, signaling and uploads at once) against the debug
//! server: every alarm passes and the report carries the figures it promises; then an
//! impossible threshold makes the run fail with exit status 1 and a FAIL line.
//!
//! Like `smoke.rs`, the server binary is looked up in the workspace's `target/debug/`, and
//! the test says it skipped when it is absent.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::Value;

fn server_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug")
        .join("lyceum")
}

/// Runs a small soak with `extra` flags; its output and JSON report.
fn soak(server: &PathBuf, name: &str, extra: &[&str]) -> (Output, Value) {
    let report_path = std::env::temp_dir().join(format!(
        "lyceum-bench-soak-{}-{name}.json",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_lyceum-bench"))
        .arg("--spawn")
        .arg(server)
        .arg("--json")
        .arg(&report_path)
        .arg("--no-pin")
        .args(["--deadline", "180"])
        .args([
            "soak",
            "--sockets",
            "6",
            "--rooms",
            "2",
            "--chat-rate",
            "30",
        ])
        .args(["--pairs", "2", "--sessions", "1", "--signal-rate", "20"])
        .args([
            "--upload-rate",
            "2",
            "--upload-size",
            "8K",
            "--upload-users",
            "1",
        ])
        .args(["--warmup", "1", "--drain", "5", "--slice", "2"])
        // A debug server warming up for a few seconds is no memory trend.
        .args(["--max-rss-growth-pct", "1000"])
        .args(extra)
        .output()
        .expect("lyceum-bench runs");
    let text = std::fs::read_to_string(&report_path).unwrap_or_default();
    let _ = std::fs::remove_file(&report_path);
    let report = serde_json::from_str(&text).unwrap_or(Value::Null);
    (output, report)
}

#[test]
fn soak_passes_its_alarms_and_fails_on_an_impossible_one() {
    let server = server_binary();
    if !server.is_file() {
        eprintln!(
            "skipped: no {} (build the workspace first)",
            server.display()
        );
        return;
    }
    let (output, report) = soak(
        &server,
        "pass",
        &["--duration", "5", "--max-chat-p99-ms", "1000"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "lyceum-bench failed ({}):\n{stderr}",
        output.status
    );
    let run = &report["runs"][0];
    let count = |key: &str| {
        run[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {run}"))
    };
    assert!(count("chat_sent") >= 100.0, "{stderr}");
    assert_eq!(count("chat_acked"), count("chat_sent"), "{stderr}");
    // Three sockets per room, the sender's own included.
    assert_eq!(
        count("chat_expected"),
        3.0 * count("chat_acked"),
        "{stderr}"
    );
    assert_eq!(count("chat_delivered"), count("chat_expected"), "{stderr}");
    assert_eq!(
        count("chat_lost") + count("chat_duplicated"),
        0.0,
        "{stderr}"
    );
    for kind in ["offer", "answer", "candidate"] {
        assert!(
            count(&format!("signal_sent_{kind}")) > 0.0,
            "{kind}: {stderr}"
        );
    }
    assert_eq!(
        count("signal_delivered"),
        count("signal_expected"),
        "{stderr}"
    );
    assert!(count("upload_ok") >= 8.0, "{stderr}");
    assert_eq!(count("upload_ok"), count("upload_sent"), "{stderr}");
    assert_eq!(count("delete_ok"), count("upload_ok"), "{stderr}");
    assert_eq!(
        count("errors_timeout") + count("errors_refused"),
        0.0,
        "{stderr}"
    );
    assert!(count("rss_samples") >= 5.0, "{stderr}");
    assert!(count("rss_start_mib") > 0.0, "{stderr}");
    assert!(run["rss_trend_bytes_per_min"].is_number(), "{stderr}");
    assert!(count("upload_p99_ms") > 0.0, "{stderr}");
    assert_eq!(count("alarms_failed"), 0.0, "{stderr}");
    let alarms = report["alarms"].as_array().expect("alarms in the report");
    assert_eq!(alarms.len(), 6, "{alarms:?}");
    assert!(alarms.iter().all(|a| a["status"] == "pass"), "{alarms:?}");
    assert!(stderr.contains("PASS lost_messages"), "{stderr}");
    let timeline = report["setup"]["runs"][0]["timeline"]
        .as_array()
        .expect("a timeline");
    assert!(timeline.len() >= 2, "{timeline:?}");

    let (output, report) = soak(
        &server,
        "fail",
        &["--duration", "2", "--max-chat-p99-ms", "0.001"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAIL chat_p99"), "{stderr}");
    assert!(
        report["runs"][0]["alarms_failed"].as_f64() >= Some(1.0),
        "{stderr}"
    );
}
