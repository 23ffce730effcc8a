//! The check API and the access read side: checks, batch checks, explanations, readable records,
//! visible fields, the entity CRUD summary, roles, entities, effective permissions and menus.
//!
//! Every query accepts a consistency token (`X-Idstream-Min-Position` or `min_position`), so
//! "grant, then check" is never stale. The subject of a check is `user:<id>` or `anonymous`.
//! Asking about another subject than oneself needs `permissions:read` in the tenant (the
//! operator token and platform administrators may ask anything). An API key acts for its owner,
//! so an omitted subject is the owner; a key asking about its owner in its own tenant asks about
//! itself, and checks, batch checks and explanations narrow the answer to the key's restriction.

use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use idstream_app::{CheckQuery, Credential};
use idstream_domain::access::{
    Action, EntityName, MenuItem, Permission, RecordId, Resource, Subject,
};
use idstream_domain::{ActorKind, RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};

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
        .route("/v1/tenants/{tenant}/roles/{role}", get(get_role))
        .route("/v1/tenants/{tenant}/entities", get(list_entities))
        .route("/v1/tenants/{tenant}/entities/{entity}", get(get_entity))
        .route(
            "/v1/tenants/{tenant}/users/{user}/permissions",
            get(effective_permissions),
        )
        .route("/v1/tenants/{tenant}/users/{user}/menu", get(menu))
}

/// `user:<id>` or `anonymous`; absent means the caller (for an API key, its owner).
fn subject(caller: &Caller, text: Option<&str>) -> Result<Subject, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_subject",
            "subject is `user:<user id>` or `anonymous` (it may be omitted when the caller is a user)",
        )
    };
    match text {
        Some("anonymous") => Ok(Subject::Anonymous),
        Some(text) => text
            .strip_prefix("user:")
            .and_then(|id| id.parse::<UserId>().ok())
            .map(Subject::User)
            .ok_or_else(invalid),
        None => match caller.ctx.actor.kind {
            ActorKind::ApiKey => caller.user().map(Subject::User).ok_or_else(invalid),
            ActorKind::User => caller
                .ctx
                .actor
                .id
                .parse::<UserId>()
                .map(Subject::User)
                .map_err(|_| invalid()),
            _ => Err(ApiError::bad_request(
                "subject_required",
                "the caller is not a user: name the subject (`user:<id>` or `anonymous`)",
            )),
        },
    }
}

/// When the caller is an API key asking about its own owner in its own tenant: the key's
/// restriction (`Some(None)` for an unrestricted key). Such a question needs no
/// `permissions:read`, and its answer is what the key itself may do: the owner's decision
/// narrowed to the restriction. None for every other caller or question.
fn own_key<'a>(
    caller: &'a Caller,
    tenant: &TenantId,
    subject: Subject,
) -> Option<Option<&'a BTreeSet<Permission>>> {
    let auth = caller.auth.as_ref()?;
    let Credential::ApiKey { restriction, .. } = &auth.via else {
        return None;
    };
    (subject == Subject::User(auth.user) && &auth.tenant == tenant).then_some(restriction.as_ref())
}

