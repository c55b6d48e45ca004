//! Courses and enrollments.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::{Actor, access::CourseAccess, paging::PageRequest, validate};
use crate::{
    domain::{Course, CourseId, Enrollment, Page, Role, RoomId, UserId, now},
    error::{AppError, AppResult},
    store::Store,
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateCourse {
    pub title: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct UpdateCourse {
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollInput {
    /// Whom to enroll; the caller when absent. Enrolling others takes the course's
    /// instructor or an admin.
    pub user_id: Option<UserId>,
}

/// Membership changes other parts of the server react to (a removed student leaves the
/// course's chat room at once).
#[derive(Debug, Clone, Copy)]
pub enum MembershipEvent {
    Removed { course: CourseId, user: UserId },
    CourseDeleted { course: CourseId },
}

pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;

pub struct CourseService {
    store: Arc<dyn Store>,
    access: CourseAccess,
    events: broadcast::Sender<MembershipEvent>,
}

impl CourseService {
    pub fn new(store: Arc<dyn Store>, access: CourseAccess) -> Self {
        let (events, _) = broadcast::channel(256);
        CourseService {
            access,
            store,
            events,
        }
    }

    pub fn access(&self) -> &CourseAccess {
        &self.access
    }

    pub fn membership_events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    pub async fn create(&self, actor: &Actor, input: CreateCourse) -> AppResult<Course> {
        if !matches!(actor.role, Role::Instructor | Role::Admin) {
            return Err(AppError::Forbidden(
                "only instructors may create courses".into(),
            ));
        }
        let course = Course {
            id: CourseId::new(),
            title: validate::text("title", &input.title, 1, TITLE_MAX)?,
            description: validate::text(
                "description",
                input.description.as_deref().unwrap_or(""),
                0,
                DESCRIPTION_MAX,
            )?,
            instructor_id: actor.id,
            room_id: RoomId::new(),
            created_at: now(),
        };
        self.store.insert_course(&course).await?;
        Ok(course)
    }

    pub async fn list(
        &self,
        actor: &Actor,
        mine: bool,
        page: PageRequest,
    ) -> AppResult<Page<Course>> {
        let member = mine.then_some(actor.id);
        let rows = self
            .store
            .list_courses(member, page.after.map(CourseId), page.fetch())
            .await?;
        Ok(page.finish(rows, |c| c.id.0))
    }

    pub async fn get(&self, id: CourseId) -> AppResult<Course> {
        self.access.course(id).await
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: CourseId,
        input: UpdateCourse,
    ) -> AppResult<Course> {
        let course = self.access.managed_by(actor, id).await?;
        let title = match input.title {
            Some(title) => validate::text("title", &title, 1, TITLE_MAX)?,
            None => course.title,
        };
        let description = match input.description {
            Some(d) => validate::text("description", &d, 0, DESCRIPTION_MAX)?,
            None => course.description,
        };
        let updated = self.store.update_course(id, &title, &description).await?;
        self.access.course_changed(id);
        updated.ok_or_else(|| AppError::NotFound("course not found".into()))
    }

    pub async fn delete(&self, actor: &Actor, id: CourseId) -> AppResult<()> {
        self.access.managed_by(actor, id).await?;
        let deleted = self.store.delete_course(id).await?;
        self.access.course_deleted(id);
        if !deleted {
            return Err(AppError::NotFound("course not found".into()));
        }
        let _ = self
            .events
            .send(MembershipEvent::CourseDeleted { course: id });
        Ok(())
    }

    pub async fn enroll(
        &self,
        actor: &Actor,
        id: CourseId,
        input: EnrollInput,
    ) -> AppResult<Enrollment> {
        let course = self.access.course(id).await?;
        let user = input.user_id.unwrap_or(actor.id);
        if user != actor.id {
            if !actor.manages(&course) {
                return Err(AppError::Forbidden(
                    "only the course's instructor may enroll other users".into(),
                ));
            }
            if self.store.user(user).await?.is_none() {
                return Err(AppError::NotFound("user not found".into()));
            }
        }
        if course.instructor_id == user {
            return Err(AppError::Conflict(
                "the instructor of a course cannot enroll in it".into(),
            ));
        }
        let enrollment = Enrollment {
            course_id: id,
            user_id: user,
            created_at: now(),
        };
        let inserted = self.store.insert_enrollment(&enrollment).await;
        self.access.enrollment_changed(id, user);
        inserted?;
        Ok(enrollment)
    }

    pub async fn list_enrollments(
        &self,
        actor: &Actor,
        id: CourseId,
        page: PageRequest,
    ) -> AppResult<Page<Enrollment>> {
        self.access.managed_by(actor, id).await?;
        let rows = self
            .store
            .list_enrollments(id, page.after, page.fetch())
            .await?;
        let page = page.finish(rows, |(key, _)| *key);
        Ok(Page {
            next_cursor: page.next_cursor,
            items: page.items.into_iter().map(|(_, e)| e).collect(),
        })
    }

    pub async fn unenroll(&self, actor: &Actor, id: CourseId, user: UserId) -> AppResult<()> {
        let course = self.access.course(id).await?;
        if user != actor.id && !actor.manages(&course) {
            return Err(AppError::Forbidden(
                "you may only remove your own enrollment".into(),
            ));
        }
        let removed = self.store.delete_enrollment(id, user).await?;
        self.access.enrollment_changed(id, user);
        if !removed {
            return Err(AppError::NotFound("enrollment not found".into()));
        }
        let _ = self
            .events
            .send(MembershipEvent::Removed { course: id, user });
        Ok(())
    }
}
