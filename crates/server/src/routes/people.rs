//! The user directory (the `People` service): searching a tenant's members
//! (`GET /v1/tenants/{tenant}/users`), autocomplete for pickers, a role's members and changing them
//! in bulk, the platform directory (`GET /v1/users`) and one person's access
//! (`GET /v1/users/{user}/access`).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use idstream_app::identity::InvitationRequest;
use idstream_app::{
    BulkOperation, BulkOutcome, NewUserRequest, PeoplePage, PeopleQuery, PersonRow, RowPlan,
    SuspendRequest,
};
use idstream_directory::UserStatus;
use idstream_directory::search::{Sort, SortColumn};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::{Limit, results_answer, rfc3339};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition, parse_query};
use crate::openapi::formats;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/users", get(search_users))
        .route(
            "/v1/tenants/{tenant}/users/autocomplete",
            get(autocomplete_users),
        )
        .route(
            "/v1/tenants/{tenant}/roles/{role}/members",
            get(role_members).post(change_role_members),
        )
        .route("/v1/tenants/{tenant}/users/bulk", post(bulk_users))
        .route("/v1/tenants/{tenant}/users/import", post(import_users))
        .route("/v1/users", get(search_everyone))
        .route("/v1/users/{user}/access", get(person_access))
}

/// The default page size of a listing.
const DEFAULT_ROWS: usize = 50;

/// The query of a tenant's listing. `role` and `status` may be repeated, or list several values
/// separated by commas; a user matches any of them.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Text found anywhere in the email, first name, last name or full name, ignoring case,
    /// accents and character width (`jose` finds `José`), or a user's exact id.
    #[param(value_type = Option<formats::SearchText>)]
    pub q: Option<String>,
    /// Holds any of these roles.
    #[param(value_type = Option<Vec<formats::RoleName>>, style = Form, explode = true)]
    pub role: Option<String>,
    /// Has any of these statuses, as in effect now: `invited`, `active`, `suspended`,
    /// `inactive`, `erased`.
    #[param(value_type = Option<Vec<StatusName>>, style = Form, explode = true)]
    pub status: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_to: Option<String>,
    /// Last signed in at or after (RFC 3339); users who never signed in do not match.
    #[param(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_from: Option<String>,
    /// Last signed in before (RFC 3339); users who never signed in do not match.
    #[param(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_to: Option<String>,
    /// Whether the email address is verified.
    pub verified: Option<bool>,
    /// `<name>:<value>`: holds this value of a searchable attribute of the tenant (text and
    /// options without regard to case; numbers, `true`/`false` and dates as written). May be
    /// repeated: every one must hold.
    #[param(value_type = Option<Vec<formats::AttributeFilter>>, style = Form, explode = true)]
    pub attribute: Option<String>,
    /// `<column>` or `<column>:asc` / `<column>:desc`, the column one of `email` (default),
    /// `first_name`, `last_name`, `created_at`, `last_sign_in` (never signed in sorts first
    /// ascending) and `status` (invited, active, suspended, inactive, erased). Ties are broken
    /// by user id in the same direction.
    #[param(
        pattern = "^(email|first_name|last_name|created_at|last_sign_in|status)(:(asc|desc))?$"
    )]
    pub sort: Option<String>,
    /// The `next` of the previous page (of the same sort).
    #[param(value_type = Option<formats::DirectoryCursor>)]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<Limit>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

/// The query of a role's members: a tenant's listing without `role`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// As for `GET /v1/tenants/{tenant}/users`.
    #[param(value_type = Option<formats::SearchText>)]
    pub q: Option<String>,
    #[param(value_type = Option<Vec<StatusName>>, style = Form, explode = true)]
    pub status: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_from: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_to: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_from: Option<String>,
    #[param(value_type = Option<String>, format = DateTime)]
    pub last_sign_in_to: Option<String>,
    pub verified: Option<bool>,
    #[param(value_type = Option<Vec<formats::AttributeFilter>>, style = Form, explode = true)]
    pub attribute: Option<String>,
    #[param(
        pattern = "^(email|first_name|last_name|created_at|last_sign_in|status)(:(asc|desc))?$"
    )]
    pub sort: Option<String>,
    #[param(value_type = Option<formats::DirectoryCursor>)]
    pub cursor: Option<String>,
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<Limit>,
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

