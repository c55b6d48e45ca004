//! Operations endpoints: liveness, readiness, Prometheus metrics.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn health() -> impl IntoResponse {
    Json(json!({ "success": true, "data": { "status": "ok" } }))
}

/// The database (and Redis, where configured) answer; 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "UNAVAILABLE")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database =
        tokio::time::timeout(std::time::Duration::from_secs(3), state.store.ping()).await;
    match database {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({ "success": true, "data": { "database": "ok" } })),
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            unavailable()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            unavailable()
        }
    }
}

fn unavailable() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "success": false,
            "error": { "code": "UNAVAILABLE", "message": "the database is unreachable" }
        })),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
