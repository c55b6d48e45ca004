//! Accepting connections and handing them to hyper.
//!
//! axum's own `serve` gives hyper no timer, and hyper's header read timeout needs one to fire:
//! a client that sends a request head a byte at a time, or never finishes it (slowloris),
//! would hold a connection and a task for as long as it likes. This is the same loop with the
//! timer set, so a head that is not complete within `header_read` closes its connection. The
//! timeout also bounds how long an idle keep-alive connection waits for its next request.
//! Upgraded connections (WebSockets) are no longer hyper's and are not affected.

use std::{convert::Infallible, future::Future, net::SocketAddr, pin::pin, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt;

/// How long one connection may take over what.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request head (or the end of the previous request on a
    /// keep-alive connection) to its last.
    pub header_read: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets every open connection
/// finish its requests in flight and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    // Connections watch `stop` for the shutdown, and hold `done` until they are over.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory for a moment: accepting again at once
                    // would spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Socket.IO frames are small and latency-bound: Nagle's algorithm (with delayed ACKs)
        // would hold them back by tens of milliseconds.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request.map(Body::new)
            });
        let service = TowerToHyperService::new(service);
        let (stop, done) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            connection(stream, remote, service, timeouts, stop).await;
            drop(done);
        });
    }
    drop(stop_rx);
    drop(done_rx);
    // Ask every connection to finish, then wait until the last one has.
    let _ = stop_tx.send(());
    done_tx.closed().await;
}

async fn connection<S>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    service: TowerToHyperService<S>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<()>,
) where
    S: tower::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%remote, error = %error, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                let _ = changed;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
