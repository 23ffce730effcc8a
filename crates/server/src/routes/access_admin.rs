//! Administration of access control (the commands; the reads live beside the access checks):
//!
//! - `/v1/tenants/{tenant}/settings`
//! - `/v1/tenants/{tenant}/roles`, `…/roles/{role}`, `…/roles/{role}/menu`
//! - `/v1/tenants/{tenant}/entities`, `…/entities/{entity}/{fields,rls,policy}`,
//!   `…/entities/{entity}/field-rules/{role}`
//! - `/v1/tenants/{tenant}/entities/{entity}/records/{record}/{owner,grants/{user},local-roles/{user}/{role}}`
//! - `/v1/tenants/{tenant}/users/{user}` (removal), `…/users/{user}/permissions[/revoke]`
//! - `/v1/users/{user}/{deactivate,reactivate,erase,flags}`
//!
//! Request types mirror the domain's types so the OpenAPI document describes them; each converts
//! into the domain type exhaustively, so a field added there fails to compile here until it is
//! described.

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use idstream_app::{NewEntityRequest, RoleRequest};
use idstream_domain::access::{
    EntityName, EntityPolicy, FieldName, MenuItem, Permission, Principal, RecordAccess, RecordId,
};
use idstream_domain::tenant::{PasswordPolicySettings, TenantSettings};
use idstream_domain::user::UserFlags;
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CommandAccepted;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, Caller, MinPosition};

pub fn router() -> Router<AppState> {
    let tenant = "/v1/tenants/{tenant}";
    let entity = "/v1/tenants/{tenant}/entities/{entity}";
    let record = "/v1/tenants/{tenant}/entities/{entity}/records/{record}";
    Router::new()
        .route(
            &format!("{tenant}/settings"),
            get(get_settings).put(put_settings),
        )
        .route(&format!("{tenant}/roles"), post(define_role))
        .route(
            &format!("{tenant}/roles/{{role}}"),
            put(update_role).delete(delete_role),
        )
        .route(&format!("{tenant}/roles/{{role}}/menu"), put(set_role_menu))
        .route(&format!("{tenant}/entities"), post(register_entity))
        .route(&format!("{entity}/fields"), put(change_entity_fields))
        .route(&format!("{entity}/rls"), put(set_entity_rls))
        .route(&format!("{entity}/policy"), put(set_entity_policy))
        .route(
            &format!("{entity}/field-rules/{{role}}"),
            put(set_field_rules),
        )
        .route(&format!("{record}/owner"), put(set_record_owner))
        .route(
            &format!("{record}/grants/{{user}}"),
            put(grant_record_access).delete(revoke_record_access),
        )
        .route(
            &format!("{record}/local-roles/{{user}}/{{role}}"),
            put(assign_local_role).delete(revoke_local_role),
        )
        .route(
            &format!("{tenant}/users/{{user}}"),
            axum::routing::delete(remove_member),
        )
        .route(
            &format!("{tenant}/users/{{user}}/permissions"),
            post(grant_permissions),
        )
        .route(
            &format!("{tenant}/users/{{user}}/permissions/revoke"),
            post(revoke_permissions),
        )
        .route("/v1/users/{user}/deactivate", post(deactivate_user))
        .route("/v1/users/{user}/erase", post(erase_user))
        .route("/v1/users/{user}/reactivate", post(reactivate_user))
        .route("/v1/users/{user}/flags", put(set_user_flags))
}

// ----- request and response types -----

/// Password rules of a tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicy {
    /// At least 8.
    #[schema(example = 8)]
    pub min_length: u32,
    /// At least 64, at most 1024.
    #[schema(example = 128)]
    pub max_length: u32,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
    /// Refuse passwords on the shipped list of common passwords.
    pub deny_common: bool,
}

/// A tenant's settings; `PUT` replaces all of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// People may sign themselves up.
    pub self_registration: bool,
    /// The role self-registered users get: an existing role of the tenant other than `owner`.
    #[schema(value_type = String, example = "user")]
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicy,
    /// 1 to 720.
    #[schema(example = 168)]
    pub invitation_ttl_hours: u32,
    /// 1 to 43200.
    #[schema(example = 30)]
    pub session_idle_minutes: u32,
    /// 1 to 8760.
    #[schema(example = 10)]
    pub session_max_hours: u32,
    /// 1 to 60.
    #[schema(example = 10)]
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
}

