//! The vault: sealing keys (XChaCha20-Poly1305) and the blind-index key (HMAC-SHA-256).
//!
//! A value sealed here reads `v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>` (the shape of
//! [`Sealed`]). The caller's `context` is the associated data: a value sealed for
//! `password:<user id>` does not open as `password:<another user>`, so a sealed value copied from
//! one record to another is refused instead of silently accepted.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use idstream_domain::secret::{BlindIndex, Sealed};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The version of the document written by [`Vault::to_json`].
const VAULT_FORMAT: u32 = 1;

/// Key length of every vault key (sealing and index), in bytes.
const KEY_LEN: usize = 32;

/// XChaCha20 nonce length.
const NONCE_LEN: usize = 24;

/// Poly1305 tag length.
const TAG_LEN: usize = 16;

/// The longest plaintext [`Vault::seal`] accepts. A sealed value must stay within
/// [`idstream_domain::secret::MAX_SEALED_LEN`] characters; 2 KiB of plaintext seals to under
/// 2.8 KiB whatever the key id. Sealed values are password hashes and TOTP secrets (well under
/// 200 bytes), not documents.
pub const MAX_PLAINTEXT_LEN: usize = 2048;

/// Why a value could not be sealed or opened, or a vault document not read. No variant carries
/// key material, plaintext or any part of a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("no sealing key with id {kid:?} in the vault")]
    UnknownKey { kid: String },
    #[error("the sealed payload is not base64url of a nonce, a ciphertext and a tag")]
    MalformedPayload,
    #[error(
        "the sealed value does not authenticate: wrong key, wrong context, or altered after sealing"
    )]
    AuthenticationFailed,
    #[error(
        "a plaintext of {len} bytes is longer than the {MAX_PLAINTEXT_LEN} bytes a vault seals"
    )]
    TooLong { len: usize },
    #[error("the operating system's random number generator failed")]
    RandomSource,
    #[error(
        "the vault document is not valid JSON of the expected shape (line {line}, column {column})"
    )]
    MalformedDocument { line: usize, column: usize },
    #[error("unsupported vault format {0}")]
    UnsupportedFormat(u32),
    #[error("the vault document is inconsistent: {0}")]
    InvalidDocument(&'static str),
}

type HmacSha256 = Hmac<Sha256>;

/// Sealing keys by key id, the id of the one that seals, and the blind-index key.
///
/// Every key is zeroized when the vault is dropped; `Debug` shows key ids only.
pub struct Vault {
    sealing: BTreeMap<String, Zeroizing<[u8; KEY_LEN]>>,
    /// Key ids in the order the keys were added, so the document is stable.
    order: Vec<String>,
    current: String,
    index_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Vault {
    /// A vault with one new random sealing key and a new random index key.
    pub fn generate() -> Result<Vault, VaultError> {
        let index_key = random_key()?;
        let mut vault = Vault {
            sealing: BTreeMap::new(),
            order: Vec::new(),
            current: String::new(),
            index_key,
        };
        vault.rotate_sealing()?;
        Ok(vault)
    }

    /// Adds a new random sealing key and makes it the one that seals. Older keys stay, so values
    /// they sealed still open. The index key does not change (blind indexes already in the log
    /// must keep matching). Returns the new key id.
    pub fn rotate_sealing(&mut self) -> Result<&str, VaultError> {
        let key = random_key()?;
        let kid = loop {
            let kid = random_kid()?;
            if !self.sealing.contains_key(&kid) {
                break kid;
            }
        };
        self.sealing.insert(kid.clone(), key);
        self.order.push(kid.clone());
        self.current = kid;
        Ok(&self.current)
    }

    /// The id of the key that seals new values.
    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// The ids of every sealing key, oldest first.
    pub fn kids(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }

    /// Seals `plaintext` under the current key, bound to `context` (for example
    /// `"password:<user id>"`): [`Vault::open`] must be given the same context.
    ///
    /// # Panics
    ///
    /// If `plaintext` is longer than [`MAX_PLAINTEXT_LEN`] (a programming error: callers seal
    /// short secrets) or the operating system's random number generator fails (the system cannot
    /// do cryptography at all then). [`Vault::try_seal`] returns these as errors.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Sealed {
        match self.try_seal(plaintext, context) {
            Ok(sealed) => sealed,
            Err(e) => panic!("cannot seal a value: {e}"),
        }
    }

