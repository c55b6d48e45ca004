//! `/plugins`: the operators' side of the policy plugins (admin only) — slots, modules,
//! revisions, rollback, shadow candidates and the decision audit.

use std::pin::pin;

use axum::{
    Router,
    extract::{
        DefaultBodyLimit, FromRequestParts, Multipart, State, multipart::MultipartRejection,
    },
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    extract::{AuthUser, Json, Path, Query},
    pace::{Pace, paced},
};
use crate::{
    domain::{DecisionQuery, Page, PluginDecision, PluginModule, PluginRevision},
    error::{ApiJson, AppError, AppResult},
    service::{
        Actor,
        paging::{self, PageQuery},
        plugins::{
            PluginService,
            links::{ChainBody, ShadowBody},
            modules::is_sha256,
            parse_slot,
            views::{PluginsView, SlotView},
        },
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(overview))
        .route(
            "/plugins/modules",
            get(modules)
                .post(install)
                // The module's size is checked while it is read, against its own limit.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/plugins/decisions", get(decisions))
        .route("/plugins/{slot}", get(slot).put(activate))
        .route("/plugins/{slot}/rollback", post(rollback))
        .route("/plugins/{slot}/revisions", get(revisions))
        .route(
            "/plugins/{slot}/shadow",
            put(set_shadow).delete(clear_shadow),
        )
        .route("/plugins/{slot}/shadow/promote", post(promote))
}

/// The signed-in caller, if an admin. Admins only, and that is said before anything else
/// about the request is looked at: its slot, its query or its body. (Extractors run in the
/// order a handler lists them, and the body is always read last.)
pub struct Admin(pub Actor);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let AuthUser(actor) = AuthUser::from_request_parts(parts, state).await?;
        PluginService::require_admin(&actor)?;
        Ok(Admin(actor))
    }
}

/// All three slots, and whether the plugins file was refused.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", security(("bearer" = [])),
    responses((status = 200, body = PluginsView), (status = 403, description = "FORBIDDEN: not an admin")))]
pub async fn overview(
    State(state): State<AppState>,
    Admin(actor): Admin,
) -> AppResult<ApiJson<PluginsView>> {
    state.plugins.overview(&actor).map(ApiJson)
}

/// One slot: its active revision with per-plugin counters, and its shadow candidate.
#[utoipa::path(get, path = "/api/v1/plugins/{slot}", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path, description = "chat, files or signaling")),
    responses((status = 200, body = SlotView), (status = 403, description = "FORBIDDEN"), (status = 404, description = "NOT_FOUND: no such slot")))]
pub async fn slot(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
) -> AppResult<ApiJson<SlotView>> {
    state.plugins.slot(&actor, parse_slot(&slot)?).map(ApiJson)
}

/// Make a chain the slot's active one, as a new revision. It is checked, compiled, smoke
/// called and warmed first; calls in flight finish on the old chain, none fails.
#[utoipa::path(put, path = "/api/v1/plugins/{slot}", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path)), request_body = ChainBody,
    responses((status = 200, body = SlotView),
        (status = 400, description = "VALIDATION_FAILED with details.reason: not_wasm, wrong_world, unsupported_wit_version, forbidden_import (details.imports), config_rejected, exceeds_limits (over the engine's caps on instances, memories, tables, table elements), unknown_module, invalid_chain, hash_mismatch"),
        (status = 403, description = "FORBIDDEN")))]
pub async fn activate(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
    Json(body): Json<ChainBody>,
) -> AppResult<ApiJson<SlotView>> {
    let slot = parse_slot(&slot)?;
    state
        .plugins
        .activate(&actor, slot, body)
        .await
        .map(ApiJson)
}

/// Activate the chain before the active one again, as a new revision (`source: rollback`);
/// rolling back again goes one revision further back.
#[utoipa::path(post, path = "/api/v1/plugins/{slot}/rollback", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path)),
    responses((status = 200, body = SlotView), (status = 403, description = "FORBIDDEN"), (status = 409, description = "CONFLICT: no earlier revision")))]
