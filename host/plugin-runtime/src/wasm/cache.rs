//! Precompiled components on disk, keyed by the SHA-256 of the component and by the
//! engine's compatibility hash, so that a restart loads native code in a few milliseconds
//! instead of compiling for hundreds, and an engine with different settings or a new
//! wasmtime never picks up an incompatible artifact.
//!
//! Loading an artifact maps native code into the server and runs it, so only artifacts this
//! host wrote are loaded. Each file ends with an HMAC-SHA256 tag over the module's SHA-256,
//! the engine key and the artifact, under a key the server holds outside the cache directory
//! ([`CacheKey`], from the builder's `cache_key`). An artifact planted in the directory,
//! copied from another host or altered fails the check and is removed, and the module is
//! compiled again; so is one renamed to stand for another module. Whoever can write the
//! directory can make the server compile again, not run their code; whoever can read the
//! key can forge artifacts, so it must be as private as the server's other secrets.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// Length of the tag at the end of every cached file.
const TAG_BYTES: usize = 32;
/// Bytes read of a cached file at most: far more than any plugin compiles to (a JavaScript
/// engine, the largest seen, is about 35 MB), so that a planted giant is not read into
/// memory to be checked.
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;
/// What the tag covers besides the artifact, so that a tag made for something else (another
/// use of the same secret) never verifies here.
const DOMAIN: &[u8] = b"lyceum plugin cache artifact v1\0";

/// The key that authenticates cached artifacts, derived from a secret of the server's.
#[derive(Clone)]
pub(crate) struct CacheKey([u8; 32]);

impl CacheKey {
    /// Fewest bytes of secret accepted.
    pub(crate) const MIN_SECRET_BYTES: usize = 32;

    /// A key of its own for the cache, so that the secret (the server passes its token
    /// signing secret) is never used directly for a second purpose.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"lyceum plugin cache key v1");
        Self(mac.finalize().into_bytes().into())
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: CacheKey,
}

impl ArtifactCache {
    pub(crate) fn open(dir: PathBuf, engine: &Engine, key: CacheKey) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            key,
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    fn mac(&self, sha256: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key.0).expect("HMAC takes 32-byte keys");
        mac.update(DOMAIN);
        mac.update(sha256.as_bytes());
        mac.update(b"\0");
        mac.update(self.engine_key.as_bytes());
        mac.update(b"\0");
        mac
    }

    /// The artifact in `file` if its tag is this host's for `sha256`.
    fn verified<'a>(&self, sha256: &str, file: &'a [u8]) -> Option<&'a [u8]> {
        let split = file.len().checked_sub(TAG_BYTES)?;
        let (artifact, tag) = file.split_at(split);
        let mut mac = self.mac(sha256);
        mac.update(artifact);
        mac.verify_slice(tag).ok().map(|()| artifact)
    }

    fn tagged(&self, sha256: &str, artifact: &[u8]) -> Vec<u8> {
        let mut mac = self.mac(sha256);
        mac.update(artifact);
        let mut file = Vec::with_capacity(artifact.len() + TAG_BYTES);
        file.extend_from_slice(artifact);
        file.extend_from_slice(&mac.finalize().into_bytes());
        file
    }

    /// The precompiled component, or `None` when absent, not this host's or unusable (then
    /// removed, so the caller's fresh compilation replaces it).
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        let file = match read_bounded(&path) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a precompiled plugin; compiling it");
                return None;
            }
        };
        let discard = |why: &str| {
            tracing::warn!(path = %path.display(), reason = why, "discarding a precompiled plugin; compiling it again");
            let _ = std::fs::remove_file(&path);
        };
        // The bytes checked are the bytes loaded: the file is read once, so it cannot be
        // swapped between the check and the load.
        let Some(artifact) = self.verified(sha256, &file) else {
            discard("not written by this host (its tag does not verify)");
            return None;
        };
        // SAFETY: the tag proves this host wrote these bytes, from a component its engine
        // compiled, under a key that never leaves the server; wasmtime checks the header and
        // the engine's compatibility before using them.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                discard(&format!("{e:#}"));
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

    /// Writes the artifact with its tag; failures only cost a recompilation next start, so
    /// they are logged, not returned.
    pub(crate) fn store(&self, sha256: &str, component: &Component) {
        let path = self.path(sha256);
        let result = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|artifact| {
                let file = self.tagged(sha256, &artifact);
                // Written aside and renamed, so a concurrent reader never sees half a file.
                let mut tmp = tempfile_in(&self.dir).map_err(|e| e.to_string())?;
                tmp.1.write_all(&file).map_err(|e| e.to_string())?;
                tmp.1.sync_all().map_err(|e| e.to_string())?;
                std::fs::rename(&tmp.0, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a precompiled plugin");
        }
    }
}

/// The file's bytes; `None` when there is no file. A file over [`MAX_ARTIFACT_BYTES`] reads
/// as its first bytes only, which then fail the check.
fn read_bounded(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ARTIFACT_BYTES).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sha2::Digest;

    use super::*;
    use crate::config::EngineConfig;

    fn engine() -> Engine {
        super::super::new_engine(&EngineConfig::default(), false).expect("the engine starts")
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn an_artifact_renamed_to_stand_for_another_module_is_discarded() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache =
            ArtifactCache::open(dir.path().into(), &engine, CacheKey::derive(&[7; 32])).unwrap();
        let bytes = crate::builtin::SIGNALING_POLICY;
        let real = sha256(bytes);
        cache.store(&real, &Component::new(&engine, bytes).unwrap());
        assert!(cache.load(&engine, &real).is_some());

        let other = sha256(b"another module");
        std::fs::copy(cache.path(&real), cache.path(&other)).unwrap();
        assert!(
            cache.load(&engine, &other).is_none(),
            "the tag names the module it was made for"
        );
        assert!(!cache.path(&other).exists(), "the impostor was removed");
        assert!(cache.load(&engine, &real).is_some());
    }

    fn median(mut runs: Vec<Duration>) -> Duration {
        runs.sort();
        runs[runs.len() / 2]
    }

    /// Loading a cached default plugin the old way (wasmtime maps the file) and the new way
    /// (read, check the tag, load the checked bytes), on the same artifact.
    #[test]
    #[ignore = "a measurement: cargo test -p lyceum-plugin-runtime --release --lib -- --ignored --nocapture verification_cost"]
    fn verification_cost() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let cache =
            ArtifactCache::open(dir.path().into(), &engine, CacheKey::derive(&[7; 32])).unwrap();
        for (name, bytes) in [
            ("chat-moderation", crate::builtin::CHAT_MODERATION),
            ("file-validation", crate::builtin::FILE_VALIDATION),
            ("signaling-policy", crate::builtin::SIGNALING_POLICY),
        ] {
            let sha = sha256(bytes);
            let component = Component::new(&engine, bytes).unwrap();
            cache.store(&sha, &component);
            let plain = dir.path().join("plain");
            let artifact = component.serialize().unwrap();
            std::fs::write(&plain, &artifact).unwrap();
            let (mut before, mut after) = (Vec::new(), Vec::new());
            for _ in 0..31 {
                let started = Instant::now();
                // SAFETY: written just above from a component this engine compiled.
                drop(unsafe { Component::deserialize_file(&engine, &plain) }.unwrap());
                before.push(started.elapsed());
                let started = Instant::now();
                drop(cache.load(&engine, &sha).unwrap());
                after.push(started.elapsed());
            }
            println!(
                "{name}: artifact {} KiB, load unchecked {:?}, checked {:?} (medians of 31)",
                artifact.len() / 1024,
                median(before),
                median(after)
            );
        }
    }
}
