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
        or `min_position` and wait for it (bounded), then answer 503 `not_caught_up` with Retry-After; only the \
        audit trail's queries wait for the audit read model. \
        Errors are RFC 9457 problem+json with a stable `code`."),
    paths(
        routes::operations::healthz, routes::operations::readyz, routes::operations::metrics, routes::operations::openapi,
        routes::operations::read_models, routes::operations::rebuild,
        routes::tenants::create_tenant, routes::tenants::list_tenants, routes::tenants::get_tenant, routes::tenants::rename_tenant,
        routes::tenants::get_settings, routes::tenants::put_settings,
        routes::users::create_user, routes::users::get_user,
        routes::users::suspend_user, routes::users::reinstate_user,
        routes::users::deactivate_user, routes::users::reactivate_user, routes::users::erase_user, routes::users::set_user_flags,
        routes::users::change_profile, routes::users::user_sessions, routes::users::revoke_user_sessions, routes::users::unlock_user,
        routes::memberships::list_members, routes::memberships::get_roles, routes::memberships::assign_role, routes::memberships::revoke_role,
        routes::memberships::remove_member, routes::memberships::grant_permissions, routes::memberships::revoke_permissions,
        routes::access_admin::define_role, routes::access_admin::update_role, routes::access_admin::delete_role,
        routes::access_admin::set_role_menu,
        routes::access_admin::register_entity, routes::access_admin::change_entity_fields, routes::access_admin::set_entity_rls,
        routes::access_admin::set_entity_policy, routes::access_admin::set_field_rules,
        routes::access_admin::set_record_owner, routes::access_admin::grant_record_access, routes::access_admin::revoke_record_access,
        routes::access_admin::assign_local_role, routes::access_admin::revoke_local_role,
        routes::access_queries::check, routes::access_queries::check_batch, routes::access_queries::explain,
        routes::access_queries::readable_records, routes::access_queries::visible_fields,
        routes::access_queries::entity_permissions, routes::access_queries::list_roles, routes::access_queries::get_role,
        routes::access_queries::list_entities, routes::access_queries::get_entity,
        routes::access_queries::effective_permissions, routes::access_queries::menu,
        routes::identity::account::sign_in, routes::identity::account::second_factor, routes::identity::account::refresh,
        routes::identity::account::switch_tenant, routes::identity::account::sign_out, routes::identity::account::me,
        routes::identity::account::my_sessions, routes::identity::account::revoke_my_session,
        routes::identity::account::change_password, routes::identity::account::request_reset, routes::identity::account::reset_password,
        routes::identity::account::totp_setup, routes::identity::account::totp_confirm, routes::identity::account::totp_disable,
        routes::identity::account::jwks,
        routes::identity::email::request_magic_link, routes::identity::email::magic_link_sign_in,
        routes::identity::email::request_email_code, routes::identity::email::email_code_sign_in,
        routes::identity::email::register, routes::identity::email::verify_email,
        routes::identity::email::request_email_change, routes::identity::email::confirm_email_change,
        routes::identity::invitations::invite, routes::identity::invitations::list_invitations,
        routes::identity::invitations::resend_invitation, routes::identity::invitations::revoke_invitation,
        routes::identity::invitations::accept_invitation,
        routes::identity::api_keys::issue_api_key, routes::identity::api_keys::list_api_keys, routes::identity::api_keys::revoke_api_key,
        routes::audit::audit_events,
        routes::audit::past::explain_as_of, routes::audit::past::holders_as_of, routes::audit::past::access_review,
    ),
    components(schemas(Problem, CommandAccepted)),
    modifiers(&BearerAuth, &Problems),
    tags(
        (name = "auth", description = "Sign-in, sessions, passwords and two-factor authentication of the caller"),
        (name = "invitations"), (name = "api-keys"),
        (name = "audit", description = "The audit trail: every event, filtered, without personal data"),
        (name = "tenants"), (name = "users"), (name = "roles"), (name = "entities"), (name = "records"), (name = "permissions"), (name = "access"), (name = "operations"),
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
                "An access token (the JWT from sign-in, refresh or invitation acceptance), an API key (`ids_…`), \
                 or the operator token (configuration `admin_token`)",
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
