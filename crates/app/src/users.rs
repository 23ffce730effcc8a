//! Users: one identity across tenants. Creating them, reading them, their lifecycle
//! (suspension, deactivation, erasure), their system flags and profile, and what administrators
//! do to their sessions and lock-outs.
//!
//! Changing a person reaches every tenant they belong to, so it needs `users:update` (erasure:
//! `users:delete`) in every one of them: an administrator of one tenant cannot lock someone out
//! of another. Taking someone's standing away (suspension, deactivation, erasure) keeps the admin
//! rules: not oneself, owners only by owners, never the last administrator.

use std::collections::BTreeMap;

use idstream_directory::UserView;
use idstream_domain::access::Action;
use idstream_domain::aggregate::{
    CredentialsAggregate, MembershipAggregate, TenantAggregate, UserAggregate,
};
use idstream_domain::attributes::{self, Editor};
use idstream_domain::email::CLAIM_DEADLINE;
use idstream_domain::identity::credentials::CredentialsCommand;
use idstream_domain::identity::session::RevocationReason;
use idstream_domain::membership::{MembershipCommand, MembershipError};
use idstream_domain::user::{self, NewUser, Profile, User, UserCommand, UserError, UserFlags};
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_identity::SessionView;
use serde_json::Value;
use time::OffsetDateTime;

use crate::core::{Core, internal, membership_key, user_key, user_not_found};
use crate::identity::credentials_key;
use crate::policy::{Caller, TenantScope};
use crate::{AppError, CommandContext, Outcome, service};

service!(
    /// Users: one identity across tenants.
    Users
);

/// `POST /v1/tenants/{tenant}/users`
#[derive(Debug, Clone)]
pub struct NewUserRequest {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<RoleName>,
    /// Create the user as invited rather than active.
    pub invite: bool,
    /// A phone number to record in the profile (see [`user::normalize_phone`]).
    pub phone: Option<String>,
    /// The user's attribute values in the tenant, given by the administrator creating them:
    /// every required attribute must be among them. `None` where no administrator gives the
    /// user's details (sign-up, invitation), which records none.
    pub attributes: Option<BTreeMap<String, Option<Value>>>,
}

