//! Sign-in and the signed-in user's own account:
//!
//! - `/v1/auth/sign-in`, `…/sign-in/second-factor`, `…/refresh`, `…/switch-tenant`, `…/sign-out`
//! - `/v1/auth/me`, `/v1/auth/sessions`, `/v1/auth/sessions/{id}`
//! - `/v1/auth/password`, `…/password/reset-request`, `…/password/reset`
//! - `/v1/auth/totp/{setup,confirm,disable}`
//! - `/.well-known/jwks.json`
//!
//! Secrets (tokens, TOTP secrets, recovery codes) appear only in the answer that creates them,
//! with `Cache-Control: no-store`. Request bodies that carry a password or a code have a `Debug`
//! that redacts it, and nothing here logs a body. The read models' views hold blind indexes and
//! sealed values, so every answer maps them into a response type of its own instead of
//! serialising a view.

use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use idstream_app::identity::{SignIn, Tokens};
use idstream_directory::UserStatus;
use idstream_domain::{TenantId, UserId};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition, POSITION_HEADER};
use crate::openapi::formats;
use crate::routes::{CommandAccepted, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/sign-in", post(sign_in))
        .route("/v1/auth/sign-in/second-factor", post(second_factor))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/switch-tenant", post(switch_tenant))
        .route("/v1/auth/tenants", get(my_tenants))
        .route("/v1/auth/sign-out", post(sign_out))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/sessions", get(my_sessions))
        .route("/v1/auth/sessions/{id}", delete(revoke_my_session))
        .route("/v1/auth/password", post(change_password))
        .route("/v1/auth/password/reset-request", post(request_reset))
        .route("/v1/auth/password/reset", post(reset_password))
        .route("/v1/auth/totp/setup", post(totp_setup))
        .route("/v1/auth/totp/confirm", post(totp_confirm))
        .route("/v1/auth/totp/disable", post(totp_disable))
        .route("/.well-known/jwks.json", get(jwks))
}

// ----- shared pieces -----

/// A JSON answer to a command that is not a plain [`CommandAccepted`]: the body carries
/// `position` and the answer the `X-Idstream-Position` header. Answers holding a secret are
/// marked `no-store` so that no cache keeps them.
pub struct Positioned<T> {
    pub status: StatusCode,
    pub position: Option<u64>,
    pub secret: bool,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Positioned<T> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(position) = self.position {
            headers.insert(POSITION_HEADER, HeaderValue::from(position));
        }
        if self.secret {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        response
    }
}

/// Writes `name: <redacted>` for a secret field, so that no `Debug` of a request body shows one.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn redacted_option<T>(value: &Option<T>) -> Option<Redacted> {
    value.as_ref().map(|_| Redacted)
}

/// A signed-in session's tokens, shown once.
#[derive(Serialize, ToSchema)]
pub struct TokensBody {
    /// The access token (a JWT) for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token (`idr_…`), single use: each refresh returns a new one, and presenting a
    /// used one again ends the session.
    pub refresh_token: String,
    pub session: String,
    pub user: String,
    pub tenant: String,
    /// The session is remembered: it ends the tenant's `remember_days` after sign-in rather
    /// than `session_max_hours` (see `remember` at sign-in), so a front end may keep its refresh
    /// token beyond the browser session.
    pub remembered: bool,
    /// Position of the session's last event (the consistency token).
    pub position: u64,
}

impl fmt::Debug for TokensBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokensBody")
            .field("session", &self.session)
            .field("user", &self.user)
            .field("tenant", &self.tenant)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl From<Tokens> for TokensBody {
    fn from(t: Tokens) -> Self {
        TokensBody {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
            session: t.session.to_string(),
            user: t.user.to_string(),
            tenant: t.tenant.to_string(),
            remembered: t.remembered,
            position: t.position,
        }
    }
}

