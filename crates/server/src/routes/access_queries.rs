//! Access queries (the `AccessQueries` service): checks, batch checks, explanations, readable
//! records, visible fields, the entity CRUD summary, roles, entities, effective permissions and
//! menus.
//!
//! Every query accepts a consistency token (`X-Idstream-Min-Position` or `min_position`), so
//! "grant, then check" is never stale. The subject of a check is `user:<id>` or `anonymous`;
//! omitted, the caller (an API key's owner). Who may ask what is the service's to decide: about
//! oneself with standing in the tenant, about anyone else with `permissions:read` there; a key
//! asking about its own owner is answered within its restriction.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use idstream_app::CheckQuery;
use idstream_domain::access::{EntityName, MenuItem, Permission, RecordId, Subject};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Limit;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};
use crate::openapi::formats;

/// Most records in one batch check.
pub const MAX_BATCH: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/access/check", post(check))
        .route("/v1/tenants/{tenant}/access/check-batch", post(check_batch))
        .route("/v1/tenants/{tenant}/access/explain", post(explain))
        .route(
            "/v1/tenants/{tenant}/entities/{entity}/readable-records",
            get(readable_records),
        )
        .route(
            "/v1/tenants/{tenant}/entities/{entity}/visible-fields",
            get(visible_fields),
        )
        .route("/v1/permissions/entity/{entity}", get(entity_permissions))
        .route("/v1/tenants/{tenant}/roles", get(list_roles))
        .route("/v1/tenants/{tenant}/resources", get(list_resources))
        .route(
            "/v1/tenants/{tenant}/permissions",
            get(permission_catalogue),
        )
        .route("/v1/tenants/{tenant}/roles/{role}", get(get_role))
        .route("/v1/tenants/{tenant}/entities", get(list_entities))
        .route("/v1/tenants/{tenant}/entities/{entity}", get(get_entity))
        .route(
            "/v1/tenants/{tenant}/users/{user}/permissions",
            get(effective_permissions),
        )
        .route("/v1/tenants/{tenant}/users/{user}/menu", get(menu))
}

/// The subject of an access question, `user:<id>` or `anonymous` (the `Subject` format),
/// parsed where the query string or body is, so that a malformed one is that place's mistake.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct SubjectParam(pub Subject);

impl TryFrom<String> for SubjectParam {
    type Error = &'static str;

    fn try_from(text: String) -> Result<SubjectParam, &'static str> {
        if text == "anonymous" {
            return Ok(SubjectParam(Subject::Anonymous));
        }
        text.strip_prefix("user:")
            .and_then(|id| id.parse::<UserId>().ok())
            .map(|user| SubjectParam(Subject::User(user)))
            .ok_or("a subject is `user:<user id>` or `anonymous` (or absent: the caller)")
    }
}

