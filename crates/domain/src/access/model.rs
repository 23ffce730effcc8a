//! The vocabulary of access control: permissions (`resource:action`), entities and records,
//! policy principals (roles and the pseudo-roles), record grants, field rules and role menus.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::RoleName;

/// What a permission lets its holder do to a resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
    /// Give a role to a user (only on `role.<name>` resources).
    Assign,
    /// Take a role from a user (only on `role.<name>` resources).
    Revoke,
}

impl Action {
    /// The actions of the CRUD matrix, in the order responses list them.
    pub const CRUD: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Assign => "assign",
            Action::Revoke => "revoke",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "read" => Action::Read,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "assign" => Action::Assign,
            "revoke" => Action::Revoke,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The standard resources every tenant has.
pub const STANDARD_RESOURCES: &[&str] = &[
    "documentation",
    "entities",
    "fields",
    "workflows",
    "modules",
    "files",
];

/// The administrative resources: managing the tenant itself.
pub const ADMIN_RESOURCES: &[&str] = &["menus", "roles", "permissions", "users"];

/// Extra administrative resources idstream itself needs: tenant settings, the audit trail, and
/// provisioning through SCIM (`scim:read` to read the tenant's users and groups there,
/// `scim:update` to change them, each change also needing what the same change through the API
/// needs).
pub const SERVICE_RESOURCES: &[&str] = &["settings", "audit", "scim"];

/// Why a permission, entity name, record id or principal was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessIdError {
    #[error(
        "a permission is `resource:action`: a standard or admin resource (documentation, entities, fields, workflows, modules, files, menus, roles, permissions, users, settings, audit, scim), `entity.<entity>`, a resource the tenant defines, `role.<role>` or `members.<role>`; actions are read, create, update, delete (assign and revoke for roles, update and delete for members)"
    )]
    Permission,
    #[error("an entity name is 1 to 64 characters of a-z, 0-9 and '_', starting with a letter")]
    Entity,
    #[error("a record id is 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")]
    Record,
    #[error("a field name is 1 to 64 characters of a-z, 0-9 and '_', starting with a letter")]
    Field,
    #[error("a principal is a role name or one of _EVERYONE, _AUTHENTICATED_USER, _CREATOR")]
    Principal,
    #[error(
        "a resource name is 1 to 64 characters of a-z, 0-9 and '_', starting with a letter, and not a built-in resource"
    )]
    Resource,
}

fn is_identifier(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $pattern:literal, $valid:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(try_from = "String", into = "String")]
        #[schemars(with = "String", extend("pattern" = $pattern))]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = AccessIdError;
            fn from_str(s: &str) -> Result<Self, AccessIdError> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(AccessIdError::$err)
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = AccessIdError;
            fn try_from(s: String) -> Result<Self, AccessIdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A registered entity (a data type such as `invoice` or `project`), unique per tenant.
    EntityName,
    r"^[a-z][a-z0-9_]{0,63}$",
    |s| is_identifier(s, 64),
    Entity
);

string_id!(
    /// A resource a tenant defines for itself (`invoice_export`, …): it takes the CRUD actions,
    /// like the built-in resources, whose names it cannot take.
    ResourceName,
    r"^[a-z][a-z0-9_]{0,63}$",
    |s| is_identifier(s, 64) && !is_built_in_resource(s),
    Resource
);

/// Whether `name` is a standard, admin or service resource.
pub fn is_built_in_resource(name: &str) -> bool {
    STANDARD_RESOURCES
        .iter()
        .chain(ADMIN_RESOURCES)
        .chain(SERVICE_RESOURCES)
        .any(|r| *r == name)
}

string_id!(
    /// A field of an entity.
    FieldName,
    r"^[a-z][a-z0-9_]{0,63}$",
    |s| is_identifier(s, 64),
    Field
);

string_id!(
    /// The id of one record of an entity, chosen by the application that owns the data.
    RecordId,
    r"^[A-Za-z0-9_-]{1,128}$",
    |s| !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
    Record
);

