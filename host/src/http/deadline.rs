//! The absolute time limit of a request. The header timeout bounds a request's head; this
//! bounds the rest for every request whose answer should come promptly — a JSON body
//! trickled a byte at a time, or a handler stuck behind a dependency, ends in 503
//! `UNAVAILABLE` after `http_request_timeout` instead of holding a connection and a task.
//!
//! Bodies that stream to storage are exempt: they are paced instead (see [`super::pace`]),
//! since a large upload on a slow link legitimately takes longer than any fixed limit.
//! Downloads are not affected either: the limit ends when the answer's head is ready, and a
//! file's bytes follow after it.

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::AppError, state::AppState};

/// The routes whose bodies stream to storage, as they are matched.
const STREAMING: &[(Method, &str)] = &[
    (Method::POST, "/api/v1/files/upload"),
    (Method::PATCH, "/api/v1/files/tus/{id}"),
    (Method::POST, "/api/v1/plugins/modules"),
];

fn streams_its_body(method: &Method, route: &str) -> bool {
    STREAMING.iter().any(|(m, r)| m == method && *r == route)
}

/// Middleware (a route layer, so the route is known): answers 503 once the request has run
/// for `http_request_timeout`.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let exempt = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| streams_its_body(request.method(), route.as_str()));
    if exempt {
        return next.run(request).await;
    }
    let limit = state.config.http_request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::info!(
                limit_s = limit.as_secs_f64(),
                "request cut at its time limit"
            );
            AppError::Unavailable(format!(
                "the request took longer than {} s and was abandoned",
                limit.as_secs_f64()
            ))
            .into_response()
        }
    }
}
