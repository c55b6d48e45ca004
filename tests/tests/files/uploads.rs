//! Uploading in one request: the `file` a 201 answers with, the folder inferred from the
//! detected type or given, where text fields may come, malformed requests, generated stored
//! names, the detected type deciding over the declared one, the validation plugin's refusals
//! once the bytes have arrived, and the digest and size of what was received.

use std::collections::HashSet;

use lyceum_tests::{
    Backend, Reply, backend_tests,
    check::{api, as_client, assert_utc_time, id_of, sha256_hex},
    files::{part, upload_form},
};
use reqwest::multipart::Form;
use serde_json::{Value, json};

use crate::{payloads::*, raw_http::*, support::*};

backend_tests!(
    uploading_a_png_answers_201_with_the_file_as_detected,
    the_folder_is_inferred_from_the_detected_type_unless_one_is_given,
    text_fields_come_before_the_file_part_or_as_query_parameters,
    malformed_upload_requests_name_the_offending_field,
    stored_names_are_generated_and_original_names_are_only_data,
    names_with_direction_overrides_are_rejected_by_policy,
    the_detected_type_decides_and_disguised_files_are_refused,
    plugin_refusals_after_the_bytes_arrive_map_to_413_and_422,
    sha256_and_size_describe_the_bytes_received,
);

