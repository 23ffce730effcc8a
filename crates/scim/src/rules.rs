//! What the protocol core needs to know about a resource's attributes: their type, whether
//! strings compare case-exactly, whether they are multi-valued, their mutability and when they
//! are returned (RFC 7643 §2, §7). The caller supplies it through [`AttributeRules`]; [`RuleSet`]
//! is a table-backed implementation with the RFC 7643 User, Group and enterprise defaults.

use std::collections::HashMap;

use crate::path::{AttrPath, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, starts_with_urn};

/// An attribute's data type, as far as comparison and PATCH care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttrKind {
    /// A string, reference or anything else compared as text.
    #[default]
    String,
    /// A boolean: no ordering, and PATCH accepts `"True"`/`"False"` strings for it.
    Boolean,
    /// A date-time: compared as an instant when both sides parse as RFC 3339.
    DateTime,
    /// An integer or decimal.
    Number,
    /// A complex attribute (with sub-attributes): no ordering comparisons.
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutability {
    /// Clients may change it.
    #[default]
    ReadWrite,
    /// Only the service sets it; PATCH may not change it.
    ReadOnly,
    /// Set once: PATCH may give it a value only while it has none.
    Immutable,
    /// Clients may set it but it is never returned.
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Returned {
    /// Returned by default, and when named in `attributes`.
    #[default]
    Default,
    /// Always returned, whatever `attributes` and `excludedAttributes` say.
    Always,
    /// Never returned (`password`).
    Never,
    /// Returned only when named in `attributes`.
    Request,
}

/// The rule of one attribute or sub-attribute. The default is a case-insensitive, single-valued,
/// read-write string returned by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttributeRule {
    /// The data type.
    pub kind: AttrKind,
    /// Whether string values compare case-sensitively.
    pub case_exact: bool,
    /// Whether the attribute holds a list of values.
    pub multi_valued: bool,
    /// Who may change it.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
}

impl AttributeRule {
    /// The rule of a plain string attribute.
    pub const fn string() -> Self {
        AttributeRule {
            kind: AttrKind::String,
            case_exact: false,
            multi_valued: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
        }
    }

    /// A rule of the given kind, otherwise default.
    pub const fn of_kind(kind: AttrKind) -> Self {
        let mut rule = AttributeRule::string();
        rule.kind = kind;
        rule
    }

    /// The same rule, case-exact.
    pub const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    /// The same rule, multi-valued.
    pub const fn multi_valued(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    /// The same rule with the given mutability.
    pub const fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }

    /// The same rule with the given `returned`.
    pub const fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }
}

/// What the caller knows about the attributes of the resources it hands over.
pub trait AttributeRules {
    /// The rule of the attribute at `path` (no filter; URN-qualified for extension attributes);
    /// [`AttributeRule::default`] for attributes it does not know.
    fn rule(&self, path: &AttrPath) -> AttributeRule;

    /// Whether `urn` names an extension schema, whose attributes live in the resource under a
    /// top-level member named by the URN. By default every URN outside
    /// `urn:ietf:params:scim:schemas:core:` is an extension.
    fn is_extension(&self, urn: &str) -> bool {
        const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";
        let is_core = urn
            .get(..CORE_PREFIX.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(CORE_PREFIX));
        !is_core
    }

    /// Whether `urn` names a whole schema (so that `attributes=urn:…:enterprise:2.0:User` or a
    /// PATCH key of that name means the whole extension). By default the three schemas of
    /// RFC 7643; a resource's own `schemas` list counts too, wherever this is asked.
    fn is_schema(&self, urn: &str) -> bool {
        [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA]
            .iter()
            .any(|known| known.eq_ignore_ascii_case(urn))
    }
}

/// No knowledge at all: every attribute is a case-insensitive read-write string.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRules;

impl AttributeRules for NoRules {
    fn rule(&self, _path: &AttrPath) -> AttributeRule {
        AttributeRule::default()
    }
}

/// A table of rules keyed by attribute path (case-insensitive; core-schema URNs ignored).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: HashMap<String, AttributeRule>,
    schemas: Vec<String>,
}

impl RuleSet {
    /// An empty table.
    pub fn new() -> Self {
        RuleSet::default()
    }

