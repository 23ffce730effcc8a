//! The entity aggregate: one registered entity (data type) of a tenant, its fields, whether
//! row-level security is on, its policy for the pseudo-roles, and per-role hidden fields.
//! Its stream is `idstream.events.<tenant>.entity.<name>`.

use std::collections::{BTreeMap, BTreeSet};

use crate::access::model::{EntityPolicy, FieldName, SYSTEM_FIELDS};
use crate::events::{
    EntityFieldsChanged, EntityPolicyChanged, EntityRegistered, EntityRlsChanged, FieldRulesChanged,
};
use crate::ids::RoleName;

/// Most fields an entity may declare.
pub const MAX_FIELDS: usize = 500;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entity {
    pub registered: bool,
    pub fields: Vec<FieldName>,
    pub rls: bool,
    pub policy: EntityPolicy,
    /// Fields hidden from each role.
    pub hidden: BTreeMap<RoleName, BTreeSet<FieldName>>,
    /// Fields each role sees but may not search or filter by.
    pub unsearchable: BTreeMap<RoleName, BTreeSet<FieldName>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityCommand {
    Register {
        fields: Vec<FieldName>,
        rls: bool,
        policy: Option<EntityPolicy>,
    },
    ChangeFields {
        fields: Vec<FieldName>,
    },
    SetRls {
        enabled: bool,
    },
    SetPolicy {
        policy: EntityPolicy,
    },
    /// Set `role`'s field rules: hide exactly `hidden` from it, and keep it from searching or
    /// filtering by `unsearchable` (empty sets: no rule).
    HideFields {
        role: RoleName,
        hidden: BTreeSet<FieldName>,
        unsearchable: BTreeSet<FieldName>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityEvent {
    Registered(EntityRegistered),
    FieldsChanged(EntityFieldsChanged),
    RlsChanged(EntityRlsChanged),
    PolicyChanged(EntityPolicyChanged),
    FieldRulesChanged(FieldRulesChanged),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("an entity with this name is registered already in this tenant")]
    AlreadyExists,
    #[error("no such entity in this tenant")]
    NotFound,
    #[error("an entity has at most {MAX_FIELDS} fields, each named once")]
    InvalidFields,
    #[error(
        "only fields of the entity can be hidden or kept from search, and never id, created_at or updated_at"
    )]
    InvalidHiddenField,
}

fn fields(list: Vec<FieldName>) -> Result<Vec<FieldName>, EntityError> {
    let unique: BTreeSet<&FieldName> = list.iter().collect();
    if list.len() > MAX_FIELDS || unique.len() != list.len() {
        return Err(EntityError::InvalidFields);
    }
    Ok(list)
}

pub fn decide(state: &Entity, command: EntityCommand) -> Result<Vec<EntityEvent>, EntityError> {
    if let EntityCommand::Register {
        fields: list,
        rls,
        policy,
    } = command
    {
        if state.registered {
            return Err(EntityError::AlreadyExists);
        }
        return Ok(vec![EntityEvent::Registered(EntityRegistered {
            fields: fields(list)?,
            rls,
            policy: policy.unwrap_or_default(),
        })]);
    }
    if !state.registered {
        return Err(EntityError::NotFound);
    }
    let event = match command {
        EntityCommand::Register { .. } => unreachable!("handled above"),
        EntityCommand::ChangeFields { fields: list } => {
            let list = fields(list)?;
            (list != state.fields).then_some(EntityEvent::FieldsChanged(EntityFieldsChanged {
                fields: list,
            }))
        }
        EntityCommand::SetRls { enabled } => {
            (enabled != state.rls).then_some(EntityEvent::RlsChanged(EntityRlsChanged { enabled }))
        }
        EntityCommand::SetPolicy { policy } => (policy != state.policy)
            .then_some(EntityEvent::PolicyChanged(EntityPolicyChanged { policy })),
        EntityCommand::HideFields {
            role,
            hidden,
            unsearchable,
        } => {
            let hideable =
                |f: &FieldName| state.fields.contains(f) && !SYSTEM_FIELDS.contains(&f.as_str());
            if !hidden.iter().chain(&unsearchable).all(hideable) {
                return Err(EntityError::InvalidHiddenField);
            }
            // A hidden field is unsearchable anyway: it is recorded once, as hidden.
            let unsearchable: BTreeSet<FieldName> =
                unsearchable.difference(&hidden).cloned().collect();
            let current = state.hidden.get(&role).cloned().unwrap_or_default();
            let current_unsearchable = state.unsearchable.get(&role).cloned().unwrap_or_default();
            (current != hidden || current_unsearchable != unsearchable).then_some(
                EntityEvent::FieldRulesChanged(FieldRulesChanged {
                    role,
                    hidden,
                    unsearchable,
                }),
            )
        }
    };
    Ok(event.into_iter().collect())
}

