//! Lyceum's policy plugin runtime: sandboxed WebAssembly components, typed by the WIT
//! contract in `wit/`, that decide on chat messages, uploads and WebRTC signaling.
//!
//! This crate is the only part of the server that knows wasmtime. The rest of the server
//! builds one [`PolicyEngine`] at start-up and calls domain methods on it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lyceum_plugin_runtime::{
//!     ModerationDecision, ModerationInput, PluginsConfig, PolicyContext, PolicyEngine, Role,
//! };
//!
//! let config = PluginsConfig::load("plugins.toml".as_ref())?; // defaults when absent
//! let secret = std::fs::read("data/secret")?; // the server's, kept outside the cache
//! let engine = PolicyEngine::builder(config)
//!     .cache_dir("data/plugin-cache")
//!     .cache_key(&secret)
//!     .build()?;
//!
//! let ctx = PolicyContext::new("req-1", "user-1", Role::Student);
//! match engine.moderate(&ctx, &ModerationInput::send("room-1", "hello")).await {
//!     Ok(ModerationDecision::Allow { content, flags }) => { /* store it */ }
//!     Ok(ModerationDecision::Reject(refusal)) => { /* 422, details.reason = refusal.code */ }
//!     Err(failure) => { /* a fail-closed plugin failed: 503 */ }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`types`]: the domain types of calls and verdicts ([`PolicyContext`],
//!   [`ModerationInput`], [`FileVerdict`], ...).
//! - [`config`]: `plugins.toml` ([`PluginsConfig`]): chains, per-plugin configuration,
//!   limits, failure modes.
//! - `engine`: [`PolicyEngine`], which runs each slot's chain (first rejection wins,
//!   rewrites feed the next plugin, flags accumulate), applies failure modes, and records
//!   metrics and spans.
//! - [`kv`]: the [`KvStore`] trait behind the plugins' key-value import, and [`MemoryKv`].
//! - [`error`]: [`LoadError`] (start-up) and [`PolicyFailure`] (a fail-closed call).
//! - `wasm`: everything wasmtime (engine, pooling allocator, epoch deadlines, memory
//!   limits, precompiled cache, import checks, host imports, instance pools), private.
//! - [`builtin`] and [`fixtures`]: the components built from `plugins/` by `build.rs`.
//!
//! # Limits and failures
//! Each call runs under a wall-clock deadline (epoch interruption), a memory and table cap, a
//! WebAssembly stack limit and, optionally, a fuel budget; a component holding more core
//! instances, memories or tables than the engine allows is refused at load. A trap, timeout
//! or exhausted limit ends that call only: the instance is discarded and the next call gets
//! a fresh one. The plugin's failure mode then decides: fail-closed returns
//! [`PolicyFailure`] (refuse the request), fail-open skips the plugin and counts it in
//! `lyceum_plugin_failed_open_total`. A call that finds every instance slot taken waits for
//! one up to its deadline, then fails as [`FailureKind::Busy`].
//!
//! Plugins import nothing but `lyceum:policy/{log,config,kv}@0.1.0`. A component importing
//! anything else, WASI filesystem, sockets, clocks or random included, is refused at load
//! with an error naming the import; the stdio/exit/environment interfaces that Rust's
//! `wasm32-wasip2` standard library always imports are linked to functions that trap.

pub mod audit;
pub mod builtin;
pub mod config;
mod engine;
pub mod error;
pub mod fixtures;
pub mod inspect;
pub mod json;
pub mod kv;
pub mod status;
pub mod types;
mod wasm;

pub use audit::{Decision, DecisionSink, NoAudit};
pub use config::{
    BreakerConfig, Builtin, CallMode, ChainSpec, EngineConfig, FailureMode, Limits, LimitsConfig,
    PluginSource, PluginSpec, PluginsConfig,
};
pub use engine::{
    CALL_DURATION_SECONDS, CALLS_TOTAL, FAILED_OPEN_TOTAL, HostRules, PluginInfo, PolicyEngine,
    PolicyEngineBuilder, PreparedChain,
};
pub use error::{FailureKind, LoadError, PolicyFailure};
pub use kv::{KvError, KvStore, MemoryKv};
pub use status::{
    Activation, CircuitState, DisagreementSample, PluginStats, PluginStatus, ShadowStatus,
    SlotStatus, VerdictSummary,
};
pub use types::{
    FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict, MessageEvent,
    ModerationDecision, ModerationInput, ModerationVerdict, PolicyContext, Refusal, Role,
    SessionState, SignalCheck, SignalKind, SignalVerdict, Slot,
};
