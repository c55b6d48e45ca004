//! The policy engine: per slot a chain of loaded plugins, asked in order, with failure
//! modes, metrics and tracing.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram};
use tracing::Span;
use tracing::field::Empty;

use crate::config::{FailureMode, Limits, PluginSource, PluginsConfig};
use crate::error::{FailureKind, LoadError, PolicyFailure};
use crate::kv::{KvStore, MemoryKv};
use crate::types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, ModerationDecision,
    ModerationInput, ModerationVerdict, PolicyContext, Refusal, SignalCheck, SignalVerdict, Slot,
};
use crate::wasm::{Loaded, Runtime};

/// Counter of plugin calls, labelled `slot`, `plugin` and `outcome` (`allow`, `reject`,
/// `rewrite`, `flag`, `accept`, `deny`, `relay`, `drop`, `trap`, `timeout`, `memory`,
/// `fuel`, `unavailable`).
pub const CALLS_TOTAL: &str = "lyceum_plugin_calls_total";
/// Histogram of plugin call durations in seconds, labelled `slot` and `plugin`.
pub const CALL_DURATION_SECONDS: &str = "lyceum_plugin_call_duration_seconds";
/// Counter of failed calls that a fail-open slot let through unchecked, labelled `slot`
/// and `plugin`.
pub const FAILED_OPEN_TOTAL: &str = "lyceum_plugin_failed_open_total";

/// What a call ended in, for metrics and spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allow,
    Reject,
    Rewrite,
    Flag,
    Accept,
    Deny,
    Relay,
    Drop,
    Failed(FailureKind),
}

impl Outcome {
    const VERDICTS: [Outcome; 8] = [
        Outcome::Allow,
        Outcome::Reject,
        Outcome::Rewrite,
        Outcome::Flag,
        Outcome::Accept,
        Outcome::Deny,
        Outcome::Relay,
        Outcome::Drop,
    ];
    const FAILURES: [FailureKind; 5] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::Memory,
        FailureKind::Fuel,
        FailureKind::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Reject => "reject",
            Outcome::Rewrite => "rewrite",
            Outcome::Flag => "flag",
            Outcome::Accept => "accept",
            Outcome::Deny => "deny",
            Outcome::Relay => "relay",
            Outcome::Drop => "drop",
            Outcome::Failed(kind) => kind.as_str(),
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Failed(kind) => {
                Self::VERDICTS.len() + Self::FAILURES.iter().position(|k| *k == kind).unwrap_or(0)
            }
            verdict => Self::VERDICTS
                .iter()
                .position(|v| *v == verdict)
                .unwrap_or(0),
        }
    }

    /// The verdict outcomes a slot's plugins can produce.
    fn possible(self, slot: Slot) -> bool {
        match self {
            Outcome::Failed(_) => true,
            Outcome::Allow => matches!(slot, Slot::Chat | Slot::Signaling),
            Outcome::Reject => matches!(slot, Slot::Chat | Slot::Files),
            Outcome::Rewrite => matches!(slot, Slot::Chat | Slot::Signaling),
            Outcome::Flag => slot == Slot::Chat,
            Outcome::Accept => slot == Slot::Files,
            Outcome::Deny | Outcome::Relay | Outcome::Drop => slot == Slot::Signaling,
        }
    }
}

/// Metric handles resolved once per plugin: the per-call cost is then an atomic add, not
/// a registry lookup. They bind to the recorder installed when the engine is built, so
/// install the metrics exporter first.
struct PluginMetrics {
    calls: Vec<Counter>,
    duration: Histogram,
    failed_open: Counter,
}

impl PluginMetrics {
    fn new(slot: Slot, plugin: &str) -> Self {
        let labels = [
            ("slot", slot.as_str().to_owned()),
            ("plugin", plugin.to_owned()),
        ];
        let calls = Outcome::VERDICTS
            .into_iter()
            .chain(Outcome::FAILURES.into_iter().map(Outcome::Failed))
            .map(|outcome| {
                if outcome.possible(slot) {
                    let mut labels = labels.to_vec();
                    labels.push(("outcome", outcome.as_str().to_owned()));
                    metrics::counter!(CALLS_TOTAL, &labels)
                } else {
                    Counter::noop()
                }
            })
            .collect();
        Self {
            calls,
            duration: metrics::histogram!(CALL_DURATION_SECONDS, &labels),
            failed_open: metrics::counter!(FAILED_OPEN_TOTAL, &labels),
        }
    }
}

