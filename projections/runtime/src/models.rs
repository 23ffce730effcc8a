//! [`ReadModels`]: the running read models of one service process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use idstream_eventlog::{LogError, Position, SharedLog};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::meta::{self, RebuildReason, Verdict};
use crate::runner::{self, Open, Shared};
use crate::store::{blocking, open_healing};
use crate::{Projection, RuntimeError};

/// How long `start` waits for the log to say who it is before going on without it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A rebuild gives up when the tree it builds beside the serving one has not moved for this long
/// (an event it cannot apply, a log that is gone), and the serving tree goes on.
const STALL_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 2 } else { 30 });
/// How long a tree replaced by a rebuild is kept before it is dropped, for queries that took it
/// just before the switch to finish reading it.
const RETIRED_GRACE: Duration = Duration::from_secs(30);

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
    /// How many times a rebuild has switched a projection to a new tree.
    switches: AtomicU64,
    /// Replaced trees waiting to be dropped (see [`retire`]); a shutdown stops those still
    /// waiting and waits for those being dropped, so that nothing holds the store after it.
    retiring: Retiring,
}

/// The tasks that drop replaced trees, and the signal that tells them to stop waiting.
struct Retiring {
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

struct Slot {
    name: &'static str,
    /// The tree that serves the projection now, with the instance that folds into it and its
    /// runner's gate. Replaced as a whole by a rebuild's switch.
    serving: RwLock<Arc<Shared>>,
    /// The projection's public position: the serving tree's, whichever tree that is.
    position: Arc<watch::Sender<Position>>,
    /// The serving tree's runner. Held locked for a whole rebuild, so rebuilds of one projection
    /// (and a shutdown) take turns.
    runner: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Slot {
    fn shared(&self) -> Arc<Shared> {
        self.serving
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
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

/// What serves a projection now (see [`ReadModels::serving`]).
#[derive(Clone)]
pub struct Serving {
    /// Its tree.
    pub tree: sled::Tree,
    /// The instance that folds the log into it; its in-memory state follows this tree.
    pub projection: Arc<dyn Projection>,
}

/// A projection being rebuilt beside its serving tree.
struct Aside {
    shared: Arc<Shared>,
    runner: JoinHandle<()>,
    name: Vec<u8>,
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
        let log_backend = log.backend();
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

        let mut strays = Vec::new();
        let slots = projections
            .into_iter()
            .zip(prepared)
            .map(|(projection, prepared)| {
                strays.extend(prepared.strays);
                let position = Arc::new(watch::Sender::new(prepared.checkpoint));
                let shared = Arc::new(Shared {
                    projection,
                    tree: prepared.tree,
                    gate: Mutex::new(0),
                    position: position.clone(),
                });
                let handle = runner::spawn(shared.clone(), log.clone(), 0, Open::Load);
                Slot {
                    name: shared.name(),
                    serving: RwLock::new(shared),
                    position,
                    runner: tokio::sync::Mutex::new(Some(handle)),
                }
            })
            .collect();
        // Trees replaced by a rebuild before the last stop, or by a new version just now, go in
        // the background: dropping a large tree takes a while and nothing reads them.
        let models = ReadModels {
            inner: Arc::new(Inner {
                db,
                log,
                slots,
                switches: AtomicU64::new(0),
                retiring: Retiring {
                    tasks: Mutex::new(Vec::new()),
                    stop: watch::Sender::new(false),
                },
            }),
        };
        if !strays.is_empty() {
            models.retire(strays, Duration::ZERO);
        }
        tracing::info!(path = %dir.display(), backend = log_backend, "read models started");
        Ok(models)
    }

    /// The names of the projections, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.inner.slots.iter().map(|slot| slot.name).collect()
    }

    /// The position the projection has applied (0 before the first event). Panics for an unknown
    /// name.
    pub fn position(&self, name: &str) -> Position {
        *self.known(name).position.borrow()
    }

    /// The least position reached by every projection: answers to queries over several read
    /// models are at least this fresh. 0 when there are none.
    pub fn min_position(&self) -> Position {
        self.inner
            .slots
            .iter()
            .map(|slot| *slot.position.borrow())
            .min()
            .unwrap_or(0)
    }

    /// The least position reached by the projections named in `names` (names this handle does
    /// not know are left out). 0 when none is named.
    pub fn min_position_of(&self, names: &[&str]) -> Position {
        self.named(names)
            .map(|slot| *slot.position.borrow())
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
            .filter(move |slot| names.contains(&slot.name))
    }

    async fn wait_for_slots(
        &self,
        slots: impl Iterator<Item = &Slot>,
        min: Position,
        timeout: Duration,
    ) -> Result<(), ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for slot in slots {
            let mut position = slot.position.subscribe();
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
            .map(|slot| (slot.name, last.saturating_sub(*slot.position.borrow())))
            .collect())
    }

