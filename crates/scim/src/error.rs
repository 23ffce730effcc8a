//! SCIM errors (RFC 7644 §3.12): an HTTP status, an optional `scimType` keyword and a detail
//! message, serialised as the SCIM error JSON.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// The schema URN of a SCIM error response.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` keywords of RFC 7644 §3.12, Table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid, or the operator is not valid for the attribute's type.
    InvalidFilter,
    /// The filter yields too many results for the server to process.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// The attempted modification is not compatible with the attribute's mutability.
    Mutability,
    /// The request body is unparsable, syntactically incorrect or violates the schema.
    InvalidSyntax,
    /// The `path` attribute was invalid or malformed.
    InvalidPath,
    /// The path did not yield an attribute or value that could be operated on.
    NoTarget,
    /// A required value was missing, or is not compatible with the operation or attribute type.
    InvalidValue,
    /// The specified SCIM protocol version is not supported.
    InvalidVers,
    /// The request carried sensitive information in its URI.
    Sensitive,
}

impl ScimType {
    /// Every keyword, in the order of the RFC's table.
    pub const ALL: [ScimType; 10] = [
        ScimType::InvalidFilter,
        ScimType::TooMany,
        ScimType::Uniqueness,
        ScimType::Mutability,
        ScimType::InvalidSyntax,
        ScimType::InvalidPath,
        ScimType::NoTarget,
        ScimType::InvalidValue,
        ScimType::InvalidVers,
        ScimType::Sensitive,
    ];

    /// The keyword as it appears in JSON (`"invalidFilter"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }

    /// The keyword named by `text` (exact spelling, as the RFC writes it).
    pub fn from_keyword(text: &str) -> Option<ScimType> {
        ScimType::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The HTTP status that goes with the keyword: 409 for `uniqueness` (RFC 7644 §3.3), 403
    /// for `sensitive` (§7.5.2), 400 for the others.
    pub fn status(self) -> u16 {
        match self {
            ScimType::Uniqueness => 409,
            ScimType::Sensitive => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ScimType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A SCIM error: what the HTTP layer turns into a response with status `status` and the body
/// [`ScimError::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}{}: {detail}", scim_type.map(|kind| format!(" {kind}")).unwrap_or_default())]
pub struct ScimError {
    /// The HTTP status code.
    pub status: u16,
    /// The SCIM detail keyword, when one applies.
    pub scim_type: Option<ScimType>,
    /// A human-readable explanation.
    pub detail: String,
}

impl ScimError {
    /// An error with the given status, keyword and detail.
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// An error of the given keyword with its usual status (see [`ScimType::status`]).
    pub fn of(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError::new(scim_type.status(), Some(scim_type), detail)
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::InvalidFilter, detail)
    }

    /// 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::InvalidSyntax, detail)
    }

    /// 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::InvalidPath, detail)
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::InvalidValue, detail)
    }

    /// 400 `noTarget`.
    pub fn no_target(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::NoTarget, detail)
    }

    /// 400 `mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        ScimError::of(ScimType::Mutability, detail)
    }

    /// The error as SCIM error JSON (`status` is a string, as RFC 7644 §3.12 requires).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for ScimError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = if self.scim_type.is_some() { 4 } else { 3 };
        let mut map = serializer.serialize_map(Some(entries))?;
        map.serialize_entry("schemas", &[ERROR_SCHEMA])?;
        map.serialize_entry("status", &self.status.to_string())?;
        if let Some(kind) = self.scim_type {
            map.serialize_entry("scimType", &kind)?;
        }
        map.serialize_entry("detail", &self.detail)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_every_keyword_when_spelt_then_matches_the_rfc_table() {
        let spelt: Vec<&str> = ScimType::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            spelt,
            [
                "invalidFilter",
                "tooMany",
                "uniqueness",
                "mutability",
                "invalidSyntax",
                "invalidPath",
                "noTarget",
                "invalidValue",
                "invalidVers",
                "sensitive"
            ]
        );
    }

    #[test]
    fn given_a_keyword_when_read_back_then_the_same_keyword() {
        for kind in ScimType::ALL {
            assert_eq!(ScimType::from_keyword(kind.as_str()), Some(kind));
        }
        assert_eq!(ScimType::from_keyword("InvalidFilter"), None);
    }

    #[test]
    fn given_keywords_when_asked_their_status_then_409_uniqueness_403_sensitive_else_400() {
        assert_eq!(ScimType::Uniqueness.status(), 409);
        assert_eq!(ScimType::Sensitive.status(), 403);
        assert_eq!(ScimType::InvalidFilter.status(), 400);
        assert_eq!(ScimType::NoTarget.status(), 400);
        assert_eq!(ScimError::of(ScimType::Uniqueness, "taken").status, 409);
    }

    #[test]
    fn given_an_error_with_a_keyword_when_serialised_then_scim_error_json_with_string_status() {
        let error = ScimError::invalid_filter("unexpected end at character 9");
        assert_eq!(
            error.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "scimType": "invalidFilter",
                "detail": "unexpected end at character 9"
            })
        );
    }

    #[test]
    fn given_an_error_without_keyword_when_serialised_then_no_scim_type_member() {
        let error = ScimError::new(404, None, "Resource 2819c223 not found");
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"404","detail":"Resource 2819c223 not found"}"#
        );
    }

    #[test]
    fn given_errors_when_displayed_then_status_keyword_and_detail() {
        assert_eq!(
            ScimError::mutability("id is readOnly").to_string(),
            "400 mutability: id is readOnly"
        );
        assert_eq!(ScimError::new(500, None, "boom").to_string(), "500: boom");
    }

    #[test]
    fn given_the_shorthand_constructors_when_built_then_keyword_and_status_match() {
        let cases = [
            (ScimError::invalid_syntax("x"), ScimType::InvalidSyntax),
            (ScimError::invalid_path("x"), ScimType::InvalidPath),
            (ScimError::invalid_value("x"), ScimType::InvalidValue),
            (ScimError::no_target("x"), ScimType::NoTarget),
            (ScimError::mutability("x"), ScimType::Mutability),
        ];
        for (error, kind) in cases {
            assert_eq!(error.status, 400);
            assert_eq!(error.scim_type, Some(kind));
            assert_eq!(error.detail, "x");
        }
    }
}
