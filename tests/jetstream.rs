//! JetStream backend behaviour that the shared conformance suite cannot express: a real
//! nats-server process killed and restarted under a client, streams configured by someone else,
//! and what the server itself answers to retried dedup ids.

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use futures::StreamExt;
use idstream_domain::{Actor, AggregateType, EventEnvelope, StreamKey, TenantId};
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};
use idstream_eventlog::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, Position, RecordedEvent,
};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::support::nats::{NatsServer, connect};

/// Long enough for a client to notice a restarted server and reconnect (its reconnect backoff
/// grows to 4 s) plus an ordered consumer to be recreated.
const RECOVERY: Duration = Duration::from_secs(60);

fn user(id: &str) -> StreamKey {
    StreamKey::new(None, AggregateType::User, id)
}

fn tenant_member(tenant: &str, id: &str) -> StreamKey {
    StreamKey::new(
        Some(tenant.parse::<TenantId>().unwrap()),
        AggregateType::Membership,
        id,
    )
}

fn event(key: &StreamKey, n: u64) -> EventEnvelope {
    EventEnvelope {
        id: Ulid::new(),
        event_type: "TestHappened".to_owned(),
        version: 1,
        tenant: key.tenant.clone(),
        aggregate: key.aggregate.clone(),
        actor: Actor::system("jetstream-tests"),
        occurred_at: OffsetDateTime::UNIX_EPOCH,
        correlation_id: format!("corr-{n}"),
        causation_id: None,
        data: serde_json::json!({ "n": n }),
    }
}

/// Retries an idempotent append until the log accepts it again: the same key makes every retry
/// safe, whether or not an earlier attempt reached the server.
async fn append_when_back(log: &JetStreamLog, events: Vec<EventEnvelope>, key: &str) -> Appended {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match log.append(events.clone(), Expected::Any, Some(key)).await {
            Ok(appended) => return appended,
            Err(AppendError::Unavailable(_)) if Instant::now() < deadline => pause().await,
            Err(e) => panic!("the log did not accept appends again within {RECOVERY:?}: {e}"),
        }
    }
}

/// The pause between two attempts of a wait-for-condition loop.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn next_event(events: &mut EventStream) -> RecordedEvent {
    match tokio::time::timeout(RECOVERY, events.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
        Ok(None) => panic!("the subscription ended"),
        Err(_) => panic!("no event from the subscription within {RECOVERY:?}"),
    }
}

async fn all_events(log: &JetStreamLog) -> Vec<RecordedEvent> {
    log.read_after(0, 100_000)
        .await
        .expect("read the whole log")
}

fn ids(events: &[RecordedEvent]) -> Vec<Ulid> {
    events.iter().map(|e| e.envelope.id).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

#[tokio::test]
async fn appends_fail_fast_while_nats_server_is_down_and_work_again_on_the_same_client_after_it_returns()
 {
    let mut nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let alice = user("alice");
    let before: Vec<EventEnvelope> = (0..3).map(|n| event(&alice, n)).collect();
    log.append(before.clone(), Expected::NoEvents, Some("before"))
        .await
        .unwrap();

    nats.kill();
    // Whether or not the client has noticed yet, the append must come back with Unavailable:
    // at once from the connection-state check, or after the ack timeout if the publish went
    // out on the dead connection. Waiting for the client to notice tests the first path.
    let deadline = Instant::now() + RECOVERY;
    while log.client().connection_state() == async_nats::connection::State::Connected {
        assert!(
            Instant::now() < deadline,
            "the client never noticed that nats-server died"
        );
        pause().await;
    }

    let during = vec![event(&alice, 3)];
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        log.append(during.clone(), Expected::Any, Some("during")),
    )
    .await
    .expect("append must return while nats-server is down, not hang");
    assert!(
        matches!(attempt, Err(AppendError::Unavailable(_))),
        "got {attempt:?}"
    );
    let last = tokio::time::timeout(Duration::from_secs(5), log.last_position())
        .await
        .expect("last_position must return while nats-server is down");
    assert!(
        matches!(last, Err(LogError::Unavailable(_))),
        "got {last:?}"
    );

    nats.start();

    // The append that failed is retried with its key: it lands exactly once even if the first
    // attempt did reach the server.
    append_when_back(&log, during.clone(), "during").await;
    let after = vec![event(&alice, 4)];
    log.append(after.clone(), Expected::Any, Some("after"))
        .await
        .unwrap();

    let stored = all_events(&log).await;
    let expected: Vec<Ulid> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .map(|e| e.id)
        .collect();
    assert_eq!(ids(&stored), expected);
    assert_eq!(positions(&stored), vec![1, 2, 3, 4, 5]);
    assert_eq!(log.last_position().await.unwrap(), 5);
    assert_eq!(ids(&log.read_stream(&alice).await.unwrap()), expected);
}

