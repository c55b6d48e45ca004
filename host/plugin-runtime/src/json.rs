//! The JSON encoding of `lyceum:policy@0.1.0`: one JSON form for every WIT value, used by
//! Extism modules (which exchange bytes, not component values) and by `lyceum plugin test`
//! cases. `wit/README.md` describes it for plugin authors; this module is its definition.
//!
//! Records are objects with lowerCamelCase field names, options are the value or `null`,
//! enums are their WIT case names, variants are `{"tag": case, "val": payload}` (the shape
//! JavaScript bindings use), `list<u8>` is base64, and a function's input is an object keyed
//! by its WIT parameter names.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::types::{
    self as domain, FileFinish, FilePrecheck, JoinCheck, ModerationInput, ModerationVerdict,
    PolicyContext, SignalCheck,
};

/// The exported function names, by WIT function.
pub const MODERATE: &str = "moderate";
/// `files.precheck`.
pub const PRECHECK: &str = "precheck";
/// `files.finish`.
pub const FINISH: &str = "finish";
/// `signaling.check-join`.
pub const CHECK_JOIN: &str = "check_join";
/// `signaling.check-signal`.
pub const CHECK_SIGNAL: &str = "check_signal";

/// `types.role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

/// `types.context`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub request_id: String,
    pub actor_id: String,
    pub actor_role: Role,
    #[serde(default)]
    pub course_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    pub at_unix_ms: u64,
}

/// `types.refusal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub reason: String,
}

/// `moderation.message-event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageEvent {
    Send,
    Edit,
}

/// `moderation.message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub room_id: String,
    #[serde(default)]
    pub message_id: Option<String>,
    pub event: MessageEvent,
    pub content: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub attachment_count: u32,
}

/// `moderation.verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum Verdict {
    Allow,
    Reject(Refusal),
    Rewrite(String),
    Flag(String),
}

/// `files.upload-head`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadHead {
    pub name: String,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub declared_type: Option<String>,
    #[serde(default)]
    pub declared_size: Option<u64>,
    #[serde(default)]
    pub sniffed_type: Option<String>,
    #[serde(with = "base64_bytes")]
    pub head: Vec<u8>,
}

/// `files.upload-done`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadDone {
    pub name: String,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub declared_type: Option<String>,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub sniffed_type: Option<String>,
}

/// `files.placement`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `files.file-verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum FileVerdict {
    Accept(Placement),
    Reject(Refusal),
}

/// `signaling.session-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionState {
    Scheduled,
    Live,
    Ended,
}

/// `signaling.join-request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub session_id: String,
    pub state: SessionState,
    pub participant_count: u32,
    #[serde(default)]
    pub max_participants: Option<u32>,
}

/// `signaling.join-verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum JoinVerdict {
    Allow,
    Deny(Refusal),
}

/// `signaling.signal-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
}

/// `signaling.signal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    pub session_id: String,
    pub kind: SignalKind,
    pub from: String,
    pub to: String,
    pub payload: String,
}

/// `signaling.signal-verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
pub enum SignalVerdict {
    Relay,
    Rewrite(String),
    Drop(Refusal),
}

/// The input of `moderate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerateInput {
    pub ctx: Context,
    pub message: Message,
}

/// The input of `precheck`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckInput {
    pub ctx: Context,
    pub upload: UploadHead,
}

/// The input of `finish`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishInput {
    pub ctx: Context,
    pub upload: UploadDone,
}

/// The input of `check_join`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckJoinInput {
    pub ctx: Context,
    pub request: JoinRequest,
}

/// The input of `check_signal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSignalInput {
    pub ctx: Context,
    pub signal: Signal,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

// Conversions between the domain types the engine uses and their JSON forms.

impl From<&PolicyContext> for Context {
    fn from(ctx: &PolicyContext) -> Self {
        Self {
            request_id: ctx.request_id.clone(),
            actor_id: ctx.actor_id.clone(),
            actor_role: match ctx.actor_role {
                domain::Role::Student => Role::Student,
                domain::Role::Instructor => Role::Instructor,
                domain::Role::Admin => Role::Admin,
            },
            course_id: ctx.course_id.clone(),
            room_id: ctx.room_id.clone(),
            session_id: ctx.session_id.clone(),
            at_unix_ms: ctx.at_unix_ms(),
        }
    }
}

impl From<Context> for PolicyContext {
    fn from(ctx: Context) -> Self {
        let mut out = PolicyContext::new(
            ctx.request_id,
            ctx.actor_id,
            match ctx.actor_role {
                Role::Student => domain::Role::Student,
                Role::Instructor => domain::Role::Instructor,
                Role::Admin => domain::Role::Admin,
            },
        );
        out.course_id = ctx.course_id;
        out.room_id = ctx.room_id;
        out.session_id = ctx.session_id;
        out.at = UNIX_EPOCH + Duration::from_millis(ctx.at_unix_ms);
        out
    }
}

impl From<Refusal> for domain::Refusal {
    fn from(r: Refusal) -> Self {
        Self {
            code: r.code,
            reason: r.reason,
        }
    }
}

