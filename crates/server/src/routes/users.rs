//! `/v1/tenants/{tenant}/users` and `/v1/users/{user}`

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use idstream_app::{NewUserRequest, SuspendRequest};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{CommandAccepted, Page, PageQuery};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/users",
            post(create_user).get(list_members),
        )
        .route("/v1/users/{user}", get(get_user))
        .route("/v1/users/{user}/suspend", post(suspend_user))
        .route("/v1/users/{user}/reinstate", post(reinstate_user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// Roles in this tenant (`admin`, `user`). Absent: `["user"]`. An empty list creates the
    /// identity without making it a member of the tenant (a member holds at least one role).
    #[serde(default = "default_roles")]
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<RoleName>,
    /// Create the user as invited instead of active.
    #[serde(default)]
    pub invite: bool,
}

fn default_roles() -> Vec<RoleName> {
    vec!["user".parse().expect("`user` is a valid role name")]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// RFC 3339 end of the suspension; absent for an open-ended one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub until: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The user's picture (an http(s) URL), if they gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Notification topics the user wants (`true`) or not (`false`).
    pub notifications: std::collections::BTreeMap<String, bool>,
    /// `invited`, `active`, `suspended`, `inactive` or `erased`
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<String>,
    pub created_at: String,
    /// Tenants the user belongs to.
    pub tenants: Vec<String>,
    pub position: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user: User,
    pub roles: Vec<String>,
}

impl User {
    /// The API shape of a user; `status` is the one in effect now (a lapsed timed suspension
    /// reads `active`).
    fn from_view(view: idstream_directory::UserView, tenants: Vec<TenantId>) -> User {
        let status = view.status_at(OffsetDateTime::now_utc());
        let suspended = status == idstream_directory::UserStatus::Suspended;
        User {
            id: view.id.to_string(),
            email: view.email,
            first_name: view.first_name,
            last_name: view.last_name,
            image_url: view.image_url,
            notifications: view.notifications,
            status: match status {
                idstream_directory::UserStatus::Invited => "invited",
                idstream_directory::UserStatus::Active => "active",
                idstream_directory::UserStatus::Suspended => "suspended",
                idstream_directory::UserStatus::Inactive => "inactive",
                idstream_directory::UserStatus::Erased => "erased",
            }
            .to_owned(),
            suspended_until: view
                .suspended_until
                .filter(|_| suspended)
                .map(super::rfc3339),
            created_at: super::rfc3339(view.created_at),
            tenants: tenants.into_iter().map(|t| t.to_string()).collect(),
            position: view.position,
        }
    }
}

/// Create a user in a tenant (active, or invited), with roles in that tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users", request_body = CreateUserBody, tag = "users",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"), (status = 404, body = Problem, description = "tenant_not_found"),
        (status = 409, body = Problem, description = "email_taken"), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<CreateUserBody>,
) -> Result<CommandAccepted, ApiError> {
    let request = NewUserRequest {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        roles: body.roles,
        invite: body.invite,
    };
    let outcome = state
        .timed(
            "create_user",
            state.app.create_user(&caller.ctx, tenant, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// List a tenant's members with their roles, ordered by user id.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "users", params(("tenant" = String, Path), PageQuery),
    responses((status = 200, body = Page<Member>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_members(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<Member>>, ApiError> {
    state.consistent(min).await?;
    let limit = query.limit()?;
    let after = match &query.after {
        Some(a) => Some(
            a.parse::<UserId>()
                .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
        ),
        None => None,
    };
    let members = state.app.members(&tenant, after, limit)?;
    let mut items = Vec::with_capacity(members.len());
    for (user, membership) in members {
        let tenants = state.app.user_tenants(&user.id)?;
        items.push(Member {
            user: User::from_view(user, tenants),
            roles: membership.roles.into_iter().map(String::from).collect(),
        });
    }
    let next = if items.len() == limit {
        items.last().map(|m| m.user.id.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

/// Read a user.
#[utoipa::path(get, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = User), (status = 400, body = Problem, description = "invalid_path"), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    _caller: Caller,
    min: MinPosition,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<User>, ApiError> {
    state.consistent(min).await?;
    let view = state.app.user(&user)?;
    let tenants = state.app.user_tenants(&user)?;
    Ok(Json(User::from_view(view, tenants)))
}

/// Suspend a user, optionally until a time.
#[utoipa::path(post, path = "/v1/users/{user}/suspend", request_body = SuspendBody, tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 409, body = Problem, description = "already_suspended")),
    security(("bearer" = [])))]
pub async fn suspend_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
    ApiJson(body): ApiJson<SuspendBody>,
) -> Result<CommandAccepted, ApiError> {
    let request = SuspendRequest {
        until: body.until,
        reason: body.reason,
    };
    let outcome = state
        .timed(
            "suspend_user",
            state.app.suspend_user(&caller.ctx, user, request),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Lift a user's suspension.
#[utoipa::path(post, path = "/v1/users/{user}/reinstate", tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem), (status = 409, body = Problem, description = "not_suspended")),
    security(("bearer" = [])))]
pub async fn reinstate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "reinstate_user",
            state.app.reinstate_user(&caller.ctx, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
