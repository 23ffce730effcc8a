//! What the access benchmarks share: a deterministic world (tenants, roles, entities, members,
//! record grants, owners and local roles) generated from a seed, its events, the read model
//! built from them by the real projection, request mixes, percentiles and memory figures.
//!
//! Every part of the world is a function of its index (a user, a grant, …) and the seed, so a
//! benchmark can regenerate any fact instead of keeping ten million of them in memory.

// Each benchmark binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use idstream_access::{Access, AccessProjection, FactCache, NAME};
use idstream_domain::access::{
    Action, EntityName, EntityPolicy, Permission, Principal, PseudoRole, RecordAccess, RecordId,
    Resource,
};
use idstream_domain::events::{
    EntityRegistered, LocalRoleAssigned, PermissionsGranted, RecordGranted, RecordOwnerSet,
    RoleAssigned, RoleDefined, TenantCreated, UserRegistered,
};
use idstream_domain::{Actor, DomainEvent, Metadata, RoleName, StreamKey, TenantId, UserId};
use idstream_projection_runtime::{Projection, RecordedEvent, apply_events};
use time::OffsetDateTime;
use ulid::Ulid;

/// A reading of an environment variable, or its default.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: small, fast and good enough to spread a benchmark's requests.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for item `index` of stream `stream`: the same item always gets the same one.
    pub fn at(stream: u64, index: u64) -> Rng {
        let mut rng = Rng(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
        rng.next();
        rng
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The entities every tenant registers: name, row-level security, policy.
pub const ENTITIES: [&str; 4] = ["project", "invoice", "note", "ticket"];

pub fn entity_rls(entity: usize) -> bool {
    ENTITIES[entity] != "note"
}

/// Entity policies: projects keep the default (owners read, update, delete); invoices let
/// owners read and update but not delete; notes (no row-level security) are read and created by
/// every member and changed by their owners; tickets are created by every member.
pub fn entity_policy(entity: usize) -> EntityPolicy {
    let creator: BTreeSet<Principal> = [Principal::Pseudo(PseudoRole::Creator)].into();
    let member: BTreeSet<Principal> = [Principal::Pseudo(PseudoRole::AuthenticatedUser)].into();
    match ENTITIES[entity] {
        "project" => EntityPolicy::default(),
        "invoice" => EntityPolicy {
            read: creator.clone(),
            create: BTreeSet::new(),
            update: creator,
            delete: BTreeSet::new(),
        },
        "note" => EntityPolicy {
            read: member.clone(),
            create: member,
            update: creator.clone(),
            delete: creator,
        },
        _ => EntityPolicy {
            read: creator.clone(),
            create: member,
            update: creator.clone(),
            delete: creator,
        },
    }
}

/// The permission universe roles draw from: every CRUD permission on the named resources and
/// on the entities.
pub fn permission_universe() -> Vec<Permission> {
    use idstream_domain::access::model::{ADMIN_RESOURCES, SERVICE_RESOURCES, STANDARD_RESOURCES};
    let mut out = Vec::new();
    for resource in STANDARD_RESOURCES
        .iter()
        .chain(ADMIN_RESOURCES)
        .chain(SERVICE_RESOURCES)
    {
        for action in Action::CRUD {
            out.push(Permission::new(Resource::Named(resource), action).expect("valid"));
        }
    }
    for entity in ENTITIES {
        for action in Action::CRUD {
            out.push(Permission::entity(&entity.parse().expect("valid"), action).expect("valid"));
        }
    }
    out
}

/// How big a world is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub tenants: usize,
    pub users: usize,
    pub grants: usize,
    pub roles_per_tenant: usize,
}

impl Sizes {
    /// Records per entity and tenant: about five grants per record.
    pub fn records_per_entity(&self) -> usize {
        (self.grants / (5 * self.tenants * ENTITIES.len())).max(1)
    }

    /// About one record in ten has an owner.
    pub fn owners(&self) -> usize {
        self.tenants * ENTITIES.len() * self.records_per_entity() / 10
    }

    /// One local role for every twenty grants.
    pub fn local_roles(&self) -> usize {
        self.grants / 20
    }
}

const SEED_ROLES: u64 = 1;
const SEED_USERS: u64 = 2;
const SEED_GRANTS: u64 = 3;
const SEED_OWNERS: u64 = 4;
const SEED_LOCALS: u64 = 5;

pub fn tenant(t: usize) -> TenantId {
    format!("tenant-{t}").parse().expect("valid")
}

pub fn user(i: usize) -> UserId {
    UserId::new(Ulid::from_parts(i as u64 + 1, 7))
}

pub fn role(r: usize) -> RoleName {
    format!("role-{r}").parse().expect("valid")
}

pub fn entity(e: usize) -> EntityName {
    ENTITIES[e].parse().expect("valid")
}

pub fn record(n: usize) -> RecordId {
    format!("R{n}").parse().expect("valid")
}

/// The tenant user `i` belongs to.
pub fn tenant_of(i: usize, sizes: &Sizes) -> usize {
    i % sizes.tenants
}

/// A random member of tenant `t`.
pub fn member_of(t: usize, sizes: &Sizes, rng: &mut Rng) -> usize {
    let per_tenant = sizes.users.div_ceil(sizes.tenants);
    loop {
        let i = rng.below(per_tenant) * sizes.tenants + t;
        if i < sizes.users {
            return i;
        }
    }
}

/// The permissions of custom role `r` of tenant `t` (about one in ten of the universe).
pub fn role_permissions(t: usize, r: usize, universe: &[Permission]) -> BTreeSet<Permission> {
    let mut rng = Rng::at(SEED_ROLES, (t * 100_000 + r) as u64);
    universe
        .iter()
        .filter(|_| rng.chance(0.1))
        .cloned()
        .collect()
}

/// A member: the roles held in their tenant and custom permissions.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub tenant: usize,
    pub roles: BTreeSet<RoleName>,
    pub custom: BTreeSet<Permission>,
}

