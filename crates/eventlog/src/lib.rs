//! The event log: the only source of truth in idstream.
//!
//! One trait, [`EventLog`], with two real backends: [`jetstream`] (NATS JetStream through
//! async-nats, for production and several replicas) and [`embedded`] (an append-only segment file
//! in the data directory, the zero-setup default for one machine). Both pass the same
//! conformance suite (`conformance`, behind the feature of that name). [`fanout`] is a
//! decorator that serves many subscribers from one shared live subscription (the read models').
//!
//! Positions are the log's global sequence: 1 for the first event, contiguous, never reused; 0
//! means "before the first event". The optimistic-concurrency token of an aggregate is the
//! position of its last event (JetStream's last subject sequence), so one number serves both as a
//! consistency token for readers and as the expected version for writers.
//!
//! **Invariant:** an append is acknowledged only once it is durable (fsynced by the embedded
//! backend; stored by the JetStream server per its sync policy).
//! This crate knows envelopes, not domain rules: it never decodes `data`.

use std::sync::Arc;

use futures::stream::BoxStream;
use idstream_domain::{EventEnvelope, StreamKey};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
pub mod fanout;
pub mod jetstream;

pub use fanout::{FanOutLog, FanOutStats};

/// A position in the log: 1-based global sequence; 0 is "before the first event".
pub type Position = u64;

/// What the writer believes about the aggregate it appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check: append whatever the aggregate's state.
    Any,
    /// The aggregate must have no events yet.
    NoEvents,
    /// The aggregate's last event must be at exactly this position.
    At(Position),
}

impl Expected {
    /// The expectation matching a loaded aggregate whose last event is at `last` (0 = none).
    pub fn from_last(last: Position) -> Expected {
        if last == 0 {
            Expected::NoEvents
        } else {
            Expected::At(last)
        }
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub envelope: EventEnvelope,
    /// The deduplication id it was appended with (`<idempotency key>:<index>`), if any.
    pub msg_id: Option<String>,
}

/// An event exactly as the backend stores it: the bytes of its envelope JSON (the JetStream
/// message payload; the embedded record's envelope) and the subject it is stored under. The
/// tamper-evidence chain (`idstream-chain`) hashes these bytes, so they must never be
/// re-serialised on the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub position: Position,
    pub subject: String,
    pub bytes: bytes::Bytes,
    /// The deduplication id it was appended with, if any (see [`RecordedEvent::msg_id`]): part
    /// of what a copy of the log must keep, since read models record it.
    pub msg_id: Option<String>,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Position of the first event of this append.
    pub first: Position,
    /// Position of the last event of this append: the command's consistency token.
    pub last: Position,
    /// True when the idempotency key had been seen: nothing new was appended and the positions
    /// are those of the original append.
    pub duplicate: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// Optimistic concurrency: someone appended to this aggregate since it was loaded.
    #[error(
        "wrong expected sequence: expected {expected:?}, the aggregate's last event is at {actual:?}"
    )]
    WrongExpectedSequence {
        expected: Expected,
        actual: Option<Position>,
    },
    /// The log cannot be reached or refused to store; nothing can be said about durability of
    /// this append unless it is retried with the same idempotency key.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (no events, events of several aggregates, oversized…).
    #[error("invalid append: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// Stored data is damaged in a way that cannot be repaired without losing acknowledged events.
    #[error("event log corrupt: {0}")]
    Corrupt(String),
    /// The log is configured in a way that retrying cannot fix (a bad URL, an existing stream
    /// with the wrong settings).
    #[error("event log misconfigured: {0}")]
    Misconfigured(String),
}

/// An endless stream of recorded events in position order (see [`EventLog::subscribe`]).
pub type EventStream = BoxStream<'static, Result<RecordedEvent, LogError>>;

