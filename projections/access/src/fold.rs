//! The fold: how each event changes the access read model.

use std::sync::Arc;

use idstream_domain::access::entity::{self, Entity, EntityEvent};
use idstream_domain::access::role::{self, BUILT_IN};
use idstream_domain::access::{
    AccountStatus, EntityName, RecordAccess, RecordId, RecordStanding, ResourceName,
};
use idstream_domain::events::{
    EntityRegistered, LocalRoleAssigned, LocalRoleLapsed, LocalRoleRevoked, PermissionsGranted,
    PermissionsLapsed, PermissionsRevoked, RecordGrantLapsed, RecordGranted, RecordOwnerSet,
    RecordRevoked, ResourceDefined, RoleAssigned, RoleLapsed, RoleRevoked, UserSuspended,
};
use idstream_domain::{DomainEvent, RoleName, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::{ApplyError, Projection, Staged};
use time::OffsetDateTime;

use crate::cache::FactCache;
use crate::{
    AccountRecord, EntityRecord, MemberRecord, NAME, ResourceRecord, RoleRecord, Source, Timestamp,
    keys,
};

/// The access [`Projection`]. It shares its [`FactCache`] with the [`crate::Access`] queries so
/// that every committed change drops the cached facts it touched.
pub struct AccessProjection {
    cache: Arc<FactCache>,
}

impl AccessProjection {
    pub fn new(cache: Arc<FactCache>) -> AccessProjection {
        AccessProjection { cache }
    }

    /// The cache and record index this instance keeps (the one [`Access`](crate::Access) over
    /// its tree must read).
    pub fn cache(&self) -> Arc<FactCache> {
        self.cache.clone()
    }
}

impl Projection for AccessProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        3
    }

    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
        let domain = match DomainEvent::decode(&event.envelope) {
            Ok(domain) => domain,
            Err(error) => {
                state.skip(error.to_string());
                return Ok(());
            }
        };
        let mut fold = Fold { state, event };
        match domain {
            DomainEvent::TenantCreated(_) => fold.tenant_created(),
            DomainEvent::ResourceDefined(e) => fold.resource_defined(e),
            DomainEvent::ResourceRemoved(e) => fold.resource_removed(&e.name),
            DomainEvent::UserRegistered(_) => fold.account(|_| AccountStatus::Active, None),
            DomainEvent::UserInvited(_) => fold.account(|_| AccountStatus::Invited, None),
            DomainEvent::UserSuspended(UserSuspended { until, .. }) => {
                fold.account(|_| AccountStatus::Suspended, until)
            }
            DomainEvent::UserReinstated(_) | DomainEvent::UserReactivated(_) => {
                fold.account(|_| AccountStatus::Active, None)
            }
            DomainEvent::UserActivated(_) => fold.account(
                |status| match status {
                    AccountStatus::Invited => AccountStatus::Active,
                    other => other,
                },
                None,
            ),
            DomainEvent::UserDeactivated(_) => fold.account(|_| AccountStatus::Inactive, None),
            DomainEvent::UserErased(_) => fold.account(|_| AccountStatus::Erased, None),
            DomainEvent::UserFlagsChanged(e) => fold.flags(e.flags),
            DomainEvent::RoleAssigned(RoleAssigned {
                user,
                role,
                expires_at,
            }) => fold.member(
                user,
                |m| {
                    let changed = match expires_at {
                        Some(end) => {
                            m.role_expiry.insert(role.clone(), Timestamp(end))
                                != Some(Timestamp(end))
                        }
                        None => m.role_expiry.remove(&role).is_some(),
                    };
                    m.roles.insert(role.clone()) | changed
                },
                &keys::held_role(&role),
                true,
            ),
            DomainEvent::RoleRevoked(RoleRevoked { user, role })
            | DomainEvent::RoleLapsed(RoleLapsed { user, role, .. }) => fold.member(
                user,
                |m| {
                    m.role_expiry.remove(&role);
                    m.roles.remove(&role)
                },
                &keys::held_role(&role),
                false,
            ),
            DomainEvent::PermissionsGranted(PermissionsGranted {
                user,
                permissions,
                expires_at,
            }) => {
                for permission in permissions {
                    let suffix = keys::held_permission(&permission);
                    let change = |m: &mut MemberRecord| {
                        let changed = match expires_at {
                            Some(end) => {
                                m.custom_expiry.insert(permission.clone(), Timestamp(end))
                                    != Some(Timestamp(end))
                            }
                            None => m.custom_expiry.remove(&permission).is_some(),
                        };
                        m.custom.insert(permission) | changed
                    };
                    fold.member(user, change, &suffix, true)?;
                }
                Ok(())
            }
            DomainEvent::PermissionsRevoked(PermissionsRevoked { user, permissions })
            | DomainEvent::PermissionsLapsed(PermissionsLapsed {
                user, permissions, ..
            }) => {
                for permission in permissions {
                    let suffix = keys::held_permission(&permission);
                    let change = |m: &mut MemberRecord| {
                        m.custom_expiry.remove(&permission);
                        m.custom.remove(&permission)
                    };
                    fold.member(user, change, &suffix, false)?;
                }
                Ok(())
            }
            DomainEvent::MemberRemoved(e) => fold.member_removed(e.user),
            DomainEvent::RoleDefined(e) => fold.role(|_, _| {
                Some(role::evolve(
                    role::Role::default(),
                    &role::RoleEvent::Defined(e),
                ))
            }),
            DomainEvent::RoleUpdated(e) => {
                fold.role(|current, _| Some(role::evolve(current, &role::RoleEvent::Updated(e))))
            }
            DomainEvent::RoleMenuSet(e) => {
                fold.role(|current, _| Some(role::evolve(current, &role::RoleEvent::MenuSet(e))))
            }
            DomainEvent::RoleDeleted(_) => fold.role(|_, _| None),
            DomainEvent::RoleRelabelled(e) => {
                fold.role(|current, _| Some(role::evolve(current, &role::RoleEvent::Relabelled(e))))
            }
            DomainEvent::EntityRegistered(e) => fold.entity(EntityEvent::Registered(e)),
            DomainEvent::EntityFieldsChanged(e) => fold.entity(EntityEvent::FieldsChanged(e)),
            DomainEvent::EntityRlsChanged(e) => fold.entity(EntityEvent::RlsChanged(e)),
            DomainEvent::EntityPolicyChanged(e) => fold.entity(EntityEvent::PolicyChanged(e)),
            DomainEvent::FieldRulesChanged(e) => fold.entity(EntityEvent::FieldRulesChanged(e)),
            DomainEvent::RecordOwnerSet(e) => fold.owner_set(e),
            DomainEvent::RecordGranted(RecordGranted {
                entity,
                record,
                user,
                access,
                expires_at,
            }) => fold.standing(&entity, &record, user, "grant", true, |s| {
                s.grant = Some(access);
                s.grant_expires = expires_at;
            }),
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
            }) => fold.standing(&entity, &record, user, "grant", false, |s| {
                s.grant = None;
                s.grant_expires = None;
            }),
            DomainEvent::LocalRoleAssigned(LocalRoleAssigned {
                entity,
                record,
                user,
                role,
                expires_at,
            }) => fold.standing(
                &entity,
                &record,
                user,
                &keys::local_role(&role),
                true,
                |s| {
                    s.local_roles.insert(role.clone());
                    match expires_at {
                        Some(end) => s.local_role_expiry.insert(role.clone(), end),
                        None => s.local_role_expiry.remove(&role),
                    };
                },
            ),
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
            }) => fold.standing(
                &entity,
                &record,
                user,
                &keys::local_role(&role),
                false,
                |s| {
                    s.local_roles.remove(&role);
                    s.local_role_expiry.remove(&role);
                },
            ),
            DomainEvent::TenantRenamed(_)
            | DomainEvent::TenantSettingsChanged(_)
            | DomainEvent::EmailClaimed(_)
            | DomainEvent::EmailVerified(_)
            | DomainEvent::UserProfileChanged(_)
            | DomainEvent::UserAttributesChanged(_)
            | DomainEvent::UserProvisioningIdsChanged(_)
            | DomainEvent::UserAttributeDefined(_)
            | DomainEvent::UserAttributeRemoved(_)
            | DomainEvent::EmailReleased(_)
            | DomainEvent::EmailChangeRequested(_)
            | DomainEvent::EmailChanged(_)
            | DomainEvent::PasswordSet(_)
            | DomainEvent::SignInFailed(_)
            | DomainEvent::AccountLocked(_)
            | DomainEvent::SignInFailuresCleared(_)
            | DomainEvent::AccountUnlocked(_)
            | DomainEvent::SecretTokenIssued(_)
            | DomainEvent::SecretTokenRedeemed(_)
            | DomainEvent::SecretTokenMissed(_)
            | DomainEvent::TotpEnrolmentStarted(_)
            | DomainEvent::TotpEnabled(_)
            | DomainEvent::TotpCodeUsed(_)
            | DomainEvent::TotpDisabled(_)
            | DomainEvent::PasskeyRegistered(_)
            | DomainEvent::PasskeyUsed(_)
            | DomainEvent::PasskeyRemoved(_)
            | DomainEvent::PasskeyCounterRegressed(_)
            | DomainEvent::RecoveryCodesGenerated(_)
            | DomainEvent::RecoveryCodeUsed(_)
            | DomainEvent::SessionStarted(_)
            | DomainEvent::SessionRefreshed(_)
            | DomainEvent::SessionTenantSwitched(_)
            | DomainEvent::SessionRevoked(_)
            | DomainEvent::InvitationSent(_)
            | DomainEvent::InvitationResent(_)
            | DomainEvent::InvitationAccepted(_)
            | DomainEvent::InvitationRevoked(_)
            | DomainEvent::ApiKeyIssued(_)
            | DomainEvent::ApiKeyRevoked(_)
            | DomainEvent::ApiKeyUsed(_)
            | DomainEvent::ChainCheckpointed(_)
            | DomainEvent::AdminRemovalReserved(_)
            | DomainEvent::AdminRemovalSettled(_)
            | DomainEvent::AuthorizationCodeIssued(_)
            | DomainEvent::ClientRegistered(_)
            | DomainEvent::ClientUpdated(_)
            | DomainEvent::ClientSecretRotated(_)
            | DomainEvent::ClientRemoved(_)
            | DomainEvent::ClientCredentialsUsed(_)
            | DomainEvent::ConsentGranted(_)
            | DomainEvent::ConsentRevoked(_)
            | DomainEvent::IdentityProviderConfigured(_)
            | DomainEvent::IdentityProviderRemoved(_)
            | DomainEvent::IdentityLinked(_)
            | DomainEvent::IdentityUnlinked(_) => Ok(()),
        }
    }

    fn committed(&self, writes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {
        for (key, value) in writes {
            self.cache.invalidate(key);
            self.cache.index.apply(key, value);
        }
    }

    fn beside(&self) -> Arc<dyn Projection> {
        Arc::new(AccessProjection::new(Arc::default()))
    }

    fn cleared(&self) {
        self.cache.clear();
        self.cache.index.clear();
    }

    fn opened(&self, tree: &sled::Tree) {
        self.cache.index.load(tree);
    }
}

