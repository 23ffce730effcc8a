//! The audit trail: `GET /v1/audit/events`.
//!
//! Every event of the log as an entry with its actor, time, position, type and a summary in
//! words, filtered and paged by cursor both ways. Entries name users by id only; the trail holds
//! no personal data. Who sees what is decided by the `Audit` service (`audit:read` in the tenant;
//! platform administrators for every tenant and the global events).

use std::collections::BTreeMap;
use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use idstream_audit::{
    AuditEntry, AuditFilter, AuditPage, AuditQuery, Cursor, DEFAULT_LIMIT, MAX_LIMIT, Order, Scope,
};
use idstream_domain::UserId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Caller, MinPosition};
use crate::openapi::formats;

pub mod past;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/events", get(audit_events))
        .merge(past::router())
}

/// The filters and paging of `GET /v1/audit/events`. Every given filter must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditEventsQuery {
    /// A tenant's trail (needs `audit:read` there), including the global events that concern it
    /// (its sessions; sign-in failures, lock-outs and lifecycle events of its members). `_`:
    /// the events without a tenant. Absent: every tenant. Both of those are for platform
    /// administrators only.
    #[param(value_type = Option<formats::AuditScope>)]
    pub tenant: Option<String>,
    /// Who caused the event.
    #[param(value_type = Option<formats::AuditActor>)]
    pub actor: Option<String>,
    /// The user the event is about.
    #[param(value_type = Option<formats::UserId>)]
    pub subject: Option<String>,
    /// The kind of aggregate the event belongs to.
    #[param(value_type = Option<AggregateTypeParam>)]
    pub aggregate_type: Option<String>,
    /// Needs `aggregate_type`.
    pub aggregate_id: Option<String>,
    /// Event types, comma-separated (any of them).
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<Vec<formats::EventType>>, example = "SessionStarted,SignInFailed")]
    pub event_type: Option<String>,
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime, example = "2026-03-01T00:00:00Z")]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `next` or `prev` of an earlier page.
    #[param(value_type = Option<formats::AuditCursor>)]
    pub cursor: Option<String>,
    /// Newest (default) or oldest first.
    #[param(value_type = Option<OrderParam>)]
    pub order: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<formats::PageLimit>)]
    pub limit: Option<usize>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    #[param(minimum = 0)]
    pub min_position: Option<u64>,
}

/// The kinds of aggregate, for the `aggregate_type` filter.
#[derive(utoipa::ToSchema)]
#[schema(as = AggregateType, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AggregateTypeParam {
    Tenant,
    User,
    Membership,
    Email,
    Role,
    Entity,
    Record,
    Credentials,
    Session,
    Invitation,
    ApiKey,
    Chain,
    AdminGuard,
}

/// The order of a page of the trail.
#[derive(utoipa::ToSchema)]
#[schema(as = AuditOrder, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum OrderParam {
    Newest,
    Oldest,
}

/// A query parameter that cannot be used, with the problem code it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryProblem {
    pub code: &'static str,
    pub detail: String,
}

impl fmt::Display for QueryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl From<QueryProblem> for ApiError {
    fn from(problem: QueryProblem) -> ApiError {
        ApiError::bad_request(problem.code, problem.detail)
    }
}

/// The parameters as a query, or what is wrong with them (shared with `idstream audit events`).
pub fn audit_query(params: &AuditEventsQuery) -> Result<AuditQuery, QueryProblem> {
    fn invalid(name: &'static str) -> impl Fn(idstream_audit::QueryError) -> QueryProblem {
        move |e| {
            let text = e.to_string();
            let rule = text.strip_prefix(&format!("{name}: ")).unwrap_or(&text);
            QueryProblem {
                code: "invalid_query",
                detail: format!("query parameter `{name}`: {rule}"),
            }
        }
    }
    let scope = match params.tenant.as_deref() {
        None => Scope::All,
        Some(tenant) => tenant.parse().map_err(invalid("tenant"))?,
    };
    let mut filter = AuditFilter::scope(scope);
    filter.actor = params
        .actor
        .as_deref()
        .map(idstream_audit::parse_actor)
        .transpose()
        .map_err(invalid("actor"))?;
    filter.subject = params
        .subject
        .as_deref()
        .map(str::parse::<UserId>)
        .transpose()
        .map_err(|e| QueryProblem {
            code: "invalid_query",
            detail: format!("query parameter `subject`: {e}"),
        })?;
    filter.aggregate_type = params
        .aggregate_type
        .as_deref()
        .map(idstream_audit::parse_aggregate_type)
        .transpose()
        .map_err(invalid("aggregate_type"))?;
    filter.aggregate_id = params.aggregate_id.clone();
    if let Some(types) = params.event_type.as_deref() {
        filter.event_types = idstream_audit::parse_event_types(types).map_err(invalid("type"))?;
    }
    filter.from = params
        .from
        .as_deref()
        .map(|t| idstream_audit::parse_time("from", t))
        .transpose()
        .map_err(invalid("from"))?;
    filter.to = params
        .to
        .as_deref()
        .map(|t| idstream_audit::parse_time("to", t))
        .transpose()
        .map_err(invalid("to"))?;
    filter.validate().map_err(|e| QueryProblem {
        code: "invalid_query",
        detail: format!("query: {e}"),
    })?;
    let cursor = params
        .cursor
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(invalid("cursor"))?;
    let order = params
        .order
        .as_deref()
        .map(str::parse::<Order>)
        .transpose()
        .map_err(invalid("order"))?
        .unwrap_or_default();
    let limit = match params.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(QueryProblem {
                code: "invalid_query",
                detail: format!(
                    "query parameter `limit`: a page size is an integer from 1 to {MAX_LIMIT}"
                ),
            });
        }
    };
    Ok(AuditQuery {
        filter,
        cursor,
        order,
        limit,
    })
}