#[derive(Debug, Clone)]
pub struct SuspendRequest {
    pub until: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

impl Users {
    /// A user, with the tenants of theirs the caller may see: all of them for the user
    /// themselves and platform administrators, else those where the caller holds `users:read`.
    ///
    /// Who: the user themselves, or `users:read` in a tenant the user belongs to.
    pub async fn get(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<(UserView, Vec<TenantId>), AppError> {
        let scope = self.user_scope(caller, user).await?;
        let view = self.user_now(&user)?;
        let tenants = match scope {
            TenantScope::Every => self.user_tenants(&user)?,
            TenantScope::Only(visible) => {
                let mut tenants = self.user_tenants(&user)?;
                tenants.retain(|t| visible.contains(t));
                tenants
            }
        };
        Ok((view, tenants))
    }

    /// Creates a user in a tenant (active, or invited) with roles there.
    ///
    /// Who: `users:create` in the tenant, and for each role what giving it needs
    /// (`role.<role>:assign` and every permission of the role).
    pub async fn create(
        &self,
        caller: &Caller,
        tenant: TenantId,
        request: NewUserRequest,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "users", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        for role in &request.roles {
            self.may_give_role(caller, &tenant, role).await?;
        }
        self.create_verified_or_not(caller.ctx(), tenant, request)
            .await
    }

    /// Suspends a user (until a time, or until reinstated). Answers once this replica's read
    /// models hold the suspension, so the user's access tokens, refresh tokens and API keys are
    /// refused from the next request on.
    pub async fn suspend(
        &self,
        caller: &Caller,
        user: UserId,
        request: SuspendRequest,
    ) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        let guarded = self.check_deactivation(caller, user).await?;
        let command = UserCommand::Suspend {
            until: request.until,
            reason: request.reason,
            now: self.now(),
        };
        let key = user_key(user);
        let suspension = self.execute::<UserAggregate>(caller.ctx(), &key, "", command);
        let outcome = self
            .guarded_admin_removal(caller.ctx(), &guarded, user, suspension)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Ends a suspension. Like a suspension, it is in force on this replica when it answers.
    pub async fn reinstate(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        let outcome = self
            .execute::<UserAggregate>(caller.ctx(), &user_key(user), "", UserCommand::Reinstate)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Deactivates a user (they left): no sign-in and no access anywhere until reactivated.
    /// The last administrator of a tenant cannot be deactivated. Deactivating an inactive user
    /// changes nothing.
    ///
    /// Who: users:update
    pub async fn deactivate(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        let guarded = self.check_deactivation(caller, user).await?;
        let key = user_key(user);
        let deactivation =
            self.execute::<UserAggregate>(caller.ctx(), &key, "", UserCommand::Deactivate);
        let outcome = self
            .guarded_admin_removal(caller.ctx(), &guarded, user, deactivation)
            .await
            .map_err(user_not_found)?;
        // In force on this replica when it answers: the user's credentials stop working at once.
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Makes a deactivated user active again.
    ///
    /// Who: users:update
    pub async fn reactivate(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        let outcome = self
            .execute::<UserAggregate>(caller.ctx(), &user_key(user), "", UserCommand::Reactivate)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Erases a user (right to erasure, F-AU-4): records `UserErased`, which destroys the user's
    /// personal-data key (see `idstream_keys::PersonalDataLog`), so their email, names,
    /// picture and the sources of their sign-ins can no longer be read in any event, read model,
    /// replay or export; then releases the addresses they held, so they can be used again. The
    /// mail the service still keeps for those addresses (the file transport's spool) is deleted
    /// first, while the addresses can still be read, and once more after the erasure for a
    /// message sent meanwhile. The user's id stays in the log and the audit trail keeps its
    /// structure. Nobody erases themselves, and the last administrator of a tenant cannot be
    /// erased. Erasing an erased user changes nothing.
    ///
    /// Who: users:delete in every tenant the user belongs to (or platform administrator).
    pub async fn erase(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Delete).await?;
        if caller.user_id() == Some(user) {
            return Err(AppError::CannotRemoveSelf);
        }
        let (before, _) = self.load::<UserAggregate>(&user_key(user)).await?;
        if !before.exists() {
            return Err(AppError::UserNotFound);
        }
        let mut spooled = Vec::new();
        let mut guarded = Vec::new();
        if before.status != idstream_domain::user::Status::Erased {
            guarded = self.check_deactivation(caller, user).await?;
            spooled = self.spooled_addresses(user, &before)?;
            // Without the addresses (gone with the key) this could never be done later.
            self.id()
                .mailer
                .forget(&spooled)
                .await
                .map_err(|e| AppError::Unavailable(format!("the mail spool: {e}")))?;
        }
        let key = user_key(user);
        let erasure = self.execute::<UserAggregate>(caller.ctx(), &key, "", UserCommand::Erase);
        let outcome = self
            .guarded_admin_removal(caller.ctx(), &guarded, user, erasure)
            .await
            .map_err(user_not_found)?;
        if let Err(error) = self.id().mailer.forget(&spooled).await {
            tracing::warn!(%user, %error, "mail sent to an erased user while they were being erased could not be deleted");
        }
        // Were this interrupted, the claims would still be free: a claim held by an erased user
        // is taken over like one whose user never came to exist.
        let held = [Some(before.email), before.pending_email];
        let mut last = outcome.position;
        for (i, email) in held.into_iter().flatten().enumerate() {
            if !email.is_empty() {
                let released = self
                    .release_email(caller.ctx(), user, &email, &format!("release-{i}"))
                    .await?;
                last = last.max(released);
            }
        }
        self.wait_for(last).await?;
        Ok(Outcome {
            position: last,
            ..outcome
        })
    }

    /// The addresses whose kept mail an erasure deletes: the user's address, the one they asked
    /// to move to and those they held or asked for before, except any another user holds by now
    /// (its mail would be theirs).
    fn spooled_addresses(
        &self,
        user: UserId,
        state: &idstream_domain::user::User,
    ) -> Result<Vec<String>, AppError> {
        let mut addresses = Vec::new();
        if !state.email.is_empty() {
            addresses.push(state.email.clone());
        }
        // The addresses they asked to move to, and those they held before: unless someone else
        // holds one now (whose mail it then is).
        let others = state
            .pending_email
            .iter()
            .chain(&state.former_emails)
            .filter(|e| !e.is_empty());
        for address in others {
            let other = self
                .directory()
                .user_by_email(address)
                .map_err(internal)?
                .is_some_and(|holder| holder.id != user);
            if !other && !addresses.contains(address) {
                addresses.push(address.clone());
            }
        }
        Ok(addresses)
    }

    /// Replaces a user's system-level flags (the same in every tenant).
    ///
    /// Who: platform administrators (the operator, or a user with the `platform_admin` flag); no
    /// tenant permission suffices, since the flags reach beyond any one tenant.
    pub async fn set_flags(
        &self,
        caller: &Caller,
        user: UserId,
        flags: UserFlags,
    ) -> Result<Outcome, AppError> {
        self.platform_admin_over_user(caller, user).await?;
        self.execute::<UserAggregate>(
            caller.ctx(),
            &user_key(user),
            "",
            UserCommand::SetFlags(flags),
        )
        .await
        .map_err(user_not_found)
    }

    /// Changes a user's profile (names, picture, notification preferences).
    ///
    /// Who: the user themselves through a session, or `users:update` in every tenant of theirs
    /// (like other changes to a person).
    pub async fn change_profile(
        &self,
        caller: &Caller,
        user: UserId,
        profile: Profile,
    ) -> Result<Outcome, AppError> {
        self.self_or_over_user(caller, user).await?;
        self.execute::<UserAggregate>(
            caller.ctx(),
            &user_key(user),
            "",
            UserCommand::ChangeProfile(profile),
        )
        .await
        .map_err(user_not_found)
    }

    /// The values of a member's attributes in a tenant, those the tenant defines now (see
    /// [`attributes::visible`]).
    ///
    /// Who: the member themselves, or `users:read` in the tenant.
    pub async fn attributes(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<BTreeMap<String, Value>, AppError> {
        self.about_member(
            caller,
            tenant,
            user,
            &[crate::policy::named("users", Action::Read)],
        )
        .await?;
        self.require_member(tenant, user).await?;
        let definitions = self.tenant_now(tenant)?.attributes;
        let view = self.user_now(&user)?;
        Ok(view
            .attributes
            .get(tenant)
            .map(|values| attributes::visible(&definitions, values))
            .unwrap_or_default())
    }

    /// Changes the values of a member's attributes in a tenant: each attribute named is set to
    /// its value, or cleared by `None`; the others keep theirs.
    ///
    /// Who: `users:update` in the tenant (or `members.<role>:update` over the member), who may
    /// set every attribute; or the member themselves through a session, who may set those the
    /// tenant made `user_editable`.
    pub async fn change_attributes(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        change: BTreeMap<String, Option<Value>>,
    ) -> Result<Outcome, AppError> {
        let own = caller.user_id() == Some(user) && caller.session().is_some();
        let editor = if own && !self.permitted_over(caller, &tenant, user, Action::Update)? {
            self.tenant_standing(caller, &tenant).await?;
            Editor::User
        } else {
            self.over_member(caller, &tenant, user, Action::Update)
                .await?;
            Editor::Administrator
        };
        self.require_member(&tenant, user).await?;
        // The definitions as the log has them: one made a moment ago counts.
        let (state, _) = self
            .load::<TenantAggregate>(&crate::core::tenant_key(&tenant))
            .await?;
        let command = UserCommand::ChangeAttributes {
            tenant,
            definitions: state.attributes,
            change,
            editor,
            creating: false,
        };
        self.execute::<UserAggregate>(caller.ctx(), &user_key(user), "", command)
            .await
            .map_err(user_not_found)
    }

    /// Sets the identifiers the tenant's provisioning client knows a member by: its id for
    /// them (SCIM `externalId`) and its name for them (`userName`, when it is not their
    /// address), each `None` for none. Kept per tenant: another tenant's client has its own.
    ///
    /// Who: `users:update` in the tenant (or `members.<role>:update` over the member).
    pub async fn change_provisioning_ids(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        external_id: Option<String>,
        user_name: Option<String>,
    ) -> Result<Outcome, AppError> {
        self.over_member(caller, &tenant, user, Action::Update)
            .await?;
        self.require_member(&tenant, user).await?;
        let command = UserCommand::ChangeProvisioningIds {
            tenant,
            external_id,
            user_name,
        };
        self.execute::<UserAggregate>(caller.ctx(), &user_key(user), "", command)
            .await
            .map_err(user_not_found)
    }

    /// Fails with "no such user" unless `user` is a member of `tenant`.
    async fn require_member(&self, tenant: &TenantId, user: UserId) -> Result<(), AppError> {
        let member = |core: &Users| -> Result<bool, AppError> {
            Ok(core.user_tenants(&user)?.contains(tenant))
        };
        if member(self)? {
            return Ok(());
        }
        self.catch_up().await?;
        if member(self)? {
            Ok(())
        } else {
            Err(AppError::UserNotFound)
        }
    }

    /// A user's live sessions, newest first, with where each was started from.
    ///
    /// Who: `users:update` in every tenant of the user, like ending them.
    pub async fn sessions(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Vec<SessionView>, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        self.require_user_exists(user).await?;
        self.live_sessions(user)
    }

    /// Ends every session of a user.
    ///
    /// Who: `users:update` in every tenant of the user, like other lifecycle changes.
    pub async fn revoke_sessions(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        self.require_user_exists(user).await?;
        self.revoke_all_sessions(caller.ctx(), user, RevocationReason::RevokedByAdmin, None)
            .await
    }

    /// Resets a user's second factors: every passkey and TOTP go, with the recovery codes (for
    /// a person who lost their devices and their codes). The events record the administrator
    /// as their actor.
    ///
    /// Who: `users:update` in every tenant of the user.
    pub async fn reset_factors(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        self.require_user_exists(user).await?;
        self.execute::<CredentialsAggregate>(
            caller.ctx(),
            &credentials_key(user),
            "",
            CredentialsCommand::ResetFactors,
        )
        .await
    }

    /// Lifts a lock-out.
    ///
    /// Who: `users:update` in every tenant of the user.
    pub async fn unlock(&self, caller: &Caller, user: UserId) -> Result<Outcome, AppError> {
        self.over_user(caller, user, Action::Update).await?;
        self.require_user_exists(user).await?;
        self.execute::<CredentialsAggregate>(
            caller.ctx(),
            &credentials_key(user),
            "",
            CredentialsCommand::Unlock,
        )
        .await
    }
}

impl Core {
    /// Creates a user as an administrator asked. Where the tenant verifies created users
    /// (`verify_created_users`), one created active is created waiting for verification
    /// instead, and mailed a verification link: they sign in once they have followed it.
    pub(crate) async fn create_verified_or_not(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        mut request: NewUserRequest,
    ) -> Result<Outcome, AppError> {
        // The settings as the log has them: a change made a moment ago counts.
        let verify = !request.invite && {
            let (state, _) = self
                .load::<TenantAggregate>(&crate::core::tenant_key(&tenant))
                .await?;
            state.settings.verify_created_users
        };
        request.invite |= verify;
        let created = self.create_user(ctx, tenant, request).await?;
        // A dry run sends nothing.
        if verify && !created.replayed && !ctx.is_dry_run() {
            let user: UserId = created.id.parse().map_err(internal)?;
            self.wait_for(created.position).await?;
            let account = self.require_user(user).await?;
            // On an administrator's behalf: in the tenant's language, not their browser's.
            self.mail_verification(&account, None).await?;
        }
        Ok(created)
    }

    /// Creates a user in a tenant with the given roles. The email address is claimed first so
    /// that two replicas creating the same address at once yield exactly one user.
    pub(crate) async fn create_user(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        request: NewUserRequest,
    ) -> Result<Outcome, AppError> {
        self.require_tenant(&tenant).await?;
        for role in &request.roles {
            self.require_role(&tenant, role).await?;
        }
        let new_user = NewUser {
            email: request.email,
            first_name: request.first_name.clone(),
            last_name: request.last_name.clone(),
            tenant: tenant.clone(),
        };
        // The phone number and attribute values are checked before anything is claimed too.
        let phone = match request.phone.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => Some(user::normalize_phone(text)?),
            _ => None,
        };
        let attributes = match request.attributes {
            Some(change) => {
                let (state, _) = self
                    .load::<TenantAggregate>(&crate::core::tenant_key(&tenant))
                    .await?;
                let definitions = state.attributes;
                attributes::change(
                    &definitions,
                    &BTreeMap::new(),
                    &change,
                    Editor::Administrator,
                    true,
                )
                .map_err(UserError::from)?;
                Some((definitions, change))
            }
            None => None,
        };
        let command = if request.invite {
            UserCommand::Invite(new_user)
        } else {
            UserCommand::Register(new_user)
        };
        // Validate the profile before claiming, so a malformed request never holds an address.
        let validated = user::decide(&User::default(), command.clone())?;
        let email = match validated.first() {
            Some(user::UserEvent::Registered(e)) => e.email.clone(),
            Some(user::UserEvent::Invited(e)) => e.email.clone(),
            _ => return Err(internal("creating a user yields its creation event")),
        };

        let claim = self.claim_email(ctx, &email).await?;
        // A claim may be taken over once it is older than its TTL and its user does not exist.
        // Appending the user long after claiming could then create a second user with this
        // address, so past the deadline (well inside the TTL) this attempt gives up instead.
        if !claim.user_exists && self.now() >= claim.claimed_at + CLAIM_DEADLINE {
            return Err(AppError::Unavailable(
                "creating the user took too long after claiming its email address; retry".into(),
            ));
        }
        let user = claim.user;
        let key = user_key(user);
        let mut outcome = match self
            .execute::<UserAggregate>(ctx, &key, "user", command)
            .await
        {
            Ok(outcome) => outcome,
            // Our own claim from an earlier attempt whose user was created already.
            Err(AppError::User(UserError::AlreadyExists)) => {
                let (_, last) = self.load::<UserAggregate>(&key).await?;
                Outcome {
                    position: last,
                    id: user.to_string(),
                    replayed: true,
                }
            }
            Err(e) => return Err(e),
        };
        if let Some(phone) = phone {
            let profile = Profile {
                first_name: request.first_name,
                last_name: request.last_name,
                image_url: None,
                notifications: Default::default(),
                phone: Some(Some(phone)),
                language: None,
            };
            let step = self
                .execute::<UserAggregate>(ctx, &key, "phone", UserCommand::ChangeProfile(profile))
                .await?;
            outcome.position = outcome.position.max(step.position);
        }
        if let Some((definitions, change)) = attributes.filter(|(_, change)| !change.is_empty()) {
            let command = UserCommand::ChangeAttributes {
                tenant: tenant.clone(),
                definitions,
                change,
                editor: Editor::Administrator,
                creating: true,
            };
            let step = self
                .execute::<UserAggregate>(ctx, &key, "attributes", command)
                .await?;
            outcome.position = outcome.position.max(step.position);
        }
        for role in request.roles {
            let step = format!("role-{role}");
            let command = MembershipCommand::Assign {
                user,
                role,
                expires_at: None,
                now: self.now(),
            };
            match self
                .execute::<MembershipAggregate>(ctx, &membership_key(&tenant, user), &step, command)
                .await
            {
                Ok(assigned) => outcome.position = outcome.position.max(assigned.position),
                Err(AppError::Membership(MembershipError::AlreadyAssigned)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }
}
