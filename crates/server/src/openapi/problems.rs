//! What every operation can answer besides its success: the problem responses, each status with
//! the exact `code`s an operation can get, as an `enum` of the problem's `code` property.
//!
//! An operation declares the problems of its own (its service's refusals) in its `responses(…)`
//! with `body = Problem` and a description naming each code in backticks. The problems that
//! follow from what an operation is (it has path parameters, a body, a caller, a tenant, …) are
//! added here, from one table of rules, rather than repeated on every handler:
//!
//! | rule | codes |
//! | --- | --- |
//! | every operation that knows its caller | 400 `invalid_min_position`, `invalid_idempotency_key`; 500 `internal`; 503 `log_unavailable`, `not_caught_up` |
//! | path parameters | 400 `invalid_path` |
//! | query parameters | 400 `invalid_query` |
//! | a body | 400 `malformed_json`, 413 `payload_too_large`, 415 `unsupported_media_type`, 422 `invalid_body` |
//! | authenticated | 401 `unauthorized`; 403 `second_factor_enrollment_required` (but for the steps of setting one up) |
//! | about a tenant (path or `tenant` query) and authenticated | 404 `tenant_not_found` |
//! | under `/v1/users/{user}` | 404 `user_not_found` |
//! | a command that appends | 409 `concurrency_conflict` |

use std::collections::{BTreeMap, BTreeSet};

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every `code` the server answers with, by the error map ([`crate::error`]) and the extractors
/// ([`crate::extract`]).
pub const CODES: &[&str] = &[
    "account_disabled",
    "already_bootstrapped",
    "already_suspended",
    "api_access_disabled",
    "api_key_exists",
    "api_key_not_found",
    "attribute_not_editable",
    "attribute_not_found",
    "attribute_required",
    "beyond_caller_permissions",
    "built_in_role",
    "cannot_remove_self",
    "client_exists",
    "client_not_found",
    "concurrency_conflict",
    "consent_not_found",
    "dashboard_access_disabled",
    "dry_run_unsupported",
    "email_not_verified",
    "email_taken",
    "entity_exists",
    "entity_not_found",
    "expiry_in_the_past",
    "forbidden",
    "identity_linked_elsewhere",
    "identity_not_linked",
    "identity_provider_not_found",
    "identity_provider_unavailable",
    "insufficient_scope",
    "internal",
    "invalid_api_key_name",
    "invalid_attribute_definition",
    "invalid_attribute_value",
    "invalid_body",
    "invalid_client",
    "invalid_client_name",
    "invalid_credentials",
    "invalid_default_role",
    "invalid_description",
    "invalid_email",
    "invalid_expiry",
    "invalid_external_id",
    "invalid_fields",
    "invalid_grant",
    "invalid_grant_types",
    "invalid_hidden_field",
    "invalid_idempotency_key",
    "invalid_identity_provider",
    "invalid_image_url",
    "invalid_invitation_lifetime",
    "invalid_label",
    "invalid_language",
    "invalid_menu",
    "invalid_min_position",
    "invalid_name",
    "invalid_notifications",
    "invalid_or_expired_link",
    "invalid_passkey_name",
    "invalid_path",
    "invalid_phone",
    "invalid_query",
    "invalid_reason",
    "invalid_redirect_uri",
    "invalid_request",
    "invalid_resource",
    "invalid_scope",
    "invalid_session_lifetime",
    "invalid_settings",
    "invalid_tenant_name",
    "invalid_token",
    "invitation_accepted",
    "invitation_exists",
    "invitation_not_found",
    "invitation_pending",
    "invitation_revoked",
    "last_admin",
    "local_role_not_held",
    "log_unavailable",
    "malformed_json",
    "method_not_allowed",
    "no_email_change_pending",
    "no_roles",
    "no_second_factor",
    "not_a_member",
    "not_caught_up",
    "not_found",
    "not_granted",
    "not_locked",
    "not_suspended",
    "owner_only",
    "owner_required",
    "passkey_exists",
    "passkey_not_found",
    "passkey_refused",
    "passkeys_unavailable",
    "password_required",
    "password_too_long",
    "payload_too_large",
    "permanent_role",
    "platform_admin_only",
    "public_client_has_no_secret",
    "rate_limited",
    "recent_sign_in_required",
    "resource_not_found",
    "restriction_beyond_owner",
    "role_already_assigned",
    "role_exists",
    "role_in_use",
    "role_not_assigned",
    "role_not_found",
    "same_email",
    "second_factor_enrollment_required",
    "second_factor_missing",
    "second_factor_required_by_tenant",
    "session_exists",
    "session_not_found",
    "session_required",
    "subject_required",
    "suspension_in_past",
    "tenant_exists",
    "tenant_not_found",
    "too_many_passkeys",
    "too_many_permissions",
    "totp_already_enabled",
    "totp_not_being_set_up",
    "totp_not_enabled",
    "unauthorized",
    "unauthorized_client",
    "unknown_attribute",
    "unknown_resource",
    "unknown_role",
    "unknown_scope",
    "unsupported_grant_type",
    "unsupported_media_type",
    "upstream_no_account",
    "upstream_sign_in_not_verified",
    "upstream_sign_in_refused",
    "user_erased",
    "user_exists",
    "user_inactive",
    "user_not_found",
    "user_not_inactive",
    "weak_password",
];

