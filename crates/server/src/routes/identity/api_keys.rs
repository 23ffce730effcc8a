//! API keys: `/v1/tenants/{tenant}/api-keys` and `…/api-keys/{id}`.
//!
//! A key (`ids_…`) is shown once, in the answer that issues it; listings show everything but it.

use std::collections::BTreeSet;
use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use idstream_app::identity::ApiKeyRequest;
use idstream_domain::access::Permission;
use idstream_domain::{TenantId, UserId};
use idstream_identity::ApiKeyView;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ulid::Ulid;
use utoipa::{IntoParams, ToSchema};

use super::account::Positioned;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};
use crate::openapi::formats;
use crate::routes::{CommandAccepted, rfc3339};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/api-keys",
            post(issue_api_key).get(list_api_keys),
        )
        .route("/v1/tenants/{tenant}/api-keys/{id}", delete(revoke_api_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueApiKeyBody {
    #[schema(value_type = formats::ApiKeyName)]
    pub name: String,
    /// Whose permissions the key uses; absent: the caller (the operator token must name one).
    /// Another owner needs `users:update`.
    #[schema(value_type = Option<formats::UserId>)]
    pub owner: Option<UserId>,
    /// RFC 3339, in the future; absent: the key does not expire.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    pub expires_at: Option<OffsetDateTime>,
    /// Limits the key to these permissions (each must be held by the owner now); absent: all of
    /// the owner's.
    #[schema(value_type = Option<Vec<formats::Permission>>, example = json!(["users:read"]))]
    pub permissions: Option<BTreeSet<Permission>>,
}

/// A new key. `key` is shown this once: store it now.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKeyBody {
    pub id: String,
    /// `ids_<id>_<secret>`, for `Authorization: Bearer`.
    pub key: String,
    pub owner: String,
    pub position: u64,
}

impl fmt::Debug for IssuedApiKeyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedApiKeyBody")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("owner", &self.owner)
            .field("position", &self.position)
            .finish()
    }
}

/// Issue an API key acting for its owner in this tenant. Sessions only: a key cannot issue keys.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", request_body = IssueApiKeyBody, tag = "api-keys",
    responses((status = 201, body = IssuedApiKeyBody),
        (status = 403, body = Problem, description = "`forbidden` (a key for another member needs users:update), `session_required` (an API key cannot issue keys), `api_access_disabled` (the owner may not use API keys), `beyond_caller_permissions` (a key for another carrying what the caller lacks), `owner_only` (a key for an owner, by a non-owner)"),
        (status = 404, body = Problem, description = "`user_not_found` (the owner)"),
        (status = 422, body = Problem, description = "`invalid_api_key_name`, `expiry_in_the_past`, `restriction_beyond_owner`, `owner_required` (the operator token must name the owner), `not_a_member` (the owner, of this tenant)")),
    security(("bearer" = [])))]
pub async fn issue_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<IssueApiKeyBody>,
) -> Result<Positioned<IssuedApiKeyBody>, ApiError> {
    let request = ApiKeyRequest {
        name: body.name,
        owner: body.owner,
        expires_at: body.expires_at,
        permissions: body.permissions,
    };
    let issued = state
        .timed(
            "issue_api_key",
            state.app.identity.issue_api_key(&caller, tenant, request),
        )
        .await?;
    Ok(Positioned {
        status: StatusCode::CREATED,
        position: Some(issued.position),
        secret: true,
        body: IssuedApiKeyBody {
            id: issued.id.to_string(),
            key: issued.key,
            owner: issued.owner.to_string(),
            position: issued.position,
        },
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApiKeysQuery {
    /// Only this user's keys. Absent, or someone else: needs `users:read`.
    #[param(value_type = Option<formats::UserId>)]
    pub owner: Option<UserId>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    pub min_position: Option<u64>,
}

/// An API key without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyBody {
    pub id: String,
    pub owner: String,
    pub name: String,
    /// The key's restriction; absent: all of the owner's permissions.
    pub permissions: Option<Vec<String>>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Recorded at most every few minutes.
    pub last_used_at: Option<String>,
    pub position: u64,
}

impl From<ApiKeyView> for ApiKeyBody {
    fn from(k: ApiKeyView) -> Self {
        ApiKeyBody {
            id: k.id.to_string(),
            owner: k.owner.to_string(),
            name: k.name,
            permissions: k
                .restriction
                .map(|r| r.into_iter().map(String::from).collect()),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            position: k.position,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyBody>,
}

/// The tenant's API keys: the caller's own with `?owner=<caller>`, anyone's with `users:read`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys", params(ApiKeysQuery),
    responses((status = 200, body = ApiKeyList),
        (status = 403, body = Problem, description = "`forbidden` (keys other than one's own need users:read)")),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiQuery(query): ApiQuery<ApiKeysQuery>,
) -> Result<Json<ApiKeyList>, ApiError> {
    state.consistent(min).await?;
    let owner = query.owner;
    let items = state
        .app
        .identity
        .api_keys(&caller, &tenant, owner)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ApiKeyList { items }))
}

/// Revoke a key at once: its owner, or someone with `users:update` in the tenant.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{id}", tag = "api-keys",
    responses((status = 200, body = CommandAccepted, description = "revoked, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (someone else's key needs users:update)"),
        (status = 404, body = Problem, description = "`api_key_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_api_key",
            state.app.identity.revoke_api_key(&caller, tenant, id),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