fn query(tenant: TenantId, body: CheckBody) -> Result<CheckQuery, ApiError> {
    if body.record.is_some() && body.permission.entity_name().is_none() {
        return Err(ApiError::invalid_body(
            "body field `record`",
            "a record can only be checked with an `entity.<name>:<action>` permission",
        ));
    }
    Ok(CheckQuery {
        tenant,
        subject: body.subject.map(|s| s.0),
        permission: body.permission,
        record: body.record,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// Omitted: the caller (for an API key, its owner).
    #[schema(value_type = Option<formats::Subject>)]
    pub subject: Option<SubjectParam>,
    #[schema(value_type = formats::Permission)]
    pub permission: Permission,
    /// A record of the permission's entity (an `entity.<name>:<action>` permission).
    #[schema(value_type = Option<formats::RecordId>)]
    pub record: Option<RecordId>,
}

/// A decision: allowed or not, and the kind of fact that decided (`global_access`, `role`,
/// `custom_permission`, `policy`, `grant`, `owner`, `local_role`; for denials `unknown_user`,
/// `account_not_active`, `unknown_entity`, `key_restriction`, `row_level_security`,
/// `no_permission`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionBody {
    pub allowed: bool,
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
}

impl From<idstream_domain::access::Decision> for DecisionBody {
    fn from(d: idstream_domain::access::Decision) -> Self {
        DecisionBody {
            allowed: d.allowed,
            reason: serde_json::to_value(&d.reason).unwrap_or_default(),
        }
    }
}

/// Decide one check: may the subject do `permission` (on `record`) in the tenant?
#[utoipa::path(post, path = "/v1/tenants/{tenant}/access/check", request_body = CheckBody, tag = "access",
    responses((status = 200, body = DecisionBody),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)")),
    security(("bearer" = [])))]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<DecisionBody>, ApiError> {
    state.consistent(min).await?;
    let query = query(tenant, body)?;
    let decision = state.app.access.check(&caller, &query).await?;
    Ok(Json(decision.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Omitted: the caller (for an API key, its owner).
    #[schema(value_type = Option<formats::Subject>)]
    pub subject: Option<SubjectParam>,
    /// An `entity.<name>:<action>` permission.
    #[schema(value_type = formats::EntityPermission)]
    pub permission: Permission,
    /// 1 to 1000 records of the permission's entity.
    #[schema(value_type = Vec<formats::RecordId>, min_items = 1, max_items = 1000)]
    pub records: Vec<RecordId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub record: String,
    pub allowed: bool,
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchDecisions {
    pub results: Vec<BatchResult>,
}

/// Decide one permission on many records at once (in the order given).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/access/check-batch", request_body = BatchBody, tag = "access",
    responses((status = 200, body = BatchDecisions),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)")),
    security(("bearer" = [])))]
pub async fn check_batch(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<BatchDecisions>, ApiError> {
    state.consistent(min).await?;
    if body.records.is_empty() || body.records.len() > MAX_BATCH {
        return Err(ApiError::invalid_body(
            "body field `records`",
            format!("a batch holds 1 to {MAX_BATCH} records"),
        ));
    }
    if body.permission.entity_name().is_none() {
        return Err(ApiError::invalid_body(
            "body field `permission`",
            "records are checked with an `entity.<name>:<action>` permission",
        ));
    }
    let records = body.records;
    let query = query(
        tenant,
        CheckBody {
            subject: body.subject,
            permission: body.permission,
            record: records.first().cloned(),
        },
    )?;
    let decisions = state
        .app
        .access
        .check_many(&caller, &query, &records)
        .await?;
    Ok(Json(BatchDecisions {
        results: records
            .into_iter()
            .zip(decisions)
            .map(|(record, d)| BatchResult {
                record: record.to_string(),
                allowed: d.allowed,
                reason: serde_json::to_value(&d.reason).unwrap_or_default(),
            })
            .collect(),
    }))
}

/// A decision with the facts that decided it and the events that created them (position,
/// actor, time).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    pub allowed: bool,
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub sources: serde_json::Value,
}

/// Explain a check: the decision, the deciding fact and the event behind it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/access/explain", request_body = CheckBody, tag = "access",
    responses((status = 200, body = ExplanationBody),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)")),
    security(("bearer" = [])))]
