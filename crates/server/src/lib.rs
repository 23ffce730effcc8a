//! The HTTP layer of idstream: axum routes, problem+json errors, health, readiness, metrics and
//! the OpenAPI document. It authenticates requests and hands them to the application, which
//! authorizes; the composition root (opening the log, the keys, the read models and the app, and
//! serving) is the `idstream` command's (`idstream_cli::startup`).
//!
//! **Architecture invariant:** handlers hold no business rule, no authorization and no storage
//! call: they extract and authenticate, call one operation of one service of `idstream_app::App`
//! (which authorizes the caller first), and shape the answer. Route modules match the services
//! one to one. Every error leaves through [`error::ApiError`].

pub mod client;
pub mod cors;
pub mod dry_run;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod page_text;
pub mod pages;
pub mod routes;
pub mod scim;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use idstream_app::{App, AppError};
use idstream_auth::TokenDigest;
use idstream_eventlog::Position;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::error::ApiError;
use crate::extract::{CORRELATION_HEADER, MinPosition};
use crate::metrics::{KindLabels, Metrics};

/// What every handler gets: one shared [`StateParts`], so that the clones axum makes for every
/// request cost one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<StateParts>);

impl AppState {
    pub fn new(parts: StateParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateParts;

    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct StateParts {
    pub app: App,
    /// The operator token, when configured.
    pub admin_token: Option<Arc<TokenDigest>>,
    pub metrics: Arc<Metrics>,
    /// The log position at start; the service is ready once its read models have reached it.
    pub startup_target: Position,
    /// The proxies whose `X-Forwarded-For` names the client (see [`client`]).
    pub trusted_proxies: Arc<client::TrustedProxies>,
    /// The origins whose pages may call the API from a browser (see [`cors`]); none: CORS off.
    pub cors_origins: cors::CorsOrigins,
    /// Account pages rendered lately (see [`pages::AccountPages`]).
    pub account_pages: pages::AccountPages,
}

impl AppState {
    /// Runs a command, recording its latency and, for log failures, the append-error counter.
    pub async fn timed<T>(
        &self,
        command: &'static str,
        work: impl Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let started = Instant::now();
        let result = work.await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AppError::Unavailable(_)) => {
                self.metrics
                    .append_errors
                    .get_or_create(&KindLabels {
                        kind: "unavailable",
                    })
                    .inc();
                "unavailable"
            }
            Err(AppError::Conflict) => {
                self.metrics
                    .append_errors
                    .get_or_create(&KindLabels { kind: "conflict" })
                    .inc();
                "conflict"
            }
            Err(AppError::Internal(_)) => "error",
            Err(_) => "rejected",
        };
        self.metrics
            .observe_command(command, outcome, started.elapsed());
        result
    }

    /// Honours a query's consistency token: waits (bounded) until the serving read models (all
    /// but the audit trail's) reach it.
    pub async fn consistent(&self, min: MinPosition) -> Result<(), ApiError> {
        let Some(min) = min.0 else { return Ok(()) };
        self.count_wait(self.app.operations.wait_for_token(min).await)
    }

    /// [`AppState::consistent`] for a query of the audit trail: its read model too.
    pub async fn consistent_audit(&self, min: MinPosition) -> Result<(), ApiError> {
        let Some(min) = min.0 else { return Ok(()) };
        self.count_wait(self.app.audit.wait_for_token(min).await)
    }

    fn count_wait(&self, result: Result<(), AppError>) -> Result<(), ApiError> {
        let kind = if result.is_ok() {
            "reached"
        } else {
            "timed_out"
        };
        self.metrics
            .query_waits
            .get_or_create(&KindLabels { kind })
            .inc();
        Ok(result?)
    }
}

/// Serves the HTTP API on `listener` until `shutdown` resolves, then drains the requests in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state, max_body_bytes).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The whole HTTP API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let cors = (!state.cors_origins.is_empty())
        .then(|| Arc::new(cors::Cors::new(state.cors_origins.clone())));
    let router = Router::new()
        .merge(routes::operations::router())
        .merge(routes::tenants::router())
        .merge(routes::users::router())
        .merge(routes::memberships::router())
        .merge(routes::people::router())
        .merge(routes::access_admin::router())
        .merge(routes::access_queries::router())
        .merge(routes::identity::router())
        .merge(routes::audit::router())
        .merge(routes::oidc::router())
        .merge(routes::upstream::router())
        .merge(pages::router(&state))
        .merge(scim::router())
        .fallback(|uri: axum::http::Uri| async move {
            if scim::is_scim(uri.path()) {
                scim::not_routed(false)
            } else {
                ApiError::NotFound.into_response()
            }
        })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            if scim::is_scim(uri.path()) {
                scim::not_routed(true)
            } else {
                ApiError::MethodNotAllowed.into_response()
            }
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            (state.clone(), max_body_bytes),
            front,
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::App(AppError::Internal("a handler panicked".into())).into_response()
            },
        ))
        .with_state(state);
    // Outermost, so that every answer (a panic's too) carries the headers a browser needs to
    // read it; a preflight it answers itself is not logged as a request.
    match cors {
        Some(cors) => router.layer(middleware::from_fn_with_state(cors, cors::cors)),
        None => router,
    }
}

/// Bodies up to this size are read and discarded before a 413 answer, so the client gets the
/// problem instead of a connection reset (closing a connection with unread data makes the kernel
/// reset it, and the client may lose the answer). Larger ones are refused without reading.
const DRAIN_LIMIT: u64 = 1024 * 1024;

/// Every request's way in, as one middleware (each `from_fn` layer costs a clone of the route
/// and a boxed future per request, measurable on the cheapest routes): its correlation id and
/// span ([`correlate`]), the declared body size ([`too_large`]), then dry runs
/// ([`dry_run::dry_run`]). Inside it, `DefaultBodyLimit` limits chunked bodies.
async fn front(
    axum::extract::State((state, max)): axum::extract::State<(AppState, usize)>,
    matched: Option<axum::extract::MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    correlate(request, async move |request| {
        let max = scim::body_limit(request.uri().path(), max);
        match too_large(max, request).await {
            Err(refused) => refused,
            Ok(request) => dry_run::dry_run(state, matched, request, next).await,
        }
    })
    .await
}

/// Refuses a request whose declared `Content-Length` exceeds the body limit with a 413 problem
/// before any handler runs. (Chunked bodies are still limited by `DefaultBodyLimit`.)
async fn too_large(max: usize, request: Request) -> Result<Request, Response> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max as u64 => {
            if length <= DRAIN_LIMIT {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT as usize).await;
            }
            Err(ApiError::BadRequest {
                status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                detail: format!("the request body is larger than {max} bytes"),
            }
            .into_response())
        }
        _ => Ok(request),
    }
}

/// Gives every request a correlation id (the client's `X-Correlation-Id` or a new ULID), runs it
/// (`inner`) inside a span carrying that id, and echoes the id in the response.
async fn correlate(mut request: Request, inner: impl AsyncFnOnce(Request) -> Response) -> Response {
    let (mut parts, body) = request.into_parts();
    let id = extract::correlation_id(&parts);
    let header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &header {
        parts.headers.insert(CORRELATION_HEADER, value.clone());
    }
    request = Request::from_parts(parts, body);
    let span = tracing::info_span!("request", correlation_id = %id, method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let mut response = inner(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        )
    });
    if let Some(value) = header {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}
