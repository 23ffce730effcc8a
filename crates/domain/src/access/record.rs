//! The record aggregate: who owns one record of an entity, who was granted access to it, and who
//! holds a local (record-scoped) role on it. Its stream is
//! `idstream.events.<tenant>.record.<entity>:<record id>`.
//!
//! Granting what is granted already, or setting the owner it has, records nothing; revoking what
//! is not there is an error.

use std::collections::{BTreeMap, BTreeSet};

use crate::access::model::{EntityName, RecordAccess, RecordId};
use crate::events::{
    LocalRoleAssigned, LocalRoleRevoked, RecordGranted, RecordOwnerSet, RecordRevoked,
};
use crate::ids::{RoleName, UserId};

/// The aggregate id of a record: `<entity>:<record id>` (both are subject-safe).
pub fn aggregate_id(entity: &EntityName, record: &RecordId) -> String {
    format!("{entity}:{record}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub owner: Option<UserId>,
    pub grants: BTreeMap<UserId, RecordAccess>,
    pub local_roles: BTreeMap<UserId, BTreeSet<RoleName>>,
}

/// A record of an entity, named in every command and event of the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub entity: EntityName,
    pub record: RecordId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCommand {
    SetOwner {
        at: RecordRef,
        owner: UserId,
    },
    Grant {
        at: RecordRef,
        user: UserId,
        access: RecordAccess,
    },
    Revoke {
        at: RecordRef,
        user: UserId,
    },
    AssignLocalRole {
        at: RecordRef,
        user: UserId,
        role: RoleName,
    },
    RevokeLocalRole {
        at: RecordRef,
        user: UserId,
        role: RoleName,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    OwnerSet(RecordOwnerSet),
    Granted(RecordGranted),
    Revoked(RecordRevoked),
    LocalRoleAssigned(LocalRoleAssigned),
    LocalRoleRevoked(LocalRoleRevoked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the user has no grant on this record")]
    NotGranted,
    #[error("the user does not hold this role on this record")]
    LocalRoleNotHeld,
}

pub fn decide(state: &Record, command: RecordCommand) -> Result<Vec<RecordEvent>, RecordError> {
    let event = match command {
        RecordCommand::SetOwner { at, owner } => (state.owner != Some(owner)).then_some({
            RecordEvent::OwnerSet(RecordOwnerSet {
                entity: at.entity,
                record: at.record,
                owner,
            })
        }),
        RecordCommand::Grant { at, user, access } => (state.grants.get(&user) != Some(&access))
            .then_some({
                RecordEvent::Granted(RecordGranted {
                    entity: at.entity,
                    record: at.record,
                    user,
                    access,
                })
            }),
        RecordCommand::Revoke { at, user } => {
            if !state.grants.contains_key(&user) {
                return Err(RecordError::NotGranted);
            }
            Some(RecordEvent::Revoked(RecordRevoked {
                entity: at.entity,
                record: at.record,
                user,
            }))
        }
        RecordCommand::AssignLocalRole { at, user, role } => {
            let held = state
                .local_roles
                .get(&user)
                .is_some_and(|roles| roles.contains(&role));
            (!held).then_some({
                RecordEvent::LocalRoleAssigned(LocalRoleAssigned {
                    entity: at.entity,
                    record: at.record,
                    user,
                    role,
                })
            })
        }
        RecordCommand::RevokeLocalRole { at, user, role } => {
            let held = state
                .local_roles
                .get(&user)
                .is_some_and(|roles| roles.contains(&role));
            if !held {
                return Err(RecordError::LocalRoleNotHeld);
            }
            Some(RecordEvent::LocalRoleRevoked(LocalRoleRevoked {
                entity: at.entity,
                record: at.record,
                user,
                role,
            }))
        }
    };
    Ok(event.into_iter().collect())
}

pub fn evolve(mut state: Record, event: &RecordEvent) -> Record {
    match event {
        RecordEvent::OwnerSet(e) => state.owner = Some(e.owner),
        RecordEvent::Granted(e) => {
            state.grants.insert(e.user, e.access);
        }
        RecordEvent::Revoked(e) => {
            state.grants.remove(&e.user);
        }
        RecordEvent::LocalRoleAssigned(e) => {
            state
                .local_roles
                .entry(e.user)
                .or_default()
                .insert(e.role.clone());
        }
        RecordEvent::LocalRoleRevoked(e) => {
            if let Some(roles) = state.local_roles.get_mut(&e.user) {
                roles.remove(&e.role);
                if roles.is_empty() {
                    state.local_roles.remove(&e.user);
                }
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use ulid::Ulid;

    fn at() -> RecordRef {
        RecordRef {
            entity: "project".parse().unwrap(),
            record: "P-1".parse().unwrap(),
        }
    }

    fn ada() -> UserId {
        UserId::new(Ulid::from_parts(1, 1))
    }

    fn granted(access: RecordAccess) -> RecordEvent {
        RecordEvent::Granted(RecordGranted {
            entity: at().entity,
            record: at().record,
            user: ada(),
            access,
        })
    }

    #[test]
    fn a_grant_is_recorded_and_a_repeat_records_nothing() {
        let grant = |access| RecordCommand::Grant {
            at: at(),
            user: ada(),
            access,
        };
        check(
            &[],
            grant(RecordAccess::ReadOnly),
            Ok(vec![granted(RecordAccess::ReadOnly)]),
        );
        check(
            &[granted(RecordAccess::ReadOnly)],
            grant(RecordAccess::ReadOnly),
            Ok(vec![]),
        );
        check(
            &[granted(RecordAccess::ReadOnly)],
            grant(RecordAccess::ReadWrite),
            Ok(vec![granted(RecordAccess::ReadWrite)]),
        );
    }

    #[test]
    fn only_an_existing_grant_can_be_revoked() {
        let revoke = RecordCommand::Revoke {
            at: at(),
            user: ada(),
        };
        check(&[], revoke.clone(), Err(RecordError::NotGranted));
        check(
            &[granted(RecordAccess::ReadWrite)],
            revoke,
            Ok(vec![RecordEvent::Revoked(RecordRevoked {
                entity: at().entity,
                record: at().record,
                user: ada(),
            })]),
        );
    }

    #[test]
    fn local_roles_are_held_per_user_and_revoked_only_when_held() {
        let role: RoleName = "member".parse().unwrap();
        let assigned = RecordEvent::LocalRoleAssigned(LocalRoleAssigned {
            entity: at().entity,
            record: at().record,
            user: ada(),
            role: role.clone(),
        });
        check(
            std::slice::from_ref(&assigned),
            RecordCommand::AssignLocalRole {
                at: at(),
                user: ada(),
                role: role.clone(),
            },
            Ok(vec![]),
        );
        check(
            &[],
            RecordCommand::RevokeLocalRole {
                at: at(),
                user: ada(),
                role,
            },
            Err(RecordError::LocalRoleNotHeld),
        );
    }

    #[test]
    fn ownership_moves_and_a_repeat_records_nothing() {
        let set = RecordEvent::OwnerSet(RecordOwnerSet {
            entity: at().entity,
            record: at().record,
            owner: ada(),
        });
        check(
            std::slice::from_ref(&set),
            RecordCommand::SetOwner {
                at: at(),
                owner: ada(),
            },
            Ok(vec![]),
        );
        assert_eq!(aggregate_id(&at().entity, &at().record), "project:P-1");
    }
}
