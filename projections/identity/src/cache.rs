//! A bounded in-memory cache of small facts decoded from a read model, for the checks made on
//! every request (is this session live, is this user active), exact however the model changes.
//!
//! Each entry is tagged with the position the read model had **published** (see
//! `ReadModels::position`) when it was read, and is answered only while the model's published
//! position is still that one. A read model's tree changes only when its runner commits a batch,
//! and the runner publishes the batch's position right after the commit, so:
//!
//! - an entry was read after its tag was published, hence reflects at least every event up to
//!   the tag;
//! - once the model has applied an event (a session revoked, a user suspended) and published its
//!   position, every entry read before that commit carries a smaller tag and is read again from
//!   the tree. A request that waited for a consistency token, or came after the model applied the
//!   event, sees the change, as it would reading the tree itself. (Between a commit and the
//!   publication of its position, a few microseconds, a cached answer is as old as a read made a
//!   moment before the commit: the same window as any reader racing a commit.)
//!
//! Any event the model applies, relevant or not, retags lazily: the next lookup of each key reads
//! it once more. Under a steady write rate that is one read per key and batch, never one per
//! request. The caller must read the position **before** calling [`ViewCache::get_or_load`],
//! which reads the tree.
//!
//! Bounded: a full shard first drops entries of older positions, then, if that frees nothing,
//! empties itself. Absences are never cached (a missing session may appear a moment later).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use idstream_eventlog::Position;

const SHARDS: usize = 16;

struct Tagged<V> {
    position: Position,
    value: V,
}

type Shard<K, V> = RwLock<HashMap<K, Tagged<V>, RandomState>>;

