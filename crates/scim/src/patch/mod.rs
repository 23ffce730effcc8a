//! PATCH (RFC 7644 §3.5.2): the PatchOp request and its application to a resource.
//!
//! Parsing is lenient where the big clients need it: `op` in any case (Entra ID sends `Replace`
//! and `Add`), an empty `path` taken as none, member names of the body in any case. Application
//! is described in [`PatchRequest::apply`].

mod apply;

use std::fmt;

use serde_json::Value;

use crate::error::ScimError;
use crate::filter::{Filter, parse_patch_path};
use crate::json::{get_ci, member};
use crate::path::AttrPath;

/// The schema URN a PATCH body must list.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The kind of a PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `replace`.
    Replace,
}

impl PatchOpKind {
    /// Reads `add`, `remove` or `replace` in any case.
    pub fn from_word(word: &str) -> Option<PatchOpKind> {
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(word))
    }

    /// The lower-case keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// A PATCH `path`: `attrPath`, or `attrPath[valFilter]` optionally followed by `.subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (possibly with a sub-attribute when there is no filter).
    pub attr: AttrPath,
    /// The value filter selecting values of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// The sub-attribute after the filter (`emails[type eq "work"].value`).
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// A path naming one attribute (or sub-attribute), without filter.
    pub fn attribute(attr: AttrPath) -> Self {
        PatchPath {
            attr,
            filter: None,
            sub_attr: None,
        }
    }

    /// Parses a path; structural faults are 400 `invalidPath`, faults inside the brackets
    /// 400 `invalidFilter`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let parts = parse_patch_path(text)?;
        Ok(PatchPath {
            attr: parts.attr,
            filter: parts.filter,
            sub_attr: parts.sub_attr,
        })
    }

    /// The sub-attribute the path targets, whether written `name.sub` or `name[…].sub`.
    pub fn target_sub_attr(&self) -> Option<&str> {
        self.sub_attr.as_deref().or(self.attr.sub_attr.as_deref())
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// What to do.
    pub op: PatchOpKind,
    /// Where; `None` for an `add`/`replace` whose value is an object of attributes.
    pub path: Option<PatchPath>,
    /// The value (`None` when the request had none, as `remove` usually does).
    pub value: Option<Value>,
}

/// A parsed PatchOp request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, applied in order.
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Reads a PATCH body. 400 `invalidSyntax` when it is not an object, its `schemas` lacks
    /// the PatchOp URN, `Operations` is missing or empty, or an `op` is unknown;
    /// `invalidPath`/`invalidFilter` for a bad `path`; `noTarget` for a `remove` without path;
    /// `invalidValue` for an `add`/`replace` without value, or without path and with a value
    /// that is not an object.
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let Some(map) = body.as_object() else {
            return Err(ScimError::invalid_syntax(
                "the PATCH body must be a JSON object",
            ));
        };
        let lists_schema = get_ci(map, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|urn| urn.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            });
        if !lists_schema {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must contain \"{PATCH_OP_SCHEMA}\""
            )));
        }
        let operations = match get_ci(map, "Operations").and_then(Value::as_array) {
            Some(operations) if !operations.is_empty() => operations,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "\"Operations\" must be a non-empty array",
                ));
            }
        };
        let operations = operations
            .iter()
            .enumerate()
            .map(|(index, operation)| parse_operation(index, operation));
        Ok(PatchRequest {
            operations: operations.collect::<Result<_, _>>()?,
        })
    }
}