/// The answer carrying new tokens: 200, no-store, with the position header.
pub fn tokens_response(tokens: Tokens) -> Positioned<TokensBody> {
    Positioned {
        status: StatusCode::OK,
        position: Some(tokens.position),
        secret: true,
        body: tokens.into(),
    }
}

// ----- sign-in -----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// The account's address (any text: an unknown or malformed one fails like a wrong
    /// password).
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// At most 4096 bytes of UTF-8.
    #[schema(max_length = 4096)]
    pub password: String,
    /// The tenant to sign in to; absent: the first the user belongs to.
    #[schema(value_type = Option<formats::TenantId>)]
    pub tenant: Option<TenantId>,
    /// Remember me: the session lives up to the tenant's `remember_days` instead of ending
    /// `session_max_hours` after sign-in (the idle timeout still applies). Ignored where the tenant
    /// has remembering off (`remember_days` 0); the answer's `remembered` says what was given.
    #[serde(default)]
    pub remember: bool,
}

impl fmt::Debug for SignInBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInBody")
            .field("email", &self.email)
            .field("password", &Redacted)
            .field("tenant", &self.tenant)
            .field("remember", &self.remember)
            .finish()
    }
}

/// The password was right and the account has two-factor authentication: send a code with the
/// challenge to `/v1/auth/sign-in/second-factor`.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorRequired {
    /// Always true.
    pub second_factor_required: bool,
    /// Opaque; valid for `expires_in` seconds.
    pub challenge: String,
    pub expires_in: i64,
}

/// Tokens, or the request for a second factor.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignInAnswer {
    Tokens(TokensBody),
    SecondFactor(SecondFactorRequired),
}

