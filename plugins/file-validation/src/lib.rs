//! Lyceum's default file validation plugin (`builtin:file-validation`).
//!
//! The rules live in [`policy`], which knows nothing of WebAssembly so that the same source
//! also compiles natively. This file adapts the WIT types and host imports to it.

mod policy;

use std::sync::OnceLock;

use lyceum_plugin_sdk::files::{FileVerdict, Guest, Placement, UploadDone, UploadHead};
use lyceum_plugin_sdk::{Context, kv, log, refusal};

fn validator() -> &'static policy::Validator {
    static VALIDATOR: OnceLock<policy::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let config = lyceum_plugin_sdk::parse_config().unwrap_or_else(|e| {
            log::log(log::Level::Error, &format!("{e}; using the default rules"));
            policy::Config::default()
        });
        policy::Validator::new(&config)
    })
}

/// `finish` does not see the bytes, so `precheck` leaves a note for it, keyed by the
/// request both calls share, in the host store (guest memory may not survive in between).
fn svg_note(ctx: &Context) -> String {
    format!("svg:{}", ctx.request_id)
}

const NOTE_TTL_MS: u64 = 6 * 60 * 60 * 1000;

fn verdict(decision: policy::Decision) -> FileVerdict {
    match decision {
        policy::Decision::Accept { folder, name } => {
            FileVerdict::Accept(Placement { folder, name })
        }
        policy::Decision::Reject { code, reason } => FileVerdict::Reject(refusal(code, reason)),
    }
}

struct Plugin;

impl Guest for Plugin {
    fn precheck(ctx: Context, upload: UploadHead) -> FileVerdict {
        let checked = validator().precheck(&policy::Head {
            name: &upload.name,
            folder: upload.folder.as_deref(),
            declared_type: upload.declared_type.as_deref(),
            declared_size: upload.declared_size,
            host_sniffed: upload.sniffed_type.as_deref(),
            head: &upload.head,
        });
        if checked.is_svg
            && matches!(checked.decision, policy::Decision::Accept { .. })
            && let Err(e) = kv::set(&svg_note(&ctx), "1", Some(NOTE_TTL_MS))
        {
            // Without the note, `finish` still refuses large files named or sniffed as SVG.
            log::log(
                log::Level::Warn,
                &format!("could not note an SVG upload: {e:?}"),
            );
        }
        verdict(checked.decision)
    }

    fn finish(ctx: Context, upload: UploadDone) -> FileVerdict {
        let was_svg = matches!(kv::get(&svg_note(&ctx)), Ok(Some(_)));
        verdict(validator().finish(&policy::Done {
            name: &upload.name,
            folder: upload.folder.as_deref(),
            size: upload.size,
            sha256: &upload.sha256,
            host_sniffed: upload.sniffed_type.as_deref(),
            was_svg,
        }))
    }
}

lyceum_plugin_sdk::files::export!(Plugin);
