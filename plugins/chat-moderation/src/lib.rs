//! Lyceum's default chat moderation plugin (`builtin:chat-moderation`).
//!
//! The rules live in [`policy`], which knows nothing of WebAssembly so that the same source
//! also compiles natively (the runtime's benchmark compares the two). This file only adapts
//! the WIT types and host imports to it.

mod policy;

use std::sync::OnceLock;

use lyceum_plugin_sdk::chat::{Guest, Message, Verdict};
use lyceum_plugin_sdk::{Context, Role, kv, log, refusal};

fn moderator() -> &'static policy::Moderator {
    static MODERATOR: OnceLock<policy::Moderator> = OnceLock::new();
    MODERATOR.get_or_init(|| {
        let config = lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            // A broken configuration must not silently disable moderation: the defaults
            // are strict enough to be safe while the operator fixes it.
            log::log(log::Level::Error, &format!("{e}; using the default rules"));
            policy::Config::default()
        });
        policy::Moderator::new(&config)
    })
}

struct Plugin;

impl Guest for Plugin {
    fn moderate(ctx: Context, message: Message) -> Verdict {
        let role = match ctx.actor_role {
            Role::Student => policy::Role::Student,
            Role::Instructor => policy::Role::Instructor,
            Role::Admin => policy::Role::Admin,
        };
        let input = policy::Input {
            content: &message.content,
            actor_id: &ctx.actor_id,
            role,
            at_unix_ms: ctx.at_unix_ms,
        };
        let mut count = |key: &str, ttl_ms: u64| match kv::incr(key, 1, Some(ttl_ms)) {
            Ok(n) => Some(n),
            Err(e) => {
                log::log(log::Level::Warn, &format!("rate limit not applied: {e:?}"));
                None
            }
        };
        match moderator().moderate(&input, &mut count) {
            policy::Decision::Allow => Verdict::Allow,
            policy::Decision::Reject { code, reason } => Verdict::Reject(refusal(code, reason)),
            policy::Decision::Rewrite(content) => Verdict::Rewrite(content),
            policy::Decision::Flag(reason) => Verdict::Flag(reason),
        }
    }
}

lyceum_plugin_sdk::chat::export!(Plugin);
