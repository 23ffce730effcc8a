//! The same access model as a handful of Cedar policies (`cedar-policy` 4), checked against the
//! idstream read model on the same world and the same random requests: first every request
//! through both, which must agree on allowed/denied (a disagreement prints the request and exits
//! with status 1), then the latency and throughput of each on one thread.
//!
//! ```text
//! cargo bench -p idstream-access --bench cedar
//! ACCESS_CEDAR_USERS=100000 ACCESS_CEDAR_GRANTS=1000000 cargo bench -p idstream-access --bench cedar
//! ```
//!
//! The Cedar model, with no policy per grant:
//! - entities: `User` (parents: the `Tenant` it is a member of, the `Role`s it holds there, and
//!   `Perm`s for its custom permissions); `Role` (parents: the `Perm`s it grants, or the tenant's
//!   `Global` group for global access); `Type` (a named resource or an entity, with `rls`, and
//!   the actions its policy gives `_CREATOR` and `_AUTHENTICATED_USER`); `Record` (its `entity`,
//!   `readers` and `writers` sets of users for read-only and read-write grants, `owner`, `local`
//!   (the users holding a local role on it) and `local_actions` (the (user, action) pairs their
//!   local roles' permissions or global access cover, computed from the roles when the entities
//!   are built: Cedar has no quantifier to look a role up from a set of (user, role) pairs);
//! - nine policies: global access; role and custom permissions on types, and on records of
//!   entities without row-level security; `_AUTHENTICATED_USER` the same two ways; read grants;
//!   read-write grants; owners with `_CREATOR`; local roles.
//!
//! A request is `User`, `Action::"read|create|update|delete"`, the `Record` or `Type`, and the
//! `Perm` entity of the permission in the context.
//!
//! Knobs: `ACCESS_CEDAR_TENANTS` (5), `ACCESS_CEDAR_USERS` (20000), `ACCESS_CEDAR_GRANTS`
//! (200000), `ACCESS_CEDAR_ROLES` (50 per tenant), `ACCESS_CEDAR_REQUESTS` (50000). The world is
//! smaller than the `checks` one because Cedar keeps every entity in memory; both engines answer
//! from the same world here. Target: idstream ≥ 10× faster than Cedar.

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use common::{ENTITIES, Kind, Latency, Question, Sizes, knob};
use idstream_domain::access::model::{ADMIN_RESOURCES, SERVICE_RESOURCES, STANDARD_RESOURCES};
use idstream_domain::access::{Action, Principal, PseudoRole, RecordAccess, Resource};

const POLICIES: &str = r#"
// Global access: a role with global access (admin, owner) held in the resource's tenant.
permit (principal, action, resource) when { principal in resource.global };

// Type level: the held roles' permissions and the custom ones are ancestors of the user.
permit (principal, action, resource is Type) when { principal in context.permission };
permit (principal, action, resource is Record)
when { !resource.entity.rls && principal in context.permission };

// `_AUTHENTICATED_USER` entries of the entity policy: every member of the tenant.
permit (principal, action, resource is Type)
when { principal in resource.tenant && resource.authenticated.contains(action) };
permit (principal, action, resource is Record)
when {
  !resource.entity.rls &&
  principal in resource.tenant &&
  resource.entity.authenticated.contains(action)
};

// Record grants, to members of the tenant.
permit (principal, action == Action::"read", resource is Record)
when {
  principal in resource.tenant &&
  (resource.readers.contains(principal) || resource.writers.contains(principal))
};
permit (principal, action in [Action::"update", Action::"delete"], resource is Record)
when { principal in resource.tenant && resource.writers.contains(principal) };

// Owners, where the entity policy lists `_CREATOR` for the action.
permit (principal, action, resource is Record)
when {
  principal in resource.tenant &&
  resource has owner &&
  resource.owner == principal &&
  resource.entity.creator.contains(action)
};

// Local roles: held on this record, with a permission (or global access) covering the action.
permit (principal, action, resource is Record)
when { principal in resource.tenant && resource.local.contains(principal) &&
       resource.local_actions.contains({"user": principal, "action": action}) };
"#;

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).expect("a valid type"),
        EntityId::new(id),
    )
}

fn euid(value: EntityUid) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(value)
}

fn action_uid(action: Action) -> EntityUid {
    uid("Action", action.as_str())
}

fn user_uid(i: usize) -> EntityUid {
    uid("User", &common::user(i).to_string())
}

fn named_resources() -> Vec<&'static str> {
    STANDARD_RESOURCES
        .iter()
        .chain(ADMIN_RESOURCES)
        .chain(SERVICE_RESOURCES)
        .copied()
        .collect()
}

