//! Accounts and tokens, per the Auth section of the contract.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use lyceum_tests::{Backend, JWT_SECRET, TestServer, backend_tests};
use serde_json::{Value, json};

backend_tests!(
    registering_returns_the_user_and_a_token_pair,
    a_duplicate_email_is_a_conflict_whatever_its_case,
    registration_input_is_validated_field_by_field,
    malformed_bodies_are_validation_errors,
    logging_in_checks_the_password_without_revealing_accounts,
    repeated_failed_logins_are_rate_limited,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    logout_revokes_and_is_idempotent,
    me_requires_a_valid_bearer_token,
    forged_and_expired_tokens_are_refused,
    claims_of_the_wrong_type_or_missing_are_refused,
    a_rotated_secret_keeps_its_tokens_valid_while_it_is_retired,
    eight_concurrent_registrations_with_one_email_give_one_account,
    sign_ups_beyond_the_hashing_queue_are_refused_and_change_nothing,
    a_user_given_another_role_loses_sockets_and_tokens_of_the_old_role,
    a_deleted_user_loses_sockets_tokens_and_logins,
    a_user_who_teaches_cannot_be_deleted,
    a_login_storm_is_queued_or_refused_and_health_keeps_answering,
);

async fn registering_returns_the_user_and_a_token_pair(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/register",
            json!({"email": "Ada@Example.com", "password": "analytical", "name": "Ada"}),
        )
        .await;
    assert_eq!(reply.status, 201);
    let data = reply.data();
    let user = &data["user"];
    assert_eq!(
        user["email"], "ada@example.com",
        "emails are normalised to lower case"
    );
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["role"], "student", "role defaults to student");
    assert_eq!(
        uuid::Uuid::parse_str(user["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    assert!(chrono::DateTime::parse_from_rfc3339(user["createdAt"].as_str().unwrap()).is_ok());
    assert!(user.get("passwordHash").is_none() && user.get("password_hash").is_none());
    assert_eq!(data["accessToken"].as_str().unwrap().split('.').count(), 3);
    assert!(data["refreshToken"].as_str().unwrap().len() >= 43);

    let me = srv
        .client()
        .bearer(data["accessToken"].as_str().unwrap())
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(me.data(), *user);

    let teacher = srv
        .client()
        .post("/api/v1/auth/register", json!({"email": "t@example.com", "password": "analytical", "name": "T", "role": "instructor"}))
        .await;
    assert_eq!(teacher.data()["user"]["role"], "instructor");
}

async fn a_duplicate_email_is_a_conflict_whatever_its_case(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let body = json!({"email": "grace@example.com", "password": "compiler1", "name": "Grace"});
    assert_eq!(
        srv.client()
            .post("/api/v1/auth/register", body)
            .await
            .status,
        201
    );
    let again = srv
        .client()
        .post(
            "/api/v1/auth/register",
            json!({"email": "GRACE@example.com", "password": "compiler2", "name": "G"}),
        )
        .await;
    again.assert_error(409, "CONFLICT");
}

async fn registration_input_is_validated_field_by_field(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let cases = [
        (json!({"password": "longenough", "name": "N"}), "email"),
        (
            json!({"email": "not-an-email", "password": "longenough", "name": "N"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short", "name": "N"}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "longenough", "name": "   "}),
            "name",
        ),
        (
            json!({"email": "a@example.com", "password": "longenough"}),
            "name",
        ),
        (
            json!({"email": "a@example.com", "password": "longenough", "name": "N", "role": "admin"}),
            "role",
        ),
        (
            json!({"email": "a@example.com", "password": "longenough", "name": "N", "role": 7}),
            "role",
        ),
        (
            json!({"email": "a@example.com", "password": "longenough", "name": "x".repeat(101)}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let reply = srv
            .client()
            .post("/api/v1/auth/register", body.clone())
            .await;
        reply.assert_error(400, "VALIDATION_FAILED");
        assert_eq!(reply.field(), field, "for {body}");
    }
    // Eight characters counted as code points, not bytes: "ééééééé" is 7.
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/register",
            json!({"email": "b@example.com", "password": "ééééééé", "name": "N"}),
        )
        .await;
    assert_eq!(reply.field(), "password");
    // Nothing was created by any of these.
    let login = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": "a@example.com", "password": "longenough"}),
        )
        .await;
    login.assert_error(401, "UNAUTHORIZED");
}

async fn malformed_bodies_are_validation_errors(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let client = srv.client();
    let reply = client
        .post_raw("/api/v1/auth/register", "application/json", "{\"email\": ")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(reply.field(), "body");
    let reply = client
        .post_raw("/api/v1/auth/register", "text/plain", "hello")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    let reply = client
        .post_raw("/api/v1/auth/register", "application/json", "[1, 2]")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    let reply = client
        .post_raw("/api/v1/auth/login", "application/json", "")
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
}

async fn logging_in_checks_the_password_without_revealing_accounts(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let ok = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email.to_uppercase(), "password": ada.password}),
        )
        .await;
    let data = ok.data();
    assert_eq!(data["user"]["id"], ada.id.as_str());
    assert_ne!(
        data["refreshToken"],
        ada.refresh.as_str(),
        "each login starts a new token family"
    );

    let wrong = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email, "password": "not the password"}),
        )
        .await;
    wrong.assert_error(401, "UNAUTHORIZED");
    let unknown = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "not the password"}),
        )
        .await;
    unknown.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
}

