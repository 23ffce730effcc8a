//! The fold: how each event changes the directory.

use idstream_domain::events::{
    MemberRemoved, PermissionsGranted, PermissionsLapsed, PermissionsRevoked, RoleAssigned,
    TenantCreated, TenantRenamed, TenantSettingsChanged, UserFlagsChanged, UserInvited,
    UserRegistered, UserSuspended,
};
use idstream_domain::{DomainEvent, RoleName, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::personal::{seal_json, seal_option, seal_text};
use idstream_projection_runtime::{ApplyError, PersonalSeal, Projection, Staged};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::keys::{self, normalize_email};
use crate::search::PeopleIndex;
use crate::{IdempotencyRecord, MembershipView, NAME, TenantView, UserStatus, UserView};

/// The directory's [`Projection`]. Bump [`Projection::version`] when the layout or the fold changes.
pub struct DirectoryProjection {
    /// The search index kept beside the tree, if this instance serves queries.
    people: Option<Arc<PeopleIndex>>,
    /// Seals the personal fields of user views with their person's key.
    seal: Arc<dyn PersonalSeal>,
}

impl DirectoryProjection {
    /// The projection of a serving read model, keeping `people` (the search index that the
    /// [`Directory`](crate::Directory) over the same tree reads) up to date. Personal fields
    /// are stored sealed by `seal` (the one the `Directory` opens them with).
    pub fn new(people: Arc<PeopleIndex>, seal: Arc<dyn PersonalSeal>) -> DirectoryProjection {
        DirectoryProjection {
            people: Some(people),
            seal,
        }
    }

    /// The search index this instance keeps (the one the [`Directory`](crate::Directory) over
    /// its tree must read); `None` for [`DirectoryProjection::without_search`].
    pub fn people(&self) -> Option<Arc<PeopleIndex>> {
        self.people.clone()
    }

    /// The projection alone, for rebuilds that serve no search (offline replays).
    pub fn without_search(seal: Arc<dyn PersonalSeal>) -> DirectoryProjection {
        DirectoryProjection { people: None, seal }
    }
}

impl Projection for DirectoryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 9: personal fields sealed with their person's key; the email index by blind index.
        // 10: tenant settings with `phishing_resistant_admins`.
        10
    }

    fn committed(&self, writes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) {
        if let Some(people) = &self.people {
            people.apply(writes, self.seal.as_ref());
        }
    }

    fn beside(&self) -> Arc<dyn Projection> {
        Arc::new(DirectoryProjection {
            people: self.people.as_ref().map(|_| Arc::default()),
            seal: self.seal.clone(),
        })
    }

    fn cleared(&self) {
        if let Some(people) = &self.people {
            people.clear();
        }
    }

    fn opened(&self, tree: &sled::Tree) {
        if let Some(people) = &self.people {
            people.load(tree, self.seal.as_ref());
        }
    }

    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
        if let Some(msg_id) = &event.msg_id {
            record_idempotency(state, event, msg_id)?;
        }
        let domain = match DomainEvent::decode(&event.envelope) {
            Ok(domain) => domain,
            Err(error) => {
                state.skip(error.to_string());
                return Ok(());
            }
        };
        let seal = self.seal.as_ref();
        match domain {
            DomainEvent::TenantCreated(e) => tenant_created(state, event, e),
            DomainEvent::TenantRenamed(e) => tenant_renamed(state, event, e),
            DomainEvent::UserRegistered(UserRegistered {
                email,
                first_name,
                last_name,
                tenant,
            }) => user_created(
                state,
                seal,
                event,
                UserStatus::Active,
                Profile {
                    email,
                    first_name,
                    last_name,
                    tenant,
                },
            ),
            DomainEvent::UserInvited(UserInvited {
                email,
                first_name,
                last_name,
                tenant,
            }) => user_created(
                state,
                seal,
                event,
                UserStatus::Invited,
                Profile {
                    email,
                    first_name,
                    last_name,
                    tenant,
                },
            ),
            DomainEvent::UserSuspended(e) => user_suspended(state, event, e),
            DomainEvent::UserReinstated(_) => user_reinstated(state, event),
            DomainEvent::RoleAssigned(e) => role_assigned(state, event, e),
            DomainEvent::RoleRevoked(e) => role_revoked(state, event, e.user, &e.role),
            // The directory lists a temporary role until its lapse is recorded (checks stop
            // honouring it at its end, see the access read model).
            DomainEvent::RoleLapsed(e) => role_revoked(state, event, e.user, &e.role),
            DomainEvent::TenantSettingsChanged(e) => tenant_settings_changed(state, event, e),
            DomainEvent::UserDeactivated(_) => update_user(state, event, |view| UserView {
                status: UserStatus::Inactive,
                suspended_until: None,
                suspension_reason: None,
                ..view
            }),
            DomainEvent::UserErased(_) => user_erased(state, event),
            DomainEvent::UserReactivated(_) => update_user(state, event, |view| UserView {
                status: back_from_leave(&view),
                ..view
            }),
            DomainEvent::UserActivated(_) => update_user(state, event, |view| UserView {
                status: match view.status {
                    UserStatus::Invited => UserStatus::Active,
                    other => other,
                },
                activated: true,
                email_verified: true,
                ..view
            }),
            DomainEvent::EmailVerified(_) => update_user(state, event, |view| UserView {
                email_verified: true,
                ..view
            }),
            DomainEvent::UserProfileChanged(e) => update_user_sealed(state, event, |view| {
                let user = view.id.to_string();
                Ok(UserView {
                    first_name: seal_text(seal, &user, "first_name", &e.first_name)?,
                    last_name: seal_text(seal, &user, "last_name", &e.last_name)?,
                    image_url: seal_option(seal, &user, "image_url", e.image_url.as_deref())?,
                    notifications: e.notifications,
                    phone: seal_option(seal, &user, "phone", e.phone.as_deref())?,
                    language: e.language,
                    ..view
                })
            }),
            DomainEvent::UserAttributesChanged(e) => {
                update_user_sealed(state, event, |mut view| {
                    if e.values.is_empty() {
                        view.attributes.remove(&e.tenant);
                    } else {
                        let user = view.id.to_string();
                        let mut values = std::collections::BTreeMap::new();
                        for (name, value) in e.values {
                            let field = crate::attribute_field(&e.tenant, &name);
                            values.insert(name, seal_json(seal, &user, &field, &value)?);
                        }
                        view.attributes.insert(e.tenant, values);
                    }
                    Ok(view)
                })
            }
            DomainEvent::UserProvisioningIdsChanged(e) => {
                update_user_sealed(state, event, |mut view| {
                    let user = view.id.to_string();
                    let fields = [
                        (
                            &mut view.external_ids,
                            e.external_id,
                            crate::external_id_field(&e.tenant),
                        ),
                        (
                            &mut view.user_names,
                            e.user_name,
                            crate::user_name_field(&e.tenant),
                        ),
                    ];
                    for (map, value, field) in fields {
                        match value {
                            Some(value) => {
                                map.insert(
                                    e.tenant.clone(),
                                    seal_text(seal, &user, &field, &value)?,
                                );
                            }
                            None => {
                                map.remove(&e.tenant);
                            }
                        }
                    }
                    Ok(view)
                })
            }
            DomainEvent::UserAttributeDefined(e) => update_tenant(state, event, |mut view| {
                view.attributes.insert(e.name, e.definition);
                view
            }),
            DomainEvent::UserAttributeRemoved(e) => update_tenant(state, event, |mut view| {
                view.attributes.remove(&e.name);
                view
            }),
            // What the user directory shows of sign-in: the last one, and the second factor.
            DomainEvent::SessionStarted(e) => note_on_user(state, event, e.user, |view| {
                view.last_sign_in = Some(view.last_sign_in.map_or(e.at, |last| last.max(e.at)));
            }),
            DomainEvent::TotpEnabled(_) => match user_id(state, event) {
                Some(user) => note_on_user(state, event, user, |view| view.two_factor = true),
                None => Ok(()),
            },
            DomainEvent::TotpDisabled(_) => match user_id(state, event) {
                Some(user) => note_on_user(state, event, user, |view| view.two_factor = false),
                None => Ok(()),
            },
            DomainEvent::UserFlagsChanged(UserFlagsChanged { flags }) => {
                update_user(state, event, |view| UserView { flags, ..view })
            }
            DomainEvent::PermissionsGranted(PermissionsGranted {
                user, permissions, ..
            }) => change_membership(state, event, user, |view| {
                view.custom_permissions.extend(permissions)
            }),
            DomainEvent::PermissionsRevoked(PermissionsRevoked { user, permissions })
            | DomainEvent::PermissionsLapsed(PermissionsLapsed {
                user, permissions, ..
            }) => change_membership(state, event, user, |view| {
                view.custom_permissions.retain(|p| !permissions.contains(p))
            }),
            DomainEvent::MemberRemoved(MemberRemoved { user }) => {
                change_membership(state, event, user, |view| {
                    view.roles.clear();
                    view.custom_permissions.clear();
                })
            }
            // Claims only guard uniqueness on the write side; the email index comes from users.
            DomainEvent::EmailClaimed(_) | DomainEvent::EmailReleased(_) => Ok(()),
            // The address changes only once confirmed.
            DomainEvent::EmailChangeRequested(_) => Ok(()),
            DomainEvent::EmailChanged(e) => email_changed(state, seal, event, &e.email),
            // Roles, entities and records are the access read model's business.
            DomainEvent::ResourceDefined(_)
            | DomainEvent::ResourceRemoved(_)
            | DomainEvent::RoleDefined(_)
            | DomainEvent::RoleUpdated(_)
            | DomainEvent::RoleMenuSet(_)
            | DomainEvent::RoleDeleted(_)
            | DomainEvent::RoleRelabelled(_)
            | DomainEvent::EntityRegistered(_)
            | DomainEvent::EntityFieldsChanged(_)
            | DomainEvent::EntityRlsChanged(_)
            | DomainEvent::EntityPolicyChanged(_)
            | DomainEvent::FieldRulesChanged(_)
            | DomainEvent::RecordOwnerSet(_)
            | DomainEvent::RecordGranted(_)
            | DomainEvent::RecordRevoked(_)
            | DomainEvent::LocalRoleAssigned(_)
            | DomainEvent::LocalRoleRevoked(_)
            | DomainEvent::RecordGrantLapsed(_)
            | DomainEvent::LocalRoleLapsed(_) => Ok(()),
            // Credentials, sessions, invitations and API keys are the identity read model's.
            DomainEvent::PasswordSet(_)
            | DomainEvent::SignInFailed(_)
            | DomainEvent::AccountLocked(_)
            | DomainEvent::SignInFailuresCleared(_)
            | DomainEvent::AccountUnlocked(_)
            | DomainEvent::SecretTokenIssued(_)
            | DomainEvent::SecretTokenRedeemed(_)
            | DomainEvent::SecretTokenMissed(_)
            | DomainEvent::TotpEnrolmentStarted(_)
            | DomainEvent::TotpCodeUsed(_)
            | DomainEvent::RecoveryCodesGenerated(_)
            | DomainEvent::RecoveryCodeUsed(_)
            | DomainEvent::PasskeyRegistered(_)
            | DomainEvent::PasskeyUsed(_)
            | DomainEvent::PasskeyRemoved(_)
            | DomainEvent::PasskeyCounterRegressed(_)
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
}

