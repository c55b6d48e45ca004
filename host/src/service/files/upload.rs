//! One upload, fed chunk by chunk by a transport (multipart today, resumable uploads later):
//!
//! 1. the first 64 KiB are held back and shown to the file-validation slot (`precheck`)
//!    with the name, declared type and the type the host detected — nothing is written
//!    before a plugin has seen them;
//! 2. accepted bytes stream into a temporary blob while their SHA-256 is computed and the
//!    folder's cap and the owner's quota are checked chunk by chunk (413 the moment one is
//!    passed);
//! 3. at the end the blob is synced, the slot is asked again (`finish`, with size and hash),
//!    and the row is inserted and the blob published in one transaction.
//!
//! Dropping an [`Upload`] at any point before that removes its temporary blob, so a refused,
//! oversized or abandoned upload leaves nothing behind.

use std::sync::Arc;

use dashmap::DashMap;
use lyceum_plugin_runtime::{FileFinish, FilePrecheck, FileVerdict, PolicyContext, Refusal};
use sha2::{Digest, Sha256};

use super::{FileService, FileView, names, sniff};
use crate::{
    domain::{Course, CourseId, FileId, FileRecord, Folder, Role, UserId},
    error::{AppError, AppResult},
    service::{Actor, policy},
    storage::TempBlob,
    store::FileInsert,
    telemetry::RequestId,
};

/// What the client said about an upload before its body.
#[derive(Debug, Clone, Default)]
pub struct UploadRequest {
    /// The file name as given.
    pub name: String,
    /// The media type the client claimed.
    pub declared_type: Option<String>,
    /// The size the client announced, when its transport tells one.
    pub declared_size: Option<u64>,
    /// The folder asked for; `None` lets policy (or the detected type) choose.
    pub folder: Option<Folder>,
    pub course: Option<CourseId>,
}

/// Refusal codes that mean "this type of file is not taken here": answered 415.
const TYPE_REFUSALS: &[&str] = &[
    "type_not_allowed",
    "type_mismatch",
    "unknown_type",
    "executable",
    "html_not_allowed",
    "svg_script",
    "double_extension",
];

pub struct Upload {
    files: Arc<FileService>,
    actor: Actor,
    course: Option<Course>,
    request: UploadRequest,
    /// Shared by `precheck` and `finish`, request id included, so that a plugin (and the
    /// logs) can relate the two calls, even when a resumable upload makes them in different
    /// requests: the id is that of the request that began the upload.
    ctx: PolicyContext,
    /// What the owner's files took when the upload began.
    used_before: u64,
    stage: Stage,
}

enum Stage {
    /// Collecting the bytes `precheck` sees.
    Head(Vec<u8>),
    Body(Box<Body>),
}

struct Body {
    temp: Box<dyn TempBlob>,
    hasher: Sha256,
    size: u64,
    folder: Folder,
    /// The original name, as the plugins corrected it.
    name: String,
    detected: sniff::Detected,
    cap: Cap,
    reservation: Reservation,
}

/// The tighter of the folder's cap and what is left of the quota.
#[derive(Debug, Clone, Copy)]
struct Cap {
    bytes: u64,
    by_quota: bool,
}

impl Cap {
    fn exceeded(&self, folder: Folder) -> AppError {
        if self.by_quota {
            over_quota(self.bytes)
        } else {
            too_large(folder, self.bytes)
        }
    }
}

impl FileService {
    /// Starts an upload: checks the course (members only) and that the announced size can
    /// fit at all. `request_id` is the beginning request's, what the plugins are told.
    pub async fn begin_upload(
        self: &Arc<Self>,
        actor: &Actor,
        request_id: &RequestId,
        request: UploadRequest,
    ) -> AppResult<Upload> {
        let course = match request.course {
            Some(id) => Some(self.access.member_of(actor, id).await?),
            None => None,
        };
        let used_before = self.store.used_bytes(actor.id).await?;
        let ctx = match &course {
            Some(course) => policy::context(request_id, actor, course),
            None => user_context(request_id, actor),
        };
        let upload = Upload {
            files: self.clone(),
            actor: *actor,
            course,
            ctx,
            used_before,
            stage: Stage::Head(Vec::new()),
            request,
        };
        if let Some(size) = upload.request.declared_size {
            let cap = upload.cap(upload.request.folder);
            if size > cap.bytes {
                return Err(cap.exceeded(upload.request.folder.unwrap_or(Folder::Misc)));
            }
        }
        Ok(upload)
    }
}