#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends the events of ONE aggregate (all envelopes share one stream key), in order, if
    /// the aggregate's last event matches `expected`.
    ///
    /// With an `idempotency_key`, event *i* carries the dedup id `<key>:<i>`; a retry with the same
    /// key inside the dedup window appends nothing and returns the original positions with
    /// `duplicate: true`, whatever `expected` says.
    ///
    /// The embedded backend writes a multi-event append atomically. JetStream stores each event
    /// as its own message, chained by expected sequence, so a crash can leave a prefix; a retry
    /// with the same idempotency key completes it.
    async fn append(
        &self,
        events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError>;

    /// Every event of one aggregate in order (empty if it has none).
    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError>;

    /// Up to `max` events with position greater than `after`, in order.
    async fn read_after(&self, after: Position, max: usize)
    -> Result<Vec<RecordedEvent>, LogError>;

    /// Up to `max` events with position greater than `after`, in order, as stored: the bytes
    /// are not parsed, so an event that is no valid envelope is returned rather than refused.
    /// Positions are not checked for gaps either (a message deleted from a JetStream stream
    /// leaves one); finding gaps and changed bytes is the verifier's job.
    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError>;

    /// Stores `events` exactly as another log stored them (their bytes, subjects and msg ids),
    /// at exactly their positions: the first must be at `last_position() + 1` and the others
    /// must follow it without a gap. This is how a log is copied (`idstream migrate`, `log
    /// import`, `restore`), so that event ids, order and the hash chain stay what they were.
    ///
    /// Nothing is parsed or checked per aggregate (no expected sequence, no deduplication), and
    /// the events' msg ids are kept for readers but never count as idempotency keys of the
    /// copy. A first position that does not continue the log is refused with
    /// [`AppendError::WrongExpectedSequence`] whose `expected` is `At(first - 1)` and whose
    /// `actual` is the log's last position, and nothing is stored; events that are not
    /// consecutive, have no valid subject or are too big are [`AppendError::Invalid`].
    ///
    /// The embedded backend stores one call atomically; JetStream stores event by event, each
    /// only if the stream's last position is the one before it, so an interruption leaves a
    /// prefix: call again with the rest. Nothing else may append to the log while it imports
    /// (a copy's target is new and unused); JetStream pipelines the events after the first,
    /// and an event appended by another writer between them could sit among the imported ones.
    async fn import_raw(&self, events: Vec<RawEvent>) -> Result<Appended, AppendError> {
        let _ = events;
        Err(AppendError::Invalid(format!(
            "the {} log cannot import events",
            self.backend()
        )))
    }

    /// Every event with position greater than `after`, then each new one as it is appended.
    /// The stream does not end by itself; it yields an error (and may end) if the log fails, and
    /// the caller subscribes again from its last position.
    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError>;

    /// The position of the last event in the log (0 when empty).
    async fn last_position(&self) -> Result<Position, LogError>;

    /// Whether an append could be stored now, as far as the backend can tell without appending:
    /// the log's last position if so, else `LogError::Unavailable` saying why. By default, that
    /// the log answers [`EventLog::last_position`]; JetStream also wants a stream leader that
    /// sees a quorum of current replicas (a leader cut off from the others still answers, with
    /// a stale position, but cannot store anything). Decorators pass it through.
    async fn write_check(&self) -> Result<Position, LogError> {
        self.last_position().await
    }

    /// An identity of this log instance that changes if the log is recreated, so read models
    /// built from another log are detected and rebuilt.
    async fn log_id(&self) -> Result<String, LogError>;

    /// `"embedded"` or `"jetstream"`, for logs and metrics.
    fn backend(&self) -> &'static str;
}

/// The log as the rest of the service holds it.
pub type SharedLog = Arc<dyn EventLog>;

/// The largest event, as envelope JSON, that either backend stores.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Whether `subject` is a concrete event subject: under `idstream.events`, no empty token, no
/// wildcard, no whitespace.
pub(crate) fn valid_event_subject(subject: &str) -> bool {
    subject.starts_with(idstream_domain::envelope::SUBJECT_PREFIX)
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(char::is_whitespace)
        })
}

/// The checks every backend makes before importing: at least one event, consecutive positions
/// from the first, valid subjects, each event at most [`MAX_EVENT_BYTES`].
pub(crate) fn check_import(events: &[RawEvent]) -> Result<(), AppendError> {
    let Some(head) = events.first() else {
        return Err(AppendError::Invalid(
            "an import needs at least one event".to_owned(),
        ));
    };
    if head.position == 0 {
        return Err(AppendError::Invalid(
            "positions start at 1; an event cannot be imported at 0".to_owned(),
        ));
    }
    for (i, event) in events.iter().enumerate() {
        let wanted = head.position + i as u64;
        if event.position != wanted {
            return Err(AppendError::Invalid(format!(
                "imported events must have consecutive positions: {} follows {}",
                event.position,
                wanted - 1
            )));
        }
        if !valid_event_subject(&event.subject) {
            return Err(AppendError::Invalid(format!(
                "the event at position {} has no valid event subject ({:?})",
                event.position, event.subject
            )));
        }
        if event.bytes.len() > MAX_EVENT_BYTES {
            return Err(AppendError::Invalid(format!(
                "the event at position {} is {} bytes; the limit is {MAX_EVENT_BYTES}",
                event.position,
                event.bytes.len()
            )));
        }
    }
    Ok(())
}

/// The checks every backend makes before appending, and the serialisation: at least one event,
/// all of one aggregate, a valid subject, each envelope at most [`MAX_EVENT_BYTES`] of JSON.
/// Returns the aggregate's subject and the envelopes' JSON.
pub(crate) fn encode_append(
    events: &[EventEnvelope],
) -> Result<(String, Vec<Vec<u8>>), AppendError> {
    let Some(head) = events.first() else {
        return Err(AppendError::Invalid(
            "an append needs at least one event".to_owned(),
        ));
    };
    if let Some(other) = events
        .iter()
        .find(|e| e.tenant != head.tenant || e.aggregate != head.aggregate)
    {
        return Err(AppendError::Invalid(format!(
            "the events of one append must belong to one aggregate, not to both {} and {}",
            head.subject(),
            other.subject()
        )));
    }
    let subject = head.subject();
    if !valid_event_subject(&subject) {
        return Err(AppendError::Invalid(format!(
            "{subject:?} is not a valid event subject"
        )));
    }
    let bodies = events
        .iter()
        .map(|event| {
            let json = serde_json::to_vec(event).map_err(|e| {
                AppendError::Invalid(format!("event {} cannot be serialised: {e}", event.id))
            })?;
            if json.len() > MAX_EVENT_BYTES {
                return Err(AppendError::Invalid(format!(
                    "event {} is {} bytes of JSON; the limit is {MAX_EVENT_BYTES}",
                    event.id,
                    json.len()
                )));
            }
            Ok(json)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((subject, bodies))
}