#[tokio::test]
async fn a_live_subscription_keeps_delivering_across_nats_server_restarts_without_gaps_or_duplicates()
 {
    let mut nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let bob = user("bob");
    let mut appended = Vec::new();
    let first: Vec<EventEnvelope> = (0..5).map(|n| event(&bob, n)).collect();
    log.append(first.clone(), Expected::NoEvents, None)
        .await
        .unwrap();
    appended.extend(first.iter().map(|e| e.id));

    let mut events = log.subscribe(0).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(next_event(&mut events).await);
    }

    // A crash, then a graceful restart: each time events appended afterwards must arrive.
    for (round, disrupt) in [NatsServer::kill as fn(&mut NatsServer), NatsServer::stop]
        .into_iter()
        .enumerate()
    {
        disrupt(&mut nats);
        nats.start();
        for n in 0..5 {
            let e = event(&bob, 100 * (round as u64 + 1) + n);
            append_when_back(&log, vec![e.clone()], &format!("round-{round}-{n}")).await;
            appended.push(e.id);
        }
        for _ in 0..5 {
            received.push(next_event(&mut events).await);
        }
    }

    assert_eq!(ids(&received), appended);
    assert_eq!(positions(&received), (1..=15).collect::<Vec<_>>());
    // Nothing more is pending: a sixteenth event is the next one delivered.
    let last = event(&bob, 999);
    log.append(vec![last.clone()], Expected::At(15), None)
        .await
        .unwrap();
    let next = next_event(&mut events).await;
    assert_eq!((next.position, next.envelope.id), (16, last.id));
}