/// The facts of the world, folded to their final state (later grants and owners win).
struct Facts {
    grants: HashMap<(usize, usize, usize), Vec<(usize, RecordAccess)>>,
    owners: HashMap<(usize, usize, usize), usize>,
    locals: HashMap<(usize, usize, usize), BTreeSet<(usize, String)>>,
}

fn facts(sizes: &Sizes) -> Facts {
    let mut grants: HashMap<(usize, usize, usize), HashMap<usize, RecordAccess>> = HashMap::new();
    for k in 0..sizes.grants {
        let g = common::grant(k, sizes);
        grants
            .entry((g.tenant, g.entity, g.record))
            .or_default()
            .insert(g.user, g.access);
    }
    let mut owners = HashMap::new();
    for o in 0..sizes.owners() {
        let (t, e, r, i) = common::owner(o, sizes);
        owners.insert((t, e, r), i);
    }
    let mut locals: HashMap<(usize, usize, usize), BTreeSet<(usize, String)>> = HashMap::new();
    for l in 0..sizes.local_roles() {
        let (t, e, r, i, role) = common::local_role(l, sizes);
        locals
            .entry((t, e, r))
            .or_default()
            .insert((i, role.to_string()));
    }
    Facts {
        grants: grants
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect(),
        owners,
        locals,
    }
}

