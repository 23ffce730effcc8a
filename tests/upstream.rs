//! Sign-in through another OpenID Connect provider, end to end between two real services: a
//! second idstream process is the upstream provider of the first. A person of the first signs
//! in through the second in Chromium and is linked by the address both verified; someone unknown
//! is provisioned; a link signs in again without the address; and the refusals (no account, a
//! forged or missing state, a code presented twice, an unverified address) append nothing.

use serde_json::{Value, json};

use crate::oidc::{authorize_as, register, service};
use crate::support::browser::Driver;
use crate::support::service::Service;
use crate::support::world::{Account, join, text};

const PASSWORD: &str = "Oidc-Test-Passphrase-2026";

/// Two services, each with `acme` and its member grace: `app` signs people in through
/// `upstream`'s `acme`, where it is registered as a first-party client.
struct World {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    app: Service,
    upstream: Service,
    /// grace in `app`.
    grace: Account,
    /// grace in `upstream`.
    grace_upstream: Account,
}

impl World {
    async fn new(provision: bool) -> World {
        let (dir_app, dir_upstream) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (app, grace) = service(dir_app.path(), 60).await;
        let (upstream, grace_upstream) = service(dir_upstream.path(), 60).await;
        let (client_id, secret) = register(
            &upstream,
            json!({
                "kind": "confidential",
                "name": "The app",
                "redirect_uris": [app.url("/t/acme/sign-in/corp/callback")],
                "grant_types": ["authorization_code"],
                "scopes": ["openid", "email", "profile"],
                "first_party": true,
            }),
        )
        .await;
        let configured = app
            .put(
                "/v1/tenants/acme/identity-providers/corp",
                json!({
                    "name": "Corp",
                    "issuer": upstream.url("/t/acme"),
                    "client_id": client_id,
                    "client_secret": secret.unwrap(),
                    "provision": provision,
                }),
            )
            .await;
        assert_eq!(configured.status, 200, "{configured:?}");
        assert_eq!(
            configured.body["redirect_uri"],
            app.url("/t/acme/sign-in/corp/callback")
        );
        assert_eq!(configured.body["has_client_secret"], true);
        assert!(
            !configured.body.to_string().contains("idcs_"),
            "the secret is never answered"
        );
        World {
            _dirs: (dir_app, dir_upstream),
            app,
            upstream,
            grace,
            grace_upstream,
        }
    }

