use std::collections::BTreeSet;
use std::sync::Arc;

use idstream_domain::access::{
    Action, CheckRequest, EntityPolicy, MenuItem, Permission, Principal, PseudoRole, RecordAccess,
    RecordId, Subject,
};
use idstream_domain::events::*;
use idstream_domain::user::UserFlags;
use idstream_domain::{Actor, DomainEvent, Metadata, StreamKey, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::apply_events;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use super::*;

const T0: OffsetDateTime = datetime!(2026-05-01 9:00 UTC);

fn u(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, 1))
}
fn p<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// Builds recorded events at consecutive positions, the aggregate type taken from the event.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<RecordedEvent>,
}

impl Log {
    pub(crate) fn push(
        &mut self,
        tenant: Option<&str>,
        id: impl Into<String>,
        event: DomainEvent,
    ) -> &mut Log {
        let position = self.events.len() as u64 + 1;
        let stream = StreamKey::new(tenant.map(p), event.aggregate_type(), id);
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: T0 + Duration::minutes(position as i64),
            correlation_id: format!("c{position}"),
            causation_id: None,
        };
        self.events.push(RecordedEvent {
            position,
            envelope: event.into_envelope(Ulid::from_parts(position, 0), &stream, &meta),
            msg_id: None,
        });
        self
    }
    fn tenant(&mut self, t: &str) -> &mut Log {
        self.push(
            Some(t),
            t,
            DomainEvent::TenantCreated(TenantCreated { name: t.into() }),
        )
    }
    fn user(&mut self, n: u64) -> &mut Log {
        self.push(
            None,
            u(n).to_string(),
            DomainEvent::UserRegistered(UserRegistered {
                email: format!("u{n}@example.com"),
                first_name: "F".into(),
                last_name: "L".into(),
                tenant: p("acme"),
            }),
        )
    }
    fn assign(&mut self, t: &str, n: u64, role: &str) -> &mut Log {
        self.push(
            Some(t),
            u(n).to_string(),
            DomainEvent::RoleAssigned(RoleAssigned {
                user: u(n),
                role: p(role),
                expires_at: None,
            }),
        )
    }
    fn entity(&mut self, t: &str, name: &str, rls: bool) -> &mut Log {
        self.push(
            Some(t),
            name,
            DomainEvent::EntityRegistered(EntityRegistered {
                fields: vec![p("title"), p("budget")],
                rls,
                policy: EntityPolicy::default(),
            }),
        )
    }
    fn grant(
        &mut self,
        t: &str,
        entity: &str,
        record: &str,
        n: u64,
        access: RecordAccess,
    ) -> &mut Log {
        self.push(
            Some(t),
            format!("{entity}:{record}"),
            DomainEvent::RecordGranted(RecordGranted {
                entity: p(entity),
                record: p(record),
                user: u(n),
                access,
                expires_at: None,
            }),
        )
    }
}

struct World {
    tree: sled::Tree,
    projection: AccessProjection,
    access: Access,
}

impl World {
    fn new() -> World {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree(NAME)
            .unwrap();
        let cache = Arc::new(FactCache::default());
        World {
            projection: AccessProjection::new(cache.clone()),
            access: Access::new(tree.clone(), cache),
            tree,
        }
    }

    fn apply(&self, log: &Log) {
        apply_events(&self.projection, &self.tree, &log.events).unwrap();
    }

    fn ask(&self, tenant: &str, user: u64, permission: &str, record: Option<&str>) -> Decision {
        let tenant: TenantId = p(tenant);
        let permission: Permission = p(permission);
        let record: Option<RecordId> = record.map(p);
        self.access
            .check(CheckRequest {
                tenant: &tenant,
                subject: Subject::User(u(user)),
                permission: &permission,
                record: record.as_ref(),
                restriction: None,
                now: T0 + Duration::days(1),
            })
            .unwrap()
    }
}

use idstream_domain::access::{Decision, Reason};

fn base() -> Log {
    let mut log = Log::default();
    log.tenant("acme")
        .tenant("globex")
        .user(1)
        .user(2)
        .assign("acme", 1, "user")
        .assign("acme", 2, "admin")
        .entity("acme", "project", true);
    log
}

