//! The session aggregate: one signed-in device (global; its id is a ULID, its current tenant is
//! data so that switching tenant keeps the session).
//!
//! A session holds one live refresh token, identified by its [`BlindIndex`]. Every refresh
//! replaces it (rotation). Presenting a token that this session rotated away is *reuse*: someone
//! holds a copy, so the whole session is revoked (OAuth 2.0 Security BCP, refresh token rotation).
//! Because a refresh is an append with the session's expected sequence, N concurrent refreshes
//! with one token produce at most one successor: the first appends, every other one re-decides
//! against the new state, sees a rotated token and revokes the session.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use std::collections::BTreeSet;

use crate::events::{
    AuthorizationCodeIssued, SessionRefreshed, SessionRevoked, SessionStarted,
    SessionTenantSwitched,
};
use crate::ids::{TenantId, UserId};
use crate::secret::BlindIndex;
use crate::tenant::TenantSettings;

/// How the user proved who they are when the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    Password,
    /// Password and a second factor (TOTP or a recovery code).
    PasswordAndTotp,
    MagicLink,
    EmailCode,
    /// The invitation's acceptance signed the user in.
    Invitation,
    /// A passkey alone (a discoverable credential, the user verified by the authenticator).
    Passkey,
    /// A first factor (password, magic link or emailed code) and a passkey as the second.
    PasswordAndPasskey,
    /// Another OpenID Connect provider of the tenant signed the user in (an upstream identity
    /// provider: see `upstream`).
    Federated,
    /// An upstream provider, then TOTP or a recovery code as the second factor.
    FederatedAndTotp,
    /// An upstream provider, then a passkey as the second factor.
    FederatedAndPasskey,
}

impl SignInMethod {
    /// The authentication method references of RFC 8176 this method stands for, as sessions
    /// and access tokens show them (`amr`). A passkey is a proof of possession of a key (`pop`):
    /// whether the key is held in hardware (`hwk`) or software (`swk`) is not known without
    /// attestation, which idstream does not ask for. A passkey always verifies the user, so it
    /// counts as two factors (`mfa`) on its own.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            SignInMethod::Password => &["pwd"],
            SignInMethod::PasswordAndTotp => &["pwd", "otp", "mfa"],
            // A single-use secret sent by mail.
            SignInMethod::MagicLink | SignInMethod::EmailCode | SignInMethod::Invitation => {
                &["otp"]
            }
            SignInMethod::Passkey => &["pop", "mfa"],
            SignInMethod::PasswordAndPasskey => &["pwd", "pop", "mfa"],
            // A federated assertion (as Microsoft Entra ID writes it): how the upstream provider
            // checked the person is its own affair.
            SignInMethod::Federated => &["fed"],
            SignInMethod::FederatedAndTotp => &["fed", "otp", "mfa"],
            SignInMethod::FederatedAndPasskey => &["fed", "pop", "mfa"],
        }
    }

    /// Whether the method resists phishing: a passkey is bound to the service's origin.
    pub fn is_phishing_resistant(self) -> bool {
        matches!(
            self,
            SignInMethod::Passkey
                | SignInMethod::PasswordAndPasskey
                | SignInMethod::FederatedAndPasskey
        )
    }

    /// Whether the method included a second factor.
    pub fn is_multi_factor(self) -> bool {
        matches!(
            self,
            SignInMethod::PasswordAndTotp
                | SignInMethod::Passkey
                | SignInMethod::PasswordAndPasskey
                | SignInMethod::FederatedAndTotp
                | SignInMethod::FederatedAndPasskey
        )
    }
}

// The sign-in methods of `SessionStarted` version 4, before upstream providers (the doc comment
// is the published schema's description, which does not change).
/// How the user proved who they are when the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "SignInMethod")]
pub enum SignInMethodV2 {
    Password,
    /// Password and a second factor (TOTP or a recovery code).
    PasswordAndTotp,
    MagicLink,
    EmailCode,
    /// The invitation's acceptance signed the user in.
    Invitation,
    /// A passkey alone (a discoverable credential, the user verified by the authenticator).
    Passkey,
    /// A first factor (password, magic link or emailed code) and a passkey as the second.
    PasswordAndPasskey,
}

