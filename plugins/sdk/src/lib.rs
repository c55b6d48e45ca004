//! Writing Lyceum policy plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing one world of the `lyceum:policy` WIT
//! package. This crate holds the generated bindings for all three worlds and a few helpers,
//! so a plugin crate needs nothing but this dependency:
//!
//! ```ignore
//! use lyceum_plugin_sdk::chat::{Guest, Message, Verdict};
//! use lyceum_plugin_sdk::types::Context;
//!
//! struct Plugin;
//!
//! impl Guest for Plugin {
//!     fn moderate(_ctx: Context, _message: Message) -> Verdict {
//!         Verdict::Allow
//!     }
//! }
//!
//! lyceum_plugin_sdk::chat::export!(Plugin);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component. Inside this repository's `plugins/`
//! workspace, `plugins/.cargo/config.toml` sets the target and sends the output to the
//! repository's `target/plugins/wasm32-wasip2/release/` instead. Guest memory may persist
//! between calls or be thrown away at any time: keep state that must survive in [`kv`].
//!
//! The crate carries the WIT it binds, `lyceum:policy@0.1.0`, in its own `wit/` folder: a
//! copy of the repository's `wit/since_v0.1.0` (a test keeps the two identical), so the
//! crate builds wherever it is copied, as `lyceum plugin new --lang rust` does.
//!
//! # Layout
//! - [`chat`], [`files`], [`signaling`]: one module per world, each with its `Guest` trait,
//!   its types and its `export!` macro. A plugin invokes the `export!` of each world it
//!   implements: one for a plugin of one slot (the usual case), up to all three for a
//!   component meant to fit every slot (as some test fixtures do).
//! - [`types`]: the shared request context and refusal.
//! - [`log`], [`config`], [`kv`]: the host's imports, plus the helpers in this crate root.

// The generated export macros name this crate by its public path, which must also resolve
// inside the crate itself.
extern crate self as lyceum_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen;

/// Bindings of the `chat-moderation` world. Its generated module also owns the interfaces
/// the three worlds share, re-exported at the crate root.
pub mod chat {
    #[doc(hidden)]
    pub mod __bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "chat-moderation",
            pub_export_macro: true,
            default_bindings_module: "lyceum_plugin_sdk::chat::__bindings",
            runtime_path: "lyceum_plugin_sdk::wit_bindgen::rt",
        });
    }

    #[doc(inline)]
    pub use __bindings::export;
    pub use __bindings::exports::lyceum::policy::moderation::{
        Guest, Message, MessageEvent, Verdict,
    };
}

/// Bindings of the `file-validation` world.
pub mod files {
    #[doc(hidden)]
    pub mod __bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "file-validation",
            pub_export_macro: true,
            default_bindings_module: "lyceum_plugin_sdk::files::__bindings",
            runtime_path: "lyceum_plugin_sdk::wit_bindgen::rt",
            with: {
                "lyceum:policy/types@0.1.0": lyceum_plugin_sdk::types,
                "lyceum:policy/log@0.1.0": lyceum_plugin_sdk::log,
                "lyceum:policy/config@0.1.0": lyceum_plugin_sdk::config,
                "lyceum:policy/kv@0.1.0": lyceum_plugin_sdk::kv,
            },
        });
    }

    #[doc(inline)]
    pub use __bindings::export;
    pub use __bindings::exports::lyceum::policy::files::{
        FileVerdict, Guest, Placement, UploadDone, UploadHead,
    };
}

/// Bindings of the `signaling-policy` world.
pub mod signaling {
    #[doc(hidden)]
    pub mod __bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "signaling-policy",
            pub_export_macro: true,
            default_bindings_module: "lyceum_plugin_sdk::signaling::__bindings",
            runtime_path: "lyceum_plugin_sdk::wit_bindgen::rt",
            with: {
                "lyceum:policy/types@0.1.0": lyceum_plugin_sdk::types,
                "lyceum:policy/log@0.1.0": lyceum_plugin_sdk::log,
                "lyceum:policy/config@0.1.0": lyceum_plugin_sdk::config,
                "lyceum:policy/kv@0.1.0": lyceum_plugin_sdk::kv,
            },
        });
    }

    #[doc(inline)]
    pub use __bindings::export;
    pub use __bindings::exports::lyceum::policy::signaling::{
        Guest, JoinRequest, JoinVerdict, SessionState, Signal, SignalKind, SignalVerdict,
    };
}

pub use chat::__bindings::lyceum::policy::{config, kv, log, types};
pub use types::{Context, Refusal, Role};

/// Shorthand for a [`Refusal`].
pub fn refusal(code: impl Into<String>, reason: impl Into<String>) -> Refusal {
    Refusal {
        code: code.into(),
        reason: reason.into(),
    }
}

/// Parses the plugin's configuration table into `T`.
///
/// The error is a sentence fit for [`log`]: a plugin usually logs it and falls back to its
/// defaults, or refuses every call so the operator notices.
#[cfg(feature = "serde")]
pub fn parse_config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    serde_json::from_str(&config::get_json()).map_err(|e| format!("invalid configuration: {e}"))
}

/// Writes a log line at `level`; see the `log` interface for what may be logged.
pub fn log_line(level: log::Level, message: &str) {
    log::log(level, message);
}

/// Counts one event against a fixed-window limit kept in [`kv`].
///
/// Returns whether the event is within `limit` events per window of `window_ms`
/// milliseconds, windows being aligned on multiples of `window_ms` since the epoch. `key`
/// identifies what is counted (say `"msg:" + actor id`); the window number is appended. The
/// counter is created with a lifetime of one window, so the store cleans up after itself.
pub fn fixed_window_allows(
    key: &str,
    limit: u64,
    window_ms: u64,
    now_ms: u64,
) -> Result<bool, kv::KvError> {
    let window_ms = window_ms.max(1);
    let window = now_ms / window_ms;
    let remaining = window_ms - now_ms % window_ms;
    let count = kv::incr(&format!("{key}:{window}"), 1, Some(remaining))?;
    Ok(count <= i64::try_from(limit).unwrap_or(i64::MAX))
}
