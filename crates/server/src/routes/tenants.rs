//! Tenants (the `Tenants` service): `/v1/tenants`, `/v1/tenants/{tenant}`,
//! `/v1/tenants/{tenant}/settings`, `/v1/tenants/{tenant}/attributes[/{attribute}]`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use idstream_domain::RoleName;
use idstream_domain::TenantId;
use idstream_domain::attributes::{AttributeDefinition, AttributeType};
use idstream_domain::tenant::{PasswordPolicySettings, TenantSettings};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{CommandAccepted, Page, page_query};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};
use crate::openapi::formats;

page_query!(
    /// A page of tenants, in id order.
    TenantPage,
    TenantId,
    formats::TenantId
);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{tenant}", get(get_tenant).patch(rename_tenant))
        .route(
            "/v1/tenants/{tenant}/settings",
            get(get_settings).put(put_settings),
        )
        .route("/v1/tenants/{tenant}/attributes", get(list_attributes))
        .route(
            "/v1/tenants/{tenant}/attributes/{attribute}",
            put(define_attribute).delete(remove_attribute),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    #[schema(value_type = formats::TenantId)]
    pub id: TenantId,
    #[schema(value_type = formats::TenantName)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTenantBody {
    #[schema(value_type = formats::TenantName)]
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
    responses((status = 201, body = CommandAccepted), (status = 200, body = CommandAccepted, description = "a retry with the same Idempotency-Key: the first result, nothing appended"),
        (status = 403, body = Problem, description = "`platform_admin_only`"),
        (status = 409, body = Problem, description = "`tenant_exists`"),
        (status = 422, body = Problem, description = "`invalid_tenant_name`")),
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
    responses((status = 200, body = CommandAccepted, description = "renamed, or named so already (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 422, body = Problem, description = "`invalid_tenant_name`")),
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
    responses((status = 200, body = Tenant)),
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
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(TenantPage),
    responses((status = 200, body = Page<Tenant>)), security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiQuery(query): ApiQuery<TenantPage>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    state.consistent(min).await?;
    let limit = query.limit();
    let items: Vec<Tenant> = state
        .app
        .tenants
        .list(&caller, query.after.as_ref(), limit)?
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
    /// 8 to 1024, at most `max_length`.
    #[schema(example = 8, minimum = 8, maximum = 1024)]
    pub min_length: u32,
    /// 64 to 1024.
    #[schema(example = 128, minimum = 64, maximum = 1024)]
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
    #[schema(value_type = formats::RoleName)]
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicy,
    /// 1 to 720.
    #[schema(example = 168, minimum = 1, maximum = 720)]
    pub invitation_ttl_hours: u32,
    /// 1 to 43200.
    #[schema(example = 30, minimum = 1, maximum = 43200)]
    pub session_idle_minutes: u32,
    /// 1 to 8760: a session ends this many hours after sign-in, unless remembered.
    #[schema(example = 10, minimum = 1, maximum = 8760)]
    pub session_max_hours: u32,
    /// 1 to 60.
    #[schema(example = 10, minimum = 1, maximum = 60)]
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
    /// 0 to 365 (absent: 30). A sign-in with `remember` starts a session that ends this many days
    /// after sign-in instead of `session_max_hours` (whichever is longer), with the same idle
    /// timeout and refresh rotation. 0 turns remembering off: `remember` is then ignored.
    #[serde(default = "default_remember_days")]
    #[schema(example = 30, minimum = 0, maximum = 365, default = 30)]
    pub remember_days: u32,
    /// Users an administrator creates (rather than invites) must verify their address too:
    /// created waiting for verification and sent a verification link, they sign in once they
    /// have followed it (absent: false).
    #[serde(default)]
    pub verify_created_users: bool,
    /// The address of the tenant's logo, shown at the top of its mails: `https:`, at most 2048
    /// characters (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://cdn.example.com/acme.png", max_length = 2048)]
    pub logo_url: Option<String>,
    /// The colour of the tenant's mails, `#rrggbb` (absent: idstream's blue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "#aa3300", pattern = "^#[0-9A-Fa-f]{6}$")]
    pub brand_colour: Option<String>,
    /// `en` or `fr` (absent: `en`): the language of mails sent on an administrator's behalf
    /// (invitations, verification of created users), and of the others when neither the person
    /// nor their browser names one of these.
    #[serde(default = "default_language")]
    #[schema(example = "en")]
    pub language: String,
    /// The tenant's owners and administrators must sign in with a passkey (a phishing-resistant
    /// factor); a session of theirs begun otherwise may only add a passkey, read `me` and sign
    /// out (absent: false).
    #[serde(default)]
    pub phishing_resistant_admins: bool,
}

fn default_language() -> String {
    TenantSettings::default().language
}

fn default_remember_days() -> u32 {
    TenantSettings::default().remember_days
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
            remember_days: s.remember_days,
            verify_created_users: s.verify_created_users,
            logo_url: s.logo_url,
            brand_colour: s.brand_colour,
            language: s.language,
            phishing_resistant_admins: s.phishing_resistant_admins,
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
            remember_days: s.remember_days,
            verify_created_users: s.verify_created_users,
            logo_url: s.logo_url,
            brand_colour: s.brand_colour,
            language: s.language,
            phishing_resistant_admins: s.phishing_resistant_admins,
        }
    }
}

