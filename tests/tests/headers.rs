//! The security headers on every kind of response: API answers and errors, the fallback,
//! file downloads, operations endpoints, the docs page and Socket.IO's own answers. Each
//! carries `nosniff`, `no-referrer`, `X-Frame-Options: DENY` and one Content-Security-Policy
//! that forbids framing; a response that needs more than `default-src 'none'` brings its own.

use base64::{Engine, engine::general_purpose::STANDARD};
use lyceum_tests::{Backend, Reply, TestServer, backend_tests, check::*};
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::json;
use sha2::{Digest, Sha256};

backend_tests!(
    api_answers_and_errors_carry_the_security_headers,
    downloads_keep_their_sandboxed_policy_and_carry_the_rest,
    operations_endpoints_and_socket_io_answers_carry_the_security_headers,
    the_docs_page_may_run_its_own_script_and_nothing_else,
);

const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The headers every response has; returns its (single) Content-Security-Policy.
#[track_caller]
fn assert_secured(reply: &Reply, what: &str) -> String {
    let header = |name: &str| {
        let values: Vec<_> = reply.headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "{what}: {name} {values:?}");
        values[0].to_str().unwrap().to_owned()
    };
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("x-frame-options"), "DENY", "{what}");
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.starts_with("default-src 'none'"), "{what}: {csp}");
    csp
}

#[track_caller]
fn assert_default_headers(reply: &Reply, what: &str) {
    assert_eq!(assert_secured(reply, what), DEFAULT_CSP, "{what}");
}

async fn api_answers_and_errors_carry_the_security_headers(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let client = srv.client();

    let me = as_client(&srv, &ada).get(&api("/auth/me")).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_default_headers(&me, "GET /auth/me");

    let created = client
        .post(
            "/api/v1/auth/register",
            json!({"email": "grace@example.com", "password": "correct horse battery", "name": "Grace", "role": "student"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_default_headers(&created, "POST /auth/register");

    let unauthorized = client.get(&api("/auth/me")).await;
    unauthorized.assert_error(401, "UNAUTHORIZED");
    assert_default_headers(&unauthorized, "401");

    let invalid = client.post(&api("/auth/login"), json!({})).await;
    invalid.assert_error(400, "VALIDATION_FAILED");
    assert_default_headers(&invalid, "400");

    let missing = client.get("/api/v1/no-such-thing").await;
    missing.assert_error(404, "NOT_FOUND");
    assert_default_headers(&missing, "404 of the API");
    let missing = client.get("/no-such-page").await;
    missing.assert_error(404, "NOT_FOUND");
    assert_default_headers(&missing, "404 outside the API");

    let wrong_method = client.delete(&api("/auth/me")).await;
    wrong_method.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_default_headers(&wrong_method, "405");

    // A CORS preflight is answered by the CORS layer, not a handler.
    let preflight = client
        .send(
            client
                .request(Method::OPTIONS, &api("/courses"))
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
    assert_default_headers(&preflight, "preflight");
}

async fn downloads_keep_their_sandboxed_policy_and_carry_the_rest(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let client = as_client(&srv, &ada);
    let part = Part::bytes(b"lecture notes\n".to_vec())
        .file_name("notes.txt")
        .mime_str("text/plain")
        .unwrap();
    let uploaded = client
        .send(
            client
                .request(Method::POST, &api("/files/upload"))
                .multipart(Form::new().part("file", part)),
        )
        .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    assert_default_headers(&uploaded, "upload");
    let file = uploaded.data();

    let mut paths = vec![
        api(&format!("/files/{}/download", id_of(&file))),
        file["url"].as_str().unwrap().to_owned(),
    ];
    paths.push(file["signedUrl"].as_str().unwrap().to_owned());
    for path in &paths {
        let got = client.get(path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text);
        let csp = assert_secured(&got, path);
        assert!(csp.ends_with("; sandbox"), "{path}: {csp}");
        assert!(!csp.contains("script-src"), "{path}: {csp}");
    }
    let anonymous = srv.client().get(&paths[2]).await;
    assert_eq!(anonymous.status, 200, "signed link: {}", anonymous.text);
    assert!(assert_secured(&anonymous, "signed link").contains("sandbox"));

    let etag = client.get(&paths[0]).await.headers["etag"].clone();
    let revalidated = client
        .send(
            client
                .request(Method::GET, &paths[0])
                .header("if-none-match", etag),
        )
        .await;
    assert_eq!(revalidated.status, 304);
    assert!(assert_secured(&revalidated, "304").contains("sandbox"));

    let unsatisfiable = client
        .send(
            client
                .request(Method::GET, &paths[0])
                .header("range", "bytes=9999-"),
        )
        .await;
    unsatisfiable.assert_error(416, "RANGE_NOT_SATISFIABLE");
    assert_default_headers(&unsatisfiable, "416");
}

async fn operations_endpoints_and_socket_io_answers_carry_the_security_headers(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let client = srv.client();
    for path in ["/health", "/ready", "/metrics", "/api/openapi.json"] {
        let got = client.get(path).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text);
        assert_default_headers(&got, path);
    }

    let handshake = client.get("/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(handshake.status, 200, "{}", handshake.text);
    assert!(handshake.text.starts_with("0{"), "{}", handshake.text);
    assert_default_headers(&handshake, "polling handshake");

    let unknown_session = client
        .get("/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(unknown_session.status, 400, "{}", unknown_session.text);
    assert_default_headers(&unknown_session, "Engine.IO's own error");

    let refused = client
        .send(
            client
                .request(Method::GET, "/socket.io/?EIO=4&transport=polling")
                .header("origin", "https://evil.example"),
        )
        .await;
    refused.assert_error(403, "FORBIDDEN");
    assert_default_headers(&refused, "origin refusal");
}

/// The docs page renders the OpenAPI document with an inline script and style: its policy
/// names exactly those by hash and lets it fetch from this origin, and allows nothing else.
async fn the_docs_page_may_run_its_own_script_and_nothing_else(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let page = srv.client().get("/api/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = assert_secured(&page, "docs page");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    let hash_of = |tag: &str| {
        let body = page
            .text
            .split_once(&format!("<{tag}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .unwrap_or_else(|| panic!("the page has no <{tag}>"))
            .0;
        format!("'sha256-{}'", STANDARD.encode(Sha256::digest(body)))
    };
    assert!(
        directives.contains(&format!("script-src {}", hash_of("script")).as_str()),
        "{csp}"
    );
    assert!(
        directives.contains(&format!("style-src {}", hash_of("style")).as_str()),
        "{csp}"
    );
    assert!(directives.contains(&"connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(!csp.contains('*'), "{csp}");
}
