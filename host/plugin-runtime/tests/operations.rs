//! What operators rely on: chains swapped under load without a failed or skipped call,
//! shadow candidates that are compared and never enforced, a circuit breaker for plugins
//! that keep failing, the host's rules applied to rewrites, pinned hashes, the decision
//! audit, and counters per revision.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{builtin, builtin_with, ctx, file, fixture, only};
use lyceum_plugin_runtime::{
    Activation, CallMode, ChainSpec, CircuitState, Decision, DecisionSink, FailureKind,
    FailureMode, HostRules, LimitsConfig, LoadError, ModerationDecision, ModerationInput,
    PluginSpec, PluginsConfig, PolicyEngine, Role, Slot, fixtures,
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Keeps every decision the engine hands over.
#[derive(Default)]
struct Recorded(Mutex<Vec<Decision>>);

impl DecisionSink for Recorded {
    fn record(&self, decision: Decision) {
        self.0.lock().unwrap().push(decision);
    }
}

impl Recorded {
    fn take(&self) -> Vec<Decision> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn chat_only(chain: Vec<PluginSpec>) -> PluginsConfig {
    only(Slot::Chat, chain)
}

fn build(config: PluginsConfig, audit: &Arc<Recorded>) -> PolicyEngine {
    PolicyEngine::builder(config)
        .audit(audit.clone())
        .build()
        .expect("the engine builds")
}

fn spec(plugins: Vec<PluginSpec>) -> ChainSpec {
    ChainSpec {
        plugins,
        ..ChainSpec::default()
    }
}

fn say(
    engine: &PolicyEngine,
    text: &str,
) -> Result<ModerationDecision, lyceum_plugin_runtime::PolicyFailure> {
    engine.moderate_blocking(&ctx(Role::Student), &ModerationInput::send("room-1", text))
}

/// Version A rejects the marker word, version B flags it: every answer says which one
/// decided.
fn version(rejects: bool) -> PluginSpec {
    let list = if rejects {
        json!({ "name": "a", "action": "reject", "words": ["marker"], "code": "version_a" })
    } else {
        json!({ "name": "b", "action": "flag", "words": ["marker"], "reason": "version_b" })
    };
    builtin_with(Slot::Chat, json!({ "lists": [list] }))
}

#[test]
fn swapping_chains_under_load_never_fails_or_skips_a_call() {
    let engine = build(chat_only(vec![version(true)]), &Arc::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut a, mut b, mut sent) = (0u32, 0u32, 0u32);
                while !stop.load(Ordering::Relaxed) || sent < 200 {
                    let text = format!("marker {sender}-{sent}");
                    match say(&engine, &text).expect("no call fails because of a swap") {
                        ModerationDecision::Reject(r) if r.code == "version_a" => a += 1,
                        ModerationDecision::Allow {
                            content: None,
                            flags,
                        } if flags.len() == 1 => b += 1,
                        other => panic!("{text}: answered by neither version: {other:?}"),
                    }
                    sent += 1;
                }
                (a, b, sent)
            })
        })
        .collect();

    for round in 0..40 {
        let prepared = engine
            .prepare(Slot::Chat, &spec(vec![version(round % 2 == 1)]))
            .unwrap();
        engine.activate(
            prepared,
            Activation {
                revision: round + 2,
                ..Activation::unrecorded()
            },
        );
    }
    stop.store(true, Ordering::Relaxed);

    let (mut a, mut b, mut sent) = (0, 0, 0);
    for sender in senders {
        let (sa, sb, ss) = sender.join().unwrap();
        a += sa;
        b += sb;
        sent += ss;
    }
    assert_eq!(a + b, sent, "every message got exactly one verdict");
    assert!(a > 0 && b > 0, "both versions served: {a} by A, {b} by B");
    assert_eq!(engine.status(Slot::Chat).activation.revision, 41);
}

