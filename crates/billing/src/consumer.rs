//! Reading the log: billing's own durable pull consumer on the JetStream stream.
//!
//! The consumer (default name `idstream-billing`) has one filter subject, `idstream.events.>`
//! (nats-server 2.9 ignores multi-subject filters), acknowledges with `AckPolicy::All` and is
//! created to start right after the position in the state file. The loop takes what is ready
//! (up to [`BATCH`] messages), folds the events after the saved position into the seats, replaces
//! the state file, and only then acknowledges the last message of the batch. So:
//!
//! - a crash before the state file is replaced loses nothing: the messages were not acknowledged
//!   and are delivered again;
//! - a crash after it but before the acknowledgement redelivers messages at or below the saved
//!   position, which are skipped (the position makes the fold idempotent);
//! - a state file that is *behind* the consumer (restored from a backup, or deleted) would make
//!   the consumer skip events, so at start a consumer whose acknowledged floor is beyond the saved
//!   position is deleted and created again from that position.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::Stream;
use futures::{FutureExt, StreamExt};
use idstream_domain::EventEnvelope;
use tokio::sync::watch;

use crate::seats::Applied;
use crate::state::{self, State, StateError};

/// Every event subject: the one filter subject of billing's consumer.
pub const FILTER: &str = "idstream.events.>";

/// Most messages folded between two writes of the state file.
pub const BATCH: usize = 512;

/// How to reach the log and where to keep the state.
#[derive(Debug, Clone)]
pub struct Options {
    /// NATS server URL(s), comma separated.
    pub nats_url: String,
    /// The JetStream stream of the events (`IDSTREAM` by default).
    pub stream: String,
    /// The durable consumer's name; one per billing deployment.
    pub consumer: String,
    /// The state file.
    pub state_path: PathBuf,
}

/// What billing knows, shared with the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    /// `None` until the state is loaded and the stream found.
    pub state: Option<State>,
    /// The position the state file held when this process started.
    pub started_at: u64,
    /// Events after `started_at` this process received and folded (or found irrelevant).
    pub applied: u64,
    /// Relevant events that could not be placed (see [`Applied::Skipped`]).
    pub skipped: u64,
}

pub type SharedState = Arc<RwLock<Shared>>;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "the state file {path} belongs to stream {saved_stream} created {saved_created}, but stream \
         {stream} was created {created}: the positions no longer match. Move the state file \
         aside (and delete the consumer) to count from the start"
    )]
    StreamChanged {
        path: PathBuf,
        saved_stream: String,
        saved_created: String,
        stream: String,
        created: String,
    },
    #[error("consumer {consumer}: {message}")]
    Consumer { consumer: String, message: String },
    #[error("the message at position {position} is not an event envelope: {message}")]
    NotAnEvent { position: u64, message: String },
}

/// Runs until `stop` turns true: attaches the durable consumer and folds every event into the
/// state file. Returns an error only for what waiting cannot fix (a state file that does not
/// match the stream, a message that is not an event).
pub async fn run(
    options: &Options,
    shared: SharedState,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BillingError> {
    let saved = state::load(&options.state_path)?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(options.nats_url.as_str())
        .await
        .map_err(|e| BillingError::Connect {
            url: options.nats_url.clone(),
            message: e.to_string(),
        })?;
    let context = async_nats::jetstream::new(client);
    let mut backoff = Backoff::default();
    let stream = loop {
        match context.get_stream(&options.stream).await {
            Ok(stream) => break stream,
            Err(e) => {
                tracing::warn!(stream = %options.stream, error = %e, "waiting for the event stream");
                if backoff.wait(&mut stop).await {
                    return Ok(());
                }
            }
        }
    };
    let created = stream.cached_info().created;
    let mut current = match saved {
        Some(saved) => {
            if saved.stream != options.stream || saved.stream_created != created {
                return Err(BillingError::StreamChanged {
                    path: options.state_path.clone(),
                    saved_stream: saved.stream,
                    saved_created: rfc3339(saved.stream_created),
                    stream: options.stream.clone(),
                    created: rfc3339(created),
                });
            }
            saved
        }
        None => State::new(&options.stream, created, &options.consumer),
    };
    {
        let mut shared = shared.write().expect("billing state lock");
        shared.started_at = current.position;
        shared.state = Some(current.clone());
    }
    tracing::info!(
        stream = %options.stream,
        consumer = %options.consumer,
        position = current.position,
        "billing resumes after position {}",
        current.position
    );

    loop {
        let consumer = match attach(&stream, &options.consumer, current.position).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!(error = %e, "cannot attach the durable consumer; retrying");
                if backoff.wait(&mut stop).await {
                    return Ok(());
                }
                continue;
            }
        };
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start consuming; retrying");
                if backoff.wait(&mut stop).await {
                    return Ok(());
                }
                continue;
            }
        };
        backoff = Backoff::default();
        loop {
            let first = tokio::select! {
                next = messages.next() => next,
                _ = stop.changed() => return Ok(()),
            };
            let mut batch = match first {
                Some(Ok(message)) => vec![message],
                Some(Err(e)) => {
                    // Missed heartbeats and the like: the pull stream carries on by itself.
                    tracing::warn!(error = %e, "consumer stream reported a problem");
                    continue;
                }
                None => break,
            };
            // Take whatever else is ready right now, so a catch-up writes the file once per
            // batch instead of once per event.
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    _ => break,
                }
            }
            fold_batch(options, &shared, &mut current, &batch)?;
            let last = batch.last().expect("a batch holds a message");
            if let Err(e) = last.ack().await {
                // Not acknowledged means delivered again later, and skipped by position then.
                tracing::warn!(error = %e, "acknowledgement failed");
            }
        }
        tracing::warn!("the consumer's message stream ended; attaching again");
    }
}

