//! [`Keys`]: the vault and the signing key ring as the service uses them, loaded from a
//! [`KeyStore`] shared by every replica.

use std::sync::{Arc, PoisonError, RwLock};

use idstream_auth::{KeyRing, KeyRingError};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::store::{KeyStore, KeyStoreError};
use crate::vault::{Vault, VaultError};

/// The store name of the vault document ([`Vault::to_json`]).
pub const VAULT_DOCUMENT: &str = "vault";

/// The store name of the signing key ring document ([`KeyRing::to_json`]).
pub const SIGNING_DOCUMENT: &str = "signing";

/// A signing key younger than this was rotated in by another replica while this one tried to
/// rotate: it is accepted instead of rotating once more.
pub const RECENT_ROTATION: Duration = Duration::minutes(1);

/// How many compare-and-swap attempts a rotation makes before giving up. Each conflict means
/// another replica rotated, and after one conflict the other replica's key is normally accepted.
const MAX_ROTATION_ATTEMPTS: u32 = 8;

/// Why keys could not be loaded or rotated. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    #[error("the stored vault cannot be read: {0}")]
    Vault(VaultError),
    #[error("the stored signing key ring cannot be read: {0}")]
    Signing(KeyRingError),
    #[error("the stored {0:?} document is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the {0:?} document disappeared from the key store")]
    Missing(&'static str),
    #[error(
        "gave up rotating the {0:?} document after {MAX_ROTATION_ATTEMPTS} conflicting attempts"
    )]
    Contention(&'static str),
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This call rotated; `kid` is the new current key.
    Rotated { kid: String },
    /// Another replica rotated concurrently; its key, `kid`, was accepted.
    ConcurrentAccepted { kid: String },
    /// The current key is not old enough yet ([`Keys::rotate_signing_if_older_than`]).
    NotDue,
}

/// A staged next signing key ([`Keys::stage_signing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The next key's id: in the JWK Set from now on.
    pub kid: String,
    /// When it starts signing.
    pub signs_from: OffsetDateTime,
    /// Whether this call staged it (otherwise it was staged before).
    pub new: bool,
}

/// How the signing keys rotate by themselves ([`Keys::upkeep_signing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A signing key is replaced once it is this old (counted from when it was staged); `None`
    /// rotates only when asked.
    pub period: Option<Duration>,
    /// How long a next key is published before it signs: longer than the replicas take to
    /// re-read the key store, and than verifiers cache the JWK Set.
    pub lead: Duration,
}