/// Reads `Operations[index]`.
fn parse_operation(index: usize, operation: &Value) -> Result<PatchOperation, ScimError> {
    let at = |detail: String| format!("Operations[{index}]: {detail}");
    if !operation.is_object() {
        return Err(ScimError::invalid_syntax(at(
            "an operation must be a JSON object".into(),
        )));
    }
    let word = member(operation, "op")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(op) = PatchOpKind::from_word(word) else {
        return Err(ScimError::invalid_syntax(at(format!(
            "\"op\" must be add, remove or replace, not {word:?}"
        ))));
    };
    let path = match member(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(PatchPath::parse(text).map_err(|error| ScimError {
            detail: at(error.detail),
            ..error
        })?),
        Some(_) => {
            return Err(ScimError::invalid_path(at(
                "\"path\" must be a string".into()
            )));
        }
    };
    let value = member(operation, "value").cloned();
    match (op, &path, &value) {
        (PatchOpKind::Remove, None, _) => Err(ScimError::no_target(at(
            "\"remove\" needs a \"path\"".into(),
        ))),
        (PatchOpKind::Add | PatchOpKind::Replace, _, None) => Err(ScimError::invalid_value(at(
            format!("\"{}\" needs a \"value\"", op.as_str()),
        ))),
        (PatchOpKind::Add | PatchOpKind::Replace, None, Some(value)) if !value.is_object() => {
            Err(ScimError::invalid_value(at(format!(
                "\"{}\" without \"path\" needs an object of attributes as \"value\"",
                op.as_str()
            ))))
        }
        _ => Ok(PatchOperation { op, path, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::filter::CompareOp;
    use serde_json::json;

    fn body(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
    }

    fn refusal(value: &Value) -> (u16, Option<ScimType>) {
        let error = PatchRequest::parse(value).unwrap_err();
        (error.status, error.scim_type)
    }

    #[test]
    fn given_ops_in_any_case_when_parsed_then_kinds() {
        let request = PatchRequest::parse(&body(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "ADD", "path": "nickName", "value": "Babs"},
            {"op": "remove", "path": "title"}
        ])))
        .unwrap();
        let kinds: Vec<PatchOpKind> = request
            .operations
            .iter()
            .map(|operation| operation.op)
            .collect();
        assert_eq!(
            kinds,
            [PatchOpKind::Replace, PatchOpKind::Add, PatchOpKind::Remove]
        );
        assert_eq!(request.operations[0].value, Some(json!("False")));
        assert_eq!(request.operations[2].value, None);
    }

    #[test]
    fn given_a_filtered_path_when_parsed_then_attribute_filter_and_sub_attribute() {
        let request = PatchRequest::parse(&body(json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@example.com"}
        ])))
        .unwrap();
        let path = request.operations[0].path.clone().unwrap();
        assert_eq!(path.attr, AttrPath::new("emails"));
        assert_eq!(
            path.filter,
            Some(Filter::Compare {
                path: AttrPath::new("type"),
                op: CompareOp::Eq,
                value: json!("work")
            })
        );
        assert_eq!(path.target_sub_attr(), Some("value"));
        assert_eq!(path.to_string(), "emails[type eq \"work\"].value");
    }

    #[test]
    fn given_no_path_and_an_object_value_when_parsed_then_accepted() {
        let request = PatchRequest::parse(&body(
            json!([{"op": "replace", "value": {"active": false}}]),
        ))
        .unwrap();
        assert_eq!(request.operations[0].path, None);
        let request = PatchRequest::parse(&body(
            json!([{"op": "add", "path": "", "value": {"title": "x"}}]),
        ))
        .unwrap();
        assert_eq!(request.operations[0].path, None);
    }

    #[test]
    fn given_lower_case_member_names_when_parsed_then_accepted() {
        let value = json!({"SCHEMAS": [PATCH_OP_SCHEMA.to_uppercase()], "operations": [{"OP": "add", "PATH": "title", "VALUE": "x"}]});
        let request = PatchRequest::parse(&value).unwrap();
        assert_eq!(
            request.operations[0].path,
            Some(PatchPath::attribute(AttrPath::new("title")))
        );
    }

    #[test]
    fn given_schemas_without_patch_op_when_parsed_then_invalid_syntax() {
        let value = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "remove", "path": "title"}]});
        assert_eq!(refusal(&value), (400, Some(ScimType::InvalidSyntax)));
        assert_eq!(
            refusal(&json!({"Operations": []})),
            (400, Some(ScimType::InvalidSyntax))
        );
        assert_eq!(refusal(&json!([1])), (400, Some(ScimType::InvalidSyntax)));
    }

    #[test]
    fn given_missing_or_empty_operations_when_parsed_then_invalid_syntax() {
        assert_eq!(
            refusal(&json!({"schemas": [PATCH_OP_SCHEMA]})),
            (400, Some(ScimType::InvalidSyntax))
        );
        assert_eq!(
            refusal(&body(json!([]))),
            (400, Some(ScimType::InvalidSyntax))
        );
        assert_eq!(
            refusal(&body(json!({"op": "add"}))),
            (400, Some(ScimType::InvalidSyntax))
        );
    }

    #[test]
    fn given_an_unknown_op_when_parsed_then_invalid_syntax_naming_the_operation() {
        let error = PatchRequest::parse(&body(
            json!([{"op": "add", "path": "a", "value": 1}, {"op": "move", "path": "a"}]),
        ))
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidSyntax));
        assert!(
            error.detail.starts_with("Operations[1]: "),
            "{}",
            error.detail
        );
        assert_eq!(
            refusal(&body(json!(["add"]))),
            (400, Some(ScimType::InvalidSyntax))
        );
    }

    #[test]
    fn given_remove_without_path_when_parsed_then_no_target() {
        assert_eq!(
            refusal(&body(json!([{"op": "remove"}]))),
            (400, Some(ScimType::NoTarget))
        );
    }

    #[test]
    fn given_add_without_value_or_with_scalar_value_and_no_path_when_parsed_then_invalid_value() {
        assert_eq!(
            refusal(&body(json!([{"op": "add", "path": "title"}]))),
            (400, Some(ScimType::InvalidValue))
        );
        assert_eq!(
            refusal(&body(json!([{"op": "replace", "value": "x"}]))),
            (400, Some(ScimType::InvalidValue))
        );
    }

    #[test]
    fn given_bad_paths_when_parsed_then_invalid_path_or_invalid_filter() {
        assert_eq!(
            refusal(&body(json!([{"op": "remove", "path": "a..b"}]))),
            (400, Some(ScimType::InvalidPath))
        );
        assert_eq!(
            refusal(&body(json!([{"op": "remove", "path": 7}]))),
            (400, Some(ScimType::InvalidPath))
        );
        assert_eq!(
            refusal(&body(
                json!([{"op": "remove", "path": "members[value eq]"}])
            )),
            (400, Some(ScimType::InvalidFilter))
        );
    }
}
