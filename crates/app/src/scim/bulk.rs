//! SCIM Bulk (RFC 7644 §3.7): many operations in one request, later ones able to name what
//! earlier ones created by `bulkId:<id>`.
//!
//! Operations run in their order, those that do not depend on one another concurrently (a run
//! of operations naming no `bulkId` defined in the same run goes at once, at most
//! [`CONCURRENCY`] at a time), so a provisioning client's thousand creations take the log's
//! group commits rather than a thousand round trips. Each operation is what the single request
//! would be: same authorization, same events, its own answer.

use std::collections::HashMap;

use futures::StreamExt;
use idstream_domain::access::Action;
use idstream_scim::{ScimError, ScimType};
use serde_json::Value;

use super::{Collection, Endpoint, Scim, ScimResource};
use crate::AppError;
use crate::policy::Caller;

/// The most operations of one bulk request.
pub const MAX_BULK_OPERATIONS: usize = 1_000;

/// How many operations of a bulk request run at once.
pub const CONCURRENCY: usize = 32;

/// One operation of a bulk request, as sent.
#[derive(Debug, Clone)]
pub struct BulkOperationRequest {
    pub method: String,
    pub bulk_id: Option<String>,
    /// The version the resource must have (`If-Match`).
    pub version: Option<String>,
    pub path: String,
    pub data: Option<Value>,
}

/// A bulk request, as sent.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    /// Stop after this many failed operations.
    pub fail_on_errors: Option<usize>,
    pub operations: Vec<BulkOperationRequest>,
}

/// What one operation did: the resource it created or changed (none for a deletion) with the
/// status of its success, or why it failed.
#[derive(Debug)]
pub struct BulkResult {
    pub method: String,
    pub bulk_id: Option<String>,
    pub outcome: Result<(u16, Option<ScimResource>), AppError>,
}

/// The answer to a bulk request: one result per operation carried out, in order.
#[derive(Debug)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
}

impl BulkRequest {
    /// Reads a bulk request body (`urn:ietf:params:scim:api:messages:2.0:BulkRequest`).
    pub fn parse(body: &Value) -> Result<BulkRequest, ScimError> {
        let invalid = |detail: &str| ScimError::invalid_syntax(detail);
        let fail_on_errors = match body.get("failOnErrors") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| invalid("failOnErrors is a positive integer"))?,
            ),
        };
        let operations = body
            .get("Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("a bulk request has a list of Operations"))?;
        if operations.len() > MAX_BULK_OPERATIONS {
            return Err(ScimError::new(
                413,
                None,
                format!("at most {MAX_BULK_OPERATIONS} operations per bulk request"),
            ));
        }
        let text = |operation: &Value, name: &str| {
            operation
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut parsed = Vec::with_capacity(operations.len());
        for (index, operation) in operations.iter().enumerate() {
            let method = text(operation, "method")
                .ok_or_else(|| invalid(&format!("Operations[{index}] has no method")))?;
            let path = text(operation, "path")
                .ok_or_else(|| invalid(&format!("Operations[{index}] has no path")))?;
            parsed.push(BulkOperationRequest {
                method: method.to_ascii_uppercase(),
                bulk_id: text(operation, "bulkId"),
                version: text(operation, "version"),
                path,
                data: operation.get("data").cloned(),
            });
        }
        Ok(BulkRequest {
            fail_on_errors,
            operations: parsed,
        })
    }
}

/// The `bulkId`s a value names (`"bulkId:<id>"` strings anywhere in it).
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                found.push(id.to_owned());
            }
        }
        Value::Array(values) => values.iter().for_each(|v| references(v, found)),
        Value::Object(map) => map.values().for_each(|v| references(v, found)),
        _ => {}
    }
}

fn operation_references(operation: &BulkOperationRequest) -> Vec<String> {
    let mut found = Vec::new();
    for segment in operation.path.split('/') {
        references(&Value::String(segment.to_owned()), &mut found);
    }
    if let Some(data) = &operation.data {
        references(data, &mut found);
    }
    found
}

/// `text`, or the id created under the bulkId it names (`bulkId:<id>`); the unknown bulkId as
/// the error.
fn resolve_text(text: &str, created: &HashMap<String, String>) -> Result<String, String> {
    match text.strip_prefix("bulkId:") {
        Some(id) => created.get(id).cloned().ok_or_else(|| id.to_owned()),
        None => Ok(text.to_owned()),
    }
}

