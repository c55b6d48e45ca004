//! Everything that knows wasmtime: the engine and its limits, the precompiled cache, loading
//! and checking components, the host side of the imports, and pools of reusable instances.
//! Nothing from here leaves the crate; callers see domain types and [`FailureKind`].

mod cache;
mod caps;
mod deadline;
mod extism;
mod host;
#[cfg(test)]
mod limits_tests;
pub(crate) mod since_v0_1_0;
mod slots;

pub(crate) use slots::on_async_worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Store, Trap};

use self::cache::ArtifactCache;
pub(crate) use self::cache::CacheKey;
use self::deadline::Overtime;
use self::extism::ExtismPlugin;
use self::host::HostState;
use self::since_v0_1_0 as v0_1_0;
use self::slots::{SlotGate, SlotToken, Slots, Throttle};
use crate::config::{EngineConfig, Limits};
use crate::error::{FailureKind, LoadError};
use crate::inspect::{self, Abi, CheckReason, PROVIDED, is_inert_wasi};
use crate::kv::{KvStore, MemoryKv};
use crate::types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, MessageEvent, ModerationInput,
    ModerationVerdict, PolicyContext, Refusal, Role, SessionState, SignalCheck, SignalKind,
    SignalVerdict, Slot,
};

/// The engine all plugins share, with its epoch ticker.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
    /// Compiled code of modules that passed every check, by SHA-256, so that activating a
    /// revision again (a rollback) does not compile again.
    compiled: Mutex<HashMap<String, Component>>,
    tick: Duration,
    fuel_enabled: bool,
    pool_size: usize,
    /// Wakes calls waiting for an instance slot when one is freed.
    slots: Arc<Slots>,
    ticker: Option<Ticker>,
}

