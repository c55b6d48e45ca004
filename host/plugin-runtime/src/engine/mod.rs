//! The policy engine: per slot an active chain of loaded plugins and, optionally, a shadow
//! candidate; chains are prepared off the serving path and swapped in atomically.
//!
//! - `calls`: the five kinds of call and the host's rules for what plugins may answer.
//! - `chain`: a chain and the one fold that asks its plugins (breaker, counters, metrics,
//!   audit, failure modes).
//! - `stats`: per-plugin counters and the circuit breaker.
//! - `shadow`: the candidate chain, its queue and its key-value namespace.

mod calls;
mod chain;
mod shadow;
mod stats;

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use self::calls::HostRules;
use self::calls::{Call, CheckFile, FileStage, Join, Moderate, Signal};
use self::chain::{Chain, ChainPlugin, Env, PluginParts};
use self::shadow::{Shadow, ShadowKv, ShadowRunner};
use self::stats::Breaker;
use crate::audit::{DecisionSink, NoAudit};
use crate::config::{
    CallMode, ChainSpec, EngineConfig, FailureMode, Limits, PluginSource, PluginsConfig,
};
use crate::error::{FailureKind, LoadError, PolicyFailure};
use crate::kv::{KvStore, MemoryKv};
use crate::status::{Activation, SlotStatus};
use crate::types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, ModerationDecision,
    ModerationInput, PolicyContext, SignalCheck, SignalVerdict, Slot,
};
use crate::wasm::{CacheKey, Runtime};

/// Counter of plugin calls, labelled `slot`, `plugin` and `outcome` (`allow`, `reject`,
/// `rewrite`, `flag`, `accept`, `deny`, `relay`, `drop`, `trap`, `timeout`, `memory`,
/// `fuel`, `unavailable`, `invalid`, `circuit_open`, `busy`).
pub const CALLS_TOTAL: &str = "lyceum_plugin_calls_total";
/// Histogram of plugin call durations in seconds, labelled `slot` and `plugin`.
pub const CALL_DURATION_SECONDS: &str = "lyceum_plugin_call_duration_seconds";
/// Counter of failed calls that a fail-open slot let through unchecked, labelled `slot`
/// and `plugin`.
pub const FAILED_OPEN_TOTAL: &str = "lyceum_plugin_failed_open_total";

/// What a call ended in, for metrics, counters, spans and the audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
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
    const COUNT: usize = 8 + FailureKind::ALL.len();
    const ALL: [Outcome; Self::COUNT] = [
        Outcome::Allow,
        Outcome::Reject,
        Outcome::Rewrite,
        Outcome::Flag,
        Outcome::Accept,
        Outcome::Deny,
        Outcome::Relay,
        Outcome::Drop,
        Outcome::Failed(FailureKind::ALL[0]),
        Outcome::Failed(FailureKind::ALL[1]),
        Outcome::Failed(FailureKind::ALL[2]),
        Outcome::Failed(FailureKind::ALL[3]),
        Outcome::Failed(FailureKind::ALL[4]),
        Outcome::Failed(FailureKind::ALL[5]),
        Outcome::Failed(FailureKind::ALL[6]),
        Outcome::Failed(FailureKind::ALL[7]),
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
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }

    /// Verdicts that let the request through unchanged: not audited.
    fn passes(self) -> bool {
        matches!(self, Outcome::Allow | Outcome::Accept | Outcome::Relay)
    }

    /// The outcomes a slot's plugins can produce.
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

/// A description of a loaded plugin, for listings and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The slot it serves.
    pub slot: Slot,
    /// Its place in the slot's chain, from 0.
    pub position: usize,
    /// Its name.
    pub name: String,
    /// Where it came from (`builtin:...`, a path, or an in-memory module).
    pub source: String,
    /// SHA-256 of the module, lowercase hex.
    pub sha256: String,
    /// Its effective failure mode.
    pub failure: FailureMode,
    /// Its effective limits.
    pub limits: Limits,
    /// Whether its native code came from a cache rather than a compilation.
    pub precompiled: bool,
}

