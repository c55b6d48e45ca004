//! Resumable uploads (the tus 1.0 protocol's model): an upload is created with its length,
//! then filled by appends at the offset the server confirms, across as many requests and
//! reconnections as the client needs. Each one is an ordinary [`Upload`] kept open between
//! requests, so it passes the same policy checks, caps and quota as a one-shot upload.
//!
//! Open uploads live in this process (their hash state cannot be resumed elsewhere): a
//! client of a multi-node deployment must reach the node that created its upload, and an
//! upload left idle for [`IDLE_LIMIT`] is discarded.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Bytes;
use dashmap::DashMap;
use futures::{Stream, StreamExt};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{FileService, FileView, Upload, UploadRequest};
use crate::{
    domain::UserId,
    error::{AppError, AppResult},
    service::Actor,
    telemetry::RequestId,
};

/// How long an unfinished upload waits for its next append.
pub const IDLE_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Where an upload stands.
#[derive(Debug, Clone)]
pub struct Progress {
    pub offset: u64,
    pub length: u64,
    /// The file, once the last byte has arrived and it was accepted.
    pub file: Option<FileView>,
}

/// The owner sits outside the lock so that a busy upload can still be told apart from
/// someone else's.
struct Slot {
    owner: UserId,
    entry: Mutex<Entry>,
}

struct Entry {
    length: u64,
    /// `None` once finished.
    upload: Option<Upload>,
    file: Option<FileView>,
    touched: Instant,
}

#[derive(Default)]
pub struct ResumableUploads {
    open: DashMap<Uuid, Arc<Slot>>,
}

impl ResumableUploads {
    /// Opens an upload of `request.declared_size` bytes (required). Its plugin calls, made by
    /// later appends, carry `request_id`, the creating request's.
    pub async fn create(
        &self,
        files: &Arc<FileService>,
        actor: &Actor,
        request_id: &RequestId,
        request: UploadRequest,
    ) -> AppResult<Uuid> {
        let length = request
            .declared_size
            .ok_or_else(|| AppError::validation("Upload-Length", "the length is required"))?;
        let upload = files.begin_upload(actor, request_id, request).await?;
        let id = Uuid::now_v7();
        self.open.insert(
            id,
            Arc::new(Slot {
                owner: actor.id,
                entry: Mutex::new(Entry {
                    length,
                    upload: Some(upload),
                    file: None,
                    touched: Instant::now(),
                }),
            }),
        );
        Ok(id)
    }

    pub async fn progress(&self, actor: &Actor, id: Uuid) -> AppResult<Progress> {
        let slot = self.slot(actor, id)?;
        let entry = slot.entry.lock().await;
        Ok(progress_of(&entry))
    }

    /// Appends `body` at `offset`, which must be where the upload stands. The bytes that
    /// arrive count even if the request breaks off; a refusal (cap, quota, policy) discards
    /// the whole upload. The last byte finishes it.
    pub async fn append<E: std::fmt::Display>(
        &self,
        actor: &Actor,
        id: Uuid,
        offset: u64,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> AppResult<Progress> {
        let slot = self.slot(actor, id)?;
        let Ok(mut entry) = slot.entry.try_lock() else {
            return Err(AppError::Conflict(
                "another request is appending to this upload".into(),
            ));
        };
        entry.touched = Instant::now();
        let length = entry.length;
        let Some(upload) = entry.upload.as_mut() else {
            return Err(AppError::Conflict("this upload is complete".into()));
        };
        if offset != upload.received() {
            return Err(AppError::Conflict(format!(
                "Upload-Offset is {offset} but the upload is at {}",
                upload.received()
            )));
        }
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // The client went away: what arrived is kept for the next append.
                Err(e) => {
                    tracing::debug!(error = %e, "resumable append broke off");
                    break;
                }
            };
            if upload.received() + chunk.len() as u64 > length {
                self.open.remove(&id);
                return Err(AppError::validation(
                    "body",
                    format!("the upload is {length} bytes; this append goes past its end"),
                ));
            }
            if let Err(e) = upload.write(&chunk).await {
                self.open.remove(&id);
                return Err(e);
            }
        }
        entry.touched = Instant::now();
        if entry
            .upload
            .as_ref()
            .is_some_and(|u| u.received() == length)
        {
            let upload = entry.upload.take().expect("checked above");
            match upload.finish().await {
                Ok(file) => entry.file = Some(file),
                Err(e) => {
                    self.open.remove(&id);
                    return Err(e);
                }
            }
        }
        Ok(progress_of(&entry))
    }

    /// Discards an upload (tus termination); a finished one only forgets its progress, the
    /// file stays.
    pub async fn terminate(&self, actor: &Actor, id: Uuid) -> AppResult<()> {
        self.slot(actor, id)?;
        self.open.remove(&id);
        Ok(())
    }

    /// Drops uploads idle for longer than `idle` (their temporary bytes go with them).
    pub fn sweep(&self, idle: Duration) -> usize {
        let before = self.open.len();
        self.open.retain(|_, slot| match slot.entry.try_lock() {
            Ok(entry) => entry.touched.elapsed() < idle,
            // Busy appending: certainly not idle.
            Err(_) => true,
        });
        before - self.open.len()
    }

    /// The caller's upload; others' are NOT_FOUND.
    fn slot(&self, actor: &Actor, id: Uuid) -> AppResult<Arc<Slot>> {
        self.open
            .get(&id)
            .filter(|slot| slot.owner == actor.id)
            .map(|slot| slot.clone())
            .ok_or_else(|| AppError::NotFound("upload not found".into()))
    }
}

fn progress_of(entry: &Entry) -> Progress {
    Progress {
        offset: entry.upload.as_ref().map_or(entry.length, |u| u.received()),
        length: entry.length,
        file: entry.file.clone(),
    }
}
