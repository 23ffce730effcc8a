//! The fold: how each event changes the identity read model.
//!
//! Each aggregate's events are applied the way its `evolve` applies them (see
//! `idstream_domain::identity`): the write side already decided, so an event that its `decide`
//! would not have produced in that state (a refresh of a revoked session, say) is still applied
//! as `evolve` would. Only what cannot be placed at all is skipped.

use idstream_domain::events::{
    ApiKeyIssued, AuthorizationCodeIssued, ClientRegistered, ConsentGranted,
    IdentityProviderConfigured, InvitationResent, InvitationSent, SessionRefreshed, SessionRevoked,
    SessionStarted, SessionTenantSwitched,
};
use idstream_domain::{DomainEvent, TenantId, UserId};
use idstream_eventlog::RecordedEvent;
use std::sync::Arc;

use idstream_projection_runtime::personal::{seal_option, seal_text};
use idstream_projection_runtime::{ApplyError, PersonalSeal, Projection, Staged};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ulid::Ulid;

use crate::keys;
use crate::{
    ApiKeyView, ClientView, ConsentView, CredentialsView, InvitationStatus, InvitationView,
    LinkView, NAME, PasskeyView, ProviderView, SessionView,
};

/// The identity [`Projection`]. Bump [`Projection::version`] when the layout or the fold changes.
pub struct IdentityProjection {
    /// Seals the sessions' sources (address, user agent) with their person's key.
    seal: Arc<dyn PersonalSeal>,
}

impl IdentityProjection {
    /// The projection, storing personal values sealed by `seal` (the one the
    /// [`Identity`](crate::Identity) queries open them with).
    pub fn new(seal: Arc<dyn PersonalSeal>) -> IdentityProjection {
        IdentityProjection { seal }
    }
}

