//! One Socket.IO connection over a WebSocket, owned by the single task that drives it.
//!
//! There is no reader task, writer task or channel per connection: the scenario's task
//! reads frames, answers pings and writes its own packets, which keeps a connection at one
//! task and a few kilobytes however many there are.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use crate::protocol::{self, Packet};

/// How long the TCP connect, the WebSocket upgrade and the Socket.IO handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Source addresses to spread connections over: one loopback address gives some 28,000
/// ephemeral ports towards one server port, and the kernel's search for a free one slows
/// down long before they run out (it tries ports of one parity first), so every 5,000
/// connections get another address of 127.0.0.0/8.
pub fn source_addrs(server: SocketAddr, connections: usize) -> Vec<IpAddr> {
    match server.ip() {
        IpAddr::V4(_) => {
            let count = connections.div_ceil(5_000).clamp(1, 250);
            (0..count)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8)))
                .collect()
        }
        // ::1 is the only IPv6 loopback address.
        IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
    }
}

/// Opens connections to one server, rotating over source addresses.
pub struct Connector {
    server: SocketAddr,
    url: String,
    sources: Vec<IpAddr>,
    next: AtomicUsize,
    config: WebSocketConfig,
}

impl Connector {
    pub fn new(server: SocketAddr, sources: Vec<IpAddr>, read_buffer: usize) -> Connector {
        Connector {
            server,
            url: format!("ws://{server}/socket.io/?EIO=4&transport=websocket"),
            sources,
            next: AtomicUsize::new(0),
            // The default eagerly allocates 128 KiB per connection for reading; 20,000 idle
            // sockets do not need 2.5 GiB. Writes go out at once (each send flushes anyway).
            config: WebSocketConfig::default()
                .read_buffer_size(read_buffer)
                .write_buffer_size(0),
        }
    }

    /// Connects and authenticates with `token`; the socket id and the connection.
    pub async fn connect(&self, token: &str) -> anyhow::Result<(String, Conn)> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(token))
            .await
            .map_err(|_| anyhow!("handshake timed out after {HANDSHAKE_TIMEOUT:?}"))?
    }

    async fn handshake(&self, token: &str) -> anyhow::Result<(String, Conn)> {
        let source = self.sources[self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len()];
        let stream = self.tcp(source).await?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            self.url.as_str(),
            stream,
            Some(self.config),
        )
        .await
        .context("websocket upgrade")?;
        let mut conn = Conn { ws };
        match conn.next_text().await? {
            Some(text) if matches!(protocol::parse(&text), Packet::Open(_)) => {}
            Some(text) => bail!("expected the Engine.IO open packet, got {text:?}"),
            None => bail!("closed before the Engine.IO open packet"),
        }
        conn.send(protocol::connect(token)).await?;
        loop {
            let Some(text) = conn.next_text().await? else {
                bail!("closed during the Socket.IO connect");
            };
            match protocol::parse(&text) {
                Packet::Ping => conn.send(protocol::PONG.to_owned()).await?,
                Packet::Connect(body) => {
                    let sid = protocol::string_field(body, "sid")
                        .ok_or_else(|| anyhow!("connect packet without sid: {text}"))?
                        .to_owned();
                    return Ok((sid, conn));
                }
                Packet::ConnectError(body) => {
                    let message = protocol::string_field(body, "message").unwrap_or(body);
                    bail!("connect refused: {message}");
                }
                _ => {}
            }
        }
    }

    async fn tcp(&self, source: IpAddr) -> anyhow::Result<TcpStream> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        // A port still in TIME_WAIT from an earlier run may be taken again.
        socket.set_reuseaddr(true)?;
        if source.is_ipv4() {
            bind_address_no_port(&socket);
        }
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("bind {source}"))?;
        let stream = socket
            .connect(self.server)
            .await
            .with_context(|| format!("connect {} from {source}", self.server))?;
        // Browsers have Nagle off for WebSockets: small frames go out at once.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Leaves the choice of the source port to `connect`, which can then reuse a port towards
/// another destination: without it, `bind` reserves a port per socket for every destination.
fn bind_address_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// An open, authenticated Socket.IO connection.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
}

impl Conn {
    pub async fn send(&mut self, text: String) -> anyhow::Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .context("websocket send")
    }

    /// The next text frame; `None` when the connection closed.
    pub async fn next_text(
        &mut self,
    ) -> anyhow::Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>> {
        while let Some(message) = self.ws.next().await {
            match message.context("websocket read")? {
                Message::Text(text) => return Ok(Some(text)),
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Emits `name` with `data` and waits up to `wait` for its acknowledgement, answering
    /// pings and skipping events meanwhile (setup calls such as joins). The ack's first
    /// argument as JSON.
    pub async fn request(
        &mut self,
        id: u64,
        name: &str,
        data: &str,
        wait: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        self.send(protocol::event(Some(id), name, data)).await?;
        let answer = async {
            loop {
                let Some(text) = self.next_text().await? else {
                    bail!("connection closed while waiting for the ack of {name}");
                };
                match protocol::parse(&text) {
                    Packet::Ping => self.send(protocol::PONG.to_owned()).await?,
                    Packet::Ack { id: got, body } if got == id => {
                        return Ok(protocol::ack_value(body));
                    }
                    Packet::Disconnect | Packet::Close => {
                        bail!("disconnected by the server while waiting for the ack of {name}")
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(wait, answer)
            .await
            .map_err(|_| anyhow!("no ack for {name} within {wait:?}"))?
    }

    /// Closes the connection politely (a WebSocket close frame), ignoring failures.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}
