//! Extractors that turn every malformed request into an [`ApiError`] problem instead of axum's
//! plain-text rejections, and that authenticate the caller (authorizing is the application's).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_app::{AppError, Principal};
use idstream_eventlog::Position;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

pub const POSITION_HEADER: &str = "x-idstream-position";
pub const MIN_POSITION_HEADER: &str = "x-idstream-min-position";
pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `Json<T>` whose rejections are problems: 400 malformed, 422 wrong shape, 413 too large,
/// 415 not JSON.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let (status, code) = match &rejection {
        JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
        JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        JsonRejection::MissingJsonContentType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        }
        _ => (StatusCode::BAD_REQUEST, "invalid_body"),
    };
    ApiError::BadRequest {
        status,
        code,
        detail: rejection.body_text(),
    }
}

/// `Path<T>` whose rejections are 400 problems (`invalid_path`), e.g. a malformed user id.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

/// `Query<T>` whose rejections are 400 problems (`invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// Who is calling, as the application sees it ([`idstream_app::Caller`]): authenticated here,
/// authorized by the application.
///
/// `Authorization: Bearer <credential>` where the credential is an access token (a JWT from
/// sign-in), an API key (`ids_…`), or the operator token from configuration (a system actor,
/// compared in constant time). No credential makes an anonymous caller, a credential that is not
/// valid a refused one: each operation of the application decides what such a caller may do (the
/// operations open to anyone, such as sign-in, ignore it; every other answers 401 with no hint of
/// why). The caller also carries the client's address and `User-Agent` (see [`crate::client`]),
/// the correlation id and the `Idempotency-Key`.
pub struct Caller(pub idstream_app::Caller);

impl std::ops::Deref for Caller {
    type Target = idstream_app::Caller;

    fn deref(&self) -> &idstream_app::Caller {
        &self.0
    }
}

/// The bearer credential of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let min = MinPosition::from_request_parts(parts, state).await?;
        let principal = match bearer(parts) {
            None => Principal::Anonymous,
            Some(presented) => match &state.admin_token {
                Some(admin) if admin.matches(presented) => Principal::Operator,
                _ => {
                    // A consistency token covers who the caller is, too (a second factor just
                    // set up, a tenant setting just changed, a session just started): honour it
                    // first. (The handler honours it again, for the metric; by then it is
                    // reached.)
                    if let Some(min) = min.0 {
                        state.app.operations.wait_for_token(min).await?;
                    }
                    match state.app.identity.authenticate(presented).await {
                        Ok(auth) => Principal::User(auth),
                        Err(AppError::Unauthenticated) => Principal::Refused,
                        Err(other) => return Err(ApiError::App(other)),
                    }
                }
            },
        };
        let idempotency_key = match parts.headers.get(IDEMPOTENCY_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::App(AppError::InvalidIdempotencyKey))?,
            ),
        };
        let caller = idstream_app::Caller::new(
            principal,
            correlation_id(parts),
            idempotency_key,
            crate::client::client(parts, state),
        )?;
        Ok(Caller(caller))
    }
}

/// The request's correlation id: the client's `X-Correlation-Id` if it is sane, else a new ULID.
pub fn correlation_id(parts: &Parts) -> String {
    parts
        .headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| ulid::Ulid::new().to_string())
}

/// A query's consistency token: `X-Idstream-Min-Position` or `?min_position=`.
pub struct MinPosition(pub Option<Position>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_min_position",
                "min_position must be a non-negative integer",
            )
        };
        if let Some(value) = parts.headers.get(MIN_POSITION_HEADER) {
            let value = value.to_str().map_err(|_| invalid())?;
            return value
                .trim()
                .parse()
                .map(|p| MinPosition(Some(p)))
                .map_err(|_| invalid());
        }
        let query = parts.uri.query().unwrap_or("");
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("min_position=") {
                return value
                    .parse()
                    .map(|p| MinPosition(Some(p)))
                    .map_err(|_| invalid());
            }
        }
        Ok(MinPosition(None))
    }
}
