//! The tenant aggregate: an isolated data context with a display name, its settings and the
//! resources it defines for its own permissions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::model::ResourceName;
use crate::attributes::{AttributeDefinition, AttributeError, MAX_ATTRIBUTES};
use crate::events::{
    ResourceDefined, ResourceRemoved, TenantCreated, TenantRenamed, TenantSettingsChanged,
    UserAttributeDefined, UserAttributeRemoved,
};
use crate::ids::RoleName;

/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Password rules of a tenant (enforced by sign-up, invitation acceptance, change and reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicySettings {
    /// At least 8.
    pub min_length: u32,
    /// At least 64 (so pass phrases fit), at most 1024.
    pub max_length: u32,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
    /// Refuse passwords on the shipped list of common passwords.
    pub deny_common: bool,
}

impl Default for PasswordPolicySettings {
    fn default() -> Self {
        PasswordPolicySettings {
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

/// A tenant's settings. Defaults follow common practice (Keycloak's session defaults: 30 minutes
/// idle, 10 hours at most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
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
    #[serde(default = "default_language")]
    pub language: String,
    /// The tenant's owners and administrators must sign in with a phishing-resistant factor (a
    /// passkey): a session of theirs begun otherwise may only add a passkey, read `me` and sign
    /// out.
    #[serde(default)]
    pub phishing_resistant_admins: bool,
}

/// The languages idstream writes its mails and pages in, as BCP 47 primary tags.
pub const LANGUAGES: [&str; 2] = ["en", "fr"];

/// The longest logo address of a tenant, in characters.
pub const MAX_LOGO_URL_CHARS: usize = 2048;

fn default_language() -> String {
    LANGUAGES[0].to_owned()
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            self_registration: false,
            default_role: RoleName::user(),
            require_email_verification: true,
            password_policy: PasswordPolicySettings::default(),
            invitation_ttl_hours: 168,
            session_idle_minutes: 30,
            session_max_hours: 10,
            magic_link_ttl_minutes: 10,
            mfa_required: false,
            remember_days: 30,
            verify_created_users: false,
            logo_url: None,
            brand_colour: None,
            language: default_language(),
            phishing_resistant_admins: false,
        }
    }
}

impl TenantSettings {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), TenantError> {
        let p = &self.password_policy;
        let ok = p.min_length >= 8
            && p.max_length >= 64
            && p.max_length <= 1024
            && p.min_length <= p.max_length
            && (1..=720).contains(&self.invitation_ttl_hours)
            && (1..=43_200).contains(&self.session_idle_minutes)
            && (1..=8760).contains(&self.session_max_hours)
            && (1..=60).contains(&self.magic_link_ttl_minutes)
            && self.remember_days <= 365
            && self.logo_url.as_deref().is_none_or(|url| {
                url.starts_with("https://")
                    && url.len() > "https://".len()
                    && url.chars().count() <= MAX_LOGO_URL_CHARS
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            })
            && self.brand_colour.as_deref().is_none_or(|colour| {
                colour.len() == 7
                    && colour.starts_with('#')
                    && colour[1..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            && LANGUAGES.contains(&self.language.as_str());
        if ok {
            Ok(())
        } else {
            Err(TenantError::InvalidSettings)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    pub name: Option<String>,
    pub settings: TenantSettings,
    /// The resources the tenant defined, with their descriptions.
    pub resources: BTreeMap<ResourceName, String>,
    /// The user attributes the tenant defined, by name.
    pub attributes: BTreeMap<String, AttributeDefinition>,
}

/// Most resources a tenant defines.
pub const MAX_RESOURCES: usize = 200;

impl Tenant {
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    Create {
        name: String,
    },
    Rename {
        name: String,
    },
    ChangeSettings {
        settings: TenantSettings,
    },
    /// Defines a resource of the tenant's own, or changes its description.
    DefineResource {
        name: ResourceName,
        description: String,
    },
    RemoveResource {
        name: ResourceName,
    },
    /// Defines a user attribute, or changes its definition.
    DefineAttribute {
        name: String,
        definition: AttributeDefinition,
    },
    RemoveAttribute {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantEvent {
    Created(TenantCreated),
    Renamed(TenantRenamed),
    SettingsChanged(TenantSettingsChanged),
    ResourceDefined(ResourceDefined),
    ResourceRemoved(ResourceRemoved),
    AttributeDefined(UserAttributeDefined),
    AttributeRemoved(UserAttributeRemoved),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant with this id already exists")]
    AlreadyExists,
    #[error("no such tenant")]
    NotFound,
    #[error(
        "a tenant name is 1 to {MAX_NAME_CHARS} characters (surrounding whitespace trimmed) that show something, without control or bidirectional-formatting characters (U+202A-U+202E, U+2066-U+2069)"
    )]
    InvalidName,
    #[error(
        "invalid settings: password length bounds need min >= 8, max >= 64, max <= 1024, min <= max; invitation TTL 1-720 hours; session idle 1-43200 minutes; session max 1-8760 hours; magic link TTL 1-60 minutes; remember 0-365 days"
    )]
    InvalidSettings,
    #[error("the tenant defines no such resource")]
    ResourceNotFound,
    #[error(
        "a tenant defines at most {MAX_RESOURCES} resources; a resource description is at most 500 characters that show nothing odd (no control or bidirectional-formatting characters)"
    )]
    InvalidResource,
    #[error("the tenant defines no such attribute")]
    AttributeNotFound,
    #[error(transparent)]
    Attribute(#[from] AttributeError),
}

fn valid_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if !crate::text::shows_something(name)
        || name.chars().count() > MAX_NAME_CHARS
        || !crate::text::is_displayable(name)
    {
        return Err(TenantError::InvalidName);
    }
    Ok(name.to_owned())
}

pub fn decide(state: &Tenant, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
    match command {
        TenantCommand::Create { name } => {
            if state.exists() {
                return Err(TenantError::AlreadyExists);
            }
            Ok(vec![TenantEvent::Created(TenantCreated {
                name: valid_name(&name)?,
            })])
        }
        TenantCommand::Rename { name } => {
            let Some(current) = &state.name else {
                return Err(TenantError::NotFound);
            };
            let name = valid_name(&name)?;
            if *current == name {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::Renamed(TenantRenamed { name })])
        }
        TenantCommand::DefineResource { name, description } => {
            if !state.exists() {
                return Err(TenantError::NotFound);
            }
            let description = description.trim();
            let fits = state.resources.contains_key(&name) || state.resources.len() < MAX_RESOURCES;
            if !fits
                || description.chars().count() > 500
                || !crate::text::is_displayable(description)
            {
                return Err(TenantError::InvalidResource);
            }
            if state.resources.get(&name).map(String::as_str) == Some(description) {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::ResourceDefined(ResourceDefined {
                name,
                description: description.to_owned(),
            })])
        }
        TenantCommand::RemoveResource { name } => {
            if !state.resources.contains_key(&name) {
                return Err(TenantError::ResourceNotFound);
            }
            Ok(vec![TenantEvent::ResourceRemoved(ResourceRemoved { name })])
        }
        TenantCommand::DefineAttribute { name, definition } => {
            if !state.exists() {
                return Err(TenantError::NotFound);
            }
            let definition = definition.validated()?;
            let fits =
                state.attributes.contains_key(&name) || state.attributes.len() < MAX_ATTRIBUTES;
            if !crate::attributes::valid_name(&name) || !fits {
                return Err(AttributeError::InvalidDefinition.into());
            }
            if state.attributes.get(&name) == Some(&definition) {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::AttributeDefined(UserAttributeDefined {
                name,
                definition,
            })])
        }
        TenantCommand::RemoveAttribute { name } => {
            if !state.attributes.contains_key(&name) {
                return Err(TenantError::AttributeNotFound);
            }
            Ok(vec![TenantEvent::AttributeRemoved(UserAttributeRemoved {
                name,
            })])
        }
        TenantCommand::ChangeSettings { settings } => {
            if !state.exists() {
                return Err(TenantError::NotFound);
            }
            settings.validate()?;
            if settings == state.settings {
                return Ok(vec![]);
            }
            Ok(vec![TenantEvent::SettingsChanged(TenantSettingsChanged {
                settings,
            })])
        }
    }
}

