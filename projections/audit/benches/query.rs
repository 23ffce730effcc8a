//! Audit query latency over a large trail, beside a raw baseline from the same run.
//!
//! Folds a realistic mix of 1M events (20 tenants, 50k users: sign-ins, refreshes, failures,
//! lock-outs, API-key uses, grants, role and status changes, settings) straight into a sled tree
//! through the real `AuditProjection` (`apply_events` in batches of 1024, as the runner does; no
//! HTTP, no log), then times filtered pages of 100 through `Audit::query`, each from a random
//! cursor so that every sample reads a different part of the indexes:
//!
//! - one tenant + one event type (`SessionStarted`), newest first;
//! - one actor (a tenant administrator);
//! - one tenant + one event type + one actor (two candidate indexes: the probe picks one);
//! - one tenant + a time window of ten minutes;
//! - one tenant + one subject user (a user's whole story: fewer than 100 entries);
//! - every tenant + a rare type (`AccountLocked`, platform administrators).
//!
//! The baseline is what a page costs at the least: 100 `sled::Tree::get`s of random keys that
//! hold entries, in the same tree (no index scan, no decoding). Samples of every kind and of the baseline are
//! taken in alternating rounds after an untimed warm-up round.
//!
//! ```text
//! cargo bench -p idstream-audit --bench query                      # 1M events; about 3 minutes
//! AUDIT_BENCH_EVENTS=200000 cargo bench -p idstream-audit --bench query
//! ```
//! `AUDIT_BENCH_SAMPLES` (default 2000) sets the samples per kind.

use std::time::{Duration, Instant};

/// The allocator of the `idstream` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use idstream_audit::{Audit, AuditFilter, AuditProjection, AuditQuery, Cursor, Order, Scope};
use idstream_domain::access::RecordAccess;
use idstream_domain::events::*;
use idstream_domain::identity::credentials::PasswordReason;
use idstream_domain::identity::session::{RevocationReason, SignInMethod};
use idstream_domain::secret::BlindIndex;
use idstream_domain::tenant::TenantSettings;
use idstream_domain::{
    Actor, ActorKind, AggregateType, DomainEvent, Metadata, StreamKey, TenantId, UserId,
};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::apply_events;
use time::OffsetDateTime;
use time::macros::datetime;
use ulid::Ulid;

const TENANTS: u64 = 20;
/// Users: one per 20 events (50k for 1M), so that setup is a tenth of the trail.
static USERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(50_000);
/// Administrators per tenant: the actors of grants, role and status changes.
const ADMINS: u64 = 5;
const BATCH: usize = 1024;
const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic, so every run folds the same trail.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    }
}

fn users() -> u64 {
    USERS.load(std::sync::atomic::Ordering::Relaxed)
}

fn user(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(1_000 + n, u128::from(n)))
}

fn tenant_of(n: u64) -> TenantId {
    format!("tenant-{}", n % TENANTS).parse().unwrap()
}

/// The `k`th administrator of the tenant of user `n`.
fn admin_of(n: u64, k: u64) -> u64 {
    n % TENANTS + TENANTS * k
}

fn user_actor(n: u64) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: user(n).to_string(),
    }
}

/// Writes the trail: first every tenant and user, then a steady mix of activity. Times advance
/// 50 ms per event (1M events span about 14 hours), with a replica's clock 2 s behind now and
/// then.
struct World {
    rng: Rng,
    position: u64,
    /// Started and not yet revoked sessions: (id, user).
    sessions: Vec<(Ulid, u64)>,
    keys: Vec<(Ulid, u64)>,
    index: BlindIndex,
}

impl World {
    fn new() -> World {
        World {
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            position: 0,
            sessions: Vec::new(),
            keys: Vec::new(),
            index: BlindIndex::from_bytes(&[7; 32]),
        }
    }

    fn at(&mut self) -> OffsetDateTime {
        let behind = if self.rng.below(50) == 0 { 2_000 } else { 0 };
        T0 + Duration::from_millis((self.position * 50).saturating_sub(behind))
    }

    fn event(
        &mut self,
        tenant: Option<TenantId>,
        kind: AggregateType,
        id: String,
        actor: Actor,
        event: DomainEvent,
    ) -> RecordedEvent {
        self.position += 1;
        let meta = Metadata {
            actor,
            occurred_at: self.at(),
            correlation_id: format!("c{}", self.position),
            causation_id: None,
        };
        let envelope = event.into_envelope(
            Ulid::from_parts(self.position, 1),
            &StreamKey::new(tenant, kind, id),
            &meta,
        );
        RecordedEvent {
            position: self.position,
            envelope,
            msg_id: None,
        }
    }

