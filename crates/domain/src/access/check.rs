//! The access decision: may this subject do this to this resource (or record), and why.
//!
//! [`check`] is a pure function over [`AccessFacts`], the few lookups a decision needs (an
//! account, a membership, roles, an entity, one user's access to one record, a record's owner).
//! The access read model implements the facts over sled; tests implement them over plain maps.
//! The rules, in the order they are applied:
//!
//! 1. The subject must be an existing, active account (invited, suspended or deactivated accounts
//!    are denied everything). Anonymous callers are only ever `_EVERYONE`.
//! 2. An `entity.<E>:…` permission needs `E` registered in the tenant, and a permission on a
//!    resource the tenant defines (`invoice_export:read`) needs it defined, or it is denied for
//!    all.
//! 3. Global roles (held tenant-wide) are checked first: a role with global access allows
//!    everything, bypassing row- and field-level security.
//! 4. Type-level permissions: the held roles' permissions, the user's custom permissions (a union),
//!    and the entity policy's `_EVERYONE`, `_AUTHENTICATED_USER` and role entries. They decide a
//!    check without a record, and a check on a record of an entity without row-level security.
//! 5. On a record: an explicit grant (read-only allows read; read-write allows read, update and
//!    delete), ownership when the policy lists `_CREATOR` for the action, then local roles held
//!    on that record (their permissions, or global access, on that record only).
//! 6. An API key's restriction, if any, must also contain the permission (never more than the
//!    owner has now: the owner's decision above is computed first).
//!
//! Temporary access: a role, custom permission, record grant or local role given with an end
//! (`expires_at`) counts strictly before that end and not from it on, whether or not its lapse
//! has been recorded in the log yet. A member whose holdings have all ended is no member (the
//! tenant sees them as anonymous).
//!
//! Members of another tenant are anonymous here: tenants are isolated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use crate::access::model::{
    Action, EntityName, EntityPolicy, FieldName, Permission, Principal, PseudoRole, RecordAccess,
    RecordId, Resource, ResourceName, SYSTEM_FIELDS,
};
use crate::ids::{RoleName, TenantId, UserId};

/// An account's lifecycle state as far as access is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Invited,
    Active,
    Suspended,
    Inactive,
    /// Erased for good: no access, ever.
    Erased,
}

/// What access needs to know about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub status: AccountStatus,
    /// End of a timed suspension.
    pub suspended_until: Option<OffsetDateTime>,
}

impl Account {
    /// The status in effect at `now` (a timed suspension lapses by itself).
    pub fn status_at(&self, now: OffsetDateTime) -> AccountStatus {
        match (self.status, self.suspended_until) {
            (AccountStatus::Suspended, Some(end)) if now >= end => AccountStatus::Active,
            (status, _) => status,
        }
    }
}

/// A user's membership of one tenant: the global roles held there and custom permissions.
/// Temporary ones stop counting at their end (`role_expiry`, `custom_expiry`), whether or not
/// their lapse has been recorded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub roles: BTreeSet<RoleName>,
    pub custom: PermissionSet,
    pub role_expiry: BTreeMap<RoleName, OffsetDateTime>,
    pub custom_expiry: BTreeMap<Permission, OffsetDateTime>,
}

impl Member {
    /// The roles that count at `now`.
    pub fn roles_at(&self, now: OffsetDateTime) -> impl Iterator<Item = &RoleName> {
        self.roles
            .iter()
            .filter(move |role| live(self.role_expiry.get(*role), now))
    }

    /// Whether `role` is held and counts at `now`.
    pub fn holds_role(&self, role: &RoleName, now: OffsetDateTime) -> bool {
        self.roles.contains(role) && live(self.role_expiry.get(role), now)
    }

