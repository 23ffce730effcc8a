//! Passkeys (WebAuthn): registering them, signing in with one alone or as a second factor,
//! listing and removing them.
//!
//! Every ceremony has two steps, which may land on different replicas. The state the second
//! needs (the challenge, and what the library must check) is serialised, sealed with the
//! service's vault (encrypted and authenticated, so it can be neither read nor forged) together
//! with its purpose, the person (and session) it is bound to, when it began and when it expires,
//! and handed to the client, which returns it with the authenticator's answer. Nothing is kept
//! in a replica's memory. A ceremony is good for one use: a registration because a credential is
//! registered once, a sign-in because the credentials aggregate refuses a passkey's answer to a
//! ceremony that began no later than the one it last answered (`PasskeyUsed` records when that
//! began), and the log's expected sequence lets only one of two concurrent uses through.

use idstream_auth::passkey::{Assertion, PasskeyError, RelyingParty, StoredPasskey};
use idstream_auth::recovery;
use idstream_directory::UserStatus;
use idstream_domain::aggregate::CredentialsAggregate;
use idstream_domain::identity::credentials::{CredentialsCommand, CredentialsError};
use idstream_domain::identity::session::SignInMethod;
use idstream_domain::secret::Sealed;
use idstream_domain::{TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::{CredentialsView, PasskeyView};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use ulid::Ulid;
use zeroize::Zeroizing;

use super::passwords::RECOVERY_CODES;
use super::signin::{recovery_purpose, user_ctx};
use super::{Identity, Tokens, credentials_key};
use crate::AppError;
use crate::core::{Core, internal};
use crate::engine::Outcome;
use crate::policy::Caller;

/// How long a ceremony's second step may wait for the first.
pub const CEREMONY_TTL: Duration = Duration::minutes(5);

/// How recent a sign-in must be to remove a person's last second factor.
pub const RECENT_SIGN_IN: Duration = Duration::minutes(15);

/// The longest name of a passkey, in characters.
pub const MAX_PASSKEY_NAME_CHARS: usize = 64;

const CEREMONY_CONTEXT: &str = "passkey-ceremony";

/// The first step of a ceremony: `options` for the browser's `navigator.credentials`
/// (`create` for a registration, `get` for a sign-in) and the sealed `ceremony` to send back
/// with its answer within `expires_in` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PasskeyCeremony {
    pub options: serde_json::Value,
    pub ceremony: String,
    pub expires_in: i64,
}

/// A registered passkey, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeySummary {
    /// The credential id, base64url.
    pub credential: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<&PasskeyView> for PasskeySummary {
    fn from(view: &PasskeyView) -> PasskeySummary {
        PasskeySummary {
            credential: view.credential.clone(),
            name: view.name.clone(),
            created_at: view.created_at,
            last_used_at: view.last_used_at,
        }
    }
}

/// A registered passkey, with the recovery codes it brought when it was the person's first
/// second factor (shown once; empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredPasskey {
    pub credential: String,
    pub recovery_codes: Vec<String>,
    pub position: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Purpose {
    Register,
    SignIn,
    SecondFactor,
}

/// What a sealed ceremony holds.
#[derive(Serialize, Deserialize)]
struct Ceremony {
    purpose: Purpose,
    /// The person registering or signing in with a second factor (a sign-in without a user name
    /// learns who from the answer).
    user: Option<UserId>,
    /// The session registering.
    session: Option<Ulid>,
    /// The tenant a second-factor sign-in lands in, and whether it is to be remembered.
    tenant: Option<TenantId>,
    remember: bool,
    /// The first factor of a second-factor sign-in was an upstream provider.
    #[serde(default)]
    federated: bool,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires: OffsetDateTime,
    /// The WebAuthn library's state (JSON text).
    state: String,
}

fn passkey_error(error: PasskeyError) -> AppError {
    match error {
        PasskeyError::Config(_) => AppError::PasskeysUnavailable,
        PasskeyError::Malformed
        | PasskeyError::Refused(_)
        | PasskeyError::CounterRegressed { .. } => AppError::PasskeyRefused,
    }
}