/// The engine every plugin of a runtime shares, under `config`'s limits.
fn new_engine(config: &EngineConfig, fuel_enabled: bool) -> Result<Engine, LoadError> {
    let mut wasm = Config::new();
    // Memories keep wasmtime's default 4 GiB reservation with guard pages, so compiled
    // code needs no explicit bounds checks: reserving only the memory cap measured about
    // 15% slower on the moderation benchmark. The reservation is address space, not
    // memory: max_instances × 4 GiB of it (1 TiB at the default 256).
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(fuel_enabled)
        // Explicit rather than wasmtime's default, so that it is a documented limit of
        // plugins and cannot change with an upgrade: recursion past it traps.
        .max_wasm_stack(config.max_wasm_stack_bytes())
        .allocation_strategy(InstanceAllocationStrategy::Pooling(caps::pooling(config)))
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Engine::new(&wasm).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

impl Runtime {
    pub(crate) fn new(
        config: &EngineConfig,
        fuel_enabled: bool,
        cache: Option<(std::path::PathBuf, CacheKey)>,
    ) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let engine = new_engine(config, fuel_enabled)?;

        let mut linker = Linker::new(&engine);
        v0_1_0::chat::ChatModeration::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_err)?;

        let cache = match cache {
            Some((dir, key)) => match ArtifactCache::open(dir.clone(), &engine, key) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "plugin cache unusable; compiling every start");
                    None
                }
            },
            None => None,
        };

        let tick = Duration::from_millis(config.epoch_tick_ms.max(1));
        let ticker =
            Ticker::start(engine.clone(), tick).map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            cache,
            compiled: Mutex::new(HashMap::new()),
            tick,
            fuel_enabled,
            pool_size: usize::try_from(config.pool_size).unwrap_or(usize::MAX),
            slots: Slots::new(),
            ticker: Some(ticker),
        })
    }

    /// Checks `bytes` against the pinned hash and the slot's world, compiles it (or takes
    /// compiled code from a cache), starts an instance, makes a smoke call with the plugin's
    /// configuration and fills the instance pool, so that every problem surfaces here and
    /// the first real call finds a warm instance.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        &self,
        slot: Slot,
        name: &str,
        bytes: &[u8],
        pinned: Option<&str>,
        plugin_config: &serde_json::Map<String, serde_json::Value>,
        limits: Limits,
        kv: Arc<dyn KvStore>,
        warm: usize,
    ) -> Result<Loaded, LoadError> {
        let invalid = |reason: String| LoadError::InvalidComponent {
            plugin: name.to_owned(),
            reason,
        };
        // Everything that can be refused without compiling is refused first.
        let info = inspect::inspect(bytes, Some(slot)).map_err(|e| match e.reason {
            CheckReason::ForbiddenImport => LoadError::ForbiddenImport {
                plugin: name.to_owned(),
                imports: e.imports,
            },
            CheckReason::WrongWorld => LoadError::WrongWorld {
                plugin: name.to_owned(),
                world: slot.world(),
                reason: e.message,
            },
            CheckReason::UnsupportedWitVersion => LoadError::UnsupportedWitVersion {
                plugin: name.to_owned(),
                reason: e.message,
            },
            _ => invalid(e.message),
        })?;
        let sha256 = info.sha256.clone();
        if let Some(expected) = pinned
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::HashMismatch {
                plugin: name.to_owned(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
        if info.abi == Abi::Extism {
            return self.load_extism(slot, name, bytes, &info, plugin_config, limits, kv, warm);
        }
        let in_memory = self
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sha256)
            .cloned();
        let cached = in_memory.or_else(|| {
            self.cache
                .as_ref()
                .and_then(|c| c.load(&self.engine, &sha256))
        });
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => Component::new(&self.engine, bytes).map_err(|e| {
                if caps::over_pool_caps(&e) {
                    LoadError::ExceedsLimits {
                        plugin: name.to_owned(),
                        reason: format!("{e:#}"),
                    }
                } else {
                    invalid(format!("{e:#}"))
                }
            })?,
        };

        let component_type = component.component_type();
        let mut tolerated = false;
        let mut forbidden = Vec::new();
        for (import, _) in component_type.imports(&self.engine) {
            if PROVIDED.contains(&import) {
                continue;
            }
            if is_inert_wasi(import) {
                tolerated = true;
                continue;
            }
            forbidden.push(import.to_owned());
        }
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImport {
                plugin: name.to_owned(),
                imports: forbidden,
            });
        }

        let world = slot.world();
        let wrong_world = |reason: String| LoadError::WrongWorld {
            plugin: name.to_owned(),
            world,
            reason,
        };
        let mut linker = self.linker.clone();
        if tolerated {
            linker
                .define_unknown_imports_as_traps(&component)
                .map_err(|e| wrong_world(format!("{e:#}")))?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wrong_world(format!("{e:#}")))?;
        let pre = match slot {
            Slot::Chat => v0_1_0::chat::ChatModerationPre::new(pre).map(Pre::Chat),
            Slot::Files => v0_1_0::files::FileValidationPre::new(pre).map(Pre::Files),
            Slot::Signaling => v0_1_0::signaling::SignalingPolicyPre::new(pre).map(Pre::Signaling),
        }
        .map_err(|e| wrong_world(format!("{e:#}")))?;

        let values = plugin_config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect::<HashMap<_, _>>();
        let data = Arc::new(host::PluginData {
            name: name.into(),
            config_json: serde_json::Value::Object(plugin_config.clone()).to_string(),
            config_values: values,
        });

        let plugin = ComponentPlugin {
            slot,
            engine: self.engine.clone(),
            pre,
            data,
            kv,
            limits,
            deadline_ticks: deadline_ticks(limits.deadline, self.tick),
            tick: self.tick,
            fuel_enabled: self.fuel_enabled,
            pool: Mutex::new(Vec::new()),
            pool_size: self.pool_size,
            slots: self.slots.clone(),
            gate: self.slots.gate(),
            busy_warning: Throttle::new(BUSY_WARNING_EVERY),
        };
        let first = plugin.instantiate().map_err(|e| LoadError::Instantiate {
            plugin: name.to_owned(),
            reason: format!("{e:#}"),
        })?;
        plugin.release(first);
        plugin.smoke().map_err(|kind| LoadError::ConfigRejected {
            plugin: name.to_owned(),
            kind,
        })?;
        plugin.prewarm(warm);
        let loaded = Loaded {
            abi: info.abi.as_str(),
            wit_version: info.wit_version(),
            from_cache,
            sha256: sha256.clone(),
            body: Body::Component(plugin),
        };

        // Only code that passed every check is kept for reuse.
        if !from_cache && let Some(cache) = &self.cache {
            cache.store(&sha256, &component);
        }
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha256, component);
        Ok(loaded)
    }

    /// [`Runtime::load`] for an Extism module that passed the static checks: compile, start
    /// an instance, smoke call, pre-warm. Its compiled code carries the plugin's
    /// configuration and limits, so it is not shared with other loads of the same bytes.
    #[allow(clippy::too_many_arguments)]
    fn load_extism(
        &self,
        slot: Slot,
        name: &str,
        bytes: &[u8],
        info: &inspect::ModuleInfo,
        plugin_config: &serde_json::Map<String, serde_json::Value>,
        limits: Limits,
        kv: Arc<dyn KvStore>,
        warm: usize,
    ) -> Result<Loaded, LoadError> {
        let plugin = ExtismPlugin::compile(
            slot,
            name,
            bytes,
            plugin_config,
            limits,
            self.fuel_enabled,
            kv,
            self.pool_size,
        )
        .map_err(|reason| LoadError::InvalidComponent {
            plugin: name.to_owned(),
            reason,
        })?;
        plugin.start().map_err(|reason| LoadError::Instantiate {
            plugin: name.to_owned(),
            reason,
        })?;
        plugin.smoke().map_err(|kind| LoadError::ConfigRejected {
            plugin: name.to_owned(),
            kind,
        })?;
        plugin.prewarm(warm);
        Ok(Loaded {
            abi: info.abi.as_str(),
            wit_version: info.wit_version(),
            from_cache: false,
            sha256: info.sha256.clone(),
            body: Body::Extism(plugin),
        })
    }

    /// Forgets compiled code of modules not in `keep`, in memory and on disk.
    pub(crate) fn retain_compiled(&self, keep: &HashSet<String>) {
        self.compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|sha256, _| keep.contains(sha256));
        if let Some(cache) = &self.cache {
            cache.retain(keep);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// Epoch ticks to allow for `deadline`: the tick in progress when the call starts may end
/// at once, so one more than the deadline needs, which makes the effective limit
/// somewhere between `deadline` and `deadline + tick`.
fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
}

