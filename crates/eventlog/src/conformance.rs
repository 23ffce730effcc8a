//! The conformance suite every [`EventLog`](crate::EventLog) backend must pass.
//!
//! Each check is a plain async function over a [`Backend`]; the root integration tests
//! (`tests/conformance.rs`) instantiate every check for the embedded log and for JetStream
//! against a real nats-server, through the `conformance_suite!` macro there. A check added here
//! must also be listed in that macro.
//!
//! Every check gets a backend of its own. Checks still write to aggregates with fresh ids and
//! count positions from the log's last position when they start, so a backend that was used
//! before (a reused server) only adds foreign events *before* the check; position accounting
//! (contiguity, `last_position`) does assume nobody else writes while a check runs.
//!
//! The envelopes are real domain events (tenant and user aggregates), so the suite also proves
//! that envelopes come back from the log exactly as they went in. No check asserts on timing:
//! waits are bounded by [`PATIENCE`] only so that a broken backend fails instead of hanging.

use std::time::Duration;

use futures::StreamExt;
use idstream_domain::events::{TenantCreated, TenantRenamed, UserRegistered};
use idstream_domain::{
    Actor, AggregateType, DomainEvent, EventEnvelope, Metadata, StreamKey, TenantId,
};
use time::macros::datetime;
use tokio::sync::Barrier;
use tokio::time::timeout;
use ulid::Ulid;

use crate::{
    AppendError, Appended, EventStream, Expected, Position, RawEvent, RecordedEvent, SharedLog,
};

/// Re-exported so that implementations of [`Backend`] outside this crate (the integration tests)
/// need no dependency of their own on `async-trait`: `#[idstream_eventlog::conformance::async_trait]`.
pub use async_trait::async_trait;

/// How the suite gets at a backend.
#[async_trait::async_trait]
pub trait Backend: Send {
    /// Opens the log, creating it empty the first time.
    async fn open(&mut self) -> SharedLog;
    /// Stops the underlying store (the nats-server process, or the embedded log's files are
    /// closed) and starts it again with the same data, then opens the log anew. The caller has
    /// dropped every handle it had.
    async fn restart(&mut self) -> SharedLog;
}

/// The longest a check waits for something that must happen (a live event, its tasks finishing).
/// It is a guard against hanging, not a performance bound: it is far above any sane latency.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A tenant aggregate that no other check has touched: `t<ulid>`, a valid tenant slug.
pub fn fresh_tenant() -> StreamKey {
    let id: TenantId = format!("t{}", Ulid::new().to_string().to_lowercase())
        .parse()
        .expect("a lower-case ULID is a tenant slug");
    StreamKey::new(Some(id.clone()), AggregateType::Tenant, id.as_str())
}

/// A global user aggregate (no tenant; subject token `_`) that no other check has touched.
pub fn fresh_user() -> StreamKey {
    StreamKey::new(None, AggregateType::User, Ulid::new().to_string())
}

fn metadata() -> Metadata {
    Metadata {
        actor: Actor::system("conformance"),
        // Nanoseconds on purpose: the timestamp must survive the log's storage exactly.
        occurred_at: datetime!(2026-03-01 12:34:56.123456789 UTC),
        correlation_id: Ulid::new().to_string(),
        causation_id: Some(Ulid::new().to_string()),
    }
}

/// `TenantCreated` for a tenant stream from [`fresh_tenant`].
pub fn created(stream: &StreamKey, name: &str) -> EventEnvelope {
    DomainEvent::TenantCreated(TenantCreated {
        name: name.to_owned(),
    })
    .into_envelope(Ulid::new(), stream, &metadata())
}

/// `TenantRenamed` for a tenant stream from [`fresh_tenant`].
pub fn renamed(stream: &StreamKey, name: &str) -> EventEnvelope {
    DomainEvent::TenantRenamed(TenantRenamed {
        name: name.to_owned(),
    })
    .into_envelope(Ulid::new(), stream, &metadata())
}

/// `UserRegistered` for a user stream from [`fresh_user`].
pub fn registered(stream: &StreamKey, email: &str) -> EventEnvelope {
    let tenant: TenantId = "conformance".parse().expect("a valid slug");
    DomainEvent::UserRegistered(UserRegistered {
        email: email.to_owned(),
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        tenant,
    })
    .into_envelope(Ulid::new(), stream, &metadata())
}

