//! The user aggregate: one identity across tenants and its lifecycle
//! (invited → active, suspended optionally until a time, reinstated).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::{
    EmailChangeRequested, EmailChanged, EmailVerified, UserActivated, UserAttributesChanged,
    UserDeactivated, UserErased, UserFlagsChanged, UserInvited, UserProfileChanged,
    UserProvisioningIdsChanged, UserReactivated, UserRegistered, UserReinstated, UserSuspended,
};
use crate::ids::TenantId;

/// Longest first or last name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest email address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// The user does not exist yet.
    #[default]
    Absent,
    Invited,
    Active,
    Suspended {
        until: Option<OffsetDateTime>,
    },
    /// Deactivated (left the organisation): no sign-in, no access, until reactivated.
    Inactive,
    /// Erased: personal data destroyed, no sign-in, no access, for good.
    Erased,
}

/// System-level flags of a user (F-AZ-6), the same in every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserFlags {
    /// May use the dashboard (the interactive front end).
    pub dashboard_access: bool,
    /// May use the API with API keys.
    pub api_access: bool,
    /// Manages the platform: tenants and every tenant's administration.
    pub platform_admin: bool,
}

impl Default for UserFlags {
    fn default() -> Self {
        UserFlags {
            dashboard_access: true,
            api_access: true,
            platform_admin: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub status: Status,
    pub email: String,
    pub flags: UserFlags,
    /// Registered, or invited and accepted: where a lifted suspension returns to.
    pub activated: bool,
    pub email_verified: bool,
    /// A requested new address waiting for confirmation.
    pub pending_email: Option<String>,
    /// Every other address the user held or asked to move to (mail may have been sent to each);
    /// forgotten on erasure.
    pub former_emails: Vec<String>,
    /// The phone number of the last profile change, E.164.
    pub phone: Option<String>,
    /// The language the user chose for mails and pages (one of [`crate::tenant::LANGUAGES`]).
    pub language: Option<String>,
    /// The values of the user's attributes, per tenant (see [`crate::attributes`]).
    pub attributes:
        std::collections::BTreeMap<TenantId, std::collections::BTreeMap<String, serde_json::Value>>,
    /// The id each tenant's provisioning client knows the user by (SCIM `externalId`).
    pub external_ids: std::collections::BTreeMap<TenantId, String>,
    /// The name each tenant's provisioning client gives the user (SCIM `userName`), where it is
    /// not their email address.
    pub user_names: std::collections::BTreeMap<TenantId, String>,
}

impl User {
    pub fn exists(&self) -> bool {
        self.status != Status::Absent
    }

    /// Exists and is not erased: the user can still hold an email address.
    pub fn holds_identity(&self) -> bool {
        self.exists() && self.status != Status::Erased
    }
}

/// The profile given when a user is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub tenant: TenantId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create an active user.
    Register(NewUser),
    /// Create a user who must accept an invitation first.
    Invite(NewUser),
    Suspend {
        until: Option<OffsetDateTime>,
        reason: Option<String>,
        now: OffsetDateTime,
    },
    Reinstate,
    Deactivate,
    Reactivate,
    SetFlags(UserFlags),
    /// An invited user accepted an invitation (which also proves their address).
    Activate,
    VerifyEmail,
    ChangeProfile(Profile),
    /// Ask to move to another address (confirmed later from it).
    RequestEmailChange {
        email: String,
    },
    /// Confirm the pending address (the application checked the emailed token).
    ConfirmEmailChange {
        email: String,
    },
    /// Erase the user's personal data for good (the application destroys their key).
    Erase,
    /// Change the values of the user's attributes in a tenant, decided against the tenant's
    /// `definitions` by [`crate::attributes::change`] (the whole set after it is recorded).
    ChangeAttributes {
        tenant: TenantId,
        definitions: std::collections::BTreeMap<String, crate::attributes::AttributeDefinition>,
        change: std::collections::BTreeMap<String, Option<serde_json::Value>>,
        editor: crate::attributes::Editor,
        /// The user is being created: required attributes must be given.
        creating: bool,
    },
    /// Set the identifiers a tenant's provisioning client knows the user by: its id for them
    /// (SCIM `externalId`) and its name for them (`userName`), each `None` (or an empty text)
    /// for none (see [`normalize_external_id`]).
    ChangeProvisioningIds {
        tenant: TenantId,
        external_id: Option<String>,
        user_name: Option<String>,
    },
}

/// The longest external id or provisioned user name, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;

/// An external id or provisioned user name as recorded: trimmed; `None` when empty; refused when longer than
/// [`MAX_EXTERNAL_ID_CHARS`] or holding control characters.
pub fn normalize_external_id(text: Option<&str>) -> Result<Option<String>, UserError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_EXTERNAL_ID_CHARS || text.chars().any(char::is_control) {
        return Err(UserError::InvalidExternalId);
    }
    Ok(Some(text.to_owned()))
}

/// Longest profile image URL accepted.
pub const MAX_IMAGE_URL_LEN: usize = 2048;
/// Most notification topics a user may set.
pub const MAX_NOTIFICATION_TOPICS: usize = 32;

