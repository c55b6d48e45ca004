//! Operations, the error envelope for requests no handler accepts, and clients too slow to
//! keep a connection.

use lyceum_tests::{Backend, TestServer, backend_tests, socket::SocketClient};
use serde_json::{Value, json};

backend_tests!(
    health_and_ready_answer,
    unknown_routes_and_methods_answer_in_the_envelope,
    every_json_body_over_max_json_body_is_413_and_changes_nothing,
    a_body_trickled_past_the_request_time_limit_is_answered_503_and_changes_nothing,
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

/// Every operation the OpenAPI document gives a JSON body, so that a route added later is
/// covered without being listed here: its path with each `{param}` filled in.
fn json_body_operations(spec: &Value) -> Vec<(reqwest::Method, String)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if operation["requestBody"]["content"]["application/json"].is_null() {
                continue;
            }
            let mut concrete = String::new();
            for (i, piece) in path.split(['{', '}']).enumerate() {
                // Odd pieces are parameter names; a fresh id fits each of them (the slot of
                // `/plugins/{slot}` included: the body is refused before the slot is read).
                concrete.push_str(if i % 2 == 1 {
                    "0190aa6e-0000-7000-8000-000000000001"
                } else {
                    piece
                });
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            found.push((method, concrete));
        }
    }
    found
}

async fn every_json_body_over_max_json_body_is_413_and_changes_nothing(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| c.max_json_body = 4096).await;
    let admin = srv.admin().await;
    srv.course().await;
    let spec = srv.client().get("/api/openapi.json").await.body;
    let operations = json_body_operations(&spec);
    for expected in [
        "/api/v1/auth/register",
        "/api/v1/courses",
        "/api/v1/chat/messages/0190aa6e-0000-7000-8000-000000000001",
        "/api/v1/plugins/0190aa6e-0000-7000-8000-000000000001",
    ] {
        assert!(
            operations.iter().any(|(_, path)| path == expected),
            "{expected} is not among the JSON operations {operations:?}"
        );
    }
    let courses_before = srv
        .client()
        .bearer(&admin.token)
        .get("/api/v1/courses")
        .await
        .data();

    // Valid JSON, every string field the routes know, and 5,000 bytes of padding.
    let big = json!({
        "email": "big@example.com", "password": "long enough password", "name": "Big",
        "title": "Big", "description": "x".repeat(5000), "content": "hello",
        "refreshToken": "x", "plugins": [], "clientId": "c1",
    })
    .to_string();
    // An admin gets past every extractor that comes before the body (roles are the
    // services' to check, after it).
    let client = srv.client().bearer(&admin.token);
    for (method, path) in &operations {
        let sized = client
            .send(
                client
                    .request(method.clone(), path)
                    .header("content-type", "application/json")
                    .body(big.clone()),
            )
            .await;
        sized.assert_error(413, "PAYLOAD_TOO_LARGE");
        // Without a Content-Length the limit holds as the body streams in.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
            .as_bytes()
            .chunks(1000)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let streamed = client
            .send(
                client
                    .request(method.clone(), path)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
            )
            .await;
        streamed.assert_error(413, "PAYLOAD_TOO_LARGE");
    }
    // Nothing was created or changed, and no one was signed up.
    assert_eq!(
        srv.client()
            .bearer(&admin.token)
            .get("/api/v1/courses")
            .await
            .data(),
        courses_before
    );
    srv.client()
        .post(
            "/api/v1/auth/login",
            json!({"email": "big@example.com", "password": "long enough password"}),
        )
        .await
        .assert_error(401, "UNAUTHORIZED");
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

