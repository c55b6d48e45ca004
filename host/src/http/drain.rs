//! What is left of a request body the server answered without reading, read and dropped for
//! a moment. A server that answers early and closes while its client is still sending makes
//! the client's kernel see a reset, and the answer already sent is lost with it — a 413, a
//! 401 before a large JSON body, a refused upload. Reading on lets the client finish sending
//! and read why. Bounded in time and bytes: a client sending forever is cut off.
//!
//! Every request body is wrapped (see [`drain_unread`]); one dropped before its end hands the
//! rest to a task of its own. Bodies read to the end, and requests without one, cost nothing.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
};
use futures::StreamExt;
use http_body::{Frame, SizeHint};

/// How long an unread body is read on.
const DRAIN_FOR: Duration = Duration::from_secs(5);
/// How much of it, at most.
const DRAIN_AT_MOST: usize = 64 * 1024 * 1024;

/// Wraps `request`'s body so that the rest of it is drained if it is dropped unread.
pub fn drain_unread(request: Request) -> Request {
    request.map(|body| Body::new(DrainOnDrop(Some(body))))
}

struct DrainOnDrop(Option<Body>);

impl http_body::Body for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body));
        }
    }
}

/// Reads and drops the rest of `body` within [`DRAIN_FOR`] and [`DRAIN_AT_MOST`]; the
/// connection closes once this returns (if the body had not ended).
async fn discard(body: Body) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        let mut drained = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_AT_MOST {
                return;
            }
        }
    })
    .await;
}
