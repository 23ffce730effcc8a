//! `idstream backup` while the service takes commands, and `idstream restore` elsewhere (another
//! data directory, a JetStream stream): the restored deployment holds exactly the log up to the
//! backup's cut, verifies, replays to the same read models as the original at that position,
//! and signs the same people in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::support::cli::{idstream, raw_events, replay_digests};
use crate::support::nats::NatsServer;
use crate::support::service::{ADMIN_TOKEN, Service};

const PASSWORD: &str = "backup-Password-1234";
const ADMIN: &str = "admin@example.com";
const PASSPHRASE: &str = "a long backup pass phrase";

/// The demo accounts `bootstrap --demo` printed: (email, password).
fn demo_accounts(printed: &str) -> Vec<(String, String)> {
    printed
        .lines()
        .skip_while(|line| !line.starts_with("Demo accounts"))
        .skip(1)
        .map_while(|line| {
            let mut words = line.split_whitespace();
            let email = words.next()?;
            let password = words.next()?;
            email
                .contains('@')
                .then(|| (email.to_owned(), password.to_owned()))
        })
        .collect()
}

/// Creates people until `stop`, each acknowledged with its position: (id, email, position).
async fn load(base: String, stop: Arc<AtomicBool>, worker: usize) -> Vec<(String, String, u64)> {
    let client = reqwest::Client::new();
    let mut created = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let email = format!("load{worker}-{n}@example.com");
        let answer = client
            .post(format!("{base}/v1/tenants/acme/users"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"email": email, "first_name": "Load", "last_name": "Test", "roles": ["user"]}))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(answer.status(), 201, "a command under load failed");
        let body: serde_json::Value = answer.json().await.unwrap();
        created.push((
            body["id"].as_str().unwrap().to_owned(),
            email,
            body["position"].as_u64().unwrap(),
        ));
    }
    created
}

