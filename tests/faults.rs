//! Faults with real processes: nats-server down and back, `kill -9` of the service mid-burst.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::nats::NatsServer;
use crate::support::service::Service;

/// Polls `condition` every 100 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_commands_fail_fast_queries_keep_answering_and_the_service_recovers() {
    let mut nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    svc.create_tenant("acme").await;
    let (ada, position) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    svc.get_at(&format!("/v1/users/{ada}"), position).await;

    nats.kill();
    let refused = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "bob@example.com"}),
        )
        .await;
    refused.assert_problem(503, "log_unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let read = svc.get(&format!("/v1/users/{ada}")).await;
    assert_eq!(
        read.status, 200,
        "queries answer from the read models: {read:?}"
    );
    let ready = svc.get("/readyz").await;
    assert_eq!(ready.body["log"], "unavailable", "{ready:?}");
    // A token the read models have not reached cannot be checked against the log now: the
    // query waits its bounded time, then says so with Retry-After.
    let stale = svc.get_at(&format!("/v1/users/{ada}"), position + 1).await;
    stale.assert_problem(503, "not_caught_up");
    assert_eq!(stale.header("retry-after"), Some("1"));

    nats.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        let answer = svc
            .post(
                "/v1/tenants/acme/users",
                json!({"email": "bob@example.com"}),
            )
            .await;
        if answer.status == 201 {
            break answer.position();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "commands still fail after NATS returned: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let members = svc.get_at("/v1/tenants/acme/users", accepted).await;
    assert_eq!(
        members.status, 200,
        "read models resumed after the outage: {members:?}"
    );
    assert_eq!(members.body["items"].as_array().unwrap().len(), 2);
}

/// Many concurrent clients create users until `kill -9`; returns every acknowledged (id, position).
async fn burst_then_kill(svc: &mut Service) -> Vec<(String, u64)> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let acknowledged = acknowledged.clone();
        let client = client.clone();
        let url = svc.url("/v1/tenants/acme/users");
        tasks.push(tokio::spawn(async move {
            for i in 0..1_000 {
                let body =
                    json!({"email": format!("w{worker}-{i}@example.com"), "roles": ["user"]});
                let sent = client
                    .post(&url)
                    .bearer_auth(crate::support::service::ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 201 {
                    continue;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let id = body["id"].as_str().unwrap().to_owned();
                acknowledged
                    .lock()
                    .unwrap()
                    .push((id, body["position"].as_u64().unwrap()));
            }
        }));
    }
    let watched = acknowledged.clone();
    eventually(
        Duration::from_secs(60),
        "a burst of acknowledged commands",
        || {
            let n = watched.lock().unwrap().len();
            async move { n >= 60 }
        },
    )
    .await;
    svc.kill9().await;
    for task in tasks {
        task.await.unwrap();
    }
    acknowledged.lock().unwrap().clone()
}

async fn every_acknowledged_user_exists_and_read_models_match_a_rebuild(
    svc: &Service,
    acked: &[(String, u64)],
) {
    let newest = acked.iter().map(|(_, p)| *p).max().unwrap();
    for (id, _) in acked {
        let read = svc.get_at(&format!("/v1/users/{id}"), newest).await;
        assert_eq!(
            read.status, 200,
            "acknowledged user {id} is missing after the crash: {read:?}"
        );
    }
    let live = svc.read_models().await;
    let rebuilt = svc.post("/v1/admin/read-models/rebuild", json!(null)).await;
    assert_eq!(rebuilt.status, 200, "{rebuilt:?}");
    assert_eq!(
        rebuilt.body["read_models"], live,
        "read models after the crash differ from a full rebuild"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_on_the_embedded_log_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let acked = burst_then_kill(&mut svc).await;
    svc.start_again().await;
    every_acknowledged_user_exists_and_read_models_match_a_rebuild(&svc, &acked).await;

    // The offline replay agrees with the live read models too.
    let live = svc.read_models().await;
    svc.stop().await;
    let offline = svc.replay().await;
    assert_eq!(
        offline["directory"],
        live["directory"]["digest"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_on_jetstream_loses_no_acknowledged_command() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::jetstream(dir.path(), &nats.url()).await;
    svc.create_tenant("acme").await;
    let acked = burst_then_kill(&mut svc).await;
    svc.start_again().await;
    every_acknowledged_user_exists_and_read_models_match_a_rebuild(&svc, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_read_models_are_rebuilt_from_the_log_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let (ada, position) = svc.create_user("acme", "ada@example.com", &["admin"]).await;
    svc.get_at(&format!("/v1/users/{ada}"), position).await;
    let live = read_models_at(&svc, position).await;
    svc.stop().await;

    // Wreck the sled store: every file in it replaced by garbage.
    let store = dir.path().join("readmodels");
    for entry in walk(&store) {
        std::fs::write(&entry, b"this is not a sled file").unwrap();
    }
    svc.start_again().await;
    let read = svc.get_at(&format!("/v1/users/{ada}"), position).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read_models_at(&svc, position).await, live);
}

/// Every read model's position and digest once all have applied `position` (a query's
/// consistency token covers the serving read models only; the audit trail's may lag a batch).
async fn read_models_at(svc: &Service, position: u64) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let models = svc.read_models().await;
        let applied = models
            .as_object()
            .is_some_and(|m| m.values().all(|v| v["position"].as_u64() >= Some(position)));
        if applied {
            return models;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the read models did not apply position {position}: {models}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `/readyz` says whether a replica can serve: while the log is down it stays 200, since queries
/// answer from the read models. `/readyz/write` says whether it can take commands: 503
/// `log_unavailable` while the log is down, 200 again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_log_is_down_the_write_probe_fails_and_the_read_probe_does_not() {
    let mut nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    let created = svc.create_tenant("acme").await;
    let probe = |path: &'static str| svc.send(svc.anonymous(reqwest::Method::GET, path));

    let write = probe("/readyz/write").await;
    assert_eq!(write.status, 200, "{write:?}");
    assert_eq!(write.body["writable"], true, "{write:?}");
    assert!(write.body["log_position"].as_u64().unwrap() >= created);

    nats.kill();
    let read = probe("/readyz").await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["log"], "unavailable", "{read:?}");
    let write = probe("/readyz/write").await;
    write.assert_problem(503, "log_unavailable");
    assert_eq!(write.header("retry-after"), Some("1"));

    nats.start();
    eventually(
        Duration::from_secs(30),
        "the write probe to pass after NATS returned",
        || async { probe("/readyz/write").await.status == 200 },
    )
    .await;
    // What the probe promised: a command goes through.
    let (user, position) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let read = svc.get_at(&format!("/v1/users/{user}"), position).await;
    assert_eq!(read.status, 200, "{read:?}");
}
