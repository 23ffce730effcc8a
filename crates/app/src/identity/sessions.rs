//! Sessions after sign-in: refresh with rotation and reuse detection, tenant switch, listing,
//! sign-out and revocation, and `me`.

use std::collections::BTreeSet;
use std::sync::Arc;

use idstream_auth::{OpaqueToken, TokenKind};
use idstream_directory::UserView;
use idstream_domain::access::Permission;
use idstream_domain::aggregate::SessionAggregate;
use idstream_domain::identity::session::{
    RevocationReason, SessionCommand, SessionError, SessionStatus,
};
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_identity::SessionView;
use ulid::Ulid;

use super::signin::{Tokens, user_ctx};
use super::{Identity, identity_storage, session_key};
use crate::core::{Core, internal};
use crate::policy::Caller;
use crate::{AppError, CommandContext};

/// `GET /v1/auth/me`
#[derive(Debug, Clone)]
pub struct Me {
    pub user: UserView,
    pub tenant: TenantId,
    pub roles: BTreeSet<RoleName>,
    pub global_access: bool,
    pub permissions: BTreeSet<Permission>,
    pub session: Option<Ulid>,
    pub last_sign_in: Option<time::OffsetDateTime>,
    /// The user's values of the attributes the current tenant defines.
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// What the account page shows of the signed-in person: [`Identity::me`] without the effective
/// permissions, with the names a person reads (the organisation's, the attributes' labels).
#[derive(Debug, Clone)]
pub struct AccountOverview {
    pub user: UserView,
    /// The current organisation's display name.
    pub organisation: String,
    /// How many organisations the person belongs to.
    pub organisations: usize,
    pub roles: BTreeSet<RoleName>,
    /// The person's values of the attributes the current tenant defines: (label, value).
    pub attributes: Vec<(String, serde_json::Value)>,
}

/// One of the caller's organisations (`GET /v1/auth/tenants`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyTenant {
    pub id: TenantId,
    pub name: String,
    /// The caller's session is in this tenant now.
    pub current: bool,
}

impl Core {
    /// The session a refresh token belongs to, and the token's blind index.
    async fn session_of_refresh(
        &self,
        presented: &str,
    ) -> Result<(SessionView, idstream_domain::secret::BlindIndex), AppError> {
        let text = OpaqueToken::normalize_presented(TokenKind::Refresh, presented)
            .ok_or(AppError::InvalidToken)?;
        let index = self.refresh_index(&text);
        let session = self
            .find(|core| {
                core.identity()
                    .session_by_refresh(&index)
                    .map_err(identity_storage)
            })
            .await?
            .ok_or(AppError::InvalidToken)?;
        let view = self
            .find(|core| core.identity().session(&session).map_err(identity_storage))
            .await?
            .ok_or(AppError::InvalidToken)?;
        Ok((view, index))
    }

    pub(crate) fn live_sessions(&self, user: UserId) -> Result<Vec<SessionView>, AppError> {
        let now = self.now();
        Ok(self
            .identity()
            .sessions_of(&user)
            .map_err(identity_storage)?
            .into_iter()
            .filter(|s| s.is_live_at(now))
            .collect())
    }

    /// Revokes every live session of `user` but `except`; the outcome's position covers all.
    pub(crate) async fn revoke_all_sessions(
        &self,
        ctx: &CommandContext,
        user: UserId,
        reason: RevocationReason,
        except: Option<Ulid>,
    ) -> Result<crate::Outcome, AppError> {
        self.catch_up().await?;
        let mut position = self.read_models.min_position();
        for session in self.live_sessions(user)? {
            if Some(session.id) == except {
                continue;
            }
            let outcome = self.revoke_session_as(ctx, session.id, reason).await?;
            position = position.max(outcome.position);
        }
        Ok(crate::Outcome {
            position,
            id: user.to_string(),
            replayed: false,
        })
    }

    async fn revoke_session_as(
        &self,
        ctx: &CommandContext,
        session: Ulid,
        reason: RevocationReason,
    ) -> Result<crate::Outcome, AppError> {
        let outcome = self
            .execute::<SessionAggregate>(
                ctx,
                &session_key(session),
                "",
                SessionCommand::Revoke { reason },
            )
            .await
            .map_err(|e| match e {
                AppError::Session(SessionError::Ended) => AppError::SessionNotFound,
                other => other,
            })?;
        // Revocation is immediate: its tokens stop working on this replica before we answer.
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }
}

/// A refresh or switch on a session that has ended reads as an invalid token.
fn ended(e: AppError) -> AppError {
    match e {
        AppError::Session(SessionError::Ended) => AppError::InvalidToken,
        other => other,
    }
}

