//! Staging a projection's writes and committing them with the checkpoint in one sled batch.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use idstream_eventlog::{Position, RecordedEvent};

use crate::filter::KeyFilter;
use crate::meta::{self, RESERVED};
use crate::{ApplyError, Projection};

/// A key and its value, as [`Staged::scan_prefix`] returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Staged writes by key; `None` marks a removal.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A write overlay over a projection's tree: what [`Projection::apply`] reads and writes.
///
/// Reads see the overlay first, then the tree, so a batch of events sees its own earlier writes.
/// Nothing reaches the tree until the runtime commits the overlay together with the new
/// checkpoint in one atomic sled batch.
pub struct Staged<'a> {
    tree: &'a sled::Tree,
    /// Writes staged before this overlay that are still being committed (the offline rebuild
    /// stages the next page while the previous one commits). Reads see them over the tree.
    base: Option<Arc<Overlay>>,
    /// Every key the tree may hold, when that is known (offline rebuilds); a key outside it is
    /// answered without asking sled.
    known: Option<&'a KeyFilter>,
    overlay: Overlay,
    /// The position of the event being applied, for [`Staged::skip`] notes.
    position: Position,
    skipped: Vec<(Position, String)>,
    /// The first reserved key a projection tried to write, if any.
    trespass: Option<Vec<u8>>,
}

impl<'a> Staged<'a> {
    /// An empty overlay over `tree`. The runtime creates these; tests of a projection's `apply`
    /// may too.
    pub fn new(tree: &'a sled::Tree) -> Staged<'a> {
        Staged::on(tree, None, None)
    }

    /// An empty overlay over `base` (writes not yet in `tree`) over `tree`, whose keys are all
    /// in `known` if that is given.
    pub(crate) fn on(
        tree: &'a sled::Tree,
        base: Option<Arc<Overlay>>,
        known: Option<&'a KeyFilter>,
    ) -> Staged<'a> {
        Staged {
            tree,
            base,
            known,
            overlay: BTreeMap::new(),
            position: 0,
            skipped: Vec::new(),
            trespass: None,
        }
    }

    /// The JSON value at `key`, decoded; a value that does not decode is [`ApplyError::Corrupt`].
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, ApplyError> {
        self.get(key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|error| ApplyError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: error.to_string(),
                })
            })
            .transpose()
    }

    /// Stages `value` as JSON at `key`. Struct fields serialise in declaration order, so equal
    /// values give equal bytes (what digests and rebuilds rely on).
    pub fn put_json<T: serde::Serialize>(
        &mut self,
        key: Vec<u8>,
        value: &T,
    ) -> Result<(), ApplyError> {
        // Only a time outside RFC 3339's range could fail to serialise, and every time here was
        // parsed from RFC 3339; refusing the event is still better than a panic.
        let json = serde_json::to_vec(value).map_err(|error| {
            ApplyError::Rejected(format!(
                "cannot encode {}: {error}",
                String::from_utf8_lossy(&key)
            ))
        })?;
        self.insert(key, json);
        Ok(())
    }

    /// The value at `key`, as staged so far.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ApplyError> {
        let key = key.as_ref();
        if let Some(staged) = self.overlay.get(key) {
            return Ok(staged.clone());
        }
        if let Some(pending) = self.base.as_ref().and_then(|base| base.get(key)) {
            return Ok(pending.clone());
        }
        if let Some(known) = self.known
            && key.first() != Some(&RESERVED)
            && !known.may_contain(key)
        {
            return Ok(None);
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Stages `key = value`. Keys beginning with the byte 0 belong to the runtime; writing one
    /// fails the event.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        self.guard(&key);
        self.overlay.insert(key, Some(value.into()));
    }

    /// Stages the removal of `key`.
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.guard(&key);
        self.overlay.insert(key, None);
    }

    /// Every key and value starting with `prefix`, in key order, as staged so far. The runtime's
    /// own keys are never included.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<KeyValue>, ApplyError> {
        let prefix = prefix.as_ref();
        let mut merged = BTreeMap::new();
        for entry in self.tree.scan_prefix(prefix) {
            let (key, value) = entry?;
            merged.insert(key.to_vec(), value.to_vec());
        }
        // The pending base first, then this overlay: later writes win.
        for layer in self.base.iter().map(|base| &**base).chain([&self.overlay]) {
            for (key, staged) in layer
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                match staged {
                    Some(value) => merged.insert(key.clone(), value.clone()),
                    None => merged.remove(key),
                };
            }
        }
        Ok(merged
            .into_iter()
            .filter(|(k, _)| k.first() != Some(&RESERVED))
            .collect())
    }

    /// Notes that the current event was deliberately skipped and why (an event type of a newer
    /// version, a payload that does not decode, …). The runtime logs the notes after the commit;
    /// `apply` itself must not log.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.skipped.push((self.position, reason.into()));
    }

    fn guard(&mut self, key: &[u8]) {
        if key.first() == Some(&RESERVED) && self.trespass.is_none() {
            self.trespass = Some(key.to_vec());
        }
    }

    /// The staged writes and the skip notes.
    pub(crate) fn into_parts(self) -> (Overlay, Vec<(Position, String)>) {
        (self.overlay, self.skipped)
    }
}

