//! idstream as a relying party of other OpenID Connect providers: people sign in to a tenant
//! through an upstream provider the tenant configured (Google, Microsoft Entra ID, an
//! enterprise's provider, another idstream).
//!
//! - **Providers** are an aggregate of their tenant ([`IdentityProviderAggregate`]), managed by
//!   its administrators (`settings:read`, `settings:update`). The client secret idstream presents
//!   is sealed in the event, never answered.
//! - **The flow** is the authorization code flow with PKCE (S256), `state` and `nonce`. What the
//!   browser must bring back (state, nonce, verifier, where to go after) is sealed with the
//!   service's vault and kept in a cookie by the pages, so any replica can finish it. The
//!   callback address is per provider (`/t/<tenant>/sign-in/<provider>/callback`), which keeps
//!   one provider's answer from being taken for another's (RFC 9700 §4.4). The ID token is
//!   checked here: signature against the provider's published keys (RS, PS, ES and EdDSA
//!   algorithms; never `none` or a shared-secret one), issuer, audience, expiry and nonce.
//! - **Who it is.** An upstream identity (provider and subject) already linked signs its user
//!   in. Otherwise it is linked only through an address both sides have verified: the provider
//!   says `email_verified`, and the idstream user verified theirs (an unverified account could
//!   be someone else's claim on the address). Otherwise, when the provider `provision`s, the
//!   person becomes a member with the tenant's default role (address verified, no password).
//!   A person signed in may also link an identity from their account. Links are events
//!   (`IdentityLinked`, `IdentityUnlinked`) of an [`ExternalIdentityAggregate`] whose id is a
//!   blind index of the provider and subject: one upstream identity signs in one user, across
//!   replicas.
//! - **Then** the sign-in goes on as any other: a second factor when the account has one, a
//!   session whose method is `federated` (`amr` `fed`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idstream_directory::UserStatus;
use idstream_domain::access::Action;
use idstream_domain::aggregate::{
    ExternalIdentityAggregate, IdentityProviderAggregate, UserAggregate,
};
use idstream_domain::envelope::AggregateType;
use idstream_domain::identity::session::SignInMethod;
use idstream_domain::identity::upstream::{
    ExternalIdentityCommand, ExternalIdentityError, IdentityProviderCommand, IdentityProviderError,
    IdentityProviderSettings, LinkVia, valid_provider_id,
};
use idstream_domain::secret::Sealed;
use idstream_domain::user::UserCommand;
use idstream_domain::{StreamKey, TenantId, UserId};
use idstream_identity::{LinkView, ProviderView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::core::internal;
use crate::identity::{SignIn, identity_storage, system_ctx, user_ctx_of as user_ctx};
use crate::policy::{Caller, Principal};
use crate::users::NewUserRequest;
use crate::{AppError, Outcome, service};

service!(
    /// Sign-in through upstream OpenID Connect providers: their configuration, the flow, and the
    /// identities linked through them.
    Upstream
);

/// How long a started sign-in may take at the provider.
pub const PENDING_TTL: time::Duration = time::Duration::minutes(10);
const PENDING_CONTEXT: &str = "upstream-sign-in";
/// How long a provider's discovery document and keys are kept before they are fetched again
/// (keys are fetched again at once when a token names one not known).
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The longest answer read from a provider.
const MAX_ANSWER_BYTES: usize = 512 * 1024;
/// Longest upstream subject accepted (OpenID Connect Core §2: at most 255 ASCII characters).
const MAX_SUBJECT_BYTES: usize = 255;

/// Why a sign-in through an upstream provider did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached, or answered what is not OpenID Connect.
    #[error("the identity provider could not be reached or gave an answer that is not usable")]
    Unavailable,
    /// The browser came back without a sign-in of its own (an unknown, expired or mismatched
    /// state), or the provider's answer did not prove who signed in.
    #[error("the sign-in through the identity provider could not be verified; start again")]
    NotVerified,
    /// The provider said no (the person cancelled, or may not use the application there).
    #[error("the identity provider did not sign you in ({0})")]
    Refused(String),
    /// Nobody of the tenant matches, and the provider does not provision new members.
    #[error(
        "no account of this organisation matches this sign-in; sign in another way and link the provider from your account, or ask an administrator"
    )]
    NoAccount,
}

