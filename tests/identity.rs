//! Sign-in and identity over HTTP against the real binary: bootstrap, invitations, two-factor
//! authentication, refresh-token rotation, sessions, API keys and password resets, plus the
//! attacks they must withstand (forged tokens, races, brute force, enumeration) and a scan for
//! leaked secrets in logs, answers and the event log.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idstream_auth::{AccessSubject, Issuer, KeyRing, SigningKey, TotpSecret};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::nats::NatsServer;
use crate::support::service::{ADMIN_TOKEN, Answer, Service};

const TENANT: &str = "acme";
const ADMIN_EMAIL: &str = "ada@example.com";
const ADMIN_PASSWORD: &str = "Analytical-Engine-1843";
const INVITEE_EMAIL: &str = "grace@example.com";
const INVITEE_PASSWORD: &str = "Compiler-A0-1952-Harvard";
const NEW_PASSWORD: &str = "Nanoseconds-Are-30cm-Long";

/// How long a condition that should hold "soon" (a read model catching up) may take.
const PATIENCE: Duration = Duration::from_secs(10);

// ----- harness -----

/// Bootstraps tenant `acme` with its administrator, then starts the service and waits until it
/// is ready.
async fn bootstrapped() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let svc = start_bootstrapped(dir.path(), None).await;
    (dir, svc)
}

async fn start_bootstrapped(dir: &Path, output: Option<&Path>) -> Service {
    let printed = Service::bootstrap(dir, None, TENANT, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(
        printed.contains("Bootstrapped tenant acme") && printed.contains(ADMIN_EMAIL),
        "{printed}"
    );
    assert!(
        !printed.contains(ADMIN_PASSWORD),
        "bootstrap printed the password"
    );
    let svc = match output {
        Some(output) => Service::embedded_capturing(dir, output, "debug").await,
        None => Service::embedded(dir).await,
    };
    wait_ready(&svc).await;
    svc
}

async fn wait_ready(svc: &Service) {
    eventually("the service is ready", || async {
        svc.get("/readyz").await.status == 200
    })
    .await;
}

/// Polls `condition` every 20 ms until it holds; fails the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every answer a flow received, so that a test can check where secrets showed up.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<String>>,
}

