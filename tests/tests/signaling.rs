//! WebRTC signaling for live sessions, per the Socket.IO section of the contract: joining a
//! session's call, offers, answers and ICE candidates relayed to exactly one peer of the same
//! session with the sender named by the server, leaving (by event, by disconnect, by the session
//! ending) with attendance rows, the signaling plugin slot on joins and signals, and limits.
//!
//! The cast: an instructor T with a live session of their course, students A, B and C
//! enrolled, and O, who is not.

use std::time::Duration;

use lyceum::config::Config;
use lyceum_tests::{
    Account, Backend, TestServer, backend_tests, check::*, socket::SocketClient, write_plugins_toml,
};
use serde_json::{Value, json};

backend_tests!(
    offers_answers_and_candidates_reach_only_their_receiver_once_named_by_the_server,
    a_late_joiner_sees_everyone_already_there_and_they_see_it_arrive,
    outsiders_cannot_join_or_signal_and_signals_stay_inside_the_session,
    capacity_refuses_the_extra_joiner_and_a_rejoin_is_not_counted,
    only_live_sessions_take_joins_and_ending_one_tells_everyone,
    leaving_or_disconnecting_tells_the_others_and_closes_the_attendance_row,
    two_tabs_are_two_peers,
    malformed_payloads_and_limits_are_answered_in_the_ack,
    the_signaling_plugin_drops_and_rewrites_signals,
    a_failing_signaling_plugin_fails_closed_or_open_as_configured,
    losing_membership_takes_a_peer_out_of_the_call_at_once,
);

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

struct Cast {
    t: Account,
    a: Account,
    b: Account,
    c: Account,
    o: Account,
    session: Value,
}

impl Cast {
    fn session_id(&self) -> &str {
        self.session["id"].as_str().unwrap()
    }
}

async fn start(backend: Backend) -> TestServer {
    start_with(backend, |_| {}).await
}

async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_small(backend, adjust).await
}

/// Starts a server whose signaling chain is `plugins` (a `plugins.toml` text).
async fn start_with_plugins(backend: Backend, plugins: &str) -> TestServer {
    let text = plugins.to_owned();
    start_with(backend, move |config| write_plugins_toml(config, &text)).await
}

