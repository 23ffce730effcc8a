//! Rebuilding every read model from the whole log, without live tails (`idstream replay`).
//!
//! Three stages run at once: one task reads the log in pages; per projection, one thread stages
//! each page (runs `apply`) while another writes the page staged before it. Staging page N+1
//! reads through page N's writes while they are being written, so both stages stay correct and
//! busy.
//!
//! Unlike the live runners, the pages are written key by key, not as one batch with a
//! checkpoint: in sled 0.34 every batch takes a process-wide lock exclusively, which would make
//! the four read models' writers and every read of their stages wait for one another, while
//! plain writes share it. Atomicity comes from the metadata instead: the trees are cleared
//! *without* a version at the start, and only once every page is written and flushed does one
//! batch per tree record its version and checkpoint (`meta::seal`). A tree interrupted before
//! that holds keys but no version, so whoever opens it next rebuilds it
//! (`RebuildReason::Unversioned`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_eventlog::{LogError, Position, RecordedEvent, SharedLog};
use tokio::sync::mpsc;

use crate::apply::{self, ApplyFailure, Overlay, apply_events};
use crate::filter::KeyFilter;
use crate::runner::{check_names, log_skips};
use crate::store::{blocking, open_healing};
use crate::{Projection, RuntimeError, meta};

/// Events read from the log per page; each projection writes one page at a time.
pub(crate) const PAGE: usize = 8192;
/// Pages queued ahead of each projection, so that reading runs ahead of applying.
const READ_AHEAD: usize = 2;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

type Page = Arc<Vec<RecordedEvent>>;

/// Clears the read models in `dir` and rebuilds them from position 0 up to the log's last position
/// at the time of the call, then flushes them and returns their digests by name.
///
/// `progress(done, target)` is called whenever every projection has written further. Nothing
/// else may use `dir` meanwhile (sled's lock makes sure). If an event cannot be applied, the
/// rebuild stops with [`RuntimeError::Apply`] naming it; that projection's tree is sealed at the
/// position before it, the others where they got, so a runtime started on them resumes there.
pub async fn rebuild_offline(
    dir: &Path,
    log: SharedLog,
    projections: Vec<Arc<dyn Projection>>,
    progress: impl FnMut(Position, Position),
) -> Result<BTreeMap<String, String>, RuntimeError> {
    rebuild_offline_until(dir, log, projections, None, progress).await
}

