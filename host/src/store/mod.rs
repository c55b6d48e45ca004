//! Persistence: one `Store` trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (production), chosen once at start-up from the database URL.
//!
//! Both implementations share their SQL (see `sql.rs`); the dialects differ only in the
//! migrations and in full-text search. Services hold an `Arc<dyn Store>` and never see sqlx.

mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::*;

pub use self::{postgres::PgStore, sqlite::SqliteStore};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; the text says what already exists.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached (pool timeout, lost connection, shutdown).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::RowNotFound => StoreError::NotFound,
            // A protocol error is a connection that broke mid-exchange (seen when the network
            // cuts while a connection is being opened), not a mistake of ours.
            E::PoolTimedOut
            | E::PoolClosed
            | E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            E::Database(db) => {
                if db.is_unique_violation() {
                    return StoreError::Conflict("already exists".into());
                }
                if db.is_foreign_key_violation() {
                    return StoreError::NotFound;
                }
                // PostgreSQL: class 08 is connection exceptions, 57P0x an administrator or
                // crash shutdown. SQLite: BUSY/LOCKED after the busy timeout.
                let code = db.code().unwrap_or_default();
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "5"
                    || code == "6"
                    || code == "517"
                {
                    return StoreError::Unavailable(db.message().to_owned());
                }
                StoreError::Other(anyhow::Error::new(error))
            }
            _ => StoreError::Other(anyhow::Error::new(error)),
        }
    }
}

