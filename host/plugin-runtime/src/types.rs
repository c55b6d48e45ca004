//! The domain types the rest of the server exchanges with the policy engine. They mirror the
//! WIT contract (`wit/since_v0.1.0`) without exposing any WebAssembly machinery.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The three places where the server asks plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Chat messages, on send and on edit (`chat-moderation` world).
    Chat,
    /// Uploads, before and after the body (`file-validation` world).
    Files,
    /// Live session joins and WebRTC signals (`signaling-policy` world).
    Signaling,
}

impl Slot {
    /// Every slot, in a stable order.
    pub const ALL: [Slot; 3] = [Slot::Chat, Slot::Files, Slot::Signaling];

    /// The slot's name as in `plugins.toml` and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Chat => "chat",
            Slot::Files => "files",
            Slot::Signaling => "signaling",
        }
    }

    /// The WIT world a plugin in this slot must implement.
    pub fn world(self) -> &'static str {
        match self {
            Slot::Chat => "chat-moderation",
            Slot::Files => "file-validation",
            Slot::Signaling => "signaling-policy",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The acting user's role for one request: `Instructor` means the instructor of the course
/// the request belongs to, not merely an instructor account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A learner (or any member who is not the course's instructor).
    Student,
    /// The instructor of the course.
    Instructor,
    /// A platform administrator.
    Admin,
}

/// Who asks for what, where and when. Identifiers are opaque strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyContext {
    /// Unique per request; both calls of one upload must share it.
    pub request_id: String,
    /// The acting user.
    pub actor_id: String,
    /// The acting user's role for this request.
    pub actor_role: Role,
    /// The course, when the request belongs to one.
    pub course_id: Option<String>,
    /// The chat room, when the request belongs to one.
    pub room_id: Option<String>,
    /// The live session, when the request belongs to one.
    pub session_id: Option<String>,
    /// The thing judged, when the server knows its id (the message edited, the file
    /// uploaded); the decision audit records it.
    pub subject_id: Option<String>,
    /// When the server received the request. Plugins have no clock; this is their time.
    pub at: SystemTime,
}

impl PolicyContext {
    /// A context for `actor_id` acting as `actor_role` now, without course, room or session.
    pub fn new(
        request_id: impl Into<String>,
        actor_id: impl Into<String>,
        actor_role: Role,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            actor_id: actor_id.into(),
            actor_role,
            course_id: None,
            room_id: None,
            session_id: None,
            subject_id: None,
            at: SystemTime::now(),
        }
    }

    pub(crate) fn at_unix_ms(&self) -> u64 {
        self.at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Why a plugin refused something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A short snake_case code (`banned_word`, `session_full`, ...) for `details.reason`.
    pub code: String,
    /// A sentence for the person whose request was refused.
    pub reason: String,
}

/// Whether a chat message is new or an edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageEvent {
    /// A new message.
    Send,
    /// An edit of an existing message.
    Edit,
}

/// A chat message to moderate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModerationInput {
    /// The room the message belongs to.
    pub room_id: String,
    /// On edit, the message being edited.
    pub message_id: Option<String>,
    /// New message or edit.
    pub event: MessageEvent,
    /// The text as the sender wrote it.
    pub content: String,
    /// The message this one answers.
    pub reply_to: Option<String>,
    /// How many files are attached.
    pub attachment_count: u32,
}

impl ModerationInput {
    /// A new message with `content` in `room_id`, without reply or attachments.
    pub fn send(room_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            room_id: room_id.into(),
            message_id: None,
            event: MessageEvent::Send,
            content: content.into(),
            reply_to: None,
            attachment_count: 0,
        }
    }
}

/// What one moderation plugin answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModerationVerdict {
    /// Store the message as it is.
    Allow,
    /// Refuse the message.
    Reject(Refusal),
    /// Store this text instead.
    Rewrite {
        /// The replacement text.
        content: String,
    },
    /// Store the message flagged for the course's instructors.
    Flag {
        /// Why, for the instructors.
        reason: String,
    },
}