/// Waits until the shadow candidate has compared `calls` calls.
fn shadow_settles(engine: &PolicyEngine, calls: u64) -> lyceum_plugin_runtime::ShadowStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shadow = engine.status(Slot::Chat).shadow.expect("a shadow runs");
        if shadow.calls >= calls || Instant::now() > deadline {
            return shadow;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_shadow_candidate_is_compared_and_recorded_but_never_enforced() {
    let audit = Arc::new(Recorded::default());
    let engine = build(chat_only(vec![builtin(Slot::Chat)]), &audit);
    let candidate = file(fixtures::TEMPLATE)
        .with_name("strict")
        .with_config(json!({ "blocked": ["hello"] }));
    let prepared = engine
        .prepare_shadow(Slot::Chat, &spec(vec![candidate]))
        .unwrap();
    engine.set_shadow(Slot::Chat, Some(prepared));

    for _ in 0..5 {
        assert_eq!(
            say(&engine, "hello there").unwrap(),
            ModerationDecision::allow()
        );
    }
    assert_eq!(
        say(&engine, "good morning").unwrap(),
        ModerationDecision::allow()
    );
    let shadow = shadow_settles(&engine, 6);
    assert_eq!((shadow.calls, shadow.agree, shadow.disagree), (6, 1, 5));
    let sample = &shadow.samples[0];
    assert_eq!(sample.active.verdict, "allow");
    assert_eq!(sample.shadow.verdict, "reject");
    assert_eq!(sample.shadow.reason.as_deref(), Some("blocked_phrase"));
    assert_eq!(shadow.chain[0].stats.calls, 6);
    assert_eq!(
        engine.status(Slot::Chat).chain[0].stats.calls,
        6,
        "the active chain's counters are its own"
    );

    let decisions = audit.take();
    assert_eq!(
        decisions.len(),
        5,
        "one record per disagreement: {decisions:?}"
    );
    let expected_hash = hex::encode(Sha256::digest(b"hello there"));
    for decision in &decisions {
        assert!(decision.shadow);
        assert_eq!(decision.plugin_name, "strict");
        assert_eq!(decision.verdict, "reject");
        assert_eq!(decision.request_id, "request-1");
        assert_eq!(decision.content_sha256.as_deref(), Some(&*expected_hash));
        assert!(
            !format!("{decision:?}").contains("hello there"),
            "never the content"
        );
    }

    engine.set_shadow(Slot::Chat, None);
    assert!(engine.status(Slot::Chat).shadow.is_none());
}

#[test]
fn a_failing_shadow_changes_nothing_for_the_request() {
    let audit = Arc::new(Recorded::default());
    let engine = build(chat_only(vec![builtin(Slot::Chat)]), &audit);
    let looping = fixture(fixtures::INFINITE_LOOP, "looper", FailureMode::FailClosed).with_limits(
        LimitsConfig {
            deadline_ms: Some(20),
            ..LimitsConfig::default()
        },
    );
    engine.set_shadow(
        Slot::Chat,
        Some(
            engine
                .prepare_shadow(Slot::Chat, &spec(vec![looping]))
                .unwrap(),
        ),
    );
    let started = Instant::now();
    assert_eq!(
        say(&engine, "loop forever").unwrap(),
        ModerationDecision::allow()
    );
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "the request did not wait for the shadow: {:?}",
        started.elapsed()
    );
    let shadow = shadow_settles(&engine, 1);
    assert_eq!(shadow.disagree, 1);
    assert_eq!(shadow.samples[0].shadow.verdict, "unavailable");
    assert_eq!(shadow.samples[0].shadow.reason.as_deref(), Some("timeout"));
    assert_eq!(shadow.chain[0].stats.timeouts, 1);
}

#[test]
fn shadow_plugins_keep_their_own_key_value_namespace() {
    // Three messages a minute: if the shadow counted against the active plugin's counter,
    // the third message would be the fifth count and be refused.
    let limited = || {
        builtin_with(
            Slot::Chat,
            json!({ "rate_limit": { "messages": 3, "window_seconds": 60 } }),
        )
    };
    let engine = build(chat_only(vec![limited()]), &Arc::default());
    engine.set_shadow(
        Slot::Chat,
        Some(
            engine
                .prepare_shadow(Slot::Chat, &spec(vec![limited()]))
                .unwrap(),
        ),
    );
    for n in 1..=3 {
        assert_eq!(
            say(&engine, "hi").unwrap(),
            ModerationDecision::allow(),
            "message {n}"
        );
        shadow_settles(&engine, n);
    }
    let shadow = engine.status(Slot::Chat).shadow.unwrap();
    assert_eq!((shadow.agree, shadow.disagree), (3, 0));
    assert!(
        matches!(say(&engine, "hi").unwrap(), ModerationDecision::Reject(r) if r.code == "rate_limited"),
        "the fourth is over the active plugin's own limit"
    );
}

