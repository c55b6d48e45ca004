//! Files, per the Files section of the contract: streamed multipart uploads checked by the file
//! validation plugin, generated stored names, per-folder caps and the per-user quota enforced
//! while the bytes arrive, downloads with ranges, validators and safe headers, the bearer and
//! signed `url`s, who may read and delete, listing, and what is left on disk after refusals,
//! aborted uploads and deletes.
//!
//! - `uploads`: one-request uploads, the detected type, stored names, the plugin's refusals.
//! - `downloads`: the bytes back with safe headers, attachments, `If-None-Match`, ranges.
//! - `access`: owners, admins and course members; signed urls; tokens; unknown ids.
//! - `deletes`: who may delete, and that a deleted file is gone everywhere.
//! - `listing`: the caller's files, newest first and paged.
//! - `quota`: the per-folder caps and the per-user quota; aborted and concurrent uploads.
//! - `cleanup`: partial uploads and stored bytes without a row, removed by the server itself.
//! - `pacing`: the slowest an upload may arrive, and uploads outlasting the request time limit.
//! - `disk_full`: uploads that find no room on disk.
//! - `tus`: resumable uploads over tus 1.0.
//!
//! Uploads that succeed go through reqwest's multipart form (`support`, over the shared
//! `lyceum_tests::files`); `payloads` makes the bytes. Uploads that are refused with 413,
//! aborted half way or held open mid-body speak raw HTTP/1.1 (`raw_http`).

#[path = "files/access.rs"]
mod access;
#[path = "files/cleanup.rs"]
mod cleanup;
#[path = "files/deletes.rs"]
mod deletes;
#[path = "files/disk_full.rs"]
mod disk_full;
#[path = "files/downloads.rs"]
mod downloads;
#[path = "files/listing.rs"]
mod listing;
#[path = "files/pacing.rs"]
mod pacing;
#[path = "files/payloads.rs"]
mod payloads;
#[path = "files/quota.rs"]
mod quota;
#[path = "files/raw_http.rs"]
mod raw_http;
#[path = "files/support.rs"]
mod support;
#[path = "files/tus.rs"]
mod tus;
#[path = "files/uploads.rs"]
mod uploads;
