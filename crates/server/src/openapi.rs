//! The OpenAPI 3.1 document of the whole HTTP API, served at `/openapi.json`.

pub mod formats;
pub mod problems;

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{Modify, OpenApi, PartialSchema};

use crate::error::Problem;
use crate::routes::{self, CommandAccepted};

#[derive(OpenApi)]
#[openapi(
    info(title = "idstream", description = "Event-sourced identity and access service. Commands answer with the log \
        position of their last event (`position`, `X-Idstream-Position`); queries accept `X-Idstream-Min-Position` \
        or `min_position` and wait for it (bounded), then answer 503 `not_caught_up` with Retry-After; only the \
        audit trail's queries wait for the audit read model. \
        Errors are RFC 9457 problem+json with a stable `code`; every operation lists, for each status, the codes \
        it can answer (the `enum` of `code`). One code per kind of mistake: a body that is not JSON is 400 \
        `malformed_json`; a JSON body of the wrong shape, or with a field breaking its declared format (pattern, \
        length, range), 422 `invalid_body`; a path parameter breaking its format 400 `invalid_path`; a query \
        parameter breaking its format (or unknown) 400 `invalid_query`; well-formed input breaking a rule of the \
        service 422 (or 409) with the rule's own code (`invalid_tenant_name`, `invalid_name`, `weak_password`, …). \
        `detail` names the parameter or field and the rule. Any request with a body larger than the limit gets 413 \
        `payload_too_large`, an unknown path 404 `not_found`, an unknown method 405 `method_not_allowed`. \
        SCIM 2.0 provisioning (`/scim/v2/…`) is described by its own discovery documents \
        (`/scim/v2/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`), not here, and answers SCIM errors \
        with the stable code in `X-Idstream-Code`. \
        \n\nSystem flags of a user (`PUT /v1/users/{user}/flags`, shown by `GET /v1/auth/me` and the directory): \
        `api_access` governs API keys: without it the user's keys are refused (401) on every request and none can \
        be issued for them (403 `api_access_disabled`), while their sessions work as before. `dashboard_access` is \
        for front ends: the API does not enforce it, and a front end shows its dashboard only to users who have it; \
        the hosted administration console (`/admin/…`) requires it (403 `dashboard_access_disabled`). `platform_admin` manages the platform. \
        \n\nBrowser front ends on other origins: CORS is off unless the operator lists origins (`cors_origins`); \
        then requests from those origins may read every answer and the headers `X-Idstream-Position`, \
        `Retry-After`, `Idempotent-Replayed` and `X-Correlation-Id`, and send `Authorization`, `Content-Type`, \
        `Idempotency-Key`, `X-Idstream-Min-Position` and `X-Correlation-Id`; credentials (cookies) are not \
        allowed. \
        \n\nRemember me: the sign-ins that start a session take `remember`; such a session ends the tenant's \
        `remember_days` after sign-in (0 turns it off and `remember` is ignored) instead of `session_max_hours`, \
        with the same idle timeout and refresh rotation; `remembered` in the tokens says what was given."),
    paths(
        routes::operations::healthz, routes::operations::readyz, routes::operations::readyz_write, routes::operations::metrics, routes::operations::openapi,
        routes::operations::read_models, routes::operations::rebuild,
        routes::tenants::create_tenant, routes::tenants::list_tenants, routes::tenants::get_tenant, routes::tenants::rename_tenant,
        routes::tenants::get_settings, routes::tenants::put_settings,
        routes::tenants::list_attributes, routes::tenants::define_attribute, routes::tenants::remove_attribute,
        routes::users::get_attributes, routes::users::change_attributes,
        routes::users::create_user, routes::users::get_user,
        routes::users::suspend_user, routes::users::reinstate_user,
        routes::users::deactivate_user, routes::users::reactivate_user, routes::users::erase_user, routes::users::set_user_flags,
        routes::users::change_profile, routes::users::user_sessions, routes::users::revoke_user_sessions, routes::users::unlock_user,
        routes::users::reset_user_factors,
        routes::people::search_users, routes::people::autocomplete_users, routes::people::role_members,
        routes::people::change_role_members, routes::people::bulk_users, routes::people::import_users, routes::people::search_everyone, routes::people::person_access,
        routes::memberships::get_roles, routes::memberships::assign_role, routes::memberships::revoke_role,
        routes::memberships::remove_member, routes::memberships::grant_permissions, routes::memberships::revoke_permissions,
        routes::access_admin::define_role, routes::access_admin::update_role, routes::access_admin::delete_role,
        routes::access_admin::set_role_menu, routes::access_admin::copy_role,
        routes::access_admin::register_entity, routes::access_admin::change_entity_fields, routes::access_admin::set_entity_rls,
        routes::access_admin::set_entity_policy, routes::access_admin::set_field_rules,
        routes::access_admin::define_resource, routes::access_admin::remove_resource,
        routes::access_admin::relabel_role,
        routes::access_queries::list_resources,
        routes::access_admin::set_record_owner, routes::access_admin::grant_record_access, routes::access_admin::revoke_record_access,
        routes::access_admin::assign_local_role, routes::access_admin::revoke_local_role,
        routes::access_queries::check, routes::access_queries::check_batch, routes::access_queries::explain,
        routes::access_queries::readable_records, routes::access_queries::visible_fields,
        routes::access_queries::entity_permissions, routes::access_queries::list_roles, routes::access_queries::permission_catalogue, routes::access_queries::get_role,
        routes::access_queries::list_entities, routes::access_queries::get_entity,
        routes::access_queries::effective_permissions, routes::access_queries::menu,
        routes::identity::account::sign_in, routes::identity::account::second_factor, routes::identity::account::refresh,
        routes::identity::account::switch_tenant, routes::identity::account::sign_out, routes::identity::account::me,
        routes::identity::account::my_sessions, routes::identity::account::revoke_my_session,
        routes::identity::account::my_tenants,
        routes::identity::account::change_password, routes::identity::account::request_reset, routes::identity::account::reset_password,
        routes::identity::account::totp_setup, routes::identity::account::totp_confirm, routes::identity::account::totp_disable,
        routes::identity::account::jwks,
        routes::identity::passkeys::list_passkeys, routes::identity::passkeys::remove_passkey,
        routes::identity::passkeys::passkey_registration_start, routes::identity::passkeys::passkey_registration_finish,
        routes::identity::passkeys::passkey_sign_in_start, routes::identity::passkeys::passkey_sign_in_finish,
        routes::identity::passkeys::passkey_second_factor_start, routes::identity::passkeys::passkey_second_factor_finish,
        routes::identity::email::request_magic_link, routes::identity::email::magic_link_sign_in,
        routes::identity::email::request_email_code, routes::identity::email::email_code_sign_in,
        routes::identity::email::register, routes::identity::email::verify_email, routes::identity::email::resend_verification,
        routes::identity::email::request_email_change, routes::identity::email::confirm_email_change,
        routes::identity::invitations::invite, routes::identity::invitations::list_invitations,
        routes::identity::invitations::resend_invitation, routes::identity::invitations::revoke_invitation,
        routes::identity::invitations::accept_invitation,
        routes::identity::api_keys::issue_api_key, routes::identity::api_keys::list_api_keys, routes::identity::api_keys::revoke_api_key,
        routes::audit::audit_events,
        routes::audit::past::explain_as_of, routes::audit::past::holders_as_of, routes::audit::past::access_review, routes::audit::past::applications,
        routes::oidc::discovery, routes::oidc::issuer_jwks, routes::oidc::token, routes::oidc::userinfo,
        routes::oidc::revoke, routes::oidc::introspect,
        routes::oidc::register_client, routes::oidc::list_clients, routes::oidc::get_client,
        routes::oidc::update_client, routes::oidc::remove_client, routes::oidc::rotate_client_secret,
        routes::oidc::my_consents, routes::oidc::revoke_consent,
        routes::upstream::list_providers, routes::upstream::get_provider,
        routes::upstream::configure_provider, routes::upstream::remove_provider,
        routes::upstream::my_identities, routes::upstream::unlink_identity,
    ),
    components(schemas(Problem, CommandAccepted, crate::dry_run::Preview)),
    modifiers(&BearerAuth, &Formats, &Operations),
    tags(
        (name = "auth", description = "Sign-in, sessions, passwords, passkeys and two-factor authentication of the caller"),
        (name = "invitations"), (name = "api-keys"),
        (name = "oidc", description = "OpenID Connect: each tenant's issuer (`/t/{tenant}`), its clients and a person's consents; the authorization and logout endpoints are pages"),
        (name = "upstream", description = "Sign-in through other OpenID Connect providers: each tenant's upstream providers and a person's linked identities; the sign-in itself is pages (`/t/{tenant}/sign-in/{provider}`)"),
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

/// The formats ([`formats`]) as components, and every path parameter typed by its name.
struct Formats;

impl Modify for Formats {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for format in formats::ALL {
            components
                .schemas
                .insert(format.name.to_owned(), RefOr::T(format.schema()));
        }
        for (name, schema) in [
            ("PageLimit", formats::PageLimit::schema()),
            ("EventType", formats::EventType::schema()),
        ] {
            components.schemas.insert(name.to_owned(), schema);
        }
    }
}

