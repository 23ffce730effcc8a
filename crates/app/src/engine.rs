//! The generic command loop: load, decide, append with the expected sequence, retry.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use idstream_domain::envelope::Metadata;
use idstream_domain::{Actor, Aggregate, DomainEvent, EventEnvelope, StreamKey};
use idstream_eventlog::{AppendError, Expected, Position};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::AppError;
use crate::core::Core;

/// How many times a command is re-decided after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 8;

/// Who sends a command and how it should be traced and deduplicated.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub correlation_id: String,
    /// The client's `Idempotency-Key`, validated by [`CommandContext::new`].
    idempotency: Option<String>,
    /// Set for a dry run: decide every step, append nothing (see [`DryRun`]).
    dry_run: Option<Arc<DryRun>>,
}

impl CommandContext {
    /// Validates the idempotency key (1–255 visible ASCII characters) and scopes it to the actor,
    /// so two clients using the same key never collide. Only a hash of it reaches the log.
    pub fn new(
        actor: Actor,
        correlation_id: String,
        idempotency_key: Option<&str>,
    ) -> Result<Self, AppError> {
        let idempotency = match idempotency_key {
            None => None,
            Some(k)
                if k.is_empty()
                    || k.len() > 255
                    || !k.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
            {
                return Err(AppError::InvalidIdempotencyKey);
            }
            Some(k) => {
                let mut h = Sha256::new();
                h.update(serde_json::to_vec(&actor).unwrap_or_default());
                h.update([0]);
                h.update(k.as_bytes());
                Some(hex::encode(&h.finalize()[..16]))
            }
        };
        Ok(CommandContext {
            actor,
            correlation_id,
            idempotency,
            dry_run: None,
        })
    }

    /// The same context deciding without appending (`dry_run=true`): every step's events go to
    /// `dry_run` instead of the log.
    pub fn with_dry_run(mut self, dry_run: Arc<DryRun>) -> Self {
        self.dry_run = Some(dry_run);
        self
    }

    /// The events a dry run decided so far; `None` unless this is a dry run.
    pub fn dry_run_events(&self) -> Option<Vec<EventEnvelope>> {
        self.dry_run.as_ref().map(|d| d.events())
    }

    /// The dry run this context records into, if it is one.
    pub(crate) fn dry_run(&self) -> Option<&DryRun> {
        self.dry_run.as_deref()
    }

    /// Whether commands of this context are only decided.
    pub(crate) fn is_dry_run(&self) -> bool {
        self.dry_run.is_some()
    }

    /// The scoped idempotency key for one step of a command (`None` without a client key).
    pub(crate) fn step_key(&self, step: &str) -> Option<String> {
        self.idempotency.as_ref().map(|k| {
            if step.is_empty() {
                k.clone()
            } else {
                format!("{k}-{step}")
            }
        })
    }

    /// The same actor and correlation, with the idempotency key (if any) extended by `part`.
    pub(crate) fn scoped(&self, part: &str) -> Self {
        CommandContext {
            idempotency: self.step_key(part),
            ..self.clone()
        }
    }

    /// The same actor and correlation, without the client's idempotency key: for bookkeeping
    /// steps that must be decided afresh on every attempt of a command.
    pub(crate) fn without_idempotency(&self) -> Self {
        CommandContext {
            idempotency: None,
            ..self.clone()
        }
    }

    pub(crate) fn request_hash(&self) -> Option<String> {
        self.idempotency.clone()
    }
}

/// A command decided and not carried out (`dry_run=true`): the events each of its steps would
/// append, in order, and each aggregate's state after them, so that a later step of the same
/// command on the same aggregate decides on what the earlier ones would have appended.
#[derive(Default)]
pub struct DryRun {
    events: Mutex<Vec<EventEnvelope>>,
    states: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRun").finish_non_exhaustive()
    }
}

impl DryRun {
    /// The events the command would have appended, in order.
    pub fn events(&self) -> Vec<EventEnvelope> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn state<A: Aggregate>(&self, subject: &str) -> Option<(A::State, Position)> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, last) = states.get(subject)?;
        state
            .downcast_ref::<A::State>()
            .map(|state| (state.clone(), *last))
    }

    pub(crate) fn record<A: Aggregate>(
        &self,
        subject: String,
        state: A::State,
        last: Position,
        envelopes: Vec<EventEnvelope>,
    ) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(envelopes);
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(subject, (Box::new(state), last));
    }
}

