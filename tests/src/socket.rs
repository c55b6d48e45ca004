//! A minimal Socket.IO v4 client over a WebSocket (Engine.IO v4 framing), enough to test the
//! gateway the way browsers use it: handshake auth, events, acknowledgements, server pings.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// The server answered `connect_error`; this is its `message`.
    Refused(String),
    Transport(String),
}

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// An event with the instant the client's reader took it off the wire.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub name: String,
    pub data: Value,
    pub received: Instant,
}

pub struct SocketClient {
    pub sid: String,
    outgoing: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<TimedEvent>,
    acks: Acks,
    next_ack: AtomicU64,
    closed: Arc<tokio::sync::Notify>,
    closed_flag: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the server said goodbye (a Socket.IO DISCONNECT, an Engine.IO close or a
    /// WebSocket close frame) rather than the connection just ending.
    closed_cleanly: Arc<std::sync::atomic::AtomicBool>,
    stray_acks: Arc<AtomicU64>,
}

impl SocketClient {
    /// Connects with `auth` as the handshake payload (e.g. `{"token": "..."}`).
    pub async fn connect(
        addr: SocketAddr,
        auth: Option<Value>,
    ) -> Result<SocketClient, ConnectError> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        // Nagle off, as browsers have it for WebSockets: small frames go out at once.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        // Engine.IO open packet: `0{"sid":...}`.
        let open = next_text(&mut stream)
            .await
            .ok_or_else(|| ConnectError::Transport("no open packet".into()))?;
        if !open.starts_with('0') {
            return Err(ConnectError::Transport(format!(
                "unexpected first packet {open}"
            )));
        }
        let connect = match &auth {
            Some(auth) => format!("40{auth}"),
            None => "40".to_owned(),
        };
        sink.send(Message::Text(connect.into()))
            .await
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let sid = loop {
            let packet = next_text(&mut stream)
                .await
                .ok_or_else(|| ConnectError::Transport("closed during connect".into()))?;
            if packet == "2" {
                sink.send(Message::Text("3".into())).await.ok();
                continue;
            }
            if let Some(body) = packet.strip_prefix("40") {
                let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                break value["sid"].as_str().unwrap_or("").to_owned();
            }
            if let Some(body) = packet.strip_prefix("44") {
                let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                return Err(ConnectError::Refused(
                    value["message"].as_str().unwrap_or("").to_owned(),
                ));
            }
        };

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let acks: Acks = Arc::default();
        let closed = Arc::new(tokio::sync::Notify::new());
        let closed_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stray_acks = Arc::new(AtomicU64::new(0));
        let closed_cleanly = Arc::new(std::sync::atomic::AtomicBool::new(false));

        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_acks = acks.clone();
        let pong = out_tx.clone();
        let reader_closed = closed.clone();
        let reader_flag = closed_flag.clone();
        let reader_strays = stray_acks.clone();
        let reader_clean = closed_cleanly.clone();
        tokio::spawn(async move {
            let clean = loop {
                let packet = match stream.next().await {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Close(_))) => break true,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break false,
                };
                if packet == "2" {
                    let _ = pong.send("3".into());
                } else if packet.starts_with("41") || packet == "1" {
                    break true;
                } else if let Some(rest) = packet.strip_prefix("43") {
                    let (id, body) = split_id(rest);
                    let args: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                    match id.and_then(|id| reader_acks.lock().unwrap().remove(&id)) {
                        Some(tx) => {
                            let _ = tx.send(args.get(0).cloned().unwrap_or(Value::Null));
                        }
                        None => {
                            reader_strays.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if let Some(rest) = packet.strip_prefix("42") {
                    let (_, body) = split_id(rest);
                    if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body)
                        && !items.is_empty()
                    {
                        let name = items.remove(0).as_str().unwrap_or("").to_owned();
                        let data = items.into_iter().next().unwrap_or(Value::Null);
                        let _ = event_tx.send(TimedEvent {
                            name,
                            data,
                            received: Instant::now(),
                        });
                    }
                }
            };
            reader_clean.store(clean, Ordering::SeqCst);
            reader_flag.store(true, Ordering::SeqCst);
            reader_closed.notify_waiters();
        });

        Ok(SocketClient {
            sid,
            outgoing: out_tx,
            events: event_rx,
            acks,
            next_ack: AtomicU64::new(1),
            closed,
            closed_flag,
            closed_cleanly,
            stray_acks,
        })
    }