/// A thread advancing the engine's epoch, which is what interrupts a plugin past its
/// deadline. It ends when the runtime is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("the plugin epoch thread panicked");
        }
    }
}

enum Pre {
    Chat(v0_1_0::chat::ChatModerationPre<HostState>),
    Files(v0_1_0::files::FileValidationPre<HostState>),
    Signaling(v0_1_0::signaling::SignalingPolicyPre<HostState>),
}

enum Exports {
    Chat(v0_1_0::chat::ChatModeration),
    Files(v0_1_0::files::FileValidation),
    Signaling(v0_1_0::signaling::SignalingPolicy),
}

struct Instance {
    store: Store<HostState>,
    exports: Exports,
    /// Last, so that the store (and its pool slot) is gone when waiters wake.
    _slot: SlotToken,
}

/// How often a plugin whose calls find no free instance slot may say so in the log.
const BUSY_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A store for one instance of a plugin: its limiter, its deadline (start code runs under
/// the same limits as a call; the default deadline of 0 would interrupt it at once).
fn plugin_store(engine: &Engine, state: HostState, deadline_ticks: u64) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| state);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().overtime.on_deadline()));
    store.set_epoch_deadline(deadline_ticks);
    store
}

/// A loaded plugin, whatever its ABI, with what listings show of it.
pub(crate) struct Loaded {
    pub(crate) abi: &'static str,
    pub(crate) wit_version: String,
    pub(crate) from_cache: bool,
    pub(crate) sha256: String,
    body: Body,
}

