//! Uploads that find no room: the upload directory is a small tmpfs of its own, so the disk
//! fills for real. The answer is 507 `INSUFFICIENT_STORAGE`, the partial file is removed, no
//! row is written, and uploads work again once there is room. Mounting needs root (as CI
//! runs); elsewhere these tests say they skipped.

use std::{path::Path, process::Command};

use lyceum_tests::{Backend, backend_tests, check::as_client, tempdir::TempDir};
use reqwest::Method;

use crate::{payloads::*, support::*};

backend_tests!(
    an_upload_that_fills_the_disk_is_507_and_leaves_no_partial_file_and_no_row,
    a_resumable_append_that_fills_the_disk_is_507_and_discards_the_upload,
);

/// A tmpfs of `size` mounted at a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TempDir::new();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the server may still hold a directory open as the test ends.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn small_disk(test: &str) -> Option<SmallDisk> {
    let disk = SmallDisk::mount("2m");
    if disk.is_none() {
        eprintln!("skipped {test}: mounting a tmpfs needs root");
    }
    disk
}

async fn an_upload_that_fills_the_disk_is_507_and_leaves_no_partial_file_and_no_row(
    backend: Backend,
) {
    let Some(disk) = small_disk("an_upload_that_fills_the_disk_is_507") else {
        return;
    };
    let upload_dir = disk.path().to_path_buf();
    let srv = start_with(backend, |c| c.upload_dir = upload_dir).await;
    let ada = srv.register("student").await;

    // 4 MiB of PDF into 2 MiB of disk.
    let big: Vec<u8> = pdf(1).into_iter().cycle().take(4 * MIB as usize).collect();
    let reply = upload(&srv, &ada, "big.pdf", &big, "application/pdf").await;
    reply.assert_error(507, "INSUFFICIENT_STORAGE");
    assert!(list_files(&srv, &ada).await.is_empty(), "a row was written");
    assert_disk_holds_only(&srv, &[]).await;

    // The room the partial file took is back: a small upload lands.
    let small = uploaded(&srv, &ada, "small.pdf", &pdf(2), "application/pdf").await;
    assert_disk_holds_only(&srv, &[&small]).await;
    assert_eq!(list_files(&srv, &ada).await.len(), 1);
}

async fn a_resumable_append_that_fills_the_disk_is_507_and_discards_the_upload(backend: Backend) {
    let Some(disk) = small_disk("a_resumable_append_that_fills_the_disk_is_507") else {
        return;
    };
    let upload_dir = disk.path().to_path_buf();
    let srv = start_with(backend, |c| c.upload_dir = upload_dir).await;
    let who = srv.register("student").await;
    let client = as_client(&srv, &who);
    let tus = |method: Method, path: &str| {
        client
            .request(method, path)
            .header("Tus-Resumable", "1.0.0")
    };

    let video: Vec<u8> = mp4(1).into_iter().cycle().take(4 * MIB as usize).collect();
    let created = client
        .send(
            tus(Method::POST, "/api/v1/files/tus")
                .header("Upload-Length", video.len().to_string())
                .header(
                    "Upload-Metadata",
                    "filename bGVjdHVyZS5tcDQ=,filetype dmlkZW8vbXA0,folder dmlkZW9z",
                ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let at = created.headers["location"].to_str().unwrap().to_owned();
    let appended = client
        .send(
            tus(Method::PATCH, &at)
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .body(video),
        )
        .await;
    appended.assert_error(507, "INSUFFICIENT_STORAGE");
    // The upload is gone with its bytes: a client starts again when there is room.
    let progress = client.send(tus(Method::HEAD, &at)).await;
    assert_eq!(progress.status, 404);
    assert_disk_holds_only(&srv, &[]).await;
    assert!(list_files(&srv, &who).await.is_empty());
}
