//! Chat events over Socket.IO. Each handler parses its payload, calls the chat service (the
//! same one REST uses) and answers through the acknowledgement; a bad payload is answered
//! with an error ack and leaves the socket connected.

use serde::Deserialize;
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
    domain::{MessageId, RoomId},
    error::AppError,
    service::chat::{ChatBroadcast, EditInput, SendInput},
};

/// The Socket.IO room of a chat room.
pub fn room_key(room: RoomId) -> String {
    format!("room:{room}")
}

pub fn register(socket: &SocketRef) {
    socket.on("chat:join_room", join_room);
    socket.on("chat:leave_room", leave_room);
    socket.on("chat:send_message", send_message);
    socket.on("chat:typing", typing);
    socket.on("chat:edit_message", edit_message);
    socket.on("chat:delete_message", delete_message);
    socket.on("chat:online_users", online_users);
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

async fn announce_online(io: &SocketIo, state: &GatewayState, room: RoomId) {
    let users: Vec<OnlineUser> = state.presence.users(room);
    let payload = json!({ "roomId": room, "users": users });
    if let Err(error) = io
        .to(room_key(room))
        .emit("chat:online_users", &payload)
        .await
    {
        tracing::warn!(%error, "online users broadcast failed");
    }
}

async fn join_room(
    socket: SocketRef,
    io: SocketIo,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let user = user_of(&socket);
    let result = async {
        let RoomRef { room_id } = payload(data)?;
        let (_, course) = state.chat.room_access(&user.actor, room_id).await?;
        socket.join(room_key(room_id));
        let changed = state.presence.join(
            room_id,
            course.id,
            user.actor.id,
            &user.name,
            &socket.id.to_string(),
        );
        Ok::<_, AppError>((room_id, changed))
    }
    .instrument(span(&socket, &user, "chat:join_room"))
    .await;
    match result {
        Ok((room, changed)) => {
            ack(
                ack_sender,
                Ok(json!({ "roomId": room, "onlineUsers": state.presence.users(room) })),
            );
            if changed {
                announce_online(&io, &state, room).await;
            }
        }
        Err(error) => ack(ack_sender, Err(error)),
    }
}

async fn leave_room(
    socket: SocketRef,
    io: SocketIo,
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
    let changed = state
        .presence
        .leave(room, user.actor.id, &socket.id.to_string());
    ack(ack_sender, Ok(json!({})));
    if changed {
        announce_online(&io, &state, room).await;
    }
}

async fn send_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:send_message",
        ack_sender,
        |user| async move {
            let p: SendPayload = payload(data)?;
            let input = SendInput {
                content: p.content,
                client_id: Some(p.client_id),
                reply_to: p.reply_to,
                attachments: p.attachments,
            };
            let sent = state.chat.send(&user.actor, p.room_id, input).await?;
            Ok(json!({ "message": sent.message }))
        },
    )
    .await;
}

async fn typing(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    let socket = &socket;
    respond(socket, "chat:typing", ack_sender, |user| async move {
        let p: TypingPayload = payload(data)?;
        if !state.presence.is_in(&socket.id.to_string(), p.room_id) {
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

async fn edit_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:edit_message",
        ack_sender,
        |user| async move {
            let p: EditPayload = payload(data)?;
            let message = state
                .chat
                .edit(&user.actor, p.message_id, EditInput { content: p.content })
                .await?;
            Ok(json!({ "message": message }))
        },
    )
    .await;
}

async fn delete_message(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:delete_message",
        ack_sender,
        |user| async move {
            let p: MessageRef = payload(data)?;
            state.chat.delete(&user.actor, p.message_id).await?;
            Ok(json!({}))
        },
    )
    .await;
}

async fn online_users(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack_sender: AckSender,
    State(state): State<GatewayState>,
) {
    respond(
        &socket,
        "chat:online_users",
        ack_sender,
        |user| async move {
            let RoomRef { room_id } = payload(data)?;
            state.chat.room_access(&user.actor, room_id).await?;
            Ok(json!({ "users": state.presence.users(room_id) }))
        },
    )
    .await;
}

/// Takes every socket of `user` (or of everyone) out of the course's rooms, after their
/// membership ended, and tells the rooms who is still online.
pub async fn evict(
    io: &SocketIo,
    state: &GatewayState,
    course: crate::domain::CourseId,
    user: Option<crate::domain::UserId>,
) {
    let entries = state.presence.user_sockets_in_course(course, user);
    let mut changed_rooms = Vec::new();
    for (room, uid, sockets) in entries {
        for sid in sockets {
            if let Some(socket) = sid
                .parse::<socketioxide::socket::Sid>()
                .ok()
                .and_then(|sid| io.get_socket(sid))
            {
                socket.leave(room_key(room));
            }
            if state.presence.leave(room, uid, &sid) {
                changed_rooms.push(room);
            }
        }
    }
    changed_rooms.sort();
    changed_rooms.dedup();
    for room in changed_rooms {
        announce_online(io, state, room).await;
    }
}

/// Cleans a disconnected socket out of every room it had joined.
pub async fn disconnect(io: &SocketIo, state: &GatewayState, socket: &SocketRef) {
    let Some(user) = socket.extensions.get::<SocketUser>() else {
        return;
    };
    let sid = socket.id.to_string();
    for room in state.presence.rooms_of(&sid) {
        if state.presence.leave(room, user.actor.id, &sid) {
            announce_online(io, state, room).await;
        }
    }
}