impl Upload {
    /// How many bytes of the body have been taken so far.
    pub fn received(&self) -> u64 {
        match &self.stage {
            Stage::Head(head) => head.len() as u64,
            Stage::Body(body) => body.size,
        }
    }

    /// Who is uploading.
    pub fn owner(&self) -> UserId {
        self.actor.id
    }

    /// Takes the next bytes of the body.
    pub async fn write(&mut self, mut chunk: &[u8]) -> AppResult<()> {
        if let Stage::Head(head) = &mut self.stage {
            let room = FilePrecheck::HEAD_LEN - head.len();
            let take = room.min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if head.len() < FilePrecheck::HEAD_LEN {
                return Ok(());
            }
            self.start_body().await?;
        }
        let Stage::Body(body) = &mut self.stage else {
            unreachable!("the head is complete")
        };
        body.append(chunk, self.files.limits.user_quota, self.used_before)
            .await
    }

    /// Ends the upload: the second policy check, then the row and the bytes together.
    pub async fn finish(mut self) -> AppResult<FileView> {
        if matches!(self.stage, Stage::Head(_)) {
            self.start_body().await?;
        }
        let Stage::Body(body) = self.stage else {
            unreachable!("the body has started")
        };
        let mut body = *body;
        body.temp.sync().await?;
        let sha256 = hex::encode(body.hasher.finalize_reset());
        let verdict = self
            .files
            .policy
            .finish_file(
                &self.ctx,
                &FileFinish {
                    name: body.name.clone(),
                    folder: Some(body.folder.as_str().to_owned()),
                    declared_type: self.request.declared_type.clone(),
                    size: body.size,
                    sha256: sha256.clone(),
                    sniffed_type: known(&body.detected),
                },
            )
            .await
            .map_err(policy::unavailable)?;
        let (folder, name) = match verdict {
            FileVerdict::Reject(refusal) => return Err(refused(refusal)),
            FileVerdict::Accept { folder, name } => (
                match folder {
                    Some(f) => parse_folder(&f)?,
                    None => body.folder,
                },
                name.unwrap_or(body.name),
            ),
        };
        let limit = self.files.limits.cap(folder);
        if body.size > limit {
            return Err(too_large(folder, limit));
        }

        let id = FileId::new();
        let record = FileRecord {
            id,
            owner_id: self.actor.id,
            course_id: self.course.as_ref().map(|c| c.id),
            folder,
            filename: names::stored_name(id, &body.detected.extension),
            original_name: names::original_name(&name),
            size: body.size,
            mimetype: body.detected.mime.clone(),
            sha256,
            created_at: crate::domain::now(),
        };
        // Committing runs on its own task: a client that disconnects now must not cut the
        // transaction between publishing the bytes and committing the row.
        let files = self.files.clone();
        let quota = files.limits.user_quota;
        let temp = body.temp;
        let committed = tokio::spawn(async move {
            let publish = Box::pin(temp.publish(record.folder, &record.filename));
            let outcome = files.store.insert_file(&record, quota, publish).await;
            if !matches!(outcome, Ok(FileInsert::Inserted))
                && let Err(e) = files.blobs.remove(record.folder, &record.filename).await
            {
                tracing::warn!(error = %e, "could not remove the bytes of an uncommitted upload");
            }
            (outcome, record)
        })
        .await
        .map_err(AppError::internal)?;
        match committed {
            (Ok(FileInsert::Inserted), record) => {
                tracing::info!(file = %record.id, size = record.size, folder = record.folder.as_str(), "file uploaded");
                Ok(self.files.links.view(&record))
            }
            (Ok(FileInsert::OverQuota { used }), _) => Err(over_quota(quota.saturating_sub(used))),
            (Ok(FileInsert::PublishFailed(e)), _) => Err(e.into()),
            (Err(e), _) => Err(e.into()),
        }
    }

