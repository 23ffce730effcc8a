//! [`FanOutLog`]: one live subscription to a log, shared by many subscribers.
//!
//! Every read model subscribes to the log on its own. Without sharing, each of them makes the
//! backend deliver, and the decorators below decode (and decrypt) every event once more. This
//! decorator serves `subscribe` from ONE feed instead: a task that subscribes to the inner log
//! once, from the log's end when the feed starts, keeps the most recent events in a bounded ring
//! and wakes subscribers as new ones arrive. Everything else goes straight to the inner log.
//!
//! A subscriber that starts behind what the ring covers reads its own inner subscription until
//! it has caught up, then switches to the ring; one that falls so far behind that the ring has
//! dropped its next event (it *lags*) goes back to an inner subscription of its own from its last
//! position, and switches back once it has caught up again. A subscriber's cursor moves only
//! when it hands an event out and it hands out only positions above its cursor, so the switches
//! can neither skip nor repeat an event.
//!
//! If the feed's inner subscription fails or ends, subscribers riding the feed get that error as
//! an item and end, as they would on a failing inner subscription of their own (the caller
//! subscribes again from its last position), and the next `subscribe` starts a new feed.
//! Subscribers on an inner subscription of their own are not affected by the feed.
//!
//! Events in the ring are shared (`Arc`); each subscriber clones the event it hands out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use futures::StreamExt;
use idstream_domain::{EventEnvelope, StreamKey};
use tokio::sync::watch;

use crate::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, Position, RawEvent,
    RecordedEvent, SharedLog,
};

/// The most events a subscriber takes from the ring at once (it holds the ring's lock meanwhile).
const READ_BATCH: usize = 1024;
/// The most events the feed pushes into the ring at once.
const FEED_BATCH: usize = 1024;

/// An [`EventLog`] that serves subscriptions from one shared live feed (see the module docs).
pub struct FanOutLog {
    core: Arc<Core>,
}

/// How the fan-out is being used, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOutStats {
    /// Feeds started so far (each is one inner subscription).
    pub feeds_started: u64,
    /// Subscribers now served from the shared feed.
    pub shared: u64,
    /// Subscribers now reading an inner subscription of their own (catching up, or after lagging).
    pub own: u64,
    /// How often a subscriber fell behind the ring and went back to an inner subscription.
    pub fallbacks: u64,
}

impl FanOutLog {
    /// How many recent events the ring keeps unless told otherwise.
    pub const DEFAULT_CAPACITY: usize = 8192;

    /// Wraps `inner` with a ring of [`FanOutLog::DEFAULT_CAPACITY`] events.
    pub fn new(inner: SharedLog) -> FanOutLog {
        FanOutLog::with_capacity(inner, FanOutLog::DEFAULT_CAPACITY)
    }

    /// Wraps `inner` with a ring of `capacity` events (at least 1).
    pub fn with_capacity(inner: SharedLog, capacity: usize) -> FanOutLog {
        FanOutLog {
            core: Arc::new(Core {
                inner,
                capacity: capacity.max(1),
                current: Mutex::new(None),
                starting: tokio::sync::Mutex::new(()),
                counters: Arc::default(),
            }),
        }
    }

    /// [`FanOutLog::new`], as the shared log the service passes around.
    pub fn wrap(inner: SharedLog) -> SharedLog {
        Arc::new(FanOutLog::new(inner))
    }

    pub fn stats(&self) -> FanOutStats {
        self.core.counters.snapshot()
    }
}

/// What the log handle owns and its subscribers reach through a weak reference, so that dropping
/// the handle stops the feed (and releases the inner log) whatever subscriptions remain.
struct Core {
    inner: SharedLog,
    capacity: usize,
    /// The feed now running, if any.
    current: Mutex<Option<Running>>,
    /// Serialises starting a feed, so concurrent subscribers start one, not several.
    starting: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
}

