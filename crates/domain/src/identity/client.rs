//! The OpenID Connect client aggregate (tenant-scoped; its id is the client id, a ULID): an
//! application that signs people in through the tenant's issuer. A confidential client holds a
//! secret, recorded only as its blind index; a public one (a single-page or native app) holds
//! none and must use PKCE. Redirect URIs are matched exactly, as OAuth 2.1 requires.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::{
    ClientCredentialsUsed, ClientRegistered, ClientRemoved, ClientSecretRotated, ClientUpdated,
};
use crate::secret::BlindIndex;

/// Longest client name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most redirect URIs (and, separately, post-logout redirect URIs) a client may have.
pub const MAX_URIS: usize = 20;
/// Longest URI, in bytes.
pub const MAX_URI_BYTES: usize = 2000;
/// The scopes a client may be allowed.
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
/// Use of the client-credentials grant is recorded at most this often per client.
pub const USE_RECORD_INTERVAL: time::Duration = time::Duration::minutes(1);

/// Whether the client can keep a secret (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A server-side application: authenticates with its secret.
    Confidential,
    /// A browser or native application: no secret, PKCE required.
    Public,
}

/// The grants a client may use at the token endpoint.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    /// The client acting for itself (a service account); confidential clients only.
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// What an administrator sets on a client (everything but its kind and secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub name: String,
    /// Where the authorization endpoint may send the browser back, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards, compared exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: BTreeSet<GrantType>,
    /// The scopes the client may ask for (among [`SCOPES`]).
    pub scopes: BTreeSet<String>,
    /// A first-party application skips the consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// Where a logout token is posted when a session of the client ends (OpenID Connect
    /// Back-Channel Logout 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientStatus {
    #[default]
    Absent,
    Active,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Client {
    pub status: ClientStatus,
    pub kind: Option<ClientKind>,
    pub settings: Option<ClientSettings>,
    pub secret: Option<BlindIndex>,
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Register {
        kind: ClientKind,
        settings: ClientSettings,
        /// The secret's blind index: required for a confidential client, absent for a public one.
        secret: Option<BlindIndex>,
    },
    Update {
        settings: ClientSettings,
    },
    RotateSecret {
        secret: BlindIndex,
    },
    Remove,
    /// Records a client-credentials grant (throttled to [`USE_RECORD_INTERVAL`]).
    RecordCredentialsUse {
        now: OffsetDateTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Registered(ClientRegistered),
    Updated(ClientUpdated),
    SecretRotated(ClientSecretRotated),
    Removed(ClientRemoved),
    CredentialsUsed(ClientCredentialsUsed),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("this client already exists")]
    AlreadyExists,
    #[error("no such client")]
    NotFound,
    #[error(
        "a client name is 1 to {MAX_NAME_CHARS} characters that show something, without control or bidirectional-formatting characters"
    )]
    InvalidName,
    #[error("{0}")]
    InvalidUri(String),
    #[error("{0}")]
    InvalidGrants(String),
    #[error(
        "unknown scope {0:?}: a client may be allowed openid, profile, email and offline_access"
    )]
    UnknownScope(String),
    #[error("a public client has no secret to rotate")]
    PublicClientSecret,
}

