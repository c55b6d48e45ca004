//! Files, per the Files section of the contract: streamed multipart uploads checked by the file
//! validation plugin, generated stored names, per-folder caps and the per-user quota enforced
//! while the bytes arrive, downloads with ranges, validators and safe headers, the bearer and
//! signed `url`s, who may read and delete, listing, and what is left on disk after refusals,
//! aborted uploads and deletes.
//!
//! Uploads that succeed go through reqwest's multipart form. Uploads that are refused with 413,
//! aborted half way or held open mid-body speak raw HTTP/1.1 over a `TcpStream`, since a
//! server may answer (and close) before the body is sent, and only a raw socket can stop
//! sending without closing.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use futures::future::join_all;
use lyceum::config::Config;
use lyceum_tests::check::*;
use lyceum_tests::{Account, Backend, Client, Reply, TestServer, backend_tests};
use reqwest::{
    Method,
    header::HeaderMap,
    multipart::{Form, Part},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

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
    downloads_serve_the_bytes_with_safe_headers,
    documents_download_as_attachments_under_their_original_name,
    if_none_match_answers_304_for_the_current_etag,
    ranges_are_served_clamped_or_refused_and_odd_ones_ignored,
    files_are_private_to_their_owner_and_admins,
    course_files_are_readable_by_the_course_members,
    uploading_into_a_course_takes_membership_of_it,
    signed_urls_work_without_a_header_and_refuse_tampering,
    signed_urls_expire,
    deleting_a_file_removes_it_everywhere,
    only_the_owner_or_an_admin_deletes_a_file,
    files_are_listed_newest_first_and_paged_without_repeats_or_skips,
    an_upload_over_its_folder_cap_is_refused_and_leaves_nothing,
    a_declared_length_over_every_cap_is_refused_before_the_body_is_sent,
    an_upload_is_refused_as_soon_as_it_passes_its_cap,
    the_user_quota_counts_every_stored_byte,
    an_aborted_upload_leaves_nothing_behind,
    concurrent_uploads_by_one_user_all_succeed,
    stale_temporary_files_are_swept_at_start_up,
    stored_bytes_without_a_row_are_removed_after_start_up_once_an_hour_old,
    file_endpoints_require_a_token_and_unknown_ids_are_not_found,
);

// ---------------------------------------------------------------------------------------------
// Helpers

const FILE_KEYS: [&str; 11] = [
    "courseId",
    "createdAt",
    "filename",
    "folder",
    "id",
    "mimetype",
    "originalName",
    "sha256",
    "signedUrl",
    "size",
    "url",
];
/// A well-formed UUIDv7 that names nothing.
const UNKNOWN_ID: &str = "0190a000-0000-7000-8000-000000000000";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// How long a refusal may take to arrive.
const WAIT: Duration = Duration::from_secs(10);
/// How long the server may take to clean up after a refused or aborted upload.
const DISK_WAIT: Duration = Duration::from_secs(5);
const BOUNDARY: &str = "lyceum-test-boundary-7e3f1c";

/// Servers are never fully dropped within a test process, so on PostgreSQL (one shared
/// `max_connections`) each keeps a small pool, as in the chat tests.
fn small_pool(backend: Backend, config: &mut Config) {
    if backend == Backend::Postgres {
        config.db_max_connections = 3;
    }
}

async fn start(backend: Backend) -> TestServer {
    start_with(backend, |_| {}).await
}

async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(backend, |config| {
        small_pool(backend, config);
        adjust(config);
    })
    .await
}

// Payloads: just enough of each format for magic-byte sniffing, padded with bytes derived from
// `seed` so that different uploads have different digests.

fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A PNG of exactly `len` bytes (at least 57): signature, IHDR, a private chunk of filler, IEND.
fn png_sized(seed: u64, len: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0];
    out.extend(png_chunk(b"IHDR", &ihdr));
    let iend = png_chunk(b"IEND", &[]);
    let fixed = out.len() + 12 + iend.len();
    assert!(len >= fixed, "a PNG needs at least {fixed} bytes");
    out.extend(png_chunk(b"lyCe", &filler(seed, len - fixed)));
    out.extend(iend);
    assert_eq!(out.len(), len);
    out
}

fn png(seed: u64) -> Vec<u8> {
    png_sized(seed, 2048)
}

fn pdf(seed: u64) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n".to_vec();
    out.extend_from_slice(format!("% filler {seed}\n").as_bytes());
    out.extend_from_slice(&filler(seed, 1500));
    out.extend_from_slice(b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    out
}

fn mp4(seed: u64) -> Vec<u8> {
    let mut out = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    out.extend_from_slice(&[0u8; 512]);
    out.extend_from_slice(&filler(seed, 1024));
    out
}

fn text(seed: u64) -> Vec<u8> {
    format!("Lecture notes {seed}\nConsensus needs a majority.\nClocks drift.\n").into_bytes()
}

fn elf() -> Vec<u8> {
    let mut out = b"\x7fELF\x02\x01\x01\0".to_vec();
    out.extend_from_slice(&[0u8; 256]);
    out
}

fn pe() -> Vec<u8> {
    let mut out = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    out.extend_from_slice(b"This program cannot be run in DOS mode.\r\r\n$");
    out.extend_from_slice(&[0u8; 200]);
    out
}

const SVG_CLEAN: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1"/></svg>"#;
const SVG_SCRIPT: &str =
    r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>"#;
const SVG_ONLOAD: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="1" height="1"/></svg>"#;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn part(name: &str, bytes: &[u8], mime: &str) -> Part {
    Part::bytes(bytes.to_vec())
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

