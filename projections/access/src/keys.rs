//! Key layout of the access tree. Every part is validated to exclude `/`, so keys are unambiguous
//! and a prefix ending in `/` selects exactly one parent.
//!
//! | key | value |
//! |---|---|
//! | `a/<user>` | account: status, suspension end, flags (JSON) |
//! | `m/<tenant>/<user>` | membership: global roles and custom permissions (JSON) |
//! | `r/<tenant>/<role>` | role definition and menu (JSON) |
//! | `e/<tenant>/<entity>` | entity: fields, RLS, policy, hidden fields per role (JSON) |
//! | `g/<tenant>/<entity>/<record>/<user>` | one user's standing on one record (compact binary) |
//! | `o/<tenant>/<entity>/<record>` | the record's owner (user id) |
//! | `x/<tenant>/<entity>/<user>/<record>` | index: records a user has any standing on or owns |
//! | `p/<fact>` | provenance of a fact: the event that established it (JSON) |

use idstream_domain::access::{EntityName, Permission, RecordId};
use idstream_domain::{RoleName, TenantId, UserId};

fn key(parts: &[&str]) -> Vec<u8> {
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

pub fn account(user: &UserId) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(b"a/");
    out.extend_from_slice(user.to_string().as_bytes());
    out
}

pub fn member(tenant: &TenantId, user: &UserId) -> Vec<u8> {
    key(&["m", tenant.as_str(), &user.to_string()])
}

/// Every membership of a tenant.
pub fn member_prefix(tenant: &TenantId) -> Vec<u8> {
    key(&["m", tenant.as_str(), ""])
}

/// Every record standing (grants, local roles) of a tenant.
pub fn standings_prefix(tenant: &TenantId) -> Vec<u8> {
    key(&["g", tenant.as_str(), ""])
}

/// Every record owner of a tenant.
pub fn owners_prefix(tenant: &TenantId) -> Vec<u8> {
    key(&["o", tenant.as_str(), ""])
}

pub fn role(tenant: &TenantId, role: &RoleName) -> Vec<u8> {
    key(&["r", tenant.as_str(), role.as_str()])
}

pub fn roles_of(tenant: &TenantId) -> Vec<u8> {
    key(&["r", tenant.as_str(), ""])
}

pub fn entity(tenant: &TenantId, entity: &EntityName) -> Vec<u8> {
    key(&["e", tenant.as_str(), entity.as_str()])
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
    key(&[
        "g",
        tenant.as_str(),
        entity.as_str(),
        record.as_str(),
        &user.to_string(),
    ])
}

pub fn owner(tenant: &TenantId, entity: &EntityName, record: &RecordId) -> Vec<u8> {
    key(&["o", tenant.as_str(), entity.as_str(), record.as_str()])
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
