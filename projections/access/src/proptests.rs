//! Property tests of the access read model against a reference model.
//!
//! Random worlds are built the way the write side builds them: random commands are run through
//! the domain's `decide` functions with the application's existence checks (a role must exist to
//! be assigned, a grantee must be a member, a role is deleted only while nobody holds it, …), and
//! the commands that fail are dropped. The events are folded by the real [`AccessProjection`] into
//! a temporary sled tree, and separately into plain maps by [`Reference`], whose decision rules
//! are written from the documentation at the top of `idstream_domain::access::check` (it never
//! calls `check` or `visible_fields`). Every question of a small universe is asked of both.
//!
//! `PROPTEST_CASES` overrides the number of cases of each property.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use idstream_domain::access::entity::{self as entity_agg, Entity, EntityCommand, EntityEvent};
use idstream_domain::access::record::{self as record_agg, Record, RecordCommand, RecordEvent};
use idstream_domain::access::role::{self as role_agg, Role, RoleCommand, RoleEvent};
use idstream_domain::access::{
    AccountStatus, Action, CheckRequest, Decision, EntityName, EntityPolicy, FieldName, Permission,
    Principal, PseudoRole, Reason, RecordAccess, RecordId, Subject,
};
use idstream_domain::events::{
    LocalRoleLapsed, LocalRoleRevoked, PermissionsLapsed, PermissionsRevoked, RecordGrantLapsed,
    RecordRevoked, RoleLapsed, RoleRevoked, TenantCreated,
};
use idstream_domain::membership::{self, Membership, MembershipCommand, MembershipEvent};
use idstream_domain::user::{self, NewUser, User, UserCommand, UserEvent};
use idstream_domain::{DomainEvent, RoleName, TenantId, UserId};
use idstream_projection_runtime::{Projection, apply_events};
use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use crate::tests::Log;
use crate::{Access, AccessProjection, FactCache, NAME};

// ----- the universe -----

/// The time of the `Log` helper's position 0 (its events are one minute apart from there).
const T0: OffsetDateTime = datetime!(2026-05-01 9:00 UTC);
/// The two moments checks are asked at: a timed suspension may be in force at one and over at
/// the other.
const NOWS: [OffsetDateTime; 2] = [
    datetime!(2026-05-02 9:00 UTC),
    datetime!(2026-05-05 9:00 UTC),
];
/// Ends of timed suspensions: over at both check times, over at the second only, never over.
const UNTILS: [OffsetDateTime; 3] = [
    datetime!(2026-05-01 21:00 UTC),
    datetime!(2026-05-03 9:00 UTC),
    datetime!(2026-05-11 9:00 UTC),
];

/// When recorded lapses are decided: after the first two [`UNTILS`], between the two [`NOWS`].
const LAPSE_AT: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

/// The end of temporary access an `expiry` index names (one of [`UNTILS`]), or none.
fn expiry(index: u8) -> Option<OffsetDateTime> {
    UNTILS.get(usize::from(index)).copied()
}

const TENANTS: [&str; 3] = ["t0", "t1", "t2"];
/// A tenant that is never created: everyone is anonymous there and no entity exists.
const NO_TENANT: &str = "tx";
/// Users that may be created; `GHOST` never is.
const USERS: u8 = 5;
const GHOST: u64 = 99;
/// Roles commands name: the three built-in ones and three custom ones.
const ROLES: [&str; 6] = ["owner", "admin", "user", "r0", "r1", "r2"];
/// Entities that may be registered; `e2` never is.
const ENTITIES: [&str; 2] = ["e0", "e1"];
const RECORDS: [&str; 3] = ["A", "B", "C"];
/// Fields entities may declare (including a system field, which field rules cannot hide).
const FIELDS: [&str; 4] = ["f0", "f1", "f2", "id"];
/// The permissions roles, custom sets, API-key restrictions and checks draw from.
const PERMISSIONS: [&str; 17] = [
    "files:read",
    "users:read",
    "documentation:read",
    "workflows:create",
    "role.r0:assign",
    "entity.e0:read",
    "entity.e0:create",
    "entity.e0:update",
    "entity.e0:delete",
    "entity.e1:read",
    "entity.e1:create",
    "entity.e1:update",
    "entity.e1:delete",
    "entity.e2:read",
    "entity.e2:create",
    "entity.e2:update",
    "entity.e2:delete",
];
/// Principals policies draw from (the roles among them must exist when a policy is set).
const PRINCIPALS: [&str; 6] = [
    "_EVERYONE",
    "_AUTHENTICATED_USER",
    "_CREATOR",
    "user",
    "r0",
    "r1",
];

fn p<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn user_id(n: u64) -> UserId {
    UserId::new(Ulid::from_parts(n, 1))
}

fn tenant(i: u8, tenants: u8) -> TenantId {
    p(TENANTS[usize::from(i % tenants)])
}

fn role_name(i: u8) -> RoleName {
    p(ROLES[usize::from(i) % ROLES.len()])
}

fn permissions(mask: u32) -> BTreeSet<Permission> {
    (0..PERMISSIONS.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| p(PERMISSIONS[i]))
        .collect()
}

fn fields(mask: u8, reversed: bool) -> Vec<FieldName> {
    let mut out: Vec<FieldName> = (0..FIELDS.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| p(FIELDS[i]))
        .collect();
    if reversed {
        out.reverse();
    }
    out
}

fn policy(masks: [u8; 4]) -> EntityPolicy {
    let set = |mask: u8| -> BTreeSet<Principal> {
        (0..PRINCIPALS.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| p(PRINCIPALS[i]))
            .collect()
    };
    EntityPolicy {
        read: set(masks[0]),
        create: set(masks[1]),
        update: set(masks[2]),
        delete: set(masks[3]),
    }
}

// ----- commands -----

/// One command of the write side, with small indices into the universe.
#[derive(Debug, Clone)]
enum Cmd {
    CreateUser {
        user: u8,
        invite: bool,
    },
    Suspend {
        user: u8,
        until: u8,
    },
    Reinstate {
        user: u8,
    },
    Deactivate {
        user: u8,
    },
    Reactivate {
        user: u8,
    },
    Assign {
        tenant: u8,
        user: u8,
        role: u8,
        /// An index into [`UNTILS`]: temporary; past its end: for good.
        expiry: u8,
    },
    Revoke {
        tenant: u8,
        user: u8,
        role: u8,
    },
    GrantPermissions {
        tenant: u8,
        user: u8,
        mask: u32,
        expiry: u8,
    },
    RevokePermissions {
        tenant: u8,
        user: u8,
        mask: u32,
    },
    RemoveMember {
        tenant: u8,
        user: u8,
    },
    DefineRole {
        tenant: u8,
        role: u8,
        mask: u32,
        global: bool,
    },
    UpdateRole {
        tenant: u8,
        role: u8,
        mask: u32,
        global: bool,
    },
    DeleteRole {
        tenant: u8,
        role: u8,
    },
    RegisterEntity {
        tenant: u8,
        entity: u8,
        fields: u8,
        reversed: bool,
        rls: bool,
        policy: Option<[u8; 4]>,
    },
    ChangeFields {
        tenant: u8,
        entity: u8,
        fields: u8,
        reversed: bool,
    },
    SetRls {
        tenant: u8,
        entity: u8,
        enabled: bool,
    },
    SetPolicy {
        tenant: u8,
        entity: u8,
        policy: [u8; 4],
    },
    HideFields {
        tenant: u8,
        entity: u8,
        role: u8,
        fields: u8,
        /// The fields kept from search (a mask like `fields`).
        unsearchable: u8,
    },
    SetOwner {
        tenant: u8,
        entity: u8,
        record: u8,
        user: u8,
    },
    Grant {
        tenant: u8,
        entity: u8,
        record: u8,
        user: u8,
        write: bool,
        expiry: u8,
    },
    RevokeGrant {
        tenant: u8,
        entity: u8,
        record: u8,
        user: u8,
    },
    AssignLocal {
        tenant: u8,
        entity: u8,
        record: u8,
        user: u8,
        role: u8,
        expiry: u8,
    },
    /// Records the lapses of a membership's ended temporary access, at [`LAPSE_AT`].
    Lapse {
        tenant: u8,
        user: u8,
    },
    /// Records the lapses of a record's ended temporary grants and local roles.
    LapseRecord {
        tenant: u8,
        entity: u8,
        record: u8,
    },
    RevokeLocal {
        tenant: u8,
        entity: u8,
        record: u8,
        user: u8,
        role: u8,
    },
}

