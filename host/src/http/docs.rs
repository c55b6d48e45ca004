//! `/api/openapi.json` (OpenAPI 3.1) and a self-contained docs page at `/api/docs` that
//! renders it without fetching anything from elsewhere.

use axum::{
    Json, Router,
    response::{Html, IntoResponse},
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use super::{auth, chat, courses, files, ops, plugins, sessions, tus};
use crate::{domain, service, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lyceum API",
        description = "Real-time backend of the Lyceum e-learning platform. Every JSON answer is an envelope: \
`{\"success\": true, \"data\": ...}` or `{\"success\": false, \"error\": {\"code\", \"message\", \"details\"?}}`. \
The schemas below describe `data`. Lists return `{items, nextCursor}` and take `?cursor=&limit=` (default 50, at most 100). \
Real-time features use Socket.IO v4 on the same port; see the README for its events."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::me,
        courses::create, courses::list, courses::show, courses::update, courses::remove,
        courses::enroll, courses::list_enrollments, courses::unenroll,
        sessions::create, sessions::list, sessions::show, sessions::start, sessions::end,
        sessions::participants, sessions::ice_servers,
        chat::history, chat::send, chat::edit, chat::remove, chat::search,
        files::upload, files::list, files::show, files::remove, files::download, files::serve_upload,
        tus::capabilities, tus::create, tus::progress, tus::append, tus::terminate,
        ops::health, ops::ready, ops::metrics,
        plugins::overview, plugins::slot, plugins::activate, plugins::rollback, plugins::revisions,
        plugins::set_shadow, plugins::clear_shadow, plugins::promote, plugins::modules,
        plugins::install, plugins::decisions,
    ),
    components(schemas(
        domain::User, domain::Role, domain::Course, domain::Enrollment, domain::LiveSession,
        domain::SessionStatus, domain::Participant,
        service::auth::RegisterInput, service::auth::LoginInput, service::auth::RefreshInput,
        service::auth::Session, service::auth::TokenPair,
        service::courses::CreateCourse, service::courses::UpdateCourse, service::courses::EnrollInput,
        service::sessions::CreateSession, service::ice::IceServers, service::ice::IceServer,
        domain::Message, service::chat::SendInput, service::chat::EditInput,
        service::files::FileView, service::files::AttachmentView, domain::Folder, files::UploadForm,
        domain::PluginModule, domain::PluginRevision, domain::PluginDecision,
        service::plugins::links::ChainBody, service::plugins::links::ShadowBody,
        service::plugins::links::Link, service::plugins::links::LinkLimits,
        service::plugins::links::Failure, service::plugins::views::PluginsView,
        service::plugins::views::SlotView, service::plugins::views::PluginView,
        plugins::ModuleForm,
        ErrorBody, ErrorDetail,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, access and refresh tokens"),
        (name = "courses", description = "Courses and enrollments"),
        (name = "sessions", description = "Live sessions and WebRTC ICE servers"),
        (name = "chat", description = "Course and session chat rooms"),
        (name = "files", description = "Uploads, downloads and signed links"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "plugins", description = "Policy plugins: slots, modules, revisions, shadow, decision audit (admins only)"),
    )
)]
pub struct ApiDoc;

/// The failure envelope.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// Always `false`.
    success: bool,
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// VALIDATION_FAILED, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT,
    /// PAYLOAD_TOO_LARGE, RANGE_NOT_SATISFIABLE, UNSUPPORTED_MEDIA_TYPE, REJECTED_BY_POLICY,
    /// RATE_LIMITED, UNAVAILABLE or INTERNAL.
    code: String,
    message: String,
    /// `field` for VALIDATION_FAILED, `reason` for REJECTED_BY_POLICY and UNSUPPORTED_MEDIA_TYPE,
    /// `retryAfter` for RATE_LIMITED, `size` for RANGE_NOT_SATISFIABLE.
    details: Option<serde_json::Value>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(docs_page))
}

async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn docs_page() -> impl IntoResponse {
    Html(include_str!("docs.html"))
}
