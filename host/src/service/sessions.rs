//! Live sessions: scheduling, the scheduled → live → ended life cycle, attendance.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::{Actor, access::CourseAccess, paging::PageRequest, validate};
use crate::{
    domain::{CourseId, LiveSession, Page, Participant, RoomId, SessionId, SessionStatus, now},
    error::{AppError, AppResult},
    store::Store,
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSession {
    pub title: String,
    /// RFC 3339 time the session is planned for.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// At most this many peers at once (1 to 10,000); unlimited when absent.
    pub max_participants: Option<u32>,
}

/// Life-cycle changes the signaling gateway reacts to.
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent {
    Ended { session: SessionId },
}

pub const MAX_PARTICIPANTS_LIMIT: u32 = 10_000;

pub struct SessionService {
    store: Arc<dyn Store>,
    access: CourseAccess,
    events: broadcast::Sender<SessionEvent>,
}

impl SessionService {
    pub fn new(store: Arc<dyn Store>, access: CourseAccess) -> Self {
        let (events, _) = broadcast::channel(256);
        SessionService {
            access,
            store,
            events,
        }
    }

    pub fn events(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    pub async fn create(
        &self,
        actor: &Actor,
        course: CourseId,
        input: CreateSession,
    ) -> AppResult<LiveSession> {
        let course = self.access.managed_by(actor, course).await?;
        let title = validate::text("title", &input.title, 1, 200)?;
        if let Some(max) = input.max_participants
            && !(1..=MAX_PARTICIPANTS_LIMIT).contains(&max)
        {
            return Err(AppError::validation(
                "maxParticipants",
                format!("maxParticipants must be between 1 and {MAX_PARTICIPANTS_LIMIT}"),
            ));
        }
        let session = LiveSession {
            id: SessionId::new(),
            course_id: course.id,
            title,
            status: SessionStatus::Scheduled,
            scheduled_at: input.scheduled_at.map(|t| {
                use chrono::SubsecRound;
                t.trunc_subsecs(6)
            }),
            started_at: None,
            ended_at: None,
            max_participants: input.max_participants,
            room_id: RoomId::new(),
        };
        self.store.insert_session(&session).await?;
        Ok(session)
    }

    pub async fn list(
        &self,
        actor: &Actor,
        course: CourseId,
        page: PageRequest,
    ) -> AppResult<Page<LiveSession>> {
        self.access.member_of(actor, course).await?;
        let rows = self
            .store
            .list_sessions(course, page.after.map(SessionId), page.fetch())
            .await?;
        Ok(page.finish(rows, |s| s.id.0))
    }

    /// The session, if the actor is a member of its course.
    pub async fn get(&self, actor: &Actor, id: SessionId) -> AppResult<LiveSession> {
        let session = self.find(id).await?;
        self.access.member_of(actor, session.course_id).await?;
        Ok(session)
    }

    pub async fn start(&self, actor: &Actor, id: SessionId) -> AppResult<LiveSession> {
        let session = self.find(id).await?;
        self.access.managed_by(actor, session.course_id).await?;
        self.store.start_session(id, now()).await?.ok_or_else(|| {
            AppError::Conflict(format!(
                "the session is {}, only a scheduled session can start",
                session.status.as_str()
            ))
        })
    }

    pub async fn end(&self, actor: &Actor, id: SessionId) -> AppResult<LiveSession> {
        let session = self.find(id).await?;
        self.access.managed_by(actor, session.course_id).await?;
        let ended = self
            .store
            .end_session(id, now())
            .await?
            .ok_or_else(|| AppError::Conflict("the session has already ended".into()))?;
        let _ = self.events.send(SessionEvent::Ended { session: id });
        Ok(ended)
    }

    pub async fn participants(
        &self,
        actor: &Actor,
        id: SessionId,
        page: PageRequest,
    ) -> AppResult<Page<Participant>> {
        self.get(actor, id).await?;
        let rows = self
            .store
            .list_participants(id, page.after, page.fetch())
            .await?;
        let page = page.finish(rows, |(key, _)| *key);
        Ok(Page {
            next_cursor: page.next_cursor,
            items: page.items.into_iter().map(|(_, p)| p).collect(),
        })
    }

    async fn find(&self, id: SessionId) -> AppResult<LiveSession> {
        self.store
            .session(id)
            .await?
            .ok_or_else(|| AppError::NotFound("session not found".into()))
    }
}