    /// The event at the next position.
    fn next(&mut self) -> RecordedEvent {
        let p = self.position;
        let system = Actor::system("bootstrap-admin");
        // Setup: tenants, then each user registered and given a role.
        if p < TENANTS {
            let tenant = tenant_of(p);
            let id = tenant.to_string();
            return self.event(
                Some(tenant),
                AggregateType::Tenant,
                id,
                system,
                DomainEvent::TenantCreated(TenantCreated {
                    name: format!("Tenant {p}"),
                }),
            );
        }
        let setup = p - TENANTS;
        if setup < 2 * users() {
            let n = setup / 2;
            return if setup.is_multiple_of(2) {
                self.event(
                    None,
                    AggregateType::User,
                    user(n).to_string(),
                    system,
                    DomainEvent::UserRegistered(UserRegistered {
                        email: format!("user{n}@example.com"),
                        first_name: "Bench".into(),
                        last_name: format!("User {n}"),
                        tenant: tenant_of(n),
                    }),
                )
            } else {
                let role = if n < TENANTS * ADMINS {
                    "admin"
                } else {
                    "user"
                };
                self.event(
                    Some(tenant_of(n)),
                    AggregateType::Membership,
                    user(n).to_string(),
                    system,
                    DomainEvent::RoleAssigned(RoleAssigned {
                        user: user(n),
                        role: role.parse().unwrap(),
                        expires_at: None,
                    }),
                )
            };
        }
        let n = self.rng.below(users());
        let tenant = tenant_of(n);
        let admin = user_actor(admin_of(n, self.rng.below(ADMINS)));
        let at = self.at();
        match self.rng.below(100) {
            0..15 => {
                let id = Ulid::from_parts(self.position + 1, 2);
                self.sessions.push((id, n));
                if self.sessions.len() > 100_000 {
                    self.sessions.swap_remove(0);
                }
                self.event(
                    None,
                    AggregateType::Session,
                    id.to_string(),
                    user_actor(n),
                    DomainEvent::SessionStarted(SessionStarted {
                        user: user(n),
                        tenant,
                        method: SignInMethod::Password,
                        refresh: self.index.clone(),
                        at,
                        expires_at: at + Duration::from_secs(36_000),
                        idle_timeout_seconds: 1800,
                        ip: None,
                        user_agent: None,
                        remembered: false,
                    }),
                )
            }
            15..50 if !self.sessions.is_empty() => {
                let (id, owner) =
                    self.sessions[self.rng.below(self.sessions.len() as u64) as usize];
                self.event(
                    None,
                    AggregateType::Session,
                    id.to_string(),
                    user_actor(owner),
                    DomainEvent::SessionRefreshed(SessionRefreshed {
                        refresh: self.index.clone(),
                        generation: 1,
                        at,
                    }),
                )
            }
            50..55 if !self.sessions.is_empty() => {
                let i = self.rng.below(self.sessions.len() as u64) as usize;
                let (id, owner) = self.sessions.swap_remove(i);
                self.event(
                    None,
                    AggregateType::Session,
                    id.to_string(),
                    user_actor(owner),
                    DomainEvent::SessionRevoked(SessionRevoked {
                        reason: RevocationReason::SignedOut,
                    }),
                )
            }
            55..63 => {
                let failures = 1 + self.rng.below(4) as u32;
                self.event(
                    None,
                    AggregateType::Credentials,
                    user(n).to_string(),
                    Actor::system("sign-in"),
                    DomainEvent::SignInFailed(SignInFailed {
                        failures,
                        at,
                        ip: None,
                        user_agent: None,
                    }),
                )
            }
            63 => self.event(
                None,
                AggregateType::Credentials,
                user(n).to_string(),
                Actor::system("sign-in"),
                DomainEvent::AccountLocked(AccountLocked {
                    until: at + Duration::from_secs(60),
                    failures: 5,
                }),
            ),
            64..66 => self.event(
                None,
                AggregateType::Credentials,
                user(n).to_string(),
                user_actor(n),
                DomainEvent::PasswordSet(PasswordSet {
                    password: idstream_domain::secret::Sealed::parse(format!(
                        "v1.k1.{}",
                        "A".repeat(48)
                    ))
                    .unwrap(),
                    reason: PasswordReason::Changed,
                }),
            ),
            66..68 => {
                let id = Ulid::from_parts(self.position + 1, 3);
                self.keys.push((id, n));
                self.event(
                    Some(tenant),
                    AggregateType::ApiKey,
                    id.to_string(),
                    user_actor(n),
                    DomainEvent::ApiKeyIssued(ApiKeyIssued {
                        owner: user(n),
                        name: "bench".into(),
                        secret: self.index.clone(),
                        expires_at: None,
                        restriction: None,
                    }),
                )
            }
            68..78 if !self.keys.is_empty() => {
                let (id, owner) = self.keys[self.rng.below(self.keys.len() as u64) as usize];
                self.event(
                    Some(tenant_of(owner)),
                    AggregateType::ApiKey,
                    id.to_string(),
                    Actor::system("api-key-use"),
                    DomainEvent::ApiKeyUsed(ApiKeyUsed { at }),
                )
            }
            78..90 => {
                let record = format!("R-{}", self.rng.below(100_000));
                self.event(
                    Some(tenant),
                    AggregateType::Record,
                    format!("invoice:{record}"),
                    admin,
                    DomainEvent::RecordGranted(RecordGranted {
                        entity: "invoice".parse().unwrap(),
                        record: record.parse().unwrap(),
                        user: user(n),
                        access: RecordAccess::ReadOnly,
                        expires_at: None,
                    }),
                )
            }
            90..95 => {
                let role = ["billing", "auditor", "support"][self.rng.below(3) as usize]
                    .parse()
                    .unwrap();
                let event = if self.rng.below(2) == 0 {
                    DomainEvent::RoleAssigned(RoleAssigned {
                        user: user(n),
                        role,
                        expires_at: None,
                    })
                } else {
                    DomainEvent::RoleRevoked(RoleRevoked {
                        user: user(n),
                        role,
                    })
                };
                self.event(
                    Some(tenant),
                    AggregateType::Membership,
                    user(n).to_string(),
                    admin,
                    event,
                )
            }
            95..99 => {
                let event = if self.rng.below(2) == 0 {
                    DomainEvent::UserSuspended(UserSuspended {
                        until: None,
                        reason: None,
                    })
                } else {
                    DomainEvent::UserReinstated(UserReinstated {})
                };
                self.event(None, AggregateType::User, user(n).to_string(), admin, event)
            }
            _ => {
                let settings = TenantSettings {
                    session_idle_minutes: 10 + self.rng.below(50) as u32,
                    ..TenantSettings::default()
                };
                let id = tenant.to_string();
                self.event(
                    Some(tenant),
                    AggregateType::Tenant,
                    id,
                    admin,
                    DomainEvent::TenantSettingsChanged(TenantSettingsChanged { settings }),
                )
            }
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

struct Kind {
    name: &'static str,
    filter: Box<dyn Fn(&mut Rng) -> AuditFilter>,
    samples: Vec<Duration>,
    entries: usize,
}

fn main() {
    let events = env("AUDIT_BENCH_EVENTS", 1_000_000) as u64;
    let samples = env("AUDIT_BENCH_SAMPLES", 2000);
    USERS.store(
        (events / 20).max(1000),
        std::sync::atomic::Ordering::Relaxed,
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The runtime's settings for read models (see projections/runtime/src/store.rs).
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
        .open()
        .expect("open sled");
    let tree = db.open_tree(idstream_audit::NAME).unwrap();

    let mut world = World::new();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_report = Instant::now();
    while world.position < events {
        batch.clear();
        while batch.len() < BATCH && world.position < events {
            batch.push(world.next());
        }
        apply_events(&AuditProjection, &tree, &batch).expect("the audit projection folds");
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!("folded {}/{events}", world.position);
        }
    }
    db.flush().unwrap();
    let fold = started.elapsed();
    let size: u64 = walk_size(dir.path());
    println!(
        "audit fold: {events} events in {:.1} s = {:.0} events/s through apply_events (batches of {BATCH}); {} keys, {:.0} MB on disk",
        fold.as_secs_f64(),
        events as f64 / fold.as_secs_f64(),
        tree.len(),
        size as f64 / 1e6
    );

    let audit = Audit::new(tree.clone());
    let tenant = |rng: &mut Rng| -> TenantId { tenant_of(rng.below(TENANTS)) };
    let types = |t: &str| std::collections::BTreeSet::from([t.to_owned()]);
    let span = events * 50;
    let mut kinds = vec![
        Kind {
            name: "tenant + type (SessionStarted)",
            filter: Box::new(move |rng| AuditFilter {
                event_types: types("SessionStarted"),
                ..AuditFilter::scope(Scope::Tenant(tenant(rng)))
            }),
            samples: Vec::new(),
            entries: 0,
        },
        Kind {
            name: "one actor (a tenant admin)",
            filter: Box::new(|rng| AuditFilter {
                actor: Some(user_actor(admin_of(rng.below(TENANTS), rng.below(ADMINS)))),
                ..AuditFilter::scope(Scope::All)
            }),
            samples: Vec::new(),
            entries: 0,
        },
        Kind {
            name: "tenant + type + actor (RecordGranted)",
            filter: Box::new(move |rng| {
                let t = rng.below(TENANTS);
                AuditFilter {
                    event_types: types("RecordGranted"),
                    actor: Some(user_actor(admin_of(t, rng.below(ADMINS)))),
                    ..AuditFilter::scope(Scope::Tenant(tenant_of(t)))
                }
            }),
            samples: Vec::new(),
            entries: 0,
        },
        Kind {
            name: "tenant + 10-minute window",
            filter: Box::new(move |rng| {
                let from = T0 + Duration::from_millis(rng.below(span.max(1)));
                AuditFilter {
                    from: Some(from),
                    to: Some(from + Duration::from_secs(600)),
                    ..AuditFilter::scope(Scope::Tenant(tenant(rng)))
                }
            }),
            samples: Vec::new(),
            entries: 0,
        },
        Kind {
            name: "tenant + subject user",
            filter: Box::new(|rng| {
                let n = rng.below(users());
                AuditFilter {
                    subject: Some(user(n)),
                    ..AuditFilter::scope(Scope::Tenant(tenant_of(n)))
                }
            }),
            samples: Vec::new(),
            entries: 0,
        },
        Kind {
            name: "all tenants + rare type (AccountLocked)",
            filter: Box::new(move |_| AuditFilter {
                event_types: types("AccountLocked"),
                ..AuditFilter::scope(Scope::All)
            }),
            samples: Vec::new(),
            entries: 0,
        },
    ];
    let mut baseline = Vec::with_capacity(samples);
    // The keys that hold entries (blocks of consecutive positions): the baseline reads random ones.
    let entry_keys: Vec<sled::IVec> = tree.scan_prefix(b"e/").keys().map(|k| k.unwrap()).collect();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut sink = 0usize;
    for round in 0..=samples {
        let warm_up = round == 0;
        for kind in &mut kinds {
            let query = AuditQuery {
                filter: (kind.filter)(&mut rng),
                // From a random point of the trail (half of the time: the newest page).
                cursor: (rng.below(2) == 0).then(|| Cursor::OlderThan(1 + rng.below(events))),
                order: Order::NewestFirst,
                limit: 100,
            };
            let started = Instant::now();
            let page = audit.query(&query).expect("a page");
            let took = started.elapsed();
            if !warm_up {
                kind.samples.push(took);
                kind.entries += page.entries.len();
            }
        }
        let keys: Vec<&sled::IVec> = (0..100)
            .map(|_| &entry_keys[rng.below(entry_keys.len() as u64) as usize])
            .collect();
        let started = Instant::now();
        for key in &keys {
            sink += tree.get(key).unwrap().map_or(0, |v| v.len());
        }
        if !warm_up {
            baseline.push(started.elapsed());
        }
    }
    assert!(sink > 0);
    baseline.sort();
    let (base50, base99) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    println!(
        "\nbaseline, 100 sled gets of random entries (same tree, same run): p50 {} p99 {}",
        us(base50),
        us(base99)
    );
    println!(
        "\n| page of ≤100, {samples} samples | entries/page | p50 | p99 | p99.9 | p50 ÷ baseline | p99 ÷ baseline |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for kind in &mut kinds {
        kind.samples.sort();
        let (p50, p99, p999) = (
            percentile(&kind.samples, 0.5),
            percentile(&kind.samples, 0.99),
            percentile(&kind.samples, 0.999),
        );
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.2}× | {:.2}× |",
            kind.name,
            kind.entries as f64 / kind.samples.len() as f64,
            us(p50),
            us(p99),
            us(p999),
            p50.as_secs_f64() / base50.as_secs_f64(),
            p99.as_secs_f64() / base99.as_secs_f64()
        );
    }
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk_size(&path)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
