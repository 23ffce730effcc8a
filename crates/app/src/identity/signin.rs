//! Sign-in with a password (and a second factor), the start of a session, and the
//! authentication of bearer credentials on every request.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use idstream_auth::{AccessSubject, OpaqueToken, TokenKind, TotpSecret, recovery};
use idstream_directory::{UserStatus, UserView};
use idstream_domain::aggregate::{CredentialsAggregate, SessionAggregate};
use idstream_domain::identity::credentials::{Credentials, CredentialsCommand, CredentialsError};
use idstream_domain::identity::session::{SessionCommand, SessionLifetimes, SignInMethod};
use idstream_domain::secret::Sealed;
use idstream_domain::{Actor, ActorKind, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::{CredentialsView, SessionStanding, ViewCache};
use idstream_projection_runtime::ReadModels;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use ulid::Ulid;
use zeroize::Zeroizing;

use super::{
    Authenticated, Client, Credential, Identity, IdentityParts, MAX_PASSWORD_BYTES,
    credentials_key, identity_storage, session_key,
};
use crate::core::Core;
use crate::core::internal;
use crate::policy::Caller;
use crate::{AppError, CommandContext};

/// The age at which the access-token signing key is replaced.
pub const SIGNING_KEY_AGE: Duration = Duration::days(30);

/// How long a next signing key is published before it signs, by default.
pub const SIGNING_KEY_LEAD: Duration = Duration::hours(1);

/// How often at most a token signed by an unknown key makes a replica re-read the key store.
const UNKNOWN_KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the second step of a sign-in may take.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);

/// A signed-in session's tokens. `Debug` redacts them.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token (a JWT) for `Authorization: Bearer`.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The opaque refresh token (`idr_…`), single use: each refresh returns a new one.
    pub refresh_token: String,
    pub session: Ulid,
    pub user: UserId,
    pub tenant: TenantId,
    /// The session is remembered: it lives up to the tenant's `remember_days`.
    pub remembered: bool,
    /// Position of the session's last event (the consistency token).
    pub position: Position,
}

/// The answer to the first step of a sign-in. `Debug` redacts the tokens and the challenge.
#[derive(Clone, PartialEq, Eq)]
pub enum SignIn {
    Complete(Tokens),
    /// The password was right and the account has two-factor authentication: present a code
    /// (or a recovery code) with this challenge within [`CHALLENGE_TTL`].
    SecondFactorRequired {
        challenge: String,
        expires_in: i64,
    },
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("session", &self.session)
            .field("user", &self.user)
            .field("tenant", &self.tenant)
            .field("remembered", &self.remembered)
            .field("position", &self.position)
            .finish()
    }
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignIn::Complete(tokens) => f.debug_tuple("Complete").field(tokens).finish(),
            SignIn::SecondFactorRequired { expires_in, .. } => f
                .debug_struct("SecondFactorRequired")
                .field("challenge", &"<redacted>")
                .field("expires_in", expires_in)
                .finish(),
        }
    }
}

/// The content of a second-factor challenge, sealed (so it cannot be forged or read).
#[derive(Serialize, Deserialize)]
pub(crate) struct Challenge {
    pub(crate) user: UserId,
    pub(crate) tenant: TenantId,
    /// Unix seconds.
    pub(crate) expires: i64,
    /// The first step asked to be remembered (the second may change its mind).
    #[serde(default)]
    pub(crate) remember: bool,
    /// The first factor was an upstream provider (the session's method says so).
    #[serde(default)]
    pub(crate) federated: bool,
}

const CHALLENGE_CONTEXT: &str = "sign-in-challenge";

pub(crate) fn password_context(user: UserId) -> String {
    format!("password:{user}")
}

pub(crate) fn totp_context(user: UserId) -> String {
    format!("totp:{user}")
}

pub(crate) fn recovery_purpose(user: UserId) -> String {
    format!("recovery:{user}")
}

pub(crate) fn user_ctx(user: UserId) -> CommandContext {
    CommandContext::new(
        Actor {
            kind: ActorKind::User,
            id: user.to_string(),
        },
        Ulid::new().to_string(),
        None,
    )
    .expect("no idempotency key to validate")
}

pub(crate) fn system_ctx(what: &str) -> CommandContext {
    CommandContext::new(Actor::system(what), Ulid::new().to_string(), None)
        .expect("no idempotency key to validate")
}

impl Core {
    pub(crate) fn id(&self) -> &IdentityParts {
        &self.identity
    }

    /// The identity read model.
    pub(crate) fn identity(&self) -> crate::views::View<idstream_identity::Identity> {
        self.views.identity()
    }

