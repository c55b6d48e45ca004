//! {{name}}: a Lyceum file validation plugin.
//!
//! Refuses uploads by extension and by size. Configuration (in `plugins.toml`, or `config`
//! in `cases.json`):
//!
//! ```json
//! {"blockedExtensions": ["exe", "bat"], "maxBytes": 10485760}
//! ```

use std::sync::OnceLock;

use lyceum_plugin_sdk::files::{FileVerdict, Guest, Placement, UploadDone, UploadHead};
use lyceum_plugin_sdk::{Context, log, refusal};

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Config {
    /// Extensions without their dot, in any case.
    #[serde(default)]
    blocked_extensions: Vec<String>,
    /// No limit when absent.
    #[serde(default)]
    max_bytes: Option<u64>,
}

/// Parsed once per instance: the configuration of an instance never changes, and a new
/// instance starts with fresh memory and parses it again.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config: Config = lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            log::log(log::Level::Error, &e);
            Config::default()
        });
        config.blocked_extensions = config
            .blocked_extensions
            .iter()
            .map(|ext| ext.trim_start_matches('.').to_lowercase())
            .filter(|ext| !ext.is_empty())
            .collect();
        config
    })
}

/// The part of the name after its last dot, lowercased.
fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.').map(|(_, ext)| ext.to_lowercase())
}

fn too_large(size: u64) -> Option<FileVerdict> {
    match config().max_bytes {
        Some(max) if size > max => Some(FileVerdict::Reject(refusal(
            "too_large",
            "This file is larger than allowed.",
        ))),
        _ => None,
    }
}

/// Accepted as it is: no other folder, no other name.
fn accept() -> FileVerdict {
    FileVerdict::Accept(Placement {
        folder: None,
        name: None,
    })
}

struct Plugin;

impl Guest for Plugin {
    fn precheck(_ctx: Context, upload: UploadHead) -> FileVerdict {
        if let Some(ext) = extension(&upload.name) {
            if config().blocked_extensions.contains(&ext) {
                return FileVerdict::Reject(refusal(
                    "type_not_allowed",
                    "Files of this type are not accepted.",
                ));
            }
        }
        // Refused before a byte is kept, when the client says how large it is.
        if let Some(verdict) = upload.declared_size.and_then(too_large) {
            return verdict;
        }
        accept()
    }

    fn finish(_ctx: Context, upload: UploadDone) -> FileVerdict {
        // A client may declare no size, or a false one: the real size decides.
        too_large(upload.size).unwrap_or_else(accept)
    }
}

lyceum_plugin_sdk::files::export!(Plugin);