/// The names of a path template's parameters, in order.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

fn is_authenticated(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|requirements| {
        requirements.iter().any(|r| {
            serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        })
    })
}

/// Sets a parameter, replacing one of the same name and place.
fn set_parameter(operation: &mut Operation, parameter: Parameter) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    match parameters
        .iter_mut()
        .find(|p| p.name == parameter.name && p.parameter_in == parameter.parameter_in)
    {
        Some(existing) => {
            let description = existing.description.take();
            *existing = parameter;
            if existing.description.is_none() {
                existing.description = description;
            }
        }
        // Path parameters first, in the path's order; the rest after what the handler declared.
        None if parameter.parameter_in == ParameterIn::Path => {
            let at = parameters
                .iter()
                .take_while(|p| p.parameter_in == ParameterIn::Path)
                .count();
            parameters.insert(at, parameter);
        }
        None => parameters.push(parameter),
    }
}

/// The parameters every operation of a kind has, declared here once: its path parameters (by
/// [`formats::path_parameter`]), the consistency token every operation that knows its caller
/// honours, and the idempotency key of every command.
fn add_parameters(operation: &mut Operation, path: &str, shape: &problems::Shape) {
    for name in path_parameters(path) {
        let format = formats::path_parameter(name)
            .unwrap_or_else(|| panic!("the path parameter {{{name}}} of {path} has no format"));
        set_parameter(
            operation,
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(Ref::from_schema_name(format.name)))
                .build(),
        );
    }
    // The query strings the server reads hold each parameter once: a list is comma-separated.
    for parameter in operation.parameters.iter_mut().flatten() {
        let is_list = matches!(&parameter.schema, Some(RefOr::T(Schema::Array(_))))
            || matches!(&parameter.schema, Some(RefOr::T(Schema::OneOf(one)))
                if one.items.iter().any(|s| matches!(s, RefOr::T(Schema::Array(_)))));
        if parameter.parameter_in == ParameterIn::Query && is_list {
            parameter.style = Some(ParameterStyle::Form);
            parameter.explode = Some(false);
        }
    }
    if problems::WITHOUT_CALLER.contains(&shape.operation_id) {
        return;
    }
    set_parameter(
        operation,
        ParameterBuilder::new()
            .name("X-Idstream-Min-Position")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Consistency token: the `position` of an earlier command. A query waits (bounded) until the \
                 read models reach it, then answers 503 `not_caught_up`; a command waits before authenticating.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Integer))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            ))
            .build(),
    );
    let queries = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    if shape.is_get && !queries {
        set_parameter(
            operation,
            ParameterBuilder::new()
                .name("min_position")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("The consistency token as a query parameter."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::new(Type::Integer))
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(0)),
                ))
                .build(),
        );
    }
    if problems::appends(shape) {
        set_parameter(
            operation,
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(Ref::from_schema_name(formats::IDEMPOTENCY_KEY.name)))
                .build(),
        );
    }
}