/// POSTs `form` to the upload endpoint (with `query`, which starts with `?` when not empty).
async fn upload_form(srv: &TestServer, who: &Account, query: &str, form: Form) -> Reply {
    let client = as_client(srv, who);
    client
        .send(
            client
                .request(Method::POST, &api(&format!("/files/upload{query}")))
                .multipart(form),
        )
        .await
}

async fn upload(srv: &TestServer, who: &Account, name: &str, bytes: &[u8], mime: &str) -> Reply {
    upload_form(
        srv,
        who,
        "",
        Form::new().part("file", part(name, bytes, mime)),
    )
    .await
}

/// An upload that must succeed: the `file`, checked for shape and against the bytes sent.
async fn uploaded(srv: &TestServer, who: &Account, name: &str, bytes: &[u8], mime: &str) -> Value {
    let reply = upload(srv, who, name, bytes, mime).await;
    assert_eq!(reply.status, 201, "upload {name}: {}", reply.body);
    let file = reply.data();
    assert_file(&file);
    assert_eq!(file["size"], bytes.len() as u64, "{file}");
    assert_eq!(file["sha256"], sha256_hex(bytes).as_str(), "{file}");
    file
}

/// A successful upload through a form built by the caller.
async fn uploaded_form(srv: &TestServer, who: &Account, query: &str, form: Form) -> Value {
    let reply = upload_form(srv, who, query, form).await;
    assert_eq!(reply.status, 201, "upload: {}", reply.body);
    let file = reply.data();
    assert_file(&file);
    file
}

/// POSTs a multipart body built byte by byte (for names reqwest would escape).
async fn upload_raw_body(srv: &TestServer, who: &Account, body: Vec<u8>) -> Reply {
    as_client(srv, who)
        .post_raw(
            &api("/files/upload"),
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            body,
        )
        .await
}

/// The head of the `file` part: everything before its bytes.
fn file_part_head(filename: &str, mime: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes()
}

fn text_part(name: &str, value: &str) -> Vec<u8> {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        .into_bytes()
}

fn closing() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}

