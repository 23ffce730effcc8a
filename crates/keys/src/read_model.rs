//! [`ReadModelSeal`]: personal data in read models, sealed with the person's own key (the one
//! that seals their personal data in the log, see [`crate::personal`]), so that erasing the person
//! makes every copy in a read model unreadable too, wherever it lies on disk.
//!
//! A sealed value is `pr1.<base64url(nonce ‖ ciphertext ‖ tag)>`: XChaCha20-Poly1305 with
//! `pr1|<user>|<field>` as associated data, under a key derived from the person's key. The nonce
//! is synthetic (an HMAC of the associated data and the value under a second derived key), so
//! sealing is deterministic, as folds must be: the same value gives the same bytes on every
//! replica and every rebuild. What that reveals is only whether two stored values of the same
//! field of the same person are equal.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use idstream_projection_runtime::personal::{PersonalSeal, SEALED_PREFIX, SealError};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::personal::{PersonalDataError, PersonalKeys, UserKey, placeholder};
use crate::vault::Vault;

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals read models' personal values with their person's key; see the module documentation.
pub struct ReadModelSeal {
    keys: Arc<PersonalKeys>,
    vault: Arc<Vault>,
    /// Per person: the keys derived from their key, and the values of theirs opened lately (in
    /// memory only, like the search index), with the key they came from. Used only while the
    /// person's key is still the one [`PersonalKeys`] gives; dropped the moment it is gone.
    people: std::sync::Mutex<std::collections::HashMap<String, Person>>,
}

/// Past this many people the cache starts over (values are opened again on demand).
const PEOPLE_LIMIT: usize = 250_000;

/// Opened values kept per person at most (a person has a handful of personal fields).
const VALUES_PER_PERSON: usize = 32;

struct Person {
    key: UserKey,
    derived: Arc<Derived>,
    /// Sealed value → (its field, clear value). Keyed by the sealed value alone so that a lookup
    /// borrows it instead of building a key; the field is checked on a hit.
    opened: std::collections::HashMap<Box<str>, (Box<str>, String)>,
}

/// The two keys derived from a person's key: one encrypts, one makes nonces.
struct Derived {
    cipher: Zeroizing<[u8; 32]>,
    nonce: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ReadModelSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelSeal").finish_non_exhaustive()
    }
}

impl ReadModelSeal {
    /// Over the personal-data keys the decrypting log uses (share the same [`PersonalKeys`], so
    /// the key that opened an event is the one in memory when its fold seals it) and the vault
    /// whose blind index names email claims.
    pub fn new(keys: Arc<PersonalKeys>, vault: Arc<Vault>) -> ReadModelSeal {
        ReadModelSeal {
            keys,
            vault,
            people: Default::default(),
        }
    }

