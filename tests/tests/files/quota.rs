//! The per-folder caps and the per-user quota, enforced from the declared length or while the
//! bytes arrive, refusals that leave nothing behind; aborted and stalled uploads leave nothing
//! either, and concurrent uploads by one user all succeed.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use futures::future::join_all;
use lyceum_tests::{
    Backend, backend_tests,
    check::{api, as_client, ids, sha256_hex},
    files::part,
};
use reqwest::multipart::Form;
use serde_json::Value;

use crate::{payloads::*, raw_http::*, support::*};

backend_tests!(
    an_upload_over_its_folder_cap_is_refused_and_leaves_nothing,
    a_declared_length_over_every_cap_is_refused_before_the_body_is_sent,
    an_upload_is_refused_as_soon_as_it_passes_its_cap,
    the_user_quota_counts_every_stored_byte,
    an_aborted_upload_leaves_nothing_behind,
    concurrent_uploads_by_one_user_all_succeed,
    an_upload_that_stops_sending_is_abandoned_and_leaves_nothing,
);

async fn an_upload_over_its_folder_cap_is_refused_and_leaves_nothing(backend: Backend) {
    let srv = start_with(backend, |c| {
        c.upload_max_images = 64 * KIB;
        c.upload_max_documents = 32 * KIB;
    })
    .await;
    let ada = srv.register("student").await;

    // Known length (the body is under every other folder's cap, so the server has to count)
    // and chunked.
    for chunked in [false, true] {
        let big = png_sized(180, 100 * KIB as usize);
        let reply = raw_upload(
            &srv,
            &ada.token,
            png_upload_body(&[], "big.png", &big),
            chunked,
        )
        .await;
        reply.assert_error(413, "PAYLOAD_TOO_LARGE");
        let doc = [pdf(181), filler(181, 40 * KIB as usize)].concat();
        let mut body = text_part("folder", "documents");
        body.extend(multipart_body("long.pdf", "application/pdf", &doc));
        raw_upload(&srv, &ada.token, body, chunked)
            .await
            .assert_error(413, "PAYLOAD_TOO_LARGE");
        assert_disk_holds_only(&srv, &[]).await;
        assert!(list_files(&srv, &ada).await.is_empty());
    }

    // The same PNG fits in misc, whose cap is the default.
    let big = png_sized(182, 100 * KIB as usize);
    let misc = uploaded_form(
        &srv,
        &ada,
        "?folder=misc",
        Form::new().part("file", part("big.png", &big, "image/png")),
    )
    .await;
    assert_eq!(misc["size"], big.len() as u64);

    // Exactly the cap is allowed; one byte more is not.
    let exact = png_sized(183, 64 * KIB as usize);
    let at_cap = uploaded(&srv, &ada, "exact.png", &exact, "image/png").await;
    let over = png_sized(184, 64 * KIB as usize + 1);
    raw_upload(
        &srv,
        &ada.token,
        png_upload_body(&[], "over.png", &over),
        false,
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");
    assert_disk_holds_only(&srv, &[&misc, &at_cap]).await;
    assert_eq!(list_files(&srv, &ada).await.len(), 2);
}

async fn a_declared_length_over_every_cap_is_refused_before_the_body_is_sent(backend: Backend) {
    let srv = start_with(backend, |c| {
        c.upload_max_documents = MIB;
        c.upload_max_images = MIB;
        c.upload_max_videos = MIB;
        c.upload_max_misc = MIB;
    })
    .await;
    let ada = srv.register("student").await;
    let (mut reader, writer) = open_upload(&srv, &ada.token, &Framing::Length(64 * MIB)).await;
    // Not one byte of the body: the answer must come from the head alone.
    let response = tokio::time::timeout(WAIT, read_response(&mut reader))
        .await
        .expect("answered without the body")
        .expect("a response");
    response.assert_error(413, "PAYLOAD_TOO_LARGE");
    drop(writer);
    assert_disk_holds_only(&srv, &[]).await;
    assert!(list_files(&srv, &ada).await.is_empty());

    // A file under the caps is still accepted.
    let under = png_sized(190, (MIB - 4 * KIB) as usize);
    let file = uploaded(&srv, &ada, "under.png", &under, "image/png").await;
    assert_disk_holds_only(&srv, &[&file]).await;
}

async fn an_upload_is_refused_as_soon_as_it_passes_its_cap(backend: Backend) {
    let srv = start_with(backend, |c| c.upload_max_images = MIB).await;
    let ada = srv.register("student").await;
    // With a Content-Length of 64 MiB (within the video cap, so not refusable from the head),
    // and chunked with no length at all: either way the cap can only be found while the bytes
    // arrive. The client sends 2 MiB of a PNG and then waits.
    for (n, chunked) in [false, true].into_iter().enumerate() {
        let response = upload_stalled_past_the_cap(&srv, &ada.token, chunked).await;
        response.assert_error(413, "PAYLOAD_TOO_LARGE");
        assert_disk_holds_only(&srv, &[]).await;
        assert!(list_files(&srv, &ada).await.is_empty());
        // The server is fine afterwards.
        let small = uploaded(&srv, &ada, "small.png", &png(200 + n as u64), "image/png").await;
        as_client(&srv, &ada)
            .delete(&api(&format!("/files/{}", id(&small))))
            .await
            .data();
    }
}

async fn the_user_quota_counts_every_stored_byte(backend: Backend) {
    let srv = start_with(backend, |c| c.upload_user_quota = 300 * KIB).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let size = 200 * KIB as usize;

    let first = uploaded(&srv, &ada, "first.png", &png_sized(220, size), "image/png").await;
    for chunked in [false, true] {
        let body = png_upload_body(&[], "second.png", &png_sized(221, size));
        let reply = raw_upload(&srv, &ada.token, body, chunked).await;
        reply.assert_error(413, "PAYLOAD_TOO_LARGE");
        assert_eq!(
            reply.json()["error"]["details"]["reason"],
            "quota_exceeded",
            "chunked: {chunked}"
        );
    }
    assert_disk_holds_only(&srv, &[&first]).await;
    assert_eq!(
        ids(&list_files(&srv, &ada).await),
        vec![id(&first).to_owned()]
    );

    // What is left still fits.
    let small = uploaded(
        &srv,
        &ada,
        "small.png",
        &png_sized(222, 50 * KIB as usize),
        "image/png",
    )
    .await;

    // Another user has a quota of their own.
    let bobs = uploaded(&srv, &bob, "bob.png", &png_sized(223, size), "image/png").await;

    // Deleting frees the space.
    let deleted = as_client(&srv, &ada)
        .delete(&api(&format!("/files/{}", id(&first))))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let second = uploaded(&srv, &ada, "second.png", &png_sized(224, size), "image/png").await;
    assert_disk_holds_only(&srv, &[&small, &bobs, &second]).await;
}

async fn an_aborted_upload_leaves_nothing_behind(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    for chunked in [false, true] {
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::Length(MIB)
        };
        let (reader, mut writer) = open_upload(&srv, &ada.token, &framing).await;
        let mut body = file_part_head("cut.png", "image/png");
        body.extend(png_sized(230, 200 * KIB as usize));
        assert!(send_body(&mut writer, &framing, &body).await);
        // Give the server the chance to start writing, then vanish mid-body.
        let deadline = Instant::now() + Duration::from_secs(2);
        while regular_files(&srv.config.upload_dir).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(writer);
        drop(reader);
        assert_disk_holds_only(&srv, &[]).await;
        assert!(list_files(&srv, &ada).await.is_empty());
    }
    // The server is fine afterwards.
    let file = uploaded(&srv, &ada, "whole.png", &png(231), "image/png").await;
    assert_disk_holds_only(&srv, &[&file]).await;
}

