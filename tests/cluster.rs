//! A three-node JetStream cluster under faults, with real processes: three clustered
//! nats-servers (`support::cluster`), an R3 stream, and two idstream replicas on it, under a
//! steady load of concurrent commands and queries on both replicas. The test kills a follower
//! of the stream, then its leader, restarting each, then restarts the idstream replicas one
//! after the other.
//!
//! Asserted: no acknowledged command is lost (every user whose creation was answered 201 is
//! there, on both replicas), every error a client got over HTTP is a problem with a code, both
//! replicas' read models have equal digests at the same position at the end, and
//! `idstream audit verify` finds the chain intact. Printed, never asserted (run with
//! `--nocapture`): for each phase the commands acknowledged, the errors clients saw by code,
//! and how long after the fault the last failure and the next acknowledgement came.
//!
//! The short variant runs in the suite; `cluster_long_…` (ignored) runs three rounds with ten
//! times the load per phase:
//! `cargo test --test integration -- --ignored --nocapture cluster_long`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::cluster::NatsCluster;
use crate::support::netns::NetnsCluster;
use crate::support::service::{ADMIN_TOKEN, Service};

const STREAM: &str = "IDSTREAM";

/// How long a phase may take to see its acknowledgements before the test gives up: a cluster
/// that has not recovered by then has not recovered.
const PHASE_LIMIT: Duration = Duration::from_secs(90);

