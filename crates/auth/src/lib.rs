//! Credentials: random secret tokens stored only as hashes, constant-time comparison, and argon2id
//! password hashing off the async runtime with bounded concurrency.
//!
//! **Invariant:** no function here logs, returns or stores a secret in the clear except
//! [`SecretToken::reveal`], which exists to show a freshly minted token to its owner once.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// A freshly generated secret (≥128 random bits). Its `Debug` output is redacted.
pub struct SecretToken(String);

impl SecretToken {
    /// A new token of `bytes` random bytes (at least 16), base64url without padding.
    pub fn generate(bytes: usize) -> SecretToken {
        let mut buf = vec![0u8; bytes.max(16)];
        rand::rng().fill_bytes(&mut buf);
        SecretToken(URL_SAFE_NO_PAD.encode(buf))
    }

    /// The token text, to be shown to its owner once and never stored.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.0)
    }
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// The SHA-256 of a token: what is stored and compared instead of the token. High-entropy random
/// tokens need no salt or slow hash; passwords do (see [`PasswordHasherPool`]).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time check of a presented token against this digest.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = Sha256::digest(presented.as_bytes());
        self.0.ct_eq(&presented[..]).into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hashing,
    #[error("the password hashing pool is shut down")]
    PoolClosed,
}

/// argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), run on blocking threads and
/// bounded by a semaphore so that a flood of sign-ins cannot take every thread or all memory.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    params: Params,
}

impl PasswordHasherPool {
    /// `concurrency` hashes at most run at once (each holds 19 MiB while it runs).
    pub fn new(concurrency: usize) -> PasswordHasherPool {
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            params: Params::default(),
        }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of a new salted hash.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        let argon2 = self.argon2();
        tokio::task::spawn_blocking(move || {
            // A random 16-byte salt is drawn from the OS by `hash_password`.
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| PasswordError::Hashing)
        })
        .await
        .map_err(|_| PasswordError::Hashing)?
    }

    /// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        let argon2 = self.argon2();
        tokio::task::spawn_blocking(move || match PasswordHash::new(&phc) {
            Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        })
        .await
        .map_err(|_| PasswordError::Hashing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_at_least_128_bits_and_are_distinct() {
        let a = SecretToken::generate(1);
        let b = SecretToken::generate(32);
        assert!(
            a.reveal().len() >= 22,
            "16 bytes in base64url are 22 characters"
        );
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(format!("{a:?}"), "SecretToken(<redacted>)");
    }

    #[test]
    fn a_digest_matches_only_its_token() {
        let token = SecretToken::generate(32);
        let digest = token.digest();
        assert!(digest.matches(token.reveal()));
        assert!(!digest.matches("something else"));
        assert!(!digest.matches(""));
    }

    #[tokio::test]
    async fn passwords_are_hashed_with_argon2id_owasp_parameters_and_verified() {
        let pool = PasswordHasherPool::new(2);
        let phc = pool
            .hash("correct horse battery staple".into())
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            pool.verify("correct horse battery staple".into(), phc.clone())
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong".into(), phc).await.unwrap());
        assert!(
            !pool
                .verify("x".into(), "not a phc string".into())
                .await
                .unwrap()
        );
    }
}
