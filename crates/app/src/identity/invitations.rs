//! Invitations: an emailed single-use link that lets someone join a tenant with the roles chosen
//! when inviting. Accepting sets the password (for a new user), verifies the address, activates
//! the user, gives the roles and signs them in.

use std::collections::BTreeSet;

use idstream_auth::{OpaqueToken, TokenKind};
use idstream_directory::UserStatus;
use idstream_domain::access::Action;
use idstream_domain::aggregate::{InvitationAggregate, MembershipAggregate, UserAggregate};
use idstream_domain::identity::invitation::{
    InvitationCommand, InvitationDelivery, InvitationError,
};
use idstream_domain::identity::session::SignInMethod;
use idstream_domain::membership::{MembershipCommand, MembershipError};
use idstream_domain::user::{UserCommand, UserError, normalize_email};
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::{InvitationStatus, InvitationView};
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use super::signin::{Tokens, user_ctx};
use super::{Identity, identity_storage, invitation_key};
use crate::core::{Core, internal, membership_key, user_key};
use crate::policy::Caller;
use crate::{AppError, CommandContext, NewUserRequest};

/// The step of [`Identity::invite`] that appends the invitation (its idempotency key's suffix).
const INVITATION_STEP: &str = "invitation";

/// `POST /v1/tenants/{tenant}/invitations`
#[derive(Debug, Clone)]
pub struct InvitationRequest {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The roles the invitee gets on accepting; the tenant's default role if empty.
    pub roles: Vec<RoleName>,
    /// By email (the service sends the link), or as a link in the answer for the inviter to pass
    /// on through their own channels.
    pub delivery: InvitationDelivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentInvitation {
    pub id: Ulid,
    pub user: UserId,
    pub expires_at: OffsetDateTime,
    pub position: Position,
    /// Whether the email went out (if not, resend); always false for a `link` invitation.
    pub email_sent: bool,
    /// The acceptance link of a `link` invitation, given this once (it is stored only as a
    /// blind index); `None` for email delivery and for the replayed answer of a retry.
    pub link: Option<String>,
}

/// `POST /v1/invitations/accept`. `Debug` redacts the token and password.
#[derive(Clone)]
pub struct AcceptInvitation {
    pub token: String,
    /// Required when the invitee has no password yet; ignored otherwise (they sign in with theirs).
    pub password: Option<String>,
    /// Remember the session the acceptance starts (see `TenantSettings::remember_days`).
    pub remember: bool,
}

impl Core {
    /// If this request (by its idempotency key) was carried out before, the answer it gave: the
    /// invitation it sent, without a second email. If that invitation was withdrawn or revoked
    /// since, that is the error: `invitation_pending` while another one of the same person is
    /// open (the invitation that stood), else `invitation_revoked` (a new request, with a new
    /// idempotency key, may send one). `None` for a request not seen before.
    async fn first_invitation_answer(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
    ) -> Result<Option<SentInvitation>, AppError> {
        let Some(first) = self
            .replayed(ctx.step_key(INVITATION_STEP).as_deref())
            .await?
        else {
            return Ok(None);
        };
        let id = Ulid::from_string(&first.id).map_err(internal)?;
        self.wait_for(first.position).await?;
        let view = self
            .identity()
            .invitation(tenant, &id)
            .map_err(identity_storage)?
            .ok_or(AppError::Invitation(InvitationError::NotFound))?;
        if view.status == InvitationStatus::Revoked {
            let now = self.now();
            let other_open = self
                .identity()
                .open_invitations_of(tenant, &view.user)
                .map_err(identity_storage)?
                .iter()
                .any(|open| open.status_at(now) == InvitationStatus::Sent);
            return Err(if other_open {
                AppError::InvitationPending
            } else {
                AppError::Invitation(InvitationError::Revoked)
            });
        }
        Ok(Some(SentInvitation {
            id,
            user: view.user,
            expires_at: view.expires_at,
            position: first.position,
            email_sent: false,
            link: None,
        }))
    }

    fn invitation_index(&self, token: &str) -> idstream_domain::secret::BlindIndex {
        self.id().keys.vault().blind_index("invitation", token)
    }

