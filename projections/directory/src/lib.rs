//! The directory read model: tenants, users, memberships with their roles, an email index and an
//! idempotency index, folded from the event log by [`DirectoryProjection`] and queried through
//! [`Directory`].
//!
//! It lives in one sled tree (named [`NAME`]) with a key prefix per table; values are the views'
//! JSON, whose field order is fixed by the structs, so a rebuild gives identical bytes. The views
//! are public API: the server returns them as JSON.
//!
//! **Personal data is sealed at rest.** A user view's personal fields (email, names, picture,
//! phone, attribute values) are stored sealed with the person's own key through a
//! [`PersonalSeal`] (see `idstream_projection_runtime::personal`), and the email index is keyed
//! by the address's blind index: nothing in the tree names a person in the clear, and once they
//! are erased no copy of their data that sled may keep on disk can be read. [`Directory`]'s
//! queries open the fields on the way out ([`open_user`]); the search index opens them into
//! memory only.
//!
//! **Invariant:** the fold is deterministic and reads nothing but the event and the tree: no
//! clock, no IO, no logging. Whatever depends on the time of a query (has a timed suspension
//! lapsed?) is answered at query time, e.g. [`UserView::status_at`].
//! It never decides anything: the log already holds decisions, and an event the directory cannot
//! place (a rename of an unknown tenant, a newer event version) is skipped with a note.

mod fold;
mod keys;
mod query;
pub mod search;
pub mod text;

use std::collections::BTreeSet;

use idstream_domain::access::Permission;
use idstream_domain::attributes::AttributeDefinition;
use idstream_domain::tenant::TenantSettings;
use idstream_domain::user::UserFlags;
use idstream_domain::{AggregateRef, RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use fold::DirectoryProjection;
pub use query::{Directory, DirectoryError};

use idstream_projection_runtime::personal::{
    PersonalSeal, SealError, open_json, open_option, open_text,
};

/// The name of the projection and of its sled tree.
pub const NAME: &str = "directory";

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub settings: TenantSettings,
    /// The user attributes the tenant defines, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, AttributeDefinition>,
    /// When the tenant was created (the creating event's `occurred_at`), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Log position of the event that created the tenant.
    pub created_position: Position,
    /// Log position of the event that last changed the tenant.
    pub updated_position: Position,
}

/// A user's lifecycle state as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Invited,
    Active,
    Suspended,
    /// Deactivated: no sign-in and no access until reactivated.
    Inactive,
    /// Erased: personal data destroyed (the view keeps the id, dates and memberships only).
    Erased,
}

/// A user: one identity across tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    /// Normalised (trimmed, lower-case).
    pub email: String,
    /// The keyed blind index of `email` (the email index's key) as stored; `None` once erased,
    /// and in every view a query returns ([`open_user`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_index: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// The user's picture, if they gave one.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Notification topics the user wants (`true`) or not (`false`).
    #[serde(default)]
    pub notifications: std::collections::BTreeMap<String, bool>,
    /// The user's phone number (E.164), if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The language the user chose for mails and pages (`en`, `fr`), if they chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The values of the user's attributes per tenant, as recorded (those no longer defined or
    /// no longer valid for their definition included: see `idstream_domain::attributes::visible`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes:
        std::collections::BTreeMap<TenantId, std::collections::BTreeMap<String, serde_json::Value>>,
    /// The id each tenant's provisioning client knows the user by (SCIM `externalId`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external_ids: std::collections::BTreeMap<TenantId, String>,
    /// The name each tenant's provisioning client gives the user (SCIM `userName`), where it is
    /// not their email address.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub user_names: std::collections::BTreeMap<TenantId, String>,
    /// As recorded; a timed suspension that has ended still reads `suspended` here until the user
    /// is reinstated; [`UserView::status_at`] tells the effective status.
    pub status: UserStatus,
    /// End of the current suspension, RFC 3339; `null` when not suspended or suspended
    /// indefinitely.
    #[serde(with = "time::serde::rfc3339::option")]
    pub suspended_until: Option<OffsetDateTime>,
    pub suspension_reason: Option<String>,
    /// System-level flags: dashboard access, API access, platform administrator.
    pub flags: UserFlags,
    /// Whether the user proved they receive mail at `email` (an accepted invitation does).
    #[serde(default)]
    pub email_verified: bool,
    /// Registered, or invited and accepted. A suspension or deactivation lifted from someone who
    /// never accepted returns them to `invited`.
    #[serde(default)]
    pub activated: bool,
    /// RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the user last signed in (started a session), RFC 3339; `null` if never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_sign_in: Option<OffsetDateTime>,
    /// Whether sign-in asks for a second factor (TOTP is on).
    #[serde(default)]
    pub two_factor: bool,
    /// The tenant the user was created (registered or invited) in.
    pub created_in: TenantId,
    /// When the user aggregate last changed (its last event's `occurred_at`), RFC 3339; `null`
    /// when it has not changed since it was created.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Log position of the user aggregate's last event: its consistency token. (Sign-ins and
    /// second-factor changes, events of other aggregates, leave it as it is.)
    pub position: Position,
}

