//! Event payloads: one struct per type and version, named in the past tense.
//!
//! The JSON of each payload is the `data` field of an [`EventEnvelope`]. A JSON Schema is generated
//! for every (type, version) into `schemas/` and checked in; see [`crate::schema`].

use schemars::JsonSchema;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::access::model::{
    EntityName, EntityPolicy, FieldName, MenuItem, PERMISSION_PATTERN_V1, Permission, RecordAccess,
    RecordId, ResourceName,
};
use crate::attributes::AttributeDefinition;
use crate::envelope::{AggregateType, EventEnvelope, Metadata, StreamKey};
use crate::identity::client::{ClientKind, ClientSettings};
use crate::identity::credentials::{PasswordReason, TokenPurpose};
use crate::identity::session::{
    RevocationReason, RevocationReasonV1, SignInMethod, SignInMethodV1, SignInMethodV2,
};
use crate::identity::upstream::{IdentityProviderSettings, LinkVia};
use crate::ids::{RoleName, TenantId, UserId};
use crate::secret::{BlindIndex, Sealed};
use crate::tenant::{PasswordPolicySettings, TenantSettings};
use crate::user::UserFlags;

/// A tenant was created with its display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreated {
    pub name: String,
}

/// A tenant's display name changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRenamed {
    pub name: String,
}

/// A tenant defined a resource of its own (`invoice_export`, …), which roles, custom permissions
/// and API keys may then name with the CRUD actions (`invoice_export:read`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefined {
    pub name: ResourceName,
    pub description: String,
}

/// A tenant's own resource was removed: its permissions, wherever they are still named, are
/// denied to everyone (until it is defined again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRemoved {
    pub name: ResourceName,
}

/// A tenant defined a user attribute of its own (`department`, `employee_no`, …), or changed its
/// definition (the whole definition is recorded). Its members' values are personal data, recorded
/// by [`UserAttributesChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAttributeDefined {
    /// 1 to 40 characters a-z, 0-9 and _, starting with a letter.
    #[schemars(regex(pattern = "^[a-z][a-z0-9_]{0,39}$"))]
    pub name: String,
    pub definition: AttributeDefinition,
}

/// A tenant's user attribute was removed: its values are no longer shown anywhere (they stay in
/// the users' events, and show again if the attribute is defined again with a type they fit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAttributeRemoved {
    #[schemars(regex(pattern = "^[a-z][a-z0-9_]{0,39}$"))]
    pub name: String,
}

/// An administrator created a user who is active at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    /// Normalised (trimmed, lower-case) email address: the user's identifier.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The tenant the user was created in.
    pub tenant: TenantId,
}

/// A user was created in the invited state; they become active when they accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInvited {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The tenant the user was invited to.
    pub tenant: TenantId,
}

/// A user was suspended: they cannot sign in or use tokens until reinstated or until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSuspended {
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub until: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A suspension was lifted before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserReinstated {}

/// A user was given a role in a tenant (the envelope's tenant; the aggregate is the membership),
/// for good or until `expires_at`. Assigning a held role again with another `expires_at` changes
/// when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssigned {
    pub user: UserId,
    pub role: RoleName,
    /// Temporary access: the moment this stops counting (checks stop honouring it at once; a
    /// lapse event records it for the trail afterwards). Absent: until taken away.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A role was taken from a user in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRevoked {
    pub user: UserId,
    pub role: RoleName,
}

/// An email address was claimed for a user (uniqueness across replicas). The aggregate id is a
/// hash of the normalised address, so the address itself is not in this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailClaimed {
    pub user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub claimed_at: OffsetDateTime,
    /// Hash of the request that claimed it, so a retry of that request recognises its own claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The holder of an email address gave it up (they changed their email); it may be claimed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailReleased {
    pub user: UserId,
}

/// A command is about to take `user`'s administrator standing in the tenant away: revoke their
/// `admin` or `owner` role, remove them from the tenant, deactivate or erase them. Recorded on the
/// tenant's admin guard before that command's own event, so that such commands on any replica meet
/// on one subject and the tenant keeps at least one administrator. Coordination only: no read
/// model changes with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRemovalReserved {
    pub user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub reserved_at: OffsetDateTime,
}

/// The command that reserved the removal of `user`'s administrator standing is over: its own event
/// is in the log, or it failed and appended nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRemovalSettled {
    pub user: UserId,
}

/// A tenant's settings changed (the whole set is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettingsChanged {
    pub settings: TenantSettings,
}

/// A user was deactivated: like a suspension without an end, for people who left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDeactivated {}

/// A deactivated user was made active again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserReactivated {}

/// A user was erased (right to erasure): their personal-data key was destroyed, so the personal
/// data in their earlier events (see [`PERSONAL_DATA`]) can no longer be read by anyone. The user
/// id stays in the log, so the audit trail keeps its structure. Final: nothing happens to an
/// erased user afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserErased {}

/// The fields of `data` that hold personal data, per event type (in every version of the type
/// that has them). All of them belong to one user, the event's [`personal_data_owner`], and
/// every one is a string (or null), except `values` of `UserAttributesChanged`, an object whose
/// member values are sealed one by one.
///
/// The service stores these values encrypted with a key of that user's own (`pd1.` followed by
/// the ciphertext), held outside the log; erasing the user destroys the key (crypto-shredding).
/// Readers of the raw log see the ciphertext; the service's own readers see the clear text, or
/// neutral placeholders once the user is erased.
pub const PERSONAL_DATA: &[(&str, &[&str])] = &[
    ("UserRegistered", &["email", "first_name", "last_name"]),
    ("UserInvited", &["email", "first_name", "last_name"]),
    (
        "UserProfileChanged",
        &["first_name", "last_name", "image_url", "phone"],
    ),
    ("UserAttributesChanged", &["values"]),
    ("UserProvisioningIdsChanged", &["external_id", "user_name"]),
    ("EmailChangeRequested", &["email"]),
    ("EmailChanged", &["email"]),
    ("SignInFailed", &["ip", "user_agent"]),
    ("SessionStarted", &["ip", "user_agent"]),
    ("PasskeyRegistered", &["name"]),
];

/// The personal-data fields of events of `event_type` (empty for most types).
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    PERSONAL_DATA
        .iter()
        .find(|(t, _)| *t == event_type)
        .map_or(&[], |(_, fields)| fields)
}

/// The user whose personal data `envelope` carries, whose key encrypts it: the aggregate's id
/// for user and credentials events (a credentials aggregate is named by its user), the `user`
/// field of `data` for session events. `None` for an event without personal-data fields, or
/// one whose owner cannot be told (which the service refuses to write).
pub fn personal_data_owner(envelope: &EventEnvelope) -> Option<&str> {
    if personal_fields(&envelope.event_type).is_empty() {
        return None;
    }
    match envelope.aggregate.kind {
        AggregateType::User | AggregateType::Credentials => Some(envelope.aggregate.id.as_str()),
        AggregateType::Session => envelope.data.get("user").and_then(|user| user.as_str()),
        _ => None,
    }
}

/// The values of a user's attributes in one tenant changed: `values` is the whole set after the
/// change (attribute name to a string, number or boolean, as the tenant's definition says).
/// Personal data: in the log each value is sealed with the user's key (a `pd1.` string in place
/// of the value), and after erasure readers see `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAttributesChanged {
    pub tenant: TenantId,
    pub values: BTreeMap<String, serde_json::Value>,
}

/// The identifiers a tenant's provisioning client (SCIM) knows the user by changed: its own id
/// for them (`externalId`) and the name it gives them (`userName`, when it is not their email
/// address); both as they are after the change, `null` for none. Personal data: sealed with the
/// user's key in the log, `null` for readers once the user is erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserProvisioningIdsChanged {
    pub tenant: TenantId,
    pub external_id: Option<String>,
    pub user_name: Option<String>,
}

/// A user's system-level flags changed (the whole set is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserFlagsChanged {
    pub flags: UserFlags,
}

/// Custom permissions were given to a user in a tenant, on top of their roles, for good or until
/// `expires_at` (giving held permissions again with another `expires_at` changes when they end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsGranted {
    pub user: UserId,
    pub permissions: BTreeSet<Permission>,
    /// Temporary access: the moment this stops counting (checks stop honouring it at once; a
    /// lapse event records it for the trail afterwards). Absent: until taken away.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Custom permissions were taken from a user in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsRevoked {
    pub user: UserId,
    pub permissions: BTreeSet<Permission>,
}