struct Running {
    feed: Arc<Feed>,
    task: tokio::task::AbortHandle,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.current).take() {
            running.task.abort();
        }
    }
}

impl Core {
    /// The running feed, unless it has ended.
    fn live_feed(&self) -> Option<Arc<Feed>> {
        lock(&self.current)
            .as_ref()
            .filter(|running| !running.feed.ended.load(Ordering::Acquire))
            .map(|running| running.feed.clone())
    }

    /// The running feed, or a new one from the inner log's end.
    async fn feed(&self) -> Result<Arc<Feed>, LogError> {
        if let Some(feed) = self.live_feed() {
            return Ok(feed);
        }
        let _starting = self.starting.lock().await;
        if let Some(feed) = self.live_feed() {
            return Ok(feed);
        }
        let start = self.inner.last_position().await?;
        let stream = self.inner.subscribe(start).await?;
        let feed = Arc::new(Feed::new(start, self.capacity));
        let task = tokio::spawn(run_feed(EndOnDrop(feed.clone()), stream));
        *lock(&self.current) = Some(Running {
            feed: feed.clone(),
            task: task.abort_handle(),
        });
        self.counters.feeds_started.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            backend = self.inner.backend(),
            start,
            "shared event feed started"
        );
        Ok(feed)
    }
}

