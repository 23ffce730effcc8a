//! User attributes a tenant defines for itself ("add your own columns"): their definitions, which
//! the tenant aggregate keeps, and the values its members hold, which the user aggregate keeps
//! per tenant and which are personal data (sealed with the user's key, removed by erasure).
//!
//! A value is a JSON scalar of the attribute's type: text (a string), number, boolean, date (a
//! `YYYY-MM-DD` string) or one of the definition's options (a string). A change names the
//! attributes it sets (to a value) or clears (to `null`); the others keep their values.
//!
//! Values are kept when their definition goes or changes type, but only the values that are valid
//! for the attribute as defined now are shown (see [`visible`]): removing an attribute hides its
//! values everywhere, and defining it again shows those still valid, as Keycloak's user profile
//! does with attributes it no longer manages.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most attributes a tenant defines.
pub const MAX_ATTRIBUTES: usize = 50;
/// Most options of a one-of attribute.
pub const MAX_OPTIONS: usize = 100;
/// Longest text value (and option), in characters.
pub const MAX_TEXT_CHARS: usize = 500;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// Largest magnitude of a number value: integers up to it are exact in every JSON reader.
pub const MAX_NUMBER: f64 = 9_007_199_254_740_991.0;

/// The pattern of an attribute name, which API bodies and CSV headers use.
pub const ATTRIBUTE_NAME_PATTERN: &str = "^[a-z][a-z0-9_]{0,39}$";

/// What values an attribute takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeType {
    /// Up to 500 characters of text.
    Text,
    /// A number (integer or decimal, magnitude at most 2^53 - 1).
    Number,
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of the definition's `options`.
    OneOf,
}

/// A user attribute as a tenant defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeDefinition {
    /// What people are shown for it (1 to 100 characters).
    pub label: String,
    #[serde(rename = "type")]
    pub kind: AttributeType,
    /// The values a `one_of` attribute takes (1 to 100 distinct texts of 1 to 500 characters);
    /// empty for the other types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Users are created with a value, and a value cannot be cleared.
    pub required: bool,
    /// The user may set it themselves; otherwise only administrators (`users:update`) may.
    pub user_editable: bool,
    /// Administrators may filter the directory by it.
    pub searchable: bool,
}

/// Why an attribute definition or value is refused. Each names the attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error(
        "an attribute name is 1 to 40 characters a-z, 0-9 and _, starting with a letter; a label is 1 to {MAX_LABEL_CHARS} characters that show something; a one_of attribute has 1 to {MAX_OPTIONS} distinct options of 1 to {MAX_TEXT_CHARS} characters, the other types none; a tenant defines at most {MAX_ATTRIBUTES} attributes"
    )]
    InvalidDefinition,
    #[error("the tenant defines no attribute {0:?}")]
    Unknown(String),
    #[error("the attribute {0:?} is set by administrators only")]
    NotEditable(String),
    #[error("the attribute {0:?} is required: it must have a value")]
    Required(String),
    #[error("the value given for the attribute {0:?} is not one it takes: {1}")]
    Invalid(String, &'static str),
}

/// Who changes the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editor {
    /// The user themselves: only `user_editable` attributes.
    User,
    /// An administrator: every attribute.
    Administrator,
}

/// Whether `name` may name an attribute.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 40
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_text(text: &str) -> bool {
    crate::text::shows_something(text)
        && text.chars().count() <= MAX_TEXT_CHARS
        && crate::text::is_displayable(text)
}

impl AttributeDefinition {
    /// The definition as stored: label and options trimmed, then checked.
    pub fn validated(mut self) -> Result<AttributeDefinition, AttributeError> {
        self.label = self.label.trim().to_owned();
        self.options = self.options.iter().map(|o| o.trim().to_owned()).collect();
        let label_ok = crate::text::shows_something(&self.label)
            && self.label.chars().count() <= MAX_LABEL_CHARS
            && crate::text::is_displayable(&self.label);
        let distinct = self
            .options
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == self.options.len();
        let options_ok = match self.kind {
            AttributeType::OneOf => {
                (1..=MAX_OPTIONS).contains(&self.options.len())
                    && distinct
                    && self.options.iter().all(|o| valid_text(o))
            }
            _ => self.options.is_empty(),
        };
        if label_ok && options_ok {
            Ok(self)
        } else {
            Err(AttributeError::InvalidDefinition)
        }
    }

