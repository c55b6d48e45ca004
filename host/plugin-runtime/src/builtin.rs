//! The default plugins, built from `plugins/` by this crate's build script and embedded so
//! the server works without any file beside it.

/// `builtin:chat-moderation`.
pub static CHAT_MODERATION: &[u8] = include_bytes!(env!("LYCEUM_COMPONENT_CHAT_MODERATION"));
/// `builtin:file-validation`.
pub static FILE_VALIDATION: &[u8] = include_bytes!(env!("LYCEUM_COMPONENT_FILE_VALIDATION"));
/// `builtin:signaling-policy`.
pub static SIGNALING_POLICY: &[u8] = include_bytes!(env!("LYCEUM_COMPONENT_SIGNALING_POLICY"));
