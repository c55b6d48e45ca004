//! {{name}}: a Lyceum signaling policy plugin.
//!
//! Caps the participants of a session's call and relays every signal. Configuration (in
//! `plugins.toml`, or `config` in `cases.json`):
//!
//! ```json
//! {"maxParticipants": 3}
//! ```

use std::sync::OnceLock;

use lyceum_plugin_sdk::signaling::{Guest, JoinRequest, JoinVerdict, Signal, SignalVerdict};
use lyceum_plugin_sdk::{Context, log, refusal};

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    /// Only the session's own limit applies when absent.
    #[serde(default)]
    max_participants: Option<u32>,
}

/// Parsed once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and parses it again.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            log::log(log::Level::Error, &e);
            Config::default()
        })
    })
}

struct Plugin;

impl Guest for Plugin {
    fn check_join(_ctx: Context, request: JoinRequest) -> JoinVerdict {
        // The lower of this plugin's cap and the session's own limit.
        let limit = [config().max_participants, request.max_participants]
            .into_iter()
            .flatten()
            .min();
        match limit {
            Some(limit) if request.participant_count >= limit => {
                JoinVerdict::Deny(refusal("session_full", "This session is full."))
            }
            _ => JoinVerdict::Allow,
        }
    }

    fn check_signal(_ctx: Context, _signal: Signal) -> SignalVerdict {
        SignalVerdict::Relay
    }
}

lyceum_plugin_sdk::signaling::export!(Plugin);