/// What a user may change about themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    pub image_url: Option<String>,
    pub notifications: std::collections::BTreeMap<String, bool>,
    /// The phone number: `None` keeps the one the user has, `Some(None)` (or an empty text)
    /// removes it, `Some(Some(text))` sets it (normalised to E.164, see [`normalize_phone`]).
    pub phone: Option<Option<String>>,
    /// The language the user chose (one of [`crate::tenant::LANGUAGES`]): `None` keeps the one
    /// chosen, `Some(None)` (or an empty text) removes the choice, `Some(Some(tag))` sets it.
    pub language: Option<Option<String>>,
}

/// Most digits of an E.164 number.
pub const MAX_PHONE_DIGITS: usize = 15;

/// A phone number in E.164 form: `+`, then the country code and number, 8 to 15 digits in all,
/// the first not 0. Spaces, dots, hyphens and parentheses between digits are dropped, and an
/// international `00` prefix becomes `+`; a number without either is refused (its country
/// cannot be told).
pub fn normalize_phone(text: &str) -> Result<String, UserError> {
    let text = text.trim();
    let rest = if let Some(rest) = text.strip_prefix('+') {
        rest
    } else if let Some(rest) = text.strip_prefix("00") {
        rest
    } else {
        return Err(UserError::InvalidPhone);
    };
    let mut digits = String::with_capacity(MAX_PHONE_DIGITS);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => return Err(UserError::InvalidPhone),
        }
    }
    if !(8..=MAX_PHONE_DIGITS).contains(&digits.len()) || digits.starts_with('0') {
        return Err(UserError::InvalidPhone);
    }
    Ok(format!("+{digits}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Registered(UserRegistered),
    Invited(UserInvited),
    Suspended(UserSuspended),
    Reinstated(UserReinstated),
    Deactivated(UserDeactivated),
    Reactivated(UserReactivated),
    FlagsChanged(UserFlagsChanged),
    Activated(UserActivated),
    EmailVerified(EmailVerified),
    ProfileChanged(UserProfileChanged),
    EmailChangeRequested(EmailChangeRequested),
    EmailChanged(EmailChanged),
    Erased(UserErased),
    AttributesChanged(UserAttributesChanged),
    ProvisioningIdsChanged(UserProvisioningIdsChanged),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "an external id or user name is at most {MAX_EXTERNAL_ID_CHARS} characters, without control characters"
    )]
    InvalidExternalId,
    #[error("the user has been erased")]
    Erased,
    #[error("this user already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("the email address is not valid")]
    InvalidEmail,
    #[error(
        "first and last names are at most {MAX_NAME_CHARS} characters (surrounding whitespace trimmed), empty or showing something, without control or bidirectional-formatting characters (U+202A-U+202E, U+2066-U+2069)"
    )]
    InvalidName,
    #[error("the user is already suspended")]
    AlreadySuspended,
    #[error("the user is not suspended")]
    NotSuspended,
    #[error("a suspension must end in the future")]
    SuspensionInThePast,
    #[error("a suspension reason is at most 500 characters")]
    InvalidReason,
    #[error("the user is deactivated")]
    Inactive,
    #[error("the user is not deactivated")]
    NotInactive,
    #[error("the new address is the current one")]
    SameEmail,
    #[error("no change to this address is pending")]
    NoEmailChangePending,
    #[error("the image URL must be an http(s) URL of at most 2048 characters without spaces")]
    InvalidImageUrl,
    #[error("notification topics are at most 32 names of 1 to 40 characters a-z, 0-9 and _")]
    InvalidNotifications,
    #[error(
        "a phone number is in international form: + (or 00) and the country code, then the number, 8 to 15 digits in all (spaces, dots, hyphens and parentheses allowed between them)"
    )]
    InvalidPhone,
    #[error("the language is one of en, fr")]
    InvalidLanguage,
    #[error(transparent)]
    Attribute(#[from] crate::attributes::AttributeError),
}

/// Normalises an email address (trimmed, lower-case) and checks its shape. Deliverability is
/// proven by verification, not by parsing, so the check is deliberately plain: one `@`, a
/// non-empty local part, a dotted domain, no whitespace or control characters.
///
/// Unicode is brought to NFC first, so an address typed with a decomposed `é` (e + combining
/// accent) is the same address as one with the precomposed character.
pub fn normalize_email(raw: &str) -> Result<String, UserError> {
    use unicode_normalization::UnicodeNormalization;
    let email: String = raw.trim().nfc().collect::<String>().to_lowercase();
    let Some((local, domain)) = email.split_once('@') else {
        return Err(UserError::InvalidEmail);
    };
    let well_formed = !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !domain.contains("..")
        && email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(email)
    } else {
        Err(UserError::InvalidEmail)
    }
}

fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS || !crate::text::is_displayable(name) {
        return Err(UserError::InvalidName);
    }
    Ok(name.to_owned())
}

fn profile(new: NewUser) -> Result<(String, String, String, TenantId), UserError> {
    Ok((
        normalize_email(&new.email)?,
        valid_name(&new.first_name)?,
        valid_name(&new.last_name)?,
        new.tenant,
    ))
}

/// Whether a suspension is in force at `now` (a timed suspension lapses by itself).
pub fn is_suspended_at(status: Status, now: OffsetDateTime) -> bool {
    match status {
        Status::Suspended { until: None } => true,
        Status::Suspended { until: Some(end) } => now < end,
        _ => false,
    }
}

