//! The admin guard: one per tenant, it keeps the last administrator of a tenant (F-AZ-7) across
//! service replicas.
//!
//! Whether a tenant keeps an administrator depends on many aggregates (every membership, every
//! user's status), so no single aggregate's expected sequence can protect it. Instead, every
//! command that takes a user's administrator standing away (revoking `admin` or `owner`, removing
//! the member, deactivating or erasing the user) first *reserves* that removal here, deciding
//! from the directory's list of the other administrators minus the removals still in flight; the
//! reservation is appended with this aggregate's expected sequence, so two such commands racing
//! on two replicas meet here and the second one decides again, seeing the first. The command
//! then appends its own event and *settles* the reservation.
//!
//! A reservation counts as in flight until it is settled or [`RESERVATION_TTL`] has passed. The
//! reserver must append its own event within [`RESERVATION_DEADLINE`] of reserving, well before
//! the reservation expires, or give up; so a process that dies between the two steps leaves a
//! reservation that only makes the rule stricter for a while, never looser.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use crate::events::{AdminRemovalReserved, AdminRemovalSettled};
use crate::ids::UserId;

/// An unsettled reservation stops counting as in flight after this long.
pub const RESERVATION_TTL: Duration = Duration::seconds(30);
/// The reserver gives up unless it can append its own event within this time of reserving.
pub const RESERVATION_DEADLINE: Duration = Duration::seconds(10);

/// The guard's state: how many events it has (so a decision can name the state it was based on)
/// and the reservations not yet settled, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminGuard {
    pub version: u64,
    pub pending: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub user: UserId,
    pub reserved_at: OffsetDateTime,
}

