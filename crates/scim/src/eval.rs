//! Evaluation of a [`Filter`] against a resource given as JSON (RFC 7644 §3.4.2.2).
//!
//! - Attribute names match case-insensitively; extension attributes are read from the member
//!   named by their schema URN.
//! - Strings compare case-insensitively unless the rules say the attribute is case-exact;
//!   date-time attributes compare as instants when both sides parse as RFC 3339.
//! - A multi-valued attribute matches when any of its values matches. A complex attribute named
//!   without sub-attribute (`emails co "x"`) is compared through its `value` sub-attribute.
//! - `pr` is true for a value that is not null, `""`, `[]` or `{}`.
//! - `gt`/`ge`/`lt`/`le` on booleans or complex attributes are 400 `invalidFilter`; values of
//!   different types (a string and a number) simply do not match.
//! - `eq null` matches an attribute without value and `ne null` one with a value (the RFC is
//!   silent; null is how JSON says "unassigned").

use std::cmp::Ordering;

use serde_json::Value;

use crate::compare::Comparison;
use crate::error::ScimError;
use crate::filter::{CompareOp, Filter};
use crate::json::{is_unassigned, member};
use crate::path::AttrPath;
use crate::rules::{AttrKind, AttributeRules, extension_urn};

impl Filter {
    /// Whether `resource` matches the filter. A 400 `invalidFilter` when the filter orders
    /// booleans or complex attributes (by the rules, or by the values met in the resource).
    pub fn matches(&self, resource: &Value, rules: &dyn AttributeRules) -> Result<bool, ScimError> {
        self.check(rules)?;
        evaluate(self, Scope::Resource(resource), rules)
    }

    /// Refuses (400 `invalidFilter`) what the rules alone show to be invalid: `gt`, `ge`, `lt`
    /// or `le` on an attribute declared boolean or complex. Lets a search refuse such a filter
    /// even when there is no resource to evaluate it on.
    pub fn check(&self, rules: &dyn AttributeRules) -> Result<(), ScimError> {
        check_tree(self, None, rules)
    }
}

/// Whether one value of the multi-valued attribute `parent` matches the value filter `filter`
/// (whose paths name sub-attributes), as in `parent[filter]`.
pub(crate) fn element_matches(
    filter: &Filter,
    element: &Value,
    parent: &AttrPath,
    rules: &dyn AttributeRules,
) -> Result<bool, ScimError> {
    check_tree(filter, Some(parent), rules)?;
    evaluate(
        filter,
        Scope::Element {
            value: element,
            parent,
        },
        rules,
    )
}

/// The value of the attribute `path` names in `resource` (ignoring its sub-attribute): read
/// from the extension's member for extension URNs, from the top level otherwise.
pub(crate) fn attribute_value<'a>(
    resource: &'a Value,
    path: &AttrPath,
    rules: &dyn AttributeRules,
) -> Option<&'a Value> {
    let container = match extension_urn(path, rules) {
        Some(urn) => member(resource, urn)?,
        None => resource,
    };
    member(container, &path.name)
}

/// The values at `sub` (or the values themselves) of an attribute, multi-valued ones flattened.
pub(crate) fn leaf_values<'a>(attribute: Option<&'a Value>, sub: Option<&str>) -> Vec<&'a Value> {
    let pick = |value: &'a Value| match sub {
        Some(sub) => member(value, sub),
        None => Some(value),
    };
    match attribute {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(pick).collect(),
        Some(value) => pick(value).into_iter().collect(),
    }
}

/// Where the paths of a filter are read: the resource, or one value of a multi-valued
/// attribute inside `path[ … ]`.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a Value),
    Element {
        value: &'a Value,
        parent: &'a AttrPath,
    },
}

impl<'a> Scope<'a> {
    /// The attribute value `path` names here, and the path its rules are looked up by.
    fn locate(self, path: &AttrPath, rules: &dyn AttributeRules) -> (Vec<&'a Value>, AttrPath) {
        match self {
            Scope::Resource(resource) => {
                let attribute = attribute_value(resource, path, rules);
                (
                    leaf_values(attribute, path.sub_attr.as_deref()),
                    path.clone(),
                )
            }
            Scope::Element { value, parent } => (
                leaf_values(member(value, &path.name), None),
                parent.child(&path.name),
            ),
        }
    }
}

