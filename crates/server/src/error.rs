//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable `code`.
//!
//! Every error the service can answer with is decided in [`ApiError::parts`]: one match from
//! cause to status and code. 5xx bodies are generic; their cause is logged with the request's
//! correlation id, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idstream_app::AppError;
use idstream_domain::access::entity::EntityError;
use idstream_domain::access::record::RecordError;
use idstream_domain::access::role::RoleError;
use idstream_domain::attributes::AttributeError;
use idstream_domain::identity::api_key::ApiKeyError;
use idstream_domain::identity::credentials::CredentialsError;
use idstream_domain::identity::invitation::InvitationError;
use idstream_domain::identity::session::SessionError;
use idstream_domain::membership::MembershipError;
use idstream_domain::tenant::TenantError;
use idstream_domain::user::UserError;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:idstream:problem:<code>`
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code; clients switch on this.
    pub code: String,
}

#[derive(Debug)]
pub enum ApiError {
    App(AppError),
    /// The request is malformed in a way the HTTP layer sees: body, path, query or headers.
    BadRequest {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    Unauthorized,
    NotFound,
    MethodNotAllowed,
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError::App(e)
    }
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
        }
    }

    /// 422 `invalid_body`: a JSON body of the wrong shape, or a field of it breaking its format;
    /// `place` names the field (`body field `roles[1]``).
    pub fn invalid_body(place: impl std::fmt::Display, rule: impl std::fmt::Display) -> ApiError {
        ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            detail: format!("{place}: {rule}"),
        }
    }

    /// 400 `invalid_query`: a query parameter breaking its format; the detail names it.
    pub fn invalid_query(detail: impl Into<String>) -> ApiError {
        ApiError::bad_request("invalid_query", detail)
    }

    /// Status, stable code and the detail shown to the client.
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        let shown = |e: &dyn std::fmt::Display| e.to_string();
        match self {
            ApiError::BadRequest {
                status,
                code,
                detail,
            } => (*status, code, detail.clone()),
            ApiError::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".into(),
            ),
            ApiError::NotFound => (S::NOT_FOUND, "not_found", "no such resource".into()),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this resource".into(),
            ),
            ApiError::App(e) => match e {
                AppError::Tenant(t) => match t {
                    TenantError::AlreadyExists => (S::CONFLICT, "tenant_exists", shown(t)),
                    TenantError::NotFound => (S::NOT_FOUND, "tenant_not_found", shown(t)),
                    TenantError::InvalidName => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_tenant_name", shown(t))
                    }
                    TenantError::InvalidSettings => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_settings", shown(t))
                    }
                    TenantError::ResourceNotFound => (S::NOT_FOUND, "resource_not_found", shown(t)),
                    TenantError::InvalidResource => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_resource", shown(t))
                    }
                    TenantError::AttributeNotFound => {
                        (S::NOT_FOUND, "attribute_not_found", shown(t))
                    }
                    TenantError::Attribute(a) => attribute_error(a),
                },
                AppError::User(u) => match u {
                    UserError::AlreadyExists => (S::CONFLICT, "user_exists", shown(u)),
                    UserError::NotFound => (S::NOT_FOUND, "user_not_found", shown(u)),
                    UserError::InvalidEmail => (S::UNPROCESSABLE_ENTITY, "invalid_email", shown(u)),
                    UserError::InvalidName => (S::UNPROCESSABLE_ENTITY, "invalid_name", shown(u)),
                    UserError::AlreadySuspended => (S::CONFLICT, "already_suspended", shown(u)),
                    UserError::NotSuspended => (S::CONFLICT, "not_suspended", shown(u)),
                    UserError::SuspensionInThePast => {
                        (S::UNPROCESSABLE_ENTITY, "suspension_in_past", shown(u))
                    }
                    UserError::InvalidReason => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_reason", shown(u))
                    }
                    UserError::Inactive => (S::CONFLICT, "user_inactive", shown(u)),
                    UserError::Erased => (S::CONFLICT, "user_erased", shown(u)),
                    UserError::NotInactive => (S::CONFLICT, "user_not_inactive", shown(u)),
                    UserError::SameEmail => (S::UNPROCESSABLE_ENTITY, "same_email", shown(u)),
                    UserError::NoEmailChangePending => {
                        (S::CONFLICT, "no_email_change_pending", shown(u))
                    }
                    UserError::InvalidImageUrl => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_image_url", shown(u))
                    }
                    UserError::InvalidNotifications => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_notifications", shown(u))
                    }
                    UserError::InvalidPhone => (S::UNPROCESSABLE_ENTITY, "invalid_phone", shown(u)),
                    UserError::InvalidExternalId => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_external_id", shown(u))
                    }
                    UserError::InvalidLanguage => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_language", shown(u))
                    }
                    UserError::Attribute(a) => attribute_error(a),
                },
                AppError::Membership(m) => match m {
                    MembershipError::AlreadyAssigned => {
                        (S::CONFLICT, "role_already_assigned", shown(m))
                    }
                    MembershipError::NotAssigned => (S::CONFLICT, "role_not_assigned", shown(m)),
                    MembershipError::NotAMember => (S::NOT_FOUND, "not_a_member", shown(m)),
                    MembershipError::TooManyPermissions => {
                        (S::UNPROCESSABLE_ENTITY, "too_many_permissions", shown(m))
                    }
                    MembershipError::InvalidExpiry => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_expiry", shown(m))
                    }
                    MembershipError::PermanentRole => {
                        (S::UNPROCESSABLE_ENTITY, "permanent_role", shown(m))
                    }
                },
                AppError::Role(r) => match r {
                    RoleError::AlreadyExists => (S::CONFLICT, "role_exists", shown(r)),
                    RoleError::NotFound => (S::NOT_FOUND, "role_not_found", shown(r)),
                    RoleError::BuiltIn => (S::UNPROCESSABLE_ENTITY, "built_in_role", shown(r)),
                    RoleError::InvalidDescription => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_description", shown(r))
                    }
                    RoleError::TooManyPermissions => {
                        (S::UNPROCESSABLE_ENTITY, "too_many_permissions", shown(r))
                    }
                    RoleError::InvalidMenu(_) => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_menu", shown(r))
                    }
                    RoleError::InvalidLabel => (S::UNPROCESSABLE_ENTITY, "invalid_label", shown(r)),
                },
                AppError::Entity(x) => match x {
                    EntityError::AlreadyExists => (S::CONFLICT, "entity_exists", shown(x)),
                    EntityError::NotFound => (S::NOT_FOUND, "entity_not_found", shown(x)),
                    EntityError::InvalidFields => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_fields", shown(x))
                    }
                    EntityError::InvalidHiddenField => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_hidden_field", shown(x))
                    }
                },
                AppError::Record(r) => match r {
                    RecordError::NotGranted => (S::CONFLICT, "not_granted", shown(r)),
                    RecordError::LocalRoleNotHeld => (S::CONFLICT, "local_role_not_held", shown(r)),
                    RecordError::InvalidExpiry => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_expiry", shown(r))
                    }
                },
                AppError::EntityNotFound => (S::NOT_FOUND, "entity_not_found", shown(e)),
                AppError::NotAMember => (S::UNPROCESSABLE_ENTITY, "not_a_member", shown(e)),
                AppError::OwnerOnly => (S::FORBIDDEN, "owner_only", shown(e)),
                AppError::CannotRemoveSelf => {
                    (S::UNPROCESSABLE_ENTITY, "cannot_remove_self", shown(e))
                }
                AppError::LastAdmin => (S::UNPROCESSABLE_ENTITY, "last_admin", shown(e)),
                AppError::RoleInUse(_) => (S::CONFLICT, "role_in_use", shown(e)),
                AppError::ProtectedDefaultRole => {
                    (S::UNPROCESSABLE_ENTITY, "invalid_default_role", shown(e))
                }
                AppError::EmailTaken => (S::CONFLICT, "email_taken", shown(e)),
                AppError::EmailClaim(_) => (S::CONFLICT, "email_taken", shown(e)),
                AppError::Credentials(c) => match c {
                    CredentialsError::InvalidToken => {
                        (S::BAD_REQUEST, "invalid_or_expired_link", shown(e))
                    }
                    CredentialsError::TotpReplayed => {
                        (S::UNAUTHORIZED, "invalid_credentials", shown(e))
                    }
                    CredentialsError::NoTotpEnrolment => {
                        (S::CONFLICT, "totp_not_being_set_up", shown(e))
                    }
                    CredentialsError::TotpNotEnabled => (S::CONFLICT, "totp_not_enabled", shown(e)),
                    CredentialsError::TotpAlreadyEnabled => {
                        (S::CONFLICT, "totp_already_enabled", shown(e))
                    }
                    CredentialsError::InvalidRecoveryCode => {
                        (S::UNAUTHORIZED, "invalid_credentials", shown(e))
                    }
                    CredentialsError::NotLocked => (S::CONFLICT, "not_locked", shown(e)),
                    CredentialsError::PasskeyAlreadyRegistered => {
                        (S::CONFLICT, "passkey_exists", shown(e))
                    }
                    CredentialsError::UnknownPasskey => {
                        (S::NOT_FOUND, "passkey_not_found", shown(e))
                    }
                    CredentialsError::TooManyPasskeys => {
                        (S::UNPROCESSABLE_ENTITY, "too_many_passkeys", shown(e))
                    }
                    CredentialsError::PasskeyCeremonySpent
                    | CredentialsError::PasskeyCounterRegressed => (
                        S::UNAUTHORIZED,
                        "invalid_credentials",
                        AppError::InvalidCredentials.to_string(),
                    ),
                    CredentialsError::NoSecondFactor => (S::CONFLICT, "no_second_factor", shown(e)),
                },
                AppError::Session(s) => match s {
                    SessionError::AlreadyExists => (S::CONFLICT, "session_exists", shown(e)),
                    SessionError::Ended => (S::UNAUTHORIZED, "invalid_token", shown(e)),
                    SessionError::InvalidLifetime => (
                        S::UNPROCESSABLE_ENTITY,
                        "invalid_session_lifetime",
                        shown(e),
                    ),
                    SessionError::InvalidGrant => (S::BAD_REQUEST, "invalid_grant", shown(e)),
                },
                AppError::Invitation(i) => match i {
                    InvitationError::AlreadyExists => (S::CONFLICT, "invitation_exists", shown(e)),
                    InvitationError::NotFound => (S::NOT_FOUND, "invitation_not_found", shown(e)),
                    InvitationError::InvalidToken => {
                        (S::BAD_REQUEST, "invalid_or_expired_link", shown(e))
                    }
                    InvitationError::AlreadyAccepted => {
                        (S::CONFLICT, "invitation_accepted", shown(e))
                    }
                    InvitationError::Revoked => (S::CONFLICT, "invitation_revoked", shown(e)),
                    InvitationError::InvalidLifetime => (
                        S::UNPROCESSABLE_ENTITY,
                        "invalid_invitation_lifetime",
                        shown(e),
                    ),
                    InvitationError::NoRoles => (S::UNPROCESSABLE_ENTITY, "no_roles", shown(e)),
                },
                AppError::ApiKey(k) => match k {
                    ApiKeyError::AlreadyExists => (S::CONFLICT, "api_key_exists", shown(e)),
                    ApiKeyError::NotFound => (S::NOT_FOUND, "api_key_not_found", shown(e)),
                    ApiKeyError::InvalidName => {
                        (S::UNPROCESSABLE_ENTITY, "invalid_api_key_name", shown(e))
                    }
                    ApiKeyError::ExpiryInThePast => {
                        (S::UNPROCESSABLE_ENTITY, "expiry_in_the_past", shown(e))
                    }
                },
                AppError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials", shown(e)),
                AppError::InvalidToken => (S::UNAUTHORIZED, "invalid_token", shown(e)),
                AppError::InvalidOrExpiredLink => {
                    (S::BAD_REQUEST, "invalid_or_expired_link", shown(e))
                }
                AppError::Unauthenticated => (
                    S::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token is required".into(),
                ),
                AppError::AccountDisabled => (S::FORBIDDEN, "account_disabled", shown(e)),
                AppError::EmailNotVerified => (S::FORBIDDEN, "email_not_verified", shown(e)),
                AppError::SecondFactorEnrolmentRequired => {
                    (S::FORBIDDEN, "second_factor_enrollment_required", shown(e))
                }
                AppError::SecondFactorRequiredByTenant => {
                    (S::FORBIDDEN, "second_factor_required_by_tenant", shown(e))
                }
                AppError::PasswordTooLong => {
                    (S::UNPROCESSABLE_ENTITY, "password_too_long", shown(e))
                }
                AppError::WeakPassword(_) => (S::UNPROCESSABLE_ENTITY, "weak_password", shown(e)),
                AppError::PasswordRequired => {
                    (S::UNPROCESSABLE_ENTITY, "password_required", shown(e))
                }
                AppError::SecondFactorMissing => {
                    (S::UNPROCESSABLE_ENTITY, "second_factor_missing", shown(e))
                }
                AppError::PasskeyRefused => (S::BAD_REQUEST, "passkey_refused", shown(e)),
                AppError::InvalidPasskeyName => {
                    (S::UNPROCESSABLE_ENTITY, "invalid_passkey_name", shown(e))
                }
                AppError::RecentSignInRequired => {
                    (S::FORBIDDEN, "recent_sign_in_required", shown(e))
                }
                AppError::PasskeysUnavailable => {
                    (S::SERVICE_UNAVAILABLE, "passkeys_unavailable", shown(e))
                }
                AppError::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited", shown(e)),
                AppError::SessionOnly => (S::FORBIDDEN, "session_required", shown(e)),
                AppError::SessionNotFound => (S::NOT_FOUND, "session_not_found", shown(e)),
                AppError::InvitationPending => (S::CONFLICT, "invitation_pending", shown(e)),
                AppError::OwnerRequired => (S::UNPROCESSABLE_ENTITY, "owner_required", shown(e)),
                AppError::ApiAccessDisabled => (S::FORBIDDEN, "api_access_disabled", shown(e)),
                AppError::DashboardAccessDisabled => {
                    (S::FORBIDDEN, "dashboard_access_disabled", shown(e))
                }
                AppError::ScimKeyRequired => (S::FORBIDDEN, "scim_key_required", shown(e)),
                AppError::OAuth(o) => (
                    match o.error {
                        "invalid_client" | "invalid_token" => S::UNAUTHORIZED,
                        "insufficient_scope" => S::FORBIDDEN,
                        _ => S::BAD_REQUEST,
                    },
                    o.error,
                    o.description.clone(),
                ),
                AppError::Client(c) => {
                    use idstream_domain::identity::client::ClientError as C;
                    match c {
                        C::AlreadyExists => (S::CONFLICT, "client_exists", shown(c)),
                        C::NotFound => (S::NOT_FOUND, "client_not_found", shown(c)),
                        C::InvalidName => {
                            (S::UNPROCESSABLE_ENTITY, "invalid_client_name", shown(c))
                        }
                        C::InvalidUri(_) => {
                            (S::UNPROCESSABLE_ENTITY, "invalid_redirect_uri", shown(c))
                        }
                        C::InvalidGrants(_) => {
                            (S::UNPROCESSABLE_ENTITY, "invalid_grant_types", shown(c))
                        }
                        C::UnknownScope(_) => (S::UNPROCESSABLE_ENTITY, "unknown_scope", shown(c)),
                        C::PublicClientSecret => {
                            (S::CONFLICT, "public_client_has_no_secret", shown(c))
                        }
                    }
                }
                AppError::Consent(c) => (S::NOT_FOUND, "consent_not_found", shown(c)),
                AppError::IdentityProvider(p) => {
                    use idstream_domain::identity::upstream::IdentityProviderError as P;
                    match p {
                        P::NotFound => (S::NOT_FOUND, "identity_provider_not_found", shown(p)),
                        P::Invalid(_) => (
                            S::UNPROCESSABLE_ENTITY,
                            "invalid_identity_provider",
                            shown(p),
                        ),
                    }
                }
                AppError::ExternalIdentity(x) => {
                    use idstream_domain::identity::upstream::ExternalIdentityError as X;
                    match x {
                        X::LinkedToAnother => (S::CONFLICT, "identity_linked_elsewhere", shown(x)),
                        X::NotLinked => (S::NOT_FOUND, "identity_not_linked", shown(x)),
                    }
                }
                AppError::Upstream(u) => {
                    use idstream_app::upstream::UpstreamError as U;
                    match u {
                        U::Unavailable => {
                            (S::BAD_GATEWAY, "identity_provider_unavailable", shown(u))
                        }
                        U::NotVerified => {
                            (S::BAD_REQUEST, "upstream_sign_in_not_verified", shown(u))
                        }
                        U::Refused(_) => (S::FORBIDDEN, "upstream_sign_in_refused", shown(u)),
                        U::NoAccount => (S::FORBIDDEN, "upstream_no_account", shown(u)),
                    }
                }
                AppError::PreconditionFailed => {
                    (S::PRECONDITION_FAILED, "precondition_failed", shown(e))
                }
                AppError::Scim(scim) => (
                    S::from_u16(scim.status).unwrap_or(S::BAD_REQUEST),
                    crate::scim::code_of(scim),
                    shown(e),
                ),
                AppError::RestrictionBeyondOwner(_) => (
                    S::UNPROCESSABLE_ENTITY,
                    "restriction_beyond_owner",
                    shown(e),
                ),
                AppError::AlreadyBootstrapped => (S::CONFLICT, "already_bootstrapped", shown(e)),
                AppError::TenantNotFound => (S::NOT_FOUND, "tenant_not_found", shown(e)),
                AppError::UserNotFound => (S::NOT_FOUND, "user_not_found", shown(e)),
                AppError::UnknownRole(_) => (S::UNPROCESSABLE_ENTITY, "unknown_role", shown(e)),
                AppError::UnknownResource(_) => {
                    (S::UNPROCESSABLE_ENTITY, "unknown_resource", shown(e))
                }
                AppError::Forbidden(_) => (S::FORBIDDEN, "forbidden", shown(e)),
                AppError::BeyondCallerPermissions(_) => {
                    (S::FORBIDDEN, "beyond_caller_permissions", shown(e))
                }
                AppError::SubjectRequired => (S::BAD_REQUEST, "subject_required", shown(e)),
                AppError::TenantRequired => (S::BAD_REQUEST, "invalid_query", shown(e)),
                AppError::InvalidQuery(_) => (S::BAD_REQUEST, "invalid_query", shown(e)),
                AppError::SearchIndexLoading => (S::SERVICE_UNAVAILABLE, "not_caught_up", shown(e)),
                AppError::PlatformAdminOnly => (S::FORBIDDEN, "platform_admin_only", shown(e)),
                AppError::InvalidIdempotencyKey => {
                    (S::BAD_REQUEST, "invalid_idempotency_key", shown(e))
                }
                AppError::DryRunUnsupported => (S::BAD_REQUEST, "dry_run_unsupported", shown(e)),
                AppError::Conflict => (S::CONFLICT, "concurrency_conflict", shown(e)),
                AppError::Unavailable(_) => (
                    S::SERVICE_UNAVAILABLE,
                    "log_unavailable",
                    "the event log is unavailable; nothing was changed, retry shortly".into(),
                ),
                AppError::Stale { wanted, current } => (
                    S::SERVICE_UNAVAILABLE,
                    "not_caught_up",
                    format!(
                        "read models are at position {current}, not yet at {wanted}; retry shortly"
                    ),
                ),
                AppError::PositionBeyondLog { .. } => {
                    (S::BAD_REQUEST, "invalid_min_position", shown(e))
                }
                AppError::Internal(_) => (
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
        }
    }
}

impl ApiError {
    /// The problem document of this error (for an answer that reports several, each its own).
    pub fn problem(&self) -> Problem {
        let (status, code, detail) = self.parts();
        Problem {
            problem_type: format!("urn:idstream:problem:{code}"),
            title: title(status),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let (status, code) = (self.parts().0, problem.code.as_str());
        match &self {
            ApiError::App(AppError::Internal(cause)) => {
                tracing::error!(code, %cause, "request failed")
            }
            ApiError::App(AppError::Unavailable(cause)) => {
                tracing::warn!(code, %cause, "event log unavailable")
            }
            _ => tracing::debug!(code, status = status.as_u16(), "request rejected"),
        }
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::App(AppError::RateLimited(seconds)) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A refused attribute definition or value.
fn attribute_error(e: &AttributeError) -> (StatusCode, &'static str, String) {
    use StatusCode as S;
    let code = match e {
        AttributeError::InvalidDefinition => "invalid_attribute_definition",
        AttributeError::Unknown(_) => "unknown_attribute",
        AttributeError::Required(_) => "attribute_required",
        AttributeError::Invalid(..) => "invalid_attribute_value",
        AttributeError::NotEditable(_) => {
            return (S::FORBIDDEN, "attribute_not_editable", e.to_string());
        }
    };
    (S::UNPROCESSABLE_ENTITY, code, e.to_string())
}