/// Read a tenant's settings.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/settings", tag = "tenants",
    responses((status = 200, body = Settings),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:read)")),
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
    responses((status = 200, body = CommandAccepted, description = "changed, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update, and role.<default role>:assign to change the default role), `beyond_caller_permissions` (a default role with permissions the caller lacks)"),
        (status = 422, body = Problem, description = "`invalid_settings` (a number out of its range, min_length above max_length, a logo address not `https:`, a colour not `#rrggbb`, a language other than en and fr), `invalid_default_role` (owner), `unknown_role`")),
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

/// An attribute name in a path: refused as `invalid_path` unless it is one.
#[derive(Debug)]
pub struct AttributeName(String);

impl<'de> Deserialize<'de> for AttributeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AttributeName, D::Error> {
        let name = String::deserialize(d)?;
        if idstream_domain::attributes::valid_name(&name) {
            Ok(AttributeName(name))
        } else {
            Err(serde::de::Error::custom(
                "an attribute name is 1 to 40 of a-z, 0-9 and '_', starting with a letter",
            ))
        }
    }
}

/// What values a user attribute takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    /// Text of 1 to 500 characters.
    Text,
    /// A number, integer or decimal (magnitude at most 2^53 - 1).
    Number,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of `options`.
    OneOf,
}

/// A user attribute a tenant defines.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeDefinitionBody {
    /// What people are shown for it (1 to 100 characters).
    #[schema(min_length = 1, max_length = 100, example = "Department")]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: AttributeKind,
    /// The values a `one_of` attribute takes (1 to 100 distinct texts of 1 to 500 characters);
    /// none for the other types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100)]
    pub options: Vec<String>,
    /// Users are created with a value (by `POST /v1/tenants/{tenant}/users`, bulk creation and
    /// imports), and a value cannot be cleared (absent: false).
    #[serde(default)]
    pub required: bool,
    /// The user may set it themselves; otherwise only administrators with `users:update` may
    /// (absent: false).
    #[serde(default)]
    pub user_editable: bool,
    /// Administrators may filter the directory by it: `attribute=<name>:<value>` (absent:
    /// false).
    #[serde(default)]
    pub searchable: bool,
}

