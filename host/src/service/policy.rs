//! The seam between the services and the policy plugins: building a plugin's view of a
//! request, and what a plugin's refusal or a fail-closed plugin failure means for the caller.

use std::time::Duration;

use lyceum_plugin_runtime::{PolicyContext, PolicyFailure, Refusal, Role as PolicyRole};

use super::Actor;
use crate::{
    domain::{Course, Role},
    error::AppError,
    telemetry::RequestId,
};

/// The refusal code that means "too fast": answered as the host's own rate limits are.
pub const RATE_LIMITED: &str = "rate_limited";

/// How long a client refused with [`RATE_LIMITED`] by a plugin is told to wait. A refusal
/// carries no delay in the plugin contract (WIT `refusal` is a code and a sentence), so it
/// is fixed: one second, the least `Retry-After` can say.
pub const PLUGIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A context for `actor` acting in `course` within the request `request_id`: the role is the
/// role *in that course* (the course's instructor is `Instructor`, any other member
/// `Student`).
pub fn context(request_id: &RequestId, actor: &Actor, course: &Course) -> PolicyContext {
    let role = match actor.role {
        Role::Admin => PolicyRole::Admin,
        _ if actor.teaches(course) => PolicyRole::Instructor,
        _ => PolicyRole::Student,
    };
    let mut ctx = PolicyContext::new(request_id.as_str(), actor.id.to_string(), role);
    ctx.course_id = Some(course.id.to_string());
    ctx
}

/// A plugin's refusal as the client receives it: `rate_limited` is RATE_LIMITED with a retry
/// delay, exactly like the host's own limits, so a client handles "too fast" one way
/// whoever said it; any other code is REJECTED_BY_POLICY with the code as `details.reason`
/// and the plugin's sentence as the message.
pub fn refused(refusal: Refusal) -> AppError {
    if refusal.code == RATE_LIMITED {
        return AppError::RateLimited {
            retry_after: PLUGIN_RETRY_AFTER,
        };
    }
    AppError::RejectedByPolicy {
        reason: refusal.code,
        message: refusal.reason,
    }
}

/// A fail-closed plugin that trapped, timed out or ran out of memory: the request is refused
/// rather than let through unchecked.
pub fn unavailable(failure: PolicyFailure) -> AppError {
    tracing::warn!(%failure, "policy plugin failed; slot is fail-closed");
    AppError::Unavailable("a policy check is unavailable, try again shortly".into())
}

#[cfg(test)]
mod tests {
    use axum::{http::header, response::IntoResponse};

    use super::*;
    use crate::domain::{CourseId, RoomId, TokenFamilyId, UserId, now};

    fn course_taught_by(instructor: UserId) -> Course {
        Course {
            id: CourseId::new(),
            title: "Distributed Systems".into(),
            description: String::new(),
            instructor_id: instructor,
            room_id: RoomId::new(),
            created_at: now(),
        }
    }

    fn actor(role: Role) -> Actor {
        Actor {
            id: UserId::new(),
            role,
            family: TokenFamilyId::new(),
        }
    }

    #[test]
    fn the_context_carries_the_requests_id_and_the_role_in_the_course() {
        let request = RequestId::parse(b"trace-me-42").unwrap();
        let teacher = actor(Role::Instructor);
        let course = course_taught_by(teacher.id);

        let ctx = context(&request, &teacher, &course);
        assert_eq!(ctx.request_id, "trace-me-42");
        assert_eq!(ctx.actor_id, teacher.id.to_string());
        assert_eq!(ctx.actor_role, PolicyRole::Instructor);
        assert_eq!(ctx.course_id, Some(course.id.to_string()));

        // An instructor account in someone else's course is a student there.
        let other = course_taught_by(UserId::new());
        assert_eq!(
            context(&request, &teacher, &other).actor_role,
            PolicyRole::Student
        );
        assert_eq!(
            context(&request, &actor(Role::Admin), &other).actor_role,
            PolicyRole::Admin
        );
    }

    #[test]
    fn two_requests_give_two_ids_and_one_request_one() {
        let student = actor(Role::Student);
        let course = course_taught_by(UserId::new());
        let (first, second) = (RequestId::generate(), RequestId::generate());
        let ids = [&first, &first, &second].map(|r| context(r, &student, &course).request_id);
        assert_eq!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
    }

    fn refusal(code: &str) -> Refusal {
        Refusal {
            code: code.into(),
            reason: "a sentence from the plugin".into(),
        }
    }

    #[test]
    fn a_plugins_rate_limited_is_the_hosts_rate_limited() {
        let error = refused(refusal(RATE_LIMITED));
        assert!(
            matches!(error, AppError::RateLimited { retry_after } if retry_after == PLUGIN_RETRY_AFTER),
            "{error:?}"
        );
        assert_eq!(
            error.to_ack()["error"],
            serde_json::json!({
                "code": "RATE_LIMITED",
                "message": "too many requests, retry in 1s",
                "details": { "retryAfter": 1 },
            })
        );
        let response = error.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn any_other_refusal_is_rejected_by_policy_with_its_code_as_reason() {
        let body = refused(refusal("banned_word")).to_error_body();
        assert_eq!(
            body,
            serde_json::json!({
                "code": "REJECTED_BY_POLICY",
                "message": "a sentence from the plugin",
                "details": { "reason": "banned_word" },
            })
        );
    }
}
