//! Uploaded module bytes on disk, named by their SHA-256: the same bytes are stored once, and
//! a name can never point at other bytes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub struct ModuleFiles {
    dir: PathBuf,
}

impl ModuleFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Keeps `bytes` under their hash (written aside and renamed, so a reader never sees
    /// half a module).
    pub async fn put(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(sha256);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        let tmp = self
            .dir
            .join(format!(".{sha256}.{}.tmp", uuid::Uuid::now_v7().simple()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    }

    /// The module's bytes, checked against its name: a file changed on disk is not used.
    pub async fn get(&self, sha256: &str) -> Option<Vec<u8>> {
        let bytes = tokio::fs::read(self.path(sha256)).await.ok()?;
        (sha256_hex(&bytes) == sha256).then_some(bytes)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
