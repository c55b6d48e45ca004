//! What the server clears from the upload dir by itself: partial uploads a crash left behind,
//! at start-up, and stored bytes without a row once they are an hour old.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lyceum_tests::{Backend, backend_tests, check::as_client};

use crate::{payloads::*, support::*};

backend_tests!(
    stale_temporary_files_are_swept_at_start_up,
    stored_bytes_without_a_row_are_removed_after_start_up_once_an_hour_old,
);

async fn stale_temporary_files_are_swept_at_start_up(backend: Backend) {
    let mut stale = PathBuf::new();
    let srv = start_with(backend, |config| {
        let tmp = config.upload_dir.join(".tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        stale = tmp.join("stale.part");
        std::fs::write(&stale, b"half an upload from before a crash").unwrap();
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while stale.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stale.exists(), "{} survived start-up", stale.display());
    assert_disk_holds_only(&srv, &[]).await;
    let ada = srv.register("student").await;
    let file = uploaded(&srv, &ada, "after.png", &png(250), "image/png").await;
    assert_disk_holds_only(&srv, &[&file]).await;
}

/// Backdates a file's modification time by `age`.
fn age_file(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

async fn stored_bytes_without_a_row_are_removed_after_start_up_once_an_hour_old(backend: Backend) {
    // A first server stores a file; its bytes are made old.
    let first = start(backend).await;
    let ada = first.register("student").await;
    let kept = uploaded(&first, &ada, "kept.png", &png(270), "image/png").await;
    let two_hours = Duration::from_secs(2 * 60 * 60);
    age_file(&stored_path(&first, &kept), two_hours);

    // Bytes under generated names with no row: an old one (a crash between publishing and
    // committing) and a young one (perhaps another process about to commit); and a file
    // whose name is not one the server generates.
    let images = first.config.upload_dir.join("images");
    let orphan = images.join(format!("{}.png", uuid::Uuid::now_v7().simple()));
    let young = images.join(format!("{}.png", uuid::Uuid::now_v7().simple()));
    let foreign = images.join("placed-by-an-operator.png");
    for path in [&orphan, &young, &foreign] {
        std::fs::write(path, png(271)).unwrap();
    }
    age_file(&orphan, two_hours);
    age_file(&foreign, two_hours);

    // A second server on the same database and directory looks for orphans after it starts.
    let (database, data_dir, upload_dir) = (
        first.config.database_url.clone(),
        first.config.data_dir.clone(),
        first.config.upload_dir.clone(),
    );
    let second = start_with(backend, move |config| {
        config.database_url = database;
        config.data_dir = data_dir;
        config.upload_dir = upload_dir;
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while orphan.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!orphan.exists(), "{} survived", orphan.display());
    assert!(young.exists(), "a young orphan was removed");
    assert!(
        foreign.exists(),
        "a file the server did not name was removed"
    );
    assert!(
        stored_path(&second, &kept).exists(),
        "a file with a row was removed"
    );
    let fetched = download(&as_client(&second, &ada), &kept).await;
    assert_eq!(fetched.status, 200);
}
