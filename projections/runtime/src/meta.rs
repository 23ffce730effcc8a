//! The runtime's metadata inside each projection's tree, the decision whether a stored tree can
//! be kept, and the digest.

use std::fmt;

use idstream_eventlog::Position;
use sha2::{Digest, Sha256};

/// Keys beginning with this byte belong to the runtime.
pub(crate) const RESERVED: u8 = 0;
/// The position of the last event reflected in the tree (u64, big-endian).
pub(crate) const CHECKPOINT: &[u8] = b"\0meta/checkpoint";
/// The [`Projection::version`](crate::Projection::version) the tree was built with (u32, big-endian).
pub(crate) const VERSION: &[u8] = b"\0meta/version";
/// The [`EventLog::log_id`](idstream_eventlog::EventLog::log_id) the tree was built from.
pub(crate) const LOG_ID: &[u8] = b"\0meta/log_id";

/// What the runtime stored about a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// `None` when absent or malformed: a reset was interrupted or the tree holds foreign data.
    pub version: Option<u32>,
    pub log_id: Option<String>,
    pub checkpoint: Position,
    /// Whether the tree holds any key at all.
    pub empty: bool,
}

pub(crate) fn read(tree: &sled::Tree) -> Result<Meta, sled::Error> {
    let version = tree
        .get(VERSION)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map(u32::from_be_bytes);
    let log_id = tree
        .get(LOG_ID)?
        .and_then(|v| String::from_utf8(v.to_vec()).ok());
    let checkpoint = match tree.get(CHECKPOINT)? {
        None => Some(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes),
    };
    let empty = tree.first()?.is_none();
    // A malformed checkpoint makes the whole tree untrustworthy; report it as unversioned so
    // that it is rebuilt.
    Ok(match checkpoint {
        Some(checkpoint) => Meta {
            version,
            log_id,
            checkpoint,
            empty,
        },
        None => Meta {
            version: None,
            log_id,
            checkpoint: 0,
            empty,
        },
    })
}

/// The stored checkpoint (0 when there is none).
pub(crate) fn checkpoint(tree: &sled::Tree) -> Result<Position, sled::Error> {
    Ok(tree
        .get(CHECKPOINT)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Why a stored tree is thrown away and rebuilt from position 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RebuildReason {
    /// No (valid) version: an earlier reset was interrupted, or the tree holds foreign data.
    Unversioned,
    VersionChanged {
        stored: u32,
        current: u32,
    },
    LogChanged {
        stored: String,
        current: String,
    },
    /// Data without a recorded log id cannot be tied to the log it came from.
    LogUnknown,
    BeyondLog {
        checkpoint: Position,
        last: Position,
    },
    Requested,
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::Unversioned => f.write_str(
                "the stored tree has no valid version (an earlier rebuild was interrupted)",
            ),
            RebuildReason::VersionChanged { stored, current } => {
                write!(
                    f,
                    "the projection's version changed from {stored} to {current}"
                )
            }
            RebuildReason::LogChanged { stored, current } => {
                write!(
                    f,
                    "the tree was built from event log {stored:?} but the log is now {current:?}"
                )
            }
            RebuildReason::LogUnknown => {
                f.write_str("the tree does not record which event log it was built from")
            }
            RebuildReason::BeyondLog { checkpoint, last } => write!(
                f,
                "the checkpoint {checkpoint} is beyond the event log's last position {last}, so the log was truncated or replaced"
            ),
            RebuildReason::Requested => f.write_str("a rebuild was requested"),
        }
    }
}

/// What to do with a stored tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing stored yet: write the metadata and start at 0.
    Fresh,
    /// Keep it and resume from its checkpoint.
    Keep,
    Rebuild(RebuildReason),
}

/// Judges a stored tree against the projection's version and, when the log could be reached, the
/// log's identity and last position (`log`).
pub(crate) fn verdict(meta: &Meta, version: u32, log: Option<(&str, Position)>) -> Verdict {
    if meta.empty {
        return Verdict::Fresh;
    }
    match meta.version {
        None => return Verdict::Rebuild(RebuildReason::Unversioned),
        Some(stored) if stored != version => {
            return Verdict::Rebuild(RebuildReason::VersionChanged {
                stored,
                current: version,
            });
        }
        Some(_) => {}
    }
    let Some((log_id, last)) = log else {
        return Verdict::Keep;
    };
    match &meta.log_id {
        Some(stored) if stored != log_id => Verdict::Rebuild(RebuildReason::LogChanged {
            stored: stored.clone(),
            current: log_id.to_owned(),
        }),
        None if meta.checkpoint > 0 => Verdict::Rebuild(RebuildReason::LogUnknown),
        _ if meta.checkpoint > last => Verdict::Rebuild(RebuildReason::BeyondLog {
            checkpoint: meta.checkpoint,
            last,
        }),
        _ => Verdict::Keep,
    }
}

