//! The Socket.IO side of the server, on the same port as HTTP.
//!
//! A socket authenticates once, in the handshake (`auth: {token}`); a missing, malformed or
//! expired token fails the connection with `connect_error` `{message: "UNAUTHORIZED"}`. Each
//! socket joins `user:<id>` and `family:<token family>` rooms so the server can reach every tab
//! of a user, and disconnect the sockets of a token family when it is revoked.

pub mod chat;
pub mod presence;
pub mod signaling;

use std::{fmt, sync::Arc};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use socketioxide::{
    ParserError, SocketIo,
    extract::{AckSender, SocketRef, State, TryData},
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

/// Who is on the other end of a socket, fixed at connect.
#[derive(Debug, Clone)]
pub struct SocketUser {
    pub actor: Actor,
    pub name: String,
}

/// The user a socket authenticated as.
pub fn user_of(socket: &SocketRef) -> SocketUser {
    socket
        .extensions
        .get::<SocketUser>()
        .expect("authenticated in the handshake")
}

/// The tracing span of one socket event.
pub fn span(socket: &SocketRef, user: &SocketUser, event: &'static str) -> tracing::Span {
    tracing::info_span!("socket", event, socket = %socket.id, user = %user.actor.id)
}

/// Handles one event the common way: `work` runs in the event's span with the socket's user,
/// and its result is the acknowledgement.
pub async fn respond<F, Fut>(
    socket: &SocketRef,
    event: &'static str,
    ack_sender: AckSender,
    work: F,
) where
    F: FnOnce(SocketUser) -> Fut,
    Fut: std::future::Future<Output = AppResult<Value>>,
{
    let user = user_of(socket);
    let span = span(socket, &user, event);
    let result = tracing::Instrument::instrument(work(user), span).await;
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
}

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectRefused::Unauthorized => "UNAUTHORIZED",
            ConnectRefused::Unavailable => "UNAVAILABLE",
        })
    }
}

impl std::error::Error for ConnectRefused {}

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
    vec![
        membership_task,
        revocation_task,
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
    let actor = state
        .auth
        .authenticate(&token)
        .map_err(|_| ConnectRefused::Unauthorized)?;
    let user = match state.store.user(actor.id).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(ConnectRefused::Unauthorized),
        Err(error) => {
            tracing::warn!(%error, "socket handshake could not load the user");
            return Err(ConnectRefused::Unavailable);
        }
    };
    // Rooms and handlers are set up here, before the CONNECT packet goes out: a client may
    // emit from its `connect` callback, and an event arriving before its handler exists
    // would be dropped without an acknowledgement.
    socket.join([user_room(actor.id), family_room(actor.family)]);
    socket.extensions.insert(SocketUser {
        actor,
        name: user.name,
    });
    chat::register(&socket);
    signaling::register(&socket);
    metrics::gauge!("lyceum_socket_connections").increment(1.0);
    socket.on_disconnect(
        async |socket: SocketRef, State(state): State<GatewayState>| {
            metrics::gauge!("lyceum_socket_connections").decrement(1.0);
            chat::disconnect(&state, &socket);
            signaling::disconnect(&state, &socket).await;
            tracing::debug!(socket = %socket.id, "socket disconnected");
        },
    );
    Ok(())
}

async fn on_connect(socket: SocketRef) {
    if let Some(user) = socket.extensions.get::<SocketUser>() {
        tracing::debug!(socket = %socket.id, user = %user.actor.id, "socket connected");
    }
}