/// A sparse permission mask (about a quarter of the universe).
fn sparse_mask() -> impl Strategy<Value = u32> {
    (any::<u32>(), any::<u32>()).prop_map(|(a, b)| a & b)
}

/// A policy: per action a sparse set of principals.
fn policy_masks() -> impl Strategy<Value = [u8; 4]> {
    prop::array::uniform4((any::<u8>(), any::<u8>())).prop_map(|pairs| pairs.map(|(a, b)| a & b))
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let t = || 0..3u8;
    let usr = || 0..USERS;
    let role = || 0..ROLES.len() as u8;
    let ent = || 0..ENTITIES.len() as u8;
    let rec = || 0..RECORDS.len() as u8;
    prop_oneof![
        1 => (usr(), 0..4u8).prop_map(|(user, until)| Cmd::Suspend { user, until }),
        1 => usr().prop_map(|user| Cmd::Reinstate { user }),
        1 => usr().prop_map(|user| Cmd::Deactivate { user }),
        1 => usr().prop_map(|user| Cmd::Reactivate { user }),
        8 => (t(), usr(), role(), 0..6u8)
            .prop_map(|(tenant, user, role, expiry)| Cmd::Assign { tenant, user, role, expiry }),
        2 => (t(), usr(), role()).prop_map(|(tenant, user, role)| Cmd::Revoke { tenant, user, role }),
        3 => (t(), usr(), sparse_mask(), 0..6u8)
            .prop_map(|(tenant, user, mask, expiry)| Cmd::GrantPermissions { tenant, user, mask, expiry }),
        1 => (t(), usr(), any::<u32>())
            .prop_map(|(tenant, user, mask)| Cmd::RevokePermissions { tenant, user, mask }),
        1 => (t(), usr()).prop_map(|(tenant, user)| Cmd::RemoveMember { tenant, user }),
        4 => (t(), 3..6u8, sparse_mask(), prop::bool::weighted(0.2))
            .prop_map(|(tenant, role, mask, global)| Cmd::DefineRole { tenant, role, mask, global }),
        2 => (t(), 2..6u8, sparse_mask(), prop::bool::weighted(0.2))
            .prop_map(|(tenant, role, mask, global)| Cmd::UpdateRole { tenant, role, mask, global }),
        1 => (t(), 3..6u8).prop_map(|(tenant, role)| Cmd::DeleteRole { tenant, role }),
        4 => (t(), ent(), any::<u8>(), any::<bool>(), any::<bool>(), prop::option::of(policy_masks()))
            .prop_map(|(tenant, entity, fields, reversed, rls, policy)| Cmd::RegisterEntity {
                tenant, entity, fields, reversed, rls, policy,
            }),
        1 => (t(), ent(), any::<u8>(), any::<bool>())
            .prop_map(|(tenant, entity, fields, reversed)| Cmd::ChangeFields { tenant, entity, fields, reversed }),
        2 => (t(), ent(), any::<bool>())
            .prop_map(|(tenant, entity, enabled)| Cmd::SetRls { tenant, entity, enabled }),
        2 => (t(), ent(), policy_masks())
            .prop_map(|(tenant, entity, policy)| Cmd::SetPolicy { tenant, entity, policy }),
        2 => (t(), ent(), role(), any::<u8>())
            .prop_flat_map(|(tenant, entity, role, fields)| {
                prop_oneof![Just(0u8), any::<u8>()].prop_map(move |unsearchable| Cmd::HideFields {
                    tenant, entity, role, fields, unsearchable,
                })
            }),
        6 => (t(), ent(), rec(), usr())
            .prop_map(|(tenant, entity, record, user)| Cmd::SetOwner { tenant, entity, record, user }),
        12 => (t(), ent(), rec(), usr(), any::<bool>(), 0..6u8)
            .prop_map(|(tenant, entity, record, user, write, expiry)| Cmd::Grant { tenant, entity, record, user, write, expiry }),
        2 => (t(), ent(), rec(), usr())
            .prop_map(|(tenant, entity, record, user)| Cmd::RevokeGrant { tenant, entity, record, user }),
        8 => (t(), ent(), rec(), usr(), role(), 0..6u8)
            .prop_map(|(tenant, entity, record, user, role, expiry)| Cmd::AssignLocal { tenant, entity, record, user, role, expiry }),
        2 => (t(), usr()).prop_map(|(tenant, user)| Cmd::Lapse { tenant, user }),
        2 => (t(), ent(), rec())
            .prop_map(|(tenant, entity, record)| Cmd::LapseRecord { tenant, entity, record }),
        1 => (t(), ent(), rec(), usr(), role())
            .prop_map(|(tenant, entity, record, user, role)| Cmd::RevokeLocal { tenant, entity, record, user, role }),
    ]
}

/// A world: how many tenants, the commands, the API-key restriction and the check time.
#[derive(Debug, Clone)]
struct WorldSpec {
    tenants: u8,
    commands: Vec<Cmd>,
    restriction: u32,
    now: usize,
}

/// A world starts the way a real one does (users created, custom roles defined, entities
/// registered, members given roles), then takes random commands of every kind.
fn world_spec(commands: std::ops::Range<usize>) -> impl Strategy<Value = WorldSpec> {
    let users =
        prop::collection::vec(prop::bool::weighted(0.08), usize::from(USERS)).prop_map(|invited| {
            invited
                .into_iter()
                .enumerate()
                .map(|(user, invite)| Cmd::CreateUser {
                    user: user as u8,
                    invite,
                })
                .collect::<Vec<_>>()
        });
    // Custom roles defined and entities registered in most tenants (roles first, so that
    // policies can name them), and roles or custom permissions for most users in most tenants.
    // Lists rather than fixed tables, so that a failing case shrinks to the few that matter.
    let roles = prop::collection::vec(
        (0..3u8, 3..6u8, sparse_mask(), prop::bool::weighted(0.15)),
        0..10,
    )
    .prop_map(|list| {
        list.into_iter()
            .map(|(tenant, role, mask, global)| Cmd::DefineRole {
                tenant,
                role,
                mask,
                global,
            })
            .collect::<Vec<_>>()
    });
    let entities = prop::collection::vec(
        (
            0..3u8,
            0..ENTITIES.len() as u8,
            any::<u8>(),
            any::<bool>(),
            prop::bool::weighted(0.7),
            prop::option::weighted(0.8, policy_masks()),
        ),
        0..8,
    )
    .prop_map(|list| {
        list.into_iter()
            .map(
                |(tenant, entity, fields, reversed, rls, policy)| Cmd::RegisterEntity {
                    tenant,
                    entity,
                    fields,
                    reversed,
                    rls,
                    policy,
                },
            )
            .collect::<Vec<_>>()
    });
    // Mostly `user` and custom roles, owner and admin (global access) now and then, or only
    // custom permissions.
    let role = prop_oneof![
        4 => Just(2u8), 9 => 3..6u8, 3 => Just(6u8), 1 => Just(0u8), 1 => Just(1u8)
    ];
    let members = prop::collection::vec(
        (
            0..3u8,
            0..USERS,
            role,
            sparse_mask(),
            prop_oneof![4 => Just(9u8), 1 => 0..3u8],
        ),
        0..24,
    )
    .prop_map(|list| {
        list.into_iter()
            .map(
                |(tenant, user, role, mask, expiry)| match usize::from(role) {
                    r if r == ROLES.len() => Cmd::GrantPermissions {
                        tenant,
                        user,
                        mask,
                        expiry,
                    },
                    _ => Cmd::Assign {
                        tenant,
                        user,
                        role,
                        expiry,
                    },
                },
            )
            .collect::<Vec<_>>()
    });
    (
        2..=3u8,
        (users, roles, entities, members),
        prop::collection::vec(cmd(), commands),
        any::<u32>(),
        0..NOWS.len(),
    )
        .prop_map(
            |(tenants, (users, roles, entities, members), rest, restriction, now)| {
                let commands = [users, roles, entities, members, rest].concat();
                WorldSpec {
                    tenants,
                    commands,
                    restriction,
                    now,
                }
            },
        )
}

