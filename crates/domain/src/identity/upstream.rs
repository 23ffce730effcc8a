//! Upstream identity providers: other OpenID Connect providers (Google, Microsoft Entra ID, an
//! enterprise's own, another idstream) that people may sign in to a tenant through, idstream being
//! their relying party.
//!
//! Two aggregates, both tenant-scoped:
//! - [`IdentityProvider`] (id: a name the administrator picks, such as `google`): the provider's
//!   issuer, the client idstream is registered as there (its secret sealed), the scopes asked for,
//!   which claims hold the address and names, the e-mail domains accepted, and whether unknown
//!   people become members.
//! - [`ExternalIdentity`] (id: the blind index of the provider and the subject it names the
//!   person by, so the log holds no upstream identifier in the clear): which user that upstream
//!   identity signs in. One upstream identity signs in one user; linking it to another needs the
//!   first link gone.

use serde::{Deserialize, Serialize};

use crate::events::{
    IdentityLinked, IdentityProviderConfigured, IdentityProviderRemoved, IdentityUnlinked,
};
use crate::ids::UserId;
use crate::secret::Sealed;

/// Longest provider name (the button's label), in characters.
pub const MAX_NAME_CHARS: usize = 60;
/// Longest issuer URL, client id or claim name, in bytes.
pub const MAX_FIELD_BYTES: usize = 1000;
/// Most scopes and, separately, most e-mail domains.
pub const MAX_ITEMS: usize = 50;

/// Whether `id` may name a provider: 1 to 40 lower-case letters, digits and dashes, starting
/// with a letter or digit (it is part of the sign-in page's and the callback's address).
pub fn valid_provider_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Which claims of the provider's ID token (or userinfo) hold what idstream needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    #[serde(default = "default_email_claim")]
    pub email: String,
    #[serde(default = "default_given_name_claim")]
    pub given_name: String,
    #[serde(default = "default_family_name_claim")]
    pub family_name: String,
}

fn default_email_claim() -> String {
    "email".into()
}
fn default_given_name_claim() -> String {
    "given_name".into()
}
fn default_family_name_claim() -> String {
    "family_name".into()
}

