//! A chain as the admin API and the revisions store it: links naming modules by SHA-256 (or
//! `builtin:…`) with their name, configuration, failure mode and limits.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use lyceum_plugin_runtime::{FailureMode, LimitsConfig};

/// Most plugins in one chain: every call asks each of them in turn.
pub const MAX_CHAIN: usize = 16;

/// One plugin of a chain (the contract's `link`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Link {
    /// The module's lowercase hex SHA-256, or `builtin:chat-moderation`,
    /// `builtin:file-validation`, `builtin:signaling-policy`.
    pub module: String,
    /// Name in logs, metrics and as key-value namespace; defaults to the module's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The plugin's own configuration, handed to it as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    /// Overrides the slot's failure mode for this plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Overrides the default limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LinkLimits>,
}

/// What a failing plugin means: refuse (`fail-closed`) or pass over it (`fail-open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    FailClosed,
    FailOpen,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::FailClosed => "fail-closed",
            Failure::FailOpen => "fail-open",
        }
    }
}

impl From<Failure> for FailureMode {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::FailClosed => FailureMode::FailClosed,
            Failure::FailOpen => FailureMode::FailOpen,
        }
    }
}

impl From<FailureMode> for Failure {
    fn from(mode: FailureMode) -> Self {
        match mode {
            FailureMode::FailClosed => Failure::FailClosed,
            FailureMode::FailOpen => Failure::FailOpen,
        }
    }
}

/// Per-plugin limits; a key left out takes the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkLimits {
    /// Wall-clock time per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Linear memory per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Instructions per call (roughly); unmetered when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

impl From<LinkLimits> for LimitsConfig {
    fn from(limits: LinkLimits) -> Self {
        LimitsConfig {
            deadline_ms: limits.deadline_ms,
            memory_mib: limits.memory_mib,
            fuel: limits.fuel,
        }
    }
}

impl LinkLimits {
    /// `None` when nothing is set, so a link without limits stores none.
    pub fn from_config(limits: LimitsConfig) -> Option<Self> {
        let link = LinkLimits {
            deadline_ms: limits.deadline_ms,
            memory_mib: limits.memory_mib,
            fuel: limits.fuel,
        };
        (link != LinkLimits::default()).then_some(link)
    }
}

/// `PUT /plugins/{slot}`: the new chain and, optionally, the slot's failure mode
/// (`fail-closed` when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainBody {
    pub chain: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl ChainBody {
    pub fn failure(&self) -> Failure {
        self.failure.unwrap_or(Failure::FailClosed)
    }
}

/// `PUT /plugins/{slot}/shadow`: the candidate chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowBody {
    pub chain: Vec<Link>,
}