/// Writes the metadata of a fresh tree (checkpoint 0).
pub(crate) fn init(
    tree: &sled::Tree,
    version: u32,
    log_id: Option<&str>,
) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    batch.insert(VERSION, &version.to_be_bytes());
    batch.insert(CHECKPOINT, &0u64.to_be_bytes());
    if let Some(id) = log_id {
        batch.insert(LOG_ID, id.as_bytes());
    }
    tree.apply_batch(batch)
}

/// Records the log a kept tree belongs to (a tree created while the log was unreachable).
pub(crate) fn set_log_id(tree: &sled::Tree, log_id: &str) -> Result<(), sled::Error> {
    tree.insert(LOG_ID, log_id.as_bytes()).map(drop)
}

/// Empties a tree and writes fresh metadata, safely against a crash at any point: the version is
/// removed first, so an interrupted reset is found [`RebuildReason::Unversioned`] and redone.
/// The tree itself survives (handles to it held by queries stay valid), so this works online.
pub(crate) fn reset(
    tree: &sled::Tree,
    version: u32,
    log_id: Option<&str>,
) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    batch.remove(VERSION);
    batch.remove(CHECKPOINT);
    batch.remove(LOG_ID);
    tree.apply_batch(batch)?;
    tree.clear()?;
    init(tree, version, log_id)
}

/// Empties a tree and leaves it without metadata, for an offline rebuild that writes it key by
/// key: until [`seal`] records the version, a tree holding any key is judged
/// [`RebuildReason::Unversioned`] and rebuilt again, so a rebuild interrupted at any point is
/// never mistaken for a finished one.
pub(crate) fn clear_unversioned(tree: &sled::Tree) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    batch.remove(VERSION);
    batch.remove(CHECKPOINT);
    batch.remove(LOG_ID);
    tree.apply_batch(batch)?;
    tree.clear()
}

/// Records, in one atomic batch, that a tree cleared by [`clear_unversioned`] now holds the state
/// at `checkpoint` built by `version` from the log `log_id`. The caller flushes the tree's data
/// first, so that the batch can only ever be recovered after everything it vouches for.
pub(crate) fn seal(
    tree: &sled::Tree,
    version: u32,
    log_id: Option<&str>,
    checkpoint: Position,
) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    batch.insert(VERSION, &version.to_be_bytes());
    batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
    if let Some(id) = log_id {
        batch.insert(LOG_ID, id.as_bytes());
    }
    tree.apply_batch(batch)
}