pub async fn rollback(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
) -> AppResult<ApiJson<SlotView>> {
    let slot = parse_slot(&slot)?;
    state.plugins.rollback(&actor, slot).await.map(ApiJson)
}

/// The slot's revisions, newest first; `nextCursor` is a revision number.
#[utoipa::path(get, path = "/api/v1/plugins/{slot}/revisions", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path), PageQuery),
    responses((status = 200, body = Page<PluginRevision>), (status = 403, description = "FORBIDDEN")))]
pub async fn revisions(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<PluginRevision>>> {
    let slot = parse_slot(&slot)?;
    let limit = paging::limit(query.limit)?;
    state
        .plugins
        .revisions(&actor, slot, query.cursor.as_deref(), limit)
        .await
        .map(ApiJson)
}

/// Run a candidate chain in shadow: same inputs as the active chain, verdicts recorded and
/// compared, never enforced. Replaces any candidate. Shadows end when the server restarts.
#[utoipa::path(put, path = "/api/v1/plugins/{slot}/shadow", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path)), request_body = ShadowBody,
    responses((status = 200, body = SlotView), (status = 400, description = "VALIDATION_FAILED with details.reason"), (status = 403, description = "FORBIDDEN")))]
pub async fn set_shadow(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
    Json(body): Json<ShadowBody>,
) -> AppResult<ApiJson<SlotView>> {
    let slot = parse_slot(&slot)?;
    state
        .plugins
        .set_shadow(&actor, slot, body)
        .await
        .map(ApiJson)
}

/// Stop the slot's shadow candidate.
#[utoipa::path(delete, path = "/api/v1/plugins/{slot}/shadow", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path)),
    responses((status = 200, body = SlotView), (status = 403, description = "FORBIDDEN")))]
pub async fn clear_shadow(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
) -> AppResult<ApiJson<SlotView>> {
    let slot = parse_slot(&slot)?;
    state.plugins.clear_shadow(&actor, slot).await.map(ApiJson)
}

/// Make the shadow candidate the active chain, as a new revision (`source: promote`).
#[utoipa::path(post, path = "/api/v1/plugins/{slot}/shadow/promote", tag = "plugins", security(("bearer" = [])),
    params(("slot" = String, Path)),
    responses((status = 200, body = SlotView), (status = 403, description = "FORBIDDEN"), (status = 409, description = "CONFLICT: no shadow chain")))]
pub async fn promote(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(slot): Path<String>,
) -> AppResult<ApiJson<SlotView>> {
    let slot = parse_slot(&slot)?;
    state.plugins.promote(&actor, slot).await.map(ApiJson)
}

/// Uploaded modules, newest first; `nextCursor` is a module's SHA-256.
#[utoipa::path(get, path = "/api/v1/plugins/modules", tag = "plugins", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<PluginModule>), (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")))]
pub async fn modules(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<PluginModule>>> {
    let limit = paging::limit(query.limit)?;
    state
        .plugins
        .modules(&actor, query.cursor.as_deref(), limit)
        .await
        .map(ApiJson)
}

/// The multipart form of a module upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ModuleForm {
    /// The `.wasm` file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A name for listings (default: `module-` and the hash's first 12 digits).
    name: Option<String>,
}

/// Upload a module (a WebAssembly component). It is checked without compiling: WebAssembly,
/// a component, a policy world at a WIT version this server provides, no import beyond it.
/// 201 when new, 200 when these bytes were already known.
#[utoipa::path(post, path = "/api/v1/plugins/modules", tag = "plugins", security(("bearer" = [])),
    request_body(content = ModuleForm, content_type = "multipart/form-data"),
    responses((status = 201, body = PluginModule), (status = 200, body = PluginModule, description = "already known"),
        (status = 400, description = "VALIDATION_FAILED with details.reason: not_wasm, wrong_world, unsupported_wit_version, forbidden_import"),
        (status = 403, description = "FORBIDDEN"), (status = 413, description = "PAYLOAD_TOO_LARGE")))]