    /// The value as stored (text trimmed), if it is one this attribute takes.
    pub fn check(&self, name: &str, value: &Value) -> Result<Value, AttributeError> {
        let invalid = |why: &'static str| AttributeError::Invalid(name.to_owned(), why);
        match (self.kind, value) {
            (AttributeType::Text, Value::String(text)) => {
                let text = text.trim();
                if valid_text(text) {
                    Ok(Value::String(text.to_owned()))
                } else {
                    Err(invalid("text of 1 to 500 characters that show something"))
                }
            }
            (AttributeType::Number, Value::Number(number)) => match number.as_f64() {
                Some(x) if x.is_finite() && x.abs() <= MAX_NUMBER => Ok(value.clone()),
                _ => Err(invalid("a number of magnitude at most 2^53 - 1")),
            },
            (AttributeType::Boolean, Value::Bool(_)) => Ok(value.clone()),
            (AttributeType::Date, Value::String(text)) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                match time::Date::parse(text.trim(), format) {
                    Ok(date) if date.year() >= 1 => Ok(Value::String(text.trim().to_owned())),
                    _ => Err(invalid("a date, YYYY-MM-DD")),
                }
            }
            (AttributeType::OneOf, Value::String(text)) => {
                if self.options.iter().any(|o| o == text.trim()) {
                    Ok(Value::String(text.trim().to_owned()))
                } else {
                    Err(invalid("one of the attribute's options"))
                }
            }
            (AttributeType::Text | AttributeType::OneOf, _) => Err(invalid("a string")),
            (AttributeType::Number, _) => Err(invalid("a number")),
            (AttributeType::Boolean, _) => Err(invalid("true or false")),
            (AttributeType::Date, _) => Err(invalid("a date, YYYY-MM-DD")),
        }
    }

    /// Reads a value written as text (a CSV cell, a query parameter): a number in decimal,
    /// `true`/`false` for a boolean, the text itself otherwise (a one-of option in any case).
    pub fn parse(&self, name: &str, text: &str) -> Result<Value, AttributeError> {
        let text = text.trim();
        let value = match self.kind {
            AttributeType::Number => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(number) => Value::Number(number),
                Err(_) => Value::String(text.to_owned()),
            },
            AttributeType::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text.to_owned()),
            },
            AttributeType::OneOf => {
                let folded = text.to_lowercase();
                let option = self.options.iter().find(|o| o.to_lowercase() == folded);
                Value::String(option.map_or(text, String::as_str).to_owned())
            }
            AttributeType::Text | AttributeType::Date => Value::String(text.to_owned()),
        };
        self.check(name, &value)
    }
}

/// The values a tenant's member holds after `change` (attribute name → new value, or `None` to
/// clear it), decided for `editor` against the tenant's `definitions`. `creating`: the user is
/// being created, so every required attribute must be given.
///
/// Values of attributes no longer defined are kept as they are (hidden, see [`visible`]).
pub fn change(
    definitions: &BTreeMap<String, AttributeDefinition>,
    current: &BTreeMap<String, Value>,
    change: &BTreeMap<String, Option<Value>>,
    editor: Editor,
    creating: bool,
) -> Result<BTreeMap<String, Value>, AttributeError> {
    let mut values = current.clone();
    for (name, value) in change {
        let Some(definition) = definitions.get(name) else {
            return Err(AttributeError::Unknown(name.clone()));
        };
        if editor == Editor::User && !definition.user_editable {
            return Err(AttributeError::NotEditable(name.clone()));
        }
        // Blank text clears, as `null` does.
        let cleared = match value {
            None | Some(Value::Null) => true,
            Some(Value::String(text)) => text.trim().is_empty(),
            Some(_) => false,
        };
        if cleared {
            if definition.required {
                return Err(AttributeError::Required(name.clone()));
            }
            values.remove(name);
        } else if let Some(value) = value {
            values.insert(name.clone(), definition.check(name, value)?);
        }
    }
    if creating
        && let Some((name, _)) = definitions
            .iter()
            .find(|(name, d)| d.required && !values.contains_key(*name))
    {
        return Err(AttributeError::Required(name.clone()));
    }
    Ok(values)
}

