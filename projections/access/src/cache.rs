//! A bounded cache of decoded facts in front of the sled tree, kept exact by invalidation.
//!
//! The projection tells the cache which keys each committed batch wrote
//! ([`Projection::committed`](idstream_projection_runtime::Projection::committed)) and when the
//! tree was cleared. A reader fills the cache only if no invalidation of the key's shard happened
//! between its read of the tree and its insert (a per-shard generation counter), so a value read
//! before a commit can never be cached after the commit's invalidation.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
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
    Account(Option<Account>),
    Member(Option<Arc<Member>>),
    Role(Option<Arc<RoleFacts>>),
    Entity(Option<Arc<EntityFacts>>),
}

struct Shard {
    generation: AtomicU64,
    map: RwLock<HashMap<Box<[u8]>, Fact, RandomState>>,
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
                    map: RwLock::new(HashMap::with_hasher(RandomState::default())),
                })
                .collect(),
            index: RecordIndex::default(),
        }
    }
}

impl FactCache {
    fn shard(&self, key: &[u8]) -> &Shard {
        let hash = self.hasher.hash_one(key) as usize;
        &self.shards[hash % SHARDS]
    }

    /// The cached fact at `key`, or `load()`'s answer, cached unless the key was invalidated
    /// meanwhile.
    pub(crate) fn get_or_load<E>(
        &self,
        key: &[u8],
        load: impl FnOnce() -> Result<Fact, E>,
    ) -> Result<Fact, E> {
        let shard = self.shard(key);
        if let Some(fact) = shard.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(fact.clone());
        }
        let generation = shard.generation.load(Ordering::Acquire);
        let fact = load()?;
        let mut map = shard.map.write().unwrap_or_else(|e| e.into_inner());
        if shard.generation.load(Ordering::Acquire) == generation {
            if map.len() >= SHARD_CAPACITY {
                map.clear();
            }
            map.insert(key.into(), fact.clone());
        }
        Ok(fact)
    }

    pub(crate) fn invalidate(&self, key: &[u8]) {
        let shard = self.shard(key);
        shard.generation.fetch_add(1, Ordering::AcqRel);
        shard
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard.generation.fetch_add(1, Ordering::AcqRel);
            shard.map.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}
