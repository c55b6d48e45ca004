//! Files: who may see, fetch and delete them, and the upload pipeline ([`upload`]).
//!
//! A file is a metadata row plus bytes in a [`BlobStore`]. The two appear together (the row
//! commits only after the bytes are published) and disappear row first, so a reader can
//! never find a row without bytes. Bytes without a row — a crash between publishing and
//! committing, or between deleting the row and the bytes — are invisible and are removed by
//! [`FileService::remove_orphans`] after start-up.

pub mod links;
pub mod names;
pub mod resumable;
pub mod sniff;
pub mod upload;

use std::sync::Arc;

use dashmap::DashMap;
use lyceum_plugin_runtime::PolicyEngine;

pub use links::{AttachmentView, FileLinks, FileView, may_read};
pub use upload::{Upload, UploadRequest};

use super::{Actor, access::CourseAccess, paging::PageRequest};
use crate::{
    domain::{FileId, FileRecord, Folder, Page, UserId},
    error::{AppError, AppResult},
    storage::{BlobEntry, BlobReader, BlobStore, StorageError},
    store::Store,
};

/// Size limits, in bytes.
#[derive(Debug, Clone)]
pub struct FileLimits {
    pub documents: u64,
    pub images: u64,
    pub videos: u64,
    pub misc: u64,
    /// What one user's files may take in all.
    pub user_quota: u64,
}

impl FileLimits {
    pub fn cap(&self, folder: Folder) -> u64 {
        match folder {
            Folder::Documents => self.documents,
            Folder::Images => self.images,
            Folder::Videos => self.videos,
            Folder::Misc => self.misc,
        }
    }

    /// The largest file any folder takes.
    pub fn largest(&self) -> u64 {
        Folder::ALL
            .into_iter()
            .map(|f| self.cap(f))
            .max()
            .unwrap_or(0)
    }
}

pub struct FileService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    policy: Arc<PolicyEngine>,
    links: Arc<FileLinks>,
    access: CourseAccess,
    limits: FileLimits,
    /// Bytes each user is uploading right now on this node, so parallel uploads cannot
    /// each fill the same remaining quota before one of them commits.
    in_flight: Arc<DashMap<UserId, u64>>,
}

impl FileService {
    pub fn new(
        store: Arc<dyn Store>,
        access: CourseAccess,
        blobs: Arc<dyn BlobStore>,
        policy: Arc<PolicyEngine>,
        links: Arc<FileLinks>,
        limits: FileLimits,
    ) -> Self {
        FileService {
            access,
            store,
            blobs,
            policy,
            links,
            limits,
            in_flight: Arc::default(),
        }
    }

    pub fn limits(&self) -> &FileLimits {
        &self.limits
    }

    pub fn links(&self) -> &FileLinks {
        &self.links
    }

    /// One file, if the actor may read it; NOT_FOUND otherwise.
    pub async fn get(&self, actor: &Actor, id: FileId) -> AppResult<FileView> {
        let file = self.readable(actor, id).await?;
        Ok(self.links.view(&file))
    }

    /// The actor's own files, newest first.
    pub async fn list(&self, actor: &Actor, page: PageRequest) -> AppResult<Page<FileView>> {
        let rows = self
            .store
            .list_files(actor.id, page.after.map(FileId), page.fetch())
            .await?;
        let page = page.finish(rows, |f| f.id.0);
        Ok(Page {
            next_cursor: page.next_cursor,
            items: page.items.iter().map(|f| self.links.view(f)).collect(),
        })
    }

    /// The record of a file the actor may read; NOT_FOUND for anything else, so others'
    /// files cannot be probed.
    pub async fn readable(&self, actor: &Actor, id: FileId) -> AppResult<FileRecord> {
        let file = self.store.file(id).await?.ok_or_else(not_found)?;
        self.check_readable(actor, &file).await?;
        Ok(file)
    }

