//! The JetStream backend: the event log as one NATS JetStream stream, one subject per aggregate.
//!
//! Every event is one message on `idstream.events.<tenant|_>.<aggregate type>.<id>`; its stream
//! sequence is its [`Position`]. Optimistic concurrency is the server's
//! `Nats-Expected-Last-Subject-Sequence` check, and idempotency is its `Nats-Msg-Id` dedup window.
//!
//! **Multi-event appends are not atomic here.** JetStream (before 2.12's atomic batches) stores
//! each message on its own, so an append of several events publishes them one by one, each
//! chained to the previous one's sequence. A crash or outage in the middle can leave a prefix of
//! the events in the log; retrying with the same idempotency key (inside the dedup window)
//! recognises the stored prefix as duplicates and appends the rest.
//!
//! **Durability.** An append is acknowledged once the server has stored it, per the server's sync
//! policy. nats-server 2.9 (Debian's package, used by the tests) fsyncs file streams only every
//! 60 s; production wants nats-server ≥ 2.10.23 with `sync_interval: always` and a replicated
//! (R3) stream, so an acknowledged event survives the loss of a machine.
//!
//! **Failure behaviour.** Every operation first checks the client's connection state and fails
//! with `Unavailable` at once while the client is disconnected, and every request is bounded by
//! [`JetStreamOptions::request_timeout`]; the client reconnects by itself in the background.
//! Subscriptions ride out server restarts: they resume after the last position they delivered.
//! This module never deletes or purges messages and creates the stream with deletes and purges
//! denied, because the log is the only truth.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::context::{
    Context, ContextBuilder, CreateStreamErrorKind, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::{Client, ConnectOptions, HeaderMap};

use crate::valid_event_subject;
use bytes::Bytes;
use futures::StreamExt;
use idstream_domain::{EventEnvelope, StreamKey};
use time::OffsetDateTime;

use crate::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, Position, RawEvent,
    RecordedEvent,
};

/// The subject space of the log: every event subject matches it.
const EVENTS_WILDCARD: &str = "idstream.events.>";

pub use crate::MAX_EVENT_BYTES;

const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The msg id of an imported event ([`EventLog::import_raw`]). Not `Nats-Msg-Id`: the server
/// would take it as a dedup id and drop a later event that carries an id seen in the window
/// (another log may have reused a key after its own window), and the copy's ids are not
/// idempotency keys of this stream anyway. Readers take whichever of the two is present.
const IMPORTED_MSG_ID_HEADER: &str = "Idstream-Msg-Id";

/// How many imported events are published before their acks are awaited.
const IMPORT_WINDOW: usize = 256;

/// How many events `read_stream` fetches with one request each before it reads the rest of the
/// aggregate through a consumer. Measured locally: a request costs about a quarter of setting up
/// and reading a consumer, so small aggregates (the common case) are cheaper one by one.
const SINGLE_READS: usize = 4;

/// How to reach the JetStream server and which stream to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// NATS server URL(s), comma separated, such as `nats://127.0.0.1:4222`.
    pub url: String,
    /// The stream holding the events.
    pub stream: String,
    /// Replicas of the stream when this client creates it (3 in production).
    pub replicas: usize,
    /// The window in which a repeated idempotency key is recognised.
    pub duplicate_window: Duration,
    /// Upper bound of every request to the server (publish acks, stream and consumer requests,
    /// and the wait for the next message while reading).
    pub request_timeout: Duration,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "IDSTREAM".to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(3),
        }
    }
}

impl JetStreamOptions {
    /// The defaults, against the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        JetStreamOptions {
            url: url.into(),
            ..JetStreamOptions::default()
        }
    }
}

/// The event log on a NATS JetStream stream.
pub struct JetStreamLog {
    client: Client,
    context: Context,
    stream: stream::Stream,
    url: String,
    stream_name: String,
    /// The consumer filter for "every event": empty when the stream holds only event subjects
    /// (the server then needs no filtering), else the event wildcard.
    events_filter: String,
    /// When the stream was created: part of [`EventLog::log_id`] and checked when a
    /// subscription reconnects, so a recreated stream is never mistaken for the old one.
    created: OffsetDateTime,
    request_timeout: Duration,
    /// Changes each time the client (re)connects.
    reconnected: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("url", &self.url)
            .field("stream", &self.stream_name)
            .finish()
    }
}

