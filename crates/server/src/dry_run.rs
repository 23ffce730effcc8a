//! What-if previews: an administrative command sent with `?dry_run=true` is authorized and decided
//! as usual, appends nothing, and answers the events it would append with the access difference
//! they would make (`idstream_app::AccessAdmin::preview`).
//!
//! The middleware runs after routing (it needs the matched route): for a route in
//! [`DRY_RUN_ROUTES`] it gives the request a [`DryRun`] (which the [`crate::extract::Caller`]
//! extractor puts into the command's context, so the engine decides and records instead of
//! appending), removes `dry_run` from the query, runs the handler, and replaces a successful
//! answer by the preview. A refusal is answered as it is, the same as without `dry_run`. Other
//! routes refuse `dry_run=true` with `400 dry_run_unsupported`: their effects reach beyond the log
//! (mail, keys, secrets, sessions), they decide each part on the read models' view of the earlier
//! parts (bulk requests), or they have a dry run of their own (`…/users/import`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use idstream_access::preview::MemberDifference;
use idstream_app::{AppError, DryRun};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// The operations that take `dry_run`: the administrative commands whose every effect is an
/// event of the log.
pub const DRY_RUN_ROUTES: &[&str] = &[
    "PATCH /v1/tenants/{tenant}",
    "PUT /v1/tenants/{tenant}/settings",
    "PUT /v1/tenants/{tenant}/attributes/{attribute}",
    "DELETE /v1/tenants/{tenant}/attributes/{attribute}",
    "PATCH /v1/tenants/{tenant}/users/{user}/attributes",
    "POST /v1/tenants/{tenant}/users",
    "POST /v1/tenants/{tenant}/users/{user}/roles",
    "DELETE /v1/tenants/{tenant}/users/{user}/roles/{role}",
    "POST /v1/tenants/{tenant}/users/{user}/permissions",
    "POST /v1/tenants/{tenant}/users/{user}/permissions/revoke",
    "DELETE /v1/tenants/{tenant}/users/{user}",
    "POST /v1/tenants/{tenant}/roles/{role}/members",
    "POST /v1/tenants/{tenant}/roles",
    "PUT /v1/tenants/{tenant}/roles/{role}",
    "DELETE /v1/tenants/{tenant}/roles/{role}",
    "PUT /v1/tenants/{tenant}/roles/{role}/menu",
    "PUT /v1/tenants/{tenant}/roles/{role}/label",
    "PUT /v1/tenants/{tenant}/resources/{resource}",
    "DELETE /v1/tenants/{tenant}/resources/{resource}",
    "POST /v1/tenants/{tenant}/entities",
    "PUT /v1/tenants/{tenant}/entities/{entity}/fields",
    "PUT /v1/tenants/{tenant}/entities/{entity}/rls",
    "PUT /v1/tenants/{tenant}/entities/{entity}/policy",
    "PUT /v1/tenants/{tenant}/entities/{entity}/field-rules/{role}",
    "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/owner",
    "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
    "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
    "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
    "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
    "POST /v1/users/{user}/suspend",
    "POST /v1/users/{user}/reinstate",
    "POST /v1/users/{user}/deactivate",
    "POST /v1/users/{user}/reactivate",
    "PUT /v1/users/{user}/flags",
    "PUT /v1/users/{user}/profile",
];

/// One event a previewed command would append.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewEvent {
    /// The event type (`RoleAssigned`, …) and its version.
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// `tenant`, `user`, `membership`, `role`, `entity`, `record`, …
    pub aggregate: String,
    pub aggregate_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The event's data as it would be recorded (see the event's schema).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// How one entity's records and fields change for a member.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityChange {
    pub entity: String,
    /// `[before, after]`: whether the member reads every record, when that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_records: Option<[bool; 2]>,
    /// Records the member could read afterwards and not before.
    pub records_visible: Vec<String>,
    /// Records the member could read before and not afterwards.
    pub records_hidden: Vec<String>,
    /// More than 1,000 readable records on a side: the two lists are partial.
    pub records_truncated: bool,
    pub fields_visible: Vec<String>,
    pub fields_hidden: Vec<String>,
}

/// How one member's access changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberChange {
    pub user: String,
    /// `[before, after]`: global access (every permission), when that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_access: Option<[bool; 2]>,
    /// Permissions a check allows afterwards and not before.
    pub gained: Vec<String>,
    /// Permissions a check allows before and not afterwards.
    pub lost: Vec<String>,
    pub entities: Vec<EntityChange>,
}