impl From<TenantSettings> for Settings {
    fn from(s: TenantSettings) -> Settings {
        let p = s.password_policy;
        Settings {
            self_registration: s.self_registration,
            default_role: s.default_role,
            require_email_verification: s.require_email_verification,
            password_policy: PasswordPolicy {
                min_length: p.min_length,
                max_length: p.max_length,
                require_lowercase: p.require_lowercase,
                require_uppercase: p.require_uppercase,
                require_digit: p.require_digit,
                require_symbol: p.require_symbol,
                deny_common: p.deny_common,
            },
            invitation_ttl_hours: s.invitation_ttl_hours,
            session_idle_minutes: s.session_idle_minutes,
            session_max_hours: s.session_max_hours,
            magic_link_ttl_minutes: s.magic_link_ttl_minutes,
            mfa_required: s.mfa_required,
        }
    }
}

impl From<Settings> for TenantSettings {
    fn from(s: Settings) -> TenantSettings {
        let p = s.password_policy;
        TenantSettings {
            self_registration: s.self_registration,
            default_role: s.default_role,
            require_email_verification: s.require_email_verification,
            password_policy: PasswordPolicySettings {
                min_length: p.min_length,
                max_length: p.max_length,
                require_lowercase: p.require_lowercase,
                require_uppercase: p.require_uppercase,
                require_digit: p.require_digit,
                require_symbol: p.require_symbol,
                deny_common: p.deny_common,
            },
            invitation_ttl_hours: s.invitation_ttl_hours,
            session_idle_minutes: s.session_idle_minutes,
            session_max_hours: s.session_max_hours,
            magic_link_ttl_minutes: s.magic_link_ttl_minutes,
            mfa_required: s.mfa_required,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineRoleBody {
    /// 1–64 of a-z, 0-9, '_' and '-', starting with a letter; unique in the tenant (the built-in
    /// `owner`, `admin` and `user` included).
    #[schema(value_type = String, example = "project_manager")]
    pub name: RoleName,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(example = "Manages projects")]
    pub description: String,
    /// `resource:action` permissions, e.g. `users:read`, `entity.invoice:update`,
    /// `role.editor:assign`; at most 2000.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["entity.project:read", "entity.project:update"]))]
    pub permissions: BTreeSet<Permission>,
    /// Every permission, bypassing row- and field-level security.
    #[serde(default)]
    pub global_access: bool,
}

/// The new definition of a role: replaces the description, permissions and global access.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleBody {
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Vec<String>, example = json!(["entity.project:read"]))]
    pub permissions: BTreeSet<Permission>,
    pub global_access: bool,
}

/// One entry of a role's menu. Items whose `permission` a user lacks are left out of their menu.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuEntry {
    /// 1 to 64 characters, unique within the menu.
    #[schema(example = "projects")]
    pub id: String,
    /// 1 to 200 characters.
    #[schema(example = "Projects")]
    pub label: String,
    #[serde(default)]
    pub href: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "entity.project:read")]
    pub permission: Option<Permission>,
    /// Sub-items; a menu nests at most 4 deep and holds at most 500 items.
    #[serde(default)]
    #[schema(no_recursion)]
    pub children: Vec<MenuEntry>,
}

impl From<MenuEntry> for MenuItem {
    fn from(m: MenuEntry) -> MenuItem {
        MenuItem {
            id: m.id,
            label: m.label,
            href: m.href,
            icon: m.icon,
            permission: m.permission,
            children: m.children.into_iter().map(MenuItem::from).collect(),
        }
    }
}

/// Who may do what to an entity's records beyond the permission matrix. Each list holds
/// principals: `_EVERYONE`, `_AUTHENTICATED_USER`, `_CREATOR` (the record's owner) or the name of
/// a role of the tenant. A missing list is empty.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["_CREATOR", "auditor"]))]
    pub read: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["_AUTHENTICATED_USER"]))]
    pub create: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["_CREATOR"]))]
    pub update: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["_CREATOR"]))]
    pub delete: BTreeSet<Principal>,
}