    /// The rules RFC 7643 gives the common attributes of Users, Groups and the enterprise User
    /// extension: `id`, `externalId` and `meta.*` case-exact, `id`/`meta`/`groups` read-only,
    /// `meta.created`/`meta.lastModified` date-times, `active` and every `primary` boolean,
    /// `password` write-only and never returned, the multi-valued attributes multi-valued.
    pub fn rfc7643() -> Self {
        let read_only = Mutability::ReadOnly;
        let multi_complex = AttributeRule::of_kind(AttrKind::Complex).multi_valued();
        let mut set = RuleSet::new()
            .with(
                AttrPath::new("id"),
                AttributeRule::string()
                    .case_exact()
                    .mutability(read_only)
                    .returned(Returned::Always),
            )
            .with(
                AttrPath::new("externalId"),
                AttributeRule::string().case_exact(),
            )
            .with(
                AttrPath::new("meta"),
                AttributeRule::of_kind(AttrKind::Complex).mutability(read_only),
            )
            .with(
                AttrPath::with_sub("meta", "created"),
                AttributeRule::of_kind(AttrKind::DateTime).mutability(read_only),
            )
            .with(
                AttrPath::with_sub("meta", "lastModified"),
                AttributeRule::of_kind(AttrKind::DateTime).mutability(read_only),
            )
            .with(
                AttrPath::with_sub("meta", "version"),
                AttributeRule::string().case_exact().mutability(read_only),
            )
            .with(
                AttrPath::with_sub("meta", "location"),
                AttributeRule::string().case_exact().mutability(read_only),
            )
            .with(
                AttrPath::with_sub("meta", "resourceType"),
                AttributeRule::string().case_exact().mutability(read_only),
            )
            .with(
                AttrPath::new("name"),
                AttributeRule::of_kind(AttrKind::Complex),
            )
            .with(
                AttrPath::new("active"),
                AttributeRule::of_kind(AttrKind::Boolean),
            )
            .with(
                AttrPath::new("password"),
                AttributeRule::string()
                    .case_exact()
                    .mutability(Mutability::WriteOnly)
                    .returned(Returned::Never),
            )
            .with(AttrPath::new("groups"), multi_complex.mutability(read_only))
            .with(AttrPath::new("members"), multi_complex)
            .with(
                AttrPath::with_sub("members", "$ref"),
                AttributeRule::string().case_exact(),
            )
            .with(
                AttrPath::new("manager").in_schema(ENTERPRISE_USER_SCHEMA),
                AttributeRule::of_kind(AttrKind::Complex),
            );
        for name in [
            "emails",
            "phoneNumbers",
            "ims",
            "photos",
            "addresses",
            "entitlements",
            "roles",
            "x509Certificates",
        ] {
            set = set.with(AttrPath::new(name), multi_complex).with(
                AttrPath::with_sub(name, "primary"),
                AttributeRule::of_kind(AttrKind::Boolean),
            );
        }
        set
    }

    /// The table with `rule` for `path` (replacing any rule it had).
    pub fn with(mut self, path: AttrPath, rule: AttributeRule) -> Self {
        self.insert(&path, rule);
        self
    }

    /// Sets the rule of `path`.
    pub fn insert(&mut self, path: &AttrPath, rule: AttributeRule) {
        let key = self.key(path);
        self.rules.insert(key, rule);
    }

    /// The table that also counts `urn` as a whole schema (see [`AttributeRules::is_schema`]).
    pub fn with_schema(mut self, urn: impl Into<String>) -> Self {
        self.schemas.push(urn.into());
        self
    }

    /// The lookup key: `[extension-urn:]name[.sub]`, lower-cased.
    fn key(&self, path: &AttrPath) -> String {
        let urn = path.urn.as_deref().filter(|urn| self.is_extension(urn));
        let mut key = String::new();
        if let Some(urn) = urn {
            key.push_str(urn);
            key.push(':');
        }
        key.push_str(&path.name);
        if let Some(sub) = &path.sub_attr {
            key.push('.');
            key.push_str(sub);
        }
        key.to_lowercase()
    }
}

impl AttributeRules for RuleSet {
    fn rule(&self, path: &AttrPath) -> AttributeRule {
        self.rules.get(&self.key(path)).copied().unwrap_or_default()
    }

