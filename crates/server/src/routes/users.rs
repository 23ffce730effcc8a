//! Users (the `Users` service): creating them in a tenant (`POST /v1/tenants/{tenant}/users`)
//! and everything under `/v1/users/{user}`: reading, lifecycle, flags, profile, and what
//! administrators do to a user's sessions and lock-out.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use idstream_app::{NewUserRequest, SuspendRequest};
use idstream_domain::user::UserFlags;
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use time::OffsetDateTime;
use utoipa::ToSchema;

use super::CommandAccepted;
use super::identity::account::{SessionBody, SessionList};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition};
use crate::openapi::formats;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/users", post(create_user))
        .route("/v1/users/{user}", get(get_user))
        .route("/v1/users/{user}/suspend", post(suspend_user))
        .route("/v1/users/{user}/reinstate", post(reinstate_user))
        .route("/v1/users/{user}/deactivate", post(deactivate_user))
        .route("/v1/users/{user}/reactivate", post(reactivate_user))
        .route("/v1/users/{user}/erase", post(erase_user))
        .route("/v1/users/{user}/flags", put(set_user_flags))
        .route("/v1/users/{user}/profile", put(change_profile))
        .route("/v1/users/{user}/sessions", get(user_sessions))
        .route(
            "/v1/users/{user}/sessions/revoke",
            post(revoke_user_sessions),
        )
        .route("/v1/users/{user}/unlock", post(unlock_user))
        .route("/v1/users/{user}/reset-factors", post(reset_user_factors))
        .route(
            "/v1/tenants/{tenant}/users/{user}/attributes",
            get(get_attributes).patch(change_attributes),
        )
}

/// Most attributes one request names (a tenant defines at most 50).
const MAX_ATTRIBUTES_NAMED: usize = 50;

/// Attribute values by name, each a string, number or boolean as the attribute's type says (a
/// date is a `YYYY-MM-DD` string).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeValues {
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Value>,
}

/// A member's attribute values in the tenant (those it defines now).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/attributes", tag = "users",
    responses((status = 200, body = AttributeValues),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read, unless it is the caller's own)"),
        (status = 404, body = Problem, description = "`user_not_found` (not a member of the tenant)")),
    security(("bearer" = [])))]
pub async fn get_attributes(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<AttributeValues>, ApiError> {
    state.consistent(min).await?;
    let attributes = state.app.users.attributes(&caller, &tenant, user).await?;
    Ok(Json(AttributeValues { attributes }))
}

/// Change a member's attribute values in the tenant: the body names each attribute to set, with
/// its value, or to clear, with `null` (JSON merge patch); the others keep theirs. The member may
/// set those the tenant made `user_editable`; administrators with `users:update` (or
/// `members.<role>:update` over the member) set every one.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/users/{user}/attributes", tag = "users",
    request_body(content = Object, description = "attribute name to its new value, or null to clear it (at most 50)"),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update, unless it is the caller's own), `attribute_not_editable` (set by administrators only)"),
        (status = 404, body = Problem, description = "`user_not_found` (not a member of the tenant)"),
        (status = 422, body = Problem, description = "`unknown_attribute`, `invalid_attribute_value`, `attribute_required` (a required attribute cleared)")),
    security(("bearer" = [])))]