/// A temporary role's assignment ran out at `expired_at` (its `expires_at`). Checks stopped
/// honouring it at that moment; this records the lapse for the trail and for the read models
/// that list holdings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleLapsed {
    pub user: UserId,
    pub role: RoleName,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expired_at: OffsetDateTime,
}

/// Temporary custom permissions ran out at `expired_at` (see [`RoleLapsed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsLapsed {
    pub user: UserId,
    pub permissions: BTreeSet<Permission>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expired_at: OffsetDateTime,
}

/// A user was removed from a tenant: every role and custom permission there is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRemoved {
    pub user: UserId,
}

/// A custom role was defined in a tenant (the aggregate id is the role name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleDefined {
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    /// Global access: every permission, bypassing row- and field-level security.
    pub global_access: bool,
}

/// A role's definition was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdated {
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    pub global_access: bool,
}

/// A role's menu layout was set (an empty menu removes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMenuSet {
    pub menu: Vec<MenuItem>,
}

/// A role's label (the name people see; the role's name stays its identifier in permissions,
/// policies and tokens) was set; empty: no label, the name shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRelabelled {
    pub label: String,
}

/// A custom role was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleDeleted {}

/// An entity was registered in a tenant (the aggregate id is the entity name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRegistered {
    pub fields: Vec<FieldName>,
    /// Row-level security: records are private unless granted, owned or reached by a local role.
    pub rls: bool,
    pub policy: EntityPolicy,
}

/// An entity's field list was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityFieldsChanged {
    pub fields: Vec<FieldName>,
}

/// Row-level security was turned on or off for an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRlsChanged {
    pub enabled: bool,
}

/// An entity's policy (pseudo-roles and roles per action) was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityPolicyChanged {
    pub policy: EntityPolicy,
}

/// The field rules of an entity for one role were set: the fields hidden from it, and the fields
/// it sees but may not search or filter by (both empty: no rule). A hidden field is never
/// searchable either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRulesChanged {
    pub role: RoleName,
    pub hidden: BTreeSet<FieldName>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unsearchable: BTreeSet<FieldName>,
}

/// A record got an owner (`_CREATOR`), or changed hands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordOwnerSet {
    pub entity: EntityName,
    pub record: RecordId,
    pub owner: UserId,
}

/// A user was granted access to one record, for good or until `expires_at` (granting again
/// with another `expires_at` changes when it ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordGranted {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub access: RecordAccess,
    /// Temporary access: the moment this stops counting (checks stop honouring it at once; a
    /// lapse event records it for the trail afterwards). Absent: until taken away.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A user's grant on one record was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRevoked {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
}

/// A user was given a role on one record only (a local role), for good or until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRoleAssigned {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub role: RoleName,
    /// Temporary access: the moment this stops counting (checks stop honouring it at once; a
    /// lapse event records it for the trail afterwards). Absent: until taken away.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A user's local role on one record was taken away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRoleRevoked {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub role: RoleName,
}

/// A temporary grant on one record ran out at `expired_at` (see [`RoleLapsed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordGrantLapsed {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expired_at: OffsetDateTime,
}

/// A temporary local role on one record ran out at `expired_at` (see [`RoleLapsed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRoleLapsed {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub role: RoleName,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expired_at: OffsetDateTime,
}

// ---- identity: users' credentials, sessions, invitations and API keys -------------------------
//
// Secrets appear only sealed (`Sealed`) or blind-indexed (`BlindIndex`): see `crate::secret`.

/// An invited user accepted their invitation: they are active and their email is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserActivated {}

/// A user's profile changed (the whole profile is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserProfileChanged {
    pub first_name: String,
    pub last_name: String,
    /// An `https://` (or `http://`) URL of the user's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Notification topics the user wants (`true`) or not (`false`), e.g. `security_alerts`.
    #[serde(default)]
    pub notifications: std::collections::BTreeMap<String, bool>,
    /// The user's phone number in E.164 form (`+` and up to 15 digits), when they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The language the user chose for mails and pages (`en`, `fr`), when they chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A user asked to change their email address to `email`; until they confirm from that
/// address, the old one stays theirs and keeps working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeRequested {
    /// Normalised.
    pub email: String,
}

/// A user's email address changed (confirmed from the new address, which is thereby verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChanged {
    /// The new address, normalised.
    pub email: String,
}

/// A user proved they receive mail at their address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailVerified {}

/// A password was set; the argon2id PHC string is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSet {
    pub password: Sealed,
    pub reason: PasswordReason,
}

/// A sign-in failed for this account (wrong password, second factor, emailed code or link, or
/// the current password of a signed-in user). `failures` counts the consecutive failures in the
/// current window. `ip` and `user_agent` say where the attempt came from (personal data: see
/// [`PERSONAL_DATA`]); a lock-out it causes is the `AccountLocked` appended right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInFailed {
    pub failures: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// The client's IP address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's `User-Agent` header, at most 256 characters, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Too many failures: the account refuses sign-in until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountLocked {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub until: OffsetDateTime,
    pub failures: u32,
}

/// A successful sign-in cleared the failure count and lock-out history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInFailuresCleared {}

/// An administrator lifted a lock-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountUnlocked {}

/// A single-use token was emailed (reset link, magic link, email code, verification link). Any
/// earlier token of the same purpose is dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretTokenIssued {
    pub purpose: TokenPurpose,
    pub index: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
}

/// The live token of `purpose` was used up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretTokenRedeemed {
    pub purpose: TokenPurpose,
}

/// A wrong code was presented while a live token of `purpose` (an emailed sign-in code) was
/// waiting: the `misses`-th. At the limit the token dies (see
/// `idstream_domain::identity::credentials::MAX_TOKEN_MISSES`). Not a password failure: it never
/// counts toward a lock-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretTokenMissed {
    pub purpose: TokenPurpose,
    pub misses: u32,
}

/// TOTP set-up began; the secret is sealed and waits for a first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolmentStarted {
    pub secret: Sealed,
}

/// The first code matched: sign-in now needs a second step. `step` is the code's time step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpEnabled {
    pub step: u64,
}

/// A TOTP code of time step `step` was used; it and earlier steps are spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCodeUsed {
    pub step: u64,
}

/// Two-factor authentication was turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpDisabled {}

/// A new set of recovery codes replaced the old one (blind indexes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodesGenerated {
    pub codes: Vec<BlindIndex>,
}

/// A recovery code was used in place of a TOTP code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodeUsed {
    pub code: BlindIndex,
}

/// A passkey (a WebAuthn public-key credential) was registered for the user. Nothing here is
/// secret: the private key never leaves the authenticator. `name` is personal data (see
/// [`PERSONAL_DATA`]): sealed with the user's key in the log, empty for readers once the user is
/// erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistered {
    /// The credential id, base64url without padding.
    pub credential: String,
    /// The name the person gave the passkey ("Laptop", "YubiKey").
    pub name: String,
    /// The credential's public key and what the relying party keeps with it (COSE key and
    /// algorithm, flags), as the WebAuthn library serialises it (a JSON text).
    pub public_key: String,
    /// The authenticator's signature counter at registration (0 for authenticators without one).
    pub counter: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// A passkey signed a sign-in (alone or as a second factor); `counter` is the authenticator's
/// signature counter it presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyUsed {
    pub credential: String,
    pub counter: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// When the ceremony whose challenge the passkey signed began: a ceremony that began at or
    /// before this one cannot use the passkey again (each challenge is good for one sign-in).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub ceremony_started_at: OffsetDateTime,
}

/// A passkey was removed, by its owner or by an administrator resetting the person's factors
/// (the envelope's actor says who).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRemoved {
    pub credential: String,
}

/// A sign-in with a passkey was refused because its signature counter went backwards
/// (`presented` is at most `stored`, and not both 0): two copies of the key may exist (a cloned
/// authenticator), so the sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyCounterRegressed {
    pub credential: String,
    pub stored: u32,
    pub presented: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// A user signed in: a session (the aggregate) started in `tenant`. `ip` and `user_agent` say
/// where from (personal data: see [`PERSONAL_DATA`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethod,
    /// Blind index of the session's refresh token.
    pub refresh: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
    /// The IP address the user signed in from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header of the sign-in, at most 256 characters, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The user asked to be remembered and the tenant allows it (`remember_days` above 0):
    /// `expires_at` is the remembered lifetime's end, not the ordinary one's.
    pub remembered: bool,
}

