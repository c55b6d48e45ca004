//! A slot's chain of loaded plugins, and the one fold that asks them in order: breaker,
//! call, host rules, counters, metrics, audit and failure mode, the same for every kind of
//! call.

use std::ops::ControlFlow;
use std::time::{Instant, SystemTime};

use metrics::{Counter, Histogram};

use super::calls::{Call, HostRules};
use super::stats::{Admit, Breaker, Slowness, Stats};
use super::{CALL_DURATION_SECONDS, CALLS_TOTAL, FAILED_OPEN_TOTAL, Outcome};
use crate::audit::{Decision, DecisionSink};
use crate::config::{FailureMode, Limits};
use crate::error::{FailureKind, PolicyFailure};
use crate::status::{Activation, PluginStatus};
use crate::types::Slot;
use crate::wasm::Loaded;

/// Metric handles resolved once per plugin: the per-call cost is then an atomic add, not
/// a registry lookup. They bind to the recorder installed when the chain is prepared.
struct PluginMetrics {
    calls: Vec<Counter>,
    duration: Histogram,
    failed_open: Counter,
}

impl PluginMetrics {
    fn new(slot: Slot, plugin: &str) -> Self {
        let labels = [
            ("slot", slot.as_str().to_owned()),
            ("plugin", plugin.to_owned()),
        ];
        let calls = Outcome::ALL
            .into_iter()
            .map(|outcome| {
                if outcome.possible(slot) {
                    let mut labels = labels.to_vec();
                    labels.push(("outcome", outcome.as_str().to_owned()));
                    metrics::counter!(CALLS_TOTAL, &labels)
                } else {
                    Counter::noop()
                }
            })
            .collect();
        Self {
            calls,
            duration: metrics::histogram!(CALL_DURATION_SECONDS, &labels),
            failed_open: metrics::counter!(FAILED_OPEN_TOTAL, &labels),
        }
    }

    /// Shadow plugins are never enforced and keep their counters in the slot's status only,
    /// so that dashboards of enforced calls stay true.
    fn none() -> Self {
        Self {
            calls: Outcome::ALL.iter().map(|_| Counter::noop()).collect(),
            duration: Histogram::noop(),
            failed_open: Counter::noop(),
        }
    }
}

/// One plugin in a chain.
pub(crate) struct ChainPlugin {
    pub(crate) name: String,
    pub(crate) slot: Slot,
    pub(crate) source: String,
    pub(crate) failure: FailureMode,
    pub(crate) limits: Limits,
    pub(crate) config: serde_json::Map<String, serde_json::Value>,
    pub(crate) abi: &'static str,
    pub(crate) wit_version: String,
    pub(crate) loaded: Loaded,
    metrics: PluginMetrics,
    pub(crate) stats: Stats,
    pub(crate) breaker: Breaker,
    pub(crate) slowness: Slowness,
}

/// What makes a [`ChainPlugin`] besides its loaded module.
pub(crate) struct PluginParts {
    pub(crate) name: String,
    pub(crate) slot: Slot,
    pub(crate) source: String,
    pub(crate) failure: FailureMode,
    pub(crate) limits: Limits,
    pub(crate) config: serde_json::Map<String, serde_json::Value>,
    pub(crate) abi: &'static str,
    pub(crate) wit_version: String,
    pub(crate) shadow: bool,
    pub(crate) breaker: Breaker,
}

impl ChainPlugin {
    pub(crate) fn new(parts: PluginParts, loaded: Loaded) -> Self {
        let metrics = if parts.shadow {
            PluginMetrics::none()
        } else {
            PluginMetrics::new(parts.slot, &parts.name)
        };
        Self {
            metrics,
            name: parts.name,
            slot: parts.slot,
            source: parts.source,
            failure: parts.failure,
            limits: parts.limits,
            config: parts.config,
            abi: parts.abi,
            wit_version: parts.wit_version,
            loaded,
            stats: Stats::default(),
            breaker: parts.breaker,
            slowness: Slowness::new(),
        }
    }