/// The cut of a backup, from `… (positions 1 to P) …`.
fn cut_of(stdout: &str) -> u64 {
    stdout
        .split("positions 1 to ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cut in {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_elsewhere_with_the_same_digests_and_sign_ins() {
    let original = tempfile::tempdir().unwrap();
    let printed =
        Service::bootstrap_with(original.path(), None, "acme", ADMIN, PASSWORD, &["--demo"]).await;
    let accounts = demo_accounts(&printed);
    assert_eq!(accounts.len(), 3, "{printed}");
    let mut svc = Service::embedded_with_env(
        original.path(),
        &[
            ("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "10"),
            ("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "1"),
        ],
    )
    .await;
    svc.sign_in(ADMIN, PASSWORD).await;

    // Commands keep coming while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(load(svc.base.clone(), stop.clone(), w)))
        .collect();
    let before = svc.log_position().await;
    crate::support::world::eventually("the load is under way", || async {
        svc.log_position().await > before + 20
    })
    .await;
    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("backup");
    let out_arg = out.to_str().unwrap();
    let ran = idstream(
        &["backup", "--out", out_arg],
        original.path(),
        None,
        &[("IDSTREAM_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .await;
    ran.assert_success();
    let cut = cut_of(&ran.stdout);
    let at_end = svc.log_position().await;
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    for worker in workers {
        created.extend(worker.await.unwrap());
    }
    svc.stop().await;
    assert!(
        created.iter().any(|(_, _, p)| *p > cut) || at_end > cut,
        "the log grew after the cut, so the backup ran under load"
    );

    // The keys are sealed: nothing of the key store is in the backup in the clear.
    let vault = std::fs::read(original.path().join("keys/vault.key")).unwrap();
    let sealed = std::fs::read(out.join("keys.sealed")).unwrap();
    assert!(
        !sealed
            .windows(24)
            .any(|w| vault.windows(24).any(|v| v == w)),
        "no 24-byte run of the vault document appears in the sealed keys"
    );

    // Without the pass phrase, or with the wrong one, nothing is restored.
    let nowhere = tempfile::tempdir().unwrap();
    idstream(&["restore", "--from", out_arg], nowhere.path(), None, &[])
        .await
        .assert_refused("IDSTREAM_BACKUP_PASSPHRASE");
    idstream(
        &["restore", "--from", out_arg],
        nowhere.path(),
        None,
        &[("IDSTREAM_BACKUP_PASSPHRASE", "not the pass phrase at all")],
    )
    .await
    .assert_refused("does not open");
    assert!(!nowhere.path().join("log").exists());
    // Nor over a deployment that is not empty (the original went on after the cut).
    idstream(
        &["restore", "--from", out_arg],
        original.path(),
        None,
        &[("IDSTREAM_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .await
    .assert_refused("refusing to write into it");

    // Restore elsewhere, the pass phrase from a file.
    let restored = tempfile::tempdir().unwrap();
    let phrase_file = backups.path().join("passphrase");
    std::fs::write(&phrase_file, format!("{PASSPHRASE}\n")).unwrap();
    let ran = idstream(
        &[
            "restore",
            "--from",
            out_arg,
            "--passphrase-file",
            phrase_file.to_str().unwrap(),
        ],
        restored.path(),
        None,
        &[],
    )
    .await;
    ran.assert_success();
    assert!(ran.stdout.contains("chain verified"), "{ran:#?}");
    assert!(!ran.stdout.contains(PASSPHRASE) && !ran.stderr.contains(PASSPHRASE));

    let original_events = raw_events(original.path(), None).await;
    assert_eq!(
        raw_events(restored.path(), None).await,
        original_events[..cut as usize],
        "the restored log is the original up to the cut, byte for byte"
    );
    let digests = replay_digests(original.path(), None, Some(cut)).await;
    assert_eq!(
        replay_digests(restored.path(), None, Some(cut)).await,
        digests,
        "the read models at the cut are the same"
    );

    // The same people sign in; everyone acknowledged up to the cut is there, nobody after it.
    let svc = Service::embedded(restored.path()).await;
    svc.sign_in(ADMIN, PASSWORD).await;
    for (email, password) in &accounts {
        svc.sign_in(email, password).await;
    }
    for (id, email, position) in &created {
        let person = svc.get(&format!("/v1/users/{id}")).await;
        if *position <= cut {
            assert_eq!(person.status, 200, "{person:?}");
            assert_eq!(&person.body["email"], email, "{person:?}");
        } else {
            // A creation is several events (the address claimed, the person, their role): a cut
            // between them restores the person without what came after it.
            let partial =
                person.status == 200 && person.body["position"].as_u64().is_some_and(|p| p <= cut);
            assert!(
                person.status == 404 || partial,
                "{email} came after the cut ({cut}): {person:?}"
            );
        }
    }
    drop(svc);

    // And into a JetStream stream.
    let nats = NatsServer::spawn();
    let replica = tempfile::tempdir().unwrap();
    idstream(
        &["restore", "--from", out_arg],
        replica.path(),
        Some(&nats.url()),
        &[("IDSTREAM_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .await
    .assert_success();
    assert_eq!(
        replay_digests(replica.path(), Some(&nats.url()), Some(cut)).await,
        digests
    );
    let svc = Service::jetstream(replica.path(), &nats.url()).await;
    for (email, password) in &accounts {
        svc.sign_in(email, password).await;
    }

    // A JetStream deployment is backed up while it runs too: its stream and its key bucket.
    let second = backups.path().join("second");
    let ran = idstream(
        &["backup", "--out", second.to_str().unwrap()],
        replica.path(),
        Some(&nats.url()),
        &[("IDSTREAM_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
    .await;
    ran.assert_success();
    assert!(
        cut_of(&ran.stdout) > cut,
        "the sign-ins came after the first cut"
    );
    let keys_of = |dir: &std::path::Path| {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        manifest["keys"]["count"].as_u64().unwrap()
    };
    assert_eq!(
        keys_of(&second),
        keys_of(&out),
        "every key of the bucket is in it"
    );
}
