//! The host side of the plugins' imports (`log`, `config`, `kv`) and the per-store state
//! that enforces the memory and table limits. The rules of `log` and `kv` (budgets, sizes, the plugin's
//! own key space) are plain functions here, shared by components and Extism modules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

use super::caps;
use super::deadline::Overtime;
use super::since_v0_1_0::{config, kv, log, types};
use crate::kv::{KvError, KvStore};

/// What every instance of one plugin shares.
pub(crate) struct PluginData {
    pub(crate) name: Arc<str>,
    pub(crate) config_json: String,
    pub(crate) config_values: HashMap<String, String>,
}

/// Log lines a plugin may write per call: enough to report a problem, too few to flood
/// the server's log from a hot path.
pub(crate) const LOG_LINES_PER_CALL: u32 = 8;
const LOG_LINE_MAX_BYTES: usize = 2048;
const KEY_MAX_BYTES: usize = 256;
const VALUE_MAX_BYTES: usize = 64 * 1024;

/// The data of one plugin instance's store.
pub(crate) struct HostState {
    data: Arc<PluginData>,
    kv: Arc<dyn KvStore>,
    limits: StoreLimits,
    /// A memory or a table was refused growth: the call's failure is `memory`.
    grow_refused: bool,
    logs_left: u32,
    pub(crate) overtime: Overtime,
}

impl HostState {
    pub(crate) fn new(
        data: Arc<PluginData>,
        kv: Arc<dyn KvStore>,
        memory_bytes: usize,
        overtime: Overtime,
    ) -> Self {
        Self {
            data,
            kv,
            limits: caps::store_limits(memory_bytes),
            grow_refused: false,
            logs_left: LOG_LINES_PER_CALL,
            overtime,
        }
    }

    pub(crate) fn begin_call(&mut self) {
        self.logs_left = LOG_LINES_PER_CALL;
        self.overtime.reset();
    }

    pub(crate) fn grow_refused(&self) -> bool {
        self.grow_refused
    }
}

/// Severity of a plugin's log line.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes a plugin's log line under the `lyceum::plugin` target, truncated, if the call's
/// budget (`logs_left`) allows.
pub(crate) fn write_log(plugin: &str, logs_left: &mut u32, level: Level, mut message: String) {
    if *logs_left == 0 {
        return;
    }
    *logs_left -= 1;
    if message.len() > LOG_LINE_MAX_BYTES {
        let mut end = LOG_LINE_MAX_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    match level {
        Level::Trace => tracing::trace!(target: "lyceum::plugin", plugin, "{message}"),
        Level::Debug => tracing::debug!(target: "lyceum::plugin", plugin, "{message}"),
        Level::Info => tracing::info!(target: "lyceum::plugin", plugin, "{message}"),
        Level::Warn => tracing::warn!(target: "lyceum::plugin", plugin, "{message}"),
        Level::Error => tracing::error!(target: "lyceum::plugin", plugin, "{message}"),
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > KEY_MAX_BYTES {
        return Err(KvError::Invalid(format!(
            "keys must be 1 to {KEY_MAX_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// `kv.get` in `plugin`'s key space.
pub(crate) fn kv_get(kv: &dyn KvStore, plugin: &str, key: &str) -> Result<Option<String>, KvError> {
    check_key(key)?;
    kv.get(plugin, key)
}

/// `kv.set` in `plugin`'s key space.
pub(crate) fn kv_set(
    kv: &dyn KvStore,
    plugin: &str,
    key: &str,
    value: &str,
    ttl_ms: Option<u64>,
) -> Result<(), KvError> {
    check_key(key)?;
    if value.len() > VALUE_MAX_BYTES {
        return Err(KvError::Invalid(format!(
            "values must be at most {VALUE_MAX_BYTES} bytes long"
        )));
    }
    kv.set(plugin, key, value, ttl_ms.map(Duration::from_millis))
}

/// `kv.incr` in `plugin`'s key space.
pub(crate) fn kv_incr(
    kv: &dyn KvStore,
    plugin: &str,
    key: &str,
    delta: i64,
    ttl_ms: Option<u64>,
) -> Result<i64, KvError> {
    check_key(key)?;
    kv.incr(plugin, key, delta, ttl_ms.map(Duration::from_millis))
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.grow_refused = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.limits.table_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.grow_refused = true;
        }
        verdict
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_refused = true;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        write_log(&self.data.name, &mut self.logs_left, level, message);
    }
}

impl config::Host for HostState {
    fn get_json(&mut self) -> String {
        self.data.config_json.clone()
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.data.config_values.get(&key).cloned()
    }
}

fn kv_error(error: KvError) -> kv::KvError {
    match error {
        KvError::Unavailable => kv::KvError::Unavailable,
        KvError::Invalid(why) => kv::KvError::Invalid(why),
        KvError::Full => kv::KvError::Full,
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>, kv::KvError> {
        kv_get(&*self.kv, &self.data.name, &key).map_err(kv_error)
    }

    fn set(&mut self, key: String, value: String, ttl_ms: Option<u64>) -> Result<(), kv::KvError> {
        kv_set(&*self.kv, &self.data.name, &key, &value, ttl_ms).map_err(kv_error)
    }

    fn incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, kv::KvError> {
        kv_incr(&*self.kv, &self.data.name, &key, delta, ttl_ms).map_err(kv_error)
    }
}
