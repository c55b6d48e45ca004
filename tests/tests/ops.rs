//! Operations, the error envelope for requests no handler accepts, and clients too slow to
//! keep a connection.

use lyceum_tests::{Backend, TestServer, backend_tests, socket::SocketClient};
use serde_json::{Value, json};

backend_tests!(
    health_and_ready_answer,
    unknown_routes_and_methods_answer_in_the_envelope,
    an_oversize_body_is_payload_too_large,
    metrics_count_requests_by_route_and_open_sockets,
    requests_carry_a_request_id,
    cors_allows_only_configured_origins,
    a_request_head_sent_too_slowly_closes_its_connection,
);

async fn health_and_ready_answer(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let health = srv.client().get("/health").await;
    assert_eq!(
        (health.status, health.data()["status"].clone()),
        (200, json!("ok"))
    );
    let ready = srv.client().get("/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

async fn unknown_routes_and_methods_answer_in_the_envelope(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let client = srv.client().bearer(&ada.token);
    client
        .get("/api/v1/nothing-here")
        .await
        .assert_error(404, "NOT_FOUND");
    client
        .get("/no/such/page")
        .await
        .assert_error(404, "NOT_FOUND");
    let put = client
        .send(client.request(reqwest::Method::PUT, "/api/v1/courses"))
        .await;
    put.assert_error(405, "METHOD_NOT_ALLOWED");
    client
        .delete("/api/v1/auth/login")
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    client
        .post("/health", json!({}))
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    // A malformed id names no resource.
    client
        .get("/api/v1/courses/not-a-uuid")
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn an_oversize_body_is_payload_too_large(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| c.max_json_body = 4096).await;
    let big = json!({"email": "a@example.com", "password": "x".repeat(10_000), "name": "A"});
    let reply = srv.client().post("/api/v1/auth/register", big).await;
    reply.assert_error(413, "PAYLOAD_TOO_LARGE");
    // Just under the limit is processed normally.
    let fine = srv
        .client()
        .post(
            "/api/v1/auth/register",
            json!({"email": "a@example.com", "password": "y".repeat(1000), "name": "A"}),
        )
        .await;
    assert_eq!(fine.status, 201, "{}", fine.body);
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_requests_by_route_and_open_sockets(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let path = format!("/api/v1/courses/{}", course["id"].as_str().unwrap());
    let before = srv.client().get("/metrics").await.text;
    let labels = [
        ("method", "GET"),
        ("route", "/api/v1/courses/{id}"),
        ("status", "200"),
    ];
    let count_before = metric(&before, "lyceum_http_requests_total", &labels).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(
            srv.client().bearer(&teacher.token).get(&path).await.status,
            200
        );
    }
    let socket = SocketClient::with_token(srv.addr, &teacher.token).await;
    let reply = srv.client().get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let after = reply.text;
    let count_after =
        metric(&after, "lyceum_http_requests_total", &labels).expect("counter by route template");
    // Metrics are process-wide and tests run in parallel, so other servers may add more.
    assert!(
        count_after >= count_before + 3.0,
        "{count_before} -> {count_after}"
    );
    assert!(
        after.contains("lyceum_http_request_duration_seconds_bucket"),
        "latency histogram missing"
    );
    assert!(metric(&after, "lyceum_socket_connections", &[]).expect("socket gauge") >= 1.0);
    assert!(
        !after.contains(course["id"].as_str().unwrap()),
        "raw ids must not become labels"
    );
    drop(socket);
}

async fn requests_carry_a_request_id(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let reply = srv.client().get("/health").await;
    let generated = reply.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    let client = srv.client();
    let reply = client
        .send(
            client
                .request(reqwest::Method::GET, "/health")
                .header("x-request-id", "trace-me-42"),
        )
        .await;
    assert_eq!(reply.headers["x-request-id"], "trace-me-42");
}

async fn cors_allows_only_configured_origins(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await;
    let client = srv.client();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, "/api/v1/courses")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
    };
    let allowed = client.send(preflight("https://app.example")).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example"
    );
    let denied = client.send(preflight("https://evil.example")).await;
    assert!(denied.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let spec = srv.client().get("/api/openapi.json").await.body;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected: &[(&str, &[&str])] = &[
        ("/api/v1/auth/register", &["post"]),
        ("/api/v1/auth/login", &["post"]),
        ("/api/v1/auth/refresh", &["post"]),
        ("/api/v1/auth/logout", &["post"]),
        ("/api/v1/auth/me", &["get"]),
        ("/api/v1/courses", &["get", "post"]),
        ("/api/v1/courses/{id}", &["get", "patch", "delete"]),
        ("/api/v1/courses/{id}/enrollments", &["get", "post"]),
        ("/api/v1/courses/{id}/enrollments/{userId}", &["delete"]),
        ("/api/v1/courses/{id}/sessions", &["get", "post"]),
        ("/api/v1/sessions/{id}", &["get"]),
        ("/api/v1/sessions/{id}/start", &["post"]),
        ("/api/v1/sessions/{id}/end", &["post"]),
        ("/api/v1/sessions/{id}/participants", &["get"]),
        ("/api/v1/webrtc/ice-servers", &["get"]),
        ("/api/v1/chat/rooms/{roomId}/messages", &["get", "post"]),
        ("/api/v1/chat/messages/{id}", &["patch", "delete"]),
        ("/api/v1/chat/search", &["get"]),
        ("/api/v1/files/upload", &["post"]),
        ("/api/v1/files", &["get"]),
        ("/api/v1/files/{id}", &["get", "delete"]),
        ("/api/v1/files/{id}/download", &["get"]),
        ("/uploads/{folder}/{filename}", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/metrics", &["get"]),
    ];
    for (path, methods) in expected {
        let item = &spec["paths"][path];
        assert!(item.is_object(), "{path} missing from the OpenAPI document");
        for method in *methods {
            assert!(item[method].is_object(), "{method} {path} missing");
        }
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "User",
        "Course",
        "Enrollment",
        "LiveSession",
        "Participant",
        "FileView",
        "UploadForm",
        "ErrorBody",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    let docs = srv.client().get("/api/docs").await;
    assert_eq!(docs.status, 200);
    assert!(
        docs.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(docs.text.contains("/api/openapi.json"));
    let _: Value = spec;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_closes_sockets() {
    // An expensive password hash keeps a login in flight while shutdown begins.
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.argon2_memory_kib = 64 * 1024;
        c.argon2_iterations = 6;
    })
    .await;
    let ada = srv.register("student").await;
    let socket = SocketClient::with_token(srv.addr, &ada.token).await;
    let addr = srv.addr;
    let login = {
        let client = srv.client();
        let body = json!({"email": ada.email, "password": ada.password});
        tokio::spawn(async move { client.post("/api/v1/auth/login", body).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    tokio::time::timeout(std::time::Duration::from_secs(10), srv.stop())
        .await
        .expect("serve returns after shutdown")
        .expect("serve ends without error");
    let login = login.await.unwrap();
    assert_eq!(
        login.status, 200,
        "the in-flight login was cut off: {}",
        login.body
    );
    assert!(
        socket
            .closed_within(std::time::Duration::from_secs(2))
            .await
    );
    assert!(
        reqwest::get(format!("http://{addr}/health")).await.is_err(),
        "still accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_makes_ready_and_requests_unavailable_until_it_returns() {
    use lyceum_tests::proxy::{TcpProxy, redirect_url, target_of};
    if lyceum_tests::skip_without_postgres(
        "a_lost_database_makes_ready_and_requests_unavailable_until_it_returns",
    ) {
        return;
    }
    let proxy = TcpProxy::start(target_of(&lyceum_tests::postgres_url().unwrap())).await;
    let srv = TestServer::start_with(Backend::Postgres, |c| {
        let url = c.database_url.as_ref().unwrap().expose().to_owned();
        c.database_url = Some(lyceum::config::Secret::new(redirect_url(&url, proxy.addr)));
    })
    .await;
    let ada = srv.register("student").await;
    assert_eq!(srv.client().get("/ready").await.status, 200);

    proxy.cut().await;
    srv.client()
        .get("/ready")
        .await
        .assert_error(503, "UNAVAILABLE");
    let me = srv.client().bearer(&ada.token).get("/api/v1/auth/me").await;
    me.assert_error(503, "UNAVAILABLE");
    assert!(
        !me.text.contains("Io") && !me.text.contains("refused"),
        "internals leaked: {}",
        me.text
    );

    proxy.restore();
    let mut ready = 0;
    for _ in 0..50 {
        ready = srv.client().get("/ready").await.status;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        ready, 200,
        "the server did not recover when the database came back"
    );
    assert_eq!(
        srv.client()
            .bearer(&ada.token)
            .get("/api/v1/auth/me")
            .await
            .status,
        200
    );
}

async fn a_request_head_sent_too_slowly_closes_its_connection(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(backend, |c| {
        c.http_header_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let closed_by_the_server = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .is_ok()
    };

    // A head that never ends.
    let mut stalled = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: lyceum\r\n")
        .await
        .unwrap();
    // A head sent a byte every 200 ms, which would take 16 s.
    let trickled = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut reader, mut writer) = trickled.into_split();
    let trickling = tokio::spawn(async move {
        let head = format!(
            "GET /health HTTP/1.1\r\nHost: lyceum\r\nX-Slow: {}\r\n",
            "a".repeat(40)
        );
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    // Meanwhile, a client that sends its request at once is served.
    assert_eq!(srv.client().get("/health").await.status, 200);

    assert!(
        closed_by_the_server(stalled).await,
        "a connection whose head never ended is still open"
    );
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_to_end(&mut rest),
    )
    .await;
    assert!(ended.is_ok(), "a trickled head kept its connection open");
    trickling.abort();
}