/// Gives every operation the parameters and problems of its kind (see [`add_parameters`] and
/// [`problems`]).
struct Operations;

/// The `dry_run` parameter of an operation that takes it, and its answer: the 200 of a command
/// that answers 200 becomes a `CommandAccepted` or a `Preview`; one that answers 201 gets a 200
/// with the `Preview`.
fn add_dry_run(operation: &mut Operation) {
    use utoipa::openapi::ResponseBuilder;
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::schema::OneOfBuilder;
    set_parameter(
        operation,
        ParameterBuilder::new()
            .name("dry_run")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "What-if preview: `true` decides the command as usual (the same refusals) but appends \
                 nothing, and answers the events it would append and the access difference they would \
                 make (`Preview`).",
            ))
            .schema(Some(
                ObjectBuilder::new().schema_type(SchemaType::new(Type::Boolean)),
            ))
            .build(),
    );
    let preview = Ref::from_schema_name("Preview");
    let responses = &mut operation.responses.responses;
    match responses.get_mut("200") {
        Some(RefOr::T(response)) => {
            if let Some(content) = response.content.get_mut("application/json")
                && let Some(existing) = content.schema.take()
            {
                content.schema = Some(RefOr::T(Schema::OneOf(
                    OneOfBuilder::new().item(existing).item(preview).build(),
                )));
            }
            response.description = format!(
                "{}; with `dry_run=true`, the `Preview` (nothing appended)",
                response.description
            );
        }
        _ => {
            responses.insert(
                "200".to_owned(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description("with `dry_run=true`: the `Preview` (nothing appended)")
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(preview)).build(),
                        )
                        .build(),
                ),
            );
        }
    }
}

