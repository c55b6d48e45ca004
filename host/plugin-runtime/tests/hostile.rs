//! Hostile plugins: each failure ends one call, is reported as what it is, and leaves the
//! host and the plugin's next call working.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builtin, builtin_with, ctx, engine, file, fixture, only};
use lyceum_plugin_runtime::{
    FailureKind, FailureMode, KvError, KvStore, LimitsConfig, LoadError, MemoryKv,
    ModerationDecision, ModerationInput, PluginSource, PluginSpec, PolicyEngine, PolicyFailure,
    Role, Slot, fixtures,
};
use serde_json::json;

fn say(engine: &PolicyEngine, text: &str) -> Result<ModerationDecision, PolicyFailure> {
    engine.moderate_blocking(&ctx(Role::Student), &ModerationInput::send("room-1", text))
}

fn load_error(spec: PluginSpec) -> LoadError {
    match PolicyEngine::builder(only(Slot::Chat, vec![spec])).build() {
        Ok(_) => panic!("the plugin was accepted"),
        Err(e) => e,
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline_and_the_next_call_works() {
    let deadline = Duration::from_millis(30);
    let spec = fixture(fixtures::INFINITE_LOOP, "looper", FailureMode::FailClosed).with_limits(
        LimitsConfig {
            deadline_ms: Some(30),
            ..LimitsConfig::default()
        },
    );
    let engine = engine(Slot::Chat, vec![spec]);
    assert_eq!(say(&engine, "hello").unwrap(), ModerationDecision::allow());

    let started = Instant::now();
    let failure = say(&engine, "loop forever").unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(failure.plugin, "looper");
    assert!(elapsed >= deadline, "interrupted early, after {elapsed:?}");
    // The deadline, one 5 ms epoch tick and the 10 ms grace period in which the runaway is
    // seen using the CPU, plus room for a busy machine's scheduler.
    assert!(
        elapsed < deadline + Duration::from_millis(250),
        "interrupted late, after {elapsed:?}"
    );

    let started = Instant::now();
    assert_eq!(
        say(&engine, "hello again").unwrap(),
        ModerationDecision::allow()
    );
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "the next call was slow: {:?}",
        started.elapsed()
    );
}

/// A store that answers slowly, as a thread kept off the CPU would: wall time passes while
/// the plugin does not run.
struct SlowStore(MemoryKv);

impl KvStore for SlowStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError> {
        self.0.get(namespace, key)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.0.set(namespace, key, value, ttl)
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        std::thread::sleep(Duration::from_millis(120));
        self.0.incr(namespace, key, delta, ttl)
    }
}

#[test]
fn time_not_spent_running_is_not_a_timeout() {
    // The default plugin touches the store only for a configured rate limit.
    let limited = builtin_with(Slot::Chat, json!({ "rate_limit": {} }));
    let mut config = only(Slot::Chat, vec![limited]);
    config.limits.deadline_ms = Some(30);
    let engine = PolicyEngine::builder(config)
        .kv_store(Arc::new(SlowStore(MemoryKv::new())))
        .build()
        .unwrap();
    let started = Instant::now();
    // The rate limit's counter takes 120 ms, four deadlines, but the plugin itself needs
    // microseconds once it runs again: it is not mistaken for a runaway.
    assert_eq!(say(&engine, "hello").unwrap(), ModerationDecision::allow());
    assert!(started.elapsed() >= Duration::from_millis(120));
}

#[test]
fn fuel_stops_a_loop_when_configured() {
    let spec = fixture(fixtures::INFINITE_LOOP, "looper", FailureMode::FailClosed).with_limits(
        LimitsConfig {
            deadline_ms: Some(10_000),
            fuel: Some(5_000_000),
            ..LimitsConfig::default()
        },
    );
    let engine = engine(Slot::Chat, vec![spec]);
    let started = Instant::now();
    assert_eq!(say(&engine, "loop").unwrap_err().kind, FailureKind::Fuel);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fuel did not stop it: {:?}",
        started.elapsed()
    );
    assert_eq!(say(&engine, "fine").unwrap(), ModerationDecision::allow());
}

#[test]
fn a_memory_bomb_hits_its_cap() {
    let spec =
        fixture(fixtures::MEMORY_BOMB, "bomb", FailureMode::FailClosed).with_limits(LimitsConfig {
            memory_mib: Some(8),
            deadline_ms: Some(2_000),
            ..LimitsConfig::default()
        });
    let engine = engine(Slot::Chat, vec![spec]);
    let failure = say(&engine, "bomb").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Memory, "{failure}");
    assert_eq!(
        say(&engine, "harmless").unwrap(),
        ModerationDecision::allow()
    );
}