#[test]
fn a_plugin_that_keeps_failing_is_paused_by_its_circuit() {
    let mut config = chat_only(vec![
        fixture(fixtures::INFINITE_LOOP, "looper", FailureMode::FailOpen).with_limits(
            LimitsConfig {
                deadline_ms: Some(20),
                ..LimitsConfig::default()
            },
        ),
    ]);
    config.engine.breaker_failures = 3;
    config.engine.breaker_backoff_ms = 300;
    let engine = build(config, &Arc::default());
    for _ in 0..3 {
        assert_eq!(say(&engine, "loop").unwrap(), ModerationDecision::allow());
    }
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!((stats.timeouts, stats.circuit), (3, CircuitState::Open));

    // Open: the failure mode applies at once, without calling the plugin.
    let started = Instant::now();
    assert_eq!(say(&engine, "loop").unwrap(), ModerationDecision::allow());
    assert!(
        started.elapsed() < Duration::from_millis(15),
        "{:?}",
        started.elapsed()
    );
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.verdicts.get("circuit_open"), Some(&1));
    assert_eq!(stats.timeouts, 3, "the skipped call did not run");

    // After the backoff one probe decides; a healthy answer closes the circuit.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(say(&engine, "fine").unwrap(), ModerationDecision::allow());
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.circuit, CircuitState::Closed);
    assert_eq!(stats.verdicts.get("allow"), Some(&1));
}

#[test]
fn a_fail_closed_plugin_with_an_open_circuit_refuses_without_being_called() {
    let mut config = chat_only(vec![fixture(
        fixtures::PANIC,
        "panicky",
        FailureMode::FailClosed,
    )]);
    config.engine.breaker_failures = 2;
    let engine = build(config, &Arc::default());
    for _ in 0..2 {
        assert_eq!(say(&engine, "panic").unwrap_err().kind, FailureKind::Trap);
    }
    assert_eq!(
        say(&engine, "harmless").unwrap_err().kind,
        FailureKind::CircuitOpen
    );
}

#[test]
fn a_rewrite_outside_the_hosts_rules_is_a_failure_of_the_plugin() {
    let masking = |failure| {
        builtin_with(
            Slot::Chat,
            json!({ "lists": [{ "name": "mild", "action": "mask", "words": ["darn"] }] }),
        )
        .with_failure(failure)
    };
    let rules = HostRules {
        max_message_chars: 8,
        ..HostRules::default()
    };
    let audit = Arc::new(Recorded::default());
    let strict = PolicyEngine::builder(chat_only(vec![masking(FailureMode::FailClosed)]))
        .host_rules(rules)
        .audit(audit.clone())
        .build()
        .unwrap();
    // "darn it" fits in eight characters, and so does its masked rewrite.
    assert!(matches!(
        say(&strict, "darn it").unwrap(),
        ModerationDecision::Allow {
            content: Some(_),
            ..
        }
    ));
    // The rewrite of a longer message breaks the host's limit: never stored.
    assert_eq!(
        say(&strict, "oh darn it").unwrap_err().kind,
        FailureKind::Invalid
    );
    let decisions = audit.take();
    assert_eq!(
        decisions
            .iter()
            .map(|d| d.verdict.as_str())
            .collect::<Vec<_>>(),
        ["rewrite", "invalid"]
    );

    let lenient = PolicyEngine::builder(chat_only(vec![masking(FailureMode::FailOpen)]))
        .host_rules(rules)
        .build()
        .unwrap();
    assert_eq!(
        say(&lenient, "oh darn it").unwrap(),
        ModerationDecision::allow()
    );
}