impl MemberSpec {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r.as_str() == "admin")
    }
}

/// User `i`: one in two hundred is an admin (global access); the others hold one to three
/// custom roles, often the built-in `user` role, and now and then custom permissions.
pub fn member(i: usize, sizes: &Sizes, universe: &[Permission]) -> MemberSpec {
    let mut rng = Rng::at(SEED_USERS, i as u64);
    let mut roles = BTreeSet::new();
    let mut custom = BTreeSet::new();
    if rng.chance(0.005) {
        roles.insert("admin".parse().expect("valid"));
    } else {
        if rng.chance(0.3) {
            roles.insert("user".parse().expect("valid"));
        }
        for _ in 0..1 + rng.below(3) {
            roles.insert(role(rng.below(sizes.roles_per_tenant)));
        }
        if rng.chance(0.05) {
            for _ in 0..2 {
                custom.insert(universe[rng.below(universe.len())].clone());
            }
        }
    }
    MemberSpec {
        tenant: tenant_of(i, sizes),
        roles,
        custom,
    }
}

/// One user's access to one record.
#[derive(Debug, Clone)]
pub struct GrantSpec {
    pub tenant: usize,
    pub entity: usize,
    pub record: usize,
    pub user: usize,
    pub access: RecordAccess,
}

/// Grant `k`: grants are spread evenly over users, on records of the user's tenant, mostly on
/// entities with row-level security, seven in ten read-only.
pub fn grant(k: usize, sizes: &Sizes) -> GrantSpec {
    let mut rng = Rng::at(SEED_GRANTS, k as u64);
    let user = k % sizes.users;
    let entity = match rng.below(20) {
        0..=7 => 0,
        8..=12 => 1,
        13..=17 => 3,
        _ => 2,
    };
    GrantSpec {
        tenant: tenant_of(user, sizes),
        entity,
        record: rng.below(sizes.records_per_entity()),
        user,
        access: if rng.chance(0.7) {
            RecordAccess::ReadOnly
        } else {
            RecordAccess::ReadWrite
        },
    }
}

/// Owner `o`: a member of the record's tenant.
pub fn owner(o: usize, sizes: &Sizes) -> (usize, usize, usize, usize) {
    let mut rng = Rng::at(SEED_OWNERS, o as u64);
    let t = o % sizes.tenants;
    let entity = rng.below(ENTITIES.len());
    let record = rng.below(sizes.records_per_entity());
    (t, entity, record, member_of(t, sizes, &mut rng))
}

