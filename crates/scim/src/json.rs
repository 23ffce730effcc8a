//! Small helpers over `serde_json` values: case-insensitive member lookup and SCIM's notion of an
//! unassigned value.

use serde_json::{Map, Value};

/// The key of `map` that names `name`: the exact spelling if present, else the first that
/// matches case-insensitively.
pub(crate) fn find_key(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_string());
    }
    map.keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

/// The member of `map` named `name`, case-insensitively.
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The member of `value` (when an object) named `name`, case-insensitively.
pub(crate) fn member<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object().and_then(|map| get_ci(map, name))
}

/// Whether SCIM counts `value` as unassigned: null, an empty string, array or object
/// (RFC 7643 §2.5).
pub(crate) fn is_unassigned(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_keys_in_other_case_when_looked_up_then_found() {
        let value = json!({"userName": "ada", "Emails": []});
        let map = value.as_object().unwrap();
        assert_eq!(find_key(map, "username").as_deref(), Some("userName"));
        assert_eq!(find_key(map, "emails").as_deref(), Some("Emails"));
        assert_eq!(find_key(map, "nickName"), None);
        assert_eq!(get_ci(map, "USERNAME"), Some(&json!("ada")));
        assert_eq!(member(&value, "userNAME"), Some(&json!("ada")));
        assert_eq!(member(&json!("text"), "userName"), None);
    }

    #[test]
    fn given_empty_values_when_checked_then_unassigned_and_others_assigned() {
        for empty in [json!(null), json!(""), json!([]), json!({})] {
            assert!(is_unassigned(&empty), "{empty}");
        }
        for full in [
            json!(false),
            json!(0),
            json!(" "),
            json!([null]),
            json!({"a": null}),
        ] {
            assert!(!is_unassigned(&full), "{full}");
        }
    }
}
