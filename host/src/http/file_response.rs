//! Serving a stored file's bytes: ranges, revalidation, and the headers that keep an uploaded
//! file from ever acting as a page of this origin.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio_util::io::ReaderStream;

use super::range::{self, Ranged};
use crate::{
    domain::FileRecord,
    error::{AppError, AppResult},
    service::files::FileService,
};

/// No script, no plugins, no frames, no forms — even an SVG or text file opened directly
/// renders inert. Images and media may still load from the file itself. Like every other
/// response, no page may frame it.
const CSP: &str = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox";

pub async fn send(
    files: &FileService,
    file: &FileRecord,
    request: &HeaderMap,
) -> AppResult<Response> {
    let etag = format!("\"{}\"", file.sha256);
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, value(&etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    headers.insert(
        header::LAST_MODIFIED,
        value(
            &file
                .created_at
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );

    if let Some(tags) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(tags, &etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }

    headers.insert(header::CONTENT_TYPE, value(&content_type(&file.mimetype)));
    headers.insert(header::CONTENT_DISPOSITION, value(&disposition(file)));

    // `If-Range` with another validator: the client's partial copy is stale, send it all.
    let stale = request
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != etag);
    let range_header = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    let ranged = if stale {
        Ranged::Full
    } else {
        range::parse(range_header, file.size)
    };
    let (status, start, len) = match ranged {
        Ranged::Full => (StatusCode::OK, 0, file.size),
        Ranged::Partial { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{}", file.size)),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Ranged::Unsatisfiable => return Err(AppError::RangeNotSatisfiable { size: file.size }),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let reader = files.open(file, start, len).await?;
    let body = Body::from_stream(ReaderStream::with_capacity(reader, 64 * 1024));
    Ok((status, headers, body).into_response())
}

/// `If-None-Match`: `*`, or a list of tags compared weakly (RFC 9110 §13.1.2).
fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn content_type(mime: &str) -> String {
    if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

/// `attachment` (`inline` for images and media, which browsers show but cannot run) with
/// the original name per RFC 6266: an ASCII fallback and the exact name in `filename*`.
pub fn disposition(file: &FileRecord) -> String {
    let kind = if file.mimetype.starts_with("image/")
        || file.mimetype.starts_with("video/")
        || file.mimetype.starts_with("audio/")
    {
        "inline"
    } else {
        "attachment"
    };
    let fallback: String = file
        .original_name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        percent_encode(&file.original_name)
    )
}

/// RFC 8187 `value-chars`: attr-char stays, every other byte is `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{FileId, Folder, UserId};

    fn file(name: &str, mime: &str) -> FileRecord {
        FileRecord {
            id: FileId::new(),
            owner_id: UserId::new(),
            course_id: None,
            folder: Folder::Documents,
            filename: "x.pdf".into(),
            original_name: name.into(),
            size: 1,
            mimetype: mime.into(),
            sha256: "ab".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn documents_download_with_both_forms_of_their_name() {
        assert_eq!(
            disposition(&file("résumé \"final\".pdf", "application/pdf")),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert!(disposition(&file("cat.png", "image/png")).starts_with("inline;"));
        // Header-breaking characters never reach the header.
        assert!(HeaderValue::from_str(&disposition(&file("a\r\nb;c.txt", "text/plain"))).is_ok());
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        assert!(etag_matches("\"ab\"", "\"ab\""));
        assert!(etag_matches("W/\"ab\"", "\"ab\""));
        assert!(etag_matches("\"x\", \"ab\"", "\"ab\""));
        assert!(etag_matches("*", "\"ab\""));
        assert!(!etag_matches("\"abc\"", "\"ab\""));
    }
}