    /// Periodic key upkeep (the server runs it at least every minute, and four times per lead
    /// time): picks up keys another replica staged or rotated, and applies the rotation policy
    /// ([`idstream_keys::Keys::upkeep_signing`]: a next key is published `lead` before it signs;
    /// the old one keeps verifying, and stays in the JWKS, until its tokens have expired).
    pub(crate) async fn maintain_signing_keys(&self) -> Result<(), AppError> {
        let keys = &self.id().keys;
        keys.reload()
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        keys.upkeep_signing(self.now(), self.id().config.signing_keys)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Takes one request from the budget of `endpoint` for `source`.
    pub(crate) fn rate_limit(
        &self,
        endpoint: &str,
        source: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let key = match source {
            Some(ip) => format!("{endpoint}:{ip}"),
            None => format!("{endpoint}:-"),
        };
        self.id()
            .limiter
            .take(&key)
            .map_err(|wait| AppError::RateLimited(wait.as_secs().max(1)))
    }

    pub(crate) fn credentials_view(
        &self,
        user: UserId,
    ) -> Result<Option<CredentialsView>, AppError> {
        self.identity().credentials(&user).map_err(identity_storage)
    }

    /// An argon2 check against a throw-away hash, so that an unknown account costs the same.
    pub(crate) async fn decoy_check(&self, password: String) {
        let parts = self.id();
        let decoy = parts
            .decoy
            .get_or_try_init(|| async {
                let random = idstream_auth::SecretToken::generate(32);
                parts.hasher.hash(random.reveal().to_owned()).await
            })
            .await;
        if let Ok(phc) = decoy {
            let _ = parts.hasher.verify(password, phc.clone()).await;
        }
    }

    /// Whether `password` is the user's (false when they have none).
    pub(crate) async fn password_matches(
        &self,
        user: UserId,
        sealed: Option<&Sealed>,
        password: String,
    ) -> Result<bool, AppError> {
        let Some(sealed) = sealed else {
            self.decoy_check(password).await;
            return Ok(false);
        };
        let phc = self
            .id()
            .keys
            .vault()
            .open(sealed, &password_context(user))
            .map_err(|e| AppError::Internal(format!("cannot open a stored password: {e}")))?;
        let phc = String::from_utf8(phc.to_vec()).map_err(internal)?;
        self.id()
            .hasher
            .verify(password, phc)
            .await
            .map_err(internal)
    }

    /// A user's TOTP secret from its sealed form (pending or confirmed).
    pub(crate) fn open_totp(&self, user: UserId, sealed: &Sealed) -> Result<TotpSecret, AppError> {
        let text = self
            .id()
            .keys
            .vault()
            .open(sealed, &totp_context(user))
            .map_err(internal)?;
        let text = Zeroizing::new(String::from_utf8(text.to_vec()).map_err(internal)?);
        TotpSecret::from_base32(&text).map_err(internal)
    }

    /// The argon2id hash of a new password, sealed for `user`.
    pub(crate) async fn seal_password(
        &self,
        user: UserId,
        password: String,
    ) -> Result<Sealed, AppError> {
        let phc = Zeroizing::new(self.id().hasher.hash(password).await.map_err(internal)?);
        self.id()
            .keys
            .vault()
            .try_seal(phc.as_bytes(), &password_context(user))
            .map_err(internal)
    }

    /// Records a failed attempt by `client` (and the lock-out it may cause, which the user is
    /// told about by email), then waits until the read models show it, so that the next attempt
    /// in line sees it.
    pub(crate) async fn record_failure(
        &self,
        user: &UserView,
        client: &Client,
    ) -> Result<(), AppError> {
        let now = self.now();
        let command = CredentialsCommand::RecordFailure {
            now,
            policy: self.id().config.lockout,
            ip: client.ip_text(),
            user_agent: client.user_agent().map(str::to_owned),
        };
        let (outcome, state): (_, Credentials) = self
            .execute_to_state::<CredentialsAggregate>(
                &system_ctx("sign-in"),
                &credentials_key(user.id),
                "",
                command,
            )
            .await?;
        self.wait_for(outcome.position).await?;
        if let Some(until) = state.locked_until
            && until > now
            && state.failures == 0
        {
            self.mail(
                &user.email,
                Some(user.id),
                None,
                client.lang(),
                idstream_mailer::templates::Mail::AccountLocked { until },
            )
            .await;
        }
        Ok(())
    }

    pub(crate) async fn record_success(
        &self,
        user: UserId,
        creds: Option<&CredentialsView>,
    ) -> Result<(), AppError> {
        if creds.is_none_or(|c| c.failures == 0 && c.lockouts == 0) {
            return Ok(());
        }
        self.execute::<CredentialsAggregate>(
            &user_ctx(user),
            &credentials_key(user),
            "",
            CredentialsCommand::RecordSuccess,
        )
        .await?;
        Ok(())
    }

    /// Sends a message whose event is already in the log. A failure is logged, not returned:
    /// what the message announces has happened, and the caller can ask for it again.
    /// Mails `mail` to `to` from a tenant: `tenant`, else the one tenant `user` belongs to (a
    /// person of several gets idstream's neutral frame). It is written in the language `user`
    /// chose in their profile, else in `asked` (the language the person's request asked for),
    /// else in the tenant's language, else in English; a mail sent on an administrator's behalf
    /// passes no `asked`, so that the administrator's browser does not choose the invitee's
    /// language. Whether it was handed over.
    pub(crate) async fn mail(
        &self,
        to: &str,
        user: Option<UserId>,
        tenant: Option<&TenantId>,
        asked: Option<idstream_mailer::templates::Lang>,
        mail: idstream_mailer::templates::Mail<'_>,
    ) -> bool {
        use idstream_mailer::templates::{Branding, Lang};
        let tenant = match tenant {
            Some(tenant) => Some(tenant.clone()),
            None => user
                .and_then(|user| self.user_tenants(&user).ok())
                .filter(|tenants| tenants.len() == 1)
                .and_then(|mut tenants| tenants.pop()),
        };
        let view = tenant.and_then(|tenant| self.tenant_view_now(&tenant).ok().flatten());
        let (brand, tenant_lang) = match view {
            Some(view) => (
                Branding {
                    name: view.name.clone(),
                    logo_url: view.settings.logo_url.clone(),
                    colour: view.settings.brand_colour.clone(),
                },
                Lang::from_tag(&view.settings.language),
            ),
            None => (Branding::neutral(), None),
        };
        let chosen = user.and_then(|user| self.user_language(user).ok().flatten());
        let lang = chosen.or(asked).or(tenant_lang).unwrap_or_default();
        let message = self.id().mail_templates.render(to, lang, &brand, mail);
        self.send_mail(message).await
    }

    pub(crate) async fn send_mail(&self, message: idstream_mailer::Message) -> bool {
        match self.id().mailer.send(&message).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "an email could not be sent");
                false
            }
        }
    }

    /// The tenant a sign-in lands in: the one asked for if the user belongs to it, else the
    /// first the user belongs to.
    pub(crate) fn sign_in_tenant(
        &self,
        user: UserId,
        wanted: Option<TenantId>,
    ) -> Result<TenantId, AppError> {
        let tenants = self.user_tenants(&user)?;
        match wanted {
            Some(tenant) if tenants.contains(&tenant) => Ok(tenant),
            Some(_) => Err(AppError::NotAMember),
            None => tenants.into_iter().next().ok_or(AppError::NotAMember),
        }
    }

    /// After a first factor (password, magic link, emailed code): a second-factor challenge if
    /// the account has TOTP, else a session.
    pub(crate) async fn first_factor_passed(
        &self,
        user: UserId,
        creds: Option<&CredentialsView>,
        tenant: TenantId,
        method: SignInMethod,
        client: &Client,
        remember: bool,
    ) -> Result<SignIn, AppError> {
        let now = self.now();
        if creds.is_some_and(CredentialsView::has_second_factor) {
            let challenge = Challenge {
                user,
                tenant,
                expires: (now + CHALLENGE_TTL).unix_timestamp(),
                remember,
                federated: method == SignInMethod::Federated,
            };
            let json = Zeroizing::new(serde_json::to_vec(&challenge).map_err(internal)?);
            let sealed = self
                .id()
                .keys
                .vault()
                .try_seal(&json, CHALLENGE_CONTEXT)
                .map_err(internal)?;
            return Ok(SignIn::SecondFactorRequired {
                challenge: sealed.as_str().to_owned(),
                expires_in: CHALLENGE_TTL.whole_seconds(),
            });
        }
        self.record_success(user, creds).await?;
        self.start_session(user, tenant, method, client, remember)
            .await
            .map(SignIn::Complete)
    }

    /// The second-factor challenge of a sign-in's first step, if it is genuine and live at `now`.
    pub(crate) fn open_challenge(
        &self,
        challenge: &str,
        now: OffsetDateTime,
    ) -> Result<Challenge, AppError> {
        Sealed::parse(challenge.trim())
            .ok()
            .and_then(|sealed| self.id().keys.vault().open(&sealed, CHALLENGE_CONTEXT).ok())
            .and_then(|json| serde_json::from_slice::<Challenge>(&json).ok())
            .filter(|c| now.unix_timestamp() < c.expires)
            .ok_or(AppError::InvalidToken)
    }

    /// Starts a session in `tenant` for a sign-in by `client` and mints its first tokens. With
    /// `remember`, the session lives up to the tenant's `remember_days` (when it allows that).
    pub(crate) async fn start_session(
        &self,
        user: UserId,
        tenant: TenantId,
        method: SignInMethod,
        client: &Client,
        remember: bool,
    ) -> Result<Tokens, AppError> {
        let settings = self.tenant_view(&tenant).await?.settings;
        let session = Ulid::new();
        let refresh = OpaqueToken::generate(TokenKind::Refresh);
        let now = self.now();
        let command = SessionCommand::Start {
            user,
            tenant: tenant.clone(),
            method,
            refresh: self.refresh_index(refresh.reveal()),
            now,
            lifetimes: SessionLifetimes::of(&settings),
            remember,
            ip: client.ip_text(),
            user_agent: client.user_agent().map(str::to_owned),
        };
        let (outcome, state) = self
            .execute_to_state::<SessionAggregate>(
                &user_ctx(user),
                &session_key(session),
                "",
                command,
            )
            .await?;
        Ok(self.tokens(
            user,
            tenant,
            session,
            method,
            refresh.reveal().to_owned(),
            state.remembered,
            outcome.position,
            now,
        ))
    }

    pub(crate) fn refresh_index(&self, token: &str) -> idstream_domain::secret::BlindIndex {
        self.id().keys.vault().blind_index("refresh", token)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tokens(
        &self,
        user: UserId,
        tenant: TenantId,
        session: Ulid,
        method: SignInMethod,
        refresh_token: String,
        remembered: bool,
        position: Position,
        now: OffsetDateTime,
    ) -> Tokens {
        let parts = self.id();
        let ring = parts.keys.signing();
        let access_token = parts.issuer.sign(
            &ring,
            &AccessSubject {
                sub: user.to_string(),
                tid: tenant.to_string(),
                sid: session.to_string(),
                amr: method.amr().iter().map(|m| (*m).to_owned()).collect(),
                ..AccessSubject::default()
            },
            now,
        );
        Tokens {
            access_token,
            expires_in: parts.issuer.ttl.min(ring.max_token_ttl()).whole_seconds(),
            refresh_token,
            session,
            user,
            tenant,
            remembered,
            position,
        }
    }

    /// The session's standing, from [`AuthChecks`] or the identity read model.
    fn session_standing(&self, session: &Ulid) -> Result<Option<Arc<SessionStanding>>, AppError> {
        let load = || {
            self.identity()
                .session_standing(session)
                .map(|found| found.map(Arc::new))
                .map_err(identity_storage)
        };
        let checks = &self.id().auth_checks;
        match checks.position(self.read_models(), idstream_identity::NAME) {
            Some(position) => checks.sessions.get_or_load(session, position, load),
            None => load(),
        }
    }

    /// Whether the user may act at `now` (the rule of [`App::require_active`]), from
    /// [`AuthChecks`] or the directory.
    fn user_active_at(&self, user: UserId, now: OffsetDateTime) -> Result<bool, AppError> {
        Ok(self
            .user_facts(user)?
            .is_some_and(|(standing, _)| standing.is_active_at(now)))
    }

    /// The language `user` chose, from [`AuthChecks`] or the directory.
    pub(crate) fn user_language(
        &self,
        user: UserId,
    ) -> Result<Option<idstream_mailer::templates::Lang>, AppError> {
        Ok(self.user_facts(user)?.and_then(|(_, language)| language))
    }

    fn user_facts(
        &self,
        user: UserId,
    ) -> Result<Option<(UserStanding, Option<idstream_mailer::templates::Lang>)>, AppError> {
        let load = || {
            self.directory()
                .user_sealed(&user)
                .map(|found| {
                    found.map(|view| {
                        let language = view
                            .language
                            .as_deref()
                            .and_then(idstream_mailer::templates::Lang::from_tag);
                        (UserStanding::of(&view), language)
                    })
                })
                .map_err(internal)
        };
        let checks = &self.id().auth_checks;
        match checks.position(self.read_models(), idstream_directory::NAME) {
            Some(position) => checks.users.get_or_load(&user, position, load),
            None => load(),
        }
    }

    /// The account overview of `user` in `tenant` as the directory has it now, from
    /// [`AuthChecks`] (read once per change of the directory) or `read` (from the directory).
    pub(crate) fn account_now(
        &self,
        user: &UserId,
        tenant: &TenantId,
        read: impl FnOnce() -> Result<Option<super::sessions::AccountOverview>, AppError>,
    ) -> Result<Arc<super::sessions::AccountOverview>, AppError> {
        let load = || read().map(|found| found.map(Arc::new));
        let checks = &self.id().auth_checks;
        let key = (*user, tenant.clone());
        match checks.position(self.read_models(), idstream_directory::NAME) {
            Some(position) => checks.accounts.get_or_load(&key, position, load),
            None => load(),
        }?
        .ok_or(AppError::UserNotFound)
    }

    /// Whether `user` is an owner or administrator of `tenant` (the people a tenant's
    /// `phishing_resistant_admins` holds to passkeys).
    fn is_tenant_admin(&self, tenant: &TenantId, user: &UserId) -> Result<bool, AppError> {
        Ok(self
            .access_view()
            .member_record(tenant, user)
            .map_err(internal)?
            .is_some_and(|member| {
                member
                    .roles
                    .iter()
                    .any(|role| matches!(role.as_str(), "owner" | "admin"))
            }))
    }

    /// The tenant's view as the directory has it now, from [`AuthChecks`] (decoded once per
    /// change of the directory) or the directory.
    pub(crate) fn tenant_view_now(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Arc<idstream_directory::TenantView>>, AppError> {
        let load = || {
            self.directory()
                .tenant(tenant)
                .map(|found| found.map(Arc::new))
                .map_err(internal)
        };
        let checks = &self.id().auth_checks;
        match checks.position(self.read_models(), idstream_directory::NAME) {
            Some(position) => checks.tenants.get_or_load(tenant, position, load),
            None => load(),
        }
    }

    /// Whether the user has a second factor (TOTP or a passkey).
    fn second_factor(&self, user: UserId) -> Result<bool, AppError> {
        let load = || {
            self.identity()
                .second_factor(&user)
                .map_err(identity_storage)
        };
        let checks = &self.id().auth_checks;
        let enabled = match checks.position(self.read_models(), idstream_identity::NAME) {
            Some(position) => checks.totp.get_or_load(&user, position, load)?,
            None => load()?,
        };
        Ok(enabled.unwrap_or(false))
    }

    /// Refuses users who may not act now (suspended, deactivated, not yet activated).
    pub(crate) fn require_active(&self, user: UserId, now: OffsetDateTime) -> Result<(), AppError> {
        let active = self
            .directory()
            .user(&user)
            .map_err(internal)?
            .is_some_and(|u| u.status_at(now) == UserStatus::Active);
        if active {
            Ok(())
        } else {
            Err(AppError::Unauthenticated)
        }
    }
}

/// Entries per cache of [`AuthChecks`] (a session about 170 bytes with its tenant's name, a user
/// or a second-factor flag under 64: at most about 11 MiB for the sessions).
const AUTH_CHECK_ENTRIES: usize = 65_536;
/// Tenants whose `mfa_required` is kept.
const AUTH_CHECK_TENANTS: usize = 4_096;
/// People whose account overview is kept (about 1 KiB each: at most about 16 MiB).
const ACCOUNT_ENTRIES: usize = 16_384;

/// What [`App::authenticate`] checks on every request, kept decoded in memory: each entry is
/// tagged with the position its read model had published when it was read and answers only
/// while that model is still there (see [`ViewCache`]), so it is exactly as fresh as reading the
/// model. Bounded. Sessions keep no IP address or user agent, users only their status; account
/// overviews hold what the account page shows of a person (in memory only, like the read-model
/// seal's values opened lately, and never answered once the directory has moved on: an erased
/// person's entry is only left to be pushed out).
pub(crate) struct AuthChecks {
    /// Session → its standing (identity read model).
    sessions: ViewCache<Ulid, Arc<SessionStanding>>,
    /// User → status and chosen language (directory).
    users: ViewCache<UserId, (UserStanding, Option<idstream_mailer::templates::Lang>)>,
    /// Tenant → its view (directory): `mfa_required`, and what pages show of it.
    tenants: ViewCache<TenantId, Arc<idstream_directory::TenantView>>,
    /// User → has a second factor, a confirmed TOTP secret or a passkey (identity read model).
    totp: ViewCache<UserId, bool>,
    /// (User, tenant) → their account overview (directory).
    accounts: ViewCache<(UserId, TenantId), Arc<super::sessions::AccountOverview>>,
    /// Whether the read models include the identity and directory models, whose positions
    /// tag the entries; without them nothing is cached.
    tagged: OnceLock<bool>,
}

impl Default for AuthChecks {
    fn default() -> Self {
        AuthChecks {
            sessions: ViewCache::new(AUTH_CHECK_ENTRIES),
            users: ViewCache::new(AUTH_CHECK_ENTRIES),
            tenants: ViewCache::new(AUTH_CHECK_TENANTS),
            totp: ViewCache::new(AUTH_CHECK_ENTRIES),
            accounts: ViewCache::new(ACCOUNT_ENTRIES),
            tagged: OnceLock::new(),
        }
    }
}

impl AuthChecks {
    /// The position read model `name` has published, to tag what is read from it next; `None`
    /// if the read models lack it (then nothing is cached).
    fn position(&self, models: &ReadModels, name: &str) -> Option<Position> {
        let tagged = *self.tagged.get_or_init(|| {
            let names = models.names();
            names.contains(&idstream_identity::NAME) && names.contains(&idstream_directory::NAME)
        });
        tagged.then(|| models.position(name))
    }
}

/// What [`App::authenticate`] needs of a user: whether they may act, and from when if a timed
/// suspension ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserStanding {
    Active,
    /// Suspended until then: active from then on ([`UserView::status_at`]).
    SuspendedUntil(OffsetDateTime),
    /// Invited, suspended indefinitely, deactivated or erased.
    Inactive,
}

