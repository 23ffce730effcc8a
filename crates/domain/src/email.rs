//! The email-claim aggregate: makes "one user per email address" hold across service replicas.
//!
//! Its id is a keyed hash of the normalised address ([`keyed_claim_id`]: HMAC-SHA-256 under the
//! service's index key, which is not in the log), so concurrent claims of one address meet on one
//! log subject and optimistic concurrency lets exactly one win, while someone who reads the log
//! cannot confirm a guessed address (not even of an erased user). Claims made before were named by
//! an unkeyed hash ([`claim_id`]); the service no longer makes such claims, but one that is still
//! held keeps its address taken, and is released like a keyed one. A claim is taken first, then the user
//! is created. If a process dies between the two, the claim is *stale*: older than [`CLAIM_TTL`]
//! and its user never created. A stale claim may be taken over, so the address is not lost.
//! The claimer must create its user within [`CLAIM_DEADLINE`] of its claim, well before anyone
//! may take it over, or give up.

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::events::{EmailClaimed, EmailReleased};
use crate::ids::UserId;
use crate::secret::BlindIndex;

/// After this long without its user, a claim may be taken over.
pub const CLAIM_TTL: Duration = Duration::seconds(30);
/// The claimer gives up if it cannot append its user event within this time of claiming.
pub const CLAIM_DEADLINE: Duration = Duration::seconds(10);

/// The legacy aggregate id of the claim for a normalised email address: the first 16 bytes of
/// its SHA-256, in hex. Anyone can compute it, so the service names new claims with
/// [`keyed_claim_id`] instead and only reads (and releases) these.
pub fn claim_id(normalized_email: &str) -> String {
    let digest = Sha256::digest(normalized_email.as_bytes());
    hex::encode(&digest[..16])
}

/// The purpose under which the service blind-indexes a normalised address to name its claim.
pub const CLAIM_INDEX_PURPOSE: &str = "email-claim";

/// The aggregate id of the claim for an address, from the address's blind index under
/// [`CLAIM_INDEX_PURPOSE`] (HMAC-SHA-256 under the service's index key): its first 16 bytes, in
/// hex, the same shape as a legacy [`claim_id`].
pub fn keyed_claim_id(index: &BlindIndex) -> String {
    index.as_str()[..32].to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailClaim {
    pub holder: Option<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub user: UserId,
    pub claimed_at: OffsetDateTime,
    pub request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaimCommand {
    Claim {
        user: UserId,
        request: Option<String>,
        now: OffsetDateTime,
        /// Whether the current holder's user exists in the log (read by the application).
        holder_exists: bool,
    },
    /// The holder gave the address up (changed their email): anyone may claim it now.
    Release { user: UserId },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaimEvent {
    Claimed(EmailClaimed),
    Released(EmailReleased),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailClaimError {
    #[error("this email address belongs to another user")]
    Taken { holder: UserId },
}

pub fn decide(
    state: &EmailClaim,
    command: EmailClaimCommand,
) -> Result<Vec<EmailClaimEvent>, EmailClaimError> {
    match command {
        EmailClaimCommand::Claim {
            user,
            request,
            now,
            holder_exists,
        } => {
            if let Some(holder) = &state.holder {
                // An existing user claiming an address they hold already (an email change
                // retried): nothing to do.
                if holder.user == user {
                    return Ok(vec![]);
                }
                let stale = !holder_exists && now >= holder.claimed_at + CLAIM_TTL;
                if !stale {
                    return Err(EmailClaimError::Taken {
                        holder: holder.user,
                    });
                }
            }
            Ok(vec![EmailClaimEvent::Claimed(EmailClaimed {
                user,
                claimed_at: now,
                request,
            })])
        }
        EmailClaimCommand::Release { user } => match &state.holder {
            Some(holder) if holder.user == user => {
                Ok(vec![EmailClaimEvent::Released(EmailReleased { user })])
            }
            _ => Ok(vec![]),
        },
    }
}

pub fn evolve(mut state: EmailClaim, event: &EmailClaimEvent) -> EmailClaim {
    match event {
        EmailClaimEvent::Claimed(e) => {
            state.holder = Some(Holder {
                user: e.user,
                claimed_at: e.claimed_at,
                request: e.request.clone(),
            })
        }
        EmailClaimEvent::Released(_) => state.holder = None,
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

    fn user(n: u64) -> UserId {
        UserId::new(Ulid::from_parts(n, n as u128))
    }

    fn claimed(n: u64, at: OffsetDateTime) -> EmailClaimEvent {
        EmailClaimEvent::Claimed(EmailClaimed {
            user: user(n),
            claimed_at: at,
            request: None,
        })
    }

    fn claim(n: u64, now: OffsetDateTime, holder_exists: bool) -> EmailClaimCommand {
        EmailClaimCommand::Claim {
            user: user(n),
            request: None,
            now,
            holder_exists,
        }
    }

    #[test]
    fn a_free_address_is_claimed() {
        check(&[], claim(1, T0, false), Ok(vec![claimed(1, T0)]));
    }

    #[test]
    fn an_address_whose_user_exists_stays_taken() {
        check(
            &[claimed(1, T0)],
            claim(2, T0 + Duration::days(9), true),
            Err(EmailClaimError::Taken { holder: user(1) }),
        );
    }

    #[test]
    fn a_fresh_claim_is_respected_even_before_its_user_exists() {
        check(
            &[claimed(1, T0)],
            claim(2, T0 + Duration::seconds(5), false),
            Err(EmailClaimError::Taken { holder: user(1) }),
        );
    }

    #[test]
    fn a_stale_claim_whose_user_never_appeared_is_taken_over() {
        let later = T0 + CLAIM_TTL;
        check(
            &[claimed(1, T0)],
            claim(2, later, false),
            Ok(vec![claimed(2, later)]),
        );
    }

    #[test]
    fn claim_ids_are_stable_hex_and_case_is_the_callers_business() {
        assert_eq!(claim_id("ada@example.com"), claim_id("ada@example.com"));
        assert_ne!(claim_id("ada@example.com"), claim_id("bob@example.com"));
        assert_eq!(claim_id("ada@example.com").len(), 32);
    }

    #[test]
    fn keyed_claim_ids_are_the_start_of_the_blind_index() {
        let index = BlindIndex::from_bytes(&[0xab; 32]);
        assert_eq!(keyed_claim_id(&index), "ab".repeat(16));
        assert_eq!(keyed_claim_id(&index).len(), claim_id("a@b.c").len());
    }

    #[test]
    fn the_deadline_is_well_inside_the_ttl() {
        assert!(CLAIM_DEADLINE * 2 < CLAIM_TTL);
    }

    #[test]
    fn a_released_address_is_free_and_a_holder_claims_again_idempotently() {
        check(&[claimed(1, T0)], claim(1, T0, true), Ok(vec![]));
        let released = EmailClaimEvent::Released(EmailReleased { user: user(1) });
        check(
            &[claimed(1, T0)],
            EmailClaimCommand::Release { user: user(1) },
            Ok(vec![released.clone()]),
        );
        check(
            &[claimed(1, T0)],
            EmailClaimCommand::Release { user: user(2) },
            Ok(vec![]),
        );
        check(
            &[claimed(1, T0), released],
            claim(2, T0, true),
            Ok(vec![claimed(2, T0)]),
        );
    }
}