/// The path rules are looked up by: relative to `parent` inside a value filter.
fn rule_path(path: &AttrPath, parent: Option<&AttrPath>) -> AttrPath {
    match parent {
        Some(parent) => parent.child(&path.name),
        None => path.clone(),
    }
}

fn check_tree(
    filter: &Filter,
    parent: Option<&AttrPath>,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    match filter {
        Filter::Compare { path, op, .. } if op.is_ordering() => {
            let kind = rules.rule(&rule_path(path, parent)).kind;
            match kind {
                AttrKind::Boolean | AttrKind::Complex => {
                    Err(unordered(*op, &rule_path(path, parent), kind))
                }
                _ => Ok(()),
            }
        }
        Filter::Compare { .. } | Filter::Present(_) => Ok(()),
        Filter::And(parts) | Filter::Or(parts) => parts
            .iter()
            .try_for_each(|part| check_tree(part, parent, rules)),
        Filter::Not(inner) => check_tree(inner, parent, rules),
        Filter::ValuePath { path, filter } => check_tree(filter, Some(path), rules),
    }
}

fn unordered(op: CompareOp, path: &AttrPath, kind: AttrKind) -> ScimError {
    let what = if kind == AttrKind::Boolean {
        "boolean"
    } else {
        "complex"
    };
    ScimError::invalid_filter(format!(
        "\"{op}\" cannot compare {path}, a {what} attribute"
    ))
}

fn evaluate(
    filter: &Filter,
    scope: Scope<'_>,
    rules: &dyn AttributeRules,
) -> Result<bool, ScimError> {
    match filter {
        Filter::Compare { path, op, value } => compare(scope, path, *op, value, rules),
        Filter::Present(path) => Ok(scope
            .locate(path, rules)
            .0
            .into_iter()
            .any(|value| !is_unassigned(value))),
        Filter::And(parts) => all(parts, scope, rules),
        Filter::Or(parts) => any(parts, scope, rules),
        Filter::Not(inner) => Ok(!evaluate(inner, scope, rules)?),
        Filter::ValuePath { path, filter } => value_path(scope, path, filter, rules),
    }
}

