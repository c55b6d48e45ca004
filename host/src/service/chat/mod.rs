//! Course chat: sending, editing, deleting, history and search, with the moderation slot
//! consulted on every send and edit.
//!
//! REST and Socket.IO call the same methods, so a message sent either way is validated,
//! moderated, stored and broadcast identically. A broadcast happens only after the database
//! committed the change: nothing a client sees can later vanish.

mod writer;

use std::sync::Arc;

use lyceum_plugin_runtime::{
    MessageEvent, ModerationDecision, ModerationInput, PolicyContext, PolicyEngine,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

pub use self::writer::WriterLimits;
use self::writer::{MessageWriter, WriteError};
use super::{
    Actor,
    access::CourseAccess,
    files::{AttachmentView, FileService},
    memo::Memo,
    paging::{self, PageRequest},
    policy,
};
pub use crate::domain::Message;
use crate::{
    domain::{Course, FileId, FileRecord, MessageId, Page, RoomId, RoomOwner, UserId, now},
    error::{AppError, AppResult},
    ratelimit::TokenBuckets,
    store::{Inserted, NewMessage, SearchQuery, Store},
    telemetry::RequestId,
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendInput {
    pub content: String,
    /// The sender's own id for this message (at most 64 characters): a resend with the same
    /// id returns the first message instead of creating another.
    pub client_id: Option<String>,
    pub reply_to: Option<MessageId>,
    /// Ids of files the sender may read (at most 10).
    pub attachments: Option<Vec<FileId>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EditInput {
    pub content: String,
}

/// The result of a send: the stored message, and whether this call created it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// Where chat changes are announced (the Socket.IO gateway). Awaited in order, so the
/// room sees changes in the order they were committed by each caller.
#[async_trait::async_trait]
pub trait ChatBroadcast: Send + Sync + 'static {
    async fn emit_to_room(&self, room: RoomId, event: &'static str, payload: serde_json::Value);
}

pub const CLIENT_ID_MAX: usize = 64;
pub const ATTACHMENTS_MAX: usize = 10;
pub const QUERY_MAX: usize = 200;

pub struct ChatLimits {
    pub max_chars: usize,
    pub rate_per_second: f64,
    pub burst: u32,
    pub writer: WriterLimits,
}

/// How long a refused send is told to wait when the writer is over capacity.
const OVERLOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Remembered `(sender, clientId)` pairs of recent sends, so that a resend after a lost
/// acknowledgement is answered without running moderation (or its rate limits) again.
const RECENT_SENDS: usize = 20_000;

pub struct ChatService {
    store: Arc<dyn Store>,
    access: CourseAccess,
    policy: Arc<PolicyEngine>,
    /// Who may attach which file, and how attachments look.
    files: Arc<FileService>,
    buckets: TokenBuckets,
    limits: ChatLimits,
    writer: MessageWriter,
    /// Which course or session each room belongs to; that never changes.
    rooms: Memo<RoomId, RoomOwner>,
    /// Senders' names; the contract has no way to change one.
    names: Memo<UserId, Arc<str>>,
    recent: Memo<(UserId, Arc<str>), MessageId>,
    broadcast: std::sync::RwLock<Option<Arc<dyn ChatBroadcast>>>,
}

impl ChatService {
    /// Starts the message writer, so it must be called within the runtime.
    pub fn new(
        store: Arc<dyn Store>,
        access: CourseAccess,
        policy: Arc<PolicyEngine>,
        files: Arc<FileService>,
        limits: ChatLimits,
    ) -> Self {
        let forever = std::time::Duration::from_secs(u64::MAX / 4);
        ChatService {
            access,
            writer: MessageWriter::start(store.clone(), limits.writer),
            store,
            policy,
            files,
            buckets: TokenBuckets::new(limits.rate_per_second, limits.burst),
            limits,
            rooms: Memo::new(forever, 100_000),
            names: Memo::new(forever, 100_000),
            recent: Memo::new(std::time::Duration::from_secs(600), RECENT_SENDS),
            broadcast: std::sync::RwLock::new(None),
        }
    }

    /// Messages waiting to be stored now.
    pub fn write_queue_len(&self) -> usize {
        self.writer.queued()
    }

    /// Connects the gateway once it exists (it is built after the services).
    pub fn set_broadcast(&self, broadcast: Arc<dyn ChatBroadcast>) {
        *self.broadcast.write().unwrap() = Some(broadcast);
    }

    /// Disconnects the gateway at shutdown. The gateway holds this service in its state, so
    /// without this the two would keep each other (and the database pool) alive.
    pub fn detach_broadcast(&self) {
        self.broadcast.write().unwrap().take();
    }

    async fn emit(&self, room: RoomId, event: &'static str, payload: serde_json::Value) {
        let broadcast = self.broadcast.read().unwrap().clone();
        if let Some(b) = broadcast {
            b.emit_to_room(room, event, payload).await;
        }
    }

    /// The course a room belongs to, if the actor may read and write in it.
    /// Unknown rooms are NOT_FOUND; rooms of courses the actor is not a member of FORBIDDEN.
    pub async fn room_access(&self, actor: &Actor, room: RoomId) -> AppResult<(RoomOwner, Course)> {
        let room_gone = || AppError::NotFound("room not found".into());
        let owner = match self.rooms.get(&room) {
            Some(owner) => owner,
            None => {
                let ticket = self.rooms.ticket();
                let owner = self.store.room_owner(room).await?.ok_or_else(room_gone)?;
                self.rooms.store(room, owner, ticket);
                owner
            }
        };
        match self.access.member_of(actor, owner.course_id()).await {
            Ok(course) => Ok((owner, course)),
            // The course was deleted, and its rooms with it.
            Err(AppError::NotFound(_)) => {
                self.rooms.invalidate(&room);
                Err(room_gone())
            }
            Err(other) => Err(other),
        }
    }

    pub async fn sender_name(&self, user: UserId) -> AppResult<Arc<str>> {
        if let Some(name) = self.names.get(&user) {
            return Ok(name);
        }
        let ticket = self.names.ticket();
        let user = self
            .store
            .user(user)
            .await?
            .ok_or_else(|| AppError::Unauthorized("the account no longer exists".into()))?;
        let name: Arc<str> = user.name.into();
        self.names.store(user.id, name.clone(), ticket);
        Ok(name)
    }

    /// Sends a message on behalf of `actor`; `request_id` is what the moderation plugins are
    /// told the request is.
    pub async fn send(
        &self,
        actor: &Actor,
        request_id: &RequestId,
        room: RoomId,
        input: SendInput,
    ) -> AppResult<Sent> {
        let content = validate_content(&input.content, self.limits.max_chars)?;
        let client_id = match input.client_id {
            Some(id) if id.trim().is_empty() => {
                return Err(AppError::validation(
                    "clientId",
                    "clientId must not be empty",
                ));
            }
            Some(id) if id.chars().count() > CLIENT_ID_MAX => {
                return Err(AppError::validation(
                    "clientId",
                    format!("clientId must be at most {CLIENT_ID_MAX} characters"),
                ));
            }
            other => other,
        };
        let attachments = input.attachments.unwrap_or_default();
        if attachments.len() > ATTACHMENTS_MAX {
            return Err(AppError::validation(
                "attachments",
                format!("at most {ATTACHMENTS_MAX} attachments"),
            ));
        }
        let (owner, course) = self.room_access(actor, room).await?;

        // A resend after a lost ack: answer with the first message, change nothing. Recent
        // sends are remembered here; older ones are found by the insert itself (below).
        let client_key = client_id
            .as_deref()
            .map(|id| (actor.id, Arc::<str>::from(id)));
        if let Some(key) = &client_key
            && let Some(first) = self.recent.get(key)
        {
            return self.resent(first).await;
        }

        if let Err(retry_after) = self.buckets.take(&actor.id.to_string()) {
            // A resend is answered even when the sender is over its rate.
            if let Some(client_id) = &client_id
                && let Some(first) = self.store.message_by_client_id(actor.id, client_id).await?
            {
                return self.resent(first.id).await;
            }
            return Err(AppError::RateLimited { retry_after });
        }

        if let Some(reply_to) = input.reply_to {
            match self.store.message(reply_to).await? {
                Some(m) if m.room_id == room => {}
                _ => {
                    return Err(AppError::validation(
                        "replyTo",
                        "replyTo is not a message of this room",
                    ));
                }
            }
        }
        let mut files: Vec<FileRecord> = Vec::with_capacity(attachments.len());
        for file_id in attachments {
            if files.iter().any(|f| f.id == file_id) {
                continue;
            }
            files.push(self.readable_file(actor, file_id).await?);
        }

        let ctx = self.context(request_id, actor, &course, owner, room);
        let moderation = ModerationInput {
            room_id: room.to_string(),
            message_id: None,
            event: MessageEvent::Send,
            content: content.clone(),
            reply_to: input.reply_to.map(|r| r.to_string()),
            attachment_count: files.len() as u32,
        };
        let (content, flagged) = self.moderate(&ctx, &moderation).await?;
        let sender_name = self.sender_name(actor.id).await?;

        let message = NewMessage {
            id: MessageId::new(),
            room_id: room,
            sender_id: actor.id,
            content,
            client_id,
            reply_to: input.reply_to,
            flagged,
            created_at: now(),
            attachments: files.iter().map(|f| f.id).collect(),
        };
        let outcome = self
            .writer
            .write(message.clone())
            .await
            .map_err(|error| match error {
                WriteError::Overloaded => {
                    metrics::counter!("lyceum_chat_messages_total", "outcome" => "refused")
                        .increment(1);
                    AppError::RateLimited {
                        retry_after: OVERLOAD_RETRY,
                    }
                }
                WriteError::Store(error) => error.into(),
            })?;
        if let Inserted::Existing(first) = outcome {
            return self.resent(first).await;
        }
        if let Some(key) = client_key {
            self.recent.store(key, message.id, self.recent.ticket());
        }
        // Everything the message shows is known here: no read-back after the commit.
        let stored = Message {
            id: message.id,
            room_id: room,
            sender_id: actor.id,
            sender_name: sender_name.to_string(),
            content: message.content,
            client_id: message.client_id,
            reply_to: message.reply_to,
            attachments: files
                .iter()
                .map(|f| AttachmentView::File(self.files.links().view(f)))
                .collect(),
            flagged,
            created_at: message.created_at,
            edited_at: None,
            deleted_at: None,
        };
        metrics::counter!("lyceum_chat_messages_total", "outcome" => if flagged { "flagged" } else { "stored" })
            .increment(1);
        self.emit(room, "chat:new_message", json!(stored)).await;
        Ok(Sent {
            message: stored,
            created: true,
        })
    }

    /// The answer to a resend: the first message as it is now.
    async fn resent(&self, first: MessageId) -> AppResult<Sent> {
        let message = self.store.message(first).await?.ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("message {first} vanished after insert"))
        })?;
        Ok(Sent {
            message: self.view(message).await?,
            created: false,
        })
    }

    pub async fn edit(
        &self,
        actor: &Actor,
        request_id: &RequestId,
        id: MessageId,
        input: EditInput,
    ) -> AppResult<Message> {
        let content = validate_content(&input.content, self.limits.max_chars)?;
        let (message, owner, course) = self.readable_message(actor, id).await?;
        if message.sender_id != actor.id {
            return Err(AppError::Forbidden(
                "only the sender may edit a message".into(),
            ));
        }
        if message.deleted_at.is_some() {
            return Err(AppError::Conflict("the message was deleted".into()));
        }
        let ctx = self.context(request_id, actor, &course, owner, message.room_id);
        let moderation = ModerationInput {
            room_id: message.room_id.to_string(),
            message_id: Some(id.to_string()),
            event: MessageEvent::Edit,
            content,
            reply_to: message.reply_to.map(|r| r.to_string()),
            attachment_count: 0,
        };
        let (content, flagged) = self.moderate(&ctx, &moderation).await?;
        let updated = self
            .store
            .edit_message(id, &content, message.flagged || flagged, now())
            .await?
            .ok_or_else(|| AppError::Conflict("the message was deleted".into()))?;
        let view = self.view(updated).await?;
        self.emit(view.room_id, "chat:message_updated", json!(view))
            .await;
        Ok(view)
    }

    pub async fn delete(&self, actor: &Actor, id: MessageId) -> AppResult<RoomId> {
        let (message, _, course) = self.readable_message(actor, id).await?;
        if message.sender_id != actor.id && !actor.manages(&course) {
            return Err(AppError::Forbidden(
                "only the sender or the course's instructor may delete a message".into(),
            ));
        }
        if self.store.delete_message(id, now()).await? {
            self.emit(
                message.room_id,
                "chat:message_deleted",
                json!({ "roomId": message.room_id, "messageId": id }),
            )
            .await;
        }
        Ok(message.room_id)
    }

    /// Newest first; the cursor is the id of the oldest message of the page.
    pub async fn history(
        &self,
        actor: &Actor,
        room: RoomId,
        before: Option<MessageId>,
        limit: u32,
    ) -> AppResult<Page<Message>> {
        self.room_access(actor, room).await?;
        let page = PageRequest { after: None, limit };
        let rows = self.store.messages(room, before, page.fetch()).await?;
        let page = paging::cut(rows, limit, |m| m.id.to_string());
        Ok(Page {
            items: self.views(page.items).await?,
            next_cursor: page.next_cursor,
        })
    }

    /// Ranked full-text search over what the caller may read.
    pub async fn search(
        &self,
        actor: &Actor,
        text: &str,
        room: Option<RoomId>,
        offset: u32,
        limit: u32,
    ) -> AppResult<Page<Message>> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AppError::validation("q", "q must not be empty"));
        }
        if text.chars().count() > QUERY_MAX {
            return Err(AppError::validation(
                "q",
                format!("q must be at most {QUERY_MAX} characters"),
            ));
        }
        if let Some(room) = room {
            self.room_access(actor, room).await?;
        }
        let terms = search_terms(text);
        let rows = self
            .store
            .search_messages(&SearchQuery {
                terms,
                room,
                reader: (!actor.is_admin()).then_some(actor.id),
                offset,
                limit: limit + 1,
            })
            .await?;
        let page = paging::cut(rows, limit, |_| (offset + limit).to_string());
        Ok(Page {
            items: self.views(page.items).await?,
            next_cursor: page.next_cursor,
        })
    }

    async fn readable_message(
        &self,
        actor: &Actor,
        id: MessageId,
    ) -> AppResult<(Message, RoomOwner, Course)> {
        let message = self
            .store
            .message(id)
            .await?
            .ok_or_else(|| AppError::NotFound("message not found".into()))?;
        match self.room_access(actor, message.room_id).await {
            Ok((owner, course)) => Ok((message, owner, course)),
            // Messages of rooms the caller cannot read do not exist for them.
            Err(AppError::Forbidden(_)) | Err(AppError::NotFound(_)) => {
                Err(AppError::NotFound("message not found".into()))
            }
            Err(other) => Err(other),
        }
    }

    async fn readable_file(&self, actor: &Actor, id: FileId) -> AppResult<FileRecord> {
        match self.files.readable(actor, id).await {
            Ok(file) => Ok(file),
            Err(AppError::NotFound(_)) => {
                Err(AppError::NotFound(format!("attachment {id} not found")))
            }
            Err(other) => Err(other),
        }
    }

    fn context(
        &self,
        request_id: &RequestId,
        actor: &Actor,
        course: &Course,
        owner: RoomOwner,
        room: RoomId,
    ) -> PolicyContext {
        let mut ctx = policy::context(request_id, actor, course);
        ctx.room_id = Some(room.to_string());
        if let RoomOwner::Session { session, .. } = owner {
            ctx.session_id = Some(session.to_string());
        }
        ctx
    }

    /// Runs the moderation chain: the text to store and whether to flag it.
    async fn moderate(
        &self,
        ctx: &PolicyContext,
        input: &ModerationInput,
    ) -> AppResult<(String, bool)> {
        match self.policy.moderate(ctx, input).await {
            Ok(ModerationDecision::Allow { content, flags }) => {
                if !flags.is_empty() {
                    // The reasons are for the course's staff; the content itself is never logged.
                    tracing::info!(room = %input.room_id, reasons = ?flags, "chat message flagged by policy");
                }
                Ok((
                    content.unwrap_or_else(|| input.content.clone()),
                    !flags.is_empty(),
                ))
            }
            Ok(ModerationDecision::Reject(refusal)) => Err(policy::refused(refusal)),
            Err(failure) => Err(policy::unavailable(failure)),
        }
    }

    async fn view(&self, message: Message) -> AppResult<Message> {
        Ok(self.views(vec![message]).await?.remove(0))
    }

    /// Adds the attachments (with freshly signed links) to messages read from the store.
    async fn views(&self, mut messages: Vec<Message>) -> AppResult<Vec<Message>> {
        let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
        let attachments = self.store.attachments(&ids).await?;
        for message in &mut messages {
            message.attachments = attachments
                .iter()
                .filter(|a| a.message_id == message.id)
                .map(|a| self.files.links().attachment(a))
                .collect();
        }
        Ok(messages)
    }
}

fn validate_content(content: &str, max: usize) -> AppResult<String> {
    if content.trim().is_empty() {
        return Err(AppError::validation("content", "content must not be empty"));
    }
    let chars = content.chars().count();
    if chars > max {
        return Err(AppError::validation(
            "content",
            format!("content must be at most {max} characters (it has {chars})"),
        ));
    }
    if content
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(AppError::validation(
            "content",
            "content contains control characters",
        ));
    }
    Ok(content.to_owned())
}

/// Words of a search query: runs of letters and digits. Punctuation and query operators of
/// either database are dropped, so no input is a syntax error.
pub fn search_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(16)
        .map(|t| t.to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_drop_operators_and_punctuation() {
        assert_eq!(
            search_terms("NEAR(\"a\" OR b*) -c"),
            vec!["near", "a", "or", "b", "c"]
        );
        assert_eq!(search_terms("Größe über"), vec!["größe", "über"]);
        assert!(search_terms("\"*():^").is_empty());
    }

    #[test]
    fn content_is_counted_in_characters() {
        assert!(validate_content(&"é".repeat(5), 5).is_ok());
        assert!(validate_content(&"é".repeat(6), 5).is_err());
        assert!(validate_content("  \n ", 5).is_err());
    }
}