impl JetStreamLog {
    /// Connects to NATS and opens the stream, creating it if it does not exist.
    ///
    /// An existing stream is checked: its subjects must cover `idstream.events.>`, it must use
    /// file storage and limits retention, and it must have no limit that would drop events.
    /// A mismatch is a `LogError::Misconfigured` naming the problem, since retrying cannot fix it.
    /// `url` may list several servers separated by commas (the seeds of a cluster).
    /// An unreachable server is `LogError::Unavailable`, returned without retrying.
    pub async fn connect(options: JetStreamOptions) -> Result<JetStreamLog, LogError> {
        // Counts (re)connections so subscriptions can resume as soon as the server is back,
        // instead of waiting for their consumer's missed heartbeats to tell them it is gone.
        let (connections, reconnected) = tokio::sync::watch::channel(0u64);
        let connections = std::sync::Arc::new(connections);
        let url = options.url.clone();
        let client = ConnectOptions::new()
            .name("idstream")
            .event_callback(move |event| {
                let connections = connections.clone();
                let url = url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(%url, "connected to NATS");
                            connections.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(%url, "disconnected from NATS; reconnecting")
                        }
                        other => tracing::debug!(%url, event = %other, "NATS client event"),
                    }
                }
            })
            .connection_timeout(options.request_timeout)
            .request_timeout(Some(options.request_timeout))
            .connect(server_addrs(&options.url)?)
            .await
            .map_err(|e| {
                LogError::Unavailable(format!("cannot connect to NATS at {}: {e}", options.url))
            })?;
        let context = ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());

        let stream = match open_stream(&context, &options.stream).await? {
            Some(stream) => stream,
            None => match context.create_stream(stream_config(&options)).await {
                Ok(stream) => {
                    tracing::info!(stream = %options.stream, replicas = options.replicas, "created the JetStream event stream");
                    stream
                }
                // Another replica created it between our lookup and our create: use theirs.
                Err(e) if is_name_exists(&e.kind()) => open_stream(&context, &options.stream)
                    .await?
                    .ok_or_else(|| {
                        LogError::Unavailable(format!(
                            "stream {} vanished right after creation",
                            options.stream
                        ))
                    })?,
                // A single server refuses more than one replica: no retry changes that.
                Err(e) if is_replicas_not_supported(&e.kind()) => {
                    return Err(LogError::Misconfigured(format!(
                        "stream {} is on a single NATS server, not a cluster, which cannot create it \
                         with {} replicas: {e}",
                        options.stream, options.replicas
                    )));
                }
                Err(e) => {
                    return Err(LogError::Unavailable(format!(
                        "cannot create stream {}: {e}",
                        options.stream
                    )));
                }
            },
        };

        let info = stream.cached_info().clone();
        validate_stream(&info.config, &options)?;
        let events_filter = if info.config.subjects == [EVENTS_WILDCARD] {
            String::new()
        } else {
            EVENTS_WILDCARD.to_owned()
        };
        if !events_filter.is_empty() {
            tracing::warn!(
                stream = %options.stream,
                subjects = ?info.config.subjects,
                "the event stream also holds other subjects: log positions will not be contiguous"
            );
        }

        Ok(JetStreamLog {
            client,
            context,
            stream,
            url: options.url,
            stream_name: options.stream,
            events_filter,
            created: info.created,
            request_timeout: options.request_timeout,
            reconnected,
        })
    }

    /// Makes the stream `stream` (the event stream, or another such as a key bucket's) keep
    /// `replicas` copies, updating its configuration on the servers when it differs. Returns the
    /// earlier count when it changed it, `None` when it already matched or the stream does not
    /// exist. A refusal by the servers (more replicas than a single server or the cluster can
    /// hold) is `LogError::Misconfigured` with the server's reason.
    ///
    /// [`JetStreamLog::connect`] only warns about a different count, so that tools run with
    /// other settings never change the stream; the service calls this when it starts.
    pub async fn apply_replicas(
        &self,
        stream: &str,
        replicas: usize,
    ) -> Result<Option<usize>, LogError> {
        let Some(mut handle) = open_stream(&self.context, stream).await? else {
            return Ok(None);
        };
        let info = handle
            .info()
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot read stream {stream}: {e}")))?
            .clone();
        let before = info.config.num_replicas;
        // A single server (not clustered) accepts any count and keeps one copy: refuse to
        // pretend.
        if replicas > 1 && info.cluster.is_none() {
            return Err(LogError::Misconfigured(format!(
                "stream {stream} is on a single NATS server, not a cluster, which keeps one copy \
                 whatever the stream's configuration says (it says {before})"
            )));
        }
        if before == replicas {
            return Ok(None);
        }
        let mut config = info.config;
        config.num_replicas = replicas;
        match self.context.update_stream(&config).await {
            Ok(info) if info.config.num_replicas == replicas => {
                tracing::info!(%stream, before, replicas, "changed the stream's replica count");
                Ok(Some(before))
            }
            Ok(info) => Err(LogError::Misconfigured(format!(
                "stream {stream} has {before} replica(s) and the NATS servers kept {} when asked for {replicas}",
                info.config.num_replicas
            ))),
            Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(_)) => {
                Err(LogError::Misconfigured(format!(
                    "stream {stream} has {before} replica(s) and the NATS servers refused to change it to {replicas}: {e}"
                )))
            }
            Err(e) => Err(LogError::Unavailable(format!(
                "cannot update stream {stream}: {e}"
            ))),
        }
    }

    /// The NATS client, for callers that want to share its connection (health checks, metrics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn ensure_connected(&self) -> Result<(), String> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(format!("not connected to NATS at {} ({state:?})", self.url)),
        }
    }

    /// Publishes one event and waits for its ack, mapping failures to append errors.
    async fn publish(
        &self,
        subject: &str,
        body: Bytes,
        msg_id: Option<&str>,
        expected: Option<Position>,
    ) -> Result<async_nats::jetstream::publish::PublishAck, PublishFailure> {
        self.ensure_connected()
            .map_err(PublishFailure::Unavailable)?;
        let mut message = PublishMessage::build().payload(body);
        if let Some(id) = msg_id {
            message = message.message_id(id);
        }
        if let Some(sequence) = expected {
            message = message.expected_last_subject_sequence(sequence);
        }
        let ack = self
            .context
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(PublishFailure::from)?;
        ack.await.map_err(PublishFailure::from)
    }

    /// Looks for the messages of an earlier append with `key` among the aggregate's events:
    /// dedup id → position.
    async fn find_idempotent(
        &self,
        stream_key: &StreamKey,
        key: &str,
    ) -> Result<HashMap<String, Position>, AppendError> {
        let prefix = format!("{key}:");
        let events = self
            .read_stream(stream_key)
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        Ok(events
            .into_iter()
            .filter_map(|event| {
                event
                    .msg_id
                    .filter(|id| id.starts_with(&prefix))
                    .map(|id| (id, event.position))
            })
            .collect())
    }

    /// Creates an ordered consumer for `filter` (empty = every message) from `start`.
    async fn ordered(
        &self,
        filter: String,
        start: Position,
    ) -> Result<(Ordered, u64, String), LogError> {
        open_ordered(&self.stream, filter, start)
            .await
            .map_err(|e| e.into_log_error())
    }

    /// Reads up to `max` messages from an ordered consumer, stopping when it has delivered every
    /// message that was pending when it was created.
    async fn read_consumer(
        &self,
        filter: String,
        start: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.consume(filter, start, max, decode).await
    }

    /// [`JetStreamLog::read_consumer`] with each message turned into a `T` by `convert`, which
    /// returns the message's stream sequence beside it.
    async fn consume<T>(
        &self,
        filter: String,
        start: Position,
        max: usize,
        convert: impl Fn(&async_nats::jetstream::Message) -> (Position, Result<T, LogError>),
    ) -> Result<Vec<T>, LogError> {
        self.ensure_connected().map_err(LogError::Unavailable)?;
        let (mut messages, pending, name) = self.ordered(filter, start).await?;
        let wanted = usize::try_from(pending).unwrap_or(usize::MAX).min(max);
        let mut events = Vec::with_capacity(wanted.min(4096));
        let mut last = start.saturating_sub(1);
        let result = loop {
            if events.len() >= wanted {
                break Ok(events);
            }
            let message = match tokio::time::timeout(self.request_timeout, messages.next()).await {
                Err(_) => {
                    break Err(LogError::Unavailable(format!(
                        "no message from stream {} within {:?} while reading after position {last}",
                        self.stream_name, self.request_timeout
                    )));
                }
                Ok(None) => {
                    break Err(LogError::Unavailable(
                        "the consumer ended unexpectedly".to_owned(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    break Err(LogError::Unavailable(format!(
                        "reading stream {}: {e}",
                        self.stream_name
                    )));
                }
                Ok(Some(Ok(message))) => message,
            };
            let (position, event) = convert(&message);
            // A recreated ordered consumer may start over from the beginning: skip what we have.
            if position <= last {
                continue;
            }
            last = position;
            match event {
                Ok(event) => events.push(event),
                Err(e) => break Err(e),
            }
        };
        drop(messages);
        // The server would drop the ephemeral consumer after its inactivity threshold anyway;
        // deleting it now keeps the consumer count low under many reads.
        let stream = self.stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&name).await;
        });
        result
    }
}

