//! idstream as an OpenID Connect provider (OpenID Connect Core 1.0 and Discovery 1.0, with the
//! OAuth 2.1 and RFC 9700 practices): one issuer per tenant, `<public URL>/t/<tenant>`, so that an
//! application is bound to one tenant as a Keycloak realm binds it.
//!
//! - **Clients** are an aggregate of their tenant, managed by its administrators (`settings:read`
//!   to see them, `settings:update` to change them): confidential (a secret shown once, kept as a
//!   blind index) or public (PKCE required). Redirect URIs are compared exactly.
//! - **Authorization code flow.** The hosted sign-in page is the login step; the browser's
//!   session gives single sign-on across clients. A code is the first event of a new session
//!   (`AuthorizationCodeIssued`); exchanging it starts that session (`SessionStarted`), so an
//!   application's refresh tokens rotate with reuse detection exactly like idstream's own, a
//!   code presented twice revokes what its first exchange issued, and codes are single-use
//!   across replicas (the exchange is an append with the session's expected sequence). The code
//!   names its session, so the exchange reads the log, not a read model that may lag.
//! - **Tokens.** Access tokens are RFC 9068 JWTs (`at+jwt`) with the client as audience, the
//!   tenant's issuer, `scope` and `client_id`; ID tokens carry `sub`, `email`,
//!   `email_verified`, names, `tid`, `sid`, `amr`, `acr`, `auth_time` and `nonce`. All are EdDSA,
//!   signed by the service's rotating key ring, published at the issuer's JWKS.
//!   An application's tokens are not accepted by idstream's own `/v1` API: they carry only what
//!   the person consented to, not the person's administrative powers.
//! - **Consent.** Third-party clients get a consent screen; the answer is an event
//!   (`ConsentGranted`), remembered and revocable from the account. First-party clients skip it.
//! - **Logout.** RP-initiated logout ends the browser session and every application session
//!   issued through it; signing out of the hosted pages does the same. Whenever an application's
//!   session ends, for whatever reason, a client with a `backchannel_logout_uri` is told so by a
//!   logout token posted there (OpenID Connect Back-Channel Logout 1.0, [`backchannel`]), from
//!   a task that follows the log.

pub mod backchannel;

use std::collections::BTreeSet;

use idstream_auth::{AccessClaims, AccessSubject, Issuer, OpaqueToken, TokenKind};
use idstream_domain::access::Action;
use idstream_domain::aggregate::{ClientAggregate, ConsentAggregate, SessionAggregate};
use idstream_domain::envelope::AggregateType;
use idstream_domain::identity::client::{ClientCommand, ClientKind, ClientSettings, GrantType};
use idstream_domain::identity::consent::{ConsentCommand, consent_id};
use idstream_domain::identity::session::{
    RevocationReason, Session, SessionCommand, SessionError, SessionLifetimes, SessionStatus,
    SignInMethod,
};
use idstream_domain::{StreamKey, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::{ClientView, ConsentView, SessionView};
use serde_json::{Value, json};
use time::OffsetDateTime;
use ulid::Ulid;

use crate::core::{Core, internal};
use crate::identity::{Credential, identity_storage, session_key};
use crate::policy::{Caller, Principal};
use crate::{AppError, service};

service!(
    /// The OpenID Connect provider: clients, the authorization and token endpoints, userinfo,
    /// revocation, introspection, logout and consents.
    Oidc
);

/// An OAuth error as the protocol endpoints answer it (RFC 6749 §5.2, OpenID Connect Core
/// §3.1.2.6): its `error` code and a description for developers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            error,
            description: description.into(),
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.description)
    }
}

fn oauth(error: &'static str, description: impl Into<String>) -> AppError {
    AppError::OAuth(OAuthError::new(error, description))
}

/// One answer for every failure of client authentication (RFC 6749 §5.2).
fn invalid_client() -> AppError {
    oauth(
        "invalid_client",
        "client authentication failed (unknown client, wrong secret, or a method the client may not use)",
    )
}

fn invalid_grant() -> AppError {
    oauth(
        "invalid_grant",
        "the authorization code or refresh token is invalid, expired, used, or was issued to another client or redirect URI",
    )
}

/// `POST /v1/tenants/{tenant}/clients`
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub kind: ClientKind,
    pub settings: ClientSettings,
}

/// A registered client, with its secret shown this once (confidential clients). `Debug` redacts
/// the secret.
#[derive(Clone)]
pub struct RegisteredClient {
    pub client: ClientView,
    pub secret: Option<String>,
    pub position: Position,
}

impl std::fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client", &self.client.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parameters of an authorization request, as sent (each checked by
/// [`Oidc::authorize`]).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub response_mode: Option<String>,
    /// Set by idstream itself when it sends the person to sign in again (`prompt=login`): only a
    /// sign-in at or after this unix time counts. A client adding it only asks for more.
    pub signed_in_after: Option<String>,
}

/// What the authorization endpoint does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The person must sign in (again): show the sign-in page, then come back to `return_to`.
    SignIn {
        login_hint: Option<String>,
        return_to: String,
    },
    /// A third-party client asks for scopes not consented to yet: ask.
    Consent(ConsentPrompt),
    /// Send the browser back to the client: with a code, or with an error.
    Redirect(String),
}

/// What the consent screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentPrompt {
    pub client_name: String,
    pub scopes: Vec<String>,
    /// Where the client is (the redirect URI's origin), so the person sees who asks.
    pub client_origin: String,
}

/// How a client authenticated at the token, revocation or introspection endpoint.
#[derive(Clone, Default)]
pub struct ClientAuth {
    pub id: Option<String>,
    pub secret: Option<String>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A token request's parameters (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
}

/// A token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3). `Debug` redacts the tokens.
#[derive(Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What RP-initiated logout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logout {
    /// Signed out: send the browser to `redirect` (with the client's `state`), or show a page.
    Done { redirect: Option<String> },
    /// Ask the person first (the request did not prove it came from their application).
    Confirm { client_name: Option<String> },
}

