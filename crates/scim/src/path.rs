//! Attribute paths (RFC 7644 §3.10): `[URN ":"]attrName["." subAttr]`.
//!
//! A schema URN ends at its last colon, so the URN may itself hold dots (`…:2.0:User`); the
//! attribute part after it holds at most one dot, between the attribute and its sub-attribute.
//! Names are kept as written and compared case-insensitively.

use std::fmt;

use crate::error::ScimError;

/// The core User schema URN (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URN (RFC 7643 §4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension URN (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// An attribute path: an optional schema URN, an attribute name and an optional sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN the path was qualified with, if any (`urn:…:2.0:User`).
    pub urn: Option<String>,
    /// The attribute name (`name`, `emails`, `employeeNumber`).
    pub name: String,
    /// The sub-attribute name (`givenName` in `name.givenName`).
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// The path of a top-level attribute of the core schema.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// The path of a sub-attribute of a top-level attribute of the core schema.
    pub fn with_sub(name: impl Into<String>, sub_attr: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub_attr: Some(sub_attr.into()),
        }
    }

    /// The same path qualified with the schema `urn`.
    pub fn in_schema(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// Parses `text`; a malformed path is a 400 `invalidPath`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        parse_attr_path(text).map_err(|reason| {
            ScimError::invalid_path(format!("invalid attribute path {text:?}: {reason}"))
        })
    }

    /// The path without its sub-attribute.
    pub fn parent(&self) -> AttrPath {
        AttrPath {
            urn: self.urn.clone(),
            name: self.name.clone(),
            sub_attr: None,
        }
    }

    /// The path of `sub_attr` under this path's attribute (replacing any sub-attribute).
    pub fn child(&self, sub_attr: &str) -> AttrPath {
        AttrPath {
            urn: self.urn.clone(),
            name: self.name.clone(),
            sub_attr: Some(sub_attr.to_string()),
        }
    }

    /// The whole text read as a schema URN (`urn:…:enterprise:2.0:User`), when it could be one:
    /// a URN-qualified path without sub-attribute. Whether it *is* a schema is for the caller.
    pub fn as_schema_urn(&self) -> Option<String> {
        match (&self.urn, &self.sub_attr) {
            (Some(urn), None) => Some(format!("{urn}:{}", self.name)),
            _ => None,
        }
    }

    /// Whether both paths name the same attribute (names and URNs compared case-insensitively).
    pub fn same_as(&self, other: &AttrPath) -> bool {
        let urns_match = match (&self.urn, &other.urn) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        let subs_match = match (&self.sub_attr, &other.sub_attr) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        urns_match && subs_match && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Whether `text` starts with `urn:` in any case.
pub(crate) fn starts_with_urn(text: &str) -> bool {
    text.get(..4)
        .is_some_and(|head| head.eq_ignore_ascii_case("urn:"))
}

/// Parses an attribute path, or says what is wrong with it.
pub(crate) fn parse_attr_path(text: &str) -> Result<AttrPath, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let (urn, rest) = split_urn(text)?;
    let (name, sub_attr) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    check_attr_name(name)?;
    if let Some(sub) = sub_attr {
        if sub.contains('.') {
            return Err("an attribute path has at most one sub-attribute".into());
        }
        check_attr_name(sub)?;
    }
    Ok(AttrPath {
        urn: urn.map(str::to_string),
        name: name.to_string(),
        sub_attr: sub_attr.map(str::to_string),
    })
}

/// Splits `urn:…:attr.sub` at the URN's last colon.
fn split_urn(text: &str) -> Result<(Option<&str>, &str), String> {
    if !starts_with_urn(text) {
        if text.contains(':') {
            return Err("a schema prefix must be a URN starting with \"urn:\"".into());
        }
        return Ok((None, text));
    }
    let Some((urn, rest)) = text.rsplit_once(':') else {
        return Err("the URN has no attribute name after it".into());
    };
    let segments_ok = urn.split(':').skip(1).all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    });
    if urn.len() <= 4 || !segments_ok {
        return Err(format!("{urn:?} is not a valid schema URN"));
    }
    if rest.is_empty() {
        return Err("the URN has no attribute name after it".into());
    }
    Ok((Some(urn), rest))
}

/// ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; `$ref` is allowed too.
fn check_attr_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = match chars.next() {
        Some('$') => !name[1..].is_empty() && name[1..].chars().all(|c| c.is_ascii_alphabetic()),
        Some(first) => {
            first.is_ascii_alphabetic()
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        None => false,
    };
    if first_ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid attribute name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;

    #[test]
    fn given_a_simple_name_when_parsed_then_only_the_name() {
        let path = AttrPath::parse("userName").unwrap();
        assert_eq!(path, AttrPath::new("userName"));
        assert_eq!(path.to_string(), "userName");
    }

    #[test]
    fn given_a_sub_attribute_when_parsed_then_name_and_sub() {
        let path = AttrPath::parse("name.givenName").unwrap();
        assert_eq!(path.urn, None);
        assert_eq!(path.name, "name");
        assert_eq!(path.sub_attr.as_deref(), Some("givenName"));
    }

    #[test]
    fn given_a_core_urn_with_dots_when_parsed_then_urn_ends_at_last_colon() {
        let path =
            AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
        assert_eq!(path.urn.as_deref(), Some(USER_SCHEMA));
        assert_eq!(path.name, "name");
        assert_eq!(path.sub_attr.as_deref(), Some("givenName"));
        assert_eq!(
            path.to_string(),
            "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"
        );
    }

    #[test]
    fn given_an_enterprise_attribute_when_parsed_then_extension_urn_and_name() {
        let path = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        )
        .unwrap();
        assert_eq!(path.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(path.name, "employeeNumber");
        assert_eq!(path.sub_attr, None);
    }

    #[test]
    fn given_a_bare_schema_urn_when_read_as_schema_then_the_whole_urn() {
        let path = AttrPath::parse(ENTERPRISE_USER_SCHEMA).unwrap();
        assert_eq!(
            path.as_schema_urn().as_deref(),
            Some(ENTERPRISE_USER_SCHEMA)
        );
        assert_eq!(
            AttrPath::parse("name.givenName").unwrap().as_schema_urn(),
            None
        );
    }

    #[test]
    fn given_upper_case_urn_prefix_when_parsed_then_accepted() {
        let path = AttrPath::parse("URN:ietf:params:scim:schemas:core:2.0:User:userName").unwrap();
        assert_eq!(
            path.urn.as_deref(),
            Some("URN:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(path.name, "userName");
    }

    #[test]
    fn given_a_ref_sub_attribute_when_parsed_then_accepted() {
        let path = AttrPath::parse("members.$ref").unwrap();
        assert_eq!(path.sub_attr.as_deref(), Some("$ref"));
    }

    #[test]
    fn given_malformed_paths_when_parsed_then_400_invalid_path_naming_the_text() {
        for text in [
            "", "1abc", "name.", ".name", "a.b.c", "foo:bar", "urn:", "urn:x:", "urn::a", "na me",
            "a[b]", "$", "$1",
        ] {
            let error = AttrPath::parse(text).unwrap_err();
            assert_eq!(error.status, 400, "{text:?}");
            assert_eq!(error.scim_type, Some(ScimType::InvalidPath), "{text:?}");
            assert!(
                error.detail.contains(&format!("{text:?}")),
                "{text:?}: {}",
                error.detail
            );
        }
    }

    #[test]
    fn given_paths_differing_in_case_when_compared_then_same() {
        let a = AttrPath::parse("Name.GivenName").unwrap();
        let b = AttrPath::parse("name.givenname").unwrap();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&AttrPath::new("name")));
        assert!(!AttrPath::new("id").same_as(&AttrPath::new("id").in_schema(USER_SCHEMA)));
    }

    #[test]
    fn given_a_path_when_asked_parent_and_child_then_sub_attribute_dropped_or_replaced() {
        let path = AttrPath::with_sub("emails", "value").in_schema(USER_SCHEMA);
        assert_eq!(path.parent().to_string(), format!("{USER_SCHEMA}:emails"));
        assert_eq!(
            path.child("type").to_string(),
            format!("{USER_SCHEMA}:emails.type")
        );
    }
}