#[track_caller]
fn assert_refused(reply: &Reply, status: u16, code: &str) -> String {
    reply.assert_error(status, code);
    let reason = reply.body["error"]["details"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no details.reason in {}", reply.body))
        .to_owned();
    assert!(!reason.is_empty(), "{}", reply.body);
    assert_ne!(
        reply.body["error"]["message"].as_str().unwrap(),
        reason,
        "the message is the plugin's human reason, not the code: {}",
        reply.body
    );
    reason
}

async fn uploading_a_png_answers_201_with_the_file_as_detected(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bytes = png(1);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    // The client claims nothing useful about the type: Lyceum looks at the bytes.
    let reply = upload(
        &srv,
        &ada,
        "holiday.png",
        &bytes,
        "application/octet-stream",
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let file = reply.data();
    assert_file(&file);
    assert_eq!(file["mimetype"], "image/png", "the detected type");
    assert_eq!(file["folder"], "images", "inferred from the type");
    assert_eq!(file["originalName"], "holiday.png");
    assert_eq!(file["size"], bytes.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(file["courseId"], Value::Null);
    let filename = file["filename"].as_str().unwrap();
    assert!(filename.ends_with(".png"), "{filename}");
    assert!(!filename.contains("holiday"), "{filename}");
    let created = assert_utc_time(&file["createdAt"]);
    assert!(
        created >= before && created <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "createdAt {created}"
    );

    // What was answered is what is stored, on disk and in the database.
    assert_eq!(std::fs::read(stored_path(&srv, &file)).unwrap(), bytes);
    assert_disk_holds_only(&srv, &[&file]).await;
    let read = get_file(&srv, &ada, id(&file)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let read = read.data();
    assert_file(&read);
    assert_eq!(without_signed_url(&read), without_signed_url(&file));
    let listed = list_files(&srv, &ada).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(without_signed_url(&listed[0]), without_signed_url(&file));

    // The same bytes again are a second file with its own id and stored name.
    let again = uploaded(&srv, &ada, "holiday.png", &bytes, "image/png").await;
    assert_ne!(again["id"], file["id"]);
    assert_ne!(again["filename"], file["filename"]);
    assert_eq!(again["sha256"], file["sha256"]);
    assert_disk_holds_only(&srv, &[&file, &again]).await;
}

async fn the_folder_is_inferred_from_the_detected_type_unless_one_is_given(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    // (name, bytes, claimed type, folder, stored extension, detected type)
    let cases = [
        (
            "diagram.png",
            png(2),
            "image/png",
            "images",
            "png",
            "image/png",
        ),
        (
            "syllabus.pdf",
            pdf(2),
            "application/pdf",
            "documents",
            "pdf",
            "application/pdf",
        ),
        (
            "lecture.mp4",
            mp4(2),
            "video/mp4",
            "videos",
            "mp4",
            "video/mp4",
        ),
        (
            "notes.txt",
            text(2),
            "text/plain",
            "documents",
            "txt",
            "text/plain",
        ),
    ];
    let mut stored = Vec::new();
    for (name, bytes, claimed, folder, ext, mimetype) in &cases {
        let file = uploaded(&srv, &ada, name, bytes, claimed).await;
        assert_eq!(file["folder"], *folder, "{name}: {file}");
        assert!(
            file["mimetype"].as_str().unwrap().starts_with(mimetype),
            "{name}: {file}"
        );
        let filename = file["filename"].as_str().unwrap();
        assert!(filename.ends_with(&format!(".{ext}")), "{name}: {filename}");
        assert_eq!(file["originalName"], *name);
        assert_eq!(std::fs::read(stored_path(&srv, &file)).unwrap(), *bytes);
        stored.push(file);
    }
    assert_eq!(stored[0]["mimetype"], "image/png");
    assert_eq!(stored[1]["mimetype"], "application/pdf");
    assert_eq!(stored[2]["mimetype"], "video/mp4");

    // A folder given as a field (before the file) or as a query parameter wins, when the
    // type is allowed there.
    let bytes = png(3);
    let as_field = uploaded_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("folder", "misc")
            .part("file", part("in-misc.png", &bytes, "image/png")),
    )
    .await;
    assert_eq!(as_field["folder"], "misc");
    assert_eq!(as_field["mimetype"], "image/png");
    assert!(url(&as_field).starts_with("/uploads/misc/"));
    let bytes = pdf(3);
    let as_query = uploaded_form(
        &srv,
        &ada,
        "?folder=misc",
        Form::new().part("file", part("in-misc.pdf", &bytes, "application/pdf")),
    )
    .await;
    assert_eq!(as_query["folder"], "misc");
    let explicit_images = uploaded_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("folder", "images")
            .part("file", part("explicit.png", &png(4), "image/png")),
    )
    .await;
    assert_eq!(explicit_images["folder"], "images");
    stored.extend([as_field, as_query, explicit_images]);
    let refs: Vec<&Value> = stored.iter().collect();
    assert_disk_holds_only(&srv, &refs).await;
}

async fn text_fields_come_before_the_file_part_or_as_query_parameters(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    srv.enroll(&ada, &course).await;
    let course_id = id_of(&course);

    // After the file, the server has already decided where the bytes go: refused.
    let late_folder = upload_form(
        &srv,
        &ada,
        "",
        Form::new()
            .part("file", part("late.png", &png(5), "image/png"))
            .text("folder", "images"),
    )
    .await;
    late_folder.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(late_folder.field(), "folder");
    let late_course = upload_form(
        &srv,
        &ada,
        "",
        Form::new()
            .part("file", part("late.png", &png(5), "image/png"))
            .text("courseId", course_id.to_owned()),
    )
    .await;
    late_course.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(late_course.field(), "courseId");
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;

    // Before the file, both are taken.
    let early = uploaded_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("folder", "images")
            .text("courseId", course_id.to_owned())
            .part("file", part("early.png", &png(6), "image/png")),
    )
    .await;
    assert_eq!(early["folder"], "images");
    assert_eq!(early["courseId"], course_id);

    // As query parameters, too.
    let query = uploaded_form(
        &srv,
        &teacher,
        &format!("?folder=documents&courseId={course_id}"),
        Form::new().part("file", part("handout.pdf", &pdf(6), "application/pdf")),
    )
    .await;
    assert_eq!(query["folder"], "documents");
    assert_eq!(query["courseId"], course_id);
    assert_disk_holds_only(&srv, &[&early, &query]).await;
}

async fn malformed_upload_requests_name_the_offending_field(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;

    let no_file = upload_form(&srv, &ada, "", Form::new().text("folder", "images")).await;
    no_file.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(no_file.field(), "file");

    let empty_form = upload_raw_body(&srv, &ada, format!("--{BOUNDARY}--\r\n").into_bytes()).await;
    empty_form.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(empty_form.field(), "file");

    // A bad text field before a good file, in the form or the query: the field is named.
    let with_png = |form: Form| form.part("file", part("a.png", &png(8), "image/png"));
    let cases: Vec<(&str, Form, &str)> = vec![
        ("", Form::new().text("comment", "my holiday"), "comment"),
        ("", Form::new().text("folder", "secrets"), "folder"),
        ("?folder=secrets", Form::new(), "folder"),
        ("?folder=..", Form::new(), "folder"),
        ("?folder=images%2F..", Form::new(), "folder"),
        ("", Form::new().text("courseId", "not-a-uuid"), "courseId"),
        ("", Form::new().text("courseId", "123"), "courseId"),
        ("?courseId=not-a-uuid", Form::new(), "courseId"),
        // Each text field once: a form of endless small parts is refused at the second.
        (
            "",
            Form::new()
                .text("folder", "images")
                .text("folder", "images"),
            "folder",
        ),
        (
            "",
            (0..10_000).fold(Form::new(), |form, _| {
                form.text("courseId", "0190a3c4-0000-7000-8000-000000000000")
            }),
            "courseId",
        ),
    ];
    for (query, form, field) in cases {
        let reply = upload_form(&srv, &ada, query, with_png(form)).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), field, "query {query:?}");
    }

    // Not multipart at all.
    let json_body = as_client(&srv, &ada)
        .post(&api("/files/upload"), json!({"file": "aGVsbG8="}))
        .await;
    json_body.assert_error(400, "VALIDATION_FAILED");
    let garbage = as_client(&srv, &ada)
        .post_raw(
            &api("/files/upload"),
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            "this is not a multipart body",
        )
        .await;
    garbage.assert_error(400, "VALIDATION_FAILED");

    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;
}

