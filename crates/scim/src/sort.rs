//! Sorting (RFC 7644 §3.4.2.3): `sortBy` names an attribute, `sortOrder` is `ascending` (the
//! default) or `descending`.
//!
//! A multi-valued attribute sorts by its `primary` value, else its first; a complex value by its
//! `value` sub-attribute. Resources without a value sort last when ascending and first when
//! descending. Strings compare case-insensitively unless case-exact, date-times as instants,
//! numbers numerically; values of different types order booleans, numbers, then strings.

use std::cmp::Ordering;

use serde_json::Value;

use crate::compare::Comparison;
use crate::error::ScimError;
use crate::eval::attribute_value;
use crate::json::{is_unassigned, member};
use crate::path::AttrPath;
use crate::rules::{AttrKind, AttributeRules};

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Smallest first, missing values last.
    #[default]
    Ascending,
    /// Largest first, missing values first.
    Descending,
}

impl SortOrder {
    /// Reads `sortOrder` (any case); absent or empty means ascending, anything else but the two
    /// keywords is a 400 `invalidValue`.
    pub fn parse(text: Option<&str>) -> Result<SortOrder, ScimError> {
        match text.map(str::trim) {
            None | Some("") => Ok(SortOrder::Ascending),
            Some(word) if word.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
            Some(word) if word.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
            Some(word) => Err(ScimError::invalid_value(format!(
                "sortOrder must be \"ascending\" or \"descending\", not {word:?}"
            ))),
        }
    }
}

/// A parsed `sortBy` with its `sortOrder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// The attribute sorted by.
    pub by: AttrPath,
    /// The direction.
    pub order: SortOrder,
}

impl Sort {
    /// Reads the `sortBy` and `sortOrder` parameters; `None` when `sortBy` is absent or empty.
    /// A malformed `sortBy` is a 400 `invalidPath`.
    pub fn parse(
        sort_by: Option<&str>,
        sort_order: Option<&str>,
    ) -> Result<Option<Sort>, ScimError> {
        let order = SortOrder::parse(sort_order)?;
        match sort_by.map(str::trim) {
            None | Some("") => Ok(None),
            Some(path) => Ok(Some(Sort {
                by: AttrPath::parse(path)?,
                order,
            })),
        }
    }

    /// Compares two resources for this sort (a comparator for `sort_by`; stable sorts keep the
    /// order of resources that compare equal).
    pub fn compare(&self, a: &Value, b: &Value, rules: &dyn AttributeRules) -> Ordering {
        let ascending = match (self.key(a, rules), self.key(b, rules)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => order_keys(a, b, rules),
        };
        match self.order {
            SortOrder::Ascending => ascending,
            SortOrder::Descending => ascending.reverse(),
        }
    }

    /// The value a resource sorts by, with the path whose rule applies to it; `None` when the
    /// resource has no value.
    fn key<'a>(
        &self,
        resource: &'a Value,
        rules: &dyn AttributeRules,
    ) -> Option<(&'a Value, AttrPath)> {
        let attribute = attribute_value(resource, &self.by, rules)?;
        let chosen = match attribute {
            Value::Array(items) => primary_or_first(items)?,
            single => single,
        };
        let (leaf, rule_at) = match (&self.by.sub_attr, chosen) {
            (Some(sub), value) => (member(value, sub)?, self.by.clone()),
            (None, Value::Object(_)) => (member(chosen, "value")?, self.by.child("value")),
            (None, value) => (value, self.by.clone()),
        };
        let sortable = !is_unassigned(leaf) && !leaf.is_array() && !leaf.is_object();
        sortable.then_some((leaf, rule_at))
    }
}

/// The ascending order of two sort keys.
fn order_keys(
    (a, rule_at): (&Value, AttrPath),
    (b, _): (&Value, AttrPath),
    rules: &dyn AttributeRules,
) -> Ordering {
    let rule = rules.rule(&rule_at);
    let comparison = Comparison {
        case_exact: rule.case_exact,
        date_time: rule.kind == AttrKind::DateTime,
    };
    comparison
        .order(a, b)
        .unwrap_or_else(|| type_rank(a).cmp(&type_rank(b)))
}

/// The value marked `"primary": true`, else the first.
fn primary_or_first(items: &[Value]) -> Option<&Value> {
    let primary = items
        .iter()
        .find(|item| member(item, "primary").and_then(Value::as_bool) == Some(true));
    primary.or_else(|| items.first())
}

