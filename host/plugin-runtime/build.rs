//! Builds the policy plugins (`plugins/`, a cargo workspace of its own) for `wasm32-wasip2`
//! so that the default plugins can be embedded and the hostile fixtures tested, and the
//! Extism modules (`plugins/extism/`, another workspace) for `wasm32-unknown-unknown`.
//!
//! The nested build uses its own target directory, `target/plugins`, and so its own build
//! lock: the outer build holds the lock of `target/debug` (or `target/release`) meanwhile.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every component the plugins workspace produces, by crate name.
const DEFAULT_PLUGINS: &[(&str, &str)] = &[
    ("CHAT_MODERATION", "lyceum_chat_moderation"),
    ("FILE_VALIDATION", "lyceum_file_validation"),
    ("SIGNALING_POLICY", "lyceum_signaling_policy"),
];
const OTHER_COMPONENTS: &[(&str, &str)] = &[
    ("TEMPLATE", "lyceum_plugin_template"),
    ("INFINITE_LOOP", "fixture_infinite_loop"),
    ("MEMORY_BOMB", "fixture_memory_bomb"),
    ("PANIC", "fixture_panic"),
    ("WASI_FILESYSTEM", "fixture_wasi_filesystem"),
    ("WRONG_WORLD", "fixture_wrong_world"),
    ("SLOW", "fixture_slow"),
];
/// Every Extism module the `plugins/extism` workspace produces, by crate name.
const EXTISM_MODULES: &[(&str, &str)] = &[
    ("EXTISM_SAMPLE", "lyceum_extism_sample"),
    ("EXTISM_HOSTILE", "fixture_extism_hostile"),
];

/// Variables the outer cargo sets for this script or inherits from its caller that would
/// misdirect the nested build: flags meant for the host target, a wrapper such as
/// clippy-driver, a target directory or target triple of the outer build, a jobserver whose
/// descriptors the child does not get.
const SCRUBBED: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_PROFILE_RELEASE_LTO",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL",
    "CARGO_PROFILE_RELEASE_PANIC",
    "CARGO_PROFILE_RELEASE_STRIP",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("the runtime crate lives at host/plugin-runtime")
        .to_path_buf();
    let plugins = repo.join("plugins");
    let wit = repo.join("wit");

    // The cargo workspaces only: the JavaScript and Python templates beside them (and their
    // node_modules) are not built here, and must not rebuild the server when they change.
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "sdk",
        "chat-moderation",
        "file-validation",
        "signaling-policy",
        "template",
        "fixtures",
        "extism",
    ] {
        println!("cargo::rerun-if-changed={}", plugins.join(part).display());
    }
    println!("cargo::rerun-if-changed={}", wit.display());
    println!("cargo::rerun-if-env-changed=LYCEUM_PLUGINS_CARGO");

    let target_dir = outer_target_dir()
        .unwrap_or_else(|| repo.join("target"))
        .join("plugins");
    let cargo = env::var_os("LYCEUM_PLUGINS_CARGO")
        .or_else(|| env::var_os("CARGO"))
        .unwrap_or_else(|| "cargo".into());

    build(
        &cargo,
        &plugins,
        "wasm32-wasip2",
        &target_dir,
        DEFAULT_PLUGINS.iter().chain(OTHER_COMPONENTS),
        "LYCEUM_COMPONENT",
    );
    build(
        &cargo,
        &plugins.join("extism"),
        "wasm32-unknown-unknown",
        &target_dir,
        EXTISM_MODULES.iter(),
        "LYCEUM_MODULE",
    );
}

/// Builds every crate of the workspace at `dir` for `target` into `target_dir` and tells
/// the crate where each of `outputs` is, as `{prefix}_{KEY}`.
fn build<'a>(
    cargo: &std::ffi::OsStr,
    dir: &Path,
    target: &str,
    target_dir: &Path,
    outputs: impl Iterator<Item = &'a (&'a str, &'a str)>,
    prefix: &str,
) {
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(target_dir);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    // The outer build may run from anywhere; the toolchain pinned by rust-toolchain.toml is
    // the one that has the wasm targets, and the outer cargo already is that toolchain.
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run {cargo:?} to build the policy plugins: {e}"));
    if !status.success() {
        panic!(
            "building the policy plugins in {} for {target} failed ({status}); run \
             `cargo build --release` there to see why",
            dir.display()
        );
    }

    let out = target_dir.join(target).join("release");
    for (key, file) in outputs {
        let path = out.join(format!("{file}.wasm"));
        assert!(
            path.is_file(),
            "the plugins build did not produce {}",
            path.display()
        );
        println!("cargo::rustc-env={prefix}_{key}={}", path.display());
    }
}

/// The outer build's target directory: the nearest ancestor of OUT_DIR that cargo marked
/// with CACHEDIR.TAG. This follows `CARGO_TARGET_DIR` and `--target-dir` without being told.
fn outer_target_dir() -> Option<PathBuf> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR")?);
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}
