//! The Socket.IO side of the server, on the same port as HTTP.
//!
//! A socket authenticates once, in the handshake (`auth: {token}`); a missing, malformed or
//! expired token fails the connection with `connect_error` `{message: "UNAUTHORIZED"}`. Each
//! socket joins `user:<id>` and `family:<token family>` rooms so the server can reach every tab
//! of a user, and disconnect the sockets of a token family when it is revoked.

pub mod chat;
pub mod limits;
pub mod origin;
pub mod presence;
pub mod reauth;
pub mod signaling;

use std::{fmt, sync::Arc};

use axum::{
    extract::{OriginalUri, Request},
    http::{HeaderMap, HeaderValue, Uri, header},
};
use lyceum_plugin_runtime::SignalKind;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use socketioxide::{
    ParserError, SocketIo,
    extract::{AckSender, Event, SocketRef, State, TryData},
    handler::ConnectHandler,
};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    domain::{TokenFamilyId, UserId},
    error::{AppError, AppResult},
    service::{
        Actor,
        auth::AuthService,
        chat::ChatService,
        courses::{CourseService, MembershipEvent},
        sessions::{SessionEvent, SessionService},
        signaling::SignalingService,
    },
    store::Store,
    telemetry::RequestId,
};

/// What the gateway's handlers can reach.
#[derive(Clone)]
pub struct GatewayState {
    pub auth: Arc<AuthService>,
    pub store: Arc<dyn Store>,
    pub chat: Arc<ChatService>,
    pub courses: Arc<CourseService>,
    pub presence: Arc<presence::Presence>,
    pub sessions: Arc<SessionService>,
    pub signaling: Arc<SignalingService>,
    pub expiry: Arc<reauth::TokenExpiry>,
    pub sockets: Arc<limits::OpenSockets>,
    /// Whether a socket's address is the first `X-Forwarded-For` hop of its handshake.
    pub trust_forwarded_for: bool,
}

/// Reads an event's payload; anything that is not the expected object is VALIDATION_FAILED,
/// naming the field.
pub fn payload<T: DeserializeOwned>(data: Result<Value, ParserError>) -> AppResult<T> {
    let value =
        data.map_err(|_| AppError::validation("payload", "the payload is not valid JSON"))?;
    if !value.is_object() {
        return Err(AppError::validation(
            "payload",
            "the payload must be an object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (missing, path.as_str()) {
            (Some(field), ".") => field,
            (Some(field), parent) => format!("{parent}.{field}"),
            (None, ".") => "payload".to_owned(),
            (None, path) => path.to_owned(),
        };
        AppError::validation(field, message)
    })
}

/// Answers an event: `{ok: true, ...fields}` or `{ok: false, error}`.
pub fn ack(sender: AckSender, result: AppResult<Value>) {
    let body = match result {
        Ok(Value::Object(mut fields)) => {
            let mut answer = serde_json::Map::with_capacity(fields.len() + 1);
            answer.insert("ok".into(), Value::Bool(true));
            answer.append(&mut fields);
            Value::Object(answer)
        }
        Ok(_) => serde_json::json!({ "ok": true }),
        Err(error) => error.to_ack(),
    };
    // A client that asked for no acknowledgement gets none; that is not an error.
    let _ = sender.send(&body);
}

/// Who is on the other end of a socket: fixed at connect, except that `auth:refresh` moves
/// its token on (see [`reauth`]).
#[derive(Debug, Clone)]
pub struct SocketUser {
    pub actor: Actor,
    pub name: String,
    /// When the access token the socket holds expires, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// Where the handshake came from, as the per-address socket cap counts it.
    pub address: std::net::IpAddr,
}

/// The user a socket authenticated as.
pub fn user_of(socket: &SocketRef) -> SocketUser {
    socket
        .extensions
        .get::<SocketUser>()
        .expect("authenticated in the handshake")
}

/// The tracing span of one socket event, and the event's request id, recorded on the span.
/// An event has no HTTP request, hence no `x-request-id`: each gets an id of its own, which
/// is what the policy plugins it consults are told, as HTTP requests tell theirs.
pub fn span(
    socket: &SocketRef,
    user: &SocketUser,
    event: &'static str,
) -> (tracing::Span, RequestId) {
    let request_id = RequestId::generate();
    let span = tracing::info_span!("socket", event, request_id = %request_id, socket = %socket.id, user = %user.actor.id);
    (span, request_id)
}