/// Asking about someone else needs `permissions:read` in the tenant.
async fn may_ask(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    subject: Subject,
) -> Result<(), ApiError> {
    let own = matches!(subject, Subject::User(user) if caller.ctx.actor.kind == ActorKind::User
        && caller.ctx.actor.id == user.to_string());
    if own {
        return Ok(());
    }
    let permission = Permission::new(Resource::Named("permissions"), Action::Read)
        .expect("permissions:read is valid");
    state
        .app
        .authorize(&caller.ctx, tenant, &permission)
        .await
        .map_err(ApiError::from)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// `user:<id>` or `anonymous`; omitted: the caller.
    #[schema(example = "user:01J0Z6Y8V3M4Q1W2E3R4T5Y6U7")]
    pub subject: Option<String>,
    /// `resource:action`, e.g. `entity.invoice:read`.
    #[schema(value_type = String, example = "entity.invoice:read")]
    pub permission: Permission,
    /// A record of the permission's entity.
    #[schema(value_type = Option<String>, example = "INV-42")]
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

fn query(caller: &Caller, tenant: TenantId, body: CheckBody) -> Result<CheckQuery, ApiError> {
    let subject = subject(caller, body.subject.as_deref())?;
    if body.record.is_some() && body.permission.entity_name().is_none() {
        return Err(ApiError::bad_request(
            "invalid_check",
            "a record can only be checked with an `entity.<name>:<action>` permission",
        ));
    }
    Ok(CheckQuery {
        tenant,
        subject,
        permission: body.permission,
        record: body.record,
        restriction: None,
    })
}

/// Decide one check: may the subject do `permission` (on `record`) in the tenant?
#[utoipa::path(post, path = "/v1/tenants/{tenant}/access/check", request_body = CheckBody, tag = "access",
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = DecisionBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<DecisionBody>, ApiError> {
    state.consistent(min).await?;
    let mut query = query(&caller, tenant, body)?;
    match own_key(&caller, &query.tenant, query.subject) {
        Some(restriction) => query.restriction = restriction.cloned(),
        None => may_ask(&state, &caller, &query.tenant, query.subject).await?,
    }
    let decision = state.app.check(&query)?;
    Ok(Json(decision.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub subject: Option<String>,
    #[schema(value_type = String, example = "entity.invoice:read")]
    pub permission: Permission,
    /// 1 to 1000 records of the permission's entity.
    #[schema(value_type = Vec<String>)]
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
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = BatchDecisions), (status = 403, body = Problem), (status = 404, body = Problem)),
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
        return Err(ApiError::bad_request(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} records"),
        ));
    }
    let records = body.records;
    let mut query = query(
        &caller,
        tenant,
        CheckBody {
            subject: body.subject,
            permission: body.permission,
            record: records.first().cloned(),
        },
    )?;
    match own_key(&caller, &query.tenant, query.subject) {
        Some(restriction) => query.restriction = restriction.cloned(),
        None => may_ask(&state, &caller, &query.tenant, query.subject).await?,
    }
    let decisions = state.app.check_many(&query, &records)?;
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
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = ExplanationBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<ExplanationBody>, ApiError> {
    state.consistent(min).await?;
    let mut query = query(&caller, tenant, body)?;
    match own_key(&caller, &query.tenant, query.subject) {
        Some(restriction) => query.restriction = restriction.cloned(),
        None => may_ask(&state, &caller, &query.tenant, query.subject).await?,
    }
    let explained = state.app.explain(&query)?;
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
pub struct SubjectQuery {
    /// `user:<id>` or `anonymous`; omitted: the caller.
    pub subject: Option<String>,
    /// Return records after this one (the `next` of the previous page).
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<usize>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
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
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}/readable-records", tag = "access",
    params(("tenant" = String, Path), ("entity" = String, Path), SubjectQuery),
    responses((status = 200, body = ReadableRecordsBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn readable_records(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiQuery(q): ApiQuery<SubjectQuery>,
) -> Result<Json<ReadableRecordsBody>, ApiError> {
    state.consistent(min).await?;
    let subject = subject(&caller, q.subject.as_deref())?;
    may_ask(&state, &caller, &tenant, subject).await?;
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=500).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "limit must be between 1 and 500",
            ));
        }
    };
    let after = q
        .after
        .as_deref()
        .map(str::parse::<RecordId>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let page = state
        .app
        .readable_records(&tenant, subject, &entity, after.as_ref(), limit)?;
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
}

