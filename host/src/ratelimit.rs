//! Fixed-window counters for throttling (failed logins now; message rates later).
//!
//! The trait is the seam for scale-out: the in-memory counter serves one node, and a Redis
//! implementation (INCR + EXPIRE on the same keys) lets several nodes share the limits.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use dashmap::DashMap;

/// A counter that is over its limit, and for how long it stays so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Fails when `key` has already been hit `limit` times in its current window.
    async fn check(&self, key: &str, limit: u32) -> Result<(), Limited>;
    /// Counts one hit of `key`; the window starts at the first hit.
    async fn hit(&self, key: &str, window: Duration) -> u32;
    /// Forgets `key` (a successful login clears its failures).
    async fn reset(&self, key: &str);
}

#[derive(Default)]
pub struct MemoryRateLimiter {
    windows: DashMap<String, Window>,
    hits: AtomicU64,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    length: Duration,
    count: u32,
}

impl Window {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.length
    }
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops expired windows now and then so the map cannot grow without bound under a
    /// spray of distinct keys.
    fn sweep(&self) {
        if self.hits.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            let now = Instant::now();
            self.windows.retain(|_, w| !w.expired(now));
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, limit: u32) -> Result<(), Limited> {
        let now = Instant::now();
        let Some(entry) = self.windows.get(key) else {
            return Ok(());
        };
        let w = *entry;
        drop(entry);
        if w.expired(now) || w.count < limit {
            return Ok(());
        }
        let elapsed = now.duration_since(w.started);
        Err(Limited {
            retry_after: w.length.saturating_sub(elapsed).max(Duration::from_secs(1)),
        })
    }

    async fn hit(&self, key: &str, window: Duration) -> u32 {
        self.sweep();
        let now = Instant::now();
        let mut entry = self.windows.entry(key.to_owned()).or_insert(Window {
            started: now,
            length: window,
            count: 0,
        });
        if entry.expired(now) {
            *entry = Window {
                started: now,
                length: window,
                count: 0,
            };
        }
        entry.count += 1;
        entry.count
    }

    async fn reset(&self, key: &str) {
        self.windows.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_within_a_window_and_forgets_after_it() {
        let limiter = MemoryRateLimiter::new();
        let window = Duration::from_millis(200);
        for _ in 0..3 {
            assert!(limiter.check("k", 3).await.is_ok());
            limiter.hit("k", window).await;
        }
        let limited = limiter.check("k", 3).await.unwrap_err();
        assert!(limited.retry_after >= Duration::from_secs(1));
        assert!(limiter.check("other", 3).await.is_ok());
        tokio::time::sleep(window).await;
        assert!(limiter.check("k", 3).await.is_ok());
        limiter.hit("k", window).await;
        limiter.reset("k").await;
        assert!(limiter.check("k", 1).await.is_ok());
    }
}
