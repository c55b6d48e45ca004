//! The entities of the contract as the services and store see them, with their JSON shapes.
//!
//! Ids are UUIDv7 newtypes: the time-ordered bytes make `ORDER BY id` the creation order on
//! both databases, which is what the cursors rely on.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! id_type {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    )*};
}

id_type!(
    UserId,
    CourseId,
    SessionId,
    RoomId,
    MessageId,
    FileId,
    TokenFamilyId
);

/// The current time at the precision both databases keep (microseconds), so a value read back
/// equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Instructor => "instructor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "student" => Some(Role::Student),
            "instructor" => Some(Role::Instructor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A user together with the password hash, which never leaves the services.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: CourseId,
    pub title: String,
    pub description: String,
    pub instructor_id: UserId,
    pub room_id: RoomId,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub course_id: CourseId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Scheduled,
    Live,
    Ended,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Scheduled => "scheduled",
            SessionStatus::Live => "live",
            SessionStatus::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<SessionStatus> {
        match text {
            "scheduled" => Some(SessionStatus::Scheduled),
            "live" => Some(SessionStatus::Live),
            "ended" => Some(SessionStatus::Ended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveSession {
    pub id: SessionId,
    pub course_id: CourseId,
    pub title: String,
    pub status: SessionStatus,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub max_participants: Option<u32>,
    pub room_id: RoomId,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: UserId,
    pub name: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

/// One stored refresh token (only its hash is kept).
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: Uuid,
    pub family_id: TokenFamilyId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A page of a list endpoint: `{items, nextCursor}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// What a chat room belongs to: a course's chat or a live session's side chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomOwner {
    Course(CourseId),
    Session {
        session: SessionId,
        course: CourseId,
    },
}

impl RoomOwner {
    pub fn course_id(self) -> CourseId {
        match self {
            RoomOwner::Course(course) => course,
            RoomOwner::Session { course, .. } => course,
        }
    }
}

/// The upload folders of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Folder {
    Documents,
    Images,
    Videos,
    Misc,
}

impl Folder {
    pub const ALL: [Folder; 4] = [
        Folder::Documents,
        Folder::Images,
        Folder::Videos,
        Folder::Misc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Documents => "documents",
            Folder::Images => "images",
            Folder::Videos => "videos",
            Folder::Misc => "misc",
        }
    }

    pub fn parse(text: &str) -> Option<Folder> {
        Folder::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// A stored file's metadata (the bytes live in the upload store).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: FileId,
    pub owner_id: UserId,
    pub course_id: Option<CourseId>,
    pub folder: Folder,
    pub filename: String,
    pub original_name: String,
    pub size: u64,
    pub mimetype: String,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// The contract's `message`: one shape from the database row to the JSON a client reads.
/// The store fills every column; `attachments` come from their own table and are added by
/// the chat service, which signs their links.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub sender_name: String,
    pub content: String,
    pub client_id: Option<String>,
    pub reply_to: Option<MessageId>,
    #[sqlx(skip)]
    pub attachments: Vec<AttachmentView>,
    pub flagged: bool,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The contract's `file` object.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub id: FileId,
    pub url: String,
    pub signed_url: String,
    pub filename: String,
    pub original_name: String,
    pub size: u64,
    pub mimetype: String,
    pub folder: Folder,
    pub sha256: String,
    pub course_id: Option<CourseId>,
    pub created_at: DateTime<Utc>,
}

/// An attachment as a message carries it: the file, or `{id, deleted: true}`.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum AttachmentView {
    File(FileView),
    Deleted { id: FileId, deleted: bool },
}

/// An attachment of a message: the file, or only its id once the file was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub message_id: MessageId,
    pub file_id: FileId,
    pub file: Option<FileRecord>,
}

// ---------------------------------------------------------------------------------------------
// Policy plugins: modules, slot revisions and the decision audit, as stored and as the admin API
// returns them. Slots, ABIs, sources, failure modes and verdicts are plain text here: the plugin
// runtime owns those enumerations and the plugin service converts at its edge.
// ---------------------------------------------------------------------------------------------

/// The contract's `module`: an uploaded WebAssembly module, named by the lowercase hex SHA-256
/// of its bytes (the bytes themselves live on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PluginModule {
    pub sha256: String,
    pub name: String,
    /// `component` or `extism`.
    pub abi: String,
    /// The WIT world it exports, such as `chat-moderation`.
    pub world: String,
    pub wit_version: String,
    /// Bytes.
    #[sqlx(try_from = "i64")]
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

/// The contract's `revision`: one activation of a slot's chain. Revisions are numbered 1, 2,
/// 3… per slot and never change; a rollback is a new revision that restores an older chain.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginRevision {
    /// Implied by the URL the revision is listed under.
    #[serde(skip)]
    pub slot: String,
    pub revision: i64,
    pub activated_at: DateTime<Utc>,
    /// The admin who made the change; `null` for revisions read from plugins.toml.
    pub activated_by: Option<UserId>,
    /// `api`, `file`, `rollback` or `promote`.
    pub source: String,
    /// The slot's default failure mode: `fail-closed` or `fail-open`.
    pub failure: String,
    /// The links exactly as they were given.
    #[schema(value_type = Vec<Object>)]
    pub chain: serde_json::Value,
    /// For a rollback, the revision whose chain it restored.
    pub restored_from: Option<i64>,
}

/// A revision to record; the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPluginRevision {
    pub slot: String,
    pub activated_by: Option<UserId>,
    pub source: String,
    pub failure: String,
    /// A JSON array of links.
    pub chain: serde_json::Value,
    pub restored_from: Option<i64>,
}

/// One audited plugin decision: every verdict other than allow/accept/relay, and every shadow
/// disagreement. It names the content only by its hash. Ids are text because that is how the
/// plugins see them.
///
/// Serialises as the contract's `decision`, with the plugin as a nested `{name, sha256}` and
/// the optional context left out when absent.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PluginDecision {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub slot: String,
    pub plugin_name: String,
    pub plugin_sha256: String,
    /// `reject`, `flag`, `rewrite`, `deny`, `drop`… or the kind of failure.
    pub verdict: String,
    pub reason: Option<String>,
    pub shadow: bool,
    pub actor_id: Option<String>,
    pub course_id: Option<String>,
    pub room_id: Option<String>,
    pub session_id: Option<String>,
    pub subject_id: Option<String>,
    pub request_id: String,
    pub content_sha256: Option<String>,
}

/// The JSON shape of a [`PluginDecision`], borrowed from it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PluginDecision)]
struct DecisionShape<'a> {
    id: Uuid,
    at: DateTime<Utc>,
    slot: &'a str,
    plugin: DecisionPlugin<'a>,
    verdict: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    shadow: bool,
    actor_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    course_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_id: Option<&'a str>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_sha256: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PluginDecisionPlugin)]
struct DecisionPlugin<'a> {
    name: &'a str,
    sha256: &'a str,
}

impl Serialize for PluginDecision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DecisionShape {
            id: self.id,
            at: self.at,
            slot: &self.slot,
            plugin: DecisionPlugin {
                name: &self.plugin_name,
                sha256: &self.plugin_sha256,
            },
            verdict: &self.verdict,
            reason: self.reason.as_deref(),
            shadow: self.shadow,
            actor_id: self.actor_id.as_deref(),
            course_id: self.course_id.as_deref(),
            room_id: self.room_id.as_deref(),
            session_id: self.session_id.as_deref(),
            subject_id: self.subject_id.as_deref(),
            request_id: &self.request_id,
            content_sha256: self.content_sha256.as_deref(),
        }
        .serialize(serializer)
    }
}

impl utoipa::PartialSchema for PluginDecision {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        DecisionShape::schema()
    }
}

impl ToSchema for PluginDecision {
    fn name() -> std::borrow::Cow<'static, str> {
        "PluginDecision".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        DecisionShape::schemas(schemas);
    }
}

/// A page of the decision audit, newest first. Every filter is optional; the time window is
/// half-open, `since <= at < until`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionQuery {
    pub slot: Option<String>,
    pub verdict: Option<String>,
    pub plugin_sha256: Option<String>,
    pub shadow: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The cursor: only decisions strictly older (by id) than this one.
    pub before_id: Option<Uuid>,
    pub limit: u32,
}

#[cfg(test)]
mod plugin_decision_schema {
    use std::collections::BTreeSet;

    use utoipa::{PartialSchema, ToSchema};

    use super::PluginDecision;

    #[test]
    fn documents_the_contract_shape_not_the_row() {
        assert_eq!(PluginDecision::name(), "PluginDecision");
        let schema = serde_json::to_value(PluginDecision::schema()).unwrap();
        let names = |value: &serde_json::Value| -> BTreeSet<String> {
            match value {
                serde_json::Value::Object(map) => map.keys().cloned().collect(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => BTreeSet::new(),
            }
        };
        let properties = names(&schema["properties"]);
        assert!(properties.contains("plugin") && properties.contains("actorId"));
        assert!(!properties.contains("pluginName"), "the plugin is nested");
        let required = names(&schema["required"]);
        assert!(required.contains("requestId") && !required.contains("courseId"));
    }
}