/// Sign in with email and password. Unknown addresses, wrong passwords and locked accounts all
/// get the same 401 `invalid_credentials`.
#[utoipa::path(post, path = "/v1/auth/sign-in", request_body = SignInBody, tag = "auth",
    responses((status = 200, body = SignInAnswer, description = "tokens, or `second_factor_required` with a challenge"),
        (status = 401, body = Problem, description = "`invalid_credentials` (unknown address, wrong password, no password, or locked)"),
        (status = 403, body = Problem, description = "`account_disabled` (suspended or deactivated), `email_not_verified`"),
        (status = 422, body = Problem, description = "`password_too_long`, `not_a_member` (of the tenant asked for, or of none)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn sign_in(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response, ApiError> {
    let SignInBody {
        email,
        password,
        tenant,
        remember,
    } = body;
    let answer = state
        .timed(
            "sign_in",
            state
                .app
                .identity
                .sign_in(&caller, &email, password, tenant, remember),
        )
        .await?;
    Ok(sign_in_response(answer))
}

/// Tokens, or the second-factor challenge, as the answer of a first sign-in step.
pub fn sign_in_response(answer: SignIn) -> Response {
    match answer {
        SignIn::Complete(tokens) => tokens_response(tokens).into_response(),
        SignIn::SecondFactorRequired {
            challenge,
            expires_in,
        } => Positioned {
            status: StatusCode::OK,
            position: None,
            secret: true,
            body: SecondFactorRequired {
                second_factor_required: true,
                challenge,
                expires_in,
            },
        }
        .into_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorBody {
    /// The challenge of the sign-in's first step.
    pub challenge: String,
    /// A code from the authenticator app…
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// …or one of the recovery codes (each works once).
    pub recovery_code: Option<String>,
    /// Remember me (see the sign-in's `remember`); absent: as asked at the first step.
    pub remember: Option<bool>,
}

impl fmt::Debug for SecondFactorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondFactorBody")
            .field("challenge", &Redacted)
            .field("code", &redacted_option(&self.code))
            .field("recovery_code", &redacted_option(&self.recovery_code))
            .field("remember", &self.remember)
            .finish()
    }
}

/// Complete a sign-in with a TOTP code or a recovery code.
#[utoipa::path(post, path = "/v1/auth/sign-in/second-factor", request_body = SecondFactorBody, tag = "auth",
    responses((status = 200, body = TokensBody),
        (status = 401, body = Problem, description = "`invalid_credentials` (wrong or used code), `invalid_token` (the challenge expired or is forged)"),
        (status = 403, body = Problem, description = "`account_disabled`"),
        (status = 422, body = Problem, description = "`second_factor_missing` (exactly one of code and recovery_code)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn second_factor(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SecondFactorBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let tokens = state
        .timed(
            "sign_in_second_factor",
            state.app.identity.sign_in_second_factor(
                &caller,
                &body.challenge,
                body.code.as_deref(),
                body.recovery_code.as_deref(),
                body.remember,
            ),
        )
        .await
        .map_err(|e| match e {
            // The password (or link) was right: say what was wrong with this step. A code
            // works once, so the one just used to confirm the set-up is refused until the next.
            idstream_app::AppError::InvalidCredentials => ApiError::BadRequest {
                status: StatusCode::UNAUTHORIZED,
                code: "invalid_credentials",
                detail: "the code is wrong or was used already: enter the next code of the \
                         authenticator app, or a recovery code"
                    .into(),
            },
            other => other.into(),
        })?;
    Ok(tokens_response(tokens))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

impl fmt::Debug for RefreshBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshBody")
            .field("refresh_token", &Redacted)
            .finish()
    }
}

/// Exchange a refresh token for new tokens. The presented token dies; presenting it again ends
/// the session.
#[utoipa::path(post, path = "/v1/auth/refresh", request_body = RefreshBody, tag = "auth",
    responses((status = 200, body = TokensBody),
        (status = 401, body = Problem, description = "`invalid_token` (unknown, used, expired or revoked; a used one also ends its session)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let tokens = state
        .timed(
            "refresh",
            state.app.identity.refresh(&caller, &body.refresh_token),
        )
        .await?;
    Ok(tokens_response(tokens))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchTenantBody {
    #[schema(value_type = formats::TenantId)]
    pub tenant: TenantId,
    /// The session's current refresh token (it is rotated).
    pub refresh_token: String,
}

impl fmt::Debug for SwitchTenantBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwitchTenantBody")
            .field("tenant", &self.tenant)
            .field("refresh_token", &Redacted)
            .finish()
    }
}

/// Move the caller's session to another tenant of theirs; answers new tokens.
#[utoipa::path(post, path = "/v1/auth/switch-tenant", request_body = SwitchTenantBody, tag = "auth",
    responses((status = 200, body = TokensBody),
        (status = 401, body = Problem, description = "`invalid_token` (not this session's refresh token)"),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 422, body = Problem, description = "`not_a_member`")),
    security(("bearer" = [])))]
pub async fn switch_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SwitchTenantBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let tokens = state
        .timed(
            "switch_tenant",
            state
                .app
                .identity
                .switch_tenant(&caller, body.tenant, &body.refresh_token),
        )
        .await?;
    Ok(tokens_response(tokens))
}

/// End the caller's session.
#[utoipa::path(post, path = "/v1/auth/sign-out", tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn sign_out(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("sign_out", state.app.identity.sign_out(&caller))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- the caller -----

/// The signed-in user's profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The user's phone number (E.164), if they gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The language the user chose for their mails (`en`, `fr`), if they chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The user's values of the attributes the current tenant defines (see
    /// `GET /v1/tenants/{tenant}/attributes`; those `user_editable` they change with
    /// `PATCH /v1/tenants/{tenant}/users/{user}/attributes`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
    /// `invited`, `active`, `suspended` or `inactive`
    pub status: String,
    pub email_verified: bool,
    pub created_at: String,
    /// A front end shows its dashboard only to users with this flag (the API does not enforce
    /// it; the hosted administration pages will require it to sign in).
    pub dashboard_access: bool,
    /// The user's API keys work (without it they are refused, and none can be issued).
    pub api_access: bool,
    pub platform_admin: bool,
}

