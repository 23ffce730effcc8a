//! The audit trail: `GET /v1/audit/events`.
//!
//! Every event of the log as an entry with its actor, time, position, type and a summary in
//! words, filtered and paged by cursor both ways. Entries name users by id only; the trail holds
//! no personal data. Who sees what is decided by the `Audit` service (`audit:read` in the tenant;
//! platform administrators for every tenant and the global events).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use idstream_audit::AuditQuery;
use idstream_audit::text::{PageView, QueryText};
use serde::Deserialize;
use utoipa::IntoParams;

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

/// The filters and paging of `GET /v1/audit/events` (`idstream_audit::text::QueryText`, with
/// the consistency token). Every given filter must hold.
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

impl AuditEventsQuery {
    /// The query the parameters ask for, or the problem with them: `invalid_query`, naming the
    /// parameter and the rule.
    fn query(self) -> Result<AuditQuery, ApiError> {
        let text = QueryText {
            tenant: self.tenant,
            actor: self.actor,
            subject: self.subject,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            event_type: self.event_type,
            from: self.from,
            to: self.to,
            cursor: self.cursor,
            order: self.order,
            limit: self.limit,
        };
        text.parse()
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
    }
}

/// The order of a page of the trail.
#[derive(utoipa::ToSchema)]
#[schema(as = AuditOrder, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum OrderParam {
    Newest,
    Oldest,
}

/// The audit trail, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(AuditEventsQuery),
    responses((status = 200, body = PageView),
        (status = 403, body = Problem, description = "`forbidden` (no audit:read in the tenant), `platform_admin_only` (no tenant, or the events of no tenant)")),
    security(("bearer" = [])))]
pub async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<AuditEventsQuery>,
) -> Result<Json<PageView>, ApiError> {
    let query = params.query()?;
    state.consistent_audit(min).await?;
    let page = state.app.audit.events(&caller, query).await?;
    Ok(Json(page.into()))
}
