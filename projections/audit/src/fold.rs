//! The fold: every event becomes one entry and its index keys.
//!
//! What an event is about (its subject user, the tenants that see it, the facts of its summary)
//! is read from the event's ids and enums only. Events that name their user only through their
//! aggregate (a session's refresh, an invitation's acceptance, an API key's use) are resolved
//! through small tables of ids kept in the same tree; the tenants a user's global events belong
//! to come from a table of memberships (see the crate documentation).

use std::collections::{BTreeMap, BTreeSet};

use idstream_domain::tenant::TenantSettings;
use idstream_domain::{
    Actor, ActorKind, AggregateType, DomainEvent, EventEnvelope, TenantId, UserId,
};
use idstream_eventlog::{Position, RecordedEvent};
use idstream_projection_runtime::{ApplyError, Projection, Staged};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::NAME;
use crate::keys;

/// The type of the event that records a user's erasure (crypto-shredding). Recognised by name,
/// before decoding, so that it takes effect whatever version of it a log holds.
pub(crate) const USER_ERASED: &str = "UserErased";

/// One stored entry. Field order is fixed by the struct, so equal entries are equal bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub position: Position,
    pub id: Ulid,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub tenant: Option<TenantId>,
    /// The tenants whose auditors see the entry (its own tenant, or those a global event
    /// concerns), sorted.
    pub tenants: Vec<TenantId>,
    pub actor: Actor,
    pub actor_owner: Option<UserId>,
    pub subject: Option<UserId>,
    pub aggregate_type: AggregateType,
    pub aggregate_id: Option<String>,
    pub facts: BTreeMap<String, String>,
}

/// The high-water mark of event times (the latest `occurred_at` seen so far) and the largest
/// amount any event's time was behind it (clocks of different replicas disagree a little).
/// Together they turn a time range into a position range that holds every event of the range;
/// see `query::window`. Stored as 17 bytes: started, then both as big-endian `i64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Clock {
    pub started: bool,
    pub high_water_ns: i64,
    pub max_skew_ns: i64,
}

impl Clock {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(17);
        bytes.push(u8::from(self.started));
        bytes.extend_from_slice(&self.high_water_ns.to_be_bytes());
        bytes.extend_from_slice(&self.max_skew_ns.to_be_bytes());
        bytes
    }

    /// `None` for bytes that are not a clock.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Clock> {
        let bytes: &[u8; 17] = bytes.try_into().ok()?;
        Some(Clock {
            started: bytes[0] == 1,
            high_water_ns: i64::from_be_bytes(bytes[1..9].try_into().ok()?),
            max_skew_ns: i64::from_be_bytes(bytes[9..17].try_into().ok()?),
        })
    }
}

/// The granularity of the time index: one key per second at most, however busy the log.
pub(crate) const TIME_BUCKET_NS: i64 = 1_000_000_000;

/// A user's standing in a tenant, as far as the audit trail needs it: whether the tenant's
/// auditors see the user's global events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    tenant: Option<TenantId>,
    roles: BTreeSet<String>,
    custom: BTreeSet<String>,
    /// Created in this tenant (`UserRegistered`, `UserInvited`) and given nothing there yet.
    created_here: bool,
}

impl Member {
    fn exists(&self) -> bool {
        self.created_here || !self.roles.is_empty() || !self.custom.is_empty()
    }
}

/// What the `ses/` table holds for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionFacts {
    pub user: UserId,
    pub tenant: TenantId,
}

/// What the fold learns about an event beyond its envelope.
#[derive(Default)]
struct About {
    subject: Option<UserId>,
    /// The subject is the user that the `ses/`, `inv/` or `key/` table names for the event's
    /// session, invitation or API key: a query for that aggregate finds the event under the
    /// user's index (see [`keys::through_user`]).
    named_by_table: bool,
    /// For global events that name their tenants themselves (sessions); otherwise the subject's.
    tenants: Option<Vec<TenantId>>,
    facts: BTreeMap<String, String>,
}

