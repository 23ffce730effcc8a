//! Access administration (the `AccessAdmin` service; the reads are the `AccessQueries`
//! service's, in `access_queries`):
//!
//! - `/v1/tenants/{tenant}/roles`, `…/roles/{role}`, `…/roles/{role}/menu`
//! - `/v1/tenants/{tenant}/entities`, `…/entities/{entity}/{fields,rls,policy}`,
//!   `…/entities/{entity}/field-rules/{role}`
//! - `/v1/tenants/{tenant}/entities/{entity}/records/{record}/{owner,grants/{user},local-roles/{user}/{role}}`
//!
//! Request types mirror the domain's types so the OpenAPI document describes them; each converts
//! into the domain type exhaustively, so a field added there fails to compile here until it is
//! described.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::State;
use axum::routing::{post, put};
use idstream_app::{NewEntityRequest, RoleRequest};
use idstream_domain::access::{
    EntityName, EntityPolicy, FieldName, MenuItem, Permission, Principal, RecordAccess, RecordId,
    ResourceName,
};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CommandAccepted;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, Caller};
use crate::openapi::formats;

pub fn router() -> Router<AppState> {
    let tenant = "/v1/tenants/{tenant}";
    let entity = "/v1/tenants/{tenant}/entities/{entity}";
    let record = "/v1/tenants/{tenant}/entities/{entity}/records/{record}";
    Router::new()
        .route(&format!("{tenant}/roles"), post(define_role))
        .route(
            &format!("{tenant}/roles/{{role}}"),
            put(update_role).delete(delete_role),
        )
        .route(&format!("{tenant}/roles/{{role}}/menu"), put(set_role_menu))
        .route(&format!("{tenant}/roles/{{role}}/label"), put(relabel_role))
        .route(&format!("{tenant}/roles/{{role}}/copy"), post(copy_role))
        .route(
            &format!("{tenant}/resources/{{resource}}"),
            put(define_resource).delete(remove_resource),
        )
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
}

// ----- request and response types -----

/// The tenants to copy a role to (at most 100).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRoleBody {
    #[schema(value_type = Vec<formats::TenantId>, max_items = 100)]
    pub to: Vec<TenantId>,
}

/// What copying did in one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CopiedRole {
    pub tenant: String,
    /// `copied` or `refused`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Why it was refused there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CopiedRoles {
    /// The log position of the last change (the consistency token); 0 if none.
    pub position: u64,
    pub results: Vec<CopiedRole>,
}

/// Copy a role's definition (description, permissions, global access, menu) to other tenants,
/// defining it where they have no role of that name and replacing it where they do, with a
/// result per tenant: similar roles across tenants. Platform administrators only; `owner` and
/// `admin` are never copied (they never change).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/roles/{role}/copy", request_body = CopyRoleBody, tag = "roles",
    responses((status = 200, body = CopiedRoles),
        (status = 403, body = Problem, description = "`platform_admin_only`"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 422, body = Problem, description = "`built_in_role` (owner and admin)")),
    security(("bearer" = [])))]
pub async fn copy_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    ApiJson(body): ApiJson<CopyRoleBody>,
) -> Result<axum::response::Response, ApiError> {
    if body.to.len() > 100 {
        // Decided after the caller: the app refuses anyone else first.
        state
            .app
            .access_admin
            .copy_role(&caller, &tenant, &role, &[])
            .await?;
        return Err(ApiError::invalid_body(
            "body field `to`",
            "at most 100 tenants per copy",
        ));
    }
    let results = state
        .timed(
            "copy_role",
            state
                .app
                .access_admin
                .copy_role(&caller, &tenant, &role, &body.to),
        )
        .await?;
    let mut last = 0;
    let results: Vec<CopiedRole> = results
        .into_iter()
        .map(|(tenant, outcome)| match outcome {
            Ok(outcome) => {
                last = last.max(outcome.position);
                CopiedRole {
                    tenant: tenant.to_string(),
                    result: "copied".into(),
                    position: Some(outcome.position),
                    problem: None,
                }
            }
            Err(error) => CopiedRole {
                tenant: tenant.to_string(),
                result: "refused".into(),
                position: None,
                problem: Some(ApiError::from(error).problem()),
            },
        })
        .collect();
    let body = CopiedRoles {
        position: last,
        results,
    };
    Ok(super::results_answer(body, last, false))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineRoleBody {
    /// Unique in the tenant (the built-in `owner`, `admin` and `user` included).
    #[schema(value_type = formats::RoleName)]
    pub name: RoleName,
    #[serde(default)]
    #[schema(value_type = formats::RoleDescription)]
    pub description: String,
    /// `resource:action` permissions, e.g. `users:read`, `entity.invoice:update`,
    /// `role.editor:assign`; at most 2000.
    #[serde(default)]
    #[schema(value_type = Vec<formats::Permission>, max_items = 2000, example = json!(["entity.project:read", "entity.project:update"]))]
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
    #[schema(value_type = formats::RoleDescription)]
    pub description: String,
    /// At most 2000.
    #[schema(value_type = Vec<formats::Permission>, max_items = 2000, example = json!(["entity.project:read"]))]
    pub permissions: BTreeSet<Permission>,
    pub global_access: bool,
}

/// One entry of a role's menu. Items whose `permission` a user lacks are left out of their menu.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuEntry {
    #[schema(value_type = formats::MenuItemId)]
    pub id: String,
    #[schema(value_type = formats::MenuLabel)]
    pub label: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub href: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub icon: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<formats::Permission>)]
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
    #[schema(value_type = Vec<formats::Principal>, example = json!(["_CREATOR"]))]
    pub read: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<formats::Principal>, example = json!(["_AUTHENTICATED_USER"]))]
    pub create: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<formats::Principal>, example = json!(["_CREATOR"]))]
    pub update: BTreeSet<Principal>,
    #[serde(default)]
    #[schema(value_type = Vec<formats::Principal>, example = json!(["_CREATOR"]))]
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
    /// Unique in the tenant.
    #[schema(value_type = formats::EntityName)]
    pub name: EntityName,
    /// Field names, each once, at most 500.
    #[schema(value_type = Vec<formats::FieldName>, max_items = 500, example = json!(["title", "budget"]))]
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
    /// The entity's whole field list (each once, at most 500); rules hiding removed fields
    /// lapse.
    #[schema(value_type = Vec<formats::FieldName>, max_items = 500, example = json!(["title", "budget"]))]
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
    #[schema(value_type = Vec<formats::FieldName>, example = json!(["budget"]))]
    pub hidden: BTreeSet<FieldName>,
    /// Fields the role sees but may not search or filter by (search visibility; empty or left
    /// out: none). Same fields as `hidden` may name; a hidden field is unsearchable anyway.
    #[serde(default)]
    #[schema(value_type = Vec<formats::FieldName>, example = json!(["title"]))]
    pub unsearchable: BTreeSet<FieldName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerBody {
    /// A member of the tenant.
    #[schema(value_type = formats::UserId)]
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
    /// RFC 3339 end of temporary access: checks stop honouring it at that moment (at most ten
    /// years ahead); absent for access until taken away.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
}

