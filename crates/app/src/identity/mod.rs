//! Identity: sign-in, sessions and tokens, invitations, passwords, two-factor authentication and
//! API keys.
//!
//! Everything here is a command on an aggregate of `idstream_domain::identity` (or the user
//! aggregate) plus the work that needs keys, time or randomness, which the pure domain cannot do:
//! hashing and checking passwords (argon2id on the bounded [`PasswordHasherPool`]), sealing and
//! opening secrets and blind-indexing tokens (the [`Vault`](idstream_keys::Vault)), signing
//! access tokens, sending mail.
//!
//! **Invariants:**
//! - A secret is shown once, to its owner, in the response (or email) that created it; the log
//!   and read models hold it only sealed or blind-indexed; no error or log line carries one.
//! - An email is sent only after the event it announces is in the log.
//! - Sign-in, password reset and registration answer the same for unknown and known accounts
//!   (same status and body, an argon2 check either way so the timing is alike).
//! - Sign-in attempts on one account are serialised within a replica and counted in the log,
//!   so a flood of guesses runs at most a handful of argon2 checks before the lock-out holds.

mod api_keys;
mod email_flows;
mod invitations;
mod limits;
mod passkeys;
mod passwords;
mod sessions;
mod signin;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use idstream_auth::{Issuer, PasswordHasherPool, PasswordPolicy, VerifiedTokens};
use idstream_domain::access::Permission;
use idstream_domain::envelope::AggregateType;
use idstream_domain::identity::credentials::LockoutPolicy;
use idstream_domain::tenant::PasswordPolicySettings;
use idstream_domain::{Actor, ActorKind, StreamKey, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_keys::{Keys, RotationPolicy};
use idstream_mailer::Mailer;
use time::Duration;
use ulid::Ulid;

pub use api_keys::{ApiKeyRequest, IssuedApiKey};
pub use email_flows::Registration;
pub use invitations::{AcceptInvitation, InvitationRequest, SentInvitation};
pub use limits::{AccountLocks, RateLimiter};
pub use passkeys::{PasskeyCeremony, PasskeySummary, RegisteredPasskey};
pub use passwords::{Bootstrap, TotpSetup};
pub use sessions::{AccountOverview, MyTenant};
pub(crate) use signin::system_ctx;
pub(crate) use signin::user_ctx as user_ctx_of;
pub use signin::{SignIn, Tokens};

use crate::core::Core;
use crate::{AppError, service};

service!(
    /// Identity: sign-in, sessions, passwords, two factors, email flows, invitations, API keys.
    Identity
);

/// Identity settings that are the service's, not a tenant's.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `iss` of access tokens: the service's public URL.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Lifetime of an access token (5 minutes by default; never more than the signing key ring
    /// allows).
    pub access_ttl: Duration,
    /// Where links in emails point: `<public_url>/accept-invitation?token=…` and so on.
    pub public_url: String,
    pub lockout: LockoutPolicy,
    /// Credential requests (sign-in, second factor, refresh, reset, acceptance) per source
    /// address and minute, per endpoint.
    pub attempts_per_source_per_minute: u32,
    /// How the access-token signing keys rotate by themselves (every 30 days by default, each
    /// next key published an hour before it signs).
    pub signing_keys: RotationPolicy,
    /// How long an OpenID Connect authorization code may be exchanged (a minute by default).
    pub code_ttl: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "idstream".into(),
            access_ttl: Duration::minutes(5),
            public_url: "http://127.0.0.1:8080".into(),
            lockout: LockoutPolicy::default(),
            attempts_per_source_per_minute: 60,
            signing_keys: RotationPolicy {
                period: Some(signin::SIGNING_KEY_AGE),
                lead: signin::SIGNING_KEY_LEAD,
            },
            code_ttl: idstream_domain::identity::session::CODE_LIFETIME,
        }
    }
}

/// What identity needs besides the log and read models.
pub struct IdentityServices {
    pub keys: Arc<Keys>,
    pub mailer: Arc<dyn Mailer>,
    /// The mails' templates (the built-in ones, or a deployment's replacements).
    pub mail_templates: Arc<idstream_mailer::templates::MailTemplates>,
    pub hasher: PasswordHasherPool,
    pub config: IdentityConfig,
}