/// What an administrator sends to configure a provider: its settings and, to set or replace
/// it, the client secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    #[serde(flatten)]
    pub settings: IdentityProviderSettings,
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ProviderRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRequest")
            .field("settings", &self.settings)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A provider as its administrators see it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ProviderAnswer {
    pub id: String,
    #[serde(flatten)]
    pub settings: IdentityProviderSettings,
    /// Whether a client secret is set.
    pub has_client_secret: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    #[serde(with = "time::serde::rfc3339")]
    pub configured_at: OffsetDateTime,
}

/// A sign-in option of a tenant's sign-in page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInOption {
    pub id: String,
    pub name: String,
}

/// A started sign-in: where to send the browser, and what it must bring back (sealed; the
/// pages keep it in a cookie).
#[derive(Debug, Clone)]
pub struct Started {
    pub authorization_url: String,
    pub pending: String,
}

/// How a finished sign-in ends.
#[derive(Debug)]
pub enum Finished {
    /// Signed in (or a second factor to give), then on to `return_to`.
    SignIn { sign_in: SignIn, return_to: String },
    /// The identity was linked to the signed-in person's account.
    Linked { return_to: String },
}

#[derive(Serialize, Deserialize)]
struct Pending {
    tenant: TenantId,
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    /// Linking from this person's account rather than signing in.
    link_user: Option<UserId>,
    remember: bool,
    /// Unix seconds.
    expires: i64,
}

/// The parts of a provider's discovery document idstream uses.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
}

struct Known {
    metadata: Metadata,
    keys: Option<jsonwebtoken::jwk::JwkSet>,
    fetched: Instant,
}

/// Discovery documents and key sets by issuer, shared by every tenant of the process.
static KNOWN: LazyLock<Mutex<HashMap<String, Arc<Known>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        // A provider's endpoints are named by its discovery document; nothing is followed
        // elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .user_agent("idstream")
        .build()
        .unwrap_or_default()
});

fn random_text(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

fn provider_key(tenant: &TenantId, id: &str) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::IdentityProvider,
        id.to_owned(),
    )
}

/// Whether `url` is a place idstream may call or send a browser to for a provider: https, or,
/// when `local` (the service itself runs on this machine's loopback address, as in development),
/// http or https to the machine itself. A deployment reached at a real address never calls its
/// own machine for a tenant (no request forged to services listening there).
fn endpoint_ok(url: &str, local: bool) -> bool {
    url::Url::parse(url).is_ok_and(|u| match (u.scheme(), u.host_str()) {
        (scheme @ ("https" | "http"), Some(host)) => {
            if crate::core::is_loopback_host(host) {
                local
            } else {
                scheme == "https"
            }
        }
        _ => false,
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, AppError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(AppError::Upstream(UpstreamError::Unavailable));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|_| AppError::Upstream(UpstreamError::Unavailable))?;
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(AppError::Upstream(UpstreamError::Unavailable));
    }
    serde_json::from_slice(&bytes).map_err(|_| AppError::Upstream(UpstreamError::Unavailable))
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str, local: bool) -> Result<T, AppError> {
    if !endpoint_ok(url, local) {
        return Err(AppError::Upstream(UpstreamError::Unavailable));
    }
    let response = HTTP.get(url).send().await.map_err(|error| {
        tracing::warn!(%url, %error, "an identity provider could not be reached");
        AppError::Upstream(UpstreamError::Unavailable)
    })?;
    if !response.status().is_success() {
        tracing::warn!(%url, status = %response.status(), "an identity provider refused a request");
        return Err(AppError::Upstream(UpstreamError::Unavailable));
    }
    read_json(response).await
}

