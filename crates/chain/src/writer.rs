//! The checkpoint writer: the task `idstream serve` runs to record signed checkpoints in the log.
//!
//! Each round ([`Checkpointer::tick`]) it reads the events appended since its last round (their
//! stored bytes), extends its copy of the chain, and notes the checkpoints other replicas wrote.
//! A checkpoint is due when [`CheckpointPolicy::every_events`] events are not covered yet, when
//! [`CheckpointPolicy::every`] has passed since the last checkpoint and anything was appended, or
//! when the last checkpoint is signed by another key than the current one (so that the newest
//! checkpoint is always signed by a key the key ring still holds; see [`crate::verify`] on
//! trust). Checkpoints themselves do not count as new events. A checkpoint covers
//! everything after the previous one up to the end of the log as the round found it, in pieces
//! of at most [`CheckpointPolicy::max_events`].
//!
//! **Race-safe across replicas:** checkpoints are appended to the chain aggregate with the
//! expected sequence of its last event. Of two replicas checkpointing at once, one wins; the
//! other skips, reads the winner's checkpoint in its next round and continues from it.
//!
//! On start the writer resumes from the last checkpoint in the log (it trusts its own service's
//! signed link there rather than re-hashing the whole log; `idstream audit verify` is what
//! re-hashes everything) and hashes only what follows it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_domain::{Actor, DomainEvent, Metadata};
use idstream_eventlog::{AppendError, Expected, LogError, Position, SharedLog};
use idstream_keys::Keys;
use time::OffsetDateTime;
use ulid::Ulid;

use crate::checkpoint::{CHAIN_SUBJECT, Checkpoint, Signer, chain_stream};
use crate::link::{Chain, Hash, ShortLink, short};

/// How many events the writer reads at a time.
const PAGE: usize = 4096;

/// When checkpoints are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// A checkpoint is due once this many events follow the last one.
    pub every_events: u64,
    /// A checkpoint is due once this long has passed since the last one (or since the writer
    /// started) and any event was appended meanwhile.
    pub every: Duration,
    /// How often the writer looks at the end of the log.
    pub poll: Duration,
    /// The most events one checkpoint covers, which bounds its size (8 bytes of digest per
    /// event, base64 encoded: 16384 events make a 175 kB event).
    pub max_events: u64,
    /// How often the signing keys are re-read from the key store, to pick up rotations made
    /// elsewhere.
    pub key_reload: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_events: 1000,
            every: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            max_events: 16384,
            key_reload: Duration::from_secs(60),
        }
    }
}

/// Why a round of the writer failed; it tries again in the next one.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot append a checkpoint: {0}")]
    Append(AppendError),
    #[error("the signing keys cannot be used: {0}")]
    Keys(String),
    /// Positions are missing from the log (deleted or purged messages): no checkpoint is written
    /// past them. `idstream audit verify` reports the same.
    #[error(
        "the log skips from position {} to {found}: events were removed, so no further checkpoint can be written",
        expected - 1
    )]
    Gap { expected: Position, found: Position },
}

/// The last event of the chain aggregate, as far as this writer knows.
#[derive(Debug, Clone)]
struct Head {
    position: Position,
    /// The key that signed it, when it is a valid checkpoint.
    key: Option<String>,
}

/// Writes checkpoints; see the module documentation.
pub struct Checkpointer {
    log: SharedLog,
    keys: Arc<Keys>,
    policy: CheckpointPolicy,
    resumed: bool,
    chain: Chain,
    /// The links after positions `covered_to + 1 ..= chain.position`, and whether the event at
    /// each is a checkpoint.
    pending: VecDeque<(Hash, bool)>,
    covered_to: Position,
    head: Option<Head>,
    /// When the last checkpoint was written or seen (or the writer started).
    last_checkpoint_at: Instant,
    keys_loaded_at: Instant,
    signer: Option<Signer>,
}

impl Checkpointer {
    pub fn new(log: SharedLog, keys: Arc<Keys>, policy: CheckpointPolicy) -> Checkpointer {
        Checkpointer {
            log,
            keys,
            policy,
            resumed: false,
            chain: Chain::default(),
            pending: VecDeque::new(),
            covered_to: 0,
            head: None,
            last_checkpoint_at: Instant::now(),
            keys_loaded_at: Instant::now(),
            signer: None,
        }
    }

