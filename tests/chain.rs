//! Tamper evidence end to end: events produced through the real service (whose checkpoint task
//! signs the chain), then `idstream audit verify` over the untouched log, and over copies an
//! attacker changed: on the embedded log a changed, a removed and two swapped events (with every
//! record checksum recomputed, as an attacker would, so the log still opens), on JetStream a
//! deleted message, a purged and republished stream, and a stream recreated with two events
//! swapped. Each must be reported at the first position that differs, with exit status 2.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::nats::NatsServer;
use crate::support::service::ADMIN_TOKEN;
use crate::support::verify::{Verdict, audit_verify};

/// A checkpoint after this many events (the task's default is 1000)…
const CHECKPOINT_EVENTS: &str = "10";
/// …or one second after anything new (the default is 60).
const CHECKPOINT_SECONDS: &str = "1";

/// The `idstream serve` process with the chain knobs turned down (the shared harness starts it
/// with the defaults, which would need a thousand events or a minute for a checkpoint).
struct Serve {
    child: Option<Child>,
    base: String,
    client: reqwest::Client,
}

impl Serve {
    async fn start(data_dir: &Path, nats_url: Option<&str>) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
        command
            .arg("serve")
            .env("IDSTREAM_LISTEN", "127.0.0.1:0")
            .env("IDSTREAM_DATA_DIR", data_dir)
            .env("IDSTREAM_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", CHECKPOINT_EVENTS)
            .env("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS)
            .env(
                "IDSTREAM_LOG",
                std::env::var("IDSTREAM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("IDSTREAM_NATS_URL")
            .env_remove("IDSTREAM_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = nats_url {
            command.env("IDSTREAM_NATS_URL", url);
        }
        let mut child = command.spawn().expect("spawn idstream serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("idstream listening on ") {
                    return url.to_owned();
                }
            }
            panic!("idstream exited before listening")
        })
        .await
        .expect("idstream listens within 60 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Serve {
            child: Some(child),
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn log_position(&self) -> u64 {
        let body: Value = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("GET /readyz")
            .json()
            .await
            .expect("JSON");
        body["log_position"].as_u64().expect("log_position")
    }

    /// A tenant with `users` members, through the API; returns the position of the last event.
    async fn produce(&self, tenant: &str, users: usize) -> u64 {
        let mut last = self
            .post("/v1/tenants", json!({"id": tenant, "name": tenant}))
            .await["position"]
            .as_u64()
            .unwrap();
        for i in 0..users {
            let body = json!({"email": format!("{tenant}-{i}@example.com"), "first_name": "Ada", "last_name": "Lovelace", "roles": ["user"]});
            let created = self
                .post(&format!("/v1/tenants/{tenant}/users"), body)
                .await;
            last = last.max(created["position"].as_u64().unwrap());
        }
        last
    }

    /// Waits until a checkpoint has been written after `position`: nothing else appends while
    /// the test sends no command.
    async fn checkpointed_after(&self, position: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.log_position().await <= position {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkpoint after position {position} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, and a graceful exit.
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().expect("running") as i32;
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("graceful stop")
            .unwrap();
        assert!(status.success(), "idstream exited with {status}");
    }
}

impl Verdict {
    /// (events, checkpoints, uncovered) of a clean verification.
    #[track_caller]
    fn verified(&self) -> (u64, u64, u64) {
        assert_eq!(
            self.status, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("verified "))
            .unwrap_or_else(|| panic!("no summary in {self:#?}"));
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            line,
            format!(
                "verified {} events, {} checkpoints, {} events after the last checkpoint not yet covered",
                numbers[0], numbers[1], numbers[2]
            )
        );
        (numbers[0], numbers[1], numbers[2])
    }

    /// The position named by a failed verification.
    #[track_caller]
    fn first_mismatch(&self) -> u64 {
        assert_eq!(self.status, 2, "{self:#?}");
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("NOT VERIFIED: first mismatch at position "))
            .unwrap_or_else(|| panic!("no mismatch named in {self:#?}"));
        line.split(':').next().unwrap().parse().unwrap()
    }
}

async fn verify(data_dir: &Path, nats_url: Option<&str>) -> Verdict {
    verify_with(data_dir, nats_url, &[]).await
}

