//! Personal data in events, encrypted per user so that erasing a user is destroying one key
//! (crypto-shredding, F-AU-4).
//!
//! The fields listed in [`idstream_domain::events::PERSONAL_DATA`] (emails, names, image URLs,
//! the IP address and user agent of sign-ins and failed attempts) are stored in the log as
//! `pd1.<base64url(nonce ‖ ciphertext ‖ tag)>`: XChaCha20-Poly1305 under a 256-bit key of the
//! user the event is about ([`personal_data_owner`]), with `pd1|<user>|<event id>|<field>` as
//! associated data, so a value copied into another event, field or user does not open.
//!
//! Each user's key is one document in the [`KeyStore`] (`pd-<user id>`), apart from the log. To
//! erase a user its document is replaced by a tombstone: from then on nobody, this service
//! included, can read the user's personal data in any copy of the log, and the tombstone keeps a
//! later write from giving the user a fresh key. Readers then see neutral placeholders
//! ([`placeholder`]) in place of the values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use idstream_domain::EventEnvelope;
use idstream_domain::events::{personal_data_owner, personal_fields};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::store::{KeyStore, KeyStoreError};

/// What every encrypted personal value starts with.
pub const PERSONAL_PREFIX: &str = "pd1.";

/// What a user's key document holds once the user is erased.
const TOMBSTONE: &[u8] = b"erased";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Keys held in memory at most; when full, an eighth of them, chosen arbitrarily, is forgotten
/// (forgotten keys are re-read on demand). Read models open personal fields on every query and
/// the search index opens every user's at start, so the cache holds everyone's key up to two
/// million people (about 130 MB per million; a cache sized for exactly a million left an eighth
/// of a million-member directory reading key files); beyond that most reads still find their
/// key here and the rest wait for the key store, instead of every read doing so after the cache
/// was emptied.
const CACHE_LIMIT: usize = 2_000_000;

/// How many compare-and-swap attempts an erasure makes.
const MAX_ERASE_ATTEMPTS: u32 = 8;

/// Why personal data could not be encrypted or its key handled. Never carries a key or a value.
#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    #[error("user {0} is erased: no personal data can be written for them")]
    Erased(String),
    #[error("{0:?} is not a user id that can name a key")]
    InvalidUser(String),
    #[error("a {0} event carries personal data but names no user whose key could encrypt it")]
    NoOwner(String),
    #[error("the operating system's random number generator failed")]
    RandomSource,
    #[error("a personal value is too long to encrypt")]
    TooLong,
    #[error("gave up erasing the key of user {0} after repeated conflicting writes")]
    Contention(String),
    /// Sealed values prove the key was created, so the store, or this replica's view of it (a
    /// JetStream KV replica that has not caught up, a node cut off from the others), is behind:
    /// try again later. Never read as an erasure, which leaves a tombstone.
    #[error(
        "the personal-data key of user {0} is not in the key store (yet); an erased user's key \
         leaves a tombstone, so the key store is behind or incomplete"
    )]
    KeyMissing(String),
}

pub type UserKey = Arc<Zeroizing<[u8; KEY_LEN]>>;

#[derive(Clone)]
enum Slot {
    Key(UserKey),
    /// Erased, or no key exists although encrypted data does (a lost key store): unreadable.
    Gone,
}

impl Slot {
    fn key(self) -> Option<UserKey> {
        match self {
            Slot::Key(key) => Some(key),
            Slot::Gone => None,
        }
    }
}

/// The per-user keys, read through a small cache.
pub struct PersonalKeys {
    store: Arc<dyn KeyStore>,
    cache: Mutex<HashMap<String, Slot>>,
    limit: usize,
}

impl std::fmt::Debug for PersonalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalKeys").finish_non_exhaustive()
    }
}

impl PersonalKeys {
    pub fn new(store: Arc<dyn KeyStore>) -> PersonalKeys {
        PersonalKeys::with_cache_limit(store, CACHE_LIMIT)
    }

    fn with_cache_limit(store: Arc<dyn KeyStore>, limit: usize) -> PersonalKeys {
        PersonalKeys {
            store,
            cache: Mutex::new(HashMap::new()),
            limit: limit.max(1),
        }
    }

