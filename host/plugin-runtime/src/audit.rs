//! Decisions worth keeping: every verdict other than allow/accept/relay, every failure, and
//! every disagreement of a shadow chain. The engine hands them to a [`DecisionSink`]; the
//! server stores them. Content never leaves the engine, only its SHA-256.

use std::time::SystemTime;

use crate::types::Slot;

/// One recorded decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// When the call was made.
    pub at: SystemTime,
    /// The slot.
    pub slot: Slot,
    /// The plugin that decided.
    pub plugin_name: String,
    /// Its module's SHA-256.
    pub plugin_sha256: String,
    /// `reject`, `flag`, `rewrite`, `deny`, `drop`, a failure kind (`timeout`, `trap`,
    /// `circuit_open`, …), or for a shadow disagreement the shadow chain's verdict.
    pub verdict: String,
    /// The refusal code, flag reason or failure detail.
    pub reason: Option<String>,
    /// Whether a shadow chain decided it (recorded, never enforced).
    pub shadow: bool,
    /// The acting user.
    pub actor_id: String,
    /// The course, when the call belongs to one.
    pub course_id: Option<String>,
    /// The room, when the call belongs to one.
    pub room_id: Option<String>,
    /// The live session, when the call belongs to one.
    pub session_id: Option<String>,
    /// The thing judged: a message, a file, a peer.
    pub subject_id: Option<String>,
    /// The request's id, as in the server's logs.
    pub request_id: String,
    /// SHA-256 of the judged content (message text, signal payload, upload), lowercase hex.
    pub content_sha256: Option<String>,
}

/// Where the engine puts decisions. Called on the plugin call's thread: it must not block
/// (queue and return; drop and count when full).
pub trait DecisionSink: Send + Sync + 'static {
    /// Takes one decision.
    fn record(&self, decision: Decision);
}

/// Discards every decision: an engine without an audit.
pub struct NoAudit;

impl DecisionSink for NoAudit {
    fn record(&self, _decision: Decision) {}
}
