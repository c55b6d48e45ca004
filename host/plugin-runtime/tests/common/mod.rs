//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod wat_plugin;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lyceum_plugin_runtime::{
    Builtin, FailureMode, PluginSource, PluginSpec, PluginsConfig, PolicyContext, PolicyEngine,
    Role, Slot,
};

/// A configuration where `slot` runs `chain` and the other slots run nothing.
pub fn only(slot: Slot, chain: Vec<PluginSpec>) -> PluginsConfig {
    let mut config = PluginsConfig::default();
    // Tests start many engines; a small pool keeps their address space modest.
    config.engine.max_instances = 32;
    config.engine.pool_size = 4;
    for s in Slot::ALL {
        config.slot_mut(s).plugins = Some(if s == slot { chain.clone() } else { Vec::new() });
    }
    config
}

pub fn engine(slot: Slot, chain: Vec<PluginSpec>) -> PolicyEngine {
    PolicyEngine::builder(only(slot, chain))
        .build()
        .expect("the engine builds")
}

pub fn builtin(slot: Slot) -> PluginSpec {
    PluginSpec::new(PluginSource::Builtin(Builtin::for_slot(slot)))
}

pub fn builtin_with(slot: Slot, config: serde_json::Value) -> PluginSpec {
    builtin(slot).with_config(config)
}

pub fn file(path: &str) -> PluginSpec {
    PluginSpec::new(PluginSource::File(PathBuf::from(path)))
}

pub fn fixture(path: &str, name: &str, failure: FailureMode) -> PluginSpec {
    file(path).with_name(name).with_failure(failure)
}

/// A context at a fixed instant, so rate-limit windows are predictable.
pub fn ctx(role: Role) -> PolicyContext {
    ctx_at(role, "student-1", 1_700_000_000_000)
}

pub fn ctx_at(role: Role, actor: &str, unix_ms: u64) -> PolicyContext {
    let mut ctx = PolicyContext::new("request-1", actor, role);
    ctx.course_id = Some("course-1".into());
    ctx.at = UNIX_EPOCH + Duration::from_millis(unix_ms);
    ctx
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
