//! Flows that prove control of an email address: magic sign-in links, emailed one-time codes,
//! self-registration and email verification.
//!
//! Requests answer the same whether or not the address has an account (the work happens in the
//! background); each emailed token is single use (the credentials aggregate's expected sequence),
//! short-lived (the tenant's `magic_link_ttl_minutes`, 10 by default) and kills the previous one
//! of its kind; at most one such email per account and minute is sent.

use idstream_auth::{OpaqueToken, TokenKind};
use idstream_directory::{UserStatus, UserView};
use idstream_domain::aggregate::{CredentialsAggregate, EmailClaimAggregate, UserAggregate};
use idstream_domain::email::EmailClaimCommand;
use idstream_domain::identity::credentials::{CredentialsCommand, CredentialsError, TokenPurpose};
use idstream_domain::identity::session::SignInMethod;
use idstream_domain::user::{UserCommand, normalize_email};
use idstream_domain::{TenantId, UserId};
use time::Duration;

use super::credentials_key;
use super::signin::{SignIn, system_ctx, user_ctx};
use super::{Client, Identity, MAX_PASSWORD_BYTES};
use crate::core::Core;
use crate::core::{internal, user_key};
use crate::policy::Caller;
use crate::{AppError, NewUserRequest};

/// Digits of an emailed sign-in code.
pub const EMAIL_CODE_DIGITS: usize = 6;
/// How long an email verification link lives.
pub const VERIFICATION_TTL: Duration = Duration::hours(24);

/// `POST /v1/tenants/{tenant}/register`
#[derive(Clone)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn purpose_name(purpose: TokenPurpose) -> &'static str {
    match purpose {
        TokenPurpose::PasswordReset => "password-reset",
        TokenPurpose::MagicLink => "magic-link",
        TokenPurpose::EmailCode => "email-code",
        TokenPurpose::EmailVerification => "email-verification",
        TokenPurpose::EmailChange => "email-change",
    }
}

impl Core {
    fn email_token_index(
        &self,
        purpose: TokenPurpose,
        user: UserId,
        token: &str,
    ) -> idstream_domain::secret::BlindIndex {
        // Codes are short, so the user is part of what is indexed: a code is only ever one
        // user's.
        self.id()
            .keys
            .vault()
            .blind_index(purpose_name(purpose), &format!("{user}:{token}"))
    }

    /// The lifetime of magic links and codes for `user`: their first tenant's setting.
    fn magic_ttl(&self, user: UserId) -> Result<Duration, AppError> {
        let minutes = match self.user_tenants(&user)?.first() {
            Some(t) => self
                .directory()
                .tenant(t)
                .map_err(internal)?
                .map_or(10, |v| v.settings.magic_link_ttl_minutes),
            None => 10,
        };
        Ok(Duration::minutes(i64::from(minutes)))
    }