impl UserStanding {
    fn of(view: &UserView) -> UserStanding {
        match (view.status, view.suspended_until) {
            (UserStatus::Active, _) => UserStanding::Active,
            (UserStatus::Suspended, Some(end)) => UserStanding::SuspendedUntil(end),
            _ => UserStanding::Inactive,
        }
    }

    /// `view.status_at(now) == UserStatus::Active` of the view it was made of.
    fn is_active_at(self, now: OffsetDateTime) -> bool {
        match self {
            UserStanding::Active => true,
            UserStanding::SuspendedUntil(end) => now >= end,
            UserStanding::Inactive => false,
        }
    }
}

impl Identity {
    /// The JSON Web Key Set of the access-token signing keys (current and retired-but-valid).
    ///
    /// Who: anyone.
    pub fn jwks(&self, caller: &Caller) -> serde_json::Value {
        self.open_to_anyone(caller);
        self.id().keys.signing().jwks()
    }

    /// Step one of a sign-in: email and password.
    ///
    /// Unknown addresses, wrong passwords, accounts without a password and locked accounts all
    /// get [`AppError::InvalidCredentials`] after one argon2 check, and nothing else that takes
    /// long: a wrong password's failure is recorded after the answer (by
    /// [`Identity::record_failure_behind`]), so that the four cost the same and timing tells
    /// nothing about the account (`benches/signin_timing.rs` measures it). A right password of a
    /// suspended or deactivated account gets [`AppError::AccountDisabled`].
    ///
    /// Who: anyone.
    pub async fn sign_in(
        &self,
        caller: &Caller,
        email: &str,
        password: String,
        tenant: Option<TenantId>,
        remember: bool,
    ) -> Result<SignIn, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::PasswordTooLong);
        }
        let Some(user) = self.find_user_by_email(email).await? else {
            self.decoy_check(password).await;
            return Err(AppError::InvalidCredentials);
        };
        let turn = self.id().locks.lock(user.id).await;
        // The password (or the user's status) may have changed a moment ago, maybe on another
        // replica.
        self.catch_up().await?;
        let user = self.require_user(user.id).await?;
        let creds = self.credentials_view(user.id)?;
        let now = self.now();
        if creds.as_ref().is_some_and(|c| c.is_locked_at(now)) {
            // As long as a wrong password takes: a lock-out must not show in the timing.
            self.decoy_check(password).await;
            return Err(AppError::InvalidCredentials);
        }
        let sealed = creds.as_ref().and_then(|c| c.password.as_ref());
        if !self.password_matches(user.id, sealed, password).await? {
            if sealed.is_some() {
                self.record_failure_behind(user, client.clone(), turn);
            }
            return Err(AppError::InvalidCredentials);
        }
        match user.status_at(now) {
            UserStatus::Active => {}
            UserStatus::Invited => return Err(AppError::EmailNotVerified),
            _ => return Err(AppError::AccountDisabled),
        }
        let tenant = self.sign_in_tenant(user.id, tenant)?;
        self.first_factor_passed(
            user.id,
            creds.as_ref(),
            tenant,
            SignInMethod::Password,
            client,
            remember,
        )
        .await
    }

    /// Step two: a TOTP code or a recovery code with the challenge of step one. `remember`, when
    /// given, replaces the choice made at step one.
    ///
    /// Who: anyone (holding the challenge).
    pub async fn sign_in_second_factor(
        &self,
        caller: &Caller,
        challenge: &str,
        code: Option<&str>,
        recovery_code: Option<&str>,
        remember: Option<bool>,
    ) -> Result<Tokens, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        let now = self.now();
        let challenge = self.open_challenge(challenge, now)?;
        let user = self.require_user(challenge.user).await?;
        let _turn = self.id().locks.lock(user.id).await;
        self.catch_up().await?;
        let user = self.require_user(user.id).await?;
        let creds = self
            .credentials_view(user.id)?
            .ok_or(AppError::InvalidCredentials)?;
        if creds.is_locked_at(now) {
            return Err(AppError::InvalidCredentials);
        }
        if user.status_at(now) != UserStatus::Active {
            return Err(AppError::AccountDisabled);
        }
        let command = match (code, recovery_code) {
            (Some(code), None) => {
                let sealed = creds.totp.as_ref().ok_or(AppError::InvalidCredentials)?;
                let secret = self.open_totp(user.id, sealed)?;
                match secret.verify(code, now, Some(creds.totp_last_step)) {
                    Some(step) => CredentialsCommand::UseTotp { step },
                    None => {
                        self.record_failure(&user, client).await?;
                        return Err(AppError::InvalidCredentials);
                    }
                }
            }
            (None, Some(recovery_code)) => CredentialsCommand::UseRecoveryCode {
                index: self.id().keys.vault().blind_index(
                    &recovery_purpose(user.id),
                    &recovery::normalise(recovery_code),
                ),
            },
            _ => return Err(AppError::SecondFactorMissing),
        };
        match self
            .execute::<CredentialsAggregate>(
                &user_ctx(user.id),
                &credentials_key(user.id),
                "",
                command,
            )
            .await
        {
            Ok(_) => {}
            // Two requests with one code: the other one won.
            Err(AppError::Credentials(CredentialsError::TotpReplayed)) => {
                return Err(AppError::InvalidCredentials);
            }
            Err(AppError::Credentials(CredentialsError::InvalidRecoveryCode)) => {
                self.record_failure(&user, client).await?;
                return Err(AppError::InvalidCredentials);
            }
            Err(other) => return Err(other),
        }
        self.record_success(user.id, Some(&creds)).await?;
        self.start_session(
            user.id,
            challenge.tenant,
            if challenge.federated {
                SignInMethod::FederatedAndTotp
            } else {
                SignInMethod::PasswordAndTotp
            },
            client,
            remember.unwrap_or(challenge.remember),
        )
        .await
    }

    /// Who `Authorization: Bearer <credential>` speaks for (the authentication that makes a
    /// [`Caller`]; it authorizes nothing, so it takes none): an access token of a live session of
    /// an active user, or a usable API key (`ids_…`). Anything else is
    /// [`AppError::Unauthenticated`], with no hint of why.
    ///
    /// The session, the user's status, the tenant's `mfa_required` and the user's second factor
    /// are checked on every request, through [`AuthChecks`]: as fresh as reading the read models
    /// themselves, so a sign-out, a revoked session, a suspension or a deactivation refuses the
    /// next request once the read models have applied it.
    pub async fn authenticate(&self, credential: &str) -> Result<Authenticated, AppError> {
        let credential = credential.trim();
        if credential.starts_with(idstream_auth::api_key::API_KEY_PREFIX) {
            return self.authenticate_api_key(credential).await;
        }
        let now = self.now();
        let parts = self.id();
        let verify = || {
            parts.issuer.verify_cached(
                &parts.keys.signing(),
                &parts.verified_tokens,
                credential,
                now,
            )
        };
        let claims = match verify() {
            // Signed by a key this replica has not read from the key store yet (another replica
            // staged it moments ago and this one has not re-read the store since): look again.
            Err(idstream_auth::TokenError::UnknownKey)
                if parts
                    .keys
                    .reload_if_not_since(UNKNOWN_KEY_RELOAD)
                    .await
                    .unwrap_or(false) =>
            {
                verify()
            }
            other => other,
        }
        .map_err(|_| AppError::Unauthenticated)?;
        let (Ok(user), Ok(tenant), Ok(session)) = (
            claims.sub.parse::<UserId>(),
            claims.tid.parse::<TenantId>(),
            claims.sid.parse::<Ulid>(),
        ) else {
            return Err(AppError::Unauthenticated);
        };
        // A token minted a moment ago, maybe by another replica: wait for its session.
        let view = self
            .find(|core| core.session_standing(&session))
            .await?
            .ok_or(AppError::Unauthenticated)?;
        if view.user != user || view.tenant != tenant || !view.is_live_at(now) {
            return Err(AppError::Unauthenticated);
        }
        if !self.user_active_at(user, now)? {
            return Err(AppError::Unauthenticated);
        }
        // The tenant's view is read once: what it requires of second factors and of passkeys.
        let (mfa_required, passkeys_for_admins) = self
            .tenant_view_now(&tenant)?
            .map(|t| {
                (
                    t.settings.mfa_required,
                    t.settings.phishing_resistant_admins,
                )
            })
            .unwrap_or_default();
        let must_enrol_second_factor =
            (mfa_required && !view.method.is_multi_factor() && !self.second_factor(user)?)
                || (passkeys_for_admins
                    && !view.method.is_phishing_resistant()
                    && self.is_tenant_admin(&tenant, &user)?);
        Ok(Authenticated {
            user,
            tenant,
            via: Credential::Session(session),
            must_enrol_second_factor,
        })
    }
}