/// [`rebuild_offline`], stopping at position `until` (or the log's end, if that comes first):
/// the read models as they were when the event at `until` had just been applied. This is
/// point-in-time replay: `dir` must be a store of its own, never the live one.
pub async fn rebuild_offline_until(
    dir: &Path,
    log: SharedLog,
    projections: Vec<Arc<dyn Projection>>,
    until: Option<Position>,
    mut progress: impl FnMut(Position, Position),
) -> Result<BTreeMap<String, String>, RuntimeError> {
    check_names(&projections)?;
    let log_id = log.log_id().await?;
    let end = log.last_position().await?;
    let target = until.map_or(end, |until| until.min(end));
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    tracing::info!(path = %dir.display(), target, projections = ?names, "rebuilding read models from the event log");

    let path = dir.to_owned();
    let opening = projections.clone();
    let (db, trees) = blocking(move || {
        open_healing(&path, |db| {
            opening
                .iter()
                .map(|projection| {
                    // The tree named after the projection serves it from now on; trees an
                    // online rebuild built and switched to are dropped at the next start.
                    meta::serve_from_named_tree(db, projection.name())?;
                    let tree = db.open_tree(projection.name())?;
                    meta::clear_unversioned(&tree)?;
                    Ok(tree)
                })
                .collect::<Result<Vec<_>, sled::Error>>()
        })
    })
    .await?;
    let work: Vec<(Arc<dyn Projection>, sled::Tree)> = projections.into_iter().zip(trees).collect();

    progress(0, target);
    let started = Instant::now();
    let (committed_tx, mut committed_rx) = mpsc::unbounded_channel::<(usize, Position)>();
    let mut page_senders = Vec::new();
    let mut pipelines = Vec::new();
    for (index, (projection, tree)) in work.iter().enumerate() {
        let (pages_tx, pages_rx) = mpsc::channel::<Page>(READ_AHEAD);
        page_senders.push(pages_tx);
        let (projection, tree, committed) =
            (projection.clone(), tree.clone(), committed_tx.clone());
        pipelines.push(tokio::task::spawn_blocking(move || {
            pipeline(projection.as_ref(), &tree, pages_rx, |position| {
                let _ = committed.send((index, position));
            })
        }));
    }
    drop(committed_tx);
    let mut reader = AbortOnDrop(tokio::spawn(read_pages(log, target, page_senders)));

    // Progress is what every projection has written. The loop ends when every pipeline has
    // finished (they drop their senders), whether because the reader is done or one failed.
    let mut committed = vec![0; work.len()];
    let mut done = 0;
    let mut last_report = started;
    while let Some((index, position)) = committed_rx.recv().await {
        committed[index] = position;
        let reached = committed.iter().copied().min().unwrap_or(target);
        if reached > done {
            done = reached;
            progress(done, target);
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                tracing::info!(done, target, "rebuilding read models");
            }
        }
    }
    let mut outcomes = Vec::with_capacity(pipelines.len());
    for pipeline in pipelines {
        match pipeline.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        }
    }
    let read = match (&mut reader.0).await {
        Ok(result) => result,
        Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
    };

    // Every tree now holds its events up to where its pipeline got. Once that is durable, each
    // is sealed with its version and that checkpoint in one batch; a tree a storage failure may
    // have left half-written stays unversioned and is rebuilt again when next opened.
    db.flush_async().await?;
    let sealing = work.clone();
    let sealed_at: Vec<Option<Position>> = outcomes.iter().map(|o| o.written).collect();
    let sealed_log_id = log_id.clone();
    blocking(move || {
        for ((projection, tree), written) in sealing.iter().zip(sealed_at) {
            if let Some(checkpoint) = written {
                meta::seal(tree, projection.version(), Some(&sealed_log_id), checkpoint)?;
            }
        }
        Ok::<_, sled::Error>(())
    })
    .await?;
    db.flush_async().await?;
    if let Some(error) = outcomes.into_iter().find_map(|outcome| outcome.error) {
        return Err(error);
    }
    read?;
    let digests = blocking(move || {
        work.iter()
            .map(|(projection, tree)| Ok((projection.name().to_owned(), meta::digest(tree)?)))
            .collect::<Result<BTreeMap<_, _>, sled::Error>>()
    })
    .await?;
    let elapsed = started.elapsed();
    tracing::info!(
        events = done,
        elapsed = ?elapsed,
        per_second = (done as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        "read models rebuilt"
    );
    Ok(digests)
}

/// Opens a store that [`rebuild_offline_until`] built, for reading (waiting briefly for the lock
/// the rebuild just released).
pub async fn open_rebuilt(dir: &Path) -> Result<sled::Db, RuntimeError> {
    let path = dir.to_owned();
    let (db, ()) = blocking(move || open_healing(&path, |_| Ok(()))).await?;
    Ok(db)
}

