//! The Socket.IO handshake: authentication in `auth.token`, revocation disconnecting, tokens
//! that expire on open sockets (`auth:refresh`, `auth:expired`), and what one user, address
//! or socket may take: sockets per user and per address, events per second.

use std::time::Duration;

use lyceum_tests::{
    Backend, TestServer, backend_tests,
    socket::{ConnectError, SocketClient},
};
use serde_json::json;

backend_tests!(
    a_valid_access_token_connects,
    a_missing_malformed_or_expired_token_fails_with_unauthorized,
    logout_disconnects_the_sockets_of_that_login_only,
    refresh_token_reuse_disconnects_the_family,
    a_socket_whose_token_expired_is_told_and_disconnected_after_the_grace,
    auth_refresh_carries_a_socket_past_its_first_tokens_expiry,
    a_refused_auth_refresh_changes_nothing,
    a_user_may_hold_only_so_many_sockets,
    an_address_may_hold_only_so_many_sockets,
    an_event_flood_is_refused_then_disconnected,
    a_client_that_stops_reading_is_disconnected_by_the_heartbeat,
);

async fn a_valid_access_token_connects(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let socket = SocketClient::with_token(srv.addr, &ada.token).await;
    assert!(!socket.sid.is_empty());
    assert!(!socket.closed_within(Duration::from_millis(200)).await);
}

async fn a_missing_malformed_or_expired_token_fails_with_unauthorized(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let refused = |r: Result<SocketClient, ConnectError>| match r {
        Err(ConnectError::Refused(message)) => message,
        Err(other) => panic!("transport failure instead of connect_error: {other:?}"),
        Ok(_) => panic!("connection accepted"),
    };
    assert_eq!(
        refused(SocketClient::connect(srv.addr, None).await),
        "UNAUTHORIZED"
    );
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({}))).await),
        "UNAUTHORIZED"
    );
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({"token": 42}))).await),
        "UNAUTHORIZED"
    );
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({"token": "a.b.c"}))).await),
        "UNAUTHORIZED"
    );

    // An expired token, correctly signed.
    let keys = lyceum::security::jwt::JwtKeys::new(
        lyceum_tests::JWT_SECRET.as_bytes(),
        &srv.config.jwt_issuer,
        &srv.config.jwt_audience,
        Duration::from_secs(0),
    );
    let ada = srv.register("student").await;
    let token = keys
        .issue(
            ada.id.parse().unwrap(),
            lyceum::domain::Role::Student,
            lyceum::domain::TokenFamilyId::new(),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await; // past the 5 s leeway
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({"token": token}))).await),
        "UNAUTHORIZED"
    );
}

async fn logout_disconnects_the_sockets_of_that_login_only(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let second_login = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email, "password": ada.password}),
        )
        .await
        .data();
    let first = SocketClient::with_token(srv.addr, &ada.token).await;
    let second =
        SocketClient::with_token(srv.addr, second_login["accessToken"].as_str().unwrap()).await;

    let reply = srv
        .client()
        .post("/api/v1/auth/logout", json!({"refreshToken": ada.refresh}))
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        first.closed_within(Duration::from_secs(5)).await,
        "the logged-out socket stays connected"
    );
    assert!(
        !second.closed_within(Duration::from_millis(300)).await,
        "another login's socket was dropped"
    );
}

async fn refresh_token_reuse_disconnects_the_family(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let rotated = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": ada.refresh}))
        .await
        .data();
    let socket = SocketClient::with_token(srv.addr, rotated["accessToken"].as_str().unwrap()).await;
    let reuse = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": ada.refresh}))
        .await;
    reuse.assert_error(401, "UNAUTHORIZED");
    assert!(socket.closed_within(Duration::from_secs(5)).await);
}

/// A server whose sockets get one second of grace after their token expires.
async fn short_lived(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.socket_reauth_grace = Duration::from_secs(1);
    })
    .await
}

/// An access token for `user` (of a login of its own) that expires `ttl` from now, signed
/// with the server's key.
fn token_for(srv: &TestServer, user: &str, role: lyceum::domain::Role, ttl: Duration) -> String {
    lyceum::security::jwt::JwtKeys::new(
        lyceum_tests::JWT_SECRET.as_bytes(),
        &srv.config.jwt_issuer,
        &srv.config.jwt_audience,
        ttl,
    )
    .issue(
        user.parse().unwrap(),
        role,
        lyceum::domain::TokenFamilyId::new(),
    )
    .unwrap()
}