/// What a successful command returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Log position of the command's last event: the consistency token.
    pub position: Position,
    /// Id of the aggregate the command created or changed.
    pub id: String,
    /// True when this was a retry of a command already carried out: nothing new was appended.
    pub replayed: bool,
}

/// An aggregate's state (of its own type, hence `Any`) and the position of its last event.
type Cached = (Box<dyn Any + Send + Sync>, Position);

/// Recently seen aggregate states with the position of their last event, so that a command on a
/// warm aggregate needs no read before its append. The cache may be stale (another replica may
/// have written): the append's expected sequence catches that, and the command is re-decided on
/// state read from the log. A command that *fails* on cached state is also re-decided on fresh
/// state before the failure is reported.
pub(crate) struct StateCache {
    capacity: usize,
    entries: Mutex<HashMap<String, Cached>>,
}

impl StateCache {
    pub(crate) fn new(capacity: usize) -> Self {
        StateCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get<A: Aggregate>(&self, subject: &str) -> Option<(A::State, Position)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(subject)
            .and_then(|(s, p)| s.downcast_ref::<A::State>().map(|s| (s.clone(), *p)))
    }

    fn put<A: Aggregate>(&self, subject: String, state: A::State, last: Position) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&subject) {
            // Crude but bounded: a full cache starts over. Misses only cost a read of the log.
            entries.clear();
        }
        let newer = entries.get(&subject).is_none_or(|(_, p)| *p <= last);
        if newer {
            entries.insert(subject, (Box::new(state), last));
        }
    }

    fn forget(&self, subject: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(subject);
    }
}

/// Where the state a decision is based on came from.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Source {
    /// Read from the log during this command: authoritative at that moment.
    Log,
    /// From the cache, or assumed empty for an aggregate never seen: to be confirmed.
    Cached,
}

impl Core {
    /// Reads an aggregate's state and the position of its last event from the log.
    /// [`Core::execute_to_state`] for a dry run: decides on the log's state (or on what earlier
    /// steps of the same command would have appended) and records the events instead of
    /// appending them. The outcome's position is the aggregate's last, since nothing is appended.
    async fn decide_only<A: Aggregate>(
        &self,
        ctx: &CommandContext,
        dry_run: &DryRun,
        key: &StreamKey,
        command: A::Command,
    ) -> Result<(Outcome, A::State), AppError>
    where
        AppError: From<A::Error>,
    {
        let subject = key.subject();
        let (state, last) = match dry_run.state::<A>(&subject) {
            Some(held) => held,
            None => self.load::<A>(key).await?,
        };
        let events = A::decide(&state, command)?;
        let new_state = events.iter().fold(state, A::evolve);
        if !events.is_empty() {
            let meta = Metadata {
                actor: ctx.actor.clone(),
                occurred_at: self.clock.now(),
                correlation_id: ctx.correlation_id.clone(),
                causation_id: None,
            };
            let envelopes = events
                .into_iter()
                .map(|e| Into::<DomainEvent>::into(e).into_envelope(Ulid::new(), key, &meta))
                .collect();
            dry_run.record::<A>(subject, new_state.clone(), last, envelopes);
        }
        Ok((
            Outcome {
                position: last,
                id: key.aggregate.id.clone(),
                replayed: false,
            },
            new_state,
        ))
    }

    pub(crate) async fn load<A: Aggregate>(
        &self,
        key: &StreamKey,
    ) -> Result<(A::State, Position), AppError> {
        let records = self
            .log
            .read_stream(key)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        let mut state = A::State::default();
        let mut last = 0;
        for record in &records {
            let event = DomainEvent::decode(&record.envelope)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            if let Some(event) = A::from_domain(event) {
                state = A::evolve(state, &event);
            }
            last = record.position;
        }
        self.cache.put::<A>(key.subject(), state.clone(), last);
        Ok((state, last))
    }