#[test]
fn built_in_roles_exist_in_every_new_tenant() {
    let world = World::new();
    world.apply(&base());
    let roles: Vec<String> = world
        .access
        .roles(&p("globex"))
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(roles, ["admin", "owner", "user"]);
    assert!(world.ask("acme", 1, "files:read", None).allowed);
    assert!(!world.ask("acme", 1, "users:read", None).allowed);
    assert_eq!(
        world.ask("acme", 2, "users:delete", None).reason,
        Reason::GlobalAccess { role: p("admin") }
    );
}

#[test]
fn a_grant_takes_effect_on_the_next_check_and_its_revocation_too() {
    let world = World::new();
    let mut log = base();
    world.apply(&log);
    // Warm the cache with the denial first: the cache must not keep it past the grant.
    assert!(
        !world
            .ask("acme", 1, "entity.project:read", Some("P1"))
            .allowed
    );
    log.grant("acme", "project", "P1", 1, RecordAccess::ReadOnly);
    world.apply(&log);
    assert_eq!(
        world.ask("acme", 1, "entity.project:read", Some("P1")),
        Decision {
            allowed: true,
            reason: Reason::Grant {
                access: RecordAccess::ReadOnly
            }
        }
    );
    log.push(
        Some("acme"),
        "project:P1",
        DomainEvent::RecordRevoked(RecordRevoked {
            entity: p("project"),
            record: p("P1"),
            user: u(1),
        }),
    );
    world.apply(&log);
    assert!(
        !world
            .ask("acme", 1, "entity.project:read", Some("P1"))
            .allowed
    );
}

#[test]
fn role_changes_and_suspensions_invalidate_cached_facts() {
    let world = World::new();
    let mut log = base();
    world.apply(&log);
    assert!(!world.ask("acme", 1, "users:read", None).allowed);
    let mut perms = idstream_domain::access::role::default_user_permissions();
    perms.insert(p("users:read"));
    log.push(
        Some("acme"),
        "user",
        DomainEvent::RoleUpdated(RoleUpdated {
            description: "x".into(),
            permissions: perms,
            global_access: false,
        }),
    );
    world.apply(&log);
    assert!(world.ask("acme", 1, "users:read", None).allowed);
    log.push(
        None,
        u(1).to_string(),
        DomainEvent::UserSuspended(UserSuspended {
            until: None,
            reason: None,
        }),
    );
    world.apply(&log);
    assert!(!world.ask("acme", 1, "users:read", None).allowed);
}

#[test]
fn the_platform_administrator_flag_is_cached_and_dropped_when_it_changes() {
    let world = World::new();
    let mut log = base();
    world.apply(&log);
    let flags = |platform_admin| {
        DomainEvent::UserFlagsChanged(UserFlagsChanged {
            flags: UserFlags {
                platform_admin,
                ..UserFlags::default()
            },
        })
    };
    // Asked first while unset, so the account is cached without the flag.
    assert!(!world.access.is_platform_admin(&u(1)).unwrap());
    log.push(None, u(1).to_string(), flags(true));
    world.apply(&log);
    assert!(world.access.is_platform_admin(&u(1)).unwrap());
    log.push(None, u(1).to_string(), flags(false));
    world.apply(&log);
    assert!(!world.access.is_platform_admin(&u(1)).unwrap());
    // Nobody unknown is one.
    assert!(!world.access.is_platform_admin(&u(99)).unwrap());
}

#[test]
fn explain_names_the_deciding_event() {
    let world = World::new();
    let mut log = base();
    log.grant("acme", "project", "P1", 1, RecordAccess::ReadWrite);
    world.apply(&log);
    let tenant: TenantId = p("acme");
    let permission: Permission = p("entity.project:update");
    let record: RecordId = p("P1");
    let explained = world
        .access
        .explain(CheckRequest {
            tenant: &tenant,
            subject: Subject::User(u(1)),
            permission: &permission,
            record: Some(&record),
            restriction: None,
            now: T0,
        })
        .unwrap();
    assert!(explained.decision.allowed);
    assert_eq!(explained.sources.len(), 1);
    assert_eq!(explained.sources[0].source.position, 8);
    assert_eq!(explained.sources[0].source.event_type, "RecordGranted");

    let admin = world
        .access
        .explain(CheckRequest {
            tenant: &tenant,
            subject: Subject::User(u(2)),
            permission: &permission,
            record: Some(&record),
            restriction: None,
            now: T0,
        })
        .unwrap();
    let facts: Vec<(&str, u64)> = admin
        .sources
        .iter()
        .map(|s| (s.source.event_type.as_str(), s.source.position))
        .collect();
    assert_eq!(facts, [("RoleAssigned", 6), ("TenantCreated", 1)]);
}

