//! Getting the bytes back: the download endpoint and `url` serve them with safe headers,
//! documents download as attachments under their original name, `If-None-Match` answers 304
//! for the current ETag, and ranges are served, clamped, refused or ignored.

use lyceum_tests::{
    Backend, backend_tests,
    check::{as_client, sha256_hex},
};
use reqwest::Method;

use crate::{payloads::*, support::*};

backend_tests!(
    downloads_serve_the_bytes_with_safe_headers,
    documents_download_as_attachments_under_their_original_name,
    if_none_match_answers_304_for_the_current_etag,
    ranges_are_served_clamped_or_refused_and_odd_ones_ignored,
);

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