async fn stored_names_are_generated_and_original_names_are_only_data(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let mut stored = Vec::new();

    // Paths in the name are cut to their last component and never followed.
    let traversal = uploaded(&srv, &ada, "../../etc/passwd.png", &png(10), "image/png").await;
    assert_eq!(traversal["originalName"], "passwd.png");
    assert_eq!(traversal["folder"], "images");
    let root = srv.config.upload_dir.parent().unwrap();
    assert!(
        !root.join("etc").exists(),
        "nothing written outside uploads"
    );
    assert!(!root.join("etc/passwd.png").exists());
    stored.push(traversal);

    // Windows paths, as old browsers send them, byte for byte (no client-side escaping).
    for (raw_name, expected) in [
        (r"C:\Users\mallory\Desktop\evil.pdf", "evil.pdf"),
        (r"..\..\..\windows\win.pdf", "win.pdf"),
        (r"mixed/..\dirs/../report.pdf", "report.pdf"),
    ] {
        let bytes = pdf(stored.len() as u64 + 10);
        let reply = upload_raw_body(
            &srv,
            &ada,
            multipart_body(raw_name, "application/pdf", &bytes),
        )
        .await;
        assert_eq!(reply.status, 201, "{raw_name}: {}", reply.body);
        let file = reply.data();
        assert_file(&file);
        assert_eq!(file["originalName"], expected, "from {raw_name}");
        assert_eq!(file["folder"], "documents");
        assert_eq!(file["sha256"], sha256_hex(&bytes).as_str());
        stored.push(file);
    }

    // Control characters are dropped (a tab and C1 controls are what can travel in a part
    // header; NUL and C0 controls are refused by the multipart parser itself).
    let controls = uploaded(
        &srv,
        &ada,
        "tab\tbed\u{85}ded\u{9b}.png",
        &png(20),
        "image/png",
    )
    .await;
    assert_eq!(controls["originalName"], "tabbedded.png");
    stored.push(controls);

    // Long names keep 255 characters, extension included.
    let long_name = format!("{}.png", "a".repeat(300));
    let long = uploaded(&srv, &ada, &long_name, &png(21), "image/png").await;
    let kept = long["originalName"].as_str().unwrap();
    assert_eq!(kept.chars().count(), 255, "{kept}");
    assert!(kept.ends_with(".png") && kept.starts_with("aaaa"), "{kept}");
    let wide_name = format!("{}.png", "é".repeat(300));
    let wide = uploaded(&srv, &ada, &wide_name, &png(22), "image/png").await;
    let kept = wide["originalName"].as_str().unwrap();
    assert!(kept.chars().count() <= 255, "{kept}");
    assert!(kept.ends_with(".png") && kept.starts_with("ééé"), "{kept}");
    stored.push(long);
    stored.push(wide);

    // The stored names owe nothing to the original ones.
    for file in &stored {
        let filename = file["filename"].as_str().unwrap();
        let original = file["originalName"].as_str().unwrap();
        let stem = original.split('.').next().unwrap();
        assert!(
            !filename.contains(stem),
            "{filename} contains part of {original}"
        );
    }
    let names: HashSet<&str> = stored
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), stored.len(), "every stored name is new");
    let refs: Vec<&Value> = stored.iter().collect();
    assert_disk_holds_only(&srv, &refs).await;
}

