//! `plugins.toml`: which plugins run in which slot, in what order, with what configuration,
//! limits and failure mode.
//!
//! ```toml
//! # Optional; these are the defaults.
//! [engine]
//! epoch_tick_ms = 5        # how often deadlines are checked
//! max_instances = 256      # live plugin instances, all plugins together
//! max_memory_mib = 64      # no plugin's memory limit may exceed this
//! pool_size = 8            # idle instances kept per plugin
//! breaker_failures = 5     # consecutive failures that open a plugin's circuit (0: never)
//! breaker_backoff_ms = 1000       # first wait before a probe call; doubles per failed probe
//! breaker_max_backoff_ms = 30000  # ceiling of that wait
//! shadow_queue = 1024      # shadow calls waiting to run; beyond it they are dropped, counted
//! call_mode = "adaptive"   # or "pool": where calls made from async code run (see EngineConfig)
//! inline_budget_us = 1000  # adaptive: a call slower than this sends its plugin to the pool
//! max_wasm_stack_kib = 512 # WebAssembly stack per call (64 to 1024); deeper recursion traps
//!
//! # Defaults for every plugin; each plugin may override any of them.
//! [limits]
//! deadline_ms = 50         # wall-clock time per call
//! memory_mib = 16          # linear memory per instance
//! # fuel = 50000000        # instructions per call (off by default)
//!
//! [chat]
//! failure = "fail-closed"  # or "fail-open": what a failing plugin means for the slot
//!
//! [[chat.plugins]]
//! source = "builtin:chat-moderation"
//! [chat.plugins.config]
//! rate_limit = { messages = 10, window_seconds = 10 }
//!
//! [[chat.plugins]]
//! source = "plugins/my-filter.wasm"     # a component file, relative to this file
//! name = "my-filter"
//! failure = "fail-open"                 # overrides the slot's mode for this plugin
//! limits = { deadline_ms = 50 }
//! config = { blocked = ["buy followers"] }
//! sha256 = "3f1c…"                      # optional: refuse the file if its bytes differ
//! ```
//!
//! Where precompiled code is cached is the server's setting (`plugin_cache_dir`), not this
//! file's.
//!
//! A slot whose section, or whose `plugins` key, is missing runs its builtin plugin with
//! its default configuration; `plugins = []` runs none (everything is allowed). With no
//! file at all, every slot runs its builtin.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::error::LoadError;
use crate::types::Slot;