#[derive(Default)]
struct Counters {
    feeds_started: AtomicU64,
    shared: AtomicU64,
    own: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FanOutStats {
        FanOutStats {
            feeds_started: self.feeds_started.load(Ordering::Relaxed),
            shared: self.shared.load(Ordering::Relaxed),
            own: self.own.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    fn gauge(&self, mode: &Mode) -> Option<&AtomicU64> {
        match mode {
            Mode::Own(_) => Some(&self.own),
            Mode::Shared { .. } => Some(&self.shared),
            Mode::Done => None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent at each step, so a panic while
    // holding the lock (there is no code that could panic) would leave nothing half-done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One shared feed: the ring its task fills and the signal that wakes subscribers.
struct Feed {
    ring: Mutex<Ring>,
    /// Bumped after every batch pushed and when the feed ends. Subscribers mark it seen before
    /// they read the ring, so a push after their read always wakes them.
    signal: watch::Sender<u64>,
    /// Mirrors of the ring's `covered_from` and `ended`, to check without taking the lock.
    covered_from: AtomicU64,
    ended: AtomicBool,
}

struct Ring {
    capacity: usize,
    /// Every event after `covered_from` that the feed has delivered, in position order.
    events: VecDeque<Arc<RecordedEvent>>,
    /// The ring holds every event with a position above this one: the feed's start, or the
    /// position of the last event dropped to make room.
    covered_from: Position,
    /// The position of the newest event (the feed's start before the first one).
    head: Position,
    /// Why the feed stopped, once it has.
    ended: Option<LogError>,
}

/// What a subscriber found in the ring.
enum Read {
    /// Events above its cursor were added to its queue.
    Events,
    /// The ring no longer holds the event after its cursor.
    Lagged,
    /// Nothing above its cursor, and the feed has stopped with this error.
    Ended(LogError),
    /// Nothing above its cursor yet.
    Nothing,
}

impl Feed {
    fn new(start: Position, capacity: usize) -> Feed {
        Feed {
            ring: Mutex::new(Ring {
                capacity,
                events: VecDeque::with_capacity(capacity.min(FEED_BATCH)),
                covered_from: start,
                head: start,
                ended: None,
            }),
            signal: watch::Sender::new(0),
            covered_from: AtomicU64::new(start),
            ended: AtomicBool::new(false),
        }
    }

    /// Whether a subscriber whose last event is at `last` can be served from the ring now.
    fn covers(&self, last: Position) -> bool {
        !self.ended.load(Ordering::Acquire) && self.covered_from.load(Ordering::Acquire) <= last
    }

    fn push(&self, batch: Vec<Arc<RecordedEvent>>) {
        if batch.is_empty() {
            return;
        }
        {
            let mut ring = lock(&self.ring);
            for event in batch {
                // An inner subscription never repeats a position; this is only a safeguard.
                if event.position <= ring.head {
                    continue;
                }
                if ring.events.len() >= ring.capacity
                    && let Some(dropped) = ring.events.pop_front()
                {
                    ring.covered_from = dropped.position;
                }
                ring.head = event.position;
                ring.events.push_back(event);
            }
            self.covered_from
                .store(ring.covered_from, Ordering::Release);
        }
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn end(&self, error: LogError) {
        {
            let mut ring = lock(&self.ring);
            if ring.ended.is_none() {
                ring.ended = Some(error);
            }
            self.ended.store(true, Ordering::Release);
        }
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues up to [`READ_BATCH`] events after `last` onto `out`.
    fn read_after(&self, last: Position, out: &mut VecDeque<Arc<RecordedEvent>>) -> Read {
        let ring = lock(&self.ring);
        if last < ring.covered_from {
            return Read::Lagged;
        }
        let first = ring.events.partition_point(|event| event.position <= last);
        if first < ring.events.len() {
            out.extend(ring.events.range(first..).take(READ_BATCH).cloned());
            return Read::Events;
        }
        match &ring.ended {
            Some(error) => Read::Ended(error.clone()),
            None => Read::Nothing,
        }
    }
}

/// Ends the feed when its task stops, however it stops (also when it is aborted, even before
/// it first ran: it is an argument of the task's future, not a local of its body).
struct EndOnDrop(Arc<Feed>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end(LogError::Unavailable(
            "the shared event feed was stopped".to_owned(),
        ));
    }
}

async fn run_feed(end: EndOnDrop, stream: EventStream) {
    let feed = &end.0;
    let mut chunks = stream.ready_chunks(FEED_BATCH);
    while let Some(items) = chunks.next().await {
        let mut batch = Vec::with_capacity(items.len());
        let mut failure = None;
        for item in items {
            match item {
                Ok(event) => batch.push(Arc::new(event)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        feed.push(batch);
        if let Some(error) = failure {
            tracing::warn!(%error, "the shared event feed failed; its subscribers resubscribe");
            feed.end(error);
            return;
        }
    }
    tracing::warn!("the shared event feed's subscription ended; its subscribers resubscribe");
    feed.end(LogError::Unavailable(
        "the shared event subscription ended".to_owned(),
    ));
}

/// Where a subscriber reads from.
enum Mode {
    /// An inner subscription of its own.
    Own(EventStream),
    /// The shared feed's ring.
    Shared {
        feed: Arc<Feed>,
        signal: watch::Receiver<u64>,
    },
    Done,
}

impl Mode {
    fn shared(feed: Arc<Feed>) -> Mode {
        let signal = feed.signal.subscribe();
        Mode::Shared { feed, signal }
    }
}

struct Subscriber {
    core: Weak<Core>,
    counters: Arc<Counters>,
    /// The position of the last event handed out (or the subscription's start).
    last: Position,
    /// Events taken from the ring, not handed out yet.
    queued: VecDeque<Arc<RecordedEvent>>,
    mode: Mode,
}

impl Subscriber {
    fn new(core: &Arc<Core>, after: Position, mode: Mode) -> Subscriber {
        if let Some(gauge) = core.counters.gauge(&mode) {
            gauge.fetch_add(1, Ordering::Relaxed);
        }
        Subscriber {
            core: Arc::downgrade(core),
            counters: core.counters.clone(),
            last: after,
            queued: VecDeque::new(),
            mode,
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        if let Some(gauge) = self.counters.gauge(&self.mode) {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(gauge) = self.counters.gauge(&mode) {
            gauge.fetch_add(1, Ordering::Relaxed);
        }
        self.mode = mode;
    }

    /// A live feed that holds everything after this subscriber's cursor, if there is one.
    fn feed_to_join(&self) -> Option<Arc<Feed>> {
        let core = self.core.upgrade()?;
        core.live_feed().filter(|feed| feed.covers(self.last))
    }

    /// An inner subscription of its own from the cursor. (It takes what it needs by value: a
    /// `Subscriber` is not `Sync`, so holding `&self` across the await would make the stream not
    /// `Send`.)
    async fn own_subscription(core: Weak<Core>, after: Position) -> Result<EventStream, LogError> {
        let Some(core) = core.upgrade() else {
            return Err(LogError::Unavailable("the event log was closed".to_owned()));
        };
        core.inner.subscribe(after).await
    }

    async fn next_item(&mut self) -> Option<Result<RecordedEvent, LogError>> {
        loop {
            while let Some(event) = self.queued.pop_front() {
                if event.position > self.last {
                    self.last = event.position;
                    return Some(Ok(RecordedEvent::clone(&event)));
                }
            }
            if matches!(self.mode, Mode::Own(_))
                && let Some(feed) = self.feed_to_join()
            {
                self.set_mode(Mode::shared(feed));
                continue;
            }
            match &mut self.mode {
                Mode::Done => return None,
                Mode::Shared { feed, signal } => {
                    signal.borrow_and_update();
                    match feed.read_after(self.last, &mut self.queued) {
                        Read::Events => {}
                        Read::Nothing => {
                            // The sender lives in `feed`, which this holds: `changed` cannot fail.
                            let _ = signal.changed().await;
                        }
                        Read::Ended(error) => {
                            self.set_mode(Mode::Done);
                            return Some(Err(error));
                        }
                        Read::Lagged => {
                            self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                after = self.last,
                                "a subscriber fell behind the shared event feed; reading on its own"
                            );
                            match Subscriber::own_subscription(self.core.clone(), self.last).await {
                                Ok(stream) => self.set_mode(Mode::Own(stream)),
                                Err(error) => {
                                    self.set_mode(Mode::Done);
                                    return Some(Err(error));
                                }
                            }
                        }
                    }
                }
                Mode::Own(stream) => match stream.next().await {
                    Some(Ok(event)) => {
                        if event.position > self.last {
                            self.last = event.position;
                            return Some(Ok(event));
                        }
                    }
                    // Passed on as the inner subscription gives it; it may go on after it.
                    Some(Err(error)) => return Some(Err(error)),
                    None => {
                        self.set_mode(Mode::Done);
                        return None;
                    }
                },
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(gauge) = self.counters.gauge(&self.mode) {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl EventLog for FanOutLog {
    async fn append(
        &self,
        events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError> {
        self.core
            .inner
            .append(events, expected, idempotency_key)
            .await
    }

    async fn import_raw(&self, events: Vec<RawEvent>) -> Result<Appended, AppendError> {
        self.core.inner.import_raw(events).await
    }

    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError> {
        self.core.inner.read_stream(key).await
    }

    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.core.inner.read_after(after, max).await
    }

    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError> {
        self.core.inner.read_raw_after(after, max).await
    }

    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError> {
        let feed = self.core.feed().await?;
        let mode = if feed.covers(after) {
            Mode::shared(feed)
        } else {
            Mode::Own(self.core.inner.subscribe(after).await?)
        };
        let subscriber = Subscriber::new(&self.core, after, mode);
        Ok(
            futures::stream::unfold(subscriber, |mut subscriber| async move {
                let item = subscriber.next_item().await?;
                Some((item, subscriber))
            })
            .boxed(),
        )
    }

    async fn last_position(&self) -> Result<Position, LogError> {
        self.core.inner.last_position().await
    }

    async fn write_check(&self) -> Result<Position, LogError> {
        self.core.inner.write_check().await
    }

    async fn log_id(&self) -> Result<String, LogError> {
        self.core.inner.log_id().await
    }

    fn backend(&self) -> &'static str {
        self.core.inner.backend()
    }
}

#[cfg(test)]
mod tests;
