//! The trail as text: a query given as the text of its parameters (the HTTP API's query string,
//! the command line's flags) and a page as the JSON both show. One definition for both, so that
//! `idstream audit events --json` prints exactly what `GET /v1/audit/events` answers.

use std::collections::BTreeMap;

use idstream_domain::{ActorKind, UserId};
use serde::Serialize;

use crate::{
    AuditEntry, AuditFilter, AuditPage, AuditQuery, Cursor, DEFAULT_LIMIT, MAX_LIMIT, Order,
    QueryError, Scope,
};

/// The filters and paging of a query, as text. Every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryText {
    /// A tenant, `_` for the events without a tenant; absent: every tenant.
    pub tenant: Option<String>,
    /// `user:<id>`, `api_key:<id>` or `system:<name>`.
    pub actor: Option<String>,
    /// The user the events are about.
    pub subject: Option<String>,
    pub aggregate_type: Option<String>,
    /// Needs `aggregate_type`.
    pub aggregate_id: Option<String>,
    /// Event types, comma-separated.
    pub event_type: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// The `next` or `prev` of an earlier page.
    pub cursor: Option<String>,
    /// `newest` (default) or `oldest`.
    pub order: Option<String>,
    /// 1 to [`MAX_LIMIT`]; absent: [`DEFAULT_LIMIT`].
    pub limit: Option<usize>,
}

/// Why a [`QueryText`] cannot be used: the parameter (none when the combination is the
/// problem) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    pub parameter: Option<&'static str>,
    pub rule: String,
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parameter {
            Some(name) => write!(f, "query parameter `{name}`: {}", self.rule),
            None => write!(f, "query: {}", self.rule),
        }
    }
}

impl std::error::Error for TextError {}

/// The refusal of parameter `name`, its rule taken from `error` (without a repeated name).
fn invalid(name: &'static str) -> impl Fn(QueryError) -> TextError {
    move |error| {
        let rule = error
            .0
            .strip_prefix(&format!("{name}: "))
            .unwrap_or(&error.0)
            .to_owned();
        TextError {
            parameter: Some(name),
            rule,
        }
    }
}

impl QueryText {
    /// The query the text asks for, or what is wrong with it.
    pub fn parse(&self) -> Result<AuditQuery, TextError> {
        let scope = match self.tenant.as_deref() {
            None => Scope::All,
            Some(tenant) => tenant.parse().map_err(invalid("tenant"))?,
        };
        let mut filter = AuditFilter::scope(scope);
        filter.actor = self
            .actor
            .as_deref()
            .map(crate::parse_actor)
            .transpose()
            .map_err(invalid("actor"))?;
        filter.subject = self
            .subject
            .as_deref()
            .map(str::parse::<UserId>)
            .transpose()
            .map_err(|e| TextError {
                parameter: Some("subject"),
                rule: e.to_string(),
            })?;
        filter.aggregate_type = self
            .aggregate_type
            .as_deref()
            .map(crate::parse_aggregate_type)
            .transpose()
            .map_err(invalid("aggregate_type"))?;
        filter.aggregate_id = self.aggregate_id.clone();
        if let Some(types) = self.event_type.as_deref() {
            filter.event_types = crate::parse_event_types(types).map_err(invalid("type"))?;
        }
        filter.from = self
            .from
            .as_deref()
            .map(|t| crate::parse_time("from", t))
            .transpose()
            .map_err(invalid("from"))?;
        filter.to = self
            .to
            .as_deref()
            .map(|t| crate::parse_time("to", t))
            .transpose()
            .map_err(invalid("to"))?;
        filter.validate().map_err(|e| TextError {
            parameter: None,
            rule: e.0,
        })?;
        let cursor = self
            .cursor
            .as_deref()
            .map(str::parse::<Cursor>)
            .transpose()
            .map_err(invalid("cursor"))?;
        let order = self
            .order
            .as_deref()
            .map(str::parse::<Order>)
            .transpose()
            .map_err(invalid("order"))?
            .unwrap_or_default();
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(TextError {
                    parameter: Some("limit"),
                    rule: format!("a page size is an integer from 1 to {MAX_LIMIT}"),
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
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorView {
    /// `user`, `api_key` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The aggregate an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AggregateView {
    #[serde(rename = "type")]
    pub kind: String,
    /// Absent for email claims, whose id is a hash of the address.
    pub id: Option<String>,
}

/// One event of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
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
    pub actor: ActorView,
    /// The user an API-key actor acts for.
    pub actor_owner: Option<String>,
    /// The user the event is about.
    pub subject: Option<String>,
    pub aggregate: AggregateView,
    /// What happened, naming users by id ("erased user …" once erased).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "user 01ARZ3NDEKTSV4RRFFQ69G5FAV was granted read on record r1 of entity invoice by user 01BX5ZZKBKACTAV9WEVGEMMVRZ"
        )
    )]
    pub summary: String,
    /// The facts of the summary (role, entity, record, method, …).
    pub details: BTreeMap<String, String>,
}

impl From<AuditEntry> for EntryView {
    fn from(e: AuditEntry) -> Self {
        EntryView {
            position: e.position,
            id: e.id.to_string(),
            time: e
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            event_type: e.event_type,
            version: e.version,
            tenant: e.tenant.map(String::from),
            actor: ActorView {
                kind: match e.actor.kind {
                    ActorKind::User => "user",
                    ActorKind::ApiKey => "api_key",
                    ActorKind::System => "system",
                }
                .to_owned(),
                id: e.actor.id,
            },
            actor_owner: e.actor_owner.map(|u| u.to_string()),
            subject: e.subject.map(|u| u.to_string()),
            aggregate: AggregateView {
                kind: e.aggregate_type.as_str().to_owned(),
                id: e.aggregate_id,
            },
            summary: e.summary,
            details: e.details,
        }
    }
}

/// A page of the trail in the asked order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageView {
    pub items: Vec<EntryView>,
    /// The `cursor` of the page after this one; absent when nothing more matches.
    pub next: Option<String>,
    /// The `cursor` of the page before this one; absent on a first page.
    pub prev: Option<String>,
    /// The page stopped early after examining many non-matching events: it may hold fewer
    /// items than asked for; follow `next`.
    pub partial: bool,
}

impl From<AuditPage> for PageView {
    fn from(page: AuditPage) -> Self {
        PageView {
            items: page.entries.into_iter().map(Into::into).collect(),
            next: page.next.map(|c| c.to_string()),
            prev: page.prev.map(|c| c.to_string()),
            partial: page.partial,
        }
    }
}
