//! Sign-in through upstream OpenID Connect providers: their administration
//! (`/v1/tenants/{tenant}/identity-providers`) and a person's linked identities
//! (`/v1/auth/identities`). The sign-in itself is pages (see `pages::upstream`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use idstream_app::upstream::{ProviderAnswer, ProviderRequest};
use idstream_domain::TenantId;
use idstream_domain::identity::upstream::{ClaimMapping, IdentityProviderSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition};
use crate::routes::{CommandAccepted, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/identity-providers",
            get(list_providers),
        )
        .route(
            "/v1/tenants/{tenant}/identity-providers/{provider}",
            get(get_provider)
                .put(configure_provider)
                .delete(remove_provider),
        )
        .route("/v1/auth/identities", get(my_identities))
        .route(
            "/v1/auth/identities/{provider}",
            axum::routing::delete(unlink_identity),
        )
}

/// Which claims hold the address and the names (defaults: `email`, `given_name`,
/// `family_name`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimsBody {
    #[schema(max_length = 100)]
    pub email: Option<String>,
    #[schema(max_length = 100)]
    pub given_name: Option<String>,
    #[schema(max_length = 100)]
    pub family_name: Option<String>,
}

/// An upstream OpenID Connect provider's settings, and its client secret to set or replace it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// The sign-in page's button says "Sign in with <name>".
    #[schema(min_length = 1, max_length = 60)]
    pub name: String,
    /// The provider's issuer: https (plain http only to localhost); its discovery document is
    /// at `<issuer>/.well-known/openid-configuration`.
    #[schema(max_length = 1000)]
    pub issuer: String,
    /// The client id idstream is registered under at the provider.
    #[schema(min_length = 1, max_length = 1000)]
    pub client_id: String,
    /// Stored sealed and never answered; left out, the secret set before stays.
    #[schema(max_length = 1000)]
    pub client_secret: Option<String>,
    /// The scopes asked for, `openid` among them (default `openid email profile`).
    pub scopes: Option<Vec<String>>,
    pub claims: Option<ClaimsBody>,
    /// When given, only addresses of these domains are accepted.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// A person the tenant does not know becomes a member with the default role.
    #[serde(default)]
    pub provision: bool,
}

impl std::fmt::Debug for ProviderBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderBody")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl From<ProviderBody> for ProviderRequest {
    fn from(body: ProviderBody) -> ProviderRequest {
        let defaults = ClaimMapping::default();
        let claims = body.claims.map_or(defaults.clone(), |c| ClaimMapping {
            email: c.email.unwrap_or(defaults.email),
            given_name: c.given_name.unwrap_or(defaults.given_name),
            family_name: c.family_name.unwrap_or(defaults.family_name),
        });
        ProviderRequest {
            settings: IdentityProviderSettings {
                name: body.name,
                issuer: body.issuer,
                client_id: body.client_id,
                scopes: body
                    .scopes
                    .unwrap_or_else(|| ["openid", "email", "profile"].map(String::from).to_vec()),
                claims,
                allowed_email_domains: body.allowed_email_domains,
                provision: body.provision,
            },
            client_secret: body.client_secret,
        }
    }
}

/// An upstream provider as administrators see it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderAnswerBody {
    /// Its name in addresses (`/t/<tenant>/sign-in/<id>`).
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: Vec<String>,
    pub claims: ClaimsBody,
    pub allowed_email_domains: Vec<String>,
    pub provision: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    pub configured_at: String,
}