impl From<Policy> for EntityPolicy {
    fn from(p: Policy) -> EntityPolicy {
        EntityPolicy {
            read: p.read,
            create: p.create,
            update: p.update,
            delete: p.delete,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterEntityBody {
    /// 1–64 of a-z, 0-9 and '_', starting with a letter; unique in the tenant.
    #[schema(value_type = String, example = "project")]
    pub name: EntityName,
    /// Field names (1–64 of a-z, 0-9 and '_', starting with a letter), each once, at most 500.
    #[schema(value_type = Vec<String>, example = json!(["id", "title", "budget"]))]
    pub fields: Vec<FieldName>,
    /// Row-level security: records are private unless granted, owned or reached by a local role.
    pub rls: bool,
    /// Absent: owners (`_CREATOR`) read, update and delete their own records; nothing else.
    #[serde(default)]
    pub policy: Option<Policy>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldsBody {
    /// The entity's whole field list; rules hiding removed fields lapse.
    #[schema(value_type = Vec<String>, example = json!(["id", "title"]))]
    pub fields: Vec<FieldName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RlsBody {
    pub enabled: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRulesBody {
    /// Exactly the fields hidden from the role (empty: none). Only fields of the entity, never
    /// `id`, `created_at` or `updated_at`.
    #[schema(value_type = Vec<String>, example = json!(["budget"]))]
    pub hidden: BTreeSet<FieldName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    /// A member of the tenant.
    #[schema(value_type = String, example = "01ARZ3NDEKTSV4RRFFQ69G5FAV")]
    pub user: UserId,
}

/// What a record grant allows.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read the record.
    ReadOnly,
    /// Read, update and delete the record.
    ReadWrite,
}

impl From<Access> for RecordAccess {
    fn from(a: Access) -> RecordAccess {
        match a {
            Access::ReadOnly => RecordAccess::ReadOnly,
            Access::ReadWrite => RecordAccess::ReadWrite,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub access: Access,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsBody {
    /// `resource:action` permissions; at most 2000 held per user and tenant.
    #[schema(value_type = Vec<String>, example = json!(["users:read", "entity.invoice:update"]))]
    pub permissions: BTreeSet<Permission>,
}

/// A user's system-level flags, the same in every tenant; `PUT` replaces all of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flags {
    /// May use the dashboard (the interactive front end).
    pub dashboard_access: bool,
    /// May use the API with API keys.
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

// ----- tenant settings -----

/// Read a tenant's settings.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/settings", tag = "tenants",
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = Settings), (status = 404, body = Problem, description = "tenant_not_found")),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<Settings>, ApiError> {
    state.consistent(min).await?;
    state
        .app
        .authorize_named(
            &caller.ctx,
            &tenant,
            "settings",
            idstream_domain::access::Action::Read,
        )
        .await?;
    Ok(Json(state.app.tenant_settings(&tenant)?.into()))
}

/// Replace a tenant's settings.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/settings", request_body = Settings, tag = "tenants",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found"),
        (status = 422, body = Problem, description = "invalid_settings, unknown_role, invalid_default_role (`owner`), invalid_body")),
    security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<Settings>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "change_tenant_settings",
            state
                .app
                .change_tenant_settings(&caller.ctx, tenant, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- roles -----

/// Define a custom role.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/roles", request_body = DefineRoleBody, tag = "roles",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 404, body = Problem, description = "tenant_not_found"), (status = 409, body = Problem, description = "role_exists"),
        (status = 422, body = Problem, description = "invalid_body (e.g. an unknown permission), invalid_description, too_many_permissions")),
    security(("bearer" = [])))]
pub async fn define_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<DefineRoleBody>,
) -> Result<CommandAccepted, ApiError> {
    let request = RoleRequest {
        description: body.description,
        permissions: body.permissions,
        global_access: body.global_access,
    };
    let outcome = state
        .timed(
            "define_role",
            state
                .app
                .define_role(&caller.ctx, tenant, body.name, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Replace a role's definition (`owner` and `admin` cannot change).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/roles/{role}", request_body = UpdateRoleBody, tag = "roles",
    params(("tenant" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, role_not_found"),
        (status = 422, body = Problem, description = "built_in_role, invalid_body, invalid_description, too_many_permissions")),
    security(("bearer" = [])))]
pub async fn update_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    ApiJson(body): ApiJson<UpdateRoleBody>,
) -> Result<CommandAccepted, ApiError> {
    let request = RoleRequest {
        description: body.description,
        permissions: body.permissions,
        global_access: body.global_access,
    };
    let outcome = state
        .timed(
            "update_role",
            state.app.update_role(&caller.ctx, tenant, role, request),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Delete a custom role. Refused while a member holds it or it is the tenant's default role.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles",
    params(("tenant" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem, description = "tenant_not_found, role_not_found"),
        (status = 409, body = Problem, description = "role_in_use"), (status = 422, body = Problem, description = "built_in_role")),
    security(("bearer" = [])))]
pub async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "delete_role",
            state.app.delete_role(&caller.ctx, tenant, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Set a role's menu (the whole list; empty removes it).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/roles/{role}/menu", request_body = Vec<MenuEntry>, tag = "roles",
    params(("tenant" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, role_not_found"),
        (status = 422, body = Problem, description = "invalid_menu, invalid_body")),
    security(("bearer" = [])))]
pub async fn set_role_menu(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    ApiJson(body): ApiJson<Vec<MenuEntry>>,
) -> Result<CommandAccepted, ApiError> {
    let menu = body.into_iter().map(MenuItem::from).collect();
    let outcome = state
        .timed(
            "set_role_menu",
            state.app.set_role_menu(&caller.ctx, tenant, role, menu),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- entities -----

/// Register an entity (a data type) with its fields, row-level security and policy.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/entities", request_body = RegisterEntityBody, tag = "entities",
    params(("tenant" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 404, body = Problem, description = "tenant_not_found"), (status = 409, body = Problem, description = "entity_exists"),
        (status = 422, body = Problem, description = "invalid_body, invalid_fields, unknown_role (in the policy)")),
    security(("bearer" = [])))]
pub async fn register_entity(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<RegisterEntityBody>,
) -> Result<CommandAccepted, ApiError> {
    let request = NewEntityRequest {
        fields: body.fields,
        rls: body.rls,
        policy: body.policy.map(EntityPolicy::from),
    };
    let outcome = state
        .timed(
            "register_entity",
            state
                .app
                .register_entity(&caller.ctx, tenant, body.name, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Replace an entity's field list.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/fields", request_body = FieldsBody, tag = "entities",
    params(("tenant" = String, Path), ("entity" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "invalid_fields, invalid_body")),
    security(("bearer" = [])))]
pub async fn change_entity_fields(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiJson(body): ApiJson<FieldsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "change_entity_fields",
            state
                .app
                .change_entity_fields(&caller.ctx, tenant, entity, body.fields),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Turn an entity's row-level security on or off.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/rls", request_body = RlsBody, tag = "entities",
    params(("tenant" = String, Path), ("entity" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found")),
    security(("bearer" = [])))]
pub async fn set_entity_rls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiJson(body): ApiJson<RlsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "set_entity_rls",
            state
                .app
                .set_entity_rls(&caller.ctx, tenant, entity, body.enabled),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Replace an entity's policy.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/policy", request_body = Policy, tag = "entities",
    params(("tenant" = String, Path), ("entity" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "unknown_role, invalid_body")),
    security(("bearer" = [])))]
pub async fn set_entity_policy(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiJson(body): ApiJson<Policy>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "set_entity_policy",
            state
                .app
                .set_entity_policy(&caller.ctx, tenant, entity, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Hide exactly these fields of an entity from a role.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/field-rules/{role}", request_body = FieldRulesBody, tag = "entities",
    params(("tenant" = String, Path), ("entity" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "invalid_hidden_field, unknown_role, invalid_body")),
    security(("bearer" = [])))]
pub async fn set_field_rules(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, role)): ApiPath<(TenantId, EntityName, RoleName)>,
    ApiJson(body): ApiJson<FieldRulesBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "set_field_rules",
            state
                .app
                .set_field_rules(&caller.ctx, tenant, entity, role, body.hidden),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- records -----

/// Set a record's owner (`_CREATOR` in policies).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/owner", request_body = OwnerBody, tag = "records",
    params(("tenant" = String, Path), ("entity" = String, Path), ("record" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "not_a_member, invalid_body")),
    security(("bearer" = [])))]