impl Seen {
    async fn send(&self, svc: &Service, request: reqwest::RequestBuilder) -> Answer {
        let answer = svc.send(request).await;
        self.bodies.lock().unwrap().push(answer.body.to_string());
        answer
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

fn sign_in_request(svc: &Service, email: &str, password: &str) -> reqwest::RequestBuilder {
    svc.anonymous(Method::POST, "/v1/auth/sign-in")
        .json(&json!({"email": email, "password": password}))
}

/// Issues an API key in acme as `bearer` with the request `body`; its id and its secret.
async fn issue_key(svc: &Service, bearer: &str, body: Value) -> (String, String) {
    let issued = svc.post_as(bearer, "/v1/tenants/acme/api-keys", body).await;
    assert_eq!(issued.status, 201, "{issued:?}");
    let field = |name: &str| issued.body[name].as_str().unwrap().to_owned();
    (field("id"), field("key"))
}

#[track_caller]
fn assert_tokens(answer: &Answer) {
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["token_type"], "Bearer", "{answer:?}");
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("idr_"));
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["session"].is_string() && body["user"].is_string());
    assert_eq!(
        answer.header("x-idstream-position"),
        Some(answer.position().to_string().as_str())
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

/// The first `prefix…` token in `text`: the prefix and the characters of a token after it.
fn token_in(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} token in the message"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The value of `name=` in the first link of `text` that has it.
fn link_param(text: &str, name: &str) -> String {
    let key = format!("{name}=");
    let start = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in the link"));
    text[start + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Waits for the `n`th message to `to` whose subject contains `subject` (counting from 1).
async fn nth_mail(svc: &Service, to: &str, subject: &str, n: usize) -> idstream_mailer::ParsedEml {
    let mut found = None;
    eventually("the email arrives", || {
        let messages: Vec<_> = svc
            .mail()
            .into_iter()
            .filter(|m| m.to == to && m.subject.contains(subject))
            .collect();
        found = messages.get(n - 1).cloned();
        std::future::ready(found.is_some())
    })
    .await;
    found.unwrap()
}

/// TOTP codes for a secret, each for a later time step than the last one the service accepted
/// (a step is used once), waiting for the clock only when no step within the skew is left.
struct Authenticator {
    secret: TotpSecret,
    used: u64,
}

impl Authenticator {
    fn new(secret: &str) -> Authenticator {
        Authenticator {
            secret: TotpSecret::from_base32(secret).expect("a base32 TOTP secret"),
            used: 0,
        }
    }

    async fn next_code(&mut self) -> String {
        loop {
            let current = idstream_auth::totp::time_step(OffsetDateTime::now_utc());
            let step = (self.used + 1).max(current);
            // The service accepts the step after its current one too (clock skew).
            if step <= current + 1 {
                self.used = step;
                let at = OffsetDateTime::from_unix_timestamp((step * 30) as i64).unwrap();
                return self.secret.code_at(at);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether `bearer` is refused by `GET /v1/auth/me`.
async fn refused(svc: &Service, bearer: &str) -> bool {
    let answer = svc.get_as(bearer, "/v1/auth/me").await;
    if answer.status == 401 {
        answer.assert_problem(401, "unauthorized");
        true
    } else {
        false
    }
}

/// Asserts that `bearer` is refused now: a revocation holds on the replica that answered it from
/// its answer on.
async fn assert_refused(svc: &Service, bearer: &str) {
    assert!(
        refused(svc, bearer).await,
        "a revoked credential still works"
    );
}

/// Waits until `bearer` is refused (a revocation on another replica reaches this one).
async fn until_refused(svc: &Service, bearer: &str) {
    eventually("the credential is refused", || refused(svc, bearer)).await;
}

// ----- 1. the newcomer flow -----

/// What the newcomer flow handed out, for the leak scan.
struct FlowSecrets {
    passwords: Vec<String>,
    /// Refresh, invitation, reset and API-key tokens, TOTP secret, recovery codes, access tokens.
    tokens: Vec<String>,
    /// Secrets that must appear in exactly one answer (the one that created them).
    shown_once: Vec<String>,
}

/// Bootstrap → sign in → me → invite → accept → TOTP → second factor → refresh (and reuse) →
/// sessions → API key → password reset. Every step asserts its outcome.
async fn newcomer_flow(svc: &Service, seen: &Seen) -> FlowSecrets {
    let mut tokens = Vec::new();
    let mut shown_once = Vec::new();

    // The administrator signs in and looks at themselves.
    let admin = seen
        .send(svc, sign_in_request(svc, ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_tokens(&admin);
    let admin = admin.body;
    assert_eq!(admin["tenant"], TENANT);
    tokens.extend([access(&admin).to_owned(), refresh_token(&admin).to_owned()]);
    shown_once.push(refresh_token(&admin).to_owned());
    let me = seen
        .send(
            svc,
            svc.request_as(access(&admin), Method::GET, "/v1/auth/me"),
        )
        .await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["email"], ADMIN_EMAIL);
    assert_eq!(me.body["user"]["id"], admin["user"]);
    assert_eq!(me.body["user"]["status"], "active");
    assert_eq!(me.body["user"]["platform_admin"], true);
    assert_eq!(me.body["tenant"], TENANT);
    assert_eq!(me.body["roles"], json!(["admin", "owner"]));
    assert_eq!(me.body["global_access"], true);
    assert!(me.body["permissions"].is_array(), "{me:?}");
    assert_eq!(me.body["session"], admin["session"]);
    assert!(me.body["last_sign_in"].is_string(), "{me:?}");

    // An invitation goes out by email; the answer does not carry its token.
    let invited = seen
        .send(
            svc,
            svc.request_as(
                access(&admin),
                Method::POST,
                "/v1/tenants/acme/invitations",
            )
            .json(&json!({"email": INVITEE_EMAIL, "first_name": "Grace", "last_name": "Hopper", "roles": ["user"]})),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    assert_eq!(invited.body["email_sent"], true);
    assert_eq!(
        invited.header("x-idstream-position"),
        Some(invited.position().to_string().as_str())
    );
    assert!(!invited.body.to_string().contains("idi_"), "{invited:?}");
    let grace = invited.body["user"].as_str().unwrap().to_owned();
    let invitation = invited.body["id"].as_str().unwrap().to_owned();
    let mail = nth_mail(svc, INVITEE_EMAIL, "Invitation", 1).await;
    assert!(mail.text.contains("/accept-invitation?token=idi_"));
    let invitation_token = token_in(&mail.text, "idi_");
    tokens.push(invitation_token.clone());
    let listed = seen
        .send(
            svc,
            svc.request_as(access(&admin), Method::GET, "/v1/tenants/acme/invitations")
                .header("x-idstream-min-position", invited.position()),
        )
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let item = &listed.body["items"][0];
    assert_eq!(item["id"], invitation.as_str());
    assert_eq!(item["user"], grace.as_str());
    assert_eq!(item["status"], "sent");
    assert_eq!(item["roles"], json!(["user"]));
    assert!(item.get("token").is_none(), "{listed:?}");

    // Accepting sets the password and signs the invitee in.
    let accepted = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/invitations/accept")
                .json(&json!({"token": invitation_token, "password": INVITEE_PASSWORD})),
        )
        .await;
    assert_tokens(&accepted);
    let from_invitation = accepted.body;
    assert_eq!(from_invitation["user"], grace.as_str());
    assert_eq!(from_invitation["tenant"], TENANT);
    tokens.extend([
        access(&from_invitation).to_owned(),
        refresh_token(&from_invitation).to_owned(),
    ]);
    shown_once.push(refresh_token(&from_invitation).to_owned());
    let me = seen
        .send(
            svc,
            svc.request_as(access(&from_invitation), Method::GET, "/v1/auth/me"),
        )
        .await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["email_verified"], true);
    assert_eq!(me.body["roles"], json!(["user"]));
    assert_eq!(me.body["global_access"], false);
    // The built-in `user` role: read on the standard resources, nothing administrative.
    let permissions = me.body["permissions"].as_array().unwrap();
    assert!(permissions.contains(&json!("entities:read")), "{me:?}");
    assert!(!permissions.contains(&json!("users:create")), "{me:?}");

    // The invitee signs in with the password they chose.
    let with_password = seen
        .send(svc, sign_in_request(svc, INVITEE_EMAIL, INVITEE_PASSWORD))
        .await;
    assert_tokens(&with_password);
    let with_password = with_password.body;
    tokens.extend([
        access(&with_password).to_owned(),
        refresh_token(&with_password).to_owned(),
    ]);
    shown_once.push(refresh_token(&with_password).to_owned());

    // Two-factor authentication: set up, confirm, and from then on sign-in asks for a code.
    let setup = seen
        .send(
            svc,
            svc.request_as(access(&with_password), Method::POST, "/v1/auth/totp/setup"),
        )
        .await;
    assert_eq!(setup.status, 200, "{setup:?}");
    assert_eq!(setup.header("cache-control"), Some("no-store"));
    let secret = setup.body["secret"].as_str().unwrap().to_owned();
    assert!(
        setup.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    tokens.push(secret.clone());
    shown_once.push(secret.clone());
    let mut authenticator = Authenticator::new(&secret);
    let confirmed = seen
        .send(
            svc,
            svc.request_as(
                access(&with_password),
                Method::POST,
                "/v1/auth/totp/confirm",
            )
            .json(&json!({"code": authenticator.next_code().await})),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    assert_eq!(
        confirmed.header("x-idstream-position"),
        Some(confirmed.position().to_string().as_str())
    );
    let recovery: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    tokens.extend(recovery.iter().cloned());
    shown_once.extend(recovery.iter().cloned());

    let challenged = seen
        .send(svc, sign_in_request(svc, INVITEE_EMAIL, INVITEE_PASSWORD))
        .await;
    assert_eq!(challenged.status, 200, "{challenged:?}");
    assert_eq!(challenged.body["second_factor_required"], true);
    assert!(challenged.body.get("access_token").is_none());
    let challenge = challenged.body["challenge"].as_str().unwrap().to_owned();
    // A wrong code is refused…
    let stale = TotpSecret::from_base32(&secret)
        .unwrap()
        .code_at(OffsetDateTime::now_utc() - time::Duration::hours(3));
    let wrong = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/sign-in/second-factor")
                .json(&json!({"challenge": challenge, "code": stale})),
        )
        .await;
    wrong.assert_problem(401, "invalid_credentials");
    // The password was right: the answer says the code was not, and what to do.
    let detail = wrong.body["detail"].as_str().unwrap();
    assert!(detail.contains("next code"), "{detail}");
    // …a right one completes the sign-in.
    let completed = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/sign-in/second-factor")
                .json(&json!({"challenge": challenge, "code": authenticator.next_code().await})),
        )
        .await;
    assert_tokens(&completed);
    let two_factor = completed.body;
    tokens.extend([
        access(&two_factor).to_owned(),
        refresh_token(&two_factor).to_owned(),
    ]);
    shown_once.push(refresh_token(&two_factor).to_owned());

    // Refresh rotates the refresh token; presenting the old one again ends the session.
    let refreshed = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/refresh")
                .json(&json!({"refresh_token": refresh_token(&two_factor)})),
        )
        .await;
    assert_tokens(&refreshed);
    let refreshed = refreshed.body;
    assert_eq!(refreshed["session"], two_factor["session"]);
    assert_ne!(refresh_token(&refreshed), refresh_token(&two_factor));
    tokens.extend([
        access(&refreshed).to_owned(),
        refresh_token(&refreshed).to_owned(),
    ]);
    shown_once.push(refresh_token(&refreshed).to_owned());
    assert!(!refused(svc, access(&refreshed)).await);
    seen.send(
        svc,
        svc.anonymous(Method::POST, "/v1/auth/refresh")
            .json(&json!({"refresh_token": refresh_token(&two_factor)})),
    )
    .await
    .assert_problem(401, "invalid_token");
    seen.send(
        svc,
        svc.anonymous(Method::POST, "/v1/auth/refresh")
            .json(&json!({"refresh_token": refresh_token(&refreshed)})),
    )
    .await
    .assert_problem(401, "invalid_token");
    assert_refused(svc, access(&refreshed)).await;

    // A new device signs in with a recovery code; the used code does not work twice.
    let challenged = seen
        .send(svc, sign_in_request(svc, INVITEE_EMAIL, INVITEE_PASSWORD))
        .await;
    let challenge = challenged.body["challenge"].as_str().unwrap().to_owned();
    let completed = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/sign-in/second-factor")
                .json(&json!({"challenge": challenge, "recovery_code": recovery[0]})),
        )
        .await;
    assert_tokens(&completed);
    let current = completed.body;
    tokens.extend([
        access(&current).to_owned(),
        refresh_token(&current).to_owned(),
    ]);
    shown_once.push(refresh_token(&current).to_owned());
    seen.send(
        svc,
        svc.anonymous(Method::POST, "/v1/auth/sign-in/second-factor")
            .json(&json!({"challenge": challenge, "recovery_code": recovery[0]})),
    )
    .await
    .assert_problem(401, "invalid_credentials");

    // The live sessions: the invitation's, the password one and this one; the reused one is gone.
    let sessions = seen
        .send(
            svc,
            svc.request_as(access(&current), Method::GET, "/v1/auth/sessions")
                .header(
                    "x-idstream-min-position",
                    current["position"].as_u64().unwrap(),
                ),
        )
        .await;
    assert_eq!(sessions.status, 200, "{sessions:?}");
    let items = sessions.body["items"].as_array().unwrap().clone();
    let mut ids: Vec<&str> = items.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![
        from_invitation["session"].as_str().unwrap(),
        with_password["session"].as_str().unwrap(),
        current["session"].as_str().unwrap(),
    ];
    expected.sort();
    assert_eq!(ids, expected, "{sessions:?}");
    for item in &items {
        assert_eq!(item["current"], item["id"] == current["session"], "{item}");
        assert_eq!(item["tenant"], TENANT);
        assert!(item.get("refresh").is_none(), "{item}");
        let method = match item["id"].as_str().unwrap() {
            id if id == from_invitation["session"] => "invitation",
            id if id == with_password["session"] => "password",
            _ => "password_and_totp",
        };
        assert_eq!(item["method"], method, "{item}");
    }
    // Revoke the password session from this one.
    let revoked = seen
        .send(
            svc,
            svc.request_as(
                access(&current),
                Method::DELETE,
                &format!(
                    "/v1/auth/sessions/{}",
                    with_password["session"].as_str().unwrap()
                ),
            ),
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_refused(svc, access(&with_password)).await;
    // Someone else's session is not found, nor is a made-up one.
    seen.send(
        svc,
        svc.request_as(
            access(&current),
            Method::DELETE,
            &format!("/v1/auth/sessions/{}", admin["session"].as_str().unwrap()),
        ),
    )
    .await
    .assert_problem(404, "session_not_found");
    let sessions = seen
        .send(
            svc,
            svc.request_as(access(&current), Method::GET, "/v1/auth/sessions")
                .header("x-idstream-min-position", revoked.position()),
        )
        .await;
    assert_eq!(
        sessions.body["items"].as_array().unwrap().len(),
        2,
        "{sessions:?}"
    );

    // An API key restricted to users:read acts for the administrator within that restriction.
    let issued = seen
        .send(
            svc,
            svc.request_as(access(&admin), Method::POST, "/v1/tenants/acme/api-keys")
                .json(&json!({"name": "reporting", "permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(issued.status, 201, "{issued:?}");
    assert_eq!(issued.header("cache-control"), Some("no-store"));
    assert_eq!(issued.body["owner"], admin["user"]);
    let key = issued.body["key"].as_str().unwrap().to_owned();
    let key_id = issued.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ids_"), "{issued:?}");
    tokens.push(key.clone());
    shown_once.push(key.clone());
    let me = seen
        .send(svc, svc.request_as(&key, Method::GET, "/v1/auth/me"))
        .await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["id"], admin["user"]);
    assert_eq!(me.body["session"], Value::Null);
    assert!(
        me.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p == "users:read"),
        "{me:?}"
    );
    // Within the restriction: listing the tenant's keys (users:read).
    let keys = seen
        .send(
            svc,
            svc.request_as(&key, Method::GET, "/v1/tenants/acme/api-keys")
                .header("x-idstream-min-position", issued.position()),
        )
        .await;
    assert_eq!(keys.status, 200, "{keys:?}");
    let listed = &keys.body["items"][0];
    assert_eq!(listed["id"], key_id.as_str());
    assert_eq!(listed["permissions"], json!(["users:read"]));
    assert!(listed.get("key").is_none() && listed.get("secret").is_none());
    // Outside it: creating a user (users:create), which the owner may do, is forbidden.
    seen.send(
        svc,
        svc.request_as(&key, Method::POST, "/v1/tenants/acme/users")
            .json(&json!({"email": "eve@example.com"})),
    )
    .await
    .assert_problem(403, "forbidden");
    // And it cannot mint keys (see also `an_api_key_cannot_issue_api_keys`).
    let child = seen
        .send(
            svc,
            svc.request_as(&key, Method::POST, "/v1/tenants/acme/api-keys")
                .json(&json!({"name": "child", "owner": admin["user"]})),
        )
        .await;
    assert_eq!(child.status, 403, "{child:?}");
    // Neither was done. (The log itself may have grown: a key's use is recorded.)
    let members = seen
        .send(svc, svc.request(Method::GET, "/v1/tenants/acme/users"))
        .await;
    assert!(
        !members.body.to_string().contains("eve@example.com"),
        "{members:?}"
    );
    let keys = seen
        .send(svc, svc.request(Method::GET, "/v1/tenants/acme/api-keys"))
        .await;
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1, "{keys:?}");
    // Revoked, the key is refused by the very next request.
    let revoked = seen
        .send(
            svc,
            svc.request_as(
                access(&admin),
                Method::DELETE,
                &format!("/v1/tenants/acme/api-keys/{key_id}"),
            ),
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert!(refused(svc, &key).await, "a revoked API key still works");

    // Password reset: the same answer for a known and an unknown address.
    let known = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/password/reset-request")
                .json(&json!({"email": INVITEE_EMAIL})),
        )
        .await;
    let unknown = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/password/reset-request")
                .json(&json!({"email": "nobody@example.com"})),
        )
        .await;
    assert_eq!(known.status, 202, "{known:?}");
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    assert_eq!(known.body, json!({}));
    let mail = nth_mail(svc, INVITEE_EMAIL, "Reset your password", 1).await;
    let reset_token = token_in(&mail.text, "idp_");
    let user_in_link = link_param(&mail.text, "user");
    assert_eq!(user_in_link, grace);
    tokens.push(reset_token.clone());
    let reset = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/password/reset").json(
                &json!({"user": user_in_link, "token": reset_token, "password": NEW_PASSWORD}),
            ),
        )
        .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    assert_eq!(
        reset.header("x-idstream-position"),
        Some(reset.position().to_string().as_str())
    );
    // The link works once.
    seen.send(
        svc,
        svc.anonymous(Method::POST, "/v1/auth/password/reset").json(
            &json!({"user": grace, "token": reset_token, "password": "Another-Pass-Phrase-9"}),
        ),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
    // Every session of the user is dead.
    for tokens in [&from_invitation, &current] {
        assert_refused(svc, access(tokens)).await;
        seen.send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/refresh")
                .json(&json!({"refresh_token": refresh_token(tokens)})),
        )
        .await
        .assert_problem(401, "invalid_token");
    }
    // The old password fails; the new one works and still asks for the second factor.
    seen.send(svc, sign_in_request(svc, INVITEE_EMAIL, INVITEE_PASSWORD))
        .await
        .assert_problem(401, "invalid_credentials");
    let challenged = seen
        .send(svc, sign_in_request(svc, INVITEE_EMAIL, NEW_PASSWORD))
        .await;
    assert_eq!(challenged.status, 200, "{challenged:?}");
    assert_eq!(challenged.body["second_factor_required"], true);
    let completed = seen
        .send(
            svc,
            svc.anonymous(Method::POST, "/v1/auth/sign-in/second-factor").json(
                &json!({"challenge": challenged.body["challenge"], "recovery_code": recovery[1]}),
            ),
        )
        .await;
    assert_tokens(&completed);
    tokens.extend([
        access(&completed.body).to_owned(),
        refresh_token(&completed.body).to_owned(),
    ]);
    shown_once.push(refresh_token(&completed.body).to_owned());
    assert!(!refused(svc, access(&completed.body)).await);

    FlowSecrets {
        passwords: vec![
            ADMIN_PASSWORD.to_owned(),
            INVITEE_PASSWORD.to_owned(),
            NEW_PASSWORD.to_owned(),
        ],
        tokens,
        shown_once,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newcomer_is_invited_signs_in_with_two_factors_and_resets_the_password() {
    let (_dir, svc) = bootstrapped().await;
    let seen = Seen::default();
    newcomer_flow(&svc, &seen).await;
}

// ----- 2. forged access tokens -----

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_part(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_expired_and_mistyped_access_tokens_are_refused() {
    let (dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let genuine = access(&tokens).to_owned();
    assert!(!refused(&svc, &genuine).await);
    let parts: Vec<&str> = genuine.split('.').collect();
    let header = decode_part(parts[0]);
    let claims = decode_part(parts[1]);
    let kid = header["kid"].as_str().unwrap().to_owned();
    assert_eq!(header["alg"], "EdDSA");

    // The service's own keys, to mint tokens that differ from a genuine one in one respect only.
    let keys = idstream_keys::Keys::load_or_create(
        std::sync::Arc::new(idstream_keys::FileKeyStore::open(dir.path().join("keys")).unwrap()),
        OffsetDateTime::now_utc(),
        time::Duration::minutes(5),
    )
    .await
    .unwrap();
    let ring = keys.signing();
    assert_eq!(ring.current().kid(), kid);
    let issuer = Issuer::new(
        claims["iss"].as_str().unwrap(),
        claims["aud"].as_str().unwrap(),
        time::Duration::minutes(5),
    );
    let subject = AccessSubject {
        sub: claims["sub"].as_str().unwrap().to_owned(),
        tid: claims["tid"].as_str().unwrap().to_owned(),
        sid: claims["sid"].as_str().unwrap().to_owned(),
        amr: vec!["pwd".into()],
        ..Default::default()
    };
    // Control: a token minted here with the service's key now is accepted, so each refusal below
    // is for the one thing that is wrong with it.
    let control = issuer.sign(&ring, &subject, OffsetDateTime::now_utc());
    assert!(
        !refused(&svc, &control).await,
        "the control token is refused"
    );

    let mut forged: Vec<(&str, String)> = Vec::new();

    // The payload changed after signing: another tenant.
    let mut tampered = claims.clone();
    tampered["tid"] = json!("globex");
    forged.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], json_part(&tampered), parts[2]),
    ));
    // The payload changed after signing: a later expiry.
    let mut extended = claims.clone();
    extended["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    forged.push((
        "extended expiry",
        format!("{}.{}.{}", parts[0], json_part(&extended), parts[2]),
    ));
    // `alg: none`, with and without the signature.
    let none = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    forged.push((
        "alg none, empty signature",
        format!("{}.{}.", json_part(&none), parts[1]),
    ));
    forged.push((
        "alg none, old signature",
        format!("{}.{}.{}", json_part(&none), parts[1], parts[2]),
    ));
    // HS256 keyed with the public key (the classic algorithm confusion), in two encodings.
    let jwks = svc
        .send(svc.anonymous(Method::GET, "/.well-known/jwks.json"))
        .await;
    assert_eq!(jwks.status, 200, "{jwks:?}");
    assert_eq!(jwks.header("cache-control"), Some("public, max-age=300"));
    let jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key is published")
        .clone();
    assert!(jwk.get("d").is_none(), "the JWKS publishes a private key");
    let x = jwk["x"].as_str().unwrap();
    for (what, secret) in [
        (
            "HS256 with the raw public key",
            URL_SAFE_NO_PAD.decode(x).unwrap(),
        ),
        ("HS256 with the JWK's x", x.as_bytes().to_vec()),
    ] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        forged.push((what, token));
    }
    // Signed by a key the service does not hold: under its own kid, and under the service's kid.
    let stranger = KeyRing::new(
        SigningKey::generate(OffsetDateTime::now_utc()),
        time::Duration::minutes(15),
    );
    let foreign = issuer.sign(&stranger, &subject, OffsetDateTime::now_utc());
    forged.push(("a foreign kid", foreign.clone()));
    let mut stolen_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    stolen_kid.typ = Some("at+jwt".into());
    stolen_kid.kid = Some(kid.clone());
    let stranger_pem = stranger.current().to_pkcs8_pem();
    let signature = jsonwebtoken::encode(
        &stolen_kid,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(stranger_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    forged.push(("a foreign key under the service's kid", signature));
    // Genuinely signed, but expired an hour ago (well past the clock leeway).
    forged.push((
        "expired",
        issuer.sign(
            &ring,
            &subject,
            OffsetDateTime::now_utc() - time::Duration::hours(1),
        ),
    ));
    // Genuinely signed, but not an access token: the header's typ, or the claim's.
    let pem = ring.current().to_pkcs8_pem();
    let service_key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    let mut plain = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    plain.typ = Some("JWT".into());
    plain.kid = Some(kid.clone());
    forged.push((
        "typ JWT",
        jsonwebtoken::encode(&plain, &claims, &service_key).unwrap(),
    ));
    let mut typed = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    typed.typ = Some("at+jwt".into());
    typed.kid = Some(kid.clone());
    let mut id_token = claims.clone();
    id_token["typ"] = json!("id");
    forged.push((
        "claim typ id",
        jsonwebtoken::encode(&typed, &id_token, &service_key).unwrap(),
    ));
    // Genuinely signed for another audience.
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("someone-else");
    forged.push((
        "another audience",
        jsonwebtoken::encode(&typed, &other_audience, &service_key).unwrap(),
    ));

    for (what, token) in &forged {
        let answer = svc.get_as(token, "/v1/auth/me").await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        answer.assert_problem(401, "unauthorized");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
        // Commands too.
        svc.post_as(token, "/v1/auth/sign-out", json!({}))
            .await
            .assert_problem(401, "unauthorized");
    }
    // The genuine token still works; signed out, it does not.
    assert!(!refused(&svc, &genuine).await);
    let out = svc
        .send(svc.request_as(&genuine, Method::POST, "/v1/auth/sign-out"))
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_refused(&svc, &genuine).await;
    assert!(
        refused(&svc, &control).await,
        "a token of an ended session works"
    );
}

// ----- 3. concurrent refreshes -----

/// A client on its own loopback address, so that each one has its own rate-limit budget and the
/// race below is decided by the session, not by the limiter.
fn client(n: u8) -> reqwest::Client {
    Service::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 1, n)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hundred_concurrent_refreshes_with_one_token_yield_at_most_one_new_token() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = refresh_token(&tokens).to_owned();
    let url = svc.url("/v1/auth/refresh");
    let attempts = (1..=100u8).map(|n| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let response = client(n)
                .post(url)
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .expect("HTTP request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert!(winners.len() <= 1, "{} refreshes succeeded", winners.len());
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(body["code"], "invalid_token", "{body}");
    }
    // The losers presented a rotated token: the session is revoked, the winner's tokens with it.
    if let Some(winner) = winners.first() {
        let again = svc
            .post_anonymous(
                "/v1/auth/refresh",
                json!({"refresh_token": refresh_token(winner)}),
            )
            .await;
        again.assert_problem(401, "invalid_token");
        assert_refused(&svc, access(winner)).await;
    }
    assert_refused(&svc, access(&tokens)).await;
}

// ----- 4. concurrent acceptances -----

/// Invites `email` to acme as the operator and returns (invitation id, user id, token).
async fn invite(svc: &Service, email: &str) -> (String, String, String) {
    let before = svc
        .mail()
        .iter()
        .filter(|m| m.to == email && m.subject.contains("Invitation"))
        .count();
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": email, "roles": ["user"]}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let mail = nth_mail(svc, email, "Invitation", before + 1).await;
    (
        invited.body["id"].as_str().unwrap().to_owned(),
        invited.body["user"].as_str().unwrap().to_owned(),
        token_in(&mail.text, "idi_"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_is_accepted_exactly_once_however_many_try() {
    let (_dir, svc) = bootstrapped().await;
    let (_, _, token) = invite(&svc, "lin@example.com").await;
    let accept = |n: u8, password: &'static str| {
        let (url, token) = (svc.url("/v1/invitations/accept"), token.clone());
        async move {
            let response = client(n)
                .post(url)
                .json(&json!({"token": token, "password": password}))
                .send()
                .await
                .expect("HTTP request");
            let status = response.status().as_u16();
            (
                status,
                password,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (first, second) = tokio::join!(
        accept(1, "First-Racer-Password-1"),
        accept(2, "Second-Racer-Password-2")
    );
    let mut answers = [first, second];
    answers.sort_by_key(|(status, _, _)| *status);
    let [(won, winner, _), (lost, loser, body)] = answers;
    assert_eq!(won, 200, "{lost} {body}");
    assert_eq!(lost, 400, "{body}");
    assert_eq!(body["code"], "invalid_or_expired_link", "{body}");

    // Replayed, or malformed: the same refusal, and nothing is appended.
    let before = svc.log_position().await;
    for presented in [
        token.clone(),
        token.to_uppercase(),
        "idi_not-a-token".to_owned(),
        format!("{}x", token),
        token.replace("idi_", "idr_"),
        String::new(),
    ] {
        svc.post_anonymous(
            "/v1/invitations/accept",
            json!({"token": presented, "password": "Yet-Another-Password-3"}),
        )
        .await
        .assert_problem(400, "invalid_or_expired_link");
    }
    assert_eq!(
        svc.log_position().await,
        before,
        "a refused acceptance appended"
    );
    // The winner's password is the account's; the loser's is not.
    svc.sign_in("lin@example.com", winner).await;
    svc.post_anonymous(
        "/v1/auth/sign-in",
        json!({"email": "lin@example.com", "password": loser}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

// ----- 5. brute force -----

/// Failed sign-ins are events of the account's credentials, not counters in memory: four wrong
/// passwords before a restart and one after it lock the account, as five in a row would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_sign_ins_counted_before_a_restart_still_count_after_it() {
    let (_dir, mut svc) = bootstrapped().await;
    // Each attempt from its own address, so that no per-source budget gets in the way.
    let attempt = |svc: &Service, n: u8, password: &str| {
        let client = Service::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 3, n)));
        client
            .post(svc.url("/v1/auth/sign-in"))
            .json(&json!({"email": ADMIN_EMAIL, "password": password}))
    };
    for n in 1..=4 {
        svc.send(attempt(&svc, n, "not the password"))
            .await
            .assert_problem(401, "invalid_credentials");
    }
    // The restart, with a look at the log in between: four failures, no lock-out yet.
    svc.stop().await;
    let count = |events: &[idstream_eventlog::RecordedEvent], kind: &str| {
        events
            .iter()
            .filter(|e| e.envelope.event_type == kind)
            .count()
    };
    let before = svc.events().await;
    assert_eq!(
        (
            count(&before, "SignInFailed"),
            count(&before, "AccountLocked")
        ),
        (4, 0)
    );
    svc.start_again().await;
    // The fifth failure, after the restart, locks the account: the right password is refused.
    svc.send(attempt(&svc, 5, "still not the password"))
        .await
        .assert_problem(401, "invalid_credentials");
    svc.send(attempt(&svc, 6, ADMIN_PASSWORD))
        .await
        .assert_problem(401, "invalid_credentials");
    svc.stop().await;
    let after = svc.events().await;
    let locked: Vec<_> = after
        .iter()
        .filter(|e| e.envelope.event_type == "AccountLocked")
        .collect();
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0].envelope.data["failures"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_flood_of_wrong_passwords_is_rate_limited_and_locks_the_account_after_few_checks() {
    let (_dir, mut svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let user = admin["user"].as_str().unwrap().to_owned();
    let guesses = (0..200).map(|i| {
        let svc = &svc;
        async move {
            svc.send(sign_in_request(
                svc,
                ADMIN_EMAIL,
                &format!("wrong-guess-{i}"),
            ))
            .await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let mut limited = 0;
    for answer in &answers {
        match answer.status {
            401 => answer.assert_problem(401, "invalid_credentials"),
            429 => {
                answer.assert_problem(429, "rate_limited");
                assert!(answer.header("retry-after").is_some(), "{answer:?}");
                limited += 1;
            }
            _ => panic!("unexpected answer to a wrong password: {answer:?}"),
        }
    }
    assert!(
        limited > 0,
        "200 guesses from one address were not rate limited"
    );

    // From another address (its own budget) the right password is refused while locked…
    let other = Service::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
    let answer = svc
        .send(
            other
                .post(svc.url("/v1/auth/sign-in"))
                .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    answer.assert_problem(401, "invalid_credentials");
    // …and works once an administrator lifts the lock-out.
    let unlocked = svc
        .post(&format!("/v1/users/{user}/unlock"), json!({}))
        .await;
    assert_eq!(unlocked.status, 200, "{unlocked:?}");
    let another = Service::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 2)));
    let answer = svc
        .send(
            another
                .post(svc.url("/v1/auth/sign-in"))
                .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // The user was told by email.
    nth_mail(&svc, ADMIN_EMAIL, "", 1).await;

    // The log shows the bound on argon2 checks: a handful of recorded failures, one lock-out.
    svc.stop().await;
    let events = svc.events().await;
    let of_user = |kind: &str| {
        events
            .iter()
            .filter(|e| e.envelope.event_type == kind && e.envelope.aggregate.id == user)
            .count()
    };
    let failures = of_user("SignInFailed");
    assert!(
        (1..=10).contains(&failures),
        "{failures} SignInFailed events for 200 guesses"
    );
    assert_eq!(of_user("AccountLocked"), 1);
}

// ----- 6. enumeration -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_and_known_accounts_get_the_same_answers() {
    let (_dir, svc) = bootstrapped().await;
    let unknown = svc
        .send(sign_in_request(
            &svc,
            "nobody@example.com",
            "Some-Password-123",
        ))
        .await;
    let wrong = svc
        .send(sign_in_request(&svc, ADMIN_EMAIL, "Some-Password-123"))
        .await;
    unknown.assert_problem(401, "invalid_credentials");
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    let malformed = svc
        .send(sign_in_request(&svc, "not an address", "Some-Password-123"))
        .await;
    assert_eq!(
        (malformed.status, &malformed.body),
        (wrong.status, &wrong.body)
    );

    let known = svc
        .post_anonymous(
            "/v1/auth/password/reset-request",
            json!({"email": ADMIN_EMAIL}),
        )
        .await;
    let unknown = svc
        .post_anonymous(
            "/v1/auth/password/reset-request",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(known.status, 202);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    assert_eq!(known.header("content-type"), unknown.header("content-type"));
    // Only the known address gets mail.
    nth_mail(&svc, ADMIN_EMAIL, "Reset your password", 1).await;
    assert!(
        svc.mail().iter().all(|m| m.to != "nobody@example.com"),
        "mail to an unknown address"
    );
}

// ----- 7. password rules -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_weak_passwords_are_refused_without_spending_the_invitation() {
    let (_dir, svc) = bootstrapped().await;
    let huge = "x".repeat(5000);
    svc.send(sign_in_request(&svc, ADMIN_EMAIL, &huge))
        .await
        .assert_problem(422, "password_too_long");

    let (invitation, user, token) = invite(&svc, "weak@example.com").await;
    let before = svc.log_position().await;
    for (password, code) in [
        (huge.as_str(), "password_too_long"),
        ("password", "weak_password"),
        ("short", "weak_password"),
        ("weak@example.com", "weak_password"),
    ] {
        svc.post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": password}),
        )
        .await
        .assert_problem(422, code);
    }
    svc.post_anonymous("/v1/invitations/accept", json!({"token": token}))
        .await
        .assert_problem(422, "password_required");
    assert_eq!(
        svc.log_position().await,
        before,
        "a refused acceptance appended"
    );
    let listed = svc.get("/v1/tenants/acme/invitations").await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == invitation.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["status"], "sent", "{listed:?}");
    // Still acceptable with a good password.
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": "A-Much-Better-Phrase-7"}),
        )
        .await;
    assert_tokens(&accepted);
    assert_eq!(accepted.body["user"], user.as_str());

    // A reset refuses the same passwords, and keeps its link usable.
    svc.post_anonymous(
        "/v1/auth/password/reset-request",
        json!({"email": "weak@example.com"}),
    )
    .await;
    let mail = nth_mail(&svc, "weak@example.com", "Reset your password", 1).await;
    let reset_token = token_in(&mail.text, "idp_");
    for (password, code) in [
        (huge.as_str(), "password_too_long"),
        ("password", "weak_password"),
    ] {
        svc.post_anonymous(
            "/v1/auth/password/reset",
            json!({"user": user, "token": reset_token, "password": password}),
        )
        .await
        .assert_problem(422, code);
    }
    let reset = svc
        .post_anonymous(
            "/v1/auth/password/reset",
            json!({"user": user, "token": reset_token, "password": "Yet-Better-Phrase-8"}),
        )
        .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    svc.sign_in("weak@example.com", "Yet-Better-Phrase-8").await;
}

// ----- 8. no secret leaks -----

/// Every `prefix` + 32 base32 characters token in `text`.
fn opaque_tokens<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let secret: String = rest.chars().take(33).collect();
            let body = &secret[..secret.len().min(32)];
            let boundary = secret.chars().nth(32);
            (body.len() == 32
                && body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
                && boundary.is_none_or(|c| !c.is_ascii_alphanumeric()))
            .then(|| &text[at..at + prefix.len() + 32])
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_password_token_or_totp_secret_leaks_into_logs_answers_or_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let output_dir = tempfile::tempdir().unwrap();
    let output = output_dir.path().join("idstream.log");
    let mut svc = start_bootstrapped(dir.path(), Some(&output)).await;
    let seen = Seen::default();
    let secrets = newcomer_flow(&svc, &seen).await;
    svc.stop().await;

    // The process's output (debug level): no secret at all.
    let logged = std::fs::read_to_string(&output).unwrap();
    assert!(
        logged.contains("idstream listening on") && logged.contains("elapsed_ms"),
        "the output was not captured"
    );
    assert!(
        logged.lines().count() > 100,
        "too little was logged for the scan to mean much"
    );
    for secret in secrets.passwords.iter().chain(&secrets.tokens) {
        assert!(
            !logged.contains(secret.as_str()),
            "a secret ({}…) is in the service's output",
            &secret[..4]
        );
    }
    for prefix in ["idr_", "idi_", "idp_", "idm_"] {
        assert!(
            opaque_tokens(&logged, prefix).is_empty(),
            "an {prefix} token is in the service's output"
        );
    }
    assert!(
        !logged.contains("$argon2"),
        "a password hash is in the output"
    );

    // Answers: no password ever; each secret only in the answer that created it.
    let bodies = seen.bodies();
    for password in &secrets.passwords {
        assert!(
            bodies.iter().all(|b| !b.contains(password.as_str())),
            "a password was echoed"
        );
    }
    for secret in &secrets.shown_once {
        let shown = bodies
            .iter()
            .filter(|b| b.contains(secret.as_str()))
            .count();
        assert_eq!(
            shown,
            1,
            "a secret ({}…) was shown {shown} times",
            &secret[..4]
        );
    }
    for body in &bodies {
        assert!(!body.contains("$argon2"), "{body}");
    }

    // The event log: every event, as JSON, holds no secret, no hash and no token.
    let events = svc.events().await;
    assert!(events.len() > 20, "{} events", events.len());
    for event in &events {
        let text = serde_json::to_string(&event.envelope).unwrap();
        for secret in secrets.passwords.iter().chain(&secrets.tokens) {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds a secret",
                event.envelope.event_type
            );
        }
        assert!(!text.contains("$argon2"), "{text}");
        for prefix in ["idr_", "idi_", "idp_", "idm_", "ids_"] {
            assert!(
                !text.contains(&format!("\"{prefix}")) && opaque_tokens(&text, prefix).is_empty(),
                "{text}"
            );
        }
    }
    // The files of the log and the read models, byte for byte.
    for file in files_under(&dir.path().join("log"))
        .into_iter()
        .chain(files_under(&dir.path().join("readmodels")))
    {
        let bytes = std::fs::read(&file).unwrap();
        for secret in secrets.passwords.iter().chain(&secrets.tokens) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret ({}…)",
                file.display(),
                &secret[..4]
            );
        }
        assert!(
            !bytes.windows(7).any(|w| w == b"$argon2"),
            "{} holds a password hash",
            file.display()
        );
    }
}

// ----- 9. JetStream -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_jetstream_a_second_replica_honours_tokens_and_keys_minted_by_the_first() {
    let nats = NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let printed = Service::bootstrap(
        dir_a.path(),
        Some(&nats.url()),
        TENANT,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    assert!(printed.contains("Bootstrapped tenant acme"), "{printed}");
    let a = Service::jetstream(dir_a.path(), &nats.url()).await;
    let b = Service::jetstream(dir_b.path(), &nats.url()).await;
    wait_ready(&a).await;
    wait_ready(&b).await;

    let tokens = a.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // Both replicas publish the same keys.
    let (jwks_a, jwks_b) = (
        a.send(a.anonymous(Method::GET, "/.well-known/jwks.json"))
            .await,
        b.send(b.anonymous(Method::GET, "/.well-known/jwks.json"))
            .await,
    );
    assert_eq!(jwks_a.body, jwks_b.body);
    // B accepts A's access token, and refreshes A's refresh token.
    let me = b.get_as(access(&tokens), "/v1/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["email"], ADMIN_EMAIL);
    let refreshed = b
        .post_anonymous(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&tokens)}),
        )
        .await;
    assert_tokens(&refreshed);
    assert_eq!(refreshed.body["session"], tokens["session"]);
    // A honours B's new tokens; the old refresh token is spent on A too.
    let me = a.get_as(access(&refreshed.body), "/v1/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");

    // An API key issued on A works on B, and its revocation on A reaches B.
    let (key_id, key) = issue_key(
        &a,
        access(&refreshed.body),
        json!({"name": "replicated", "permissions": ["users:read"]}),
    )
    .await;
    let me = b.get_as(&key, "/v1/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["user"]["id"], tokens["user"]);
    let revoked = a
        .send(a.request_as(
            access(&refreshed.body),
            Method::DELETE,
            &format!("/v1/tenants/acme/api-keys/{key_id}"),
        ))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_refused(&a, &key).await;
    until_refused(&b, &key).await;

    // Reuse of the spent refresh token on A revokes the session everywhere.
    a.post_anonymous(
        "/v1/auth/refresh",
        json!({"refresh_token": refresh_token(&tokens)}),
    )
    .await
    .assert_problem(401, "invalid_token");
    until_refused(&b, access(&refreshed.body)).await;
}

// ----- the rest of the account endpoints -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_changes_password_switches_tenant_and_turns_two_factor_off() {
    let (_dir, svc) = bootstrapped().await;
    let here = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let elsewhere = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let user = here["user"].as_str().unwrap().to_owned();

    // A second tenant the administrator belongs to, and a switch of this session into it.
    svc.create_tenant("globex").await;
    let assigned = svc
        .post(
            &format!("/v1/tenants/globex/users/{user}/roles"),
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    svc.post_as(
        access(&here),
        "/v1/auth/switch-tenant",
        json!({"tenant": "nowhere", "refresh_token": refresh_token(&here)}),
    )
    .await
    .assert_problem(422, "not_a_member");
    svc.post_as(
        access(&here),
        "/v1/auth/switch-tenant",
        json!({"tenant": "globex", "refresh_token": refresh_token(&elsewhere)}),
    )
    .await
    .assert_problem(401, "invalid_token");
    let switched = svc
        .post_as(
            access(&here),
            "/v1/auth/switch-tenant",
            json!({"tenant": "globex", "refresh_token": refresh_token(&here)}),
        )
        .await;
    assert_tokens(&switched);
    assert_eq!(switched.body["tenant"], "globex");
    assert_eq!(switched.body["session"], here["session"]);
    let me = svc.get_as(access(&switched.body), "/v1/auth/me").await;
    assert_eq!(me.body["tenant"], "globex", "{me:?}");
    assert_eq!(me.body["roles"], json!(["user"]), "{me:?}");
    let here = switched.body;

    // Changing the password needs the current one and a good new one; other sessions end.
    svc.post_as(
        access(&here),
        "/v1/auth/password",
        json!({"current_password": "not-the-password", "new_password": NEW_PASSWORD}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    svc.post_as(
        access(&here),
        "/v1/auth/password",
        json!({"current_password": ADMIN_PASSWORD, "new_password": "password"}),
    )
    .await
    .assert_problem(422, "weak_password");
    let changed = svc
        .post_as(
            access(&here),
            "/v1/auth/password",
            json!({"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        changed.header("x-idstream-position"),
        Some(changed.position().to_string().as_str())
    );
    assert_refused(&svc, access(&elsewhere)).await;
    assert!(
        !refused(&svc, access(&here)).await,
        "the changing session ended"
    );
    svc.send(sign_in_request(&svc, ADMIN_EMAIL, ADMIN_PASSWORD))
        .await
        .assert_problem(401, "invalid_credentials");

    // TOTP on, then off with the password; sign-in stops asking for a code.
    svc.post_as(
        access(&here),
        "/v1/auth/totp/disable",
        json!({"password": NEW_PASSWORD}),
    )
    .await
    .assert_problem(409, "totp_not_enabled");
    svc.post_as(
        access(&here),
        "/v1/auth/totp/confirm",
        json!({"code": "123456"}),
    )
    .await
    .assert_problem(409, "totp_not_being_set_up");
    let setup = svc
        .post_as(access(&here), "/v1/auth/totp/setup", json!({}))
        .await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let mut authenticator = Authenticator::new(setup.body["secret"].as_str().unwrap());
    let confirmed = svc
        .post_as(
            access(&here),
            "/v1/auth/totp/confirm",
            json!({"code": authenticator.next_code().await}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    svc.post_as(access(&here), "/v1/auth/totp/setup", json!({}))
        .await
        .assert_problem(409, "totp_already_enabled");
    let challenged = svc
        .send(sign_in_request(&svc, ADMIN_EMAIL, NEW_PASSWORD))
        .await;
    assert_eq!(
        challenged.body["second_factor_required"], true,
        "{challenged:?}"
    );
    svc.post_anonymous(
        "/v1/auth/sign-in/second-factor",
        json!({"challenge": challenged.body["challenge"]}),
    )
    .await
    .assert_problem(422, "second_factor_missing");
    svc.post_anonymous(
        "/v1/auth/sign-in/second-factor",
        json!({"challenge": "v1.forged.challenge", "code": "123456"}),
    )
    .await
    .assert_problem(401, "invalid_token");
    svc.post_as(
        access(&here),
        "/v1/auth/totp/disable",
        json!({"password": "wrong-password"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let disabled = svc
        .post_as(
            access(&here),
            "/v1/auth/totp/disable",
            json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(disabled.status, 200, "{disabled:?}");
    let plain = svc
        .send(sign_in_request(&svc, ADMIN_EMAIL, NEW_PASSWORD))
        .await;
    assert_tokens(&plain);

    // Signing out ends this session only.
    let out = svc
        .send(svc.request_as(access(&here), Method::POST, "/v1/auth/sign-out"))
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_refused(&svc, access(&here)).await;
    assert!(!refused(&svc, access(&plain.body)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_administrator_resends_and_withdraws_invitations_and_ends_a_users_sessions() {
    let (_dir, svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // Resending: a new link, the old one dead.
    let (invitation, user, first) = invite(&svc, "resend@example.com").await;
    svc.post(
        "/v1/tenants/acme/invitations",
        json!({"email": "resend@example.com"}),
    )
    .await
    .assert_problem(409, "invitation_pending");
    let resent = svc
        .post_as(
            access(&admin),
            &format!("/v1/tenants/acme/invitations/{invitation}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(resent.status, 200, "{resent:?}");
    assert_eq!(resent.body["id"], invitation.as_str());
    assert_eq!(resent.body["email_sent"], true);
    let second = token_in(
        &nth_mail(&svc, "resend@example.com", "Invitation", 2)
            .await
            .text,
        "idi_",
    );
    assert_ne!(first, second);
    svc.post_anonymous(
        "/v1/invitations/accept",
        json!({"token": first, "password": "Resent-Invitation-Pass-1"}),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": second, "password": "Resent-Invitation-Pass-1"}),
        )
        .await;
    assert_tokens(&accepted);
    let listed = svc
        .get_at("/v1/tenants/acme/invitations", accepted.position())
        .await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == invitation.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["status"], "accepted", "{item}");
    assert_eq!(item["resent"], 1, "{item}");
    assert!(item["accepted_at"].is_string(), "{item}");

    // Withdrawing: the link dies.
    let (withdrawn, _, token) = invite(&svc, "withdrawn@example.com").await;
    let deleted = svc
        .send(svc.request_as(
            access(&admin),
            Method::DELETE,
            &format!("/v1/tenants/acme/invitations/{withdrawn}"),
        ))
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    svc.post_anonymous(
        "/v1/invitations/accept",
        json!({"token": token, "password": "Withdrawn-Invitation-1"}),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
    let listed = svc
        .get_at("/v1/tenants/acme/invitations?limit=1", deleted.position())
        .await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "{listed:?}"
    );
    let next = listed.body["next"].as_str().unwrap();
    let rest = svc
        .get(&format!("/v1/tenants/acme/invitations?after={next}"))
        .await;
    assert_eq!(rest.body["items"][0]["status"], "revoked", "{rest:?}");
    // Someone without users:create cannot see or send invitations.
    let member = svc
        .sign_in("resend@example.com", "Resent-Invitation-Pass-1")
        .await;
    svc.get_as(access(&member), "/v1/tenants/acme/invitations")
        .await
        .assert_problem(403, "forbidden");
    svc.post_as(
        access(&member),
        "/v1/tenants/acme/invitations",
        json!({"email": "friend@example.com"}),
    )
    .await
    .assert_problem(403, "forbidden");

    // An administrator ends every session of a user; a member may not.
    svc.post_as(
        access(&member),
        &format!(
            "/v1/users/{}/sessions/revoke",
            admin["user"].as_str().unwrap()
        ),
        json!({}),
    )
    .await
    .assert_problem(403, "forbidden");
    let ended = svc
        .post_as(
            access(&admin),
            &format!("/v1/users/{user}/sessions/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{ended:?}");
    assert_refused(&svc, access(&member)).await;
    assert_refused(&svc, access(&accepted.body)).await;
    svc.post_anonymous(
        "/v1/auth/refresh",
        json!({"refresh_token": refresh_token(&member)}),
    )
    .await
    .assert_problem(401, "invalid_token");
    // Not locked: nothing to unlock.
    svc.post(&format!("/v1/users/{user}/unlock"), json!({}))
        .await
        .assert_problem(409, "not_locked");
}

// ----- where sign-ins come from -----

/// `GET path` with `bearer`, once the read models have reached `position`.
async fn get_as_at(svc: &Service, bearer: &str, path: &str, position: u64) -> Answer {
    svc.send(
        svc.request_as(bearer, Method::GET, path)
            .header("X-Idstream-Min-Position", position),
    )
    .await
}

#[tokio::test]
async fn sign_ins_and_failures_record_their_source_and_session_listings_show_it() {
    let (dir, mut svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, user, token) = invite(&svc, "source@example.com").await;
    let long_agent = format!("SourceTest/1.0 {}", "y".repeat(400));
    // No proxy is trusted by default: a forwarded address is the client's claim, and ignored.
    let accepted = svc
        .send(
            svc.anonymous(Method::POST, "/v1/invitations/accept")
                .header("user-agent", &long_agent)
                .header("x-forwarded-for", "203.0.113.9")
                .json(&json!({"token": token, "password": "Source-Test-Pass-1"})),
        )
        .await;
    assert_tokens(&accepted);
    let sign_in = |agent: &'static str, password: &'static str| {
        svc.anonymous(Method::POST, "/v1/auth/sign-in")
            .header("user-agent", agent)
            .json(&json!({"email": "source@example.com", "password": password}))
    };
    svc.send(sign_in("Guesser/2.0", "not the password"))
        .await
        .assert_problem(401, "invalid_credentials");
    let laptop = svc.send(sign_in("Laptop/3.0", "Source-Test-Pass-1")).await;
    assert_tokens(&laptop);

    // The user sees their sessions, newest first, with where each began.
    let mine = get_as_at(
        &svc,
        access(&laptop.body),
        "/v1/auth/sessions",
        laptop.position(),
    )
    .await;
    assert_eq!(mine.status, 200, "{mine:?}");
    let items = mine.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{mine:?}");
    assert_eq!(items[0]["user_agent"], "Laptop/3.0");
    assert_eq!(items[0]["ip"], "127.0.0.1");
    assert_eq!(items[0]["current"], true);
    assert_eq!(
        items[1]["ip"], "127.0.0.1",
        "X-Forwarded-For is not believed"
    );
    let cut: String = long_agent.chars().take(256).collect();
    assert_eq!(items[1]["user_agent"], cut.as_str());

    // An administrator sees them too; a member may not see the administrator's.
    let listed = get_as_at(
        &svc,
        access(&admin),
        &format!("/v1/users/{user}/sessions"),
        laptop.position(),
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed.body["items"][0]["user_agent"], "Laptop/3.0");
    assert_eq!(listed.body["items"][0]["current"], false);
    svc.get_as(
        access(&laptop.body),
        &format!("/v1/users/{}/sessions", admin["user"].as_str().unwrap()),
    )
    .await
    .assert_problem(403, "forbidden");
    svc.get(&format!("/v1/users/{}/sessions", ulid::Ulid::new()))
        .await
        .assert_problem(404, "user_not_found");

    // Behind a trusted proxy, the right-most address it did not add itself is the client.
    let other = tempfile::tempdir().unwrap();
    Service::bootstrap(other.path(), None, TENANT, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let proxied = Service::embedded_with_env(
        other.path(),
        &[("IDSTREAM_TRUSTED_PROXIES", "127.0.0.0/8,::1")],
    )
    .await;
    wait_ready(&proxied).await;
    let tokens = proxied
        .send(
            proxied
                .anonymous(Method::POST, "/v1/auth/sign-in")
                .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
                .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_tokens(&tokens);
    let sessions = get_as_at(
        &proxied,
        access(&tokens.body),
        "/v1/auth/sessions",
        tokens.position(),
    )
    .await;
    assert_eq!(
        sessions.body["items"][0]["ip"], "203.0.113.9",
        "{sessions:?}"
    );
    assert_eq!(sessions.body["items"][0]["user_agent"], Value::Null);

    // In the log the sources are there, encrypted with the user's key.
    svc.stop().await;
    let events = svc.events().await;
    let of = |event_type: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.envelope.event_type == event_type)
            .map(|e| {
                let current = if event_type == "SessionStarted" { 5 } else { 2 };
                assert_eq!(e.envelope.version, current, "{e:?}");
                e.envelope.data.clone()
            })
            .collect()
    };
    let failures = of("SignInFailed");
    assert_eq!(failures.len(), 1, "{failures:?}");
    let sessions: Vec<Value> = of("SessionStarted")
        .into_iter()
        .filter(|data| data["user"] == user.as_str())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for data in failures.iter().chain(&sessions) {
        for field in ["ip", "user_agent"] {
            assert!(
                data[field].as_str().is_some_and(|v| v.starts_with("pd1.")),
                "{field} is stored encrypted: {data}"
            );
        }
    }
    let stored =
        serde_json::to_string(&events.iter().map(|e| &e.envelope).collect::<Vec<_>>()).unwrap();
    for clear in ["Guesser", "Laptop", "SourceTest", "127.0.0.1"] {
        assert!(
            !stored.contains(clear),
            "{clear} is in the log in the clear"
        );
    }
    drop(dir);
}

// ----- revocation takes effect at once -----// ----- revocation takes effect at once -----

/// Issues `keys` keys, then revokes them all at once, each presented again right after its
/// revocation's answer: the replica that answered must refuse it from then on. (Revoking them
/// together keeps the read model busy, as a loaded service would be.) Each key is used on
/// `elsewhere` too before, if given: another replica, as keys are used on any of them.
async fn revoke_and_use_at_once(svc: &Service, elsewhere: Option<&Service>, keys: usize) {
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut issued = Vec::new();
    for n in 0..keys {
        let (key_id, key) =
            issue_key(svc, access(&admin), json!({"name": format!("key {n}")})).await;
        assert!(!refused(svc, &key).await, "a new key is refused");
        if let Some(other) = elsewhere {
            assert!(
                !refused(other, &key).await,
                "a new key is refused elsewhere"
            );
        }
        issued.push((key_id, key));
    }
    let revocations = issued.iter().map(|(id, key)| {
        let admin = &admin;
        async move {
            let revoked = svc
                .send(svc.request_as(
                    access(admin),
                    Method::DELETE,
                    &format!("/v1/tenants/acme/api-keys/{id}"),
                ))
                .await;
            assert_eq!(revoked.status, 200, "{revoked:?}");
            refused(svc, key).await
        }
    });
    let refusals = futures::future::join_all(revocations).await;
    let still_working = refusals.iter().filter(|refused| !**refused).count();
    for (_, key) in &issued {
        until_refused(svc, key).await;
    }
    assert_eq!(
        still_working, 0,
        "{still_working} of {keys} revoked keys still worked for the next request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_api_key_is_refused_by_the_next_request() {
    let (_dir, svc) = bootstrapped().await;
    revoke_and_use_at_once(&svc, None, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_jetstream_a_revoked_api_key_is_refused_by_the_next_request() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    Service::bootstrap(
        dir.path(),
        Some(&nats.url()),
        TENANT,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    let other_dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    let other = Service::jetstream(other_dir.path(), &nats.url()).await;
    wait_ready(&svc).await;
    wait_ready(&other).await;
    revoke_and_use_at_once(&svc, Some(&other), 10).await;
}

// ----- the API-key subject of the check API, and the OpenAPI document -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_key_checks_as_its_owner_within_its_restriction() {
    let (_dir, svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, key) = issue_key(
        &svc,
        access(&admin),
        json!({"name": "checker", "permissions": ["users:read"]}),
    )
    .await;
    let check = |bearer: String, permission: &'static str| {
        let svc = &svc;
        async move {
            svc.post_as(
                &bearer,
                "/v1/tenants/acme/access/check",
                json!({"permission": permission}),
            )
            .await
        }
    };
    // The key, omitting the subject, is its owner narrowed to its restriction.
    let inside = check(key.clone(), "users:read").await;
    assert_eq!(inside.status, 200, "{inside:?}");
    assert_eq!(inside.body["allowed"], true, "{inside:?}");
    let outside = check(key.clone(), "users:create").await;
    assert_eq!(outside.status, 200, "{outside:?}");
    assert_eq!(outside.body["allowed"], false, "{outside:?}");
    assert_eq!(
        outside.body["reason"]["kind"], "key_restriction",
        "{outside:?}"
    );
    let explained = svc
        .post_as(
            &key,
            "/v1/tenants/acme/access/explain",
            json!({"permission": "users:create"}),
        )
        .await;
    assert_eq!(explained.body["allowed"], false, "{explained:?}");
    assert_eq!(explained.body["reason"]["kind"], "key_restriction");
    // The owner's session, omitting the subject, is the owner: global access.
    let owner = check(access(&admin).to_owned(), "users:create").await;
    assert_eq!(owner.body["allowed"], true, "{owner:?}");
    // The key asking about someone else needs permissions:read, which it lacks.
    let someone = svc
        .create_user(TENANT, "someone@example.com", &["user"])
        .await
        .0;
    svc.post_as(
        &key,
        "/v1/tenants/acme/access/check",
        json!({"subject": format!("user:{someone}"), "permission": "users:read"}),
    )
    .await
    .assert_problem(403, "forbidden");
    // An unrestricted key is its owner.
    let unrestricted = svc
        .post_as(
            access(&admin),
            "/v1/tenants/acme/api-keys",
            json!({"name": "everything"}),
        )
        .await;
    let full = unrestricted.body["key"].as_str().unwrap().to_owned();
    let answer = check(full, "users:create").await;
    assert_eq!(answer.body["allowed"], true, "{answer:?}");
    // Its `me` is the owner narrowed to the restriction: exactly users:read, no global access.
    let me = svc.get_as(&key, "/v1/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["permissions"], json!(["users:read"]), "{me:?}");
    assert_eq!(me.body["global_access"], false, "{me:?}");
}

/// Keys cannot mint keys: a key's holder could otherwise outlive its revocation. Even a key with
/// all of its owner's powers is refused, whether or not it names an owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_key_cannot_issue_api_keys() {
    let (_dir, svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, key) = issue_key(&svc, access(&admin), json!({"name": "everything"})).await;
    svc.post_as(
        &key,
        "/v1/tenants/acme/api-keys",
        json!({"name": "child", "owner": admin["user"]}),
    )
    .await
    .assert_problem(403, "session_required");
    // Without an owner the key's own owner is meant; the answer must be the same refusal.
    svc.post_as(&key, "/v1/tenants/acme/api-keys", json!({"name": "child"}))
        .await
        .assert_problem(403, "session_required");
    let keys = svc.get("/v1/tenants/acme/api-keys").await;
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1, "{keys:?}");
}

#[tokio::test]
async fn the_identity_endpoints_are_in_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let openapi = svc.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    for (path, method) in [
        ("/v1/auth/sign-in", "post"),
        ("/v1/auth/sign-in/second-factor", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/switch-tenant", "post"),
        ("/v1/auth/sign-out", "post"),
        ("/v1/auth/me", "get"),
        ("/v1/auth/sessions", "get"),
        ("/v1/auth/sessions/{id}", "delete"),
        ("/v1/auth/password", "post"),
        ("/v1/auth/password/reset-request", "post"),
        ("/v1/auth/password/reset", "post"),
        ("/v1/auth/totp/setup", "post"),
        ("/v1/auth/totp/confirm", "post"),
        ("/v1/auth/totp/disable", "post"),
        ("/v1/users/{user}/sessions", "get"),
        ("/v1/users/{user}/sessions/revoke", "post"),
        ("/v1/users/{user}/unlock", "post"),
        ("/v1/tenants/{tenant}/invitations", "post"),
        ("/v1/tenants/{tenant}/invitations", "get"),
        ("/v1/tenants/{tenant}/invitations/{id}", "delete"),
        ("/v1/tenants/{tenant}/invitations/{id}/resend", "post"),
        ("/v1/invitations/accept", "post"),
        ("/v1/tenants/{tenant}/api-keys", "post"),
        ("/v1/tenants/{tenant}/api-keys", "get"),
        ("/v1/tenants/{tenant}/api-keys/{id}", "delete"),
        ("/.well-known/jwks.json", "get"),
    ] {
        let operation = &openapi.body["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
        if path.starts_with("/v1/") {
            // A Problem whose `code` is one of those listed (see tests/contract.rs).
            let schema =
                &operation["responses"]["500"]["content"]["application/problem+json"]["schema"];
            assert_eq!(
                schema["allOf"][0]["$ref"], "#/components/schemas/Problem",
                "{method} {path}"
            );
            assert_eq!(
                schema["allOf"][1]["properties"]["code"]["enum"],
                json!(["internal"]),
                "{method} {path}"
            );
        }
    }
    let schemas = &openapi.body["components"]["schemas"];
    for schema in [
        "SignInBody",
        "SignInAnswer",
        "TokensBody",
        "MeBody",
        "SessionList",
        "InviteBody",
        "InvitationBody",
        "AcceptBody",
        "IssueApiKeyBody",
        "IssuedApiKeyBody",
        "ApiKeyList",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} is missing");
    }
    let description = openapi.body["components"]["securitySchemes"]["bearer"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("access token") && description.contains("API key"),
        "{description}"
    );
    // Nothing secret-bearing is described on a listing.
    for listed in ["InvitationBody", "ApiKeyBody", "SessionBody"] {
        let properties = schemas[listed]["properties"].as_object().unwrap();
        for field in ["token", "secret", "key", "refresh", "password"] {
            assert!(!properties.contains_key(field), "{listed}.{field}");
        }
    }
}

/// `ADMIN_TOKEN` is the operator: a system actor, not a user, so user-only endpoints refuse it.
#[tokio::test]
async fn the_operator_token_is_nobody_for_the_endpoints_of_a_signed_in_user() {
    let (_dir, svc) = bootstrapped().await;
    svc.get("/v1/auth/me")
        .await
        .assert_problem(403, "session_required");
    svc.post("/v1/auth/sign-out", json!({}))
        .await
        .assert_problem(403, "session_required");
    // An operator token in the body of a sign-in is not a password.
    svc.post_anonymous(
        "/v1/auth/sign-in",
        json!({"email": ADMIN_EMAIL, "password": ADMIN_TOKEN}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    // Unknown fields are refused.
    svc.post_anonymous(
        "/v1/auth/sign-in",
        json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember_me": true}),
    )
    .await
    .assert_problem(422, "invalid_body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn magic_links_emailed_codes_self_registration_and_profiles_over_http() {
    let (_dir, svc) = bootstrapped().await;

    // A magic link: 202 for any address, mail only for the known one, single use.
    let unknown = svc
        .post_anonymous(
            "/v1/auth/magic-link",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    let known = svc
        .post_anonymous("/v1/auth/magic-link", json!({"email": ADMIN_EMAIL}))
        .await;
    assert_eq!((unknown.status, known.status), (202, 202));
    assert_eq!(unknown.body, known.body);
    let mail = nth_mail(&svc, ADMIN_EMAIL, "sign-in link", 1).await;
    let body =
        json!({"user": link_param(&mail.text, "user"), "token": token_in(&mail.text, "idm_")});
    let tokens = svc
        .post_anonymous("/v1/auth/magic-link/sign-in", body.clone())
        .await;
    assert_tokens(&tokens);
    svc.post_anonymous("/v1/auth/magic-link/sign-in", body)
        .await
        .assert_problem(400, "invalid_or_expired_link");

    // An emailed code: a wrong one is 401, the right one signs in once.
    svc.post_anonymous("/v1/auth/email-code", json!({"email": ADMIN_EMAIL}))
        .await;
    let mail = nth_mail(&svc, ADMIN_EMAIL, "code", 1).await;
    let code: String = mail
        .text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    svc.post_anonymous(
        "/v1/auth/email-code/sign-in",
        json!({"email": ADMIN_EMAIL, "code": wrong}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
    let signed_in = svc
        .post_anonymous(
            "/v1/auth/email-code/sign-in",
            json!({"email": ADMIN_EMAIL, "code": code}),
        )
        .await;
    assert_tokens(&signed_in);

    // Self-registration: off by default (the tenant then answers as if it did not exist), then
    // on with verification.
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_token = access(&admin).to_owned();
    let registration = json!({"email": "reg@example.com", "password": "a good long pass phrase"});
    svc.post_anonymous("/v1/tenants/acme/register", registration.clone())
        .await
        .assert_problem(404, "tenant_not_found");
    let settings = svc.get_as(&admin_token, "/v1/tenants/acme/settings").await;
    let mut settings = settings.body.clone();
    settings["self_registration"] = json!(true);
    let changed = svc
        .send(
            svc.request_as(&admin_token, Method::PUT, "/v1/tenants/acme/settings")
                .json(&settings),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let first = svc
        .post_anonymous("/v1/tenants/acme/register", registration.clone())
        .await;
    let taken = svc
        .post_anonymous(
            "/v1/tenants/acme/register",
            json!({"email": ADMIN_EMAIL, "password": "a good long pass phrase"}),
        )
        .await;
    assert_eq!((first.status, taken.status), (202, 202));
    assert_eq!(first.body, taken.body);
    svc.send(sign_in_request(
        &svc,
        "reg@example.com",
        "a good long pass phrase",
    ))
    .await
    .assert_problem(403, "email_not_verified");
    let mail = nth_mail(&svc, "reg@example.com", "Verify", 1).await;
    let verified = svc
        .post_anonymous(
            "/v1/auth/verify-email",
            json!({"user": link_param(&mail.text, "user"), "token": token_in(&mail.text, "ide_")}),
        )
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let reg = svc
        .sign_in("reg@example.com", "a good long pass phrase")
        .await;
    let reg_user = reg["user"].as_str().unwrap().to_owned();

    // Profiles: one's own, not someone else's.
    let profile = json!({
        "first_name": "Reggie",
        "last_name": "Stered",
        "image_url": "https://example.com/reg.png",
        "notifications": {"security_alerts": true}
    });
    let changed = svc
        .send(
            svc.request_as(
                access(&reg),
                Method::PUT,
                &format!("/v1/users/{reg_user}/profile"),
            )
            .json(&profile),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let me = svc
        .get_as(
            access(&reg),
            &format!("/v1/auth/me?min_position={}", changed.position()),
        )
        .await;
    assert_eq!(me.body["user"]["first_name"], "Reggie", "{me:?}");
    let admin_id = admin["user"].as_str().unwrap();
    svc.send(
        svc.request_as(
            access(&reg),
            Method::PUT,
            &format!("/v1/users/{admin_id}/profile"),
        )
        .json(&profile),
    )
    .await
    .assert_problem(403, "forbidden");
    svc.send(
        svc.request_as(
            access(&reg),
            Method::PUT,
            &format!("/v1/users/{reg_user}/profile"),
        )
        .json(&json!({"first_name": "x", "last_name": "y", "image_url": "javascript:alert(1)"})),
    )
    .await
    .assert_problem(422, "invalid_image_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_email_change_over_http_waits_for_the_new_address() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let bearer = access(&tokens).to_owned();
    let asked = svc
        .post_as(
            &bearer,
            "/v1/auth/email",
            json!({"new_email": "ada@new.example", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(asked.status, 200, "{asked:?}");
    let notice = nth_mail(&svc, ADMIN_EMAIL, "", 1).await;
    let link = nth_mail(&svc, "ada@new.example", "Verify", 1).await;
    assert!(notice.text.contains("ada@new.example"), "{}", notice.text);
    // Until confirmed, the old address signs in.
    svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let confirmed = svc
        .post_anonymous(
            "/v1/auth/email/confirm",
            json!({"user": link_param(&link.text, "user"), "token": token_in(&link.text, "ide_")}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    svc.sign_in("ada@new.example", ADMIN_PASSWORD).await;
    svc.send(sign_in_request(&svc, ADMIN_EMAIL, ADMIN_PASSWORD))
        .await
        .assert_problem(401, "invalid_credentials");
    svc.post_anonymous(
        "/v1/auth/email/confirm",
        json!({"user": link_param(&link.text, "user"), "token": token_in(&link.text, "ide_")}),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_that_requires_two_factors_makes_members_set_totp_up_first() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let bearer = access(&tokens).to_owned();
    let settings = svc.get_as(&bearer, "/v1/tenants/acme/settings").await;
    let mut settings = settings.body.clone();
    settings["mfa_required"] = json!(true);
    let changed = svc
        .send(
            svc.request_as(&bearer, Method::PUT, "/v1/tenants/acme/settings")
                .json(&settings),
        )
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let listing = format!(
        "/v1/tenants/acme/invitations?min_position={}",
        changed.position()
    );
    svc.get_as(&bearer, &listing)
        .await
        .assert_problem(403, "second_factor_enrollment_required");
    assert_eq!(svc.get_as(&bearer, "/v1/auth/me").await.status, 200);

    let setup = svc.post_as(&bearer, "/v1/auth/totp/setup", json!({})).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    let secret = TotpSecret::from_base32(setup.body["secret"].as_str().unwrap()).unwrap();
    let confirmed = svc
        .post_as(
            &bearer,
            "/v1/auth/totp/confirm",
            json!({"code": secret.code_at(OffsetDateTime::now_utc())}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    let listing = format!(
        "/v1/tenants/acme/invitations?min_position={}",
        confirmed.position()
    );
    assert_eq!(svc.get_as(&bearer, &listing).await.status, 200);
    svc.post_as(
        &bearer,
        "/v1/auth/totp/disable",
        json!({"password": ADMIN_PASSWORD}),
    )
    .await
    .assert_problem(403, "second_factor_required_by_tenant");
    let again = svc
        .send(sign_in_request(&svc, ADMIN_EMAIL, ADMIN_PASSWORD))
        .await;
    assert_eq!(again.body["second_factor_required"], true, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entity_permissions_default_to_the_callers_tenant() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let bearer = access(&tokens).to_owned();
    let registered = svc
        .post_as(
            &bearer,
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title"], "rls": true}),
        )
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    let answer = svc
        .get_as(
            &bearer,
            &format!(
                "/v1/permissions/entity/project?min_position={}",
                registered.position()
            ),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"read": true, "create": true, "update": true, "delete": true})
    );
    svc.get_as(ADMIN_TOKEN, "/v1/permissions/entity/project")
        .await
        .assert_problem(400, "invalid_query");
}

// ----- accounts that are not active -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspending_or_deactivating_a_user_stops_their_sessions_refresh_tokens_and_keys_at_once() {
    const EMAIL: &str = "paused@example.com";
    const PASSWORD: &str = "Paused-Member-Pass-1";
    let (_dir, mut svc) = bootstrapped().await;
    let (_, user, token) = invite(&svc, EMAIL).await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_tokens(&accepted);
    for (stop, resume) in [("suspend", "reinstate"), ("deactivate", "reactivate")] {
        let tokens = svc.sign_in(EMAIL, PASSWORD).await;
        let (_, key) = issue_key(
            &svc,
            access(&tokens),
            json!({"name": format!("before {stop}")}),
        )
        .await;
        assert!(!refused(&svc, access(&tokens)).await, "{stop}");
        assert!(!refused(&svc, &key).await, "{stop}");

        let stopped = svc
            .post(&format!("/v1/users/{user}/{stop}"), json!({}))
            .await;
        assert_eq!(stopped.status, 200, "{stopped:?}");
        // The very next requests: the access token, the API key and the refresh token are dead.
        assert_refused(&svc, access(&tokens)).await;
        assert_refused(&svc, &key).await;
        svc.post_anonymous(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&tokens)}),
        )
        .await
        .assert_problem(401, "invalid_token");
        // The right password does not sign in; a wrong one gets the usual answer.
        svc.send(sign_in_request(&svc, EMAIL, PASSWORD))
            .await
            .assert_problem(403, "account_disabled");
        svc.send(sign_in_request(&svc, EMAIL, "Not-The-Password-1"))
            .await
            .assert_problem(401, "invalid_credentials");

        let resumed = svc
            .post(&format!("/v1/users/{user}/{resume}"), json!(null))
            .await;
        assert_eq!(resumed.status, 200, "{resumed:?}");
        let again = svc
            .send(
                sign_in_request(&svc, EMAIL, PASSWORD)
                    .header("x-idstream-min-position", resumed.position()),
            )
            .await;
        assert_tokens(&again);
    }
    // The refused refreshes rotated nothing (a rotation handed to nobody would have spent the
    // token, and presenting it again would have revoked the session).
    svc.stop().await;
    let refreshes = svc
        .events()
        .await
        .into_iter()
        .filter(|e| e.envelope.event_type == "SessionRefreshed")
        .count();
    assert_eq!(refreshes, 0, "a refused refresh rotated its token");
}

// ----- garbage and budgets at every credential endpoint -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_credential_endpoint_refuses_garbage_changes_nothing_and_limits_each_source() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin = tokens["user"].as_str().unwrap().to_owned();
    let stranger = ulid::Ulid::new().to_string();
    let refresh = refresh_token(&tokens).to_owned();
    let password = "Some-Long-Pass-Phrase-1";
    // (path, body, status, code): malformed, made-up and mistyped tokens (a live refresh token
    // presented where another kind is expected), an unknown user, an empty string.
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/auth/refresh",
            json!({"refresh_token": "idr_garbage"}),
            401,
            "invalid_token",
        ),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": ""}),
            401,
            "invalid_token",
        ),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": refresh.replace("idr_", "idi_")}),
            401,
            "invalid_token",
        ),
        (
            "/v1/invitations/accept",
            json!({"token": refresh, "password": password}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/password/reset",
            json!({"user": admin, "token": "idp_garbage", "password": password}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/password/reset",
            json!({"user": stranger, "token": refresh, "password": password}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/magic-link/sign-in",
            json!({"user": admin, "token": "idm_garbage"}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/magic-link/sign-in",
            json!({"user": stranger, "token": refresh}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/verify-email",
            json!({"user": admin, "token": "ide_garbage"}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/email/confirm",
            json!({"user": admin, "token": refresh}),
            400,
            "invalid_or_expired_link",
        ),
        (
            "/v1/auth/email-code/sign-in",
            json!({"email": "nobody@example.com", "code": "123456"}),
            401,
            "invalid_credentials",
        ),
        (
            "/v1/auth/sign-in/second-factor",
            json!({"challenge": "v1.garbage", "code": "123456"}),
            401,
            "invalid_token",
        ),
        (
            "/v1/auth/sign-in/second-factor",
            json!({"challenge": refresh, "recovery_code": "abcde-fghjk"}),
            401,
            "invalid_token",
        ),
    ];
    let before = svc.log_position().await;
    for (path, body, status, code) in &cases {
        let answer = svc.post_anonymous(path, body.clone()).await;
        assert_eq!(answer.status, *status, "{path} {body}: {answer:?}");
        answer.assert_problem(*status, code);
        assert!(
            !answer.body.to_string().contains(&refresh),
            "{path} echoed a token"
        );
    }
    // Bearer credentials of the wrong kind or shape.
    for bearer in [
        refresh.as_str(),
        "ids_garbage",
        "ids_01ARZ3NDEKTSV4RRFFQ69G5FAV_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "eyJhbGciOiJFZERTQSJ9.e30.",
        "not a token at all",
    ] {
        assert_refused(&svc, bearer).await;
    }
    assert_eq!(
        svc.log_position().await,
        before,
        "a refused credential appended"
    );
    // The refresh token presented where it did not belong is still the session's.
    let refreshed = svc
        .post_anonymous("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await;
    assert_tokens(&refreshed);

    // Each credential endpoint has a budget per source address: a burst, then 429.
    let endpoints: Vec<(&str, Value)> = vec![
        (
            "/v1/auth/sign-in",
            json!({"email": "nobody@example.com", "password": password}),
        ),
        (
            "/v1/auth/sign-in/second-factor",
            json!({"challenge": "v1.garbage", "code": "123456"}),
        ),
        ("/v1/auth/refresh", json!({"refresh_token": "idr_garbage"})),
        (
            "/v1/invitations/accept",
            json!({"token": "idi_garbage", "password": password}),
        ),
        (
            "/v1/auth/password/reset-request",
            json!({"email": "nobody@example.com"}),
        ),
        (
            "/v1/auth/password/reset",
            json!({"user": stranger, "token": "idp_garbage", "password": password}),
        ),
        (
            "/v1/auth/magic-link",
            json!({"email": "nobody@example.com"}),
        ),
        (
            "/v1/auth/magic-link/sign-in",
            json!({"user": stranger, "token": "idm_garbage"}),
        ),
        (
            "/v1/auth/email-code",
            json!({"email": "nobody@example.com"}),
        ),
        (
            "/v1/auth/email-code/sign-in",
            json!({"email": "nobody@example.com", "code": "123456"}),
        ),
        (
            "/v1/tenants/acme/register",
            json!({"email": "nobody@example.com", "password": password}),
        ),
        (
            "/v1/auth/verify-email",
            json!({"user": stranger, "token": "ide_garbage"}),
        ),
    ];
    for (n, (path, body)) in endpoints.iter().enumerate() {
        let from = Service::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 3, n as u8 + 1)));
        // One burst at once, well over the budget's burst (half the default 60 a minute): sent
        // one after another, slow requests on a loaded machine could let the budget refill (one
        // a second) as fast as it is spent.
        let burst = (0..60).map(|_| svc.send(from.post(svc.url(path)).json(body)));
        let answers = futures::future::join_all(burst).await;
        for answer in answers.iter().filter(|a| a.status != 429) {
            assert!(
                (400..500).contains(&answer.status) || answer.status == 202,
                "{path}: {answer:?}"
            );
        }
        let limited = answers
            .into_iter()
            .find(|a| a.status == 429)
            .unwrap_or_else(|| panic!("{path} has no budget per source"));
        limited.assert_problem(429, "rate_limited");
        assert!(limited.header("retry-after").is_some(), "{path}");
    }
}

// ----- email addresses are one address however they are typed -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_address_typed_in_another_case_or_unicode_form_is_the_same_account() {
    // "josé" with the precomposed é (U+00E9), and with e + a combining acute accent (U+0301).
    const COMPOSED: &str = "jos\u{e9}@example.com";
    const DECOMPOSED: &str = "  JOSE\u{301}@Example.COM ";
    const PASSWORD: &str = "Unicode-Normal-Form-C-1";
    let (_dir, svc) = bootstrapped().await;
    let (invitation, user, token) = invite(&svc, COMPOSED).await;
    // The other form is the same address: no second invitation, no second user.
    svc.post(
        "/v1/tenants/acme/invitations",
        json!({"email": DECOMPOSED, "roles": ["user"]}),
    )
    .await
    .assert_problem(409, "invitation_pending");
    svc.post(
        "/v1/tenants/acme/users",
        json!({"email": DECOMPOSED, "first_name": "J"}),
    )
    .await
    .assert_problem(409, "email_taken");
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_tokens(&accepted);
    assert_eq!(accepted.body["user"], user.as_str());
    // Signing in with either form is signing in to that account.
    let signed_in = svc.sign_in(DECOMPOSED, PASSWORD).await;
    assert_eq!(signed_in["user"], user.as_str());
    let me = svc.get_as(access(&signed_in), "/v1/auth/me").await;
    assert_eq!(me.body["user"]["email"], COMPOSED, "{me:?}");
    // A reset asked for with the other form reaches the account's address.
    let asked = svc
        .post_anonymous(
            "/v1/auth/password/reset-request",
            json!({"email": DECOMPOSED}),
        )
        .await;
    assert_eq!(asked.status, 202, "{asked:?}");
    let mail = nth_mail(&svc, COMPOSED, "Reset your password", 1).await;
    assert_eq!(link_param(&mail.text, "user"), user);
    let listed = svc.get("/v1/tenants/acme/invitations").await;
    let count = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["user"] == user.as_str())
        .count();
    assert_eq!(count, 1, "{listed:?}");
    let _ = invitation;
}

// ----- invitations delivered through the inviter's own channels -----

#[tokio::test]
async fn an_invitation_by_link_answers_its_link_once_and_sends_no_mail() {
    let (_dir, mut svc) = bootstrapped().await;
    let email = "linked@example.com";
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": email, "roles": ["user"], "delivery": "link"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    assert_eq!(invited.body["email_sent"], false);
    assert_eq!(invited.header("cache-control"), Some("no-store"));
    let link = invited.body["link"].as_str().unwrap().to_owned();
    assert!(link.contains("/accept-invitation?token=idi_"), "{link}");
    let id = invited.body["id"].as_str().unwrap().to_owned();
    // Listed as a link invitation; no mail went to the address.
    let listed = svc
        .get_at("/v1/tenants/acme/invitations", invited.position())
        .await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(item["delivery"], "link", "{listed:?}");
    assert!(item.get("link").is_none() && !listed.body.to_string().contains("idi_"));

    // A resend answers a new link; the old one is dead.
    let resent = svc
        .post(
            &format!("/v1/tenants/acme/invitations/{id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(resent.status, 200, "{resent:?}");
    let new_link = resent.body["link"].as_str().unwrap().to_owned();
    assert_ne!(new_link, link);
    assert!(svc.mail().iter().all(|m| m.to != email), "a mail was sent");
    let old = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token_in(&link, "idi_"), "password": INVITEE_PASSWORD}),
        )
        .await;
    old.assert_problem(400, "invalid_or_expired_link");
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token_in(&new_link, "idi_"), "password": INVITEE_PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    // The link is single use.
    svc.post_anonymous(
        "/v1/invitations/accept",
        json!({"token": token_in(&new_link, "idi_"), "password": INVITEE_PASSWORD}),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
    // An unknown delivery is refused and changes nothing.
    let before = svc.log_position().await;
    svc.post(
        "/v1/tenants/acme/invitations",
        json!({"email": "pigeon@example.com", "delivery": "pigeon"}),
    )
    .await
    .assert_problem(422, "invalid_body");
    assert_eq!(svc.log_position().await, before);

    // The event records the delivery; no token or link is in the log.
    svc.stop().await;
    let events = svc.events().await;
    let sent = events
        .iter()
        .find(|e| e.envelope.event_type == "InvitationSent")
        .unwrap();
    assert_eq!(sent.envelope.version, 2);
    assert_eq!(sent.envelope.data["delivery"], "link");
    for event in &events {
        let text = serde_json::to_string(&event.envelope).unwrap();
        assert!(!text.contains("idi_"), "a token in the log: {text}");
    }
}

#[tokio::test]
async fn a_verification_link_can_be_asked_for_again_and_the_directory_shows_the_result() {
    let (_dir, svc) = bootstrapped().await;
    let (user, _) = svc
        .create_user(TENANT, "unverified@example.com", &["user"])
        .await;
    // The same answer for an unverified, an unknown and a verified address; mail only for the
    // first.
    for email in ["unverified@example.com", "nobody@example.com", ADMIN_EMAIL] {
        let asked = svc
            .post_anonymous("/v1/auth/verify-email/resend", json!({"email": email}))
            .await;
        assert_eq!(asked.status, 202, "{asked:?}");
        assert_eq!(asked.body, json!({}));
    }
    let mail = nth_mail(&svc, "unverified@example.com", "", 1).await;
    let token = link_param(&mail.text, "token");
    assert!(token.starts_with("ide_"), "{}", mail.text);
    assert_eq!(link_param(&mail.text, "user"), user);
    // Asked again: a new link, and the first one dies.
    svc.post_anonymous(
        "/v1/auth/verify-email/resend",
        json!({"email": "Unverified@Example.com"}),
    )
    .await;
    let second = nth_mail(&svc, "unverified@example.com", "", 2).await;
    let newer = link_param(&second.text, "token");
    assert_ne!(newer, token);
    svc.post_anonymous(
        "/v1/auth/verify-email",
        json!({"user": user, "token": token}),
    )
    .await
    .assert_problem(400, "invalid_or_expired_link");
    let verified = svc
        .post_anonymous(
            "/v1/auth/verify-email",
            json!({"user": user, "token": newer}),
        )
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let listed = svc
        .get_at(
            "/v1/tenants/acme/users?q=unverified&verified=true",
            verified.position(),
        )
        .await;
    assert_eq!(listed.body["items"][0]["id"], user.as_str(), "{listed:?}");
    assert_eq!(listed.body["items"][0]["email_verified"], true);
    // Verified: asking again sends nothing.
    svc.post_anonymous(
        "/v1/auth/verify-email/resend",
        json!({"email": "unverified@example.com"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = svc
        .mail()
        .iter()
        .filter(|m| m.to == "unverified@example.com")
        .count();
    assert_eq!(sent, 2);
    assert!(svc.mail().iter().all(|m| m.to != "nobody@example.com"));
}

// ----- demo data -----

#[tokio::test]
async fn bootstrap_with_demo_data_gives_accounts_that_sign_in_and_records_they_reach() {
    let dir = tempfile::tempdir().unwrap();
    let printed = Service::bootstrap_with(
        dir.path(),
        None,
        TENANT,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
        &["--demo"],
    )
    .await;
    assert!(!printed.contains(ADMIN_PASSWORD), "{printed}");
    let svc = Service::embedded(dir.path()).await;
    wait_ready(&svc).await;
    // Each printed account signs in with its printed password.
    let mut tokens = std::collections::BTreeMap::new();
    for (name, person) in [
        ("admin", "alan.turing"),
        ("editor", "grace.hopper"),
        ("user", "edsger.dijkstra"),
    ] {
        let email = format!("{person}@example.com");
        let line = printed
            .lines()
            .find(|l| l.trim_start().starts_with(&email))
            .unwrap_or_else(|| panic!("{email} is not printed: {printed}"));
        let password = line.split_whitespace().nth(1).unwrap();
        let signed_in = svc.sign_in(&email, password).await;
        tokens.insert(name, signed_in["access_token"].as_str().unwrap().to_owned());
    }
    let check = |token: &str, record: &str| {
        let token = token.to_owned();
        let record = record.to_owned();
        let svc = &svc;
        async move {
            let answer = svc
                .post_as(
                    &token,
                    "/v1/tenants/acme/access/check",
                    json!({"permission": "entity.project:read", "record": record}),
                )
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.body["allowed"].as_bool().unwrap()
        }
    };
    // The editor: gemini (owner) and mercury (local role); the user: apollo (grant) and mercury
    // (owner); neither reaches the other's private record.
    assert!(check(&tokens["editor"], "gemini").await);
    assert!(check(&tokens["editor"], "mercury").await);
    assert!(!check(&tokens["editor"], "apollo").await);
    assert!(check(&tokens["user"], "apollo").await);
    assert!(check(&tokens["user"], "mercury").await);
    assert!(!check(&tokens["user"], "gemini").await);
    // The administrator lists everyone.
    let listed = svc
        .get_as(&tokens["admin"], "/v1/tenants/acme/users?sort=email")
        .await;
    let emails: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec![
            ADMIN_EMAIL,
            "alan.turing@example.com",
            "edsger.dijkstra@example.com",
            "grace.hopper@example.com",
        ],
        "{listed:?}"
    );
}

/// The length of a listed session's absolute lifetime, from its `started_at` and `expires_at`.
fn listed_lifetime(session: &Value) -> time::Duration {
    let at = |field: &str| {
        OffsetDateTime::parse(
            session[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    at("expires_at") - at("started_at")
}

/// Remember me over HTTP. That a remembered session is refreshed past the ordinary lifetime
/// needs the clock to move; the app's tests do that with a scripted clock
/// (`a_remembered_session_is_refreshed_past_the_ordinary_lifetime_until_its_remembered_days`).
#[tokio::test]
async fn a_remembered_sign_in_lives_up_to_the_tenants_remember_days_and_says_so() {
    let (_dir, svc) = bootstrapped().await;
    let settings = svc.get("/v1/tenants/acme/settings").await;
    assert_eq!(settings.body["remember_days"], 30, "{settings:?}");

    let remembered = svc
        .send(
            svc.anonymous(Method::POST, "/v1/auth/sign-in")
                .json(&json!({
                    "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember": true,
                })),
        )
        .await;
    assert_tokens(&remembered);
    assert_eq!(remembered.body["remembered"], true, "{remembered:?}");
    let ordinary = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(ordinary["remembered"], false, "{ordinary:?}");

    // The session list says which is which, and their ends: thirty days, and ten hours.
    let listed = get_as_at(
        &svc,
        access(&ordinary),
        "/v1/auth/sessions",
        ordinary["position"].as_u64().unwrap(),
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let session = |id: &Value| {
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == *id)
            .unwrap_or_else(|| panic!("{id} not in {listed:?}"))
            .clone()
    };
    let long = session(&remembered.body["session"]);
    assert_eq!(long["remembered"], true, "{long:?}");
    assert_eq!(listed_lifetime(&long), time::Duration::days(30));
    let short = session(&ordinary["session"]);
    assert_eq!(short["remembered"], false, "{short:?}");
    assert_eq!(listed_lifetime(&short), time::Duration::hours(10));

    // A refresh keeps the session remembered.
    let refreshed = svc
        .send(
            svc.anonymous(Method::POST, "/v1/auth/refresh")
                .json(&json!({"refresh_token": refresh_token(&remembered.body)})),
        )
        .await;
    assert_tokens(&refreshed);
    assert_eq!(refreshed.body["remembered"], true, "{refreshed:?}");

    // The setting is bounded; absent from a PUT, it is the default.
    let mut body = settings.body.clone();
    body["remember_days"] = 366.into();
    svc.put("/v1/tenants/acme/settings", body.clone())
        .await
        .assert_problem(422, "invalid_settings");
    body.as_object_mut().unwrap().remove("remember_days");
    body["session_idle_minutes"] = 45.into();
    let changed = svc.put("/v1/tenants/acme/settings", body.clone()).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let read = svc
        .get_at("/v1/tenants/acme/settings", changed.position())
        .await;
    assert_eq!(
        (
            &read.body["remember_days"],
            &read.body["session_idle_minutes"]
        ),
        (&json!(30), &json!(45)),
        "{read:?}"
    );

    // 0 turns remembering off: `remember` is ignored, and the answer says so.
    body["remember_days"] = 0.into();
    let off = svc.put("/v1/tenants/acme/settings", body).await;
    assert_eq!(off.status, 200, "{off:?}");
    svc.get_at("/v1/tenants/acme/settings", off.position())
        .await;
    let ignored = svc
        .send(
            svc.anonymous(Method::POST, "/v1/auth/sign-in")
                .json(&json!({
                    "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember": true,
                })),
        )
        .await;
    assert_tokens(&ignored);
    assert_eq!(ignored.body["remembered"], false, "{ignored:?}");
    let listed = get_as_at(
        &svc,
        access(&ignored.body),
        "/v1/auth/sessions",
        ignored.position(),
    )
    .await;
    let item = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == ignored.body["session"])
        .unwrap()
        .clone();
    assert_eq!(
        listed_lifetime(&item),
        time::Duration::hours(10),
        "{item:?}"
    );

    // `remember` is a boolean.
    svc.send(
        svc.anonymous(Method::POST, "/v1/auth/sign-in")
            .json(&json!({
                "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "remember": "yes",
            })),
    )
    .await
    .assert_problem(422, "invalid_body");
}

/// `api_access` governs API keys: with it off, the user's keys stop working at once and no key
/// can be issued for them; their sessions are untouched. With it on again, the keys work again.
#[tokio::test]
async fn the_api_access_flag_governs_a_users_api_keys() {
    let (_dir, svc) = bootstrapped().await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let user = admin["user"].as_str().unwrap().to_owned();
    let (_, key) = issue_key(&svc, access(&admin), json!({"name": "automation"})).await;
    assert_eq!(svc.get_as(&key, "/v1/auth/me").await.status, 200);

    let flags = |api_access: bool| json!({"dashboard_access": true, "api_access": api_access, "platform_admin": true});
    let off = svc
        .put(&format!("/v1/users/{user}/flags"), flags(false))
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    svc.get_at(&format!("/v1/users/{user}"), off.position())
        .await;
    svc.get_as(&key, "/v1/auth/me")
        .await
        .assert_problem(401, "unauthorized");
    svc.post_as(
        access(&admin),
        "/v1/tenants/acme/api-keys",
        json!({"name": "another"}),
    )
    .await
    .assert_problem(403, "api_access_disabled");
    assert_eq!(svc.get_as(access(&admin), "/v1/auth/me").await.status, 200);

    let on = svc
        .put(&format!("/v1/users/{user}/flags"), flags(true))
        .await;
    assert_eq!(on.status, 200, "{on:?}");
    svc.get_at(&format!("/v1/users/{user}"), on.position())
        .await;
    assert_eq!(svc.get_as(&key, "/v1/auth/me").await.status, 200);
}

/// Verification everywhere (issue 15, item 2): where the tenant verifies created users, a user
/// an administrator creates waits for their verification link like a self-registered one, can
/// ask for it again, and becomes active (and verified) by following it; users created before the
/// setting, and invited ones, are as they were.
#[tokio::test]
async fn where_the_tenant_verifies_created_users_they_wait_for_their_link() {
    let (_dir, svc) = bootstrapped().await;
    let (before, _) = svc
        .create_user(TENANT, "earlier@example.com", &["user"])
        .await;
    let settings = svc.get("/v1/tenants/acme/settings").await;
    assert_eq!(settings.body["verify_created_users"], false);
    let mut body = settings.body.clone();
    body["verify_created_users"] = json!(true);
    let saved = svc.put("/v1/tenants/acme/settings", body).await;
    assert_eq!(saved.status, 200, "{saved:?}");

    let (user, created) = svc
        .create_user(TENANT, "Created@Example.com", &["user"])
        .await;
    let listed = svc
        .get_at("/v1/tenants/acme/users?q=created%40", created)
        .await;
    let shown = &listed.body["items"][0];
    assert_eq!(shown["id"], user.as_str(), "{listed:?}");
    assert_eq!(shown["status"], "invited", "{listed:?}");
    assert_eq!(shown["email_verified"], false);
    let mail = nth_mail(&svc, "created@example.com", "", 1).await;
    assert!(mail.text.contains("/verify-email?"), "{}", mail.text);
    // Until then nobody signs in as them: no magic link for someone not active.
    svc.post_anonymous(
        "/v1/auth/magic-link",
        json!({"email": "created@example.com"}),
    )
    .await;
    // Asked again: a new link.
    let asked = svc
        .post_anonymous(
            "/v1/auth/verify-email/resend",
            json!({"email": "created@example.com"}),
        )
        .await;
    assert_eq!(asked.status, 202);
    let second = nth_mail(&svc, "created@example.com", "", 2).await;
    assert!(second.text.contains("/verify-email?"), "{}", second.text);
    assert!(
        svc.mail().iter().all(|m| !m.text.contains("/magic-link?")),
        "no magic link for someone waiting for verification"
    );
    let token = link_param(&second.text, "token");
    let verified = svc
        .post_anonymous(
            "/v1/auth/verify-email",
            json!({"user": user, "token": token}),
        )
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    let listed = svc
        .get_at("/v1/tenants/acme/users?q=created%40", verified.position())
        .await;
    let shown = &listed.body["items"][0];
    assert_eq!(shown["status"], "active", "{listed:?}");
    assert_eq!(shown["email_verified"], true);
    // Now a magic link works.
    svc.post_anonymous(
        "/v1/auth/magic-link",
        json!({"email": "created@example.com"}),
    )
    .await;
    let magic = nth_mail(&svc, "created@example.com", "", 3).await;
    assert!(magic.text.contains("/magic-link?"), "{}", magic.text);

    // A user created before the setting stays active; one created as invited waits for an
    // invitation, and gets no verification link.
    let earlier = svc.get(&format!("/v1/users/{before}")).await;
    assert_eq!(earlier.body["status"], "active");
    let invited = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "later@example.com", "first_name": "L", "last_name": "L",
                   "roles": ["user"], "invite": true}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    svc.post_anonymous(
        "/v1/auth/verify-email/resend",
        json!({"email": "later@example.com"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(svc.mail().iter().all(|m| m.to != "later@example.com"));
}

/// A phone number (issue 15, item 3, first part): set by the user themselves or an
/// administrator, normalised to E.164, kept when a profile change leaves it out, shown in
/// `/v1/auth/me` and the directory.
#[tokio::test]
async fn a_phone_number_is_part_of_the_profile() {
    let (_dir, svc) = bootstrapped().await;
    let tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me = svc.get_as(access(&tokens), "/v1/auth/me").await;
    let id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/users/{id}/profile");
    let put = |body: Value| {
        let svc = &svc;
        let path = path.clone();
        let token = access(&tokens).to_owned();
        async move {
            svc.send(svc.request_as(&token, Method::PUT, &path).json(&body))
                .await
        }
    };
    let set =
        put(json!({"first_name": "Ada", "last_name": "King", "phone": "+1 (415) 555-0100"})).await;
    assert_eq!(set.status, 200, "{set:?}");
    let me = svc
        .send(
            svc.request_as(access(&tokens), Method::GET, "/v1/auth/me")
                .header("x-idstream-min-position", set.position()),
        )
        .await;
    assert_eq!(me.body["user"]["phone"], "+14155550100", "{me:?}");
    // Left out: kept.
    let names = put(json!({"first_name": "Ada", "last_name": "Lovelace"})).await;
    assert_eq!(names.status, 200);
    let row = svc
        .get_at("/v1/tenants/acme/users?q=ada%40", names.position())
        .await;
    assert_eq!(row.body["items"][0]["phone"], "+14155550100", "{row:?}");
    assert_eq!(row.body["items"][0]["last_name"], "Lovelace");
    // Refused plainly, changing nothing.
    let before = svc.log_position().await;
    put(json!({"first_name": "Ada", "last_name": "King", "phone": "555-0100"}))
        .await
        .assert_problem(422, "invalid_phone");
    assert_eq!(svc.log_position().await, before);
    // An administrator (the operator here) removes it with null.
    let cleared = svc
        .put(
            &path,
            json!({"first_name": "Ada", "last_name": "King", "phone": null}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{cleared:?}");
    let shown = svc
        .get_at(&format!("/v1/users/{id}"), cleared.position())
        .await;
    assert!(shown.body.get("phone").is_none(), "{shown:?}");
}
