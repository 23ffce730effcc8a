//! The membership aggregate: the roles one user holds in one tenant.
//! Its stream is `idstream.events.<tenant>.membership.<user>`.

use std::collections::BTreeSet;

use crate::events::{RoleAssigned, RoleRevoked};
use crate::ids::{RoleName, UserId};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub roles: BTreeSet<RoleName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipCommand {
    Assign { user: UserId, role: RoleName },
    Revoke { user: UserId, role: RoleName },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    Assigned(RoleAssigned),
    Revoked(RoleRevoked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("the user already holds this role in this tenant")]
    AlreadyAssigned,
    #[error("the user does not hold this role in this tenant")]
    NotAssigned,
}

pub fn decide(
    state: &Membership,
    command: MembershipCommand,
) -> Result<Vec<MembershipEvent>, MembershipError> {
    match command {
        MembershipCommand::Assign { user, role } => {
            if state.roles.contains(&role) {
                return Err(MembershipError::AlreadyAssigned);
            }
            Ok(vec![MembershipEvent::Assigned(RoleAssigned { user, role })])
        }
        MembershipCommand::Revoke { user, role } => {
            if !state.roles.contains(&role) {
                return Err(MembershipError::NotAssigned);
            }
            Ok(vec![MembershipEvent::Revoked(RoleRevoked { user, role })])
        }
    }
}

pub fn evolve(mut state: Membership, event: &MembershipEvent) -> Membership {
    match event {
        MembershipEvent::Assigned(e) => {
            state.roles.insert(e.role.clone());
        }
        MembershipEvent::Revoked(e) => {
            state.roles.remove(&e.role);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    #[track_caller]
    fn check(
        given: &[MembershipEvent],
        when: MembershipCommand,
        then: Result<Vec<MembershipEvent>, MembershipError>,
    ) {
        let state = given.iter().fold(Membership::default(), evolve);
        assert_eq!(decide(&state, when), then);
    }

    fn ada() -> UserId {
        UserId::new(Ulid::from_parts(1, 1))
    }

    fn role(name: &str) -> RoleName {
        name.parse().unwrap()
    }

    fn assigned(name: &str) -> MembershipEvent {
        MembershipEvent::Assigned(RoleAssigned {
            user: ada(),
            role: role(name),
        })
    }

    #[test]
    fn a_role_is_assigned() {
        check(
            &[],
            MembershipCommand::Assign {
                user: ada(),
                role: role("admin"),
            },
            Ok(vec![assigned("admin")]),
        );
    }

    #[test]
    fn a_role_held_already_is_not_assigned_twice() {
        check(
            &[assigned("admin")],
            MembershipCommand::Assign {
                user: ada(),
                role: role("admin"),
            },
            Err(MembershipError::AlreadyAssigned),
        );
    }

    #[test]
    fn a_held_role_is_revoked() {
        check(
            &[assigned("admin"), assigned("user")],
            MembershipCommand::Revoke {
                user: ada(),
                role: role("admin"),
            },
            Ok(vec![MembershipEvent::Revoked(RoleRevoked {
                user: ada(),
                role: role("admin"),
            })]),
        );
    }

    #[test]
    fn a_role_not_held_cannot_be_revoked() {
        let revoked = MembershipEvent::Revoked(RoleRevoked {
            user: ada(),
            role: role("admin"),
        });
        check(
            &[assigned("admin"), revoked],
            MembershipCommand::Revoke {
                user: ada(),
                role: role("admin"),
            },
            Err(MembershipError::NotAssigned),
        );
    }
}