#[test]
fn a_pinned_hash_refuses_other_bytes() {
    let bytes = std::fs::read(fixtures::TEMPLATE).unwrap();
    let right = hex::encode(Sha256::digest(&bytes));
    let wrong = "0".repeat(64);
    let result = PolicyEngine::builder(chat_only(vec![
        file(fixtures::TEMPLATE).with_sha256(&wrong),
    ]))
    .build();
    match result {
        Err(LoadError::HashMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (wrong, right.clone()));
        }
        other => panic!("{:?}", other.err()),
    }
    let engine = PolicyEngine::builder(chat_only(vec![
        file(fixtures::TEMPLATE).with_sha256(right.to_uppercase()),
    ]))
    .build()
    .unwrap();
    assert_eq!(engine.status(Slot::Chat).chain[0].sha256, right);
}

#[test]
fn refusals_are_audited_with_ids_and_a_hash_never_the_content() {
    let audit = Arc::new(Recorded::default());
    let engine = build(chat_only(vec![version(true)]), &audit);
    let mut ctx = ctx(Role::Student);
    ctx.request_id = "req-42".into();
    ctx.room_id = Some("room-9".into());
    let mut input = ModerationInput::send("room-9", "a marker here");
    input.message_id = Some("message-7".into());
    assert!(matches!(
        engine.moderate_blocking(&ctx, &input).unwrap(),
        ModerationDecision::Reject(_)
    ));
    assert_eq!(
        say(&engine, "nothing to see").unwrap(),
        ModerationDecision::allow()
    );
    let decisions = audit.take();
    assert_eq!(decisions.len(), 1, "allowed calls are not audited");
    let d = &decisions[0];
    assert_eq!(
        (d.verdict.as_str(), d.reason.as_deref(), d.shadow),
        ("reject", Some("version_a"), false)
    );
    assert_eq!(d.request_id, "req-42");
    assert_eq!(d.actor_id, "student-1");
    assert_eq!(d.course_id.as_deref(), Some("course-1"));
    assert_eq!(d.room_id.as_deref(), Some("room-9"));
    assert_eq!(d.subject_id.as_deref(), Some("message-7"));
    assert_eq!(d.plugin_name, "chat-moderation");
    assert_eq!(d.plugin_sha256, engine.status(Slot::Chat).chain[0].sha256);
    assert_eq!(
        d.content_sha256.as_deref(),
        Some(&*hex::encode(Sha256::digest(b"a marker here")))
    );
}

#[test]
fn counters_start_again_with_each_activation() {
    let engine = build(chat_only(vec![version(true)]), &Arc::default());
    for _ in 0..3 {
        say(&engine, "marker").unwrap();
    }
    say(&engine, "plain").unwrap();
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.calls, 4);
    assert_eq!(stats.verdicts.get("reject"), Some(&3));
    assert!(
        stats.p50_us > 0 && stats.p99_us >= stats.p50_us,
        "{stats:?}"
    );

    let prepared = engine
        .prepare(Slot::Chat, &spec(vec![version(false)]))
        .unwrap();
    engine.activate(
        prepared,
        Activation {
            revision: 7,
            activated_by: Some("admin-1".into()),
            ..Activation::unrecorded()
        },
    );
    let status = engine.status(Slot::Chat);
    assert_eq!(status.activation.revision, 7);
    assert_eq!(status.activation.activated_by.as_deref(), Some("admin-1"));
    assert_eq!(status.chain[0].stats.calls, 0);
}

#[test]
fn a_chain_that_cannot_be_prepared_leaves_the_active_one_serving() {
    let engine = build(chat_only(vec![version(true)]), &Arc::default());
    let refused = engine.prepare(Slot::Chat, &spec(vec![file(fixtures::WASI_FILESYSTEM)]));
    assert!(matches!(refused, Err(LoadError::ForbiddenImport { .. })));
    assert_eq!(refused.err().unwrap().reason(), "forbidden_import");
    assert!(matches!(
        say(&engine, "marker").unwrap(),
        ModerationDecision::Reject(_)
    ));
}