    /// Whether anything the member holds still counts at `now`: a member whose temporary roles
    /// and permissions have all ended is no member any more (before their lapse is recorded).
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.roles_at(now).next().is_some()
            || self.custom.len()
                > self
                    .custom_expiry
                    .values()
                    .filter(|end| now >= **end)
                    .count()
    }

    fn holds_custom(&self, wanted: HashedPermission<'_>, now: OffsetDateTime) -> bool {
        self.custom.contains_hashed(wanted)
            && (self.custom_expiry.is_empty()
                || live(self.custom_expiry.get(wanted.permission), now))
    }
}

/// Whether something ending at `end` (None: never) still counts at `now`.
pub fn live(end: Option<&OffsetDateTime>, now: OffsetDateTime) -> bool {
    end.is_none_or(|end| now < *end)
}

/// A role as checks see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleFacts {
    pub permissions: PermissionSet,
    pub global_access: bool,
}

/// A set of permissions made for membership tests: the permissions with a hash of their text,
/// sorted by hash. A check hashes the permission it asks about once ([`HashedPermission`]) and
/// then tests each held role's set with a binary search over the hashes, comparing text only
/// where a hash matches, instead of comparing strings along a B-tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet {
    entries: Vec<(u64, Permission)>,
}

/// A permission and its hash, computed once for the tests of one check.
#[derive(Debug, Clone, Copy)]
pub struct HashedPermission<'a> {
    hash: u64,
    permission: &'a Permission,
}

impl<'a> HashedPermission<'a> {
    pub fn new(permission: &'a Permission) -> HashedPermission<'a> {
        HashedPermission {
            hash: text_hash(permission.as_str()),
            permission,
        }
    }
}

/// FNV-1a, 64 bits: deterministic and fast on short texts. A collision only costs a text
/// comparison.
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl PermissionSet {
    pub fn contains(&self, permission: &Permission) -> bool {
        self.contains_hashed(HashedPermission::new(permission))
    }

    pub fn contains_hashed(&self, wanted: HashedPermission<'_>) -> bool {
        let start = self
            .entries
            .partition_point(|(hash, _)| *hash < wanted.hash);
        self.entries[start..]
            .iter()
            .take_while(|(hash, _)| *hash == wanted.hash)
            .any(|(_, permission)| permission == wanted.permission)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The permissions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.entries.iter().map(|(_, permission)| permission)
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(permissions: I) -> PermissionSet {
        let mut entries: Vec<(u64, Permission)> = permissions
            .into_iter()
            .map(|p| (text_hash(p.as_str()), p))
            .collect();
        entries.sort_unstable();
        entries.dedup();
        entries.shrink_to_fit();
        PermissionSet { entries }
    }
}

impl From<BTreeSet<Permission>> for PermissionSet {
    fn from(permissions: BTreeSet<Permission>) -> PermissionSet {
        permissions.into_iter().collect()
    }
}

impl<const N: usize> From<[Permission; N]> for PermissionSet {
    fn from(permissions: [Permission; N]) -> PermissionSet {
        permissions.into_iter().collect()
    }
}

/// An entity as checks see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityFacts {
    pub fields: Vec<FieldName>,
    pub rls: bool,
    pub policy: EntityPolicy,
    pub hidden: std::collections::BTreeMap<RoleName, BTreeSet<FieldName>>,
    /// Fields each role sees but may not search or filter by.
    pub unsearchable: std::collections::BTreeMap<RoleName, BTreeSet<FieldName>>,
}

/// One user's standing on one record: a grant and/or local roles, each for good or until its
/// end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordStanding {
    pub grant: Option<RecordAccess>,
    pub grant_expires: Option<OffsetDateTime>,
    pub local_roles: BTreeSet<RoleName>,
    pub local_role_expiry: BTreeMap<RoleName, OffsetDateTime>,
}

impl RecordStanding {
    /// The grant, if it counts at `now`.
    pub fn grant_at(&self, now: OffsetDateTime) -> Option<RecordAccess> {
        self.grant
            .filter(|_| live(self.grant_expires.as_ref(), now))
    }

    /// The local roles that count at `now`.
    pub fn local_roles_at(&self, now: OffsetDateTime) -> impl Iterator<Item = &RoleName> {
        self.local_roles
            .iter()
            .filter(move |role| live(self.local_role_expiry.get(*role), now))
    }
}