/// A standing's grant byte with this bit set is followed by the grant's end (8 bytes).
pub(crate) const GRANT_EXPIRES: u8 = 0x40;
/// Separates a local role from its end in a standing's value.
pub(crate) const LOCAL_ROLE_END: u8 = b'@';

fn encode_time(at: OffsetDateTime) -> [u8; 8] {
    // Ends are at most ten years ahead (domain rule), far inside i64 nanoseconds.
    (at.unix_timestamp_nanos() as i64).to_be_bytes()
}

fn decode_time(nanos: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
}

/// Encodes a standing compactly: one byte for the grant (0 none, 1 read-only, 2 read-write; with
/// [`GRANT_EXPIRES`], the grant's end follows as big-endian Unix nanoseconds), then the local
/// roles separated by `\n`, each a temporary one followed by `@` and its end in Unix nanoseconds.
pub(crate) fn encode_standing(standing: &RecordStanding) -> Vec<u8> {
    let code = match standing.grant {
        None => 0,
        Some(RecordAccess::ReadOnly) => 1,
        Some(RecordAccess::ReadWrite) => 2,
    };
    let mut out = Vec::with_capacity(16);
    match standing.grant_expires.filter(|_| standing.grant.is_some()) {
        Some(end) => {
            out.push(code | GRANT_EXPIRES);
            out.extend_from_slice(&encode_time(end));
        }
        None => out.push(code),
    }
    for (i, role) in standing.local_roles.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(role.as_str().as_bytes());
        if let Some(end) = standing.local_role_expiry.get(role) {
            out.push(LOCAL_ROLE_END);
            out.extend_from_slice((end.unix_timestamp_nanos() as i64).to_string().as_bytes());
        }
    }
    out
}

