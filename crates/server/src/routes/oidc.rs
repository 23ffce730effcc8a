//! OpenID Connect: the provider's protocol endpoints under each tenant's issuer
//! (`/t/{tenant}/…`), the clients' administration (`/v1/tenants/{tenant}/clients`) and a
//! person's consents (`/v1/auth/consents`). The authorization and logout endpoints are pages (see
//! `pages::oidc`).
//!
//! The protocol endpoints answer errors as RFC 9457 problems whose `code` is the OAuth error
//! code, with the members OAuth clients read (`error`, `error_description`, RFC 6749 §5.2) beside
//! the problem's own.

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use idstream_app::oidc::{ClientAuth, ClientRequest, TokenRequest};
use idstream_app::{AppError, Principal};
use idstream_domain::TenantId;
use idstream_domain::identity::client::{ClientKind, ClientSettings, GrantType};
use idstream_identity::ClientView;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use super::identity::account::Positioned;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition, correlation_id};
use crate::routes::{CommandAccepted, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/t/{tenant}/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/t/{tenant}/oidc/jwks", get(issuer_jwks))
        .route("/t/{tenant}/oidc/token", post(token))
        .route("/t/{tenant}/oidc/userinfo", get(userinfo).post(userinfo))
        .route("/t/{tenant}/oidc/revoke", post(revoke))
        .route("/t/{tenant}/oidc/introspect", post(introspect))
        .route(
            "/v1/tenants/{tenant}/clients",
            post(register_client).get(list_clients),
        )
        .route(
            "/v1/tenants/{tenant}/clients/{id}",
            get(get_client).put(update_client).delete(remove_client),
        )
        .route(
            "/v1/tenants/{tenant}/clients/{id}/secret",
            post(rotate_client_secret),
        )
        .route("/v1/auth/consents", get(my_consents))
        .route(
            "/v1/auth/consents/{id}",
            axum::routing::delete(revoke_consent),
        )
}

// ----- answers of the protocol endpoints -----

/// An error of a protocol endpoint: the problem, with OAuth's `error` and `error_description`.
fn protocol_error(error: ApiError) -> Response {
    let problem = error.problem();
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
    let oauth_error = match &error {
        ApiError::App(AppError::OAuth(o)) => o.error,
        _ if status == StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        _ if status.is_server_error() => "server_error",
        _ => "invalid_request",
    };
    let mut body = serde_json::to_value(&problem).unwrap_or_default();
    body["error"] = oauth_error.into();
    body["error_description"] = problem.detail.clone().into();
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if oauth_error == "invalid_client" {
            "Basic realm=\"idstream\""
        } else {
            "Bearer error=\"invalid_token\""
        };
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let ApiError::App(AppError::RateLimited(seconds)) = &error {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
    }
    response
}

/// A protocol endpoint's successful JSON answer, never cached (RFC 6749 §5.1).
fn no_store(body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The caller of a protocol endpoint: anonymous, with where the request came from. This is not
/// authorization: the operation (`Oidc::token`, `userinfo`, `revoke`, `introspect`) authenticates
/// the client or the application's token itself, in the application layer. The `Caller` extractor
/// is not used because it would take the bearer token of `userinfo` (an application's token,
/// which idstream's own API refuses) as the caller's credential and answer its refusals as API
/// problems rather than as OAuth errors.
fn protocol_caller(parts: &Parts, state: &AppState) -> Result<idstream_app::Caller, ApiError> {
    Ok(idstream_app::Caller::new(
        Principal::Anonymous,
        correlation_id(parts),
        None,
        crate::client::client(parts, state),
    )?)
}

/// The tenant of a protocol path, its refusal a protocol error.
fn tenant_of(raw: &str) -> Result<TenantId, ApiError> {
    raw.parse::<TenantId>().map_err(|_| {
        ApiError::bad_request(
            "invalid_path",
            format!(
                "path parameter `tenant` ({raw:?}): {}",
                crate::openapi::formats::path_parameter_rule("tenant", raw)
                    .unwrap_or_else(|| "not a tenant id".into())
            ),
        )
    })
}

/// A form body of a protocol endpoint (`application/x-www-form-urlencoded`), every parameter
/// kept as text; a parameter sent twice is refused (RFC 6749 §3.1).
async fn form_of(
    parts: &Parts,
    body: axum::body::Bytes,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let refuse = |why: &str| {
        ApiError::App(AppError::OAuth(idstream_app::oidc::OAuthError::new(
            "invalid_request",
            why,
        )))
    };
    if !form_type {
        return Err(refuse("the body must be application/x-www-form-urlencoded"));
    }
    let mut params = std::collections::HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(refuse(&format!("the parameter {name} was sent twice")));
        }
    }
    Ok(params)
}

