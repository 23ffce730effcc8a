use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use time::macros::datetime;
use ulid::Ulid;

use super::*;
use crate::access::role;

/// Facts from plain maps, for the rules' own tests.
#[derive(Default)]
struct MapFacts {
    accounts: HashMap<UserId, Account>,
    members: HashMap<(TenantId, UserId), Arc<Member>>,
    roles: HashMap<(TenantId, RoleName), Arc<RoleFacts>>,
    entities: HashMap<(TenantId, EntityName), Arc<EntityFacts>>,
    standings: HashMap<(TenantId, EntityName, RecordId, UserId), RecordStanding>,
    owners: HashMap<(TenantId, EntityName, RecordId), UserId>,
    resources: std::collections::HashSet<(TenantId, crate::access::ResourceName)>,
}

impl AccessFacts for MapFacts {
    type Error = Infallible;
    fn resource_defined(
        &self,
        t: &TenantId,
        name: &crate::access::ResourceName,
    ) -> Result<bool, Infallible> {
        Ok(self.resources.contains(&(t.clone(), name.clone())))
    }
    fn account(&self, user: &UserId) -> Result<Option<Account>, Infallible> {
        Ok(self.accounts.get(user).copied())
    }
    fn member(&self, t: &TenantId, u: &UserId) -> Result<Option<Arc<Member>>, Infallible> {
        Ok(self.members.get(&(t.clone(), *u)).cloned())
    }
    fn role(&self, t: &TenantId, r: &RoleName) -> Result<Option<Arc<RoleFacts>>, Infallible> {
        Ok(self
            .roles
            .get(&(t.clone(), r.clone()))
            .cloned()
            .or_else(|| {
                role::builtin(r.as_str()).map(|d| {
                    Arc::new(RoleFacts {
                        permissions: d.permissions.into(),
                        global_access: d.global_access,
                    })
                })
            }))
    }
    fn entity(&self, t: &TenantId, e: &EntityName) -> Result<Option<Arc<EntityFacts>>, Infallible> {
        Ok(self.entities.get(&(t.clone(), e.clone())).cloned())
    }
    fn standing(
        &self,
        t: &TenantId,
        e: &EntityName,
        r: &RecordId,
        u: &UserId,
    ) -> Result<Option<RecordStanding>, Infallible> {
        Ok(self
            .standings
            .get(&(t.clone(), e.clone(), r.clone(), *u))
            .cloned())
    }
    fn owner(
        &self,
        t: &TenantId,
        e: &EntityName,
        r: &RecordId,
    ) -> Result<Option<UserId>, Infallible> {
        Ok(self.owners.get(&(t.clone(), e.clone(), r.clone())).copied())
    }
}

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn acme() -> TenantId {
    "acme".parse().unwrap()
}
fn globex() -> TenantId {
    "globex".parse().unwrap()
}
fn user(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, n as u128))
}
fn name<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// acme: entity `project` (RLS on, default policy), entity `doc` (RLS off), custom role
/// `pm` (update projects), user 1 with role `user`, user 2 admin, user 3 suspended.
fn world() -> MapFacts {
    let mut f = MapFacts::default();
    for n in 1..=4 {
        f.accounts.insert(
            user(n),
            Account {
                status: AccountStatus::Active,
                suspended_until: None,
            },
        );
    }
    f.accounts.insert(
        user(3),
        Account {
            status: AccountStatus::Suspended,
            suspended_until: Some(datetime!(2026-07-01 0:00 UTC)),
        },
    );
    let member = |roles: &[&str], custom: &[&str]| {
        Arc::new(Member {
            roles: roles.iter().map(|r| name(r)).collect(),
            custom: custom.iter().map(|p| name(p)).collect(),
            ..Member::default()
        })
    };
    f.members
        .insert((acme(), user(1)), member(&["user"], &["entity.doc:delete"]));
    f.members.insert((acme(), user(2)), member(&["admin"], &[]));
    f.members.insert((acme(), user(3)), member(&["admin"], &[]));
    f.members
        .insert((globex(), user(4)), member(&["admin"], &[]));
    f.roles.insert(
        (acme(), name("pm")),
        Arc::new(RoleFacts {
            permissions: [name("entity.project:update"), name("entity.project:read")].into(),
            global_access: false,
        }),
    );
    f.entities.insert(
        (acme(), name("project")),
        Arc::new(EntityFacts {
            fields: vec![name("id"), name("title"), name("budget")],
            rls: true,
            policy: EntityPolicy::default(),
            hidden: BTreeMap::from([(name("user"), [name("budget")].into())]),
            unsearchable: BTreeMap::from([(name("pm"), [name("title")].into())]),
        }),
    );
    let mut open = EntityPolicy::default();
    open.read
        .insert(Principal::Pseudo(PseudoRole::AuthenticatedUser));
    f.entities.insert(
        (acme(), name("doc")),
        Arc::new(EntityFacts {
            fields: vec![name("body")],
            rls: false,
            policy: open,
            hidden: BTreeMap::new(),
            unsearchable: BTreeMap::new(),
        }),
    );
    f
}

