//! Fault tests of the embedded log with real damage: a writer process killed with SIGKILL in the
//! middle of a burst, a record cut in half, garbage after the last record, a flipped byte among
//! acknowledged records, and a second open of a directory that is in use.
//!
//! The crash test re-executes this test binary as the writer: it runs the single test
//! [`crash_child_writer`] by exact name with `IDSTREAM_TEST_CHILD_WRITER=<dir>` set, which makes
//! that test append until it is killed. Without the variable that test returns at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use idstream_domain::{AggregateType, StreamKey, TenantId};
use idstream_eventlog::conformance::{created, fresh_tenant, renamed};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::{Appended, EventLog, Expected, LogError, Position, RecordedEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

const CHILD_ENV: &str = "IDSTREAM_TEST_CHILD_WRITER";
/// Concurrent appenders in the child, each on its own aggregate.
const CHILD_TASKS: usize = 16;
/// Acknowledgements the parent waits for before it kills the child mid-burst.
const ACKS_BEFORE_KILL: usize = 1_500;
/// Bounds every wait on the child so a broken child fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

async fn open(dir: &Path) -> std::sync::Arc<EmbeddedLog> {
    EmbeddedLog::open(dir, EmbeddedOptions::default())
        .await
        .expect("open the embedded log")
}

async fn everything(log: &EmbeddedLog) -> Vec<RecordedEvent> {
    log.read_after(0, usize::MAX).await.expect("read_after")
}

/// The one segment file of a small log.
fn segment_file(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the log directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "a small log has one segment: {segments:?}"
    );
    segments.pop().expect("one segment")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat the segment").len()
}

#[track_caller]
fn assert_contiguous_from_one(events: &[RecordedEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.position,
            i as u64 + 1,
            "positions are contiguous from 1"
        );
    }
}

fn child_stream(task: usize) -> StreamKey {
    let tenant: TenantId = format!("crash-{task}").parse().expect("a valid slug");
    StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str())
}

/// One acknowledgement as the child printed it.
#[derive(Debug)]
struct Ack {
    task: usize,
    append: usize,
    first: Position,
    last: Position,
    ids: Vec<String>,
    key: Option<String>,
}

impl Ack {
    fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.strip_prefix("ACK ")?.split(' ');
        let mut next = || parts.next();
        let task = next()?.parse().ok()?;
        let append = next()?.parse().ok()?;
        let first = next()?.parse().ok()?;
        let last = next()?.parse().ok()?;
        let ids = next()?.split(',').map(str::to_owned).collect();
        let key = match next()? {
            "-" => None,
            key => Some(key.to_owned()),
        };
        Some(Ack {
            task,
            append,
            first,
            last,
            ids,
            key,
        })
    }
}

