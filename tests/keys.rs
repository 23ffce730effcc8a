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