/// The service's keys: the [`Vault`] (sealing and blind indexes) and the signing [`KeyRing`].
///
/// Readers take cheap snapshots ([`Keys::vault`], [`Keys::signing`]); [`Keys::reload`] and the
/// rotations swap them. A snapshot taken before a swap stays valid for as long as it is held.
pub struct Keys {
    store: Arc<dyn KeyStore>,
    vault: RwLock<Arc<Vault>>,
    signing: RwLock<Arc<KeyRing>>,
    /// When [`Keys::reload_if_not_since`] last re-read the store.
    last_reload: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Keys {
    /// Reads the vault and the signing key ring from `store`, creating whichever is missing.
    ///
    /// Race-safe: replicas starting together each try to create a missing document, exactly
    /// one succeeds, and the others read the winner's. `token_ttl` (the longest lifetime of an
    /// access token) applies to a key ring created here; a stored key ring keeps its own.
    pub async fn load_or_create(
        store: Arc<dyn KeyStore>,
        now: OffsetDateTime,
        token_ttl: Duration,
    ) -> Result<Keys, KeysError> {
        let vault = load_or_create_document(store.as_ref(), VAULT_DOCUMENT, || {
            Ok(Vault::generate().map_err(KeysError::Vault)?.to_json())
        })
        .await?;
        let vault = parse_vault(&vault)?;
        let signing = load_or_create_document(store.as_ref(), SIGNING_DOCUMENT, || {
            Ok(KeyRing::generate(now, token_ttl).to_json())
        })
        .await?;
        let signing = parse_ring(&signing)?;
        Ok(Keys {
            store,
            vault: RwLock::new(Arc::new(vault)),
            signing: RwLock::new(Arc::new(signing)),
            last_reload: std::sync::Mutex::new(None),
        })
    }

    /// The vault as it is now.
    /// The key store the keys live in.
    pub fn store(&self) -> Arc<dyn KeyStore> {
        self.store.clone()
    }

    pub fn vault(&self) -> Arc<Vault> {
        self.vault
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The signing key ring as it is now.
    pub fn signing(&self) -> Arc<KeyRing> {
        self.signing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads both documents from the store, picking up rotations made by other replicas.
    pub async fn reload(&self) -> Result<(), KeysError> {
        let vault = self.read_document(VAULT_DOCUMENT).await?;
        let vault = parse_vault(&vault)?;
        let signing = self.read_document(SIGNING_DOCUMENT).await?;
        let signing = parse_ring(&signing)?;
        self.set_vault(vault);
        self.set_signing(signing);
        Ok(())
    }

    /// Re-reads the store unless this did so less than `interval` ago; returns whether it did.
    /// For a token signed by a key this replica does not know yet: another replica may know it
    /// from the store.
    pub async fn reload_if_not_since(
        &self,
        interval: std::time::Duration,
    ) -> Result<bool, KeysError> {
        {
            let mut last = self
                .last_reload
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < interval) {
                return Ok(false);
            }
            *last = Some(std::time::Instant::now());
        }
        self.reload().await?;
        Ok(true)
    }

    /// Stages the next signing key: published (in the JWK Set, and verifying on every replica
    /// that has re-read the store) from now on, signing from `signs_from`. If a next key is
    /// staged already, it stays as it is. Compare-and-swap, like the rotations.
    pub async fn stage_signing(
        &self,
        now: OffsetDateTime,
        signs_from: OffsetDateTime,
    ) -> Result<Staged, KeysError> {
        for _ in 0..MAX_ROTATION_ATTEMPTS {
            let stored = self.read_document(SIGNING_DOCUMENT).await?;
            let mut ring = parse_ring(&stored)?;
            if let Some((key, at)) = ring.next() {
                let staged = Staged {
                    kid: key.kid().to_owned(),
                    signs_from: at,
                    new: false,
                };
                self.set_signing(ring);
                return Ok(staged);
            }
            let (key, at) = ring.stage_next(now, signs_from);
            let staged = Staged {
                kid: key.kid().to_owned(),
                signs_from: at,
                new: true,
            };
            let document = ring.to_json();
            if self
                .store
                .replace(SIGNING_DOCUMENT, &stored, document.as_bytes())
                .await?
            {
                tracing::info!(kid = %staged.kid, signs_from = %staged.signs_from, "staged the next signing key");
                self.set_signing(ring);
                return Ok(staged);
            }
        }
        Err(KeysError::Contention(SIGNING_DOCUMENT))
    }

    /// The periodic upkeep of the signing keys, as stored: makes a staged key current once its
    /// time has come (it signs from then on every replica anyway, see
    /// [`KeyRing::signing_key`]) and then prunes retired keys whose tokens have all expired, and stages
    /// the next key `policy.lead` before the current one is `policy.period` old. Writes the
    /// store only when something changed.
    pub async fn upkeep_signing(
        &self,
        now: OffsetDateTime,
        policy: RotationPolicy,
    ) -> Result<(), KeysError> {
        for _ in 0..MAX_ROTATION_ATTEMPTS {
            let stored = self.read_document(SIGNING_DOCUMENT).await?;
            let mut ring = parse_ring(&stored)?;
            let promoted = ring.promote_due(now);
            // Retired keys go at a rotation, as with `rotate_signing`: a retired key stays in
            // the ring (and trusted for the tamper-evidence checkpoints it signed) until the
            // next rotation after its tokens have expired.
            let pruned = if promoted { ring.prune(now) } else { 0 };
            let mut staged = false;
            if let Some(period) = policy.period
                && ring.next().is_none()
            {
                let due = ring.current().created_at() + period;
                if now + policy.lead >= due {
                    ring.stage_next(now, due.max(now + policy.lead));
                    staged = true;
                }
            }
            if !promoted && pruned == 0 && !staged {
                self.set_signing(ring);
                return Ok(());
            }
            let document = ring.to_json();
            if self
                .store
                .replace(SIGNING_DOCUMENT, &stored, document.as_bytes())
                .await?
            {
                tracing::info!(
                    current = %ring.current().kid(),
                    next = ?ring.next().map(|(k, at)| (k.kid().to_owned(), at)),
                    promoted,
                    pruned,
                    "signing key upkeep"
                );
                self.set_signing(ring);
                return Ok(());
            }
        }
        Err(KeysError::Contention(SIGNING_DOCUMENT))
    }

    /// Starts signing with a new key. The old key is retired, not dropped: it stays in the JWKS
    /// and keeps verifying until every token it signed has expired. Retired keys past that point
    /// are pruned.
    ///
    /// The store is updated with compare-and-swap. If another replica changed the key ring in the
    /// meantime, this re-reads it, and accepts the other replica's key if it is younger than
    /// [`RECENT_ROTATION`] (both meant to rotate; once is enough), or rotates that ring otherwise.
    pub async fn rotate_signing(&self, now: OffsetDateTime) -> Result<Rotation, KeysError> {
        self.rotate_signing_when(now, |ring, attempt| {
            attempt == 0 || now - ring.current().created_at() >= RECENT_ROTATION
        })
        .await
    }

    /// For a periodic task: rotates if the current signing key (as stored, so a rotation by
    /// another replica counts) is at least `age` old, and does nothing otherwise.
    pub async fn rotate_signing_if_older_than(
        &self,
        age: Duration,
        now: OffsetDateTime,
    ) -> Result<Rotation, KeysError> {
        self.rotate_signing_when(now, |ring, _| now - ring.current().created_at() >= age)
            .await
    }

    /// Makes the stored signing key ring allow access tokens that live `ttl` (the configured
    /// lifetime), raising its limit if it is lower ([`KeyRing::allow_token_ttl`]: it is never
    /// lowered). Compare-and-swap, so replicas starting together agree; returns whether this
    /// call changed the store.
    pub async fn allow_token_ttl(&self, ttl: Duration) -> Result<bool, KeysError> {
        for _ in 0..MAX_ROTATION_ATTEMPTS {
            let stored = self.read_document(SIGNING_DOCUMENT).await?;
            let mut ring = parse_ring(&stored)?;
            if !ring.allow_token_ttl(ttl) {
                self.set_signing(ring);
                return Ok(false);
            }
            let document = ring.to_json();
            if self
                .store
                .replace(SIGNING_DOCUMENT, &stored, document.as_bytes())
                .await?
            {
                tracing::info!(
                    ttl_seconds = ttl.whole_seconds(),
                    "the signing key ring now allows access tokens of the configured lifetime"
                );
                self.set_signing(ring);
                return Ok(true);
            }
        }
        Err(KeysError::Contention(SIGNING_DOCUMENT))
    }

    /// Adds a new sealing key to the vault and makes it the one that seals. Values sealed under
    /// the older keys still open. If another replica rotated concurrently, its key is accepted.
    pub async fn rotate_sealing(&self) -> Result<Rotation, KeysError> {
        let mut started_with = None;
        for _ in 0..MAX_ROTATION_ATTEMPTS {
            let stored = self.read_document(VAULT_DOCUMENT).await?;
            let mut vault = parse_vault(&stored)?;
            let current = vault.current_kid().to_owned();
            match &started_with {
                None => started_with = Some(current),
                Some(first) if *first != current => {
                    self.set_vault(vault);
                    return Ok(Rotation::ConcurrentAccepted { kid: current });
                }
                Some(_) => {}
            }
            let kid = vault.rotate_sealing().map_err(KeysError::Vault)?.to_owned();
            let document = vault.to_json();
            if self
                .store
                .replace(VAULT_DOCUMENT, &stored, document.as_bytes())
                .await?
            {
                tracing::info!(kid = %kid, "rotated the sealing key");
                self.set_vault(vault);
                return Ok(Rotation::Rotated { kid });
            }
            tracing::debug!("the vault changed during a sealing key rotation; retrying");
        }
        Err(KeysError::Contention(VAULT_DOCUMENT))
    }

    /// The compare-and-swap loop of the signing rotations: `due(ring, attempt)` says whether the
    /// stored `ring` should be rotated on this attempt (0 for the first).
    async fn rotate_signing_when(
        &self,
        now: OffsetDateTime,
        due: impl Fn(&KeyRing, u32) -> bool,
    ) -> Result<Rotation, KeysError> {
        for attempt in 0..MAX_ROTATION_ATTEMPTS {
            let stored = self.read_document(SIGNING_DOCUMENT).await?;
            let mut ring = parse_ring(&stored)?;
            if !due(&ring, attempt) {
                let kid = ring.current().kid().to_owned();
                self.set_signing(ring);
                return Ok(if attempt == 0 {
                    Rotation::NotDue
                } else {
                    Rotation::ConcurrentAccepted { kid }
                });
            }
            let kid = ring.rotate(now).kid().to_owned();
            let pruned = ring.prune(now);
            let document = ring.to_json();
            if self
                .store
                .replace(SIGNING_DOCUMENT, &stored, document.as_bytes())
                .await?
            {
                tracing::info!(kid = %kid, pruned, "rotated the signing key");
                self.set_signing(ring);
                return Ok(Rotation::Rotated { kid });
            }
            tracing::debug!(
                attempt,
                "the signing key ring changed during a rotation; retrying"
            );
        }
        Err(KeysError::Contention(SIGNING_DOCUMENT))
    }

    async fn read_document(&self, name: &'static str) -> Result<Zeroizing<Vec<u8>>, KeysError> {
        self.store.get(name).await?.ok_or(KeysError::Missing(name))
    }

    fn set_vault(&self, vault: Vault) {
        *self.vault.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(vault);
    }

    fn set_signing(&self, ring: KeyRing) {
        *self.signing.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("vault", &self.vault())
            .field("signing", &self.signing())
            .finish_non_exhaustive()
    }
}

/// Reads `name`, or creates it from `fresh()`; if another replica created it first, reads
/// theirs.
async fn load_or_create_document(
    store: &dyn KeyStore,
    name: &'static str,
    fresh: impl FnOnce() -> Result<Zeroizing<String>, KeysError>,
) -> Result<Zeroizing<Vec<u8>>, KeysError> {
    if let Some(stored) = store.get(name).await? {
        return Ok(stored);
    }
    let document = fresh()?;
    if store.create(name, document.as_bytes()).await? {
        tracing::info!(document = name, "created a key document in the key store");
        return Ok(Zeroizing::new(document.as_bytes().to_vec()));
    }
    store.get(name).await?.ok_or(KeysError::Missing(name))
}

fn parse_vault(stored: &[u8]) -> Result<Vault, KeysError> {
    let text = std::str::from_utf8(stored).map_err(|_| KeysError::NotUtf8(VAULT_DOCUMENT))?;
    Vault::from_json(text).map_err(KeysError::Vault)
}

fn parse_ring(stored: &[u8]) -> Result<KeyRing, KeysError> {
    let text = std::str::from_utf8(stored).map_err(|_| KeysError::NotUtf8(SIGNING_DOCUMENT))?;
    KeyRing::from_json(text).map_err(KeysError::Signing)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::file::FileKeyStore;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
    const TTL: Duration = Duration::minutes(15);

    fn store(dir: &std::path::Path) -> Arc<dyn KeyStore> {
        Arc::new(FileKeyStore::open(dir).unwrap())
    }

    #[tokio::test]
    async fn loading_twice_from_one_directory_gives_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let sealed = first.vault().seal(b"secret", "password:u1");
        let index = first.vault().blind_index("refresh", "tok");

        // A restart: new store value, same directory, a later clock.
        let second = Keys::load_or_create(store(dir.path()), T0 + Duration::hours(1), TTL)
            .await
            .unwrap();
        assert_eq!(
            &second.vault().open(&sealed, "password:u1").unwrap()[..],
            b"secret"
        );
        assert_eq!(second.vault().blind_index("refresh", "tok"), index);
        assert_eq!(
            second.signing().current().kid(),
            first.signing().current().kid()
        );
        assert_eq!(second.signing().current().created_at(), T0);
        assert_eq!(second.signing().max_token_ttl(), TTL);
    }

    #[tokio::test]
    async fn a_longer_configured_token_lifetime_is_stored_and_a_shorter_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        assert!(keys.allow_token_ttl(Duration::hours(1)).await.unwrap());
        assert_eq!(keys.signing().max_token_ttl(), Duration::hours(1));
        // Stored: the next start (or another replica) reads it.
        let again = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        assert_eq!(again.signing().max_token_ttl(), Duration::hours(1));
        // Shorter: tokens signed for an hour may be outstanding, so the limit stays.
        assert!(!again.allow_token_ttl(Duration::minutes(1)).await.unwrap());
        assert_eq!(again.signing().max_token_ttl(), Duration::hours(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_agree_on_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let loads: Vec<_> = (0..6)
            .map(|_| {
                let store = store(dir.path());
                tokio::spawn(async move { Keys::load_or_create(store, T0, TTL).await.unwrap() })
            })
            .collect();
        let mut all = Vec::new();
        for load in loads {
            all.push(load.await.unwrap());
        }
        let sealed = all[0].vault().seal(b"secret", "ctx");
        for keys in &all {
            assert_eq!(keys.vault().current_kid(), all[0].vault().current_kid());
            assert_eq!(&keys.vault().open(&sealed, "ctx").unwrap()[..], b"secret");
            assert_eq!(
                keys.signing().current().kid(),
                all[0].signing().current().kid()
            );
        }
    }

    #[tokio::test]
    async fn a_signing_rotation_keeps_the_old_key_until_its_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let other = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let old = keys.signing().current().kid().to_owned();

        let t1 = T0 + Duration::days(1);
        let Rotation::Rotated { kid: new } = keys.rotate_signing(t1).await.unwrap() else {
            panic!("expected a rotation");
        };
        assert_ne!(new, old);
        assert_eq!(keys.signing().current().kid(), new);
        assert_eq!(keys.signing().kids(), vec![new.as_str(), old.as_str()]);

        // The other replica sees it after a reload.
        assert_eq!(other.signing().current().kid(), old);
        other.reload().await.unwrap();
        assert_eq!(other.signing().current().kid(), new);
        let jwks = other.signing().jwks().to_string();
        assert!(jwks.contains(&old) && jwks.contains(&new));

        // Once every token of the old key has expired, the next rotation prunes it.
        let t2 = t1 + TTL + idstream_auth::CLOCK_LEEWAY + Duration::seconds(1);
        let Rotation::Rotated { kid: newest } = other.rotate_signing(t2).await.unwrap() else {
            panic!("expected a rotation");
        };
        assert_eq!(other.signing().kids(), vec![newest.as_str(), new.as_str()]);
    }

    #[tokio::test]
    async fn a_stale_replica_accepts_a_recent_concurrent_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let b = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let t1 = T0 + Duration::days(1);
        let Rotation::Rotated { kid } = a.rotate_signing(t1).await.unwrap() else {
            panic!("expected a rotation");
        };
        // `b` has not reloaded; its periodic task finds the stored key young and does nothing.
        assert_eq!(
            b.rotate_signing_if_older_than(Duration::days(1), t1 + Duration::seconds(5))
                .await
                .unwrap(),
            Rotation::NotDue
        );
        assert_eq!(b.signing().current().kid(), kid);
    }