#[test]
fn readable_records_are_listed_in_pages() {
    let world = World::new();
    let mut log = base();
    for r in ["A", "B", "C", "D"] {
        log.grant("acme", "project", r, 1, RecordAccess::ReadOnly);
    }
    log.push(
        Some("acme"),
        "project:E",
        DomainEvent::RecordOwnerSet(RecordOwnerSet {
            entity: p("project"),
            record: p("E"),
            owner: u(1),
        }),
    );
    world.apply(&log);
    let list = |after: Option<&str>| {
        let after: Option<RecordId> = after.map(p);
        world
            .access
            .readable_records(
                &p("acme"),
                Subject::User(u(1)),
                &p("project"),
                after.as_ref(),
                3,
                T0,
            )
            .unwrap()
            .unwrap()
    };
    let first = list(None);
    assert_eq!(first.records, [p::<RecordId>("A"), p("B"), p("C")]);
    assert_eq!(first.next, Some(p("C")));
    let second = list(Some("C"));
    assert_eq!(second.records, [p::<RecordId>("D"), p("E")]);
    assert_eq!(second.next, None);
    let admin = world
        .access
        .readable_records(&p("acme"), Subject::User(u(2)), &p("project"), None, 3, T0)
        .unwrap()
        .unwrap();
    assert!(admin.all);
}

#[test]
fn menus_merge_by_role_and_hide_what_the_member_cannot_use() {
    let world = World::new();
    let mut log = base();
    let item = |id: &str, permission: Option<&str>| MenuItem {
        id: id.into(),
        label: id.to_uppercase(),
        href: Some(format!("/{id}")),
        icon: None,
        permission: permission.map(p),
        children: vec![],
    };
    log.push(
        Some("acme"),
        "user",
        DomainEvent::RoleMenuSet(RoleMenuSet {
            menu: vec![
                item("docs", Some("documentation:read")),
                item("users", Some("users:read")),
            ],
        }),
    );
    world.apply(&log);
    let menu = world.access.menu(&p("acme"), &u(1), T0).unwrap();
    assert_eq!(
        menu.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["docs"]
    );
}

#[test]
fn flags_and_entity_summaries_are_read_back() {
    let world = World::new();
    let mut log = base();
    log.push(
        None,
        u(1).to_string(),
        DomainEvent::UserFlagsChanged(UserFlagsChanged {
            flags: UserFlags {
                platform_admin: true,
                ..UserFlags::default()
            },
        }),
    );
    let mut policy = EntityPolicy::default();
    policy
        .create
        .insert(Principal::Pseudo(PseudoRole::AuthenticatedUser));
    log.push(
        Some("acme"),
        "project",
        DomainEvent::EntityPolicyChanged(EntityPolicyChanged { policy }),
    );
    world.apply(&log);
    assert!(
        world
            .access
            .account_record(&u(1))
            .unwrap()
            .unwrap()
            .flags
            .platform_admin
    );
    let summary = world
        .access
        .entity_permissions(&p("acme"), Subject::User(u(1)), &p("project"), T0)
        .unwrap()
        .unwrap();
    assert_eq!(
        (summary.read, summary.create, summary.update, summary.delete),
        (false, true, false, false)
    );
    assert_eq!(
        Permission::entity(&p("project"), Action::Read)
            .unwrap()
            .as_str(),
        "entity.project:read"
    );
}