pub(crate) fn decode_standing(bytes: &[u8]) -> Option<RecordStanding> {
    let (&code, mut rest) = bytes.split_first()?;
    let grant = match code & !GRANT_EXPIRES {
        0 => None,
        1 => Some(RecordAccess::ReadOnly),
        2 => Some(RecordAccess::ReadWrite),
        _ => return None,
    };
    let mut grant_expires = None;
    if code & GRANT_EXPIRES != 0 {
        let (end, tail) = rest.split_first_chunk::<8>()?;
        grant_expires = Some(decode_time(i64::from_be_bytes(*end))?);
        rest = tail;
    }
    let mut local_roles = std::collections::BTreeSet::new();
    let mut local_role_expiry = std::collections::BTreeMap::new();
    if !rest.is_empty() {
        for part in rest.split(|b| *b == b'\n') {
            let text = std::str::from_utf8(part).ok()?;
            let (name, end) = match text.split_once(LOCAL_ROLE_END as char) {
                Some((name, end)) => (name, Some(decode_time(end.parse().ok()?)?)),
                None => (text, None),
            };
            let role: RoleName = name.parse().ok()?;
            if let Some(end) = end {
                local_role_expiry.insert(role.clone(), end);
            }
            local_roles.insert(role);
        }
    }
    Some(RecordStanding {
        grant,
        grant_expires,
        local_roles,
        local_role_expiry,
    })
}

