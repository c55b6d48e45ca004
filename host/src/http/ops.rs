//! Operations endpoints: liveness, readiness, Prometheus metrics.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use lyceum_plugin_runtime::Slot;
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

/// The database (and Redis, where configured) answer and every policy plugin slot has its
/// chain active; 503 otherwise. While plugins compile at start-up the server already answers
/// (each slot following its failure mode), and this says which slots are still loading.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "UNAVAILABLE")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database =
        tokio::time::timeout(std::time::Duration::from_secs(3), state.store.ping()).await;
    match database {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            return unavailable("the database is unreachable".into(), None);
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            return unavailable("the database is unreachable".into(), None);
        }
    }
    let loading: Vec<&str> = Slot::ALL
        .into_iter()
        .filter(|&slot| !state.policy.status(slot).ready)
        .map(Slot::as_str)
        .collect();
    if !loading.is_empty() {
        return unavailable(
            format!(
                "the policy plugins of {} are still loading",
                loading.join(", ")
            ),
            Some(json!({ "reason": "plugins_loading", "loading": loading })),
        );
    }
    (
        StatusCode::OK,
        Json(json!({ "success": true, "data": { "database": "ok", "plugins": "ready" } })),
    )
}

fn unavailable(
    message: String,
    details: Option<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    let mut error = json!({ "code": "UNAVAILABLE", "message": message });
    if let Some(details) = details {
        error["details"] = details;
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "success": false, "error": error })),
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
