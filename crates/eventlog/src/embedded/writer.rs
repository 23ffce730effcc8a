//! The one writer of an embedded log: group commit on a dedicated thread.
//!
//! Appends arrive through a channel. The writer takes whatever is queued, decides each append
//! in order (dedup first, then optimistic concurrency, both against the durable state plus the
//! appends accepted earlier in the same batch), writes all their frames with one `pwrite`,
//! fsyncs once, and only then publishes the records to readers and answers. Many concurrent
//! appends therefore share one fsync, and nobody ever sees or is told about a record that
//! could still be lost.
//!
//! It runs on its own OS thread rather than a tokio task because `write` and `fsync` block, and
//! it owns the directory lock: the lock is released only when this thread has stopped writing.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use ulid::Ulid;

use super::format::{HEADER_LEN, Record, SegmentHeader};
use super::recovery::{RecentKey, create_segment};
use super::{Entry, Segment, Shared, unix_millis};
use crate::{AppendError, Appended, Expected, Position};

/// At most this many appends share one fsync; more would only delay the first ones' answers.
const MAX_BATCH_REQUESTS: usize = 4096;
/// At most about this many bytes of JSON go into one fsync batch.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// While lingering for more appends, the writer stops once none has arrived for this long...
const LINGER_GAP: Duration = Duration::from_micros(50);
/// ...or once it has lingered this long, whichever comes first.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// One append, validated and serialised by the caller.
pub struct Request {
    pub subject: String,
    /// The envelopes' JSON, in order.
    pub events: Vec<Vec<u8>>,
    pub expected: Expected,
    pub key: Option<String>,
    /// Set for an import ([`crate::EventLog::import_raw`]): the events are stored at the given
    /// positions under their own subjects and msg ids; `subject`, `expected` and `key` are unused.
    pub import: Option<Import>,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// What an import adds to its [`Request`]: where it must start, and each event's subject and
/// msg id (its JSON is in [`Request::events`]).
pub struct Import {
    pub first: Position,
    pub subjects: Vec<String>,
    pub msg_ids: Vec<Option<String>>,
}

/// The append time recorded for imported records: they never count in the dedup window, here
/// or after a restart, because their msg ids were keys of another log.
const IMPORTED_AT_MS: i64 = 0;

impl Request {
    fn bytes(&self) -> usize {
        self.events.iter().map(Vec::len).sum()
    }
}

pub struct Writer {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub log_id: Ulid,
    /// Held, never read: the directory lock lives exactly as long as the writer.
    pub lock: File,
    pub shared: Arc<Shared>,
    /// The last segment, where records go.
    pub file: Arc<File>,
    pub segment: u32,
    pub segment_len: u64,
    pub next: Position,
    pub dedup: Dedup,
    pub durable: watch::Sender<Position>,
}

impl Writer {
    /// Serves appends until every sender is gone (the log was dropped).
    pub fn run(mut self, requests: Receiver<Request>) {
        // After an fsync failure the kernel may have dropped the unsynced pages while marking
        // them clean, so nothing more is written until the log is reopened and recovered.
        let mut failed: Option<String> = None;
        let mut batch = Vec::new();
        let mut pace = Pace {
            last_batch: 0,
            last_sync: Duration::ZERO,
        };
        while let Ok(first) = requests.recv() {
            pace.gather(&requests, first, &mut batch);
            let started = Instant::now();
            match &failed {
                Some(reason) => answer_all(&mut batch, reason),
                None => failed = self.commit(&mut batch).err(),
            }
            pace.last_sync = started.elapsed();
        }
        drop(self.lock);
    }