    fn cached(&self, user: &str) -> Option<Slot> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user)
            .cloned()
    }

    fn remember(&self, user: &str, slot: Slot) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.limit && !cache.contains_key(user) {
            // The first and every eighth entry after it in the map's (randomly seeded) order:
            // an arbitrary eighth, and at least one.
            let mut seen = 0usize;
            cache.retain(|_, _| {
                seen += 1;
                !(seen - 1).is_multiple_of(8)
            });
        }
        cache.insert(user.to_owned(), slot);
    }

    /// The user's key, created if they have none yet. Refused once the user is erased.
    pub async fn for_writing(&self, user: &str) -> Result<UserKey, PersonalDataError> {
        if let Some(Slot::Key(key)) = self.cached(user) {
            return Ok(key);
        }
        let name = key_name(user)?;
        let slot = match self.store.get(&name).await? {
            Some(stored) => parse(&stored),
            None => {
                let mut fresh = Zeroizing::new([0u8; KEY_LEN]);
                OsRng
                    .try_fill_bytes(&mut fresh[..])
                    .map_err(|_| PersonalDataError::RandomSource)?;
                if self.store.create(&name, &fresh[..]).await? {
                    Slot::Key(Arc::new(fresh))
                } else {
                    // Another writer created it first: use theirs (once this replica sees it).
                    match self.store.get(&name).await? {
                        Some(stored) => parse(&stored),
                        None => return Err(PersonalDataError::KeyMissing(user.to_owned())),
                    }
                }
            }
        };
        self.remember(user, slot.clone());
        match slot {
            Slot::Key(key) => Ok(key),
            Slot::Gone => Err(PersonalDataError::Erased(user.to_owned())),
        }
    }

    /// The user's key, or `None` if it no longer exists (erased: a tombstone). Called for
    /// sealed values, which prove the key was created: a key not in the store at all is
    /// [`PersonalDataError::KeyMissing`], never taken for an erasure, and not remembered.
    pub async fn for_reading(&self, user: &str) -> Result<Option<UserKey>, PersonalDataError> {
        let slot = match self.cached(user) {
            Some(slot) => slot,
            None => {
                let name = key_name(user)?;
                self.stored(user, self.store.get(&name).await?)?
            }
        };
        Ok(slot.key())
    }

    /// What the store held for `user`'s key, remembered; a key never created is an error.
    fn stored(
        &self,
        user: &str,
        stored: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Slot, PersonalDataError> {
        let Some(stored) = stored else {
            return Err(PersonalDataError::KeyMissing(user.to_owned()));
        };
        let slot = parse(&stored);
        self.remember(user, slot.clone());
        Ok(slot)
    }

    /// [`PersonalKeys::for_writing`] from code that cannot wait (a read model's fold, a query):
    /// from memory when the key is there, as it is right after the decrypting log used it;
    /// otherwise the key store is asked and the calling thread waits for it.
    pub fn for_writing_now(&self, user: &str) -> Result<UserKey, PersonalDataError> {
        match self.cached(user) {
            Some(Slot::Key(key)) => Ok(key),
            Some(Slot::Gone) => Err(PersonalDataError::Erased(user.to_owned())),
            None => wait_for(self.for_writing(user)),
        }
    }

    /// [`PersonalKeys::for_reading`] from code that cannot wait (see
    /// [`PersonalKeys::for_writing_now`]).
    /// A store that answers on the calling thread ([`KeyStore::get_now`]: a file, memory) is
    /// read there; only a remote one is waited for on the runtime.
    pub fn for_reading_now(&self, user: &str) -> Result<Option<UserKey>, PersonalDataError> {
        match self.cached(user) {
            Some(Slot::Key(key)) => Ok(Some(key)),
            Some(Slot::Gone) => Ok(None),
            None => {
                let name = key_name(user)?;
                match self.store.get_now(&name) {
                    Some(stored) => Ok(self.stored(user, stored?)?.key()),
                    None => wait_for(self.for_reading(user)),
                }
            }
        }
    }

    /// Whether this process already knows the user's key to be gone.
    pub fn known_erased(&self, user: &str) -> bool {
        matches!(self.cached(user), Some(Slot::Gone))
    }

    /// Destroys the user's key for good (idempotent): the stored key is replaced by a tombstone,
    /// so it cannot be read again and no new key can be created for the user.
    pub async fn erase(&self, user: &str) -> Result<(), PersonalDataError> {
        let name = key_name(user)?;
        for _ in 0..MAX_ERASE_ATTEMPTS {
            let done = match self.store.get(&name).await? {
                Some(stored) if stored.as_slice() == TOMBSTONE => true,
                Some(stored) => self.store.replace(&name, &stored, TOMBSTONE).await?,
                None => self.store.create(&name, TOMBSTONE).await?,
            };
            if done {
                self.remember(user, Slot::Gone);
                return Ok(());
            }
        }
        Err(PersonalDataError::Contention(user.to_owned()))
    }
}

