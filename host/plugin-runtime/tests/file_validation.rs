//! The default file validation plugin, through the real runtime.

mod common;

use common::{builtin, builtin_with, ctx, engine};
use lyceum_plugin_runtime::{
    FileFinish, FilePrecheck, FileVerdict, PolicyContext, PolicyEngine, Role, Slot,
};
use serde_json::json;

const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0";
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
];
const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0";
const PE: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0";
const MACHO: &[u8] = &[0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1, 3, 0, 0, 0];
const SCRIPT: &[u8] = b"#!/bin/sh\necho hello\n";
const HTML: &[u8] = b"\n  <!DOCTYPE html><html><body><script>alert(1)</script></body></html>";
const SVG: &[u8] = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\"><circle r=\"4\"/></svg>";
const SVG_SCRIPT: &[u8] =
    b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
const SVG_HANDLER: &[u8] =
    b"<svg xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"1\" onclick =\"steal()\"/></svg>";
const MP4: &[u8] = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2mp41";
const MP3: &[u8] = b"ID3\x04\0\0\0\0\0\x21TIT2";
const CSV: &[u8] = b"name,score\nann,10\nbob,9\n";
const TEXT: &[u8] = "notes for week 1 \u{2014} caf\u{e9}\n".as_bytes();
const NOISE: &[u8] = &[0x00, 0x13, 0x37, 0xC0, 0xDE, 0x00, 0x42, 0x99, 0xFE, 0x01];

fn zip(entries: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in entries {
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[0; 22]);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"<data>");
    }
    out
}

fn upload(name: &str, folder: Option<&str>, declared: Option<&str>, bytes: &[u8]) -> FilePrecheck {
    FilePrecheck {
        name: name.into(),
        folder: folder.map(Into::into),
        declared_type: declared.map(Into::into),
        declared_size: Some(bytes.len() as u64),
        sniffed_type: None,
        head: bytes.to_vec(),
    }
}

