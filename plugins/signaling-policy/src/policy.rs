//! The signaling rules, free of WebAssembly bindings.
//!
//! Joins: only to live sessions, and not beyond the participant limit. Signals: SDP and ICE
//! candidates within size caps, screen sharing only for the roles allowed to (by default
//! the course's instructor and admins), and optionally no host candidates, which reveal a
//! peer's local addresses to the other peers.
//!
//! A screen share is recognised in SDP by `a=content:slides` (RFC 4796) or by a media
//! stream or track id containing `screen` (`a=msid:` and `a=ssrc:` lines): clients label
//! their screen tracks that way.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Refuse joins to sessions that are not live.
    pub require_live: bool,
    /// A cap applied to every session, on top of the session's own limit.
    pub max_participants: Option<u32>,
    pub max_sdp_bytes: usize,
    pub max_candidate_bytes: usize,
    /// Roles that may share their screen.
    pub screen_share_roles: Vec<Role>,
    /// Drop ICE host candidates and strip them from SDP.
    pub hide_host_candidates: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            require_live: true,
            max_participants: None,
            max_sdp_bytes: 64 * 1024,
            max_candidate_bytes: 2 * 1024,
            screen_share_roles: vec![Role::Instructor, Role::Admin],
            hide_host_candidates: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Scheduled,
    Live,
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Answer,
    IceCandidate,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Allow,
    Deny { code: &'static str, reason: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum SignalOutcome {
    Relay,
    Rewrite(String),
    Drop { code: &'static str, reason: String },
}

pub struct Policy {
    config: Config,
}

impl Policy {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    pub fn check_join(
        &self,
        state: State,
        participants: u32,
        session_max: Option<u32>,
    ) -> JoinOutcome {
        if self.config.require_live && state != State::Live {
            let reason = match state {
                State::Ended => "This session has ended.",
                _ => "This session has not started yet.",
            };
            return JoinOutcome::Deny {
                code: "session_not_live",
                reason: reason.to_owned(),
            };
        }
        let limit = match (session_max, self.config.max_participants) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit
            && participants >= limit
        {
            return JoinOutcome::Deny {
                code: "session_full",
                reason: format!("This session is full ({limit} participants)."),
            };
        }
        JoinOutcome::Allow
    }

    pub fn check_signal(&self, role: Role, kind: Kind, payload: &str) -> SignalOutcome {
        let config = &self.config;
        if kind == Kind::IceCandidate {
            if payload.len() > config.max_candidate_bytes {
                return SignalOutcome::Drop {
                    code: "candidate_too_large",
                    reason: format!(
                        "ICE candidates may be at most {} bytes.",
                        config.max_candidate_bytes
                    ),
                };
            }
            if config.hide_host_candidates && payload.contains(" typ host") {
                return SignalOutcome::Drop {
                    code: "host_candidate_hidden",
                    reason: "Host candidates are not relayed.".to_owned(),
                };
            }
            return SignalOutcome::Relay;
        }

        if payload.len() > config.max_sdp_bytes {
            return SignalOutcome::Drop {
                code: "sdp_too_large",
                reason: format!(
                    "Session descriptions may be at most {} bytes.",
                    config.max_sdp_bytes
                ),
            };
        }
        if !config.screen_share_roles.contains(&role) && shares_screen(payload) {
            return SignalOutcome::Drop {
                code: "screen_share_forbidden",
                reason: "Only the instructor may share a screen in this session.".to_owned(),
            };
        }
        if config.hide_host_candidates && payload.contains(" typ host") {
            let separator = line_separator(payload);
            let kept: Vec<&str> = payload
                .split(separator)
                .filter(|line| !(line.contains("a=candidate:") && line.contains(" typ host")))
                .collect();
            return SignalOutcome::Rewrite(kept.join(separator));
        }
        SignalOutcome::Relay
    }
}

/// SDP lines end in CRLF, which JSON text carries escaped as the four characters `\r\n`.
fn line_separator(payload: &str) -> &'static str {
    if payload.contains("\\r\\n") {
        "\\r\\n"
    } else if payload.contains("\r\n") {
        "\r\n"
    } else if payload.contains("\\n") {
        "\\n"
    } else {
        "\n"
    }
}

fn shares_screen(sdp: &str) -> bool {
    // Jump from `=` to `=` (a fast byte search) and look only at `a=` attributes that can
    // mark a screen share; splitting a large SDP into lines would cost more than this.
    let bytes = sdp.as_bytes();
    let mut from = 0;
    while let Some(found) = sdp[from..].find('=') {
        let eq = from + found;
        from = eq + 1;
        if eq == 0 || bytes[eq - 1] != b'a' {
            continue;
        }
        let rest = &sdp[eq + 1..];
        let line =
            |rest: &'_ str| -> usize { rest.find(['\r', '\n', '\\', '"']).unwrap_or(rest.len()) };
        if let Some(values) = rest.strip_prefix("content:") {
            if values[..line(values)]
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("slides"))
            {
                return true;
            }
        } else if (rest.starts_with("msid") || rest.starts_with("ssrc:"))
            && rest.as_bytes()[..line(rest)]
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"screen"))
        {
            return true;
        }
    }
    false
}
