//! An exact in-memory index of record standings and owners, so that a check on a record reads no
//! sled page: the record path was one or two sled point reads, the dominant cost of a check.
//!
//! Entries are keyed by a 128-bit hash (XXH3-128) of the sled key, so an entry is about 40 bytes
//! whatever the ids' lengths (1M grants ≈ 40 MB). A standing keeps its grant and whether the user
//! holds local roles on the record; the role names of the (rare) standings with local roles are
//! kept in a second map, so that a local-role check reads no sled page either.
//!
//! The index is loaded from the tree by [`RecordIndex::load`] when a runner opens the tree (no
//! commit can run meanwhile) and follows every commit through the projection's `committed` hook,
//! which runs before the new position is published, so a query honouring a consistency token
//! sees the index at least at that position. Until it is loaded, queries read sled.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use idstream_domain::access::{RecordAccess, RecordStanding};
use idstream_domain::{RoleName, UserId};

use crate::fold::{GRANT_EXPIRES, LOCAL_ROLE_END};

const SHARDS: usize = 64;
const STANDING: &[u8] = b"g/";
const OWNER: &[u8] = b"o/";
const HAS_LOCAL_ROLES: u8 = 0x80;
/// The standing has a temporary grant or local role: the (rare) temporary standings are read
/// from sled, which keeps their ends.
const TEMPORARY: u8 = 0x40;

/// The keys are hashes already: use their low bits as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Map<V> = HashMap<u128, V, BuildHasherDefault<PassThrough>>;

/// One shard of the standings: both maps change under one lock, so a reader sees a code and
/// its roles from the same write.
#[derive(Default)]
struct Standings {
    codes: Map<u8>,
    /// The local roles of the standings whose code has [`HAS_LOCAL_ROLES`] (a standing whose
    /// role names do not decode has none here, and is read from sled).
    local_roles: Map<BTreeSet<RoleName>>,
}

pub struct RecordIndex {
    loaded: AtomicBool,
    standings: Vec<RwLock<Standings>>,
    owners: Vec<RwLock<Map<UserId>>>,
}

impl Default for RecordIndex {
    fn default() -> Self {
        RecordIndex {
            loaded: AtomicBool::new(false),
            standings: (0..SHARDS).map(|_| RwLock::default()).collect(),
            owners: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

fn hash(key: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key)
}

fn shard(h: u128) -> usize {
    (h >> 120) as usize % SHARDS
}

fn encode(value: &[u8]) -> Option<u8> {
    let (&grant, rest) = value.split_first()?;
    if grant & GRANT_EXPIRES != 0 || rest.contains(&LOCAL_ROLE_END) {
        return Some(TEMPORARY);
    }
    if grant > 2 {
        return None;
    }
    Some(grant | if rest.is_empty() { 0 } else { HAS_LOCAL_ROLES })
}

/// The local roles of a standing's value (as `fold::decode_standing` reads them), or None if
/// there are none or they do not decode.
fn local_roles(value: &[u8]) -> Option<BTreeSet<RoleName>> {
    let rest = value.get(1..).filter(|rest| !rest.is_empty())?;
    rest.split(|b| *b == b'\n')
        .map(|part| std::str::from_utf8(part).ok()?.parse().ok())
        .collect()
}

fn grant(code: u8) -> Option<RecordAccess> {
    match code & 0x03 {
        1 => Some(RecordAccess::ReadOnly),
        2 => Some(RecordAccess::ReadWrite),
        _ => None,
    }
}

impl RecordIndex {
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The standing under the sled key `key`: `None` if the index is not loaded yet (or the
    /// standing's local roles did not decode: sled says what is wrong with them), `Some(None)` if
    /// there is none.
    pub(crate) fn standing(&self, key: &[u8]) -> Option<Option<RecordStanding>> {
        if !self.is_loaded() {
            return None;
        }
        let h = hash(key);
        let shard = self.standings[shard(h)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let Some(&code) = shard.codes.get(&h) else {
            return Some(None);
        };
        if code & TEMPORARY != 0 {
            return None;
        }
        let local_roles = if code & HAS_LOCAL_ROLES == 0 {
            BTreeSet::new()
        } else {
            shard.local_roles.get(&h)?.clone()
        };
        Some(Some(RecordStanding {
            grant: grant(code),
            local_roles,
            ..RecordStanding::default()
        }))
    }

    /// The owner under the sled key `key`, with the same `None` for "not loaded".
    pub(crate) fn owner(&self, key: &[u8]) -> Option<Option<UserId>> {
        if !self.is_loaded() {
            return None;
        }
        let h = hash(key);
        let map = self.owners[shard(h)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Some(map.get(&h).copied())
    }

    /// Follows one committed write (`None`: removal). Other keys are ignored.
    pub(crate) fn apply(&self, key: &[u8], value: Option<&[u8]>) {
        if key.starts_with(STANDING) {
            let h = hash(key);
            let mut shard = self.standings[shard(h)]
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match value.and_then(encode) {
                Some(code) => {
                    shard.codes.insert(h, code);
                    match value.and_then(local_roles) {
                        Some(roles) => shard.local_roles.insert(h, roles),
                        None => shard.local_roles.remove(&h),
                    };
                }
                None => {
                    shard.codes.remove(&h);
                    shard.local_roles.remove(&h);
                }
            }
        } else if key.starts_with(OWNER) {
            let h = hash(key);
            let mut map = self.owners[shard(h)]
                .write()
                .unwrap_or_else(|e| e.into_inner());
            match value
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<UserId>().ok())
            {
                Some(owner) => map.insert(h, owner),
                None => map.remove(&h),
            };
        }
    }

    /// Loads the index from the tree, unless it is loaded already. A tree that cannot be read
    /// leaves it unloaded (queries keep reading sled).
    pub(crate) fn load(&self, tree: &sled::Tree) {
        if self.is_loaded() {
            return;
        }
        self.reset_maps();
        for prefix in [STANDING, OWNER] {
            for entry in tree.scan_prefix(prefix) {
                let Ok((key, value)) = entry else {
                    self.reset_maps();
                    return;
                };
                self.apply(&key, Some(&value));
            }
        }
        self.loaded.store(true, Ordering::Release);
    }

    /// The tree was cleared: the index is empty and exact.
    pub(crate) fn clear(&self) {
        self.reset_maps();
        self.loaded.store(true, Ordering::Release);
    }

    fn reset_maps(&self) {
        for shard in &self.standings {
            *shard.write().unwrap_or_else(|e| e.into_inner()) = Standings::default();
        }
        for shard in &self.owners {
            shard.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}
