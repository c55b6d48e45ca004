//! `/files`: streaming multipart uploads, metadata, downloads and deletion; and `/uploads`,
//! where a file's `url` and `signedUrl` point.
//!
//! The multipart body is read part by part, and the file part chunk by chunk straight into
//! the upload pipeline: nothing holds a whole file. Because of that, `folder` and `courseId`
//! must come *before* `file` (or be given as query parameters): policy checks the file's
//! first bytes before any of it is kept, and needs to know where it is going.

use std::pin::pin;

use axum::{
    Router,
    extract::{
        DefaultBodyLimit, Multipart, State,
        multipart::{Field, MultipartError, MultipartRejection},
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{
    extract::{AuthUser, Path, Query, bearer_from},
    file_response,
    pace::{Pace, paced},
};
use crate::{
    domain::{CourseId, FileId, Folder, Page},
    error::{ApiJson, AppError, AppResult, Created},
    service::{
        files::{FileView, UploadRequest},
        paging::PageQuery,
    },
    state::AppState,
    telemetry::RequestId,
};

/// Room for the multipart framing and the small text fields around a file, so a request
/// whose length alone proves the file too large is refused before its body is read.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Longest value of a text field (`folder`, `courseId`).
const MAX_TEXT_FIELD: usize = 256;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/files/upload",
            // Caps are enforced while streaming, per folder and per user.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/files", get(list))
        .route("/files/{id}", get(show).delete(remove))
        .route("/files/{id}/download", get(download))
}

/// `/uploads/<folder>/<filename>`, outside `/api/v1` because it is what `url` names.
pub fn uploads_router() -> Router<AppState> {
    Router::new().route("/uploads/{folder}/{filename}", get(serve_upload))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct UploadQuery {
    /// The same as the `folder` field.
    pub folder: Option<String>,
    /// The same as the `courseId` field.
    pub course_id: Option<String>,
}

/// The multipart form of an upload. Parts are read in order: `folder` and `courseId` must
/// precede `file`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct UploadForm {
    /// `documents`, `images`, `videos` or `misc`; inferred from the detected type if absent.
    folder: Option<String>,
    /// Share the file with this course's members (the uploader must be one).
    course_id: Option<String>,
    /// The file; its part's filename is kept as `originalName`.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
}

/// Upload a file. The body streams to disk; a file over its folder's cap or the user's quota
/// is answered 413 as soon as the cap is passed.
#[utoipa::path(post, path = "/api/v1/files/upload", tag = "files", security(("bearer" = [])),
    params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = FileView),
        (status = 400, description = "VALIDATION_FAILED: missing file, unknown folder or field, field after the file"),
        (status = 403, description = "FORBIDDEN: not a member of courseId"),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over the folder's cap or the quota"),
        (status = 507, description = "INSUFFICIENT_STORAGE: the upload storage is full; nothing was stored"),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: the file policy refuses this type (details.reason)"),
        (status = 422, description = "REJECTED_BY_POLICY: the file policy refused it (details.reason)"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    request_id: RequestId,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(_) => {
            return AppError::validation("file", "expected a multipart/form-data body")
                .into_response();
        }
    };
    match receive(&state, &actor, &request_id, query, &headers, &mut multipart).await {
        Ok(view) => Created(view).into_response(),
        // What the client is still sending is drained as the body is dropped (see
        // `super::drain`), so that it reads this answer.
        Err(error) => error.into_response(),
    }
}

async fn receive(
    state: &AppState,
    actor: &crate::service::Actor,
    request_id: &RequestId,
    query: UploadQuery,
    headers: &HeaderMap,
    multipart: &mut Multipart,
) -> AppResult<FileView> {
    let files = &state.files;
    let mut folder = query.folder.as_deref().map(parse_folder).transpose()?;
    let mut course = query.course_id.as_deref().map(parse_course).transpose()?;

    let declared_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared_body {
        let cap = folder.map_or_else(|| files.limits().largest(), |f| files.limits().cap(f));
        if length > cap.saturating_add(MULTIPART_OVERHEAD) {
            return Err(AppError::OverLimit {
                reason: "too_large".into(),
                message: format!(
                    "the request is {length} bytes; files here may be at most {cap} bytes"
                ),
            });
        }
    }

    let mut upload = None;
    let mut seen = std::collections::HashSet::new();
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "folder" | "courseId" if upload.is_some() => {
                return Err(AppError::validation(
                    name,
                    "send folder and courseId before the file part",
                ));
            }
            // Each at most once: a form of endless small parts would otherwise cost the
            // server a parse per part for as long as the client likes.
            "folder" | "courseId" if !seen.insert(name.clone()) => {
                return Err(AppError::validation(name, "sent more than once"));
            }
            "folder" => folder = Some(parse_folder(&text(&mut field, "folder").await?)?),
            "courseId" => course = Some(parse_course(&text(&mut field, "courseId").await?)?),
            "file" if upload.is_some() => {
                return Err(AppError::validation("file", "only one file per upload"));
            }
            "file" => {
                let request = UploadRequest {
                    name: field.file_name().unwrap_or_default().to_owned(),
                    declared_type: field.content_type().map(str::to_owned),
                    declared_size: None,
                    folder,
                    course,
                };
                let mut receiving = files.begin_upload(actor, request_id, request).await?;
                let mut chunks = pin!(paced(field, Pace::of(&state.config)));
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(|e| e.into_app_error("file", malformed))?;
                    receiving.write(&chunk).await?;
                }
                upload = Some(receiving);
            }
            "" => return Err(AppError::validation("body", "a multipart part has no name")),
            other => {
                return Err(AppError::validation(
                    other,
                    format!("unknown field {other:?}; expected file, folder, courseId"),
                ));
            }
        }
    }
    match upload {
        Some(upload) => upload.finish().await,
        None => Err(AppError::validation("file", "a file part is required")),
    }
}