async fn names_with_direction_overrides_are_rejected_by_policy(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    for name in [
        "cat\u{202E}gnp.exe",
        "photo\u{202E}gpj.png",
        "report\u{202E}fdp.pdf",
    ] {
        let bytes = if name.ends_with(".pdf") {
            pdf(30)
        } else {
            png(30)
        };
        let reply = upload(&srv, &ada, name, &bytes, "application/octet-stream").await;
        let reason = assert_refused(&reply, 422, "REJECTED_BY_POLICY");
        assert_eq!(reason, "suspicious_name", "{name:?}: {}", reply.body);
    }
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;
}

async fn the_detected_type_decides_and_disguised_files_are_refused(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;

    // (name, bytes, claimed type, the reason when it is unambiguous)
    let unsupported: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        ("x.png", b"hello".to_vec(), "image/png", None),
        ("report.pdf", elf(), "application/pdf", Some("executable")),
        ("photo.png", pe(), "image/png", Some("executable")),
        (
            "tool.pdf",
            pe(),
            "application/octet-stream",
            Some("executable"),
        ),
        (
            "notes.pdf",
            b"#!/bin/sh\nrm -rf ~\n".to_vec(),
            "application/pdf",
            Some("executable"),
        ),
        (
            "invoice.pdf.exe",
            pdf(31),
            "application/pdf",
            Some("double_extension"),
        ),
        ("setup.exe", pe(), "application/octet-stream", None),
        (
            "icon.svg",
            SVG_SCRIPT.as_bytes().to_vec(),
            "image/svg+xml",
            Some("svg_script"),
        ),
        (
            "badge.svg",
            SVG_ONLOAD.as_bytes().to_vec(),
            "image/svg+xml",
            Some("svg_script"),
        ),
        (
            "page.html",
            b"<!doctype html><html><body><script>alert(1)</script></body></html>".to_vec(),
            "text/html",
            None,
        ),
        (
            "page.txt",
            b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec(),
            "text/plain",
            None,
        ),
        ("picture.pdf", png(31), "application/pdf", None),
        ("movie.png", mp4(31), "image/png", None),
    ];
    for (name, bytes, claimed, reason) in &unsupported {
        let reply = upload(&srv, &ada, name, bytes, claimed).await;
        let got = assert_refused(&reply, 415, "UNSUPPORTED_MEDIA_TYPE");
        if let Some(reason) = reason {
            assert_eq!(got, *reason, "{name}: {}", reply.body);
        }
    }

    // A type the chosen folder does not take.
    let reply = upload_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("folder", "documents")
            .part("file", part("photo.png", &png(32), "image/png")),
    )
    .await;
    assert_refused(&reply, 415, "UNSUPPORTED_MEDIA_TYPE");
    let reply = upload_form(
        &srv,
        &ada,
        "?folder=videos",
        Form::new().part("file", part("syllabus.pdf", &pdf(32), "application/pdf")),
    )
    .await;
    assert_refused(&reply, 415, "UNSUPPORTED_MEDIA_TYPE");

    // An empty file is refused by policy, not as a type.
    let reply = upload(&srv, &ada, "empty.txt", b"", "text/plain").await;
    assert_refused(&reply, 422, "REJECTED_BY_POLICY");

    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;

    // An SVG without anything active is an image like any other.
    let svg = uploaded(&srv, &ada, "dot.svg", SVG_CLEAN.as_bytes(), "image/svg+xml").await;
    assert_eq!(svg["folder"], "images");
    assert_eq!(svg["mimetype"], "image/svg+xml");
    assert_disk_holds_only(&srv, &[&svg]).await;
}