async fn concurrent_uploads_by_one_user_all_succeed(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let payloads: Vec<Vec<u8>> = (0..8u64)
        .map(|n| png_sized(240 + n, 40 * KIB as usize + n as usize))
        .collect();
    let replies = join_all(payloads.iter().enumerate().map(|(n, bytes)| {
        let srv = &srv;
        let ada = &ada;
        async move { upload(srv, ada, &format!("parallel{n}.png"), bytes, "image/png").await }
    }))
    .await;
    let mut files = Vec::new();
    for (reply, bytes) in replies.iter().zip(&payloads) {
        assert_eq!(reply.status, 201, "{}", reply.body);
        let file = reply.data();
        assert_file(&file);
        assert_eq!(file["sha256"], sha256_hex(bytes).as_str());
        assert_eq!(file["size"], bytes.len() as u64);
        files.push(file);
    }
    let ids_seen: HashSet<&str> = files.iter().map(id).collect();
    let names: HashSet<&str> = files
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!((ids_seen.len(), names.len()), (8, 8));
    let client = as_client(&srv, &ada);
    let downloads = join_all(files.iter().map(|f| download(&client, f))).await;
    for ((got, file), bytes) in downloads.iter().zip(&files).zip(&payloads) {
        assert_served(got, file, bytes);
    }
    let refs: Vec<&Value> = files.iter().collect();
    assert_disk_holds_only(&srv, &refs).await;
    assert_eq!(list_files(&srv, &ada).await.len(), 8);
}

async fn an_upload_that_stops_sending_is_abandoned_and_leaves_nothing(backend: Backend) {
    let srv = start_with(backend, |c| c.upload_idle_timeout = Duration::from_secs(1)).await;
    let ada = srv.register("student").await;
    // 256 KiB of a PNG that claims 4 MiB, then nothing, the connection held open.
    let mut head = file_part_head("slow.png", "image/png");
    let framing = Framing::Length(head.len() as u64 + 4 * MIB + closing().len() as u64);
    head.extend(png_sized(3, 256 * 1024));
    let (mut reader, mut writer) = open_upload(&srv, &ada.token, &framing).await;
    assert!(send_body(&mut writer, &framing, &head).await);
    let started = Instant::now();
    let response = tokio::time::timeout(WAIT, read_response(&mut reader))
        .await
        .expect("a stalled upload is answered while its client holds the body back")
        .expect("a response");
    response.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(response.json()["error"]["details"]["field"], "file");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "abandoned after {:?}, before the idle timeout",
        started.elapsed()
    );
    drop(writer);
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;
}