    fn is_schema(&self, urn: &str) -> bool {
        let known = [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA];
        known
            .iter()
            .copied()
            .chain(self.schemas.iter().map(String::as_str))
            .any(|schema| schema.eq_ignore_ascii_case(urn))
    }
}

/// The URN of `path` when it names an extension, `None` for the core schema.
pub(crate) fn extension_urn<'a>(path: &'a AttrPath, rules: &dyn AttributeRules) -> Option<&'a str> {
    path.urn
        .as_deref()
        .filter(|urn| starts_with_urn(urn) && rules.is_extension(urn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_rfc_rules_when_asked_about_id_then_case_exact_read_only_always_returned() {
        let rule = RuleSet::rfc7643().rule(&AttrPath::new("ID"));
        assert!(rule.case_exact);
        assert_eq!(rule.mutability, Mutability::ReadOnly);
        assert_eq!(rule.returned, Returned::Always);
    }

    #[test]
    fn given_rfc_rules_when_asked_about_meta_then_version_case_exact_and_times_date_times() {
        let rules = RuleSet::rfc7643();
        assert!(
            rules
                .rule(&AttrPath::with_sub("meta", "version"))
                .case_exact
        );
        assert_eq!(
            rules.rule(&AttrPath::with_sub("meta", "lastModified")).kind,
            AttrKind::DateTime
        );
        assert_eq!(
            rules.rule(&AttrPath::with_sub("meta", "created")).kind,
            AttrKind::DateTime
        );
        assert_eq!(
            rules.rule(&AttrPath::new("meta")).mutability,
            Mutability::ReadOnly
        );
    }

    #[test]
    fn given_rfc_rules_when_asked_about_booleans_and_password_then_as_rfc_7643() {
        let rules = RuleSet::rfc7643();
        assert_eq!(rules.rule(&AttrPath::new("active")).kind, AttrKind::Boolean);
        assert_eq!(
            rules.rule(&AttrPath::with_sub("emails", "primary")).kind,
            AttrKind::Boolean
        );
        assert_eq!(
            rules.rule(&AttrPath::new("password")).returned,
            Returned::Never
        );
        assert!(rules.rule(&AttrPath::new("emails")).multi_valued);
        assert!(rules.rule(&AttrPath::new("members")).multi_valued);
    }

    #[test]
    fn given_a_core_urn_qualified_path_when_looked_up_then_same_rule_as_unqualified() {
        let rules = RuleSet::rfc7643();
        let qualified =
            AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:externalId").unwrap();
        assert!(rules.rule(&qualified).case_exact);
    }

    #[test]
    fn given_an_extension_rule_when_looked_up_with_or_without_urn_then_only_the_urn_form_matches() {
        let rules = RuleSet::new().with(
            AttrPath::new("employeeNumber").in_schema(ENTERPRISE_USER_SCHEMA),
            AttributeRule::string().case_exact(),
        );
        let qualified =
            AttrPath::parse(&format!("{ENTERPRISE_USER_SCHEMA}:EmployeeNumber")).unwrap();
        assert!(rules.rule(&qualified).case_exact);
        assert!(!rules.rule(&AttrPath::new("employeeNumber")).case_exact);
    }

    #[test]
    fn given_an_unknown_attribute_when_looked_up_then_the_default_rule() {
        assert_eq!(
            RuleSet::rfc7643().rule(&AttrPath::new("nickName")),
            AttributeRule::default()
        );
        assert_eq!(NoRules.rule(&AttrPath::new("id")), AttributeRule::default());
    }

    #[test]
    fn given_default_extension_test_when_asked_then_core_urns_are_not_extensions() {
        assert!(!NoRules.is_extension(USER_SCHEMA));
        assert!(!NoRules.is_extension("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:Group"));
        assert!(NoRules.is_extension(ENTERPRISE_USER_SCHEMA));
        assert!(NoRules.is_extension("urn:example:custom:1.0:User"));
    }

    #[test]
    fn given_an_added_schema_when_asked_then_it_is_a_schema() {
        let rules = RuleSet::new().with_schema("urn:example:custom:1.0:User");
        assert!(rules.is_schema("URN:example:custom:1.0:user"));
        assert!(rules.is_schema(ENTERPRISE_USER_SCHEMA));
        assert!(!rules.is_schema("urn:example:other"));
        assert!(!NoRules.is_schema("urn:example:custom:1.0:User"));
    }
}