/// Fields every entity has and every reader sees, whatever the field rules say.
pub const SYSTEM_FIELDS: &[&str] = &["id", "created_at", "updated_at"];

/// The resource part of a permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A standard, admin or service resource (see the constants above).
    Named(&'static str),
    /// `entity.<name>`: the records of one registered entity.
    Entity(EntityName),
    /// `role.<name>`: giving and taking one role.
    Role(RoleName),
    /// A resource the tenant defined (`<name>`): denied to all while it is not defined.
    Custom(ResourceName),
    /// `members.<name>`: administering (`update`: suspend, reinstate, deactivate, reactivate,
    /// sessions, lock-outs, profiles; `delete`: removal from the tenant, erasure) the members who
    /// hold this role, without `users:update`/`users:delete` over everyone.
    Members(RoleName),
}

/// The text of a permission, as the event schemas describe it: a resource (one of the named
/// ones, `entity.<entity>`, or a lowercase name, room left for resources a tenant defines) with a
/// CRUD action, `role.<role>` with `assign` or `revoke`, or `members.<role>` with `update` or
/// `delete`. The service accepts only what [`Permission`]'s parser accepts, which is narrower.
pub const PERMISSION_PATTERN: &str = r"^(([a-z][a-z0-9_]{0,63}|entity\.[a-z][a-z0-9_]{0,63}):(read|create|update|delete)|role\.[a-z][a-z0-9_-]{0,63}:(assign|revoke)|members\.[a-z][a-z0-9_-]{0,63}:(update|delete))$";

/// The pattern of version 1 of the events that carry permissions (before `members.<role>`).
pub const PERMISSION_PATTERN_V1: &str = r"^((documentation|entities|fields|workflows|modules|files|menus|roles|permissions|users|settings|audit|entity\.[a-z][a-z0-9_]{0,63}):(read|create|update|delete)|role\.[a-z][a-z0-9_-]{0,63}:(assign|revoke))$";

/// A permission `resource:action`, validated. Its text form is what roles, users and API keys store.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    extend("pattern" = PERMISSION_PATTERN)
)]
pub struct Permission {
    text: String,
}

impl Permission {
    pub fn new(resource: Resource, action: Action) -> Result<Permission, AccessIdError> {
        let ok = match &resource {
            Resource::Role(_) => matches!(action, Action::Assign | Action::Revoke),
            Resource::Members(_) => matches!(action, Action::Update | Action::Delete),
            _ => Action::CRUD.contains(&action),
        };
        if !ok {
            return Err(AccessIdError::Permission);
        }
        let text = match &resource {
            Resource::Named(name) => format!("{name}:{action}"),
            Resource::Entity(e) => format!("entity.{e}:{action}"),
            Resource::Role(r) => format!("role.{r}:{action}"),
            Resource::Members(r) => format!("members.{r}:{action}"),
            Resource::Custom(r) => format!("{r}:{action}"),
        };
        Ok(Permission { text })
    }