/// The optional body of giving a local role.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRoleBody {
    /// RFC 3339 end of temporary access: checks stop honouring it at that moment (at most ten
    /// years ahead); absent for access until taken away.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
}

// ----- roles -----

/// Define a custom role.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/roles", request_body = DefineRoleBody, tag = "roles",
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:create), `beyond_caller_permissions` (a permission, or global access, the caller lacks)"),
        (status = 409, body = Problem, description = "`role_exists`"),
        (status = 422, body = Problem, description = "`invalid_description`, `too_many_permissions`")),
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
                .access_admin
                .define_role(&caller, tenant, body.name, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Replace a role's definition (`owner` and `admin` cannot change).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/roles/{role}", request_body = UpdateRoleBody, tag = "roles",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:update), `beyond_caller_permissions` (a permission, or global access, the caller lacks)"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 422, body = Problem, description = "`built_in_role` (owner and admin), `invalid_description`, `too_many_permissions`")),
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
            state
                .app
                .access_admin
                .update_role(&caller, tenant, role, request),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleLabelBody {
    /// The name people see (at most 100 characters; empty removes it).
    #[schema(max_length = 100, example = "Help desk")]
    pub label: String,
}

/// Set the label people see for a role ("rename" it for people): the role's name stays its
/// identifier in permissions, policies, field rules and tokens, so nothing that names it breaks.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/roles/{role}/label", request_body = RoleLabelBody, tag = "roles",
    responses((status = 200, body = CommandAccepted, description = "set, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:update)"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 422, body = Problem, description = "`invalid_label`")),
    security(("bearer" = [])))]
pub async fn relabel_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    ApiJson(body): ApiJson<RoleLabelBody>,
) -> Result<CommandAccepted, ApiError> {
    if body.label.chars().count() > 100 {
        return Err(ApiError::invalid_body(
            "body field `label`",
            "at most 100 characters",
        ));
    }
    let outcome = state
        .timed(
            "relabel_role",
            state
                .app
                .access_admin
                .relabel_role(&caller, tenant, role, body.label),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinitionBody {
    /// What the resource is, for matrix editors (at most 500 characters; may be empty).
    #[serde(default)]
    #[schema(
        max_length = 500,
        example = "Exporting invoices to the accounting system"
    )]
    pub description: String,
}

/// Define a resource of the tenant's own (`invoice_export`): roles, custom permissions and API
/// keys may then name `invoice_export:read|create|update|delete`. Defining it again changes its
/// description.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/resources/{resource}", request_body = ResourceDefinitionBody, tag = "permissions",
    responses((status = 200, body = CommandAccepted, description = "defined, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs permissions:create)"),
        (status = 422, body = Problem, description = "`invalid_resource` (at most 200 per tenant; the description at most 500 characters)")),
    security(("bearer" = [])))]