fn ask(f: &MapFacts, tenant: TenantId, who: Subject, perm: &str, record: Option<&str>) -> Decision {
    ask_at(f, tenant, who, perm, record, NOW)
}

fn ask_at(
    f: &MapFacts,
    tenant: TenantId,
    who: Subject,
    perm: &str,
    record: Option<&str>,
    now: OffsetDateTime,
) -> Decision {
    let permission: Permission = name(perm);
    let record: Option<RecordId> = record.map(name);
    check(
        f,
        CheckRequest {
            tenant: &tenant,
            subject: who,
            permission: &permission,
            record: record.as_ref(),
            restriction: None,
            now,
        },
    )
    .unwrap()
}

#[test]
fn the_user_role_reads_standard_resources_only() {
    let f = world();
    let d = ask(&f, acme(), Subject::User(user(1)), "files:read", None);
    assert_eq!(d, Decision::allow(Reason::Role { role: name("user") }));
    let d = ask(&f, acme(), Subject::User(user(1)), "users:read", None);
    assert_eq!(d, Decision::deny(Reason::NoPermission));
}

#[test]
fn global_access_bypasses_row_level_security() {
    let f = world();
    let d = ask(
        &f,
        acme(),
        Subject::User(user(2)),
        "entity.project:delete",
        Some("P1"),
    );
    assert_eq!(
        d,
        Decision::allow(Reason::GlobalAccess {
            role: name("admin")
        })
    );
}

#[test]
fn a_private_record_needs_a_grant_ownership_or_a_local_role() {
    let mut f = world();
    let u = Subject::User(user(1));
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("user"), name("pm")].into(),
            custom: PermissionSet::default(),
            ..Member::default()
        }),
    );
    // Type-level read through `pm`, but RLS keeps the record private.
    let d = ask(&f, acme(), u, "entity.project:read", Some("P1"));
    assert_eq!(d, Decision::deny(Reason::RowLevelSecurity));
    // Without a record the type-level permission answers.
    let d = ask(&f, acme(), u, "entity.project:read", None);
    assert_eq!(d, Decision::allow(Reason::Role { role: name("pm") }));

    f.standings.insert(
        (acme(), name("project"), name("P1"), user(1)),
        RecordStanding {
            grant: Some(RecordAccess::ReadOnly),
            ..RecordStanding::default()
        },
    );
    let d = ask(&f, acme(), u, "entity.project:read", Some("P1"));
    assert_eq!(
        d,
        Decision::allow(Reason::Grant {
            access: RecordAccess::ReadOnly
        })
    );
    let d = ask(&f, acme(), u, "entity.project:update", Some("P1"));
    assert_eq!(d, Decision::deny(Reason::RowLevelSecurity));

    f.owners
        .insert((acme(), name("project"), name("P2")), user(1));
    let d = ask(&f, acme(), u, "entity.project:delete", Some("P2"));
    assert_eq!(d, Decision::allow(Reason::Owner));
    // The default policy does not let owners "create" on their record.
    let d = ask(&f, acme(), u, "entity.project:create", Some("P2"));
    assert!(!d.allowed);
}

#[test]
fn a_local_role_gives_its_permissions_on_that_record_only() {
    let mut f = world();
    let u = Subject::User(user(1));
    f.standings.insert(
        (acme(), name("project"), name("P1"), user(1)),
        RecordStanding {
            local_roles: [name("pm")].into(),
            ..RecordStanding::default()
        },
    );
    let d = ask(&f, acme(), u, "entity.project:update", Some("P1"));
    assert_eq!(d, Decision::allow(Reason::LocalRole { role: name("pm") }));
    let d = ask(&f, acme(), u, "entity.project:update", Some("P9"));
    assert_eq!(d, Decision::deny(Reason::NoPermission));
    let d = ask(&f, acme(), u, "entity.project:delete", Some("P1"));
    assert!(!d.allowed);
}

