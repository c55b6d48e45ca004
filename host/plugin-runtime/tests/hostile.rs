//! Hostile plugins: each failure ends one call, is reported as what it is, and leaves the
//! host and the plugin's next call working. Plugins that need more than the engine gives are
//! refused at load with the reason, and a crowd of calls meets backpressure, not a crash.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::wat_plugin::{self, Big};
use common::{builtin, builtin_with, ctx, engine, file, fixture, only};
use lyceum_plugin_runtime::inspect::{self, CheckReason};
use lyceum_plugin_runtime::{
    CallMode, CircuitState, FailureKind, FailureMode, KvError, KvStore, LimitsConfig, LoadError,
    MemoryKv, ModerationDecision, ModerationInput, PluginSource, PluginSpec, PolicyEngine,
    PolicyFailure, Role, Slot, fixtures,
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

#[test]
fn precompiled_native_code_is_refused_as_a_plugin_with_a_clear_reason() {
    let component = std::fs::read(fixtures::TEMPLATE).unwrap();
    let cwasm = wasmtime::Engine::default()
        .precompile_component(&component)
        .unwrap();
    assert!(
        cwasm.starts_with(b"\x7fELF"),
        "wasmtime's artifacts are ELF"
    );

    // Refused on upload, by the static checks, before anything could map it.
    let check = inspect::inspect(&cwasm, Some(Slot::Chat)).unwrap_err();
    assert_eq!(check.reason, CheckReason::NotWasm);
    assert!(
        check.message.contains("precompiled code is never loaded"),
        "{}",
        check.message
    );

    let error = load_error(bytes_plugin("native", cwasm.clone()));
    assert!(
        matches!(error, LoadError::InvalidComponent { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("precompiled"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.cwasm");
    std::fs::write(&path, &cwasm).unwrap();
    let error = load_error(file(path.to_str().unwrap()));
    assert!(
        matches!(error, LoadError::InvalidComponent { .. }),
        "{error:?}"
    );
}

/// A chat plugin given as bytes, fail-closed.
fn bytes_plugin(name: &str, bytes: Vec<u8>) -> PluginSpec {
    PluginSpec::new(PluginSource::Bytes {
        name: name.into(),
        bytes: bytes.into(),
    })
    .with_failure(FailureMode::FailClosed)
}

/// A message with `count` attachments: what sets the text plugins going.
fn attached(count: u32) -> ModerationInput {
    let mut input = ModerationInput::send("room-1", "see attached");
    input.attachment_count = count;
    input
}

fn send(
    engine: &PolicyEngine,
    input: &ModerationInput,
) -> Result<ModerationDecision, PolicyFailure> {
    engine.moderate_blocking(&ctx(Role::Student), input)
}

#[test]
fn unbounded_recursion_hits_the_stack_limit_as_a_trap_and_the_next_call_works() {
    let engine = engine(
        Slot::Chat,
        vec![bytes_plugin("recursive", wat_plugin::recursing())],
    );
    assert_eq!(
        send(&engine, &attached(1_000)).unwrap(),
        ModerationDecision::allow()
    );

    let failure = send(&engine, &attached(u32::MAX)).unwrap_err();
    // A trap, at once: not a timeout, and not the host's stack.
    assert_eq!(failure.kind, FailureKind::Trap, "{failure}");
    assert_eq!(failure.plugin, "recursive");

    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );
    assert_eq!(
        send(&engine, &attached(1_000)).unwrap(),
        ModerationDecision::allow()
    );
}

#[test]
fn the_stack_limit_is_the_configured_one() {
    let with_stack = |kib: u32| {
        let mut config = only(
            Slot::Chat,
            vec![bytes_plugin("recursive", wat_plugin::recursing())],
        );
        config.engine.max_wasm_stack_kib = kib;
        PolicyEngine::builder(config).build().unwrap()
    };
    let small = with_stack(64);
    // The first depth, doubling, that 64 KiB cannot hold.
    let mut depth = 256;
    while send(&small, &attached(depth)).is_ok() {
        depth *= 2;
        assert!(depth < 1 << 24, "64 KiB of stack held {depth} frames");
    }
    assert_eq!(
        send(&small, &attached(depth)).unwrap_err().kind,
        FailureKind::Trap
    );
    // That depth is at most twice what 64 KiB holds; sixteen times the stack holds it.
    let large = with_stack(1024);
    assert_eq!(
        send(&large, &attached(depth)).unwrap(),
        ModerationDecision::allow(),
        "{depth} frames"
    );
}

#[test]
fn components_over_the_engines_caps_are_refused_at_load_with_the_reason() {
    let huge_memory = wat_plugin::chat_plugin(
        "",
        "",
        "(core module $huge (memory 2000)) (core instance (instantiate $huge))",
    );
    let cases = [
        ("wide-table", wat_plugin::table_declarer(1_000_000), "table"),
        ("huge-memory", huge_memory, "memory"),
        (
            "many-instances",
            wat_plugin::instance_multiplier(70),
            "core module instances",
        ),
        (
            "many-memories",
            wat_plugin::memory_multiplier(2),
            "memories",
        ),
    ];
    for (name, bytes, expected) in cases {
        let error = load_error(bytes_plugin(name, bytes));
        assert_eq!(error.reason(), "exceeds_limits", "{name}: {error}");
        match &error {
            LoadError::ExceedsLimits { plugin, reason } => {
                assert_eq!(plugin, name);
                assert!(reason.contains(expected), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("needs more than the engine's limits allow"),
            "{error}"
        );
    }

    // The same shapes within the caps load: what is refused is the size, not the shape.
    for bytes in [
        wat_plugin::table_declarer(1_000),
        wat_plugin::instance_multiplier(4),
        wat_plugin::memory_multiplier(1),
    ] {
        let engine = engine(Slot::Chat, vec![bytes_plugin("modest", bytes)]);
        assert_eq!(
            send(&engine, &attached(0)).unwrap(),
            ModerationDecision::allow()
        );
    }
}

#[test]
fn a_bomb_exporting_no_policy_world_is_refused_before_it_compiles() {
    let bomb = wat::parse_str(
        "(component (core module $m (table 1000000 funcref)) (core instance (instantiate $m)))",
    )
    .unwrap();
    let error = load_error(bytes_plugin("bomb", bomb));
    assert!(matches!(error, LoadError::WrongWorld { .. }), "{error:?}");
    assert!(
        error.to_string().contains("exports no Lyceum policy world"),
        "{error}"
    );
}

#[test]
fn growing_a_table_past_its_cap_fails_the_call_as_memory_and_the_next_call_works() {
    let engine = engine(
        Slot::Chat,
        vec![bytes_plugin("grower", wat_plugin::table_grower())],
    );
    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );
    let failure = send(&engine, &attached(1)).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Memory, "{failure}");
    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );
}

const SIXTEEN_MIB: u32 = 16 << 20;

/// A plugin answering a message with attachments with 16 MiB of text, with `memory_mib`
/// of memory.
fn big_talker(case: Big, memory_mib: u64) -> PolicyEngine {
    engine(
        Slot::Chat,
        vec![
            bytes_plugin("talker", wat_plugin::big_answer(case, SIXTEEN_MIB)).with_limits(
                LimitsConfig {
                    memory_mib: Some(memory_mib),
                    deadline_ms: Some(1_000),
                    ..LimitsConfig::default()
                },
            ),
        ],
    )
}

#[test]
fn a_sixteen_mebibyte_verdict_is_cut_to_size_quickly_and_the_next_call_works() {
    let engine = big_talker(Big::Reject, 32);
    let started = Instant::now();
    let decision = send(&engine, &attached(1)).unwrap();
    let elapsed = started.elapsed();
    match decision {
        ModerationDecision::Reject(refusal) => {
            assert_eq!(refusal.code, "a".repeat(64));
            assert_eq!(refusal.reason, "a".repeat(500));
        }
        other => panic!("{other:?}"),
    }
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );

    // A flag's reason reaches callers cut the same way.
    let engine = big_talker(Big::Flag, 32);
    match send(&engine, &attached(1)).unwrap() {
        ModerationDecision::Allow {
            content: None,
            flags,
        } => assert_eq!(flags, vec!["a".repeat(500)]),
        other => panic!("{other:?}"),
    }

    // A rewrite must pass the host's rules for a message: it is the plugin's failure.
    let engine = big_talker(Big::Rewrite, 32);
    assert_eq!(
        send(&engine, &attached(1)).unwrap_err().kind,
        FailureKind::Invalid
    );
    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );
}

#[test]
fn a_plugin_cannot_hand_the_host_more_than_its_memory_cap() {
    // 16 MiB of answer do not fit in a 16 MiB memory beside the plugin's own data: what the
    // host copies out of a guest is bounded by the guest's memory cap.
    let engine = big_talker(Big::Reject, 16);
    assert_eq!(
        send(&engine, &attached(1)).unwrap_err().kind,
        FailureKind::Memory
    );
    assert_eq!(
        send(&engine, &attached(0)).unwrap(),
        ModerationDecision::allow()
    );
}

/// A store whose counters wait until the test opens it: a call in `kv.incr` holds its
/// instance, and so one of the engine's instance slots, meanwhile.
struct HeldStore {
    inner: MemoryKv,
    open: Mutex<bool>,
    opened: Condvar,
    holding: AtomicUsize,
}

impl HeldStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryKv::new(),
            open: Mutex::new(false),
            opened: Condvar::new(),
            holding: AtomicUsize::new(0),
        })
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn holding(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }
}