    /// Delivers an invitation's link: mails it (whether that worked, and no link), or hands
    /// it over (no mail, and the link).
    ///
    /// The mail comes from the tenant, in its language (not in the inviting administrator's
    /// browser's), and names the administrator when the invitation is theirs.
    async fn deliver_invitation(
        &self,
        caller: &Caller,
        delivery: InvitationDelivery,
        (invitee, email): (UserId, &str),
        tenant: &TenantId,
        token: &str,
        expires_at: OffsetDateTime,
    ) -> (bool, Option<String>) {
        let link = self.link(&format!("/accept-invitation?token={token}"));
        match delivery {
            InvitationDelivery::Link => (false, Some(link)),
            InvitationDelivery::Email => {
                let inviter = caller
                    .user_id()
                    .and_then(|user| self.directory().user(&user).ok().flatten())
                    .map(|view| format!("{} {}", view.first_name, view.last_name));
                let mail = idstream_mailer::templates::Mail::Invitation {
                    inviter: inviter.as_deref().map(str::trim),
                    link: &link,
                    expires_at,
                };
                // In the invitee's own language if they chose one (an existing account).
                (
                    self.mail(email, Some(invitee), Some(tenant), None, mail)
                        .await,
                    None,
                )
            }
        }
    }

    async fn require_invitation(
        &self,
        tenant: &TenantId,
        id: Ulid,
    ) -> Result<InvitationView, AppError> {
        self.find(|core| {
            core.identity()
                .invitation(tenant, &id)
                .map_err(identity_storage)
        })
        .await?
        .ok_or(AppError::Invitation(InvitationError::NotFound))
    }
}

impl std::fmt::Debug for AcceptInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptInvitation(<redacted>)")
    }
}

impl Identity {
    /// Invites someone (a new address, or an existing user of another tenant) to `tenant`.
    ///
    /// Who: `users:create` in the tenant, and for every role what giving it needs
    /// (`role.<role>:assign` and every permission of the role).
    pub async fn invite(
        &self,
        caller: &Caller,
        tenant: TenantId,
        request: InvitationRequest,
    ) -> Result<SentInvitation, AppError> {
        self.named_permission(caller, &tenant, "users", Action::Create)
            .await?;
        let ctx = caller.ctx();
        // A retry of an invitation already carried out (same idempotency key) gets the first
        // answer, not a refusal by the one-open-invitation rule below, and sends no second email.
        if let Some(first) = self.first_invitation_answer(ctx, &tenant).await? {
            return Ok(first);
        }
        let view = self.tenant_view(&tenant).await?;
        let roles: BTreeSet<RoleName> = if request.roles.is_empty() {
            [view.settings.default_role.clone()].into()
        } else {
            request.roles.iter().cloned().collect()
        };
        for role in &roles {
            self.may_give_role(caller, &tenant, role).await?;
        }
        let email = normalize_email(&request.email)?;
        let existing = self.find_user_by_email(&email).await?;
        let user = match existing {
            Some(user) => user.id,
            None => {
                let created = self
                    .create_user(
                        ctx,
                        tenant.clone(),
                        NewUserRequest {
                            email: email.clone(),
                            first_name: request.first_name,
                            last_name: request.last_name,
                            roles: vec![],
                            invite: true,
                            phone: None,
                            attributes: None,
                        },
                    )
                    .await?;
                created.id.parse().map_err(internal)?
            }
        };
        // The read model must hold every invitation the log holds, or one sent a moment ago
        // would be missed and a second one sent.
        self.catch_up().await?;
        if self
            .identity()
            .open_invitation_of(&tenant, &user)
            .map_err(identity_storage)?
            .is_some_and(|i| i.status_at(self.now()) == InvitationStatus::Sent)
        {
            // Perhaps the open one is this very request's, sent by a copy of it a moment ago.
            return self
                .first_invitation_answer(ctx, &tenant)
                .await?
                .ok_or(AppError::InvitationPending);
        }
        let id = Ulid::new();
        let token = OpaqueToken::generate(TokenKind::Invitation);
        let now = self.now();
        let lifetime = Duration::hours(i64::from(view.settings.invitation_ttl_hours));
        let outcome = self
            .execute::<InvitationAggregate>(
                ctx,
                &invitation_key(&tenant, id),
                INVITATION_STEP,
                InvitationCommand::Send {
                    user,
                    roles,
                    token: self.invitation_index(token.reveal()),
                    now,
                    lifetime,
                    delivery: request.delivery,
                },
            )
            .await?;
        if outcome.replayed {
            // The same request, in flight twice at once: the other copy appended first and
            // sends the email; this one answers as it does.
            return self
                .first_invitation_answer(ctx, &tenant)
                .await?
                .ok_or(AppError::InvitationPending);
        }
        // Two invitations of this user to this tenant may have passed the check above at once
        // (two replicas, or two requests on one). Once this replica's read models hold this one,
        // they hold every invitation appended before it: if one of them is still open (and not
        // expired), it stands and this one withdraws before any email goes out. Each sees the
        // invitations before it in the log, so at most one stands, normally the first. If that
        // cannot be known (the read models do not get there in time), this one withdraws too
        // and the error is answered, so that a retry finds no open invitation no email
        // announced (unless the withdrawal itself fails: then an administrator resends or
        // revokes it).
        let settled = match self.wait_for(outcome.position).await {
            Ok(()) => self
                .identity()
                .open_invitations_of(&tenant, &user)
                .map_err(identity_storage)
                .map(|open| {
                    !open.iter().any(|open| {
                        open.id != id
                            && open.sent_position < outcome.position
                            && open.status_at(now) == InvitationStatus::Sent
                    })
                }),
            Err(error) => Err(error),
        };
        if !matches!(settled, Ok(true)) {
            self.execute::<InvitationAggregate>(
                &ctx.without_idempotency(),
                &invitation_key(&tenant, id),
                "",
                InvitationCommand::Revoke,
            )
            .await?;
            return Err(settled.err().unwrap_or(AppError::InvitationPending));
        }
        let expires_at = now + lifetime;
        let (email_sent, link) = self
            .deliver_invitation(
                caller,
                request.delivery,
                (user, &email),
                &tenant,
                token.reveal(),
                expires_at,
            )
            .await;
        Ok(SentInvitation {
            id,
            user,
            expires_at,
            position: outcome.position,
            email_sent,
            link,
        })
    }

