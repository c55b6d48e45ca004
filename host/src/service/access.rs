//! Who the caller is and what that lets them touch.
//!
//! "Members" of a course are its instructor and enrolled users; admins count as members of
//! every course and may do whatever any course's instructor may. A non-member learns that a
//! course exists (FORBIDDEN) but never sees inside it.

use std::{sync::Arc, time::Duration};

use super::memo::Memo;

use crate::{
    domain::{Course, CourseId, Role, TokenFamilyId, UserId},
    error::{AppError, AppResult},
    store::Store,
};

/// The signed-in caller, as established by the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: UserId,
    pub role: Role,
    /// The refresh-token family the access token came from.
    pub family: TokenFamilyId,
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn teaches(&self, course: &Course) -> bool {
        course.instructor_id == self.id
    }

    /// May change the course and run its sessions.
    pub fn manages(&self, course: &Course) -> bool {
        self.is_admin() || self.teaches(course)
    }
}

/// Course look-ups with the permission checks every service shares.
///
/// Courses and enrollments are asked for on every chat message and signal, so the answers
/// are memoised; every service holds a clone of one `CourseAccess`, and the course service
/// invalidates through it on every change of a course or an enrollment.
#[derive(Clone)]
pub struct CourseAccess {
    store: Arc<dyn Store>,
    courses: Arc<Memo<CourseId, Course>>,
    enrolled: Arc<Memo<(CourseId, UserId), bool>>,
}

/// How long memoised courses and enrollments are trusted, and how many are kept.
#[derive(Debug, Clone, Copy)]
pub struct AccessMemo {
    pub ttl: Duration,
    pub capacity: usize,
}

impl CourseAccess {
    pub fn new(store: Arc<dyn Store>, memo: AccessMemo) -> Self {
        CourseAccess {
            store,
            courses: Arc::new(Memo::new(memo.ttl, memo.capacity)),
            enrolled: Arc::new(Memo::new(memo.ttl, memo.capacity)),
        }
    }

    pub async fn course(&self, id: CourseId) -> AppResult<Course> {
        if let Some(course) = self.courses.get(&id) {
            return Ok(course);
        }
        let ticket = self.courses.ticket();
        let course = self
            .store
            .course(id)
            .await?
            .ok_or_else(|| AppError::NotFound("course not found".into()))?;
        self.courses.store(id, course.clone(), ticket);
        Ok(course)
    }

    pub async fn is_member(&self, actor: &Actor, course: &Course) -> AppResult<bool> {
        if actor.manages(course) {
            return Ok(true);
        }
        let key = (course.id, actor.id);
        if let Some(enrolled) = self.enrolled.get(&key) {
            return Ok(enrolled);
        }
        let ticket = self.enrolled.ticket();
        let enrolled = self.store.is_enrolled(course.id, actor.id).await?;
        self.enrolled.store(key, enrolled, ticket);
        Ok(enrolled)
    }

    /// A course was changed or deleted.
    pub fn course_changed(&self, id: CourseId) {
        self.courses.invalidate(&id);
    }

    /// A course is gone, and with it every enrollment in it.
    pub fn course_deleted(&self, id: CourseId) {
        self.courses.invalidate(&id);
        self.enrolled.invalidate_where(|(course, _)| *course == id);
    }

    /// A user was enrolled in or removed from a course.
    pub fn enrollment_changed(&self, course: CourseId, user: UserId) {
        self.enrolled.invalidate(&(course, user));
    }

    /// The course, if the actor is a member of it.
    pub async fn member_of(&self, actor: &Actor, id: CourseId) -> AppResult<Course> {
        let course = self.course(id).await?;
        if self.is_member(actor, &course).await? {
            Ok(course)
        } else {
            Err(AppError::Forbidden(
                "you are not a member of this course".into(),
            ))
        }
    }

    /// The course, if the actor teaches it or is an admin.
    pub async fn managed_by(&self, actor: &Actor, id: CourseId) -> AppResult<Course> {
        let course = self.course(id).await?;
        if actor.manages(&course) {
            Ok(course)
        } else {
            Err(AppError::Forbidden(
                "only the course's instructor may do this".into(),
            ))
        }
    }
}