// ----- the write side -----

/// The aggregates' states and the log: runs commands as the application would, with its
/// existence checks, and keeps the events of those that succeed.
#[derive(Default)]
struct Writer {
    log: Log,
    users: BTreeMap<UserId, User>,
    members: BTreeMap<(TenantId, UserId), Membership>,
    roles: BTreeMap<(TenantId, RoleName), Role>,
    entities: BTreeMap<(TenantId, EntityName), Entity>,
    records: BTreeMap<(TenantId, EntityName, RecordId), Record>,
}

impl Writer {
    fn new(tenants: u8) -> Writer {
        let mut writer = Writer::default();
        for t in &TENANTS[..usize::from(tenants)] {
            writer.log.push(
                Some(t),
                *t,
                DomainEvent::TenantCreated(TenantCreated {
                    name: (*t).to_owned(),
                }),
            );
        }
        assert_eq!(
            writer.log.events[0].envelope.occurred_at,
            T0 + Duration::minutes(1),
            "the Log helper's clock moved; adjust T0"
        );
        writer
    }

    fn role_exists(&self, tenant: &TenantId, role: &RoleName) -> bool {
        role_agg::builtin(role.as_str()).is_some()
            || self
                .roles
                .get(&(tenant.clone(), role.clone()))
                .is_some_and(|r| r.current(role).is_some())
    }

    fn is_member(&self, tenant: &TenantId, user: UserId) -> bool {
        self.members
            .get(&(tenant.clone(), user))
            .is_some_and(Membership::exists)
    }

    fn entity_registered(&self, tenant: &TenantId, entity: &EntityName) -> bool {
        self.entities
            .get(&(tenant.clone(), entity.clone()))
            .is_some_and(|e| e.registered)
    }

    fn user_exists(&self, user: UserId) -> bool {
        self.users.get(&user).is_some_and(User::exists)
    }

    fn next_time(&self) -> OffsetDateTime {
        T0 + Duration::minutes(self.log.events.len() as i64 + 1)
    }

    fn run(&mut self, command: &Cmd, tenants: u8) {
        let uid = |i: u8| user_id(u64::from(i) + 1);
        match *command {
            Cmd::CreateUser { user, invite } => {
                let new = NewUser {
                    email: format!("u{}@example.com", user + 1),
                    first_name: "F".into(),
                    last_name: "L".into(),
                    tenant: p(TENANTS[0]),
                };
                let command = if invite {
                    UserCommand::Invite(new)
                } else {
                    UserCommand::Register(new)
                };
                self.user(uid(user), command);
            }
            Cmd::Suspend { user, until } => {
                let until = UNTILS.get(usize::from(until)).copied();
                let now = self.next_time();
                self.user(
                    uid(user),
                    UserCommand::Suspend {
                        until,
                        reason: None,
                        now,
                    },
                );
            }
            Cmd::Reinstate { user } => self.user(uid(user), UserCommand::Reinstate),
            Cmd::Deactivate { user } => self.user(uid(user), UserCommand::Deactivate),
            Cmd::Reactivate { user } => self.user(uid(user), UserCommand::Reactivate),
            Cmd::Assign {
                tenant: t,
                user,
                role,
                expiry: end,
            } => {
                let (t, role, user) = (tenant(t, tenants), role_name(role), uid(user));
                if self.role_exists(&t, &role) && self.user_exists(user) {
                    let now = self.next_time();
                    let command = MembershipCommand::Assign {
                        user,
                        role,
                        expires_at: expiry(end),
                        now,
                    };
                    self.membership(&t, user, command);
                }
            }
            Cmd::Lapse { tenant: t, user } => {
                let (t, user) = (tenant(t, tenants), uid(user));
                let command = MembershipCommand::Lapse {
                    user,
                    now: LAPSE_AT,
                };
                self.membership(&t, user, command);
            }
            Cmd::LapseRecord {
                tenant: t,
                entity,
                record,
            } => {
                let t = tenant(t, tenants);
                self.record(&t, entity, record, |at| RecordCommand::Lapse {
                    at,
                    now: LAPSE_AT,
                });
            }
            Cmd::Revoke {
                tenant: t,
                user,
                role,
            } => {
                let (t, role, user) = (tenant(t, tenants), role_name(role), uid(user));
                self.membership(&t, user, MembershipCommand::Revoke { user, role });
            }
            Cmd::GrantPermissions {
                tenant: t,
                user,
                mask,
                expiry: end,
            } => {
                let (t, user) = (tenant(t, tenants), uid(user));
                if self.user_exists(user) {
                    let permissions = permissions(mask);
                    let now = self.next_time();
                    let command = MembershipCommand::GrantPermissions {
                        user,
                        permissions,
                        expires_at: expiry(end),
                        now,
                    };
                    self.membership(&t, user, command);
                }
            }
            Cmd::RevokePermissions {
                tenant: t,
                user,
                mask,
            } => {
                let (t, user) = (tenant(t, tenants), uid(user));
                if self.user_exists(user) {
                    let permissions = permissions(mask);
                    self.membership(
                        &t,
                        user,
                        MembershipCommand::RevokePermissions { user, permissions },
                    );
                }
            }
            Cmd::RemoveMember { tenant: t, user } => {
                let (t, user) = (tenant(t, tenants), uid(user));
                self.membership(&t, user, MembershipCommand::Remove { user });
            }
            Cmd::DefineRole {
                tenant: t,
                role,
                mask,
                global,
            } => {
                let (t, name) = (tenant(t, tenants), role_name(role));
                let command = RoleCommand::Define {
                    name: name.clone(),
                    description: format!("role {name}"),
                    permissions: permissions(mask),
                    global_access: global,
                };
                self.role(&t, &name, command);
            }
            Cmd::UpdateRole {
                tenant: t,
                role,
                mask,
                global,
            } => {
                let (t, name) = (tenant(t, tenants), role_name(role));
                let command = RoleCommand::Update {
                    name: name.clone(),
                    description: format!("role {name}, changed"),
                    permissions: permissions(mask),
                    global_access: global,
                };
                self.role(&t, &name, command);
            }
            Cmd::DeleteRole { tenant: t, role } => {
                let (t, name) = (tenant(t, tenants), role_name(role));
                // Refused while any member holds it (local roles, policies and rules may name it).
                let held = self
                    .members
                    .iter()
                    .any(|((mt, _), m)| *mt == t && m.roles.contains(&name));
                if !held {
                    self.role(&t, &name, RoleCommand::Delete { name: name.clone() });
                }
            }
            Cmd::RegisterEntity {
                tenant: t,
                entity,
                fields: f,
                reversed,
                rls,
                policy: masks,
            } => {
                let (t, entity) = (tenant(t, tenants), p(ENTITIES[usize::from(entity)]));
                let policy = masks.map(policy);
                if policy
                    .as_ref()
                    .is_none_or(|p| self.policy_roles_exist(&t, p))
                {
                    let command = EntityCommand::Register {
                        fields: fields(f, reversed),
                        rls,
                        policy,
                    };
                    self.entity(&t, &entity, command);
                }
            }
            Cmd::ChangeFields {
                tenant: t,
                entity,
                fields: f,
                reversed,
            } => {
                let (t, entity) = (tenant(t, tenants), p(ENTITIES[usize::from(entity)]));
                let command = EntityCommand::ChangeFields {
                    fields: fields(f, reversed),
                };
                self.entity(&t, &entity, command);
            }
            Cmd::SetRls {
                tenant: t,
                entity,
                enabled,
            } => {
                let (t, entity) = (tenant(t, tenants), p(ENTITIES[usize::from(entity)]));
                self.entity(&t, &entity, EntityCommand::SetRls { enabled });
            }
            Cmd::SetPolicy {
                tenant: t,
                entity,
                policy: masks,
            } => {
                let (t, entity) = (tenant(t, tenants), p(ENTITIES[usize::from(entity)]));
                let policy = policy(masks);
                if self.policy_roles_exist(&t, &policy) {
                    self.entity(&t, &entity, EntityCommand::SetPolicy { policy });
                }
            }
            Cmd::HideFields {
                tenant: t,
                entity,
                role,
                fields: f,
                unsearchable: u,
            } => {
                let (t, entity, role) = (
                    tenant(t, tenants),
                    p(ENTITIES[usize::from(entity)]),
                    role_name(role),
                );
                let hidden: BTreeSet<FieldName> = fields(f, false).into_iter().collect();
                let unsearchable: BTreeSet<FieldName> = fields(u, false).into_iter().collect();
                if (hidden.is_empty() && unsearchable.is_empty()) || self.role_exists(&t, &role) {
                    let command = EntityCommand::HideFields {
                        role,
                        hidden,
                        unsearchable,
                    };
                    self.entity(&t, &entity, command);
                }
            }
            Cmd::SetOwner {
                tenant: t,
                entity,
                record,
                user,
            } => {
                let t = tenant(t, tenants);
                let owner = uid(user);
                if self.is_member(&t, owner) {
                    self.record(&t, entity, record, |at| RecordCommand::SetOwner {
                        at,
                        owner,
                    });
                }
            }
            Cmd::Grant {
                tenant: t,
                entity,
                record,
                user,
                write,
                expiry: end,
            } => {
                let t = tenant(t, tenants);
                let user = uid(user);
                let access = if write {
                    RecordAccess::ReadWrite
                } else {
                    RecordAccess::ReadOnly
                };
                if self.is_member(&t, user) {
                    let now = self.next_time();
                    self.record(&t, entity, record, |at| RecordCommand::Grant {
                        at,
                        user,
                        access,
                        expires_at: expiry(end),
                        now,
                    });
                }
            }
            Cmd::RevokeGrant {
                tenant: t,
                entity,
                record,
                user,
            } => {
                let t = tenant(t, tenants);
                let user = uid(user);
                self.record(&t, entity, record, |at| RecordCommand::Revoke { at, user });
            }
            Cmd::AssignLocal {
                tenant: t,
                entity,
                record,
                user,
                role,
                expiry: end,
            } => {
                let (t, user, role) = (tenant(t, tenants), uid(user), role_name(role));
                if self.is_member(&t, user) && self.role_exists(&t, &role) {
                    let now = self.next_time();
                    self.record(&t, entity, record, |at| RecordCommand::AssignLocalRole {
                        at,
                        user,
                        role,
                        expires_at: expiry(end),
                        now,
                    });
                }
            }
            Cmd::RevokeLocal {
                tenant: t,
                entity,
                record,
                user,
                role,
            } => {
                let (t, user, role) = (tenant(t, tenants), uid(user), role_name(role));
                self.record(&t, entity, record, |at| RecordCommand::RevokeLocalRole {
                    at,
                    user,
                    role,
                });
            }
        }
    }