/// Why `uri` cannot be a redirect URI, if it cannot: an absolute URI without a fragment, over
/// https, or over http to the machine itself (a native app's loopback, RFC 8252 §7.3), or with a
/// private-use scheme holding a dot (`com.example.app:/callback`, RFC 8252 §7.1).
pub fn redirect_uri_problem(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_BYTES {
        return Some(format!("a redirect URI is at most {MAX_URI_BYTES} bytes"));
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return Some(format!("{uri:?} is not an absolute URI"));
    };
    if parsed.fragment().is_some() {
        return Some(format!(
            "{uri:?} has a fragment, which a redirect URI may not have"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some(format!("{uri:?} holds credentials"));
    }
    if uri.contains('*') {
        return Some(format!(
            "{uri:?} holds a wildcard: redirect URIs are compared exactly"
        ));
    }
    match parsed.scheme() {
        "https" => None,
        "http" => match parsed.host_str() {
            Some("localhost" | "127.0.0.1" | "[::1]") => None,
            _ => Some(format!(
                "{uri:?} is plain http to another machine: use https (plain http is allowed only to localhost)"
            )),
        },
        scheme if scheme.contains('.') => None,
        scheme => Some(format!(
            "{uri:?} has the scheme {scheme:?}: use https, http to localhost, or a private-use scheme such as com.example.app"
        )),
    }
}

fn check(kind: ClientKind, settings: &ClientSettings) -> Result<ClientSettings, ClientError> {
    let mut settings = settings.clone();
    settings.name = settings.name.trim().to_owned();
    if !crate::text::shows_something(&settings.name)
        || settings.name.chars().count() > MAX_NAME_CHARS
        || !crate::text::is_displayable(&settings.name)
    {
        return Err(ClientError::InvalidName);
    }
    for list in [&settings.redirect_uris, &settings.post_logout_redirect_uris] {
        if list.len() > MAX_URIS {
            return Err(ClientError::InvalidUri(format!(
                "a client has at most {MAX_URIS} redirect URIs of each kind"
            )));
        }
        if let Some(problem) = list.iter().find_map(|uri| redirect_uri_problem(uri)) {
            return Err(ClientError::InvalidUri(problem));
        }
    }
    if let Some(uri) = &settings.backchannel_logout_uri {
        // Posted to by the service, so no private-use scheme.
        let web = url::Url::parse(uri)
            .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.fragment().is_none());
        if !web || redirect_uri_problem(uri).is_some() {
            return Err(ClientError::InvalidUri(format!(
                "the back-channel logout URI {uri:?} must be https (or http to localhost), without a fragment"
            )));
        }
    }
    settings.redirect_uris.dedup();
    settings.post_logout_redirect_uris.dedup();
    if settings.grant_types.is_empty() {
        return Err(ClientError::InvalidGrants(
            "a client needs at least one grant type".into(),
        ));
    }
    if settings.grant_types.contains(&GrantType::AuthorizationCode)
        && settings.redirect_uris.is_empty()
    {
        return Err(ClientError::InvalidGrants(
            "the authorization_code grant needs at least one redirect URI".into(),
        ));
    }
    if settings.grant_types.contains(&GrantType::RefreshToken)
        && !settings.grant_types.contains(&GrantType::AuthorizationCode)
    {
        return Err(ClientError::InvalidGrants(
            "the refresh_token grant comes with the authorization_code grant".into(),
        ));
    }
    if kind == ClientKind::Public && settings.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(ClientError::InvalidGrants(
            "a public client cannot use client_credentials: it holds no secret".into(),
        ));
    }
    if let Some(scope) = settings
        .scopes
        .iter()
        .find(|s| !SCOPES.contains(&s.as_str()))
    {
        return Err(ClientError::UnknownScope(scope.clone()));
    }
    Ok(settings)
}

pub fn decide(state: &Client, command: ClientCommand) -> Result<Vec<ClientEvent>, ClientError> {
    match command {
        ClientCommand::Register {
            kind,
            settings,
            secret,
        } => {
            if state.status != ClientStatus::Absent {
                return Err(ClientError::AlreadyExists);
            }
            let settings = check(kind, &settings)?;
            let secret = match kind {
                ClientKind::Confidential => secret,
                ClientKind::Public => None,
            };
            Ok(vec![ClientEvent::Registered(ClientRegistered {
                kind,
                settings,
                secret,
            })])
        }
        ClientCommand::Update { settings } => {
            let kind = active(state)?;
            let settings = check(kind, &settings)?;
            if state.settings.as_ref() == Some(&settings) {
                return Ok(vec![]);
            }
            Ok(vec![ClientEvent::Updated(ClientUpdated { settings })])
        }
        ClientCommand::RotateSecret { secret } => {
            if active(state)? == ClientKind::Public {
                return Err(ClientError::PublicClientSecret);
            }
            Ok(vec![ClientEvent::SecretRotated(ClientSecretRotated {
                secret,
            })])
        }
        ClientCommand::Remove => match state.status {
            ClientStatus::Absent => Err(ClientError::NotFound),
            ClientStatus::Removed => Ok(vec![]),
            ClientStatus::Active => Ok(vec![ClientEvent::Removed(ClientRemoved {})]),
        },
        ClientCommand::RecordCredentialsUse { now } => {
            active(state)?;
            if state
                .last_used_at
                .is_some_and(|at| now - at < USE_RECORD_INTERVAL)
            {
                return Ok(vec![]);
            }
            Ok(vec![ClientEvent::CredentialsUsed(ClientCredentialsUsed {
                at: now,
            })])
        }
    }
}