#[test]
fn member_removal_drops_roles_permissions_and_their_provenance() {
    let world = World::new();
    let mut log = base();
    log.push(
        Some("acme"),
        u(1).to_string(),
        DomainEvent::PermissionsGranted(PermissionsGranted {
            user: u(1),
            permissions: BTreeSet::from([p("users:read")]),
            expires_at: None,
        }),
    );
    world.apply(&log);
    assert_eq!(
        world.ask("acme", 1, "users:read", None).reason,
        Reason::CustomPermission
    );
    log.push(
        Some("acme"),
        u(1).to_string(),
        DomainEvent::MemberRemoved(MemberRemoved { user: u(1) }),
    );
    world.apply(&log);
    assert!(!world.ask("acme", 1, "users:read", None).allowed);
    assert!(!world.ask("acme", 1, "files:read", None).allowed);
    let leftovers = world
        .tree
        .scan_prefix(format!("p/m/acme/{}/", u(1)))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn folding_in_one_batch_or_event_by_event_gives_the_same_bytes() {
    let mut log = base();
    log.grant("acme", "project", "P1", 1, RecordAccess::ReadOnly)
        .grant("acme", "project", "P1", 2, RecordAccess::ReadWrite);
    let dump = |tree: &sled::Tree| {
        tree.iter()
            .map(|e| e.unwrap())
            .collect::<Vec<(sled::IVec, sled::IVec)>>()
    };
    let one = World::new();
    one.apply(&log);
    let many = World::new();
    for event in &log.events {
        apply_events(&many.projection, &many.tree, std::slice::from_ref(event)).unwrap();
    }
    assert_eq!(dump(&one.tree), dump(&many.tree));
}

#[test]
fn the_record_index_loaded_from_a_tree_answers_like_the_tree() {
    let world = World::new();
    let mut log = base();
    log.grant("acme", "project", "P1", 1, RecordAccess::ReadOnly)
        .grant("acme", "project", "P2", 1, RecordAccess::ReadWrite)
        .push(
            Some("acme"),
            "project:P3",
            DomainEvent::RecordOwnerSet(RecordOwnerSet {
                entity: p("project"),
                record: p("P3"),
                owner: u(1),
            }),
        )
        .push(
            Some("acme"),
            "project:P4",
            DomainEvent::LocalRoleAssigned(LocalRoleAssigned {
                entity: p("project"),
                record: p("P4"),
                user: u(1),
                role: p("admin"),
                expires_at: None,
            }),
        );
    world.apply(&log);
    // A second handle over the same tree whose index is loaded from it, then follows commits.
    let cache = Arc::new(FactCache::default());
    let projection = AccessProjection::new(cache.clone());
    use idstream_projection_runtime::Projection;
    projection.opened(&world.tree);
    let indexed = World {
        tree: world.tree.clone(),
        projection,
        access: Access::new(world.tree.clone(), cache),
    };
    for record in ["P1", "P2", "P3", "P4", "P5"] {
        for action in ["read", "update", "delete"] {
            let permission = format!("entity.project:{action}");
            assert_eq!(
                indexed.ask("acme", 1, &permission, Some(record)),
                world.ask("acme", 1, &permission, Some(record)),
                "{permission} on {record}"
            );
        }
    }
    assert_eq!(
        indexed
            .ask("acme", 1, "entity.project:delete", Some("P4"))
            .reason,
        Reason::LocalRole { role: p("admin") }
    );
    // The loaded index follows later commits.
    log.push(
        Some("acme"),
        "project:P1",
        DomainEvent::RecordRevoked(RecordRevoked {
            entity: p("project"),
            record: p("P1"),
            user: u(1),
        }),
    );
    indexed.apply(&log);
    assert!(
        !indexed
            .ask("acme", 1, "entity.project:read", Some("P1"))
            .allowed
    );
}

#[test]
fn temporary_access_ends_at_its_end_is_listed_as_due_and_leaves_with_its_lapse() {
    let world = World::new();
    let mut log = base();
    let end = T0 + Duration::hours(12);
    let later = T0 + Duration::days(2);
    log.push(
        Some("acme"),
        u(1).to_string(),
        DomainEvent::RoleAssigned(RoleAssigned {
            user: u(1),
            role: p("admin"),
            expires_at: Some(end),
        }),
    )
    .push(
        Some("acme"),
        "project:P1",
        DomainEvent::RecordGranted(RecordGranted {
            entity: p("project"),
            record: p("P1"),
            user: u(1),
            access: RecordAccess::ReadWrite,
            expires_at: Some(later),
        }),
    )
    .push(
        Some("acme"),
        "project:P1",
        DomainEvent::LocalRoleAssigned(LocalRoleAssigned {
            entity: p("project"),
            record: p("P1"),
            user: u(2),
            role: p("user"),
            expires_at: Some(end),
        }),
    );
    world.apply(&log);
    let tenant: TenantId = p("acme");
    let permission: Permission = p("entity.project:delete");
    let record: RecordId = p("P1");
    let ask = |at: OffsetDateTime| {
        world
            .access
            .check(CheckRequest {
                tenant: &tenant,
                subject: Subject::User(u(1)),
                permission: &permission,
                record: Some(&record),
                restriction: None,
                now: at,
            })
            .unwrap()
    };
    let before = end - Duration::seconds(1);
    assert_eq!(
        ask(before).reason,
        Reason::GlobalAccess { role: p("admin") }
    );
    // From its end on, the role no longer counts; the grant still does until its own end.
    assert_eq!(
        ask(end).reason,
        Reason::Grant {
            access: RecordAccess::ReadWrite
        }
    );
    assert!(!ask(later).allowed);
    let explained = world
        .access
        .explain(CheckRequest {
            tenant: &tenant,
            subject: Subject::User(u(1)),
            permission: &permission,
            record: Some(&record),
            restriction: None,
            now: end,
        })
        .unwrap();
    assert!(
        explained.sources[0]
            .fact
            .ends_with(" until 2026-05-03T09:00:00Z"),
        "{explained:?}"
    );

    // The review at a moment leaves out what has ended then, and says when the rest ends.
    let review = world.access.access_review(&tenant, before).unwrap();
    let ada = review.members.iter().find(|m| m.user == u(1)).unwrap();
    let admin = ada.roles.iter().find(|h| h.name == "admin").unwrap();
    assert_eq!(admin.expires_at, Some(end));
    assert_eq!(ada.records[0].grant_expires_at, Some(later));
    let review = world.access.access_review(&tenant, end).unwrap();
    let ada = review.members.iter().find(|m| m.user == u(1)).unwrap();
    assert!(ada.roles.iter().all(|h| h.name != "admin"));
    let grace = review.members.iter().find(|m| m.user == u(2)).unwrap();
    assert!(grace.records.is_empty(), "{grace:?}");

    // The record's own page: both holders before the local role's end, only the grant after.
    let entity: EntityName = p("project");
    let holders = world
        .access
        .record_holders(&tenant, &entity, &record, before)
        .unwrap();
    let people: Vec<UserId> = holders.holders.iter().map(|(user, _)| *user).collect();
    assert_eq!(people, [u(1), u(2)]);
    let (_, ada) = &holders.holders[0];
    assert_eq!(
        ada.grant
            .as_ref()
            .map(|(access, source)| (*access, source.is_some())),
        Some((RecordAccess::ReadWrite, true))
    );
    assert_eq!(ada.grant_expires_at, Some(later));
    assert_eq!(holders.holders[1].1.local_roles[0].name, "user");
    let holders = world
        .access
        .record_holders(&tenant, &entity, &record, end)
        .unwrap();
    assert_eq!(holders.holders.len(), 1);
    assert_eq!(holders.owner, None);
    let elsewhere = world
        .access
        .record_holders(&p("globex"), &entity, &record, before)
        .unwrap();
    assert_eq!(elsewhere, Default::default());

    // Due for their lapse: nothing before the end, the membership and the record after it.
    assert!(world.access.due_lapses(before, 10).unwrap().is_empty());
    let due = world
        .access
        .due_lapses(end + Duration::seconds(1), 10)
        .unwrap();
    // Earliest end first; at the same end, in key order (records' standings before members).
    assert_eq!(
        due,
        [
            DueLapse::Record {
                tenant: tenant.clone(),
                entity: p("project"),
                record: record.clone()
            },
            DueLapse::Membership {
                tenant: tenant.clone(),
                user: u(1)
            }
        ]
    );
    assert_eq!(world.access.due_lapses(later, 1).unwrap().len(), 1);

    // Once the lapses are recorded, nothing is due and the facts are gone.
    log.push(
        Some("acme"),
        u(1).to_string(),
        DomainEvent::RoleLapsed(RoleLapsed {
            user: u(1),
            role: p("admin"),
            expired_at: end,
        }),
    )
    .push(
        Some("acme"),
        "project:P1",
        DomainEvent::LocalRoleLapsed(LocalRoleLapsed {
            entity: p("project"),
            record: p("P1"),
            user: u(2),
            role: p("user"),
            expired_at: end,
        }),
    );
    world.apply(&log);
    let due = world.access.due_lapses(later, 10).unwrap();
    assert_eq!(
        due,
        [DueLapse::Record {
            tenant: tenant.clone(),
            entity: p("project"),
            record: record.clone()
        }]
    );
    let member = world.access.member_record(&tenant, &u(1)).unwrap().unwrap();
    assert!(member.roles.contains(&p("user")) && member.role_expiry.is_empty());
    // A revocation takes the due key with it.
    log.push(
        Some("acme"),
        "project:P1",
        DomainEvent::RecordRevoked(RecordRevoked {
            entity: p("project"),
            record: p("P1"),
            user: u(1),
        }),
    );
    world.apply(&log);
    assert!(world.access.due_lapses(later, 10).unwrap().is_empty());
}

#[test]
fn standings_with_ends_survive_encoding_and_are_read_from_the_tree() {
    let standing = idstream_domain::access::RecordStanding {
        grant: Some(RecordAccess::ReadOnly),
        grant_expires: Some(datetime!(2026-06-01 12:30:15.5 UTC)),
        local_roles: [p("user"), p("r1")].into(),
        local_role_expiry: [(p("r1"), datetime!(2027-01-01 0:00 UTC))].into(),
    };
    let bytes = crate::fold::encode_standing(&standing);
    assert_eq!(crate::fold::decode_standing(&bytes), Some(standing));
    // Permanent standings keep their compact form.
    let plain = idstream_domain::access::RecordStanding {
        grant: Some(RecordAccess::ReadWrite),
        local_roles: [p("user")].into(),
        ..Default::default()
    };
    assert_eq!(crate::fold::encode_standing(&plain), b"\x02user");
}

#[test]
fn a_preview_answers_the_difference_the_events_make_once_applied_and_writes_nothing() {
    let world = World::new();
    let mut log = Log::default();
    log.tenant("acme")
        .user(1)
        .user(2)
        .assign("acme", 1, "user")
        .assign("acme", 2, "admin")
        .entity("acme", "project", true)
        .grant("acme", "project", "P1", 1, RecordAccess::ReadOnly);
    world.apply(&log);
    let acme: TenantId = p("acme");
    let now = T0 + Duration::days(1);
    let before_digest: Vec<_> = world.tree.iter().collect();

    // User 1 becomes an admin; user 2 loses admin and keeps nothing.
    let first = log.events.len();
    log.assign("acme", 1, "admin").push(
        Some("acme"),
        u(2).to_string(),
        DomainEvent::RoleRevoked(RoleRevoked {
            user: u(2),
            role: p("admin"),
        }),
    );
    let events: Vec<_> = log.events[first..]
        .iter()
        .map(|e| e.envelope.clone())
        .collect();
    let previewed = preview::preview(&world.tree, &acme, &events, now).unwrap();
    let after_preview: Vec<_> = world.tree.iter().collect();
    assert_eq!(before_digest.len(), after_preview.len(), "nothing written");

    let one = previewed.iter().find(|m| m.user == u(1)).unwrap();
    assert_eq!(one.global_access, Some((false, true)));
    let project = &one.entities[0];
    assert_eq!(project.all_records, Some((false, true)));
    let two = previewed.iter().find(|m| m.user == u(2)).unwrap();
    assert_eq!(two.global_access, Some((true, false)));
    // The admin role names no permission: losing it is losing global access, and with it
    // every record of the project.
    assert!(two.gained.is_empty() && two.lost.is_empty(), "{two:?}");
    assert_eq!(two.entities[0].all_records, Some((true, false)), "{two:?}");

    // Applied for real, the same difference.
    let users = [u(1), u(2)].into_iter().collect();
    let (_db, copy) = preview::copy_tenant(&world.tree, &acme, &users).unwrap();
    world.apply(&log);
    let actual = preview::difference_between(&copy, &world.access, &acme, &users, now).unwrap();
    assert_eq!(actual, previewed);
}

/// The raw-bytes canary (issue 22): events carrying a person's address, names, picture, phone,
/// attribute values and sign-in sources leave none of them in the store's files.
#[test]
fn no_personal_value_reaches_the_store_files() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        idstream_projection_runtime::personal::personal_values_stored_by(
            &crate::AccessProjection::new(std::sync::Arc::default()),
            root.path()
        ),
        vec![]
    );
}