fn cedar_entities(sizes: &Sizes, facts: &Facts) -> Entities {
    let universe = common::permission_universe();
    let user_role = idstream_domain::access::role::default_user_permissions();
    let mut entities: Vec<Entity> = Vec::new();
    let set = |users: &mut dyn Iterator<Item = usize>| {
        RestrictedExpression::new_set(users.map(|i| euid(user_uid(i))).collect::<Vec<_>>())
    };
    let actions =
        |list: &BTreeSet<Principal>, wanted: PseudoRole| list.contains(&Principal::Pseudo(wanted));
    // Per tenant and role: the permissions and whether it has global access.
    let mut role_perms: HashMap<(usize, String), (bool, BTreeSet<String>)> = HashMap::new();
    for t in 0..sizes.tenants {
        let tenant = common::tenant(t).to_string();
        let tenant_uid = uid("Tenant", &tenant);
        let global_uid = uid("Global", &tenant);
        entities.push(Entity::new_no_attrs(tenant_uid.clone(), HashSet::new()));
        entities.push(Entity::new_no_attrs(global_uid.clone(), HashSet::new()));
        for p in &universe {
            entities.push(Entity::new_no_attrs(
                uid("Perm", &format!("{tenant}|{p}")),
                HashSet::new(),
            ));
        }
        let mut roles: Vec<(String, bool, BTreeSet<String>)> = vec![
            ("owner".into(), true, BTreeSet::new()),
            ("admin".into(), true, BTreeSet::new()),
            (
                "user".into(),
                false,
                user_role.iter().map(|p| p.to_string()).collect(),
            ),
        ];
        for r in 0..sizes.roles_per_tenant {
            let perms = common::role_permissions(t, r, &universe);
            roles.push((
                common::role(r).to_string(),
                false,
                perms.iter().map(|p| p.to_string()).collect(),
            ));
        }
        for (name, global, perms) in roles {
            let parents: HashSet<EntityUid> = if global {
                [global_uid.clone()].into()
            } else {
                perms
                    .iter()
                    .map(|p| uid("Perm", &format!("{tenant}|{p}")))
                    .collect()
            };
            entities.push(Entity::new_no_attrs(
                uid("Role", &format!("{tenant}|{name}")),
                parents,
            ));
            role_perms.insert((t, name), (global, perms));
        }
        let empty = || RestrictedExpression::new_set(Vec::<RestrictedExpression>::new());
        for name in named_resources() {
            let type_uid = uid("Type", &format!("{tenant}|{name}"));
            let attrs = HashMap::from([
                ("entity".to_owned(), euid(type_uid.clone())),
                ("global".to_owned(), euid(global_uid.clone())),
                ("tenant".to_owned(), euid(tenant_uid.clone())),
                ("rls".to_owned(), RestrictedExpression::new_bool(false)),
                ("creator".to_owned(), empty()),
                ("authenticated".to_owned(), empty()),
            ]);
            entities.push(Entity::new(type_uid, attrs, HashSet::new()).expect("an entity"));
        }
        for (e, name) in ENTITIES.iter().enumerate() {
            let type_uid = uid("Type", &format!("{tenant}|{name}"));
            let policy = common::entity_policy(e);
            let by = |wanted: PseudoRole| {
                RestrictedExpression::new_set(
                    Action::CRUD
                        .into_iter()
                        .filter(|a| actions(policy.principals(*a), wanted))
                        .map(|a| euid(action_uid(a)))
                        .collect::<Vec<_>>(),
                )
            };
            let attrs = HashMap::from([
                ("entity".to_owned(), euid(type_uid.clone())),
                ("global".to_owned(), euid(global_uid.clone())),
                ("tenant".to_owned(), euid(tenant_uid.clone())),
                (
                    "rls".to_owned(),
                    RestrictedExpression::new_bool(common::entity_rls(e)),
                ),
                ("creator".to_owned(), by(PseudoRole::Creator)),
                (
                    "authenticated".to_owned(),
                    by(PseudoRole::AuthenticatedUser),
                ),
            ]);
            entities.push(Entity::new(type_uid.clone(), attrs, HashSet::new()).expect("an entity"));
            for r in 0..sizes.records_per_entity() {
                let key = (t, e, r);
                let grants = facts
                    .grants
                    .get(&key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let readers = set(&mut grants
                    .iter()
                    .filter(|(_, a)| *a == RecordAccess::ReadOnly)
                    .map(|(i, _)| *i));
                let writers = set(&mut grants
                    .iter()
                    .filter(|(_, a)| *a == RecordAccess::ReadWrite)
                    .map(|(i, _)| *i));
                // Local roles: the holders, and the (holder, action) pairs their roles cover.
                let mut holders = BTreeSet::new();
                let mut pairs = Vec::new();
                for (i, role) in facts.locals.get(&key).into_iter().flatten() {
                    let Some((global, perms)) = role_perms.get(&(t, role.clone())) else {
                        continue;
                    };
                    for action in Action::CRUD {
                        let permission = format!("entity.{name}:{action}");
                        if *global || perms.contains(&permission) {
                            holders.insert(*i);
                            pairs.push(
                                RestrictedExpression::new_record([
                                    ("user".to_owned(), euid(user_uid(*i))),
                                    ("action".to_owned(), euid(action_uid(action))),
                                ])
                                .expect("a record"),
                            );
                        }
                    }
                }
                let mut attrs = HashMap::from([
                    ("entity".to_owned(), euid(type_uid.clone())),
                    ("global".to_owned(), euid(global_uid.clone())),
                    ("tenant".to_owned(), euid(tenant_uid.clone())),
                    ("readers".to_owned(), readers),
                    ("writers".to_owned(), writers),
                    ("local".to_owned(), set(&mut holders.into_iter())),
                    (
                        "local_actions".to_owned(),
                        RestrictedExpression::new_set(pairs),
                    ),
                ]);
                if let Some(owner) = facts.owners.get(&key) {
                    attrs.insert("owner".to_owned(), euid(user_uid(*owner)));
                }
                entities.push(
                    Entity::new(
                        uid("Record", &format!("{tenant}|{name}|{}", common::record(r))),
                        attrs,
                        HashSet::new(),
                    )
                    .expect("an entity"),
                );
            }
        }
    }
    for i in 0..sizes.users {
        let spec = common::member(i, sizes, &universe);
        let tenant = common::tenant(spec.tenant).to_string();
        let mut parents: HashSet<EntityUid> = [uid("Tenant", &tenant)].into();
        for role in &spec.roles {
            parents.insert(uid("Role", &format!("{tenant}|{role}")));
        }
        for p in &spec.custom {
            parents.insert(uid("Perm", &format!("{tenant}|{p}")));
        }
        entities.push(Entity::new_no_attrs(user_uid(i), parents));
    }
    Entities::from_entities(entities, None).expect("consistent entities")
}

fn cedar_request(q: &Question) -> Request {
    let tenant = q.tenant.as_str();
    let resource = match (&q.record, q.permission.resource()) {
        (Some(record), Resource::Entity(e)) => uid("Record", &format!("{tenant}|{e}|{record}")),
        (_, Resource::Entity(e)) => uid("Type", &format!("{tenant}|{e}")),
        (_, Resource::Named(n)) => uid("Type", &format!("{tenant}|{n}")),
        (_, Resource::Role(r)) => uid("Type", &format!("{tenant}|role.{r}")),
        (_, Resource::Members(r)) => uid("Type", &format!("{tenant}|members.{r}")),
        (_, Resource::Custom(r)) => uid("Type", &format!("{tenant}|{r}")),
    };
    let context = Context::from_pairs([(
        "permission".to_owned(),
        euid(uid("Perm", &format!("{tenant}|{}", q.permission))),
    )])
    .expect("a context");
    Request::new(
        uid("User", &q.user.to_string()),
        action_uid(q.permission.action()),
        resource,
        context,
        None,
    )
    .expect("a request")
}

fn main() {
    let sizes = Sizes {
        tenants: knob("ACCESS_CEDAR_TENANTS", 5),
        users: knob("ACCESS_CEDAR_USERS", 20_000),
        grants: knob("ACCESS_CEDAR_GRANTS", 200_000),
        roles_per_tenant: knob("ACCESS_CEDAR_ROLES", 50),
    };
    let requests = knob("ACCESS_CEDAR_REQUESTS", 50_000);
    println!(
        "world: {} tenants, {} users, {} grants, {} roles per tenant, {} records per entity, \
         {} owners, {} local roles",
        sizes.tenants,
        sizes.users,
        sizes.grants,
        sizes.roles_per_tenant,
        sizes.records_per_entity(),
        sizes.owners(),
        sizes.local_roles()
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let model = common::build_read_model(dir.path(), &sizes);
    println!(
        "  idstream: folded {} events in {:.1} s",
        model.events, model.seconds
    );
    let (rss_before, _) = common::memory();
    let started = Instant::now();
    let facts = facts(&sizes);
    let entities = cedar_entities(&sizes, &facts);
    let policies = PolicySet::from_str(POLICIES).expect("the policies parse");
    let (rss_after, _) = common::memory();
    println!(
        "  cedar: {} policies, entities built in {:.1} s (about {:.0} MiB)",
        policies.policies().count(),
        started.elapsed().as_secs_f64(),
        rss_after - rss_before
    );

    let mix = [
        (Kind::Granted, 30),
        (Kind::DeniedRecord, 15),
        (Kind::TypeLevel, 20),
        (Kind::Global, 5),
        (Kind::Owner, 10),
        (Kind::LocalRole, 10),
        (Kind::CrossTenant, 10),
    ];
    let questions = common::questions(&sizes, requests, &mix, 11);
    let cedar_requests: Vec<Request> = questions.iter().map(cedar_request).collect();
    let authorizer = Authorizer::new();
    let now = common::now();

    // Agreement first (and warm-up for both).
    let mut allowed = 0;
    for (q, request) in questions.iter().zip(&cedar_requests) {
        let ours = common::ask(&model.access, q, now);
        let response = authorizer.is_authorized(request, &policies, &entities);
        let theirs = response.decision() == cedar_policy::Decision::Allow;
        if ours != theirs {
            let explained = model
                .access
                .explain(idstream_domain::access::CheckRequest {
                    tenant: &q.tenant,
                    subject: idstream_domain::access::Subject::User(q.user),
                    permission: &q.permission,
                    record: q.record.as_ref(),
                    restriction: None,
                    now,
                })
                .expect("explains");
            eprintln!("DISAGREEMENT on {q:?}");
            eprintln!("  idstream: {explained:?}");
            eprintln!("  cedar request: {request}");
            eprintln!(
                "  cedar: {:?}, policies {:?}, errors {:?}",
                response.decision(),
                response.diagnostics().reason().collect::<Vec<_>>(),
                response
                    .diagnostics()
                    .errors()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
            std::process::exit(1);
        }
        allowed += usize::from(ours);
    }
    println!(
        "  agreement: {} of {} requests (100 %), {:.0} % allowed",
        questions.len(),
        questions.len(),
        100.0 * allowed as f64 / questions.len() as f64
    );

    // Latency and throughput, alternating engines per round.
    const ROUNDS: usize = 4;
    let per_round = questions.len().div_ceil(ROUNDS);
    let (mut ours_ns, mut theirs_ns) = (Vec::new(), Vec::new());
    let (mut ours_s, mut theirs_s) = (0.0, 0.0);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(questions.len());
        let started = Instant::now();
        for q in &questions[range.clone()] {
            let t = Instant::now();
            let allowed = common::ask(&model.access, q, now);
            ours_ns.push(t.elapsed().as_nanos() as u64);
            black_box(allowed);
        }
        ours_s += started.elapsed().as_secs_f64();
        let started = Instant::now();
        for request in &cedar_requests[range] {
            let t = Instant::now();
            let response = authorizer.is_authorized(request, &policies, &entities);
            theirs_ns.push(t.elapsed().as_nanos() as u64);
            black_box(response);
        }
        theirs_s += started.elapsed().as_secs_f64();
    }
    let ours = Latency::of(&mut ours_ns);
    let theirs = Latency::of(&mut theirs_ns);
    let (ours_rate, theirs_rate) = (
        questions.len() as f64 / ours_s,
        questions.len() as f64 / theirs_s,
    );
    println!("  idstream check:          {}", ours.line());
    println!("  cedar is_authorized:     {}", theirs.line());
    println!();
    println!(
        "summary: idstream {:.0} checks/s, cedar {:.0} requests/s on one thread: idstream {:.1}× \
         faster by throughput, {:.1}× by p50, {:.1}× by p99 (target ≥ 10×): {}",
        ours_rate,
        theirs_rate,
        ours_rate / theirs_rate,
        theirs.p50 / ours.p50,
        theirs.p99 / ours.p99,
        if ours_rate / theirs_rate >= 10.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}
