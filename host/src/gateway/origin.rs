//! Which web pages may open a socket.
//!
//! CORS does not guard a WebSocket upgrade (browsers send no preflight for it), and a
//! long-polling handshake needs none either, so without this check a page on any site could
//! open a socket with a token it has stolen and act as its victim. Browsers name the page's
//! origin in `Origin` on every one of these requests, and a page cannot change it, so the
//! gateway is closed to pages other than:
//!
//! - the origins listed in `cors_origins` (compared exactly; `*` admits every origin), and
//! - the server's own origin, `http(s)://` + the request's `Host`, where a web client served by
//!   this server lives.
//!
//! A request without `Origin` passes: it does not come from a web page (node's Socket.IO
//! client, load tests, native apps), and whoever sends it can set any header they like anyway.

use std::{collections::HashSet, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
};

use crate::{error::AppError, gateway::SOCKET_IO_PATH};

/// The origins whose pages may talk to the gateway, besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    any: bool,
    listed: HashSet<String>,
}

impl AllowedOrigins {
    /// From the `cors_origins` setting.
    pub fn new(configured: &[String]) -> Self {
        AllowedOrigins {
            any: configured.iter().any(|origin| origin == "*"),
            listed: configured
                .iter()
                .filter(|origin| *origin != "*")
                .map(|origin| origin.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a request that names `origin` (its `Origin` header, if any) and was sent to
    /// `host` (its `Host` header) may reach the gateway.
    ///
    /// An origin is `scheme://host[:port]`, every part of it case-insensitive, so the
    /// comparisons are exact after lowercasing: a prefix, a suffix or another port is another
    /// site.
    pub fn admits(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        if self.listed.contains(&origin) {
            return true;
        }
        let Some(authority) = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
        else {
            return false;
        };
        // The scheme is not compared: TLS usually ends at a proxy in front of the server,
        // which then sees plain HTTP from pages served over HTTPS.
        host.is_some_and(|host| !authority.is_empty() && authority == host.to_ascii_lowercase())
    }

    /// [`Self::admits`] on a request's headers. Several `Origin`s, or one that is not text,
    /// are no browser's: refused.
    fn admits_request(&self, headers: &HeaderMap, authority: Option<&str>) -> bool {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => None,
            (Some(only), None) => match only.to_str() {
                Ok(origin) => Some(origin),
                Err(_) => return false,
            },
            (Some(_), Some(_)) => return false,
        };
        // HTTP/2 requests name their host in the `:authority` pseudo-header, which hyper puts
        // in the URI rather than in `Host`.
        let host = match headers.get(header::HOST) {
            Some(host) => host.to_str().ok(),
            None => authority,
        };
        self.admits(origin, host)
    }
}

/// Refuses, with 403 `FORBIDDEN`, a Socket.IO request (any transport, handshake or not)
/// from a page whose origin is not admitted. Other paths are not its concern: CORS guards
/// them.
pub async fn guard(
    State(allowed): State<Arc<AllowedOrigins>>,
    request: Request,
) -> Result<Request, AppError> {
    if !request.uri().path().starts_with(SOCKET_IO_PATH) {
        return Ok(request);
    }
    let authority = request.uri().authority().map(|a| a.as_str());
    if allowed.admits_request(request.headers(), authority) {
        return Ok(request);
    }
    tracing::info!(
        origin = ?request.headers().get(header::ORIGIN),
        host = ?request.headers().get(header::HOST),
        "refused a socket request from a foreign origin"
    );
    Err(AppError::Forbidden(
        "this origin may not open a socket".into(),
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const HOST: Option<&str> = Some("lyceum.example");

    fn configured(origins: &[&str]) -> AllowedOrigins {
        AllowedOrigins::new(&origins.iter().map(|o| o.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn clients_that_are_not_web_pages_send_no_origin_and_pass() {
        assert!(configured(&[]).admits(None, HOST));
        assert!(configured(&[]).admits(None, None));
    }

    #[test]
    fn a_listed_origin_passes_exactly_as_listed_in_any_case() {
        let allowed = configured(&["https://good.example", "http://localhost:5173"]);
        assert!(allowed.admits(Some("https://good.example"), HOST));
        assert!(allowed.admits(Some("HTTPS://Good.Example"), HOST));
        assert!(allowed.admits(Some("http://localhost:5173"), HOST));
        assert!(configured(&["https://Good.Example"]).admits(Some("https://good.example"), HOST));
    }

    #[test]
    fn look_alikes_of_a_listed_origin_are_other_sites() {
        let allowed = configured(&["https://good.example"]);
        for origin in [
            "https://good.example.evil.com",
            "https://evil-good.example",
            "https://agood.example",
            "https://good.example:444",
            "https://good.example:443",
            "http://good.example",
            "wss://good.example",
            "https://good.example/",
            "https://good.exampl",
            "https://evil.example",
            "",
        ] {
            assert!(!allowed.admits(Some(origin), HOST), "{origin} passed");
        }
    }

    #[test]
    fn the_servers_own_origin_passes_over_http_or_https() {
        let allowed = configured(&[]);
        assert!(allowed.admits(Some("https://lyceum.example"), HOST));
        assert!(allowed.admits(Some("http://lyceum.example"), HOST));
        assert!(allowed.admits(Some("https://LYCEUM.example"), Some("lyceum.EXAMPLE")));
        assert!(allowed.admits(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
    }

    #[test]
    fn same_origin_means_the_same_host_and_port() {
        let allowed = configured(&[]);
        assert!(!allowed.admits(Some("http://127.0.0.1:8081"), Some("127.0.0.1:8080")));
        assert!(!allowed.admits(Some("http://127.0.0.1"), Some("127.0.0.1:8080")));
        assert!(!allowed.admits(Some("https://lyceum.example.evil.com"), HOST));
        assert!(!allowed.admits(Some("https://evil.example"), HOST));
        assert!(!allowed.admits(Some("ftp://lyceum.example"), HOST));
        // Without a host the server cannot know its own origin.
        assert!(!allowed.admits(Some("https://lyceum.example"), None));
        assert!(!allowed.admits(Some("https://"), Some("")));
    }

    #[test]
    fn opaque_origins_are_refused() {
        // Sandboxed frames, `data:` and `file:` pages send `null`.
        assert!(!configured(&[]).admits(Some("null"), HOST));
        assert!(!configured(&["https://good.example"]).admits(Some("null"), HOST));
    }

    #[test]
    fn a_star_admits_every_origin() {
        let allowed = configured(&["*"]);
        assert!(allowed.admits(Some("https://evil.example"), HOST));
        assert!(allowed.admits(Some("null"), HOST));
    }

    #[test]
    fn requests_with_several_origins_or_a_binary_one_are_refused() {
        let allowed = configured(&["https://good.example"]);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("lyceum.example"));
        assert!(allowed.admits_request(&headers, None));

        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://good.example"),
        );
        assert!(allowed.admits_request(&headers, None));
        headers.append(
            header::ORIGIN,
            HeaderValue::from_static("https://good.example"),
        );
        assert!(!allowed.admits_request(&headers, None));

        headers.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"https://good.example\xff").unwrap(),
        );
        assert!(!allowed.admits_request(&headers, None));
    }

    #[test]
    fn http2_requests_are_compared_with_their_authority() {
        let allowed = configured(&[]);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://lyceum.example"),
        );
        assert!(allowed.admits_request(&headers, Some("lyceum.example")));
        assert!(!allowed.admits_request(&headers, Some("other.example")));
    }
}
