//! Raw HTTP/1.1 uploads over a `TcpStream`, for uploads that are refused with 413, aborted half
//! way or held open mid-body: the server may answer (and close) before the body is sent, and
//! only a raw socket can stop sending without closing.

use std::time::Duration;

use lyceum_tests::TestServer;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::{payloads::*, support::*};

pub enum Framing {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
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
pub async fn open_upload(
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
pub async fn send_body(writer: &mut OwnedWriteHalf, framing: &Framing, bytes: &[u8]) -> bool {
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
pub async fn read_response(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<RawResponse> {
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
pub async fn raw_upload(
    srv: &TestServer,
    token: &str,
    body: Vec<u8>,
    chunked: bool,
) -> RawResponse {
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
pub fn png_upload_body(fields: &[(&str, &str)], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(text_part(k, v));
    }
    body.extend(multipart_body(name, "image/png", bytes));
    body
}

/// Starts an upload of a PNG that would be `claimed` bytes long, sends `sent` bytes of it and
/// then stops sending without closing; the response must come while the client waits.
pub async fn upload_stalled_past_the_cap(
    srv: &TestServer,
    token: &str,
    chunked: bool,
) -> RawResponse {
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
