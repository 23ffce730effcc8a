//! The credentials aggregate: one per user (its id is the user's id; global, like the user).
//!
//! It holds what proves who someone is: the sealed password hash, TOTP, passkeys (WebAuthn
//! credentials: their public keys and signature counters), recovery codes, the
//! single-use emailed tokens (password reset, magic link, email code) and the failure count behind
//! brute-force lock-out. It is apart from the user aggregate so that sign-in traffic does not
//! contend with profile and lifecycle changes, and every single-use rule here (a reset token, a
//! TOTP time step, a recovery code) is enforced by the log's expected sequence: of two concurrent
//! redemptions exactly one appends.
//!
//! Secrets arrive already sealed or blind-indexed (see [`crate::secret`]): checking a password or
//! a TOTP code needs the key holder and happens in the application, which passes the outcome here.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::events::{
    AccountLocked, AccountUnlocked, PasskeyCounterRegressed, PasskeyRegistered, PasskeyRemoved,
    PasskeyUsed, PasswordSet, RecoveryCodeUsed, RecoveryCodesGenerated, SecretTokenIssued,
    SecretTokenMissed, SecretTokenRedeemed, SignInFailed, SignInFailuresCleared, TotpCodeUsed,
    TotpDisabled, TotpEnabled, TotpEnrolmentStarted,
};
use crate::secret::{BlindIndex, Sealed};

/// Why a password was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PasswordReason {
    /// First password, chosen when accepting an invitation or at bootstrap/registration.
    Initial,
    /// Changed by the user, who proved the current one.
    Changed,
    /// Reset through an emailed single-use link.
    Reset,
}

/// What an emailed single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    PasswordReset,
    MagicLink,
    EmailCode,
    EmailVerification,
    /// Confirms a new address (the token is mailed to it).
    EmailChange,
}

/// Brute-force protection settings (per tenant settings may tighten them; see the application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account.
    pub max_failures: u32,
    /// Length of the first lock-out; each further lock-out doubles it…
    pub base_lock: Duration,
    /// …up to this.
    pub max_lock: Duration,
    /// Failures older than this are forgotten (a fresh window starts).
    pub failure_window: Duration,
}

impl Default for LockoutPolicy {
    /// Keycloak-like: 5 failures, 1 minute lock-out doubling up to 15 minutes, failures
    /// forgotten after 12 hours without any.
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            base_lock: Duration::minutes(1),
            max_lock: Duration::minutes(15),
            failure_window: Duration::hours(12),
        }
    }
}

/// Wrong codes a live token survives: the next one kills it, so the million six-digit email
/// codes cannot be tried (each new code allows as many tries again, and codes are sent at most
/// once a minute per account).
pub const MAX_TOKEN_MISSES: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutstandingToken {
    pub purpose: TokenPurpose,
    pub index: BlindIndex,
    pub expires_at: OffsetDateTime,
    /// Wrong codes presented while it lived.
    pub misses: u32,
}

/// Passkeys one person may hold.
pub const MAX_PASSKEYS: usize = 20;

/// What the aggregate keeps of a passkey to decide on its use (the public key itself is checked by
/// the application, with the WebAuthn library, before it asks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyState {
    /// The credential id, base64url.
    pub credential: String,
    /// The highest signature counter seen.
    pub counter: u32,
    /// When the ceremony of its last use began.
    pub last_ceremony: Option<OffsetDateTime>,
}

/// Whether a presented signature counter shows a cloned authenticator (WebAuthn Level 3, §7.2
/// step 22): when either counter is not 0, the presented one must be greater than the stored one.
/// Authenticators without a counter (most synced passkeys) always present 0.
pub fn counter_regressed(stored: u32, presented: u32) -> bool {
    (stored > 0 || presented > 0) && presented <= stored
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub password: Option<Sealed>,
    /// TOTP secret waiting for its first code.
    pub totp_pending: Option<Sealed>,
    /// Confirmed TOTP secret: sign-in needs a second step.
    pub totp: Option<Sealed>,
    /// Highest TOTP time step used; a code of that step or earlier is refused (RFC 6238 §5.2).
    pub totp_last_step: u64,
    /// Unused recovery codes.
    pub recovery_codes: Vec<BlindIndex>,
    /// Registered passkeys, oldest first.
    pub passkeys: Vec<PasskeyState>,
    /// At most one live token per purpose: issuing a new one kills the old.
    pub tokens: Vec<OutstandingToken>,
    /// Consecutive failures since the last success, lock-out or unlock.
    pub failures: u32,
    pub last_failure_at: Option<OffsetDateTime>,
    pub locked_until: Option<OffsetDateTime>,
    /// Lock-outs since the last successful sign-in (each doubles the next one).
    pub lockouts: u32,
}

impl Credentials {
    /// Whether sign-in with a first factor needs a second step: TOTP or a passkey.
    pub fn has_second_factor(&self) -> bool {
        self.totp.is_some() || !self.passkeys.is_empty()
    }

    fn passkey(&self, credential: &str) -> Result<&PasskeyState, CredentialsError> {
        self.passkeys
            .iter()
            .find(|p| p.credential == credential)
            .ok_or(CredentialsError::UnknownPasskey)
    }

