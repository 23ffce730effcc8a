//! The filter grammar (RFC 7644 §3.4.2.2) checked property-wise against a reference evaluator.
//!
//! The test owns its filter trees ([`Node`]): it generates them over resources shaped like SCIM
//! Users ([`User`]), writes them as filter text itself ([`render`]) and evaluates them with the
//! plain evaluator below ([`reference`]). The crate must parse that text, give the same answer,
//! and give it again for the text it prints back. The semantics are RFC 7644's, with the choices
//! the crate documents where the RFC is silent:
//!
//! - attribute names, operators and `and`/`or`/`not`/`pr` are case-insensitive;
//! - strings compare case-insensitively, except on case-exact attributes (`id`, `externalId`);
//!   `gt`/`ge`/`lt`/`le` order strings lexicographically (by code point, after case folding);
//! - `meta.created`/`meta.lastModified` (date-times by the rules) compare as instants when both
//!   sides are RFC 3339 date-times, as text otherwise; `co`/`sw`/`ew` always compare text;
//! - numbers compare numerically; a string and a number, or a boolean and anything but a boolean,
//!   never match, whatever the operator (`ne` included);
//! - an attribute matches a comparison when one of its values does, so a multi-valued attribute
//!   matches when any value matches, and an attribute without values matches no comparison
//!   (`ne` included);
//! - a complex attribute named without sub-attribute (`emails co "x"`) compares its `value`
//!   sub-attribute (`name` and `meta` have none, so they compare like a missing attribute);
//! - `pr` is false for a missing attribute, null, `""`, `[]` and `{}`;
//! - `eq null` matches when the attribute has no non-null value, `ne null` when it has one, and
//!   `co`/`sw`/`ew null` never match (so `""` counts as a value for `eq null`, though not for
//!   `pr`);
//! - `attr[filter]` matches when one value of the multi-valued attribute satisfies the whole inner
//!   filter, whose paths are that value's sub-attributes;
//! - `gt`/`ge`/`lt`/`le` with `true`, `false` or `null` are refused by the parser, and on an
//!   attribute the rules declare boolean or complex by `matches` (both 400 `invalidFilter`),
//!   whatever the rest of the filter says.
//!
//! Left out of the generated space, because the answer would depend on a choice the RFC does not
//! make (or the crate does not document):
//!
//! - characters whose order depends on whether case folding goes to lower or upper case (those
//!   between `Z` and `a`: `[\]^_` and the backquote) or whose case mapping is not one character
//!   (`ß`, `İ`): the alphabet avoids them;
//! - value filters on single-valued complex attributes (`name[givenName pr]`) and nested ones;
//! - resource members spelled in another case, objects holding only nulls, and booleans or
//!   objects under attributes the rules do not declare boolean or complex (the crate then refuses
//!   an ordering only if evaluation reaches it, so the answer would depend on short-circuiting);
//! - URNs in another case, and `True`/`NULL` (the crate accepts them, leniently);
//! - `schemas` (RFC 7643 does not say whether it is case-exact): in the examples only.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;

use idstream_scim::{Filter, RuleSet, ScimError, ScimType};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Generated (resource, filter) pairs checked by the property.
const CASES: u32 = 3000;

// ---------------------------------------------------------------------------------------------
// The resource: a SCIM User, typed, and its JSON.

/// A single-valued string attribute that may also be JSON null.
#[derive(Clone, Debug)]
enum Nullable {
    Absent,
    Null,
    Text(String),
}

/// One value of a multi-valued complex attribute (`emails`, `ims`).
#[derive(Clone, Debug)]
struct Element {
    value: String,
    kind: Option<String>,
    primary: Option<bool>,
}

#[derive(Clone, Debug)]
struct Name {
    given: Option<String>,
    family: Option<String>,
}

/// `meta`; its JSON always holds `resourceType` too.
#[derive(Clone, Debug)]
struct Meta {
    created: Option<String>,
    last_modified: Option<String>,
}

#[derive(Clone, Debug)]
struct Manager {
    value: String,
    display_name: Option<String>,
}

#[derive(Clone, Debug)]
struct User {
    id: String,
    external_id: Option<String>,
    user_name: String,
    display_name: Nullable,
    title: Option<String>,
    user_type: Option<String>,
    name: Option<Name>,
    active: Option<bool>,
    emails: Option<Vec<Element>>,
    ims: Option<Vec<Element>>,
    meta: Option<Meta>,
    /// A custom attribute holding a JSON number (no rule declares it).
    login_count: Option<i64>,
    /// The enterprise extension's `employeeNumber`, a string of digits.
    employee_number: Option<String>,
    /// The enterprise extension's `manager`, complex.
    manager: Option<Manager>,
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_string(), value);
    }
}

fn element_json(element: &Element) -> Value {
    let mut map = Map::new();
    put(&mut map, "value", Some(json!(element.value)));
    put(&mut map, "type", element.kind.clone().map(Value::from));
    put(&mut map, "primary", element.primary.map(Value::from));
    Value::Object(map)
}

fn elements_json(list: &Option<Vec<Element>>) -> Option<Value> {
    list.as_ref()
        .map(|list| Value::Array(list.iter().map(element_json).collect()))
}

impl User {
    fn has_extension(&self) -> bool {
        self.employee_number.is_some() || self.manager.is_some()
    }

    fn schemas(&self) -> Vec<String> {
        let mut schemas = vec![CORE.to_string()];
        if self.has_extension() {
            schemas.push(ENTERPRISE.to_string());
        }
        schemas
    }

    fn to_json(&self) -> Value {
        let mut user = Map::new();
        put(&mut user, "schemas", Some(json!(self.schemas())));
        put(&mut user, "id", Some(json!(self.id)));
        put(
            &mut user,
            "externalId",
            self.external_id.clone().map(Value::from),
        );
        put(&mut user, "userName", Some(json!(self.user_name)));
        let display_name = match &self.display_name {
            Nullable::Absent => None,
            Nullable::Null => Some(Value::Null),
            Nullable::Text(text) => Some(json!(text)),
        };
        put(&mut user, "displayName", display_name);
        put(&mut user, "title", self.title.clone().map(Value::from));
        put(
            &mut user,
            "userType",
            self.user_type.clone().map(Value::from),
        );
        if let Some(name) = &self.name {
            let mut map = Map::new();
            put(&mut map, "givenName", name.given.clone().map(Value::from));
            put(&mut map, "familyName", name.family.clone().map(Value::from));
            put(&mut user, "name", Some(Value::Object(map)));
        }
        put(&mut user, "active", self.active.map(Value::from));
        put(&mut user, "emails", elements_json(&self.emails));
        put(&mut user, "ims", elements_json(&self.ims));
        if let Some(meta) = &self.meta {
            let mut map = Map::new();
            put(&mut map, "resourceType", Some(json!("User")));
            put(&mut map, "created", meta.created.clone().map(Value::from));
            put(
                &mut map,
                "lastModified",
                meta.last_modified.clone().map(Value::from),
            );
            put(&mut user, "meta", Some(Value::Object(map)));
        }
        put(&mut user, "loginCount", self.login_count.map(Value::from));
        if self.has_extension() {
            let mut extension = Map::new();
            put(
                &mut extension,
                "employeeNumber",
                self.employee_number.clone().map(Value::from),
            );
            if let Some(manager) = &self.manager {
                let mut map = Map::new();
                put(&mut map, "value", Some(json!(manager.value)));
                put(
                    &mut map,
                    "displayName",
                    manager.display_name.clone().map(Value::from),
                );
                put(&mut extension, "manager", Some(Value::Object(map)));
            }
            put(&mut user, ENTERPRISE, Some(Value::Object(extension)));
        }
        Value::Object(user)
    }
}

