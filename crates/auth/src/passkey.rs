//! Passkeys: the WebAuthn relying party, through kanidm's `webauthn-rs`.
//!
//! The relying party is the service's public URL: its host is the relying party id and its
//! origin the only origin accepted, so a passkey registered through one deployment's pages
//! cannot sign in through another origin (the browser scopes credentials to the id, and the
//! library checks the origin the browser signed into the client data).
//!
//! Ceremony state (the challenge and what the finish must check) is returned as JSON text for
//! the application to keep; it holds no secret but must come back unaltered, so the application
//! seals it (see `idstream-app`'s passkey ceremonies). Stored passkeys are the library's own
//! serialisation ([`NewPasskey::public_key`]); their signature counter is kept apart, in the
//! log, and put back into the stored form before each ceremony.
//!
//! Registration asks for a discoverable credential (a resident key) and user verification, so a
//! passkey can sign in without a user name and counts as two factors on its own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use ulid::Ulid;
use webauthn_rs::prelude::{
    CredentialID, DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

/// Why a ceremony failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    /// The public URL cannot be a relying party (not a URL, or no host).
    #[error("the public URL cannot serve as a WebAuthn relying party: {0}")]
    Config(String),
    /// The client's response is not a WebAuthn credential, or the state is not ours.
    #[error("the WebAuthn response is malformed")]
    Malformed,
    /// The response does not verify: wrong origin or relying party, wrong challenge, bad
    /// signature, no user verification, unknown credential.
    #[error("the WebAuthn response was refused: {0}")]
    Refused(String),
    /// A verified signature whose counter is not above the stored one (a cloned authenticator?).
    #[error("the signature counter went backwards (presented {presented})")]
    CounterRegressed { presented: u32 },
}

/// A passkey that passed its registration ceremony.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPasskey {
    /// The credential id, base64url without padding.
    pub credential: String,
    /// The library's serialisation of the passkey (public key, algorithm, flags): JSON text.
    pub public_key: String,
    pub counter: u32,
}

/// A stored passkey, as a ceremony needs it.
#[derive(Debug, Clone, Copy)]
pub struct StoredPasskey<'a> {
    /// [`NewPasskey::public_key`] as registered.
    pub public_key: &'a str,
    /// The highest signature counter seen since.
    pub counter: u32,
}

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub credential: String,
    pub counter: u32,
}

/// The WebAuthn relying party of one public URL.
pub struct RelyingParty {
    webauthn: Webauthn,
    id: String,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("id", &self.id)
            .finish()
    }
}

/// The user handle stored in the authenticator: the user id's 128 bits.
pub fn user_handle(user: Ulid) -> Uuid {
    Uuid::from_u128(user.0)
}