impl KvStore for HeldStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, KvError> {
        self.inner.get(namespace, key)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.inner.set(namespace, key, value, ttl)
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        self.holding.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.inner.incr(namespace, key, delta, ttl)
    }
}

/// Instance slots of the engines `held_engine` makes.
const SLOTS: usize = 4;

/// The default chat plugin with a rate limit (it counts every message in `kv`) on an engine
/// of `SLOTS` instance slots.
fn held_engine(store: &Arc<HeldStore>, deadline_ms: u64) -> PolicyEngine {
    let counting = builtin_with(
        Slot::Chat,
        json!({ "rate_limit": { "messages": 1_000_000 } }),
    );
    let mut config = only(Slot::Chat, vec![counting]);
    config.engine.max_instances = SLOTS as u32;
    config.engine.pool_size = 1;
    config.limits.deadline_ms = Some(deadline_ms);
    PolicyEngine::builder(config)
        .kv_store(store.clone())
        .build()
        .unwrap()
}

type Answer = Result<ModerationDecision, PolicyFailure>;

/// Starts `count` calls on threads of their own, each timed.
fn start_calls(
    engine: &PolicyEngine,
    count: usize,
) -> Vec<std::thread::JoinHandle<(Answer, Duration)>> {
    (0..count)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (say(&engine, "hello"), started.elapsed())
            })
        })
        .collect()
}

