//! The SCIM 2.0 endpoints (`/scim/v2/…`, RFC 7644): HTTP for `idstream_app::scim`.
//!
//! SCIM is its own protocol, described by its own discovery documents (`/ServiceProviderConfig`,
//! `/ResourceTypes`, `/Schemas`) rather than the OpenAPI document, and it answers in its own
//! media type, `application/scim+json` (requests may use it or `application/json`). Errors are
//! SCIM errors (RFC 7644 §3.12: `schemas`, `status` as a string, `scimType`, `detail`, and
//! nothing else: SCIM clients validate them strictly); idstream's stable `code` is in the
//! [`CODE_HEADER`] header, so a client switches on the same codes as elsewhere.
//!
//! The routes are [`ROUTES`]; the router is built from that list alone, and the route-by-route
//! authorization test calls every one of them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use idstream_app::AppError;
use idstream_app::scim::{
    BulkRequest, BulkResponse, Collection, Endpoint, ListQuery, ScimResource, Shape,
};
use idstream_scim::{ListResponse, ScimError, ScimType};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;

/// The media type of SCIM (RFC 7644 §8.1).
pub const MEDIA_TYPE: &str = "application/scim+json";

/// The header carrying a SCIM error's stable idstream code.
pub const CODE_HEADER: &str = "x-idstream-code";

/// Every SCIM route: method and path.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/ResourceTypes/{id}"),
    ("GET", "/scim/v2/Schemas"),
    ("GET", "/scim/v2/Schemas/{id}"),
    ("GET", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users/.search"),
    ("GET", "/scim/v2/Users/{id}"),
    ("PUT", "/scim/v2/Users/{id}"),
    ("PATCH", "/scim/v2/Users/{id}"),
    ("DELETE", "/scim/v2/Users/{id}"),
    ("GET", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups/.search"),
    ("GET", "/scim/v2/Groups/{id}"),
    ("PUT", "/scim/v2/Groups/{id}"),
    ("PATCH", "/scim/v2/Groups/{id}"),
    ("DELETE", "/scim/v2/Groups/{id}"),
    ("POST", "/scim/v2/Bulk"),
];

/// The handler of one route of [`ROUTES`].
fn handler(method: &str, path: &str) -> Option<MethodRouter<AppState>> {
    Some(match (method, path) {
        ("GET", "/scim/v2/ServiceProviderConfig") => get(service_provider_config),
        ("GET", "/scim/v2/ResourceTypes") => get(resource_types),
        ("GET", "/scim/v2/ResourceTypes/{id}") => get(resource_type),
        ("GET", "/scim/v2/Schemas") => get(schemas),
        ("GET", "/scim/v2/Schemas/{id}") => get(schema),
        ("GET" | "POST", "/scim/v2/Users") => collection_route(method, Collection::Users, false)?,
        ("POST", "/scim/v2/Users/.search") => collection_route(method, Collection::Users, true)?,
        (_, "/scim/v2/Users/{id}") => resource_route(method, Collection::Users)?,
        ("GET" | "POST", "/scim/v2/Groups") => collection_route(method, Collection::Groups, false)?,
        ("POST", "/scim/v2/Groups/.search") => collection_route(method, Collection::Groups, true)?,
        (_, "/scim/v2/Groups/{id}") => resource_route(method, Collection::Groups)?,
        ("POST", "/scim/v2/Bulk") => {
            post(bulk).layer(DefaultBodyLimit::max(idstream_app::scim::MAX_PAYLOAD_BYTES))
        }
        _ => return None,
    })
}

/// `GET` (list) or `POST` (create, or `.search` when `search`) on a collection.
fn collection_route(
    method: &str,
    collection: Collection,
    search: bool,
) -> Option<MethodRouter<AppState>> {
    Some(match (method, search) {
        ("GET", false) => get(move |s, w, q| list_by_query(s, w, q, collection)),
        ("POST", false) => post(move |s, w, h, b| create(s, w, h, b, collection)),
        ("POST", true) => post(move |s, w, h, b| list_by_search(s, w, h, b, collection)),
        _ => return None,
    })
}

/// `GET`, `PUT`, `PATCH` or `DELETE` on one resource of a collection.
fn resource_route(method: &str, collection: Collection) -> Option<MethodRouter<AppState>> {
    Some(match method {
        "GET" => get(move |s, w, id, q| get_one(s, w, id, q, collection)),
        "PUT" => put(move |s, w, id, h, b| change(s, w, id, h, b, (collection, false))),
        "PATCH" => patch(move |s, w, id, h, b| change(s, w, id, h, b, (collection, true))),
        "DELETE" => delete(move |s, w, id, h| delete_one(s, w, id, h, collection)),
        _ => return None,
    })
}

pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for (method, path) in ROUTES {
        if let Some(route) = handler(method, path) {
            router = router.route(path, route);
        }
    }
    router
}

