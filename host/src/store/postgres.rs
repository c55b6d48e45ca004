//! PostgreSQL, for production and for several nodes sharing one database.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use uuid::Uuid;

use super::{rows::*, sql::impl_store, *};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BACKEND: Backend = Backend::Postgres;

    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(anyhow::anyhow!("invalid PostgreSQL URL: {e}")))?
            .application_name("lyceum");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// `tsvector` with a GIN index; `plainto_tsquery` treats the text as plain words, so
    /// the user's input is never tsquery syntax.
    async fn search(&self, query: &SearchQuery) -> StoreResult<Vec<Message>> {
        let text = query.terms.join(" ");
        let rows: Vec<Message> = sqlx::query_as(concat!(
            "SELECT m.id, m.room_id, m.sender_id, u.name AS sender_name, m.content, m.client_id,
                    m.reply_to, m.flagged, m.created_at, m.edited_at, m.deleted_at
             FROM chat_messages m JOIN users u ON u.id = m.sender_id
             WHERE m.search @@ plainto_tsquery('simple', $1) AND m.deleted_at IS NULL
               AND ($2::uuid IS NULL OR m.room_id = $2)
               AND ($3::uuid IS NULL OR m.room_id IN (",
            super::sql::readable_rooms!(),
            "))
             ORDER BY ts_rank(m.search, plainto_tsquery('simple', $1)) DESC, m.id DESC
             LIMIT $4 OFFSET $5"
        ))
        .bind(text)
        .bind(query.room)
        .bind(query.reader)
        .bind(i64::from(query.limit))
        .bind(i64::from(query.offset))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(PgStore, sqlx::Postgres);
