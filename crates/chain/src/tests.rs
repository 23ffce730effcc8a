//! The writer against a real (embedded) log, checked by the verifier.

use std::sync::Arc;
use std::time::Duration;

use idstream_domain::events::TenantRenamed;
use idstream_domain::{Actor, AggregateType, DomainEvent, Metadata, StreamKey};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::{Expected, SharedLog};
use idstream_keys::{FileKeyStore, Keys};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::{CheckpointPolicy, Checkpointer, Summary, TrustedKeys, verify_log};

struct World {
    dir: tempfile::TempDir,
    log: SharedLog,
    keys: Arc<Keys>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions::default())
        .await
        .unwrap();
    let store = Arc::new(FileKeyStore::open(dir.path().join("keys")).unwrap());
    let keys = Keys::load_or_create(store, OffsetDateTime::now_utc(), time::Duration::minutes(5))
        .await
        .unwrap();
    World {
        dir,
        log,
        keys: Arc::new(keys),
    }
}

async fn append(log: &SharedLog, n: u64) {
    let stream = StreamKey::new(Some("acme".parse().unwrap()), AggregateType::Tenant, "acme");
    for i in 0..n {
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: OffsetDateTime::now_utc(),
            correlation_id: Ulid::new().to_string(),
            causation_id: None,
        };
        let event = DomainEvent::TenantRenamed(TenantRenamed {
            name: format!("name {i}"),
        })
        .into_envelope(Ulid::new(), &stream, &meta);
        log.append(vec![event], Expected::Any, None).await.unwrap();
    }
}

fn policy(every_events: u64) -> CheckpointPolicy {
    CheckpointPolicy {
        every_events,
        every: Duration::from_secs(3600),
        ..CheckpointPolicy::default()
    }
}

async fn verify(w: &World) -> Summary {
    let trusted = TrustedKeys::from_ring(&w.keys.signing());
    verify_log(w.log.clone(), trusted, |_, _| {}).await.unwrap()
}

#[tokio::test]
async fn checkpoints_follow_the_policy_and_the_log_verifies() {
    let w = world().await;
    let mut writer = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    assert_eq!(writer.tick().await.unwrap(), Vec::<u64>::new(), "empty log");
    append(&w.log, 25).await;
    assert_eq!(writer.tick().await.unwrap(), vec![26]);
    assert_eq!(
        writer.tick().await.unwrap(),
        Vec::<u64>::new(),
        "nothing new"
    );
    append(&w.log, 5).await;
    assert_eq!(writer.tick().await.unwrap(), Vec::<u64>::new(), "5 < 10");
    assert_eq!(writer.checkpoint_now().await.unwrap(), vec![32]);
    let summary = verify(&w).await;
    assert_eq!(
        (summary.events, summary.checkpoints, summary.covered_to),
        (32, 2, 31)
    );
}

