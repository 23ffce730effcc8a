//! The access read model: everything an access decision needs, folded from the event log by
//! [`AccessProjection`] and queried through [`Access`]: checks, batch checks, explanations with
//! the deciding event, readable-record listings, entity CRUD summaries, visible fields, roles and
//! menus.
//!
//! One sled tree (named [`NAME`]) holds accounts, memberships, roles, entities, per-record
//! standings (grant and local roles), owners, a per-user record index and the provenance of every
//! fact (see `keys.rs`). A check never scans: it is a handful of point lookups, most of them
//! answered by an exact in-memory cache of decoded facts in front of sled (see `cache.rs`), and
//! one sled get for the user's standing on the record.
//!
//! **Invariant:** the fold is deterministic and never decides anything; the rules live in
//! [`idstream_domain::access::check`], shared with the tests' reference model.

mod cache;
mod fold;
mod index;
mod keys;
pub mod preview;
mod query;
mod review;

use std::collections::{BTreeMap, BTreeSet};

use idstream_domain::access::{
    AccountStatus, EntityName, EntityPolicy, FieldName, MenuItem, Permission, ResourceName,
};
use idstream_domain::user::UserFlags;
use idstream_domain::{Actor, RoleName};
use idstream_eventlog::Position;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use cache::FactCache;
pub use fold::AccessProjection;
pub use query::{Access, AccessError, DueLapse, EntityPermissions, Explanation, ReadableRecords};
pub use review::{
    AccessReview, EntityHoldings, Holding, MemberHoldings, RecordHolders, RecordHolding,
    ReviewFrom, ReviewPage, ReviewedMember,
};

/// The name of the projection and of its sled tree.
pub const NAME: &str = "access";

/// An account as access sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub status: AccountStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub suspended_until: Option<OffsetDateTime>,
    pub flags: UserFlags,
    /// Registered, or invited and accepted: where a lifted suspension or deactivation returns.
    #[serde(default)]
    pub activated: bool,
}

/// A membership: global roles and custom permissions in one tenant, the temporary ones with
/// their ends (until their lapse is recorded; checks stop honouring them at the end).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub roles: BTreeSet<RoleName>,
    pub custom: BTreeSet<Permission>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_expiry: BTreeMap<RoleName, Timestamp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_expiry: BTreeMap<Permission, Timestamp>,
}

/// A moment stored as RFC 3339 text (so that it can be a map value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

/// A role of a tenant (built-in ones are written when the tenant is created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: RoleName,
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    pub global_access: bool,
    pub built_in: bool,
    pub menu: Vec<MenuItem>,
    /// The name people see, when set (`name` stays the identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A registered entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRecord {
    pub name: EntityName,
    pub fields: Vec<FieldName>,
    pub rls: bool,
    pub policy: EntityPolicy,
    /// Fields hidden from each role.
    pub hidden: BTreeMap<RoleName, BTreeSet<FieldName>>,
    /// Fields each role sees but may not search or filter by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsearchable: BTreeMap<RoleName, BTreeSet<FieldName>>,
}

/// A resource a tenant defined for its own permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub name: ResourceName,
    pub description: String,
}

/// The event that established a fact: what an explanation shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub position: Position,
    pub event_type: String,
    pub actor: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