    /// [`Vault::seal`], reporting an oversized plaintext or a failing random number generator.
    pub fn try_seal(&self, plaintext: &[u8], context: &str) -> Result<Sealed, VaultError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(VaultError::TooLong {
                len: plaintext.len(),
            });
        }
        let key = self
            .sealing
            .get(&self.current)
            .ok_or_else(|| VaultError::UnknownKey {
                kid: self.current.clone(),
            })?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| VaultError::RandomSource)?;
        // Room for the tag up front: the buffer never reallocates, so no copy of the plaintext is
        // left behind in freed memory. After encryption it holds only ciphertext and tag.
        let mut buffer = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buffer.extend_from_slice(plaintext);
        cipher(key)
            .encrypt_in_place(&XNonce::from(nonce), context.as_bytes(), &mut buffer)
            // XChaCha20-Poly1305 refuses only messages of hundreds of gigabytes.
            .map_err(|_| VaultError::TooLong {
                len: plaintext.len(),
            })?;
        buffer.splice(0..0, nonce);
        let text = format!("v1.{}.{}", self.current, URL_SAFE_NO_PAD.encode(&buffer));
        // Key ids are checked when generated and loaded, and the length is bounded above.
        Sealed::parse(text).map_err(|_| VaultError::TooLong {
            len: plaintext.len(),
        })
    }

    /// Opens a value sealed by [`Vault::seal`] with the same `context`, under whichever of the
    /// vault's keys sealed it.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self
            .sealing
            .get(sealed.key_id())
            .ok_or_else(|| VaultError::UnknownKey {
                kid: sealed.key_id().to_owned(),
            })?;
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.payload())
            .map_err(|_| VaultError::MalformedPayload)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::MalformedPayload);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = <&XNonce>::try_from(nonce).map_err(|_| VaultError::MalformedPayload)?;
        // Decrypted in place inside a buffer that is wiped when the caller drops it. The tag is
        // checked before anything is decrypted, so a forged value never yields plaintext.
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        cipher(key)
            .decrypt_in_place(nonce, context.as_bytes(), &mut *buffer)
            .map_err(|_| VaultError::AuthenticationFailed)?;
        Ok(buffer)
    }

    /// The blind index of `token` for `purpose`: HMAC-SHA-256(index key, purpose ‖ 0x00 ‖ token).
    ///
    /// Deterministic for every replica that shares the vault, and separated by purpose: the same
    /// token indexed as a refresh token and as an invitation gives unrelated digests. `purpose`
    /// is a constant of the caller's (such as `"refresh"`) and must not contain a NUL character.
    pub fn blind_index(&self, purpose: &str, token: &str) -> BlindIndex {
        debug_assert!(
            !purpose.contains('\0'),
            "a blind-index purpose contains NUL"
        );
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.index_key[..])
            .expect("HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(token.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        BlindIndex::from_bytes(&digest)
    }

    /// The vault as a JSON document for the key store. It holds every key: it is a secret.
    pub fn to_json(&self) -> Zeroizing<String> {
        let document = VaultDocument {
            format: VAULT_FORMAT,
            current_sealing_key: self.current.clone(),
            sealing_keys: self
                .order
                .iter()
                .filter_map(|kid| {
                    self.sealing.get(kid).map(|key| StoredKey {
                        kid: kid.clone(),
                        key: URL_SAFE_NO_PAD.encode(&key[..]),
                    })
                })
                .collect(),
            index_key: URL_SAFE_NO_PAD.encode(&self.index_key[..]),
        };
        // Sized up front so that the writer never reallocates and leaves copies of keys behind.
        let mut buffer = Zeroizing::new(Vec::with_capacity(512 + 160 * self.order.len()));
        serde_json::to_writer_pretty(&mut *buffer, &document)
            .expect("strings and integers always serialise");
        let text =
            String::from_utf8(std::mem::take(&mut *buffer)).expect("serde_json writes UTF-8");
        Zeroizing::new(text)
    }

    /// Reads a document written by [`Vault::to_json`]. Errors never quote the document.
    pub fn from_json(document: &str) -> Result<Vault, VaultError> {
        let document: VaultDocument =
            serde_json::from_str(document).map_err(|e| VaultError::MalformedDocument {
                line: e.line(),
                column: e.column(),
            })?;
        if document.format != VAULT_FORMAT {
            return Err(VaultError::UnsupportedFormat(document.format));
        }
        let index_key = decode_key(&document.index_key).ok_or(VaultError::InvalidDocument(
            "the index key is not 32 bytes of base64url",
        ))?;
        let mut sealing = BTreeMap::new();
        let mut order = Vec::with_capacity(document.sealing_keys.len());
        for stored in &document.sealing_keys {
            if !valid_kid(&stored.kid) {
                return Err(VaultError::InvalidDocument(
                    "a sealing key id is not 1 to 64 characters of [A-Za-z0-9_-]",
                ));
            }
            let key = decode_key(&stored.key).ok_or(VaultError::InvalidDocument(
                "a sealing key is not 32 bytes of base64url",
            ))?;
            if sealing.insert(stored.kid.clone(), key).is_some() {
                return Err(VaultError::InvalidDocument(
                    "a sealing key id appears twice",
                ));
            }
            order.push(stored.kid.clone());
        }
        if !sealing.contains_key(&document.current_sealing_key) {
            return Err(VaultError::InvalidDocument(
                "the current sealing key is not among the sealing keys",
            ));
        }
        Ok(Vault {
            sealing,
            order,
            current: document.current_sealing_key.clone(),
            index_key,
        })
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("current", &self.current)
            .field("kids", &self.order)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// A cipher for one call; its copy of the key is wiped when it is dropped (the `zeroize` feature
/// of `chacha20poly1305`).
fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    let key: &Key = key.into();
    XChaCha20Poly1305::new(key)
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng
        .try_fill_bytes(&mut key[..])
        .map_err(|_| VaultError::RandomSource)?;
    Ok(key)
}