/// The refresh token was rotated: `refresh` is the only live one now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRefreshed {
    pub refresh: BlindIndex,
    pub generation: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// The session moved to another tenant of the user (its refresh token rotated with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionTenantSwitched {
    pub tenant: TenantId,
    pub refresh: BlindIndex,
    pub generation: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// The session ended before its time; its tokens stop working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRevoked {
    pub reason: RevocationReason,
}

// Version 1 of `SessionRevoked`, before applications had sessions: its reasons are those of
// `RevocationReasonV1` (the doc comment is the published schema's description).
/// The session ended before its time; its tokens stop working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SessionRevoked")]
pub struct SessionRevokedV1 {
    pub reason: RevocationReasonV1,
}

/// Version 1 differs only in the reasons it knows, all of which version 2 knows.
impl From<SessionRevokedV1> for SessionRevoked {
    fn from(v1: SessionRevokedV1) -> SessionRevoked {
        SessionRevoked {
            reason: v1.reason.into(),
        }
    }
}

/// An application (`client`) was given an authorization code for `user`: the first event of the
/// session the code starts when the application exchanges it (a `SessionStarted` on the same
/// aggregate). Only the code's blind index is recorded. `browser_session` is the session the
/// person was signed in with; `auth_time` is when that sign-in happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeIssued {
    pub code: BlindIndex,
    pub client: String,
    pub redirect_uri: String,
    pub scopes: BTreeSet<String>,
    /// The application's `nonce`, returned in the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The PKCE S256 challenge, when the application sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethod,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub auth_time: OffsetDateTime,
    pub browser_session: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
}

/// An OpenID Connect client (an application) was registered in the tenant. A confidential
/// client's secret is recorded only as its blind index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistered {
    pub kind: ClientKind,
    pub settings: ClientSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<BlindIndex>,
}

/// A client's settings changed (the whole set is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdated {
    pub settings: ClientSettings,
}

/// A confidential client's secret was replaced; the old one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSecretRotated {
    pub secret: BlindIndex,
}

/// A client was removed: it can no longer sign anyone in, and its tokens stop working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRemoved {}

/// A client obtained tokens for itself (client credentials; recorded at most once a minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsUsed {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// `user` consented to `client` receiving `scopes` (all scopes consented to so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentGranted {
    pub user: UserId,
    pub client: String,
    pub scopes: BTreeSet<String>,
}

/// The consent was taken back: the client must ask again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRevoked {}

/// A tenant administrator added an upstream OpenID Connect provider people may sign in through,
/// or changed it. `secret` is the client secret idstream presents to it, sealed (absent: kept as
/// it was, or none for a client without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfigured {
    pub settings: IdentityProviderSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Sealed>,
}

/// The upstream provider was removed: nobody signs in through it any more (its links stay, and
/// work again if it is configured anew under the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderRemoved {}

/// An identity of the upstream `provider` (the aggregate, named by a blind index of the provider
/// and the subject) now signs `user` in, linked `via` a verified address, a provisioning or the
/// person's own choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityLinked {
    pub user: UserId,
    pub provider: String,
    pub via: LinkVia,
}

/// The upstream identity no longer signs `user` in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityUnlinked {
    pub user: UserId,
    pub provider: String,
}

/// A user was invited to the tenant with `roles`, the link sent by email or handed to the
/// inviter (`delivery`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationSent {
    pub user: UserId,
    pub roles: BTreeSet<RoleName>,
    pub token: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    pub delivery: InvitationDelivery,
}

/// How an invitation's link reaches the invitee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationDelivery {
    /// The service emails it.
    #[default]
    Email,
    /// The inviter gets it in the answer (once) and passes it on through their own channels; no
    /// mail is sent.
    Link,
}

/// A user was invited to the tenant with `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "InvitationSent")]
pub struct InvitationSentV1 {
    pub user: UserId,
    pub roles: BTreeSet<RoleName>,
    pub token: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
}

/// Version 1 knew only email delivery.
impl From<InvitationSentV1> for InvitationSent {
    fn from(v1: InvitationSentV1) -> InvitationSent {
        InvitationSent {
            user: v1.user,
            roles: v1.roles,
            token: v1.token,
            expires_at: v1.expires_at,
            delivery: InvitationDelivery::Email,
        }
    }
}

/// The invitation was sent again with a new token; the old one is dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationResent {
    pub token: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
}

/// The invitation was accepted (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationAccepted {}

/// The invitation was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRevoked {}

/// An API key was issued to `owner` in the tenant. Only its secret's blind index is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIssued {
    pub owner: UserId,
    pub name: String,
    pub secret: BlindIndex,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
    /// The permissions the key is limited to (never more than its owner holds at the time of a
    /// check); absent for the owner's full permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<BTreeSet<Permission>>,
}

/// An API key was revoked; it stops working at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRevoked {}

/// An API key was used (recorded at most once a minute per key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyUsed {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// The tamper-evidence chain was checkpointed (aggregate `chain`, id `log`, no tenant).
///
/// `link` is the hash chain's value after the event at position `to`; `links` holds the first
/// eight bytes of the chain's value after every event in `from..=to`, so a verifier can name the
/// first event that changed. The service's signing key signs all of it. How links and the signed
/// statement are computed is specified in the `idstream-chain` crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainCheckpointed {
    /// The first position covered: one after the previous checkpoint's `to` (1 for the first).
    pub from: u64,
    /// The last position covered; always before this event's own position.
    pub to: u64,
    /// The chain link after position `to`: SHA-256, 64 lower-case hex digits.
    pub link: String,
    /// The first 8 bytes of the link after each of positions `from..=to`, concatenated, in
    /// standard base64.
    pub links: String,
    /// The id (RFC 7638 thumbprint) of the Ed25519 key that signed.
    pub key: String,
    /// That key's public half, base64url without padding (a JWK's `x`).
    pub public_key: String,
    /// The Ed25519 signature over the checkpoint statement, base64url without padding.
    pub signature: String,
}

// ---- earlier versions, still in logs: read and upcast to the current one ----------------------
//
// Each keeps the name, documentation and fields it was published with, so that its checked-in
// schema (`<type>.v<version>.json`) stays what it was; `From` says how it reads as the current
// version. They are listed in the `upcast` part of the catalogue below.

/// A sign-in failed for this account (wrong password or second factor). `failures` counts the
/// consecutive failures in the current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SignInFailed")]
pub struct SignInFailedV1 {
    pub failures: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
}

/// Version 1 recorded no source: it reads as a failure from an unknown client.
impl From<SignInFailedV1> for SignInFailed {
    fn from(v1: SignInFailedV1) -> SignInFailed {
        SignInFailed {
            failures: v1.failures,
            at: v1.at,
            ip: None,
            user_agent: None,
        }
    }
}

/// A user signed in: a session (the aggregate) started in `tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SessionStarted")]
pub struct SessionStartedV1 {
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethodV1,
    /// Blind index of the session's refresh token.
    pub refresh: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
}

/// Version 1 recorded no source and knew no remembering: it reads as an ordinary sign-in from an
/// unknown client.
impl From<SessionStartedV1> for SessionStarted {
    fn from(v1: SessionStartedV1) -> SessionStarted {
        SessionStarted {
            user: v1.user,
            tenant: v1.tenant,
            method: v1.method.into(),
            refresh: v1.refresh,
            at: v1.at,
            expires_at: v1.expires_at,
            idle_timeout_seconds: v1.idle_timeout_seconds,
            ip: None,
            user_agent: None,
            remembered: false,
        }
    }
}

