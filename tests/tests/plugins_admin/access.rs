//! Admins only: students and instructors are FORBIDDEN on every route, before anything
//! about their request is looked at (an unknown slot, a malformed body or filter); a request
//! without a token is UNAUTHORIZED.

use super::*;

backend_tests!(
    non_admins_are_forbidden_on_every_route_whatever_they_send,
    requests_without_a_token_are_unauthorized,
    an_admin_asking_for_an_unknown_slot_gets_not_found,
);

/// A request to one of the admin routes.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn call(method: Method, path: &str, body: Option<Value>) -> Call {
    Call {
        method,
        path: plugins(path),
        body,
    }
}

/// Every route, for a known and an unknown slot, with bodies an admin could send and bodies
/// no one could.
fn every_route() -> Vec<Call> {
    let chain = json!({ "chain": [{ "module": "builtin:chat-moderation" }] });
    let mut calls = vec![
        call(Method::GET, "", None),
        call(Method::GET, "/modules", None),
        call(Method::GET, "/decisions", None),
        call(Method::GET, "/decisions?slot=nonesuch&shadow=maybe", None),
    ];
    for slot in ["chat", "files", "signaling", "nonesuch"] {
        calls.extend([
            call(Method::GET, &format!("/{slot}"), None),
            call(Method::PUT, &format!("/{slot}"), Some(chain.clone())),
            call(
                Method::PUT,
                &format!("/{slot}"),
                Some(json!({ "links": 1 })),
            ),
            call(Method::POST, &format!("/{slot}/rollback"), None),
            call(Method::GET, &format!("/{slot}/revisions"), None),
            call(Method::GET, &format!("/{slot}/revisions?limit=0"), None),
            call(Method::PUT, &format!("/{slot}/shadow"), Some(chain.clone())),
            call(Method::PUT, &format!("/{slot}/shadow"), Some(json!([]))),
            call(Method::DELETE, &format!("/{slot}/shadow"), None),
            call(Method::POST, &format!("/{slot}/shadow/promote"), None),
        ]);
    }
    calls
}

async fn send(client: &Client, call: &Call) -> Reply {
    let mut request = client.request(call.method.clone(), &call.path);
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    client.send(request).await
}

/// Module uploads, well-formed or not. Small: the server refuses before it reads a body,
/// and a client still sending a large one may see the connection close before the answer.
async fn uploads(client: &Client) -> Vec<Reply> {
    vec![
        upload(client, b"\0asm\x01\0\0\0".to_vec(), Some("core module")).await,
        upload(client, b"not a module".to_vec(), None).await,
        client
            .post_raw(&plugins("/modules"), "application/json", "{}")
            .await,
    ]
}

async fn non_admins_are_forbidden_on_every_route_whatever_they_send(backend: Backend) {
    let srv = start(backend).await;
    let student = srv.register("student").await;
    let (instructor, _) = srv.course().await;
    let admin = srv.admin().await;
    let before = revisions_of(&as_client(&srv, &admin), "chat").await;

    for who in [&student, &instructor] {
        let client = as_client(&srv, who);
        for call in every_route() {
            let reply = send(&client, &call).await;
            assert_eq!(
                (reply.status, reply.code()),
                (403, "FORBIDDEN"),
                "{} {} {:?} answered {}",
                call.method,
                call.path,
                call.body,
                reply.body
            );
        }
        for reply in uploads(&client).await {
            reply.assert_error(403, "FORBIDDEN");
        }
    }

    // Nothing they sent changed anything.
    let admin = as_client(&srv, &admin);
    assert_eq!(revisions_of(&admin, "chat").await, before);
    let modules = admin.get(&plugins("/modules")).await.data();
    assert_eq!(modules["items"], json!([]), "{modules}");
}

async fn requests_without_a_token_are_unauthorized(backend: Backend) {
    let srv = start(backend).await;
    let client = srv.client();
    for call in every_route() {
        let reply = send(&client, &call).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "UNAUTHORIZED"),
            "{} {} answered {}",
            call.method,
            call.path,
            reply.body
        );
    }
    for reply in uploads(&client).await {
        reply.assert_error(401, "UNAUTHORIZED");
    }
    let forged = client.bearer("not-a-token");
    send(&forged, &call(Method::GET, "", None))
        .await
        .assert_error(401, "UNAUTHORIZED");
}

async fn an_admin_asking_for_an_unknown_slot_gets_not_found(backend: Backend) {
    let srv = start(backend).await;
    let admin = as_client(&srv, &srv.admin().await);
    let chain = json!({ "chain": [{ "module": "builtin:chat-moderation" }] });
    for call in [
        call(Method::GET, "/nonesuch", None),
        call(Method::PUT, "/nonesuch", Some(chain.clone())),
        call(Method::POST, "/nonesuch/rollback", None),
        call(Method::GET, "/nonesuch/revisions", None),
        call(Method::PUT, "/nonesuch/shadow", Some(chain)),
        call(Method::DELETE, "/nonesuch/shadow", None),
        call(Method::POST, "/nonesuch/shadow/promote", None),
    ] {
        let reply = send(&admin, &call).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "NOT_FOUND"),
            "{} {} answered {}",
            call.method,
            call.path,
            reply.body
        );
    }
}
