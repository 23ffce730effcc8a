//! The formats of what the API takes (ids, names, addresses, cursors, page sizes), each declared
//! once: as a schema component of the OpenAPI document, referenced by every path parameter, query
//! parameter and body field of its kind, with the pattern, length or range the server enforces.
//!
//! Path parameters are typed by their name alone ([`path_parameter`]): `{tenant}` is always a
//! tenant id, `{user}` a user id, and so on. The same table gives a malformed path parameter's
//! refusal its rule ([`path_parameter_rule`]), so the document and the server cannot disagree.
//!
//! The patterns are ECMA-262 regular expressions (as JSON Schema has them) that the `regex`
//! crate reads alike; the unit tests check each one against the domain's own parser.

use std::borrow::Cow;

use idstream_domain::access as domain_access;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// One format: a component of the document.
pub struct Format {
    /// The component's name (`#/components/schemas/<name>`).
    pub name: &'static str,
    pub description: &'static str,
    pub pattern: Option<&'static str>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// A valid value.
    pub example: &'static str,
    /// The server's own check, for path parameters: the rule a value breaks, if it breaks one.
    pub check: Option<Check>,
}

/// A check of a value: `Err(rule)` if it breaks the rule.
pub type Check = fn(&str) -> Result<(), String>;

impl Format {
    pub fn schema(&self) -> Schema {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some(self.description))
            .pattern(self.pattern)
            .min_length(self.min_length)
            .max_length(self.max_length)
            .examples([self.example])
            .into()
    }
}

fn parses<T: std::str::FromStr>(s: &str) -> Result<(), String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map(drop).map_err(|e| e.to_string())
}

/// The characters no displayed text may hold: control characters and the bidirectional
/// embeddings, overrides and isolates (see `idstream_domain::text`).
macro_rules! forbidden {
    () => {
        r"\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069"
    };
}