/// Commits `overlay` with the checkpoint `checkpoint` in one atomic batch.
pub(crate) fn commit(
    tree: &sled::Tree,
    overlay: &Overlay,
    checkpoint: Position,
) -> Result<(), sled::Error> {
    let mut batch = sled::Batch::default();
    for (key, staged) in overlay {
        match staged {
            Some(value) => batch.insert(key.as_slice(), value.as_slice()),
            None => batch.remove(key.as_slice()),
        }
    }
    batch.insert(meta::CHECKPOINT, &checkpoint.to_be_bytes());
    tree.apply_batch(batch)
}

/// Writes `overlay` into `tree` key by key, in key order, without a batch and without a
/// checkpoint. Only for a tree no one reads until it is sealed (the offline rebuild): plain
/// writes take sled's process-wide lock shared, so several trees fill at once and reads of the
/// stage running beside them are not held up.
pub(crate) fn write_unbatched(tree: &sled::Tree, overlay: &Overlay) -> Result<(), sled::Error> {
    for (key, staged) in overlay {
        match staged {
            Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
            None => tree.remove(key.as_slice())?,
        };
    }
    Ok(())
}

/// The outcome of [`apply_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The tree's checkpoint afterwards.
    pub checkpoint: Position,
    /// How many events were applied (events at or below the previous checkpoint are not).
    pub applied: usize,
    /// The [`Staged::skip`] notes of the applied events: (position, reason).
    pub skipped: Vec<(Position, String)>,
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FailureCause {
    #[error(transparent)]
    Error(#[from] ApplyError),
    #[error("apply panicked: {0}")]
    Panic(String),
    #[error("apply wrote the runtime's reserved key {0:?} (keys starting with byte 0)")]
    ReservedKey(String),
}

/// A batch of events that could not be applied in full.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    /// One event failed. The events before it in the batch were committed; the checkpoint is at
    /// `committed`, just below the failed event, which is retried from there.
    #[error(
        "projection {projection} cannot apply the {event_type} event at position {position}: {cause}"
    )]
    Event {
        projection: &'static str,
        position: Position,
        event_type: String,
        committed: Position,
        cause: FailureCause,
    },
    /// Sled failed to read or commit; nothing of the batch was committed.
    #[error("projection {projection}: read-model storage failed: {source}")]
    Storage {
        projection: &'static str,
        source: sled::Error,
    },
}

