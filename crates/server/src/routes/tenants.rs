//! Tenants (the `Tenants` service): `/v1/tenants`, `/v1/tenants/{tenant}`,
//! `/v1/tenants/{tenant}/settings`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use idstream_domain::RoleName;
use idstream_domain::TenantId;
use idstream_domain::tenant::{PasswordPolicySettings, TenantSettings};
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
        .route(
            "/v1/tenants/{tenant}/settings",
            get(get_settings).put(put_settings),
        )
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
            state.app.tenants.create(&caller, body.id, body.name),
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
            state.app.tenants.rename(&caller, tenant, body.name),
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
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<Tenant>, ApiError> {
    state.consistent(min).await?;
    Ok(Json(state.app.tenants.get(&caller, &tenant).await?.into()))
}

/// The caller's tenants (every tenant for platform administrators), ordered by id.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>)), security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
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
        .tenants
        .list(&caller, after.as_ref(), limit)?
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

// ----- settings -----

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
    let settings = state.app.tenants.settings(&caller, &tenant).await?;
    Ok(Json(settings.into()))
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
                .tenants
                .change_settings(&caller, tenant, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
