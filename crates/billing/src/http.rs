//! The read side: a tiny HTTP endpoint with the seat counts as of now.
//!
//! - `GET /seats` → `{"position", "at", "started_at", "applied", "skipped", "tenants": {"acme": 3}}`
//! - `GET /seats/{tenant}` → `{"tenant", "seats", "position", "at"}`; 404 for a tenant billing
//!   has never seen
//! - `GET /healthz` → `ok`
//!
//! Errors are RFC 9457 problems with a stable `code` (`not_ready` while the stream is not found
//! yet, `tenant_not_found`).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use time::OffsetDateTime;

use crate::consumer::SharedState;

/// Every seat count at one moment.
#[derive(Debug, Serialize)]
pub struct SeatsBody {
    /// The log position of the last event billing has folded.
    pub position: u64,
    /// When the counts were taken (a timed suspension ends by itself).
    pub at: String,
    /// The position the state file held when this process started.
    pub started_at: u64,
    /// Events this process received after `started_at`.
    pub applied: u64,
    /// Seat events that could not be placed (logged as warnings).
    pub skipped: u64,
    /// Seats per tenant.
    pub tenants: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct TenantSeatsBody {
    pub tenant: String,
    pub seats: u64,
    pub position: u64,
    pub at: String,
}

pub fn router(shared: SharedState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/seats", get(all_seats))
        .route("/seats/{tenant}", get(tenant_seats))
        .with_state(shared)
}

async fn all_seats(State(shared): State<SharedState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let shared = shared.read().expect("billing state lock");
    let Some(state) = &shared.state else {
        return not_ready();
    };
    Json(SeatsBody {
        position: state.position,
        at: rfc3339(now),
        started_at: shared.started_at,
        applied: shared.applied,
        skipped: shared.skipped,
        tenants: state.seats.counts(now),
    })
    .into_response()
}

async fn tenant_seats(State(shared): State<SharedState>, Path(tenant): Path<String>) -> Response {
    let now = OffsetDateTime::now_utc();
    let shared = shared.read().expect("billing state lock");
    let Some(state) = &shared.state else {
        return not_ready();
    };
    match state.seats.counts(now).get(&tenant) {
        Some(&seats) => Json(TenantSeatsBody {
            tenant,
            seats,
            position: state.position,
            at: rfc3339(now),
        })
        .into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            &format!("billing has seen no tenant {tenant:?}"),
        ),
    }
}

fn not_ready() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "billing has not reached the event stream yet",
    )
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