impl From<MembersQuery> for SearchQuery {
    fn from(q: MembersQuery) -> SearchQuery {
        SearchQuery {
            q: q.q,
            role: None,
            status: q.status,
            created_from: q.created_from,
            created_to: q.created_to,
            last_sign_in_from: q.last_sign_in_from,
            last_sign_in_to: q.last_sign_in_to,
            verified: q.verified,
            attribute: q.attribute,
            sort: q.sort,
            cursor: q.cursor,
            limit: q.limit,
            min_position: q.min_position,
        }
    }
}

/// A user's status, as a filter takes it.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusName {
    Invited,
    Active,
    Suspended,
    Inactive,
    Erased,
}

/// The repeated parameters of a listing: their values joined with commas, as one (attribute
/// values, which may hold commas, with [`ATTRIBUTE_SEPARATOR`]).
const LISTS: [&str; 3] = ["role", "status", "attribute"];

/// Joins repeated `attribute` values: a control character, which no attribute value holds.
pub const ATTRIBUTE_SEPARATOR: char = '\u{1f}';

/// Reads a listing's query string, where `role` and `status` may be repeated.
fn listing_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut joined: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match joined.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) if LISTS.contains(&name.as_ref()) => {
                values.push(if name == "attribute" {
                    ATTRIBUTE_SEPARATOR
                } else {
                    ','
                });
                values.push_str(&value);
            }
            _ => joined.push((name.into_owned(), value.into_owned())),
        }
    }
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(joined)
        .finish();
    parse_query(&text)
}

/// The query string of a request, for [`listing_query`].
pub struct RawQuery(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        Ok(RawQuery(parts.uri.query().unwrap_or_default().to_owned()))
    }
}

fn list<T>(
    name: &str,
    text: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .map(|value| {
            parse(value).ok_or_else(|| {
                ApiError::invalid_query(format!(
                    "query parameter `{name}`: `{value}` is not one of its values"
                ))
            })
        })
        .collect()
}

/// Search text: at most 200 characters, none of them control characters or bidirectional
/// controls (the `SearchText` format).
fn check_text(text: &str) -> Result<(), ApiError> {
    if text.chars().count() > 200 {
        return Err(ApiError::invalid_query(
            "query parameter `q`: at most 200 characters",
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() || idstream_domain::text::is_bidi_control(c))
    {
        return Err(ApiError::invalid_query(
            "query parameter `q`: no control characters or bidirectional controls",
        ));
    }
    Ok(())
}

fn status_of(name: &str) -> Option<UserStatus> {
    Some(match name {
        "invited" => UserStatus::Invited,
        "active" => UserStatus::Active,
        "suspended" => UserStatus::Suspended,
        "inactive" => UserStatus::Inactive,
        "erased" => UserStatus::Erased,
        _ => return None,
    })
}

pub(crate) fn status_name(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Invited => "invited",
        UserStatus::Active => "active",
        UserStatus::Suspended => "suspended",
        UserStatus::Inactive => "inactive",
        UserStatus::Erased => "erased",
    }
}

fn time(name: &str, text: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(|_| {
            ApiError::invalid_query(format!(
                "query parameter `{name}`: an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"
            ))
        })
    })
    .transpose()
}

/// `<column>[:asc|:desc]`.
pub(crate) fn sort_of(text: Option<&str>) -> Result<Sort, ApiError> {
    let Some(text) = text else {
        return Ok(Sort::default());
    };
    let (column, direction) = text.split_once(':').unwrap_or((text, "asc"));
    let descending = match direction {
        "asc" => false,
        "desc" => true,
        _ => None.ok_or_else(|| {
            ApiError::invalid_query("query parameter `sort`: the direction is `asc` or `desc`")
        })?,
    };
    let column = SortColumn::parse(column).ok_or_else(|| {
        ApiError::invalid_query(
            "query parameter `sort`: one of email, first_name, last_name, created_at, last_sign_in, status",
        )
    })?;
    Ok(Sort { column, descending })
}