/// The access review the slow way, as it was first built: every membership, every standing and
/// every owner of the tenant, merged by person. The paged review must read the same.
fn review_by_full_scan(access: &Access, tenant: &TenantId, now: OffsetDateTime) -> AccessReview {
    use std::collections::BTreeMap;
    let mut members: BTreeMap<UserId, ReviewedMember> = BTreeMap::new();
    let with = |user: UserId| -> ReviewedMember {
        ReviewedMember {
            user,
            status: access.account_record(&user).unwrap().map(|a| a.status),
            roles: Vec::new(),
            custom_permissions: Vec::new(),
            records: Vec::new(),
        }
    };
    let prefix = keys::member_prefix(tenant);
    for entry in access.tree().scan_prefix(&prefix) {
        let (key, _) = entry.unwrap();
        let user: UserId = p(std::str::from_utf8(&key[prefix.len()..]).unwrap());
        let whole = access.member_review(tenant, &user, now).unwrap();
        let mut reviewed = with(user);
        if let Some(whole) = whole {
            reviewed.roles = whole.roles;
            reviewed.custom_permissions = whole.custom_permissions;
        }
        members.insert(user, reviewed);
    }
    let mut records: BTreeMap<(UserId, String, String), RecordHolding> = BTreeMap::new();
    let blank = |entity: &str, record: &str| RecordHolding {
        entity: entity.into(),
        record: record.into(),
        grant: None,
        grant_expires_at: None,
        local_roles: Vec::new(),
        owner: None,
    };
    for entry in access
        .tree()
        .scan_prefix(keys::key(&["g", tenant.as_str(), ""]))
    {
        let (key, value) = entry.unwrap();
        let text = std::str::from_utf8(&key).unwrap().to_owned();
        let [_, _, entity, record, user] = text.split('/').collect::<Vec<_>>()[..] else {
            panic!("{text}")
        };
        let holding = records
            .entry((p(user), entity.into(), record.into()))
            .or_insert_with(|| blank(entity, record));
        let standing = crate::fold::decode_standing(&value).unwrap();
        access.add_standing(holding, &key, &standing, now).unwrap();
    }
    for entry in access
        .tree()
        .scan_prefix(keys::key(&["o", tenant.as_str(), ""]))
    {
        let (key, value) = entry.unwrap();
        let text = std::str::from_utf8(&key).unwrap().to_owned();
        let [_, _, entity, record] = text.split('/').collect::<Vec<_>>()[..] else {
            panic!("{text}")
        };
        let owner: UserId = p(std::str::from_utf8(&value).unwrap());
        records
            .entry((owner, entity.into(), record.into()))
            .or_insert_with(|| blank(entity, record))
            .owner = Some(access.source(&keys::provenance(&key, "")).unwrap());
    }
    for ((user, _, _), holding) in records {
        if holding.grant.is_some() || !holding.local_roles.is_empty() || holding.owner.is_some() {
            members
                .entry(user)
                .or_insert_with(|| with(user))
                .records
                .push(holding);
        }
    }
    members.retain(|_, m| {
        !(m.roles.is_empty() && m.custom_permissions.is_empty() && m.records.is_empty())
    });
    AccessReview {
        tenant: tenant.clone(),
        members: members.into_values().collect(),
    }
}

