//! The key store on a real nats-server: replicas on separate connections agree on one vault and
//! one signing key ring, see each other's rotations, and keep their keys across a server restart.

use std::sync::Arc;

use async_nats::jetstream::stream::StorageType;
use idstream_keys::{
    DEFAULT_BUCKET, JetStreamKeyStore, JetStreamKeyStoreOptions, KeyStore, Keys, Rotation,
};
use time::{Duration, OffsetDateTime};

use crate::support::nats::NatsServer;

const TTL: Duration = Duration::minutes(15);

/// One replica's key store: its own NATS connection.
async fn store(nats: &NatsServer) -> Arc<dyn KeyStore> {
    Arc::new(
        JetStreamKeyStore::connect(&nats.url(), &JetStreamKeyStoreOptions::default())
            .await
            .expect("open the key bucket"),
    )
}

/// Two replicas starting at the same moment, each connecting and loading on its own.
async fn two_replicas(nats: &NatsServer, now: OffsetDateTime) -> (Keys, Keys) {
    let start = || async {
        Keys::load_or_create(store(nats).await, now, TTL)
            .await
            .expect("load or create the keys")
    };
    tokio::join!(start(), start())
}

#[tokio::test]
async fn replicas_starting_at_once_share_one_vault_and_one_signing_key() {
    let nats = NatsServer::spawn();
    let now = OffsetDateTime::now_utc();
    let (a, b) = two_replicas(&nats, now).await;

    assert_eq!(a.vault().current_kid(), b.vault().current_kid());
    let sealed = a.vault().seal(b"totp secret", "totp:user-1");
    assert_eq!(
        &b.vault().open(&sealed, "totp:user-1").unwrap()[..],
        b"totp secret"
    );
    assert_eq!(
        a.vault().blind_index("refresh", "token"),
        b.vault().blind_index("refresh", "token")
    );
    assert_eq!(a.signing().current().kid(), b.signing().current().kid());
    assert_eq!(a.signing().jwks(), b.signing().jwks());

    // The keys are in a bucket of their own, not in any event stream.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream(format!("KV_{DEFAULT_BUCKET}"))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.storage, StorageType::File);
    assert_eq!(info.config.max_messages_per_subject, 1);
    assert_eq!(
        info.config.subjects,
        vec![format!("$KV.{DEFAULT_BUCKET}.>")]
    );
}

#[tokio::test]
async fn a_rotation_on_one_replica_reaches_the_other_on_reload() {
    let nats = NatsServer::spawn();
    let now = OffsetDateTime::now_utc();
    let (a, b) = two_replicas(&nats, now).await;
    let old = a.signing().current().kid().to_owned();

    let Rotation::Rotated { kid: new } = a.rotate_signing(now + Duration::hours(1)).await.unwrap()
    else {
        panic!("the first rotation rotates");
    };
    assert_ne!(new, old);
    assert_eq!(b.signing().current().kid(), old, "not reloaded yet");

    b.reload().await.unwrap();
    assert_eq!(b.signing().current().kid(), new);
    let kids: Vec<String> = b.signing().jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kids,
        vec![new.clone(), old.clone()],
        "the old key still verifies"
    );

    // The other replica's periodic task, a few seconds later, finds a young key: no second
    // rotation.
    assert_eq!(
        b.rotate_signing_if_older_than(Duration::days(1), now + Duration::hours(1))
            .await
            .unwrap(),
        Rotation::NotDue
    );

    // A sealing rotation is shared the same way.
    let before = a.vault().seal(b"old", "ctx");
    let Rotation::Rotated { kid: sealing } = b.rotate_sealing().await.unwrap() else {
        panic!("the first rotation rotates");
    };
    a.reload().await.unwrap();
    assert_eq!(a.vault().current_kid(), sealing);
    assert_eq!(&a.vault().open(&before, "ctx").unwrap()[..], b"old");
}

#[tokio::test]
async fn the_keys_survive_a_nats_server_restart() {
    let mut nats = NatsServer::spawn();
    let now = OffsetDateTime::now_utc();
    let (a, _) = two_replicas(&nats, now).await;
    a.rotate_signing(now + Duration::minutes(5)).await.unwrap();
    let sealed = a.vault().seal(b"password hash", "password:user-1");
    let index = a.vault().blind_index("refresh", "token");

    nats.restart();

    let later = now + Duration::hours(1);
    let after = Keys::load_or_create(store(&nats).await, later, TTL)
        .await
        .unwrap();
    assert_eq!(after.vault().current_kid(), a.vault().current_kid());
    assert_eq!(
        &after.vault().open(&sealed, "password:user-1").unwrap()[..],
        b"password hash"
    );
    assert_eq!(after.vault().blind_index("refresh", "token"), index);
    assert_eq!(after.signing().current().kid(), a.signing().current().kid());
    assert_eq!(after.signing().kids(), a.signing().kids());
}

// ---------------------------------------------------------------------------------------------
// Signing-key rotation across two service replicas.
// ---------------------------------------------------------------------------------------------

mod rotation {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::support::nats::NatsServer;
    use crate::support::service::Service;

    const PASSWORD: &str = "correct horse battery staple";

    /// The `kid` of a JWT's header.
    fn kid(token: &str) -> String {
        use base64::Engine;
        let header = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }

