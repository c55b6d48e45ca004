//! Chat, per the Chat and Socket.IO sections of the contract: course rooms and live-session
//! side chats over Socket.IO and REST, fan-out, presence, typing notices, idempotent resends,
//! edits and deletes, the moderation slot, limits, history paging, search, malformed input and
//! bursts.
//!
//! - `fanout`: who receives a message, right after connecting and in a burst.
//! - `membership`: outsiders, session side chats, and enrollments removed mid-chat.
//! - `typing`: typing notices.
//! - `presence`: online users across tabs, and the presence diffs rooms receive.
//! - `sending`: idempotent resends, `clientId` and content rules, the rate limit.
//! - `editing`: edits and deletes.
//! - `moderation`: the moderation plugin slot.
//! - `history`: paging a room's history under concurrent sends.
//! - `search`: message search.
//! - `malformed`: malformed and oversized socket payloads.
//! - `rest_errors`: the error codes of the REST endpoints.
//! - `attachments`: files attached to messages.
//! - `outage`: the database lost and found again under load (PostgreSQL).
//! - `capacity`: a full write queue, and memberships the send path remembers.
//! - `support`: what the sections share, starting with the cast most tests use.

#[path = "chat/attachments.rs"]
mod attachments;
#[path = "chat/capacity.rs"]
mod capacity;
#[path = "chat/editing.rs"]
mod editing;
#[path = "chat/fanout.rs"]
mod fanout;
#[path = "chat/history.rs"]
mod history;
#[path = "chat/malformed.rs"]
mod malformed;
#[path = "chat/membership.rs"]
mod membership;
#[path = "chat/moderation.rs"]
mod moderation;
#[path = "chat/outage.rs"]
mod outage;
#[path = "chat/presence.rs"]
mod presence;
#[path = "chat/rest_errors.rs"]
mod rest_errors;
#[path = "chat/search.rs"]
mod search;
#[path = "chat/sending.rs"]
mod sending;
#[path = "chat/support.rs"]
mod support;
#[path = "chat/typing.rs"]
mod typing;