/// One plugin in a chain.
struct ChainPlugin {
    name: String,
    slot: Slot,
    source: String,
    failure: FailureMode,
    limits: Limits,
    loaded: Loaded,
    metrics: PluginMetrics,
}

/// A slot's plugins, in order. Held behind an [`ArcSwap`] so that a chain can be replaced
/// while calls run: each call works on the chain it loaded at its start.
#[derive(Default)]
struct Chain {
    plugins: Vec<ChainPlugin>,
}

/// A description of a loaded plugin, for listings and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The slot it serves.
    pub slot: Slot,
    /// Its place in the slot's chain, from 0.
    pub position: usize,
    /// Its name.
    pub name: String,
    /// Where it came from (`builtin:...`, a path, or an in-memory component).
    pub source: String,
    /// SHA-256 of the component, lowercase hex.
    pub sha256: String,
    /// Its effective failure mode.
    pub failure: FailureMode,
    /// Its effective limits.
    pub limits: Limits,
    /// Whether its native code came from the precompiled cache rather than a compilation.
    pub precompiled: bool,
}

struct Inner {
    runtime: Runtime,
    kv: Arc<dyn KvStore>,
    fuel_enabled: bool,
    chains: [ArcSwap<Chain>; 3],
}

/// Runs the policy plugins of every slot. Cheap to clone; share one per server.
///
/// Calls run on the caller's thread: a call on a warm instance of a default plugin costs a
/// few microseconds (see `plugins/README.md`), less than handing it to another thread would.
/// A misbehaving plugin holds the thread at most until its deadline (50 ms by default).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

/// Builds a [`PolicyEngine`].
pub struct PolicyEngineBuilder {
    config: PluginsConfig,
    kv: Option<Arc<dyn KvStore>>,
    cache_dir: Option<PathBuf>,
}

impl PolicyEngineBuilder {
    /// The store behind the plugins' `kv` import; an in-memory [`MemoryKv`] by default.
    pub fn kv_store(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Where to cache precompiled plugins; overrides `engine.cache_dir` of the file.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sets up the engine and loads every slot's chain. Any plugin that cannot be read,
    /// compiled, linked or started fails the whole build, naming the plugin and the cause.
    pub fn build(self) -> Result<PolicyEngine, LoadError> {
        self.config.validate()?;
        describe_metrics();
        let cache_dir = self.cache_dir.or_else(|| {
            self.config
                .engine
                .cache_dir
                .as_ref()
                .map(|dir| self.config.resolve_path(dir))
        });
        let fuel_enabled = self.config.fuel_wanted();
        let runtime = Runtime::new(&self.config.engine, fuel_enabled, cache_dir)?;
        let kv = self.kv.unwrap_or_else(|| Arc::new(MemoryKv::new()));
        let chains = [
            ArcSwap::from_pointee(load_chain(&runtime, &self.config, Slot::Chat, &kv)?),
            ArcSwap::from_pointee(load_chain(&runtime, &self.config, Slot::Files, &kv)?),
            ArcSwap::from_pointee(load_chain(&runtime, &self.config, Slot::Signaling, &kv)?),
        ];
        Ok(PolicyEngine {
            inner: Arc::new(Inner {
                runtime,
                kv,
                fuel_enabled,
                chains,
            }),
        })
    }
}

fn describe_metrics() {
    metrics::describe_counter!(
        CALLS_TOTAL,
        "Policy plugin calls by slot, plugin and outcome"
    );
    metrics::describe_histogram!(
        CALL_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Policy plugin call duration"
    );
    metrics::describe_counter!(
        FAILED_OPEN_TOTAL,
        "Failed plugin calls that a fail-open slot let through"
    );
}

fn load_chain(
    runtime: &Runtime,
    config: &PluginsConfig,
    slot: Slot,
    kv: &Arc<dyn KvStore>,
) -> Result<Chain, LoadError> {
    let slot_config = config.slot(slot);
    let mut plugins = Vec::new();
    for spec in config.chain(slot) {
        let name = spec.name();
        let (bytes, source): (Cow<'_, [u8]>, String) = match &spec.source {
            PluginSource::Builtin(builtin) => (
                Cow::Borrowed(builtin.component()),
                format!("builtin:{}", builtin.as_str()),
            ),
            PluginSource::File(path) => {
                let path = config.resolve_path(path);
                let bytes = std::fs::read(&path).map_err(|source| LoadError::Io {
                    path: path.clone(),
                    source,
                })?;
                (Cow::Owned(bytes), path.display().to_string())
            }
            PluginSource::Bytes { bytes, .. } => {
                (Cow::Owned(bytes.to_vec()), "<memory>".to_owned())
            }
        };
        let limits = config.limits.merged(&spec.limits).resolve();
        let started = Instant::now();
        let loaded = runtime.load(slot, &name, &bytes, &spec.config, limits, kv.clone())?;
        tracing::info!(
            slot = %slot,
            plugin = %name,
            %source,
            precompiled = loaded.from_cache,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "policy plugin loaded"
        );
        plugins.push(ChainPlugin {
            metrics: PluginMetrics::new(slot, &name),
            failure: spec.failure.unwrap_or(slot_config.failure),
            name,
            slot,
            source,
            limits,
            loaded,
        });
    }
    Ok(Chain { plugins })
}

impl PolicyEngine {
    /// Starts building an engine from a configuration.
    pub fn builder(config: PluginsConfig) -> PolicyEngineBuilder {
        PolicyEngineBuilder {
            config,
            kv: None,
            cache_dir: None,
        }
    }

