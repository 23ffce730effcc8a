//! Sign-in by email and self-service account routes:
//!
//! - `/v1/auth/magic-link` (request) and `/v1/auth/magic-link/sign-in`
//! - `/v1/auth/email-code` (request) and `/v1/auth/email-code/sign-in`
//! - `/v1/tenants/{tenant}/register` (self-registration) and `/v1/auth/verify-email`
//! - `/v1/auth/email` (ask to change one's address) and `/v1/auth/email/confirm`
//!
//! Requests that send mail answer `202 {}` whether or not the address has an account.

use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use idstream_app::identity::Registration;
use idstream_domain::{TenantId, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::account::{Empty, Redacted, SignInAnswer, sign_in_response};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::openapi::formats;
use crate::routes::CommandAccepted;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/magic-link", post(request_magic_link))
        .route("/v1/auth/magic-link/sign-in", post(magic_link_sign_in))
        .route("/v1/auth/email-code", post(request_email_code))
        .route("/v1/auth/email-code/sign-in", post(email_code_sign_in))
        .route("/v1/tenants/{tenant}/register", post(register))
        .route("/v1/auth/verify-email", post(verify_email))
        .route("/v1/auth/verify-email/resend", post(resend_verification))
        .route("/v1/auth/email", post(request_email_change))
        .route("/v1/auth/email/confirm", post(confirm_email_change))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    /// Any text: the answer is the same whether or not it is an account's address.
    #[schema(example = "ada@example.com")]
    pub email: String,
}

