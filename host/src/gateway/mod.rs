//! The Socket.IO side of the server, on the same port as HTTP.
//!
//! A socket authenticates once, in the handshake (`auth: {token}`); a missing, malformed or
//! expired token fails the connection with `connect_error` `{message: "UNAUTHORIZED"}`. Each
//! socket joins `user:<id>` and `family:<token family>` rooms so the server can reach every tab
//! of a user, and disconnect the sockets of a token family when it is revoked.

use std::{fmt, sync::Arc};

use serde::Deserialize;
use socketioxide::{
    SocketIo,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    domain::{TokenFamilyId, UserId},
    service::{Actor, auth::AuthService},
    store::Store,
};

/// What the gateway's handlers can reach.
#[derive(Clone)]
pub struct GatewayState {
    pub auth: Arc<AuthService>,
    pub store: Arc<dyn Store>,
}

/// Who is on the other end of a socket, fixed at connect.
#[derive(Debug, Clone)]
pub struct SocketUser {
    pub actor: Actor,
    pub name: String,
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

/// Registers the default namespace and starts the task that disconnects revoked families.
pub fn attach(io: &SocketIo, state: &GatewayState) {
    io.ns("/", on_connect.with(authenticate));
    let mut revocations = state.auth.revocations();
    let io = io.clone();
    tokio::spawn(async move {
        loop {
            match revocations.recv().await {
                Ok(family) => {
                    if let Err(error) = io.within(family_room(family)).disconnect().await {
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
    socket.extensions.insert(SocketUser {
        actor,
        name: user.name,
    });
    Ok(())
}

async fn on_connect(socket: SocketRef) {
    let Some(user) = socket.extensions.get::<SocketUser>() else {
        // Unreachable: the middleware stored it before the connection was accepted.
        let _ = socket.disconnect();
        return;
    };
    socket.join([user_room(user.actor.id), family_room(user.actor.family)]);
    metrics::gauge!("lyceum_socket_connections").increment(1.0);
    tracing::debug!(socket = %socket.id, user = %user.actor.id, "socket connected");
    socket.on_disconnect(async |socket: SocketRef| {
        metrics::gauge!("lyceum_socket_connections").decrement(1.0);
        tracing::debug!(socket = %socket.id, "socket disconnected");
    });
}