/// The lookups a decision needs. Implementations answer from a read model (never from the log).
pub trait AccessFacts {
    type Error;
    fn account(&self, user: &UserId) -> Result<Option<Account>, Self::Error>;
    fn member(&self, tenant: &TenantId, user: &UserId) -> Result<Option<Arc<Member>>, Self::Error>;
    fn role(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<Option<Arc<RoleFacts>>, Self::Error>;
    fn entity(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<Option<Arc<EntityFacts>>, Self::Error>;
    fn standing(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
        user: &UserId,
    ) -> Result<Option<RecordStanding>, Self::Error>;
    fn owner(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
    ) -> Result<Option<UserId>, Self::Error>;
    /// Whether the tenant defines the resource `name`.
    fn resource_defined(&self, tenant: &TenantId, name: &ResourceName)
    -> Result<bool, Self::Error>;
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Nobody signed in: only `_EVERYONE` applies.
    Anonymous,
    User(UserId),
}

/// One access question.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a> {
    pub tenant: &'a TenantId,
    pub subject: Subject,
    pub permission: &'a Permission,
    pub record: Option<&'a RecordId>,
    /// An API key's restriction: the permissions the key may use at most.
    pub restriction: Option<&'a BTreeSet<Permission>>,
    pub now: OffsetDateTime,
}

/// What decided a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A held role has global access.
    GlobalAccess { role: RoleName },
    /// A held role has the permission.
    Role { role: RoleName },
    /// The user's custom permissions contain it.
    CustomPermission,
    /// The entity policy allows the action to a pseudo-role or role.
    Policy { principal: Principal },
    /// An explicit grant on the record.
    Grant { access: RecordAccess },
    /// The subject owns the record and the policy lets `_CREATOR` do the action.
    Owner,
    /// A role held on this record has the permission (or global access).
    LocalRole { role: RoleName },
    /// Denied: no such account.
    UnknownUser,
    /// Denied: the account is not active.
    AccountNotActive { status: AccountStatus },
    /// Denied: the entity is not registered in the tenant.
    UnknownEntity,
    /// Denied: the tenant defines no such resource.
    UnknownResource,
    /// Denied: the API key's restriction does not include the permission.
    KeyRestriction,
    /// Denied: row-level security is on and nothing grants this record (type-level permission
    /// alone does not open private records).
    RowLevelSecurity,
    /// Denied: nothing grants it.
    NoPermission,
}

/// A decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

impl Decision {
    fn allow(reason: Reason) -> Decision {
        Decision {
            allowed: true,
            reason,
        }
    }
    fn deny(reason: Reason) -> Decision {
        Decision {
            allowed: false,
            reason,
        }
    }
}

/// The member record of an active user of the tenant, or None for anyone the tenant sees as
/// anonymous; Err(decision) when the account denies everything.
fn active_member<F: AccessFacts>(
    facts: &F,
    tenant: &TenantId,
    subject: Subject,
    now: OffsetDateTime,
) -> Result<Result<Option<Arc<Member>>, Decision>, F::Error> {
    let Subject::User(user) = subject else {
        return Ok(Ok(None));
    };
    let Some(account) = facts.account(&user)? else {
        return Ok(Err(Decision::deny(Reason::UnknownUser)));
    };
    let status = account.status_at(now);
    if status != AccountStatus::Active {
        return Ok(Err(Decision::deny(Reason::AccountNotActive { status })));
    }
    let member = facts.member(tenant, &user)?;
    Ok(Ok(member.filter(|m| m.is_live(now))))
}

/// Decides one request. See the module documentation for the rules.
pub fn check<F: AccessFacts>(facts: &F, request: CheckRequest<'_>) -> Result<Decision, F::Error> {
    let decision = decide_for_owner(facts, &request)?;
    if decision.allowed
        && let Some(restriction) = request.restriction
        && !restriction.contains(request.permission)
    {
        return Ok(Decision::deny(Reason::KeyRestriction));
    }
    Ok(decision)
}