impl UserView {
    /// The status in effect at `now`: a suspension whose end has passed counts as active.
    pub fn status_at(&self, now: OffsetDateTime) -> UserStatus {
        match (self.status, self.suspended_until) {
            (UserStatus::Suspended, Some(end)) if now >= end => UserStatus::Active,
            (status, _) => status,
        }
    }
}

/// The name an attribute value of a tenant is sealed under.
pub(crate) fn attribute_field(tenant: &TenantId, name: &str) -> String {
    format!("attributes.{tenant}.{name}")
}

/// The name a tenant's external id of a user is sealed under.
pub(crate) fn external_id_field(tenant: &TenantId) -> String {
    format!("external_id.{tenant}")
}

/// The name a tenant's provisioned user name of a user is sealed under.
pub(crate) fn user_name_field(tenant: &TenantId) -> String {
    format!("user_name.{tenant}")
}

/// `view` as stored, with its personal fields opened (placeholders once the person is erased).
/// The email's blind index stays inside the read model (`email_index` reads `None`).
pub fn open_user(seal: &dyn PersonalSeal, mut view: UserView) -> Result<UserView, SealError> {
    let user = view.id.to_string();
    view.email_index = None;
    view.email = open_text(seal, &user, "email", &view.email)?;
    view.first_name = open_text(seal, &user, "first_name", &view.first_name)?;
    view.last_name = open_text(seal, &user, "last_name", &view.last_name)?;
    view.image_url = open_option(seal, &user, "image_url", view.image_url.as_deref())?;
    view.phone = open_option(seal, &user, "phone", view.phone.as_deref())?;
    for (tenant, values) in &mut view.attributes {
        for (name, value) in values.iter_mut() {
            *value = open_json(seal, &user, &attribute_field(tenant, name), value)?;
        }
    }
    for (tenant, id) in &mut view.external_ids {
        *id = open_text(seal, &user, &external_id_field(tenant), id)?;
    }
    for (tenant, name) in &mut view.user_names {
        *name = open_text(seal, &user, &user_name_field(tenant), name)?;
    }
    Ok(view)
}

/// The roles and custom permissions one user holds in one tenant. A membership without either
/// does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    pub tenant: TenantId,
    pub user: UserId,
    pub roles: BTreeSet<RoleName>,
    /// Custom permissions, in addition to the roles' permissions.
    pub custom_permissions: BTreeSet<Permission>,
    /// Log position of the membership's last event.
    pub position: Position,
}

/// The outcome of the append made with an idempotency key, so that a command retried after the
/// log's deduplication window still gets its first answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Position of the last event appended with the key.
    pub position: Position,
    /// The aggregate the events went to.
    pub aggregate: AggregateRef,
    pub tenant: Option<TenantId>,
}

/// The seal every test of this crate shares (the projection and the queries over one tree must
/// use the same keys): keys in memory.
#[cfg(test)]
pub(crate) fn seal() -> std::sync::Arc<dyn PersonalSeal> {
    static SEAL: std::sync::OnceLock<std::sync::Arc<dyn PersonalSeal>> = std::sync::OnceLock::new();
    SEAL.get_or_init(idstream_keys::ReadModelSeal::in_memory)
        .clone()
}

#[cfg(test)]
mod search_tests;
#[cfg(test)]
mod tests;