fn status_text(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Invited => "invited",
        UserStatus::Active => "active",
        UserStatus::Suspended => "suspended",
        UserStatus::Inactive => "inactive",
        UserStatus::Erased => "erased",
    }
}

/// Who the caller is and what they may do in their current tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeBody {
    pub user: Profile,
    pub tenant: String,
    /// Roles in `tenant`.
    pub roles: Vec<String>,
    /// A held role has global access.
    pub global_access: bool,
    /// Effective permissions in `tenant` (within an API key's restriction).
    pub permissions: Vec<String>,
    /// The session of the access token; absent for an API key.
    pub session: Option<String>,
    /// RFC 3339.
    pub last_sign_in: Option<String>,
}

/// The caller: profile, current tenant, roles and effective permissions there.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeBody),
        (status = 403, body = Problem, description = "`session_required` (the operator token is nobody)")),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
) -> Result<Json<MeBody>, ApiError> {
    state.consistent(min).await?;
    let me = state.app.identity.me(&caller)?;
    let now = time::OffsetDateTime::now_utc();
    let user = me.user;
    Ok(Json(MeBody {
        user: Profile {
            id: user.id.to_string(),
            status: status_text(user.status_at(now)).to_owned(),
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            phone: user.phone,
            language: user.language,
            attributes: me.attributes,
            email_verified: user.email_verified,
            created_at: rfc3339(user.created_at),
            dashboard_access: user.flags.dashboard_access,
            api_access: user.flags.api_access,
            platform_admin: user.flags.platform_admin,
        },
        tenant: me.tenant.to_string(),
        roles: me.roles.into_iter().map(String::from).collect(),
        global_access: me.global_access,
        permissions: me.permissions.into_iter().map(String::from).collect(),
        session: me.session.map(|s| s.to_string()),
        last_sign_in: me.last_sign_in.map(rfc3339),
    }))
}

/// One live session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub id: String,
    pub tenant: String,
    /// `password`, `password_and_totp`, `magic_link`, `email_code`, `invitation`, `passkey` or
    /// `password_and_passkey`
    pub method: String,
    /// The authentication methods of RFC 8176 the sign-in used: `pwd` (password), `otp` (a
    /// one-time code or link), `pop` (a passkey: proof of possession of a key), `mfa` (more
    /// than one factor; a passkey verifies its user, so it is two on its own).
    pub amr: Vec<String>,
    pub started_at: String,
    pub last_active_at: String,
    /// The absolute end (the idle timeout may end it sooner).
    pub expires_at: String,
    /// Signed in with `remember`: `expires_at` is the tenant's `remember_days` after the start.
    pub remembered: bool,
    /// The IP address the session was started from (behind trusted proxies, the client's
    /// address they report); null when unknown, or once the user is erased.
    #[schema(example = "192.0.2.7")]
    pub ip: Option<String>,
    /// The `User-Agent` of the sign-in (at most 256 characters); null when none was sent.
    pub user_agent: Option<String>,
    /// The session of the access token of this request.
    pub current: bool,
}

