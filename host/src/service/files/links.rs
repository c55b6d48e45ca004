//! File metadata as clients see it, and the signed links that let `<img src>` and
//! `<a href>` fetch a file without an Authorization header.
//!
//! A signed link is `/uploads/<folder>/<filename>?expires=<unix>&sig=<hmac>`; the signature
//! covers the file id and the expiry, under a key derived from the server secret, so it cannot
//! be moved to another file or extended.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Actor;
use crate::domain::{Attachment, FileId, FileRecord};
pub use crate::domain::{AttachmentView, FileView};

pub struct FileLinks {
    key: Vec<u8>,
    ttl: Duration,
}

impl FileLinks {
    /// `secret` is the server's signing secret; links get their own derived key.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"lyceum file links v1");
        FileLinks {
            key: mac.finalize().into_bytes().to_vec(),
            ttl,
        }
    }

    pub fn url(file: &FileRecord) -> String {
        format!("/uploads/{}/{}", file.folder.as_str(), file.filename)
    }

    pub fn view(&self, file: &FileRecord) -> FileView {
        let expires = Utc::now().timestamp() + self.ttl.as_secs() as i64;
        let url = Self::url(file);
        FileView {
            id: file.id,
            signed_url: format!(
                "{url}?expires={expires}&sig={}",
                self.signature(file.id, expires)
            ),
            url,
            filename: file.filename.clone(),
            original_name: file.original_name.clone(),
            size: file.size,
            mimetype: file.mimetype.clone(),
            folder: file.folder,
            sha256: file.sha256.clone(),
            course_id: file.course_id,
            created_at: file.created_at,
        }
    }

    pub fn attachment(&self, attachment: &Attachment) -> AttachmentView {
        match &attachment.file {
            Some(file) => AttachmentView::File(self.view(file)),
            None => AttachmentView::Deleted {
                id: attachment.file_id,
                deleted: true,
            },
        }
    }

    /// True when `sig` signs `(file, expires)` and `expires` is still ahead.
    pub fn verify(&self, file: FileId, expires: i64, sig: &str) -> bool {
        if expires < Utc::now().timestamp() {
            return false;
        }
        let Ok(given) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        self.mac(file, expires).verify_slice(&given).is_ok()
    }

    fn signature(&self, file: FileId, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(file, expires).finalize().into_bytes())
    }

    fn mac(&self, file: FileId, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(file.0.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac
    }
}

/// Who may read a file: its owner, admins, and members of its course.
pub fn may_read(actor: &Actor, file: &FileRecord, member_of_course: bool) -> bool {
    actor.is_admin() || file.owner_id == actor.id || (file.course_id.is_some() && member_of_course)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Folder, UserId};

    fn file() -> FileRecord {
        FileRecord {
            id: FileId::new(),
            owner_id: UserId::new(),
            course_id: None,
            folder: Folder::Images,
            filename: "abc.png".into(),
            original_name: "cat.png".into(),
            size: 3,
            mimetype: "image/png".into(),
            sha256: "00".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn signed_links_verify_only_for_their_file_and_until_expiry() {
        let links = FileLinks::new(b"server secret", Duration::from_secs(60));
        let f = file();
        let view = links.view(&f);
        let query = view.signed_url.split_once('?').unwrap().1;
        let expires: i64 = query
            .split('&')
            .next()
            .unwrap()
            .trim_start_matches("expires=")
            .parse()
            .unwrap();
        let sig = query.split("sig=").nth(1).unwrap();
        assert!(links.verify(f.id, expires, sig));
        assert!(
            !links.verify(FileId::new(), expires, sig),
            "moved to another file"
        );
        assert!(!links.verify(f.id, expires + 1, sig), "extended");
        assert!(
            !links.verify(f.id, Utc::now().timestamp() - 1, sig),
            "expired"
        );
        let other = FileLinks::new(b"another secret", Duration::from_secs(60));
        assert!(!other.verify(f.id, expires, sig));
    }
}
