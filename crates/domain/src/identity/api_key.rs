//! The API-key aggregate (tenant-scoped; its id is the ULID printed in the key,
//! `ids_<ulid>_<secret>`). A key acts for its owner in its tenant, optionally restricted to a
//! subset of permissions: a check is the intersection of the restriction and what the owner holds
//! *now*, so a key never has more than its owner. Only the secret's blind index is recorded.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::access::model::Permission;
use crate::events::{ApiKeyIssued, ApiKeyRevoked, ApiKeyUsed};
use crate::ids::UserId;
use crate::secret::BlindIndex;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Use is recorded at most this often per key (last-used-at is minute-accurate), so that busy
/// keys do not flood the log.
pub const USE_RECORD_INTERVAL: time::Duration = time::Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKeyStatus {
    #[default]
    Absent,
    Active,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiKey {
    pub status: ApiKeyStatus,
    pub owner: Option<UserId>,
    pub secret: Option<BlindIndex>,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyCommand {
    Issue {
        owner: UserId,
        name: String,
        secret: BlindIndex,
        expires_at: Option<OffsetDateTime>,
        restriction: Option<BTreeSet<Permission>>,
        now: OffsetDateTime,
    },
    Revoke,
    /// Records a use (throttled to [`USE_RECORD_INTERVAL`]).
    RecordUse {
        now: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyEvent {
    Issued(ApiKeyIssued),
    Revoked(ApiKeyRevoked),
    Used(ApiKeyUsed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("this API key already exists")]
    AlreadyExists,
    #[error("no such API key")]
    NotFound,
    #[error(
        "an API key name is 1 to {MAX_NAME_CHARS} characters (surrounding whitespace trimmed) that show something, without control or bidirectional-formatting characters (U+202A-U+202E, U+2066-U+2069)"
    )]
    InvalidName,
    #[error("an API key must expire in the future")]
    ExpiryInThePast,
}

pub fn decide(state: &ApiKey, command: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
    match command {
        ApiKeyCommand::Issue {
            owner,
            name,
            secret,
            expires_at,
            restriction,
            now,
        } => {
            if state.status != ApiKeyStatus::Absent {
                return Err(ApiKeyError::AlreadyExists);
            }
            let name = name.trim().to_owned();
            if !crate::text::shows_something(&name)
                || name.chars().count() > MAX_NAME_CHARS
                || !crate::text::is_displayable(&name)
            {
                return Err(ApiKeyError::InvalidName);
            }
            if expires_at.is_some_and(|end| end <= now) {
                return Err(ApiKeyError::ExpiryInThePast);
            }
            Ok(vec![ApiKeyEvent::Issued(ApiKeyIssued {
                owner,
                name,
                secret,
                expires_at,
                restriction,
            })])
        }
        ApiKeyCommand::Revoke => match state.status {
            ApiKeyStatus::Absent => Err(ApiKeyError::NotFound),
            ApiKeyStatus::Revoked => Ok(vec![]),
            ApiKeyStatus::Active => Ok(vec![ApiKeyEvent::Revoked(ApiKeyRevoked {})]),
        },
        ApiKeyCommand::RecordUse { now } => {
            if state.status != ApiKeyStatus::Active {
                return Err(ApiKeyError::NotFound);
            }
            if state
                .last_used_at
                .is_some_and(|at| now - at < USE_RECORD_INTERVAL)
            {
                return Ok(vec![]);
            }
            Ok(vec![ApiKeyEvent::Used(ApiKeyUsed { at: now })])
        }
    }
}

pub fn evolve(mut state: ApiKey, event: &ApiKeyEvent) -> ApiKey {
    match event {
        ApiKeyEvent::Issued(e) => {
            state.status = ApiKeyStatus::Active;
            state.owner = Some(e.owner);
            state.secret = Some(e.secret.clone());
            state.expires_at = e.expires_at;
        }
        ApiKeyEvent::Revoked(_) => state.status = ApiKeyStatus::Revoked,
        ApiKeyEvent::Used(e) => state.last_used_at = Some(e.at),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn issue(name: &str, expires_at: Option<OffsetDateTime>) -> ApiKeyCommand {
        ApiKeyCommand::Issue {
            owner: "01J00000000000000000000001".parse().unwrap(),
            name: name.into(),
            secret: BlindIndex::from_bytes(&[1; 32]),
            expires_at,
            restriction: None,
            now: NOW,
        }
    }

    fn issued() -> ApiKeyEvent {
        ApiKeyEvent::Issued(ApiKeyIssued {
            owner: "01J00000000000000000000001".parse().unwrap(),
            name: "ci".into(),
            secret: BlindIndex::from_bytes(&[1; 32]),
            expires_at: None,
            restriction: None,
        })
    }

    #[test]
    fn issuing_checks_name_and_expiry() {
        check(&[], issue(" ci ", None), Ok(vec![issued()]));
        check(&[], issue("  ", None), Err(ApiKeyError::InvalidName));
        check(&[], issue("a\nb", None), Err(ApiKeyError::InvalidName));
        check(
            &[],
            issue("ci", Some(NOW)),
            Err(ApiKeyError::ExpiryInThePast),
        );
        check(
            &[issued()],
            issue("ci", None),
            Err(ApiKeyError::AlreadyExists),
        );
    }

    #[test]
    fn given_no_key_when_issued_with_a_bidi_override_or_an_invisible_name_then_refused() {
        for name in [
            "\u{202E}",
            "ci\u{202D}",
            "\u{2067}ci",
            "\u{200B}",
            "\u{200C} \u{200D}",
        ] {
            check(&[], issue(name, None), Err(ApiKeyError::InvalidName));
        }
    }

    #[test]
    fn uses_are_recorded_at_most_once_a_minute() {
        let used = ApiKeyEvent::Used(ApiKeyUsed { at: NOW });
        check(
            &[issued()],
            ApiKeyCommand::RecordUse { now: NOW },
            Ok(vec![used.clone()]),
        );
        check(
            &[issued(), used.clone()],
            ApiKeyCommand::RecordUse {
                now: NOW + Duration::seconds(59),
            },
            Ok(vec![]),
        );
        check(
            &[issued(), used],
            ApiKeyCommand::RecordUse {
                now: NOW + Duration::seconds(60),
            },
            Ok(vec![ApiKeyEvent::Used(ApiKeyUsed {
                at: NOW + Duration::seconds(60),
            })]),
        );
    }

    #[test]
    fn a_revoked_key_stays_revoked() {
        let given = [issued(), ApiKeyEvent::Revoked(ApiKeyRevoked {})];
        check(&given, ApiKeyCommand::Revoke, Ok(vec![]));
        check(
            &given,
            ApiKeyCommand::RecordUse { now: NOW },
            Err(ApiKeyError::NotFound),
        );
        check(&[], ApiKeyCommand::Revoke, Err(ApiKeyError::NotFound));
    }
}