pub fn evolve(mut state: Tenant, event: &TenantEvent) -> Tenant {
    match event {
        TenantEvent::Created(e) => state.name = Some(e.name.clone()),
        TenantEvent::Renamed(e) => state.name = Some(e.name.clone()),
        TenantEvent::SettingsChanged(e) => state.settings = e.settings.clone(),
        TenantEvent::ResourceDefined(e) => {
            state
                .resources
                .insert(e.name.clone(), e.description.clone());
        }
        TenantEvent::ResourceRemoved(e) => {
            state.resources.remove(&e.name);
        }
        TenantEvent::AttributeDefined(e) => {
            state
                .attributes
                .insert(e.name.clone(), e.definition.clone());
        }
        TenantEvent::AttributeRemoved(e) => {
            state.attributes.remove(&e.name);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::check;

    fn created(name: &str) -> TenantEvent {
        TenantEvent::Created(TenantCreated { name: name.into() })
    }

    #[test]
    fn a_new_tenant_is_created_with_its_trimmed_name() {
        check(
            &[],
            TenantCommand::Create {
                name: "  Acme Inc ".into(),
            },
            Ok(vec![created("Acme Inc")]),
        );
    }

    #[test]
    fn a_tenant_id_cannot_be_created_twice() {
        check(
            &[created("Acme")],
            TenantCommand::Create {
                name: "Other".into(),
            },
            Err(TenantError::AlreadyExists),
        );
    }

    #[test]
    fn a_blank_or_overlong_name_is_rejected() {
        check(
            &[],
            TenantCommand::Create { name: "   ".into() },
            Err(TenantError::InvalidName),
        );
        check(
            &[],
            TenantCommand::Create {
                name: "x".repeat(201),
            },
            Err(TenantError::InvalidName),
        );
    }

    #[test]
    fn given_no_tenant_when_created_with_a_bidi_override_or_an_invisible_name_then_refused() {
        for name in [
            "\u{202E}",
            "Acme\u{202E}cni",
            "\u{2066}Acme\u{2069}",
            "\u{200B}",
            " \u{200B}\u{FEFF} ",
        ] {
            check(
                &[],
                TenantCommand::Create { name: name.into() },
                Err(TenantError::InvalidName),
            );
        }
    }

    #[test]
    fn given_a_tenant_when_renamed_to_a_bidi_override_or_an_invisible_name_then_refused() {
        for name in ["\u{202E}", "\u{2060}"] {
            check(
                &[created("Acme")],
                TenantCommand::Rename { name: name.into() },
                Err(TenantError::InvalidName),
            );
        }
    }

    #[test]
    fn renaming_to_the_same_name_changes_nothing() {
        check(
            &[created("Acme")],
            TenantCommand::Rename {
                name: "Acme".into(),
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn settings_are_validated_and_recorded_only_when_they_change() {
        let mut settings = TenantSettings::default();
        check(
            &[created("Acme")],
            TenantCommand::ChangeSettings {
                settings: settings.clone(),
            },
            Ok(vec![]),
        );
        settings.self_registration = true;
        check(
            &[created("Acme")],
            TenantCommand::ChangeSettings {
                settings: settings.clone(),
            },
            Ok(vec![TenantEvent::SettingsChanged(TenantSettingsChanged {
                settings: settings.clone(),
            })]),
        );
        settings.password_policy.min_length = 6;
        check(
            &[created("Acme")],
            TenantCommand::ChangeSettings { settings },
            Err(TenantError::InvalidSettings),
        );
    }

    #[test]
    fn given_a_tenant_when_remembering_is_set_from_0_to_365_days_then_recorded_and_beyond_refused()
    {
        for days in [0, 1, 365] {
            let settings = TenantSettings {
                remember_days: days,
                ..TenantSettings::default()
            };
            check(
                &[created("Acme")],
                TenantCommand::ChangeSettings {
                    settings: settings.clone(),
                },
                Ok(vec![TenantEvent::SettingsChanged(TenantSettingsChanged {
                    settings,
                })]),
            );
        }
        check(
            &[created("Acme")],
            TenantCommand::ChangeSettings {
                settings: TenantSettings {
                    remember_days: 366,
                    ..TenantSettings::default()
                },
            },
            Err(TenantError::InvalidSettings),
        );
    }

    #[test]
    fn given_a_tenant_when_its_branding_and_language_are_set_then_only_https_logos_hex_colours_and_written_languages_are_recorded()
     {
        let branded = TenantSettings {
            logo_url: Some("https://cdn.example.com/acme.png".into()),
            brand_colour: Some("#AA3300".into()),
            language: "fr".into(),
            ..TenantSettings::default()
        };
        check(
            &[created("Acme")],
            TenantCommand::ChangeSettings {
                settings: branded.clone(),
            },
            Ok(vec![TenantEvent::SettingsChanged(TenantSettingsChanged {
                settings: branded.clone(),
            })]),
        );
        let refused = [
            TenantSettings {
                logo_url: Some("http://cdn.example.com/a.png".into()),
                ..branded.clone()
            },
            TenantSettings {
                logo_url: Some("javascript:alert(1)".into()),
                ..branded.clone()
            },
            TenantSettings {
                logo_url: Some("https://".into()),
                ..branded.clone()
            },
            TenantSettings {
                logo_url: Some("https://a.example/ b.png".into()),
                ..branded.clone()
            },
            TenantSettings {
                logo_url: Some(format!("https://a.example/{}", "x".repeat(2048))),
                ..branded.clone()
            },
            TenantSettings {
                brand_colour: Some("red".into()),
                ..branded.clone()
            },
            TenantSettings {
                brand_colour: Some("#12345".into()),
                ..branded.clone()
            },
            TenantSettings {
                brand_colour: Some("#12345g".into()),
                ..branded.clone()
            },
            TenantSettings {
                language: "de".into(),
                ..branded.clone()
            },
            TenantSettings {
                language: "FR".into(),
                ..branded
            },
        ];
        for settings in refused {
            check(
                &[created("Acme")],
                TenantCommand::ChangeSettings { settings },
                Err(TenantError::InvalidSettings),
            );
        }
    }

    #[test]
    fn renaming_a_missing_tenant_fails() {
        check(
            &[],
            TenantCommand::Rename {
                name: "Acme".into(),
            },
            Err(TenantError::NotFound),
        );
    }

    #[test]
    fn a_rename_is_recorded() {
        check(
            &[created("Acme")],
            TenantCommand::Rename {
                name: "Acme Ltd".into(),
            },
            Ok(vec![TenantEvent::Renamed(TenantRenamed {
                name: "Acme Ltd".into(),
            })]),
        );
    }

    #[test]
    fn a_tenant_defines_its_own_resources_and_removes_them() {
        let name: ResourceName = "invoice_export".parse().unwrap();
        let define = |description: &str| TenantCommand::DefineResource {
            name: name.clone(),
            description: description.into(),
        };
        let defined = TenantEvent::ResourceDefined(ResourceDefined {
            name: name.clone(),
            description: "Export invoices".into(),
        });
        check(&[], define("x"), Err(TenantError::NotFound));
        check(
            &[created("Acme")],
            define("  Export invoices "),
            Ok(vec![defined.clone()]),
        );
        check(
            &[created("Acme"), defined.clone()],
            define("Export invoices"),
            Ok(vec![]),
        );
        check(
            &[created("Acme")],
            define("bad\u{202E}text"),
            Err(TenantError::InvalidResource),
        );
        let remove = TenantCommand::RemoveResource { name: name.clone() };
        check(
            &[created("Acme")],
            remove.clone(),
            Err(TenantError::ResourceNotFound),
        );
        let removed = TenantEvent::ResourceRemoved(ResourceRemoved { name: name.clone() });
        check(
            &[created("Acme"), defined.clone()],
            remove,
            Ok(vec![removed.clone()]),
        );
        let state = [created("Acme"), defined, removed]
            .iter()
            .fold(Tenant::default(), evolve);
        assert!(state.resources.is_empty());
    }

    #[test]
    fn given_a_tenant_when_it_defines_and_removes_attributes_then_definitions_are_checked() {
        use crate::attributes::{AttributeDefinition, AttributeError, AttributeType};
        let definition = |label: &str| AttributeDefinition {
            label: label.into(),
            kind: AttributeType::Text,
            options: vec![],
            required: false,
            user_editable: true,
            searchable: true,
        };
        let define = |name: &str, label: &str| TenantCommand::DefineAttribute {
            name: name.into(),
            definition: definition(label),
        };
        let defined = TenantEvent::AttributeDefined(UserAttributeDefined {
            name: "department".into(),
            definition: definition("Department"),
        });
        check(
            &[],
            define("department", "Department"),
            Err(TenantError::NotFound),
        );
        check(
            &[created("Acme")],
            define("department", " Department "),
            Ok(vec![defined.clone()]),
        );
        check(
            &[created("Acme"), defined.clone()],
            define("department", "Department"),
            Ok(vec![]),
        );
        for (name, label) in [("Department", "D"), ("department", "")] {
            check(
                &[created("Acme")],
                define(name, label),
                Err(TenantError::Attribute(AttributeError::InvalidDefinition)),
            );
        }
        // At most MAX_ATTRIBUTES; redefining one of them still fits.
        let mut full = vec![created("Acme")];
        for i in 0..MAX_ATTRIBUTES {
            full.push(TenantEvent::AttributeDefined(UserAttributeDefined {
                name: format!("a{i}"),
                definition: definition("A"),
            }));
        }
        check(
            &full,
            define("one_more", "A"),
            Err(TenantError::Attribute(AttributeError::InvalidDefinition)),
        );
        check(
            &full,
            define("a0", "Changed"),
            Ok(vec![TenantEvent::AttributeDefined(UserAttributeDefined {
                name: "a0".into(),
                definition: definition("Changed"),
            })]),
        );
        let remove = TenantCommand::RemoveAttribute {
            name: "department".into(),
        };
        check(
            &[created("Acme")],
            remove.clone(),
            Err(TenantError::AttributeNotFound),
        );
        let removed = TenantEvent::AttributeRemoved(UserAttributeRemoved {
            name: "department".into(),
        });
        check(
            &[created("Acme"), defined.clone()],
            remove,
            Ok(vec![removed.clone()]),
        );
        let state = [created("Acme"), defined, removed]
            .iter()
            .fold(Tenant::default(), evolve);
        assert!(state.attributes.is_empty());
    }
}
