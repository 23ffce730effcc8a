//! The role aggregate: one role of one tenant, its permissions, global-access flag and menu.
//! Its stream is `idstream.events.<tenant>.role.<name>`; the name is the id, so names are unique
//! per tenant by construction.
//!
//! Every tenant has the built-in roles [`OWNER`], [`ADMIN`] and [`USER`] without any event: their
//! definitions are [`builtin`]. `owner` and `admin` have global access and cannot change; `user`'s
//! permissions may be changed; none can be deleted. Any role can carry a menu.

use std::collections::BTreeSet;

use crate::access::model::{Action, MenuItem, Permission, Resource, validate_menu};
use crate::events::{RoleDefined, RoleDeleted, RoleMenuSet, RoleRelabelled, RoleUpdated};
use crate::ids::RoleName;

/// The protected role: global access, assignable and removable only by owners.
pub const OWNER: &str = "owner";
/// Global access: bypasses row- and field-level security.
pub const ADMIN: &str = "admin";
/// Read on the standard resources, create on workflows and files.
pub const USER: &str = "user";
/// The built-in roles, in the order listings show them.
pub const BUILT_IN: &[&str] = &[OWNER, ADMIN, USER];

/// Longest role label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// Longest role description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most permissions one role (or one user's custom set) may hold.
pub const MAX_PERMISSIONS: usize = 2000;

/// What a role allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    pub global_access: bool,
}

/// The definition of a built-in role, or None for any other name.
pub fn builtin(name: &str) -> Option<RoleDefinition> {
    match name {
        OWNER => Some(RoleDefinition {
            description: "Owner of the tenant: global access; only owners assign or remove it"
                .into(),
            permissions: BTreeSet::new(),
            global_access: true,
        }),
        ADMIN => Some(RoleDefinition {
            description: "Administrator: global access, bypasses row- and field-level security"
                .into(),
            permissions: BTreeSet::new(),
            global_access: true,
        }),
        USER => Some(RoleDefinition {
            description: "Standard user: reads the standard resources, creates workflows and files"
                .into(),
            permissions: default_user_permissions(),
            global_access: false,
        }),
        _ => None,
    }
}

/// Read on every standard resource, create on workflows and files.
pub fn default_user_permissions() -> BTreeSet<Permission> {
    let mut set = BTreeSet::new();
    for resource in crate::access::model::STANDARD_RESOURCES {
        set.insert(Permission::new(Resource::Named(resource), Action::Read).expect("valid"));
    }
    for resource in ["workflows", "files"] {
        set.insert(Permission::new(Resource::Named(resource), Action::Create).expect("valid"));
    }
    set
}

/// Whether `name` is the protected owner role.
pub fn is_protected(name: &RoleName) -> bool {
    name.as_str() == OWNER
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// Set by a definition or update; None for a built-in role never changed, or after deletion.
    pub definition: Option<RoleDefinition>,
    pub menu: Vec<MenuItem>,
    pub deleted: bool,
    /// The name people see, when set (the role's name stays its identifier).
    pub label: Option<String>,
}

impl Role {
    /// The role's current definition: its own, else the built-in one; None if it does not exist.
    pub fn current(&self, name: &RoleName) -> Option<RoleDefinition> {
        if self.deleted {
            return None;
        }
        self.definition.clone().or_else(|| builtin(name.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    Define {
        name: RoleName,
        description: String,
        permissions: BTreeSet<Permission>,
        global_access: bool,
    },
    Update {
        name: RoleName,
        description: String,
        permissions: BTreeSet<Permission>,
        global_access: bool,
    },
    SetMenu {
        name: RoleName,
        menu: Vec<MenuItem>,
    },
    Delete {
        name: RoleName,
    },
    /// Sets the label people see (empty: none). The name, which permissions, policies and
    /// tokens use, does not change.
    Relabel {
        name: RoleName,
        label: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleEvent {
    Defined(RoleDefined),
    Updated(RoleUpdated),
    MenuSet(RoleMenuSet),
    Deleted(RoleDeleted),
    Relabelled(RoleRelabelled),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("a role with this name exists already in this tenant")]
    AlreadyExists,
    #[error("no such role in this tenant")]
    NotFound,
    #[error(
        "the built-in roles owner and admin cannot be changed, and no built-in role can be deleted"
    )]
    BuiltIn,
    #[error(
        "a role description is at most {MAX_DESCRIPTION_CHARS} characters (surrounding whitespace trimmed), empty or showing something, without control or bidirectional-formatting characters (U+202A-U+202E, U+2066-U+2069)"
    )]
    InvalidDescription,
    #[error("a role holds at most {MAX_PERMISSIONS} permissions")]
    TooManyPermissions,
    #[error("{0}")]
    InvalidMenu(String),
    #[error(
        "a role label is at most {MAX_LABEL_CHARS} characters (surrounding whitespace trimmed), empty or showing something, without control or bidirectional-formatting characters (U+202A-U+202E, U+2066-U+2069)"
    )]
    InvalidLabel,
}

