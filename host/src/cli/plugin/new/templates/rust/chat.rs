//! {{name}}: a Lyceum chat moderation plugin.
//!
//! Refuses messages containing a `blocked` phrase, in any case, and limits each user to
//! `maxPerWindow` messages per `windowMs` milliseconds. Configuration (in `plugins.toml`, or
//! `config` in `cases.json`):
//!
//! ```json
//! {"blocked": ["buy followers"], "maxPerWindow": 3, "windowMs": 60000}
//! ```

use std::sync::OnceLock;

use lyceum_plugin_sdk::chat::{Guest, Message, Verdict};
use lyceum_plugin_sdk::{Context, fixed_window_allows, log, refusal};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    blocked: Vec<String>,
    /// No limit when absent.
    #[serde(default)]
    max_per_window: Option<u64>,
    #[serde(default = "default_window_ms")]
    window_ms: u64,
}

fn default_window_ms() -> u64 {
    10_000
}

impl Default for Config {
    fn default() -> Self {
        Self {
            blocked: Vec::new(),
            max_per_window: None,
            window_ms: default_window_ms(),
        }
    }
}

/// Parsed once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and parses it again.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config: Config = lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            log::log(log::Level::Error, &e);
            Config::default()
        });
        config.blocked = config
            .blocked
            .iter()
            .filter(|phrase| !phrase.is_empty())
            .map(|phrase| phrase.to_lowercase())
            .collect();
        config
    })
}

struct Plugin;

impl Guest for Plugin {
    fn moderate(ctx: Context, message: Message) -> Verdict {
        let config = config();
        if let Some(limit) = config.max_per_window {
            // Counted in the host's store: guest memory may be gone by the next call.
            let key = format!("msg:{}", ctx.actor_id);
            match fixed_window_allows(&key, limit, config.window_ms, ctx.at_unix_ms) {
                Ok(true) => {}
                // The server answers this code like its own limit: RATE_LIMITED.
                Ok(false) => {
                    return Verdict::Reject(refusal(
                        "rate_limited",
                        "You are sending messages too quickly.",
                    ));
                }
                // A store that is down should not silence the chat: skip the limit, say so.
                Err(e) => log::log(
                    log::Level::Warn,
                    &format!("rate limit skipped, the store failed: {e:?}"),
                ),
            }
        }
        let content = message.content.to_lowercase();
        if config
            .blocked
            .iter()
            .any(|phrase| content.contains(phrase.as_str()))
        {
            return Verdict::Reject(refusal(
                "blocked_phrase",
                "This message contains a blocked phrase.",
            ));
        }
        Verdict::Allow
    }
}

lyceum_plugin_sdk::chat::export!(Plugin);
