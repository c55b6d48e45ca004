//! What the engine tells operators about a slot: its active revision, each plugin's
//! counters since that revision was activated, and the shadow candidate's agreement.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::config::{FailureMode, Limits};
use crate::types::Slot;

/// Who activated a chain, and when, as the caller recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The slot's revision number; 0 for chains that were never recorded (tests, a bare
    /// engine).
    pub revision: u64,
    /// When the chain started serving.
    pub activated_at: SystemTime,
    /// The user who activated it; `None` for a file or start-up.
    pub activated_by: Option<String>,
}

impl Activation {
    /// Revision 0, now, by nobody: a chain no store knows about.
    pub fn unrecorded() -> Self {
        Self {
            revision: 0,
            activated_at: SystemTime::now(),
            activated_by: None,
        }
    }
}

/// A slot as it serves now.
#[derive(Clone, Debug)]
pub struct SlotStatus {
    /// The slot.
    pub slot: Slot,
    /// False while the slot's chain is still being compiled at start-up (its calls get the
    /// slot's failure mode meanwhile).
    pub ready: bool,
    /// The active chain's activation.
    pub activation: Activation,
    /// The slot's failure mode, for plugins that do not set their own.
    pub failure: FailureMode,
    /// The active chain, in order.
    pub chain: Vec<PluginStatus>,
    /// The candidate running in shadow, if any.
    pub shadow: Option<ShadowStatus>,
}

/// One plugin of a chain.
#[derive(Clone, Debug)]
pub struct PluginStatus {
    /// Its name (also its key-value namespace).
    pub name: String,
    /// SHA-256 of its module, lowercase hex.
    pub sha256: String,
    /// `component` or `extism`.
    pub abi: &'static str,
    /// The WIT version of the world it exports.
    pub wit_version: String,
    /// Its configuration as given.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Its effective failure mode.
    pub failure: FailureMode,
    /// Its effective limits.
    pub limits: Limits,
    /// Its counters since the chain was activated.
    pub stats: PluginStats,
}

/// Counters of one plugin since its chain was activated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Calls asked of it, including those its open circuit answered without calling.
    pub calls: u64,
    /// Calls that failed other than by timing out.
    pub errors: u64,
    /// Calls interrupted at the deadline.
    pub timeouts: u64,
    /// Calls by outcome (`allow`, `reject`, …, and failure kinds such as `trap`).
    pub verdicts: BTreeMap<String, u64>,
    /// Median call time in microseconds (upper end of a √2-wide bucket).
    pub p50_us: u64,
    /// 99th percentile call time in microseconds (same resolution).
    pub p99_us: u64,
    /// The circuit breaker's state.
    pub circuit: CircuitState,
}

/// The circuit breaker of one plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go to the plugin.
    #[default]
    Closed,
    /// The plugin failed repeatedly; its failure mode applies without calling it.
    Open,
    /// The backoff is over; the next call probes the plugin.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// A chain's decision reduced to what can be compared and shown: never content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictSummary {
    /// `allow`, `reject`, `rewrite`, `flag`, `accept`, `deny`, `relay`, `drop`, or
    /// `unavailable` for a chain that failed closed.
    pub verdict: String,
    /// The refusal code, the flag reason, or the failure kind.
    pub reason: Option<String>,
}

/// One call on which the shadow chain decided differently.
#[derive(Clone, Debug)]
pub struct DisagreementSample {
    /// When.
    pub at: SystemTime,
    /// What the active chain decided (and enforced).
    pub active: VerdictSummary,
    /// What the shadow chain would have decided.
    pub shadow: VerdictSummary,
}

/// The candidate chain running in shadow.
#[derive(Clone, Debug)]
pub struct ShadowStatus {
    /// The candidate, in order, with its own counters.
    pub chain: Vec<PluginStatus>,
    /// When it started.
    pub since: SystemTime,
    /// Calls compared.
    pub calls: u64,
    /// Calls on which both chains decided alike.
    pub agree: u64,
    /// Calls on which they differed.
    pub disagree: u64,
    /// Calls not run in shadow because its queue was full.
    pub dropped: u64,
    /// The most recent disagreements, newest first.
    pub samples: Vec<DisagreementSample>,
}
