//! The user aggregate: one identity across tenants and its lifecycle
//! (invited → active, suspended optionally until a time, reinstated).

use time::OffsetDateTime;

use crate::events::{UserInvited, UserRegistered, UserReinstated, UserSuspended};
use crate::ids::TenantId;

/// Longest first or last name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// The user does not exist yet.
    #[default]
    Absent,
    Invited,
    Active,
    Suspended {
        until: Option<OffsetDateTime>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub status: Status,
    pub email: String,
}

impl User {
    pub fn exists(&self) -> bool {
        self.status != Status::Absent
    }
}

/// The profile given when a user is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub tenant: TenantId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create an active user.
    Register(NewUser),
    /// Create a user who must accept an invitation first.
    Invite(NewUser),
    Suspend {
        until: Option<OffsetDateTime>,
        reason: Option<String>,
        now: OffsetDateTime,
    },
    Reinstate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Registered(UserRegistered),
    Invited(UserInvited),
    Suspended(UserSuspended),
    Reinstated(UserReinstated),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("this user already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("the email address is not valid")]
    InvalidEmail,
    #[error(
        "first and last names are at most {MAX_NAME_CHARS} characters without control characters"
    )]
    InvalidName,
    #[error("the user is already suspended")]
    AlreadySuspended,
    #[error("the user is not suspended")]
    NotSuspended,
    #[error("a suspension must end in the future")]
    SuspensionInThePast,
    #[error("a suspension reason is at most 500 characters")]
    InvalidReason,
}

/// Normalises an email address (trimmed, lower-case) and checks its shape. Deliverability is
/// proven by verification, not by parsing, so the check is deliberately plain: one `@`, a
/// non-empty local part, a dotted domain, no whitespace or control characters.
pub fn normalize_email(raw: &str) -> Result<String, UserError> {
    let email = raw.trim().to_lowercase();
    let Some((local, domain)) = email.split_once('@') else {
        return Err(UserError::InvalidEmail);
    };
    let well_formed = !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !domain.contains("..")
        && email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(email)
    } else {
        Err(UserError::InvalidEmail)
    }
}

fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(UserError::InvalidName);
    }
    Ok(name.to_owned())
}

fn profile(new: NewUser) -> Result<(String, String, String, TenantId), UserError> {
    Ok((
        normalize_email(&new.email)?,
        valid_name(&new.first_name)?,
        valid_name(&new.last_name)?,
        new.tenant,
    ))
}

/// Whether a suspension is in force at `now` (a timed suspension lapses by itself).
pub fn is_suspended_at(status: Status, now: OffsetDateTime) -> bool {
    match status {
        Status::Suspended { until: None } => true,
        Status::Suspended { until: Some(end) } => now < end,
        _ => false,
    }
}

pub fn decide(state: &User, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    match command {
        UserCommand::Register(new) => {
            if state.exists() {
                return Err(UserError::AlreadyExists);
            }
            let (email, first_name, last_name, tenant) = profile(new)?;
            Ok(vec![UserEvent::Registered(UserRegistered {
                email,
                first_name,
                last_name,
                tenant,
            })])
        }
        UserCommand::Invite(new) => {
            if state.exists() {
                return Err(UserError::AlreadyExists);
            }
            let (email, first_name, last_name, tenant) = profile(new)?;
            Ok(vec![UserEvent::Invited(UserInvited {
                email,
                first_name,
                last_name,
                tenant,
            })])
        }
        UserCommand::Suspend { until, reason, now } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            if is_suspended_at(state.status, now) {
                return Err(UserError::AlreadySuspended);
            }
            if until.is_some_and(|end| end <= now) {
                return Err(UserError::SuspensionInThePast);
            }
            let reason = reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty());
            if reason
                .as_ref()
                .is_some_and(|r| r.chars().count() > 500 || r.chars().any(char::is_control))
            {
                return Err(UserError::InvalidReason);
            }
            Ok(vec![UserEvent::Suspended(UserSuspended { until, reason })])
        }
        UserCommand::Reinstate => match state.status {
            Status::Absent => Err(UserError::NotFound),
            // A lapsed timed suspension is still lifted explicitly so the record says so.
            Status::Suspended { .. } => Ok(vec![UserEvent::Reinstated(UserReinstated {})]),
            _ => Err(UserError::NotSuspended),
        },
    }
}

