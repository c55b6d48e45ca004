//! The security headers every response carries, whatever answered it: a handler, an error,
//! the fallback, a panic, or the Socket.IO layer.
//!
//! Nothing this server sends is meant to run in a browser (the docs page aside), to be framed,
//! or to leak the address it was fetched from, so the defaults forbid all of it. A response
//! that needs something else sets its own header, which is then left alone: file downloads add
//! `sandbox` to their policy, the docs page allows its own script.
//!
//! No `Strict-Transport-Security`: TLS ends at the proxy in front of the server, which is
//! where HSTS belongs.

use axum::{
    http::{HeaderName, HeaderValue, header},
    response::Response,
};

/// Loads nothing, runs nothing, and may be framed by no page.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

const DEFAULTS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, DEFAULT_CSP),
];

/// Adds each default header the response does not already have.
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in DEFAULTS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, middleware, routing::get};
    use tower::ServiceExt;

    use super::*;

    async fn headers_of(app: Router, path: &str) -> axum::http::HeaderMap {
        let app = app.layer(middleware::map_response(secure));
        let response = app
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.headers().clone()
    }

    #[tokio::test]
    async fn every_response_gets_the_defaults_even_one_no_route_answered() {
        let headers =
            headers_of(Router::new().route("/", get(|| async { "hi" })), "/nowhere").await;
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], DEFAULT_CSP);
    }

    #[tokio::test]
    async fn a_header_the_handler_chose_is_kept() {
        async fn framed() -> ([(HeaderName, &'static str); 1], &'static str) {
            (
                [(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; sandbox",
                )],
                "inert",
            )
        }
        let headers = headers_of(Router::new().route("/file", get(framed)), "/file").await;
        let policies: Vec<_> = headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .collect();
        assert_eq!(policies, ["default-src 'none'; sandbox"]);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    }
}