/// A dedup id is `<idempotency key>:<index in the append>`; the key may itself contain `:`.
/// Events are applied in position order, so this event's position is the highest seen for its
/// key and the record is simply overwritten (no read needed).
fn record_idempotency(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    msg_id: &str,
) -> Result<(), ApplyError> {
    let Some((key, index)) = msg_id.rsplit_once(':') else {
        return Ok(());
    };
    if key.is_empty() || index.parse::<u32>().is_err() {
        return Ok(());
    }
    let record = IdempotencyRecord {
        position: event.position,
        aggregate: event.envelope.aggregate.clone(),
        tenant: event.envelope.tenant.clone(),
    };
    save(state, keys::idempotency(key), &record)
}

fn tenant_created(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: TenantCreated,
) -> Result<(), ApplyError> {
    let Ok(id) = event.envelope.aggregate.id.parse::<TenantId>() else {
        state.skip(format!(
            "TenantCreated with an invalid tenant id {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let key = keys::tenant(&id);
    // The write side never creates a tenant twice; should the log say so anyway, the first
    // creation stands and the second reads as a rename.
    let view = match load::<TenantView>(state, &key)? {
        Some(existing) => TenantView {
            name: e.name,
            updated_position: event.position,
            ..existing
        },
        None => TenantView {
            id,
            name: e.name,
            settings: Default::default(),
            attributes: Default::default(),
            created_at: event.envelope.occurred_at,
            created_position: event.position,
            updated_position: event.position,
        },
    };
    save(state, key, &view)
}

fn tenant_renamed(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: TenantRenamed,
) -> Result<(), ApplyError> {
    update_tenant(state, event, |view| TenantView {
        name: e.name,
        ..view
    })
}

fn tenant_settings_changed(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: TenantSettingsChanged,
) -> Result<(), ApplyError> {
    update_tenant(state, event, |view| TenantView {
        settings: e.settings,
        ..view
    })
}

fn update_tenant(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(TenantView) -> TenantView,
) -> Result<(), ApplyError> {
    let event_type = &event.envelope.event_type;
    let Some(key) = event
        .envelope
        .aggregate
        .id
        .parse::<TenantId>()
        .ok()
        .map(|id| keys::tenant(&id))
    else {
        state.skip(format!(
            "{event_type} with an invalid tenant id {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let Some(existing) = load::<TenantView>(state, &key)? else {
        state.skip(format!(
            "{event_type} of tenant {} that was never created",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let changed = TenantView {
        updated_position: event.position,
        ..change(existing)
    };
    save(state, key, &changed)
}

struct Profile {
    email: String,
    first_name: String,
    last_name: String,
    tenant: TenantId,
}

fn user_created(
    state: &mut Staged<'_>,
    seal: &dyn PersonalSeal,
    event: &RecordedEvent,
    status: UserStatus,
    profile: Profile,
) -> Result<(), ApplyError> {
    let Some(id) = user_id(state, event) else {
        return Ok(());
    };
    let key = keys::user(&id);
    let user = id.to_string();
    let email = normalize_email(&profile.email);
    let index = email_index(seal, &email);
    if let Some(earlier) = load::<UserView>(state, &key)?
        && earlier.email_index.as_deref() != Some(index.as_str())
    {
        unindex_email(state, &earlier)?;
    }
    let view = UserView {
        id,
        email: seal_text(seal, &user, "email", &email)?,
        email_index: Some(index.clone()),
        first_name: seal_text(seal, &user, "first_name", &profile.first_name)?,
        last_name: seal_text(seal, &user, "last_name", &profile.last_name)?,
        image_url: None,
        notifications: Default::default(),
        phone: None,
        language: None,
        attributes: Default::default(),
        external_ids: Default::default(),
        user_names: Default::default(),
        updated_at: None,
        status,
        suspended_until: None,
        suspension_reason: None,
        flags: Default::default(),
        email_verified: false,
        activated: status == UserStatus::Active,
        created_at: event.envelope.occurred_at,
        last_sign_in: None,
        two_factor: false,
        created_in: profile.tenant,
        position: event.position,
    };
    save(state, key, &view)?;
    state.insert(keys::email(&index), id.to_string());
    Ok(())
}

/// The key of an address in the email index: its keyed blind index (the one email claims are
/// named by), never the address.
pub(crate) fn email_index(seal: &dyn PersonalSeal, normalized: &str) -> String {
    seal.blind(idstream_domain::email::CLAIM_INDEX_PURPOSE, normalized)
}

fn user_suspended(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: UserSuspended,
) -> Result<(), ApplyError> {
    update_user(state, event, |view| UserView {
        status: UserStatus::Suspended,
        suspended_until: e.until,
        suspension_reason: e.reason,
        ..view
    })
}

fn user_reinstated(state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
    update_user(state, event, |view| UserView {
        status: back_from_leave(&view),
        suspended_until: None,
        suspension_reason: None,
        ..view
    })
}

/// Where lifting a suspension or deactivation returns a user.
fn back_from_leave(view: &UserView) -> UserStatus {
    if view.activated {
        UserStatus::Active
    } else {
        UserStatus::Invited
    }
}

fn update_user(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(UserView) -> UserView,
) -> Result<(), ApplyError> {
    update_user_sealed(state, event, |view| Ok(change(view)))
}

/// [`update_user`] with a change that seals personal values (and may fail to).
fn update_user_sealed(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(UserView) -> Result<UserView, idstream_projection_runtime::SealError>,
) -> Result<(), ApplyError> {
    let Some(id) = user_id(state, event) else {
        return Ok(());
    };
    let key = keys::user(&id);
    let Some(view) = load::<UserView>(state, &key)? else {
        state.skip(format!(
            "{} of user {id} who was never created",
            event.envelope.event_type
        ));
        return Ok(());
    };
    let changed = UserView {
        position: event.position,
        updated_at: Some(event.envelope.occurred_at),
        ..change(view)?
    };
    save(state, key, &changed)
}

/// Records on `user`'s view a fact that an event of another aggregate (a session, the
/// credentials) tells about them, leaving the user aggregate's position as it is.
fn note_on_user(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    user: UserId,
    change: impl FnOnce(&mut UserView),
) -> Result<(), ApplyError> {
    let key = keys::user(&user);
    let Some(mut view) = load::<UserView>(state, &key)? else {
        state.skip(format!(
            "{} of user {user} who was never created",
            event.envelope.event_type
        ));
        return Ok(());
    };
    change(&mut view);
    save(state, key, &view)
}

fn role_assigned(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: RoleAssigned,
) -> Result<(), ApplyError> {
    let Some(tenant) = membership_tenant(state, event) else {
        return Ok(());
    };
    let key = keys::member(&tenant, &e.user);
    let mut view = load::<MembershipView>(state, &key)?.unwrap_or_else(|| MembershipView {
        tenant: tenant.clone(),
        user: e.user,
        roles: Default::default(),
        custom_permissions: Default::default(),
        position: event.position,
    });
    view.roles.insert(e.role);
    view.position = event.position;
    save(state, key, &view)?;
    state.insert(keys::user_tenant(&e.user, &tenant), Vec::new());
    Ok(())
}

fn role_revoked(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    user: UserId,
    role: &RoleName,
) -> Result<(), ApplyError> {
    change_membership(state, event, user, |view| {
        view.roles.remove(role);
    })
}

/// Changes an existing membership; one left without roles and custom permissions is removed.
fn change_membership(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    user: UserId,
    change: impl FnOnce(&mut MembershipView),
) -> Result<(), ApplyError> {
    let Some(tenant) = membership_tenant(state, event) else {
        return Ok(());
    };
    let key = keys::member(&tenant, &user);
    let mut view = match load::<MembershipView>(state, &key)? {
        Some(view) => view,
        None if event.envelope.event_type == "PermissionsGranted" => MembershipView {
            tenant: tenant.clone(),
            user,
            roles: Default::default(),
            custom_permissions: Default::default(),
            position: event.position,
        },
        None => {
            state.skip(format!(
                "{} for user {user} who is not a member of tenant {tenant}",
                event.envelope.event_type
            ));
            return Ok(());
        }
    };
    change(&mut view);
    if view.roles.is_empty() && view.custom_permissions.is_empty() {
        state.remove(key);
        state.remove(keys::user_tenant(&user, &tenant));
        return Ok(());
    }
    view.position = event.position;
    save(state, key, &view)?;
    state.insert(keys::user_tenant(&user, &tenant), Vec::new());
    Ok(())
}

/// The user an event of the user aggregate belongs to; skips the event if the id is invalid.
fn user_id(state: &mut Staged<'_>, event: &RecordedEvent) -> Option<UserId> {
    let id = event.envelope.aggregate.id.parse().ok();
    if id.is_none() {
        state.skip(format!(
            "{} with an invalid user id {:?}",
            event.envelope.event_type, event.envelope.aggregate.id
        ));
    }
    id
}

/// The tenant of a membership event; skips the event if it has none.
fn membership_tenant(state: &mut Staged<'_>, event: &RecordedEvent) -> Option<TenantId> {
    let tenant = event.envelope.tenant.clone();
    if tenant.is_none() {
        state.skip(format!("{} without a tenant", event.envelope.event_type));
    }
    tenant
}

/// Removes a user's old email from the index, if it still points to them.
fn email_changed(
    state: &mut Staged<'_>,
    seal: &dyn PersonalSeal,
    event: &RecordedEvent,
    email: &str,
) -> Result<(), ApplyError> {
    let Some(id) = user_id(state, event) else {
        return Ok(());
    };
    let Some(earlier) = load::<UserView>(state, &keys::user(&id))? else {
        state.skip(format!("EmailChanged of user {id} who was never created"));
        return Ok(());
    };
    unindex_email(state, &earlier)?;
    let email = normalize_email(email);
    let index = email_index(seal, &email);
    state.insert(keys::email(&index), id.to_string());
    let sealed = seal_text(seal, &id.to_string(), "email", &email)?;
    update_user(state, event, |view| UserView {
        email: sealed,
        email_index: Some(index),
        email_verified: true,
        ..view
    })
}

/// Nothing personal stays: not the address (nor its index entry), names, picture, notification
/// choices or a suspension reason. Applied the same whether the earlier events were read in the
/// clear (live) or as placeholders (a rebuild after the erasure), so both end byte-identical.
fn user_erased(state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
    let Some(id) = user_id(state, event) else {
        return Ok(());
    };
    if let Some(earlier) = load::<UserView>(state, &keys::user(&id))? {
        unindex_email(state, &earlier)?;
    }
    save(state, keys::LAST_ERASURE.to_vec(), &event.position)?;
    update_user(state, event, |view| UserView {
        email: String::new(),
        email_index: None,
        first_name: String::new(),
        last_name: String::new(),
        image_url: None,
        notifications: Default::default(),
        phone: None,
        attributes: Default::default(),
        external_ids: Default::default(),
        user_names: Default::default(),
        status: UserStatus::Erased,
        suspended_until: None,
        suspension_reason: None,
        ..view
    })
}

fn unindex_email(state: &mut Staged<'_>, earlier: &UserView) -> Result<(), ApplyError> {
    let Some(index) = &earlier.email_index else {
        return Ok(());
    };
    let key = keys::email(index);
    if state
        .get(&key)?
        .is_some_and(|owner| owner == earlier.id.to_string().as_bytes())
    {
        state.remove(key);
    }
    Ok(())
}

fn load<T: DeserializeOwned>(state: &Staged<'_>, key: &[u8]) -> Result<Option<T>, ApplyError> {
    state.get_json(key)
}

fn save<T: Serialize>(state: &mut Staged<'_>, key: Vec<u8>, value: &T) -> Result<(), ApplyError> {
    state.put_json(key, value)
}