async fn verify_with(data_dir: &Path, nats_url: Option<&str>, args: &[&str]) -> Verdict {
    audit_verify(data_dir, nats_url, &[], args).await
}

// ---------------------------------------------------------------------------------------------
// The embedded log, rewritten as an attacker would: the segment format of
// crates/eventlog/src/embedded/format.rs, with every frame checksum recomputed.
// ---------------------------------------------------------------------------------------------

const HEADER_LEN: usize = 40;
const FRAME_HEADER_LEN: usize = 12;
const FLAG_END_OF_APPEND: u8 = 1;

/// One record of a segment, decoded.
#[derive(Debug, Clone)]
struct Record {
    position: u64,
    batch_base: u64,
    appended_at: [u8; 8],
    flags: u8,
    msg_id: Vec<u8>,
    subject: Vec<u8>,
    json: Vec<u8>,
}

struct Segment {
    path: PathBuf,
    header: Vec<u8>,
    records: Vec<Record>,
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl Segment {
    /// The only segment of the log in `log_dir` (test logs are far below one segment's size).
    fn read(log_dir: &Path) -> Segment {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let path = segments.pop().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut records = Vec::new();
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 4], b"IDSR");
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            let p = &bytes[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len];
            let msg_len = u16_at(p, 25);
            let subject_at = 27 + msg_len;
            let subject_len = u16_at(p, subject_at);
            let json_at = subject_at + 2 + subject_len;
            records.push(Record {
                position: u64_at(p, 0),
                batch_base: u64_at(p, 8),
                appended_at: p[16..24].try_into().unwrap(),
                flags: p[24],
                msg_id: p[27..27 + msg_len].to_vec(),
                subject: p[subject_at + 2..json_at].to_vec(),
                json: p[json_at..].to_vec(),
            });
            at += FRAME_HEADER_LEN + len;
        }
        Segment {
            path,
            header: bytes[..HEADER_LEN].to_vec(),
            records,
        }
    }

    /// Writes the records back with fresh checksums, renumbered 1, 2, 3… and each its own
    /// append, so that the log opens as if it had always been this way.
    fn write(mut self) {
        let mut out = self.header.clone();
        for (i, r) in self.records.iter_mut().enumerate() {
            r.position = i as u64 + 1;
            r.batch_base = r.position;
            r.flags |= FLAG_END_OF_APPEND;
            let mut payload = Vec::new();
            payload.extend_from_slice(&r.position.to_le_bytes());
            payload.extend_from_slice(&r.batch_base.to_le_bytes());
            payload.extend_from_slice(&r.appended_at);
            payload.push(r.flags);
            payload.extend_from_slice(&(r.msg_id.len() as u16).to_le_bytes());
            payload.extend_from_slice(&r.msg_id);
            payload.extend_from_slice(&(r.subject.len() as u16).to_le_bytes());
            payload.extend_from_slice(&r.subject);
            payload.extend_from_slice(&r.json);
            let len = (payload.len() as u32).to_le_bytes();
            let mut crc = crc32fast::Hasher::new();
            crc.update(&len);
            crc.update(&payload);
            out.extend_from_slice(b"IDSR");
            out.extend_from_slice(&len);
            out.extend_from_slice(&crc.finalize().to_le_bytes());
            out.extend_from_slice(&payload);
        }
        std::fs::write(&self.path, out).unwrap();
    }
}