impl Projection for IdentityProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 6: sessions' sources sealed with their person's key.
        // 7: passkeys.
        // 8: OpenID Connect clients, consents, and applications' sessions; upstream identity
        // providers and linked identities.
        8
    }

    fn beside(&self) -> Arc<dyn Projection> {
        Arc::new(IdentityProjection::new(self.seal.clone()))
    }

    fn apply(&self, state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
        let domain = match DomainEvent::decode(&event.envelope) {
            Ok(domain) => domain,
            Err(error) => {
                state.skip(error.to_string());
                return Ok(());
            }
        };
        let occurred_at = event.envelope.occurred_at;
        match domain {
            // ---- credentials: every event exists for a user, so the first one creates the view.
            DomainEvent::PasswordSet(e) => change_credentials(state, event, |view| {
                view.password = Some(e.password);
                view.password_set_at = Some(occurred_at);
            }),
            DomainEvent::SignInFailed(e) => change_credentials(state, event, |view| {
                view.failures = e.failures;
                view.last_failure_at = Some(e.at);
            }),
            DomainEvent::AccountLocked(e) => change_credentials(state, event, |view| {
                view.locked_until = Some(e.until);
                view.lockouts = view.lockouts.saturating_add(1);
                view.failures = 0;
            }),
            DomainEvent::SignInFailuresCleared(_) => change_credentials(state, event, |view| {
                view.failures = 0;
                view.lockouts = 0;
                view.locked_until = None;
            }),
            DomainEvent::AccountUnlocked(_) => change_credentials(state, event, |view| {
                view.failures = 0;
                view.locked_until = None;
            }),
            // Outstanding emailed tokens are the write side's business (it reads them from the
            // aggregate's stream); here they only move the aggregate's position.
            DomainEvent::SecretTokenIssued(_)
            | DomainEvent::SecretTokenRedeemed(_)
            | DomainEvent::SecretTokenMissed(_) => change_credentials(state, event, |_| {}),
            DomainEvent::TotpEnrolmentStarted(e) => change_credentials(state, event, |view| {
                view.totp_pending = Some(e.secret);
            }),
            DomainEvent::TotpEnabled(e) => change_credentials(state, event, |view| {
                view.totp = view.totp_pending.take();
                view.totp_last_step = e.step;
            }),
            DomainEvent::TotpCodeUsed(e) => change_credentials(state, event, |view| {
                view.totp_last_step = e.step;
            }),
            DomainEvent::TotpDisabled(_) => change_credentials(state, event, |view| {
                view.totp = None;
                view.totp_pending = None;
                if view.passkeys.is_empty() {
                    view.recovery_codes.clear();
                }
            }),
            DomainEvent::PasskeyRegistered(e) => {
                let user = event.envelope.aggregate.id.clone();
                let name = seal_text(self.seal.as_ref(), &user, "name", &e.name)?;
                change_credentials(state, event, |view| {
                    view.passkeys.push(PasskeyView {
                        credential: e.credential,
                        name,
                        public_key: e.public_key,
                        counter: e.counter,
                        created_at: e.at,
                        last_used_at: None,
                        last_ceremony: None,
                    })
                })
            }
            DomainEvent::PasskeyUsed(e) => change_credentials(state, event, |view| {
                if let Some(passkey) = view
                    .passkeys
                    .iter_mut()
                    .find(|p| p.credential == e.credential)
                {
                    passkey.counter = passkey.counter.max(e.counter);
                    passkey.last_used_at = Some(e.at);
                    passkey.last_ceremony =
                        Some(passkey.last_ceremony.map_or(e.ceremony_started_at, |last| {
                            last.max(e.ceremony_started_at)
                        }));
                }
            }),
            DomainEvent::PasskeyRemoved(e) => change_credentials(state, event, |view| {
                view.passkeys.retain(|p| p.credential != e.credential);
                if !view.has_second_factor() {
                    view.recovery_codes.clear();
                }
            }),
            DomainEvent::PasskeyCounterRegressed(_) => change_credentials(state, event, |_| {}),
            DomainEvent::RecoveryCodesGenerated(e) => change_credentials(state, event, |view| {
                view.recovery_codes = e.codes;
            }),
            DomainEvent::RecoveryCodeUsed(e) => change_credentials(state, event, |view| {
                view.recovery_codes.retain(|code| code != &e.code);
            }),

            // ---- sessions
            DomainEvent::SessionStarted(e) => session_started(state, self.seal.as_ref(), event, e),
            DomainEvent::SessionRefreshed(SessionRefreshed {
                refresh,
                generation,
                at,
            }) => {
                let index = keys::refresh(&refresh);
                let changed = change_session(state, event, |view| {
                    view.refresh = refresh;
                    view.generation = generation;
                    view.last_active_at = at;
                })?;
                if let Some(id) = changed {
                    state.insert(index, id.to_string());
                }
                Ok(())
            }
            DomainEvent::SessionTenantSwitched(SessionTenantSwitched {
                tenant,
                refresh,
                generation,
                at,
            }) => {
                let index = keys::refresh(&refresh);
                let changed = change_session(state, event, |view| {
                    view.tenant = tenant;
                    view.refresh = refresh;
                    view.generation = generation;
                    view.last_active_at = at;
                })?;
                if let Some(id) = changed {
                    state.insert(index, id.to_string());
                }
                Ok(())
            }
            DomainEvent::AuthorizationCodeIssued(e) => code_issued(state, event, e),
            DomainEvent::SessionRevoked(SessionRevoked { reason }) => {
                // A code revoked before its exchange: nothing started, nothing to show.
                if let Ok(id) = Ulid::from_string(&event.envelope.aggregate.id)
                    && state.get(keys::pending_code(&id))?.is_some()
                    && state.get(keys::session(&id))?.is_none()
                {
                    state.remove(keys::pending_code(&id));
                    return Ok(());
                }
                change_session(state, event, |view| {
                    // Revocation is final: a second one (which the write side does not append)
                    // does not rewrite why or when the session ended.
                    if view.revoked.is_none() {
                        view.revoked = Some(reason);
                        view.revoked_at = Some(occurred_at);
                    }
                })
                .map(drop)
            }

            // ---- invitations
            DomainEvent::InvitationSent(e) => invitation_sent(state, event, e),
            DomainEvent::InvitationResent(InvitationResent { token, expires_at }) => {
                let index = keys::invitation_token(&token);
                let changed = change_invitation(state, event, |view| {
                    view.token = token;
                    view.expires_at = expires_at;
                    view.resent = view.resent.saturating_add(1);
                })?;
                if let Some(view) = changed {
                    state.insert(index, token_target(&view));
                }
                Ok(())
            }
            DomainEvent::InvitationAccepted(_) => {
                let changed = change_invitation(state, event, |view| {
                    view.status = InvitationStatus::Accepted;
                    view.accepted_at = view.accepted_at.or(Some(occurred_at));
                })?;
                if let Some(view) = changed {
                    state.remove(keys::open_invitation(&view.tenant, &view.user, &view.id));
                }
                Ok(())
            }
            DomainEvent::InvitationRevoked(_) => {
                let changed = change_invitation(state, event, |view| {
                    view.status = InvitationStatus::Revoked;
                    view.revoked_at = view.revoked_at.or(Some(occurred_at));
                })?;
                if let Some(view) = changed {
                    state.remove(keys::open_invitation(&view.tenant, &view.user, &view.id));
                }
                Ok(())
            }

            // ---- erasure: the sources of the user's sessions are personal data. (Read again
            // from the log they are already gone; this removes them from a tree built before.)
            DomainEvent::UserErased(_) => forget_session_sources(state, event),

            // ---- OpenID Connect clients and consents
            DomainEvent::ClientRegistered(e) => client_registered(state, event, e),
            DomainEvent::ClientUpdated(e) => change_client(state, event, |view| {
                view.settings = e.settings;
                view.updated_at = occurred_at;
            }),
            DomainEvent::ClientSecretRotated(e) => change_client(state, event, |view| {
                view.secret = Some(e.secret);
                view.secret_rotated_at = Some(occurred_at);
            }),
            DomainEvent::ClientRemoved(_) => change_client(state, event, |view| {
                view.removed_at = view.removed_at.or(Some(occurred_at));
            }),
            DomainEvent::ClientCredentialsUsed(e) => change_client(state, event, |view| {
                view.last_used_at = Some(e.at);
            }),
            DomainEvent::ConsentGranted(e) => consent_granted(state, event, e),
            DomainEvent::ConsentRevoked(_) => consent_revoked(state, event),

            // ---- upstream identity providers and the identities linked through them
            DomainEvent::IdentityProviderConfigured(e) => provider_configured(state, event, e),
            DomainEvent::IdentityProviderRemoved(_) => {
                if let Some(tenant) = &event.envelope.tenant {
                    state.remove(keys::provider(tenant, &event.envelope.aggregate.id));
                }
                Ok(())
            }
            DomainEvent::IdentityLinked(e) => {
                let Some(tenant) = event.envelope.tenant.clone() else {
                    state.skip("IdentityLinked without a tenant".to_owned());
                    return Ok(());
                };
                let id = event.envelope.aggregate.id.clone();
                let view = LinkView {
                    tenant: tenant.clone(),
                    user: e.user,
                    provider: e.provider.clone(),
                    id: id.clone(),
                    via: e.via,
                    linked_at: occurred_at,
                    position: event.position,
                };
                save(state, keys::link(&e.user, &tenant, &e.provider, &id), &view)
            }
            DomainEvent::IdentityUnlinked(e) => {
                if let Some(tenant) = &event.envelope.tenant {
                    state.remove(keys::link(
                        &e.user,
                        tenant,
                        &e.provider,
                        &event.envelope.aggregate.id,
                    ));
                }
                Ok(())
            }

            // ---- API keys
            DomainEvent::ApiKeyIssued(e) => api_key_issued(state, event, e),
            DomainEvent::ApiKeyRevoked(_) => change_api_key(state, event, |view| {
                view.revoked_at = view.revoked_at.or(Some(occurred_at));
            }),
            DomainEvent::ApiKeyUsed(e) => change_api_key(state, event, |view| {
                view.last_used_at = Some(e.at);
            }),

            // Tenants, users, memberships and email claims are the directory's business; roles,
            // entities and records the access read model's.
            DomainEvent::TenantCreated(_)
            | DomainEvent::TenantRenamed(_)
            | DomainEvent::TenantSettingsChanged(_)
            | DomainEvent::UserRegistered(_)
            | DomainEvent::UserInvited(_)
            | DomainEvent::UserSuspended(_)
            | DomainEvent::UserReinstated(_)
            | DomainEvent::UserDeactivated(_)
            | DomainEvent::UserReactivated(_)
            | DomainEvent::UserFlagsChanged(_)
            | DomainEvent::UserActivated(_)
            | DomainEvent::EmailVerified(_)
            | DomainEvent::UserProfileChanged(_)
            | DomainEvent::UserAttributesChanged(_)
            | DomainEvent::UserProvisioningIdsChanged(_)
            | DomainEvent::UserAttributeDefined(_)
            | DomainEvent::UserAttributeRemoved(_)
            | DomainEvent::EmailReleased(_)
            | DomainEvent::EmailChangeRequested(_)
            | DomainEvent::EmailChanged(_)
            | DomainEvent::RoleAssigned(_)
            | DomainEvent::RoleRevoked(_)
            | DomainEvent::PermissionsGranted(_)
            | DomainEvent::PermissionsRevoked(_)
            | DomainEvent::MemberRemoved(_)
            | DomainEvent::EmailClaimed(_)
            | DomainEvent::ResourceDefined(_)
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
            | DomainEvent::RoleLapsed(_)
            | DomainEvent::PermissionsLapsed(_)
            | DomainEvent::RecordGrantLapsed(_)
            | DomainEvent::LocalRoleLapsed(_)
            | DomainEvent::ChainCheckpointed(_)
            | DomainEvent::AdminRemovalReserved(_)
            | DomainEvent::AdminRemovalSettled(_) => Ok(()),
        }
    }
}

