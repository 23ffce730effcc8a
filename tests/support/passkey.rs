//! A software WebAuthn authenticator (ES256, "none" attestation, a resident key, user
//! verification and a signature counter), so that the API tests can register passkeys and sign
//! in with them without a browser. It answers exactly what a browser hands the relying party:
//! the `PublicKeyCredential` JSON with base64url binary fields, the client data naming the
//! origin it was asked from. The browser tests use Chromium's own virtual authenticator instead.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value as Cbor;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One credential held by the authenticator.
#[derive(Clone)]
pub struct SoftPasskey {
    pub credential: Vec<u8>,
    key: SigningKey,
    /// The user handle the relying party gave at registration.
    pub user_handle: Vec<u8>,
    rp_id: String,
    /// The next assertion presents `counter + 1`.
    pub counter: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encodes into a vector");
    out
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": challenge,
        "origin": origin,
        "crossOrigin": false,
    }))
    .unwrap()
}

impl SoftPasskey {
    /// Answers registration `options` (`{"publicKey": …}`, as the service gives them) from
    /// `origin`: a new credential, and the browser's JSON for it.
    pub fn register(options: &Value, origin: &str) -> (SoftPasskey, Value) {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().expect("rp.id").to_owned();
        let challenge = public_key["challenge"].as_str().expect("challenge");
        let user_handle = URL_SAFE_NO_PAD
            .decode(public_key["user"]["id"].as_str().expect("user.id"))
            .expect("user.id is base64url");
        let mut secret = [0u8; 32];
        let mut credential = vec![0u8; 16];
        let key = loop {
            rand::rng().fill_bytes(&mut secret);
            if let Ok(key) = SigningKey::from_slice(&secret) {
                break key;
            }
        };
        rand::rng().fill_bytes(&mut credential);
        let point = key.verifying_key().to_encoded_point(false);
        let cose = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (
                Cbor::Integer((-2).into()),
                Cbor::Bytes(point.x().unwrap().to_vec()),
            ),
            (
                Cbor::Integer((-3).into()),
                Cbor::Bytes(point.y().unwrap().to_vec()),
            ),
        ]);
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        // User present, user verified, attested credential data.
        auth_data.push(0x01 | 0x04 | 0x40);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(credential.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&credential);
        auth_data.extend_from_slice(&cbor(&cose));
        let attestation = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        let response = json!({
            "id": b64(&credential),
            "rawId": b64(&credential),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&cbor(&attestation)),
                "clientDataJSON": b64(&client_data("webauthn.create", challenge, origin)),
            },
            "clientExtensionResults": {},
        });
        let passkey = SoftPasskey {
            credential,
            key,
            user_handle,
            rp_id,
            counter: 0,
        };
        (passkey, response)
    }

    /// Answers sign-in `options` (`{"publicKey": …}`) from `origin` with the next counter.
    pub fn sign(&mut self, options: &Value, origin: &str) -> Value {
        self.counter += 1;
        self.sign_with_counter(options, origin, self.counter)
    }

    /// Answers sign-in `options` presenting `counter` (a clone of the key would present an old
    /// one).
    pub fn sign_with_counter(&self, options: &Value, origin: &str, counter: u32) -> Value {
        let challenge = options["publicKey"]["challenge"]
            .as_str()
            .expect("challenge");
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(0x01 | 0x04);
        auth_data.extend_from_slice(&counter.to_be_bytes());
        let client = client_data("webauthn.get", challenge, origin);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": b64(&self.credential),
            "rawId": b64(&self.credential),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": b64(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    /// The credential id as the service names it.
    pub fn id(&self) -> String {
        b64(&self.credential)
    }
}