/// A user signed in: a session (the aggregate) started in `tenant`. `ip` and `user_agent` say
/// where from (personal data: see [`PERSONAL_DATA`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SessionStarted")]
pub struct SessionStartedV2 {
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethodV1,
    /// Blind index of the session's refresh token.
    pub refresh: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
    /// The IP address the user signed in from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header of the sign-in, at most 256 characters, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Version 2 knew no remembering: every session it records ends at its tenant's ordinary
/// absolute lifetime.
impl From<SessionStartedV2> for SessionStarted {
    fn from(v2: SessionStartedV2) -> SessionStarted {
        SessionStarted {
            user: v2.user,
            tenant: v2.tenant,
            method: v2.method.into(),
            refresh: v2.refresh,
            at: v2.at,
            expires_at: v2.expires_at,
            idle_timeout_seconds: v2.idle_timeout_seconds,
            ip: v2.ip,
            user_agent: v2.user_agent,
            remembered: false,
        }
    }
}

// Version 3 of `SessionStarted`, before passkeys: its methods are those of `SignInMethodV1`
// (the doc comment is the published schema's description, which does not change).
/// A user signed in: a session (the aggregate) started in `tenant`. `ip` and `user_agent` say
/// where from (personal data: see [`PERSONAL_DATA`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SessionStarted")]
pub struct SessionStartedV3 {
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethodV1,
    /// Blind index of the session's refresh token.
    pub refresh: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
    /// The IP address the user signed in from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header of the sign-in, at most 256 characters, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The user asked to be remembered and the tenant allows it (`remember_days` above 0):
    /// `expires_at` is the remembered lifetime's end, not the ordinary one's.
    pub remembered: bool,
}

/// Version 3 differs only in the methods it knows, all of which version 4 knows.
impl From<SessionStartedV3> for SessionStarted {
    fn from(v3: SessionStartedV3) -> SessionStarted {
        SessionStarted {
            user: v3.user,
            tenant: v3.tenant,
            method: v3.method.into(),
            refresh: v3.refresh,
            at: v3.at,
            expires_at: v3.expires_at,
            idle_timeout_seconds: v3.idle_timeout_seconds,
            ip: v3.ip,
            user_agent: v3.user_agent,
            remembered: v3.remembered,
        }
    }
}

// Version 4 of `SessionStarted`, before upstream providers: its methods are those of
// `SignInMethodV2` (the doc comment is the published schema's description, which does not change).
/// A user signed in: a session (the aggregate) started in `tenant`. `ip` and `user_agent` say
/// where from (personal data: see [`PERSONAL_DATA`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SessionStarted")]
pub struct SessionStartedV4 {
    pub user: UserId,
    pub tenant: TenantId,
    pub method: SignInMethodV2,
    /// Blind index of the session's refresh token.
    pub refresh: BlindIndex,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
    /// The IP address the user signed in from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header of the sign-in, at most 256 characters, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The user asked to be remembered and the tenant allows it (`remember_days` above 0):
    /// `expires_at` is the remembered lifetime's end, not the ordinary one's.
    pub remembered: bool,
}

/// Version 4 differs only in the methods it knows, all of which version 5 knows.
impl From<SessionStartedV4> for SessionStarted {
    fn from(v4: SessionStartedV4) -> SessionStarted {
        SessionStarted {
            user: v4.user,
            tenant: v4.tenant,
            method: v4.method.into(),
            refresh: v4.refresh,
            at: v4.at,
            expires_at: v4.expires_at,
            idle_timeout_seconds: v4.idle_timeout_seconds,
            ip: v4.ip,
            user_agent: v4.user_agent,
            remembered: v4.remembered,
        }
    }
}

/// A tenant's settings changed (the whole set is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettingsChanged")]
pub struct TenantSettingsChangedV1 {
    pub settings: TenantSettingsV1,
}

/// A tenant's settings. Defaults follow common practice (Keycloak's session defaults: 30 minutes
/// idle, 10 hours at most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettings")]
pub struct TenantSettingsV1 {
    /// People may sign themselves up.
    pub self_registration: bool,
    /// The role self-registered users get.
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicySettings,
    /// How long an invitation stays valid, in hours (1 to 720).
    pub invitation_ttl_hours: u32,
    /// A session without activity ends after this many minutes (1 to 43200).
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in whatever happens (1 to 8760).
    pub session_max_hours: u32,
    /// How long a magic link or emailed one-time code stays valid, in minutes (1 to 60).
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
}

/// Version 1 knew no remembering: its tenants remember sessions for the default
/// `remember_days` (30) until their settings change again.
impl From<TenantSettingsChangedV1> for TenantSettingsChanged {
    fn from(v1: TenantSettingsChangedV1) -> TenantSettingsChanged {
        let s = v1.settings;
        TenantSettingsChanged {
            settings: TenantSettings {
                self_registration: s.self_registration,
                default_role: s.default_role,
                require_email_verification: s.require_email_verification,
                password_policy: s.password_policy,
                invitation_ttl_hours: s.invitation_ttl_hours,
                session_idle_minutes: s.session_idle_minutes,
                session_max_hours: s.session_max_hours,
                magic_link_ttl_minutes: s.magic_link_ttl_minutes,
                mfa_required: s.mfa_required,
                remember_days: TenantSettings::default().remember_days,
                verify_created_users: false,
                ..TenantSettings::default()
            },
        }
    }
}

// Version 2 of `TenantSettingsChanged`: no setting for administrator-created users.
/// A tenant's settings changed (the whole set is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettingsChanged")]
pub struct TenantSettingsChangedV2 {
    pub settings: TenantSettingsV2,
}

/// A tenant's settings. Defaults follow common practice (Keycloak's session defaults: 30 minutes
/// idle, 10 hours at most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettings")]
pub struct TenantSettingsV2 {
    /// People may sign themselves up.
    pub self_registration: bool,
    /// The role self-registered users get.
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicySettings,
    /// How long an invitation stays valid, in hours (1 to 720).
    pub invitation_ttl_hours: u32,
    /// A session without activity ends after this many minutes (1 to 43200).
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in whatever happens, unless it is remembered
    /// (see `remember_days`) (1 to 8760).
    pub session_max_hours: u32,
    /// How long a magic link or emailed one-time code stays valid, in minutes (1 to 60).
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
    /// A sign-in with `remember` starts a session that ends this many days after sign-in instead
    /// of `session_max_hours` after it (the longer of the two); the idle timeout still applies.
    /// 0 turns remembering off, and `remember` is then ignored (0 to 365).
    pub remember_days: u32,
}

/// Version 2 knew no verification of administrator-created users: they were active at once.
impl From<TenantSettingsChangedV2> for TenantSettingsChanged {
    fn from(v2: TenantSettingsChangedV2) -> TenantSettingsChanged {
        let s = v2.settings;
        TenantSettingsChanged {
            settings: TenantSettings {
                self_registration: s.self_registration,
                default_role: s.default_role,
                require_email_verification: s.require_email_verification,
                password_policy: s.password_policy,
                invitation_ttl_hours: s.invitation_ttl_hours,
                session_idle_minutes: s.session_idle_minutes,
                session_max_hours: s.session_max_hours,
                magic_link_ttl_minutes: s.magic_link_ttl_minutes,
                mfa_required: s.mfa_required,
                remember_days: s.remember_days,
                verify_created_users: false,
                ..TenantSettings::default()
            },
        }
    }
}

// Version 4 of `TenantSettingsChanged`: no requirement of phishing-resistant factors for
// administrators.
/// A tenant's settings changed (the whole set is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettingsChanged")]
pub struct TenantSettingsChangedV4 {
    pub settings: TenantSettingsV4,
}

/// A tenant's settings. Defaults follow common practice (Keycloak's session defaults: 30 minutes
/// idle, 10 hours at most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettings")]
pub struct TenantSettingsV4 {
    /// People may sign themselves up.
    pub self_registration: bool,
    /// The role self-registered users get.
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicySettings,
    /// How long an invitation stays valid, in hours (1 to 720).
    pub invitation_ttl_hours: u32,
    /// A session without activity ends after this many minutes (1 to 43200).
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in whatever happens, unless it is remembered
    /// (see `remember_days`) (1 to 8760).
    pub session_max_hours: u32,
    /// How long a magic link or emailed one-time code stays valid, in minutes (1 to 60).
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
    /// A sign-in with `remember` starts a session that ends this many days after sign-in instead
    /// of `session_max_hours` after it (the longer of the two); the idle timeout still applies.
    /// 0 turns remembering off, and `remember` is then ignored (0 to 365).
    pub remember_days: u32,
    /// Users an administrator creates (rather than invites) must verify their address too:
    /// they are created waiting for verification, are sent a verification link, and sign in
    /// once they have followed it (as self-registered users do when
    /// `require_email_verification` is on).
    #[serde(default)]
    pub verify_created_users: bool,
    /// The address of the tenant's logo, shown at the top of its mails: `https:`, at most
    /// 2048 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// The colour of the tenant's mails (their top border and buttons), `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_colour: Option<String>,
    /// The language (one of [`LANGUAGES`]) of the mails sent on an administrator's behalf
    /// (invitations, verification of created users), and of the others when neither the
    /// person nor their browser names one of [`LANGUAGES`].
    #[serde(default = "default_language_v4")]
    pub language: String,
}

fn default_language_v4() -> String {
    TenantSettings::default().language
}

/// Version 4 could not require phishing-resistant factors of administrators: it did not.
impl From<TenantSettingsChangedV4> for TenantSettingsChanged {
    fn from(v4: TenantSettingsChangedV4) -> TenantSettingsChanged {
        let s = v4.settings;
        TenantSettingsChanged {
            settings: TenantSettings {
                self_registration: s.self_registration,
                default_role: s.default_role,
                require_email_verification: s.require_email_verification,
                password_policy: s.password_policy,
                invitation_ttl_hours: s.invitation_ttl_hours,
                session_idle_minutes: s.session_idle_minutes,
                session_max_hours: s.session_max_hours,
                magic_link_ttl_minutes: s.magic_link_ttl_minutes,
                mfa_required: s.mfa_required,
                remember_days: s.remember_days,
                verify_created_users: s.verify_created_users,
                logo_url: s.logo_url,
                brand_colour: s.brand_colour,
                language: s.language,
                phishing_resistant_admins: false,
            },
        }
    }
}

// Version 3 of `TenantSettingsChanged`: no branding (logo, colour) and no language.
/// A tenant's settings changed (the whole set is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettingsChanged")]
pub struct TenantSettingsChangedV3 {
    pub settings: TenantSettingsV3,
}

/// A tenant's settings. Defaults follow common practice (Keycloak's session defaults: 30 minutes
/// idle, 10 hours at most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TenantSettings")]
pub struct TenantSettingsV3 {
    /// People may sign themselves up.
    pub self_registration: bool,
    /// The role self-registered users get.
    pub default_role: RoleName,
    /// Self-registered users must verify their email before signing in.
    pub require_email_verification: bool,
    pub password_policy: PasswordPolicySettings,
    /// How long an invitation stays valid, in hours (1 to 720).
    pub invitation_ttl_hours: u32,
    /// A session without activity ends after this many minutes (1 to 43200).
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in whatever happens, unless it is remembered
    /// (see `remember_days`) (1 to 8760).
    pub session_max_hours: u32,
    /// How long a magic link or emailed one-time code stays valid, in minutes (1 to 60).
    pub magic_link_ttl_minutes: u32,
    /// Members must use a second factor.
    pub mfa_required: bool,
    /// A sign-in with `remember` starts a session that ends this many days after sign-in instead
    /// of `session_max_hours` after it (the longer of the two); the idle timeout still applies.
    /// 0 turns remembering off, and `remember` is then ignored (0 to 365).
    pub remember_days: u32,
    /// Users an administrator creates (rather than invites) must verify their address too:
    /// they are created waiting for verification, are sent a verification link, and sign in
    /// once they have followed it (as self-registered users do when
    /// `require_email_verification` is on).
    #[serde(default)]
    pub verify_created_users: bool,
}

/// Version 3 knew no branding and no language: its tenants' mails have no logo, the default
/// colour, and English.
impl From<TenantSettingsChangedV3> for TenantSettingsChanged {
    fn from(v3: TenantSettingsChangedV3) -> TenantSettingsChanged {
        let s = v3.settings;
        TenantSettingsChanged {
            settings: TenantSettings {
                self_registration: s.self_registration,
                default_role: s.default_role,
                require_email_verification: s.require_email_verification,
                password_policy: s.password_policy,
                invitation_ttl_hours: s.invitation_ttl_hours,
                session_idle_minutes: s.session_idle_minutes,
                session_max_hours: s.session_max_hours,
                magic_link_ttl_minutes: s.magic_link_ttl_minutes,
                mfa_required: s.mfa_required,
                remember_days: s.remember_days,
                verify_created_users: s.verify_created_users,
                ..TenantSettings::default()
            },
        }
    }
}

/// Why an envelope could not be turned into a [`DomainEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type} version {version}")]
    Unknown { event_type: String, version: u32 },
    #[error("event {event_type} v{version} has an invalid payload: {source}")]
    Payload {
        event_type: String,
        version: u32,
        source: serde_json::Error,
    },
    #[error("event {event_type} belongs to a {expected:?} aggregate, not {actual:?}")]
    WrongAggregate {
        event_type: String,
        expected: AggregateType,
        actual: AggregateType,
    },
}