/// The access difference in one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantChange {
    pub tenant: String,
    /// The members whose access would change (none: nobody's would).
    pub members: Vec<MemberChange>,
}

/// The answer to a command sent with `dry_run=true`: nothing was appended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// Always true.
    pub dry_run: bool,
    /// The events the command would append, in order (none: it would change nothing).
    pub events: Vec<PreviewEvent>,
    /// The access difference, per tenant the events touch.
    pub access: Vec<TenantChange>,
}

fn member_change(m: MemberDifference) -> MemberChange {
    MemberChange {
        user: m.user.to_string(),
        global_access: m.global_access.map(|(b, a)| [b, a]),
        gained: m.gained.into_iter().map(String::from).collect(),
        lost: m.lost.into_iter().map(String::from).collect(),
        entities: m
            .entities
            .into_iter()
            .map(|e| EntityChange {
                entity: e.entity.to_string(),
                all_records: e.all_records.map(|(b, a)| [b, a]),
                records_visible: e.records_visible.iter().map(ToString::to_string).collect(),
                records_hidden: e.records_hidden.iter().map(ToString::to_string).collect(),
                records_truncated: e.records_truncated,
                fields_visible: e.fields_visible,
                fields_hidden: e.fields_hidden,
            })
            .collect(),
    }
}

/// `dry_run` of the query: `Some(true)`/`Some(false)` when given, and the query without it.
fn take_dry_run(query: &str) -> Result<(Option<bool>, String), ApiError> {
    let mut flag = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').map_or((pair, ""), |(k, v)| (k, v)) {
            ("dry_run", value) => {
                flag = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid_query(
                            "query parameter `dry_run`: true or false",
                        ));
                    }
                });
            }
            _ => rest.push(pair),
        }
    }
    Ok((flag, rest.join("&")))
}

fn without_query(uri: &Uri, query: &str) -> Uri {
    let path_and_query = if query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{query}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Dry runs (see the module documentation), run by the service's front middleware.
pub async fn dry_run(
    state: AppState,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    // Unknown paths answer 404 whatever their query; queries have no dry run (a `dry_run`
    // parameter is theirs to refuse or ignore, like any other).
    let Some(matched) = matched else {
        return next.run(request).await;
    };
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let Some(query) = request.uri().query() else {
        return next.run(request).await;
    };
    if !query.split('&').any(|p| p.starts_with("dry_run")) {
        return next.run(request).await;
    }
    let (flag, rest) = match take_dry_run(query) {
        Ok(parsed) => parsed,
        Err(error) => return error.into_response(),
    };
    let uri = without_query(request.uri(), &rest);
    *request.uri_mut() = uri;
    if flag != Some(true) {
        return next.run(request).await;
    }
    let route = format!("{} {}", request.method(), matched.as_str());
    if !DRY_RUN_ROUTES.contains(&route.as_str()) {
        return ApiError::App(AppError::DryRunUnsupported).into_response();
    }
    let recorder = Arc::new(DryRun::default());
    request.extensions_mut().insert(recorder);
    let (parts, body) = request.into_parts();
    let caller_parts = parts.clone();
    let response = next.run(Request::from_parts(parts, body)).await;
    if !response.status().is_success() {
        return response;
    }
    // The caller again, as the handler saw it (its dry run holds the decided events).
    let mut caller_parts = caller_parts;
    let caller = match <crate::extract::Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut caller_parts,
        &state,
    )
    .await
    {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    match state.app.access_admin.preview(&caller).await {
        Ok((events, access)) => {
            let preview = Preview {
                dry_run: true,
                events: events
                    .into_iter()
                    .map(|e| PreviewEvent {
                        event_type: e.event_type,
                        version: e.version,
                        aggregate: e.aggregate.kind.as_str().to_owned(),
                        aggregate_id: e.aggregate.id,
                        tenant: e.tenant.map(|t| t.to_string()),
                        data: e.data,
                    })
                    .collect(),
                access: access
                    .into_iter()
                    .map(|t| TenantChange {
                        tenant: t.tenant.to_string(),
                        members: t.members.into_iter().map(member_change).collect(),
                    })
                    .collect(),
            };
            (StatusCode::OK, Json(preview)).into_response()
        }
        Err(error) => ApiError::App(error).into_response(),
    }
}