/// `attribute=<name>:<value>` filters, each checked for form (the application checks them
/// against the tenant's attributes).
fn attribute_filters(text: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(ATTRIBUTE_SEPARATOR)
        .map(|filter| {
            let (name, value) = filter.split_once(':').ok_or_else(|| {
                ApiError::invalid_query("query parameter `attribute`: `<name>:<value>`")
            })?;
            if !idstream_domain::attributes::valid_name(name) || value.chars().count() > 500 {
                return Err(ApiError::invalid_query(
                    "query parameter `attribute`: `<name>:<value>`, the name 1 to 40 of a-z, 0-9 and _, the value at most 500 characters",
                ));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

impl SearchQuery {
    /// The application's query, every parameter checked.
    pub fn to_query(&self) -> Result<PeopleQuery, ApiError> {
        if let Some(q) = &self.q {
            check_text(q)?;
        }
        Ok(PeopleQuery {
            text: self.q.clone(),
            roles: list("role", self.role.as_deref(), |r| r.parse::<RoleName>().ok())?,
            statuses: list("status", self.status.as_deref(), status_of)?,
            created_from: time("created_from", self.created_from.as_deref())?,
            created_to: time("created_to", self.created_to.as_deref())?,
            last_sign_in_from: time("last_sign_in_from", self.last_sign_in_from.as_deref())?,
            last_sign_in_to: time("last_sign_in_to", self.last_sign_in_to.as_deref())?,
            verified: self.verified,
            attributes: attribute_filters(self.attribute.as_deref())?,
            sort: sort_of(self.sort.as_deref())?,
            cursor: self.cursor.clone(),
            limit: Limit::or(self.limit, DEFAULT_ROWS),
        })
    }
}

/// One user in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryRow {
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
    /// `invited`, `active`, `suspended`, `inactive` or `erased`, as in effect now.
    pub status: String,
    /// The user's roles in the tenant listed (absent from the platform directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The user's tenants the caller may see: those where it holds `users:read` (all of them,
    /// for platform administrators).
    pub tenants: Vec<String>,
    pub created_at: String,
    /// When the user last signed in; `null` if never.
    pub last_sign_in: Option<String>,
    /// Whether the user proved they receive mail at `email`.
    pub email_verified: bool,
    /// Whether sign-in asks for a second factor.
    pub two_factor: bool,
    /// The user's values of the attributes the tenant listed defines (absent from the platform
    /// directory, and when the user has none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// A page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryPage {
    pub items: Vec<DirectoryRow>,
    /// The `cursor` of the next page (absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How many users match: exact when `total_exact`, else a lower bound (past 50,000
    /// candidates checked one by one, counting stops).
    pub total: u64,
    pub total_exact: bool,
}

fn row(person: PersonRow, tenant_listing: bool) -> DirectoryRow {
    let user = person.user;
    DirectoryRow {
        id: user.id.to_string(),
        email: user.email,
        first_name: user.first_name,
        last_name: user.last_name,
        image_url: user.image_url,
        phone: user.phone,
        status: status_name(person.status).to_owned(),
        roles: tenant_listing.then(|| person.roles.into_iter().map(String::from).collect()),
        tenants: person.tenants.iter().map(ToString::to_string).collect(),
        created_at: rfc3339(user.created_at),
        last_sign_in: user.last_sign_in.map(rfc3339),
        email_verified: user.email_verified,
        two_factor: user.two_factor,
        attributes: person.attributes,
    }
}

/// The API shape of a page: rows with `roles` for a tenant's listing, without for the platform
/// directory.
pub fn directory_page(page: PeoplePage, tenant_listing: bool) -> DirectoryPage {
    DirectoryPage {
        items: page
            .rows
            .into_iter()
            .map(|p| row(p, tenant_listing))
            .collect(),
        next: page.next,
        total: page.total,
        total_exact: page.total_exact,
    }
}

/// Search and list a tenant's members (needs `users:read`): by text (email, names, id; case-,
/// accent- and width-insensitive), roles, statuses, creation and last sign-in times and
/// verification, sorted by any column, a page at a time. Rows added while a client pages
/// through are neither skipped nor repeated (the cursor is the last row's sort key and id).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "users", params(SearchQuery),
    responses((status = 200, body = DirectoryPage),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read)")),
    security(("bearer" = [])))]
pub async fn search_users(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DirectoryPage>, ApiError> {
    let query: SearchQuery = listing_query(&raw)?;
    state.consistent(min).await?;
    let people = query.to_query()?;
    let found = state.app.people.search(&caller, &tenant, &people).await?;
    Ok(Json(directory_page(found, true)))
}

/// The members of a tenant who hold a role (needs `users:read`), searchable and sorted like
/// `GET /v1/tenants/{tenant}/users`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/roles/{role}/members", tag = "roles", params(MembersQuery),
    responses((status = 200, body = DirectoryPage),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read)"),
        (status = 404, body = Problem, description = "`role_not_found`")),
    security(("bearer" = [])))]