    /// Connects with `{token}`; panics if refused.
    pub async fn with_token(addr: SocketAddr, token: &str) -> SocketClient {
        Self::connect(addr, Some(json!({ "token": token })))
            .await
            .expect("socket connects")
    }

    /// Connects with `{token}`, then waits until the server answers events on the new
    /// socket. The server sends CONNECT a moment before its event handlers are in place;
    /// tests of anything but that race probe with a harmless event until one is answered.
    pub async fn ready(addr: SocketAddr, token: &str) -> SocketClient {
        let socket = Self::with_token(addr, token).await;
        for _ in 0..50 {
            let probe = socket
                .try_emit_ack("chat:online_users", json!({}), Duration::from_millis(100))
                .await;
            if probe.is_some() {
                return socket;
            }
        }
        panic!("the socket never answered an event");
    }

    /// Emits `event` and waits (up to 5 s) for its acknowledgement.
    pub async fn emit_ack(&self, event: &str, data: Value) -> Value {
        self.emit_args_ack(event, &[data]).await
    }

    /// Emits `event` with exactly `args` as its arguments (none, one or several) and waits
    /// (up to 5 s) for its acknowledgement: for payloads no single JSON value expresses.
    pub async fn emit_args_ack(&self, event: &str, args: &[Value]) -> Value {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let mut packet_args = vec![json!(event)];
        packet_args.extend_from_slice(args);
        let packet = format!("42{id}{}", Value::Array(packet_args));
        self.outgoing.send(packet).expect("socket open");
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for {event} within 5 s"))
            .expect("ack channel")
    }

    /// Emits `event` and waits up to `wait` for its acknowledgement; `None` when none came
    /// (timeout or closed socket) instead of panicking, for load generators.
    pub async fn try_emit_ack(&self, event: &str, data: Value, wait: Duration) -> Option<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let packet = format!("42{id}{}", json!([event, data]));
        if self.outgoing.send(packet).is_err() {
            self.acks.lock().unwrap().remove(&id);
            return None;
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(value)) => Some(value),
            _ => {
                self.acks.lock().unwrap().remove(&id);
                None
            }
        }
    }

    /// Acknowledgements that matched no waiting emit: a second ack for the same event, an
    /// ack for an id never sent, or one that came after `try_emit_ack` gave up on it.
    pub fn stray_acks(&self) -> u64 {
        self.stray_acks.load(Ordering::Relaxed)
    }

    /// Hands every event from now on, timestamped on arrival, to a consumer on its own task
    /// (benchmarks). The `expect_*` methods see no events afterwards.
    pub fn take_timed_events(&mut self) -> mpsc::UnboundedReceiver<TimedEvent> {
        let (_, closed) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.events, closed)
    }

    /// Sends a raw Socket.IO packet (for malformed-input tests).
    pub fn send_raw(&self, packet: &str) {
        let _ = self.outgoing.send(packet.to_owned());
    }

    /// The next event named `name` within `wait`, skipping others.
    pub async fn expect_event(&mut self, name: &str, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {name} event within {wait:?}"));
            match next {
                Some(TimedEvent {
                    name: event, data, ..
                }) if event == name => return data,
                Some(_) => continue,
                None => panic!("socket closed while waiting for {name}"),
            }
        }
    }

    /// Asserts no event named `name` arrives within `wait`.
    pub async fn expect_no_event(&mut self, name: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(TimedEvent {
            name: event, data, ..
        })) = tokio::time::timeout_at(deadline, self.events.recv()).await
        {
            assert_ne!(event, name, "unexpected {name}: {data}");
        }
    }

    /// Whether the connection ended with a goodbye from the server (see `closed_within`).
    pub fn closed_cleanly(&self) -> bool {
        self.closed_cleanly.load(Ordering::SeqCst)
    }

    /// Waits until the server closes the connection; false if it stays open for `wait`.
    pub async fn closed_within(&self, wait: Duration) -> bool {
        if self.closed_flag.load(Ordering::SeqCst) {
            return true;
        }
        let notified = self.closed.notified();
        if self.closed_flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::timeout(wait, notified).await.is_ok()
            || self.closed_flag.load(Ordering::SeqCst)
    }
}

fn split_id(rest: &str) -> (Option<u64>, &str) {
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let id = rest[..digits].parse().ok();
    (id, &rest[digits..])
}

async fn next_text<S>(stream: &mut S) -> Option<String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
    None
}