    /// The three builtin plugins with their default configuration, an in-memory store and
    /// no disk cache.
    pub fn with_defaults() -> Result<Self, LoadError> {
        Self::builder(PluginsConfig::default()).build()
    }

    /// Loads every chain of `config` and, once all loaded, swaps them in. Calls in flight
    /// finish on the chains they started with. The `[engine]` section cannot change
    /// without a restart and is ignored here, except that plugins asking for fuel need an
    /// engine started with fuel.
    pub fn reload(&self, config: &PluginsConfig) -> Result<(), LoadError> {
        config.validate()?;
        if config.fuel_wanted() && !self.inner.fuel_enabled {
            return Err(LoadError::Config(
                "fuel limits need a restart: the engine was started without fuel metering".into(),
            ));
        }
        let mut chains = Vec::with_capacity(3);
        for slot in Slot::ALL {
            chains.push(load_chain(
                &self.inner.runtime,
                config,
                slot,
                &self.inner.kv,
            )?);
        }
        for (slot, chain) in Slot::ALL.into_iter().zip(chains) {
            self.chain_cell(slot).store(Arc::new(chain));
        }
        Ok(())
    }

    /// Every loaded plugin, slot by slot, in chain order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut out = Vec::new();
        for slot in Slot::ALL {
            let chain = self.chain_cell(slot).load();
            for (position, p) in chain.plugins.iter().enumerate() {
                out.push(PluginInfo {
                    slot,
                    position,
                    name: p.name.clone(),
                    source: p.source.clone(),
                    sha256: p.loaded.sha256.clone(),
                    failure: p.failure,
                    limits: p.limits,
                    precompiled: p.loaded.from_cache,
                });
            }
        }
        out
    }

    /// The store behind the plugins' `kv` import.
    pub fn kv_store(&self) -> &Arc<dyn KvStore> {
        &self.inner.kv
    }

    fn chain_cell(&self, slot: Slot) -> &ArcSwap<Chain> {
        &self.inner.chains[match slot {
            Slot::Chat => 0,
            Slot::Files => 1,
            Slot::Signaling => 2,
        }]
    }

    /// Moderates a chat message (send or edit).
    ///
    /// `Ok(Reject)` → answer `REJECTED_BY_POLICY` with `details.reason = code`;
    /// `Ok(Allow { content, flags })` → store `content` if rewritten, flagged if `flags`
    /// is not empty; `Err` → a fail-closed plugin failed: refuse with `UNAVAILABLE`.
    pub async fn moderate(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
    ) -> Result<ModerationDecision, PolicyFailure> {
        self.moderate_blocking(ctx, input)
    }