impl From<AttributeDefinitionBody> for AttributeDefinition {
    fn from(b: AttributeDefinitionBody) -> AttributeDefinition {
        AttributeDefinition {
            label: b.label,
            kind: match b.kind {
                AttributeKind::Text => AttributeType::Text,
                AttributeKind::Number => AttributeType::Number,
                AttributeKind::Boolean => AttributeType::Boolean,
                AttributeKind::Date => AttributeType::Date,
                AttributeKind::OneOf => AttributeType::OneOf,
            },
            options: b.options,
            required: b.required,
            user_editable: b.user_editable,
            searchable: b.searchable,
        }
    }
}

/// One attribute of the tenant's list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attribute {
    #[schema(value_type = formats::AttributeName)]
    pub name: String,
    #[serde(flatten)]
    pub definition: AttributeDefinitionBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeList {
    /// By name.
    pub attributes: Vec<Attribute>,
}

fn definition_body(d: AttributeDefinition) -> AttributeDefinitionBody {
    AttributeDefinitionBody {
        label: d.label,
        kind: match d.kind {
            AttributeType::Text => AttributeKind::Text,
            AttributeType::Number => AttributeKind::Number,
            AttributeType::Boolean => AttributeKind::Boolean,
            AttributeType::Date => AttributeKind::Date,
            AttributeType::OneOf => AttributeKind::OneOf,
        },
        options: d.options,
        required: d.required,
        user_editable: d.user_editable,
        searchable: d.searchable,
    }
}

/// The user attributes the tenant defines (for forms: what a member may fill in, and of what
/// type).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/attributes", tag = "tenants",
    responses((status = 200, body = AttributeList),
        (status = 404, body = Problem, description = "`tenant_not_found` (also when the caller has no standing in it)")),
    security(("bearer" = [])))]
pub async fn list_attributes(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
) -> Result<Json<AttributeList>, ApiError> {
    state.consistent(min).await?;
    let attributes = state.app.tenants.attributes(&caller, &tenant).await?;
    Ok(Json(AttributeList {
        attributes: attributes
            .into_iter()
            .map(|(name, d)| Attribute {
                name,
                definition: definition_body(d),
            })
            .collect(),
    }))
}

/// Define a user attribute of the tenant's own (`department`, `employee_no`, …), or replace its
/// definition. Values its members hold stay; those that do not fit a changed definition are no
/// longer shown (and show again if it changes back).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/attributes/{attribute}", request_body = AttributeDefinitionBody, tag = "tenants",
    responses((status = 200, body = CommandAccepted, description = "defined, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 422, body = Problem, description = "`invalid_attribute_definition` (a label of 1 to 100 characters; options for one_of only, 1 to 100 distinct; at most 50 attributes per tenant)")),
    security(("bearer" = [])))]
pub async fn define_attribute(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, attribute)): ApiPath<(TenantId, AttributeName)>,
    ApiJson(body): ApiJson<AttributeDefinitionBody>,
) -> Result<CommandAccepted, ApiError> {
    if body.label.chars().count() > 100 {
        return Err(ApiError::invalid_body(
            "body field `label`",
            "at most 100 characters",
        ));
    }
    if body.options.len() > 100 {
        return Err(ApiError::invalid_body(
            "body field `options`",
            "at most 100 items",
        ));
    }
    let outcome = state
        .timed(
            "define_attribute",
            state
                .app
                .tenants
                .define_attribute(&caller, tenant, attribute.0, body.into()),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

/// Remove a user attribute: its values are no longer shown or searched anywhere. They stay in
/// the log (erasure still removes them), and show again if the attribute is defined again with
/// a type they fit.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/attributes/{attribute}", tag = "tenants",
    responses((status = 200, body = CommandAccepted),
        (status = 403, body = Problem, description = "`forbidden` (needs settings:update)"),
        (status = 404, body = Problem, description = "`attribute_not_found`")),
    security(("bearer" = [])))]
pub async fn remove_attribute(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, attribute)): ApiPath<(TenantId, AttributeName)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "remove_attribute",
            state
                .app
                .tenants
                .remove_attribute(&caller, tenant, attribute.0),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}
