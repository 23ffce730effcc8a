//! Comparison of single JSON values as SCIM compares attribute values: strings
//! case-insensitively unless case-exact, date-times as instants, numbers numerically, and values
//! of different types never equal nor ordered.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::datetime::parse_rfc3339;

/// How one attribute's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Comparison {
    /// Strings compare case-sensitively.
    pub case_exact: bool,
    /// Strings that both parse as RFC 3339 compare as instants.
    pub date_time: bool,
}

impl Comparison {
    /// The order of two scalar values, `None` when they are of different types (a string and a
    /// number) or not scalars. Booleans order `false < true` (for sorting only: the filter
    /// refuses ordering operators on them).
    pub fn order(self, a: &Value, b: &Value) -> Option<Ordering> {
        match (a, b) {
            (Value::String(a), Value::String(b)) => Some(self.order_text(a, b)),
            (Value::Number(a), Value::Number(b)) => Some(order_numbers(a, b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Whether two values are equal: scalars by [`Comparison::order`], null equals null, arrays
    /// and objects by plain JSON equality.
    pub fn equal(self, a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => a == b,
            _ => self.order(a, b) == Some(Ordering::Equal),
        }
    }

    /// The order of two strings.
    pub fn order_text(self, a: &str, b: &str) -> Ordering {
        if self.date_time
            && let (Some(a), Some(b)) = (parse_rfc3339(a), parse_rfc3339(b))
        {
            return a.cmp(&b);
        }
        if self.case_exact {
            a.cmp(b)
        } else {
            a.to_lowercase().cmp(&b.to_lowercase())
        }
    }

    /// `text` as this comparison sees it (lower-cased unless case-exact), for `co`, `sw`, `ew`.
    pub fn fold(self, text: &str) -> String {
        if self.case_exact {
            text.to_string()
        } else {
            text.to_lowercase()
        }
    }
}

/// The order of two JSON numbers: exactly when both are integers, else as `f64`.
pub(crate) fn order_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return a.cmp(&b);
    }
    let (a, b) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    a.total_cmp(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FOLDING: Comparison = Comparison {
        case_exact: false,
        date_time: false,
    };
    const EXACT: Comparison = Comparison {
        case_exact: true,
        date_time: false,
    };
    const DATES: Comparison = Comparison {
        case_exact: false,
        date_time: true,
    };

    #[test]
    fn given_strings_differing_in_case_when_compared_then_equal_unless_case_exact() {
        assert!(FOLDING.equal(&json!("Ada"), &json!("aDA")));
        assert!(!EXACT.equal(&json!("Ada"), &json!("aDA")));
        assert_eq!(
            FOLDING.order(&json!("b"), &json!("A")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            EXACT.order(&json!("b"), &json!("A")),
            Some(Ordering::Greater)
        );
        assert_eq!(EXACT.order(&json!("B"), &json!("a")), Some(Ordering::Less));
    }

    #[test]
    fn given_non_ascii_strings_when_compared_then_unicode_case_folded() {
        assert!(FOLDING.equal(&json!("ÉLODIE"), &json!("élodie")));
        assert_eq!(FOLDING.fold("ÉLODIE"), "élodie");
        assert_eq!(EXACT.fold("ÉLODIE"), "ÉLODIE");
    }

    #[test]
    fn given_date_times_in_different_offsets_when_compared_as_dates_then_as_instants() {
        let (a, b) = (
            json!("2015-05-13T06:42:34+02:00"),
            json!("2015-05-13T04:42:34Z"),
        );
        assert!(DATES.equal(&a, &b));
        assert!(!FOLDING.equal(&a, &b));
        assert_eq!(
            DATES.order(&json!("2015-05-13T05:00:00+02:00"), &b),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn given_a_date_time_that_does_not_parse_when_compared_as_date_then_as_text() {
        assert_eq!(
            DATES.order(&json!("not a date"), &json!("NOT A DATE")),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn given_numbers_when_compared_then_numerically() {
        assert_eq!(
            FOLDING.order(&json!(10), &json!(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(FOLDING.order(&json!(1.5), &json!(2)), Some(Ordering::Less));
        assert!(FOLDING.equal(&json!(2.0), &json!(2.0)));
        assert_eq!(
            FOLDING.order(&json!(u64::MAX), &json!(u64::MAX - 1)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn given_values_of_different_types_when_compared_then_unordered_and_unequal() {
        assert_eq!(FOLDING.order(&json!("5"), &json!(5)), None);
        assert!(!FOLDING.equal(&json!("true"), &json!(true)));
        assert!(!FOLDING.equal(&json!(null), &json!("")));
        assert_eq!(FOLDING.order(&json!({"a": 1}), &json!({"a": 1})), None);
    }

    #[test]
    fn given_objects_and_nulls_when_tested_for_equality_then_json_equality() {
        assert!(FOLDING.equal(&json!({"value": "x"}), &json!({"value": "x"})));
        assert!(!FOLDING.equal(&json!({"value": "x"}), &json!({"value": "X"})));
        assert!(FOLDING.equal(&json!(null), &json!(null)));
        assert!(FOLDING.equal(&json!(true), &json!(true)));
    }
}