    fn policy_roles_exist(&self, tenant: &TenantId, policy: &EntityPolicy) -> bool {
        [&policy.read, &policy.create, &policy.update, &policy.delete]
            .into_iter()
            .flatten()
            .all(|principal| match principal {
                Principal::Pseudo(_) => true,
                Principal::Role(role) => self.role_exists(tenant, role),
            })
    }

    fn user(&mut self, user: UserId, command: UserCommand) {
        let state = self.users.get(&user).cloned().unwrap_or_default();
        let Ok(events) = user::decide(&state, command) else {
            return;
        };
        let state = events.iter().fold(state, user::evolve);
        self.users.insert(user, state);
        for event in events {
            let event = match event {
                UserEvent::Registered(e) => DomainEvent::UserRegistered(e),
                UserEvent::Invited(e) => DomainEvent::UserInvited(e),
                UserEvent::Suspended(e) => DomainEvent::UserSuspended(e),
                UserEvent::Reinstated(e) => DomainEvent::UserReinstated(e),
                UserEvent::Deactivated(e) => DomainEvent::UserDeactivated(e),
                UserEvent::Reactivated(e) => DomainEvent::UserReactivated(e),
                UserEvent::FlagsChanged(e) => DomainEvent::UserFlagsChanged(e),
                UserEvent::Activated(e) => DomainEvent::UserActivated(e),
                UserEvent::EmailVerified(e) => DomainEvent::EmailVerified(e),
                UserEvent::ProfileChanged(e) => DomainEvent::UserProfileChanged(e),
                UserEvent::EmailChangeRequested(e) => DomainEvent::EmailChangeRequested(e),
                UserEvent::EmailChanged(e) => DomainEvent::EmailChanged(e),
                UserEvent::Erased(e) => DomainEvent::UserErased(e),
                UserEvent::AttributesChanged(e) => DomainEvent::UserAttributesChanged(e),
                UserEvent::ProvisioningIdsChanged(e) => DomainEvent::UserProvisioningIdsChanged(e),
            };
            self.log.push(None, user.to_string(), event);
        }
    }

    fn membership(&mut self, tenant: &TenantId, user: UserId, command: MembershipCommand) {
        let key = (tenant.clone(), user);
        let state = self.members.get(&key).cloned().unwrap_or_default();
        let Ok(events) = membership::decide(&state, command) else {
            return;
        };
        let state = events.iter().fold(state, membership::evolve);
        self.members.insert(key, state);
        for event in events {
            let event = match event {
                MembershipEvent::Assigned(e) => DomainEvent::RoleAssigned(e),
                MembershipEvent::Revoked(e) => DomainEvent::RoleRevoked(e),
                MembershipEvent::PermissionsGranted(e) => DomainEvent::PermissionsGranted(e),
                MembershipEvent::PermissionsRevoked(e) => DomainEvent::PermissionsRevoked(e),
                MembershipEvent::Removed(e) => DomainEvent::MemberRemoved(e),
                MembershipEvent::RoleLapsed(e) => DomainEvent::RoleLapsed(e),
                MembershipEvent::PermissionsLapsed(e) => DomainEvent::PermissionsLapsed(e),
            };
            self.log
                .push(Some(tenant.as_str()), user.to_string(), event);
        }
    }

    fn role(&mut self, tenant: &TenantId, name: &RoleName, command: RoleCommand) {
        let key = (tenant.clone(), name.clone());
        let state = self.roles.get(&key).cloned().unwrap_or_default();
        let Ok(events) = role_agg::decide(&state, command) else {
            return;
        };
        let state = events.iter().fold(state, role_agg::evolve);
        self.roles.insert(key, state);
        for event in events {
            let event = match event {
                RoleEvent::Defined(e) => DomainEvent::RoleDefined(e),
                RoleEvent::Updated(e) => DomainEvent::RoleUpdated(e),
                RoleEvent::MenuSet(e) => DomainEvent::RoleMenuSet(e),
                RoleEvent::Deleted(e) => DomainEvent::RoleDeleted(e),
                RoleEvent::Relabelled(e) => DomainEvent::RoleRelabelled(e),
            };
            self.log.push(Some(tenant.as_str()), name.as_str(), event);
        }
    }

    fn entity(&mut self, tenant: &TenantId, name: &EntityName, command: EntityCommand) {
        let key = (tenant.clone(), name.clone());
        let state = self.entities.get(&key).cloned().unwrap_or_default();
        let Ok(events) = entity_agg::decide(&state, command) else {
            return;
        };
        let state = events.iter().fold(state, entity_agg::evolve);
        self.entities.insert(key, state);
        for event in events {
            let event = match event {
                EntityEvent::Registered(e) => DomainEvent::EntityRegistered(e),
                EntityEvent::FieldsChanged(e) => DomainEvent::EntityFieldsChanged(e),
                EntityEvent::RlsChanged(e) => DomainEvent::EntityRlsChanged(e),
                EntityEvent::PolicyChanged(e) => DomainEvent::EntityPolicyChanged(e),
                EntityEvent::FieldRulesChanged(e) => DomainEvent::FieldRulesChanged(e),
            };
            self.log.push(Some(tenant.as_str()), name.as_str(), event);
        }
    }