/// Why one publish failed.
enum PublishFailure {
    WrongLastSequence(Option<Position>),
    Invalid(String),
    Unavailable(String),
}

impl From<async_nats::jetstream::context::PublishError> for PublishFailure {
    fn from(e: async_nats::jetstream::context::PublishError) -> Self {
        match e.kind() {
            PublishErrorKind::WrongLastSequence => {
                let text = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                PublishFailure::WrongLastSequence(parse_actual_sequence(&text))
            }
            PublishErrorKind::MaxPayloadExceeded => PublishFailure::Invalid(e.to_string()),
            PublishErrorKind::Other => {
                let text = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                // 10054: the message exceeds the stream's maximum message size.
                if text.contains("error code 10054") {
                    PublishFailure::Invalid(text)
                } else {
                    PublishFailure::Unavailable(format!("{e}: {text}"))
                }
            }
            _ => PublishFailure::Unavailable(e.to_string()),
        }
    }
}

/// An imported event at `position` was refused or not acknowledged.
fn import_failure(position: Position, failure: PublishFailure) -> AppendError {
    match failure {
        PublishFailure::WrongLastSequence(actual) => AppendError::WrongExpectedSequence {
            expected: Expected::At(position - 1),
            actual,
        },
        PublishFailure::Invalid(e) => AppendError::Invalid(e),
        PublishFailure::Unavailable(e) => {
            AppendError::Unavailable(format!("importing the event at position {position}: {e}"))
        }
    }
}