pub async fn role_members(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DirectoryPage>, ApiError> {
    let query: SearchQuery = listing_query::<MembersQuery>(&raw)?.into();
    state.consistent(min).await?;
    let people = query.to_query()?;
    let found = state
        .app
        .people
        .role_members(&caller, &tenant, &role, &people)
        .await?;
    Ok(Json(directory_page(found, true)))
}

/// The query of the platform directory: a tenant's listing without `role`.
pub type EveryoneQuery = MembersQuery;

/// Every user of every tenant (platform administrators only), each with their tenants;
/// searchable and sorted like `GET /v1/tenants/{tenant}/users`.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(EveryoneQuery),
    responses((status = 200, body = DirectoryPage),
        (status = 403, body = Problem, description = "`platform_admin_only`")),
    security(("bearer" = [])))]
pub async fn search_everyone(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    RawQuery(raw): RawQuery,
) -> Result<Json<DirectoryPage>, ApiError> {
    let query: SearchQuery = listing_query::<EveryoneQuery>(&raw)?.into();
    state.consistent(min).await?;
    let people = query.to_query()?;
    let found = state.app.people.search_everyone(&caller, &people).await?;
    Ok(Json(directory_page(found, false)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AutocompleteQuery {
    /// What was typed so far.
    #[param(value_type = formats::SearchText)]
    pub q: String,
    /// How many suggestions, 1 to 500 (default 10).
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<Limit>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub id: String,
    /// `First Last <email>` (or the email alone for a user without a name).
    pub label: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
}

/// Suggestions for a user picker (needs `users:read`): the members of the tenant whose email or
/// name has a word starting with `q` first, then those containing it elsewhere; each group in
/// name order.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/autocomplete", tag = "users", params(AutocompleteQuery),
    responses((status = 200, body = Suggestions),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read)")),
    security(("bearer" = [])))]
pub async fn autocomplete_users(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiQuery(query): ApiQuery<AutocompleteQuery>,
) -> Result<Json<Suggestions>, ApiError> {
    state.consistent(min).await?;
    check_text(&query.q)?;
    let limit = Limit::or(query.limit, 10);
    let items = state
        .app
        .people
        .autocomplete(&caller, &tenant, &query.q, limit)
        .await?
        .into_iter()
        .map(|s| Suggestion {
            id: s.id.to_string(),
            label: s.label,
        })
        .collect();
    Ok(Json(Suggestions { items }))
}

/// Users to give a role to and to take it from, at most 500 in all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMembersBody {
    #[serde(default)]
    #[schema(value_type = Vec<formats::UserId>)]
    pub add: Vec<UserId>,
    #[serde(default)]
    #[schema(value_type = Vec<formats::UserId>)]
    pub remove: Vec<UserId>,
    /// RFC 3339 end for the users added: they hold the role until then (temporary access).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
}

/// What happened to one user of a bulk change.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberChange {
    pub user: String,
    /// `add` or `remove`.
    pub change: String,
    /// `added`, `removed`, `unchanged` (held already, or not held), or `refused`.
    pub result: String,
    /// The log position of the change, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Why it was refused: the problem a single assignment or revocation would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberChanges {
    /// The log position of the last change made (the consistency token); 0 if none was.
    pub position: u64,
    pub results: Vec<MemberChange>,
}

