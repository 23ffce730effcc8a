//! The embedded event log: append-only segment files in one directory, for a single machine.
//!
//! It is the source of truth when idstream runs without NATS, so it must never acknowledge an
//! append before it is fsynced, never hand a reader a record that could still be lost, and never
//! open over damaged acknowledged events by silently dropping them.
//!
//! - **Writes** go through one writer thread ([`writer`]) that group-commits: every append
//!   queued while the previous fsync ran shares the next one. Optimistic concurrency and
//!   idempotency are decided there, in order, against the durable state.
//! - **Reads** use in-memory indexes (position → file offset, aggregate → positions) rebuilt on
//!   open; event bodies stay on disk and are read with `pread`.
//! - **Recovery** ([`recovery`]) cuts a torn tail left by a crash and refuses to open when damage
//!   sits among acknowledged records. The on-disk layout is in [`format`].
//! - **Exclusivity:** a `LOCK` file in the directory is locked for as long as the log is open,
//!   so a second process (or a second open in this one) fails instead of interleaving writes.

mod format;
mod recovery;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use idstream_domain::{EventEnvelope, StreamKey};
use std::sync::mpsc;

use tokio::sync::{oneshot, watch};

use self::format::{FRAME_HEADER_LEN, FrameCheck, MAX_KEY_LEN, MAX_SUBJECT_LEN};

/// The longest msg id an imported event may carry: an idempotency key and its `:<index>`.
const MAX_MSG_ID_LEN: usize = MAX_KEY_LEN + 32;
use self::writer::{Dedup, Import, Request, Writer};
use crate::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, Position, RawEvent,
    RecordedEvent,
};

/// Reads bigger than this many bytes run on the blocking pool rather than on the caller's task.
const INLINE_READ_BYTES: usize = 256 * 1024;
/// How many events a subscription reads from disk at a time while catching up.
const SUBSCRIPTION_PAGE: usize = 512;

/// Tuning of an [`EmbeddedLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// How long an idempotency key is remembered (JetStream's default duplicate window is 2
    /// minutes; the same here, so both backends behave alike).
    pub dedup_window: Duration,
    /// A new segment file is started once the current one has reached this size.
    pub segment_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            dedup_window: Duration::from_secs(120),
            segment_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The embedded log. Open it with [`EmbeddedLog::open`]; dropping the last handle stops the
/// writer (after the batch it is writing) and releases the directory.
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// `None` only while dropping.
    requests: Option<mpsc::Sender<Request>>,
    /// The position of the last durable event, as published by the writer.
    durable: watch::Receiver<Position>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// What readers and the writer share.
struct Shared {
    log_id: String,
    index: RwLock<Index>,
}

/// The in-memory indexes. Only the writer thread changes them, and only after an fsync.
struct Index {
    segments: Vec<Segment>,
    /// `entries[p - 1]` locates the record at position `p`.
    entries: Vec<Entry>,
    /// Subject of an aggregate → positions of its events, ascending.
    streams: HashMap<String, Vec<Position>>,
}

struct Segment {
    path: Arc<Path>,
    file: Arc<File>,
}

/// Where one record's frame lies.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    len: u32,
    segment: u32,
}

impl Shared {
    // A panic while holding the lock cannot leave the index half-updated in a way readers would
    // misread (entries are only ever pushed), so a poisoned lock is used as is.
    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `max` records after `after`, from disk.
    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let runs = {
            let index = self.read_index();
            let last = index.entries.len() as u64;
            if after >= last || max == 0 {
                return Ok(Vec::new());
            }
            let end = last.min(after.saturating_add(max as u64));
            plan(&index, after + 1..=end)
        };
        read_runs(runs).await
    }
}

/// A byte range of one segment holding the records at positions `first .. first + count`.
/// Records adjacent on disk have consecutive positions, so one `pread` serves a whole run.
struct Run {
    path: Arc<Path>,
    file: Arc<File>,
    offset: u64,
    len: usize,
    first: Position,
    count: usize,
}

fn plan(index: &Index, positions: impl IntoIterator<Item = Position>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut last_segment = u32::MAX;
    for position in positions {
        let entry = index.entries[(position - 1) as usize];
        if let Some(run) = runs.last_mut()
            && last_segment == entry.segment
            && run.offset + run.len as u64 == entry.offset
        {
            run.len += entry.len as usize;
            run.count += 1;
            continue;
        }
        let segment = &index.segments[entry.segment as usize];
        runs.push(Run {
            path: segment.path.clone(),
            file: segment.file.clone(),
            offset: entry.offset,
            len: entry.len as usize,
            first: position,
            count: 1,
        });
        last_segment = entry.segment;
    }
    runs
}

