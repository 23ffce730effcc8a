//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable `code`.
//!
//! Every error the service can answer with is decided in [`ApiError::parts`]: one match from
//! cause to status and code. 5xx bodies are generic; their cause is logged with the request's
//! correlation id, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use idstream_app::AppError;
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

    /// Status, stable code and the detail shown to the client.
    fn parts(&self) -> (StatusCode, &'static str, String) {
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
                },
                AppError::Membership(m) => match m {
                    MembershipError::AlreadyAssigned => {
                        (S::CONFLICT, "role_already_assigned", shown(m))
                    }
                    MembershipError::NotAssigned => (S::CONFLICT, "role_not_assigned", shown(m)),
                },
                AppError::EmailTaken => (S::CONFLICT, "email_taken", shown(e)),
                AppError::TenantNotFound => (S::NOT_FOUND, "tenant_not_found", shown(e)),
                AppError::UserNotFound => (S::NOT_FOUND, "user_not_found", shown(e)),
                AppError::UnknownRole(_) => (S::UNPROCESSABLE_ENTITY, "unknown_role", shown(e)),
                AppError::InvalidIdempotencyKey => {
                    (S::BAD_REQUEST, "invalid_idempotency_key", shown(e))
                }
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

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        match &self {
            ApiError::App(AppError::Internal(cause)) => {
                tracing::error!(code, %cause, "request failed")
            }
            ApiError::App(AppError::Unavailable(cause)) => {
                tracing::warn!(code, %cause, "event log unavailable")
            }
            _ => tracing::debug!(code, status = status.as_u16(), "request rejected"),
        }
        let problem = Problem {
            problem_type: format!("urn:idstream:problem:{code}"),
            title: title(status),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