impl From<SignInMethodV2> for SignInMethod {
    fn from(v2: SignInMethodV2) -> SignInMethod {
        match v2 {
            SignInMethodV2::Password => SignInMethod::Password,
            SignInMethodV2::PasswordAndTotp => SignInMethod::PasswordAndTotp,
            SignInMethodV2::MagicLink => SignInMethod::MagicLink,
            SignInMethodV2::EmailCode => SignInMethod::EmailCode,
            SignInMethodV2::Invitation => SignInMethod::Invitation,
            SignInMethodV2::Passkey => SignInMethod::Passkey,
            SignInMethodV2::PasswordAndPasskey => SignInMethod::PasswordAndPasskey,
        }
    }
}

// The sign-in methods of `SessionStarted` versions 1 to 3, before passkeys (the doc comment is
// the published schemas' description, which does not change).
/// How the user proved who they are when the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "SignInMethod")]
pub enum SignInMethodV1 {
    Password,
    /// Password and a second factor (TOTP or a recovery code).
    PasswordAndTotp,
    MagicLink,
    EmailCode,
    /// The invitation's acceptance signed the user in.
    Invitation,
}

impl From<SignInMethodV1> for SignInMethod {
    fn from(v1: SignInMethodV1) -> SignInMethod {
        match v1 {
            SignInMethodV1::Password => SignInMethod::Password,
            SignInMethodV1::PasswordAndTotp => SignInMethod::PasswordAndTotp,
            SignInMethodV1::MagicLink => SignInMethod::MagicLink,
            SignInMethodV1::EmailCode => SignInMethod::EmailCode,
            SignInMethodV1::Invitation => SignInMethod::Invitation,
        }
    }
}

/// Why a session ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    SignedOut,
    /// The user revoked it from another session.
    RevokedByUser,
    RevokedByAdmin,
    /// A rotated refresh token was presented again.
    RefreshTokenReused,
    PasswordReset,
    PasswordChanged,
    /// An application's authorization code was presented a second time: what its first use
    /// issued is revoked (RFC 9700 §4.5).
    AuthorizationCodeReused,
    /// The application the session was issued to revoked it (RFC 7009).
    RevokedByClient,
}

// The reasons of `SessionRevoked` version 1, before applications had sessions (the doc comment
// is the published schemas' description, which does not change).
/// Why a session ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "RevocationReason")]
pub enum RevocationReasonV1 {
    SignedOut,
    /// The user revoked it from another session.
    RevokedByUser,
    RevokedByAdmin,
    /// A rotated refresh token was presented again.
    RefreshTokenReused,
    PasswordReset,
    PasswordChanged,
}

impl From<RevocationReasonV1> for RevocationReason {
    fn from(v1: RevocationReasonV1) -> RevocationReason {
        match v1 {
            RevocationReasonV1::SignedOut => RevocationReason::SignedOut,
            RevocationReasonV1::RevokedByUser => RevocationReason::RevokedByUser,
            RevocationReasonV1::RevokedByAdmin => RevocationReason::RevokedByAdmin,
            RevocationReasonV1::RefreshTokenReused => RevocationReason::RefreshTokenReused,
            RevocationReasonV1::PasswordReset => RevocationReason::PasswordReset,
            RevocationReasonV1::PasswordChanged => RevocationReason::PasswordChanged,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionStatus {
    #[default]
    Absent,
    /// An application's authorization code was issued and not yet exchanged.
    CodeIssued,
    Active,
    Revoked,
}

/// How long an authorization code may be exchanged by default (RFC 6749 §4.1.2 recommends at
/// most 10 minutes; the service's `authorization_code_ttl_seconds` sets it).
pub const CODE_LIFETIME: Duration = Duration::minutes(1);

/// What an application's session started from: the code issued to it, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub code: BlindIndex,
    pub client: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub expires_at: OffsetDateTime,
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethod,
    pub scopes: BTreeSet<String>,
    pub nonce: Option<String>,
    /// When the person signed in.
    pub auth_time: OffsetDateTime,
}

/// Whether `verifier` is a PKCE code verifier (RFC 7636 §4.1: 43 to 128 unreserved characters)
/// whose S256 challenge is `challenge`. Compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use sha2::Digest;
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    let computed = base64url(&digest);
    computed.len() == challenge.len()
        && computed
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Unpadded base64url (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub status: SessionStatus,
    pub user: Option<UserId>,
    pub tenant: Option<TenantId>,
    pub refresh: Option<BlindIndex>,
    /// Number of rotations so far.
    pub generation: u32,
    pub started_at: Option<OffsetDateTime>,
    pub last_active_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout: Duration,
    /// Started with `remember` in a tenant that allows it: `expires_at` is the remembered end.
    pub remembered: bool,
    /// The application (OpenID Connect client) the session was issued to; `None` for a
    /// session of idstream's own API and pages.
    pub client: Option<String>,
    /// The authorization code the session started from, if it did.
    pub code: Option<IssuedCode>,
}

/// How long a tenant's sessions may live: its settings, as durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// The absolute lifetime of an ordinary session (`session_max_hours`).
    pub max: Duration,
    /// The absolute lifetime of a remembered one (`remember_days`); zero: remembering is off.
    pub remembered: Duration,
    /// A session ends after this long without a refresh, remembered or not
    /// (`session_idle_minutes`).
    pub idle_timeout: Duration,
}

impl SessionLifetimes {
    pub fn of(settings: &TenantSettings) -> SessionLifetimes {
        SessionLifetimes {
            max: Duration::hours(i64::from(settings.session_max_hours)),
            remembered: Duration::days(i64::from(settings.remember_days)),
            idle_timeout: Duration::minutes(i64::from(settings.session_idle_minutes)),
        }
    }