#[test]
fn custom_permissions_and_policies_add_to_roles() {
    let f = world();
    let u = Subject::User(user(1));
    assert_eq!(
        ask(&f, acme(), u, "entity.doc:delete", Some("D1")),
        Decision::allow(Reason::CustomPermission)
    );
    assert_eq!(
        ask(&f, acme(), u, "entity.doc:read", Some("D1")),
        Decision::allow(Reason::Policy {
            principal: Principal::Pseudo(PseudoRole::AuthenticatedUser)
        })
    );
    // Anonymous callers are not authenticated users.
    assert!(!ask(&f, acme(), Subject::Anonymous, "entity.doc:read", None).allowed);
}

#[test]
fn inactive_accounts_unknown_entities_and_other_tenants_are_denied() {
    let f = world();
    assert_eq!(
        ask(&f, acme(), Subject::User(user(3)), "files:read", None),
        Decision::deny(Reason::AccountNotActive {
            status: AccountStatus::Suspended
        })
    );
    assert_eq!(
        ask(
            &f,
            acme(),
            Subject::User(user(2)),
            "entity.ghost:read",
            None
        ),
        Decision::deny(Reason::UnknownEntity)
    );
    assert_eq!(
        ask(&f, acme(), Subject::User(user(9)), "files:read", None),
        Decision::deny(Reason::UnknownUser)
    );
    // An admin of globex is nobody in acme.
    assert_eq!(
        ask(&f, acme(), Subject::User(user(4)), "files:read", None),
        Decision::deny(Reason::NoPermission)
    );
}

#[test]
fn a_timed_suspension_lapses() {
    let f = world();
    let permission: Permission = name("files:read");
    let later = check(
        &f,
        CheckRequest {
            tenant: &acme(),
            subject: Subject::User(user(3)),
            permission: &permission,
            record: None,
            restriction: None,
            now: datetime!(2026-07-02 0:00 UTC),
        },
    )
    .unwrap();
    assert!(later.allowed);
}

#[test]
fn a_key_restriction_narrows_but_never_widens() {
    let f = world();
    let permission: Permission = name("files:read");
    let restriction: BTreeSet<Permission> =
        [name("documentation:read"), name("users:delete")].into();
    let ask_with = |perm: &Permission| {
        check(
            &f,
            CheckRequest {
                tenant: &acme(),
                subject: Subject::User(user(1)),
                permission: perm,
                record: None,
                restriction: Some(&restriction),
                now: NOW,
            },
        )
        .unwrap()
    };
    assert_eq!(
        ask_with(&permission),
        Decision::deny(Reason::KeyRestriction)
    );
    assert!(ask_with(&name("documentation:read")).allowed);
    assert!(!ask_with(&name("users:delete")).allowed);
}

#[test]
fn fields_are_visible_unless_every_role_hides_them() {
    let mut f = world();
    let fields = |f: &MapFacts, who: u64| {
        visible_fields(f, &acme(), Subject::User(user(who)), &name("project"), NOW)
            .unwrap()
            .unwrap()
    };
    assert_eq!(fields(&f, 1), ["id", "created_at", "updated_at", "title"]);
    assert_eq!(
        fields(&f, 2),
        ["id", "created_at", "updated_at", "title", "budget"]
    );
    // A second role that shows the field wins.
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("user"), name("pm")].into(),
            custom: PermissionSet::default(),
            ..Member::default()
        }),
    );
    assert_eq!(
        fields(&f, 1),
        ["id", "created_at", "updated_at", "title", "budget"]
    );
    assert!(fields(&f, 3).is_empty());
}

#[test]
fn a_permission_set_contains_exactly_what_it_was_built_from() {
    let held: Vec<Permission> = ["entity.project:read", "users:read", "entity.doc:update"]
        .iter()
        .map(|p| name(p))
        .collect();
    // Duplicates collapse; the order of construction does not matter.
    let set: PermissionSet = held.iter().rev().chain(&held).cloned().collect();
    assert_eq!(set.len(), 3);
    assert_eq!(set, held.iter().cloned().collect::<PermissionSet>());
    for p in &held {
        assert!(set.contains(p));
        assert!(set.contains_hashed(HashedPermission::new(p)));
    }
    for other in ["entity.project:update", "users:create", "entity.doc:read"] {
        assert!(!set.contains(&name(other)));
    }
    assert!(!PermissionSet::default().contains(&held[0]));
    assert!(PermissionSet::default().is_empty());
}