/// Handles one event the common way: `work` runs in the event's span with the socket's user
/// and the event's request id, and its result is the acknowledgement.
pub async fn respond<F, Fut>(
    socket: &SocketRef,
    event: &'static str,
    ack_sender: AckSender,
    work: F,
) where
    F: FnOnce(SocketUser, RequestId) -> Fut,
    Fut: std::future::Future<Output = AppResult<Value>>,
{
    let user = user_of(socket);
    let (span, request_id) = span(socket, &user, event);
    let result = tracing::Instrument::instrument(work(user, request_id), span).await;
    ack(ack_sender, result);
}

#[derive(Deserialize)]
struct AuthPayload {
    token: String,
}

/// The handshake refusal; its text is the `message` of `connect_error`.
#[derive(Debug)]
pub enum ConnectRefused {
    Unauthorized,
    Unavailable,
    /// The user, or the address, holds as many sockets as it may.
    TooManySockets,
}

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectRefused::Unauthorized => "UNAUTHORIZED",
            ConnectRefused::Unavailable => "UNAVAILABLE",
            ConnectRefused::TooManySockets => "RATE_LIMITED",
        })
    }
}

impl std::error::Error for ConnectRefused {}

/// Where Engine.IO is served (socketioxide's default path).
pub const SOCKET_IO_PATH: &str = "/socket.io";

/// Bytes the WebSocket reader of each connection allocates up front. Client frames are small
/// (pongs, joins, chat messages); a larger frame grows the buffer to its size when it comes.
/// Every idle socket holds this, so it is kept near a typical frame rather than a large one.
pub const WS_READ_BUFFER: usize = 1024;

/// Engine.IO keeps the head of the request that opened a connection for the socket's whole
/// life (`SocketRef::req_parts`). hyper parses that head without copying: the URI and header
/// values are views into the connection's read buffer, and so is the router's copy of the URI
/// (`OriginalUri`); keeping any of them keeps the whole buffer (8–16 KiB) for every idle
/// socket. Copies keep only their own bytes. Other paths are left as they are: their heads die
/// with their requests.
pub async fn detach_request_head(mut request: Request) -> Request {
    if !request.uri().path().starts_with(SOCKET_IO_PATH) {
        return request;
    }
    let shared = std::mem::take(request.headers_mut());
    let mut owned = HeaderMap::with_capacity(shared.len());
    // Cookies can be kilobytes, and nothing here reads them: sockets authenticate with a
    // token in the handshake.
    for (name, value) in shared.iter().filter(|(name, _)| *name != header::COOKIE) {
        let copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            Err(_) => value.clone(),
        };
        owned.append(name.clone(), copy);
    }
    *request.headers_mut() = owned;
    if let Ok(uri) = request.uri().to_string().parse::<Uri>() {
        if let Some(original) = request.extensions_mut().get_mut::<OriginalUri>() {
            original.0 = uri.clone();
        }
        *request.uri_mut() = uri;
    }
    request
}

/// Raises this process's soft limit of open files to its hard limit: every socket is a file,
/// and the usual soft default (1024) would refuse connections long before memory runs out.
/// Returns the limit in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

pub fn user_room(user: UserId) -> String {
    format!("user:{user}")
}

pub fn family_room(family: TokenFamilyId) -> String {
    format!("family:{family}")
}