    /// `entity.<entity>:<action>` for a CRUD action.
    pub fn entity(entity: &EntityName, action: Action) -> Result<Permission, AccessIdError> {
        Permission::new(Resource::Entity(entity.clone()), action)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn action(&self) -> Action {
        let (_, action) = self.text.rsplit_once(':').expect("validated");
        Action::parse(action).expect("validated")
    }

    pub fn resource(&self) -> Resource {
        let (resource, _) = self.text.rsplit_once(':').expect("validated");
        parse_resource(resource).expect("validated")
    }

    /// The resource of a permission naming one the tenant defines.
    pub fn custom_resource(&self) -> Option<ResourceName> {
        match self.resource() {
            Resource::Custom(name) => Some(name),
            _ => None,
        }
    }

    /// The entity of an `entity.<name>:…` permission.
    pub fn entity_name(&self) -> Option<EntityName> {
        match self.resource() {
            Resource::Entity(e) => Some(e),
            _ => None,
        }
    }
}

fn parse_resource(s: &str) -> Option<Resource> {
    if let Some(entity) = s.strip_prefix("entity.") {
        return entity.parse().ok().map(Resource::Entity);
    }
    if let Some(role) = s.strip_prefix("role.") {
        return role.parse().ok().map(Resource::Role);
    }
    if let Some(role) = s.strip_prefix("members.") {
        return role.parse().ok().map(Resource::Members);
    }
    if let Some(named) = STANDARD_RESOURCES
        .iter()
        .chain(ADMIN_RESOURCES)
        .chain(SERVICE_RESOURCES)
        .find(|r| **r == s)
    {
        return Some(Resource::Named(named));
    }
    s.parse().ok().map(Resource::Custom)
}

impl FromStr for Permission {
    type Err = AccessIdError;
    fn from_str(s: &str) -> Result<Self, AccessIdError> {
        let (resource, action) = s.rsplit_once(':').ok_or(AccessIdError::Permission)?;
        let resource = parse_resource(resource).ok_or(AccessIdError::Permission)?;
        let action = Action::parse(action).ok_or(AccessIdError::Permission)?;
        Permission::new(resource, action)
    }
}

impl TryFrom<String> for Permission {
    type Error = AccessIdError;
    fn try_from(s: String) -> Result<Self, AccessIdError> {
        s.parse()
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> String {
        p.text
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The built-in pseudo-roles usable in entity policies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum PseudoRole {
    /// Anyone, signed in or not (and members of other tenants).
    #[serde(rename = "_EVERYONE")]
    Everyone,
    /// Any active member of the tenant.
    #[serde(rename = "_AUTHENTICATED_USER")]
    AuthenticatedUser,
    /// The record's owner.
    #[serde(rename = "_CREATOR")]
    Creator,
}

impl PseudoRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PseudoRole::Everyone => "_EVERYONE",
            PseudoRole::AuthenticatedUser => "_AUTHENTICATED_USER",
            PseudoRole::Creator => "_CREATOR",
        }
    }
}

/// Who an entity policy entry applies to: a pseudo-role or a role of the tenant.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(
    with = "String",
    extend("pattern" = r"^(_EVERYONE|_AUTHENTICATED_USER|_CREATOR|[a-z][a-z0-9_-]{0,63})$")
)]
pub enum Principal {
    Pseudo(PseudoRole),
    Role(RoleName),
}

impl FromStr for Principal {
    type Err = AccessIdError;
    fn from_str(s: &str) -> Result<Self, AccessIdError> {
        Ok(match s {
            "_EVERYONE" => Principal::Pseudo(PseudoRole::Everyone),
            "_AUTHENTICATED_USER" => Principal::Pseudo(PseudoRole::AuthenticatedUser),
            "_CREATOR" => Principal::Pseudo(PseudoRole::Creator),
            role => Principal::Role(role.parse().map_err(|_| AccessIdError::Principal)?),
        })
    }
}

impl TryFrom<String> for Principal {
    type Error = AccessIdError;
    fn try_from(s: String) -> Result<Self, AccessIdError> {
        s.parse()
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        p.to_string()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Pseudo(p) => f.write_str(p.as_str()),
            Principal::Role(r) => f.write_str(r.as_str()),
        }
    }
}

/// Who may do what to an entity's records beyond the permission matrix: per CRUD action, the
/// principals allowed. `_CREATOR` applies per record (the owner of that record); the others apply
/// to every record of the entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityPolicy {
    #[serde(default)]
    pub read: BTreeSet<Principal>,
    #[serde(default)]
    pub create: BTreeSet<Principal>,
    #[serde(default)]
    pub update: BTreeSet<Principal>,
    #[serde(default)]
    pub delete: BTreeSet<Principal>,
}

impl Default for EntityPolicy {
    /// Owners may read, update and delete their own records; nothing else is open.
    fn default() -> Self {
        let creator: BTreeSet<Principal> = [Principal::Pseudo(PseudoRole::Creator)].into();
        EntityPolicy {
            read: creator.clone(),
            create: BTreeSet::new(),
            update: creator.clone(),
            delete: creator,
        }
    }
}

