//! Point-in-time replay and access review for auditors (F-AU-2, F-AU-6):
//!
//! - `GET /v1/audit/as-of/explain`: a check as it would have been decided at a past moment, with
//!   what decided it and the event behind that;
//! - `GET /v1/audit/as-of/holders`: who could read (or update…) one record then, and why;
//! - `GET /v1/audit/access-review`: who holds which roles, custom permissions, record grants,
//!   local roles and records, now or at a past moment, as JSON or CSV.
//!
//! A past moment is `position=<log position>` or `at=<RFC 3339 time>`. The first question about
//! a moment rebuilds the read models up to it into a store of their own (the live ones are never
//! touched); later questions about it reuse that store. For very long logs, `idstream replay
//! --as-of` does the same from the command line with a progress bar.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use idstream_access::ReviewFrom;
use idstream_app::replay::{
    AsOf, ExplainedHolder, REVIEW_CSV_HEADER, ReplayInfo, ReviewWindow, review_csv,
    review_csv_rows, review_members_json,
};
use idstream_domain::access::{Permission, RecordId};
use idstream_domain::{TenantId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Caller};
use crate::openapi::formats;
use crate::routes::Limit;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v1/audit/as-of/explain", get(explain_as_of))
        .route("/v1/audit/as-of/holders", get(holders_as_of))
        .route("/v1/audit/access-review", get(access_review))
        .route("/v1/audit/applications", get(applications))
}

/// `position` or `at`, exactly one (for the review: at most one).
fn as_of(position: Option<u64>, at: Option<&str>) -> Result<Option<AsOf>, ApiError> {
    match (position, at) {
        (Some(_), Some(_)) => Err(ApiError::invalid_query(
            "query parameters `position` and `at`: give either, not both",
        )),
        (Some(position), None) => Ok(Some(AsOf::Position(position))),
        (None, Some(at)) => {
            OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map(|time| Some(AsOf::Time(time)))
                .map_err(|_| {
                    ApiError::invalid_query(
                        "query parameter `at`: an RFC 3339 time, e.g. 2026-03-01T12:00:00Z",
                    )
                })
        }
        (None, None) => Ok(None),
    }
}

fn required(as_of: Option<AsOf>) -> Result<AsOf, ApiError> {
    as_of.ok_or_else(|| {
        ApiError::invalid_query(
            "query parameters `position` and `at`: give the moment, position=<n> or at=<RFC 3339 time>",
        )
    })
}

/// The moment a replayed answer shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsOfBody {
    /// The last event applied.
    pub position: u64,
    /// When that event happened.
    pub time: Option<String>,
    /// Digest of each replayed read model: a replay to the current position has the live
    /// digests (`GET /v1/admin/read-models`).
    pub digests: std::collections::BTreeMap<String, String>,
    /// The moment the answer's checks were decided at: the time asked for (`at=`), or the
    /// event's time for `position=`. Temporary access that ended before it does not count.
    pub decided_at: Option<String>,
}