fn stored(view: &PasskeyView) -> StoredPasskey<'_> {
    StoredPasskey {
        public_key: &view.public_key,
        counter: view.counter,
    }
}

/// A passkey's name as given: trimmed, 1 to [`MAX_PASSKEY_NAME_CHARS`] characters that show
/// something, without control or bidirectional formatting characters.
fn passkey_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0
        || chars > MAX_PASSKEY_NAME_CHARS
        || !idstream_domain::text::is_displayable(name)
        || !idstream_domain::text::shows_something(name)
    {
        return Err(AppError::InvalidPasskeyName);
    }
    Ok(name.to_owned())
}

impl Core {
    /// The relying party of the service's public URL.
    fn relying_party(&self) -> Result<&RelyingParty, AppError> {
        let parts = self.id();
        parts
            .passkeys
            .get_or_init(|| {
                RelyingParty::new(&parts.config.public_url, &parts.config.audience).map_err(|e| {
                    tracing::warn!(error = %e, "passkeys are unavailable");
                    e.to_string()
                })
            })
            .as_ref()
            .map_err(|_| AppError::PasskeysUnavailable)
    }

    fn seal_ceremony(&self, ceremony: &Ceremony) -> Result<String, AppError> {
        let json = Zeroizing::new(serde_json::to_vec(ceremony).map_err(internal)?);
        let sealed = self
            .id()
            .keys
            .vault()
            .try_seal(&json, CEREMONY_CONTEXT)
            .map_err(internal)?;
        Ok(sealed.as_str().to_owned())
    }

    /// The ceremony `text` seals, if it is genuine, for `purpose` and live at `now`.
    fn open_ceremony(
        &self,
        text: &str,
        purpose: Purpose,
        now: OffsetDateTime,
    ) -> Result<Ceremony, AppError> {
        Sealed::parse(text.trim())
            .ok()
            .and_then(|sealed| self.id().keys.vault().open(&sealed, CEREMONY_CONTEXT).ok())
            .and_then(|json| serde_json::from_slice::<Ceremony>(&json).ok())
            .filter(|c| c.purpose == purpose && now < c.expires)
            .ok_or(AppError::InvalidToken)
    }

    fn ceremony(
        &self,
        options: serde_json::Value,
        ceremony: Ceremony,
    ) -> Result<PasskeyCeremony, AppError> {
        Ok(PasskeyCeremony {
            options,
            ceremony: self.seal_ceremony(&ceremony)?,
            expires_in: (ceremony.expires - ceremony.started).whole_seconds(),
        })
    }

    /// Checks a passkey's answer to a sign-in ceremony and records its use; a counter that went
    /// backwards is recorded (`PasskeyCounterRegressed`) and refused like any wrong answer.
    async fn use_passkey(
        &self,
        user: UserId,
        creds: &CredentialsView,
        passkey: &PasskeyView,
        response: &serde_json::Value,
        ceremony: &Ceremony,
        discoverable: bool,
    ) -> Result<(), AppError> {
        let rp = self.relying_party()?;
        let verified = rp.finish_authentication(
            response,
            &ceremony.state,
            discoverable.then(|| stored(passkey)),
        );
        let now = self.now();
        let Assertion {
            credential,
            counter,
        } = match verified {
            Ok(assertion) => assertion,
            Err(PasskeyError::CounterRegressed { presented }) => {
                self.record_regression(user, &passkey.credential, presented, now)
                    .await?;
                return Err(AppError::InvalidCredentials);
            }
            Err(PasskeyError::Config(_)) => return Err(AppError::PasskeysUnavailable),
            Err(_) => return Err(AppError::InvalidCredentials),
        };
        if creds.passkey(&credential).is_none() {
            return Err(AppError::InvalidCredentials);
        }
        let used = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user),
                &credentials_key(user),
                "",
                CredentialsCommand::UsePasskey {
                    credential: credential.clone(),
                    counter,
                    ceremony_started_at: ceremony.started,
                    now,
                },
            )
            .await;
        match used {
            Ok(_) => Ok(()),
            // Another replica saw a higher counter a moment ago.
            Err(AppError::Credentials(CredentialsError::PasskeyCounterRegressed)) => {
                self.record_regression(user, &credential, counter, now)
                    .await?;
                Err(AppError::InvalidCredentials)
            }
            Err(AppError::Credentials(
                CredentialsError::PasskeyCeremonySpent | CredentialsError::UnknownPasskey,
            )) => Err(AppError::InvalidCredentials),
            Err(other) => Err(other),
        }
    }

    async fn record_regression(
        &self,
        user: UserId,
        credential: &str,
        presented: u32,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        tracing::warn!(%user, "a passkey presented a signature counter that went backwards");
        self.execute::<CredentialsAggregate>(
            &user_ctx(user),
            &credentials_key(user),
            "",
            CredentialsCommand::RecordPasskeyRegression {
                credential: credential.to_owned(),
                presented,
                now,
            },
        )
        .await
        .map(drop)
    }

    /// Refuses a sign-in of an account that may not sign in now (as a password sign-in does).
    fn may_sign_in(
        &self,
        user: &idstream_directory::UserView,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        match user.status_at(now) {
            UserStatus::Active => Ok(()),
            UserStatus::Invited => Err(AppError::EmailNotVerified),
            // An erased person is nobody: their passkeys sign nobody in.
            UserStatus::Erased => Err(AppError::InvalidCredentials),
            UserStatus::Suspended | UserStatus::Inactive => Err(AppError::AccountDisabled),
        }
    }
}

