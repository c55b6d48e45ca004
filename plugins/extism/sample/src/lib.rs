//! A chat moderation plugin written against Lyceum's Extism ABI, the counterpart of the
//! component template in `plugins/template`.
//!
//! It refuses messages containing any of the phrases listed under `blocked` in its
//! configuration and counts its refusals in the host's key-value store. Configure it in
//! `plugins.toml`:
//!
//! ```toml
//! [[chat.plugins]]
//! source = "target/plugins/wasm32-unknown-unknown/release/lyceum_extism_sample.wasm"
//! config = { blocked = ["buy followers"] }
//! ```
//!
//! An Extism module speaks JSON: each exported function takes its WIT parameters as one JSON
//! object and returns the WIT result as JSON (`wit/README.md`, "The JSON encoding"). The
//! export `lyceum_policy_v0_1_0` declares which version of the WIT it mirrors.

use extism_pdk::{FnResult, Json, config, host_fn, plugin_fn};
use serde::{Deserialize, Serialize};

/// `types.context`, the fields this plugin reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Context {
    #[allow(dead_code)]
    actor_id: String,
}

/// `moderation.message`, the fields this plugin reads.
#[derive(Deserialize)]
struct Message {
    content: String,
}

/// The input of `moderate`: its WIT parameters by name.
#[derive(Deserialize)]
struct ModerateInput {
    #[allow(dead_code)]
    ctx: Context,
    message: Message,
}

/// `types.refusal`.
#[derive(Serialize)]
struct Refusal {
    code: &'static str,
    reason: &'static str,
}

/// `moderation.verdict`: `{"tag": case, "val": payload}`.
#[derive(Serialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
enum Verdict {
    Allow,
    Reject(Refusal),
}

#[derive(Serialize)]
struct LogLine<'a> {
    level: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvRequest<'a> {
    Incr {
        key: &'a str,
        delta: i64,
        #[serde(rename = "ttlMs")]
        ttl_ms: Option<u64>,
    },
}

#[host_fn]
extern "ExtismHost" {
    fn lyceum_log(line: Json<LogLine<'_>>);
    fn lyceum_kv(request: Json<KvRequest<'_>>) -> Json<serde_json::Value>;
}

/// Declares the WIT version this module mirrors; the host never calls it.
#[plugin_fn]
pub fn lyceum_policy_v0_1_0(_: ()) -> FnResult<()> {
    Ok(())
}

fn log(level: &str, message: &str) {
    // Logging is best effort: a plugin over its per-call budget is silently dropped.
    let _ = unsafe { lyceum_log(Json(LogLine { level, message })) };
}

/// The `blocked` phrases, lowercased. A configuration value that is not a string arrives
/// as JSON text, as `config.get` gives it to components.
fn blocked() -> Vec<String> {
    let Ok(Some(text)) = config::get("blocked") else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<String>>(&text) {
        Ok(phrases) => phrases.into_iter().map(|p| p.to_lowercase()).collect(),
        Err(e) => {
            log("error", &format!("`blocked` must be a list of strings: {e}"));
            Vec::new()
        }
    }
}

#[plugin_fn]
pub fn moderate(Json(input): Json<ModerateInput>) -> FnResult<Json<Verdict>> {
    let content = input.message.content.to_lowercase();
    if blocked()
        .iter()
        .any(|p| !p.is_empty() && content.contains(p.as_str()))
    {
        // Counters live in the host store: an instance's memory may be gone by the next call.
        let counted = unsafe {
            lyceum_kv(Json(KvRequest::Incr {
                key: "refused",
                delta: 1,
                ttl_ms: None,
            }))
        };
        if !matches!(counted, Ok(Json(ref v)) if v["tag"] == "ok") {
            log("warn", "could not count a refusal");
        }
        return Ok(Json(Verdict::Reject(Refusal {
            code: "blocked_phrase",
            reason: "This message contains a blocked phrase.",
        })));
    }
    Ok(Json(Verdict::Allow))
}