    fn record(
        &mut self,
        tenant: &TenantId,
        entity: u8,
        record: u8,
        command: impl FnOnce(record_agg::RecordRef) -> RecordCommand,
    ) {
        let entity: EntityName = p(ENTITIES[usize::from(entity)]);
        let record: RecordId = p(RECORDS[usize::from(record)]);
        // Every record command needs the entity registered.
        if !self.entity_registered(tenant, &entity) {
            return;
        }
        let at = record_agg::RecordRef {
            entity: entity.clone(),
            record: record.clone(),
        };
        let key = (tenant.clone(), entity.clone(), record.clone());
        let state = self.records.get(&key).cloned().unwrap_or_default();
        let Ok(events) = record_agg::decide(&state, command(at)) else {
            return;
        };
        let state = events.iter().fold(state, record_agg::evolve);
        self.records.insert(key, state);
        let id = record_agg::aggregate_id(&entity, &record);
        for event in events {
            let event = match event {
                RecordEvent::OwnerSet(e) => DomainEvent::RecordOwnerSet(e),
                RecordEvent::Granted(e) => DomainEvent::RecordGranted(e),
                RecordEvent::Revoked(e) => DomainEvent::RecordRevoked(e),
                RecordEvent::LocalRoleAssigned(e) => DomainEvent::LocalRoleAssigned(e),
                RecordEvent::LocalRoleRevoked(e) => DomainEvent::LocalRoleRevoked(e),
                RecordEvent::GrantLapsed(e) => DomainEvent::RecordGrantLapsed(e),
                RecordEvent::LocalRoleLapsed(e) => DomainEvent::LocalRoleLapsed(e),
            };
            self.log.push(Some(tenant.as_str()), id.clone(), event);
        }
    }
}

fn build(spec: &WorldSpec) -> Log {
    let mut writer = Writer::new(spec.tenants);
    for command in &spec.commands {
        writer.run(command, spec.tenants);
    }
    writer.log
}

// ----- the reference model -----

/// Held things, each with its end (None: for good).
#[derive(Debug, Clone, Default)]
struct RefMember {
    roles: BTreeMap<RoleName, Option<OffsetDateTime>>,
    custom: BTreeMap<Permission, Option<OffsetDateTime>>,
}

/// Whether something ending at `end` still counts at `now` (the end is exclusive).
fn counts(end: &Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    end.is_none_or(|end| now < end)
}

impl RefMember {
    fn live(&self, now: OffsetDateTime) -> bool {
        self.roles.values().any(|end| counts(end, now))
            || self.custom.values().any(|end| counts(end, now))
    }
}

#[derive(Debug, Clone)]
struct RefRole {
    permissions: BTreeSet<Permission>,
    global: bool,
}

#[derive(Debug, Clone)]
struct RefEntity {
    fields: Vec<FieldName>,
    rls: bool,
    /// Per CRUD action, the principals allowed.
    policy: BTreeMap<Action, BTreeSet<Principal>>,
    hidden: BTreeMap<RoleName, BTreeSet<FieldName>>,
    unsearchable: BTreeMap<RoleName, BTreeSet<FieldName>>,
}

type RecordKey = (TenantId, EntityName, RecordId);
type StandingKey = (TenantId, EntityName, RecordId, UserId);

/// The same events folded into plain maps, and the rules of `check.rs`'s documentation.
#[derive(Debug, Default)]
struct Reference {
    accounts: BTreeMap<UserId, (AccountStatus, Option<OffsetDateTime>)>,
    /// Registered, or invited and accepted.
    activated: BTreeSet<UserId>,
    members: BTreeMap<(TenantId, UserId), RefMember>,
    roles: BTreeMap<(TenantId, RoleName), RefRole>,
    entities: BTreeMap<(TenantId, EntityName), RefEntity>,
    grants: BTreeMap<StandingKey, (RecordAccess, Option<OffsetDateTime>)>,
    local_roles: BTreeMap<StandingKey, BTreeMap<RoleName, Option<OffsetDateTime>>>,
    owners: BTreeMap<RecordKey, UserId>,
}

fn policy_map(policy: &EntityPolicy) -> BTreeMap<Action, BTreeSet<Principal>> {
    BTreeMap::from([
        (Action::Read, policy.read.clone()),
        (Action::Create, policy.create.clone()),
        (Action::Update, policy.update.clone()),
        (Action::Delete, policy.delete.clone()),
    ])
}

/// The built-in roles as documented in `role.rs`: owner and admin with global access, user
/// reading the standard resources and creating workflows and files.
fn builtin_roles() -> Vec<(RoleName, RefRole)> {
    let user = [
        "documentation:read",
        "entities:read",
        "fields:read",
        "workflows:read",
        "modules:read",
        "files:read",
        "workflows:create",
        "files:create",
    ];
    vec![
        (
            p("owner"),
            RefRole {
                permissions: BTreeSet::new(),
                global: true,
            },
        ),
        (
            p("admin"),
            RefRole {
                permissions: BTreeSet::new(),
                global: true,
            },
        ),
        (
            p("user"),
            RefRole {
                permissions: user.iter().map(|s| p(s)).collect(),
                global: false,
            },
        ),
    ]
}

/// One question: everything a check takes.
#[derive(Debug, Clone)]
struct Query {
    tenant: TenantId,
    subject: Subject,
    permission: Permission,
    record: Option<RecordId>,
    restriction: Option<BTreeSet<Permission>>,
    now: OffsetDateTime,
}

impl Reference {
    fn fold(events: &[idstream_projection_runtime::RecordedEvent]) -> Reference {
        let mut reference = Reference::default();
        for event in events {
            reference.apply(event);
        }
        reference
    }

