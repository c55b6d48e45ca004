//! Which web pages may open a socket: a request to `/socket.io` from a page of a foreign
//! origin is refused with 403 `FORBIDDEN` on either transport, before Engine.IO sees it;
//! pages of a configured origin or of the server itself, and clients that send no `Origin`,
//! connect as before.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use lyceum_tests::{Backend, Reply, TestServer, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

backend_tests!(
    a_foreign_page_cannot_open_a_socket_on_either_transport,
    a_foreign_page_cannot_take_over_a_socket_opened_without_an_origin,
    pages_of_a_configured_origin_open_sockets_on_both_transports,
    pages_served_by_the_server_itself_open_sockets_on_both_transports,
    clients_that_send_no_origin_open_sockets_on_both_transports,
    look_alikes_of_a_configured_origin_are_refused,
);

const GOOD: &str = "https://good.example";
const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";
const WEBSOCKET: &str = "/socket.io/?EIO=4&transport=websocket";

async fn start(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| c.cors_origins = vec![GOOD.into()]).await
}

fn same_origin(srv: &TestServer) -> String {
    format!("http://{}", srv.addr)
}

/// A long-polling request as a page of `origin` sends it.
async fn polling(
    srv: &TestServer,
    method: Method,
    path: &str,
    origin: Option<&str>,
    body: &str,
) -> Reply {
    let client = srv.client();
    let mut request = client
        .request(method, path)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_owned());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    client.send(request).await
}

/// A polling handshake accepted by Engine.IO: 200 with its open packet, `0{"sid":…}`. The sid.
fn assert_opened(reply: &Reply, origin: &str) -> String {
    assert_eq!(reply.status, 200, "{origin}: {}", reply.text);
    let open: Value = reply
        .text
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| panic!("{origin}: not an open packet: {}", reply.text));
    open["sid"].as_str().expect("a sid").to_owned()
}

#[track_caller]
fn assert_refused(reply: &Reply, origin: &str) {
    reply.assert_error(403, "FORBIDDEN");
    assert_eq!(
        reply.body["error"]["message"], "this origin may not open a socket",
        "{origin}"
    );
}

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket handshake (with a real WebSocket client) as a page of `origin` sends it: the
/// upgraded socket (101), or the status it was refused with.
async fn websocket(srv: &TestServer, path: &str, origin: Option<&str>) -> Result<WebSocket, u16> {
    let mut request = format!("ws://{}{path}", srv.addr)
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("the handshake failed below HTTP: {other}"),
    }
}

async fn next_text(ws: &mut WebSocket) -> String {
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("no text frame: {other:?}"),
    }
}

/// The same WebSocket handshake sent as a plain HTTP request, so that a refusal's body can
/// be read whole.
async fn websocket_refusal(srv: &TestServer, path: &str, origin: &str) -> Reply {
    let client = srv.client();
    client
        .send(
            client
                .request(Method::GET, path)
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("origin", origin),
        )
        .await
}

/// A page of `origin` (or a client without one) connects the way socket.io-client does:
/// a polling handshake, the Socket.IO connect, the upgrade of that session to a WebSocket;
/// and connects once more straight over a WebSocket.
async fn assert_both_transports_open(srv: &TestServer, origin: Option<&str>) {
    let named = origin.unwrap_or("no origin");
    let ada = srv.register("student").await;
    let opened = polling(srv, Method::GET, HANDSHAKE, origin, "").await;
    let sid = assert_opened(&opened, named);
    let session = format!("{HANDSHAKE}&sid={sid}");
    let connect = json!({ "token": ada.token }).to_string();
    let sent = polling(srv, Method::POST, &session, origin, &format!("40{connect}")).await;
    assert_eq!((sent.status, sent.text.as_str()), (200, "ok"), "{named}");
    let mut received = Vec::new();
    while !received.iter().any(|p: &String| p.starts_with("40{")) {
        assert!(received.len() < 10, "{named}: not connected: {received:?}");
        let poll = polling(srv, Method::GET, &session, origin, "").await;
        assert_eq!(poll.status, 200, "{named}: {}", poll.text);
        for packet in poll.text.split('\u{1e}') {
            if packet == "2" {
                let pong = polling(srv, Method::POST, &session, origin, "3").await;
                assert_eq!(pong.status, 200, "{named}: {}", pong.text);
            }
            received.push(packet.to_owned());
        }
    }

    let mut upgraded = websocket(srv, &format!("{WEBSOCKET}&sid={sid}"), origin)
        .await
        .unwrap_or_else(|status| panic!("{named}: upgrade refused with {status}"));
    upgraded.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut upgraded).await, "3probe", "{named}");

    let mut direct = websocket(srv, WEBSOCKET, origin)
        .await
        .unwrap_or_else(|status| panic!("{named}: WebSocket refused with {status}"));
    let open = next_text(&mut direct).await;
    assert!(open.starts_with("0{"), "{named}: {open}");
}