impl Identity {
    /// The caller's passkeys, oldest first.
    ///
    /// Who: the signed-in user, through a session (also while a second factor must be set up).
    pub async fn passkeys(&self, caller: &Caller) -> Result<Vec<PasskeySummary>, AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        Ok(self
            .credentials_view(caller.user)?
            .map(|creds| creds.passkeys.iter().map(PasskeySummary::from).collect())
            .unwrap_or_default())
    }

    /// Step one of registering a passkey for the caller: the options for
    /// `navigator.credentials.create` (a discoverable credential, user verification required;
    /// the caller's passkeys excluded) and the ceremony.
    ///
    /// Who: the signed-in user, through a session (also while a second factor must be set up).
    pub async fn start_passkey_registration(
        &self,
        caller: &Caller,
    ) -> Result<PasskeyCeremony, AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        let user = self.require_user(caller.user).await?;
        let existing: Vec<String> = self
            .credentials_view(user.id)?
            .map(|creds| creds.passkeys.into_iter().map(|p| p.credential).collect())
            .unwrap_or_default();
        let display = format!("{} {}", user.first_name, user.last_name);
        let display = match display.trim() {
            "" => user.email.as_str(),
            name => name,
        };
        let (options, state) = self
            .relying_party()?
            .start_registration(user.id.ulid(), &user.email, display, &existing)
            .map_err(passkey_error)?;
        let now = self.now();
        self.ceremony(
            options,
            Ceremony {
                purpose: Purpose::Register,
                user: Some(user.id),
                session: caller.session(),
                tenant: None,
                federated: false,
                remember: false,
                started: now,
                expires: now + CEREMONY_TTL,
                state,
            },
        )
    }

    /// Step two of registering a passkey: the browser's `response` to the options of step one,
    /// with the `ceremony`, and the `name` the person gives the passkey. A person's first second
    /// factor brings recovery codes, returned once.
    ///
    /// Who: the signed-in user, through the session that began the ceremony.
    pub async fn finish_passkey_registration(
        &self,
        caller: &Caller,
        ceremony: &str,
        name: &str,
        response: &serde_json::Value,
    ) -> Result<RegisteredPasskey, AppError> {
        let caller = self.own_session_while_enrolling(caller)?;
        let user = caller.user;
        let name = passkey_name(name)?;
        let ceremony = self.open_ceremony(ceremony, Purpose::Register, self.now())?;
        if ceremony.user != Some(user) || ceremony.session != caller.session() {
            return Err(AppError::InvalidToken);
        }
        let passkey = self
            .relying_party()?
            .finish_registration(response, &ceremony.state)
            .map_err(passkey_error)?;
        let _turn = self.id().locks.lock(user).await;
        self.catch_up().await?;
        let first = !self
            .credentials_view(user)?
            .is_some_and(|creds| creds.has_second_factor());
        let codes = if first {
            recovery::generate(RECOVERY_CODES)
        } else {
            Vec::new()
        };
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
                CredentialsCommand::RegisterPasskey {
                    credential: passkey.credential.clone(),
                    name,
                    public_key: passkey.public_key,
                    counter: passkey.counter,
                    now: self.now(),
                    recovery_codes: indexes,
                },
            )
            .await?;
        // A session restricted until its user sets a second factor up is let through by the
        // read model: make sure it is, on this replica, before answering.
        self.wait_for(outcome.position).await?;
        Ok(RegisteredPasskey {
            credential: passkey.credential,
            recovery_codes: codes.iter().map(|c| c.reveal().to_owned()).collect(),
            position: outcome.position,
        })
    }

    /// Removes one of the caller's passkeys. Removing the last second factor needs a sign-in
    /// of the last [`RECENT_SIGN_IN`] and no tenant of the person requiring a second factor.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn remove_passkey(
        &self,
        caller: &Caller,
        credential: &str,
    ) -> Result<Outcome, AppError> {
        let caller = self.own_session(caller)?;
        let user = caller.user;
        let _turn = self.id().locks.lock(user).await;
        self.catch_up().await?;
        let creds = self
            .credentials_view(user)?
            .ok_or(AppError::Credentials(CredentialsError::UnknownPasskey))?;
        if creds.passkey(credential).is_none() {
            return Err(AppError::Credentials(CredentialsError::UnknownPasskey));
        }
        let last = creds.totp.is_none() && creds.passkeys.len() == 1;
        if last {
            for tenant in self.user_tenants(&user)? {
                if self
                    .tenant_view_now(&tenant)?
                    .is_some_and(|t| t.settings.mfa_required)
                {
                    return Err(AppError::SecondFactorRequiredByTenant);
                }
            }
            let started = caller
                .session()
                .map(|session| self.identity().session(&session))
                .transpose()
                .map_err(super::identity_storage)?
                .flatten()
                .map(|view| view.started_at);
            if started.is_none_or(|at| self.now() - at > RECENT_SIGN_IN) {
                return Err(AppError::RecentSignInRequired);
            }
        }
        let outcome = self
            .execute::<CredentialsAggregate>(
                &user_ctx(user),
                &credentials_key(user),
                "",
                CredentialsCommand::RemovePasskey {
                    credential: credential.to_owned(),
                },
            )
            .await?;
        // The pages list the passkeys right after: let this replica's read model show it.
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Step one of a sign-in with a passkey alone (no user name): the options for
    /// `navigator.credentials.get` and the ceremony.
    ///
    /// Who: anyone.
    pub async fn start_passkey_sign_in(
        &self,
        caller: &Caller,
    ) -> Result<PasskeyCeremony, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("sign-in", caller.client().ip())?;
        let (options, state) = self
            .relying_party()?
            .start_discoverable()
            .map_err(passkey_error)?;
        let now = self.now();
        self.ceremony(
            options,
            Ceremony {
                purpose: Purpose::SignIn,
                user: None,
                session: None,
                tenant: None,
                federated: false,
                remember: false,
                started: now,
                expires: now + CEREMONY_TTL,
                state,
            },
        )
    }

    /// Step two of a sign-in with a passkey alone: the browser's `response` with the ceremony.
    /// A wrong, unknown, replayed or cloned passkey gets [`AppError::InvalidCredentials`]; a
    /// counter that went backwards is recorded.
    ///
    /// Who: anyone (holding the ceremony and the passkey).
    pub async fn finish_passkey_sign_in(
        &self,
        caller: &Caller,
        ceremony: &str,
        response: &serde_json::Value,
        tenant: Option<TenantId>,
        remember: bool,
    ) -> Result<Tokens, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        let now = self.now();
        let ceremony = self.open_ceremony(ceremony, Purpose::SignIn, now)?;
        let (user, credential) = self
            .relying_party()?
            .identify(response)
            .map_err(|_| AppError::InvalidCredentials)?;
        let user = UserId::new(user);
        let Some(found) = self
            .directory()
            .user(&user)
            .map_err(internal)?
            .filter(|found| found.status != UserStatus::Erased)
        else {
            return Err(AppError::InvalidCredentials);
        };
        let _turn = self.id().locks.lock(found.id).await;
        self.catch_up().await?;
        let user = self.require_user(found.id).await?;
        let creds = self
            .credentials_view(user.id)?
            .ok_or(AppError::InvalidCredentials)?;
        if creds.is_locked_at(now) {
            return Err(AppError::InvalidCredentials);
        }
        let passkey = creds
            .passkey(&credential)
            .ok_or(AppError::InvalidCredentials)?;
        self.use_passkey(user.id, &creds, passkey, response, &ceremony, true)
            .await?;
        self.may_sign_in(&user, now)?;
        let tenant = self.sign_in_tenant(user.id, tenant)?;
        self.record_success(user.id, Some(&creds)).await?;
        self.start_session(user.id, tenant, SignInMethod::Passkey, client, remember)
            .await
    }

    /// Step one of a passkey as the second factor: with the `challenge` of the sign-in's first
    /// step, the options for `navigator.credentials.get` (the person's passkeys allowed) and the
    /// ceremony.
    ///
    /// Who: anyone (holding the challenge).
    pub async fn start_passkey_second_factor(
        &self,
        caller: &Caller,
        challenge: &str,
    ) -> Result<PasskeyCeremony, AppError> {
        self.open_to_anyone(caller);
        self.rate_limit("sign-in", caller.client().ip())?;
        let now = self.now();
        let challenge = self.open_challenge(challenge, now)?;
        let creds = self
            .credentials_view(challenge.user)?
            .filter(|creds| !creds.passkeys.is_empty())
            .ok_or(AppError::Credentials(CredentialsError::UnknownPasskey))?;
        let passkeys: Vec<_> = creds.passkeys.iter().map(stored).collect();
        let (options, state) = self
            .relying_party()?
            .start_authentication(&passkeys)
            .map_err(passkey_error)?;
        let challenge_end =
            OffsetDateTime::from_unix_timestamp(challenge.expires).map_err(internal)?;
        self.ceremony(
            options,
            Ceremony {
                purpose: Purpose::SecondFactor,
                user: Some(challenge.user),
                session: None,
                tenant: Some(challenge.tenant),
                remember: challenge.remember,
                federated: challenge.federated,
                started: now,
                expires: (now + CEREMONY_TTL).min(challenge_end),
                state,
            },
        )
    }

    /// Step two of a passkey as the second factor. `remember`, when given, replaces the choice
    /// made at the first step.
    ///
    /// Who: anyone (holding the ceremony and the passkey).
    pub async fn finish_passkey_second_factor(
        &self,
        caller: &Caller,
        ceremony: &str,
        response: &serde_json::Value,
        remember: Option<bool>,
    ) -> Result<Tokens, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("sign-in", client.ip())?;
        let now = self.now();
        let ceremony = self.open_ceremony(ceremony, Purpose::SecondFactor, now)?;
        let (Some(user), Some(tenant)) = (ceremony.user, ceremony.tenant.clone()) else {
            return Err(AppError::InvalidToken);
        };
        let _turn = self.id().locks.lock(user).await;
        self.catch_up().await?;
        let user = self.require_user(user).await?;
        let creds = self
            .credentials_view(user.id)?
            .ok_or(AppError::InvalidCredentials)?;
        if creds.is_locked_at(now) {
            return Err(AppError::InvalidCredentials);
        }
        if user.status_at(now) != UserStatus::Active {
            return Err(AppError::AccountDisabled);
        }
        let credential =
            RelyingParty::credential_of(response).map_err(|_| AppError::InvalidCredentials)?;
        let passkey = creds
            .passkey(&credential)
            .ok_or(AppError::InvalidCredentials)?;
        if let Err(error) = self
            .use_passkey(user.id, &creds, passkey, response, &ceremony, false)
            .await
        {
            if matches!(error, AppError::InvalidCredentials) {
                self.record_failure(&user, client).await?;
            }
            return Err(error);
        }
        self.record_success(user.id, Some(&creds)).await?;
        self.start_session(
            user.id,
            tenant,
            if ceremony.federated {
                SignInMethod::FederatedAndPasskey
            } else {
                SignInMethod::PasswordAndPasskey
            },
            client,
            remember.unwrap_or(ceremony.remember),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passkey_name_is_trimmed_and_bounded() {
        assert_eq!(passkey_name("  Laptop ").unwrap(), "Laptop");
        assert!(matches!(
            passkey_name("   "),
            Err(AppError::InvalidPasskeyName)
        ));
        assert!(matches!(
            passkey_name(&"x".repeat(MAX_PASSKEY_NAME_CHARS + 1)),
            Err(AppError::InvalidPasskeyName)
        ));
        for hidden in ["a\u{7}b", "\u{202e}Laptop", "\u{200b}"] {
            assert!(matches!(
                passkey_name(hidden),
                Err(AppError::InvalidPasskeyName)
            ));
        }
        assert_eq!(
            passkey_name(&"é".repeat(MAX_PASSKEY_NAME_CHARS)).unwrap(),
            "é".repeat(MAX_PASSKEY_NAME_CHARS)
        );
    }
}