    pub(crate) fn status(&self) -> PluginStatus {
        PluginStatus {
            name: self.name.clone(),
            sha256: self.loaded.sha256.clone(),
            abi: self.abi,
            wit_version: self.wit_version.clone(),
            config: self.config.clone(),
            failure: self.failure,
            limits: self.limits,
            stats: self.stats.snapshot(self.breaker.state()),
        }
    }
}

/// A slot's plugins, in order, as one revision activated them. Replaced whole, never
/// changed: each call works on the chain it loaded at its start.
pub(crate) struct Chain {
    pub(crate) slot: Slot,
    pub(crate) plugins: Vec<ChainPlugin>,
    pub(crate) failure: FailureMode,
    pub(crate) activation: Activation,
    /// A shadow chain's verdicts are recorded, never enforced or audited one by one.
    pub(crate) shadow: bool,
    /// Stands in for a chain still being compiled at start-up: every call gets the slot's
    /// failure mode (refused when fail-closed, let through when fail-open).
    pub(crate) loading: bool,
}

impl Chain {
    /// Whether any plugin of the chain was slow lately (adaptive call mode).
    pub(crate) fn has_slow_plugin(&self) -> bool {
        self.plugins.iter().any(|p| p.slowness.is_slow())
    }
}

/// A chain's decision and the plugin that made it (the last one whose verdict was not a
/// plain pass), for the audit of shadow disagreements.
pub(crate) struct Folded<D> {
    pub(crate) decision: D,
    pub(crate) by: Option<usize>,
}

/// What a fold needs besides the chain and the call.
pub(crate) struct Env<'a> {
    pub(crate) rules: &'a HostRules,
    pub(crate) audit: &'a dyn DecisionSink,
    /// A call slower than this marks its plugin slow.
    pub(crate) inline_budget: std::time::Duration,
}

/// The plugin named in the failure of a call to a slot whose chain is still loading.
pub(crate) const LOADING: &str = "(chain still loading)";

/// Asks every plugin of `chain` in order. The first refusal ends the chain; a fail-closed
/// plugin's failure ends it with `Err`; a fail-open plugin's failure is passed over.
pub(crate) fn fold<C: Call>(
    chain: &Chain,
    mut call: C,
    env: &Env<'_>,
) -> Result<Folded<C::Decision>, PolicyFailure> {
    if chain.loading {
        return match chain.failure {
            FailureMode::FailClosed => Err(PolicyFailure {
                slot: chain.slot,
                plugin: LOADING.to_owned(),
                kind: FailureKind::Unavailable,
            }),
            FailureMode::FailOpen => Ok(Folded {
                decision: call.finish(),
                by: None,
            }),
        };
    }
    let mut by = None;
    for (index, plugin) in chain.plugins.iter().enumerate() {
        let Some(verdict) = ask(plugin, &call, env, chain.shadow)? else {
            continue;
        };
        if !C::outcome(&verdict).passes() {
            by = Some(index);
        }
        if let ControlFlow::Break(decision) = call.absorb(verdict) {
            return Ok(Folded { decision, by });
        }
    }
    Ok(Folded {
        decision: call.finish(),
        by,
    })
}

