//! Key layout of the access tree. Every part is validated to exclude `/`, so keys are unambiguous
//! and a prefix ending in `/` selects exactly one parent.
//!
//! | key | value |
//! |---|---|
//! | `a/<user>` | account: status, suspension end, flags (JSON) |
//! | `m/<tenant>/<user>` | membership: global roles and custom permissions (JSON) |
//! | `r/<tenant>/<role>` | role definition and menu (JSON) |
//! | `e/<tenant>/<entity>` | entity: fields, RLS, policy, hidden fields per role (JSON) |
//! | `c/<tenant>/<resource>` | a resource the tenant defined, with its description (JSON) |
//! | `g/<tenant>/<entity>/<record>/<user>` | one user's standing on one record (compact binary) |
//! | `o/<tenant>/<entity>/<record>` | the record's owner (user id) |
//! | `x/<tenant>/<entity>/<user>/<record>` | index: records a user has any standing on or owns |
//! | `p/<fact>` | provenance of a fact: the event that established it (JSON) |
//! | `d/<end>/<fact>/<suffix>` | temporary access due to lapse at `<end>` (Unix nanoseconds, 20 digits): a held role, permission, grant or local role of the membership or standing `<fact>` |

use std::ops::Deref;

use idstream_domain::access::{EntityName, Permission, RecordId, ResourceName};
use idstream_domain::{RoleName, TenantId, UserId};

pub(crate) fn key(parts: &[&str]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// A user id's text form (the canonical upper-case ULID), without allocating.
fn user_text<'b>(user: &UserId, buf: &'b mut [u8; ulid::ULID_LEN]) -> &'b str {
    user.ulid().array_to_str(buf)
}

/// Room for the keys of the check path on the stack: the usual ones are well under 128 bytes
/// (the longest possible, a standing, is 286: `g/` + tenant (63) + entity (64) + record (128) +
/// user (26) and three `/`; such a key goes to the heap).
const STACK_KEY: usize = 128;

/// A key of the check path, built on the stack (or, if longer than [`STACK_KEY`], on the heap):
/// a check allocates no key.
pub(crate) enum Key {
    Stack { len: u8, bytes: [u8; STACK_KEY] },
    Heap(Vec<u8>),
}