/// A chain compiled, started and smoke-tested, not yet serving. Made by
/// [`PolicyEngine::prepare`] (or [`prepare_shadow`](PolicyEngine::prepare_shadow)).
pub struct PreparedChain {
    chain: Chain,
}

impl PreparedChain {
    /// The slot it was prepared for.
    pub fn slot(&self) -> Slot {
        self.chain.slot
    }

    /// SHA-256 of each plugin's module, in chain order.
    pub fn modules(&self) -> Vec<String> {
        self.chain
            .plugins
            .iter()
            .map(|p| p.loaded.sha256.clone())
            .collect()
    }
}

struct SlotCell {
    active: ArcSwap<Chain>,
    shadow: ArcSwapOption<Shadow>,
}

struct Inner {
    runtime: Runtime,
    engine_config: EngineConfig,
    kv: Arc<dyn KvStore>,
    shadow_kv: Arc<dyn KvStore>,
    fuel_enabled: bool,
    rules: HostRules,
    audit: Arc<dyn DecisionSink>,
    shadow_runner: ShadowRunner,
    slots: [SlotCell; 3],
}

/// Runs the policy plugins of every slot. Cheap to clone; share one per server.
///
/// The async methods run the chain on the caller's thread while its plugins answer within
/// `engine.inline_budget_us`, and on the blocking pool once one of them was slow (or always,
/// with `call_mode = "pool"`), so that a plugin running to its deadline holds a blocking
/// thread, not an async worker serving unrelated requests; the `_blocking` methods always
/// run on the caller's thread.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

/// Builds a [`PolicyEngine`].
pub struct PolicyEngineBuilder {
    config: PluginsConfig,
    kv: Option<Arc<dyn KvStore>>,
    cache_dir: Option<PathBuf>,
    cache_secret: Option<Vec<u8>>,
    audit: Option<Arc<dyn DecisionSink>>,
    rules: HostRules,
    deferred: bool,
}