impl From<&domain::Refusal> for Refusal {
    fn from(r: &domain::Refusal) -> Self {
        Self {
            code: r.code.clone(),
            reason: r.reason.clone(),
        }
    }
}

impl Message {
    /// The message as the engine hands it to a plugin: `content` may differ from the
    /// input's when an earlier plugin in the chain rewrote it.
    pub fn new(input: &ModerationInput, content: &str) -> Self {
        Self {
            room_id: input.room_id.clone(),
            message_id: input.message_id.clone(),
            event: match input.event {
                domain::MessageEvent::Send => MessageEvent::Send,
                domain::MessageEvent::Edit => MessageEvent::Edit,
            },
            content: content.to_owned(),
            reply_to: input.reply_to.clone(),
            attachment_count: input.attachment_count,
        }
    }
}

impl From<Message> for ModerationInput {
    fn from(m: Message) -> Self {
        Self {
            room_id: m.room_id,
            message_id: m.message_id,
            event: match m.event {
                MessageEvent::Send => domain::MessageEvent::Send,
                MessageEvent::Edit => domain::MessageEvent::Edit,
            },
            content: m.content,
            reply_to: m.reply_to,
            attachment_count: m.attachment_count,
        }
    }
}

impl From<Verdict> for ModerationVerdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => Self::Allow,
            Verdict::Reject(r) => Self::Reject(r.into()),
            Verdict::Rewrite(content) => Self::Rewrite { content },
            Verdict::Flag(reason) => Self::Flag { reason },
        }
    }
}

impl From<&ModerationVerdict> for Verdict {
    fn from(v: &ModerationVerdict) -> Self {
        match v {
            ModerationVerdict::Allow => Self::Allow,
            ModerationVerdict::Reject(r) => Self::Reject(r.into()),
            ModerationVerdict::Rewrite { content } => Self::Rewrite(content.clone()),
            ModerationVerdict::Flag { reason } => Self::Flag(reason.clone()),
        }
    }
}

impl UploadHead {
    /// The upload as the engine hands it to a plugin, with the (possibly corrected) name and
    /// folder and at most [`FilePrecheck::HEAD_LEN`] bytes of head.
    pub fn new(input: &FilePrecheck, name: &str, folder: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            folder: folder.map(str::to_owned),
            declared_type: input.declared_type.clone(),
            declared_size: input.declared_size,
            sniffed_type: input.sniffed_type.clone(),
            head: input.head[..input.head.len().min(FilePrecheck::HEAD_LEN)].to_vec(),
        }
    }
}

impl From<UploadHead> for FilePrecheck {
    fn from(u: UploadHead) -> Self {
        Self {
            name: u.name,
            folder: u.folder,
            declared_type: u.declared_type,
            declared_size: u.declared_size,
            sniffed_type: u.sniffed_type,
            head: u.head,
        }
    }
}

impl UploadDone {
    /// The finished upload as the engine hands it to a plugin.
    pub fn new(input: &FileFinish, name: &str, folder: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            folder: folder.map(str::to_owned),
            declared_type: input.declared_type.clone(),
            size: input.size,
            sha256: input.sha256.clone(),
            sniffed_type: input.sniffed_type.clone(),
        }
    }
}

impl From<UploadDone> for FileFinish {
    fn from(u: UploadDone) -> Self {
        Self {
            name: u.name,
            folder: u.folder,
            declared_type: u.declared_type,
            size: u.size,
            sha256: u.sha256,
            sniffed_type: u.sniffed_type,
        }
    }
}

impl From<FileVerdict> for domain::FileVerdict {
    fn from(v: FileVerdict) -> Self {
        match v {
            FileVerdict::Accept(p) => Self::Accept {
                folder: p.folder,
                name: p.name,
            },
            FileVerdict::Reject(r) => Self::Reject(r.into()),
        }
    }
}

impl From<&domain::FileVerdict> for FileVerdict {
    fn from(v: &domain::FileVerdict) -> Self {
        match v {
            domain::FileVerdict::Accept { folder, name } => Self::Accept(Placement {
                folder: folder.clone(),
                name: name.clone(),
            }),
            domain::FileVerdict::Reject(r) => Self::Reject(r.into()),
        }
    }
}

impl From<&JoinCheck> for JoinRequest {
    fn from(j: &JoinCheck) -> Self {
        Self {
            session_id: j.session_id.clone(),
            state: match j.state {
                domain::SessionState::Scheduled => SessionState::Scheduled,
                domain::SessionState::Live => SessionState::Live,
                domain::SessionState::Ended => SessionState::Ended,
            },
            participant_count: j.participant_count,
            max_participants: j.max_participants,
        }
    }
}

impl From<JoinRequest> for JoinCheck {
    fn from(j: JoinRequest) -> Self {
        Self {
            session_id: j.session_id,
            state: match j.state {
                SessionState::Scheduled => domain::SessionState::Scheduled,
                SessionState::Live => domain::SessionState::Live,
                SessionState::Ended => domain::SessionState::Ended,
            },
            participant_count: j.participant_count,
            max_participants: j.max_participants,
        }
    }
}

