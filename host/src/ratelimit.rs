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

/// Per-key token buckets: `rate` tokens a second up to `burst`. A take that finds no token
/// says how long until one is there.
pub struct TokenBuckets {
    rate: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
    takes: AtomicU64,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBuckets {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        TokenBuckets {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
            takes: AtomicU64::new(0),
        }
    }

    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        if self.takes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            // A bucket refilled to the brim carries no information: forget it.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let mut bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refilled = (bucket.tokens
            + now.duration_since(bucket.updated).as_secs_f64() * self.rate)
            .min(self.burst);
        bucket.updated = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let buckets = TokenBuckets::new(10.0, 3);
        for _ in 0..3 {
            assert!(buckets.take("u").is_ok());
        }
        let wait = buckets.take("u").unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(buckets.take("v").is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(110));
        assert!(buckets.take("u").is_ok());
    }
}