/// The writer half of the crash test, run in a child process. Each task appends to its own
/// aggregate with optimistic concurrency; every fifth append is a three-event group with an
/// idempotency key. A line goes to stdout only after the append was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = open(Path::new(&dir)).await;
    let tasks: Vec<_> = (0..CHILD_TASKS)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = child_stream(task);
                let mut last = 0;
                for append in 0.. {
                    let n = if append % 5 == 4 { 3 } else { 1 };
                    let events: Vec<_> = (0..n)
                        .map(|i| {
                            let name = format!("{task}:{append}:{i}/{n}");
                            if last == 0 && i == 0 {
                                created(&stream, &name)
                            } else {
                                renamed(&stream, &name)
                            }
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
                    let key = (n > 1).then(|| format!("crash-{task}-{append}"));
                    let ack = log
                        .append(events, Expected::from_last(last), key.as_deref())
                        .await
                        .expect("append");
                    println!(
                        "ACK {task} {append} {} {} {} {}",
                        ack.first,
                        ack.last,
                        ids.join(","),
                        key.as_deref().unwrap_or("-")
                    );
                    last = ack.last;
                }
            })
        })
        .collect();
    // The parent kills this process long before; the bound only stops an orphan.
    let _ = timeout(Duration::from_secs(300), futures::future::join_all(tasks)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_burst_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "embedded_faults::crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the writer child");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));

    // A line counts only when whole: SIGKILL can land in the middle of one.
    async fn read_ack_line(
        stdout: &mut BufReader<tokio::process::ChildStdout>,
        acks: &mut Vec<Ack>,
    ) -> bool {
        let mut line = String::new();
        let n = stdout
            .read_line(&mut line)
            .await
            .expect("read the child's stdout");
        if n == 0 {
            return false;
        }
        if line.ends_with('\n')
            && let Some(ack) = Ack::parse(line.trim_end())
        {
            acks.push(ack);
        }
        true
    }

    let mut acks = Vec::new();
    let reading = async {
        while acks.len() < ACKS_BEFORE_KILL {
            assert!(
                read_ack_line(&mut stdout, &mut acks).await,
                "the writer child exited early"
            );
        }
    };
    timeout(PATIENCE, reading)
        .await
        .expect("the writer child acknowledges appends");

    // While the child holds the directory, this process cannot open it.
    match EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await {
        Err(LogError::Unavailable(message)) => {
            assert!(message.contains("already open"), "{message}")
        }
        Err(other) => panic!("a second open should say the log is in use, got {other}"),
        Ok(_) => panic!("a second process opened a log that is in use"),
    }

    let pid = child.id().expect("the child is running") as libc::pid_t;
    // SIGKILL: no destructor, no flush, no chance to finish the batch being written.
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "send SIGKILL");
    // Lines written before the kill are acknowledgements too.
    timeout(PATIENCE, async {
        while read_ack_line(&mut stdout, &mut acks).await {}
    })
    .await
    .expect("stdout closes");
    let status = timeout(PATIENCE, child.wait())
        .await
        .expect("the child exits")
        .expect("wait for the child");
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );

    let log = open(dir.path()).await;
    let all = everything(&log).await;
    eprintln!(
        "{} appends acknowledged before the kill; {} events recovered",
        acks.len(),
        all.len()
    );
    assert_contiguous_from_one(&all);
    assert_eq!(
        log.last_position().await.expect("last_position"),
        all.len() as u64
    );

    // Every acknowledged append is there, whole, at its acknowledged positions.
    for ack in &acks {
        assert!(
            ack.last as usize <= all.len(),
            "acknowledged position {} was lost",
            ack.last
        );
        let stored = &all[(ack.first - 1) as usize..ack.last as usize];
        let ids: Vec<String> = stored.iter().map(|e| e.envelope.id.to_string()).collect();
        assert_eq!(
            ids, ack.ids,
            "the events at {}..={} are the acknowledged ones",
            ack.first, ack.last
        );
        for (i, event) in stored.iter().enumerate() {
            assert_eq!(event.envelope.stream_key(), child_stream(ack.task));
            assert_eq!(
                event.msg_id,
                ack.key.as_ref().map(|key| format!("{key}:{i}"))
            );
        }
    }

    // Each aggregate holds whole appends 0, 1, 2, … with no gap and no partial group at its end:
    // an append that was cut by the kill left nothing behind.
    let mut acked_per_task: BTreeMap<usize, usize> = BTreeMap::new();
    for ack in &acks {
        let count = acked_per_task.entry(ack.task).or_default();
        *count = (*count).max(ack.append + 1);
    }
    for task in 0..CHILD_TASKS {
        let history = log
            .read_stream(&child_stream(task))
            .await
            .expect("read_stream");
        let mut expected_append = 0;
        let mut events = history.iter().peekable();
        while let Some(event) = events.next() {
            let name = event.envelope.data["name"].as_str().expect("a name");
            let parts: Vec<&str> = name.split([':', '/']).collect();
            let (append, i, n): (usize, usize, usize) = (
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
                parts[3].parse().unwrap(),
            );
            assert_eq!(
                (append, i),
                (expected_append, 0),
                "task {task}: appends are whole and in order"
            );
            for j in 1..n {
                let member = events
                    .next()
                    .unwrap_or_else(|| panic!("task {task}: append {append} is partial"));
                assert_eq!(
                    member.envelope.data["name"],
                    format!("{task}:{append}:{j}/{n}")
                );
            }
            expected_append += 1;
        }
        let acked = acked_per_task.get(&task).copied().unwrap_or(0);
        assert!(
            expected_append >= acked,
            "task {task}: {acked} appends were acknowledged, {expected_append} survived"
        );
    }

    // Idempotency survives the crash: a retried group is recognised.
    let keyed = acks
        .iter()
        .find(|a| a.key.is_some())
        .expect("the burst included keyed groups");
    let retry = log
        .append(
            vec![renamed(&child_stream(keyed.task), "retry")],
            Expected::NoEvents,
            keyed.key.as_deref(),
        )
        .await
        .expect("retry");
    assert_eq!(
        retry,
        Appended {
            first: keyed.first,
            last: keyed.last,
            duplicate: true
        }
    );

    // And the log goes on at the next position.
    let stream = child_stream(0);
    let tail = log
        .read_stream(&stream)
        .await
        .expect("read_stream")
        .last()
        .map_or(0, |e| e.position);
    let next = log
        .append(
            vec![renamed(&stream, "after the crash")],
            Expected::from_last(tail),
            None,
        )
        .await;
    assert_eq!(
        next.expect("append after the crash").first,
        all.len() as u64 + 1
    );
}

