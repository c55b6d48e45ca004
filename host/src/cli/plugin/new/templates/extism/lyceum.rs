//! The Lyceum policy contract, `lyceum:policy@0.1.0` (its WIT is in `wit/`), as an Extism
//! module speaks it: each exported function takes its WIT parameters as one JSON object
//! (`{"ctx": …, "message": …}`) and returns the WIT result as JSON. Records are objects with
//! lowerCamelCase fields, options are a value or `null`, enums are their WIT case names,
//! variants are `{"tag": case, "val": payload}`, `list<u8>` is base64.
//!
//! The host's three interfaces are the host functions `lyceum_log` and `lyceum_kv` (namespace
//! `extism:host/user`) and the Extism configuration (`config.get`). The export
//! `lyceum_policy_v0_1_0` declares which version of the WIT this module mirrors.
//!
//! Each policy uses the types of its own slot; the others are here for reference.
#![allow(dead_code)]

use extism_pdk::{FnResult, Json, host_fn, plugin_fn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Declares the WIT version this module mirrors; the host never calls it.
#[plugin_fn]
pub fn lyceum_policy_v0_1_0(_: ()) -> FnResult<()> {
    Ok(())
}

/// `types.role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

/// `types.context`: who asks for what, where and when.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub request_id: String,
    pub actor_id: String,
    pub actor_role: Role,
    pub course_id: Option<String>,
    pub room_id: Option<String>,
    pub session_id: Option<String>,
    /// The request's time: plugins have no clock of their own.
    pub at_unix_ms: u64,
}

/// `types.refusal`.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// snake_case; clients receive it as `details.reason`.
    pub code: String,
    /// A sentence for the person refused.
    pub reason: String,
}

/// Shorthand for a [`Refusal`].
pub fn refusal(code: &str, reason: &str) -> Refusal {
    Refusal {
        code: code.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `moderation.message-event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageEvent {
    Send,
    Edit,
}

/// `moderation.message`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub room_id: String,
    pub message_id: Option<String>,
    pub event: MessageEvent,
    pub content: String,
    pub reply_to: Option<String>,
    pub attachment_count: u32,
}

/// `moderation.verdict`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum Verdict {
    Allow,
    Reject(Refusal),
    Rewrite(String),
    Flag(String),
}

/// The input of `moderate`.
#[derive(Clone, Debug, Deserialize)]
pub struct ModerateInput {
    pub ctx: Context,
    pub message: Message,
}

/// `files.upload-head`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadHead {
    pub name: String,
    pub folder: Option<String>,
    pub declared_type: Option<String>,
    pub declared_size: Option<u64>,
    pub sniffed_type: Option<String>,
    /// The first bytes of the body, base64.
    pub head: String,
}

/// `files.upload-done`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadDone {
    pub name: String,
    pub folder: Option<String>,
    pub declared_type: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub sniffed_type: Option<String>,
}

/// `files.placement`: `None` keeps what the client gave.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Placement {
    pub folder: Option<String>,
    pub name: Option<String>,
}

/// `files.file-verdict`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum FileVerdict {
    Accept(Placement),
    Reject(Refusal),
}

/// The input of `precheck`.
#[derive(Clone, Debug, Deserialize)]
pub struct PrecheckInput {
    pub ctx: Context,
    pub upload: UploadHead,
}

/// The input of `finish`.
#[derive(Clone, Debug, Deserialize)]
pub struct FinishInput {
    pub ctx: Context,
    pub upload: UploadDone,
}

/// `signaling.session-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionState {
    Scheduled,
    Live,
    Ended,
}

/// `signaling.join-request`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub session_id: String,
    pub state: SessionState,
    /// Not counting the one asking.
    pub participant_count: u32,
    pub max_participants: Option<u32>,
}

/// `signaling.join-verdict`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum JoinVerdict {
    Allow,
    Deny(Refusal),
}

/// `signaling.signal-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
}

/// `signaling.signal`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    pub session_id: String,
    pub kind: SignalKind,
    pub from: String,
    pub to: String,
    /// JSON text.
    pub payload: String,
}

/// `signaling.signal-verdict`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum SignalVerdict {
    Relay,
    Rewrite(String),
    Drop(Refusal),
}

/// The input of `check_join`.
#[derive(Clone, Debug, Deserialize)]
pub struct CheckJoinInput {
    pub ctx: Context,
    pub request: JoinRequest,
}