async fn assert_both_transports_refused(srv: &TestServer, origin: &str) {
    assert_refused(
        &polling(srv, Method::GET, HANDSHAKE, Some(origin), "").await,
        origin,
    );
    assert_eq!(
        websocket(srv, WEBSOCKET, Some(origin)).await.err(),
        Some(403),
        "{origin}"
    );
    assert_refused(&websocket_refusal(srv, WEBSOCKET, origin).await, origin);
}

async fn a_foreign_page_cannot_open_a_socket_on_either_transport(backend: Backend) {
    let srv = start(backend).await;
    for origin in ["https://evil.example", "null"] {
        assert_both_transports_refused(&srv, origin).await;
    }
}

/// Every request under `/socket.io` is checked, not only the first: a session opened by some
/// other client cannot be carried on, or upgraded, from a foreign page.
async fn a_foreign_page_cannot_take_over_a_socket_opened_without_an_origin(backend: Backend) {
    let srv = start(backend).await;
    let sid = assert_opened(
        &polling(&srv, Method::GET, HANDSHAKE, None, "").await,
        "no origin",
    );
    let session = format!("{HANDSHAKE}&sid={sid}");
    let evil = "https://evil.example";
    assert_refused(
        &polling(&srv, Method::POST, &session, Some(evil), "40").await,
        evil,
    );
    assert_refused(
        &polling(&srv, Method::GET, &session, Some(evil), "").await,
        evil,
    );
    let upgrade = format!("{WEBSOCKET}&sid={sid}");
    assert_eq!(websocket(&srv, &upgrade, Some(evil)).await.err(), Some(403));
    assert_refused(&websocket_refusal(&srv, &upgrade, evil).await, evil);
}

async fn pages_of_a_configured_origin_open_sockets_on_both_transports(backend: Backend) {
    let srv = start(backend).await;
    assert_both_transports_open(&srv, Some(GOOD)).await;
    // Scheme and host are case-insensitive.
    assert_both_transports_open(&srv, Some("HTTPS://Good.Example")).await;
}

async fn pages_served_by_the_server_itself_open_sockets_on_both_transports(backend: Backend) {
    let srv = start(backend).await;
    assert_both_transports_open(&srv, Some(&same_origin(&srv))).await;
    // Behind a proxy that ends TLS, a page served over HTTPS still names this host.
    let https = format!("https://{}", srv.addr);
    assert_both_transports_open(&srv, Some(&https)).await;
    // Same host, another port: another origin.
    let other_port = format!(
        "http://{}:{}",
        srv.addr.ip(),
        srv.addr.port().wrapping_add(1)
    );
    assert_both_transports_refused(&srv, &other_port).await;
    assert_both_transports_refused(&srv, &format!("http://localhost:{}", srv.addr.port())).await;
}

async fn clients_that_send_no_origin_open_sockets_on_both_transports(backend: Backend) {
    let srv = start(backend).await;
    assert_both_transports_open(&srv, None).await;
}

async fn look_alikes_of_a_configured_origin_are_refused(backend: Backend) {
    let srv = start(backend).await;
    for origin in [
        "https://good.example.evil.com",
        "https://evil-good.example",
        "https://good.example:444",
        "http://good.example",
        "https://good.example/",
    ] {
        assert_both_transports_refused(&srv, origin).await;
    }
}
