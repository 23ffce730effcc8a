//! The seat model: which users are active members of which tenant, folded from the events.
//!
//! A **seat** is an *active member* of a tenant, by the same definition the service uses when it
//! lists members (`GET /v1/tenants/{tenant}/users`, `status == "active"`) and decides access
//! checks (`idstream_domain::access::check`, rule 1):
//!
//! - the user holds a membership in the tenant: at least one role or one custom permission there
//!   (`RoleAssigned` / `PermissionsGranted` create it; `RoleRevoked`, `PermissionsRevoked` and
//!   `MemberRemoved` end it once nothing is left), and
//! - the user's status *in effect now* is active: registered, or invited and accepted
//!   (`UserActivated`); not still invited, not suspended (a suspension with an end that has passed
//!   no longer counts, exactly like `UserView::status_at`), not deactivated, not erased.
//!
//! The fold mirrors the directory read model (`projections/directory/src/fold.rs`) event by
//! event, including what it ignores: changes to users or memberships it never saw created are
//! skipped. It is deterministic and keeps no clock: the time only enters when counting.

use std::collections::{BTreeMap, BTreeSet};

use idstream_domain::events::{
    MemberRemoved, PermissionsGranted, PermissionsLapsed, PermissionsRevoked, RoleAssigned,
    RoleLapsed, RoleRevoked, UserSuspended,
};
use idstream_domain::{DecodeError, DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A user's lifecycle state as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Invited,
    Active,
    Suspended,
    /// Deactivated (left the organisation).
    Inactive,
    /// Erased (right to erasure): never active again.
    Erased,
}

/// What billing keeps about a user: only what decides whether they take a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub status: Status,
    /// End of the current suspension; `None` when not suspended or suspended indefinitely.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub suspended_until: Option<OffsetDateTime>,
    /// Registered, or invited and accepted: where a lifted suspension or deactivation returns to.
    pub activated: bool,
}

impl Account {
    /// The status in effect at `now`: a suspension whose end has passed counts as active.
    pub fn status_at(&self, now: OffsetDateTime) -> Status {
        match (self.status, self.suspended_until) {
            (Status::Suspended, Some(end)) if now >= end => Status::Active,
            (status, _) => status,
        }
    }

    fn back_from_leave(&self) -> Status {
        if self.activated {
            Status::Active
        } else {
            Status::Invited
        }
    }
}

/// A membership: the roles and custom permissions one user holds in one tenant. It exists while
/// either set is non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub roles: BTreeSet<String>,
    pub custom_permissions: BTreeSet<String>,
}

impl Member {
    fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.custom_permissions.is_empty()
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event changed (or confirmed) the seat state.
    Folded,
    /// Not a user, membership or tenant event: nothing to do.
    Irrelevant,
    /// A relevant event that could not be placed (a user never created, a membership that does
    /// not exist, an unreadable payload, an unknown version). The directory skips the same
    /// events, so the counts still agree with the service; the reason is worth a warning.
    Skipped(String),
}

/// The seat state of every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    /// Every tenant ever created, so a tenant with no seat is listed with 0.
    pub tenants: BTreeSet<String>,
    /// User id → account.
    pub users: BTreeMap<String, Account>,
    /// Tenant id → user id → membership.
    pub members: BTreeMap<String, BTreeMap<String, Member>>,
}