/// The provider's discovery document (and keys, once fetched), from the cache while fresh.
async fn known(issuer: &str, fresh_keys: bool, local: bool) -> Result<Arc<Known>, AppError> {
    let cached = KNOWN
        .lock()
        .map_err(|_| internal("the provider cache is poisoned"))?
        .get(issuer)
        .cloned();
    if let Some(known) = &cached
        && known.fetched.elapsed() < METADATA_TTL
        && !fresh_keys
        && known.keys.is_some()
    {
        return Ok(known.clone());
    }
    let metadata = match &cached {
        Some(known) if known.fetched.elapsed() < METADATA_TTL => known.metadata.clone(),
        _ => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let metadata: Metadata = get_json(&url, local).await?;
            // OpenID Connect Discovery §4.3: the document must name the issuer it was asked of.
            let endpoints = [
                &metadata.authorization_endpoint,
                &metadata.token_endpoint,
                &metadata.jwks_uri,
            ];
            if metadata.issuer != issuer || endpoints.iter().any(|e| !endpoint_ok(e, local)) {
                tracing::warn!(%issuer, "an identity provider's discovery document does not match its issuer");
                return Err(AppError::Upstream(UpstreamError::Unavailable));
            }
            metadata
        }
    };
    let keys: jsonwebtoken::jwk::JwkSet = get_json(&metadata.jwks_uri, local).await?;
    let known = Arc::new(Known {
        metadata,
        keys: Some(keys),
        fetched: Instant::now(),
    });
    KNOWN
        .lock()
        .map_err(|_| internal("the provider cache is poisoned"))?
        .insert(issuer.to_owned(), known.clone());
    Ok(known)
}

/// The algorithms an upstream ID token may be signed with: public-key ones only.
fn allowed_algorithm(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm as A;
    matches!(
        alg,
        A::RS256
            | A::RS384
            | A::RS512
            | A::PS256
            | A::PS384
            | A::PS512
            | A::ES256
            | A::ES384
            | A::EdDSA
    )
}

fn algorithm_name(alg: jsonwebtoken::Algorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Checks an upstream ID token and answers its claims.
async fn verify_id_token(
    provider: &ProviderView,
    token: &str,
    nonce: &str,
    now: OffsetDateTime,
    local: bool,
) -> Result<Map<String, Value>, AppError> {
    let not_verified = || AppError::Upstream(UpstreamError::NotVerified);
    let header = jsonwebtoken::decode_header(token).map_err(|_| not_verified())?;
    let issuer = provider.settings.issuer.as_str();
    let mut known = known(issuer, false, local).await?;
    let supported = &known.metadata.id_token_signing_alg_values_supported;
    if !allowed_algorithm(header.alg)
        || (!supported.is_empty() && !supported.contains(&algorithm_name(header.alg)))
    {
        return Err(not_verified());
    }
    let find = |known: &Known| {
        known.keys.as_ref().and_then(|set| match &header.kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        })
    };
    let jwk = match find(&known) {
        Some(jwk) => jwk,
        None => {
            // A key published since the keys were fetched.
            known = self::known(issuer, true, local).await?;
            find(&known).ok_or_else(not_verified)?
        }
    };
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|_| not_verified())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[provider.settings.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|_| not_verified())?
        .claims;
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    if iat > now.unix_timestamp() + 300 {
        return Err(not_verified());
    }
    // OpenID Connect Core §3.1.3.7: the nonce sent, and, with several audiences, this client as
    // the authorized party.
    let nonce_ok = claims
        .get("nonce")
        .and_then(Value::as_str)
        .is_some_and(|n| {
            use subtle::ConstantTimeEq;
            bool::from(n.as_bytes().ct_eq(nonce.as_bytes()))
        });
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    let azp = claims.get("azp").and_then(Value::as_str);
    if !nonce_ok
        || (several && azp != Some(provider.settings.client_id.as_str()))
        || azp.is_some_and(|azp| azp != provider.settings.client_id)
    {
        return Err(not_verified());
    }
    Ok(claims)
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Person {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    given_name: String,
    family_name: String,
}

fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn person_of(settings: &IdentityProviderSettings, claims: &Map<String, Value>) -> Option<Person> {
    let subject = text_claim(claims, "sub")?;
    if subject.len() > MAX_SUBJECT_BYTES {
        return None;
    }
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        // Some providers send it as text.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    Some(Person {
        subject,
        email: text_claim(claims, &settings.claims.email),
        email_verified,
        given_name: text_claim(claims, &settings.claims.given_name).unwrap_or_default(),
        family_name: text_claim(claims, &settings.claims.family_name).unwrap_or_default(),
    })
}

impl Upstream {
    fn callback_url(&self, tenant: &TenantId, provider: &str) -> String {
        self.link(&format!("/t/{tenant}/sign-in/{provider}/callback"))
    }

    fn answer(&self, view: ProviderView) -> ProviderAnswer {
        ProviderAnswer {
            redirect_uri: self.callback_url(&view.tenant, &view.id),
            id: view.id,
            settings: view.settings,
            has_client_secret: view.secret.is_some(),
            configured_at: view.configured_at,
        }
    }

    fn provider_view(&self, tenant: &TenantId, id: &str) -> Result<Option<ProviderView>, AppError> {
        self.identity()
            .provider(tenant, id)
            .map_err(identity_storage)
    }

    // ----- administration -----