/// Hex SHA-256 over every key and value of the tree in key order, each prefixed with its length
/// (u64, big-endian) so that no two different trees hash the same bytes. The checkpoint is
/// included: equal digests mean equal state *at the same position*. The version and the log id are
/// not state derived from events, and leaving them out lets trees built from two copies of one
/// log (a replica, a restored backup) compare equal.
pub(crate) fn digest(tree: &sled::Tree) -> Result<String, sled::Error> {
    let mut hasher = Sha256::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        if key.as_ref() == VERSION || key.as_ref() == LOG_ID {
            continue;
        }
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(&key);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(&value);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The store's tree that records, per projection, which tree serves it: a rebuild builds a new
/// tree beside the serving one and switches to it, so the serving tree's name changes. A
/// projection without an entry is served by the tree named after it.
const SERVING: &[u8] = b"\0serving";
/// Separates a projection's name from the number of a tree built for it.
const GENERATION_MARK: char = '~';

/// The name of the tree that serves projection `name`.
pub(crate) fn serving_tree(db: &sled::Db, name: &str) -> Result<Vec<u8>, sled::Error> {
    Ok(db
        .open_tree(SERVING)?
        .get(name)?
        .map_or_else(|| name.as_bytes().to_vec(), |tree| tree.to_vec()))
}

/// Records that `tree` serves projection `name` from now on, and flushes it to disk: a tree
/// replaced by it is dropped only after this, so a crash in between keeps one of the two.
pub(crate) fn set_serving_tree(db: &sled::Db, name: &str, tree: &[u8]) -> Result<(), sled::Error> {
    db.open_tree(SERVING)?.insert(name, tree)?;
    db.flush()?;
    Ok(())
}

/// Makes the tree named after projection `name` the one that serves it (an offline rebuild
/// writes that tree).
pub(crate) fn serve_from_named_tree(db: &sled::Db, name: &str) -> Result<(), sled::Error> {
    db.open_tree(SERVING)?.remove(name)?;
    db.flush()?;
    Ok(())
}

/// Whether a tree of the store belongs to projection `name`: the tree named after it, or one
/// built beside it (`name~n`).
fn belongs_to(tree: &[u8], name: &str) -> bool {
    tree == name.as_bytes()
        || tree
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(&[GENERATION_MARK as u8]))
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// A name for a new tree of projection `name` that no tree of the store has.
pub(crate) fn new_tree_name(db: &sled::Db, name: &str) -> Vec<u8> {
    let highest = db
        .tree_names()
        .iter()
        .filter(|tree| belongs_to(tree, name))
        .filter_map(|tree| {
            std::str::from_utf8(tree)
                .ok()?
                .rsplit_once(GENERATION_MARK)?
                .1
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    format!("{name}{GENERATION_MARK}{}", highest + 1).into_bytes()
}

/// The trees of projection `name` other than `serving`: left by a rebuild that was interrupted
/// or by a switch whose old tree was not dropped yet. Nothing reads them.
pub(crate) fn stray_trees(db: &sled::Db, name: &str, serving: &[u8]) -> Vec<Vec<u8>> {
    db.tree_names()
        .into_iter()
        .filter(|tree| belongs_to(tree, name) && tree.as_ref() != serving)
        .map(|tree| tree.to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("t").unwrap()
    }

    fn meta(version: Option<u32>, log_id: Option<&str>, checkpoint: Position) -> Meta {
        Meta {
            version,
            log_id: log_id.map(str::to_owned),
            checkpoint,
            empty: false,
        }
    }

    #[test]
    fn an_empty_tree_is_fresh_whatever_the_log_says() {
        let empty = Meta {
            version: None,
            log_id: None,
            checkpoint: 0,
            empty: true,
        };
        assert_eq!(verdict(&empty, 1, Some(("log", 0))), Verdict::Fresh);
    }

    #[test]
    fn a_tree_of_another_version_or_without_one_is_rebuilt() {
        assert_eq!(
            verdict(&meta(Some(1), Some("log"), 5), 2, Some(("log", 9))),
            Verdict::Rebuild(RebuildReason::VersionChanged {
                stored: 1,
                current: 2
            })
        );
        assert_eq!(
            verdict(&meta(None, Some("log"), 5), 2, None),
            Verdict::Rebuild(RebuildReason::Unversioned)
        );
    }

    #[test]
    fn a_tree_from_another_log_or_ahead_of_the_log_is_rebuilt() {
        assert_eq!(
            verdict(&meta(Some(1), Some("old"), 5), 1, Some(("new", 9))),
            Verdict::Rebuild(RebuildReason::LogChanged {
                stored: "old".into(),
                current: "new".into()
            })
        );
        assert_eq!(
            verdict(&meta(Some(1), Some("log"), 10), 1, Some(("log", 9))),
            Verdict::Rebuild(RebuildReason::BeyondLog {
                checkpoint: 10,
                last: 9
            })
        );
        assert_eq!(
            verdict(&meta(Some(1), None, 3), 1, Some(("log", 9))),
            Verdict::Rebuild(RebuildReason::LogUnknown)
        );
    }

    #[test]
    fn a_consistent_tree_is_kept_and_so_is_any_tree_while_the_log_is_unreachable() {
        assert_eq!(
            verdict(&meta(Some(1), Some("log"), 9), 1, Some(("log", 9))),
            Verdict::Keep
        );
        assert_eq!(
            verdict(&meta(Some(1), None, 0), 1, Some(("log", 9))),
            Verdict::Keep
        );
        assert_eq!(
            verdict(&meta(Some(1), Some("old"), 99), 1, None),
            Verdict::Keep
        );
    }

    #[test]
    fn reset_leaves_only_fresh_metadata_in_the_same_tree() {
        let tree = temp_tree();
        init(&tree, 1, Some("log")).unwrap();
        tree.insert(CHECKPOINT, &7u64.to_be_bytes()).unwrap();
        tree.insert("data", "x").unwrap();
        reset(&tree, 2, None).unwrap();
        assert_eq!(
            read(&tree).unwrap(),
            Meta {
                version: Some(2),
                log_id: None,
                checkpoint: 0,
                empty: false
            }
        );
        assert_eq!(tree.get("data").unwrap(), None);
    }

    #[test]
    fn a_malformed_checkpoint_reads_as_unversioned() {
        let tree = temp_tree();
        init(&tree, 1, Some("log")).unwrap();
        tree.insert(CHECKPOINT, "garbage").unwrap();
        assert_eq!(read(&tree).unwrap().version, None);
    }

    #[test]
    fn the_digest_covers_data_and_checkpoint_but_not_version_or_log_id() {
        let a = temp_tree();
        let b = temp_tree();
        init(&a, 1, Some("log-a")).unwrap();
        init(&b, 7, Some("log-b")).unwrap();
        for t in [&a, &b] {
            t.insert("k", "v").unwrap();
        }
        assert_eq!(digest(&a).unwrap(), digest(&b).unwrap());

        b.insert(CHECKPOINT, &1u64.to_be_bytes()).unwrap();
        assert_ne!(
            digest(&a).unwrap(),
            digest(&b).unwrap(),
            "the checkpoint is part of the state"
        );
    }

    #[test]
    fn the_digest_is_unambiguous_about_where_keys_end() {
        let a = temp_tree();
        let b = temp_tree();
        a.insert("ab", "c").unwrap();
        b.insert("a", "bc").unwrap();
        assert_ne!(digest(&a).unwrap(), digest(&b).unwrap());
        // The digest of a known state is fixed, so it can be compared across builds and machines.
        let c = temp_tree();
        c.insert("k", "v").unwrap();
        let mut expected = Sha256::new();
        expected.update(1u64.to_be_bytes());
        expected.update(b"k");
        expected.update(1u64.to_be_bytes());
        expected.update(b"v");
        assert_eq!(digest(&c).unwrap(), hex::encode(expected.finalize()));
    }
}
