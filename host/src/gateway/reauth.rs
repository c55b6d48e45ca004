//! Sockets outlive the access token they connected with: a tab stays open for hours, tokens
//! live minutes. A socket keeps working while its token is valid and for `grace` after; a
//! client that refreshed its tokens over HTTP hands the new access token to the socket with
//! `auth:refresh {token}`. A socket that does not is told `auth:expired` and disconnected, at
//! most a second after its grace ran out.
//!
//! The due times live in one ordered set for the whole server rather than a timer per
//! socket: a set entry is a few dozen bytes, a timer task per idle socket is hundreds.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    ParserError, SocketIo,
    extract::{AckSender, SocketRef, State, TryData},
    socket::Sid,
};

use super::{GatewayState, SocketUser, family_room, payload, respond};
use crate::error::{AppError, AppResult};

/// How often overdue sockets are looked for: the bound on how late past its grace a socket
/// is disconnected.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// When each socket's access token expires, in seconds since the Unix epoch.
pub struct TokenExpiry {
    grace_secs: i64,
    due: Mutex<BTreeSet<(i64, Sid)>>,
}

impl TokenExpiry {
    pub fn new(grace: Duration) -> Self {
        TokenExpiry {
            grace_secs: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            due: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn track(&self, socket: Sid, expires_at: i64) {
        self.due().insert((expires_at, socket));
    }

    pub fn forget(&self, socket: Sid, expires_at: i64) {
        self.due().remove(&(expires_at, socket));
    }

    /// The sockets whose token expired more than `grace` before `now`, no longer tracked.
    pub fn overdue(&self, now: i64) -> Vec<Sid> {
        let last_valid = now.saturating_sub(self.grace_secs);
        let mut due = self.due();
        let still_valid = due.split_off(&(last_valid, Sid::ZERO));
        let overdue = std::mem::replace(&mut *due, still_valid);
        overdue.into_iter().map(|(_, socket)| socket).collect()
    }

    pub fn tracked(&self) -> usize {
        self.due().len()
    }

    fn due(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i64, Sid)>> {
        // The set holds plain values: a panic elsewhere cannot leave it half-updated.
        self.due
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Disconnects overdue sockets until the server stops.
    pub async fn run(self: Arc<Self>, io: SocketIo) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = chrono::Utc::now().timestamp();
            for sid in self.overdue(now) {
                let Some(socket) = io.get_socket(sid) else {
                    continue;
                };
                // A refresh may have raced the sweep; the socket's own token decides.
                if let Some(user) = socket.extensions.get::<SocketUser>()
                    && user.expires_at >= now.saturating_sub(self.grace_secs)
                {
                    self.track(sid, user.expires_at);
                    continue;
                }
                tracing::debug!(socket = %sid, "access token expired; disconnecting the socket");
                let _ = socket.emit("auth:expired", &json!({}));
                if let Err(error) = socket.disconnect() {
                    tracing::debug!(%error, socket = %sid, "socket already gone");
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshPayload {
    token: String,
}

/// `auth:refresh {token}`: the socket carries on with a newer access token of the same user.
/// A token that does not verify changes nothing; the socket keeps its current one.
pub async fn refresh(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    State(state): State<GatewayState>,
) {
    let this = socket.clone();
    respond(&socket, "auth:refresh", ack, |user, _| async move {
        refreshed(&this, &state, user, data)
    })
    .await
}

fn refreshed(
    socket: &SocketRef,
    state: &GatewayState,
    user: SocketUser,
    data: Result<Value, ParserError>,
) -> AppResult<Value> {
    let RefreshPayload { token } = payload(data)?;
    let (actor, expires_at) = state.auth.authenticate_until(&token)?;
    if actor.id != user.actor.id {
        return Err(AppError::Forbidden(
            "the token is another user's; a socket stays the user it connected as".into(),
        ));
    }
    if actor.family != user.actor.family {
        socket.leave(family_room(user.actor.family));
        socket.join(family_room(actor.family));
    }
    state.expiry.forget(socket.id, user.expires_at);
    state.expiry.track(socket.id, expires_at);
    socket.extensions.insert(SocketUser {
        actor,
        expires_at,
        ..user
    });
    let expires_at = chrono::DateTime::from_timestamp(expires_at, 0)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("token expiry out of range")))?;
    Ok(json!({ "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_overdue_only_once_its_grace_has_run_out() {
        let sid = [Sid::new(), Sid::new()];
        let expiry = TokenExpiry::new(Duration::from_secs(30));
        expiry.track(sid[0], 1_000);
        expiry.track(sid[1], 1_010);
        assert!(expiry.overdue(1_029).is_empty(), "within the grace");
        assert_eq!(expiry.overdue(1_031), vec![sid[0]]);
        assert!(expiry.overdue(1_031).is_empty(), "handed out once");
        assert_eq!(expiry.tracked(), 1);
        assert_eq!(expiry.overdue(5_000), vec![sid[1]]);
        assert_eq!(expiry.tracked(), 0);
    }

    #[test]
    fn a_refreshed_or_disconnected_socket_is_no_longer_due_at_its_old_time() {
        let sid = [Sid::new(), Sid::new()];
        let expiry = TokenExpiry::new(Duration::ZERO);
        expiry.track(sid[0], 1_000);
        expiry.forget(sid[0], 1_000);
        expiry.track(sid[0], 2_000);
        expiry.track(sid[1], 1_000);
        expiry.forget(sid[1], 1_000);
        assert!(expiry.overdue(1_500).is_empty());
        assert_eq!(expiry.overdue(2_001), vec![sid[0]]);
    }
}