    fn people(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Person>> {
        self.people
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys derived from `key`, the current key of `user`.
    fn derived(&self, user: &str, key: &UserKey) -> Arc<Derived> {
        let mut people = self.people();
        if let Some(person) = people.get(user)
            && Arc::ptr_eq(&person.key, key)
        {
            return person.derived.clone();
        }
        let derived = Arc::new(derive_keys(key));
        if people.len() >= PEOPLE_LIMIT {
            people.clear();
        }
        people.insert(
            user.to_owned(),
            Person {
                key: key.clone(),
                derived: derived.clone(),
                opened: Default::default(),
            },
        );
        derived
    }

    /// `stored` of `field` of `user` opened lately under `key` (still their key), if it was.
    fn opened_lately(
        &self,
        user: &str,
        key: &UserKey,
        field: &str,
        stored: &str,
    ) -> Option<String> {
        let people = self.people();
        let person = people.get(user).filter(|p| Arc::ptr_eq(&p.key, key))?;
        match person.opened.get(stored) {
            Some((of, clear)) if &**of == field => Some(clear.clone()),
            _ => None,
        }
    }

    fn remember_opened(&self, user: &str, key: &UserKey, field: &str, stored: &str, clear: &str) {
        let mut people = self.people();
        if let Some(person) = people.get_mut(user).filter(|p| Arc::ptr_eq(&p.key, key)) {
            if person.opened.len() >= VALUES_PER_PERSON {
                person.opened.clear();
            }
            person
                .opened
                .insert(Box::from(stored), (Box::from(field), clear.to_owned()));
        }
    }

    /// [`ReadModelSeal::new`] as the shared seal read models are given.
    pub fn shared(keys: Arc<PersonalKeys>, vault: Arc<Vault>) -> Arc<dyn PersonalSeal> {
        Arc::new(ReadModelSeal::new(keys, vault))
    }

    /// A seal whose keys (and vault) live in memory only, for read models that are thrown away
    /// with the process: tests and benchmarks.
    pub fn in_memory() -> Arc<dyn PersonalSeal> {
        let keys = Arc::new(PersonalKeys::new(Arc::new(
            crate::store::MemoryKeyStore::default(),
        )));
        let vault = Arc::new(Vault::generate().expect("the operating system's random source"));
        ReadModelSeal::shared(keys, vault)
    }
}

fn unavailable(error: PersonalDataError) -> SealError {
    SealError(error.to_string())
}

fn gone(user: &str, field: &str) -> Option<String> {
    match placeholder(user, field) {
        serde_json::Value::String(text) => Some(text),
        _ => None,
    }
}

impl PersonalSeal for ReadModelSeal {
    fn seal(&self, user: &str, field: &str, value: &str) -> Result<Option<String>, SealError> {
        if value.is_empty() {
            return Ok(Some(String::new()));
        }
        let key = match self.keys.for_writing_now(user) {
            Ok(key) => key,
            Err(PersonalDataError::Erased(_)) => {
                self.people().remove(user);
                return Ok(gone(user, field));
            }
            Err(error) => return Err(unavailable(error)),
        };
        seal_with(&self.derived(user, &key), user, field, value).map(Some)
    }

    fn open(&self, user: &str, field: &str, stored: &str) -> Result<Option<String>, SealError> {
        if !stored.starts_with(SEALED_PREFIX) {
            return Ok(Some(stored.to_owned()));
        }
        let Some(key) = self.keys.for_reading_now(user).map_err(unavailable)? else {
            // Gone: nothing opened of theirs stays in memory either.
            self.people().remove(user);
            return Ok(gone(user, field));
        };
        if let Some(clear) = self.opened_lately(user, &key, field, stored) {
            return Ok(Some(clear));
        }
        match open_with(&self.derived(user, &key), user, field, stored) {
            Some(clear) => {
                self.remember_opened(user, &key, field, stored, &clear);
                Ok(Some(clear))
            }
            None => Ok(gone(user, field)),
        }
    }

    fn blind(&self, purpose: &str, value: &str) -> String {
        self.vault.blind_index(purpose, value).as_str().to_owned()
    }
}

fn derive_keys(key: &[u8; 32]) -> Derived {
    let derive = |label: &[u8]| {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
        mac.update(label);
        Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()))
    };
    Derived {
        cipher: derive(b"idstream read model: cipher"),
        nonce: derive(b"idstream read model: nonce"),
    }
}

fn associated_data(user: &str, field: &str) -> String {
    format!("pr1|{user}|{field}")
}

/// Seals `value` of `field` of `user` under `key`, deterministically.
pub fn seal(key: &[u8; 32], user: &str, field: &str, value: &str) -> Result<String, SealError> {
    seal_with(&derive_keys(key), user, field, value)
}

fn seal_with(keys: &Derived, user: &str, field: &str, value: &str) -> Result<String, SealError> {
    let (cipher_key, nonce_key) = (&keys.cipher, &keys.nonce);
    let ad = associated_data(user, field);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&nonce_key[..]).expect("any key length");
    mac.update(ad.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&digest[..NONCE_LEN]);
    let mut buffer = Vec::with_capacity(NONCE_LEN + value.len() + TAG_LEN);
    buffer.extend_from_slice(value.as_bytes());
    XChaCha20Poly1305::new(&Key::from(**cipher_key))
        .encrypt_in_place(&XNonce::from(nonce), ad.as_bytes(), &mut buffer)
        .map_err(|_| SealError("a personal value is too long to seal".into()))?;
    buffer.splice(0..0, nonce);
    Ok(format!(
        "{SEALED_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(&buffer)
    ))
}

