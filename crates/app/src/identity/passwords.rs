//! Passwords (policy, change, reset by email), two-factor authentication set-up, and unlocking.

use idstream_auth::{OpaqueToken, TokenKind, TotpSecret, recovery};
use idstream_directory::UserStatus;
use idstream_domain::aggregate::CredentialsAggregate;
use idstream_domain::identity::credentials::{
    CredentialsCommand, CredentialsError, PasswordReason, TokenPurpose,
};
use idstream_domain::identity::session::RevocationReason;
use idstream_domain::user::normalize_email;
use idstream_domain::{TenantId, UserId};
use idstream_eventlog::Position;
use time::Duration;

use super::signin::{recovery_purpose, system_ctx, totp_context, user_ctx};
use super::{Identity, MAX_PASSWORD_BYTES, credentials_key, password_policy};
use crate::core::{Core, internal};
use crate::policy::Caller;
use crate::{AppError, CommandContext, Outcome};

/// How long a password-reset link lives.
pub const RESET_TTL: Duration = Duration::minutes(30);
/// Number of recovery codes handed out when TOTP is confirmed.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP secret to enter into an authenticator app, shown once. `Debug` redacts it.
#[derive(Clone)]
pub struct TotpSetup {
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub uri: String,
    /// The position of the set-up's event (the consistency token).
    pub position: Position,
}

impl Core {
    /// Checks a new password against the policy of every tenant the user belongs to (the
    /// strictest wins), or the default policy if none. `context` words (the email address,
    /// names) may not be the password.
    pub(crate) fn check_password(
        &self,
        user: UserId,
        tenant: Option<&TenantId>,
        password: &str,
    ) -> Result<(), AppError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::PasswordTooLong);
        }
        let mut tenants = self.user_tenants(&user)?;
        if let Some(t) = tenant
            && !tenants.contains(t)
        {
            tenants.push(t.clone());
        }
        let profile = self.directory().user(&user).map_err(internal)?;
        let context: Vec<&str> = profile
            .as_ref()
            .map(|u| {
                vec![
                    u.email.as_str(),
                    u.first_name.as_str(),
                    u.last_name.as_str(),
                ]
            })
            .unwrap_or_default();
        let mut policies = Vec::new();
        for t in &tenants {
            if let Some(view) = self.directory().tenant(t).map_err(internal)? {
                policies.push(password_policy(&view.settings.password_policy));
            }
        }
        if policies.is_empty() {
            policies.push(password_policy(&Default::default()));
        }
        for policy in policies {
            if let Err(violations) = policy.validate(password, &context) {
                return Err(AppError::WeakPassword(
                    violations.iter().map(|v| v.message()).collect(),
                ));
            }
        }
        Ok(())
    }

    /// Sets a user's password without proving an old one: the first password (bootstrap,
    /// accepting an invitation). The policy is checked.
    pub(crate) async fn set_initial_password(
        &self,
        ctx: &CommandContext,
        user: UserId,
        tenant: Option<&TenantId>,
        password: String,
    ) -> Result<Outcome, AppError> {
        self.check_password(user, tenant, &password)?;
        let sealed = self.seal_password(user, password).await?;
        self.execute::<CredentialsAggregate>(
            ctx,
            &credentials_key(user),
            "password",
            CredentialsCommand::SetPassword {
                password: sealed,
                reason: PasswordReason::Initial,
            },
        )
        .await
    }

    async fn send_reset_link(
        &self,
        email: &str,
        asked: Option<idstream_mailer::templates::Lang>,
    ) -> Result<(), AppError> {
        let Some(user) = self.find_user_by_email(email).await? else {
            return Ok(());
        };
        if user.status_at(self.now()) != UserStatus::Active {
            return Ok(());
        }
        // At most one reset email per account and minute, whatever the sources.
        if self
            .id()
            .limiter
            .take(&format!("reset-mail:{}", user.id))
            .is_err()
        {
            return Ok(());
        }
        let token = OpaqueToken::generate(TokenKind::PasswordReset);
        let now = self.now();
        let expires_at = now + RESET_TTL;
        self.execute::<CredentialsAggregate>(
            &system_ctx("password-reset"),
            &credentials_key(user.id),
            "",
            CredentialsCommand::IssueToken {
                purpose: TokenPurpose::PasswordReset,
                index: self.reset_index(token.reveal()),
                expires_at,
                now,
            },
        )
        .await?;
        let link = self.link(&format!(
            "/reset-password?user={}&token={}",
            user.id,
            token.reveal()
        ));
        self.mail(
            &user.email,
            Some(user.id),
            None,
            asked,
            idstream_mailer::templates::Mail::PasswordReset {
                link: &link,
                expires_at,
            },
        )
        .await;
        Ok(())
    }

    fn reset_index(&self, token: &str) -> idstream_domain::secret::BlindIndex {
        self.id().keys.vault().blind_index("password-reset", token)
    }
}