#[test]
fn temporary_roles_permissions_grants_and_local_roles_stop_counting_at_their_end() {
    let mut f = world();
    let u = Subject::User(user(1));
    let end = NOW + time::Duration::hours(1);
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("user"), name("pm")].into(),
            custom: [name("users:read")].into(),
            role_expiry: [(name("pm"), end)].into(),
            custom_expiry: [(name("users:read"), end)].into(),
        }),
    );
    let before = NOW + time::Duration::minutes(59);
    let d = ask_at(&f, acme(), u, "entity.project:read", None, before);
    assert_eq!(d, Decision::allow(Reason::Role { role: name("pm") }));
    assert!(ask_at(&f, acme(), u, "users:read", None, before).allowed);
    // At the end itself, not a moment later: the end is exclusive.
    let d = ask_at(&f, acme(), u, "entity.project:read", None, end);
    assert_eq!(d, Decision::deny(Reason::NoPermission));
    assert!(!ask_at(&f, acme(), u, "users:read", None, end).allowed);
    // The permanent role still counts.
    assert!(ask_at(&f, acme(), u, "files:read", None, end).allowed);

    f.standings.insert(
        (acme(), name("project"), name("P1"), user(1)),
        RecordStanding {
            grant: Some(RecordAccess::ReadWrite),
            grant_expires: Some(end),
            local_roles: [name("pm")].into(),
            local_role_expiry: [(name("pm"), end + time::Duration::hours(1))].into(),
        },
    );
    let d = ask_at(&f, acme(), u, "entity.project:delete", Some("P1"), before);
    assert_eq!(
        d,
        Decision::allow(Reason::Grant {
            access: RecordAccess::ReadWrite
        })
    );
    // After the grant's end the local role still opens the record, until its own end.
    let d = ask_at(&f, acme(), u, "entity.project:update", Some("P1"), end);
    assert_eq!(d, Decision::allow(Reason::LocalRole { role: name("pm") }));
    let d = ask_at(&f, acme(), u, "entity.project:delete", Some("P1"), end);
    assert!(!d.allowed);
    let later = end + time::Duration::hours(1);
    assert!(!ask_at(&f, acme(), u, "entity.project:update", Some("P1"), later).allowed);
}

#[test]
fn a_field_is_kept_from_search_only_when_every_held_role_keeps_it() {
    let mut f = world();
    let search = |f: &MapFacts, n: u64| {
        field_visibility(f, &acme(), Subject::User(user(n)), &name("project"), NOW)
            .unwrap()
            .unwrap()
    };
    // `user` hides budget (so cannot search it) and says nothing of title.
    let seen = search(&f, 1);
    assert_eq!(seen.readable, ["id", "created_at", "updated_at", "title"]);
    assert_eq!(seen.searchable, seen.readable);
    // `pm` alone: sees both, searches budget but not title.
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("pm")].into(),
            ..Member::default()
        }),
    );
    let seen = search(&f, 1);
    assert_eq!(
        seen.readable,
        ["id", "created_at", "updated_at", "title", "budget"]
    );
    assert_eq!(
        seen.searchable,
        ["id", "created_at", "updated_at", "budget"]
    );
    // Both: each field is allowed by one of them, so both are searchable.
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("user"), name("pm")].into(),
            ..Member::default()
        }),
    );
    let seen = search(&f, 1);
    assert_eq!(seen.searchable, seen.readable);
    // Global access searches everything; an inactive account nothing.
    assert_eq!(search(&f, 2).searchable.len(), 5);
    assert!(search(&f, 3).searchable.is_empty());
}

#[test]
fn a_resource_the_tenant_defines_takes_permissions_only_while_defined() {
    let mut f = world();
    let u = Subject::User(user(1));
    f.members.insert(
        (acme(), user(1)),
        Arc::new(Member {
            roles: [name("user")].into(),
            custom: [name("invoice_export:read")].into(),
            ..Member::default()
        }),
    );
    let d = ask(&f, acme(), u, "invoice_export:read", None);
    assert_eq!(d, Decision::deny(Reason::UnknownResource));
    // Not even global access opens an undefined resource.
    let d = ask(
        &f,
        acme(),
        Subject::User(user(2)),
        "invoice_export:read",
        None,
    );
    assert_eq!(d, Decision::deny(Reason::UnknownResource));
    f.resources.insert((acme(), name("invoice_export")));
    let d = ask(&f, acme(), u, "invoice_export:read", None);
    assert_eq!(d, Decision::allow(Reason::CustomPermission));
    assert!(!ask(&f, acme(), u, "invoice_export:delete", None).allowed);
    let d = ask(
        &f,
        acme(),
        Subject::User(user(2)),
        "invoice_export:delete",
        None,
    );
    assert_eq!(
        d,
        Decision::allow(Reason::GlobalAccess {
            role: name("admin")
        })
    );
    // Defined in acme only: another tenant does not know it.
    let d = ask(
        &f,
        globex(),
        Subject::User(user(4)),
        "invoice_export:read",
        None,
    );
    assert_eq!(d, Decision::deny(Reason::UnknownResource));
}