    /// Runs one command against one aggregate: load its state (cached, or folded from its
    /// events), decide, append with the expected sequence, retry on a conflict. `step` names the
    /// step of a multi-step command so each step has its own idempotency key.
    pub(crate) async fn execute<A: Aggregate>(
        &self,
        ctx: &CommandContext,
        key: &StreamKey,
        step: &str,
        command: A::Command,
    ) -> Result<Outcome, AppError>
    where
        AppError: From<A::Error>,
    {
        self.execute_to_state::<A>(ctx, key, step, command)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Core::execute`] that also returns the aggregate's state after the command, for callers
    /// whose answer depends on what was decided (a refresh that turned out to be a reuse).
    pub(crate) async fn execute_to_state<A: Aggregate>(
        &self,
        ctx: &CommandContext,
        key: &StreamKey,
        step: &str,
        command: A::Command,
    ) -> Result<(Outcome, A::State), AppError>
    where
        AppError: From<A::Error>,
    {
        if let Some(dry_run) = &ctx.dry_run {
            return self.decide_only::<A>(ctx, dry_run, key, command).await;
        }
        let subject = key.subject();
        let idempotency = ctx.step_key(step);
        // An aggregate never seen is assumed empty: a creating command then appends with
        // `NoEvents`, and if the aggregate did exist the append fails and we reload. That makes
        // creations cost one round trip instead of two.
        let (mut state, mut last, mut source) = match self.cache.get::<A>(&subject) {
            Some((state, last)) => (state, last, Source::Cached),
            None => (A::State::default(), 0, Source::Cached),
        };
        for _ in 0..MAX_ATTEMPTS {
            let events = match A::decide(&state, command.clone()) {
                Ok(events) => events,
                Err(_) if source == Source::Cached => {
                    (state, last) = self.load::<A>(key).await?;
                    source = Source::Log;
                    continue;
                }
                Err(error) => {
                    // A retried command whose first attempt succeeded now fails its rules
                    // ("already suspended"): answer it with the first result instead.
                    if let Some(outcome) = self.replayed(idempotency.as_deref()).await? {
                        return Ok((outcome, state));
                    }
                    return Err(error.into());
                }
            };
            // Nothing to do, by a state that may be stale (or assumed empty): make sure on the
            // log's state before answering, as for a refusal.
            if events.is_empty() && source == Source::Cached {
                (state, last) = self.load::<A>(key).await?;
                source = Source::Log;
                continue;
            }
            if events.is_empty() {
                return Ok((
                    Outcome {
                        position: last,
                        id: key.aggregate.id.clone(),
                        replayed: false,
                    },
                    state,
                ));
            }
            let meta = Metadata {
                actor: ctx.actor.clone(),
                occurred_at: self.clock.now(),
                correlation_id: ctx.correlation_id.clone(),
                causation_id: None,
            };
            let new_state = events.iter().fold(state.clone(), A::evolve);
            let envelopes: Vec<EventEnvelope> = events
                .into_iter()
                .map(|e| Into::<DomainEvent>::into(e).into_envelope(Ulid::new(), key, &meta))
                .collect();
            match self
                .log
                .append(envelopes, Expected::from_last(last), idempotency.as_deref())
                .await
            {
                Ok(appended) if appended.duplicate => {
                    self.cache.forget(&subject);
                    let (state, _) = self.load::<A>(key).await?;
                    return Ok((
                        Outcome {
                            position: appended.last,
                            id: key.aggregate.id.clone(),
                            replayed: true,
                        },
                        state,
                    ));
                }
                Ok(appended) => {
                    self.cache
                        .put::<A>(subject, new_state.clone(), appended.last);
                    return Ok((
                        Outcome {
                            position: appended.last,
                            id: key.aggregate.id.clone(),
                            replayed: false,
                        },
                        new_state,
                    ));
                }
                Err(AppendError::WrongExpectedSequence { .. }) => {
                    (state, last) = self.load::<A>(key).await?;
                    source = Source::Log;
                }
                Err(AppendError::Unavailable(why)) => {
                    self.cache.forget(&subject);
                    return Err(AppError::Unavailable(why));
                }
                Err(AppendError::Invalid(why)) => return Err(AppError::Internal(why)),
            }
        }
        Err(AppError::Conflict)
    }

    /// The first result of a command retried with the same idempotency key, if the directory
    /// has recorded it. Waits for the read models to reach the end of the log first, so a
    /// result written a moment ago by another replica is found.
    pub(crate) async fn replayed(
        &self,
        idempotency: Option<&str>,
    ) -> Result<Option<Outcome>, AppError> {
        let Some(key) = idempotency else {
            return Ok(None);
        };
        self.catch_up().await?;
        let record = self
            .directory()
            .idempotency(key)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(record.map(|r| Outcome {
            position: r.position,
            id: r.aggregate.id,
            replayed: true,
        }))
    }
}