/// The service's settings for this test: an R3 stream, and chain checkpoints often enough that
/// `audit verify` has signatures to check.
const SETTINGS: &[(&str, &str)] = &[
    ("IDSTREAM_STREAM_REPLICAS", "3"),
    ("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "200"),
    ("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "2"),
];

/// How hard and how long the test pushes.
struct Shape {
    /// Rounds of (kill follower, restart, kill leader, restart, restart replica A, then B).
    rounds: usize,
    /// Commands each replica must acknowledge in each phase before the next fault.
    acks_per_phase: usize,
    /// Concurrent command clients per replica.
    command_workers: usize,
    /// Concurrent query clients per replica.
    query_workers: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_loses_no_acknowledged_command_through_node_and_replica_restarts() {
    run(Shape {
        rounds: 1,
        acks_per_phase: 15,
        command_workers: 2,
        query_workers: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long variant (several minutes): cargo test --test integration -- --ignored --nocapture cluster_long"]
async fn cluster_long_three_rounds_of_node_and_replica_restarts_lose_no_acknowledged_command() {
    run(Shape {
        rounds: 3,
        acks_per_phase: 150,
        command_workers: 4,
        query_workers: 2,
    })
    .await;
}

async fn run(shape: Shape) {
    let mut cluster = NatsCluster::spawn();
    cluster.wait_for_jetstream().await;
    let urls = cluster.urls();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Service::jetstream_with_env(dir_a.path(), &urls, SETTINGS).await;
    let mut b = Service::jetstream_with_env(dir_b.path(), &urls, SETTINGS).await;
    let created = a.create_tenant("acme").await;
    let seen = b.get_at("/v1/tenants/acme", created).await;
    assert_eq!(seen.status, 200, "{seen:?}");
    let mut leader = cluster.wait_until_stream_is_whole(STREAM).await;

    let load = Load::start(&[&a, &b], &shape);
    load.phase("steady load", &shape).await;
    for round in 1..=shape.rounds {
        let follower = (leader + 1) % 3;
        load.mark(format!(
            "round {round}: kill follower {}",
            cluster.name(follower)
        ));
        cluster.kill(follower);
        load.phase_wait(&shape).await;
        load.mark(format!("round {round}: restart {}", cluster.name(follower)));
        cluster.start(follower);
        leader = cluster.wait_until_stream_is_whole(STREAM).await;
        load.phase_wait(&shape).await;

        load.mark(format!(
            "round {round}: kill stream leader {}",
            cluster.name(leader)
        ));
        cluster.kill(leader);
        load.phase_wait(&shape).await;
        load.mark(format!("round {round}: restart {}", cluster.name(leader)));
        cluster.start(leader);
        leader = cluster.wait_until_stream_is_whole(STREAM).await;
        load.phase_wait(&shape).await;

        for (index, replica) in [&mut a, &mut b].into_iter().enumerate() {
            let name = ["A", "B"][index];
            load.mark(format!("round {round}: restart idstream replica {name}"));
            replica.restart().await;
            load.set_base(index, &replica.base);
            load.phase_wait(&shape).await;
        }
    }
    finish(load, &a, &b, dir_a.path(), &urls).await;
    drop(cluster);
}

/// Stops the load and checks the end state: every HTTP error a coded problem, no acknowledged
/// command lost on either replica, equal read models, and `audit verify` clean against `urls`.
async fn finish(load: Load, a: &Service, b: &Service, data_dir: &Path, urls: &str) {
    let phases = load.phases();
    let records = load.stop().await;
    report(&records, &phases);
    check(&records, a, b, data_dir, urls).await;
}

/// The end-state checks of [`finish`] over what the clients saw.
async fn check(records: &[Record], a: &Service, b: &Service, data_dir: &Path, urls: &str) {
    // Every HTTP error was a problem with a stable code.
    let uncoded: Vec<&String> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(code) if code.ends_with(" -") => Some(code),
            _ => None,
        })
        .collect();
    assert!(
        uncoded.is_empty(),
        "errors without a problem code: {uncoded:?}"
    );

    // Not one acknowledged command lost, on either replica.
    let acked: Vec<(String, u64)> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Acked { user, position } => Some((user.clone(), *position)),
            _ => None,
        })
        .collect();
    let newest = acked
        .iter()
        .map(|(_, p)| *p)
        .max()
        .expect("acknowledged commands");
    for replica in [a, b] {
        caught_up(replica, newest).await;
        let missing = missing_users(replica, &acked, newest).await;
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged users are missing on {}: {missing:?}",
            missing.len(),
            acked.len(),
            replica.base
        );
    }

    // Both replicas folded the same log into the same bytes.
    let (on_a, on_b) = read_models_at_the_same_position(a, b).await;
    assert_eq!(on_a, on_b, "the replicas' read models differ");

    // The tamper-evidence chain is intact across every failover.
    let verdict = audit_verify(data_dir, urls).await;
    assert!(
        verdict.0 == 0 && verdict.1.starts_with("verified "),
        "audit verify: {verdict:?}"
    );
    println!(
        "cluster: {} acknowledged commands, none lost; read models equal at position {}; {}",
        acked.len(),
        on_a.values()
            .next()
            .and_then(|m| m["position"].as_u64())
            .unwrap_or_default(),
        verdict.1.trim()
    );
}

/// A network partition: the stream's leader is cut off from the other two nodes (blackhole
/// routes between network namespaces) while replica A stays attached to it and replica B to the
/// other two. B goes on acknowledging commands (the majority elects a new leader); A cannot
/// append until the partition heals, and its write probe says so; after the heal both go on.
/// Asserted as for the faults above, plus the write probe; printed: what clients saw.
///
/// **It fails on Debian's nats-server 2.9.10** (four runs of five on the development machine),
/// so it is not in the suite. Replica A, attached to the cut-off leader, gets some commands
/// acknowledged and reads events that the majority never stored; after the heal either the
/// old leader's store keeps them (the test prints each node's own stream state: the same last
/// sequence with other byte counts) or it is repaired but A's read models have folded them. Seen:
/// acknowledged users missing from one replica, read-model digests that differ at the same
/// position, and `idstream audit verify` naming the first changed event (the chain's checkpoints
/// were written over the other version). Run it by hand:
/// `cargo test --test integration -- --ignored --nocapture cut_off`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "fails on nats-server 2.9.10: after the partition heals, nodes serve different events at the same positions; see the doc comment"]
async fn a_stream_leader_cut_off_from_the_other_nodes_loses_no_acknowledged_command() {
    let shape = Shape {
        rounds: 1,
        acks_per_phase: 15,
        command_workers: 2,
        query_workers: 1,
    };
    let cluster = NetnsCluster::spawn();
    cluster.wait_for_jetstream().await;
    let all = (0..3).map(|i| cluster.url(i)).collect::<Vec<_>>().join(",");
    // The event stream first, so that its leader is known before the replicas pick their nodes.
    let options = idstream_eventlog::jetstream::JetStreamOptions {
        replicas: 3,
        ..idstream_eventlog::jetstream::JetStreamOptions::new(all.clone())
    };
    drop(
        idstream_eventlog::jetstream::JetStreamLog::connect(options)
            .await
            .expect("create the R3 event stream"),
    );
    let leader = cluster.wait_until_stream_is_whole(STREAM).await;
    let majority = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.url(i))
        .collect::<Vec<_>>()
        .join(",");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Service::jetstream_with_env(dir_a.path(), &cluster.url(leader), SETTINGS).await;
    let b = Service::jetstream_with_env(dir_b.path(), &majority, SETTINGS).await;
    let created = a.create_tenant("acme").await;
    let seen = b.get_at("/v1/tenants/acme", created).await;
    assert_eq!(seen.status, 200, "{seen:?}");

    let load = Load::start(&[&a, &b], &shape);
    load.phase("steady load", &shape).await;
    load.mark(format!(
        "stream leader {} cut off from the other nodes, replica A attached to it",
        cluster.name(leader)
    ));
    cluster.cut_off(leader);
    load.phase_wait_on(&[1], &shape).await;
    // A cannot append while its node is in the minority, and its write probe says so.
    let write_probe = || a.send(a.anonymous(reqwest::Method::GET, "/readyz/write"));
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        let probe = write_probe().await;
        if probe.status == 503 {
            probe.assert_problem(503, "log_unavailable");
            break;
        }
        if Instant::now() > deadline {
            let records = load.records.lock().unwrap().clone();
            report(&records, &load.phases());
            panic!("A's write probe still passes while its node is cut off: {probe:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.mark(format!("partition of {} healed", cluster.name(leader)));
    cluster.heal(leader);
    load.phase_wait(&shape).await;
    let phases = load.phases();
    let records = load.stop().await;
    report(&records, &phases);
    // What each node holds once the stream is whole again (printed: replicas that agree hold
    // the same messages and bytes up to the same last sequence).
    cluster.wait_until_stream_is_whole(STREAM).await;
    for i in 0..3 {
        println!(
            "  node {}: {}",
            cluster.name(i),
            cluster.local_stream_state(i, STREAM).await
        );
    }
    check(&records, &a, &b, dir_a.path(), &all).await;
}

/// What one request got.
#[derive(Debug, Clone)]
enum Outcome {
    /// A command answered 201: the user it created.
    Acked { user: String, position: u64 },
    /// A query answered 200.
    Answered,
    /// Anything else: `"<status> <problem code>"` (`-` when there was none), or `transport:
    /// connect|timeout|other` when no HTTP answer came.
    Failed(String),
}

#[derive(Debug, Clone)]
struct Record {
    started: Instant,
    ended: Instant,
    replica: usize,
    command: bool,
    outcome: Outcome,
}

/// The clients: command and query workers on each replica until stopped, recording everything.
struct Load {
    bases: Vec<Arc<RwLock<String>>>,
    records: Arc<Mutex<Vec<Record>>>,
    phases: Mutex<Vec<(String, Instant)>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(replicas: &[&Service], shape: &Shape) -> Load {
        let bases: Vec<_> = replicas
            .iter()
            .map(|s| Arc::new(RwLock::new(s.base.clone())))
            .collect();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for (replica, base) in bases.iter().enumerate() {
            for worker in 0..shape.command_workers + shape.query_workers {
                let command = worker < shape.command_workers;
                let (base, records, stop, client) =
                    (base.clone(), records.clone(), stop.clone(), client.clone());
                tasks.push(tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let base = base.read().unwrap().clone();
                        let started = Instant::now();
                        let outcome = if command {
                            let email = format!("r{replica}w{worker}n{i}@example.com");
                            let request = client
                                .post(format!("{base}/v1/tenants/acme/users"))
                                .bearer_auth(ADMIN_TOKEN)
                                .json(&json!({"email": email, "roles": ["user"]}));
                            outcome(request, 201).await
                        } else {
                            let request = client
                                .get(format!("{base}/v1/tenants/acme/users?limit=10"))
                                .bearer_auth(ADMIN_TOKEN);
                            outcome(request, 200).await
                        };
                        let failed = matches!(outcome, Outcome::Failed(_));
                        records.lock().unwrap().push(Record {
                            started,
                            ended: Instant::now(),
                            replica,
                            command,
                            outcome,
                        });
                        // A steady load, not a flood; and no busy loop against a stopped port.
                        let pause = if failed { 100 } else { 10 };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }));
            }
        }
        Load {
            bases,
            records,
            phases: Mutex::new(Vec::new()),
            stop,
            tasks,
        }
    }

    fn set_base(&self, replica: usize, base: &str) {
        *self.bases[replica].write().unwrap() = base.to_owned();
    }

    /// Starts a phase: what happens now, and when.
    fn mark(&self, what: String) {
        self.phases.lock().unwrap().push((what, Instant::now()));
    }

    fn phases(&self) -> Vec<(String, Instant)> {
        self.phases.lock().unwrap().clone()
    }

    async fn phase(&self, what: &str, shape: &Shape) {
        self.mark(what.to_owned());
        self.phase_wait(shape).await;
    }

    /// Waits until each replica has acknowledged `acks_per_phase` commands sent since the
    /// current phase began.
    async fn phase_wait(&self, shape: &Shape) {
        self.phase_wait_on(&[0, 1], shape).await;
    }

    /// [`Load::phase_wait`] for the replicas `on` only.
    async fn phase_wait_on(&self, on: &[usize], shape: &Shape) {
        let (what, since) = self.phases().last().cloned().expect("a phase");
        let deadline = Instant::now() + PHASE_LIMIT;
        loop {
            let counts = {
                let records = self.records.lock().unwrap();
                let mut counts = [0usize; 2];
                for r in records.iter().filter(|r| r.started >= since) {
                    if matches!(r.outcome, Outcome::Acked { .. }) {
                        counts[r.replica] += 1;
                    }
                }
                counts
            };
            if on.iter().all(|&r| counts[r] >= shape.acks_per_phase) {
                return;
            }
            if Instant::now() > deadline {
                let records = self.records.lock().unwrap().clone();
                report(&records, &self.phases());
                panic!("{what}: commands did not recover within {PHASE_LIMIT:?} (acks {counts:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.records.lock().unwrap().clone()
    }
}

/// Sends `request` and classifies the answer.
async fn outcome(request: reqwest::RequestBuilder, success: u16) -> Outcome {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let kind = if e.is_connect() {
                "connect"
            } else if e.is_timeout() {
                "timeout"
            } else {
                "other"
            };
            return Outcome::Failed(format!("transport: {kind}"));
        }
    };
    let status = response.status().as_u16();
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(_) => return Outcome::Failed(format!("{status} -")),
    };
    if status != success {
        let code = body["code"].as_str().unwrap_or("-");
        return Outcome::Failed(format!("{status} {code}"));
    }
    match success {
        201 => match (body["id"].as_str(), body["position"].as_u64()) {
            (Some(user), Some(position)) => Outcome::Acked {
                user: user.to_owned(),
                position,
            },
            _ => Outcome::Failed(format!("{status} -")),
        },
        _ => Outcome::Answered,
    }
}