/// Whether `path` is under the SCIM endpoints: its unknown paths and methods answer SCIM errors.
pub fn is_scim(path: &str) -> bool {
    path == "/scim/v2" || path.starts_with("/scim/v2/")
}

/// The answer to an unknown path (`found: false`) or method under `/scim/v2`.
pub fn not_routed(found: bool) -> Response {
    let error = if found {
        ScimError::new(405, None, "method not allowed on this resource")
    } else {
        ScimError::new(404, None, "no such resource")
    };
    ScimFailure::from(error).into_response()
}

/// The body limit of a request to `path`, given the service's own: bulk requests may carry
/// up to what `/ServiceProviderConfig` announces.
pub fn body_limit(path: &str, limit: usize) -> usize {
    if path == "/scim/v2/Bulk" {
        limit.max(idstream_app::scim::MAX_PAYLOAD_BYTES)
    } else {
        limit
    }
}

// ----- answers -----

/// A SCIM answer: a failure renders as a SCIM error.
pub struct ScimFailure(ApiError);

impl From<AppError> for ScimFailure {
    fn from(e: AppError) -> Self {
        ScimFailure(ApiError::App(e))
    }
}

impl From<ApiError> for ScimFailure {
    fn from(e: ApiError) -> Self {
        ScimFailure(e)
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        ScimFailure(ApiError::App(AppError::Scim(e)))
    }
}

/// The stable code of a SCIM protocol error: its `scimType` in snake case (`invalid_filter`,
/// `uniqueness`…), else by status.
pub fn code_of(error: &ScimError) -> &'static str {
    match error.scim_type {
        Some(ScimType::InvalidFilter) => "invalid_filter",
        Some(ScimType::TooMany) => "too_many",
        Some(ScimType::Uniqueness) => "uniqueness",
        Some(ScimType::Mutability) => "mutability",
        Some(ScimType::InvalidSyntax) => "invalid_syntax",
        Some(ScimType::InvalidPath) => "invalid_path",
        Some(ScimType::NoTarget) => "no_target",
        Some(ScimType::InvalidValue) => "invalid_value",
        Some(ScimType::InvalidVers) => "invalid_version",
        Some(ScimType::Sensitive) => "sensitive",
        None => match error.status {
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "payload_too_large",
            _ => "invalid_request",
        },
    }
}

/// The SCIM error JSON of an error, its status and its stable code.
fn error_json(error: &ApiError) -> (StatusCode, Value, &'static str) {
    let (status, code, detail) = error.parts();
    let scim_type = match error {
        ApiError::App(AppError::Scim(scim)) => scim.scim_type,
        _ => match status {
            StatusCode::CONFLICT => Some(ScimType::Uniqueness),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Some(ScimType::InvalidValue)
            }
            _ => None,
        },
    };
    // SCIM clients know 400 for a refused value; idstream's 422s are those.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let detail = if status.is_server_error() {
        "the service could not answer; retry later".to_owned()
    } else {
        detail
    };
    let mut body = json!({
        "schemas": [idstream_scim::error::ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = Value::from(scim_type.as_str());
    }
    (status, body, code)
}

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        // The problem rendering logs the failure (with its cause for a 5xx) and sets the
        // headers that go with the status (Retry-After, WWW-Authenticate).
        let (status, body, code) = error_json(&self.0);
        let logged = self.0.into_response();
        let mut response = scim_json(status, &body);
        response
            .headers_mut()
            .insert(CODE_HEADER, HeaderValue::from_static(code));
        for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
            if let Some(value) = logged.headers().get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

fn resource_response(status: StatusCode, resource: ScimResource) -> Response {
    let mut response = scim_json(status, &resource.body);
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&resource.version) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&resource.location)
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn list_response(list: ListResponse) -> Response {
    scim_json(StatusCode::OK, &list.to_json())
}

type Answer = Result<Response, ScimFailure>;

// ----- reading requests -----

fn endpoint(state: &AppState) -> Endpoint {
    Endpoint {
        base: format!("{}/scim/v2", state.app.identity.public_url()),
    }
}

/// The caller, or why the credential could not be read.
fn caller(caller: Result<Caller, ApiError>) -> Result<Caller, ScimFailure> {
    caller.map_err(ScimFailure)
}

