//! `/files/tus`: resumable uploads over the tus 1.0 protocol (core, creation, termination),
//! for large videos on flaky connections. An upload goes through the same validation slot,
//! caps and quota as `/files/upload`; `Upload-Metadata` carries `filename`, `filetype`,
//! `folder` and `courseId`. When the last byte arrives the file exists, and the PATCH answer
//! names it in `Lyceum-File-Id`.

use std::pin::pin;

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, State},
    http::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::options,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;
use uuid::Uuid;

use super::{
    extract::{AuthUser, Path},
    pace::{Pace, paced},
};
use crate::{
    domain::{CourseId, Folder},
    error::{AppError, AppResult},
    service::files::{UploadRequest, resumable::Progress},
    state::AppState,
    telemetry::RequestId,
};

const VERSION: &str = "1.0.0";
const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const FILE_ID: HeaderName = HeaderName::from_static("lyceum-file-id");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files/tus", options(capabilities).post(create))
        .route(
            "/files/tus/{id}",
            axum::routing::head(progress)
                .patch(append)
                .delete(terminate)
                .layer(DefaultBodyLimit::disable()),
        )
        .layer(middleware::from_fn(tus_headers))
}

/// A tus discovery request: `OPTIONS` on the creation endpoint that is not a CORS preflight.
pub fn is_discovery<B>(request: &Request<B>) -> bool {
    request.method() == axum::http::Method::OPTIONS
        && request.uri().path() == "/api/v1/files/tus"
        && !request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Every answer says which protocol version it speaks; requests must speak the same one.
async fn tus_headers(request: axum::extract::Request, next: Next) -> Response {
    let is_options = request.method() == axum::http::Method::OPTIONS;
    let version = request
        .headers()
        .get(&TUS_RESUMABLE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = if !is_options && version.as_deref() != Some(VERSION) {
        // tus requires 412 here; the body is the usual envelope.
        let body = json!({ "success": false, "error": {
            "code": "VALIDATION_FAILED",
            "message": format!("this server speaks tus {VERSION}; send Tus-Resumable: {VERSION}"),
            "details": { "field": "Tus-Resumable" },
        }});
        let mut response = (StatusCode::PRECONDITION_FAILED, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("tus-version", HeaderValue::from_static(VERSION));
        response
    } else {
        next.run(request).await
    };
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    response
}

/// What this server supports (tus discovery).
#[utoipa::path(options, path = "/api/v1/files/tus", tag = "files",
    responses((status = 204, description = "`Tus-Version`, `Tus-Extension: creation,termination`, `Tus-Max-Size`")))]
pub async fn capabilities(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("tus-version", HeaderValue::from_static(VERSION));
    headers.insert(
        "tus-extension",
        HeaderValue::from_static("creation,termination"),
    );
    headers.insert(
        "tus-max-size",
        HeaderValue::from(state.files.limits().largest()),
    );
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// Create a resumable upload: `Upload-Length` (required) and `Upload-Metadata`
/// (`filename`, `filetype`, `folder`, `courseId`, base64 values). 201 with `Location`.
#[utoipa::path(post, path = "/api/v1/files/tus", tag = "files", security(("bearer" = [])),
    responses((status = 201, description = "`Location` of the new upload"),
        (status = 400, description = "VALIDATION_FAILED: missing Upload-Length, bad metadata"),
        (status = 412, description = "missing or other Tus-Resumable"),
        (status = 413, description = "PAYLOAD_TOO_LARGE: longer than the folder's cap or the quota left")))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    request_id: RequestId,
    headers: HeaderMap,
) -> AppResult<Response> {
    if headers.contains_key("upload-defer-length") {
        return Err(AppError::validation(
            "Upload-Defer-Length",
            "the length must be known when the upload is created",
        ));
    }
    let length = number(&headers, &UPLOAD_LENGTH)?
        .ok_or_else(|| AppError::validation("Upload-Length", "required"))?;
    let mut request = metadata(&headers)?;
    request.declared_size = Some(length);
    let id = state
        .resumable
        .create(&state.files, &actor, &request_id, request)
        .await?;
    let mut response = StatusCode::CREATED.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, value(&format!("/api/v1/files/tus/{id}")));
    Ok(response)
}