/// Facts of type `V` keyed by `K`, read from one read model (see the module's documentation).
pub struct ViewCache<K, V> {
    hasher: RandomState,
    shards: Box<[Shard<K, V>]>,
    per_shard: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> ViewCache<K, V> {
    /// A cache of at most `capacity` entries (at least one per shard).
    pub fn new(capacity: usize) -> ViewCache<K, V> {
        let hasher = RandomState::new();
        ViewCache {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        // `as usize` keeps the low bits, which is all the modulo needs.
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// The value of `key` as of `position`, the position the read model has published, read by
    /// the caller **before** this call: the cached value if it was read at that same position,
    /// else `load()`'s answer (read from the tree now), cached with `position` if present.
    pub fn get_or_load<E>(
        &self,
        key: &K,
        position: Position,
        load: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<V>, E> {
        let shard = self.shard(key);
        if let Some(hit) = read(shard).get(key)
            && hit.position == position
        {
            return Ok(Some(hit.value.clone()));
        }
        let loaded = load()?;
        let mut map = write(shard);
        match &loaded {
            Some(value) => {
                if map.len() >= self.per_shard && !map.contains_key(key) {
                    map.retain(|_, entry| entry.position == position);
                    if map.len() >= self.per_shard {
                        map.clear();
                    }
                }
                // Whatever the entry held: its tag was read before its value, as this one's was,
                // so each is right for its own tag.
                map.insert(
                    key.clone(),
                    Tagged {
                        position,
                        value: value.clone(),
                    },
                );
            }
            None => {
                map.remove(key);
            }
        }
        Ok(loaded)
    }

    /// How many entries are cached (of any position).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

impl<K, V> std::fmt::Debug for ViewCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len: usize = self.shards.iter().map(|shard| read(shard).len()).sum();
        f.debug_struct("ViewCache")
            .field("len", &len)
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

/// A poisoned shard only means another thread panicked holding it; its map is still valid.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use super::*;

    /// `cache.get_or_load(key, position, …)` loading `value`, and whether it loaded.
    fn get(
        cache: &ViewCache<u32, &'static str>,
        key: u32,
        position: Position,
        value: Option<&'static str>,
    ) -> (Option<&'static str>, bool) {
        let loaded = Cell::new(false);
        let answer = cache
            .get_or_load(&key, position, || {
                loaded.set(true);
                Ok::<_, Infallible>(value)
            })
            .unwrap();
        (answer, loaded.get())
    }

    #[test]
    fn an_entry_answers_while_the_position_is_the_one_it_was_read_at() {
        let cache = ViewCache::new(64);
        assert_eq!(get(&cache, 1, 7, Some("live")), (Some("live"), true));
        // Same position: answered from memory (the loader's answer is not even asked for).
        assert_eq!(get(&cache, 1, 7, Some("other")), (Some("live"), false));
        // The model moved on: read again, and the new answer is what is kept.
        assert_eq!(get(&cache, 1, 8, Some("revoked")), (Some("revoked"), true));
        assert_eq!(get(&cache, 1, 8, Some("other")), (Some("revoked"), false));
        // A rebuild starts again from 0: a different position, read again.
        assert_eq!(get(&cache, 1, 0, None), (None, true));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn absences_are_never_cached_and_drop_what_was() {
        let cache = ViewCache::new(64);
        assert_eq!(get(&cache, 1, 3, None), (None, true));
        assert_eq!(get(&cache, 1, 3, None), (None, true));
        assert_eq!(get(&cache, 1, 3, Some("started")), (Some("started"), true));
        assert_eq!(get(&cache, 1, 3, None), (Some("started"), false));
        assert_eq!(get(&cache, 1, 4, None), (None, true));
        assert_eq!(get(&cache, 1, 4, Some("again")), (Some("again"), true));
    }

    #[test]
    fn errors_pass_through_and_leave_the_entry_for_its_own_position() {
        let cache: ViewCache<u32, &str> = ViewCache::new(64);
        assert_eq!(get(&cache, 1, 3, Some("live")), (Some("live"), true));
        let failed = cache.get_or_load(&1, 4, || Err::<Option<&str>, _>("storage"));
        assert_eq!(failed, Err("storage"));
        assert_eq!(get(&cache, 1, 4, Some("read")), (Some("read"), true));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_evicts_older_positions_first() {
        let cache = ViewCache::new(SHARDS * 4);
        assert_eq!(cache.capacity(), SHARDS * 4);
        for key in 0..10_000 {
            get(&cache, key, 1, Some("old"));
            assert!(cache.len() <= cache.capacity());
        }
        assert!(cache.len() > SHARDS, "{}", cache.len());
        // As many keys of the next position as one shard holds: wherever they land, a full
        // shard drops its entries of position 1 before any of these.
        for key in 10_000..10_004 {
            assert_eq!(get(&cache, key, 2, Some("new")), (Some("new"), true));
        }
        for key in 10_000..10_004 {
            assert_eq!(get(&cache, key, 2, Some("x")), (Some("new"), false));
        }
        assert!(cache.len() <= cache.capacity());
    }

    #[test]
    fn concurrent_readers_never_see_an_answer_older_than_their_position() {
        // Writers of the "model" bump a version and publish it as the position; readers read the
        // position first, then the model, as the cache's callers must. Every answer must be at
        // least as new as the position the reader read.
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        const VERSIONS: u64 = 5_000;
        let cache: Arc<ViewCache<u32, u64>> = Arc::new(ViewCache::new(64));
        let model = Arc::new(AtomicU64::new(0));
        let published = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| {
            {
                let (model, published) = (model.clone(), published.clone());
                scope.spawn(move || {
                    for version in 1..=VERSIONS {
                        model.store(version, Ordering::SeqCst);
                        published.store(version, Ordering::SeqCst);
                        std::thread::yield_now();
                    }
                });
            }
            for _ in 0..2 {
                let (cache, model, published) = (cache.clone(), model.clone(), published.clone());
                scope.spawn(move || {
                    loop {
                        let position = published.load(Ordering::SeqCst);
                        let answer = cache
                            .get_or_load(&1, position, || {
                                Ok::<_, Infallible>(Some(model.load(Ordering::SeqCst)))
                            })
                            .unwrap()
                            .unwrap();
                        assert!(answer >= position, "{answer} read at position {position}");
                        if position == VERSIONS {
                            break;
                        }
                    }
                });
            }
        });
    }
}