/// Give a role to several users and take it from others in one request, with one result per
/// user. Each change follows the rules of a single one (the owner rule, the last administrator,
/// nobody gives a permission they do not hold); a user who already holds the role (or does not)
/// is left unchanged. The whole request is refused, changing nothing, when the caller may not
/// give (or take) the role at all. With an `Idempotency-Key`, a retry changes nothing more.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/roles/{role}/members", request_body = RoleMembersBody, tag = "roles",
    responses((status = 200, body = MemberChanges),
        (status = 400, body = Problem, description = "`invalid_query` (more than 500 users, or one both added and removed)"),
        (status = 403, body = Problem, description = "`forbidden` (needs role.<role>:assign to add, role.<role>:revoke to remove), `owner_only`, `beyond_caller_permissions`"),
        (status = 404, body = Problem, description = "`role_not_found`"),
        (status = 422, body = Problem, description = "`unknown_role`")),
    security(("bearer" = [])))]
pub async fn change_role_members(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, role)): ApiPath<(TenantId, RoleName)>,
    ApiJson(body): ApiJson<RoleMembersBody>,
) -> Result<Response, ApiError> {
    let results = state
        .timed(
            "change_role_members",
            state.app.people.change_role_members(
                &caller,
                &tenant,
                &role,
                &body.add,
                &body.remove,
                body.expires_at,
            ),
        )
        .await?;
    let mut last = 0;
    let results: Vec<MemberChange> = results
        .into_iter()
        .map(|r| {
            let change = if r.add { "add" } else { "remove" };
            let (result, position, problem) = match r.outcome {
                Ok(Some(outcome)) => {
                    last = last.max(outcome.position);
                    let done = if r.add { "added" } else { "removed" };
                    (done, Some(outcome.position), None)
                }
                Ok(None) => ("unchanged", None, None),
                Err(error) => ("refused", None, Some(ApiError::from(error).problem())),
            };
            MemberChange {
                user: r.user.to_string(),
                change: change.into(),
                result: result.into(),
                position,
                problem,
            }
        })
        .collect();
    let body = MemberChanges {
        position: last,
        results,
    };
    Ok(results_answer(body, last, false))
}

/// A link to the detail of one part of a person's access.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLinks {
    /// The roles (`GET /v1/tenants/{tenant}/users/{user}/roles`).
    pub roles: String,
    /// Every effective permission (`GET /v1/tenants/{tenant}/users/{user}/permissions`).
    pub permissions: String,
    /// Each holding with the event that gave it, record grants and local roles included
    /// (`GET /v1/audit/access-review?tenant=…&user=…`, for `audit:read` holders).
    pub access_review: String,
}

/// Record grants, local roles and owned records on one entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityCounts {
    pub entity: String,
    pub record_grants: u64,
    pub local_roles: u64,
    pub owned_records: u64,
}

/// What a person holds in one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantAccess {
    pub tenant: String,
    pub roles: Vec<String>,
    pub custom_permissions: Vec<String>,
    /// Records on which a direct grant is held.
    pub record_grants: u64,
    /// Local roles held on records.
    pub local_roles: u64,
    pub owned_records: u64,
    /// The same counts per entity (entities with none are left out).
    pub entities: Vec<EntityCounts>,
    pub links: AccessLinks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonAccess {
    pub user: String,
    /// Every tenant of the user the caller may see.
    pub tenants: Vec<TenantAccess>,
}

/// One person's access across tenants: in every tenant of theirs the caller may see (all for
/// platform administrators and the user themselves; else those where the caller holds
/// `users:read`), their roles, custom permissions, and counts of record grants, local roles and
/// owned records, with links to the detail.
#[utoipa::path(get, path = "/v1/users/{user}/access", tag = "users",
    responses((status = 200, body = PersonAccess),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read in a tenant of the user)")),
    security(("bearer" = [])))]