/// Starts a call per slot and waits until each holds its slot in the store.
fn hold_every_slot(
    engine: &PolicyEngine,
    store: &HeldStore,
) -> Vec<std::thread::JoinHandle<(Answer, Duration)>> {
    let holders = start_calls(engine, SLOTS);
    let started = Instant::now();
    while store.holding() < SLOTS {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {} of {SLOTS} calls got an instance",
            store.holding()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    holders
}

#[test]
fn calls_that_find_every_instance_slot_taken_wait_for_one() {
    let store = HeldStore::new();
    let engine = held_engine(&store, 5_000);
    let holders = hold_every_slot(&engine, &store);
    let waiters = start_calls(&engine, SLOTS);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        store.holding(),
        SLOTS,
        "a waiter found a slot none had freed"
    );

    store.open();
    for holder in holders {
        assert_eq!(
            holder.join().unwrap().0.unwrap(),
            ModerationDecision::allow()
        );
    }
    for waiter in waiters {
        let (answer, took) = waiter.join().unwrap();
        assert_eq!(answer.unwrap(), ModerationDecision::allow());
        assert!(took >= Duration::from_millis(100), "{took:?}");
    }
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.verdicts.get("busy"), None);
}

#[test]
fn a_call_that_waits_its_whole_deadline_for_a_slot_fails_as_busy_and_trips_no_breaker() {
    let store = HeldStore::new();
    let engine = held_engine(&store, 50);
    let holders = hold_every_slot(&engine, &store);
    // More than the breaker's five failures in a row.
    for _ in 0..7 {
        let started = Instant::now();
        let failure = say(&engine, "hello").unwrap_err();
        assert_eq!(failure.kind, FailureKind::Busy, "{failure}");
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "it waited its deadline first: {:?}",
            started.elapsed()
        );
    }
    let stats = &engine.status(Slot::Chat).chain[0].stats;
    assert_eq!(stats.verdicts.get("busy"), Some(&7));
    assert_eq!(
        stats.circuit,
        CircuitState::Closed,
        "a saturated engine is not the plugin's failure"
    );

    store.open();
    for holder in holders {
        assert_eq!(
            holder.join().unwrap().0.unwrap(),
            ModerationDecision::allow()
        );
    }
    assert_eq!(say(&engine, "hello").unwrap(), ModerationDecision::allow());
}