impl About {
    fn fact(&mut self, name: &str, value: impl Into<String>) {
        self.facts.insert(name.to_owned(), value.into());
    }
}

/// The audit [`Projection`]. Bump [`Projection::version`] when the layout or the fold changes.
pub struct AuditProjection;

impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: indexes as blocks of positions; one user index for actors and subjects.
        // 3: tenant settings with `remember_days` (the state the next change is compared with).
        // 4: sign-ins' `amr`, passkeys.
        // 5: tenant settings with `phishing_resistant_admins` (the state the next change is
        // compared with).
        // 6: OpenID Connect clients, consents and applications' codes; upstream identity
        // providers and linked identities.
        6
    }

    fn beside(&self) -> std::sync::Arc<dyn Projection> {
        std::sync::Arc::new(AuditProjection)
    }

    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
        let envelope = &event.envelope;
        let position = event.position;
        let mut about = About::default();
        if envelope.event_type == USER_ERASED {
            if envelope.aggregate.kind == AggregateType::User
                && let Ok(user) = envelope.aggregate.id.parse::<UserId>()
            {
                about.subject = Some(user);
                state.insert(keys::erased(&user), Vec::new());
            }
        } else {
            match DomainEvent::decode(envelope) {
                Ok(domain) => describe(state, envelope, domain, &mut about)?,
                // An event this build cannot decode (a newer version) is still recorded, from
                // its envelope alone.
                Err(_) => about.subject = user_aggregate(envelope),
            }
        }

        let mut tenants = match (&envelope.tenant, about.tenants.take(), &about.subject) {
            (Some(own), _, _) => vec![own.clone()],
            (None, Some(named), _) => named,
            (None, None, Some(user)) => member_tenants(state, user)?,
            (None, None, None) => Vec::new(),
        };
        tenants.sort();
        tenants.dedup();

        let actor_owner = match envelope.actor.kind {
            ActorKind::ApiKey => key_owner(state, &envelope.actor.id)?,
            _ => None,
        };
        let aggregate_id = match envelope.aggregate.kind {
            // Named by a hash of the email address, which is as good as the address.
            AggregateType::Email => None,
            _ => Some(envelope.aggregate.id.clone()),
        };

        // Every key written costs a sled insert, the bulk of the fold's time, so there are only
        // as many indexes as the queries need (the global scope is found through the others and
        // the entries themselves; actor and subject users share one index; an aggregate found
        // through its user is read from the user's index), and each is a list of positions in
        // blocks (see `keys`), which a batch writes once however many of its events it lists.
        let event_type = envelope.event_type.as_str();
        for tenant in &tenants {
            list(state, &keys::scope(tenant.as_str()), position)?;
            list(
                state,
                &keys::scope_type(tenant.as_str(), event_type),
                position,
            )?;
        }
        list(state, &keys::event_type(event_type), position)?;
        let actor_user = match envelope.actor.kind {
            ActorKind::User => envelope.actor.id.parse::<UserId>().ok(),
            _ => None,
        };
        match actor_user {
            Some(user) => list(state, &keys::user(&user), position)?,
            None => list(
                state,
                &keys::actor(envelope.actor.kind, &envelope.actor.id),
                position,
            )?,
        }
        if let Some(subject) = about.subject
            && actor_user != Some(subject)
        {
            list(state, &keys::user(&subject), position)?;
        }
        if let Some(id) = &aggregate_id {
            let kind = envelope.aggregate.kind;
            let found_through_user = if keys::user_keyed(kind) {
                about.subject.is_some_and(|s| s.to_string() == *id)
            } else {
                keys::through_user(kind) && about.named_by_table
            };
            if !found_through_user {
                list(state, &keys::aggregate(kind, id), position)?;
            }
        }

        let stored = Stored {
            position,
            id: envelope.id,
            time: envelope.occurred_at,
            event_type: envelope.event_type.clone(),
            version: envelope.version,
            tenant: envelope.tenant.clone(),
            tenants,
            actor: envelope.actor.clone(),
            actor_owner,
            subject: about.subject,
            aggregate_type: envelope.aggregate.kind,
            aggregate_id,
            facts: about.facts,
        };
        let json = serde_json::to_vec(&stored).map_err(|error| {
            ApplyError::Rejected(format!("cannot encode the entry of {position}: {error}"))
        })?;
        let key = keys::entry_block(position);
        let mut block = state.get(&key)?.unwrap_or_default();
        keys::push_entry(&mut block, position, &json);
        state.insert(key, block);
        advance_clock(state, position, envelope.occurred_at)
    }
}

