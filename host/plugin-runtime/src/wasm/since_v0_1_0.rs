//! Host side of `lyceum:policy@0.1.0` (`wit/since_v0.1.0`). A later contract version gets a
//! sibling module; plugins built against this one keep loading through this one.

use wasmtime::component::bindgen;

/// The `chat-moderation` world; it also owns the interfaces all worlds share.
pub mod chat {
    super::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "chat-moderation",
        // Arguments are lent to the guest straight from the caller's data: no copies of
        // message text or upload bytes on the way in.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// The `file-validation` world.
pub mod files {
    super::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "file-validation",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "lyceum:policy/types": super::chat::lyceum::policy::types,
            "lyceum:policy/log": super::chat::lyceum::policy::log,
            "lyceum:policy/config": super::chat::lyceum::policy::config,
            "lyceum:policy/kv": super::chat::lyceum::policy::kv,
        },
    });
}

/// The `signaling-policy` world.
pub mod signaling {
    super::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "signaling-policy",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "lyceum:policy/types": super::chat::lyceum::policy::types,
            "lyceum:policy/log": super::chat::lyceum::policy::log,
            "lyceum:policy/config": super::chat::lyceum::policy::config,
            "lyceum:policy/kv": super::chat::lyceum::policy::kv,
        },
    });
}

pub use chat::lyceum::policy::{config, kv, log, types};