/// The rules around a passkey's ceremonies, against a real embedded log and read models. The
/// ceremonies themselves are the WebAuthn library's, run end to end by the API and browser tests;
/// here a passkey is registered through its aggregate.
#[cfg(test)]
mod flow_tests {
    use std::sync::Arc;

    use idstream_domain::UserId;

    use super::*;
    use crate::identity::{Bootstrap, IdentityServices, SignIn};
    use crate::tests::ShiftedClock;
    use crate::{App, Clock};

    const PASSWORD: &str = "correct horse battery staple";
    const RECOVERY: &str = "abcde-fghij";

    async fn app(dir: &std::path::Path, clock: Arc<dyn Clock>) -> App {
        let mut services = IdentityServices::local(dir).await.unwrap();
        services.config.public_url = "http://localhost".into();
        services.config.attempts_per_source_per_minute = 100_000;
        crate::tests::app_in(dir, clock, services).await
    }

    async fn bootstrap(app: &App) -> UserId {
        app.identity
            .bootstrap(
                &Caller::system("test"),
                Bootstrap {
                    tenant: "acme".parse().unwrap(),
                    tenant_name: "Acme".into(),
                    email: "admin@example.com".into(),
                    first_name: "Ada".into(),
                    last_name: "Admin".into(),
                    password: PASSWORD.into(),
                },
            )
            .await
            .unwrap()
            .0
    }

