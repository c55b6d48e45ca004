//! Lyceum's default signaling policy plugin (`builtin:signaling-policy`).
//!
//! The rules live in [`policy`], which knows nothing of WebAssembly so that the same source
//! also compiles natively. This file adapts the WIT types to it.

mod policy;

use std::sync::OnceLock;

use lyceum_plugin_sdk::signaling::{
    Guest, JoinRequest, JoinVerdict, SessionState, Signal, SignalKind, SignalVerdict,
};
use lyceum_plugin_sdk::{Context, Role, log, refusal};

fn rules() -> &'static policy::Policy {
    static RULES: OnceLock<policy::Policy> = OnceLock::new();
    RULES.get_or_init(|| {
        let config = lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            log::log(log::Level::Error, &format!("{e}; using the default rules"));
            policy::Config::default()
        });
        policy::Policy::new(config)
    })
}

struct Plugin;

impl Guest for Plugin {
    fn check_join(_ctx: Context, request: JoinRequest) -> JoinVerdict {
        let state = match request.state {
            SessionState::Scheduled => policy::State::Scheduled,
            SessionState::Live => policy::State::Live,
            SessionState::Ended => policy::State::Ended,
        };
        match rules().check_join(state, request.participant_count, request.max_participants) {
            policy::JoinOutcome::Allow => JoinVerdict::Allow,
            policy::JoinOutcome::Deny { code, reason } => JoinVerdict::Deny(refusal(code, reason)),
        }
    }

    fn check_signal(ctx: Context, signal: Signal) -> SignalVerdict {
        let role = match ctx.actor_role {
            Role::Student => policy::Role::Student,
            Role::Instructor => policy::Role::Instructor,
            Role::Admin => policy::Role::Admin,
        };
        let kind = match signal.kind {
            SignalKind::Offer => policy::Kind::Offer,
            SignalKind::Answer => policy::Kind::Answer,
            SignalKind::IceCandidate => policy::Kind::IceCandidate,
        };
        match rules().check_signal(role, kind, &signal.payload) {
            policy::SignalOutcome::Relay => SignalVerdict::Relay,
            policy::SignalOutcome::Rewrite(payload) => SignalVerdict::Rewrite(payload),
            policy::SignalOutcome::Drop { code, reason } => {
                SignalVerdict::Drop(refusal(code, reason))
            }
        }
    }
}

lyceum_plugin_sdk::signaling::export!(Plugin);