/// Opens a value made by [`seal`]; `None` if it does not open (another key, user or field, or
/// altered).
pub fn open(key: &[u8; 32], user: &str, field: &str, stored: &str) -> Option<String> {
    open_with(&derive_keys(key), user, field, stored)
}

fn open_with(keys: &Derived, user: &str, field: &str, stored: &str) -> Option<String> {
    let raw = URL_SAFE_NO_PAD
        .decode(stored.strip_prefix(SEALED_PREFIX)?)
        .ok()?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let nonce = <&XNonce>::try_from(nonce).ok()?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    XChaCha20Poly1305::new(&Key::from(*keys.cipher))
        .decrypt_in_place(nonce, associated_data(user, field).as_bytes(), &mut *buffer)
        .ok()?;
    String::from_utf8(buffer.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileKeyStore;

    const USER: &str = "01J00000000000000000000USR";

    fn sealer(dir: &std::path::Path) -> (Arc<PersonalKeys>, ReadModelSeal) {
        let keys = Arc::new(PersonalKeys::new(Arc::new(
            FileKeyStore::open(dir.join("keys")).unwrap(),
        )));
        let vault = Arc::new(Vault::generate().unwrap());
        (keys.clone(), ReadModelSeal::new(keys, vault))
    }

    #[test]
    fn sealed_values_are_deterministic_opaque_and_bound_to_user_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let (_, seal) = sealer(dir.path());
        let sealed = seal
            .seal(USER, "email", "canary@example.com")
            .unwrap()
            .unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("canary"));
        assert_eq!(
            Some(sealed.clone()),
            seal.seal(USER, "email", "canary@example.com").unwrap()
        );
        assert_ne!(
            Some(sealed.clone()),
            seal.seal(USER, "email", "other@example.com").unwrap()
        );
        assert_eq!(
            seal.open(USER, "email", &sealed).unwrap().as_deref(),
            Some("canary@example.com")
        );
        // Moved to another field or person, it does not open: the placeholder is read.
        assert_eq!(
            seal.open(USER, "first_name", &sealed).unwrap().as_deref(),
            Some("")
        );
        let other = "01J00000000000000000000OTH";
        seal.seal(other, "email", "x@example.com").unwrap();
        assert_eq!(
            seal.open(other, "email", &sealed).unwrap().as_deref(),
            Some("erased-01j00000000000000000000oth@erased.invalid")
        );
        // Values never sealed (placeholders) and empty ones pass as they are.
        assert_eq!(
            seal.seal(USER, "last_name", "").unwrap().as_deref(),
            Some("")
        );
        assert_eq!(
            seal.open(USER, "image_url", "").unwrap().as_deref(),
            Some("")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_the_person_is_erased_nothing_opens_and_nothing_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, seal) = sealer(dir.path());
        let sealed = seal.seal(USER, "first_name", "Canary").unwrap().unwrap();
        keys.erase(USER).await.unwrap();
        assert_eq!(
            seal.open(USER, "first_name", &sealed).unwrap().as_deref(),
            Some("")
        );
        assert_eq!(seal.seal(USER, "image_url", "https://x").unwrap(), None);
        // A process that starts afresh reads the tombstone from the store.
        let (_, fresh) = sealer(dir.path());
        assert_eq!(
            fresh.open(USER, "first_name", &sealed).unwrap().as_deref(),
            Some("")
        );
        assert_eq!(
            fresh
                .seal(USER, "email", "again@example.com")
                .unwrap()
                .as_deref(),
            Some("erased-01j00000000000000000000usr@erased.invalid")
        );
    }

    #[test]
    fn blind_indexes_are_keyed_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (_, seal) = sealer(dir.path());
        let a = seal.blind("email-claim", "ada@example.com");
        assert_eq!(a, seal.blind("email-claim", "ada@example.com"));
        assert!(!a.contains("ada"));
        assert_ne!(a, seal.blind("email-claim", "bob@example.com"));
    }
}
