//! The membership aggregate: the roles one user holds in one tenant.
//! Its stream is `idstream.events.<tenant>.membership.<user>`.

use std::collections::BTreeSet;

use crate::access::model::Permission;
use crate::access::role::MAX_PERMISSIONS;
use crate::events::{
    MemberRemoved, PermissionsGranted, PermissionsRevoked, RoleAssigned, RoleRevoked,
};
use crate::ids::{RoleName, UserId};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub roles: BTreeSet<RoleName>,
    /// Custom permissions, unioned with the roles' permissions.
    pub custom: BTreeSet<Permission>,
}

impl Membership {
    /// A membership exists while the user holds a role or a custom permission in the tenant.
    pub fn exists(&self) -> bool {
        !self.roles.is_empty() || !self.custom.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipCommand {
    Assign {
        user: UserId,
        role: RoleName,
    },
    Revoke {
        user: UserId,
        role: RoleName,
    },
    /// Adds custom permissions (those held already are ignored).
    GrantPermissions {
        user: UserId,
        permissions: BTreeSet<Permission>,
    },
    /// Removes custom permissions (those not held are ignored).
    RevokePermissions {
        user: UserId,
        permissions: BTreeSet<Permission>,
    },
    /// Removes the user from the tenant: every role and custom permission.
    Remove {
        user: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    Assigned(RoleAssigned),
    Revoked(RoleRevoked),
    PermissionsGranted(PermissionsGranted),
    PermissionsRevoked(PermissionsRevoked),
    Removed(MemberRemoved),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("the user already holds this role in this tenant")]
    AlreadyAssigned,
    #[error("the user does not hold this role in this tenant")]
    NotAssigned,
    #[error("the user is not a member of this tenant")]
    NotAMember,
    #[error("a user holds at most {MAX_PERMISSIONS} custom permissions in a tenant")]
    TooManyPermissions,
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
        MembershipCommand::GrantPermissions { user, permissions } => {
            let new: BTreeSet<Permission> =
                permissions.difference(&state.custom).cloned().collect();
            if new.is_empty() {
                return Ok(vec![]);
            }
            if state.custom.len() + new.len() > MAX_PERMISSIONS {
                return Err(MembershipError::TooManyPermissions);
            }
            Ok(vec![MembershipEvent::PermissionsGranted(
                PermissionsGranted {
                    user,
                    permissions: new,
                },
            )])
        }
        MembershipCommand::RevokePermissions { user, permissions } => {
            let held: BTreeSet<Permission> =
                permissions.intersection(&state.custom).cloned().collect();
            if held.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![MembershipEvent::PermissionsRevoked(
                PermissionsRevoked {
                    user,
                    permissions: held,
                },
            )])
        }
        MembershipCommand::Remove { user } => {
            if !state.exists() {
                return Err(MembershipError::NotAMember);
            }
            Ok(vec![MembershipEvent::Removed(MemberRemoved { user })])
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
        MembershipEvent::PermissionsGranted(e) => {
            state.custom.extend(e.permissions.iter().cloned());
        }
        MembershipEvent::PermissionsRevoked(e) => {
            state.custom.retain(|p| !e.permissions.contains(p));
        }
        MembershipEvent::Removed(_) => state = Membership::default(),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use ulid::Ulid;

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
    fn custom_permissions_record_only_what_changes() {
        let perms = |list: &[&str]| -> BTreeSet<Permission> {
            list.iter().map(|p| p.parse().unwrap()).collect()
        };
        let granted = MembershipEvent::PermissionsGranted(PermissionsGranted {
            user: ada(),
            permissions: perms(&["users:read"]),
        });
        check(
            std::slice::from_ref(&granted),
            MembershipCommand::GrantPermissions {
                user: ada(),
                permissions: perms(&["users:read", "files:delete"]),
            },
            Ok(vec![MembershipEvent::PermissionsGranted(
                PermissionsGranted {
                    user: ada(),
                    permissions: perms(&["files:delete"]),
                },
            )]),
        );
        check(
            &[granted],
            MembershipCommand::RevokePermissions {
                user: ada(),
                permissions: perms(&["roles:read"]),
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn only_a_member_can_be_removed() {
        check(
            &[],
            MembershipCommand::Remove { user: ada() },
            Err(MembershipError::NotAMember),
        );
        let state = [
            assigned("admin"),
            MembershipEvent::Removed(MemberRemoved { user: ada() }),
        ]
        .iter()
        .fold(Membership::default(), evolve);
        assert!(!state.exists());
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