fn decide_for_owner<F: AccessFacts>(
    facts: &F,
    request: &CheckRequest<'_>,
) -> Result<Decision, F::Error> {
    let tenant = request.tenant;
    let permission = request.permission;
    let wanted = HashedPermission::new(permission);
    let action = permission.action();
    let member = match active_member(facts, tenant, request.subject, request.now)? {
        Ok(member) => member,
        Err(denied) => return Ok(denied),
    };
    let resource = permission.resource();
    if let Resource::Custom(name) = &resource
        && !facts.resource_defined(tenant, name)?
    {
        return Ok(Decision::deny(Reason::UnknownResource));
    }
    let entity_name = match resource {
        Resource::Entity(name) => Some(name),
        _ => None,
    };
    let entity = match &entity_name {
        Some(name) => match facts.entity(tenant, name)? {
            Some(entity) => Some(entity),
            None => return Ok(Decision::deny(Reason::UnknownEntity)),
        },
        None => None,
    };

    // Global roles: global access first, then the first role with the permission.
    let mut type_level: Option<Reason> = None;
    if let Some(member) = &member {
        for role in member.roles_at(request.now) {
            let Some(facts) = facts.role(tenant, role)? else {
                continue;
            };
            if facts.global_access {
                return Ok(Decision::allow(Reason::GlobalAccess { role: role.clone() }));
            }
            if type_level.is_none() && facts.permissions.contains_hashed(wanted) {
                type_level = Some(Reason::Role { role: role.clone() });
            }
        }
        if type_level.is_none() && member.holds_custom(wanted, request.now) {
            type_level = Some(Reason::CustomPermission);
        }
    }
    if type_level.is_none()
        && let Some(entity) = &entity
    {
        type_level = policy_reason(&entity.policy, action, member.as_deref(), request.now);
    }

    let rls = entity.as_ref().is_some_and(|e| e.rls);
    let record = match (request.record, &entity_name) {
        (Some(record), Some(name)) => Some((record, name)),
        _ => None,
    };
    if (record.is_none() || !rls)
        && let Some(reason) = type_level
    {
        return Ok(Decision::allow(reason));
    }
    let Some((record, entity_name)) = record else {
        return Ok(Decision::deny(Reason::NoPermission));
    };
    let (Subject::User(user), Some(_)) = (request.subject, &member) else {
        // Grants, ownership and local roles belong to members.
        return Ok(Decision::deny(denial(rls, &type_level)));
    };

    let standing = facts.standing(tenant, entity_name, record, &user)?;
    if let Some(access) = standing.as_ref().and_then(|s| s.grant_at(request.now))
        && access.allows(action)
    {
        return Ok(Decision::allow(Reason::Grant { access }));
    }
    let policy = &entity
        .as_ref()
        .expect("entity permissions have an entity")
        .policy;
    if policy.allows(action, &Principal::Pseudo(PseudoRole::Creator))
        && facts.owner(tenant, entity_name, record)? == Some(user)
    {
        return Ok(Decision::allow(Reason::Owner));
    }
    if let Some(standing) = &standing {
        for role in standing.local_roles_at(request.now) {
            if let Some(facts) = facts.role(tenant, role)?
                && (facts.global_access || facts.permissions.contains_hashed(wanted))
            {
                return Ok(Decision::allow(Reason::LocalRole { role: role.clone() }));
            }
        }
    }
    Ok(Decision::deny(denial(rls, &type_level)))
}

fn denial(rls: bool, type_level: &Option<Reason>) -> Reason {
    if rls && type_level.is_some() {
        Reason::RowLevelSecurity
    } else {
        Reason::NoPermission
    }
}

