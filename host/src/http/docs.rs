//! `/api/openapi.json` (OpenAPI 3.1) and a self-contained docs page at `/api/docs` that
//! renders it without fetching anything from elsewhere.

use std::sync::LazyLock;

use axum::{
    Json, Router,
    http::{HeaderValue, header},
    response::{Html, IntoResponse},
    routing::get,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};
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
Real-time features use Socket.IO v4 on the same port; see the README for its events. \
A Socket.IO request from a web page whose `Origin` is neither this server's own nor listed in `cors_origins` \
is answered 403 `FORBIDDEN` (clients that send no `Origin`, such as node's socket.io-client, are not affected)."
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
    /// RATE_LIMITED, UNAVAILABLE, INSUFFICIENT_STORAGE (507, the upload storage is full) or
    /// INTERNAL.
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

const DOCS_PAGE: &str = include_str!("docs.html");

async fn docs_page() -> impl IntoResponse {
    static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
        HeaderValue::from_str(&docs_policy(DOCS_PAGE)).expect("hashes are header-safe")
    });
    (
        [(header::CONTENT_SECURITY_POLICY, POLICY.clone())],
        Html(DOCS_PAGE),
    )
}

/// The page's own policy instead of the server's `default-src 'none'`: its inline script and
/// style run (by hash, so nothing injected into it would), and it may fetch the OpenAPI
/// document from this origin. Nothing else.
fn docs_policy(page: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hashes(page, "script"),
        inline_hashes(page, "style"),
    )
}

/// The CSP source of each `<tag>…</tag>` block of `page`: `'sha256-…'` over its exact text.
fn inline_hashes(page: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut sources = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        sources.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        rest = &body[end + close.len()..];
    }
    if sources.is_empty() {
        "'none'".to_owned()
    } else {
        sources.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_page_runs_only_its_own_inline_script_and_style() {
        let policy = docs_policy(DOCS_PAGE);
        for directive in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(directive), "{directive} missing: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        // Every script and style of the page is inline and covered by exactly one hash: a
        // `<script src>` or a `<style media>` added later would be blocked, and this says so.
        for tag in ["script", "style"] {
            let blocks = DOCS_PAGE.matches(&format!("<{tag}")).count();
            assert_eq!(
                inline_hashes(DOCS_PAGE, tag).matches("'sha256-").count(),
                blocks,
                "every <{tag}> of docs.html is a plain inline block"
            );
        }
        assert!(
            !DOCS_PAGE.contains(" style="),
            "inline style attributes need 'unsafe-hashes'"
        );
    }

    #[test]
    fn inline_hashes_cover_the_exact_text_between_the_tags() {
        // The example of CSP Level 3: `<script>alert('Hello, world.');</script>`.
        assert_eq!(
            inline_hashes("<p><script>alert('Hello, world.');</script></p>", "script"),
            "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='"
        );
        assert_eq!(inline_hashes("<p>no script</p>", "script"), "'none'");
    }
}
