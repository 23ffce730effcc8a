//! Unit tests of the embedded log's recovery decisions and group commit. The behaviour every
//! backend shares is in the conformance suite; the crash tests with real processes are in the
//! root integration tests (`tests/embedded_faults.rs`).

use std::os::unix::fs::FileExt;

use idstream_domain::events::TenantCreated;
use idstream_domain::{Actor, AggregateType, DomainEvent, Metadata};
use time::OffsetDateTime;
use ulid::Ulid;

use super::format::{HEADER_LEN, Record, segment_file_name};
use super::*;

fn stream(n: u32) -> StreamKey {
    let tenant: idstream_domain::TenantId = format!("t{n}").parse().unwrap();
    StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str())
}

fn event(stream: &StreamKey, name: &str) -> EventEnvelope {
    let meta = Metadata {
        actor: Actor::system("test"),
        occurred_at: OffsetDateTime::UNIX_EPOCH,
        correlation_id: "c".into(),
        causation_id: None,
    };
    DomainEvent::TenantCreated(TenantCreated { name: name.into() }).into_envelope(
        Ulid::new(),
        stream,
        &meta,
    )
}

async fn open(dir: &Path) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(dir, EmbeddedOptions::default())
        .await
        .unwrap()
}

async fn all(log: &EmbeddedLog) -> Vec<RecordedEvent> {
    log.read_after(0, usize::MAX).await.unwrap()
}

fn first_segment(dir: &Path) -> PathBuf {
    dir.join(segment_file_name(1))
}

/// Writes a frame by hand at the end of a segment, as a crashed writer could have left it.
fn append_frame(path: &Path, record: Record<'_>) {
    let mut frame = Vec::new();
    record.encode_into(&mut frame);
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.write_all_at(&frame, len).unwrap();
}

fn json_of(event: &EventEnvelope) -> Vec<u8> {
    serde_json::to_vec(event).unwrap()
}

#[tokio::test]
async fn a_log_spanning_many_segments_reads_and_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        segment_bytes: 2048,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), options.clone())
        .await
        .unwrap();
    for i in 0..60 {
        let s = stream(i % 3);
        let events = vec![event(&s, &format!("{i}a")), event(&s, &format!("{i}b"))];
        log.append(events, Expected::Any, Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    let before = all(&log).await;
    let log_id = log.log_id().await.unwrap();
    drop(log);

    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 5, "small segments roll often (got {segments})");

    let log = EmbeddedLog::open(dir.path(), options).await.unwrap();
    assert_eq!(all(&log).await, before);
    assert_eq!(log.log_id().await.unwrap(), log_id);
    assert_eq!(log.read_stream(&stream(1)).await.unwrap().len(), 40);
    // Dedup survives across segments and the restart.
    let again = log
        .append(vec![event(&stream(0), "x")], Expected::Any, Some("k0"))
        .await
        .unwrap();
    assert_eq!(
        again,
        Appended {
            first: 1,
            last: 2,
            duplicate: true
        }
    );
    let next = log
        .append(vec![event(&stream(0), "y")], Expected::Any, None)
        .await
        .unwrap();
    assert_eq!(next.first, 121);
}

#[tokio::test]
async fn an_append_group_without_its_last_record_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let s = stream(1);
    log.append(vec![event(&s, "kept")], Expected::NoEvents, None)
        .await
        .unwrap();
    drop(log);

    // Two records of a three-record append reached the disk, the third did not.
    let (one, two) = (event(&s, "lost 1"), event(&s, "lost 2"));
    let (json1, json2) = (json_of(&one), json_of(&two));
    let subject = s.subject();
    for (position, json) in [(2, &json1), (3, &json2)] {
        let record = Record {
            position,
            batch_base: 2,
            appended_at_ms: 0,
            end_of_append: false,
            msg_id: None,
            subject: &subject,
            json,
        };
        append_frame(&first_segment(dir.path()), record);
    }

    let log = open(dir.path()).await;
    let events = all(&log).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].envelope.data["name"], "kept");
    let next = log
        .append(vec![event(&s, "next")], Expected::At(1), None)
        .await
        .unwrap();
    assert_eq!(next.first, 2);
}