/// The policy entry (other than `_CREATOR`) that allows `action` to this member, if any.
fn policy_reason(
    policy: &EntityPolicy,
    action: Action,
    member: Option<&Member>,
    now: OffsetDateTime,
) -> Option<Reason> {
    let principals = policy.principals(action);
    if principals.is_empty() {
        return None;
    }
    let found = principals.iter().find(|p| match p {
        Principal::Pseudo(PseudoRole::Everyone) => true,
        Principal::Pseudo(PseudoRole::AuthenticatedUser) => member.is_some(),
        Principal::Pseudo(PseudoRole::Creator) => false,
        Principal::Role(role) => member.is_some_and(|m| m.holds_role(role, now)),
    })?;
    Some(Reason::Policy {
        principal: found.clone(),
    })
}

/// The fields of `entity` the subject may see, in the entity's order, system fields first.
/// Fields are visible by default; a field is hidden only if every global role the member holds
/// hides it (any role that shows it wins). Global access sees everything. Accounts that are not
/// active, and unknown entities, see nothing (`None` for an unknown entity).
pub fn visible_fields<F: AccessFacts>(
    facts: &F,
    tenant: &TenantId,
    subject: Subject,
    entity: &EntityName,
    now: OffsetDateTime,
) -> Result<Option<Vec<String>>, F::Error> {
    Ok(field_visibility(facts, tenant, subject, entity, now)?.map(|v| v.readable))
}

/// What a subject may do with an entity's fields: read them, and search or filter by them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldVisibility {
    /// The fields the subject may see ([`visible_fields`]).
    pub readable: Vec<String>,
    /// Of those, the ones the subject may search and filter by, in the same order.
    pub searchable: Vec<String>,
}

/// [`visible_fields`], and which of them the subject may search by: a readable field is kept
/// from search only if every global role the member holds hides it or marks it unsearchable (as
/// for hiding, any role that allows it wins; global access searches everything; system fields
/// are always searchable).
pub fn field_visibility<F: AccessFacts>(
    facts: &F,
    tenant: &TenantId,
    subject: Subject,
    entity: &EntityName,
    now: OffsetDateTime,
) -> Result<Option<FieldVisibility>, F::Error> {
    let Some(definition) = facts.entity(tenant, entity)? else {
        return Ok(None);
    };
    let member = match active_member(facts, tenant, subject, now)? {
        Ok(member) => member,
        Err(_) => return Ok(Some(FieldVisibility::default())),
    };
    // Per held role, the fields it hides and the fields it keeps from search; the member's
    // are those every role agrees on.
    let mut hidden: Option<BTreeSet<&FieldName>> = None;
    let mut unsearchable: Option<BTreeSet<&FieldName>> = None;
    if let Some(member) = &member {
        for role in member.roles_at(now) {
            let Some(role_facts) = facts.role(tenant, role)? else {
                continue;
            };
            if role_facts.global_access {
                hidden = Some(BTreeSet::new());
                unsearchable = Some(BTreeSet::new());
                break;
            }
            let by_role: BTreeSet<&FieldName> = definition
                .hidden
                .get(role)
                .map(|set| set.iter().collect())
                .unwrap_or_default();
            let mut kept: BTreeSet<&FieldName> = definition
                .unsearchable
                .get(role)
                .map(|set| set.iter().collect())
                .unwrap_or_default();
            kept.extend(by_role.iter().copied());
            hidden = Some(match hidden {
                None => by_role,
                Some(so_far) => so_far.intersection(&by_role).copied().collect(),
            });
            unsearchable = Some(match unsearchable {
                None => kept,
                Some(so_far) => so_far.intersection(&kept).copied().collect(),
            });
        }
    }
    let hidden = hidden.unwrap_or_default();
    let unsearchable = unsearchable.unwrap_or_default();
    let mut out = FieldVisibility::default();
    for field in SYSTEM_FIELDS {
        out.readable.push((*field).to_owned());
        out.searchable.push((*field).to_owned());
    }
    for field in &definition.fields {
        if hidden.contains(field) || SYSTEM_FIELDS.contains(&field.as_str()) {
            continue;
        }
        out.readable.push(field.as_str().to_owned());
        if !unsearchable.contains(field) {
            out.searchable.push(field.as_str().to_owned());
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests;
