//! One module per service of the application, each with its `router()`: `tenants`, `users`,
//! `memberships`, `access_admin`, `access_queries`, `identity`, `audit` and `operations`.
//! Handlers are thin: extract, call one operation of their service (which authorizes the
//! caller), shape the answer.

pub mod access_admin;
pub mod access_queries;
pub mod audit;
pub mod identity;
pub mod memberships;
pub mod oidc;
pub mod operations;
pub mod people;
pub mod tenants;
pub mod upstream;
pub mod users;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use idstream_app::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::POSITION_HEADER;

/// The answer to every command: the log position of its last event (the consistency token to
/// pass as `X-Idstream-Min-Position` to later queries) and the id of what it created or changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    pub position: u64,
    pub id: String,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    replayed: bool,
}

impl CommandAccepted {
    pub fn created(outcome: Outcome) -> Self {
        let status = if outcome.replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        CommandAccepted {
            position: outcome.position,
            id: outcome.id,
            status,
            replayed: outcome.replayed,
        }
    }

    pub fn ok(outcome: Outcome) -> Self {
        CommandAccepted {
            position: outcome.position,
            id: outcome.id,
            status: StatusCode::OK,
            replayed: outcome.replayed,
        }
    }
}

impl IntoResponse for CommandAccepted {
    fn into_response(self) -> Response {
        let status = self.status;
        let position = HeaderValue::from(self.position);
        let replayed = self.replayed;
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(POSITION_HEADER, position);
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// The answer of a request that makes several changes with a result each (bulk changes, copies):
/// `body` as JSON, the position of its last change as the consistency token in
/// `X-Idstream-Position`, and `Cache-Control: no-store` when a result holds a secret (a link).
pub fn results_answer<T: Serialize>(body: T, position: u64, secret: bool) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(POSITION_HEADER, HeaderValue::from(position));
    if secret {
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// The largest page of a list.
pub const MAX_PAGE: usize = 500;

/// A page size from a query string: 1 to [`MAX_PAGE`] (the `PageLimit` format of the document).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Limit(usize);

impl TryFrom<String> for Limit {
    type Error = String;

    fn try_from(text: String) -> Result<Limit, String> {
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(Limit(n)),
            _ => Err(format!("a page size is an integer from 1 to {MAX_PAGE}")),
        }
    }
}

impl Limit {
    /// The size asked for, or `default`.
    pub fn or(limit: Option<Limit>, default: usize) -> usize {
        limit.map_or(default, |l| l.0)
    }
}

/// Declares the query of a list: `after` (the `next` of the previous page, of the list's id
/// format), `limit` and `min_position`.
macro_rules! page_query {
    ($(#[$doc:meta])* $name:ident, $after:ty, $format:ty) => {
        $(#[$doc])*
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Return items after this one (the `next` of the previous page).
            #[param(value_type = Option<$format>)]
            pub after: Option<$after>,
            /// Page size, 1 to 500 (default 100).
            #[param(value_type = Option<crate::openapi::formats::PageLimit>)]
            pub limit: Option<crate::routes::Limit>,
            /// Consistency token; also accepted as the `X-Idstream-Min-Position` header.
            #[param(minimum = 0)]
            pub min_position: Option<u64>,
        }

        impl $name {
            pub fn limit(&self) -> usize {
                crate::routes::Limit::or(self.limit, 100)
            }
        }
    };
}
pub(crate) use page_query;

/// A page of items with the cursor of the next page (absent on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// RFC 3339 text of a timestamp, as every API response shows times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
