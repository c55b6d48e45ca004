//! The rules of the platform: who may do what, input validation, state transitions.
//! Transport layers (HTTP, sockets) call these and map `AppError` onto the wire.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod chat;
pub mod courses;
pub mod files;
pub mod ice;
pub mod memo;
pub mod paging;
pub mod plugins;
pub mod policy;
pub mod sessions;
pub mod signaling;
pub mod validate;

pub use access::Actor;