    fn apply(&mut self, event: &idstream_projection_runtime::RecordedEvent) {
        let envelope = &event.envelope;
        let tenant = envelope.tenant.clone();
        let id = envelope.aggregate.id.as_str();
        let domain = DomainEvent::decode(envelope).expect("events of the generator decode");
        let t = || tenant.clone().expect("a tenant-scoped event");
        match domain {
            DomainEvent::TenantCreated(_) => {
                let t: TenantId = p(id);
                for (name, role) in builtin_roles() {
                    self.roles.entry((t.clone(), name)).or_insert(role);
                }
            }
            DomainEvent::UserRegistered(_) => {
                self.activated.insert(p(id));
                self.accounts.insert(p(id), (AccountStatus::Active, None));
            }
            DomainEvent::UserReinstated(_) | DomainEvent::UserReactivated(_) => {
                let status = if self.activated.contains(&p(id)) {
                    AccountStatus::Active
                } else {
                    AccountStatus::Invited
                };
                self.accounts.insert(p(id), (status, None));
            }
            DomainEvent::UserActivated(_) => {
                self.activated.insert(p(id));
                if let Some(account) = self.accounts.get_mut(&p(id))
                    && account.0 == AccountStatus::Invited
                {
                    *account = (AccountStatus::Active, None);
                }
            }
            DomainEvent::UserInvited(_) => {
                self.accounts.insert(p(id), (AccountStatus::Invited, None));
            }
            DomainEvent::UserSuspended(e) => {
                self.accounts
                    .insert(p(id), (AccountStatus::Suspended, e.until));
            }
            DomainEvent::UserDeactivated(_) => {
                self.accounts.insert(p(id), (AccountStatus::Inactive, None));
            }
            DomainEvent::UserErased(_) => {
                self.accounts.insert(p(id), (AccountStatus::Erased, None));
            }
            DomainEvent::RoleAssigned(e) => {
                self.members
                    .entry((t(), e.user))
                    .or_default()
                    .roles
                    .insert(e.role, e.expires_at);
            }
            DomainEvent::RoleRevoked(RoleRevoked { user, role })
            | DomainEvent::RoleLapsed(RoleLapsed { user, role, .. }) => {
                if let Some(m) = self.members.get_mut(&(t(), user)) {
                    m.roles.remove(&role);
                }
            }
            DomainEvent::PermissionsGranted(e) => {
                let member = self.members.entry((t(), e.user)).or_default();
                for permission in e.permissions {
                    member.custom.insert(permission, e.expires_at);
                }
            }
            DomainEvent::PermissionsRevoked(PermissionsRevoked { user, permissions })
            | DomainEvent::PermissionsLapsed(PermissionsLapsed {
                user, permissions, ..
            }) => {
                if let Some(m) = self.members.get_mut(&(t(), user)) {
                    for permission in &permissions {
                        m.custom.remove(permission);
                    }
                }
            }
            DomainEvent::MemberRemoved(e) => {
                self.members.remove(&(t(), e.user));
            }
            DomainEvent::RoleDefined(e) => {
                let role = RefRole {
                    permissions: e.permissions,
                    global: e.global_access,
                };
                self.roles.insert((t(), p(id)), role);
            }
            DomainEvent::RoleUpdated(e) => {
                let role = RefRole {
                    permissions: e.permissions,
                    global: e.global_access,
                };
                self.roles.insert((t(), p(id)), role);
            }
            DomainEvent::RoleDeleted(_) => {
                self.roles.remove(&(t(), p(id)));
            }
            DomainEvent::EntityRegistered(e) => {
                let entity = RefEntity {
                    fields: e.fields,
                    rls: e.rls,
                    policy: policy_map(&e.policy),
                    hidden: BTreeMap::new(),
                    unsearchable: BTreeMap::new(),
                };
                self.entities.insert((t(), p(id)), entity);
            }
            DomainEvent::EntityFieldsChanged(e) => {
                let entity = self.entities.get_mut(&(t(), p(id))).expect("registered");
                // Rules on fields that are gone hide nothing any more.
                for rules in [&mut entity.hidden, &mut entity.unsearchable] {
                    for fields in rules.values_mut() {
                        fields.retain(|f| e.fields.contains(f));
                    }
                    rules.retain(|_, fields| !fields.is_empty());
                }
                entity.fields = e.fields;
            }
            DomainEvent::EntityRlsChanged(e) => {
                self.entities
                    .get_mut(&(t(), p(id)))
                    .expect("registered")
                    .rls = e.enabled;
            }
            DomainEvent::EntityPolicyChanged(e) => {
                self.entities
                    .get_mut(&(t(), p(id)))
                    .expect("registered")
                    .policy = policy_map(&e.policy);
            }
            DomainEvent::FieldRulesChanged(e) => {
                let entity = self.entities.get_mut(&(t(), p(id))).expect("registered");
                if e.hidden.is_empty() {
                    entity.hidden.remove(&e.role);
                } else {
                    entity.hidden.insert(e.role.clone(), e.hidden);
                }
                if e.unsearchable.is_empty() {
                    entity.unsearchable.remove(&e.role);
                } else {
                    entity.unsearchable.insert(e.role, e.unsearchable);
                }
            }
            DomainEvent::RecordOwnerSet(e) => {
                self.owners.insert((t(), e.entity, e.record), e.owner);
            }
            DomainEvent::RecordGranted(e) => {
                self.grants
                    .insert((t(), e.entity, e.record, e.user), (e.access, e.expires_at));
            }
            DomainEvent::RecordRevoked(RecordRevoked {
                entity,
                record,
                user,
            })
            | DomainEvent::RecordGrantLapsed(RecordGrantLapsed {
                entity,
                record,
                user,
                ..
            }) => {
                self.grants.remove(&(t(), entity, record, user));
            }
            DomainEvent::LocalRoleAssigned(e) => {
                self.local_roles
                    .entry((t(), e.entity, e.record, e.user))
                    .or_default()
                    .insert(e.role, e.expires_at);
            }
            DomainEvent::LocalRoleRevoked(LocalRoleRevoked {
                entity,
                record,
                user,
                role,
            })
            | DomainEvent::LocalRoleLapsed(LocalRoleLapsed {
                entity,
                record,
                user,
                role,
                ..
            }) => {
                let key = (t(), entity, record, user);
                if let Some(roles) = self.local_roles.get_mut(&key) {
                    roles.remove(&role);
                }
            }
            DomainEvent::UserFlagsChanged(_)
            | DomainEvent::RoleMenuSet(_)
            | DomainEvent::TenantRenamed(_)
            | DomainEvent::TenantSettingsChanged(_)
            | DomainEvent::EmailClaimed(_) => {}
            // Identity events do not change access.
            _ => {}
        }
    }

    /// Rule 1: `Ok(None)` for someone the tenant sees as anonymous, `Ok(Some(member))` for an
    /// active member, `Err(reason)` for an account that is denied everything.
    fn caller(
        &self,
        tenant: &TenantId,
        subject: Subject,
        now: OffsetDateTime,
    ) -> Result<Option<&RefMember>, Reason> {
        let Subject::User(user) = subject else {
            return Ok(None);
        };
        let Some(&(status, until)) = self.accounts.get(&user) else {
            return Err(Reason::UnknownUser);
        };
        let status = match (status, until) {
            // A timed suspension is over by itself at its end.
            (AccountStatus::Suspended, Some(end)) if now >= end => AccountStatus::Active,
            (status, _) => status,
        };
        if status != AccountStatus::Active {
            return Err(Reason::AccountNotActive { status });
        }
        // Someone whose temporary holdings have all ended is no member.
        Ok(self
            .members
            .get(&(tenant.clone(), user))
            .filter(|m| m.live(now)))
    }