/// The server reports `wrong last sequence: <n>`; `n` is the aggregate's actual last sequence.
fn parse_actual_sequence(text: &str) -> Option<Position> {
    let rest = &text[text.find("wrong last sequence:")? + "wrong last sequence:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn is_name_exists(kind: &async_nats::jetstream::context::CreateStreamErrorKind) -> bool {
    matches!(kind, async_nats::jetstream::context::CreateStreamErrorKind::JetStream(e)
        if e.error_code() == ErrorCode::STREAM_NAME_EXIST)
}

/// The stream, or None if it does not exist.
async fn open_stream(context: &Context, name: &str) -> Result<Option<stream::Stream>, LogError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    match context.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            GetStreamErrorKind::InvalidStreamName | GetStreamErrorKind::EmptyName => Err(
                LogError::Misconfigured(format!("invalid JetStream stream name {name:?}")),
            ),
            _ => Err(LogError::Unavailable(format!(
                "cannot look up stream {name}: {e}"
            ))),
        },
    }
}

fn is_replicas_not_supported(kind: &CreateStreamErrorKind) -> bool {
    matches!(kind, CreateStreamErrorKind::JetStream(e)
        if e.error_code() == ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED)
}

fn stream_config(options: &JetStreamOptions) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        description: Some("idstream event log".to_owned()),
        subjects: vec![EVENTS_WILDCARD.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        num_replicas: options.replicas,
        duplicate_window: options.duplicate_window,
        allow_direct: true,
        discard: DiscardPolicy::Old,
        // Events are immutable: no message may be removed from the log.
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Refuses a stream that would silently lose or misplace events.
/// The servers of a comma-separated URL list, such as `nats://n1:4222,nats://n2:4222`.
fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, LogError> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| LogError::Misconfigured(format!("invalid NATS URL {u:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(LogError::Misconfigured("no NATS URL given".into()));
    }
    Ok(addrs)
}

fn validate_stream(config: &stream::Config, options: &JetStreamOptions) -> Result<(), LogError> {
    let name = &options.stream;
    if !config
        .subjects
        .iter()
        .any(|s| subject_covers(s, EVENTS_WILDCARD))
    {
        return Err(LogError::Misconfigured(format!(
            "stream {name} exists but its subjects {:?} do not cover {EVENTS_WILDCARD}; \
             refusing to use it (delete it or configure another stream name)",
            config.subjects
        )));
    }
    if config.storage != StorageType::File {
        return Err(LogError::Misconfigured(format!(
            "stream {name} exists with {:?} storage; the event log needs file storage",
            config.storage
        )));
    }
    if config.retention != RetentionPolicy::Limits {
        return Err(LogError::Misconfigured(format!(
            "stream {name} exists with {:?} retention, which removes events; the event log needs limits retention",
            config.retention
        )));
    }
    let limited = config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
        || !config.max_age.is_zero();
    if limited {
        return Err(LogError::Misconfigured(format!(
            "stream {name} exists with limits (max_msgs {}, max_bytes {}, max_msgs_per_subject {}, max_age {:?}) \
             that would drop events; the event log must have none",
            config.max_messages, config.max_bytes, config.max_messages_per_subject, config.max_age
        )));
    }
    if config.num_replicas != options.replicas {
        tracing::warn!(stream = %name, configured = options.replicas, actual = config.num_replicas, "the event stream has a different replica count than configured; `idstream serve` applies stream_replicas when it starts");
    }
    if config.duplicate_window != options.duplicate_window {
        tracing::warn!(stream = %name, configured = ?options.duplicate_window, actual = ?config.duplicate_window, "the event stream has a different duplicate window than configured");
    }
    Ok(())
}

/// Whether every subject matching `filter` (`*`, `>` wildcards) also matches `pattern`.
fn subject_covers(pattern: &str, filter: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut filter = filter.split('.');
    loop {
        match (pattern.next(), filter.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(f)) if f != ">" => {}
            (Some(p), Some(f)) if p == f => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why an ordered consumer could not be opened.
enum OpenError {
    /// The stream is gone (or is another one now): retrying cannot help.
    StreamGone(String),
    /// The server cannot be reached or answered with an error that may pass.
    Transient(String),
}

impl OpenError {
    fn into_log_error(self) -> LogError {
        match self {
            OpenError::StreamGone(e) => LogError::Corrupt(e),
            OpenError::Transient(e) => LogError::Unavailable(e),
        }
    }
}

/// Creates a uniquely named ordered consumer from `start` and returns its messages, how many
/// messages were pending for it at creation, and its name.
async fn open_ordered(
    stream: &stream::Stream,
    filter: String,
    start: Position,
) -> Result<(Ordered, u64, String), OpenError> {
    use async_nats::jetstream::stream::ConsumerErrorKind;
    let name = format!("idstream_{}", ulid::Ulid::new());
    let deliver_policy = if start <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: start,
        }
    };
    let config = OrderedConfig {
        name: Some(name.clone()),
        filter_subject: filter,
        deliver_policy,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| match e.kind() {
            ConsumerErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                OpenError::StreamGone(format!("the event stream no longer exists: {err}"))
            }
            _ => OpenError::Transient(format!("cannot create a consumer: {e}")),
        })?;
    let pending = consumer.cached_info().num_pending;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| OpenError::Transient(format!("cannot start consuming: {e}")))?;
    Ok((messages, pending, name))
}

