//! The one error type of the API and its mapping onto the contract's envelope.
//!
//! Services return `AppError`; HTTP handlers turn it into
//! `{"success": false, "error": {code, message, details?}}` with the contract's status, and
//! the socket gateways put the same `error` object in their acks. Internal failures are logged
//! here with their cause and answered with a generic message, so nothing internal leaks.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{storage::StorageError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Over a configured limit (a folder's cap, a quota): 413 with `details.reason`.
    #[error("{message}")]
    OverLimit { reason: String, message: String },
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{message}")]
    UnsupportedMediaType { reason: String, message: String },
    #[error("{message}")]
    RejectedByPolicy { reason: String, message: String },
    /// A plugin module or chain that failed its checks: `VALIDATION_FAILED` with
    /// `details.reason` (and `details.imports` for forbidden imports).
    #[error("{message}")]
    PluginRefused {
        reason: String,
        message: String,
        imports: Vec<String>,
    },
    #[error("too many requests, retry in {}s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    /// The disk (or object store) holding uploads is full: `INSUFFICIENT_STORAGE`, 507. Not in
    /// the contract's list, which is silent on it; a client can tell "try later" from "too big".
    #[error("{0}")]
    InsufficientStorage(String),
    /// Refused for lack of capacity (a full queue): `UNAVAILABLE` with a retry delay.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The machine-readable codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    RangeNotSatisfiable,
    UnsupportedMediaType,
    RejectedByPolicy,
    RateLimited,
    Unavailable,
    InsufficientStorage,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RejectedByPolicy => "REJECTED_BY_POLICY",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::InsufficientStorage => "INSUFFICIENT_STORAGE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ValidationFailed => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RejectedByPolicy => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(error.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Validation { .. } | AppError::PluginRefused { .. } => {
                ErrorCode::ValidationFailed
            }
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::PayloadTooLarge(_) | AppError::OverLimit { .. } => ErrorCode::PayloadTooLarge,
            AppError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            AppError::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            AppError::RejectedByPolicy { .. } => ErrorCode::RejectedByPolicy,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Unavailable(_) | AppError::Overloaded { .. } => ErrorCode::Unavailable,
            AppError::InsufficientStorage(_) => ErrorCode::InsufficientStorage,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            AppError::Validation { field, .. } => Some(json!({ "field": field })),
            AppError::PluginRefused {
                reason, imports, ..
            } => Some(if imports.is_empty() {
                json!({ "reason": reason })
            } else {
                json!({ "reason": reason, "imports": imports })
            }),
            AppError::RejectedByPolicy { reason, .. }
            | AppError::UnsupportedMediaType { reason, .. }
            | AppError::OverLimit { reason, .. } => Some(json!({ "reason": reason })),
            AppError::RateLimited { retry_after } | AppError::Overloaded { retry_after, .. } => {
                Some(json!({ "retryAfter": retry_after.as_secs().max(1) }))
            }
            AppError::RangeNotSatisfiable { size } => Some(json!({ "size": size })),
            _ => None,
        }
    }

    /// The contract's `error` object, shared by HTTP bodies and socket acks.
    pub fn to_error_body(&self) -> Value {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut body = json!({ "code": self.code().as_str(), "message": self.to_string() });
        if let Some(details) = self.details() {
            body["details"] = details;
        }
        body
    }

    /// The socket acknowledgement for a failed event: `{ok: false, error}`.
    pub fn to_ack(&self) -> Value {
        json!({ "ok": false, "error": self.to_error_body() })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = json!({ "success": false, "error": self.to_error_body() });
        let mut response = (code.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            AppError::RateLimited { retry_after } | AppError::Overloaded { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            AppError::RangeNotSatisfiable { size } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            AppError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StorageError> for AppError {
    /// A full disk is the operator's to fix and the client's to retry; anything else about
    /// the bytes' storage is internal.
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::error!(error = %io, "upload storage is full");
                AppError::InsufficientStorage(
                    "the server has no room for this upload now; try again later".into(),
                )
            }
            _ => AppError::Internal(error.into()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => AppError::NotFound("not found".into()),
            StoreError::Conflict(what) => AppError::Conflict(what),
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                AppError::Unavailable("the database is unavailable, try again shortly".into())
            }
            StoreError::Other(cause) => AppError::Internal(cause),
        }
    }
}

/// The success envelope: `{"success": true, "data": ...}`.
pub struct ApiJson<T>(pub T);

/// The same envelope with `201 Created`.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(json!({ "success": true, "data": self.0 })).into_response()
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, ApiJson(self.0)).into_response()
    }
}

pub type AppResult<T> = Result<T, AppError>;