    /// Records a token of `purpose` for `user`, then mails what `message` makes of it. Nothing is
    /// sent when the account already got such an email within the minute.
    async fn issue_email_token<'m>(
        &self,
        user: &UserView,
        purpose: TokenPurpose,
        token: &str,
        ttl: Duration,
        asked: Option<idstream_mailer::templates::Lang>,
        mail: impl FnOnce(time::OffsetDateTime) -> idstream_mailer::templates::Mail<'m>,
    ) -> Result<(), AppError> {
        if self
            .id()
            .limiter
            .take(&format!("mail:{}:{}", purpose_name(purpose), user.id))
            .is_err()
        {
            return Ok(());
        }
        let now = self.now();
        let expires_at = now + ttl;
        self.execute::<CredentialsAggregate>(
            &system_ctx(purpose_name(purpose)),
            &credentials_key(user.id),
            "",
            CredentialsCommand::IssueToken {
                purpose,
                index: self.email_token_index(purpose, user.id, token),
                expires_at,
                now,
            },
        )
        .await?;
        self.mail(&user.email, Some(user.id), None, asked, mail(expires_at))
            .await;
        Ok(())
    }

    /// Looks up an active user by address, for the background half of a request.
    async fn active_user_by_email(&self, email: &str) -> Result<Option<UserView>, AppError> {
        let user = self.find_user_by_email(email).await?;
        let now = self.now();
        Ok(user.filter(|u| u.status_at(now) == UserStatus::Active))
    }

    async fn send_magic_link(
        &self,
        email: &str,
        asked: Option<idstream_mailer::templates::Lang>,
    ) -> Result<(), AppError> {
        let Some(user) = self.active_user_by_email(email).await? else {
            return Ok(());
        };
        let token = OpaqueToken::generate(TokenKind::MagicLink);
        let link = self.link(&format!(
            "/magic-link?user={}&token={}",
            user.id,
            token.reveal()
        ));
        let ttl = self.magic_ttl(user.id)?;
        self.issue_email_token(
            &user,
            TokenPurpose::MagicLink,
            token.reveal(),
            ttl,
            asked,
            |expires_at| idstream_mailer::templates::Mail::MagicLink {
                link: &link,
                expires_at,
            },
        )
        .await
    }

    /// Mails a new verification link to a user who has not verified `email` yet (the link of
    /// self-registration, or of an address an administrator entered): nothing for an unknown,
    /// verified, suspended, deactivated or erased one. Per user it is limited like every mailed
    /// token, so the address cannot be flooded.
    async fn send_verification(
        &self,
        email: &str,
        asked: Option<idstream_mailer::templates::Lang>,
    ) -> Result<(), AppError> {
        let Some(user) = self.find_user_by_email(email).await? else {
            return Ok(());
        };
        let now = self.now();
        let waiting = match user.status_at(now) {
            // Self-registered in a tenant that requires verification: waiting for the link.
            UserStatus::Invited => {
                let (state, _) = self.load::<UserAggregate>(&user_key(user.id)).await?;
                state.activated || self.waiting_for_verification(user.id).await?
            }
            UserStatus::Active => true,
            _ => false,
        };
        if user.email_verified || !waiting {
            return Ok(());
        }
        self.mail_verification(&user, asked).await
    }

    /// Whether an invited user waits for a verification link rather than for an invitation
    /// (whose acceptance verifies the address): they self-registered (hold a password), or an
    /// administrator created them in a tenant that verifies created users (a verification link
    /// was issued to them).
    async fn waiting_for_verification(&self, user: UserId) -> Result<bool, AppError> {
        if self
            .credentials_view(user)?
            .is_some_and(|c| c.password.is_some())
        {
            return Ok(true);
        }
        let (credentials, _) = self
            .load::<CredentialsAggregate>(&credentials_key(user))
            .await?;
        Ok(credentials
            .tokens
            .iter()
            .any(|t| t.purpose == TokenPurpose::EmailVerification))
    }

    /// Issues and mails a verification link for the user's address, in `asked` (see
    /// [`Core::mail`]).
    pub(crate) async fn mail_verification(
        &self,
        user: &UserView,
        asked: Option<idstream_mailer::templates::Lang>,
    ) -> Result<(), AppError> {
        let token = OpaqueToken::generate(TokenKind::EmailVerification);
        let link = self.link(&format!(
            "/verify-email?user={}&token={}",
            user.id,
            token.reveal()
        ));
        self.issue_email_token(
            user,
            TokenPurpose::EmailVerification,
            token.reveal(),
            VERIFICATION_TTL,
            asked,
            |expires_at| idstream_mailer::templates::Mail::EmailVerification {
                link: &link,
                expires_at,
            },
        )
        .await
    }

    async fn send_email_code(
        &self,
        email: &str,
        asked: Option<idstream_mailer::templates::Lang>,
    ) -> Result<(), AppError> {
        let Some(user) = self.active_user_by_email(email).await? else {
            return Ok(());
        };
        let code = idstream_auth::numeric_code(EMAIL_CODE_DIGITS);
        let ttl = self.magic_ttl(user.id)?;
        self.issue_email_token(
            &user,
            TokenPurpose::EmailCode,
            &code,
            ttl,
            asked,
            |expires_at| idstream_mailer::templates::Mail::EmailCode {
                code: &code,
                expires_at,
            },
        )
        .await
    }

    /// The common part of magic-link and code sign-in: one attempt at a time per account, not
    /// while locked, the token used up, then the second factor or a session.
    async fn redeem_and_sign_in(
        &self,
        user: &UserView,
        purpose: TokenPurpose,
        token: &str,
        tenant: Option<TenantId>,
        remember: bool,
        client: &Client,
    ) -> Result<SignIn, AppError> {
        let method = match purpose {
            TokenPurpose::MagicLink => SignInMethod::MagicLink,
            TokenPurpose::EmailCode => SignInMethod::EmailCode,
            other => return Err(internal(format!("{other:?} tokens do not sign in"))),
        };
        let _turn = self.id().locks.lock(user.id).await;
        self.catch_up().await?;
        let user = &self.require_user(user.id).await?;
        let now = self.now();
        let creds = self.credentials_view(user.id)?;
        if creds.as_ref().is_some_and(|c| c.is_locked_at(now)) {
            return Err(AppError::InvalidCredentials);
        }
        let redeemed = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user.id),
                &credentials_key(user.id),
                "",
                CredentialsCommand::RedeemToken {
                    purpose,
                    index: self.email_token_index(purpose, user.id, token),
                    now,
                },
            )
            .await;
        match redeemed {
            Ok(_) => {}
            // A used, expired or unknown token is no password guess: it never counts toward a
            // lock-out. A wrong emailed code while one is live counts against that code, which
            // dies after a few (`MAX_TOKEN_MISSES`), so its million values cannot be tried.
            Err(AppError::Credentials(CredentialsError::InvalidToken)) => {
                if purpose == TokenPurpose::EmailCode {
                    self.execute::<CredentialsAggregate>(
                        &system_ctx("sign-in"),
                        &credentials_key(user.id),
                        "",
                        CredentialsCommand::MissToken { purpose, now },
                    )
                    .await?;
                }
                return Err(AppError::InvalidCredentials);
            }
            Err(e) => return Err(e),
        }
        if user.status_at(now) != UserStatus::Active {
            return Err(AppError::AccountDisabled);
        }
        let tenant = self.sign_in_tenant(user.id, tenant)?;
        self.first_factor_passed(user.id, creds.as_ref(), tenant, method, client, remember)
            .await
    }
}