pub async fn person_access(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<PersonAccess>, ApiError> {
    state.consistent(min).await?;
    let tenants = state
        .app
        .people
        .access(&caller, user)
        .await?
        .into_iter()
        .map(|t| {
            let base = format!("/v1/tenants/{}/users/{user}", t.tenant);
            TenantAccess {
                links: AccessLinks {
                    roles: format!("{base}/roles"),
                    permissions: format!("{base}/permissions"),
                    access_review: format!(
                        "/v1/audit/access-review?tenant={}&user={user}",
                        t.tenant
                    ),
                },
                tenant: t.tenant.to_string(),
                roles: t.roles.into_iter().map(String::from).collect(),
                custom_permissions: t
                    .custom_permissions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                record_grants: t.holdings.record_grants,
                local_roles: t.holdings.local_roles,
                owned_records: t.holdings.owned_records,
                entities: t
                    .holdings
                    .entities
                    .into_iter()
                    .map(|e| EntityCounts {
                        entity: e.entity.to_string(),
                        record_grants: e.record_grants,
                        local_roles: e.local_roles,
                        owned_records: e.owned_records,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(PersonAccess {
        user: user.to_string(),
        tenants,
    }))
}

/// One operation of a bulk request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BulkOperationBody {
    /// Create a user with roles here (as `POST /v1/tenants/{tenant}/users`).
    Create {
        #[schema(value_type = formats::Email)]
        email: String,
        #[serde(default)]
        #[schema(value_type = formats::PersonName)]
        first_name: String,
        #[serde(default)]
        #[schema(value_type = formats::PersonName)]
        last_name: String,
        #[serde(default)]
        #[schema(value_type = Vec<formats::RoleName>)]
        roles: Vec<RoleName>,
        /// Created as invited instead of active (no email).
        #[serde(default)]
        invite: bool,
        /// A phone number in international form.
        #[serde(default)]
        #[schema(max_length = 32)]
        phone: Option<String>,
        /// Attribute values in this tenant; every required attribute must be given.
        #[serde(default)]
        #[schema(value_type = Object)]
        attributes: BTreeMap<String, serde_json::Value>,
    },
    /// Invite someone (as `POST /v1/tenants/{tenant}/invitations`).
    Invite {
        #[schema(value_type = formats::Email)]
        email: String,
        #[serde(default)]
        #[schema(value_type = formats::PersonName)]
        first_name: String,
        #[serde(default)]
        #[schema(value_type = formats::PersonName)]
        last_name: String,
        #[serde(default)]
        #[schema(value_type = Vec<formats::RoleName>)]
        roles: Vec<RoleName>,
        #[serde(default)]
        delivery: super::identity::invitations::DeliveryName,
    },
    /// Give a member a role, for good or until `expires_at`.
    AssignRole {
        #[schema(value_type = formats::UserId)]
        user: UserId,
        #[schema(value_type = formats::RoleName)]
        role: RoleName,
        /// RFC 3339 end of temporary access (absent: for good).
        #[serde(default, with = "time::serde::rfc3339::option")]
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<time::OffsetDateTime>,
    },
    /// Take a role from a member.
    RevokeRole {
        #[schema(value_type = formats::UserId)]
        user: UserId,
        #[schema(value_type = formats::RoleName)]
        role: RoleName,
    },
    /// Suspend a member (until a time, or until reinstated).
    Suspend {
        #[schema(value_type = formats::UserId)]
        user: UserId,
        #[serde(default, with = "time::serde::rfc3339::option")]
        #[schema(value_type = Option<String>, format = DateTime)]
        until: Option<OffsetDateTime>,
        #[schema(value_type = Option<formats::SuspensionReason>)]
        reason: Option<String>,
    },
    Reinstate {
        #[schema(value_type = formats::UserId)]
        user: UserId,
    },
    Deactivate {
        #[schema(value_type = formats::UserId)]
        user: UserId,
    },
    /// Set a member's attribute values (as `PATCH /v1/tenants/{tenant}/users/{user}/attributes`:
    /// `null` clears one).
    SetAttributes {
        #[schema(value_type = formats::UserId)]
        user: UserId,
        #[schema(value_type = Object)]
        attributes: BTreeMap<String, serde_json::Value>,
    },
}

impl From<BulkOperationBody> for BulkOperation {
    fn from(body: BulkOperationBody) -> BulkOperation {
        match body {
            BulkOperationBody::Create {
                email,
                first_name,
                last_name,
                roles,
                invite,
                phone,
                attributes,
            } => BulkOperation::Create(NewUserRequest {
                email,
                first_name,
                last_name,
                roles,
                invite,
                phone,
                attributes: Some(super::users::null_clears(attributes)),
            }),
            BulkOperationBody::Invite {
                email,
                first_name,
                last_name,
                roles,
                delivery,
            } => BulkOperation::Invite(InvitationRequest {
                email,
                first_name,
                last_name,
                roles,
                delivery: delivery.into(),
            }),
            BulkOperationBody::AssignRole {
                user,
                role,
                expires_at,
            } => BulkOperation::AssignRole {
                user,
                role,
                expires_at,
            },
            BulkOperationBody::RevokeRole { user, role } => {
                BulkOperation::RevokeRole { user, role }
            }
            BulkOperationBody::Suspend {
                user,
                until,
                reason,
            } => BulkOperation::Suspend {
                user,
                request: SuspendRequest { until, reason },
            },
            BulkOperationBody::Reinstate { user } => BulkOperation::Reinstate { user },
            BulkOperationBody::Deactivate { user } => BulkOperation::Deactivate { user },
            BulkOperationBody::SetAttributes { user, attributes } => BulkOperation::SetAttributes {
                user,
                attributes: super::users::null_clears(attributes),
            },
        }
    }
}

/// Up to 1,000 operations.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    #[schema(max_items = 1000, example = json!([
        {"op": "create", "email": "ada@example.com", "first_name": "Ada", "roles": ["user"]},
        {"op": "suspend", "user": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "reason": "left the project"}
    ]))]
    pub operations: Vec<BulkOperationBody>,
}

