//! A bounded cache of decoded facts in front of the sled tree, kept exact by invalidation.
//!
//! The projection tells the cache which keys each committed batch wrote
//! ([`Projection::committed`](idstream_projection_runtime::Projection::committed)) and when the
//! tree was cleared. A reader fills the cache only if no invalidation of the key's shard happened
//! between its read of the tree and its insert (a per-shard generation counter), so a value read
//! before a commit can never be cached after the commit's invalidation.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use idstream_domain::access::{Account, EntityFacts, Member, RoleFacts};

use crate::index::RecordIndex;

const SHARDS: usize = 64;
/// Entries per shard before it starts over: about 4.2M entries in all, enough for the accounts
/// and memberships of a million users (a smaller cache, 260k entries, was cleared over and over
/// at that scale, and most checks went to sled: p99 6.8× the 100k-user figure). Entries are
/// allocated as they are read, about 150 bytes each, so a small deployment never holds more than
/// its own facts; a full cache holds about 600 MiB.
const SHARD_CAPACITY: usize = 65_536;

/// A decoded value (or a cached absence).
#[derive(Clone)]
pub(crate) enum Fact {
    /// A user's account, and whether they are a platform administrator.
    Account(Option<(Account, bool)>),
    Member(Option<Arc<Member>>),
    Role(Option<Arc<RoleFacts>>),
    Entity(Option<Arc<EntityFacts>>),
}

/// Bytes of a key kept in the entry itself: every account key (28 bytes), and the membership
/// keys of tenants of up to 17 characters. A lookup then compares the key in the table's own
/// memory instead of following a pointer to a separate allocation, a cache miss per lookup.
const INLINE_KEY: usize = 46;

/// A cached fact's sled key, compared in full on every lookup (the cache is exact).
enum CacheKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl CacheKey {
    fn new(key: &[u8]) -> CacheKey {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            CacheKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            CacheKey::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            CacheKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            CacheKey::Heap(bytes) => bytes,
        }
    }
}

struct Entry {
    /// The key's hash, for the table to grow without hashing again.
    hash: u64,
    key: CacheKey,
    fact: Fact,
}

struct Shard {
    generation: AtomicU64,
    table: RwLock<HashTable<Entry>>,
}

/// The in-memory state the access queries share with the access projection: the fact cache and
/// the record index (see `index.rs`).
pub struct FactCache {
    hasher: RandomState,
    shards: Vec<Shard>,
    pub(crate) index: RecordIndex,
}

impl Default for FactCache {
    fn default() -> Self {
        FactCache {
            hasher: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| Shard {
                    generation: AtomicU64::new(0),
                    table: RwLock::new(HashTable::new()),
                })
                .collect(),
            index: RecordIndex::default(),
        }
    }
}

impl FactCache {
    /// The key's hash (computed once per lookup) and its shard. The shard is chosen by bits the
    /// table does not use: it places entries by the low bits and tags them with the top seven.
    fn locate(&self, key: &[u8]) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[(hash >> 32) as usize % SHARDS])
    }

    /// The cached fact at `key`, or `load()`'s answer, cached unless the key was invalidated
    /// meanwhile.
    pub(crate) fn get_or_load<E>(
        &self,
        key: &[u8],
        load: impl FnOnce() -> Result<Fact, E>,
    ) -> Result<Fact, E> {
        let (hash, shard) = self.locate(key);
        if let Some(entry) = shard
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(hash, |e| e.hash == hash && e.key.as_bytes() == key)
        {
            return Ok(entry.fact.clone());
        }
        let generation = shard.generation.load(Ordering::Acquire);
        let fact = load()?;
        let mut table = shard.table.write().unwrap_or_else(|e| e.into_inner());
        if shard.generation.load(Ordering::Acquire) == generation {
            if table.len() >= SHARD_CAPACITY {
                table.clear();
            }
            match table.find_mut(hash, |e| e.hash == hash && e.key.as_bytes() == key) {
                // Another reader filled it meanwhile, from the same state of the tree.
                Some(entry) => entry.fact = fact.clone(),
                None => {
                    table.insert_unique(
                        hash,
                        Entry {
                            hash,
                            key: CacheKey::new(key),
                            fact: fact.clone(),
                        },
                        |e| e.hash,
                    );
                }
            }
        }
        Ok(fact)
    }

    pub(crate) fn invalidate(&self, key: &[u8]) {
        let (hash, shard) = self.locate(key);
        shard.generation.fetch_add(1, Ordering::AcqRel);
        let mut table = shard.table.write().unwrap_or_else(|e| e.into_inner());
        if let Ok(entry) = table.find_entry(hash, |e| e.hash == hash && e.key.as_bytes() == key) {
            entry.remove();
        }
    }

    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard.generation.fetch_add(1, Ordering::AcqRel);
            shard
                .table
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(status: idstream_domain::access::AccountStatus) -> Fact {
        Fact::Account(Some((
            Account {
                status,
                suspended_until: None,
            },
            false,
        )))
    }

    fn status(fact: Fact) -> Option<idstream_domain::access::AccountStatus> {
        match fact {
            Fact::Account(account) => account.map(|(a, _)| a.status),
            _ => None,
        }
    }

    #[test]
    fn short_and_long_keys_are_cached_apart_and_invalidated_exactly() {
        use idstream_domain::access::AccountStatus::{Active, Suspended};
        let cache = FactCache::default();
        let short = b"a/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_vec();
        let long = [
            b"m/".as_slice(),
            &[b'x'; 80],
            b"/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ]
        .concat();
        // A key that is a prefix of another is a different key.
        let prefix = short[..short.len() - 1].to_vec();
        for key in [&short, &long, &prefix] {
            let fact = cache.get_or_load(key, || Ok::<_, ()>(account(Active)));
            assert_eq!(status(fact.expect("loads")), Some(Active));
        }
        // Cached: the loader is not asked again.
        for key in [&short, &long, &prefix] {
            let fact = cache.get_or_load(key, || Err(()));
            assert_eq!(status(fact.expect("cached")), Some(Active));
        }
        // Invalidating one key drops that key only.
        cache.invalidate(&long);
        assert!(cache.get_or_load(&long, || Err(())).is_err());
        assert_eq!(
            status(cache.get_or_load(&short, || Err(())).expect("cached")),
            Some(Active)
        );
        let fact = cache.get_or_load(&long, || Ok::<_, ()>(account(Suspended)));
        assert_eq!(status(fact.expect("loads")), Some(Suspended));
        cache.clear();
        for key in [&short, &long, &prefix] {
            assert!(cache.get_or_load(key, || Err(())).is_err());
        }
    }

    #[test]
    fn a_value_read_before_an_invalidation_is_not_cached() {
        use idstream_domain::access::AccountStatus::{Active, Inactive};
        let cache = FactCache::default();
        let key = b"a/01ARZ3NDEKTSV4RRFFQ69G5FAV";
        // The load reads the old value, then a commit invalidates the key before the insert.
        let fact = cache.get_or_load(key, || {
            cache.invalidate(key);
            Ok::<_, ()>(account(Active))
        });
        assert_eq!(status(fact.expect("loads")), Some(Active));
        let fact = cache.get_or_load(key, || Ok::<_, ()>(account(Inactive)));
        assert_eq!(status(fact.expect("reloads")), Some(Inactive));
    }
}
