//! Operations (the `Operations` service): `/healthz`, `/readyz`, `/readyz/write`, `/metrics`,
//! `/openapi.json`, and
//! the read-model state for platform administrators (`/v1/admin/read-models`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::Caller;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/write", get(readyz_write))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/admin/read-models", get(read_models))
        .route("/v1/admin/read-models/rebuild", post(rebuild))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok` or `unavailable`
    pub log: String,
    pub log_position: Option<u64>,
    /// The directory's search index is loaded (in the background at start; until then
    /// directory searches wait, and `ready` is false).
    pub search_index_loaded: bool,
    /// Position each read model has applied.
    pub read_models: BTreeMap<String, u64>,
}

/// Readiness to serve: the read models have caught up with the log as it was at start and the
/// directory's search index is loaded. While the log is unreachable the service stays ready
/// (`"log": "unavailable"`), because queries keep answering from the read models; commands then
/// fail with `503 log_unavailable`. A load balancer that should route commands only to replicas
/// that can append uses `/readyz/write`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness, description = "still catching up")))]
pub async fn readyz(State(state): State<AppState>, caller: Caller) -> impl IntoResponse {
    let readiness = state
        .app
        .operations
        .readiness(&caller, state.startup_target)
        .await;
    let body = Readiness {
        ready: readiness.ready,
        log: if readiness.log_position.is_some() {
            "ok".into()
        } else {
            "unavailable".into()
        },
        log_position: readiness.log_position,
        search_index_loaded: readiness.search_index_loaded,
        read_models: readiness.read_models,
    };
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// How long `/readyz/write` waits for the log's answer: shorter than a load balancer's probe
/// timeout, longer than a healthy log takes by far.
const WRITE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, ToSchema)]
pub struct WriteReadiness {
    /// Always `true` in a 200 answer.
    pub writable: bool,
    /// The log's last position.
    pub log_position: u64,
}

/// Readiness to take commands: 200 while this replica is ready (as `/readyz`) and its event log
/// answers within a second (with JetStream: connected, and the stream has a leader); otherwise
/// 503 `log_unavailable`, or `not_caught_up` while the read models still catch up at start.
/// For load balancers that route commands; queries keep working when it fails.
#[utoipa::path(get, path = "/readyz/write", tag = "operations",
    responses((status = 200, body = WriteReadiness),
        (status = 503, body = Problem, description = "`log_unavailable`, `not_caught_up`")))]
pub async fn readyz_write(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WriteReadiness>, ApiError> {
    let log_position = state
        .app
        .operations
        .write_readiness(&caller, state.startup_target, WRITE_PROBE_TIMEOUT)
        .await?;
    Ok(Json(WriteReadiness {
        writable: true,
        log_position,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> impl IntoResponse {
    let operations = &state.app.operations;
    let log_position = operations
        .log_position(&caller, Duration::from_secs(1))
        .await;
    for (name, position) in operations.positions(&caller) {
        let labels = crate::metrics::ProjectionLabels { projection: name };
        state
            .metrics
            .projection_position
            .get_or_create(&labels)
            .set(position as i64);
        if let Some(end) = log_position {
            state
                .metrics
                .projection_lag
                .get_or_create(&labels)
                .set(end.saturating_sub(position) as i64);
        }
    }
    if let Some(end) = log_position {
        state.metrics.log_position.set(end as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::ApiDoc::openapi())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadModelState {
    pub position: u64,
    /// SHA-256 over the read model's sorted keys and values, its checkpoint included. A rebuild
    /// from position 0 to the same position gives the same digest.
    pub digest: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadModelsReport {
    pub backend: String,
    pub read_models: BTreeMap<String, ReadModelState>,
}

impl From<idstream_app::ReadModelsReport> for ReadModelsReport {
    fn from(report: idstream_app::ReadModelsReport) -> ReadModelsReport {
        ReadModelsReport {
            backend: report.backend,
            read_models: report
                .read_models
                .into_iter()
                .map(|(name, state)| {
                    let state = ReadModelState {
                        position: state.position,
                        digest: state.digest,
                    };
                    (name, state)
                })
                .collect(),
        }
    }
}

/// Positions and state digests of the read models (platform administrators).
#[utoipa::path(get, path = "/v1/admin/read-models", tag = "operations",
    responses((status = 200, body = ReadModelsReport), (status = 403, body = Problem, description = "`platform_admin_only`")),
    security(("bearer" = [])))]
pub async fn read_models(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ReadModelsReport>, ApiError> {
    let report = state.app.operations.read_models(&caller).await?;
    Ok(Json(report.into()))
}

/// Rebuilds every read model from position 0 while the service keeps running (platform
/// administrators): each is built beside the serving one, which keeps answering every query,
/// and replaces it once caught up, so no request sees a partial read model. Answers once all
/// have switched.
#[utoipa::path(post, path = "/v1/admin/read-models/rebuild", tag = "operations",
    responses((status = 200, body = ReadModelsReport), (status = 403, body = Problem, description = "`platform_admin_only`")),
    security(("bearer" = [])))]
pub async fn rebuild(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ReadModelsReport>, ApiError> {
    let report = state
        .timed("rebuild_read_models", state.app.operations.rebuild(&caller))
        .await?;
    Ok(Json(report.into()))
}