/// 64 random bits in base64url (11 characters): unique among a vault's few keys without any
/// coordination between the replicas that might generate one.
fn random_kid() -> Result<String, VaultError> {
    let mut bytes = [0u8; 8];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| VaultError::RandomSource)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The key-id alphabet of [`Sealed`]: `[A-Za-z0-9_-]{1,64}`.
fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_key(text: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

#[derive(Serialize, Deserialize)]
struct VaultDocument {
    format: u32,
    current_sealing_key: String,
    sealing_keys: Vec<StoredKey>,
    /// base64url of the 32-byte HMAC key.
    index_key: String,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// base64url of the 32-byte key.
    key: String,
}

// The encoded keys are wiped when the document goes away, whether it was written or read.
impl Drop for VaultDocument {
    fn drop(&mut self) {
        self.index_key.zeroize();
    }
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::generate().unwrap()
    }

    /// The same sealed text with one payload character changed.
    fn tampered(sealed: &Sealed, at: usize) -> Sealed {
        let payload = sealed.payload();
        let mut chars: Vec<char> = payload.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        let payload: String = chars.into_iter().collect();
        Sealed::parse(format!("v1.{}.{payload}", sealed.key_id())).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_its_context() {
        let vault = vault();
        let sealed = vault.seal(b"$argon2id$v=19$m=19456,t=2,p=1$salt$hash", "password:u1");
        assert_eq!(sealed.key_id(), vault.current_kid());
        assert!(sealed.as_str().starts_with("v1."));
        let opened = vault.open(&sealed, "password:u1").unwrap();
        assert_eq!(&opened[..], b"$argon2id$v=19$m=19456,t=2,p=1$salt$hash");
        // The empty plaintext works too.
        let empty = vault.seal(b"", "totp:u1");
        assert!(vault.open(&empty, "totp:u1").unwrap().is_empty());
    }

    #[test]
    fn a_sealed_value_does_not_open_in_another_context() {
        let vault = vault();
        let sealed = vault.seal(b"secret", "password:u1");
        assert_eq!(
            vault.open(&sealed, "password:u2"),
            Err(VaultError::AuthenticationFailed)
        );
        assert_eq!(
            vault.open(&sealed, ""),
            Err(VaultError::AuthenticationFailed)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let vault = vault();
        let sealed = vault.seal(b"secret", "ctx");
        // In the nonce, in the ciphertext and in the tag.
        for at in [0, 40, sealed.payload().len() - 3] {
            assert_eq!(
                vault.open(&tampered(&sealed, at), "ctx"),
                Err(VaultError::AuthenticationFailed),
                "changed at {at}"
            );
        }
    }

    #[test]
    fn a_truncated_or_undecodable_payload_is_refused() {
        let vault = vault();
        let sealed = vault.seal(b"secret", "ctx");
        let kid = sealed.key_id();
        // Long enough for `Sealed::parse`, too short for a nonce and a tag.
        let short = Sealed::parse(format!("v1.{kid}.{}", &sealed.payload()[..44])).unwrap();
        assert_eq!(vault.open(&short, "ctx"), Err(VaultError::MalformedPayload));
        // Cut inside the tag: long enough, but it no longer authenticates.
        let cut = Sealed::parse(format!("v1.{kid}.{}", &sealed.payload()[..56])).unwrap();
        assert_eq!(
            vault.open(&cut, "ctx"),
            Err(VaultError::AuthenticationFailed)
        );
        // A length no base64 encoding has.
        let odd = Sealed::parse(format!("v1.{kid}.{}", &sealed.payload()[..57])).unwrap();
        assert_eq!(vault.open(&odd, "ctx"), Err(VaultError::MalformedPayload));
    }

    #[test]
    fn a_value_sealed_by_an_unknown_key_is_refused() {
        let sealed = vault().seal(b"secret", "ctx");
        let other = vault();
        assert_eq!(
            other.open(&sealed, "ctx"),
            Err(VaultError::UnknownKey {
                kid: sealed.key_id().to_owned()
            })
        );
        // Same kid, different key: authentication fails.
        let relabelled =
            Sealed::parse(format!("v1.{}.{}", other.current_kid(), sealed.payload())).unwrap();
        assert_eq!(
            other.open(&relabelled, "ctx"),
            Err(VaultError::AuthenticationFailed)
        );
    }

    #[test]
    fn two_seals_of_one_plaintext_differ() {
        let vault = vault();
        let a = vault.seal(b"secret", "ctx");
        let b = vault.seal(b"secret", "ctx");
        assert_ne!(a, b);
        assert_ne!(a.payload()[..32], b.payload()[..32], "nonces differ");
    }

    #[test]
    fn oversized_plaintexts_are_refused() {
        let vault = vault();
        let largest = vec![7u8; MAX_PLAINTEXT_LEN];
        let sealed = vault.try_seal(&largest, "ctx").unwrap();
        assert_eq!(&vault.open(&sealed, "ctx").unwrap()[..], &largest[..]);
        assert_eq!(
            vault.try_seal(&[0u8; MAX_PLAINTEXT_LEN + 1], "ctx"),
            Err(VaultError::TooLong {
                len: MAX_PLAINTEXT_LEN + 1
            })
        );
    }

    #[test]
    fn blind_indexes_are_deterministic_purpose_separated_and_keyed() {
        let vault = vault();
        let a = vault.blind_index("refresh", "tok");
        assert_eq!(a, vault.blind_index("refresh", "tok"));
        assert_ne!(a, vault.blind_index("invitation", "tok"));
        assert_ne!(a, vault.blind_index("refresh", "tok2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(vault.blind_index("ab", "c"), vault.blind_index("a", "bc"));
        assert_ne!(a, Vault::generate().unwrap().blind_index("refresh", "tok"));
        // A copy of the vault (another replica) computes the same index.
        let replica = Vault::from_json(&vault.to_json()).unwrap();
        assert_eq!(a, replica.blind_index("refresh", "tok"));
    }

    #[test]
    fn blind_indexes_match_an_independently_computed_hmac() {
        // Computed with Python's hmac module: key = 32 bytes of 0x0b, message = purpose 0x00 token.
        let mut vault = vault();
        vault.index_key = Zeroizing::new([0x0b; KEY_LEN]);
        assert_eq!(
            vault.blind_index("refresh", "tok").as_str(),
            "fa148d12d6f3d782879f84792faeb708268d7eba07ea0440574ac1ebbbe23ca4"
        );
        assert_eq!(
            vault.blind_index("p", "t").as_str(),
            "89fd1362f7aee3ffacacadb1daa00ba0775fd9129c4b96bf63b959095667da84"
        );
    }

    #[test]
    fn a_vault_survives_its_json_document() {
        let mut vault = vault();
        vault.rotate_sealing().unwrap();
        let sealed = vault.seal(b"secret", "ctx");
        let json = vault.to_json();
        assert!(json.contains("\"format\": 1"));
        let copy = Vault::from_json(&json).unwrap();
        assert_eq!(copy.current_kid(), vault.current_kid());
        assert_eq!(copy.kids(), vault.kids());
        assert_eq!(&copy.open(&sealed, "ctx").unwrap()[..], b"secret");
        assert_eq!(copy.to_json(), json);
    }

    #[test]
    fn malformed_vault_documents_are_refused_without_quoting_them() {
        let json = vault().to_json();
        let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        let secret = doc["index_key"].as_str().unwrap().to_owned();

        let err = Vault::from_json(&json.replace(&secret, "not-base64!")).unwrap_err();
        assert!(matches!(err, VaultError::InvalidDocument(_)));
        let err = Vault::from_json(&json[..json.len() / 2]).unwrap_err();
        assert!(matches!(err, VaultError::MalformedDocument { .. }));
        assert!(!err.to_string().contains(&secret));

        doc["format"] = 2.into();
        assert_eq!(
            Vault::from_json(&doc.to_string()).unwrap_err(),
            VaultError::UnsupportedFormat(2)
        );
        doc["format"] = 1.into();
        doc["current_sealing_key"] = "missing".into();
        assert!(matches!(
            Vault::from_json(&doc.to_string()),
            Err(VaultError::InvalidDocument(_))
        ));
        doc["index_key"] = 5.into();
        let err = Vault::from_json(&doc.to_string()).unwrap_err();
        assert!(matches!(err, VaultError::MalformedDocument { .. }));
    }

    #[test]
    fn rotation_keeps_old_values_openable() {
        let mut vault = vault();
        let index = vault.blind_index("refresh", "tok");
        let old_kid = vault.current_kid().to_owned();
        let old = vault.seal(b"old", "ctx");
        let new_kid = vault.rotate_sealing().unwrap().to_owned();
        assert_ne!(old_kid, new_kid);
        assert_eq!(vault.kids(), vec![old_kid.as_str(), new_kid.as_str()]);
        let new = vault.seal(b"new", "ctx");
        assert_eq!(new.key_id(), new_kid);
        assert_eq!(&vault.open(&old, "ctx").unwrap()[..], b"old");
        assert_eq!(&vault.open(&new, "ctx").unwrap()[..], b"new");
        // Blind indexes in the log keep matching.
        assert_eq!(vault.blind_index("refresh", "tok"), index);
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let vault = vault();
        let debug = format!("{vault:?}");
        assert!(debug.contains(vault.current_kid()));
        assert!(debug.contains("<redacted>"));
        let doc: serde_json::Value = serde_json::from_str(&vault.to_json()).unwrap();
        let mut secrets = vec![doc["index_key"].as_str().unwrap().to_owned()];
        for key in doc["sealing_keys"].as_array().unwrap() {
            secrets.push(key["key"].as_str().unwrap().to_owned());
        }
        let hex_index = vault
            .index_key
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        secrets.push(hex_index);
        for secret in &secrets {
            assert!(!debug.contains(secret.as_str()));
            assert!(!debug.contains(&secret[..8]));
        }
        // Errors carry no key material or plaintext.
        let sealed = vault.seal(b"plaintext-marker", "ctx");
        let err = vault.open(&sealed, "other").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("plaintext-marker"));
    }
}