/// Local role `l`: a custom role (now and then `admin`) on one record of the holder's tenant.
pub fn local_role(l: usize, sizes: &Sizes) -> (usize, usize, usize, usize, RoleName) {
    let mut rng = Rng::at(SEED_LOCALS, l as u64);
    let user = rng.below(sizes.users);
    let entity = rng.below(ENTITIES.len());
    let record = rng.below(sizes.records_per_entity());
    let role = if rng.chance(0.05) {
        "admin".parse().expect("valid")
    } else {
        role(rng.below(sizes.roles_per_tenant))
    };
    (tenant_of(user, sizes), entity, record, user, role)
}

/// Turns domain events into recorded ones at consecutive positions.
pub struct Recorder {
    position: u64,
    meta: Metadata,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            position: 0,
            meta: Metadata {
                actor: Actor::system("bench"),
                occurred_at: OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("valid"),
                correlation_id: "bench".into(),
                causation_id: None,
            },
        }
    }
}

impl Recorder {
    pub fn record(
        &mut self,
        tenant: Option<&TenantId>,
        id: String,
        event: DomainEvent,
    ) -> RecordedEvent {
        self.position += 1;
        let stream = StreamKey::new(tenant.cloned(), event.aggregate_type(), id);
        RecordedEvent {
            position: self.position,
            envelope: event.into_envelope(Ulid::from_parts(self.position, 0), &stream, &self.meta),
            msg_id: None,
        }
    }
}

/// Every event of the world, in an order the write side could produce, handed to `sink` in
/// chunks of about `chunk` events.
pub fn world_events(sizes: &Sizes, chunk: usize, mut sink: impl FnMut(&[RecordedEvent])) {
    let universe = permission_universe();
    let mut recorder = Recorder::default();
    let mut buffer: Vec<RecordedEvent> = Vec::with_capacity(chunk + 16);
    let mut push = |buffer: &mut Vec<RecordedEvent>, event: RecordedEvent| {
        buffer.push(event);
        if buffer.len() >= chunk {
            sink(buffer);
            buffer.clear();
        }
    };
    for t in 0..sizes.tenants {
        let tid = tenant(t);
        let created = DomainEvent::TenantCreated(TenantCreated {
            name: tid.to_string(),
        });
        push(
            &mut buffer,
            recorder.record(Some(&tid), tid.to_string(), created),
        );
        for r in 0..sizes.roles_per_tenant {
            let defined = DomainEvent::RoleDefined(RoleDefined {
                description: format!("role {r}"),
                permissions: role_permissions(t, r, &universe),
                global_access: false,
            });
            push(
                &mut buffer,
                recorder.record(Some(&tid), role(r).to_string(), defined),
            );
        }
        for (e, name) in ENTITIES.iter().enumerate() {
            let registered = DomainEvent::EntityRegistered(EntityRegistered {
                fields: vec![
                    "title".parse().expect("valid"),
                    "amount".parse().expect("valid"),
                ],
                rls: entity_rls(e),
                policy: entity_policy(e),
            });
            push(
                &mut buffer,
                recorder.record(Some(&tid), (*name).into(), registered),
            );
        }
    }
    for i in 0..sizes.users {
        let spec = member(i, sizes, &universe);
        let tid = tenant(spec.tenant);
        let uid = user(i);
        let registered = DomainEvent::UserRegistered(UserRegistered {
            email: format!("user{i}@example.com"),
            first_name: "Bench".into(),
            last_name: format!("User {i}"),
            tenant: tid.clone(),
        });
        push(
            &mut buffer,
            recorder.record(None, uid.to_string(), registered),
        );
        for role in spec.roles {
            let assigned = DomainEvent::RoleAssigned(RoleAssigned {
                user: uid,
                role,
                expires_at: None,
            });
            push(
                &mut buffer,
                recorder.record(Some(&tid), uid.to_string(), assigned),
            );
        }
        if !spec.custom.is_empty() {
            let granted = DomainEvent::PermissionsGranted(PermissionsGranted {
                user: uid,
                permissions: spec.custom,
                expires_at: None,
            });
            push(
                &mut buffer,
                recorder.record(Some(&tid), uid.to_string(), granted),
            );
        }
    }
    for k in 0..sizes.grants {
        let g = grant(k, sizes);
        let (entity, record) = (entity(g.entity), record(g.record));
        let id = format!("{entity}:{record}");
        let granted = DomainEvent::RecordGranted(RecordGranted {
            entity,
            record,
            user: user(g.user),
            access: g.access,
            expires_at: None,
        });
        push(
            &mut buffer,
            recorder.record(Some(&tenant(g.tenant)), id, granted),
        );
    }
    for o in 0..sizes.owners() {
        let (t, e, r, i) = owner(o, sizes);
        let (entity, record) = (entity(e), record(r));
        let id = format!("{entity}:{record}");
        let set = DomainEvent::RecordOwnerSet(RecordOwnerSet {
            entity,
            record,
            owner: user(i),
        });
        push(&mut buffer, recorder.record(Some(&tenant(t)), id, set));
    }
    for l in 0..sizes.local_roles() {
        let (t, e, r, i, role) = local_role(l, sizes);
        let (entity, record) = (entity(e), record(r));
        let id = format!("{entity}:{record}");
        let assigned = DomainEvent::LocalRoleAssigned(LocalRoleAssigned {
            entity,
            record,
            user: user(i),
            role,
            expires_at: None,
        });
        push(&mut buffer, recorder.record(Some(&tenant(t)), id, assigned));
    }
    if !buffer.is_empty() {
        sink(&buffer);
    }
}

