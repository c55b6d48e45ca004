//! `/auth`: register, login, refresh, logout, me.

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::extract::{AuthUser, ClientIp, Json};
use crate::{
    domain::User,
    error::{ApiJson, AppResult, Created},
    service::auth::{LoginInput, RefreshInput, RegisterInput, Session, TokenPair},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterInput,
    responses((status = 201, description = "Signed in as the new user", body = Session),
              (status = 400, description = "VALIDATION_FAILED"), (status = 409, description = "CONFLICT: email already registered"),
              (status = 503, description = "UNAVAILABLE: too many password checks at once, with Retry-After")))]
pub async fn register(
    State(state): State<AppState>,
    Json(input): Json<RegisterInput>,
) -> AppResult<Created<Session>> {
    state.auth.register(input).await.map(Created)
}

/// Sign in with email and password. Failed attempts are throttled per email and per IP.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses((status = 200, body = Session), (status = 401, description = "UNAUTHORIZED: wrong email or password"),
              (status = 429, description = "RATE_LIMITED, with Retry-After"),
              (status = 503, description = "UNAVAILABLE: too many password checks at once, with Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(input): Json<LoginInput>,
) -> AppResult<ApiJson<Session>> {
    state.auth.login(input, ip).await.map(ApiJson)
}

/// Trade a refresh token for a new access token and a new refresh token. The presented token
/// stops working; presenting it again revokes every token of its family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshInput,
    responses((status = 200, body = TokenPair), (status = 401, description = "UNAUTHORIZED")))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(input): Json<RefreshInput>,
) -> AppResult<ApiJson<TokenPair>> {
    state.auth.refresh(input).await.map(ApiJson)
}

/// Revoke a refresh token's family and disconnect its sockets. Idempotent.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshInput,
    responses((status = 200, description = "`{}`")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(input): Json<RefreshInput>,
) -> AppResult<ApiJson<Value>> {
    state.auth.logout(input).await?;
    Ok(ApiJson(json!({})))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, description = "UNAUTHORIZED")))]
pub async fn me(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
) -> AppResult<ApiJson<User>> {
    state.auth.me(&actor).await.map(ApiJson)
}
