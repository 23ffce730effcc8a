//! Credentials: random secret tokens stored only as hashes, constant-time comparison, argon2id
//! password hashing off the async runtime with bounded concurrency, and the primitives of sign-in,
//! sessions, two-factor authentication and API keys:
//!
//! - [`jwt`]: EdDSA access tokens (RFC 9068), ID and logout tokens, the signing key ring and its
//!   JWK Set;
//! - [`totp`]: RFC 6238 one-time codes with replay protection;
//! - [`recovery`]: single-use recovery codes;
//! - [`passkey`]: the WebAuthn relying party (passkey registration and sign-in ceremonies);
//! - [`password_policy`]: length, character-class and common-password rules;
//! - [`api_key`] and [`opaque`]: prefixed bearer secrets stored only as digests.
//!
//! **Invariant:** no function here logs, returns or stores a secret in the clear except the
//! `reveal`/`to_*` functions that exist to show a freshly minted secret to its owner once or to
//! persist key material; every type holding a secret redacts its `Debug` output.
//!
//! **Invariant:** nothing here reads the clock. Whatever depends on time takes `now` as an argument,
//! so that tests and replays decide what time it is. Only [`PasswordHasherPool`] is async.

pub mod api_key;
pub mod jwt;
pub mod opaque;
pub mod passkey;
pub mod password_policy;
pub mod recovery;
pub mod totp;

pub use api_key::{ApiKeySecret, PresentedApiKey};
pub use jwt::{
    AccessClaims, AccessSubject, CLOCK_LEEWAY, Issuer, KeyRing, KeyRingError, LogoutClaims,
    SigningKey, TokenError, VerifiedTokens, sign_jwt,
};
pub use opaque::{OpaqueToken, TokenKind};
pub use password_policy::{PasswordPolicy, PolicyBoundsError, PolicyViolation};
pub use recovery::RecoveryCode;
pub use totp::{TotpError, TotpSecret};

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
#[derive(Clone, PartialEq, Eq, Hash)]
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

    /// Constant-time comparison of two digests, for checking one presented token against several
    /// stored digests without revealing which one matched.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A digest read back from [`TokenDigest::to_hex`]; `None` unless it is 64 hex digits.
    pub fn from_hex(text: &str) -> Option<TokenDigest> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(TokenDigest(bytes))
    }
}

/// A uniformly random code of `digits` decimal digits (for codes a person types from an email).
pub fn numeric_code(digits: usize) -> zeroize::Zeroizing<String> {
    use rand::Rng;
    let mut rng = rand::rng();
    zeroize::Zeroizing::new(
        (0..digits)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect(),
    )
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `bytes` random bytes as lower-case unpadded base32 (RFC 4648 alphabet): case-insensitive, free
/// of `_` and `-`, so it sits unambiguously after a `xxx_` prefix.
pub(crate) fn random_base32(bytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::rng().fill_bytes(&mut buf);
    data_encoding::BASE32_NOPAD
        .encode(&buf)
        .to_ascii_lowercase()
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
    /// Hashes and verifications run so far (for metrics and tests).
    runs: Arc<std::sync::atomic::AtomicU64>,
}

impl PasswordHasherPool {
    /// `concurrency` hashes at most run at once (each holds 19 MiB while it runs).
    pub fn new(concurrency: usize) -> PasswordHasherPool {
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            params: Params::default(),
            runs: Arc::default(),
        }
    }

    /// How many argon2 computations (hashes and verifications) this pool has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of a new salted hash.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let argon2 = self.argon2();
        self.run(move || {
            // A random 16-byte salt is drawn from the OS by `hash_password`.
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| PasswordError::Hashing)
        })
        .await?
    }

    /// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, PasswordError> {
        let argon2 = self.argon2();
        self.run(move || match PasswordHash::new(&phc) {
            Ok(parsed) => argon2.verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        })
        .await
    }

    /// Runs `work` on a blocking thread once a permit is free. The permit goes with the work, not
    /// with the caller: a request abandoned while its hash runs (a client that hangs up) frees
    /// its permit only when the hash is done, so the bound holds however many callers give up.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::PoolClosed)?;
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
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

    #[test]
    fn a_digest_survives_hex() {
        let digest = SecretToken::generate(32).digest();
        assert_eq!(
            TokenDigest::from_hex(&digest.to_hex()),
            Some(digest.clone())
        );
        assert!(digest.ct_eq(&digest.clone()));
        assert!(!digest.ct_eq(&TokenDigest::of("other")));
        assert_eq!(TokenDigest::from_hex("abc"), None);
        assert_eq!(TokenDigest::from_hex(&"zz".repeat(32)), None);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_caller_leaves_its_permit_with_the_running_work() {
        let pool = PasswordHasherPool::new(1);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let caller = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    // Stands for a long argon2 run: busy until the test lets it go.
                    let _ = held.recv();
                })
                .await
            })
        };
        started.await.unwrap();
        assert_eq!(pool.permits.available_permits(), 0);
        // The caller gives up (its client hung up); the work it started is still running.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(
            pool.permits.available_permits(),
            0,
            "the permit was freed while its work still ran"
        );
        release.send(()).unwrap();
        // Once the work is done the permit is free again, and the next hash runs.
        let phc = pool.hash("another pass phrase".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert_eq!(pool.runs(), 2);
    }
}