pub async fn set_record_owner(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, record)): ApiPath<(TenantId, EntityName, RecordId)>,
    ApiJson(body): ApiJson<OwnerBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "set_record_owner",
            state
                .app
                .set_record_owner(&caller.ctx, tenant, entity, record, body.user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Grant a member access to one record.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}", request_body = GrantBody, tag = "records",
    params(("tenant" = String, Path), ("entity" = String, Path), ("record" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "granted, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "not_a_member, invalid_body")),
    security(("bearer" = [])))]
pub async fn grant_record_access(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, record, user)): ApiPath<(TenantId, EntityName, RecordId, UserId)>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "grant_record_access",
            state.app.grant_record_access(
                &caller.ctx,
                tenant,
                entity,
                record,
                user,
                body.access.into(),
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Withdraw a user's grant on one record.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}", tag = "records",
    params(("tenant" = String, Path), ("entity" = String, Path), ("record" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 409, body = Problem, description = "not_granted")),
    security(("bearer" = [])))]
pub async fn revoke_record_access(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, record, user)): ApiPath<(TenantId, EntityName, RecordId, UserId)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_record_access",
            state
                .app
                .revoke_record_access(&caller.ctx, tenant, entity, record, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Give a member a role on one record only (a local role).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}", tag = "records",
    params(("tenant" = String, Path), ("entity" = String, Path), ("record" = String, Path), ("user" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "assigned, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "owner_only"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 422, body = Problem, description = "not_a_member, unknown_role")),
    security(("bearer" = [])))]