#[tokio::test]
async fn a_backlog_is_checkpointed_in_pieces_of_bounded_size() {
    let w = world().await;
    append(&w.log, 25).await;
    let policy = CheckpointPolicy {
        max_events: 10,
        ..policy(10)
    };
    let mut writer = Checkpointer::new(w.log.clone(), w.keys.clone(), policy);
    assert_eq!(writer.tick().await.unwrap(), vec![26, 27, 28]);
    let summary = verify(&w).await;
    assert_eq!((summary.checkpoints, summary.covered_to), (3, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_racing_one_checkpoints_and_the_other_follows_it() {
    let w = world().await;
    let mut a = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(5));
    let mut b = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(5));
    for round in 0..5 {
        append(&w.log, 7).await;
        let (x, y) = tokio::join!(a.tick(), b.tick());
        let written = x.unwrap().len() + y.unwrap().len();
        assert!(written <= 1, "round {round}: {written} checkpoints");
        // The loser (or a writer that was late) picks the winner's checkpoint up.
        a.tick().await.unwrap();
        b.tick().await.unwrap();
        assert_eq!(a.covered_to(), b.covered_to(), "round {round}");
    }
    let summary = verify(&w).await;
    assert_eq!(summary.checkpoints, 5);
}

#[tokio::test]
async fn a_key_rotation_is_followed_by_a_checkpoint_with_the_new_key() {
    let w = world().await;
    let mut writer = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    append(&w.log, 10).await;
    assert_eq!(writer.tick().await.unwrap(), vec![11]);
    let old = w.keys.signing().current().kid().to_owned();
    w.keys
        .rotate_signing(OffsetDateTime::now_utc() + time::Duration::days(40))
        .await
        .unwrap();
    let new = w.keys.signing().current().kid().to_owned();
    // Nothing but the old checkpoint is new, and yet the new key re-signs it.
    assert_eq!(writer.tick().await.unwrap(), vec![12]);
    assert_eq!(writer.tick().await.unwrap(), Vec::<u64>::new());

    // Verified with only the new key trusted (the old one pruned from the ring since).
    let jwks = w.keys.signing().jwks();
    let only_new = serde_json::json!({
        "keys": jwks["keys"].as_array().unwrap().iter().filter(|k| k["kid"] == new.as_str()).collect::<Vec<_>>()
    });
    let trusted = TrustedKeys::from_jwks(&only_new).unwrap();
    assert!(trusted.get(&old).is_none());
    let summary = verify_log(w.log.clone(), trusted, |_, _| {}).await.unwrap();
    assert_eq!((summary.checkpoints, summary.covered_to), (2, 11));
}

#[tokio::test]
async fn a_new_writer_resumes_from_the_last_checkpoint() {
    let w = world().await;
    append(&w.log, 12).await;
    let mut first = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    assert_eq!(first.tick().await.unwrap(), vec![13]);
    drop(first);
    append(&w.log, 3).await;
    let mut second = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    assert_eq!(second.tick().await.unwrap(), Vec::<u64>::new());
    assert_eq!((second.covered_to(), second.position()), (12, 16));
    assert_eq!(second.checkpoint_now().await.unwrap(), vec![17]);
    let summary = verify(&w).await;
    assert_eq!((summary.checkpoints, summary.covered_to), (2, 16));
}

#[tokio::test]
async fn a_replica_that_has_not_seen_a_rotation_yet_does_not_re_sign_the_new_key() {
    let w = world().await;
    // Replica B: its own key snapshot from the same store, not reloaded after A rotates.
    let store = Arc::new(FileKeyStore::open(w.dir.path().join("keys")).unwrap());
    let b_keys = Keys::load_or_create(store, OffsetDateTime::now_utc(), time::Duration::minutes(5))
        .await
        .unwrap();
    let mut a = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    let mut b = Checkpointer::new(w.log.clone(), Arc::new(b_keys), policy(10));
    append(&w.log, 10).await;
    assert_eq!(a.tick().await.unwrap(), vec![11]);
    assert_eq!(b.tick().await.unwrap(), Vec::<u64>::new());

    w.keys
        .rotate_signing(OffsetDateTime::now_utc() + time::Duration::days(40))
        .await
        .unwrap();
    assert_eq!(
        a.tick().await.unwrap(),
        vec![12],
        "A re-signs with its new key"
    );
    // B meets a key it does not know, reloads instead of re-signing with its old one.
    assert_eq!(b.tick().await.unwrap(), Vec::<u64>::new());
    assert_eq!(a.tick().await.unwrap(), Vec::<u64>::new());
    let summary = verify(&w).await;
    assert_eq!(summary.checkpoints, 2);
}

#[tokio::test]
async fn the_checkpoints_the_writer_stores_are_read_in_one_pass() {
    let w = world().await;
    let mut writer = Checkpointer::new(w.log.clone(), w.keys.clone(), policy(10));
    append(&w.log, 10).await;
    assert_eq!(writer.tick().await.unwrap(), vec![11]);
    let stored = w.log.read_raw_after(10, 1).await.unwrap();
    assert_eq!(stored[0].subject, crate::CHAIN_SUBJECT);
    let direct = crate::Checkpoint::decode_directly(&stored[0].bytes, None);
    assert!(matches!(direct, Some(Ok(_))), "{direct:?}");
}