    pub fn is_locked_at(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsCommand {
    SetPassword {
        password: Sealed,
        reason: PasswordReason,
    },
    /// A wrong password (or second factor) was presented, from `ip` with `user_agent` (personal
    /// data, recorded as given).
    RecordFailure {
        now: OffsetDateTime,
        policy: LockoutPolicy,
        ip: Option<String>,
        user_agent: Option<String>,
    },
    /// A sign-in succeeded: the failure count starts over.
    RecordSuccess,
    /// An administrator lifts a lock-out.
    Unlock,
    IssueToken {
        purpose: TokenPurpose,
        index: BlindIndex,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    },
    /// Uses up an emailed token (magic link, email code, email verification).
    RedeemToken {
        purpose: TokenPurpose,
        index: BlindIndex,
        now: OffsetDateTime,
    },
    /// A code that matched no live token of `purpose` was presented. Counted against the live
    /// token of that purpose, if there is one (an unknown, used or expired token leaves nothing
    /// to count); never a password failure.
    MissToken {
        purpose: TokenPurpose,
        now: OffsetDateTime,
    },
    /// Uses up a password-reset token and sets the new password, in one append.
    ResetPassword {
        index: BlindIndex,
        password: Sealed,
        now: OffsetDateTime,
    },
    StartTotp {
        secret: Sealed,
    },
    /// The application verified a code against the pending secret at time step `step`.
    ConfirmTotp {
        step: u64,
        recovery_codes: Vec<BlindIndex>,
    },
    /// The application verified a code against the active secret at time step `step`.
    UseTotp {
        step: u64,
    },
    UseRecoveryCode {
        index: BlindIndex,
    },
    DisableTotp,
    /// The application verified a new passkey's registration ceremony. `recovery_codes` are
    /// recorded when it is the person's first second factor (else they keep their codes).
    RegisterPasskey {
        credential: String,
        name: String,
        public_key: String,
        counter: u32,
        now: OffsetDateTime,
        recovery_codes: Vec<BlindIndex>,
    },
    /// The application verified an assertion of `credential` over the challenge of a ceremony
    /// that began at `ceremony_started_at`, with signature counter `counter`.
    UsePasskey {
        credential: String,
        counter: u32,
        ceremony_started_at: OffsetDateTime,
        now: OffsetDateTime,
    },
    /// Records that `credential` presented a counter that went backwards (nothing if it did not).
    RecordPasskeyRegression {
        credential: String,
        presented: u32,
        now: OffsetDateTime,
    },
    RemovePasskey {
        credential: String,
    },
    /// An administrator resets the person's second factors: every passkey and TOTP go (and with
    /// them the recovery codes); the person signs in with their first factor and sets up anew.
    ResetFactors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsEvent {
    PasswordSet(PasswordSet),
    SignInFailed(SignInFailed),
    AccountLocked(AccountLocked),
    FailuresCleared(SignInFailuresCleared),
    Unlocked(AccountUnlocked),
    TokenIssued(SecretTokenIssued),
    TokenRedeemed(SecretTokenRedeemed),
    TokenMissed(SecretTokenMissed),
    TotpEnrolmentStarted(TotpEnrolmentStarted),
    TotpEnabled(TotpEnabled),
    TotpCodeUsed(TotpCodeUsed),
    RecoveryCodesGenerated(RecoveryCodesGenerated),
    RecoveryCodeUsed(RecoveryCodeUsed),
    TotpDisabled(TotpDisabled),
    PasskeyRegistered(PasskeyRegistered),
    PasskeyUsed(PasskeyUsed),
    PasskeyRemoved(PasskeyRemoved),
    PasskeyCounterRegressed(PasskeyCounterRegressed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Deliberately one error for unknown, expired, used and superseded tokens.
    #[error("the link or code is invalid or has expired")]
    InvalidToken,
    #[error("a TOTP code can be used only once")]
    TotpReplayed,
    #[error("two-factor authentication is not being set up")]
    NoTotpEnrolment,
    #[error("two-factor authentication is not enabled")]
    TotpNotEnabled,
    #[error("two-factor authentication is already enabled")]
    TotpAlreadyEnabled,
    #[error("the recovery code is invalid or was used")]
    InvalidRecoveryCode,
    #[error("the account is not locked")]
    NotLocked,
    #[error("this passkey is already registered")]
    PasskeyAlreadyRegistered,
    #[error("no such passkey")]
    UnknownPasskey,
    #[error("a person may register at most {MAX_PASSKEYS} passkeys")]
    TooManyPasskeys,
    /// The challenge was already answered with this passkey (a replay, or a later ceremony won).
    #[error("the passkey challenge was already used")]
    PasskeyCeremonySpent,
    /// The signature counter went backwards: the authenticator may have been cloned.
    #[error("the passkey's signature counter went backwards")]
    PasskeyCounterRegressed,
    #[error("there is no second factor to reset")]
    NoSecondFactor,
}

fn live_token(
    state: &Credentials,
    purpose: TokenPurpose,
    index: &BlindIndex,
    now: OffsetDateTime,
) -> Result<(), CredentialsError> {
    state
        .tokens
        .iter()
        .find(|t| t.purpose == purpose && &t.index == index && now < t.expires_at)
        .map(|_| ())
        .ok_or(CredentialsError::InvalidToken)
}

pub fn decide(
    state: &Credentials,
    command: CredentialsCommand,
) -> Result<Vec<CredentialsEvent>, CredentialsError> {
    use CredentialsEvent as E;
    match command {
        CredentialsCommand::SetPassword { password, reason } => {
            Ok(vec![E::PasswordSet(PasswordSet { password, reason })])
        }
        CredentialsCommand::RecordFailure {
            now,
            policy,
            ip,
            user_agent,
        } => {
            // A failure long after the previous one starts a new window.
            let previous = match state.last_failure_at {
                Some(at) if now - at <= policy.failure_window => state.failures,
                _ => 0,
            };
            let failures = previous + 1;
            let mut events = vec![E::SignInFailed(SignInFailed {
                failures,
                at: now,
                ip,
                user_agent,
            })];
            if failures >= policy.max_failures.max(1) {
                let doubling = 2i32.saturating_pow(state.lockouts.min(16));
                let lock = (policy.base_lock * doubling).min(policy.max_lock);
                events.push(E::AccountLocked(AccountLocked {
                    until: now + lock,
                    failures,
                }));
            }
            Ok(events)
        }
        CredentialsCommand::RecordSuccess => {
            if state.failures == 0 && state.lockouts == 0 {
                Ok(vec![])
            } else {
                Ok(vec![E::FailuresCleared(SignInFailuresCleared {})])
            }
        }
        CredentialsCommand::Unlock => {
            if state.locked_until.is_none() && state.failures == 0 {
                return Err(CredentialsError::NotLocked);
            }
            Ok(vec![E::Unlocked(AccountUnlocked {})])
        }
        CredentialsCommand::IssueToken {
            purpose,
            index,
            expires_at,
            now,
        } => {
            if expires_at <= now {
                return Err(CredentialsError::InvalidToken);
            }
            Ok(vec![E::TokenIssued(SecretTokenIssued {
                purpose,
                index,
                expires_at,
            })])
        }
        CredentialsCommand::RedeemToken {
            purpose,
            index,
            now,
        } => {
            live_token(state, purpose, &index, now)?;
            Ok(vec![E::TokenRedeemed(SecretTokenRedeemed { purpose })])
        }
        CredentialsCommand::MissToken { purpose, now } => Ok(state
            .tokens
            .iter()
            .find(|t| t.purpose == purpose && now < t.expires_at)
            .map(|t| {
                vec![E::TokenMissed(SecretTokenMissed {
                    purpose,
                    misses: t.misses + 1,
                })]
            })
            .unwrap_or_default()),
        CredentialsCommand::ResetPassword {
            index,
            password,
            now,
        } => {
            live_token(state, TokenPurpose::PasswordReset, &index, now)?;
            Ok(vec![
                E::TokenRedeemed(SecretTokenRedeemed {
                    purpose: TokenPurpose::PasswordReset,
                }),
                E::PasswordSet(PasswordSet {
                    password,
                    reason: PasswordReason::Reset,
                }),
            ])
        }
        CredentialsCommand::StartTotp { secret } => {
            if state.totp.is_some() {
                return Err(CredentialsError::TotpAlreadyEnabled);
            }
            Ok(vec![E::TotpEnrolmentStarted(TotpEnrolmentStarted {
                secret,
            })])
        }
        CredentialsCommand::ConfirmTotp {
            step,
            recovery_codes,
        } => {
            if state.totp.is_some() {
                return Err(CredentialsError::TotpAlreadyEnabled);
            }
            if state.totp_pending.is_none() {
                return Err(CredentialsError::NoTotpEnrolment);
            }
            Ok(vec![
                E::TotpEnabled(TotpEnabled { step }),
                E::RecoveryCodesGenerated(RecoveryCodesGenerated {
                    codes: recovery_codes,
                }),
            ])
        }
        CredentialsCommand::UseTotp { step } => {
            if state.totp.is_none() {
                return Err(CredentialsError::TotpNotEnabled);
            }
            if step <= state.totp_last_step {
                return Err(CredentialsError::TotpReplayed);
            }
            Ok(vec![E::TotpCodeUsed(TotpCodeUsed { step })])
        }
        CredentialsCommand::UseRecoveryCode { index } => {
            if !state.has_second_factor() {
                return Err(CredentialsError::TotpNotEnabled);
            }
            if !state.recovery_codes.contains(&index) {
                return Err(CredentialsError::InvalidRecoveryCode);
            }
            Ok(vec![E::RecoveryCodeUsed(RecoveryCodeUsed { code: index })])
        }
        CredentialsCommand::DisableTotp => {
            if state.totp.is_none() && state.totp_pending.is_none() {
                return Err(CredentialsError::TotpNotEnabled);
            }
            Ok(vec![E::TotpDisabled(TotpDisabled {})])
        }
        CredentialsCommand::RegisterPasskey {
            credential,
            name,
            public_key,
            counter,
            now,
            recovery_codes,
        } => {
            if state.passkey(&credential).is_ok() {
                return Err(CredentialsError::PasskeyAlreadyRegistered);
            }
            if state.passkeys.len() >= MAX_PASSKEYS {
                return Err(CredentialsError::TooManyPasskeys);
            }
            let first_factor = !state.has_second_factor();
            let mut events = vec![E::PasskeyRegistered(PasskeyRegistered {
                credential,
                name,
                public_key,
                counter,
                at: now,
            })];
            if first_factor && !recovery_codes.is_empty() {
                events.push(E::RecoveryCodesGenerated(RecoveryCodesGenerated {
                    codes: recovery_codes,
                }));
            }
            Ok(events)
        }
        CredentialsCommand::UsePasskey {
            credential,
            counter,
            ceremony_started_at,
            now,
        } => {
            let passkey = state.passkey(&credential)?;
            if passkey
                .last_ceremony
                .is_some_and(|last| ceremony_started_at <= last)
            {
                return Err(CredentialsError::PasskeyCeremonySpent);
            }
            if counter_regressed(passkey.counter, counter) {
                return Err(CredentialsError::PasskeyCounterRegressed);
            }
            Ok(vec![E::PasskeyUsed(PasskeyUsed {
                credential,
                counter,
                at: now,
                ceremony_started_at,
            })])
        }
        CredentialsCommand::RecordPasskeyRegression {
            credential,
            presented,
            now,
        } => {
            let passkey = state.passkey(&credential)?;
            if !counter_regressed(passkey.counter, presented) {
                return Ok(vec![]);
            }
            Ok(vec![E::PasskeyCounterRegressed(PasskeyCounterRegressed {
                credential,
                stored: passkey.counter,
                presented,
                at: now,
            })])
        }
        CredentialsCommand::RemovePasskey { credential } => {
            state.passkey(&credential)?;
            Ok(vec![E::PasskeyRemoved(PasskeyRemoved { credential })])
        }
        CredentialsCommand::ResetFactors => {
            if !state.has_second_factor() && state.totp_pending.is_none() {
                return Err(CredentialsError::NoSecondFactor);
            }
            let mut events: Vec<_> = state
                .passkeys
                .iter()
                .map(|p| {
                    E::PasskeyRemoved(PasskeyRemoved {
                        credential: p.credential.clone(),
                    })
                })
                .collect();
            if state.totp.is_some() || state.totp_pending.is_some() {
                events.push(E::TotpDisabled(TotpDisabled {}));
            }
            Ok(events)
        }
    }
}

pub fn evolve(mut state: Credentials, event: &CredentialsEvent) -> Credentials {
    match event {
        CredentialsEvent::PasswordSet(e) => {
            state.password = Some(e.password.clone());
            // A new password kills outstanding reset links.
            state
                .tokens
                .retain(|t| t.purpose != TokenPurpose::PasswordReset);
        }
        CredentialsEvent::SignInFailed(e) => {
            state.failures = e.failures;
            state.last_failure_at = Some(e.at);
        }
        CredentialsEvent::AccountLocked(e) => {
            state.locked_until = Some(e.until);
            state.lockouts += 1;
            state.failures = 0;
        }
        CredentialsEvent::FailuresCleared(_) => {
            state.failures = 0;
            state.lockouts = 0;
            state.locked_until = None;
        }
        CredentialsEvent::Unlocked(_) => {
            state.failures = 0;
            state.locked_until = None;
        }
        CredentialsEvent::TokenIssued(e) => {
            state.tokens.retain(|t| t.purpose != e.purpose);
            state.tokens.push(OutstandingToken {
                purpose: e.purpose,
                index: e.index.clone(),
                expires_at: e.expires_at,
                misses: 0,
            });
        }
        CredentialsEvent::TokenRedeemed(e) => state.tokens.retain(|t| t.purpose != e.purpose),
        CredentialsEvent::TokenMissed(e) => {
            if e.misses >= MAX_TOKEN_MISSES {
                state.tokens.retain(|t| t.purpose != e.purpose);
            } else if let Some(token) = state.tokens.iter_mut().find(|t| t.purpose == e.purpose) {
                token.misses = e.misses;
            }
        }
        CredentialsEvent::TotpEnrolmentStarted(e) => state.totp_pending = Some(e.secret.clone()),
        CredentialsEvent::TotpEnabled(e) => {
            state.totp = state.totp_pending.take();
            state.totp_last_step = e.step;
        }
        CredentialsEvent::TotpCodeUsed(e) => state.totp_last_step = e.step,
        CredentialsEvent::RecoveryCodesGenerated(e) => state.recovery_codes = e.codes.clone(),
        CredentialsEvent::RecoveryCodeUsed(e) => state.recovery_codes.retain(|c| c != &e.code),
        CredentialsEvent::TotpDisabled(_) => {
            state.totp = None;
            state.totp_pending = None;
            // Recovery codes stand in for any second factor: they go with the last one.
            if state.passkeys.is_empty() {
                state.recovery_codes.clear();
            }
        }
        CredentialsEvent::PasskeyRegistered(e) => state.passkeys.push(PasskeyState {
            credential: e.credential.clone(),
            counter: e.counter,
            last_ceremony: None,
        }),
        CredentialsEvent::PasskeyUsed(e) => {
            if let Some(passkey) = state
                .passkeys
                .iter_mut()
                .find(|p| p.credential == e.credential)
            {
                passkey.counter = passkey.counter.max(e.counter);
                passkey.last_ceremony =
                    Some(passkey.last_ceremony.map_or(e.ceremony_started_at, |last| {
                        last.max(e.ceremony_started_at)
                    }));
            }
        }
        CredentialsEvent::PasskeyRemoved(e) => {
            state.passkeys.retain(|p| p.credential != e.credential);
            if !state.has_second_factor() {
                state.recovery_codes.clear();
            }
        }
        // A refusal: nothing changes (the passkey keeps its counter, so the genuine
        // authenticator, whose counter is ahead, keeps working).
        CredentialsEvent::PasskeyCounterRegressed(_) => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn sealed(tag: char) -> Sealed {
        Sealed::parse(format!("v1.k1.{}", tag.to_string().repeat(48))).unwrap()
    }

    fn index(byte: u8) -> BlindIndex {
        BlindIndex::from_bytes(&[byte; 32])
    }

    fn issued(purpose: TokenPurpose, byte: u8) -> CredentialsEvent {
        CredentialsEvent::TokenIssued(SecretTokenIssued {
            purpose,
            index: index(byte),
            expires_at: NOW + Duration::minutes(10),
        })
    }

    #[test]
    fn a_reset_token_sets_the_password_once() {
        let reset = CredentialsCommand::ResetPassword {
            index: index(1),
            password: sealed('B'),
            now: NOW,
        };
        let given = [issued(TokenPurpose::PasswordReset, 1)];
        check(
            &given,
            reset.clone(),
            Ok(vec![
                CredentialsEvent::TokenRedeemed(SecretTokenRedeemed {
                    purpose: TokenPurpose::PasswordReset,
                }),
                CredentialsEvent::PasswordSet(PasswordSet {
                    password: sealed('B'),
                    reason: PasswordReason::Reset,
                }),
            ]),
        );
        let state = given.iter().fold(Credentials::default(), evolve);
        let events = decide(&state, reset.clone()).unwrap();
        let used = events.iter().fold(state, evolve);
        assert_eq!(decide(&used, reset), Err(CredentialsError::InvalidToken));
    }

    fn missed(misses: u32) -> CredentialsEvent {
        CredentialsEvent::TokenMissed(SecretTokenMissed {
            purpose: TokenPurpose::EmailCode,
            misses,
        })
    }

    fn miss(now: OffsetDateTime) -> CredentialsCommand {
        CredentialsCommand::MissToken {
            purpose: TokenPurpose::EmailCode,
            now,
        }
    }

    fn redeem_code(byte: u8) -> CredentialsCommand {
        CredentialsCommand::RedeemToken {
            purpose: TokenPurpose::EmailCode,
            index: index(byte),
            now: NOW,
        }
    }

    #[test]
    fn a_wrong_code_counts_against_the_live_code_only() {
        check(
            &[issued(TokenPurpose::EmailCode, 1)],
            miss(NOW),
            Ok(vec![missed(1)]),
        );
        check(
            &[issued(TokenPurpose::EmailCode, 1), missed(1)],
            miss(NOW),
            Ok(vec![missed(2)]),
        );
    }

    #[test]
    fn an_unknown_used_or_expired_code_leaves_nothing_to_count() {
        check(&[], miss(NOW), Ok(vec![]));
        check(
            &[issued(TokenPurpose::EmailCode, 1)],
            miss(NOW + Duration::minutes(10)),
            Ok(vec![]),
        );
        let used = [
            issued(TokenPurpose::EmailCode, 1),
            CredentialsEvent::TokenRedeemed(SecretTokenRedeemed {
                purpose: TokenPurpose::EmailCode,
            }),
        ];
        check(&used, miss(NOW), Ok(vec![]));
        // A live magic link is another purpose: a wrong code does not touch it.
        check(&[issued(TokenPurpose::MagicLink, 1)], miss(NOW), Ok(vec![]));
    }

    #[test]
    fn a_code_survives_fewer_misses_than_the_limit_and_dies_at_it() {
        let mut given = vec![issued(TokenPurpose::EmailCode, 1)];
        given.extend((1..MAX_TOKEN_MISSES).map(missed));
        check(
            &given,
            redeem_code(1),
            Ok(vec![CredentialsEvent::TokenRedeemed(SecretTokenRedeemed {
                purpose: TokenPurpose::EmailCode,
            })]),
        );
        given.push(missed(MAX_TOKEN_MISSES));
        check(&given, redeem_code(1), Err(CredentialsError::InvalidToken));
        check(&given, miss(NOW), Ok(vec![]));
    }

    #[test]
    fn a_missed_code_is_no_password_failure() {
        let given = [issued(TokenPurpose::EmailCode, 1), missed(1), missed(2)];
        let state = given.iter().fold(Credentials::default(), evolve);
        assert_eq!(state.failures, 0);
        assert_eq!(state.locked_until, None);
    }

    #[test]
    fn a_new_code_starts_without_misses() {
        let given = [
            issued(TokenPurpose::EmailCode, 1),
            missed(4),
            issued(TokenPurpose::EmailCode, 2),
        ];
        check(&given, miss(NOW), Ok(vec![missed(1)]));
    }

    #[test]
    fn expired_superseded_and_foreign_tokens_are_refused_alike() {
        let given = [
            issued(TokenPurpose::PasswordReset, 1),
            issued(TokenPurpose::PasswordReset, 2),
        ];
        let reset = |byte, now| CredentialsCommand::ResetPassword {
            index: index(byte),
            password: sealed('B'),
            now,
        };
        check(&given, reset(1, NOW), Err(CredentialsError::InvalidToken));
        check(
            &given,
            reset(2, NOW + Duration::minutes(10)),
            Err(CredentialsError::InvalidToken),
        );
        check(
            &[issued(TokenPurpose::MagicLink, 3)],
            reset(3, NOW),
            Err(CredentialsError::InvalidToken),
        );
    }

    #[test]
    fn a_new_password_kills_outstanding_reset_links() {
        let given = [
            issued(TokenPurpose::PasswordReset, 1),
            CredentialsEvent::PasswordSet(PasswordSet {
                password: sealed('C'),
                reason: PasswordReason::Changed,
            }),
        ];
        check(
            &given,
            CredentialsCommand::ResetPassword {
                index: index(1),
                password: sealed('B'),
                now: NOW,
            },
            Err(CredentialsError::InvalidToken),
        );
    }

    fn failed(failures: u32, at: OffsetDateTime) -> SignInFailed {
        SignInFailed {
            failures,
            at,
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn the_fifth_failure_locks_and_lockouts_grow() {
        let policy = LockoutPolicy::default();
        let fail = |now| CredentialsCommand::RecordFailure {
            now,
            policy,
            ip: Some("192.0.2.7".into()),
            user_agent: None,
        };
        let four: Vec<_> = (1..=4)
            .map(|failures| CredentialsEvent::SignInFailed(failed(failures, NOW)))
            .collect();
        let state = four.iter().fold(Credentials::default(), evolve);
        assert_eq!(
            decide(&state, fail(NOW)),
            Ok(vec![
                CredentialsEvent::SignInFailed(SignInFailed {
                    failures: 5,
                    at: NOW,
                    ip: Some("192.0.2.7".into()),
                    user_agent: None,
                }),
                CredentialsEvent::AccountLocked(AccountLocked {
                    until: NOW + Duration::minutes(1),
                    failures: 5,
                }),
            ])
        );
        let locked = decide(&state, fail(NOW))
            .unwrap()
            .iter()
            .fold(state, evolve);
        assert!(locked.is_locked_at(NOW));
        assert!(!locked.is_locked_at(NOW + Duration::minutes(1)));
        // The next lock-out is twice as long.
        let again = four.iter().fold(locked, evolve);
        let events = decide(&again, fail(NOW)).unwrap();
        assert_eq!(
            events[1],
            CredentialsEvent::AccountLocked(AccountLocked {
                until: NOW + Duration::minutes(2),
                failures: 5,
            })
        );
        // A success starts over.
        let cleared = events.iter().fold(again, evolve);
        let success = decide(&cleared, CredentialsCommand::RecordSuccess).unwrap();
        let cleared = success.iter().fold(cleared, evolve);
        assert_eq!((cleared.failures, cleared.lockouts), (0, 0));
        assert!(!cleared.is_locked_at(NOW));
        assert_eq!(
            decide(&cleared, CredentialsCommand::RecordSuccess),
            Ok(vec![])
        );
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let policy = LockoutPolicy::default();
        let state = [CredentialsEvent::SignInFailed(failed(4, NOW))]
            .iter()
            .fold(Credentials::default(), evolve);
        assert_eq!(
            decide(
                &state,
                CredentialsCommand::RecordFailure {
                    now: NOW + Duration::hours(13),
                    policy,
                    ip: None,
                    user_agent: None,
                }
            ),
            Ok(vec![CredentialsEvent::SignInFailed(failed(
                1,
                NOW + Duration::hours(13)
            ))])
        );
    }

    #[test]
    fn totp_needs_confirmation_and_refuses_replayed_steps() {
        let started = CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
            secret: sealed('T'),
        });
        check(
            &[],
            CredentialsCommand::UseTotp { step: 10 },
            Err(CredentialsError::TotpNotEnabled),
        );
        check(
            &[],
            CredentialsCommand::ConfirmTotp {
                step: 10,
                recovery_codes: vec![],
            },
            Err(CredentialsError::NoTotpEnrolment),
        );
        let enabled = [
            started.clone(),
            CredentialsEvent::TotpEnabled(TotpEnabled { step: 10 }),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7), index(8)],
            }),
        ];
        let state = enabled.iter().fold(Credentials::default(), evolve);
        assert_eq!(state.totp, Some(sealed('T')));
        check(
            &enabled,
            CredentialsCommand::UseTotp { step: 10 },
            Err(CredentialsError::TotpReplayed),
        );
        check(
            &enabled,
            CredentialsCommand::UseTotp { step: 11 },
            Ok(vec![CredentialsEvent::TotpCodeUsed(TotpCodeUsed {
                step: 11,
            })]),
        );
        check(
            &enabled,
            CredentialsCommand::StartTotp {
                secret: sealed('U'),
            },
            Err(CredentialsError::TotpAlreadyEnabled),
        );
    }

    #[test]
    fn a_recovery_code_works_once() {
        let given = [
            CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
                secret: sealed('T'),
            }),
            CredentialsEvent::TotpEnabled(TotpEnabled { step: 1 }),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7), index(8)],
            }),
            CredentialsEvent::RecoveryCodeUsed(RecoveryCodeUsed { code: index(7) }),
        ];
        check(
            &given,
            CredentialsCommand::UseRecoveryCode { index: index(7) },
            Err(CredentialsError::InvalidRecoveryCode),
        );
        check(
            &given,
            CredentialsCommand::UseRecoveryCode { index: index(8) },
            Ok(vec![CredentialsEvent::RecoveryCodeUsed(RecoveryCodeUsed {
                code: index(8),
            })]),
        );
    }

    #[test]
    fn unlocking_an_unlocked_account_is_refused() {
        check(
            &[],
            CredentialsCommand::Unlock,
            Err(CredentialsError::NotLocked),
        );
    }

    // ---- passkeys ----------------------------------------------------------------------------

    fn registered(credential: &str, counter: u32) -> CredentialsEvent {
        CredentialsEvent::PasskeyRegistered(PasskeyRegistered {
            credential: credential.into(),
            name: "Laptop".into(),
            public_key: "{}".into(),
            counter,
            at: NOW,
        })
    }

    fn register(credential: &str, codes: Vec<BlindIndex>) -> CredentialsCommand {
        CredentialsCommand::RegisterPasskey {
            credential: credential.into(),
            name: "Laptop".into(),
            public_key: "{}".into(),
            counter: 0,
            now: NOW,
            recovery_codes: codes,
        }
    }

    fn used(credential: &str, counter: u32, started: OffsetDateTime) -> CredentialsEvent {
        CredentialsEvent::PasskeyUsed(PasskeyUsed {
            credential: credential.into(),
            counter,
            at: started + Duration::seconds(5),
            ceremony_started_at: started,
        })
    }

    fn use_passkey(credential: &str, counter: u32, started: OffsetDateTime) -> CredentialsCommand {
        CredentialsCommand::UsePasskey {
            credential: credential.into(),
            counter,
            ceremony_started_at: started,
            now: started + Duration::seconds(5),
        }
    }

    #[test]
    fn a_first_passkey_brings_recovery_codes_and_a_second_keeps_them() {
        check(
            &[],
            register("A", vec![index(7)]),
            Ok(vec![
                registered("A", 0),
                CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                    codes: vec![index(7)],
                }),
            ]),
        );
        check(
            &[registered("A", 0)],
            register("B", vec![index(8)]),
            Ok(vec![CredentialsEvent::PasskeyRegistered(
                PasskeyRegistered {
                    credential: "B".into(),
                    name: "Laptop".into(),
                    public_key: "{}".into(),
                    counter: 0,
                    at: NOW,
                },
            )]),
        );
    }

    #[test]
    fn a_passkey_is_registered_once() {
        check(
            &[registered("A", 0)],
            register("A", vec![]),
            Err(CredentialsError::PasskeyAlreadyRegistered),
        );
    }

    #[test]
    fn a_person_holds_a_bounded_number_of_passkeys() {
        let given: Vec<_> = (0..MAX_PASSKEYS)
            .map(|n| registered(&format!("K{n}"), 0))
            .collect();
        check(
            &given,
            register("more", vec![]),
            Err(CredentialsError::TooManyPasskeys),
        );
    }

    #[test]
    fn an_unknown_passkey_cannot_sign_in() {
        check(
            &[registered("A", 0)],
            use_passkey("B", 1, NOW),
            Err(CredentialsError::UnknownPasskey),
        );
    }

    #[test]
    fn a_counter_must_grow_and_a_counter_that_goes_back_is_refused() {
        let given = [registered("A", 3), used("A", 5, NOW)];
        check(
            &given,
            use_passkey("A", 6, NOW + Duration::minutes(1)),
            Ok(vec![used("A", 6, NOW + Duration::minutes(1))]),
        );
        for presented in [0, 4, 5] {
            check(
                &given,
                use_passkey("A", presented, NOW + Duration::minutes(1)),
                Err(CredentialsError::PasskeyCounterRegressed),
            );
        }
    }

    #[test]
    fn a_regression_is_recorded_with_both_counters_and_changes_nothing() {
        let given = [registered("A", 3), used("A", 5, NOW)];
        let record = CredentialsCommand::RecordPasskeyRegression {
            credential: "A".into(),
            presented: 2,
            now: NOW,
        };
        let regressed = CredentialsEvent::PasskeyCounterRegressed(PasskeyCounterRegressed {
            credential: "A".into(),
            stored: 5,
            presented: 2,
            at: NOW,
        });
        check(&given, record, Ok(vec![regressed.clone()]));
        let before = given.iter().fold(Credentials::default(), evolve);
        assert_eq!(evolve(before.clone(), &regressed), before);
        // The genuine authenticator, ahead of the clone, still signs in.
        let mut after = given.to_vec();
        after.push(regressed);
        check(
            &after,
            use_passkey("A", 6, NOW + Duration::minutes(1)),
            Ok(vec![used("A", 6, NOW + Duration::minutes(1))]),
        );
        // A counter that did grow is no regression.
        check(
            &given,
            CredentialsCommand::RecordPasskeyRegression {
                credential: "A".into(),
                presented: 6,
                now: NOW,
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn authenticators_without_a_counter_sign_in_again_and_again() {
        let given = [registered("A", 0), used("A", 0, NOW)];
        check(
            &given,
            use_passkey("A", 0, NOW + Duration::minutes(1)),
            Ok(vec![used("A", 0, NOW + Duration::minutes(1))]),
        );
    }

    #[test]
    fn a_ceremony_signs_in_once() {
        // Its replay, and an older ceremony finished after a newer one, are refused: each
        // challenge is good for one sign-in, even for passkeys without a counter.
        let given = [registered("A", 0), used("A", 0, NOW)];
        check(
            &given,
            use_passkey("A", 0, NOW),
            Err(CredentialsError::PasskeyCeremonySpent),
        );
        check(
            &given,
            use_passkey("A", 0, NOW - Duration::seconds(30)),
            Err(CredentialsError::PasskeyCeremonySpent),
        );
    }

    #[test]
    fn removing_the_last_second_factor_takes_the_recovery_codes_with_it() {
        let given = [
            registered("A", 0),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7)],
            }),
            registered("B", 0),
        ];
        let remove = |c: &str| CredentialsCommand::RemovePasskey {
            credential: c.into(),
        };
        let removed = |c: &str| {
            CredentialsEvent::PasskeyRemoved(PasskeyRemoved {
                credential: c.into(),
            })
        };
        check(&given, remove("C"), Err(CredentialsError::UnknownPasskey));
        check(&given, remove("A"), Ok(vec![removed("A")]));
        let one_left = evolve(
            given.iter().fold(Credentials::default(), evolve),
            &removed("A"),
        );
        assert_eq!(one_left.recovery_codes, vec![index(7)]);
        assert!(one_left.has_second_factor());
        let none_left = evolve(one_left, &removed("B"));
        assert!(none_left.recovery_codes.is_empty());
        assert!(!none_left.has_second_factor());
        assert_eq!(
            decide(
                &none_left,
                CredentialsCommand::UseRecoveryCode { index: index(7) }
            ),
            Err(CredentialsError::TotpNotEnabled)
        );
    }

    #[test]
    fn recovery_codes_work_for_a_person_with_passkeys_only() {
        let given = [
            registered("A", 0),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7)],
            }),
        ];
        check(
            &given,
            CredentialsCommand::UseRecoveryCode { index: index(7) },
            Ok(vec![CredentialsEvent::RecoveryCodeUsed(RecoveryCodeUsed {
                code: index(7),
            })]),
        );
    }

    #[test]
    fn turning_totp_off_keeps_the_codes_of_remaining_passkeys() {
        let given = [
            CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
                secret: sealed('T'),
            }),
            CredentialsEvent::TotpEnabled(TotpEnabled { step: 1 }),
            CredentialsEvent::RecoveryCodesGenerated(RecoveryCodesGenerated {
                codes: vec![index(7)],
            }),
            registered("A", 0),
            CredentialsEvent::TotpDisabled(TotpDisabled {}),
        ];
        let state = given.iter().fold(Credentials::default(), evolve);
        assert_eq!(state.recovery_codes, vec![index(7)]);
    }

    #[test]
    fn a_reset_removes_every_second_factor() {
        let given = [
            CredentialsEvent::TotpEnrolmentStarted(TotpEnrolmentStarted {
                secret: sealed('T'),
            }),
            CredentialsEvent::TotpEnabled(TotpEnabled { step: 1 }),
            registered("A", 0),
            registered("B", 0),
        ];
        let then = vec![
            CredentialsEvent::PasskeyRemoved(PasskeyRemoved {
                credential: "A".into(),
            }),
            CredentialsEvent::PasskeyRemoved(PasskeyRemoved {
                credential: "B".into(),
            }),
            CredentialsEvent::TotpDisabled(TotpDisabled {}),
        ];
        check(&given, CredentialsCommand::ResetFactors, Ok(then.clone()));
        let state = given
            .iter()
            .chain(&then)
            .fold(Credentials::default(), evolve);
        assert!(!state.has_second_factor());
        assert!(state.recovery_codes.is_empty());
        check(
            &[],
            CredentialsCommand::ResetFactors,
            Err(CredentialsError::NoSecondFactor),
        );
    }

    proptest::proptest! {
        /// Whatever order of uses, the stored counter is the highest one accepted, and a use is
        /// accepted exactly when its counter is above it (or both are 0) and its ceremony is
        /// newer than the last accepted one.
        #[test]
        fn the_passkey_state_machine_accepts_exactly_the_fresh_uses(
            attempts in proptest::collection::vec((0u32..6, 0i64..6), 0..24),
        ) {
            let mut state = [registered("A", 0)].iter().fold(Credentials::default(), evolve);
            let mut highest = 0u32;
            let mut last: Option<OffsetDateTime> = None;
            for (counter, minute) in attempts {
                let started = NOW + Duration::minutes(minute);
                let fresh = last.is_none_or(|last| started > last);
                let grows = !(highest > 0 || counter > 0) || counter > highest;
                match decide(&state, use_passkey("A", counter, started)) {
                    Ok(events) => {
                        proptest::prop_assert!(fresh && grows);
                        state = events.iter().fold(state, evolve);
                        highest = counter;
                        last = Some(started);
                    }
                    Err(CredentialsError::PasskeyCeremonySpent) => proptest::prop_assert!(!fresh),
                    Err(CredentialsError::PasskeyCounterRegressed) => {
                        proptest::prop_assert!(fresh && !grows)
                    }
                    Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
                }
                proptest::prop_assert_eq!(state.passkeys[0].counter, highest);
            }
        }
    }
}