/// The whole of `plugins.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Default limits for every plugin.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The chat moderation slot.
    #[serde(default)]
    pub chat: SlotConfig,
    /// The file validation slot.
    #[serde(default)]
    pub files: SlotConfig,
    /// The signaling policy slot.
    #[serde(default)]
    pub signaling: SlotConfig,
    /// Where relative paths in the file are resolved from: the file's folder.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl PluginsConfig {
    /// Reads `path`; a missing file gives the defaults (every slot runs its builtin).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let base_dir = path.parent().map(Path::to_path_buf);
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&text, base_dir).map_err(|e| match e {
                LoadError::Config(message) => {
                    LoadError::Config(format!("{}: {message}", path.display()))
                }
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                base_dir,
                ..Self::default()
            }),
            Err(source) => Err(LoadError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a `plugins.toml`; relative paths resolve from `base_dir`.
    pub fn from_toml(text: &str, base_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let mut config: Self =
            toml::from_str(text).map_err(|e| LoadError::Config(e.to_string()))?;
        config.base_dir = base_dir;
        config.validate()?;
        Ok(config)
    }

    /// The slot's settings.
    pub fn slot(&self, slot: Slot) -> &SlotConfig {
        match slot {
            Slot::Chat => &self.chat,
            Slot::Files => &self.files,
            Slot::Signaling => &self.signaling,
        }
    }

    /// The slot's settings, to change them in code.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotConfig {
        match slot {
            Slot::Chat => &mut self.chat,
            Slot::Files => &mut self.files,
            Slot::Signaling => &mut self.signaling,
        }
    }

    /// The slot's chain as configured, or its builtin plugin when none is configured.
    pub fn chain(&self, slot: Slot) -> Vec<PluginSpec> {
        match &self.slot(slot).plugins {
            Some(plugins) => plugins.clone(),
            None => vec![PluginSpec::new(PluginSource::Builtin(Builtin::for_slot(
                slot,
            )))],
        }
    }

    /// Resolves a path from the file against its folder.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// Checks what the types cannot: unique names, builtins in their own slots, limits
    /// within the engine's bounds.
    pub fn validate(&self) -> Result<(), LoadError> {
        let engine = &self.engine;
        if engine.epoch_tick_ms == 0 {
            return Err(LoadError::Config(
                "engine.epoch_tick_ms must be at least 1".into(),
            ));
        }
        if engine.max_instances == 0 {
            return Err(LoadError::Config(
                "engine.max_instances must be at least 1".into(),
            ));
        }
        let stack = EngineConfig::MAX_WASM_STACK_KIB_RANGE;
        if !stack.contains(&engine.max_wasm_stack_kib) {
            return Err(LoadError::Config(format!(
                "engine.max_wasm_stack_kib must be between {} and {}",
                stack.start(),
                stack.end()
            )));
        }
        let mut names = HashSet::new();
        for slot in Slot::ALL {
            let spec = self.chain_spec(slot);
            spec.validate(slot, engine)?;
            for plugin in &spec.plugins {
                let name = plugin.name();
                if !names.insert(name.clone()) {
                    return Err(LoadError::Config(format!(
                        "two plugins are named `{name}`; give one a distinct `name`"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The slot's chain, ready to prepare: file paths resolved, the file's default limits
    /// and the slot's failure mode attached.
    pub fn chain_spec(&self, slot: Slot) -> ChainSpec {
        let plugins = self
            .chain(slot)
            .into_iter()
            .map(|mut spec| {
                if let PluginSource::File(path) = &spec.source {
                    // Keep the name the relative path gives, then make the path absolute.
                    spec.name = Some(spec.name());
                    spec.source = PluginSource::File(self.resolve_path(path));
                }
                spec
            })
            .collect();
        ChainSpec {
            failure: self.slot(slot).failure,
            limits: self.limits,
            plugins,
        }
    }

    pub(crate) fn fuel_wanted(&self) -> bool {
        Slot::ALL
            .iter()
            .any(|&slot| self.chain_spec(slot).fuel_wanted())
    }
}

/// One slot's chain as asked for, by a file or through the admin API.
#[derive(Clone, Debug, Default)]
pub struct ChainSpec {
    /// The slot's failure mode, for plugins that do not set their own.
    pub failure: FailureMode,
    /// Limits for plugins that do not set their own (the file's `[limits]`).
    pub limits: LimitsConfig,
    /// The plugins, asked in order.
    pub plugins: Vec<PluginSpec>,
}

impl ChainSpec {
    /// Checks the chain on its own: builtins in their own slot, distinct names, limits
    /// within the engine's bounds.
    pub fn validate(&self, slot: Slot, engine: &EngineConfig) -> Result<(), LoadError> {
        let mut names = HashSet::new();
        for spec in &self.plugins {
            if let PluginSource::Builtin(builtin) = &spec.source
                && builtin.slot() != slot
            {
                return Err(LoadError::Config(format!(
                    "`builtin:{}` is a {} plugin and cannot run in the {slot} slot",
                    builtin.as_str(),
                    builtin.slot()
                )));
            }
            let name = spec.name();
            if name.trim().is_empty() || name.len() > 64 {
                return Err(LoadError::Config(format!(
                    "plugin name `{name}` must have 1 to 64 characters"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(LoadError::Config(format!(
                    "two plugins are named `{name}`; give one a distinct `name`"
                )));
            }
            let limits = self.limits.merged(&spec.limits).resolve();
            if limits.deadline.is_zero() {
                return Err(LoadError::Config(format!(
                    "plugin `{name}`: deadline_ms must be at least 1"
                )));
            }
            if limits.memory_bytes > engine.max_memory_bytes() {
                return Err(LoadError::Config(format!(
                    "plugin `{name}`: memory_mib exceeds engine.max_memory_mib ({})",
                    engine.max_memory_mib
                )));
            }
            if let Some(sha256) = &spec.sha256
                && (sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(LoadError::Config(format!(
                    "plugin `{name}`: sha256 must be 64 hexadecimal digits"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn fuel_wanted(&self) -> bool {
        self.plugins
            .iter()
            .any(|s| self.limits.merged(&s.limits).fuel.is_some())
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Interval of the clock that enforces deadlines, in milliseconds. A call may overrun
    /// its deadline by up to one tick.
    pub epoch_tick_ms: u64,
    /// Most plugin instances alive at once, all plugins together (the pooling allocator
    /// reserves address space for this many). A call that finds all of them taken waits for
    /// one, up to its deadline, then fails as `busy`.
    pub max_instances: u32,
    /// Ceiling for any plugin's `memory_mib`.
    pub max_memory_mib: u64,
    /// Idle instances kept per plugin for reuse; concurrent calls beyond this instantiate
    /// extra instances, dropped after use. A chain being activated fills its pools first.
    pub pool_size: u32,
    /// Consecutive failed calls that open a plugin's circuit: while open, its failure mode
    /// applies without calling it. 0 disables the breaker.
    pub breaker_failures: u32,
    /// How long an open circuit waits before one probe call, in milliseconds; doubled
    /// after each failed probe.
    pub breaker_backoff_ms: u64,
    /// The longest such wait, in milliseconds.
    pub breaker_max_backoff_ms: u64,
    /// Shadow calls waiting to run; a call finding the queue full is not run in shadow
    /// (counted as dropped).
    pub shadow_queue: usize,
    /// Where calls made from async code (`moderate().await`, …) run. `pool`: always on the
    /// blocking thread pool, so no plugin ever holds an async worker, at the cost of a thread
    /// hop per call (tens of microseconds). `adaptive`: on the caller's thread while the
    /// chain's plugins answer within `inline_budget_us`; a plugin that takes longer three
    /// calls in a row, times out or trips its circuit sends its chain's calls to the pool for
    /// a minute. A plugin
    /// turning slow can then hold each async worker once, for at most its deadline.
    pub call_mode: CallMode,
    /// The adaptive mode's budget of one call, in microseconds.
    pub inline_budget_us: u64,
    /// Stack a plugin's WebAssembly code may use in one call, in KiB: recursion deeper than
    /// this traps (outcome `trap`) instead of touching the host's stack. Calls run on the
    /// caller's thread (tokio workers and blocking threads have 2 MiB stacks), which must
    /// hold this plus the host's own frames, hence the ceiling of 1024.
    pub max_wasm_stack_kib: u32,
}

/// See [`EngineConfig::call_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallMode {
    /// On the caller's thread while plugins stay fast; on the blocking pool otherwise.
    #[default]
    Adaptive,
    /// Always on the blocking pool.
    Pool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick_ms: 5,
            max_instances: 256,
            max_memory_mib: 64,
            pool_size: 8,
            breaker_failures: 5,
            breaker_backoff_ms: 1000,
            breaker_max_backoff_ms: 30_000,
            shadow_queue: 1024,
            call_mode: CallMode::Adaptive,
            inline_budget_us: 1000,
            max_wasm_stack_kib: EngineConfig::DEFAULT_MAX_WASM_STACK_KIB,
        }
    }
}

impl EngineConfig {
    /// wasmtime's own default, made explicit: ample for the default plugins.
    pub const DEFAULT_MAX_WASM_STACK_KIB: u32 = 512;
    /// The bounds of `max_wasm_stack_kib`.
    pub const MAX_WASM_STACK_KIB_RANGE: std::ops::RangeInclusive<u32> = 64..=1024;

    pub(crate) fn max_wasm_stack_bytes(&self) -> usize {
        usize::try_from(self.max_wasm_stack_kib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024)
    }

    pub(crate) fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failures: self.breaker_failures,
            backoff: Duration::from_millis(self.breaker_backoff_ms.max(1)),
            max_backoff: Duration::from_millis(
                self.breaker_max_backoff_ms
                    .max(self.breaker_backoff_ms)
                    .max(1),
            ),
        }
    }

    pub(crate) fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// When a plugin's circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it; 0 never does.
    pub failures: u32,
    /// First wait before a probe.
    pub backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

/// What a failing plugin (trap, timeout, memory or fuel exhausted) means for its slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// The request is refused with a [`PolicyFailure`](crate::PolicyFailure); nothing
    /// slips through unchecked.
    #[default]
    FailClosed,
    /// The failing plugin is skipped as if it had allowed; the failure is logged and
    /// counted.
    FailOpen,
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureMode::FailClosed => "fail-closed",
            FailureMode::FailOpen => "fail-open",
        })
    }
}

/// One slot's chain.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// The slot's failure mode, for plugins that do not set their own.
    #[serde(default)]
    pub failure: FailureMode,
    /// The chain, asked in order. `None`: the slot's builtin plugin alone.
    #[serde(default)]
    pub plugins: Option<Vec<PluginSpec>>,
}

/// One plugin of a chain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Where the component comes from.
    pub source: PluginSource,
    /// The name in logs, metrics and the key-value namespace; defaults to the builtin's
    /// name or the file's stem. Unique across all slots.
    #[serde(default)]
    pub name: Option<String>,
    /// Overrides the slot's failure mode.
    #[serde(default)]
    pub failure: Option<FailureMode>,
    /// Overrides the default limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The plugin's own configuration, handed to it as a JSON object.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The SHA-256 the module's bytes must have (lowercase hex); a file whose bytes differ
    /// is refused.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl PluginSpec {
    /// A plugin with default name, failure mode, limits and configuration.
    pub fn new(source: PluginSource) -> Self {
        Self {
            source,
            name: None,
            failure: None,
            limits: LimitsConfig::default(),
            config: serde_json::Map::new(),
            sha256: None,
        }
    }

    /// Pins the module's SHA-256.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.sha256 = Some(sha256.into());
        self
    }

    /// Sets the plugin's configuration; `config` must be a JSON object.
    pub fn with_config(mut self, config: serde_json::Value) -> Self {
        self.config = match config {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self
    }

    /// Sets the plugin's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the plugin's failure mode.
    pub fn with_failure(mut self, failure: FailureMode) -> Self {
        self.failure = Some(failure);
        self
    }

    /// Sets the plugin's limits.
    pub fn with_limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// The name the plugin goes by.
    pub fn name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match &self.source {
            PluginSource::Builtin(b) => b.as_str().to_owned(),
            PluginSource::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            PluginSource::Bytes { name, .. } => name.clone(),
        }
    }
}

/// Where a plugin's component comes from. In `plugins.toml`: `"builtin:<name>"` or a path.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum PluginSource {
    /// One of the default plugins embedded in the server.
    Builtin(Builtin),
    /// A `.wasm` component file.
    File(PathBuf),
    /// A component held in memory (an upload through an admin API, a test).
    Bytes {
        /// The default plugin name.
        name: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Builtin(b) => write!(f, "builtin:{}", b.as_str()),
            PluginSource::File(p) => write!(f, "{}", p.display()),
            PluginSource::Bytes { name, bytes } => write!(f, "<{} bytes: {name}>", bytes.len()),
        }
    }
}

impl TryFrom<String> for PluginSource {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.strip_prefix("builtin:") {
            Some(name) => Builtin::from_name(name).map(PluginSource::Builtin).ok_or_else(|| {
                format!("unknown builtin plugin `{name}` (known: chat-moderation, file-validation, signaling-policy)")
            }),
            None if value.trim().is_empty() => Err("a plugin source must not be empty".into()),
            None => Ok(PluginSource::File(PathBuf::from(value))),
        }
    }
}

/// The default plugins shipped inside the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `builtin:chat-moderation`.
    ChatModeration,
    /// `builtin:file-validation`.
    FileValidation,
    /// `builtin:signaling-policy`.
    SignalingPolicy,
}

impl Builtin {
    /// The builtin for a slot.
    pub fn for_slot(slot: Slot) -> Self {
        match slot {
            Slot::Chat => Builtin::ChatModeration,
            Slot::Files => Builtin::FileValidation,
            Slot::Signaling => Builtin::SignalingPolicy,
        }
    }

    /// The slot the builtin serves.
    pub fn slot(self) -> Slot {
        match self {
            Builtin::ChatModeration => Slot::Chat,
            Builtin::FileValidation => Slot::Files,
            Builtin::SignalingPolicy => Slot::Signaling,
        }
    }

    /// The name after `builtin:`.
    pub fn as_str(self) -> &'static str {
        self.slot().world()
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Builtin::ChatModeration,
            Builtin::FileValidation,
            Builtin::SignalingPolicy,
        ]
        .into_iter()
        .find(|b| b.as_str() == name)
    }

    /// The embedded component.
    pub fn component(self) -> &'static [u8] {
        match self {
            Builtin::ChatModeration => crate::builtin::CHAT_MODERATION,
            Builtin::FileValidation => crate::builtin::FILE_VALIDATION,
            Builtin::SignalingPolicy => crate::builtin::SIGNALING_POLICY,
        }
    }
}

