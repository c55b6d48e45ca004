//! The seam between the services and the policy plugins: building a plugin's view of a
//! request, and what a fail-closed plugin failure means for the caller.

use lyceum_plugin_runtime::{PolicyContext, PolicyFailure, Role as PolicyRole};

use super::Actor;
use crate::{
    domain::{Course, Role},
    error::AppError,
};

/// A context for `actor` acting in `course`: the role is the role *in that course*
/// (the course's instructor is `Instructor`, any other member `Student`).
pub fn context(actor: &Actor, course: &Course) -> PolicyContext {
    let role = match actor.role {
        Role::Admin => PolicyRole::Admin,
        _ if actor.teaches(course) => PolicyRole::Instructor,
        _ => PolicyRole::Student,
    };
    let mut ctx = PolicyContext::new(uuid::Uuid::now_v7().to_string(), actor.id.to_string(), role);
    ctx.course_id = Some(course.id.to_string());
    ctx
}

/// A fail-closed plugin that trapped, timed out or ran out of memory: the request is refused
/// rather than let through unchecked.
pub fn unavailable(failure: PolicyFailure) -> AppError {
    tracing::warn!(%failure, "policy plugin failed; slot is fail-closed");
    AppError::Unavailable("a policy check is unavailable, try again shortly".into())
}