    /// NOT_FOUND unless the actor may read `file`.
    pub async fn check_readable(&self, actor: &Actor, file: &FileRecord) -> AppResult<()> {
        let member = match file.course_id {
            Some(course) if !actor.is_admin() && file.owner_id != actor.id => {
                match self.store.course(course).await? {
                    Some(course) => self.access.is_member(actor, &course).await?,
                    None => false,
                }
            }
            _ => false,
        };
        if may_read(actor, file, member) {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// The file published as `<folder>/<filename>`.
    pub async fn by_name(&self, folder: Folder, filename: &str) -> AppResult<FileRecord> {
        self.store
            .file_by_name(folder, filename)
            .await?
            .ok_or_else(not_found)
    }

    /// Whether `(expires, sig)` is a valid signed link to `file`.
    pub fn signed_link_valid(&self, file: &FileRecord, expires: i64, sig: &str) -> bool {
        self.links.verify(file.id, expires, sig)
    }

    /// `len` bytes of `file` from `offset`.
    pub async fn open(&self, file: &FileRecord, offset: u64, len: u64) -> AppResult<BlobReader> {
        match self
            .blobs
            .read(file.folder, &file.filename, offset, len)
            .await
        {
            Ok(reader) => Ok(reader),
            // Deleted between the look-up and the read.
            Err(StorageError::NotFound) => Err(not_found()),
            Err(e) => Err(AppError::internal(e)),
        }
    }

    /// Deletes a file (its owner, admins). Members who may read it but not delete it are
    /// FORBIDDEN; to anyone else it does not exist. Messages that attached it keep the
    /// attachment as `{id, deleted: true}`.
    pub async fn delete(&self, actor: &Actor, id: FileId) -> AppResult<()> {
        let file = self.readable(actor, id).await?;
        if !(actor.is_admin() || file.owner_id == actor.id) {
            return Err(AppError::Forbidden(
                "only the file's owner or an admin may delete it".into(),
            ));
        }
        let Some(file) = self.store.delete_file(id).await? else {
            return Err(not_found());
        };
        // The row is gone, so nobody can reach the bytes any more; if removing them fails
        // they are orphans for the next start-up to collect.
        if let Err(e) = self.blobs.remove(file.folder, &file.filename).await {
            tracing::warn!(error = %e, file = %file.id, "could not remove a deleted file's bytes");
        }
        tracing::info!(file = %file.id, "file deleted");
        Ok(())
    }

    /// Removes the uploads a crash interrupted. Runs before the server accepts uploads:
    /// afterwards it would remove the ones in progress.
    pub async fn sweep_interrupted(&self) -> anyhow::Result<()> {
        let swept = self.blobs.sweep_temp().await?;
        if swept > 0 {
            tracing::info!(swept, "removed uploads a crash interrupted");
        }
        Ok(())
    }

    /// Removes bytes whose row never committed (or was deleted) once they are older than
    /// [`ORPHAN_AGE`] — younger ones may belong to another process sharing the folder that is
    /// about to commit. Stored names start with the file id, so the check is one look-up per
    /// batch of files. It reads every stored name, so it runs beside the server, not before it.
    pub async fn remove_orphans(&self) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now();
        let old_enough: Vec<BlobEntry> = self
            .blobs
            .list()
            .await?
            .into_iter()
            .filter(|e| {
                now.duration_since(e.modified)
                    .is_ok_and(|age| age >= ORPHAN_AGE)
            })
            .collect();
        let mut orphans = 0;
        for batch in old_enough.chunks(500) {
            let ids: Vec<(FileId, &BlobEntry)> = batch
                .iter()
                .filter_map(|entry| {
                    let stem = entry.filename.split('.').next()?;
                    uuid::Uuid::try_parse(stem)
                        .ok()
                        .map(|id| (FileId(id), entry))
                })
                .collect();
            let known = self
                .store
                .existing_files(&ids.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .await?;
            for (id, entry) in ids {
                if !known.contains(&id) {
                    self.blobs.remove(entry.folder, &entry.filename).await?;
                    orphans += 1;
                }
            }
        }
        if orphans > 0 {
            tracing::info!(orphans, "removed stored bytes without a file row");
        }
        Ok(())
    }
}

/// How old unreferenced bytes must be before start-up removes them.
pub const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

fn not_found() -> AppError {
    AppError::NotFound("file not found".into())
}
