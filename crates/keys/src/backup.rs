//! The whole key store as one value, for copies of a deployment: [`KeySet`] read from one
//! [`KeyStore`] and written into another (`idstream migrate`, `idstream restore`), and sealed
//! with a pass phrase for a backup (`idstream backup`).
//!
//! A sealed key set is a JSON document:
//!
//! ```text
//! { "format": "idstream-keys", "version": 1,
//!   "kdf": { "algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "parallelism": 1,
//!            "salt": "<base64url, 16 bytes>" },
//!   "cipher": "xchacha20poly1305", "nonce": "<base64url, 24 bytes>",
//!   "ciphertext": "<base64url: the key set's JSON, then the 16-byte tag>" }
//! ```
//!
//! The key is argon2id of the pass phrase and the salt (32 bytes); the associated data is
//! `idstream-keys|1|` followed by the caller's context (a backup binds its log id and position),
//! so a keys file moved to another backup does not open. The plaintext is
//! `{"keys":{"<name>":"<base64url value>",…}}`.
//!
//! **Invariant:** nothing here prints, logs or formats a key or the pass phrase; [`KeySet`]'s
//! `Debug` shows names only, and every copy of a value or the derived key is wiped on drop.

use std::collections::BTreeMap;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{KeyStore, KeyStoreError};

const FORMAT: &str = "idstream-keys";
const VERSION: u32 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// argon2id cost when sealing: 64 MiB, 3 passes, 1 lane (above OWASP's minimum for argon2id).
const MEMORY_KIB: u32 = 64 * 1024;
const ITERATIONS: u32 = 3;
const PARALLELISM: u32 = 1;
/// The most a sealed file may ask for when it is opened, so that a crafted file cannot make
/// `restore` allocate without bound.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;
/// The shortest pass phrase accepted for sealing.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// Why keys could not be copied, sealed or opened. Never carries a key or the pass phrase.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    #[error(
        "the target key store already holds {0:?} with another value: it belongs to another \
         deployment; use an empty key store"
    )]
    Conflict(String),
    #[error("the pass phrase must be at least {MIN_PASSPHRASE_LEN} characters")]
    WeakPassphrase,
    #[error(
        "the pass phrase does not open the keys (a wrong pass phrase, a damaged keys file, or \
         the keys file of another backup)"
    )]
    WrongPassphrase,
    #[error("the keys file is not a sealed key set: {0}")]
    Malformed(String),
    #[error("the operating system's random number generator failed")]
    RandomSource,
}