/// `idstream bootstrap`: the first tenant and its administrator. `Debug` redacts the password.
#[derive(Clone)]
pub struct Bootstrap {
    pub tenant: TenantId,
    pub tenant_name: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password: String,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSetup(<redacted>)")
    }
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// The caller changes their password, proving the current one. Their other sessions end.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: String,
        new: String,
    ) -> Result<Outcome, AppError> {
        let client = caller.client();
        let caller = self.own_session(caller)?;
        let session = caller.session().ok_or(AppError::SessionOnly)?;
        let user = self.require_user(caller.user).await?;
        if current.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::InvalidCredentials);
        }
        self.check_password(user.id, None, &new)?;
        let _turn = self.id().locks.lock(user.id).await;
        self.catch_up().await?;
        let creds = self.credentials_view(user.id)?;
        if creds.as_ref().is_some_and(|c| c.is_locked_at(self.now())) {
            return Err(AppError::InvalidCredentials);
        }
        let sealed = creds.as_ref().and_then(|c| c.password.as_ref());
        if !self.password_matches(user.id, sealed, current).await? {
            if sealed.is_some() {
                self.record_failure(&user, client).await?;
            }
            return Err(AppError::InvalidCredentials);
        }
        let sealed = self.seal_password(user.id, new).await?;
        let mut outcome = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user.id),
                &credentials_key(user.id),
                "",
                CredentialsCommand::SetPassword {
                    password: sealed,
                    reason: PasswordReason::Changed,
                },
            )
            .await?;
        let revoked = self
            .revoke_all_sessions(
                &user_ctx(user.id),
                user.id,
                RevocationReason::PasswordChanged,
                Some(session),
            )
            .await?;
        outcome.position = outcome.position.max(revoked.position);
        Ok(outcome)
    }

    /// Emails a reset link if `email` belongs to an active user. Answers the same either way
    /// (the caller learns nothing); the work happens in the background so the timing is alike.
    ///
    /// Who: anyone.
    pub fn request_password_reset(&self, caller: &Caller, email: &str) -> Result<(), AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("password-reset", caller.client().ip())?;
        let Ok(email) = normalize_email(email) else {
            return Ok(());
        };
        let core = self.0.clone();
        let asked = caller.client().lang();
        tokio::spawn(async move {
            if let Err(error) = core.send_reset_link(&email, asked).await {
                tracing::warn!(%error, "a password reset could not be started");
            }
        });
        Ok(())
    }

    /// Sets a new password with an emailed reset token (single use) and ends every session of
    /// the user. A lock-out is lifted; two-factor authentication is not: the next sign-in still
    /// asks for the second factor.
    ///
    /// Who: anyone (holding the link).
    pub async fn reset_password(
        &self,
        caller: &Caller,
        user: UserId,
        token: &str,
        password: String,
    ) -> Result<Outcome, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("password-reset", caller.client().ip())?;
        let text = OpaqueToken::normalize_presented(TokenKind::PasswordReset, token)
            .ok_or(AppError::InvalidOrExpiredLink)?;
        let index = self.reset_index(&text);
        if self.directory().user(&user).map_err(internal)?.is_none() {
            return Err(AppError::InvalidOrExpiredLink);
        }
        self.check_password(user, None, &password)?;
        let sealed = self.seal_password(user, password).await?;
        let mut outcome = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user),
                &credentials_key(user),
                "",
                CredentialsCommand::ResetPassword {
                    index,
                    password: sealed,
                    now: self.now(),
                },
            )
            .await
            .map_err(|e| match e {
                AppError::Credentials(CredentialsError::InvalidToken) => {
                    AppError::InvalidOrExpiredLink
                }
                other => other,
            })?;
        let revoked = self
            .revoke_all_sessions(&user_ctx(user), user, RevocationReason::PasswordReset, None)
            .await?;
        outcome.position = outcome.position.max(revoked.position);
        Ok(outcome)
    }

    /// Begins TOTP set-up for the caller: a new secret, shown once, waiting for a first code.
    ///
    /// Who: the signed-in user, through a session (also while a second factor must be set up).
    pub async fn start_totp(&self, caller: &Caller) -> Result<TotpSetup, AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        let user = self.require_user(caller.user).await?;
        let secret = TotpSecret::generate();
        let base32 = secret.to_base32();
        let sealed = self
            .id()
            .keys
            .vault()
            .try_seal(base32.as_bytes(), &totp_context(user.id))
            .map_err(internal)?;
        let outcome = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user.id),
                &credentials_key(user.id),
                "",
                CredentialsCommand::StartTotp { secret: sealed },
            )
            .await?;
        let issuer = self.id().config.audience.clone();
        Ok(TotpSetup {
            secret: base32.to_string(),
            uri: secret.provisioning_uri(&issuer, &user.email).to_string(),
            position: outcome.position,
        })
    }

    /// Confirms TOTP with a first code; returns the recovery codes, shown once.
    ///
    /// Who: the signed-in user, through a session (also while a second factor must be set up).
    pub async fn confirm_totp(
        &self,
        caller: &Caller,
        code: &str,
    ) -> Result<(Vec<String>, Outcome), AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        let user = caller.user;
        // Read the pending secret from the log: it was set a moment ago.
        self.catch_up().await?;
        let creds = self
            .credentials_view(user)?
            .ok_or(AppError::Credentials(CredentialsError::NoTotpEnrolment))?;
        let pending = creds
            .totp_pending
            .as_ref()
            .ok_or(AppError::Credentials(CredentialsError::NoTotpEnrolment))?;
        let secret = self.open_totp(user, pending)?;
        let step = secret
            .verify(code, self.now(), None)
            .ok_or(AppError::InvalidCredentials)?;
        let codes = recovery::generate(RECOVERY_CODES);
        let vault = self.id().keys.vault();
        let indexes = codes
            .iter()
            .map(|c| vault.blind_index(&recovery_purpose(user), &recovery::normalise(c.reveal())))
            .collect();
        let outcome = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user),
                &credentials_key(user),
                "",
                CredentialsCommand::ConfirmTotp {
                    step,
                    recovery_codes: indexes,
                },
            )
            .await?;
        // A session restricted until its user sets TOTP up (a tenant's `mfa_required`) is let
        // through by the read model: make sure it is, on this replica, before answering. (The
        // restriction is checked when a request authenticates, before its consistency token.)
        self.wait_for(outcome.position).await?;
        Ok((
            codes.iter().map(|c| c.reveal().to_owned()).collect(),
            outcome,
        ))
    }

    /// Turns two-factor authentication off; the caller proves their password.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn disable_totp(
        &self,
        caller: &Caller,
        password: String,
    ) -> Result<Outcome, AppError> {
        let client = caller.client();
        let caller = self.own_session(caller)?;
        let user = self.require_user(caller.user).await?;
        for tenant in self.user_tenants(&user.id)? {
            if self
                .directory()
                .tenant(&tenant)
                .map_err(internal)?
                .is_some_and(|t| t.settings.mfa_required)
            {
                return Err(AppError::SecondFactorRequiredByTenant);
            }
        }
        let _turn = self.id().locks.lock(user.id).await;
        self.catch_up().await?;
        let creds = self.credentials_view(user.id)?;
        let sealed = creds.as_ref().and_then(|c| c.password.as_ref());
        if password.len() > MAX_PASSWORD_BYTES
            || !self.password_matches(user.id, sealed, password).await?
        {
            if sealed.is_some() {
                self.record_failure(&user, client).await?;
            }
            return Err(AppError::InvalidCredentials);
        }
        self.execute::<CredentialsAggregate>(
            &user_ctx(user.id),
            &credentials_key(user.id),
            "",
            CredentialsCommand::DisableTotp,
        )
        .await
    }

    /// Creates the first tenant and its administrator (roles owner and admin, platform
    /// administrator flag, the given password). Refused once any tenant exists: from then on
    /// administrators invite people.
    ///
    /// Who: the operator (the `idstream bootstrap` command).
    pub async fn bootstrap(
        &self,
        caller: &Caller,
        request: Bootstrap,
    ) -> Result<(UserId, Outcome), AppError> {
        self.platform_admin(caller).await?;
        let ctx = caller.ctx();
        self.catch_up().await?;
        if !self
            .directory()
            .tenants(None, 1)
            .map_err(internal)?
            .is_empty()
        {
            return Err(AppError::AlreadyBootstrapped);
        }
        // Check the password against the default policy before anything is written.
        self.check_password(UserId::new(ulid::Ulid::new()), None, &request.password)?;
        crate::Tenants(self.0.clone())
            .create(caller, request.tenant.clone(), request.tenant_name)
            .await?;
        self.catch_up().await?;
        let created = self
            .create_user(
                ctx,
                request.tenant.clone(),
                crate::NewUserRequest {
                    email: request.email,
                    first_name: request.first_name,
                    last_name: request.last_name,
                    roles: vec![
                        "owner".parse().map_err(internal)?,
                        "admin".parse().map_err(internal)?,
                    ],
                    invite: false,
                    phone: None,
                    attributes: None,
                },
            )
            .await?;
        let user: UserId = created.id.parse().map_err(internal)?;
        crate::Users(self.0.clone())
            .set_flags(
                caller,
                user,
                idstream_domain::user::UserFlags {
                    platform_admin: true,
                    ..Default::default()
                },
            )
            .await?;
        self.catch_up().await?;
        let outcome = self
            .set_initial_password(ctx, user, Some(&request.tenant), request.password)
            .await?;
        Ok((user, outcome))
    }
}
