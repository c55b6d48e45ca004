//! WebRTC signaling for live sessions: who is in a session's call, whether one more may join,
//! and whether a signal may pass from one peer to another. The gateway moves the bytes; this
//! decides, consulting the signaling plugin slot on every join and every signal.
//!
//! A peer is a socket, so a user with two tabs is two peers. Each join is an attendance row
//! (`joinedAt`), closed (`leftAt`) when the peer leaves, disconnects or the session ends.
//! The set of peers lives in this process; capacity is therefore counted per node until the
//! scale-out work shares it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use lyceum_plugin_runtime::{
    JoinCheck, JoinVerdict, PolicyEngine, SessionState, SignalCheck, SignalKind, SignalVerdict,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    Actor,
    access::CourseAccess,
    ice::{IceServers, IceService},
    policy,
};
use crate::{
    domain::{Course, SessionId, SessionStatus, UserId, now},
    error::{AppError, AppResult},
    ratelimit::TokenBuckets,
    store::Store,
    telemetry::RequestId,
};

/// A peer as the others see it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub socket_id: String,
    pub user_id: UserId,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct SignalLimits {
    pub max_sdp_bytes: u64,
    pub max_candidate_bytes: u64,
    pub rate_per_second: f64,
    pub burst: u32,
}

/// What a joiner learns.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The peers already there, oldest first.
    pub peers: Vec<Peer>,
    pub ice: IceServers,
    /// False when this socket had already joined (nothing changed).
    pub new: bool,
}

/// A signal on its way.
#[derive(Debug, Clone)]
pub struct Signal {
    pub session: SessionId,
    pub kind: SignalKind,
    pub to: String,
    pub payload: Value,
}

/// A signal cleared to go: the payload to deliver, possibly rewritten by policy.
#[derive(Debug, Clone)]
pub struct Relay {
    pub payload: Value,
}

struct Call {
    course: Course,
    peers: Vec<Peer>,
}

pub struct SignalingService {
    store: Arc<dyn Store>,
    policy: Arc<PolicyEngine>,
    access: CourseAccess,
    ice: Arc<IceService>,
    limits: SignalLimits,
    buckets: TokenBuckets,
    calls: Mutex<HashMap<SessionId, Call>>,
    /// Joins run one at a time so that two joiners cannot both take the last place.
    join_lock: tokio::sync::Mutex<()>,
}