impl Modify for Operations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (&mut item.get, "GET"),
                (&mut item.put, "PUT"),
                (&mut item.post, "POST"),
                (&mut item.delete, "DELETE"),
                (&mut item.patch, "PATCH"),
            ];
            for (operation, method) in operations {
                let Some(operation) = operation else { continue };
                let is_get = method == "GET";
                let operation_id = operation.operation_id.clone().unwrap_or_default();
                let dry_run = (!is_get).then(|| {
                    crate::dry_run::DRY_RUN_ROUTES.contains(&format!("{method} {path}").as_str())
                });
                if dry_run == Some(true) {
                    add_dry_run(operation);
                }
                let shape = problems::Shape {
                    path,
                    operation_id: &operation_id,
                    is_get,
                    authenticated: is_authenticated(operation),
                    dry_run,
                };
                add_parameters(operation, path, &shape);
                problems::add(operation, &shape);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        if let Some(path) = std::env::var_os("OPENAPI_OUT") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        doc
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                out.push((method.to_uppercase(), path.clone(), operation));
            }
        }
        out
    }

    /// The codes a problem response lists.
    fn codes(response: &Value) -> Option<Vec<String>> {
        let schema = &response["content"][problems::PROBLEM_JSON]["schema"];
        let listed = schema["allOf"][1]["properties"]["code"]["enum"].as_array()?;
        Some(
            listed
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
        )
    }

    #[test]
    fn every_problem_response_lists_its_codes_and_each_is_one_the_server_answers() {
        let doc = document();
        let mut wrong = Vec::new();
        for (method, path, operation) in operations(&doc) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let is_problem = response["content"].get(problems::PROBLEM_JSON).is_some();
                if status.starts_with('2') {
                    continue;
                }
                match (is_problem, codes(response)) {
                    (true, Some(codes)) if !codes.is_empty() => {
                        for code in codes {
                            if !problems::CODES.contains(&code.as_str()) {
                                wrong.push(format!("{method} {path} {status}: unknown `{code}`"));
                            }
                        }
                    }
                    _ => wrong.push(format!("{method} {path} {status}: no codes")),
                }
                for code in problems::codes_in(response["description"].as_str().unwrap_or("")) {
                    if !problems::CODES.contains(&code.as_str()) {
                        wrong.push(format!(
                            "{method} {path} {status}: `{code}` in the description"
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn every_authenticated_operation_answers_401_and_403_and_those_about_a_tenant_404() {
        let doc = document();
        let mut wrong = Vec::new();
        for (method, path, operation) in operations(&doc) {
            let authenticated = operation["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
            });
            if !authenticated {
                continue;
            }
            let listed = |status: &str| codes(&operation["responses"][status]).unwrap_or_default();
            if !listed("401").contains(&"unauthorized".to_owned()) {
                wrong.push(format!("{method} {path}: no 401"));
            }
            if listed("403").is_empty() {
                wrong.push(format!("{method} {path}: no 403"));
            }
            if path.contains("{tenant}") && !listed("404").contains(&"tenant_not_found".to_owned())
            {
                wrong.push(format!("{method} {path}: no 404 tenant_not_found"));
            }
            if path.starts_with("/v1/users/{user}")
                && !listed("404").contains(&"user_not_found".to_owned())
            {
                wrong.push(format!("{method} {path}: no 404 user_not_found"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// A schema, through references.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => resolve(
                doc,
                &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            ),
            None => schema,
        }
    }

    #[test]
    fn every_string_parameter_has_a_format_and_limit_its_range() {
        let doc = document();
        let free = ["aggregate_id"];
        let mut wrong = Vec::new();
        for (method, path, operation) in operations(&doc) {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                let place = parameter["in"].as_str().unwrap();
                let mut schema = resolve(&doc, &parameter["schema"]);
                if let Some(one) = schema["oneOf"].as_array() {
                    schema = resolve(&doc, one.iter().find(|s| s["type"] != "null").unwrap());
                }
                if schema["type"] == "array" {
                    schema = resolve(&doc, &schema["items"]);
                }
                let constrained = schema.get("pattern").is_some()
                    || schema.get("enum").is_some()
                    || schema.get("format").is_some()
                    || schema["type"] != "string";
                if place != "header" && !constrained && !free.contains(&name) {
                    wrong.push(format!(
                        "{method} {path}: {place} parameter {name} is any string"
                    ));
                }
                if name == "limit" && (schema["minimum"] != 1 || schema["maximum"] != 500) {
                    wrong.push(format!("{method} {path}: limit is not 1 to 500: {schema}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