impl From<ReplayInfo> for AsOfBody {
    fn from(info: ReplayInfo) -> Self {
        AsOfBody {
            position: info.position,
            time: info.time.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            digests: info.digests,
            decided_at: info.decided_at.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExplainAsOfQuery {
    #[param(value_type = formats::TenantId)]
    pub tenant: TenantId,
    /// The user whose access is asked about.
    #[param(value_type = formats::UserId)]
    pub user: UserId,
    #[param(value_type = formats::Permission)]
    pub permission: Permission,
    /// A record of the permission's entity.
    #[param(value_type = Option<formats::RecordId>)]
    pub record: Option<RecordId>,
    /// Log position of the moment (exactly one of `position` and `at`).
    #[param(minimum = 0)]
    pub position: Option<u64>,
    /// Time of the moment (exactly one of `position` and `at`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainAsOfBody {
    pub as_of: AsOfBody,
    pub allowed: bool,
    #[schema(value_type = Object)]
    pub reason: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    pub sources: serde_json::Value,
}

/// Explain a check as it would have been decided at a past moment.
#[utoipa::path(get, path = "/v1/audit/as-of/explain", tag = "audit", params(ExplainAsOfQuery),
    responses((status = 200, body = ExplainAsOfBody),
        (status = 403, body = Problem, description = "`forbidden` (needs audit:read in the tenant)")),
    security(("bearer" = [])))]
pub async fn explain_as_of(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExplainAsOfQuery>,
) -> Result<Json<ExplainAsOfBody>, ApiError> {
    let as_of = required(as_of(q.position, q.at.as_deref())?)?;
    let (info, explained) = state
        .app
        .audit
        .explain_as_of(&caller, as_of, q.tenant, q.user, q.permission, q.record)
        .await?;
    Ok(Json(ExplainAsOfBody {
        as_of: info.into(),
        allowed: explained.decision.allowed,
        reason: serde_json::to_value(&explained.decision.reason).unwrap_or_default(),
        sources: serde_json::to_value(&explained.sources).unwrap_or_default(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoldersAsOfQuery {
    #[param(value_type = formats::TenantId)]
    pub tenant: TenantId,
    #[param(value_type = formats::EntityPermission)]
    pub permission: Permission,
    #[param(value_type = formats::RecordId)]
    pub record: RecordId,
    /// Log position of the moment (exactly one of `position` and `at`).
    #[param(minimum = 0)]
    pub position: Option<u64>,
    /// Time of the moment (exactly one of `position` and `at`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldersAsOfBody {
    pub as_of: AsOfBody,
    /// Everyone who could, each with the decision's reason and sources.
    #[schema(value_type = Vec<Object>)]
    pub holders: Vec<ExplainedHolder>,
}

/// Who could use a permission on one record at a past moment, and why.
#[utoipa::path(get, path = "/v1/audit/as-of/holders", tag = "audit", params(HoldersAsOfQuery),
    responses((status = 200, body = HoldersAsOfBody),
        (status = 403, body = Problem, description = "`forbidden` (needs audit:read in the tenant)")),
    security(("bearer" = [])))]
pub async fn holders_as_of(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HoldersAsOfQuery>,
) -> Result<Json<HoldersAsOfBody>, ApiError> {
    let as_of = required(as_of(q.position, q.at.as_deref())?)?;
    if q.permission.entity_name().is_none() {
        return Err(ApiError::invalid_query(
            "query parameter `permission`: holders of a record are asked for an entity permission, e.g. entity.invoice:read",
        ));
    }
    let (info, holders) = state
        .app
        .audit
        .holders_as_of(&caller, as_of, q.tenant, q.permission, q.record)
        .await?;
    Ok(Json(HoldersAsOfBody {
        as_of: info.into(),
        holders,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    #[param(value_type = formats::TenantId)]
    pub tenant: TenantId,
    /// Only this member's holdings.
    #[param(value_type = Option<formats::UserId>)]
    pub user: Option<UserId>,
    /// JSON: the people after this one (the `next` of the previous page).
    #[param(value_type = Option<formats::UserId>)]
    pub after: Option<UserId>,
    /// JSON: the people before this one (the `previous` of the next page).
    #[param(value_type = Option<formats::UserId>)]
    pub before: Option<UserId>,
    /// JSON: people per page, 1 to 500 (default 100). The CSV holds everyone.
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<Limit>,
    /// JSON (default) or CSV.
    #[param(value_type = Option<ReviewFormat>)]
    pub format: Option<String>,
    /// Log position of a past moment (at most one of `position` and `at`; neither: now).
    #[param(minimum = 0)]
    pub position: Option<u64>,
    /// Time of a past moment (at most one of `position` and `at`; neither: now).
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
}

/// The format of an access review.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReviewFormat {
    Json,
    Csv,
}

/// The access review of a tenant (JSON or CSV), now or at a past moment.
#[utoipa::path(get, path = "/v1/audit/access-review", tag = "audit", params(ReviewQuery),
    responses((status = 200, description = "JSON, a page of people in user-id order: {as_of, tenant, members:[{user, email, status, roles, custom_permissions, records}], next, previous} (`next`: pass as `after`; `previous`: pass as `before`; absent at either end); CSV: everyone, one row per holding",
            content((Object = "application/json"), (String = "text/csv"))),
        (status = 403, body = Problem, description = "`forbidden` (needs audit:read in the tenant)")),
    security(("bearer" = [])))]
pub async fn access_review(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReviewQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::invalid_query(
                "query parameter `format`: json or csv",
            ));
        }
    };
    let as_of = as_of(q.position, q.at.as_deref())?;
    let from = match (q.after, q.before) {
        (None, None) => ReviewFrom::Start,
        (Some(after), None) => ReviewFrom::After(after),
        (None, Some(before)) => ReviewFrom::Before(before),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_query(
                "query parameters `after` and `before`: at most one of them",
            ));
        }
    };
    if csv && (q.user.is_some() || from != ReviewFrom::Start || q.limit.is_some()) {
        if let Some(user) = q.user {
            let (_, review) = state
                .app
                .audit
                .access_review(&caller, as_of, q.tenant, ReviewWindow::Person(user))
                .await?;
            return Ok(csv_response(axum::body::Body::from(review_csv(&review))));
        }
        return Err(ApiError::invalid_query(
            "query parameters `after`, `before` and `limit` page the JSON review; the CSV holds everyone",
        ));
    }
    if csv {
        let body = review_csv_body(state.app.audit.clone(), caller.0, as_of, q.tenant).await?;
        return Ok(csv_response(body));
    }
    let window = match q.user {
        Some(user) => ReviewWindow::Person(user),
        None => ReviewWindow::Page {
            from,
            limit: Limit::or(q.limit, 100),
        },
    };
    let (info, review) = state
        .app
        .audit
        .access_review(&caller, as_of, q.tenant, window)
        .await?;
    let members = review_members_json(&review);
    let cursor = |edge: bool, member: Option<&idstream_access::ReviewedMember>| {
        member
            .filter(|_| edge)
            .map(|member| member.user.to_string())
    };
    Ok(Json(serde_json::json!({
        "as_of": info.map(AsOfBody::from),
        "tenant": review.review.tenant,
        "members": members,
        "next": cursor(review.later, review.review.members.last()),
        "previous": cursor(review.earlier, review.review.members.first()),
    }))
    .into_response())
}