impl SignalingService {
    pub fn new(
        store: Arc<dyn Store>,
        access: CourseAccess,
        policy: Arc<PolicyEngine>,
        ice: Arc<IceService>,
        limits: SignalLimits,
    ) -> Self {
        SignalingService {
            access,
            buckets: TokenBuckets::new(limits.rate_per_second, limits.burst),
            store,
            policy,
            ice,
            limits,
            calls: Mutex::default(),
            join_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Joins `socket` to the session's call: the session exists, the actor is a member of its
    /// course, the session has not ended, and the signaling slot allows it. `request_id` is
    /// what the plugins are told the request is.
    pub async fn join(
        &self,
        actor: &Actor,
        request_id: &RequestId,
        name: &str,
        socket: &str,
        session_id: SessionId,
    ) -> AppResult<Joined> {
        let _one_at_a_time = self.join_lock.lock().await;
        let session = self
            .store
            .session(session_id)
            .await?
            .ok_or_else(|| AppError::NotFound("session not found".into()))?;
        let course = self.access.member_of(actor, session.course_id).await?;
        if let Some(others) = self.others_if_joined(session_id, socket) {
            return Ok(Joined {
                peers: others,
                ice: self.ice.for_user(actor.id),
                new: false,
            });
        }
        // Whatever the plugins say, an ended session's attendance is closed for good.
        if session.status == SessionStatus::Ended {
            return Err(AppError::RejectedByPolicy {
                reason: "session_not_live".into(),
                message: "the session has ended".into(),
            });
        }
        let count = self.peers(session_id).len() as u32;
        let mut ctx = policy::context(request_id, actor, &course);
        ctx.session_id = Some(session_id.to_string());
        let verdict = self
            .policy
            .check_join(
                &ctx,
                &JoinCheck {
                    session_id: session_id.to_string(),
                    state: match session.status {
                        SessionStatus::Scheduled => SessionState::Scheduled,
                        SessionStatus::Live => SessionState::Live,
                        SessionStatus::Ended => SessionState::Ended,
                    },
                    participant_count: count,
                    max_participants: session.max_participants,
                },
            )
            .await
            .map_err(policy::unavailable)?;
        if let JoinVerdict::Deny(refusal) = verdict {
            return Err(policy::refused(refusal));
        }
        self.store
            .insert_participant(uuid::Uuid::now_v7(), session_id, actor.id, socket, now())
            .await?;
        let peer = Peer {
            socket_id: socket.to_owned(),
            user_id: actor.id,
            name: name.to_owned(),
        };
        let mut calls = self.calls.lock().expect("calls lock");
        let call = calls.entry(session_id).or_insert_with(|| Call {
            course,
            peers: Vec::new(),
        });
        let others = call.peers.clone();
        call.peers.push(peer);
        tracing::info!(session = %session_id, user = %actor.id, socket, peers = others.len() + 1, "joined a call");
        Ok(Joined {
            peers: others,
            ice: self.ice.for_user(actor.id),
            new: true,
        })
    }

    /// Takes `socket` out of the call and closes its attendance; `None` if it was not in it.
    pub async fn leave(&self, socket: &str, session: SessionId) -> AppResult<Option<Peer>> {
        let left = {
            let mut calls = self.calls.lock().expect("calls lock");
            let Some(call) = calls.get_mut(&session) else {
                return Ok(None);
            };
            let Some(at) = call.peers.iter().position(|p| p.socket_id == socket) else {
                return Ok(None);
            };
            let peer = call.peers.remove(at);
            if call.peers.is_empty() {
                calls.remove(&session);
            }
            peer
        };
        self.store.close_participant(session, socket, now()).await?;
        Ok(Some(left))
    }

    /// Every call `socket` was in, left (a disconnect).
    pub async fn leave_all(&self, socket: &str) -> Vec<(SessionId, Peer)> {
        let sessions: Vec<SessionId> = {
            let calls = self.calls.lock().expect("calls lock");
            calls
                .iter()
                .filter(|(_, call)| call.peers.iter().any(|p| p.socket_id == socket))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut left = Vec::new();
        for session in sessions {
            match self.leave(socket, session).await {
                Ok(Some(peer)) => left.push((session, peer)),
                Ok(None) => {}
                Err(error) => {
                    // The peer is out of the call; only its `leftAt` may be missing.
                    tracing::warn!(%error, session = %session, "could not close an attendance row");
                }
            }
        }
        left
    }

    /// Takes out of every call of `course` the peers of `user` (everyone when `None`): they
    /// lost their membership, or the course is gone. Their attendance rows are closed.
    pub async fn evict(
        &self,
        course: crate::domain::CourseId,
        user: Option<UserId>,
    ) -> Vec<(SessionId, Peer)> {
        let evicted: Vec<(SessionId, Peer)> = {
            let mut calls = self.calls.lock().expect("calls lock");
            let mut evicted = Vec::new();
            for (session, call) in calls.iter_mut().filter(|(_, c)| c.course.id == course) {
                call.peers.retain(|peer| {
                    let out = user.is_none_or(|u| peer.user_id == u);
                    if out {
                        evicted.push((*session, peer.clone()));
                    }
                    !out
                });
            }
            calls.retain(|_, call| !call.peers.is_empty());
            evicted
        };
        for (session, peer) in &evicted {
            if let Err(error) = self
                .store
                .close_participant(*session, &peer.socket_id, now())
                .await
            {
                tracing::warn!(%error, session = %session, "could not close an attendance row");
            }
        }
        evicted
    }

    /// Forgets an ended session's call (its attendance rows were closed with it) and returns
    /// who was in it.
    pub fn ended(&self, session: SessionId) -> Vec<Peer> {
        self.calls
            .lock()
            .expect("calls lock")
            .remove(&session)
            .map(|call| call.peers)
            .unwrap_or_default()
    }

    /// Clears a signal from `from` for delivery: within its size and rate limits, sender and
    /// receiver both in the session's call, and passed by the signaling slot.
    pub async fn signal(
        &self,
        actor: &Actor,
        request_id: &RequestId,
        from: &str,
        signal: &Signal,
    ) -> AppResult<Relay> {
        let (field, limit) = match signal.kind {
            SignalKind::IceCandidate => ("candidate", self.limits.max_candidate_bytes),
            SignalKind::Offer | SignalKind::Answer => ("sdp", self.limits.max_sdp_bytes),
        };
        let payload = serde_json::to_string(&signal.payload).map_err(AppError::internal)?;
        if payload.len() as u64 > limit {
            return Err(AppError::PayloadTooLarge(format!(
                "{field} may be at most {limit} bytes"
            )));
        }
        self.buckets
            .take(from)
            .map_err(|retry_after| AppError::RateLimited { retry_after })?;
        let course = {
            let calls = self.calls.lock().expect("calls lock");
            let call = calls.get(&signal.session);
            let has =
                |socket: &str| call.is_some_and(|c| c.peers.iter().any(|p| p.socket_id == socket));
            if !has(from) {
                return Err(AppError::Forbidden("join the session first".into()));
            }
            if !has(&signal.to) {
                return Err(AppError::Forbidden(
                    "the receiver is not in this session".into(),
                ));
            }
            call.expect("checked").course.clone()
        };
        let mut ctx = policy::context(request_id, actor, &course);
        ctx.session_id = Some(signal.session.to_string());
        let verdict = self
            .policy
            .check_signal(
                &ctx,
                &SignalCheck {
                    session_id: signal.session.to_string(),
                    kind: signal.kind,
                    from: from.to_owned(),
                    to: signal.to.clone(),
                    payload,
                },
            )
            .await
            .map_err(policy::unavailable)?;
        match verdict {
            SignalVerdict::Relay => Ok(Relay {
                payload: signal.payload.clone(),
            }),
            SignalVerdict::Rewrite { payload } => match serde_json::from_str(&payload) {
                Ok(payload) => Ok(Relay { payload }),
                Err(error) => {
                    tracing::warn!(%error, "a signaling plugin rewrote a signal into invalid JSON");
                    Err(AppError::Unavailable(
                        "a policy check is unavailable, try again shortly".into(),
                    ))
                }
            },
            SignalVerdict::Drop(refusal) => Err(policy::refused(refusal)),
        }
    }

    /// The peers in a session's call, oldest first.
    pub fn peers(&self, session: SessionId) -> Vec<Peer> {
        self.calls
            .lock()
            .expect("calls lock")
            .get(&session)
            .map(|c| c.peers.clone())
            .unwrap_or_default()
    }

    fn others_if_joined(&self, session: SessionId, socket: &str) -> Option<Vec<Peer>> {
        let peers = self.peers(session);
        peers.iter().any(|p| p.socket_id == socket).then(|| {
            peers
                .into_iter()
                .filter(|p| p.socket_id != socket)
                .collect()
        })
    }
}
