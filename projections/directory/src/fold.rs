//! The fold: how each event changes the directory.

use idstream_domain::events::{
    RoleAssigned, RoleRevoked, TenantCreated, TenantRenamed, UserInvited, UserRegistered,
    UserSuspended,
};
use idstream_domain::{DomainEvent, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use idstream_projection_runtime::{ApplyError, Projection, Staged};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys::{self, normalize_email};
use crate::{IdempotencyRecord, MembershipView, NAME, TenantView, UserStatus, UserView};

/// The directory's [`Projection`]. Bump [`Projection::version`] when the layout or the fold changes.
pub struct DirectoryProjection;

impl Projection for DirectoryProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
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
            DomainEvent::RoleRevoked(e) => role_revoked(state, event, e),
            // Claims only guard uniqueness on the write side; the email index comes from users.
            DomainEvent::EmailClaimed(_) => Ok(()),
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
    let Some(key) = event
        .envelope
        .aggregate
        .id
        .parse::<TenantId>()
        .ok()
        .map(|id| keys::tenant(&id))
    else {
        state.skip(format!(
            "TenantRenamed with an invalid tenant id {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let Some(existing) = load::<TenantView>(state, &key)? else {
        state.skip(format!(
            "TenantRenamed of tenant {} that was never created",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    save(
        state,
        key,
        &TenantView {
            name: e.name,
            updated_position: event.position,
            ..existing
        },
    )
}

struct Profile {
    email: String,
    first_name: String,
    last_name: String,
    tenant: TenantId,
}

fn user_created(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    status: UserStatus,
    profile: Profile,
) -> Result<(), ApplyError> {
    let Some(id) = user_id(state, event) else {
        return Ok(());
    };
    let key = keys::user(&id);
    let email = normalize_email(&profile.email);
    if let Some(earlier) = load::<UserView>(state, &key)?
        && earlier.email != email
    {
        unindex_email(state, &earlier)?;
    }
    let view = UserView {
        id,
        email: email.clone(),
        first_name: profile.first_name,
        last_name: profile.last_name,
        status,
        suspended_until: None,
        suspension_reason: None,
        created_at: event.envelope.occurred_at,
        created_in: profile.tenant,
        position: event.position,
    };
    save(state, key, &view)?;
    state.insert(keys::email(&email), id.to_string());
    Ok(())
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
        status: UserStatus::Active,
        suspended_until: None,
        suspension_reason: None,
        ..view
    })
}

fn update_user(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(UserView) -> UserView,
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
        ..change(view)
    };
    save(state, key, &changed)
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
    e: RoleRevoked,
) -> Result<(), ApplyError> {
    let Some(tenant) = membership_tenant(state, event) else {
        return Ok(());
    };
    let key = keys::member(&tenant, &e.user);
    let Some(mut view) = load::<MembershipView>(state, &key)? else {
        state.skip(format!(
            "RoleRevoked for user {} who holds no role in tenant {tenant}",
            e.user
        ));
        return Ok(());
    };
    view.roles.remove(&e.role);
    if view.roles.is_empty() {
        state.remove(key);
        state.remove(keys::user_tenant(&e.user, &tenant));
        return Ok(());
    }
    view.position = event.position;
    save(state, key, &view)
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
fn unindex_email(state: &mut Staged<'_>, earlier: &UserView) -> Result<(), ApplyError> {
    let key = keys::email(&earlier.email);
    if state
        .get(&key)?
        .is_some_and(|owner| owner == earlier.id.to_string().as_bytes())
    {
        state.remove(key);
    }
    Ok(())
}

fn load<T: DeserializeOwned>(state: &Staged<'_>, key: &[u8]) -> Result<Option<T>, ApplyError> {
    state
        .get(key)?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|error| ApplyError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: error.to_string(),
            })
        })
        .transpose()
}

fn save<T: Serialize>(state: &mut Staged<'_>, key: Vec<u8>, value: &T) -> Result<(), ApplyError> {
    // Only a time outside RFC 3339's range could fail to serialise, and every time here was parsed
    // from RFC 3339; refusing the event is still better than a panic.
    let json = serde_json::to_vec(value).map_err(|error| {
        ApplyError::Rejected(format!(
            "cannot encode {}: {error}",
            String::from_utf8_lossy(&key)
        ))
    })?;
    state.insert(key, json);
    Ok(())
}