pub async fn assign_local_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, record, user, role)): ApiPath<(
        TenantId,
        EntityName,
        RecordId,
        UserId,
        RoleName,
    )>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "assign_local_role",
            state
                .app
                .assign_local_role(&caller.ctx, tenant, entity, record, user, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Take a local role from a user on one record.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}", tag = "records",
    params(("tenant" = String, Path), ("entity" = String, Path), ("record" = String, Path), ("user" = String, Path), ("role" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 403, body = Problem, description = "owner_only"),
        (status = 404, body = Problem, description = "tenant_not_found, entity_not_found"),
        (status = 409, body = Problem, description = "local_role_not_held")),
    security(("bearer" = [])))]
pub async fn revoke_local_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, entity, record, user, role)): ApiPath<(
        TenantId,
        EntityName,
        RecordId,
        UserId,
        RoleName,
    )>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_local_role",
            state
                .app
                .revoke_local_role(&caller.ctx, tenant, entity, record, user, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- members and custom permissions -----

/// Remove a user from a tenant: every role and custom permission there.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}", tag = "users",
    params(("tenant" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 403, body = Problem, description = "owner_only"),
        (status = 404, body = Problem, description = "tenant_not_found, not_a_member"),
        (status = 422, body = Problem, description = "cannot_remove_self, last_admin")),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_member",
            state.app.remove_member(&caller.ctx, tenant, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Give a user custom permissions in a tenant, on top of their roles (held ones are ignored).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/permissions", request_body = PermissionsBody, tag = "permissions",
    params(("tenant" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "granted, or all held already (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, user_not_found"),
        (status = 422, body = Problem, description = "invalid_body (e.g. an unknown permission), too_many_permissions")),
    security(("bearer" = [])))]
pub async fn grant_permissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
    ApiJson(body): ApiJson<PermissionsBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "grant_permissions",
            state
                .app
                .grant_permissions(&caller.ctx, tenant, user, body.permissions),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Take custom permissions from a user in a tenant (those not held are ignored). A POST rather
/// than a DELETE with a body, which many clients and proxies drop.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/permissions/revoke", request_body = PermissionsBody, tag = "permissions",
    params(("tenant" = String, Path), ("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "revoked, or none held (nothing appended)"),
        (status = 404, body = Problem, description = "tenant_not_found, user_not_found"),
        (status = 422, body = Problem, description = "invalid_body")),
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
                .revoke_permissions(&caller.ctx, tenant, user, body.permissions),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- user lifecycle and flags -----

/// Deactivate a user (they left): no sign-in and no access until reactivated.
#[utoipa::path(post, path = "/v1/users/{user}/deactivate", tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "deactivated, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "user_not_found"),
        (status = 422, body = Problem, description = "last_admin")),
    security(("bearer" = [])))]
pub async fn deactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "deactivate_user",
            state.app.deactivate_user(&caller.ctx, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Erase a user (right to erasure): their personal-data key is destroyed, so their email,
/// names and picture are unreadable everywhere from now on (log, read models, replays, exports);
/// their addresses become free. The user id and the audit trail stay.
#[utoipa::path(post, path = "/v1/users/{user}/erase", tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "erased, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "forbidden (users:delete in each of the user's tenants), cannot_remove_self"),
        (status = 404, body = Problem, description = "user_not_found"),
        (status = 422, body = Problem, description = "last_admin")),
    security(("bearer" = [])))]
pub async fn erase_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed("erase_user", state.app.erase_user(&caller.ctx, user))
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Reactivate a deactivated user.
#[utoipa::path(post, path = "/v1/users/{user}/reactivate", tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted), (status = 404, body = Problem, description = "user_not_found"),
        (status = 409, body = Problem, description = "user_not_inactive")),
    security(("bearer" = [])))]
pub async fn reactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<UserId>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "reactivate_user",
            state.app.reactivate_user(&caller.ctx, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Replace a user's system-level flags.
#[utoipa::path(put, path = "/v1/users/{user}/flags", request_body = Flags, tag = "users",
    params(("user" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 404, body = Problem, description = "user_not_found")),
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
            state.app.set_user_flags(&caller.ctx, user, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