enum Body {
    Component(ComponentPlugin),
    Extism(ExtismPlugin),
}

/// Calls `$method` on whichever kind of plugin `$loaded` holds.
macro_rules! dispatch {
    ($loaded:expr, $method:ident($($arg:expr),*)) => {
        match &$loaded.body {
            Body::Component(plugin) => plugin.$method($($arg),*),
            Body::Extism(plugin) => plugin.$method($($arg),*),
        }
    };
}

impl Loaded {
    /// Idle instances in the pool now.
    pub(crate) fn idle(&self) -> usize {
        dispatch!(self, idle())
    }

    pub(crate) fn moderate(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
        content: &str,
    ) -> Result<ModerationVerdict, FailureKind> {
        dispatch!(self, moderate(ctx, input, content))
    }

    pub(crate) fn precheck(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        dispatch!(self, precheck(ctx, input, name, folder))
    }

    pub(crate) fn finish(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        dispatch!(self, finish(ctx, input, name, folder))
    }

    pub(crate) fn check_join(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, FailureKind> {
        dispatch!(self, check_join(ctx, input))
    }

    pub(crate) fn check_signal(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
        payload: &str,
    ) -> Result<SignalVerdict, FailureKind> {
        dispatch!(self, check_signal(ctx, input, payload))
    }
}

/// A loaded component: its pre-linked component and a pool of instances ready for calls.
///
/// Instances are reused across calls (a fresh one costs tens of microseconds, a call on a
/// live one about one), so guest memory persists between calls of one instance, but not
/// reliably: an instance that failed is dropped, never reused, and concurrent calls use
/// different instances. Plugins keep state that matters in the host store.
struct ComponentPlugin {
    slot: Slot,
    engine: Engine,
    pre: Pre,
    data: Arc<host::PluginData>,
    kv: Arc<dyn KvStore>,
    limits: Limits,
    deadline_ticks: u64,
    tick: Duration,
    fuel_enabled: bool,
    pool: Mutex<Vec<Instance>>,
    pool_size: usize,
    slots: Arc<Slots>,
    /// Where this plugin's calls wait for an instance.
    gate: Arc<SlotGate>,
    busy_warning: Throttle,
}

impl ComponentPlugin {
    fn instantiate(&self) -> wasmtime::Result<Instance> {
        self.instantiate_with(self.kv.clone())
    }

