//! Where key documents are kept: a small named-value store with atomic create-if-absent and
//! compare-and-swap, which is all that sharing keys between replicas needs.

use std::path::PathBuf;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// Why the key store could not answer. Never carries a stored value.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("invalid key name {0:?}: expected 1 to 64 characters of [a-z0-9_-]")]
    InvalidName(String),
    #[error("key store: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key store unavailable: {0}")]
    Unavailable(String),
}

/// A store of named secret values shared by every replica of the service.
///
/// The operations are the ones that let replicas agree on keys without any other coordination:
/// the first replica to start creates a key document and the others read the winner's, and a
/// rotation replaces the document only if nobody else changed it in the meantime.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The value stored under `name`, if any.
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError>;

    /// Stores `value` under `name` unless something is stored there already. Atomic: of two
    /// racing creators exactly one gets `true`; the other gets `false` and stores nothing.
    async fn create(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError>;

    /// Replaces the value under `name` with `new` if it is still `expected` (compare-and-swap).
    /// `false` if the stored value is another one or there is none.
    async fn replace(&self, name: &str, expected: &[u8], new: &[u8])
    -> Result<bool, KeyStoreError>;

    /// [`KeyStore::get`] for a store that can answer on the calling thread without waiting on
    /// anything but its own disk (a file, memory): what a query reading many people's sealed
    /// fields uses instead of handing each read to another thread. `None`: this store must be
    /// asked with [`KeyStore::get`].
    fn get_now(&self, _name: &str) -> Option<Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError>> {
        None
    }

    /// The names of every value stored, in no particular order: what a backup or a migration
    /// copies. Stores that cannot list say so.
    async fn names(&self) -> Result<Vec<String>, KeyStoreError> {
        Err(KeyStoreError::Unavailable(
            "this key store cannot list its keys".to_owned(),
        ))
    }
}

/// Key names are short and need no escaping anywhere: as file names, as NATS KV keys.
/// A key store held in memory only, gone with the process: for tests, benchmarks and tools whose
/// results are thrown away. Same contract as the durable stores (atomic create, compare-and-swap).
#[derive(Default)]
pub struct MemoryKeyStore {
    values: std::sync::Mutex<std::collections::HashMap<String, Zeroizing<Vec<u8>>>>,
}

impl MemoryKeyStore {
    fn values(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Zeroizing<Vec<u8>>>> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
        check_name(name)?;
        Ok(self.values().get(name).cloned())
    }

    fn get_now(&self, name: &str) -> Option<Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError>> {
        Some(check_name(name).map(|()| self.values().get(name).cloned()))
    }

    async fn create(&self, name: &str, value: &[u8]) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        let mut values = self.values();
        if values.contains_key(name) {
            return Ok(false);
        }
        values.insert(name.to_owned(), Zeroizing::new(value.to_vec()));
        Ok(true)
    }

    async fn replace(
        &self,
        name: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, KeyStoreError> {
        check_name(name)?;
        let mut values = self.values();
        match values.get_mut(name) {
            Some(stored) if stored.as_slice() == expected => {
                *stored = Zeroizing::new(new.to_vec());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn names(&self) -> Result<Vec<String>, KeyStoreError> {
        Ok(self.values().keys().cloned().collect())
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), KeyStoreError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(KeyStoreError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_short_lower_case_and_need_no_escaping() {
        for good in ["vault", "signing", "a", "k-1_2", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Vault",
            "a.b",
            "../x",
            "a/b",
            "a b",
            "é",
            "*",
            ">",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_name(bad), Err(KeyStoreError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