    /// The projection's serving tree, for its query API. Panics for an unknown name.
    ///
    /// Queries read it while the runner writes: each key is consistent, but a query over several
    /// keys may straddle a batch. A rebuild replaces it (see [`ReadModels::rebuild`]): take it
    /// again for each query, or follow [`ReadModels::switches`].
    pub fn tree(&self, name: &str) -> sled::Tree {
        self.known(name).shared().tree.clone()
    }

    /// The serving tree of the projection together with the instance that folds into it, whose
    /// in-memory state (caches, indexes) follows that tree. Panics for an unknown name.
    pub fn serving(&self, name: &str) -> Serving {
        let shared = self.known(name).shared();
        Serving {
            tree: shared.tree.clone(),
            projection: shared.projection.clone(),
        }
    }

    /// How many times a rebuild has switched a projection to a new tree since the start: a query
    /// side that keeps what [`ReadModels::serving`] gave takes it again when this changes.
    pub fn switches(&self) -> u64 {
        self.inner.switches.load(Ordering::Acquire)
    }

    /// Hex SHA-256 over the projection's whole state, checkpoint included, with the position it
    /// reflects; both are taken together between two batches. Equal digests at equal positions
    /// mean byte-identical read models.
    pub async fn digest(&self, name: &str) -> Result<(Position, String), RuntimeError> {
        let shared = self.slot(name)?.shared();
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

    /// Rebuilds one projection online without a gap: folds the whole log into a new tree beside
    /// the serving one (with a new instance of the projection, see [`Projection::beside`]), and
    /// once it has caught up, stops the serving tree's runner, lets the new tree reach the same
    /// position and switches to it together with its in-memory state. Queries meanwhile read the
    /// serving tree, complete and live; its position never goes back. The replaced tree is
    /// dropped a little later. Answers once switched.
    ///
    /// The work runs in a task of its own, so a caller that goes away does not interrupt it. If
    /// the new tree cannot reach the serving one's position (an event it cannot apply), it is
    /// dropped and the serving tree goes on as before: [`RuntimeError::RebuildStalled`].
    pub async fn rebuild(&self, name: &str) -> Result<(), RuntimeError> {
        self.slot(name)?;
        let models = self.clone();
        let name = name.to_owned();
        match tokio::spawn(async move { models.rebuild_beside(&name).await }).await {
            Ok(outcome) => outcome,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    async fn rebuild_beside(&self, name: &str) -> Result<(), RuntimeError> {
        let slot = self.slot(name)?;
        let mut runner = slot.runner.lock().await;
        let serving = slot.shared();
        // Catch up while the serving tree goes on, so that it is stopped only for the last few
        // events; then stop it and let the new tree reach where it stopped.
        let end = self.inner.log.last_position().await?;
        tracing::warn!(projection = slot.name, reason = %RebuildReason::Requested, "rebuilding the read model from the event log beside the serving one");
        let aside = self.start_aside(&serving).await?;
        if let Err(stale) = self.wait_aside(&aside, end).await {
            return Err(self.abandon(aside, stale).await);
        }
        if let Some(old) = runner.take() {
            old.abort();
            let _ = old.await;
        }
        let stopped = serving.clone();
        let (generation, reached) = blocking(move || {
            let mut gate = stopped.lock();
            *gate += 1;
            (*gate, *stopped.position.borrow())
        })
        .await;
        if let Err(stale) = self.wait_aside(&aside, reached).await {
            // The serving tree and its in-memory state are untouched: it goes on.
            *runner = Some(runner::spawn(
                serving,
                self.inner.log.clone(),
                generation,
                Open::Loaded,
            ));
            return Err(self.abandon(aside, stale).await);
        }

        aside.runner.abort();
        let _ = aside.runner.await;
        let built = aside.shared.clone();
        let at = blocking(move || {
            let mut gate = built.lock();
            *gate += 1;
            *built.position.borrow()
        })
        .await;
        let switched = Arc::new(Shared {
            projection: aside.shared.projection.clone(),
            tree: aside.shared.tree.clone(),
            gate: Mutex::new(0),
            position: slot.position.clone(),
        });
        let db = self.inner.db.clone();
        let tree = aside.name.clone();
        let projection = slot.name;
        if let Err(error) = blocking(move || meta::set_serving_tree(&db, projection, &tree)).await {
            *runner = Some(runner::spawn(
                serving,
                self.inner.log.clone(),
                generation,
                Open::Loaded,
            ));
            self.retire(vec![aside.name], Duration::ZERO);
            return Err(error.into());
        }
        *slot.serving.write().unwrap_or_else(PoisonError::into_inner) = switched.clone();
        // Counted before the position moves, so that whoever sees the new position and then
        // asks for the serving tree gets the new one.
        self.inner.switches.fetch_add(1, Ordering::AcqRel);
        // The new tree is at least where the old one stopped: the position only moves on.
        slot.position.send_replace(at);
        *runner = Some(runner::spawn(
            switched,
            self.inner.log.clone(),
            0,
            Open::Loaded,
        ));
        tracing::info!(
            projection = slot.name,
            position = at,
            tree = %String::from_utf8_lossy(&aside.name),
            "switched to the read model rebuilt beside the old one"
        );
        self.retire(vec![serving.tree.name().to_vec()], RETIRED_GRACE);
        Ok(())
    }

    /// Drops `trees` from the store after `grace`, in the background. A failure is only logged:
    /// the trees are strays, found and dropped again at the next start.
    fn retire(&self, trees: Vec<Vec<u8>>, grace: Duration) {
        let db = self.inner.db.clone();
        let mut stop = self.inner.retiring.stop.subscribe();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            blocking(move || {
                for tree in trees {
                    let shown = String::from_utf8_lossy(&tree).into_owned();
                    match db.drop_tree(&tree) {
                        Ok(_) => tracing::info!(tree = %shown, "dropped a replaced read-model tree"),
                        Err(error) => {
                            tracing::warn!(tree = %shown, %error, "could not drop a replaced read-model tree; it is dropped at the next start")
                        }
                    }
                }
            })
            .await;
        });
        let mut tasks = self
            .inner
            .retiring
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// The store, for tests that look at its trees.
    #[cfg(test)]
    pub(crate) fn store(&self) -> &sled::Db {
        &self.inner.db
    }

    /// Creates a new tree beside `serving` and starts a runner that builds it from position 0.
    async fn start_aside(&self, serving: &Arc<Shared>) -> Result<Aside, RuntimeError> {
        let db = self.inner.db.clone();
        let projection = serving.projection.beside();
        let version = projection.version();
        let name = serving.name();
        let (tree_name, tree) = blocking(move || -> Result<_, sled::Error> {
            let tree_name = meta::new_tree_name(&db, name);
            let tree = db.open_tree(&tree_name)?;
            meta::reset(&tree, version, None)?;
            Ok((tree_name, tree))
        })
        .await?;
        let shared = Arc::new(Shared {
            projection,
            tree,
            gate: Mutex::new(0),
            position: Arc::new(watch::Sender::new(0)),
        });
        let runner = runner::spawn(shared.clone(), self.inner.log.clone(), 0, Open::Load);
        Ok(Aside {
            shared,
            runner,
            name: tree_name,
        })
    }

    /// Waits until the tree built beside has reached `target`; gives up (returning where it is)
    /// when it has not moved for [`STALL_TIMEOUT`] or the read models are shutting down.
    async fn wait_aside(&self, aside: &Aside, target: Position) -> Result<(), Position> {
        let mut stopping = self.inner.retiring.stop.subscribe();
        tokio::select! {
            reached = wait_position(&aside.shared.position, target, STALL_TIMEOUT) => reached,
            _ = stopping.wait_for(|stop| *stop) => Err(*aside.shared.position.borrow()),
        }
    }

    /// Stops a rebuild that could not catch up and drops its tree.
    async fn abandon(&self, aside: Aside, reached: Position) -> RuntimeError {
        aside.runner.abort();
        let _ = aside.runner.await;
        let built = aside.shared.clone();
        blocking(move || *built.lock() += 1).await;
        self.retire(vec![aside.name], Duration::ZERO);
        tracing::error!(
            projection = aside.shared.name(),
            reached,
            "the read model rebuilt beside the serving one did not catch up; it is dropped and the serving one goes on"
        );
        RuntimeError::RebuildStalled {
            projection: aside.shared.name(),
            reached,
        }
    }

    /// Stops every runner, waits for a batch in flight, and flushes the store to disk. A failed
    /// flush is only logged: the read models rebuild from the log what did not reach the disk.
    pub async fn shutdown(self) {
        // First, so that a rebuild under way gives up (and releases its projection) and trees
        // waiting to be dropped stay for the next start.
        self.inner.retiring.stop.send_replace(true);
        for slot in &self.inner.slots {
            if let Some(runner) = slot.runner.lock().await.take() {
                runner.abort();
                let _ = runner.await;
            }
            let shared = slot.shared();
            blocking(move || *shared.lock() += 1).await;
        }
        let retiring = std::mem::take(
            &mut *self
                .inner
                .retiring
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in retiring {
            let _ = task.await;
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
            .find(|slot| slot.name == name)
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

/// What [`prepare`] found for one projection.
struct Prepared {
    /// The tree that serves it, with its checkpoint.
    tree: sled::Tree,
    checkpoint: Position,
    /// Its other trees, to drop.
    strays: Vec<Vec<u8>>,
}

/// Opens a projection's serving tree and decides whether to keep it. One that cannot be kept is
/// not cleared in place (which holds the start for as long as removing every key takes): a new
/// tree is built from position 0 beside it, and the old one is dropped in the background.
fn prepare(
    db: &sled::Db,
    projection: &dyn Projection,
    log: Option<(&str, Position)>,
) -> Result<Prepared, sled::Error> {
    let name = projection.name();
    let version = projection.version();
    let log_id = log.map(|(id, _)| id);
    let mut serving = meta::serving_tree(db, name)?;
    let mut tree = db.open_tree(&serving)?;
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
            tracing::warn!(projection = name, %reason, "rebuilding the read model from the event log in a new tree; the old one is dropped in the background");
            serving = meta::new_tree_name(db, name);
            tree = db.open_tree(&serving)?;
            meta::reset(&tree, version, log_id)?;
            meta::set_serving_tree(db, name, &serving)?;
            0
        }
    };
    Ok(Prepared {
        strays: meta::stray_trees(db, name, &serving),
        tree,
        checkpoint,
    })
}

/// Waits until `position` reaches `target`, giving up when it has not moved for `stall`.
/// Returns the position reached when it gives up.
async fn wait_position(
    position: &watch::Sender<Position>,
    target: Position,
    stall: Duration,
) -> Result<(), Position> {
    let mut watching = position.subscribe();
    loop {
        if *watching.borrow_and_update() >= target {
            return Ok(());
        }
        match tokio::time::timeout(stall, watching.changed()).await {
            Ok(Ok(())) => {}
            // The sender is alive as long as `position` is borrowed, so only the stall ends it.
            Ok(Err(_)) | Err(_) => return Err(*position.borrow()),
        }
    }
}