/// The due keys of a membership's temporary roles and permissions.
fn member_due(key: &[u8], record: &MemberRecord) -> Vec<Vec<u8>> {
    let roles = record
        .role_expiry
        .iter()
        .map(|(role, end)| keys::due(end.0, key, &keys::held_role(role)));
    let permissions = record
        .custom_expiry
        .iter()
        .map(|(permission, end)| keys::due(end.0, key, &keys::held_permission(permission)));
    roles.chain(permissions).collect()
}

/// The due keys of a standing's temporary grant and local roles.
fn standing_due(key: &[u8], standing: &RecordStanding) -> Vec<Vec<u8>> {
    let grant = standing
        .grant_expires
        .filter(|_| standing.grant.is_some())
        .map(|end| keys::due(end, key, "grant"));
    let local = standing
        .local_role_expiry
        .iter()
        .map(|(role, end)| keys::due(*end, key, &keys::local_role(role)));
    grant.into_iter().chain(local).collect()
}

struct Fold<'s, 'a, 'e> {
    state: &'s mut Staged<'a>,
    event: &'e RecordedEvent,
}

impl Fold<'_, '_, '_> {
    fn source(&self) -> Source {
        let e = &self.event.envelope;
        Source {
            position: self.event.position,
            event_type: e.event_type.clone(),
            actor: e.actor.clone(),
            occurred_at: e.occurred_at,
        }
    }

    fn remember(&mut self, fact: &[u8], suffix: &str) -> Result<(), ApplyError> {
        let source = self.source();
        self.state.put_json(keys::provenance(fact, suffix), &source)
    }

    fn forget(&mut self, fact: &[u8], suffix: &str) {
        self.state.remove(keys::provenance(fact, suffix));
    }

    /// Moves the due keys of one fact from `before` to `after`.
    fn due(&mut self, before: Vec<Vec<u8>>, after: Vec<Vec<u8>>) {
        for key in &before {
            if !after.contains(key) {
                self.state.remove(key.clone());
            }
        }
        for key in after {
            if !before.contains(&key) {
                self.state.insert(key, Vec::new());
            }
        }
    }

    fn skip(&mut self, why: &str) -> Result<(), ApplyError> {
        let e = &self.event.envelope;
        self.state.skip(format!(
            "{} of {:?} {}: {why}",
            e.event_type, e.aggregate.kind, e.aggregate.id
        ));
        Ok(())
    }

    fn tenant(&mut self) -> Option<TenantId> {
        self.event.envelope.tenant.clone()
    }

    fn tenant_created(&mut self) -> Result<(), ApplyError> {
        let Ok(tenant) = self.event.envelope.aggregate.id.parse::<TenantId>() else {
            return self.skip("invalid tenant id");
        };
        for name in BUILT_IN {
            let name: RoleName = name.parse().expect("built-in role names are valid");
            let key = keys::role(&tenant, &name);
            if self.state.get(&key)?.is_some() {
                continue;
            }
            let definition = role::builtin(name.as_str()).expect("built in");
            let record = RoleRecord {
                name,
                description: definition.description,
                permissions: definition.permissions,
                global_access: definition.global_access,
                built_in: true,
                menu: Vec::new(),
                label: None,
            };
            self.state.put_json(key.clone(), &record)?;
            self.remember(&key, "")?;
        }
        Ok(())
    }

    fn resource_defined(&mut self, e: ResourceDefined) -> Result<(), ApplyError> {
        let Ok(tenant) = self.event.envelope.aggregate.id.parse::<TenantId>() else {
            return self.skip("invalid tenant id");
        };
        let key = keys::resource(&tenant, &e.name);
        let record = ResourceRecord {
            name: e.name,
            description: e.description,
        };
        self.state.put_json(key.clone(), &record)?;
        self.remember(&key, "")
    }

    fn resource_removed(&mut self, name: &ResourceName) -> Result<(), ApplyError> {
        let Ok(tenant) = self.event.envelope.aggregate.id.parse::<TenantId>() else {
            return self.skip("invalid tenant id");
        };
        let key = keys::resource(&tenant, name);
        self.state.remove(key.clone());
        self.forget(&key, "");
        Ok(())
    }

    fn account(
        &mut self,
        status: impl FnOnce(AccountStatus) -> AccountStatus,
        until: Option<time::OffsetDateTime>,
    ) -> Result<(), ApplyError> {
        let Ok(user) = self.event.envelope.aggregate.id.parse::<UserId>() else {
            return self.skip("invalid user id");
        };
        let key = keys::account(&user);
        let current = self.state.get_json::<AccountRecord>(&key)?;
        let creating = matches!(
            self.event.envelope.event_type.as_str(),
            "UserRegistered" | "UserInvited"
        );
        let record = match current {
            Some(current) => {
                let activated =
                    current.activated || self.event.envelope.event_type == "UserActivated";
                let status = match status(current.status) {
                    // Lifting a suspension or deactivation of someone who never accepted their
                    // invitation returns them to invited.
                    AccountStatus::Active if !activated => AccountStatus::Invited,
                    other => other,
                };
                AccountRecord {
                    status,
                    suspended_until: until,
                    flags: current.flags,
                    activated,
                }
            }
            None if creating => AccountRecord {
                status: status(AccountStatus::Active),
                suspended_until: until,
                flags: Default::default(),
                activated: self.event.envelope.event_type == "UserRegistered",
            },
            None => return self.skip("the user was never created"),
        };
        self.state.put_json(key.clone(), &record)?;
        self.remember(&key, "")
    }

    fn flags(&mut self, flags: idstream_domain::user::UserFlags) -> Result<(), ApplyError> {
        let Ok(user) = self.event.envelope.aggregate.id.parse::<UserId>() else {
            return self.skip("invalid user id");
        };
        let key = keys::account(&user);
        let Some(mut record) = self.state.get_json::<AccountRecord>(&key)? else {
            return self.skip("the user was never created");
        };
        record.flags = flags;
        self.state.put_json(key.clone(), &record)?;
        self.remember(&key, "flags")
    }

    /// Changes a membership; `change` reports whether anything changed. A membership left
    /// without roles and custom permissions is removed.
    fn member(
        &mut self,
        user: UserId,
        change: impl FnOnce(&mut MemberRecord) -> bool,
        suffix: &str,
        adds: bool,
    ) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let key = keys::member(&tenant, &user);
        let mut record = self
            .state
            .get_json::<MemberRecord>(&key)?
            .unwrap_or_default();
        let before = member_due(&key, &record);
        if !change(&mut record) {
            return Ok(());
        }
        self.due(before, member_due(&key, &record));
        if record.roles.is_empty() && record.custom.is_empty() {
            self.state.remove(key.clone());
        } else {
            self.state.put_json(key.clone(), &record)?;
        }
        if adds {
            self.remember(&key, suffix)
        } else {
            self.forget(&key, suffix);
            Ok(())
        }
    }

    fn member_removed(&mut self, user: UserId) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let key = keys::member(&tenant, &user);
        if let Some(record) = self.state.get_json::<MemberRecord>(&key)? {
            self.due(member_due(&key, &record), Vec::new());
        }
        self.state.remove(key.clone());
        let mut prefix = keys::provenance(&key, "");
        prefix.push(b'/');
        for (k, _) in self.state.scan_prefix(&prefix)? {
            self.state.remove(k);
        }
        Ok(())
    }

    /// Sets (or with `None`, removes) the role named by the aggregate id.
    fn role(
        &mut self,
        change: impl FnOnce(role::Role, &RoleName) -> Option<role::Role>,
    ) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let Ok(name) = self.event.envelope.aggregate.id.parse::<RoleName>() else {
            return self.skip("invalid role name");
        };
        let key = keys::role(&tenant, &name);
        let stored = self.state.get_json::<RoleRecord>(&key)?;
        let built_in = role::builtin(name.as_str()).is_some();
        let current = role::Role {
            definition: stored.as_ref().map(|r| role::RoleDefinition {
                description: r.description.clone(),
                permissions: r.permissions.clone(),
                global_access: r.global_access,
            }),
            label: stored.as_ref().and_then(|r| r.label.clone()),
            menu: stored.map(|r| r.menu).unwrap_or_default(),
            deleted: false,
        };
        match change(current, &name).and_then(|next| {
            let definition = next.current(&name)?;
            Some((definition, next.menu, next.label))
        }) {
            Some((definition, menu, label)) => {
                let record = RoleRecord {
                    name,
                    description: definition.description,
                    permissions: definition.permissions,
                    global_access: definition.global_access,
                    built_in,
                    menu,
                    label,
                };
                self.state.put_json(key.clone(), &record)?;
                self.remember(&key, "")
            }
            None => {
                self.state.remove(key.clone());
                self.forget(&key, "");
                Ok(())
            }
        }
    }

    fn entity(&mut self, event: EntityEvent) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let Ok(name) = self.event.envelope.aggregate.id.parse::<EntityName>() else {
            return self.skip("invalid entity name");
        };
        let key = keys::entity(&tenant, &name);
        let current = match self.state.get_json::<EntityRecord>(&key)? {
            Some(r) => Entity {
                registered: true,
                fields: r.fields,
                rls: r.rls,
                policy: r.policy,
                hidden: r.hidden,
                unsearchable: r.unsearchable,
            },
            None if matches!(event, EntityEvent::Registered(EntityRegistered { .. })) => {
                Entity::default()
            }
            None => return self.skip("the entity was never registered"),
        };
        let suffix = match &event {
            EntityEvent::FieldRulesChanged(e) => format!("rules/{}", e.role),
            EntityEvent::RlsChanged(_) => "rls".to_owned(),
            EntityEvent::FieldsChanged(_) => "fields".to_owned(),
            EntityEvent::PolicyChanged(_) | EntityEvent::Registered(_) => "policy".to_owned(),
        };
        let registering = matches!(event, EntityEvent::Registered(_));
        let next = entity::evolve(current, &event);
        let record = EntityRecord {
            name,
            fields: next.fields,
            rls: next.rls,
            policy: next.policy,
            hidden: next.hidden,
            unsearchable: next.unsearchable,
        };
        self.state.put_json(key.clone(), &record)?;
        if registering {
            for suffix in ["rls", "fields"] {
                self.remember(&key, suffix)?;
            }
        }
        self.remember(&key, &suffix)
    }

    fn owner_set(&mut self, e: RecordOwnerSet) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let key = keys::owner(&tenant, &e.entity, &e.record);
        let previous = self
            .state
            .get(&key)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<UserId>().ok());
        self.state.insert(key.clone(), e.owner.to_string());
        self.remember(&key, "")?;
        self.state.insert(
            keys::index(&tenant, &e.entity, &e.owner, &e.record),
            Vec::new(),
        );
        if let Some(previous) = previous
            && previous != e.owner
            && self
                .state
                .get(keys::standing(&tenant, &e.entity, &e.record, &previous))?
                .is_none()
        {
            self.state
                .remove(keys::index(&tenant, &e.entity, &previous, &e.record));
        }
        Ok(())
    }

    fn standing(
        &mut self,
        entity: &EntityName,
        record: &RecordId,
        user: UserId,
        suffix: &str,
        adds: bool,
        change: impl FnOnce(&mut RecordStanding),
    ) -> Result<(), ApplyError> {
        let Some(tenant) = self.tenant() else {
            return self.skip("no tenant");
        };
        let key = keys::standing(&tenant, entity, record, &user);
        let mut standing = match self.state.get(&key)? {
            Some(bytes) => decode_standing(&bytes).ok_or_else(|| ApplyError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "not a record standing".into(),
            })?,
            None => RecordStanding::default(),
        };
        let before = standing_due(&key, &standing);
        change(&mut standing);
        self.due(before, standing_due(&key, &standing));
        let index = keys::index(&tenant, entity, &user, record);
        if standing.grant.is_none() && standing.local_roles.is_empty() {
            self.state.remove(key.clone());
            let owns = self
                .state
                .get(keys::owner(&tenant, entity, record))?
                .is_some_and(|o| o == user.to_string().as_bytes());
            if !owns {
                self.state.remove(index);
            }
        } else {
            self.state.insert(key.clone(), encode_standing(&standing));
            self.state.insert(index, Vec::new());
        }
        if adds {
            self.remember(&key, suffix)
        } else {
            self.forget(&key, suffix);
            Ok(())
        }
    }
}