impl EntityPolicy {
    /// The principals allowed `action` (empty for non-CRUD actions).
    pub fn principals(&self, action: Action) -> &BTreeSet<Principal> {
        static NONE: BTreeSet<Principal> = BTreeSet::new();
        match action {
            Action::Read => &self.read,
            Action::Create => &self.create,
            Action::Update => &self.update,
            Action::Delete => &self.delete,
            Action::Assign | Action::Revoke => &NONE,
        }
    }

    pub fn allows(&self, action: Action, principal: &Principal) -> bool {
        self.principals(action).contains(principal)
    }
}

/// What a record grant allows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RecordAccess {
    /// Read the record.
    ReadOnly,
    /// Read, update and delete the record.
    ReadWrite,
}

impl RecordAccess {
    pub fn allows(self, action: Action) -> bool {
        match self {
            RecordAccess::ReadOnly => action == Action::Read,
            RecordAccess::ReadWrite => {
                matches!(action, Action::Read | Action::Update | Action::Delete)
            }
        }
    }
}

/// One entry of a role's menu: a label, where it leads, optionally the permission it needs (items
/// a user lacks the permission for are left out of their menu), and sub-items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// Stable id of the item, unique within a menu; menus of several roles merge by id.
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<Permission>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<MenuItem>,
}

/// Most items a menu may hold in all (a menu is configuration, not data).
pub const MAX_MENU_ITEMS: usize = 500;
/// Deepest nesting of menu items.
pub const MAX_MENU_DEPTH: usize = 4;

/// Why a menu was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MenuError {
    #[error(
        "a menu holds at most {MAX_MENU_ITEMS} items nested at most {MAX_MENU_DEPTH} deep, each with a unique id of 1 to 64 characters and a label of 1 to 200 characters (both showing something, without control or bidirectional-formatting characters), an href of at most 2000 and an icon of at most 200 characters"
    )]
    Invalid,
}

