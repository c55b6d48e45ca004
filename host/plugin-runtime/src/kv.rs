//! The key-value store behind the plugins' `kv` import.
//!
//! Plugins keep cross-call state here (rate-limit counters, notes between the two steps of
//! an upload) because their own memory may be thrown away at any time. Each plugin sees its
//! own namespace. [`MemoryKv`] serves a single node; a shared store (Redis) implements the
//! same trait so counters hold across nodes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Why a store operation failed; plugins see the same three cases.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached now.
    #[error("the key-value store is unavailable")]
    Unavailable,
    /// The key or value is unacceptable.
    #[error("{0}")]
    Invalid(String),
    /// The namespace holds too many keys.
    #[error("the plugin's key-value namespace is full")]
    Full,
}

/// A key-value store with expiry and atomic increments, partitioned by namespace.
///
/// Calls are synchronous because they are made from inside a running plugin, which holds
/// a worker thread meanwhile: implementations must answer quickly and bound their own
/// waiting (a networked store should time out well within a plugin's deadline, which does
/// not interrupt host code, and answer [`KvError::Unavailable`]).
pub trait KvStore: Send + Sync + 'static {
    /// The value at `key`, `None` when absent or expired.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError>;

    /// Stores `value` at `key`, expiring after `ttl` when given.
    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), KvError>;

    /// Adds `delta` to the integer at `key` (0 when absent or expired) and returns the sum.
    /// A key created by this call expires after `ttl`; an existing key keeps its expiry.
    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError>;
}

/// Counters stay integers, so `incr` is an addition rather than a parse and a format.
enum Value {
    Text(String),
    Int(i64),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Int(n) => n.to_string(),
        }
    }

    fn add(&mut self, delta: i64, key: &str) -> Result<i64, KvError> {
        let current = match self {
            Value::Int(n) => *n,
            Value::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| KvError::Invalid(format!("the value at `{key}` is not an integer")))?,
        };
        let next = current.saturating_add(delta);
        *self = Value::Int(next);
        Ok(next)
    }
}

struct Entry {
    value: Value,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// An in-process [`KvStore`]: one node's state, lost on restart.
pub struct MemoryKv {
    entries: DashMap<(String, String), Entry>,
    counts: DashMap<String, usize>,
    max_keys_per_namespace: usize,
    writes: AtomicU64,
}

impl Default for MemoryKv {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryKv {
    /// Keys one namespace may hold, expired keys not counted once swept.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    /// Sweeps expired keys every this many writes, so that keys nobody reads again do
    /// not pile up.
    const SWEEP_EVERY: u64 = 4096;

    /// An empty store with the default namespace capacity.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_MAX_KEYS)
    }

    /// An empty store holding at most `max_keys_per_namespace` keys per namespace.
    pub fn with_capacity(max_keys_per_namespace: usize) -> Self {
        Self {
            entries: DashMap::new(),
            counts: DashMap::new(),
            max_keys_per_namespace,
            writes: AtomicU64::new(0),
        }
    }

    /// Removes expired keys everywhere.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut removed: Vec<String> = Vec::new();
        self.entries.retain(|(namespace, _), entry| {
            let keep = entry.live(now);
            if !keep {
                removed.push(namespace.clone());
            }
            keep
        });
        for namespace in removed {
            if let Some(mut count) = self.counts.get_mut(&namespace) {
                *count = count.saturating_sub(1);
            }
        }
    }

    fn after_write(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % Self::SWEEP_EVERY == Self::SWEEP_EVERY - 1
        {
            self.sweep();
        }
    }

    /// Makes room for one more key in `namespace`, sweeping once if it is full.
    fn reserve(&self, namespace: &str) -> Result<(), KvError> {
        let full = |this: &Self| {
            this.counts
                .get(namespace)
                .is_some_and(|c| *c >= this.max_keys_per_namespace)
        };
        if full(self) {
            self.sweep();
            if full(self) {
                return Err(KvError::Full);
            }
        }
        *self.counts.entry(namespace.to_owned()).or_insert(0) += 1;
        Ok(())
    }
}

impl KvStore for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError> {
        let now = Instant::now();
        let found = self
            .entries
            .get(&(namespace.to_owned(), key.to_owned()))
            .filter(|e| e.live(now))
            .map(|e| e.value.render());
        Ok(found)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let now = Instant::now();
        let id = (namespace.to_owned(), key.to_owned());
        let expires = ttl.map(|t| now + t);
        match self.entries.get_mut(&id) {
            Some(mut entry) => {
                entry.value = Value::Text(value.to_owned());
                entry.expires = expires;
            }
            None => {
                self.reserve(namespace)?;
                self.entries.insert(
                    id,
                    Entry {
                        value: Value::Text(value.to_owned()),
                        expires,
                    },
                );
            }
        }
        self.after_write();
        Ok(())
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        let now = Instant::now();
        let id = (namespace.to_owned(), key.to_owned());
        // The entry guard holds the shard lock, which is what makes the increment atomic.
        let result = match self.entries.get_mut(&id) {
            Some(mut entry) => {
                if entry.live(now) {
                    entry.value.add(delta, key)?
                } else {
                    entry.value = Value::Int(delta);
                    entry.expires = ttl.map(|t| now + t);
                    delta
                }
            }
            None => {
                self.reserve(namespace)?;
                match self.entries.entry(id) {
                    // Another caller created it between our lookup and now.
                    dashmap::Entry::Occupied(mut occupied) => {
                        if let Some(mut count) = self.counts.get_mut(namespace) {
                            *count = count.saturating_sub(1);
                        }
                        occupied.get_mut().value.add(delta, key)?
                    }
                    dashmap::Entry::Vacant(vacant) => {
                        vacant.insert(Entry {
                            value: Value::Int(delta),
                            expires: ttl.map(|t| now + t),
                        });
                        delta
                    }
                }
            }
        };
        self.after_write();
        Ok(result)
    }
}
