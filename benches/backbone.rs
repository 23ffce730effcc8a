//! The load harness: end-to-end figures of the backbone, each beside a raw baseline measured in
//! the same run on the same machine, and their ratio.
//!
//! ```text
//! cargo bench --bench backbone
//! IDSTREAM_BENCH_EVENTS=500000 IDSTREAM_BENCH_SECONDS=10 cargo bench --bench backbone
//! IDSTREAM_BENCH_ONLY=rebuild cargo bench --bench backbone    # one part: commands, rebuild, embedded
//! ```
//!
//! It spawns its own nats-server (free port, temporary store; killed at the end) and measures:
//!
//! 1. **Command throughput**: many concurrent clients creating tenants through [`App`] on the
//!    JetStream log with the real read models running, against raw pipelined JetStream publishes
//!    of payloads of the same size.
//! 2. **Single-command latency**: granting and revoking one custom permission of one warm member
//!    (a command that answers once its event is in the log, as most do), one command at a time,
//!    against one awaited raw publish carrying the same headers (`Nats-Msg-Id`,
//!    `Nats-Expected-Last-Subject-Sequence`). The two are interleaved in rounds so that a change
//!    in machine load hits both alike. An `(info)` line adds suspend/reinstate, which answer only
//!    once the replica's read models hold them (so a suspension stops the user's tokens at once).
//! 3. **Projection rebuild rate**: `rebuild_offline` with the service's projections over a stream
//!    of realistic events, against the slower of a raw ordered-consumer replay of that stream and
//!    raw batched sled inserts of the same rows (the very keys and values the rebuild wrote, read
//!    back from its store, inserted into a fresh one in batches of 1000 in key order). An
//!    `(info)` line keeps the earlier, harsher baseline: one synthetic row per event.
//! 4. **Embedded-log append throughput**: many concurrent appenders on [`EmbeddedLog`], against
//!    one raw writer appending same-size records with one `sync_data` per group as large as the
//!    number of appenders: the best group commit can do.
//!
//! Lines marked `(capacity)` give what the rebuild's population costs to keep: the stream's bytes
//! in JetStream's file store and the same events' bytes in the embedded log, per event; the four
//! read models' bytes on disk after the rebuild, per event; the process's peak RSS; and the
//! offline rebuild from the embedded log (see *Capacity* in `benches/RESULTS.md`).
//!
//! Lines marked `(info)` break a figure down so that a missed target can be attributed: the log
//! layer (`JetStreamLog::append`) alone, before and while the read models consume the stream; and
//! the rebuild's two halves (reading the log in pages, applying pages from memory).
//!
//! Targets are printed as met or missed; the process fails only on errors. Performance targets
//! live here, never as timing assertions in tests. Other work on the machine skews every figure
//! (the load average is printed at the start and the end); the ratios, measured side by side, less
//! so.

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use idstream_app::{App, AppError, Caller, NewUserRequest, SuspendRequest, SystemClock};
use idstream_domain::access::Permission;
use idstream_domain::envelope::{Actor, AggregateType, Metadata};
use idstream_domain::events::{
    EmailClaimed, PermissionsGranted, PermissionsRevoked, RoleAssigned, TenantCreated,
    TenantRenamed, UserRegistered, UserReinstated, UserSuspended,
};
use idstream_domain::{DomainEvent, EventEnvelope, StreamKey, TenantId, UserId, email};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};
use idstream_eventlog::{Expected, SharedLog};
use idstream_projection_runtime::{ReadModels, apply_events, rebuild_offline};

use time::OffsetDateTime;
use ulid::Ulid;

/// The stream the application writes to in the command benchmarks.
const APP_STREAM: &str = "IDSTREAM_BENCH";
/// The stream the rebuild benchmark fills and replays.
const REBUILD_STREAM: &str = "IDSTREAM_REBUILD";
/// Raw baselines use their own stream and subject space (the prefix has the length of
/// `idstream`, so subjects are as long as the service's).
const RAW_STREAM: &str = "RAWBENCH";
const RAW_PREFIX: &str = "rawbench.events";

/// What the harness measures and for how long; every knob is an environment variable.
struct Knobs {
    /// `IDSTREAM_BENCH_SECONDS`: length of each throughput measurement.
    seconds: Duration,
    /// `IDSTREAM_BENCH_EVENTS`: events in the rebuild stream.
    events: u64,
    /// `IDSTREAM_BENCH_CLIENTS`: concurrent clients issuing commands.
    clients: usize,
    /// `IDSTREAM_BENCH_WINDOW`: publishes in flight in the pipelined raw baselines.
    window: usize,
    /// `IDSTREAM_BENCH_LATENCY_SAMPLES`: measured commands (and as many raw publishes).
    latency_samples: usize,
    /// `IDSTREAM_BENCH_APPENDERS`: concurrent appenders on the embedded log.
    appenders: usize,
    /// `IDSTREAM_NATS_SERVER`: the nats-server binary.
    nats_server: PathBuf,
    /// `IDSTREAM_BENCH_ONLY`: run one part only (`commands`, `rebuild` or `embedded`), to
    /// profile it; all of them when unset.
    only: Option<String>,
}

impl Knobs {
    /// Whether the part `part` runs.
    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == part)
    }
}

impl Knobs {
    fn from_env() -> anyhow::Result<Knobs> {
        fn number(name: &str, default: u64) -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={text:?} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let knobs = Knobs {
            seconds: Duration::from_secs(number("IDSTREAM_BENCH_SECONDS", 5)?),
            events: number("IDSTREAM_BENCH_EVENTS", 200_000)?,
            clients: number("IDSTREAM_BENCH_CLIENTS", 256)? as usize,
            window: number("IDSTREAM_BENCH_WINDOW", 256)? as usize,
            latency_samples: number("IDSTREAM_BENCH_LATENCY_SAMPLES", 4000)? as usize,
            appenders: number("IDSTREAM_BENCH_APPENDERS", 64)? as usize,
            nats_server: std::env::var_os("IDSTREAM_NATS_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server")),
            only: std::env::var("IDSTREAM_BENCH_ONLY")
                .ok()
                .filter(|only| !only.trim().is_empty()),
        };
        ensure!(
            knobs
                .only
                .as_deref()
                .is_none_or(|only| ["commands", "rebuild", "embedded"].contains(&only)),
            "IDSTREAM_BENCH_ONLY must be commands, rebuild or embedded"
        );
        ensure!(
            !knobs.seconds.is_zero(),
            "IDSTREAM_BENCH_SECONDS must be at least 1"
        );
        ensure!(knobs.events > 0, "IDSTREAM_BENCH_EVENTS must be at least 1");
        ensure!(
            knobs.clients > 0 && knobs.window > 0 && knobs.appenders > 0,
            "clients, window and appenders must be at least 1"
        );
        ensure!(
            knobs.latency_samples >= 10,
            "IDSTREAM_BENCH_LATENCY_SAMPLES must be at least 10"
        );
        Ok(knobs)
    }
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(knobs))
}