/// Declares the closed set of events: the enum, the catalogue, names, payload encoding, decoding
/// and schema generation all come from this one list of (type, current version, aggregate type),
/// followed by the earlier versions still read (`upcast`: type, version, the payload type that
/// reads it and converts `Into` the current one).
macro_rules! catalogue {
    (
        current {
            $($name:ident => $version:literal, $aggregate:ident;)*
        }
        upcast {
            $($old:ident => $old_version:literal, $old_type:ident;)*
        }
    ) => {
        /// Every event idstream writes, as a closed set. Decoding from an envelope goes through
        /// [`DomainEvent::decode`], which is where old versions are upcast.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum DomainEvent {
            $($name($name),)*
        }

        /// (type, current version, aggregate type) of every event: the catalogue the schemas and
        /// the subscriber contract are generated from.
        pub const CATALOGUE: &[(&str, u32, AggregateType)] = &[
            $((stringify!($name), $version, AggregateType::$aggregate),)*
        ];

        /// (type, version) of every earlier version that is still read, upcast to the current
        /// one by [`DomainEvent::decode`]. Their schemas stay published.
        pub const EARLIER_VERSIONS: &[(&str, u32)] = &[
            $((stringify!($old), $old_version),)*
        ];

        impl DomainEvent {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(DomainEvent::$name(_) => stringify!($name),)*
                }
            }

            /// The schema version this build writes.
            pub fn version(&self) -> u32 {
                match self {
                    $(DomainEvent::$name(_) => $version,)*
                }
            }

            pub fn aggregate_type(&self) -> AggregateType {
                match self {
                    $(DomainEvent::$name(_) => AggregateType::$aggregate,)*
                }
            }

            fn data(&self) -> serde_json::Value {
                let value = match self {
                    $(DomainEvent::$name(e) => serde_json::to_value(e),)*
                };
                // Serialising these plain structs cannot fail: no maps with non-string keys.
                value.expect("event payloads serialise to JSON")
            }

            fn decode_payload(envelope: &EventEnvelope) -> Result<DomainEvent, DecodeError> {
                fn payload<T: DeserializeOwned>(e: &EventEnvelope) -> Result<T, DecodeError> {
                    T::deserialize(&e.data).map_err(|source| DecodeError::Payload {
                        event_type: e.event_type.clone(),
                        version: e.version,
                        source,
                    })
                }
                Ok(match (envelope.event_type.as_str(), envelope.version) {
                    $((stringify!($name), $version) => DomainEvent::$name(payload(envelope)?),)*
                    $((stringify!($old), $old_version) => {
                        DomainEvent::$old(payload::<$old_type>(envelope)?.into())
                    })*
                    (t, v) => {
                        return Err(DecodeError::Unknown {
                            event_type: t.to_owned(),
                            version: v,
                        });
                    }
                })
            }
        }

        /// The JSON Schema of a catalogued (type, version), if there is one.
        pub fn schema_of(event_type: &str, version: u32) -> Option<schemars::Schema> {
            match (event_type, version) {
                $((stringify!($name), $version) => Some(schemars::schema_for!($name)),)*
                $((stringify!($old), $old_version) => Some(schemars::schema_for!($old_type)),)*
                _ => None,
            }
        }
    };
}

// ---- earlier versions of access events, upcast on reading -------------------------------------

// ---- version 1 of the events that carry permissions (before `members.<role>`) -----------------

/// A permission `resource:action`, validated. Its text form is what roles, users and API keys store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(
    rename = "Permission",
    with = "String",
    extend("pattern" = PERMISSION_PATTERN_V1)
)]
pub struct PermissionV1(pub Permission);

fn upcast_permissions(v1: BTreeSet<PermissionV1>) -> BTreeSet<Permission> {
    v1.into_iter().map(|p| p.0).collect()
}

/// One entry of a role's menu: a label, where it leads, optionally the permission it needs (items
/// a user lacks the permission for are left out of their menu), and sub-items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MenuItem")]
pub struct MenuItemV1 {
    /// Stable id of the item, unique within a menu; menus of several roles merge by id.
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<PermissionV1>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<MenuItemV1>,
}