/// Maps a unique violation to a conflict with a message for the client.
pub(crate) fn conflict(message: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| match StoreError::from(error) {
        StoreError::Conflict(_) => StoreError::Conflict(message.into()),
        other => other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a page starts: after this id, in the list's own order.
pub type After<T> = Option<T>;

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub family_id: TokenFamilyId,
    pub user_id: UserId,
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The outcome of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is now used and the new one stored.
    Rotated,
    /// The old token had already been used or revoked: the caller must treat it as reuse.
    AlreadyUsed,
}

/// A change made to an account outside the API, as every running server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    /// Increases with each change; a reader remembers the ones it has acted on.
    pub seq: i64,
    pub user: UserId,
    /// The role after the change; `None` when the account was deleted.
    pub role: Option<Role>,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// A round trip to the database, for `/ready`.
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_user(&self, user: &User, password_hash: &str) -> StoreResult<()>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<UserCredentials>>;
    /// Gives `user` a new role and records the change, atomically; false if there is no such
    /// user.
    async fn change_role(&self, user: UserId, role: Role, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Deletes `user` with everything that is theirs (sessions, enrollments, files' rows,
    /// messages) and records the change, atomically; false if there is no such user. A user
    /// who teaches courses is a conflict: the courses would be left without an instructor.
    async fn delete_user(&self, user: UserId, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Changes recorded after `since`, oldest first, at most `limit`.
    async fn account_changes(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<AccountChange>>;
    async fn prune_account_changes(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> StoreResult<()>;
    async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>>;
    /// Marks `old` used and stores `new`, atomically; `AlreadyUsed` if `old` was used or
    /// revoked meanwhile (so two concurrent refreshes cannot both succeed).
    async fn rotate_refresh_token(&self, old: Uuid, new: &NewRefreshToken)
    -> StoreResult<Rotation>;
    /// Revokes every token of a family; returns how many were still live.
    async fn revoke_token_family(&self, family: TokenFamilyId) -> StoreResult<u64>;

    async fn insert_course(&self, course: &Course) -> StoreResult<()>;
    async fn course(&self, id: CourseId) -> StoreResult<Option<Course>>;
    /// Newest first. With `member`, only courses that user teaches or is enrolled in.
    async fn list_courses(
        &self,
        member: Option<UserId>,
        after: After<CourseId>,
        limit: u32,
    ) -> StoreResult<Vec<Course>>;
    async fn update_course(
        &self,
        id: CourseId,
        title: &str,
        description: &str,
    ) -> StoreResult<Option<Course>>;
    async fn delete_course(&self, id: CourseId) -> StoreResult<bool>;

    async fn insert_enrollment(&self, enrollment: &Enrollment) -> StoreResult<()>;
    async fn is_enrolled(&self, course: CourseId, user: UserId) -> StoreResult<bool>;
    /// Oldest first (the order people enrolled in).
    async fn list_enrollments(
        &self,
        course: CourseId,
        after: After<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, Enrollment)>>;
    async fn delete_enrollment(&self, course: CourseId, user: UserId) -> StoreResult<bool>;

    async fn insert_session(&self, session: &LiveSession) -> StoreResult<()>;
    async fn session(&self, id: SessionId) -> StoreResult<Option<LiveSession>>;
    /// Newest first.
    async fn list_sessions(
        &self,
        course: CourseId,
        after: After<SessionId>,
        limit: u32,
    ) -> StoreResult<Vec<LiveSession>>;
    /// `scheduled` → `live`; `None` when the session is not scheduled.
    async fn start_session(
        &self,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<LiveSession>>;
    /// `scheduled` or `live` → `ended`, closing every open participation at the same time;
    /// `None` when the session had already ended.
    async fn end_session(
        &self,
        id: SessionId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<LiveSession>>;

    async fn insert_participant(
        &self,
        id: Uuid,
        session: SessionId,
        user: UserId,
        socket_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Sets `leftAt` on the open participation of that socket, if any.
    async fn close_participant(
        &self,
        session: SessionId,
        socket_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn count_open_participants(&self, session: SessionId) -> StoreResult<u32>;
    /// Oldest join first, one row per join.
    async fn list_participants(
        &self,
        session: SessionId,
        after: After<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<(Uuid, Participant)>>;

    /// Which course or session a chat room belongs to.
    async fn room_owner(&self, room: RoomId) -> StoreResult<Option<RoomOwner>>;

    /// Stores a batch of messages and their attachments in one transaction (group commit),
    /// one outcome per message in order. A message whose `(sender, clientId)` already names a
    /// message (stored earlier, or earlier in the same batch) writes nothing and reports that
    /// message's id. All or nothing: on error no message of the batch was stored.
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>>;
    async fn message(&self, id: MessageId) -> StoreResult<Option<Message>>;
    async fn message_by_client_id(
        &self,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// A room's history, newest first, strictly older than `before`.
    async fn messages(
        &self,
        room: RoomId,
        before: After<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
    /// The attachments of these messages, in their order within each message.
    async fn attachments(&self, messages: &[MessageId]) -> StoreResult<Vec<Attachment>>;
    /// Replaces the content of a message that is not deleted.
    async fn edit_message(
        &self,
        id: MessageId,
        content: &str,
        flagged: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Message>>;
    /// Turns a message into a tombstone (content empty, `deletedAt` set, attachments and
    /// search entry gone); false if it was already one.
    async fn delete_message(&self, id: MessageId, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Full-text search, best match first.
    async fn search_messages(&self, query: &SearchQuery) -> StoreResult<Vec<Message>>;

    async fn file(&self, id: FileId) -> StoreResult<Option<FileRecord>>;
    async fn file_by_name(&self, folder: Folder, filename: &str)
    -> StoreResult<Option<FileRecord>>;
    /// An owner's files, newest first.
    async fn list_files(
        &self,
        owner: UserId,
        after: After<FileId>,
        limit: u32,
    ) -> StoreResult<Vec<FileRecord>>;
    /// The bytes an owner's files take.
    async fn used_bytes(&self, owner: UserId) -> StoreResult<u64>;
    /// Records `file` unless its owner's files would then pass `quota` bytes, and runs
    /// `publish` (which makes the bytes visible) inside the same transaction: the row is
    /// committed only once the bytes are in place. Concurrent inserts by one owner are
    /// serialised, so the quota holds across connections and nodes.
    async fn insert_file(
        &self,
        file: &FileRecord,
        quota: u64,
        publish: Publish<'_>,
    ) -> StoreResult<FileInsert>;
    /// Deletes the row; the caller removes the bytes after the commit.
    async fn delete_file(&self, id: FileId) -> StoreResult<Option<FileRecord>>;
    /// Which of `ids` name a file row.
    async fn existing_files(&self, ids: &[FileId]) -> StoreResult<Vec<FileId>>;

    /// Records an uploaded module; false (and nothing changed) when its sha256 is already known.
    async fn insert_plugin_module(&self, module: &PluginModule) -> StoreResult<bool>;
    async fn plugin_module(&self, sha256: &str) -> StoreResult<Option<PluginModule>>;
    /// Newest first.
    async fn plugin_modules(&self) -> StoreResult<Vec<PluginModule>>;
    /// Records a revision under the slot's next number (1 for its first). Concurrent writers,
    /// on one node or several, get distinct consecutive numbers. A `restored_from` that names
    /// no revision of the slot is `NotFound`.
    async fn insert_plugin_revision(
        &self,
        revision: &NewPluginRevision,
        at: DateTime<Utc>,
    ) -> StoreResult<PluginRevision>;
    async fn plugin_revision(
        &self,
        slot: &str,
        revision: i64,
    ) -> StoreResult<Option<PluginRevision>>;
    /// The slot's active chain, as last recorded.
    async fn latest_plugin_revision(&self, slot: &str) -> StoreResult<Option<PluginRevision>>;
    /// The slot's newest revision that came from `source` (to tell whether plugins.toml
    /// changed since it was last applied).
    async fn latest_plugin_revision_from(
        &self,
        slot: &str,
        source: &str,
    ) -> StoreResult<Option<PluginRevision>>;
    /// Newest first, strictly below revision `before`.
    async fn plugin_revisions(
        &self,
        slot: &str,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<PluginRevision>>;
    /// Every distinct module sha256 that some revision's chain names, sorted; built-ins are
    /// left out. A module in this list may be rolled back to, so its bytes must stay.
    async fn referenced_plugin_modules(&self) -> StoreResult<Vec<String>>;
    /// Stores a batch of audited decisions, all or nothing. An id already stored is skipped,
    /// so a batch retried after an uncertain commit does not duplicate rows.
    async fn insert_plugin_decisions(&self, batch: &[PluginDecision]) -> StoreResult<()>;
    /// Newest first (by id), at most `query.limit` rows.
    async fn plugin_decisions(&self, query: &DecisionQuery) -> StoreResult<Vec<PluginDecision>>;
    /// Deletes the decisions recorded before `before`; returns how many.
    async fn prune_plugin_decisions(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// Makes an upload's bytes visible; run by [`Store::insert_file`] inside its transaction.
pub type Publish<'a> = futures::future::BoxFuture<'a, Result<(), crate::storage::StorageError>>;

#[derive(Debug)]
pub enum FileInsert {
    Inserted,
    /// Nothing was written: the owner already uses `used` bytes.
    OverQuota {
        used: u64,
    },
    /// Publishing failed; nothing was written.
    PublishFailed(crate::storage::StorageError),
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub content: String,
    pub client_id: Option<String>,
    pub reply_to: Option<MessageId>,
    pub flagged: bool,
    pub created_at: DateTime<Utc>,
    pub attachments: Vec<FileId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    /// The `(sender, clientId)` pair was taken by this earlier message.
    Existing(MessageId),
}

/// A search over message content. `terms` are plain words (the store quotes them for its
/// dialect, so user input can never be a query syntax error).
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub terms: Vec<String>,
    /// Only this room.
    pub room: Option<RoomId>,
    /// Only rooms this user may read; `None` for admins, who read every room.
    pub reader: Option<UserId>,
    pub offset: u32,
    pub limit: u32,
}

/// Opens the database named by `url`, creating an SQLite file if needed, and applies the
/// migrations.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url, max_connections).await?;
        store.migrate().await?;
        Arc::new(store)
    } else {
        let store = PgStore::connect(url, max_connections).await?;
        store.migrate().await?;
        Arc::new(store)
    };
    Ok(store)
}

/// Rows per multi-row INSERT: 8 parameters a message keeps a statement far below either
/// database's parameter limit.
pub(crate) const MESSAGE_ROWS_PER_STATEMENT: usize = 256;

/// Rows per multi-row INSERT of decisions: 15 parameters a row, 3,840 a statement, below
/// SQLite's 32,766 and PostgreSQL's 65,535.
pub(crate) const DECISION_ROWS_PER_STATEMENT: usize = 256;

/// How often a revision insert is tried. Each lost attempt means another writer's revision
/// of the same slot was stored, so a writer only runs out after this many concurrent
/// changes of one slot, far beyond what admins and plugins.toml reloads produce.
pub(crate) const REVISION_INSERT_ATTEMPTS: usize = 32;

/// How long a request waits for a pooled connection before answering UNAVAILABLE.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}