    /// The roles a member holds tenant-wide at `now` that exist, in name order.
    fn held<'a>(
        &'a self,
        tenant: &TenantId,
        member: &'a RefMember,
        now: OffsetDateTime,
    ) -> Vec<(&'a RoleName, &'a RefRole)> {
        member
            .roles
            .iter()
            .filter(|(_, end)| counts(end, now))
            .filter_map(|(name, _)| Some((name, self.roles.get(&(tenant.clone(), name.clone()))?)))
            .collect()
    }

    fn check(&self, q: &Query) -> Decision {
        let decision = self.check_for_owner(q);
        // Rule 6: a key's restriction narrows what its owner may do now.
        match &q.restriction {
            Some(allowed) if decision.allowed && !allowed.contains(&q.permission) => Decision {
                allowed: false,
                reason: Reason::KeyRestriction,
            },
            _ => decision,
        }
    }

    fn check_for_owner(&self, q: &Query) -> Decision {
        let deny = |reason| Decision {
            allowed: false,
            reason,
        };
        let allow = |reason| Decision {
            allowed: true,
            reason,
        };
        let member = match self.caller(&q.tenant, q.subject, q.now) {
            Ok(member) => member,
            Err(reason) => return deny(reason),
        };
        // Rule 2.
        let entity_name = match q.permission.resource() {
            idstream_domain::access::Resource::Entity(e) => Some(e),
            _ => None,
        };
        let entity = match &entity_name {
            Some(name) => match self.entities.get(&(q.tenant.clone(), name.clone())) {
                Some(entity) => Some(entity),
                None => return deny(Reason::UnknownEntity),
            },
            None => None,
        };
        let action = q.permission.action();
        let held = member
            .map(|m| self.held(&q.tenant, m, q.now))
            .unwrap_or_default();
        // Rule 3.
        if let Some((role, _)) = held.iter().find(|(_, r)| r.global) {
            return allow(Reason::GlobalAccess {
                role: (*role).clone(),
            });
        }
        // Rule 4, in the order the documentation lists the sources.
        let mut type_level: Vec<Reason> = Vec::new();
        for (role, facts) in &held {
            if facts.permissions.contains(&q.permission) {
                type_level.push(Reason::Role {
                    role: (*role).clone(),
                });
            }
        }
        if member.is_some_and(|m| {
            m.custom
                .get(&q.permission)
                .is_some_and(|end| counts(end, q.now))
        }) {
            type_level.push(Reason::CustomPermission);
        }
        if let Some(entity) = entity {
            let principals = entity.policy.get(&action).cloned().unwrap_or_default();
            let everyone = Principal::Pseudo(PseudoRole::Everyone);
            let authenticated = Principal::Pseudo(PseudoRole::AuthenticatedUser);
            if principals.contains(&everyone) {
                type_level.push(Reason::Policy {
                    principal: everyone,
                });
            }
            if member.is_some() && principals.contains(&authenticated) {
                type_level.push(Reason::Policy {
                    principal: authenticated,
                });
            }
            for principal in &principals {
                if let Principal::Role(role) = principal
                    && held.iter().any(|(name, _)| *name == role)
                {
                    type_level.push(Reason::Policy {
                        principal: principal.clone(),
                    });
                }
            }
        }
        let rls = entity.is_some_and(|e| e.rls);
        // A record only means something for an entity permission.
        let record = q.record.as_ref().filter(|_| entity.is_some());
        if let Some(reason) = type_level.first()
            && (record.is_none() || !rls)
        {
            return allow(reason.clone());
        }
        let denial = if rls && !type_level.is_empty() {
            Reason::RowLevelSecurity
        } else {
            Reason::NoPermission
        };
        // Rule 5: only members have grants, ownership and local roles.
        let (Some(record), Some(_), Subject::User(user), Some(entity_name), Some(entity)) =
            (record, member, q.subject, &entity_name, entity)
        else {
            return deny(denial);
        };
        let key = (q.tenant.clone(), entity_name.clone(), record.clone(), user);
        let grant = self
            .grants
            .get(&key)
            .filter(|(_, end)| counts(end, q.now))
            .map(|(access, _)| access);
        match grant {
            Some(RecordAccess::ReadOnly) if action == Action::Read => {
                return allow(Reason::Grant {
                    access: RecordAccess::ReadOnly,
                });
            }
            Some(RecordAccess::ReadWrite)
                if matches!(action, Action::Read | Action::Update | Action::Delete) =>
            {
                return allow(Reason::Grant {
                    access: RecordAccess::ReadWrite,
                });
            }
            _ => {}
        }
        let creator_may = entity
            .policy
            .get(&action)
            .is_some_and(|p| p.contains(&Principal::Pseudo(PseudoRole::Creator)));
        let owner = self
            .owners
            .get(&(q.tenant.clone(), entity_name.clone(), record.clone()));
        if creator_may && owner == Some(&user) {
            return allow(Reason::Owner);
        }
        let local = self.local_roles.get(&key).into_iter().flatten();
        for (role, _) in local.filter(|(_, end)| counts(end, q.now)) {
            if let Some(facts) = self.roles.get(&(q.tenant.clone(), role.clone()))
                && (facts.global || facts.permissions.contains(&q.permission))
            {
                return allow(Reason::LocalRole { role: role.clone() });
            }
        }
        deny(denial)
    }

    /// Visible fields: system fields first, then the entity's own in order, less those hidden
    /// from every role the member holds (global access hides nothing; no role hides nothing).
    /// Searchable fields: the visible ones less those every held role hides or keeps from
    /// search.
    fn visible_fields(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        now: OffsetDateTime,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let definition = self.entities.get(&(tenant.clone(), entity.clone()))?;
        let member = match self.caller(tenant, subject, now) {
            Ok(member) => member,
            Err(_) => return Some((Vec::new(), Vec::new())),
        };
        let held = member
            .map(|m| self.held(tenant, m, now))
            .unwrap_or_default();
        let global = held.iter().any(|(_, r)| r.global);
        let by_all = |field: &FieldName, search: bool| {
            !global
                && !held.is_empty()
                && held.iter().all(|(name, _)| {
                    let in_rule = |rules: &BTreeMap<RoleName, BTreeSet<FieldName>>| {
                        rules
                            .get(*name)
                            .is_some_and(|fields| fields.contains(field))
                    };
                    in_rule(&definition.hidden) || (search && in_rule(&definition.unsearchable))
                })
        };
        let system = ["id", "created_at", "updated_at"];
        let mut readable: Vec<String> = system.iter().map(|s| (*s).to_owned()).collect();
        let mut searchable = readable.clone();
        for field in &definition.fields {
            if !system.contains(&field.as_str()) && !by_all(field, false) {
                readable.push(field.to_string());
                if !by_all(field, true) {
                    searchable.push(field.to_string());
                }
            }
        }
        Some((readable, searchable))
    }

    /// Whether the subject reads every record of the entity (global access, or type-level read
    /// on an entity without row-level security), and otherwise the records of the universe it
    /// may read.
    fn readable(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        now: OffsetDateTime,
    ) -> Option<(bool, BTreeSet<RecordId>)> {
        let definition = self.entities.get(&(tenant.clone(), entity.clone()))?;
        let read = Permission::entity(entity, Action::Read).expect("valid");
        let ask = |record: Option<RecordId>| {
            self.check(&Query {
                tenant: tenant.clone(),
                subject,
                permission: read.clone(),
                record,
                restriction: None,
                now,
            })
        };
        let type_level = ask(None);
        let all = matches!(type_level.reason, Reason::GlobalAccess { .. })
            || (type_level.allowed && !definition.rls);
        if all {
            return Some((true, BTreeSet::new()));
        }
        let records = RECORDS
            .iter()
            .map(|r| p::<RecordId>(r))
            .filter(|r| ask(Some(r.clone())).allowed)
            .collect();
        Some((false, records))
    }

    fn is_member(&self, tenant: &TenantId, user: UserId) -> bool {
        self.members
            .get(&(tenant.clone(), user))
            .is_some_and(|m| !m.roles.is_empty() || !m.custom.is_empty())
    }
}

// ----- the read model under test -----

struct Model {
    _db: sled::Db,
    tree: sled::Tree,
    projection: AccessProjection,
    access: Access,
}

impl Model {
    fn new() -> Model {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled database");
        let tree = db.open_tree(NAME).expect("the access tree");
        let cache = Arc::new(FactCache::default());
        let projection = AccessProjection::new(cache.clone());
        // Load the (empty) record index, as a runner does: checks then read standings and
        // owners from memory, kept exact by the commit hook.
        projection.opened(&tree);
        Model {
            _db: db,
            projection,
            access: Access::new(tree.clone(), cache),
            tree,
        }
    }

    fn apply(&self, events: &[idstream_projection_runtime::RecordedEvent]) {
        apply_events(&self.projection, &self.tree, events).expect("the fold applies");
    }

    fn dump(&self) -> Vec<(sled::IVec, sled::IVec)> {
        self.tree.iter().map(|e| e.expect("readable")).collect()
    }

    fn check(&self, q: &Query) -> Decision {
        self.access
            .check(CheckRequest {
                tenant: &q.tenant,
                subject: q.subject,
                permission: &q.permission,
                record: q.record.as_ref(),
                restriction: q.restriction.as_ref(),
                now: q.now,
            })
            .expect("a check reads the tree")
    }

    /// Every readable record, following the pages.
    fn readable(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        limit: usize,
        now: OffsetDateTime,
    ) -> Option<(bool, Vec<RecordId>)> {
        let mut after: Option<RecordId> = None;
        let mut all = None;
        let mut records = Vec::new();
        for _ in 0..=RECORDS.len() + 1 {
            let page = self
                .access
                .readable_records(tenant, subject, entity, after.as_ref(), limit, now)
                .expect("a listing reads the tree")?;
            assert!(
                page.records.len() <= limit,
                "a page holds at most `limit` records"
            );
            if *all.get_or_insert(page.all) != page.all {
                panic!("`all` changed from one page to the next");
            }
            records.extend(page.records);
            match page.next {
                Some(next) => after = Some(next),
                None => return Some((all.unwrap_or(false), records)),
            }
        }
        panic!("the pages never end");
    }
}

// ----- comparing -----

fn subjects() -> Vec<Subject> {
    let mut out = vec![Subject::Anonymous];
    out.extend((1..=u64::from(USERS)).map(|n| Subject::User(user_id(n))));
    out.push(Subject::User(user_id(GHOST)));
    out
}

fn query_tenants(spec: &WorldSpec) -> Vec<TenantId> {
    let mut out: Vec<TenantId> = TENANTS[..usize::from(spec.tenants)]
        .iter()
        .map(|t| p(t))
        .collect();
    out.push(p(NO_TENANT));
    out
}

fn entity_names() -> Vec<EntityName> {
    ["e0", "e1", "e2"].iter().map(|e| p(e)).collect()
}