impl From<MenuItemV1> for MenuItem {
    fn from(v1: MenuItemV1) -> MenuItem {
        MenuItem {
            id: v1.id,
            label: v1.label,
            href: v1.href,
            icon: v1.icon,
            permission: v1.permission.map(|p| p.0),
            children: v1.children.into_iter().map(MenuItem::from).collect(),
        }
    }
}

/// A custom role was defined in a tenant (the aggregate id is the role name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RoleDefined")]
pub struct RoleDefinedV1 {
    pub description: String,
    pub permissions: BTreeSet<PermissionV1>,
    /// Global access: every permission, bypassing row- and field-level security.
    pub global_access: bool,
}

impl From<RoleDefinedV1> for RoleDefined {
    fn from(v1: RoleDefinedV1) -> RoleDefined {
        RoleDefined {
            description: v1.description,
            permissions: upcast_permissions(v1.permissions),
            global_access: v1.global_access,
        }
    }
}

/// A role's definition was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RoleUpdated")]
pub struct RoleUpdatedV1 {
    pub description: String,
    pub permissions: BTreeSet<PermissionV1>,
    pub global_access: bool,
}

impl From<RoleUpdatedV1> for RoleUpdated {
    fn from(v1: RoleUpdatedV1) -> RoleUpdated {
        RoleUpdated {
            description: v1.description,
            permissions: upcast_permissions(v1.permissions),
            global_access: v1.global_access,
        }
    }
}

/// A role's menu layout was set (an empty menu removes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RoleMenuSet")]
pub struct RoleMenuSetV1 {
    pub menu: Vec<MenuItemV1>,
}

impl From<RoleMenuSetV1> for RoleMenuSet {
    fn from(v1: RoleMenuSetV1) -> RoleMenuSet {
        RoleMenuSet {
            menu: v1.menu.into_iter().map(MenuItem::from).collect(),
        }
    }
}

/// Custom permissions were taken from a user in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PermissionsRevoked")]
pub struct PermissionsRevokedV1 {
    pub user: UserId,
    pub permissions: BTreeSet<PermissionV1>,
}

impl From<PermissionsRevokedV1> for PermissionsRevoked {
    fn from(v1: PermissionsRevokedV1) -> PermissionsRevoked {
        PermissionsRevoked {
            user: v1.user,
            permissions: upcast_permissions(v1.permissions),
        }
    }
}

/// An API key was issued to `owner` in the tenant. Only its secret's blind index is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ApiKeyIssued")]
pub struct ApiKeyIssuedV1 {
    pub owner: UserId,
    pub name: String,
    pub secret: BlindIndex,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<OffsetDateTime>,
    /// The permissions the key is limited to (never more than its owner holds at the time of a
    /// check); absent for the owner's full permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<BTreeSet<PermissionV1>>,
}

impl From<ApiKeyIssuedV1> for ApiKeyIssued {
    fn from(v1: ApiKeyIssuedV1) -> ApiKeyIssued {
        ApiKeyIssued {
            owner: v1.owner,
            name: v1.name,
            secret: v1.secret,
            expires_at: v1.expires_at,
            restriction: v1.restriction.map(upcast_permissions),
        }
    }
}

// Version 1 of `UserProfileChanged`: no phone number.
/// A user's profile changed (the whole profile is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserProfileChanged")]
pub struct UserProfileChangedV1 {
    pub first_name: String,
    pub last_name: String,
    /// An `https://` (or `http://`) URL of the user's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Notification topics the user wants (`true`) or not (`false`), e.g. `security_alerts`.
    #[serde(default)]
    pub notifications: std::collections::BTreeMap<String, bool>,
}

impl From<UserProfileChangedV1> for UserProfileChanged {
    fn from(v1: UserProfileChangedV1) -> UserProfileChanged {
        UserProfileChanged {
            first_name: v1.first_name,
            last_name: v1.last_name,
            image_url: v1.image_url,
            notifications: v1.notifications,
            phone: None,
            language: None,
        }
    }
}