    fn instantiate_with(&self, kv: Arc<dyn KvStore>) -> wasmtime::Result<Instance> {
        let overtime = Overtime::new(self.deadline_ticks, self.tick);
        let state = HostState::new(self.data.clone(), kv, self.limits.memory_bytes, overtime);
        let mut store = plugin_store(&self.engine, state, self.deadline_ticks);
        if self.fuel_enabled {
            store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX))?;
        }
        let exports = match &self.pre {
            Pre::Chat(pre) => Exports::Chat(pre.instantiate(&mut store)?),
            Pre::Files(pre) => Exports::Files(pre.instantiate(&mut store)?),
            Pre::Signaling(pre) => Exports::Signaling(pre.instantiate(&mut store)?),
        };
        Ok(Instance {
            store,
            exports,
            _slot: SlotToken::new(&self.slots),
        })
    }

    fn idle(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Fills the pool up to `warm` instances (at most the pool's size), so that a chain being
    /// activated serves its first calls as fast as the chain it replaces. Best effort: a
    /// failure here only means a colder start.
    fn prewarm(&self, warm: usize) {
        let idle = self.idle();
        for _ in idle..warm.min(self.pool_size) {
            match self.instantiate() {
                Ok(instance) => self.release(instance),
                Err(_) => break,
            }
        }
    }

    /// One call with the plugin's configuration on a harmless input, in an instance of its
    /// own with a throwaway key-value store, so that a plugin that cannot work with its
    /// configuration is refused before it takes traffic. Its verdict does not matter.
    fn smoke(&self) -> Result<(), FailureKind> {
        let mut instance = self
            .instantiate_with(Arc::new(MemoryKv::new()))
            .map_err(|_| FailureKind::Trap)?;
        let Instance { store, exports, .. } = &mut instance;
        store.set_epoch_deadline(self.deadline_ticks);
        if self.fuel_enabled {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|_| FailureKind::Unavailable)?;
        }
        store.data_mut().begin_call();
        let ctx = PolicyContext::new("smoke-test", "smoke-test", Role::Student);
        let result = match (self.slot, &*exports) {
            (Slot::Chat, Exports::Chat(bindings)) => {
                use v0_1_0::chat::exports::lyceum::policy::moderation::{Message, MessageEvent};
                let message = Message {
                    room_id: "smoke-test",
                    message_id: None,
                    event: MessageEvent::Send,
                    content: "Hello, class.",
                    reply_to: None,
                    attachment_count: 0,
                };
                bindings
                    .lyceum_policy_moderation()
                    .call_moderate(&mut *store, context(&ctx), message)
                    .map(drop)
            }
            (Slot::Files, Exports::Files(bindings)) => {
                use v0_1_0::files::exports::lyceum::policy::files::UploadHead;
                let upload = UploadHead {
                    name: "notes.txt",
                    folder: None,
                    declared_type: Some("text/plain"),
                    declared_size: Some(13),
                    sniffed_type: Some("text/plain"),
                    head: b"Hello, class.",
                };
                bindings
                    .lyceum_policy_files()
                    .call_precheck(&mut *store, context(&ctx), upload)
                    .map(drop)
            }
            (Slot::Signaling, Exports::Signaling(bindings)) => {
                use v0_1_0::signaling::exports::lyceum::policy::signaling::{
                    JoinRequest, SessionState as State,
                };
                let request = JoinRequest {
                    session_id: "smoke-test",
                    state: State::Live,
                    participant_count: 0,
                    max_participants: None,
                };
                bindings
                    .lyceum_policy_signaling()
                    .call_check_join(&mut *store, context(&ctx), request)
                    .map(drop)
            }
            _ => Err(mismatch()),
        };
        result.map_err(|e| classify(&e, store.data()))
    }

    /// Puts `instance` back in the pool, or drops it when the pool is full; either way a
    /// call waiting for an instance may now get one.
    fn release(&self, instance: Instance) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < self.pool_size {
            pool.push(instance);
            drop(pool);
            self.gate.released();
        }
    }

    /// An idle instance, or a new one. When every slot of the engine is taken the call
    /// waits, up to its deadline, for one to be released or freed, then fails as busy; on
    /// an async worker it fails as busy at once.
    fn acquire(&self) -> Result<Instance, FailureKind> {
        let give_up = Instant::now() + self.limits.deadline;
        loop {
            let ticket = self.gate.ticket();
            let idle = self
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            if let Some(instance) = idle {
                return Ok(instance);
            }
            match self.instantiate() {
                Ok(instance) => return Ok(instance),
                Err(e) if slots::exhausted(&e) => {
                    if !slots::may_wait() || !self.gate.wait(ticket, give_up) {
                        if self.busy_warning.allow() {
                            tracing::warn!(plugin = %self.data.name, error = %format!("{e:#}"), "every plugin instance slot stayed taken for a call's deadline; such calls fail as busy (raise engine.max_instances if this lasts)");
                        }
                        return Err(FailureKind::Busy);
                    }
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.data.name, error = %format!("{e:#}"), "could not start a plugin instance");
                    return Err(FailureKind::Unavailable);
                }
            }
        }
    }

    /// Runs `call` on a pooled instance under the plugin's limits. After any failure the
    /// instance is dropped: a trapped instance may be in any state.
    fn with_instance<R>(
        &self,
        call: impl FnOnce(&mut Store<HostState>, &Exports) -> wasmtime::Result<R>,
    ) -> Result<R, FailureKind> {
        let mut instance = self.acquire()?;
        instance.store.set_epoch_deadline(self.deadline_ticks);
        if self.fuel_enabled
            && instance
                .store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .is_err()
        {
            return Err(FailureKind::Unavailable);
        }
        instance.store.data_mut().begin_call();
        match call(&mut instance.store, &instance.exports) {
            Ok(result) => {
                self.release(instance);
                Ok(result)
            }
            Err(e) => Err(classify(&e, instance.store.data())),
        }
    }

    pub(crate) fn moderate(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
        content: &str,
    ) -> Result<ModerationVerdict, FailureKind> {
        use v0_1_0::chat::exports::lyceum::policy::moderation::{
            Message, MessageEvent as Event, Verdict,
        };
        let message = Message {
            room_id: &input.room_id,
            message_id: input.message_id.as_deref(),
            event: match input.event {
                MessageEvent::Send => Event::Send,
                MessageEvent::Edit => Event::Edit,
            },
            content,
            reply_to: input.reply_to.as_deref(),
            attachment_count: input.attachment_count,
        };
        let verdict = self.with_instance(|store, exports| match exports {
            Exports::Chat(bindings) => {
                bindings
                    .lyceum_policy_moderation()
                    .call_moderate(store, context(ctx), message)
            }
            _ => Err(mismatch()),
        })?;
        Ok(match verdict {
            Verdict::Allow => ModerationVerdict::Allow,
            Verdict::Reject(r) => ModerationVerdict::Reject(refusal(r)),
            Verdict::Rewrite(content) => ModerationVerdict::Rewrite { content },
            Verdict::Flag(reason) => ModerationVerdict::Flag { reason },
        })
    }

    pub(crate) fn precheck(
        &self,
        ctx: &PolicyContext,
        input: &FilePrecheck,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        use v0_1_0::files::exports::lyceum::policy::files::UploadHead;
        let head = &input.head[..input.head.len().min(FilePrecheck::HEAD_LEN)];
        let upload = UploadHead {
            name,
            folder,
            declared_type: input.declared_type.as_deref(),
            declared_size: input.declared_size,
            sniffed_type: input.sniffed_type.as_deref(),
            head,
        };
        let verdict = self.with_instance(|store, exports| match exports {
            Exports::Files(bindings) => {
                bindings
                    .lyceum_policy_files()
                    .call_precheck(store, context(ctx), upload)
            }
            _ => Err(mismatch()),
        })?;
        Ok(file_verdict(verdict))
    }

    pub(crate) fn finish(
        &self,
        ctx: &PolicyContext,
        input: &FileFinish,
        name: &str,
        folder: Option<&str>,
    ) -> Result<FileVerdict, FailureKind> {
        use v0_1_0::files::exports::lyceum::policy::files::UploadDone;
        let upload = UploadDone {
            name,
            folder,
            declared_type: input.declared_type.as_deref(),
            size: input.size,
            sha256: &input.sha256,
            sniffed_type: input.sniffed_type.as_deref(),
        };
        let verdict = self.with_instance(|store, exports| match exports {
            Exports::Files(bindings) => {
                bindings
                    .lyceum_policy_files()
                    .call_finish(store, context(ctx), upload)
            }
            _ => Err(mismatch()),
        })?;
        Ok(file_verdict(verdict))
    }

    pub(crate) fn check_join(
        &self,
        ctx: &PolicyContext,
        input: &JoinCheck,
    ) -> Result<JoinVerdict, FailureKind> {
        use v0_1_0::signaling::exports::lyceum::policy::signaling::{
            JoinRequest, JoinVerdict as Verdict, SessionState as State,
        };
        let request = JoinRequest {
            session_id: &input.session_id,
            state: match input.state {
                SessionState::Scheduled => State::Scheduled,
                SessionState::Live => State::Live,
                SessionState::Ended => State::Ended,
            },
            participant_count: input.participant_count,
            max_participants: input.max_participants,
        };
        let verdict = self.with_instance(|store, exports| match exports {
            Exports::Signaling(bindings) => {
                bindings
                    .lyceum_policy_signaling()
                    .call_check_join(store, context(ctx), request)
            }
            _ => Err(mismatch()),
        })?;
        Ok(match verdict {
            Verdict::Allow => JoinVerdict::Allow,
            Verdict::Deny(r) => JoinVerdict::Deny(refusal(r)),
        })
    }

    pub(crate) fn check_signal(
        &self,
        ctx: &PolicyContext,
        input: &SignalCheck,
        payload: &str,
    ) -> Result<SignalVerdict, FailureKind> {
        use v0_1_0::signaling::exports::lyceum::policy::signaling::{
            Signal, SignalKind as Kind, SignalVerdict as Verdict,
        };
        let signal = Signal {
            session_id: &input.session_id,
            kind: match input.kind {
                SignalKind::Offer => Kind::Offer,
                SignalKind::Answer => Kind::Answer,
                SignalKind::IceCandidate => Kind::IceCandidate,
            },
            from: &input.from,
            to: &input.to,
            payload,
        };
        let verdict =
            self.with_instance(|store, exports| match exports {
                Exports::Signaling(bindings) => bindings
                    .lyceum_policy_signaling()
                    .call_check_signal(store, context(ctx), signal),
                _ => Err(mismatch()),
            })?;
        Ok(match verdict {
            Verdict::Relay => SignalVerdict::Relay,
            Verdict::Rewrite(payload) => SignalVerdict::Rewrite { payload },
            Verdict::Drop(r) => SignalVerdict::Drop(refusal(r)),
        })
    }
}

