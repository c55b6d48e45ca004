//! End to end: the generator starts the debug server, runs a small fan-out and reports every
//! accepted message delivered once to every socket of its room.
//!
//! The server binary belongs to another package, so Cargo does not build it for this test:
//! it is looked up in the workspace's `target/debug/` (built by `cargo build` or `cargo test`
//! of the workspace), and the test says it skipped when it is absent.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn server_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug")
        .join("lyceum")
}

#[test]
fn fanout_delivers_every_accepted_message_to_every_member() {
    let server = server_binary();
    if !server.is_file() {
        eprintln!(
            "skipped: no {} (build the workspace first)",
            server.display()
        );
        return;
    }
    let report_path =
        std::env::temp_dir().join(format!("lyceum-bench-smoke-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_lyceum-bench"))
        .arg("--spawn")
        .arg(&server)
        .arg("--json")
        .arg(&report_path)
        // Pinning is for measurements; a test must not take cores from whatever else runs.
        .arg("--no-pin")
        .args(["--deadline", "120"])
        .args([
            "fanout",
            "--clients",
            "4",
            "--rooms",
            "1",
            "--messages",
            "20",
        ])
        .args(["--rate", "200", "--warmup", "0.2", "--duration", "10"])
        .args(["--drain", "5"])
        .output()
        .expect("lyceum-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&report_path).unwrap_or_default();
    let _ = std::fs::remove_file(&report_path);
    assert!(
        output.status.success(),
        "lyceum-bench failed ({}):\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(&text).expect("a JSON report");
    let run = &report["runs"][0];
    let count = |key: &str| {
        run[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {run}"))
    };
    assert_eq!(count("sent"), 20.0, "{stderr}");
    assert_eq!(count("acked"), 20.0, "{stderr}");
    // Four sockets in the room, the sender's own included.
    assert_eq!(count("expected"), 80.0, "{stderr}");
    assert_eq!(count("delivered"), count("expected"), "{stderr}");
    assert_eq!(count("lost"), 0.0, "{stderr}");
    assert_eq!(count("duplicated"), 0.0, "{stderr}");
    assert_eq!(count("misdelivered"), 0.0, "{stderr}");
    assert!(count("deliver_p50_ms") > 0.0, "{stderr}");
    assert_eq!(report["errors"], serde_json::json!([]));
}