/// The client's credentials: HTTP Basic (RFC 6749 §2.3.1, each part form-encoded) or
/// `client_id` and `client_secret` in the body; never both.
fn client_auth(
    parts: &Parts,
    form: &std::collections::HashMap<String, String>,
) -> Result<ClientAuth, ApiError> {
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    let invalid = || {
        ApiError::App(AppError::OAuth(idstream_app::oidc::OAuthError::new(
            "invalid_client",
            "client authentication failed (unknown client, wrong secret, or a method the client may not use)",
        )))
    };
    match basic {
        Some(encoded) => {
            if form.contains_key("client_secret") {
                return Err(ApiError::App(AppError::OAuth(
                    idstream_app::oidc::OAuthError::new(
                        "invalid_request",
                        "authenticate the client one way: HTTP Basic or client_secret in the body, not both",
                    ),
                )));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(invalid)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
            let decode = |part: &str| {
                form_urlencoded::parse(format!("v={part}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            let (id, secret) = (
                decode(id).ok_or_else(invalid)?,
                decode(secret).ok_or_else(invalid)?,
            );
            if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                return Err(invalid());
            }
            Ok(ClientAuth {
                id: Some(id),
                secret: Some(secret),
            })
        }
        None => Ok(ClientAuth {
            id: form.get("client_id").cloned(),
            secret: form.get("client_secret").cloned(),
        }),
    }
}

// ----- discovery and keys -----

/// The issuer's OpenID Connect discovery document. It is the same for every tenant id, so it
/// tells nobody whether a tenant exists.
#[utoipa::path(get, path = "/t/{tenant}/.well-known/openid-configuration", tag = "oidc",
    responses((status = 200, description = "OpenID Connect Discovery 1.0 provider metadata", body = Object),
        (status = 400, body = Problem, description = "`invalid_request` (not a tenant id)")))]
pub async fn discovery(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let caller = protocol_caller(&parts, &state)?;
        let tenant = tenant_of(&tenant)?;
        let document = state.app.oidc.discovery(&caller, &tenant);
        Ok((
            [(header::CACHE_CONTROL, "public, max-age=300")],
            Json(document),
        )
            .into_response())
    };
    answer().unwrap_or_else(protocol_error)
}

/// The issuer's signing keys (the service's, as at `/.well-known/jwks.json`).
#[utoipa::path(get, path = "/t/{tenant}/oidc/jwks", tag = "oidc",
    responses((status = 200, description = "RFC 7517 JWK Set", body = Object),
        (status = 400, body = Problem, description = "`invalid_request` (not a tenant id)")))]
pub async fn issuer_jwks(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let caller = protocol_caller(&parts, &state)?;
        tenant_of(&tenant)?;
        Ok((
            [(header::CACHE_CONTROL, "public, max-age=300")],
            Json(state.app.identity.jwks(&caller)),
        )
            .into_response())
    };
    answer().unwrap_or_else(protocol_error)
}

// ----- token, userinfo, revocation, introspection -----

