//! Per-event costs on the hot paths, each beside a raw baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench micro
//! cargo bench --bench micro -- decode      # only the benchmarks whose name contains "decode"
//! ```
//!
//! - **encode**: `DomainEvent::into_envelope` + `serde_json::to_vec`, against `serde_json::to_vec`
//!   of a plain struct whose JSON has exactly the same length.
//! - **decode**: `serde_json::from_slice::<EventEnvelope>` + `DomainEvent::decode`, against
//!   `serde_json::from_slice` of that plain struct.
//! - **project**: one event (a user suspended or reinstated, alternately) applied to the
//!   directory projection through `apply_events` — staging in `Staged`, then one sled batch with
//!   the checkpoint — against one raw `sled::Tree::insert` of a row the size of the user's row.
//!
//! - **list**: a page of 50 members with their users read from the directory
//!   (`Directory::members`), personal fields sealed with each person's key as the service stores
//!   them (keys in memory, as after the decrypting log used them), against the same rows stored
//!   with personal fields in the clear (as they were before issue 22): the cost of opening 50
//!   users' sealed fields on the way out. `sealed-cold` opens every field afresh; `sealed`
//!   repeats the page, whose values the seal then remembers (in memory, per person, while their
//!   key exists).
//!
//! After criterion's report, the ratios of the medians are printed. The medians are taken over
//! criterion's own samples (every routine is timed with `iter_custom`, which records them).

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use idstream_domain::envelope::{Actor, AggregateType, Metadata};
use idstream_domain::events::{
    RoleAssigned, TenantCreated, UserRegistered, UserReinstated, UserSuspended,
};
use idstream_domain::{DomainEvent, EventEnvelope, StreamKey, TenantId, UserId};
use idstream_projection_runtime::{RecordedEvent, apply_events};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ulid::Ulid;

/// Criterion samples per benchmark; the ratios use the medians of the last this many samples.
const SAMPLES: usize = 50;

/// A plain struct of the envelope's shape, with strings only, serialised to JSON of exactly the
/// envelope's length: what serde_json costs without the envelope and the domain around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlainRecord {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    /// Filler that brings the JSON to the envelope's length.
    pad: String,
    #[serde(rename = "agg")]
    aggregate_kind: String,
    #[serde(rename = "agg_id")]
    aggregate_id: String,
    #[serde(rename = "actor")]
    actor_kind: String,
    actor_id: String,
    occurred_at: String,
    correlation_id: String,
    email: String,
    first_name: String,
    last_name: String,
    tenant: String,
}

/// Per-iteration times of every sample a benchmark took, in the order taken.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<&'static str, Vec<f64>>>>);

impl Recorder {
    fn record(&self, name: &'static str, elapsed: Duration, iters: u64) {
        let per_iter = elapsed.as_secs_f64() / iters.max(1) as f64;
        self.0
            .lock()
            .expect("recorder lock")
            .entry(name)
            .or_default()
            .push(per_iter);
    }

    /// The median of the last [`SAMPLES`] samples (criterion's measurement follows its warm-up).
    fn median(&self, name: &str) -> Option<f64> {
        let samples = self.0.lock().expect("recorder lock");
        let all = samples.get(name)?;
        let mut last: Vec<f64> = all[all.len().saturating_sub(SAMPLES)..].to_vec();
        last.sort_by(f64::total_cmp);
        Some(last[last.len() / 2])
    }
}

fn main() {
    let recorder = Recorder::default();
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let fixture = Fixture::new();
    println!(
        "encode/decode: a UserRegistered envelope of {} B against a plain struct of {} B",
        fixture.envelope_json.len(),
        fixture.plain_json.len()
    );
    codec(&mut criterion, &recorder, &fixture);
    project(&mut criterion, &recorder);
    list(&mut criterion, &recorder);
    criterion.final_summary();

    println!();
    println!("ratios of medians (idstream / raw baseline, same run; a busy machine skews both):");
    for (what, ours, raw) in [
        (
            "encode: into_envelope + to_vec  vs  to_vec(plain)",
            "encode/idstream",
            "encode/raw",
        ),
        (
            "decode: from_slice + DomainEvent::decode  vs  from_slice(plain)",
            "decode/idstream",
            "decode/raw",
        ),
        (
            "project: apply_events(directory, 1 event)  vs  sled insert",
            "project/idstream",
            "project/raw",
        ),
        (
            "list: 50 members, sealed fields opened afresh  vs  in the clear",
            "list/sealed-cold",
            "list/clear",
        ),
        (
            "list: 50 members, sealed fields opened lately  vs  in the clear",
            "list/sealed",
            "list/clear",
        ),
    ] {
        match (recorder.median(ours), recorder.median(raw)) {
            (Some(ours), Some(raw)) => println!(
                "  {what}: {} vs {} = {:.2}×",
                nanos(ours),
                nanos(raw),
                ours / raw
            ),
            _ => println!("  {what}: not run (filtered out)"),
        }
    }
}