    /// The sign-in through the provider without a browser: `app`'s start, `upstream`'s
    /// authorization endpoint as `who` (signed in there), and back. Answers the callback's
    /// status, `Location` and body, and the callback URL (to present again).
    async fn sign_in_as(&self, who: &Account) -> (u16, Option<String>, String, String) {
        let client = no_redirects();
        let started = client
            .get(self.app.url("/t/acme/sign-in/corp?return_to=/account"))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 303);
        let cookie = set_cookie(&started, "ids_upstream").expect("the sign-in's cookie");
        let to_upstream = location(&started);
        assert!(
            to_upstream.starts_with(&self.upstream.url("/t/acme/oidc/authorize?")),
            "{to_upstream}"
        );
        for wanted in [
            "code_challenge_method=S256",
            "nonce=",
            "state=",
            "scope=openid",
        ] {
            assert!(to_upstream.contains(wanted), "{wanted} in {to_upstream}");
        }
        let back = authorize_as(&self.upstream, who, &to_upstream)
            .await
            .expect("the provider sends the browser back");
        assert!(back.starts_with(&self.app.url("/t/acme/sign-in/corp/callback?")));
        let (status, location, body) = callback(&back, Some(&cookie)).await;
        (status, location, body, format!("{back}\n{cookie}"))
    }

    async fn trail(&self, kind: &str) -> Vec<Value> {
        let answer = self
            .app
            .get(&format!("/v1/audit/events?tenant=acme&type={kind}"))
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["items"].as_array().unwrap().clone()
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(answer: &reqwest::Response) -> String {
    answer
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn set_cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (n, value) = pair.split_once('=')?;
            (n == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// `GET` of the callback `url` with the sign-in's cookie.
async fn callback(url: &str, cookie: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = no_redirects().get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("ids_upstream={cookie}"));
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let to = answer
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let signed_in = set_cookie(&answer, "ids_access").is_some();
    let body = answer.text().await.unwrap();
    (status, to.filter(|_| signed_in || status == 303), body)
}

#[tokio::test]
async fn a_person_signs_in_to_one_idstream_through_another_in_a_browser() {
    let world = World::new(false).await;
    let (app, upstream) = (&world.app, &world.upstream);

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "upstream").await;
    // The organisation's sign-in page offers the provider; a page without an organisation, or
    // of one that does not exist, offers none.
    browser.goto(&app.url("/sign-in?tenant=acme")).await;
    browser.expect_text("Sign in with Corp").await;
    browser.check_accessibility().await;
    browser.goto(&app.url("/sign-in?tenant=nowhere")).await;
    browser.expect_no_text("Sign in with Corp").await;
    browser.goto(&app.url("/sign-in?tenant=acme")).await;
    browser.click("a.provider").await;
    // The provider's own hosted sign-in page.
    browser
        .wait_for_url(|u| u.starts_with(&upstream.url("/sign-in")))
        .await;
    browser.fill("email", &world.grace_upstream.email).await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/sign-in'] button[type=submit]")
        .await;
    // Back, signed in to the first service as its own grace (linked by the verified address).
    browser
        .wait_for_url(|u| u.starts_with(&app.url("/account")))
        .await;
    browser.expect_text(&world.grace.email).await;
    browser.close().await;

    let linked = world.trail("IdentityLinked").await;
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(linked[0]["subject"], world.grace.id.as_str(), "{linked:?}");
    let summary = text(&linked[0]["summary"]);
    assert!(summary.contains("by their verified address"), "{summary}");
    let started = world.trail("SessionStarted").await;
    let federated = started
        .iter()
        .find(|e| text(&e["summary"]).contains("federated") || e.to_string().contains("\"fed\""))
        .unwrap_or_else(|| panic!("a federated session: {started:?}"));
    assert_eq!(federated["subject"], world.grace.id.as_str());

    // grace sees the link, and takes it away.
    let mine = app.get_as(&world.grace.token, "/v1/auth/identities").await;
    assert_eq!(mine.status, 200, "{mine:?}");
    assert_eq!(mine.body["items"][0]["provider"], "corp");
    assert_eq!(mine.body["items"][0]["via"], "verified_email");
    let unlinked = app
        .send(app.request_as(
            &world.grace.token,
            reqwest::Method::DELETE,
            "/v1/auth/identities/corp",
        ))
        .await;
    assert_eq!(unlinked.status, 200, "{unlinked:?}");
    let again = app
        .send(app.request_as(
            &world.grace.token,
            reqwest::Method::DELETE,
            "/v1/auth/identities/corp",
        ))
        .await;
    again.assert_problem(404, "identity_not_linked");
    assert_eq!(world.trail("IdentityUnlinked").await.len(), 1);
}

#[tokio::test]
async fn an_unknown_person_is_provisioned_a_link_signs_in_again_and_refusals_append_nothing() {
    let world = World::new(true).await;
    let (app, upstream) = (&world.app, &world.upstream);

    // Someone only the provider knows becomes a member with the default role.
    let newbie = join(upstream, "newbie@example.com", "acme", &["user"], PASSWORD).await;
    let (status, to, body, first) = world.sign_in_as(&newbie).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(to.as_deref(), Some("/account"));
    let found = app.get("/v1/tenants/acme/users?q=newbie").await;
    assert_eq!(
        found.body["items"].as_array().unwrap().len(),
        1,
        "{found:?}"
    );
    let person = &found.body["items"][0];
    assert_eq!(person["roles"], json!(["user"]));
    assert_eq!(person["email_verified"], true);
    assert_eq!(person["status"], "active");
    let linked = world.trail("IdentityLinked").await;
    assert!(
        text(&linked[0]["summary"]).contains("as a new member"),
        "{linked:?}"
    );

    // The same callback again (its code used, its state spent with its cookie): refused, and
    // nothing appended.
    let before = app.log_position().await;
    let (url, cookie) = first.split_once('\n').unwrap();
    let (status, _, body) = callback(url, Some(cookie)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("could not be verified"), "{body}");
    // Without the cookie, or with another sign-in's state.
    let (status, _, _) = callback(url, None).await;
    assert_eq!(status, 400);
    let forged = url.replace("state=", "state=x");
    let (status, _, _) = callback(&forged, Some(cookie)).await;
    assert_eq!(status, 400);
    // The provider's refusal is shown, not followed.
    let denied = format!(
        "{}?error=access_denied&state=x",
        app.url("/t/acme/sign-in/corp/callback")
    );
    let (status, _, _) = callback(&denied, Some(cookie)).await;
    assert_eq!(
        status, 400,
        "a refusal with another state is not this sign-in's"
    );
    assert_eq!(
        app.log_position().await,
        before,
        "a refused callback appended"
    );

    // Signing in again goes by the link: newbie changes address at the provider… (here the
    // provider's grace signs in a second time, by her link, and lands as the same person).
    let (status, _, body, _) = world.sign_in_as(&world.grace_upstream).await;
    assert_eq!(status, 303, "{body}");
    let (status, _, body, _) = world.sign_in_as(&world.grace_upstream).await;
    assert_eq!(status, 303, "{body}");
    let links = world.trail("IdentityLinked").await;
    assert_eq!(
        links.len(),
        2,
        "one link each for newbie and grace: {links:?}"
    );

    // An address this service has not verified is not linked through the provider's, even
    // though the provider verified it: it could be someone else's claim on the address.
    app.create_user("acme", "claimed@example.com", &["user"])
        .await;
    let claimant = join(upstream, "claimed@example.com", "acme", &["user"], PASSWORD).await;
    let before = app.log_position().await;
    let (status, _, body, _) = world.sign_in_as(&claimant).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("No account of this organisation"), "{body}");
    assert_eq!(app.log_position().await, before);
}