/// The token endpoint: `authorization_code` (with PKCE), `refresh_token` (rotated; a rotated
/// token presented again revokes the session) and `client_credentials`.
#[utoipa::path(post, path = "/t/{tenant}/oidc/token", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "RFC 6749 §4.1.3, §4.4.2 or §6 parameters; the client authenticates by HTTP Basic or client_id/client_secret"),
    responses((status = 200, description = "RFC 6749 §5.1 token response, with `id_token` for the openid scope", body = Object),
        (status = 400, body = Problem, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope` (each also as the OAuth error member)"),
        (status = 401, body = Problem, description = "`invalid_client`"),
        (status = 429, body = Problem, description = "`rate_limited`")))]
pub async fn token(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let answer = async {
        let caller = protocol_caller(&parts, &state)?;
        let tenant = tenant_of(&tenant)?;
        let form = form_of(&parts, body).await?;
        let auth = client_auth(&parts, &form)?;
        let request = TokenRequest {
            grant_type: form.get("grant_type").cloned(),
            code: form.get("code").cloned(),
            redirect_uri: form.get("redirect_uri").cloned(),
            code_verifier: form.get("code_verifier").cloned(),
            refresh_token: form.get("refresh_token").cloned(),
            scope: form.get("scope").cloned(),
        };
        let tokens = state
            .timed(
                "oidc_token",
                state.app.oidc.token(&caller, &tenant, &auth, &request),
            )
            .await?;
        Ok::<_, ApiError>(no_store(tokens))
    };
    answer.await.unwrap_or_else(protocol_error)
}

/// The userinfo endpoint: claims about the access token's person, as its scopes allow
/// (`Authorization: Bearer` with an access token the tenant's issuer gave an application).
#[utoipa::path(get, path = "/t/{tenant}/oidc/userinfo", tag = "oidc",
    responses((status = 200, description = "OpenID Connect Core §5.3 claims", body = Object),
        (status = 401, body = Problem, description = "`invalid_token`"),
        (status = 403, body = Problem, description = "`insufficient_scope` (no openid scope)"),
        (status = 500, body = Problem, description = "`internal`"),
        (status = 503, body = Problem, description = "`log_unavailable`, `not_caught_up`")))]
pub async fn userinfo(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    let answer = async {
        let caller = protocol_caller(&parts, &state)?;
        let tenant = tenant_of(&tenant)?;
        let token = crate::extract::bearer(&parts).unwrap_or("");
        let claims = state
            .timed(
                "oidc_userinfo",
                state.app.oidc.userinfo(&caller, &tenant, token),
            )
            .await?;
        Ok::<_, ApiError>(no_store(claims))
    };
    answer.await.unwrap_or_else(protocol_error)
}

/// Token revocation (RFC 7009): a refresh or access token of the calling client ends its
/// session. Unknown tokens are answered the same (200).
#[utoipa::path(post, path = "/t/{tenant}/oidc/revoke", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`token` (and optionally `token_type_hint`)"),
    responses((status = 200, description = "revoked, or nothing to revoke"),
        (status = 400, body = Problem, description = "`invalid_request` (not a form, a parameter twice)"),
        (status = 401, body = Problem, description = "`invalid_client`")))]
pub async fn revoke(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let answer = async {
        let caller = protocol_caller(&parts, &state)?;
        let tenant = tenant_of(&tenant)?;
        let form = form_of(&parts, body).await?;
        let auth = client_auth(&parts, &form)?;
        let token = form.get("token").cloned().unwrap_or_default();
        state
            .timed(
                "oidc_revoke",
                state.app.oidc.revoke(&caller, &tenant, &auth, &token),
            )
            .await?;
        Ok::<_, ApiError>(no_store(serde_json::json!({})))
    };
    answer.await.unwrap_or_else(protocol_error)
}

/// Token introspection (RFC 7662) for the calling confidential client: its refresh and access
/// tokens, and the tenant's API keys.
#[utoipa::path(post, path = "/t/{tenant}/oidc/introspect", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`token`"),
    responses((status = 200, description = "RFC 7662 §2.2 answer (`active`, and what the token stands for)", body = Object),
        (status = 400, body = Problem, description = "`invalid_request` (not a form, a parameter twice)"),
        (status = 401, body = Problem, description = "`invalid_client`")))]
pub async fn introspect(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let answer = async {
        let caller = protocol_caller(&parts, &state)?;
        let tenant = tenant_of(&tenant)?;
        let form = form_of(&parts, body).await?;
        let auth = client_auth(&parts, &form)?;
        let token = form.get("token").cloned().unwrap_or_default();
        let found = state
            .timed(
                "oidc_introspect",
                state.app.oidc.introspect(&caller, &tenant, &auth, &token),
            )
            .await?;
        Ok::<_, ApiError>(no_store(found))
    };
    answer.await.unwrap_or_else(protocol_error)
}

// ----- clients -----

/// A client's kind.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKindBody {
    /// A server-side application holding a secret.
    Confidential,
    /// A browser or native application: no secret, PKCE required.
    Public,
}

/// What a client may do and where it may send people back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSettingsBody {
    /// 1 to 100 characters, shown on the consent screen.
    pub name: String,
    /// Absolute URIs compared exactly: https, http to localhost, or a private-use scheme
    /// (`com.example.app:/cb`); no fragment, no wildcard. At most 20.
    #[serde(default)]
    #[schema(example = json!(["https://app.example.com/callback"]))]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards (same rules).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Among `authorization_code`, `refresh_token` (with `authorization_code`) and
    /// `client_credentials` (confidential clients only).
    #[schema(value_type = Vec<String>, example = json!(["authorization_code", "refresh_token"]))]
    pub grant_types: BTreeSet<GrantType>,
    /// The scopes it may ask for, among `openid`, `profile`, `email`, `offline_access`.
    #[schema(example = json!(["openid", "email", "profile"]))]
    pub scopes: BTreeSet<String>,
    /// A first-party application skips the consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// Where a logout token is posted (OpenID Connect Back-Channel Logout 1.0) whenever one of
    /// the application's sessions ends: https, or http to localhost; no fragment. Absent: none.
    #[serde(default)]
    #[schema(example = json!("https://app.example.com/backchannel-logout"))]
    pub backchannel_logout_uri: Option<String>,
}

impl From<ClientSettingsBody> for ClientSettings {
    fn from(body: ClientSettingsBody) -> ClientSettings {
        ClientSettings {
            name: body.name,
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            grant_types: body.grant_types,
            scopes: body.scopes,
            first_party: body.first_party,
            backchannel_logout_uri: body.backchannel_logout_uri,
        }
    }
}

/// A new client: its kind and its settings (see [`ClientSettingsBody`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterClientBody {
    pub kind: ClientKindBody,
    pub name: String,
    #[serde(default)]
    #[schema(example = json!(["https://app.example.com/callback"]))]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[schema(value_type = Vec<String>, example = json!(["authorization_code", "refresh_token"]))]
    pub grant_types: BTreeSet<GrantType>,
    #[schema(example = json!(["openid", "email", "profile"]))]
    pub scopes: BTreeSet<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    #[schema(example = json!("https://app.example.com/backchannel-logout"))]
    pub backchannel_logout_uri: Option<String>,
}

/// A client (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientBody {
    /// The `client_id`.
    pub id: String,
    pub kind: ClientKindBody,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub first_party: bool,
    /// Where logout tokens are posted when its sessions end, if anywhere.
    pub backchannel_logout_uri: Option<String>,
    /// The tenant's issuer, for the application's configuration.
    pub issuer: String,
    pub created_at: String,
    pub updated_at: String,
    pub secret_rotated_at: Option<String>,
    /// The last client-credentials grant (recorded at most once a minute).
    pub last_used_at: Option<String>,
    pub position: u64,
}

impl ClientBody {
    fn of(view: ClientView, issuer: String) -> ClientBody {
        ClientBody {
            id: view.id.to_string(),
            kind: match view.kind {
                ClientKind::Confidential => ClientKindBody::Confidential,
                ClientKind::Public => ClientKindBody::Public,
            },
            name: view.settings.name,
            redirect_uris: view.settings.redirect_uris,
            post_logout_redirect_uris: view.settings.post_logout_redirect_uris,
            grant_types: view
                .settings
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: view.settings.scopes.into_iter().collect(),
            first_party: view.settings.first_party,
            backchannel_logout_uri: view.settings.backchannel_logout_uri,
            issuer,
            created_at: rfc3339(view.created_at),
            updated_at: rfc3339(view.updated_at),
            secret_rotated_at: view.secret_rotated_at.map(rfc3339),
            last_used_at: view.last_used_at.map(rfc3339),
            position: view.position,
        }
    }
}

/// A client with its secret, shown this once (confidential clients).
#[derive(Serialize, ToSchema)]
pub struct RegisteredClientBody {
    #[serde(flatten)]
    pub client: ClientBody,
    /// `idcs_…`: store it now; it is never shown again.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for RegisteredClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClientBody")
            .field("client", &self.client.id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    pub items: Vec<ClientBody>,
}

fn registered(
    state: &AppState,
    tenant: &TenantId,
    status: StatusCode,
    registered: idstream_app::oidc::RegisteredClient,
) -> Positioned<RegisteredClientBody> {
    Positioned {
        status,
        position: Some(registered.position),
        secret: true,
        body: RegisteredClientBody {
            client: ClientBody::of(registered.client, state.app.oidc.issuer(tenant)),
            client_secret: registered.secret,
        },
    }
}

/// Register an OpenID Connect client (an application) of the tenant. A confidential client's
/// secret is in this answer only.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/clients", request_body = RegisterClientBody, tag = "oidc",
    responses((status = 201, body = RegisteredClientBody),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 422, body = Problem, description = "`invalid_client_name`, `invalid_redirect_uri` (a redirect, post-logout redirect or back-channel logout URI), `invalid_grant_types`, `unknown_scope`")),
    security(("bearer" = [])))]
pub async fn register_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<RegisterClientBody>,
) -> Result<Positioned<RegisteredClientBody>, ApiError> {
    let request = ClientRequest {
        kind: match body.kind {
            ClientKindBody::Confidential => ClientKind::Confidential,
            ClientKindBody::Public => ClientKind::Public,
        },
        settings: ClientSettingsBody {
            name: body.name,
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            grant_types: body.grant_types,
            scopes: body.scopes,
            first_party: body.first_party,
            backchannel_logout_uri: body.backchannel_logout_uri,
        }
        .into(),
    };
    let client = state
        .timed(
            "register_client",
            state
                .app
                .oidc
                .register_client(&caller, tenant.clone(), request),
        )
        .await?;
    Ok(registered(&state, &tenant, StatusCode::CREATED, client))
}

/// The tenant's clients.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/clients", tag = "oidc",
    responses((status = 200, body = ClientList),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:read)")),
    security(("bearer" = [])))]
pub async fn list_clients(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<ClientList>, ApiError> {
    state.consistent(min).await?;
    let issuer = state.app.oidc.issuer(&tenant);
    let items = state
        .app
        .oidc
        .clients(&caller, &tenant)
        .await?
        .into_iter()
        .map(|c| ClientBody::of(c, issuer.clone()))
        .collect();
    Ok(Json(ClientList { items }))
}

/// One client.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/clients/{id}", tag = "oidc",
    responses((status = 200, body = ClientBody),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:read)"),
        (status = 404, body = Problem, description = "`client_not_found`")),
    security(("bearer" = [])))]
pub async fn get_client(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<Json<ClientBody>, ApiError> {
    state.consistent(min).await?;
    let view = state.app.oidc.client(&caller, &tenant, id).await?;
    Ok(Json(ClientBody::of(view, state.app.oidc.issuer(&tenant))))
}

/// Replace a client's settings (its kind and secret stay).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/clients/{id}", request_body = ClientSettingsBody, tag = "oidc",
    responses((status = 200, body = CommandAccepted, description = "changed, or nothing to change (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 404, body = Problem, description = "`client_not_found`"),
        (status = 422, body = Problem, description = "`invalid_client_name`, `invalid_redirect_uri` (a redirect, post-logout redirect or back-channel logout URI), `invalid_grant_types`, `unknown_scope`")),
    security(("bearer" = [])))]
pub async fn update_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
    ApiJson(body): ApiJson<ClientSettingsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "update_client",
            state
                .app
                .oidc
                .update_client(&caller, &tenant, id, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Remove a client: it signs nobody in any more, and its tokens stop working.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/clients/{id}", tag = "oidc",
    responses((status = 200, body = CommandAccepted, description = "removed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 404, body = Problem, description = "`client_not_found`")),
    security(("bearer" = [])))]
pub async fn remove_client(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_client",
            state.app.oidc.remove_client(&caller, &tenant, id),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Give a confidential client a new secret, shown in this answer only; the old one stops
/// working.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/clients/{id}/secret", tag = "oidc",
    responses((status = 200, body = RegisteredClientBody),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 404, body = Problem, description = "`client_not_found`"),
        (status = 409, body = Problem, description = "`public_client_has_no_secret`")),
    security(("bearer" = [])))]
pub async fn rotate_client_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<Positioned<RegisteredClientBody>, ApiError> {
    let client = state
        .timed(
            "rotate_client_secret",
            state.app.oidc.rotate_client_secret(&caller, &tenant, id),
        )
        .await?;
    Ok(registered(&state, &tenant, StatusCode::OK, client))
}

// ----- consents -----

/// One application the caller consented to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentBody {
    pub client: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub granted_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentList {
    pub items: Vec<ConsentBody>,
}

/// The applications the caller consented to, in their current tenant.
#[utoipa::path(get, path = "/v1/auth/consents", tag = "oidc",
    responses((status = 200, body = ConsentList),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn my_consents(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
) -> Result<Json<ConsentList>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .oidc
        .my_consents(&caller)?
        .into_iter()
        .map(|(c, name)| ConsentBody {
            client: c.client,
            client_name: name,
            scopes: c.scopes.into_iter().collect(),
            granted_at: rfc3339(c.granted_at),
        })
        .collect();
    Ok(Json(ConsentList { items }))
}

/// Take back a consent: the application must ask again, and its sessions of the caller end.
#[utoipa::path(delete, path = "/v1/auth/consents/{id}", tag = "oidc",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 404, body = Problem, description = "`consent_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_consent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Ulid>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_consent",
            state.app.oidc.revoke_my_consent(&caller, &id.to_string()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
