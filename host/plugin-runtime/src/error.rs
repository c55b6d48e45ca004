//! Errors: [`LoadError`] when building the engine (the server should refuse to start),
//! [`PolicyFailure`] when a call fails on a fail-closed slot (the request gets an error).

use std::fmt;
use std::path::PathBuf;

use crate::types::Slot;

/// Why the policy engine could not be built or a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// `plugins.toml` is malformed or inconsistent.
    #[error("invalid plugins configuration: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component.
    #[error("plugin `{plugin}` is not a valid WebAssembly component: {reason}")]
    InvalidComponent {
        /// The plugin.
        plugin: String,
        /// What is wrong, in the words of the validator.
        reason: String,
    },
    /// The component imports something plugins are not given.
    #[error(
        "plugin `{plugin}` imports {}, which Lyceum does not provide to plugins \
         (they get only `lyceum:policy/log`, `config` and `kv` @0.1.0)",
        imports.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    )]
    ForbiddenImport {
        /// The plugin.
        plugin: String,
        /// Every refused import by full name, such as `wasi:filesystem/types@0.2.6`.
        imports: Vec<String>,
    },
    /// The component does not export the world of its slot.
    #[error(
        "plugin `{plugin}` does not implement the `lyceum:policy/{world}@0.1.0` world: {reason}"
    )]
    WrongWorld {
        /// The plugin.
        plugin: String,
        /// The world its slot requires.
        world: &'static str,
        /// What is missing or mistyped.
        reason: String,
    },
    /// The component needs more than the engine gives any plugin: more core instances,
    /// memories or tables than a component may hold, a table or memory declared larger than
    /// the caps. Refused when compiling, before anything runs.
    #[error("plugin `{plugin}` needs more than the engine's limits allow: {reason}")]
    ExceedsLimits {
        /// The plugin.
        plugin: String,
        /// Which limit, in the engine's words.
        reason: String,
    },
    /// The component could not be instantiated (its start code trapped, or no instance
    /// slot was free).
    #[error("plugin `{plugin}` could not be started: {reason}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// The cause.
        reason: String,
    },
    /// The component exports its world at a WIT version this server does not provide.
    #[error("plugin `{plugin}`: {reason}")]
    UnsupportedWitVersion {
        /// The plugin.
        plugin: String,
        /// Which version it was built against and which ones the server provides.
        reason: String,
    },
    /// The module's bytes are not the ones its configuration pinned.
    #[error("plugin `{plugin}` has SHA-256 {actual}, but its configuration pins {expected}")]
    HashMismatch {
        /// The plugin.
        plugin: String,
        /// The pinned hash.
        expected: String,
        /// The hash of the bytes found.
        actual: String,
    },
    /// The plugin started but failed the smoke call made with its configuration.
    #[error("plugin `{plugin}` failed a first call with its configuration: {kind}")]
    ConfigRejected {
        /// The plugin.
        plugin: String,
        /// How the call failed.
        kind: FailureKind,
    },
    /// The WebAssembly engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
}

impl LoadError {
    /// The short machine code of the admin API's `details.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Config(_) | LoadError::Engine(_) => "invalid_chain",
            LoadError::Io { .. } => "unknown_module",
            LoadError::InvalidComponent { .. } => "not_wasm",
            LoadError::ExceedsLimits { .. } => "exceeds_limits",
            LoadError::ForbiddenImport { .. } => "forbidden_import",
            LoadError::WrongWorld { .. } => "wrong_world",
            LoadError::UnsupportedWitVersion { .. } => "unsupported_wit_version",
            LoadError::Instantiate { .. } | LoadError::ConfigRejected { .. } => "config_rejected",
            LoadError::HashMismatch { .. } => "hash_mismatch",
        }
    }

    /// The refused imports, for `details.imports`.
    pub fn imports(&self) -> &[String] {
        match self {
            LoadError::ForbiddenImport { imports, .. } => imports,
            _ => &[],
        }
    }
}

/// What went wrong in a plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The plugin trapped: a panic, an unreachable instruction, a bad memory access.
    Trap,
    /// The plugin ran past its deadline and was interrupted.
    Timeout,
    /// The plugin tried to grow its memory, or a table, past its limit.
    Memory,
    /// The plugin used up its fuel.
    Fuel,
    /// No instance could be made: instantiation failed, or the slot's chain is still
    /// loading.
    Unavailable,
    /// The plugin answered something the host's rules forbid (a rewrite too long or empty,
    /// a payload that is not JSON, a file name with a slash).
    Invalid,
    /// The plugin's circuit is open after repeated failures; it was not called.
    CircuitOpen,
    /// Every instance slot of the engine stayed taken for as long as the call's deadline:
    /// the server is saturated. The plugin was not called, and this does not count against
    /// its circuit.
    Busy,
}

impl FailureKind {
    /// Every kind, in a stable order.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::Memory,
        FailureKind::Fuel,
        FailureKind::Unavailable,
        FailureKind::Invalid,
        FailureKind::CircuitOpen,
        FailureKind::Busy,
    ];

    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Fuel => "fuel",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Invalid => "invalid",
            FailureKind::CircuitOpen => "circuit_open",
            FailureKind::Busy => "busy",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Trap => "it crashed",
            FailureKind::Timeout => "it ran past its deadline",
            FailureKind::Memory => "it exceeded its memory limit",
            FailureKind::Fuel => "it ran out of fuel",
            FailureKind::Unavailable => "no instance was available",
            FailureKind::Invalid => "it answered what the server's rules forbid",
            FailureKind::CircuitOpen => "it failed repeatedly and is paused",
            FailureKind::Busy => "the server is too busy to run it now",
        })
    }
}

/// A fail-closed slot could not reach a decision because a plugin failed. The request
/// must be refused: answer `UNAVAILABLE` (503) or a clear error, never allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy plugin `{plugin}` ({slot}) failed: {kind}")]
pub struct PolicyFailure {
    /// The slot whose chain failed.
    pub slot: Slot,
    /// The plugin that failed.
    pub plugin: String,
    /// How it failed.
    pub kind: FailureKind,
}