async fn repeated_failed_logins_are_rate_limited(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        c.login_max_failures_per_email = 3;
        c.login_max_failures_per_ip = 100;
    })
    .await;
    let ada = srv.register("student").await;
    for _ in 0..3 {
        let reply = srv
            .client()
            .post(
                "/api/v1/auth/login",
                json!({"email": ada.email, "password": "guess-guess"}),
            )
            .await;
        reply.assert_error(401, "UNAUTHORIZED");
    }
    // Now even the right password waits out the window: the limiter answers before checking.
    let limited = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email, "password": ada.password}),
        )
        .await;
    limited.assert_error(429, "RATE_LIMITED");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry}");
    // Another account is unaffected by this email's failures.
    let bob = srv.register("student").await;
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": bob.email, "password": bob.password}),
        )
        .await;
    assert_eq!(reply.status, 200);

    // Per-IP throttling catches spraying across many emails.
    let srv = TestServer::start_with(backend, |c| {
        c.login_max_failures_per_email = 100;
        c.login_max_failures_per_ip = 4;
    })
    .await;
    for i in 0..4 {
        let reply = srv
            .client()
            .post(
                "/api/v1/auth/login",
                json!({"email": format!("spray{i}@example.com"), "password": "password1"}),
            )
            .await;
        reply.assert_error(401, "UNAUTHORIZED");
    }
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": "spray9@example.com", "password": "password1"}),
        )
        .await;
    reply.assert_error(429, "RATE_LIMITED");
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let first = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": ada.refresh}))
        .await;
    let first = first.data();
    let access = first["accessToken"].as_str().unwrap();
    let second_refresh = first["refreshToken"].as_str().unwrap();
    assert_ne!(second_refresh, ada.refresh);
    assert_eq!(
        srv.client()
            .bearer(access)
            .get("/api/v1/auth/me")
            .await
            .status,
        200
    );

    // The successor works once.
    let second = srv
        .client()
        .post(
            "/api/v1/auth/refresh",
            json!({"refreshToken": second_refresh}),
        )
        .await;
    let third_refresh = second.data()["refreshToken"].as_str().unwrap().to_owned();

    // Replaying the original (already rotated) token is reuse: refused, and the family dies.
    let replay = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": ada.refresh}))
        .await;
    replay.assert_error(401, "UNAUTHORIZED");
    let after = srv
        .client()
        .post(
            "/api/v1/auth/refresh",
            json!({"refreshToken": third_refresh}),
        )
        .await;
    after.assert_error(401, "UNAUTHORIZED");

    // Other families (another login) are untouched.
    let login = srv
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email, "password": ada.password}),
        )
        .await;
    let other = login.data()["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(
        srv.client()
            .post("/api/v1/auth/refresh", json!({"refreshToken": other}))
            .await
            .status,
        200
    );

    let garbage = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": "nope"}))
        .await;
    garbage.assert_error(401, "UNAUTHORIZED");
    let missing = srv.client().post("/api/v1/auth/refresh", json!({})).await;
    missing.assert_error(400, "VALIDATION_FAILED");
    assert_eq!(missing.field(), "refreshToken");
}