impl SessionBody {
    pub(crate) fn of(view: idstream_identity::SessionView, current: Option<Ulid>) -> SessionBody {
        SessionBody {
            id: view.id.to_string(),
            tenant: view.tenant.to_string(),
            method: serde_json::to_value(view.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            amr: view.method.amr().iter().map(|m| (*m).to_owned()).collect(),
            started_at: rfc3339(view.started_at),
            last_active_at: rfc3339(view.last_active_at),
            expires_at: rfc3339(view.expires_at),
            remembered: view.remembered,
            ip: view.ip,
            user_agent: view.user_agent,
            current: Some(view.id) == current,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionBody>,
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth",
    responses((status = 200, body = SessionList),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn my_sessions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
) -> Result<Json<SessionList>, ApiError> {
    state.consistent(min).await?;
    let current = caller.session();
    let items = state
        .app
        .identity
        .my_sessions(&caller)?
        .into_iter()
        .map(|s| SessionBody::of(s, current))
        .collect();
    Ok(Json(SessionList { items }))
}

/// One of the caller's organisations.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyTenantBody {
    #[schema(value_type = String, example = "acme")]
    pub id: TenantId,
    pub name: String,
    /// The caller's session is in this tenant now.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyTenantList {
    pub items: Vec<MyTenantBody>,
}

/// The caller's organisations (the tenants they are a member of), by name, the current one
/// marked; `POST /v1/auth/switch-tenant` moves the session to another.
#[utoipa::path(get, path = "/v1/auth/tenants", tag = "auth",
    responses((status = 200, body = MyTenantList),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn my_tenants(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
) -> Result<Json<MyTenantList>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .identity
        .my_tenants(&caller)?
        .into_iter()
        .map(|t| MyTenantBody {
            id: t.id,
            name: t.name,
            current: t.current,
        })
        .collect();
    Ok(Json(MyTenantList { items }))
}

/// End one of the caller's own sessions (another device, or this one).
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 404, body = Problem, description = "`session_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_my_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Ulid>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_session",
            state.app.identity.revoke_my_session(&caller, id),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- passwords -----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    pub current_password: String,
    /// At most 4096 bytes of UTF-8, and what the policies of the user's tenants ask.
    #[schema(max_length = 4096)]
    pub new_password: String,
}

impl fmt::Debug for ChangePasswordBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePasswordBody")
            .field("current_password", &Redacted)
            .field("new_password", &Redacted)
            .finish()
    }
}

