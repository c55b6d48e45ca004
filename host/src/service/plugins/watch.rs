//! Picks up changes of `plugins.toml` while the server runs: on `SIGHUP`, and (when
//! `plugins_watch` is on) when the file's size or modification time changes and then stays
//! the same for one more poll, so that an editor's partial writes are not applied.

use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use super::PluginService;

const POLL: Duration = Duration::from_millis(500);

type Stamp = Option<(u64, SystemTime)>;

async fn stamp(path: &PathBuf) -> Stamp {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Runs until aborted.
pub async fn watch(service: Arc<PluginService>, path: PathBuf, poll_file: bool) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; plugins.toml reloads only when it changes");
            None
        }
    };
    let mut applied = stamp(&path).await;
    let mut seen = applied;
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = signalled => {
                tracing::info!(file = %path.display(), "SIGHUP: reading the plugins file");
                applied = stamp(&path).await;
                seen = applied;
                service.sync_file().await;
            }
            _ = every.tick(), if poll_file => {
                let now = stamp(&path).await;
                if now != applied && now == seen {
                    tracing::info!(file = %path.display(), "plugins file changed: reading it");
                    applied = now;
                    service.sync_file().await;
                }
                seen = now;
            }
        }
    }
}