    /// The absolute lifetime of a session started with (or without) `remember`, and whether it
    /// is remembered. Remembering is ignored when the tenant has it off, and never shortens a
    /// session: a tenant whose ordinary lifetime is the longer gives that.
    pub fn decide(&self, remember: bool) -> (Duration, bool) {
        if remember && self.remembered.is_positive() {
            (self.max.max(self.remembered), true)
        } else {
            (self.max, false)
        }
    }
}

impl Session {
    /// Whether the session may still be used at `now` (active, within its absolute lifetime and
    /// its idle timeout).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        self.status == SessionStatus::Active
            && self.expires_at.is_some_and(|end| now < end)
            && self
                .last_active_at
                .is_some_and(|at| now < at + self.idle_timeout)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Start {
        user: UserId,
        tenant: TenantId,
        method: SignInMethod,
        refresh: BlindIndex,
        now: OffsetDateTime,
        /// The tenant's lifetimes.
        lifetimes: SessionLifetimes,
        /// The user asked to be remembered ("remember me").
        remember: bool,
        /// Where the sign-in came from (personal data, recorded as given).
        ip: Option<String>,
        user_agent: Option<String>,
    },
    /// Exchange `presented` for `next`.
    Refresh {
        presented: BlindIndex,
        next: BlindIndex,
        now: OffsetDateTime,
        /// The application presenting the token (`None`: idstream's own API). A session issued to
        /// one is refreshed by it only.
        client: Option<String>,
    },
    /// Issues an application's authorization code: the first event of the session the code
    /// will start.
    IssueCode {
        code: BlindIndex,
        client: String,
        redirect_uri: String,
        scopes: BTreeSet<String>,
        nonce: Option<String>,
        code_challenge: Option<String>,
        user: UserId,
        tenant: TenantId,
        method: SignInMethod,
        /// When the person signed in (the browser session's start).
        auth_time: OffsetDateTime,
        /// The browser session the code was issued through (signing out of it ends this one).
        browser_session: String,
        now: OffsetDateTime,
        /// How long the code may be exchanged.
        lifetime: Duration,
    },
    /// Exchanges the code for the session's first refresh token. A code presented again
    /// revokes what its first exchange issued.
    RedeemCode {
        presented: BlindIndex,
        client: String,
        redirect_uri: String,
        code_verifier: Option<String>,
        refresh: BlindIndex,
        lifetimes: SessionLifetimes,
        now: OffsetDateTime,
    },
    SwitchTenant {
        tenant: TenantId,
        /// The token presented with the request is rotated too, so the old tenant's refresh
        /// token stops working.
        presented: BlindIndex,
        next: BlindIndex,
        now: OffsetDateTime,
    },
    Revoke {
        reason: RevocationReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    CodeIssued(AuthorizationCodeIssued),
    Started(SessionStarted),
    Refreshed(SessionRefreshed),
    TenantSwitched(SessionTenantSwitched),
    Revoked(SessionRevoked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("this session already exists")]
    AlreadyExists,
    /// Unknown, expired, idle too long or revoked: one answer for all.
    #[error("the session has ended")]
    Ended,
    #[error(
        "a session's lifetime and idle timeout must be positive, its remembered lifetime not negative"
    )]
    InvalidLifetime,
    /// The code is unknown, expired, used, or presented by another client, with another
    /// redirect URI or without the right PKCE verifier: one answer for all (`invalid_grant`).
    #[error("the authorization code is invalid, expired or used")]
    InvalidGrant,
}