/// A copy of the data directory's log and keys (the read models are not needed to verify).
fn copy_data_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for sub in ["log", "keys"] {
        std::fs::create_dir(to.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    to
}

/// Changes one character of the event's correlation id: still valid JSON, still a valid frame.
fn alter(json: &mut [u8]) {
    let key = b"\"correlation_id\":\"";
    let at = json
        .windows(key.len())
        .position(|w| w == key)
        .expect("an envelope has a correlation id")
        + key.len();
    json[at] = if json[at] == b'0' { b'1' } else { b'0' };
}

/// Runs the service on the embedded log in `dir` until a checkpoint covers what it produced.
async fn produce_embedded(dir: &Path, tenant: &str) -> u64 {
    let svc = Serve::start(dir, None).await;
    let last = svc.produce(tenant, 8).await;
    svc.checkpointed_after(last).await;
    svc.stop().await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_a_copied_embedded_log_is_named_at_the_first_position_that_differs() {
    let data = tempfile::tempdir().unwrap();
    let produced = produce_embedded(data.path(), "acme").await;

    let (events, checkpoints, uncovered) = verify(data.path(), None).await.verified();
    assert!(
        events > produced && checkpoints >= 1,
        "{events} {checkpoints}"
    );
    let covered = events - uncovered;
    assert!(covered >= 10, "covered {covered}");

    // One changed byte (checksum recomputed): named exactly.
    for victim in [1, covered / 2, covered] {
        let copy = copy_data_dir(data.path());
        let mut segment = Segment::read(&copy.path().join("log"));
        alter(&mut segment.records[victim as usize - 1].json);
        segment.write();
        let verdict = verify(copy.path(), None).await;
        assert_eq!(
            verdict.first_mismatch(),
            victim,
            "changed {victim}: {verdict:#?}"
        );
    }

    // One event removed, the ones after it renumbered.
    let copy = copy_data_dir(data.path());
    let mut segment = Segment::read(&copy.path().join("log"));
    let victim = covered / 2;
    segment.records.remove(victim as usize - 1);
    segment.write();
    assert_eq!(verify(copy.path(), None).await.first_mismatch(), victim);

    // Two events swapped.
    let copy = copy_data_dir(data.path());
    let mut segment = Segment::read(&copy.path().join("log"));
    let (a, b) = (3, covered - 1);
    segment.records.swap(a as usize - 1, b as usize - 1);
    segment.write();
    assert_eq!(verify(copy.path(), None).await.first_mismatch(), a);

    // A byte of the first record changed *without* fixing its checksum: the log itself refuses
    // to open (acknowledged records follow it), and verify says so.
    let copy = copy_data_dir(data.path());
    let segment = Segment::read(&copy.path().join("log"));
    let mut bytes = std::fs::read(&segment.path).unwrap();
    bytes[HEADER_LEN + FRAME_HEADER_LEN + 40] ^= 0x20;
    std::fs::write(&segment.path, bytes).unwrap();
    let verdict = verify(copy.path(), None).await;
    assert_eq!(verdict.status, 2, "{verdict:#?}");
    assert!(
        verdict.stdout.contains("NOT VERIFIED: the log is damaged"),
        "{verdict:#?}"
    );

    // The original still verifies.
    assert_eq!(
        verify(data.path(), None).await.verified(),
        (events, checkpoints, uncovered)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_verifies_across_signing_key_rotations_after_the_old_keys_are_pruned() {
    use idstream_keys::{FileKeyStore, Keys, Rotation};

    let data = tempfile::tempdir().unwrap();
    produce_embedded(data.path(), "acme").await;
    let (_, before, _) = verify(data.path(), None).await.verified();

    // Rotate twice, far enough apart that the first key is pruned from the ring.
    let store = std::sync::Arc::new(FileKeyStore::open(data.path().join("keys")).unwrap());
    let now = time::OffsetDateTime::now_utc();
    let keys = Keys::load_or_create(store, now, time::Duration::minutes(5))
        .await
        .unwrap();
    let first = keys.signing().current().kid().to_owned();
    let first_jwks = data.path().join("first-jwks.json");
    std::fs::write(&first_jwks, keys.signing().jwks().to_string()).unwrap();
    for days in [40, 80] {
        let rotated = keys
            .rotate_signing(now + time::Duration::days(days))
            .await
            .unwrap();
        assert!(matches!(rotated, Rotation::Rotated { .. }), "{rotated:?}");
    }
    assert!(!keys.signing().kids().contains(&first.as_str()));
    drop(keys);

    // The service re-signs with the new key at once, then keeps checkpointing.
    let svc = Serve::start(data.path(), None).await;
    let last = svc.produce("globex", 4).await;
    svc.checkpointed_after(last).await;
    svc.stop().await;

    let summary = verify(data.path(), None).await.verified();
    let (events, after, _) = summary;
    assert!(
        after > before,
        "{before} → {after} checkpoints in {events} events"
    );

    // The same with the service's published keys handed over as a JWK Set…
    let keys = Keys::load_or_create(
        std::sync::Arc::new(FileKeyStore::open(data.path().join("keys")).unwrap()),
        now,
        time::Duration::minutes(5),
    )
    .await
    .unwrap();
    let jwks = data.path().join("jwks.json");
    std::fs::write(&jwks, keys.signing().jwks().to_string()).unwrap();
    let with_jwks = verify_with(data.path(), None, &["--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(with_jwks.verified(), summary);
    // …while trusting only the first, long pruned key vouches for nothing after the last
    // checkpoint it signed.
    let stale = verify_with(data.path(), None, &["--jwks", first_jwks.to_str().unwrap()]).await;
    assert!(stale.first_mismatch() > 1, "{stale:#?}");
    assert!(stale.stdout.contains("not a trusted key"), "{stale:#?}");
}

// ---------------------------------------------------------------------------------------------
// JetStream: an attacker with admin rights on the stream.
// ---------------------------------------------------------------------------------------------

/// Every message of the stream in order: (subject, payload).
async fn messages(
    stream: &async_nats::jetstream::stream::Stream,
    last: u64,
) -> Vec<(String, bytes::Bytes)> {
    let mut out = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        out.push((message.subject.to_string(), message.payload));
    }
    out
}

async fn republish(js: &async_nats::jetstream::Context, messages: &[(String, bytes::Bytes)]) {
    for (subject, payload) in messages {
        js.publish(subject.clone(), payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_purging_or_rewriting_jetstream_messages_is_named_at_the_first_position_that_differs()
 {
    let nats = NatsServer::spawn();
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let svc = Serve::start(data.path(), Some(&url)).await;
    let last = svc.produce("acme", 8).await;
    svc.checkpointed_after(last).await;
    svc.stop().await;

    let (events, checkpoints, uncovered) = verify(data.path(), Some(&url)).await.verified();
    let covered = events - uncovered;
    assert!(covered >= 10, "covered {covered}");

    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("IDSTREAM").await.unwrap();
    let original = messages(&stream, events).await;
    let protected = stream.info().await.unwrap().config.clone();
    assert!(protected.deny_delete && protected.deny_purge);
    // The server refuses to lift those protections on a stream; an administrator deletes the
    // stream and creates it again without them instead.
    let mut unprotected = protected.clone();
    unprotected.deny_delete = false;
    unprotected.deny_purge = false;
    let recreate = async |config: &async_nats::jetstream::stream::Config,
                          content: &[(String, bytes::Bytes)]| {
        js.delete_stream("IDSTREAM").await.unwrap();
        let stream = js.create_stream(config.clone()).await.unwrap();
        republish(&js, content).await;
        stream
    };

    // 1. Republished faithfully into a new stream: still verifies (the chain is over content
    //    and positions, not over the stream's identity).
    stream = recreate(&unprotected, &original).await;
    assert_eq!(
        verify(data.path(), Some(&url)).await.verified(),
        (events, checkpoints, uncovered)
    );

    // 2. One message deleted: its position is missing.
    let victim = covered / 2;
    assert!(stream.delete_message(victim).await.unwrap());
    let verdict = verify(data.path(), Some(&url)).await;
    assert_eq!(verdict.first_mismatch(), victim, "{verdict:#?}");
    assert!(verdict.stdout.contains("missing"), "{verdict:#?}");

    // 3. Purged and republished with one event altered: the positions continue after the old
    //    end, so position 1 is missing.
    stream.purge().await.unwrap();
    let mut altered = original.clone();
    let mut json = altered[4].1.to_vec();
    alter(&mut json);
    altered[4].1 = json.into();
    republish(&js, &altered).await;
    assert_eq!(verify(data.path(), Some(&url)).await.first_mismatch(), 1);

    // 4. A new stream with the original's settings and every event but one republished in
    //    order: positions are contiguous, and the first one that differs is named.
    let mut removed = original.clone();
    removed.remove(victim as usize - 1);
    recreate(&protected, &removed).await;
    assert_eq!(
        verify(data.path(), Some(&url)).await.first_mismatch(),
        victim
    );

    // 5. The same with one event altered, and with two events swapped.
    recreate(&protected, &altered).await;
    assert_eq!(verify(data.path(), Some(&url)).await.first_mismatch(), 5);
    let mut swapped = original.clone();
    let (a, b) = (2, covered - 1);
    swapped.swap(a as usize - 1, b as usize - 1);
    recreate(&protected, &swapped).await;
    let verdict = verify(data.path(), Some(&url)).await;
    assert_eq!(verdict.first_mismatch(), a, "{verdict:#?}");
}
