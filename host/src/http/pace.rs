//! The slowest an upload body may arrive. A client that stops sending, or trickles a byte
//! now and then, would otherwise hold its request, its temporary file and its quota
//! reservation (and, for tus, the upload's lock) for as long as it kept the connection open.
//!
//! Time is cut into fixed windows of `upload_idle_timeout`; each must bring at least
//! `upload_min_rate` bytes per second of it, and at least one byte. Windows are fixed rather
//! than restarted by each chunk, so a trickle of tiny chunks is judged like silence.

use std::{pin::Pin, time::Duration};

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::error::AppError;

/// How fast a body must keep arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub window: Duration,
    pub min_bytes_per_second: u64,
}

impl Pace {
    /// The pace the configuration asks uploads for.
    pub fn of(config: &crate::config::Config) -> Pace {
        Pace {
            window: config.upload_idle_timeout,
            min_bytes_per_second: config.upload_min_rate,
        }
    }

    /// Bytes each window must bring.
    fn needed(&self) -> u64 {
        let bytes = self.min_bytes_per_second as f64 * self.window.as_secs_f64();
        (bytes as u64).max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PacedError<E> {
    /// The body itself failed (a broken connection, malformed framing).
    #[error(transparent)]
    Body(E),
    #[error(
        "only {received} bytes arrived in {} s, fewer than the {needed} required; the upload was abandoned",
        window.as_secs_f64()
    )]
    TooSlow {
        received: u64,
        needed: u64,
        window: Duration,
    },
}

impl<E: std::fmt::Display> PacedError<E> {
    /// The answer to give: the body's own failure as `body_error` makes it, a body too slow
    /// as VALIDATION_FAILED naming `field`.
    pub fn into_app_error(self, field: &str, body_error: impl FnOnce(E) -> AppError) -> AppError {
        match self {
            PacedError::Body(error) => body_error(error),
            too_slow => AppError::validation(field, too_slow.to_string()),
        }
    }
}

struct Paced<S> {
    body: Option<Pin<Box<S>>>,
    window_end: Instant,
    received: u64,
}

/// `body`'s chunks, ending in [`PacedError::TooSlow`] at the end of the first window that
/// brought too little. After any error the stream ends.
pub fn paced<S, E>(body: S, pace: Pace) -> impl Stream<Item = Result<Bytes, PacedError<E>>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Send,
{
    let start = Paced {
        body: Some(Box::pin(body)),
        window_end: Instant::now() + pace.window,
        received: 0,
    };
    futures::stream::unfold(start, move |mut state| async move {
        let mut body = state.body.take()?;
        loop {
            match tokio::time::timeout_at(state.window_end, body.next()).await {
                Ok(Some(Ok(bytes))) => {
                    state.received += bytes.len() as u64;
                    state.body = Some(body);
                    return Some((Ok(bytes), state));
                }
                Ok(Some(Err(error))) => return Some((Err(PacedError::Body(error)), state)),
                Ok(None) => return None,
                Err(_) if state.received < pace.needed() => {
                    let error = PacedError::TooSlow {
                        received: state.received,
                        needed: pace.needed(),
                        window: pace.window,
                    };
                    return Some((Err(error), state));
                }
                Err(_) => {
                    state.window_end += pace.window;
                    state.received = 0;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// 100 bytes in every window of 200 ms: 500 bytes a second.
    const PACE: Pace = Pace {
        window: Duration::from_millis(200),
        min_bytes_per_second: 500,
    };

    /// Sends `chunk` bytes every `every`, `count` times, and says what the paced stream
    /// yielded: the bytes that got through and whether it ended in TooSlow.
    async fn run(chunk: usize, every: Duration, count: usize) -> (usize, bool) {
        let body = futures::stream::iter(0..count).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, Infallible>(Bytes::from(vec![0u8; chunk]))
        });
        let mut stream = std::pin::pin!(paced(body, PACE));
        let mut got = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => got += bytes.len(),
                Err(PacedError::TooSlow { .. }) => return (got, true),
                Err(PacedError::Body(never)) => match never {},
            }
        }
        (got, false)
    }

    #[tokio::test]
    async fn a_body_well_above_the_minimum_rate_arrives_whole_however_long_it_takes() {
        // 100 bytes every 20 ms (ten times the minimum) for 1.2 s: six windows.
        assert_eq!(run(100, Duration::from_millis(20), 60).await, (6000, false));
    }

    #[tokio::test]
    async fn a_trickle_below_the_rate_is_cut_at_the_end_of_its_window() {
        // A byte every 10 ms: 100 a second, a fifth of the minimum.
        let started = Instant::now();
        let (got, too_slow) = run(1, Duration::from_millis(10), 1000).await;
        assert!(too_slow, "a trickle got through whole");
        assert!(got < 100, "{got} bytes got through");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn silence_after_a_good_start_is_cut_within_two_windows() {
        let body = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from(vec![0; 500])) })
            .chain(futures::stream::pending());
        let started = Instant::now();
        let mut stream = std::pin::pin!(paced(body, PACE));
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 500);
        assert!(matches!(
            stream.next().await,
            Some(Err(PacedError::TooSlow { received: 0, .. }))
        ));
        let waited = started.elapsed();
        assert!(
            waited >= 2 * PACE.window && waited < Duration::from_secs(2),
            "cut after {waited:?}"
        );
        assert!(
            stream.next().await.is_none(),
            "the stream goes on after its error"
        );
    }

    #[test]
    fn a_window_needs_at_least_one_byte_even_with_no_minimum_rate() {
        let idle_only = Pace {
            window: Duration::from_secs(30),
            min_bytes_per_second: 0,
        };
        assert_eq!(idle_only.needed(), 1);
        assert_eq!(PACE.needed(), 100);
    }
}
