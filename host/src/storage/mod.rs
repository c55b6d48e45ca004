//! Where the bytes of uploaded files live. The database holds their metadata; a
//! [`BlobStore`] holds the bytes under `<folder>/<filename>`.
//!
//! Uploads are written to a temporary blob first and published (made visible under their
//! final name) only once they are complete and accepted, so readers never see half a file.
//! The local-disk implementation is [`local::LocalDisk`]; shared object storage for several
//! nodes fits behind the same trait.

pub mod local;

use std::{io, pin::Pin};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::domain::Folder;

pub use local::LocalDisk;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such blob")]
    NotFound,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A byte stream read from storage.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Starts a new temporary blob. Dropping it unpublished removes it.
    async fn create_temp(&self) -> Result<Box<dyn TempBlob>, StorageError>;

    /// `len` bytes of `<folder>/<filename>` starting at `offset`.
    async fn read(
        &self,
        folder: Folder,
        filename: &str,
        offset: u64,
        len: u64,
    ) -> Result<BlobReader, StorageError>;

    /// Removes `<folder>/<filename>`; false if it was not there.
    async fn remove(&self, folder: Folder, filename: &str) -> Result<bool, StorageError>;

    /// Removes every temporary blob (those a crashed process left behind); returns how many.
    async fn sweep_temp(&self) -> Result<usize, StorageError>;

    /// Every published blob.
    async fn list(&self) -> Result<Vec<BlobEntry>, StorageError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub folder: Folder,
    pub filename: String,
    pub modified: std::time::SystemTime,
}

/// An upload being written.
#[async_trait]
pub trait TempBlob: Send {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// Makes the bytes durable; after this, [`publish`](Self::publish) cannot lose them.
    async fn sync(&mut self) -> Result<(), StorageError>;

    /// Moves the blob to `<folder>/<filename>` in one step.
    async fn publish(self: Box<Self>, folder: Folder, filename: &str) -> Result<(), StorageError>;
}
