//! The membership aggregate: the roles one user holds in one tenant.
//! Its stream is `idstream.events.<tenant>.membership.<user>`.
//!
//! Roles and custom permissions may be temporary (`expires_at`): they stop counting at that
//! moment, which access checks honour by themselves; [`MembershipCommand::Lapse`] then records
//! the lapse for the trail.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::access::model::Permission;
use crate::access::role::MAX_PERMISSIONS;
use crate::events::{
    MemberRemoved, PermissionsGranted, PermissionsLapsed, PermissionsRevoked, RoleAssigned,
    RoleLapsed, RoleRevoked,
};
use crate::ids::{RoleName, UserId};

/// The roles that carry administrator standing, given only for good: the admin rules keep a
/// tenant's last administrator, which a lapse would bypass.
pub const PERMANENT_ROLES: &[&str] = &["owner", "admin"];

/// How far ahead temporary access may end: ten years.
pub const MAX_EXPIRY: time::Duration = time::Duration::days(3650);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Every role assigned and neither revoked nor lapsed (a temporary one may have ended
    /// already: see [`Membership::holds_role`]).
    pub roles: BTreeSet<RoleName>,
    /// Custom permissions, unioned with the roles' permissions.
    pub custom: BTreeSet<Permission>,
    /// When each temporary role ends.
    pub role_expiry: BTreeMap<RoleName, OffsetDateTime>,
    /// When each temporary custom permission ends.
    pub custom_expiry: BTreeMap<Permission, OffsetDateTime>,
}

impl Membership {
    /// A membership exists while the user holds a role or a custom permission in the tenant.
    pub fn exists(&self) -> bool {
        !self.roles.is_empty() || !self.custom.is_empty()
    }

    /// Whether `role` counts at `now` (held, and not past its end).
    pub fn holds_role(&self, role: &RoleName, now: OffsetDateTime) -> bool {
        self.roles.contains(role) && self.role_expiry.get(role).is_none_or(|end| now < *end)
    }