pub async fn change_attributes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
    ApiJson(body): ApiJson<BTreeMap<String, Value>>,
) -> Result<CommandAccepted, ApiError> {
    let change = attribute_change(body)?;
    let outcome = state
        .timed(
            "change_attributes",
            state
                .app
                .users
                .change_attributes(&caller, tenant, user, change),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// A body's attribute values as a change: `null` clears.
pub(crate) fn attribute_change(
    body: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Option<Value>>, ApiError> {
    if body.len() > MAX_ATTRIBUTES_NAMED {
        return Err(ApiError::invalid_body(
            "the attributes",
            "at most 50 attributes",
        ));
    }
    Ok(null_clears(body))
}

/// Attribute values as a change: `null` clears an attribute.
pub(crate) fn null_clears(body: BTreeMap<String, Value>) -> BTreeMap<String, Option<Value>> {
    body.into_iter()
        .map(|(name, value)| (name, (!value.is_null()).then_some(value)))
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    #[schema(value_type = formats::Email)]
    pub email: String,
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub first_name: String,
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub last_name: String,
    /// Roles in this tenant (`admin`, `user`). Absent: `["user"]`. An empty list creates the
    /// identity without making it a member of the tenant (a member holds at least one role).
    #[serde(default = "default_roles")]
    #[schema(value_type = Vec<formats::RoleName>)]
    pub roles: Vec<RoleName>,
    /// Create the user as invited instead of active.
    #[serde(default)]
    pub invite: bool,
    /// A phone number in international form (`+44 20 7946 0958`), stored as E.164.
    #[serde(default)]
    #[schema(max_length = 32, example = "+44 20 7946 0958")]
    pub phone: Option<String>,
    /// The user's attribute values in this tenant, by name (see
    /// `GET /v1/tenants/{tenant}/attributes`); every required attribute must be given.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Value>,
}

fn default_roles() -> Vec<RoleName> {
    vec!["user".parse().expect("`user` is a valid role name")]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// RFC 3339 end of the suspension; absent for an open-ended one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    #[schema(value_type = Option<formats::SuspensionReason>)]
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
    /// The user's phone number (E.164), if they gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The language the user chose for their mails (`en`, `fr`), if they chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
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

impl User {
    /// The API shape of a user; `status` is the one in effect now (a lapsed timed suspension
    /// reads `active`).
    pub(crate) fn from_view(view: idstream_directory::UserView, tenants: Vec<TenantId>) -> User {
        let status = view.status_at(OffsetDateTime::now_utc());
        let suspended = status == idstream_directory::UserStatus::Suspended;
        User {
            id: view.id.to_string(),
            email: view.email,
            first_name: view.first_name,
            last_name: view.last_name,
            image_url: view.image_url,
            phone: view.phone,
            language: view.language,
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
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:create and role.<role>:assign for each role), `owner_only` (the owner role, by a non-owner), `beyond_caller_permissions` (a role with permissions the caller lacks)"),
        (status = 409, body = Problem, description = "`email_taken`"),
        (status = 422, body = Problem, description = "`invalid_email`, `invalid_name`, `invalid_phone`, `unknown_role`, `unknown_attribute`, `invalid_attribute_value`, `attribute_required`")),
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
        phone: body.phone,
        attributes: Some(attribute_change(body.attributes)?),
    };
    let outcome = state
        .timed(
            "create_user",
            state.app.users.create(&caller, tenant, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Read a user.
#[utoipa::path(get, path = "/v1/users/{user}", tag = "users",
    responses((status = 200, body = User),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read in a tenant of the user)")),
    security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<User>, ApiError> {
    state.consistent(min).await?;
    let (view, tenants) = state.app.users.get(&caller, user).await?;
    Ok(Json(User::from_view(view, tenants)))
}

/// Suspend a user, optionally until a time.
#[utoipa::path(post, path = "/v1/users/{user}/suspend", request_body = SuspendBody, tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user), `owner_only` (an owner, by a non-owner)"),
        (status = 409, body = Problem, description = "`already_suspended`, `user_inactive` (deactivated), `user_erased`"),
        (status = 422, body = Problem, description = "`suspension_in_past`, `invalid_reason`, `cannot_remove_self`, `last_admin`")),
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
            state.app.users.suspend(&caller, user, request),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Lift a user's suspension.
#[utoipa::path(post, path = "/v1/users/{user}/reinstate", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)"),
        (status = 409, body = Problem, description = "`not_suspended`, `user_erased`")),
    security(("bearer" = [])))]
pub async fn reinstate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("reinstate_user", state.app.users.reinstate(&caller, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- lifecycle, flags and profile -----

/// A user's system-level flags, the same in every tenant; `PUT` replaces all of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flags {
    /// May use the dashboard (the interactive front end). Not enforced by the API, whose
    /// sessions work without it: front ends read it (`GET /v1/auth/me`) and keep people without
    /// it out of their dashboards; the hosted administration pages will require it to sign in.
    pub dashboard_access: bool,
    /// May use the API with API keys: without it, the user's keys are refused (401) on every
    /// request and no key can be issued for them (403 `api_access_disabled`); their sessions
    /// are not affected.
    pub api_access: bool,
    /// Manages the platform: tenants and every tenant's administration.
    pub platform_admin: bool,
}

impl From<Flags> for UserFlags {
    fn from(f: Flags) -> UserFlags {
        UserFlags {
            dashboard_access: f.dashboard_access,
            api_access: f.api_access,
            platform_admin: f.platform_admin,
        }
    }
}

/// Deactivate a user (they left): no sign-in and no access until reactivated.
#[utoipa::path(post, path = "/v1/users/{user}/deactivate", tag = "users",
    responses((status = 200, body = CommandAccepted, description = "deactivated, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user), `owner_only` (an owner, by a non-owner)"),
        (status = 409, body = Problem, description = "`user_erased`"),
        (status = 422, body = Problem, description = "`cannot_remove_self`, `last_admin`")),
    security(("bearer" = [])))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("deactivate_user", state.app.users.deactivate(&caller, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Erase a user (right to erasure): their personal-data key is destroyed, so their email,
/// names and picture are unreadable everywhere from now on (log, read models, replays, exports);
/// their addresses become free. The user id and the audit trail stay.
#[utoipa::path(post, path = "/v1/users/{user}/erase", tag = "users",
    responses((status = 200, body = CommandAccepted, description = "erased, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:delete in every tenant of the user), `owner_only` (an owner, by a non-owner)"),
        (status = 422, body = Problem, description = "`cannot_remove_self`, `last_admin`")),
    security(("bearer" = [])))]
pub async fn erase_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("erase_user", state.app.users.erase(&caller, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Reactivate a deactivated user.
#[utoipa::path(post, path = "/v1/users/{user}/reactivate", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)"),
        (status = 409, body = Problem, description = "`user_not_inactive`, `user_erased`")),
    security(("bearer" = [])))]
pub async fn reactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("reactivate_user", state.app.users.reactivate(&caller, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Replace a user's system-level flags: `api_access` governs the user's API keys at once;
/// `dashboard_access` is for front ends (and the hosted administration pages).
#[utoipa::path(put, path = "/v1/users/{user}/flags", request_body = Flags, tag = "users",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`platform_admin_only`"),
        (status = 409, body = Problem, description = "`user_erased`")),
    security(("bearer" = [])))]