/// A whole multipart body with one file part, named exactly as given.
fn multipart_body(filename: &str, mime: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = file_part_head(filename, mime);
    body.extend_from_slice(bytes);
    body.extend(closing());
    body
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The contract's `file` shape: exactly its keys, a UUIDv7, a UTC time, a generated
/// `<32 hex>.<ext>` name, and the two urls built from folder and filename.
#[track_caller]
fn assert_file(file: &Value) {
    assert_keys(file, &FILE_KEYS);
    assert_uuid_v7(&file["id"]);
    assert_utc_time(&file["createdAt"]);
    let folder = file["folder"].as_str().expect("folder");
    assert!(
        ["documents", "images", "videos", "misc"].contains(&folder),
        "folder {folder}"
    );
    let filename = file["filename"].as_str().expect("filename");
    let (stem, ext) = filename
        .split_once('.')
        .expect("filename with an extension");
    assert!(
        stem.len() == 32 && is_lower_hex(stem),
        "generated filename {filename}"
    );
    assert!(
        !ext.is_empty()
            && ext
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "extension of {filename}"
    );
    let url = format!("/uploads/{folder}/{filename}");
    assert_eq!(file["url"], url.as_str());
    let signed = file["signedUrl"].as_str().expect("signedUrl");
    let query = signed
        .strip_prefix(&format!("{url}?"))
        .unwrap_or_else(|| panic!("signedUrl {signed} is not url + query"));
    let (expires, sig) = query
        .strip_prefix("expires=")
        .and_then(|q| q.split_once("&sig="))
        .unwrap_or_else(|| panic!("signedUrl query {query}"));
    let expires: i64 = expires.parse().expect("expires is a unix time");
    assert!(
        expires > chrono::Utc::now().timestamp() - 5,
        "expires {expires}"
    );
    assert!(!sig.is_empty(), "{signed}");
    let sha = file["sha256"].as_str().expect("sha256");
    assert!(sha.len() == 64 && is_lower_hex(sha), "sha256 {sha}");
    assert!(file["size"].is_u64(), "size {}", file["size"]);
    assert!(
        file["mimetype"].as_str().is_some_and(|m| m.contains('/')),
        "mimetype {}",
        file["mimetype"]
    );
    assert!(file["originalName"].is_string());
    assert!(file["courseId"].is_null() || file["courseId"].is_string());
}

fn id(file: &Value) -> &str {
    id_of(file)
}

fn url(file: &Value) -> &str {
    file["url"].as_str().unwrap()
}

fn signed_url(file: &Value) -> &str {
    file["signedUrl"].as_str().unwrap()
}

/// The file as stored on disk.
fn stored_path(srv: &TestServer, file: &Value) -> PathBuf {
    srv.config
        .upload_dir
        .join(file["folder"].as_str().unwrap())
        .join(file["filename"].as_str().unwrap())
}

/// Every regular file under `dir`, hidden directories (the `.tmp` of partial uploads) included.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else {
                // Regular files, and anything else that is not a directory (a symlink would be
                // as wrong as a leftover).
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Waits (up to [`DISK_WAIT`]) until the upload dir holds exactly the stored files of `files`.
async fn assert_disk_holds_only(srv: &TestServer, files: &[&Value]) {
    let mut expected: Vec<PathBuf> = files.iter().map(|f| stored_path(srv, f)).collect();
    expected.sort();
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        let found = regular_files(&srv.config.upload_dir);
        if found == expected {
            return;
        }
        if Instant::now() > deadline {
            panic!("the upload dir holds {found:?}, expected exactly {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn list_files(srv: &TestServer, who: &Account) -> Vec<Value> {
    let reply = as_client(srv, who).get(&api("/files")).await;
    assert_eq!(reply.status, 200, "list files: {}", reply.body);
    let data = reply.data();
    assert_keys(&data, &["items", "nextCursor"]);
    let items = data["items"].as_array().unwrap().clone();
    for item in &items {
        assert_file(item);
    }
    items
}

async fn get_file(srv: &TestServer, who: &Account, file_id: &str) -> Reply {
    as_client(srv, who)
        .get(&api(&format!("/files/{file_id}")))
        .await
}

/// The `file` without its `signedUrl`, whose expiry is computed per answer.
fn without_signed_url(file: &Value) -> Value {
    let mut file = file.clone();
    file.as_object_mut().unwrap().remove("signedUrl");
    file
}

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

/// A response read in full, bytes and all.
struct Fetched {
    status: u16,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        let body = self.json();
        assert_eq!(
            (
                self.status,
                body["success"].clone(),
                body["error"]["code"].clone()
            ),
            (status, json!(false), json!(code)),
            "body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
    }
}

async fn fetch(builder: reqwest::RequestBuilder) -> Fetched {
    let response = builder.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read").to_vec();
    Fetched {
        status,
        headers,
        bytes,
    }
}

/// GET (or another method) of `path` with the given extra headers, as `client`.
async fn fetch_with(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Fetched {
    let mut builder = client.request(method, path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    fetch(builder).await
}

async fn download(client: &Client, file: &Value) -> Fetched {
    fetch_with(
        client,
        Method::GET,
        &api(&format!("/files/{}/download", id(file))),
        &[],
    )
    .await
}

/// The three ways to the bytes: the download endpoint and `url` (both with the client's
/// token, if any) and `signedUrl` (with it too; it should not matter).
fn byte_paths(file: &Value) -> [String; 2] {
    [
        api(&format!("/files/{}/download", id(file))),
        url(file).to_owned(),
    ]
}

#[track_caller]
fn assert_served(fetched: &Fetched, file: &Value, bytes: &[u8]) {
    assert_eq!(
        fetched.status,
        200,
        "{}",
        String::from_utf8_lossy(&fetched.bytes)
    );
    assert_eq!(fetched.bytes, bytes, "the stored bytes come back");
    assert_eq!(fetched.header("x-content-type-options"), "nosniff");
    assert_eq!(
        fetched.header("etag"),
        format!("\"{}\"", file["sha256"].as_str().unwrap())
    );
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `Content-Disposition` split into its type and parameters, honouring quoted strings (whose
/// values come back unquoted and unescaped).
fn disposition(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => pieces.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    pieces.push(current);
    let mut pieces = pieces.into_iter();
    let kind = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((&p, ""));
            let v = v.trim();
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => {
                    let mut out = String::new();
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        out.push(if c == '\\' {
                            chars.next().unwrap_or(c)
                        } else {
                            c
                        });
                    }
                    out
                }
                None => v.to_owned(),
            };
            (k.trim().to_ascii_lowercase(), v)
        })
        .collect();
    (kind, params)
}

fn params_named<'a>(params: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The original name carried by `filename*=UTF-8''...`.
#[track_caller]
fn extended_filename(params: &[(String, String)]) -> String {
    let extended = params_named(params, "filename*");
    assert_eq!(extended.len(), 1, "one filename* in {params:?}");
    let encoded = extended[0]
        .strip_prefix("UTF-8''")
        .or_else(|| extended[0].strip_prefix("utf-8''"))
        .unwrap_or_else(|| panic!("filename* {}", extended[0]));
    assert!(
        encoded.is_ascii() && !encoded.contains([' ', '"', ';']),
        "filename* is percent-encoded: {encoded}"
    );
    String::from_utf8(percent_decode(encoded)).expect("UTF-8 in filename*")
}

// Raw HTTP/1.1, for uploads the server may answer before the body is sent.

enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, body["error"]["code"].clone()),
            (status, json!(code)),
            "headers {:?} body {}",
            self.headers,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(body["success"], false);
    }
}

