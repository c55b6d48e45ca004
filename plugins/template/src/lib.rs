//! A minimal chat moderation plugin to copy and adapt.
//!
//! It refuses messages containing any of the phrases listed under `blocked` in its
//! configuration and logs how often it did so. Configure it in `plugins.toml`:
//!
//! ```toml
//! [[chat.plugins]]
//! source = "target/plugins/wasm32-wasip2/release/lyceum_plugin_template.wasm"
//! config = { blocked = ["buy followers"] }
//! ```

use std::sync::OnceLock;

use lyceum_plugin_sdk::chat::{Guest, Message, Verdict};
use lyceum_plugin_sdk::{Context, kv, log, refusal};

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default)]
    blocked: Vec<String>,
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
        for phrase in &mut config.blocked {
            *phrase = phrase.to_lowercase();
        }
        config
    })
}

struct Plugin;

impl Guest for Plugin {
    fn moderate(_ctx: Context, message: Message) -> Verdict {
        let content = message.content.to_lowercase();
        if config()
            .blocked
            .iter()
            .any(|p| !p.is_empty() && content.contains(p.as_str()))
        {
            // Counters live in the host store: guest memory may be gone by the next call.
            if kv::incr("refused", 1, None).is_err() {
                log::log(log::Level::Warn, "could not count a refusal");
            }
            return Verdict::Reject(refusal(
                "blocked_phrase",
                "This message contains a blocked phrase.",
            ));
        }
        Verdict::Allow
    }
}

lyceum_plugin_sdk::chat::export!(Plugin);