/// Applies an event of the credentials aggregate (whose id is the user's) to its view, creating
/// the view if this is the aggregate's first event: like the aggregate, it starts empty.
fn change_credentials(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(&mut CredentialsView),
) -> Result<(), ApplyError> {
    let Ok(user) = event.envelope.aggregate.id.parse::<UserId>() else {
        state.skip(format!(
            "{} with an invalid user id {:?}",
            event.envelope.event_type, event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let key = keys::credentials(&user);
    let mut view = load::<CredentialsView>(state, &key)?.unwrap_or(CredentialsView {
        user,
        password: None,
        password_set_at: None,
        totp_pending: None,
        totp: None,
        totp_last_step: 0,
        recovery_codes: Vec::new(),
        passkeys: Vec::new(),
        failures: 0,
        last_failure_at: None,
        locked_until: None,
        lockouts: 0,
        position: event.position,
    });
    change(&mut view);
    view.position = event.position;
    save(state, key, &view)
}

fn session_started(
    state: &mut Staged<'_>,
    seal: &dyn PersonalSeal,
    event: &RecordedEvent,
    e: SessionStarted,
) -> Result<(), ApplyError> {
    let Some(id) = aggregate_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::session(&id);
    if state.get(&key)?.is_some() {
        state.skip(format!(
            "SessionStarted of session {id} that had already started"
        ));
        return Ok(());
    }
    let view = SessionView {
        id,
        user: e.user,
        tenant: e.tenant,
        method: e.method,
        started_at: e.at,
        last_active_at: e.at,
        expires_at: e.expires_at,
        idle_timeout_seconds: e.idle_timeout_seconds,
        remembered: e.remembered,
        generation: 0,
        refresh: e.refresh,
        revoked: None,
        revoked_at: None,
        ip: seal_option(seal, &e.user.to_string(), "ip", e.ip.as_deref())?,
        user_agent: seal_option(
            seal,
            &e.user.to_string(),
            "user_agent",
            e.user_agent.as_deref(),
        )?,
        position: event.position,
        client: None,
        browser_session: None,
    };
    let mut view = view;
    // An application's session, started by exchanging its code.
    if let Some(pending) = load::<PendingCode>(state, &keys::pending_code(&id))? {
        state.remove(keys::pending_code(&id));
        view.client = Some(pending.client);
        view.browser_session = pending.browser_session;
        if let Some(parent) = &view.browser_session {
            state.insert(keys::child_session(parent, &id), id.to_string());
        }
    }
    save(state, key, &view)?;
    state.insert(keys::refresh(&view.refresh), id.to_string());
    state.insert(keys::user_session(&view.user, &id), id.to_string());
    if view.client.is_some() {
        // An application's session is not a sign-in of its own.
        return Ok(());
    }

    // The latest sign-in by time, whatever order replicas' sign-ins reached the log in.
    let last_key = keys::last_sign_in(&view.user);
    let earlier = state
        .get(&last_key)?
        .map(|bytes| parse_time(&last_key, &bytes))
        .transpose()?;
    if earlier.is_none_or(|earlier| earlier < view.started_at) {
        let text = view.started_at.format(&Rfc3339).map_err(|error| {
            ApplyError::Rejected(format!("cannot encode the sign-in time: {error}"))
        })?;
        state.insert(last_key, text);
    }
    Ok(())
}

/// What the identity model keeps of an application's code until it is exchanged.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingCode {
    client: String,
    browser_session: Option<Ulid>,
}

fn code_issued(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: AuthorizationCodeIssued,
) -> Result<(), ApplyError> {
    let Some(id) = aggregate_ulid(state, event) else {
        return Ok(());
    };
    let pending = PendingCode {
        client: e.client,
        browser_session: Ulid::from_string(&e.browser_session).ok(),
    };
    save(state, keys::pending_code(&id), &pending)
}

fn client_registered(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: ClientRegistered,
) -> Result<(), ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::client(&tenant, &id);
    if state.get(&key)?.is_some() {
        state.skip(format!(
            "ClientRegistered of client {id} that was already registered"
        ));
        return Ok(());
    }
    let at = event.envelope.occurred_at;
    let view = ClientView {
        id,
        tenant,
        kind: e.kind,
        settings: e.settings,
        secret: e.secret,
        created_at: at,
        updated_at: at,
        secret_rotated_at: None,
        removed_at: None,
        last_used_at: None,
        created_by: event.envelope.actor.clone(),
        position: event.position,
    };
    save(state, key, &view)
}

/// Changes an existing client of the event's tenant.
fn change_client(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(&mut ClientView),
) -> Result<(), ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::client(&tenant, &id);
    let Some(mut view) = load::<ClientView>(state, &key)? else {
        state.skip(format!(
            "{} of client {id} that was never registered",
            event.envelope.event_type
        ));
        return Ok(());
    };
    change(&mut view);
    view.position = event.position;
    save(state, key, &view)
}

