//! What one login costs: the argon2id verification alone at the default parameters, and a
//! whole `POST /api/v1/auth/login` through the real server on SQLite over loopback.
//!
//! `cargo bench -p lyceum --bench login`. Numbers depend on the machine; compare runs on one.

use std::time::{Duration, Instant};

use lyceum::{config::Config, security::password::PasswordHasher};
use serde_json::json;

const RUNS: usize = 40;

fn summarize(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "{label:<44} n={:<3} mean={:>7.2} ms  p50={:>7.2} ms  p99={:>7.2} ms",
        samples.len(),
        mean.as_secs_f64() * 1e3,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let defaults = Config::default();
    let hasher = PasswordHasher::from_config(&defaults)?;
    let hash = hasher.hash("correct horse battery".into()).await?;
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await?
        );
        samples.push(started.elapsed());
    }
    summarize(
        &format!(
            "argon2id verify (m={} KiB, t={}, p=1)",
            defaults.argon2_memory_kib, defaults.argon2_iterations
        ),
        samples,
    );
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        assert!(!hasher.verify("correct horse battery".into(), None).await?);
        samples.push(started.elapsed());
    }
    summarize("argon2id verify, unknown email (dummy hash)", samples);

    let dir = std::env::temp_dir().join(format!("lyceum-bench-{}", std::process::id()));
    let config = Config {
        data_dir: dir.join("data"),
        upload_dir: dir.join("uploads"),
        login_max_failures_per_email: 1000,
        login_max_failures_per_ip: 1000,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lyceum::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1");
    let register = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": "bench@example.com", "password": "correct horse battery", "name": "Bench"}))
        .send()
        .await?;
    anyhow::ensure!(
        register.status() == 201,
        "register failed: {}",
        register.status()
    );
    for (label, email, status) in [
        ("POST /auth/login, right password", "bench@example.com", 200),
        ("POST /auth/login, unknown email", "nobody@example.com", 401),
    ] {
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let reply = client
                .post(format!("{base}/auth/login"))
                .json(&json!({"email": email, "password": "correct horse battery"}))
                .send()
                .await?;
            anyhow::ensure!(reply.status() == status, "{label}: {}", reply.status());
            let _ = reply.bytes().await?;
            samples.push(started.elapsed());
        }
        summarize(label, samples);
    }
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