fn description(text: &str) -> Result<String, RoleError> {
    let text = text.trim();
    if text.chars().count() > MAX_DESCRIPTION_CHARS || !crate::text::is_displayable(text) {
        return Err(RoleError::InvalidDescription);
    }
    Ok(text.to_owned())
}

fn permissions(set: BTreeSet<Permission>) -> Result<BTreeSet<Permission>, RoleError> {
    if set.len() > MAX_PERMISSIONS {
        return Err(RoleError::TooManyPermissions);
    }
    Ok(set)
}

pub fn decide(state: &Role, command: RoleCommand) -> Result<Vec<RoleEvent>, RoleError> {
    match command {
        RoleCommand::Define {
            name,
            description: text,
            permissions: set,
            global_access,
        } => {
            if state.current(&name).is_some() {
                return Err(RoleError::AlreadyExists);
            }
            Ok(vec![RoleEvent::Defined(RoleDefined {
                description: description(&text)?,
                permissions: permissions(set)?,
                global_access,
            })])
        }
        RoleCommand::Update {
            name,
            description: text,
            permissions: set,
            global_access,
        } => {
            let current = state.current(&name).ok_or(RoleError::NotFound)?;
            if matches!(name.as_str(), OWNER | ADMIN) {
                return Err(RoleError::BuiltIn);
            }
            let next = RoleDefinition {
                description: description(&text)?,
                permissions: permissions(set)?,
                global_access,
            };
            if next == current {
                return Ok(vec![]);
            }
            Ok(vec![RoleEvent::Updated(RoleUpdated {
                description: next.description,
                permissions: next.permissions,
                global_access: next.global_access,
            })])
        }
        RoleCommand::SetMenu { name, menu } => {
            state.current(&name).ok_or(RoleError::NotFound)?;
            validate_menu(&menu).map_err(|e| RoleError::InvalidMenu(e.to_string()))?;
            if menu == state.menu {
                return Ok(vec![]);
            }
            Ok(vec![RoleEvent::MenuSet(RoleMenuSet { menu })])
        }
        RoleCommand::Delete { name } => {
            state.current(&name).ok_or(RoleError::NotFound)?;
            if builtin(name.as_str()).is_some() {
                return Err(RoleError::BuiltIn);
            }
            Ok(vec![RoleEvent::Deleted(RoleDeleted {})])
        }
        RoleCommand::Relabel { name, label } => {
            state.current(&name).ok_or(RoleError::NotFound)?;
            let label = label.trim();
            if label.chars().count() > MAX_LABEL_CHARS
                || !crate::text::is_displayable(label)
                || (!label.is_empty() && !crate::text::shows_something(label))
            {
                return Err(RoleError::InvalidLabel);
            }
            if state.label.as_deref().unwrap_or("") == label {
                return Ok(vec![]);
            }
            Ok(vec![RoleEvent::Relabelled(RoleRelabelled {
                label: label.to_owned(),
            })])
        }
    }
}

