//! idstream as an OpenID Connect provider, driven by a maintained relying-party library that
//! nobody on this project wrote (the `openidconnect` crate): discovery, the authorization code
//! flow with PKCE through the hosted pages in Chromium, ID tokens validated by the library,
//! userinfo, refresh rotation with reuse detection, consent remembered, single sign-on, client
//! credentials, introspection, revocation and RP-initiated logout; back-channel logout to an
//! application's own HTTP endpoint; and the refusals: wrong redirect URIs, missing or wrong PKCE
//! verifiers, reused codes (the second use revokes what the first issued), mixed-up clients and
//! expired codes.

use std::future::Future;
use std::pin::Pin;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RevocationUrl,
    Scope, TokenIntrospectionResponse, TokenResponse,
};
use serde_json::{Value, json};

use crate::support::browser::Driver;
use crate::support::service::Service;
use crate::support::world::{Account, eventually, join, text};

const PASSWORD: &str = "Oidc-Test-Passphrase-2026";

// ----- the library's HTTP, through reqwest -----

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

type Sent = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>>>>;

/// The HTTP client the library is given: its requests sent as they are, no redirect followed.
fn http() -> impl Fn(openidconnect::HttpRequest) -> Sent {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    move |request: openidconnect::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
                .map_err(|e| HttpError(e.to_string()))?;
            let mut builder = client.request(method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                builder = builder.header(name.as_str(), value.as_bytes());
            }
            let answer = builder
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            let mut response =
                openidconnect::http::Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                response = response.header(name.as_str(), value.as_bytes());
            }
            let body = answer.bytes().await.map_err(|e| HttpError(e.to_string()))?;
            response
                .body(body.to_vec())
                .map_err(|e| HttpError(e.to_string()))
        }) as Sent
    }
}

// ----- the world -----

/// A service whose public URL is where it listens (the issuer must be the address the
/// application reaches), with `acme` and its member.
pub(crate) async fn service(dir: &std::path::Path, code_ttl_seconds: u64) -> (Service, Account) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = dir.join("idstream.toml");
    std::fs::write(
        &config,
        format!("authorization_code_ttl_seconds = {code_ttl_seconds}\n"),
    )
    .unwrap();
    let data = dir.join("data");
    let svc = Service::embedded_with_env(
        &data,
        &[
            ("IDSTREAM_LISTEN", &format!("127.0.0.1:{port}")),
            ("IDSTREAM_PUBLIC_URL", &format!("http://127.0.0.1:{port}")),
            ("IDSTREAM_CONFIG", config.to_str().unwrap()),
        ],
    )
    .await;
    eventually("the service is ready", || async {
        svc.get("/readyz").await.status == 200
    })
    .await;
    svc.create_tenant("acme").await;
    let member = join(&svc, "grace@example.com", "acme", &["user"], PASSWORD).await;
    (svc, member)
}

/// Registers a client of acme; answers (client id, secret).
pub(crate) async fn register(svc: &Service, body: Value) -> (String, Option<String>) {
    let answer = svc.post("/v1/tenants/acme/clients", body).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(
        answer.headers.get("cache-control").unwrap(),
        "no-store",
        "the secret is not cached"
    );
    (
        text(&answer.body["id"]),
        answer.body["client_secret"].as_str().map(str::to_owned),
    )
}

fn issuer(svc: &Service) -> String {
    svc.url("/t/acme")
}

fn callback(svc: &Service) -> String {
    svc.url("/app/callback")
}

/// A confidential third-party client of acme with code, refresh and client credentials.
async fn shop(svc: &Service) -> (String, String) {
    let (id, secret) = register(
        svc,
        json!({
            "kind": "confidential",
            "name": "Shop",
            "redirect_uris": [callback(svc)],
            "post_logout_redirect_uris": [svc.url("/app/signed-out")],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scopes": ["openid", "email", "profile"],
        }),
    )
    .await;
    (id, secret.expect("a confidential client gets a secret"))
}

