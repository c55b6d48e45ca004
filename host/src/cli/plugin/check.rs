//! `lyceum plugin check`: what an install and an activation would decide about a module,
//! decided offline — the static checks, then for each slot a real preparation (compilation
//! and a smoke call with the given configuration) by an engine of the server's own runtime.

use std::path::{Path, PathBuf};

use lyceum_plugin_runtime::{
    ChainSpec, LoadError, PluginSource, PluginSpec, PluginsConfig, PolicyEngine, Slot,
    inspect::{self, Abi, CheckError, ModuleInfo},
};
use serde_json::{Map, Value, json};

use super::error::CliError;

/// A module that passed, and the slots it was prepared for.
#[derive(Debug)]
pub struct Checked {
    pub path: PathBuf,
    pub info: ModuleInfo,
    pub slots: Vec<Slot>,
}

/// Checks the module at `path` for `slot`, or for every slot it exports.
pub async fn check(
    path: PathBuf,
    slot: Option<Slot>,
    config: Map<String, Value>,
) -> Result<Checked, CliError> {
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    // Validation and compilation take whole cores for a while: off the async workers.
    tokio::task::spawn_blocking(move || check_blocking(path, &bytes, slot, config))
        .await
        .map_err(|e| CliError::Internal(format!("the check stopped: {e}")))?
}

fn check_blocking(
    path: PathBuf,
    bytes: &[u8],
    slot: Option<Slot>,
    config: Map<String, Value>,
) -> Result<Checked, CliError> {
    let info = inspect::inspect(bytes, slot).map_err(check_refused)?;
    let slots = match slot {
        Some(slot) => vec![slot],
        None => {
            let mut slots: Vec<Slot> = info.exports.iter().map(|e| e.slot).collect();
            slots.sort_unstable();
            slots.dedup();
            for slot in &slots {
                info.check_slot(*slot).map_err(check_refused)?;
            }
            slots
        }
    };
    let engine = empty_engine()?;
    for slot in &slots {
        let plugin = PluginSpec::new(PluginSource::File(path.clone()))
            .with_name(plugin_name(&path))
            .with_config(Value::Object(config.clone()));
        let spec = ChainSpec {
            plugins: vec![plugin],
            ..Default::default()
        };
        engine.prepare(*slot, &spec).map_err(|e| load_refused(&e))?;
    }
    Ok(Checked { path, info, slots })
}

/// An engine whose slots run nothing, so the module under test is all it prepares.
fn empty_engine() -> Result<PolicyEngine, CliError> {
    let mut config = PluginsConfig::default();
    for slot in Slot::ALL {
        config.slot_mut(slot).plugins = Some(Vec::new());
    }
    PolicyEngine::builder(config)
        .build()
        .map_err(|e| CliError::Internal(e.to_string()))
}

/// The file's stem, within the 1 to 64 characters a plugin name may have.
fn plugin_name(path: &Path) -> String {
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().chars().take(64).collect())
        .unwrap_or_default();
    if stem.trim().is_empty() {
        "plugin".into()
    } else {
        stem
    }
}

fn check_refused(error: CheckError) -> CliError {
    CliError::Refused {
        reason: error.reason.as_str().to_owned(),
        message: error.message,
        imports: error.imports,
    }
}

fn load_refused(error: &LoadError) -> CliError {
    CliError::Refused {
        reason: error.reason().to_owned(),
        message: error.to_string(),
        imports: error.imports().to_vec(),
    }
}

impl Checked {
    /// One sentence: what the module is and what it passed.
    pub fn sentence(&self) -> String {
        let slots: Vec<&str> = self.slots.iter().map(|s| s.as_str()).collect();
        let slots = match slots.as_slice() {
            [one] => format!("the {one} slot"),
            [rest @ .., last] => format!("the {} and {last} slots", rest.join(", ")),
            [] => "no slot".into(),
        };
        let kind = match self.info.abi {
            Abi::Component => "a component",
            Abi::Extism => "an Extism module",
        };
        format!(
            "passed: {} (sha256 {}, {} bytes) is {kind} implementing {} at WIT {}; it compiled \
             and answered a smoke call with its configuration in {slots}",
            self.path.display(),
            self.info.sha256,
            self.info.size,
            self.info.world(),
            self.info.wit_version(),
        )
    }

    /// The module as `--json` shows it: the API's `module` fields, what it exports and
    /// imports, and the slots it was prepared for.
    pub fn to_json(&self) -> Value {
        let exports: Vec<Value> = self
            .info
            .exports
            .iter()
            .map(|e| json!({"slot": e.slot.as_str(), "world": e.slot.world(), "witVersion": e.wit_version}))
            .collect();
        json!({
            "sha256": self.info.sha256,
            "size": self.info.size,
            "abi": self.info.abi.as_str(),
            "world": self.info.world(),
            "witVersion": self.info.wit_version(),
            "exports": exports,
            "imports": self.info.imports,
            "slots": self.slots.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })
    }
}