/// Adds `position` to the index `prefix` (to the block that holds it).
fn list(state: &mut Staged<'_>, prefix: &[u8], position: Position) -> Result<(), ApplyError> {
    let key = keys::block(prefix, position);
    let mut value = state.get(&key)?.unwrap_or_default();
    keys::push_offset(&mut value, position);
    state.insert(key, value);
    Ok(())
}

/// The user an event of a user-keyed aggregate (user, credentials) is about.
fn user_aggregate(envelope: &EventEnvelope) -> Option<UserId> {
    match envelope.aggregate.kind {
        AggregateType::User | AggregateType::Credentials => envelope.aggregate.id.parse().ok(),
        _ => None,
    }
}

/// The serde name of an enum value (`password_and_totp`, `revoked_by_admin`, …).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn joined<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(
    state: &mut Staged<'_>,
    envelope: &EventEnvelope,
    domain: DomainEvent,
    about: &mut About,
) -> Result<(), ApplyError> {
    use DomainEvent as E;
    let own_user = user_aggregate(envelope);
    match domain {
        E::TenantCreated(_) | E::TenantRenamed(_) => {}
        E::ResourceDefined(e) => about.fact("resource", e.name.as_str()),
        E::ResourceRemoved(e) => about.fact("resource", e.name.as_str()),
        E::UserAttributeDefined(e) => about.fact("attribute", &e.name),
        E::UserAttributeRemoved(e) => about.fact("attribute", &e.name),
        // Only the tenant the values belong to sees the change.
        E::UserAttributesChanged(e) => {
            about.subject = own_user;
            about.fact("tenant", e.tenant.as_str());
            about.tenants = Some(vec![e.tenant]);
        }
        E::UserProvisioningIdsChanged(e) => {
            about.subject = own_user;
            about.fact("tenant", e.tenant.as_str());
            about.tenants = Some(vec![e.tenant]);
        }
        E::TenantSettingsChanged(e) => {
            if let Some(tenant) = &envelope.tenant {
                let key = keys::settings(tenant);
                let before: serde_json::Value = match state.get_json(&key)? {
                    Some(before) => before,
                    None => serde_json::to_value(TenantSettings::default()).unwrap_or_default(),
                };
                let after = serde_json::to_value(&e.settings).unwrap_or_default();
                about.fact("changes", settings_changes(&before, &after));
                state.put_json(key, &after)?;
            }
        }
        E::UserRegistered(e) => {
            about.subject = own_user;
            about.fact("tenant", e.tenant.as_str());
            if let Some(user) = own_user {
                change_member(state, &user, &e.tenant, |m| m.created_here = true)?;
            }
        }
        E::UserInvited(e) => {
            about.subject = own_user;
            about.fact("tenant", e.tenant.as_str());
            if let Some(user) = own_user {
                change_member(state, &user, &e.tenant, |m| m.created_here = true)?;
            }
        }
        E::UserSuspended(e) => {
            about.subject = own_user;
            if let Some(until) = e.until {
                about.fact("until", rfc3339(until));
            }
            // The reason is free text and may say anything about the person: only its presence
            // is recorded.
            if e.reason.is_some() {
                about.fact("reason_given", "true");
            }
        }
        E::UserFlagsChanged(e) => {
            about.subject = own_user;
            let flags = serde_json::to_value(e.flags).unwrap_or_default();
            let on = flags
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| v.as_bool() == Some(true))
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            about.fact("flags", on.join(", "));
        }
        E::UserReinstated(_)
        | E::UserDeactivated(_)
        | E::UserReactivated(_)
        | E::UserActivated(_)
        | E::EmailVerified(_)
        | E::UserProfileChanged(_)
        | E::EmailChangeRequested(_)
        | E::EmailChanged(_) => about.subject = own_user,

        E::RoleAssigned(e) => {
            about.subject = Some(e.user);
            about.fact("role", e.role.as_str());
            if let Some(end) = e.expires_at {
                about.fact("until", rfc3339(end));
            }
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    m.roles.insert(e.role.to_string());
                    m.created_here = false;
                })?;
            }
        }
        E::RoleRevoked(e) => {
            about.subject = Some(e.user);
            about.fact("role", e.role.as_str());
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    m.roles.remove(e.role.as_str());
                })?;
            }
        }
        E::RoleLapsed(e) => {
            about.subject = Some(e.user);
            about.fact("role", e.role.as_str());
            about.fact("expired_at", rfc3339(e.expired_at));
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    m.roles.remove(e.role.as_str());
                })?;
            }
        }
        E::PermissionsLapsed(e) => {
            about.subject = Some(e.user);
            about.fact("permissions", joined(&e.permissions));
            about.fact("expired_at", rfc3339(e.expired_at));
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    for permission in &e.permissions {
                        m.custom.remove(&permission.to_string());
                    }
                })?;
            }
        }
        E::PermissionsGranted(e) => {
            about.subject = Some(e.user);
            about.fact("permissions", joined(&e.permissions));
            if let Some(end) = e.expires_at {
                about.fact("until", rfc3339(end));
            }
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    m.custom.extend(e.permissions.iter().map(|p| p.to_string()));
                    m.created_here = false;
                })?;
            }
        }
        E::PermissionsRevoked(e) => {
            about.subject = Some(e.user);
            about.fact("permissions", joined(&e.permissions));
            if let Some(tenant) = &envelope.tenant {
                change_member(state, &e.user, tenant, |m| {
                    for permission in &e.permissions {
                        m.custom.remove(&permission.to_string());
                    }
                })?;
            }
        }
        E::MemberRemoved(e) => {
            about.subject = Some(e.user);
            if let Some(tenant) = &envelope.tenant {
                state.remove(keys::membership(&e.user, tenant));
            }
        }
        E::EmailClaimed(e) => about.subject = Some(e.user),
        E::EmailReleased(e) => about.subject = Some(e.user),
        E::AdminRemovalReserved(e) => about.subject = Some(e.user),
        E::AdminRemovalSettled(e) => about.subject = Some(e.user),

        E::RoleDefined(e) => {
            about.fact("permissions", joined(&e.permissions));
            about.fact("global_access", e.global_access.to_string());
        }
        E::RoleUpdated(e) => {
            about.fact("permissions", joined(&e.permissions));
            about.fact("global_access", e.global_access.to_string());
        }
        E::RoleMenuSet(_) | E::RoleDeleted(_) | E::EntityPolicyChanged(_) => {}
        E::RoleRelabelled(e) => about.fact("label", e.label.as_str()),
        E::EntityRegistered(e) => {
            about.fact("fields", joined(&e.fields));
            about.fact("rls", e.rls.to_string());
        }
        E::EntityFieldsChanged(e) => about.fact("fields", joined(&e.fields)),
        E::EntityRlsChanged(e) => about.fact("rls", e.enabled.to_string()),
        E::FieldRulesChanged(e) => {
            about.fact("role", e.role.as_str());
            about.fact("hidden", joined(&e.hidden));
            if !e.unsearchable.is_empty() {
                about.fact("unsearchable", joined(&e.unsearchable));
            }
        }
        E::RecordOwnerSet(e) => {
            about.subject = Some(e.owner);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
        }
        E::RecordGranted(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
            about.fact("access", serde_name(&e.access));
            if let Some(end) = e.expires_at {
                about.fact("until", rfc3339(end));
            }
        }
        E::RecordGrantLapsed(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
            about.fact("expired_at", rfc3339(e.expired_at));
        }
        E::LocalRoleLapsed(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
            about.fact("role", e.role.as_str());
            about.fact("expired_at", rfc3339(e.expired_at));
        }
        E::RecordRevoked(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
        }
        E::LocalRoleAssigned(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
            about.fact("role", e.role.as_str());
            if let Some(end) = e.expires_at {
                about.fact("until", rfc3339(end));
            }
        }
        E::LocalRoleRevoked(e) => {
            about.subject = Some(e.user);
            about.fact("entity", e.entity.as_str());
            about.fact("record", e.record.as_str());
            about.fact("role", e.role.as_str());
        }

        E::PasswordSet(e) => {
            about.subject = own_user;
            about.fact("reason", serde_name(&e.reason));
        }
        E::SignInFailed(e) => {
            about.subject = own_user;
            about.fact("failures", e.failures.to_string());
        }
        E::AccountLocked(e) => {
            about.subject = own_user;
            about.fact("until", rfc3339(e.until));
            about.fact("failures", e.failures.to_string());
        }
        E::SecretTokenIssued(e) => {
            about.subject = own_user;
            about.fact("purpose", serde_name(&e.purpose));
        }
        E::SecretTokenRedeemed(e) => {
            about.subject = own_user;
            about.fact("purpose", serde_name(&e.purpose));
        }
        E::SecretTokenMissed(e) => {
            about.subject = own_user;
            about.fact("purpose", serde_name(&e.purpose));
            about.fact("misses", e.misses.to_string());
        }
        E::SignInFailuresCleared(_)
        | E::AccountUnlocked(_)
        | E::TotpEnrolmentStarted(_)
        | E::TotpEnabled(_)
        | E::TotpCodeUsed(_)
        | E::TotpDisabled(_)
        | E::RecoveryCodesGenerated(_)
        | E::RecoveryCodeUsed(_) => about.subject = own_user,
        E::PasskeyRegistered(e) => {
            about.subject = own_user;
            about.fact("credential", e.credential);
        }
        E::PasskeyUsed(e) => {
            about.subject = own_user;
            about.fact("credential", e.credential);
            about.fact("counter", e.counter.to_string());
        }
        E::PasskeyRemoved(e) => {
            about.subject = own_user;
            about.fact("credential", e.credential);
        }
        E::PasskeyCounterRegressed(e) => {
            about.subject = own_user;
            about.fact("credential", e.credential);
            about.fact("stored", e.stored.to_string());
            about.fact("presented", e.presented.to_string());
        }

        E::AuthorizationCodeIssued(e) => {
            about.subject = Some(e.user);
            about.named_by_table = true;
            about.tenants = Some(vec![e.tenant.clone()]);
            about.fact("client", e.client.as_str());
            about.fact("scopes", joined(&e.scopes));
            about.fact("tenant", e.tenant.as_str());
        }
        E::ClientRegistered(e) => {
            about.fact("name", e.settings.name.as_str());
            about.fact("kind", serde_name(&e.kind));
            about.fact(
                "grants",
                e.settings
                    .grant_types
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            about.fact("scopes", joined(&e.settings.scopes));
        }
        E::ClientUpdated(e) => {
            about.fact("name", e.settings.name.as_str());
            about.fact("scopes", joined(&e.settings.scopes));
        }
        E::ClientSecretRotated(_) | E::ClientRemoved(_) | E::ClientCredentialsUsed(_) => {}
        E::ConsentGranted(e) => {
            about.subject = Some(e.user);
            about.fact("client", e.client.as_str());
            about.fact("scopes", joined(&e.scopes));
        }
        E::IdentityProviderConfigured(e) => {
            about.fact("name", e.settings.name.as_str());
            about.fact("issuer", e.settings.issuer.as_str());
        }
        E::IdentityProviderRemoved(_) => {}
        E::IdentityLinked(e) => {
            about.subject = Some(e.user);
            about.fact("provider", e.provider.as_str());
            about.fact("via", serde_name(&e.via));
        }
        E::IdentityUnlinked(e) => {
            about.subject = Some(e.user);
            about.fact("provider", e.provider.as_str());
        }
        E::ConsentRevoked(_) => {
            // The aggregate's id is `<client>_<user>`.
            if let Some((client, user)) = envelope.aggregate.id.rsplit_once('_') {
                about.subject = user.parse().ok();
                about.fact("client", client);
            }
        }
        E::SessionStarted(e) => {
            about.subject = Some(e.user);
            about.named_by_table = true;
            about.tenants = Some(vec![e.tenant.clone()]);
            about.fact("method", serde_name(&e.method));
            about.fact("amr", e.method.amr().join(" "));
            about.fact("tenant", e.tenant.as_str());
            let facts = SessionFacts {
                user: e.user,
                tenant: e.tenant,
            };
            state.put_json(keys::session(&envelope.aggregate.id), &facts)?;
        }
        E::SessionRefreshed(e) => {
            about.fact("generation", e.generation.to_string());
            if let Some(session) = session(state, envelope)? {
                about.subject = Some(session.user);
                about.named_by_table = true;
                about.tenants = Some(vec![session.tenant]);
            }
        }
        E::SessionTenantSwitched(e) => {
            about.fact("to", e.tenant.as_str());
            if let Some(mut session) = session(state, envelope)? {
                about.subject = Some(session.user);
                about.named_by_table = true;
                about.fact("from", session.tenant.as_str());
                about.tenants = Some(vec![session.tenant.clone(), e.tenant.clone()]);
                session.tenant = e.tenant;
                state.put_json(keys::session(&envelope.aggregate.id), &session)?;
            }
        }
        E::SessionRevoked(e) => {
            about.fact("reason", serde_name(&e.reason));
            if let Some(session) = session(state, envelope)? {
                about.subject = Some(session.user);
                about.named_by_table = true;
                about.tenants = Some(vec![session.tenant]);
            }
        }

        E::InvitationSent(e) => {
            about.subject = Some(e.user);
            about.named_by_table = true;
            about.fact("roles", joined(&e.roles));
            state.insert(
                keys::invitation(&envelope.aggregate.id),
                e.user.to_string().into_bytes(),
            );
        }
        E::InvitationResent(_) | E::InvitationAccepted(_) | E::InvitationRevoked(_) => {
            about.subject = stored_user(state, keys::invitation(&envelope.aggregate.id))?;
            about.named_by_table = about.subject.is_some();
        }

        E::ApiKeyIssued(e) => {
            about.subject = Some(e.owner);
            // The key's name is a free-text label: left out.
            if let Some(restriction) = &e.restriction {
                about.fact("restricted_to", joined(restriction));
            }
            if let Some(expires_at) = e.expires_at {
                about.fact("expires_at", rfc3339(expires_at));
            }
            if let Ok(id) = envelope.aggregate.id.parse::<Ulid>() {
                state.insert(keys::api_key(&id), e.owner.to_string().into_bytes());
                about.named_by_table = true;
            }
        }
        E::ApiKeyRevoked(_) | E::ApiKeyUsed(_) => {
            about.subject = key_owner(state, &envelope.aggregate.id)?;
            about.named_by_table = about.subject.is_some();
        }

        // Events added to the catalogue after this fold was written are recorded from their
        // envelope alone, like undecodable ones.
        #[allow(unreachable_patterns)]
        _ => {
            about.subject = own_user;
            if envelope.event_type == "ChainCheckpointed" {
                // The tamper-evidence checkpoint: the range it covers, read from the envelope so
                // that this fold does not depend on the rest of its payload.
                for name in ["from", "to"] {
                    if let Some(position) = envelope.data.get(name).and_then(|v| v.as_u64()) {
                        about.fact(name, position.to_string());
                    }
                }
            }
        }
    }
    Ok(())
}

