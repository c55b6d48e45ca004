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

type Namespace = DashMap<String, Entry>;

/// An in-process [`KvStore`]: one node's state, lost on restart.
///
/// Keys live in one map per namespace, so reading or incrementing an existing key
/// allocates nothing.
pub struct MemoryKv {
    namespaces: DashMap<String, Namespace>,
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
            namespaces: DashMap::new(),
            max_keys_per_namespace,
            writes: AtomicU64::new(0),
        }
    }

    /// Removes expired keys everywhere.
    pub fn sweep(&self) {
        let now = Instant::now();
        for namespace in self.namespaces.iter() {
            namespace.retain(|_, entry| entry.live(now));
        }
    }

    fn after_write(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % Self::SWEEP_EVERY == Self::SWEEP_EVERY - 1
        {
            self.sweep();
        }
    }

    /// Runs `f` on the namespace, creating it if needed.
    fn with_namespace<R>(&self, namespace: &str, f: impl FnOnce(&Namespace) -> R) -> R {
        if let Some(found) = self.namespaces.get(namespace) {
            return f(&found);
        }
        let created = self
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .downgrade();
        f(&created)
    }

    /// Whether `namespace` may take one more key, sweeping it once if it is full.
    fn has_room(&self, namespace: &Namespace) -> bool {
        if namespace.len() < self.max_keys_per_namespace {
            return true;
        }
        let now = Instant::now();
        namespace.retain(|_, entry| entry.live(now));
        namespace.len() < self.max_keys_per_namespace
    }
}

impl KvStore for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError> {
        let now = Instant::now();
        let found = self.namespaces.get(namespace).and_then(|namespace| {
            namespace
                .get(key)
                .filter(|e| e.live(now))
                .map(|e| e.value.render())
        });
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
        let entry = Entry {
            value: Value::Text(value.to_owned()),
            expires: ttl.map(|t| now + t),
        };
        self.with_namespace(namespace, |keys| {
            if let Some(mut existing) = keys.get_mut(key) {
                *existing = entry;
                return Ok(());
            }
            if !self.has_room(keys) {
                return Err(KvError::Full);
            }
            keys.insert(key.to_owned(), entry);
            Ok(())
        })?;
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
        let fresh = |delta| Entry {
            value: Value::Int(delta),
            expires: ttl.map(|t| now + t),
        };
        // The entry guard holds its shard's lock, which is what makes the increment atomic.
        let result = self.with_namespace(namespace, |keys| {
            if let Some(mut entry) = keys.get_mut(key) {
                if entry.live(now) {
                    return entry.value.add(delta, key);
                }
                *entry = fresh(delta);
                return Ok(delta);
            }
            if !self.has_room(keys) {
                return Err(KvError::Full);
            }
            // Another caller may have created the key since the lookup above.
            match keys.entry(key.to_owned()) {
                dashmap::Entry::Occupied(mut occupied) => occupied.get_mut().value.add(delta, key),
                dashmap::Entry::Vacant(vacant) => {
                    vacant.insert(fresh(delta));
                    Ok(delta)
                }
            }
        })?;
        self.after_write();
        Ok(result)
    }
}
