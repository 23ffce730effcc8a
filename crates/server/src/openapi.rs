//! The OpenAPI 3.1 document of the whole HTTP API, served at `/openapi.json`.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;
use crate::routes::{self, CommandAccepted};

#[derive(OpenApi)]
#[openapi(
    info(title = "idstream", description = "Event-sourced identity and access service. Commands answer with the log \
        position of their last event (`position`, `X-Idstream-Position`); queries accept `X-Idstream-Min-Position` \
        or `min_position` and wait for it (bounded), then answer 503 `not_caught_up` with Retry-After. \
        Errors are RFC 9457 problem+json with a stable `code`."),
    paths(
        routes::ops::healthz, routes::ops::readyz, routes::ops::metrics, routes::ops::openapi,
        routes::ops::read_models, routes::ops::rebuild,
        routes::tenants::create_tenant, routes::tenants::list_tenants, routes::tenants::get_tenant, routes::tenants::rename_tenant,
        routes::users::create_user, routes::users::list_members, routes::users::get_user,
        routes::users::suspend_user, routes::users::reinstate_user,
        routes::memberships::get_roles, routes::memberships::assign_role, routes::memberships::revoke_role,
    ),
    components(schemas(Problem, CommandAccepted)),
    modifiers(&BearerAuth, &Problems),
    tags(
        (name = "tenants"), (name = "users"), (name = "roles"), (name = "operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(
                "The bootstrap admin token (configuration `admin_token`, or the file `admin-token` in the data directory)",
            )).build()),
        );
    }
}

/// Errors are `application/problem+json`, and every operation lists the problems any request can
/// get besides its own: malformed input, missing credentials, bodies that are too large or not
/// JSON, and the service-side 500 and 503. Declared once here rather than on every handler.
struct Problems;

const PROBLEM_JSON: &str = "application/problem+json";

fn problem_response(description: &str) -> RefOr<Response> {
    let schema: RefOr<Schema> = Ref::from_schema_name("Problem").into();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, Content::new(Some(schema)))
            .build(),
    )
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

fn add_problems(operation: &mut Operation, path: &str) {
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response
            && response
                .content
                .get("application/json")
                .is_some_and(is_problem)
            && let Some(content) = response.content.shift_remove("application/json")
        {
            response.content.insert(PROBLEM_JSON.to_owned(), content);
        }
    }
    if !path.starts_with("/v1/") {
        return;
    }
    let mut standard = vec![
        (
            "400",
            "malformed path, query or header (`invalid_path`, `invalid_query`, `invalid_min_position`, `invalid_idempotency_key`)",
        ),
        ("401", "missing or wrong bearer token (`unauthorized`)"),
        ("500", "internal error (`internal`)"),
        (
            "503",
            "event log unavailable or read models not caught up (`log_unavailable`, `not_caught_up`); see Retry-After",
        ),
    ];
    if operation.request_body.is_some() {
        standard.push(("413", "body too large (`payload_too_large`)"));
        standard.push(("415", "body is not JSON (`unsupported_media_type`)"));
        standard.push((
            "422",
            "body of the wrong shape (`invalid_body`) or breaking a rule",
        ));
    }
    if path.contains('{') {
        standard.push(("404", "no such resource"));
    }
    for (status, description) in standard {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description));
    }
}

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_problems(operation, path);
            }
        }
    }
}