pub async fn define_resource(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, resource)): ApiPath<(TenantId, ResourceName)>,
    ApiJson(body): ApiJson<ResourceDefinitionBody>,
) -> Result<CommandAccepted, ApiError> {
    if body.description.chars().count() > 500 {
        return Err(ApiError::invalid_body(
            "body field `description`",
            "at most 500 characters",
        ));
    }
    let outcome = state
        .timed(
            "define_resource",
            state
                .app
                .access_admin
                .define_resource(&caller, tenant, resource, body.description),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Remove a resource the tenant defined: its permissions, wherever still named, are denied to
/// everyone from then on.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/resources/{resource}", tag = "permissions",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs permissions:delete)"),
        (status = 404, body = Problem, description = "`resource_not_found`")),
    security(("bearer" = [])))]
pub async fn remove_resource(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, resource)): ApiPath<(TenantId, ResourceName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_resource",
            state
                .app
                .access_admin
                .remove_resource(&caller, tenant, resource),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Delete a custom role. Refused while a member holds it or it is the tenant's default role.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:delete)"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 409, body = Problem, description = "`role_in_use` (held by a member, or the default role)"),
        (status = 422, body = Problem, description = "`built_in_role`")),
    security(("bearer" = [])))]
pub async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "delete_role",
            state.app.access_admin.delete_role(&caller, tenant, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Set a role's menu (the whole list; empty removes it).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/roles/{role}/menu", request_body = Vec<MenuEntry>, tag = "roles",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs menus:update)"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 422, body = Problem, description = "`invalid_menu` (at most 500 items, 4 deep, ids unique)")),
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
            state
                .app
                .access_admin
                .set_role_menu(&caller, tenant, role, menu),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- entities -----

/// Register an entity (a data type) with its fields, row-level security and policy.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/entities", request_body = RegisterEntityBody, tag = "entities",
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 403, body = Problem, description = "`forbidden` (needs entities:create), `beyond_caller_permissions` (a policy opening what the caller may not do)"),
        (status = 409, body = Problem, description = "`entity_exists`"),
        (status = 422, body = Problem, description = "`invalid_fields` (more than 500, or one twice), `unknown_role` (in the policy)")),
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
                .access_admin
                .register_entity(&caller, tenant, body.name, request),
        )
        .await?;
    Ok(CommandAccepted::created(outcome))
}

/// Replace an entity's field list.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/fields", request_body = FieldsBody, tag = "entities",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs fields:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`invalid_fields` (more than 500, or one twice)")),
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
                .access_admin
                .change_entity_fields(&caller, tenant, entity, body.fields),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Turn an entity's row-level security on or off.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/rls", request_body = RlsBody, tag = "entities",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs entities:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`")),
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
                .access_admin
                .set_entity_rls(&caller, tenant, entity, body.enabled),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Replace an entity's policy.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/policy", request_body = Policy, tag = "entities",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs entities:update), `beyond_caller_permissions` (opening what the caller may not do)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`unknown_role`")),
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
                .access_admin
                .set_entity_policy(&caller, tenant, entity, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Hide exactly these fields of an entity from a role.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/field-rules/{role}", request_body = FieldRulesBody, tag = "entities",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs fields:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`invalid_hidden_field` (not a field of the entity, or a system field), `unknown_role`")),
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
            state.app.access_admin.set_field_rules(
                &caller,
                tenant,
                entity,
                role,
                body.hidden,
                body.unsearchable,
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

// ----- records -----

/// Set a record's owner (`_CREATOR` in policies).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/owner", request_body = OwnerBody, tag = "records",
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs entity.<entity>:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`not_a_member`")),
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
                .access_admin
                .set_record_owner(&caller, tenant, entity, record, body.user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Grant a member access to one record, for good or until `expires_at`.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}", request_body = GrantBody, tag = "records",
    responses((status = 200, body = CommandAccepted, description = "granted, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs entity.<entity>:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`not_a_member`, `invalid_expiry`")),
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
            state.app.access_admin.grant_record_access(
                &caller,
                tenant,
                entity,
                record,
                user,
                body.access.into(),
                body.expires_at,
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Withdraw a user's grant on one record.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}", tag = "records",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs entity.<entity>:update)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 409, body = Problem, description = "`not_granted`")),
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
                .access_admin
                .revoke_record_access(&caller, tenant, entity, record, user),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Give a member a role on one record only (a local role), for good or, with a body giving
/// `expires_at`, until then. The body may be left out.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}", request_body(content = Option<LocalRoleBody>), tag = "records",
    responses((status = 200, body = CommandAccepted, description = "assigned, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs role.<role>:assign), `owner_only` (the owner role, by a non-owner), `beyond_caller_permissions` (a role with permissions the caller lacks)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 422, body = Problem, description = "`not_a_member`, `unknown_role`, `invalid_expiry`")),
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
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<LocalRoleBody>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "assign_local_role",
            state.app.access_admin.assign_local_role(
                &caller,
                tenant,
                entity,
                record,
                user,
                role,
                body.expires_at,
            ),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Take a local role from a user on one record.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}", tag = "records",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs role.<role>:revoke), `owner_only` (the owner role, by a non-owner)"),
        (status = 404, body = Problem, description = "`entity_not_found`"),
        (status = 409, body = Problem, description = "`local_role_not_held`")),
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
                .access_admin
                .revoke_local_role(&caller, tenant, entity, record, user, role),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