    /// Runs `precheck` on the head and, if accepted, opens the temporary blob.
    async fn start_body(&mut self) -> AppResult<()> {
        let Stage::Head(head) = &mut self.stage else {
            return Ok(());
        };
        let head = std::mem::take(head);
        let detected = sniff::detect(&head, &self.request.name);
        let input = FilePrecheck {
            name: self.request.name.clone(),
            folder: self.request.folder.map(|f| f.as_str().to_owned()),
            declared_type: self.request.declared_type.clone(),
            declared_size: self.request.declared_size,
            sniffed_type: known(&detected),
            head,
        };
        let verdict = self
            .files
            .policy
            .precheck_file(&self.ctx, &input)
            .await
            .map_err(policy::unavailable)?;
        let (folder, name) = match verdict {
            FileVerdict::Reject(refusal) => return Err(refused(refusal)),
            FileVerdict::Accept { folder, name } => {
                let folder = match folder {
                    Some(f) => parse_folder(&f)?,
                    None => self
                        .request
                        .folder
                        .unwrap_or_else(|| folder_for(&detected.mime)),
                };
                (folder, name.unwrap_or_else(|| self.request.name.clone()))
            }
        };
        let cap = self.cap(Some(folder));
        if let Some(size) = self.request.declared_size
            && size > cap.bytes
        {
            return Err(cap.exceeded(folder));
        }
        let temp = self.files.blobs.create_temp().await?;
        let mut body = Body {
            temp,
            hasher: Sha256::new(),
            size: 0,
            folder,
            name,
            detected,
            cap,
            reservation: Reservation::new(self.files.in_flight.clone(), self.actor.id),
        };
        body.append(&input.head, self.files.limits.user_quota, self.used_before)
            .await?;
        self.stage = Stage::Body(Box::new(body));
        Ok(())
    }

    /// The tighter of the folder's cap (the largest of any folder when it is not known yet)
    /// and the quota left.
    fn cap(&self, folder: Option<Folder>) -> Cap {
        let limits = &self.files.limits;
        let folder_cap = folder.map_or_else(|| limits.largest(), |f| limits.cap(f));
        let left = limits.user_quota.saturating_sub(self.used_before);
        if left < folder_cap {
            Cap {
                bytes: left,
                by_quota: true,
            }
        } else {
            Cap {
                bytes: folder_cap,
                by_quota: false,
            }
        }
    }
}

impl Body {
    async fn append(&mut self, chunk: &[u8], quota: u64, used_before: u64) -> AppResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        if self.size > self.cap.bytes {
            return Err(self.cap.exceeded(self.folder));
        }
        // Other uploads of the same user on this node count against the same quota.
        let uploading = self.reservation.add(chunk.len() as u64);
        if used_before.saturating_add(uploading) > quota {
            return Err(Cap {
                bytes: quota.saturating_sub(used_before + uploading - self.size),
                by_quota: true,
            }
            .exceeded(self.folder));
        }
        self.hasher.update(chunk);
        self.temp.write(chunk).await.map_err(AppError::from)
    }
}

/// This upload's share of its user's in-flight bytes, given back when it ends.
struct Reservation {
    table: Arc<DashMap<UserId, u64>>,
    user: UserId,
    bytes: u64,
}

impl Reservation {
    fn new(table: Arc<DashMap<UserId, u64>>, user: UserId) -> Self {
        Reservation {
            table,
            user,
            bytes: 0,
        }
    }

    /// Adds `bytes` and returns what all of the user's uploads now hold.
    fn add(&mut self, bytes: u64) -> u64 {
        self.bytes += bytes;
        let mut total = self.table.entry(self.user).or_insert(0);
        *total += bytes;
        *total
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.table.remove_if_mut(&self.user, |_, total| {
            *total = total.saturating_sub(self.bytes);
            *total == 0
        });
    }
}

/// Over a folder's cap: 413 with `details.reason` `too_large`.
pub fn too_large(folder: Folder, limit: u64) -> AppError {
    AppError::OverLimit {
        reason: "too_large".into(),
        message: format!("files in {} may be at most {limit} bytes", folder.as_str()),
    }
}

