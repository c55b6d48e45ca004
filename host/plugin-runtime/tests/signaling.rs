//! The default signaling policy plugin, through the real runtime.

mod common;

use common::{builtin, builtin_with, ctx, engine};
use lyceum_plugin_runtime::{
    JoinCheck, JoinVerdict, PolicyEngine, Role, SessionState, SignalCheck, SignalKind,
    SignalVerdict, Slot,
};
use serde_json::json;

fn join(
    engine: &PolicyEngine,
    state: SessionState,
    count: u32,
    max: Option<u32>,
) -> Result<(), String> {
    let input = JoinCheck {
        session_id: "session-1".into(),
        state,
        participant_count: count,
        max_participants: max,
    };
    match engine
        .check_join_blocking(&ctx(Role::Student), &input)
        .unwrap()
    {
        JoinVerdict::Allow => Ok(()),
        JoinVerdict::Deny(r) => Err(r.code),
    }
}

#[test]
fn joins_only_live_sessions_with_room_left() {
    let default = engine(Slot::Signaling, vec![builtin(Slot::Signaling)]);
    type Case = (SessionState, u32, Option<u32>, Result<(), &'static str>);
    let cases: &[Case] = &[
        (SessionState::Live, 0, None, Ok(())),
        (SessionState::Live, 3, Some(4), Ok(())),
        (SessionState::Live, 4, Some(4), Err("session_full")),
        (SessionState::Live, 9, Some(4), Err("session_full")),
        (SessionState::Scheduled, 0, Some(4), Err("session_not_live")),
        (SessionState::Ended, 0, None, Err("session_not_live")),
    ];
    for (state, count, max, want) in cases {
        let got = join(&default, *state, *count, *max);
        assert_eq!(
            got,
            want.map_err(str::to_owned),
            "{state:?} with {count}/{max:?}"
        );
    }

    let capped = engine(
        Slot::Signaling,
        vec![builtin_with(
            Slot::Signaling,
            json!({ "max_participants": 2 }),
        )],
    );
    assert_eq!(join(&capped, SessionState::Live, 1, None), Ok(()));
    assert_eq!(
        join(&capped, SessionState::Live, 2, Some(10)),
        Err("session_full".into())
    );
}

fn signal(engine: &PolicyEngine, role: Role, kind: SignalKind, payload: &str) -> SignalVerdict {
    let input = SignalCheck {
        session_id: "session-1".into(),
        kind,
        from: "socket-a".into(),
        to: "socket-b".into(),
        payload: payload.into(),
    };
    engine.check_signal_blocking(&ctx(role), &input).unwrap()
}

fn dropped(verdict: &SignalVerdict) -> Option<&str> {
    match verdict {
        SignalVerdict::Drop(r) => Some(&r.code),
        _ => None,
    }
}

/// An SDP offer as a browser would send it, JSON-encoded, so its line breaks are the
/// four characters `\r\n`.
fn offer(extra_video_lines: &[&str]) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:cam-stream mic-track\r\n",
    );
    sdp.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
    for line in extra_video_lines {
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    json!({ "type": "offer", "sdp": sdp }).to_string()
}

#[test]
fn signals_within_caps_and_role_rules() {
    let default = engine(Slot::Signaling, vec![builtin(Slot::Signaling)]);
    let camera = offer(&["a=msid:cam-stream cam-track"]);
    let slides = offer(&["a=content:slides", "a=msid:s1 t1"]);
    let labelled = offer(&["a=msid:Screen-7f3a track-1"]);
    assert_eq!(
        signal(&default, Role::Student, SignalKind::Offer, &camera),
        SignalVerdict::Relay
    );
    assert_eq!(
        dropped(&signal(&default, Role::Student, SignalKind::Offer, &slides)),
        Some("screen_share_forbidden")
    );
    assert_eq!(
        dropped(&signal(
            &default,
            Role::Student,
            SignalKind::Answer,
            &labelled
        )),
        Some("screen_share_forbidden")
    );
    assert_eq!(
        signal(&default, Role::Instructor, SignalKind::Offer, &slides),
        SignalVerdict::Relay
    );
    assert_eq!(
        signal(&default, Role::Admin, SignalKind::Offer, &labelled),
        SignalVerdict::Relay
    );

    let huge = offer(&[&format!("a=x-padding:{}", "x".repeat(70_000))]);
    assert_eq!(
        dropped(&signal(
            &default,
            Role::Instructor,
            SignalKind::Offer,
            &huge
        )),
        Some("sdp_too_large")
    );
    let candidate = json!({ "candidate": "candidate:1 1 udp 2122260223 192.0.2.7 54400 typ host", "sdpMid": "0" }).to_string();
    assert_eq!(
        signal(
            &default,
            Role::Student,
            SignalKind::IceCandidate,
            &candidate
        ),
        SignalVerdict::Relay
    );
    let bloated = json!({ "candidate": "x".repeat(3000) }).to_string();
    assert_eq!(
        dropped(&signal(
            &default,
            Role::Student,
            SignalKind::IceCandidate,
            &bloated
        )),
        Some("candidate_too_large")
    );

    let open = engine_with(json!({ "screen_share_roles": ["student", "instructor"] }));
    assert_eq!(
        signal(&open, Role::Student, SignalKind::Offer, &slides),
        SignalVerdict::Relay
    );
}

fn engine_with(config: serde_json::Value) -> PolicyEngine {
    engine(Slot::Signaling, vec![builtin_with(Slot::Signaling, config)])
}

#[test]
fn host_candidates_can_be_hidden() {
    let engine = engine_with(json!({ "hide_host_candidates": true }));
    let host = json!({ "candidate": "candidate:1 1 udp 2122260223 192.168.1.20 54400 typ host" })
        .to_string();
    let srflx = json!({ "candidate": "candidate:2 1 udp 1686052607 203.0.113.9 54400 typ srflx raddr 0.0.0.0 rport 0" }).to_string();
    assert_eq!(
        dropped(&signal(
            &engine,
            Role::Student,
            SignalKind::IceCandidate,
            &host
        )),
        Some("host_candidate_hidden")
    );
    assert_eq!(
        signal(&engine, Role::Student, SignalKind::IceCandidate, &srflx),
        SignalVerdict::Relay
    );

    let with_host = offer(&[
        "a=candidate:1 1 udp 2122260223 192.168.1.20 54400 typ host",
        "a=candidate:2 1 udp 1686052607 203.0.113.9 54400 typ srflx raddr 0.0.0.0 rport 0",
    ]);
    match signal(&engine, Role::Student, SignalKind::Offer, &with_host) {
        SignalVerdict::Rewrite { payload } => {
            let sdp =
                serde_json::from_str::<serde_json::Value>(&payload).expect("still JSON")["sdp"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            assert!(!sdp.contains("typ host"), "{sdp}");
            assert!(sdp.contains("typ srflx"), "{sdp}");
            assert!(sdp.contains("m=video"), "{sdp}");
        }
        other => panic!("{other:?}"),
    }
}