pub fn decide(state: &Session, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
    match command {
        SessionCommand::Start {
            user,
            tenant,
            method,
            refresh,
            now,
            lifetimes,
            remember,
            ip,
            user_agent,
        } => {
            if state.status != SessionStatus::Absent {
                return Err(SessionError::AlreadyExists);
            }
            if !lifetimes.max.is_positive()
                || !lifetimes.idle_timeout.is_positive()
                || lifetimes.remembered.is_negative()
            {
                return Err(SessionError::InvalidLifetime);
            }
            let (lifetime, remembered) = lifetimes.decide(remember);
            Ok(vec![SessionEvent::Started(SessionStarted {
                user,
                tenant,
                method,
                refresh,
                at: now,
                expires_at: now + lifetime,
                idle_timeout_seconds: lifetimes.idle_timeout.whole_seconds(),
                ip,
                user_agent,
                remembered,
            })])
        }
        SessionCommand::Refresh {
            presented,
            next,
            now,
            client,
        } => {
            if state.client != client {
                return Err(SessionError::Ended);
            }
            rotate(state, presented, now, |generation| {
                SessionEvent::Refreshed(SessionRefreshed {
                    refresh: next,
                    generation,
                    at: now,
                })
            })
        }
        SessionCommand::IssueCode {
            code,
            client,
            redirect_uri,
            scopes,
            nonce,
            code_challenge,
            user,
            tenant,
            method,
            auth_time,
            browser_session,
            now,
            lifetime,
        } => {
            if state.status != SessionStatus::Absent {
                return Err(SessionError::AlreadyExists);
            }
            Ok(vec![SessionEvent::CodeIssued(AuthorizationCodeIssued {
                code,
                client,
                redirect_uri,
                scopes,
                nonce,
                code_challenge,
                user,
                tenant,
                method,
                auth_time,
                browser_session,
                at: now,
                expires_at: now + lifetime,
            })])
        }
        SessionCommand::RedeemCode {
            presented,
            client,
            redirect_uri,
            code_verifier,
            refresh,
            lifetimes,
            now,
        } => {
            let Some(issued) = &state.code else {
                return Err(SessionError::InvalidGrant);
            };
            if issued.code != presented {
                return Err(SessionError::InvalidGrant);
            }
            match state.status {
                SessionStatus::CodeIssued => {}
                // Used before: whoever presents it again may have stolen it, so what the first
                // exchange issued stops working (the caller reports the failure).
                SessionStatus::Active => {
                    return Ok(vec![SessionEvent::Revoked(SessionRevoked {
                        reason: RevocationReason::AuthorizationCodeReused,
                    })]);
                }
                SessionStatus::Absent | SessionStatus::Revoked => {
                    return Err(SessionError::InvalidGrant);
                }
            }
            let pkce = match (&issued.code_challenge, &code_verifier) {
                (Some(challenge), Some(verifier)) => pkce_matches(verifier, challenge),
                (None, None) => true,
                // A verifier without a challenge is refused too (RFC 9700 §2.1.1).
                _ => false,
            };
            if issued.client != client
                || issued.redirect_uri != redirect_uri
                || now >= issued.expires_at
                || !pkce
            {
                return Err(SessionError::InvalidGrant);
            }
            if !lifetimes.max.is_positive() || !lifetimes.idle_timeout.is_positive() {
                return Err(SessionError::InvalidLifetime);
            }
            Ok(vec![SessionEvent::Started(SessionStarted {
                user: issued.user,
                tenant: issued.tenant.clone(),
                method: issued.method,
                refresh,
                at: now,
                expires_at: now + lifetimes.max,
                idle_timeout_seconds: lifetimes.idle_timeout.whole_seconds(),
                ip: None,
                user_agent: None,
                remembered: false,
            })])
        }
        SessionCommand::SwitchTenant {
            tenant,
            presented,
            next,
            now,
        } => rotate(state, presented, now, |generation| {
            SessionEvent::TenantSwitched(SessionTenantSwitched {
                tenant,
                refresh: next,
                generation,
                at: now,
            })
        }),
        SessionCommand::Revoke { reason } => match state.status {
            SessionStatus::Absent => Err(SessionError::Ended),
            SessionStatus::Revoked => Ok(vec![]),
            SessionStatus::Active | SessionStatus::CodeIssued => {
                Ok(vec![SessionEvent::Revoked(SessionRevoked { reason })])
            }
        },
    }
}