#[test]
fn the_access_review_read_page_by_page_forward_or_backward_is_the_whole_review() {
    let world = World::new();
    let mut log = base();
    log.entity("acme", "invoice", false)
        .entity("globex", "project", true);
    for n in 3..=40 {
        log.user(n);
        if n % 7 != 0 {
            log.assign("acme", n, if n % 2 == 0 { "user" } else { "admin" });
        }
        if n % 3 == 0 {
            log.grant(
                "acme",
                "project",
                &format!("P{n}"),
                n,
                RecordAccess::ReadOnly,
            );
        }
        if n % 5 == 0 {
            log.grant(
                "acme",
                "invoice",
                &format!("I{n}"),
                n,
                RecordAccess::ReadWrite,
            )
            .grant(
                "globex",
                "project",
                &format!("G{n}"),
                n,
                RecordAccess::ReadWrite,
            );
        }
        if n % 4 == 0 {
            log.push(
                Some("acme"),
                format!("invoice:O{n}"),
                DomainEvent::RecordOwnerSet(RecordOwnerSet {
                    entity: p("invoice"),
                    record: p(&format!("O{n}")),
                    owner: u(n),
                }),
            );
        }
    }
    // Someone who holds nothing any more: a grant taken back from a person without a role.
    log.grant("acme", "project", "P7", 7, RecordAccess::ReadOnly)
        .push(
            Some("acme"),
            "project:P7",
            DomainEvent::RecordRevoked(RecordRevoked {
                entity: p("project"),
                record: p("P7"),
                user: u(7),
            }),
        );
    // A membership ended while a grant stays; an owner handed on (only the new owner owns it).
    log.push(
        Some("acme"),
        u(10).to_string(),
        DomainEvent::MemberRemoved(MemberRemoved { user: u(10) }),
    )
    .push(
        Some("acme"),
        "invoice:O8",
        DomainEvent::RecordOwnerSet(RecordOwnerSet {
            entity: p("invoice"),
            record: p("O8"),
            owner: u(9),
        }),
    );
    // Someone unknown to acme's memberships, owning a record only.
    log.push(
        Some("acme"),
        "invoice:X",
        DomainEvent::RecordOwnerSet(RecordOwnerSet {
            entity: p("invoice"),
            record: p("X"),
            owner: u(99),
        }),
    );
    world.apply(&log);
    let tenant: TenantId = p("acme");
    let now = T0 + Duration::days(1);
    let whole = review_by_full_scan(&world.access, &tenant, now);
    assert!(whole.members.len() > 30, "{}", whole.members.len());
    assert!(whole.members.iter().all(|m| m.user != u(7)));
    assert!(whole.members.iter().any(|m| m.user == u(99)));
    let ten = whole.members.iter().find(|m| m.user == u(10)).unwrap();
    assert!(ten.roles.is_empty() && !ten.records.is_empty(), "{ten:?}");
    let nine = whole.members.iter().find(|m| m.user == u(9)).unwrap();
    assert!(
        nine.records
            .iter()
            .any(|r| r.record == "O8" && r.owner.is_some())
    );
    let eight = whole.members.iter().find(|m| m.user == u(8)).unwrap();
    assert!(eight.records.iter().all(|r| r.record != "O8"), "{eight:?}");
    assert_eq!(world.access.access_review(&tenant, now).unwrap(), whole);
    let users = |members: &[ReviewedMember]| members.iter().map(|m| m.user).collect::<Vec<_>>();

    for limit in [1, 3, 7, 100] {
        // Forward, from the start.
        let (mut read, mut from, mut pages) = (Vec::new(), ReviewFrom::Start, 0);
        loop {
            let page = world
                .access
                .access_review_page(&tenant, now, &from, limit)
                .unwrap();
            assert!(page.review.members.len() <= limit);
            assert_eq!(page.earlier, pages > 0);
            pages += 1;
            read.extend(page.review.members.iter().cloned());
            match (page.later, page.review.members.last()) {
                (true, Some(last)) => from = ReviewFrom::After(last.user),
                (false, _) => break,
                (true, None) => panic!("a page that says more follows is never empty"),
            }
        }
        assert_eq!(read, whole.members, "limit {limit}");
        assert_eq!(pages, whole.members.len().div_ceil(limit).max(1));

        // Backward, from past the last person.
        let (mut read, mut from) = (Vec::new(), ReviewFrom::Before(u(1_000)));
        loop {
            let page = world
                .access
                .access_review_page(&tenant, now, &from, limit)
                .unwrap();
            assert_eq!(
                page.later,
                matches!(from, ReviewFrom::Before(user) if user != u(1_000))
            );
            let mut members = page.review.members.clone();
            assert_eq!(users(&members), {
                let mut sorted = users(&members);
                sorted.sort();
                sorted
            });
            members.extend(read);
            read = members;
            match (page.earlier, page.review.members.first()) {
                (true, Some(first)) => from = ReviewFrom::Before(first.user),
                _ => break,
            }
        }
        assert_eq!(read, whole.members, "limit {limit}, backward");
    }
    // A page after someone who holds nothing (or is not known) starts with the next holder.
    let page = world
        .access
        .access_review_page(&tenant, now, &ReviewFrom::After(u(7)), 1)
        .unwrap();
    assert_eq!(users(&page.review.members), [u(8)]);
    // The other tenant's holdings are its own.
    let globex = world.access.access_review(&p("globex"), now).unwrap();
    assert_eq!(
        users(&globex.members),
        (3..=40).filter(|n| n % 5 == 0).map(u).collect::<Vec<_>>()
    );
    assert_eq!(
        world.access.member_review(&tenant, &u(7), now).unwrap(),
        None
    );
}