#[test]
fn a_call_on_an_async_worker_fails_as_busy_at_once_instead_of_waiting_for_a_slot() {
    let store = HeldStore::new();
    let engine = held_engine(&store, 5_000);
    let holders = hold_every_slot(&engine, &store);
    // The default call mode runs a fast chain on the caller's thread: an async worker that
    // other tasks share, which must not sleep for five seconds.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let failure = runtime
        .block_on(engine.moderate(&ctx(Role::Student), &ModerationInput::send("room-1", "hi")))
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Busy, "{failure}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the worker waited {:?}",
        started.elapsed()
    );

    store.open();
    for holder in holders {
        assert_eq!(
            holder.join().unwrap().0.unwrap(),
            ModerationDecision::allow()
        );
    }
    // Off the async worker, a call still waits its turn.
    assert_eq!(say(&engine, "hello").unwrap(), ModerationDecision::allow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_calls_each_get_an_answer_and_the_engine_keeps_serving() {
    const CALLS: usize = 2_000;
    for mode in [CallMode::Pool, CallMode::Adaptive] {
        // About a millisecond a call: long enough for the calls to pile up on the blocking
        // threads, far beyond the engine's eight instance slots.
        let slow = file(fixtures::SLOW).with_config(json!({ "iterations": 500_000 }));
        let mut config = only(Slot::Chat, vec![slow]);
        config.engine.max_instances = 8;
        config.engine.pool_size = 2;
        config.engine.call_mode = mode;
        let engine = PolicyEngine::builder(config).build().unwrap();
        let started = Instant::now();
        let calls: Vec<_> = (0..CALLS)
            .map(|n| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let input = ModerationInput::send("room-1", format!("message {n}"));
                    engine.moderate(&ctx(Role::Student), &input).await
                })
            })
            .collect();
        let (mut allowed, mut busy) = (0, 0);
        for call in calls {
            let answer = tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .expect("every call is answered")
                .expect("no call panicked");
            match answer {
                Ok(_) => allowed += 1,
                Err(failure) if failure.kind == FailureKind::Busy => busy += 1,
                Err(failure) => panic!("{mode:?}: {failure}"),
            }
        }
        eprintln!(
            "{mode:?}: {allowed} allowed, {busy} busy in {:?}",
            started.elapsed()
        );
        assert_eq!(allowed + busy, CALLS);
        assert!(allowed > 0, "{mode:?}: every call was refused");
        let stats = &engine.status(Slot::Chat).chain[0].stats;
        assert_eq!(stats.calls, CALLS as u64);
        assert_eq!(stats.circuit, CircuitState::Closed);
        let after = ModerationInput::send("room-1", "still there?");
        assert!(
            engine.moderate(&ctx(Role::Student), &after).await.is_ok(),
            "{mode:?}: the engine serves after the storm"
        );
    }
}

/// Keeps the warnings and errors logged on the thread it is the default subscriber of.
struct LoudLines {
    lines: Arc<Mutex<Vec<String>>>,
    spans: std::sync::atomic::AtomicU64,
}

impl tracing::Subscriber for LoudLines {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Asked each time, so that other threads' subscribers do not decide for this one.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.spans.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.lines.lock().unwrap().push(message.0);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[test]
fn a_plugin_that_traps_on_every_call_is_paused_and_logs_a_bounded_number_of_lines() {
    const CALLS: u64 = 1_000;
    const BREAKER_FAILURES: u32 = 5;
    for mode in [FailureMode::FailClosed, FailureMode::FailOpen] {
        let mut config = only(Slot::Chat, vec![fixture(fixtures::PANIC, "panicky", mode)]);
        config.engine.breaker_failures = BREAKER_FAILURES;
        // No probe during the test: the bound below is that of one backoff.
        config.engine.breaker_backoff_ms = 600_000;
        config.engine.breaker_max_backoff_ms = 600_000;
        let engine = PolicyEngine::builder(config).build().unwrap();

        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = LoudLines {
            lines: lines.clone(),
            spans: Default::default(),
        };
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..CALLS {
                let _ = say(&engine, "please panic");
            }
        });

        let lines = lines.lock().unwrap();
        // One line per failure until the circuit opens, and the line saying it opened.
        assert_eq!(
            lines.len(),
            BREAKER_FAILURES as usize + 1,
            "{mode}: {lines:#?}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("circuit opened"))
                .count(),
            1,
            "{mode}: {lines:#?}"
        );
        let stats = &engine.status(Slot::Chat).chain[0].stats;
        assert_eq!(stats.circuit, CircuitState::Open);
        assert_eq!(
            stats.verdicts.get("trap"),
            Some(&u64::from(BREAKER_FAILURES))
        );
        assert_eq!(
            stats.verdicts.get("circuit_open"),
            Some(&(CALLS - u64::from(BREAKER_FAILURES)))
        );
    }
}
