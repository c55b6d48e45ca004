//! Extism modules as a second ABI: the same slots, limits, failure modes, stats, swaps,
//! shadow runs and audit as components, with the WIT values as JSON and `log`/`kv` as host
//! functions over the same store.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{builtin_with, ctx, engine, fixture, only};
use lyceum_plugin_runtime::{
    ChainSpec, Decision, DecisionSink, FailureKind, FailureMode, FileFinish, FilePrecheck,
    FileVerdict, JoinCheck, JoinVerdict, KvStore, LimitsConfig, LoadError, MemoryKv,
    ModerationDecision, ModerationInput, PluginSpec, PolicyEngine, PolicyFailure, Role,
    SessionState, SignalCheck, SignalKind, SignalVerdict, Slot, fixtures,
};
use serde_json::json;

fn say(engine: &PolicyEngine, text: &str) -> Result<ModerationDecision, PolicyFailure> {
    engine.moderate_blocking(&ctx(Role::Student), &ModerationInput::send("room-1", text))
}

fn sample(blocked: &[&str]) -> PluginSpec {
    fixture(fixtures::EXTISM_SAMPLE, "sample", FailureMode::FailClosed)
        .with_config(json!({ "blocked": blocked }))
}

fn hostile(limits: LimitsConfig) -> PluginSpec {
    fixture(fixtures::EXTISM_HOSTILE, "hostile", FailureMode::FailClosed).with_limits(limits)
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Decision>>);

impl DecisionSink for Recorded {
    fn record(&self, decision: Decision) {
        self.0.lock().unwrap().push(decision);
    }
}

#[test]
fn the_sample_refuses_its_blocked_phrases_and_counts_them_in_the_shared_store() {
    let kv = Arc::new(MemoryKv::new());
    let engine = PolicyEngine::builder(only(Slot::Chat, vec![sample(&["buy followers"])]))
        .kv_store(kv.clone())
        .build()
        .expect("the sample loads");
    assert_eq!(
        say(&engine, "Hello, class.").unwrap(),
        ModerationDecision::allow()
    );
    for n in 1..=2 {
        match say(&engine, "Cheap! BUY FOLLOWERS now").unwrap() {
            ModerationDecision::Reject(refusal) => {
                assert_eq!(refusal.code, "blocked_phrase");
                assert_eq!(refusal.reason, "This message contains a blocked phrase.");
            }
            other => panic!("not refused: {other:?}"),
        }
        // The plugin's key space is its name, as for components.
        assert_eq!(kv.get("sample", "refused").unwrap(), Some(n.to_string()));
    }

    let status = engine.status(Slot::Chat);
    let plugin = &status.chain[0];
    assert_eq!(plugin.abi, "extism");
    assert_eq!(plugin.wit_version, "0.1.0");
    assert_eq!(plugin.stats.calls, 3);
    assert_eq!(plugin.stats.verdicts.get("reject"), Some(&2));
    assert_eq!(plugin.stats.verdicts.get("allow"), Some(&1));
}

#[test]
fn a_hostile_module_exports_every_world_and_answers_in_each_slot() {
    let every_slot = |slot| hostile(LimitsConfig::default()).with_name(format!("hostile-{slot}"));
    let mut config = only(Slot::Chat, vec![every_slot(Slot::Chat)]);
    config.slot_mut(Slot::Files).plugins = Some(vec![every_slot(Slot::Files)]);
    config.slot_mut(Slot::Signaling).plugins = Some(vec![every_slot(Slot::Signaling)]);
    let engine = PolicyEngine::builder(config)
        .build()
        .expect("loads in every slot");
    let ctx = ctx(Role::Student);

    // `count` makes the module increment a counter through `lyceum_kv` and answer with it.
    for expected in ["1", "2"] {
        match say(&engine, "count me").unwrap() {
            ModerationDecision::Allow { content, .. } => {
                assert_eq!(content.as_deref(), Some(expected));
            }
            other => panic!("{other:?}"),
        }
    }

    let upload = FilePrecheck {
        name: "notes.txt".into(),
        folder: None,
        declared_type: Some("text/plain".into()),
        declared_size: Some(5),
        sniffed_type: None,
        head: b"hello".to_vec(),
    };
    assert_eq!(
        engine.precheck_file_blocking(&ctx, &upload).unwrap(),
        FileVerdict::Accept {
            folder: None,
            name: None
        }
    );
    let done = FileFinish {
        name: "notes.txt".into(),
        folder: None,
        declared_type: None,
        size: 5,
        sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
        sniffed_type: None,
    };
    assert!(matches!(
        engine.finish_file_blocking(&ctx, &done).unwrap(),
        FileVerdict::Accept { .. }
    ));
    let join = JoinCheck {
        session_id: "session-1".into(),
        state: SessionState::Live,
        participant_count: 1,
        max_participants: None,
    };
    assert_eq!(
        engine.check_join_blocking(&ctx, &join).unwrap(),
        JoinVerdict::Allow
    );
    let signal = SignalCheck {
        session_id: "session-1".into(),
        kind: SignalKind::IceCandidate,
        from: "a".into(),
        to: "b".into(),
        payload: r#"{"candidate":"x"}"#.into(),
    };
    assert_eq!(
        engine.check_signal_blocking(&ctx, &signal).unwrap(),
        SignalVerdict::Relay
    );
}