impl PolicyEngineBuilder {
    /// The store behind the plugins' `kv` import; an in-memory [`MemoryKv`] by default.
    pub fn kv_store(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Where to cache precompiled plugins on disk; none by default. Used only with a
    /// [`cache_key`](Self::cache_key): a cached artifact is native code the server runs, and
    /// without a key it could not tell its own from one planted in the directory.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The secret (at least 32 bytes) from which the key authenticating cached artifacts is
    /// derived. Only artifacts written under the same secret are loaded; any other file in
    /// the cache directory is discarded and its module compiled again. Keep it outside the
    /// cache directory and as private as the server's other secrets: whoever holds it can
    /// make the server run native code. Changing it costs one compilation per plugin.
    pub fn cache_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.cache_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Where decisions go; nowhere by default.
    pub fn audit(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// What the host accepts from plugins that rewrite; [`HostRules::default`] otherwise.
    pub fn host_rules(mut self, rules: HostRules) -> Self {
        self.rules = rules;
        self
    }

    /// Builds without loading any chain: every slot starts *loading* (its calls get the
    /// configuration's failure mode for that slot, and [`PolicyEngine::ready`] is false)
    /// until a chain is activated in it. For a server that answers while big plugins
    /// compile: it calls [`PolicyEngine::reload`] or [`PolicyEngine::activate`] off the
    /// serving path afterwards.
    pub fn deferred(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// Sets up the engine and loads every slot's chain from the configuration. Any plugin
    /// that cannot be read, checked, compiled or started fails the whole build, naming the
    /// plugin and the cause. With [`deferred`](Self::deferred), loads nothing.
    pub fn build(self) -> Result<PolicyEngine, LoadError> {
        self.config.validate()?;
        describe_metrics();
        let fuel_enabled = self.config.fuel_wanted();
        let cache = disk_cache(self.cache_dir, self.cache_secret)?;
        let runtime = Runtime::new(&self.config.engine, fuel_enabled, cache)?;
        let kv = self.kv.unwrap_or_else(|| Arc::new(MemoryKv::new()));
        let shadow_runner = ShadowRunner::start(self.config.engine.shadow_queue)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        let deferred = self.deferred;
        let config = &self.config;
        let empty = |slot| SlotCell {
            active: ArcSwap::from_pointee(Chain {
                slot,
                plugins: Vec::new(),
                failure: config.chain_spec(slot).failure,
                activation: Activation::unrecorded(),
                shadow: false,
                loading: deferred,
            }),
            shadow: ArcSwapOption::empty(),
        };
        let engine = PolicyEngine {
            inner: Arc::new(Inner {
                runtime,
                engine_config: self.config.engine.clone(),
                shadow_kv: Arc::new(ShadowKv::new(kv.clone())),
                kv,
                fuel_enabled,
                rules: self.rules,
                audit: self.audit.unwrap_or_else(|| Arc::new(NoAudit)),
                shadow_runner,
                slots: [
                    empty(Slot::Chat),
                    empty(Slot::Files),
                    empty(Slot::Signaling),
                ],
            }),
        };
        if !deferred {
            engine.reload(&self.config)?;
        }
        Ok(engine)
    }
}

/// The cache directory with its key; without a key there is no disk cache.
fn disk_cache(
    dir: Option<PathBuf>,
    secret: Option<Vec<u8>>,
) -> Result<Option<(PathBuf, CacheKey)>, LoadError> {
    if let Some(secret) = &secret
        && secret.len() < CacheKey::MIN_SECRET_BYTES
    {
        return Err(LoadError::Config(format!(
            "the plugin cache key must be at least {} bytes long",
            CacheKey::MIN_SECRET_BYTES
        )));
    }
    Ok(match (dir, secret) {
        (Some(dir), Some(secret)) => Some((dir, CacheKey::derive(&secret))),
        (Some(dir), None) => {
            tracing::warn!(dir = %dir.display(), "plugin cache directory given without a cache key; compiled plugins are not cached on disk");
            None
        }
        (None, _) => None,
    })
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

impl PolicyEngine {
    /// Starts building an engine from a configuration.
    pub fn builder(config: PluginsConfig) -> PolicyEngineBuilder {
        PolicyEngineBuilder {
            config,
            kv: None,
            cache_dir: None,
            cache_secret: None,
            audit: None,
            rules: HostRules::default(),
            deferred: false,
        }
    }

    /// The three builtin plugins with their default configuration, an in-memory store and
    /// no disk cache.
    pub fn with_defaults() -> Result<Self, LoadError> {
        Self::builder(PluginsConfig::default()).build()
    }

    /// Prepares every chain of `config` and, once all are ready, activates them (as
    /// unrecorded revisions). Calls in flight finish on the chains they started with. The
    /// `[engine]` section cannot change without a restart and is ignored here, except that
    /// plugins asking for fuel need an engine started with fuel.
    pub fn reload(&self, config: &PluginsConfig) -> Result<(), LoadError> {
        config.validate()?;
        let plugins: usize = Slot::ALL
            .iter()
            .map(|&slot| config.chain_spec(slot).plugins.len())
            .sum();
        self.check_pooled(plugins)?;
        let mut prepared = Vec::with_capacity(3);
        for slot in Slot::ALL {
            prepared.push(self.prepare(slot, &config.chain_spec(slot))?);
        }
        for chain in prepared {
            self.activate(chain, Activation::unrecorded());
        }
        Ok(())
    }

    /// Reads, checks, compiles (or takes from the cache), starts and smoke-tests every
    /// plugin of `spec` for `slot`, and warms each plugin's instance pool to what the plugin
    /// of the same name in the active chain has idle, so that the chain serves its first
    /// calls as fast as the one it replaces. Blocking: run it off the async
    /// workers. Nothing serves until [`activate`](Self::activate).
    pub fn prepare(&self, slot: Slot, spec: &ChainSpec) -> Result<PreparedChain, LoadError> {
        self.prepare_as(slot, spec, false)
    }

    /// [`prepare`](Self::prepare) for a shadow candidate: its plugins see a key-value
    /// namespace of their own and report no metrics, only the slot's status.
    pub fn prepare_shadow(&self, slot: Slot, spec: &ChainSpec) -> Result<PreparedChain, LoadError> {
        self.prepare_as(slot, spec, true)
    }

    fn prepare_as(
        &self,
        slot: Slot,
        spec: &ChainSpec,
        shadow: bool,
    ) -> Result<PreparedChain, LoadError> {
        let engine = &self.inner.engine_config;
        spec.validate(slot, engine)?;
        if spec.fuel_wanted() && !self.inner.fuel_enabled {
            return Err(LoadError::Config(
                "fuel limits need a restart: the engine was started without fuel metering".into(),
            ));
        }
        self.check_name_clash(slot, spec)?;
        self.check_headroom(slot, spec, shadow)?;
        let kv = if shadow {
            self.inner.shadow_kv.clone()
        } else {
            self.inner.kv.clone()
        };
        let mut plugins = Vec::with_capacity(spec.plugins.len());
        for plugin in &spec.plugins {
            let name = plugin.name();
            let (bytes, source): (Cow<'_, [u8]>, String) = match &plugin.source {
                PluginSource::Builtin(builtin) => (
                    Cow::Borrowed(builtin.component()),
                    format!("builtin:{}", builtin.as_str()),
                ),
                PluginSource::File(path) => {
                    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    (Cow::Owned(bytes), path.display().to_string())
                }
                PluginSource::Bytes { bytes, .. } => {
                    (Cow::Borrowed(&bytes[..]), "<memory>".to_owned())
                }
            };
            let limits = spec.limits.merged(&plugin.limits).resolve();
            // As warm as the plugin it replaces: a swap under load meets no cold instance,
            // and an idle server does not keep a full pool of every plugin.
            let warm = self
                .cell(slot)
                .active
                .load()
                .plugins
                .iter()
                .find(|p| p.name == name)
                .map_or(1, |p| p.loaded.idle().max(1));
            let started = Instant::now();
            let loaded = self.inner.runtime.load(
                slot,
                &name,
                &bytes,
                plugin.sha256.as_deref(),
                &plugin.config,
                limits,
                kv.clone(),
                warm,
            )?;
            tracing::info!(
                slot = %slot,
                plugin = %name,
                %source,
                shadow,
                precompiled = loaded.from_cache,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "policy plugin prepared"
            );
            plugins.push(ChainPlugin::new(
                PluginParts {
                    failure: plugin.failure.unwrap_or(spec.failure),
                    name,
                    slot,
                    source,
                    limits,
                    config: plugin.config.clone(),
                    abi: loaded.abi,
                    wit_version: loaded.wit_version.clone(),
                    shadow,
                    breaker: Breaker::new(engine.breaker()),
                },
                loaded,
            ));
        }
        Ok(PreparedChain {
            chain: Chain {
                slot,
                plugins,
                failure: spec.failure,
                activation: Activation::unrecorded(),
                shadow,
                loading: false,
            },
        })
    }

    /// A plugin's name is its key-value namespace: two slots must not share one.
    fn check_name_clash(&self, slot: Slot, spec: &ChainSpec) -> Result<(), LoadError> {
        for other in Slot::ALL.into_iter().filter(|s| *s != slot) {
            let chain = self.cell(other).active.load();
            for plugin in &spec.plugins {
                let name = plugin.name();
                if chain.plugins.iter().any(|p| p.name == name) {
                    return Err(LoadError::Config(format!(
                        "a plugin named `{name}` already serves the {other} slot; names are \
                         key-value namespaces, so give this one a distinct `name`"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Pooled instances of every chain (active and shadow), with the new chain's replacing
    /// what it replaces, may use at most half the engine's instances: the other half is for
    /// calls beyond the pools and for an old and a new chain to overlap during a swap.
    fn check_headroom(&self, slot: Slot, spec: &ChainSpec, shadow: bool) -> Result<(), LoadError> {
        let mut plugins = spec.plugins.len();
        for other in Slot::ALL {
            if other != slot || shadow {
                plugins += self.cell(other).active.load().plugins.len();
            }
            if other != slot || !shadow {
                plugins += self
                    .cell(other)
                    .shadow
                    .load()
                    .as_ref()
                    .map_or(0, |s| s.chain.plugins.len());
            }
        }
        self.check_pooled(plugins)
    }

    fn check_pooled(&self, plugins: usize) -> Result<(), LoadError> {
        let engine = &self.inner.engine_config;
        let pooled = plugins.saturating_mul(engine.pool_size as usize);
        let budget = (engine.max_instances / 2) as usize;
        if pooled > budget {
            return Err(LoadError::Config(format!(
                "{plugins} plugins with pool_size {} would keep {pooled} instances pooled, more \
                 than half of engine.max_instances ({}); raise max_instances or lower pool_size",
                engine.pool_size, engine.max_instances
            )));
        }
        Ok(())
    }

    /// Makes `prepared` its slot's active chain. Calls already running finish on the old
    /// chain, every later call sees the new one; none fails because of the swap. The new
    /// chain's counters start at zero.
    pub fn activate(&self, prepared: PreparedChain, activation: Activation) {
        let mut chain = prepared.chain;
        let slot = chain.slot;
        chain.activation = activation;
        if chain.shadow {
            // Promoted from shadow without preparing again: the plugins would keep the
            // shadow namespace, so this is refused by construction elsewhere; keep the
            // invariant visible.
            tracing::error!(%slot, "a shadow chain cannot be activated; prepare it again");
            return;
        }
        tracing::info!(%slot, revision = chain.activation.revision, plugins = chain.plugins.len(), "policy chain activated");
        self.cell(slot).active.store(Arc::new(chain));
    }

    /// Runs `prepared` in shadow beside its slot's active chain, replacing any candidate;
    /// `None` stops shadowing in `slot`.
    pub fn set_shadow(&self, slot: Slot, prepared: Option<PreparedChain>) {
        match prepared {
            Some(prepared) if prepared.chain.shadow && prepared.chain.slot == slot => {
                self.cell(slot)
                    .shadow
                    .store(Some(Arc::new(Shadow::new(prepared.chain))));
            }
            Some(_) => {
                tracing::error!(%slot, "only a chain prepared for shadow in this slot can shadow it");
            }
            None => self.cell(slot).shadow.store(None),
        }
    }

    /// The slot as it serves now: the active chain with its counters, and the candidate.
    pub fn status(&self, slot: Slot) -> SlotStatus {
        let cell = self.cell(slot);
        let chain = cell.active.load();
        SlotStatus {
            slot,
            ready: !chain.loading,
            activation: chain.activation.clone(),
            failure: chain.failure,
            chain: chain.plugins.iter().map(ChainPlugin::status).collect(),
            shadow: cell.shadow.load().as_ref().map(|s| s.status()),
        }
    }

    /// Whether every slot has a chain activated: false while a [`deferred`]
    /// (PolicyEngineBuilder::deferred) engine is still loading.
    pub fn ready(&self) -> bool {
        Slot::ALL
            .iter()
            .all(|&slot| !self.cell(slot).active.load().loading)
    }

    /// Every active plugin, slot by slot, in chain order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut out = Vec::new();
        for slot in Slot::ALL {
            let chain = self.cell(slot).active.load();
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

    /// Forgets compiled code (in memory and on disk) of every module not in `keep` and not
    /// serving now: code is cached only while some revision may still need it.
    pub fn retain_compiled(&self, keep: &HashSet<String>) {
        let mut keep = keep.clone();
        for slot in Slot::ALL {
            let cell = self.cell(slot);
            keep.extend(
                cell.active
                    .load()
                    .plugins
                    .iter()
                    .map(|p| p.loaded.sha256.clone()),
            );
            if let Some(shadow) = cell.shadow.load().as_ref() {
                keep.extend(shadow.chain.plugins.iter().map(|p| p.loaded.sha256.clone()));
            }
        }
        self.inner.runtime.retain_compiled(&keep);
    }

    /// The store behind the plugins' `kv` import.
    pub fn kv_store(&self) -> &Arc<dyn KvStore> {
        &self.inner.kv
    }

    fn cell(&self, slot: Slot) -> &SlotCell {
        &self.inner.slots[match slot {
            Slot::Chat => 0,
            Slot::Files => 1,
            Slot::Signaling => 2,
        }]
    }

    fn env(&self) -> Env<'_> {
        env(&self.inner)
    }

    /// Whether a call from async code may run on the caller's thread (see
    /// [`EngineConfig::call_mode`]).
    fn inline(&self, slot: Slot) -> bool {
        self.inner.engine_config.call_mode == CallMode::Adaptive
            && !self.cell(slot).active.load().has_slow_plugin()
    }

    /// Folds `call` over the slot's active chain, then hands the same question to the
    /// shadow candidate, if any, through its queue.
    fn decide<'c, C: Call + 'c>(
        &self,
        slot: Slot,
        call: C,
        shadow_call: impl FnOnce(Arc<Shadow>, Arc<Inner>, crate::status::VerdictSummary) -> ShadowJob,
    ) -> Result<C::Decision, PolicyFailure> {
        let cell = self.cell(slot);
        let chain = cell.active.load();
        let folded = chain::fold(&chain, call, &self.env());
        if let Some(candidate) = cell.shadow.load_full() {
            let (active, _) = shadow::summarize::<C>(&folded);
            let job = shadow_call(candidate.clone(), self.inner.clone(), active);
            if !self.inner.shadow_runner.submit(job) {
                candidate.dropped_one();
            }
        }
        folded.map(|f| f.decision)
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
        if self.inline(Slot::Chat) {
            return crate::wasm::on_async_worker(|| self.moderate_blocking(ctx, input));
        }
        let (engine, ctx, input) = (self.clone(), ctx.clone(), input.clone());
        off_worker(Slot::Chat, move || engine.moderate_blocking(&ctx, &input)).await
    }

    /// [`moderate`](Self::moderate) on the caller's thread.
    pub fn moderate_blocking(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
    ) -> Result<ModerationDecision, PolicyFailure> {
        self.decide(
            Slot::Chat,
            Moderate::new(ctx, input),
            |shadow, inner, active| {
                let (ctx, input) = (ctx.clone(), input.clone());
                Box::new(move || shadow.judge(Moderate::new(&ctx, &input), active, &env(&inner)))
            },
        )
    }

    /// Checks an upload from its name, declared facts and first 64 KiB, before any byte
    /// is kept. `Accept` may correct the folder and name: use the corrected values, and
    /// pass them on to [`finish_file`](Self::finish_file).
    pub async fn precheck_file(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
    ) -> Result<FileVerdict, PolicyFailure> {
        if self.inline(Slot::Files) {
            return crate::wasm::on_async_worker(|| self.precheck_file_blocking(ctx, input));
        }
        let (engine, ctx, input) = (self.clone(), ctx.clone(), input.clone());
        off_worker(Slot::Files, move || {
            engine.precheck_file_blocking(&ctx, &input)
        })
        .await
    }

    /// [`precheck_file`](Self::precheck_file) on the caller's thread.
    pub fn precheck_file_blocking(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
    ) -> Result<FileVerdict, PolicyFailure> {
        let call = CheckFile::new(ctx, FileStage::Precheck(input));
        self.decide(Slot::Files, call, |shadow, inner, active| {
            let (ctx, input) = (ctx.clone(), input.clone());
            Box::new(move || {
                let call = CheckFile::new(&ctx, FileStage::Precheck(&input));
                shadow.judge(call, active, &env(&inner))
            })
        })
    }

    /// Checks a complete upload (size, hash) before it is published.
    pub async fn finish_file(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
    ) -> Result<FileVerdict, PolicyFailure> {
        if self.inline(Slot::Files) {
            return crate::wasm::on_async_worker(|| self.finish_file_blocking(ctx, input));
        }
        let (engine, ctx, input) = (self.clone(), ctx.clone(), input.clone());
        off_worker(Slot::Files, move || {
            engine.finish_file_blocking(&ctx, &input)
        })
        .await
    }

    /// [`finish_file`](Self::finish_file) on the caller's thread.
    pub fn finish_file_blocking(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
    ) -> Result<FileVerdict, PolicyFailure> {
        let call = CheckFile::new(ctx, FileStage::Finish(input));
        self.decide(Slot::Files, call, |shadow, inner, active| {
            let (ctx, input) = (ctx.clone(), input.clone());
            Box::new(move || {
                let call = CheckFile::new(&ctx, FileStage::Finish(&input));
                shadow.judge(call, active, &env(&inner))
            })
        })
    }

    /// Checks a request to join a live session's call.
    pub async fn check_join(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, PolicyFailure> {
        if self.inline(Slot::Signaling) {
            return crate::wasm::on_async_worker(|| self.check_join_blocking(ctx, input));
        }
        let (engine, ctx, input) = (self.clone(), ctx.clone(), input.clone());
        off_worker(Slot::Signaling, move || {
            engine.check_join_blocking(&ctx, &input)
        })
        .await
    }

    /// [`check_join`](Self::check_join) on the caller's thread.
    pub fn check_join_blocking(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, PolicyFailure> {
        self.decide(
            Slot::Signaling,
            Join { ctx, input },
            |shadow, inner, active| {
                let (ctx, input) = (ctx.clone(), input.clone());
                Box::new(move || {
                    let call = Join {
                        ctx: &ctx,
                        input: &input,
                    };
                    shadow.judge(call, active, &env(&inner))
                })
            },
        )
    }

    /// Checks one signaling message before it is relayed.
    pub async fn check_signal(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
    ) -> Result<SignalVerdict, PolicyFailure> {
        if self.inline(Slot::Signaling) {
            return crate::wasm::on_async_worker(|| self.check_signal_blocking(ctx, input));
        }
        let (engine, ctx, input) = (self.clone(), ctx.clone(), input.clone());
        off_worker(Slot::Signaling, move || {
            engine.check_signal_blocking(&ctx, &input)
        })
        .await
    }

    /// [`check_signal`](Self::check_signal) on the caller's thread.
    pub fn check_signal_blocking(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
    ) -> Result<SignalVerdict, PolicyFailure> {
        self.decide(
            Slot::Signaling,
            Signal::new(ctx, input),
            |shadow, inner, active| {
                let (ctx, input) = (ctx.clone(), input.clone());
                Box::new(move || shadow.judge(Signal::new(&ctx, &input), active, &env(&inner)))
            },
        )
    }
}

type ShadowJob = Box<dyn FnOnce() + Send>;

fn env(inner: &Inner) -> Env<'_> {
    Env {
        rules: &inner.rules,
        audit: &*inner.audit,
        inline_budget: std::time::Duration::from_micros(inner.engine_config.inline_budget_us),
    }
}

/// Runs a chain on the blocking pool. A panic there is a host bug; the request is refused
/// as if a fail-closed plugin had failed rather than taking the caller down.
async fn off_worker<D: Send + 'static>(
    slot: Slot,
    run: impl FnOnce() -> Result<D, PolicyFailure> + Send + 'static,
) -> Result<D, PolicyFailure> {
    match tokio::task::spawn_blocking(run).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(%slot, error = %e, "policy chain panicked");
            Err(PolicyFailure {
                slot,
                plugin: "(engine)".to_owned(),
                kind: FailureKind::Unavailable,
            })
        }
    }
}
