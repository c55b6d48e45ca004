//! Live sessions over REST, and the ICE servers WebRTC clients need.

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};

use super::extract::{AuthUser, Json, Path, Query};
use crate::{
    domain::{CourseId, LiveSession, Page, Participant, SessionId},
    error::{ApiJson, AppResult, Created},
    service::{ice::IceServers, paging::PageQuery, sessions::CreateSession},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/courses/{id}/sessions", get(list).post(create))
        .route("/sessions/{id}", get(show))
        .route("/sessions/{id}/start", post(start))
        .route("/sessions/{id}/end", post(end))
        .route("/sessions/{id}/participants", get(participants))
        .route("/webrtc/ice-servers", get(ice_servers))
}

/// Schedule a live session (the course's instructor, admins).
#[utoipa::path(post, path = "/api/v1/courses/{id}/sessions", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CreateSession,
    responses((status = 201, body = LiveSession), (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
    Json(input): Json<CreateSession>,
) -> AppResult<Created<LiveSession>> {
    state.sessions.create(&actor, id, input).await.map(Created)
}

/// A course's sessions, newest first (members).
#[utoipa::path(get, path = "/api/v1/courses/{id}/sessions", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<LiveSession>), (status = 403, description = "FORBIDDEN: not a member")))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<CourseId>,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<LiveSession>>> {
    let page = query.parse()?;
    state.sessions.list(&actor, id, page).await.map(ApiJson)
}

/// One session (members of its course).
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = LiveSession), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND")))]
pub async fn show(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<SessionId>,
) -> AppResult<ApiJson<LiveSession>> {
    state.sessions.get(&actor, id).await.map(ApiJson)
}

/// Go live: `scheduled` → `live` (the course's instructor, admins).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/start", tag = "sessions", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = LiveSession), (status = 403, description = "FORBIDDEN"), (status = 409, description = "CONFLICT: not scheduled")))]
pub async fn start(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<SessionId>,
) -> AppResult<ApiJson<LiveSession>> {
    state.sessions.start(&actor, id).await.map(ApiJson)
}

/// End the session; everyone in it is told and their attendance closed.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/end", tag = "sessions", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = LiveSession), (status = 403, description = "FORBIDDEN"), (status = 409, description = "CONFLICT: already ended")))]
pub async fn end(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<SessionId>,
) -> AppResult<ApiJson<LiveSession>> {
    state.sessions.end(&actor, id).await.map(ApiJson)
}

/// Attendance: one row per join, oldest first (members).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/participants", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<Participant>), (status = 403, description = "FORBIDDEN")))]
pub async fn participants(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<SessionId>,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<Participant>>> {
    let page = query.parse()?;
    state
        .sessions
        .participants(&actor, id, page)
        .await
        .map(ApiJson)
}

/// STUN/TURN servers for `RTCPeerConnection`, with short-lived TURN credentials.
#[utoipa::path(get, path = "/api/v1/webrtc/ice-servers", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = IceServers)))]
pub async fn ice_servers(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
) -> AppResult<ApiJson<IceServers>> {
    Ok(ApiJson(state.ice.for_user(actor.id)))
}