    async fn caller(app: &App, tokens: &Tokens) -> Caller {
        Caller::user(
            app.identity
                .authenticate(&tokens.access_token)
                .await
                .unwrap(),
        )
    }

    /// A passkey `credential` for `user`; the first brings the recovery code [`RECOVERY`].
    async fn passkey(app: &App, user: UserId, credential: &str) {
        let vault = app.identity.id().keys.vault();
        let code = vault.blind_index(&recovery_purpose(user), &recovery::normalise(RECOVERY));
        let outcome = app
            .identity
            .execute::<CredentialsAggregate>(
                &user_ctx(user),
                &credentials_key(user),
                "",
                CredentialsCommand::RegisterPasskey {
                    credential: credential.into(),
                    name: format!("Key {credential}"),
                    public_key: "{}".into(),
                    counter: 0,
                    now: app.identity.now(),
                    recovery_codes: vec![code],
                },
            )
            .await
            .unwrap();
        app.identity.wait_for(outcome.position).await.unwrap();
    }

    #[tokio::test]
    async fn the_last_second_factor_goes_only_with_a_recent_sign_in_and_recovery_codes_still_work()
    {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let app = app(dir.path(), clock.clone()).await;
        let user = bootstrap(&app).await;
        let first = match app
            .identity
            .sign_in(
                &Caller::anonymous(),
                "admin@example.com",
                PASSWORD.into(),
                None,
                false,
            )
            .await
            .unwrap()
        {
            SignIn::Complete(tokens) => tokens,
            other => panic!("no second factor yet: {other:?}"),
        };
        let stale = caller(&app, &first).await;
        passkey(&app, user, "A").await;
        passkey(&app, user, "B").await;
        let names: Vec<_> = app
            .identity
            .passkeys(&stale)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["Key A", "Key B"]);

