//! `idstream migrate` (the embedded log and its keys into JetStream) and `idstream log export` /
//! `log import`, with the real binary, a real nats-server and real data directories. A copy
//! must hold the same stored events at the same positions (so the chain and its signed
//! checkpoints verify), replay to the same read-model digests, and serve the same sign-ins.

use std::path::Path;

use serde_json::json;

use crate::support::cli::{idstream, raw_events, replay_digests};
use crate::support::nats::NatsServer;
use crate::support::service::Service;
use crate::support::verify::audit_verify;

const PASSWORD: &str = "migrate-Password-1234";
const ADMIN: &str = "admin@example.com";

/// An embedded deployment with a few people, one of them erased, and signed checkpoints: the
/// service is stopped when it returns. Returns the id of the erased person and of one kept.
async fn embedded_deployment(dir: &Path) -> (String, String) {
    Service::bootstrap(dir, None, "acme", ADMIN, PASSWORD).await;
    let mut svc = Service::embedded_with_env(
        dir,
        &[
            ("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "5"),
            ("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "1"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let (id, _) = svc
            .create_user("acme", &format!("person{i}@example.com"), &["user"])
            .await;
        ids.push(id);
    }
    let erased = svc
        .post(&format!("/v1/users/{}/erase", ids[0]), json!({}))
        .await;
    assert_eq!(erased.status, 200, "{erased:?}");
    svc.sign_in(ADMIN, PASSWORD).await;
    // A last checkpoint covers what came before, so the verifier checks signatures on the copy.
    let at = svc.log_position().await;
    crate::support::world::eventually("a checkpoint covers the log", || async {
        svc.log_position().await > at
    })
    .await;
    svc.stop().await;
    (ids[0].clone(), ids[1].clone())
}

/// Signs in as the administrator and reads the kept and erased people on a service.
async fn serves_the_same_people(svc: &Service, kept: &str, erased: &str) {
    svc.sign_in(ADMIN, PASSWORD).await;
    let person = svc.get(&format!("/v1/users/{kept}")).await;
    assert_eq!(person.body["email"], "person1@example.com", "{person:?}");
    let gone = svc.get(&format!("/v1/users/{erased}")).await;
    assert_eq!(gone.body["status"], "erased", "{gone:?}");
}

/// The event count of `audit verify`'s `verified N events, M checkpoints, …`.
fn verified_events(stdout: &str) -> u64 {
    stdout
        .strip_prefix("verified ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no verified count in {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_deployment_moves_to_jetstream_with_the_same_events_chain_digests_and_sign_ins()
{
    let old = tempfile::tempdir().unwrap();
    let (erased, kept) = embedded_deployment(old.path()).await;
    let stored = raw_events(old.path(), None).await;
    let digests = replay_digests(old.path(), None, None).await;
    let nats = NatsServer::spawn();
    let url = nats.url();

    let ran = idstream(&["migrate", "--to", &url], old.path(), None, &[]).await;
    ran.assert_success();
    assert!(ran.stdout.contains("chain verified"), "{ran:#?}");

    assert_eq!(
        raw_events(old.path(), Some(&url)).await,
        stored,
        "the stream holds every stored event at its position: same bytes, subjects and msg ids"
    );
    let new = tempfile::tempdir().unwrap();
    let verdict = audit_verify(new.path(), Some(&url), &[], &[]).await;
    assert_eq!(verdict.status, 0, "{verdict:?}");
    let checkpoints: u64 = verdict
        .stdout
        .split(", ")
        .nth(1)
        .and_then(|part| part.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        checkpoints > 0,
        "signed checkpoints came along: {verdict:?}"
    );
    assert_eq!(verified_events(&verdict.stdout), stored.len() as u64);
    assert_eq!(
        replay_digests(new.path(), Some(&url), None).await,
        digests,
        "a replay on the stream gives the read models of the embedded log"
    );

    let mut svc = Service::jetstream(new.path(), &url).await;
    serves_the_same_people(&svc, &kept, &erased).await;
    svc.stop().await;

    // The stream now holds events the embedded log does not: it is no copy of it any more.
    let again = idstream(&["migrate", "--to", &url], old.path(), None, &[]).await;
    again.assert_refused("refusing to write into it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_migration_resumes_and_a_stream_of_another_deployment_is_refused() {
    use idstream_eventlog::EventLog;
    let old = tempfile::tempdir().unwrap();
    embedded_deployment(old.path()).await;
    let stored = raw_events(old.path(), None).await;
    let digests = replay_digests(old.path(), None, None).await;

    // What an interruption leaves: the stream holds a prefix of the log, the keys are missing.
    let nats = NatsServer::spawn();
    let url = nats.url();
    let target = crate::support::nats::connect(&nats).await;
    let half = stored.len() / 2;
    target.import_raw(stored[..half].to_vec()).await.unwrap();
    drop(target);
    let ran = idstream(&["migrate", "--to", &url], old.path(), None, &[]).await;
    ran.assert_success();
    assert!(
        ran.stderr
            .contains(&format!("already holds the first {half} events")),
        "{ran:#?}"
    );
    assert_eq!(raw_events(old.path(), Some(&url)).await, stored);
    let new = tempfile::tempdir().unwrap();
    assert_eq!(replay_digests(new.path(), Some(&url), None).await, digests);
    // Running it once more finds the copy complete and changes nothing.
    idstream(&["migrate", "--to", &url], old.path(), None, &[])
        .await
        .assert_success();
    assert_eq!(raw_events(old.path(), Some(&url)).await, stored);

    // A stream that another deployment uses is refused untouched.
    let other = NatsServer::spawn();
    let other_dir = tempfile::tempdir().unwrap();
    let mut foreign = Service::jetstream(other_dir.path(), &other.url()).await;
    foreign.create_tenant("globex").await;
    foreign.stop().await;
    let before = raw_events(other_dir.path(), Some(&other.url())).await;
    let refused = idstream(&["migrate", "--to", &other.url()], old.path(), None, &[]).await;
    refused.assert_refused("refusing to write into it");
    assert_eq!(
        raw_events(other_dir.path(), Some(&other.url())).await,
        before
    );

    // And a running service's log is not copied from under it.
    let mut running = Service::embedded(old.path()).await;
    let busy = idstream(&["migrate", "--to", &url], old.path(), None, &[]).await;
    busy.assert_refused("stop it first");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exported_log_imports_into_an_empty_data_directory_or_stream_and_nothing_else() {
    let old = tempfile::tempdir().unwrap();
    let (erased, kept) = embedded_deployment(old.path()).await;
    let files = tempfile::tempdir().unwrap();

    // Exporting works while the service runs: what it writes is a prefix of the log.
    let mut svc = Service::embedded(old.path()).await;
    let live = files.path().join("live.jsonl");
    idstream(
        &["log", "export", "--out", live.to_str().unwrap()],
        old.path(),
        None,
        &[],
    )
    .await
    .assert_success();
    svc.create_user("acme", "late@example.com", &["user"]).await;
    svc.stop().await;

    let stored = raw_events(old.path(), None).await;
    let digests = replay_digests(old.path(), None, None).await;
    let file = files.path().join("log.jsonl");
    let file_arg = file.to_str().unwrap();
    let ran = idstream(&["log", "export", "--out", file_arg], old.path(), None, &[]).await;
    ran.assert_success();
    assert!(
        ran.stdout
            .starts_with(&format!("exported {} events", stored.len())),
        "{ran:#?}"
    );
    // Never over an existing file.
    idstream(&["log", "export", "--out", file_arg], old.path(), None, &[])
        .await
        .assert_refused("must not exist");

    // Into an empty data directory, with the key store copied beside it: the same deployment.
    let copy = tempfile::tempdir().unwrap();
    let ran = idstream(
        &["log", "import", "--from", file_arg],
        copy.path(),
        None,
        &[],
    )
    .await;
    ran.assert_success();
    assert_eq!(raw_events(copy.path(), None).await, stored);
    copy_dir(&old.path().join("keys"), &copy.path().join("keys"));
    assert_eq!(audit_verify(copy.path(), None, &[], &[]).await.status, 0);
    assert_eq!(replay_digests(copy.path(), None, None).await, digests);
    let mut svc = Service::embedded(copy.path()).await;
    serves_the_same_people(&svc, &kept, &erased).await;
    svc.stop().await;

    // Into an empty stream.
    let nats = NatsServer::spawn();
    idstream(
        &["log", "import", "--from", file_arg],
        copy.path(),
        Some(&nats.url()),
        &[],
    )
    .await
    .assert_success();
    assert_eq!(raw_events(copy.path(), Some(&nats.url())).await, stored);

    // The live export is a prefix of the log: importing it where the whole log is finds the
    // target holds more than the file and refuses; a changed file is refused before anything.
    let ran = idstream(
        &["log", "import", "--from", live.to_str().unwrap()],
        copy.path(),
        None,
        &[],
    )
    .await;
    ran.assert_refused("refusing to write into it");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(2, 3);
    let damaged = files.path().join("damaged.jsonl");
    std::fs::write(&damaged, lines.join("\n") + "\n").unwrap();
    let empty = tempfile::tempdir().unwrap();
    idstream(
        &["log", "import", "--from", damaged.to_str().unwrap()],
        empty.path(),
        None,
        &[],
    )
    .await
    .assert_refused("without a gap");
    assert!(
        !empty.path().join("log").exists(),
        "nothing was created for a file that does not check"
    );
}

/// Copies a directory of files (the key store) as an operator would with `cp -a`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
