//! The embedded default: one SQLite file in WAL mode.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use uuid::Uuid;

use super::{rows::*, sql::impl_store, *};

pub struct SqliteStore {
    pool: SqlitePool,
    lock_path: Option<std::path::PathBuf>,
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;

    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            // WAL lets readers run beside the one writer; NORMAL sync is durable across
            // process crashes in WAL mode, which is the guarantee an embedded server needs.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Writers queue on the file lock instead of failing at once.
            .busy_timeout(Duration::from_secs(10));
        let filename = options.get_filename().to_path_buf();
        let in_memory =
            filename.as_os_str().is_empty() || filename == std::path::Path::new(":memory:");
        let lock_path = (!in_memory).then(|| filename.with_extension("migrate-lock"));
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Other(anyhow::anyhow!("creating {}: {e}", parent.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool, lock_path })
    }

    /// Applies the migrations under an exclusive file lock beside the database: sqlx locks
    /// PostgreSQL itself, but for SQLite two processes starting together (a server and a
    /// `lyceum user create`) would otherwise both try to create the schema.
    pub async fn migrate(&self) -> StoreResult<()> {
        let lock = match &self.lock_path {
            Some(path) => {
                let path = path.clone();
                let file =
                    tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                        let file = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(&path)?;
                        file.lock()?;
                        Ok(file)
                    })
                    .await
                    .map_err(|e| StoreError::Other(e.into()))?
                    .map_err(|e| {
                        StoreError::Other(anyhow::anyhow!("locking for migration: {e}"))
                    })?;
                Some(file)
            }
            None => None,
        };
        let result = sqlx::migrate!("../migrations/sqlite").run(&self.pool).await;
        drop(lock);
        result?;
        Ok(())
    }

    /// FTS5 over the external-content index kept by triggers; each term is quoted, so the
    /// user's text is never FTS5 syntax.
    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<Message>> {
        let matcher = query
            .terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ");
        let rows: Vec<Message> = sqlx::query_as(concat!(
            "SELECT m.id, m.room_id, m.sender_id, u.name AS sender_name, m.content, m.client_id,
                    m.reply_to, m.flagged, m.created_at, m.edited_at, m.deleted_at
             FROM chat_messages_fts
             JOIN chat_messages m ON m.seq = chat_messages_fts.rowid
             JOIN users u ON u.id = m.sender_id
             WHERE chat_messages_fts MATCH $1 AND m.deleted_at IS NULL
               AND ($2 IS NULL OR m.room_id = $2)
               AND ($3 IS NULL OR m.room_id IN (",
            super::sql::readable_rooms!(),
            "))
             ORDER BY bm25(chat_messages_fts), m.id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(matcher)
        .bind(query.room)
        .bind(query.reader)
        .bind(i64::from(query.limit))
        .bind(i64::from(query.offset))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// A write transaction that takes the database's write lock up front. A deferred
    /// transaction whose write fires a trigger (the FTS index) can meet SQLITE_BUSY at once,
    /// without waiting for the busy timeout; `BEGIN IMMEDIATE` waits its turn instead.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl_store!(SqliteStore, sqlx::Sqlite);
