//! The tenant aggregate: an isolated data context with a display name.

use crate::events::{TenantCreated, TenantRenamed};

/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    pub name: Option<String>,
}

impl Tenant {
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    Create { name: String },
    Rename { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantEvent {
    Created(TenantCreated),
    Renamed(TenantRenamed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant with this id already exists")]
    AlreadyExists,
    #[error("no such tenant")]
    NotFound,
    #[error("a tenant name is 1 to {MAX_NAME_CHARS} characters and not blank")]
    InvalidName,
}

fn valid_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(TenantError::InvalidName);
    }
    Ok(name.to_owned())
}

pub fn decide(state: &Tenant, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
    match command {
        TenantCommand::Create { name } => {
            if state.exists() {
                return Err(TenantError::AlreadyExists);
            }
            Ok(vec![TenantEvent::Created(TenantCreated {
                name: valid_name(&name)?,
            })])
        }
        TenantCommand::Rename { name } => {
            let Some(current) = &state.name else {
                return Err(TenantError::NotFound);
            };
            let name = valid_name(&name)?;
            if *current == name {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::Renamed(TenantRenamed { name })])
        }
    }
}

pub fn evolve(mut state: Tenant, event: &TenantEvent) -> Tenant {
    match event {
        TenantEvent::Created(e) => state.name = Some(e.name.clone()),
        TenantEvent::Renamed(e) => state.name = Some(e.name.clone()),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(
        given: &[TenantEvent],
        when: TenantCommand,
        then: Result<Vec<TenantEvent>, TenantError>,
    ) {
        let state = given.iter().fold(Tenant::default(), evolve);
        assert_eq!(decide(&state, when), then);
    }

    fn created(name: &str) -> TenantEvent {
        TenantEvent::Created(TenantCreated { name: name.into() })
    }

    #[test]
    fn a_new_tenant_is_created_with_its_trimmed_name() {
        check(
            &[],
            TenantCommand::Create {
                name: "  Acme Inc ".into(),
            },
            Ok(vec![created("Acme Inc")]),
        );
    }

    #[test]
    fn a_tenant_id_cannot_be_created_twice() {
        check(
            &[created("Acme")],
            TenantCommand::Create {
                name: "Other".into(),
            },
            Err(TenantError::AlreadyExists),
        );
    }

    #[test]
    fn a_blank_or_overlong_name_is_rejected() {
        check(
            &[],
            TenantCommand::Create { name: "   ".into() },
            Err(TenantError::InvalidName),
        );
        check(
            &[],
            TenantCommand::Create {
                name: "x".repeat(201),
            },
            Err(TenantError::InvalidName),
        );
    }

    #[test]
    fn renaming_to_the_same_name_changes_nothing() {
        check(
            &[created("Acme")],
            TenantCommand::Rename {
                name: "Acme".into(),
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn renaming_a_missing_tenant_fails() {
        check(
            &[],
            TenantCommand::Rename {
                name: "Acme".into(),
            },
            Err(TenantError::NotFound),
        );
    }

    #[test]
    fn a_rename_is_recorded() {
        check(
            &[created("Acme")],
            TenantCommand::Rename {
                name: "Acme Ltd".into(),
            },
            Ok(vec![TenantEvent::Renamed(TenantRenamed {
                name: "Acme Ltd".into(),
            })]),
        );
    }
}