impl AdminGuard {
    /// The users whose administrator standing is being taken away at `now`: reserved, not
    /// settled, not expired.
    pub fn in_flight(&self, now: OffsetDateTime) -> BTreeSet<UserId> {
        self.pending
            .iter()
            .filter(|r| now < r.reserved_at + RESERVATION_TTL)
            .map(|r| r.user)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminGuardCommand {
    Reserve {
        user: UserId,
        now: OffsetDateTime,
        /// The guard's version the facts below were read after.
        seen: u64,
        /// Other administrators of the tenant (not `user`), from the directory read after the
        /// guard at version `seen`. Need not be complete: one that is not in flight is enough.
        others: BTreeSet<UserId>,
    },
    Settle {
        user: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminGuardEvent {
    Reserved(AdminRemovalReserved),
    Settled(AdminRemovalSettled),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminGuardError {
    #[error("the tenant must keep at least one administrator")]
    LastAdmin,
    /// Another removal was reserved since the facts were read: read them again and decide anew.
    #[error("the admin guard changed while the command was being decided")]
    Moved,
}

pub fn decide(
    state: &AdminGuard,
    command: AdminGuardCommand,
) -> Result<Vec<AdminGuardEvent>, AdminGuardError> {
    match command {
        AdminGuardCommand::Reserve {
            user,
            now,
            seen,
            others,
        } => {
            if state.version != seen {
                return Err(AdminGuardError::Moved);
            }
            let leaving = state.in_flight(now);
            if others.iter().all(|other| leaving.contains(other)) {
                return Err(AdminGuardError::LastAdmin);
            }
            Ok(vec![AdminGuardEvent::Reserved(AdminRemovalReserved {
                user,
                reserved_at: now,
            })])
        }
        AdminGuardCommand::Settle { user } => {
            if state.pending.iter().any(|r| r.user == user) {
                Ok(vec![AdminGuardEvent::Settled(AdminRemovalSettled { user })])
            } else {
                Ok(vec![])
            }
        }
    }
}

pub fn evolve(mut state: AdminGuard, event: &AdminGuardEvent) -> AdminGuard {
    state.version += 1;
    match event {
        AdminGuardEvent::Reserved(e) => {
            // Reservations that expired before this one was made count for nothing any more.
            state
                .pending
                .retain(|r| r.reserved_at + RESERVATION_TTL > e.reserved_at);
            state.pending.push(Reservation {
                user: e.user,
                reserved_at: e.reserved_at,
            });
        }
        AdminGuardEvent::Settled(e) => {
            if let Some(i) = state.pending.iter().position(|r| r.user == e.user) {
                state.pending.remove(i);
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use time::macros::datetime;
    use ulid::Ulid;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn user(n: u128) -> UserId {
        UserId::new(Ulid(n))
    }

    fn reserved(n: u128, at: OffsetDateTime) -> AdminGuardEvent {
        AdminGuardEvent::Reserved(AdminRemovalReserved {
            user: user(n),
            reserved_at: at,
        })
    }

    fn settled(n: u128) -> AdminGuardEvent {
        AdminGuardEvent::Settled(AdminRemovalSettled { user: user(n) })
    }

    fn reserve(n: u128, now: OffsetDateTime, seen: u64, others: &[u128]) -> AdminGuardCommand {
        AdminGuardCommand::Reserve {
            user: user(n),
            now,
            seen,
            others: others.iter().copied().map(user).collect(),
        }
    }

    #[test]
    fn a_removal_is_reserved_while_another_administrator_stays() {
        check(&[], reserve(1, T0, 0, &[2]), Ok(vec![reserved(1, T0)]));
    }

    #[test]
    fn the_last_administrator_cannot_be_removed() {
        check(&[], reserve(1, T0, 0, &[]), Err(AdminGuardError::LastAdmin));
    }

    #[test]
    fn two_concurrent_removals_of_the_last_two_cannot_both_pass() {
        // Replica A reserved removing 1, seeing 2 stay; replica B decided to remove 2 seeing 1
        // stay, on the guard before A's reservation: it must look again...
        let given = [reserved(1, T0)];
        check(&given, reserve(2, T0, 0, &[1]), Err(AdminGuardError::Moved));
        // ...and then 1 is on its way out, so 2 is the last administrator.
        check(
            &given,
            reserve(2, T0 + Duration::seconds(1), 1, &[1]),
            Err(AdminGuardError::LastAdmin),
        );
    }

    #[test]
    fn one_administrator_who_is_not_leaving_is_enough() {
        check(
            &[reserved(1, T0)],
            reserve(2, T0, 1, &[1, 3]),
            Ok(vec![reserved(2, T0)]),
        );
    }

    #[test]
    fn a_settled_removal_is_no_longer_in_flight() {
        // Once settled, the directory the facts come from shows the removal itself.
        check(
            &[reserved(1, T0), settled(1)],
            reserve(2, T0, 2, &[3]),
            Ok(vec![reserved(2, T0)]),
        );
    }

    #[test]
    fn an_unsettled_reservation_expires() {
        // Its reserver died before appending its own event: after the TTL the directory, which
        // still lists 1 as an administrator, is right again.
        let given = [reserved(1, T0)];
        check(
            &given,
            reserve(2, T0 + RESERVATION_TTL - Duration::seconds(1), 1, &[1]),
            Err(AdminGuardError::LastAdmin),
        );
        check(
            &given,
            reserve(2, T0 + RESERVATION_TTL, 1, &[1]),
            Ok(vec![reserved(2, T0 + RESERVATION_TTL)]),
        );
    }

    #[test]
    fn settling_what_is_not_pending_does_nothing() {
        check(&[], AdminGuardCommand::Settle { user: user(1) }, Ok(vec![]));
        check(
            &[reserved(1, T0)],
            AdminGuardCommand::Settle { user: user(1) },
            Ok(vec![settled(1)]),
        );
    }

    #[test]
    fn settling_one_of_two_reservations_of_a_user_keeps_the_other() {
        let state = [reserved(1, T0), reserved(1, T0), settled(1)]
            .iter()
            .fold(AdminGuard::default(), evolve);
        assert_eq!(state.in_flight(T0), BTreeSet::from([user(1)]));
        assert_eq!(state.version, 3);
    }

    #[test]
    fn expired_reservations_are_dropped_from_the_state() {
        let state = [reserved(1, T0), reserved(2, T0 + RESERVATION_TTL)]
            .iter()
            .fold(AdminGuard::default(), evolve);
        assert_eq!(state.pending.len(), 1);
        assert_eq!(state.pending[0].user, user(2));
    }
}
