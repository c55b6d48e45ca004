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