/// A query parameter of `url`.
fn param(url: &str, name: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What a browser signed in as `account` gets from the authorization endpoint at `url`: the
/// `Location` of its redirect (or the status and body when it is not one).
pub(crate) async fn authorize_as(
    svc: &Service,
    account: &Account,
    url: &str,
) -> Result<String, (u16, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client
        .get(url)
        .header(
            "cookie",
            format!(
                "ids_csrf=test-csrf; ids_access={}; ids_session={}",
                account.token, account.refresh
            ),
        )
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    match answer.headers().get("location") {
        Some(location) if status == 303 => {
            let location = location.to_str().unwrap();
            Ok(if location.starts_with('/') {
                svc.url(location)
            } else {
                location.to_owned()
            })
        }
        _ => Err((status, answer.text().await.unwrap_or_default())),
    }
}

/// A form POST to a protocol endpoint with HTTP Basic client authentication.
async fn post_form(
    svc: &Service,
    path: &str,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        pairs.append_pair(k, v);
    }
    let mut request = reqwest::Client::new()
        .post(svc.url(path))
        .header("content-type", "application/x-www-form-urlencoded");
    match client {
        (id, Some(secret)) => request = request.basic_auth(id, Some(secret)),
        (id, None) => {
            pairs.append_pair("client_id", id);
        }
    }
    let answer = request.body(pairs.finish()).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

// ----- the flows -----

#[tokio::test]
async fn an_application_signs_a_person_in_through_the_hosted_pages_with_a_maintained_oidc_library()
{
    let dir = tempfile::tempdir().unwrap();
    let (svc, member) = service(dir.path(), 60).await;
    let (client_id, secret) = shop(&svc).await;
    let http = http();

    // Discovery and the client, by the library.
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer(&svc)).unwrap(), &http)
            .await
            .expect("the library accepts the discovery document and the JWKS");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(callback(&svc)).unwrap())
    .set_revocation_url(RevocationUrl::new(svc.url("/t/acme/oidc/revoke")).unwrap())
    .set_introspection_url(IntrospectionUrl::new(svc.url("/t/acme/oidc/introspect")).unwrap());
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EdDsa]);

    // The person signs in on the hosted page, consents, and is sent back with a code.
    let (challenge, pkce) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_extra_param("login_hint", member.email.clone())
        .set_pkce_challenge(challenge)
        .url();
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "oidc").await;
    browser.goto(url.as_str()).await;
    browser.wait_for_url(|u| u.contains("/sign-in")).await;
    let shown_email = browser
        .client
        .find(fantoccini::Locator::Id("email"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        shown_email.as_deref(),
        Some(member.email.as_str()),
        "login_hint fills in the address"
    );
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/sign-in'] button[type=submit]")
        .await;
    browser.expect_text("Shop").await;
    browser.expect_text("Your email address").await;
    browser.check_accessibility().await;
    browser.click("button[value=allow]").await;
    let back = browser
        .wait_for_url(|u| u.starts_with(&callback(&svc)))
        .await;
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss"), Some(issuer(&svc)), "RFC 9207 iss");
    let code = param(&back, "code").expect("a code");

    // The exchange, and the ID token validated by the library (signature, issuer, audience,
    // expiry, nonce).
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .expect("the code is exchanged");
    let id_token = tokens.id_token().expect("an ID token for the openid scope");
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the library validates the ID token");
    assert_eq!(claims.subject().as_str(), member.id);
    assert_eq!(
        claims.email().map(|e| e.as_str().to_owned()),
        Some(member.email.clone())
    );
    assert!(claims.auth_time().is_some());
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect();
    assert_eq!(amr, ["pwd"]);
    assert_eq!(
        claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        Some("Ada".to_owned())
    );

    // Userinfo, by the library.
    let info: openidconnect::core::CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo answers");
    assert_eq!(
        info.email().map(|e| e.as_str().to_owned()),
        Some(member.email.clone())
    );
    // The application's access token is not a key to idstream's own API.
    let api = svc
        .get_as(tokens.access_token().secret(), "/v1/auth/me")
        .await;
    assert_eq!(api.status, 401, "{api:?}");

    // Refresh rotates; the rotated token presented again revokes the session.
    let first_refresh = tokens.refresh_token().unwrap().clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("a refresh");
    let second_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    refreshed
        .id_token()
        .expect("an ID token on refresh")
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("the refreshed ID token validates");
    assert!(
        client
            .exchange_refresh_token(&first_refresh)
            .unwrap()
            .request_async(&http)
            .await
            .is_err(),
        "a rotated refresh token is refused"
    );
    assert!(
        client
            .exchange_refresh_token(&second_refresh)
            .unwrap()
            .request_async(&http)
            .await
            .is_err(),
        "the reuse revoked the session: its live token is dead too"
    );

    // Single sign-on, consent remembered: straight back with a code.
    let (challenge, pkce) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    browser.goto(url.as_str()).await;
    let back = browser
        .wait_for_url(|u| u.starts_with(&callback(&svc)))
        .await;
    let code = param(&back, "code").expect("a code without signing in or consenting again");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(pkce)
        .request_async(&http)
        .await
        .unwrap();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&verifier, &nonce)
        .unwrap()
        .clone();

    // Introspection and revocation, by the library.
    let introspected = client
        .introspect(tokens.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(introspected.active());
    // (The library sends revocations over https only, as RFC 7009 asks, and this service
    // listens on plain http: the request is the one the library would send.)
    let refresh = tokens.refresh_token().unwrap().clone();
    let (status, body) = post_form(
        &svc,
        "/t/acme/oidc/revoke",
        (&client_id, Some(&secret)),
        &[
            ("token", refresh.secret()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let introspected = client
        .introspect(tokens.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!introspected.active(), "revoked with its session");

    // RP-initiated logout with the ID token as hint: back to the application, signed out.
    let mut logout = reqwest::Url::parse(&svc.url("/t/acme/oidc/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", &tokens.id_token().unwrap().to_string())
        .append_pair("post_logout_redirect_uri", &svc.url("/app/signed-out"))
        .append_pair("state", "bye");
    assert_eq!(claims.subject().as_str(), member.id);
    browser.goto(logout.as_str()).await;
    let after = browser
        .wait_for_url(|u| u.starts_with(&svc.url("/app/signed-out")))
        .await;
    assert_eq!(param(&after, "state").as_deref(), Some("bye"));
    browser.goto(&svc.url("/account")).await;
    browser.wait_for_url(|u| u.contains("/sign-in")).await;
    browser.close().await;
}

#[tokio::test]
async fn codes_are_single_use_bound_to_their_client_redirect_uri_and_verifier_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, member) = service(dir.path(), 2).await;
    let (shop_id, shop_secret) = shop(&svc).await;
    let (other_id, other_secret) = shop(&svc).await;
    // The member consented to both (a first-party client would not ask).
    for client in [&shop_id, &other_id] {
        let consent = svc
            .put(
                &format!("/v1/tenants/acme/clients/{client}"),
                json!({
                    "name": "Shop", "redirect_uris": [callback(&svc)],
                    "post_logout_redirect_uris": [svc.url("/app/signed-out")],
                    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                    "scopes": ["openid", "email", "profile"], "first_party": true,
                }),
            )
            .await;
        assert_eq!(consent.status, 200, "{consent:?}");
    }
    let verifier = PkceCodeVerifier::new("k".repeat(50));
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
    let authorize = |client: &str, redirect: &str, pkce: bool| {
        let mut url = reqwest::Url::parse(&svc.url("/t/acme/oidc/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", "openid email")
            .append_pair("state", "s1")
            .append_pair("nonce", "n1");
        if pkce {
            url.query_pairs_mut()
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", "S256");
        }
        url.to_string()
    };
    let code_of = |location: &str| param(location, "code").expect("a code");

    // A redirect URI the client did not register, or an unknown client: an error page, never a
    // redirect.
    for url in [
        authorize(&shop_id, "https://attacker.example/cb", true),
        authorize("01ARZ3NDEKTSV4RRFFQ69G5FAV", &callback(&svc), true),
        authorize(&shop_id, &format!("{}/", callback(&svc)), true),
    ] {
        let refused = authorize_as(&svc, &member, &url).await;
        assert!(
            matches!(&refused, Err((400, page)) if page.contains("not valid")),
            "{url}: {refused:?}"
        );
    }

    // A code presented by another client, with another redirect URI, without or with a wrong
    // verifier: refused, and the code still works for its own client.
    let code = code_of(
        &authorize_as(&svc, &member, &authorize(&shop_id, &callback(&svc), true))
            .await
            .unwrap(),
    );
    let token = "/t/acme/oidc/token";
    let good = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &callback(&svc)),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut form: Vec<(&'static str, String)> =
            good.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (k, v) in extra {
            form.retain(|(name, _)| name != k);
            form.push((k, v.to_string()));
        }
        form
    };
    let send = |client: (&str, Option<&str>), form: Vec<(&'static str, String)>| {
        let pairs = form;
        let svc = &svc;
        let client = (client.0.to_owned(), client.1.map(str::to_owned));
        async move {
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(svc, token, (&client.0, client.1.as_deref()), &borrowed).await
        }
    };
    let shop_auth = (shop_id.as_str(), Some(shop_secret.as_str()));
    let other_auth = (other_id.as_str(), Some(other_secret.as_str()));
    for (label, client, form) in [
        (
            "another client",
            other_auth,
            with(&[("code_verifier", verifier.secret())]),
        ),
        (
            "another redirect URI",
            shop_auth,
            with(&[
                ("code_verifier", verifier.secret()),
                ("redirect_uri", "https://shop.example/cb"),
            ]),
        ),
        ("no verifier", shop_auth, with(&[])),
        (
            "a wrong verifier",
            shop_auth,
            with(&[("code_verifier", &"x".repeat(50))]),
        ),
    ] {
        let (status, body) = send(client, form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{label}: {body}"
        );
        assert_eq!(
            body["code"], "invalid_grant",
            "{label}: a problem with its code too"
        );
    }
    let (status, body) = send(shop_auth, with(&[("code_verifier", verifier.secret())])).await;
    assert_eq!(status, 200, "{body}");
    let access = text(&body["access_token"]);
    let userinfo = reqwest::Client::new()
        .get(svc.url("/t/acme/oidc/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);

    // The same code again: refused, and what its first use issued is revoked.
    let (status, body) = send(shop_auth, with(&[("code_verifier", verifier.secret())])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let userinfo = reqwest::Client::new()
        .get(svc.url("/t/acme/oidc/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        userinfo.status(),
        401,
        "the first exchange's tokens are revoked"
    );

    // A code not exchanged within its lifetime (2 s here) is refused.
    let code = code_of(
        &authorize_as(&svc, &member, &authorize(&shop_id, &callback(&svc), true))
            .await
            .unwrap(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, body) = send(
        shop_auth,
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", callback(&svc)),
            ("code_verifier", verifier.secret().clone()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // A wrong secret is invalid_client (401), with the challenge of HTTP Basic.
    let (status, body) = send((shop_id.as_str(), Some("idcs_wrong")), with(&[])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn public_clients_must_use_pkce_and_errors_go_back_to_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, member) = service(dir.path(), 60).await;
    let (spa, secret) = register(
        &svc,
        json!({
            "kind": "public", "name": "Single-page app", "redirect_uris": [callback(&svc)],
            "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid"],
        }),
    )
    .await;
    assert_eq!(secret, None, "a public client has no secret");
    let scoped = |scope: &str, extra: &str| {
        format!(
            "{}?response_type=code&client_id={spa}&redirect_uri={}&scope={scope}&state=s{extra}",
            svc.url("/t/acme/oidc/authorize"),
            callback(&svc)
        )
    };
    let url = |extra: &str| scoped("openid", extra);
    // Without PKCE: back to the application with invalid_request.
    let back = authorize_as(&svc, &member, &url("")).await.unwrap();
    assert!(back.starts_with(&callback(&svc)), "{back}");
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&back, "state").as_deref(), Some("s"));
    // plain is not accepted.
    let back = authorize_as(
        &svc,
        &member,
        &url("&code_challenge=abcdefghijabcdefghijabcdefghijabcdefghij123&code_challenge_method=plain"),
    )
    .await
    .unwrap();
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    // A scope the client may not have.
    let back = authorize_as(&svc, &member, &scoped("openid+email", ""))
        .await
        .unwrap();
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("invalid_scope"),
        "{back}"
    );
    // Third party, not consented: prompt=none answers consent_required; nobody signed in,
    // login_required.
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new("v".repeat(43)));
    let with_pkce = url(&format!(
        "&code_challenge={}&code_challenge_method=S256&prompt=none",
        challenge.as_str()
    ));
    let back = authorize_as(&svc, &member, &with_pkce).await.unwrap();
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("consent_required"),
        "{back}"
    );
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&with_pkce)
        .send()
        .await
        .unwrap();
    let location = anonymous.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("login_required"),
        "{location}"
    );
    // Without prompt=none, nobody signed in is sent to the hosted sign-in page of acme.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(with_pkce.replace("&prompt=none", ""))
        .send()
        .await
        .unwrap();
    let location = anonymous.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/sign-in?tenant=acme&return_to=%2Ft%2Facme%2Foidc%2Fauthorize"),
        "{location}"
    );
    // A public client cannot authenticate with a secret, nor use client credentials.
    let (status, body) = post_form(
        &svc,
        "/t/acme/oidc/token",
        (&spa, None),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
}

#[tokio::test]
async fn client_credentials_introspection_and_the_clients_administration() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, member) = service(dir.path(), 60).await;
    let (id, secret) = shop(&svc).await;
    let http = http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer(&svc)).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(id.clone()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_introspection_url(IntrospectionUrl::new(svc.url("/t/acme/oidc/introspect")).unwrap());
    let tokens = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("email".into()))
        .request_async(&http)
        .await
        .expect("client credentials");
    assert!(tokens.refresh_token().is_none());
    let found = client
        .introspect(tokens.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(found.active());
    assert_eq!(found.sub(), Some(id.as_str()), "the client acts for itself");
    // An API key of the tenant is introspected too; another string is not active.
    let key = svc
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "ci", "owner": member.id}),
        )
        .await;
    assert_eq!(key.status, 201, "{key:?}");
    let key_token = AccessToken::new(text(&key.body["key"]));
    let found = client
        .introspect(&key_token)
        .request_async(&http)
        .await
        .unwrap();
    assert!(found.active());
    assert_eq!(found.sub(), Some(member.id.as_str()));
    let found = client
        .introspect(&AccessToken::new("made-up".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert!(!found.active());

    // The trail records the client's registration and its use.
    let trail = svc.get("/v1/audit/events?tenant=acme&limit=200").await;
    let types: Vec<String> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(&e["type"]))
        .collect();
    assert!(types.contains(&"ClientRegistered".to_owned()), "{types:?}");
    assert!(
        types.contains(&"ClientCredentialsUsed".to_owned()),
        "{types:?}"
    );

    // Rotating the secret kills the old one; removing the client kills its tokens.
    let rotated = svc
        .post(&format!("/v1/tenants/acme/clients/{id}/secret"), json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_secret = text(&rotated.body["client_secret"]);
    let (status, body) = post_form(
        &svc,
        "/t/acme/oidc/token",
        (&id, Some(&secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = post_form(
        &svc,
        "/t/acme/oidc/token",
        (&id, Some(&new_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listed = svc.get("/v1/tenants/acme/clients").await;
    assert_eq!(listed.status, 200);
    assert!(
        !listed.body.to_string().contains("idcs_"),
        "no secret in a listing: {listed:?}"
    );
    let removed = svc.delete(&format!("/v1/tenants/acme/clients/{id}")).await;
    assert_eq!(removed.status, 200, "{removed:?}");
    let (status, body) = post_form(
        &svc,
        "/t/acme/oidc/token",
        (&id, Some(&new_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // Bad input is refused with its code and changes nothing.
    let before = svc.log_position().await;
    for (body, code) in [
        (
            json!({"kind": "confidential", "name": "x", "redirect_uris": ["http://evil.example/cb"], "grant_types": ["authorization_code"], "scopes": ["openid"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"kind": "public", "name": "x", "grant_types": ["client_credentials"], "scopes": []}),
            "invalid_grant_types",
        ),
        (
            json!({"kind": "confidential", "name": "x", "redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code"], "scopes": ["admin"]}),
            "unknown_scope",
        ),
    ] {
        let refused = svc.post("/v1/tenants/acme/clients", body).await;
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (422, Some(code)),
            "{refused:?}"
        );
    }
    assert_eq!(svc.log_position().await, before);
    // The discovery document is the same for a tenant that was never created.
    let acme = svc.get("/t/acme/.well-known/openid-configuration").await;
    let nowhere = svc.get("/t/nowhere/.well-known/openid-configuration").await;
    assert_eq!(
        acme.body.to_string().replace("/t/acme", "/t/T"),
        nowhere.body.to_string().replace("/t/nowhere", "/t/T")
    );
}

// ----- back-channel logout -----

/// What the application's back-channel logout endpoint was sent: the answer it gave, the
/// request's content type and its `logout_token`.
#[derive(Debug, Clone)]
struct Received {
    answered: u16,
    content_type: String,
    token: String,
}

type Inbox = std::sync::Arc<std::sync::Mutex<Vec<Received>>>;

/// A back-channel logout endpoint of an application, a real HTTP server on a free port: it
/// answers its first `failures` requests with 503, the rest with 200, and keeps what it got.
async fn logout_endpoint(failures: usize) -> (String, Inbox) {
    let (_, opened) = tokio::sync::watch::channel(true);
    logout_endpoint_with(failures, opened).await
}

/// [`logout_endpoint`] holding every request unanswered while `opened` says false (recorded as
/// answered 0), as an application that hangs.
async fn logout_endpoint_with(
    failures: usize,
    opened: tokio::sync::watch::Receiver<bool>,
) -> (String, Inbox) {
    use axum::http::{HeaderMap, StatusCode};
    let inbox: Inbox = Default::default();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(failures));
    let kept = inbox.clone();
    let app = axum::Router::new().route(
        "/backchannel-logout",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let inbox = kept.clone();
            let failures = failures.clone();
            let mut opened = opened.clone();
            async move {
                let held = !*opened.borrow();
                let failing = failures
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |n| n.checked_sub(1),
                    )
                    .is_ok();
                let status = if failing {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                let token = form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                inbox.lock().unwrap().push(Received {
                    answered: if held { 0 } else { status.as_u16() },
                    content_type: headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    token,
                });
                if held {
                    let _ = opened.wait_for(|open| *open).await;
                }
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/backchannel-logout"), inbox)
}

fn received(inbox: &Inbox) -> Vec<Received> {
    inbox.lock().unwrap().clone()
}

/// The claims of a JWT without checking anything (for reading an ID token's `sid`).
fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The claims of a logout token for `client` after checking it as an application must (OpenID
/// Connect Back-Channel Logout 1.0 §2.6): the header type, an EdDSA signature by a key of the
/// issuer's JWKS, the issuer, the audience, the expiry, the event, and no nonce.
async fn checked_logout_token(svc: &Service, token: &str, client: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwks = svc.get("/t/acme/oidc/jwks").await;
    assert_eq!(jwks.status, 200, "{jwks:?}");
    let kid = header.kid.expect("a kid");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        jwks.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("the signing key is in the issuer's JWKS")
            .clone(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&[issuer(svc)]);
    validation.set_audience(&[client]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .expect("the logout token verifies against the issuer's JWKS")
    .claims;
    assert_eq!(
        claims["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
        "{claims}"
    );
    assert!(claims.get("nonce").is_none(), "no nonce: {claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(
        exp > iat && exp - iat <= 120,
        "at most two minutes: {claims}"
    );
    claims
}

/// A code for `client` through the browser session of `account`.
async fn code_for(svc: &Service, account: &Account, client: &str) -> String {
    let mut url = reqwest::Url::parse(&svc.url("/t/acme/oidc/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", &callback(svc))
        .append_pair("scope", "openid")
        .append_pair("state", "s")
        .append_pair("nonce", "n");
    let back = authorize_as(svc, account, url.as_str())
        .await
        .expect("back to the application");
    param(&back, "code").expect("a code")
}

/// Exchanges `code` at the token endpoint.
async fn exchange(svc: &Service, client: &(String, String), code: &str) -> (u16, Value) {
    post_form(
        svc,
        "/t/acme/oidc/token",
        (&client.0, Some(&client.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &callback(svc)),
        ],
    )
    .await
}

/// An application session of `client` for the person of `account`'s browser session: the `sid`
/// of its ID token.
async fn app_session(svc: &Service, account: &Account, client: &(String, String)) -> String {
    let code = code_for(svc, account, &client.0).await;
    let (status, body) = exchange(svc, client, &code).await;
    assert_eq!(status, 200, "{body}");
    text(&payload(&text(&body["id_token"]))["sid"])
}

/// A new browser session of `account`'s person, signed in with the password.
async fn signed_in_again(svc: &Service, account: &Account) -> Account {
    let tokens = svc.sign_in(&account.email, PASSWORD).await;
    Account {
        id: account.id.clone(),
        email: account.email.clone(),
        token: text(&tokens["access_token"]),
        refresh: text(&tokens["refresh_token"]),
        session: text(&tokens["session"]),
    }
}

#[tokio::test]
async fn applications_with_a_back_channel_logout_uri_get_a_logout_token_whenever_a_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, member) = service(dir.path(), 60).await;
    let discovery = svc.get("/t/acme/.well-known/openid-configuration").await;
    assert_eq!(discovery.body["backchannel_logout_supported"], true);
    assert_eq!(discovery.body["backchannel_logout_session_supported"], true);

    // The endpoint is down for the first request: the service tries again.
    let (endpoint, inbox) = logout_endpoint(1).await;
    let client = |name: &str, backchannel: Option<&str>| {
        let mut body = json!({
            "kind": "confidential", "name": name, "redirect_uris": [callback(&svc)],
            "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid"],
            "first_party": true,
        });
        if let Some(uri) = backchannel {
            body["backchannel_logout_uri"] = json!(uri);
        }
        body
    };
    let (id, secret) = register(&svc, client("Notes", Some(&endpoint))).await;
    let notes = (id, secret.unwrap());
    let (id, secret) = register(&svc, client("Plain", None)).await;
    let plain = (id, secret.unwrap());
    let shown = svc
        .get(&format!("/v1/tenants/acme/clients/{}", notes.0))
        .await;
    assert_eq!(shown.body["backchannel_logout_uri"], endpoint, "{shown:?}");
    let shown = svc
        .get(&format!("/v1/tenants/acme/clients/{}", plain.0))
        .await;
    assert_eq!(
        shown.body["backchannel_logout_uri"],
        Value::Null,
        "{shown:?}"
    );
    // Only https, or http to this machine, and no fragment; a refusal changes nothing.
    let before = svc.log_position().await;
    for bad in [
        "http://notes.example/backchannel-logout",
        "https://notes.example/backchannel-logout#here",
        "com.example.notes:/logout",
    ] {
        let refused = svc
            .post("/v1/tenants/acme/clients", client("Bad", Some(bad)))
            .await;
        refused.assert_problem(422, "invalid_redirect_uri");
        let mut settings = client("Notes", Some(bad));
        settings.as_object_mut().unwrap().remove("kind");
        let updated = svc
            .put(&format!("/v1/tenants/acme/clients/{}", notes.0), settings)
            .await;
        updated.assert_problem(422, "invalid_redirect_uri");
    }
    assert_eq!(svc.log_position().await, before);

    // Signing out of the browser session ends the application sessions issued through it.
    let signed_out = app_session(&svc, &member, &notes).await;
    let not_told = app_session(&svc, &member, &plain).await;
    let answer = svc
        .post_as(&member.token, "/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // An administrator ends every session of the person.
    let again = signed_in_again(&svc, &member).await;
    let revoked = app_session(&svc, &again, &notes).await;
    let answer = svc
        .post(
            &format!("/v1/users/{}/sessions/revoke", member.id),
            json!({}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // A code presented twice revokes what its first exchange started.
    let third = signed_in_again(&svc, &member).await;
    let code = code_for(&svc, &third, &notes.0).await;
    let (status, body) = exchange(&svc, &notes, &code).await;
    assert_eq!(status, 200, "{body}");
    let reused = text(&payload(&text(&body["id_token"]))["sid"]);
    let (status, body) = exchange(&svc, &notes, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // One endpoint gets its logouts in the order the sessions ended, each a new token; the
    // first request failed and was repeated.
    eventually("three logout tokens are delivered", || async {
        received(&inbox)
            .iter()
            .filter(|r| r.answered == 200)
            .count()
            >= 3
    })
    .await;
    let got = received(&inbox);
    let mut sessions = Vec::new();
    for request in &got {
        assert_eq!(request.content_type, "application/x-www-form-urlencoded");
        let claims = checked_logout_token(&svc, &request.token, &notes.0).await;
        assert_eq!(claims["sub"], member.id.as_str(), "{claims}");
        sessions.push((request.answered, text(&claims["sid"])));
    }
    assert_eq!(
        sessions,
        [
            (503, signed_out.clone()),
            (200, signed_out),
            (200, revoked),
            (200, reused),
        ],
    );
    // The application without a back-channel logout URI was told nothing, here or anywhere.
    assert!(
        got.iter()
            .all(|r| payload(&r.token)["sid"] != not_told.as_str()),
        "{got:?}"
    );
    assert_ne!(got[0].token, got[1].token, "a retry sends a new token");
}

#[tokio::test]
async fn a_logout_token_not_delivered_when_the_service_crashed_is_delivered_after_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut svc, member) = service(dir.path(), 60).await;
    // The application hangs: the service's request is still waiting for an answer when it dies.
    let (open, opened) = tokio::sync::watch::channel(false);
    let (endpoint, inbox) = logout_endpoint_with(0, opened).await;
    let (id, secret) = register(
        &svc,
        json!({
            "kind": "confidential", "name": "Notes", "redirect_uris": [callback(&svc)],
            "grant_types": ["authorization_code"], "scopes": ["openid"], "first_party": true,
            "backchannel_logout_uri": endpoint,
        }),
    )
    .await;
    let notes = (id, secret.unwrap());
    let session = app_session(&svc, &member, &notes).await;
    let answer = svc
        .post_as(&member.token, "/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    eventually("the logout token is being posted", || async {
        !received(&inbox).is_empty()
    })
    .await;
    svc.kill9().await;

    open.send(true).unwrap();
    svc.start_again().await;
    eventually(
        "the logout token is delivered after the restart",
        || async { received(&inbox).iter().any(|r| r.answered == 200) },
    )
    .await;
    let got = received(&inbox);
    let delivered: Vec<&Received> = got.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(delivered.len(), 1, "{got:?}");
    let claims = checked_logout_token(&svc, &delivered[0].token, &notes.0).await;
    assert_eq!(claims["sid"], session.as_str(), "{claims}");
    assert!(
        got.iter()
            .all(|r| payload(&r.token)["sid"] == session.as_str()),
        "{got:?}"
    );
}
