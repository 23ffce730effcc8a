//! `/v1/tenants/{tenant}/users/{user}/roles`

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CommandAccepted;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/users/{user}/roles",
            get(get_roles).post(assign_role),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/roles/{role}",
            delete(revoke_role),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoleBody {
    #[schema(value_type = String, example = "admin")]
    pub role: RoleName,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Roles {
    pub tenant: String,
    pub user: String,
    pub roles: Vec<String>,
}

/// The roles a user holds in a tenant (empty when they hold none).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/roles", tag = "roles",
    params(("tenant" = String, Path), ("user" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = Roles), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_roles(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<Roles>, ApiError> {
    state.consistent(min).await?;
    let roles = state
        .app
        .membership(&tenant, &user)?
        .map(|m| m.roles.into_iter().map(String::from).collect())
        .unwrap_or_default();
    Ok(Json(Roles {
        tenant: tenant.to_string(),
        user: user.to_string(),
        roles,
    }))
}

/// Assign a role to a user in a tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/roles", request_body = AssignRoleBody, tag = "roles",
    params(("tenant" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 409, body = Problem, description = "role_already_assigned"),
        (status = 422, body = Problem, description = "unknown_role")),
    security(("bearer" = [])))]
pub async fn assign_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
    ApiJson(body): ApiJson<AssignRoleBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "assign_role",
            state.app.assign_role(&caller.ctx, tenant, user, body.role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Revoke a role from a user in a tenant.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/roles/{role}", tag = "roles",
    params(("tenant" = String, Path), ("user" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 403, body = Problem, description = "owner_only"), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "role_not_assigned"),
        (status = 422, body = Problem, description = "cannot_remove_self, last_admin")),
    security(("bearer" = [])))]
pub async fn revoke_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user, role)): ApiPath<(TenantId, UserId, RoleName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_role",
            state.app.revoke_role(&caller.ctx, tenant, user, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
