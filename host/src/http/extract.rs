//! Extractors that answer bad input in the contract's envelope instead of axum's plain-text
//! rejections: JSON bodies and query strings name the offending field, malformed path ids are
//! NOT_FOUND, and a missing or bad bearer token is UNAUTHORIZED.

use std::net::{IpAddr, SocketAddr};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::{error::AppError, service::Actor, state::AppState, telemetry::RequestId};

/// The signed-in caller. Rejects with UNAUTHORIZED when the `Authorization: Bearer` header is
/// missing, malformed, expired or wrongly signed.
pub struct AuthUser(pub Actor);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer_token(parts).ok_or_else(|| {
            AppError::Unauthorized("missing bearer token in the Authorization header".into())
        })?;
        let actor = state.auth.authenticate(token)?;
        Ok(AuthUser(actor))
    }
}

/// The request's id, as the request-id middleware settled it (see `http::with_middleware`):
/// the one in the `x-request-id` response header and the `request_id` of the request's logs.
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .headers
            .get(&super::REQUEST_ID)
            .and_then(|id| RequestId::parse(id.as_bytes()))
            // Only a router served without the middleware (a unit test) gets here.
            .unwrap_or_else(RequestId::generate))
    }
}

pub fn bearer_token(parts: &Parts) -> Option<&str> {
    bearer_from(&parts.headers)
}

pub fn bearer_from(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A JSON body. Errors name the field (`details.field`), with `body` for the whole body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(AppError::validation(
                "body",
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// A JSON body that may be absent (an empty body reads as `T::default()`).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The body whole, refused with 413 past `max_json_body` (its own limit, read as it streams
/// in: a `Content-Length` is not needed to refuse early).
async fn read_body(req: Request, state: &AppState) -> Result<Bytes, AppError> {
    let limit = usize::try_from(state.config.max_json_body).unwrap_or(usize::MAX);
    let mut stream = req.into_body().into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            AppError::validation("body", format!("the body could not be read: {e}"))
        })?;
        if bytes.len() + chunk.len() > limit {
            // The rest is drained as the body is dropped (see `super::drain`).
            return Err(AppError::PayloadTooLarge(format!(
                "the request body is over {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                AppError::validation("body", format!("the body is not valid JSON: {message}"))
            }
            _ => AppError::validation(field_of(&path, &message), strip_position(&message)),
        }
    })
}

/// Query parameters, with the same field-naming errors as bodies.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                let field = match field_of(&path, &message) {
                    field if field == "body" => "query".to_owned(),
                    field => field,
                };
                AppError::validation(field, format!("invalid query: {message}"))
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Path parameters; an id that does not parse names no resource, so it is NOT_FOUND.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|_| AppError::NotFound("no such resource".into()))
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop when the
/// operator says a trusted proxy sits in front.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(ClientIp(client_ip(
            &parts.headers,
            &parts.extensions,
            state.config.trust_forwarded_for,
        )))
    }
}

/// The address of the client behind a request's head (see [`ClientIp`]); the socket gateway
/// reads it from the head its handshake kept.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> IpAddr {
    if trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// `missing field `email`` at path `.` names `email`; an error at `user.name` names that path.
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let path = if path == "." { "" } else { path };
    match (missing, path) {
        (Some(field), "") => field.to_owned(),
        (Some(field), parent) => format!("{parent}.{field}"),
        (None, "") => "body".to_owned(),
        (None, path) => path.to_owned(),
    }
}

/// serde_json appends " at line 1 column 17"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u32,
    }

    fn field(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()).unwrap_err() {
            AppError::Validation { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(field(r#"{"age": 3}"#), "email");
        assert_eq!(field(r#"{"email": "a", "age": "old"}"#), "age");
        assert_eq!(field(r#"{"email": 5, "age": 3}"#), "email");
        assert_eq!(field("{not json"), "body");
        assert_eq!(field(r#"{"email": "#), "body");
        assert_eq!(field(""), "body");
        assert_eq!(field("[]"), "body");
    }
}