pub async fn install(
    State(state): State<AppState>,
    Admin(actor): Admin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match receive_module(&state, &actor, multipart).await {
        Ok((module, true)) => (StatusCode::CREATED, ApiJson(module)).into_response(),
        Ok((module, false)) => ApiJson(module).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn receive_module(
    state: &AppState,
    actor: &Actor,
    multipart: Result<Multipart, MultipartRejection>,
) -> AppResult<(PluginModule, bool)> {
    let mut multipart = multipart
        .map_err(|_| AppError::validation("file", "expected a multipart/form-data body"))?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        AppError::validation(
            "body",
            format!("malformed multipart body: {}", e.body_text()),
        )
    };
    let max = state.plugins.max_module_bytes();
    let (mut file, mut name) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let mut bytes = Vec::new();
                let mut chunks = pin!(paced(field, Pace::of(&state.config)));
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|e| e.into_app_error("file", malformed))?;
                    if (bytes.len() + chunk.len()) as u64 > max {
                        return Err(AppError::PayloadTooLarge(format!(
                            "a plugin module may be at most {max} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes);
            }
            "name" => {
                let text = field.text().await.map_err(malformed)?;
                name = Some(text.trim().to_owned());
            }
            _ => {}
        }
    }
    let file = file.ok_or_else(|| AppError::validation("file", "a `file` part is required"))?;
    state.plugins.install(actor, file, name).await
}

/// Filters of the decision audit.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DecisionFilter {
    /// chat, files or signaling.
    pub slot: Option<String>,
    /// reject, flag, rewrite, deny, drop, or a failure kind (timeout, trap, …).
    pub verdict: Option<String>,
    /// The plugin's module SHA-256.
    pub plugin: Option<String>,
    /// Only shadow disagreements (`true`) or only enforced decisions (`false`).
    pub shadow: Option<bool>,
    /// From this time (inclusive), RFC 3339.
    pub since: Option<DateTime<Utc>>,
    /// Until this time (exclusive), RFC 3339.
    pub until: Option<DateTime<Utc>>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
}

/// The decision audit, newest first: every verdict other than allow/accept/relay, every
/// plugin failure, every shadow disagreement. Never the content, only its SHA-256.
#[utoipa::path(get, path = "/api/v1/plugins/decisions", tag = "plugins", security(("bearer" = [])),
    params(DecisionFilter),
    responses((status = 200, body = Page<PluginDecision>), (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")))]
pub async fn decisions(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Query(filter): Query<DecisionFilter>,
) -> AppResult<ApiJson<Page<PluginDecision>>> {
    if let Some(slot) = &filter.slot {
        parse_slot(slot)
            .map_err(|_| AppError::validation("slot", "slot must be chat, files or signaling"))?;
    }
    let before_id = match &filter.cursor {
        Some(cursor) => Some(
            cursor
                .parse::<uuid::Uuid>()
                .map_err(|_| AppError::validation("cursor", "cursor must be a nextCursor"))?,
        ),
        None => None,
    };
    let plugin = match filter.plugin {
        Some(plugin) => {
            let plugin = plugin.to_ascii_lowercase();
            if !is_sha256(&plugin) {
                return Err(AppError::validation(
                    "plugin",
                    "plugin must be a module's SHA-256 in hex",
                ));
            }
            Some(plugin)
        }
        None => None,
    };
    let query = DecisionQuery {
        slot: filter.slot,
        verdict: filter.verdict,
        plugin_sha256: plugin,
        shadow: filter.shadow,
        since: filter.since,
        until: filter.until,
        before_id,
        limit: paging::limit(filter.limit)?,
    };
    state.plugins.decisions(&actor, query).await.map(ApiJson)
}