    /// Decides, writes, syncs and publishes one batch, then answers every request in it.
    /// Returns an error only when the log must stop accepting writes.
    fn commit(&mut self, batch: &mut Vec<Request>) -> Result<(), String> {
        let now = Instant::now();
        self.dedup.prune(now);
        if self.segment_len >= self.segment_bytes
            && self.segment_len > HEADER_LEN
            && let Err(error) = self.roll()
        {
            tracing::error!(%error, "embedded log: cannot start a new segment");
            answer_all(batch, &format!("cannot start a new segment: {error}"));
            return Ok(());
        }

        let batch_base = self.next;
        let appended_at_ms = unix_millis();
        let mut buf =
            Vec::with_capacity(batch.iter().map(|r| r.bytes() + 128 * r.events.len()).sum());
        let mut outcomes = Vec::with_capacity(batch.len());
        // (offset in buf, frame length, subject) of each new record, in position order.
        let mut written: Vec<(usize, usize, &str)> = Vec::new();
        let mut new_keys: HashMap<&str, (Position, Position)> = HashMap::new();
        let mut next = self.next;
        {
            let index = self.shared.read_index();
            let mut batch_last: HashMap<&str, Position> = HashMap::new();
            for request in batch.iter() {
                if let Some(import) = &request.import {
                    // An import continues the log exactly where it says, or not at all.
                    if import.first != next {
                        outcomes.push(Err(AppendError::WrongExpectedSequence {
                            expected: Expected::At(import.first.saturating_sub(1)),
                            actual: Some(next - 1),
                        }));
                        continue;
                    }
                    let first = next;
                    for (i, json) in request.events.iter().enumerate() {
                        let subject = import.subjects[i].as_str();
                        let start = buf.len();
                        Record {
                            position: next,
                            batch_base,
                            appended_at_ms: IMPORTED_AT_MS,
                            end_of_append: i + 1 == request.events.len(),
                            msg_id: import.msg_ids[i].as_deref(),
                            subject,
                            json,
                        }
                        .encode_into(&mut buf);
                        written.push((start, buf.len() - start, subject));
                        batch_last.insert(subject, next);
                        next += 1;
                    }
                    outcomes.push(Ok(Appended {
                        first,
                        last: next - 1,
                        duplicate: false,
                    }));
                    continue;
                }
                if let Some(key) = request.key.as_deref()
                    && let Some((first, last)) = new_keys
                        .get(key)
                        .copied()
                        .or_else(|| self.dedup.get(key, now))
                {
                    outcomes.push(Ok(Appended {
                        first,
                        last,
                        duplicate: true,
                    }));
                    continue;
                }
                let subject = request.subject.as_str();
                let last = match batch_last.get(subject) {
                    Some(last) => *last,
                    None => index
                        .streams
                        .get(subject)
                        .and_then(|p| p.last().copied())
                        .unwrap_or(0),
                };
                let matches = match request.expected {
                    Expected::Any => true,
                    Expected::NoEvents => last == 0,
                    Expected::At(position) => last == position,
                };
                if !matches {
                    outcomes.push(Err(AppendError::WrongExpectedSequence {
                        expected: request.expected,
                        actual: Some(last),
                    }));
                    continue;
                }
                let first = next;
                for (i, json) in request.events.iter().enumerate() {
                    let msg_id = request.key.as_ref().map(|key| format!("{key}:{i}"));
                    let start = buf.len();
                    Record {
                        position: next,
                        batch_base,
                        appended_at_ms,
                        end_of_append: i + 1 == request.events.len(),
                        msg_id: msg_id.as_deref(),
                        subject,
                        json,
                    }
                    .encode_into(&mut buf);
                    written.push((start, buf.len() - start, subject));
                    next += 1;
                }
                batch_last.insert(subject, next - 1);
                if let Some(key) = request.key.as_deref() {
                    new_keys.insert(key, (first, next - 1));
                }
                outcomes.push(Ok(Appended {
                    first,
                    last: next - 1,
                    duplicate: false,
                }));
            }
        }

        if !buf.is_empty() {
            if let Err(failure) = self.write(&buf) {
                let unavailable = failure.message();
                for request in batch.drain(..) {
                    let _ = request
                        .reply
                        .send(Err(AppendError::Unavailable(unavailable.clone())));
                }
                return match failure {
                    WriteFailure::Repaired(_) => Ok(()),
                    WriteFailure::Fatal(message) => Err(message),
                };
            }
            let mut index = self.shared.write_index();
            for (offset, len, subject) in &written {
                let position = index.entries.len() as u64 + 1;
                index.entries.push(Entry {
                    offset: self.segment_len + *offset as u64,
                    len: *len as u32,
                    segment: self.segment,
                });
                match index.streams.get_mut(*subject) {
                    Some(positions) => positions.push(position),
                    None => {
                        index.streams.insert((*subject).to_owned(), vec![position]);
                    }
                }
            }
            drop(index);
            let expires = now + self.dedup.window;
            for (key, (first, last)) in new_keys {
                self.dedup.insert(key.to_owned(), first, last, expires);
            }
            self.segment_len += buf.len() as u64;
            self.next = next;
            // Readers are told only now, after the fsync: subscribers never see a record that
            // could still be lost.
            self.durable.send_replace(next - 1);
        }
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // The caller may have given up waiting; the append stands regardless.
            let _ = request.reply.send(outcome);
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), WriteFailure> {
        if let Err(error) = self.file.write_all_at(buf, self.segment_len) {
            tracing::error!(%error, "embedded log: write failed");
            // Take back whatever part of the batch reached the file, so the next batch starts
            // on a frame boundary; if even that fails, stop writing.
            return match self
                .file
                .set_len(self.segment_len)
                .and_then(|()| self.file.sync_data())
            {
                Ok(()) => Err(WriteFailure::Repaired(format!("write failed: {error}"))),
                Err(repair) => Err(WriteFailure::Fatal(format!(
                    "write failed ({error}) and could not be rolled back ({repair}); reopen the log"
                ))),
            };
        }
        if let Err(error) = self.file.sync_data() {
            tracing::error!(%error, "embedded log: fsync failed; refusing further writes until reopened");
            return Err(WriteFailure::Fatal(format!(
                "fsync failed ({error}); reopen the log"
            )));
        }
        Ok(())
    }

