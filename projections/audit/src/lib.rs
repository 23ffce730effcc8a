//! The audit read model: one entry per event of the log, with secondary indexes so that a filtered
//! page of the trail (by tenant, actor, subject user, aggregate, event type and time range) is
//! read from a few index keys, never from a scan of the log. [`AuditProjection`] folds the log
//! into one sled tree (named [`NAME`]); [`Audit`] answers [`AuditQuery`]s from it.
//!
//! **Never personal data.** An entry holds ids (users, sessions, keys, tenants, records), event
//! types, times, enum names (sign-in method, revocation reason), permissions, role names and
//! non-personal settings: never an email address, a name, an image URL, a free-text reason or
//! label, or the hashed email address that names an email claim. The human-readable summary is
//! computed when an entry is read, from those ids, so it names users only by id, and a user for
//! whom the projection has seen a `UserErased` event is shown as "erased user 01H…" in every
//! entry, old or new.
//!
//! **Which tenant sees what.** An event of a tenant's aggregate (membership, role, entity,
//! record, invitation, API key, the tenant itself) is that tenant's. Global aggregates (users,
//! credentials, email claims, sessions; subject tenant `_`) are shown to a tenant only where they
//! concern it, decided when the event is folded, from the log alone:
//! - a session's events belong to the tenant the session is in at that event (`SessionStarted`
//!   names it; a tenant switch belongs to both the tenant left and the one entered);
//! - the events of a user, their credentials and their email claims belong to every tenant the
//!   user is a member of at that moment (holds a role or a custom permission there), plus the
//!   tenant a `UserRegistered`/`UserInvited` created them in until they are removed from it.
//!   A tenant the user joins later does not see what happened before; one they leave sees
//!   nothing after.
//!
//! Every event with no tenant of its own is also in the global scope `_`, which only platform
//! administrators query.
//!
//! **Invariant:** the fold is deterministic (no clock, randomness, IO or logging) and reads only
//! the event and its own tree, so a rebuild gives byte-identical trees.

mod fold;
mod keys;
mod query;
mod summary;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use idstream_domain::{Actor, ActorKind, AggregateType, TenantId, UserId};
use idstream_eventlog::Position;
use serde::Serialize;
use time::OffsetDateTime;
use ulid::Ulid;

pub use fold::AuditProjection;
pub use query::Audit;

/// The name of the projection and of its sled tree.
pub const NAME: &str = "audit";

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 50;

/// The largest page.
pub const MAX_LIMIT: usize = 500;

/// How many index candidates one page examines at most before it answers with what it found and
/// a cursor to continue (`partial`), so that a filter combination that matches little in a huge
/// index cannot make one request run long.
pub const SCAN_BUDGET: usize = 20_000;

/// One event of the trail, as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// The event's log position: the trail's order.
    pub position: Position,
    /// The event's id (ULID).
    pub id: Ulid,
    /// When it happened (the envelope's `occurred_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    /// The event's own tenant; absent for global aggregates.
    pub tenant: Option<TenantId>,
    /// Who caused it.
    pub actor: Actor,
    /// The user an API-key actor acts for.
    pub actor_owner: Option<UserId>,
    /// The user the event is about.
    pub subject: Option<UserId>,
    pub aggregate_type: AggregateType,
    /// Absent where the id itself would be personal data (email claims are named by a hash of
    /// the address).
    pub aggregate_id: Option<String>,
    /// What happened, in words, naming users by id ("erased user …" once erased).
    pub summary: String,
    /// The facts the summary is made of (role, entity, record, method, …), none personal.
    pub details: BTreeMap<String, String>,
}

/// Whose entries a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every entry (platform administrators).
    All,
    /// Events without a tenant of their own, subject tenant `_` (platform administrators).
    Global,
    /// A tenant's entries, including the global events that concern it (see the crate docs).
    Tenant(TenantId),
}

impl FromStr for Scope {
    type Err = QueryError;
    /// `_` is the global scope; anything else must be a tenant id.
    fn from_str(s: &str) -> Result<Scope, QueryError> {
        if s == "_" {
            return Ok(Scope::Global);
        }
        s.parse()
            .map(Scope::Tenant)
            .map_err(|e| QueryError(format!("tenant: {e} (or `_` for global events)")))
    }
}

/// The order of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

impl FromStr for Order {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Order, QueryError> {
        match s {
            "newest" => Ok(Order::NewestFirst),
            "oldest" => Ok(Order::OldestFirst),
            _ => Err(QueryError("order is `newest` or `oldest`".into())),
        }
    }
}