/// Asks one plugin: `Ok(Some)` is its verdict, `Ok(None)` a failure passed over by a
/// fail-open plugin, `Err` a failure of a fail-closed one.
fn ask<C: Call>(
    plugin: &ChainPlugin,
    call: &C,
    env: &Env<'_>,
    shadow: bool,
) -> Result<Option<C::Verdict>, PolicyFailure> {
    let span = C::span(&plugin.name);
    let _entered = span.enter();
    let admit = plugin.breaker.admit();
    let (result, elapsed) = if admit == Admit::Skip {
        (Err(FailureKind::CircuitOpen), None)
    } else {
        let started = Instant::now();
        let result = match call.invoke(&plugin.loaded) {
            Ok(verdict) if !call.acceptable(&verdict, env.rules) => Err(FailureKind::Invalid),
            other => other,
        };
        (result, Some(started.elapsed()))
    };
    if admit != Admit::Skip {
        match &result {
            Ok(_) => plugin.breaker.succeeded(),
            // The engine was saturated; the plugin never ran, so it is not to blame.
            Err(FailureKind::Busy) => plugin.breaker.not_run(),
            Err(kind) => {
                if plugin.breaker.failed() {
                    tracing::warn!(slot = %plugin.slot, plugin = %plugin.name, failure = kind.as_str(), "policy plugin keeps failing; circuit opened, its failure mode applies without calling it");
                }
            }
        }
    }
    let outcome = match &result {
        Ok(verdict) => C::outcome(verdict),
        Err(kind) => Outcome::Failed(*kind),
    };
    if matches!(
        outcome,
        Outcome::Failed(FailureKind::Timeout | FailureKind::CircuitOpen)
    ) {
        plugin.slowness.mark();
    } else if let Some(elapsed) = elapsed {
        plugin.slowness.timed(elapsed > env.inline_budget);
    }
    if let Some(elapsed) = elapsed {
        plugin.metrics.duration.record(elapsed.as_secs_f64());
    }
    plugin.metrics.calls[outcome.index()].increment(1);
    plugin.stats.record(outcome, elapsed);
    span.record("outcome", outcome.as_str());

    // Calls that did not run (an open circuit, a saturated engine) are counted above, not
    // audited or logged one by one: under load that would be a row and a line per request.
    // The breaker bounds the lines of a plugin that keeps failing: `breaker_failures`
    // failures, the line saying the circuit opened, then two per probe.
    let ran = !matches!(result, Err(FailureKind::CircuitOpen | FailureKind::Busy));
    if !shadow && !outcome.passes() && ran {
        let reason = match &result {
            Ok(verdict) => C::reason(verdict),
            Err(_) => None,
        };
        env.audit
            .record(decision(plugin, call, outcome.as_str(), reason, false));
    }

    match result {
        Ok(verdict) => Ok(Some(verdict)),
        Err(kind) => match plugin.failure {
            FailureMode::FailClosed => {
                if ran {
                    tracing::warn!(slot = %plugin.slot, plugin = %plugin.name, failure = kind.as_str(), shadow, "policy plugin failed; refusing (fail-closed)");
                }
                Err(PolicyFailure {
                    slot: plugin.slot,
                    plugin: plugin.name.clone(),
                    kind,
                })
            }
            FailureMode::FailOpen => {
                if ran {
                    tracing::warn!(slot = %plugin.slot, plugin = %plugin.name, failure = kind.as_str(), shadow, "policy plugin failed; skipping it (fail-open)");
                }
                plugin.metrics.failed_open.increment(1);
                Ok(None)
            }
        },
    }
}

/// An audit record of `plugin`'s answer to `call`.
pub(crate) fn decision<C: Call>(
    plugin: &ChainPlugin,
    call: &C,
    verdict: &str,
    reason: Option<String>,
    shadow: bool,
) -> Decision {
    let ctx = call.context();
    Decision {
        at: SystemTime::now(),
        slot: plugin.slot,
        plugin_name: plugin.name.clone(),
        plugin_sha256: plugin.loaded.sha256.clone(),
        verdict: verdict.to_owned(),
        reason,
        shadow,
        actor_id: ctx.actor_id.clone(),
        course_id: ctx.course_id.clone(),
        room_id: ctx.room_id.clone(),
        session_id: ctx.session_id.clone(),
        subject_id: ctx.subject_id.clone().or_else(|| call.subject()),
        request_id: ctx.request_id.clone(),
        content_sha256: call.content_sha256(),
    }
}
