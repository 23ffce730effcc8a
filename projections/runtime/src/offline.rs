//! Rebuilding every read model from the whole log, without live tails (`idstream replay`).
//!
//! Three stages run at once: one task reads the log in pages; per projection, one thread stages
//! each page (runs `apply`) while another commits the page staged before it. Staging page N+1
//! reads through page N's writes while they are being committed, so both stages stay correct
//! and busy. Each commit is one atomic sled batch with its checkpoint, as in the live runners.

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

/// Events read from the log per page; each projection commits one sled batch per page.
const PAGE: usize = 8192;
/// Pages queued ahead of each projection, so that reading runs ahead of applying.
const READ_AHEAD: usize = 2;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

type Page = Arc<Vec<RecordedEvent>>;

/// Clears the read models in `dir` and rebuilds them from position 0 up to the log's last position
/// at the time of the call, then flushes them and returns their digests by name.
///
/// `progress(done, target)` is called whenever every projection has committed further. Nothing
/// else may use `dir` meanwhile (sled's lock makes sure). If an event cannot be applied, the
/// rebuild stops with [`RuntimeError::Apply`] naming it; that projection's tree is left
/// consistent at the position before it.
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
                    let tree = db.open_tree(projection.name())?;
                    meta::reset(&tree, projection.version(), Some(&log_id))?;
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

    // Progress is what every projection has committed. The loop ends when every pipeline has
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
    for pipeline in pipelines {
        match pipeline.await {
            Ok(result) => result?,
            Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
        }
    }
    match (&mut reader.0).await {
        Ok(result) => result?,
        Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
    }

    db.flush_async().await?;
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

/// One projection's stage-while-committing loop; runs on a blocking thread and commits on
/// another. `committed` is told each checkpoint once its batch is durable in the tree.
fn pipeline(
    projection: &dyn Projection,
    tree: &sled::Tree,
    mut pages: mpsc::Receiver<Page>,
    committed: impl Fn(Position),
) -> Result<(), RuntimeError> {
    let name = projection.name();
    let storage = |source| {
        RuntimeError::Apply(ApplyFailure::Storage {
            projection: name,
            source,
        })
    };
    std::thread::scope(|scope| {
        // The overlay being committed, its checkpoint, and the thread committing it.
        type Pending<'s> = (
            Arc<Overlay>,
            Position,
            std::thread::ScopedJoinHandle<'s, Result<(), sled::Error>>,
        );
        let finish = |pending: Option<Pending<'_>>| -> Result<(), RuntimeError> {
            if let Some((_, checkpoint, handle)) = pending {
                match handle.join() {
                    Ok(result) => result.map_err(storage)?,
                    Err(panicked) => std::panic::resume_unwind(panicked),
                }
                committed(checkpoint);
            }
            Ok(())
        };
        let mut pending: Option<Pending<'_>> = None;
        // Every key written so far: the tree started empty, so no other key can be in it.
        let mut known = Some(KeyFilter::new());
        let mut last = 0;
        while let Some(page) = pages.blocking_recv() {
            let fresh: Vec<&RecordedEvent> =
                page.iter().filter(|event| event.position > last).collect();
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
                    // The tree must hold everything before this page before its batch goes in.
                    finish(pending.take())?;
                    let overlay = Arc::new(overlay);
                    let writing = overlay.clone();
                    let handle = scope.spawn(move || apply::commit(tree, &writing, end));
                    pending = Some((overlay, end, handle));
                    last = end;
                }
                Err(_) => {
                    // Once the previous page is in, the ordinary path commits what precedes the
                    // failing event and names it.
                    finish(pending.take())?;
                    let applied = apply_events(projection, tree, &page)?;
                    log_skips(name, &applied.skipped);
                    // What that commit wrote is not in the filter; reading through sled from
                    // here on keeps the answers exact.
                    known = None;
                    committed(applied.checkpoint);
                    last = applied.checkpoint;
                }
            }
        }
        finish(pending.take())
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), LogError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