fn active(state: &Client) -> Result<ClientKind, ClientError> {
    match (state.status, state.kind) {
        (ClientStatus::Active, Some(kind)) => Ok(kind),
        _ => Err(ClientError::NotFound),
    }
}

pub fn evolve(mut state: Client, event: &ClientEvent) -> Client {
    match event {
        ClientEvent::Registered(e) => {
            state.status = ClientStatus::Active;
            state.kind = Some(e.kind);
            state.settings = Some(e.settings.clone());
            state.secret = e.secret.clone();
        }
        ClientEvent::Updated(e) => state.settings = Some(e.settings.clone()),
        ClientEvent::SecretRotated(e) => state.secret = Some(e.secret.clone()),
        ClientEvent::Removed(_) => state.status = ClientStatus::Removed,
        ClientEvent::CredentialsUsed(e) => state.last_used_at = Some(e.at),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Decides `when` on the state `events` leave.
    fn given(events: &[ClientEvent], when: ClientCommand) -> Result<Vec<ClientEvent>, ClientError> {
        decide(&events.iter().fold(Client::default(), evolve), when)
    }

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn settings(uris: &[&str], grants: &[GrantType]) -> ClientSettings {
        ClientSettings {
            name: " Shop ".into(),
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            post_logout_redirect_uris: vec![],
            grant_types: grants.iter().copied().collect(),
            scopes: ["openid", "email"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            first_party: false,
            backchannel_logout_uri: None,
        }
    }

    fn secret() -> BlindIndex {
        BlindIndex::parse("ab".repeat(32)).unwrap()
    }

    fn register(kind: ClientKind, s: ClientSettings) -> ClientCommand {
        ClientCommand::Register {
            kind,
            settings: s,
            secret: Some(secret()),
        }
    }

    const CODE: &[GrantType] = &[GrantType::AuthorizationCode, GrantType::RefreshToken];

    #[test]
    fn a_confidential_client_is_registered_with_its_name_trimmed_and_its_secret_index() {
        let events = given(
            &[],
            register(
                ClientKind::Confidential,
                settings(&["https://shop.example/cb"], CODE),
            ),
        )
        .unwrap();
        let [ClientEvent::Registered(e)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(e.settings.name, "Shop");
        assert_eq!(e.secret, Some(secret()));
    }

    #[test]
    fn a_public_client_keeps_no_secret_and_cannot_use_client_credentials() {
        let events = given(
            &[],
            register(
                ClientKind::Public,
                settings(&["com.example.shop:/cb"], CODE),
            ),
        )
        .unwrap();
        let [ClientEvent::Registered(e)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(e.secret, None);
        assert!(matches!(
            given(
                &[],
                register(
                    ClientKind::Public,
                    settings(&[], &[GrantType::ClientCredentials])
                )
            ),
            Err(ClientError::InvalidGrants(_))
        ));
    }

    #[test]
    fn redirect_uris_must_be_exact_safe_and_absolute() {
        for bad in [
            "http://shop.example/cb",
            "https://shop.example/cb#frag",
            "https://*.shop.example/cb",
            "/cb",
            "javascript:alert(1)",
            "https://user:pw@shop.example/cb",
        ] {
            assert!(
                matches!(
                    given(
                        &[],
                        register(ClientKind::Confidential, settings(&[bad], CODE))
                    ),
                    Err(ClientError::InvalidUri(_))
                ),
                "{bad}"
            );
        }
        for good in [
            "https://shop.example/cb?x=1",
            "http://localhost:8000/cb",
            "http://127.0.0.1/cb",
            "com.example.app:/oauth",
        ] {
            assert!(redirect_uri_problem(good).is_none(), "{good}");
        }
    }

    #[test]
    fn a_back_channel_logout_uri_is_https_or_http_to_this_machine_without_a_fragment() {
        let with = |uri: &str| {
            let mut s = settings(&["https://shop.example/cb"], CODE);
            s.backchannel_logout_uri = Some(uri.to_owned());
            given(&[], register(ClientKind::Confidential, s))
        };
        for bad in [
            "http://shop.example/logout",
            "https://shop.example/logout#frag",
            "com.example.app:/logout",
            "ftp://shop.example/logout",
            "/logout",
            "https://user:pw@shop.example/logout",
            "https://*.shop.example/logout",
            "",
        ] {
            assert!(
                matches!(with(bad), Err(ClientError::InvalidUri(_))),
                "{bad:?}"
            );
        }
        for good in [
            "https://shop.example/backchannel?tenant=acme",
            "http://localhost:8000/logout",
            "http://127.0.0.1:9000/logout",
        ] {
            let events = with(good).unwrap();
            let [ClientEvent::Registered(e)] = events.as_slice() else {
                panic!("{events:?}")
            };
            assert_eq!(e.settings.backchannel_logout_uri.as_deref(), Some(good));
        }
    }

    #[test]
    fn grants_must_make_sense_together() {
        for grants in [
            &[][..],
            &[GrantType::RefreshToken][..],
            &[GrantType::AuthorizationCode][..],
        ] {
            let uris: &[&str] = if grants.contains(&GrantType::AuthorizationCode) {
                &[]
            } else {
                &["https://shop.example/cb"]
            };
            assert!(matches!(
                given(
                    &[],
                    register(ClientKind::Confidential, settings(uris, grants))
                ),
                Err(ClientError::InvalidGrants(_))
            ));
        }
        let mut unknown = settings(&["https://shop.example/cb"], CODE);
        unknown.scopes.insert("admin".into());
        assert_eq!(
            given(&[], register(ClientKind::Confidential, unknown)),
            Err(ClientError::UnknownScope("admin".into()))
        );
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing_and_a_removed_client_is_gone() {
        let s = settings(&["https://shop.example/cb"], CODE);
        let registered = given(&[], register(ClientKind::Confidential, s.clone())).unwrap();
        assert_eq!(
            given(
                &registered,
                ClientCommand::Update {
                    settings: s.clone()
                }
            ),
            Ok(vec![])
        );
        let mut removed = registered.clone();
        removed.push(ClientEvent::Removed(ClientRemoved {}));
        assert_eq!(
            given(&removed, ClientCommand::Update { settings: s }),
            Err(ClientError::NotFound)
        );
        assert_eq!(
            given(&removed, ClientCommand::RotateSecret { secret: secret() }),
            Err(ClientError::NotFound)
        );
        assert_eq!(given(&removed, ClientCommand::Remove), Ok(vec![]));
    }

    #[test]
    fn credentials_use_is_recorded_at_most_once_a_minute() {
        let s = settings(&[], &[GrantType::ClientCredentials]);
        let mut events = given(&[], register(ClientKind::Confidential, s)).unwrap();
        let used = given(&events, ClientCommand::RecordCredentialsUse { now: NOW }).unwrap();
        assert_eq!(used.len(), 1);
        events.extend(used);
        assert_eq!(
            given(
                &events,
                ClientCommand::RecordCredentialsUse {
                    now: NOW + time::Duration::seconds(30)
                }
            ),
            Ok(vec![])
        );
    }
}