/// Limits as written: any key left out falls back to the level above (plugin → `[limits]`
/// → built-in defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock time per call, in milliseconds (default 50).
    pub deadline_ms: Option<u64>,
    /// Linear memory per instance, in MiB (default 16).
    pub memory_mib: Option<u64>,
    /// WebAssembly fuel per call, roughly instructions (default: unlimited). Enabling fuel
    /// for any plugin makes every plugin's code a little slower.
    pub fuel: Option<u64>,
}

impl LimitsConfig {
    /// `self` with the keys `over` sets replaced.
    pub fn merged(&self, over: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            deadline_ms: over.deadline_ms.or(self.deadline_ms),
            memory_mib: over.memory_mib.or(self.memory_mib),
            fuel: over.fuel.or(self.fuel),
        }
    }

    /// The effective limits, defaults filled in.
    pub fn resolve(&self) -> Limits {
        Limits {
            deadline: Duration::from_millis(
                self.deadline_ms.unwrap_or(Limits::DEFAULT_DEADLINE_MS),
            ),
            memory_bytes: usize::try_from(
                self.memory_mib
                    .unwrap_or(Limits::DEFAULT_MEMORY_MIB)
                    .saturating_mul(1 << 20),
            )
            .unwrap_or(usize::MAX),
            fuel: self.fuel,
        }
    }
}

/// The limits one plugin runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time per call.
    pub deadline: Duration,
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
}

impl Limits {
    /// Default deadline: thousands of times what a default plugin needs, short enough that
    /// a runaway plugin is not felt, and long enough that a call preempted on a busy machine
    /// (the deadline is wall-clock time) is not mistaken for a runaway one.
    pub const DEFAULT_DEADLINE_MS: u64 = 50;
    /// Default memory: ample for the default plugins (about 2 MiB used).
    pub const DEFAULT_MEMORY_MIB: u64 = 16;
}
