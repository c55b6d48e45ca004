//! The Socket.IO handshake: authentication in `auth.token`, and revocation disconnecting.

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