/// Over the user's quota: 413 with `details.reason` `quota_exceeded`.
fn over_quota(left: u64) -> AppError {
    AppError::OverLimit {
        reason: "quota_exceeded".into(),
        message: format!("this upload would exceed your storage quota ({left} bytes left)"),
    }
}

/// A context for an upload outside any course: the user's platform role.
fn user_context(request_id: &RequestId, actor: &Actor) -> PolicyContext {
    let role = match actor.role {
        Role::Admin => lyceum_plugin_runtime::Role::Admin,
        Role::Instructor => lyceum_plugin_runtime::Role::Instructor,
        Role::Student => lyceum_plugin_runtime::Role::Student,
    };
    PolicyContext::new(request_id.as_str(), actor.id.to_string(), role)
}

/// The detected type for plugins: `None` when the host could not tell.
fn known(detected: &sniff::Detected) -> Option<String> {
    (detected.mime != sniff::Detected::unknown().mime).then(|| detected.mime.clone())
}

/// A plugin's refusal on the wire: 415 for the wrong kind of file, 413 for too large, and
/// otherwise what any slot's refusal means (see [`policy::refused`]); the plugin's sentence
/// is the message and its code `details.reason`.
fn refused(refusal: Refusal) -> AppError {
    if refusal.code == "too_large" {
        AppError::OverLimit {
            reason: refusal.code,
            message: refusal.reason,
        }
    } else if TYPE_REFUSALS.contains(&refusal.code.as_str()) {
        AppError::UnsupportedMediaType {
            reason: refusal.code,
            message: refusal.reason,
        }
    } else {
        policy::refused(refusal)
    }
}

/// A folder a plugin chose. Plugins may be configured with folders the host does not have;
/// that is a configuration mistake, refused rather than stored somewhere arbitrary.
fn parse_folder(name: &str) -> AppResult<Folder> {
    Folder::parse(name).ok_or_else(|| AppError::RejectedByPolicy {
        reason: "unknown_folder".into(),
        message: format!("the file policy chose a folder this server does not have: {name}"),
    })
}

/// Where a file goes when neither the client nor a plugin chose.
fn folder_for(mime: &str) -> Folder {
    if mime.starts_with("image/") {
        Folder::Images
    } else if mime.starts_with("video/") || mime.starts_with("audio/") {
        Folder::Videos
    } else if mime.starts_with("text/")
        || mime == "application/pdf"
        || mime == "application/json"
        || mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.oasis.opendocument.")
        || mime == "application/msword"
    {
        Folder::Documents
    } else {
        Folder::Misc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_shared_per_user_and_given_back() {
        let table: Arc<DashMap<UserId, u64>> = Arc::default();
        let user = UserId::new();
        let mut a = Reservation::new(table.clone(), user);
        let mut b = Reservation::new(table.clone(), user);
        assert_eq!(a.add(10), 10);
        assert_eq!(b.add(5), 15);
        drop(a);
        assert_eq!(*table.get(&user).unwrap(), 5);
        drop(b);
        assert!(table.get(&user).is_none(), "no entry is left behind");
    }

    #[test]
    fn refusals_map_onto_the_contract_statuses() {
        let refusal = |code: &str| Refusal {
            code: code.into(),
            reason: "because".into(),
        };
        assert!(matches!(
            refused(refusal("too_large")),
            AppError::OverLimit { .. }
        ));
        assert!(matches!(
            refused(refusal("executable")),
            AppError::UnsupportedMediaType { .. }
        ));
        assert!(matches!(
            refused(refusal("suspicious_name")),
            AppError::RejectedByPolicy { .. }
        ));
        assert!(matches!(
            refused(refusal("rate_limited")),
            AppError::RateLimited { .. }
        ));
    }

    #[test]
    fn without_a_choice_files_go_where_their_type_belongs() {
        assert_eq!(folder_for("image/png"), Folder::Images);
        assert_eq!(folder_for("video/mp4"), Folder::Videos);
        assert_eq!(folder_for("application/pdf"), Folder::Documents);
        assert_eq!(folder_for("application/zip"), Folder::Misc);
    }
}
