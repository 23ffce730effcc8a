//! Identifiers. Every id that appears in a log subject is restricted to subject-safe characters.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Why a textual id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "a tenant id is 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    Tenant,
    #[error(
        "a user id is a ULID in its canonical form: 26 characters of upper-case Crockford base32 (0-9, A-Z without I, L, O and U), the first 0 to 7"
    )]
    User,
    #[error("a role name is 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter")]
    Role,
}

fn is_slug(s: &str, max: usize, extra: &[u8]) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(b))
}

/// A tenant (what the source documents call a project or organisation): a client-chosen slug such
/// as `acme`. `_` is reserved for global aggregates in log subjects and is never a tenant id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("pattern" = r"^[a-z0-9][a-z0-9-]{0,62}$"))]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if is_slug(s, 63, b"-") {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(IdError::Tenant)
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user: one identity across all tenants, identified by a ULID chosen when the user is created.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
// The published event schemas keep their pattern: every id the service ever wrote matches the
// stricter form too (the first character of a ULID it generates is at most 7).
#[schemars(with = "String", extend("pattern" = r"^[0-9A-HJKMNP-TV-Z]{26}$"))]
pub struct UserId(Ulid);

impl UserId {
    pub fn new(ulid: Ulid) -> Self {
        UserId(ulid)
    }
    pub fn ulid(&self) -> Ulid {
        self.0
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Only the canonical form is accepted so that one user has one subject: upper case, and
        // no first character above 7 (the decoder drops the bits that overflow 128, so such a
        // text would name the same user as another).
        if s.len() != 26 || s.bytes().any(|b| b.is_ascii_lowercase()) || s.as_bytes()[0] > b'7' {
            return Err(IdError::User);
        }
        Ulid::from_string(s).map(UserId).map_err(|_| IdError::User)
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.0.to_string()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A role name, unique per tenant: `admin`, `user`, `project_manager`, …
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("pattern" = r"^[a-z][a-z0-9_-]{0,63}$"))]
pub struct RoleName(String);

impl RoleName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The built-in `user` role.
    pub fn user() -> RoleName {
        RoleName("user".to_owned())
    }
}

impl FromStr for RoleName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if is_slug(s, 64, b"_-") && s.as_bytes()[0].is_ascii_lowercase() {
            Ok(RoleName(s.to_owned()))
        } else {
            Err(IdError::Role)
        }
    }
}

impl TryFrom<String> for RoleName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<RoleName> for String {
    fn from(r: RoleName) -> String {
        r.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_subject_safe_slugs() {
        assert!("acme".parse::<TenantId>().is_ok());
        assert!("acme-2".parse::<TenantId>().is_ok());
        for bad in [
            "",
            "_",
            "Acme",
            "a.b",
            "a*",
            "a>",
            "a b",
            "-a",
            &"a".repeat(64),
        ] {
            assert_eq!(bad.parse::<TenantId>(), Err(IdError::Tenant), "{bad:?}");
        }
    }

    #[test]
    fn user_ids_must_be_canonical_ulids() {
        let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string();
        assert!(id.parse::<UserId>().is_ok());
        assert_eq!(id.to_lowercase().parse::<UserId>(), Err(IdError::User));
        assert_eq!("not-a-ulid".parse::<UserId>(), Err(IdError::User));
        // The largest ULID starts with 7; an 8 overflows and would alias a smaller id.
        assert!("7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<UserId>().is_ok());
        assert_eq!(
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<UserId>(),
            Err(IdError::User)
        );
        // Crockford's excluded letters are not digits here.
        assert_eq!(
            "01ARZ3NDEKTSV4RRFFQ69G5FAI".parse::<UserId>(),
            Err(IdError::User)
        );
    }

    #[test]
    fn role_names_start_with_a_letter() {
        assert!("admin".parse::<RoleName>().is_ok());
        assert!("project_manager".parse::<RoleName>().is_ok());
        for bad in ["", "_EVERYONE", "1x", "Admin", "a.b"] {
            assert_eq!(bad.parse::<RoleName>(), Err(IdError::Role), "{bad:?}");
        }
    }
}