/// The stream sequence of a delivered message and the event it holds.
fn decode(message: &async_nats::jetstream::Message) -> (Position, Result<RecordedEvent, LogError>) {
    match message.info() {
        Ok(info) => {
            let position = info.stream_sequence;
            let subject = message.subject.as_str();
            let event = decode_event(
                position,
                subject,
                message.headers.as_ref(),
                &message.payload,
            );
            (position, event)
        }
        Err(e) => (
            0,
            Err(LogError::Corrupt(format!(
                "a delivered message has no sequence: {e}"
            ))),
        ),
    }
}

/// The stream sequence of a delivered message and its payload as stored.
fn decode_raw(message: &async_nats::jetstream::Message) -> (Position, Result<RawEvent, LogError>) {
    match message.info() {
        Ok(info) => {
            let position = info.stream_sequence;
            let event = RawEvent {
                position,
                subject: message.subject.to_string(),
                bytes: message.payload.clone(),
                msg_id: msg_id(message.headers.as_ref()),
            };
            (position, Ok(event))
        }
        Err(e) => (
            0,
            Err(LogError::Corrupt(format!(
                "a delivered message has no sequence: {e}"
            ))),
        ),
    }
}

/// The event stored at `position`; corrupt if it is no envelope or sits on the wrong subject.
fn decode_event(
    position: Position,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<RecordedEvent, LogError> {
    let envelope = serde_json::from_slice::<EventEnvelope>(payload).map_err(|e| {
        LogError::Corrupt(format!(
            "the message at position {position} on {subject} is not an event envelope: {e}"
        ))
    })?;
    if envelope.subject() != subject {
        return Err(LogError::Corrupt(format!(
            "the event at position {position} was stored on {subject} but belongs on {}",
            envelope.subject()
        )));
    }
    Ok(RecordedEvent {
        position,
        envelope,
        msg_id: msg_id(headers),
    })
}

fn msg_id(headers: Option<&HeaderMap>) -> Option<String> {
    headers
        .and_then(|h| {
            h.get(MSG_ID_HEADER)
                .or_else(|| h.get(IMPORTED_MSG_ID_HEADER))
        })
        .map(|v| v.as_str().to_owned())
}

#[async_trait::async_trait]
impl EventLog for JetStreamLog {
    async fn append(
        &self,
        events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError> {
        let (subject, bodies) = crate::encode_append(&events)?;
        let bodies: Vec<Bytes> = bodies.into_iter().map(Bytes::from).collect();
        let stream_key = events[0].stream_key();

        // Fail fast instead of queueing publishes in the client while it reconnects.
        self.ensure_connected().map_err(AppendError::Unavailable)?;

        let mut positions: Vec<Position> = Vec::with_capacity(bodies.len());
        let mut duplicate = false;
        // The earlier append's messages, looked up once when the server answers a retried key
        // with a sequence error instead of a duplicate ack (a server may check the expected
        // sequence before the dedup id).
        let mut earlier: Option<HashMap<String, Position>> = None;
        for (index, body) in bodies.into_iter().enumerate() {
            let expected_here = match positions.last() {
                Some(&previous) => Expected::At(previous),
                None => expected,
            };
            let header = match expected_here {
                Expected::Any => None,
                Expected::NoEvents => Some(0),
                Expected::At(position) => Some(position),
            };
            let msg_id = idempotency_key.map(|key| format!("{key}:{index}"));
            match self
                .publish(&subject, body, msg_id.as_deref(), header)
                .await
            {
                Ok(ack) => {
                    if index == 0 && ack.duplicate {
                        duplicate = true;
                    }
                    positions.push(ack.sequence);
                }
                Err(PublishFailure::WrongLastSequence(actual)) => {
                    let (Some(key), Some(id)) = (idempotency_key, msg_id) else {
                        return Err(AppendError::WrongExpectedSequence {
                            expected: expected_here,
                            actual,
                        });
                    };
                    if earlier.is_none() {
                        earlier = Some(self.find_idempotent(&stream_key, key).await?);
                    }
                    match earlier.as_ref().and_then(|found| found.get(&id)) {
                        Some(&position) => {
                            if index == 0 {
                                duplicate = true;
                            }
                            positions.push(position);
                        }
                        None => {
                            return Err(AppendError::WrongExpectedSequence {
                                expected: expected_here,
                                actual,
                            });
                        }
                    }
                }
                Err(PublishFailure::Invalid(e)) => return Err(AppendError::Invalid(e)),
                Err(PublishFailure::Unavailable(e)) => {
                    let written = if positions.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " after {} of its events were stored; retry with the same idempotency key to complete it",
                            positions.len()
                        )
                    };
                    return Err(AppendError::Unavailable(format!(
                        "append to {subject} failed{written}: {e}"
                    )));
                }
            }
        }
        let (&first, &last) = (
            positions.first().expect("one event at least"),
            positions.last().expect("one event at least"),
        );
        Ok(Appended {
            first,
            last,
            duplicate,
        })
    }

    async fn import_raw(&self, events: Vec<RawEvent>) -> Result<Appended, AppendError> {
        crate::check_import(&events)?;
        self.ensure_connected().map_err(AppendError::Unavailable)?;
        let first = events[0].position;
        let last = first + events.len() as u64 - 1;
        // Each message is stored only if the stream's last position is the one before it. The
        // first is awaited alone, so an import that does not continue the stream stores
        // nothing; after it the messages are pipelined, a window at a time, acks awaited in
        // order: a refused one can be followed by a stored one only if another writer put a
        // message at its position meanwhile, which a copy's target must not have (see the
        // trait).
        let (head, rest) = events.split_at(1);
        for window in std::iter::once(head).chain(rest.chunks(IMPORT_WINDOW)) {
            let mut acks = Vec::with_capacity(window.len());
            for event in window {
                let mut message = PublishMessage::build()
                    .payload(event.bytes.clone())
                    .expected_last_sequence(event.position - 1);
                if let Some(id) = &event.msg_id {
                    message = message.header(IMPORTED_MSG_ID_HEADER, id.as_str());
                }
                let ack = self
                    .context
                    .send_publish(event.subject.clone(), message)
                    .await
                    .map_err(|e| import_failure(event.position, PublishFailure::from(e)))?;
                acks.push((event.position, ack));
            }
            for (position, ack) in acks {
                let ack = ack
                    .await
                    .map_err(|e| import_failure(position, PublishFailure::from(e)))?;
                if ack.sequence != position {
                    return Err(AppendError::Unavailable(format!(
                        "stream {} stored the event meant for position {position} at {}",
                        self.stream_name, ack.sequence
                    )));
                }
            }
        }
        Ok(Appended {
            first,
            last,
            duplicate: false,
        })
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError> {
        let subject = key.subject();
        // Appends refuse such subjects, so no event can be stored under one.
        if !valid_event_subject(&subject) {
            return Ok(Vec::new());
        }
        self.ensure_connected().map_err(LogError::Unavailable)?;
        // Most aggregates hold a handful of events: fetching them one by one from the stream
        // leader costs a round trip each, less than setting up a consumer. Longer ones switch to
        // a consumer for the rest.
        let mut events = Vec::new();
        let mut from = 1;
        for _ in 0..SINGLE_READS {
            match self.next_message(&subject, from).await? {
                None => return Ok(events),
                Some(message) => {
                    from = message.sequence + 1;
                    events.push(decode_event(
                        message.sequence,
                        &subject,
                        Some(&message.headers),
                        &message.payload,
                    )?);
                }
            }
        }
        events.extend(self.read_consumer(subject, from, usize::MAX).await?);
        Ok(events)
    }

    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.read_consumer(self.events_filter.clone(), after.saturating_add(1), max)
            .await
    }

    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.consume(
            self.events_filter.clone(),
            after.saturating_add(1),
            max,
            decode_raw,
        )
        .await
    }

    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError> {
        self.ensure_connected().map_err(LogError::Unavailable)?;
        let (messages, _, _) = self
            .ordered(self.events_filter.clone(), after.saturating_add(1))
            .await?;
        let subscription = Subscription {
            context: self.context.clone(),
            stream_name: self.stream_name.clone(),
            filter: self.events_filter.clone(),
            created: self.created,
            last: after,
            messages: Some(messages),
            reconnected: {
                let mut reconnected = self.reconnected.clone();
                reconnected.mark_unchanged();
                Some(reconnected)
            },
            failures: 0,
            done: false,
        };
        Ok(
            futures::stream::unfold(subscription, |mut subscription| async move {
                let item = subscription.next_item().await?;
                Some((item, subscription))
            })
            .boxed(),
        )
    }

    async fn last_position(&self) -> Result<Position, LogError> {
        Ok(self.stream_info().await?.state.last_sequence)
    }

    async fn write_check(&self) -> Result<Position, LogError> {
        let info = self.stream_info().await?;
        if let Some(cluster) = &info.cluster {
            let Some(leader) = &cluster.leader else {
                return Err(LogError::Unavailable(format!(
                    "stream {} has no leader",
                    self.stream_name
                )));
            };
            // The leader counts itself; a quorum is a majority of the configured replicas.
            let current = 1 + cluster
                .replicas
                .iter()
                .filter(|p| p.current && !p.offline)
                .count();
            let quorum = info.config.num_replicas / 2 + 1;
            if current < quorum {
                return Err(LogError::Unavailable(format!(
                    "stream {}: its leader {leader} sees {current} of {} replicas current, fewer than a quorum",
                    self.stream_name, info.config.num_replicas
                )));
            }
        }
        Ok(info.state.last_sequence)
    }

    async fn log_id(&self) -> Result<String, LogError> {
        let info = self.stream_info().await?;
        Ok(format!(
            "jetstream:{}:{}",
            info.config.name,
            info.created.unix_timestamp_nanos()
        ))
    }

    fn backend(&self) -> &'static str {
        "jetstream"
    }
}