impl Seats {
    /// Folds one event in. Never fails: what cannot be placed is reported and skipped.
    pub fn apply(&mut self, envelope: &EventEnvelope) -> Applied {
        let event = match DomainEvent::decode(envelope) {
            Ok(event) => event,
            Err(DecodeError::Unknown { event_type, .. })
                if !RELEVANT.contains(&event_type.as_str()) =>
            {
                return Applied::Irrelevant;
            }
            Err(error) => return Applied::Skipped(error.to_string()),
        };
        let user = || envelope.aggregate.id.clone();
        match event {
            DomainEvent::TenantCreated(_) => {
                self.tenants.insert(envelope.aggregate.id.clone());
                Applied::Folded
            }
            DomainEvent::UserRegistered(_) => {
                self.users.insert(
                    user(),
                    Account {
                        status: Status::Active,
                        suspended_until: None,
                        activated: true,
                    },
                );
                Applied::Folded
            }
            DomainEvent::UserInvited(_) => {
                self.users.insert(
                    user(),
                    Account {
                        status: Status::Invited,
                        suspended_until: None,
                        activated: false,
                    },
                );
                Applied::Folded
            }
            DomainEvent::UserSuspended(UserSuspended { until, .. }) => {
                self.update_user(envelope, |account| Account {
                    status: Status::Suspended,
                    suspended_until: until,
                    ..account
                })
            }
            DomainEvent::UserReinstated(_) => self.update_user(envelope, |account| Account {
                status: account.back_from_leave(),
                suspended_until: None,
                ..account
            }),
            DomainEvent::UserDeactivated(_) => self.update_user(envelope, |account| Account {
                status: Status::Inactive,
                suspended_until: None,
                ..account
            }),
            DomainEvent::UserReactivated(_) => self.update_user(envelope, |account| Account {
                status: account.back_from_leave(),
                ..account
            }),
            DomainEvent::UserActivated(_) => self.update_user(envelope, |account| Account {
                status: match account.status {
                    Status::Invited => Status::Active,
                    other => other,
                },
                activated: true,
                ..account
            }),
            DomainEvent::UserErased(_) => self.update_user(envelope, |account| Account {
                status: Status::Erased,
                suspended_until: None,
                ..account
            }),
            DomainEvent::RoleAssigned(RoleAssigned { user, role, .. }) => {
                self.change_member(envelope, user.to_string(), true, |m| {
                    m.roles.insert(role.to_string());
                })
            }
            DomainEvent::RoleRevoked(RoleRevoked { user, role })
            | DomainEvent::RoleLapsed(RoleLapsed { user, role, .. }) => {
                self.change_member(envelope, user.to_string(), false, |m| {
                    m.roles.remove(role.as_str());
                })
            }
            DomainEvent::PermissionsGranted(PermissionsGranted {
                user, permissions, ..
            }) => self.change_member(envelope, user.to_string(), true, |m| {
                m.custom_permissions
                    .extend(permissions.iter().map(ToString::to_string));
            }),
            DomainEvent::PermissionsRevoked(PermissionsRevoked { user, permissions })
            | DomainEvent::PermissionsLapsed(PermissionsLapsed {
                user, permissions, ..
            }) => {
                let gone: BTreeSet<String> = permissions.iter().map(ToString::to_string).collect();
                self.change_member(envelope, user.to_string(), false, |m| {
                    m.custom_permissions.retain(|p| !gone.contains(p));
                })
            }
            DomainEvent::MemberRemoved(MemberRemoved { user }) => {
                self.change_member(envelope, user.to_string(), false, |m| {
                    m.roles.clear();
                    m.custom_permissions.clear();
                })
            }
            _ => Applied::Irrelevant,
        }
    }

    fn update_user(
        &mut self,
        envelope: &EventEnvelope,
        change: impl FnOnce(Account) -> Account,
    ) -> Applied {
        match self.users.get_mut(&envelope.aggregate.id) {
            Some(account) => {
                *account = change(*account);
                Applied::Folded
            }
            None => Applied::Skipped(format!(
                "{} of user {} who was never created",
                envelope.event_type, envelope.aggregate.id
            )),
        }
    }

    /// Changes a membership; `creates` says whether the event may start one (as `RoleAssigned`
    /// and `PermissionsGranted` do). A membership left empty is removed.
    fn change_member(
        &mut self,
        envelope: &EventEnvelope,
        user: String,
        creates: bool,
        change: impl FnOnce(&mut Member),
    ) -> Applied {
        let Some(tenant) = envelope.tenant.as_ref().map(|t| t.as_str().to_owned()) else {
            return Applied::Skipped(format!("{} without a tenant", envelope.event_type));
        };
        let members = self.members.entry(tenant.clone()).or_default();
        if !creates && !members.contains_key(&user) {
            return Applied::Skipped(format!(
                "{} for user {user} who is not a member of tenant {tenant}",
                envelope.event_type
            ));
        }
        let member = members.entry(user.clone()).or_default();
        change(member);
        if member.is_empty() {
            members.remove(&user);
        }
        if members.is_empty() {
            self.members.remove(&tenant);
        }
        Applied::Folded
    }

    /// Seats per tenant at `now`: every tenant ever created (0 if none) and any tenant that has
    /// members.
    pub fn counts(&self, now: OffsetDateTime) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> =
            self.tenants.iter().map(|t| (t.clone(), 0)).collect();
        for (tenant, members) in &self.members {
            let seats = members
                .keys()
                .filter(|user| {
                    self.users
                        .get(*user)
                        .is_some_and(|account| account.status_at(now) == Status::Active)
                })
                .count();
            counts.insert(tenant.clone(), seats as u64);
        }
        counts
    }
}