// Version 2 of `UserProfileChanged`: no language.
/// A user's profile changed (the whole profile is recorded, not a patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserProfileChanged")]
pub struct UserProfileChangedV2 {
    pub first_name: String,
    pub last_name: String,
    /// An `https://` (or `http://`) URL of the user's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Notification topics the user wants (`true`) or not (`false`), e.g. `security_alerts`.
    #[serde(default)]
    pub notifications: std::collections::BTreeMap<String, bool>,
    /// The user's phone number in E.164 form (`+` and up to 15 digits), when they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Version 2 knew no language: its users chose none.
impl From<UserProfileChangedV2> for UserProfileChanged {
    fn from(v2: UserProfileChangedV2) -> UserProfileChanged {
        UserProfileChanged {
            first_name: v2.first_name,
            last_name: v2.last_name,
            image_url: v2.image_url,
            notifications: v2.notifications,
            phone: v2.phone,
            language: None,
        }
    }
}

// Version 1 of `FieldRulesChanged`: rules only hid fields.
/// The fields of an entity hidden from one role were set (empty: none hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FieldRulesChanged")]
pub struct FieldRulesChangedV1 {
    pub role: RoleName,
    pub hidden: BTreeSet<FieldName>,
}

impl From<FieldRulesChangedV1> for FieldRulesChanged {
    fn from(v1: FieldRulesChangedV1) -> FieldRulesChanged {
        FieldRulesChanged {
            role: v1.role,
            hidden: v1.hidden,
            unsearchable: BTreeSet::new(),
        }
    }
}

// Version 1 of `RoleAssigned`: every assignment was for good.
/// A user was given a role in a tenant (the envelope's tenant; the aggregate is the membership).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RoleAssigned")]
pub struct RoleAssignedV1 {
    pub user: UserId,
    pub role: RoleName,
}

impl From<RoleAssignedV1> for RoleAssigned {
    fn from(v1: RoleAssignedV1) -> RoleAssigned {
        RoleAssigned {
            user: v1.user,
            role: v1.role,
            expires_at: None,
        }
    }
}

// Version 1 of `PermissionsGranted`: every grant was for good.
/// Custom permissions were given to a user in a tenant, on top of their roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PermissionsGranted")]
pub struct PermissionsGrantedV1 {
    pub user: UserId,
    pub permissions: BTreeSet<PermissionV1>,
}

impl From<PermissionsGrantedV1> for PermissionsGranted {
    fn from(v1: PermissionsGrantedV1) -> PermissionsGranted {
        PermissionsGranted {
            user: v1.user,
            permissions: upcast_permissions(v1.permissions),
            expires_at: None,
        }
    }
}

// Version 1 of `RecordGranted`: every grant was for good.
/// A user was granted access to one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RecordGranted")]
pub struct RecordGrantedV1 {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub access: RecordAccess,
}

impl From<RecordGrantedV1> for RecordGranted {
    fn from(v1: RecordGrantedV1) -> RecordGranted {
        RecordGranted {
            entity: v1.entity,
            record: v1.record,
            user: v1.user,
            access: v1.access,
            expires_at: None,
        }
    }
}

// Version 1 of `LocalRoleAssigned`: every local role was for good.
/// A user was given a role on one record only (a local role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "LocalRoleAssigned")]
pub struct LocalRoleAssignedV1 {
    pub entity: EntityName,
    pub record: RecordId,
    pub user: UserId,
    pub role: RoleName,
}

impl From<LocalRoleAssignedV1> for LocalRoleAssigned {
    fn from(v1: LocalRoleAssignedV1) -> LocalRoleAssigned {
        LocalRoleAssigned {
            entity: v1.entity,
            record: v1.record,
            user: v1.user,
            role: v1.role,
            expires_at: None,
        }
    }
}

catalogue! {
    current {
        TenantCreated => 1, Tenant;
        TenantRenamed => 1, Tenant;
        TenantSettingsChanged => 5, Tenant;
        ResourceDefined => 1, Tenant;
        ResourceRemoved => 1, Tenant;
        UserAttributeDefined => 1, Tenant;
        UserAttributeRemoved => 1, Tenant;
        UserRegistered => 1, User;
        UserInvited => 1, User;
        UserSuspended => 1, User;
        UserReinstated => 1, User;
        UserDeactivated => 1, User;
        UserReactivated => 1, User;
        UserErased => 1, User;
        UserFlagsChanged => 1, User;
        RoleAssigned => 2, Membership;
        RoleRevoked => 1, Membership;
        PermissionsGranted => 2, Membership;
        PermissionsRevoked => 2, Membership;
        MemberRemoved => 1, Membership;
        RoleLapsed => 1, Membership;
        PermissionsLapsed => 1, Membership;
        EmailClaimed => 1, Email;
        EmailReleased => 1, Email;
        RoleDefined => 2, Role;
        RoleUpdated => 2, Role;
        RoleMenuSet => 2, Role;
        RoleDeleted => 1, Role;
        RoleRelabelled => 1, Role;
        EntityRegistered => 1, Entity;
        EntityFieldsChanged => 1, Entity;
        EntityRlsChanged => 1, Entity;
        EntityPolicyChanged => 1, Entity;
        FieldRulesChanged => 2, Entity;
        RecordOwnerSet => 1, Record;
        RecordGranted => 2, Record;
        RecordRevoked => 1, Record;
        LocalRoleAssigned => 2, Record;
        LocalRoleRevoked => 1, Record;
        RecordGrantLapsed => 1, Record;
        LocalRoleLapsed => 1, Record;
        UserActivated => 1, User;
        EmailVerified => 1, User;
        UserProfileChanged => 3, User;
        UserAttributesChanged => 1, User;
        UserProvisioningIdsChanged => 1, User;
        EmailChangeRequested => 1, User;
        EmailChanged => 1, User;
        PasswordSet => 1, Credentials;
        SignInFailed => 2, Credentials;
        AccountLocked => 1, Credentials;
        SignInFailuresCleared => 1, Credentials;
        AccountUnlocked => 1, Credentials;
        SecretTokenIssued => 1, Credentials;
        SecretTokenRedeemed => 1, Credentials;
        SecretTokenMissed => 1, Credentials;
        TotpEnrolmentStarted => 1, Credentials;
        TotpEnabled => 1, Credentials;
        TotpCodeUsed => 1, Credentials;
        TotpDisabled => 1, Credentials;
        RecoveryCodesGenerated => 1, Credentials;
        RecoveryCodeUsed => 1, Credentials;
        PasskeyRegistered => 1, Credentials;
        PasskeyUsed => 1, Credentials;
        PasskeyRemoved => 1, Credentials;
        PasskeyCounterRegressed => 1, Credentials;
        SessionStarted => 5, Session;
        SessionRefreshed => 1, Session;
        SessionTenantSwitched => 1, Session;
        SessionRevoked => 2, Session;
        AuthorizationCodeIssued => 1, Session;
        InvitationSent => 2, Invitation;
        InvitationResent => 1, Invitation;
        InvitationAccepted => 1, Invitation;
        InvitationRevoked => 1, Invitation;
        ApiKeyIssued => 2, ApiKey;
        ApiKeyRevoked => 1, ApiKey;
        ApiKeyUsed => 1, ApiKey;
        ChainCheckpointed => 1, Chain;
        AdminRemovalReserved => 1, AdminGuard;
        AdminRemovalSettled => 1, AdminGuard;
        ClientRegistered => 1, Client;
        ClientUpdated => 1, Client;
        ClientSecretRotated => 1, Client;
        ClientRemoved => 1, Client;
        ClientCredentialsUsed => 1, Client;
        ConsentGranted => 1, Consent;
        ConsentRevoked => 1, Consent;
        IdentityProviderConfigured => 1, IdentityProvider;
        IdentityProviderRemoved => 1, IdentityProvider;
        IdentityLinked => 1, ExternalIdentity;
        IdentityUnlinked => 1, ExternalIdentity;
    }

    upcast {
        SignInFailed => 1, SignInFailedV1;
        SessionStarted => 1, SessionStartedV1;
        SessionStarted => 2, SessionStartedV2;
        SessionStarted => 3, SessionStartedV3;
        SessionStarted => 4, SessionStartedV4;
        TenantSettingsChanged => 1, TenantSettingsChangedV1;
        TenantSettingsChanged => 2, TenantSettingsChangedV2;
        TenantSettingsChanged => 3, TenantSettingsChangedV3;
        TenantSettingsChanged => 4, TenantSettingsChangedV4;
        InvitationSent => 1, InvitationSentV1;
        RoleAssigned => 1, RoleAssignedV1;
        PermissionsGranted => 1, PermissionsGrantedV1;
        RecordGranted => 1, RecordGrantedV1;
        LocalRoleAssigned => 1, LocalRoleAssignedV1;
        FieldRulesChanged => 1, FieldRulesChangedV1;
        UserProfileChanged => 1, UserProfileChangedV1;
        UserProfileChanged => 2, UserProfileChangedV2;
        RoleDefined => 1, RoleDefinedV1;
        RoleUpdated => 1, RoleUpdatedV1;
        RoleMenuSet => 1, RoleMenuSetV1;
        PermissionsRevoked => 1, PermissionsRevokedV1;
        ApiKeyIssued => 1, ApiKeyIssuedV1;
        SessionRevoked => 1, SessionRevokedV1;
    }
}

impl DomainEvent {
    /// Wraps this event for the log. The stream key must be of this event's aggregate type.
    pub fn into_envelope(self, id: Ulid, stream: &StreamKey, meta: &Metadata) -> EventEnvelope {
        debug_assert_eq!(stream.aggregate.kind, self.aggregate_type());
        EventEnvelope {
            id,
            event_type: self.event_type().to_owned(),
            version: self.version(),
            tenant: stream.tenant.clone(),
            aggregate: stream.aggregate.clone(),
            actor: meta.actor.clone(),
            occurred_at: meta.occurred_at,
            correlation_id: meta.correlation_id.clone(),
            causation_id: meta.causation_id.clone(),
            data: self.data(),
        }
    }