async fn read_runs(runs: Vec<Run>) -> Result<Vec<RecordedEvent>, LogError> {
    let bytes: usize = runs.iter().map(|r| r.len).sum();
    if bytes <= INLINE_READ_BYTES {
        return read_runs_blocking(&runs);
    }
    tokio::task::spawn_blocking(move || read_runs_blocking(&runs))
        .await
        .map_err(|e| LogError::Unavailable(format!("a log read panicked: {e}")))?
}

fn read_runs_blocking(runs: &[Run]) -> Result<Vec<RecordedEvent>, LogError> {
    let mut events = Vec::with_capacity(runs.iter().map(|r| r.count).sum());
    let mut buf = Vec::new();
    for run in runs {
        buf.resize(run.len, 0);
        run.file
            .read_exact_at(&mut buf, run.offset)
            .map_err(|e| io_error("read", &run.path, e))?;
        let mut at = 0;
        for i in 0..run.count {
            let position = run.first + i as u64;
            let damaged = |why: &str| {
                LogError::Corrupt(format!(
                    "segment {} at offset {}: the record at position {position} {why}",
                    run.path.display(),
                    run.offset + at as u64
                ))
            };
            let len = match format::check_frame(&buf[at..]) {
                FrameCheck::Complete { len } => len,
                FrameCheck::Truncated => return Err(damaged("is cut short")),
                FrameCheck::Bad(why) => return Err(damaged(&format!("is damaged ({why})"))),
            };
            let record =
                format::decode_payload(&buf[at + FRAME_HEADER_LEN..at + len]).map_err(&damaged)?;
            if record.position != position {
                return Err(damaged(&format!("holds position {}", record.position)));
            }
            let envelope: EventEnvelope = serde_json::from_slice(record.json)
                .map_err(|e| damaged(&format!("holds an envelope that does not parse: {e}")))?;
            events.push(RecordedEvent {
                position,
                envelope,
                msg_id: record.msg_id.map(str::to_owned),
            });
            at += len;
        }
    }
    Ok(events)
}

async fn read_raw_runs(runs: Vec<Run>) -> Result<Vec<RawEvent>, LogError> {
    let bytes: usize = runs.iter().map(|r| r.len).sum();
    if bytes <= INLINE_READ_BYTES {
        return read_raw_runs_blocking(&runs);
    }
    tokio::task::spawn_blocking(move || read_raw_runs_blocking(&runs))
        .await
        .map_err(|e| LogError::Unavailable(format!("a log read panicked: {e}")))?
}

/// Like [`read_runs_blocking`], but hands out each record's envelope bytes as stored, unparsed.
/// Frames are still checked (magic, length, CRC, position): bytes the log itself considers
/// damaged are an error, never data.
fn read_raw_runs_blocking(runs: &[Run]) -> Result<Vec<RawEvent>, LogError> {
    let mut events = Vec::with_capacity(runs.iter().map(|r| r.count).sum());
    for run in runs {
        let mut buf = vec![0; run.len];
        run.file
            .read_exact_at(&mut buf, run.offset)
            .map_err(|e| io_error("read", &run.path, e))?;
        let buf = bytes::Bytes::from(buf);
        let mut at = 0;
        for i in 0..run.count {
            let position = run.first + i as u64;
            let damaged = |why: &str| {
                LogError::Corrupt(format!(
                    "segment {} at offset {}: the record at position {position} {why}",
                    run.path.display(),
                    run.offset + at as u64
                ))
            };
            let len = match format::check_frame(&buf[at..]) {
                FrameCheck::Complete { len } => len,
                FrameCheck::Truncated => return Err(damaged("is cut short")),
                FrameCheck::Bad(why) => return Err(damaged(&format!("is damaged ({why})"))),
            };
            let payload = &buf[at + FRAME_HEADER_LEN..at + len];
            let record = format::decode_payload(payload).map_err(&damaged)?;
            if record.position != position {
                return Err(damaged(&format!("holds position {}", record.position)));
            }
            // The envelope is the payload's tail: slice it out of the shared buffer, no copy.
            let json_start = at + len - record.json.len();
            events.push(RawEvent {
                position,
                subject: record.subject.to_owned(),
                bytes: buf.slice(json_start..at + len),
                msg_id: record.msg_id.map(str::to_owned),
            });
            at += len;
        }
    }
    Ok(events)
}