fn all(parts: &[Filter], scope: Scope<'_>, rules: &dyn AttributeRules) -> Result<bool, ScimError> {
    for part in parts {
        if !evaluate(part, scope, rules)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn any(parts: &[Filter], scope: Scope<'_>, rules: &dyn AttributeRules) -> Result<bool, ScimError> {
    for part in parts {
        if evaluate(part, scope, rules)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `path[filter]`: some value of the attribute matches `filter`.
fn value_path(
    scope: Scope<'_>,
    path: &AttrPath,
    filter: &Filter,
    rules: &dyn AttributeRules,
) -> Result<bool, ScimError> {
    let Scope::Resource(resource) = scope else {
        return Ok(false);
    };
    for element in leaf_values(attribute_value(resource, path, rules), None) {
        if evaluate(
            filter,
            Scope::Element {
                value: element,
                parent: path,
            },
            rules,
        )? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `path op literal`.
fn compare(
    scope: Scope<'_>,
    path: &AttrPath,
    op: CompareOp,
    literal: &Value,
    rules: &dyn AttributeRules,
) -> Result<bool, ScimError> {
    let (mut values, mut rule_at) = scope.locate(path, rules);
    let complex = values.iter().any(|value| value.is_object());
    if complex && rule_at.sub_attr.is_none() {
        if op.is_ordering() {
            return Err(unordered(op, &rule_at, AttrKind::Complex));
        }
        values = values
            .into_iter()
            .filter_map(|value| {
                if value.is_object() {
                    member(value, "value")
                } else {
                    Some(value)
                }
            })
            .collect();
        rule_at = rule_at.child("value");
    }
    let rule = rules.rule(&rule_at);
    if op.is_ordering()
        && (rule.kind == AttrKind::Boolean || values.iter().any(|value| value.is_boolean()))
    {
        return Err(unordered(op, &rule_at, AttrKind::Boolean));
    }
    if literal.is_null() {
        return Ok(compare_null(op, &values));
    }
    let comparison = Comparison {
        case_exact: rule.case_exact,
        date_time: rule.kind == AttrKind::DateTime,
    };
    Ok(values
        .into_iter()
        .any(|actual| compare_one(op, actual, literal, comparison)))
}

/// `eq null` / `ne null`: whether the attribute is unassigned / assigned; other operators never
/// match null.
fn compare_null(op: CompareOp, values: &[&Value]) -> bool {
    let assigned = values.iter().any(|value| !value.is_null());
    match op {
        CompareOp::Eq => !assigned,
        CompareOp::Ne => assigned,
        _ => false,
    }
}

/// One value against the literal.
fn compare_one(op: CompareOp, actual: &Value, literal: &Value, comparison: Comparison) -> bool {
    let order = comparison.order(actual, literal);
    match op {
        CompareOp::Eq => order == Some(Ordering::Equal),
        CompareOp::Ne => order.is_some_and(|order| order != Ordering::Equal),
        CompareOp::Gt => order == Some(Ordering::Greater),
        CompareOp::Ge => order.is_some_and(|order| order != Ordering::Less),
        CompareOp::Lt => order == Some(Ordering::Less),
        CompareOp::Le => order.is_some_and(|order| order != Ordering::Greater),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => match (actual, literal) {
            (Value::String(actual), Value::String(literal)) => {
                let (actual, literal) = (comparison.fold(actual), comparison.fold(literal));
                match op {
                    CompareOp::Co => actual.contains(&literal),
                    CompareOp::Sw => actual.starts_with(&literal),
                    _ => actual.ends_with(&literal),
                }
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::rules::{AttributeRule, NoRules, RuleSet};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Bjensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "title": "",
            "active": true,
            "loginCount": 42,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [],
            "nickName": null,
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\""
            },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
            }
        })
    }

    fn matches(text: &str) -> bool {
        let filter = Filter::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        filter
            .matches(&user(), &RuleSet::rfc7643())
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn refused(text: &str, rules: &dyn AttributeRules) -> ScimError {
        let error = Filter::parse(text)
            .unwrap()
            .matches(&user(), rules)
            .unwrap_err();
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(ScimType::InvalidFilter)),
            "{text}"
        );
        error
    }

    #[test]
    fn given_attribute_names_in_any_case_when_matched_then_found() {
        assert!(matches(r#"USERNAME eq "bjensen@example.com""#));
        assert!(matches(r#"Name.GIVENNAME eq "Barbara""#));
    }

    #[test]
    fn given_case_insensitive_attributes_when_compared_then_case_ignored() {
        assert!(matches(r#"userName eq "BJENSEN@EXAMPLE.COM""#));
        assert!(matches(r#"displayName co "JENSEN""#));
        assert!(matches(r#"displayName sw "babs""#));
        assert!(matches(r#"displayName ew "SEN""#));
    }

    #[test]
    fn given_case_exact_attributes_when_compared_then_case_matters() {
        assert!(matches(r#"externalId eq "Bjensen""#));
        assert!(!matches(r#"externalId eq "bjensen""#));
        assert!(!matches(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
        assert!(!matches(r#"meta.version eq "w/\"3694E05E9DFF591\"""#));
        assert!(matches(r#"meta.version eq "W/\"3694e05e9dff591\"""#));
    }

    #[test]
    fn given_no_rules_when_case_exact_attribute_compared_then_case_ignored() {
        let filter = Filter::parse(r#"externalId eq "BJENSEN""#).unwrap();
        assert!(filter.matches(&user(), &NoRules).unwrap());
    }

    #[test]
    fn given_each_operator_on_strings_when_evaluated_then_expected_results() {
        let cases = [
            (r#"displayName eq "Babs Jensen""#, true),
            (r#"displayName ne "Babs Jensen""#, false),
            (r#"displayName ne "Someone""#, true),
            (r#"displayName co "s J""#, true),
            (r#"displayName co "xyz""#, false),
            (r#"displayName sw "Jensen""#, false),
            (r#"displayName ew "Babs""#, false),
            (r#"displayName gt "Babs""#, true),
            (r#"displayName ge "babs jensen""#, true),
            (r#"displayName lt "Babs""#, false),
            (r#"displayName le "BABS JENSEN""#, true),
        ];
        for (text, expected) in cases {
            assert_eq!(matches(text), expected, "{text}");
        }
    }

    #[test]
    fn given_numbers_when_compared_then_numerically() {
        assert!(matches("loginCount eq 42"));
        assert!(matches("loginCount gt 9"));
        assert!(matches("loginCount ge 42.0"));
        assert!(!matches("loginCount lt 42"));
        assert!(matches("loginCount le 100"));
        assert!(matches("loginCount ne 41"));
    }

    #[test]
    fn given_a_string_compared_with_a_number_when_evaluated_then_no_match_and_no_error() {
        assert!(!matches("userName eq 42"));
        assert!(!matches("userName ne 42"));
        assert!(!matches("userName gt 1"));
        assert!(!matches(r#"loginCount eq "42""#));
        assert!(!matches(r#"loginCount co "4""#));
    }

    #[test]
    fn given_booleans_when_compared_for_equality_then_matched() {
        assert!(matches("active eq true"));
        assert!(!matches("active eq false"));
        assert!(matches("active ne false"));
        assert!(!matches(r#"active eq "true""#));
    }

    #[test]
    fn given_date_times_when_compared_then_as_instants() {
        assert!(matches(r#"meta.lastModified gt "2011-05-13T04:42:33Z""#));
        assert!(matches(
            r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#
        ));
        assert!(!matches(
            r#"meta.lastModified lt "2011-05-13T06:42:33+02:00""#
        ));
        assert!(matches(r#"meta.created le "2010-01-23T04:56:22.000Z""#));
    }

    #[test]
    fn given_date_times_without_the_date_rule_when_compared_then_as_text() {
        let filter = Filter::parse(r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#).unwrap();
        assert!(!filter.matches(&user(), &NoRules).unwrap());
    }

    #[test]
    fn given_a_multi_valued_attribute_when_any_value_matches_then_match() {
        assert!(matches(r#"emails.value eq "babs@jensen.org""#));
        assert!(matches(r#"emails.type eq "home""#));
        assert!(!matches(r#"emails.type eq "other""#));
        assert!(matches(
            r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#
        ));
    }

    #[test]
    fn given_a_complex_multi_valued_attribute_without_sub_attribute_when_compared_then_by_value() {
        assert!(matches(r#"emails co "jensen.org""#));
        assert!(matches(r#"emails eq "BJENSEN@example.com""#));
        assert!(!matches(r#"emails eq "work""#));
    }

    #[test]
    fn given_a_singular_complex_extension_attribute_when_compared_then_by_value() {
        let text = r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#;
        assert!(matches(text));
    }

    #[test]
    fn given_extension_attributes_when_filtered_then_read_from_the_extension() {
        assert!(matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ));
        assert!(matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName sw "john""#
        ));
        assert!(!matches(r#"employeeNumber eq "701984""#));
    }

    #[test]
    fn given_core_urn_qualified_attributes_when_filtered_then_read_from_the_top_level() {
        assert!(matches(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bjensen""#
        ));
        assert!(matches(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "jensen""#
        ));
    }

    #[test]
    fn given_pr_when_values_are_empty_or_missing_then_absent() {
        assert!(matches("userName pr"));
        assert!(matches("emails pr"));
        assert!(matches("name pr"));
        assert!(matches("active pr"));
        assert!(!matches("title pr"));
        assert!(!matches("ims pr"));
        assert!(!matches("nickName pr"));
        assert!(!matches("phoneNumbers pr"));
        assert!(!matches("name.middleName pr"));
        assert!(!matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department pr"#
        ));
    }

    #[test]
    fn given_pr_on_an_empty_object_when_evaluated_then_absent() {
        let filter = Filter::parse("name pr").unwrap();
        assert!(!filter.matches(&json!({"name": {}}), &NoRules).unwrap());
    }

    #[test]
    fn given_eq_null_when_evaluated_then_matches_unassigned_attributes() {
        assert!(matches("nickName eq null"));
        assert!(matches("profileUrl eq null"));
        assert!(!matches("userName eq null"));
        assert!(matches("userName ne null"));
        assert!(!matches("nickName ne null"));
    }

    #[test]
    fn given_logical_operators_when_evaluated_then_boolean_algebra() {
        assert!(matches(r#"userName sw "b" and active eq true"#));
        assert!(!matches(r#"userName sw "x" and active eq true"#));
        assert!(matches(r#"userName sw "x" or active eq true"#));
        assert!(!matches(r#"not (active eq true)"#));
        assert!(matches(
            r#"title pr or userName sw "x" or emails.type eq "home""#
        ));
        assert!(matches(
            r#"(title pr or userName sw "b") and not (displayName eq "x")"#
        ));
    }

    #[test]
    fn given_a_value_filter_when_one_value_meets_all_conditions_then_match() {
        assert!(matches(
            r#"emails[type eq "work" and value co "@example.com"]"#
        ));
        assert!(matches(
            r#"emails[type eq "home" and not (primary eq true)]"#
        ));
    }

    #[test]
    fn given_conditions_holding_on_different_values_when_in_one_value_filter_then_no_match() {
        assert!(!matches(
            r#"emails[type eq "home" and value co "@example.com"]"#
        ));
        assert!(matches(
            r#"emails.type eq "home" and emails.value co "@example.com""#
        ));
    }

    #[test]
    fn given_a_value_filter_on_a_missing_attribute_when_evaluated_then_no_match() {
        assert!(!matches(r#"phoneNumbers[type eq "work"]"#));
        assert!(!matches(r#"ims[type pr]"#));
    }

    #[test]
    fn given_ordering_on_a_declared_boolean_when_evaluated_then_invalid_filter() {
        let error = refused("active gt 1", &RuleSet::rfc7643());
        assert!(error.detail.contains("boolean"), "{}", error.detail);
        refused("emails[primary lt 1]", &RuleSet::rfc7643());
    }

    #[test]
    fn given_ordering_on_a_boolean_value_without_rules_when_evaluated_then_invalid_filter() {
        refused(r#"active ge "x""#, &NoRules);
    }

    #[test]
    fn given_ordering_on_a_complex_attribute_when_evaluated_then_invalid_filter() {
        let error = refused(r#"emails gt "a""#, &NoRules);
        assert!(error.detail.contains("complex"), "{}", error.detail);
        refused(r#"name le "a""#, &NoRules);
    }

    #[test]
    fn given_ordering_on_declared_complex_attribute_when_checked_without_resource_then_refused() {
        let filter = Filter::parse(r#"emails gt "a""#).unwrap();
        assert!(filter.check(&RuleSet::rfc7643()).is_err());
        assert!(filter.matches(&json!({}), &RuleSet::rfc7643()).is_err());
        assert!(filter.check(&NoRules).is_ok());
        assert!(!filter.matches(&json!({}), &NoRules).unwrap());
    }

    #[test]
    fn given_custom_case_exact_sub_attribute_when_in_value_filter_then_case_matters() {
        let rules = RuleSet::new().with(
            AttrPath::with_sub("emails", "type"),
            AttributeRule::string().case_exact(),
        );
        let filter = Filter::parse(r#"emails[type eq "WORK"]"#).unwrap();
        assert!(!filter.matches(&user(), &rules).unwrap());
        assert!(filter.matches(&user(), &NoRules).unwrap());
    }

    #[test]
    fn given_a_resource_that_is_not_an_object_when_matched_then_nothing_matches() {
        let filter = Filter::parse("userName pr").unwrap();
        assert!(!filter.matches(&json!([1, 2]), &NoRules).unwrap());
        assert!(!filter.matches(&json!("text"), &NoRules).unwrap());
    }
}