async fn run(knobs: Knobs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let version = nats_server_version(&knobs.nats_server)?;
    let scratch = tempfile::Builder::new()
        .prefix("idstream-bench-")
        .tempdir()?;
    println!("idstream backbone benchmarks");
    println!(
        "  machine: {cores} cores; load average at start: {}",
        load_average()
    );
    println!("  nats-server: {version} ({})", knobs.nats_server.display());
    println!(
        "  scratch: {} ({})",
        scratch.path().display(),
        filesystem_of(scratch.path())
    );
    println!(
        "  knobs: IDSTREAM_BENCH_SECONDS={} IDSTREAM_BENCH_EVENTS={} IDSTREAM_BENCH_CLIENTS={} IDSTREAM_BENCH_WINDOW={} \
         IDSTREAM_BENCH_LATENCY_SAMPLES={} IDSTREAM_BENCH_APPENDERS={}",
        knobs.seconds.as_secs(),
        knobs.events,
        knobs.clients,
        knobs.window,
        knobs.latency_samples,
        knobs.appenders
    );
    println!(
        "  note: nats-server {version} stores JetStream messages without an fsync per message (its default sync \
         policy); the embedded log fsyncs every group it acknowledges."
    );
    println!();

    let nats = NatsServer::spawn(&knobs.nats_server, scratch.path())?;
    let client = async_nats::ConnectOptions::new()
        .name("idstream-bench-raw")
        .connect(nats.url())
        .await?;
    let raw = async_nats::jetstream::new(client.clone());
    let mut table = Table::default();

    if knobs.runs("commands") {
        commands(&knobs, &nats, &raw, scratch.path(), &mut table).await?;
    }
    if knobs.runs("rebuild") {
        rebuild_rate(&knobs, &nats, &raw, scratch.path(), &mut table).await?;
    }
    drop(raw);
    drop(client);
    drop(nats);

    if knobs.runs("embedded") {
        embedded_append(&knobs, scratch.path(), &mut table).await?;
    }

    println!();
    println!("load average at the end: {}", load_average());
    println!();
    table.print();
    Ok(())
}

/// The service's log layer on `stream` of the harness's nats-server.
async fn service_log(nats: &NatsServer, stream: &str) -> anyhow::Result<SharedLog> {
    let log = JetStreamLog::connect(JetStreamOptions {
        stream: stream.to_owned(),
        ..JetStreamOptions::new(nats.url())
    })
    .await?;
    Ok(Arc::new(log))
}