/// Operations that do not know their caller (no credential, consistency token or idempotency
/// key is read).
pub const WITHOUT_CALLER: &[&str] = &[
    "healthz",
    "openapi",
    "discovery",
    "issuer_jwks",
    "token",
    "userinfo",
    "revoke",
    "introspect",
];

/// The OpenID Connect protocol endpoints: form bodies (not JSON), OAuth's errors, the client
/// authenticated by the operation (see `routes::oidc`).
pub const PROTOCOL: &[&str] = &[
    "discovery",
    "issuer_jwks",
    "token",
    "userinfo",
    "revoke",
    "introspect",
];

/// Operations a session that must set up a second factor may still call.
const WHILE_ENROLLING: &[&str] = &[
    "totp_setup",
    "totp_confirm",
    "list_passkeys",
    "passkey_registration_start",
    "passkey_registration_finish",
    "me",
    "sign_out",
];

/// POST operations that append nothing themselves: questions, and requests whose mail is sent
/// in the background.
const APPEND_NOTHING: &[&str] = &[
    "check",
    "check_batch",
    "explain",
    "request_reset",
    "request_magic_link",
    "request_email_code",
    "rebuild",
    "passkey_registration_start",
    "passkey_sign_in_start",
    "passkey_second_factor_start",
];

/// The codes named in backticks in a description.
pub fn codes_in(description: &str) -> Vec<String> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

/// What an operation is, as far as the rules above care.
pub struct Shape<'a> {
    pub path: &'a str,
    pub operation_id: &'a str,
    pub is_get: bool,
    pub authenticated: bool,
    /// For commands: whether the operation takes `dry_run` (see `crate::dry_run`).
    pub dry_run: Option<bool>,
}

impl Shape<'_> {
    fn has_caller(&self) -> bool {
        !WITHOUT_CALLER.contains(&self.operation_id)
    }
}

/// Whether the operation is a command that appends events (and so takes an idempotency key and
/// may lose a race).
pub fn appends(shape: &Shape) -> bool {
    shape.has_caller() && !shape.is_get && !APPEND_NOTHING.contains(&shape.operation_id)
}

