//! [`ReadModels`]: the running read models of one service process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idstream_eventlog::{LogError, Position, SharedLog};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::meta::{self, RebuildReason, Verdict};
use crate::runner::{self, Shared};
use crate::store::{blocking, open_healing};
use crate::{Projection, RuntimeError};

/// How long `start` waits for the log to say who it is before going on without it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The read models are not yet as fresh as a query asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read models have only reached position {current}")]
pub struct Stale {
    /// The least position all read models have reached.
    pub current: Position,
}

/// The running read models: one sled tree and one runner task per projection, each following the
/// log from its checkpoint. Cheap to clone; every clone is a handle to the same runners.
///
/// Methods taking a projection `name` return [`RuntimeError::UnknownProjection`] or, where they
/// cannot fail otherwise, panic for a name that was not registered: that is a wiring bug.
#[derive(Clone)]
pub struct ReadModels {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    log: SharedLog,
    slots: Vec<Slot>,
}

struct Slot {
    shared: Arc<Shared>,
    runner: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Runners hold only their projection's state, not this handle, so they would outlive it.
        for slot in &mut self.slots {
            if let Some(runner) = slot.runner.get_mut().take() {
                runner.abort();
            }
        }
    }
}

impl ReadModels {
    /// Opens (or creates) the store in `dir` and starts one runner per projection.
    ///
    /// A store that will not open is moved aside and started afresh. Each projection's tree is
    /// kept if it was built by the same version from the same log and is not ahead of it;
    /// otherwise it is cleared and rebuilt from position 0. If the log cannot be reached, the
    /// stored read models are served as they are and the runners catch up when it returns.
    pub async fn start(
        dir: &Path,
        log: SharedLog,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Result<ReadModels, RuntimeError> {
        runner::check_names(&projections)?;
        let probe = probe(&log).await;
        let path = dir.to_owned();
        let opening = projections.clone();
        let (db, prepared) = blocking(move || {
            open_healing(&path, |db| {
                let log = probe.as_ref().map(|(id, last)| (id.as_str(), *last));
                opening
                    .iter()
                    .map(|projection| prepare(db, projection.as_ref(), log))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .await?;

        let slots = projections
            .into_iter()
            .zip(prepared)
            .map(|(projection, (tree, checkpoint))| {
                let shared = Arc::new(Shared {
                    projection,
                    tree,
                    gate: Mutex::new(0),
                    position: watch::Sender::new(checkpoint),
                });
                let handle = runner::spawn(shared.clone(), log.clone(), 0);
                Slot {
                    shared,
                    runner: tokio::sync::Mutex::new(Some(handle)),
                }
            })
            .collect();
        tracing::info!(path = %dir.display(), backend = log.backend(), "read models started");
        Ok(ReadModels {
            inner: Arc::new(Inner { db, log, slots }),
        })
    }

    /// The names of the projections, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.inner
            .slots
            .iter()
            .map(|slot| slot.shared.name())
            .collect()
    }

    /// The position the projection has applied (0 before the first event). Panics for an unknown
    /// name.
    pub fn position(&self, name: &str) -> Position {
        *self.known(name).shared.position.borrow()
    }

    /// The least position reached by every projection: answers to queries over several read
    /// models are at least this fresh. 0 when there are none.
    pub fn min_position(&self) -> Position {
        self.inner
            .slots
            .iter()
            .map(|slot| *slot.shared.position.borrow())
            .min()
            .unwrap_or(0)
    }

    /// The least position reached by the projections named in `names` (names this handle does
    /// not know are left out). 0 when none is named.
    pub fn min_position_of(&self, names: &[&str]) -> Position {
        self.named(names)
            .map(|slot| *slot.shared.position.borrow())
            .min()
            .unwrap_or(0)
    }

    /// Waits until every projection has reached `min` (read-your-writes), at most `timeout`.
    pub async fn wait_for(&self, min: Position, timeout: Duration) -> Result<(), Stale> {
        self.wait_for_slots(self.inner.slots.iter(), min, timeout)
            .await
            .map_err(|_| Stale {
                current: self.min_position(),
            })
    }

    /// Waits until the projections named in `names` have reached `min`, at most `timeout`; the
    /// others are not waited for (a read that needs only some read models is not held up by a
    /// stuck one it does not read). Names this handle does not know are left out.
    pub async fn wait_for_some(
        &self,
        names: &[&str],
        min: Position,
        timeout: Duration,
    ) -> Result<(), Stale> {
        self.wait_for_slots(self.named(names), min, timeout)
            .await
            .map_err(|_| Stale {
                current: self.min_position_of(names),
            })
    }

    fn named<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a Slot> + 'a {
        self.inner
            .slots
            .iter()
            .filter(move |slot| names.contains(&slot.shared.name()))
    }

    async fn wait_for_slots(
        &self,
        slots: impl Iterator<Item = &Slot>,
        min: Position,
        timeout: Duration,
    ) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for slot in slots {
            let mut position = slot.shared.position.subscribe();
            match tokio::time::timeout_at(deadline, position.wait_for(|reached| *reached >= min))
                .await
            {
                Ok(Ok(_)) => {}
                // The sender lives as long as `self`, so only the deadline ends the wait.
                Ok(Err(_)) | Err(_) => return Err(()),
            }
        }
        Ok(())
    }

    /// How many events each projection is behind the log's last position.
    pub async fn lag(&self) -> Result<BTreeMap<&'static str, u64>, LogError> {
        let last = self.inner.log.last_position().await?;
        Ok(self
            .inner
            .slots
            .iter()
            .map(|slot| {
                (
                    slot.shared.name(),
                    last.saturating_sub(*slot.shared.position.borrow()),
                )
            })
            .collect())
    }

    /// The projection's tree, for its query API. Panics for an unknown name.
    ///
    /// Queries read it while the runner writes: each key is consistent, but a query over several
    /// keys may straddle a batch. During a rebuild it is cleared and filled again.
    pub fn tree(&self, name: &str) -> sled::Tree {
        self.known(name).shared.tree.clone()
    }

    /// Hex SHA-256 over the projection's whole state, checkpoint included, with the position it
    /// reflects; both are taken together between two batches. Equal digests at equal positions
    /// mean byte-identical read models.
    pub async fn digest(&self, name: &str) -> Result<(Position, String), RuntimeError> {
        let shared = self.slot(name)?.shared.clone();
        Ok(blocking(move || {
            let _gate = shared.lock();
            Ok::<_, sled::Error>((meta::checkpoint(&shared.tree)?, meta::digest(&shared.tree)?))
        })
        .await?)
    }

    /// The digest of every projection (see [`ReadModels::digest`]), by name.
    pub async fn digests(&self) -> Result<BTreeMap<String, String>, RuntimeError> {
        let mut digests = BTreeMap::new();
        for name in self.names() {
            digests.insert(name.to_owned(), self.digest(name).await?.1);
        }
        Ok(digests)
    }

    /// Rebuilds one projection online: stops its runner, clears its tree and starts a runner from
    /// position 0. Queries meanwhile see it empty, then catching up; [`ReadModels::wait_for`]
    /// waits for it again.
    pub async fn rebuild(&self, name: &str) -> Result<(), RuntimeError> {
        let slot = self.slot(name)?;
        let mut runner = slot.runner.lock().await;
        if let Some(old) = runner.take() {
            old.abort();
            // Its outcome is irrelevant: it was aborted, and a batch it may still have in flight
            // is refused by the generation check below.
            let _ = old.await;
        }
        let shared = slot.shared.clone();
        let (generation, cleared) = blocking(move || {
            let mut gate = shared.lock();
            *gate += 1;
            tracing::warn!(projection = shared.name(), reason = %RebuildReason::Requested, "rebuilding the read model from the event log");
            // The log id is written again by the new runner once it has checked the log.
            let cleared = shared.reset(&gate, None);
            (*gate, cleared)
        })
        .await;
        // Even if clearing failed, a runner must run: it finds the tree unversioned and clears it
        // again, retrying until storage works.
        *runner = Some(runner::spawn(
            slot.shared.clone(),
            self.inner.log.clone(),
            generation,
        ));
        Ok(cleared?)
    }

    /// Stops every runner, waits for a batch in flight, and flushes the store to disk. A failed
    /// flush is only logged: the read models rebuild from the log what did not reach the disk.
    pub async fn shutdown(self) {
        for slot in &self.inner.slots {
            if let Some(runner) = slot.runner.lock().await.take() {
                runner.abort();
                let _ = runner.await;
            }
            let shared = slot.shared.clone();
            blocking(move || *shared.lock() += 1).await;
        }
        match self.inner.db.flush_async().await {
            Ok(_) => tracing::info!("read models stopped"),
            Err(error) => {
                tracing::error!(%error, "read models stopped, but flushing them to disk failed")
            }
        }
    }

    fn slot(&self, name: &str) -> Result<&Slot, RuntimeError> {
        self.inner
            .slots
            .iter()
            .find(|slot| slot.shared.name() == name)
            .ok_or_else(|| RuntimeError::UnknownProjection(name.to_owned()))
    }

    fn known(&self, name: &str) -> &Slot {
        match self.slot(name) {
            Ok(slot) => slot,
            Err(_) => panic!("no projection named {name:?} is registered"),
        }
    }
}

/// Asks the log who it is and how far it goes, giving up after [`PROBE_TIMEOUT`].
async fn probe(log: &SharedLog) -> Option<(String, Position)> {
    let asking = async { Ok::<_, LogError>((log.log_id().await?, log.last_position().await?)) };
    match tokio::time::timeout(PROBE_TIMEOUT, asking).await {
        Ok(Ok(found)) => Some(found),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the event log is unreachable at start; serving the stored read models and catching up when it returns");
            None
        }
        Err(_) => {
            tracing::warn!(timeout = ?PROBE_TIMEOUT, "the event log did not answer at start; serving the stored read models and catching up when it returns");
            None
        }
    }
}

/// Opens a projection's tree and decides whether to keep it. Returns it with its checkpoint.
fn prepare(
    db: &sled::Db,
    projection: &dyn Projection,
    log: Option<(&str, Position)>,
) -> Result<(sled::Tree, Position), sled::Error> {
    let name = projection.name();
    let version = projection.version();
    let log_id = log.map(|(id, _)| id);
    let tree = db.open_tree(name)?;
    let stored = meta::read(&tree)?;
    let checkpoint = match meta::verdict(&stored, version, log) {
        Verdict::Fresh => {
            tracing::info!(
                projection = name,
                version,
                "new read model; building it from the event log"
            );
            meta::init(&tree, version, log_id)?;
            0
        }
        Verdict::Keep => {
            if let (None, Some(id)) = (&stored.log_id, log_id) {
                meta::set_log_id(&tree, id)?;
            }
            tracing::info!(
                projection = name,
                version,
                checkpoint = stored.checkpoint,
                "resuming the read model from its checkpoint"
            );
            stored.checkpoint
        }
        Verdict::Rebuild(reason) => {
            tracing::warn!(projection = name, %reason, "rebuilding the read model from the event log");
            meta::reset(&tree, version, log_id)?;
            0
        }
    };
    Ok((tree, checkpoint))
}
