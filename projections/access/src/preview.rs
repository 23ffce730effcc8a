//! What-if previews: the access difference events would make in one tenant, computed by the same
//! fold and the same checks as the real read model, on private copies of the tenant's facts.
//!
//! [`preview`] copies the tenant's keys (members, roles, entities, resources, standings, owners,
//! the record index) and the accounts of its members and of the users the events name into two
//! temporary sled trees ([`copy_tenant`]), applies the events to one of them with
//! [`AccessProjection`] as the runner would, and answers [`difference_between`] the two. Nothing
//! of the live read model is written.
//!
//! Both sides are asked the same questions, for every member of either side: each permission
//! that the member's roles and custom permissions name on either side, checked (so a suspension,
//! an ended temporary role or an undefined resource count as they do in checks); whether a held
//! role gives global access that checks honour; and for every entity of either side, the records
//! the member may read (or "all", listed up to [`PREVIEW_RECORDS`]) and the fields they see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use idstream_domain::access::{
    Action, CheckRequest, EntityName, Permission, RecordId, Resource, Subject,
};
use idstream_domain::{AggregateType, EventEnvelope, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::apply_events;
use serde::Serialize;
use time::OffsetDateTime;

use crate::{Access, AccessError, AccessProjection, FactCache, keys};

/// Most readable records a preview lists per member and entity; past it the list is cut and says
/// so.
pub const PREVIEW_RECORDS: usize = 1_000;

/// What one member could reach, as the checks decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Access1 {
    global: bool,
    allowed: BTreeSet<Permission>,
    candidates: BTreeSet<Permission>,
    entities: BTreeMap<EntityName, EntityView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EntityView {
    all: bool,
    records: BTreeSet<RecordId>,
    truncated: bool,
    fields: BTreeSet<String>,
}

/// How one entity's records and fields change for a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityDifference {
    pub entity: EntityName,
    /// Whether the member reads every record, before and after, when that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_records: Option<(bool, bool)>,
    /// Records the member may read after and not before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records_visible: Vec<RecordId>,
    /// Records the member may read before and not after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub records_hidden: Vec<RecordId>,
    /// More than [`PREVIEW_RECORDS`] readable records on either side: the lists are partial.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub records_truncated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields_visible: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields_hidden: Vec<String>,
}

impl EntityDifference {
    fn is_empty(&self) -> bool {
        self.all_records.is_none()
            && self.records_visible.is_empty()
            && self.records_hidden.is_empty()
            && self.fields_visible.is_empty()
            && self.fields_hidden.is_empty()
    }
}

/// How one member's access changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberDifference {
    pub user: UserId,
    /// Global access (every permission) before and after, when that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_access: Option<(bool, bool)>,
    pub gained: Vec<Permission>,
    pub lost: Vec<Permission>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntityDifference>,
}

/// The access of a set of members in a tenant at one moment, as the checks of `access` decide it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    members: BTreeMap<UserId, Access1>,
}

