//! Precompiled components on disk, keyed by the SHA-256 of the component and by the
//! engine's compatibility hash, so that a restart loads native code in well under a
//! millisecond instead of compiling for tens of milliseconds, and an engine with different
//! settings or a new wasmtime never picks up an incompatible artifact.
//!
//! Loading an artifact runs the native code it contains: the directory must be writable by
//! the server alone, like its database.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The precompiled component, or `None` when absent or unusable (then removed, so the
    /// caller's fresh compilation replaces it).
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `store` below from a component this engine
        // compiled, into a directory only the server may write (see the module docs);
        // wasmtime checks its header and engine compatibility before using it.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "discarding unusable precompiled plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Removes artifacts of modules not in `keep` (of any engine version).
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let sha256 = stem.split_once('-').map_or(stem, |(sha, _)| sha);
            if !keep.contains(sha256)
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not evict a precompiled plugin");
            }
        }
    }

    /// Writes the artifact; failures only cost a recompilation next start, so they are
    /// logged, not returned.
    pub(crate) fn store(&self, sha256: &str, component: &Component) {
        let path = self.path(sha256);
        let result = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| {
                // Written aside and renamed, so a concurrent reader never sees half a file.
                let mut tmp = tempfile_in(&self.dir).map_err(|e| e.to_string())?;
                tmp.1.write_all(&bytes).map_err(|e| e.to_string())?;
                tmp.1.sync_all().map_err(|e| e.to_string())?;
                std::fs::rename(&tmp.0, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a precompiled plugin");
        }
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let unique = format!(
        ".tmp-{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let path = dir.join(unique.replace(['(', ')'], ""));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}
