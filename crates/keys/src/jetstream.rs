//! [`JetStreamKeyStore`]: key documents in a JetStream key-value bucket, shared by every replica.
//!
//! The bucket (default `idstream_keys`, file storage, history 1) is separate from the event
//! stream: subscribers of the events never see it. It holds the keys in the clear, so it must be
//! protected by NATS account permissions: only the service's own user may publish to or read
//! `$KV.idstream_keys.>` and call the JetStream API on the stream `KV_idstream_keys`
//! (`$JS.API.*.*.KV_idstream_keys`, direct gets `$JS.API.DIRECT.GET.KV_idstream_keys`).
//! Anyone who can read the bucket can open every sealed value in the log.
//!
//! Atomicity comes from JetStream's expected-last-sequence check: `create` is
//! [`Store::create`] (refused when the key exists) and `replace` is [`Store::update`] with the
//! revision of the entry whose value was compared.
//!
//! Values travel through the NATS client's buffers (`bytes::Bytes`), which are not wiped; the
//! copies this store hands out are.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::{KeyStore, KeyStoreError, check_name};

/// The default bucket name.
pub const DEFAULT_BUCKET: &str = "idstream_keys";

/// Where the key bucket lives and how it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamKeyStoreOptions {
    /// The bucket's name (the stream is `KV_<bucket>`).
    pub bucket: String,
    /// Replicas of the bucket when this client creates it (3 in a production cluster).
    pub replicas: usize,
    /// Upper bound of connecting and of each request, for [`JetStreamKeyStore::connect`].
    pub request_timeout: Duration,
}

impl Default for JetStreamKeyStoreOptions {
    fn default() -> Self {
        JetStreamKeyStoreOptions {
            bucket: DEFAULT_BUCKET.to_owned(),
            replicas: 1,
            request_timeout: Duration::from_secs(3),
        }
    }
}

/// Key documents in a JetStream KV bucket.
#[derive(Debug, Clone)]
pub struct JetStreamKeyStore {
    kv: Store,
}

impl JetStreamKeyStore {
    /// Connects to the NATS server(s) at `url` (comma-separated) and opens the bucket.
    pub async fn connect(
        url: &str,
        options: &JetStreamKeyStoreOptions,
    ) -> Result<JetStreamKeyStore, KeyStoreError> {
        let addrs = url
            .split(',')
            .map(|addr| addr.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| KeyStoreError::Unavailable(format!("invalid NATS URL {url:?}: {e}")))?;
        let client = async_nats::ConnectOptions::new()
            .name("idstream-keys")
            .connection_timeout(options.request_timeout)
            .request_timeout(Some(options.request_timeout))
            .connect(addrs)
            .await
            .map_err(|e| {
                KeyStoreError::Unavailable(format!("cannot connect to NATS at {url}: {e}"))
            })?;
        JetStreamKeyStore::open(client, options).await
    }

    /// Opens the bucket over an existing connection, creating it if it does not exist.
    ///
    /// The bucket's stream is created with `create_stream` and the configuration that
    /// `create_key_value` would give it, because `create_key_value` first asks the server for the
    /// account's limits and async-nats 0.51 cannot parse nats-server 2.9's answer to that request.
    /// Opening (`get_key_value`) and every key operation work with 2.9.
    ///
    /// Several replicas starting at once may all find the bucket missing and create it: JetStream
    /// accepts the creation of an existing stream with the same configuration, and if the
    /// configurations differ (another replica count, say) the loser opens the winner's bucket.
    pub async fn open(
        client: async_nats::Client,
        options: &JetStreamKeyStoreOptions,
    ) -> Result<JetStreamKeyStore, KeyStoreError> {
        let bucket = options.bucket.as_str();
        let valid = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(KeyStoreError::Unavailable(format!(
                "invalid key bucket name {bucket:?}: expected [A-Za-z0-9_-]+"
            )));
        }
        let js = jetstream::new(client);
        if let Ok(kv) = js.get_key_value(bucket).await {
            return Ok(JetStreamKeyStore { kv });
        }
        let created = js.create_stream(bucket_stream_config(options)).await;
        match js.get_key_value(bucket).await {
            Ok(kv) => Ok(JetStreamKeyStore { kv }),
            Err(get_error) => Err(KeyStoreError::Unavailable(match created {
                Ok(_) => format!("cannot open the key bucket {bucket:?}: {get_error}"),
                Err(create_error) => format!(
                    "cannot create the key bucket {bucket:?} ({create_error}) nor open it ({get_error})"
                ),
            })),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.kv.name
    }
}

#[async_trait]
impl KeyStore for JetStreamKeyStore {
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        check_name(name)?;
        let value = self
            .kv
            .get(name)
            .await
            .map_err(|e| unavailable("read", name, e))?;
        Ok(value.map(|bytes| Zeroizing::new(bytes.to_vec())))
    }

    async fn create(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        match self.kv.create(name, Bytes::copy_from_slice(value)).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(unavailable("create", name, e)),
        }
    }

    async fn replace(
        &self,
        name: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| unavailable("read", name, e))?;
        let Some(entry) = entry else {
            return Ok(false);
        };
        let current = Zeroizing::new(entry.value.to_vec());
        if entry.operation != Operation::Put || !bool::from(current.as_slice().ct_eq(expected)) {
            return Ok(false);
        }
        match self
            .kv
            .update(name, Bytes::copy_from_slice(new), entry.revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable("update", name, e)),
        }
    }

    async fn names(&self) -> Result<Vec<String>, KeyStoreError> {
        use futures::TryStreamExt;
        let keys = self
            .kv
            .keys()
            .await
            .map_err(|e| unavailable("list", "*", e))?;
        keys.try_collect()
            .await
            .map_err(|e| unavailable("list", "*", e))
    }
}

/// The stream of a KV bucket as `create_key_value` configures it: one subject per key under
/// `$KV.<bucket>.`, history 1, file storage, rollups and direct gets allowed, deletes through the
/// KV API only.
fn bucket_stream_config(options: &JetStreamKeyStoreOptions) -> stream::Config {
    stream::Config {
        name: format!("KV_{}", options.bucket),
        description: Some(
            "idstream secret keys (not events): readable by the service only".to_owned(),
        ),
        subjects: vec![format!("$KV.{}.>", options.bucket)],
        max_messages_per_subject: 1,
        storage: StorageType::File,
        num_replicas: options.replicas.max(1),
        discard: DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        ..Default::default()
    }
}

fn unavailable(action: &str, name: &str, error: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Unavailable(format!(
        "cannot {action} key {name:?} in JetStream: {error}"
    ))
}