impl Access {
    /// The members of `tenant` (holding a role or custom permission there), in id order.
    pub fn member_ids(&self, tenant: &TenantId) -> Result<Vec<UserId>, AccessError> {
        let prefix = keys::member_prefix(tenant);
        let mut ids = Vec::new();
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, _) = entry?;
            if let Some(user) = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|u| u.parse::<UserId>().ok())
            {
                ids.push(user);
            }
        }
        Ok(ids)
    }

    /// The access of `users` in `tenant` at `now`: for each, the `candidates` (plus what their
    /// memberships name) that checks allow, global access, and the records and fields of
    /// `entities` (plus those of permissions they hold, and every entity for global access).
    pub fn snapshot(
        &self,
        tenant: &TenantId,
        users: &BTreeSet<UserId>,
        candidates: &BTreeMap<UserId, BTreeSet<Permission>>,
        entities: &BTreeMap<UserId, BTreeSet<EntityName>>,
        now: OffsetDateTime,
    ) -> Result<Snapshot, AccessError> {
        let mut members = BTreeMap::new();
        for user in users {
            let (global_held, named) = self.effective_permissions(tenant, user)?;
            let mut asked: BTreeSet<Permission> = named;
            asked.extend(candidates.get(user).into_iter().flatten().cloned());
            let subject = Subject::User(*user);
            let check = |permission: &Permission| {
                self.check(CheckRequest {
                    tenant,
                    subject,
                    permission,
                    record: None,
                    restriction: None,
                    now,
                })
            };
            let mut allowed = BTreeSet::new();
            for permission in &asked {
                if check(permission)?.allowed {
                    allowed.insert(permission.clone());
                }
            }
            // Global access counts when a check honours it (not for a suspended account).
            let global = global_held
                && matches!(
                    check(
                        &Permission::new(Resource::Named("users"), Action::Read)
                            .expect("users:read")
                    )?
                    .reason,
                    idstream_domain::access::Reason::GlobalAccess { .. }
                );
            let mut concerned: BTreeSet<EntityName> =
                entities.get(user).into_iter().flatten().cloned().collect();
            concerned.extend(asked.iter().filter_map(entity_of));
            let mut views = BTreeMap::new();
            for entity in concerned {
                let Some(readable) =
                    self.readable_records(tenant, subject, &entity, None, PREVIEW_RECORDS, now)?
                else {
                    continue;
                };
                // Fields are seen only on records one can read: with none, which fields would
                // be visible makes no difference (a non-member sees every field of an entity
                // without rules and reads no record of it).
                let fields = if readable.all || !readable.records.is_empty() {
                    self.visible_fields(tenant, subject, &entity, now)?
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                views.insert(
                    entity,
                    EntityView {
                        all: readable.all,
                        truncated: readable.next.is_some(),
                        records: readable.records.into_iter().collect(),
                        fields: fields.into_iter().collect(),
                    },
                );
            }
            members.insert(
                *user,
                Access1 {
                    global,
                    allowed,
                    candidates: asked,
                    entities: views,
                },
            );
        }
        Ok(Snapshot { members })
    }
}

/// The entity a permission is about, if it is an entity permission.
fn entity_of(permission: &Permission) -> Option<EntityName> {
    permission
        .as_str()
        .strip_prefix("entity.")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(entity, _)| entity.parse().ok())
}

/// The differences between two snapshots of the same members, members without one left out.
pub fn difference(before: &Snapshot, after: &Snapshot) -> Vec<MemberDifference> {
    let empty = Access1::default();
    let users: BTreeSet<&UserId> = before.members.keys().chain(after.members.keys()).collect();
    let mut out = Vec::new();
    for user in users {
        let b = before.members.get(user).unwrap_or(&empty);
        let a = after.members.get(user).unwrap_or(&empty);
        let gained: Vec<Permission> = a.allowed.difference(&b.allowed).cloned().collect();
        let lost: Vec<Permission> = b.allowed.difference(&a.allowed).cloned().collect();
        let entities_named: BTreeSet<&EntityName> =
            b.entities.keys().chain(a.entities.keys()).collect();
        let mut entities = Vec::new();
        for entity in entities_named {
            let none = EntityView::default();
            let eb = b.entities.get(entity).unwrap_or(&none);
            let ea = a.entities.get(entity).unwrap_or(&none);
            let diff = EntityDifference {
                entity: entity.clone(),
                all_records: (eb.all != ea.all).then_some((eb.all, ea.all)),
                records_visible: ea.records.difference(&eb.records).cloned().collect(),
                records_hidden: eb.records.difference(&ea.records).cloned().collect(),
                records_truncated: eb.truncated || ea.truncated,
                fields_visible: ea.fields.difference(&eb.fields).cloned().collect(),
                fields_hidden: eb.fields.difference(&ea.fields).cloned().collect(),
            };
            if !diff.is_empty() {
                entities.push(diff);
            }
        }
        let member = MemberDifference {
            user: *user,
            global_access: (b.global != a.global).then_some((b.global, a.global)),
            gained,
            lost,
            entities,
        };
        if member.global_access.is_some()
            || !member.gained.is_empty()
            || !member.lost.is_empty()
            || !member.entities.is_empty()
        {
            out.push(member);
        }
    }
    out
}

/// The users `events` name: those of user and membership aggregates, and the `user` and `owner`
/// of record events.
fn named_by(events: &[EventEnvelope]) -> BTreeSet<UserId> {
    let mut users = BTreeSet::new();
    for envelope in events {
        if matches!(
            envelope.aggregate.kind,
            AggregateType::User | AggregateType::Membership
        ) && let Ok(user) = envelope.aggregate.id.parse()
        {
            users.insert(user);
        }
        for field in ["user", "owner"] {
            if let Some(user) = envelope.data[field].as_str().and_then(|u| u.parse().ok()) {
                users.insert(user);
            }
        }
    }
    users
}