/// Every value of a key store by name.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct KeySet {
    entries: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("names", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What [`KeySet::write_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Values created in the target.
    pub created: usize,
    /// Values the target already held, the same (a copy that is resumed).
    pub present: usize,
}

impl KeySet {
    /// Every value of `store` as of now. Values are only ever added or replaced (a rotation, an
    /// erasure's tombstone), so a value read later in the listing is never older than one read
    /// earlier; one that vanishes meanwhile is skipped.
    pub async fn read_from(store: &dyn KeyStore) -> Result<KeySet, KeyStoreError> {
        let mut entries = BTreeMap::new();
        for name in store.names().await? {
            if let Some(value) = store.get(&name).await? {
                entries.insert(name, value);
            }
        }
        Ok(KeySet { entries })
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value under `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.get(name).map(|v| v.as_slice())
    }

    /// The users whose personal-data key is a tombstone (they were erased), lower case.
    pub fn erased_users(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, value)| crate::personal::is_tombstone(value))
            .filter_map(|(name, _)| crate::personal::user_of_key_name(name).map(str::to_owned))
            .collect()
    }

    /// Writes every value into `store`, which must hold none of them or the same ones (a copy
    /// that is resumed). Every name is checked before anything is written, so a store of another
    /// deployment is refused untouched ([`KeySetError::Conflict`]).
    pub async fn write_into(&self, store: &dyn KeyStore) -> Result<Written, KeySetError> {
        let mut missing = Vec::new();
        let mut present = 0;
        for (name, value) in &self.entries {
            match store.get(name).await? {
                None => missing.push(name),
                Some(stored) if stored.as_slice() == value.as_slice() => present += 1,
                Some(_) => return Err(KeySetError::Conflict(name.clone())),
            }
        }
        for name in &missing {
            let value = &self.entries[*name];
            if !store.create(name, value).await? {
                // Someone created it meanwhile: fine only if it is the same value.
                match store.get(name).await? {
                    Some(stored) if stored.as_slice() == value.as_slice() => {}
                    _ => return Err(KeySetError::Conflict((*name).clone())),
                }
            }
        }
        Ok(Written {
            created: missing.len(),
            present,
        })
    }

    /// The set sealed with `passphrase` (see the module documentation), bound to `context`.
    pub fn seal(&self, passphrase: &str, context: &str) -> Result<Vec<u8>, KeySetError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(KeySetError::WeakPassphrase);
        }
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut salt)
            .and_then(|()| OsRng.try_fill_bytes(&mut nonce))
            .map_err(|_| KeySetError::RandomSource)?;
        let kdf = Kdf {
            algorithm: "argon2id".to_owned(),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            salt: URL_SAFE_NO_PAD.encode(salt),
        };
        let key = derive(passphrase, &kdf, &salt)?;
        let plain = Plain {
            keys: self
                .entries
                .iter()
                .map(|(name, value)| (name.clone(), URL_SAFE_NO_PAD.encode(value.as_slice())))
                .collect(),
        };
        let mut buffer = Zeroizing::new(
            serde_json::to_vec(&plain).map_err(|e| KeySetError::Malformed(e.to_string()))?,
        );
        // The base64 texts of the values are copies too: wipe them.
        for (_, text) in plain.keys {
            drop(Zeroizing::new(text));
        }
        XChaCha20Poly1305::new(&Key::from(*key))
            .encrypt_in_place(
                &XNonce::from(nonce),
                associated_data(context).as_bytes(),
                &mut *buffer,
            )
            .map_err(|_| KeySetError::Malformed("the key set is too large to seal".into()))?;
        let sealed = Sealed {
            format: FORMAT.to_owned(),
            version: VERSION,
            kdf,
            cipher: "xchacha20poly1305".to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(buffer.as_slice()),
        };
        serde_json::to_vec_pretty(&sealed).map_err(|e| KeySetError::Malformed(e.to_string()))
    }

    /// Opens a set sealed by [`KeySet::seal`] with the same pass phrase and context.
    pub fn open(sealed: &[u8], passphrase: &str, context: &str) -> Result<KeySet, KeySetError> {
        let sealed: Sealed =
            serde_json::from_slice(sealed).map_err(|e| KeySetError::Malformed(e.to_string()))?;
        if sealed.format != FORMAT {
            return Err(KeySetError::Malformed(format!(
                "its format is {:?}, not {FORMAT:?}",
                sealed.format
            )));
        }
        if sealed.version != VERSION {
            return Err(KeySetError::Malformed(format!(
                "it is version {} of the format; this build reads version {VERSION}",
                sealed.version
            )));
        }
        if sealed.cipher != "xchacha20poly1305" || sealed.kdf.algorithm != "argon2id" {
            return Err(KeySetError::Malformed(format!(
                "it uses {} with {}; this build reads xchacha20poly1305 with argon2id",
                sealed.cipher, sealed.kdf.algorithm
            )));
        }
        let kdf = &sealed.kdf;
        if kdf.memory_kib > MAX_MEMORY_KIB
            || kdf.iterations > MAX_ITERATIONS
            || kdf.parallelism > MAX_PARALLELISM
        {
            return Err(KeySetError::Malformed(
                "its key derivation asks for more than this build allows".into(),
            ));
        }
        let decode = |what: &str, text: &str| {
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| KeySetError::Malformed(format!("its {what} is not base64url")))
        };
        let salt = decode("salt", &kdf.salt)?;
        let nonce = decode("nonce", &sealed.nonce)?;
        let nonce = <&XNonce>::try_from(nonce.as_slice())
            .map_err(|_| KeySetError::Malformed("its nonce is not 24 bytes".into()))?;
        let mut buffer = Zeroizing::new(decode("ciphertext", &sealed.ciphertext)?);
        let key = derive(passphrase, kdf, &salt)?;
        XChaCha20Poly1305::new(&Key::from(*key))
            .decrypt_in_place(nonce, associated_data(context).as_bytes(), &mut *buffer)
            .map_err(|_| KeySetError::WrongPassphrase)?;
        let plain: Plain = serde_json::from_slice(&buffer)
            .map_err(|_| KeySetError::Malformed("its content is not a key set".into()))?;
        let mut entries = BTreeMap::new();
        for (name, text) in plain.keys {
            let text = Zeroizing::new(text);
            crate::store::check_name(&name)?;
            let value = URL_SAFE_NO_PAD.decode(text.as_str()).map_err(|_| {
                KeySetError::Malformed(format!("the value of {name:?} is not base64url"))
            })?;
            entries.insert(name, Zeroizing::new(value));
        }
        Ok(KeySet { entries })
    }
}