/// The order of types when two keys differ in type.
fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{NoRules, RuleSet};
    use serde_json::json;

    fn sorted(resources: &[Value], sort_by: &str, order: Option<&str>) -> Vec<String> {
        let sort = Sort::parse(Some(sort_by), order).unwrap().unwrap();
        let mut list = resources.to_vec();
        list.sort_by(|a, b| sort.compare(a, b, &RuleSet::rfc7643()));
        list.iter()
            .map(|resource| resource["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn given_no_sort_order_when_parsed_then_ascending() {
        assert_eq!(SortOrder::parse(None).unwrap(), SortOrder::Ascending);
        assert_eq!(SortOrder::parse(Some("")).unwrap(), SortOrder::Ascending);
        assert_eq!(
            SortOrder::parse(Some("DESCENDING")).unwrap(),
            SortOrder::Descending
        );
        assert_eq!(
            SortOrder::parse(Some("Ascending")).unwrap(),
            SortOrder::Ascending
        );
    }

    #[test]
    fn given_an_unknown_sort_order_when_parsed_then_invalid_value() {
        let error = SortOrder::parse(Some("up")).unwrap_err();
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(crate::ScimType::InvalidValue))
        );
    }

    #[test]
    fn given_no_sort_by_when_parsed_then_no_sort_and_bad_path_refused() {
        assert_eq!(Sort::parse(None, Some("descending")).unwrap(), None);
        assert_eq!(Sort::parse(Some(" "), None).unwrap(), None);
        assert_eq!(
            Sort::parse(Some("a..b"), None).unwrap_err().scim_type,
            Some(crate::ScimType::InvalidPath)
        );
        let sort = Sort::parse(Some("name.familyName"), None).unwrap().unwrap();
        assert_eq!(
            sort,
            Sort {
                by: AttrPath::with_sub("name", "familyName"),
                order: SortOrder::Ascending
            }
        );
    }

    #[test]
    fn given_strings_in_mixed_case_when_sorted_then_case_insensitively() {
        let resources = [
            json!({"id": "1", "userName": "bob"}),
            json!({"id": "2", "userName": "Alice"}),
            json!({"id": "3", "userName": "carol"}),
        ];
        assert_eq!(sorted(&resources, "userName", None), ["2", "1", "3"]);
        assert_eq!(
            sorted(&resources, "userName", Some("descending")),
            ["3", "1", "2"]
        );
    }

    #[test]
    fn given_a_case_exact_attribute_when_sorted_then_upper_case_first() {
        let resources = [
            json!({"id": "1", "externalId": "b"}),
            json!({"id": "2", "externalId": "B"}),
            json!({"id": "3", "externalId": "a"}),
        ];
        assert_eq!(sorted(&resources, "externalId", None), ["2", "3", "1"]);
    }

    #[test]
    fn given_missing_values_when_sorted_ascending_then_last_and_descending_first() {
        let resources = [
            json!({"id": "1"}),
            json!({"id": "2", "title": "b"}),
            json!({"id": "3", "title": ""}),
            json!({"id": "4", "title": "a"}),
        ];
        assert_eq!(sorted(&resources, "title", None), ["4", "2", "1", "3"]);
        assert_eq!(
            sorted(&resources, "title", Some("descending")),
            ["1", "3", "2", "4"]
        );
    }

    #[test]
    fn given_a_multi_valued_attribute_when_sorted_then_by_primary_else_first_value() {
        let resources = [
            json!({"id": "1", "emails": [{"value": "a@x"}, {"value": "z@x", "primary": true}]}),
            json!({"id": "2", "emails": [{"value": "m@x"}, {"value": "b@x"}]}),
            json!({"id": "3", "emails": []}),
        ];
        assert_eq!(sorted(&resources, "emails", None), ["2", "1", "3"]);
        assert_eq!(sorted(&resources, "emails.value", None), ["2", "1", "3"]);
    }

    #[test]
    fn given_numbers_when_sorted_then_numerically() {
        let resources = [
            json!({"id": "1", "n": 10}),
            json!({"id": "2", "n": 9}),
            json!({"id": "3", "n": -1.5}),
        ];
        assert_eq!(sorted(&resources, "n", None), ["3", "2", "1"]);
    }

    #[test]
    fn given_date_times_in_different_offsets_when_sorted_then_as_instants() {
        let resources = [
            json!({"id": "1", "meta": {"lastModified": "2020-01-01T10:00:00+05:00"}}),
            json!({"id": "2", "meta": {"lastModified": "2020-01-01T06:00:00Z"}}),
        ];
        assert_eq!(sorted(&resources, "meta.lastModified", None), ["1", "2"]);
    }

    #[test]
    fn given_extension_attributes_when_sorted_then_read_from_the_extension() {
        let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let resources = [
            json!({"id": "1", urn: {"employeeNumber": "2"}}),
            json!({"id": "2", urn: {"employeeNumber": "1"}}),
        ];
        assert_eq!(
            sorted(&resources, &format!("{urn}:employeeNumber"), None),
            ["2", "1"]
        );
    }

    #[test]
    fn given_values_of_different_types_when_sorted_then_booleans_numbers_strings() {
        let resources = [
            json!({"id": "1", "x": "a"}),
            json!({"id": "2", "x": 5}),
            json!({"id": "3", "x": false}),
        ];
        assert_eq!(sorted(&resources, "x", None), ["3", "2", "1"]);
    }

    #[test]
    fn given_two_resources_without_values_when_compared_then_equal() {
        let sort = Sort::parse(Some("title"), Some("descending"))
            .unwrap()
            .unwrap();
        assert_eq!(
            sort.compare(&json!({}), &json!({"title": null}), &NoRules),
            Ordering::Equal
        );
    }
}
