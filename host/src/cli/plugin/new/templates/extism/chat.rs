//! {{name}}: a Lyceum chat moderation plugin for the Extism ABI.
//!
//! Refuses messages containing a `blocked` phrase, in any case, and limits each user to
//! `maxPerWindow` messages per `windowMs` milliseconds. Configuration (in `plugins.toml`, or
//! `config` in `cases.json`):
//!
//! ```json
//! {"blocked": ["buy followers"], "maxPerWindow": 3, "windowMs": 60000}
//! ```

mod lyceum;

use std::sync::OnceLock;

use extism_pdk::{FnResult, Json, plugin_fn};
use lyceum::{ModerateInput, Verdict, refusal};

struct Settings {
    /// Lowercased.
    blocked: Vec<String>,
    /// No limit when absent.
    max_per_window: Option<u64>,
    window_ms: u64,
}

/// A configuration value, or `None` (logged) when it is invalid.
fn setting<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
    lyceum::config(key).unwrap_or_else(|e| {
        lyceum::log("error", &e);
        None
    })
}

/// Read once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and reads it again.
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        blocked: setting::<Vec<String>>("blocked")
            .unwrap_or_default()
            .iter()
            .filter(|phrase| !phrase.is_empty())
            .map(|phrase| phrase.to_lowercase())
            .collect(),
        max_per_window: setting("maxPerWindow"),
        window_ms: setting("windowMs").unwrap_or(10_000),
    })
}

#[plugin_fn]
pub fn moderate(Json(input): Json<ModerateInput>) -> FnResult<Json<Verdict>> {
    let settings = settings();
    if let Some(limit) = settings.max_per_window {
        // Counted in the host's store: an instance's memory may be gone by the next call.
        let key = format!("msg:{}", input.ctx.actor_id);
        match lyceum::fixed_window_allows(&key, limit, settings.window_ms, input.ctx.at_unix_ms) {
            Ok(true) => {}
            // The server answers this code like its own limit: RATE_LIMITED.
            Ok(false) => {
                return Ok(Json(Verdict::Reject(refusal(
                    "rate_limited",
                    "You are sending messages too quickly.",
                ))));
            }
            // A store that is down should not silence the chat: skip the limit, say so.
            Err(e) => lyceum::log("warn", &format!("rate limit skipped, the store failed: {e:?}")),
        }
    }
    let content = input.message.content.to_lowercase();
    if settings
        .blocked
        .iter()
        .any(|phrase| content.contains(phrase.as_str()))
    {
        return Ok(Json(Verdict::Reject(refusal(
            "blocked_phrase",
            "This message contains a blocked phrase.",
        ))));
    }
    Ok(Json(Verdict::Allow))
}
