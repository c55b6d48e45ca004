//! Chat events over Socket.IO. Each handler parses its payload, calls the chat service (the
//! same one REST uses) and answers through the acknowledgement; a bad payload is answered
//! with an error ack and leaves the socket connected.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    extract::{AckSender, SocketRef, State, TryData},
};
use tracing::Instrument;

use super::{
    GatewayState, SocketUser, ack, payload, presence::OnlineUser, respond, span, user_of, user_room,
};
use crate::{
    domain::{CourseId, MessageId, RoomId, UserId},
    error::AppError,
    service::chat::{ChatBroadcast, EditInput, SendInput},
};

/// The Socket.IO room of a chat room.
pub fn room_key(room: RoomId) -> String {
    format!("room:{room}")
}

/// Broadcasts chat changes to the room's sockets.
pub struct SocketBroadcast(pub SocketIo);

#[async_trait::async_trait]
impl ChatBroadcast for SocketBroadcast {
    async fn emit_to_room(&self, room: RoomId, event: &'static str, payload: Value) {
        if let Err(error) = self.0.to(room_key(room)).emit(event, &payload).await {
            tracing::warn!(%error, event, "chat broadcast failed");
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomRef {
    room_id: RoomId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendPayload {
    room_id: RoomId,
    content: String,
    client_id: String,
    reply_to: Option<MessageId>,
    attachments: Option<Vec<crate::domain::FileId>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingPayload {
    room_id: RoomId,
    is_typing: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditPayload {
    message_id: MessageId,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRef {
    message_id: MessageId,
}

/// The acknowledgements that carry a room's list, written straight from the list (no
/// intermediate JSON tree: in a big room it is the one large thing a join builds).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAck<'a> {
    ok: bool,
    room_id: RoomId,
    online_users: &'a [OnlineUser],
}

#[derive(Serialize)]
struct UsersAck<'a> {
    ok: bool,
    users: &'a [OnlineUser],
}

/// Checks that the socket's user may read the room named in the payload.
async fn readable_room(
    state: &GatewayState,
    user: &SocketUser,
    data: Result<Value, socketioxide::ParserError>,
) -> Result<(RoomId, CourseId), AppError> {
    let RoomRef { room_id } = payload(data)?;
    let (_, course) = state.chat.room_access(&user.actor, room_id).await?;
    Ok((room_id, course.id))
}

/// Joins the room and acknowledges with its whole list; from then on the socket hears the
/// room's `chat:presence_diff`s, none of them computed before this list.
pub(super) async fn join_room(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let user = user_of(&socket);
    let (span, _) = span(&socket, &user, "chat:join_room");
    async {
        let (room, course) = match readable_room(&state, &user, data).await {
            Ok(found) => found,
            Err(error) => return ack(ack_sender, Err(error)),
        };
        let deliver = |online: Vec<OnlineUser>| {
            socket.join(room_key(room));
            let _ = ack_sender.send(&JoinAck {
                ok: true,
                room_id: room,
                online_users: &online,
            });
        };
        state
            .presence
            .join(room, course, user.actor.id, &user.name, socket.id, deliver)
            .await;
    }
    .instrument(span)
    .await;
}

pub(super) async fn leave_room(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let user = user_of(&socket);
    let room = match payload::<RoomRef>(data) {
        Ok(r) => r.room_id,
        Err(error) => return ack(ack_sender, Err(error)),
    };
    socket.leave(room_key(room));
    state.presence.leave(room, user.actor.id, socket.id);
    ack(ack_sender, Ok(json!({})));
}

pub(super) async fn send_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:send_message",
        ack_sender,
        |user, request_id| async move {
            let p: SendPayload = payload(data)?;
            let input = SendInput {
                content: p.content,
                client_id: Some(p.client_id),
                reply_to: p.reply_to,
                attachments: p.attachments,
            };
            let sent = state
                .chat
                .send(&user.actor, &request_id, p.room_id, input)
                .await?;
            Ok(json!({ "message": sent.message }))
        },
    )
    .await;
}

pub(super) async fn typing(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let socket = &socket;
    respond(socket, "chat:typing", ack_sender, |user, _| async move {
        let p: TypingPayload = payload(data)?;
        if !state.presence.is_in(socket.id, p.room_id) {
            return Err(AppError::Forbidden(
                "join the room before sending typing notices".into(),
            ));
        }
        let notice = json!({ "roomId": p.room_id, "userId": user.actor.id, "name": user.name, "isTyping": p.is_typing });
        // Never echoed: not to this socket, nor to the sender's other tabs.
        if let Err(error) = socket
            .to(room_key(p.room_id))
            .except(user_room(user.actor.id))
            .emit("chat:typing", &notice)
            .await
        {
            tracing::warn!(%error, "typing broadcast failed");
        }
        Ok(json!({}))
    })
    .await;
}

pub(super) async fn edit_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:edit_message",
        ack_sender,
        |user, request_id| async move {
            let p: EditPayload = payload(data)?;
            let input = EditInput { content: p.content };
            let message = state
                .chat
                .edit(&user.actor, &request_id, p.message_id, input)
                .await?;
            Ok(json!({ "message": message }))
        },
    )
    .await;
}

pub(super) async fn delete_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:delete_message",
        ack_sender,
        |user, _| async move {
            let p: MessageRef = payload(data)?;
            state.chat.delete(&user.actor, p.message_id).await?;
            Ok(json!({}))
        },
    )
    .await;
}

pub(super) async fn online_users(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let user = user_of(&socket);
    let (span, _) = span(&socket, &user, "chat:online_users");
    async {
        let (room, _) = match readable_room(&state, &user, data).await {
            Ok(found) => found,
            Err(error) => return ack(ack_sender, Err(error)),
        };
        let deliver = |users: Vec<OnlineUser>| {
            let _ = ack_sender.send(&UsersAck {
                ok: true,
                users: &users,
            });
        };
        state
            .presence
            .snapshot(room, user.actor.id, socket.id, deliver)
            .await;
    }
    .instrument(span)
    .await;
}

/// Takes every socket of `user` (or of everyone) out of the course's rooms, after their
/// membership ended; the rooms hear of it in their next diff.
pub fn evict(io: &SocketIo, state: &GatewayState, course: CourseId, user: Option<UserId>) {
    for (room, sid) in state.presence.evict(course, user) {
        if let Some(socket) = io.get_socket(sid) {
            socket.leave(room_key(room));
        }
    }
}

/// Sends a room its presence diff.
pub async fn announce(io: &SocketIo, diff: super::presence::PresenceDiff) {
    if let Err(error) = io
        .to(room_key(diff.room_id))
        .emit("chat:presence_diff", &diff)
        .await
    {
        tracing::warn!(%error, "presence diff broadcast failed");
    }
}

/// Cleans a disconnected socket out of every room it had joined.
pub fn disconnect(state: &GatewayState, socket: &SocketRef) {
    if let Some(user) = socket.extensions.get::<SocketUser>() {
        state.presence.disconnect(user.actor.id, socket.id);
    }
}