pub fn evolve(mut state: Entity, event: &EntityEvent) -> Entity {
    match event {
        EntityEvent::Registered(e) => {
            state = Entity {
                registered: true,
                fields: e.fields.clone(),
                rls: e.rls,
                policy: e.policy.clone(),
                hidden: BTreeMap::new(),
                unsearchable: BTreeMap::new(),
            };
        }
        EntityEvent::FieldsChanged(e) => {
            state.fields = e.fields.clone();
            // Rules on fields that no longer exist no longer hide anything.
            for rules in [&mut state.hidden, &mut state.unsearchable] {
                for fields in rules.values_mut() {
                    fields.retain(|f| e.fields.contains(f));
                }
                rules.retain(|_, fields| !fields.is_empty());
            }
        }
        EntityEvent::RlsChanged(e) => state.rls = e.enabled,
        EntityEvent::PolicyChanged(e) => state.policy = e.policy.clone(),
        EntityEvent::FieldRulesChanged(e) => {
            for (rules, fields) in [
                (&mut state.hidden, &e.hidden),
                (&mut state.unsearchable, &e.unsearchable),
            ] {
                if fields.is_empty() {
                    rules.remove(&e.role);
                } else {
                    rules.insert(e.role.clone(), fields.clone());
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

    fn f(list: &[&str]) -> Vec<FieldName> {
        list.iter().map(|f| f.parse().unwrap()).collect()
    }

    fn registered() -> EntityEvent {
        EntityEvent::Registered(EntityRegistered {
            fields: f(&["id", "title", "salary"]),
            rls: true,
            policy: EntityPolicy::default(),
        })
    }

    #[test]
    fn an_entity_is_registered_private_by_default_policy() {
        check(
            &[],
            EntityCommand::Register {
                fields: f(&["id", "title", "salary"]),
                rls: true,
                policy: None,
            },
            Ok(vec![registered()]),
        );
    }

    #[test]
    fn duplicate_fields_and_second_registrations_are_refused() {
        check(
            &[],
            EntityCommand::Register {
                fields: f(&["a", "a"]),
                rls: false,
                policy: None,
            },
            Err(EntityError::InvalidFields),
        );
        check(
            &[registered()],
            EntityCommand::Register {
                fields: vec![],
                rls: false,
                policy: None,
            },
            Err(EntityError::AlreadyExists),
        );
    }

    #[test]
    fn fields_of_the_entity_can_be_hidden_but_never_system_fields() {
        let role: RoleName = "intern".parse().unwrap();
        let hide = |list: &[&str]| EntityCommand::HideFields {
            role: role.clone(),
            hidden: f(list).into_iter().collect(),
            unsearchable: BTreeSet::new(),
        };
        check(
            &[registered()],
            hide(&["salary"]),
            Ok(vec![EntityEvent::FieldRulesChanged(FieldRulesChanged {
                role: role.clone(),
                hidden: f(&["salary"]).into_iter().collect(),
                unsearchable: BTreeSet::new(),
            })]),
        );
        check(
            &[registered()],
            hide(&["id"]),
            Err(EntityError::InvalidHiddenField),
        );
        check(
            &[registered()],
            hide(&["ghost"]),
            Err(EntityError::InvalidHiddenField),
        );
    }

    #[test]
    fn turning_rls_to_what_it_is_records_nothing() {
        check(
            &[registered()],
            EntityCommand::SetRls { enabled: true },
            Ok(vec![]),
        );
        check(
            &[],
            EntityCommand::SetRls { enabled: true },
            Err(EntityError::NotFound),
        );
    }

    #[test]
    fn removing_a_field_drops_its_rules() {
        let role: RoleName = "intern".parse().unwrap();
        let state = [
            registered(),
            EntityEvent::FieldRulesChanged(FieldRulesChanged {
                role: role.clone(),
                hidden: BTreeSet::new(),
                unsearchable: f(&["salary"]).into_iter().collect(),
            }),
            EntityEvent::FieldRulesChanged(FieldRulesChanged {
                role: role.clone(),
                hidden: f(&["salary"]).into_iter().collect(),
                unsearchable: f(&["title"]).into_iter().collect(),
            }),
            EntityEvent::FieldsChanged(EntityFieldsChanged {
                fields: f(&["id", "title"]),
            }),
        ]
        .iter()
        .fold(Entity::default(), evolve);
        assert!(state.hidden.is_empty());
    }

    #[test]
    fn fields_can_be_kept_from_search_and_a_hidden_one_is_recorded_as_hidden_only() {
        let role: RoleName = "intern".parse().unwrap();
        let rules = |hidden: &[&str], unsearchable: &[&str]| EntityCommand::HideFields {
            role: role.clone(),
            hidden: f(hidden).into_iter().collect(),
            unsearchable: f(unsearchable).into_iter().collect(),
        };
        let changed = |hidden: &[&str], unsearchable: &[&str]| {
            EntityEvent::FieldRulesChanged(FieldRulesChanged {
                role: role.clone(),
                hidden: f(hidden).into_iter().collect(),
                unsearchable: f(unsearchable).into_iter().collect(),
            })
        };
        check(
            &[registered()],
            rules(&["salary"], &["salary", "title"]),
            Ok(vec![changed(&["salary"], &["title"])]),
        );
        check(
            &[registered(), changed(&["salary"], &["title"])],
            rules(&["salary"], &["title"]),
            Ok(vec![]),
        );
        check(
            &[registered(), changed(&["salary"], &["title"])],
            rules(&["salary"], &[]),
            Ok(vec![changed(&["salary"], &[])]),
        );
        check(
            &[registered()],
            rules(&[], &["created_at"]),
            Err(EntityError::InvalidHiddenField),
        );
        let state = [registered(), changed(&[], &["title"])]
            .iter()
            .fold(Entity::default(), evolve);
        assert_eq!(
            state.unsearchable[&role],
            f(&["title"]).into_iter().collect()
        );
        assert!(state.hidden.is_empty());
    }
}