/// What one operation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResultBody {
    /// The operation's index in the request.
    pub index: usize,
    /// `done`, `unchanged` (in place already) or `refused`.
    pub result: String,
    /// What it created or changed (a user, an invitation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// An invitation by link: its acceptance link, given this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Why it was refused: the problem the single operation would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResults {
    /// The log position of the last change made (the consistency token); 0 if none was.
    pub position: u64,
    pub results: Vec<BulkResultBody>,
}

/// Carry out up to 1,000 user operations in a tenant (create, invite, assign or revoke a role,
/// suspend, reinstate, deactivate, set attribute values), one after the other, each authorized and decided on its own
/// as the single operation is, with a result per operation. Needs `users:update` to send a batch
/// at all. With an `Idempotency-Key`, a retry of the whole request repeats nothing.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/bulk", request_body = BulkBody, tag = "users",
    responses((status = 200, body = BulkResults),
        (status = 400, body = Problem, description = "`invalid_query` (more than 1,000 operations)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update)")),
    security(("bearer" = [])))]
pub async fn bulk_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Response, ApiError> {
    let operations = body.operations.into_iter().map(Into::into).collect();
    let outcomes = state
        .timed(
            "bulk_users",
            state.app.people.bulk(&caller, &tenant, operations),
        )
        .await?;
    let mut last = 0;
    let mut secret = false;
    let results = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| bulk_result(index, outcome, &mut last, &mut secret))
        .collect();
    let body = BulkResults {
        position: last,
        results,
    };
    Ok(results_answer(body, last, secret))
}

/// The API shape of one bulk outcome; `last` and `secret` gather the answer's position and
/// whether it holds a link.
fn bulk_result(
    index: usize,
    outcome: BulkOutcome,
    last: &mut u64,
    secret: &mut bool,
) -> BulkResultBody {
    let (result, id, position, link, problem) = match outcome {
        BulkOutcome::Done { id, position, link } => {
            *last = (*last).max(position);
            *secret |= link.is_some();
            ("done", Some(id), Some(position), link, None)
        }
        BulkOutcome::Unchanged => ("unchanged", None, None, None, None),
        BulkOutcome::Refused(error) => (
            "refused",
            None,
            None,
            None,
            Some(ApiError::from(error).problem()),
        ),
    };
    BulkResultBody {
        index,
        result: result.into(),
        id,
        position,
        link,
        problem,
    }
}