        clock.advance(Duration::minutes(16));
        // One of two goes whatever the session's age…
        app.identity.remove_passkey(&stale, "A").await.unwrap();
        // …the last one needs a recent sign-in.
        assert!(matches!(
            app.identity.remove_passkey(&stale, "B").await,
            Err(AppError::RecentSignInRequired)
        ));
        assert!(matches!(
            app.identity.remove_passkey(&stale, "nope").await,
            Err(AppError::Credentials(CredentialsError::UnknownPasskey))
        ));

        // The password now needs a second factor; the recovery code of the first passkey is one.
        let challenge = match app
            .identity
            .sign_in(
                &Caller::anonymous(),
                "admin@example.com",
                PASSWORD.into(),
                None,
                false,
            )
            .await
            .unwrap()
        {
            SignIn::SecondFactorRequired { challenge, .. } => challenge,
            other => panic!("a second factor is due: {other:?}"),
        };
        let fresh = app
            .identity
            .sign_in_second_factor(&Caller::anonymous(), &challenge, None, Some(RECOVERY), None)
            .await
            .unwrap();
        let fresh = caller(&app, &fresh).await;
        let removed = app.identity.remove_passkey(&fresh, "B").await.unwrap();
        app.identity.wait_for(removed.position).await.unwrap();
        assert!(app.identity.passkeys(&fresh).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_ceremony_is_good_for_its_purpose_its_session_and_five_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ShiftedClock::default());
        let app = app(dir.path(), clock.clone()).await;
        bootstrap(&app).await;
        let tokens = match app
            .identity
            .sign_in(
                &Caller::anonymous(),
                "admin@example.com",
                PASSWORD.into(),
                None,
                false,
            )
            .await
            .unwrap()
        {
            SignIn::Complete(tokens) => tokens,
            other => panic!("{other:?}"),
        };
        let me = caller(&app, &tokens).await;
        let registration = app.identity.start_passkey_registration(&me).await.unwrap();
        assert_eq!(registration.expires_in, CEREMONY_TTL.whole_seconds());
        let sign_in = app
            .identity
            .start_passkey_sign_in(&Caller::anonymous())
            .await
            .unwrap();
        let now = app.identity.now();
        // Each opens for its own purpose only.
        assert!(
            app.identity
                .open_ceremony(&registration.ceremony, Purpose::Register, now)
                .is_ok()
        );
        assert!(matches!(
            app.identity
                .open_ceremony(&registration.ceremony, Purpose::SignIn, now),
            Err(AppError::InvalidToken)
        ));
        assert!(matches!(
            app.identity
                .open_ceremony(&sign_in.ceremony, Purpose::SecondFactor, now),
            Err(AppError::InvalidToken)
        ));
        // A forged or altered one does not open.
        let mut altered = sign_in.ceremony.clone();
        altered.pop();
        altered.push(if sign_in.ceremony.ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert!(
            app.identity
                .open_ceremony(&altered, Purpose::SignIn, now)
                .is_err()
        );
        // It expires.
        clock.advance(CEREMONY_TTL);
        let later = app.identity.now();
        assert!(matches!(
            app.identity
                .open_ceremony(&sign_in.ceremony, Purpose::SignIn, later),
            Err(AppError::InvalidToken)
        ));
        let json = serde_json::json!({});
        assert!(matches!(
            app.identity
                .finish_passkey_registration(&me, &registration.ceremony, "Laptop", &json)
                .await,
            Err(AppError::InvalidToken)
        ));
    }
}