#[test]
fn compiled_code_is_kept_only_while_a_revision_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_only(vec![builtin(Slot::Chat), file(fixtures::TEMPLATE)]);
    config.engine.max_instances = 32;
    let engine = PolicyEngine::builder(config)
        .cache_dir(dir.path())
        .cache_key("the secret of this host, 32 bytes or more")
        .build()
        .unwrap();
    let template = engine.status(Slot::Chat).chain[1].sha256.clone();
    let cached = || -> HashSet<String> {
        dir.path()
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy()[..64].to_owned())
            .collect()
    };
    assert!(cached().contains(&template));

    engine.activate(
        engine
            .prepare(Slot::Chat, &spec(vec![builtin(Slot::Chat)]))
            .unwrap(),
        Activation::unrecorded(),
    );
    engine.retain_compiled(&HashSet::from([template.clone()]));
    assert!(cached().contains(&template), "a revision still names it");
    engine.retain_compiled(&HashSet::new());
    assert!(
        !cached().contains(&template),
        "no revision names it any more"
    );
    assert_eq!(cached().len(), 1, "the serving builtin stays");
}

fn looping_engine(mode: CallMode) -> PolicyEngine {
    let mut config = chat_only(vec![
        fixture(fixtures::INFINITE_LOOP, "looper", FailureMode::FailOpen).with_limits(
            LimitsConfig {
                deadline_ms: Some(300),
                ..LimitsConfig::default()
            },
        ),
    ]);
    config.engine.call_mode = mode;
    config.engine.breaker_failures = 0;
    PolicyEngine::builder(config).build().unwrap()
}

/// Starts four looping calls and meanwhile measures how late a 5 ms sleep wakes up on the
/// same (single) async thread.
async fn worst_lateness_while_looping(engine: &PolicyEngine) -> Duration {
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .moderate(&ctx(Role::Student), &ModerationInput::send("r", "loop"))
                    .await
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        worst = worst.max(asked.elapsed());
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), ModerationDecision::allow());
    }
    worst
}

#[tokio::test(flavor = "current_thread")]
async fn in_pool_mode_a_looping_plugin_never_holds_the_async_thread() {
    let engine = looping_engine(CallMode::Pool);
    let worst = worst_lateness_while_looping(&engine).await;
    assert!(
        worst < Duration::from_millis(150),
        "a 5 ms sleep took {worst:?} while plugins looped"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn in_adaptive_mode_a_plugin_slow_once_is_moved_off_the_async_thread() {
    let engine = looping_engine(CallMode::Adaptive);
    // The first slow call runs where it was made (fast plugins cost no thread hop) and
    // holds this thread up to its deadline...
    let started = Instant::now();
    let first = engine
        .moderate(&ctx(Role::Student), &ModerationInput::send("r", "loop"))
        .await;
    assert_eq!(first.unwrap(), ModerationDecision::allow());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // ...and from then on the plugin's calls run on the blocking pool.
    let worst = worst_lateness_while_looping(&engine).await;
    assert!(
        worst < Duration::from_millis(150),
        "a 5 ms sleep took {worst:?} while plugins looped"
    );
}

#[test]
fn plugin_state_in_the_store_survives_a_swap() {
    // Two messages a minute, counted in the store under the plugin's name: the new chain's
    // plugin of the same name sees the count the old one left.
    let limited = |lists: serde_json::Value| {
        builtin_with(
            Slot::Chat,
            json!({ "rate_limit": { "messages": 2, "window_seconds": 60 }, "lists": lists }),
        )
    };
    let engine = build(chat_only(vec![limited(json!([]))]), &Arc::default());
    for _ in 0..2 {
        assert_eq!(say(&engine, "hi").unwrap(), ModerationDecision::allow());
    }
    let prepared = engine
        .prepare(
            Slot::Chat,
            &spec(vec![limited(
                json!([{ "name": "x", "action": "flag", "words": ["zebra"] }]),
            )]),
        )
        .unwrap();
    engine.activate(prepared, Activation::unrecorded());
    assert!(
        matches!(say(&engine, "hi").unwrap(), ModerationDecision::Reject(r) if r.code == "rate_limited"),
        "the third message in the window is over the limit, swap or not"
    );
}