/// The query parameters, by name (the last of a repeated one).
fn parameters(query: Option<String>) -> Result<Vec<(String, String)>, ScimFailure> {
    let query = query.unwrap_or_default();
    if query.len() > 8 * 1024 {
        return Err(ScimError::invalid_value("the query string is too long").into());
    }
    Ok(form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect())
}

fn parameter(parameters: &[(String, String)], name: &str) -> Option<String> {
    parameters
        .iter()
        .rev()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
}

fn list_query(query: Option<String>) -> Result<ListQuery, ScimFailure> {
    let parameters = parameters(query)?;
    let get = |name: &str| parameter(&parameters, name);
    Ok(ListQuery {
        filter: get("filter"),
        sort_by: get("sortBy"),
        sort_order: get("sortOrder"),
        start_index: get("startIndex"),
        count: get("count"),
        attributes: get("attributes"),
        excluded_attributes: get("excludedAttributes"),
    })
}

fn shape(query: Option<String>) -> Result<Shape, ScimFailure> {
    let parameters = parameters(query)?;
    Ok(Shape {
        attributes: parameter(&parameters, "attributes"),
        excluded_attributes: parameter(&parameters, "excludedAttributes"),
    })
}

/// A JSON body (`application/scim+json` or `application/json`).
fn body(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, ScimFailure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !essence.is_empty() && essence != MEDIA_TYPE && essence != "application/json" {
        return Err(ScimError::invalid_syntax(format!(
            "the body is {MEDIA_TYPE} or application/json, not {essence}"
        ))
        .into());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")).into())
}

/// The body of a `.search` request, as a list query.
fn search_query(headers: &HeaderMap, bytes: &Bytes) -> Result<ListQuery, ScimFailure> {
    let body = body(headers, bytes)?;
    let text = |name: &str| -> Result<Option<String>, ScimFailure> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(_) => Err(ScimError::invalid_value(format!("{name} has the wrong type")).into()),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        sort_by: text("sortBy")?,
        sort_order: text("sortOrder")?,
        start_index: text("startIndex")?,
        count: text("count")?,
        attributes: text("attributes")?,
        excluded_attributes: text("excludedAttributes")?,
    })
}

/// A path parameter (percent-decoded).
fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ScimFailure> {
    id.map(|Path(id)| id)
        .map_err(|e| ScimError::invalid_path(format!("the path is malformed: {e}")).into())
}

