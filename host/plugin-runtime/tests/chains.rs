//! Chain semantics (first rejection wins, rewrites and corrections feed the next plugin,
//! flags accumulate) and failure modes, for every slot.

mod common;

use common::{builtin, builtin_with, ctx, engine, file, fixture, only};
use lyceum_plugin_runtime::{
    FailureKind, FailureMode, FileFinish, FilePrecheck, FileVerdict, JoinCheck, JoinVerdict,
    ModerationDecision, ModerationInput, PluginSpec, PolicyEngine, PolicyFailure, Refusal, Role,
    SessionState, SignalCheck, SignalKind, SignalVerdict, Slot, fixtures,
};
use serde_json::json;

fn say(engine: &PolicyEngine, text: &str) -> Result<ModerationDecision, PolicyFailure> {
    engine.moderate_blocking(&ctx(Role::Student), &ModerationInput::send("room-1", text))
}

fn moderation(name: &str, config: serde_json::Value) -> PluginSpec {
    builtin_with(Slot::Chat, config).with_name(name)
}

fn rejecting(name: &str, word: &str, code: &str) -> PluginSpec {
    moderation(
        name,
        json!({ "lists": [{ "action": "reject", "words": [word], "code": code }], "rate_limit": { "messages": 0 } }),
    )
}

fn flagging(name: &str, word: &str, reason: &str) -> PluginSpec {
    moderation(
        name,
        json!({ "lists": [{ "action": "flag", "words": [word], "reason": reason }], "rate_limit": { "messages": 0 } }),
    )
}

fn code(decision: ModerationDecision) -> String {
    match decision {
        ModerationDecision::Reject(Refusal { code, .. }) => code,
        other => panic!("not rejected: {other:?}"),
    }
}

#[test]
fn the_first_rejection_wins_and_ends_the_chain() {
    let ab = engine(
        Slot::Chat,
        vec![
            rejecting("a", "spam", "from_a"),
            rejecting("b", "spam", "from_b"),
        ],
    );
    let ba = engine(
        Slot::Chat,
        vec![
            rejecting("b", "spam", "from_b"),
            rejecting("a", "spam", "from_a"),
        ],
    );
    assert_eq!(code(say(&ab, "spam").unwrap()), "from_a");
    assert_eq!(code(say(&ba, "spam").unwrap()), "from_b");

    // Plugins after a rejection are not asked: a panicking one would fail the call.
    let guarded = engine(
        Slot::Chat,
        vec![
            rejecting("guard", "panic", "guarded"),
            fixture(fixtures::PANIC, "panicky", FailureMode::FailClosed),
        ],
    );
    assert_eq!(code(say(&guarded, "panic").unwrap()), "guarded");
    let unguarded = engine(
        Slot::Chat,
        vec![
            fixture(fixtures::PANIC, "panicky", FailureMode::FailClosed),
            rejecting("guard", "panic", "guarded"),
        ],
    );
    assert_eq!(
        say(&unguarded, "panic").unwrap_err().kind,
        FailureKind::Trap
    );
}

#[test]
fn rewrites_feed_the_next_plugin() {
    let template = |name: &str| {
        file(fixtures::TEMPLATE)
            .with_name(name)
            .with_config(json!({ "blocked": ["****"] }))
    };
    // Masking first: the template sees the stars and refuses.
    let mask_then_block = engine(Slot::Chat, vec![builtin(Slot::Chat), template("template")]);
    assert_eq!(
        code(say(&mask_then_block, "oh shit").unwrap()),
        "blocked_phrase"
    );
    // Template first: it sees the original words, and the masked text is what is stored.
    let block_then_mask = engine(Slot::Chat, vec![template("template"), builtin(Slot::Chat)]);
    assert_eq!(
        say(&block_then_mask, "oh shit").unwrap(),
        ModerationDecision::Allow {
            content: Some("oh ****".into()),
            flags: vec![]
        }
    );
}