    /// [`moderate`](Self::moderate) for code outside an async context.
    pub fn moderate_blocking(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
    ) -> Result<ModerationDecision, PolicyFailure> {
        let chain = self.chain_cell(Slot::Chat).load();
        let mut rewritten: Option<String> = None;
        let mut flags = Vec::new();
        for plugin in &chain.plugins {
            let content = rewritten.as_deref().unwrap_or(&input.content);
            let verdict = run(
                plugin,
                span_moderate,
                |loaded| loaded.moderate(ctx, input, content),
                |v| match v {
                    ModerationVerdict::Allow => Outcome::Allow,
                    ModerationVerdict::Reject(_) => Outcome::Reject,
                    ModerationVerdict::Rewrite { .. } => Outcome::Rewrite,
                    ModerationVerdict::Flag { .. } => Outcome::Flag,
                },
            )?;
            match verdict {
                None | Some(ModerationVerdict::Allow) => {}
                Some(ModerationVerdict::Reject(refusal)) => {
                    return Ok(ModerationDecision::Reject(tidy(refusal)));
                }
                Some(ModerationVerdict::Rewrite { content }) => rewritten = Some(content),
                Some(ModerationVerdict::Flag { reason }) => flags.push(reason),
            }
        }
        Ok(ModerationDecision::Allow {
            content: rewritten,
            flags,
        })
    }

    /// Checks an upload from its name, declared facts and first 64 KiB, before any byte
    /// is kept. `Accept` may correct the folder and name: use the corrected values, and
    /// pass them on to [`finish_file`](Self::finish_file).
    pub async fn precheck_file(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
    ) -> Result<FileVerdict, PolicyFailure> {
        self.precheck_file_blocking(ctx, input)
    }

    /// [`precheck_file`](Self::precheck_file) for code outside an async context.
    pub fn precheck_file_blocking(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
    ) -> Result<FileVerdict, PolicyFailure> {
        self.file_chain(
            span_precheck,
            &input.name,
            input.folder.as_deref(),
            |loaded, name, folder| loaded.precheck(ctx, input, name, folder),
        )
    }

    /// Checks a complete upload (size, hash) before it is published.
    pub async fn finish_file(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
    ) -> Result<FileVerdict, PolicyFailure> {
        self.finish_file_blocking(ctx, input)
    }

    /// [`finish_file`](Self::finish_file) for code outside an async context.
    pub fn finish_file_blocking(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
    ) -> Result<FileVerdict, PolicyFailure> {
        self.file_chain(
            span_finish,
            &input.name,
            input.folder.as_deref(),
            |loaded, name, folder| loaded.finish(ctx, input, name, folder),
        )
    }

    fn file_chain(
        &self,
        span: fn(&str) -> Span,
        name: &str,
        folder: Option<&str>,
        call: impl Fn(&Loaded, &str, Option<&str>) -> Result<FileVerdict, FailureKind>,
    ) -> Result<FileVerdict, PolicyFailure> {
        let chain = self.chain_cell(Slot::Files).load();
        let mut new_name: Option<String> = None;
        let mut new_folder: Option<String> = None;
        for plugin in &chain.plugins {
            let current_name = new_name.as_deref().unwrap_or(name);
            let current_folder = new_folder.as_deref().or(folder);
            let verdict = run(
                plugin,
                span,
                |loaded| call(loaded, current_name, current_folder),
                |v| match v {
                    FileVerdict::Accept { .. } => Outcome::Accept,
                    FileVerdict::Reject(_) => Outcome::Reject,
                },
            )?;
            match verdict {
                None => {}
                Some(FileVerdict::Accept { folder, name }) => {
                    new_folder = folder.or(new_folder);
                    new_name = name.or(new_name);
                }
                Some(FileVerdict::Reject(refusal)) => {
                    return Ok(FileVerdict::Reject(tidy(refusal)));
                }
            }
        }
        Ok(FileVerdict::Accept {
            folder: new_folder,
            name: new_name,
        })
    }