/// Email a single-use sign-in link (valid for the tenant's `magic_link_ttl_minutes`, 10 by
/// default) if the address belongs to an active account. The answer is the same either way.
#[utoipa::path(post, path = "/v1/auth/magic-link", request_body = EmailBody, tag = "auth",
    responses((status = 202, body = Empty),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn request_magic_link(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    state
        .app
        .identity
        .request_magic_link(&caller, &body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MagicLinkBody {
    /// The `user` of the emailed link.
    #[schema(value_type = formats::UserId)]
    pub user: UserId,
    /// The `token` of the emailed link (`idm_…`).
    pub token: String,
    /// The tenant to sign in to (default: the user's first).
    #[schema(value_type = Option<formats::TenantId>)]
    pub tenant: Option<TenantId>,
    /// Remember me, as at `POST /v1/auth/sign-in`.
    #[serde(default)]
    pub remember: bool,
}

impl fmt::Debug for MagicLinkBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MagicLinkBody")
            .field("user", &self.user)
            .field("token", &Redacted)
            .finish()
    }
}

/// Sign in with an emailed link (single use). Two-factor authentication still asks for its step.
#[utoipa::path(post, path = "/v1/auth/magic-link/sign-in", request_body = MagicLinkBody, tag = "auth",
    responses((status = 200, body = SignInAnswer, description = "tokens, or `second_factor_required` with a challenge"),
        (status = 400, body = Problem, description = "`invalid_or_expired_link`"),
        (status = 403, body = Problem, description = "`account_disabled`"),
        (status = 422, body = Problem, description = "`not_a_member` (of the tenant asked for, or of none)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn magic_link_sign_in(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<MagicLinkBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .timed(
            "sign_in_magic_link",
            state.app.identity.sign_in_magic_link(
                &caller,
                body.user,
                &body.token,
                body.tenant,
                body.remember,
            ),
        )
        .await?;
    Ok(sign_in_response(answer))
}

/// Email a six-digit sign-in code if the address belongs to an active account. The answer is
/// the same either way.
#[utoipa::path(post, path = "/v1/auth/email-code", request_body = EmailBody, tag = "auth",
    responses((status = 202, body = Empty),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn request_email_code(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    state
        .app
        .identity
        .request_email_code(&caller, &body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailCodeBody {
    /// The address the code went to (any text: an unknown one fails like a wrong code).
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// The six digits (whitespace ignored; anything else fails like a wrong code).
    #[schema(example = "123456")]
    pub code: String,
    /// The tenant to sign in to (default: the user's first).
    #[schema(value_type = Option<formats::TenantId>)]
    pub tenant: Option<TenantId>,
    /// Remember me, as at `POST /v1/auth/sign-in`.
    #[serde(default)]
    pub remember: bool,
}

impl fmt::Debug for EmailCodeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailCodeBody")
            .field("email", &self.email)
            .field("code", &Redacted)
            .finish()
    }
}

/// Sign in with an emailed code (single use; a wrong code counts as a failed sign-in).
#[utoipa::path(post, path = "/v1/auth/email-code/sign-in", request_body = EmailCodeBody, tag = "auth",
    responses((status = 200, body = SignInAnswer, description = "tokens, or `second_factor_required` with a challenge"),
        (status = 401, body = Problem, description = "`invalid_credentials` (unknown address, wrong or used code, or locked)"),
        (status = 403, body = Problem, description = "`account_disabled`"),
        (status = 422, body = Problem, description = "`not_a_member` (of the tenant asked for, or of none)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn email_code_sign_in(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailCodeBody>,
) -> Result<Response, ApiError> {
    let answer = state
        .timed(
            "sign_in_email_code",
            state.app.identity.sign_in_email_code(
                &caller,
                &body.email,
                &body.code,
                body.tenant,
                body.remember,
            ),
        )
        .await?;
    Ok(sign_in_response(answer))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    #[schema(value_type = formats::Email)]
    pub email: String,
    /// At most 4096 bytes of UTF-8, and what the tenant's policy asks.
    #[schema(max_length = 4096)]
    pub password: String,
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub first_name: String,
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub last_name: String,
}

impl fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterBody")
            .field("email", &self.email)
            .field("password", &Redacted)
            .finish()
    }
}

/// Sign up in a tenant that allows self-registration. `202 {}` whether the address is new or
/// taken. With email verification on (the default), a link is emailed and sign-in waits for it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/register", request_body = RegisterBody, tag = "auth",
    responses((status = 202, body = Empty, description = "the same whether the address is new or taken"),
        (status = 404, body = Problem, description = "`tenant_not_found` (also a tenant that does not allow self-registration)"),
        (status = 409, body = Problem, description = "`email_taken` (claimed by another a moment ago, as this request was under way)"),
        (status = 422, body = Problem, description = "`invalid_email`, `invalid_name`, `weak_password`, `password_too_long`"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    let RegisterBody {
        email,
        password,
        first_name,
        last_name,
    } = body;
    state
        .timed(
            "register",
            state.app.identity.register(
                &caller,
                tenant,
                Registration {
                    email,
                    password,
                    first_name,
                    last_name,
                },
            ),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailBody {
    /// The `user` of the emailed link.
    #[schema(value_type = formats::UserId)]
    pub user: UserId,
    /// The `token` of the emailed link (`ide_…`).
    pub token: String,
}

impl fmt::Debug for VerifyEmailBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyEmailBody")
            .field("user", &self.user)
            .field("token", &Redacted)
            .finish()
    }
}

/// Follow an email verification link: the address is verified and a self-registered account
/// becomes active.
#[utoipa::path(post, path = "/v1/auth/verify-email", request_body = VerifyEmailBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 400, body = Problem, description = "`invalid_or_expired_link`"),
        (status = 409, body = Problem, description = "`user_inactive` (deactivated), `user_erased`"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn verify_email(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<VerifyEmailBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "verify_email",
            state
                .app
                .identity
                .verify_email(&caller, body.user, &body.token),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Email a new verification link if the address belongs to an account that has not verified it
/// yet (self-registered and waiting, or created by an administrator). The answer is the same
/// either way; the previous link stops working when the new one is issued.
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", request_body = EmailBody, tag = "auth",
    responses((status = 202, body = Empty),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn resend_verification(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    state
        .app
        .identity
        .request_verification(&caller, &body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeBody {
    #[schema(value_type = formats::Email)]
    pub new_email: String,
    /// The current password (required when the account has one).
    pub password: Option<String>,
}

impl fmt::Debug for EmailChangeBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChangeBody")
            .field("new_email", &self.new_email)
            .field("password", &Redacted)
            .finish()
    }
}

/// Ask to change the caller's email address: a confirmation link goes to the new address, a
/// notice to the old one, which keeps working until the change is confirmed.
#[utoipa::path(post, path = "/v1/auth/email", request_body = EmailChangeBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 401, body = Problem, description = "`invalid_credentials` (the password is missing or wrong)"),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 409, body = Problem, description = "`email_taken`"),
        (status = 422, body = Problem, description = "`invalid_email`, `same_email`")),
    security(("bearer" = [])))]
pub async fn request_email_change(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailChangeBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "request_email_change",
            state
                .app
                .identity
                .request_email_change(&caller, &body.new_email, body.password),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Confirm a new email address with the link mailed to it.
#[utoipa::path(post, path = "/v1/auth/email/confirm", request_body = VerifyEmailBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 400, body = Problem, description = "`invalid_or_expired_link`"),
        (status = 409, body = Problem, description = "`email_taken` (claimed by someone else meanwhile)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn confirm_email_change(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<VerifyEmailBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "confirm_email_change",
            state
                .app
                .identity
                .confirm_email_change(&caller, body.user, &body.token),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