/// Where a page starts: strictly older (lower positions) or strictly newer (higher positions)
/// than a position. Pages hand out cursors as `next` and `prev`; their text form is `o<position>`
/// or `n<position>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    OlderThan(Position),
    NewerThan(Position),
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::OlderThan(p) => write!(f, "o{p}"),
            Cursor::NewerThan(p) => write!(f, "n{p}"),
        }
    }
}

impl FromStr for Cursor {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Cursor, QueryError> {
        let invalid = || QueryError("cursor is a `next` or `prev` value of an earlier page".into());
        let (side, digits) = s.split_at_checked(1).ok_or_else(invalid)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let position: Position = digits.parse().map_err(|_| invalid())?;
        match side {
            "o" => Ok(Cursor::OlderThan(position)),
            "n" => Ok(Cursor::NewerThan(position)),
            _ => Err(invalid()),
        }
    }
}

/// What entries a query wants. Every given filter must hold (event types: any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub scope: Scope,
    pub actor: Option<Actor>,
    pub subject: Option<UserId>,
    pub aggregate_type: Option<AggregateType>,
    /// Needs `aggregate_type` (ids are unique per type only); see [`AuditFilter::validate`].
    pub aggregate_id: Option<String>,
    pub event_types: BTreeSet<String>,
    /// Inclusive.
    pub from: Option<OffsetDateTime>,
    /// Exclusive.
    pub to: Option<OffsetDateTime>,
}

impl AuditFilter {
    /// Everything in `scope`.
    pub fn scope(scope: Scope) -> AuditFilter {
        AuditFilter {
            scope,
            actor: None,
            subject: None,
            aggregate_type: None,
            aggregate_id: None,
            event_types: BTreeSet::new(),
            from: None,
            to: None,
        }
    }

    /// Refuses combinations that cannot mean anything: an aggregate id without its type, an
    /// unknown event type, a time range that ends before it starts.
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.aggregate_id.is_some() && self.aggregate_type.is_none() {
            return Err(QueryError(
                "aggregate_id needs aggregate_type (ids are unique per aggregate type)".into(),
            ));
        }
        if let Some(unknown) = self
            .event_types
            .iter()
            .find(|t| !query::known_event_type(t))
        {
            return Err(QueryError(format!("unknown event type {unknown:?}")));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(QueryError("`from` is after `to`".into()));
        }
        Ok(())
    }
}

/// A query: filters, where to start, which way to read, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub cursor: Option<Cursor>,
    pub order: Order,
    /// 1 to [`MAX_LIMIT`]; larger values are clamped.
    pub limit: usize,
}

/// A page of the trail in the query's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Continues after the last entry (in the page's order); absent when nothing more matches.
    pub next: Option<Cursor>,
    /// Continues before the first entry, the page before this one; absent on a first page (no
    /// cursor given) and when nothing matches before it.
    pub prev: Option<Cursor>,
    /// The page stopped after examining [`SCAN_BUDGET`] candidates: it may hold fewer entries
    /// than asked for although more match; `next` continues where it stopped.
    pub partial: bool,
}

/// An unusable query parameter; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Reading the audit tree failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("stored audit entry {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// `user:<ULID>`, `api_key:<ULID>` or `system:<name>`.
pub fn parse_actor(s: &str) -> Result<Actor, QueryError> {
    let invalid = || QueryError("actor is `user:<id>`, `api_key:<id>` or `system:<name>`".into());
    let (kind, id) = s.split_once(':').ok_or_else(invalid)?;
    let kind = match kind {
        "user" => ActorKind::User,
        "api_key" => ActorKind::ApiKey,
        "system" => ActorKind::System,
        _ => return Err(invalid()),
    };
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Actor {
        kind,
        id: id.to_owned(),
    })
}

/// An aggregate type by its subject token (`user`, `membership`, `api_key`, …).
pub fn parse_aggregate_type(s: &str) -> Result<AggregateType, QueryError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        QueryError(format!(
            "unknown aggregate type {s:?}: one of tenant, user, membership, email, role, entity, record, credentials, session, invitation, api_key"
        ))
    })
}

/// Comma-separated event types (`SessionStarted,SignInFailed`), each one the service writes.
pub fn parse_event_types(s: &str) -> Result<BTreeSet<String>, QueryError> {
    let types: BTreeSet<String> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = types.iter().find(|t| !query::known_event_type(t)) {
        return Err(QueryError(format!("unknown event type {unknown:?}")));
    }
    Ok(types)
}

/// An RFC 3339 time such as `2026-03-01T12:00:00Z`.
pub fn parse_time(name: &str, s: &str) -> Result<OffsetDateTime, QueryError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|_| {
        QueryError(format!(
            "{name} is an RFC 3339 time, e.g. 2026-03-01T12:00:00Z"
        ))
    })
}

#[cfg(test)]
mod tests;