/// Prints, per phase: commands acknowledged, queries answered, errors by code, and for each
/// replica the seconds from the phase's start to its last failed command and to the first
/// acknowledgement after that.
fn report(records: &[Record], phases: &[(String, Instant)]) {
    println!("cluster phases (seconds from the phase's start):");
    for (i, (what, at)) in phases.iter().enumerate() {
        let until = phases.get(i + 1).map(|(_, t)| *t);
        let inside: Vec<&Record> = records
            .iter()
            .filter(|r| r.started >= *at && until.is_none_or(|u| r.started < u))
            .collect();
        let acked = inside
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Acked { .. }))
            .count();
        let answered = inside
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Answered))
            .count();
        let secs = |t: Instant| format!("{:.2}", t.duration_since(*at).as_secs_f64());
        // Each kind of error: how many, and when the first and the last of them were answered.
        let mut errors: BTreeMap<String, (usize, Instant, Instant)> = BTreeMap::new();
        for r in &inside {
            if let Outcome::Failed(code) = &r.outcome {
                let kind = if r.command { "command" } else { "query" };
                let entry = errors
                    .entry(format!("{kind} {code}"))
                    .or_insert((0, r.ended, r.ended));
                entry.0 += 1;
                entry.1 = entry.1.min(r.ended);
                entry.2 = entry.2.max(r.ended);
            }
        }
        let errors: Vec<String> = errors
            .into_iter()
            .map(|(what, (n, first, last))| format!("{n}× {what} ({}–{})", secs(first), secs(last)))
            .collect();
        // Per replica: when its last failed command was answered, and its first acknowledgement
        // of a command sent after that.
        let recovery: Vec<String> = ["A", "B"]
            .iter()
            .enumerate()
            .map(|(replica, name)| {
                let mine = || {
                    inside
                        .iter()
                        .filter(move |r| r.replica == replica && r.command)
                };
                let last_failure = mine()
                    .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
                    .map(|r| r.ended)
                    .max();
                match last_failure {
                    None => format!("{name}: no failed command"),
                    Some(failed) => {
                        let again = mine()
                            .filter(|r| {
                                r.started >= failed && matches!(r.outcome, Outcome::Acked { .. })
                            })
                            .map(|r| r.ended)
                            .min();
                        format!(
                            "{name}: last failed command {}, next acknowledged {}",
                            secs(failed),
                            again.map_or("in the next phase".into(), secs)
                        )
                    }
                }
            })
            .collect();
        println!(
            "  {what}: {acked} commands acknowledged, {answered} queries answered; errors [{}]; {}",
            errors.join(", "),
            recovery.join("; "),
        );
    }
}

