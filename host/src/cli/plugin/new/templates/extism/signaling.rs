//! {{name}}: a Lyceum signaling policy plugin for the Extism ABI.
//!
//! Caps the participants of a session's call and relays every signal. Configuration (in
//! `plugins.toml`, or `config` in `cases.json`):
//!
//! ```json
//! {"maxParticipants": 3}
//! ```

mod lyceum;

use std::sync::OnceLock;

use extism_pdk::{FnResult, Json, plugin_fn};
use lyceum::{CheckJoinInput, CheckSignalInput, JoinVerdict, SignalVerdict, refusal};

/// Read once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and reads it again. `None`: only the session's own
/// limit applies.
fn max_participants() -> Option<u32> {
    static MAX: OnceLock<Option<u32>> = OnceLock::new();
    *MAX.get_or_init(|| {
        lyceum::config("maxParticipants").unwrap_or_else(|e| {
            lyceum::log("error", &e);
            None
        })
    })
}

#[plugin_fn]
pub fn check_join(Json(input): Json<CheckJoinInput>) -> FnResult<Json<JoinVerdict>> {
    // The lower of this plugin's cap and the session's own limit.
    let limit = [max_participants(), input.request.max_participants]
        .into_iter()
        .flatten()
        .min();
    Ok(Json(match limit {
        Some(limit) if input.request.participant_count >= limit => {
            JoinVerdict::Deny(refusal("session_full", "This session is full."))
        }
        _ => JoinVerdict::Allow,
    }))
}

#[plugin_fn]
pub fn check_signal(Json(_input): Json<CheckSignalInput>) -> FnResult<Json<SignalVerdict>> {
    Ok(Json(SignalVerdict::Relay))
}