    /// Adds an upstream provider, or replaces its settings (and its secret, when one is given).
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn configure_provider(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: &str,
        request: ProviderRequest,
    ) -> Result<(ProviderAnswer, Outcome), AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        if !valid_provider_id(id) {
            return Err(AppError::IdentityProvider(IdentityProviderError::Invalid(
                "a provider's name is 1 to 40 lower-case letters, digits and dashes".into(),
            )));
        }
        let issuer_host = url::Url::parse(request.settings.issuer.trim())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if issuer_host.is_some_and(|h| crate::core::is_loopback_host(&h))
            && !self.local_targets_allowed()
        {
            return Err(AppError::IdentityProvider(IdentityProviderError::Invalid(
                "the issuer is this machine itself, which only a service running on localhost may use"
                    .into(),
            )));
        }
        let secret = match request.client_secret.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(secret) if secret.len() > 1000 => {
                return Err(AppError::IdentityProvider(IdentityProviderError::Invalid(
                    "a client secret is at most 1000 bytes".into(),
                )));
            }
            Some(secret) => Some(
                self.id()
                    .keys
                    .vault()
                    .try_seal(secret.as_bytes(), &secret_context(&tenant, id))
                    .map_err(internal)?,
            ),
        };
        let outcome = self
            .execute::<IdentityProviderAggregate>(
                caller.ctx(),
                &provider_key(&tenant, id),
                "",
                IdentityProviderCommand::Configure {
                    settings: request.settings,
                    secret,
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        let view = self
            .provider_view(&tenant, id)?
            .ok_or_else(|| internal("a configured provider is missing from the read model"))?;
        Ok((self.answer(view), outcome))
    }

    /// The tenant's upstream providers.
    ///
    /// Who: `settings:read` in the tenant.
    pub async fn providers(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<ProviderAnswer>, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Read)
            .await?;
        Ok(self
            .identity()
            .providers(tenant)
            .map_err(identity_storage)?
            .into_iter()
            .map(|view| self.answer(view))
            .collect())
    }

    /// One upstream provider of the tenant.
    ///
    /// Who: `settings:read` in the tenant.
    pub async fn provider(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: &str,
    ) -> Result<ProviderAnswer, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Read)
            .await?;
        self.provider_view(tenant, id)?
            .map(|view| self.answer(view))
            .ok_or(AppError::IdentityProvider(IdentityProviderError::NotFound))
    }

    /// Removes an upstream provider: nobody signs in through it any more.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn remove_provider(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Update)
            .await?;
        if !valid_provider_id(id) {
            return Err(AppError::IdentityProvider(IdentityProviderError::NotFound));
        }
        let outcome = self
            .execute::<IdentityProviderAggregate>(
                caller.ctx(),
                &provider_key(tenant, id),
                "",
                IdentityProviderCommand::Remove,
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    // ----- the sign-in page -----

    /// The providers a tenant's sign-in page offers. A tenant that does not exist offers none,
    /// as one without providers does.
    ///
    /// Who: anyone (the sign-in page).
    pub fn sign_in_options(&self, caller: &Caller, tenant: &TenantId) -> Vec<SignInOption> {
        self.open_to_anyone(caller);
        self.identity()
            .providers(tenant)
            .unwrap_or_default()
            .into_iter()
            .map(|view| SignInOption {
                id: view.id,
                name: view.settings.name,
            })
            .collect()
    }

    /// Starts a sign-in through `provider` (or, for a person signed in, the linking of their
    /// identity there): the address to send the browser to, and what it must bring back.
    ///
    /// Who: anyone; a link only for the signed-in person, in their tenant.
    pub async fn begin(
        &self,
        caller: &Caller,
        tenant: TenantId,
        provider: &str,
        return_to: String,
        remember: bool,
        link: bool,
    ) -> Result<Started, AppError> {
        let link_user = if link {
            let me = self.own_session(caller)?;
            if me.tenant != tenant {
                return Err(AppError::TenantNotFound);
            }
            Some(me.user)
        } else {
            self.open_to_anyone(caller);
            None
        };
        self.rate_limit("upstream-sign-in", caller.client().ip())?;
        let view = self
            .provider_view(&tenant, provider)?
            .ok_or(AppError::IdentityProvider(IdentityProviderError::NotFound))?;
        let known = known(&view.settings.issuer, false, self.local_targets_allowed()).await?;
        let pending = Pending {
            tenant: tenant.clone(),
            provider: provider.to_owned(),
            state: random_text(24),
            nonce: random_text(24),
            verifier: random_text(48),
            return_to,
            link_user,
            remember,
            expires: (self.now() + PENDING_TTL).unix_timestamp(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let scope = view.settings.scopes.join(" ");
        let redirect = self.callback_url(&tenant, provider);
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", view.settings.client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", scope.as_str()),
            ("state", pending.state.as_str()),
            ("nonce", pending.nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(internal)?;
        let endpoint = &known.metadata.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        let json = Zeroizing::new(serde_json::to_vec(&pending).map_err(internal)?);
        let sealed = self
            .id()
            .keys
            .vault()
            .try_seal(&json, PENDING_CONTEXT)
            .map_err(internal)?;
        Ok(Started {
            authorization_url: format!("{endpoint}{separator}{query}"),
            pending: sealed.as_str().to_owned(),
        })
    }

    /// Finishes a sign-in the provider sent the browser back from with `code` (or `error`).
    ///
    /// Who: anyone holding the started sign-in; a link only for the person who started it.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        caller: &Caller,
        tenant: TenantId,
        provider: &str,
        pending: &str,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Result<Finished, AppError> {
        self.open_to_anyone(caller);
        let client = caller.client();
        self.rate_limit("upstream-sign-in", client.ip())?;
        let now = self.now();
        let not_verified = || AppError::Upstream(UpstreamError::NotVerified);
        let pending = Sealed::parse(pending.trim())
            .ok()
            .and_then(|sealed| self.id().keys.vault().open(&sealed, PENDING_CONTEXT).ok())
            .and_then(|json| serde_json::from_slice::<Pending>(&json).ok())
            .filter(|p| now.unix_timestamp() < p.expires)
            .ok_or_else(not_verified)?;
        let state_ok = {
            use subtle::ConstantTimeEq;
            bool::from(pending.state.as_bytes().ct_eq(state.as_bytes()))
        };
        if !state_ok || pending.tenant != tenant || pending.provider != provider {
            return Err(not_verified());
        }
        if let Some(error) = error {
            let shown: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(AppError::Upstream(UpstreamError::Refused(shown)));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(not_verified)?;
        let view = self
            .provider_view(&tenant, provider)?
            .ok_or(AppError::IdentityProvider(IdentityProviderError::NotFound))?;
        let claims = self.redeem(&view, &pending, code, now).await?;
        let person = person_of(&view.settings, &claims).ok_or_else(not_verified)?;
        let return_to = pending.return_to.clone();
        let id = self
            .id()
            .keys
            .vault()
            .blind_index(
                "upstream-subject",
                &format!("{tenant}\n{provider}\n{}", person.subject),
            )
            .as_str()
            .to_owned();
        let link_key = StreamKey::new(Some(tenant.clone()), AggregateType::ExternalIdentity, id);

        if let Some(user) = pending.link_user {
            // Linking from the account: the person who started it must still be signed in.
            match caller.principal() {
                Principal::User(who) if who.user == user => {}
                _ => return Err(not_verified()),
            }
            self.link_identity(&link_key, user, provider, LinkVia::Account)
                .await?;
            return Ok(Finished::Linked { return_to });
        }

        let (linked, _) = self.load::<ExternalIdentityAggregate>(&link_key).await?;
        let user = match linked.user {
            Some(user) if self.is_member(user, &tenant)? => user,
            // Linked to someone no longer here (removed from the tenant, or erased): the link
            // counts for nothing, and goes if someone else takes the identity.
            _ => {
                let (user, via) = self.match_or_provision(&view, &person, &tenant).await?;
                if linked.user.is_some_and(|old| old != user) {
                    self.execute::<ExternalIdentityAggregate>(
                        &system_ctx("upstream sign-in"),
                        &link_key,
                        "",
                        ExternalIdentityCommand::Unlink {
                            user: None,
                            provider: provider.to_owned(),
                        },
                    )
                    .await?;
                }
                self.link_identity(&link_key, user, provider, via).await?;
                user
            }
        };
        let _turn = self.id().locks.lock(user).await;
        self.catch_up().await?;
        let account = self.require_user(user).await?;
        if account.status_at(now) != UserStatus::Active {
            return Err(AppError::AccountDisabled);
        }
        let creds = self.credentials_view(user)?;
        let sign_in = self
            .first_factor_passed(
                user,
                creds.as_ref(),
                tenant,
                SignInMethod::Federated,
                client,
                pending.remember,
            )
            .await?;
        Ok(Finished::SignIn { sign_in, return_to })
    }

    fn is_member(&self, user: UserId, tenant: &TenantId) -> Result<bool, AppError> {
        Ok(self.user_tenants(&user)?.contains(tenant))
    }

    async fn link_identity(
        &self,
        key: &StreamKey,
        user: UserId,
        provider: &str,
        via: LinkVia,
    ) -> Result<(), AppError> {
        let outcome = self
            .execute::<ExternalIdentityAggregate>(
                &user_ctx(user),
                key,
                "",
                ExternalIdentityCommand::Link {
                    user,
                    provider: provider.to_owned(),
                    via,
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(())
    }

    /// The user a first sign-in through the provider is: the member whose verified address the
    /// provider verified too, or a new member when the provider provisions.
    async fn match_or_provision(
        &self,
        view: &ProviderView,
        person: &Person,
        tenant: &TenantId,
    ) -> Result<(UserId, LinkVia), AppError> {
        let no_account = || AppError::Upstream(UpstreamError::NoAccount);
        let email = person
            .email
            .as_deref()
            .filter(|_| person.email_verified)
            .filter(|e| view.settings.accepts_email(e))
            .ok_or_else(no_account)?;
        let email = idstream_domain::user::normalize_email(email).map_err(|_| no_account())?;
        if let Some(user) = self.find_user_by_email(&email).await? {
            if !user.email_verified || !self.is_member(user.id, tenant)? {
                return Err(no_account());
            }
            return Ok((user.id, LinkVia::VerifiedEmail));
        }
        if !view.settings.provision {
            return Err(no_account());
        }
        let settings = self.tenant_view(tenant).await?.settings;
        let local = email.split('@').next().unwrap_or_default().to_owned();
        let first_name = if person.given_name.is_empty() && person.family_name.is_empty() {
            local
        } else {
            person.given_name.clone()
        };
        let ctx = system_ctx(&format!("identity provider {}", view.id));
        let created = match self
            .create_user(
                &ctx,
                tenant.clone(),
                NewUserRequest {
                    email: email.clone(),
                    first_name,
                    last_name: person.family_name.clone(),
                    roles: vec![settings.default_role.clone()],
                    invite: false,
                    phone: None,
                    attributes: None,
                },
            )
            .await
        {
            Ok(created) => created,
            // Someone created the address a moment ago: not this sign-in's to take.
            Err(AppError::EmailTaken) => return Err(no_account()),
            Err(error) => return Err(error),
        };
        let user: UserId = created.id.parse().map_err(internal)?;
        self.catch_up().await?;
        let (state, _) = self
            .load::<UserAggregate>(&crate::core::user_key(user))
            .await?;
        if !state.email_verified {
            self.execute::<UserAggregate>(
                &ctx,
                &crate::core::user_key(user),
                "",
                UserCommand::VerifyEmail,
            )
            .await?;
        }
        Ok((user, LinkVia::Provisioned))
    }

    /// Exchanges the code for tokens and answers the ID token's claims (with the userinfo
    /// endpoint's when the ID token has no address).
    async fn redeem(
        &self,
        view: &ProviderView,
        pending: &Pending,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<Map<String, Value>, AppError> {
        let local = self.local_targets_allowed();
        let known = known(&view.settings.issuer, false, local).await?;
        let redirect = self.callback_url(&pending.tenant, &pending.provider);
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect),
            ("code_verifier", pending.verifier.clone()),
        ];
        let secret = match &view.secret {
            Some(sealed) => Some(Zeroizing::new(
                String::from_utf8(
                    self.id()
                        .keys
                        .vault()
                        .open(sealed, &secret_context(&view.tenant, &view.id))
                        .map_err(internal)?
                        .to_vec(),
                )
                .map_err(internal)?,
            )),
            None => None,
        };
        let methods = &known.metadata.token_endpoint_auth_methods_supported;
        let mut request = HTTP.post(&known.metadata.token_endpoint);
        match &secret {
            // RFC 6749 §2.3.1: the default, and what every provider supports.
            Some(secret)
                if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") =>
            {
                let id: String =
                    url::form_urlencoded::byte_serialize(view.settings.client_id.as_bytes())
                        .collect();
                let password: String =
                    url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
                request = request.basic_auth(id, Some(password));
            }
            Some(secret) => {
                form.push(("client_id", view.settings.client_id.clone()));
                form.push(("client_secret", secret.to_string()));
            }
            None => form.push(("client_id", view.settings.client_id.clone())),
        }
        let body = serde_urlencoded::to_string(&form).map_err(internal)?;
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(issuer = %view.settings.issuer, %error, "an identity provider's token endpoint could not be reached");
                AppError::Upstream(UpstreamError::Unavailable)
            })?;
        let status = response.status();
        let answer: Map<String, Value> = read_json(response).await?;
        if !status.is_success() {
            // The code was refused (used, expired, or not this client's): the browser starts
            // again. The provider's description is for its logs, not the person.
            tracing::info!(issuer = %view.settings.issuer, %status, error = ?answer.get("error"), "an identity provider refused a code");
            return Err(AppError::Upstream(UpstreamError::NotVerified));
        }
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or(AppError::Upstream(UpstreamError::NotVerified))?;
        let mut claims = verify_id_token(view, id_token, &pending.nonce, now, local).await?;
        if text_claim(&claims, &view.settings.claims.email).is_none()
            && let (Some(endpoint), Some(access)) = (
                known.metadata.userinfo_endpoint.as_deref(),
                answer.get("access_token").and_then(Value::as_str),
            )
            && endpoint_ok(endpoint, local)
        {
            let response = HTTP
                .get(endpoint)
                .bearer_auth(access)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|_| AppError::Upstream(UpstreamError::Unavailable))?;
            if response.status().is_success() {
                let info: Map<String, Value> = read_json(response).await?;
                // OpenID Connect Core §5.3.2: the userinfo must be of the same subject.
                if info.get("sub") == claims.get("sub") {
                    for (name, value) in info {
                        claims.entry(name).or_insert(value);
                    }
                }
            }
        }
        Ok(claims)
    }

    // ----- the account -----

    /// The upstream identities linked to the caller, in the caller's tenant.
    ///
    /// Who: a signed-in person, for themselves.
    pub fn my_links(&self, caller: &Caller) -> Result<Vec<LinkView>, AppError> {
        let me = self.own_session(caller)?;
        let (user, tenant) = (me.user, me.tenant.clone());
        Ok(self
            .identity()
            .links(&user)
            .map_err(identity_storage)?
            .into_iter()
            .filter(|link| link.tenant == tenant)
            .collect())
    }

    /// Unlinks the caller's identity at `provider`: it no longer signs them in.
    ///
    /// Who: a signed-in person, for themselves.
    pub async fn unlink_mine(&self, caller: &Caller, provider: &str) -> Result<Outcome, AppError> {
        let me = self.own_session(caller)?;
        let (user, tenant) = (me.user, me.tenant.clone());
        let link = self
            .identity()
            .links(&user)
            .map_err(identity_storage)?
            .into_iter()
            .find(|link| link.tenant == tenant && link.provider == provider)
            .ok_or(AppError::ExternalIdentity(ExternalIdentityError::NotLinked))?;
        let key = StreamKey::new(
            Some(tenant.clone()),
            AggregateType::ExternalIdentity,
            link.id,
        );
        let outcome = self
            .execute::<ExternalIdentityAggregate>(
                caller.ctx(),
                &key,
                "",
                ExternalIdentityCommand::Unlink {
                    user: Some(user),
                    provider: provider.to_owned(),
                },
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }
}

fn secret_context(tenant: &TenantId, id: &str) -> String {
    format!("upstream-client-secret:{tenant}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IdentityProviderSettings {
        IdentityProviderSettings {
            name: "Corp".into(),
            issuer: "https://id.corp.example".into(),
            client_id: "idstream".into(),
            scopes: vec!["openid".into()],
            claims: Default::default(),
            allowed_email_domains: vec![],
            provision: false,
        }
    }

    #[test]
    fn the_person_is_read_from_the_mapped_claims() {
        let mut s = settings();
        s.claims.email = "upn".into();
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "abc", "upn": " ada@corp.example ", "email_verified": "true",
            "given_name": "Ada", "family_name": "Lovelace"
        }))
        .unwrap();
        let person = person_of(&s, &claims).unwrap();
        assert_eq!(person.email.as_deref(), Some("ada@corp.example"));
        assert!(person.email_verified);
        assert_eq!(person.given_name, "Ada");
        let no_sub: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"email": "x@y.z"})).unwrap();
        assert!(person_of(&s, &no_sub).is_none());
        let long: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"sub": "x".repeat(256)})).unwrap();
        assert!(person_of(&s, &long).is_none());
        let unverified: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"sub": "a", "email_verified": 1})).unwrap();
        assert!(!person_of(&s, &unverified).unwrap().email_verified);
    }

    #[test]
    fn only_public_key_algorithms_sign_upstream_id_tokens() {
        use jsonwebtoken::Algorithm as A;
        for alg in [A::RS256, A::PS256, A::ES256, A::EdDSA] {
            assert!(allowed_algorithm(alg), "{alg:?}");
        }
        for alg in [A::HS256, A::HS384, A::HS512] {
            assert!(!allowed_algorithm(alg), "{alg:?}");
        }
        assert_eq!(algorithm_name(A::EdDSA), "EdDSA");
        assert_eq!(algorithm_name(A::RS256), "RS256");
    }

    #[test]
    fn endpoints_are_https_or_this_machine() {
        assert!(endpoint_ok("https://id.example/token", false));
        assert!(endpoint_ok("http://127.0.0.1:9000/token", true));
        assert!(endpoint_ok("http://localhost/token", true));
        assert!(endpoint_ok("https://localhost/token", true));
        // A service reached at a real address calls nothing on its own machine.
        assert!(!endpoint_ok("http://127.0.0.1:9000/token", false));
        assert!(!endpoint_ok("https://localhost/token", false));
        assert!(!endpoint_ok("https://[::1]/token", false));
        assert!(!endpoint_ok("http://id.example/token", true));
        assert!(!endpoint_ok("file:///etc/passwd", true));
        assert!(!endpoint_ok("not a url", true));
    }
}