/// The body's bytes, within the body limit.
fn read_body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ScimFailure> {
    bytes.map_err(|e| {
        let status = e.status().as_u16();
        let detail = format!("the body could not be read: {e}");
        ScimError::new(status, None, detail).into()
    })
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

// ----- discovery -----

async fn service_provider_config(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
) -> Answer {
    let who = caller(who)?;
    let document = state
        .app
        .scim
        .service_provider_config(&who, &endpoint(&state))
        .await?;
    Ok(scim_json(StatusCode::OK, &document))
}

fn listing(resources: Vec<Value>) -> Response {
    let total = resources.len();
    list_response(ListResponse::new(total, 1, resources))
}

fn one_of(resources: Vec<Value>, id: &str, what: &str) -> Answer {
    resources
        .into_iter()
        .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
        .map(|r| scim_json(StatusCode::OK, &r))
        .ok_or_else(|| ScimError::new(404, None, format!("no {what} {id}")).into())
}

async fn resource_types(State(state): State<AppState>, who: Result<Caller, ApiError>) -> Answer {
    let who = caller(who)?;
    let types = state
        .app
        .scim
        .resource_types(&who, &endpoint(&state))
        .await?;
    Ok(listing(types))
}

async fn resource_type(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let who = caller(who)?;
    let id = path_id(id)?;
    let types = state
        .app
        .scim
        .resource_types(&who, &endpoint(&state))
        .await?;
    one_of(types, &id, "ResourceType")
}

async fn schemas(State(state): State<AppState>, who: Result<Caller, ApiError>) -> Answer {
    let who = caller(who)?;
    let schemas = state.app.scim.schemas(&who, &endpoint(&state)).await?;
    Ok(listing(schemas))
}

async fn schema(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let who = caller(who)?;
    let id = path_id(id)?;
    let schemas = state.app.scim.schemas(&who, &endpoint(&state)).await?;
    one_of(schemas, &id, "Schema")
}

// ----- users and groups -----

async fn list(
    state: AppState,
    who: Result<Caller, ApiError>,
    collection: Collection,
    query: ListQuery,
) -> Answer {
    let who = caller(who)?;
    let list = state
        .app
        .scim
        .list(&who, &endpoint(&state), collection, &query)
        .await?;
    Ok(list_response(list))
}

async fn list_by_query(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    RawQuery(query): RawQuery,
    collection: Collection,
) -> Answer {
    list(state, who, collection, list_query(query)?).await
}

async fn list_by_search(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    collection: Collection,
) -> Answer {
    let bytes = read_body(bytes)?;
    let query = search_query(&headers, &bytes)?;
    list(state, who, collection, query).await
}

async fn get_one(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    collection: Collection,
) -> Answer {
    let who = caller(who)?;
    let id = path_id(id)?;
    let shape = shape(query)?;
    let resource = state
        .app
        .scim
        .get(&who, &endpoint(&state), collection, &id, &shape)
        .await?;
    Ok(resource_response(StatusCode::OK, resource))
}

async fn create(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    collection: Collection,
) -> Answer {
    let who = caller(who)?;
    let bytes = read_body(bytes)?;
    let body = body(&headers, &bytes)?;
    let resource = state
        .app
        .scim
        .create(&who, &endpoint(&state), collection, &body)
        .await?;
    Ok(resource_response(StatusCode::CREATED, resource))
}

/// PUT (`patch` false) or PATCH of one resource.
async fn change(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    (collection, patch): (Collection, bool),
) -> Answer {
    let who = caller(who)?;
    let id = path_id(id)?;
    let bytes = read_body(bytes)?;
    let body = body(&headers, &bytes)?;
    let if_match = if_match(&headers);
    let endpoint = endpoint(&state);
    let changed = state.app.scim.change(
        &who,
        &endpoint,
        (collection, patch),
        &id,
        &body,
        if_match.as_deref(),
    );
    Ok(resource_response(StatusCode::OK, changed.await?))
}

async fn delete_one(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    collection: Collection,
) -> Answer {
    let who = caller(who)?;
    let id = path_id(id)?;
    state
        .app
        .scim
        .delete(&who, collection, &id, if_match(&headers).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- bulk -----

fn bulk_json(response: BulkResponse) -> Value {
    let operations: Vec<Value> = response
        .results
        .into_iter()
        .map(|result| {
            let mut operation = json!({"method": result.method});
            if let Some(bulk_id) = result.bulk_id {
                operation["bulkId"] = Value::from(bulk_id);
            }
            match result.outcome {
                Ok((status, resource)) => {
                    operation["status"] = Value::from(status.to_string());
                    if let Some(resource) = resource {
                        operation["location"] = Value::from(resource.location);
                        operation["version"] = Value::from(resource.version);
                    }
                }
                Err(error) => {
                    let (status, body, _) = error_json(&ApiError::App(error));
                    operation["status"] = Value::from(status.as_u16().to_string());
                    operation["response"] = body;
                }
            }
            operation
        })
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"],
        "Operations": operations,
    })
}

async fn bulk(
    State(state): State<AppState>,
    who: Result<Caller, ApiError>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    let who = caller(who)?;
    let bytes = read_body(bytes)?;
    let body = body(&headers, &bytes)?;
    let request = BulkRequest::parse(&body)?;
    let response = state
        .app
        .scim
        .bulk(&who, &endpoint(&state), request)
        .await?;
    Ok(scim_json(StatusCode::OK, &bulk_json(response)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_handler() {
        for (method, path) in ROUTES {
            assert!(handler(method, path).is_some(), "{method} {path}");
        }
    }

    #[test]
    fn errors_are_scim_errors_with_a_string_status_a_scim_type_and_a_stable_code() {
        let (status, body, code) = error_json(&ApiError::App(AppError::EmailTaken));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["status"], "409");
        assert_eq!(body["scimType"], "uniqueness");
        assert_eq!(code, "email_taken");
        let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["detail", "schemas", "scimType", "status"]);
        assert_eq!(body["schemas"][0], idstream_scim::error::ERROR_SCHEMA);
        let (status, body, code) = error_json(&ApiError::App(AppError::Scim(
            ScimError::invalid_filter("bad"),
        )));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["scimType"], "invalidFilter");
        assert_eq!(code, "invalid_filter");
        let (status, body, _) = error_json(&ApiError::App(AppError::Unauthenticated));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.get("scimType").is_none());
        let (status, body, _) =
            error_json(&ApiError::App(AppError::Internal("secret cause".into())));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("secret cause"));
    }
}
