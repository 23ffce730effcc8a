//! Passkeys (WebAuthn) for applications with their own front end:
//!
//! - `/v1/auth/passkeys` (list), `/v1/auth/passkeys/{credential}` (remove)
//! - `/v1/auth/passkeys/registration/{start,finish}`
//! - `/v1/auth/sign-in/passkey/{start,finish}`: a passkey alone, without a user name
//! - `/v1/auth/sign-in/second-factor/passkey/{start,finish}`: a passkey after a password or an
//!   emailed link or code
//!
//! Each ceremony is two calls: `start` answers the options to give the browser's
//! `navigator.credentials.create` or `.get` (`publicKey`, binary fields base64url) and an opaque
//! `ceremony`; `finish` takes the ceremony back with the browser's credential (as
//! `PublicKeyCredential.toJSON()` gives it, binary fields base64url). The two calls may reach
//! different replicas.

use std::fmt;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use idstream_app::identity::{PasskeyCeremony, PasskeySummary};
use idstream_domain::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::account::{Positioned, Redacted, TokensBody, tokens_response};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::openapi::formats;
use crate::routes::{CommandAccepted, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/passkeys", get(list_passkeys))
        .route("/v1/auth/passkeys/{credential}", delete(remove_passkey))
        .route(
            "/v1/auth/passkeys/registration/start",
            post(passkey_registration_start),
        )
        .route(
            "/v1/auth/passkeys/registration/finish",
            post(passkey_registration_finish),
        )
        .route(
            "/v1/auth/sign-in/passkey/start",
            post(passkey_sign_in_start),
        )
        .route(
            "/v1/auth/sign-in/passkey/finish",
            post(passkey_sign_in_finish),
        )
        .route(
            "/v1/auth/sign-in/second-factor/passkey/start",
            post(passkey_second_factor_start),
        )
        .route(
            "/v1/auth/sign-in/second-factor/passkey/finish",
            post(passkey_second_factor_finish),
        )
}

/// A credential id in a path: refused as `invalid_path` unless it is base64url (see
/// [`formats::PASSKEY_CREDENTIAL`]).
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct CredentialId(String);

impl TryFrom<String> for CredentialId {
    type Error = String;

    fn try_from(text: String) -> Result<CredentialId, String> {
        match formats::PASSKEY_CREDENTIAL.check {
            Some(check) => check(&text).map(|()| CredentialId(text)),
            None => Ok(CredentialId(text)),
        }
    }
}

/// The first step of a ceremony.
#[derive(Serialize, ToSchema)]
pub struct PasskeyOptionsBody {
    /// What to give `navigator.credentials.create` (registration) or `.get` (sign-in): an object
    /// with `publicKey`, binary fields (`challenge`, `user.id`, credential ids) base64url.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// Opaque; send it back with the browser's answer within `expires_in` seconds. Good for one
    /// use.
    pub ceremony: String,
    pub expires_in: i64,
}

fn options(ceremony: PasskeyCeremony) -> Positioned<PasskeyOptionsBody> {
    Positioned {
        status: StatusCode::OK,
        position: None,
        secret: true,
        body: PasskeyOptionsBody {
            options: ceremony.options,
            ceremony: ceremony.ceremony,
            expires_in: ceremony.expires_in,
        },
    }
}

/// One of the caller's passkeys.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyBody {
    /// The credential id, base64url.
    pub credential: String,
    pub name: String,
    pub created_at: String,
    /// Null until it first signs in.
    pub last_used_at: Option<String>,
}