pub fn decide(state: &User, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
    if state.status == Status::Erased {
        return match command {
            UserCommand::Register(_) | UserCommand::Invite(_) => Err(UserError::AlreadyExists),
            UserCommand::Erase => Ok(vec![]),
            _ => Err(UserError::Erased),
        };
    }
    match command {
        UserCommand::Erase => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            Ok(vec![UserEvent::Erased(UserErased {})])
        }
        UserCommand::Register(new) => {
            if state.exists() {
                return Err(UserError::AlreadyExists);
            }
            let (email, first_name, last_name, tenant) = profile(new)?;
            Ok(vec![UserEvent::Registered(UserRegistered {
                email,
                first_name,
                last_name,
                tenant,
            })])
        }
        UserCommand::Invite(new) => {
            if state.exists() {
                return Err(UserError::AlreadyExists);
            }
            let (email, first_name, last_name, tenant) = profile(new)?;
            Ok(vec![UserEvent::Invited(UserInvited {
                email,
                first_name,
                last_name,
                tenant,
            })])
        }
        UserCommand::Suspend { until, reason, now } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            if state.status == Status::Inactive {
                return Err(UserError::Inactive);
            }
            if is_suspended_at(state.status, now) {
                return Err(UserError::AlreadySuspended);
            }
            if until.is_some_and(|end| end <= now) {
                return Err(UserError::SuspensionInThePast);
            }
            let reason = reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty());
            if reason
                .as_ref()
                .is_some_and(|r| r.chars().count() > 500 || r.chars().any(char::is_control))
            {
                return Err(UserError::InvalidReason);
            }
            Ok(vec![UserEvent::Suspended(UserSuspended { until, reason })])
        }
        UserCommand::Reinstate => match state.status {
            Status::Absent => Err(UserError::NotFound),
            // A lapsed timed suspension is still lifted explicitly so the record says so.
            Status::Suspended { .. } => Ok(vec![UserEvent::Reinstated(UserReinstated {})]),
            _ => Err(UserError::NotSuspended),
        },
        UserCommand::Deactivate => match state.status {
            Status::Absent => Err(UserError::NotFound),
            Status::Inactive => Ok(vec![]),
            _ => Ok(vec![UserEvent::Deactivated(UserDeactivated {})]),
        },
        UserCommand::Reactivate => match state.status {
            Status::Absent => Err(UserError::NotFound),
            Status::Inactive => Ok(vec![UserEvent::Reactivated(UserReactivated {})]),
            _ => Err(UserError::NotInactive),
        },
        UserCommand::SetFlags(flags) => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            if flags == state.flags {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::FlagsChanged(UserFlagsChanged { flags })])
        }
        UserCommand::Activate => match state.status {
            Status::Absent => Err(UserError::NotFound),
            Status::Inactive => Err(UserError::Inactive),
            _ if state.activated => Ok(vec![]),
            _ => Ok(vec![UserEvent::Activated(UserActivated {})]),
        },
        UserCommand::ChangeProfile(profile) => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            let image_url = profile
                .image_url
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty());
            if let Some(url) = &image_url {
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                if !scheme_ok
                    || url.len() > MAX_IMAGE_URL_LEN
                    || url.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(UserError::InvalidImageUrl);
                }
            }
            let topics_ok = profile.notifications.len() <= MAX_NOTIFICATION_TOPICS
                && profile.notifications.keys().all(|k| {
                    (1..=40).contains(&k.len())
                        && k.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                });
            if !topics_ok {
                return Err(UserError::InvalidNotifications);
            }
            let phone = match profile.phone {
                None => state.phone.clone(),
                Some(None) => None,
                Some(Some(text)) if text.trim().is_empty() => None,
                Some(Some(text)) => Some(normalize_phone(&text)?),
            };
            let language = match profile.language {
                None => state.language.clone(),
                Some(None) => None,
                Some(Some(tag)) if tag.trim().is_empty() => None,
                Some(Some(tag)) => {
                    let tag = tag.trim().to_ascii_lowercase();
                    if !crate::tenant::LANGUAGES.contains(&tag.as_str()) {
                        return Err(UserError::InvalidLanguage);
                    }
                    Some(tag)
                }
            };
            Ok(vec![UserEvent::ProfileChanged(UserProfileChanged {
                first_name: valid_name(&profile.first_name)?,
                last_name: valid_name(&profile.last_name)?,
                image_url,
                notifications: profile.notifications,
                phone,
                language,
            })])
        }
        UserCommand::RequestEmailChange { email } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            let email = normalize_email(&email)?;
            if email == state.email {
                return Err(UserError::SameEmail);
            }
            Ok(vec![UserEvent::EmailChangeRequested(
                EmailChangeRequested { email },
            )])
        }
        UserCommand::ConfirmEmailChange { email } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            let email = normalize_email(&email)?;
            if state.email == email {
                return Ok(vec![]);
            }
            if state.pending_email.as_deref() != Some(email.as_str()) {
                return Err(UserError::NoEmailChangePending);
            }
            Ok(vec![UserEvent::EmailChanged(EmailChanged { email })])
        }
        UserCommand::ChangeAttributes {
            tenant,
            definitions,
            change,
            editor,
            creating,
        } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            let current = state.attributes.get(&tenant);
            let values = crate::attributes::change(
                &definitions,
                current.unwrap_or(&Default::default()),
                &change,
                editor,
                creating,
            )?;
            if current.map_or(values.is_empty(), |held| *held == values) {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::AttributesChanged(UserAttributesChanged {
                tenant,
                values,
            })])
        }
        UserCommand::ChangeProvisioningIds {
            tenant,
            external_id,
            user_name,
        } => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            if state.status == Status::Erased {
                return Err(UserError::Erased);
            }
            let external_id = normalize_external_id(external_id.as_deref())?;
            let user_name = normalize_external_id(user_name.as_deref())?;
            if state.external_ids.get(&tenant) == external_id.as_ref()
                && state.user_names.get(&tenant) == user_name.as_ref()
            {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::ProvisioningIdsChanged(
                UserProvisioningIdsChanged {
                    tenant,
                    external_id,
                    user_name,
                },
            )])
        }
        UserCommand::VerifyEmail => {
            if !state.exists() {
                return Err(UserError::NotFound);
            }
            if state.email_verified {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::EmailVerified(EmailVerified {})])
        }
    }
}