/// A CSV file to import, and whether only to plan it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The CSV text: a header row naming the columns (`email` required; `first_name`,
    /// `last_name`, `roles` separated by `;` or `|`), then at most 1,000 rows; at most 60,000
    /// characters (a request body is at most 64 KiB).
    #[schema(
        max_length = 60000,
        example = "email,first_name,last_name,roles\nada@example.com,Ada,Lovelace,user;admin\n"
    )]
    pub csv: String,
    /// Plan only: answer what each row would do and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What one row does (a dry run) or did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRowBody {
    /// The row's number in the file (the header is row 1).
    pub row: usize,
    pub email: String,
    /// `create`, `assign_roles`, `update` (an existing user gets the roles they lack, perhaps
    /// none, and the row's attribute values), `unchanged` or `invalid`.
    pub action: String,
    /// The user, when the address belongs to one already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The roles created with or given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The attribute values the row sets (`null`: clears), from its `attributes` cell.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Why the row is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// Carried out (not a dry run): the result of each operation of the row.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<BulkResultBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    pub dry_run: bool,
    /// The log position of the last change (the consistency token); 0 if none.
    pub position: u64,
    pub rows: Vec<ImportRowBody>,
}

/// Import users from CSV into a tenant: each new address becomes a user with the row's roles
/// (the tenant's default role when none), phone number and attribute values; each existing user
/// gets the roles they lack here and the row's attribute values. Columns: `email`, `first_name`,
/// `last_name`, `roles` (`;`-separated), `phone`, `attributes` (`name=value;name=value`).
/// With `dry_run`, answers the plan and changes nothing; otherwise the plan is carried out as
/// one bulk request (each operation authorized and decided as the single one), and each row says
/// what happened. Needs `users:update` (as bulk requests do).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/import", request_body = ImportBody, tag = "users",
    responses((status = 200, body = ImportAnswer),
        (status = 400, body = Problem, description = "`invalid_query` (the CSV is malformed, has an unknown column, or more than 1,000 rows)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:update)")),
    security(("bearer" = [])))]
pub async fn import_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<Response, ApiError> {
    if body.csv.chars().count() > 60_000 {
        return Err(ApiError::invalid_body(
            "body field `csv`",
            "at most 60000 characters",
        ));
    }
    let rows = state
        .timed(
            "import_users",
            state
                .app
                .people
                .import(&caller, &tenant, &body.csv, body.dry_run),
        )
        .await?;
    let (mut last, mut secret) = (0, false);
    let rows = rows
        .into_iter()
        .map(|row| {
            let (action, user, roles, problem) = match row.plan {
                RowPlan::Create { roles } => ("create", None, roles, None),
                RowPlan::AssignRoles { user, roles } => ("assign_roles", Some(user), roles, None),
                RowPlan::Update { user, roles } => ("update", Some(user), roles, None),
                RowPlan::Unchanged { user } => ("unchanged", Some(user), Vec::new(), None),
                RowPlan::Invalid(error) => (
                    "invalid",
                    None,
                    Vec::new(),
                    Some(ApiError::from(error).problem()),
                ),
            };
            ImportRowBody {
                row: row.row,
                email: row.email,
                action: action.into(),
                user: user.map(|u| u.to_string()),
                roles: roles.into_iter().map(String::from).collect(),
                attributes: row
                    .attributes
                    .into_iter()
                    .map(|(name, value)| (name, value.unwrap_or(serde_json::Value::Null)))
                    .collect(),
                problem,
                results: row
                    .outcomes
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| bulk_result(i, o, &mut last, &mut secret))
                    .collect(),
            }
        })
        .collect();
    let body = ImportAnswer {
        dry_run: body.dry_run,
        position: last,
        rows,
    };
    Ok(results_answer(body, last, secret))
}