fn nanos(seconds: f64) -> String {
    let ns = seconds * 1e9;
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

struct Fixture {
    event: DomainEvent,
    key: StreamKey,
    meta: Metadata,
    envelope_json: Vec<u8>,
    plain: PlainRecord,
    plain_json: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let tenant: TenantId = "acme-industries".parse().expect("a valid tenant");
        let user = UserId::new(Ulid::from_parts(1_750_000_000_000, 42));
        let event = DomainEvent::UserRegistered(UserRegistered {
            email: "jane.doe@acme-industries.example".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            tenant: tenant.clone(),
        });
        let key = StreamKey::new(None, AggregateType::User, user.to_string());
        let meta = Metadata {
            actor: Actor::system("admin-console"),
            occurred_at: OffsetDateTime::from_unix_timestamp(1_750_000_000).expect("a valid time"),
            correlation_id: Ulid::from_parts(1_750_000_000_000, 7).to_string(),
            causation_id: None,
        };
        let envelope =
            event
                .clone()
                .into_envelope(Ulid::from_parts(1_750_000_000_000, 9), &key, &meta);
        let envelope_json = serde_json::to_vec(&envelope).expect("an envelope serialises");

        let mut plain = PlainRecord {
            id: envelope.id.to_string(),
            kind: envelope.event_type.clone(),
            version: envelope.version,
            pad: String::new(),
            aggregate_kind: "user".into(),
            aggregate_id: user.to_string(),
            actor_kind: "system".into(),
            actor_id: meta.actor.id.clone(),
            occurred_at: "2025-06-15T15:06:40Z".into(),
            correlation_id: meta.correlation_id.clone(),
            email: "jane.doe@acme-industries.example".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            tenant: tenant.to_string(),
        };
        // Pad the one free-form field so both JSON documents have the same length.
        let short = serde_json::to_vec(&plain).expect("serialises").len();
        assert!(
            short <= envelope_json.len(),
            "the plain record is longer than the envelope; shorten it"
        );
        plain.pad = "p".repeat(envelope_json.len() - short);
        let plain_json = serde_json::to_vec(&plain).expect("serialises");
        assert_eq!(plain_json.len(), envelope_json.len());
        Fixture {
            event,
            key,
            meta,
            envelope_json,
            plain,
            plain_json,
        }
    }
}

fn codec(criterion: &mut Criterion, recorder: &Recorder, fixture: &Fixture) {
    let mut group = criterion.benchmark_group("encode");
    group.bench_function("idstream", |b| {
        b.iter_custom(|iters| {
            let events: Vec<DomainEvent> = (0..iters).map(|_| fixture.event.clone()).collect();
            let id = Ulid::from_parts(1_750_000_000_000, 9);
            let started = Instant::now();
            for event in events {
                let envelope = event.into_envelope(id, &fixture.key, &fixture.meta);
                black_box(serde_json::to_vec(&envelope).expect("serialises"));
            }
            let elapsed = started.elapsed();
            recorder.record("encode/idstream", elapsed, iters);
            elapsed
        })
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(serde_json::to_vec(black_box(&fixture.plain)).expect("serialises"));
            }
            let elapsed = started.elapsed();
            recorder.record("encode/raw", elapsed, iters);
            elapsed
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("decode");
    group.bench_function("idstream", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let envelope: EventEnvelope =
                    serde_json::from_slice(black_box(&fixture.envelope_json)).expect("an envelope");
                black_box(DomainEvent::decode(&envelope).expect("a known event"));
            }
            let elapsed = started.elapsed();
            recorder.record("decode/idstream", elapsed, iters);
            elapsed
        })
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let plain: PlainRecord =
                    serde_json::from_slice(black_box(&fixture.plain_json)).expect("a record");
                black_box(plain);
            }
            let elapsed = started.elapsed();
            recorder.record("decode/raw", elapsed, iters);
            elapsed
        })
    });
    group.finish();
}

