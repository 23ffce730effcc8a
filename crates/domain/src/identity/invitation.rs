//! The invitation aggregate: an emailed, single-use, time-limited offer to join a tenant with the
//! roles chosen at invite time (tenant-scoped; its id is a ULID).
//!
//! Status: sent → accepted | revoked, and *expired* when read after `expires_at` (a time-based
//! status is answered at query time, not recorded). Resending replaces the token (the old one is
//! dead at once) and restarts the expiry. Accepting is an append with the invitation's expected
//! sequence, so of two concurrent accepts of one token exactly one succeeds.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

pub use crate::events::InvitationDelivery;
use crate::events::{InvitationAccepted, InvitationResent, InvitationRevoked, InvitationSent};
use crate::ids::{RoleName, UserId};
use crate::secret::BlindIndex;

/// Shortest and longest invitation lifetimes a tenant may configure.
pub const MIN_LIFETIME: Duration = Duration::minutes(15);
pub const MAX_LIFETIME: Duration = Duration::days(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvitationStatus {
    #[default]
    Absent,
    Sent,
    Accepted,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invitation {
    pub status: InvitationStatus,
    pub user: Option<UserId>,
    pub roles: BTreeSet<RoleName>,
    pub token: Option<BlindIndex>,
    pub expires_at: Option<OffsetDateTime>,
    /// How its link reaches the invitee (a resend delivers the same way).
    pub delivery: InvitationDelivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationCommand {
    Send {
        user: UserId,
        roles: BTreeSet<RoleName>,
        token: BlindIndex,
        now: OffsetDateTime,
        lifetime: Duration,
        delivery: InvitationDelivery,
    },
    Resend {
        token: BlindIndex,
        now: OffsetDateTime,
        lifetime: Duration,
    },
    Accept {
        token: BlindIndex,
        now: OffsetDateTime,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationEvent {
    Sent(InvitationSent),
    Resent(InvitationResent),
    Accepted(InvitationAccepted),
    Revoked(InvitationRevoked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    #[error("this invitation already exists")]
    AlreadyExists,
    #[error("no such invitation")]
    NotFound,
    /// Unknown, superseded, expired, accepted or revoked: one answer to whoever holds a token.
    #[error("the invitation is invalid or has expired")]
    InvalidToken,
    #[error("the invitation was already accepted")]
    AlreadyAccepted,
    #[error("the invitation was revoked")]
    Revoked,
    #[error("an invitation lives between 15 minutes and 30 days")]
    InvalidLifetime,
    #[error("an invitation gives at least one role")]
    NoRoles,
}

fn lifetime_ok(lifetime: Duration) -> Result<(), InvitationError> {
    if (MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        Ok(())
    } else {
        Err(InvitationError::InvalidLifetime)
    }
}

pub fn decide(
    state: &Invitation,
    command: InvitationCommand,
) -> Result<Vec<InvitationEvent>, InvitationError> {
    match command {
        InvitationCommand::Send {
            user,
            roles,
            token,
            now,
            lifetime,
            delivery,
        } => {
            if state.status != InvitationStatus::Absent {
                return Err(InvitationError::AlreadyExists);
            }
            lifetime_ok(lifetime)?;
            if roles.is_empty() {
                return Err(InvitationError::NoRoles);
            }
            Ok(vec![InvitationEvent::Sent(InvitationSent {
                user,
                roles,
                token,
                expires_at: now + lifetime,
                delivery,
            })])
        }
        InvitationCommand::Resend {
            token,
            now,
            lifetime,
        } => {
            match state.status {
                InvitationStatus::Absent => return Err(InvitationError::NotFound),
                InvitationStatus::Accepted => return Err(InvitationError::AlreadyAccepted),
                InvitationStatus::Revoked => return Err(InvitationError::Revoked),
                InvitationStatus::Sent => {}
            }
            lifetime_ok(lifetime)?;
            Ok(vec![InvitationEvent::Resent(InvitationResent {
                token,
                expires_at: now + lifetime,
            })])
        }
        InvitationCommand::Accept { token, now } => {
            let live = state.status == InvitationStatus::Sent
                && state.token.as_ref() == Some(&token)
                && state.expires_at.is_some_and(|end| now < end);
            if !live {
                return Err(InvitationError::InvalidToken);
            }
            Ok(vec![InvitationEvent::Accepted(InvitationAccepted {})])
        }
        InvitationCommand::Revoke => match state.status {
            InvitationStatus::Absent => Err(InvitationError::NotFound),
            InvitationStatus::Accepted => Err(InvitationError::AlreadyAccepted),
            InvitationStatus::Revoked => Ok(vec![]),
            InvitationStatus::Sent => Ok(vec![InvitationEvent::Revoked(InvitationRevoked {})]),
        },
    }
}

pub fn evolve(mut state: Invitation, event: &InvitationEvent) -> Invitation {
    match event {
        InvitationEvent::Sent(e) => {
            state.status = InvitationStatus::Sent;
            state.user = Some(e.user);
            state.roles = e.roles.clone();
            state.token = Some(e.token.clone());
            state.expires_at = Some(e.expires_at);
            state.delivery = e.delivery;
        }
        InvitationEvent::Resent(e) => {
            state.token = Some(e.token.clone());
            state.expires_at = Some(e.expires_at);
        }
        InvitationEvent::Accepted(_) => state.status = InvitationStatus::Accepted,
        InvitationEvent::Revoked(_) => state.status = InvitationStatus::Revoked,
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

    fn sent() -> InvitationEvent {
        InvitationEvent::Sent(InvitationSent {
            user: "01J00000000000000000000001".parse().unwrap(),
            roles: [RoleName::user()].into(),
            token: index(1),
            expires_at: NOW + Duration::days(7),
            delivery: InvitationDelivery::Email,
        })
    }

    fn accept(byte: u8, now: OffsetDateTime) -> InvitationCommand {
        InvitationCommand::Accept {
            token: index(byte),
            now,
        }
    }

    #[test]
    fn sending_needs_roles_and_a_sane_lifetime() {
        let send = |roles: BTreeSet<RoleName>, lifetime| InvitationCommand::Send {
            user: "01J00000000000000000000001".parse().unwrap(),
            roles,
            token: index(1),
            now: NOW,
            lifetime,
            delivery: InvitationDelivery::Email,
        };
        check(
            &[],
            send([RoleName::user()].into(), Duration::days(7)),
            Ok(vec![sent()]),
        );
        check(
            &[],
            send(BTreeSet::new(), Duration::days(7)),
            Err(InvitationError::NoRoles),
        );
        check(
            &[],
            send([RoleName::user()].into(), Duration::days(31)),
            Err(InvitationError::InvalidLifetime),
        );
        check(
            &[sent()],
            send([RoleName::user()].into(), Duration::days(7)),
            Err(InvitationError::AlreadyExists),
        );
    }

    #[test]
    fn an_invitation_remembers_how_its_link_is_delivered() {
        let by_link = InvitationCommand::Send {
            user: "01J00000000000000000000001".parse().unwrap(),
            roles: [RoleName::user()].into(),
            token: index(1),
            now: NOW,
            lifetime: Duration::days(7),
            delivery: InvitationDelivery::Link,
        };
        let events = decide(&Invitation::default(), by_link).unwrap();
        let InvitationEvent::Sent(sent) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(sent.delivery, InvitationDelivery::Link);
        let state = events.iter().fold(Invitation::default(), evolve);
        assert_eq!(state.delivery, InvitationDelivery::Link);
        // A resend keeps the delivery (the resent event does not change it).
        let resent = decide(
            &state,
            InvitationCommand::Resend {
                token: index(2),
                now: NOW,
                lifetime: Duration::days(7),
            },
        )
        .unwrap();
        let state = resent.iter().fold(state, evolve);
        assert_eq!(state.delivery, InvitationDelivery::Link);
        assert_eq!(state.token, Some(index(2)));
    }

    #[test]
    fn a_token_is_accepted_once_and_only_before_it_expires() {
        check(
            &[sent()],
            accept(1, NOW),
            Ok(vec![InvitationEvent::Accepted(InvitationAccepted {})]),
        );
        check(
            &[sent(), InvitationEvent::Accepted(InvitationAccepted {})],
            accept(1, NOW),
            Err(InvitationError::InvalidToken),
        );
        check(
            &[sent()],
            accept(1, NOW + Duration::days(7)),
            Err(InvitationError::InvalidToken),
        );
        check(
            &[sent()],
            accept(2, NOW),
            Err(InvitationError::InvalidToken),
        );
        check(&[], accept(1, NOW), Err(InvitationError::InvalidToken));
    }

    #[test]
    fn resending_kills_the_old_token_and_restarts_the_clock() {
        let resent = InvitationEvent::Resent(InvitationResent {
            token: index(2),
            expires_at: NOW + Duration::days(13),
        });
        check(
            &[sent()],
            InvitationCommand::Resend {
                token: index(2),
                now: NOW + Duration::days(6),
                lifetime: Duration::days(7),
            },
            Ok(vec![resent.clone()]),
        );
        let given = [sent(), resent];
        check(&given, accept(1, NOW), Err(InvitationError::InvalidToken));
        check(
            &given,
            accept(2, NOW + Duration::days(8)),
            Ok(vec![InvitationEvent::Accepted(InvitationAccepted {})]),
        );
    }

    #[test]
    fn a_revoked_invitation_cannot_be_accepted_or_resent() {
        let given = [sent(), InvitationEvent::Revoked(InvitationRevoked {})];
        check(&given, accept(1, NOW), Err(InvitationError::InvalidToken));
        check(
            &given,
            InvitationCommand::Resend {
                token: index(2),
                now: NOW,
                lifetime: Duration::days(7),
            },
            Err(InvitationError::Revoked),
        );
        check(&given, InvitationCommand::Revoke, Ok(vec![]));
        check(
            &[sent(), InvitationEvent::Accepted(InvitationAccepted {})],
            InvitationCommand::Revoke,
            Err(InvitationError::AlreadyAccepted),
        );
    }
}