    /// Runs rounds every [`CheckpointPolicy::poll`], forever; failures are logged and retried.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.policy.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match self.tick().await {
                Ok(_) => failing = false,
                // Once per outage, not once per poll.
                Err(error @ WriterError::Gap { .. }) if !failing => {
                    failing = true;
                    tracing::error!(%error, "chain: TAMPER EVIDENCE: positions are missing from the log");
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "chain checkpoint round failed; retrying");
                }
                Err(error) => tracing::debug!(%error, "chain checkpoint round failed again"),
            }
        }
    }

    /// One round: catch up with the log, then write the checkpoints that are due. Returns the
    /// positions of the checkpoints it appended.
    pub async fn tick(&mut self) -> Result<Vec<Position>, WriterError> {
        self.catch_up().await?;
        if !self.due() {
            return Ok(Vec::new());
        }
        self.write().await
    }

    /// Catches up and checkpoints everything not yet covered, whatever the policy says (nothing
    /// when the log holds nothing uncovered).
    pub async fn checkpoint_now(&mut self) -> Result<Vec<Position>, WriterError> {
        self.catch_up().await?;
        self.write().await
    }

    /// The last position this writer has hashed.
    pub fn position(&self) -> Position {
        self.chain.position
    }

    /// The last position covered by a checkpoint, as far as this writer knows.
    pub fn covered_to(&self) -> Position {
        self.covered_to
    }

    /// Starts from the last checkpoint in the log, if there is a valid one.
    async fn resume(&mut self) -> Result<(), WriterError> {
        let history = self.log.read_stream(&chain_stream()).await?;
        let Some(last) = history.last() else {
            return Ok(());
        };
        let checkpoint = match DomainEvent::decode(&last.envelope) {
            Ok(DomainEvent::ChainCheckpointed(event)) => Checkpoint::from_event(&event),
            Ok(other) => Err(format!("it is a {} event", other.event_type())),
            Err(e) => Err(e.to_string()),
        };
        match checkpoint {
            Ok(checkpoint) if checkpoint.signature_is_valid() && checkpoint.to < last.position => {
                self.chain = Chain {
                    position: checkpoint.to,
                    link: checkpoint.link,
                };
                self.covered_to = checkpoint.to;
                self.head = Some(Head {
                    position: last.position,
                    key: Some(checkpoint.key),
                });
                tracing::info!(
                    checkpoint = last.position,
                    covered_to = checkpoint.to,
                    "chain: resuming from the last checkpoint"
                );
            }
            other => {
                // Not trustworthy as a starting point: hash the whole log instead, and let the
                // checkpoint be judged by `idstream audit verify`.
                let why = match other {
                    Err(why) => why,
                    Ok(checkpoint) if checkpoint.signed_in_format_v1() => {
                        "it was signed for version 1 of the chain format by an earlier build"
                            .to_owned()
                    }
                    Ok(_) => "its signature or range is wrong".to_owned(),
                };
                tracing::error!(
                    position = last.position,
                    %why,
                    "chain: the last checkpoint in the log is not valid; hashing the log from the start"
                );
                self.head = Some(Head {
                    position: last.position,
                    key: None,
                });
            }
        }
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), WriterError> {
        if !self.resumed {
            self.resume().await?;
            self.resumed = true;
        }
        let end = self.log.last_position().await?;
        while self.chain.position < end {
            let page = self.log.read_raw_after(self.chain.position, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for event in page {
                if event.position != self.chain.position + 1 {
                    // No checkpoint over a hole can verify: stop here, loudly, every round.
                    return Err(WriterError::Gap {
                        expected: self.chain.position + 1,
                        found: event.position,
                    });
                }
                let link = self
                    .chain
                    .push(event.position, &event.subject, &event.bytes);
                let is_checkpoint = event.subject == CHAIN_SUBJECT;
                self.pending.push_back((link, is_checkpoint));
                if is_checkpoint {
                    self.seen(event.position, &event.bytes);
                }
            }
        }
        // Re-read the keys every `key_reload`, and at once (once per checkpoint seen) when the
        // last checkpoint names a key this writer does not know: another replica may have
        // rotated. Without that, a replica that has not seen a rotation yet would re-sign the
        // other's checkpoint with its old key, and the other re-sign that, until both reloaded.
        // A key still unknown after the reload (pruned long ago, or foreign) is re-signed.
        let unknown = self
            .head
            .as_ref()
            .and_then(|h| h.key.as_deref())
            .is_some_and(|key| !self.keys.signing().kids().contains(&key));
        if self.keys_loaded_at.elapsed() >= self.policy.key_reload
            || (unknown && self.keys_loaded_at < self.last_checkpoint_at)
        {
            self.keys
                .reload()
                .await
                .map_err(|e| WriterError::Keys(e.to_string()))?;
            self.keys_loaded_at = Instant::now();
        }
        Ok(())
    }

    /// Notes a chain event read from the log (another replica's checkpoint, or this writer's own).
    fn seen(&mut self, position: Position, bytes: &[u8]) {
        if self.head.as_ref().is_some_and(|h| h.position >= position) {
            return; // written by this writer, or the one it resumed from
        }
        let checkpoint = match Checkpoint::decode(bytes) {
            Ok(checkpoint) => checkpoint,
            Err(why) => {
                tracing::error!(position, %why, "chain: an event on the chain's subject is no valid checkpoint");
                self.head = Some(Head {
                    position,
                    key: None,
                });
                return;
            }
        };
        let base = self.covered_to + 1;
        // `pending` holds exactly the positions `base..=position` (catch_up stops at any gap).
        let matches = checkpoint.from == base
            && checkpoint.to < position
            && self.pending[(checkpoint.to - base) as usize].0 == checkpoint.link;
        if !matches {
            tracing::error!(
                position,
                from = checkpoint.from,
                to = checkpoint.to,
                "chain: a checkpoint written elsewhere does not match this replica's chain; `idstream audit verify` will say where"
            );
        }
        if checkpoint.to > self.covered_to && checkpoint.to < position {
            self.pending
                .drain(..(checkpoint.to - self.covered_to) as usize);
            self.covered_to = checkpoint.to;
        }
        self.head = Some(Head {
            position,
            key: Some(checkpoint.key),
        });
        self.last_checkpoint_at = Instant::now();
    }

    fn due(&self) -> bool {
        // Events not covered yet, checkpoints aside: the newest checkpoint is never covered by
        // itself, and re-signing it alone would loop. Counting from the last checkpoint's
        // position instead would miss events appended between its round and its append.
        let new = self
            .pending
            .iter()
            .filter(|(_, checkpoint)| !checkpoint)
            .count() as u64;
        let current = self.keys.signing();
        let key_changed = self
            .head
            .as_ref()
            .is_some_and(|h| h.key.as_deref() != Some(current.current().kid()));
        new >= self.policy.every_events
            || (new > 0 && self.last_checkpoint_at.elapsed() >= self.policy.every)
            || (key_changed && !self.pending.is_empty())
    }

    /// Appends checkpoints covering `covered_to + 1 ..= chain.position`.
    async fn write(&mut self) -> Result<Vec<Position>, WriterError> {
        let ring = self.keys.signing();
        if self.signer.as_ref().map(Signer::kid) != Some(ring.current().kid()) {
            self.signer = Some(Signer::from_ring(&ring).map_err(WriterError::Keys)?);
        }
        let signer = self.signer.as_ref().expect("set above");
        let mut written = Vec::new();
        while self.covered_to < self.chain.position {
            let from = self.covered_to + 1;
            let to = self
                .chain
                .position
                .min(self.covered_to + self.policy.max_events.max(1));
            let count = (to - self.covered_to) as usize;
            let links: Vec<ShortLink> = self
                .pending
                .iter()
                .take(count)
                .map(|p| short(&p.0))
                .collect();
            let link = self.pending[count - 1].0;
            let checkpoint = signer.sign(from, to, link, links);
            let meta = Metadata {
                actor: Actor::system("chain"),
                occurred_at: OffsetDateTime::now_utc(),
                correlation_id: Ulid::new().to_string(),
                causation_id: None,
            };
            let envelope = DomainEvent::ChainCheckpointed(checkpoint.to_event()).into_envelope(
                Ulid::new(),
                &chain_stream(),
                &meta,
            );
            let expected = Expected::from_last(self.head.as_ref().map_or(0, |h| h.position));
            match self.log.append(vec![envelope], expected, None).await {
                Ok(appended) => {
                    self.pending.drain(..count);
                    self.covered_to = to;
                    self.head = Some(Head {
                        position: appended.last,
                        key: Some(signer.kid().to_owned()),
                    });
                    self.last_checkpoint_at = Instant::now();
                    tracing::debug!(
                        position = appended.last,
                        from,
                        to,
                        "chain: checkpoint written"
                    );
                    written.push(appended.last);
                }
                Err(AppendError::WrongExpectedSequence { .. }) => {
                    // Another replica checkpointed first; its checkpoint is read next round.
                    tracing::debug!("chain: another replica wrote a checkpoint first");
                    break;
                }
                Err(error) => return Err(WriterError::Append(error)),
            }
        }
        Ok(written)
    }
}