    #[tokio::test]
    async fn a_losing_rotation_accepts_the_winners_key() {
        // A store whose first compare-and-swap loses to a rotation made by "another replica"
        // just before it.
        struct Interfering {
            inner: FileKeyStore,
            other: std::sync::Mutex<Option<Zeroizing<String>>>,
        }
        #[async_trait::async_trait]
        impl KeyStore for Interfering {
            async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
                self.inner.get(name).await
            }
            async fn create(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError> {
                self.inner.create(name, value).await
            }
            async fn replace(
                &self,
                name: &str,
                expected: &[u8],
                new: &[u8],
            ) -> Result<bool, KeyStoreError> {
                let theirs = self.other.lock().unwrap().take();
                if let Some(theirs) = theirs {
                    assert!(
                        self.inner
                            .replace(name, expected, theirs.as_bytes())
                            .await?
                    );
                }
                self.inner.replace(name, expected, new).await
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let inner = FileKeyStore::open(dir.path()).unwrap();
        let store = Arc::new(Interfering {
            inner: inner.clone(),
            other: std::sync::Mutex::new(None),
        });
        let keys = Keys::load_or_create(store.clone(), T0, TTL).await.unwrap();
        let old = keys.signing().current().kid().to_owned();
        let t1 = T0 + Duration::days(1);
        let mut theirs = KeyRing::from_json(&keys.signing().to_json()).unwrap();
        let their_kid = theirs.rotate(t1 - Duration::seconds(10)).kid().to_owned();
        *store.other.lock().unwrap() = Some(theirs.to_json());

        assert_eq!(
            keys.rotate_signing(t1).await.unwrap(),
            Rotation::ConcurrentAccepted {
                kid: their_kid.clone()
            }
        );
        assert_eq!(keys.signing().current().kid(), their_kid);
        assert_eq!(
            keys.signing().kids(),
            vec![their_kid.as_str(), old.as_str()]
        );

        // An old concurrent rotation is not accepted: the ring is rotated once more.
        let t2 = t1 + Duration::days(1);
        let mut theirs = KeyRing::from_json(&keys.signing().to_json()).unwrap();
        let hour_old = theirs.rotate(t2 - Duration::hours(1)).kid().to_owned();
        *store.other.lock().unwrap() = Some(theirs.to_json());
        let Rotation::Rotated { kid } = keys.rotate_signing(t2).await.unwrap() else {
            panic!("expected a rotation");
        };
        // Rotated on top of theirs; the keys retired more than a token lifetime ago are pruned.
        assert_eq!(keys.signing().kids(), vec![kid.as_str(), hour_old.as_str()]);
    }

    #[tokio::test]
    async fn the_periodic_rotation_rotates_only_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let day = Duration::days(1);
        assert_eq!(
            keys.rotate_signing_if_older_than(day, T0 + Duration::hours(23))
                .await
                .unwrap(),
            Rotation::NotDue
        );
        assert!(matches!(
            keys.rotate_signing_if_older_than(day, T0 + day)
                .await
                .unwrap(),
            Rotation::Rotated { .. }
        ));
    }

    #[tokio::test]
    async fn a_sealing_rotation_is_shared_and_keeps_old_values_openable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let b = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let old = a.vault().seal(b"old", "ctx");
        let Rotation::Rotated { kid } = a.rotate_sealing().await.unwrap() else {
            panic!("expected a rotation");
        };
        let new = a.vault().seal(b"new", "ctx");
        assert_eq!(new.key_id(), kid);
        b.reload().await.unwrap();
        assert_eq!(&b.vault().open(&old, "ctx").unwrap()[..], b"old");
        assert_eq!(&b.vault().open(&new, "ctx").unwrap()[..], b"new");
    }

    #[tokio::test]
    async fn a_corrupt_document_is_reported_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .create(VAULT_DOCUMENT, b"{\"format\": 1, \"secret-marker\": ")
            .await
            .unwrap();
        let err = Keys::load_or_create(store, T0, TTL).await.unwrap_err();
        assert!(matches!(
            err,
            KeysError::Vault(VaultError::MalformedDocument { .. })
        ));
        assert!(!err.to_string().contains("secret-marker"));
    }

    #[tokio::test]
    async fn debug_output_of_keys_shows_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(store(dir.path()), T0, TTL)
            .await
            .unwrap();
        let debug = format!("{keys:?}");
        assert!(debug.contains(keys.vault().current_kid()));
        assert!(debug.contains(keys.signing().current().kid()));
        assert!(!debug.contains("PRIVATE KEY"));
    }
}
