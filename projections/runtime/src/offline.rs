//! Rebuilding every read model from the whole log, without live tails (`idstream replay`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_eventlog::{LogError, Position, RecordedEvent, SharedLog};
use tokio::sync::mpsc;

use crate::apply::apply_events;
use crate::runner::{check_names, log_skips};
use crate::store::{blocking, open_healing};
use crate::{Projection, RuntimeError, meta};

/// Events read from the log and applied per sled batch. Big pages amortise the per-batch cost;
/// each projection's overlay of one page stays small because it holds distinct keys only.
const PAGE: usize = 8192;
/// Pages read ahead while the previous ones are applied, so reading and applying overlap.
const READ_AHEAD: usize = 2;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Clears the read models in `dir` and rebuilds them from position 0 up to the log's last position
/// at the time of the call, then flushes them and returns their digests by name.
///
/// `progress(done, target)` is called after every page. Nothing else may use `dir` meanwhile
/// (sled's lock makes sure). The projections are applied in parallel, page by page, while the next
/// page is read.
pub async fn rebuild_offline(
    dir: &Path,
    log: SharedLog,
    projections: Vec<Arc<dyn Projection>>,
    mut progress: impl FnMut(Position, Position),
) -> Result<BTreeMap<String, String>, RuntimeError> {
    check_names(&projections)?;
    let log_id = log.log_id().await?;
    let target = log.last_position().await?;
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
    let mut last_report = started;
    let (pages, mut incoming) = mpsc::channel(READ_AHEAD);
    let reader = AbortOnDrop(tokio::spawn(read_pages(log, target, pages)));
    let mut done = 0;
    while let Some(page) = incoming.recv().await {
        let page = Arc::new(page?);
        let applying = work.iter().map(|(projection, tree)| {
            let (projection, tree, page) = (projection.clone(), tree.clone(), page.clone());
            blocking(move || apply_events(projection.as_ref(), &tree, &page))
        });
        for ((projection, _), applied) in work.iter().zip(futures::future::join_all(applying).await)
        {
            log_skips(projection.name(), &applied?.skipped);
        }
        done = page.last().map_or(done, |event| event.position);
        progress(done, target);
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!(done, target, "rebuilding read models");
        }
    }
    drop(reader);

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

/// Reads the log from position 0 to `target` in pages and sends them on; stops at the first error
/// (after sending it) or when the receiver is gone.
async fn read_pages(
    log: SharedLog,
    target: Position,
    pages: mpsc::Sender<Result<Vec<RecordedEvent>, LogError>>,
) {
    let mut after = 0;
    while after < target {
        let mut page = match log.read_after(after, PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = pages.send(Err(error)).await;
                return;
            }
        };
        page.retain(|event| event.position <= target);
        let Some(last) = page.last() else {
            tracing::warn!(
                after,
                target,
                "the event log holds no events up to its reported last position; the rebuild ends here"
            );
            return;
        };
        after = last.position;
        if pages.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