#[tokio::test]
async fn damage_followed_only_by_its_own_unsynced_batch_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let s = stream(1);
    log.append(vec![event(&s, "kept")], Expected::NoEvents, None)
        .await
        .unwrap();
    drop(log);

    // One batch of two appends; the disk kept the second frame but not the first (pages can
    // reach the disk in any order before the fsync that never came).
    let path = first_segment(dir.path());
    let damaged_at = std::fs::metadata(&path).unwrap().len();
    let subject = s.subject();
    let (a, b) = (json_of(&event(&s, "a")), json_of(&event(&s, "b")));
    for (position, json) in [(2, &a), (3, &b)] {
        let record = Record {
            position,
            batch_base: 2,
            appended_at_ms: 0,
            end_of_append: true,
            msg_id: None,
            subject: &subject,
            json,
        };
        append_frame(&path, record);
    }
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 16], damaged_at + 20).unwrap();

    let log = open(dir.path()).await;
    assert_eq!(
        all(&log).await.len(),
        1,
        "the unacknowledged batch is cut, the acknowledged event stays"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), damaged_at);
}

#[tokio::test]
async fn damage_followed_by_a_later_batch_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let s = stream(1);
    log.append(vec![event(&s, "0")], Expected::NoEvents, None)
        .await
        .unwrap();
    let path = first_segment(dir.path());
    let damaged_at = std::fs::metadata(&path).unwrap().len();
    log.append(vec![event(&s, "1")], Expected::Any, None)
        .await
        .unwrap();
    log.append(vec![event(&s, "2")], Expected::Any, None)
        .await
        .unwrap();
    drop(log);

    // Flip a byte (writing a fixed one would change nothing when the random ids put that very
    // byte there already).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, damaged_at + 30).unwrap();
    file.write_all_at(&[byte[0] ^ 0x01], damaged_at + 30)
        .unwrap();
    match EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await {
        Err(LogError::Corrupt(message)) => {
            assert!(message.contains(&segment_file_name(1)), "{message}");
            assert!(
                message.contains(&format!("offset {damaged_at}")),
                "{message}"
            );
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a log with damaged acknowledged events opened"),
    }
}

#[tokio::test]
async fn a_damaged_segment_header_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let file = OpenOptions::new()
        .write(true)
        .open(first_segment(dir.path()))
        .unwrap();
    file.write_all_at(b"?", HEADER_LEN - 10).unwrap();
    assert!(matches!(
        EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await,
        Err(LogError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_log_written_in_a_newer_format_is_refused_as_misconfigured_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let path = first_segment(dir.path());
    let mut header = [0u8; HEADER_LEN as usize];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut header, 0)
        .unwrap();
    // An intact header (valid checksum) that names a future version.
    header[8..12].copy_from_slice(&(format::FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&header[0..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&header, 0)
        .unwrap();

    match EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await {
        Err(LogError::Misconfigured(message)) => {
            assert!(message.contains("version 2"), "{message}")
        }
        Err(other) => panic!("expected Misconfigured, got {other}"),
        Ok(_) => panic!("a log in an unknown format opened"),
    }
}

#[tokio::test]
async fn a_missing_middle_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        segment_bytes: 1024,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), options.clone())
        .await
        .unwrap();
    for i in 0..20 {
        log.append(vec![event(&stream(1), &i.to_string())], Expected::Any, None)
            .await
            .unwrap();
    }
    drop(log);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3);
    std::fs::remove_file(&segments[1]).unwrap();
    assert!(matches!(
        EmbeddedLog::open(dir.path(), options).await,
        Err(LogError::Corrupt(_))
    ));
}

#[tokio::test]
async fn with_a_zero_dedup_window_a_repeated_key_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        dedup_window: Duration::ZERO,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), options).await.unwrap();
    let s = stream(1);
    let one = log
        .append(vec![event(&s, "a")], Expected::Any, Some("k"))
        .await
        .unwrap();
    let two = log
        .append(vec![event(&s, "a")], Expected::Any, Some("k"))
        .await
        .unwrap();
    assert!(!one.duplicate && !two.duplicate);
    assert_eq!(two.first, one.last + 1);
}