/// The `name` of a tenant event, which the checks use as a payload they can count with.
fn name_of(event: &RecordedEvent) -> &str {
    event.envelope.data["name"]
        .as_str()
        .expect("tenant events carry a name")
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn expect_ok(result: Result<Appended, AppendError>) -> Appended {
    match result {
        Ok(appended) => appended,
        Err(error) => panic!("the append should have succeeded: {error}"),
    }
}

async fn append(log: &SharedLog, events: Vec<EventEnvelope>, expected: Expected) -> Appended {
    expect_ok(log.append(events, expected, None).await)
}

async fn append_keyed(
    log: &SharedLog,
    events: Vec<EventEnvelope>,
    expected: Expected,
    key: &str,
) -> Appended {
    expect_ok(log.append(events, expected, Some(key)).await)
}

async fn last_position(log: &SharedLog) -> Position {
    log.last_position().await.expect("last_position")
}

async fn read_stream(log: &SharedLog, stream: &StreamKey) -> Vec<RecordedEvent> {
    log.read_stream(stream).await.expect("read_stream")
}

/// The names carried by `events`, in order.
fn names(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(name_of).collect()
}

/// The names carried by one aggregate's events, in order.
async fn stream_names(log: &SharedLog, stream: &StreamKey) -> Vec<String> {
    names(&read_stream(log, stream).await)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Everything after `after`, paged through `read_after` in small pages so paging is exercised.
async fn read_all_after(log: &SharedLog, after: Position) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut cursor = after;
    loop {
        let page = log.read_after(cursor, 7).await.expect("read_after");
        assert!(
            page.len() <= 7,
            "read_after returned {} events for max 7",
            page.len()
        );
        let Some(last) = page.last() else { return all };
        cursor = last.position;
        all.extend(page);
    }
}

#[track_caller]
fn assert_contiguous(events: &[RecordedEvent], after: Position) {
    let positions: Vec<Position> = events.iter().map(|e| e.position).collect();
    let wanted: Vec<Position> = (after + 1..=after + events.len() as u64).collect();
    assert_eq!(
        positions, wanted,
        "positions must be contiguous after {after}, without gaps or duplicates"
    );
}

#[track_caller]
fn assert_wrong_sequence(
    result: Result<Appended, AppendError>,
    expected: Expected,
    actual: Position,
) {
    match result {
        Err(AppendError::WrongExpectedSequence {
            expected: e,
            actual: a,
        }) => {
            assert_eq!(e, expected, "the error names the expectation that failed");
            assert_eq!(
                a,
                Some(actual),
                "the error names the aggregate's real last position"
            );
        }
        other => panic!(
            "expected WrongExpectedSequence (expected {expected:?}, actual {actual}), got {other:?}"
        ),
    }
}

#[track_caller]
fn assert_invalid(result: Result<Appended, AppendError>) {
    assert!(
        matches!(result, Err(AppendError::Invalid(_))),
        "expected AppendError::Invalid, got {result:?}"
    );
}

/// The next item of a subscription, which must arrive (bounded by [`PATIENCE`]) and be an event.
async fn next_event(stream: &mut EventStream) -> RecordedEvent {
    match timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the subscription failed: {error}"),
        Ok(None) => panic!("the subscription ended"),
        Err(_) => panic!("no event arrived on the subscription within {PATIENCE:?}"),
    }
}

async fn subscribe(log: &SharedLog, after: Position) -> EventStream {
    log.subscribe(after).await.expect("subscribe")
}

/// Waits for spawned tasks, bounded by [`PATIENCE`], and returns their outputs in spawn order.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let joined = timeout(PATIENCE, futures::future::join_all(tasks))
        .await
        .expect("the tasks did not finish");
    joined
        .into_iter()
        .map(|r| r.expect("a task panicked"))
        .collect()
}