#[tokio::test]
async fn an_existing_stream_with_other_subjects_or_memory_storage_is_refused_with_a_clear_error() {
    let nats = NatsServer::spawn();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(StreamConfig {
        name: "IDSTREAM".to_owned(),
        subjects: vec!["something.else.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    js.create_stream(StreamConfig {
        name: "IN_MEMORY".to_owned(),
        subjects: vec!["idstream.events.>".to_owned()],
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();

    match JetStreamLog::connect(JetStreamOptions::new(nats.url())).await {
        Err(LogError::Misconfigured(message)) => {
            assert!(
                message.contains("IDSTREAM") && message.contains("idstream.events.>"),
                "unclear error: {message}"
            );
            assert!(
                message.contains("something.else.>"),
                "the error should name the subjects found: {message}"
            );
        }
        other => panic!("a stream with other subjects must be refused, got {other:?}"),
    }
    let options = JetStreamOptions {
        stream: "IN_MEMORY".to_owned(),
        ..JetStreamOptions::new(nats.url())
    };
    match JetStreamLog::connect(options).await {
        Err(LogError::Misconfigured(message)) => {
            assert!(message.contains("file storage"), "unclear error: {message}")
        }
        other => panic!("a memory stream must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_a_server_that_is_not_there_is_unavailable() {
    let mut nats = NatsServer::spawn();
    let url = nats.url();
    nats.kill();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        JetStreamLog::connect(JetStreamOptions::new(url)),
    )
    .await
    .expect("connect must give up by itself");
    assert!(
        matches!(result, Err(LogError::Unavailable(_))),
        "got {result:?}"
    );
}

#[tokio::test]
async fn a_retried_idempotency_key_returns_the_original_positions_even_with_a_stale_expected_sequence()
 {
    let nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let carol = tenant_member("acme", "carol");
    let command: Vec<EventEnvelope> = (0..2).map(|n| event(&carol, n)).collect();
    let original = log
        .append(command.clone(), Expected::NoEvents, Some("cmd-1"))
        .await
        .unwrap();
    assert_eq!(
        original,
        Appended {
            first: 1,
            last: 2,
            duplicate: false
        }
    );
    log.append(vec![event(&carol, 2)], Expected::At(2), None)
        .await
        .unwrap();

    // `NoEvents` is stale now (the aggregate is at 3), yet the key wins.
    let retried = log
        .append(command, Expected::NoEvents, Some("cmd-1"))
        .await
        .unwrap();
    assert_eq!(
        retried,
        Appended {
            first: 1,
            last: 2,
            duplicate: true
        }
    );
    assert_eq!(log.last_position().await.unwrap(), 3);

    // Without the key the stale expectation is a conflict naming the actual last position.
    let conflict = log
        .append(vec![event(&carol, 4)], Expected::NoEvents, None)
        .await;
    assert!(
        matches!(
            conflict,
            Err(AppendError::WrongExpectedSequence {
                expected: Expected::NoEvents,
                actual: Some(3)
            })
        ),
        "got {conflict:?}"
    );
}

#[tokio::test]
async fn nats_server_answers_a_repeated_msg_id_as_duplicate_before_checking_the_expected_subject_sequence()
 {
    // The append path relies on this order for a cheap retry, and falls back to looking the ids
    // up when a server checks the sequence first; this pins what the tested server does.
    let nats = NatsServer::spawn();
    let _log = connect(&nats).await; // creates the stream
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let subject = "idstream.events._.user.dave";
    let publish = |id: &'static str, expected: u64| {
        let js = js.clone();
        async move {
            js.send_publish(
                subject,
                Publish::build()
                    .payload("{}".into())
                    .message_id(id)
                    .expected_last_subject_sequence(expected),
            )
            .await
            .unwrap()
            .await
        }
    };
    assert_eq!(publish("k:0", 0).await.unwrap().sequence, 1);
    assert_eq!(publish("k:1", 1).await.unwrap().sequence, 2);
    let again = publish("k:0", 0)
        .await
        .expect("a repeated msg id with a stale expected sequence is a duplicate ack");
    assert!(again.duplicate);
    assert_eq!(again.sequence, 1);
}

#[tokio::test]
async fn a_retry_completes_an_append_that_stored_only_its_first_events() {
    let nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let erin = user("erin");
    let command: Vec<EventEnvelope> = (0..3).map(|n| event(&erin, n)).collect();
    // What a crash after the first publish leaves behind: event 0 stored with its dedup id.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let body = serde_json::to_vec(&command[0]).unwrap();
    js.send_publish(
        erin.subject(),
        Publish::build().payload(body.into()).message_id("cmd-7:0"),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let retried = log
        .append(command.clone(), Expected::NoEvents, Some("cmd-7"))
        .await
        .unwrap();
    assert_eq!(
        retried,
        Appended {
            first: 1,
            last: 3,
            duplicate: true
        }
    );
    let stored = log.read_stream(&erin).await.unwrap();
    assert_eq!(
        ids(&stored),
        command.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let msg_ids: Vec<Option<String>> = stored.iter().map(|e| e.msg_id.clone()).collect();
    assert_eq!(
        msg_ids,
        ["cmd-7:0", "cmd-7:1", "cmd-7:2"].map(|s| Some(s.to_owned()))
    );
}

#[tokio::test]
async fn a_message_that_is_not_an_event_is_reported_as_corrupt_with_its_position() {
    let nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let frank = user("frank");
    log.append(vec![event(&frank, 0)], Expected::NoEvents, None)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.publish(frank.subject(), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();

    match log.read_after(0, 10).await {
        Err(LogError::Corrupt(message)) => assert!(message.contains("position 2"), "got {message}"),
        other => panic!("expected corruption at position 2, got {other:?}"),
    }
    let mut events = log.subscribe(0).await.unwrap();
    assert_eq!(next_event(&mut events).await.position, 1);
    match tokio::time::timeout(RECOVERY, events.next())
        .await
        .expect("the subscription must yield")
    {
        Some(Err(LogError::Corrupt(message))) => {
            assert!(message.contains("position 2"), "got {message}")
        }
        other => panic!("expected corruption at position 2, got {other:?}"),
    }
}

#[tokio::test]
async fn appends_of_oversized_or_mixed_events_are_invalid_and_store_nothing() {
    let nats = NatsServer::spawn();
    let log = connect(&nats).await;
    let gina = user("gina");
    let mut big = event(&gina, 0);
    big.data = serde_json::json!({ "blob": "x".repeat(1024 * 1024) });
    let oversized = log.append(vec![big], Expected::Any, None).await;
    assert!(
        matches!(oversized, Err(AppendError::Invalid(_))),
        "got {oversized:?}"
    );
    let mixed = log
        .append(
            vec![event(&gina, 1), event(&user("hank"), 2)],
            Expected::Any,
            None,
        )
        .await;
    assert!(
        matches!(mixed, Err(AppendError::Invalid(_))),
        "got {mixed:?}"
    );
    let empty = log.append(Vec::new(), Expected::Any, None).await;
    assert!(
        matches!(empty, Err(AppendError::Invalid(_))),
        "got {empty:?}"
    );
    assert_eq!(log.last_position().await.unwrap(), 0);
}