#[derive(Debug)]
enum Expect {
    Accept,
    AcceptInto(&'static str),
    Renamed(&'static str),
    Reject(&'static str),
}

fn check(engine: &PolicyEngine, input: &FilePrecheck, expect: &Expect) {
    let verdict = engine
        .precheck_file_blocking(&ctx(Role::Student), input)
        .unwrap();
    let ok = match (expect, &verdict) {
        (
            Expect::Accept,
            FileVerdict::Accept {
                folder: None,
                name: None,
            },
        ) => true,
        (
            Expect::AcceptInto(want),
            FileVerdict::Accept {
                folder: Some(got),
                name: None,
            },
        ) => got == want,
        (
            Expect::Renamed(want),
            FileVerdict::Accept {
                name: Some(got), ..
            },
        ) => got == want,
        (Expect::Reject(code), FileVerdict::Reject(r)) => r.code == *code && !r.reason.is_empty(),
        _ => false,
    };
    assert!(
        ok,
        "{} ({:?}): expected {expect:?}, got {verdict:?}",
        input.name, input.folder
    );
}

#[test]
fn precheck_sniffs_and_checks_agreement() {
    let engine = engine(Slot::Files, vec![builtin(Slot::Files)]);
    let docx = zip(&["[Content_Types].xml", "_rels/.rels", "word/document.xml"]);
    let plain_zip = zip(&["notes/readme.txt"]);
    let cases: Vec<(FilePrecheck, Expect)> = vec![
        (
            upload("notes.pdf", Some("documents"), Some("application/pdf"), PDF),
            Expect::Accept,
        ),
        (
            upload(
                "notes.pdf",
                Some("documents"),
                Some("application/octet-stream"),
                PDF,
            ),
            Expect::Accept,
        ),
        (
            upload("photo.png", Some("images"), Some("image/png"), PNG),
            Expect::Accept,
        ),
        (
            upload("photo.PNG", None, None, PNG),
            Expect::AcceptInto("images"),
        ),
        (
            upload("photo.jpg", Some("images"), Some("image/jpg"), JPEG),
            Expect::Accept,
        ),
        (
            upload("talk.mp4", None, Some("video/mp4"), MP4),
            Expect::AcceptInto("videos"),
        ),
        (
            upload("song.mp3", None, Some("audio/mpeg"), MP3),
            Expect::AcceptInto("videos"),
        ),
        (
            upload("essay.docx", Some("documents"), None, &docx),
            Expect::Accept,
        ),
        (
            upload(
                "bundle.zip",
                Some("misc"),
                Some("application/zip"),
                &plain_zip,
            ),
            Expect::Accept,
        ),
        (
            upload(
                "scores.csv",
                Some("documents"),
                Some("application/vnd.ms-excel"),
                CSV,
            ),
            Expect::Accept,
        ),
        (
            upload("week1.txt", Some("documents"), Some("text/plain"), TEXT),
            Expect::Accept,
        ),
        (
            upload("main.py", Some("documents"), None, TEXT),
            Expect::Accept,
        ),
        (
            upload("logo.svg", Some("images"), Some("image/svg+xml"), SVG),
            Expect::Accept,
        ),
        // Corrections: a missing extension is added, a path is cut to its last part.
        (
            upload("photo", Some("images"), None, PNG),
            Expect::Renamed("photo.png"),
        ),
        (
            upload("../../etc/week1.txt", Some("documents"), None, TEXT),
            Expect::Renamed("week1.txt"),
        ),
        // Disagreements.
        (
            upload("photo.pdf", Some("documents"), None, PNG),
            Expect::Reject("type_mismatch"),
        ),
        (
            upload("photo.jpg", Some("images"), Some("image/png"), JPEG),
            Expect::Reject("type_mismatch"),
        ),
        (
            upload("essay.docx", Some("documents"), None, PDF),
            Expect::Reject("type_mismatch"),
        ),
        (
            upload("data.bin1", Some("misc"), None, PNG),
            Expect::Reject("type_mismatch"),
        ),
        // Executables and scripts, whatever they are called.
        (
            upload("tool", Some("misc"), None, ELF),
            Expect::Reject("executable"),
        ),
        (
            upload("notes.pdf", Some("documents"), None, ELF),
            Expect::Reject("executable"),
        ),
        (
            upload("setup.png", Some("images"), None, PE),
            Expect::Reject("executable"),
        ),
        (
            upload("app.zip", Some("misc"), None, MACHO),
            Expect::Reject("executable"),
        ),
        (
            upload("run.txt", Some("documents"), None, SCRIPT),
            Expect::Reject("executable"),
        ),
        (
            upload("setup.exe", Some("misc"), None, PDF),
            Expect::Reject("executable"),
        ),
        (
            upload("invoice.pdf.exe", Some("misc"), None, PDF),
            Expect::Reject("double_extension"),
        ),
        (
            upload("invoice\u{202E}fdp.exe", Some("misc"), None, PDF),
            Expect::Reject("suspicious_name"),
        ),
        // Active content.
        (
            upload("page.txt", Some("documents"), None, HTML),
            Expect::Reject("html_not_allowed"),
        ),
        (
            upload("page.html", Some("documents"), None, TEXT),
            Expect::Reject("html_not_allowed"),
        ),
        (
            upload("logo.svg", Some("images"), None, SVG_SCRIPT),
            Expect::Reject("svg_script"),
        ),
        (
            upload("logo.svg", Some("images"), None, SVG_HANDLER),
            Expect::Reject("svg_script"),
        ),
        // Folders and sizes.
        (
            upload("photo.png", Some("documents"), None, PNG),
            Expect::Reject("type_not_allowed"),
        ),
        (
            upload("photo.png", Some("secret"), None, PNG),
            Expect::Reject("unknown_folder"),
        ),
        (
            FilePrecheck {
                declared_size: Some(25 << 20),
                ..upload("big.png", Some("images"), None, PNG)
            },
            Expect::Reject("too_large"),
        ),
        (
            FilePrecheck {
                declared_size: Some(100_000),
                ..upload("big.svg", Some("images"), None, SVG)
            },
            Expect::Reject("svg_too_large"),
        ),
        (
            upload("empty.txt", Some("documents"), None, b""),
            Expect::Reject("empty_file"),
        ),
        (
            upload("mystery.dat", Some("misc"), None, NOISE),
            Expect::Reject("unknown_type"),
        ),
    ];
    for (input, expect) in &cases {
        check(&engine, input, expect);
    }
}

fn done(name: &str, folder: &str, size: u64, sha256: &str) -> FileFinish {
    FileFinish {
        name: name.into(),
        folder: Some(folder.into()),
        declared_type: None,
        size,
        sha256: sha256.into(),
        sniffed_type: None,
    }
}

fn finish(engine: &PolicyEngine, ctx: &PolicyContext, input: &FileFinish) -> Result<(), String> {
    match engine.finish_file_blocking(ctx, input).unwrap() {
        FileVerdict::Accept { .. } => Ok(()),
        FileVerdict::Reject(r) => Err(r.code),
    }
}

#[test]
fn finish_checks_size_hash_and_what_precheck_saw() {
    let blocked = "a".repeat(64);
    let engine = engine(
        Slot::Files,
        vec![builtin_with(
            Slot::Files,
            json!({ "folders": { "images": { "max_bytes": 1048576 } }, "blocked_sha256": [blocked.to_uppercase()] }),
        )],
    );
    let ctx = ctx(Role::Student);
    let hash = "0".repeat(64);
    assert_eq!(
        finish(&engine, &ctx, &done("photo.png", "images", 1000, &hash)),
        Ok(())
    );
    assert_eq!(
        finish(&engine, &ctx, &done("photo.png", "images", 2 << 20, &hash)),
        Err("too_large".into())
    );
    assert_eq!(
        finish(&engine, &ctx, &done("photo.png", "images", 1000, &blocked)),
        Err("blocked_file".into())
    );
    assert_eq!(
        finish(&engine, &ctx, &done("photo.png", "images", 0, &hash)),
        Err("empty_file".into())
    );
    assert_eq!(
        finish(&engine, &ctx, &done("x.svg", "images", 70_000, &hash)),
        Err("svg_too_large".into())
    );

    // An SVG whose size was not declared passes precheck; precheck leaves a note in the host
    // store under the request id, and finish refuses it once the real size is known, even
    // under a name that no longer says SVG.
    let mut svg = upload("drawing", Some("images"), None, SVG);
    svg.declared_size = None;
    let mut upload_ctx = common::ctx(Role::Student);
    upload_ctx.request_id = "upload-42".into();
    match engine.precheck_file_blocking(&upload_ctx, &svg).unwrap() {
        FileVerdict::Accept { name, .. } => assert_eq!(name.as_deref(), Some("drawing.svg")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        finish(
            &engine,
            &upload_ctx,
            &done("drawing", "images", 70_000, &hash)
        ),
        Err("svg_too_large".into())
    );
    assert_eq!(
        finish(&engine, &ctx, &done("drawing", "images", 70_000, &hash)),
        Ok(()),
        "another request has no note"
    );
}

#[test]
fn folder_configuration_is_merged_over_the_defaults() {
    let engine = engine(
        Slot::Files,
        vec![builtin_with(
            Slot::Files,
            json!({ "folders": { "images": { "types": ["image/png"] }, "slides": { "types": ["application/pdf"], "max_bytes": 10 } } }),
        )],
    );
    check(
        &engine,
        &upload("photo.jpg", Some("images"), None, JPEG),
        &Expect::Reject("type_not_allowed"),
    );
    check(
        &engine,
        &upload("photo.png", Some("images"), None, PNG),
        &Expect::Accept,
    );
    check(
        &engine,
        &upload("deck.pdf", Some("slides"), None, PDF),
        &Expect::Reject("too_large"),
    );
    check(
        &engine,
        &upload("notes.pdf", Some("documents"), None, PDF),
        &Expect::Accept,
    );
}