#[test]
fn flags_accumulate_in_chain_order() {
    let engine = engine(
        Slot::Chat,
        vec![
            flagging("first", "cheat*", "first says"),
            flagging("second", "cheat*", "second says"),
        ],
    );
    assert_eq!(
        say(&engine, "cheating is fun").unwrap(),
        ModerationDecision::Allow {
            content: None,
            flags: vec!["first says".into(), "second says".into()]
        }
    );
}

fn png_upload(name: &str) -> FilePrecheck {
    FilePrecheck {
        name: name.into(),
        folder: None,
        declared_type: None,
        declared_size: Some(33),
        sniffed_type: None,
        head: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0".to_vec(),
    }
}

#[test]
fn file_corrections_feed_the_next_plugin() {
    // The builtin cuts the path off the name; the panic fixture, next, would panic on the
    // original name, so its calm answer shows it saw the corrected one.
    let engine = engine(
        Slot::Files,
        vec![
            builtin(Slot::Files),
            fixture(fixtures::PANIC, "panicky", FailureMode::FailClosed),
        ],
    );
    let verdict = engine
        .precheck_file_blocking(&ctx(Role::Student), &png_upload("panic/photo.png"))
        .unwrap();
    assert_eq!(
        verdict,
        FileVerdict::Accept {
            folder: Some("images".into()),
            name: Some("photo.png".into())
        }
    );
}

#[test]
fn signal_rewrites_feed_the_next_plugin() {
    let engine = engine(
        Slot::Signaling,
        vec![
            builtin_with(Slot::Signaling, json!({ "hide_host_candidates": true })),
            fixture(fixtures::PANIC, "panicky", FailureMode::FailClosed),
        ],
    );
    let payload = "v=0\na=candidate:1 1 udp 1 10.0.0.1 9 typ host generation panic\na=candidate:2 1 udp 1 203.0.113.9 9 typ srflx\n";
    let input = SignalCheck {
        session_id: "s".into(),
        kind: SignalKind::Offer,
        from: "a".into(),
        to: "b".into(),
        payload: payload.into(),
    };
    match engine
        .check_signal_blocking(&ctx(Role::Student), &input)
        .unwrap()
    {
        SignalVerdict::Rewrite { payload } => assert!(
            !payload.contains("panic") && payload.contains("srflx"),
            "{payload}"
        ),
        other => panic!("{other:?}"),
    }
}

/// One call per slot that makes the panic fixture trap; `allowed` says what the slot
/// answers when the failure is passed over.
fn call_every_slot(engine: &PolicyEngine) -> Vec<(Slot, Result<bool, PolicyFailure>)> {
    let ctx = ctx(Role::Student);
    let chat = engine
        .moderate_blocking(&ctx, &ModerationInput::send("r", "panic now"))
        .map(|d| d == ModerationDecision::allow());
    let precheck = engine
        .precheck_file_blocking(&ctx, &png_upload("panic.png"))
        .map(|v| matches!(v, FileVerdict::Accept { .. }));
    let finish = engine
        .finish_file_blocking(
            &ctx,
            &FileFinish {
                name: "panic.png".into(),
                folder: Some("images".into()),
                declared_type: None,
                size: 10,
                sha256: "0".repeat(64),
                sniffed_type: None,
            },
        )
        .map(|v| matches!(v, FileVerdict::Accept { .. }));
    let join = engine
        .check_join_blocking(
            &ctx,
            &JoinCheck {
                session_id: "panic-room".into(),
                state: SessionState::Live,
                participant_count: 0,
                max_participants: None,
            },
        )
        .map(|v| v == JoinVerdict::Allow);
    let signal = engine
        .check_signal_blocking(
            &ctx,
            &SignalCheck {
                session_id: "s".into(),
                kind: SignalKind::IceCandidate,
                from: "a".into(),
                to: "b".into(),
                payload: "panic".into(),
            },
        )
        .map(|v| v == SignalVerdict::Relay);
    vec![
        (Slot::Chat, chat),
        (Slot::Files, precheck),
        (Slot::Files, finish),
        (Slot::Signaling, join),
        (Slot::Signaling, signal),
    ]
}

