//! Files on the local disk: `<root>/<folder>/<filename>`, with uploads in progress under
//! `<root>/.tmp` — on the same filesystem, so publishing is one atomic `rename`.

use std::{
    io::{self, SeekFrom},
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use tokio::{
    fs,
    io::{AsyncSeekExt, AsyncWriteExt, BufWriter},
};
use uuid::Uuid;

use super::{BlobEntry, BlobReader, BlobStore, StorageError, TempBlob};
use crate::domain::Folder;

/// Large enough that a 1 GiB upload is a few thousand writes rather than tens of thousands of
/// network-sized ones; small enough that a hundred parallel uploads stay within tens of MiB.
const WRITE_BUFFER: usize = 256 * 1024;

const TEMP_DIR: &str = ".tmp";
const TEMP_SUFFIX: &str = ".part";

pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// Uses `root`, creating it and its folders when missing.
    pub async fn open(root: impl Into<PathBuf>) -> Result<LocalDisk, StorageError> {
        let root = root.into();
        for folder in Folder::ALL {
            fs::create_dir_all(root.join(folder.as_str())).await?;
        }
        fs::create_dir_all(root.join(TEMP_DIR)).await?;
        Ok(LocalDisk { root })
    }

    fn path(&self, folder: Folder, filename: &str) -> Result<PathBuf, StorageError> {
        // Names come from the database, never from a request, but a path must stay a path
        // inside its folder whatever happens upstream.
        if filename.is_empty() || filename.starts_with('.') || filename.contains(['/', '\\', '\0'])
        {
            return Err(StorageError::NotFound);
        }
        Ok(self.root.join(folder.as_str()).join(filename))
    }
}

#[async_trait]
impl BlobStore for LocalDisk {
    async fn create_temp(&self) -> Result<Box<dyn TempBlob>, StorageError> {
        let path = self
            .root
            .join(TEMP_DIR)
            .join(format!("{}{TEMP_SUFFIX}", Uuid::new_v4().simple()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Box::new(LocalTemp {
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            root: self.root.clone(),
            path: Some(path),
        }))
    }

    async fn read(
        &self,
        folder: Folder,
        filename: &str,
        offset: u64,
        len: u64,
    ) -> Result<BlobReader, StorageError> {
        use tokio::io::AsyncReadExt;
        let mut file = match fs::File::open(self.path(folder, filename)?).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await?;
        }
        Ok(Box::pin(file.take(len)))
    }

    async fn remove(&self, folder: Folder, filename: &str) -> Result<bool, StorageError> {
        match fs::remove_file(self.path(folder, filename)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn sweep_temp(&self) -> Result<usize, StorageError> {
        let mut swept = 0;
        let mut entries = fs::read_dir(self.root.join(TEMP_DIR)).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_type().await?.is_file() {
                fs::remove_file(entry.path()).await?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    async fn list(&self) -> Result<Vec<BlobEntry>, StorageError> {
        let mut found = Vec::new();
        for folder in Folder::ALL {
            let mut entries = fs::read_dir(self.root.join(folder.as_str())).await?;
            while let Some(entry) = entries.next_entry().await? {
                let meta = entry.metadata().await?;
                if meta.is_file()
                    && let Ok(filename) = entry.file_name().into_string()
                {
                    found.push(BlobEntry {
                        folder,
                        filename,
                        modified: meta.modified()?,
                    });
                }
            }
        }
        Ok(found)
    }
}

struct LocalTemp {
    writer: BufWriter<fs::File>,
    root: PathBuf,
    /// `None` once published.
    path: Option<PathBuf>,
}

#[async_trait]
impl TempBlob for LocalTemp {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        self.writer.flush().await?;
        self.writer.get_ref().sync_all().await?;
        Ok(())
    }

    async fn publish(
        mut self: Box<Self>,
        folder: Folder,
        filename: &str,
    ) -> Result<(), StorageError> {
        self.writer.flush().await?;
        let from = self.path.clone().ok_or(StorageError::NotFound)?;
        let dir = self.root.join(folder.as_str());
        fs::rename(&from, dir.join(filename)).await?;
        self.path = None;
        // The rename is durable only once its directory is.
        sync_dir(&dir).await?;
        Ok(())
    }
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // A plain unlink: fast, and Drop cannot await. An in-flight write to the
            // unlinked file is harmless.
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, "could not remove an abandoned upload");
            }
        }
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).await?.sync_all().await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn temp_root() -> (PathBuf, LocalDisk) {
        let root = std::env::temp_dir().join(format!("lyceum-disk-{}", Uuid::new_v4().simple()));
        let disk = LocalDisk::open(&root).await.unwrap();
        (root, disk)
    }

    async fn count_files(dir: &Path) -> usize {
        let mut n = 0;
        let mut entries = fs::read_dir(dir).await.unwrap();
        while let Some(e) = entries.next_entry().await.unwrap() {
            if e.file_type().await.unwrap().is_file() {
                n += 1;
            }
        }
        n
    }

    #[tokio::test]
    async fn a_published_blob_reads_back_by_range_and_an_abandoned_one_vanishes() {
        let (root, disk) = temp_root().await;
        let mut blob = disk.create_temp().await.unwrap();
        blob.write(b"hello, ").await.unwrap();
        blob.write(b"world").await.unwrap();
        blob.sync().await.unwrap();
        blob.publish(Folder::Misc, "greeting.txt").await.unwrap();
        assert_eq!(count_files(&root.join(TEMP_DIR)).await, 0);

        let mut text = String::new();
        disk.read(Folder::Misc, "greeting.txt", 7, 3)
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "wor");

        let mut abandoned = disk.create_temp().await.unwrap();
        abandoned.write(b"partial").await.unwrap();
        assert_eq!(count_files(&root.join(TEMP_DIR)).await, 1);
        drop(abandoned);
        assert_eq!(count_files(&root.join(TEMP_DIR)).await, 0);

        let listed = disk.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].folder, listed[0].filename.as_str()),
            (Folder::Misc, "greeting.txt")
        );
        assert!(disk.remove(Folder::Misc, "greeting.txt").await.unwrap());
        assert!(!disk.remove(Folder::Misc, "greeting.txt").await.unwrap());
        assert!(matches!(
            disk.read(Folder::Misc, "greeting.txt", 0, 1).await,
            Err(StorageError::NotFound)
        ));
        fs::remove_dir_all(root).await.unwrap();
    }

    #[tokio::test]
    async fn names_that_would_leave_their_folder_are_not_found() {
        let (root, disk) = temp_root().await;
        for name in ["../secret", "a/b", "..", ".tmp", "a\\b", ""] {
            assert!(matches!(
                disk.read(Folder::Images, name, 0, 1).await,
                Err(StorageError::NotFound)
            ));
        }
        fs::remove_dir_all(root).await.unwrap();
    }

    #[tokio::test]
    async fn sweeping_removes_what_a_crash_left_behind() {
        let (root, disk) = temp_root().await;
        fs::write(root.join(TEMP_DIR).join("crashed.part"), b"x")
            .await
            .unwrap();
        assert_eq!(disk.sweep_temp().await.unwrap(), 1);
        assert_eq!(count_files(&root.join(TEMP_DIR)).await, 0);
        fs::remove_dir_all(root).await.unwrap();
    }
}
