//! `signup`: registrations with a fixed number in flight, against the server's real password
//! hashing (argon2id at its defaults when the generator starts the server): throughput, the
//! refusals of a full hashing queue (503) or a rate limit (429), and the memory hashing
//! takes.

use std::{collections::BTreeMap, time::Instant};

use futures::{StreamExt, stream};
use serde_json::json;

use super::{Env, Meter};
use crate::{
    api::PASSWORD,
    report::{Figures, ratio},
    stats::Histogram,
};

#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct SignupArgs {
    /// Registrations in all.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

impl SignupArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.count >= 1, "--count must be at least 1");
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        Ok(())
    }
}

pub async fn signup(
    env: &mut Env,
    args: &SignupArgs,
) -> anyhow::Result<(Figures, serde_json::Value)> {
    let created = Histogram::default();
    let meter = Meter::start(env.pid);
    let statuses: Vec<u16> = stream::iter(0..args.count)
        .map(|n| {
            let (api, created) = (&env.api, &created);
            async move {
                let body = json!({
                    "email": api.email("signup", n),
                    "password": PASSWORD,
                    "name": "Bench Signup",
                });
                let started = Instant::now();
                let status = api
                    .call(reqwest::Method::POST, "/auth/register", None, Some(&body))
                    .await
                    .map_or(0, |r| r.status);
                if status == 201 {
                    created.record(started.elapsed().as_nanos() as u64);
                }
                status
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let usage = meter.finish(env.client_cores);

    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for status in statuses {
        *by_status.entry(status).or_default() += 1;
    }
    let ok = created.count();
    let mut f = Figures::default();
    f.count("signups", args.count as u64);
    f.count("created", ok);
    f.count("refused_503", by_status.get(&503).copied().unwrap_or(0));
    f.count("refused_429", by_status.get(&429).copied().unwrap_or(0));
    let other: u64 = by_status
        .iter()
        .filter(|(s, _)| ![201, 429, 503].contains(*s))
        .map(|(_, n)| n)
        .sum();
    f.count("failed_other", other);
    f.set("created_per_s", ratio(ok as f64, usage.wall_s));
    f.latency("signup", &created);
    usage.write(&mut f, &[("signup", ok)], &mut env.warnings);
    if other > 0 {
        env.warnings.push(format!(
            "unexpected statuses (0 is a transport error): {by_status:?}"
        ));
    }
    Ok((f, json!({ "setup_s": 0.0 })))
}
