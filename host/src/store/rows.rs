//! Row shapes as the databases return them, and their conversion into domain types.
//! Enumerations are stored as text and checked on the way out, so a corrupt row is an error
//! rather than a panic.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::*;

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Other(anyhow::anyhow!("corrupt row: {what} = {value:?}"))
}

#[derive(sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub password_hash: String,
}

impl TryFrom<UserRow> for UserCredentials {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let role = Role::parse(&row.role).ok_or_else(|| corrupt("users.role", &row.role))?;
        Ok(UserCredentials {
            user: User {
                id: row.id,
                email: row.email,
                name: row.name,
                role,
                created_at: row.created_at,
            },
            password_hash: row.password_hash,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AccountChangeRow {
    pub seq: i64,
    pub user_id: UserId,
    pub role: Option<String>,
    pub changed_at: DateTime<Utc>,
}

impl TryFrom<AccountChangeRow> for super::AccountChange {
    type Error = StoreError;
    fn try_from(row: AccountChangeRow) -> Result<Self, StoreError> {
        let role = row
            .role
            .map(|text| Role::parse(&text).ok_or_else(|| corrupt("account_changes.role", &text)))
            .transpose()?;
        Ok(super::AccountChange {
            seq: row.seq,
            user: row.user_id,
            role,
            at: row.changed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub id: Uuid,
    pub family_id: TokenFamilyId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<RefreshTokenRow> for RefreshToken {
    fn from(row: RefreshTokenRow) -> Self {
        RefreshToken {
            id: row.id,
            family_id: row.family_id,
            user_id: row.user_id,
            expires_at: row.expires_at,
            used_at: row.used_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct CourseRow {
    pub id: CourseId,
    pub title: String,
    pub description: String,
    pub instructor_id: UserId,
    pub room_id: RoomId,
    pub created_at: DateTime<Utc>,
}

impl From<CourseRow> for Course {
    fn from(row: CourseRow) -> Self {
        Course {
            id: row.id,
            title: row.title,
            description: row.description,
            instructor_id: row.instructor_id,
            room_id: row.room_id,
            created_at: row.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct EnrollmentRow {
    pub id: Uuid,
    pub course_id: CourseId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

impl From<EnrollmentRow> for (Uuid, Enrollment) {
    fn from(row: EnrollmentRow) -> Self {
        (
            row.id,
            Enrollment {
                course_id: row.course_id,
                user_id: row.user_id,
                created_at: row.created_at,
            },
        )
    }
}

#[derive(sqlx::FromRow)]
pub struct SessionRow {
    pub id: SessionId,
    pub course_id: CourseId,
    pub title: String,
    pub status: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub max_participants: Option<i64>,
    pub room_id: RoomId,
}

impl TryFrom<SessionRow> for LiveSession {
    type Error = StoreError;
    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        let status = SessionStatus::parse(&row.status)
            .ok_or_else(|| corrupt("live_sessions.status", &row.status))?;
        Ok(LiveSession {
            id: row.id,
            course_id: row.course_id,
            title: row.title,
            status,
            scheduled_at: row.scheduled_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            max_participants: row
                .max_participants
                .map(|m| m.clamp(0, u32::MAX as i64) as u32),
            room_id: row.room_id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ParticipantRow {
    pub id: Uuid,
    pub user_id: UserId,
    pub name: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

impl From<ParticipantRow> for (Uuid, Participant) {
    fn from(row: ParticipantRow) -> Self {
        (
            row.id,
            Participant {
                user_id: row.user_id,
                name: row.name,
                joined_at: row.joined_at,
                left_at: row.left_at,
            },
        )
    }
}

#[derive(sqlx::FromRow)]
pub struct FileRow {
    pub id: FileId,
    pub owner_id: UserId,
    pub course_id: Option<CourseId>,
    pub folder: String,
    pub filename: String,
    pub original_name: String,
    pub size: i64,
    pub mimetype: String,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<FileRow> for FileRecord {
    type Error = StoreError;
    fn try_from(row: FileRow) -> Result<Self, StoreError> {
        let folder =
            Folder::parse(&row.folder).ok_or_else(|| corrupt("files.folder", &row.folder))?;
        Ok(FileRecord {
            id: row.id,
            owner_id: row.owner_id,
            course_id: row.course_id,
            folder,
            filename: row.filename,
            original_name: row.original_name,
            size: row.size.max(0) as u64,
            mimetype: row.mimetype,
            sha256: row.sha256,
            created_at: row.created_at,
        })
    }
}

/// One attachment row joined with its file, whose columns are all NULL once it is deleted.
#[derive(sqlx::FromRow)]
pub struct AttachmentRow {
    pub message_id: MessageId,
    pub file_id: FileId,
    pub f_id: Option<FileId>,
    pub owner_id: Option<UserId>,
    pub course_id: Option<CourseId>,
    pub folder: Option<String>,
    pub filename: Option<String>,
    pub original_name: Option<String>,
    pub size: Option<i64>,
    pub mimetype: Option<String>,
    pub sha256: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl TryFrom<AttachmentRow> for Attachment {
    type Error = StoreError;
    fn try_from(row: AttachmentRow) -> Result<Self, StoreError> {
        let file = match (
            row.f_id,
            row.owner_id,
            row.folder,
            row.filename,
            row.original_name,
            row.size,
            row.mimetype,
            row.sha256,
            row.created_at,
        ) {
            (
                Some(id),
                Some(owner_id),
                Some(folder),
                Some(filename),
                Some(original_name),
                Some(size),
                Some(mimetype),
                Some(sha256),
                Some(created_at),
            ) => Some(FileRecord::try_from(FileRow {
                id,
                owner_id,
                course_id: row.course_id,
                folder,
                filename,
                original_name,
                size,
                mimetype,
                sha256,
                created_at,
            })?),
            _ => None,
        };
        Ok(Attachment {
            message_id: row.message_id,
            file_id: row.file_id,
            file,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct PluginRevisionRow {
    pub slot: String,
    pub revision: i64,
    pub activated_at: DateTime<Utc>,
    pub activated_by: Option<UserId>,
    pub source: String,
    pub failure: String,
    pub chain: String,
    pub restored_from: Option<i64>,
}

impl TryFrom<PluginRevisionRow> for PluginRevision {
    type Error = StoreError;
    fn try_from(row: PluginRevisionRow) -> Result<Self, StoreError> {
        let chain = serde_json::from_str(&row.chain)
            .map_err(|_| corrupt("plugin_revisions.chain", &row.chain))?;
        Ok(PluginRevision {
            slot: row.slot,
            revision: row.revision,
            activated_at: row.activated_at,
            activated_by: row.activated_by,
            source: row.source,
            failure: row.failure,
            chain,
            restored_from: row.restored_from,
        })
    }
}

/// The module sha256s a chain's links name (`{"module": "<sha256>" | "builtin:…", …}`),
/// built-ins left out since they have no bytes to keep.
pub fn chain_modules(chain: &str) -> Result<Vec<String>, StoreError> {
    let links: Vec<serde_json::Value> =
        serde_json::from_str(chain).map_err(|_| corrupt("plugin_revisions.chain", chain))?;
    Ok(links
        .iter()
        .filter_map(|link| link.get("module")?.as_str())
        .filter(|module| !module.starts_with("builtin:"))
        .map(str::to_owned)
        .collect())
}