    /// Checks a request to join a live session's call.
    pub async fn check_join(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, PolicyFailure> {
        self.check_join_blocking(ctx, input)
    }

    /// [`check_join`](Self::check_join) for code outside an async context.
    pub fn check_join_blocking(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, PolicyFailure> {
        let chain = self.chain_cell(Slot::Signaling).load();
        for plugin in &chain.plugins {
            let verdict = run(
                plugin,
                span_join,
                |loaded| loaded.check_join(ctx, input),
                |v| match v {
                    JoinVerdict::Allow => Outcome::Allow,
                    JoinVerdict::Deny(_) => Outcome::Deny,
                },
            )?;
            if let Some(JoinVerdict::Deny(refusal)) = verdict {
                return Ok(JoinVerdict::Deny(tidy(refusal)));
            }
        }
        Ok(JoinVerdict::Allow)
    }

    /// Checks one signaling message before it is relayed.
    pub async fn check_signal(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
    ) -> Result<SignalVerdict, PolicyFailure> {
        self.check_signal_blocking(ctx, input)
    }

    /// [`check_signal`](Self::check_signal) for code outside an async context.
    pub fn check_signal_blocking(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
    ) -> Result<SignalVerdict, PolicyFailure> {
        let chain = self.chain_cell(Slot::Signaling).load();
        let mut rewritten: Option<String> = None;
        for plugin in &chain.plugins {
            let payload = rewritten.as_deref().unwrap_or(&input.payload);
            let verdict = run(
                plugin,
                span_signal,
                |loaded| loaded.check_signal(ctx, input, payload),
                |v| match v {
                    SignalVerdict::Relay => Outcome::Relay,
                    SignalVerdict::Rewrite { .. } => Outcome::Rewrite,
                    SignalVerdict::Drop(_) => Outcome::Drop,
                },
            )?;
            match verdict {
                None | Some(SignalVerdict::Relay) => {}
                Some(SignalVerdict::Rewrite { payload }) => rewritten = Some(payload),
                Some(SignalVerdict::Drop(refusal)) => {
                    return Ok(SignalVerdict::Drop(tidy(refusal)));
                }
            }
        }
        Ok(match rewritten {
            Some(payload) => SignalVerdict::Rewrite { payload },
            None => SignalVerdict::Relay,
        })
    }
}

// Span names must be literals at their call site, hence one constructor per call kind.
fn span_moderate(plugin: &str) -> Span {
    tracing::info_span!("plugin.moderate", plugin, outcome = Empty)
}
fn span_precheck(plugin: &str) -> Span {
    tracing::info_span!("plugin.precheck_file", plugin, outcome = Empty)
}
fn span_finish(plugin: &str) -> Span {
    tracing::info_span!("plugin.finish_file", plugin, outcome = Empty)
}
fn span_join(plugin: &str) -> Span {
    tracing::info_span!("plugin.check_join", plugin, outcome = Empty)
}
fn span_signal(plugin: &str) -> Span {
    tracing::info_span!("plugin.check_signal", plugin, outcome = Empty)
}

/// Calls one plugin, records the outcome, and applies its failure mode: `Ok(Some)` is its
/// verdict, `Ok(None)` a failure passed over by a fail-open plugin, `Err` a failure of a
/// fail-closed one.
fn run<V>(
    plugin: &ChainPlugin,
    span: fn(&str) -> Span,
    call: impl FnOnce(&Loaded) -> Result<V, FailureKind>,
    outcome_of: impl FnOnce(&V) -> Outcome,
) -> Result<Option<V>, PolicyFailure> {
    let span = span(&plugin.name);
    let _entered = span.enter();
    let started = Instant::now();
    let result = call(&plugin.loaded);
    plugin
        .metrics
        .duration
        .record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(verdict) => outcome_of(verdict),
        Err(kind) => Outcome::Failed(*kind),
    };
    plugin.metrics.calls[outcome.index()].increment(1);
    span.record("outcome", outcome.as_str());
    match result {
        Ok(verdict) => Ok(Some(verdict)),
        Err(kind) => match plugin.failure {
            FailureMode::FailClosed => {
                tracing::warn!(slot = %plugin.slot, plugin = %plugin.name, failure = kind.as_str(), "policy plugin failed; refusing (fail-closed)");
                Err(PolicyFailure {
                    slot: plugin.slot,
                    plugin: plugin.name.clone(),
                    kind,
                })
            }
            FailureMode::FailOpen => {
                tracing::warn!(slot = %plugin.slot, plugin = %plugin.name, failure = kind.as_str(), "policy plugin failed; skipping it (fail-open)");
                plugin.metrics.failed_open.increment(1);
                Ok(None)
            }
        },
    }
}

/// Keeps what plugins say within what clients expect: a snake_case code of at most 64
/// characters and a reason of at most 500.
fn tidy(refusal: Refusal) -> Refusal {
    let mut code: String = refusal
        .code
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if code.is_empty() {
        code = "rejected_by_policy".to_owned();
    }
    let mut reason: String = refusal.reason.trim().chars().take(500).collect();
    if reason.is_empty() {
        reason = "Refused by policy.".to_owned();
    }
    Refusal { code, reason }
}