    /// Whether the custom permission counts at `now`.
    pub fn holds_permission(&self, permission: &Permission, now: OffsetDateTime) -> bool {
        self.custom.contains(permission)
            && self
                .custom_expiry
                .get(permission)
                .is_none_or(|end| now < *end)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipCommand {
    /// Gives a role for good (`expires_at` None) or until `expires_at`; giving a held role
    /// again with another end changes its end.
    Assign {
        user: UserId,
        role: RoleName,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    },
    Revoke {
        user: UserId,
        role: RoleName,
    },
    /// Adds custom permissions (those held already with the same end are ignored).
    GrantPermissions {
        user: UserId,
        permissions: BTreeSet<Permission>,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
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
    /// Records the lapse of every temporary role and permission that ended at or before `now`
    /// (nothing when none did).
    Lapse {
        user: UserId,
        now: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    Assigned(RoleAssigned),
    Revoked(RoleRevoked),
    PermissionsGranted(PermissionsGranted),
    PermissionsRevoked(PermissionsRevoked),
    Removed(MemberRemoved),
    RoleLapsed(RoleLapsed),
    PermissionsLapsed(PermissionsLapsed),
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
    #[error("expires_at must be in the future, and at most ten years ahead")]
    InvalidExpiry,
    #[error(
        "the owner and admin roles are given for good, so that the tenant keeps its administrators; give a custom role for temporary administration"
    )]
    PermanentRole,
}

/// Whether temporary access may end at `expires_at` (None: for good): in the future, and at
/// most [`MAX_EXPIRY`] ahead. Memberships and records share the rule.
pub fn expiry_is_valid(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_none_or(|end| end > now && end <= now + MAX_EXPIRY)
}

fn validate_expiry(
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), MembershipError> {
    if expiry_is_valid(expires_at, now) {
        Ok(())
    } else {
        Err(MembershipError::InvalidExpiry)
    }
}

pub fn decide(
    state: &Membership,
    command: MembershipCommand,
) -> Result<Vec<MembershipEvent>, MembershipError> {
    match command {
        MembershipCommand::Assign {
            user,
            role,
            expires_at,
            now,
        } => {
            validate_expiry(expires_at, now)?;
            if expires_at.is_some() && PERMANENT_ROLES.contains(&role.as_str()) {
                return Err(MembershipError::PermanentRole);
            }
            if state.holds_role(&role, now) && state.role_expiry.get(&role) == expires_at.as_ref() {
                return Err(MembershipError::AlreadyAssigned);
            }
            Ok(vec![MembershipEvent::Assigned(RoleAssigned {
                user,
                role,
                expires_at,
            })])
        }
        MembershipCommand::Revoke { user, role } => {
            if !state.roles.contains(&role) {
                return Err(MembershipError::NotAssigned);
            }
            Ok(vec![MembershipEvent::Revoked(RoleRevoked { user, role })])
        }
        MembershipCommand::GrantPermissions {
            user,
            permissions,
            expires_at,
            now,
        } => {
            validate_expiry(expires_at, now)?;
            let new: BTreeSet<Permission> = permissions
                .into_iter()
                .filter(|p| {
                    !state.holds_permission(p, now)
                        || state.custom_expiry.get(p) != expires_at.as_ref()
                })
                .collect();
            if new.is_empty() {
                return Ok(vec![]);
            }
            let added = new.iter().filter(|p| !state.custom.contains(*p)).count();
            if state.custom.len() + added > MAX_PERMISSIONS {
                return Err(MembershipError::TooManyPermissions);
            }
            Ok(vec![MembershipEvent::PermissionsGranted(
                PermissionsGranted {
                    user,
                    permissions: new,
                    expires_at,
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
        MembershipCommand::Lapse { user, now } => {
            let mut events: Vec<MembershipEvent> = state
                .role_expiry
                .iter()
                .filter(|(role, end)| **end <= now && state.roles.contains(*role))
                .map(|(role, end)| {
                    MembershipEvent::RoleLapsed(RoleLapsed {
                        user,
                        role: role.clone(),
                        expired_at: *end,
                    })
                })
                .collect();
            let mut by_end: BTreeMap<OffsetDateTime, BTreeSet<Permission>> = BTreeMap::new();
            for (permission, end) in &state.custom_expiry {
                if *end <= now && state.custom.contains(permission) {
                    by_end.entry(*end).or_default().insert(permission.clone());
                }
            }
            events.extend(by_end.into_iter().map(|(end, permissions)| {
                MembershipEvent::PermissionsLapsed(PermissionsLapsed {
                    user,
                    permissions,
                    expired_at: end,
                })
            }));
            Ok(events)
        }
    }
}

/// The earliest end of a temporary role or permission still held, if any: when the next lapse
/// is due.
pub fn next_lapse(state: &Membership) -> Option<OffsetDateTime> {
    state
        .role_expiry
        .values()
        .chain(state.custom_expiry.values())
        .min()
        .copied()
}

pub fn evolve(mut state: Membership, event: &MembershipEvent) -> Membership {
    match event {
        MembershipEvent::Assigned(e) => {
            state.roles.insert(e.role.clone());
            match e.expires_at {
                Some(end) => state.role_expiry.insert(e.role.clone(), end),
                None => state.role_expiry.remove(&e.role),
            };
        }
        MembershipEvent::Revoked(RoleRevoked { role, .. })
        | MembershipEvent::RoleLapsed(RoleLapsed { role, .. }) => {
            state.roles.remove(role);
            state.role_expiry.remove(role);
        }
        MembershipEvent::PermissionsGranted(e) => {
            for permission in &e.permissions {
                state.custom.insert(permission.clone());
                match e.expires_at {
                    Some(end) => state.custom_expiry.insert(permission.clone(), end),
                    None => state.custom_expiry.remove(permission),
                };
            }
        }
        MembershipEvent::PermissionsRevoked(PermissionsRevoked { permissions, .. })
        | MembershipEvent::PermissionsLapsed(PermissionsLapsed { permissions, .. }) => {
            state.custom.retain(|p| !permissions.contains(p));
            state.custom_expiry.retain(|p, _| !permissions.contains(p));
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

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00 UTC)
    }

    fn role(name: &str) -> RoleName {
        name.parse().unwrap()
    }

    fn assigned(name: &str) -> MembershipEvent {
        MembershipEvent::Assigned(RoleAssigned {
            user: ada(),
            role: role(name),
            expires_at: None,
        })
    }

    #[test]
    fn a_role_is_assigned() {
        check(
            &[],
            MembershipCommand::Assign {
                user: ada(),
                role: role("admin"),
                expires_at: None,
                now: now(),
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
                expires_at: None,
                now: now(),
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
            expires_at: None,
        });
        check(
            std::slice::from_ref(&granted),
            MembershipCommand::GrantPermissions {
                user: ada(),
                permissions: perms(&["users:read", "files:delete"]),
                expires_at: None,
                now: now(),
            },
            Ok(vec![MembershipEvent::PermissionsGranted(
                PermissionsGranted {
                    user: ada(),
                    permissions: perms(&["files:delete"]),
                    expires_at: None,
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
    #[test]
    fn a_temporary_role_counts_until_its_end_then_lapses_once() {
        let end = now() + time::Duration::hours(8);
        let temporary = MembershipEvent::Assigned(RoleAssigned {
            user: ada(),
            role: role("contractor"),
            expires_at: Some(end),
        });
        let assign = |expires_at, now| MembershipCommand::Assign {
            user: ada(),
            role: role("contractor"),
            expires_at,
            now,
        };
        check(&[], assign(Some(end), now()), Ok(vec![temporary.clone()]));
        check(
            std::slice::from_ref(&temporary),
            assign(Some(end), now()),
            Err(MembershipError::AlreadyAssigned),
        );
        // Another end (or none) changes it.
        check(
            std::slice::from_ref(&temporary),
            assign(None, now()),
            Ok(vec![assigned("contractor")]),
        );
        let state = std::slice::from_ref(&temporary)
            .iter()
            .fold(Membership::default(), evolve);
        assert!(state.holds_role(&role("contractor"), now()));
        assert!(!state.holds_role(&role("contractor"), end));
        assert_eq!(next_lapse(&state), Some(end));
        // An ended role may be given again before its lapse is recorded.
        check(
            std::slice::from_ref(&temporary),
            assign(Some(end + time::Duration::hours(8)), end),
            Ok(vec![MembershipEvent::Assigned(RoleAssigned {
                user: ada(),
                role: role("contractor"),
                expires_at: Some(end + time::Duration::hours(8)),
            })]),
        );
        let lapse = |now| MembershipCommand::Lapse { user: ada(), now };
        check(std::slice::from_ref(&temporary), lapse(now()), Ok(vec![]));
        let lapsed = MembershipEvent::RoleLapsed(RoleLapsed {
            user: ada(),
            role: role("contractor"),
            expired_at: end,
        });
        check(
            std::slice::from_ref(&temporary),
            lapse(end),
            Ok(vec![lapsed.clone()]),
        );
        check(&[temporary.clone(), lapsed.clone()], lapse(end), Ok(vec![]));
        let state = [temporary, lapsed]
            .iter()
            .fold(Membership::default(), evolve);
        assert!(!state.exists() && state.role_expiry.is_empty());
    }

    #[test]
    fn administrator_roles_are_not_given_temporarily() {
        for name in PERMANENT_ROLES {
            check(
                &[],
                MembershipCommand::Assign {
                    user: ada(),
                    role: role(name),
                    expires_at: Some(now() + time::Duration::days(1)),
                    now: now(),
                },
                Err(MembershipError::PermanentRole),
            );
        }
    }

    #[test]
    fn temporary_permissions_lapse_grouped_by_their_end() {
        let perms = |list: &[&str]| -> BTreeSet<Permission> {
            list.iter().map(|p| p.parse().unwrap()).collect()
        };
        let soon = now() + time::Duration::hours(1);
        let later = now() + time::Duration::hours(2);
        let given = [
            MembershipEvent::PermissionsGranted(PermissionsGranted {
                user: ada(),
                permissions: perms(&["users:read", "files:read"]),
                expires_at: Some(soon),
            }),
            MembershipEvent::PermissionsGranted(PermissionsGranted {
                user: ada(),
                permissions: perms(&["files:delete"]),
                expires_at: Some(later),
            }),
            MembershipEvent::PermissionsGranted(PermissionsGranted {
                user: ada(),
                permissions: perms(&["roles:read"]),
                expires_at: None,
            }),
        ];
        check(
            &given,
            MembershipCommand::Lapse {
                user: ada(),
                now: later,
            },
            Ok(vec![
                MembershipEvent::PermissionsLapsed(PermissionsLapsed {
                    user: ada(),
                    permissions: perms(&["files:read", "users:read"]),
                    expired_at: soon,
                }),
                MembershipEvent::PermissionsLapsed(PermissionsLapsed {
                    user: ada(),
                    permissions: perms(&["files:delete"]),
                    expired_at: later,
                }),
            ]),
        );
        // Granting a held permission for good makes it permanent.
        check(
            &given,
            MembershipCommand::GrantPermissions {
                user: ada(),
                permissions: perms(&["users:read", "roles:read"]),
                expires_at: None,
                now: now(),
            },
            Ok(vec![MembershipEvent::PermissionsGranted(
                PermissionsGranted {
                    user: ada(),
                    permissions: perms(&["users:read"]),
                    expires_at: None,
                },
            )]),
        );
        check(
            &[],
            MembershipCommand::GrantPermissions {
                user: ada(),
                permissions: perms(&["users:read"]),
                expires_at: Some(now() - time::Duration::seconds(1)),
                now: now(),
            },
            Err(MembershipError::InvalidExpiry),
        );
    }
}
