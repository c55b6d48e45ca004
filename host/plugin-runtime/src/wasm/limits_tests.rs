//! The engine's own limits, shown on components the public API would refuse before they
//! reach it (they export no policy world): the pooling allocator's per-component caps
//! refuse them when they compile, a store's limiter stops a table or the stack from growing
//! at run time, and the pool's size makes an extra instance fail in a way calls can wait on.
//! Each test uses the engine configuration plugins run under.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use super::caps::{self, CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLE_ELEMENTS};
use super::deadline::Overtime;
use super::host::{HostState, PluginData};
use super::{classify, new_engine, plugin_store, slots};
use crate::config::EngineConfig;
use crate::error::FailureKind;
use crate::kv::MemoryKv;

const MAX_INSTANCES: u32 = 4;
const MEMORY_BYTES: usize = 16 << 20;
/// No epoch ticker runs here, so no deadline is ever reached.
const DEADLINE_TICKS: u64 = 1_000;

fn engine() -> Engine {
    let config = EngineConfig {
        max_instances: MAX_INSTANCES,
        ..EngineConfig::default()
    };
    new_engine(&config, false).expect("the engine starts")
}

fn compile(engine: &Engine, text: &str) -> wasmtime::Result<Component> {
    Component::new(
        engine,
        wat::parse_str(text).expect("the test component assembles"),
    )
}

/// The reason the engine gives for refusing `text`, which must be a cap of the pool.
fn refusal(text: &str) -> String {
    let error = match compile(&engine(), text) {
        Ok(_) => panic!("the engine compiled a component over its caps"),
        Err(error) => error,
    };
    assert!(
        caps::over_pool_caps(&error),
        "refused, but not as over a cap: {error:#}"
    );
    format!("{error:#}")
}

/// A store like a plugin instance's.
fn store(engine: &Engine) -> Store<HostState> {
    let data = Arc::new(PluginData {
        name: "test".into(),
        config_json: "{}".into(),
        config_values: HashMap::new(),
    });
    let state = HostState::new(
        data,
        Arc::new(MemoryKv::new()),
        MEMORY_BYTES,
        Overtime::new(DEADLINE_TICKS, std::time::Duration::from_millis(5)),
    );
    plugin_store(engine, state, DEADLINE_TICKS)
}

/// A component instantiating `module` `count` times.
fn repeated(module: &str, count: u32) -> String {
    let instances = "(core instance (instantiate $m))\n".repeat(count as usize);
    format!("(component (core module $m {module}) {instances})")
}

#[test]
fn a_table_declared_over_the_element_cap_does_not_compile() {
    let reason = refusal(&repeated(
        &format!("(table {} funcref)", TABLE_ELEMENTS + 1),
        1,
    ));
    assert!(reason.contains("table"), "{reason}");
}

#[test]
fn a_memory_declared_over_the_engine_ceiling_does_not_compile() {
    // 2,000 pages are 125 MiB; the engine's ceiling is 64 MiB.
    let reason = refusal(&repeated("(memory 2000)", 1));
    assert!(reason.contains("memory"), "{reason}");
}

#[test]
fn too_many_core_instances_in_one_component_do_not_compile() {
    let reason = refusal(&repeated("", CORE_INSTANCES_PER_COMPONENT + 1));
    assert!(reason.contains("core module instances"), "{reason}");
    compile(&engine(), &repeated("", CORE_INSTANCES_PER_COMPONENT))
        .expect("as many as the cap compile");
}

#[test]
fn too_many_memories_in_one_component_do_not_compile() {
    let reason = refusal(&repeated("(memory 1)", MEMORIES_PER_COMPONENT + 1));
    assert!(reason.contains("memories"), "{reason}");
}

#[test]
fn too_many_tables_in_one_component_do_not_compile() {
    let reason = refusal(&repeated(
        "(table 1 funcref)",
        caps::TABLES_PER_COMPONENT + 1,
    ));
    assert!(reason.contains("tables"), "{reason}");
}

/// Exports `grow(n)`, which grows a table of one element by `n` and returns what
/// `table.grow` gave.
const TABLE_GROWER: &str = r#"
(component
  (core module $m
    (table $t 1 funcref)
    (func (export "grow") (param i32) (result i32)
      (table.grow $t (ref.null func) (local.get 0))))
  (core instance $i (instantiate $m))
  (func (export "grow") (param "n" u32) (result s32)
    (canon lift (core func $i "grow"))))
"#;

#[test]
fn growing_a_table_past_the_cap_traps_and_is_reported_as_memory() {
    let engine = engine();
    let component = compile(&engine, TABLE_GROWER).unwrap();
    let mut store = store(&engine);
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &component)
        .unwrap();
    let grow = instance
        .get_typed_func::<(u32,), (i32,)>(&mut store, "grow")
        .unwrap();

    let (old,) = grow.call(&mut store, (100,)).unwrap();
    assert_eq!(old, 1, "growth within the cap is allowed");
    assert!(!store.data().grow_refused());

    let error = grow
        .call(&mut store, (TABLE_ELEMENTS as u32,))
        .expect_err("growth past the cap traps");
    assert!(store.data().grow_refused(), "{error:#}");
    assert_eq!(classify(&error, store.data()), FailureKind::Memory);
}

#[test]
fn recursion_past_the_stack_limit_traps_as_a_stack_overflow() {
    let engine = engine();
    let component = compile(
        &engine,
        r#"
(component
  (core module $m
    (func $down (export "down") (param i32) (result i32)
      (if (result i32) (i32.eqz (local.get 0))
        (then (i32.const 0))
        (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1))))))))
  (core instance $i (instantiate $m))
  (func (export "down") (param "depth" u32) (result u32)
    (canon lift (core func $i "down"))))
"#,
    )
    .unwrap();
    let mut store = store(&engine);
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &component)
        .unwrap();
    let down = instance
        .get_typed_func::<(u32,), (u32,)>(&mut store, "down")
        .unwrap();
    assert_eq!(down.call(&mut store, (1_000,)).unwrap(), (1_000,));

    let error = down
        .call(&mut store, (u32::MAX,))
        .expect_err("no stack holds that");
    assert_eq!(error.downcast_ref::<Trap>(), Some(&Trap::StackOverflow));
    assert_eq!(classify(&error, store.data()), FailureKind::Trap);
}

#[test]
fn an_instance_beyond_the_pool_fails_as_exhausted_until_a_slot_is_freed() {
    let engine = engine();
    let component = compile(&engine, &repeated("", 1)).unwrap();
    let linker = Linker::new(&engine);
    let mut live = Vec::new();
    for _ in 0..MAX_INSTANCES {
        let mut store = store(&engine);
        linker.instantiate(&mut store, &component).unwrap();
        live.push(store);
    }
    let error = linker
        .instantiate(&mut store(&engine), &component)
        .expect_err("every slot is taken");
    assert!(slots::exhausted(&error), "{error:#}");

    live.pop();
    linker
        .instantiate(&mut store(&engine), &component)
        .expect("a freed slot is used again");
}