fn consent_granted(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: ConsentGranted,
) -> Result<(), ApplyError> {
    let Some(tenant) = event.envelope.tenant.clone() else {
        state.skip("ConsentGranted without a tenant".to_owned());
        return Ok(());
    };
    let view = ConsentView {
        tenant: tenant.clone(),
        user: e.user,
        client: e.client.clone(),
        scopes: e.scopes,
        granted_at: event.envelope.occurred_at,
        position: event.position,
    };
    save(state, keys::consent(&tenant, &e.user, &e.client), &view)
}

fn provider_configured(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: IdentityProviderConfigured,
) -> Result<(), ApplyError> {
    let Some(tenant) = event.envelope.tenant.clone() else {
        state.skip("IdentityProviderConfigured without a tenant".to_owned());
        return Ok(());
    };
    let id = event.envelope.aggregate.id.clone();
    let key = keys::provider(&tenant, &id);
    // Configured again without a secret keeps the one it had (a removed provider's view is gone,
    // and its secret with it, as the aggregate forgets it).
    let kept = match e.secret {
        Some(secret) => Some(secret),
        None => load::<ProviderView>(state, &key)?.and_then(|view| view.secret),
    };
    let view = ProviderView {
        tenant,
        id,
        settings: e.settings,
        secret: kept,
        configured_at: event.envelope.occurred_at,
        position: event.position,
    };
    save(state, key, &view)
}