async fn plugin_refusals_after_the_bytes_arrive_map_to_413_and_422(backend: Backend) {
    let blocked = png(35);
    let plugins = format!(
        r#"
[files]
failure = "fail-closed"

[[files.plugins]]
source = "builtin:file-validation"

[files.plugins.config]
blocked_sha256 = ["{}"]

[files.plugins.config.folders.images]
max_bytes = 16384
"#,
        sha256_hex(&blocked)
    );
    let srv = start_with(backend, move |config| {
        let path = config
            .data_dir
            .parent()
            .expect("the server's temp dir")
            .join("plugins.toml");
        std::fs::write(&path, plugins).expect("plugins.toml written");
        config.plugins_config = path;
    })
    .await;
    let ada = srv.register("student").await;

    // Refused by digest, once all of it has been seen.
    let reply = upload(&srv, &ada, "blocked.png", &blocked, "image/png").await;
    let reason = assert_refused(&reply, 422, "REJECTED_BY_POLICY");
    assert_eq!(reason, "blocked_file", "{}", reply.body);

    // Over the plugin's own cap for images (the host's is the default 20 MiB): 413, whether
    // or not the length is known up front.
    for chunked in [false, true] {
        let body = png_upload_body(&[], "big.png", &png_sized(36, 32 * KIB as usize));
        let reply = raw_upload(&srv, &ada.token, body, chunked).await;
        reply.assert_error(413, "PAYLOAD_TOO_LARGE");
        // The plugin's code travels in details.reason, as on 415 and 422.
        let error = &reply.json()["error"];
        assert_eq!(error["details"]["reason"], "too_large", "{error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }

    // An SVG too large to inspect whole.
    let padding = format!("<!-- {} -->", "x".repeat(70 * KIB as usize));
    let big_svg = SVG_CLEAN.replace("<rect", &format!("{padding}<rect"));
    let reply = upload(&srv, &ada, "huge.svg", big_svg.as_bytes(), "image/svg+xml").await;
    assert_refused(&reply, 422, "REJECTED_BY_POLICY");

    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;

    // Under the plugin's cap, and not blocked: stored.
    let small = uploaded(&srv, &ada, "small.png", &png(37), "image/png").await;
    assert_disk_holds_only(&srv, &[&small]).await;
}

async fn sha256_and_size_describe_the_bytes_received(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    // Big enough to arrive in many reads; every byte value, so no accidental text handling.
    let mut bytes = png_sized(40, 300 * KIB as usize + 7);
    let tail: Vec<u8> = (0..=255u8).collect();
    // Inside the filler chunk, before its CRC and the IEND chunk.
    let end = bytes.len() - 16;
    bytes[end - 256..end].copy_from_slice(&tail);
    let file = uploaded(&srv, &ada, "big.png", &bytes, "image/png").await;
    assert_eq!(file["size"], bytes.len() as u64);
    assert_eq!(file["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(std::fs::read(stored_path(&srv, &file)).unwrap(), bytes);
    let fetched = download(&as_client(&srv, &ada), &file).await;
    assert_served(&fetched, &file, &bytes);
    assert_eq!(sha256_hex(&fetched.bytes), file["sha256"].as_str().unwrap());
}
