//! What the admin API answers about slots (the contract's `slot`, `plugin` and shadow
//! shapes), built from the engine's status.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use lyceum_plugin_runtime::{
    DisagreementSample, Limits, PluginStatus, ShadowStatus, SlotStatus, VerdictSummary,
};

use super::links::Failure;

/// `GET /plugins`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginsView {
    pub slots: Vec<SlotView>,
    /// The plugins file and whether its last reading was refused.
    pub file: FileView,
    /// Slots whose chain is still compiling at start-up, in slot order; their calls get the
    /// slot's failure mode meanwhile. Empty once every chain is active.
    pub loading: Vec<&'static str>,
}

/// The plugins file as last read.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub checked_at: Option<DateTime<Utc>>,
    /// Why the file was refused (the active chains kept serving); `null` when it was fine.
    pub error: Option<String>,
}

/// The contract's `slot`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotView {
    pub slot: &'static str,
    pub revision: u64,
    pub activated_at: DateTime<Utc>,
    pub activated_by: Option<String>,
    pub failure: Failure,
    pub chain: Vec<PluginView>,
    pub shadow: Option<ShadowView>,
}

/// The contract's `plugin`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    pub name: String,
    pub sha256: String,
    pub abi: &'static str,
    pub wit_version: String,
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    pub failure: Failure,
    pub limits: LimitsView,
    pub stats: StatsView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub fuel: Option<u64>,
}

/// Counters since the revision was activated.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The circuit breaker: `closed`, `open` or `half-open`.
    pub circuit: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowView {
    pub chain: Vec<PluginView>,
    pub since: DateTime<Utc>,
    pub calls: u64,
    pub agree: u64,
    pub disagree: u64,
    /// Calls not run in shadow because its queue was full.
    pub dropped: u64,
    pub samples: Vec<SampleView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SampleView {
    pub at: DateTime<Utc>,
    pub active: VerdictView,
    pub shadow: VerdictView,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictView {
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<SlotStatus> for SlotView {
    fn from(status: SlotStatus) -> Self {
        SlotView {
            slot: status.slot.as_str(),
            revision: status.activation.revision,
            activated_at: status.activation.activated_at.into(),
            activated_by: status.activation.activated_by,
            failure: status.failure.into(),
            chain: status.chain.into_iter().map(PluginView::from).collect(),
            shadow: status.shadow.map(ShadowView::from),
        }
    }
}

impl From<PluginStatus> for PluginView {
    fn from(p: PluginStatus) -> Self {
        PluginView {
            name: p.name,
            sha256: p.sha256,
            abi: p.abi,
            wit_version: p.wit_version,
            config: p.config,
            failure: p.failure.into(),
            limits: limits(p.limits),
            stats: StatsView {
                calls: p.stats.calls,
                errors: p.stats.errors,
                timeouts: p.stats.timeouts,
                verdicts: p.stats.verdicts,
                p50_us: p.stats.p50_us,
                p99_us: p.stats.p99_us,
                circuit: p.stats.circuit.as_str(),
            },
        }
    }
}

fn limits(limits: Limits) -> LimitsView {
    LimitsView {
        deadline_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
        memory_mib: (limits.memory_bytes >> 20) as u64,
        fuel: limits.fuel,
    }
}

impl From<ShadowStatus> for ShadowView {
    fn from(s: ShadowStatus) -> Self {
        ShadowView {
            chain: s.chain.into_iter().map(PluginView::from).collect(),
            since: s.since.into(),
            calls: s.calls,
            agree: s.agree,
            disagree: s.disagree,
            dropped: s.dropped,
            samples: s.samples.into_iter().map(SampleView::from).collect(),
        }
    }
}

impl From<DisagreementSample> for SampleView {
    fn from(s: DisagreementSample) -> Self {
        SampleView {
            at: s.at.into(),
            active: s.active.into(),
            shadow: s.shadow.into(),
        }
    }
}

impl From<VerdictSummary> for VerdictView {
    fn from(v: VerdictSummary) -> Self {
        VerdictView {
            verdict: v.verdict,
            reason: v.reason,
        }
    }
}