/// `field: before → after` for every setting that changed, nested ones as `a.b`.
fn settings_changes(before: &serde_json::Value, after: &serde_json::Value) -> String {
    fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    flatten(&path, value, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut old);
    flatten("", after, &mut new);
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "none".into());
            format!("{name}: {} → {}", show(old.get(name)), show(new.get(name)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn change_member(
    state: &mut Staged<'_>,
    user: &UserId,
    tenant: &TenantId,
    change: impl FnOnce(&mut Member),
) -> Result<(), ApplyError> {
    let key = keys::membership(user, tenant);
    let mut member: Member = state.get_json(&key)?.unwrap_or_default();
    member.tenant = Some(tenant.clone());
    change(&mut member);
    if member.exists() {
        state.put_json(key, &member)
    } else {
        state.remove(key);
        Ok(())
    }
}

/// The tenants that see a user's global events now.
fn member_tenants(state: &Staged<'_>, user: &UserId) -> Result<Vec<TenantId>, ApplyError> {
    let mut tenants = Vec::new();
    for (key, value) in state.scan_prefix(keys::memberships_of(user))? {
        let member: Member = serde_json::from_slice(&value).map_err(|e| ApplyError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })?;
        if let Some(tenant) = member.tenant {
            tenants.push(tenant);
        }
    }
    Ok(tenants)
}

fn session(
    state: &Staged<'_>,
    envelope: &EventEnvelope,
) -> Result<Option<SessionFacts>, ApplyError> {
    state.get_json(&keys::session(&envelope.aggregate.id))
}

fn stored_user(state: &Staged<'_>, key: Vec<u8>) -> Result<Option<UserId>, ApplyError> {
    Ok(state
        .get(key)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok()))
}

