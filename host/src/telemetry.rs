//! Logging and metrics set-up.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG`-style filtering (default `info`), text or JSON.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LYCEUM_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,socketioxide=warn,engineioxide=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    // A second server in the same process (tests) keeps the first subscriber.
    let _ = result;
}

/// The id that ties together what one request caused: its log lines (the `request_id` of
/// its span), its `x-request-id` response header, and every policy plugin call it made.
/// An HTTP request's comes from the request-id middleware (the client's own when usable); a
/// Socket.IO event, which has no HTTP request, gets a fresh UUIDv7.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The longest client-sent id kept; a longer one is replaced by a generated one.
    pub const MAX_LEN: usize = 128;

    /// A fresh id, for work that no HTTP request carries (a Socket.IO event).
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// A client's id, if it is fit to be logged, echoed and handed to plugins: visible ASCII
    /// (no spaces, no control characters), at most [`Self::MAX_LEN`] bytes.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.is_empty() || text.len() > Self::MAX_LEN || !text.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        std::str::from_utf8(text)
            .ok()
            .map(|text| RequestId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder, installed by the first call. Metrics are
/// process-global, so several servers in one process (as in the tests) share one registry.
///
/// A handle (`metrics::counter!` and friends) binds to the recorder installed when it is
/// resolved and keeps it: one resolved before this first call counts into nothing for
/// good. Handles resolved per use (HTTP, chat) are safe either way; handles kept for a long
/// time (the policy engine's per plugin) need this called first, which `build` does.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            // Histogram samples wait in the recorder until they are folded into the
            // buckets: by a scrape of /metrics, or by this. Without it a server nobody scrapes
            // keeps every sample of every plugin call and request, growing for good.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "lyceum_http_requests_total",
        "HTTP requests by method, route and status"
    );
    metrics::describe_histogram!(
        "lyceum_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and route"
    );
    metrics::describe_gauge!("lyceum_socket_connections", "Open Socket.IO connections");
}

/// Records a counter and a latency observation per request, labelled by the matched route
/// template (never the raw path, which would explode the label space).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("lyceum_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("lyceum_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_id_is_kept_only_when_fit_for_logs() {
        assert_eq!(
            RequestId::parse(b"trace-me-42")
                .map(String::from)
                .as_deref(),
            Some("trace-me-42")
        );
        let longest = "a".repeat(RequestId::MAX_LEN);
        assert!(RequestId::parse(longest.as_bytes()).is_some());
        let too_long = "a".repeat(RequestId::MAX_LEN + 1);
        let unfit: [&[u8]; 5] = [
            b"",
            too_long.as_bytes(),
            b"two words",
            b"line\nbreak",
            "caf\u{e9}".as_bytes(),
        ];
        for unfit in unfit {
            assert_eq!(RequestId::parse(unfit), None, "{unfit:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(id, RequestId::generate());
    }
}