/// Registers the default namespace and starts the tasks that react to revocations and to
/// ended memberships.
/// The returned tasks hold the gateway alive; `run` aborts them at shutdown.
pub fn attach(io: &SocketIo, state: &GatewayState) -> Vec<tokio::task::JoinHandle<()>> {
    io.ns("/", on_connect.with(authenticate));
    state
        .chat
        .set_broadcast(Arc::new(chat::SocketBroadcast(io.clone())));
    let mut memberships = state.courses.membership_events();
    let (watch_io, watch_state) = (io.clone(), state.clone());
    let membership_task = tokio::spawn(async move {
        loop {
            match memberships.recv().await {
                Ok(MembershipEvent::Removed { course, user }) => {
                    chat::evict(&watch_io, &watch_state, course, Some(user));
                    signaling::evict(&watch_io, &watch_state, course, Some(user)).await;
                }
                Ok(MembershipEvent::CourseDeleted { course }) => {
                    chat::evict(&watch_io, &watch_state, course, None);
                    signaling::evict(&watch_io, &watch_state, course, None).await;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "membership notices dropped")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    let mut revocations = state.auth.revocations();
    let revocation_io = io.clone();
    let revocation_task = tokio::spawn(async move {
        loop {
            match revocations.recv().await {
                Ok(family) => {
                    if let Err(error) = revocation_io.within(family_room(family)).disconnect().await
                    {
                        tracing::warn!(%error, "disconnecting a revoked token family");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "revocation notices dropped");
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    let mut account_changes = state.auth.account_changes().subscribe();
    let account_io = io.clone();
    let account_task = tokio::spawn(async move {
        loop {
            match account_changes.recv().await {
                Ok(user) => {
                    if let Err(error) = account_io.within(user_room(user)).disconnect().await {
                        tracing::warn!(%error, "disconnecting the sockets of a changed account");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "account change notices dropped");
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    let mut session_events = state.sessions.events();
    let (session_io, session_state) = (io.clone(), state.clone());
    let session_task = tokio::spawn(async move {
        loop {
            match session_events.recv().await {
                Ok(SessionEvent::Ended { session }) => {
                    signaling::session_ended(&session_io, &session_state, session).await
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "session notices dropped")
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    let presence_io = io.clone();
    let presence_task = tokio::spawn(state.presence.clone().run(move |diff| {
        let io = presence_io.clone();
        async move { chat::announce(&io, diff).await }
    }));
    let expiry_task = tokio::spawn(state.expiry.clone().run(io.clone()));
    vec![
        expiry_task,
        membership_task,
        revocation_task,
        account_task,
        session_task,
        presence_task,
    ]
}

async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<AuthPayload>,
    State(state): State<GatewayState>,
) -> Result<(), ConnectRefused> {
    let token = auth.map_err(|_| ConnectRefused::Unauthorized)?.token;
    let (actor, expires_at) = state
        .auth
        .authenticate_until(&token)
        .map_err(|_| ConnectRefused::Unauthorized)?;
    // The same memo of names chat messages are signed with: a reconnecting tab (or a second
    // one) costs no database round trip.
    let name = match state.chat.sender_name(actor.id).await {
        Ok(name) => name,
        Err(AppError::Unauthorized(_)) => return Err(ConnectRefused::Unauthorized),
        Err(error) => {
            tracing::warn!(%error, "socket handshake could not load the user");
            return Err(ConnectRefused::Unavailable);
        }
    };
    let parts = socket.req_parts();
    let address = crate::http::extract::client_ip(
        &parts.headers,
        &parts.extensions,
        state.trust_forwarded_for,
    );
    if let Err(too_many) = state.sockets.open(actor.id, address) {
        tracing::info!(user = %actor.id, %address, ?too_many, "socket refused: too many open");
        return Err(ConnectRefused::TooManySockets);
    }
    // Rooms and handlers are set up here, before the CONNECT packet goes out: a client may
    // emit from its `connect` callback, and an event arriving before its handler exists
    // would be dropped without an acknowledgement.
    socket.join([user_room(actor.id), family_room(actor.family)]);
    socket.extensions.insert(SocketUser {
        actor,
        name: name.to_string(),
        expires_at,
        address,
    });
    // An extension of its own: every event spends from it, and cloning an `Arc` is all that
    // costs, where reading the `SocketUser` would copy a name.
    socket.extensions.insert(Arc::new(limits::EventBudget::new(
        state.sockets.limits(),
        std::time::Instant::now(),
    )));
    state.expiry.track(socket.id, expires_at);
    socket.on_fallback(dispatch);
    metrics::gauge!("lyceum_socket_connections").increment(1.0);
    socket.on_disconnect(
        async |socket: SocketRef, State(state): State<GatewayState>| {
            metrics::gauge!("lyceum_socket_connections").decrement(1.0);
            if let Some(user) = socket.extensions.get::<SocketUser>() {
                state.expiry.forget(socket.id, user.expires_at);
                state.sockets.close(user.actor.id, user.address);
            }
            chat::disconnect(&state, &socket);
            signaling::disconnect(&state, &socket).await;
            tracing::debug!(socket = %socket.id, "socket disconnected");
        },
    );
    Ok(())
}

/// Every event of a socket goes through this one handler. socketioxide keeps event handlers
/// per socket, in a map each socket fills when it connects (about 700 bytes for a dozen
/// events, kept for the socket's life); a single fallback that is a plain function costs a
/// socket nothing and finds the handler by name. An unknown event gets no answer, as it would
/// with no handler at all.
async fn dispatch(
    socket: SocketRef,
    io: SocketIo,
    Event(event): Event,
    data: TryData<Value>,
    ack: AckSender,
    state: State<GatewayState>,
) {
    let Some(budget) = socket.extensions.get::<Arc<limits::EventBudget>>() else {
        return;
    };
    match budget.spend(state.sockets.limits(), std::time::Instant::now()) {
        limits::Spend::Allowed => {}
        limits::Spend::Refused { retry_after } => {
            return self::ack(ack, Err(AppError::RateLimited { retry_after }));
        }
        limits::Spend::Flood => {
            let user = socket.extensions.get::<SocketUser>().map(|u| u.actor.id);
            tracing::warn!(socket = %socket.id, ?user, "event flood; disconnecting the socket");
            let _ = socket.disconnect();
            return;
        }
    }
    let signal = match event.as_str() {
        "webrtc:offer" => Some(SignalKind::Offer),
        "webrtc:answer" => Some(SignalKind::Answer),
        "webrtc:ice_candidate" => Some(SignalKind::IceCandidate),
        _ => None,
    };
    if let Some(kind) = signal {
        return signaling::on_signal(kind, socket, io, data.0, ack, state.0).await;
    }
    match event.as_str() {
        "chat:join_room" => chat::join_room(socket, data, ack, state).await,
        "chat:leave_room" => chat::leave_room(socket, data, ack, state).await,
        "chat:send_message" => chat::send_message(socket, data, ack, state).await,
        "chat:typing" => chat::typing(socket, data, ack, state).await,
        "chat:edit_message" => chat::edit_message(socket, data, ack, state).await,
        "chat:delete_message" => chat::delete_message(socket, data, ack, state).await,
        "chat:online_users" => chat::online_users(socket, data, ack, state).await,
        "webrtc:join_session" => signaling::join_session(socket, data, ack, state).await,
        "webrtc:leave_session" => signaling::leave_session(socket, data, ack, state).await,
        "auth:refresh" => reauth::refresh(socket, data, ack, state).await,
        _ => tracing::debug!(event, "an event without a handler"),
    }
}

async fn on_connect(socket: SocketRef) {
    if let Some(user) = socket.extensions.get::<SocketUser>() {
        tracing::debug!(socket = %socket.id, user = %user.actor.id, "socket connected");
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};

    use super::*;

    /// A request for `path` whose URI and header values are views into one buffer, as hyper
    /// parses them, and that buffer.
    fn parsed_like_hyper(path: &str) -> (Request, Bytes) {
        let text = format!(
            "GET {path} HTTP/1.1\r\norigin: http://example.com\r\ncookie: a=b\r\nauthorization: x\r\n\r\n"
        );
        let buffer = Bytes::from(text.clone().into_bytes());
        let slice = |part: &str| {
            let start = text.find(part).unwrap();
            buffer.slice(start..start + part.len())
        };
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = Uri::from_maybe_shared(slice(path)).unwrap();
        let original = OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original);
        let headers = [
            ("origin", "http://example.com"),
            ("cookie", "a=b"),
            ("authorization", "x"),
        ];
        for (name, value) in headers {
            let mut value = HeaderValue::from_maybe_shared(slice(value)).unwrap();
            value.set_sensitive(name != "origin");
            request.headers_mut().append(name, value);
        }
        (request, buffer)
    }

    #[tokio::test]
    async fn a_kept_socket_io_request_head_no_longer_holds_the_read_buffer() {
        let (request, buffer) = parsed_like_hyper("/socket.io/?EIO=4&transport=websocket");
        assert!(!buffer.is_unique(), "the parsed head shares the buffer");
        let request = detach_request_head(request).await;
        assert!(buffer.is_unique(), "the detached head still shares it");
        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(
            request.extensions().get::<OriginalUri>().unwrap().0,
            *request.uri()
        );
        assert_eq!(request.headers()["origin"], "http://example.com");
        assert_eq!(
            request.headers().get("cookie"),
            None,
            "cookies are not kept"
        );
        assert_eq!(request.headers()["authorization"], "x");
        assert!(request.headers()["authorization"].is_sensitive());

        let (other, buffer) = parsed_like_hyper("/api/v1/courses");
        let other = detach_request_head(other).await;
        assert!(!buffer.is_unique(), "other requests are left alone");
        drop(other);
    }

    #[test]
    fn the_open_files_limit_is_at_its_hard_limit_after_raising() {
        let files = raise_open_files_limit().expect("getrlimit works");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct passed by pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!((files, limit.rlim_cur), (limit.rlim_max, limit.rlim_max));
    }
}
