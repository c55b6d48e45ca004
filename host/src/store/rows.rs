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