/// The owner of an API key, if the key's issue is in the log.
fn key_owner(state: &Staged<'_>, id: &str) -> Result<Option<UserId>, ApplyError> {
    match id.parse::<Ulid>() {
        Ok(id) => stored_user(state, keys::api_key(&id)),
        Err(_) => Ok(None),
    }
}

/// Nanoseconds since the epoch, saturated to what an `i64` holds (years 1677 to 2262).
pub(crate) fn nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The time-index bucket of a time in nanoseconds.
pub(crate) fn bucket(ns: i64) -> i64 {
    ns.div_euclid(TIME_BUCKET_NS)
}

fn advance_clock(
    state: &mut Staged<'_>,
    position: Position,
    at: OffsetDateTime,
) -> Result<(), ApplyError> {
    let ns = nanos(at);
    let mut clock = match state.get(keys::CLOCK)? {
        None => Clock::default(),
        Some(bytes) => Clock::decode(&bytes).ok_or_else(|| ApplyError::Corrupt {
            key: "c/clock".into(),
            reason: format!("{} bytes, not a clock", bytes.len()),
        })?,
    };
    if !clock.started || ns > clock.high_water_ns {
        let new_bucket = bucket(ns);
        if !clock.started || new_bucket > bucket(clock.high_water_ns) {
            state.insert(keys::time(new_bucket), position.to_be_bytes().to_vec());
        }
        clock.started = true;
        clock.high_water_ns = ns;
    } else {
        clock.max_skew_ns = clock.max_skew_ns.max(clock.high_water_ns - ns);
    }
    state.insert(keys::CLOCK.to_vec(), clock.encode());
    Ok(())
}