impl Identity {
    /// Records a wrong password's failure after the answer has gone, still holding the account's
    /// turn (`turn`): the next attempt on the account waits for it and sees the failure, so the
    /// count and the lock-out are exact, while the answer costs no more than for an unknown
    /// address. If the log cannot take the failure it is logged and lost: the attempt was
    /// refused anyway, and the source's rate limit still holds.
    fn record_failure_behind(
        &self,
        user: UserView,
        client: Client,
        turn: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let core = self.0.clone();
        core.id().behind.start();
        tokio::spawn(async move {
            if let Err(error) = core.record_failure(&user, &client).await {
                tracing::warn!(user = %user.id, %error, "a failed sign-in could not be recorded");
            }
            drop(turn);
            core.id().behind.finish();
        });
    }
}

/// The cached checks of [`Identity::authenticate`] against a real embedded log and real read models:
/// every change a request must see is seen by the first request after the read models applied
/// it, even when the previous requests were answered from memory.
#[cfg(test)]
mod auth_check_tests {
    use std::path::Path;

    use idstream_auth::TotpSecret;

    use super::*;
    use crate::identity::{Bootstrap, IdentityServices};
    use crate::tests::ShiftedClock;
    use crate::{App, Clock, SuspendRequest};

    const ADMIN: &str = "admin@example.com";
    const ADMIN_PASSWORD: &str = "correct horse battery staple";
    const BOB: &str = "bob@example.com";
    const BOB_PASSWORD: &str = "bobs pass phrase";