fn elements(list: &Option<Vec<Element>>) -> &[Element] {
    list.as_deref().unwrap_or(&[])
}

// ---------------------------------------------------------------------------------------------
// What a filter path can name, and what the reference knows about it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Id,
    ExternalId,
    UserName,
    DisplayName,
    /// Never present in the resources.
    NickName,
    Title,
    UserType,
    Schemas,
    Name,
    GivenName,
    FamilyName,
    Active,
    Emails,
    EmailValue,
    EmailType,
    EmailPrimary,
    Ims,
    ImValue,
    ImType,
    Meta,
    Created,
    LastModified,
    LoginCount,
    EmployeeNumber,
    Manager,
    ManagerValue,
    ManagerDisplayName,
    /// `value` inside `emails[…]` or `ims[…]`.
    SubValue,
    /// `type` inside `[…]`.
    SubType,
    /// `primary` inside `[…]`.
    SubPrimary,
    /// `display` inside `[…]`: never present.
    SubDisplay,
}

/// The paths the generator filters on, outside value filters (`schemas` is left out).
const TOP_TARGETS: [Target; 26] = [
    Target::Id,
    Target::ExternalId,
    Target::UserName,
    Target::DisplayName,
    Target::NickName,
    Target::Title,
    Target::UserType,
    Target::Name,
    Target::GivenName,
    Target::FamilyName,
    Target::Active,
    Target::Emails,
    Target::EmailValue,
    Target::EmailType,
    Target::EmailPrimary,
    Target::Ims,
    Target::ImValue,
    Target::ImType,
    Target::Meta,
    Target::Created,
    Target::LastModified,
    Target::LoginCount,
    Target::EmployeeNumber,
    Target::Manager,
    Target::ManagerValue,
    Target::ManagerDisplayName,
];

/// The paths inside a value filter.
const SUB_TARGETS: [Target; 4] = [
    Target::SubValue,
    Target::SubType,
    Target::SubPrimary,
    Target::SubDisplay,
];

/// How an attribute's values compare, as `RuleSet::rfc7643()` declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    ExactText,
    DateTime,
    Boolean,
    /// Not declared: its values happen to be JSON numbers.
    Number,
    Complex,
}

impl Target {
    /// The schema URN the path must carry, and the path after it.
    fn path(self) -> (Option<&'static str>, &'static str) {
        use Target::*;
        let core = match self {
            Id => "id",
            ExternalId => "externalId",
            UserName => "userName",
            DisplayName => "displayName",
            NickName => "nickName",
            Title => "title",
            UserType => "userType",
            Schemas => "schemas",
            Name => "name",
            GivenName => "name.givenName",
            FamilyName => "name.familyName",
            Active => "active",
            Emails => "emails",
            EmailValue => "emails.value",
            EmailType => "emails.type",
            EmailPrimary => "emails.primary",
            Ims => "ims",
            ImValue => "ims.value",
            ImType => "ims.type",
            Meta => "meta",
            Created => "meta.created",
            LastModified => "meta.lastModified",
            LoginCount => "loginCount",
            SubValue => "value",
            SubType => "type",
            SubPrimary => "primary",
            SubDisplay => "display",
            EmployeeNumber => return (Some(ENTERPRISE), "employeeNumber"),
            Manager => return (Some(ENTERPRISE), "manager"),
            ManagerValue => return (Some(ENTERPRISE), "manager.value"),
            ManagerDisplayName => return (Some(ENTERPRISE), "manager.displayName"),
        };
        (None, core)
    }

    fn kind(self) -> Kind {
        use Target::*;
        match self {
            Id | ExternalId => Kind::ExactText,
            Created | LastModified => Kind::DateTime,
            Active | EmailPrimary | SubPrimary => Kind::Boolean,
            LoginCount => Kind::Number,
            Name | Emails | Ims | Meta | Manager => Kind::Complex,
            _ => Kind::Text,
        }
    }

    fn is_sub(self) -> bool {
        SUB_TARGETS.contains(&self)
    }
}

// ---------------------------------------------------------------------------------------------
// The filter tree the test generates, and its text.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    const ALL: [Op; 9] = [
        Op::Eq,
        Op::Ne,
        Op::Co,
        Op::Sw,
        Op::Ew,
        Op::Gt,
        Op::Ge,
        Op::Lt,
        Op::Le,
    ];

    fn word(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Co => "co",
            Op::Sw => "sw",
            Op::Ew => "ew",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    /// Whether `order` (attribute value against literal) satisfies the operator.
    fn holds(self, order: Ordering) -> bool {
        match self {
            Op::Eq => order == Ordering::Equal,
            Op::Ne => order != Ordering::Equal,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Co | Op::Sw | Op::Ew => unreachable!("{self:?} does not order"),
        }
    }
}

/// A literal, and how to write it.
#[derive(Clone, Debug)]
enum Lit {
    /// `escape`: write the non-ASCII characters as `\uXXXX`.
    Str {
        text: String,
        escape: bool,
    },
    /// `text` is a JSON number whose value is `value`.
    Num {
        value: f64,
        text: String,
    },
    Bool(bool),
    Null,
}

#[derive(Clone, Debug)]
enum Node {
    /// `path op literal`; `keyword` is the operator as written.
    Cmp {
        target: Target,
        path: String,
        op: Op,
        keyword: String,
        literal: Lit,
    },
    /// `path pr`.
    Pr {
        target: Target,
        path: String,
        keyword: String,
    },
    /// `a and b` (the keyword as written).
    And(Box<Node>, Box<Node>, String),
    /// `a or b`.
    Or(Box<Node>, Box<Node>, String),
    /// `not (a)`: the keyword as written, with or without a space before the parenthesis.
    Not(Box<Node>, String),
    /// `(a)`.
    Group(Box<Node>),
    /// `path[inner]` on `emails` or `ims`.
    Values {
        target: Target,
        path: String,
        inner: Box<Node>,
    },
}