fn project(criterion: &mut Criterion, recorder: &Recorder) {
    let directory = idstream_app::projections(idstream_app::Caches::new(
        idstream_keys::ReadModelSeal::in_memory(),
    ))
    .into_iter()
    .find(|p| p.name() == "directory")
    .expect("the service registers the directory projection");
    let dir = tempfile::Builder::new()
        .prefix("idstream-micro-")
        .tempdir()
        .expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("a sled store");
    let tree = db
        .open_tree(directory.name())
        .expect("the projection's tree");

    // A tenant with one member, as the projection would have them after the first commands.
    let tenant: TenantId = "acme-industries".parse().expect("a valid tenant");
    let user = UserId::new(Ulid::from_parts(1_750_000_000_000, 42));
    let tenant_key = StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str());
    let user_key = StreamKey::new(None, AggregateType::User, user.to_string());
    let membership_key = StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Membership,
        user.to_string(),
    );
    let setup = [
        envelope(
            DomainEvent::TenantCreated(TenantCreated {
                name: "Acme Industries".into(),
            }),
            &tenant_key,
        ),
        envelope(
            DomainEvent::UserRegistered(UserRegistered {
                email: "jane.doe@acme-industries.example".into(),
                first_name: "Jane".into(),
                last_name: "Doe".into(),
                tenant: tenant.clone(),
            }),
            &user_key,
        ),
        envelope(
            DomainEvent::RoleAssigned(RoleAssigned {
                user,
                role: "user".parse().expect("a role"),
                expires_at: None,
            }),
            &membership_key,
        ),
    ];
    let mut position = 0;
    for envelope in setup {
        position += 1;
        let applied = apply_events(directory.as_ref(), &tree, &[recorded(position, envelope)])
            .expect("setup applies");
        assert!(
            applied.skipped.is_empty(),
            "the directory skipped a setup event: {:?}",
            applied.skipped
        );
    }
    let templates = [
        envelope(
            DomainEvent::UserSuspended(UserSuspended {
                until: None,
                reason: Some("policy review".into()),
            }),
            &user_key,
        ),
        envelope(DomainEvent::UserReinstated(UserReinstated {}), &user_key),
    ];
    // The benchmarked events must be real work for the projection, not skipped ones.
    for template in &templates {
        position += 1;
        let applied = apply_events(
            directory.as_ref(),
            &tree,
            &[recorded(position, template.clone())],
        )
        .expect("applies");
        assert!(
            applied.applied == 1 && applied.skipped.is_empty(),
            "the directory did not apply {}",
            template.event_type
        );
    }

    // The raw baseline writes one row the size of the one a suspension rewrites: the largest row
    // whose key names the user (its profile).
    let user_text = user.to_string();
    let (key_len, value_len) = tree
        .iter()
        .map(|entry| entry.expect("a row"))
        .filter(|(key, _)| {
            key.first() != Some(&0) && String::from_utf8_lossy(key).contains(&user_text)
        })
        .map(|(key, value)| (key.len(), value.len()))
        .max_by_key(|&(_, value_len)| value_len)
        .expect("the directory holds a row for the user");
    println!(
        "project: the user's row in the directory has a {key_len} B key and a {value_len} B value"
    );
    let raw_tree = db.open_tree("raw").expect("the raw tree");
    let raw_key = vec![b'k'; key_len.max(1)];
    let raw_values = [vec![b'a'; value_len], vec![b'b'; value_len]];

    let mut group = criterion.benchmark_group("project");
    group.bench_function("idstream", |b| {
        b.iter_custom(|iters| {
            let events: Vec<RecordedEvent> = (0..iters)
                .map(|i| {
                    position += 1;
                    let mut envelope = templates[(position % 2) as usize].clone();
                    envelope.id = Ulid::from_parts(1_750_000_000_000 + position, u128::from(i));
                    recorded(position, envelope)
                })
                .collect();
            let started = Instant::now();
            for event in &events {
                let applied = apply_events(directory.as_ref(), &tree, std::slice::from_ref(event))
                    .expect("applies");
                black_box(applied);
            }
            let elapsed = started.elapsed();
            recorder.record("project/idstream", elapsed, iters);
            elapsed
        })
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for i in 0..iters {
                black_box(
                    raw_tree
                        .insert(&raw_key, raw_values[(i % 2) as usize].as_slice())
                        .expect("inserts"),
                );
            }
            let elapsed = started.elapsed();
            recorder.record("project/raw", elapsed, iters);
            elapsed
        })
    });
    group.finish();
}

/// The listing's baseline: rows stored with personal fields in the clear, as before they were
/// sealed (the values pass through; the email index is keyed by the address itself).
#[derive(Debug)]
struct InTheClear;

impl idstream_projection_runtime::PersonalSeal for InTheClear {
    fn seal(
        &self,
        _user: &str,
        _field: &str,
        value: &str,
    ) -> Result<Option<String>, idstream_projection_runtime::SealError> {
        Ok(Some(value.to_owned()))
    }

    fn open(
        &self,
        _user: &str,
        _field: &str,
        stored: &str,
    ) -> Result<Option<String>, idstream_projection_runtime::SealError> {
        Ok(Some(stored.to_owned()))
    }

    fn blind(&self, _purpose: &str, value: &str) -> String {
        value.to_owned()
    }
}