impl From<JoinVerdict> for domain::JoinVerdict {
    fn from(v: JoinVerdict) -> Self {
        match v {
            JoinVerdict::Allow => Self::Allow,
            JoinVerdict::Deny(r) => Self::Deny(r.into()),
        }
    }
}

impl From<&domain::JoinVerdict> for JoinVerdict {
    fn from(v: &domain::JoinVerdict) -> Self {
        match v {
            domain::JoinVerdict::Allow => Self::Allow,
            domain::JoinVerdict::Deny(r) => Self::Deny(r.into()),
        }
    }
}

impl Signal {
    /// The signal as the engine hands it to a plugin: `payload` may differ from the input's
    /// when an earlier plugin in the chain rewrote it.
    pub fn new(input: &SignalCheck, payload: &str) -> Self {
        Self {
            session_id: input.session_id.clone(),
            kind: match input.kind {
                domain::SignalKind::Offer => SignalKind::Offer,
                domain::SignalKind::Answer => SignalKind::Answer,
                domain::SignalKind::IceCandidate => SignalKind::IceCandidate,
            },
            from: input.from.clone(),
            to: input.to.clone(),
            payload: payload.to_owned(),
        }
    }
}

impl From<Signal> for SignalCheck {
    fn from(s: Signal) -> Self {
        Self {
            session_id: s.session_id,
            kind: match s.kind {
                SignalKind::Offer => domain::SignalKind::Offer,
                SignalKind::Answer => domain::SignalKind::Answer,
                SignalKind::IceCandidate => domain::SignalKind::IceCandidate,
            },
            from: s.from,
            to: s.to,
            payload: s.payload,
        }
    }
}

impl From<SignalVerdict> for domain::SignalVerdict {
    fn from(v: SignalVerdict) -> Self {
        match v {
            SignalVerdict::Relay => Self::Relay,
            SignalVerdict::Rewrite(payload) => Self::Rewrite { payload },
            SignalVerdict::Drop(r) => Self::Drop(r.into()),
        }
    }
}

impl From<&domain::SignalVerdict> for SignalVerdict {
    fn from(v: &domain::SignalVerdict) -> Self {
        match v {
            domain::SignalVerdict::Relay => Self::Relay,
            domain::SignalVerdict::Rewrite { payload } => Self::Rewrite(payload.clone()),
            domain::SignalVerdict::Drop(r) => Self::Drop(r.into()),
        }
    }
}

/// Encodes bytes the way `list<u8>` is encoded.
pub fn encode_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_moderate_input_reads_as_the_documented_example() {
        let mut ctx = PolicyContext::new("r1", "u1", domain::Role::Student);
        ctx.course_id = Some("c1".into());
        ctx.room_id = Some("c1".into());
        ctx.at = UNIX_EPOCH + Duration::from_millis(1_764_777_600_000);
        let input = ModerateInput {
            ctx: (&ctx).into(),
            message: Message::new(&ModerationInput::send("c1", "ignored"), "hello"),
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({
                "ctx": {"requestId": "r1", "actorId": "u1", "actorRole": "student",
                        "courseId": "c1", "roomId": "c1", "sessionId": null,
                        "atUnixMs": 1_764_777_600_000u64},
                "message": {"roomId": "c1", "messageId": null, "event": "send",
                            "content": "hello", "replyTo": null, "attachmentCount": 0}
            })
        );
    }

    #[test]
    fn variants_are_tagged_with_their_wit_case_names() {
        let reject: Verdict = serde_json::from_value(
            json!({"tag": "reject", "val": {"code": "spam", "reason": "no"}}),
        )
        .unwrap();
        assert_eq!(
            ModerationVerdict::from(reject),
            ModerationVerdict::Reject(domain::Refusal {
                code: "spam".into(),
                reason: "no".into()
            })
        );
        assert_eq!(
            serde_json::to_value(Verdict::Allow).unwrap(),
            json!({"tag": "allow"})
        );
        assert_eq!(
            serde_json::to_value(SignalKind::IceCandidate).unwrap(),
            json!("ice-candidate")
        );
        // A placement's fields may be left out; the placement itself may not.
        let accept: FileVerdict =
            serde_json::from_value(json!({"tag": "accept", "val": {}})).unwrap();
        assert_eq!(
            domain::FileVerdict::from(accept),
            domain::FileVerdict::Accept {
                folder: None,
                name: None
            }
        );
        assert!(serde_json::from_value::<FileVerdict>(json!({"tag": "accept"})).is_err());
        assert!(serde_json::from_value::<Verdict>(json!({"tag": "maybe"})).is_err());
    }

    #[test]
    fn upload_heads_carry_base64_bytes_and_round_trip() {
        let precheck = FilePrecheck {
            name: "a.txt".into(),
            folder: None,
            declared_type: Some("text/plain".into()),
            declared_size: Some(5),
            sniffed_type: None,
            head: b"hello".to_vec(),
        };
        let head = UploadHead::new(&precheck, "a.txt", None);
        let value = serde_json::to_value(&head).unwrap();
        assert_eq!(value["head"], json!("aGVsbG8="));
        let back: UploadHead = serde_json::from_value(value).unwrap();
        assert_eq!(FilePrecheck::from(back), precheck);
    }
}
