//! Queries over the access read model.

use std::collections::BTreeSet;
use std::sync::Arc;

use idstream_domain::access::{
    self, AccessFacts, Account, Action, CheckRequest, Decision, EntityFacts, EntityName, Member,
    MenuItem, Permission, Reason, RecordId, RecordStanding, ResourceName, RoleFacts, Subject,
};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::cache::{Fact, FactCache};
use crate::fold::decode_standing;
use crate::{AccountRecord, EntityRecord, MemberRecord, ResourceRecord, RoleRecord, Source, keys};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("access read model storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("access read model value at {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A decision with the events behind it: the fact that decided, and the event that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub decision: Decision,
    /// What established the deciding facts, most specific first (e.g. the role assignment, then
    /// the role's definition). Empty when nothing granted (a denial) and for anonymous policies.
    pub sources: Vec<ExplainedSource>,
}

/// One fact of an explanation and its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedSource {
    /// What the fact is, e.g. `role admin held by the user`.
    pub fact: String,
    #[serde(flatten)]
    pub source: Source,
}

/// `{"read":…,"create":…,"update":…,"delete":…}` for one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntityPermissions {
    pub read: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

/// The records of an entity a subject may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadableRecords {
    /// True when the subject may read every record (global access, or a type-level read
    /// permission on an entity without row-level security): then `records` is empty and a
    /// client filters nothing.
    pub all: bool,
    pub records: Vec<RecordId>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<RecordId>,
}

/// The handle for queries; cheap to clone.
#[derive(Clone)]
pub struct Access {
    pub(crate) tree: sled::Tree,
    pub(crate) cache: Arc<FactCache>,
}

/// An aggregate whose temporary access ended and awaits its lapse event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueLapse {
    Membership {
        tenant: TenantId,
        user: UserId,
    },
    Record {
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
    },
}