impl EmbeddedLog {
    /// Whether `dir` holds an embedded log (at least one segment). [`EmbeddedLog::open`]
    /// creates a log where there is none; tools that must not (verifying, reading the trail)
    /// ask this first.
    pub fn exists(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    format::parse_segment_file_name(&entry.file_name().to_string_lossy()).is_some()
                })
            })
            .unwrap_or(false)
    }

    /// Opens the log in `dir` (created if missing), recovering from a crash if needed.
    ///
    /// Fails with [`LogError::Unavailable`] if another process or another `EmbeddedLog` in this
    /// one has the directory open, and with [`LogError::Corrupt`] if acknowledged events are
    /// damaged.
    pub async fn open(dir: &Path, options: EmbeddedOptions) -> Result<Arc<EmbeddedLog>, LogError> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || EmbeddedLog::open_blocking(dir, options))
            .await
            .map_err(|e| LogError::Unavailable(format!("opening the embedded log panicked: {e}")))?
    }

    /// Opens a read-only snapshot of the log in `dir`: every complete append group on disk at
    /// the time of the call, and nothing after it. It takes no lock and changes no file, so it
    /// can be opened while a service writes to the log (that is how `idstream backup` copies a
    /// running embedded deployment). Appends are refused; a subscription ends after the
    /// snapshot's last event.
    ///
    /// Beside a running writer, the snapshot may include the records of a batch that was written
    /// but not yet fsynced (its writer has not acknowledged it yet); they would be lost from the
    /// original only by a power loss in that instant. A missing log is
    /// [`LogError::Misconfigured`]; damage among complete records is [`LogError::Corrupt`].
    pub async fn open_read_only(dir: &Path) -> Result<Arc<EmbeddedLog>, LogError> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            let recovered = recovery::recover(&dir, Duration::ZERO, recovery::Mode::ReadOnly)?;
            let last = recovered.index.entries.len() as u64;
            let shared = Arc::new(Shared {
                log_id: recovered.log_id.to_string(),
                index: RwLock::new(recovered.index),
            });
            // The sender is dropped at once: the snapshot never grows.
            let (_, durable) = watch::channel(last);
            Ok(Arc::new(EmbeddedLog {
                shared,
                dir,
                requests: None,
                durable,
                writer: None,
            }))
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("opening the embedded log panicked: {e}")))?
    }

    fn open_blocking(dir: PathBuf, options: EmbeddedOptions) -> Result<Arc<EmbeddedLog>, LogError> {
        let started = Instant::now();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Unavailable(format!(
                    "the embedded log in {} is already open (its LOCK file is held by another process or \
                     another EmbeddedLog in this one); only one may open a log directory at a time",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", &lock_path, e)),
        }

        let recovered = recovery::recover(&dir, options.dedup_window, recovery::Mode::Repair)?;
        let last = recovered.index.entries.len() as u64;
        let segments = recovered.index.segments.len();
        let tail = recovered
            .index
            .segments
            .last()
            .expect("recovery yields at least one segment");
        let (file, segment) = (
            tail.file.clone(),
            u32::try_from(segments - 1).expect("few segments"),
        );
        let shared = Arc::new(Shared {
            log_id: recovered.log_id.to_string(),
            index: RwLock::new(recovered.index),
        });
        let (durable_tx, durable_rx) = watch::channel(last);
        let writer = Writer {
            dir: dir.clone(),
            segment_bytes: options.segment_bytes,
            log_id: recovered.log_id,
            lock,
            shared: shared.clone(),
            file,
            segment,
            segment_len: recovered.tail_len,
            next: last + 1,
            dedup: Dedup::new(options.dedup_window, recovered.recent_keys),
            durable: durable_tx,
        };
        // Unbounded, so enqueueing never blocks the caller's task; each caller has at most one
        // request queued, which bounds the queue by the number of concurrent appends.
        let (requests, requests_rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("idstream-log-writer".to_owned())
            .spawn(move || writer.run(requests_rx))
            .map_err(|e| {
                LogError::Unavailable(format!("cannot start the embedded log writer: {e}"))
            })?;
        tracing::info!(
            dir = %dir.display(),
            log_id = %shared.log_id,
            events = last,
            segments,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded log opened"
        );
        Ok(Arc::new(EmbeddedLog {
            shared,
            dir,
            requests: Some(requests),
            durable: durable_rx,
            writer: Some(writer),
        }))
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands a request to the writer and waits for its answer.
    async fn submit(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<Appended, AppendError>>,
    ) -> Result<Appended, AppendError> {
        let closed = || {
            AppendError::Unavailable(if self.writer.is_none() && self.requests.is_none() {
                "the embedded log is open read-only (a snapshot): nothing can be appended"
                    .to_owned()
            } else {
                "the embedded log is closed".to_owned()
            })
        };
        let requests = self.requests.as_ref().ok_or_else(closed)?;
        requests.send(request).map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| AppendError::Unavailable("the embedded log writer stopped".to_owned()))?
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has finished its current batch; waiting for
        // it means the directory lock is free when the last handle is gone, so the log can be
        // reopened at once (a restart in the same process).
        drop(self.requests.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.dir.display(), "the embedded log writer panicked");
        }
    }
}