    /// Sends an open invitation again with a new token (the old link dies) and a new expiry.
    ///
    /// Who: `users:create` in the tenant.
    pub async fn resend_invitation(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: Ulid,
    ) -> Result<SentInvitation, AppError> {
        self.named_permission(caller, &tenant, "users", Action::Create)
            .await?;
        let ctx = caller.ctx();
        let view = self.tenant_view(&tenant).await?;
        let invitation = self.require_invitation(&tenant, id).await?;
        let user = self.require_user(invitation.user).await?;
        let (state, _) = self
            .load::<InvitationAggregate>(&invitation_key(&tenant, id))
            .await?;
        let token = OpaqueToken::generate(TokenKind::Invitation);
        let now = self.now();
        let lifetime = Duration::hours(i64::from(view.settings.invitation_ttl_hours));
        let outcome = self
            .execute::<InvitationAggregate>(
                ctx,
                &invitation_key(&tenant, id),
                "",
                InvitationCommand::Resend {
                    token: self.invitation_index(token.reveal()),
                    now,
                    lifetime,
                },
            )
            .await?;
        let expires_at = now + lifetime;
        let (email_sent, link) = self
            .deliver_invitation(
                caller,
                state.delivery,
                (user.id, &user.email),
                &tenant,
                token.reveal(),
                expires_at,
            )
            .await;
        Ok(SentInvitation {
            id,
            user: user.id,
            expires_at,
            position: outcome.position,
            email_sent,
            link,
        })
    }

    /// Withdraws an open invitation.
    ///
    /// Who: `users:create` in the tenant.
    pub async fn revoke_invitation(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: Ulid,
    ) -> Result<crate::Outcome, AppError> {
        self.named_permission(caller, &tenant, "users", Action::Create)
            .await?;
        let ctx = caller.ctx();
        self.require_invitation(&tenant, id).await?;
        self.execute::<InvitationAggregate>(
            ctx,
            &invitation_key(&tenant, id),
            "",
            InvitationCommand::Revoke,
        )
        .await
    }