/// A private copy of what `live` (the access read model's tree) knows of `tenant`: its keys,
/// and the accounts of its members and of `users`. Dropped with the returned database.
pub fn copy_tenant(
    live: &sled::Tree,
    tenant: &TenantId,
    users: &BTreeSet<UserId>,
) -> Result<(sled::Db, Access), AccessError> {
    let db = sled::Config::new().temporary(true).open()?;
    let tree = db.open_tree(crate::NAME)?;
    let mut batch = sled::Batch::default();
    for prefix in ["m", "r", "e", "c", "g", "o", "x"] {
        let prefix = format!("{prefix}/{tenant}/");
        for entry in live.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry?;
            batch.insert(key, value);
        }
    }
    let live_access = Access::new(live.clone(), Arc::new(FactCache::default()));
    let mut accounts: BTreeSet<UserId> = live_access.member_ids(tenant)?.into_iter().collect();
    accounts.extend(users.iter().copied());
    for user in &accounts {
        if let Some(account) = live.get(keys::account(user))? {
            batch.insert(keys::account(user), account);
        }
    }
    tree.apply_batch(batch)?;
    Ok((db, Access::new(tree, Arc::new(FactCache::default()))))
}

/// The access difference between two states of `tenant`: every member of either (and `users`)
/// is asked the same questions on both sides (every permission their memberships name on either
/// side, and every entity of either side), and the answers compared.
pub fn difference_between(
    before: &Access,
    after: &Access,
    tenant: &TenantId,
    users: &BTreeSet<UserId>,
    now: OffsetDateTime,
) -> Result<Vec<MemberDifference>, AccessError> {
    let mut everyone = users.clone();
    everyone.extend(before.member_ids(tenant)?);
    everyone.extend(after.member_ids(tenant)?);
    let mut candidates: BTreeMap<UserId, BTreeSet<Permission>> = BTreeMap::new();
    for user in &everyone {
        let named = candidates.entry(*user).or_default();
        named.extend(before.effective_permissions(tenant, user)?.1);
        named.extend(after.effective_permissions(tenant, user)?.1);
    }
    let all_entities: BTreeSet<EntityName> = before
        .entities(tenant)?
        .into_iter()
        .chain(after.entities(tenant)?)
        .map(|e| e.name)
        .collect();
    let entities: BTreeMap<UserId, BTreeSet<EntityName>> = everyone
        .iter()
        .map(|u| (*u, all_entities.clone()))
        .collect();
    let a = before.snapshot(tenant, &everyone, &candidates, &entities, now)?;
    let b = after.snapshot(tenant, &everyone, &candidates, &entities, now)?;
    Ok(difference(&a, &b))
}

impl Access {
    /// [`preview`] on this read model.
    pub fn preview(
        &self,
        tenant: &TenantId,
        events: &[EventEnvelope],
        now: OffsetDateTime,
    ) -> Result<Vec<MemberDifference>, AccessError> {
        preview(&self.tree, tenant, events, now)
    }

    /// [`copy_tenant`] of this read model.
    pub fn copy_tenant(
        &self,
        tenant: &TenantId,
        users: &BTreeSet<UserId>,
    ) -> Result<(sled::Db, Access), AccessError> {
        copy_tenant(&self.tree, tenant, users)
    }
}

/// The access difference `events` would make in `tenant`, decided on copies of `live` (the access
/// read model's tree) at `now`: the events are applied by [`AccessProjection`] to one copy, as the
/// runner applies them to the read model. Nothing of `live` is written.
pub fn preview(
    live: &sled::Tree,
    tenant: &TenantId,
    events: &[EventEnvelope],
    now: OffsetDateTime,
) -> Result<Vec<MemberDifference>, AccessError> {
    let users = named_by(events);
    let (_before_db, before) = copy_tenant(live, tenant, &users)?;
    let (_after_db, after) = copy_tenant(live, tenant, &users)?;
    let recorded: Vec<RecordedEvent> = events
        .iter()
        .enumerate()
        .map(|(i, envelope)| RecordedEvent {
            position: i as u64 + 1,
            envelope: envelope.clone(),
            msg_id: None,
        })
        .collect();
    apply_events(
        &AccessProjection::new(after.cache.clone()),
        &after.tree,
        &recorded,
    )
    .map_err(|e| AccessError::Corrupt {
        key: "preview".into(),
        reason: e.to_string(),
    })?;
    difference_between(&before, &after, tenant, &users, now)
}
