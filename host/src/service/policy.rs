//! The seam between the services and the policy plugins: building a plugin's view of a
//! request, and what a plugin's refusal or a fail-closed plugin failure means for the caller.

use std::time::Duration;

use lyceum_plugin_runtime::{PolicyContext, PolicyFailure, Refusal, Role as PolicyRole};

use super::Actor;
use crate::{
    domain::{Course, Role},
    error::AppError,
};

/// The refusal code that means "too fast": answered as the host's own rate limits are.
pub const RATE_LIMITED: &str = "rate_limited";

/// How long a client refused with [`RATE_LIMITED`] by a plugin is told to wait. A refusal
/// carries no delay in the plugin contract (WIT `refusal` is a code and a sentence), so it
/// is fixed: one second, the least `Retry-After` can say.
pub const PLUGIN_RETRY_AFTER: Duration = Duration::from_secs(1);

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
