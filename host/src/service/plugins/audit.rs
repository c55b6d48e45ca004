//! The decision audit's writer: the engine hands decisions over without waiting; a task
//! writes them in batches and prunes what is older than the retention.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use lyceum_plugin_runtime::{Decision, DecisionSink};
use tokio::sync::mpsc;

use crate::{domain::PluginDecision, store::Store};

/// Counter of decisions dropped because the audit queue was full.
pub const AUDIT_DROPPED_TOTAL: &str = "lyceum_plugin_audit_dropped_total";

/// Decisions written per statement batch.
const BATCH: usize = 256;
/// How often old decisions are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The engine's [`DecisionSink`]: a bounded queue in front of the store.
pub struct AuditQueue {
    queue: mpsc::Sender<Decision>,
}

impl DecisionSink for AuditQueue {
    fn record(&self, decision: Decision) {
        if self.queue.try_send(decision).is_err() {
            metrics::counter!(AUDIT_DROPPED_TOTAL).increment(1);
        }
    }
}

/// The receiving half, to be started once the runtime runs.
pub struct AuditWriter {
    decisions: mpsc::Receiver<Decision>,
}

/// A queue of `capacity` decisions and its writer.
pub fn audit_queue(capacity: usize) -> (Arc<AuditQueue>, AuditWriter) {
    metrics::describe_counter!(
        AUDIT_DROPPED_TOTAL,
        "Plugin decisions not audited because the audit queue was full"
    );
    let (queue, decisions) = mpsc::channel(capacity.max(1));
    (Arc::new(AuditQueue { queue }), AuditWriter { decisions })
}

impl AuditWriter {
    /// Writes decisions until the queue closes, and prunes every hour.
    pub fn spawn(
        self,
        store: Arc<dyn Store>,
        retention: Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let writer = tokio::spawn(write(self.decisions, store.clone()));
        let pruner = tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                prune(&*store, retention).await;
            }
        });
        vec![writer, pruner]
    }
}

async fn write(mut decisions: mpsc::Receiver<Decision>, store: Arc<dyn Store>) {
    let mut batch = Vec::with_capacity(BATCH);
    while decisions.recv_many(&mut batch, BATCH).await > 0 {
        let rows: Vec<PluginDecision> = batch.drain(..).map(row).collect();
        if let Err(e) = store.insert_plugin_decisions(&rows).await {
            tracing::warn!(error = %e, lost = rows.len(), "could not write plugin decisions to the audit");
        }
    }
}

pub async fn prune(store: &dyn Store, retention: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    let before = Utc::now() - retention;
    match store.prune_plugin_decisions(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, "old plugin decisions pruned"),
        Err(e) => tracing::warn!(error = %e, "could not prune plugin decisions"),
    }
}

fn row(d: Decision) -> PluginDecision {
    PluginDecision {
        id: uuid::Uuid::now_v7(),
        at: DateTime::<Utc>::from(d.at),
        slot: d.slot.as_str().to_owned(),
        plugin_name: d.plugin_name,
        plugin_sha256: d.plugin_sha256,
        verdict: d.verdict,
        reason: d.reason,
        shadow: d.shadow,
        actor_id: Some(d.actor_id),
        course_id: d.course_id,
        room_id: d.room_id,
        session_id: d.session_id,
        subject_id: d.subject_id,
        request_id: d.request_id,
        content_sha256: d.content_sha256,
    }
}
