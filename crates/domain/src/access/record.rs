//! The record aggregate: who owns one record of an entity, who was granted access to it, and who
//! holds a local (record-scoped) role on it. Its stream is
//! `idstream.events.<tenant>.record.<entity>:<record id>`.
//!
//! Granting what is granted already (with the same end), or setting the owner it has, records
//! nothing; revoking what is not there is an error. Grants and local roles may be temporary
//! (`expires_at`): checks stop honouring them at that moment, and [`RecordCommand::Lapse`]
//! records the lapse for the trail.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::access::model::{EntityName, RecordAccess, RecordId};
use crate::events::{
    LocalRoleAssigned, LocalRoleLapsed, LocalRoleRevoked, RecordGrantLapsed, RecordGranted,
    RecordOwnerSet, RecordRevoked,
};
use crate::ids::{RoleName, UserId};
use crate::membership::expiry_is_valid;

/// The aggregate id of a record: `<entity>:<record id>` (both are subject-safe).
pub fn aggregate_id(entity: &EntityName, record: &RecordId) -> String {
    format!("{entity}:{record}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub owner: Option<UserId>,
    pub grants: BTreeMap<UserId, RecordAccess>,
    pub local_roles: BTreeMap<UserId, BTreeSet<RoleName>>,
    /// When each temporary grant ends.
    pub grant_expiry: BTreeMap<UserId, OffsetDateTime>,
    /// When each temporary local role ends.
    pub local_role_expiry: BTreeMap<(UserId, RoleName), OffsetDateTime>,
}

impl Record {
    fn grant_at(&self, user: &UserId, now: OffsetDateTime) -> Option<RecordAccess> {
        let live = self.grant_expiry.get(user).is_none_or(|end| now < *end);
        self.grants.get(user).copied().filter(|_| live)
    }

    fn holds_local_role(&self, user: &UserId, role: &RoleName, now: OffsetDateTime) -> bool {
        self.local_roles
            .get(user)
            .is_some_and(|roles| roles.contains(role))
            && self
                .local_role_expiry
                .get(&(*user, role.clone()))
                .is_none_or(|end| now < *end)
    }
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
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    },
    Revoke {
        at: RecordRef,
        user: UserId,
    },
    AssignLocalRole {
        at: RecordRef,
        user: UserId,
        role: RoleName,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    },
    RevokeLocalRole {
        at: RecordRef,
        user: UserId,
        role: RoleName,
    },
    /// Records the lapse of every temporary grant and local role that ended at or before `now`.
    Lapse {
        at: RecordRef,
        now: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    OwnerSet(RecordOwnerSet),
    Granted(RecordGranted),
    Revoked(RecordRevoked),
    LocalRoleAssigned(LocalRoleAssigned),
    LocalRoleRevoked(LocalRoleRevoked),
    GrantLapsed(RecordGrantLapsed),
    LocalRoleLapsed(LocalRoleLapsed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the user has no grant on this record")]
    NotGranted,
    #[error("the user does not hold this role on this record")]
    LocalRoleNotHeld,
    #[error("expires_at must be in the future, and at most ten years ahead")]
    InvalidExpiry,
}

fn expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Result<(), RecordError> {
    if expiry_is_valid(expires_at, now) {
        Ok(())
    } else {
        Err(RecordError::InvalidExpiry)
    }
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
        RecordCommand::Grant {
            at,
            user,
            access,
            expires_at,
            now,
        } => {
            expiry(expires_at, now)?;
            let same = state.grant_at(&user, now) == Some(access)
                && state.grant_expiry.get(&user) == expires_at.as_ref();
            (!same).then_some({
                RecordEvent::Granted(RecordGranted {
                    entity: at.entity,
                    record: at.record,
                    user,
                    access,
                    expires_at,
                })
            })
        }
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
        RecordCommand::AssignLocalRole {
            at,
            user,
            role,
            expires_at,
            now,
        } => {
            expiry(expires_at, now)?;
            let same = state.holds_local_role(&user, &role, now)
                && state.local_role_expiry.get(&(user, role.clone())) == expires_at.as_ref();
            (!same).then_some({
                RecordEvent::LocalRoleAssigned(LocalRoleAssigned {
                    entity: at.entity,
                    record: at.record,
                    user,
                    role,
                    expires_at,
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
        RecordCommand::Lapse { at, now } => {
            let mut events = Vec::new();
            for (user, end) in &state.grant_expiry {
                if *end <= now && state.grants.contains_key(user) {
                    events.push(RecordEvent::GrantLapsed(RecordGrantLapsed {
                        entity: at.entity.clone(),
                        record: at.record.clone(),
                        user: *user,
                        expired_at: *end,
                    }));
                }
            }
            for ((user, role), end) in &state.local_role_expiry {
                let held = state
                    .local_roles
                    .get(user)
                    .is_some_and(|roles| roles.contains(role));
                if *end <= now && held {
                    events.push(RecordEvent::LocalRoleLapsed(LocalRoleLapsed {
                        entity: at.entity.clone(),
                        record: at.record.clone(),
                        user: *user,
                        role: role.clone(),
                        expired_at: *end,
                    }));
                }
            }
            return Ok(events);
        }
    };
    Ok(event.into_iter().collect())
}

/// The earliest end of a temporary grant or local role still held, if any.
pub fn next_lapse(state: &Record) -> Option<OffsetDateTime> {
    state
        .grant_expiry
        .values()
        .chain(state.local_role_expiry.values())
        .min()
        .copied()
}

fn remove_local_role(state: &mut Record, user: &UserId, role: &RoleName) {
    if let Some(roles) = state.local_roles.get_mut(user) {
        roles.remove(role);
        if roles.is_empty() {
            state.local_roles.remove(user);
        }
    }
    state.local_role_expiry.remove(&(*user, role.clone()));
}

pub fn evolve(mut state: Record, event: &RecordEvent) -> Record {
    match event {
        RecordEvent::OwnerSet(e) => state.owner = Some(e.owner),
        RecordEvent::Granted(e) => {
            state.grants.insert(e.user, e.access);
            match e.expires_at {
                Some(end) => state.grant_expiry.insert(e.user, end),
                None => state.grant_expiry.remove(&e.user),
            };
        }
        RecordEvent::Revoked(RecordRevoked { user, .. })
        | RecordEvent::GrantLapsed(RecordGrantLapsed { user, .. }) => {
            state.grants.remove(user);
            state.grant_expiry.remove(user);
        }
        RecordEvent::LocalRoleAssigned(e) => {
            state
                .local_roles
                .entry(e.user)
                .or_default()
                .insert(e.role.clone());
            let key = (e.user, e.role.clone());
            match e.expires_at {
                Some(end) => state.local_role_expiry.insert(key, end),
                None => state.local_role_expiry.remove(&key),
            };
        }
        RecordEvent::LocalRoleRevoked(LocalRoleRevoked { user, role, .. })
        | RecordEvent::LocalRoleLapsed(LocalRoleLapsed { user, role, .. }) => {
            remove_local_role(&mut state, user, role);
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
            expires_at: None,
        })
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00 UTC)
    }

    #[test]
    fn a_grant_is_recorded_and_a_repeat_records_nothing() {
        let grant = |access| RecordCommand::Grant {
            at: at(),
            user: ada(),
            access,
            expires_at: None,
            now: now(),
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
            expires_at: None,
        });
        check(
            std::slice::from_ref(&assigned),
            RecordCommand::AssignLocalRole {
                at: at(),
                user: ada(),
                role: role.clone(),
                expires_at: None,
                now: now(),
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
    #[test]
    fn a_temporary_grant_ends_by_itself_and_its_lapse_is_recorded_once() {
        let end = now() + time::Duration::hours(1);
        let temporary = RecordEvent::Granted(RecordGranted {
            entity: at().entity,
            record: at().record,
            user: ada(),
            access: RecordAccess::ReadOnly,
            expires_at: Some(end),
        });
        let grant = |expires_at, now| RecordCommand::Grant {
            at: at(),
            user: ada(),
            access: RecordAccess::ReadOnly,
            expires_at,
            now,
        };
        check(&[], grant(Some(end), now()), Ok(vec![temporary.clone()]));
        // The same grant with the same end records nothing; making it permanent does.
        check(
            std::slice::from_ref(&temporary),
            grant(Some(end), now()),
            Ok(vec![]),
        );
        check(
            std::slice::from_ref(&temporary),
            grant(None, now()),
            Ok(vec![granted(RecordAccess::ReadOnly)]),
        );
        // Before its end nothing lapses; after it, the lapse is recorded with the end.
        let lapse = |now| RecordCommand::Lapse { at: at(), now };
        check(std::slice::from_ref(&temporary), lapse(now()), Ok(vec![]));
        let lapsed = RecordEvent::GrantLapsed(RecordGrantLapsed {
            entity: at().entity,
            record: at().record,
            user: ada(),
            expired_at: end,
        });
        check(
            std::slice::from_ref(&temporary),
            lapse(end),
            Ok(vec![lapsed.clone()]),
        );
        check(&[temporary.clone(), lapsed.clone()], lapse(end), Ok(vec![]));
        // An ended grant, lapsed or not, can be given again.
        let later = end + time::Duration::minutes(1);
        check(
            std::slice::from_ref(&temporary),
            grant(None, later),
            Ok(vec![granted(RecordAccess::ReadOnly)]),
        );
        let state = [temporary, lapsed].iter().fold(Record::default(), evolve);
        assert!(state.grants.is_empty() && state.grant_expiry.is_empty());
    }

    #[test]
    fn temporary_local_roles_lapse_and_ends_in_the_past_are_refused() {
        let role: RoleName = "member".parse().unwrap();
        let end = now() + time::Duration::days(2);
        let assign = |expires_at| RecordCommand::AssignLocalRole {
            at: at(),
            user: ada(),
            role: role.clone(),
            expires_at,
            now: now(),
        };
        check(&[], assign(Some(now())), Err(RecordError::InvalidExpiry));
        check(
            &[],
            assign(Some(now() + time::Duration::days(3651))),
            Err(RecordError::InvalidExpiry),
        );
        let assigned = RecordEvent::LocalRoleAssigned(LocalRoleAssigned {
            entity: at().entity,
            record: at().record,
            user: ada(),
            role: role.clone(),
            expires_at: Some(end),
        });
        check(&[], assign(Some(end)), Ok(vec![assigned.clone()]));
        let state = std::slice::from_ref(&assigned)
            .iter()
            .fold(Record::default(), evolve);
        assert_eq!(next_lapse(&state), Some(end));
        check(
            std::slice::from_ref(&assigned),
            RecordCommand::Lapse {
                at: at(),
                now: end + time::Duration::seconds(1),
            },
            Ok(vec![RecordEvent::LocalRoleLapsed(LocalRoleLapsed {
                entity: at().entity,
                record: at().record,
                user: ada(),
                role,
                expired_at: end,
            })]),
        );
    }
}