impl Identity {
    /// Exchanges a refresh token for new tokens. The presented token dies; presenting it again
    /// revokes the session (whoever holds a copy loses it too).
    ///
    /// Who: anyone (holding the refresh token).
    pub async fn refresh(&self, caller: &Caller, presented: &str) -> Result<Tokens, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("refresh", caller.client().ip())?;
        let (view, index) = self.session_of_refresh(presented).await?;
        let now = self.now();
        // A suspended or deactivated user's token is refused like a dead one, before it is
        // rotated: the refusal changes nothing.
        if self.require_active(view.user, now).is_err() {
            return Err(AppError::InvalidToken);
        }
        let next = OpaqueToken::generate(TokenKind::Refresh);
        let command = SessionCommand::Refresh {
            presented: index,
            next: self.refresh_index(next.reveal()),
            now,
            client: None,
        };
        let (outcome, state) = self
            .execute_to_state::<SessionAggregate>(
                &user_ctx(view.user),
                &session_key(view.id),
                "",
                command,
            )
            .await
            .map_err(ended)?;
        if state.status != SessionStatus::Active {
            // The token had been rotated already: the session was just revoked. Wait until the
            // read models show it, so its access tokens stop working before this answer leaves.
            tracing::warn!(session = %view.id, "a rotated refresh token was presented again; the session is revoked");
            self.wait_for(outcome.position).await?;
            return Err(AppError::InvalidToken);
        }
        // Suspended between the check above and the rotation: the new token is not handed out.
        self.require_active(view.user, now)
            .map_err(|_| AppError::InvalidToken)?;
        let tenant = state.tenant.unwrap_or(view.tenant);
        Ok(self.tokens(
            view.user,
            tenant,
            view.id,
            view.method,
            next.reveal().to_owned(),
            state.remembered,
            outcome.position,
            now,
        ))
    }

    /// Moves the caller's session to another tenant of theirs, rotating its refresh token.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn switch_tenant(
        &self,
        caller: &Caller,
        tenant: TenantId,
        refresh_token: &str,
    ) -> Result<Tokens, AppError> {
        let caller = self.own_session(caller)?;
        let session = caller.session().ok_or(AppError::SessionOnly)?;
        if !self.user_tenants(&caller.user)?.contains(&tenant) {
            return Err(AppError::NotAMember);
        }
        let (view, index) = self.session_of_refresh(refresh_token).await?;
        if view.id != session {
            return Err(AppError::InvalidToken);
        }
        let next = OpaqueToken::generate(TokenKind::Refresh);
        let now = self.now();
        let command = SessionCommand::SwitchTenant {
            tenant: tenant.clone(),
            presented: index,
            next: self.refresh_index(next.reveal()),
            now,
        };
        let (outcome, state) = self
            .execute_to_state::<SessionAggregate>(
                &user_ctx(caller.user),
                &session_key(session),
                "",
                command,
            )
            .await
            .map_err(ended)?;
        if state.status != SessionStatus::Active {
            return Err(AppError::InvalidToken);
        }
        Ok(self.tokens(
            caller.user,
            tenant,
            session,
            view.method,
            next.reveal().to_owned(),
            state.remembered,
            outcome.position,
            now,
        ))
    }

    /// The caller's organisations (the tenants they are a member of), by name, the current
    /// one marked: what a person chooses from after signing in when they belong to several.
    ///
    /// Who: the signed-in user, through a session.
    pub fn my_tenants(&self, caller: &Caller) -> Result<Vec<MyTenant>, AppError> {
        let caller = self.own_session(caller)?;
        let mut tenants = Vec::new();
        for tenant in self.user_tenants(&caller.user)? {
            // A tenant being created may not be in the directory yet: leave it out for now.
            let Some(view) = self.tenant_view_now(&tenant)? else {
                continue;
            };
            tenants.push(MyTenant {
                current: tenant == caller.tenant,
                id: tenant,
                name: view.name.clone(),
            });
        }
        tenants.sort_by(|a, b| {
            (a.name.to_lowercase(), a.id.as_str()).cmp(&(b.name.to_lowercase(), b.id.as_str()))
        });
        Ok(tenants)
    }

    /// The roles `user` holds in `tenant` (none for a non-member).
    fn roles_in(&self, tenant: &TenantId, user: &UserId) -> Result<BTreeSet<RoleName>, AppError> {
        Ok(self
            .directory()
            .membership(tenant, user)
            .map_err(internal)?
            .map(|m| m.roles)
            .unwrap_or_default())
    }

    /// The signed-in person's account at a glance, read once from each read model it needs.
    ///
    /// Who: the signed-in user (also while a second factor must be set up).
    pub fn account_overview(&self, caller: &Caller) -> Result<Arc<AccountOverview>, AppError> {
        let caller = self.own_account_while_enrolling(caller)?;
        self.account_now(&caller.user, &caller.tenant, || {
            self.read_account(&caller.user, &caller.tenant)
        })
    }

    /// [`Identity::account_overview`] of `user` in `tenant`, read from the directory.
    pub(crate) fn read_account(
        &self,
        user: &UserId,
        tenant: &TenantId,
    ) -> Result<Option<AccountOverview>, AppError> {
        let Some(user) = self.directory().user(user).map_err(internal)? else {
            return Ok(None);
        };
        let roles = self.roles_in(tenant, &user.id)?;
        let organisations = self.user_tenants(&user.id)?.len();
        let tenant_view = self
            .tenant_view_now(tenant)?
            .ok_or(AppError::TenantNotFound)?;
        let attributes = user
            .attributes
            .get(tenant)
            .map(|values| idstream_domain::attributes::visible(&tenant_view.attributes, values))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                let label = tenant_view
                    .attributes
                    .get(&name)
                    .map_or_else(|| name.clone(), |d| d.label.clone());
                (label, value)
            })
            .collect();
        Ok(Some(AccountOverview {
            organisations,
            organisation: tenant_view.name.clone(),
            roles,
            attributes,
            user,
        }))
    }

    /// The administration console's gate: a person signed in through a session, whose
    /// `dashboard_access` flag is on. Each screen's own operation then checks the permission it
    /// needs (the users screen `users:read`, …).
    ///
    /// Who: the signed-in user, through a session.
    pub fn console(&self, caller: &Caller) -> Result<(), AppError> {
        let caller = self.own_session(caller)?;
        if self.user_now(&caller.user)?.flags.dashboard_access {
            Ok(())
        } else {
            Err(AppError::DashboardAccessDisabled)
        }
    }

    /// The language the signed-in person chose for mails and pages, if they chose one.
    ///
    /// Who: the signed-in user (also while a second factor must be set up); `None` for anyone
    /// else.
    pub fn chosen_language(&self, caller: &Caller) -> Option<idstream_mailer::templates::Lang> {
        let caller = self.own_account_while_enrolling(caller).ok()?;
        self.user_language(caller.user).ok().flatten()
    }

    /// Ends the caller's session.
    ///
    /// Who: the signed-in user, through a session (also while a second factor must be set up).
    pub async fn sign_out(&self, caller: &Caller) -> Result<crate::Outcome, AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        let session = caller.session().ok_or(AppError::SessionOnly)?;
        // The applications signed in through this browser session sign out with it.
        self.end_application_sessions(session, RevocationReason::SignedOut)
            .await?;
        self.revoke_session_as(&user_ctx(caller.user), session, RevocationReason::SignedOut)
            .await
    }

    /// The caller's live sessions, newest first.
    ///
    /// Who: the signed-in user, through a session.
    pub fn my_sessions(&self, caller: &Caller) -> Result<Vec<SessionView>, AppError> {
        let caller = self.own_session(caller)?;
        self.live_sessions(caller.user)
    }

    /// Revokes one of the caller's own sessions (another device, or this one).
    ///
    /// Who: the signed-in user, through a session.
    pub async fn revoke_my_session(
        &self,
        caller: &Caller,
        session: Ulid,
    ) -> Result<crate::Outcome, AppError> {
        let caller = self.own_session(caller)?;
        let view = self
            .find(|core| core.identity().session(&session).map_err(identity_storage))
            .await?
            .filter(|v| v.user == caller.user)
            .ok_or(AppError::SessionNotFound)?;
        self.revoke_session_as(
            &user_ctx(caller.user),
            view.id,
            RevocationReason::RevokedByUser,
        )
        .await
    }

    /// The caller: their profile, current tenant, roles there and effective permissions.
    ///
    /// Who: the signed-in user (a session, also while a second factor must be set up, or an API
    /// key: its owner, within its restriction).
    pub fn me(&self, caller: &Caller) -> Result<Me, AppError> {
        let caller = self.own_account_while_enrolling(caller)?;
        let user = self.user_now(&caller.user)?;
        let roles = self.roles_in(&caller.tenant, &caller.user)?;
        let (mut global_access, mut permissions) = self
            .access_view()
            .effective_permissions(&caller.tenant, &caller.user)
            .map_err(internal)?;
        // A restricted key has its restriction, within what its owner holds.
        if let super::Credential::ApiKey {
            restriction: Some(restriction),
            ..
        } = &caller.via
        {
            if global_access {
                permissions = restriction.clone();
            } else {
                permissions.retain(|p| restriction.contains(p));
            }
            global_access = false;
        }
        let definitions = self.tenant_now(&caller.tenant)?.attributes;
        let attributes = user
            .attributes
            .get(&caller.tenant)
            .map(|values| idstream_domain::attributes::visible(&definitions, values))
            .unwrap_or_default();
        Ok(Me {
            attributes,
            last_sign_in: self
                .identity()
                .last_sign_in(&caller.user)
                .map_err(identity_storage)?,
            user,
            tenant: caller.tenant.clone(),
            roles,
            global_access,
            permissions,
            session: caller.session(),
        })
    }
}