pub fn evolve(mut state: User, event: &UserEvent) -> User {
    match event {
        UserEvent::Registered(e) => {
            state.status = Status::Active;
            state.email = e.email.clone();
            state.activated = true;
        }
        UserEvent::Invited(e) => {
            state.status = Status::Invited;
            state.email = e.email.clone();
        }
        UserEvent::Suspended(e) => state.status = Status::Suspended { until: e.until },
        // Lifting a suspension or deactivation returns an invited user who never accepted to
        // invited, everyone else to active.
        UserEvent::Reinstated(_) | UserEvent::Reactivated(_) => {
            state.status = if state.activated {
                Status::Active
            } else {
                Status::Invited
            }
        }
        UserEvent::Deactivated(_) => state.status = Status::Inactive,
        UserEvent::FlagsChanged(e) => state.flags = e.flags,
        UserEvent::Activated(_) => {
            state.activated = true;
            state.email_verified = true;
            if state.status == Status::Invited {
                state.status = Status::Active;
            }
        }
        UserEvent::EmailVerified(_) => state.email_verified = true,
        UserEvent::ProfileChanged(e) => {
            state.phone = e.phone.clone();
            state.language = e.language.clone();
        }
        UserEvent::EmailChangeRequested(e) => {
            if let Some(earlier) = state.pending_email.replace(e.email.clone())
                && !earlier.is_empty()
                && !state.former_emails.contains(&earlier)
            {
                state.former_emails.push(earlier);
            }
        }
        UserEvent::EmailChanged(e) => {
            let earlier = std::mem::replace(&mut state.email, e.email.clone());
            if !earlier.is_empty() && earlier != e.email && !state.former_emails.contains(&earlier)
            {
                state.former_emails.push(earlier);
            }
            state.former_emails.retain(|former| *former != e.email);
            state.pending_email = None;
            state.email_verified = true;
        }
        // Nothing personal survives in the state either.
        UserEvent::Erased(_) => {
            state.status = Status::Erased;
            state.email = String::new();
            state.pending_email = None;
            state.former_emails.clear();
            state.phone = None;
            state.attributes.clear();
            state.external_ids.clear();
            state.user_names.clear();
        }
        UserEvent::ProvisioningIdsChanged(e) => {
            for (map, value) in [
                (&mut state.external_ids, &e.external_id),
                (&mut state.user_names, &e.user_name),
            ] {
                match value {
                    Some(value) => map.insert(e.tenant.clone(), value.clone()),
                    None => map.remove(&e.tenant),
                };
            }
        }
        UserEvent::AttributesChanged(e) => {
            if e.values.is_empty() {
                state.attributes.remove(&e.tenant);
            } else {
                state.attributes.insert(e.tenant.clone(), e.values.clone());
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn new_user(email: &str) -> NewUser {
        NewUser {
            email: email.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        }
    }

    fn registered() -> UserEvent {
        UserEvent::Registered(UserRegistered {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        })
    }

    fn suspended(until: Option<OffsetDateTime>) -> UserEvent {
        UserEvent::Suspended(UserSuspended {
            until,
            reason: None,
        })
    }

    fn suspend(until: Option<OffsetDateTime>) -> UserCommand {
        UserCommand::Suspend {
            until,
            reason: None,
            now: NOW,
        }
    }

    #[test]
    fn registering_normalises_the_email() {
        check(
            &[],
            UserCommand::Register(new_user("  Ada@Example.COM ")),
            Ok(vec![registered()]),
        );
    }

    #[test]
    fn an_invited_user_starts_invited() {
        let state = [UserEvent::Invited(UserInvited {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        })]
        .iter()
        .fold(User::default(), evolve);
        assert_eq!(state.status, Status::Invited);
    }

    #[test]
    fn a_malformed_email_is_rejected() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@example..com",
        ] {
            check(
                &[],
                UserCommand::Register(new_user(bad)),
                Err(UserError::InvalidEmail),
            );
        }
    }

    #[test]
    fn a_user_cannot_be_created_twice() {
        check(
            &[registered()],
            UserCommand::Invite(new_user("ada@example.com")),
            Err(UserError::AlreadyExists),
        );
    }

    #[test]
    fn an_active_user_can_be_suspended_until_a_time() {
        let until = Some(datetime!(2026-03-08 12:00 UTC));
        check(&[registered()], suspend(until), Ok(vec![suspended(until)]));
    }

    #[test]
    fn a_suspension_that_ends_in_the_past_is_rejected() {
        check(
            &[registered()],
            suspend(Some(datetime!(2026-02-01 0:00 UTC))),
            Err(UserError::SuspensionInThePast),
        );
    }

    #[test]
    fn a_suspended_user_cannot_be_suspended_again() {
        check(
            &[registered(), suspended(None)],
            suspend(None),
            Err(UserError::AlreadySuspended),
        );
    }

    #[test]
    fn a_lapsed_suspension_does_not_block_a_new_one() {
        let lapsed = suspended(Some(datetime!(2026-02-01 0:00 UTC)));
        check(
            &[registered(), lapsed],
            suspend(None),
            Ok(vec![suspended(None)]),
        );
    }

    #[test]
    fn a_suspended_user_is_reinstated() {
        check(
            &[registered(), suspended(None)],
            UserCommand::Reinstate,
            Ok(vec![UserEvent::Reinstated(UserReinstated {})]),
        );
    }

    #[test]
    fn an_active_user_cannot_be_reinstated() {
        check(
            &[registered()],
            UserCommand::Reinstate,
            Err(UserError::NotSuspended),
        );
    }

    #[test]
    fn a_deactivated_user_is_neither_suspended_nor_reinstated_until_reactivated() {
        let deactivated = UserEvent::Deactivated(UserDeactivated {});
        check(
            &[registered(), deactivated.clone()],
            suspend(None),
            Err(UserError::Inactive),
        );
        check(
            &[registered(), deactivated.clone()],
            UserCommand::Deactivate,
            Ok(vec![]),
        );
        check(
            &[registered(), deactivated],
            UserCommand::Reactivate,
            Ok(vec![UserEvent::Reactivated(UserReactivated {})]),
        );
        check(
            &[registered()],
            UserCommand::Reactivate,
            Err(UserError::NotInactive),
        );
    }

    #[test]
    fn flags_change_only_when_they_differ() {
        let admin = UserFlags {
            platform_admin: true,
            ..UserFlags::default()
        };
        check(
            &[registered()],
            UserCommand::SetFlags(UserFlags::default()),
            Ok(vec![]),
        );
        check(
            &[registered()],
            UserCommand::SetFlags(admin),
            Ok(vec![UserEvent::FlagsChanged(UserFlagsChanged {
                flags: admin,
            })]),
        );
        check(&[], UserCommand::SetFlags(admin), Err(UserError::NotFound));
    }

    #[test]
    fn any_existing_user_can_be_erased_once() {
        let erased = UserEvent::Erased(UserErased {});
        check(
            &[registered()],
            UserCommand::Erase,
            Ok(vec![erased.clone()]),
        );
        check(
            &[registered(), UserEvent::Deactivated(UserDeactivated {})],
            UserCommand::Erase,
            Ok(vec![erased.clone()]),
        );
        check(
            &[registered(), erased.clone()],
            UserCommand::Erase,
            Ok(vec![]),
        );
        check(&[], UserCommand::Erase, Err(UserError::NotFound));
    }

    #[test]
    fn an_erased_user_keeps_nothing_personal_and_accepts_no_command() {
        let given = [
            registered(),
            UserEvent::EmailChangeRequested(EmailChangeRequested {
                email: "new@example.com".into(),
            }),
            UserEvent::Erased(UserErased {}),
        ];
        let state = given.iter().fold(User::default(), evolve);
        assert_eq!(state.status, Status::Erased);
        assert_eq!(state.email, "");
        assert_eq!(state.pending_email, None);
        check(&given, UserCommand::Reactivate, Err(UserError::Erased));
        check(
            &given,
            UserCommand::Suspend {
                until: None,
                reason: None,
                now: NOW,
            },
            Err(UserError::Erased),
        );
        check(&given, UserCommand::VerifyEmail, Err(UserError::Erased));
        check(
            &given,
            UserCommand::Register(new_user("ada@example.com")),
            Err(UserError::AlreadyExists),
        );
    }

    #[test]
    fn personal_data_fields_are_declared_for_events_whose_owner_can_be_told() {
        use crate::AggregateType;
        use crate::events::{CATALOGUE, PERSONAL_DATA, personal_fields, schema_of};
        for (event_type, fields) in PERSONAL_DATA {
            let found = CATALOGUE.iter().find(|(t, _, _)| t == event_type);
            let Some((_, version, aggregate)) = found else {
                panic!("{event_type} is not catalogued");
            };
            // The owner is the aggregate (users, credentials) or `data.user` (sessions).
            assert!(
                matches!(
                    aggregate,
                    AggregateType::User | AggregateType::Credentials | AggregateType::Session
                ),
                "{event_type}: the owner of its personal data cannot be told"
            );
            let schema = serde_json::to_value(schema_of(event_type, *version).unwrap()).unwrap();
            for field in *fields {
                assert!(
                    schema["properties"].get(*field).is_some(),
                    "{event_type} has no field {field}"
                );
            }
            if *aggregate == AggregateType::Session {
                assert!(schema["required"].to_string().contains("\"user\""));
            }
        }
        assert_eq!(
            personal_fields("UserInvited"),
            ["email", "first_name", "last_name"]
        );
        assert!(personal_fields("RoleAssigned").is_empty());
    }

    #[test]
    fn a_missing_user_cannot_be_suspended() {
        check(&[], suspend(None), Err(UserError::NotFound));
    }

    #[test]
    fn timed_suspensions_lapse_by_themselves() {
        let status = Status::Suspended {
            until: Some(datetime!(2026-03-02 0:00 UTC)),
        };
        assert!(is_suspended_at(status, NOW));
        assert!(!is_suspended_at(status, datetime!(2026-03-02 0:00 UTC)));
    }

    #[test]
    fn accepting_an_invitation_activates_once_and_survives_a_suspension() {
        let invited = UserEvent::Invited(UserInvited {
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            tenant: "acme".parse().unwrap(),
        });
        let activated = UserEvent::Activated(UserActivated {});
        check(
            std::slice::from_ref(&invited),
            UserCommand::Activate,
            Ok(vec![activated.clone()]),
        );
        check(
            &[invited.clone(), activated.clone()],
            UserCommand::Activate,
            Ok(vec![]),
        );
        check(&[registered()], UserCommand::Activate, Ok(vec![]));
        check(&[], UserCommand::Activate, Err(UserError::NotFound));
        // Suspended before accepting: lifting the suspension returns to invited…
        let state = [
            invited.clone(),
            suspended(None),
            UserEvent::Reinstated(UserReinstated {}),
        ]
        .iter()
        .fold(User::default(), evolve);
        assert_eq!(state.status, Status::Invited);
        // …and after accepting, to active, with the address verified.
        let state = [
            invited,
            activated,
            suspended(None),
            UserEvent::Reinstated(UserReinstated {}),
        ]
        .iter()
        .fold(User::default(), evolve);
        assert_eq!(state.status, Status::Active);
        assert!(state.email_verified);
        check(
            &[registered()],
            UserCommand::VerifyEmail,
            Ok(vec![UserEvent::EmailVerified(EmailVerified {})]),
        );
    }

    #[test]
    fn given_no_user_when_registered_with_a_bidi_override_or_an_invisible_name_then_refused() {
        for (first, last) in [
            ("\u{202E}", "Lovelace"),
            ("Ada", "ecalevoL\u{202E}"),
            ("\u{2068}Ada", "Lovelace"),
            ("\u{200B}", "Lovelace"),
            ("Ada", "\u{FEFF} \u{2060}"),
        ] {
            let user = NewUser {
                first_name: first.into(),
                last_name: last.into(),
                ..new_user("ada@example.com")
            };
            check(
                &[],
                UserCommand::Register(user.clone()),
                Err(UserError::InvalidName),
            );
            check(&[], UserCommand::Invite(user), Err(UserError::InvalidName));
        }
    }

    #[test]
    fn given_no_user_when_registered_without_names_then_registered_with_empty_names() {
        let user = NewUser {
            first_name: " ".into(),
            last_name: String::new(),
            ..new_user("ada@example.com")
        };
        check(
            &[],
            UserCommand::Register(user),
            Ok(vec![UserEvent::Registered(UserRegistered {
                email: "ada@example.com".into(),
                first_name: String::new(),
                last_name: String::new(),
                tenant: "acme".parse().unwrap(),
            })]),
        );
    }

    #[test]
    fn given_a_user_when_the_profile_names_hold_a_bidi_override_or_only_invisibles_then_refused() {
        for name in ["\u{202E}", "Ada\u{202A}", "\u{200D}"] {
            check(
                &[registered()],
                UserCommand::ChangeProfile(Profile {
                    first_name: name.into(),
                    last_name: "King".into(),
                    image_url: None,
                    notifications: Default::default(),
                    phone: None,
                    language: None,
                }),
                Err(UserError::InvalidName),
            );
        }
    }

    #[test]
    fn given_a_user_when_an_external_id_is_set_then_it_is_kept_per_tenant_and_trimmed_once() {
        let acme: TenantId = "acme".parse().unwrap();
        let beta: TenantId = "beta".parse().unwrap();
        let set = |tenant: &TenantId, id: Option<&str>| UserCommand::ChangeProvisioningIds {
            tenant: tenant.clone(),
            external_id: id.map(str::to_owned),
            user_name: None,
        };
        let changed = |tenant: &TenantId, id: Option<&str>| {
            UserEvent::ProvisioningIdsChanged(UserProvisioningIdsChanged {
                tenant: tenant.clone(),
                external_id: id.map(str::to_owned),
                user_name: None,
            })
        };
        check(&[], set(&acme, Some("e-1")), Err(UserError::NotFound));
        check(
            &[registered()],
            set(&acme, Some("  e-1 ")),
            Ok(vec![changed(&acme, Some("e-1"))]),
        );
        // The same id again, or clearing one never set, changes nothing.
        check(
            &[registered(), changed(&acme, Some("e-1"))],
            set(&acme, Some("e-1")),
            Ok(vec![]),
        );
        check(&[registered()], set(&acme, Some("  ")), Ok(vec![]));
        // Each tenant's client has its own.
        check(
            &[registered(), changed(&acme, Some("e-1"))],
            set(&beta, Some("e-1")),
            Ok(vec![changed(&beta, Some("e-1"))]),
        );
        check(
            &[registered(), changed(&acme, Some("e-1"))],
            set(&acme, None),
            Ok(vec![changed(&acme, None)]),
        );
        check(
            &[registered()],
            set(&acme, Some("bad\u{7}id")),
            Err(UserError::InvalidExternalId),
        );
        let long = "x".repeat(MAX_EXTERNAL_ID_CHARS + 1);
        check(
            &[registered()],
            set(&acme, Some(&long)),
            Err(UserError::InvalidExternalId),
        );
        let state = [
            registered(),
            changed(&acme, Some("e-1")),
            UserEvent::Erased(UserErased {}),
        ]
        .iter()
        .fold(User::default(), evolve);
        assert!(state.external_ids.is_empty());
        check(
            &[registered(), UserEvent::Erased(UserErased {})],
            set(&acme, Some("e-2")),
            Err(UserError::Erased),
        );
        // The user name is kept beside the external id: changing one keeps the other.
        let both = UserCommand::ChangeProvisioningIds {
            tenant: acme.clone(),
            external_id: Some("e-1".into()),
            user_name: Some(" Ada.L ".into()),
        };
        let named = UserEvent::ProvisioningIdsChanged(UserProvisioningIdsChanged {
            tenant: acme.clone(),
            external_id: Some("e-1".into()),
            user_name: Some("Ada.L".into()),
        });
        check(
            &[registered(), changed(&acme, Some("e-1"))],
            both,
            Ok(vec![named.clone()]),
        );
        let state = [registered(), named].iter().fold(User::default(), evolve);
        assert_eq!(state.user_names[&acme], "Ada.L");
        assert_eq!(state.external_ids[&acme], "e-1");
    }

    #[test]
    fn given_attribute_values_when_changed_then_the_whole_set_is_recorded_per_tenant_once() {
        use std::collections::BTreeMap;
        let acme: TenantId = "acme".parse().unwrap();
        let values = BTreeMap::from([("department".to_owned(), serde_json::json!("Sales"))]);
        let definitions = BTreeMap::from([(
            "department".to_owned(),
            crate::attributes::AttributeDefinition {
                label: "Department".into(),
                kind: crate::attributes::AttributeType::Text,
                options: vec![],
                required: false,
                user_editable: true,
                searchable: true,
            },
        )]);
        let set = |values: &BTreeMap<String, serde_json::Value>| UserCommand::ChangeAttributes {
            tenant: acme.clone(),
            definitions: definitions.clone(),
            change: if values.is_empty() {
                BTreeMap::from([("department".to_owned(), None)])
            } else {
                values
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect()
            },
            editor: crate::attributes::Editor::User,
            creating: false,
        };
        let changed = |values: &BTreeMap<String, serde_json::Value>| {
            UserEvent::AttributesChanged(UserAttributesChanged {
                tenant: acme.clone(),
                values: values.clone(),
            })
        };
        check(&[], set(&values), Err(UserError::NotFound));
        let unknown = UserCommand::ChangeAttributes {
            tenant: acme.clone(),
            definitions: BTreeMap::new(),
            change: BTreeMap::from([("department".to_owned(), None)]),
            editor: crate::attributes::Editor::Administrator,
            creating: false,
        };
        check(
            &[registered()],
            unknown,
            Err(UserError::Attribute(
                crate::attributes::AttributeError::Unknown("department".into()),
            )),
        );
        check(&[registered()], set(&values), Ok(vec![changed(&values)]));
        // The same values again change nothing; clearing them all is recorded.
        check(&[registered(), changed(&values)], set(&values), Ok(vec![]));
        check(&[registered()], set(&BTreeMap::new()), Ok(vec![]));
        check(
            &[registered(), changed(&values)],
            set(&BTreeMap::new()),
            Ok(vec![changed(&BTreeMap::new())]),
        );
        let state = [
            registered(),
            changed(&values),
            UserEvent::Erased(UserErased {}),
        ]
        .iter()
        .fold(User::default(), evolve);
        assert!(state.attributes.is_empty());
        check(
            &[registered(), UserEvent::Erased(UserErased {})],
            set(&values),
            Err(UserError::Erased),
        );
    }

    #[test]
    fn a_phone_number_is_normalised_to_e164_kept_when_left_out_and_removed_on_request() {
        assert_eq!(
            normalize_phone("+44 20 7946 0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(
            normalize_phone("0049 (30) 123-456.78").unwrap(),
            "+493012345678"
        );
        for bad in [
            "020 7946 0958",
            "+0 20 7946",
            "+1234567",
            "+1234567890123456",
            "+44 20x7946",
        ] {
            assert_eq!(normalize_phone(bad), Err(UserError::InvalidPhone), "{bad}");
        }
        let change = |phone: Option<Option<&str>>| {
            UserCommand::ChangeProfile(Profile {
                first_name: "Ada".into(),
                last_name: "King".into(),
                image_url: None,
                notifications: Default::default(),
                phone: phone.map(|p| p.map(str::to_owned)),
                language: None,
            })
        };
        let changed = |phone: Option<&str>| {
            UserEvent::ProfileChanged(UserProfileChanged {
                first_name: "Ada".into(),
                last_name: "King".into(),
                image_url: None,
                notifications: Default::default(),
                phone: phone.map(str::to_owned),
                language: None,
            })
        };
        check(
            &[registered()],
            change(Some(Some("+1 (415) 555-0100"))),
            Ok(vec![changed(Some("+14155550100"))]),
        );
        // Left out: kept; null or empty: removed; bad: refused.
        let with_phone = [registered(), changed(Some("+14155550100"))];
        check(
            &with_phone,
            change(None),
            Ok(vec![changed(Some("+14155550100"))]),
        );
        check(&with_phone, change(Some(None)), Ok(vec![changed(None)]));
        check(
            &with_phone,
            change(Some(Some(" "))),
            Ok(vec![changed(None)]),
        );
        check(
            &with_phone,
            change(Some(Some("555-0100"))),
            Err(UserError::InvalidPhone),
        );
        // Erasure forgets it.
        let state = [
            registered(),
            changed(Some("+14155550100")),
            UserEvent::Erased(UserErased {}),
        ]
        .iter()
        .fold(User::default(), evolve);
        assert_eq!(state.phone, None);
    }

    #[test]
    fn emails_are_compared_in_unicode_normal_form() {
        let composed = normalize_email("Jos\u{e9}@example.com").unwrap();
        let decomposed = normalize_email("JOSE\u{301}@Example.com").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(composed, "jos\u{e9}@example.com");
    }

    #[test]
    fn given_a_user_when_they_choose_a_language_then_it_is_kept_until_changed_or_removed() {
        let change = |language: Option<Option<&str>>| {
            UserCommand::ChangeProfile(Profile {
                first_name: "Ada".into(),
                last_name: "King".into(),
                image_url: None,
                notifications: Default::default(),
                phone: None,
                language: language.map(|l| l.map(str::to_owned)),
            })
        };
        let changed = |language: Option<&str>| {
            UserEvent::ProfileChanged(UserProfileChanged {
                first_name: "Ada".into(),
                last_name: "King".into(),
                image_url: None,
                notifications: Default::default(),
                phone: None,
                language: language.map(str::to_owned),
            })
        };
        check(
            &[registered()],
            change(Some(Some(" FR "))),
            Ok(vec![changed(Some("fr"))]),
        );
        let chosen = [registered(), changed(Some("fr"))];
        // Left out, it is kept; null or empty removes it.
        check(&chosen, change(None), Ok(vec![changed(Some("fr"))]));
        check(&chosen, change(Some(None)), Ok(vec![changed(None)]));
        check(&chosen, change(Some(Some(""))), Ok(vec![changed(None)]));
        for bad in ["de", "français", "en-GB"] {
            check(
                &chosen,
                change(Some(Some(bad))),
                Err(UserError::InvalidLanguage),
            );
        }
        let state = chosen.iter().fold(User::default(), evolve);
        assert_eq!(state.language.as_deref(), Some("fr"));
    }

    #[test]
    fn a_profile_change_is_validated_and_recorded_whole() {
        let profile = |image_url: Option<&str>, topic: &str| {
            UserCommand::ChangeProfile(Profile {
                first_name: " Ada ".into(),
                last_name: "King".into(),
                image_url: image_url.map(str::to_owned),
                notifications: [(topic.to_owned(), true)].into(),
                phone: None,
                language: None,
            })
        };
        check(
            &[registered()],
            profile(Some("https://example.com/ada.png"), "security_alerts"),
            Ok(vec![UserEvent::ProfileChanged(UserProfileChanged {
                first_name: "Ada".into(),
                last_name: "King".into(),
                image_url: Some("https://example.com/ada.png".into()),
                notifications: [("security_alerts".to_owned(), true)].into(),
                phone: None,
                language: None,
            })]),
        );
        for bad in ["javascript:alert(1)", "https://a b", "ftp://x"] {
            check(
                &[registered()],
                profile(Some(bad), "security_alerts"),
                Err(UserError::InvalidImageUrl),
            );
        }
        check(
            &[registered()],
            profile(None, "Not A Topic"),
            Err(UserError::InvalidNotifications),
        );
        check(&[], profile(None, "x"), Err(UserError::NotFound));
    }

    #[test]
    fn an_email_change_waits_for_confirmation_of_the_new_address() {
        check(
            &[registered()],
            UserCommand::RequestEmailChange {
                email: " Ada@Example.COM ".into(),
            },
            Err(UserError::SameEmail),
        );
        let requested = UserEvent::EmailChangeRequested(EmailChangeRequested {
            email: "ada@new.example".into(),
        });
        check(
            &[registered()],
            UserCommand::RequestEmailChange {
                email: "Ada@New.example".into(),
            },
            Ok(vec![requested.clone()]),
        );
        check(
            &[registered()],
            UserCommand::ConfirmEmailChange {
                email: "ada@new.example".into(),
            },
            Err(UserError::NoEmailChangePending),
        );
        let changed = UserEvent::EmailChanged(EmailChanged {
            email: "ada@new.example".into(),
        });
        check(
            &[registered(), requested.clone()],
            UserCommand::ConfirmEmailChange {
                email: "ada@new.example".into(),
            },
            Ok(vec![changed.clone()]),
        );
        let state = [registered(), requested, changed]
            .iter()
            .fold(User::default(), evolve);
        assert_eq!(state.email, "ada@new.example");
        assert!(state.email_verified && state.pending_email.is_none());
    }
}