async fn a_body_trickled_past_the_request_time_limit_is_answered_503_and_changes_nothing(
    backend: Backend,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(backend, |c| {
        c.http_request_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let (teacher, _) = srv.course().await;
    let before = srv
        .client()
        .bearer(&teacher.token)
        .get("/api/v1/courses")
        .await
        .data();

    // A valid course, sent a byte every 50 ms: it would take over 10 s.
    let body = json!({"title": "Trickled", "description": "x".repeat(150)}).to_string();
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/courses HTTP/1.1\r\nHost: lyceum\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        teacher.token,
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let trickling = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    // Meanwhile other requests are served.
    assert_eq!(srv.client().get("/health").await.status, 200);

    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(8), reader.read(&mut answer))
        .await
        .expect("answered before the body was complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"UNAVAILABLE""#), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    trickling.abort();
    assert_eq!(
        srv.client()
            .bearer(&teacher.token)
            .get("/api/v1/courses")
            .await
            .data(),
        before,
        "a course was created from a request that was cut off"
    );
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
async fn shutdown_under_load_finishes_requests_closes_sockets_cleanly_and_keeps_what_it_acked() {
    use lyceum_tests::chat::{history, room_of};
    // An expensive password hash keeps logins in flight while shutdown begins.
    let mut srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.argon2_memory_kib = 64 * 1024;
        c.argon2_iterations = 6;
        c.chat_rate_per_second = 100_000.0;
        c.chat_rate_burst = 100_000;
    })
    .await;
    let (_, course) = srv.course().await;
    let room = room_of(&course);
    let mut students = Vec::new();
    for _ in 0..3 {
        let student = srv.register("student").await;
        srv.enroll(&student, &course).await;
        students.push(student);
    }
    let mut sockets = Vec::new();
    for student in &students {
        for _ in 0..2 {
            let socket = std::sync::Arc::new(SocketClient::ready(srv.addr, &student.token).await);
            let joined = socket
                .emit_ack("chat:join_room", json!({ "roomId": room }))
                .await;
            assert_eq!(joined["ok"], true, "{joined}");
            sockets.push(socket);
        }
    }
    let old_addr = srv.addr;

    // Every socket sends one message after another until its connection ends.
    let senders: Vec<_> = sockets
        .iter()
        .enumerate()
        .map(|(s, socket)| {
            let (socket, room) = (socket.clone(), room.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let client_id = format!("s{s}-{i}");
                    let body =
                        json!({ "roomId": room, "content": client_id, "clientId": client_id });
                    match socket
                        .try_emit_ack("chat:send_message", body, std::time::Duration::from_secs(5))
                        .await
                    {
                        Some(ack) if ack["ok"] == true => acked.push(client_id),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    let logins: Vec<_> = students
        .iter()
        .map(|student| {
            let client = srv.client();
            let body = json!({"email": student.email, "password": student.password});
            tokio::spawn(async move { client.post("/api/v1/auth/login", body).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // A graceful stop, then a start on the same data.
    tokio::time::timeout(std::time::Duration::from_secs(20), srv.restart())
        .await
        .expect("the server stops and starts again");
    for login in logins {
        let login = login.await.unwrap();
        assert_eq!(
            login.status, 200,
            "an in-flight login was cut off: {}",
            login.body
        );
    }
    for socket in &sockets {
        assert!(
            socket
                .closed_within(std::time::Duration::from_secs(2))
                .await
        );
        assert!(
            socket.closed_cleanly(),
            "a socket was dropped without a goodbye"
        );
    }
    assert!(
        reqwest::get(format!("http://{old_addr}/health"))
            .await
            .is_err(),
        "the stopped server is still accepting"
    );
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    assert!(
        acked.len() >= sockets.len(),
        "too little load: {} acked",
        acked.len()
    );

    // Every message acknowledged before the stop is stored, once.
    let history = history(&srv, &students[0], &room).await;
    let mut stored = std::collections::HashMap::new();
    for message in &history {
        let client_id = message["clientId"].as_str().unwrap().to_owned();
        *stored.entry(client_id).or_insert(0) += 1;
    }
    assert!(
        stored.values().all(|&n| n == 1),
        "a message is stored twice"
    );
    for client_id in &acked {
        assert!(stored.contains_key(client_id), "acked {client_id} was lost");
    }
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