/// `value` with every `"bulkId:<id>"` replaced by the id created under it.
fn resolve(value: &Value, created: &HashMap<String, String>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(resolve_text(s, created)?),
        Value::Array(values) => Value::Array(
            values
                .iter()
                .map(|v| resolve(v, created))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, created)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

impl Scim {
    /// `POST /Bulk`.
    ///
    /// Who: an API key of the tenant with `scim:update`; each operation then needs what it
    /// needs alone.
    pub async fn bulk(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        request: BulkRequest,
    ) -> Result<BulkResponse, AppError> {
        self.gate(caller, Action::Update).await?;
        let mut created: HashMap<String, String> = HashMap::new();
        let mut results = Vec::with_capacity(request.operations.len());
        let mut errors = 0usize;
        // A client that asks to stop after some failures gets its operations one at a time, so
        // that none runs after the failure that ends the request.
        let at_once = if request.fail_on_errors.is_some() {
            1
        } else {
            CONCURRENCY
        };
        let mut rest = request.operations.into_iter().enumerate().peekable();
        while rest.peek().is_some() {
            if request.fail_on_errors.is_some_and(|limit| errors >= limit) {
                break;
            }
            // A run of operations none of which names a bulkId defined within the run.
            let mut run = Vec::new();
            let mut defined = std::collections::HashSet::new();
            while let Some((_, next)) = rest.peek() {
                if at_once == 1 && !run.is_empty() {
                    break;
                }
                let depends = operation_references(next)
                    .iter()
                    .any(|id| defined.contains(id));
                if depends && !run.is_empty() {
                    break;
                }
                let Some((index, operation)) = rest.next() else {
                    break;
                };
                if let Some(id) = &operation.bulk_id {
                    defined.insert(id.clone());
                }
                run.push((index, operation));
            }
            let created_now = created.clone();
            let outcomes: Vec<BulkResult> = futures::stream::iter(run)
                .map(|(index, operation)| {
                    let created = &created_now;
                    async move {
                        let scoped = caller.scoped(&format!("bulk{index}"));
                        let outcome = self.one(&scoped, endpoint, &operation, created).await;
                        BulkResult {
                            method: operation.method,
                            bulk_id: operation.bulk_id,
                            outcome,
                        }
                    }
                })
                .buffered(at_once)
                .collect()
                .await;
            for result in outcomes {
                match &result.outcome {
                    Ok((_, Some(resource))) => {
                        if let (Some(bulk_id), Some(id)) = (
                            &result.bulk_id,
                            resource.body.get("id").and_then(Value::as_str),
                        ) {
                            created.insert(bulk_id.clone(), id.to_owned());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => errors += 1,
                }
                results.push(result);
            }
        }
        Ok(BulkResponse { results })
    }

    /// One operation of a bulk request.
    async fn one(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        operation: &BulkOperationRequest,
        created: &HashMap<String, String>,
    ) -> Result<(u16, Option<ScimResource>), AppError> {
        let unresolved = |id: String| {
            AppError::Scim(ScimError::new(
                409,
                Some(ScimType::InvalidValue),
                format!("bulkId {id} names no resource this request created"),
            ))
        };
        let path = operation
            .path
            .split('/')
            .map(|segment| resolve_text(segment, created))
            .collect::<Result<Vec<String>, String>>()
            .map_err(unresolved)?
            .join("/");
        let data = match &operation.data {
            Some(data) => Some(resolve(data, created).map_err(unresolved)?),
            None => None,
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let needs_data = || {
            data.as_ref().ok_or_else(|| {
                AppError::Scim(ScimError::invalid_syntax("this operation needs data"))
            })
        };
        let version = operation.version.as_deref();
        let target = match segments.as_slice() {
            [collection] => Collection::named(collection).map(|c| (c, None)),
            [collection, id] => Collection::named(collection).map(|c| (c, Some(*id))),
            _ => None,
        };
        match (operation.method.as_str(), target) {
            ("POST", Some((collection, None))) => {
                let created = self.create(caller, endpoint, collection, needs_data()?);
                Ok((201, Some(created.await?)))
            }
            (method @ ("PUT" | "PATCH"), Some((collection, Some(id)))) => {
                let patch = method == "PATCH";
                let changed = self.change(
                    caller,
                    endpoint,
                    (collection, patch),
                    id,
                    needs_data()?,
                    version,
                );
                Ok((200, Some(changed.await?)))
            }
            ("DELETE", Some((collection, Some(id)))) => self
                .delete(caller, collection, id, version)
                .await
                .map(|()| (204, None)),
            _ => Err(AppError::Scim(ScimError::invalid_path(format!(
                "a bulk operation is POST /Users or /Groups, or PUT, PATCH or DELETE /Users/<id> or /Groups/<id>; not {} {path}",
                operation.method
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bulk_request_is_read_and_limited() {
        let request = BulkRequest::parse(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "failOnErrors": 2,
            "Operations": [
                {"method": "post", "path": "/Users", "bulkId": "q1", "data": {"userName": "a@example.com"}},
                {"method": "DELETE", "path": "/Users/x", "version": "W/\"3\""},
            ],
        }))
        .unwrap();
        assert_eq!(request.fail_on_errors, Some(2));
        assert_eq!(request.operations[0].method, "POST");
        assert_eq!(request.operations[0].bulk_id.as_deref(), Some("q1"));
        assert_eq!(request.operations[1].version.as_deref(), Some("W/\"3\""));
        let too_many: Vec<Value> = (0..=MAX_BULK_OPERATIONS)
            .map(|_| json!({"method": "DELETE", "path": "/Users/x"}))
            .collect();
        assert_eq!(
            BulkRequest::parse(&json!({"Operations": too_many}))
                .unwrap_err()
                .status,
            413
        );
        for body in [
            json!({}),
            json!({"Operations": [{"path": "/Users"}]}),
            json!({"Operations": [{"method": "POST"}]}),
            json!({"failOnErrors": 0, "Operations": []}),
        ] {
            assert_eq!(BulkRequest::parse(&body).unwrap_err().status, 400, "{body}");
        }
    }

    #[test]
    fn bulk_ids_are_found_and_replaced_anywhere_in_an_operation() {
        let operation = BulkOperationRequest {
            method: "PATCH".into(),
            bulk_id: None,
            version: None,
            path: "/Groups/bulkId:g".into(),
            data: Some(
                json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}]}),
            ),
        };
        let mut names = operation_references(&operation);
        names.sort();
        names.dedup();
        assert_eq!(names, vec!["g", "u1", "u2"]);
        let created = HashMap::from([
            ("u1".to_owned(), "ID1".to_owned()),
            ("u2".to_owned(), "ID2".to_owned()),
        ]);
        let data = resolve(operation.data.as_ref().unwrap(), &created).unwrap();
        assert_eq!(data["Operations"][0]["value"][1]["value"], "ID2");
        assert_eq!(resolve(&json!("bulkId:g"), &created), Err("g".to_owned()));
    }
}