impl Default for ClaimMapping {
    fn default() -> ClaimMapping {
        ClaimMapping {
            email: default_email_claim(),
            given_name: default_given_name_claim(),
            family_name: default_family_name_claim(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// What an administrator sets on an upstream provider (everything but its client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderSettings {
    /// What the sign-in page's button says: "Sign in with <name>".
    pub name: String,
    /// The provider's issuer identifier; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id idstream is registered under at the provider.
    pub client_id: String,
    /// The scopes asked for (`openid` among them).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// When not empty, only addresses of these domains are accepted (lower case).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Whether a person the tenant does not know becomes a member (with the tenant's default
    /// role) on their first sign-in through this provider.
    #[serde(default)]
    pub provision: bool,
}

impl IdentityProviderSettings {
    /// Whether `email`'s domain is accepted.
    pub fn accepts_email(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        self.allowed_email_domains.contains(&domain)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderStatus {
    #[default]
    Absent,
    Active,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityProvider {
    pub status: ProviderStatus,
    pub settings: Option<IdentityProviderSettings>,
    pub secret: Option<Sealed>,
}

// Commands and events live a moment, one at a time: boxing the settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityProviderCommand {
    /// Adds the provider or replaces its settings; `secret` replaces the client secret when
    /// given (a provider configured again keeps its secret otherwise).
    Configure {
        settings: IdentityProviderSettings,
        secret: Option<Sealed>,
    },
    Remove,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityProviderEvent {
    Configured(IdentityProviderConfigured),
    Removed(IdentityProviderRemoved),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityProviderError {
    #[error("no such identity provider")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
}

fn invalid(text: impl Into<String>) -> IdentityProviderError {
    IdentityProviderError::Invalid(text.into())
}

/// Why `issuer` cannot be an upstream issuer, if it cannot: an https URL (or http to the machine
/// itself, for development) without query, fragment or credentials.
pub fn issuer_problem(issuer: &str) -> Option<String> {
    if issuer.len() > MAX_FIELD_BYTES {
        return Some(format!("an issuer is at most {MAX_FIELD_BYTES} bytes"));
    }
    let Ok(url) = url::Url::parse(issuer) else {
        return Some(format!("the issuer {issuer:?} is not an absolute URL"));
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Some(format!(
            "the issuer {issuer:?} may have no query or fragment"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some(format!("the issuer {issuer:?} holds credentials"));
    }
    match (url.scheme(), url.host_str()) {
        ("https", Some(_)) => None,
        ("http", Some("localhost" | "127.0.0.1" | "[::1]")) => None,
        _ => Some(format!(
            "the issuer {issuer:?} must be https (plain http only to localhost)"
        )),
    }
}

fn token_like(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_FIELD_BYTES
        && text
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn check(
    settings: &IdentityProviderSettings,
) -> Result<IdentityProviderSettings, IdentityProviderError> {
    let mut settings = settings.clone();
    settings.name = settings.name.trim().to_owned();
    if !crate::text::shows_something(&settings.name)
        || settings.name.chars().count() > MAX_NAME_CHARS
        || !crate::text::is_displayable(&settings.name)
    {
        return Err(invalid(format!(
            "a provider's name is 1 to {MAX_NAME_CHARS} characters that show something, without control or bidirectional-formatting characters"
        )));
    }
    settings.issuer = settings.issuer.trim().to_owned();
    if let Some(problem) = issuer_problem(&settings.issuer) {
        return Err(invalid(problem));
    }
    if !token_like(&settings.client_id) {
        return Err(invalid(format!(
            "a client id is 1 to {MAX_FIELD_BYTES} visible ASCII characters without quotes or backslashes"
        )));
    }
    let mut scopes: Vec<String> = Vec::new();
    for scope in &settings.scopes {
        if !token_like(scope) || scope.len() > 100 {
            return Err(invalid(format!("{scope:?} is not a scope")));
        }
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid("the scopes must include openid"));
    }
    if scopes.len() > MAX_ITEMS {
        return Err(invalid(format!("at most {MAX_ITEMS} scopes")));
    }
    settings.scopes = scopes;
    for claim in [
        &settings.claims.email,
        &settings.claims.given_name,
        &settings.claims.family_name,
    ] {
        if !token_like(claim) || claim.len() > 100 {
            return Err(invalid(format!("{claim:?} is not a claim name")));
        }
    }
    let mut domains: Vec<String> = Vec::new();
    for domain in &settings.allowed_email_domains {
        let domain = domain.trim().to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(invalid(format!("{domain:?} is not a domain name")));
        }
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    if domains.len() > MAX_ITEMS {
        return Err(invalid(format!("at most {MAX_ITEMS} e-mail domains")));
    }
    settings.allowed_email_domains = domains;
    Ok(settings)
}

pub fn decide(
    state: &IdentityProvider,
    command: IdentityProviderCommand,
) -> Result<Vec<IdentityProviderEvent>, IdentityProviderError> {
    match command {
        IdentityProviderCommand::Configure { settings, secret } => {
            let settings = check(&settings)?;
            let unchanged = state.status == ProviderStatus::Active
                && state.settings.as_ref() == Some(&settings)
                && (secret.is_none() || secret == state.secret);
            if unchanged {
                return Ok(vec![]);
            }
            Ok(vec![IdentityProviderEvent::Configured(
                IdentityProviderConfigured { settings, secret },
            )])
        }
        IdentityProviderCommand::Remove => match state.status {
            ProviderStatus::Active => Ok(vec![IdentityProviderEvent::Removed(
                IdentityProviderRemoved {},
            )]),
            _ => Err(IdentityProviderError::NotFound),
        },
    }
}

pub fn evolve(mut state: IdentityProvider, event: &IdentityProviderEvent) -> IdentityProvider {
    match event {
        IdentityProviderEvent::Configured(e) => {
            if state.status != ProviderStatus::Active {
                // A provider configured anew after its removal starts without the old secret.
                state.secret = None;
            }
            state.status = ProviderStatus::Active;
            state.settings = Some(e.settings.clone());
            if e.secret.is_some() {
                state.secret = e.secret.clone();
            }
        }
        IdentityProviderEvent::Removed(_) => {
            state.status = ProviderStatus::Removed;
            state.secret = None;
        }
    }
    state
}

/// How an upstream identity came to be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkVia {
    /// The provider vouched for an address that the user's verified address is.
    VerifiedEmail,
    /// The person was unknown and became a member on this first sign-in.
    Provisioned,
    /// The person, signed in, linked it from their account.
    Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalIdentity {
    /// The user this identity signs in, while linked.
    pub user: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalIdentityCommand {
    Link {
        user: UserId,
        provider: String,
        via: LinkVia,
    },
    /// Takes the link away (from whichever user holds it, when `user` is `None`).
    Unlink {
        user: Option<UserId>,
        provider: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalIdentityEvent {
    Linked(IdentityLinked),
    Unlinked(IdentityUnlinked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalIdentityError {
    #[error("this identity of the provider already signs in another account")]
    LinkedToAnother,
    #[error("this identity is not linked")]
    NotLinked,
}

pub fn decide_link(
    state: &ExternalIdentity,
    command: ExternalIdentityCommand,
) -> Result<Vec<ExternalIdentityEvent>, ExternalIdentityError> {
    match command {
        ExternalIdentityCommand::Link {
            user,
            provider,
            via,
        } => match state.user {
            Some(linked) if linked == user => Ok(vec![]),
            Some(_) => Err(ExternalIdentityError::LinkedToAnother),
            None => Ok(vec![ExternalIdentityEvent::Linked(IdentityLinked {
                user,
                provider,
                via,
            })]),
        },
        ExternalIdentityCommand::Unlink { user, provider } => match (state.user, user) {
            (Some(linked), Some(user)) if linked != user => Err(ExternalIdentityError::NotLinked),
            (Some(linked), _) => Ok(vec![ExternalIdentityEvent::Unlinked(IdentityUnlinked {
                user: linked,
                provider,
            })]),
            (None, _) => Err(ExternalIdentityError::NotLinked),
        },
    }
}

pub fn evolve_link(mut state: ExternalIdentity, event: &ExternalIdentityEvent) -> ExternalIdentity {
    match event {
        ExternalIdentityEvent::Linked(e) => state.user = Some(e.user),
        ExternalIdentityEvent::Unlinked(_) => state.user = None,
    }
    state
}

/// The [`ExternalIdentity`] aggregate's decide and evolve, by the names the aggregate macro calls.
pub mod link {
    pub use super::{decide_link as decide, evolve_link as evolve};
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn settings() -> IdentityProviderSettings {
        IdentityProviderSettings {
            name: "Corp".into(),
            issuer: "https://id.corp.example/t/corp".into(),
            client_id: "idstream".into(),
            scopes: default_scopes(),
            claims: ClaimMapping::default(),
            allowed_email_domains: vec!["Corp.Example".into()],
            provision: false,
        }
    }

    fn sealed() -> Sealed {
        Sealed::parse(format!("v1.k1.{}", "A".repeat(48))).unwrap()
    }

    fn configured() -> IdentityProvider {
        let events = decide(
            &IdentityProvider::default(),
            IdentityProviderCommand::Configure {
                settings: settings(),
                secret: Some(sealed()),
            },
        )
        .unwrap();
        events.iter().fold(IdentityProvider::default(), evolve)
    }

    #[test]
    fn given_no_provider_when_configured_then_its_settings_are_normalised_and_its_secret_kept() {
        let state = configured();
        assert_eq!(state.status, ProviderStatus::Active);
        assert_eq!(
            state.settings.as_ref().unwrap().allowed_email_domains,
            ["corp.example"]
        );
        assert!(
            state
                .settings
                .as_ref()
                .unwrap()
                .accepts_email("ada@CORP.example")
        );
        assert!(
            !state
                .settings
                .as_ref()
                .unwrap()
                .accepts_email("ada@other.example")
        );
        // Configured again without a secret: the settings change, the secret stays.
        let mut changed = settings();
        changed.name = "Corp SSO".into();
        let events = decide(
            &state,
            IdentityProviderCommand::Configure {
                settings: changed,
                secret: None,
            },
        )
        .unwrap();
        let state = events.iter().fold(state, evolve);
        assert_eq!(state.secret, Some(sealed()));
        // The same again changes nothing.
        let same = decide(
            &state,
            IdentityProviderCommand::Configure {
                settings: state.settings.clone().unwrap(),
                secret: None,
            },
        )
        .unwrap();
        assert!(same.is_empty());
    }

    #[test]
    fn given_bad_settings_when_configured_then_each_is_refused() {
        let cases: Vec<fn(&mut IdentityProviderSettings)> = vec![
            |s| s.name = " ".into(),
            |s| s.issuer = "http://id.corp.example".into(),
            |s| s.issuer = "https://id.corp.example/?x=1".into(),
            |s| s.issuer = "not a url".into(),
            |s| s.client_id = "a b".into(),
            |s| s.scopes = vec!["email".into()],
            |s| s.claims.email = String::new(),
            |s| s.allowed_email_domains = vec!["no_domain".into()],
        ];
        for change in cases {
            let mut bad = settings();
            change(&mut bad);
            assert!(
                matches!(
                    decide(
                        &IdentityProvider::default(),
                        IdentityProviderCommand::Configure {
                            settings: bad.clone(),
                            secret: None
                        }
                    ),
                    Err(IdentityProviderError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let mut local = settings();
        local.issuer = "http://127.0.0.1:8080/t/corp".into();
        assert!(check(&local).is_ok());
    }

    #[test]
    fn given_a_removed_provider_when_configured_again_then_the_old_secret_is_gone() {
        let state = configured();
        let removed = decide(&state, IdentityProviderCommand::Remove).unwrap();
        let state = removed.iter().fold(state, evolve);
        assert_eq!(
            decide(&state, IdentityProviderCommand::Remove),
            Err(IdentityProviderError::NotFound)
        );
        let again = decide(
            &state,
            IdentityProviderCommand::Configure {
                settings: settings(),
                secret: None,
            },
        )
        .unwrap();
        let state = again.iter().fold(state, evolve);
        assert_eq!(state.status, ProviderStatus::Active);
        assert_eq!(state.secret, None);
    }

    #[test]
    fn given_a_linked_identity_when_linked_to_another_then_refused_until_unlinked() {
        let ada = UserId::new(Ulid::from_parts(1, 1));
        let bob = UserId::new(Ulid::from_parts(2, 2));
        let link = |user| ExternalIdentityCommand::Link {
            user,
            provider: "corp".into(),
            via: LinkVia::VerifiedEmail,
        };
        let events = decide_link(&ExternalIdentity::default(), link(ada)).unwrap();
        let state = events.iter().fold(ExternalIdentity::default(), evolve_link);
        assert_eq!(state.user, Some(ada));
        assert_eq!(decide_link(&state, link(ada)).unwrap(), vec![]);
        assert_eq!(
            decide_link(&state, link(bob)),
            Err(ExternalIdentityError::LinkedToAnother)
        );
        assert_eq!(
            decide_link(
                &state,
                ExternalIdentityCommand::Unlink {
                    user: Some(bob),
                    provider: "corp".into()
                }
            ),
            Err(ExternalIdentityError::NotLinked)
        );
        let unlinked = decide_link(
            &state,
            ExternalIdentityCommand::Unlink {
                user: None,
                provider: "corp".into(),
            },
        )
        .unwrap();
        let state = unlinked.iter().fold(state, evolve_link);
        assert_eq!(decide_link(&state, link(bob)).unwrap().len(), 1);
    }

    #[test]
    fn provider_ids_are_short_lower_case_names() {
        assert!(valid_provider_id("google"));
        assert!(valid_provider_id("corp-sso-2"));
        assert!(!valid_provider_id("-x"));
        assert!(!valid_provider_id("Google"));
        assert!(!valid_provider_id(""));
        assert!(!valid_provider_id(&"a".repeat(41)));
    }
}