/// Parts 1 and 2: the command path on the JetStream log with the real read models running.
async fn commands(
    knobs: &Knobs,
    nats: &NatsServer,
    raw: &Context,
    scratch: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    let log = service_log(nats, APP_STREAM).await?;
    let baseline = throughput_baseline(knobs, raw).await?;
    // The log layer before any read model consumes the stream, to tell its cost from theirs.
    log_layer_alone(knobs, &log, baseline).await?;

    let caches = idstream_app::Caches::new(idstream_keys::ReadModelSeal::in_memory());
    // As the service does (`startup::open_app`): the read models share one subscription.
    let read_models = ReadModels::start(
        &scratch.join("readmodels"),
        idstream_eventlog::FanOutLog::wrap(log.clone()),
        idstream_app::projections(caches.clone()),
    )
    .await?;
    let backlog = log.last_position().await?;
    let catching_up = Instant::now();
    let cpu_before = process_cpu();
    read_models
        .wait_for(backlog, Duration::from_secs(300))
        .await?;
    let caught_up = catching_up.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    println!(
        "  (info) the live read models caught up with those {backlog} events in {caught_up:.2?} = {}/s, \
         using {:.1} µs of this process's CPU per event",
        rate(backlog as f64 / caught_up.as_secs_f64()),
        cpu.as_secs_f64() * 1e6 / backlog.max(1) as f64
    );
    // What those events left in each read model (tenants, plus the idempotency records of the
    // appends that carried a key): the rows each has to write per event.
    let mut held = Vec::new();
    for name in read_models.names() {
        let tree = read_models.tree(name);
        let rows = tree
            .iter()
            .keys()
            .filter(|key| matches!(key, Ok(k) if k.first() != Some(&0)))
            .count();
        held.push(format!("{name} {:.2}", rows as f64 / backlog.max(1) as f64));
    }
    println!("  (info) rows per event they hold: {}", held.join(", "));
    println!();
    let app = App::new(
        log.clone(),
        read_models.clone(),
        caches.clone(),
        Arc::new(SystemClock),
        Duration::from_secs(30),
        idstream_app::IdentityServices::local(&scratch.join("identity"))
            .await
            .map_err(|e| anyhow!("identity services: {e}"))?,
        idstream_app::replay::Replays::new(
            scratch.join("replays"),
            log.clone(),
            caches.seal.clone(),
        ),
    );
    command_throughput(knobs, &app, &read_models, baseline, table).await?;
    command_latency(knobs, raw, &app, table).await?;
    drop(app);
    read_models.shutdown().await;
    drop(log);
    raw.delete_stream(APP_STREAM)
        .await
        .map_err(|e| anyhow!("deleting stream {APP_STREAM}: {e}"))?;

    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Command throughput

/// Raw pipelined publishes of payloads the size of a real command's event; events/s.
async fn throughput_baseline(knobs: &Knobs, raw: &Context) -> anyhow::Result<f64> {
    println!(
        "== raw JetStream publish, window {}, {:?} each ==",
        knobs.window, knobs.seconds
    );
    // The payload size of a real command's event, at the tenant numbers this run reaches.
    let size = serde_json::to_vec(&tenant_created(100_000))?.len();
    let payload = Bytes::from(vec![b'x'; size]);
    let subject = |n| format!("{RAW_PREFIX}.t-{n}.tenant.t-{n}");
    let (sent, elapsed) =
        raw_pipelined(raw, knobs, payload.clone(), |n| (subject(n), None)).await?;
    let baseline = sent as f64 / elapsed.as_secs_f64();
    println!(
        "  baseline: {size} B payloads, one subject each: {sent} in {elapsed:.2?} = {}/s",
        rate(baseline)
    );
    let (sent, elapsed) = raw_pipelined(raw, knobs, payload, |n| (subject(n), Some(0))).await?;
    let with_header = sent as f64 / elapsed.as_secs_f64();
    println!(
        "  (info) the same with Nats-Expected-Last-Subject-Sequence: 0, as a creating command sends: {}/s ({:.2}×)",
        rate(with_header),
        with_header / baseline
    );
    println!();
    Ok(baseline)
}

/// `JetStreamLog::append` on its own, before the read models start: throughput and latency.
async fn log_layer_alone(knobs: &Knobs, log: &SharedLog, baseline: f64) -> anyhow::Result<()> {
    println!("== breakdown: JetStreamLog::append with no read model attached to the stream ==");
    let throughput = log_append_throughput(knobs, log, "a").await?;
    println!(
        "  (info) {} clients creating tenants: {}/s ({:.2}× raw)",
        knobs.clients,
        rate(throughput),
        throughput / baseline
    );
    let mut appender = LogAppender::new(&"alone".parse()?)?;
    for _ in 0..200 {
        appender.once(log).await?;
    }
    let mut samples = Vec::with_capacity(knobs.latency_samples);
    for _ in 0..knobs.latency_samples {
        samples.push(appender.once(log).await?);
    }
    println!(
        "  (info) one awaited append at a time (Nats-Msg-Id + expected sequence): p50 {:.1?}, p99 {:.1?}",
        percentile(&mut samples, 0.50),
        percentile(&mut samples, 0.99)
    );
    println!();
    Ok(())
}

async fn command_throughput(
    knobs: &Knobs,
    app: &App,
    read_models: &ReadModels,
    baseline: f64,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!(
        "== command throughput: {} clients creating tenants for {:?}, read models running ==",
        knobs.clients, knobs.seconds
    );
    let before = app.operations.log().last_position().await?;
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + knobs.seconds;
    let started = Instant::now();
    let clients: Vec<_> = (0..knobs.clients)
        .map(|_| {
            let (app, counter) = (app.clone(), counter.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while tokio::time::Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let ctx = command_context(None)?;
                    let tenant: TenantId = format!("t-{n}").parse()?;
                    app.tenants
                        .create(&ctx, tenant, format!("Tenant {n}"))
                        .await
                        .map_err(app_error)?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut commands = 0;
    for client in clients {
        commands += client.await??;
    }
    let elapsed = started.elapsed();
    let last = app.operations.log().last_position().await?;
    let events = last - before;
    ensure!(
        events == commands,
        "{commands} commands appended {events} events; expected one each"
    );
    let ours = events as f64 / elapsed.as_secs_f64();
    println!(
        "  idstream: {commands} App::create_tenant, {events} events in {elapsed:.2?} = {}/s",
        rate(ours)
    );
    println!(
        "  baseline: raw pipelined publish (above) = {}/s",
        rate(baseline)
    );
    let waited = Instant::now();
    read_models.wait_for(last, Duration::from_secs(120)).await?;
    println!(
        "  (info) the read models reached the last event {:.2?} after the last command returned",
        waited.elapsed()
    );

    let log_only = log_append_throughput(knobs, app.operations.log(), "b").await?;
    println!(
        "  (info) breakdown: JetStreamLog::append alone, same clients and events, read models running: {}/s ({:.2}× raw)",
        rate(log_only),
        log_only / baseline
    );
    read_models
        .wait_for(
            app.operations.log().last_position().await?,
            Duration::from_secs(120),
        )
        .await?;

    table.push(Row {
        name: "command throughput (events/s)",
        ours: rate(ours),
        baseline: format!("{} raw pipelined", rate(baseline)),
        ratio: ours / baseline,
        target: "≥ 0.50×",
        met: ours / baseline >= 0.5,
    });
    println!();
    Ok(())
}

/// `knobs.clients` tasks appending one TenantCreated each to tenants `<prefix>-<n>` for
/// `knobs.seconds`; events/s.
async fn log_append_throughput(
    knobs: &Knobs,
    log: &SharedLog,
    prefix: &'static str,
) -> anyhow::Result<f64> {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + knobs.seconds;
    let started = Instant::now();
    let appenders: Vec<_> = (0..knobs.clients)
        .map(|_| {
            let (log, counter) = (log.clone(), counter.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while tokio::time::Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let event = tenant_created_named(&format!("{prefix}-{n}"), n);
                    log.append(vec![event], Expected::NoEvents, None).await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut appended = 0;
    for appender in appenders {
        appended += appender.await??;
    }
    Ok(appended as f64 / started.elapsed().as_secs_f64())
}

/// Publishes to a fresh raw stream for `knobs.seconds`, keeping `knobs.window` acks in flight.
/// `message(n)` gives the subject of the n-th message and its expected last subject sequence.
async fn raw_pipelined(
    raw: &Context,
    knobs: &Knobs,
    payload: Bytes,
    message: impl Fn(u64) -> (String, Option<u64>),
) -> anyhow::Result<(u64, Duration)> {
    create_raw_stream(raw).await?;
    let mut inflight = FuturesUnordered::new();
    let mut sent = 0u64;
    let started = Instant::now();
    while started.elapsed() < knobs.seconds {
        let (subject, expected) = message(sent);
        let mut publish = PublishMessage::build().payload(payload.clone());
        if let Some(sequence) = expected {
            publish = publish.expected_last_subject_sequence(sequence);
        }
        let ack = raw.send_publish(subject, publish).await?;
        inflight.push(ack.into_future());
        sent += 1;
        if inflight.len() >= knobs.window {
            inflight.next().await.expect("acks are in flight")?;
        }
    }
    while let Some(ack) = inflight.next().await {
        ack?;
    }
    let elapsed = started.elapsed();
    delete_raw_stream(raw).await?;
    Ok((sent, elapsed))
}

// ---------------------------------------------------------------------------------------------
// 2. Single-command latency

const SUSPENSION_REASON: &str = "latency benchmark";
/// The custom permission the latency benchmark grants and revokes.
const LATENCY_PERMISSION: &str = "entity.invoice:read";

/// The two events of the latency benchmark's command pair, for `user` in `tenant`.
fn permission_events(tenant: &TenantId, user: UserId) -> anyhow::Result<[EventEnvelope; 2]> {
    let key = StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Membership,
        user.to_string(),
    );
    let permissions: std::collections::BTreeSet<Permission> = [LATENCY_PERMISSION.parse()?].into();
    Ok([
        envelope(
            DomainEvent::PermissionsGranted(PermissionsGranted {
                user,
                permissions: permissions.clone(),
                expires_at: None,
            }),
            &key,
            0,
        ),
        envelope(
            DomainEvent::PermissionsRevoked(PermissionsRevoked { user, permissions }),
            &key,
            0,
        ),
    ])
}

/// Grants and revokes a permission of a member of its own through `JetStreamLog::append`
/// directly, with the headers a command with an Idempotency-Key sends: the log layer's share of
/// a command.
struct LogAppender {
    events: [EventEnvelope; 2],
    last: u64,
    done: usize,
}

impl LogAppender {
    fn new(tenant: &TenantId) -> anyhow::Result<LogAppender> {
        Ok(LogAppender {
            events: permission_events(tenant, UserId::new(Ulid::new()))?,
            last: 0,
            done: 0,
        })
    }

    async fn once(&mut self, log: &SharedLog) -> anyhow::Result<Duration> {
        let mut event = self.events[self.done % 2].clone();
        event.id = Ulid::new();
        let key = format!("{:032x}", Ulid::new().0);
        let started = Instant::now();
        let appended = log
            .append(vec![event], Expected::from_last(self.last), Some(&key))
            .await?;
        let took = started.elapsed();
        self.last = appended.last;
        self.done += 1;
        Ok(took)
    }
}

async fn command_latency(
    knobs: &Knobs,
    raw: &Context,
    app: &App,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!(
        "== single-command latency: grant/revoke a permission of one warm member, {} commands, read models running ==",
        knobs.latency_samples
    );
    let tenant: TenantId = "latency".parse()?;
    app.tenants
        .create(&command_context(None)?, tenant.clone(), "Latency".into())
        .await
        .map_err(app_error)?;
    let request = NewUserRequest {
        email: "latency@example.com".into(),
        first_name: "Lena".into(),
        last_name: "Tency".into(),
        roles: vec!["user".parse()?],
        invite: false,
        phone: None,
        attributes: None,
    };
    let created = app
        .users
        .create(&command_context(None)?, tenant.clone(), request)
        .await
        .map_err(app_error)?;
    let user: UserId = created
        .id
        .parse()
        .map_err(|e| anyhow!("create_user returned id {:?}: {e}", created.id))?;

    // The baseline carries bodies of exactly the sizes of the two events.
    let events = permission_events(&tenant, user)?;
    let sizes = [
        serde_json::to_vec(&events[0])?.len(),
        serde_json::to_vec(&events[1])?.len(),
    ];
    let bodies = sizes.map(|size| Bytes::from(vec![b'x'; size]));
    create_raw_stream(raw).await?;
    let raw_subject = format!("{RAW_PREFIX}.{tenant}.membership.{user}");
    let mut raw_last = 0u64;
    let mut raw_once = async |i: usize| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let publish = PublishMessage::build()
            .payload(bodies[i % 2].clone())
            .message_id(format!("{:032x}:0", Ulid::new().0))
            .expected_last_subject_sequence(raw_last);
        let ack = raw
            .send_publish(raw_subject.clone(), publish)
            .await?
            .await?;
        let took = started.elapsed();
        raw_last = ack.sequence;
        Ok(took)
    };
    let mut appender = LogAppender::new(&tenant)?;
    let permissions: std::collections::BTreeSet<Permission> = [LATENCY_PERMISSION.parse()?].into();
    let mut command = 0usize;
    let mut app_once = async || -> anyhow::Result<Duration> {
        // Every command carries an Idempotency-Key, as the HTTP API's clients send, so the app's
        // publish has both headers like the baseline's.
        let ctx = command_context(Some(&format!("latency-{}", Ulid::new())))?;
        let started = Instant::now();
        let outcome = if command.is_multiple_of(2) {
            app.memberships
                .grant_permissions(&ctx, tenant.clone(), user, permissions.clone(), None)
                .await
        } else {
            app.memberships
                .revoke_permissions(&ctx, tenant.clone(), user, permissions.clone())
                .await
        };
        let took = started.elapsed();
        let outcome = outcome.map_err(app_error)?;
        ensure!(
            !outcome.replayed,
            "a fresh command was answered as a replay"
        );
        command += 1;
        Ok(took)
    };

    // Interleaved in rounds, so that a change in machine load hits all three alike.
    for i in 0..200 {
        raw_once(i).await?;
        appender.once(app.operations.log()).await?;
        app_once().await?;
    }
    let rounds = 10;
    let per_round = knobs.latency_samples.div_ceil(rounds);
    let (mut raw_samples, mut log_samples, mut app_samples) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for i in 0..per_round {
            raw_samples.push(raw_once(i).await?);
        }
        for _ in 0..per_round {
            log_samples.push(appender.once(app.operations.log()).await?);
        }
        for _ in 0..per_round {
            app_samples.push(app_once().await?);
        }
    }
    // Suspend/reinstate answer once this replica's read models hold them: their latency includes
    // the read models' fold of the event.
    let mut held_samples = Vec::new();
    for i in 0..per_round.max(10) {
        let ctx = command_context(Some(&format!("latency-{}", Ulid::new())))?;
        let started = Instant::now();
        if i % 2 == 0 {
            let request = SuspendRequest {
                until: None,
                reason: Some(SUSPENSION_REASON.into()),
            };
            app.users.suspend(&ctx, user, request).await
        } else {
            app.users.reinstate(&ctx, user).await
        }
        .map_err(app_error)?;
        held_samples.push(started.elapsed());
    }
    delete_raw_stream(raw).await?;
    let (raw_p50, raw_p99) = (
        percentile(&mut raw_samples, 0.50),
        percentile(&mut raw_samples, 0.99),
    );
    let (log_p50, log_p99) = (
        percentile(&mut log_samples, 0.50),
        percentile(&mut log_samples, 0.99),
    );
    let (app_p50, app_p99) = (
        percentile(&mut app_samples, 0.50),
        percentile(&mut app_samples, 0.99),
    );
    println!(
        "  baseline: one awaited raw publish with Nats-Msg-Id and Nats-Expected-Last-Subject-Sequence, {}/{} B, \
         on a stream no one consumes: p50 {raw_p50:.1?}, p99 {raw_p99:.1?}",
        sizes[0], sizes[1]
    );
    println!(
        "  idstream: App::grant_permissions / revoke_permissions: p50 {app_p50:.1?}, p99 {app_p99:.1?}"
    );
    let ratio = app_p50.as_secs_f64() / raw_p50.as_secs_f64();
    println!(
        "  (info) p99 ratio {:.2}×",
        app_p99.as_secs_f64() / raw_p99.as_secs_f64()
    );
    println!(
        "  (info) App::suspend_user / reinstate_user, which answer once the read models hold them: p50 {:.1?}, p99 {:.1?}",
        percentile(&mut held_samples, 0.50),
        percentile(&mut held_samples, 0.99)
    );
    println!(
        "  (info) breakdown: JetStreamLog::append alone, same headers, read models running: p50 {log_p50:.1?} \
         ({:.2}× raw), p99 {log_p99:.1?}",
        log_p50.as_secs_f64() / raw_p50.as_secs_f64()
    );
    table.push(Row {
        name: "single-command latency p50 (p99)",
        ours: format!("{} ({})", micros(app_p50), micros(app_p99)),
        baseline: format!("{} ({}) raw awaited", micros(raw_p50), micros(raw_p99)),
        ratio,
        target: "≤ 1.25×",
        met: ratio <= 1.25,
    });
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Projection rebuild rate

async fn rebuild_rate(
    knobs: &Knobs,
    nats: &NatsServer,
    raw: &Context,
    scratch: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    let n = knobs.events;
    println!("== projection rebuild: {n} realistic events ==");
    let log = service_log(nats, REBUILD_STREAM).await?;
    let filling = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut payload_bytes = 0usize;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for event in population().take(n as usize) {
        let body = serde_json::to_vec(&event)?;
        payload_bytes += body.len();
        *kinds.entry(event.event_type.clone()).or_default() += 1;
        inflight.push(
            raw.publish(event.subject(), body.into())
                .await?
                .into_future(),
        );
        if inflight.len() >= knobs.window {
            inflight.next().await.expect("acks are in flight")?;
        }
    }
    while let Some(ack) = inflight.next().await {
        ack?;
    }
    ensure!(
        log.last_position().await? == n,
        "the rebuild stream should hold exactly {n} events"
    );
    println!(
        "  filled in {:.2?}: mean event {} B; {}",
        filling.elapsed(),
        payload_bytes / n as usize,
        kinds
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let users = kinds.get("UserRegistered").copied().unwrap_or(0);
    let log_bytes = raw
        .get_stream(REBUILD_STREAM)
        .await?
        .info()
        .await?
        .state
        .bytes;
    println!(
        "  (capacity) JetStream's file store holds the stream in {} MiB: {} B per event ({users} users, \
         {:.2} events per user)",
        log_bytes / (1024 * 1024),
        log_bytes / n,
        n as f64 / users.max(1) as f64
    );

    // (a) Raw replay: one ordered consumer over the whole stream, touching every payload byte.
    let started = Instant::now();
    let stream = raw.get_stream(REBUILD_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut count, mut checksum) = (0u64, 0u64);
    while count < n {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("the raw replay stalled")?
            .ok_or_else(|| anyhow!("the ordered consumer ended after {count} messages"))??;
        checksum = message
            .payload
            .iter()
            .fold(checksum, |sum, &byte| sum.wrapping_add(u64::from(byte)));
        count += 1;
    }
    let replay_elapsed = started.elapsed();
    drop(messages);
    std::hint::black_box(checksum);
    let replay = n as f64 / replay_elapsed.as_secs_f64();
    println!(
        "  (a) raw ordered-consumer replay: {n} in {replay_elapsed:.2?} = {}/s",
        rate(replay)
    );

    // (c) The service's offline rebuild into a fresh directory.
    let dir = scratch.join("rebuild");
    let started = Instant::now();
    let cpu_before = process_cpu();
    let digests = rebuild_offline(
        &dir,
        log.clone(),
        idstream_app::offline_projections(idstream_keys::ReadModelSeal::in_memory()),
        |_, _| {},
    )
    .await?;
    let rebuild_elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let rebuild = n as f64 / rebuild_elapsed.as_secs_f64();
    println!(
        "  (c) rebuild_offline ({}): {n} in {rebuild_elapsed:.2?} = {}/s, using {:.1} µs of this process's CPU \
         per event ({:.2} cores)",
        digests.keys().cloned().collect::<Vec<_>>().join(", "),
        rate(rebuild),
        cpu.as_secs_f64() * 1e6 / n as f64,
        cpu.as_secs_f64() / rebuild_elapsed.as_secs_f64()
    );

    let models_bytes = dir_bytes(&dir)?;
    println!(
        "  (capacity) the four read models on disk (sled, after the rebuild): {} MiB = {} B per event; \
         peak RSS of this process so far {} MiB",
        models_bytes / (1024 * 1024),
        models_bytes / n,
        peak_rss_kib() / 1024
    );
    embedded_capacity(n, scratch).await?;

    // (d) Point-in-time replay (F-AU-2): the directory and access read models up to the middle
    // of the log, into a store of their own, as the audit endpoints build them.
    let middle = n / 2;
    let replays = idstream_app::replay::Replays::new(
        scratch.join("replays"),
        log.clone(),
        idstream_keys::ReadModelSeal::in_memory(),
    );
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let replayed = replays
        .at(
            idstream_app::replay::AsOf::Position(middle),
            u64::MAX,
            |_, _| {},
        )
        .await
        .map_err(|e| anyhow!("replaying: {e}"))?;
    let replay_elapsed = started.elapsed();
    ensure!(
        replayed.info.position == middle,
        "the replay stops at the middle"
    );
    drop(replayed);
    let past = middle as f64 / replay_elapsed.as_secs_f64();
    let rss_after = peak_rss_kib();
    println!(
        "  (d) point-in-time replay to position {middle}: {}/s; peak RSS of the process {} MiB before, {} MiB after",
        rate(past),
        rss_before / 1024,
        rss_after / 1024
    );
    let past_ratio = past / rebuild;
    table.push(Row {
        name: "point-in-time replay (events/s)",
        ours: format!("{} (peak RSS {} MiB)", rate(past), rss_after / 1024),
        baseline: format!("rebuild_offline {}", rate(rebuild)),
        ratio: past_ratio,
        target: "≥ 0.80×",
        met: past_ratio >= 0.8,
    });

    // Breakdown of (c): reading the log through the EventLog trait in rebuild_offline's pages
    // (ordered consumer + envelope decode), then applying those pages from memory.
    let started = Instant::now();
    let mut pages = Vec::new();
    let mut after = 0;
    while after < n {
        let page = log.read_after(after, 8192).await?;
        after = page
            .last()
            .map(|e| e.position)
            .ok_or_else(|| anyhow!("read_after({after}) returned nothing"))?;
        pages.push(page);
    }
    let read_elapsed = started.elapsed();
    println!(
        "  (info) breakdown: JetStreamLog::read_after in pages of 8192: {}/s",
        rate(n as f64 / read_elapsed.as_secs_f64())
    );
    drop(log);
    let apply_dir = scratch.join("apply-only");
    let (apply_elapsed, each) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Duration, Vec<(&'static str, Duration)>)> {
            let db = sled::Config::new().path(&apply_dir).open()?;
            let started = Instant::now();
            let mut each = Vec::new();
            for projection in
                idstream_app::offline_projections(idstream_keys::ReadModelSeal::in_memory())
            {
                let tree = db.open_tree(projection.name())?;
                let one = Instant::now();
                for page in &pages {
                    apply_events(projection.as_ref(), &tree, page)?;
                }
                each.push((projection.name(), one.elapsed()));
            }
            db.flush()?;
            Ok((started.elapsed(), each))
        },
    )
    .await??;
    println!(
        "  (info) breakdown: apply_events of those pages from memory into a fresh store, flushed: {}/s",
        rate(n as f64 / apply_elapsed.as_secs_f64())
    );
    for (name, elapsed) in each {
        println!(
            "  (info)   {name} alone, one after the other on one thread: {}/s",
            rate(n as f64 / elapsed.as_secs_f64())
        );
    }

    // (b) Raw sled: the very rows the projections wrote, inserted in batches into a fresh store.
    let rows = stored_rows(&dir).await?;
    println!(
        "  (info) the projections hold {} rows (mean key {} B, value {} B): {:.2} rows per event",
        rows.count,
        rows.key_bytes / rows.count.max(1),
        rows.value_bytes / rows.count.max(1),
        rows.count as f64 / n as f64
    );
    println!(
        "  (info) rows per event by read model and key prefix: {}",
        rows.by_prefix
            .iter()
            .map(|((model, prefix), count)| format!(
                "{model} {prefix}/ {:.2}",
                *count as f64 / n as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (key_len, value_len) = (
        (rows.key_bytes / rows.count.max(1)).max(8) as usize,
        (rows.value_bytes / rows.count.max(1)) as usize,
    );
    let (count, trees) = (rows.count, rows.trees);
    let same_dir = scratch.join("raw-sled-same-rows");
    let same_elapsed =
        tokio::task::spawn_blocking(move || raw_sled_same_rows(&same_dir, trees)).await??;
    let sled = n as f64 / same_elapsed.as_secs_f64();
    println!(
        "  (b) raw sled apply_batch of those {count} rows, 1000 per batch, in key order, flushed: {same_elapsed:.2?} \
         = {}/s events",
        rate(sled)
    );
    // The baseline earlier figures in the README were measured against: one synthetic row per
    // event, sequential keys of the mean size.
    let sled_dir = scratch.join("raw-sled");
    let sled_elapsed =
        tokio::task::spawn_blocking(move || raw_sled_inserts(&sled_dir, n, key_len, value_len))
            .await??;
    println!(
        "  (info) raw sled apply_batch of one synthetic row per event ({key_len} B keys, {value_len} B values, \
         sequential), flushed: {n} in {sled_elapsed:.2?} = {}/s",
        rate(n as f64 / sled_elapsed.as_secs_f64())
    );

    let slower = replay.min(sled);
    let ratio = rebuild / slower;
    table.push(Row {
        name: "projection rebuild (events/s)",
        ours: rate(rebuild),
        baseline: format!(
            "{} = min(replay {}, sled {})",
            rate(slower),
            rate(replay),
            rate(sled)
        ),
        ratio,
        target: "≥ 0.50× and ≥ 100k/s",
        met: ratio >= 0.5 && rebuild >= 100_000.0,
    });
    raw.delete_stream(REBUILD_STREAM)
        .await
        .map_err(|e| anyhow!("deleting stream {REBUILD_STREAM}: {e}"))?;
    println!();
    Ok(())
}

/// The CPU time (user and system) this process has used so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The same population in the embedded log (the default backend): its size on disk per event,
/// and the offline rebuild of the read models from it.
async fn embedded_capacity(n: u64, scratch: &Path) -> anyhow::Result<()> {
    let dir = scratch.join("embedded-capacity");
    let log: SharedLog = EmbeddedLog::open(&dir.join("log"), EmbeddedOptions::default()).await?;
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for event in population().take(n as usize) {
        let log = log.clone();
        inflight.push(async move { log.append(vec![event], Expected::Any, None).await });
        if inflight.len() >= 256 {
            inflight.next().await.expect("appends are in flight")?;
        }
    }
    while let Some(appended) = inflight.next().await {
        appended?;
    }
    let filled = started.elapsed();
    let log_bytes = dir_bytes(&dir.join("log"))?;
    println!(
        "  (capacity) the embedded log holds it in {} MiB: {} B per event (filled by 256 concurrent \
         appenders in {filled:.2?})",
        log_bytes / (1024 * 1024),
        log_bytes / n
    );
    let started = Instant::now();
    rebuild_offline(
        &dir.join("models"),
        log,
        idstream_app::offline_projections(idstream_keys::ReadModelSeal::in_memory()),
        |_, _| {},
    )
    .await?;
    let elapsed = started.elapsed();
    println!(
        "  (capacity) rebuild_offline from the embedded log: {n} in {elapsed:.2?} = {}/s",
        rate(n as f64 / elapsed.as_secs_f64())
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The process's peak resident set (VmHWM), in KiB; 0 where /proc is missing.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

struct Rows {
    count: u64,
    key_bytes: u64,
    value_bytes: u64,
    /// Rows by read model and key prefix (the key up to its first `/`).
    by_prefix: BTreeMap<(&'static str, String), u64>,
    /// The rows themselves by read model, in key order.
    trees: Vec<(&'static str, Vec<(sled::IVec, sled::IVec)>)>,
}

/// Counts the rows the projections wrote in the store at `dir` (the runtime's own keys, which
/// begin with byte 0, excluded). The store was closed a moment ago; sled's lock may take a moment
/// to be released.
async fn stored_rows(dir: &Path) -> anyhow::Result<Rows> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match sled::Config::new().path(&dir).open() {
                Ok(db) => break db,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => bail!("reopening the rebuilt store: {e}"),
            }
        };
        let mut rows = Rows {
            count: 0,
            key_bytes: 0,
            value_bytes: 0,
            by_prefix: BTreeMap::new(),
            trees: Vec::new(),
        };
        for projection in
            idstream_app::offline_projections(idstream_keys::ReadModelSeal::in_memory())
        {
            let mut kept = Vec::new();
            for entry in db.open_tree(projection.name())?.iter() {
                let (key, value) = entry?;
                if key.first() != Some(&0) {
                    rows.count += 1;
                    rows.key_bytes += key.len() as u64;
                    rows.value_bytes += value.len() as u64;
                    let prefix = key.split(|&b| b == b'/').next().unwrap_or_default();
                    *rows
                        .by_prefix
                        .entry((
                            projection.name(),
                            String::from_utf8_lossy(prefix).into_owned(),
                        ))
                        .or_default() += 1;
                    kept.push((key, value));
                }
            }
            rows.trees.push((projection.name(), kept));
        }
        Ok(rows)
    })
    .await?
}

/// Inserts `trees` (rows by tree name) into a fresh store at `dir` in batches of 1000, then
/// flushes; returns the time taken.
fn raw_sled_same_rows(
    dir: &Path,
    trees: Vec<(&'static str, Vec<(sled::IVec, sled::IVec)>)>,
) -> anyhow::Result<Duration> {
    // The configuration the service's read-model store uses (`idstream-projection-runtime`).
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
        .open()?;
    let started = Instant::now();
    for (name, rows) in trees {
        let tree = db.open_tree(name)?;
        for chunk in rows.chunks(1000) {
            let mut batch = sled::Batch::default();
            for (key, value) in chunk {
                batch.insert(key.clone(), value.clone());
            }
            tree.apply_batch(batch)?;
        }
    }
    db.flush()?;
    Ok(started.elapsed())
}

fn raw_sled_inserts(
    dir: &Path,
    rows: u64,
    key_len: usize,
    value_len: usize,
) -> anyhow::Result<Duration> {
    let db = sled::Config::new().path(dir).open()?;
    let tree = db.open_tree("raw")?;
    let value = vec![b'v'; value_len];
    let started = Instant::now();
    let mut batch = sled::Batch::default();
    for i in 0..rows {
        batch.insert(format!("{i:0key_len$}").into_bytes(), value.clone());
        if (i + 1) % 1000 == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    tree.apply_batch(batch)?;
    db.flush()?;
    Ok(started.elapsed())
}

/// An endless, deterministic population: tenants of 50 users each; every user's email claim,
/// registration and `user` role; an `admin` role for every fifth user, a suspension for every
/// tenth and a reinstatement for every twentieth; a rename for some tenants.
fn population() -> impl Iterator<Item = EventEnvelope> {
    (0u64..).flat_map(|u| {
        let mut events = Vec::with_capacity(8);
        let tenant: TenantId = format!("tenant-{}", u / 50)
            .parse()
            .expect("a valid tenant id");
        let tenant_key =
            StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str());
        if u % 50 == 0 {
            let name = format!("Tenant number {}", u / 50);
            events.push(envelope(
                DomainEvent::TenantCreated(TenantCreated { name }),
                &tenant_key,
                u,
            ));
            if (u / 50) % 7 == 3 {
                let name = format!("Renamed tenant {}", u / 50);
                events.push(envelope(
                    DomainEvent::TenantRenamed(TenantRenamed { name }),
                    &tenant_key,
                    u,
                ));
            }
        }
        let user = UserId::new(Ulid::from_parts(1_750_000_000_000 + u, u128::from(u)));
        let address = format!("user.{u}@example-{}.com", u / 50);
        let claim_key = StreamKey::new(None, AggregateType::Email, email::claim_id(&address));
        let claimed = EmailClaimed {
            user,
            claimed_at: at(u),
            request: Some(format!("{:032x}", u128::from(u) * 7919)),
        };
        events.push(envelope(DomainEvent::EmailClaimed(claimed), &claim_key, u));
        let user_key = StreamKey::new(None, AggregateType::User, user.to_string());
        let registered = UserRegistered {
            email: address,
            first_name: format!("First{u}"),
            last_name: format!("Last{u}"),
            tenant: tenant.clone(),
        };
        events.push(envelope(
            DomainEvent::UserRegistered(registered),
            &user_key,
            u,
        ));
        let membership_key =
            StreamKey::new(Some(tenant), AggregateType::Membership, user.to_string());
        let role = |name: &str| RoleAssigned {
            user,
            role: name.parse().expect("a valid role"),
            expires_at: None,
        };
        events.push(envelope(
            DomainEvent::RoleAssigned(role("user")),
            &membership_key,
            u,
        ));
        if u % 5 == 0 {
            events.push(envelope(
                DomainEvent::RoleAssigned(role("admin")),
                &membership_key,
                u,
            ));
        }
        if u % 10 == 0 {
            let suspended = UserSuspended {
                until: None,
                reason: Some("policy review".into()),
            };
            events.push(envelope(
                DomainEvent::UserSuspended(suspended),
                &user_key,
                u,
            ));
            if u % 20 == 0 {
                events.push(envelope(
                    DomainEvent::UserReinstated(UserReinstated {}),
                    &user_key,
                    u,
                ));
            }
        }
        events
    })
}

fn at(u: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_750_000_000 + u as i64).expect("a valid timestamp")
}

/// A real envelope, as the application would write it for a request by an administrator.
fn envelope(event: DomainEvent, key: &StreamKey, u: u64) -> EventEnvelope {
    let meta = Metadata {
        actor: Actor::system("bench-admin"),
        occurred_at: at(u),
        correlation_id: Ulid::from_parts(1_750_000_000_000 + u, u128::from(u) << 1).to_string(),
        causation_id: None,
    };
    event.into_envelope(Ulid::new(), key, &meta)
}

fn tenant_created(n: u64) -> EventEnvelope {
    tenant_created_named(&format!("t-{n}"), n)
}

fn tenant_created_named(id: &str, n: u64) -> EventEnvelope {
    let tenant: TenantId = id.parse().expect("a valid tenant id");
    let key = StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str());
    envelope(
        DomainEvent::TenantCreated(TenantCreated {
            name: format!("Tenant {n}"),
        }),
        &key,
        n,
    )
}

// ---------------------------------------------------------------------------------------------
// 4. Embedded-log append throughput

async fn embedded_append(knobs: &Knobs, scratch: &Path, table: &mut Table) -> anyhow::Result<()> {
    println!(
        "== embedded log: {} concurrent appenders for {:?} ==",
        knobs.appenders, knobs.seconds
    );
    let template_key = StreamKey::new(
        None,
        AggregateType::User,
        UserId::new(Ulid::from_parts(1, 1)).to_string(),
    );
    let suspended = UserSuspended {
        until: None,
        reason: Some("embedded benchmark".into()),
    };
    let templates = [
        envelope(DomainEvent::UserSuspended(suspended), &template_key, 0),
        envelope(
            DomainEvent::UserReinstated(UserReinstated {}),
            &template_key,
            0,
        ),
    ];
    // What the log must make durable per event: the envelope's JSON and its subject.
    let record_sizes = templates
        .iter()
        .map(|e| Ok(serde_json::to_vec(e)?.len() + e.subject().len()))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let file = scratch.join("raw-group-commit");
    let (group, seconds, sizes) = (knobs.appenders, knobs.seconds, record_sizes.clone());
    let (written, elapsed) =
        tokio::task::spawn_blocking(move || raw_group_commit(&file, group, &sizes, seconds))
            .await??;
    let baseline = written as f64 / elapsed.as_secs_f64();
    println!(
        "  baseline: one writer, {} B/{} B records, sync_data per {group} records: {written} in {elapsed:.2?} = {}/s",
        record_sizes[0],
        record_sizes[1],
        rate(baseline)
    );

    let log: SharedLog =
        EmbeddedLog::open(&scratch.join("embedded"), EmbeddedOptions::default()).await?;
    let deadline = tokio::time::Instant::now() + knobs.seconds;
    let started = Instant::now();
    let appenders: Vec<_> = (0..knobs.appenders)
        .map(|_| {
            let (log, templates) = (log.clone(), templates.clone());
            tokio::spawn(async move {
                let key = StreamKey::new(
                    None,
                    AggregateType::User,
                    UserId::new(Ulid::new()).to_string(),
                );
                let (mut last, mut done) = (0, 0u64);
                while tokio::time::Instant::now() < deadline {
                    let mut event = templates[(done % 2) as usize].clone();
                    event.id = Ulid::new();
                    event.aggregate = key.aggregate.clone();
                    let appended = log
                        .append(vec![event], Expected::from_last(last), None)
                        .await?;
                    last = appended.last;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut appended = 0;
    for appender in appenders {
        appended += appender.await??;
    }
    let elapsed = started.elapsed();
    ensure!(
        log.last_position().await? == appended,
        "the embedded log should hold exactly the {appended} appended events"
    );
    let ours = appended as f64 / elapsed.as_secs_f64();
    println!(
        "  idstream: EmbeddedLog::append: {appended} in {elapsed:.2?} = {}/s",
        rate(ours)
    );
    table.push(Row {
        name: "embedded-log appends (events/s)",
        ours: rate(ours),
        baseline: format!("{} raw group fsync", rate(baseline)),
        ratio: ours / baseline,
        target: "(README figure)",
        met: true,
    });
    println!();
    Ok(())
}

/// Appends records of the given sizes (alternating) to `path` in groups of `group`, one
/// `write` and one `sync_data` per group, for `duration`. Returns records written and the time.
fn raw_group_commit(
    path: &Path,
    group: usize,
    sizes: &[usize],
    duration: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    let records: Vec<Vec<u8>> = sizes.iter().map(|&size| vec![b'r'; size]).collect();
    let mut buffer = Vec::new();
    let mut written = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        buffer.clear();
        for i in 0..group {
            buffer.extend_from_slice(&records[i % records.len()]);
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        written += group as u64;
    }
    Ok((written, started.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The operator (a system actor, above every rule) with an optional idempotency key.
fn command_context(idempotency_key: Option<&str>) -> anyhow::Result<Caller> {
    let caller = Caller::system("bench");
    match idempotency_key {
        None => Ok(caller),
        Some(key) => caller.with_idempotency_key(key).map_err(app_error),
    }
}

fn app_error(e: AppError) -> anyhow::Error {
    anyhow!("command failed: {e:?}")
}

/// The `q` quantile (nearest rank) of the samples.
fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

/// Whole microseconds: `428 µs`, `1204 µs`.
fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The type of the filesystem holding `path`, from /proc/mounts (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown filesystem".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), format!("{kind} at {point}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, found)| found)
        .unwrap_or_else(|| "unknown filesystem".into())
}

fn nats_server_version(bin: &Path) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "running {} --version (set IDSTREAM_NATS_SERVER)",
                bin.display()
            )
        })?;
    ensure!(
        output.status.success(),
        "{} --version failed: {}",
        bin.display(),
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .trim_start_matches("nats-server: ")
        .to_owned())
}

/// Creates the stream of the raw baselines (fresh: each baseline deletes it when done).
async fn create_raw_stream(context: &Context) -> anyhow::Result<()> {
    context
        .create_stream(stream::Config {
            name: RAW_STREAM.to_owned(),
            subjects: vec![format!("{RAW_PREFIX}.>")],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("creating stream {RAW_STREAM}: {e}"))?;
    Ok(())
}

async fn delete_raw_stream(context: &Context) -> anyhow::Result<()> {
    context
        .delete_stream(RAW_STREAM)
        .await
        .map_err(|e| anyhow!("deleting stream {RAW_STREAM}: {e}"))?;
    Ok(())
}

/// Our own nats-server: a free port, a store in the scratch directory, killed when dropped.
struct NatsServer {
    port: u16,
    child: Child,
}

impl NatsServer {
    fn spawn(bin: &Path, scratch: &Path) -> anyhow::Result<NatsServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = scratch.join("nats-store");
        std::fs::create_dir_all(&store)?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .arg("-l")
            .arg(scratch.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut server = NatsServer { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "nats-server exited during start-up ({status}); see {}",
                    scratch.join("nats.log").display()
                );
            }
            if server.ready() {
                return Ok(server);
            }
            ensure!(
                Instant::now() < deadline,
                "nats-server did not accept clients within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether the server answers with an INFO line announcing JetStream.
    fn ready(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"jetstream\":true")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The summary printed at the end.
#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

struct Row {
    name: &'static str,
    ours: String,
    baseline: String,
    ratio: f64,
    target: &'static str,
    met: bool,
}

impl Table {
    fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn print(&self) {
        let header = [
            "benchmark",
            "idstream",
            "raw baseline (same run)",
            "ratio",
            "target",
            "verdict",
        ];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|row| {
                let verdict = if row.target.starts_with('(') {
                    "-"
                } else if row.met {
                    "target met"
                } else {
                    "target missed"
                };
                [
                    row.name.to_owned(),
                    row.ours.clone(),
                    row.baseline.clone(),
                    format!("{:.2}×", row.ratio),
                    row.target.to_owned(),
                    verdict.to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(out, " {cell}{} |", " ".repeat(width - cell.chars().count()));
            }
            out
        };
        println!("{}", line(&header.map(str::to_owned)));
        println!(
            "|{}",
            widths
                .iter()
                .map(|w| format!("{}|", "-".repeat(w + 2)))
                .collect::<String>()
        );
        for row in &cells {
            println!("{}", line(row));
        }
        let _ = std::io::stdout().flush();
    }
}