    /// A tenant's invitations with their status now, oldest first.
    ///
    /// Who: `users:read` in the tenant.
    pub async fn invitations(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        after: Option<Ulid>,
        limit: usize,
    ) -> Result<Vec<InvitationView>, AppError> {
        self.named_permission(caller, tenant, "users", Action::Read)
            .await?;
        self.require_tenant(tenant).await?;
        let now = self.now();
        Ok(self
            .identity()
            .invitations(tenant, after, limit)
            .map_err(identity_storage)?
            .into_iter()
            .map(|mut v| {
                v.status = v.status_at(now);
                v
            })
            .collect())
    }

    /// Accepts an invitation with its emailed token: at most once, however many try at once.
    ///
    /// Who: anyone (holding the link).
    pub async fn accept_invitation(
        &self,
        caller: &Caller,
        request: AcceptInvitation,
    ) -> Result<Tokens, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("accept-invitation", client.ip())?;
        let text = OpaqueToken::normalize_presented(TokenKind::Invitation, &request.token)
            .ok_or(AppError::InvalidOrExpiredLink)?;
        let index = self.invitation_index(&text);
        let (tenant, id) = self
            .find(|core| {
                core.identity()
                    .invitation_by_token(&index)
                    .map_err(identity_storage)
            })
            .await?
            .ok_or(AppError::InvalidOrExpiredLink)?;
        let invitation = self.require_invitation(&tenant, id).await?;
        let now = self.now();
        if invitation.status_at(now) != InvitationStatus::Sent || invitation.token != index {
            return Err(AppError::InvalidOrExpiredLink);
        }
        let user = self.require_user(invitation.user).await?;
        if matches!(
            user.status_at(now),
            UserStatus::Suspended | UserStatus::Inactive | UserStatus::Erased
        ) {
            return Err(AppError::AccountDisabled);
        }
        let has_password = self
            .credentials_view(user.id)?
            .is_some_and(|c| c.password.is_some());
        let sealed = if has_password {
            None
        } else {
            let password = request.password.ok_or(AppError::PasswordRequired)?;
            self.check_password(user.id, Some(&tenant), &password)?;
            Some(self.seal_password(user.id, password).await?)
        };
        let ctx = user_ctx(user.id);
        // The gate: of concurrent acceptances exactly one appends.
        self.execute::<InvitationAggregate>(
            &ctx,
            &invitation_key(&tenant, id),
            "",
            InvitationCommand::Accept { token: index, now },
        )
        .await
        .map_err(|e| match e {
            AppError::Invitation(InvitationError::InvalidToken) => AppError::InvalidOrExpiredLink,
            other => other,
        })?;
        if let Some(sealed) = sealed {
            self.execute::<idstream_domain::aggregate::CredentialsAggregate>(
                &ctx,
                &super::credentials_key(user.id),
                "",
                idstream_domain::identity::credentials::CredentialsCommand::SetPassword {
                    password: sealed,
                    reason: idstream_domain::identity::credentials::PasswordReason::Initial,
                },
            )
            .await?;
        }
        match self
            .execute::<UserAggregate>(&ctx, &user_key(user.id), "", UserCommand::Activate)
            .await
        {
            Ok(_) => {}
            Err(AppError::User(UserError::Inactive)) => return Err(AppError::AccountDisabled),
            Err(e) => return Err(e),
        }
        for role in invitation.roles {
            match self
                .execute::<MembershipAggregate>(
                    &ctx,
                    &membership_key(&tenant, user.id),
                    "",
                    MembershipCommand::Assign {
                        user: user.id,
                        role,
                        expires_at: None,
                        now: self.now(),
                    },
                )
                .await
            {
                Ok(_) | Err(AppError::Membership(MembershipError::AlreadyAssigned)) => {}
                Err(e) => return Err(e),
            }
        }
        // The session's tenant must show the membership just given.
        self.catch_up().await?;
        self.start_session(
            user.id,
            tenant,
            SignInMethod::Invitation,
            client,
            request.remember,
        )
        .await
    }
}