fn associated_data(context: &str) -> String {
    format!("{FORMAT}|{VERSION}|{context}")
}

fn derive(passphrase: &str, kdf: &Kdf, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeySetError> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeySetError::Malformed(format!("its key derivation parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| KeySetError::Malformed(format!("its key derivation: {e}")))?;
    Ok(key)
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    format: String,
    version: u32,
    kdf: Kdf,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    keys: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryKeyStore;

    const PASSPHRASE: &str = "correct horse battery staple";

    async fn store_with(values: &[(&str, &[u8])]) -> MemoryKeyStore {
        let store = MemoryKeyStore::default();
        for (name, value) in values {
            assert!(store.create(name, value).await.unwrap());
        }
        store
    }

    #[tokio::test]
    async fn a_sealed_set_opens_only_with_its_pass_phrase_and_context() {
        let store = store_with(&[
            ("vault", b"v"),
            ("pd-01abc", b"secret key"),
            ("pd-01def", b"erased"),
        ])
        .await;
        let set = KeySet::read_from(&store).await.unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.erased_users(), vec!["01def".to_owned()]);
        let sealed = set.seal(PASSPHRASE, "log-1|42").unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(!text.contains("secret"), "no value in the clear");
        assert!(
            !format!("{set:?}").contains("secret"),
            "Debug shows names only"
        );

        assert_eq!(KeySet::open(&sealed, PASSPHRASE, "log-1|42").unwrap(), set);
        assert!(matches!(
            KeySet::open(&sealed, "another pass phrase", "log-1|42"),
            Err(KeySetError::WrongPassphrase)
        ));
        assert!(matches!(
            KeySet::open(&sealed, PASSPHRASE, "log-1|43"),
            Err(KeySetError::WrongPassphrase)
        ));
        let mut tampered: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        tampered["ciphertext"] = serde_json::Value::String("AAAA".into());
        assert!(matches!(
            KeySet::open(
                &serde_json::to_vec(&tampered).unwrap(),
                PASSPHRASE,
                "log-1|42"
            ),
            Err(KeySetError::WrongPassphrase)
        ));
        for garbage in [&b"not json"[..], b"{}", b"[1,2]"] {
            assert!(matches!(
                KeySet::open(garbage, PASSPHRASE, "log-1|42"),
                Err(KeySetError::Malformed(_))
            ));
        }
        assert!(matches!(
            set.seal("short", "x"),
            Err(KeySetError::WeakPassphrase)
        ));
    }

    #[tokio::test]
    async fn writing_a_set_refuses_another_deployments_store_untouched_and_resumes_its_own() {
        let source = store_with(&[("vault", b"v1"), ("signing", b"s1"), ("pd-01abc", b"k")]).await;
        let set = KeySet::read_from(&source).await.unwrap();

        let empty = MemoryKeyStore::default();
        assert_eq!(
            set.write_into(&empty).await.unwrap(),
            Written {
                created: 3,
                present: 0
            }
        );
        assert_eq!(KeySet::read_from(&empty).await.unwrap(), set);

        let partial = store_with(&[("vault", b"v1")]).await;
        assert_eq!(
            set.write_into(&partial).await.unwrap(),
            Written {
                created: 2,
                present: 1
            }
        );

        let other = store_with(&[("vault", b"another"), ("zzz", b"z")]).await;
        assert!(matches!(
            set.write_into(&other).await,
            Err(KeySetError::Conflict(name)) if name == "vault"
        ));
        assert_eq!(other.names().await.unwrap().len(), 2, "nothing was written");
    }
}