    /// Starts a new segment at the next position. Batches never span segments, so an append
    /// group always lies within one file.
    fn roll(&mut self) -> std::io::Result<()> {
        let header = SegmentHeader {
            log_id: self.log_id,
            base: self.next,
        };
        let (path, file) = create_segment(&self.dir, header)?;
        let file = Arc::new(file);
        let mut index = self.shared.write_index();
        index.segments.push(Segment {
            path: path.into(),
            file: file.clone(),
        });
        self.segment =
            u32::try_from(index.segments.len() - 1).expect("fewer than 4 billion segments");
        self.file = file;
        self.segment_len = HEADER_LEN;
        tracing::info!(base = self.next, "embedded log: started a new segment");
        Ok(())
    }
}

/// How the writer sizes its batches.
///
/// Draining only what is already queued splits busy writers into cohorts: while one batch
/// syncs the other queues up, and the callers answered a moment ago arrive just after the next
/// batch was taken. So when the last batch was shared (a sign of concurrent writers), the
/// writer lingers a little for them: as long as appends keep arriving, for at most a quarter of
/// the last sync's time. A lone writer never lingers.
struct Pace {
    last_batch: usize,
    last_sync: Duration,
}

impl Pace {
    fn gather(&mut self, requests: &Receiver<Request>, first: Request, batch: &mut Vec<Request>) {
        let mut bytes = first.bytes();
        batch.push(first);
        let room = |batch: &Vec<Request>, bytes: usize| {
            batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES
        };
        while room(batch, bytes) {
            match requests.try_recv() {
                Ok(request) => {
                    bytes += request.bytes();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        if self.last_batch > 1 {
            let deadline = Instant::now() + (self.last_sync / 4).min(MAX_LINGER);
            while room(batch, bytes) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match requests.recv_timeout(left.min(LINGER_GAP)) {
                    Ok(request) => {
                        bytes += request.bytes();
                        batch.push(request);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        self.last_batch = batch.len();
    }
}

enum WriteFailure {
    /// The batch was not stored, and the file is as before it.
    Repaired(String),
    /// The file's state is unknown: no more writes.
    Fatal(String),
}

impl WriteFailure {
    fn message(&self) -> String {
        match self {
            WriteFailure::Repaired(m) | WriteFailure::Fatal(m) => m.clone(),
        }
    }
}

fn answer_all(batch: &mut Vec<Request>, reason: &str) {
    for request in batch.drain(..) {
        let _ = request
            .reply
            .send(Err(AppendError::Unavailable(reason.to_owned())));
    }
}

/// Idempotency keys seen inside the dedup window, with the positions of their append.
pub struct Dedup {
    pub window: Duration,
    by_key: HashMap<String, Seen>,
    /// Keys in the order they expire, for pruning.
    order: VecDeque<(Instant, String)>,
}

struct Seen {
    first: Position,
    last: Position,
    expires: Instant,
}

impl Dedup {
    /// The window's keys as recovered from the log: their remaining life is measured from the
    /// wall-clock time they were appended.
    pub fn new(window: Duration, recent: Vec<RecentKey>) -> Dedup {
        let mut dedup = Dedup {
            window,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        };
        let (now, now_ms) = (Instant::now(), unix_millis());
        for key in recent {
            let age =
                Duration::from_millis(now_ms.saturating_sub(key.appended_at_ms).max(0) as u64);
            if let Some(left) = window.checked_sub(age) {
                dedup.insert(key.key, key.first, key.last, now + left);
            }
        }
        dedup
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<(Position, Position)> {
        self.by_key
            .get(key)
            .filter(|seen| seen.expires > now)
            .map(|seen| (seen.first, seen.last))
    }

    pub fn insert(&mut self, key: String, first: Position, last: Position, expires: Instant) {
        self.order.push_back((expires, key.clone()));
        self.by_key.insert(
            key,
            Seen {
                first,
                last,
                expires,
            },
        );
    }

    pub fn prune(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front()
            && *expires <= now
        {
            let (expires, key) = self.order.pop_front().expect("front exists");
            // The key may have been appended again after it expired; keep that newer entry.
            if self
                .by_key
                .get(&key)
                .is_some_and(|seen| seen.expires == expires)
            {
                self.by_key.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_counts_until_its_window_ends_and_is_then_pruned() {
        let mut dedup = Dedup::new(Duration::from_secs(10), Vec::new());
        let t0 = Instant::now();
        dedup.insert("k".into(), 3, 4, t0 + Duration::from_secs(10));
        assert_eq!(dedup.get("k", t0 + Duration::from_secs(9)), Some((3, 4)));
        assert_eq!(dedup.get("k", t0 + Duration::from_secs(10)), None);
        dedup.prune(t0 + Duration::from_secs(11));
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn pruning_an_old_entry_keeps_a_newer_append_of_the_same_key() {
        let mut dedup = Dedup::new(Duration::from_secs(10), Vec::new());
        let t0 = Instant::now();
        dedup.insert("k".into(), 1, 1, t0 + Duration::from_secs(1));
        dedup.insert("k".into(), 7, 7, t0 + Duration::from_secs(20));
        dedup.prune(t0 + Duration::from_secs(5));
        assert_eq!(dedup.get("k", t0 + Duration::from_secs(5)), Some((7, 7)));
    }

    #[test]
    fn recovered_keys_keep_only_what_is_left_of_their_window() {
        let now_ms = unix_millis();
        let recent = vec![
            RecentKey {
                key: "fresh".into(),
                first: 1,
                last: 2,
                appended_at_ms: now_ms - 1_000,
            },
            RecentKey {
                key: "stale".into(),
                first: 3,
                last: 3,
                appended_at_ms: now_ms - 60_000,
            },
        ];
        let dedup = Dedup::new(Duration::from_secs(30), recent);
        let now = Instant::now();
        assert_eq!(dedup.get("fresh", now), Some((1, 2)));
        assert_eq!(
            dedup.get("fresh", now + Duration::from_secs(30)),
            None,
            "its age counts against the window"
        );
        assert_eq!(dedup.get("stale", now), None);
    }
}