/// Renders the log one event a line, for failure messages.
fn describe(log: &[idstream_projection_runtime::RecordedEvent]) -> String {
    log.iter()
        .map(|e| {
            let env = &e.envelope;
            format!(
                "  {:>3} {:<20} {}/{} {}",
                e.position,
                env.event_type,
                env.tenant.as_ref().map_or("_", |t| t.as_str()),
                env.aggregate.id,
                env.data
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn user_label(subject: Subject) -> String {
    match subject {
        Subject::Anonymous => "anonymous".into(),
        Subject::User(u) => format!("user {}", u.ulid().timestamp_ms()),
    }
}

/// Compares everything for one world; returns the disagreements found.
fn compare_all(spec: &WorldSpec, model: &Model, reference: &Reference) -> Vec<String> {
    let mut out = Vec::new();
    let now = NOWS[spec.now];
    let restriction = permissions(spec.restriction);
    let perms: Vec<Permission> = PERMISSIONS.iter().map(|s| p(s)).collect();
    let mut records: Vec<Option<RecordId>> = vec![None];
    records.extend(RECORDS.iter().map(|r| Some(p(r))));
    for tenant in query_tenants(spec) {
        for subject in subjects() {
            let mut anonymous = Vec::new();
            for permission in &perms {
                for record in &records {
                    for restricted in [false, true] {
                        let q = Query {
                            tenant: tenant.clone(),
                            subject,
                            permission: permission.clone(),
                            record: record.clone(),
                            restriction: restricted.then(|| restriction.clone()),
                            now,
                        };
                        let got = model.check(&q);
                        let want = reference.check(&q);
                        if got != want {
                            out.push(format!(
                                "check {} in {} of {} on {:?} (restricted: {restricted}) at {now}: \
                                 projection {got:?}, reference {want:?}",
                                user_label(subject),
                                tenant,
                                permission,
                                record.as_ref().map(RecordId::as_str),
                            ));
                        }
                        if !restricted {
                            anonymous.push((q, got));
                        }
                    }
                }
            }
            // Isolation: someone who is not a member of this tenant gets nothing beyond what
            // `_EVERYONE` gets.
            if let Subject::User(user) = subject
                && !reference.is_member(&tenant, user)
            {
                for (q, got) in &anonymous {
                    let everyone = Reason::Policy {
                        principal: Principal::Pseudo(PseudoRole::Everyone),
                    };
                    let as_anonymous = model.check(&Query {
                        subject: Subject::Anonymous,
                        ..q.clone()
                    });
                    if got.allowed && (got.reason != everyone || !as_anonymous.allowed) {
                        out.push(format!(
                            "isolation: non-member {} allowed {} on {:?} in {} by {:?}",
                            user_label(subject),
                            q.permission,
                            q.record,
                            tenant,
                            got.reason
                        ));
                    }
                }
            }
            for entity in entity_names() {
                let got = model
                    .access
                    .field_visibility(&tenant, subject, &entity, now)
                    .expect("reads")
                    .map(|v| (v.readable, v.searchable));
                let want = reference.visible_fields(&tenant, subject, &entity, now);
                if got != want {
                    out.push(format!(
                        "visible fields of {entity} for {} in {tenant}: projection {got:?}, \
                         reference {want:?}",
                        user_label(subject)
                    ));
                }
                let got = model
                    .access
                    .entity_permissions(&tenant, subject, &entity, now)
                    .expect("reads")
                    .map(|e| [e.read, e.create, e.update, e.delete]);
                let want = reference
                    .entities
                    .contains_key(&(tenant.clone(), entity.clone()))
                    .then(|| {
                        Action::CRUD.map(|action| {
                            reference
                                .check(&Query {
                                    tenant: tenant.clone(),
                                    subject,
                                    permission: Permission::entity(&entity, action).expect("valid"),
                                    record: None,
                                    restriction: None,
                                    now,
                                })
                                .allowed
                        })
                    });
                if got != want {
                    out.push(format!(
                        "entity permissions of {entity} for {} in {tenant}: projection {got:?}, \
                         reference {want:?}",
                        user_label(subject)
                    ));
                }
                let limit = 1 + (spec.restriction as usize % 3);
                let got = model.readable(&tenant, subject, &entity, limit, now);
                let want = reference.readable(&tenant, subject, &entity, now);
                let got_set = got
                    .as_ref()
                    .map(|(all, list)| (*all, list.iter().cloned().collect::<BTreeSet<_>>()));
                let sorted_unique = got
                    .as_ref()
                    .is_none_or(|(_, list)| list.windows(2).all(|w| w[0] < w[1]));
                if got_set != want || !sorted_unique {
                    out.push(format!(
                        "readable records of {entity} for {} in {tenant} (pages of {limit}): \
                         projection {got:?}, reference {want:?}",
                        user_label(subject)
                    ));
                }
            }
        }
    }
    out
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(log: &Log, problems: &[String]) -> String {
    let shown: Vec<&str> = problems.iter().take(8).map(String::as_str).collect();
    format!(
        "{} disagreement(s), first ones:\n{}\nevents:\n{}",
        problems.len(),
        shown.join("\n"),
        describe(&log.events)
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(96),
        max_shrink_iters: 1000,
        ..ProptestConfig::default()
    })]

    /// The projection answers every question of the universe as the reference model does, and
    /// a rebuild event by event gives the same bytes.
    #[test]
    fn the_read_model_agrees_with_the_reference_model(spec in world_spec(20..80)) {
        let log = build(&spec);
        let model = Model::new();
        model.apply(&log.events);
        let reference = Reference::fold(&log.events);
        let problems = compare_all(&spec, &model, &reference);
        prop_assert!(problems.is_empty(), "{}", report(&log, &problems));

        let again = Model::new();
        for event in &log.events {
            again.apply(std::slice::from_ref(event));
        }
        prop_assert!(model.dump() == again.dump(), "event-by-event rebuild differs\n{}", describe(&log.events));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(64),
        max_shrink_iters: 1000,
        ..ProptestConfig::default()
    })]

    /// Checks asked between small batches of events see every batch: the fact cache is never
    /// stale. Folding in batches gives the same bytes as folding at once.
    #[test]
    fn checks_between_batches_see_every_change(
        spec in world_spec(20..80),
        batches in prop::collection::vec(1..6usize, 40),
        picks in prop::collection::vec((any::<u8>(), any::<u8>()), 6),
    ) {
        let log = build(&spec);
        let model = Model::new();
        let now = NOWS[spec.now];
        let perms: Vec<Permission> = picks
            .iter()
            .map(|(a, _)| p(PERMISSIONS[usize::from(*a) % PERMISSIONS.len()]))
            .collect();
        let record: RecordId = p(RECORDS[usize::from(picks[0].1) % RECORDS.len()]);
        let tenants = query_tenants(&spec);
        let mut applied = 0;
        let mut sizes = batches.iter().cycle();
        let mut reference = Reference::default();
        while applied < log.events.len() {
            let size = (*sizes.next().expect("cycled")).min(log.events.len() - applied);
            let batch = &log.events[applied..applied + size];
            model.apply(batch);
            for event in batch {
                reference.apply(event);
            }
            applied += size;
            let mut problems = Vec::new();
            for tenant in &tenants {
                for subject in subjects() {
                    for permission in &perms {
                        for record in [None, Some(record.clone())] {
                            let q = Query {
                                tenant: tenant.clone(),
                                subject,
                                permission: permission.clone(),
                                record,
                                restriction: None,
                                now,
                            };
                            let got = model.check(&q);
                            let want = reference.check(&q);
                            if got != want {
                                problems.push(format!(
                                    "after event {applied}: check {} in {tenant} of {permission} \
                                     on {:?}: projection {got:?}, reference {want:?}",
                                    user_label(subject),
                                    q.record,
                                ));
                            }
                        }
                    }
                    let entity: EntityName = p("e0");
                    let got = model
                        .access
                        .field_visibility(tenant, subject, &entity, now)
                        .expect("reads")
                        .map(|v| (v.readable, v.searchable));
                    let want = reference.visible_fields(tenant, subject, &entity, now);
                    if got != want {
                        problems.push(format!(
                            "after event {applied}: visible fields of e0 for {} in {tenant}: \
                             projection {got:?}, reference {want:?}",
                            user_label(subject)
                        ));
                    }
                }
            }
            prop_assert!(problems.is_empty(), "{}", report(&log, &problems));
        }
        let at_once = Model::new();
        at_once.apply(&log.events);
        prop_assert!(model.dump() == at_once.dump(), "batched fold differs\n{}", describe(&log.events));
    }
}