/// Folds the events of `batch` after the saved position, then replaces the state file.
fn fold_batch(
    options: &Options,
    shared: &SharedState,
    current: &mut State,
    batch: &[async_nats::jetstream::Message],
) -> Result<(), BillingError> {
    let mut applied = 0;
    let mut skipped = 0;
    let before = current.position;
    for message in batch {
        let info = message.info().map_err(|e| BillingError::Consumer {
            consumer: options.consumer.clone(),
            message: format!("a delivered message has no stream sequence: {e}"),
        })?;
        let position = info.stream_sequence;
        if position <= current.position {
            continue;
        }
        let envelope: EventEnvelope =
            serde_json::from_slice(&message.payload).map_err(|e| BillingError::NotAnEvent {
                position,
                message: e.to_string(),
            })?;
        if let Applied::Skipped(reason) = current.seats.apply(&envelope) {
            tracing::warn!(position, reason = %reason, "event skipped");
            skipped += 1;
        }
        current.position = position;
        applied += 1;
    }
    if current.position != before {
        state::save(&options.state_path, current)?;
        tracing::debug!(position = current.position, "state saved");
    }
    let mut shared = shared.write().expect("billing state lock");
    shared.state = Some(current.clone());
    shared.applied += applied;
    shared.skipped += skipped;
    Ok(())
}

/// The durable consumer, created (again) to start right after `position` when it does not exist,
/// has another configuration, or has acknowledged beyond `position`.
async fn attach(stream: &Stream, name: &str, position: u64) -> Result<PullConsumer, BillingError> {
    let error = |message: String| BillingError::Consumer {
        consumer: name.to_owned(),
        message,
    };
    match stream.consumer_info(name).await {
        Ok(info) => {
            let floor = info.ack_floor.stream_sequence;
            let ours = info.config.filter_subject == FILTER
                && info.config.ack_policy == AckPolicy::All
                && info.config.durable_name.as_deref() == Some(name);
            if ours && floor <= position {
                return stream
                    .get_consumer(name)
                    .await
                    .map_err(|e| error(e.to_string()));
            }
            tracing::warn!(
                consumer = name,
                acknowledged = floor,
                position,
                "the consumer does not match the state file; creating it again from the state's position"
            );
            stream
                .delete_consumer(name)
                .await
                .map_err(|e| error(format!("cannot delete: {e}")))?;
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {}
        Err(e) => return Err(error(e.to_string())),
    }
    let config = pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some("idstream-billing: seats per tenant".to_owned()),
        deliver_policy: if position == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            }
        },
        ack_policy: AckPolicy::All,
        ack_wait: Duration::from_secs(30),
        filter_subject: FILTER.to_owned(),
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|e| error(format!("cannot create: {e}")))
}

/// Waits between retries: 100 ms doubling to 5 s. `wait` returns true when asked to stop.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => *stop.borrow(),
            _ = stop.changed() => true,
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