impl From<PasskeySummary> for PasskeyBody {
    fn from(summary: PasskeySummary) -> PasskeyBody {
        PasskeyBody {
            credential: summary.credential,
            name: summary.name,
            created_at: rfc3339(summary.created_at),
            last_used_at: summary.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyList {
    pub items: Vec<PasskeyBody>,
}

/// The caller's passkeys, oldest first.
#[utoipa::path(get, path = "/v1/auth/passkeys", tag = "auth",
    responses((status = 200, body = PasskeyList),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<PasskeyList>, ApiError> {
    let passkeys = state
        .timed("list_passkeys", state.app.identity.passkeys(&caller))
        .await?;
    Ok(axum::Json(PasskeyList {
        items: passkeys.into_iter().map(PasskeyBody::from).collect(),
    }))
}

/// Remove one of the caller's passkeys. Removing the last second factor needs a sign-in of the
/// last 15 minutes, and is refused while a tenant of the caller requires a second factor.
#[utoipa::path(delete, path = "/v1/auth/passkeys/{credential}", tag = "auth",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`session_required`, `recent_sign_in_required`, `second_factor_required_by_tenant`"),
        (status = 404, body = Problem, description = "`passkey_not_found`")),
    security(("bearer" = [])))]
pub async fn remove_passkey(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(CredentialId(credential)): ApiPath<CredentialId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_passkey",
            state.app.identity.remove_passkey(&caller, &credential),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Begin registering a passkey for the caller (a discoverable credential; user verification
/// required; the caller's passkeys are excluded).
#[utoipa::path(post, path = "/v1/auth/passkeys/registration/start", tag = "auth",
    responses((status = 200, body = PasskeyOptionsBody),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")),
    security(("bearer" = [])))]
pub async fn passkey_registration_start(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Positioned<PasskeyOptionsBody>, ApiError> {
    let ceremony = state
        .timed(
            "start_passkey_registration",
            state.app.identity.start_passkey_registration(&caller),
        )
        .await?;
    Ok(options(ceremony))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistrationBody {
    /// The `ceremony` of the start.
    pub ceremony: String,
    /// What to call the passkey ("Laptop", "YubiKey"): 1 to 64 characters.
    #[schema(value_type = formats::PasskeyName)]
    pub name: String,
    /// The browser's `PublicKeyCredential` (from `navigator.credentials.create`), as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

impl fmt::Debug for PasskeyRegistrationBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyRegistrationBody")
            .field("ceremony", &Redacted)
            .field("name", &Redacted)
            .finish_non_exhaustive()
    }
}

/// A registered passkey.
#[derive(Serialize, ToSchema)]
pub struct PasskeyRegisteredBody {
    /// The credential id, base64url.
    pub credential: String,
    /// Recovery codes, shown once, when this passkey is the caller's first second factor (each
    /// signs in once in place of the second factor); empty otherwise.
    pub recovery_codes: Vec<String>,
    pub position: u64,
}

/// Finish registering a passkey: the browser's credential with the ceremony of the start.
#[utoipa::path(post, path = "/v1/auth/passkeys/registration/finish", request_body = PasskeyRegistrationBody, tag = "auth",
    responses((status = 201, body = PasskeyRegisteredBody),
        (status = 400, body = Problem, description = "`passkey_refused` (the credential does not verify: another origin, no user verification, malformed)"),
        (status = 401, body = Problem, description = "`invalid_token` (the ceremony expired, is forged, or is another session's)"),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 409, body = Problem, description = "`passkey_exists`"),
        (status = 422, body = Problem, description = "`invalid_passkey_name`, `too_many_passkeys`"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")),
    security(("bearer" = [])))]
pub async fn passkey_registration_finish(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasskeyRegistrationBody>,
) -> Result<Positioned<PasskeyRegisteredBody>, ApiError> {
    let registered = state
        .timed(
            "finish_passkey_registration",
            state.app.identity.finish_passkey_registration(
                &caller,
                &body.ceremony,
                &body.name,
                &body.credential,
            ),
        )
        .await?;
    Ok(Positioned {
        status: StatusCode::CREATED,
        position: Some(registered.position),
        secret: !registered.recovery_codes.is_empty(),
        body: PasskeyRegisteredBody {
            credential: registered.credential,
            recovery_codes: registered.recovery_codes,
            position: registered.position,
        },
    })
}

/// Begin a sign-in with a passkey alone: no user name, any passkey of this service may answer.
#[utoipa::path(post, path = "/v1/auth/sign-in/passkey/start", tag = "auth",
    responses((status = 200, body = PasskeyOptionsBody),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")))]
pub async fn passkey_sign_in_start(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Positioned<PasskeyOptionsBody>, ApiError> {
    let ceremony = state
        .timed(
            "start_passkey_sign_in",
            state.app.identity.start_passkey_sign_in(&caller),
        )
        .await?;
    Ok(options(ceremony))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignInBody {
    /// The `ceremony` of the start.
    pub ceremony: String,
    /// The browser's `PublicKeyCredential` (from `navigator.credentials.get`), as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
    /// The tenant to sign in to; absent: the first the user belongs to.
    #[schema(value_type = Option<formats::TenantId>)]
    pub tenant: Option<TenantId>,
    /// Remember me (see `/v1/auth/sign-in`).
    #[serde(default)]
    pub remember: bool,
}

impl fmt::Debug for PasskeySignInBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeySignInBody")
            .field("ceremony", &Redacted)
            .field("tenant", &self.tenant)
            .field("remember", &self.remember)
            .finish_non_exhaustive()
    }
}

/// Finish a sign-in with a passkey alone. A wrong, unknown, replayed or cloned passkey (its
/// signature counter went backwards: recorded) gets 401 `invalid_credentials`.
#[utoipa::path(post, path = "/v1/auth/sign-in/passkey/finish", request_body = PasskeySignInBody, tag = "auth",
    responses((status = 200, body = TokensBody),
        (status = 401, body = Problem, description = "`invalid_credentials`, `invalid_token` (the ceremony expired or is forged)"),
        (status = 403, body = Problem, description = "`account_disabled`, `email_not_verified`"),
        (status = 422, body = Problem, description = "`not_a_member` (of the tenant asked for, or of none)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")))]
pub async fn passkey_sign_in_finish(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasskeySignInBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let tokens = state
        .timed(
            "finish_passkey_sign_in",
            state.app.identity.finish_passkey_sign_in(
                &caller,
                &body.ceremony,
                &body.credential,
                body.tenant,
                body.remember,
            ),
        )
        .await?;
    Ok(tokens_response(tokens))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySecondFactorStartBody {
    /// The challenge of the sign-in's first step.
    pub challenge: String,
}

impl fmt::Debug for PasskeySecondFactorStartBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeySecondFactorStartBody")
            .field("challenge", &Redacted)
            .finish()
    }
}