impl Key {
    /// `parts` joined with `/`.
    #[inline]
    fn join(parts: &[&str]) -> Key {
        let len = parts.iter().map(|p| p.len() + 1).sum::<usize>() - 1;
        if len > STACK_KEY {
            return Key::Heap(key(parts));
        }
        let mut bytes = [0u8; STACK_KEY];
        let mut at = 0;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                bytes[at] = b'/';
                at += 1;
            }
            bytes[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        Key::Stack {
            len: len as u8,
            bytes,
        }
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Key::Stack { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }
}

/// [`account`] on the stack.
pub(crate) fn account_key(user: &UserId) -> Key {
    let mut buf = [0u8; ulid::ULID_LEN];
    Key::join(&["a", user_text(user, &mut buf)])
}

/// [`member`] on the stack.
pub(crate) fn member_key(tenant: &TenantId, user: &UserId) -> Key {
    let mut buf = [0u8; ulid::ULID_LEN];
    Key::join(&["m", tenant.as_str(), user_text(user, &mut buf)])
}

/// [`role`] on the stack.
pub(crate) fn role_key(tenant: &TenantId, role: &RoleName) -> Key {
    Key::join(&["r", tenant.as_str(), role.as_str()])
}

/// [`entity`] on the stack.
pub(crate) fn entity_key(tenant: &TenantId, entity: &EntityName) -> Key {
    Key::join(&["e", tenant.as_str(), entity.as_str()])
}

/// [`standing`] on the stack.
pub(crate) fn standing_key(
    tenant: &TenantId,
    entity: &EntityName,
    record: &RecordId,
    user: &UserId,
) -> Key {
    let mut buf = [0u8; ulid::ULID_LEN];
    Key::join(&[
        "g",
        tenant.as_str(),
        entity.as_str(),
        record.as_str(),
        user_text(user, &mut buf),
    ])
}

/// [`owner`] on the stack.
pub(crate) fn owner_key(tenant: &TenantId, entity: &EntityName, record: &RecordId) -> Key {
    Key::join(&["o", tenant.as_str(), entity.as_str(), record.as_str()])
}

pub fn account(user: &UserId) -> Vec<u8> {
    account_key(user).to_vec()
}

pub fn member(tenant: &TenantId, user: &UserId) -> Vec<u8> {
    member_key(tenant, user).to_vec()
}

/// Every membership of a tenant.
pub fn member_prefix(tenant: &TenantId) -> Vec<u8> {
    key(&["m", tenant.as_str(), ""])
}

pub fn role(tenant: &TenantId, role: &RoleName) -> Vec<u8> {
    role_key(tenant, role).to_vec()
}

pub fn roles_of(tenant: &TenantId) -> Vec<u8> {
    key(&["r", tenant.as_str(), ""])
}

pub fn entity(tenant: &TenantId, entity: &EntityName) -> Vec<u8> {
    entity_key(tenant, entity).to_vec()
}

pub fn entities_of(tenant: &TenantId) -> Vec<u8> {
    key(&["e", tenant.as_str(), ""])
}

pub fn standing(
    tenant: &TenantId,
    entity: &EntityName,
    record: &RecordId,
    user: &UserId,
) -> Vec<u8> {
    standing_key(tenant, entity, record, user).to_vec()
}

pub fn owner(tenant: &TenantId, entity: &EntityName, record: &RecordId) -> Vec<u8> {
    owner_key(tenant, entity, record).to_vec()
}

pub fn index(tenant: &TenantId, entity: &EntityName, user: &UserId, record: &RecordId) -> Vec<u8> {
    key(&[
        "x",
        tenant.as_str(),
        entity.as_str(),
        &user.to_string(),
        record.as_str(),
    ])
}

/// Every entry of the per-user record index of a tenant.
pub fn indexed_prefix(tenant: &TenantId) -> Vec<u8> {
    key(&["x", tenant.as_str(), ""])
}

pub fn index_of(tenant: &TenantId, entity: &EntityName, user: &UserId) -> Vec<u8> {
    key(&["x", tenant.as_str(), entity.as_str(), &user.to_string(), ""])
}

/// Provenance of a fact stored under `fact` (one of the keys above, possibly with a suffix).
pub fn provenance(fact: &[u8], suffix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(fact.len() + suffix.len() + 3);
    out.extend_from_slice(b"p/");
    out.extend_from_slice(fact);
    if !suffix.is_empty() {
        out.push(b'/');
        out.extend_from_slice(suffix.as_bytes());
    }
    out
}

/// A resource the tenant defined.
pub fn resource(tenant: &TenantId, name: &ResourceName) -> Vec<u8> {
    key(&["c", tenant.as_str(), name.as_str()])
}

/// Every resource the tenant defined.
pub fn resources_of(tenant: &TenantId) -> Vec<u8> {
    key(&["c", tenant.as_str(), ""])
}

/// The prefix of every temporary holding due to lapse.
pub const DUE: &[u8] = b"d/";

/// The key saying that `suffix` of `fact` (a membership or standing key) ends at `end`.
pub fn due(end: time::OffsetDateTime, fact: &[u8], suffix: &str) -> Vec<u8> {
    let mut out = due_until(end);
    out.push(b'/');
    out.extend_from_slice(fact);
    out.push(b'/');
    out.extend_from_slice(suffix.as_bytes());
    out
}

/// `d/<end>`: the due keys of holdings that end before `end` sort before this, and those that
/// end at `end` start with it.
pub fn due_until(end: time::OffsetDateTime) -> Vec<u8> {
    let nanos = end.unix_timestamp_nanos().max(0);
    format!("d/{nanos:020}").into_bytes()
}

/// Suffix of the provenance of a held role.
pub fn held_role(role: &RoleName) -> String {
    format!("role/{role}")
}

/// Suffix of the provenance of a custom permission.
pub fn held_permission(permission: &Permission) -> String {
    format!("perm/{permission}")
}

/// Suffix of the provenance of a local role.
pub fn local_role(role: &RoleName) -> String {
    format!("local/{role}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_built_on_the_stack_are_the_keys_joined_with_slashes() {
        let user: UserId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("a user id");
        let tenant: TenantId = "acme".parse().expect("a tenant");
        let name: RoleName = "project_manager".parse().expect("a role");
        let kind: EntityName = "invoice".parse().expect("an entity");
        let record: RecordId = "INV-7".parse().expect("a record");
        assert_eq!(account(&user), b"a/01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(member(&tenant, &user), b"m/acme/01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(role(&tenant, &name), b"r/acme/project_manager");
        assert_eq!(entity(&tenant, &kind), b"e/acme/invoice");
        assert_eq!(
            standing(&tenant, &kind, &record, &user),
            b"g/acme/invoice/INV-7/01ARZ3NDEKTSV4RRFFQ69G5FAV"
        );
        assert_eq!(owner(&tenant, &kind, &record), b"o/acme/invoice/INV-7");
        assert_eq!(
            index(&tenant, &kind, &user, &record),
            b"x/acme/invoice/01ARZ3NDEKTSV4RRFFQ69G5FAV/INV-7"
        );
    }

    #[test]
    fn long_keys_go_to_the_heap_unchanged() {
        let user: UserId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("a user id");
        let tenant: TenantId = "t".repeat(63).parse().expect("a tenant");
        let entity: EntityName = "e".repeat(64).parse().expect("an entity");
        let record: RecordId = "R".repeat(128).parse().expect("a record");
        let key = standing_key(&tenant, &entity, &record, &user);
        assert!(matches!(key, Key::Heap(_)));
        let joined = format!("g/{tenant}/{entity}/{record}/{user}");
        assert_eq!(&*key, joined.as_bytes());
        let fits = "x".repeat(STACK_KEY - 2);
        let key = Key::join(&["g", &fits]);
        assert!(matches!(key, Key::Stack { .. }));
        assert_eq!(&*key, format!("g/{fits}").as_bytes());
        let over = "x".repeat(STACK_KEY - 1);
        let key = Key::join(&["g", &over]);
        assert!(matches!(key, Key::Heap(_)));
        assert_eq!(&*key, format!("g/{over}").as_bytes());
    }
}
