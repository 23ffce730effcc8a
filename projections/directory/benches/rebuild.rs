//! How fast `idstream replay` rebuilds the directory: fills an embedded log with a realistic mix of
//! small events, then measures (1) reading the whole log in pages, (2) the offline rebuild and
//! (3) a live runner catching up from 0. Prints events per second; asserts only that the
//! rebuilds agree.
//!
//! `cargo bench -p idstream-directory --bench rebuild` (IDSTREAM_BENCH_USERS sets the size).

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_directory::{DirectoryProjection, NAME};
use idstream_domain::events::{
    RoleAssigned, RoleRevoked, TenantCreated, UserRegistered, UserReinstated, UserSuspended,
};
use idstream_domain::{
    Actor, AggregateType, DomainEvent, EventEnvelope, Metadata, StreamKey, TenantId, UserId,
};
use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
use idstream_eventlog::{Expected, SharedLog};
use idstream_projection_runtime::{Projection, ReadModels, rebuild_offline};

fn seal() -> Arc<dyn idstream_projection_runtime::PersonalSeal> {
    static SEAL: std::sync::OnceLock<Arc<dyn idstream_projection_runtime::PersonalSeal>> =
        std::sync::OnceLock::new();
    SEAL.get_or_init(idstream_keys::ReadModelSeal::in_memory)
        .clone()
}
use time::macros::datetime;
use ulid::Ulid;

const TENANTS: u64 = 50;
const APPENDERS: usize = 64;

fn meta(n: u64) -> Metadata {
    Metadata {
        actor: Actor::system("bench"),
        occurred_at: datetime!(2026-03-01 12:00 UTC) + time::Duration::seconds(n as i64),
        correlation_id: format!("bench-{n}"),
        causation_id: None,
    }
}

fn envelopes(stream: &StreamKey, events: Vec<DomainEvent>, seed: u64) -> Vec<EventEnvelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.into_envelope(Ulid::from_parts(seed, i as u128), stream, &meta(seed)))
        .collect()
}

/// The appends for one user: registration, a membership with roles coming and going, and a
/// suspension cycle; 13 events in 3 appends.
fn user_appends(n: u64) -> Vec<(Vec<EventEnvelope>, Option<String>)> {
    let user = UserId::new(Ulid::from_parts(n, u128::from(n)));
    let tenant: TenantId = format!("tenant-{}", n % TENANTS).parse().unwrap();
    let user_stream = StreamKey::new(None, AggregateType::User, user.to_string());
    let member_stream = StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Membership,
        user.to_string(),
    );
    let role = |r: &str| r.parse().unwrap();
    let registered = DomainEvent::UserRegistered(UserRegistered {
        email: format!("user{n}@example.com"),
        first_name: "Ada".into(),
        last_name: format!("Number {n}"),
        tenant,
    });
    let roles = vec![
        DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: role("user"),
            expires_at: None,
        }),
        DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: role("admin"),
            expires_at: None,
        }),
        DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: role("billing"),
            expires_at: None,
        }),
        DomainEvent::RoleRevoked(RoleRevoked {
            user,
            role: role("billing"),
        }),
        DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: role("auditor"),
            expires_at: None,
        }),
        DomainEvent::RoleRevoked(RoleRevoked {
            user,
            role: role("admin"),
        }),
        DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: role("support"),
            expires_at: None,
        }),
        DomainEvent::RoleRevoked(RoleRevoked {
            user,
            role: role("support"),
        }),
    ];
    let suspensions = vec![
        DomainEvent::UserSuspended(UserSuspended {
            until: None,
            reason: Some("review".into()),
        }),
        DomainEvent::UserReinstated(UserReinstated {}),
        DomainEvent::UserSuspended(UserSuspended {
            until: None,
            reason: None,
        }),
        DomainEvent::UserReinstated(UserReinstated {}),
    ];
    vec![
        (
            envelopes(&user_stream, vec![registered], n * 3),
            Some(format!("register-{n}")),
        ),
        (
            envelopes(&member_stream, roles, n * 3 + 1),
            Some(format!("roles-{n}")),
        ),
        (envelopes(&user_stream, suspensions, n * 3 + 2), None),
    ]
}

async fn fill(log: &SharedLog, users: u64) {
    for t in 0..TENANTS {
        let tenant: TenantId = format!("tenant-{t}").parse().unwrap();
        let stream = StreamKey::new(Some(tenant), AggregateType::Tenant, format!("tenant-{t}"));
        let created = DomainEvent::TenantCreated(TenantCreated {
            name: format!("Tenant {t}"),
        });
        log.append(
            envelopes(&stream, vec![created], u64::MAX - t),
            Expected::Any,
            None,
        )
        .await
        .unwrap();
    }
    // Many appenders at once so that the log's group commit shares fsyncs between them.
    let mut appenders = Vec::new();
    for a in 0..APPENDERS as u64 {
        let log = log.clone();
        appenders.push(tokio::spawn(async move {
            for n in (a..users).step_by(APPENDERS) {
                for (events, key) in user_appends(n) {
                    log.append(events, Expected::Any, key.as_deref())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for appender in appenders {
        appender.await.unwrap();
    }
}

/// CPU seconds used by this process so far (all threads), from /proc: the box is shared, so the
/// CPU time a phase costs is a steadier figure than its wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

struct Phase {
    wall: Instant,
    cpu: f64,
}

fn phase() -> Phase {
    Phase {
        wall: Instant::now(),
        cpu: cpu_seconds(),
    }
}

fn rate(events: u64, since: Phase) -> String {
    let wall = since.wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - since.cpu;
    format!(
        "{events} events in {wall:.2} s = {:.0} events/s (CPU {cpu:.2} s = {:.0} events per CPU-second)",
        events as f64 / wall,
        events as f64 / cpu.max(0.01)
    )
}

fn main() {
    let users: u64 = std::env::var("IDSTREAM_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let log: SharedLog =
            EmbeddedLog::open(&root.path().join("log"), EmbeddedOptions::default())
                .await
                .unwrap();
        let started = phase();
        fill(&log, users).await;
        let last = log.last_position().await.unwrap();
        println!("filled the embedded log:         {}", rate(last, started));

        let started = phase();
        let mut after = 0;
        while after < last {
            after = log
                .read_after(after, 8192)
                .await
                .unwrap()
                .last()
                .unwrap()
                .position;
        }
        println!("read_after in pages of 8192:     {}", rate(last, started));

        let projections = || -> Vec<Arc<dyn Projection>> {
            vec![Arc::new(DirectoryProjection::new(
                Default::default(),
                seal(),
            ))]
        };
        let started = phase();
        let offline = rebuild_offline(
            &root.path().join("offline"),
            log.clone(),
            projections(),
            |_, _| {},
        )
        .await
        .unwrap();
        println!("rebuild_offline (directory):     {}", rate(last, started));

        let started = phase();
        let models = ReadModels::start(&root.path().join("live"), log.clone(), projections())
            .await
            .unwrap();
        models
            .wait_for(last, Duration::from_secs(600))
            .await
            .unwrap();
        println!("live runner catching up from 0:  {}", rate(last, started));
        let (_, live) = models.digest(NAME).await.unwrap();
        assert_eq!(
            offline.get(NAME),
            Some(&live),
            "the offline and the live rebuild must agree"
        );
        models.shutdown().await;
    });
}