/// Checks an append and serialises its envelopes, on the caller's task so that the single
/// writer only copies bytes.
fn prepare(
    events: &[EventEnvelope],
    key: Option<&str>,
) -> Result<(String, Vec<Vec<u8>>), AppendError> {
    let (subject, jsons) = crate::encode_append(events)?;
    // The frame format bounds these lengths; the shared checks above do not.
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(AppendError::Invalid(format!(
            "the subject is longer than {MAX_SUBJECT_LEN} bytes"
        )));
    }
    if key.is_some_and(|k| k.len() > MAX_KEY_LEN) {
        return Err(AppendError::Invalid(format!(
            "an idempotency key is at most {MAX_KEY_LEN} bytes"
        )));
    }
    Ok((subject, jsons))
}

#[async_trait::async_trait]
impl EventLog for EmbeddedLog {
    async fn append(
        &self,
        events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError> {
        let (subject, events) = prepare(&events, idempotency_key)?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            subject,
            events,
            expected,
            key: idempotency_key.map(str::to_owned),
            import: None,
            reply,
        };
        self.submit(request, answer).await
    }

    async fn import_raw(&self, events: Vec<RawEvent>) -> Result<Appended, AppendError> {
        crate::check_import(&events)?;
        if let Some(event) = events.iter().find(|e| e.subject.len() > MAX_SUBJECT_LEN) {
            return Err(AppendError::Invalid(format!(
                "the subject of the event at position {} is longer than {MAX_SUBJECT_LEN} bytes",
                event.position
            )));
        }
        if let Some(event) = events.iter().find(|e| {
            e.msg_id
                .as_ref()
                .is_some_and(|id| id.len() > MAX_MSG_ID_LEN)
        }) {
            return Err(AppendError::Invalid(format!(
                "the msg id of the event at position {} is longer than {MAX_MSG_ID_LEN} bytes",
                event.position
            )));
        }
        let first = events[0].position;
        let mut subjects = Vec::with_capacity(events.len());
        let mut msg_ids = Vec::with_capacity(events.len());
        let mut jsons = Vec::with_capacity(events.len());
        for event in events {
            subjects.push(event.subject);
            msg_ids.push(event.msg_id);
            jsons.push(event.bytes.to_vec());
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            subject: String::new(),
            events: jsons,
            expected: Expected::Any,
            key: None,
            import: Some(Import {
                first,
                subjects,
                msg_ids,
            }),
            reply,
        };
        self.submit(request, answer).await
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError> {
        let subject = key.subject();
        let runs = {
            let index = self.shared.read_index();
            match index.streams.get(&subject) {
                Some(positions) => plan(&index, positions.iter().copied()),
                None => return Ok(Vec::new()),
            }
        };
        read_runs(runs).await
    }

    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.shared.read_after(after, max).await
    }

    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError> {
        let runs = {
            let index = self.shared.read_index();
            let last = index.entries.len() as u64;
            if after >= last || max == 0 {
                return Ok(Vec::new());
            }
            let end = last.min(after.saturating_add(max as u64));
            plan(&index, after + 1..=end)
        };
        read_raw_runs(runs).await
    }

    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError> {
        let state = Subscription {
            shared: self.shared.clone(),
            durable: self.durable.clone(),
            after,
            buffered: VecDeque::new(),
            ended: false,
        };
        Ok(futures::stream::unfold(state, Subscription::next).boxed())
    }

    async fn last_position(&self) -> Result<Position, LogError> {
        Ok(*self.durable.borrow())
    }

    async fn log_id(&self) -> Result<String, LogError> {
        Ok(self.shared.log_id.clone())
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

/// A subscription: pages from disk while behind, then waits on the writer's durable position.
/// It never holds a lock across an await; its cursor moves only when an event is handed out, so
/// the handover from catch-up to live tail can neither skip nor repeat a position.
struct Subscription {
    shared: Arc<Shared>,
    durable: watch::Receiver<Position>,
    /// The last position handed out.
    after: Position,
    buffered: VecDeque<RecordedEvent>,
    ended: bool,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<RecordedEvent, LogError>, Subscription)> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(event) = self.buffered.pop_front() {
                self.after = event.position;
                return Some((Ok(event), self));
            }
            // Mark the current value seen *before* reading, so a record published after the read
            // still wakes the `changed()` below.
            let durable = *self.durable.borrow_and_update();
            if durable > self.after {
                match self.shared.read_after(self.after, SUBSCRIPTION_PAGE).await {
                    Ok(page) if !page.is_empty() => {
                        self.buffered.extend(page);
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.ended = true;
                        return Some((Err(error), self));
                    }
                }
            }
            if self.durable.changed().await.is_err() {
                self.ended = true;
                return Some((
                    Err(LogError::Unavailable(
                        "the embedded log was closed".to_owned(),
                    )),
                    self,
                ));
            }
        }
    }
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> LogError {
    LogError::Unavailable(format!("cannot {what} {}: {error}", path.display()))
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
