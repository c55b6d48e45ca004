//! WebRTC signaling over Socket.IO: joining a live session's call, relaying offers, answers
//! and ICE candidates to the one socket named in `to`, leaving. Relays name their sender
//! (`from`, `userId`) from the server's own knowledge, never from the payload.

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    ParserError, SendError, SocketError, SocketIo,
    extract::{AckSender, SocketRef, State, TryData},
    socket::Sid,
};

use super::{GatewayState, SocketUser, payload, respond};
use crate::{
    domain::SessionId,
    error::{AppError, AppResult},
    service::signaling::{Peer, Signal},
    telemetry::RequestId,
};
use lyceum_plugin_runtime::SignalKind;

/// The Socket.IO room of a session's call.
pub fn call_room(session: SessionId) -> String {
    format!("call:{session}")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionRef {
    session_id: SessionId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SdpPayload {
    session_id: SessionId,
    to: String,
    sdp: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidatePayload {
    session_id: SessionId,
    to: String,
    candidate: Value,
}

pub(super) async fn join_session(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let socket = &socket;
    respond(
        socket,
        "webrtc:join_session",
        ack_sender,
        |user, request_id| async move {
            let SessionRef { session_id } = payload(data)?;
            let socket_id = socket.id.to_string();
            let joined = state
                .signaling
                .join(&user.actor, &request_id, &user.name, &socket_id, session_id)
                .await?;
            if joined.new {
                socket.join(call_room(session_id));
                let notice = json!({
                    "sessionId": session_id,
                    "socketId": socket.id.to_string(),
                    "userId": user.actor.id,
                    "name": user.name,
                });
                if let Err(error) = socket
                    .to(call_room(session_id))
                    .emit("webrtc:user_joined", &notice)
                    .await
                {
                    tracing::warn!(%error, "user_joined broadcast failed");
                }
            }
            Ok(json!({ "peers": joined.peers, "iceServers": joined.ice.ice_servers }))
        },
    )
    .await;
}

pub(super) async fn leave_session(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let socket = &socket;
    respond(
        socket,
        "webrtc:leave_session",
        ack_sender,
        |_, _| async move {
            let SessionRef { session_id } = payload(data)?;
            if let Some(peer) = state
                .signaling
                .leave(&socket.id.to_string(), session_id)
                .await?
            {
                socket.leave(call_room(session_id));
                announce_left(socket, session_id, &peer).await;
            }
            Ok(Value::Null)
        },
    )
    .await;
}

/// Offers, answers and candidates: the same steps, differing in the payload's field.
pub(super) async fn on_signal(
    kind: SignalKind,
    socket: SocketRef,
    io: SocketIo,
    data: Result<Value, ParserError>,
    ack_sender: AckSender,
    state: GatewayState,
) {
    let event = match kind {
        SignalKind::Offer => "webrtc:offer",
        SignalKind::Answer => "webrtc:answer",
        SignalKind::IceCandidate => "webrtc:ice_candidate",
    };
    let socket = &socket;
    respond(socket, event, ack_sender, |user, request_id| async move {
        let (session, to, body) = match kind {
            SignalKind::IceCandidate => {
                let p: CandidatePayload = payload(data)?;
                (p.session_id, p.to, p.candidate)
            }
            SignalKind::Offer | SignalKind::Answer => {
                let p: SdpPayload = payload(data)?;
                (p.session_id, p.to, p.sdp)
            }
        };
        let signal = Signal {
            session,
            kind,
            to,
            payload: body,
        };
        relay(socket, &io, &state, &user, &request_id, signal).await
    })
    .await;
}

/// Clears a signal with the service and hands it to the receiving socket alone.
async fn relay(
    socket: &SocketRef,
    io: &SocketIo,
    state: &GatewayState,
    user: &SocketUser,
    request_id: &RequestId,
    signal: Signal,
) -> AppResult<Value> {
    let (event, field) = match signal.kind {
        SignalKind::Offer => ("webrtc:offer_received", "sdp"),
        SignalKind::Answer => ("webrtc:answer_received", "sdp"),
        SignalKind::IceCandidate => ("webrtc:ice_candidate_received", "candidate"),
    };
    if signal.payload.is_null() && signal.kind != SignalKind::IceCandidate {
        return Err(AppError::validation(field, "required"));
    }
    let cleared = state
        .signaling
        .signal(&user.actor, request_id, &socket.id.to_string(), &signal)
        .await?;
    let receiver = signal
        .to
        .parse::<Sid>()
        .ok()
        .and_then(|sid| io.get_socket(sid))
        .ok_or_else(|| AppError::Forbidden("the receiver is not in this session".into()))?;
    let mut message = json!({
        "sessionId": signal.session,
        "from": socket.id.to_string(),
        "userId": user.actor.id,
    });
    message[field] = cleared.payload;
    receiver
        .emit(event, &message)
        .map_err(|error| match error {
            // The receiver is not reading fast enough; the sender may try again shortly.
            SendError::Socket(SocketError::InternalChannelFull) => AppError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            SendError::Socket(SocketError::Closed) => {
                AppError::Forbidden("the receiver is not in this session".into())
            }
            other => AppError::internal(anyhow::anyhow!("relaying {event}: {other}")),
        })?;
    Ok(Value::Null)
}

async fn announce_left(socket: &SocketRef, session: SessionId, peer: &Peer) {
    let notice = json!({
        "sessionId": session,
        "socketId": peer.socket_id,
        "userId": peer.user_id,
    });
    if let Err(error) = socket
        .to(call_room(session))
        .emit("webrtc:user_left", &notice)
        .await
    {
        tracing::warn!(%error, "user_left broadcast failed");
    }
}

/// A disconnected socket leaves every call it was in.
pub async fn disconnect(state: &GatewayState, socket: &SocketRef) {
    for (session, peer) in state.signaling.leave_all(&socket.id.to_string()).await {
        announce_left(socket, session, &peer).await;
    }
}

/// Tells everyone in an ended session's call, and takes their sockets out of its room.
pub async fn session_ended(io: &SocketIo, state: &GatewayState, session: SessionId) {
    let peers = state.signaling.ended(session);
    let room = call_room(session);
    if let Err(error) = io
        .to(room.clone())
        .emit("webrtc:session_ended", &json!({ "sessionId": session }))
        .await
    {
        tracing::warn!(%error, "session_ended broadcast failed");
    }
    io.to(room.clone()).leave(room).await;
    tracing::info!(session = %session, peers = peers.len(), "call ended");
}

/// Takes peers who lost their membership out of the course's calls: the others hear
/// `webrtc:user_left`, and the evicted socket `webrtc:session_ended`, since the call is over
/// for it.
pub async fn evict(
    io: &SocketIo,
    state: &GatewayState,
    course: crate::domain::CourseId,
    user: Option<crate::domain::UserId>,
) {
    for (session, peer) in state.signaling.evict(course, user).await {
        let room = call_room(session);
        if let Some(socket) = peer
            .socket_id
            .parse::<Sid>()
            .ok()
            .and_then(|sid| io.get_socket(sid))
        {
            socket.leave(room.clone());
            if let Err(error) =
                socket.emit("webrtc:session_ended", &json!({ "sessionId": session }))
            {
                tracing::debug!(%error, "could not tell an evicted peer");
            }
        }
        let notice = json!({
            "sessionId": session,
            "socketId": peer.socket_id,
            "userId": peer.user_id,
        });
        if let Err(error) = io.to(room).emit("webrtc:user_left", &notice).await {
            tracing::warn!(%error, "user_left broadcast failed");
        }
    }
}
