//! Raw Engine.IO and Socket.IO frames a well-behaved client never sends: malformed packets,
//! namespaces that do not exist, huge acknowledgement ids, binary attachments where JSON is
//! expected. Each is answered by the protocol's own error
//! or by closing that one connection; the server keeps serving everyone else, and a closed
//! connection leaves nothing behind (it gives its place under the user's socket cap back).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use lyceum_tests::{Backend, TestServer, backend_tests, socket::SocketClient};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

backend_tests!(
    malformed_frames_close_only_their_own_connection,
    a_namespace_that_does_not_exist_is_refused_by_the_protocol,
    binary_attachments_where_json_is_expected_are_validation_errors,
);

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What became of a raw connection after a frame: the server's next packet, or its end.
#[derive(Debug, PartialEq)]
enum Then {
    Packet(String),
    Closed,
}

/// A WebSocket that went through the Engine.IO open and, with `token`, the Socket.IO connect.
/// A connect refused for the user's socket cap is retried for 5 s: the server releases a
/// closed socket's place a moment after the close.
async fn raw(srv: &TestServer, token: Option<&str>) -> Ws {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert!(next(&mut ws).await.starts_with_packet("0{"));
        let Some(token) = token else {
            return ws;
        };
        send(&mut ws, &format!("40{}", json!({ "token": token }))).await;
        match next(&mut ws).await {
            then if then.starts_with_packet("40") => return ws,
            then if then.starts_with_packet("44") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            then => panic!("the connect was answered with {then:?}"),
        }
    }
}

impl Then {
    fn starts_with_packet(&self, prefix: &str) -> bool {
        matches!(self, Then::Packet(text) if text.starts_with(prefix))
    }
}

async fn send(ws: &mut Ws, text: &str) {
    // The server may already have closed: that is an answer too, read by `next`.
    let _ = ws.send(Message::Text(text.to_owned().into())).await;
}

/// The next text packet other than a ping, or the end of the connection (within 5 s).
async fn next(ws: &mut Ws) -> Then {
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => continue,
                Some(Ok(Message::Text(text))) => return Then::Packet(text.to_string()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Then::Closed,
                Some(Ok(_)) => continue,
            }
        }
    });
    wait.await
        .expect("neither an answer nor a close within 5 s")
}

/// The server still answers a well-behaved socket and plain HTTP.
async fn still_serving(srv: &TestServer, healthy: &SocketClient) {
    let ack = healthy.emit_ack("chat:online_users", json!({})).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "VALIDATION_FAILED", "{ack}");
    assert_eq!(srv.client().get("/health").await.status, 200);
}

async fn malformed_frames_close_only_their_own_connection(backend: Backend) {
    // Two sockets per user: a connection that kept its place after closing would lock the
    // user out of the next one.
    let srv = TestServer::start_with(backend, |c| c.socket_max_per_user = 2).await;
    let ada = srv.register("student").await;
    let healthy = SocketClient::ready(srv.addr, &ada.token).await;
    let frames = [
        "not an engine.io packet",
        "4",
        "42",
        "42[\"chat:join_room\",{",
        "42{\"not\":\"an array\"}",
        "42[]",
        "42[42]",
        "43",
        "49[\"x\"]",
    ];
    for frame in frames {
        let mut ws = raw(&srv, Some(&ada.token)).await;
        send(&mut ws, frame).await;
        let then = next(&mut ws).await;
        // Either the protocol's error or the end of this connection; never an answer that
        // pretends the frame was an event.
        match &then {
            Then::Closed => {}
            Then::Packet(text) => assert!(
                text.starts_with("44") || text.starts_with('1') || text.starts_with("41"),
                "{frame:?} was answered with {text:?}"
            ),
        }
        still_serving(&srv, &healthy).await;
    }
    // An acknowledgement id beyond any integer: the parser drops the id, so the event is
    // handled as one that asked for no answer, and the connection carries on.
    let mut ws = raw(&srv, Some(&ada.token)).await;
    send(
        &mut ws,
        "4299999999999999999999999999999999[\"chat:online_users\",{}]",
    )
    .await;
    send(&mut ws, "427[\"chat:online_users\",{}]").await;
    let then = next(&mut ws).await;
    assert!(then.starts_with_packet("437"), "{then:?}");
    drop(ws);

    // Every connection those frames opened gave its place back: with the healthy socket
    // holding one of the user's two, one more connects.
    raw(&srv, Some(&ada.token)).await;
}

async fn a_namespace_that_does_not_exist_is_refused_by_the_protocol(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let ada = srv.register("student").await;
    let mut ws = raw(&srv, None).await;
    send(
        &mut ws,
        &format!("40/admin,{}", json!({ "token": ada.token })),
    )
    .await;
    let then = next(&mut ws).await;
    assert!(
        then.starts_with_packet("44/admin,"),
        "a connect to /admin was answered with {then:?}"
    );
    // An event on it reaches nothing: no answer, and the default namespace still works.
    send(&mut ws, "42/admin,1[\"chat:online_users\",{}]").await;
    send(&mut ws, &format!("40{}", json!({ "token": ada.token }))).await;
    assert!(next(&mut ws).await.starts_with_packet("40"));
    send(&mut ws, "422[\"chat:online_users\",{}]").await;
    let then = next(&mut ws).await;
    assert!(then.starts_with_packet("432"), "{then:?}");
}

async fn binary_attachments_where_json_is_expected_are_validation_errors(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let (teacher, course) = srv.course().await;
    let mut ws = raw(&srv, Some(&teacher.token)).await;
    // A binary event whose roomId is an attachment placeholder, then the attachment.
    send(
        &mut ws,
        "451-7[\"chat:join_room\",{\"roomId\":{\"_placeholder\":true,\"num\":0}}]",
    )
    .await;
    let _ = ws.send(Message::Binary(vec![1, 2, 3].into())).await;
    let then = next(&mut ws).await;
    let Then::Packet(text) = then else {
        panic!("the connection closed instead of answering");
    };
    let ack: Value = serde_json::from_str(
        text.strip_prefix("437")
            .unwrap_or_else(|| panic!("not the ack of 7: {text}")),
    )
    .unwrap();
    assert_eq!(ack[0]["error"]["code"], "VALIDATION_FAILED", "{ack}");
    // The socket is still usable for a proper join.
    send(
        &mut ws,
        &format!(
            "428{}",
            json!(["chat:join_room", {"roomId": course["roomId"]}])
        ),
    )
    .await;
    let then = next(&mut ws).await;
    assert!(then.starts_with_packet("438[{\"ok\":true"), "{then:?}");
}