/// One optimistic increment: load the aggregate, decide the next event from what was loaded,
/// append it expecting the loaded last position, and retry from the load on a conflict.
/// Returns how many conflicts it met.
async fn increment(log: &SharedLog, stream: &StreamKey) -> u32 {
    let mut conflicts = 0;
    loop {
        let history = read_stream(log, stream).await;
        let last = history.last().map_or(0, |e| e.position);
        let n = history.len();
        let event = if n == 0 {
            created(stream, "0")
        } else {
            renamed(stream, &n.to_string())
        };
        match log
            .append(vec![event], Expected::from_last(last), None)
            .await
        {
            Ok(_) => return conflicts,
            Err(AppendError::WrongExpectedSequence { .. }) => {
                conflicts += 1;
                // Every conflict means another writer won, and there are only so many wins.
                assert!(conflicts < 10_000, "an increment kept conflicting");
            }
            Err(error) => panic!("append failed: {error}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Positions and reads
// ---------------------------------------------------------------------------------------------

pub async fn appends_get_contiguous_positions_and_read_after_pages_through_them_in_order(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let before = last_position(&log).await;
    let stream = fresh_tenant();

    let mut sent = Vec::new();
    let mut acks = Vec::new();
    let mut last = 0;
    for i in 0..20 {
        let event = if i == 0 {
            created(&stream, "0")
        } else {
            renamed(&stream, &i.to_string())
        };
        let ack = append(&log, vec![event.clone()], Expected::from_last(last)).await;
        assert!(!ack.duplicate);
        assert_eq!(ack.first, ack.last, "one event takes one position");
        assert_eq!(ack.first, before + 1 + i, "positions are contiguous");
        assert_eq!(
            last_position(&log).await,
            ack.last,
            "last_position follows the last append"
        );
        last = ack.last;
        sent.push(event);
        acks.push(ack.first);
    }

    let all = read_all_after(&log, before).await;
    assert_contiguous(&all, before);
    assert_eq!(
        all.iter().map(|e| e.envelope.clone()).collect::<Vec<_>>(),
        sent,
        "envelopes come back unchanged"
    );
    assert!(all.iter().all(|e| e.msg_id.is_none()));

    // A page starting in the middle, a page cut by `max`, and the end of the log.
    let middle = log.read_after(before + 10, 5).await.expect("read_after");
    assert_eq!(
        middle.iter().map(|e| e.position).collect::<Vec<_>>(),
        acks[10..15].to_vec()
    );
    assert!(
        log.read_after(before + 10, 0)
            .await
            .expect("read_after")
            .is_empty(),
        "max 0 reads nothing"
    );
    assert!(
        log.read_after(last, 10)
            .await
            .expect("read_after")
            .is_empty(),
        "nothing after the last event"
    );
    assert!(
        log.read_after(last + 1000, 10)
            .await
            .expect("read_after")
            .is_empty(),
        "nothing past the end"
    );
}

/// Everything after `after` through `read_raw_after`, in pages of 3.
async fn read_all_raw_after(log: &SharedLog, after: Position) -> Vec<RawEvent> {
    let mut all = Vec::new();
    let mut cursor = after;
    loop {
        let page = log.read_raw_after(cursor, 3).await.expect("read_raw_after");
        assert!(
            page.len() <= 3,
            "read_raw_after returned {} events for max 3",
            page.len()
        );
        let Some(last) = page.last() else { return all };
        cursor = last.position;
        all.extend(page);
    }
}

pub async fn raw_reads_return_every_event_as_the_bytes_it_was_appended_as(b: &mut dyn Backend) {
    let log = b.open().await;
    let before = last_position(&log).await;
    let (tenant, user) = (fresh_tenant(), fresh_user());
    let mut sent = vec![created(&tenant, "0")];
    append(&log, sent.clone(), Expected::NoEvents).await;
    let user_events = vec![
        registered(&user, "raw@example.com"),
        registered(&user, "raw2@example.com"),
    ];
    append_keyed(&log, user_events.clone(), Expected::NoEvents, "raw-key").await;
    sent.extend(user_events);
    for i in 1..6 {
        let event = renamed(&tenant, &format!("name {i}"));
        append(&log, vec![event.clone()], Expected::Any).await;
        sent.push(event);
    }
    let last = last_position(&log).await;

    let check = |raw: &[RawEvent]| {
        let positions: Vec<Position> = raw.iter().map(|e| e.position).collect();
        let wanted: Vec<Position> = (before + 1..=last).collect();
        assert_eq!(
            positions, wanted,
            "raw reads see every position once, in order"
        );
        for (raw, envelope) in raw.iter().zip(&sent) {
            assert_eq!(
                raw.bytes.as_ref(),
                serde_json::to_vec(envelope).expect("serialise").as_slice(),
                "the stored bytes at {} are the envelope's JSON as appended",
                raw.position
            );
            assert_eq!(raw.subject, envelope.subject(), "the stored subject");
        }
    };
    let raw = read_all_raw_after(&log, before).await;
    check(&raw);
    let parsed = read_all_after(&log, before).await;
    for (raw, event) in raw.iter().zip(&parsed) {
        let envelope: EventEnvelope = serde_json::from_slice(&raw.bytes).expect("an envelope");
        assert_eq!((raw.position, &envelope), (event.position, &event.envelope));
    }

    let middle = log
        .read_raw_after(before + 2, 2)
        .await
        .expect("read_raw_after");
    assert_eq!(
        middle.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![before + 3, before + 4]
    );
    for (after, max) in [(before, 0), (last, 10), (last + 1000, 10)] {
        assert!(
            log.read_raw_after(after, max)
                .await
                .expect("read_raw_after")
                .is_empty(),
            "nothing to read after {after} with max {max}"
        );
    }

    // The bytes are what is stored, so they survive a restart unchanged.
    drop(log);
    let log = b.restart().await;
    check(&read_all_raw_after(&log, before).await);
}

pub async fn read_stream_returns_only_that_aggregates_events_in_order(b: &mut dyn Backend) {
    let log = b.open().await;
    let (a, other, user) = (fresh_tenant(), fresh_tenant(), fresh_user());

    // Interleave three aggregates, including a global one (no tenant).
    append(&log, vec![created(&a, "a0")], Expected::NoEvents).await;
    append(&log, vec![created(&other, "b0")], Expected::NoEvents).await;
    append(
        &log,
        vec![registered(&user, "ada@example.com")],
        Expected::NoEvents,
    )
    .await;
    append(
        &log,
        vec![renamed(&a, "a1"), renamed(&a, "a2")],
        Expected::Any,
    )
    .await;
    append(&log, vec![renamed(&other, "b1")], Expected::Any).await;
    append(&log, vec![renamed(&a, "a3")], Expected::Any).await;

    let of_a = read_stream(&log, &a).await;
    assert_eq!(names(&of_a), ["a0", "a1", "a2", "a3"]);
    assert!(
        of_a.windows(2).all(|w| w[0].position < w[1].position),
        "in position order"
    );
    assert!(of_a.iter().all(|e| e.envelope.stream_key() == a));

    let of_other = read_stream(&log, &other).await;
    assert_eq!(names(&of_other), ["b0", "b1"]);

    let of_user = read_stream(&log, &user).await;
    assert_eq!(of_user.len(), 1);
    assert_eq!(of_user[0].envelope.data["email"], "ada@example.com");

    // What read_stream returns is exactly what the global log holds at those positions.
    let everything = read_all_after(&log, 0).await;
    for event in of_a.iter().chain(&of_other).chain(&of_user) {
        assert_eq!(&everything[(event.position - 1) as usize], event);
    }

    assert!(
        read_stream(&log, &fresh_tenant()).await.is_empty(),
        "an aggregate without events reads empty"
    );
}

// ---------------------------------------------------------------------------------------------
// Optimistic concurrency
// ---------------------------------------------------------------------------------------------

pub async fn no_events_succeeds_on_a_fresh_aggregate_and_fails_once_it_has_events(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let first = append(&log, vec![created(&stream, "x")], Expected::NoEvents).await;

    let result = log
        .append(vec![created(&stream, "x again")], Expected::NoEvents, None)
        .await;
    assert_wrong_sequence(result, Expected::NoEvents, first.last);
    assert_eq!(
        last_position(&log).await,
        first.last,
        "a rejected append stores nothing"
    );
    assert_eq!(read_stream(&log, &stream).await.len(), 1);
}

pub async fn a_wrong_expected_position_is_rejected_with_the_real_last_position(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let one = append(&log, vec![created(&stream, "0")], Expected::NoEvents).await;
    let two = append(&log, vec![renamed(&stream, "1")], Expected::At(one.last)).await;

    // Stale, in the future, and on an aggregate that has no events at all.
    let stale = log
        .append(
            vec![renamed(&stream, "stale")],
            Expected::At(one.last),
            None,
        )
        .await;
    assert_wrong_sequence(stale, Expected::At(one.last), two.last);
    let future = log
        .append(
            vec![renamed(&stream, "future")],
            Expected::At(two.last + 100),
            None,
        )
        .await;
    assert_wrong_sequence(future, Expected::At(two.last + 100), two.last);
    let empty = fresh_tenant();
    let on_empty = log
        .append(vec![created(&empty, "ghost")], Expected::At(two.last), None)
        .await;
    assert_wrong_sequence(on_empty, Expected::At(two.last), 0);

    assert_eq!(
        last_position(&log).await,
        two.last,
        "rejected appends store nothing"
    );
    assert_eq!(stream_names(&log, &stream).await, ["0", "1"]);
    assert!(read_stream(&log, &empty).await.is_empty());
}

pub async fn the_right_expected_position_and_expected_any_are_accepted(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let one = append(&log, vec![created(&stream, "0")], Expected::NoEvents).await;
    let two = append(&log, vec![renamed(&stream, "1")], Expected::At(one.last)).await;
    assert!(two.first > one.last);
    let three = append(&log, vec![renamed(&stream, "2")], Expected::Any).await;
    let any_on_fresh = append(&log, vec![created(&fresh_tenant(), "fresh")], Expected::Any).await;
    assert!(any_on_fresh.first > three.last);

    let history = read_stream(&log, &stream).await;
    assert_eq!(
        history.iter().map(|e| e.position).collect::<Vec<_>>(),
        [one.last, two.last, three.last]
    );
}

pub async fn a_multi_event_append_lands_in_order_on_consecutive_positions(b: &mut dyn Backend) {
    let log = b.open().await;
    let before = last_position(&log).await;
    let stream = fresh_tenant();
    let events = vec![
        created(&stream, "0"),
        renamed(&stream, "1"),
        renamed(&stream, "2"),
    ];
    let ack = append(&log, events.clone(), Expected::NoEvents).await;
    assert_eq!((ack.first, ack.last), (before + 1, before + 3));

    let more = vec![renamed(&stream, "3"), renamed(&stream, "4")];
    let ack2 = append(&log, more.clone(), Expected::At(ack.last)).await;
    assert_eq!((ack2.first, ack2.last), (ack.last + 1, ack.last + 2));

    let history = read_stream(&log, &stream).await;
    assert_eq!(
        history.iter().map(|e| e.position).collect::<Vec<_>>(),
        (before + 1..=before + 5).collect::<Vec<_>>()
    );
    assert_eq!(
        history.into_iter().map(|e| e.envelope).collect::<Vec<_>>(),
        [events, more].concat()
    );
}

pub async fn concurrent_writers_on_one_aggregate_lose_no_update(b: &mut dyn Backend) {
    const WRITERS: usize = 8;
    const INCREMENTS: usize = 25;
    let log = b.open().await;
    let stream = fresh_tenant();

    let start = std::sync::Arc::new(Barrier::new(WRITERS));
    let tasks = (0..WRITERS)
        .map(|_| {
            let (log, stream, start) = (log.clone(), stream.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    conflicts += increment(&log, &stream).await;
                }
                conflicts
            })
        })
        .collect();
    join_all(tasks).await;

    // Each event's name is the count its writer loaded: 0, 1, 2, … only if no writer ever
    // appended on top of a state it had not seen.
    let history = read_stream(&log, &stream).await;
    assert_eq!(
        history.len(),
        WRITERS * INCREMENTS,
        "exactly one event per increment"
    );
    for (i, event) in history.iter().enumerate() {
        assert_eq!(
            name_of(event),
            i.to_string(),
            "event {i} was decided on a stale state"
        );
    }
}

pub async fn of_two_writers_with_the_same_expectation_exactly_one_wins(b: &mut dyn Backend) {
    let log = b.open().await;
    for round in 0..10 {
        let stream = fresh_tenant();
        // Odd rounds race on a fresh aggregate (NoEvents), even rounds on an existing one.
        let expected = if round % 2 == 1 {
            Expected::NoEvents
        } else {
            Expected::At(
                append(&log, vec![created(&stream, "base")], Expected::NoEvents)
                    .await
                    .last,
            )
        };
        let start = std::sync::Arc::new(Barrier::new(2));
        let tasks = (0..2)
            .map(|i| {
                let (log, stream, start) = (log.clone(), stream.clone(), start.clone());
                tokio::spawn(async move {
                    let event = if expected == Expected::NoEvents {
                        created(&stream, &format!("writer {i}"))
                    } else {
                        renamed(&stream, &format!("writer {i}"))
                    };
                    start.wait().await;
                    log.append(vec![event], expected, None).await
                })
            })
            .collect();
        let results = join_all(tasks).await;

        let winners: Vec<&Appended> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one writer wins, got {results:?}"
        );
        let winner = *winners[0];
        let loser = results.into_iter().find(Result::is_err).expect("one loser");
        assert_wrong_sequence(loser, expected, winner.last);
        let history = read_stream(&log, &stream).await;
        assert_eq!(history.last().map(|e| e.position), Some(winner.last));
        assert_eq!(
            history.len(),
            if expected == Expected::NoEvents { 1 } else { 2 }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

pub async fn a_repeated_idempotency_key_returns_the_original_positions_and_appends_nothing(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let key = Ulid::new().to_string();
    let first = append_keyed(
        &log,
        vec![created(&stream, "once")],
        Expected::NoEvents,
        &key,
    )
    .await;
    assert!(!first.duplicate);

    // A retry re-decides, so its envelopes carry new event ids; the key alone identifies it.
    let retry = append_keyed(
        &log,
        vec![created(&stream, "once")],
        Expected::NoEvents,
        &key,
    )
    .await;
    assert_eq!(
        retry,
        Appended {
            first: first.first,
            last: first.last,
            duplicate: true
        }
    );
    assert_eq!(
        last_position(&log).await,
        first.last,
        "a duplicate appends nothing"
    );

    let history = read_stream(&log, &stream).await;
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].msg_id.as_deref(),
        Some(format!("{key}:0").as_str())
    );
}

pub async fn a_repeated_idempotency_key_is_a_duplicate_whatever_the_expectation(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let key = Ulid::new().to_string();
    let original = append_keyed(&log, vec![created(&stream, "0")], Expected::NoEvents, &key).await;
    // Someone else moves the aggregate on, so the retry's expectation is now stale.
    let moved = append(
        &log,
        vec![renamed(&stream, "1")],
        Expected::At(original.last),
    )
    .await;

    for expected in [
        Expected::NoEvents,
        Expected::At(original.last),
        Expected::At(moved.last + 50),
        Expected::Any,
    ] {
        let retry = append_keyed(&log, vec![created(&stream, "0")], expected, &key).await;
        assert_eq!(
            retry,
            Appended {
                first: original.first,
                last: original.last,
                duplicate: true
            },
            "{expected:?}"
        );
    }
    assert_eq!(last_position(&log).await, moved.last);
    assert_eq!(stream_names(&log, &stream).await, ["0", "1"]);
}

pub async fn different_idempotency_keys_both_append(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let (k1, k2) = (Ulid::new().to_string(), Ulid::new().to_string());
    let one = append_keyed(&log, vec![created(&stream, "0")], Expected::NoEvents, &k1).await;
    let two = append_keyed(
        &log,
        vec![renamed(&stream, "1")],
        Expected::At(one.last),
        &k2,
    )
    .await;
    assert!(!one.duplicate && !two.duplicate);
    assert!(two.first > one.last);

    let history = read_stream(&log, &stream).await;
    let ids: Vec<Option<String>> = history.into_iter().map(|e| e.msg_id).collect();
    assert_eq!(ids, [Some(format!("{k1}:0")), Some(format!("{k2}:0"))]);
}

pub async fn a_multi_event_append_with_an_idempotency_key_is_deduplicated_as_a_whole(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let key = Ulid::new().to_string();
    let events = || {
        vec![
            created(&stream, "0"),
            renamed(&stream, "1"),
            renamed(&stream, "2"),
        ]
    };
    let first = append_keyed(&log, events(), Expected::NoEvents, &key).await;
    assert_eq!(first.last - first.first, 2);

    let retry = append_keyed(&log, events(), Expected::NoEvents, &key).await;
    assert_eq!(
        retry,
        Appended {
            first: first.first,
            last: first.last,
            duplicate: true
        }
    );

    let history = read_stream(&log, &stream).await;
    let ids: Vec<Option<String>> = history.into_iter().map(|e| e.msg_id).collect();
    assert_eq!(
        ids,
        (0..3)
            .map(|i| Some(format!("{key}:{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(last_position(&log).await, first.last);
}

pub async fn concurrent_retries_with_one_idempotency_key_append_once(b: &mut dyn Backend) {
    const RETRIES: usize = 8;
    let log = b.open().await;
    let stream = fresh_tenant();
    let key = Ulid::new().to_string();
    let start = std::sync::Arc::new(Barrier::new(RETRIES));
    let tasks = (0..RETRIES)
        .map(|_| {
            let (log, stream, start, key) =
                (log.clone(), stream.clone(), start.clone(), key.clone());
            tokio::spawn(async move {
                let event = created(&stream, "once");
                start.wait().await;
                log.append(vec![event], Expected::NoEvents, Some(&key))
                    .await
            })
        })
        .collect();
    let results: Vec<Appended> = join_all(tasks).await.into_iter().map(expect_ok).collect();

    assert_eq!(
        results.iter().filter(|a| !a.duplicate).count(),
        1,
        "exactly one append is original: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|a| (a.first, a.last) == (results[0].first, results[0].last))
    );
    assert_eq!(read_stream(&log, &stream).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

pub async fn subscribing_from_zero_delivers_every_event_in_order(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    append(
        &log,
        vec![created(&stream, "0"), renamed(&stream, "1")],
        Expected::NoEvents,
    )
    .await;
    append(
        &log,
        vec![registered(&fresh_user(), "grace@example.com")],
        Expected::NoEvents,
    )
    .await;
    append(&log, vec![renamed(&stream, "2")], Expected::Any).await;
    let last = last_position(&log).await;
    let stored = read_all_after(&log, 0).await;

    let mut subscription = subscribe(&log, 0).await;
    let mut received = Vec::new();
    for _ in 0..last {
        received.push(next_event(&mut subscription).await);
    }
    assert_eq!(received, stored, "the subscription replays the log exactly");

    // The next item must be a new append: nothing was duplicated or left over.
    let ack = append(&log, vec![renamed(&stream, "3")], Expected::Any).await;
    let next = next_event(&mut subscription).await;
    assert_eq!(next.position, ack.last);
    assert_eq!(name_of(&next), "3");
}

pub async fn subscribing_from_the_middle_starts_right_after_that_position(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    append(&log, vec![created(&stream, "0")], Expected::NoEvents).await;
    for i in 1..6 {
        append(&log, vec![renamed(&stream, &i.to_string())], Expected::Any).await;
    }
    let history = read_stream(&log, &stream).await;
    let middle = history[2].position;
    let last = last_position(&log).await;

    let mut subscription = subscribe(&log, middle).await;
    let mut received = Vec::new();
    for _ in middle..last {
        received.push(next_event(&mut subscription).await);
    }
    assert_contiguous(&received, middle);
    assert_eq!(names(&received), ["3", "4", "5"]);

    // Subscribing at the very end delivers only what comes next.
    let mut at_end = subscribe(&log, last).await;
    let ack = append(&log, vec![renamed(&stream, "6")], Expected::Any).await;
    assert_eq!(next_event(&mut at_end).await.position, ack.last);
    assert_eq!(next_event(&mut subscription).await.position, ack.last);
}

pub async fn a_subscriber_receives_events_appended_after_it_subscribed(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let mut subscription = subscribe(&log, last_position(&log).await).await;

    let one = append(&log, vec![created(&stream, "0")], Expected::NoEvents).await;
    let event = next_event(&mut subscription).await;
    assert_eq!((event.position, name_of(&event)), (one.last, "0"));

    let many = append(
        &log,
        vec![renamed(&stream, "1"), renamed(&stream, "2")],
        Expected::At(one.last),
    )
    .await;
    let (a, b2) = (
        next_event(&mut subscription).await,
        next_event(&mut subscription).await,
    );
    assert_eq!((a.position, name_of(&a)), (many.first, "1"));
    assert_eq!((b2.position, name_of(&b2)), (many.last, "2"));
}

pub async fn a_subscriber_sees_no_gap_or_duplicate_while_appends_race_its_catch_up(
    b: &mut dyn Backend,
) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    let log = b.open().await;
    let before = last_position(&log).await;

    // Some history to catch up on.
    let seed = fresh_tenant();
    append(&log, vec![created(&seed, "0")], Expected::NoEvents).await;
    for i in 1..30 {
        append(&log, vec![renamed(&seed, &i.to_string())], Expected::Any).await;
    }

    // Writers keep appending (single and double events) while the subscriber catches up and
    // switches to the live tail.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut started_tx = Some(started_tx);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        let signal = if w == 0 { started_tx.take() } else { None };
        writers.push(tokio::spawn(async move {
            let stream = fresh_tenant();
            let mut signal = signal;
            let mut written = 0;
            while written < PER_WRITER {
                let events = if written == 0 {
                    vec![created(&stream, "0")]
                } else if written % 3 == 0 && written + 2 <= PER_WRITER {
                    vec![
                        renamed(&stream, &written.to_string()),
                        renamed(&stream, &(written + 1).to_string()),
                    ]
                } else {
                    vec![renamed(&stream, &written.to_string())]
                };
                written += events.len();
                expect_ok(log.append(events, Expected::Any, None).await);
                if written >= 5
                    && let Some(signal) = signal.take()
                {
                    let _ = signal.send(());
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    timeout(PATIENCE, started_rx)
        .await
        .expect("writers started")
        .expect("writer 0 signals");
    let mut subscription = subscribe(&log, before).await;

    let total = 30 + (WRITERS * PER_WRITER) as u64;
    let mut received = Vec::new();
    while received.len() < total as usize {
        received.push(next_event(&mut subscription).await);
    }
    join_all(writers).await;
    assert_contiguous(&received, before);
    assert_eq!(last_position(&log).await, before + total);
    assert_eq!(
        received,
        read_all_after(&log, before).await,
        "the subscription delivers what the log stores"
    );

    // The subscription is still live after the burst.
    let ack = append(&log, vec![renamed(&seed, "after")], Expected::Any).await;
    assert_eq!(next_event(&mut subscription).await.position, ack.last);
}

// ---------------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------------

pub async fn events_survive_a_restart_with_the_same_positions_envelopes_and_log_id(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let user = fresh_user();
    append_keyed(
        &log,
        vec![created(&stream, "0"), renamed(&stream, "1")],
        Expected::NoEvents,
        "restart-key",
    )
    .await;
    append(
        &log,
        vec![registered(&user, "margaret@example.com")],
        Expected::NoEvents,
    )
    .await;
    append(&log, vec![renamed(&stream, "2")], Expected::Any).await;
    let stored = read_all_after(&log, 0).await;
    let log_id = log.log_id().await.expect("log_id");
    let of_stream = read_stream(&log, &stream).await;
    drop(log);

    let log = b.restart().await;
    assert_eq!(
        log.log_id().await.expect("log_id"),
        log_id,
        "the log keeps its identity across restarts"
    );
    assert_eq!(
        read_all_after(&log, 0).await,
        stored,
        "every event, position and msg id survives"
    );
    assert_eq!(read_stream(&log, &stream).await, of_stream);
    assert_eq!(
        last_position(&log).await,
        stored.last().map_or(0, |e| e.position)
    );
}

pub async fn after_a_restart_appends_continue_and_concurrency_and_dedup_still_hold(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let key = Ulid::new().to_string();
    let original = append_keyed(&log, vec![created(&stream, "0")], Expected::NoEvents, &key).await;
    drop(log);

    let log = b.restart().await;
    let mut subscription = subscribe(&log, original.last).await;
    let retry = append_keyed(&log, vec![created(&stream, "0")], Expected::NoEvents, &key).await;
    assert_eq!(
        retry,
        Appended {
            first: original.first,
            last: original.last,
            duplicate: true
        }
    );
    let conflict = log
        .append(vec![created(&stream, "again")], Expected::NoEvents, None)
        .await;
    assert_wrong_sequence(conflict, Expected::NoEvents, original.last);

    let next = append(
        &log,
        vec![renamed(&stream, "1")],
        Expected::At(original.last),
    )
    .await;
    assert_eq!(
        next.first,
        original.last + 1,
        "appends continue at the next position"
    );
    assert_eq!(next_event(&mut subscription).await.position, next.first);
    assert_eq!(stream_names(&log, &stream).await, ["0", "1"]);
}

// ---------------------------------------------------------------------------------------------
// Invalid appends
// ---------------------------------------------------------------------------------------------

pub async fn an_empty_append_is_rejected_and_changes_nothing(b: &mut dyn Backend) {
    let log = b.open().await;
    append(
        &log,
        vec![created(&fresh_tenant(), "x")],
        Expected::NoEvents,
    )
    .await;
    let before = last_position(&log).await;
    let key = Ulid::new().to_string();

    assert_invalid(log.append(Vec::new(), Expected::Any, None).await);
    assert_invalid(log.append(Vec::new(), Expected::NoEvents, Some(&key)).await);
    assert_eq!(last_position(&log).await, before);

    // The rejected append did not consume its idempotency key.
    let stream = fresh_tenant();
    let ack = append_keyed(&log, vec![created(&stream, "0")], Expected::NoEvents, &key).await;
    assert!(!ack.duplicate);
    assert_eq!(ack.first, before + 1);
}

pub async fn an_append_mixing_aggregates_is_rejected_and_changes_nothing(b: &mut dyn Backend) {
    let log = b.open().await;
    let (a, other, user) = (fresh_tenant(), fresh_tenant(), fresh_user());
    let seeded = append(&log, vec![created(&a, "0")], Expected::NoEvents).await;
    let before = last_position(&log).await;

    assert_invalid(
        log.append(
            vec![renamed(&a, "1"), created(&other, "0")],
            Expected::Any,
            None,
        )
        .await,
    );
    assert_invalid(
        log.append(
            vec![created(&other, "0"), registered(&user, "x@example.com")],
            Expected::Any,
            None,
        )
        .await,
    );
    assert_invalid(
        log.append(
            vec![renamed(&a, "1"), renamed(&other, "1")],
            Expected::At(seeded.last),
            None,
        )
        .await,
    );

    assert_eq!(last_position(&log).await, before);
    assert_eq!(read_stream(&log, &a).await.len(), 1);
    assert!(read_stream(&log, &other).await.is_empty());
    assert!(read_stream(&log, &user).await.is_empty());
}

pub async fn an_oversized_event_is_rejected_and_changes_nothing(b: &mut dyn Backend) {
    let log = b.open().await;
    let stream = fresh_tenant();
    let before = last_position(&log).await;
    let mut huge = created(&stream, "huge");
    huge.data = serde_json::json!({ "name": "x".repeat(2 * 1024 * 1024) });

    assert_invalid(log.append(vec![huge], Expected::Any, None).await);
    assert_eq!(last_position(&log).await, before);
    assert!(read_stream(&log, &stream).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Raw imports (copying a log)
// ---------------------------------------------------------------------------------------------

/// `envelope` as another log would have stored it at `position`, with `msg_id`.
fn raw_of(envelope: &EventEnvelope, position: Position, msg_id: Option<&str>) -> RawEvent {
    RawEvent {
        position,
        subject: envelope.subject(),
        bytes: serde_json::to_vec(envelope)
            .expect("serialise an envelope")
            .into(),
        msg_id: msg_id.map(str::to_owned),
    }
}

/// Three events of two aggregates, two of them with msg ids, as raw events from `after + 1`.
fn foreign_events(after: Position) -> (StreamKey, StreamKey, Vec<EventEnvelope>, Vec<RawEvent>) {
    let (tenant, user) = (fresh_tenant(), fresh_user());
    let envelopes = vec![
        created(&tenant, "imported"),
        registered(&user, "imported@example.com"),
        renamed(&tenant, "imported again"),
    ];
    let ids = [Some("import-key:0"), None, Some("other-key:0")];
    let raw = envelopes
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (envelope, id))| raw_of(envelope, after + 1 + i as u64, id))
        .collect();
    (tenant, user, envelopes, raw)
}

pub async fn imported_events_keep_their_positions_bytes_subjects_and_msg_ids(b: &mut dyn Backend) {
    let log = b.open().await;
    let before = last_position(&log).await;
    let (tenant, user, envelopes, raw) = foreign_events(before);
    let imported = log
        .import_raw(raw.clone())
        .await
        .expect("an import that continues the log is stored");
    assert_eq!(
        (imported.first, imported.last, imported.duplicate),
        (before + 1, before + 3, false)
    );
    assert_eq!(last_position(&log).await, before + 3);
    assert_eq!(
        read_all_raw_after(&log, before).await,
        raw,
        "raw reads give back the imported bytes, subjects and msg ids at their positions"
    );
    let parsed = read_all_after(&log, before).await;
    assert_eq!(
        parsed
            .iter()
            .map(|e| (e.position, &e.envelope, e.msg_id.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (before + 1, &envelopes[0], Some("import-key:0")),
            (before + 2, &envelopes[1], None),
            (before + 3, &envelopes[2], Some("other-key:0")),
        ]
    );
    assert_eq!(
        stream_names(&log, &tenant).await,
        vec!["imported", "imported again"]
    );
    assert_eq!(read_stream(&log, &user).await.len(), 1);

    // The imported aggregates go on as if they had been appended here.
    assert_wrong_sequence(
        log.append(
            vec![renamed(&tenant, "stale")],
            Expected::At(before + 1),
            None,
        )
        .await,
        Expected::At(before + 1),
        before + 3,
    );
    let next = append(
        &log,
        vec![renamed(&tenant, "next")],
        Expected::At(before + 3),
    )
    .await;
    assert_eq!(next.first, before + 4);
    // An imported msg id is no idempotency key of this log: the same key appends.
    let keyed = append_keyed(
        &log,
        vec![renamed(&tenant, "keyed")],
        Expected::Any,
        "import-key",
    )
    .await;
    assert_eq!((keyed.first, keyed.duplicate), (before + 5, false));

    // And it is all durable.
    drop(log);
    let log = b.restart().await;
    assert_eq!(read_all_raw_after(&log, before).await[..3], raw[..]);
    assert_eq!(last_position(&log).await, before + 5);
}

pub async fn an_import_that_does_not_continue_the_log_is_refused_and_stores_nothing(
    b: &mut dyn Backend,
) {
    let log = b.open().await;
    let stream = fresh_tenant();
    append(&log, vec![created(&stream, "0")], Expected::NoEvents).await;
    let last = last_position(&log).await;

    let refused_with_actual = |result: Result<Appended, AppendError>, wanted: Position| match result
    {
        Err(AppendError::WrongExpectedSequence { actual, .. }) => {
            assert_eq!(
                actual,
                Some(wanted),
                "the refusal names the log's last position"
            )
        }
        other => panic!("an import off the log's end must be refused, got {other:?}"),
    };
    // A gap after the end.
    let (_, _, _, gap) = foreign_events(last + 1);
    refused_with_actual(log.import_raw(gap).await, last);
    // Over the last event.
    let (_, _, _, overlap) = foreign_events(last - 1);
    refused_with_actual(log.import_raw(overlap).await, last);

    // Malformed imports.
    let (_, _, _, mut holes) = foreign_events(last);
    holes[2].position += 1;
    let (_, _, _, mut bad_subject) = foreign_events(last);
    bad_subject[1].subject = "idstream.events.*.user.x".to_owned();
    let (_, _, _, mut at_zero) = foreign_events(0);
    at_zero.truncate(1);
    at_zero[0].position = 0;
    for invalid in [Vec::new(), holes, bad_subject, at_zero] {
        match log.import_raw(invalid.clone()).await {
            Err(AppendError::Invalid(_)) => {}
            other => panic!("{invalid:?} must be refused as invalid, got {other:?}"),
        }
    }
    assert_eq!(last_position(&log).await, last, "nothing was stored");
    assert!(read_all_raw_after(&log, last).await.is_empty());

    // The right import still goes in after the refusals.
    let (_, _, _, right) = foreign_events(last);
    expect_ok(log.import_raw(right).await);
    assert_eq!(last_position(&log).await, last + 3);
}

pub async fn a_subscriber_receives_imported_events_in_order(b: &mut dyn Backend) {
    let log = b.open().await;
    let before = last_position(&log).await;
    let mut subscription = subscribe(&log, before).await;
    let (_, _, envelopes, raw) = foreign_events(before);
    expect_ok(log.import_raw(raw[..1].to_vec()).await);
    expect_ok(log.import_raw(raw[1..].to_vec()).await);
    for (i, envelope) in envelopes.iter().enumerate() {
        let event = next_event(&mut subscription).await;
        assert_eq!(
            (event.position, &event.envelope),
            (before + 1 + i as u64, envelope)
        );
    }
}
