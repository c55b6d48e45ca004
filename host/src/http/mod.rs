//! The HTTP surface: `/api/v1` resources, operations endpoints, API docs, and the
//! middleware every request passes through.

pub mod auth;
pub mod chat;
pub mod courses;
pub mod deadline;
pub mod docs;
pub mod drain;
pub mod extract;
pub mod file_response;
pub mod files;
pub mod headers;
pub mod ops;
pub mod pace;
pub mod plugins;
pub mod range;
pub mod server;
pub mod sessions;
pub mod tus;

use std::{any::Any, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, Request, header},
    middleware,
    response::{IntoResponse, Response},
};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, Any as AnyOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};

use crate::{
    error::AppError,
    state::AppState,
    telemetry::{self, RequestId},
};

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every `/api/v1` resource router, merged.
fn api() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(chat::router())
        .merge(courses::router())
        .merge(sessions::router())
        .merge(files::router())
        .merge(tus::router())
        .merge(plugins::router())
}

pub fn router(state: AppState) -> Router {
    let max_body = usize::try_from(state.config.max_json_body).unwrap_or(usize::MAX);
    let cors = state.config.cors_origins.clone();
    let routes = Router::new()
        .nest("/api/v1", api())
        .merge(files::uploads_router())
        .merge(ops::router())
        .merge(docs::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            deadline::limit,
        ))
        .layer(middleware::from_fn(telemetry::track_http))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    with_middleware(routes, &cors)
}

/// The layers around every request: request ids, tracing spans (tokens never logged),
/// panics answered as INTERNAL in the envelope, CORS.
fn with_middleware(routes: Router, cors: &[String]) -> Router {
    // The CORS layer answers every OPTIONS request as a preflight; a tus client's discovery
    // request (OPTIONS without Access-Control-Request-Method) must reach its handler instead.
    let plain = routes.clone();
    let with_cors = routes.layer(cors_layer(cors));
    let routes =
        Router::new().fallback_service(tower::service_fn(move |request: Request<Body>| {
            let service = if tus::is_discovery(&request) {
                plain.clone()
            } else {
                with_cors.clone()
            };
            service.oneshot(request)
        }));
    routes.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
            .map_request(drop_unfit_request_id)
            .map_request(drain::drain_unread)
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // The path only: query strings can carry signed-URL signatures.
                tracing::info_span!("http", request_id = %id, method = %request.method(), path = %request.uri().path())
            }))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// A client's `x-request-id` ends up in logs, in the response and in what plugins (and the
/// decisions recorded of them) are told, so one that is not a short token of visible ASCII
/// is dropped here, and the request gets a generated id like any other.
fn drop_unfit_request_id<B>(mut request: Request<B>) -> Request<B> {
    let mut sent = request.headers().get_all(&REQUEST_ID).iter();
    let fit = match (sent.next(), sent.next()) {
        (None, _) => true,
        (Some(only), None) => RequestId::parse(only.as_bytes()).is_some(),
        // Several: no one of them is the request's.
        (Some(_), Some(_)) => false,
    };
    if !fit {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::HEAD,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
            HeaderName::from_static("tus-resumable"),
            HeaderName::from_static("upload-length"),
            HeaderName::from_static("upload-offset"),
            HeaderName::from_static("upload-metadata"),
        ])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_DISPOSITION,
            header::RETRY_AFTER,
            header::ETAG,
            header::LOCATION,
            REQUEST_ID,
            HeaderName::from_static("tus-resumable"),
            HeaderName::from_static("tus-version"),
            HeaderName::from_static("tus-extension"),
            HeaderName::from_static("tus-max-size"),
            HeaderName::from_static("upload-length"),
            HeaderName::from_static("upload-offset"),
            HeaderName::from_static("lyceum-file-id"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AnyOrigin)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    AppError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope_without_details() {
        async fn boom() -> &'static str {
            panic!("secret internal detail")
        }
        let app = with_middleware(Router::new().route("/boom", get(boom)), &[]);
        let response = app
            .oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["success"], false);
        assert_eq!(json["error"]["code"], "INTERNAL");
        assert!(!String::from_utf8_lossy(&body).contains("secret internal detail"));
    }

    /// What a handler receives as the request's id, and the id the response names.
    async fn ids_seen(sent: &[&str]) -> (String, String) {
        async fn handler(id: RequestId) -> String {
            id.to_string()
        }
        let app = with_middleware(Router::new().route("/id", get(handler)), &[]);
        let mut request = Request::builder().uri("/id");
        for id in sent {
            request = request.header(&REQUEST_ID, *id);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let answered = response.headers()[&REQUEST_ID].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), answered)
    }

    #[tokio::test]
    async fn handlers_get_the_id_the_response_names_the_clients_when_fit() {
        let (seen, answered) = ids_seen(&["lesson-42.send:7"]).await;
        assert_eq!(
            (seen.as_str(), answered.as_str()),
            ("lesson-42.send:7", "lesson-42.send:7")
        );

        let (seen, answered) = ids_seen(&[]).await;
        assert_eq!(seen, answered);
        assert!(uuid::Uuid::parse_str(&seen).is_ok(), "{seen}");

        let too_long = "x".repeat(RequestId::MAX_LEN + 1);
        for sent in [&[too_long.as_str()][..], &["two words"], &["one", "two"]] {
            let (seen, answered) = ids_seen(sent).await;
            assert_eq!(seen, answered, "{sent:?}");
            assert!(
                uuid::Uuid::parse_str(&seen).is_ok(),
                "{sent:?} became {seen}"
            );
        }
    }
}
