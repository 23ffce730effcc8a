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
use idstream_audit::text::{PageView, QueryText, TextError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Caller, MinPosition};

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
    #[param(example = "acme")]
    pub tenant: Option<String>,
    /// Who caused the event: `user:<id>`, `api_key:<id>` or `system:<name>`.
    #[param(example = "user:01ARZ3NDEKTSV4RRFFQ69G5FAV")]
    pub actor: Option<String>,
    /// The user the event is about (a user id).
    pub subject: Option<String>,
    /// `tenant`, `user`, `membership`, `email`, `role`, `entity`, `record`, `credentials`,
    /// `session`, `invitation`, `api_key`, …
    pub aggregate_type: Option<String>,
    /// Needs `aggregate_type`.
    pub aggregate_id: Option<String>,
    /// Event types, comma-separated (any of them).
    #[serde(rename = "type")]
    #[param(rename = "type", example = "SessionStarted,SignInFailed")]
    pub event_type: Option<String>,
    /// RFC 3339, inclusive.
    #[param(example = "2026-03-01T00:00:00Z")]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// `next` or `prev` of an earlier page.
    pub cursor: Option<String>,
    /// `newest` (default) or `oldest` first.
    pub order: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
    /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
    pub min_position: Option<u64>,
}

impl AuditEventsQuery {
    /// The query the parameters ask for, or the problem with them.
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
        text.parse().map_err(|e| match e {
            TextError::Cursor(detail) => ApiError::bad_request("invalid_cursor", detail),
            TextError::Parameter(detail) => ApiError::bad_request("invalid_query", detail),
        })
    }
}

/// The audit trail, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(AuditEventsQuery),
    responses((status = 200, body = PageView),
        (status = 400, body = Problem, description = "invalid_query, invalid_cursor, invalid_min_position"),
        (status = 403, body = Problem, description = "forbidden (no audit:read in the tenant), platform_admin_only (no tenant, or `_`)"),
        (status = 404, body = Problem, description = "tenant_not_found")),
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