/// The input of `check_signal`.
#[derive(Clone, Debug, Deserialize)]
pub struct CheckSignalInput {
    pub ctx: Context,
    pub signal: Signal,
}

#[derive(Serialize)]
struct LogLine<'a> {
    level: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvRequest<'a> {
    Get {
        key: &'a str,
    },
    Set {
        key: &'a str,
        value: &'a str,
        #[serde(rename = "ttlMs")]
        ttl_ms: Option<u64>,
    },
    Incr {
        key: &'a str,
        delta: i64,
        #[serde(rename = "ttlMs")]
        ttl_ms: Option<u64>,
    },
}

/// `kv.kv-error`: why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum KvError {
    /// The store cannot be reached right now.
    Unavailable,
    /// The key or value is unacceptable; the text says which.
    Invalid(String),
    /// The plugin holds too many keys.
    Full,
}

#[host_fn]
extern "ExtismHost" {
    fn lyceum_log(line: Json<LogLine<'_>>);
    fn lyceum_kv(request: Json<KvRequest<'_>>) -> Json<Value>;
}

/// Writes a line to the server's log under the plugin's name: `trace`, `debug`, `info`,
/// `warn` or `error`. Never log the content being judged.
pub fn log(level: &str, message: &str) {
    // Best effort: the host drops lines past its per-call budget.
    let _ = unsafe { lyceum_log(Json(LogLine { level, message })) };
}

fn kv(request: KvRequest<'_>) -> Result<Value, KvError> {
    let Json(answer) = unsafe { lyceum_kv(Json(request)) }.map_err(|_| KvError::Unavailable)?;
    match answer.get("tag").and_then(Value::as_str) {
        Some("ok") => Ok(answer.get("val").cloned().unwrap_or(Value::Null)),
        Some("err") => Err(answer
            .get("val")
            .cloned()
            .and_then(|e| serde_json::from_value(e).ok())
            .unwrap_or(KvError::Unavailable)),
        _ => Err(KvError::Invalid(format!("unexpected answer: {answer}"))),
    }
}

/// `kv.get`: the value, `None` when absent or expired.
pub fn kv_get(key: &str) -> Result<Option<String>, KvError> {
    kv(KvRequest::Get { key }).map(|value| value.as_str().map(str::to_owned))
}

/// `kv.set`: with `ttl_ms`, the key expires that many milliseconds later.
pub fn kv_set(key: &str, value: &str, ttl_ms: Option<u64>) -> Result<(), KvError> {
    kv(KvRequest::Set { key, value, ttl_ms }).map(|_| ())
}

/// `kv.incr`: adds `delta` atomically and returns the new value; a missing key counts as 0
/// and is created with `ttl_ms` as its lifetime.
pub fn kv_incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
    let value = kv(KvRequest::Incr { key, delta, ttl_ms })?;
    value
        .as_i64()
        .ok_or_else(|| KvError::Invalid(format!("not a counter: {value}")))
}

/// One top-level key of the plugin's configuration, as `T`: `None` when absent. A string
/// value arrives as it is and any other value as JSON text, as `config.get` gives them to
/// components.
pub fn config<T: DeserializeOwned>(key: &str) -> Result<Option<T>, String> {
    let text = match extism_pdk::config::get(key) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read `{key}`: {e}")),
    };
    serde_json::from_str(&text)
        .or_else(|_| serde_json::from_value(Value::String(text)))
        .map(Some)
        .map_err(|e| format!("invalid configuration `{key}`: {e}"))
}

/// Counts one event against a fixed-window limit kept in the host's store.
///
/// Returns whether the event is within `limit` events per window of `window_ms`
/// milliseconds, windows being aligned on multiples of `window_ms` since the epoch. `key`
/// identifies what is counted (say `"msg:" + actor id`); the window number is appended. The
/// counter lives for one window, so the store cleans up after itself.
pub fn fixed_window_allows(
    key: &str,
    limit: u64,
    window_ms: u64,
    now_ms: u64,
) -> Result<bool, KvError> {
    let window_ms = window_ms.max(1);
    let window = now_ms / window_ms;
    let remaining = window_ms - now_ms % window_ms;
    let count = kv_incr(&format!("{key}:{window}"), 1, Some(remaining))?;
    Ok(count <= i64::try_from(limit).unwrap_or(i64::MAX))
}
