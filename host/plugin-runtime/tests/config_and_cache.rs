//! `plugins.toml` parsing and the precompiled cache.

mod common;

use std::path::{Path, PathBuf};

use common::{ctx, only};
use lyceum_plugin_runtime::{
    FailureMode, LoadError, ModerationDecision, ModerationInput, PluginSource, PluginsConfig,
    PolicyEngine, Role, Slot, fixtures,
};

const EXAMPLE: &str = r#"
[engine]
epoch_tick_ms = 2
max_instances = 16
pool_size = 2

[limits]
deadline_ms = 40

[chat]
failure = "fail-open"

[[chat.plugins]]
source = "builtin:chat-moderation"
[chat.plugins.config]
rate_limit = { messages = 5, window_seconds = 60 }
lists = [{ action = "reject", words = ["spam"] }]

[[chat.plugins]]
source = "template.wasm"
name = "my-filter"
failure = "fail-closed"
limits = { deadline_ms = 50, memory_mib = 8 }
config = { blocked = ["buy followers"] }

[files]
plugins = []
"#;

#[test]
fn the_documented_format_parses() {
    let config = PluginsConfig::from_toml(EXAMPLE, Some("/etc/lyceum".into())).unwrap();
    assert_eq!(config.engine.epoch_tick_ms, 2);
    assert_eq!(config.chat.failure, FailureMode::FailOpen);
    let chat = config.chain(Slot::Chat);
    assert_eq!(
        chat.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ["chat-moderation", "my-filter"]
    );
    assert_eq!(chat[1].failure, Some(FailureMode::FailClosed));
    let limits = config.limits.merged(&chat[1].limits).resolve();
    assert_eq!(
        (limits.deadline.as_millis(), limits.memory_bytes),
        (50, 8 << 20)
    );
    assert_eq!(
        config
            .limits
            .merged(&chat[0].limits)
            .resolve()
            .deadline
            .as_millis(),
        40
    );
    assert_eq!(chat[0].config["rate_limit"]["messages"], 5);
    match &chat[1].source {
        PluginSource::File(path) => assert_eq!(
            config.resolve_path(path),
            std::path::Path::new("/etc/lyceum/template.wasm")
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        config.chain(Slot::Files).is_empty(),
        "`plugins = []` runs nothing"
    );
    assert_eq!(
        config.chain(Slot::Signaling).len(),
        1,
        "a missing section runs the builtin"
    );
}

#[test]
fn mistakes_in_the_file_are_reported() {
    let cases = [
        ("[chat]\nfailure = \"sometimes\"\n", "sometimes"),
        ("[limits]\ndeadline = 5\n", "deadline"),
        (
            "[[chat.plugins]]\nsource = \"builtin:nope\"\n",
            "unknown builtin plugin `nope`",
        ),
        (
            "[[files.plugins]]\nsource = \"builtin:chat-moderation\"\n",
            "cannot run in the files slot",
        ),
        (
            "[[chat.plugins]]\nsource = \"a/x.wasm\"\n[[chat.plugins]]\nsource = \"b/x.wasm\"\n",
            "two plugins are named `x`",
        ),
        (
            "[limits]\nmemory_mib = 1000\n",
            "exceeds engine.max_memory_mib",
        ),
        ("[engine]\nepoch_tick_ms = 0\n", "epoch_tick_ms"),
        (
            "[engine]\nmax_wasm_stack_kib = 4096\n",
            "max_wasm_stack_kib must be between 64 and 1024",
        ),
        (
            "[engine]\nmax_wasm_stack_kib = 16\n",
            "max_wasm_stack_kib must be between 64 and 1024",
        ),
    ];
    for (text, expected) in cases {
        match PluginsConfig::from_toml(text, None) {
            Err(LoadError::Config(message)) => {
                assert!(message.contains(expected), "{text:?}: {message}")
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }
}

#[test]
fn a_missing_file_means_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let config = PluginsConfig::load(&dir.path().join("plugins.toml")).unwrap();
    for slot in Slot::ALL {
        assert_eq!(config.chain(slot).len(), 1);
    }
    std::fs::write(dir.path().join("plugins.toml"), "[chat]\nplugins = []\n").unwrap();
    let config = PluginsConfig::load(&dir.path().join("plugins.toml")).unwrap();
    assert!(config.chain(Slot::Chat).is_empty());
    assert_eq!(config.base_dir.as_deref(), Some(dir.path()));
}

#[test]
fn relative_sources_resolve_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures::TEMPLATE, dir.path().join("filter.wasm")).unwrap();
    std::fs::write(
        dir.path().join("plugins.toml"),
        "[engine]\nmax_instances = 16\npool_size = 2\n[[chat.plugins]]\nsource = \"filter.wasm\"\nconfig = { blocked = [\"buy followers\"] }\n[files]\nplugins = []\n[signaling]\nplugins = []\n",
    )
    .unwrap();
    let config = PluginsConfig::load(&dir.path().join("plugins.toml")).unwrap();
    let engine = PolicyEngine::builder(config).build().unwrap();
    let decision = engine
        .moderate_blocking(
            &ctx(Role::Student),
            &ModerationInput::send("r", "Buy Followers today"),
        )
        .unwrap();
    assert!(
        matches!(decision, ModerationDecision::Reject(ref r) if r.code == "blocked_phrase"),
        "{decision:?}"
    );
}

#[test]
fn the_cache_dir_is_the_servers_setting_not_the_files() {
    let error = PluginsConfig::from_toml("[engine]\ncache_dir = \"cache\"\n", None).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `cache_dir`"),
        "{error}"
    );
}