pub fn evolve(mut state: Role, event: &RoleEvent) -> Role {
    match event {
        RoleEvent::Defined(e) => {
            state = Role {
                definition: Some(RoleDefinition {
                    description: e.description.clone(),
                    permissions: e.permissions.clone(),
                    global_access: e.global_access,
                }),
                menu: Vec::new(),
                deleted: false,
                label: None,
            };
        }
        RoleEvent::Updated(e) => {
            state.definition = Some(RoleDefinition {
                description: e.description.clone(),
                permissions: e.permissions.clone(),
                global_access: e.global_access,
            });
        }
        RoleEvent::MenuSet(e) => state.menu = e.menu.clone(),
        RoleEvent::Deleted(_) => {
            state.definition = None;
            state.menu = Vec::new();
            state.deleted = true;
            state.label = None;
        }
        RoleEvent::Relabelled(e) => {
            state.label = (!e.label.is_empty()).then(|| e.label.clone());
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;

    fn name(s: &str) -> RoleName {
        s.parse().unwrap()
    }

    fn perms(list: &[&str]) -> BTreeSet<Permission> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn define(role: &str, list: &[&str]) -> RoleCommand {
        RoleCommand::Define {
            name: name(role),
            description: " Edits invoices ".into(),
            permissions: perms(list),
            global_access: false,
        }
    }

    fn defined(list: &[&str]) -> RoleEvent {
        RoleEvent::Defined(RoleDefined {
            description: "Edits invoices".into(),
            permissions: perms(list),
            global_access: false,
        })
    }

    #[test]
    fn given_no_role_when_defined_with_a_bidi_override_or_an_invisible_description_then_refused() {
        for description in ["\u{202E}", "Edits \u{202B}invoices", "\u{200B}\u{2060}"] {
            check(
                &[],
                RoleCommand::Define {
                    name: name("editor"),
                    description: description.into(),
                    permissions: perms(&[]),
                    global_access: false,
                },
                Err(RoleError::InvalidDescription),
            );
        }
    }

    #[test]
    fn given_no_role_when_defined_without_a_description_then_it_is_defined() {
        check(
            &[],
            RoleCommand::Define {
                name: name("editor"),
                description: "  ".into(),
                permissions: perms(&[]),
                global_access: false,
            },
            Ok(vec![RoleEvent::Defined(RoleDefined {
                description: String::new(),
                permissions: perms(&[]),
                global_access: false,
            })]),
        );
    }

    #[test]
    fn a_custom_role_is_defined_with_its_permissions() {
        check(
            &[],
            define("editor", &["entity.invoice:update"]),
            Ok(vec![defined(&["entity.invoice:update"])]),
        );
    }

    #[test]
    fn names_are_unique_including_the_built_in_ones() {
        check(
            &[defined(&[])],
            define("editor", &[]),
            Err(RoleError::AlreadyExists),
        );
        check(&[], define("admin", &[]), Err(RoleError::AlreadyExists));
    }

    #[test]
    fn a_deleted_role_can_be_defined_again() {
        check(
            &[defined(&[]), RoleEvent::Deleted(RoleDeleted {})],
            define("editor", &["files:read"]),
            Ok(vec![defined(&["files:read"])]),
        );
    }

    #[test]
    fn owner_and_admin_cannot_change_but_user_can() {
        let update = |role: &str| RoleCommand::Update {
            name: name(role),
            description: "x".into(),
            permissions: perms(&["files:read"]),
            global_access: false,
        };
        check(&[], update("admin"), Err(RoleError::BuiltIn));
        check(&[], update("owner"), Err(RoleError::BuiltIn));
        check(
            &[],
            update("user"),
            Ok(vec![RoleEvent::Updated(RoleUpdated {
                description: "x".into(),
                permissions: perms(&["files:read"]),
                global_access: false,
            })]),
        );
        check(&[], update("ghost"), Err(RoleError::NotFound));
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        check(
            &[defined(&["files:read"])],
            RoleCommand::Update {
                name: name("editor"),
                description: "Edits invoices".into(),
                permissions: perms(&["files:read"]),
                global_access: false,
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn built_in_roles_cannot_be_deleted() {
        check(
            &[],
            RoleCommand::Delete { name: name("user") },
            Err(RoleError::BuiltIn),
        );
        check(
            &[],
            RoleCommand::Delete {
                name: name("editor"),
            },
            Err(RoleError::NotFound),
        );
    }

    #[test]
    fn the_user_role_reads_standard_resources_and_creates_workflows_and_files() {
        let user = builtin(USER).unwrap();
        assert!(
            user.permissions
                .contains(&"documentation:read".parse().unwrap())
        );
        assert!(user.permissions.contains(&"files:create".parse().unwrap()));
        assert!(!user.permissions.contains(&"files:delete".parse().unwrap()));
        assert!(!user.permissions.contains(&"users:read".parse().unwrap()));
        assert_eq!(user.permissions.len(), 8);
        assert!(builtin(ADMIN).unwrap().global_access);
    }

    #[test]
    fn a_role_gets_a_label_and_keeps_its_name() {
        let relabel = |role: &str, label: &str| RoleCommand::Relabel {
            name: name(role),
            label: label.into(),
        };
        let relabelled = |label: &str| {
            RoleEvent::Relabelled(RoleRelabelled {
                label: label.into(),
            })
        };
        // Built-in roles too: a label changes nothing they allow.
        check(
            &[],
            relabel("admin", " Administrators "),
            Ok(vec![relabelled("Administrators")]),
        );
        check(
            &[relabelled("Administrators")],
            relabel("admin", "Administrators"),
            Ok(vec![]),
        );
        check(
            &[relabelled("Administrators")],
            relabel("admin", ""),
            Ok(vec![relabelled("")]),
        );
        check(&[], relabel("ghost", "Ghosts"), Err(RoleError::NotFound));
        check(
            &[],
            relabel("user", &"x".repeat(101)),
            Err(RoleError::InvalidLabel),
        );
        check(
            &[],
            relabel("user", "\u{200B}"),
            Err(RoleError::InvalidLabel),
        );
        let state = [relabelled("Staff")].iter().fold(Role::default(), evolve);
        assert_eq!(state.label.as_deref(), Some("Staff"));
        assert!(state.current(&name("user")).is_some());
    }
}
