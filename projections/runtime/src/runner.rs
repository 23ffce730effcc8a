//! One runner task per projection: validate the stored tree against the log, subscribe from the
//! checkpoint, apply what is ready in batches, publish the new position; on any failure back off
//! and start over from the checkpoint. It never ends by itself.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use idstream_eventlog::{LogError, Position, RecordedEvent, SharedLog};
use tokio::sync::watch;

use crate::apply::{ApplyFailure, apply_events};
use crate::meta::{self, Verdict};
use crate::store::blocking;
use crate::{Projection, RuntimeError};

/// The most events applied in one sled batch by a live runner.
const LIVE_BATCH: usize = 1024;
/// How often a runner that is catching up reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// At most this many skip notes of one batch are logged one by one; the rest are counted.
const SKIP_NOTES_LOGGED: usize = 10;

/// What a projection's handle and its runner share.
pub(crate) struct Shared {
    pub projection: Arc<dyn Projection>,
    pub tree: sled::Tree,
    /// Serialises writes to the tree and lets readers (digests) see it between batches. It holds
    /// the generation of the runner allowed to write: a rebuild bumps it, so a batch still in
    /// flight from a stopped runner finds itself outdated and commits nothing.
    pub gate: Mutex<u64>,
    /// The last applied position, published after every commit. The serving tree's is the
    /// projection's public position, handed on from tree to tree when a rebuild switches.
    pub position: Arc<watch::Sender<Position>>,
}

impl Shared {
    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    pub fn lock(&self) -> MutexGuard<'_, u64> {
        // A panic while holding the gate cannot leave the tree half-written (batches are atomic),
        // so a poisoned gate is still good to use.
        self.gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Clears the tree for a rebuild from 0 and publishes position 0. Takes the held gate as
    /// proof that no batch is committed meanwhile.
    pub fn reset(
        &self,
        _gate: &MutexGuard<'_, u64>,
        log_id: Option<&str>,
    ) -> Result<(), sled::Error> {
        let cleared = meta::reset(&self.tree, self.projection.version(), log_id);
        // Even a failed reset may have removed some keys: caches over the tree start over.
        self.projection.cleared();
        cleared?;
        self.position.send_replace(0);
        Ok(())
    }
}

/// Whether a runner's in-memory state over the tree (see [`Projection::opened`]) must be loaded
/// when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// Load it from the tree.
    Load,
    /// It follows the tree already (a tree built beside and switched to): do not load it again,
    /// which would hold the runner for as long as reading the whole tree takes.
    Loaded,
}

/// Starts the runner of `shared` as generation `generation`.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    log: SharedLog,
    generation: u64,
    open: Open,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(shared, log, generation, open))
}

/// Why a runner round ended.
enum Stop {
    /// The runner has been replaced (rebuild or shutdown): end the task.
    Outdated,
    /// Start over from the checkpoint after a pause.
    Retry,
}

async fn run(shared: Arc<Shared>, log: SharedLog, generation: u64, mut open: Open) {
    let mut backoff = Backoff::new();
    loop {
        // Only the first round may skip loading: a later one starts over from the stored tree.
        let this_round = std::mem::replace(&mut open, Open::Load);
        match round(&shared, &log, generation, this_round, &mut backoff).await {
            Stop::Outdated => return,
            Stop::Retry => backoff.wait().await,
        }
    }
}

/// One subscription: validate, subscribe from the checkpoint, apply until the stream fails.
async fn round(
    shared: &Arc<Shared>,
    log: &SharedLog,
    generation: u64,
    open: Open,
    backoff: &mut Backoff,
) -> Stop {
    let name = shared.name();
    let last = match validate(shared, log, generation, open).await {
        Ok(Some(last)) => last,
        Ok(None) => return Stop::Outdated,
        Err(NotReady::Log(error)) => {
            tracing::warn!(projection = name, %error, "cannot reach the event log; serving the stored read model and retrying");
            return Stop::Retry;
        }
        Err(NotReady::Storage(error)) => {
            tracing::error!(projection = name, %error, "read-model storage failed while checking it against the event log; retrying");
            return Stop::Retry;
        }
    };
    let mut checkpoint = *shared.position.borrow();
    let stream = match log.subscribe(checkpoint).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(projection = name, %error, checkpoint, "cannot subscribe to the event log; retrying from the checkpoint");
            return Stop::Retry;
        }
    };
    let mut catching_up = checkpoint < last;
    if catching_up {
        tracing::info!(
            projection = name,
            from = checkpoint,
            to = last,
            "projection catching up with the event log"
        );
    }
    let mut last_report = Instant::now();

    let mut chunks = stream.ready_chunks(LIVE_BATCH);
    while let Some(items) = chunks.next().await {
        let mut events = Vec::with_capacity(items.len());
        let mut stream_error: Option<LogError> = None;
        for item in items {
            match item {
                // Redeliveries at or below the checkpoint are dropped here already; apply_events
                // checks against the stored checkpoint again.
                Ok(event) if event.position <= checkpoint => {}
                Ok(event) => events.push(event),
                Err(error) => {
                    stream_error = Some(error);
                    break;
                }
            }
        }
        if !events.is_empty() {
            match commit(shared, generation, events).await {
                Committed::Outdated => return Stop::Outdated,
                Committed::Failed => return Stop::Retry,
                Committed::Applied(position) => {
                    checkpoint = position;
                    backoff.reset();
                }
            }
        }
        if let Some(error) = stream_error {
            tracing::warn!(projection = name, %error, checkpoint, "event log subscription failed; resubscribing from the checkpoint");
            return Stop::Retry;
        }
        if catching_up && checkpoint >= last {
            catching_up = false;
            tracing::info!(
                projection = name,
                position = checkpoint,
                "projection caught up with the event log"
            );
        } else if catching_up && last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!(
                projection = name,
                position = checkpoint,
                target = last,
                "projection catching up"
            );
        }
    }
    tracing::warn!(
        projection = name,
        checkpoint,
        "event log subscription ended; resubscribing from the checkpoint"
    );
    Stop::Retry
}