fn render_literal(literal: &Lit) -> String {
    match literal {
        Lit::Str { text, escape } => {
            let mut out = String::from('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if u32::from(c) < 0x20 || (*escape && !c.is_ascii()) => {
                        out.push_str(&format!("\\u{:04x}", u32::from(c)))
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Lit::Num { text, .. } => text.clone(),
        Lit::Bool(value) => value.to_string(),
        Lit::Null => "null".to_string(),
    }
}

/// The filter text of `node`.
fn render(node: &Node) -> String {
    match node {
        Node::Cmp {
            path,
            keyword,
            literal,
            ..
        } => format!("{path} {keyword} {}", render_literal(literal)),
        Node::Pr { path, keyword, .. } => format!("{path} {keyword}"),
        // "and" binds tighter than "or": an "or" under an "and" needs parentheses.
        Node::And(a, b, keyword) => format!("{} {keyword} {}", and_operand(a), and_operand(b)),
        Node::Or(a, b, keyword) => format!("{} {keyword} {}", render(a), render(b)),
        Node::Not(inner, keyword) => format!("{keyword}({})", render(inner)),
        Node::Group(inner) => format!("({})", render(inner)),
        Node::Values { path, inner, .. } => format!("{path}[{}]", render(inner)),
    }
}

fn and_operand(node: &Node) -> String {
    match node {
        Node::Or(..) => format!("({})", render(node)),
        _ => render(node),
    }
}

// ---------------------------------------------------------------------------------------------
// The reference evaluator.

/// A value the reference compares.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
}

fn text(value: &str) -> V {
    V::Str(value.to_string())
}

fn opt_text(value: Option<&String>) -> Vec<V> {
    value.map(|value| text(value)).into_iter().collect()
}

/// Where paths are read: the resource, or one value of `emails`/`ims` inside `[…]`.
#[derive(Clone, Copy)]
enum Scope<'a> {
    User(&'a User),
    Element(&'a Element),
}

/// The values `target` is compared through: each value of a multi-valued attribute, and the
/// `value` sub-attribute of a complex one.
fn values(scope: Scope<'_>, target: Target) -> Vec<V> {
    use Target::*;
    let user = match scope {
        Scope::Element(element) => {
            return match target {
                SubValue => vec![text(&element.value)],
                SubType => opt_text(element.kind.as_ref()),
                SubPrimary => element.primary.map(V::Bool).into_iter().collect(),
                SubDisplay => Vec::new(),
                _ => panic!("{target:?} inside a value filter"),
            };
        }
        Scope::User(user) => user,
    };
    let name = user.name.as_ref();
    let meta = user.meta.as_ref();
    match target {
        Id => vec![text(&user.id)],
        ExternalId => opt_text(user.external_id.as_ref()),
        UserName => vec![text(&user.user_name)],
        DisplayName => match &user.display_name {
            Nullable::Absent => Vec::new(),
            Nullable::Null => vec![V::Null],
            Nullable::Text(value) => vec![text(value)],
        },
        NickName => Vec::new(),
        Title => opt_text(user.title.as_ref()),
        UserType => opt_text(user.user_type.as_ref()),
        Schemas => user.schemas().iter().map(|schema| text(schema)).collect(),
        // Neither has a `value` sub-attribute.
        Name | Meta => Vec::new(),
        GivenName => opt_text(name.and_then(|name| name.given.as_ref())),
        FamilyName => opt_text(name.and_then(|name| name.family.as_ref())),
        Active => user.active.map(V::Bool).into_iter().collect(),
        Emails | EmailValue => elements(&user.emails)
            .iter()
            .map(|email| text(&email.value))
            .collect(),
        EmailType => elements(&user.emails)
            .iter()
            .filter_map(|email| email.kind.as_deref())
            .map(text)
            .collect(),
        EmailPrimary => elements(&user.emails)
            .iter()
            .filter_map(|email| email.primary)
            .map(V::Bool)
            .collect(),
        Ims | ImValue => elements(&user.ims)
            .iter()
            .map(|im| text(&im.value))
            .collect(),
        ImType => elements(&user.ims)
            .iter()
            .filter_map(|im| im.kind.as_deref())
            .map(text)
            .collect(),
        Created => opt_text(meta.and_then(|meta| meta.created.as_ref())),
        LastModified => opt_text(meta.and_then(|meta| meta.last_modified.as_ref())),
        LoginCount => user
            .login_count
            .map(|count| V::Num(count as f64))
            .into_iter()
            .collect(),
        EmployeeNumber => opt_text(user.employee_number.as_ref()),
        Manager | ManagerValue => user
            .manager
            .iter()
            .map(|manager| text(&manager.value))
            .collect(),
        ManagerDisplayName => opt_text(
            user.manager
                .as_ref()
                .and_then(|manager| manager.display_name.as_ref()),
        ),
        SubValue | SubType | SubPrimary | SubDisplay => panic!("{target:?} outside [ ]"),
    }
}

/// `target pr`: some value that is not null nor `""` (and, for a complex attribute, an object
/// with members, or a list with such an object).
fn present(scope: Scope<'_>, target: Target) -> bool {
    if let Scope::User(user) = scope {
        match target {
            Target::Name => {
                return user
                    .name
                    .as_ref()
                    .is_some_and(|name| name.given.is_some() || name.family.is_some());
            }
            // Every element holds `value`, so none is `{}`.
            Target::Emails => return !elements(&user.emails).is_empty(),
            Target::Ims => return !elements(&user.ims).is_empty(),
            // `meta` always holds `resourceType`, `manager` its `value`.
            Target::Meta => return user.meta.is_some(),
            Target::Manager => return user.manager.is_some(),
            _ => {}
        }
    }
    values(scope, target)
        .iter()
        .any(|value| *value != V::Null && *value != V::Str(String::new()))
}

fn fold(value: &str, kind: Kind) -> String {
    if kind == Kind::ExactText {
        value.to_string()
    } else {
        value.to_lowercase()
    }
}

fn order_text(a: &str, b: &str, kind: Kind) -> Ordering {
    if kind == Kind::DateTime
        && let (Some(a), Some(b)) = (instant(a), instant(b))
    {
        return a.cmp(&b);
    }
    fold(a, kind).cmp(&fold(b, kind))
}

/// `values op literal`: some value satisfies it (for `null`: see the module's documentation).
fn compare(values: &[V], kind: Kind, op: Op, literal: &Lit) -> bool {
    if let Lit::Null = literal {
        let assigned = values.iter().any(|value| *value != V::Null);
        return match op {
            Op::Eq => !assigned,
            Op::Ne => assigned,
            _ => false,
        };
    }
    values.iter().any(|value| match (value, literal) {
        (V::Str(a), Lit::Str { text: b, .. }) => match op {
            Op::Co => fold(a, kind).contains(&fold(b, kind)),
            Op::Sw => fold(a, kind).starts_with(&fold(b, kind)),
            Op::Ew => fold(a, kind).ends_with(&fold(b, kind)),
            _ => op.holds(order_text(a, b, kind)),
        },
        (V::Num(a), Lit::Num { value: b, .. }) => match op {
            Op::Co | Op::Sw | Op::Ew => false,
            _ => op.holds(a.partial_cmp(b).expect("no NaN is generated")),
        },
        (V::Bool(a), Lit::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => false,
    })
}

fn eval(node: &Node, scope: Scope<'_>) -> bool {
    match node {
        Node::Cmp {
            target,
            op,
            literal,
            ..
        } => compare(&values(scope, *target), target.kind(), *op, literal),
        Node::Pr { target, .. } => present(scope, *target),
        Node::And(a, b, _) => eval(a, scope) && eval(b, scope),
        Node::Or(a, b, _) => eval(a, scope) || eval(b, scope),
        Node::Not(inner, _) => !eval(inner, scope),
        Node::Group(inner) => eval(inner, scope),
        Node::Values { target, inner, .. } => {
            let Scope::User(user) = scope else {
                panic!("a value filter inside a value filter")
            };
            let list = match target {
                Target::Emails => &user.emails,
                Target::Ims => &user.ims,
                _ => panic!("a value filter on {target:?}"),
            };
            elements(list)
                .iter()
                .any(|element| eval(inner, Scope::Element(element)))
        }
    }
}

fn any_comparison(node: &Node, test: &dyn Fn(Op, &Lit, Target) -> bool) -> bool {
    match node {
        Node::Cmp {
            target,
            op,
            literal,
            ..
        } => test(*op, literal, *target),
        Node::Pr { .. } => false,
        Node::And(a, b, _) | Node::Or(a, b, _) => {
            any_comparison(a, test) || any_comparison(b, test)
        }
        Node::Not(inner, _) | Node::Group(inner) | Node::Values { inner, .. } => {
            any_comparison(inner, test)
        }
    }
}

/// What a filter does to a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// `Filter::parse` refuses it (400 `invalidFilter`).
    ParseError,
    /// `Filter::matches` refuses it (400 `invalidFilter`).
    EvalError,
    Matches(bool),
    /// Any other error.
    Unexpected(String),
}

/// The reference's answer for `node` on `user`.
fn reference(node: &Node, user: &User) -> Outcome {
    let ordered_by_keyword = |op: Op, literal: &Lit, _: Target| {
        op.is_ordering() && matches!(literal, Lit::Bool(_) | Lit::Null)
    };
    if any_comparison(node, &ordered_by_keyword) {
        return Outcome::ParseError;
    }
    let unordered_attribute = |op: Op, _: &Lit, target: Target| {
        op.is_ordering() && matches!(target.kind(), Kind::Boolean | Kind::Complex)
    };
    if any_comparison(node, &unordered_attribute) {
        return Outcome::EvalError;
    }
    Outcome::Matches(eval(node, Scope::User(user)))
}

/// The crate's answer, as an [`Outcome`].
fn outcome(result: Result<bool, ScimError>) -> Outcome {
    match result {
        Ok(matched) => Outcome::Matches(matched),
        Err(error) if error.status == 400 && error.scim_type == Some(ScimType::InvalidFilter) => {
            Outcome::EvalError
        }
        Err(error) => Outcome::Unexpected(format!("{error:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3339 date-times, read and written by the test itself.

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn year_length(year: i64) -> i64 {
    if is_leap(year) { 366 } else { 365 }
}

fn month_length(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date, counted a year and a month at a time.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let mut days = 0;
    if year >= 1970 {
        days += (1970..year).map(year_length).sum::<i64>();
    } else {
        days -= (year..1970).map(year_length).sum::<i64>();
    }
    days += (1..month)
        .map(|month| month_length(year, month))
        .sum::<i64>();
    days + day - 1
}

/// The date `days` after 1970-01-01.
fn date_of(mut days: i64) -> (i64, i64, i64) {
    let mut year = 1970;
    while days < 0 {
        year -= 1;
        days += year_length(year);
    }
    while days >= year_length(year) {
        days -= year_length(year);
        year += 1;
    }
    let mut month = 1;
    while days >= month_length(year, month) {
        days -= month_length(year, month);
        month += 1;
    }
    (year, month, days + 1)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as nanoseconds since the epoch (`T` and `Z` in
/// either case, as RFC 3339 §5.6 allows).
fn instant(text: &str) -> Option<i128> {
    if !text.is_ascii() || text.len() < 20 {
        return None;
    }
    let bytes = text.as_bytes();
    let number = |part: &str| -> Option<i64> {
        if part.bytes().all(|byte| byte.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let separators = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators {
        return None;
    }
    let (year, month, day) = (
        number(&text[0..4])?,
        number(&text[5..7])?,
        number(&text[8..10])?,
    );
    let (hour, minute, second) = (
        number(&text[11..13])?,
        number(&text[14..16])?,
        number(&text[17..19])?,
    );
    let valid = (1..=12).contains(&month)
        && (1..=month_length(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !valid {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = i128::from(number(&fraction[..digits])?) * 10i128.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset_minutes = if rest == "Z" || rest == "z" {
        0
    } else {
        let sign = match rest.as_bytes() {
            [b'+', _, _, b':', _, _] => 1,
            [b'-', _, _, b':', _, _] => -1,
            _ => return None,
        };
        let (hours, minutes) = (number(&rest[1..3])?, number(&rest[4..6])?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        sign * (hours * 60 + minutes)
    };
    let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// The instant `millis` written at `offset_minutes` from UTC; `style` picks `Z` or `+00:00`,
/// `.000` or nothing, and lower-case `t`/`z`.
fn render_date(millis: i64, offset_minutes: i64, style: u64) -> String {
    let local = millis.div_euclid(1000) + offset_minutes * 60;
    let ms = millis.rem_euclid(1000);
    let (year, month, day) = date_of(local.div_euclid(86_400));
    let second_of_day = local.rem_euclid(86_400);
    let fraction = if ms != 0 {
        format!(".{ms:03}")
    } else if style.is_multiple_of(4) {
        ".000".to_string()
    } else {
        String::new()
    };
    let zone = if offset_minutes == 0 && !style.is_multiple_of(3) {
        "Z".to_string()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let minutes = offset_minutes.abs();
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    let written = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}{zone}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    );
    if style.is_multiple_of(7) {
        written.replace('T', "t").replace('Z', "z")
    } else {
        written
    }
}

const OFFSETS: [i64; 6] = [0, 0, 120, -300, 330, -60];

// ---------------------------------------------------------------------------------------------
// Generators.

/// Mixed case, accents and punctuation, all ordered the same whether folded to lower or to upper
/// case (nothing between `Z` and `a`, no multi-character case mappings).
const ALPHABET: [char; 20] = [
    'a', 'b', 'e', 'n', 'A', 'B', 'E', 'N', 'é', 'É', 'ñ', 'Ñ', '@', '.', ' ', '-', '\'', '"', '1',
    '0',
];

fn word(length: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), length)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Identifiers for the case-exact `id` and `externalId`.
fn identifier() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', 'c', 'A', 'B', 'C', '1', '2', '-']),
        3..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn date() -> impl Strategy<Value = String> {
    (
        946_684_800i64..1_924_991_999,
        prop::sample::select(vec![0i64, 0, 0, 500, 250]),
        prop::sample::select(OFFSETS.to_vec()),
        any::<u64>(),
    )
        .prop_map(|(seconds, ms, offset, style)| render_date(seconds * 1000 + ms, offset, style))
}

fn element() -> impl Strategy<Value = Element> {
    (
        word(0..4),
        word(1..4),
        prop::option::of(prop::sample::select(vec![
            "work", "Work", "home", "HOME", "other", "xmpp",
        ])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(local, domain, kind, primary)| Element {
            value: format!("{local}@{domain}.org"),
            kind: kind.map(str::to_string),
            primary,
        })
}

/// `Some` four times in five.
fn likely<S: Strategy>(strategy: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(0.8, strategy)
}

fn user_strategy() -> impl Strategy<Value = User> {
    let identity = (
        identifier(),
        likely(identifier()),
        word(1..6),
        prop_oneof![
            1 => Just(Nullable::Absent),
            1 => Just(Nullable::Null),
            4 => word(0..6).prop_map(Nullable::Text),
        ],
        likely(word(0..5)),
        likely(prop::sample::select(vec![
            "Employee",
            "employee",
            "Intern",
            "Contractor",
        ])),
        likely(
            (likely(word(0..5)), likely(word(0..5)))
                .prop_map(|(given, family)| Name { given, family }),
        ),
        likely(any::<bool>()),
    );
    let rest = (
        likely(prop::collection::vec(element(), 0..4)),
        likely(prop::collection::vec(element(), 0..3)),
        likely(
            (likely(date()), likely(date())).prop_map(|(created, last_modified)| Meta {
                created,
                last_modified,
            }),
        ),
        likely(0i64..100),
        likely(
            prop::collection::vec(prop::sample::select(vec!['0', '1', '7', '9']), 1..5)
                .prop_map(|digits| digits.into_iter().collect::<String>()),
        ),
        likely(
            (identifier(), likely(word(0..5))).prop_map(|(value, display_name)| Manager {
                value,
                display_name,
            }),
        ),
    );
    (identity, rest).prop_map(
        |(
            (id, external_id, user_name, display_name, title, user_type, name, active),
            (emails, ims, meta, login_count, employee_number, manager),
        )| User {
            id,
            external_id,
            user_name,
            display_name,
            title,
            user_type: user_type.map(str::to_string),
            name,
            active,
            emails,
            ims,
            meta,
            login_count,
            employee_number,
            manager,
        },
    )
}

fn pick<T: Clone>(die: u64, items: &[T]) -> T {
    items[(die % items.len() as u64) as usize].clone()
}

/// `word` in the case `die` picks: as is, upper, lower, or mixed.
fn spell(word: &str, die: u64) -> String {
    match die % 8 {
        0..=3 => word.to_string(),
        4 => word.to_ascii_uppercase(),
        5 => word.to_ascii_lowercase(),
        _ => word
            .chars()
            .enumerate()
            .map(|(index, c)| {
                if (die >> (3 + index % 60)) & 1 == 1 {
                    flip_case(c)
                } else {
                    c
                }
            })
            .collect(),
    }
}

fn flip_case(c: char) -> char {
    if c.is_uppercase() {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c.to_uppercase().next().unwrap_or(c)
    }
}

/// The path of `target` as written: names in some case, core attributes sometimes qualified
/// with the core User URN.
fn spell_path(target: Target, die: u64) -> String {
    let (urn, path) = target.path();
    let path = spell(path, die);
    match urn {
        Some(urn) => format!("{urn}:{path}"),
        None if !target.is_sub() && (die >> 20).is_multiple_of(5) => format!("{CORE}:{path}"),
        None => path,
    }
}

/// `text` with its case changed (Unicode-wise: `é` becomes `É`).
fn change_case(text: &str, die: u64) -> String {
    match die % 10 {
        0..=3 => text.to_string(),
        4 | 5 => text.to_uppercase(),
        6 | 7 => text.to_lowercase(),
        _ => text
            .chars()
            .enumerate()
            .map(|(index, c)| {
                if (die >> (4 + index % 60)) & 1 == 1 {
                    flip_case(c)
                } else {
                    c
                }
            })
            .collect(),
    }
}

fn random_word(die: u64) -> String {
    (0..die % 5)
        .map(|index| pick(die >> (3 + 5 * index), &ALPHABET))
        .collect()
}

/// The string values `target` compares in `user` (inside `parent[…]`: over all its values).
fn own_strings(user: &User, parent: Option<Target>, target: Target) -> Vec<String> {
    let found = match parent {
        None => values(Scope::User(user), target),
        Some(parent) => {
            let list = if parent == Target::Ims {
                &user.ims
            } else {
                &user.emails
            };
            elements(list)
                .iter()
                .flat_map(|element| values(Scope::Element(element), target))
                .collect()
        }
    };
    found
        .into_iter()
        .filter_map(|value| match value {
            V::Str(text) => Some(text),
            _ => None,
        })
        .collect()
}

/// A string literal for `op`: mostly one of the attribute's own values (whole for `eq`, `ne`
/// and the orderings; a prefix, suffix or slice for `sw`, `ew`, `co`) in some case, else another
/// value of the resource, else a random word.
fn string_literal(own: &[String], all: &[String], op: Op, die: u64, case: u64) -> String {
    // `ne` and the orderings match more often on other values than on the attribute's own.
    let own_share = if matches!(op, Op::Eq | Op::Co | Op::Sw | Op::Ew) {
        8
    } else {
        5
    };
    let source = match die % 10 {
        roll if roll < own_share && !own.is_empty() => own,
        0..=8 if !all.is_empty() => all,
        _ => return random_word(case),
    };
    let chars: Vec<char> = pick(die >> 4, source).chars().collect();
    let sliced = match op {
        Op::Co | Op::Sw | Op::Ew => (die >> 20) % 10 < 7,
        Op::Eq => (die >> 20) % 10 < 1,
        _ => (die >> 20) % 10 < 4,
    };
    let slice: String = if sliced {
        let length = ((die >> 24) % (chars.len() as u64 + 1)) as usize;
        let start = match op {
            Op::Sw => 0,
            Op::Ew => chars.len() - length,
            _ => ((die >> 32) % ((chars.len() - length) as u64 + 1)) as usize,
        };
        chars[start..start + length].iter().collect()
    } else {
        chars.iter().collect()
    };
    change_case(&slice, case)
}

/// A date-time literal near one of the attribute's instants (or anywhere), in some offset.
fn date_literal(own: &[String], die: u64) -> String {
    let base = Some(own)
        .filter(|own| !own.is_empty() && !die.is_multiple_of(4))
        .and_then(|own| instant(&pick(die >> 2, own)))
        .map(|nanos| (nanos / 1_000_000) as i64)
        .unwrap_or(946_684_800_000 + ((die >> 8) % 1_000_000_000) as i64 * 1000);
    let delta = pick(
        die >> 40,
        &[0, 0, 0, 0, 1000, -1000, 500, -1, 3_600_000, -86_400_000],
    );
    render_date(base + delta, pick(die >> 44, &OFFSETS), die >> 48)
}

/// A number literal near `own` (or anywhere), written as an integer, a decimal or with an
/// exponent.
fn number_literal(own: Option<f64>, die: u64) -> Lit {
    let base = own.unwrap_or(((die >> 12) % 100) as f64);
    let value = base + pick(die, &[0.0, 0.0, 0.0, 1.0, -1.0, 0.5, -0.5, -100.0]);
    let text = if value.fract() == 0.0 {
        let integer = value as i64;
        match (die >> 8) % 6 {
            0 => format!("{integer}.0"),
            1 => format!("{integer}e0"),
            2 => format!("{integer}E+0"),
            _ => integer.to_string(),
        }
    } else {
        value.to_string()
    };
    Lit::Num { value, text }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LitKind {
    Str,
    Date,
    Num,
    Bool,
    Null,
}

/// A literal for `target op …`: mostly of the attribute's own type, else of another.
fn literal(user: &User, parent: Option<Target>, target: Target, op: Op, dice: [u64; 3]) -> Lit {
    let [kind_die, value_die, case_die] = dice;
    let natural = match target.kind() {
        Kind::Boolean => LitKind::Bool,
        Kind::Number => LitKind::Num,
        Kind::DateTime if !matches!(op, Op::Co | Op::Sw | Op::Ew) => LitKind::Date,
        _ => LitKind::Str,
    };
    let mut chosen = match kind_die % 100 {
        0..=77 => natural,
        78..=85 => LitKind::Str,
        86..=91 => LitKind::Num,
        92..=94 => LitKind::Bool,
        _ => LitKind::Null,
    };
    // Ordering by true, false or null does not parse: keep that to one case in four.
    if op.is_ordering()
        && matches!(chosen, LitKind::Bool | LitKind::Null)
        && (kind_die >> 8) % 4 != 0
    {
        chosen = LitKind::Str;
    }
    let own = own_strings(user, parent, target);
    match chosen {
        LitKind::Str => {
            let all: Vec<String> = TOP_TARGETS
                .iter()
                .flat_map(|other| own_strings(user, None, *other))
                .collect();
            Lit::Str {
                text: string_literal(&own, &all, op, value_die, case_die),
                escape: (kind_die >> 16) % 5 == 0,
            }
        }
        LitKind::Date => Lit::Str {
            text: date_literal(&own, value_die),
            escape: false,
        },
        LitKind::Num => {
            let own = match parent {
                None => values(Scope::User(user), target),
                Some(_) => Vec::new(),
            };
            let own = own.iter().find_map(|value| match value {
                V::Num(number) => Some(*number),
                _ => None,
            });
            number_literal(own, value_die)
        }
        LitKind::Bool => {
            let own = match parent {
                None => values(Scope::User(user), target),
                Some(_) => Vec::new(),
            };
            match own.first() {
                Some(V::Bool(value)) if value_die % 2 != 0 => Lit::Bool(*value),
                _ => Lit::Bool((value_die >> 2) % 2 == 1),
            }
        }
        LitKind::Null => Lit::Null,
    }
}

/// A comparison or `pr` on a path of the resource (or, inside `parent[…]`, of its values).
fn make_leaf(user: &User, parent: Option<Target>, dice: [u64; 8]) -> Node {
    let targets: &[Target] = if parent.is_some() {
        &SUB_TARGETS
    } else {
        &TOP_TARGETS
    };
    let target = pick(dice[0], targets);
    let path = spell_path(target, dice[6]);
    let slot = (dice[1] % 10) as usize;
    if slot == 9 {
        return Node::Pr {
            target,
            path,
            keyword: spell("pr", dice[7]),
        };
    }
    let mut op = Op::ALL[slot];
    // Ordering a boolean or complex attribute is refused: keep that to one case in eight.
    if op.is_ordering()
        && matches!(target.kind(), Kind::Boolean | Kind::Complex)
        && !dice[2].is_multiple_of(8)
    {
        op = pick(dice[2] >> 3, &[Op::Eq, Op::Ne, Op::Co, Op::Sw, Op::Ew]);
    }
    let literal = literal(user, parent, target, op, [dice[3], dice[4], dice[5]]);
    Node::Cmp {
        target,
        path,
        op,
        keyword: spell(op.word(), dice[7]),
        literal,
    }
}

/// `and`, `or`, `not ( … )` and `( … )` over `leaf`.
fn logical(leaf: BoxedStrategy<Node>, depth: u32, size: u32) -> BoxedStrategy<Node> {
    leaf.prop_recursive(depth, size, 2, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone(), any::<u64>())
                .prop_map(|(a, b, die)| Node::And(Box::new(a), Box::new(b), spell("and", die))),
            3 => (inner.clone(), inner.clone(), any::<u64>())
                .prop_map(|(a, b, die)| Node::Or(Box::new(a), Box::new(b), spell("or", die))),
            2 => (inner.clone(), any::<u64>()).prop_map(|(a, die)| {
                let space = if die & (1 << 40) == 0 { " " } else { "" };
                Node::Not(Box::new(a), format!("{}{space}", spell("not", die)))
            }),
            1 => inner.prop_map(|a| Node::Group(Box::new(a))),
        ]
    })
    .boxed()
}

/// `emails[…]` or `ims[…]` with literals drawn from that attribute's values.
fn value_filter(user: User, target: Target) -> impl Strategy<Value = Node> {
    let leaf = prop::array::uniform8(any::<u64>())
        .prop_map(move |dice| make_leaf(&user, Some(target), dice))
        .boxed();
    (logical(leaf, 2, 4), any::<u64>()).prop_map(move |(inner, die)| Node::Values {
        target,
        path: spell_path(target, die),
        inner: Box::new(inner),
    })
}

/// Filters over `user`, with literals drawn from its own values.
fn filter_tree(user: User) -> BoxedStrategy<Node> {
    let own = user.clone();
    let comparison =
        prop::array::uniform8(any::<u64>()).prop_map(move |dice| make_leaf(&own, None, dice));
    let leaf = prop_oneof![
        5 => comparison,
        1 => value_filter(user.clone(), Target::Emails),
        1 => value_filter(user, Target::Ims),
    ];
    logical(leaf.boxed(), 3, 10)
}

// ---------------------------------------------------------------------------------------------
// The property.

/// Checks one case; returns the reference's outcome.
fn check(user: &User, node: &Node) -> Result<Outcome, TestCaseError> {
    let text = render(node);
    let resource = user.to_json();
    let rules = RuleSet::rfc7643();
    let expected = reference(node, user);
    let context = format!("filter: {text}\nresource: {resource}");
    let parsed = match Filter::parse(&text) {
        Ok(filter) => filter,
        Err(error) => {
            prop_assert_eq!(
                &expected,
                &Outcome::ParseError,
                "the crate refused to parse it: {}\n{}",
                error.detail,
                context
            );
            prop_assert_eq!(
                (error.status, error.scim_type),
                (400, Some(ScimType::InvalidFilter)),
                "{}",
                context
            );
            return Ok(expected);
        }
    };
    prop_assert_ne!(
        &expected,
        &Outcome::ParseError,
        "parsed as {:?}\n{}",
        parsed,
        context
    );
    let answer = outcome(parsed.matches(&resource, &rules));
    prop_assert_eq!(
        &answer,
        &expected,
        "crate (left) against reference (right)\n{}",
        context
    );
    let printed = parsed.to_string();
    let reparsed = Filter::parse(&printed).map_err(|error| {
        TestCaseError::fail(format!(
            "the printed {printed:?} does not parse: {}\n{context}",
            error.detail
        ))
    })?;
    prop_assert_eq!(
        outcome(reparsed.matches(&resource, &rules)),
        answer,
        "printed as {}\n{}",
        printed,
        context
    );
    Ok(expected)
}

/// How the cases came out, and how each operator's comparisons (outside value filters, in the
/// cases that were not refused) came out: `[true, false]` per operator, `pr` last.
#[derive(Default)]
struct Tally {
    matched: Cell<u32>,
    unmatched: Cell<u32>,
    parse_errors: Cell<u32>,
    eval_errors: Cell<u32>,
    operators: RefCell<[[u32; 2]; 10]>,
}

impl Tally {
    fn record(&self, outcome: &Outcome, node: &Node, user: &User) {
        let counter = match outcome {
            Outcome::Matches(true) => &self.matched,
            Outcome::Matches(false) => &self.unmatched,
            Outcome::ParseError => &self.parse_errors,
            Outcome::EvalError | Outcome::Unexpected(_) => &self.eval_errors,
        };
        counter.set(counter.get() + 1);
        if let Outcome::Matches(_) = outcome {
            self.record_leaves(node, user);
        }
    }

    fn record_leaves(&self, node: &Node, user: &User) {
        let slot = match node {
            Node::Cmp { op, .. } => Op::ALL.iter().position(|each| each == op).unwrap_or(0),
            Node::Pr { .. } => 9,
            Node::And(a, b, _) | Node::Or(a, b, _) => {
                self.record_leaves(a, user);
                self.record_leaves(b, user);
                return;
            }
            Node::Not(inner, _) | Node::Group(inner) => return self.record_leaves(inner, user),
            Node::Values { .. } => return,
        };
        let matched = eval(node, Scope::User(user));
        self.operators.borrow_mut()[slot][usize::from(!matched)] += 1;
    }

    fn total(&self) -> u32 {
        self.matched.get() + self.unmatched.get() + self.parse_errors.get() + self.eval_errors.get()
    }
}

#[test]
fn given_generated_users_and_filters_when_matched_then_the_crate_agrees_with_the_reference() {
    // The failing cases go to `reference.proptest-regressions`, next to this file.
    let config = Config {
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::with_cases(CASES)
    };
    let mut runner = TestRunner::new(config);
    let strategy = user_strategy().prop_flat_map(|user| (Just(user.clone()), filter_tree(user)));
    let tally = Tally::default();
    let result = runner.run(&strategy, |(user, node)| {
        tally.record(&check(&user, &node)?, &node, &user);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let total = tally.total();
    eprintln!(
        "{total} cases: {} matched, {} did not, {} refused by the parser, {} by matches",
        tally.matched.get(),
        tally.unmatched.get(),
        tally.parse_errors.get(),
        tally.eval_errors.get()
    );
    assert!(total >= CASES, "only {total} cases ran");
    assert!(
        tally.matched.get() * 5 >= total,
        "fewer than 20 % of the cases matched: {}",
        tally.matched.get()
    );
    assert!(
        tally.unmatched.get() * 5 >= total,
        "fewer than 20 % of the cases did not match: {}",
        tally.unmatched.get()
    );
    assert!(tally.parse_errors.get() > 0 && tally.eval_errors.get() > 0);
    let operators = tally.operators.borrow();
    for (index, [matched, unmatched]) in operators.iter().enumerate() {
        let name = Op::ALL.get(index).map_or("pr", |op| op.word());
        eprintln!("  {name}: {matched} comparisons matched, {unmatched} did not");
        assert!(
            *matched >= 20 && *unmatched >= 20,
            "{name} comparisons: {matched} matched, {unmatched} did not"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7644 §3.4.2.2's example filters over a fixed User.

/// The RFC's Babs Jensen, an employee with a title, a work and a home address, and the
/// enterprise extension.
fn bjensen() -> User {
    User {
        id: "2819c223-7f76-453a-919d-413861904646".into(),
        external_id: Some("bjensen".into()),
        user_name: "bjensen".into(),
        display_name: Nullable::Text("Babs Jensen".into()),
        title: Some("Tour Guide".into()),
        user_type: Some("Employee".into()),
        name: Some(Name {
            given: Some("Barbara".into()),
            family: Some("Jensen".into()),
        }),
        active: Some(true),
        emails: Some(vec![
            Element {
                value: "bjensen@example.com".into(),
                kind: Some("work".into()),
                primary: Some(true),
            },
            Element {
                value: "babs@jensen.org".into(),
                kind: Some("home".into()),
                primary: None,
            },
        ]),
        ims: None,
        meta: Some(Meta {
            created: Some("2010-01-23T04:56:22Z".into()),
            last_modified: Some("2011-05-13T04:42:34Z".into()),
        }),
        login_count: Some(42),
        employee_number: Some("701984".into()),
        manager: Some(Manager {
            value: "26118915-6090-4610-87e4-49d8ca9f808d".into(),
            display_name: Some("John Smith".into()),
        }),
    }
}

fn s(text: &str) -> Lit {
    Lit::Str {
        text: text.into(),
        escape: false,
    }
}

fn cmp(target: Target, path: &str, op: Op, literal: Lit) -> Node {
    Node::Cmp {
        target,
        path: path.into(),
        op,
        keyword: op.word().into(),
        literal,
    }
}

fn pr(target: Target, path: &str) -> Node {
    Node::Pr {
        target,
        path: path.into(),
        keyword: "pr".into(),
    }
}

fn and(a: Node, b: Node) -> Node {
    Node::And(Box::new(a), Box::new(b), "and".into())
}

fn or(a: Node, b: Node) -> Node {
    Node::Or(Box::new(a), Box::new(b), "or".into())
}

fn not(inner: Node) -> Node {
    Node::Not(Box::new(inner), "not ".into())
}

fn group(inner: Node) -> Node {
    Node::Group(Box::new(inner))
}

fn values_of(target: Target, path: &str, inner: Node) -> Node {
    Node::Values {
        target,
        path: path.into(),
        inner: Box::new(inner),
    }
}

/// `node` is written `text`, and the reference and the crate both answer `expected` on
/// Babs Jensen.
fn assert_example(node: &Node, text: &str, expected: Outcome) {
    assert_eq!(render(node), text, "the tree is not the filter");
    let user = bjensen();
    assert_eq!(reference(node, &user), expected, "reference on {text}");
    let answer = match Filter::parse(text) {
        Ok(filter) => outcome(filter.matches(&user.to_json(), &RuleSet::rfc7643())),
        Err(_) => Outcome::ParseError,
    };
    assert_eq!(answer, expected, "crate on {text}");
}

const YES: Outcome = Outcome::Matches(true);
const NO: Outcome = Outcome::Matches(false);

#[test]
fn given_bjensen_when_user_name_compared_in_any_case_then_her_name_matches_and_john_does_not() {
    use Target::UserName;
    assert_example(
        &cmp(UserName, "userName", Op::Eq, s("bjensen")),
        r#"userName eq "bjensen""#,
        YES,
    );
    let upper_eq = Node::Cmp {
        target: UserName,
        path: "userName".into(),
        op: Op::Eq,
        keyword: "Eq".into(),
        literal: s("john"),
    };
    assert_example(&upper_eq, r#"userName Eq "john""#, NO);
    assert_example(
        &cmp(UserName, "USERNAME", Op::Eq, s("BJensen")),
        r#"USERNAME eq "BJensen""#,
        YES,
    );
}

#[test]
fn given_bjensen_when_rfc_substring_filters_then_case_insensitive_substrings() {
    assert_example(
        &cmp(Target::FamilyName, "name.familyName", Op::Co, s("O'Malley")),
        r#"name.familyName co "O'Malley""#,
        NO,
    );
    assert_example(
        &cmp(Target::UserName, "userName", Op::Sw, s("J")),
        r#"userName sw "J""#,
        NO,
    );
    assert_example(
        &cmp(
            Target::UserName,
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            Op::Sw,
            s("B"),
        ),
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#,
        YES,
    );
}

#[test]
fn given_bjensen_when_rfc_pr_and_logical_filters_then_as_the_rfc_describes() {
    assert_example(&pr(Target::Title, "title"), "title pr", YES);
    assert_example(
        &and(
            pr(Target::Title, "title"),
            cmp(Target::UserType, "userType", Op::Eq, s("Employee")),
        ),
        r#"title pr and userType eq "Employee""#,
        YES,
    );
    assert_example(
        &or(
            pr(Target::Title, "title"),
            cmp(Target::UserType, "userType", Op::Eq, s("Intern")),
        ),
        r#"title pr or userType eq "Intern""#,
        YES,
    );
    assert_example(
        &cmp(Target::Schemas, "schemas", Op::Eq, s(ENTERPRISE)),
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        YES,
    );
}

#[test]
fn given_bjensen_last_modified_when_compared_with_that_instant_then_only_ge_and_le_match() {
    let instant = "2011-05-13T04:42:34Z";
    for (op, expected) in [(Op::Gt, NO), (Op::Ge, YES), (Op::Lt, NO), (Op::Le, YES)] {
        let node = cmp(Target::LastModified, "meta.lastModified", op, s(instant));
        let text = format!("meta.lastModified {} \"{instant}\"", op.word());
        assert_example(&node, &text, expected);
    }
    // The same instant two hours east of UTC.
    assert_example(
        &cmp(
            Target::LastModified,
            "meta.lastModified",
            Op::Eq,
            s("2011-05-13T06:42:34+02:00"),
        ),
        r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#,
        YES,
    );
}

#[test]
fn given_bjensen_when_rfc_grouped_and_negated_filters_then_as_the_rfc_describes() {
    let employee = || cmp(Target::UserType, "userType", Op::Eq, s("Employee"));
    let example_addresses = || {
        or(
            cmp(Target::Emails, "emails", Op::Co, s("example.com")),
            cmp(Target::EmailValue, "emails.value", Op::Co, s("example.org")),
        )
    };
    assert_example(
        &and(employee(), group(example_addresses())),
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        YES,
    );
    assert_example(
        &and(
            cmp(Target::UserType, "userType", Op::Ne, s("Employee")),
            not(example_addresses()),
        ),
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        NO,
    );
    assert_example(
        &and(
            employee(),
            group(cmp(Target::EmailType, "emails.type", Op::Eq, s("work"))),
        ),
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        YES,
    );
}

#[test]
fn given_bjensen_when_rfc_value_filters_then_one_address_must_meet_every_condition() {
    let work_at_example = |kind: &str| {
        values_of(
            Target::Emails,
            "emails",
            and(
                cmp(Target::SubType, "type", Op::Eq, s(kind)),
                cmp(Target::SubValue, "value", Op::Co, s("@example.com")),
            ),
        )
    };
    assert_example(
        &and(
            cmp(Target::UserType, "userType", Op::Eq, s("Employee")),
            work_at_example("work"),
        ),
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        YES,
    );
    let xmpp = values_of(
        Target::Ims,
        "ims",
        and(
            cmp(Target::SubType, "type", Op::Eq, s("xmpp")),
            cmp(Target::SubValue, "value", Op::Co, s("@foo.com")),
        ),
    );
    assert_example(
        &or(work_at_example("work"), xmpp),
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        YES,
    );
    // The home address is not at example.com, though one address is home and one at
    // example.com.
    assert_example(
        &work_at_example("home"),
        r#"emails[type eq "home" and value co "@example.com"]"#,
        NO,
    );
    assert_example(
        &and(
            cmp(Target::EmailType, "emails.type", Op::Eq, s("home")),
            cmp(
                Target::EmailValue,
                "emails.value",
                Op::Co,
                s("@example.com"),
            ),
        ),
        r#"emails.type eq "home" and emails.value co "@example.com""#,
        YES,
    );
}

#[test]
fn given_bjensen_when_ordering_booleans_or_complex_attributes_then_invalid_filter() {
    assert_example(
        &cmp(Target::Active, "active", Op::Gt, Lit::Bool(true)),
        "active gt true",
        Outcome::ParseError,
    );
    let one = Lit::Num {
        value: 1.0,
        text: "1".into(),
    };
    assert_example(
        &cmp(Target::Active, "active", Op::Lt, one),
        "active lt 1",
        Outcome::EvalError,
    );
    assert_example(
        &or(
            pr(Target::UserName, "userName"),
            cmp(Target::Emails, "emails", Op::Ge, s("a")),
        ),
        r#"userName pr or emails ge "a""#,
        Outcome::EvalError,
    );
}

#[test]
fn given_bjensen_when_strings_meet_numbers_then_nothing_matches_not_even_ne() {
    let number = |value: f64, text: &str| Lit::Num {
        value,
        text: text.into(),
    };
    let employee_number =
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber";
    assert_example(
        &cmp(Target::EmployeeNumber, employee_number, Op::Eq, s("701984")),
        &format!("{employee_number} eq \"701984\""),
        YES,
    );
    assert_example(
        &cmp(
            Target::EmployeeNumber,
            employee_number,
            Op::Ne,
            number(701_984.0, "701984"),
        ),
        &format!("{employee_number} ne 701984"),
        NO,
    );
    assert_example(
        &cmp(
            Target::LoginCount,
            "loginCount",
            Op::Ge,
            number(42.0, "4.2e1"),
        ),
        "loginCount ge 4.2e1",
        YES,
    );
    assert_example(
        &cmp(Target::LoginCount, "loginCount", Op::Eq, s("42")),
        r#"loginCount eq "42""#,
        NO,
    );
}

#[test]
fn given_an_empty_display_name_when_eq_null_and_pr_then_neither_matches() {
    // RFC 7644 is silent on `eq null`; the crate reads null as "no value", and "" is a value
    // (though `pr` counts it as empty, as it does null, [] and {}).
    let user = User {
        display_name: Nullable::Text(String::new()),
        ..bjensen()
    };
    let null_display = |op: Op| cmp(Target::DisplayName, "displayName", op, Lit::Null);
    let rules = RuleSet::rfc7643();
    for (node, expected) in [
        (null_display(Op::Eq), false),
        (null_display(Op::Ne), true),
        (pr(Target::DisplayName, "displayName"), false),
        (cmp(Target::DisplayName, "displayName", Op::Eq, s("")), true),
    ] {
        let text = render(&node);
        assert_eq!(
            reference(&node, &user),
            Outcome::Matches(expected),
            "reference on {text}"
        );
        let answer = Filter::parse(&text)
            .unwrap()
            .matches(&user.to_json(), &rules);
        assert_eq!(answer, Ok(expected), "crate on {text}");
    }
}