/// Who caused an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActorBody {
    /// `user`, `api_key` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditAggregateBody {
    #[serde(rename = "type")]
    pub kind: String,
    /// Absent for email claims, whose id is a hash of the address.
    pub id: Option<String>,
}

/// One event of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventBody {
    /// Log position: the trail's order.
    pub position: u64,
    /// The event's id.
    pub id: String,
    /// When it happened, RFC 3339.
    pub time: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// The event's own tenant; absent for global events (users, credentials, sessions).
    pub tenant: Option<String>,
    pub actor: AuditActorBody,
    /// The user an API-key actor acts for.
    pub actor_owner: Option<String>,
    /// The user the event is about.
    pub subject: Option<String>,
    pub aggregate: AuditAggregateBody,
    /// What happened, naming users by id ("erased user …" once erased).
    #[schema(
        example = "user 01ARZ3NDEKTSV4RRFFQ69G5FAV was granted read on record r1 of entity invoice by user 01BX5ZZKBKACTAV9WEVGEMMVRZ"
    )]
    pub summary: String,
    /// The facts of the summary (role, entity, record, method, …).
    pub details: BTreeMap<String, String>,
}

impl From<AuditEntry> for AuditEventBody {
    fn from(e: AuditEntry) -> Self {
        AuditEventBody {
            position: e.position,
            id: e.id.to_string(),
            time: rfc3339(e.time),
            event_type: e.event_type,
            version: e.version,
            tenant: e.tenant.map(String::from),
            actor: AuditActorBody {
                kind: match e.actor.kind {
                    idstream_domain::ActorKind::User => "user",
                    idstream_domain::ActorKind::ApiKey => "api_key",
                    idstream_domain::ActorKind::System => "system",
                }
                .to_owned(),
                id: e.actor.id,
            },
            actor_owner: e.actor_owner.map(|u| u.to_string()),
            subject: e.subject.map(|u| u.to_string()),
            aggregate: AuditAggregateBody {
                kind: e.aggregate_type.as_str().to_owned(),
                id: e.aggregate_id,
            },
            summary: e.summary,
            details: e.details,
        }
    }
}

/// A page of the trail in the asked order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventsPage {
    pub items: Vec<AuditEventBody>,
    /// The `cursor` of the page after this one; absent when nothing more matches.
    pub next: Option<String>,
    /// The `cursor` of the page before this one; absent on a first page.
    pub prev: Option<String>,
    /// The page stopped early after examining many non-matching events: it may hold fewer
    /// items than asked for; follow `next`.
    pub partial: bool,
}

impl From<AuditPage> for AuditEventsPage {
    fn from(page: AuditPage) -> Self {
        AuditEventsPage {
            items: page.entries.into_iter().map(Into::into).collect(),
            next: page.next.map(|c| c.to_string()),
            prev: page.prev.map(|c| c.to_string()),
            partial: page.partial,
        }
    }
}

/// The audit trail, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(AuditEventsQuery),
    responses((status = 200, body = AuditEventsPage),
        (status = 403, body = Problem, description = "`forbidden` (no audit:read in the tenant), `platform_admin_only` (no tenant, or the events of no tenant)")),
    security(("bearer" = [])))]
pub async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<AuditEventsQuery>,
) -> Result<Json<AuditEventsPage>, ApiError> {
    let query = audit_query(&params)?;
    state.consistent_audit(min).await?;
    let page = state.app.audit.events(&caller, query).await?;
    Ok(Json(page.into()))
}