/// A course with a session (`maxParticipants` when given), started unless `live` is false.
async fn cast(srv: &TestServer, max: Option<u32>, live: bool) -> Cast {
    let (t, course) = srv.course().await;
    let (a, b, c, o) = (
        srv.register("student").await,
        srv.register("student").await,
        srv.register("student").await,
        srv.register("student").await,
    );
    for who in [&a, &b, &c] {
        srv.enroll(who, &course).await;
    }
    let mut body = json!({ "title": "Lecture" });
    if let Some(max) = max {
        body["maxParticipants"] = json!(max);
    }
    let reply = as_client(srv, &t)
        .post(&api(&format!("/courses/{}/sessions", id_of(&course))), body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let mut session = reply.data();
    if live {
        let reply = as_client(srv, &t)
            .post(
                &api(&format!("/sessions/{}/start", id_of(&session))),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        session = reply.data();
    }
    Cast {
        t,
        a,
        b,
        c,
        o,
        session,
    }
}

async fn connect(srv: &TestServer, who: &Account) -> SocketClient {
    SocketClient::with_token(srv.addr, &who.token).await
}

fn ok(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "expected success, got {ack}");
    ack
}

fn refused(ack: &Value, code: &str) -> Value {
    assert_eq!(ack["ok"], false, "expected {code}, got {ack}");
    assert_eq!(ack["error"]["code"], code, "{ack}");
    ack["error"].clone()
}

async fn join(socket: &SocketClient, session: &str) -> Value {
    socket
        .emit_ack("webrtc:join_session", json!({ "sessionId": session }))
        .await
}

async fn joined(socket: &SocketClient, session: &str) -> Value {
    let ack = join(socket, session).await;
    ok(&ack);
    ack
}

fn peer_sockets(ack: &Value) -> Vec<String> {
    ack["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["socketId"].as_str().unwrap().to_owned())
        .collect()
}

async fn signal(socket: &SocketClient, event: &str, session: &str, to: &str, body: Value) -> Value {
    let field = if event == "webrtc:ice_candidate" {
        "candidate"
    } else {
        "sdp"
    };
    let mut payload = json!({ "sessionId": session, "to": to });
    payload[field] = body;
    socket.emit_ack(event, payload).await
}

fn offer_sdp(label: &str) -> Value {
    json!({
        "type": "offer",
        "sdp": format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns={label}\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:mic audio0\r\n"),
    })
}

fn candidate(n: u32) -> Value {
    json!({
        "candidate": format!("candidate:{n} 1 udp 2122260223 10.0.0.{n} 5000{n} typ srflx raddr 0.0.0.0 rport 0"),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    })
}

async fn participants(srv: &TestServer, who: &Account, session: &str) -> Vec<Value> {
    let reply = as_client(srv, who)
        .get(&api(&format!("/sessions/{session}/participants")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.data()["items"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------

async fn offers_answers_and_candidates_reach_only_their_receiver_once_named_by_the_server(
    backend: Backend,
) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    let mut c = connect(&srv, &cast.c).await;
    let first = joined(&a, &sid).await;
    assert_eq!(first["peers"], json!([]));
    assert!(first["iceServers"].is_array(), "{first}");
    joined(&b, &sid).await;
    joined(&c, &sid).await;
    a.expect_event("webrtc:user_joined", WAIT).await;
    a.expect_event("webrtc:user_joined", WAIT).await;
    b.expect_event("webrtc:user_joined", WAIT).await;

    // A offers to B; B answers; candidates go both ways.
    let offer = offer_sdp("from A");
    ok(&signal(&a, "webrtc:offer", &sid, &b.sid, offer.clone()).await);
    let got = b.expect_event("webrtc:offer_received", WAIT).await;
    assert_eq!(
        got,
        json!({ "sessionId": sid, "from": a.sid, "userId": cast.a.id, "sdp": offer })
    );
    let answer = json!({ "type": "answer", "sdp": "v=0\r\ns=from B\r\n" });
    ok(&signal(&b, "webrtc:answer", &sid, &a.sid, answer.clone()).await);
    let got = a.expect_event("webrtc:answer_received", WAIT).await;
    assert_eq!(
        got,
        json!({ "sessionId": sid, "from": b.sid, "userId": cast.b.id, "sdp": answer })
    );
    for n in 1..=3 {
        ok(&signal(&a, "webrtc:ice_candidate", &sid, &b.sid, candidate(n)).await);
        ok(&signal(&b, "webrtc:ice_candidate", &sid, &a.sid, candidate(10 + n)).await);
    }
    for n in 1..=3 {
        let at_b = b.expect_event("webrtc:ice_candidate_received", WAIT).await;
        assert_eq!(at_b["candidate"], candidate(n));
        assert_eq!(at_b["from"], a.sid.as_str());
        assert_eq!(at_b["userId"], cast.a.id.as_str());
        let at_a = a.expect_event("webrtc:ice_candidate_received", WAIT).await;
        assert_eq!(at_a["candidate"], candidate(10 + n));
        assert_eq!(at_a["from"], b.sid.as_str());
    }
    // Exactly once each, and nothing reached the bystander.
    b.expect_no_event("webrtc:ice_candidate_received", QUIET)
        .await;
    a.expect_no_event("webrtc:ice_candidate_received", QUIET)
        .await;
    b.expect_no_event("webrtc:offer_received", QUIET).await;
    for event in [
        "webrtc:offer_received",
        "webrtc:answer_received",
        "webrtc:ice_candidate_received",
    ] {
        c.expect_no_event(event, QUIET).await;
    }

    // A payload's own claim about its sender changes nothing.
    let mut spoof = json!({ "sessionId": sid, "to": b.sid, "sdp": offer_sdp("x") });
    spoof["from"] = json!(c.sid);
    spoof["userId"] = json!(cast.c.id);
    ok(&a.emit_ack("webrtc:offer", spoof).await);
    let got = b.expect_event("webrtc:offer_received", WAIT).await;
    assert_eq!(got["from"], a.sid.as_str());
    assert_eq!(got["userId"], cast.a.id.as_str());
}

async fn a_late_joiner_sees_everyone_already_there_and_they_see_it_arrive(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    let c = connect(&srv, &cast.c).await;
    joined(&a, &sid).await;
    let b_ack = joined(&b, &sid).await;
    assert_eq!(peer_sockets(&b_ack), vec![a.sid.clone()]);
    a.expect_event("webrtc:user_joined", WAIT).await;

    let c_ack = joined(&c, &sid).await;
    assert_eq!(peer_sockets(&c_ack), vec![a.sid.clone(), b.sid.clone()]);
    assert_eq!(
        c_ack["peers"][0],
        json!({ "socketId": a.sid, "userId": cast.a.id, "name": cast.a.name })
    );
    for socket in [&mut a, &mut b] {
        let notice = socket.expect_event("webrtc:user_joined", WAIT).await;
        assert_eq!(
            notice,
            json!({ "sessionId": sid, "socketId": c.sid, "userId": cast.c.id, "name": cast.c.name })
        );
    }
    // The ack carries the same ICE servers as the REST endpoint.
    let rest = as_client(&srv, &cast.c)
        .get(&api("/webrtc/ice-servers"))
        .await
        .data();
    assert_eq!(c_ack["iceServers"], rest["iceServers"]);
}

async fn outsiders_cannot_join_or_signal_and_signals_stay_inside_the_session(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    let c = connect(&srv, &cast.c).await;
    let o = connect(&srv, &cast.o).await;
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    a.expect_event("webrtc:user_joined", WAIT).await;

    refused(&join(&o, &sid).await, "FORBIDDEN");
    // Neither an outsider nor a member who has not joined may send into the call…
    for sender in [&o, &c] {
        refused(
            &signal(sender, "webrtc:offer", &sid, &a.sid, offer_sdp("x")).await,
            "FORBIDDEN",
        );
        refused(
            &signal(sender, "webrtc:ice_candidate", &sid, &b.sid, candidate(1)).await,
            "FORBIDDEN",
        );
    }
    // …and a joined peer may not reach a socket outside it, nor an unknown one.
    for target in [c.sid.as_str(), o.sid.as_str(), "not-a-socket"] {
        refused(
            &signal(&a, "webrtc:offer", &sid, target, offer_sdp("x")).await,
            "FORBIDDEN",
        );
    }
    // Another session of the same course: joining one does not admit to the other.
    let other = as_client(&srv, &cast.t)
        .post(
            &api(&format!(
                "/courses/{}/sessions",
                cast.session["courseId"].as_str().unwrap()
            )),
            json!({ "title": "Other" }),
        )
        .await
        .data();
    refused(
        &signal(&a, "webrtc:offer", id_of(&other), &b.sid, offer_sdp("x")).await,
        "FORBIDDEN",
    );
    refused(
        &join(&a, "0190a000-0000-7000-8000-000000000000").await,
        "NOT_FOUND",
    );

    a.expect_no_event("webrtc:offer_received", QUIET).await;
    b.expect_no_event("webrtc:offer_received", QUIET).await;
    b.expect_no_event("webrtc:ice_candidate_received", QUIET)
        .await;
    assert_eq!(participants(&srv, &cast.t, &sid).await.len(), 2);
}

async fn capacity_refuses_the_extra_joiner_and_a_rejoin_is_not_counted(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, Some(2), true).await;
    let sid = cast.session_id().to_owned();
    let a = connect(&srv, &cast.a).await;
    let b = connect(&srv, &cast.b).await;
    let c = connect(&srv, &cast.c).await;
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    // Joining again from the same socket changes nothing and takes no place.
    let again = joined(&a, &sid).await;
    assert_eq!(peer_sockets(&again), vec![b.sid.clone()]);
    let error = refused(&join(&c, &sid).await, "REJECTED_BY_POLICY");
    assert_eq!(error["details"]["reason"], "session_full");

    // A place frees up when someone leaves.
    ok(&a
        .emit_ack("webrtc:leave_session", json!({ "sessionId": sid }))
        .await);
    joined(&c, &sid).await;
    assert_eq!(participants(&srv, &cast.t, &sid).await.len(), 3);
}

async fn only_live_sessions_take_joins_and_ending_one_tells_everyone(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, false).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    let c = connect(&srv, &cast.c).await;
    let error = refused(&join(&a, &sid).await, "REJECTED_BY_POLICY");
    assert_eq!(error["details"]["reason"], "session_not_live");

    let teacher = as_client(&srv, &cast.t);
    teacher
        .post(&api(&format!("/sessions/{sid}/start")), json!({}))
        .await
        .data();
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    teacher
        .post(&api(&format!("/sessions/{sid}/end")), json!({}))
        .await
        .data();
    for socket in [&mut a, &mut b] {
        assert_eq!(
            socket.expect_event("webrtc:session_ended", WAIT).await,
            json!({ "sessionId": sid })
        );
    }
    // Attendance is closed for everyone, and nobody gets in any more.
    let rows = participants(&srv, &cast.t, &sid).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["leftAt"].is_string()), "{rows:?}");
    let error = refused(&join(&c, &sid).await, "REJECTED_BY_POLICY");
    assert_eq!(error["details"]["reason"], "session_not_live");
    // The ended call relays nothing.
    refused(
        &signal(&a, "webrtc:offer", &sid, &b.sid, offer_sdp("late")).await,
        "FORBIDDEN",
    );
}

async fn leaving_or_disconnecting_tells_the_others_and_closes_the_attendance_row(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let b = connect(&srv, &cast.b).await;
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    a.expect_event("webrtc:user_joined", WAIT).await;

    ok(&b
        .emit_ack("webrtc:leave_session", json!({ "sessionId": sid }))
        .await);
    assert_eq!(
        a.expect_event("webrtc:user_left", WAIT).await,
        json!({ "sessionId": sid, "socketId": b.sid, "userId": cast.b.id })
    );
    // Leaving twice is harmless.
    ok(&b
        .emit_ack("webrtc:leave_session", json!({ "sessionId": sid }))
        .await);
    a.expect_no_event("webrtc:user_left", QUIET).await;

    joined(&b, &sid).await;
    a.expect_event("webrtc:user_joined", WAIT).await;
    let b_sid = b.sid.clone();
    // The client's Socket.IO disconnect.
    b.send_raw("41");
    assert_eq!(
        a.expect_event("webrtc:user_left", WAIT).await,
        json!({ "sessionId": sid, "socketId": b_sid, "userId": cast.b.id })
    );

    // The attendance record: A once (still in), B twice (both closed), oldest join first.
    let rows = participants(&srv, &cast.t, &sid).await;
    let of = |who: &Account| -> Vec<&Value> {
        rows.iter()
            .filter(|r| r["userId"] == who.id.as_str())
            .collect()
    };
    assert_eq!(of(&cast.a).len(), 1);
    assert!(of(&cast.a)[0]["leftAt"].is_null());
    assert_eq!(of(&cast.b).len(), 2);
    for row in of(&cast.b) {
        let joined_at = assert_utc_time(&row["joinedAt"]);
        let left_at = assert_utc_time(&row["leftAt"]);
        assert!(left_at >= joined_at, "{row}");
    }
}

async fn two_tabs_are_two_peers(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut tab1 = connect(&srv, &cast.a).await;
    let mut tab2 = connect(&srv, &cast.a).await;
    joined(&tab1, &sid).await;
    let second = joined(&tab2, &sid).await;
    assert_eq!(peer_sockets(&second), vec![tab1.sid.clone()]);
    tab1.expect_event("webrtc:user_joined", WAIT).await;
    // Each tab is addressed on its own.
    ok(&signal(&tab1, "webrtc:offer", &sid, &tab2.sid, offer_sdp("tab")).await);
    tab2.expect_event("webrtc:offer_received", WAIT).await;
    tab1.expect_no_event("webrtc:offer_received", QUIET).await;
    assert_eq!(participants(&srv, &cast.t, &sid).await.len(), 2);
}

async fn malformed_payloads_and_limits_are_answered_in_the_ack(backend: Backend) {
    let srv = start_with(backend, |c| {
        c.signal_rate_burst = 5;
        c.signal_rate_per_second = 1.0;
        c.signal_max_sdp_bytes = 2048;
        c.signal_max_candidate_bytes = 512;
    })
    .await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;

    let field = |ack: &Value| refused(ack, "VALIDATION_FAILED")["details"]["field"].clone();
    assert_eq!(
        field(&a.emit_ack("webrtc:join_session", json!({})).await),
        "sessionId"
    );
    assert_eq!(
        field(
            &a.emit_ack("webrtc:join_session", json!({ "sessionId": 5 }))
                .await
        ),
        "sessionId"
    );
    assert_eq!(
        field(
            &a.emit_ack("webrtc:join_session", json!("not an object"))
                .await
        ),
        "payload"
    );
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    assert_eq!(
        field(
            &a.emit_ack("webrtc:offer", json!({ "sessionId": sid, "to": b.sid }))
                .await
        ),
        "sdp"
    );
    assert_eq!(
        field(
            &a.emit_ack("webrtc:answer", json!({ "sessionId": sid, "sdp": "x" }))
                .await
        ),
        "to"
    );

    // Over the configured sizes: refused before anything is relayed.
    let big_sdp = json!({ "type": "offer", "sdp": "a".repeat(3000) });
    refused(
        &signal(&a, "webrtc:offer", &sid, &b.sid, big_sdp).await,
        "PAYLOAD_TOO_LARGE",
    );
    let big_candidate = json!({ "candidate": "c".repeat(600) });
    refused(
        &signal(&a, "webrtc:ice_candidate", &sid, &b.sid, big_candidate).await,
        "PAYLOAD_TOO_LARGE",
    );
    b.expect_no_event("webrtc:offer_received", QUIET).await;

    // The burst passes, then the rate applies with a retry delay; others are unaffected.
    let mut passed = 0;
    let mut limited = None;
    for n in 0..8 {
        let ack = signal(&a, "webrtc:ice_candidate", &sid, &b.sid, candidate(n)).await;
        if ack["ok"] == true {
            passed += 1;
        } else {
            limited = Some(ack);
            break;
        }
    }
    // Refused signals (the oversized ones above) took no token.
    assert_eq!(passed, 5, "{limited:?}");
    let error = refused(limited.as_ref().unwrap(), "RATE_LIMITED");
    assert!(error["details"]["retryAfter"].as_u64().unwrap() >= 1);
    ok(&signal(&b, "webrtc:ice_candidate", &sid, &a.sid, candidate(1)).await);
    // Still connected and served.
    assert!(!a.closed_within(Duration::from_millis(100)).await);
    ok(&a
        .emit_ack("webrtc:leave_session", json!({ "sessionId": sid }))
        .await);
}

const HIDE_HOST_CANDIDATES: &str = r#"
[signaling]
failure = "fail-closed"

[[signaling.plugins]]
source = "builtin:signaling-policy"

[signaling.plugins.config]
hide_host_candidates = true
"#;

async fn the_signaling_plugin_drops_and_rewrites_signals(backend: Backend) {
    let srv = start_with_plugins(backend, HIDE_HOST_CANDIDATES).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    let mut t = connect(&srv, &cast.t).await;
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    joined(&t, &sid).await;

    // Drop: a host candidate never reaches B, and A learns why.
    let host = json!({ "candidate": "candidate:1 1 udp 2122260223 192.168.1.20 54400 typ host", "sdpMid": "0" });
    let error = refused(
        &signal(&a, "webrtc:ice_candidate", &sid, &b.sid, host).await,
        "REJECTED_BY_POLICY",
    );
    assert_eq!(error["details"]["reason"], "host_candidate_hidden");
    b.expect_no_event("webrtc:ice_candidate_received", QUIET)
        .await;

    // Rewrite: the host candidate lines are stripped from the SDP B receives.
    let sdp = "v=0\r\ns=-\r\na=candidate:1 1 udp 2122260223 192.168.1.20 54400 typ host\r\na=candidate:2 1 udp 1686052607 203.0.113.5 54400 typ srflx raddr 192.168.1.20 rport 54400\r\n";
    ok(&signal(
        &a,
        "webrtc:offer",
        &sid,
        &b.sid,
        json!({ "type": "offer", "sdp": sdp }),
    )
    .await);
    let got = b.expect_event("webrtc:offer_received", WAIT).await;
    let relayed = got["sdp"]["sdp"].as_str().unwrap();
    assert!(!relayed.contains("typ host"), "{relayed}");
    assert!(relayed.contains("typ srflx"), "{relayed}");

    // The default rule on screen sharing: students may not, the instructor may.
    let screen = json!({ "type": "offer", "sdp": "v=0\r\na=msid:screen-stream video0\r\n" });
    let error = refused(
        &signal(&a, "webrtc:offer", &sid, &b.sid, screen.clone()).await,
        "REJECTED_BY_POLICY",
    );
    assert_eq!(error["details"]["reason"], "screen_share_forbidden");
    ok(&signal(&t, "webrtc:offer", &sid, &b.sid, screen).await);
    assert_eq!(
        b.expect_event("webrtc:offer_received", WAIT).await["from"],
        t.sid.as_str()
    );
    t.expect_no_event("webrtc:offer_received", QUIET).await;
}

async fn a_failing_signaling_plugin_fails_closed_or_open_as_configured(backend: Backend) {
    // Two hostile fixtures in the chain: one traps on "panic", one never returns on "loop"
    // (stopped by the deadline).
    for failure in ["fail-closed", "fail-open"] {
        let plugins = format!(
            "[signaling]\nfailure = \"{failure}\"\n\n[[signaling.plugins]]\nsource = '{}'\n\n[[signaling.plugins]]\nsource = '{}'\n",
            lyceum_plugin_runtime::fixtures::PANIC,
            lyceum_plugin_runtime::fixtures::INFINITE_LOOP,
        );
        let srv = start_with_plugins(backend, &plugins).await;
        let cast = cast(&srv, None, true).await;
        let sid = cast.session_id().to_owned();
        let a = connect(&srv, &cast.a).await;
        let mut b = connect(&srv, &cast.b).await;
        joined(&a, &sid).await;
        joined(&b, &sid).await;
        ok(&signal(&a, "webrtc:offer", &sid, &b.sid, offer_sdp("fine")).await);
        b.expect_event("webrtc:offer_received", WAIT).await;
        for trigger in ["panic", "loop"] {
            let ack = signal(&a, "webrtc:offer", &sid, &b.sid, offer_sdp(trigger)).await;
            if failure == "fail-closed" {
                refused(&ack, "UNAVAILABLE");
                b.expect_no_event("webrtc:offer_received", QUIET).await;
            } else {
                ok(&ack);
                let got = b.expect_event("webrtc:offer_received", WAIT).await;
                assert_eq!(got["sdp"], offer_sdp(trigger), "{failure}");
            }
        }
        // The socket and the server carry on either way.
        ok(&signal(&a, "webrtc:ice_candidate", &sid, &b.sid, candidate(2)).await);
        b.expect_event("webrtc:ice_candidate_received", WAIT).await;
    }
}

async fn losing_membership_takes_a_peer_out_of_the_call_at_once(backend: Backend) {
    let srv = start(backend).await;
    let cast = cast(&srv, None, true).await;
    let sid = cast.session_id().to_owned();
    let mut a = connect(&srv, &cast.a).await;
    let mut b = connect(&srv, &cast.b).await;
    joined(&a, &sid).await;
    joined(&b, &sid).await;
    a.expect_event("webrtc:user_joined", WAIT).await;

    // The instructor removes B from the course.
    let course = cast.session["courseId"].as_str().unwrap();
    let removed = as_client(&srv, &cast.t)
        .delete(&api(&format!(
            "/courses/{course}/enrollments/{}",
            cast.b.id
        )))
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);

    assert_eq!(
        b.expect_event("webrtc:session_ended", WAIT).await,
        json!({ "sessionId": sid })
    );
    assert_eq!(
        a.expect_event("webrtc:user_left", WAIT).await,
        json!({ "sessionId": sid, "socketId": b.sid, "userId": cast.b.id })
    );
    // B can neither signal into the call nor come back; A's signals to B are refused.
    refused(
        &signal(&b, "webrtc:offer", &sid, &a.sid, offer_sdp("still here?")).await,
        "FORBIDDEN",
    );
    refused(&join(&b, &sid).await, "FORBIDDEN");
    refused(
        &signal(&a, "webrtc:offer", &sid, &b.sid, offer_sdp("to B")).await,
        "FORBIDDEN",
    );
    a.expect_no_event("webrtc:offer_received", QUIET).await;
    let rows = participants(&srv, &cast.t, &sid).await;
    let b_row = rows
        .iter()
        .find(|r| r["userId"] == cast.b.id.as_str())
        .unwrap();
    assert!(b_row["leftAt"].is_string(), "{b_row}");
}