    async fn published(replica: &Service) -> Vec<String> {
        let jwks = replica
            .send(replica.anonymous(reqwest::Method::GET, "/.well-known/jwks.json"))
            .await;
        assert_eq!(jwks.status, 200, "{jwks:?}");
        jwks.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `idstream keys rotate` against the stream's key bucket: the staged key's id.
    async fn keys_rotate(data_dir: &Path, nats_url: &str, config: &Path) -> String {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
                .args(["keys", "rotate"])
                .env("IDSTREAM_DATA_DIR", data_dir)
                .env("IDSTREAM_NATS_URL", nats_url)
                .env("IDSTREAM_CONFIG", config)
                .env("IDSTREAM_LOG", "warn")
                .output(),
        )
        .await
        .expect("keys rotate finishes")
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "keys rotate failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .strip_prefix("next signing key ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no key named in {stdout:?}"))
            .to_owned()
    }

    /// Two replicas; `idstream keys rotate`; tokens refreshed on both replicas in turn while
    /// both JWK Sets are watched. Every token's key was published by both replicas before the
    /// token was issued, and tokens from before, during and after the rotation verify on both.
    /// With `until_pruned`, also waits until the old key's tokens have expired, rotates again and
    /// checks that the old key is gone from the JWK Sets and its tokens are refused.
    async fn rotation(until_pruned: bool) {
        let nats = NatsServer::spawn();
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = dirs.0.path().join("idstream.toml");
        let ttl = if until_pruned { 30 } else { 300 };
        std::fs::write(
            &config,
            format!("signing_key_lead_seconds = 4\naccess_token_ttl_seconds = {ttl}\n"),
        )
        .unwrap();
        let settings = [("IDSTREAM_CONFIG", config.to_str().unwrap())];
        // Bootstrap creates the key ring with the configured token lifetime: a ring keeps its
        // retired keys for the longest lifetime it ever allowed.
        Service::bootstrap_with(
            dirs.0.path(),
            Some(&nats.url()),
            "acme",
            "ada@example.com",
            PASSWORD,
            &["--config", config.to_str().unwrap()],
        )
        .await;
        let a = Service::jetstream_with_env(dirs.0.path(), &nats.url(), &settings).await;
        let b = Service::jetstream_with_env(dirs.1.path(), &nats.url(), &settings).await;
        let first = a.sign_in("ada@example.com", PASSWORD).await;
        let before = first["access_token"].as_str().unwrap().to_owned();
        let old = kid(&before);
        assert_eq!(published(&a).await, vec![old.clone()]);
        assert_eq!(published(&b).await, vec![old.clone()]);

        let next = keys_rotate(dirs.1.path(), &nats.url(), &config).await;
        assert_ne!(next, old);
        let mut refresh = first["refresh_token"].as_str().unwrap().to_owned();
        let mut tokens = vec![before.clone()];
        let mut signed_by_next = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut round = 0;
        while signed_by_next < 2 {
            assert!(Instant::now() < deadline, "the next key never signed");
            // What both replicas publish, then a token from one of them.
            let (on_a, on_b) = (published(&a).await, published(&b).await);
            let replica = [&a, &b][round % 2];
            round += 1;
            let answer = replica
                .post_anonymous("/v1/auth/refresh", json!({"refresh_token": refresh}))
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            refresh = answer.body["refresh_token"].as_str().unwrap().to_owned();
            let token = answer.body["access_token"].as_str().unwrap().to_owned();
            let signer = kid(&token);
            assert!(
                signer == old || signer == next,
                "signed by {signer}, neither {old} nor {next}"
            );
            if signer == next {
                assert!(
                    on_a.contains(&next) && on_b.contains(&next),
                    "a token signed by {next} before both replicas published it: {on_a:?} {on_b:?}"
                );
                signed_by_next += 1;
            }
            tokens.push(token);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Before (the old key alone), during (both published, the old one signing) and after:
        // every token verifies on both replicas.
        for token in &tokens {
            for replica in [&a, &b] {
                let me = replica.get_as(token, "/v1/auth/me").await;
                assert_eq!(me.status, 200, "{} on {}: {me:?}", kid(token), replica.base);
            }
        }
        // The old key is still published: its tokens may be outstanding.
        for replica in [&a, &b] {
            assert!(published(replica).await.contains(&old));
        }
        if !until_pruned {
            return;
        }
        // A retired key goes at the first rotation after every token it signed has expired.
        // Wait until the last token it signed is refused (expired: 30 s plus the 30 s clock
        // leeway), rotate again, and once the newest key signs, the old one is gone from both
        // JWK Sets and its tokens are refused.
        let last_old = tokens.iter().rev().find(|t| kid(t) == old).unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(180);
        while a.get_as(&last_old, "/v1/auth/me").await.status != 401 {
            assert!(
                Instant::now() < deadline,
                "the old key's token never expired"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let newest = keys_rotate(dirs.1.path(), &nats.url(), &config).await;
        loop {
            let (on_a, on_b) = (published(&a).await, published(&b).await);
            if !on_a.contains(&old) && !on_b.contains(&old) {
                for on in [on_a, on_b] {
                    assert_eq!(on.len(), 2, "{on:?}");
                    assert!(on.contains(&next) && on.contains(&newest), "{on:?}");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the retired key was never pruned"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for replica in [&a, &b] {
            for token in [&before, &last_old] {
                replica
                    .get_as(token, "/v1/auth/me")
                    .await
                    .assert_problem(401, "unauthorized");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotated_signing_key_is_published_on_both_replicas_before_it_signs_and_tokens_verify_everywhere()
     {
        rotation(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "waits over a minute for the old key's tokens to expire: cargo test --test integration -- --ignored rotation_until_pruned"]
    async fn rotation_until_pruned_drops_the_old_key_and_refuses_its_tokens() {
        rotation(true).await;
    }
}