/// Change the caller's password, proving the current one. Their other sessions end.
#[utoipa::path(post, path = "/v1/auth/password", request_body = ChangePasswordBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 401, body = Problem, description = "`invalid_credentials` (wrong current password)"),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 422, body = Problem, description = "`weak_password`, `password_too_long`")),
    security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> Result<CommandAccepted, ApiError> {
    let ChangePasswordBody {
        current_password,
        new_password,
    } = body;
    let outcome = state
        .timed(
            "change_password",
            state
                .app
                .identity
                .change_password(&caller, current_password, new_password),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestBody {
    /// Any text: the answer is the same whether or not it is an account's address.
    #[schema(example = "ada@example.com")]
    pub email: String,
}

/// Always `{}`: the answer says nothing about whether the address has an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Empty {}

/// Email a password-reset link if the address belongs to an active account. The answer is the
/// same either way.
#[utoipa::path(post, path = "/v1/auth/password/reset-request", request_body = ResetRequestBody, tag = "auth",
    responses((status = 202, body = Empty),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn request_reset(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResetRequestBody>,
) -> Result<(StatusCode, Json<Empty>), ApiError> {
    state
        .app
        .identity
        .request_password_reset(&caller, &body.email)?;
    Ok((StatusCode::ACCEPTED, Json(Empty {})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordBody {
    /// The `user` of the emailed link.
    #[schema(value_type = formats::UserId)]
    pub user: UserId,
    /// The `token` of the emailed link (`idp_…`).
    pub token: String,
    /// The new password: at most 4096 bytes of UTF-8, and what the policies of the user's
    /// tenants ask.
    #[schema(max_length = 4096)]
    pub password: String,
}

impl fmt::Debug for ResetPasswordBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetPasswordBody")
            .field("user", &self.user)
            .field("token", &Redacted)
            .field("password", &Redacted)
            .finish()
    }
}

/// Set a new password with an emailed reset link (single use). Every session of the user ends;
/// two-factor authentication stays on.
#[utoipa::path(post, path = "/v1/auth/password/reset", request_body = ResetPasswordBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 400, body = Problem, description = "`invalid_or_expired_link`"),
        (status = 422, body = Problem, description = "`weak_password`, `password_too_long`"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ResetPasswordBody>,
) -> Result<CommandAccepted, ApiError> {
    let ResetPasswordBody {
        user,
        token,
        password,
    } = body;
    let outcome = state
        .timed(
            "reset_password",
            state
                .app
                .identity
                .reset_password(&caller, user, &token, password),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- two-factor authentication -----

/// A new TOTP secret, shown once: enter it into an authenticator app, then confirm with a code.
#[derive(Serialize, ToSchema)]
pub struct TotpSetupBody {
    /// Base32.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_uri: String,
    /// A position at or after the set-up's event (the consistency token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

/// Begin setting up TOTP for the caller (replaces a set-up not yet confirmed).
#[utoipa::path(post, path = "/v1/auth/totp/setup", tag = "auth",
    responses((status = 200, body = TotpSetupBody),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 409, body = Problem, description = "`totp_already_enabled`")),
    security(("bearer" = [])))]
pub async fn totp_setup(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Positioned<TotpSetupBody>, ApiError> {
    let setup = state
        .timed("start_totp", state.app.identity.start_totp(&caller))
        .await?;
    // The application does not hand back the event's position; the log's end right after the
    // command is at or after it, which is all a consistency token needs.
    let position = Some(setup.position);
    Ok(Positioned {
        status: StatusCode::OK,
        position,
        secret: true,
        body: TotpSetupBody {
            secret: setup.secret,
            otpauth_uri: setup.uri,
            position,
        },
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmBody {
    /// A current code of the new secret.
    #[schema(example = "123456")]
    pub code: String,
}

impl fmt::Debug for TotpConfirmBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpConfirmBody")
            .field("code", &Redacted)
            .finish()
    }
}

/// The recovery codes, shown once; each signs in once in place of a TOTP code.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesBody {
    pub recovery_codes: Vec<String>,
    pub position: u64,
}

/// Turn TOTP on with a first code of the secret from set-up.
#[utoipa::path(post, path = "/v1/auth/totp/confirm", request_body = TotpConfirmBody, tag = "auth",
    responses((status = 200, body = RecoveryCodesBody),
        (status = 401, body = Problem, description = "`invalid_credentials` (wrong code)"),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 409, body = Problem, description = "`totp_not_being_set_up`, `totp_already_enabled`")),
    security(("bearer" = [])))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TotpConfirmBody>,
) -> Result<Positioned<RecoveryCodesBody>, ApiError> {
    let (recovery_codes, outcome) = state
        .timed(
            "confirm_totp",
            state.app.identity.confirm_totp(&caller, &body.code),
        )
        .await?;
    Ok(Positioned {
        status: StatusCode::OK,
        position: Some(outcome.position),
        secret: true,
        body: RecoveryCodesBody {
            recovery_codes,
            position: outcome.position,
        },
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpDisableBody {
    /// The caller's password.
    pub password: String,
}

impl fmt::Debug for TotpDisableBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpDisableBody")
            .field("password", &Redacted)
            .finish()
    }
}

/// Turn TOTP off, proving the password.
#[utoipa::path(post, path = "/v1/auth/totp/disable", request_body = TotpDisableBody, tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 401, body = Problem, description = "`invalid_credentials`"),
        (status = 403, body = Problem, description = "`session_required`, `second_factor_required_by_tenant`"),
        (status = 409, body = Problem, description = "`totp_not_enabled`")),
    security(("bearer" = [])))]
pub async fn totp_disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TotpDisableBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "disable_totp",
            state.app.identity.disable_totp(&caller, body.password),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- administrators -----

/// The public keys that verify access tokens (current and retired-but-valid), as a JWK Set.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "RFC 7517 JWK Set", body = Object)))]
pub async fn jwks(State(state): State<AppState>, caller: Caller) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.app.identity.jwks(&caller)),
    )
}
