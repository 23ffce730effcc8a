//! `/v1/tenants`

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use idstream_domain::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{CommandAccepted, Page, PageQuery};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{tenant}", get(get_tenant).patch(rename_tenant))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    /// Slug: 1–63 of a-z, 0-9 and '-', starting with a letter or digit.
    #[schema(value_type = String, example = "acme")]
    pub id: TenantId,
    #[schema(example = "Acme Inc")]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTenantBody {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// RFC 3339
    pub created_at: String,
    /// Log position of the event that last changed the tenant.
    pub position: u64,
}

impl From<idstream_directory::TenantView> for Tenant {
    fn from(view: idstream_directory::TenantView) -> Tenant {
        Tenant {
            id: view.id.to_string(),
            name: view.name,
            created_at: super::rfc3339(view.created_at),
            position: view.updated_position,
        }
    }
}

/// Create a tenant.
#[utoipa::path(post, path = "/v1/tenants", request_body = CreateTenantBody, tag = "tenants",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first result")),
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"), (status = 409, body = Problem, description = "tenant_exists"),
        (status = 422, body = Problem), (status = 503, body = Problem, description = "log_unavailable")),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenantBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "create_tenant",
            state.app.create_tenant(&caller.ctx, body.id, body.name),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Rename a tenant.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", request_body = RenameTenantBody, tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn rename_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<RenameTenantBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "rename_tenant",
            state.app.rename_tenant(&caller.ctx, tenant, body.name),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Read a tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem), (status = 503, body = Problem, description = "not_caught_up")),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<Tenant>, ApiError> {
    state.consistent(min).await?;
    Ok(Json(state.app.tenant(&tenant)?.into()))
}

/// List tenants, ordered by id.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>)), security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    state.consistent(min).await?;
    let limit = query.limit()?;
    let after = match &query.after {
        Some(a) => Some(
            a.parse::<TenantId>()
                .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
        ),
        None => None,
    };
    let items: Vec<Tenant> = state
        .app
        .tenants(after.as_ref(), limit)?
        .into_iter()
        .map(Tenant::from)
        .collect();
    let next = if items.len() == limit {
        items.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}