/// " until <end>" for temporary access, nothing otherwise.
fn until(end: Option<OffsetDateTime>) -> String {
    end.and_then(|end| {
        end.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map(|end| format!(" until {end}"))
    .unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, AccessError> {
    serde_json::from_slice(bytes).map_err(|e| AccessError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

impl Access {
    /// Queries over `tree`, with the cache shared with the [`crate::AccessProjection`] that
    /// writes it.
    pub fn new(tree: sled::Tree, cache: Arc<FactCache>) -> Access {
        Access { tree, cache }
    }

    fn json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AccessError> {
        self.tree
            .get(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub(crate) fn decode_value<T: DeserializeOwned>(
        &self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, AccessError> {
        decode(key, bytes)
    }

    /// The event that established the fact whose provenance key is `key`.
    pub(crate) fn source(&self, key: &[u8]) -> Result<Option<Source>, AccessError> {
        self.json(key)
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, AccessError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The memberships and records holding temporary access that ended at or before `now` and whose
    /// lapse is not recorded yet (each once, earliest end first), at most `limit`.
    pub fn due_lapses(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<DueLapse>, AccessError> {
        let mut due: Vec<DueLapse> = Vec::new();
        // Every key of an end at or before `now` (`d/<end>/…` sorts before `d/<now>0`).
        let mut until = keys::due_until(now);
        until.push(b'/' + 1);
        for entry in self.tree.range(keys::DUE.to_vec()..until) {
            let (key, _) = entry?;
            let text = std::str::from_utf8(&key).unwrap_or("");
            let parts: Vec<&str> = text.split('/').collect();
            let lapse = match parts.get(2..) {
                Some(["m", tenant, user, ..]) => match (tenant.parse(), user.parse()) {
                    (Ok(tenant), Ok(user)) => DueLapse::Membership { tenant, user },
                    _ => continue,
                },
                Some(["g", tenant, entity, record, ..]) => {
                    match (tenant.parse(), entity.parse(), record.parse()) {
                        (Ok(tenant), Ok(entity), Ok(record)) => DueLapse::Record {
                            tenant,
                            entity,
                            record,
                        },
                        _ => continue,
                    }
                }
                _ => continue,
            };
            if !due.contains(&lapse) {
                if due.len() == limit {
                    break;
                }
                due.push(lapse);
            }
        }
        Ok(due)
    }

    /// Decides one request.
    pub fn check(&self, request: CheckRequest<'_>) -> Result<Decision, AccessError> {
        access::check(self, request)
    }

    /// Decides one request and names the facts that decided it with their events.
    pub fn explain(&self, request: CheckRequest<'_>) -> Result<Explanation, AccessError> {
        let decision = self.check(request)?;
        let mut sources = Vec::new();
        let tenant = request.tenant;
        let user = match request.subject {
            Subject::User(user) => Some(user),
            Subject::Anonymous => None,
        };
        let entity = request.permission.entity_name();
        let mut add = |fact: String, key: Vec<u8>| -> Result<(), AccessError> {
            if let Some(source) = self.json::<Source>(&key)? {
                sources.push(ExplainedSource { fact, source });
            }
            Ok(())
        };
        match (&decision.reason, user) {
            (Reason::GlobalAccess { role } | Reason::Role { role }, Some(user)) => {
                let end = AccessFacts::member(self, tenant, &user)?
                    .and_then(|m| m.role_expiry.get(role).copied());
                let member = keys::member(tenant, &user);
                add(
                    format!("role {role} held by the user{}", until(end)),
                    keys::provenance(&member, &keys::held_role(role)),
                )?;
                add(
                    format!("definition of role {role}"),
                    keys::provenance(&keys::role(tenant, role), ""),
                )?;
            }
            (Reason::CustomPermission, Some(user)) => {
                let end = AccessFacts::member(self, tenant, &user)?
                    .and_then(|m| m.custom_expiry.get(request.permission).copied());
                let member = keys::member(tenant, &user);
                add(
                    format!("custom permission {}{}", request.permission, until(end)),
                    keys::provenance(&member, &keys::held_permission(request.permission)),
                )?;
            }
            (Reason::Policy { principal }, _) => {
                if let Some(entity) = &entity {
                    add(
                        format!("policy of entity {entity} allowing {principal}"),
                        keys::provenance(&keys::entity(tenant, entity), "policy"),
                    )?;
                }
            }
            (Reason::Grant { access }, Some(user)) => {
                if let (Some(entity), Some(record)) = (&entity, request.record) {
                    let end = AccessFacts::standing(self, tenant, entity, record, &user)?
                        .and_then(|s| s.grant_expires);
                    let standing = keys::standing(tenant, entity, record, &user);
                    let access = serde_json::to_value(access).unwrap_or_default();
                    add(
                        format!(
                            "{} grant on {entity} {record}{}",
                            access.as_str().unwrap_or(""),
                            until(end)
                        ),
                        keys::provenance(&standing, "grant"),
                    )?;
                }
            }
            (Reason::Owner, Some(_)) => {
                if let (Some(entity), Some(record)) = (&entity, request.record) {
                    add(
                        format!("ownership of {entity} {record}"),
                        keys::provenance(&keys::owner(tenant, entity, record), ""),
                    )?;
                    add(
                        format!("policy of entity {entity} allowing _CREATOR"),
                        keys::provenance(&keys::entity(tenant, entity), "policy"),
                    )?;
                }
            }
            (Reason::LocalRole { role }, Some(user)) => {
                if let (Some(entity), Some(record)) = (&entity, request.record) {
                    let end = AccessFacts::standing(self, tenant, entity, record, &user)?
                        .and_then(|s| s.local_role_expiry.get(role).copied());
                    let standing = keys::standing(tenant, entity, record, &user);
                    add(
                        format!("local role {role} on {entity} {record}{}", until(end)),
                        keys::provenance(&standing, &keys::local_role(role)),
                    )?;
                    add(
                        format!("definition of role {role}"),
                        keys::provenance(&keys::role(tenant, role), ""),
                    )?;
                }
            }
            (Reason::AccountNotActive { status }, Some(user)) => {
                let status = serde_json::to_value(status).unwrap_or_default();
                add(
                    format!("account {}", status.as_str().unwrap_or("")),
                    keys::provenance(&keys::account(&user), ""),
                )?;
            }
            (Reason::RowLevelSecurity, _) => {
                if let Some(entity) = &entity {
                    add(
                        format!("row-level security of entity {entity}"),
                        keys::provenance(&keys::entity(tenant, entity), "rls"),
                    )?;
                }
            }
            _ => {}
        }
        Ok(Explanation { decision, sources })
    }

    /// The CRUD summary of an entity for a subject, record-independent (on an entity with
    /// row-level security, `read` says whether the subject reads all records; see
    /// [`Access::readable_records`] for the ones it may read).
    pub fn entity_permissions(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        now: OffsetDateTime,
    ) -> Result<Option<EntityPermissions>, AccessError> {
        if self.entity_record(tenant, entity)?.is_none() {
            return Ok(None);
        }
        let mut allowed = [false; 4];
        for (slot, action) in allowed.iter_mut().zip(Action::CRUD) {
            let permission = Permission::entity(entity, action).expect("CRUD on an entity");
            *slot = self
                .check(CheckRequest {
                    tenant,
                    subject,
                    permission: &permission,
                    record: None,
                    restriction: None,
                    now,
                })?
                .allowed;
        }
        let [read, create, update, delete] = allowed;
        Ok(Some(EntityPermissions {
            read,
            create,
            update,
            delete,
        }))
    }

    /// The records of `entity` the subject may read, in record-id order after `after`, at most
    /// `limit`. None for an unknown entity.
    pub fn readable_records(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        after: Option<&RecordId>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Option<ReadableRecords>, AccessError> {
        let Some(definition) = self.entity_record(tenant, entity)? else {
            return Ok(None);
        };
        let read = Permission::entity(entity, Action::Read).expect("read on an entity");
        let ask = |record: Option<&RecordId>| {
            self.check(CheckRequest {
                tenant,
                subject,
                permission: &read,
                record,
                restriction: None,
                now,
            })
        };
        let type_level = ask(None)?;
        let everything = matches!(type_level.reason, Reason::GlobalAccess { .. })
            || (type_level.allowed && !definition.rls);
        let nothing = ReadableRecords {
            all: everything,
            records: Vec::new(),
            next: None,
        };
        let Subject::User(user) = subject else {
            return Ok(Some(nothing));
        };
        if everything {
            return Ok(Some(nothing));
        }
        let prefix = keys::index_of(tenant, entity, &user);
        let start = match after {
            Some(after) => {
                let mut k = prefix.clone();
                k.extend_from_slice(after.as_str().as_bytes());
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut records = Vec::new();
        let mut next = None;
        for entry in self.tree.range(start..) {
            let (key, _) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some(record) = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|r| r.parse::<RecordId>().ok())
            else {
                continue;
            };
            if records.len() == limit {
                next = records.last().cloned();
                break;
            }
            if ask(Some(&record))?.allowed {
                records.push(record);
            }
        }
        Ok(Some(ReadableRecords {
            all: false,
            records,
            next,
        }))
    }

    /// The fields of an entity the subject may see (None for an unknown entity).
    pub fn visible_fields(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<String>>, AccessError> {
        access::visible_fields(self, tenant, subject, entity, now)
    }

    /// The visible fields and, of those, the searchable ones (None for an unknown entity).
    pub fn field_visibility(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        now: OffsetDateTime,
    ) -> Result<Option<access::FieldVisibility>, AccessError> {
        access::field_visibility(self, tenant, subject, entity, now)
    }

    /// Whether the tenant exists, from the cached facts: every tenant has the built-in `owner`
    /// role from its creation on, and built-in roles cannot be deleted.
    pub fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, AccessError> {
        let owner: RoleName = idstream_domain::access::role::OWNER
            .parse()
            .expect("the built-in role name is valid");
        Ok(AccessFacts::role(self, tenant, &owner)?.is_some())
    }

    /// The resources a tenant defined, by name.
    pub fn resources(&self, tenant: &TenantId) -> Result<Vec<ResourceRecord>, AccessError> {
        self.scan(&keys::resources_of(tenant))
    }

    /// The roles of a tenant, by name.
    pub fn roles(&self, tenant: &TenantId) -> Result<Vec<RoleRecord>, AccessError> {
        self.scan(&keys::roles_of(tenant))
    }

    pub fn role_record(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<Option<RoleRecord>, AccessError> {
        self.json(&keys::role(tenant, role))
    }

    /// The entities of a tenant, by name.
    pub fn entities(&self, tenant: &TenantId) -> Result<Vec<EntityRecord>, AccessError> {
        self.scan(&keys::entities_of(tenant))
    }

    pub fn entity_record(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<Option<EntityRecord>, AccessError> {
        self.json(&keys::entity(tenant, entity))
    }

    pub fn member_record(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<MemberRecord>, AccessError> {
        self.json(&keys::member(tenant, user))
    }

    /// Whether the user is a member of the tenant (holds a role or a custom permission there),
    /// from the fact cache: what the checks read anyway, so asking costs no sled read once
    /// cached.
    pub fn is_member(&self, tenant: &TenantId, user: &UserId) -> Result<bool, AccessError> {
        Ok(self
            .member(tenant, user)?
            .is_some_and(|member| !member.roles.is_empty() || !member.custom.is_empty()))
    }

    pub fn account_record(&self, user: &UserId) -> Result<Option<AccountRecord>, AccessError> {
        self.json(&keys::account(user))
    }

    /// Whether the user is a platform administrator, from the fact cache (a sled read only when
    /// the account is not cached; the projection drops it when the account changes).
    pub fn is_platform_admin(&self, user: &UserId) -> Result<bool, AccessError> {
        Ok(self
            .cached_account(user)?
            .is_some_and(|(_, platform_admin)| platform_admin))
    }

    /// The account and its platform-administrator flag, through the fact cache.
    fn cached_account(&self, user: &UserId) -> Result<Option<(Account, bool)>, AccessError> {
        let key = keys::account_key(user);
        let fact = self.cache.get_or_load(&key, || {
            let record: Option<AccountRecord> = self.json(&key)?;
            Ok::<_, AccessError>(Fact::Account(record.map(|r| {
                let account = Account {
                    status: r.status,
                    suspended_until: r.suspended_until,
                };
                (account, r.flags.platform_admin)
            })))
        })?;
        Ok(match fact {
            Fact::Account(account) => account,
            _ => None,
        })
    }

    /// A member's effective permissions in a tenant: whether a held role has global access, and
    /// the union of the held roles' permissions and the custom ones.
    pub fn effective_permissions(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<(bool, BTreeSet<Permission>), AccessError> {
        let Some(member) = self.member_record(tenant, user)? else {
            return Ok((false, BTreeSet::new()));
        };
        let mut global = false;
        let mut permissions = member.custom;
        for role in &member.roles {
            if let Some(role) = self.role_record(tenant, role)? {
                global |= role.global_access;
                permissions.extend(role.permissions);
            }
        }
        Ok((global, permissions))
    }

    /// The menu of a member: the menus of their roles merged by item id (first role in name
    /// order wins), leaving out items whose permission the member lacks.
    pub fn menu(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<MenuItem>, AccessError> {
        let Some(member) = self.member_record(tenant, user)? else {
            return Ok(Vec::new());
        };
        let mut seen = BTreeSet::new();
        let mut merged = Vec::new();
        for role in &member.roles {
            if let Some(role) = self.role_record(tenant, role)? {
                for item in role.menu {
                    if seen.insert(item.id.clone()) {
                        merged.push(item);
                    }
                }
            }
        }
        self.filter_menu(tenant, *user, merged, now)
    }

    fn filter_menu(
        &self,
        tenant: &TenantId,
        user: UserId,
        items: Vec<MenuItem>,
        now: OffsetDateTime,
    ) -> Result<Vec<MenuItem>, AccessError> {
        let mut out = Vec::new();
        for mut item in items {
            if let Some(permission) = &item.permission {
                let allowed = self
                    .check(CheckRequest {
                        tenant,
                        subject: Subject::User(user),
                        permission,
                        record: None,
                        restriction: None,
                        now,
                    })?
                    .allowed;
                if !allowed {
                    continue;
                }
            }
            item.children = self.filter_menu(tenant, user, item.children, now)?;
            out.push(item);
        }
        Ok(out)
    }
}

impl AccessFacts for Access {
    type Error = AccessError;

    fn resource_defined(
        &self,
        tenant: &TenantId,
        name: &ResourceName,
    ) -> Result<bool, AccessError> {
        Ok(self.tree.contains_key(keys::resource(tenant, name))?)
    }

    fn account(&self, user: &UserId) -> Result<Option<Account>, AccessError> {
        Ok(self.cached_account(user)?.map(|(account, _)| account))
    }

    fn member(&self, tenant: &TenantId, user: &UserId) -> Result<Option<Arc<Member>>, AccessError> {
        let key = keys::member_key(tenant, user);
        let fact = self.cache.get_or_load(&key, || {
            let record: Option<MemberRecord> = self.json(&key)?;
            Ok::<_, AccessError>(Fact::Member(record.map(|r| {
                Arc::new(Member {
                    roles: r.roles,
                    custom: r.custom.into(),
                    role_expiry: r.role_expiry.into_iter().map(|(k, v)| (k, v.0)).collect(),
                    custom_expiry: r.custom_expiry.into_iter().map(|(k, v)| (k, v.0)).collect(),
                })
            })))
        })?;
        Ok(match fact {
            Fact::Member(member) => member,
            _ => None,
        })
    }

    fn role(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<Option<Arc<RoleFacts>>, AccessError> {
        let key = keys::role_key(tenant, role);
        let fact = self.cache.get_or_load(&key, || {
            let record: Option<RoleRecord> = self.json(&key)?;
            Ok::<_, AccessError>(Fact::Role(record.map(|r| {
                Arc::new(RoleFacts {
                    permissions: r.permissions.into(),
                    global_access: r.global_access,
                })
            })))
        })?;
        Ok(match fact {
            Fact::Role(role) => role,
            _ => None,
        })
    }

    fn entity(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<Option<Arc<EntityFacts>>, AccessError> {
        let key = keys::entity_key(tenant, entity);
        let fact = self.cache.get_or_load(&key, || {
            let record: Option<EntityRecord> = self.json(&key)?;
            Ok::<_, AccessError>(Fact::Entity(record.map(|r| {
                Arc::new(EntityFacts {
                    fields: r.fields,
                    rls: r.rls,
                    policy: r.policy,
                    hidden: r.hidden,
                    unsearchable: r.unsearchable,
                })
            })))
        })?;
        Ok(match fact {
            Fact::Entity(entity) => entity,
            _ => None,
        })
    }

    fn standing(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
        user: &UserId,
    ) -> Result<Option<RecordStanding>, AccessError> {
        let key = keys::standing_key(tenant, entity, record, user);
        if let Some(known) = self.cache.index.standing(&key) {
            return Ok(known);
        }
        // An index not loaded yet, or local role names it could not decode: read the tree.
        match self.tree.get(&key)? {
            None => Ok(None),
            Some(bytes) => decode_standing(&bytes)
                .map(Some)
                .ok_or_else(|| AccessError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "not a record standing".into(),
                }),
        }
    }

    fn owner(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
    ) -> Result<Option<UserId>, AccessError> {
        let key = keys::owner_key(tenant, entity, record);
        if let Some(known) = self.cache.index.owner(&key) {
            return Ok(known);
        }
        Ok(self
            .tree
            .get(&key)?
            .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())))
    }
}