/// Why a runner cannot start a subscription yet.
enum NotReady {
    Log(LogError),
    Storage(sled::Error),
}

/// Checks the stored tree against the log (its identity and last position) and the projection's
/// version, and rebuilds it from 0 when they disagree. Returns the log's last position, or `None`
/// when this runner is outdated.
async fn validate(
    shared: &Arc<Shared>,
    log: &SharedLog,
    generation: u64,
    open: Open,
) -> Result<Option<Position>, NotReady> {
    let log_id = log.log_id().await.map_err(NotReady::Log)?;
    let last = log.last_position().await.map_err(NotReady::Log)?;
    let shared = shared.clone();
    let outcome = blocking(move || -> Result<Option<()>, sled::Error> {
        let gate = shared.lock();
        if *gate != generation {
            return Ok(None);
        }
        let stored = meta::read(&shared.tree)?;
        let mut open = open;
        match meta::verdict(&stored, shared.projection.version(), Some((&log_id, last))) {
            Verdict::Fresh => {
                meta::init(&shared.tree, shared.projection.version(), Some(&log_id))?;
                shared.position.send_replace(0);
            }
            Verdict::Keep => {
                if stored.log_id.is_none() {
                    meta::set_log_id(&shared.tree, &log_id)?;
                }
            }
            Verdict::Rebuild(reason) => {
                tracing::warn!(projection = shared.name(), %reason, "rebuilding the read model from the event log");
                shared.reset(&gate, Some(&log_id))?;
                open = Open::Load;
            }
        }
        if open == Open::Load {
            shared.projection.opened(&shared.tree);
        }
        Ok(Some(()))
    })
    .await;
    match outcome {
        Ok(Some(())) => Ok(Some(last)),
        Ok(None) => Ok(None),
        Err(error) => Err(NotReady::Storage(error)),
    }
}

enum Committed {
    Applied(Position),
    Failed,
    Outdated,
}

/// Applies a batch off the async workers, under the gate, and publishes the new position.
async fn commit(shared: &Arc<Shared>, generation: u64, events: Vec<RecordedEvent>) -> Committed {
    let shared = shared.clone();
    blocking(move || {
        let name = shared.name();
        let gate = shared.lock();
        if *gate != generation {
            return Committed::Outdated;
        }
        match apply_events(shared.projection.as_ref(), &shared.tree, &events) {
            Ok(applied) => {
                shared.position.send_replace(applied.checkpoint);
                drop(gate);
                log_skips(name, &applied.skipped);
                Committed::Applied(applied.checkpoint)
            }
            Err(failure) => {
                if let ApplyFailure::Event { committed, .. } = &failure {
                    shared.position.send_replace(*committed);
                }
                drop(gate);
                tracing::error!(
                    projection = name,
                    error = %failure,
                    "PROJECTION STUCK: an event cannot be applied; the read model stays at the position before it and retries. Fix the projection or its data and restart or rebuild it"
                );
                Committed::Failed
            }
        }
    })
    .await
}

pub(crate) fn log_skips(name: &'static str, skipped: &[(Position, String)]) {
    for (position, reason) in skipped.iter().take(SKIP_NOTES_LOGGED) {
        tracing::warn!(projection = name, position, %reason, "projection skipped an event");
    }
    if skipped.len() > SKIP_NOTES_LOGGED {
        tracing::warn!(
            projection = name,
            more = skipped.len() - SKIP_NOTES_LOGGED,
            "projection skipped more events in the same batch"
        );
    }
}

/// Exponential pause between retries: a log that is down is not hammered, and one that comes
/// back is picked up within seconds.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }
}

/// Checks that names are unique.
pub(crate) fn check_names(projections: &[Arc<dyn Projection>]) -> Result<(), RuntimeError> {
    let mut seen = std::collections::BTreeSet::new();
    for projection in projections {
        if !seen.insert(projection.name()) {
            return Err(RuntimeError::DuplicateName(projection.name()));
        }
    }
    Ok(())
}