/// The fields of an entity the subject may see (field-level security).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}/visible-fields", tag = "access",
    params(("tenant" = String, Path), ("entity" = String, Path), SubjectQuery),
    responses((status = 200, body = VisibleFields), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn visible_fields(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
    ApiQuery(q): ApiQuery<SubjectQuery>,
) -> Result<Json<VisibleFields>, ApiError> {
    state.consistent(min).await?;
    let subject = subject(&caller, q.subject.as_deref())?;
    may_ask(&state, &caller, &tenant, subject).await?;
    Ok(Json(VisibleFields {
        fields: state.app.visible_fields(&tenant, subject, &entity)?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntityPermissionsQuery {
    /// The tenant; omitted: the caller's (the tenant of their access token or API key).
    pub tenant: Option<String>,
    /// `user:<id>` or `anonymous`; omitted: the caller.
    pub subject: Option<String>,
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
#[utoipa::path(get, path = "/v1/permissions/entity/{entity}", tag = "access",
    params(("entity" = String, Path), EntityPermissionsQuery),
    responses((status = 200, body = EntityPermissionsBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn entity_permissions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(entity): ApiPath<EntityName>,
    ApiQuery(q): ApiQuery<EntityPermissionsQuery>,
) -> Result<Json<EntityPermissionsBody>, ApiError> {
    state.consistent(min).await?;
    let tenant: TenantId = match (&q.tenant, &caller.auth) {
        (Some(text), _) => text.parse().map_err(|e: idstream_domain::IdError| {
            ApiError::bad_request("invalid_query", e.to_string())
        })?,
        (None, Some(auth)) => auth.tenant.clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "tenant is required when the caller has no tenant (the operator token)",
            ));
        }
    };
    let subject = subject(&caller, q.subject.as_deref())?;
    may_ask(&state, &caller, &tenant, subject).await?;
    let p = state.app.entity_permissions(&tenant, subject, &entity)?;
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
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    pub items: Vec<RoleBody>,
}

async fn may_read(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    resource: &'static str,
) -> Result<(), ApiError> {
    let permission =
        Permission::new(Resource::Named(resource), Action::Read).expect("named read is valid");
    state
        .app
        .authorize(&caller.ctx, tenant, &permission)
        .await
        .map_err(ApiError::from)
}

/// The roles of a tenant (needs `roles:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/roles", tag = "roles",
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = RoleList), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<RoleList>, ApiError> {
    state.consistent(min).await?;
    may_read(&state, &caller, &tenant, "roles").await?;
    Ok(Json(RoleList {
        items: state
            .app
            .roles(&tenant)?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// One role of a tenant with its permissions and menu (needs `roles:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/roles/{role}", tag = "roles",
    params(("tenant" = String, Path), ("role" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = RoleBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_role(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
) -> Result<Json<RoleBody>, ApiError> {
    state.consistent(min).await?;
    may_read(&state, &caller, &tenant, "roles").await?;
    match state.app.role(&tenant, &role) {
        Ok(role) => Ok(Json(role.into())),
        Err(idstream_app::AppError::UnknownRole(_)) => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
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
}

impl From<idstream_access::EntityRecord> for EntityBody {
    fn from(e: idstream_access::EntityRecord) -> Self {
        EntityBody {
            name: e.name.to_string(),
            fields: e.fields.into_iter().map(String::from).collect(),
            rls: e.rls,
            policy: serde_json::to_value(&e.policy).unwrap_or_default(),
            hidden: serde_json::to_value(&e.hidden).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntityList {
    pub items: Vec<EntityBody>,
}

/// The entities of a tenant (needs `entities:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities", tag = "entities",
    params(("tenant" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = EntityList), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_entities(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<EntityList>, ApiError> {
    state.consistent(min).await?;
    may_read(&state, &caller, &tenant, "entities").await?;
    Ok(Json(EntityList {
        items: state
            .app
            .entities(&tenant)?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// One entity (needs `entities:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/entities/{entity}", tag = "entities",
    params(("tenant" = String, Path), ("entity" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = EntityBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_entity(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, entity)): ApiPath<(TenantId, EntityName)>,
) -> Result<Json<EntityBody>, ApiError> {
    state.consistent(min).await?;
    may_read(&state, &caller, &tenant, "entities").await?;
    Ok(Json(state.app.entity(&tenant, &entity)?.into()))
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
    params(("tenant" = String, Path), ("user" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = EffectivePermissions), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn effective_permissions(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<EffectivePermissions>, ApiError> {
    state.consistent(min).await?;
    may_ask(&state, &caller, &tenant, Subject::User(user)).await?;
    let (global_access, permissions) = state.app.effective_permissions(&tenant, &user)?;
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
    params(("tenant" = String, Path), ("user" = String, Path), ("X-Idstream-Min-Position" = Option<u64>, Header)),
    responses((status = 200, body = MenuBody), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn menu(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, user)): ApiPath<(TenantId, UserId)>,
) -> Result<Json<MenuBody>, ApiError> {
    state.consistent(min).await?;
    may_ask(&state, &caller, &tenant, Subject::User(user)).await?;
    Ok(Json(MenuBody {
        items: state.app.menu(&tenant, &user)?,
    }))
}