    /// Reads an envelope's payload, upcasting older versions to the current one.
    pub fn decode(envelope: &EventEnvelope) -> Result<DomainEvent, DecodeError> {
        let event = DomainEvent::decode_payload(envelope)?;
        if event.aggregate_type() != envelope.aggregate.kind {
            return Err(DecodeError::WrongAggregate {
                event_type: envelope.event_type.clone(),
                expected: event.aggregate_type(),
                actual: envelope.aggregate.kind,
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Actor;
    use time::macros::datetime;

    #[test]
    fn an_event_survives_the_trip_through_its_envelope_and_json() {
        let user = UserId::new(Ulid::from_parts(7, 7));
        let event = DomainEvent::RoleAssigned(RoleAssigned {
            user,
            role: "admin".parse().unwrap(),
            expires_at: Some(datetime!(2026-04-01 12:00 UTC)),
        });
        let stream = StreamKey::new(
            Some("acme".parse().unwrap()),
            AggregateType::Membership,
            user.to_string(),
        );
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c1".into(),
            causation_id: None,
        };
        let envelope = event
            .clone()
            .into_envelope(Ulid::from_parts(1, 1), &stream, &meta);
        let json = serde_json::to_string(&envelope).unwrap();
        let back: EventEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(DomainEvent::decode(&back).unwrap(), event);
        assert_eq!(
            back.subject(),
            format!("idstream.events.acme.membership.{user}")
        );
    }

    #[test]
    fn earlier_versions_are_upcast_and_the_owner_of_personal_data_is_found() {
        let user = UserId::new(Ulid::from_parts(7, 7));
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c1".into(),
            causation_id: None,
        };
        let session = StreamKey::new(
            None,
            AggregateType::Session,
            Ulid::from_parts(9, 9).to_string(),
        );
        let current = DomainEvent::SessionStarted(SessionStarted {
            user,
            tenant: "acme".parse().unwrap(),
            method: SignInMethod::Password,
            refresh: BlindIndex::from_bytes(&[1; 32]),
            at: meta.occurred_at,
            expires_at: meta.occurred_at,
            idle_timeout_seconds: 60,
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            remembered: true,
        });
        let mut envelope = current.clone().into_envelope(Ulid::nil(), &session, &meta);
        assert_eq!(envelope.version, 5);
        assert_eq!(
            personal_data_owner(&envelope),
            Some(user.to_string().as_str())
        );

        // Version 3, as written before passkeys, reads the same; it knows no passkey method.
        envelope.version = 3;
        assert_eq!(DomainEvent::decode(&envelope).unwrap(), current);
        let mut passkey = envelope.clone();
        passkey.data["method"] = "passkey".into();
        assert!(matches!(
            DomainEvent::decode(&passkey),
            Err(DecodeError::Payload { .. })
        ));
        passkey.version = 4;
        let DomainEvent::SessionStarted(v4) = DomainEvent::decode(&passkey).unwrap() else {
            panic!("not a SessionStarted");
        };
        assert_eq!(v4.method, SignInMethod::Passkey);

        // Version 4, as written before upstream providers, knows no federated method; 5 does.
        let mut federated = passkey.clone();
        federated.data["method"] = "federated_and_totp".into();
        assert!(matches!(
            DomainEvent::decode(&federated),
            Err(DecodeError::Payload { .. })
        ));
        federated.version = 5;
        let DomainEvent::SessionStarted(v5) = DomainEvent::decode(&federated).unwrap() else {
            panic!("not a SessionStarted");
        };
        assert_eq!(v5.method, SignInMethod::FederatedAndTotp);
        assert_eq!(v5.method.amr(), ["fed", "otp", "mfa"]);

        // Version 2, as written before sessions could be remembered, reads as an ordinary one.
        envelope.version = 2;
        assert!(matches!(
            DomainEvent::decode(&envelope),
            Err(DecodeError::Payload { .. })
        ));
        envelope.data.as_object_mut().unwrap().remove("remembered");
        let DomainEvent::SessionStarted(upcast) = DomainEvent::decode(&envelope).unwrap() else {
            panic!("not a SessionStarted");
        };
        assert_eq!(upcast.ip.as_deref(), Some("192.0.2.1"));
        assert!(!upcast.remembered);

        // Version 1, as written before sources were recorded, reads as the current version
        // without one.
        envelope.version = 1;
        envelope.data.as_object_mut().unwrap().remove("ip");
        let DomainEvent::SessionStarted(upcast) = DomainEvent::decode(&envelope).unwrap() else {
            panic!("not a SessionStarted");
        };
        assert_eq!((upcast.ip, upcast.user_agent), (None, None));
        assert_eq!(upcast.user, user);
        // …and version 1 knows no source fields.
        envelope.data["ip"] = "192.0.2.1".into();
        assert!(matches!(
            DomainEvent::decode(&envelope),
            Err(DecodeError::Payload { .. })
        ));

        let credentials = StreamKey::new(None, AggregateType::Credentials, user.to_string());
        let mut failed = DomainEvent::SignInFailed(SignInFailed {
            failures: 1,
            at: meta.occurred_at,
            ip: None,
            user_agent: Some("curl/8".into()),
        })
        .into_envelope(Ulid::nil(), &credentials, &meta);
        assert_eq!(
            personal_data_owner(&failed),
            Some(user.to_string().as_str())
        );
        failed.version = 1;
        failed.data = serde_json::json!({"failures": 3, "at": "2026-03-01T12:00:00Z"});
        assert!(matches!(
            DomainEvent::decode(&failed),
            Ok(DomainEvent::SignInFailed(SignInFailed {
                failures: 3,
                ip: None,
                ..
            }))
        ));
        // Events without personal data have no owner.
        let tenant = StreamKey::new(None, AggregateType::Tenant, "acme");
        let created = DomainEvent::TenantCreated(TenantCreated { name: "A".into() }).into_envelope(
            Ulid::nil(),
            &tenant,
            &meta,
        );
        assert_eq!(personal_data_owner(&created), None);
        assert!(EARLIER_VERSIONS.contains(&("SessionStarted", 1)));
        assert!(
            schema_of("SessionStarted", 1).is_some() && schema_of("SessionStarted", 6).is_none()
        );

        // Tenant settings of version 1 knew no remembering: they read with its default.
        let settings = StreamKey::new(Some("acme".parse().unwrap()), AggregateType::Tenant, "acme");
        let mut changed = DomainEvent::TenantSettingsChanged(TenantSettingsChanged {
            settings: TenantSettings {
                mfa_required: true,
                remember_days: 0,
                ..TenantSettings::default()
            },
        })
        .into_envelope(Ulid::nil(), &settings, &meta);
        assert_eq!(changed.version, 5);
        // Version 4 could not require passkeys of administrators: it did not.
        let mut v4 = changed.clone();
        v4.version = 4;
        v4.data["settings"]["phishing_resistant_admins"] = true.into();
        assert!(matches!(
            DomainEvent::decode(&v4),
            Err(DecodeError::Payload { .. })
        ));
        v4.data["settings"]
            .as_object_mut()
            .unwrap()
            .remove("phishing_resistant_admins");
        let DomainEvent::TenantSettingsChanged(upcast) = DomainEvent::decode(&v4).unwrap() else {
            panic!("not a TenantSettingsChanged");
        };
        assert!(!upcast.settings.phishing_resistant_admins && upcast.settings.mfa_required);
        changed.data["settings"]
            .as_object_mut()
            .unwrap()
            .remove("phishing_resistant_admins");
        // Version 3 knew no branding and no language: English, no logo, the default colour.
        let mut v3 = changed.clone();
        v3.version = 3;
        assert!(matches!(
            DomainEvent::decode(&v3),
            Err(DecodeError::Payload { .. })
        ));
        v3.data["settings"]
            .as_object_mut()
            .unwrap()
            .remove("language");
        let DomainEvent::TenantSettingsChanged(upcast) = DomainEvent::decode(&v3).unwrap() else {
            panic!("not a TenantSettingsChanged");
        };
        assert_eq!(upcast.settings.language, "en");
        assert_eq!(upcast.settings.logo_url, None);
        assert!(upcast.settings.mfa_required && upcast.settings.remember_days == 0);
        changed.data["settings"]
            .as_object_mut()
            .unwrap()
            .remove("language");
        // Version 2 knew no verification of created users: they read as not verified.
        let mut v2 = changed.clone();
        v2.version = 2;
        assert!(matches!(
            DomainEvent::decode(&v2),
            Err(DecodeError::Payload { .. })
        ));
        v2.data["settings"]
            .as_object_mut()
            .unwrap()
            .remove("verify_created_users");
        let DomainEvent::TenantSettingsChanged(upcast) = DomainEvent::decode(&v2).unwrap() else {
            panic!("not a TenantSettingsChanged");
        };
        assert!(!upcast.settings.verify_created_users && upcast.settings.mfa_required);
        changed.version = 1;
        let old = changed.data["settings"].as_object_mut().unwrap();
        old.remove("remember_days");
        old.remove("verify_created_users");
        let DomainEvent::TenantSettingsChanged(upcast) = DomainEvent::decode(&changed).unwrap()
        else {
            panic!("not a TenantSettingsChanged");
        };
        assert!(upcast.settings.mfa_required);
        assert_eq!(upcast.settings.remember_days, 30);
        changed.data["settings"]["remember_days"] = 7.into();
        assert!(matches!(
            DomainEvent::decode(&changed),
            Err(DecodeError::Payload { .. })
        ));

        // SessionRevoked v1 knows the reasons before applications; v2 adds theirs.
        let revoked = DomainEvent::SessionRevoked(SessionRevoked {
            reason: RevocationReason::RefreshTokenReused,
        });
        let mut v1 = revoked
            .clone()
            .into_envelope(Ulid::from_parts(4, 4), &session, &meta);
        v1.version = 1;
        assert_eq!(DomainEvent::decode(&v1).unwrap(), revoked);
        v1.data["reason"] = "authorization_code_reused".into();
        assert!(matches!(
            DomainEvent::decode(&v1),
            Err(DecodeError::Payload { .. })
        ));
        v1.version = 2;
        assert!(matches!(
            DomainEvent::decode(&v1),
            Ok(DomainEvent::SessionRevoked(SessionRevoked {
                reason: RevocationReason::AuthorizationCodeReused
            }))
        ));
    }

    #[test]
    fn unknown_types_and_fields_are_rejected_not_guessed() {
        let stream = StreamKey::new(None, AggregateType::User, "X");
        let meta = Metadata {
            actor: Actor::system("test"),
            occurred_at: datetime!(2026-03-01 12:00 UTC),
            correlation_id: "c1".into(),
            causation_id: None,
        };
        let mut env = DomainEvent::UserReinstated(UserReinstated {}).into_envelope(
            Ulid::nil(),
            &stream,
            &meta,
        );
        env.data = serde_json::json!({"surprise": 1});
        assert!(matches!(
            DomainEvent::decode(&env),
            Err(DecodeError::Payload { .. })
        ));
        env.event_type = "UserTeleported".into();
        assert!(matches!(
            DomainEvent::decode(&env),
            Err(DecodeError::Unknown { .. })
        ));
    }
}