/// Whitespace as Rust's `char::is_whitespace` (and `str::trim`) has it, spelled out: ECMA-262's
/// `\s` differs (it holds U+FEFF).
macro_rules! whitespace {
    () => {
        r"\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}

/// A character that shows something: neither forbidden, whitespace nor zero-width.
macro_rules! visible {
    () => {
        concat!(
            r"[^",
            whitespace!(),
            r"\u200B-\u200D\u2060\uFEFF",
            forbidden!(),
            "]"
        )
    };
}

/// Text that must show something (a required name).
const SHOWN_TEXT: &str = concat!(
    "^[^",
    forbidden!(),
    "]*",
    visible!(),
    "[^",
    forbidden!(),
    "]*$"
);
/// Text that is blank or shows something (an optional name: blank is empty once trimmed).
const OPTIONAL_TEXT: &str = concat!(
    "^([",
    whitespace!(),
    "]*|[^",
    forbidden!(),
    "]*",
    visible!(),
    "[^",
    forbidden!(),
    "]*)$"
);

pub const TENANT_ID: Format = Format {
    name: "TenantId",
    description: "A tenant id: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.",
    pattern: Some(r"^[a-z0-9][a-z0-9-]{0,62}$"),
    min_length: Some(1),
    max_length: Some(63),
    example: "acme",
    check: Some(parses::<idstream_domain::TenantId>),
};

pub const USER_ID: Format = Format {
    name: "UserId",
    description: "A user id: a ULID in canonical form (26 characters of upper-case Crockford \
        base32, the first 0 to 7).",
    pattern: Some(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
    min_length: Some(26),
    max_length: Some(26),
    example: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    check: Some(parses::<idstream_domain::UserId>),
};

fn ulid(s: &str) -> Result<(), String> {
    ulid::Ulid::from_string(s)
        .map(drop)
        .map_err(|_| "an id is a ULID: 26 characters of Crockford base32".to_owned())
}

pub const ULID: Format = Format {
    name: "Ulid",
    description: "The id of a session, an invitation or an API key: a ULID (26 characters of \
        Crockford base32, either case).",
    pattern: Some(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
    min_length: Some(26),
    max_length: Some(26),
    example: "01HZX3V9Q8B7N6M5K4J3H2G1F0",
    check: Some(ulid),
};

pub const ROLE_NAME: Format = Format {
    name: "RoleName",
    description: "A role name: 1 to 64 of a-z, 0-9, '_' and '-', starting with a letter.",
    pattern: Some(r"^[a-z][a-z0-9_-]{0,63}$"),
    min_length: Some(1),
    max_length: Some(64),
    example: "editor",
    check: Some(parses::<idstream_domain::RoleName>),
};

pub const ENTITY_NAME: Format = Format {
    name: "EntityName",
    description: "An entity name: 1 to 64 of a-z, 0-9 and '_', starting with a letter.",
    pattern: Some(r"^[a-z][a-z0-9_]{0,63}$"),
    min_length: Some(1),
    max_length: Some(64),
    example: "project",
    check: Some(parses::<domain_access::EntityName>),
};

pub const RESOURCE_NAME: Format = Format {
    name: "ResourceName",
    description: "A resource a tenant defines: 1 to 64 of a-z, 0-9 and '_', starting with a \
        letter, not a built-in resource name.",
    pattern: Some(r"^[a-z][a-z0-9_]{0,63}$"),
    min_length: Some(1),
    max_length: Some(64),
    example: "invoice_export",
    check: Some(parses::<domain_access::ResourceName>),
};

pub const ATTRIBUTE_NAME: Format = Format {
    name: "AttributeName",
    description: "A user attribute a tenant defines: 1 to 40 of a-z, 0-9 and '_', starting \
        with a letter.",
    pattern: Some(idstream_domain::attributes::ATTRIBUTE_NAME_PATTERN),
    min_length: Some(1),
    max_length: Some(40),
    example: "department",
    check: Some(attribute_name),
};

pub const PROVIDER_NAME: Format = Format {
    name: "ProviderName",
    description: "An upstream identity provider of a tenant: 1 to 40 of a-z, 0-9 and '-', not \
        starting with '-'.",
    pattern: Some(r"^[a-z0-9][a-z0-9-]{0,39}$"),
    min_length: Some(1),
    max_length: Some(40),
    example: "corp",
    check: Some(provider_name),
};

fn provider_name(value: &str) -> Result<(), String> {
    if idstream_domain::identity::upstream::valid_provider_id(value) {
        Ok(())
    } else {
        Err("a provider's name is 1 to 40 lower-case letters, digits and dashes".into())
    }
}

pub const ATTRIBUTE_FILTER: Format = Format {
    name: "AttributeFilter",
    description: "`<attribute name>:<value>`: a searchable attribute of the tenant and the value \
        to find (text and options without regard to case; numbers, `true`/`false` and \
        `YYYY-MM-DD` dates as written), at most 500 characters of value.",
    pattern: Some(r"^[a-z][a-z0-9_]{0,39}:"),
    min_length: Some(2),
    max_length: Some(541),
    example: "department:Sales",
    check: None,
};

fn attribute_name(name: &str) -> Result<(), String> {
    if idstream_domain::attributes::valid_name(name) {
        Ok(())
    } else {
        Err("an attribute name is 1 to 40 of a-z, 0-9 and '_', starting with a letter".into())
    }
}

pub const FIELD_NAME: Format = Format {
    name: "FieldName",
    description: "A field name: 1 to 64 of a-z, 0-9 and '_', starting with a letter.",
    pattern: Some(r"^[a-z][a-z0-9_]{0,63}$"),
    min_length: Some(1),
    max_length: Some(64),
    example: "title",
    check: Some(parses::<domain_access::FieldName>),
};

pub const RECORD_ID: Format = Format {
    name: "RecordId",
    description: "A record id: 1 to 128 of A-Z, a-z, 0-9, '_' and '-'.",
    pattern: Some(r"^[A-Za-z0-9_-]{1,128}$"),
    min_length: Some(1),
    max_length: Some(128),
    example: "INV-42",
    check: Some(parses::<domain_access::RecordId>),
};

pub const PERMISSION: Format = Format {
    name: "Permission",
    description: "A permission `resource:action`: a standard, admin or service resource \
        (documentation, entities, fields, workflows, modules, files, menus, roles, permissions, \
        users, settings, audit), `entity.<entity name>` or a resource the tenant defines \
        (`invoice_export`) with read, create, update or delete; `role.<role name>` with assign \
        or revoke; or `members.<role name>` with update or delete.",
    pattern: Some(domain_access::model::PERMISSION_PATTERN),
    min_length: None,
    max_length: None,
    example: "entity.project:read",
    check: Some(parses::<domain_access::Permission>),
};

pub const ENTITY_PERMISSION: Format = Format {
    name: "EntityPermission",
    description: "A permission on the records of an entity: `entity.<entity name>:<read, \
        create, update or delete>`.",
    pattern: Some(r"^entity\.[a-z][a-z0-9_]{0,63}:(read|create|update|delete)$"),
    min_length: None,
    max_length: None,
    example: "entity.project:read",
    check: None,
};

pub const PRINCIPAL: Format = Format {
    name: "Principal",
    description: "Who a policy lets act: `_EVERYONE`, `_AUTHENTICATED_USER`, `_CREATOR` (the \
        record's owner) or the name of a role of the tenant.",
    pattern: Some(r"^(_EVERYONE|_AUTHENTICATED_USER|_CREATOR|[a-z][a-z0-9_-]{0,63})$"),
    min_length: Some(1),
    max_length: Some(64),
    example: "_CREATOR",
    check: Some(parses::<domain_access::Principal>),
};

pub const SUBJECT: Format = Format {
    name: "Subject",
    description: "Whom an access question is about: `user:<user id>` or `anonymous`.",
    pattern: Some(r"^(anonymous|user:[0-7][0-9A-HJKMNP-TV-Z]{25})$"),
    min_length: None,
    max_length: None,
    example: "anonymous",
    check: None,
};

pub const AUDIT_SCOPE: Format = Format {
    name: "AuditScope",
    description: "A tenant id, or `_` for the events that belong to no tenant.",
    pattern: Some(r"^(_|[a-z0-9][a-z0-9-]{0,62})$"),
    min_length: Some(1),
    max_length: Some(63),
    example: "acme",
    check: None,
};

pub const AUDIT_ACTOR: Format = Format {
    name: "AuditActor",
    description: "Who caused an event: `user:<id>`, `api_key:<id>` or `system:<name>`, the id \
        or name 1 to 128 visible ASCII characters.",
    pattern: Some(r"^(user|api_key|system):[!-~]{1,128}$"),
    min_length: None,
    max_length: None,
    example: "user:01ARZ3NDEKTSV4RRFFQ69G5FAV",
    check: None,
};

pub const AUDIT_CURSOR: Format = Format {
    name: "AuditCursor",
    description: "The `next` or `prev` of an earlier page: `o` or `n` and a log position.",
    pattern: Some(r"^[on][0-9]{1,19}$"),
    min_length: Some(2),
    max_length: Some(20),
    example: "o42",
    check: None,
};

pub const SEARCH_TEXT: Format = Format {
    name: "SearchText",
    description: "Text to search for: at most 200 characters, without control characters or \
        bidirectional embeddings, overrides and isolates.",
    pattern: Some(concat!("^[^", forbidden!(), "]*$")),
    min_length: None,
    max_length: Some(200),
    example: "ada",
    check: None,
};

pub const DIRECTORY_CURSOR: Format = Format {
    name: "DirectoryCursor",
    description: "The `next` of an earlier page of the user directory (URL-safe base64).",
    pattern: Some(r"^[A-Za-z0-9_-]{1,2048}$"),
    min_length: Some(1),
    max_length: Some(2048),
    example: "MXxlbWFpbHxhfDAxQVJaM05ERUtUU1Y0UlJGRlE2OUc1RkFWfHRhZGFAZXhhbXBsZS5jb20",
    check: None,
};

pub const EMAIL: Format = Format {
    name: "Email",
    description: "An email address: one '@' after 1 to 64 bytes, a dotted domain, no \
        whitespace or control characters inside, at most 254 bytes in all (surrounding \
        whitespace is trimmed; compared without case, in Unicode normal form C).",
    pattern: Some(
        r"^\s*[^\s@\u0000-\u001F\u007F-\u009F]{1,64}@[^\s@.\u0000-\u001F\u007F-\u009F]+(\.[^\s@.\u0000-\u001F\u007F-\u009F]+)+\s*$",
    ),
    min_length: None,
    max_length: None,
    example: "ada@example.com",
    check: None,
};

pub const PERSON_NAME: Format = Format {
    name: "PersonName",
    description: "A first or last name: at most 100 characters (surrounding whitespace \
        trimmed), empty or showing something (not only whitespace and zero-width characters \
        U+200B-U+200D, U+2060, U+FEFF), without control characters or bidirectional \
        embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).",
    pattern: Some(OPTIONAL_TEXT),
    min_length: None,
    max_length: Some(idstream_domain::user::MAX_NAME_CHARS),
    example: "Ada",
    check: None,
};

pub const TENANT_NAME: Format = Format {
    name: "TenantName",
    description: "A tenant's display name: 1 to 200 characters (surrounding whitespace \
        trimmed) showing something (not only whitespace and zero-width characters \
        U+200B-U+200D, U+2060, U+FEFF), without control characters or bidirectional \
        embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).",
    pattern: Some(SHOWN_TEXT),
    min_length: Some(1),
    max_length: Some(idstream_domain::tenant::MAX_NAME_CHARS),
    example: "Acme Inc",
    check: None,
};

pub const API_KEY_NAME: Format = Format {
    name: "ApiKeyName",
    description: "An API key's name: 1 to 100 characters (surrounding whitespace trimmed) \
        showing something (not only whitespace and zero-width characters U+200B-U+200D, \
        U+2060, U+FEFF), without control characters or bidirectional embeddings, overrides and \
        isolates (U+202A-U+202E, U+2066-U+2069).",
    pattern: Some(SHOWN_TEXT),
    min_length: Some(1),
    max_length: Some(idstream_domain::identity::api_key::MAX_NAME_CHARS),
    example: "CI deploys",
    check: None,
};

/// A passkey's credential id: base64url without padding (WebAuthn ids are 16 to 1023 bytes).
pub const PASSKEY_CREDENTIAL: Format = Format {
    name: "PasskeyCredential",
    description: "A passkey's credential id, base64url without padding.",
    pattern: Some(r"^[A-Za-z0-9_-]{1,1364}$"),
    min_length: Some(1),
    max_length: Some(1364),
    example: "pJ9z3kQv1dX0q4aYbE2m7w",
    check: Some(|s| {
        if !s.is_empty()
            && s.len() <= 1364
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(())
        } else {
            Err("a credential id is base64url: 1 to 1364 of A-Z, a-z, 0-9, - and _".into())
        }
    }),
};

/// A passkey's name.
pub const PASSKEY_NAME: Format = Format {
    name: "PasskeyName",
    description: "A passkey's name: 1 to 64 characters (surrounding whitespace trimmed), \
        without control characters.",
    pattern: Some(SHOWN_TEXT),
    min_length: Some(1),
    max_length: Some(64),
    example: "Laptop",
    check: None,
};

pub const ROLE_DESCRIPTION: Format = Format {
    name: "RoleDescription",
    description: "What a role is for: at most 500 characters (surrounding whitespace trimmed), \
        empty or showing something (not only whitespace and zero-width characters \
        U+200B-U+200D, U+2060, U+FEFF), without control characters or bidirectional \
        embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).",
    pattern: Some(OPTIONAL_TEXT),
    min_length: None,
    max_length: Some(idstream_domain::access::role::MAX_DESCRIPTION_CHARS),
    example: "Manages projects",
    check: None,
};

pub const MENU_ITEM_ID: Format = Format {
    name: "MenuItemId",
    description: "A menu item's id, unique within the menu: 1 to 64 characters showing \
        something, without control characters or bidirectional embeddings, overrides and \
        isolates.",
    pattern: Some(SHOWN_TEXT),
    min_length: Some(1),
    max_length: Some(64),
    example: "projects",
    check: None,
};

pub const MENU_LABEL: Format = Format {
    name: "MenuLabel",
    description: "A menu item's label: 1 to 200 characters showing something, without control \
        characters or bidirectional embeddings, overrides and isolates.",
    pattern: Some(SHOWN_TEXT),
    min_length: Some(1),
    max_length: Some(200),
    example: "Projects",
    check: None,
};

pub const SUSPENSION_REASON: Format = Format {
    name: "SuspensionReason",
    description: "Why a user is suspended: at most 500 characters (surrounding whitespace \
        trimmed; blank is none), without control characters.",
    pattern: Some(r"^[^\u0000-\u001F\u007F-\u009F]*$"),
    min_length: None,
    max_length: Some(500),
    example: "Security review",
    check: None,
};

pub const IMAGE_URL: Format = Format {
    name: "ImageUrl",
    description: "An http(s) URL of at most 2048 bytes without whitespace or control \
        characters (surrounding whitespace trimmed); empty for none.",
    pattern: Some(r"^\s*(https?://[^\s\u0000-\u001F\u007F-\u009F]*)?\s*$"),
    min_length: None,
    max_length: None,
    example: "https://example.com/ada.png",
    check: None,
};

pub const IDEMPOTENCY_KEY: Format = Format {
    name: "IdempotencyKey",
    description: "1 to 255 visible ASCII characters or spaces. Retries of a command with the \
        same key (from the same caller) append nothing and answer the first result \
        (`Idempotent-Replayed: true`).",
    pattern: Some(r"^[ -~]{1,255}$"),
    min_length: Some(1),
    max_length: Some(255),
    example: "7b0c1e2a-retry-safe",
    check: None,
};

/// Every format, in the order the document lists them.
pub const ALL: &[&Format] = &[
    &TENANT_ID,
    &USER_ID,
    &ULID,
    &ROLE_NAME,
    &ENTITY_NAME,
    &FIELD_NAME,
    &ATTRIBUTE_FILTER,
    &RECORD_ID,
    &PERMISSION,
    &ENTITY_PERMISSION,
    &PRINCIPAL,
    &SUBJECT,
    &AUDIT_SCOPE,
    &AUDIT_ACTOR,
    &AUDIT_CURSOR,
    &SEARCH_TEXT,
    &DIRECTORY_CURSOR,
    &EMAIL,
    &PERSON_NAME,
    &TENANT_NAME,
    &API_KEY_NAME,
    &PASSKEY_CREDENTIAL,
    &PASSKEY_NAME,
    &ROLE_DESCRIPTION,
    &MENU_ITEM_ID,
    &MENU_LABEL,
    &SUSPENSION_REASON,
    &IMAGE_URL,
    &IDEMPOTENCY_KEY,
];

/// The format of a path parameter, by its name: every path names its parameters after what
/// they are.
pub fn path_parameter(name: &str) -> Option<&'static Format> {
    Some(match name {
        "tenant" => &TENANT_ID,
        "user" => &USER_ID,
        "role" => &ROLE_NAME,
        "entity" => &ENTITY_NAME,
        "record" => &RECORD_ID,
        "resource" => &RESOURCE_NAME,
        "attribute" => &ATTRIBUTE_NAME,
        "id" => &ULID,
        "credential" => &PASSKEY_CREDENTIAL,
        "provider" => &PROVIDER_NAME,
        _ => return None,
    })
}

/// The rule a path parameter's value breaks, if it breaks one.
pub fn path_parameter_rule(name: &str, value: &str) -> Option<String> {
    path_parameter(name)
        .and_then(|format| format.check)
        .and_then(|check| check(value).err())
}

/// Declares a type standing for a format in `value_type = …` of a field or parameter: it is
/// referenced as the format's component.
macro_rules! format_type {
    ($($(#[$doc:meta])* $name:ident => $format:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T($format.schema())
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($format.name)
            }
        }
    )*};
}

format_type! {
    /// [`TENANT_ID`]
    TenantId => TENANT_ID;
    /// [`USER_ID`]
    UserId => USER_ID;
    /// [`ULID`]
    Ulid => ULID;
    /// [`ROLE_NAME`]
    RoleName => ROLE_NAME;
    /// [`ENTITY_NAME`]
    EntityName => ENTITY_NAME;
    /// [`FIELD_NAME`]
    FieldName => FIELD_NAME;
    /// [`RESOURCE_NAME`]
    ResourceName => RESOURCE_NAME;
    /// [`ATTRIBUTE_NAME`]
    AttributeName => ATTRIBUTE_NAME;
    /// [`ATTRIBUTE_FILTER`]
    AttributeFilter => ATTRIBUTE_FILTER;
    /// [`RECORD_ID`]
    RecordId => RECORD_ID;
    /// [`PERMISSION`]
    Permission => PERMISSION;
    /// [`ENTITY_PERMISSION`]
    EntityPermission => ENTITY_PERMISSION;
    /// [`PRINCIPAL`]
    Principal => PRINCIPAL;
    /// [`SUBJECT`]
    Subject => SUBJECT;
    /// [`AUDIT_SCOPE`]
    AuditScope => AUDIT_SCOPE;
    /// [`AUDIT_ACTOR`]
    AuditActor => AUDIT_ACTOR;
    /// [`AUDIT_CURSOR`]
    AuditCursor => AUDIT_CURSOR;
    /// [`SEARCH_TEXT`]
    SearchText => SEARCH_TEXT;
    /// [`DIRECTORY_CURSOR`]
    DirectoryCursor => DIRECTORY_CURSOR;
    /// [`EMAIL`]
    Email => EMAIL;
    /// [`PERSON_NAME`]
    PersonName => PERSON_NAME;
    /// [`TENANT_NAME`]
    TenantName => TENANT_NAME;
    /// [`API_KEY_NAME`]
    ApiKeyName => API_KEY_NAME;
    /// [`PASSKEY_CREDENTIAL`]
    PasskeyCredential => PASSKEY_CREDENTIAL;
    /// [`PASSKEY_NAME`]
    PasskeyName => PASSKEY_NAME;
    /// [`ROLE_DESCRIPTION`]
    RoleDescription => ROLE_DESCRIPTION;
    /// [`MENU_ITEM_ID`]
    MenuItemId => MENU_ITEM_ID;
    /// [`MENU_LABEL`]
    MenuLabel => MENU_LABEL;
    /// [`SUSPENSION_REASON`]
    SuspensionReason => SUSPENSION_REASON;
    /// [`IMAGE_URL`]
    ImageUrl => IMAGE_URL;
}

/// A page size: 1 to 500.
pub struct PageLimit;

impl PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        RefOr::T(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Integer))
                .description(Some("A page size: 1 to 500."))
                .minimum(Some(1))
                .maximum(Some(crate::routes::MAX_PAGE))
                .into(),
        )
    }
}

