//! Memberships (the `Memberships` service): the roles of a tenant's members (`…/users/{user}/roles`), custom permissions (`…/users/{user}/permissions`,
//! `…/permissions/revoke`) and removal (`DELETE /v1/tenants/{tenant}/users/{user}`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use idstream_domain::access::Permission;
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::ToSchema;

use super::CommandAccepted;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition};
use crate::openapi::formats;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/users/{user}", delete(remove_member))
        .route(
            "/v1/tenants/{tenant}/users/{user}/roles",
            get(get_roles).post(assign_role),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/roles/{role}",
            delete(revoke_role),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/permissions",
            post(grant_permissions),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/permissions/revoke",
            post(revoke_permissions),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoleBody {
    #[schema(value_type = formats::RoleName)]
    pub role: RoleName,
    /// RFC 3339 end of temporary access: checks stop honouring it at that moment (at most ten
    /// years ahead); absent for access until taken away.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Roles {
    pub tenant: String,
    pub user: String,
    pub roles: Vec<String>,
}

/// The roles a user holds in a tenant (empty when they hold none): the user themselves, or
/// `users:read` or `permissions:read` in the tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/roles", tag = "roles",
    responses((status = 200, body = Roles),
        (status = 403, body = Problem, description = "`forbidden` (someone else's roles need users:read or permissions:read)")),
    security(("bearer" = [])))]
pub async fn get_roles(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<Roles>, ApiError> {
    state.consistent(min).await?;
    let roles = state
        .app
        .memberships
        .roles(&caller, &tenant, user)
        .await?
        .into_iter()
        .map(String::from)
        .collect();
    Ok(Json(Roles {
        tenant: tenant.to_string(),
        user: user.to_string(),
        roles,
    }))
}

/// Assign a role to a user in a tenant, for good or until `expires_at` (temporary access:
/// checks stop honouring it at that moment, and a `RoleLapsed` event records it). Assigning a
/// held role with another end changes its end.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/roles", request_body = AssignRoleBody, tag = "roles",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs role.<role>:assign), `owner_only` (the owner role, by a non-owner), `beyond_caller_permissions` (a role with permissions the caller lacks)"),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 409, body = Problem, description = "`role_already_assigned` (held already, with the same end)"),
        (status = 422, body = Problem, description = "`unknown_role`, `invalid_expiry` (not in the future, or more than ten years ahead), `permanent_role` (owner and admin are given for good)")),
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
            state
                .app
                .memberships
                .assign_role(&caller, tenant, user, body.role, body.expires_at),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Revoke a role from a user in a tenant.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/roles/{role}", tag = "roles",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs role.<role>:revoke), `owner_only` (the owner role, by a non-owner)"),
        (status = 409, body = Problem, description = "`role_not_assigned`"),
        (status = 422, body = Problem, description = "`cannot_remove_self` (one's own owner role), `last_admin`")),
    security(("bearer" = [])))]
pub async fn revoke_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user, role)): ApiPath<(TenantId, UserId, RoleName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_role",
            state
                .app
                .memberships
                .revoke_role(&caller, tenant, user, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsBody {
    /// `resource:action` permissions; at most 2000 held per user and tenant.
    #[schema(value_type = Vec<formats::Permission>, example = json!(["users:read", "entity.invoice:update"]))]
    pub permissions: BTreeSet<Permission>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPermissionsBody {
    /// `resource:action` permissions; at most 2000 held per user and tenant.
    #[schema(value_type = Vec<formats::Permission>, example = json!(["users:read", "entity.invoice:update"]))]
    pub permissions: BTreeSet<Permission>,
    /// RFC 3339 end of temporary access: checks stop honouring it at that moment (at most ten
    /// years ahead); absent for access until taken away.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
}

/// Remove a user from a tenant: every role and custom permission there.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:delete), `owner_only` (an owner, by a non-owner)"),
        (status = 404, body = Problem, description = "`not_a_member`"),
        (status = 422, body = Problem, description = "`cannot_remove_self`, `last_admin`")),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_member",
            state.app.memberships.remove(&caller, tenant, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Give a user custom permissions in a tenant, on top of their roles (held ones with the same
/// end are ignored), for good or until `expires_at`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/permissions", request_body = GrantPermissionsBody, tag = "permissions",
    responses((status = 200, body = CommandAccepted, description = "granted, or all held already (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs permissions:create), `beyond_caller_permissions` (a permission the caller lacks)"),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 422, body = Problem, description = "`too_many_permissions`, `invalid_expiry`")),
    security(("bearer" = [])))]
pub async fn grant_permissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
    ApiJson(body): ApiJson<GrantPermissionsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "grant_permissions",
            state.app.memberships.grant_permissions(
                &caller,
                tenant,
                user,
                body.permissions,
                body.expires_at,
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Take custom permissions from a user in a tenant (those not held are ignored). A POST rather
/// than a DELETE with a body, which many clients and proxies drop.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/permissions/revoke", request_body = PermissionsBody, tag = "permissions",
    responses((status = 200, body = CommandAccepted, description = "revoked, or none held (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs permissions:delete)"),
        (status = 404, body = Problem, description = "`user_not_found`")),
    security(("bearer" = [])))]
pub async fn revoke_permissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
    ApiJson(body): ApiJson<PermissionsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_permissions",
            state
                .app
                .memberships
                .revoke_permissions(&caller, tenant, user, body.permissions),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