pub async fn set_user_flags(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
    ApiJson(body): ApiJson<Flags>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "set_user_flags",
            state.app.users.set_flags(&caller, user, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// A user's live sessions, newest first, with where each was started from (needs
/// `users:update` in every tenant of the user, like ending them).
#[utoipa::path(get, path = "/v1/users/{user}/sessions", tag = "users",
    responses((status = 200, body = SessionList),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)")),
    security(("bearer" = [])))]
pub async fn user_sessions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<SessionList>, ApiError> {
    state.consistent(min).await?;
    let current = caller.session();
    let items = state
        .app
        .users
        .sessions(&caller, user)
        .await?
        .into_iter()
        .map(|s| SessionBody::of(s, current))
        .collect();
    Ok(Json(SessionList { items }))
}

/// End every session of a user (needs `users:update` in every tenant of the user).
#[utoipa::path(post, path = "/v1/users/{user}/sessions/revoke", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)")),
    security(("bearer" = [])))]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_user_sessions",
            state.app.users.revoke_sessions(&caller, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Lift a user's lock-out after failed sign-ins (needs `users:update` in every tenant of the
/// user).
#[utoipa::path(post, path = "/v1/users/{user}/unlock", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)"),
        (status = 409, body = Problem, description = "`not_locked`")),
    security(("bearer" = [])))]
pub async fn unlock_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("unlock_user", state.app.users.unlock(&caller, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Reset a user's second factors: every passkey and TOTP (with the recovery codes) go, for a
/// person who lost their devices; they sign in with their first factor and set up anew
/// (needs `users:update` in every tenant of the user). The trail records who did it.
#[utoipa::path(post, path = "/v1/users/{user}/reset-factors", tag = "users",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update in every tenant of the user)"),
        (status = 409, body = Problem, description = "`no_second_factor`")),
    security(("bearer" = [])))]
pub async fn reset_user_factors(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "reset_user_factors",
            state.app.users.reset_factors(&caller, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    #[schema(value_type = formats::PersonName)]
    pub first_name: String,
    #[schema(value_type = formats::PersonName)]
    pub last_name: String,
    /// An http(s) URL of the user's picture; absent or empty for none.
    #[schema(value_type = Option<formats::ImageUrl>)]
    pub image_url: Option<String>,
    /// The phone number in international form (`+44 20 7946 0958`, stored as E.164
    /// `+442079460958`): left out, the one the user has is kept; `null` or empty removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 32, example = "+44 20 7946 0958")]
    pub phone: Option<Option<String>>,
    /// The language of the user's mails, `en` or `fr`: left out, the one chosen is kept; `null`
    /// or empty removes the choice (their browser's `Accept-Language` chooses, else their
    /// tenant's language).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "fr")]
    pub language: Option<Option<String>>,
    /// Notification topics the user wants (`true`) or not: at most 32, each 1 to 40 of a-z,
    /// 0-9 and `_`.
    #[serde(default)]
    #[schema(schema_with = notifications_schema)]
    pub notifications: BTreeMap<String, bool>,
}

fn notifications_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .pattern(Some("^[a-z0-9_]{1,40}$")),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Boolean))
                .build(),
        )))))
        .max_properties(Some(idstream_domain::user::MAX_NOTIFICATION_TOPICS))
        .build()
}

/// Replace a user's profile: the user themselves, or an administrator with `users:update` in
/// every tenant of theirs.
#[utoipa::path(put, path = "/v1/users/{user}/profile", request_body = ProfileBody, tag = "users",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (someone else's profile needs users:update in every tenant of the user)"),
        (status = 409, body = Problem, description = "`user_erased`"),
        (status = 422, body = Problem, description = "`invalid_name`, `invalid_image_url`, `invalid_notifications`, `invalid_phone`, `invalid_language`")),
    security(("bearer" = [])))]
pub async fn change_profile(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "change_profile",
            state.app.users.change_profile(
                &caller,
                user,
                idstream_domain::user::Profile {
                    first_name: body.first_name,
                    last_name: body.last_name,
                    image_url: body.image_url,
                    notifications: body.notifications,
                    phone: body.phone,
                    language: body.language,
                },
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// A field that may be left out (`None`), `null` (`Some(None)`) or given (`Some(Some(…))`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}
