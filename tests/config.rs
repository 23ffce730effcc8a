//! Configuration means what it says: a setting that is also stored elsewhere (the signing key
//! ring's token lifetime, a stream's replica count) applies from the next start, or the service
//! refuses to start and says which setting, where it is stored, and what to do.

use std::path::Path;
use std::time::Duration;

use base64::Engine;

use crate::support::cluster::NatsCluster;
use crate::support::nats::NatsServer;
use crate::support::service::Service;

const PASSWORD: &str = "correct horse battery staple";

/// `exp - iat` of an access token, and the `expires_in` it was answered with.
fn lifetime(tokens: &serde_json::Value) -> (i64, i64) {
    let token = tokens["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        tokens["expires_in"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_lifetime_configured_after_bootstrap_applies_from_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    // Bootstrap creates the signing key ring with the default lifetime (300 s).
    Service::bootstrap(dir.path(), None, "acme", "ada@example.com", PASSWORD).await;
    let config = dir.path().join("idstream.toml");
    std::fs::write(&config, "access_token_ttl_seconds = 3600\n").unwrap();
    let mut svc =
        Service::embedded_with_env(dir.path(), &[("IDSTREAM_CONFIG", config.to_str().unwrap())])
            .await;
    let tokens = svc.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(lifetime(&tokens), (3600, 3600), "{tokens}");

    // Shorter again: from the next start on.
    std::fs::write(&config, "access_token_ttl_seconds = 60\n").unwrap();
    svc.restart().await;
    let tokens = svc.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(lifetime(&tokens), (60, 60), "{tokens}");
}

/// `idstream serve` with `settings`, expected to refuse to start: its standard error.
async fn refused_start(data_dir: &Path, nats_url: &str, settings: &[(&str, &str)]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
            .arg("serve")
            .env("IDSTREAM_LISTEN", "127.0.0.1:0")
            .env("IDSTREAM_DATA_DIR", data_dir)
            .env("IDSTREAM_NATS_URL", nats_url)
            .env("IDSTREAM_LOG", "warn")
            .env_remove("IDSTREAM_CONFIG")
            .envs(settings.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve refuses within a minute")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success() && !stdout.contains("idstream listening"),
        "serve started: {stdout}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_stream_replicas_than_a_single_server_holds_stop_the_service_with_the_setting_named() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::jetstream(dir.path(), &nats.url()).await;
    svc.create_tenant("acme").await;
    svc.stop().await;

    let stderr = refused_start(
        dir.path(),
        &nats.url(),
        &[("IDSTREAM_STREAM_REPLICAS", "3")],
    )
    .await;
    for words in [
        "stream_replicas is 3",
        "IDSTREAM_STREAM_REPLICAS",
        "stream IDSTREAM is on a single NATS server, not a cluster",
        "stored in the stream's configuration on the NATS servers",
    ] {
        assert!(stderr.contains(words), "{words:?} not in: {stderr}");
    }
    // Nor does a single server create a stream with three replicas.
    let fresh = tempfile::tempdir().unwrap();
    let stderr = refused_start(
        fresh.path(),
        &nats.url(),
        &[
            ("IDSTREAM_STREAM_REPLICAS", "3"),
            ("IDSTREAM_STREAM", "OTHER"),
        ],
    )
    .await;
    for words in [
        "stream_replicas = 3",
        "IDSTREAM_STREAM_REPLICAS",
        "not a cluster",
    ] {
        assert!(stderr.contains(words), "{words:?} not in: {stderr}");
    }
    // With the setting the server can hold, it starts as before.
    svc.start_again().await;
    assert_eq!(svc.get("/v1/tenants/acme").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_replicas_setting_changed_on_a_cluster_applies_from_the_next_start() {
    let cluster = NatsCluster::spawn();
    cluster.wait_for_jetstream().await;
    let dir = tempfile::tempdir().unwrap();
    // The first start creates the event stream and the key bucket with one replica each.
    let mut svc = Service::jetstream(dir.path(), &cluster.urls()).await;
    let created = svc.create_tenant("acme").await;
    svc.stop().await;
    for stream in ["IDSTREAM", "KV_idstream_keys"] {
        let peers = cluster.stream_peers(stream).await.expect("the stream");
        assert_eq!(peers.replicas, 1, "{stream}: {peers:?}");
    }

    let svc = Service::jetstream_with_env(
        dir.path(),
        &cluster.urls(),
        &[("IDSTREAM_STREAM_REPLICAS", "3")],
    )
    .await;
    for stream in ["IDSTREAM", "KV_idstream_keys"] {
        cluster.wait_until_stream_is_whole(stream).await;
        let peers = cluster.stream_peers(stream).await.expect("the stream");
        assert_eq!(peers.replicas, 3, "{stream}: {peers:?}");
    }
    // The read models catch up with the re-replicated stream (under a loaded suite this can
    // take longer than one consistency wait); until then reads answer 503 `not_caught_up`.
    let patience = std::time::Duration::from_secs(90);
    let what = "the read models reach the tenant";
    crate::support::world::eventually_within(patience, what, || async {
        let read = svc.get_at("/v1/tenants/acme", created).await;
        assert!(
            read.status == 200 || read.body["code"] == "not_caught_up",
            "{read:?}"
        );
        read.status == 200
    })
    .await;
    svc.create_user("acme", "ada@example.com", &["user"]).await;
}