impl IdentityServices {
    /// Everything in the directory `dir`: keys in `dir/keys`, mail as `.eml` files in
    /// `dir/mail`, two argon2 hashes at a time, default settings. For a single machine, tests and
    /// benchmarks; the server builds its own from configuration.
    pub async fn local(dir: &std::path::Path) -> Result<IdentityServices, String> {
        let config = IdentityConfig::default();
        let store =
            idstream_keys::FileKeyStore::open(dir.join("keys")).map_err(|e| e.to_string())?;
        let keys = Keys::load_or_create(
            Arc::new(store),
            time::OffsetDateTime::now_utc(),
            config.access_ttl,
        )
        .await
        .map_err(|e| e.to_string())?;
        let from: idstream_mailer::Mailbox = "idstream <no-reply@localhost>"
            .parse()
            .map_err(|e| format!("invalid sender: {e}"))?;
        Ok(IdentityServices {
            keys: Arc::new(keys),
            mailer: Arc::new(idstream_mailer::FileMailer::new(dir.join("mail"), from)),
            mail_templates: Arc::new(
                idstream_mailer::templates::MailTemplates::load(None).map_err(|e| e.to_string())?,
            ),
            hasher: PasswordHasherPool::new(2),
            config,
        })
    }
}

/// How many verified access tokens are remembered (about 300 bytes each).
const VERIFIED_TOKENS: usize = 65_536;

pub(crate) struct IdentityParts {
    pub(crate) keys: Arc<Keys>,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) mail_templates: Arc<idstream_mailer::templates::MailTemplates>,
    pub(crate) hasher: PasswordHasherPool,
    pub(crate) config: IdentityConfig,
    pub(crate) issuer: Issuer,
    /// Access tokens whose signature was checked already (see `Issuer::verify_cached`).
    pub(crate) verified_tokens: VerifiedTokens,
    /// The session, user, tenant and credential facts each request checks, decoded once per
    /// change of their read models (see `signin::AuthChecks`).
    pub(crate) auth_checks: signin::AuthChecks,
    pub(crate) locks: AccountLocks,
    pub(crate) limiter: RateLimiter,
    /// A hash of a random password, checked when the account does not exist so that the answer
    /// takes as long as for one that does.
    pub(crate) decoy: tokio::sync::OnceCell<String>,
    /// Work finished after its answer went (a wrong password's failure), which a graceful stop
    /// waits for (see [`Identity::settle`]).
    pub(crate) behind: Behind,
    /// The WebAuthn relying party of the public URL, made on first use.
    pub(crate) passkeys: std::sync::OnceLock<Result<idstream_auth::passkey::RelyingParty, String>>,
}

/// Counts work running after its answer.
#[derive(Default)]
pub(crate) struct Behind {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Behind {
    pub(crate) fn start(&self) {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn finish(&self) {
        if self
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.idle.notify_waiters();
        }
    }

