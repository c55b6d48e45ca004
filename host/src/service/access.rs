//! Who the caller is and what that lets them touch.
//!
//! "Members" of a course are its instructor and enrolled users; admins count as members of
//! every course and may do whatever any course's instructor may. A non-member learns that a
//! course exists (FORBIDDEN) but never sees inside it.

use std::sync::Arc;

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
#[derive(Clone)]
pub struct CourseAccess {
    store: Arc<dyn Store>,
}

impl CourseAccess {
    pub fn new(store: Arc<dyn Store>) -> Self {
        CourseAccess { store }
    }

    pub async fn course(&self, id: CourseId) -> AppResult<Course> {
        self.store
            .course(id)
            .await?
            .ok_or_else(|| AppError::NotFound("course not found".into()))
    }

    pub async fn is_member(&self, actor: &Actor, course: &Course) -> AppResult<bool> {
        Ok(actor.manages(course) || self.store.is_enrolled(course.id, actor.id).await?)
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