#[tokio::test]
async fn providers_are_managed_by_administrators_and_unknown_people_are_refused_without_provisioning()
 {
    let world = World::new(false).await;
    let (app, upstream) = (&world.app, &world.upstream);

    let listed = app.get("/v1/tenants/acme/identity-providers").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["id"], "corp");
    assert_eq!(
        listed.body["items"][0]["scopes"],
        json!(["openid", "email", "profile"])
    );
    // Bad settings are refused with what is wrong, and change nothing.
    let before = app.log_position().await;
    for body in [
        json!({"name": "X", "issuer": "http://id.example.com", "client_id": "a"}),
        json!({"name": "X", "issuer": "https://id.example.com", "client_id": "a", "scopes": ["email"]}),
        json!({"name": " ", "issuer": "https://id.example.com", "client_id": "a"}),
        json!({"name": "X", "issuer": "https://id.example.com", "client_id": "a", "allowed_email_domains": ["not a domain"]}),
    ] {
        app.put("/v1/tenants/acme/identity-providers/other", body)
            .await
            .assert_problem(422, "invalid_identity_provider");
    }
    app.put(
        "/v1/tenants/acme/identity-providers/Not_A_Name",
        json!({"name": "X", "issuer": "https://id.example.com", "client_id": "a"}),
    )
    .await
    .assert_problem(422, "invalid_identity_provider");
    assert_eq!(app.log_position().await, before);
    // A member may not read or change them.
    let member = app
        .get_as(&world.grace.token, "/v1/tenants/acme/identity-providers")
        .await;
    member.assert_problem(403, "forbidden");
    app.get("/v1/tenants/acme/identity-providers/missing")
        .await
        .assert_problem(404, "identity_provider_not_found");

    // Someone the tenant does not know, with provisioning off: refused, nothing appended.
    let stranger = join(
        upstream,
        "stranger@example.com",
        "acme",
        &["user"],
        PASSWORD,
    )
    .await;
    let before = app.log_position().await;
    let (status, _, body, _) = world.sign_in_as(&stranger).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("No account of this organisation"), "{body}");
    assert_eq!(app.log_position().await, before);

    // Only some domains: grace's is not one of them.
    let configured = app
        .get("/v1/tenants/acme/identity-providers/corp")
        .await
        .body;
    let mut settings = json!({
        "name": configured["name"], "issuer": configured["issuer"],
        "client_id": configured["client_id"], "allowed_email_domains": ["corp.example"],
    });
    let changed = app
        .put("/v1/tenants/acme/identity-providers/corp", settings.clone())
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["has_client_secret"], true, "the secret stays");
    let (status, _, body, _) = world.sign_in_as(&world.grace_upstream).await;
    assert_eq!(status, 403, "{body}");

    // Removed: the button goes, and its start is refused.
    settings["allowed_email_domains"] = json!([]);
    let before_removal = app.log_position().await;
    let removed = app.delete("/v1/tenants/acme/identity-providers/corp").await;
    assert_eq!(removed.status, 200, "{removed:?}");

    // Point-in-time replay covers providers and applications: the provider as it was before
    // its removal (never its secret), none now; the provider's side lists its application.
    let then = app
        .get(&format!(
            "/v1/audit/applications?tenant=acme&position={before_removal}"
        ))
        .await;
    assert_eq!(then.status, 200, "{then:?}");
    assert_eq!(then.body["as_of"]["position"], before_removal);
    assert_eq!(then.body["providers"][0]["id"], "corp");
    assert_eq!(
        then.body["providers"][0]["allowed_email_domains"],
        json!(["corp.example"])
    );
    assert!(!then.body.to_string().contains("secret"), "{then:?}");
    let now = app.get("/v1/audit/applications?tenant=acme").await;
    assert_eq!(now.body["providers"], json!([]), "{now:?}");
    let theirs = upstream.get("/v1/audit/applications?tenant=acme").await;
    assert_eq!(theirs.body["clients"][0]["name"], "The app", "{theirs:?}");
    assert_eq!(theirs.body["clients"][0]["removed_at"], Value::Null);
    app.get_as(&world.grace.token, "/v1/audit/applications?tenant=acme")
        .await
        .assert_problem(403, "forbidden");
    let page = no_redirects()
        .get(app.url("/sign-in?tenant=acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Sign in with Corp"), "{page}");
    let started = no_redirects()
        .get(app.url("/t/acme/sign-in/corp"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 400);
}