impl ToSchema for PageLimit {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PageLimit")
    }
}

/// The event types of the log, for the audit trail's `type` filter.
pub struct EventType;

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        let mut names: Vec<&str> = idstream_domain::events::CATALOGUE
            .iter()
            .map(|(name, _, _)| *name)
            .chain(["UserErased"])
            .collect();
        names.sort_unstable();
        names.dedup();
        RefOr::T(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .description(Some("An event type the service writes."))
                .enum_values(Some(names))
                .into(),
        )
    }
}

impl ToSchema for EventType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventType")
    }
}

/// Comma-separated event types (`style: form, explode: false`).
pub fn event_types() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "EventType",
        )))
        .min_items(Some(1))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(format: &Format) -> regex::Regex {
        regex::Regex::new(format.pattern.expect("a pattern")).expect("the pattern compiles")
    }

    fn declared_valid(format: &Format, value: &str) -> bool {
        let chars = value.chars().count();
        format.pattern.is_none_or(|_| regex(format).is_match(value))
            && format.min_length.is_none_or(|min| chars >= min)
            && format.max_length.is_none_or(|max| chars <= max)
    }

    #[test]
    fn every_example_is_valid_by_its_own_format() {
        for format in ALL {
            assert!(declared_valid(format, format.example), "{}", format.name);
            if let Some(check) = format.check {
                assert_eq!(check(format.example), Ok(()), "{}", format.name);
            }
        }
    }

    /// For the formats the server checks with the domain's parsers: the document and the parser
    /// agree on a spread of values, valid and not.
    #[test]
    fn the_patterns_say_what_the_parsers_accept() {
        let samples = [
            "",
            "a",
            "A",
            "0",
            "_",
            "-",
            "acme",
            "acme-2",
            "-acme",
            "Acme",
            "a.b",
            "a b",
            "a_b",
            "anonymous",
            "user:01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01arz3ndektsv4rrffq69g5fav",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01ARZ3NDEKTSV4RRFFQ69G5FAI",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "project",
            "project_2",
            "project-2",
            "INV-42",
            "users:read",
            "users:assign",
            "entity.project:update",
            "entity.Project:read",
            "role.editor:assign",
            "role.editor:read",
            "settings:update",
            "_CREATOR",
            "_EVERYONE",
            "_OTHER",
            "editor",
            "é",
        ];
        let long = [
            "a".repeat(63),
            "a".repeat(64),
            "a".repeat(65),
            "A".repeat(128),
            "A".repeat(129),
        ];
        for format in ALL {
            let Some(check) = format.check else { continue };
            for value in samples
                .iter()
                .copied()
                .chain(long.iter().map(String::as_str))
            {
                // Upper-case ULIDs of other things are accepted in either case, by the decoder.
                if format.name == "Ulid" && value.len() == 26 && value.starts_with('8') {
                    continue;
                }
                assert_eq!(
                    declared_valid(format, value),
                    check(value).is_ok(),
                    "{} {value:?}",
                    format.name
                );
            }
        }
    }

    #[test]
    fn names_refuse_bidirectional_controls_and_invisible_only_text_like_the_domain() {
        let samples = [
            "",
            " ",
            "Ada",
            " Ada ",
            "\u{202E}",
            "Ada\u{202E}",
            "\u{2066}Ada",
            "\u{200B}",
            " \u{200B}\u{FEFF} ",
            "Ada\u{200D}Lovelace",
            "a\nb",
            "李雷",
            "محمد",
        ];
        for value in samples {
            let trimmed = value.trim();
            let domain_ok = idstream_domain::text::is_displayable(trimmed);
            assert_eq!(declared_valid(&PERSON_NAME, value), domain_ok, "{value:?}");
            let shown = domain_ok && idstream_domain::text::shows_something(trimmed);
            assert_eq!(declared_valid(&TENANT_NAME, value), shown, "{value:?}");
        }
    }

    #[test]
    fn subjects_and_emails_are_what_the_server_takes() {
        let subject = regex(&SUBJECT);
        assert!(subject.is_match("anonymous"));
        assert!(subject.is_match("user:01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!subject.is_match("user:01arz3ndektsv4rrffq69g5fav"));
        assert!(!subject.is_match("someone"));
        for good in [
            "ada@example.com",
            " Ada@Example.COM ",
            "jos\u{e9}@example.com",
        ] {
            assert!(regex(&EMAIL).is_match(good), "{good:?}");
            assert!(
                idstream_domain::user::normalize_email(good).is_ok(),
                "{good:?}"
            );
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@.example.com",
            "ada@example..com",
            "ada@example.com.",
        ] {
            assert!(!regex(&EMAIL).is_match(bad), "{bad:?}");
            assert!(
                idstream_domain::user::normalize_email(bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
