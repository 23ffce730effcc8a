//! Focused tests of the fan-out over the real embedded log: subscribers at different positions,
//! catching up and switching to the shared feed, lagging behind a tiny ring, and a feed whose
//! inner subscription fails. The behaviour every log shares is checked by running the
//! conformance suite over `FanOutLog` in the root integration tests (`tests/conformance.rs`).

use std::path::Path;
use std::time::Duration;

use idstream_domain::events::TenantCreated;
use idstream_domain::{Actor, AggregateType, DomainEvent, Metadata};
use time::OffsetDateTime;
use tokio::time::timeout;
use ulid::Ulid;

use super::*;
use crate::embedded::{EmbeddedLog, EmbeddedOptions};

/// Guards against hanging only; far above any sane latency.
const PATIENCE: Duration = Duration::from_secs(60);

fn event(n: u64) -> EventEnvelope {
    let tenant: idstream_domain::TenantId = format!("t{n}").parse().unwrap();
    let stream = StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str());
    let meta = Metadata {
        actor: Actor::system("test"),
        occurred_at: OffsetDateTime::UNIX_EPOCH,
        correlation_id: "c".into(),
        causation_id: None,
    };
    DomainEvent::TenantCreated(TenantCreated {
        name: format!("tenant {n}"),
    })
    .into_envelope(Ulid::new(), &stream, &meta)
}

async fn open(dir: &Path) -> SharedLog {
    EmbeddedLog::open(dir, EmbeddedOptions::default())
        .await
        .unwrap()
}

/// Appends events numbered `from..to`, one append each.
async fn append_range(log: &dyn EventLog, from: u64, to: u64) {
    for n in from..to {
        log.append(vec![event(n)], Expected::Any, None)
            .await
            .unwrap();
    }
}

async fn next(subscription: &mut EventStream) -> Result<RecordedEvent, LogError> {
    timeout(PATIENCE, subscription.next())
        .await
        .expect("an item within the patience")
        .expect("the subscription does not end")
}

/// The next `n` events; panics on an error item.
async fn take(subscription: &mut EventStream, n: usize) -> Vec<RecordedEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next(subscription).await.expect("an event, not an error"));
    }
    events
}

fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