/// How long the link confirming a new address lives.
pub const EMAIL_CHANGE_TTL: Duration = Duration::hours(24);

impl Core {
    /// Claims `email` for an existing user (see `idstream_domain::email`).
    async fn claim_email_for(
        &self,
        ctx: &crate::CommandContext,
        user: UserId,
        email: &str,
    ) -> Result<(), AppError> {
        self.check_legacy_claim(email, user).await?;
        let key = self.claim_key(email);
        let (claim, _) = self.load::<EmailClaimAggregate>(&key).await?;
        let holder_exists = match &claim.holder {
            Some(holder) if holder.user != user => self
                .load::<UserAggregate>(&user_key(holder.user))
                .await?
                .0
                .holds_identity(),
            _ => true,
        };
        self.execute::<EmailClaimAggregate>(
            ctx,
            &key,
            "",
            EmailClaimCommand::Claim {
                user,
                request: None,
                now: self.now(),
                holder_exists,
            },
        )
        .await
        .map_err(|e| match e {
            AppError::EmailClaim(_) => AppError::EmailTaken,
            other => other,
        })?;
        Ok(())
    }
}

impl Identity {
    /// Emails a single-use sign-in link to `email` if it belongs to an active user. Answers the
    /// same either way.
    ///
    /// Who: anyone.
    pub fn request_magic_link(&self, caller: &Caller, email: &str) -> Result<(), AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("magic-link", caller.client().ip())?;
        let email = email.to_owned();
        let core = self.0.clone();
        let asked = caller.client().lang();
        tokio::spawn(async move {
            if let Err(error) = core.send_magic_link(&email, asked).await {
                tracing::warn!(%error, "a magic link could not be sent");
            }
        });
        Ok(())
    }

    /// Signs in with a magic link's user and token (single use). Two-factor authentication, if
    /// enabled, still asks for its second step.
    ///
    /// Who: anyone (holding the link).
    pub async fn sign_in_magic_link(
        &self,
        caller: &Caller,
        user: UserId,
        token: &str,
        tenant: Option<TenantId>,
        remember: bool,
    ) -> Result<SignIn, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        let text = OpaqueToken::normalize_presented(TokenKind::MagicLink, token)
            .ok_or(AppError::InvalidOrExpiredLink)?;
        let view = self
            .directory()
            .user(&user)
            .map_err(internal)?
            .ok_or(AppError::InvalidOrExpiredLink)?;
        self.redeem_and_sign_in(
            &view,
            TokenPurpose::MagicLink,
            &text,
            tenant,
            remember,
            client,
        )
        .await
        .map_err(|e| match e {
            AppError::InvalidCredentials => AppError::InvalidOrExpiredLink,
            other => other,
        })
    }

    /// Emails a one-time sign-in code to `email` if it belongs to an active user. Answers the
    /// same either way.
    ///
    /// Who: anyone.
    pub fn request_email_code(&self, caller: &Caller, email: &str) -> Result<(), AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("email-code", caller.client().ip())?;
        let email = email.to_owned();
        let core = self.0.clone();
        let asked = caller.client().lang();
        tokio::spawn(async move {
            if let Err(error) = core.send_email_code(&email, asked).await {
                tracing::warn!(%error, "a sign-in code could not be sent");
            }
        });
        Ok(())
    }

    /// Signs in with an emailed code. A wrong code counts against the live code, which dies after
    /// a few, so the million possible codes cannot be tried; it is no password failure and never
    /// locks the account.
    ///
    /// Who: anyone (holding the code).
    pub async fn sign_in_email_code(
        &self,
        caller: &Caller,
        email: &str,
        code: &str,
        tenant: Option<TenantId>,
        remember: bool,
    ) -> Result<SignIn, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(user) = self.find_user_by_email(email).await? else {
            return Err(AppError::InvalidCredentials);
        };
        if code.len() != EMAIL_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::InvalidCredentials);
        }
        self.redeem_and_sign_in(
            &user,
            TokenPurpose::EmailCode,
            &code,
            tenant,
            remember,
            client,
        )
        .await
    }

    /// Self-registration in a tenant that allows it. Answers the same whether the address is new
    /// or taken (a taken address gets no account and no hint; its owner can reset their
    /// password). When the tenant requires verification, the new user stays invited until they
    /// follow the emailed link; otherwise they can sign in at once. They get the tenant's
    /// default role.
    ///
    /// Who: anyone, in a tenant that allows it. A tenant that does not answers as if it did not
    /// exist, so tenant ids cannot be probed here either.
    pub async fn register(
        &self,
        caller: &Caller,
        tenant: TenantId,
        registration: Registration,
    ) -> Result<(), AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("register", caller.client().ip())?;
        // Settings changed a moment ago (self-registration turned on) must count.
        self.catch_up().await?;
        let view = self.tenant_view(&tenant).await?;
        if !view.settings.self_registration {
            return Err(AppError::TenantNotFound);
        }
        if registration.password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::PasswordTooLong);
        }
        let email = normalize_email(&registration.email)?;
        // The policy is checked before anything else, against the tenant alone: the answer must
        // not depend on whether the address is known.
        let policy = super::password_policy(&view.settings.password_policy);
        if let Err(violations) = policy.validate(
            &registration.password,
            &[&email, &registration.first_name, &registration.last_name],
        ) {
            return Err(AppError::WeakPassword(
                violations.iter().map(|v| v.message()).collect(),
            ));
        }
        let existing = self
            .find(|core| core.directory().user_by_email(&email).map_err(internal))
            .await?;
        if existing.is_some() {
            // Cost the same as creating one.
            self.decoy_check(registration.password).await;
            return Ok(());
        }
        let system = system_ctx("self-registration");
        let verify = view.settings.require_email_verification;
        let created = match self
            .create_user(
                &system,
                tenant.clone(),
                NewUserRequest {
                    email: email.clone(),
                    first_name: registration.first_name,
                    last_name: registration.last_name,
                    roles: vec![view.settings.default_role.clone()],
                    invite: verify,
                    phone: None,
                    attributes: None,
                },
            )
            .await
        {
            Ok(created) => created,
            // Registered a moment ago by someone else: the same answer.
            Err(AppError::EmailTaken) => return Ok(()),
            Err(e) => return Err(e),
        };
        let user: UserId = created.id.parse().map_err(internal)?;
        self.catch_up().await?;
        self.set_initial_password(&system, user, Some(&tenant), registration.password)
            .await?;
        if verify {
            let account = self.require_user(user).await?;
            self.mail_verification(&account, caller.client().lang())
                .await?;
        }
        Ok(())
    }

    /// Asks for a new verification link for `email`. The answer is the same whether or not the
    /// address belongs to anyone, or is verified already; the link goes out in the background
    /// (see `send_verification`).
    ///
    /// Who: anyone; limited per source address, and the mail per user.
    pub fn request_verification(&self, caller: &Caller, email: &str) -> Result<(), AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("verify-email", caller.client().ip())?;
        let email = email.to_owned();
        let core = self.0.clone();
        let asked = caller.client().lang();
        tokio::spawn(async move {
            if let Err(error) = core.send_verification(&email, asked).await {
                tracing::warn!(%error, "a verification link could not be sent");
            }
        });
        Ok(())
    }

    /// Follows an email verification link: the address is verified and a self-registered user
    /// waiting for it becomes active.
    ///
    /// Who: anyone (holding the link).
    pub async fn verify_email(
        &self,
        caller: &Caller,
        user: UserId,
        token: &str,
    ) -> Result<crate::Outcome, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("verify-email", caller.client().ip())?;
        let text = OpaqueToken::normalize_presented(TokenKind::EmailVerification, token)
            .ok_or(AppError::InvalidOrExpiredLink)?;
        if self.directory().user(&user).map_err(internal)?.is_none() {
            return Err(AppError::InvalidOrExpiredLink);
        }
        let ctx = user_ctx(user);
        self.execute::<CredentialsAggregate>(
            &ctx,
            &credentials_key(user),
            "",
            CredentialsCommand::RedeemToken {
                purpose: TokenPurpose::EmailVerification,
                index: self.email_token_index(TokenPurpose::EmailVerification, user, &text),
                now: self.now(),
            },
        )
        .await
        .map_err(|e| match e {
            AppError::Credentials(CredentialsError::InvalidToken) => AppError::InvalidOrExpiredLink,
            other => other,
        })?;
        // An invited (self-registered) user becomes active; anyone else is just verified.
        let (state, _) = self.load::<UserAggregate>(&user_key(user)).await?;
        let command = if state.activated {
            UserCommand::VerifyEmail
        } else {
            UserCommand::Activate
        };
        self.execute::<UserAggregate>(&ctx, &user_key(user), "", command)
            .await
    }

    /// The caller asks to move to `new_email`, proving their password if they have one. The new
    /// address gets a confirmation link; the old one is told, and keeps working until then.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn request_email_change(
        &self,
        caller: &Caller,
        new_email: &str,
        password: Option<String>,
    ) -> Result<crate::Outcome, AppError> {
        let me = self.own_session(caller)?;
        let client = caller.client();
        let user = self.require_user(me.user).await?;
        let new_email = normalize_email(new_email)?;
        {
            let _turn = self.id().locks.lock(user.id).await;
            self.catch_up().await?;
            let creds = self.credentials_view(user.id)?;
            if let Some(sealed) = creds.as_ref().and_then(|c| c.password.as_ref()) {
                let password = password.ok_or(AppError::InvalidCredentials)?;
                if password.len() > MAX_PASSWORD_BYTES
                    || !self
                        .password_matches(user.id, Some(sealed), password)
                        .await?
                {
                    self.record_failure(&user, client).await?;
                    return Err(AppError::InvalidCredentials);
                }
            }
        }
        if self
            .directory()
            .user_by_email(&new_email)
            .map_err(internal)?
            .is_some_and(|other| other.id != user.id)
        {
            return Err(AppError::EmailTaken);
        }
        let ctx = user_ctx(user.id);
        let outcome = self
            .execute::<UserAggregate>(
                &ctx,
                &user_key(user.id),
                "",
                UserCommand::RequestEmailChange {
                    email: new_email.clone(),
                },
            )
            .await?;
        let token = OpaqueToken::generate(TokenKind::EmailVerification);
        let link = self.link(&format!(
            "/confirm-email?user={}&token={}",
            user.id,
            token.reveal()
        ));
        let indexed = format!("{new_email}:{}", token.reveal());
        let now = self.now();
        self.execute::<CredentialsAggregate>(
            &ctx,
            &credentials_key(user.id),
            "",
            CredentialsCommand::IssueToken {
                purpose: TokenPurpose::EmailChange,
                index: self.email_token_index(TokenPurpose::EmailChange, user.id, &indexed),
                expires_at: now + EMAIL_CHANGE_TTL,
                now,
            },
        )
        .await?;
        self.mail(
            &new_email,
            Some(user.id),
            None,
            client.lang(),
            idstream_mailer::templates::Mail::EmailVerification {
                link: &link,
                expires_at: now + EMAIL_CHANGE_TTL,
            },
        )
        .await;
        self.mail(
            &user.email,
            Some(user.id),
            None,
            client.lang(),
            idstream_mailer::templates::Mail::EmailChangeNotice {
                new_address: &new_email,
            },
        )
        .await;
        Ok(outcome)
    }

    /// Confirms a new address with the link mailed to it: the address is claimed (it may have
    /// been taken meanwhile: `EmailTaken`), becomes the user's, and the old one is released.
    ///
    /// Who: anyone (holding the link).
    pub async fn confirm_email_change(
        &self,
        caller: &Caller,
        user: UserId,
        token: &str,
    ) -> Result<crate::Outcome, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("verify-email", caller.client().ip())?;
        let text = OpaqueToken::normalize_presented(TokenKind::EmailVerification, token)
            .ok_or(AppError::InvalidOrExpiredLink)?;
        let (state, _) = self.load::<UserAggregate>(&user_key(user)).await?;
        let Some(new_email) = state.pending_email.clone() else {
            return Err(AppError::InvalidOrExpiredLink);
        };
        let old_email = state.email.clone();
        let ctx = user_ctx(user);
        let indexed = format!("{new_email}:{}", text.as_str());
        self.execute::<CredentialsAggregate>(
            &ctx,
            &credentials_key(user),
            "",
            CredentialsCommand::RedeemToken {
                purpose: TokenPurpose::EmailChange,
                index: self.email_token_index(TokenPurpose::EmailChange, user, &indexed),
                now: self.now(),
            },
        )
        .await
        .map_err(|e| match e {
            AppError::Credentials(CredentialsError::InvalidToken) => AppError::InvalidOrExpiredLink,
            other => other,
        })?;
        self.claim_email_for(&ctx, user, &new_email).await?;
        let outcome = self
            .execute::<UserAggregate>(
                &ctx,
                &user_key(user),
                "",
                UserCommand::ConfirmEmailChange { email: new_email },
            )
            .await?;
        self.release_email(&ctx, user, &old_email, "release")
            .await?;
        Ok(outcome)
    }
}