async fn a_socket_whose_token_expired_is_told_and_disconnected_after_the_grace(backend: Backend) {
    let srv = short_lived(backend).await;
    let ada = srv.register("student").await;
    // `exp` counts whole seconds: this token expires 1–2 s from now, and the socket may stay
    // until a second of grace has fully passed after that, so never before 3 s from now.
    let token = token_for(
        &srv,
        &ada.id,
        lyceum::domain::Role::Student,
        Duration::from_secs(2),
    );
    let mut socket = SocketClient::ready(srv.addr, &token).await;
    assert!(
        !socket.closed_within(Duration::from_millis(2500)).await,
        "disconnected while its token was valid or within the grace"
    );
    // Due within 5 s (expiry ≤ 2 s, grace 1 s, the sweep ≤ 1 s, the second `exp` rounds
    // to); the margin beyond is for a machine busy with other tests.
    socket
        .expect_event("auth:expired", Duration::from_secs(20))
        .await;
    assert!(socket.closed_within(Duration::from_secs(10)).await);
}

async fn auth_refresh_carries_a_socket_past_its_first_tokens_expiry(backend: Backend) {
    let srv = short_lived(backend).await;
    let (teacher, course) = srv.course().await;
    let short = token_for(
        &srv,
        &teacher.id,
        lyceum::domain::Role::Instructor,
        Duration::from_secs(2),
    );
    let mut socket = SocketClient::ready(srv.addr, &short).await;

    let ack = socket
        .emit_ack("auth:refresh", json!({"token": teacher.token}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let expires_at = chrono::DateTime::parse_from_rfc3339(ack["expiresAt"].as_str().unwrap())
        .expect("expiresAt is RFC 3339");
    assert!(
        expires_at > chrono::Utc::now() + chrono::Duration::minutes(10),
        "expiresAt {expires_at} is not the new token's"
    );

    // Well past the first token's expiry and grace: still connected, still served.
    socket
        .expect_no_event("auth:expired", Duration::from_secs(5))
        .await;
    assert!(!socket.closed_within(Duration::ZERO).await);
    let joined = socket
        .emit_ack("chat:join_room", json!({"roomId": course["roomId"]}))
        .await;
    assert_eq!(joined["ok"], true, "{joined}");

    // The socket now belongs to the login of the token it was handed: logging that out
    // disconnects it.
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/logout",
            json!({"refreshToken": teacher.refresh}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(socket.closed_within(Duration::from_secs(5)).await);
}

async fn a_refused_auth_refresh_changes_nothing(backend: Backend) {
    let srv = short_lived(backend).await;
    let ada = srv.register("student").await;
    let bob = srv.register("student").await;
    let short = token_for(
        &srv,
        &ada.id,
        lyceum::domain::Role::Student,
        Duration::from_secs(2),
    );
    let mut socket = SocketClient::ready(srv.addr, &short).await;

    let refused = [
        (json!({"token": "a.b.c"}), "UNAUTHORIZED"),
        // A refresh token is not an access token.
        (json!({"token": ada.refresh}), "UNAUTHORIZED"),
        (json!({"token": bob.token}), "FORBIDDEN"),
        (json!({}), "VALIDATION_FAILED"),
        (json!({"token": 42}), "VALIDATION_FAILED"),
    ];
    for (payload, code) in refused {
        let ack = socket.emit_ack("auth:refresh", payload.clone()).await;
        assert_eq!(ack["ok"], false, "{payload} → {ack}");
        assert_eq!(ack["error"]["code"], code, "{payload} → {ack}");
    }
    // Still on the short token: it runs out as if nothing had been sent.
    socket
        .expect_event("auth:expired", Duration::from_secs(20))
        .await;
    assert!(socket.closed_within(Duration::from_secs(10)).await);
}

fn refused(attempt: Result<SocketClient, ConnectError>) -> String {
    match attempt {
        Err(ConnectError::Refused(message)) => message,
        Err(other) => panic!("transport failure instead of connect_error: {other:?}"),
        Ok(_) => panic!("connection accepted"),
    }
}

/// Connects `token` again and again until the server takes it (it learns of a closed socket
/// a moment after the client closes it); panics after 5 s.
async fn connects_soon(srv: &TestServer, token: &str) -> SocketClient {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match SocketClient::connect(srv.addr, Some(json!({ "token": token }))).await {
            Ok(socket) => return socket,
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "still refused 5 s after a socket closed: {error:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_user_may_hold_only_so_many_sockets(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| c.socket_max_per_user = 2).await;
    let ada = srv.register("student").await;
    let first = SocketClient::ready(srv.addr, &ada.token).await;
    let _second = SocketClient::ready(srv.addr, &ada.token).await;
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({"token": ada.token}))).await),
        "RATE_LIMITED"
    );
    // Others are not held to ada's count.
    let bob = srv.register("student").await;
    SocketClient::ready(srv.addr, &bob.token).await;

    // A tab closed frees its place.
    first.send_raw("1");
    assert!(first.closed_within(Duration::from_secs(5)).await);
    connects_soon(&srv, &ada.token).await;
}