/// The read model of a world, folded by the real projection into sled in `dir`.
pub struct ReadModel {
    pub db: sled::Db,
    pub tree: sled::Tree,
    pub access: Access,
    pub events: u64,
    pub seconds: f64,
}

pub fn build_read_model(dir: &Path, sizes: &Sizes) -> ReadModel {
    // The service's settings for read models (see projections/runtime/src/store.rs).
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
        .open()
        .expect("sled opens");
    let tree = db.open_tree(NAME).expect("the access tree");
    let cache = Arc::new(FactCache::default());
    let projection = AccessProjection::new(cache.clone());
    // As a runner does when it opens the tree: the record index is loaded (empty here) and then
    // follows every commit, so record checks read standings and owners from memory.
    projection.opened(&tree);
    let started = Instant::now();
    let mut events = 0u64;
    let mut last_report = Instant::now();
    world_events(sizes, 20_000, |chunk| {
        apply_events(&projection, &tree, chunk).expect("the world folds");
        events += chunk.len() as u64;
        if last_report.elapsed().as_secs() >= 30 {
            eprintln!(
                "  … {events} events folded in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    });
    db.flush().expect("flushes");
    ReadModel {
        access: Access::new(tree.clone(), cache),
        db,
        tree,
        events,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// What kind of question a request is, for the per-kind figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A record the user was granted (read, or update when the grant is read-write).
    Granted,
    /// A random record of an entity with row-level security: almost always denied.
    DeniedRecord,
    /// A type-level question (no record): a random permission of the universe.
    TypeLevel,
    /// An admin (global access), any permission, with or without a record.
    Global,
    /// The owner of a record acting on it.
    Owner,
    /// The holder of a local role acting on that record.
    LocalRole,
    /// A user asking in a tenant they do not belong to.
    CrossTenant,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Granted => "granted record",
            Kind::DeniedRecord => "other record",
            Kind::TypeLevel => "type-level",
            Kind::Global => "global access",
            Kind::Owner => "owner",
            Kind::LocalRole => "local role",
            Kind::CrossTenant => "cross-tenant",
        }
    }
}

/// One question, owned.
#[derive(Debug, Clone)]
pub struct Question {
    pub kind: Kind,
    pub tenant: TenantId,
    pub user: UserId,
    pub permission: Permission,
    pub record: Option<RecordId>,
}

/// `count` random questions; `weights` gives the share of each kind.
pub fn questions(
    sizes: &Sizes,
    count: usize,
    weights: &[(Kind, usize)],
    seed: u64,
) -> Vec<Question> {
    let universe = permission_universe();
    let mut rng = Rng::new(seed);
    // Admins, found once (one user in two hundred).
    let admins: Vec<usize> = (0..sizes.users)
        .filter(|i| member(*i, sizes, &universe).is_admin())
        .collect();
    let total: usize = weights.iter().map(|(_, w)| w).sum();
    let crud = |rng: &mut Rng| Action::CRUD[rng.below(4)];
    let entity_permission =
        |e: usize, action: Action| Permission::entity(&entity(e), action).expect("valid");
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut pick = rng.below(total);
        let kind = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(k, _)| *k)
            .expect("weights add up");
        let q = match kind {
            Kind::Granted => {
                let g = grant(rng.below(sizes.grants), sizes);
                let action = match g.access {
                    RecordAccess::ReadWrite if rng.chance(0.5) => Action::Update,
                    _ => Action::Read,
                };
                Question {
                    kind,
                    tenant: tenant(g.tenant),
                    user: user(g.user),
                    permission: entity_permission(g.entity, action),
                    record: Some(record(g.record)),
                }
            }
            Kind::DeniedRecord => {
                let i = rng.below(sizes.users);
                let e = [0, 1, 3][rng.below(3)];
                Question {
                    kind,
                    tenant: tenant(tenant_of(i, sizes)),
                    user: user(i),
                    permission: entity_permission(e, crud(&mut rng)),
                    record: Some(record(rng.below(sizes.records_per_entity()))),
                }
            }
            Kind::TypeLevel => {
                let i = rng.below(sizes.users);
                Question {
                    kind,
                    tenant: tenant(tenant_of(i, sizes)),
                    user: user(i),
                    permission: universe[rng.below(universe.len())].clone(),
                    record: None,
                }
            }
            Kind::Global => {
                if admins.is_empty() {
                    continue;
                }
                let i = admins[rng.below(admins.len())];
                let e = rng.below(ENTITIES.len());
                let with_record = rng.chance(0.5);
                Question {
                    kind,
                    tenant: tenant(tenant_of(i, sizes)),
                    user: user(i),
                    permission: if with_record {
                        entity_permission(e, crud(&mut rng))
                    } else {
                        universe[rng.below(universe.len())].clone()
                    },
                    record: with_record.then(|| record(rng.below(sizes.records_per_entity()))),
                }
            }
            Kind::Owner => {
                if sizes.owners() == 0 {
                    continue;
                }
                let (t, e, r, i) = owner(rng.below(sizes.owners()), sizes);
                Question {
                    kind,
                    tenant: tenant(t),
                    user: user(i),
                    permission: entity_permission(e, crud(&mut rng)),
                    record: Some(record(r)),
                }
            }
            Kind::LocalRole => {
                if sizes.local_roles() == 0 {
                    continue;
                }
                let (t, e, r, i, _) = local_role(rng.below(sizes.local_roles()), sizes);
                Question {
                    kind,
                    tenant: tenant(t),
                    user: user(i),
                    permission: entity_permission(e, crud(&mut rng)),
                    record: Some(record(r)),
                }
            }
            Kind::CrossTenant => {
                let g = grant(rng.below(sizes.grants), sizes);
                let other = (g.tenant + 1 + rng.below(sizes.tenants.max(2) - 1)) % sizes.tenants;
                let with_record = rng.chance(0.5);
                Question {
                    kind,
                    tenant: tenant(other),
                    user: user(g.user),
                    permission: if with_record {
                        entity_permission(g.entity, Action::Read)
                    } else {
                        universe[rng.below(universe.len())].clone()
                    },
                    record: with_record.then(|| record(g.record)),
                }
            }
        };
        out.push(q);
    }
    out
}

/// Latency figures of a set of samples, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64
        };
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: *samples.last().unwrap_or(&0) as f64,
            mean: samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {} · p99 {} · p99.9 {} · max {} · mean {} (n = {})",
            duration(self.p50),
            duration(self.p99),
            duration(self.p999),
            duration(self.max),
            duration(self.mean),
            self.count
        )
    }
}

pub fn duration(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// VmRSS and VmHWM of this process, in MiB.
pub fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Asks the read model one question.
pub fn ask(access: &Access, q: &Question, now: OffsetDateTime) -> bool {
    access
        .check(idstream_domain::access::CheckRequest {
            tenant: &q.tenant,
            subject: idstream_domain::access::Subject::User(q.user),
            permission: &q.permission,
            record: q.record.as_ref(),
            restriction: None,
            now,
        })
        .expect("the check reads sled")
        .allowed
}

/// The time checks are asked at.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_086_400).expect("valid")
}