fn csv_response(body: axum::body::Body) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// People read per step of the CSV download.
const CSV_PAGE: usize = 500;

/// The whole access review of `tenant` as CSV, read and sent [`CSV_PAGE`] people at a time, so
/// the download of a large organisation starts at once and is never held whole in memory. The
/// first page is read before answering (a refusal is an error response, not a broken
/// download). Read now, each page comes from the live read models as they are when it is read;
/// at a past moment every page comes from that moment's replay.
pub async fn review_csv_body(
    audit: idstream_app::Audit,
    caller: idstream_app::Caller,
    as_of: Option<AsOf>,
    tenant: TenantId,
) -> Result<axum::body::Body, idstream_app::AppError> {
    let page = move |from: ReviewFrom| {
        let (audit, caller, tenant) = (audit.clone(), caller.clone(), tenant.clone());
        async move {
            let window = ReviewWindow::Page {
                from,
                limit: CSV_PAGE,
            };
            let (_, review) = audit.access_review(&caller, as_of, tenant, window).await?;
            let next = review
                .later
                .then(|| {
                    review
                        .review
                        .members
                        .last()
                        .map(|m| ReviewFrom::After(m.user))
                })
                .flatten();
            Ok::<_, idstream_app::AppError>((review_csv_rows(&review), next))
        }
    };
    let (rows, next) = page(ReviewFrom::Start).await?;
    let first = format!("{REVIEW_CSV_HEADER}{rows}");
    let rest = futures::stream::unfold(next, move |from| {
        let page = page.clone();
        async move {
            let from = from?;
            match page(from).await {
                Ok((rows, later)) => Some((Ok::<_, std::io::Error>(rows), later)),
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    });
    Ok(axum::body::Body::from_stream(
        futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplicationsQuery {
    #[param(value_type = formats::TenantId)]
    pub tenant: TenantId,
    /// Log position of a past moment (at most one of `position` and `at`; neither: now).
    #[param(minimum = 0)]
    pub position: Option<u64>,
    /// Time of a past moment (at most one of `position` and `at`; neither: now).
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
}

/// The tenant's OpenID Connect applications, the consents people gave them, and its upstream
/// identity providers, now or at a past moment (point-in-time replay).
#[utoipa::path(get, path = "/v1/audit/applications", tag = "audit", params(ApplicationsQuery),
    responses((status = 200, description = "{as_of, tenant, clients:[{id, name, kind, redirect_uris, grant_types, scopes, first_party, created_at, removed_at}], consents:[{user, client, scopes, granted_at}], providers:[{id, name, issuer, client_id, allowed_email_domains, provision, configured_at}]}",
            content((Object = "application/json"))),
        (status = 403, body = Problem, description = "`forbidden` (needs audit:read in the tenant)")),
    security(("bearer" = [])))]
pub async fn applications(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ApplicationsQuery>,
) -> Result<Response, ApiError> {
    let as_of = as_of(q.position, q.at.as_deref())?;
    let tenant = q.tenant.clone();
    let (info, found) = state
        .app
        .audit
        .applications(&caller, as_of, q.tenant)
        .await?;
    let time = |t: time::OffsetDateTime| crate::routes::rfc3339(t);
    let clients: Vec<serde_json::Value> = found
        .clients
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id.to_string(), "name": c.settings.name, "kind": c.kind,
                "redirect_uris": c.settings.redirect_uris,
                "grant_types": c.settings.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                "scopes": c.settings.scopes, "first_party": c.settings.first_party,
                "created_at": time(c.created_at), "removed_at": c.removed_at.map(time),
            })
        })
        .collect();
    let consents: Vec<serde_json::Value> = found
        .consents
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "user": c.user, "client": c.client, "scopes": c.scopes,
                "granted_at": time(c.granted_at),
            })
        })
        .collect();
    let providers: Vec<serde_json::Value> = found
        .providers
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id, "name": p.settings.name, "issuer": p.settings.issuer,
                "client_id": p.settings.client_id,
                "allowed_email_domains": p.settings.allowed_email_domains,
                "provision": p.settings.provision, "configured_at": time(p.configured_at),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "as_of": info.map(AsOfBody::from),
        "tenant": tenant,
        "clients": clients,
        "consents": consents,
        "providers": providers,
    }))
    .into_response())
}