#[test]
fn a_runaway_is_stopped_at_the_deadline_and_the_next_call_works() {
    let engine = engine(
        Slot::Chat,
        vec![hostile(LimitsConfig {
            deadline_ms: Some(50),
            ..LimitsConfig::default()
        })],
    );
    let started = Instant::now();
    let failure = say(&engine, "loop forever").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(failure.plugin, "hostile");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(50),
        "interrupted early, after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "interrupted late, after {elapsed:?}"
    );
    assert_eq!(say(&engine, "calm").unwrap(), ModerationDecision::allow());
}

#[test]
fn fuel_memory_panics_and_errors_are_each_reported_as_what_they_are() {
    let fuel = engine(
        Slot::Chat,
        vec![hostile(LimitsConfig {
            deadline_ms: Some(10_000),
            fuel: Some(5_000_000),
            ..LimitsConfig::default()
        })],
    );
    assert_eq!(say(&fuel, "loop").unwrap_err().kind, FailureKind::Fuel);
    assert_eq!(say(&fuel, "calm").unwrap(), ModerationDecision::allow());

    let memory = engine(
        Slot::Chat,
        vec![hostile(LimitsConfig {
            memory_mib: Some(8),
            deadline_ms: Some(2_000),
            ..LimitsConfig::default()
        })],
    );
    assert_eq!(say(&memory, "bomb").unwrap_err().kind, FailureKind::Memory);
    assert_eq!(say(&memory, "calm").unwrap(), ModerationDecision::allow());

    let other = engine(Slot::Chat, vec![hostile(LimitsConfig::default())]);
    assert_eq!(say(&other, "panic").unwrap_err().kind, FailureKind::Trap);
    assert_eq!(say(&other, "error").unwrap_err().kind, FailureKind::Trap);
    assert_eq!(say(&other, "calm").unwrap(), ModerationDecision::allow());
    let stats = &other.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.errors, 2);
}

#[test]
fn a_fail_open_extism_plugin_is_passed_over_when_it_fails() {
    let open = fixture(fixtures::EXTISM_HOSTILE, "hostile", FailureMode::FailOpen);
    let engine = engine(Slot::Chat, vec![open]);
    assert_eq!(say(&engine, "panic").unwrap(), ModerationDecision::allow());
}

#[test]
fn a_configuration_the_module_cannot_use_is_refused_at_load() {
    // The sample logs and ignores a `blocked` that is not a list, so its smoke call passes;
    // the hostile module fails its smoke call when its configuration asks it to.
    let spec = sample(&[]).with_config(json!({ "blocked": "not a list" }));
    assert!(
        PolicyEngine::builder(only(Slot::Chat, vec![spec]))
            .build()
            .is_ok()
    );
    let error = PolicyEngine::builder(only(
        Slot::Chat,
        vec![hostile(LimitsConfig::default()).with_config(json!({ "mode": "panic" }))],
    ))
    .build()
    .map(drop)
    .unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::ConfigRejected {
                kind: FailureKind::Trap,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn chains_swap_between_a_component_and_an_extism_module_and_keep_their_store() {
    let kv = Arc::new(MemoryKv::new());
    let component = builtin_with(
        Slot::Chat,
        json!({ "lists": [{ "name": "c", "action": "reject", "words": ["marker"], "code": "component" }] }),
    );
    let engine = PolicyEngine::builder(only(Slot::Chat, vec![component.clone()]))
        .kv_store(kv.clone())
        .build()
        .unwrap();
    let code = |engine: &PolicyEngine| match say(engine, "marker buy followers").unwrap() {
        ModerationDecision::Reject(refusal) => refusal.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(&engine), "component");

    let extism = ChainSpec {
        plugins: vec![sample(&["buy followers"])],
        ..ChainSpec::default()
    };
    let prepared = engine.prepare(Slot::Chat, &extism).unwrap();
    engine.activate(prepared, lyceum_plugin_runtime::Activation::unrecorded());
    assert_eq!(code(&engine), "blocked_phrase");
    kv.set("sample", "kept", "yes", None).unwrap();

    let back = ChainSpec {
        plugins: vec![component],
        ..ChainSpec::default()
    };
    let prepared = engine.prepare(Slot::Chat, &back).unwrap();
    engine.activate(prepared, lyceum_plugin_runtime::Activation::unrecorded());
    assert_eq!(code(&engine), "component");
    assert_eq!(kv.get("sample", "kept").unwrap().as_deref(), Some("yes"));
}

#[test]
fn an_extism_candidate_runs_in_shadow_and_its_refusals_are_audited_not_enforced() {
    let audit = Arc::new(Recorded::default());
    let engine = PolicyEngine::builder(only(
        Slot::Chat,
        vec![builtin_with(Slot::Chat, json!({ "lists": [] }))],
    ))
    .audit(audit.clone())
    .build()
    .unwrap();
    let candidate = ChainSpec {
        plugins: vec![sample(&["buy followers"])],
        ..ChainSpec::default()
    };
    engine.set_shadow(
        Slot::Chat,
        Some(engine.prepare_shadow(Slot::Chat, &candidate).unwrap()),
    );
    assert_eq!(
        say(&engine, "buy followers here").unwrap(),
        ModerationDecision::allow(),
        "a shadow is never enforced"
    );
    // The shadow runs after the answer, on a queue of its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shadow = engine.status(Slot::Chat).shadow.expect("a shadow runs");
        if shadow.disagree == 1 {
            assert_eq!(shadow.chain[0].abi, "extism");
            break;
        }
        assert!(Instant::now() < deadline, "the shadow never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let decisions = audit.0.lock().unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d.shadow && d.verdict == "reject" && d.plugin_name == "sample"),
        "{decisions:?}"
    );
}