#[test]
fn a_panic_is_an_error_and_the_host_carries_on() {
    let engine = engine(
        Slot::Chat,
        vec![fixture(fixtures::PANIC, "panicky", FailureMode::FailClosed)],
    );
    for round in 0..3 {
        let failure = say(&engine, "please panic").unwrap_err();
        assert_eq!(failure.kind, FailureKind::Trap, "round {round}");
        assert_eq!(
            say(&engine, "calm").unwrap(),
            ModerationDecision::allow(),
            "round {round}"
        );
    }
}

#[test]
fn slow_but_within_limits_is_allowed() {
    let slow = |iterations: u64, deadline_ms: u64| {
        file(fixtures::SLOW)
            .with_config(json!({ "iterations": iterations }))
            .with_limits(LimitsConfig {
                deadline_ms: Some(deadline_ms),
                ..LimitsConfig::default()
            })
    };
    let engine = engine(Slot::Chat, vec![slow(3_000_000, 2_000)]);
    let started = Instant::now();
    assert_eq!(
        say(&engine, "take your time").unwrap(),
        ModerationDecision::allow()
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_millis(1),
        "the fixture did no real work ({elapsed:?})"
    );

    // The same work with a deadline shorter than it needs is interrupted: the limit, not
    // luck, is what let the call above through. It is interrupted before it takes any
    // traffic: the smoke call made with its configuration at load runs out of time.
    let strict = PolicyEngine::builder(only(Slot::Chat, vec![slow(3_000_000_000, 10)])).build();
    assert!(
        matches!(
            strict,
            Err(LoadError::ConfigRejected {
                kind: FailureKind::Timeout,
                ..
            })
        ),
        "{:?}",
        strict.err()
    );
}

#[test]
fn a_wasi_filesystem_importer_is_refused_at_load_naming_the_import() {
    match load_error(file(fixtures::WASI_FILESYSTEM)) {
        LoadError::ForbiddenImport { plugin, imports } => {
            assert_eq!(plugin, "fixture_wasi_filesystem");
            assert!(
                imports
                    .iter()
                    .any(|i| i.starts_with("wasi:filesystem/types@0.2")),
                "{imports:?}"
            );
            assert!(
                imports
                    .iter()
                    .any(|i| i.starts_with("wasi:filesystem/preopens@0.2")),
                "{imports:?}"
            );
            // Only the refused imports are named, not the inert ones linked to traps.
            assert!(
                imports
                    .iter()
                    .all(|i| !i.starts_with("wasi:io/") && !i.starts_with("wasi:cli/")),
                "{imports:?}"
            );
        }
        other => panic!("{other}"),
    }
    let message = load_error(file(fixtures::WASI_FILESYSTEM)).to_string();
    assert!(message.contains("wasi:filesystem/"), "{message}");
}

#[test]
fn a_component_of_another_world_is_refused_with_a_clear_error() {
    let error = load_error(file(fixtures::WRONG_WORLD));
    assert!(
        matches!(
            error,
            LoadError::WrongWorld {
                world: "chat-moderation",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("lyceum:policy/chat-moderation"),
        "{message}"
    );
    assert!(
        message.contains("lyceum:policy/moderation@0.1.0"),
        "{message}"
    );

    // A builtin of another slot is the same mistake, caught before any loading.
    let mut config = only(Slot::Chat, vec![builtin(Slot::Files)]);
    config.files.plugins = Some(vec![]);
    let error = PolicyEngine::builder(config)
        .build()
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("cannot run in the chat slot"),
        "{error}"
    );
}

#[test]
fn corrupt_files_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(fixtures::TEMPLATE).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage.wasm",
            b"this is not webassembly at all".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "truncated.wasm",
            real[..real.len() / 2].to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "flipped.wasm",
            real.iter()
                .enumerate()
                .map(|(i, b)| if i > 64 && i % 97 == 0 { !b } else { *b })
                .collect(),
            "not a valid WebAssembly component",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let error = load_error(file(path.to_str().unwrap()));
        assert!(
            matches!(error, LoadError::InvalidComponent { .. }),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }

    // A core module is WebAssembly, but of no policy world unless it is an Extism plugin.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let error = load_error(file(core.to_str().unwrap()));
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error:?}");
    assert!(error.to_string().contains("wasm32-wasip2"), "{error}");
    assert!(error.to_string().contains("`moderate`"), "{error}");

    let missing = load_error(file(dir.path().join("absent.wasm").to_str().unwrap()));
    assert!(matches!(missing, LoadError::Io { .. }), "{missing:?}");

    let in_memory = PluginSpec::new(PluginSource::Bytes {
        name: "blob".into(),
        bytes: b"\0\0\0\0".to_vec().into(),
    });
    assert!(
        matches!(load_error(in_memory), LoadError::InvalidComponent { plugin, .. } if plugin == "blob")
    );
}