impl JetStreamLog {
    /// The first message on `subject` at or after position `from`, read from the stream leader
    /// (so it is never staler than an acknowledged append).
    async fn next_message(
        &self,
        subject: &str,
        from: Position,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, LogError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let result = self
            .stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(subject)
            .send()
            .await;
        match result {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(LogError::Unavailable(format!(
                "reading {subject} from position {from}: {e}"
            ))),
        }
    }

    async fn stream_info(&self) -> Result<stream::Info, LogError> {
        self.ensure_connected().map_err(LogError::Unavailable)?;
        match open_stream(&self.context, &self.stream_name).await? {
            Some(stream) => Ok(stream.cached_info().clone()),
            None => Err(LogError::Corrupt(format!(
                "the event stream {} no longer exists",
                self.stream_name
            ))),
        }
    }
}

/// A live subscription: an ordered consumer that is recreated after the last delivered position
/// whenever it fails, for as long as the stream it started on exists.
struct Subscription {
    context: Context,
    stream_name: String,
    filter: String,
    created: OffsetDateTime,
    /// The position of the last message handed out (or skipped as corrupt).
    last: Position,
    messages: Option<Ordered>,
    /// Signals a reconnection of the client; None once the client is gone.
    reconnected: Option<tokio::sync::watch::Receiver<u64>>,
    /// Consecutive failed attempts to recreate the consumer, for the backoff.
    failures: u32,
    done: bool,
}

