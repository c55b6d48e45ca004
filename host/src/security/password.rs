//! Password hashing with argon2id.
//!
//! Hashing is deliberately expensive, so it runs on the blocking pool and never stalls the
//! async workers. A login for an unknown email verifies against a dummy hash of the same cost,
//! so response time does not reveal whether an account exists.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy = hash_with(&params, "lyceum-dummy-password-for-unknown-emails")?;
        Ok(PasswordHasher {
            params,
            dummy_hash: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password)).await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no account.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let ok = tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            // Verification uses the parameters recorded in the hash itself, so hashes made
            // under older settings keep working after the configuration changes.
            Ok::<_, anyhow::Error>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await??;
        Ok(ok && exists)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = PasswordHasher::new(8 * 1024, 1).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        // No account: even the dummy's own password is refused.
        assert!(
            !hasher
                .verify("lyceum-dummy-password-for-unknown-emails".into(), None)
                .await
                .unwrap()
        );
    }
}