/// Opens a connection and sends the head of an upload request.
async fn open_upload(
    srv: &TestServer,
    token: &str,
    framing: &Framing,
) -> (OwnedReadHalf, OwnedWriteHalf) {
    let stream = TcpStream::connect(srv.addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (reader, mut writer) = stream.into_split();
    let length = match framing {
        Framing::Length(n) => format!("Content-Length: {n}\r\n"),
        Framing::Chunked => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    let head = format!(
        "POST /api/v1/files/upload HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length}\r\n",
        srv.addr
    );
    writer
        .write_all(head.as_bytes())
        .await
        .expect("request head sent");
    (reader, writer)
}

/// Sends `bytes` of the body in pieces, as chunks when the framing says so.
async fn send_body(writer: &mut OwnedWriteHalf, framing: &Framing, bytes: &[u8]) -> bool {
    for piece in bytes.chunks(64 * 1024) {
        let result = match framing {
            Framing::Length(_) => writer.write_all(piece).await,
            Framing::Chunked => {
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(piece);
                chunk.extend_from_slice(b"\r\n");
                writer.write_all(&chunk).await
            }
        };
        if result.is_err() {
            return false;
        }
    }
    true
}

async fn finish_body(writer: &mut OwnedWriteHalf, framing: &Framing) {
    if let Framing::Chunked = framing {
        let _ = writer.write_all(b"0\r\n\r\n").await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response: the head, then a `Content-Length` body, a chunked body, or to EOF.
async fn read_response(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = buf[head_end + 4..].to_vec();
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while find(&body, b"0\r\n\r\n").is_none() {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    } else if status != 304 && status != 204 {
        loop {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_default();
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = &raw[(end + 2).min(raw.len())..];
    }
    out
}

/// Sends a whole upload over a raw socket (ignoring write errors: the server may answer and
/// close before reading it all) and reads the response.
async fn raw_upload(srv: &TestServer, token: &str, body: Vec<u8>, chunked: bool) -> RawResponse {
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::Length(body.len() as u64)
    };
    let (mut reader, mut writer) = open_upload(srv, token, &framing).await;
    let sender = tokio::spawn(async move {
        if send_body(&mut writer, &framing, &body).await {
            finish_body(&mut writer, &framing).await;
        }
        // Keep the sending half open until the response has been read.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(writer);
    });
    let response = tokio::time::timeout(WAIT, read_response(&mut reader))
        .await
        .expect("a response in time")
        .expect("a response");
    sender.abort();
    response
}

/// A multipart body with one PNG file part of `len` bytes (and optional text fields first).
fn png_upload_body(fields: &[(&str, &str)], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(text_part(k, v));
    }
    body.extend(multipart_body(name, "image/png", bytes));
    body
}

/// Starts an upload of a PNG that would be `claimed` bytes long, sends `sent` bytes of it and
/// then stops sending without closing; the response must come while the client waits.
async fn upload_stalled_past_the_cap(srv: &TestServer, token: &str, chunked: bool) -> RawResponse {
    let claimed = 64 * MIB;
    let sent = 2 * MIB as usize;
    let mut head = file_part_head("huge.png", "image/png");
    let framing = if chunked {
        Framing::Chunked
    } else {
        Framing::Length(head.len() as u64 + claimed + closing().len() as u64)
    };
    head.extend(png_sized(7, sent));
    let (mut reader, mut writer) = open_upload(srv, token, &framing).await;
    let sender = tokio::spawn(async move {
        send_body(&mut writer, &framing, &head).await;
        // Stop here: neither the rest of the body nor a close.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(writer);
    });
    let response = tokio::time::timeout(WAIT, read_response(&mut reader))
        .await
        .expect("answered while the client still holds the body back")
        .expect("a response");
    sender.abort();
    response
}

// ---------------------------------------------------------------------------------------------
// Uploading

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

// ---------------------------------------------------------------------------------------------
// Downloading

async fn downloads_serve_the_bytes_with_safe_headers(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let bytes = png(50);
    let file = uploaded(&srv, &ada, "chart.png", &bytes, "image/png").await;
    let etag = format!("\"{}\"", sha256_hex(&bytes));
    for path in byte_paths(&file) {
        let got = fetch_with(&client, Method::GET, &path, &[]).await;
        assert_served(&got, &file, &bytes);
        assert_eq!(got.header("content-type"), "image/png", "{path}");
        assert_eq!(got.header("accept-ranges"), "bytes", "{path}");
        assert_eq!(got.header("content-length"), bytes.len().to_string());
        let csp = got.header("content-security-policy");
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{path}: CSP {csp}"
        );
        let (kind, _) = disposition(got.header("content-disposition"));
        assert_eq!(kind, "inline", "images are shown in place: {path}");

        // HEAD: the same headers, no body.
        let head = fetch_with(&client, Method::HEAD, &path, &[]).await;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.bytes.is_empty(), "HEAD {path} has a body");
        assert_eq!(head.header("etag"), etag);
        assert_eq!(head.header("content-type"), "image/png");
        assert_eq!(head.header("content-length"), bytes.len().to_string());
        assert_eq!(head.header("accept-ranges"), "bytes");
        assert_eq!(head.header("x-content-type-options"), "nosniff");
    }
    // The signed link serves the same, without a header.
    let signed = fetch_with(&srv.client(), Method::GET, signed_url(&file), &[]).await;
    assert_served(&signed, &file, &bytes);
    assert_eq!(signed.header("content-type"), "image/png");
    assert!(
        signed
            .header("content-security-policy")
            .contains("default-src 'none'")
    );

    // Other types carry their own detected type.
    for (name, bytes, mimetype) in [
        ("handout.pdf", pdf(51), "application/pdf"),
        ("clip.mp4", mp4(51), "video/mp4"),
    ] {
        let file = uploaded(&srv, &ada, name, &bytes, "application/octet-stream").await;
        let got = download(&client, &file).await;
        assert_served(&got, &file, &bytes);
        assert_eq!(got.header("content-type"), mimetype);
    }
    let notes = text(52);
    let file = uploaded(&srv, &ada, "notes.txt", &notes, "text/plain").await;
    let got = download(&client, &file).await;
    assert_served(&got, &file, &notes);
    assert!(got.header("content-type").starts_with("text/plain"));
    let (kind, _) = disposition(got.header("content-disposition"));
    assert_eq!(kind, "attachment", "text is a document");
    assert!(
        got.header("content-security-policy").contains("sandbox"),
        "text too"
    );
}

async fn documents_download_as_attachments_under_their_original_name(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let original = "résumé ü.pdf";
    let bytes = pdf(60);
    let file = uploaded(&srv, &ada, original, &bytes, "application/pdf").await;
    assert_eq!(file["originalName"], original);
    assert_eq!(file["folder"], "documents");
    let mut paths = byte_paths(&file).to_vec();
    paths.push(signed_url(&file).to_owned());
    for path in &paths {
        let got = fetch_with(&client, Method::GET, path, &[]).await;
        assert_served(&got, &file, &bytes);
        let value = got.header("content-disposition");
        let (kind, params) = disposition(value);
        assert_eq!(kind, "attachment", "{path}: {value}");
        let fallback = params_named(&params, "filename");
        assert_eq!(fallback.len(), 1, "one ASCII filename in {value}");
        let fallback = fallback[0];
        assert!(
            fallback.is_ascii()
                && !fallback.contains(['"', '\\', '/'])
                && !fallback.chars().any(|c| c.is_control()),
            "fallback {fallback:?}"
        );
        assert!(fallback.ends_with(".pdf"), "fallback {fallback:?}");
        assert_eq!(
            extended_filename(&params),
            original,
            "filename* names the original: {value}"
        );
    }

    // A name with quotes and semicolons (escaped in the request as RFC 7578 allows) cannot
    // add parameters of its own to the answer's header.
    let reply = upload_raw_body(
        &srv,
        &ada,
        multipart_body(
            r#"a\"; filename=evil.html; x=\".pdf"#,
            "application/pdf",
            &pdf(61),
        ),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let file = reply.data();
    assert_eq!(file["originalName"], r#"a"; filename=evil.html; x=".pdf"#);
    let got = download(&client, &file).await;
    let value = got.header("content-disposition");
    let (kind, params) = disposition(value);
    assert_eq!(kind, "attachment", "{value}");
    let fallback = params_named(&params, "filename");
    assert_eq!(fallback.len(), 1, "one filename in {value}");
    assert!(fallback[0].ends_with(".pdf"), "{value}");
    assert!(
        params
            .iter()
            .all(|(k, _)| k == "filename" || k == "filename*"),
        "{value}"
    );
    assert_eq!(
        extended_filename(&params),
        file["originalName"].as_str().unwrap(),
        "{value}"
    );

    // Images are shown in place, still under their name.
    let image = uploaded(&srv, &ada, "façade.png", &png(62), "image/png").await;
    let got = download(&client, &image).await;
    let value = got.header("content-disposition");
    let (kind, params) = disposition(value);
    assert_eq!(kind, "inline", "{value}");
    assert!(
        params
            .iter()
            .any(|(k, _)| k == "filename" || k == "filename*"),
        "{value}"
    );
}

async fn if_none_match_answers_304_for_the_current_etag(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let bytes = pdf(70);
    let file = uploaded(&srv, &ada, "cached.pdf", &bytes, "application/pdf").await;
    let etag = format!("\"{}\"", sha256_hex(&bytes));
    let other = format!("\"{}\"", sha256_hex(b"something else"));
    for path in byte_paths(&file) {
        for matching in [etag.clone(), "*".to_owned(), format!("{other}, {etag}")] {
            let got = fetch_with(
                &client,
                Method::GET,
                &path,
                &[("if-none-match", matching.as_str())],
            )
            .await;
            assert_eq!(
                got.status, 304,
                "{path} If-None-Match {matching}: {:?}",
                got.headers
            );
            assert!(got.bytes.is_empty(), "a 304 has no body");
            assert_eq!(got.header("etag"), etag);
        }
        for stale in [other.clone(), format!("\"{}\"", "0".repeat(64))] {
            let got = fetch_with(
                &client,
                Method::GET,
                &path,
                &[("if-none-match", stale.as_str())],
            )
            .await;
            assert_served(&got, &file, &bytes);
        }
    }
    let got = fetch_with(
        &srv.client(),
        Method::GET,
        signed_url(&file),
        &[("if-none-match", etag.as_str())],
    )
    .await;
    assert_eq!(got.status, 304);
    assert!(got.bytes.is_empty());
}

async fn ranges_are_served_clamped_or_refused_and_odd_ones_ignored(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let bytes = pdf(80);
    let size = bytes.len();
    let file = uploaded(&srv, &ada, "ranged.pdf", &bytes, "application/pdf").await;
    for path in byte_paths(&file) {
        let partial = |range: &'static str| {
            let client = client.clone();
            let path = path.clone();
            async move { fetch_with(&client, Method::GET, &path, &[("range", range)]).await }
        };

        let got = partial("bytes=0-0").await;
        assert_eq!(got.status, 206, "{path}");
        assert_eq!(got.bytes, &bytes[..1]);
        assert_eq!(got.header("content-range"), format!("bytes 0-0/{size}"));
        assert_eq!(got.header("content-length"), "1");
        assert_eq!(got.header("x-content-type-options"), "nosniff");

        let got = partial("bytes=-10").await;
        assert_eq!(got.status, 206, "{path}");
        assert_eq!(got.bytes, &bytes[size - 10..]);
        assert_eq!(
            got.header("content-range"),
            format!("bytes {}-{}/{size}", size - 10, size - 1)
        );

        let got = partial("bytes=5-").await;
        assert_eq!(got.status, 206, "{path}");
        assert_eq!(got.bytes, &bytes[5..]);
        assert_eq!(
            got.header("content-range"),
            format!("bytes 5-{}/{size}", size - 1)
        );

        let got = partial("bytes=2-4").await;
        assert_eq!(got.status, 206, "{path}");
        assert_eq!(got.bytes, &bytes[2..5]);
        assert_eq!(got.header("content-range"), format!("bytes 2-4/{size}"));

        // An end past the file is clamped.
        let got = partial("bytes=0-999999").await;
        assert_eq!(got.status, 206, "{path}");
        assert_eq!(got.bytes, bytes);
        assert_eq!(
            got.header("content-range"),
            format!("bytes 0-{}/{size}", size - 1)
        );

        // A start at or past the end cannot be satisfied.
        for unsatisfiable in [format!("bytes={size}-"), format!("bytes={}-", size + 100)] {
            let got = fetch_with(
                &client,
                Method::GET,
                &path,
                &[("range", unsatisfiable.as_str())],
            )
            .await;
            got.assert_error(416, "RANGE_NOT_SATISFIABLE");
            assert_eq!(got.header("content-range"), format!("bytes */{size}"));
        }

        // Malformed ranges and multiple ranges are ignored: the whole file.
        for ignored in ["bytes=abc", "items=0-1", "bytes=0-1,4-5", "bytes"] {
            let got = partial(ignored).await;
            assert_served(&got, &file, &bytes);
            assert!(
                got.headers.get("content-range").is_none(),
                "{ignored}: {:?}",
                got.headers
            );
        }
    }
    let got = fetch_with(
        &srv.client(),
        Method::GET,
        signed_url(&file),
        &[("range", "bytes=1-3")],
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.bytes, &bytes[1..4]);
}

// ---------------------------------------------------------------------------------------------
// Who may read

async fn files_are_private_to_their_owner_and_admins(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let teacher = srv.register("instructor").await;
    let admin = srv.admin().await;
    let bytes = png(90);
    let file = uploaded(&srv, &ada, "private.png", &bytes, "image/png").await;

    for who in [&ada, &admin] {
        let client = as_client(&srv, who);
        let read = get_file(&srv, who, id(&file)).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(without_signed_url(&read.data()), without_signed_url(&file));
        for path in byte_paths(&file) {
            assert_served(
                &fetch_with(&client, Method::GET, &path, &[]).await,
                &file,
                &bytes,
            );
        }
    }
    for who in [&bob, &teacher] {
        let client = as_client(&srv, who);
        get_file(&srv, who, id(&file))
            .await
            .assert_error(404, "NOT_FOUND");
        for path in byte_paths(&file) {
            fetch_with(&client, Method::GET, &path, &[])
                .await
                .assert_error(404, "NOT_FOUND");
        }
        let head = fetch_with(&client, Method::HEAD, url(&file), &[]).await;
        assert_eq!(head.status, 404);
        assert!(list_files(&srv, who).await.is_empty());
    }

    // Without a token, or with a bad one: not signed in.
    for path in byte_paths(&file) {
        fetch_with(&srv.client(), Method::GET, &path, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
        fetch_with(&srv.client().bearer("not.a.token"), Method::GET, &path, &[])
            .await
            .assert_error(401, "UNAUTHORIZED");
    }

    // The same stored name under another folder is not the file.
    let filename = file["filename"].as_str().unwrap();
    for folder in ["documents", "misc", "videos"] {
        fetch_with(
            &as_client(&srv, &ada),
            Method::GET,
            &format!("/uploads/{folder}/{filename}"),
            &[],
        )
        .await
        .assert_error(404, "NOT_FOUND");
    }
    // Nor are paths that try to leave the upload dir.
    for path in [
        "/uploads/images/../images/x.png".to_owned(),
        format!("/uploads/images/%2e%2e%2fimages%2f{filename}"),
        format!("/uploads/.tmp/{filename}"),
        "/uploads/images/".to_owned(),
    ] {
        let got = fetch_with(&as_client(&srv, &ada), Method::GET, &path, &[]).await;
        assert!(
            got.status == 404 || got.status == 400,
            "{path}: {}",
            got.status
        );
        assert_ne!(got.bytes, bytes);
    }
}

async fn course_files_are_readable_by_the_course_members(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let outsider = srv.register("student").await;
    let other_teacher = srv.register("instructor").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let course_id = id_of(&course);

    let bytes = pdf(100);
    let file = uploaded_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("courseId", course_id.to_owned())
            .part("file", part("shared notes.pdf", &bytes, "application/pdf")),
    )
    .await;
    assert_eq!(file["courseId"], course_id);

    for who in [&ada, &bob, &teacher, &admin] {
        let read = get_file(&srv, who, id(&file)).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.data()["courseId"], course_id);
        let client = as_client(&srv, who);
        for path in byte_paths(&file) {
            assert_served(
                &fetch_with(&client, Method::GET, &path, &[]).await,
                &file,
                &bytes,
            );
        }
    }
    for who in [&outsider, &other_teacher] {
        get_file(&srv, who, id(&file))
            .await
            .assert_error(404, "NOT_FOUND");
        let client = as_client(&srv, who);
        for path in byte_paths(&file) {
            fetch_with(&client, Method::GET, &path, &[])
                .await
                .assert_error(404, "NOT_FOUND");
        }
    }

    // Reading is not owning: the list is the caller's own files.
    assert!(list_files(&srv, &bob).await.is_empty());
    assert!(list_files(&srv, &teacher).await.is_empty());
    assert_eq!(list_files(&srv, &ada).await.len(), 1);

    // Leaving the course ends access.
    let left = as_client(&srv, &bob)
        .delete(&api(&format!(
            "/courses/{course_id}/enrollments/{}",
            bob.id
        )))
        .await;
    assert_eq!(left.status, 200, "{}", left.body);
    get_file(&srv, &bob, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    fetch_with(&as_client(&srv, &bob), Method::GET, url(&file), &[])
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn uploading_into_a_course_takes_membership_of_it(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let outsider = srv.register("student").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    let course_id = id_of(&course);
    let form = |seed| {
        Form::new()
            .text("courseId", course_id.to_owned())
            .part("file", part("work.png", &png(seed), "image/png"))
    };

    let refused = upload_form(&srv, &outsider, "", form(110)).await;
    refused.assert_error(403, "FORBIDDEN");
    let refused = upload_form(&srv, &outsider, &format!("?courseId={course_id}"), {
        Form::new().part("file", part("work.png", &png(111), "image/png"))
    })
    .await;
    refused.assert_error(403, "FORBIDDEN");
    let unknown = upload_form(
        &srv,
        &ada,
        "",
        Form::new()
            .text("courseId", UNKNOWN_ID)
            .part("file", part("work.png", &png(112), "image/png")),
    )
    .await;
    unknown.assert_error(404, "NOT_FOUND");
    assert!(list_files(&srv, &outsider).await.is_empty());
    assert!(list_files(&srv, &ada).await.is_empty());
    assert_disk_holds_only(&srv, &[]).await;

    let mut stored = Vec::new();
    for (who, seed) in [(&ada, 113), (&teacher, 114), (&admin, 115)] {
        let file = uploaded_form(&srv, who, "", form(seed)).await;
        assert_eq!(file["courseId"], course_id);
        stored.push(file);
    }
    let refs: Vec<&Value> = stored.iter().collect();
    assert_disk_holds_only(&srv, &refs).await;
}

async fn signed_urls_work_without_a_header_and_refuse_tampering(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bytes = png(120);
    let file = uploaded(&srv, &ada, "linked.png", &bytes, "image/png").await;
    let other = uploaded(&srv, &ada, "other.png", &png(121), "image/png").await;
    let signed = signed_url(&file).to_owned();
    let anonymous = srv.client();

    assert_served(
        &fetch_with(&anonymous, Method::GET, &signed, &[]).await,
        &file,
        &bytes,
    );
    // A freshly read file has a working link too.
    let fresh = get_file(&srv, &ada, id(&file)).await.data();
    assert_served(
        &fetch_with(&anonymous, Method::GET, signed_url(&fresh), &[]).await,
        &file,
        &bytes,
    );

    let (path, query) = signed.split_once('?').unwrap();
    let expires: i64 = query
        .strip_prefix("expires=")
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sig = query.split_once("&sig=").unwrap().1;
    let flip = |c: char| if c == 'A' { 'B' } else { 'A' };
    let flipped_first: String = std::iter::once(flip(sig.chars().next().unwrap()))
        .chain(sig.chars().skip(1))
        .collect();
    let flipped_middle: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| if i == sig.len() / 2 { flip(c) } else { c })
        .collect();
    let other_query = signed_url(&other).split_once('?').unwrap().1.to_owned();
    for tampered in [
        format!("{path}?expires={expires}&sig={flipped_first}"),
        format!("{path}?expires={expires}&sig={flipped_middle}"),
        format!("{path}?expires={expires}&sig={}", &sig[..sig.len() - 1]),
        format!("{path}?expires={expires}&sig=x{sig}"),
        format!("{path}?expires={}&sig={sig}", expires + 1000),
        format!("{path}?expires={}&sig={sig}", expires - 1),
        format!("{path}?expires=99999999999&sig={sig}"),
        // Another file's valid signature does not fit this file.
        format!("{path}?{other_query}"),
    ] {
        fetch_with(&anonymous, Method::GET, &tampered, &[])
            .await
            .assert_error(403, "FORBIDDEN");
    }
    // The other file's own link still works: tampering hurt nothing.
    assert_eq!(
        fetch_with(&anonymous, Method::GET, signed_url(&other), &[])
            .await
            .status,
        200
    );
}

async fn signed_urls_expire(backend: Backend) {
    let srv = start_with(backend, |c| c.signed_url_ttl = Duration::from_secs(1)).await;
    let ada = srv.register("student").await;
    let bytes = png(130);
    let file = uploaded(&srv, &ada, "brief.png", &bytes, "image/png").await;
    let fresh = get_file(&srv, &ada, id(&file)).await.data();
    let signed = signed_url(&fresh).to_owned();
    assert_served(
        &fetch_with(&srv.client(), Method::GET, &signed, &[]).await,
        &file,
        &bytes,
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    fetch_with(&srv.client(), Method::GET, &signed, &[])
        .await
        .assert_error(403, "FORBIDDEN");
    // The bearer url is unaffected, and a new read gives a new working link.
    assert_served(
        &fetch_with(&as_client(&srv, &ada), Method::GET, url(&file), &[]).await,
        &file,
        &bytes,
    );
    let renewed = get_file(&srv, &ada, id(&file)).await.data();
    assert_served(
        &fetch_with(&srv.client(), Method::GET, signed_url(&renewed), &[]).await,
        &file,
        &bytes,
    );
}

// ---------------------------------------------------------------------------------------------
// Deleting

async fn deleting_a_file_removes_it_everywhere(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let keep = uploaded(&srv, &ada, "keep.pdf", &pdf(140), "application/pdf").await;
    let file = uploaded(&srv, &ada, "gone.png", &png(140), "image/png").await;
    assert_disk_holds_only(&srv, &[&keep, &file]).await;

    let deleted = client.delete(&api(&format!("/files/{}", id(&file)))).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.data(), json!({}));

    get_file(&srv, &ada, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    for path in byte_paths(&file) {
        fetch_with(&client, Method::GET, &path, &[])
            .await
            .assert_error(404, "NOT_FOUND");
    }
    fetch_with(&srv.client(), Method::GET, signed_url(&file), &[])
        .await
        .assert_error(404, "NOT_FOUND");
    assert!(!stored_path(&srv, &file).exists(), "the bytes are gone");
    assert_disk_holds_only(&srv, &[&keep]).await;
    let listed = list_files(&srv, &ada).await;
    assert_eq!(ids(&listed), vec![id(&keep).to_owned()]);

    // Deleting twice: it is no longer there.
    client
        .delete(&api(&format!("/files/{}", id(&file))))
        .await
        .assert_error(404, "NOT_FOUND");
    // The file kept is untouched.
    assert_served(&download(&client, &keep).await, &keep, &pdf(140));
}

async fn only_the_owner_or_an_admin_deletes_a_file(backend: Backend) {
    let srv = start(backend).await;
    let (teacher, course) = srv.course().await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let stranger = srv.register("student").await;
    let admin = srv.admin().await;
    srv.enroll(&ada, &course).await;
    srv.enroll(&bob, &course).await;
    let bytes = pdf(150);
    let file = uploaded_form(
        &srv,
        &ada,
        &format!("?courseId={}", id_of(&course)),
        Form::new().part("file", part("essay.pdf", &bytes, "application/pdf")),
    )
    .await;
    let path = api(&format!("/files/{}", id(&file)));

    // Course members read it but do not own it.
    for who in [&bob, &teacher] {
        as_client(&srv, who)
            .delete(&path)
            .await
            .assert_error(403, "FORBIDDEN");
    }
    as_client(&srv, &stranger)
        .delete(&path)
        .await
        .assert_error(404, "NOT_FOUND");
    srv.client()
        .delete(&path)
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .bearer("not.a.token")
        .delete(&path)
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_served(
        &download(&as_client(&srv, &ada), &file).await,
        &file,
        &bytes,
    );
    assert_disk_holds_only(&srv, &[&file]).await;

    let deleted = as_client(&srv, &admin).delete(&path).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.data(), json!({}));
    get_file(&srv, &ada, id(&file))
        .await
        .assert_error(404, "NOT_FOUND");
    assert_disk_holds_only(&srv, &[]).await;

    // The owner deletes their own, course or not.
    let own = uploaded(&srv, &bob, "mine.png", &png(151), "image/png").await;
    let deleted = as_client(&srv, &bob)
        .delete(&api(&format!("/files/{}", id(&own))))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_disk_holds_only(&srv, &[]).await;
}

// ---------------------------------------------------------------------------------------------
// Listing

async fn files_are_listed_newest_first_and_paged_without_repeats_or_skips(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let mut created = Vec::new();
    for n in 0..5u64 {
        let file = uploaded(
            &srv,
            &ada,
            &format!("page{n}.png"),
            &png(160 + n),
            "image/png",
        )
        .await;
        created.push(id(&file).to_owned());
    }
    let bobs = uploaded(&srv, &bob, "bob.png", &png(170), "image/png").await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list_files(&srv, &ada).await), newest_first);
    assert_eq!(
        ids(&list_files(&srv, &bob).await),
        vec![id(&bobs).to_owned()]
    );

    let client = as_client(&srv, &ada);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => api(&format!("/files?limit=2&cursor={c}")),
            None => api("/files?limit=2"),
        };
        let reply = client.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let data = reply.data();
        assert_keys(&data, &["items", "nextCursor"]);
        let items = data["items"].as_array().unwrap();
        for item in items {
            assert_file(item);
        }
        sizes.push(items.len());
        seen.extend(ids(items));
        match &data["nextCursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            Value::Null => break,
            other => panic!("nextCursor {other}"),
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, newest_first, "each file once, newest first");

    let reply = client.get(&api("/files?cursor=&limit=100")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.data()["nextCursor"], Value::Null);
    for limit in ["0", "101", "ten"] {
        let reply = client.get(&api(&format!("/files?limit={limit}"))).await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), "limit");
    }
    let reply = client.get(&api("/files?cursor=!!!")).await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "cursor");
}