fn list(criterion: &mut Criterion, recorder: &Recorder) {
    use idstream_directory::{Directory, DirectoryProjection};
    use idstream_domain::events::UserProfileChanged;
    use idstream_projection_runtime::PersonalSeal;

    const PAGE: usize = 50;
    let tenant: TenantId = "acme-industries".parse().expect("a valid tenant");
    let dir = tempfile::Builder::new()
        .prefix("idstream-micro-list-")
        .tempdir()
        .expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("a sled store");
    let mut events = vec![envelope(
        DomainEvent::TenantCreated(TenantCreated {
            name: "Acme Industries".into(),
        }),
        &StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str()),
    )];
    for n in 0..PAGE as u128 {
        let user = UserId::new(Ulid::from_parts(1_750_000_000_000, 100 + n));
        let user_key = StreamKey::new(None, AggregateType::User, user.to_string());
        events.push(envelope(
            DomainEvent::UserRegistered(UserRegistered {
                email: format!("person.{n}@acme-industries.example"),
                first_name: format!("Person{n}"),
                last_name: "Example".into(),
                tenant: tenant.clone(),
            }),
            &user_key,
        ));
        events.push(envelope(
            DomainEvent::UserProfileChanged(UserProfileChanged {
                first_name: format!("Person{n}"),
                last_name: "Example".into(),
                image_url: Some(format!("https://img.example.com/{n}.png")),
                notifications: Default::default(),
                phone: Some("+33612345678".into()),
                language: None,
            }),
            &user_key,
        ));
        events.push(envelope(
            DomainEvent::RoleAssigned(RoleAssigned {
                user,
                role: "user".parse().expect("a role"),
                expires_at: None,
            }),
            &StreamKey::new(
                Some(tenant.clone()),
                AggregateType::Membership,
                user.to_string(),
            ),
        ));
    }
    let recorded: Vec<RecordedEvent> = events
        .into_iter()
        .enumerate()
        .map(|(i, mut envelope)| {
            envelope.id = Ulid::from_parts(1_750_000_000_000 + i as u64, 1);
            recorded(i as u64 + 1, envelope)
        })
        .collect();
    let keys = Arc::new(idstream_keys::PersonalKeys::new(Arc::new(
        idstream_keys::MemoryKeyStore::default(),
    )));
    let vault = Arc::new(idstream_keys::Vault::generate().expect("a vault"));
    let sealed: Arc<dyn PersonalSeal> =
        idstream_keys::ReadModelSeal::shared(keys.clone(), vault.clone());
    let clear: Arc<dyn PersonalSeal> = Arc::new(InTheClear);
    let mut directories = Vec::new();
    for (name, seal) in [("sealed", sealed), ("clear", clear)] {
        let tree = db.open_tree(name).expect("a tree");
        let projection = DirectoryProjection::without_search(seal.clone());
        apply_events(&projection, &tree, &recorded).expect("the page applies");
        let directory = Directory::new(tree, Default::default(), seal);
        let page = directory
            .members(&tenant, None, PAGE)
            .expect("the page reads");
        assert_eq!(page.len(), PAGE);
        assert_eq!(page[0].0.phone.as_deref(), Some("+33612345678"));
        directories.push((name, directory));
    }
    let mut group = criterion.benchmark_group("list");
    // Every field opened afresh: a new seal (over the same keys, in memory as after the
    // decrypting log used them) for every page, so nothing opened before is remembered.
    let sealed_tree = db.open_tree("sealed").expect("a tree");
    group.bench_function("sealed-cold", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let directory = Directory::new(
                    sealed_tree.clone(),
                    Default::default(),
                    idstream_keys::ReadModelSeal::shared(keys.clone(), vault.clone()),
                );
                let started = Instant::now();
                black_box(directory.members(&tenant, None, PAGE).expect("reads"));
                elapsed += started.elapsed();
            }
            recorder.record("list/sealed-cold", elapsed, iters);
            elapsed
        })
    });
    for (name, directory) in &directories {
        let label: &'static str = if *name == "sealed" {
            "list/sealed"
        } else {
            "list/clear"
        };
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(directory.members(&tenant, None, PAGE).expect("reads"));
                }
                let elapsed = started.elapsed();
                recorder.record(label, elapsed, iters);
                elapsed
            })
        });
    }
    group.finish();
}

fn envelope(event: DomainEvent, key: &StreamKey) -> EventEnvelope {
    let meta = Metadata {
        actor: Actor::system("admin-console"),
        occurred_at: OffsetDateTime::from_unix_timestamp(1_750_000_000).expect("a valid time"),
        correlation_id: Ulid::from_parts(1_750_000_000_000, 7).to_string(),
        causation_id: None,
    };
    event.into_envelope(Ulid::from_parts(1_750_000_000_000, 9), key, &meta)
}

fn recorded(position: u64, envelope: EventEnvelope) -> RecordedEvent {
    RecordedEvent {
        position,
        envelope,
        msg_id: None,
    }
}