pub fn evolve(mut state: User, event: &UserEvent) -> User {
    match event {
        UserEvent::Registered(e) => {
            state.status = Status::Active;
            state.email = e.email.clone();
        }
        UserEvent::Invited(e) => {
            state.status = Status::Invited;
            state.email = e.email.clone();
        }
        UserEvent::Suspended(e) => state.status = Status::Suspended { until: e.until },
        // Reinstating returns the user to active; an invited user who was suspended before
        // accepting is active afterwards only once the invitation flow activates them, which the
        // identity issue adds. Until then reinstatement means active.
        UserEvent::Reinstated(_) => state.status = Status::Active,
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[track_caller]
    fn check(given: &[UserEvent], when: UserCommand, then: Result<Vec<UserEvent>, UserError>) {
        let state = given.iter().fold(User::default(), evolve);
        assert_eq!(decide(&state, when), then);
    }

    fn new_user(email: &str) -> NewUser {
        NewUser {
            email: email.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        }
    }

    fn registered() -> UserEvent {
        UserEvent::Registered(UserRegistered {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        })
    }

    fn suspended(until: Option<OffsetDateTime>) -> UserEvent {
        UserEvent::Suspended(UserSuspended {
            until,
            reason: None,
        })
    }

    fn suspend(until: Option<OffsetDateTime>) -> UserCommand {
        UserCommand::Suspend {
            until,
            reason: None,
            now: NOW,
        }
    }

    #[test]
    fn registering_normalises_the_email() {
        check(
            &[],
            UserCommand::Register(new_user("  Ada@Example.COM ")),
            Ok(vec![registered()]),
        );
    }

    #[test]
    fn an_invited_user_starts_invited() {
        let state = [UserEvent::Invited(UserInvited {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        })]
        .iter()
        .fold(User::default(), evolve);
        assert_eq!(state.status, Status::Invited);
    }

    #[test]
    fn a_malformed_email_is_rejected() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@example..com",
        ] {
            check(
                &[],
                UserCommand::Register(new_user(bad)),
                Err(UserError::InvalidEmail),
            );
        }
    }

    #[test]
    fn a_user_cannot_be_created_twice() {
        check(
            &[registered()],
            UserCommand::Invite(new_user("ada@example.com")),
            Err(UserError::AlreadyExists),
        );
    }

    #[test]
    fn an_active_user_can_be_suspended_until_a_time() {
        let until = Some(datetime!(2026-03-08 12:00 UTC));
        check(&[registered()], suspend(until), Ok(vec![suspended(until)]));
    }

    #[test]
    fn a_suspension_that_ends_in_the_past_is_rejected() {
        check(
            &[registered()],
            suspend(Some(datetime!(2026-02-01 0:00 UTC))),
            Err(UserError::SuspensionInThePast),
        );
    }

    #[test]
    fn a_suspended_user_cannot_be_suspended_again() {
        check(
            &[registered(), suspended(None)],
            suspend(None),
            Err(UserError::AlreadySuspended),
        );
    }

    #[test]
    fn a_lapsed_suspension_does_not_block_a_new_one() {
        let lapsed = suspended(Some(datetime!(2026-02-01 0:00 UTC)));
        check(
            &[registered(), lapsed],
            suspend(None),
            Ok(vec![suspended(None)]),
        );
    }

    #[test]
    fn a_suspended_user_is_reinstated() {
        check(
            &[registered(), suspended(None)],
            UserCommand::Reinstate,
            Ok(vec![UserEvent::Reinstated(UserReinstated {})]),
        );
    }

    #[test]
    fn an_active_user_cannot_be_reinstated() {
        check(
            &[registered()],
            UserCommand::Reinstate,
            Err(UserError::NotSuspended),
        );
    }

    #[test]
    fn a_missing_user_cannot_be_suspended() {
        check(&[], suspend(None), Err(UserError::NotFound));
    }

    #[test]
    fn timed_suspensions_lapse_by_themselves() {
        let status = Status::Suspended {
            until: Some(datetime!(2026-03-02 0:00 UTC)),
        };
        assert!(is_suspended_at(status, NOW));
        assert!(!is_suspended_at(status, datetime!(2026-03-02 0:00 UTC)));
    }
}