pub async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<ExplanationBody>, ApiError> {
    state.consistent(min).await?;
    let query = query(tenant, body)?;
    let explained = state.app.access.explain(&caller, &query).await?;
    let decision = explained.decision.clone();
    // When the key's restriction decided, no fact of the owner's did: the sources are empty.
    let sources = serde_json::to_value(&explained.sources).unwrap_or_default();
    Ok(Json(ExplanationBody {
        allowed: decision.allowed,
        reason: serde_json::to_value(&decision.reason).unwrap_or_default(),
        sources,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Omitted: the caller (for an API key, its owner).
    #[param(value_type = Option<formats::Subject>)]
    pub subject: Option<SubjectParam>,
    /// Return records after this one (the `next` of the previous page).
    #[param(value_type = Option<formats::RecordId>)]
    pub after: Option<RecordId>,
    /// Page size, 1 to 500 (default 100).
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<Limit>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubjectQuery {
    /// Omitted: the caller (for an API key, its owner).
    #[param(value_type = Option<formats::Subject>)]
    pub subject: Option<SubjectParam>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadableRecordsBody {
    /// True when the subject reads every record: filter nothing.
    pub all: bool,
    pub records: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The records of an entity the subject may read, for filtering responses; paginated.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}/readable-records", tag = "access", params(RecordsQuery),
    responses((status = 200, body = ReadableRecordsBody),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)"),
        (status = 404, body = Problem, description = "`entity_not_found`")),
    security(("bearer" = [])))]
pub async fn readable_records(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
) -> Result<Json<ReadableRecordsBody>, ApiError> {
    state.consistent(min).await?;
    let subject = q.subject.map(|s| s.0);
    let limit = Limit::or(q.limit, 100);
    let after = q.after;
    let page = state
        .app
        .access
        .readable_records(&caller, &tenant, subject, &entity, after.as_ref(), limit)
        .await?;
    Ok(Json(ReadableRecordsBody {
        all: page.all,
        records: page.records.into_iter().map(String::from).collect(),
        next: page.next.map(String::from),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VisibleFields {
    /// System fields first, then the entity's fields the subject may see, in entity order.
    pub fields: Vec<String>,
    /// Of `fields`, those the subject may search and filter by (search visibility: a field is
    /// kept from search when every role the subject holds marks it unsearchable or hides it).
    pub searchable: Vec<String>,
}

/// The fields of an entity the subject may see (field-level security), and those it may search
/// and filter by (search visibility).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}/visible-fields", tag = "access", params(SubjectQuery),
    responses((status = 200, body = VisibleFields),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)"),
        (status = 404, body = Problem, description = "`entity_not_found`")),
    security(("bearer" = [])))]
pub async fn visible_fields(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiQuery(q): ApiQuery<SubjectQuery>,
) -> Result<Json<VisibleFields>, ApiError> {
    state.consistent(min).await?;
    let subject = q.subject.map(|s| s.0);
    let seen = state
        .app
        .access
        .field_visibility(&caller, &tenant, subject, &entity)
        .await?;
    Ok(Json(VisibleFields {
        fields: seen.readable,
        searchable: seen.searchable,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntityPermissionsQuery {
    /// The tenant; omitted: the caller's (the tenant of their access token or API key; the
    /// operator token must name it).
    #[param(value_type = Option<formats::TenantId>)]
    pub tenant: Option<TenantId>,
    /// Omitted: the caller (for an API key, its owner).
    #[param(value_type = Option<formats::Subject>)]
    pub subject: Option<SubjectParam>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

/// `{"read":…,"create":…,"update":…,"delete":…}`
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityPermissionsBody {
    pub read: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

/// What the subject may do with an entity, record-independent: the shape clients use to show or
/// hide actions. On an entity with row-level security `read` means "reads every record"; see
/// readable-records for the records it may read.
#[utoipa::path(get, path = "/v1/permissions/entity/{entity}", tag = "access", params(EntityPermissionsQuery),
    responses((status = 200, body = EntityPermissionsBody),
        (status = 400, body = Problem, description = "`subject_required` (the operator token must name the subject), `invalid_query` (the operator token must name the tenant)"),
        (status = 403, body = Problem, description = "`forbidden` (asking about someone else needs permissions:read)"),
        (status = 404, body = Problem, description = "`entity_not_found`")),
    security(("bearer" = [])))]
pub async fn entity_permissions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(entity): ApiPath<EntityName>,
    ApiQuery(q): ApiQuery<EntityPermissionsQuery>,
) -> Result<Json<EntityPermissionsBody>, ApiError> {
    state.consistent(min).await?;
    let tenant = q.tenant;
    let subject = q.subject.map(|s| s.0);
    let p = state
        .app
        .access
        .entity_permissions(&caller, tenant, subject, &entity)
        .await?;
    Ok(Json(EntityPermissionsBody {
        read: p.read,
        create: p.create,
        update: p.update,
        delete: p.delete,
    }))
}

/// A role of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleBody {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub global_access: bool,
    /// owner, admin and user are built in.
    pub built_in: bool,
    #[schema(value_type = Vec<Object>)]
    pub menu: serde_json::Value,
    /// The name people see, when set; `name` stays the identifier permissions, policies and
    /// tokens use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl From<idstream_access::RoleRecord> for RoleBody {
    fn from(r: idstream_access::RoleRecord) -> Self {
        RoleBody {
            name: r.name.to_string(),
            description: r.description,
            permissions: r.permissions.into_iter().map(String::from).collect(),
            global_access: r.global_access,
            built_in: r.built_in,
            menu: serde_json::to_value(&r.menu).unwrap_or_default(),
            label: r.label,
        }
    }
}

/// A resource the tenant defined for its own permissions (`<name>:read|create|update|delete`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceBody {
    #[schema(value_type = formats::ResourceName)]
    pub name: String,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceList {
    pub items: Vec<ResourceBody>,
}

/// The resources a tenant defined for its own permissions, by name (needs `roles:read` or
/// `permissions:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/resources", tag = "permissions",
    responses((status = 200, body = ResourceList),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:read or permissions:read)")),
    security(("bearer" = [])))]
pub async fn list_resources(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<ResourceList>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .access
        .resources(&caller, &tenant)
        .await?
        .into_iter()
        .map(|r| ResourceBody {
            name: r.name.to_string(),
            description: r.description,
        })
        .collect();
    Ok(Json(ResourceList { items }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    pub items: Vec<RoleBody>,
}

/// The roles of a tenant (needs `roles:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/roles", tag = "roles",
    responses((status = 200, body = RoleList),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:read)")),
    security(("bearer" = [])))]
pub async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<RoleList>, ApiError> {
    state.consistent(min).await?;
    Ok(Json(RoleList {
        items: state
            .app
            .access
            .roles(&caller, &tenant)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// One permission of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogueItem {
    #[schema(value_type = formats::Permission)]
    pub permission: String,
    /// `standard`, `admin`, `service`, `custom` (a resource the tenant defined), `entity`,
    /// `role` or `members`.
    pub kind: String,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    pub items: Vec<CatalogueItem>,
}

/// Every permission the tenant knows, with a description, for role and permission matrix
/// editors: the standard, administrative and service resources' CRUD, each registered entity's
/// CRUD, and `role.<role>:assign`/`revoke` for each role (needs `roles:read` or
/// `permissions:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/permissions", tag = "permissions",
    responses((status = 200, body = Catalogue),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:read or permissions:read)")),
    security(("bearer" = [])))]
pub async fn permission_catalogue(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<Catalogue>, ApiError> {
    state.consistent(min).await?;
    let items = state
        .app
        .access
        .permission_catalogue(&caller, &tenant)
        .await?
        .into_iter()
        .map(|entry| CatalogueItem {
            permission: entry.permission.to_string(),
            kind: entry.kind.to_owned(),
            description: entry.description,
        })
        .collect();
    Ok(Json(Catalogue { items }))
}

/// One role of a tenant with its permissions and menu (needs `roles:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles",
    responses((status = 200, body = RoleBody),
        (status = 403, body = Problem, description = "`forbidden` (needs roles:read)"),
        (status = 404, body = Problem, description = "`role_not_found`")),
    security(("bearer" = [])))]
pub async fn get_role(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
) -> Result<Json<RoleBody>, ApiError> {
    state.consistent(min).await?;
    let role = state.app.access.role(&caller, &tenant, &role).await?;
    Ok(Json(role.into()))
}

/// A registered entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityBody {
    pub name: String,
    pub fields: Vec<String>,
    pub rls: bool,
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// Fields hidden from each role.
    #[schema(value_type = Object)]
    pub hidden: serde_json::Value,
    /// Fields each role sees but may not search or filter by.
    #[schema(value_type = Object)]
    pub unsearchable: serde_json::Value,
}

impl From<idstream_access::EntityRecord> for EntityBody {
    fn from(e: idstream_access::EntityRecord) -> Self {
        EntityBody {
            name: e.name.to_string(),
            fields: e.fields.into_iter().map(String::from).collect(),
            rls: e.rls,
            policy: serde_json::to_value(&e.policy).unwrap_or_default(),
            hidden: serde_json::to_value(&e.hidden).unwrap_or_default(),
            unsearchable: serde_json::to_value(&e.unsearchable).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntityList {
    pub items: Vec<EntityBody>,
}

/// The entities of a tenant (needs `entities:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities", tag = "entities",
    responses((status = 200, body = EntityList),
        (status = 403, body = Problem, description = "`forbidden` (needs entities:read)")),
    security(("bearer" = [])))]
pub async fn list_entities(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<EntityList>, ApiError> {
    state.consistent(min).await?;
    Ok(Json(EntityList {
        items: state
            .app
            .access
            .entities(&caller, &tenant)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// One entity (needs `entities:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}", tag = "entities",
    responses((status = 200, body = EntityBody),
        (status = 403, body = Problem, description = "`forbidden` (needs entities:read)"),
        (status = 404, body = Problem, description = "`entity_not_found`")),
    security(("bearer" = [])))]
pub async fn get_entity(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
) -> Result<Json<EntityBody>, ApiError> {
    state.consistent(min).await?;
    Ok(Json(
        state
            .app
            .access
            .entity(&caller, &tenant, &entity)
            .await?
            .into(),
    ))
}

/// A member's effective permissions in a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectivePermissions {
    /// A held role has global access: every permission, past row- and field-level security.
    pub global_access: bool,
    /// The union of the held roles' permissions and the custom ones.
    pub permissions: Vec<String>,
}

/// A user's effective permissions in a tenant (their own, or with `permissions:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/permissions", tag = "access",
    responses((status = 200, body = EffectivePermissions),
        (status = 403, body = Problem, description = "`forbidden` (someone else's needs permissions:read or users:read)")),
    security(("bearer" = [])))]
pub async fn effective_permissions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<EffectivePermissions>, ApiError> {
    state.consistent(min).await?;
    let (global_access, permissions) = state
        .app
        .access
        .effective_permissions(&caller, &tenant, user)
        .await?;
    Ok(Json(EffectivePermissions {
        global_access,
        permissions: permissions.into_iter().map(String::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MenuBody {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<MenuItem>,
}

/// A user's menu: their roles' menus merged by item id, without items they lack the permission
/// for.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/menu", tag = "access",
    responses((status = 200, body = MenuBody),
        (status = 403, body = Problem, description = "`forbidden` (someone else's needs permissions:read or users:read)")),
    security(("bearer" = [])))]
pub async fn menu(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<MenuBody>, ApiError> {
    state.consistent(min).await?;
    let items = state.app.access.menu(&caller, &tenant, user).await?;
    Ok(Json(MenuBody { items }))
}