/// What a whole moderation chain decided.
///
/// Plugins run in order: the first rejection ends the chain, a rewrite is what the next
/// plugin sees, and flag reasons accumulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModerationDecision {
    /// Store the message.
    Allow {
        /// The text to store when a plugin rewrote it; `None` keeps the original.
        content: Option<String>,
        /// Reasons to flag the message; empty when it is not flagged.
        flags: Vec<String>,
    },
    /// Refuse the message (HTTP: `REJECTED_BY_POLICY` with `details.reason = code`).
    Reject(Refusal),
}

impl ModerationDecision {
    /// The decision of an empty chain.
    pub fn allow() -> Self {
        ModerationDecision::Allow {
            content: None,
            flags: Vec::new(),
        }
    }
}

/// An upload before its body is kept: checked by `precheck`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePrecheck {
    /// The file name the client gave.
    pub name: String,
    /// The folder the client asked for, or `None` to let policy choose.
    pub folder: Option<String>,
    /// The media type the client declared.
    pub declared_type: Option<String>,
    /// The size the client declared, in bytes.
    pub declared_size: Option<u64>,
    /// The media type the server detected, if any.
    pub sniffed_type: Option<String>,
    /// The first [`FilePrecheck::HEAD_LEN`] bytes of the body (all of it when smaller).
    pub head: Vec<u8>,
}

impl FilePrecheck {
    /// How many leading bytes of an upload plugins see.
    pub const HEAD_LEN: usize = 64 * 1024;
}

/// A complete upload, before it is published: checked by `finish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFinish {
    /// The file name, as corrected by `precheck`.
    pub name: String,
    /// The folder, as corrected by `precheck`.
    pub folder: Option<String>,
    /// The media type the client declared.
    pub declared_type: Option<String>,
    /// The exact size in bytes.
    pub size: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
    /// The media type the server detected, if any.
    pub sniffed_type: Option<String>,
}

/// A file decision, of one plugin or of a whole chain.
///
/// In a chain, corrections feed the next plugin, and the chain's `Accept` carries every
/// correction made (`None` where nothing was corrected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileVerdict {
    /// Go on, storing the file in `folder` and under `name` when they are given.
    Accept {
        /// Corrected folder.
        folder: Option<String>,
        /// Corrected original name.
        name: Option<String>,
    },
    /// Refuse the upload (HTTP: `REJECTED_BY_POLICY`, or 413/415 for the codes
    /// `too_large` and `type_not_allowed` if the caller prefers).
    Reject(Refusal),
}

/// The state of a live session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Not started.
    Scheduled,
    /// Started and not ended.
    Live,
    /// Over.
    Ended,
}

/// A request to join a live session's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinCheck {
    /// The session.
    pub session_id: String,
    /// Its current state.
    pub state: SessionState,
    /// Participants in the call now, not counting the one asking.
    pub participant_count: u32,
    /// The session's limit, if any.
    pub max_participants: Option<u32>,
}

/// A join decision, of one plugin or of a chain (the first `Deny` wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinVerdict {
    /// Let the user in.
    Allow,
    /// Keep the user out.
    Deny(Refusal),
}

/// The kind of a signaling message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// SDP offer.
    Offer,
    /// SDP answer.
    Answer,
    /// ICE candidate.
    IceCandidate,
}

/// A signaling message on its way between two peers of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalCheck {
    /// The session both peers joined.
    pub session_id: String,
    /// What the payload is.
    pub kind: SignalKind,
    /// The sender's connection id.
    pub from: String,
    /// The receiver's connection id.
    pub to: String,
    /// The payload as JSON text (the SDP, or the candidate object).
    pub payload: String,
}

/// A signal decision, of one plugin or of a chain (a rewrite feeds the next plugin; the
/// chain answers `Rewrite` when any plugin rewrote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalVerdict {
    /// Deliver as is.
    Relay,
    /// Deliver this payload instead.
    Rewrite {
        /// The replacement payload, JSON text of the same shape.
        payload: String,
    },
    /// Do not deliver.
    Drop(Refusal),
}