    async fn app(dir: &Path, clock: Arc<dyn Clock>) -> App {
        let services = IdentityServices::local(dir).await.unwrap();
        let app = crate::tests::app_in(dir, clock, services).await;
        app.identity
            .bootstrap(
                &system(),
                Bootstrap {
                    tenant: acme(),
                    tenant_name: "Acme".into(),
                    email: ADMIN.into(),
                    first_name: "Ada".into(),
                    last_name: "Admin".into(),
                    password: ADMIN_PASSWORD.into(),
                },
            )
            .await
            .unwrap();
        app
    }

    fn acme() -> TenantId {
        "acme".parse().unwrap()
    }

    fn system() -> Caller {
        Caller::system("test")
    }

    async fn sign_in(app: &App, email: &str, password: &str) -> Tokens {
        match app
            .identity
            .sign_in(&Caller::anonymous(), email, password.into(), None, false)
            .await
            .unwrap()
        {
            SignIn::Complete(tokens) => tokens,
            other => panic!("expected tokens, got {other:?}"),
        }
    }

    /// Invites Bob into acme (no roles) and accepts with his password.
    async fn bob(app: &App, dir: &Path) -> UserId {
        crate::identity::tests::invited_member(app, dir, BOB, BOB_PASSWORD, &[]).await
    }