impl Subscription {
    async fn next_item(&mut self) -> Option<Result<RecordedEvent, LogError>> {
        if self.done {
            return None;
        }
        loop {
            let Some(messages) = self.messages.as_mut() else {
                let reopened = reopen(
                    self.context.clone(),
                    self.stream_name.clone(),
                    self.filter.clone(),
                    self.created,
                    self.last,
                )
                .await;
                match reopened {
                    Ok(messages) => {
                        self.failures = 0;
                        self.messages = Some(messages);
                    }
                    Err(OpenError::StreamGone(e)) => {
                        self.done = true;
                        return Some(Err(LogError::Corrupt(e)));
                    }
                    Err(OpenError::Transient(e)) => {
                        self.failures += 1;
                        let backoff = Duration::from_millis(50 * 2u64.pow(self.failures.min(5)))
                            .min(Duration::from_secs(2));
                        tracing::debug!(stream = %self.stream_name, after = self.last, error = %e, ?backoff, "event subscription cannot resume yet");
                        tokio::time::sleep(backoff).await;
                    }
                }
                continue;
            };
            let next = match self.reconnected.as_mut() {
                Some(reconnected) => tokio::select! {
                    next = messages.next() => next,
                    changed = reconnected.changed() => {
                        if changed.is_ok() {
                            // The server may have restarted and lost the ephemeral consumer:
                            // recreate it after the last delivered position right away.
                            tracing::debug!(stream = %self.stream_name, after = self.last, "NATS reconnected; resuming the event subscription");
                            self.messages = None;
                        } else {
                            self.reconnected = None;
                        }
                        continue;
                    }
                },
                None => messages.next().await,
            };
            match next {
                Some(Ok(message)) => {
                    let (position, event) = decode(&message);
                    // An ordered consumer that recreates itself before delivering anything starts
                    // over from the beginning of the stream. Replace it with one that starts
                    // after the last delivered position rather than skip through the replay.
                    if position <= self.last {
                        self.messages = None;
                        continue;
                    }
                    self.last = position;
                    return Some(event);
                }
                Some(Err(e)) => {
                    tracing::warn!(stream = %self.stream_name, after = self.last, error = %e, "event subscription interrupted; resuming");
                    self.messages = None;
                }
                None => {
                    tracing::warn!(stream = %self.stream_name, after = self.last, "event subscription ended; resuming");
                    self.messages = None;
                }
            }
        }
    }
}

