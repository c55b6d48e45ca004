//! {{name}}: a Lyceum file validation plugin for the Extism ABI.
//!
//! Refuses uploads by extension and by size. Configuration (in `plugins.toml`, or `config`
//! in `cases.json`):
//!
//! ```json
//! {"blockedExtensions": ["exe", "bat"], "maxBytes": 10485760}
//! ```

mod lyceum;

use std::sync::OnceLock;

use extism_pdk::{FnResult, Json, plugin_fn};
use lyceum::{FileVerdict, FinishInput, Placement, PrecheckInput, refusal};

struct Settings {
    /// Without their dot, lowercased.
    blocked_extensions: Vec<String>,
    /// No limit when absent.
    max_bytes: Option<u64>,
}

/// A configuration value, or `None` (logged) when it is invalid.
fn setting<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
    lyceum::config(key).unwrap_or_else(|e| {
        lyceum::log("error", &e);
        None
    })
}

/// Read once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and reads it again.
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        blocked_extensions: setting::<Vec<String>>("blockedExtensions")
            .unwrap_or_default()
            .iter()
            .map(|ext| ext.trim_start_matches('.').to_lowercase())
            .filter(|ext| !ext.is_empty())
            .collect(),
        max_bytes: setting("maxBytes"),
    })
}

/// The part of the name after its last dot, lowercased.
fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.').map(|(_, ext)| ext.to_lowercase())
}

fn too_large(size: u64) -> Option<FileVerdict> {
    match settings().max_bytes {
        Some(max) if size > max => Some(FileVerdict::Reject(refusal(
            "too_large",
            "This file is larger than allowed.",
        ))),
        _ => None,
    }
}

/// Accepted as it is: no other folder, no other name.
fn accept() -> FileVerdict {
    FileVerdict::Accept(Placement::default())
}

#[plugin_fn]
pub fn precheck(Json(input): Json<PrecheckInput>) -> FnResult<Json<FileVerdict>> {
    if let Some(ext) = extension(&input.upload.name) {
        if settings().blocked_extensions.contains(&ext) {
            return Ok(Json(FileVerdict::Reject(refusal(
                "type_not_allowed",
                "Files of this type are not accepted.",
            ))));
        }
    }
    // Refused before a byte is kept, when the client says how large it is.
    if let Some(verdict) = input.upload.declared_size.and_then(too_large) {
        return Ok(Json(verdict));
    }
    Ok(Json(accept()))
}

#[plugin_fn]
pub fn finish(Json(input): Json<FinishInput>) -> FnResult<Json<FileVerdict>> {
    // A client may declare no size, or a false one: the real size decides.
    Ok(Json(too_large(input.upload.size).unwrap_or_else(accept)))
}