/// The values to show: those of attributes the tenant defines now that are valid for their
/// definition.
pub fn visible(
    definitions: &BTreeMap<String, AttributeDefinition>,
    values: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    values
        .iter()
        .filter(|(name, value)| {
            definitions
                .get(*name)
                .is_some_and(|d| d.check(name, value).is_ok())
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The key a value is found by in the directory's filter: the type of JSON value and the value,
/// text folded to lower case, so `Sales` finds `sales`.
pub fn search_key(value: &Value) -> String {
    match value {
        Value::String(text) => format!("s:{}", text.to_lowercase()),
        Value::Number(number) => format!("n:{}", number.as_f64().unwrap_or_default()),
        other => format!("v:{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(kind: AttributeType, options: &[&str]) -> AttributeDefinition {
        AttributeDefinition {
            label: "  Label ".into(),
            kind,
            options: options.iter().map(|o| o.to_string()).collect(),
            required: false,
            user_editable: true,
            searchable: false,
        }
    }

    fn definitions() -> BTreeMap<String, AttributeDefinition> {
        let mut all = BTreeMap::new();
        all.insert("department".into(), definition(AttributeType::Text, &[]));
        all.insert("employee_no".into(), {
            let mut d = definition(AttributeType::Number, &[]);
            d.required = true;
            d.user_editable = false;
            d
        });
        all.insert("remote".into(), definition(AttributeType::Boolean, &[]));
        all.insert("start".into(), definition(AttributeType::Date, &[]));
        all.insert(
            "shift".into(),
            definition(AttributeType::OneOf, &["Early", "Late"]),
        );
        all
    }

    fn set(pairs: &[(&str, Value)]) -> BTreeMap<String, Option<Value>> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), (!v.is_null()).then(|| v.clone())))
            .collect()
    }

    #[test]
    fn given_definitions_when_checked_then_names_labels_and_options_must_be_sound() {
        assert!(valid_name("department") && valid_name("a") && valid_name("cost_centre_2"));
        for bad in ["", "Department", "2nd", "_x", "dépt", &"a".repeat(41)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let stored = definition(AttributeType::OneOf, &[" Early ", "Late"])
            .validated()
            .unwrap();
        assert_eq!(stored.label, "Label");
        assert_eq!(stored.options, ["Early", "Late"]);
        for bad in [
            definition(AttributeType::OneOf, &[]),
            definition(AttributeType::OneOf, &["A", " A"]),
            definition(AttributeType::OneOf, &["A", "\u{202E}B"]),
            definition(AttributeType::Text, &["A"]),
            AttributeDefinition {
                label: " ".into(),
                ..definition(AttributeType::Text, &[])
            },
        ] {
            assert_eq!(bad.validated(), Err(AttributeError::InvalidDefinition));
        }
    }

    #[test]
    fn given_each_type_when_values_are_set_then_only_values_of_the_type_are_taken() {
        let defs = definitions();
        let current = BTreeMap::from([("employee_no".to_owned(), json!(7))]);
        let changed = change(
            &defs,
            &current,
            &set(&[
                ("department", json!("  Sales ")),
                ("remote", json!(true)),
                ("start", json!("2026-03-01")),
                ("shift", json!("Late")),
            ]),
            Editor::User,
            false,
        )
        .unwrap();
        assert_eq!(
            changed,
            BTreeMap::from([
                ("department".to_owned(), json!("Sales")),
                ("employee_no".to_owned(), json!(7)),
                ("remote".to_owned(), json!(true)),
                ("shift".to_owned(), json!("Late")),
                ("start".to_owned(), json!("2026-03-01")),
            ])
        );
        for (name, bad) in [
            ("department", json!(3)),
            ("department", json!("x".repeat(501))),
            ("employee_no", json!("7")),
            ("employee_no", json!(1e300)),
            ("remote", json!("yes")),
            ("start", json!("2026-02-30")),
            ("start", json!("01/03/2026")),
            ("shift", json!("Night")),
            ("shift", json!(["Early"])),
        ] {
            let refused = change(
                &defs,
                &current,
                &set(&[(name, bad.clone())]),
                Editor::Administrator,
                false,
            );
            assert!(
                matches!(refused, Err(AttributeError::Invalid(ref n, _)) if n == name),
                "{name} {bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn given_rules_when_changed_then_unknown_admin_only_and_required_attributes_are_refused() {
        let defs = definitions();
        let current = BTreeMap::from([("employee_no".to_owned(), json!(7))]);
        let attempt = |pairs: &[(&str, Value)], editor, creating| {
            change(&defs, &current, &set(pairs), editor, creating)
        };
        assert_eq!(
            attempt(&[("badge", json!("x"))], Editor::Administrator, false),
            Err(AttributeError::Unknown("badge".into()))
        );
        assert_eq!(
            attempt(&[("employee_no", json!(8))], Editor::User, false),
            Err(AttributeError::NotEditable("employee_no".into()))
        );
        assert_eq!(
            attempt(
                &[("employee_no", Value::Null)],
                Editor::Administrator,
                false
            ),
            Err(AttributeError::Required("employee_no".into()))
        );
        // Clearing (null or blank text) removes a value; leaving an attribute out keeps it.
        let cleared = change(
            &defs,
            &BTreeMap::from([("department".to_owned(), json!("Sales"))]),
            &set(&[("department", json!("  "))]),
            Editor::User,
            false,
        );
        assert_eq!(cleared, Ok(BTreeMap::new()));
        // A user created without a required attribute is refused, with it taken.
        assert_eq!(
            change(
                &defs,
                &BTreeMap::new(),
                &set(&[("remote", json!(false))]),
                Editor::Administrator,
                true
            ),
            Err(AttributeError::Required("employee_no".into()))
        );
        assert!(
            change(
                &defs,
                &BTreeMap::new(),
                &set(&[("employee_no", json!(1))]),
                Editor::Administrator,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn given_a_removed_or_retyped_attribute_when_shown_then_only_valid_defined_values_show() {
        let mut defs = definitions();
        let values = BTreeMap::from([
            ("department".to_owned(), json!("Sales")),
            ("remote".to_owned(), json!(true)),
            ("old".to_owned(), json!("kept, hidden")),
        ]);
        defs.insert("remote".into(), definition(AttributeType::Date, &[]));
        assert_eq!(
            visible(&defs, &values),
            BTreeMap::from([("department".to_owned(), json!("Sales"))])
        );
        // Values of undefined attributes survive a change, still hidden.
        let changed = change(
            &defs,
            &values,
            &set(&[("department", json!("Ops"))]),
            Editor::User,
            false,
        )
        .unwrap();
        assert_eq!(changed["old"], json!("kept, hidden"));
    }

    #[test]
    fn given_text_when_parsed_then_each_type_reads_its_form() {
        let defs = definitions();
        assert_eq!(
            defs["employee_no"].parse("employee_no", " 42 "),
            Ok(json!(42))
        );
        assert_eq!(defs["remote"].parse("remote", "TRUE"), Ok(json!(true)));
        assert_eq!(defs["shift"].parse("shift", "late"), Ok(json!("Late")));
        assert_eq!(
            defs["start"].parse("start", "2026-03-01"),
            Ok(json!("2026-03-01"))
        );
        assert!(defs["employee_no"].parse("employee_no", "forty").is_err());
        assert!(defs["remote"].parse("remote", "yes").is_err());
        assert_eq!(search_key(&json!("Sales")), search_key(&json!("sales")));
        assert_eq!(search_key(&json!(42)), search_key(&json!(42.0)));
        assert_ne!(search_key(&json!("42")), search_key(&json!(42)));
    }
}