/// The common rule of refresh and tenant switch: the presented token must be the live one; a
/// rotated one revokes the session (returned as the only event: the caller reports failure).
fn rotate(
    state: &Session,
    presented: BlindIndex,
    now: OffsetDateTime,
    successor: impl FnOnce(u32) -> SessionEvent,
) -> Result<Vec<SessionEvent>, SessionError> {
    if !state.is_live_at(now) {
        return Err(SessionError::Ended);
    }
    if state.refresh.as_ref() != Some(&presented) {
        return Ok(vec![SessionEvent::Revoked(SessionRevoked {
            reason: RevocationReason::RefreshTokenReused,
        })]);
    }
    Ok(vec![successor(state.generation + 1)])
}

pub fn evolve(mut state: Session, event: &SessionEvent) -> Session {
    match event {
        SessionEvent::CodeIssued(e) => {
            state.status = SessionStatus::CodeIssued;
            state.client = Some(e.client.clone());
            state.code = Some(IssuedCode {
                code: e.code.clone(),
                client: e.client.clone(),
                redirect_uri: e.redirect_uri.clone(),
                code_challenge: e.code_challenge.clone(),
                expires_at: e.expires_at,
                user: e.user,
                tenant: e.tenant.clone(),
                method: e.method,
                scopes: e.scopes.clone(),
                nonce: e.nonce.clone(),
                auth_time: e.auth_time,
            });
        }
        SessionEvent::Started(e) => {
            state.status = SessionStatus::Active;
            state.user = Some(e.user);
            state.tenant = Some(e.tenant.clone());
            state.refresh = Some(e.refresh.clone());
            state.started_at = Some(e.at);
            state.last_active_at = Some(e.at);
            state.expires_at = Some(e.expires_at);
            state.idle_timeout = Duration::seconds(e.idle_timeout_seconds);
            state.remembered = e.remembered;
        }
        SessionEvent::Refreshed(e) => {
            state.refresh = Some(e.refresh.clone());
            state.generation = e.generation;
            state.last_active_at = Some(e.at);
        }
        SessionEvent::TenantSwitched(e) => {
            state.tenant = Some(e.tenant.clone());
            state.refresh = Some(e.refresh.clone());
            state.generation = e.generation;
            state.last_active_at = Some(e.at);
        }
        SessionEvent::Revoked(_) => state.status = SessionStatus::Revoked,
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn index(byte: u8) -> BlindIndex {
        BlindIndex::from_bytes(&[byte; 32])
    }

    fn user() -> UserId {
        "01J00000000000000000000001".parse().unwrap()
    }

    fn started() -> SessionEvent {
        SessionEvent::Started(SessionStarted {
            user: user(),
            tenant: "acme".parse().unwrap(),
            method: SignInMethod::Password,
            refresh: index(1),
            at: NOW,
            expires_at: NOW + Duration::days(30),
            idle_timeout_seconds: 3600,
            ip: Some("192.0.2.7".into()),
            user_agent: Some("Firefox".into()),
            remembered: false,
        })
    }

    // ----- an application's code -----

    /// A verifier and its S256 challenge (computed apart, with Python's hashlib and base64).
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92ZoIBiXbZjvR2I4W1GjHjUgMHfo";
    const CHALLENGE: &str = "yEztTY4HGHkFsMWaA1MTNiDXAclHAMSVylqUqkzq1t4";

    fn code_issued(challenge: Option<&str>) -> SessionEvent {
        let issued = decide(
            &Session::default(),
            SessionCommand::IssueCode {
                code: index(9),
                client: "shop".into(),
                redirect_uri: "https://shop.example/cb".into(),
                scopes: ["openid".to_owned()].into(),
                nonce: Some("n-1".into()),
                code_challenge: challenge.map(str::to_owned),
                user: user(),
                tenant: "acme".parse().unwrap(),
                method: SignInMethod::PasswordAndTotp,
                auth_time: NOW - Duration::minutes(5),
                browser_session: "01J00000000000000000000009".into(),
                now: NOW,
                lifetime: CODE_LIFETIME,
            },
        )
        .unwrap();
        issued.into_iter().next().unwrap()
    }

    fn redeem(client: &str, verifier: Option<&str>, at: OffsetDateTime) -> SessionCommand {
        SessionCommand::RedeemCode {
            presented: index(9),
            client: client.into(),
            redirect_uri: "https://shop.example/cb".into(),
            code_verifier: verifier.map(str::to_owned),
            refresh: index(10),
            lifetimes: lifetimes(),
            now: at,
        }
    }

    fn state_of(events: &[SessionEvent]) -> Session {
        events.iter().fold(Session::default(), evolve)
    }

    #[test]
    fn the_pkce_check_is_s256_of_a_well_formed_verifier() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!pkce_matches("short", CHALLENGE));
    }

    #[test]
    fn a_code_exchanged_by_its_client_with_its_verifier_starts_the_session_as_the_sign_in_did() {
        let issued = code_issued(Some(CHALLENGE));
        let events = decide(
            &state_of(std::slice::from_ref(&issued)),
            redeem("shop", Some(VERIFIER), NOW + Duration::seconds(5)),
        )
        .unwrap();
        let [SessionEvent::Started(started)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(started.method, SignInMethod::PasswordAndTotp);
        assert_eq!(started.refresh, index(10));
        assert_eq!(started.ip, None);
        let state = state_of(&[issued, events[0].clone()]);
        assert_eq!(state.status, SessionStatus::Active);
        assert_eq!(state.client.as_deref(), Some("shop"));
    }

    #[test]
    fn a_code_is_refused_to_another_client_a_wrong_verifier_and_after_it_expired() {
        let state = state_of(&[code_issued(Some(CHALLENGE))]);
        let soon = NOW + Duration::seconds(5);
        for command in [
            redeem("other", Some(VERIFIER), soon),
            redeem("shop", None, soon),
            redeem("shop", Some(&VERIFIER.replace('d', "e")), soon),
            redeem("shop", Some(VERIFIER), NOW + CODE_LIFETIME),
        ] {
            assert_eq!(decide(&state, command), Err(SessionError::InvalidGrant));
        }
        // A verifier for a code issued without a challenge is refused too.
        let plain = state_of(&[code_issued(None)]);
        assert_eq!(
            decide(&plain, redeem("shop", Some(VERIFIER), soon)),
            Err(SessionError::InvalidGrant)
        );
        assert!(decide(&plain, redeem("shop", None, soon)).is_ok());
    }

    #[test]
    fn a_code_presented_again_revokes_what_its_first_exchange_issued() {
        let issued = code_issued(None);
        let soon = NOW + Duration::seconds(5);
        let first = decide(
            &state_of(std::slice::from_ref(&issued)),
            redeem("shop", None, soon),
        )
        .unwrap();
        let state = state_of(&[issued, first[0].clone()]);
        assert_eq!(
            decide(&state, redeem("shop", None, soon)),
            Ok(vec![SessionEvent::Revoked(SessionRevoked {
                reason: RevocationReason::AuthorizationCodeReused
            })])
        );
    }

    #[test]
    fn an_applications_session_is_refreshed_by_that_application_only() {
        let issued = code_issued(None);
        let soon = NOW + Duration::seconds(5);
        let started = decide(
            &state_of(std::slice::from_ref(&issued)),
            redeem("shop", None, soon),
        )
        .unwrap();
        let state = state_of(&[issued, started[0].clone()]);
        let refresh = |client: Option<&str>| SessionCommand::Refresh {
            presented: index(10),
            next: index(11),
            now: soon,
            client: client.map(str::to_owned),
        };
        assert_eq!(decide(&state, refresh(None)), Err(SessionError::Ended));
        assert_eq!(
            decide(&state, refresh(Some("other"))),
            Err(SessionError::Ended)
        );
        assert!(matches!(
            decide(&state, refresh(Some("shop"))).as_deref(),
            Ok([SessionEvent::Refreshed(_)])
        ));
    }

    /// Acme's lifetimes: 10 hours, 30 days when remembered, an hour idle.
    fn lifetimes() -> SessionLifetimes {
        SessionLifetimes {
            max: Duration::hours(10),
            remembered: Duration::days(30),
            idle_timeout: Duration::hours(1),
        }
    }

    fn start(lifetimes: SessionLifetimes, remember: bool) -> SessionCommand {
        SessionCommand::Start {
            user: user(),
            tenant: "acme".parse().unwrap(),
            method: SignInMethod::Password,
            refresh: index(1),
            now: NOW,
            lifetimes,
            remember,
            ip: None,
            user_agent: None,
        }
    }

    fn started_until(expires_at: OffsetDateTime, remembered: bool) -> SessionEvent {
        SessionEvent::Started(SessionStarted {
            user: user(),
            tenant: "acme".parse().unwrap(),
            method: SignInMethod::Password,
            refresh: index(1),
            at: NOW,
            expires_at,
            idle_timeout_seconds: 3600,
            ip: None,
            user_agent: None,
            remembered,
        })
    }

    fn state(given: &[SessionEvent]) -> Session {
        given.iter().fold(Session::default(), evolve)
    }

    fn refresh(presented: u8, next: u8, now: OffsetDateTime) -> SessionCommand {
        SessionCommand::Refresh {
            presented: index(presented),
            next: index(next),
            now,
            client: None,
        }
    }

    #[test]
    fn starting_records_the_lifetimes_and_where_the_sign_in_came_from() {
        assert_eq!(
            decide(
                &Session::default(),
                SessionCommand::Start {
                    user: user(),
                    tenant: "acme".parse().unwrap(),
                    method: SignInMethod::Password,
                    refresh: index(1),
                    now: NOW,
                    lifetimes: SessionLifetimes {
                        max: Duration::days(30),
                        remembered: Duration::days(30),
                        idle_timeout: Duration::hours(1),
                    },
                    remember: false,
                    ip: Some("192.0.2.7".into()),
                    user_agent: Some("Firefox".into()),
                }
            ),
            Ok(vec![started()])
        );
    }

    #[test]
    fn given_no_session_when_started_without_remember_then_it_ends_at_the_ordinary_lifetime() {
        check(
            &[],
            start(lifetimes(), false),
            Ok(vec![started_until(NOW + Duration::hours(10), false)]),
        );
    }

    #[test]
    fn given_no_session_when_started_with_remember_then_it_ends_after_the_remembered_days() {
        check(
            &[],
            start(lifetimes(), true),
            Ok(vec![started_until(NOW + Duration::days(30), true)]),
        );
    }

    #[test]
    fn given_a_tenant_with_remembering_off_when_started_with_remember_then_it_is_ignored() {
        let off = SessionLifetimes {
            remembered: Duration::ZERO,
            ..lifetimes()
        };
        check(
            &[],
            start(off, true),
            Ok(vec![started_until(NOW + Duration::hours(10), false)]),
        );
    }

    #[test]
    fn given_an_ordinary_lifetime_longer_than_the_remembered_one_when_remembered_then_the_longer() {
        let long = SessionLifetimes {
            max: Duration::days(60),
            ..lifetimes()
        };
        check(
            &[],
            start(long, true),
            Ok(vec![started_until(NOW + Duration::days(60), true)]),
        );
    }

    #[test]
    fn given_lifetimes_that_are_not_positive_when_started_then_refused() {
        for bad in [
            SessionLifetimes {
                max: Duration::ZERO,
                ..lifetimes()
            },
            SessionLifetimes {
                idle_timeout: Duration::ZERO,
                ..lifetimes()
            },
            SessionLifetimes {
                remembered: Duration::days(-1),
                ..lifetimes()
            },
        ] {
            check(&[], start(bad, true), Err(SessionError::InvalidLifetime));
        }
    }

    #[test]
    fn given_a_remembered_session_when_refreshed_past_the_ordinary_lifetime_then_rotated() {
        // Refreshed every 50 minutes (within the idle hour) for 11 hours: past the ordinary 10.
        let mut given = vec![started_until(NOW + Duration::days(30), true)];
        let mut at = NOW;
        for generation in 1..=13u8 {
            at += Duration::minutes(50);
            given.push(SessionEvent::Refreshed(SessionRefreshed {
                refresh: index(generation + 1),
                generation: u32::from(generation),
                at,
            }));
        }
        assert!(at > NOW + Duration::hours(10));
        let now = at + Duration::minutes(50);
        check(
            &given,
            refresh(14, 15, now),
            Ok(vec![SessionEvent::Refreshed(SessionRefreshed {
                refresh: index(15),
                generation: 14,
                at: now,
            })]),
        );
        // The same refreshes of an ordinary session: it ended at ten hours.
        given[0] = started_until(NOW + Duration::hours(10), false);
        check(&given, refresh(14, 15, now), Err(SessionError::Ended));
    }

    #[test]
    fn given_a_remembered_session_when_idle_too_long_then_it_has_ended() {
        let given = [started_until(NOW + Duration::days(30), true)];
        check(
            &given,
            refresh(1, 2, NOW + Duration::hours(1)),
            Err(SessionError::Ended),
        );
        check(
            &given,
            refresh(1, 2, NOW + Duration::minutes(59)),
            Ok(vec![SessionEvent::Refreshed(SessionRefreshed {
                refresh: index(2),
                generation: 1,
                at: NOW + Duration::minutes(59),
            })]),
        );
    }

    #[test]
    fn given_a_remembered_session_when_past_its_remembered_end_then_it_has_ended() {
        let mut s = state(&[started_until(NOW + Duration::days(30), true)]);
        assert!(s.remembered);
        s.last_active_at = Some(NOW + Duration::days(30) - Duration::minutes(1));
        assert_eq!(
            decide(&s, refresh(1, 2, NOW + Duration::days(30))),
            Err(SessionError::Ended)
        );
    }

    #[test]
    fn the_live_token_is_rotated() {
        assert_eq!(
            decide(&state(&[started()]), refresh(1, 2, NOW)),
            Ok(vec![SessionEvent::Refreshed(SessionRefreshed {
                refresh: index(2),
                generation: 1,
                at: NOW,
            })])
        );
    }

    #[test]
    fn a_rotated_token_presented_again_revokes_the_session() {
        let given = [
            started(),
            SessionEvent::Refreshed(SessionRefreshed {
                refresh: index(2),
                generation: 1,
                at: NOW,
            }),
        ];
        let revoked = SessionEvent::Revoked(SessionRevoked {
            reason: RevocationReason::RefreshTokenReused,
        });
        assert_eq!(
            decide(&state(&given), refresh(1, 3, NOW)),
            Ok(vec![revoked.clone()])
        );
        // After that, even the live token is dead.
        let mut after = given.to_vec();
        after.push(revoked);
        assert_eq!(
            decide(&state(&after), refresh(2, 3, NOW)),
            Err(SessionError::Ended)
        );
    }

    #[test]
    fn idle_and_absolute_timeouts_end_the_session() {
        let s = state(&[started()]);
        assert!(s.is_live_at(NOW + Duration::minutes(59)));
        assert_eq!(
            decide(&s, refresh(1, 2, NOW + Duration::hours(1))),
            Err(SessionError::Ended)
        );
        // Activity keeps it alive, but not past its absolute end.
        let mut s = s;
        for day in 1..=30 {
            let at = NOW + Duration::days(day) - Duration::minutes(1);
            s.last_active_at = Some(at - Duration::minutes(1));
            assert_eq!(s.is_live_at(at), day < 30 || at < NOW + Duration::days(30));
        }
        s.last_active_at = Some(NOW + Duration::days(30) - Duration::seconds(1));
        assert!(!s.is_live_at(NOW + Duration::days(30)));
    }

    #[test]
    fn switching_tenant_rotates_the_token() {
        let given = [started()];
        let events = decide(
            &state(&given),
            SessionCommand::SwitchTenant {
                tenant: "globex".parse().unwrap(),
                presented: index(1),
                next: index(2),
                now: NOW,
            },
        )
        .unwrap();
        let after = events.iter().fold(state(&given), evolve);
        assert_eq!(after.tenant, Some("globex".parse().unwrap()));
        assert_eq!(
            decide(&after, refresh(1, 3, NOW)),
            Ok(vec![SessionEvent::Revoked(SessionRevoked {
                reason: RevocationReason::RefreshTokenReused
            })])
        );
    }

    #[test]
    fn revoking_twice_changes_nothing() {
        let given = [
            started(),
            SessionEvent::Revoked(SessionRevoked {
                reason: RevocationReason::SignedOut,
            }),
        ];
        assert_eq!(
            decide(
                &state(&given),
                SessionCommand::Revoke {
                    reason: RevocationReason::RevokedByAdmin
                }
            ),
            Ok(vec![])
        );
        assert_eq!(
            decide(
                &Session::default(),
                SessionCommand::Revoke {
                    reason: RevocationReason::SignedOut
                }
            ),
            Err(SessionError::Ended)
        );
    }
}