/// Ten single-event appends; returns the log's events and the segment length before each.
async fn ten_events(dir: &Path) -> (Vec<RecordedEvent>, Vec<u64>) {
    let log = open(dir).await;
    let stream = fresh_tenant();
    let segment = segment_file(dir);
    let mut offsets = Vec::new();
    let mut last = 0;
    for i in 0..10 {
        offsets.push(file_len(&segment));
        let event = if i == 0 {
            created(&stream, "0")
        } else {
            renamed(&stream, &i.to_string())
        };
        last = log
            .append(vec![event], Expected::from_last(last), None)
            .await
            .expect("append")
            .last;
    }
    (everything(&log).await, offsets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_cut_in_half_is_cut_away_on_open_and_appends_continue() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (events, offsets) = ten_events(dir.path()).await;
    let segment = segment_file(dir.path());
    let end = file_len(&segment);
    let last_start = offsets[9];
    // A crash in the middle of writing the last record.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(last_start + (end - last_start) / 2))
        .expect("truncate the segment");

    let log = open(dir.path()).await;
    assert_eq!(
        everything(&log).await,
        events[..9],
        "the nine whole records are intact"
    );
    assert_eq!(
        file_len(&segment),
        last_start,
        "the torn record is cut exactly"
    );
    let stream = events[0].envelope.stream_key();
    let next = log
        .append(vec![renamed(&stream, "again")], Expected::At(9), None)
        .await
        .expect("append");
    assert_eq!(
        next.first, 10,
        "appends continue where the whole records end"
    );
    drop(log);
    let log = open(dir.path()).await;
    assert_eq!(everything(&log).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_record_is_cut_away_on_open_and_appends_continue() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (events, _) = ten_events(dir.path()).await;
    let segment = segment_file(dir.path());
    let end = file_len(&segment);
    // Junk, including something that starts like a frame but is not one.
    let mut junk = b"IDSR\xff\x00\x00\x00not a frame at all".to_vec();
    junk.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .and_then(|mut f| f.write_all(&junk))
        .expect("add junk");

    let log = open(dir.path()).await;
    assert_eq!(everything(&log).await, events);
    assert_eq!(file_len(&segment), end, "exactly the junk is cut");
    let stream = events[0].envelope.stream_key();
    let next = log
        .append(vec![renamed(&stream, "again")], Expected::At(10), None)
        .await
        .expect("append");
    assert_eq!(next.first, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_an_early_record_refuses_to_open_as_corrupt() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_, offsets) = ten_events(dir.path()).await;
    let segment = segment_file(dir.path());
    // A byte in the middle of the second record: acknowledged, with eight records after it.
    let at = (offsets[1] + offsets[2]) / 2;
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    bytes[at as usize] ^= 0x20;
    std::fs::write(&segment, &bytes).expect("write the damaged segment");

    match EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await {
        Err(LogError::Corrupt(message)) => {
            let name = segment.file_name().unwrap().to_str().unwrap();
            assert!(
                message.contains(name),
                "the error names the segment: {message}"
            );
            assert!(
                message.contains(&format!("offset {}", offsets[1])),
                "and the record's offset: {message}"
            );
        }
        Err(other) => panic!("expected LogError::Corrupt, got {other}"),
        Ok(_) => panic!("a log with a damaged acknowledged record opened"),
    }
    assert_eq!(
        std::fs::read(&segment).expect("read the segment"),
        bytes,
        "a refused open changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_a_directory_in_use_fails_until_the_first_is_closed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = open(dir.path()).await;
    match EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).await {
        Err(LogError::Unavailable(message)) => {
            assert!(message.contains("already open"), "{message}");
            assert!(
                message.contains(&dir.path().display().to_string()),
                "the error names the directory: {message}"
            );
        }
        Err(other) => panic!("expected a clear 'already open' error, got {other}"),
        Ok(_) => panic!("two logs opened one directory"),
    }
    drop(first);
    let again = open(dir.path()).await;
    assert_eq!(again.last_position().await.expect("last_position"), 0);
}
