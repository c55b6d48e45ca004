//! What the sections share: servers, uploads that must succeed, the contract's `file` shape,
//! what is left on disk, and reads and downloads of a file's bytes.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lyceum::config::Config;
use lyceum_tests::{
    Account, Backend, Client, Reply, TestServer,
    check::{api, as_client, assert_keys, assert_utc_time, assert_uuid_v7, id_of, sha256_hex},
    files::{part, upload_form},
};
use reqwest::{Method, header::HeaderMap, multipart::Form};
use serde_json::{Value, json};

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
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
/// How long a refusal may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long the server may take to clean up after a refused or aborted upload.
const DISK_WAIT: Duration = Duration::from_secs(5);
pub const BOUNDARY: &str = "lyceum-test-boundary-7e3f1c";

/// A server with the default configuration (but a small PostgreSQL pool).
pub async fn start(backend: Backend) -> TestServer {
    TestServer::start_small(backend, |_| {}).await
}

/// A server with the settings `adjust` changes (and a small PostgreSQL pool).
pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_small(backend, adjust).await
}

pub async fn upload(
    srv: &TestServer,
    who: &Account,
    name: &str,
    bytes: &[u8],
    mime: &str,
) -> Reply {
    upload_form(
        srv,
        who,
        "",
        Form::new().part("file", part(name, bytes, mime)),
    )
    .await
}

/// An upload that must succeed: the `file`, checked for shape and against the bytes sent.
pub async fn uploaded(
    srv: &TestServer,
    who: &Account,
    name: &str,
    bytes: &[u8],
    mime: &str,
) -> Value {
    let reply = upload(srv, who, name, bytes, mime).await;
    assert_eq!(reply.status, 201, "upload {name}: {}", reply.body);
    let file = reply.data();
    assert_file(&file);
    assert_eq!(file["size"], bytes.len() as u64, "{file}");
    assert_eq!(file["sha256"], sha256_hex(bytes).as_str(), "{file}");
    file
}

/// A successful upload through a form built by the caller.
pub async fn uploaded_form(srv: &TestServer, who: &Account, query: &str, form: Form) -> Value {
    let reply = upload_form(srv, who, query, form).await;
    assert_eq!(reply.status, 201, "upload: {}", reply.body);
    let file = reply.data();
    assert_file(&file);
    file
}

/// POSTs a multipart body built byte by byte (for names reqwest would escape).
pub async fn upload_raw_body(srv: &TestServer, who: &Account, body: Vec<u8>) -> Reply {
    as_client(srv, who)
        .post_raw(
            &api("/files/upload"),
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            body,
        )
        .await
}

/// `bytes` as a request body sent `piece` bytes at a time, one piece every `every`.
pub fn paced_body(bytes: &[u8], piece: usize, every: Duration) -> reqwest::Body {
    use futures::StreamExt;
    let pieces: Vec<Vec<u8>> = bytes.chunks(piece).map(<[u8]>::to_vec).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(piece)
    }))
}

/// The head of the `file` part: everything before its bytes.
pub fn file_part_head(filename: &str, mime: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes()
}

pub fn text_part(name: &str, value: &str) -> Vec<u8> {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        .into_bytes()
}

pub fn closing() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}

/// A whole multipart body with one file part, named exactly as given.
pub fn multipart_body(filename: &str, mime: &str, bytes: &[u8]) -> Vec<u8> {
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
pub fn assert_file(file: &Value) {
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

pub fn id(file: &Value) -> &str {
    id_of(file)
}

pub fn url(file: &Value) -> &str {
    file["url"].as_str().unwrap()
}

pub fn signed_url(file: &Value) -> &str {
    file["signedUrl"].as_str().unwrap()
}

/// The file as stored on disk.
pub fn stored_path(srv: &TestServer, file: &Value) -> PathBuf {
    srv.config
        .upload_dir
        .join(file["folder"].as_str().unwrap())
        .join(file["filename"].as_str().unwrap())
}

/// Every regular file under `dir`, hidden directories (the `.tmp` of partial uploads) included.
pub fn regular_files(dir: &Path) -> Vec<PathBuf> {
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
pub async fn assert_disk_holds_only(srv: &TestServer, files: &[&Value]) {
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

pub async fn list_files(srv: &TestServer, who: &Account) -> Vec<Value> {
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

pub async fn get_file(srv: &TestServer, who: &Account, file_id: &str) -> Reply {
    as_client(srv, who)
        .get(&api(&format!("/files/{file_id}")))
        .await
}

/// The `file` without its `signedUrl`, whose expiry is computed per answer.
pub fn without_signed_url(file: &Value) -> Value {
    let mut file = file.clone();
    file.as_object_mut().unwrap().remove("signedUrl");
    file
}

/// A response read in full, bytes and all.
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
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
pub async fn fetch_with(
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

pub async fn download(client: &Client, file: &Value) -> Fetched {
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
pub fn byte_paths(file: &Value) -> [String; 2] {
    [
        api(&format!("/files/{}/download", id(file))),
        url(file).to_owned(),
    ]
}

#[track_caller]
pub fn assert_served(fetched: &Fetched, file: &Value, bytes: &[u8]) {
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