fn consent_revoked(state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
    // The aggregate's id is `<client>_<user>`.
    let (Some(tenant), Some((client, user))) = (
        event.envelope.tenant.clone(),
        event.envelope.aggregate.id.rsplit_once('_'),
    ) else {
        state.skip(format!(
            "ConsentRevoked of an invalid consent {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    let Ok(user) = user.parse::<UserId>() else {
        state.skip(format!(
            "ConsentRevoked of an invalid consent {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    state.remove(keys::consent(&tenant, &user, client));
    Ok(())
}

/// Removes the IP address and user agent from every session of an erased user. The sessions'
/// positions stay: an erasure is not an event of theirs.
fn forget_session_sources(state: &mut Staged<'_>, event: &RecordedEvent) -> Result<(), ApplyError> {
    let Ok(user) = event.envelope.aggregate.id.parse::<UserId>() else {
        state.skip(format!(
            "UserErased with an invalid user id {:?}",
            event.envelope.aggregate.id
        ));
        return Ok(());
    };
    for (_, value) in state.scan_prefix(keys::sessions_of(&user))? {
        let Some(id) = std::str::from_utf8(&value)
            .ok()
            .and_then(|text| Ulid::from_string(text).ok())
        else {
            continue;
        };
        let key = keys::session(&id);
        if let Some(mut view) = load::<SessionView>(state, &key)?
            && (view.ip.is_some() || view.user_agent.is_some())
        {
            view.ip = None;
            view.user_agent = None;
            save(state, key, &view)?;
        }
    }
    Ok(())
}

/// Changes an existing session; returns its id, or `None` if the event was skipped.
fn change_session(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(&mut SessionView),
) -> Result<Option<Ulid>, ApplyError> {
    let Some(id) = aggregate_ulid(state, event) else {
        return Ok(None);
    };
    let key = keys::session(&id);
    let Some(mut view) = load::<SessionView>(state, &key)? else {
        state.skip(format!(
            "{} of session {id} that never started",
            event.envelope.event_type
        ));
        return Ok(None);
    };
    change(&mut view);
    view.position = event.position;
    save(state, key, &view)?;
    Ok(Some(id))
}

fn invitation_sent(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: InvitationSent,
) -> Result<(), ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::invitation(&tenant, &id);
    if state.get(&key)?.is_some() {
        state.skip(format!(
            "InvitationSent of invitation {id} in tenant {tenant} that was already sent"
        ));
        return Ok(());
    }
    let view = InvitationView {
        id,
        tenant,
        user: e.user,
        roles: e.roles,
        status: InvitationStatus::Sent,
        token: e.token,
        sent_at: event.envelope.occurred_at,
        expires_at: e.expires_at,
        resent: 0,
        delivery: e.delivery,
        accepted_at: None,
        revoked_at: None,
        invited_by: event.envelope.actor.clone(),
        position: event.position,
        sent_position: event.position,
    };
    save(state, key, &view)?;
    state.insert(keys::invitation_token(&view.token), token_target(&view));
    state.insert(
        keys::open_invitation(&view.tenant, &view.user, &id),
        Vec::new(),
    );
    Ok(())
}

/// Changes an existing invitation; returns it as changed, or `None` if the event was skipped.
fn change_invitation(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(&mut InvitationView),
) -> Result<Option<InvitationView>, ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(None);
    };
    let key = keys::invitation(&tenant, &id);
    let Some(mut view) = load::<InvitationView>(state, &key)? else {
        state.skip(format!(
            "{} of invitation {id} in tenant {tenant} that was never sent",
            event.envelope.event_type
        ));
        return Ok(None);
    };
    change(&mut view);
    view.position = event.position;
    save(state, key, &view)?;
    Ok(Some(view))
}

/// What an invitation token index points to: `<tenant>/<invitation id>`.
fn token_target(view: &InvitationView) -> String {
    format!("{}/{}", view.tenant, view.id)
}

fn api_key_issued(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    e: ApiKeyIssued,
) -> Result<(), ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::api_key(&id);
    if state.get(&key)?.is_some() {
        state.skip(format!(
            "ApiKeyIssued of API key {id} that was already issued"
        ));
        return Ok(());
    }
    let view = ApiKeyView {
        id,
        tenant,
        owner: e.owner,
        name: e.name,
        secret: e.secret,
        restriction: e.restriction,
        created_at: event.envelope.occurred_at,
        expires_at: e.expires_at,
        revoked_at: None,
        last_used_at: None,
        created_by: event.envelope.actor.clone(),
        position: event.position,
    };
    save(state, key, &view)?;
    state.insert(keys::tenant_api_key(&view.tenant, &id), Vec::new());
    state.insert(
        keys::owner_api_key(&view.tenant, &view.owner, &id),
        Vec::new(),
    );
    Ok(())
}

/// Changes an existing API key of the event's tenant.
fn change_api_key(
    state: &mut Staged<'_>,
    event: &RecordedEvent,
    change: impl FnOnce(&mut ApiKeyView),
) -> Result<(), ApplyError> {
    let Some((tenant, id)) = tenant_and_ulid(state, event) else {
        return Ok(());
    };
    let key = keys::api_key(&id);
    let event_type = &event.envelope.event_type;
    let Some(mut view) = load::<ApiKeyView>(state, &key)? else {
        state.skip(format!(
            "{event_type} of API key {id} that was never issued"
        ));
        return Ok(());
    };
    // Keys are stored by id alone, but the stream is the tenant's: another tenant's stream with
    // the same id is another aggregate, which this table cannot hold.
    if view.tenant != tenant {
        state.skip(format!(
            "{event_type} of API key {id} in tenant {tenant}, but it was issued in {}",
            view.tenant
        ));
        return Ok(());
    }
    change(&mut view);
    view.position = event.position;
    save(state, key, &view)
}

/// The aggregate id as a ULID in its canonical (upper-case) text, the only form the application
/// writes; skips the event otherwise.
fn aggregate_ulid(state: &mut Staged<'_>, event: &RecordedEvent) -> Option<Ulid> {
    let raw = &event.envelope.aggregate.id;
    let id = Ulid::from_string(raw)
        .ok()
        .filter(|id| id.to_string() == *raw);
    if id.is_none() {
        state.skip(format!(
            "{} with an invalid {} id {raw:?}",
            event.envelope.event_type,
            event.envelope.aggregate.kind.as_str()
        ));
    }
    id
}

/// The tenant and ULID of an event of a tenant-scoped aggregate; skips the event without them.
fn tenant_and_ulid(state: &mut Staged<'_>, event: &RecordedEvent) -> Option<(TenantId, Ulid)> {
    let Some(tenant) = event.envelope.tenant.clone() else {
        state.skip(format!("{} without a tenant", event.envelope.event_type));
        return None;
    };
    aggregate_ulid(state, event).map(|id| (tenant, id))
}

fn parse_time(key: &[u8], bytes: &[u8]) -> Result<OffsetDateTime, ApplyError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        .ok_or_else(|| ApplyError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "not an RFC 3339 time".to_owned(),
        })
}

fn load<T: DeserializeOwned>(state: &Staged<'_>, key: &[u8]) -> Result<Option<T>, ApplyError> {
    state.get_json(key)
}

fn save<T: Serialize>(state: &mut Staged<'_>, key: Vec<u8>, value: &T) -> Result<(), ApplyError> {
    state.put_json(key, value)
}