    /// Authenticates twice, so that the second answer comes from memory.
    async fn accepted(app: &App, tokens: &Tokens) -> Authenticated {
        eprintln!(
            "DEBUG accepted? session {:?} user {:?}",
            app.core()
                .identity()
                .session(&tokens.session)
                .unwrap()
                .map(|v| (v.revoked, v.last_active_at, v.expires_at)),
            app.core()
                .directory()
                .user(&tokens.user)
                .unwrap()
                .map(|u| (u.status, u.suspended_until))
        );
        let first = app
            .identity
            .authenticate(&tokens.access_token)
            .await
            .unwrap();
        let again = app
            .identity
            .authenticate(&tokens.access_token)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.via, Credential::Session(tokens.session));
        first
    }

    /// A new access token for the same session, as of the (shifted) clock: the session's own
    /// standing decides, not the first token's five minutes.
    fn reminted(app: &App, tokens: &Tokens) -> Tokens {
        app.core().tokens(
            tokens.user,
            tokens.tenant.clone(),
            tokens.session,
            SignInMethod::Password,
            tokens.refresh_token.clone(),
            tokens.remembered,
            tokens.position,
            app.core().now(),
        )
    }

    async fn refused(app: &App, tokens: &Tokens) {
        match app.identity.authenticate(&tokens.access_token).await {
            Err(AppError::Unauthenticated) => {}
            other => panic!("expected Unauthenticated, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_session_is_refused_once_signed_out_revoked_or_idle_for_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let app = app(dir.path(), clock.clone()).await;
        let one = sign_in(&app, ADMIN, ADMIN_PASSWORD).await;
        let two = sign_in(&app, ADMIN, ADMIN_PASSWORD).await;
        let three = sign_in(&app, ADMIN, ADMIN_PASSWORD).await;
        let caller = accepted(&app, &one).await;
        accepted(&app, &two).await;
        accepted(&app, &three).await;

        let signed_out = app
            .identity
            .sign_out(&Caller::user(caller.clone()))
            .await
            .unwrap();
        app.core().wait_for(signed_out.position).await.unwrap();
        refused(&app, &one).await;
        let caller = accepted(&app, &two).await;

        let revoked = app
            .identity
            .revoke_my_session(&Caller::user(caller.clone()), three.session)
            .await
            .unwrap();
        app.core().wait_for(revoked.position).await.unwrap();
        refused(&app, &three).await;
        accepted(&app, &two).await;

        // No event at all: the cached session runs out of idle time (30 minutes by default).
        clock.advance(Duration::minutes(29));
        let two = reminted(&app, &two);
        accepted(&app, &two).await;
        clock.advance(Duration::minutes(2));
        refused(&app, &reminted(&app, &two)).await;
    }

    #[tokio::test]
    async fn a_user_is_refused_while_suspended_or_deactivated_and_once_erased() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let app = app(dir.path(), clock.clone()).await;
        let bob = bob(&app, dir.path()).await;
        let tokens = sign_in(&app, BOB, BOB_PASSWORD).await;
        accepted(&app, &tokens).await;

        // Only the user changes, not the session: the same token works again once reinstated.
        let suspend = |until| SuspendRequest {
            until,
            reason: None,
        };
        let suspended = app
            .users
            .suspend(&system(), bob, suspend(None))
            .await
            .unwrap();
        app.core().wait_for(suspended.position).await.unwrap();
        refused(&app, &tokens).await;
        refused(&app, &tokens).await;
        let reinstated = app.users.reinstate(&system(), bob).await.unwrap();
        app.core().wait_for(reinstated.position).await.unwrap();
        accepted(&app, &tokens).await;

        // A timed suspension ends by itself, with no event.
        let until = clock.now() + Duration::minutes(10);
        let suspended = app
            .users
            .suspend(&system(), bob, suspend(Some(until)))
            .await
            .unwrap();
        app.core().wait_for(suspended.position).await.unwrap();
        refused(&app, &tokens).await;
        clock.advance(Duration::minutes(11));
        let tokens = reminted(&app, &tokens);
        accepted(&app, &tokens).await;

        let deactivated = app.users.deactivate(&system(), bob).await.unwrap();
        app.core().wait_for(deactivated.position).await.unwrap();
        refused(&app, &tokens).await;
        let reactivated = app.users.reactivate(&system(), bob).await.unwrap();
        app.core().wait_for(reactivated.position).await.unwrap();
        accepted(&app, &tokens).await;

        let erased = app.users.erase(&system(), bob).await.unwrap();
        app.core().wait_for(erased.position).await.unwrap();
        refused(&app, &tokens).await;
    }

    #[tokio::test]
    async fn a_tenant_requiring_a_second_factor_restricts_sessions_until_totp_is_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), Arc::new(crate::SystemClock)).await;
        let tokens = sign_in(&app, ADMIN, ADMIN_PASSWORD).await;
        assert!(!accepted(&app, &tokens).await.must_enrol_second_factor);

        let settings = idstream_domain::tenant::TenantSettings {
            mfa_required: true,
            ..Default::default()
        };
        crate::identity::tests::change_settings(&app, settings).await;
        let caller = accepted(&app, &tokens).await;
        assert!(caller.must_enrol_second_factor);

        let setup = app
            .identity
            .start_totp(&Caller::user(caller.clone()))
            .await
            .unwrap();
        assert!(accepted(&app, &tokens).await.must_enrol_second_factor);
        let secret = TotpSecret::from_base32(&setup.secret).unwrap();
        let (_, confirmed) = app
            .identity
            .confirm_totp(
                &Caller::user(caller.clone()),
                &secret.code_at(OffsetDateTime::now_utc()),
            )
            .await
            .unwrap();
        app.core().wait_for(confirmed.position).await.unwrap();
        assert!(!accepted(&app, &tokens).await.must_enrol_second_factor);

        let settings = idstream_domain::tenant::TenantSettings::default();
        crate::identity::tests::change_settings(&app, settings).await;
        assert!(!accepted(&app, &tokens).await.must_enrol_second_factor);
    }
}