// ---------------------------------------------------------------------------------------------
// Caps, quota, aborts

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

async fn file_endpoints_require_a_token_and_unknown_ids_are_not_found(backend: Backend) {
    let srv = start(backend).await;
    let ada = srv.register("student").await;
    let file = uploaded(&srv, &ada, "mine.png", &png(260), "image/png").await;
    let anonymous = srv.client();
    anonymous
        .get(&api("/files"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    anonymous
        .get(&api(&format!("/files/{}", id(&file))))
        .await
        .assert_error(401, "UNAUTHORIZED");
    fetch_with(
        &anonymous,
        Method::GET,
        &api(&format!("/files/{}/download", id(&file))),
        &[],
    )
    .await
    .assert_error(401, "UNAUTHORIZED");
    let reply = anonymous
        .send(
            anonymous
                .request(Method::POST, &api("/files/upload"))
                .multipart(Form::new().part("file", part("x.png", &png(261), "image/png"))),
        )
        .await;
    reply.assert_error(401, "UNAUTHORIZED");
    srv.client()
        .bearer("not.a.token")
        .get(&api("/files"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_disk_holds_only(&srv, &[&file]).await;

    let client = as_client(&srv, &ada);
    for unknown in [UNKNOWN_ID, "not-a-uuid"] {
        client
            .get(&api(&format!("/files/{unknown}")))
            .await
            .assert_error(404, "NOT_FOUND");
        fetch_with(
            &client,
            Method::GET,
            &api(&format!("/files/{unknown}/download")),
            &[],
        )
        .await
        .assert_error(404, "NOT_FOUND");
        client
            .delete(&api(&format!("/files/{unknown}")))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    fetch_with(
        &client,
        Method::GET,
        &format!("/uploads/images/{}.png", "0".repeat(32)),
        &[],
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let wrong_method = client
        .send(client.request(Method::PUT, &api(&format!("/files/{}", id(&file)))))
        .await;
    wrong_method.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[path = "files/tus.rs"]
mod tus;