/// The problems the rules give an operation: status → [(code, why)].
fn general(
    shape: &Shape,
    operation: &Operation,
) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has_query = params
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Query && p.name != "min_position");
    let about_tenant = shape.path.contains("{tenant}")
        || params
            .iter()
            .any(|p| p.parameter_in == ParameterIn::Query && p.name == "tenant");
    if shape.has_caller() {
        out.push((
            "400",
            "invalid_min_position",
            "a consistency token that is not a position of the log",
        ));
        out.push((
            "400",
            "invalid_idempotency_key",
            "an Idempotency-Key that is not 1 to 255 visible ASCII characters",
        ));
        out.push(("500", "internal", "an internal error (logged, not shown)"));
        out.push((
            "503",
            "log_unavailable",
            "the event log is unavailable; nothing changed; see Retry-After",
        ));
        out.push((
            "503",
            "not_caught_up",
            "the read models did not reach the consistency token in time; see Retry-After",
        ));
    }
    if shape.path.contains('{') {
        out.push(("400", "invalid_path", "a path parameter breaks its format"));
    }
    if has_query {
        out.push((
            "400",
            "invalid_query",
            "a query parameter breaks its format or is not one of this operation's",
        ));
    }
    if shape.dry_run == Some(false) {
        out.push((
            "400",
            "dry_run_unsupported",
            "`dry_run=true` on an operation that cannot be previewed",
        ));
    }
    if operation.request_body.is_some() && PROTOCOL.contains(&shape.operation_id) {
        out.push(("413", "payload_too_large", "the body is too large"));
    } else if operation.request_body.is_some() {
        out.push(("400", "malformed_json", "the body is not JSON"));
        out.push(("413", "payload_too_large", "the body is too large"));
        out.push((
            "415",
            "unsupported_media_type",
            "the body is not `application/json`",
        ));
        out.push((
            "422",
            "invalid_body",
            "the body is not of the declared shape, or a field breaks its format",
        ));
    }
    if shape.authenticated {
        out.push(("401", "unauthorized", "no valid bearer credential"));
        if !WHILE_ENROLLING.contains(&shape.operation_id) {
            out.push((
                "403",
                "second_factor_enrollment_required",
                "the session must set up a second factor first",
            ));
        }
        if about_tenant {
            out.push((
                "404",
                "tenant_not_found",
                "no such tenant, or the caller has no standing in it",
            ));
        }
        if shape.path.starts_with("/v1/users/{user}") {
            out.push((
                "404",
                "user_not_found",
                "no such user, or the caller shares no tenant with them",
            ));
        }
    }
    if appends(shape) {
        out.push((
            "409",
            "concurrency_conflict",
            "the command kept losing races with others; retry",
        ));
    }
    out
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

/// A problem response's schema: the Problem, with `code` one of `codes`.
fn problem_schema(codes: &BTreeSet<String>) -> RefOr<Schema> {
    let code = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(codes.iter().cloned()));
    RefOr::T(
        AllOfBuilder::new()
            .item(Ref::from_schema_name("Problem"))
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::Object))
                    .property("code", code)
                    .required("code"),
            )
            .into(),
    )
}

/// Gives the operation its problem responses: its own, moved to `application/problem+json`,
/// and those of the rules, every status with the enum of its codes.
pub fn add(operation: &mut Operation, shape: &Shape) {
    // status → (descriptions, codes)
    let mut declared: BTreeMap<String, (Vec<String>, BTreeSet<String>)> = BTreeMap::new();
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let problem = response
            .content
            .get("application/json")
            .is_some_and(is_problem);
        if problem {
            response.content.shift_remove("application/json");
            let entry = declared.entry(status.clone()).or_default();
            entry.1.extend(codes_in(&response.description));
            if !response.description.is_empty() {
                entry.0.push(response.description.clone());
            }
        }
    }
    for (status, code, why) in general(shape, operation) {
        let entry = declared.entry(status.to_owned()).or_default();
        if entry.1.insert(code.to_owned()) {
            entry.0.push(format!("`{code}`: {why}"));
        }
    }
    for (status, (descriptions, codes)) in declared {
        let description = descriptions.join("; ");
        let content = Content::new(Some(problem_schema(&codes)));
        match operation.responses.responses.get_mut(&status) {
            Some(RefOr::T(response)) => {
                // A status that also answers something else (the readiness report's 503).
                if response.content.is_empty() {
                    response.description = description;
                } else if !description.is_empty() {
                    response.description =
                        format!("{}; or a problem: {description}", response.description);
                }
                response.content.insert(PROBLEM_JSON.to_owned(), content);
            }
            _ => {
                let response: Response = ResponseBuilder::new()
                    .description(description)
                    .content(PROBLEM_JSON, content)
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status, RefOr::T(response));
            }
        }
    }
}
