//! The directory's tables: one key prefix each. Ids are restricted to characters without `/`
//! (tenant slugs, ULIDs), so `/` separates the parts of a key unambiguously, and fixed-length
//! ULIDs keep user keys in id order.

use idstream_domain::{TenantId, UserId};

pub(crate) const TENANTS: &str = "tenant/";

pub(crate) fn tenant(id: &TenantId) -> Vec<u8> {
    format!("{TENANTS}{id}").into_bytes()
}

pub(crate) fn user(id: &UserId) -> Vec<u8> {
    format!("user/{id}").into_bytes()
}

/// The position of the last erasure (`UserErased`), as JSON.
pub(crate) const LAST_ERASURE: &[u8] = b"erasure/last";

/// Blind index of a normalised email (see `fold::email_index`) → user id.
pub(crate) fn email(index: &str) -> Vec<u8> {
    format!("email/{index}").into_bytes()
}

/// The prefix of one tenant's memberships, ordered by user id.
pub(crate) fn members_of(tenant: &TenantId) -> String {
    format!("member/{tenant}/")
}

pub(crate) fn member(tenant: &TenantId, user: &UserId) -> Vec<u8> {
    format!("{}{user}", members_of(tenant)).into_bytes()
}

/// The tenant and user of a membership key (`member/<tenant>/<user>`).
pub(crate) fn parse_member(key: &[u8]) -> Option<(TenantId, UserId)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix("member/")?;
    let (tenant, user) = rest.split_once('/')?;
    Some((tenant.parse().ok()?, user.parse().ok()?))
}

/// The prefix of the reverse index user → tenants.
pub(crate) fn tenants_of(user: &UserId) -> String {
    format!("user-tenant/{user}/")
}

pub(crate) fn user_tenant(user: &UserId, tenant: &TenantId) -> Vec<u8> {
    format!("{}{tenant}", tenants_of(user)).into_bytes()
}

pub(crate) fn idempotency(key: &str) -> Vec<u8> {
    format!("idem/{key}").into_bytes()
}

/// How emails are compared: the domain normalises them the same way before they reach the log.
pub(crate) fn normalize_email(email: &str) -> String {
    idstream_domain::user::normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase())
}