async fn logout_revokes_and_is_idempotent(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let reply = srv
        .client()
        .post("/api/v1/auth/logout", json!({"refreshToken": ada.refresh}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.data(), json!({}));
    let refresh = srv
        .client()
        .post("/api/v1/auth/refresh", json!({"refreshToken": ada.refresh}))
        .await;
    refresh.assert_error(401, "UNAUTHORIZED");
    for token in [ada.refresh.as_str(), "never-issued"] {
        let again = srv
            .client()
            .post("/api/v1/auth/logout", json!({"refreshToken": token}))
            .await;
        assert_eq!((again.status, again.data()), (200, json!({})));
    }
}

async fn me_requires_a_valid_bearer_token(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let client = srv.client();
    client
        .get("/api/v1/auth/me")
        .await
        .assert_error(401, "UNAUTHORIZED");
    client
        .bearer("")
        .get("/api/v1/auth/me")
        .await
        .assert_error(401, "UNAUTHORIZED");
    client
        .bearer("abc.def.ghi")
        .get("/api/v1/auth/me")
        .await
        .assert_error(401, "UNAUTHORIZED");
    let reply = client
        .send(
            client
                .request(reqwest::Method::GET, "/api/v1/auth/me")
                .header("authorization", "Basic dXNlcjpwYXNz"),
        )
        .await;
    reply.assert_error(401, "UNAUTHORIZED");
}

fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!(
        "{head}.{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

async fn forged_and_expired_tokens_are_refused(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let parts: Vec<&str> = ada.token.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], ada.id.as_str());
    for key in ["role", "iss", "aud", "iat", "exp", "jti", "nbf", "sid"] {
        assert!(claims.get(key).is_some(), "claim {key} missing");
    }
    assert_eq!(claims["typ"], "access");
    let now = chrono::Utc::now().timestamp();
    // The server's own header: HS256 and the key id.
    let hs256: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(hs256["alg"], "HS256");
    assert!(hs256["kid"].is_string(), "{hs256}");
    let me = |token: String| {
        let client = srv.client().bearer(&token);
        async move { client.get("/api/v1/auth/me").await }
    };

    // Sanity: a token we sign ourselves with the server's secret is accepted, so the refusals
    // below are about what was changed.
    assert_eq!(
        me(sign(&hs256, &claims, JWT_SECRET.as_bytes()))
            .await
            .status,
        200
    );

    // alg: none with no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );
    me(none).await.assert_error(401, "UNAUTHORIZED");
    // An edited payload under the original signature (promoting ourselves to admin).
    let mut promoted = claims.clone();
    promoted["role"] = json!("admin");
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(promoted.to_string()),
        parts[2]
    );
    me(edited).await.assert_error(401, "UNAUTHORIZED");
    // A different algorithm, correctly signed with the right secret.
    let hs512 = {
        use hmac::{Hmac, Mac};
        let head = URL_SAFE_NO_PAD.encode(json!({"alg": "HS512", "typ": "JWT"}).to_string());
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
        mac.update(format!("{head}.{}", parts[1]).as_bytes());
        format!(
            "{head}.{}.{}",
            parts[1],
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    me(hs512).await.assert_error(401, "UNAUTHORIZED");
    // The wrong secret.
    me(sign(&hs256, &claims, b"another-secret-another-secret-xx"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    // Expired.
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3600);
    expired["nbf"] = json!(now - 3600);
    expired["exp"] = json!(now - 600);
    me(sign(&hs256, &expired, JWT_SECRET.as_bytes()))
        .await
        .assert_error(401, "UNAUTHORIZED");
    // Not yet valid.
    let mut early = claims.clone();
    early["nbf"] = json!(now + 600);
    me(sign(&hs256, &early, JWT_SECRET.as_bytes()))
        .await
        .assert_error(401, "UNAUTHORIZED");
    // Another issuer or audience.
    let mut foreign = claims.clone();
    foreign["aud"] = json!("someone-else");
    me(sign(&hs256, &foreign, JWT_SECRET.as_bytes()))
        .await
        .assert_error(401, "UNAUTHORIZED");
    let mut foreign = claims.clone();
    foreign["iss"] = json!("someone-else");
    me(sign(&hs256, &foreign, JWT_SECRET.as_bytes()))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

fn decoded(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A claim of another JSON type must not pass as absent (jsonwebtoken before 10.3 skipped the
/// `nbf` check for a string `nbf`), and every claim is required.
async fn claims_of_the_wrong_type_or_missing_are_refused(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let parts: Vec<&str> = ada.token.split('.').collect();
    let (header, claims) = (decoded(parts[0]), decoded(parts[1]));
    let me = |token: String| {
        let client = srv.client().bearer(&token);
        async move { client.get("/api/v1/auth/me").await }
    };
    assert_eq!(
        me(sign(&header, &claims, JWT_SECRET.as_bytes()))
            .await
            .status,
        200
    );

    let later = chrono::Utc::now().timestamp() + 3_600;
    let changed = [
        ("nbf", json!(later.to_string())),
        ("nbf", json!(later as f64 + 0.25)),
        ("exp", json!((later + 60).to_string())),
        ("iat", json!(claims["iat"].to_string())),
        ("typ", json!("refresh")),
        ("sub", json!(42)),
    ];
    for (name, value) in changed {
        let mut forged = claims.clone();
        forged[name] = value.clone();
        let reply = me(sign(&header, &forged, JWT_SECRET.as_bytes())).await;
        assert_eq!(reply.status, 401, "{name} = {value} was accepted");
        reply.assert_error(401, "UNAUTHORIZED");
    }
    for name in ["exp", "nbf", "iat", "iss", "aud", "sub", "typ"] {
        let mut forged = claims.clone();
        forged.as_object_mut().unwrap().remove(name);
        let reply = me(sign(&header, &forged, JWT_SECRET.as_bytes())).await;
        assert_eq!(reply.status, 401, "a token without {name} was accepted");
    }
    // The key comes from the configuration: a header carrying its own key, or pointing at
    // one, changes nothing, and a token without `kid` is refused even when correctly signed.
    let attacker = b"an-attackers-own-secret-32-bytes";
    let mut with_jwk = header.clone();
    with_jwk["jwk"] = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker)});
    with_jwk["jku"] = json!("https://keys.invalid/jwks.json");
    me(sign(&with_jwk, &claims, attacker))
        .await
        .assert_error(401, "UNAUTHORIZED");
    let mut no_kid = header.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    me(sign(&no_kid, &claims, JWT_SECRET.as_bytes()))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

/// Rotation as the README describes it: the old secret moves to `jwt_retired_secrets`, its
/// tokens keep working, new tokens are signed with the new secret, and once the old secret is
/// dropped its tokens stop working. The servers share one database, as nodes would.
async fn a_rotated_secret_keeps_its_tokens_valid_while_it_is_retired(backend: Backend) {
    let old = TestServer::start(backend).await;
    let ada = old.register("student").await;
    let new_secret = "a-new-secret-after-rotation-also-long-enough";
    let same_database = |c: &mut lyceum::config::Config| {
        c.database_url = Some(lyceum::config::Secret::new(
            old.config.effective_database_url(),
        ));
        c.jwt_secret = Some(lyceum::config::Secret::new(new_secret));
    };
    let me = |srv: &TestServer, token: &str| {
        let client = srv.client().bearer(token);
        async move { client.get("/api/v1/auth/me").await.status }
    };

    let rotated = TestServer::start_with(backend, |c| {
        same_database(c);
        c.jwt_retired_secrets = vec![lyceum::config::Secret::new(JWT_SECRET)];
    })
    .await;
    assert_eq!(
        me(&rotated, &ada.token).await,
        200,
        "a rotation logged ada out"
    );
    let login = rotated
        .client()
        .post(
            "/api/v1/auth/login",
            json!({"email": ada.email, "password": ada.password}),
        )
        .await;
    let fresh = login.data()["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(me(&rotated, &fresh).await, 200);
    assert_ne!(
        decoded(fresh.split('.').next().unwrap())["kid"],
        decoded(ada.token.split('.').next().unwrap())["kid"],
        "signed with the retired key"
    );
    assert_eq!(
        me(&old, &fresh).await,
        401,
        "the old secret verifies the new key's token"
    );

    let retired_dropped = TestServer::start_with(backend, same_database).await;
    assert_eq!(me(&retired_dropped, &ada.token).await, 401);
    assert_eq!(me(&retired_dropped, &fresh).await, 200);
}

async fn eight_concurrent_registrations_with_one_email_give_one_account(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let attempts = (0..8).map(|i| {
        let client = srv.client();
        async move {
            client
                .post("/api/v1/auth/register", json!({"email": "race@example.com", "password": "password1", "name": format!("R{i}")}))
                .await
        }
    });
    let replies = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![201, 409, 409, 409, 409, 409, 409, 409],
        "{replies:?}"
    );
    for reply in replies.iter().filter(|r| r.status == 409) {
        assert_eq!(reply.code(), "CONFLICT");
    }
}

async fn sign_ups_beyond_the_hashing_queue_are_refused_and_change_nothing(backend: Backend) {
    let srv = TestServer::start_with(backend, |c| {
        // One hash at a time and one waiting; a costly hash keeps them busy while the rest of
        // the burst arrives.
        c.password_hash_threads = 1;
        c.password_hash_queue = 1;
        c.argon2_memory_kib = 64 * 1024;
        c.argon2_iterations = 3;
    })
    .await;
    let emails: Vec<String> = (0..12).map(|i| format!("burst{i}@example.com")).collect();
    let attempts = emails.iter().map(|email| {
        let client = srv.client();
        async move {
            client
                .post(
                    "/api/v1/auth/register",
                    json!({"email": email, "password": "password1", "name": "Burst"}),
                )
                .await
        }
    });
    let replies = futures::future::join_all(attempts).await;
    let mut refused = Vec::new();
    for (email, reply) in emails.iter().zip(&replies) {
        match reply.status {
            201 => assert_eq!(reply.data()["user"]["email"], email.as_str()),
            _ => {
                reply.assert_error(503, "UNAVAILABLE");
                let header: u64 = reply.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(header >= 1, "Retry-After {header}");
                assert_eq!(
                    reply.body["error"]["details"]["retryAfter"],
                    json!(header),
                    "{}",
                    reply.body
                );
                refused.push(email);
            }
        }
    }
    let accepted = emails.len() - refused.len();
    assert!(
        accepted >= 1 && !refused.is_empty(),
        "{accepted} accepted, {} refused: {replies:?}",
        refused.len()
    );
    // A refusal happens before anything is written: each refused email is still free.
    for email in refused {
        let reply = srv
            .client()
            .post(
                "/api/v1/auth/register",
                json!({"email": email, "password": "password1", "name": "Burst"}),
            )
            .await;
        assert_eq!(
            reply.status, 201,
            "{email} after its refusal: {}",
            reply.body
        );
    }
}

// ---- Accounts changed by an operator (`lyceum user set-role`, `lyceum user delete`) ----
//
// The commands run in another process on the same database; these tests make the same
// calls through a handle of their own, so the server learns of the change only as it would
// from the command.

/// Polls `GET /auth/me` with `token` until it is refused; panics after 5 s.
async fn refused_within_seconds(srv: &TestServer, token: &str) -> lyceum_tests::Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = srv.client().bearer(token).get("/api/v1/auth/me").await;
        if reply.status != 200 {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old token is still accepted 5 s after the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_user_given_another_role_loses_sockets_and_tokens_of_the_old_role(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let teacher = srv.register("instructor").await;
    let socket = lyceum_tests::socket::SocketClient::ready(srv.addr, &teacher.token).await;
    let bystander = srv.register("instructor").await;
    let other_socket = lyceum_tests::socket::SocketClient::ready(srv.addr, &bystander.token).await;

    let changed = lyceum::accounts(&srv.config)
        .await
        .unwrap()
        .set_role(&teacher.email, lyceum::domain::Role::Student)
        .await
        .unwrap();
    assert_eq!(changed.role, lyceum::domain::Role::Student);

    assert!(
        socket
            .closed_within(std::time::Duration::from_secs(5))
            .await,
        "the demoted user's socket stays connected"
    );
    refused_within_seconds(&srv, &teacher.token)
        .await
        .assert_error(401, "UNAUTHORIZED");
    // A refresh gets a token with the role the user has now, which the server takes.
    let pair = srv
        .client()
        .post(
            "/api/v1/auth/refresh",
            json!({"refreshToken": teacher.refresh}),
        )
        .await
        .data();
    let token = pair["accessToken"].as_str().unwrap();
    let me = srv
        .client()
        .bearer(token)
        .get("/api/v1/auth/me")
        .await
        .data();
    assert_eq!(me["role"], "student", "{me}");
    srv.client()
        .bearer(token)
        .post("/api/v1/courses", json!({"title": "Not any more"}))
        .await
        .assert_error(403, "FORBIDDEN");
    let again = lyceum_tests::socket::SocketClient::ready(srv.addr, token).await;
    assert!(
        !again
            .closed_within(std::time::Duration::from_millis(1500))
            .await
    );

    // Nobody else was touched.
    assert!(!other_socket.closed_within(std::time::Duration::ZERO).await);
    let reply = srv
        .client()
        .bearer(&bystander.token)
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

async fn a_deleted_user_loses_sockets_tokens_and_logins(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let student = srv.register("student").await;
    srv.enroll(&student, &course).await;
    let room = course["roomId"].as_str().unwrap();
    let said = srv
        .client()
        .bearer(&student.token)
        .post(
            &format!("/api/v1/chat/rooms/{room}/messages"),
            json!({"content": "hello before I go"}),
        )
        .await;
    assert_eq!(said.status, 201, "{}", said.body);
    let socket = lyceum_tests::socket::SocketClient::ready(srv.addr, &student.token).await;

    lyceum::accounts(&srv.config)
        .await
        .unwrap()
        .delete_user(&student.email)
        .await
        .unwrap();

    assert!(
        socket
            .closed_within(std::time::Duration::from_secs(5))
            .await,
        "the deleted user's socket stays connected"
    );
    refused_within_seconds(&srv, &student.token)
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .post(
            "/api/v1/auth/refresh",
            json!({"refreshToken": student.refresh}),
        )
        .await
        .assert_error(401, "UNAUTHORIZED");
    srv.client()
        .post(
            "/api/v1/auth/login",
            json!({"email": student.email, "password": student.password}),
        )
        .await
        .assert_error(401, "UNAUTHORIZED");
    // What was theirs went with them: the enrollment and the message.
    let members = srv
        .client()
        .bearer(&teacher.token)
        .get(&format!(
            "/api/v1/courses/{}/enrollments",
            course["id"].as_str().unwrap()
        ))
        .await
        .data();
    assert_eq!(members["items"], json!([]), "{members}");
    let history = srv
        .client()
        .bearer(&teacher.token)
        .get(&format!("/api/v1/chat/rooms/{room}/messages"))
        .await
        .data();
    assert_eq!(history["items"], json!([]), "{history}");
    // The email is free again.
    let reply = srv
        .client()
        .post(
            "/api/v1/auth/register",
            json!({"email": student.email, "password": "another good one", "name": "New"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn a_user_who_teaches_cannot_be_deleted(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let accounts = lyceum::accounts(&srv.config).await.unwrap();
    let refused = accounts.delete_user(&teacher.email).await.unwrap_err();
    assert_eq!(refused.code().as_str(), "CONFLICT", "{refused}");
    assert!(
        refused.to_string().contains("teaches 1 course"),
        "{refused}"
    );
    let missing = accounts
        .delete_user("nobody@example.com")
        .await
        .unwrap_err();
    assert_eq!(missing.code().as_str(), "NOT_FOUND", "{missing}");
    // Nothing changed: the teacher still signs in and teaches.
    let reply = srv
        .client()
        .bearer(&teacher.token)
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = srv
        .client()
        .bearer(&teacher.token)
        .get(&format!(
            "/api/v1/courses/{}",
            course["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.data()["instructorId"], teacher.id.as_str());
}

async fn a_login_storm_is_queued_or_refused_and_health_keeps_answering(backend: Backend) {
    // The production cost of a hash, on the default pool and queue.
    let srv = TestServer::start_with(backend, |c| {
        c.argon2_memory_kib = 19 * 1024;
        c.argon2_iterations = 2;
    })
    .await;
    let ada = srv.register("student").await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = tokio::spawn({
        let (client, done) = (srv.client(), done.clone());
        async move {
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let reply =
                    tokio::time::timeout(std::time::Duration::from_secs(5), client.get("/health"))
                        .await
                        .expect("/health did not answer within 5 s during the storm");
                assert_eq!(reply.status, 200, "{}", reply.text);
                latencies.push(started.elapsed());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            latencies
        }
    });

    let logins = (0..500).map(|_| {
        let client = srv.client();
        let body = json!({"email": ada.email, "password": ada.password});
        async move { client.post("/api/v1/auth/login", body).await }
    });
    let replies = futures::future::join_all(logins).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = health.await.unwrap();

    let mut signed_in = 0;
    for reply in &replies {
        match reply.status {
            200 => signed_in += 1,
            _ => {
                reply.assert_error(503, "UNAVAILABLE");
                assert!(
                    reply.headers.contains_key("retry-after"),
                    "{:?}",
                    reply.headers
                );
            }
        }
    }
    latencies.sort();
    let (median, slowest) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    println!(
        "500 logins: {signed_in} signed in, {} refused with Retry-After; /health polled {} times, \
         median {median:?}, slowest {slowest:?}",
        replies.len() - signed_in,
        latencies.len()
    );
    assert!(signed_in >= 1, "no login got through the storm");
    // Hashing runs on its own bounded threads, never on the threads that serve requests: a
    // starved server took seconds here. The 50 ms goal itself is measured quietly, in the
    // benchmark, not under a test run's load.
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "/health took {slowest:?} during the storm"
    );
}