impl From<ProviderAnswer> for ProviderAnswerBody {
    fn from(a: ProviderAnswer) -> ProviderAnswerBody {
        ProviderAnswerBody {
            id: a.id,
            name: a.settings.name,
            issuer: a.settings.issuer,
            client_id: a.settings.client_id,
            has_client_secret: a.has_client_secret,
            scopes: a.settings.scopes,
            claims: ClaimsBody {
                email: Some(a.settings.claims.email),
                given_name: Some(a.settings.claims.given_name),
                family_name: Some(a.settings.claims.family_name),
            },
            allowed_email_domains: a.settings.allowed_email_domains,
            provision: a.settings.provision,
            redirect_uri: a.redirect_uri,
            configured_at: rfc3339(a.configured_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub items: Vec<ProviderAnswerBody>,
}

/// The tenant's upstream identity providers.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/identity-providers", tag = "upstream",
    responses((status = 200, body = ProviderList),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:read)")),
    security(("bearer" = [])))]
pub async fn list_providers(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<ProviderList>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .upstream
        .providers(&caller, &tenant)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ProviderList { items }))
}

/// One upstream identity provider.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/identity-providers/{provider}", tag = "upstream",
    responses((status = 200, body = ProviderAnswerBody),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:read)"),
        (status = 404, body = Problem, description = "`identity_provider_not_found`")),
    security(("bearer" = [])))]
pub async fn get_provider(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, provider)): ApiPath<(TenantId, String)>,
) -> Result<Json<ProviderAnswerBody>, ApiError> {
    state.consistent(min).await?;
    let answer = state
        .app
        .upstream
        .provider(&caller, &tenant, &provider)
        .await?;
    Ok(Json(answer.into()))
}

/// Add an upstream identity provider under a name (1 to 40 lower-case letters, digits and
/// dashes), or replace its settings.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/identity-providers/{provider}", request_body = ProviderBody, tag = "upstream",
    responses((status = 200, body = ProviderAnswerBody, description = "configured (nothing appended when nothing changed)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 422, body = Problem, description = "`invalid_identity_provider`")),
    security(("bearer" = [])))]
pub async fn configure_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, provider)): ApiPath<(TenantId, String)>,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<(axum::http::HeaderMap, Json<ProviderAnswerBody>), ApiError> {
    let (answer, outcome) = state
        .timed(
            "configure_identity_provider",
            state
                .app
                .upstream
                .configure_provider(&caller, tenant, &provider, body.into()),
        )
        .await?;
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = outcome.position.to_string().parse() {
        headers.insert("x-idstream-position", value);
    }
    Ok((headers, Json(answer.into())))
}

/// Remove an upstream identity provider: nobody signs in through it any more.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/identity-providers/{provider}", tag = "upstream",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 404, body = Problem, description = "`identity_provider_not_found`")),
    security(("bearer" = [])))]
pub async fn remove_provider(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, provider)): ApiPath<(TenantId, String)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_identity_provider",
            state
                .app
                .upstream
                .remove_provider(&caller, &tenant, &provider),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// An upstream identity that signs the caller in.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityBody {
    pub provider: String,
    /// `verified_email`, `provisioned` or `account`.
    pub via: String,
    pub linked_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    pub items: Vec<IdentityBody>,
}

/// The upstream identities that sign the caller in to their current tenant.
#[utoipa::path(get, path = "/v1/auth/identities", tag = "upstream",
    responses((status = 200, body = IdentityList),
        (status = 403, body = Problem, description = "`session_required`")),
    security(("bearer" = [])))]
pub async fn my_identities(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
) -> Result<Json<IdentityList>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .upstream
        .my_links(&caller)?
        .into_iter()
        .map(|link| IdentityBody {
            provider: link.provider,
            via: serde_json::to_value(link.via)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            linked_at: rfc3339(link.linked_at),
        })
        .collect();
    Ok(Json(IdentityList { items }))
}

/// Unlink the caller's identity at a provider: it no longer signs them in.
#[utoipa::path(delete, path = "/v1/auth/identities/{provider}", tag = "upstream",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`session_required`"),
        (status = 404, body = Problem, description = "`identity_not_linked`")),
    security(("bearer" = [])))]
pub async fn unlink_identity(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(provider): ApiPath<String>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "unlink_identity",
            state.app.upstream.unlink_mine(&caller, &provider),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