/// This host's secret for the cache, as the server passes it.
const KEY: &[u8] = b"the secret of this host, 32 bytes or more";
/// Another host's.
const OTHER_KEY: &[u8] = b"the secret of another host, 32 bytes or more";

fn small_config() -> PluginsConfig {
    let mut config = PluginsConfig::default();
    config.engine.max_instances = 16;
    config.engine.pool_size = 2;
    config
}

/// The default plugins, cached in `dir` under `key`.
fn cached(dir: &Path, key: &[u8]) -> PolicyEngine {
    PolicyEngine::builder(small_config())
        .cache_dir(dir)
        .cache_key(key)
        .build()
        .unwrap()
}

fn artifacts(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = dir.read_dir().unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
}

#[test]
fn precompiled_artifacts_are_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let build = || cached(dir.path(), KEY);
    let first = build();
    assert!(
        first.plugins().iter().all(|p| !p.precompiled),
        "nothing cached yet"
    );
    let artifacts: Vec<_> = dir
        .path()
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 3, "{artifacts:?}");
    for info in first.plugins() {
        assert!(
            artifacts.iter().any(|a| a
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&info.sha256)),
            "artifact named by content hash for {}",
            info.name
        );
    }
    drop(first);

    let second = build();
    assert!(
        second.plugins().iter().all(|p| p.precompiled),
        "a restart loads precompiled code"
    );
    let decision = second
        .moderate_blocking(&ctx(Role::Student), &ModerationInput::send("r", "oh shit"))
        .unwrap();
    assert_eq!(
        decision,
        ModerationDecision::Allow {
            content: Some("oh ****".into()),
            flags: vec![]
        }
    );
    drop(second);

    // A damaged artifact is discarded and the component compiled again.
    let victim = &artifacts[0];
    std::fs::write(victim, b"garbage").unwrap();
    let third = build();
    assert_eq!(third.plugins().iter().filter(|p| !p.precompiled).count(), 1);
    assert!(
        std::fs::read(victim).unwrap().len() > 1000,
        "rewritten with a good artifact"
    );
    assert!(
        third
            .moderate_blocking(&ctx(Role::Student), &ModerationInput::send("r", "hi"))
            .is_ok()
    );
}

#[test]
fn plugin_listing_reports_effective_settings() {
    let mut config = only(Slot::Chat, vec![common::builtin(Slot::Chat)]);
    config.chat.failure = FailureMode::FailOpen;
    config.limits.memory_mib = Some(12);
    let engine = PolicyEngine::builder(config).build().unwrap();
    let plugins = engine.plugins();
    assert_eq!(plugins.len(), 1);
    let info = &plugins[0];
    assert_eq!(
        (info.slot, info.position, info.name.as_str()),
        (Slot::Chat, 0, "chat-moderation")
    );
    assert_eq!(info.source, "builtin:chat-moderation");
    assert_eq!(info.failure, FailureMode::FailOpen);
    assert_eq!(info.limits.memory_bytes, 12 << 20);
    assert_eq!(info.sha256.len(), 64);
}

#[test]
fn artifacts_this_host_did_not_write_are_discarded_and_the_plugins_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    // Another host sharing the directory, or one whose cache was copied here.
    drop(cached(dir.path(), OTHER_KEY));
    let foreign: Vec<(PathBuf, Vec<u8>)> = artifacts(dir.path())
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert_eq!(foreign.len(), 3);

    let engine = cached(dir.path(), KEY);
    assert!(
        engine.plugins().iter().all(|p| !p.precompiled),
        "none of the other host's code was loaded"
    );
    for (path, bytes) in &foreign {
        assert_ne!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} was written again, under this host's key",
            path.display()
        );
    }
    drop(engine);
    assert!(
        cached(dir.path(), KEY)
            .plugins()
            .iter()
            .all(|p| p.precompiled)
    );

    // What wasmtime serializes, with nothing added (the cache's format before it was
    // authenticated): native code this very engine would accept, loaded only if this host
    // vouches for it.
    for path in artifacts(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 32]).unwrap();
    }
    let engine = cached(dir.path(), KEY);
    assert!(engine.plugins().iter().all(|p| !p.precompiled));
    assert!(
        engine
            .moderate_blocking(&ctx(Role::Student), &ModerationInput::send("r", "hi"))
            .is_ok()
    );
}

#[test]
fn an_artifact_altered_after_it_was_written_is_discarded_and_its_plugin_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(cached(dir.path(), KEY));
    let victim = artifacts(dir.path()).remove(0);
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let engine = cached(dir.path(), KEY);
    assert_eq!(
        engine.plugins().iter().filter(|p| !p.precompiled).count(),
        1,
        "the two others were loaded"
    );
    assert_ne!(std::fs::read(&victim).unwrap(), bytes, "written again");
    assert!(
        engine
            .moderate_blocking(&ctx(Role::Student), &ModerationInput::send("r", "hi"))
            .is_ok()
    );
}

#[test]
fn without_a_key_nothing_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PolicyEngine::builder(small_config())
        .cache_dir(dir.path())
        .build()
        .unwrap();
    assert!(engine.plugins().iter().all(|p| !p.precompiled));
    assert!(artifacts(dir.path()).is_empty());
}

#[test]
fn a_short_cache_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = PolicyEngine::builder(small_config())
        .cache_dir(dir.path())
        .cache_key(b"too short")
        .build()
        .err()
        .expect("refused");
    assert!(matches!(error, LoadError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("at least 32 bytes"), "{error}");
}