fn refused(error: WebauthnError) -> PasskeyError {
    PasskeyError::Refused(error.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(value).map_err(|_| PasskeyError::Malformed)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(text).map_err(|_| PasskeyError::Malformed)
}

/// The stored passkey with its current counter put back (the library checks the counter it
/// is given; the log keeps the latest one).
fn passkey_of(stored: StoredPasskey<'_>) -> Result<Passkey, PasskeyError> {
    let mut value: Value = from_json(stored.public_key)?;
    let counter = value
        .get_mut("cred")
        .and_then(|cred| cred.get_mut("counter"))
        .ok_or(PasskeyError::Malformed)?;
    *counter = stored.counter.into();
    serde_json::from_value(value).map_err(|_| PasskeyError::Malformed)
}

/// The signature counter of an assertion's authenticator data (bytes 33 to 36, big-endian).
fn presented_counter(response: &PublicKeyCredential) -> u32 {
    let data = response.response.authenticator_data.as_slice();
    data.get(33..37).map_or(0, |bytes| {
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    })
}

impl RelyingParty {
    /// The relying party of `public_url` (its host is the id, its origin the only one
    /// accepted), shown to people as `name`.
    pub fn new(public_url: &str, name: &str) -> Result<RelyingParty, PasskeyError> {
        let url = Url::parse(public_url).map_err(|e| PasskeyError::Config(e.to_string()))?;
        let id = url
            .host_str()
            .ok_or_else(|| PasskeyError::Config("the public URL has no host".into()))?
            .to_owned();
        let origin = Url::parse(&url.origin().ascii_serialization())
            .map_err(|e| PasskeyError::Config(e.to_string()))?;
        let webauthn = WebauthnBuilder::new(&id, &origin)
            .map_err(|e| PasskeyError::Config(e.to_string()))?
            .rp_name(name)
            .build()
            .map_err(|e| PasskeyError::Config(e.to_string()))?;
        Ok(RelyingParty { webauthn, id })
    }

    /// The relying party id (the public URL's host).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts registering a passkey for `user` (`name` and `display_name` are what the
    /// authenticator shows). `existing` are the person's credential ids (base64url), which the
    /// authenticator must not register again. Returns the options for
    /// `navigator.credentials.create` (`{"publicKey": …}`) and the state to finish with.
    pub fn start_registration(
        &self,
        user: Ulid,
        name: &str,
        display_name: &str,
        existing: &[String],
    ) -> Result<(Value, String), PasskeyError> {
        let exclude = existing
            .iter()
            .filter_map(|id| URL_SAFE_NO_PAD.decode(id).ok())
            .map(CredentialID::from)
            .collect::<Vec<_>>();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_handle(user),
                name,
                display_name,
                (!exclude.is_empty()).then_some(exclude),
            )
            .map_err(refused)?;
        let mut options = serde_json::to_value(&options).map_err(|_| PasskeyError::Malformed)?;
        // A discoverable credential, so that the passkey alone signs in (the library leaves
        // residence to the authenticator by default; verifying it does not depend on it).
        if let Some(selection) = options
            .get_mut("publicKey")
            .and_then(|o| o.get_mut("authenticatorSelection"))
            .and_then(Value::as_object_mut)
        {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        Ok((options, to_json(&state)?))
    }

    /// Finishes a registration: `response` is the browser's credential (`PublicKeyCredential`
    /// as JSON, binary fields base64url), `state` what [`RelyingParty::start_registration`]
    /// returned.
    pub fn finish_registration(
        &self,
        response: &Value,
        state: &str,
    ) -> Result<NewPasskey, PasskeyError> {
        let response: RegisterPublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| PasskeyError::Malformed)?;
        let state: PasskeyRegistration = from_json(state)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(refused)?;
        let value = serde_json::to_value(&passkey).map_err(|_| PasskeyError::Malformed)?;
        let counter = value
            .get("cred")
            .and_then(|cred| cred.get("counter"))
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0);
        Ok(NewPasskey {
            credential: URL_SAFE_NO_PAD.encode(passkey.cred_id().as_slice()),
            public_key: value.to_string(),
            counter,
        })
    }

    /// Starts a sign-in with one of `passkeys` (a second factor: the browser is told which
    /// credentials may answer). Returns the options for `navigator.credentials.get` and the state.
    pub fn start_authentication(
        &self,
        passkeys: &[StoredPasskey<'_>],
    ) -> Result<(Value, String), PasskeyError> {
        let passkeys = passkeys
            .iter()
            .map(|stored| passkey_of(*stored))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(refused)?;
        let options = serde_json::to_value(&options).map_err(|_| PasskeyError::Malformed)?;
        Ok((options, to_json(&state)?))
    }

    /// Starts a sign-in without a user name: any discoverable credential of this relying party
    /// may answer, and says whose it is.
    pub fn start_discoverable(&self) -> Result<(Value, String), PasskeyError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(refused)?;
        let mut options = serde_json::to_value(&options).map_err(|_| PasskeyError::Malformed)?;
        // The library asks for conditional mediation (autofill); a sign-in button wants the
        // ordinary dialog.
        if let Some(options) = options.as_object_mut() {
            options.remove("mediation");
        }
        Ok((options, to_json(&state)?))
    }

    /// Whose passkey answered a sign-in without a user name: the user and the credential id
    /// (base64url), before anything is verified.
    pub fn identify(&self, response: &Value) -> Result<(Ulid, String), PasskeyError> {
        let response: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| PasskeyError::Malformed)?;
        let handle = response
            .get_user_unique_id()
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .ok_or(PasskeyError::Malformed)?;
        Ok((
            Ulid(u128::from_be_bytes(handle)),
            URL_SAFE_NO_PAD.encode(response.get_credential_id()),
        ))
    }

    /// The credential id (base64url) of a sign-in response, before anything is verified.
    pub fn credential_of(response: &Value) -> Result<String, PasskeyError> {
        let response: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| PasskeyError::Malformed)?;
        Ok(URL_SAFE_NO_PAD.encode(response.get_credential_id()))
    }

    /// Finishes a sign-in started by [`RelyingParty::start_authentication`] (`passkey` is
    /// `None`) or [`RelyingParty::start_discoverable`] (`passkey` is the one
    /// [`RelyingParty::identify`] named). User verification is required either way.
    pub fn finish_authentication(
        &self,
        response: &Value,
        state: &str,
        passkey: Option<StoredPasskey<'_>>,
    ) -> Result<Assertion, PasskeyError> {
        let response: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|_| PasskeyError::Malformed)?;
        let result = match passkey {
            None => {
                let state: PasskeyAuthentication = from_json(state)?;
                self.webauthn
                    .finish_passkey_authentication(&response, &state)
            }
            Some(stored) => {
                let state: DiscoverableAuthentication = from_json(state)?;
                let key = DiscoverableKey::from(passkey_of(stored)?);
                self.webauthn
                    .finish_discoverable_authentication(&response, state, &[key])
            }
        };
        match result {
            Ok(result) if result.user_verified() => Ok(Assertion {
                credential: URL_SAFE_NO_PAD.encode(result.cred_id().as_slice()),
                counter: result.counter(),
            }),
            Ok(_) => Err(PasskeyError::Refused("the user was not verified".into())),
            // Reported only once the signature has verified.
            Err(WebauthnError::CredentialPossibleCompromise) => {
                Err(PasskeyError::CounterRegressed {
                    presented: presented_counter(&response),
                })
            }
            Err(error) => Err(refused(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_urls_host() {
        let rp = RelyingParty::new("https://id.example.com:8443/base", "Example").unwrap();
        assert_eq!(rp.id(), "id.example.com");
        assert!(matches!(
            RelyingParty::new("not a url", "Example"),
            Err(PasskeyError::Config(_))
        ));
    }

    #[test]
    fn registration_asks_for_a_discoverable_verified_credential_and_excludes_known_ones() {
        let rp = RelyingParty::new("http://localhost:8080", "Example").unwrap();
        let user = Ulid::from_parts(1, 2);
        let (options, state) = rp
            .start_registration(user, "ada@example.com", "Ada", &["AAEC".into()])
            .unwrap();
        let public_key = &options["publicKey"];
        assert_eq!(public_key["rp"]["id"], "localhost");
        assert_eq!(
            public_key["authenticatorSelection"]["residentKey"],
            "required"
        );
        assert_eq!(
            public_key["authenticatorSelection"]["userVerification"],
            "required"
        );
        assert_eq!(public_key["excludeCredentials"][0]["id"], "AAEC");
        let handle = URL_SAFE_NO_PAD
            .decode(public_key["user"]["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(handle, user.0.to_be_bytes());
        // The state reads back.
        assert!(from_json::<PasskeyRegistration>(&state).is_ok());
    }

    #[test]
    fn a_sign_in_without_a_user_name_uses_the_ordinary_dialog() {
        let rp = RelyingParty::new("http://localhost:8080", "Example").unwrap();
        let (options, state) = rp.start_discoverable().unwrap();
        assert!(options.get("mediation").is_none());
        assert_eq!(options["publicKey"]["userVerification"], "required");
        assert!(from_json::<DiscoverableAuthentication>(&state).is_ok());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let rp = RelyingParty::new("http://localhost:8080", "Example").unwrap();
        let (_, state) = rp.start_discoverable().unwrap();
        let junk = serde_json::json!({"id": "x"});
        assert_eq!(
            rp.finish_authentication(&junk, &state, None),
            Err(PasskeyError::Malformed)
        );
        assert_eq!(rp.identify(&junk), Err(PasskeyError::Malformed));
        assert_eq!(
            rp.finish_registration(&junk, "{}"),
            Err(PasskeyError::Malformed)
        );
    }
}