/// A new consumer after position `last`, on the same stream instance (created at `created`).
/// It takes its inputs by value so the subscription future stays `Send`.
async fn reopen(
    context: Context,
    stream_name: String,
    filter: String,
    created: OffsetDateTime,
    last: Position,
) -> Result<Ordered, OpenError> {
    let stream = match open_stream(&context, &stream_name).await {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            return Err(OpenError::StreamGone(format!(
                "the event stream {stream_name} was deleted"
            )));
        }
        Err(LogError::Corrupt(e) | LogError::Misconfigured(e)) => {
            return Err(OpenError::StreamGone(e));
        }
        Err(LogError::Unavailable(e)) => return Err(OpenError::Transient(e)),
    };
    if stream.cached_info().created != created {
        return Err(OpenError::StreamGone(format!(
            "the event stream {stream_name} was recreated; positions of the old one mean nothing in it"
        )));
    }
    open_ordered(&stream, filter, last.saturating_add(1))
        .await
        .map(|(messages, _, _)| messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actual_sequence_is_read_from_the_servers_error_text() {
        assert_eq!(
            parse_actual_sequence("wrong last sequence: 42 (code 400, error code 10071)"),
            Some(42)
        );
        assert_eq!(
            parse_actual_sequence("wrong last sequence (code 400, error code 10071)"),
            None
        );
    }

    #[test]
    fn stream_subjects_must_cover_the_event_space() {
        assert!(subject_covers("idstream.events.>", EVENTS_WILDCARD));
        assert!(subject_covers(">", EVENTS_WILDCARD));
        assert!(subject_covers("idstream.>", EVENTS_WILDCARD));
        assert!(subject_covers("*.events.>", EVENTS_WILDCARD));
        assert!(!subject_covers("idstream.events.*", EVENTS_WILDCARD));
        assert!(!subject_covers("idstream.events.acme.>", EVENTS_WILDCARD));
        assert!(!subject_covers("other.>", EVENTS_WILDCARD));
    }

    #[test]
    fn event_subjects_have_no_wildcards_or_empty_tokens() {
        assert!(valid_event_subject("idstream.events._.user.01J"));
        assert!(!valid_event_subject("idstream.events._.user."));
        assert!(!valid_event_subject("idstream.events.*.user.x"));
        assert!(!valid_event_subject("idstream.events._.user.a b"));
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_comma_separated_list_names_every_seed_server() {
        let addrs = server_addrs("nats://n1:4222, nats://n2:4222,nats://n3:4222").unwrap();
        assert_eq!(addrs.len(), 3);
        assert!(matches!(
            server_addrs(" , "),
            Err(LogError::Misconfigured(_))
        ));
        assert!(matches!(
            server_addrs("nats://bad host:x"),
            Err(LogError::Misconfigured(_))
        ));
    }
}