#[tokio::test]
async fn a_closed_log_ends_its_subscriptions_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append(vec![event(&stream(1), "a")], Expected::Any, None)
        .await
        .unwrap();
    let mut subscription = log.subscribe(0).await.unwrap();
    assert_eq!(subscription.next().await.unwrap().unwrap().position, 1);
    drop(log);
    let end = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("the subscription notices");
    assert!(
        matches!(end, Some(Err(LogError::Unavailable(_)))),
        "{end:?}"
    );
    assert!(subscription.next().await.is_none());
}

/// Group commit under load: 64 concurrent writers. Checks that every append landed exactly once
/// and prints the rate (no assertion on it: machines differ). Run it in release for a figure:
/// `cargo test -p idstream-eventlog --release group_commit -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_serves_many_concurrent_writers_exactly_once() {
    const TASKS: usize = 64;
    let total: usize = if cfg!(debug_assertions) {
        6_400
    } else {
        51_200
    };
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let s = stream(t as u32);
                let mut last = 0;
                for i in 0..total / TASKS {
                    let ack = log
                        .append(
                            vec![event(&s, &i.to_string())],
                            Expected::from_last(last),
                            None,
                        )
                        .await
                        .unwrap();
                    last = ack.last;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "embedded log: {total} appends from {TASKS} tasks in {elapsed:?} = {:.0} appends/s (dir {})",
        total as f64 / elapsed.as_secs_f64(),
        dir.path().display()
    );
    assert_eq!(log.last_position().await.unwrap(), total as u64);
    let events = all(&log).await;
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.position == i as u64 + 1)
    );
    for t in 0..TASKS {
        let names: Vec<String> = log
            .read_stream(&stream(t as u32))
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope.data["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            (0..total / TASKS)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_read_only_snapshot_sees_what_was_on_disk_when_opened_beside_a_running_writer() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        EmbeddedLog::open_read_only(dir.path()).await,
        Err(LogError::Misconfigured(_))
    ));
    let log = open(dir.path()).await;
    for n in 0..3 {
        log.append(
            vec![event(&stream(n), "a")],
            Expected::NoEvents,
            Some(&format!("k{n}")),
        )
        .await
        .unwrap();
    }
    // A batch being written: a whole frame of an append group that has not ended yet.
    let snapshot = EmbeddedLog::open_read_only(dir.path()).await.unwrap();
    assert_eq!(snapshot.last_position().await.unwrap(), 3);
    assert_eq!(
        snapshot.log_id().await.unwrap(),
        log.log_id().await.unwrap()
    );
    let raw = snapshot.read_raw_after(0, 10).await.unwrap();
    assert_eq!(raw, log.read_raw_after(0, 10).await.unwrap());
    assert_eq!(raw[1].msg_id.as_deref(), Some("k1:0"));

    log.append(vec![event(&stream(9), "b")], Expected::Any, None)
        .await
        .unwrap();
    assert_eq!(
        snapshot.last_position().await.unwrap(),
        3,
        "the snapshot does not grow"
    );
    assert!(matches!(
        snapshot
            .append(vec![event(&stream(8), "c")], Expected::Any, None)
            .await,
        Err(AppendError::Unavailable(_))
    ));
    drop(snapshot);
    drop(log);

    // A torn tail is left alone by a snapshot (the writer's open cuts it).
    let segment = first_segment(dir.path());
    let before = std::fs::metadata(&segment).unwrap().len();
    let json = json_of(&event(&stream(7), "torn"));
    append_frame(
        &segment,
        Record {
            position: 5,
            batch_base: 5,
            appended_at_ms: 0,
            end_of_append: false,
            msg_id: None,
            subject: &stream(7).subject(),
            json: &json,
        },
    );
    let snapshot = EmbeddedLog::open_read_only(dir.path()).await.unwrap();
    assert_eq!(snapshot.last_position().await.unwrap(), 4);
    drop(snapshot);
    assert!(std::fs::metadata(&segment).unwrap().len() > before);
    let log = open(dir.path()).await;
    assert_eq!(log.last_position().await.unwrap(), 4);
}