/// Applies the events above `tree`'s checkpoint, in order, and commits their writes together with
/// the new checkpoint in one atomic sled batch. Events at or below the checkpoint (redeliveries)
/// and events out of order are ignored.
///
/// If an event fails (error or panic), the events before it are committed and the failure names
/// it; the checkpoint never passes it. The caller must be the tree's only writer.
pub fn apply_events(
    projection: &dyn Projection,
    tree: &sled::Tree,
    events: &[RecordedEvent],
) -> Result<Applied, ApplyFailure> {
    let name = projection.name();
    let storage = |source| ApplyFailure::Storage {
        projection: name,
        source,
    };
    let checkpoint = meta::checkpoint(tree).map_err(storage)?;

    let mut fresh = Vec::with_capacity(events.len());
    let mut last = checkpoint;
    for event in events {
        if event.position > last {
            last = event.position;
            fresh.push(event);
        }
    }
    if fresh.is_empty() {
        return Ok(Applied {
            checkpoint,
            applied: 0,
            skipped: Vec::new(),
        });
    }

    match stage(projection, tree, None, None, &fresh) {
        Ok(staged) => {
            let (overlay, skipped) = staged.into_parts();
            commit(tree, &overlay, last).map_err(storage)?;
            projection.committed(&mut overlay.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
            Ok(Applied {
                checkpoint: last,
                applied: fresh.len(),
                skipped,
            })
        }
        Err((index, cause)) => {
            // Staging is deterministic, so the events before the failed one stage again exactly
            // as they did; committing them keeps a failure from holding back the whole batch and
            // pins the checkpoint right below the event that needs attention.
            let mut committed = checkpoint;
            if index > 0
                && let Ok(staged) = stage(projection, tree, None, None, &fresh[..index])
            {
                let prefix_end = fresh[index - 1].position;
                let overlay = staged.into_parts().0;
                commit(tree, &overlay, prefix_end).map_err(storage)?;
                projection
                    .committed(&mut overlay.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
                committed = prefix_end;
            }
            let failed = fresh[index];
            Err(ApplyFailure::Event {
                projection: name,
                position: failed.position,
                event_type: failed.envelope.event_type.clone(),
                committed,
                cause,
            })
        }
    }
}

/// Applies `events` to a fresh overlay over `base` and `tree`; on failure, the index of the
/// failing event and why.
pub(crate) fn stage<'t>(
    projection: &dyn Projection,
    tree: &'t sled::Tree,
    base: Option<Arc<Overlay>>,
    known: Option<&'t KeyFilter>,
    events: &[&RecordedEvent],
) -> Result<Staged<'t>, (usize, FailureCause)> {
    let mut staged = Staged::on(tree, base, known);
    for (index, event) in events.iter().enumerate() {
        staged.position = event.position;
        let outcome = catch_unwind(AssertUnwindSafe(|| projection.apply(&mut staged, event)));
        let cause = match outcome {
            Ok(Ok(())) => match staged.trespass.take() {
                None => continue,
                Some(key) => FailureCause::ReservedKey(String::from_utf8_lossy(&key).into_owned()),
            },
            Ok(Err(error)) => FailureCause::Error(error),
            Err(payload) => FailureCause::Panic(panic_message(payload.as_ref())),
        };
        return Err((index, cause));
    }
    Ok(staged)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Counter, counts, event, temp_tree};

    #[test]
    fn reads_see_staged_writes_and_removals_before_the_tree() {
        let tree = temp_tree();
        tree.insert("a", "tree").unwrap();
        tree.insert("b", "tree").unwrap();
        let mut staged = Staged::new(&tree);
        staged.insert("a", "staged");
        staged.remove("b");
        staged.insert("c", "new");
        assert_eq!(staged.get("a").unwrap().as_deref(), Some(&b"staged"[..]));
        assert_eq!(staged.get("b").unwrap(), None);
        assert_eq!(staged.get("c").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(
            tree.get("c").unwrap(),
            None,
            "nothing reaches the tree before the commit"
        );
    }

    #[test]
    fn writes_still_being_committed_are_read_between_the_overlay_and_the_tree() {
        let tree = temp_tree();
        tree.insert("p/a", "tree").unwrap();
        tree.insert("p/b", "tree").unwrap();
        let mut pending = Overlay::new();
        pending.insert(b"p/a".to_vec(), Some(b"pending".to_vec()));
        pending.insert(b"p/b".to_vec(), None);
        pending.insert(b"p/c".to_vec(), Some(b"pending".to_vec()));
        let mut staged = Staged::on(&tree, Some(Arc::new(pending)), None);
        staged.insert("p/c", "staged");
        assert_eq!(staged.get("p/a").unwrap().as_deref(), Some(&b"pending"[..]));
        assert_eq!(staged.get("p/b").unwrap(), None);
        assert_eq!(staged.get("p/c").unwrap().as_deref(), Some(&b"staged"[..]));
        let scan: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"p/a".to_vec(), b"pending".to_vec()),
            (b"p/c".to_vec(), b"staged".to_vec()),
        ];
        assert_eq!(staged.scan_prefix("p/").unwrap(), scan);
    }

    #[test]
    fn a_prefix_scan_merges_the_overlay_with_the_tree_in_key_order() {
        let tree = temp_tree();
        for key in ["p/1", "p/2", "p/3", "q/1"] {
            tree.insert(key, "tree").unwrap();
        }
        tree.insert(meta::CHECKPOINT, &1u64.to_be_bytes()).unwrap();
        let mut staged = Staged::new(&tree);
        staged.remove("p/2");
        staged.insert("p/0", "staged");
        staged.insert("p/3", "staged");
        staged.insert("q/2", "staged");
        let scan = staged.scan_prefix("p/").unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            [("p/0", "staged"), ("p/1", "tree"), ("p/3", "staged")]
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
        assert_eq!(scan, expected);
        assert!(
            staged
                .scan_prefix("")
                .unwrap()
                .iter()
                .all(|(k, _)| k[0] != RESERVED)
        );
    }

    #[test]
    fn data_and_checkpoint_are_committed_together() {
        let tree = temp_tree();
        let events = [event(1, "acme"), event(2, "acme"), event(3, "globex")];
        let applied = apply_events(&Counter::default(), &tree, &events).unwrap();
        assert_eq!(
            applied,
            Applied {
                checkpoint: 3,
                applied: 3,
                skipped: Vec::new()
            }
        );
        assert_eq!(meta::checkpoint(&tree).unwrap(), 3);
        assert_eq!(
            counts(&tree),
            vec![("acme".into(), 2), ("globex".into(), 1)]
        );
    }

    #[test]
    fn events_at_or_below_the_checkpoint_are_not_applied_again() {
        let tree = temp_tree();
        apply_events(
            &Counter::default(),
            &tree,
            &[event(1, "acme"), event(2, "acme")],
        )
        .unwrap();
        let applied = apply_events(
            &Counter::default(),
            &tree,
            &[event(1, "acme"), event(2, "acme"), event(3, "acme")],
        )
        .unwrap();
        assert_eq!(applied.applied, 1);
        assert_eq!(counts(&tree), vec![("acme".into(), 3)]);

        let again = apply_events(
            &Counter::default(),
            &tree,
            &[event(2, "acme"), event(3, "acme")],
        )
        .unwrap();
        assert_eq!(
            again,
            Applied {
                checkpoint: 3,
                applied: 0,
                skipped: Vec::new()
            }
        );
        assert_eq!(counts(&tree), vec![("acme".into(), 3)]);
    }

    #[test]
    fn a_failing_event_pins_the_checkpoint_just_below_it_with_the_data_of_the_events_before() {
        let tree = temp_tree();
        let poison = Counter {
            fail_on: Some("poison"),
            ..Counter::default()
        };
        let events = [
            event(1, "acme"),
            event(2, "acme"),
            event(3, "poison"),
            event(4, "acme"),
        ];
        let failure = apply_events(&poison, &tree, &events).unwrap_err();
        match failure {
            ApplyFailure::Event {
                position: 3,
                committed: 2,
                cause: FailureCause::Error(_),
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(meta::checkpoint(&tree).unwrap(), 2);
        assert_eq!(counts(&tree), vec![("acme".into(), 2)]);

        // Retried, it fails at the same event and changes nothing.
        assert!(apply_events(&poison, &tree, &events[2..]).is_err());
        assert_eq!(meta::checkpoint(&tree).unwrap(), 2);
        assert_eq!(counts(&tree), vec![("acme".into(), 2)]);
    }

    #[test]
    fn a_panic_in_apply_is_caught_and_commits_nothing_past_the_event() {
        let tree = temp_tree();
        let panicky = Counter {
            panic_on: Some("boom"),
            ..Counter::default()
        };
        let failure =
            apply_events(&panicky, &tree, &[event(1, "boom"), event(2, "acme")]).unwrap_err();
        match failure {
            ApplyFailure::Event {
                position: 1,
                committed: 0,
                cause: FailureCause::Panic(message),
                ..
            } => {
                assert!(message.contains("boom"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(meta::checkpoint(&tree).unwrap(), 0);
        assert!(counts(&tree).is_empty());
    }

    #[test]
    fn writing_a_reserved_key_fails_the_event() {
        struct Trespasser;
        impl Projection for Trespasser {
            fn name(&self) -> &'static str {
                "trespasser"
            }
            fn version(&self) -> u32 {
                1
            }
            fn beside(&self) -> std::sync::Arc<dyn Projection> {
                std::sync::Arc::new(Trespasser)
            }
            fn apply(&self, state: &mut Staged<'_>, _: &RecordedEvent) -> Result<(), ApplyError> {
                state.insert(meta::CHECKPOINT, "0");
                Ok(())
            }
        }
        let tree = temp_tree();
        let failure = apply_events(&Trespasser, &tree, &[event(1, "acme")]).unwrap_err();
        assert!(
            matches!(
                failure,
                ApplyFailure::Event {
                    cause: FailureCause::ReservedKey(_),
                    ..
                }
            ),
            "{failure:?}"
        );
        assert_eq!(tree.get(meta::CHECKPOINT).unwrap(), None);
    }

    #[test]
    fn skip_notes_carry_the_position_of_the_skipped_event() {
        let tree = temp_tree();
        let applied = apply_events(
            &Counter::default(),
            &tree,
            &[event(1, "acme"), event(2, "skip-me")],
        )
        .unwrap();
        assert_eq!(applied.checkpoint, 2);
        assert_eq!(
            applied.skipped,
            vec![(2, "tenant skip-me is skipped".to_owned())]
        );
    }
}