async fn stored_after(log: &dyn EventLog, after: Position) -> Vec<RecordedEvent> {
    log.read_after(after, usize::MAX).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_at_different_positions_each_get_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = FanOutLog::new(open(dir.path()).await);
    append_range(&log, 0, 20).await;

    let mut from_start = log.subscribe(0).await.unwrap();
    let mut from_middle = log.subscribe(10).await.unwrap();
    let writer = {
        let inner = log.core.inner.clone();
        tokio::spawn(async move { append_range(&*inner, 20, 60).await })
    };
    let a = take(&mut from_start, 60).await;
    let b = take(&mut from_middle, 50).await;
    writer.await.unwrap();

    assert_eq!(positions(&a), (1..=60).collect::<Vec<_>>());
    assert_eq!(positions(&b), (11..=60).collect::<Vec<_>>());
    assert_eq!(
        a,
        stored_after(&log, 0).await,
        "the events are the stored ones"
    );
    assert_eq!(b, stored_after(&log, 10).await);

    // Both are live: the next append reaches each of them once.
    append_range(&log, 60, 61).await;
    assert_eq!(next(&mut from_start).await.unwrap().position, 61);
    assert_eq!(next(&mut from_middle).await.unwrap().position, 61);
    let stats = log.stats();
    assert_eq!(stats.feeds_started, 1, "one feed serves both");
    assert_eq!((stats.shared, stats.own), (2, 0), "both ride the feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_far_behind_catches_up_on_its_own_then_rides_the_shared_feed() {
    let dir = tempfile::tempdir().unwrap();
    let log = FanOutLog::with_capacity(open(dir.path()).await, 16);
    append_range(&log, 0, 300).await;

    // The feed starts at the log's end (300); this subscriber is far behind what it holds.
    let mut behind = log.subscribe(0).await.unwrap();
    assert_eq!(
        (log.stats().own, log.stats().shared),
        (1, 0),
        "it starts on its own"
    );
    let caught_up = take(&mut behind, 300).await;
    assert_eq!(caught_up, stored_after(&log, 0).await);

    append_range(&log, 300, 340).await;
    let live = take(&mut behind, 40).await;
    assert_eq!(positions(&live), (301..=340).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(
        (stats.own, stats.shared),
        (0, 1),
        "once caught up it rides the feed"
    );
    assert_eq!(stats.feeds_started, 1);
    assert_eq!(stats.fallbacks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_that_lags_behind_the_ring_falls_back_and_gets_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = FanOutLog::with_capacity(open(dir.path()).await, 8);
    append_range(&log, 0, 5).await;

    let mut fast = log.subscribe(5).await.unwrap();
    let mut slow = log.subscribe(5).await.unwrap();
    assert_eq!(log.stats().shared, 2);

    // The slow one is not polled while 100 events go by; the fast one receiving all of them
    // proves the feed has pushed them, so the 8-event ring has dropped the slow one's next event.
    append_range(&log, 5, 105).await;
    let fast_events = take(&mut fast, 100).await;
    assert_eq!(positions(&fast_events), (6..=105).collect::<Vec<_>>());

    let slow_events = take(&mut slow, 100).await;
    assert_eq!(slow_events, fast_events, "every event, once, in order");
    assert!(
        log.stats().fallbacks >= 1,
        "the slow subscriber read on its own"
    );

    // Caught up again, it goes back to the feed.
    append_range(&log, 105, 110).await;
    assert_eq!(
        positions(&take(&mut slow, 5).await),
        [106, 107, 108, 109, 110]
    );
    assert_eq!(
        positions(&take(&mut fast, 5).await),
        [106, 107, 108, 109, 110]
    );
    let stats = log.stats();
    assert_eq!((stats.shared, stats.own), (2, 0));
    assert_eq!(stats.feeds_started, 1);
}

/// A real log whose live subscriptions can be cut, as a broken connection would cut them: each
/// subscription opened before [`Severable::sever`] yields one `Unavailable` error and ends.
struct Severable {
    inner: SharedLog,
    generation: watch::Sender<u64>,
}

impl Severable {
    fn sever(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

#[async_trait::async_trait]
impl EventLog for Severable {
    async fn append(
        &self,
        events: Vec<EventEnvelope>,
        expected: Expected,
        idempotency_key: Option<&str>,
    ) -> Result<Appended, AppendError> {
        self.inner.append(events, expected, idempotency_key).await
    }
    async fn read_stream(&self, key: &StreamKey) -> Result<Vec<RecordedEvent>, LogError> {
        self.inner.read_stream(key).await
    }
    async fn read_after(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.inner.read_after(after, max).await
    }
    async fn read_raw_after(&self, after: Position, max: usize) -> Result<Vec<RawEvent>, LogError> {
        self.inner.read_raw_after(after, max).await
    }
    async fn subscribe(&self, after: Position) -> Result<EventStream, LogError> {
        let mut generation = self.generation.subscribe();
        generation.mark_unchanged();
        let severed = async move {
            let _ = generation.changed().await;
        };
        let cut = futures::stream::once(async {
            Err(LogError::Unavailable("connection severed".to_owned()))
        });
        Ok(self
            .inner
            .subscribe(after)
            .await?
            .take_until(severed)
            .chain(cut)
            .boxed())
    }
    async fn last_position(&self) -> Result<Position, LogError> {
        self.inner.last_position().await
    }
    async fn log_id(&self) -> Result<String, LogError> {
        self.inner.log_id().await
    }
    fn backend(&self) -> &'static str {
        "severable"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_feeds_subscription_fails_subscribers_get_an_error_and_can_subscribe_again() {
    let dir = tempfile::tempdir().unwrap();
    let severable = Arc::new(Severable {
        inner: open(dir.path()).await,
        generation: watch::Sender::new(0),
    });
    let log = FanOutLog::new(severable.clone());
    append_range(&log, 0, 10).await;

    let mut first = log.subscribe(10).await.unwrap();
    let mut second = log.subscribe(10).await.unwrap();
    append_range(&log, 10, 12).await;
    assert_eq!(positions(&take(&mut first, 2).await), [11, 12]);
    assert_eq!(positions(&take(&mut second, 2).await), [11, 12]);

    severable.sever();
    for subscription in [&mut first, &mut second] {
        match next(subscription).await {
            Err(LogError::Unavailable(_)) => {}
            other => panic!("expected the feed's failure, got {other:?}"),
        }
        assert!(
            timeout(PATIENCE, subscription.next())
                .await
                .unwrap()
                .is_none(),
            "a subscription ends after its feed failed"
        );
    }

    // Subscribing again from the last delivered position starts a new feed and misses nothing.
    append_range(&log, 12, 15).await;
    let mut again = log.subscribe(12).await.unwrap();
    append_range(&log, 15, 17).await;
    let events = take(&mut again, 5).await;
    assert_eq!(positions(&events), [13, 14, 15, 16, 17]);
    assert_eq!(events, stored_after(&log, 12).await);
    assert_eq!(
        log.stats().feeds_started,
        2,
        "a new feed replaced the failed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_log_stops_the_feed_and_releases_the_inner_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = FanOutLog::new(open(dir.path()).await);
    append_range(&log, 0, 3).await;
    let mut subscription = log.subscribe(3).await.unwrap();
    drop(log);

    match next(&mut subscription).await {
        Err(LogError::Unavailable(_)) => {}
        other => panic!("expected the stopped feed's error, got {other:?}"),
    }
    // The embedded log's directory lock is free again: nothing kept the inner log open.
    let reopened = open(dir.path()).await;
    assert_eq!(reopened.last_position().await.unwrap(), 3);
}