fn every_slot_with(
    mode_for_slot: Option<FailureMode>,
    mode_for_plugin: Option<FailureMode>,
) -> PolicyEngine {
    let mut config = only(Slot::Chat, vec![]);
    for slot in Slot::ALL {
        let mut spec = file(fixtures::PANIC).with_name(format!("panicky-{slot}"));
        spec.failure = mode_for_plugin;
        let slot_config = config.slot_mut(slot);
        slot_config.plugins = Some(vec![spec]);
        if let Some(mode) = mode_for_slot {
            slot_config.failure = mode;
        }
    }
    PolicyEngine::builder(config).build().unwrap()
}

#[test]
fn fail_closed_refuses_in_every_slot() {
    for engine in [
        every_slot_with(None, None),
        every_slot_with(Some(FailureMode::FailClosed), None),
        every_slot_with(Some(FailureMode::FailOpen), Some(FailureMode::FailClosed)),
    ] {
        for (slot, result) in call_every_slot(&engine) {
            let failure =
                result.expect_err("a failing fail-closed plugin must not let the request through");
            assert_eq!(failure.slot, slot);
            assert_eq!(failure.kind, FailureKind::Trap);
            assert_eq!(failure.plugin, format!("panicky-{slot}"));
        }
    }
}

#[test]
fn fail_open_allows_in_every_slot() {
    for engine in [
        every_slot_with(Some(FailureMode::FailOpen), None),
        every_slot_with(Some(FailureMode::FailClosed), Some(FailureMode::FailOpen)),
    ] {
        for (slot, result) in call_every_slot(&engine) {
            assert!(result.unwrap_or_else(|e| panic!("{slot}: {e}")), "{slot}");
        }
    }
}

#[test]
fn fail_open_skips_only_the_failing_plugin() {
    let engine = engine(
        Slot::Chat,
        vec![
            fixture(fixtures::PANIC, "panicky", FailureMode::FailOpen),
            rejecting("after", "panic", "still_checked"),
        ],
    );
    assert_eq!(code(say(&engine, "panic").unwrap()), "still_checked");
}

#[test]
fn a_timeout_never_silently_allows_on_a_fail_closed_slot() {
    let mut config = only(
        Slot::Signaling,
        vec![file(fixtures::INFINITE_LOOP).with_name("looper")],
    );
    config.signaling.failure = FailureMode::FailClosed;
    config.limits.deadline_ms = Some(20);
    let engine = PolicyEngine::builder(config).build().unwrap();
    let join = JoinCheck {
        session_id: "loop".into(),
        state: SessionState::Live,
        participant_count: 0,
        max_participants: None,
    };
    let failure = engine
        .check_join_blocking(&ctx(Role::Student), &join)
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout);
    let join = JoinCheck {
        session_id: "calm".into(),
        ..join
    };
    assert_eq!(
        engine
            .check_join_blocking(&ctx(Role::Student), &join)
            .unwrap(),
        JoinVerdict::Allow
    );
}

#[test]
fn reload_swaps_chains_between_calls() {
    let engine = engine(Slot::Chat, vec![builtin(Slot::Chat)]);
    assert_eq!(
        say(&engine, "oh shit").unwrap(),
        ModerationDecision::Allow {
            content: Some("oh ****".into()),
            flags: vec![]
        }
    );
    engine
        .reload(&only(
            Slot::Chat,
            vec![rejecting("strict", "shit", "strict")],
        ))
        .unwrap();
    assert_eq!(code(say(&engine, "oh shit").unwrap()), "strict");
    assert_eq!(
        engine
            .plugins()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["strict"]
    );
    engine.reload(&only(Slot::Chat, vec![])).unwrap();
    assert_eq!(
        say(&engine, "oh shit").unwrap(),
        ModerationDecision::allow()
    );
    // A configuration that fails to load leaves the running chains alone.
    assert!(
        engine
            .reload(&only(Slot::Chat, vec![file(fixtures::WRONG_WORLD)]))
            .is_err()
    );
    assert_eq!(
        say(&engine, "oh shit").unwrap(),
        ModerationDecision::allow()
    );
}