    async fn settled(&self) {
        loop {
            let idle = self.idle.notified();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Identity {
    /// Waits (at most `within`) for the work that finishes after its answer (recording a wrong
    /// password's failure): a graceful stop calls it once the last request is answered, so no
    /// failure answered before the stop is left unrecorded. Answers whether all of it finished.
    pub async fn settle(&self, within: std::time::Duration) -> bool {
        tokio::time::timeout(within, self.id().behind.settled())
            .await
            .is_ok()
    }
}

impl IdentityParts {
    pub(crate) fn new(services: IdentityServices) -> IdentityParts {
        let issuer = Issuer::new(
            services.config.issuer.clone(),
            services.config.audience.clone(),
            services.config.access_ttl,
        );
        let limiter = RateLimiter::new(services.config.attempts_per_source_per_minute);
        IdentityParts {
            keys: services.keys,
            mailer: services.mailer,
            mail_templates: services.mail_templates,
            hasher: services.hasher,
            config: services.config,
            issuer,
            verified_tokens: VerifiedTokens::new(VERIFIED_TOKENS),
            auth_checks: signin::AuthChecks::default(),
            locks: AccountLocks::default(),
            limiter,
            decoy: tokio::sync::OnceCell::new(),
            behind: Behind::default(),
            passkeys: std::sync::OnceLock::new(),
        }
    }
}

/// Who a bearer credential speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserId,
    pub tenant: TenantId,
    pub via: Credential,
    /// The tenant requires a second factor (`mfa_required`) and this session was opened
    /// without one by a user who has none, or it requires its owners and administrators to use a
    /// passkey (`phishing_resistant_admins`) and this administrator's session began without one:
    /// until then the session may only set a factor up (TOTP, a passkey), read `me` and sign out.
    pub must_enrol_second_factor: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An access token of a session.
    Session(Ulid),
    /// An API key, with its restriction.
    ApiKey {
        id: Ulid,
        restriction: Option<BTreeSet<Permission>>,
    },
}

impl Authenticated {
    /// The actor recorded on the events this caller causes: the user, or the API key (whose
    /// owner the audit trail finds through the key's `ApiKeyIssued`).
    pub fn actor(&self) -> Actor {
        match &self.via {
            Credential::Session(_) => Actor {
                kind: ActorKind::User,
                id: self.user.to_string(),
            },
            Credential::ApiKey { id, .. } => Actor {
                kind: ActorKind::ApiKey,
                id: id.to_string(),
            },
        }
    }

    pub fn session(&self) -> Option<Ulid> {
        match self.via {
            Credential::Session(id) => Some(id),
            Credential::ApiKey { .. } => None,
        }
    }
}

/// Where a credential request came from: the client's IP address (the socket peer, or the
/// address a trusted proxy reports) and its `User-Agent`. Recorded on the events of sign-ins and
/// failed attempts as personal data of the account's user (encrypted with their key, gone when
/// they are erased), and the address is the source that rate limits count by. `Debug` shows
/// neither, so that no log line carries them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Client {
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    /// The language the client's `Accept-Language` asks for, among those mails are written in.
    lang: Option<idstream_mailer::templates::Lang>,
}

/// The longest `User-Agent` recorded, in characters; longer ones are cut.
pub const MAX_USER_AGENT_CHARS: usize = 256;

impl Client {
    /// A client at `ip` that sent `user_agent` (cut to [`MAX_USER_AGENT_CHARS`], control
    /// characters dropped; empty counts as absent).
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Client {
        let user_agent = user_agent
            .map(|text| {
                text.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|text| !text.is_empty());
        Client {
            ip,
            user_agent,
            lang: None,
        }
    }

    /// The same client, whose `Accept-Language` header was `accept_language`.
    pub fn accepting(mut self, accept_language: Option<&str>) -> Client {
        self.lang = accept_language.and_then(idstream_mailer::templates::Lang::negotiate);
        self
    }

    /// The language the client asked for, if mails are written in it.
    pub fn lang(&self) -> Option<idstream_mailer::templates::Lang> {
        self.lang
    }

    /// A client known only by its address (or not at all).
    pub fn at(ip: Option<IpAddr>) -> Client {
        Client {
            ip,
            user_agent: None,
            lang: None,
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The address as events record it.
    pub(crate) fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_canonical().to_string())
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("ip", &self.ip.map(|_| "<personal>"))
            .field(
                "user_agent",
                &self.user_agent.as_ref().map(|_| "<personal>"),
            )
            .finish()
    }
}

/// What a command that creates a secret returns: the position and the id of what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub position: Position,
}

impl Identity {
    /// The service's public URL (where its pages and the links in its mails are).
    pub fn public_url(&self) -> &str {
        self.id().config.public_url.trim_end_matches('/')
    }
}

impl Core {
    /// A link into the service's public URL for an email: `path_and_query` starts with `/`.
    pub(crate) fn link(&self, path_and_query: &str) -> String {
        format!(
            "{}{path_and_query}",
            self.id().config.public_url.trim_end_matches('/')
        )
    }
}

pub(crate) fn credentials_key(user: UserId) -> StreamKey {
    StreamKey::new(None, AggregateType::Credentials, user.to_string())
}

pub(crate) fn session_key(session: Ulid) -> StreamKey {
    StreamKey::new(None, AggregateType::Session, session.to_string())
}

pub(crate) fn invitation_key(tenant: &TenantId, invitation: Ulid) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Invitation,
        invitation.to_string(),
    )
}

pub(crate) fn api_key_key(tenant: &TenantId, key: Ulid) -> StreamKey {
    StreamKey::new(Some(tenant.clone()), AggregateType::ApiKey, key.to_string())
}

/// The tenant's password policy in the form the checker takes.
pub(crate) fn password_policy(settings: &PasswordPolicySettings) -> PasswordPolicy {
    PasswordPolicy {
        min_length: settings.min_length as usize,
        max_length: settings.max_length as usize,
        require_lowercase: settings.require_lowercase,
        require_uppercase: settings.require_uppercase,
        require_digit: settings.require_digit,
        require_symbol: settings.require_symbol,
        deny_common: settings.deny_common,
    }
}

/// Longest password accepted anywhere before any policy is looked at: argon2 of a huge input
/// is cheap, but reading and holding one is not.
pub const MAX_PASSWORD_BYTES: usize = 4096;

pub(crate) fn identity_storage(e: idstream_identity::IdentityError) -> AppError {
    AppError::Internal(e.to_string())
}

#[cfg(test)]
mod tests;