/// Bindings are chosen from the slot when loading, so this only fires on a host bug; it is
/// an error rather than a panic so that the slot's failure mode still applies.
fn mismatch() -> wasmtime::Error {
    wasmtime::format_err!("plugin called through the bindings of another world")
}

fn classify(error: &wasmtime::Error, state: &HostState) -> FailureKind {
    if state.grow_refused() {
        return FailureKind::Memory;
    }
    if state.overtime.timed_out() {
        return FailureKind::Timeout;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Timeout,
        Some(Trap::OutOfFuel) => FailureKind::Fuel,
        _ => FailureKind::Trap,
    }
}

fn context(ctx: &PolicyContext) -> v0_1_0::types::Context<'_> {
    use v0_1_0::types::Role as R;
    v0_1_0::types::Context {
        request_id: &ctx.request_id,
        actor_id: &ctx.actor_id,
        actor_role: match ctx.actor_role {
            Role::Student => R::Student,
            Role::Instructor => R::Instructor,
            Role::Admin => R::Admin,
        },
        course_id: ctx.course_id.as_deref(),
        room_id: ctx.room_id.as_deref(),
        session_id: ctx.session_id.as_deref(),
        at_unix_ms: ctx.at_unix_ms(),
    }
}

fn refusal(r: v0_1_0::types::Refusal) -> Refusal {
    Refusal {
        code: r.code,
        reason: r.reason,
    }
}

fn file_verdict(
    verdict: v0_1_0::files::exports::lyceum::policy::files::FileVerdict,
) -> FileVerdict {
    use v0_1_0::files::exports::lyceum::policy::files::FileVerdict as V;
    match verdict {
        V::Accept(p) => FileVerdict::Accept {
            folder: p.folder,
            name: p.name,
        },
        V::Reject(r) => FileVerdict::Reject(refusal(r)),
    }
}