/// Runs `future` to its end on the calling thread, which must be allowed to block: a blocking
/// thread, a worker of a multi-threaded runtime (which hands its other tasks to other workers
/// meanwhile), or no runtime at all. On a single-threaded runtime's own thread the future must not
/// need that runtime to make progress (the file key store does not).
fn wait_for<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        Ok(_) => futures::executor::block_on(future),
        // No runtime at all: a small one for the wait (the key stores' IO needs one).
        Err(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(future),
            Err(_) => futures::executor::block_on(future),
        },
    }
}

fn parse(stored: &[u8]) -> Slot {
    match <[u8; KEY_LEN]>::try_from(stored) {
        Ok(key) => Slot::Key(Arc::new(Zeroizing::new(key))),
        // The tombstone, or anything else that is not a key: nothing can be read with it.
        Err(_) => Slot::Gone,
    }
}

/// The user whose personal-data key `name` is (in lower case, as the key store names it), if
/// it is one.
pub fn user_of_key_name(name: &str) -> Option<&str> {
    name.strip_prefix("pd-")
}

/// Whether a stored personal-data key document is an erased user's tombstone.
pub fn is_tombstone(value: &[u8]) -> bool {
    value == TOMBSTONE
}

/// `pd-<user id in lower case>`: user ids are ULIDs, which fit the key store's names.
fn key_name(user: &str) -> Result<String, PersonalDataError> {
    let valid =
        !user.is_empty() && user.len() <= 60 && user.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        return Err(PersonalDataError::InvalidUser(user.to_owned()));
    }
    Ok(format!("pd-{}", user.to_ascii_lowercase()))
}

fn associated_data(user: &str, event_id: &str, field: &str) -> String {
    format!("pd1|{user}|{event_id}|{field}")
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&Key::from(*key))
}

/// Encrypts one personal value.
pub fn encrypt(
    key: &[u8; KEY_LEN],
    user: &str,
    event_id: &str,
    field: &str,
    plaintext: &str,
) -> Result<String, PersonalDataError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| PersonalDataError::RandomSource)?;
    let mut buffer = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    buffer.extend_from_slice(plaintext.as_bytes());
    cipher(key)
        .encrypt_in_place(
            &XNonce::from(nonce),
            associated_data(user, event_id, field).as_bytes(),
            &mut buffer,
        )
        .map_err(|_| PersonalDataError::TooLong)?;
    buffer.splice(0..0, nonce);
    Ok(format!(
        "{PERSONAL_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(&buffer)
    ))
}

/// Decrypts one value made by [`encrypt`]; `None` if it does not open (wrong key, user, event or
/// field, or altered).
pub fn decrypt(
    key: &[u8; KEY_LEN],
    user: &str,
    event_id: &str,
    field: &str,
    value: &str,
) -> Option<String> {
    let payload = value.strip_prefix(PERSONAL_PREFIX)?;
    let raw = URL_SAFE_NO_PAD.decode(payload).ok()?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let nonce = <&XNonce>::try_from(nonce).ok()?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher(key)
        .decrypt_in_place(
            nonce,
            associated_data(user, event_id, field).as_bytes(),
            &mut *buffer,
        )
        .ok()?;
    String::from_utf8(buffer.to_vec()).ok()
}