/// Where an upload stands: `Upload-Offset` and `Upload-Length` (and `Lyceum-File-Id` once
/// complete). Only its creator sees it.
#[utoipa::path(head, path = "/api/v1/files/tus/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "`Upload-Offset`, `Upload-Length`"), (status = 404, description = "NOT_FOUND")))]
pub async fn progress(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    let progress = state.resumable.progress(&actor, id).await?;
    Ok(progress_response(StatusCode::OK, &progress))
}

/// Append `application/offset+octet-stream` bytes at `Upload-Offset` (409 if that is not
/// where the upload stands). 204 with the new offset.
#[utoipa::path(patch, path = "/api/v1/files/tus/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "`Upload-Offset`; `Lyceum-File-Id` when this completed the file"),
        (status = 409, description = "CONFLICT: wrong offset, or another append in progress"),
        (status = 413, description = "PAYLOAD_TOO_LARGE"), (status = 415, description = "UNSUPPORTED_MEDIA_TYPE"),
        (status = 507, description = "INSUFFICIENT_STORAGE: the upload storage is full; the upload is discarded"),
        (status = 422, description = "REJECTED_BY_POLICY")))]
pub async fn append(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/offset+octet-stream" {
        return Err(AppError::UnsupportedMediaType {
            reason: "content_type".into(),
            message: "appends are Content-Type: application/offset+octet-stream".into(),
        });
    }
    let offset = number(&headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| AppError::validation("Upload-Offset", "required"))?;
    // A client whose connection died without a close would otherwise hold the append, and
    // the upload's lock, for good: its retry from a new connection would be refused as a
    // concurrent append.
    let body = pin!(paced(body.into_data_stream(), Pace::of(&state.config)));
    let progress = state.resumable.append(&actor, id, offset, body).await?;
    Ok(progress_response(StatusCode::NO_CONTENT, &progress))
}

/// Abandon an upload (tus termination); its bytes are removed.
#[utoipa::path(delete, path = "/api/v1/files/tus/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "gone"), (status = 404, description = "NOT_FOUND")))]
pub async fn terminate(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    state.resumable.terminate(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn progress_response(status: StatusCode, progress: &Progress) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(progress.offset));
    headers.insert(UPLOAD_LENGTH, HeaderValue::from(progress.length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(file) = &progress.file {
        headers.insert(FILE_ID, value(&file.id.to_string()));
    }
    response
}

fn number(headers: &HeaderMap, name: &HeaderName) -> AppResult<Option<u64>> {
    let Some(raw) = headers.get(name) else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| AppError::validation(name.as_str(), "must be a non-negative integer"))
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs.
fn metadata(headers: &HeaderMap) -> AppResult<UploadRequest> {
    let mut request = UploadRequest::default();
    let Some(raw) = headers.get(&UPLOAD_METADATA) else {
        return Ok(request);
    };
    let bad = || AppError::validation("Upload-Metadata", "pairs of a key and a base64 value");
    for pair in raw.to_str().map_err(|_| bad())?.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        match key {
            "filename" | "name" => request.name = text,
            "filetype" | "type" => request.declared_type = Some(text),
            "folder" => {
                request.folder = Some(Folder::parse(text.trim()).ok_or_else(|| {
                    AppError::validation("folder", "must be one of documents, images, videos, misc")
                })?);
            }
            "courseId" => {
                request.course = Some(
                    Uuid::try_parse(text.trim())
                        .map(CourseId)
                        .map_err(|_| AppError::validation("courseId", "must be a course id"))?,
                );
            }
            // Clients add their own keys (tus-js-client sends `relativePath`); they are ignored.
            _ => {}
        }
    }
    Ok(request)
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