/// Checks a menu's shape: bounded size and depth, unique non-empty ids, non-empty labels.
pub fn validate_menu(items: &[MenuItem]) -> Result<(), MenuError> {
    fn walk(
        items: &[MenuItem],
        depth: usize,
        ids: &mut BTreeSet<String>,
        count: &mut usize,
    ) -> bool {
        if depth > MAX_MENU_DEPTH {
            return false;
        }
        items.iter().all(|item| {
            *count += 1;
            let label = item.label.trim();
            *count <= MAX_MENU_ITEMS
                && !item.id.is_empty()
                && item.id.chars().count() <= 64
                && crate::text::shows_something(&item.id)
                && crate::text::is_displayable(&item.id)
                && crate::text::shows_something(label)
                && item.label.chars().count() <= 200
                && crate::text::is_displayable(&item.label)
                && item.href.as_ref().is_none_or(|h| h.chars().count() <= 2000)
                && item.icon.as_ref().is_none_or(|i| i.chars().count() <= 200)
                && ids.insert(item.id.clone())
                && walk(&item.children, depth + 1, ids, count)
        })
    }
    let mut ids = BTreeSet::new();
    let mut count = 0;
    if walk(items, 1, &mut ids, &mut count) {
        Ok(())
    } else {
        Err(MenuError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_the_matrix_entities_and_roles() {
        let pattern = regex::Regex::new(PERMISSION_PATTERN).unwrap();
        for ok in [
            "users:read",
            "files:delete",
            "entity.invoice:update",
            "role.editor:assign",
            "role.owner:revoke",
            "settings:update",
            "members.user:update",
            "members.help-desk:delete",
            "invoice_export:read",
        ] {
            let p: Permission = ok.parse().unwrap();
            assert_eq!(p.as_str(), ok);
            // Everything the service accepts, the event schemas' pattern describes.
            assert!(pattern.is_match(ok), "{ok}");
        }
        for bad in [
            "",
            "users",
            "users:write",
            "widgets:assign",
            "Widgets:read",
            "entity.:read",
            "entity.Invoice:read",
            "role.editor:read",
            "users:assign",
            "entity.invoice:read:x",
            "members.user:read",
            "members.user:assign",
            "members.:update",
        ] {
            assert!(bad.parse::<Permission>().is_err(), "{bad:?}");
        }
        let p: Permission = "entity.invoice:update".parse().unwrap();
        assert_eq!(p.action(), Action::Update);
        assert_eq!(p.entity_name().unwrap().as_str(), "invoice");
        let p: Permission = "invoice_export:update".parse().unwrap();
        assert_eq!(p.custom_resource().unwrap().as_str(), "invoice_export");
        assert!("users".parse::<ResourceName>().is_err());
        let p: Permission = "members.user:delete".parse().unwrap();
        assert_eq!(p.resource(), Resource::Members("user".parse().unwrap()));
        // Version 1's pattern knew no `members.<role>`; the current one knows both.
        let v1 = regex::Regex::new(PERMISSION_PATTERN_V1).unwrap();
        assert!(v1.is_match("role.editor:assign") && !v1.is_match("members.user:update"));
        let now = regex::Regex::new(PERMISSION_PATTERN).unwrap();
        assert!(!now.is_match("members.user:read") && !now.is_match("Users:read"));
    }

    #[test]
    fn principals_are_pseudo_roles_or_role_names() {
        assert_eq!(
            "_CREATOR".parse::<Principal>().unwrap(),
            Principal::Pseudo(PseudoRole::Creator)
        );
        assert_eq!(
            serde_json::to_string(&"editor".parse::<Principal>().unwrap()).unwrap(),
            "\"editor\""
        );
        assert!("_ADMIN".parse::<Principal>().is_err());
    }

    #[test]
    fn grants_allow_what_they_say() {
        assert!(RecordAccess::ReadOnly.allows(Action::Read));
        assert!(!RecordAccess::ReadOnly.allows(Action::Update));
        assert!(RecordAccess::ReadWrite.allows(Action::Delete));
        assert!(!RecordAccess::ReadWrite.allows(Action::Create));
    }

    #[test]
    fn menus_are_bounded_and_ids_unique() {
        let item = |id: &str| MenuItem {
            id: id.into(),
            label: "Label".into(),
            href: None,
            icon: None,
            permission: None,
            children: vec![],
        };
        assert!(validate_menu(&[item("a"), item("b")]).is_ok());
        assert!(validate_menu(&[item("a"), item("a")]).is_err());
        let mut deep = item("d5");
        for i in (1..5).rev() {
            let mut parent = item(&format!("d{i}"));
            parent.children.push(deep);
            deep = parent;
        }
        assert!(validate_menu(&[deep]).is_err());
        assert!(
            validate_menu(&[MenuItem {
                label: " ".into(),
                ..item("x")
            }])
            .is_err()
        );
    }

    #[test]
    fn given_a_menu_item_with_a_bidi_override_or_an_invisible_label_or_id_when_validated_then_refused()
     {
        let item = |id: &str, label: &str| MenuItem {
            id: id.into(),
            label: label.into(),
            href: None,
            icon: None,
            permission: None,
            children: vec![],
        };
        for (id, label) in [
            ("a", "\u{202E}"),
            ("a", "Projects\u{2066}"),
            ("a", "\u{200B}"),
            ("\u{200B}", "Projects"),
            ("a\u{202E}", "Projects"),
        ] {
            assert_eq!(
                validate_menu(&[item(id, label)]),
                Err(MenuError::Invalid),
                "{id:?} {label:?}"
            );
        }
        // An id of 64 characters is within bounds whatever their width in bytes.
        assert!(validate_menu(&[item(&"é".repeat(64), "Projects")]).is_ok());
        assert!(validate_menu(&[item(&"é".repeat(65), "Projects")]).is_err());
    }
}