/// Begin a passkey as the second factor, with the challenge of the sign-in's first step (the
/// browser is told which of the person's passkeys may answer).
#[utoipa::path(post, path = "/v1/auth/sign-in/second-factor/passkey/start", request_body = PasskeySecondFactorStartBody, tag = "auth",
    responses((status = 200, body = PasskeyOptionsBody),
        (status = 401, body = Problem, description = "`invalid_token` (the challenge expired or is forged)"),
        (status = 404, body = Problem, description = "`passkey_not_found` (the person has no passkey)"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")))]
pub async fn passkey_second_factor_start(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasskeySecondFactorStartBody>,
) -> Result<Positioned<PasskeyOptionsBody>, ApiError> {
    let ceremony = state
        .timed(
            "start_passkey_second_factor",
            state
                .app
                .identity
                .start_passkey_second_factor(&caller, &body.challenge),
        )
        .await?;
    Ok(options(ceremony))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySecondFactorBody {
    /// The `ceremony` of the start.
    pub ceremony: String,
    /// The browser's `PublicKeyCredential` (from `navigator.credentials.get`), as JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
    /// Remember me; absent: as asked at the first step.
    pub remember: Option<bool>,
}

impl fmt::Debug for PasskeySecondFactorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeySecondFactorBody")
            .field("ceremony", &Redacted)
            .field("remember", &self.remember)
            .finish_non_exhaustive()
    }
}

/// Finish a sign-in with a passkey as the second factor.
#[utoipa::path(post, path = "/v1/auth/sign-in/second-factor/passkey/finish", request_body = PasskeySecondFactorBody, tag = "auth",
    responses((status = 200, body = TokensBody),
        (status = 401, body = Problem, description = "`invalid_credentials`, `invalid_token` (the ceremony expired or is forged)"),
        (status = 403, body = Problem, description = "`account_disabled`"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After"),
        (status = 503, body = Problem, description = "`passkeys_unavailable` (the service's public URL has no host name)")))]
pub async fn passkey_second_factor_finish(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PasskeySecondFactorBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let tokens = state
        .timed(
            "finish_passkey_second_factor",
            state.app.identity.finish_passkey_second_factor(
                &caller,
                &body.ceremony,
                &body.credential,
                body.remember,
            ),
        )
        .await?;
    Ok(tokens_response(tokens))
}
