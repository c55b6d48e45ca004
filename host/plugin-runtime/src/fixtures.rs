//! Paths of the modules built from `plugins/` besides the defaults: the template, the hostile
//! fixtures and the Extism modules. For tests (here and in the server's own) and benchmarks; the files
//! exist on the machine that built this crate.

/// The plugin template: rejects messages containing its configured `blocked` phrases.
pub const TEMPLATE: &str = env!("LYCEUM_COMPONENT_TEMPLATE");
/// Loops forever when a message, file name, session id or signal payload contains `loop`,
/// allows anything else; exports all three policy interfaces, so it fits every slot.
pub const INFINITE_LOOP: &str = env!("LYCEUM_COMPONENT_INFINITE_LOOP");
/// Chat moderation that allocates without bound on messages containing `bomb`.
pub const MEMORY_BOMB: &str = env!("LYCEUM_COMPONENT_MEMORY_BOMB");
/// Panics when a message, file name, session id or signal payload contains `panic`, allows
/// anything else; exports all three policy interfaces, so it fits every slot.
pub const PANIC: &str = env!("LYCEUM_COMPONENT_PANIC");
/// Chat moderation that imports `wasi:filesystem` interfaces: must be refused at load.
pub const WASI_FILESYSTEM: &str = env!("LYCEUM_COMPONENT_WASI_FILESYSTEM");
/// A valid component exporting a world of its own: must be refused at load.
pub const WRONG_WORLD: &str = env!("LYCEUM_COMPONENT_WRONG_WORLD");
/// Chat moderation that spins `iterations` (config, default 2,000,000) rounds, then allows.
pub const SLOW: &str = env!("LYCEUM_COMPONENT_SLOW");
/// The sample Extism plugin (`plugins/extism/sample`): chat moderation rejecting its
/// configured `blocked` phrases, like the component template.
pub const EXTISM_SAMPLE: &str = env!("LYCEUM_MODULE_EXTISM_SAMPLE");
/// An Extism module for every slot that loops on `loop`, allocates without bound on `bomb`,
/// panics on `panic`, returns an error on `error`, and on `count` increments a key-value
/// counter and rewrites the content (or payload) to its value; allows anything else.
pub const EXTISM_HOSTILE: &str = env!("LYCEUM_MODULE_EXTISM_HOSTILE");