async fn text(field: &mut Field<'_>, name: &str) -> AppResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_FIELD {
            return Err(AppError::validation(name, "value too long"));
        }
    }
    String::from_utf8(bytes).map_err(|_| AppError::validation(name, "must be UTF-8 text"))
}

fn parse_folder(value: &str) -> AppResult<Folder> {
    Folder::parse(value.trim()).ok_or_else(|| {
        AppError::validation("folder", "must be one of documents, images, videos, misc")
    })
}

fn parse_course(value: &str) -> AppResult<CourseId> {
    uuid::Uuid::try_parse(value.trim())
        .map(CourseId)
        .map_err(|_| AppError::validation("courseId", "must be a course id"))
}

fn malformed(error: MultipartError) -> AppError {
    AppError::validation(
        "body",
        format!("malformed multipart body: {}", error.body_text()),
    )
}

/// The caller's files, newest first.
#[utoipa::path(get, path = "/api/v1/files", tag = "files", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<FileView>)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Query(query): Query<PageQuery>,
) -> AppResult<ApiJson<Page<FileView>>> {
    let page = query.parse()?;
    state.files.list(&actor, page).await.map(ApiJson)
}

/// One file's metadata (owner, members of its course, admins).
#[utoipa::path(get, path = "/api/v1/files/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = FileView), (status = 404, description = "NOT_FOUND: no such file, or not yours to see")))]
pub async fn show(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<FileId>,
) -> AppResult<ApiJson<FileView>> {
    state.files.get(&actor, id).await.map(ApiJson)
}

/// Delete a file (owner, admins): the row and the bytes. Messages that attached it show the
/// attachment as `{id, deleted: true}`.
#[utoipa::path(delete, path = "/api/v1/files/{id}", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "`{}`"), (status = 403, description = "FORBIDDEN: a course member who does not own it"),
        (status = 404, description = "NOT_FOUND")))]
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<FileId>,
) -> AppResult<ApiJson<Value>> {
    state.files.delete(&actor, id).await?;
    Ok(ApiJson(json!({})))
}

/// The bytes. Honours a single `Range` (206, or 416 outside the file), `If-None-Match` (304)
/// and `If-Range`; `Content-Disposition` carries the original name.
#[utoipa::path(get, path = "/api/v1/files/{id}/download", tag = "files", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "the file"), (status = 206, description = "a range of it"),
        (status = 304, description = "not modified"), (status = 404, description = "NOT_FOUND"),
        (status = 416, description = "RANGE_NOT_SATISFIABLE, with `Content-Range: bytes */size`")))]
pub async fn download(
    State(state): State<AppState>,
    AuthUser(actor): AuthUser,
    Path(id): Path<FileId>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let file = state.files.readable(&actor, id).await?;
    file_response::send(&state.files, &file, &headers).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// Unix time after which a signed link stops working.
    pub expires: Option<String>,
    /// The link's signature.
    pub sig: Option<String>,
}

/// A file by its `url` (with a bearer token of someone who may read it) or its `signedUrl`
/// (no header needed until it expires; 403 once expired or altered).
#[utoipa::path(get, path = "/uploads/{folder}/{filename}", tag = "files", params(("folder" = String, Path), ("filename" = String, Path), SignedQuery),
    responses((status = 200, description = "the file; ranges as for /download"), (status = 401, description = "UNAUTHORIZED: no token and no signature"),
        (status = 403, description = "FORBIDDEN: expired or tampered signedUrl"), (status = 404, description = "NOT_FOUND")))]
pub async fn serve_upload(
    State(state): State<AppState>,
    axum::extract::Path((folder, filename)): axum::extract::Path<(String, String)>,
    Query(signed): Query<SignedQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let not_found = || AppError::NotFound("file not found".into());
    let signed_link = signed.expires.is_some() || signed.sig.is_some();
    let actor = if signed_link {
        None
    } else {
        let token = bearer_from(&headers).ok_or_else(|| {
            AppError::Unauthorized("a bearer token or a signed link is required".into())
        })?;
        Some(state.auth.authenticate(token)?)
    };
    let folder = Folder::parse(&folder).ok_or_else(not_found)?;
    let file = state.files.by_name(folder, &filename).await?;
    match actor {
        Some(actor) => state.files.check_readable(&actor, &file).await?,
        None => {
            let expires = signed
                .expires
                .as_deref()
                .and_then(|e| e.parse::<i64>().ok());
            let valid = match (expires, signed.sig.as_deref()) {
                (Some(expires), Some(sig)) => state.files.signed_link_valid(&file, expires, sig),
                _ => false,
            };
            if !valid {
                return Err(AppError::Forbidden(
                    "this link has expired or is not valid".into(),
                ));
            }
        }
    }
    file_response::send(&state.files, &file, &headers).await
}
