//! Shadow mode: a candidate chain asked the same questions as the active one, after the
//! active decision and off the request's thread, with its own key-value namespace. What it
//! would have decided is compared and recorded, never enforced.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::calls::Call;
use super::chain::{self, Chain, Env, Folded};
use crate::error::PolicyFailure;
use crate::kv::{KvError, KvStore};
use crate::status::{DisagreementSample, ShadowStatus, VerdictSummary};

/// Disagreements kept for operators to look at.
const SAMPLES: usize = 20;

/// The candidate chain of a slot and how it compares.
pub(crate) struct Shadow {
    pub(crate) chain: Arc<Chain>,
    since: SystemTime,
    calls: AtomicU64,
    agree: AtomicU64,
    disagree: AtomicU64,
    dropped: AtomicU64,
    samples: Mutex<VecDeque<DisagreementSample>>,
}

impl Shadow {
    pub(crate) fn new(chain: Chain) -> Self {
        Self {
            chain: Arc::new(chain),
            since: SystemTime::now(),
            calls: AtomicU64::new(0),
            agree: AtomicU64::new(0),
            disagree: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }

    pub(crate) fn dropped_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `call` through the candidate and compares with what the active chain decided.
    pub(crate) fn judge<C: Call>(&self, call: C, active: VerdictSummary, env: &Env<'_>) {
        // Hashing is only worth it for a disagreement, but the call is consumed by the fold.
        let audit_call_parts = (
            call.content_sha256(),
            call.subject(),
            call.context().clone(),
        );
        let folded = chain::fold(&self.chain, call, env);
        let (shadow, by) = summarize::<C>(&folded);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if shadow == active {
            self.agree.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.disagree.fetch_add(1, Ordering::Relaxed);
        {
            let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            if samples.len() == SAMPLES {
                samples.pop_back();
            }
            samples.push_front(DisagreementSample {
                at: SystemTime::now(),
                active,
                shadow: shadow.clone(),
            });
        }
        let plugin = by
            .and_then(|i| self.chain.plugins.get(i))
            .or_else(|| self.chain.plugins.first());
        if let Some(plugin) = plugin {
            let (content_sha256, subject, ctx) = audit_call_parts;
            env.audit.record(crate::audit::Decision {
                at: SystemTime::now(),
                slot: plugin.slot,
                plugin_name: plugin.name.clone(),
                plugin_sha256: plugin.loaded.sha256.clone(),
                verdict: shadow.verdict,
                reason: shadow.reason,
                shadow: true,
                actor_id: ctx.actor_id,
                course_id: ctx.course_id,
                room_id: ctx.room_id,
                session_id: ctx.session_id,
                subject_id: ctx.subject_id.or(subject),
                request_id: ctx.request_id,
                content_sha256,
            });
        }
    }

    pub(crate) fn status(&self) -> ShadowStatus {
        ShadowStatus {
            chain: self.chain.plugins.iter().map(|p| p.status()).collect(),
            since: self.since,
            calls: self.calls.load(Ordering::Relaxed),
            agree: self.agree.load(Ordering::Relaxed),
            disagree: self.disagree.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            samples: self
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// A chain's outcome as compared: a fail-closed failure is what the request would have
/// met (`unavailable`), so it counts as a decision of its own.
pub(crate) fn summarize<C: Call>(
    folded: &Result<Folded<C::Decision>, PolicyFailure>,
) -> (VerdictSummary, Option<usize>) {
    match folded {
        Ok(folded) => (C::summary(&folded.decision), folded.by),
        Err(failure) => (
            VerdictSummary {
                verdict: "unavailable".to_owned(),
                reason: Some(failure.kind.as_str().to_owned()),
            },
            None,
        ),
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread running shadow calls from a bounded queue: shadow work never runs on a
/// request's thread and never grows without bound.
pub(crate) struct ShadowRunner {
    queue: SyncSender<Job>,
}

impl ShadowRunner {
    pub(crate) fn start(capacity: usize) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1));
        std::thread::Builder::new()
            .name("plugin-shadow".into())
            .spawn(move || run(jobs))?;
        Ok(Self { queue })
    }

    /// Queues `job`; false when the queue is full (the caller counts the drop).
    pub(crate) fn submit(&self, job: Job) -> bool {
        match self.queue.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Ends when the runner (and with it the sending half) is dropped.
fn run(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        job();
    }
}

/// The store seen by shadow plugins: the same store, every namespace prefixed, so that a
/// shadow rate limit does not count the same request a second time against the active one.
pub(crate) struct ShadowKv {
    inner: Arc<dyn KvStore>,
}

impl ShadowKv {
    pub(crate) fn new(inner: Arc<dyn KvStore>) -> Self {
        Self { inner }
    }

    fn namespace(namespace: &str) -> String {
        format!("shadow:{namespace}")
    }
}

impl KvStore for ShadowKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError> {
        self.inner.get(&Self::namespace(namespace), key)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.inner.set(&Self::namespace(namespace), key, value, ttl)
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        self.inner
            .incr(&Self::namespace(namespace), key, delta, ttl)
    }
}
