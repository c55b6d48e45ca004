//! `/chat`: history, sending, editing, deleting and searching messages over REST. A message
//! sent here reaches the room's sockets exactly like one sent over Socket.IO.

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch},
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::extract::{AuthUser, Json, Path, Query};
use crate::{
    domain::{Message, MessageId, Page, RoomId},
    error::{ApiJson, AppError, AppResult},
    service::{
        chat::{EditInput, SendInput},
        paging,
    },
    state::AppState,
    telemetry::RequestId,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chat/rooms/{room_id}/messages", get(history).post(send))
        .route("/chat/messages/{id}", patch(edit).delete(remove))
        .route("/chat/search", get(search))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only messages older than this message id (`nextCursor` of the previous page).
    pub before: Option<String>,
    /// The same as `before`, for clients that page every list with `cursor`.
    pub cursor: Option<String>,
    /// 1 to 100, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SearchParams {
    /// Words to find (all of them).
    pub q: Option<String>,
    /// Only this room.
    pub room_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn parse_id<T: std::str::FromStr>(field: &str, text: &str) -> AppResult<T> {
    text.parse()
        .map_err(|_| AppError::validation(field, format!("{field} is not a valid id")))
}

/// A room's messages, newest first; deleted ones stay as tombstones.
#[utoipa::path(get, path = "/api/v1/chat/rooms/{roomId}/messages", tag = "chat", security(("bearer" = [])),
    params(("roomId" = String, Path), HistoryQuery),
    responses((status = 200, body = Page<Message>), (status = 403, description = "FORBIDDEN: not a member"),
              (status = 404, description = "NOT_FOUND: no such room")))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(room): Path<RoomId>,
    Query(query): Query<HistoryQuery>,
) -> AppResult<ApiJson<Page<Message>>> {
    let before = match query.before.or(query.cursor).filter(|c| !c.is_empty()) {
        Some(text) => Some(parse_id::<MessageId>("before", &text)?),
        None => None,
    };
    let limit = paging::limit(query.limit)?;
    state
        .chat
        .history(&actor, room, before, limit)
        .await
        .map(ApiJson)
}

/// Send a message. A resend with the same `clientId` answers 200 with the first message and
/// broadcasts nothing.
#[utoipa::path(post, path = "/api/v1/chat/rooms/{roomId}/messages", tag = "chat", security(("bearer" = [])),
    params(("roomId" = String, Path)), request_body = SendInput,
    responses((status = 201, body = Message), (status = 200, description = "a resend: the first message", body = Message),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN"),
              (status = 422, description = "REJECTED_BY_POLICY"), (status = 429, description = "RATE_LIMITED")))]
pub async fn send(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    request_id: RequestId,
    Path(room): Path<RoomId>,
    Json(input): Json<SendInput>,
) -> AppResult<Response> {
    let sent = state.chat.send(&actor, &request_id, room, input).await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(sent.message)).into_response())
}

/// Edit one's own message (moderated again).
#[utoipa::path(patch, path = "/api/v1/chat/messages/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = EditInput,
    responses((status = 200, body = Message), (status = 403, description = "FORBIDDEN: not the sender"),
              (status = 404, description = "NOT_FOUND"), (status = 409, description = "CONFLICT: deleted"),
              (status = 422, description = "REJECTED_BY_POLICY"), (status = 429, description = "RATE_LIMITED")))]
pub async fn edit(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    request_id: RequestId,
    Path(id): Path<MessageId>,
    Json(input): Json<EditInput>,
) -> AppResult<ApiJson<Message>> {
    state
        .chat
        .edit(&actor, &request_id, id, input)
        .await
        .map(ApiJson)
}

/// Delete a message (its sender, the course's instructor, admins). It stays in history as a
/// tombstone and leaves search.
#[utoipa::path(delete, path = "/api/v1/chat/messages/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND")))]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<MessageId>,
) -> AppResult<ApiJson<Value>> {
    state.chat.delete(&actor, id).await?;
    Ok(ApiJson(json!({})))
}

/// Full-text search over the messages the caller may read, best match first.
#[utoipa::path(get, path = "/api/v1/chat/search", tag = "chat", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = Page<Message>), (status = 400, description = "VALIDATION_FAILED: q missing")))]
pub async fn search(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(params): Query<SearchParams>,
) -> AppResult<ApiJson<Page<Message>>> {
    let q = params.q.unwrap_or_default();
    let room = match params.room_id.filter(|r| !r.is_empty()) {
        Some(text) => Some(parse_id::<RoomId>("roomId", &text)?),
        None => None,
    };
    let offset = match params.cursor.filter(|c| !c.is_empty()) {
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|o| *o <= 10_000)
            .ok_or_else(|| AppError::validation("cursor", "cursor is not valid"))?,
        None => 0,
    };
    let limit = paging::limit(params.limit)?;
    state
        .chat
        .search(&actor, &q, room, offset, limit)
        .await
        .map(ApiJson)
}