/// A request of RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// The claim of an ID token saying how strong the sign-in was (`acr`).
fn acr(method: SignInMethod) -> &'static str {
    if method.is_phishing_resistant() {
        "urn:idstream:acr:phishing-resistant"
    } else if method.is_multi_factor() {
        "urn:idstream:acr:mfa"
    } else {
        "urn:idstream:acr:single-factor"
    }
}

pub(crate) fn client_key(tenant: &TenantId, client: Ulid) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Client,
        client.to_string(),
    )
}

fn consent_key(tenant: &TenantId, client: &str, user: &UserId) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Consent,
        consent_id(client, user),
    )
}

fn scopes_of(text: &str) -> BTreeSet<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn joined(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// `uri` with `params` added to its query.
fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in params {
                    query.append_pair(name, value);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

impl Core {
    /// The issuer of `tenant`: `<public URL>/t/<tenant>`.
    pub(crate) fn issuer_of(&self, tenant: &TenantId) -> String {
        self.link(&format!("/t/{tenant}"))
    }

    fn code_index(&self, canonical: &str) -> idstream_domain::secret::BlindIndex {
        self.id()
            .keys
            .vault()
            .blind_index("authorization-code", canonical)
    }

    fn client_secret_index(&self, canonical: &str) -> idstream_domain::secret::BlindIndex {
        self.id()
            .keys
            .vault()
            .blind_index("client-secret", canonical)
    }

    /// The live client `id` of `tenant` (not removed).
    /// `redirect_uri` when it is one of the live client `client_id`'s redirect URIs: a sign-in
    /// page continuing an authorization request lets its forms lead there (the page's
    /// `form-action`), as the authorization endpoint will send the browser on to it.
    ///
    /// Who: anyone (the sign-in pages).
    pub fn registered_redirect(
        &self,
        tenant: &TenantId,
        client_id: &str,
        redirect_uri: &str,
    ) -> Option<String> {
        self.live_client(tenant, client_id)
            .ok()
            .flatten()
            .filter(|c| c.settings.redirect_uris.iter().any(|u| u == redirect_uri))
            .map(|_| redirect_uri.to_owned())
    }

    /// A back-channel logout URI on this machine itself is for a service running on localhost
    /// only (see [`Core::local_targets_allowed`]).
    fn check_backchannel_target(&self, settings: &ClientSettings) -> Result<(), AppError> {
        let local = settings
            .backchannel_logout_uri
            .as_deref()
            .and_then(|uri| url::Url::parse(uri).ok())
            .and_then(|u| u.host_str().map(crate::core::is_loopback_host))
            .unwrap_or(false);
        if local && !self.local_targets_allowed() {
            return Err(AppError::Client(
                idstream_domain::identity::client::ClientError::InvalidUri(
                    "the back-channel logout URI is this machine itself, which only a service running on localhost may use".into(),
                ),
            ));
        }
        Ok(())
    }

    fn live_client(&self, tenant: &TenantId, id: &str) -> Result<Option<ClientView>, AppError> {
        let Ok(id) = id.parse::<Ulid>() else {
            return Ok(None);
        };
        Ok(self
            .identity()
            .client(tenant, &id)
            .map_err(identity_storage)?
            .filter(|c| c.removed_at.is_none()))
    }

    /// Authenticates a client at the token, revocation or introspection endpoint: a confidential
    /// client by its secret (compared by blind index, in constant time), a public one by its id
    /// alone (which proves nothing, so it may only do what PKCE protects).
    async fn authenticate_client(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        auth: &ClientAuth,
    ) -> Result<ClientView, AppError> {
        match self.check_client(tenant, auth).await? {
            Some(client) => Ok(client),
            None => {
                // Failures count against the source's budget (an application's server makes
                // many requests from one address; guessing a 160-bit secret is hopeless anyway,
                // but a flood of guesses is still cut off).
                self.rate_limit("oidc-client-failure", caller.client().ip())?;
                Err(invalid_client())
            }
        }
    }

    /// The client `auth` proves to be, if it proves one.
    async fn check_client(
        &self,
        tenant: &TenantId,
        auth: &ClientAuth,
    ) -> Result<Option<ClientView>, AppError> {
        let Some(id) = auth.id.as_deref() else {
            return Ok(None);
        };
        let Some(client) = self.find(|core| core.live_client(tenant, id)).await? else {
            return Ok(None);
        };
        let proven = match (client.kind, &auth.secret, &client.secret) {
            (ClientKind::Confidential, Some(presented), Some(stored)) => {
                OpaqueToken::normalize_presented(TokenKind::ClientSecret, presented).is_some_and(
                    |text| {
                        use subtle::ConstantTimeEq;
                        let presented = self.client_secret_index(&text);
                        bool::from(
                            presented
                                .as_str()
                                .as_bytes()
                                .ct_eq(stored.as_str().as_bytes()),
                        )
                    },
                )
            }
            (ClientKind::Public, None, _) => true,
            _ => false,
        };
        Ok(proven.then_some(client))
    }

    /// Ends the application sessions issued through `browser_session` (its sign-out).
    pub(crate) async fn end_application_sessions(
        &self,
        browser_session: Ulid,
        reason: RevocationReason,
    ) -> Result<(), AppError> {
        self.catch_up().await?;
        let now = self.now();
        let children = self
            .identity()
            .sessions_issued_through(&browser_session)
            .map_err(identity_storage)?;
        for child in children.into_iter().filter(|s| s.is_live_at(now)) {
            let outcome = self
                .execute::<SessionAggregate>(
                    &crate::identity::user_ctx_of(child.user),
                    &session_key(child.id),
                    "",
                    SessionCommand::Revoke { reason },
                )
                .await?;
            self.wait_for(outcome.position).await?;
        }
        Ok(())
    }
}

impl Oidc {
    // ----- discovery -----

    /// The issuer of `tenant` (`<public URL>/t/<tenant>`).
    pub fn issuer(&self, tenant: &TenantId) -> String {
        self.issuer_of(tenant)
    }

    /// The discovery document of `tenant`'s issuer (OpenID Connect Discovery 1.0 §3). It is the
    /// same for every tenant id, existing or not, so it tells nobody whether a tenant exists.
    ///
    /// Who: anyone.
    pub fn discovery(&self, caller: &Caller, tenant: &TenantId) -> Value {
        self.open_to_anyone(caller);
        let issuer = self.issuer_of(tenant);
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oidc/authorize"),
            "token_endpoint": format!("{issuer}/oidc/token"),
            "userinfo_endpoint": format!("{issuer}/oidc/userinfo"),
            "jwks_uri": format!("{issuer}/oidc/jwks"),
            "revocation_endpoint": format!("{issuer}/oidc/revoke"),
            "introspection_endpoint": format!("{issuer}/oidc/introspect"),
            "end_session_endpoint": format!("{issuer}/oidc/logout"),
            "scopes_supported": idstream_domain::identity::client::SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "userinfo_signing_alg_values_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
                "sid", "tid", "email", "email_verified", "name", "given_name", "family_name",
            ],
            "acr_values_supported": [
                "urn:idstream:acr:single-factor", "urn:idstream:acr:mfa",
                "urn:idstream:acr:phishing-resistant",
            ],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }

    // ----- clients -----

    /// Registers a client. A confidential client's secret is shown once, in the answer.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn register_client(
        &self,
        caller: &Caller,
        tenant: TenantId,
        request: ClientRequest,
    ) -> Result<RegisteredClient, AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.check_backchannel_target(&request.settings)?;
        let id = Ulid::new();
        let secret = match request.kind {
            ClientKind::Confidential => Some(OpaqueToken::generate(TokenKind::ClientSecret)),
            ClientKind::Public => None,
        };
        let outcome = self
            .execute::<ClientAggregate>(
                caller.ctx(),
                &client_key(&tenant, id),
                "",
                ClientCommand::Register {
                    kind: request.kind,
                    settings: request.settings,
                    secret: secret
                        .as_ref()
                        .map(|s| self.client_secret_index(s.reveal())),
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        let client = self
            .identity()
            .client(&tenant, &id)
            .map_err(identity_storage)?
            .ok_or_else(|| internal("a registered client is missing from the read model"))?;
        Ok(RegisteredClient {
            client,
            secret: secret.map(|s| s.reveal().to_owned()),
            position: outcome.position,
        })
    }

    /// The tenant's clients (removed ones left out).
    ///
    /// Who: `settings:read` in the tenant.
    pub async fn clients(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<ClientView>, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Read)
            .await?;
        Ok(self
            .identity()
            .clients(tenant)
            .map_err(identity_storage)?
            .into_iter()
            .filter(|c| c.removed_at.is_none())
            .collect())
    }

    /// One client of the tenant.
    ///
    /// Who: `settings:read` in the tenant.
    pub async fn client(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: Ulid,
    ) -> Result<ClientView, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Read)
            .await?;
        self.find(|core| core.live_client(tenant, &id.to_string()))
            .await?
            .ok_or(AppError::Client(
                idstream_domain::identity::client::ClientError::NotFound,
            ))
    }

    /// Replaces a client's settings.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn update_client(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: Ulid,
        settings: ClientSettings,
    ) -> Result<crate::Outcome, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Update)
            .await?;
        self.check_backchannel_target(&settings)?;
        let outcome = self
            .execute::<ClientAggregate>(
                caller.ctx(),
                &client_key(tenant, id),
                "",
                ClientCommand::Update { settings },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Gives a confidential client a new secret (shown once); the old one stops working.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn rotate_client_secret(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: Ulid,
    ) -> Result<RegisteredClient, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Update)
            .await?;
        let secret = OpaqueToken::generate(TokenKind::ClientSecret);
        let outcome = self
            .execute::<ClientAggregate>(
                caller.ctx(),
                &client_key(tenant, id),
                "",
                ClientCommand::RotateSecret {
                    secret: self.client_secret_index(secret.reveal()),
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        let client = self
            .identity()
            .client(tenant, &id)
            .map_err(identity_storage)?
            .ok_or_else(|| internal("a client is missing from the read model"))?;
        Ok(RegisteredClient {
            client,
            secret: Some(secret.reveal().to_owned()),
            position: outcome.position,
        })
    }

    /// Removes a client: it signs nobody in any more and its tokens stop working.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn remove_client(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: Ulid,
    ) -> Result<crate::Outcome, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Update)
            .await?;
        let outcome = self
            .execute::<ClientAggregate>(
                caller.ctx(),
                &client_key(tenant, id),
                "",
                ClientCommand::Remove,
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    // ----- consents -----

    /// The caller's consents in their current tenant, with each client's name.
    ///
    /// Who: the signed-in user, through a session.
    pub fn my_consents(&self, caller: &Caller) -> Result<Vec<(ConsentView, String)>, AppError> {
        let me = self.own_session(caller)?;
        let consents = self
            .identity()
            .consents(&me.tenant, &me.user)
            .map_err(identity_storage)?;
        Ok(consents
            .into_iter()
            .map(|consent| {
                let name = self
                    .live_client(&me.tenant, &consent.client)
                    .ok()
                    .flatten()
                    .map_or_else(|| consent.client.clone(), |c| c.settings.name);
                (consent, name)
            })
            .collect())
    }

    /// Takes back the caller's consent to `client` in their current tenant: the client must ask
    /// again, and its sessions of the caller end.
    ///
    /// Who: the signed-in user, through a session.
    pub async fn revoke_my_consent(
        &self,
        caller: &Caller,
        client: &str,
    ) -> Result<crate::Outcome, AppError> {
        let me = self.own_session(caller)?;
        if client.parse::<Ulid>().is_err() {
            return Err(AppError::Consent(
                idstream_domain::identity::consent::ConsentError::NotFound,
            ));
        }
        let outcome = self
            .execute::<ConsentAggregate>(
                caller.ctx(),
                &consent_key(&me.tenant, client, &me.user),
                "",
                ConsentCommand::Revoke,
            )
            .await?;
        for session in self.live_sessions(me.user)? {
            if session.client.as_deref() == Some(client) {
                self.execute::<SessionAggregate>(
                    caller.ctx(),
                    &session_key(session.id),
                    &format!("session-{}", session.id),
                    SessionCommand::Revoke {
                        reason: RevocationReason::RevokedByUser,
                    },
                )
                .await?;
            }
        }
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    // ----- the authorization endpoint -----

    /// The authorization endpoint (OpenID Connect Core §3.1.2). `consent` is the person's answer
    /// on the consent screen, if they just gave one.
    ///
    /// An unknown client or a redirect URI it did not register is answered with an error
    /// (`Err`), never by a redirect (which would make idstream an open redirector); every other
    /// refusal goes back to the client as an error redirect.
    ///
    /// Who: anyone; the code is issued for the signed-in person of the browser's session, who
    /// must be an active member of the tenant.
    pub async fn authorize(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        request: &AuthorizeRequest,
        consent: Option<bool>,
    ) -> Result<Authorization, AppError> {
        self.open_to_anyone(caller);
        let client_id = request.client_id.as_deref().unwrap_or("");
        let client = self
            .find(|core| core.live_client(tenant, client_id))
            .await?
            .ok_or_else(|| oauth("invalid_client", "unknown client_id"))?;
        let redirect_uri = request.redirect_uri.clone().unwrap_or_default();
        if !client.settings.redirect_uris.contains(&redirect_uri) {
            return Err(oauth(
                "invalid_request",
                "redirect_uri is missing or is not one the client registered (compared exactly)",
            ));
        }
        let issuer = self.issuer_of(tenant);
        let state = request.state.clone();
        let fail = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            params.push(("iss", issuer.as_str()));
            Ok(Authorization::Redirect(with_params(&redirect_uri, &params)))
        };
        if request.response_type.as_deref() != Some("code") {
            return fail(
                "unsupported_response_type",
                "only the authorization code flow (response_type=code) is supported",
            );
        }
        if request
            .response_mode
            .as_deref()
            .is_some_and(|mode| mode != "query")
        {
            return fail("invalid_request", "only response_mode=query is supported");
        }
        if !client
            .settings
            .grant_types
            .contains(&GrantType::AuthorizationCode)
        {
            return fail(
                "unauthorized_client",
                "this client may not use the authorization code flow",
            );
        }
        let scopes = scopes_of(request.scope.as_deref().unwrap_or(""));
        if scopes.is_empty() {
            return fail("invalid_scope", "scope is required (at least openid)");
        }
        if let Some(scope) = scopes.iter().find(|s| !client.settings.scopes.contains(*s)) {
            return fail(
                "invalid_scope",
                &format!("the client may not ask for the scope {scope:?}"),
            );
        }
        let challenge = match (
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
        ) {
            (None, _) if client.kind == ClientKind::Public => {
                return fail(
                    "invalid_request",
                    "a public client must use PKCE (code_challenge with code_challenge_method=S256)",
                );
            }
            (None, _) => None,
            (Some(challenge), Some("S256"))
                if challenge.len() == 43
                    && challenge
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(challenge.to_owned())
            }
            (Some(_), Some("S256")) => {
                return fail(
                    "invalid_request",
                    "code_challenge must be the 43-character base64url SHA-256 of the verifier",
                );
            }
            (Some(_), _) => {
                return fail(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is not accepted)",
                );
            }
        };
        if request.nonce.as_ref().is_some_and(|n| n.len() > 512)
            || request.state.as_ref().is_some_and(|s| s.len() > 2048)
        {
            return fail("invalid_request", "nonce or state is too long");
        }
        let prompts = scopes_of(request.prompt.as_deref().unwrap_or(""));
        if prompts
            .iter()
            .any(|p| !matches!(p.as_str(), "none" | "login" | "consent"))
        {
            return fail(
                "invalid_request",
                "prompt may be none, login or consent (select_account is not supported)",
            );
        }
        if prompts.contains("none") && prompts.len() > 1 {
            return fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            );
        }
        let max_age = match request.max_age.as_deref() {
            None => None,
            Some(text) => match text.parse::<u32>() {
                Ok(seconds) => Some(i64::from(seconds)),
                Err(_) => return fail("invalid_request", "max_age must be a number of seconds"),
            },
        };
        let signed_in_after = request
            .signed_in_after
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok());

        // Who is signed in, and since when.
        let now = self.now();
        let signed_in = match caller.principal() {
            Principal::User(auth) if !auth.must_enrol_second_factor => match &auth.via {
                Credential::Session(session) => self
                    .find(|core| core.identity().session(session).map_err(identity_storage))
                    .await?
                    .filter(|s| s.is_live_at(now) && s.client.is_none())
                    .map(|s| (auth.user, s)),
                Credential::ApiKey { .. } => None,
            },
            _ => None,
        };
        let return_to = |fresh: bool| {
            let mut again = request.clone();
            if fresh {
                // After signing in again, the new sign-in is what counts.
                again.prompt = None;
                again.signed_in_after = Some(now.unix_timestamp().to_string());
            }
            let query = serde_urlencoded::to_string(&again).unwrap_or_default();
            format!("/t/{tenant}/oidc/authorize?{query}")
        };
        let sign_in = |fresh: bool| {
            Ok(Authorization::SignIn {
                login_hint: request.login_hint.clone(),
                return_to: return_to(fresh),
            })
        };
        let Some((user, browser)) = signed_in else {
            if prompts.contains("none") {
                return fail("login_required", "nobody is signed in");
            }
            return sign_in(false);
        };
        let auth_time = browser.started_at;
        let too_old = max_age.is_some_and(|age| (now - auth_time).whole_seconds() > age)
            || signed_in_after.is_some_and(|after| auth_time.unix_timestamp() < after);
        if prompts.contains("login") || too_old {
            if prompts.contains("none") {
                return fail("login_required", "a new sign-in is required");
            }
            return sign_in(prompts.contains("login"));
        }
        // An active member of the tenant.
        if !self.user_tenants(&user)?.contains(tenant) || self.require_active(user, now).is_err() {
            if prompts.contains("none") {
                return fail(
                    "login_required",
                    "the signed-in person cannot sign in to this organisation",
                );
            }
            return fail(
                "access_denied",
                "the signed-in person cannot sign in to this organisation",
            );
        }

        // Consent.
        if !client.settings.first_party {
            match consent {
                Some(false) => return fail("access_denied", "the person declined"),
                Some(true) => {
                    let outcome = self
                        .execute::<ConsentAggregate>(
                            &crate::identity::user_ctx_of(user),
                            &consent_key(tenant, client_id, &user),
                            "",
                            ConsentCommand::Grant {
                                user,
                                client: client_id.to_owned(),
                                scopes: scopes.clone(),
                            },
                        )
                        .await?;
                    self.wait_for(outcome.position).await?;
                }
                None => {
                    let covered = self
                        .identity()
                        .consent(tenant, &user, client_id)
                        .map_err(identity_storage)?
                        .is_some_and(|c| scopes.is_subset(&c.scopes));
                    if !covered || prompts.contains("consent") {
                        if prompts.contains("none") {
                            return fail("consent_required", "the person has not consented");
                        }
                        let origin = url::Url::parse(&redirect_uri)
                            .map(|u| u.origin().ascii_serialization())
                            .unwrap_or_default();
                        return Ok(Authorization::Consent(ConsentPrompt {
                            client_name: client.settings.name.clone(),
                            scopes: scopes.iter().cloned().collect(),
                            client_origin: origin,
                        }));
                    }
                }
            }
        }

        // The code: the first event of the session it will start.
        let session = Ulid::new();
        let token = OpaqueToken::generate(TokenKind::AuthorizationCode);
        self.execute::<SessionAggregate>(
            &crate::identity::user_ctx_of(user),
            &session_key(session),
            "",
            SessionCommand::IssueCode {
                code: self.code_index(token.reveal()),
                client: client_id.to_owned(),
                redirect_uri: redirect_uri.clone(),
                scopes,
                nonce: request.nonce.clone(),
                code_challenge: challenge,
                user,
                tenant: tenant.clone(),
                method: browser.method,
                auth_time,
                browser_session: browser.id.to_string(),
                now,
                lifetime: self.id().config.code_ttl,
            },
        )
        .await?;
        let code = format!("{session}~{}", token.reveal());
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &state {
            params.push(("state", state));
        }
        params.push(("iss", issuer.as_str()));
        Ok(Authorization::Redirect(with_params(&redirect_uri, &params)))
    }

    // ----- the token endpoint -----

    /// The token endpoint (RFC 6749 §3.2): `authorization_code`, `refresh_token` and
    /// `client_credentials`.
    ///
    /// Who: a client of the tenant, authenticated by its secret (confidential) or its id and
    /// PKCE (public).
    pub async fn token(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        auth: &ClientAuth,
        request: &TokenRequest,
    ) -> Result<TokenResponse, AppError> {
        let client = self.authenticate_client(caller, tenant, auth).await?;
        let grant = match request.grant_type.as_deref() {
            Some("authorization_code") => GrantType::AuthorizationCode,
            Some("refresh_token") => GrantType::RefreshToken,
            Some("client_credentials") => GrantType::ClientCredentials,
            Some(_) => {
                return Err(oauth(
                    "unsupported_grant_type",
                    "grant_type must be authorization_code, refresh_token or client_credentials",
                ));
            }
            None => return Err(oauth("invalid_request", "grant_type is required")),
        };
        if !client.settings.grant_types.contains(&grant) {
            return Err(oauth(
                "unauthorized_client",
                format!("this client may not use the {} grant", grant.as_str()),
            ));
        }
        match grant {
            GrantType::AuthorizationCode => self.exchange_code(tenant, &client, request).await,
            GrantType::RefreshToken => self.refresh_grant(tenant, &client, request).await,
            GrantType::ClientCredentials => self.client_credentials(tenant, &client, request).await,
        }
    }

    async fn exchange_code(
        &self,
        tenant: &TenantId,
        client: &ClientView,
        request: &TokenRequest,
    ) -> Result<TokenResponse, AppError> {
        let code = request
            .code
            .as_deref()
            .ok_or_else(|| oauth("invalid_request", "code is required"))?;
        let (session, token) = code.split_once('~').ok_or_else(invalid_grant)?;
        let session = session.parse::<Ulid>().map_err(|_| invalid_grant())?;
        let token = OpaqueToken::normalize_presented(TokenKind::AuthorizationCode, token)
            .ok_or_else(invalid_grant)?;
        let now = self.now();
        let lifetimes = SessionLifetimes::of(&self.tenant_view(tenant).await?.settings);
        let refresh = OpaqueToken::generate(TokenKind::Refresh);
        let (outcome, state) = self
            .execute_to_state::<SessionAggregate>(
                &crate::identity::system_ctx("oidc-token"),
                &session_key(session),
                "",
                SessionCommand::RedeemCode {
                    presented: self.code_index(&token),
                    client: client.id.to_string(),
                    redirect_uri: request.redirect_uri.clone().unwrap_or_default(),
                    code_verifier: request.code_verifier.clone(),
                    refresh: self.refresh_index(refresh.reveal()),
                    lifetimes,
                    now,
                },
            )
            .await
            .map_err(|e| match e {
                AppError::Session(SessionError::InvalidGrant | SessionError::Ended) => {
                    invalid_grant()
                }
                other => other,
            })?;
        if state.status != SessionStatus::Active {
            // The code was used before: what its first use issued is revoked now.
            tracing::warn!(%session, "an authorization code was presented again; its session is revoked");
            self.wait_for(outcome.position).await?;
            return Err(invalid_grant());
        }
        self.application_tokens(tenant, client, session, &state, Some(refresh), true, now)
    }

    async fn refresh_grant(
        &self,
        tenant: &TenantId,
        client: &ClientView,
        request: &TokenRequest,
    ) -> Result<TokenResponse, AppError> {
        let presented = request
            .refresh_token
            .as_deref()
            .ok_or_else(|| oauth("invalid_request", "refresh_token is required"))?;
        let text = OpaqueToken::normalize_presented(TokenKind::Refresh, presented)
            .ok_or_else(invalid_grant)?;
        let index = self.refresh_index(&text);
        let session = self
            .find(|core| {
                core.identity()
                    .session_by_refresh(&index)
                    .map_err(identity_storage)
            })
            .await?
            .ok_or_else(invalid_grant)?;
        let now = self.now();
        let next = OpaqueToken::generate(TokenKind::Refresh);
        let (outcome, state) = self
            .execute_to_state::<SessionAggregate>(
                &crate::identity::system_ctx("oidc-token"),
                &session_key(session),
                "",
                SessionCommand::Refresh {
                    presented: index,
                    next: self.refresh_index(next.reveal()),
                    now,
                    client: Some(client.id.to_string()),
                },
            )
            .await
            .map_err(|e| match e {
                AppError::Session(SessionError::Ended) => invalid_grant(),
                other => other,
            })?;
        if state.status != SessionStatus::Active {
            tracing::warn!(%session, "a rotated refresh token of an application was presented again; the session is revoked");
            self.wait_for(outcome.position).await?;
            return Err(invalid_grant());
        }
        let user = state.user.ok_or_else(invalid_grant)?;
        if self.require_active(user, now).is_err() || !self.user_tenants(&user)?.contains(tenant) {
            return Err(invalid_grant());
        }
        // A narrower scope may be asked for (RFC 6749 §6), never a wider one.
        if let Some(scope) = &request.scope {
            let granted = state
                .code
                .as_ref()
                .map(|c| c.scopes.clone())
                .unwrap_or_default();
            if !scopes_of(scope).is_subset(&granted) {
                return Err(oauth("invalid_scope", "a refresh cannot widen the scope"));
            }
        }
        self.application_tokens(tenant, client, session, &state, Some(next), false, now)
    }

    /// Access, refresh and ID tokens for an application's session in `state`.
    #[allow(clippy::too_many_arguments)]
    fn application_tokens(
        &self,
        tenant: &TenantId,
        client: &ClientView,
        session: Ulid,
        state: &Session,
        refresh: Option<OpaqueToken>,
        first: bool,
        now: OffsetDateTime,
    ) -> Result<TokenResponse, AppError> {
        let code = state.code.as_ref().ok_or_else(invalid_grant)?;
        let user = code.user;
        let scopes = code.scopes.clone();
        let issuer = self.issuer_of(tenant);
        let parts = self.id();
        let ring = parts.keys.signing();
        let ttl = parts.issuer.ttl.min(ring.max_token_ttl());
        let signer = Issuer::new(issuer.clone(), client.id.to_string(), ttl);
        let amr: Vec<String> = code.method.amr().iter().map(|m| (*m).to_owned()).collect();
        let access_token = signer.sign(
            &ring,
            &AccessSubject {
                sub: user.to_string(),
                tid: tenant.to_string(),
                sid: session.to_string(),
                amr: amr.clone(),
                client_id: Some(client.id.to_string()),
                scope: Some(joined(&scopes)),
            },
            now,
        );
        let id_token = if scopes.contains("openid") {
            let mut claims = json!({
                "iss": issuer,
                "sub": user.to_string(),
                "aud": client.id.to_string(),
                "azp": client.id.to_string(),
                "exp": (now + ttl).unix_timestamp(),
                "iat": now.unix_timestamp(),
                "auth_time": code.auth_time.unix_timestamp(),
                "amr": amr,
                "acr": acr(code.method),
                "sid": session.to_string(),
                "tid": tenant.to_string(),
            });
            if first && let Some(nonce) = &code.nonce {
                claims["nonce"] = json!(nonce);
            }
            self.user_claims(&user, &scopes, &mut claims)?;
            Some(idstream_auth::sign_jwt(&ring, "JWT", &claims, now))
        } else {
            None
        };
        let refresh_token = refresh
            .filter(|_| {
                client
                    .settings
                    .grant_types
                    .contains(&GrantType::RefreshToken)
            })
            .map(|t| t.reveal().to_owned());
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl.whole_seconds(),
            refresh_token,
            id_token,
            scope: joined(&scopes),
        })
    }

    /// Adds the claims of `scopes` about `user` to `claims` (OpenID Connect Core §5.4).
    fn user_claims(
        &self,
        user: &UserId,
        scopes: &BTreeSet<String>,
        claims: &mut Value,
    ) -> Result<(), AppError> {
        let view = self.user_now(user)?;
        if scopes.contains("email") {
            claims["email"] = json!(view.email);
            claims["email_verified"] = json!(view.email_verified);
        }
        if scopes.contains("profile") {
            let name = format!("{} {}", view.first_name, view.last_name)
                .trim()
                .to_owned();
            claims["name"] = json!(name);
            claims["given_name"] = json!(view.first_name);
            claims["family_name"] = json!(view.last_name);
            if let Some(picture) = &view.image_url {
                claims["picture"] = json!(picture);
            }
        }
        Ok(())
    }

    async fn client_credentials(
        &self,
        tenant: &TenantId,
        client: &ClientView,
        request: &TokenRequest,
    ) -> Result<TokenResponse, AppError> {
        let scopes = match &request.scope {
            Some(scope) => scopes_of(scope),
            None => BTreeSet::new(),
        };
        if scopes.contains("openid") || !scopes.is_subset(&client.settings.scopes) {
            return Err(oauth(
                "invalid_scope",
                "client credentials carry no person: ask only for scopes the client may have, without openid",
            ));
        }
        let now = self.now();
        self.execute::<ClientAggregate>(
            &crate::identity::system_ctx("oidc-token"),
            &client_key(tenant, client.id),
            "",
            ClientCommand::RecordCredentialsUse { now },
        )
        .await?;
        let parts = self.id();
        let ring = parts.keys.signing();
        let ttl = parts.issuer.ttl.min(ring.max_token_ttl());
        let signer = Issuer::new(self.issuer_of(tenant), client.id.to_string(), ttl);
        let access_token = signer.sign(
            &ring,
            &AccessSubject {
                sub: client.id.to_string(),
                tid: tenant.to_string(),
                sid: String::new(),
                amr: Vec::new(),
                client_id: Some(client.id.to_string()),
                scope: Some(joined(&scopes)),
            },
            now,
        );
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl.whole_seconds(),
            refresh_token: None,
            id_token: None,
            scope: joined(&scopes),
        })
    }

    // ----- userinfo, introspection, revocation -----

    /// The claims of an application's access token that is live now: signed by this service
    /// for `tenant`'s issuer, its client live, its session (if it has one) live and of that
    /// client, its person active.
    async fn live_access_token(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<Option<AccessClaims>, AppError> {
        let now = self.now();
        let verifier = Issuer::new(self.issuer_of(tenant), "", self.id().issuer.ttl);
        let Ok(claims) = verifier.verify_any_audience(&self.id().keys.signing(), token, now) else {
            return Ok(None);
        };
        if claims.tid != tenant.as_str() || claims.client_id.as_deref() != Some(&claims.aud) {
            return Ok(None);
        }
        if self
            .find(|core| core.live_client(tenant, &claims.aud))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        if claims.sid.is_empty() {
            return Ok(Some(claims));
        }
        let Ok(session) = claims.sid.parse::<Ulid>() else {
            return Ok(None);
        };
        let live = self
            .find(|core| core.identity().session(&session).map_err(identity_storage))
            .await?
            .is_some_and(|s: SessionView| {
                s.is_live_at(now)
                    && s.client.as_deref() == Some(&claims.aud)
                    && s.user.to_string() == claims.sub
            });
        let active = claims
            .sub
            .parse::<UserId>()
            .is_ok_and(|user| self.require_active(user, now).is_ok());
        Ok((live && active).then_some(claims))
    }

    /// The userinfo endpoint (OpenID Connect Core §5.3): the claims of the access token's scopes
    /// about its person.
    ///
    /// Who: the holder of a live access token of the tenant's issuer, issued with a person
    /// (not by client credentials).
    pub async fn userinfo(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        token: &str,
    ) -> Result<Value, AppError> {
        self.open_to_anyone(caller);
        let invalid = || {
            oauth(
                "invalid_token",
                "the access token is invalid, expired or revoked",
            )
        };
        let claims = self
            .live_access_token(tenant, token)
            .await?
            .filter(|c| !c.sid.is_empty())
            .ok_or_else(invalid)?;
        let scopes = scopes_of(claims.scope.as_deref().unwrap_or(""));
        if !scopes.contains("openid") {
            return Err(oauth(
                "insufficient_scope",
                "userinfo needs a token with the openid scope",
            ));
        }
        let user = claims.sub.parse::<UserId>().map_err(|_| invalid())?;
        let mut answer = json!({ "sub": claims.sub, "tid": claims.tid });
        self.user_claims(&user, &scopes, &mut answer)?;
        Ok(answer)
    }

    /// Token introspection (RFC 7662): whether a token is active, and what it stands for. Only
    /// the client a token was issued to learns about it; an API key of the tenant is answered
    /// for any of its confidential clients.
    ///
    /// Who: a confidential client of the tenant.
    pub async fn introspect(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        auth: &ClientAuth,
        token: &str,
    ) -> Result<Value, AppError> {
        let client = self.authenticate_client(caller, tenant, auth).await?;
        if client.kind != ClientKind::Confidential {
            return Err(invalid_client());
        }
        let inactive = json!({ "active": false });
        let token = token.trim();
        let client_id = client.id.to_string();
        let now = self.now();
        if token.starts_with(TokenKind::Refresh.prefix()) {
            let Some(text) = OpaqueToken::normalize_presented(TokenKind::Refresh, token) else {
                return Ok(inactive);
            };
            let index = self.refresh_index(&text);
            let Some(id) = self
                .identity()
                .session_by_refresh(&index)
                .map_err(identity_storage)?
            else {
                return Ok(inactive);
            };
            let Some(session) = self.identity().session(&id).map_err(identity_storage)? else {
                return Ok(inactive);
            };
            if session.refresh != index
                || !session.is_live_at(now)
                || session.client.as_deref() != Some(&client_id)
                || session.tenant != *tenant
                || self.require_active(session.user, now).is_err()
            {
                return Ok(inactive);
            }
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": client_id,
                "sub": session.user.to_string(),
                "tid": tenant.to_string(),
                "sid": session.id.to_string(),
                "iss": self.issuer_of(tenant),
                "iat": session.last_active_at.unix_timestamp(),
                "exp": session.expires_at.unix_timestamp(),
            }));
        }
        if token.starts_with(idstream_auth::api_key::API_KEY_PREFIX) {
            let identity = crate::identity::Identity(self.0.clone());
            let Ok(auth) = identity.authenticate(token).await else {
                return Ok(inactive);
            };
            if auth.tenant != *tenant {
                return Ok(inactive);
            }
            let Credential::ApiKey { id, restriction } = &auth.via else {
                return Ok(inactive);
            };
            let mut answer = json!({
                "active": true,
                "token_type": "api_key",
                "sub": auth.user.to_string(),
                "tid": tenant.to_string(),
                "key_id": id.to_string(),
            });
            if let Some(restriction) = restriction {
                answer["scope"] = json!(
                    restriction
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            return Ok(answer);
        }
        match self.live_access_token(tenant, token).await? {
            Some(claims) if claims.aud == client_id => Ok(json!({
                "active": true,
                "token_type": "access_token",
                "client_id": client_id,
                "sub": claims.sub,
                "tid": claims.tid,
                "scope": claims.scope,
                "iss": claims.iss,
                "aud": claims.aud,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
            })),
            _ => Ok(inactive),
        }
    }

    /// Token revocation (RFC 7009): a refresh or access token of the client ends its session.
    /// An unknown token, or one of another client, changes nothing and is answered the same.
    ///
    /// Who: a client of the tenant.
    pub async fn revoke(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        auth: &ClientAuth,
        token: &str,
    ) -> Result<(), AppError> {
        let client = self.authenticate_client(caller, tenant, auth).await?;
        let client_id = client.id.to_string();
        let token = token.trim();
        let session =
            if let Some(text) = OpaqueToken::normalize_presented(TokenKind::Refresh, token) {
                self.identity()
                    .session_by_refresh(&self.refresh_index(&text))
                    .map_err(identity_storage)?
            } else {
                self.live_access_token(tenant, token)
                    .await?
                    .filter(|c| c.aud == client_id)
                    .and_then(|c| c.sid.parse::<Ulid>().ok())
            };
        let Some(session) = session else {
            return Ok(());
        };
        let Some(view) = self
            .identity()
            .session(&session)
            .map_err(identity_storage)?
        else {
            return Ok(());
        };
        if view.client.as_deref() != Some(&client_id) || view.tenant != *tenant {
            return Ok(());
        }
        let outcome = self
            .execute::<SessionAggregate>(
                &crate::identity::system_ctx("oidc-revocation"),
                &session_key(session),
                "",
                SessionCommand::Revoke {
                    reason: RevocationReason::RevokedByClient,
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(())
    }

    // ----- logout -----

    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). With an ID token of this
    /// issuer for the browser's person (`id_token_hint`, expired or not), the browser session and
    /// every application session issued through it end at once; without one, the person is asked
    /// first (`confirmed` is their answer). The browser goes back to a post-logout redirect URI
    /// only if the client registered it exactly.
    ///
    /// Who: anyone; it ends only the browser's own session.
    pub async fn logout(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        request: &LogoutRequest,
        confirmed: bool,
    ) -> Result<Logout, AppError> {
        self.open_to_anyone(caller);
        let hint = request
            .id_token_hint
            .as_deref()
            .and_then(|token| self.id_token_hint(tenant, token));
        let client_id = hint
            .as_ref()
            .map(|(client, _)| client.clone())
            .or_else(|| request.client_id.clone());
        if let (Some(hinted), Some(asked)) = (&hint, &request.client_id)
            && &hinted.0 != asked
        {
            return Err(oauth(
                "invalid_request",
                "client_id is not the audience of id_token_hint",
            ));
        }
        let client = match &client_id {
            Some(id) => self.find(|core| core.live_client(tenant, id)).await?,
            None => None,
        };
        let redirect = match &request.post_logout_redirect_uri {
            None => None,
            Some(uri) => {
                let registered = client
                    .as_ref()
                    .is_some_and(|c| c.settings.post_logout_redirect_uris.contains(uri));
                if !registered {
                    return Err(oauth(
                        "invalid_request",
                        "post_logout_redirect_uri is not one the client registered (compared exactly)",
                    ));
                }
                let mut params = Vec::new();
                if let Some(state) = &request.state {
                    params.push(("state", state.as_str()));
                }
                Some(with_params(uri, &params))
            }
        };
        let browser = match caller.principal() {
            Principal::User(auth) => auth.session().map(|session| (auth.user, session)),
            _ => None,
        };
        let Some((user, session)) = browser else {
            // Nobody signed in here: nothing to end.
            return Ok(Logout::Done { redirect });
        };
        let proven = hint
            .as_ref()
            .is_some_and(|(_, subject)| *subject == user.to_string());
        if !proven && !confirmed {
            return Ok(Logout::Confirm {
                client_name: client.map(|c| c.settings.name),
            });
        }
        self.end_application_sessions(session, RevocationReason::SignedOut)
            .await?;
        let outcome = self
            .execute::<SessionAggregate>(
                &crate::identity::user_ctx_of(user),
                &session_key(session),
                "",
                SessionCommand::Revoke {
                    reason: RevocationReason::SignedOut,
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(Logout::Done { redirect })
    }

    /// The client and subject of an ID token this issuer signed (expired ones too: a logout
    /// often comes long after the sign-in). Only the signature, issuer and tenant are checked.
    fn id_token_hint(&self, tenant: &TenantId, token: &str) -> Option<(String, String)> {
        #[derive(serde::Deserialize)]
        struct Hint {
            iss: String,
            aud: String,
            sub: String,
            tid: String,
        }
        let claims: Hint =
            idstream_auth::jwt::verify_signature(&self.id().keys.signing(), token, "JWT")?;
        (claims.iss == self.issuer_of(tenant) && claims.tid == tenant.as_str())
            .then_some((claims.aud, claims.sub))
    }
}
