//! The service's secret keys, kept outside the event log.
//!
//! Events are public: every subscriber of the stream reads them. Secret material therefore
//! appears in events only as a [`Sealed`](idstream_domain::secret::Sealed) value (authenticated
//! encryption) or a [`BlindIndex`](idstream_domain::secret::BlindIndex) (a keyed digest), and the
//! keys for both live here, never in the log:
//!
//! - [`Vault`]: the sealing keys (XChaCha20-Poly1305, several by key id so that keys can rotate
//!   while old events stay readable) and the blind-index key (HMAC-SHA-256).
//! - The signing [`KeyRing`](idstream_auth::KeyRing) of the access tokens (from `idstream-auth`).
//! - [`Keys`]: both, as the service uses them: loaded from (or created in) a [`KeyStore`],
//!   reloadable, and rotated with compare-and-swap so that replicas never fork their keys.
//!
//! **Where the keys live.** In embedded mode, in [`FileKeyStore`]: a directory of the data
//! directory (mode 0700, files 0600). In JetStream mode, in [`JetStreamKeyStore`]: a JetStream
//! key-value bucket (default `idstream_keys`) that every replica shares. That bucket is **not**
//! part of the event stream, and it holds the keys in the clear: a JetStream deployment must
//! restrict it with NATS account permissions so that only the service's own user can read or
//! write it, and subscribers of the events cannot (see [`jetstream`] for the subjects).
//!
//! - Per-user personal-data keys ([`personal`]): the fields of events that hold personal data
//!   are encrypted with a key of their user's own, and [`PersonalDataLog`] wraps the event log to
//!   encrypt them on append and decrypt them on read; erasing a user destroys that key
//!   (crypto-shredding).
//!
//! **Threat model.** Someone who reads the whole log sees only sealed values and blind indexes:
//! without the keys they can neither open the first nor test guesses against the second. Access
//! to the key store is the ability to read every secret in the log (and to mint access tokens),
//! so the key store is guarded like the keys themselves.
//!
//! **Invariant:** nothing here logs, prints or returns key material or plaintext except through
//! [`Vault::open`] and the `to_json` documents meant for the key store; every type that holds a
//! key redacts its `Debug` output, and key bytes are wiped when dropped.
//!
//! **Invariant:** nothing here reads the clock: rotations take `now`.

pub mod backup;
pub mod file;
pub mod jetstream;
pub mod keys;
pub mod personal;
pub mod personal_log;
pub mod read_model;
pub mod store;
pub mod vault;

pub use backup::{KeySet, KeySetError};
pub use file::FileKeyStore;
pub use jetstream::{DEFAULT_BUCKET, JetStreamKeyStore, JetStreamKeyStoreOptions};
pub use keys::{Keys, KeysError, Rotation, RotationPolicy, Staged};
pub use personal::{PersonalDataError, PersonalKeys};
pub use personal_log::PersonalDataLog;
pub use read_model::ReadModelSeal;
pub use store::{KeyStore, KeyStoreError, MemoryKeyStore};
pub use vault::{MAX_PLAINTEXT_LEN, Vault, VaultError};