/// What a reader sees in place of a personal value that can no longer be read: an address of
/// the reserved `.invalid` domain, unique per user (so indexes of addresses never collide), empty
/// names, and nothing (null) for the optional fields (image, source address, user agent).
pub fn placeholder(user: &str, field: &str) -> Value {
    match field {
        "email" => Value::String(format!(
            "erased-{}@erased.invalid",
            user.to_ascii_lowercase()
        )),
        "image_url" | "ip" | "user_agent" => Value::Null,
        _ => Value::String(String::new()),
    }
}

/// The user whose personal data `envelope` carries, with the fields that hold it; `None` for
/// events without personal data, or whose owner cannot be told (see [`personal_data_owner`]).
pub fn personal_subject(envelope: &EventEnvelope) -> Option<(&str, &'static [&'static str])> {
    let fields = personal_fields(&envelope.event_type);
    if fields.is_empty() {
        return None;
    }
    personal_data_owner(envelope).map(|user| (user, fields))
}

/// Encrypts the personal values of `envelope` in place (values already encrypted are kept).
/// An event with personal values in the clear whose owner cannot be told is refused rather than
/// stored readable for good.
pub async fn seal_envelope(
    keys: &PersonalKeys,
    envelope: &mut EventEnvelope,
) -> Result<(), PersonalDataError> {
    let Some((user, fields)) = personal_subject(envelope) else {
        let fields = personal_fields(&envelope.event_type);
        let clear = fields
            .iter()
            .any(|f| envelope.data.get(*f).is_some_and(holds_clear_values));
        if clear {
            return Err(PersonalDataError::NoOwner(envelope.event_type.clone()));
        }
        return Ok(());
    };
    let user = user.to_owned();
    let event_id = envelope.id.to_string();
    let Value::Object(data) = &mut envelope.data else {
        return Ok(());
    };
    let clear: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| data.get(*f).is_some_and(holds_clear_values))
        .collect();
    if clear.is_empty() {
        return Ok(());
    }
    let key = keys.for_writing(&user).await?;
    for field in clear {
        match data.get_mut(field) {
            Some(Value::String(plain)) => {
                let sealed = encrypt(&key, &user, &event_id, field, plain)?;
                data.insert(field.to_owned(), Value::String(sealed));
            }
            // An object's members are sealed one by one, each as its JSON text.
            Some(Value::Object(members)) => {
                for (name, value) in members.iter_mut() {
                    if is_sealed(value) || value.is_null() {
                        continue;
                    }
                    let member = member_field(field, name);
                    let sealed = encrypt(&key, &user, &event_id, &member, &value.to_string())?;
                    *value = Value::String(sealed);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_sealed(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.starts_with(PERSONAL_PREFIX))
}

/// Whether a personal field holds something not sealed yet: a clear string, or an object with a
/// clear member.
fn holds_clear_values(value: &Value) -> bool {
    match value {
        Value::String(_) => !is_sealed(value),
        Value::Object(members) => members.values().any(|v| !v.is_null() && !is_sealed(v)),
        _ => false,
    }
}

/// The name a member of an object-valued personal field is sealed under (associated data).
fn member_field(field: &str, member: &str) -> String {
    format!("{field}.{member}")
}

/// Decrypts the personal values of `envelope` in place, or puts [`placeholder`]s where they can
/// no longer be read. Fails only if the key store cannot be asked.
pub async fn open_envelope(
    keys: &PersonalKeys,
    envelope: &mut EventEnvelope,
) -> Result<(), PersonalDataError> {
    let Some((user, fields)) = personal_subject(envelope) else {
        return Ok(());
    };
    let user = user.to_owned();
    let event_id = envelope.id.to_string();
    let Value::Object(data) = &mut envelope.data else {
        return Ok(());
    };
    let sealed: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| match data.get(*f) {
            Some(Value::Object(members)) => members.values().any(is_sealed),
            Some(value) => is_sealed(value),
            None => false,
        })
        .collect();
    if sealed.is_empty() {
        return Ok(());
    }
    let key = keys.for_reading(&user).await?;
    for field in sealed {
        if let Some(Value::Object(members)) = data.get_mut(field) {
            // Each member opens to the JSON value it was, or null once it cannot be read.
            for (name, value) in members.iter_mut() {
                let Value::String(text) = &*value else {
                    continue;
                };
                if !text.starts_with(PERSONAL_PREFIX) {
                    continue;
                }
                let member = member_field(field, name);
                *value = key
                    .as_ref()
                    .and_then(|key| decrypt(key, &user, &event_id, &member, text))
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or(Value::Null);
            }
            continue;
        }
        let opened = match (&key, data.get(field)) {
            (Some(key), Some(Value::String(value))) => {
                decrypt(key, &user, &event_id, field, value).map(Value::String)
            }
            _ => None,
        };
        let value = opened.unwrap_or_else(|| placeholder(&user, field));
        data.insert(field.to_owned(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileKeyStore, KeyStore};
    use idstream_domain::{Actor, AggregateRef, AggregateType};
    use serde_json::json;

    const USER: &str = "01J00000000000000000000USR";

    fn keys(dir: &std::path::Path) -> PersonalKeys {
        PersonalKeys::new(Arc::new(FileKeyStore::open(dir).unwrap()))
    }

    fn registered(email: &str) -> EventEnvelope {
        EventEnvelope {
            id: ulid::Ulid::new(),
            event_type: "UserRegistered".into(),
            version: 1,
            tenant: None,
            aggregate: AggregateRef {
                kind: AggregateType::User,
                id: USER.into(),
            },
            actor: Actor::system("test"),
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
            correlation_id: "c".into(),
            causation_id: None,
            data: json!({"email": email, "first_name": "Ada", "last_name": "Lovelace", "tenant": "acme"}),
        }
    }

    #[tokio::test]
    async fn a_key_missing_from_the_store_is_not_taken_for_an_erasure() {
        let (written, behind) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut event = registered("ada@example.com");
        seal_envelope(&keys(written.path()), &mut event)
            .await
            .unwrap();
        // A replica whose view of the store has not caught up: an error to retry, no
        // placeholders, and nothing remembered.
        let reader = keys(behind.path());
        let mut read = event.clone();
        assert!(matches!(
            open_envelope(&reader, &mut read).await,
            Err(PersonalDataError::KeyMissing(user)) if user == USER
        ));
        assert!(!reader.known_erased(USER));
        // Once the key is there, the same reader opens the values.
        let name = key_name(USER).unwrap();
        let key = FileKeyStore::open(written.path())
            .unwrap()
            .get(&name)
            .await
            .unwrap()
            .unwrap();
        let copied = FileKeyStore::open(behind.path())
            .unwrap()
            .create(&name, &key)
            .await
            .unwrap();
        assert!(copied);
        open_envelope(&reader, &mut read).await.unwrap();
        assert_eq!(read.data["email"], "ada@example.com");
    }

    /// A file store answers a query's read on the calling thread, outside any runtime too: the
    /// key written, a key never made (an error, not remembered), and an erased one.
    #[test]
    fn a_file_store_is_read_on_the_calling_thread() {
        let dir = tempfile::tempdir().unwrap();
        let writer = keys(dir.path());
        let written = writer.for_writing_now(USER).unwrap();
        let other = "01J00000000000000000000OTH";

        let reader = keys(dir.path());
        let store = FileKeyStore::open(dir.path()).unwrap();
        assert!(store.get_now(&key_name(USER).unwrap()).is_some());
        let read = reader.for_reading_now(USER).unwrap().unwrap();
        assert_eq!(read.as_slice(), written.as_slice());
        assert!(matches!(
            reader.for_reading_now(other),
            Err(PersonalDataError::KeyMissing(user)) if user == other
        ));
        assert!(!reader.known_erased(other));

        wait_for(writer.erase(USER)).unwrap();
        let fresh = keys(dir.path());
        assert!(fresh.for_reading_now(USER).unwrap().is_none());
        assert!(fresh.known_erased(USER));
    }

    /// A full cache forgets an eighth of its keys, not all of them, and a forgotten key reads
    /// back the same from the store.
    #[test]
    fn a_full_cache_forgets_only_some_of_its_keys() {
        let store: Arc<dyn KeyStore> = Arc::new(crate::MemoryKeyStore::default());
        let writer = PersonalKeys::new(store.clone());
        let users: Vec<String> = (0..200)
            .map(|n| format!("01J000000000000000000{n:05}"))
            .collect();
        let written: Vec<UserKey> = users
            .iter()
            .map(|user| writer.for_writing_now(user).unwrap())
            .collect();

        let reader = PersonalKeys::with_cache_limit(store, 64);
        for user in &users[..64] {
            reader.for_reading_now(user).unwrap().unwrap();
        }
        assert_eq!(reader.cache.lock().unwrap().len(), 64);
        reader.for_reading_now(&users[64]).unwrap().unwrap();
        let held = reader.cache.lock().unwrap().len();
        assert_eq!(
            held,
            64 - 64 / 8 + 1,
            "an eighth forgotten, the new key remembered"
        );
        for (user, key) in users.iter().zip(&written) {
            let read = reader.for_reading_now(user).unwrap().unwrap();
            assert_eq!(read.as_slice(), key.as_slice());
            let held = reader.cache.lock().unwrap().len();
            assert!((56..=64).contains(&held), "{held} keys held");
            assert!(reader.cached(user).is_some(), "the key just read is held");
        }
    }

    #[tokio::test]
    async fn personal_values_are_encrypted_and_open_again_with_the_users_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = registered("ada@example.com");
        seal_envelope(&keys, &mut event).await.unwrap();
        let stored = serde_json::to_string(&event).unwrap();
        assert!(!stored.contains("ada@example.com") && !stored.contains("Lovelace"));
        assert_eq!(event.data["tenant"], "acme");
        assert!(
            event.data["email"]
                .as_str()
                .unwrap()
                .starts_with(PERSONAL_PREFIX)
        );

        // A fresh reader (another replica) with the same store opens it.
        let mut read = event.clone();
        open_envelope(&self::keys(dir.path()), &mut read)
            .await
            .unwrap();
        assert_eq!(read.data["email"], "ada@example.com");
        assert_eq!(read.data["last_name"], "Lovelace");
    }

    #[tokio::test]
    async fn attribute_values_are_sealed_one_by_one_and_read_as_null_after_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = EventEnvelope {
            event_type: "UserAttributesChanged".into(),
            data: json!({"tenant": "acme", "values": {
                "department": "Canary Sales", "employee_no": 4242, "remote": true}}),
            ..registered("ada@example.com")
        };
        seal_envelope(&keys, &mut event).await.unwrap();
        let stored = serde_json::to_string(&event).unwrap();
        assert!(
            !stored.contains("Canary") && !stored.contains("4242"),
            "{stored}"
        );
        // Names stay readable (they are the tenant's schema); every value is sealed.
        let values = event.data["values"].as_object().unwrap();
        assert_eq!(values.len(), 3);
        assert!(values.values().all(is_sealed), "{stored}");
        // A value moved to another member does not open.
        let mut moved = event.clone();
        moved.data["values"]["remote"] = event.data["values"]["department"].clone();
        open_envelope(&keys, &mut moved).await.unwrap();
        assert_eq!(moved.data["values"]["remote"], Value::Null);

        let mut read = event.clone();
        open_envelope(&self::keys(dir.path()), &mut read)
            .await
            .unwrap();
        assert_eq!(
            read.data["values"],
            json!({"department": "Canary Sales", "employee_no": 4242, "remote": true})
        );
        keys.erase(USER).await.unwrap();
        let mut read = event.clone();
        open_envelope(&self::keys(dir.path()), &mut read)
            .await
            .unwrap();
        assert_eq!(
            read.data["values"],
            json!({"department": null, "employee_no": null, "remote": null})
        );
    }

    #[tokio::test]
    async fn after_erasure_nobody_reads_the_values_and_no_new_key_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let writer = keys(dir.path());
        let mut event = registered("ada@example.com");
        seal_envelope(&writer, &mut event).await.unwrap();
        writer.erase(USER).await.unwrap();
        writer.erase(USER).await.unwrap();

        let reader = keys(dir.path());
        let mut read = event.clone();
        open_envelope(&reader, &mut read).await.unwrap();
        assert_eq!(
            read.data["email"],
            format!("erased-{}@erased.invalid", USER.to_ascii_lowercase())
        );
        assert_eq!(read.data["first_name"], "");
        assert!(matches!(
            reader.for_writing(USER).await,
            Err(PersonalDataError::Erased(_))
        ));
        // The key file holds only the tombstone.
        let file = std::fs::read(
            dir.path()
                .join(format!("pd-{}.key", USER.to_ascii_lowercase())),
        )
        .unwrap();
        assert_eq!(file, TOMBSTONE);
    }

    #[tokio::test]
    async fn a_value_moved_to_another_field_or_event_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = registered("ada@example.com");
        seal_envelope(&keys, &mut event).await.unwrap();
        let key = keys.for_reading(USER).await.unwrap().unwrap();
        let email = event.data["email"].as_str().unwrap();
        let id = event.id.to_string();
        assert_eq!(
            decrypt(&key, USER, &id, "email", email).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(decrypt(&key, USER, &id, "first_name", email), None);
        assert_eq!(
            decrypt(&key, USER, "01J0000000000000000000000X", "email", email),
            None
        );
        assert_eq!(
            decrypt(&key, "01J00000000000000000000OTH", &id, "email", email),
            None
        );
    }

    fn session_started(data: Value) -> EventEnvelope {
        let mut event = registered("unused@example.com");
        event.event_type = "SessionStarted".into();
        event.version = 2;
        event.aggregate = AggregateRef {
            kind: AggregateType::Session,
            id: "01J0000000000000000000SESS".into(),
        };
        event.data = data;
        event
    }

    #[tokio::test]
    async fn a_sign_in_source_is_sealed_with_the_key_of_the_user_who_signed_in() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = session_started(json!({
            "user": USER, "tenant": "acme", "ip": "198.51.100.23", "user_agent": "Canary/1.0",
        }));
        seal_envelope(&keys, &mut event).await.unwrap();
        let stored = serde_json::to_string(&event).unwrap();
        assert!(
            !stored.contains("198.51.100.23") && !stored.contains("Canary"),
            "{stored}"
        );
        // The user's own key, not one named after the session.
        let key = keys.for_reading(USER).await.unwrap().unwrap();
        let id = event.id.to_string();
        let ip = event.data["ip"].as_str().unwrap();
        assert_eq!(
            decrypt(&key, USER, &id, "ip", ip).as_deref(),
            Some("198.51.100.23")
        );

        keys.erase(USER).await.unwrap();
        let mut read = event.clone();
        open_envelope(&self::keys(dir.path()), &mut read)
            .await
            .unwrap();
        assert_eq!(read.data["ip"], Value::Null);
        assert_eq!(read.data["user_agent"], Value::Null);
        assert_eq!(read.data["user"], USER);
    }

    #[tokio::test]
    async fn personal_data_whose_owner_cannot_be_told_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = session_started(json!({"tenant": "acme", "ip": "198.51.100.23"}));
        assert!(matches!(
            seal_envelope(&keys, &mut event).await,
            Err(PersonalDataError::NoOwner(_))
        ));
        // Without personal values there is nothing to protect.
        let mut event = session_started(json!({"tenant": "acme"}));
        seal_envelope(&keys, &mut event).await.unwrap();
    }

    #[tokio::test]
    async fn events_without_personal_data_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let mut event = registered("ada@example.com");
        event.event_type = "UserSuspended".into();
        event.data = json!({"reason": "x"});
        let before = event.clone();
        seal_envelope(&keys, &mut event).await.unwrap();
        assert_eq!(event, before);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("pd-"))
        );
    }
}