/// The event types billing folds. An unknown *version* of one of these is skipped loudly (like the
/// directory does); an unknown type that is not one of these is simply not billing's business.
const RELEVANT: &[&str] = &[
    "TenantCreated",
    "UserRegistered",
    "UserInvited",
    "UserSuspended",
    "UserReinstated",
    "UserDeactivated",
    "UserReactivated",
    "UserActivated",
    "UserErased",
    "RoleAssigned",
    "RoleRevoked",
    "PermissionsGranted",
    "PermissionsRevoked",
    "MemberRemoved",
    "RoleLapsed",
    "PermissionsLapsed",
];

#[cfg(test)]
mod tests {
    use super::*;
    use idstream_domain::envelope::{Actor, Metadata, StreamKey};
    use idstream_domain::events::*;
    use idstream_domain::{TenantId, UserId};
    use time::macros::datetime;
    use ulid::Ulid;

    const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn user(n: u64) -> UserId {
        UserId::new(Ulid::from_parts(n, 1))
    }

    fn acme() -> TenantId {
        "acme".parse().unwrap()
    }

    fn envelope(event: DomainEvent, tenant: Option<TenantId>, id: String) -> EventEnvelope {
        let stream = StreamKey::new(tenant, event.aggregate_type(), id);
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: T0,
            correlation_id: "c".into(),
            causation_id: None,
        };
        event.into_envelope(Ulid::from_parts(1, 1), &stream, &meta)
    }

    fn on_user(n: u64, event: DomainEvent) -> EventEnvelope {
        envelope(event, None, user(n).to_string())
    }

    fn on_member(n: u64, event: DomainEvent) -> EventEnvelope {
        envelope(event, Some(acme()), user(n).to_string())
    }

    fn registered() -> DomainEvent {
        DomainEvent::UserRegistered(UserRegistered {
            email: "a@example.com".into(),
            first_name: "A".into(),
            last_name: "B".into(),
            tenant: acme(),
        })
    }

    fn invited() -> DomainEvent {
        DomainEvent::UserInvited(UserInvited {
            email: "i@example.com".into(),
            first_name: "I".into(),
            last_name: "J".into(),
            tenant: acme(),
        })
    }

    fn role(n: u64, name: &str) -> DomainEvent {
        DomainEvent::RoleAssigned(RoleAssigned {
            user: user(n),
            role: name.parse().unwrap(),
            expires_at: None,
        })
    }

    fn fold(events: &[EventEnvelope]) -> Seats {
        let mut seats = Seats::default();
        seats.apply(&envelope(
            DomainEvent::TenantCreated(TenantCreated {
                name: "Acme".into(),
            }),
            Some(acme()),
            "acme".into(),
        ));
        for e in events {
            seats.apply(e);
        }
        seats
    }

    fn acme_seats(seats: &Seats, now: OffsetDateTime) -> u64 {
        seats.counts(now)["acme"]
    }

    #[test]
    fn an_active_user_with_a_role_takes_a_seat_and_a_tenant_without_members_counts_zero() {
        assert_eq!(acme_seats(&fold(&[]), T0), 0);
        let seats = fold(&[on_user(1, registered()), on_member(1, role(1, "user"))]);
        assert_eq!(acme_seats(&seats, T0), 1);
        // A second role is still one seat.
        let seats = fold(&[
            on_user(1, registered()),
            on_member(1, role(1, "user")),
            on_member(1, role(1, "admin")),
        ]);
        assert_eq!(acme_seats(&seats, T0), 1);
    }

    #[test]
    fn invited_users_take_a_seat_only_once_they_accept() {
        let given = [on_user(1, invited()), on_member(1, role(1, "user"))];
        assert_eq!(acme_seats(&fold(&given), T0), 0);
        let mut accepted = given.to_vec();
        accepted.push(on_user(1, DomainEvent::UserActivated(UserActivated {})));
        assert_eq!(acme_seats(&fold(&accepted), T0), 1);
    }

    #[test]
    fn suspended_deactivated_and_erased_users_take_no_seat_and_a_timed_suspension_lapses() {
        let base = [on_user(1, registered()), on_member(1, role(1, "user"))];
        let with = |event: DomainEvent| {
            let mut events = base.to_vec();
            events.push(on_user(1, event));
            fold(&events)
        };
        let open_ended = with(DomainEvent::UserSuspended(UserSuspended {
            until: None,
            reason: None,
        }));
        assert_eq!(acme_seats(&open_ended, T0), 0);
        let timed = with(DomainEvent::UserSuspended(UserSuspended {
            until: Some(T0 + time::Duration::hours(1)),
            reason: None,
        }));
        assert_eq!(acme_seats(&timed, T0), 0);
        assert_eq!(acme_seats(&timed, T0 + time::Duration::hours(1)), 1);
        assert_eq!(
            acme_seats(&with(DomainEvent::UserDeactivated(UserDeactivated {})), T0),
            0
        );
        assert_eq!(
            acme_seats(&with(DomainEvent::UserErased(UserErased {})), T0),
            0
        );
    }

    #[test]
    fn lifting_a_suspension_or_deactivation_returns_to_where_the_user_was() {
        let mut events = vec![
            on_user(1, registered()),
            on_member(1, role(1, "user")),
            on_user(1, invited()),
        ];
        // User 1 was overwritten as invited (the directory does the same with a repeated
        // creation); deactivating and reactivating an invitee leaves them invited.
        events.push(on_user(1, DomainEvent::UserDeactivated(UserDeactivated {})));
        events.push(on_user(1, DomainEvent::UserReactivated(UserReactivated {})));
        assert_eq!(acme_seats(&fold(&events), T0), 0);
        let events = [
            on_user(2, registered()),
            on_member(2, role(2, "user")),
            on_user(
                2,
                DomainEvent::UserSuspended(UserSuspended {
                    until: None,
                    reason: None,
                }),
            ),
            on_user(2, DomainEvent::UserReinstated(UserReinstated {})),
        ];
        assert_eq!(acme_seats(&fold(&events), T0), 1);
    }

    #[test]
    fn a_membership_lasts_while_a_role_or_custom_permission_is_left() {
        let permission = || -> BTreeSet<idstream_domain::access::Permission> {
            ["users:read".parse().unwrap()].into()
        };
        let given = vec![
            on_user(1, registered()),
            on_member(1, role(1, "user")),
            on_member(
                1,
                DomainEvent::PermissionsGranted(PermissionsGranted {
                    user: user(1),
                    permissions: permission(),
                    expires_at: None,
                }),
            ),
            on_member(
                1,
                DomainEvent::RoleRevoked(RoleRevoked {
                    user: user(1),
                    role: "user".parse().unwrap(),
                }),
            ),
        ];
        assert_eq!(acme_seats(&fold(&given), T0), 1);
        let mut revoked = given.clone();
        revoked.push(on_member(
            1,
            DomainEvent::PermissionsRevoked(PermissionsRevoked {
                user: user(1),
                permissions: permission(),
            }),
        ));
        assert_eq!(acme_seats(&fold(&revoked), T0), 0);
        let mut removed = given;
        removed.push(on_member(
            1,
            DomainEvent::MemberRemoved(MemberRemoved { user: user(1) }),
        ));
        let seats = fold(&removed);
        assert_eq!(acme_seats(&seats, T0), 0);
        assert!(seats.members.is_empty(), "{seats:?}");
    }

    #[test]
    fn events_about_unknown_users_or_members_are_skipped_like_the_directory_skips_them() {
        let mut seats = fold(&[]);
        let skipped = seats.apply(&on_user(
            9,
            DomainEvent::UserDeactivated(UserDeactivated {}),
        ));
        assert!(matches!(skipped, Applied::Skipped(_)), "{skipped:?}");
        let skipped = seats.apply(&on_member(
            9,
            DomainEvent::RoleRevoked(RoleRevoked {
                user: user(9),
                role: "user".parse().unwrap(),
            }),
        ));
        assert!(matches!(skipped, Applied::Skipped(_)), "{skipped:?}");
        // A role for a user not (yet) known makes a membership, but no seat.
        seats.apply(&on_member(9, role(9, "user")));
        assert_eq!(acme_seats(&seats, T0), 0);
        seats.apply(&on_user(9, registered()));
        assert_eq!(acme_seats(&seats, T0), 1);
    }

    #[test]
    fn unknown_types_are_irrelevant_but_unknown_versions_of_seat_events_are_reported() {
        let mut seats = fold(&[]);
        let mut other = on_user(1, registered());
        other.event_type = "SomethingNew".into();
        assert_eq!(seats.apply(&other), Applied::Irrelevant);
        let mut newer = on_user(1, registered());
        newer.version = 99;
        assert!(matches!(seats.apply(&newer), Applied::Skipped(_)));
    }
}