async fn an_address_may_hold_only_so_many_sockets(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| c.socket_max_per_address = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let user = srv.register("student").await;
        open.push(SocketClient::ready(srv.addr, &user.token).await);
    }
    let fourth = srv.register("student").await;
    assert_eq!(
        refused(SocketClient::connect(srv.addr, Some(json!({"token": fourth.token}))).await),
        "RATE_LIMITED"
    );
    open[0].send_raw("1");
    assert!(open[0].closed_within(Duration::from_secs(5)).await);
    connects_soon(&srv, &fourth.token).await;
}

async fn an_event_flood_is_refused_then_disconnected(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.socket_event_rate_per_second = 1.0;
        c.socket_event_burst = 20;
    })
    .await;
    let ada = srv.register("student").await;
    let socket = SocketClient::ready(srv.addr, &ada.token).await;
    // Thirty at once against a burst of twenty: the events beyond it are refused (which ones
    // depends on the order the server takes them in), with a delay to retry after.
    let acks =
        futures::future::join_all((0..30).map(|_| socket.emit_ack("chat:online_users", json!({}))))
            .await;
    let limited: Vec<_> = acks
        .iter()
        .filter(|ack| ack["error"]["code"] == "RATE_LIMITED")
        .collect();
    assert!(limited.len() >= 8, "{} of 30 refused", limited.len());
    for ack in &limited {
        assert!(
            ack["error"]["details"]["retryAfter"].as_u64() >= Some(1),
            "{ack}"
        );
    }
    assert!(
        !socket.closed_within(Duration::from_millis(200)).await,
        "refused, not yet disconnected"
    );

    // Sending on at full speed, a burst's worth of refusals in a row, is a flood.
    for id in 0..40 {
        socket.send_raw(&format!("42{}[\"chat:online_users\",{{}}]", 2_000_000 + id));
    }
    assert!(
        socket.closed_within(Duration::from_secs(5)).await,
        "a flooding socket stays connected"
    );
    // The user may come back; nothing else holds it against them.
    SocketClient::ready(srv.addr, &ada.token).await;
}

async fn a_client_that_stops_reading_is_disconnected_by_the_heartbeat(backend: Backend) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let srv = TestServer::start_with(backend, |c| {
        c.socket_ping_interval = Duration::from_secs(1);
        c.socket_ping_timeout = Duration::from_secs(1);
        c.chat_rate_per_second = 1000.0;
        c.chat_rate_burst = 1000;
    })
    .await;
    let (teacher, course) = srv.course().await;
    let room = course["roomId"].as_str().unwrap().to_owned();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let next_text = async |ws: &mut tokio_tungstenite::WebSocketStream<_>, prefix: &str| loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(prefix) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended before {prefix}: {other:?}"),
        }
    };
    next_text(&mut ws, "0{").await;
    ws.send(Message::Text(
        format!("40{}", json!({"token": teacher.token})).into(),
    ))
    .await
    .unwrap();
    next_text(&mut ws, "40").await;
    ws.send(Message::Text(
        format!("421{}", json!(["chat:join_room", {"roomId": room}])).into(),
    ))
    .await
    .unwrap();
    next_text(&mut ws, "431").await;

    // From here on the client reads nothing (and so answers no ping) while its room is busy.
    for n in 0..30 {
        let reply = srv
            .client()
            .bearer(&teacher.token)
            .post(
                &format!("/api/v1/chat/rooms/{room}/messages"),
                json!({"content": format!("busy {n}")}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Reading again finds what was sent before the server gave up, then the end.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(message) = ws.next().await {
            if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent socket is still open");
}