/// Reads the log from position 0 to `target` in pages and hands each page to every projection.
/// Stops early, without error, when a projection has stopped taking pages (it failed).
async fn read_pages(
    log: SharedLog,
    target: Position,
    projections: Vec<mpsc::Sender<Page>>,
) -> Result<(), LogError> {
    let mut after = 0;
    while after < target {
        let mut page = log.read_after(after, PAGE).await?;
        page.retain(|event| event.position <= target);
        let Some(last) = page.last() else {
            tracing::warn!(
                after,
                target,
                "the event log holds no events up to its reported last position; the rebuild ends here"
            );
            return Ok(());
        };
        after = last.position;
        let page = Arc::new(page);
        for projection in &projections {
            if projection.send(page.clone()).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// How far a pipeline got: the position its tree holds every event up to and nothing beyond
/// (`None` when a storage failure may have left a page half-written), and why it stopped early,
/// if it did.
struct Outcome {
    written: Option<Position>,
    error: Option<RuntimeError>,
}

/// One projection's stage-while-writing loop; runs on a blocking thread and writes on another.
/// `written` is told each position once the page up to it is in the tree.
fn pipeline(
    projection: &dyn Projection,
    tree: &sled::Tree,
    mut pages: mpsc::Receiver<Page>,
    written: impl Fn(Position),
) -> Outcome {
    let name = projection.name();
    let storage = |source| {
        RuntimeError::Apply(ApplyFailure::Storage {
            projection: name,
            source,
        })
    };
    std::thread::scope(|scope| {
        // The overlay being written, the position it ends at, and the thread writing it.
        type Pending<'s> = (
            Arc<Overlay>,
            Position,
            std::thread::ScopedJoinHandle<'s, Result<(), sled::Error>>,
        );
        let finish = |pending: Option<Pending<'_>>,
                      last: &mut Option<Position>|
         -> Result<(), RuntimeError> {
            if let Some((_, end, handle)) = pending {
                let result = match handle.join() {
                    Ok(result) => result,
                    Err(panicked) => std::panic::resume_unwind(panicked),
                };
                if let Err(error) = result {
                    *last = None;
                    return Err(storage(error));
                }
                *last = Some(end);
                written(end);
            }
            Ok(())
        };
        let mut pending: Option<Pending<'_>> = None;
        let mut done = Some(0);
        // Every key written so far: the tree started empty, so no other key can be in it.
        let mut known = Some(KeyFilter::new());
        let mut staged_to = 0;
        let result = (|| {
            while let Some(page) = pages.blocking_recv() {
                let fresh: Vec<&RecordedEvent> = page
                    .iter()
                    .filter(|event| event.position > staged_to)
                    .collect();
                let Some(end) = fresh.last().map(|event| event.position) else {
                    continue;
                };
                let base = pending.as_ref().map(|(overlay, _, _)| overlay.clone());
                match apply::stage(projection, tree, base, known.as_ref(), &fresh) {
                    Ok(staged) => {
                        let (overlay, skipped) = staged.into_parts();
                        log_skips(name, &skipped);
                        if let Some(known) = &mut known {
                            for (key, value) in &overlay {
                                if value.is_some() {
                                    known.insert(key);
                                }
                            }
                        }
                        // The tree must hold everything before this page before its writes go in.
                        finish(pending.take(), &mut done)?;
                        let overlay = Arc::new(overlay);
                        let writing = overlay.clone();
                        let handle = scope.spawn(move || apply::write_unbatched(tree, &writing));
                        pending = Some((overlay, end, handle));
                        staged_to = end;
                    }
                    Err(_) => {
                        // Once the previous page is in, the ordinary path commits what precedes
                        // the failing event and names it. It starts from the tree's checkpoint,
                        // which the pages written key by key did not advance: record where they
                        // got first (the tree stays unversioned until sealed, so this vouches
                        // for nothing yet).
                        finish(pending.take(), &mut done)?;
                        if let Err(error) = tree.insert(meta::CHECKPOINT, &staged_to.to_be_bytes())
                        {
                            done = None;
                            return Err(storage(error));
                        }
                        let applied = match apply_events(projection, tree, &page) {
                            Ok(applied) => applied,
                            Err(failure) => {
                                done = match &failure {
                                    ApplyFailure::Event { committed, .. } => Some(*committed),
                                    ApplyFailure::Storage { .. } => None,
                                };
                                return Err(RuntimeError::Apply(failure));
                            }
                        };
                        log_skips(name, &applied.skipped);
                        // What that commit wrote is not in the filter; reading through sled from
                        // here on keeps the answers exact.
                        known = None;
                        done = Some(applied.checkpoint);
                        written(applied.checkpoint);
                        staged_to = applied.checkpoint;
                    }
                }
            }
            finish(pending.take(), &mut done)
        })();
        // Every path that ends in an error has waited for the page being written already.
        let error = result.err();
        Outcome {
            written: done,
            error,
        }
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), LogError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