/// Waits until `replica` is ready and its read models have applied `position` (a replica
/// restarted a moment ago may still be catching up on a busy machine).
async fn caught_up(replica: &Service, position: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = replica.get("/readyz").await;
        if ready.status == 200
            && ready.body["read_models"]
                .as_object()
                .is_some_and(|m| m.values().all(|p| p.as_u64() >= Some(position)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not reach position {position}: {ready:?}",
            replica.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The acknowledged users `replica` does not know, read at least as fresh as `newest`.
async fn missing_users(replica: &Service, acked: &[(String, u64)], newest: u64) -> Vec<String> {
    use futures::StreamExt;
    let answers: Vec<(String, u16)> = futures::stream::iter(acked.iter().cloned())
        .map(|(user, _)| async move {
            let answer = replica.get_at(&format!("/v1/users/{user}"), newest).await;
            (user, answer.status)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    answers
        .into_iter()
        .filter(|(_, status)| *status != 200)
        .map(|(user, status)| format!("{user} ({status})"))
        .collect()
}

/// Both replicas' read models (position and digest), taken when each has applied the log's end.
async fn read_models_at_the_same_position(
    a: &Service,
    b: &Service,
) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let end = a.log_position().await;
        let models = |v: Value| -> BTreeMap<String, Value> {
            serde_json::from_value(v).expect("read models by name")
        };
        let (on_a, on_b) = (models(a.read_models().await), models(b.read_models().await));
        let positions: BTreeSet<u64> = on_a
            .values()
            .chain(on_b.values())
            .filter_map(|m| m["position"].as_u64())
            .collect();
        if positions.len() == 1 && positions.contains(&end) {
            return (on_a, on_b);
        }
        assert!(
            Instant::now() < deadline,
            "the read models did not reach the log's end {end}: {on_a:?} {on_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `idstream audit verify` against the cluster: (exit status, stdout, stderr).
async fn audit_verify(data_dir: &Path, urls: &str) -> (i32, String, String) {
    let verdict = crate::support::verify::audit_verify(
        data_dir,
        Some(urls),
        &[("IDSTREAM_STREAM_REPLICAS", "3")],
        &[],
    )
    .await;
    (verdict.status, verdict.stdout, verdict.stderr)
}
