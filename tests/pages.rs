//! The hosted pages (issue 16, first part) in a real browser: headless Chromium driven through
//! ChromeDriver. An invitation's link is accepted in the browser, which is then signed in;
//! sign-out, a refused password, sign-in with and without "remember me" across a browser restart,
//! and a password reset from its mailed link. The browser-safety rules are checked over plain
//! HTTP: forms without their CSRF token are refused, return addresses to other origins are not
//! followed, every page carries its Content-Security-Policy, and the account needs a session.

use reqwest::Method;
use serde_json::json;

use crate::support::browser::Driver;
use crate::support::service::Service;
use crate::support::world::{PATIENCE, eventually, invitation_token, text};

const PASSWORD: &str = "Browser-Pages-Passphrase-1";
const NEW_PASSWORD: &str = "Browser-Pages-Passphrase-2";
const EMAIL: &str = "ada@example.com";

/// The path and query of the first link to the service in the latest mail to `to` whose subject
/// contains `subject`.
async fn mailed_link(svc: &Service, to: &str, subject: &str, path: &str) -> String {
    let mut link = None;
    eventually("the mail arrives", || {
        link = svc
            .mail()
            .into_iter()
            .rev()
            .find(|m| m.to == to && m.subject.contains(subject))
            .and_then(|m| {
                let start = m.text.find(path)?;
                Some(
                    m.text[start..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect::<String>(),
                )
            });
        std::future::ready(link.is_some())
    })
    .await;
    link.unwrap()
}

/// A form body, URL-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn a_colleague_accepts_an_invitation_signs_in_and_out_and_resets_a_password_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "roles": ["user"]}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let token = invitation_token(&svc, EMAIL).await;

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "invitation").await;

    // The link's secret leaves the address bar before the page shows.
    browser
        .goto(&format!("{}/accept-invitation?token={token}", svc.base))
        .await;
    let url = browser
        .wait_for_url(|u| u.ends_with("/accept-invitation"))
        .await;
    assert!(
        url.ends_with("/accept-invitation") && !url.contains(&token),
        "{url}"
    );
    browser.expect_text("Choose a password").await;
    browser.check_accessibility().await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", "something else").await;
    browser.click("button[type=submit]").await;
    browser.expect_text("The two passwords differ.").await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Your account").await;
    browser.expect_text(EMAIL).await;
    browser.expect_text("Ada Lovelace").await;
    browser.check_accessibility().await;

    // Sign out, a wrong password, then in again with "remember me".
    browser.click("form[action='/sign-out'] button").await;
    let url = browser.wait_for_url(|u| u.ends_with("/sign-in")).await;
    assert!(url.ends_with("/sign-in"), "{url}");
    browser.expect_text("Remember me").await;
    browser.check_accessibility().await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", "not the password").await;
    browser.click("button[type=submit]").await;
    browser
        .expect_text("The email address or password is wrong.")
        .await;
    browser.check_accessibility().await;
    browser.fill("password", PASSWORD).await;
    browser.click("#remember").await;
    browser.click("button[type=submit]").await;
    browser.expect_text(EMAIL).await;

    // An API key: a malformed restriction refused; the key shown once, working, then revoked.
    browser
        .goto(&format!("{}/account/api-keys", svc.base))
        .await;
    browser.check_accessibility().await;
    browser.fill("name", "laptop script").await;
    browser.fill("permissions", "not a permission").await;
    browser
        .click("form[action='/account/api-keys'] button")
        .await;
    browser.expect_text("is not a permission").await;
    browser.fill("name", "laptop script").await;
    browser.fill("permissions", "").await;
    browser
        .click("form[action='/account/api-keys'] button")
        .await;
    browser.expect_text("shown only now").await;
    let key = browser
        .client
        .find(fantoccini::Locator::Id("new-key"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(key.starts_with("ids_"), "{key}");
    let me = svc.get_as(&key, "/v1/auth/me").await;
    assert_eq!(me.status, 200, "{me:?}");
    browser.expect_text("laptop script").await;
    browser
        .click("form[action='/account/api-keys/revoke'] button")
        .await;
    // Revoked, the page lists it no more (and the notice of the new key is gone).
    browser.expect_no_text("laptop script").await;
    let refused = svc.get_as(&key, "/v1/auth/me").await;
    assert_eq!(refused.status, 401, "a revoked key: {refused:?}");
    browser.close().await;

    // A remembered session survives the browser's restart.
    let browser = driver.browser(profile.path(), "remembered").await;
    browser.goto(&format!("{}/account", svc.base)).await;
    browser.expect_text(EMAIL).await;
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Remember me").await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text(EMAIL).await;
    browser.close().await;

    // One that is not remembered ends with the browser.
    let browser = driver.browser(profile.path(), "forgotten").await;
    browser.goto(&format!("{}/account", svc.base)).await;
    let url = browser.wait_for_url(|u| u.contains("/sign-in")).await;
    assert!(url.contains("/sign-in"), "{url}");
    browser.expect_text("Sign in").await;

    // Forgot the password: the mailed link, a new password, sign-in with it.
    let requested = svc
        .send(
            svc.anonymous(Method::POST, "/v1/auth/password/reset-request")
                .json(&json!({"email": EMAIL})),
        )
        .await;
    assert_eq!(requested.status, 202, "{requested:?}");
    let link = mailed_link(&svc, EMAIL, "Reset your password", "/reset-password?").await;
    let path = &link[link.find("/reset-password?").unwrap()..];
    browser.goto(&format!("{}{path}", svc.base)).await;
    let url = browser
        .wait_for_url(|u| u.ends_with("/reset-password"))
        .await;
    assert!(url.ends_with("/reset-password"), "{url}");
    browser.check_accessibility().await;
    browser.fill("password", NEW_PASSWORD).await;
    browser.fill("confirm", NEW_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Your password was changed").await;
    browser.goto(&format!("{}/sign-in", svc.base)).await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", NEW_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text(EMAIL).await;
    browser.close().await;
    let _ = PATIENCE;
}

/// The otpauth URI in a QR code image (a PNG screenshot of it).
fn decode_qr(png: &[u8]) -> String {
    let image = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("a readable QR code").1
}

#[tokio::test]
async fn two_factors_are_set_up_from_the_qr_code_and_sessions_are_managed_in_a_browser() {
    use fantoccini::Locator;
    use idstream_auth::TotpSecret;
    use idstream_auth::totp::time_step;
    use time::OffsetDateTime;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "roles": ["user"]}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let token = invitation_token(&svc, EMAIL).await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "two-factor").await;
    browser
        .goto(&format!(
            "{}/sign-in?return_to=/account/two-factor",
            svc.base
        ))
        .await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Scan this code").await;
    browser.check_accessibility().await;

    // The secret, read from the QR code as an authenticator app reads it.
    let qr = browser
        .client
        .find(Locator::Css(".qr img"))
        .await
        .unwrap()
        .screenshot()
        .await
        .unwrap();
    let uri = decode_qr(&qr);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .expect("a secret in the URI");
    assert!(TotpSecret::from_base32(secret).is_ok(), "{uri}");
    browser.fill("code", "000000").await;
    browser
        .click("form[action='/account/two-factor'] button")
        .await;
    browser.expect_text("did not match").await;
    // A wrong code starts again with a new key.
    let qr = browser
        .client
        .find(Locator::Css(".qr img"))
        .await
        .unwrap()
        .screenshot()
        .await
        .unwrap();
    let uri = decode_qr(&qr);
    let secret = TotpSecret::from_base32(
        uri.split(['?', '&'])
            .find_map(|p| p.strip_prefix("secret="))
            .unwrap(),
    )
    .unwrap();
    let code_at = |step: u64| {
        secret.code_at(OffsetDateTime::from_unix_timestamp((step * 30) as i64).unwrap())
    };
    let now = time_step(OffsetDateTime::now_utc());
    browser.fill("code", &code_at(now)).await;
    browser
        .click("form[action='/account/two-factor'] button")
        .await;
    browser.expect_text("recovery codes").await;
    browser.check_accessibility().await;
    let codes = browser
        .client
        .find_all(Locator::Css("#recovery-codes code"))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);

    // Signing in again asks for the second factor; the next step's code lets Ada in.
    browser.goto(&format!("{}/account", svc.base)).await;
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Remember me").await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("authenticator app").await;
    browser.check_accessibility().await;
    browser.fill("code", &code_at(now + 1)).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Your account").await;
    let state = browser
        .client
        .find(Locator::XPath(
            "//dt[normalize-space()='Two-factor sign-in']/following-sibling::dd[1]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "on");

    // Sessions: this one (from this machine), and an API session started elsewhere, signed out
    // from the page.
    browser
        .goto(&format!("{}/account/sessions", svc.base))
        .await;
    browser.expect_text("(this one)").await;
    browser.expect_text("127.0.0.1").await;
    browser.check_accessibility().await;
    let rows = browser
        .client
        .find_all(Locator::Css("table.sessions tbody tr"))
        .await
        .unwrap();
    let before = rows.len();
    assert!(before >= 2, "the acceptance's session and this one");
    // Sign out a session that is not this one.
    let others = browser
        .client
        .find_all(Locator::XPath(
            "//tr[not(.//strong)]//form[@action='/account/sessions/sign-out']//button",
        ))
        .await
        .unwrap();
    others[0].click().await.unwrap();
    browser
        .wait_for_url(|u| u.ends_with("/account/sessions"))
        .await;
    browser.expect_text("(this one)").await;
    let after = browser
        .client
        .find_all(Locator::Css("table.sessions tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(after, before - 1);
    // Signing out this one ends the page's session.
    browser
        .click("tr:has(strong) form[action='/account/sessions/sign-out'] button")
        .await;
    browser.wait_for_url(|u| u.contains("/sign-in")).await;
    browser.goto(&format!("{}/account", svc.base)).await;
    let url = browser.wait_for_url(|u| u.contains("/sign-in")).await;
    assert!(url.contains("/sign-in"), "{url}");
    browser.close().await;
}

#[tokio::test]
async fn pages_refuse_forms_without_their_token_foreign_return_addresses_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", svc.base);

    // Every page has its policy; the sign-in page sets the form's token.
    let page = client
        .get(url("/sign-in?return_to=https://evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("ids_csrf=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let csrf = cookie["ids_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"name="return_to" value="&#x2f;account""#)
            && !html.contains("evil.example"),
        "a foreign return address is not kept: {html}"
    );

    // A form posted without the token (or with another) changes nothing.
    for presented in ["", "forged"] {
        let posted = client
            .post(url("/sign-in"))
            .header("cookie", format!("ids_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("csrf", presented),
                ("email", "x@example.com"),
                ("password", "y"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 403, "{presented:?}");
    }
    let posted = client
        .post(url("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf.as_str()),
            ("email", "x@example.com"),
            ("password", "y"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403, "a token without its cookie");
    // With both, a sign-in for an unknown address says what a wrong password says.
    let posted = client
        .post(url("/sign-in"))
        .header("cookie", format!("ids_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf.as_str()),
            ("email", "nobody@example.com"),
            ("password", "y"),
            ("return_to", "//evil.example"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 401);
    assert!(
        posted
            .text()
            .await
            .unwrap()
            .contains("The email address or password is wrong.")
    );

    // The account needs a session; a link page without its link says how to get one.
    let account = client.get(url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 303);
    assert_eq!(account.headers()["location"], "/sign-in?return_to=/account");
    let bare = client.get(url("/verify-email")).send().await.unwrap();
    assert_eq!(bare.status(), 400);
    let css = client
        .get(url("/assets/idstream.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn people_sign_up_verify_sign_in_by_link_and_edit_their_profile_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let created = svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let settings = svc.get_at("/v1/tenants/acme/settings", created).await;
    assert_eq!(settings.status, 200, "{settings:?}");
    let mut settings = settings.body;
    settings["self_registration"] = json!(true);
    settings["require_email_verification"] = json!(true);
    let changed = svc.put("/v1/tenants/acme/settings", settings).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    for (name, body) in [
        (
            "nickname",
            json!({"label": "Nickname", "type": "text", "user_editable": true}),
        ),
        (
            "shift",
            json!({"label": "Shift", "type": "one_of", "options": ["Early", "Late"], "user_editable": true}),
        ),
        ("badge", json!({"label": "Badge", "type": "number"})),
    ] {
        let defined = svc
            .put(&format!("/v1/tenants/acme/attributes/{name}"), body)
            .await;
        assert_eq!(defined.status, 200, "{defined:?}");
    }
    let email = "grace@example.com";

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "sign-up").await;

    // A tenant that does not allow sign-up says so, without telling whether it exists.
    browser
        .goto(&format!("{}/sign-up?tenant=beta", svc.base))
        .await;
    browser.fill("email", email).await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Sign-up is not open here").await;
    browser.check_accessibility().await;

    browser
        .goto(&format!("{}/sign-up?tenant=acme", svc.base))
        .await;
    browser.fill("first_name", "Grace").await;
    browser.fill("last_name", "Hopper").await;
    browser.fill("email", email).await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Check your mail").await;
    browser.check_accessibility().await;

    // Verification from the mailed link, then sign-in.
    let link = mailed_link(&svc, email, "Verify your email address", "/verify-email?").await;
    browser
        .goto(&format!(
            "{}{}",
            svc.base,
            &link[link.find("/verify-email?").unwrap()..]
        ))
        .await;
    browser
        .expect_text("Confirm that this address is yours")
        .await;
    browser.check_accessibility().await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Your email address is verified.").await;
    browser.goto(&format!("{}/sign-in", svc.base)).await;
    browser.fill("email", email).await;
    browser.fill("password", PASSWORD).await;
    browser.click("form[action='/sign-in'] button").await;
    browser.expect_text("Grace Hopper").await;

    // The profile: phone and the attributes Grace may set (not the badge).
    browser.goto(&format!("{}/account/profile", svc.base)).await;
    browser.expect_text("Nickname").await;
    browser.check_accessibility().await;
    assert!(!browser.text_now().await.contains("Badge"));
    browser.fill("phone", "+44 7700 900123").await;
    browser.fill("attr-nickname", "Amazing Grace").await;
    browser
        .client
        .find(fantoccini::Locator::Css("#attr-shift"))
        .await
        .unwrap()
        .select_by_value("Late")
        .await
        .unwrap();
    // And French for her mails (below, the address change and the sign-in link come in French).
    browser
        .client
        .find(fantoccini::Locator::Css("#language"))
        .await
        .unwrap()
        .select_by_value("fr")
        .await
        .unwrap();
    browser
        .click("form[action='/account/profile'] button")
        .await;
    browser.expect_text("+447700900123").await;
    browser.expect_text("Amazing Grace").await;
    browser.expect_text("Late").await;
    // A phone number of the wrong form is refused, and nothing changes.
    browser.goto(&format!("{}/account/profile", svc.base)).await;
    browser.fill("phone", "555-0100").await;
    browser
        .click("form[action='/account/profile'] button")
        .await;
    browser.expect_text("international form").await;
    browser.check_accessibility().await;

    // A new email address, confirmed from the link sent to it.
    let moved = "grace.h@example.com";
    browser.goto(&format!("{}/account/email", svc.base)).await;
    // Her pages are in French now, as she chose.
    browser.expect_text("Votre adresse actuelle").await;
    browser.check_accessibility().await;
    browser.fill("email", moved).await;
    browser.fill("password", "not the password").await;
    browser.click("form[action='/account/email'] button").await;
    browser.expect_text("Le mot de passe est incorrect.").await;
    browser.fill("email", moved).await;
    browser.fill("password", PASSWORD).await;
    browser.click("form[action='/account/email'] button").await;
    browser.expect_text("Consultez la nouvelle adresse").await;
    let link = mailed_link(
        &svc,
        moved,
        "Vérifiez votre adresse e-mail",
        "/confirm-email?",
    )
    .await;
    browser
        .goto(&format!(
            "{}{}",
            svc.base,
            &link[link.find("/confirm-email?").unwrap()..]
        ))
        .await;
    browser.click("button[type=submit]").await;
    browser
        .expect_text("utilise désormais la nouvelle adresse")
        .await;
    browser.goto(&format!("{}/account", svc.base)).await;
    browser.expect_text(moved).await;
    let email = moved;

    // Signed out, back in by a mailed link.
    browser.goto(&format!("{}/account", svc.base)).await;
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Remember me").await;
    browser.fill("link-email", email).await;
    browser.click("form[action='/sign-in/link'] button").await;
    browser.expect_text("a sign-in link is on its way").await;
    let link = mailed_link(&svc, email, "Votre lien de connexion", "/magic-link?").await;
    browser
        .goto(&format!(
            "{}{}",
            svc.base,
            &link[link.find("/magic-link?").unwrap()..]
        ))
        .await;
    browser.expect_text("Sign in on this device?").await;
    browser.click("button[type=submit]").await;
    browser.expect_text("Grace Hopper").await;

    // Signed out, back in with a mailed code: a wrong one is refused, the right one lets in.
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Remember me").await;
    browser.fill("link-email", email).await;
    browser
        .click("button[formaction='/sign-in/code-request']")
        .await;
    browser.expect_text("six-digit code is on its way").await;
    browser.check_accessibility().await;
    let mut code = None;
    eventually("the code arrives", || {
        code = svc
            .mail()
            .into_iter()
            .rev()
            .find(|m| m.to == email && m.subject.contains("code"))
            .and_then(|m| {
                m.text
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|w| w.len() == 6)
                    .map(str::to_owned)
            });
        std::future::ready(code.is_some())
    })
    .await;
    let code = code.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    browser.fill("code", wrong).await;
    browser.click("form[action='/sign-in/code'] button").await;
    browser
        .expect_text("The code is wrong or has expired")
        .await;
    browser.fill("code", &code).await;
    browser.click("form[action='/sign-in/code'] button").await;
    browser.expect_text("Grace Hopper").await;
    browser.close().await;
}

/// The accessibility check finds what it should: a page with an unlabelled field and an image
/// without a text alternative fails it.
#[tokio::test]
async fn the_accessibility_check_finds_violations_where_there_are_some() {
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "axe-self-test").await;
    browser
        .goto("data:text/html,<!doctype html><html><title>t</title><body><img src='x.png'><input type='text'></body></html>")
        .await;
    let violations = browser.serious_violations().await;
    assert!(
        violations.iter().any(|v| v.contains("image-alt")),
        "{violations:?}"
    );
    browser.close().await;
}

/// Regenerates the screenshots README shows (`docs/screenshots/*.png`): run
/// `cargo test --test integration pages::screenshots_for_the_readme -- --ignored`.
#[tokio::test]
#[ignore = "writes docs/screenshots; run by hand when the pages change"]
async fn screenshots_for_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    // Chain checkpoints as a service writes them, for the platform screen.
    let svc = Service::embedded_with_env(
        dir.path(),
        &[
            ("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "10"),
            ("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "1"),
        ],
    )
    .await;
    svc.create_tenant("acme").await;
    let nickname = json!({"label": "Nickname", "type": "text", "user_editable": true});
    let defined = svc
        .put("/v1/tenants/acme/attributes/nickname", nickname)
        .await;
    assert_eq!(defined.status, 200, "{defined:?}");
    svc.post(
        "/v1/tenants/acme/invitations",
        json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "roles": ["user"]}),
    )
    .await;
    let token = invitation_token(&svc, EMAIL).await;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "screenshots").await;
    let shoot = |name: &'static str| {
        let browser = &browser;
        let path = out.join(format!("{name}.png"));
        async move {
            let png = browser.client.screenshot().await.unwrap();
            std::fs::write(&path, png).unwrap();
        }
    };
    browser
        .goto(&format!("{}/accept-invitation?token={token}", svc.base))
        .await;
    browser.expect_text("Choose a password").await;
    shoot("accept-invitation").await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text(EMAIL).await;
    browser.goto(&format!("{}/account/profile", svc.base)).await;
    browser.fill("phone", "+44 20 7946 0958").await;
    browser.fill("attr-nickname", "Ada").await;
    browser
        .click("form[action='/account/profile'] button")
        .await;
    browser.expect_text("Nickname").await;
    shoot("account").await;
    browser
        .goto(&format!("{}/account/two-factor", svc.base))
        .await;
    browser.expect_text("Scan this code").await;
    shoot("two-factor").await;
    browser.goto(&format!("{}/account", svc.base)).await;
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Remember me").await;
    shoot("sign-in").await;

    // The administration console, on a laptop's screen.
    let world = ConsoleWorld::build(&svc).await;
    // An application and an upstream provider, for the applications screen.
    let shop = svc
        .post(
            "/v1/tenants/acme/clients",
            json!({
                "kind": "confidential", "name": "Shop",
                "redirect_uris": ["https://shop.example.com/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "scopes": ["openid", "email", "profile"],
            }),
        )
        .await;
    assert_eq!(shop.status, 201, "{shop:?}");
    let corp = svc
        .put(
            "/v1/tenants/acme/identity-providers/corp",
            json!({"name": "Corp", "issuer": "https://id.corp.example.com", "client_id": "idstream", "allowed_email_domains": ["corp.example.com"]}),
        )
        .await;
    assert_eq!(corp.status / 100, 2, "{corp:?}");
    browser.client.set_window_size(1200, 1000).await.unwrap();
    sign_in_in_browser(&browser, &svc, &world.admin.email).await;
    let wanted = [
        "console-people",
        "console-person",
        "console-role-matrix",
        "console-record",
        "console-audit",
        "console-time-travel",
        "console-access-review",
        "console-settings",
        "console-applications",
        "console-platform",
    ];
    for (name, path) in world.screens() {
        if !wanted.contains(&name) {
            continue;
        }
        browser.goto(&svc.url(&path)).await;
        let url = browser.url().await;
        assert!(url.contains("/admin/"), "{name}: sent to {url}");
        shoot(name).await;
    }
    browser.close().await;
}

/// A browser's cookies, kept as a browser keeps them: set by each answer, sent with each request.
#[derive(Clone, Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, answer: &reqwest::Response) {
        for cookie in answer.headers().get_all("set-cookie") {
            let cookie = cookie.to_str().unwrap();
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> &str {
        &self.0[name]
    }
}

/// Sends `request` with the jar's cookies and keeps the ones the answer sets.
async fn browse(jar: &mut Jar, request: reqwest::RequestBuilder) -> reqwest::Response {
    let answer = request.header("cookie", jar.header()).send().await.unwrap();
    jar.take(&answer);
    answer
}

#[tokio::test]
async fn a_person_of_two_organisations_chooses_one_and_a_browser_refreshing_twice_at_once_stays_signed_in()
 {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let ada = crate::support::world::join(&svc, EMAIL, "acme", &["user"], PASSWORD).await;
    let joined = svc
        .post(
            &format!("/v1/tenants/beta/users/{}/roles", ada.id),
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(joined.status, 200, "{joined:?}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", svc.base);
    let form_post = |path: &str, body: String| {
        client
            .post(url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };

    // Signing in without naming an organisation leads to the choice, which lists both by name.
    let mut jar = Jar::default();
    browse(&mut jar, client.get(url("/sign-in"))).await;
    let csrf = jar.get("ids_csrf").to_owned();
    let signed_in = browse(
        &mut jar,
        form_post(
            "/sign-in",
            form(&[("csrf", &csrf), ("email", EMAIL), ("password", PASSWORD)]),
        ),
    )
    .await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers()["location"],
        "/account/organisation?return_to=%2Faccount"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    let html = loop {
        let page = browse(
            &mut jar,
            client.get(url("/account/organisation?return_to=%2Faccount")),
        )
        .await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        if html.contains("Tenant beta") {
            break html;
        }
        assert!(std::time::Instant::now() < deadline, "{html}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        html.contains(r#"value="acme" class="current" aria-current="true">Tenant acme"#),
        "{html}"
    );
    // Another person's organisation cannot be chosen.
    let refused = browse(
        &mut jar,
        form_post(
            "/account/organisation",
            form(&[
                ("csrf", &csrf),
                ("tenant", "gamma"),
                ("return_to", "/account"),
            ]),
        ),
    )
    .await;
    assert_eq!(refused.status(), 422);
    // Choosing one moves the session there; the API says the same.
    let chosen = browse(
        &mut jar,
        form_post(
            "/account/organisation",
            form(&[
                ("csrf", &csrf),
                ("tenant", "beta"),
                ("return_to", "/account"),
            ]),
        ),
    )
    .await;
    assert_eq!(chosen.status(), 303);
    assert_eq!(chosen.headers()["location"], "/account");
    let account = browse(&mut jar, client.get(url("/account"))).await;
    let html = account.text().await.unwrap();
    assert!(
        html.contains("Tenant beta") && html.contains("Change organisation"),
        "{html}"
    );
    let tenants = svc.get_as(jar.get("ids_access"), "/v1/auth/tenants").await;
    assert_eq!(tenants.status, 200, "{tenants:?}");
    let listed: Vec<(String, bool)> = tenants.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (text(&t["id"]), t["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("acme".to_owned(), false), ("beta".to_owned(), true)]
    );

    // The access token has expired (its cookie is gone): four pages at once all refresh with the
    // same refresh token, and the session survives.
    jar.0.remove("ids_access");
    let pages = futures::future::join_all((0..4).map(|_| {
        let mut jar = jar.clone();
        let request = client.get(url("/account"));
        async move {
            let page = browse(&mut jar, request).await;
            (page.status(), jar)
        }
    }))
    .await;
    for (status, _) in &pages {
        assert_eq!(*status, 200, "a concurrent refresh ended the session");
    }
    let newer = pages[0].1.clone();
    assert_ne!(newer.get("ids_session"), jar.get("ids_session"));
    let mut newer_jar = newer.clone();
    let again = browse(&mut newer_jar, client.get(url("/account"))).await;
    assert_eq!(again.status(), 200);

    // Another browser (not holding this one's CSRF cookie) presenting the rotated token is taken
    // for a thief: the session ends, for this browser too.
    let mut thief = Jar::default();
    thief
        .0
        .insert("ids_session".into(), jar.get("ids_session").to_owned());
    let stolen = browse(&mut thief, client.get(url("/account"))).await;
    assert_eq!(stolen.status(), 303);
    let deadline = std::time::Instant::now() + PATIENCE;
    newer_jar.0.remove("ids_access");
    loop {
        let mut attempt = newer_jar.clone();
        if browse(&mut attempt, client.get(url("/account")))
            .await
            .status()
            == 303
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pages_speak_the_language_the_browser_asks_for_unless_the_person_chose_one() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let ada = crate::support::world::join(&svc, EMAIL, "acme", &["user"], PASSWORD).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", svc.base);

    // French for a browser that prefers it, English otherwise (German is not written).
    for (accept, lang, words) in [
        (
            "fr-CA, fr;q=0.9, en;q=0.5",
            "fr",
            "Se souvenir de moi sur cet appareil",
        ),
        ("de-DE, de;q=0.9", "en", "Remember me on this device"),
        ("", "en", "Remember me on this device"),
    ] {
        let page = client
            .get(url("/sign-in"))
            .header("accept-language", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-language"], lang);
        let html = page.text().await.unwrap();
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{html}");
        assert!(html.contains(words), "{html}");
    }

    // A refused form says so in French too.
    let mut jar = Jar::default();
    let refused = browse(
        &mut jar,
        client
            .post(url("/sign-in"))
            .header("accept-language", "fr")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("csrf", "forged"),
                ("email", EMAIL),
                ("password", PASSWORD),
            ])),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let html = refused.text().await.unwrap();
    assert!(html.contains("Ce formulaire a expiré"), "{html}");

    // Signed in, the account page follows the browser until Ada chooses English in her profile.
    browse(&mut jar, client.get(url("/sign-in"))).await;
    let csrf = jar.get("ids_csrf").to_owned();
    let signed_in = browse(
        &mut jar,
        client
            .post(url("/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("csrf", &csrf),
                ("email", EMAIL),
                ("password", PASSWORD),
            ])),
    )
    .await;
    assert_eq!(signed_in.status(), 303);
    let account = |jar: &mut Jar| {
        let request = client.get(url("/account")).header("accept-language", "fr");
        let cookie = jar.header();
        async move {
            request
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let french = account(&mut jar).await;
    assert!(
        french.contains("<h1 id=\"page-title\">Votre compte</h1>"),
        "{french}"
    );
    assert!(french.contains("Se déconnecter"), "{french}");
    let chosen = svc
        .send(
            svc.request_as(
                &ada.token,
                reqwest::Method::PUT,
                &format!("/v1/users/{}/profile", ada.id),
            )
            .json(&json!({"first_name": "Ada", "last_name": "Lovelace", "language": "en"})),
        )
        .await;
    assert_eq!(chosen.status, 200, "{chosen:?}");
    svc.get_at(&format!("/v1/users/{}", ada.id), chosen.position())
        .await;
    let english = account(&mut jar).await;
    assert!(
        english.contains("<h1 id=\"page-title\">Your account</h1>"),
        "{english}"
    );
    assert!(english.contains("<html lang=\"en\">"), "{english}");

    // A page a mailed link opens follows her choice too while her browser is signed in; a
    // browser that is not follows its own language.
    let link_page = |cookie: Option<String>| {
        let mut request = client
            .get(url("/verify-email"))
            .header("accept-language", "fr");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let hers = link_page(Some(jar.header())).await;
    assert!(
        hers.contains("This page opens from the link in your email"),
        "{hers}"
    );
    let anyone = link_page(None).await;
    assert!(
        anyone.contains("Cette page s’ouvre depuis le lien de votre e-mail"),
        "{anyone}"
    );
}

/// The administration console's people screen (issue 17, its first screen): the organisation's
/// directory searched, sorted and paged over plain HTTP, as a browser without JavaScript uses it;
/// refused to a member without `users:read` and to an administrator whose `dashboard_access` is
/// off; in the language the browser asks for.
#[tokio::test]
async fn the_console_lists_searches_and_pages_the_organisation_s_people() {
    use crate::support::world::{Account, join};

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    for name in ["zoe", "yann", "xavier"] {
        svc.create_user("acme", &format!("{name}@example.com"), &["user"])
            .await;
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |account: Option<&Account>, path: &str, lang: &str| {
        let mut request = client
            .get(svc.url(path))
            .header("accept-language", lang.to_owned());
        if let Some(account) = account {
            request = request.header(
                "cookie",
                format!(
                    "ids_access={}; ids_session={}",
                    account.token, account.refresh
                ),
            );
        }
        async move {
            let answer = request.send().await.unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let post = |account: &Account, path: &str, pairs: &[(&str, &str)]| {
        client
            .post(svc.url(path))
            .header(
                "cookie",
                format!(
                    "ids_access={}; ids_session={}; ids_csrf=console-csrf",
                    account.token, account.refresh
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs))
    };
    eventually("the new people are found", || async {
        get(Some(&admin), "/admin/users?q=xavier", "en")
            .await
            .1
            .contains("xavier@example.com")
    })
    .await;

    let (status, page) = get(Some(&admin), "/admin/users?q=XAVIER&status=", "en").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("xavier@example.com") && !page.contains("zoe@example.com"),
        "{page}"
    );
    assert!(page.contains("1 people"), "{page}");

    // Two at a time, by email: every person once, in order, across the pages.
    let mut seen = Vec::new();
    let mut path = "/admin/users?limit=2&sort=email:asc".to_owned();
    loop {
        let (status, page) = get(Some(&admin), &path, "en").await;
        assert_eq!(status, 200, "{path}: {page}");
        seen.extend(
            page.split("<td>")
                .filter_map(|cell| cell.split("</td>").next())
                .filter(|cell| cell.ends_with("@example.com"))
                .map(str::to_owned),
        );
        // The link as the browser reads it (minijinja escapes `/` and `&` in attributes).
        let Some(next) = page.split("<a href=\"").find_map(|rest| {
            let href = rest
                .split('"')
                .next()?
                .replace("&#x2f;", "/")
                .replace("&amp;", "&");
            href.starts_with("/admin/users?").then_some(href)
        }) else {
            break;
        };
        path = next;
    }
    assert_eq!(
        seen,
        [
            "boss@example.com",
            "member@example.com",
            "xavier@example.com",
            "yann@example.com",
            "zoe@example.com"
        ]
    );

    // A malformed search says what is wrong and changes nothing.
    let (status, page) = get(Some(&admin), "/admin/users?sort=shoe_size", "en").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("sort"), "{page}");

    // In French when the browser asks for it.
    let (status, page) = get(Some(&admin), "/admin/users", "fr").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Personnes") && page.contains("Rechercher"),
        "{page}"
    );

    // Not to a member without users:read, nor to anyone not signed in.
    assert_eq!(get(Some(&member), "/admin/users", "en").await.0, 403);
    let (status, _) = get(None, "/admin/users", "en").await;
    assert_eq!(status, 303);

    // Inviting from the console: by email, and as a link shown once; not by a member.
    let invite = |account: &Account, pairs: &[(&str, &str)]| {
        let request = post(account, "/admin/users/invite", pairs);
        async move {
            let answer = request.send().await.unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let newcomer = |email: &'static str, delivery: &'static str| {
        [
            ("csrf", "console-csrf"),
            ("email", email),
            ("first_name", "New"),
            ("last_name", "Comer"),
            ("role", ""),
            ("delivery", delivery),
        ]
    };
    let (status, page) = invite(&admin, &newcomer("mailed@example.com", "email")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("The invitation is on its way."), "{page}");
    mailed_link(&svc, "mailed@example.com", "", "/accept-invitation?").await;
    let (status, page) = invite(&admin, &newcomer("linked@example.com", "link")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("shown only now") && page.contains("accept-invitation"),
        "{page}"
    );
    let (status, page) = invite(&member, &newcomer("nope@example.com", "email")).await;
    assert_eq!(status, 403, "{page}");
    let mut wrong_role = newcomer("role@example.com", "email");
    wrong_role[4] = ("role", "Not A Role!");
    assert_eq!(invite(&admin, &wrong_role).await.0, 422);

    // One person's page, and changes of their status through its buttons.
    let status_of = |page: &str| {
        ["Active", "Suspended", "Inactive"]
            .into_iter()
            .find(|label| page.contains(&format!("<dd>{label}</dd>")))
            .unwrap_or("?")
            .to_owned()
    };
    let person = format!("/admin/users/{}", member.id);
    let (status, page) = get(Some(&admin), &person, "en").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("member@example.com"), "{page}");
    assert_eq!(status_of(&page), "Active");
    for (action, after) in [
        ("suspend", "Suspended"),
        ("reinstate", "Active"),
        ("deactivate", "Inactive"),
        ("reactivate", "Active"),
    ] {
        let answer = post(
            &admin,
            &format!("{person}/status"),
            &[("csrf", "console-csrf"), ("action", action)],
        )
        .send()
        .await
        .unwrap();
        assert_eq!(answer.status(), 303, "{action}");
        let (_, page) = get(Some(&admin), &person, "en").await;
        assert_eq!(status_of(&page), after, "after {action}: {page}");
    }
    // A suspension with an end and a reason; a malformed end changes nothing.
    let suspend = |until: &str| {
        post(
            &admin,
            &format!("{person}/status"),
            &[
                ("csrf", "console-csrf"),
                ("action", "suspend"),
                ("until", until),
                ("reason", "holiday cover"),
            ],
        )
        .send()
    };
    let before = svc.log_position().await;
    assert_eq!(suspend("next tuesday").await.unwrap().status(), 422);
    assert_eq!(svc.log_position().await, before);
    assert_eq!(suspend("2099-01-31").await.unwrap().status(), 303);
    let user = svc.get(&format!("/v1/users/{}", member.id)).await;
    assert_eq!(
        user.body["suspended_until"], "2099-01-31T00:00:00Z",
        "{user:?}"
    );
    let reinstated = post(
        &admin,
        &format!("{person}/status"),
        &[("csrf", "console-csrf"), ("action", "reinstate")],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(reinstated.status(), 303);

    // The person's page tells what happened to them, newest first, and who did it.
    let (_, page) = get(Some(&admin), &person, "en").await;
    assert!(page.contains("What happened to them lately"), "{page}");
    // The latest were: reactivated, suspended until 2099, reinstated.
    let reinstated = page
        .find("reinstated")
        .expect("the reinstatement in the trail");
    let reactivated = page
        .find("reactivated")
        .expect("the reactivation in the trail");
    assert!(reinstated < reactivated, "newest first: {page}");
    assert!(page.contains(&format!("user {}", admin.id)), "{page}");

    // Ending the member's sessions: their tokens no longer open their account.
    let answer = post(
        &admin,
        &format!("{person}/status"),
        &[("csrf", "console-csrf"), ("action", "end_sessions")],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(svc.get_as(&member.token, "/v1/auth/me").await.status, 401);

    // The roles, how many hold each, and one role's permission matrix and holders.
    let (status, page) = get(Some(&admin), "/admin/roles", "en").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("href=\"/admin/roles/admin\""), "{page}");
    let (status, page) = get(Some(&admin), "/admin/roles/user", "en").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("member@example.com"), "{page}");
    assert_eq!(
        get(Some(&admin), "/admin/roles/no-such-role", "en").await.0,
        404
    );
    // (A member without roles:read is refused: the route-by-route test checks every page.)
    let (_, page) = get(Some(&admin), "/admin/roles/admin", "en").await;
    assert!(
        page.contains("<dt>Global access</dt><dd>yes</dd>"),
        "{page}"
    );
    let defined = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "helpdesk", "permissions": ["users:read", "users:update", "role.user:assign"]}),
        )
        .await;
    assert_eq!(defined.status, 201, "{defined:?}");
    eventually("the new role shows", || async {
        get(Some(&admin), "/admin/roles/helpdesk", "en").await.0 == 200
    })
    .await;
    let (_, page) = get(Some(&admin), "/admin/roles/helpdesk", "en").await;
    let row = page
        .split("<th scope=\"row\">users</th>")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no users row: {page}"));
    let given: Vec<bool> = row
        .split("<td>")
        .skip(1)
        .map(|cell| {
            let cell = cell.split("</td>").next().unwrap_or("");
            cell.starts_with('✓') || cell.contains(" checked>")
        })
        .collect();
    assert_eq!(
        given,
        [true, false, true, false],
        "read, create, update, delete: {row}"
    );
    assert!(page.contains("<code>role.user:assign</code>"), "{page}");

    // The matrix saved from the page: checked boxes given, the rest taken, other permissions
    // kept; the built-in admin role offers no form.
    let saved = post(
        &admin,
        "/admin/roles/helpdesk/permissions",
        &[
            ("csrf", "console-csrf"),
            ("description", "Answers the phone"),
            ("permission", "users:read"),
            ("permission", "roles:read"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(saved.status(), 303);
    eventually("the matrix is saved", || async {
        let role = svc.get("/v1/tenants/acme/roles/helpdesk").await.body;
        role["description"] == "Answers the phone"
    })
    .await;
    let role = svc.get("/v1/tenants/acme/roles/helpdesk").await.body;
    let mut permissions: Vec<&str> = role["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    permissions.sort();
    assert_eq!(
        permissions,
        ["role.user:assign", "roles:read", "users:read"]
    );
    assert_eq!(role["global_access"], false);
    let (_, page) = get(Some(&admin), "/admin/roles/admin", "en").await;
    assert!(!page.contains("/permissions\""), "{page}");

    // Giving a role to people named by address or id, and taking it from one, from its page.
    let members_form =
        |pairs: &[(&str, &str)]| post(&admin, "/admin/roles/helpdesk/members", pairs);
    let xavier = svc.get("/v1/tenants/acme/users?q=xavier").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let given = members_form(&[
        ("csrf", "console-csrf"),
        ("add", &format!("ZOE@example.com, {xavier}")),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(given.status(), 303);
    eventually("both hold the role", || async {
        let page = get(Some(&admin), "/admin/roles/helpdesk", "en").await.1;
        page.contains("zoe@example.com") && page.contains("xavier@example.com")
    })
    .await;
    let taken = members_form(&[("csrf", "console-csrf"), ("remove", &xavier)])
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 303);
    eventually("xavier no longer holds it", || async {
        !get(Some(&admin), "/admin/roles/helpdesk", "en")
            .await
            .1
            .contains("xavier@example.com")
    })
    .await;
    // Someone who is not of the organisation is named in the answer, and nothing else changes.
    let refused = members_form(&[("csrf", "console-csrf"), ("add", "stranger@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    assert!(text.contains("stranger@example.com"), "{text}");

    // Erasure says what it does first, and needs the person's address typed again.
    let zoe = svc.get("/v1/tenants/acme/users?q=zoe").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let erase_page = format!("/admin/users/{zoe}/erase");
    let (status, page) = get(Some(&admin), &erase_page, "en").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("cannot be undone") && page.contains("zoe@example.com"),
        "{page}"
    );
    let erase = |confirm: &str| {
        post(
            &admin,
            &erase_page,
            &[("csrf", "console-csrf"), ("confirm", confirm)],
        )
        .send()
    };
    let before = svc.log_position().await;
    assert_eq!(erase("xavier@example.com").await.unwrap().status(), 422);
    assert_eq!(
        svc.log_position().await,
        before,
        "a wrong confirmation erases nothing"
    );
    assert_eq!(erase("Zoe@Example.com").await.unwrap().status(), 303);
    let erased = svc.get(&format!("/v1/users/{zoe}")).await;
    assert_eq!(erased.body["status"], "erased", "{erased:?}");

    // Someone of another organisation reads exactly like nobody.
    svc.create_tenant("globex").await;
    let (outsider, _) = svc
        .create_user("globex", "outsider@example.com", &["user"])
        .await;
    let (status, elsewhere) = get(Some(&admin), &format!("/admin/users/{outsider}"), "en").await;
    let (nobody_status, nobody) = get(
        Some(&admin),
        "/admin/users/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "en",
    )
    .await;
    assert_eq!((status, nobody_status), (404, 404));
    assert_eq!(elsewhere, nobody);
    assert!(!elsewhere.contains("outsider"), "{elsewhere}");

    // In a browser: sent to sign in on the way, then the screen, searched and paged, with no
    // serious accessibility violation.
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "console-people").await;
    browser
        .goto(&format!("{}/admin/users?limit=2", svc.base))
        .await;
    browser.expect_text("Remember me").await;
    browser.fill("email", "boss@example.com").await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("boss@example.com").await;
    browser.check_accessibility().await;
    browser.click("a[href*='cursor=']").await;
    browser.wait_for_url(|u| u.contains("cursor=")).await;
    browser.expect_no_text("boss@example.com").await;
    browser.fill("q", "yann").await;
    browser.click("form.search button[type=submit]").await;
    browser.expect_text("yann@example.com").await;
    browser.expect_no_text("xavier@example.com").await;
    browser.check_accessibility().await;
    for page in [
        "/admin/roles",
        "/admin/roles/helpdesk",
        "/admin/roles/admin",
    ] {
        browser.goto(&format!("{}{page}", svc.base)).await;
        browser.expect_text("Global access").await;
        browser.check_accessibility().await;
    }
    browser
        .goto(&format!("{}/admin/users/{}", svc.base, member.id))
        .await;
    browser.expect_text("member@example.com").await;
    browser.check_accessibility().await;
    browser
        .goto(&format!("{}/admin/users/{}/erase", svc.base, member.id))
        .await;
    browser.expect_text("cannot be undone").await;
    browser.check_accessibility().await;
    browser.close().await;

    // Nor to an administrator whose dashboard_access flag is off.
    let flags = svc
        .put(
            &format!("/v1/users/{}/flags", admin.id),
            json!({"dashboard_access": false, "api_access": true, "platform_admin": false}),
        )
        .await;
    assert_eq!(flags.status, 200, "{flags:?}");
    eventually("the console refuses the administrator", || async {
        get(Some(&admin), "/admin/users", "en").await.0 == 403
    })
    .await;
}

/// The console's records, trail and time travel (issue 17): in Chromium an administrator finds a
/// person by part of their name, gives them a role on the role's page, grants them a record,
/// then sees the grant in the trail and, from the trail, who could read the record just before
/// and just after it (point-in-time replay), side by side. A member without administrative
/// rights can neither open these screens nor post their form; another organisation's
/// administrator sees nothing of it. axe finds no serious violation on any of them.
#[tokio::test]
async fn the_console_grants_a_record_and_shows_it_in_the_trail_and_in_time_travel() {
    use crate::support::world::{Account, join};

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let outsider = join(&svc, "outsider@example.com", "globex", &["admin"], PASSWORD).await;
    let grace = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper", "roles": ["user"]}),
        )
        .await;
    assert_eq!(grace.status, 201, "{grace:?}");
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["id", "title"], "rls": true,
                   "policy": {"read": ["_CREATOR"]}}),
        )
        .await;
    assert_eq!(entity.status, 201, "{entity:?}");
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "reviewer", "description": "Reviews projects", "permissions": [], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");

    // Neither a member nor another organisation's administrator gets anything.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |account: &Account| {
        format!(
            "ids_access={}; ids_session={}; ids_csrf=console-csrf",
            account.token, account.refresh
        )
    };
    for path in [
        "/admin/records",
        "/admin/records?entity=project&record=apollo",
        "/admin/audit",
        "/admin/time-travel?entity=project&record=apollo&permission=read&at=1",
    ] {
        let answer = client
            .get(svc.url(path))
            .header("cookie", cookie(&member))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403, "{path}");
    }
    let before = svc.log_position().await;
    let posted = client
        .post(svc.url("/admin/records/grants"))
        .header("cookie", cookie(&member))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=console-csrf&entity=project&record=apollo&person=member%40example.com&action=grant&access=read_write")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403);
    assert_eq!(svc.log_position().await, before, "a refused grant appended");

    // In a browser, as acme's administrator.
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "console-records").await;
    browser.goto(&format!("{}/admin/users", svc.base)).await;
    browser.expect_text("Remember me").await;
    browser.fill("email", "boss@example.com").await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text("boss@example.com").await;
    browser.fill("q", "hopp").await;
    browser.click("form.search button[type=submit]").await;
    browser.expect_text("grace@example.com").await;
    browser.expect_no_text("member@example.com").await;

    // A role through the role's page, then the record.
    browser
        .goto(&format!("{}/admin/roles/reviewer", svc.base))
        .await;
    browser.fill("add", "grace@example.com").await;
    browser
        .click("form[action$='/members'] button[type=submit]")
        .await;
    browser.expect_text("grace@example.com").await;

    browser.goto(&format!("{}/admin/records", svc.base)).await;
    browser.expect_text("project").await;
    browser.check_accessibility().await;
    browser.fill("entity", "project").await;
    browser.fill("record", "apollo").await;
    browser.click("form[role=search] button[type=submit]").await;
    browser
        .expect_text("Nobody holds a grant or a local role on it.")
        .await;
    browser.fill("grant-person", "grace@example.com").await;
    browser
        .click("form[aria-labelledby=grant-title] button[type=submit]")
        .await;
    browser.expect_text("read only").await;
    browser.expect_text("grace@example.com").await;
    browser.check_accessibility().await;

    // The trail says so, with a way to see the access before and after.
    browser.goto(&format!("{}/admin/audit", svc.base)).await;
    browser.expect_text("RecordGranted").await;
    browser.check_accessibility().await;
    browser.click("a.before-after").await;
    browser
        .wait_for_url(|u| u.contains("/admin/time-travel"))
        .await;
    browser.expect_text("a grant (read only)").await;
    browser.check_accessibility().await;
    browser.goto(&format!("{}/admin/settings", svc.base)).await;
    browser.expect_text("Save the settings").await;
    browser.check_accessibility().await;
    browser
        .goto(&format!("{}/admin/access-review", svc.base))
        .await;
    browser.expect_text("Who holds what").await;
    browser.check_accessibility().await;
    browser
        .goto(&format!("{}/admin/records?entity=project", svc.base))
        .await;
    browser.expect_text("Save the entity").await;
    browser.check_accessibility().await;
    browser.goto(&format!("{}/admin/audit", svc.base)).await;
    browser.click("a.before-after").await;
    browser
        .wait_for_url(|u| u.contains("/admin/time-travel"))
        .await;
    let page = browser.text_now().await;
    let sections: Vec<&str> = page.split("As of #").skip(1).collect();
    assert_eq!(sections.len(), 2, "{page}");
    assert!(!sections[0].contains("grace@example.com"), "{page}");
    assert!(sections[1].contains("grace@example.com"), "{page}");
    browser.close().await;

    // The access review says so too, as a table and as a CSV download; not to a member.
    let review = |account: &Account, path: &'static str| {
        let request = client.get(svc.url(path)).header("cookie", cookie(account));
        async move {
            let answer = request.send().await.unwrap();
            let kind = answer
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (answer.status().as_u16(), kind, answer.text().await.unwrap())
        }
    };
    let (status, _, page) = review(&admin, "/admin/access-review").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("apollo (project): read only"), "{page}");
    assert!(page.contains("grace@example.com"), "{page}");
    let (status, kind, csv) = review(&admin, "/admin/access-review?format=csv").await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    assert!(csv.starts_with("tenant,user,email,"), "{csv}");
    assert!(csv.contains("grace@example.com"), "{csv}");
    assert_eq!(review(&member, "/admin/access-review").await.0, 403);

    // The same screens of another organisation show nothing of acme's.
    for path in [
        "/admin/audit",
        "/admin/time-travel?entity=project&record=apollo&permission=read&at=999999",
    ] {
        let answer = client
            .get(svc.url(path))
            .header("cookie", cookie(&outsider))
            .send()
            .await
            .unwrap();
        let body = answer.text().await.unwrap();
        assert!(
            !body.contains("grace@example.com") && !body.contains("apollo (project)"),
            "{path}: {body}"
        );
    }
}

/// A service whose public URL is `http://localhost:<port>`: browsers take a host name, never an
/// IP address, as a WebAuthn relying party, so the passkey pages are browsed at that origin.
async fn service_at_localhost(dir: &std::path::Path) -> (Service, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://localhost:{port}");
    let svc = Service::embedded_with_env(
        dir,
        &[
            ("IDSTREAM_LISTEN", &format!("127.0.0.1:{port}")),
            ("IDSTREAM_PUBLIC_URL", &origin),
        ],
    )
    .await;
    (svc, origin)
}

/// Passkeys (issue 21) in Chromium with its virtual authenticator (WebDriver's WebAuthn
/// extension): one is added on the account page (bringing recovery codes), signs in alone
/// without a user name or password, then as the second factor after the password; a copy of
/// the key whose signature counter went back (a cloned authenticator) is refused and the trail
/// says why; the same service browsed at another origin (its IP address) cannot use the
/// passkey; and the passkey is removed.
#[tokio::test]
async fn a_passkey_is_added_signs_in_alone_and_as_a_second_factor_and_a_clone_is_refused_in_a_browser()
 {
    let dir = tempfile::tempdir().unwrap();
    let (svc, origin) = service_at_localhost(dir.path()).await;
    svc.create_tenant("acme").await;
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "roles": ["user"]}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let token = invitation_token(&svc, EMAIL).await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let user = text(&accepted.body["user"]);

    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "passkeys").await;
    browser.goto(&format!("{origin}/sign-in")).await;
    let authenticator = browser.add_virtual_authenticator().await;

    // Signed in with the password, Ada adds a passkey.
    browser
        .goto(&format!("{origin}/sign-in?return_to=/account/passkeys"))
        .await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser.click("form[action='/sign-in'] button").await;
    browser.expect_text("You have no passkey yet.").await;
    browser.check_accessibility().await;
    browser.fill("passkey-name", "Laptop").await;
    browser.click("#add-passkey").await;
    browser.expect_text("Keep these recovery codes").await;
    browser.expect_text("Laptop").await;
    let held = browser.authenticator_credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["rpId"], "localhost");
    assert_eq!(held[0]["isResidentCredential"], true);

    // Signed out, the passkey alone signs in: no email address, no password.
    browser.goto(&format!("{origin}/account")).await;
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Sign in with a passkey").await;
    browser.click("#passkey-sign-in").await;
    browser.expect_text("Your account").await;
    browser.expect_text("Ada Lovelace").await;

    // With the password, the passkey is the second factor.
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Sign in with a passkey").await;
    browser.fill("email", EMAIL).await;
    browser.fill("password", PASSWORD).await;
    browser.click("form[action='/sign-in'] button").await;
    browser.expect_text("Use a passkey instead").await;
    browser.click("#passkey-second-factor").await;
    browser.expect_text("Your account").await;

    // A copy of the key whose counter is behind the genuine one's is refused.
    browser.click("form[action='/sign-out'] button").await;
    browser.expect_text("Sign in with a passkey").await;
    let genuine = browser.authenticator_credentials(&authenticator).await[0].clone();
    let used = genuine["signCount"].as_u64().unwrap();
    assert!(
        used >= 3,
        "the authenticator counts its signatures: {genuine}"
    );
    let mut clone = genuine.clone();
    clone["signCount"] = json!(0);
    browser
        .remove_authenticator_credentials(&authenticator)
        .await;
    browser
        .add_authenticator_credential(&authenticator, clone)
        .await;
    browser.click("#passkey-sign-in").await;
    browser
        .expect_text("Your passkey could not sign you in.")
        .await;
    assert!(browser.url().await.ends_with("/sign-in/passkey"));
    let position = svc.log_position().await;
    let trail = svc
        .get_at(
            &format!("/v1/audit/events?tenant=_&subject={user}&type=PasskeyCounterRegressed"),
            position,
        )
        .await;
    assert_eq!(trail.status, 200, "{trail:?}");
    let summary = text(&trail.body["items"][0]["summary"]);
    assert!(
        summary.contains(&format!("went back from {used} to 1")),
        "{summary}"
    );

    // The genuine key, back in the authenticator, still signs in.
    browser
        .remove_authenticator_credentials(&authenticator)
        .await;
    browser
        .add_authenticator_credential(&authenticator, genuine)
        .await;
    browser.goto(&format!("{origin}/sign-in")).await;
    browser.click("#passkey-sign-in").await;
    browser.expect_text("Your account").await;

    // The same service at another origin (its IP address): the passkey is not offered there.
    let elsewhere = svc.base.clone();
    assert!(elsewhere.starts_with("http://127.0.0.1:"), "{elsewhere}");
    browser.goto(&format!("{elsewhere}/sign-in")).await;
    browser.click("#passkey-sign-in").await;
    browser
        .expect_text("Your passkey could not sign you in.")
        .await;
    assert!(
        browser.url().await.ends_with("/sign-in"),
        "no sign-in happened"
    );

    // Back home, a fresh sign-in removes the passkey, Ada's last second factor.
    browser.goto(&format!("{origin}/account/passkeys")).await;
    browser.expect_text("Laptop").await;
    browser
        .click("#passkeys form[action='/account/passkeys/remove'] button")
        .await;
    browser.expect_text("The passkey was removed.").await;
    browser.expect_text("You have no passkey yet.").await;
    browser.close().await;
}

/// The console's settings screen (issue 17): an administrator reads and saves the organisation's
/// settings through the settings operation; a form the service refuses (a password length below
/// 8) is shown again with what was wrong and changes nothing; a holder of `settings:read` alone
/// sees the settings without a button, and their posted form is refused; a member without the
/// console gets nothing.
#[tokio::test]
async fn the_console_settings_screen_saves_only_what_the_caller_may_change() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "viewer", "description": "Reads settings", "permissions": ["settings:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let viewer = join(&svc, "viewer@example.com", "acme", &["viewer"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let console = Console::new(&svc);
    let settings = "/admin/settings";
    let form = |min_length: &'static str| {
        vec![
            ("default_role", "user"),
            ("require_email_verification", "on"),
            ("min_length", min_length),
            ("max_length", "128"),
            ("require_digit", "on"),
            ("deny_common", "on"),
            ("invitation_ttl_hours", "48"),
            ("session_idle_minutes", "30"),
            ("session_max_hours", "12"),
            ("magic_link_ttl_minutes", "10"),
            ("remember_days", "0"),
            ("logo_url", ""),
            ("brand_colour", "#336699"),
            ("language", "fr"),
        ]
    };

    let (status, page) = console.get(&admin, settings).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Save the settings"), "{page}");
    let (status, _) = console.post(&admin, settings, &form("12")).await;
    assert_eq!(status, 303);
    eventually("the settings are saved", || async {
        svc.get("/v1/tenants/acme/settings").await.body["password_policy"]["min_length"] == 12
    })
    .await;
    let saved = svc.get("/v1/tenants/acme/settings").await;
    assert_eq!(saved.body["password_policy"]["require_digit"], true);
    assert_eq!(saved.body["remember_days"], 0);
    assert_eq!(saved.body["brand_colour"], "#336699");
    assert_eq!(saved.body["language"], "fr");
    assert_eq!(saved.body["self_registration"], false);
    let (_, page) = console.get(&admin, settings).await;
    assert!(page.contains("value=\"12\""), "{page}");

    let before = svc.log_position().await;
    let (status, page) = console.post(&admin, settings, &form("4")).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");
    let (status, page) = console.post(&admin, settings, &form("twelve")).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("must be a whole number"), "{page}");
    assert_eq!(svc.log_position().await, before, "a refused form appended");

    let (status, page) = console.get(&viewer, settings).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("Save the settings"), "{page}");
    assert!(page.contains("disabled"), "{page}");
    let (status, _) = console.post(&viewer, settings, &form("14")).await;
    assert_eq!(status, 403);
    assert_eq!(console.get(&member, settings).await.0, 403);
    let (status, _) = console.post(&member, settings, &form("14")).await;
    assert_eq!(status, 403);
    assert_eq!(svc.log_position().await, before, "a refused form appended");
}

/// The console's entity forms (issue 17): an administrator registers an entity, changes its
/// fields, row-level security and policy (each through its own operation, only what changed),
/// and hides a field from a role; system fields stay whatever is posted; a policy naming nobody
/// real is refused and changes nothing; a member gets nothing.
#[tokio::test]
async fn the_console_registers_and_edits_an_entity_and_its_field_rules() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let console = Console::new(&svc);
    let entities = "/admin/entities";
    let entity = || async { svc.get("/v1/tenants/acme/entities/contract").await };

    let registered = console
        .post(
            &admin,
            entities,
            &[
                ("action", "register"),
                ("entity", "contract"),
                ("fields", "title, budget"),
                ("rls", "on"),
                ("read", "_CREATOR"),
            ],
        )
        .await;
    assert_eq!(registered.0, 303, "{}", registered.1);
    eventually("the entity is registered", || async {
        entity().await.status == 200
    })
    .await;

    let saved = console
        .post(
            &admin,
            entities,
            &[
                ("action", "save"),
                ("entity", "contract"),
                ("fields", "id, title, budget, owner_note"),
                ("read", "_CREATOR, user"),
                ("update", "_CREATOR"),
            ],
        )
        .await;
    assert_eq!(saved.0, 303, "{}", saved.1);
    eventually("the entity is changed", || async {
        let body = entity().await.body;
        body["rls"] == false
            && body["policy"]["read"]
                .as_array()
                .is_some_and(|r| r.len() == 2)
    })
    .await;
    // The system fields (`id`…) are implicit: one posted among the fields is left out.
    assert_eq!(
        entity().await.body["fields"],
        json!(["title", "budget", "owner_note"])
    );

    let rules = console
        .post(
            &admin,
            entities,
            &[
                ("action", "rules"),
                ("entity", "contract"),
                ("role", "user"),
                ("hidden_budget", "on"),
                ("hidden_id", "on"),
            ],
        )
        .await;
    assert_eq!(rules.0, 303, "{}", rules.1);
    eventually("the field rule holds", || async {
        entity().await.body["hidden"]["user"] == json!(["budget"])
    })
    .await;
    let (_, page) = console.get(&admin, "/admin/records?entity=contract").await;
    assert!(
        page.contains("id=\"hide-user-budget\" name=\"hidden_budget\" value=\"on\" checked"),
        "{page}"
    );
    assert!(page.contains("🔒"), "{page}");

    let before = svc.log_position().await;
    let refused = console
        .post(
            &admin,
            entities,
            &[
                ("action", "save"),
                ("entity", "contract"),
                ("fields", "title"),
                ("read", "Not A Role!"),
            ],
        )
        .await;
    assert_eq!(refused.0, 422, "{}", refused.1);
    let refused = console
        .post(
            &member,
            entities,
            &[
                ("action", "register"),
                ("entity", "sneaky"),
                ("fields", "x"),
            ],
        )
        .await;
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert_eq!(svc.log_position().await, before, "a refused form appended");
}

/// The console leaves out what the caller could not use (issue 17): a person who may read the
/// directory and the roles but change nothing sees no invitation form, no status buttons, no
/// erase link, no save button on a role's matrix and no forms to give or take a role; an
/// administrator sees them all.
#[tokio::test]
async fn the_console_leaves_out_the_forms_the_caller_could_not_use() {
    use crate::support::world::{Account, join};

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "observer", "description": "Looks only", "permissions": ["users:read", "roles:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let observer = join(
        &svc,
        "observer@example.com",
        "acme",
        &["observer"],
        PASSWORD,
    )
    .await;
    let (someone, _) = svc
        .create_user("acme", "someone@example.com", &["user"])
        .await;
    let client = reqwest::Client::new();
    let page = |account: &Account, path: String| {
        let request = client.get(svc.url(&path)).header(
            "cookie",
            format!(
                "ids_access={}; ids_session={}",
                account.token, account.refresh
            ),
        );
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{path}");
            answer.text().await.unwrap()
        }
    };
    let forms = [
        ("/admin/users".to_owned(), "action=\"/admin/users/invite\""),
        (
            format!("/admin/users/{someone}"),
            "name=\"action\" value=\"suspend\"",
        ),
        (format!("/admin/users/{someone}"), "/erase\""),
        ("/admin/roles/user".to_owned(), "Save the permissions"),
        ("/admin/roles/user".to_owned(), "name=\"remove\""),
        ("/admin/roles/user".to_owned(), "name=\"add\""),
    ];
    for (path, form) in &forms {
        let seen = page(&admin, path.clone()).await;
        assert!(
            seen.contains(form),
            "the administrator misses {form} on {path}"
        );
        let seen = page(&observer, path.clone()).await;
        assert!(!seen.contains(form), "the observer sees {form} on {path}");
    }
}

/// The what-if preview on a role's matrix (issue 17): "Preview the change" decides the role's new
/// permissions as a dry run, appends nothing, and lists whose access would change and how; its
/// form then saves exactly that.
#[tokio::test]
async fn the_console_previews_a_role_change_before_saving_it() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "helpdesk", "description": "Helps", "permissions": ["users:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let (helper, at) = svc
        .create_user("acme", "helper@example.com", &["helpdesk"])
        .await;
    svc.get_at("/v1/tenants/acme/roles/helpdesk", at).await;
    let console = Console::new(&svc);
    let permissions = "/admin/roles/helpdesk/permissions";
    let change = [
        ("description", "Helps more"),
        ("permission", "users:read"),
        ("permission", "audit:read"),
    ];
    let before = svc.log_position().await;
    let mut previewing = change.to_vec();
    previewing.push(("intent", "preview"));
    let (status, page) = console.post(&admin, permissions, &previewing).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(svc.log_position().await, before, "a preview appended");
    let row = page
        .split("<tr>")
        .find(|row| row.contains(&helper) || row.contains("helper@example.com"))
        .unwrap_or_else(|| panic!("the helper is not in the preview: {page}"));
    assert!(row.contains("audit:read"), "{row}");
    assert!(
        page.contains("name=\"permission\" value=\"audit:read\""),
        "{page}"
    );
    assert!(!page.contains("name=\"intent\""), "{page}");

    let (status, _) = console.post(&admin, permissions, &change).await;
    assert_eq!(status, 303);
    eventually("the role is saved", || async {
        svc.get("/v1/tenants/acme/roles/helpdesk").await.body["permissions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "audit:read"))
    })
    .await;
}

/// The console defines a role, gives it on one record only and takes it back, and deletes the
/// role (issue 17): each through its operation, refused to a member without the permission
/// (nothing appended); a role still held is not deleted.
#[tokio::test]
async fn the_console_defines_a_role_gives_it_on_a_record_and_deletes_it() {
    use crate::support::world::{Account, join};

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title"], "rls": true}),
        )
        .await;
    assert_eq!(entity.status, 201, "{entity:?}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |account: &Account, path: &'static str, pairs: &[(&str, &str)]| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", "console-csrf");
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        let request = client
            .post(svc.url(path))
            .header(
                "cookie",
                format!(
                    "ids_access={}; ids_session={}; ids_csrf=console-csrf",
                    account.token, account.refresh
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish());
        async move {
            let answer = request.send().await.unwrap();
            let location = answer
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (
                answer.status().as_u16(),
                location,
                answer.text().await.unwrap(),
            )
        }
    };
    let record_page = || async {
        client
            .get(svc.url("/admin/records?entity=project&record=apollo"))
            .header(
                "cookie",
                format!("ids_access={}; ids_session={}", admin.token, admin.refresh),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let before = svc.log_position().await;
    let (status, _, _) = post(&member, "/admin/roles", &[("name", "reviewers")]).await;
    assert_eq!(status, 403);
    assert_eq!(svc.log_position().await, before, "a refused form appended");
    let (status, location, page) = post(
        &admin,
        "/admin/roles",
        &[("name", "reviewers"), ("description", "Review projects")],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/admin/roles/reviewers"),
        "{page}"
    );
    let role = svc.get("/v1/tenants/acme/roles/reviewers").await;
    assert_eq!(role.status, 200, "{role:?}");
    assert_eq!(role.body["description"], "Review projects");

    let local = [
        ("entity", "project"),
        ("record", "apollo"),
        ("person", "member@example.com"),
        ("action", "local_role"),
        ("role", "reviewers"),
    ];
    let (status, _, page) = post(&admin, "/admin/records/grants", &local).await;
    assert_eq!(status, 303, "{page}");
    assert!(record_page().await.contains("Take local role reviewers"));
    let mut taking = local.to_vec();
    taking[3] = ("action", "revoke_local_role");
    let (status, _, page) = post(&admin, "/admin/records/grants", &taking).await;
    assert_eq!(status, 303, "{page}");
    assert!(!record_page().await.contains("Take local role reviewers"));

    // Held by someone, it stays; once nobody holds it, it goes.
    let given = svc
        .post(
            &format!("/v1/tenants/acme/users/{}/roles", member.id),
            json!({"role": "reviewers"}),
        )
        .await;
    assert_eq!(given.status, 200, "{given:?}");
    svc.get_at("/v1/tenants/acme/roles/reviewers", given.position())
        .await;
    let (status, _, _) = post(&admin, "/admin/roles/reviewers/delete", &[]).await;
    assert_eq!(status, 422);
    let taken = svc
        .delete(&format!(
            "/v1/tenants/acme/users/{}/roles/reviewers",
            member.id
        ))
        .await;
    assert!(taken.status < 300, "{taken:?}");
    svc.get_at("/v1/tenants/acme/roles/reviewers", taken.position())
        .await;
    let (status, location, page) = post(&admin, "/admin/roles/reviewers/delete", &[]).await;
    assert_eq!((status, location.as_str()), (303, "/admin/roles"), "{page}");
    assert_eq!(
        svc.get("/v1/tenants/acme/roles/reviewers").await.status,
        404
    );
}

/// The console's platform screen (issue 17): a platform administrator sees every organisation,
/// the read models' positions and lag, searches everyone and opens one person's access in each
/// organisation; a tenant's administrator is refused.
#[tokio::test]
async fn the_console_platform_screen_shows_every_organisation_to_platform_administrators_only() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let root = join(&svc, "root@example.com", "acme", &["admin"], PASSWORD).await;
    let (zed, _) = svc
        .create_user("globex", "zed@example.com", &["user"])
        .await;
    let flags = svc
        .put(
            &format!("/v1/users/{}/flags", root.id),
            json!({"dashboard_access": true, "api_access": true, "platform_admin": true}),
        )
        .await;
    assert_eq!(flags.status, 200, "{flags:?}");
    svc.get_at(&format!("/v1/users/{}", root.id), flags.position())
        .await;
    let console = Console::new(&svc);
    assert_eq!(console.get(&admin, "/admin/platform").await.0, 403);
    let (status, page) = console.get(&root, "/admin/platform").await;
    assert_eq!(status, 200, "{page}");
    for text in ["globex", "acme", "directory", "access", "identity"] {
        assert!(page.contains(text), "{text}: {page}");
    }
    // The read models' digests read every tree: only when asked for.
    let digests = |page: &str| {
        let (_, table) = page.split_once("id=\"read-models\"").unwrap();
        table
            .split("</table>")
            .next()
            .unwrap()
            .matches("<code>")
            .count()
    };
    assert_eq!(digests(&page), 0, "{page}");
    assert!(page.contains("Compute the digests"), "{page}");
    let (status, page) = console.get(&root, "/admin/platform?digests=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(digests(&page), 4, "{page}");
    let (_, page) = console.get(&root, "/admin/platform?q=zed").await;
    assert!(page.contains("zed@example.com"), "{page}");
    let (_, page) = console
        .get(&root, &format!("/admin/platform?person={zed}"))
        .await;
    let (_, access) = page
        .split_once("id=\"person-access\"")
        .unwrap_or_else(|| panic!("{page}"));
    let row = access
        .split("<tr>")
        .find(|row| row.contains("<td>globex</td>"))
        .unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains("user"), "{row}");
}

/// A person's page in the console (issue 17): their roles here, given and taken through the
/// role operations; their live sessions; their API keys, revoked from the page. A person who
/// may only read the directory sees the roles and keys without any form, and no sessions.
#[tokio::test]
async fn the_console_person_page_gives_and_takes_roles_and_lists_sessions_and_keys() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "observer", "description": "Looks only", "permissions": ["users:read", "roles:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let observer = join(
        &svc,
        "observer@example.com",
        "acme",
        &["observer"],
        PASSWORD,
    )
    .await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let key = svc
        .post_as(
            &member.token,
            "/v1/tenants/acme/api-keys",
            json!({"name": "deploy bot"}),
        )
        .await;
    assert_eq!(key.status, 201, "{key:?}");
    let console = Console::new(&svc);
    let person = format!("/admin/users/{}", member.id);
    let roles_form = format!("{person}/roles");

    let seen = console.get(&admin, &person).await.1;
    assert!(seen.contains("id=\"person-sessions\""), "{seen}");
    assert!(seen.contains("deploy bot"), "{seen}");
    assert!(seen.contains("name=\"action\" value=\"give\""), "{seen}");
    let seen = console.get(&observer, &person).await.1;
    assert!(seen.contains("deploy bot"), "{seen}");
    assert!(!seen.contains("id=\"person-sessions\""), "{seen}");
    assert!(!seen.contains("name=\"action\" value=\"give\""), "{seen}");
    assert!(!seen.contains("value=\"revoke_key\""), "{seen}");

    let (status, body) = console
        .post(
            &admin,
            &roles_form,
            &[("action", "give"), ("role", "observer")],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let roles = svc
        .get(&format!("/v1/tenants/acme/users/{}/roles", member.id))
        .await;
    assert!(roles.body.to_string().contains("observer"), "{roles:?}");
    let (status, body) = console
        .post(
            &admin,
            &roles_form,
            &[("action", "take"), ("role", "observer")],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let roles = svc
        .get(&format!("/v1/tenants/acme/users/{}/roles", member.id))
        .await;
    assert!(!roles.body.to_string().contains("observer"), "{roles:?}");

    let id = key.body["id"].as_str().unwrap();
    let (status, body) = console
        .post(
            &admin,
            &roles_form,
            &[("action", "revoke_key"), ("key", id)],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let seen = console.get(&admin, &person).await.1;
    assert!(seen.contains("revoked"), "{seen}");
}

/// Bulk actions on the people ticked (issue 17): each person found in the caller's organisation
/// and changed through the same operation as on their page; someone of another organisation or
/// nobody is named in the answer and nothing is done for them; a member without the permission
/// changes nobody.
#[tokio::test]
async fn the_console_suspends_and_reinstates_the_people_ticked() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let (ann, _) = svc.create_user("acme", "ann@example.com", &["user"]).await;
    let (bob, _) = svc.create_user("acme", "bob@example.com", &["user"]).await;
    let (zed, _) = svc
        .create_user("globex", "zed@example.com", &["user"])
        .await;
    let console = Console::new(&svc);
    let bulk = "/admin/users/bulk";
    let status = |user: String| {
        let svc = &svc;
        async move { text(&svc.get(&format!("/v1/users/{user}")).await.body["status"]) }
    };

    let before = svc.log_position().await;
    let (code, _) = console
        .post(
            &member,
            bulk,
            &[("action", "suspend".into()), ("user", ann.clone())],
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(svc.log_position().await, before, "a refused form appended");

    let (code, page) = console
        .post(
            &admin,
            bulk,
            &[
                ("action", "suspend".into()),
                ("user", ann.clone()),
                ("user", bob.clone()),
            ],
        )
        .await;
    assert_eq!(code, 303, "{page}");
    assert_eq!(status(ann.clone()).await, "suspended");
    assert_eq!(status(bob.clone()).await, "suspended");

    let (code, page) = console
        .post(
            &admin,
            bulk,
            &[
                ("action", "reinstate".into()),
                ("user", ann.clone()),
                ("user", zed.clone()),
            ],
        )
        .await;
    assert_eq!(code, 422, "{page}");
    assert!(
        page.contains(&format!("{zed}: not one of the organisation")),
        "{page}"
    );
    assert_eq!(status(ann).await, "active");
    assert_eq!(status(bob).await, "suspended");
    assert_eq!(status(zed).await, "active");
}

/// A role's menu from its page in the console (issue 17): saved through the role menu operation
/// as the API writes it; a menu that is not a list of items is refused and changes nothing.
#[tokio::test]
async fn the_console_sets_a_role_s_menu() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let console = Console::new(&svc);
    let menu = "/admin/roles/user/menu";
    let (status, page) = console
        .post(
            &admin,
            menu,
            &[("menu", r#"[{"id": "home", "label": "Home", "href": "/"}]"#)],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let role = svc.get("/v1/tenants/acme/roles/user").await;
    assert_eq!(role.body["menu"][0]["label"], "Home", "{role:?}");
    let before = svc.log_position().await;
    let (status, page) = console.post(&admin, menu, &[("menu", "{not json")]).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("not a list of items"), "{page}");
    assert_eq!(svc.log_position().await, before, "a refused menu appended");
}

/// The CSRF token the console tests' forms carry, in its cookie and in the form, as a browser
/// that loaded the form would.
const CONSOLE_CSRF: &str = "console-csrf";

/// The console over plain HTTP as a signed-in browser uses it: each request with an account's
/// session cookies and the CSRF cookie, each form with the CSRF token; redirects not followed.
struct Console<'s> {
    svc: &'s Service,
    client: reqwest::Client,
}

impl<'s> Console<'s> {
    fn new(svc: &'s Service) -> Console<'s> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Console { svc, client }
    }

    /// The cookies of `account`'s browser.
    fn cookie(account: &crate::support::world::Account) -> String {
        format!(
            "ids_access={}; ids_session={}; ids_csrf={CONSOLE_CSRF}",
            account.token, account.refresh
        )
    }

    /// `GET path` as `account`: the status and the page.
    async fn get(&self, account: &crate::support::world::Account, path: &str) -> (u16, String) {
        let answer = self
            .client
            .get(self.svc.url(path))
            .header("cookie", Self::cookie(account))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    /// The form `pairs` (and the CSRF token) posted to `path` as `account`.
    async fn post<K: AsRef<str>, V: AsRef<str>>(
        &self,
        account: &crate::support::world::Account,
        path: &str,
        pairs: &[(K, V)],
    ) -> (u16, String) {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("csrf", CONSOLE_CSRF);
        for (k, v) in pairs {
            body.append_pair(k.as_ref(), v.as_ref());
        }
        let answer = self
            .client
            .post(self.svc.url(path))
            .header("cookie", Self::cookie(account))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish())
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }
}

/// Changes `from` to `to` (as long) in the embedded log's stored bytes in `data_dir` and gives
/// the record its checksum again, as someone editing the file would, so that the log still
/// opens. Only the chain can tell.
fn tamper_with_the_embedded_log(data_dir: &std::path::Path, from: &str, to: &str) {
    const HEADER_LEN: usize = 40;
    const FRAME_HEADER_LEN: usize = 12;
    assert_eq!(from.len(), to.len());
    let segment = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("the text is in the log");
    bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
    let mut frame = HEADER_LEN;
    loop {
        assert_eq!(&bytes[frame..frame + 4], b"IDSR");
        let len = u32::from_le_bytes(bytes[frame + 4..frame + 8].try_into().unwrap()) as usize;
        let end = frame + FRAME_HEADER_LEN + len;
        if at < end {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&bytes[frame + 4..frame + 8]);
            crc.update(&bytes[frame + FRAME_HEADER_LEN..end]);
            let sum = crc.finalize().to_le_bytes();
            bytes[frame + 8..frame + 12].copy_from_slice(&sum);
            break;
        }
        frame = end;
    }
    std::fs::write(&segment, bytes).unwrap();
}

/// A member of `acme` who is also a platform administrator.
async fn platform_admin(svc: &Service, email: &str) -> crate::support::world::Account {
    let account = crate::support::world::join(svc, email, "acme", &["admin"], PASSWORD).await;
    let flags = svc
        .put(
            &format!("/v1/users/{}/flags", account.id),
            json!({"dashboard_access": true, "api_access": true, "platform_admin": true}),
        )
        .await;
    assert_eq!(flags.status, 200, "{flags:?}");
    svc.get_at(&format!("/v1/users/{}", account.id), flags.position())
        .await;
    account
}

/// The platform screen's tamper evidence (issue 17): the chain verified up to the log's end on
/// each visit, with its checkpoints; after someone edits a covered event in the stored log (and
/// fixes the record's checksum), the screen names the position that no longer matches.
#[tokio::test]
async fn the_console_platform_screen_verifies_the_chain_and_names_where_the_log_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::embedded_with_env(
        dir.path(),
        &[
            ("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "1"),
            ("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "1"),
        ],
    )
    .await;
    svc.create_tenant("acme").await;
    let before = svc.log_position().await;
    let zeta = svc
        .post(
            "/v1/tenants",
            json!({"id": "zeta", "name": "Zeta Tamper Target"}),
        )
        .await;
    assert_eq!(zeta.status, 201, "{zeta:?}");
    let changed = zeta.position();
    let root = platform_admin(&svc, "root@example.com").await;
    let admin =
        crate::support::world::join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let console = Console::new(&svc);
    assert_eq!(console.get(&admin, "/admin/platform").await.0, 403);

    // Once a checkpoint covers the new organisation, the screen says the log matches its chain.
    let covered_to = |page: &str| -> u64 {
        page.split("id=\"chain-covered-to\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    let page = loop {
        let (status, page) = console.get(&root, "/admin/platform").await;
        assert_eq!(status, 200, "{page}");
        if covered_to(&page) >= changed {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint covers position {changed}: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.contains("The log matches its chain"), "{page}");
    assert!(!page.contains("does not match"), "{page}");
    drop(console);

    svc.stop().await;
    tamper_with_the_embedded_log(dir.path(), "Zeta Tamper Target", "Zeta Tamper Tarjet");
    svc.start_again().await;
    let console = Console::new(&svc);
    let (status, page) = console.get(&root, "/admin/platform").await;
    assert_eq!(status, 200, "{page}");
    let (_, verdict) = page
        .split_once("id=\"chain-verdict\">")
        .unwrap_or_else(|| panic!("{page}"));
    let verdict = verdict.split("</p>").next().unwrap();
    assert!(
        verdict.contains("The log does not match its chain"),
        "{verdict}"
    );
    // The organisation's creation is the changed event.
    let at: u64 = verdict
        .split("first break at position #")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{verdict}"));
    assert!(before < at && at <= changed, "{before} < {at} <= {changed}");
    assert!(
        verdict.contains(&format!("the event at position {at} is not the one")),
        "{verdict}"
    );
    // A tenant's administrator learns nothing of it.
    assert_eq!(console.get(&admin, "/admin/platform").await.0, 403);
}

/// An organisation to show the console with: its administrator (a platform administrator too),
/// a few named people (one suspended), a custom role, an entity with row-level security, a record
/// with an owner and a grant, and a second organisation. Tenant `acme` must exist.
struct ConsoleWorld {
    admin: crate::support::world::Account,
    grace: String,
    /// Positions just before and after the record's grant, for time travel.
    before_grant: u64,
    after_grant: u64,
}

impl ConsoleWorld {
    async fn build(svc: &Service) -> ConsoleWorld {
        let admin = platform_admin(svc, "alan.turing@example.com").await;
        svc.create_tenant("globex").await;
        let (mut grace, mut edsger) = (String::new(), String::new());
        for (email, first, last) in [
            ("grace.hopper@example.com", "Grace", "Hopper"),
            ("edsger.dijkstra@example.com", "Edsger", "Dijkstra"),
            ("barbara.liskov@example.com", "Barbara", "Liskov"),
            ("margaret.hamilton@example.com", "Margaret", "Hamilton"),
            ("ken.thompson@example.com", "Ken", "Thompson"),
        ] {
            let created = svc
                .post(
                    "/v1/tenants/acme/users",
                    json!({"email": email, "first_name": first, "last_name": last, "roles": ["user"]}),
                )
                .await;
            assert_eq!(created.status, 201, "{created:?}");
            let id = text(&created.body["id"]);
            if first == "Grace" {
                grace = id;
            } else if first == "Edsger" {
                edsger = id;
            } else if first == "Ken" {
                let suspended = svc
                    .post(
                        &format!("/v1/users/{id}/suspend"),
                        json!({"reason": "Away on leave"}),
                    )
                    .await;
                assert!(suspended.status < 300, "{suspended:?}");
            }
        }
        let role = svc
            .post(
                "/v1/tenants/acme/roles",
                json!({"name": "reviewer", "description": "Reviews projects",
                       "permissions": ["users:read", "entity.project:read", "entity.project:update"],
                       "global_access": false}),
            )
            .await;
        assert_eq!(role.status, 201, "{role:?}");
        let entity = svc
            .post(
                "/v1/tenants/acme/entities",
                json!({"name": "project", "fields": ["id", "title", "budget"], "rls": true,
                       "policy": {"read": ["_CREATOR", "reviewer"]}}),
            )
            .await;
        assert_eq!(entity.status, 201, "{entity:?}");
        let record = "/v1/tenants/acme/entities/project/records/apollo";
        let owned = svc
            .put(&format!("{record}/owner"), json!({"user": grace}))
            .await;
        assert_eq!(owned.status, 200, "{owned:?}");
        let before_grant = owned.position();
        let granted = svc
            .put(
                &format!("{record}/grants/{edsger}"),
                json!({"access": "read_only"}),
            )
            .await;
        assert_eq!(granted.status, 200, "{granted:?}");
        let after_grant = granted.position();
        svc.get_at("/v1/tenants/acme/users", after_grant).await;
        ConsoleWorld {
            admin,
            grace,
            before_grant,
            after_grant,
        }
    }

    /// Every console screen: a name and its address.
    fn screens(&self) -> Vec<(&'static str, String)> {
        let grace = &self.grace;
        vec![
            ("console-people", "/admin/users".to_owned()),
            ("console-person", format!("/admin/users/{grace}")),
            ("console-erase", format!("/admin/users/{grace}/erase")),
            ("console-roles", "/admin/roles".to_owned()),
            ("console-role-matrix", "/admin/roles/reviewer".to_owned()),
            ("console-entities", "/admin/records".to_owned()),
            ("console-entity", "/admin/records?entity=project".to_owned()),
            (
                "console-record",
                "/admin/records?entity=project&record=apollo".to_owned(),
            ),
            ("console-audit", "/admin/audit".to_owned()),
            (
                "console-time-travel",
                format!(
                    "/admin/time-travel?entity=project&record=apollo&permission=read&at={}&compare={}",
                    self.before_grant, self.after_grant
                ),
            ),
            ("console-access-review", "/admin/access-review".to_owned()),
            ("console-settings", "/admin/settings".to_owned()),
            ("console-applications", "/admin/applications".to_owned()),
            ("console-platform", "/admin/platform".to_owned()),
        ]
    }
}

/// Signs `email` in on the sign-in page.
async fn sign_in_in_browser(
    browser: &crate::support::browser::Browser,
    svc: &Service,
    email: &str,
) {
    browser.goto(&svc.url("/sign-in")).await;
    browser.fill("email", email).await;
    browser.fill("password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.expect_text(email).await;
}

/// The console at a phone's width (issue 17): on every screen, nothing is wider than the window
/// (wide tables scroll inside their own box), and axe-core finds nothing serious there either.
#[tokio::test]
async fn every_console_screen_fits_a_phone_s_width() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let world = ConsoleWorld::build(&svc).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path(), "phone").await;
    browser.client.set_window_size(390, 844).await.unwrap();
    sign_in_in_browser(&browser, &svc, &world.admin.email).await;
    for (name, path) in world.screens() {
        browser.goto(&svc.url(&path)).await;
        let url = browser.url().await;
        assert!(url.contains("/admin/"), "{name}: sent to {url}");
        let widths = browser
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                Vec::new(),
            )
            .await
            .unwrap();
        let (page, window) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        assert!(
            (320..=420).contains(&window),
            "{name}: a window {window} px wide"
        );
        if page > window {
            let shot = browser.screenshot(name).await;
            panic!(
                "{name} ({path}) is {page} px wide in a window of {window} px (screenshot {})",
                shot.display()
            );
        }
        browser.check_accessibility().await;
    }
    browser.close().await;
}

/// The access review screen of a large organisation (issue 17) shows a hundred people at a time,
/// read a page at a time, with links to the pages before and after (keeping the moment asked
/// for); its CSV download holds everyone.
#[tokio::test]
async fn the_console_access_review_shows_a_large_organisation_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let admin =
        crate::support::world::join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let many: Vec<serde_json::Value> = (0..150)
        .map(
            |i| json!({"op": "create", "email": format!("p{i:03}@example.com"), "roles": ["user"]}),
        )
        .collect();
    let created = svc
        .post("/v1/tenants/acme/users/bulk", json!({"operations": many}))
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    let at = created.position();
    svc.get_at("/v1/tenants/acme/users", at).await;
    let console = Console::new(&svc);
    let people = |page: &str| page.matches("<tr><td><a href=\"/admin/users/").count();

    let link = |page: &str, text: &str| -> Option<String> {
        let end = page.find(&format!("\">{text}</a>"))?;
        let start = page[..end].rfind("href=\"")? + "href=\"".len();
        Some(
            page[start..end]
                .replace("&#x2f;", "/")
                .replace("&amp;", "&")
                .replace("&#x3d;", "="),
        )
    };
    let users = |page: &str| -> Vec<String> {
        page.split("<tr><td><a href=\"/admin/users/")
            .skip(1)
            .map(|row| row[..26].to_owned())
            .collect()
    };

    let (status, first) = console.get(&admin, "/admin/access-review").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(people(&first), 100);
    assert!(link(&first, "Previous page").is_none(), "{first}");
    let next = link(&first, "Next page").expect("a link to the next page");
    let (status, second) = console.get(&admin, &next).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(people(&second), 51);
    assert!(link(&second, "Next page").is_none(), "{second}");
    // Everyone once, in order.
    let mut everyone = users(&first);
    everyone.extend(users(&second));
    let mut sorted = everyone.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((everyone.len(), &everyone), (151, &sorted));
    // Back: the page before the second is the first again, with a link to the first page.
    let previous = link(&second, "Previous page").expect("a link to the previous page");
    assert!(link(&second, "First page").is_some(), "{second}");
    let (_, again) = console.get(&admin, &previous).await;
    assert_eq!(users(&again), users(&first));
    // At a past moment, the links keep it.
    let (_, past) = console
        .get(&admin, &format!("/admin/access-review?at={at}"))
        .await;
    let next = link(&past, "Next page").expect("a link to the next page");
    assert!(
        next.starts_with(&format!("/admin/access-review?at={at}&after=")),
        "{next}"
    );
    // Nonsense is the first page.
    let (status, page) = console.get(&admin, "/admin/access-review?after=many").await;
    assert_eq!((status, people(&page)), (200, 100));
    let (_, csv) = console.get(&admin, "/admin/access-review?format=csv").await;
    assert_eq!(csv.matches("@example.com").count(), 151, "{csv}");

    // The API's review pages the same way; its CSV (read in pages of 500) holds everyone.
    let api = "/v1/audit/access-review?tenant=acme";
    let first = svc.get(&format!("{api}&limit=100")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let listed = |answer: &serde_json::Value| -> Vec<String> {
        answer["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&first.body), everyone[..100]);
    assert!(first.body["previous"].is_null(), "{:?}", first.body);
    let next = first.body["next"].as_str().unwrap();
    let second = svc.get(&format!("{api}&limit=100&after={next}")).await;
    assert_eq!(listed(&second.body), everyone[100..]);
    assert!(second.body["next"].is_null(), "{:?}", second.body);
    let previous = second.body["previous"].as_str().unwrap();
    let back = svc.get(&format!("{api}&limit=100&before={previous}")).await;
    assert_eq!(listed(&back.body), everyone[..100]);
    let default = svc.get(api).await;
    assert_eq!(listed(&default.body).len(), 100, "100 people by default");
    let one = svc.get(&format!("{api}&user={}", everyone[7])).await;
    assert_eq!(listed(&one.body), [everyone[7].clone()]);
    for bad in [
        format!("{api}&after={next}&before={next}"),
        format!("{api}&limit=501"),
        format!("{api}&format=csv&after={next}"),
    ] {
        let refused = svc.get(&bad).await;
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (400, Some("invalid_query")),
            "{bad}: {refused:?}"
        );
    }
    let text = |path: String| async {
        let path = path;
        let response = svc
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    };
    let csv = text(format!("{api}&format=csv")).await;
    assert!(csv.starts_with("tenant,user,email,"), "{csv}");
    assert_eq!(csv.matches("@example.com").count(), 151, "{csv}");
    let one = text(format!("{api}&format=csv&user={}", everyone[7])).await;
    assert_eq!(one.lines().count(), 2, "{one}");
}

/// The console's applications screen (issues 17 and 18): an administrator registers an
/// application there and is shown its secret once, replaces the secret, adds an upstream
/// provider and removes both; a reader of the settings sees them without a form, and their
/// posted form is refused with nothing appended; a member without the console gets nothing.
#[tokio::test]
async fn the_console_applications_screen_registers_clients_and_providers_for_administrators_only() {
    use crate::support::world::join;

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "viewer", "description": "Reads settings", "permissions": ["settings:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let viewer = join(&svc, "viewer@example.com", "acme", &["viewer"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let console = Console::new(&svc);
    let screen = "/admin/applications";

    let (status, page) = console.get(&admin, screen).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("No application yet."), "{page}");
    let (status, page) = console
        .post(
            &admin,
            screen,
            &[
                ("action", "register_client"),
                ("name", "Shop"),
                ("kind", "confidential"),
                (
                    "redirect_uris",
                    "https://shop.example/cb\nhttps://shop.example/cb2",
                ),
                ("refresh", "on"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("idcs_"), "the secret, shown once: {page}");
    let clients = svc.get("/v1/tenants/acme/clients").await;
    let client = &clients.body["items"][0];
    assert_eq!(client["name"], "Shop");
    assert_eq!(
        client["redirect_uris"],
        json!(["https://shop.example/cb", "https://shop.example/cb2"])
    );
    let id = text(&client["id"]);
    let (_, page) = console.get(&admin, screen).await;
    assert!(
        page.contains(&id) && !page.contains("idcs_"),
        "listed, its secret not shown again"
    );
    // A mistake is shown with what is wrong, and changes nothing.
    let before = svc.log_position().await;
    let (status, page) = console
        .post(
            &admin,
            screen,
            &[
                ("action", "register_client"),
                ("name", "Bad"),
                ("redirect_uris", "http://plain.example/cb"),
            ],
        )
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");
    assert_eq!(svc.log_position().await, before);
    let (status, page) = console
        .post(
            &admin,
            screen,
            &[("action", "rotate_secret"), ("client", id.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("idcs_"), "{page}");

    // An upstream provider, then both removed.
    let (status, page) = console
        .post(
            &admin,
            screen,
            &[
                ("action", "save_provider"),
                ("provider", "corp"),
                ("name", "Corp"),
                ("issuer", "https://id.corp.example"),
                ("client_id", "idstream"),
                ("client_secret", "upstream-secret-value"),
                ("domains", "corp.example"),
            ],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let (_, page) = console.get(&admin, screen).await;
    let page = page.replace("&#x2f;", "/");
    assert!(page.contains("https://id.corp.example"), "{page}");
    assert!(
        page.contains("/t/acme/sign-in/corp/callback"),
        "the redirect URI to register: {page}"
    );
    assert!(!page.contains("upstream-secret-value"), "never shown");

    // A reader sees everything without a form; their posts are refused, nothing appended.
    let (status, page) = console.get(&viewer, screen).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Shop") && page.contains("Corp"), "{page}");
    assert!(!page.contains("value=\"register_client\""), "{page}");
    let before = svc.log_position().await;
    let (status, _) = console
        .post(
            &viewer,
            screen,
            &[("action", "remove_provider"), ("provider", "corp")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(svc.log_position().await, before, "a refused form appended");
    assert_eq!(console.get(&member, screen).await.0, 403);
    assert_eq!(
        console
            .post(
                &member,
                screen,
                &[("action", "remove_client"), ("client", id.as_str())]
            )
            .await
            .0,
        403
    );

    for (action, field, value) in [
        ("remove_provider", "provider", "corp"),
        ("remove_client", "client", id.as_str()),
    ] {
        let (status, page) = console
            .post(&admin, screen, &[("action", action), (field, value)])
            .await;
        assert_eq!(status, 303, "{page}");
    }
    let (_, page) = console.get(&admin, screen).await;
    assert!(
        page.contains("No application yet.") && page.contains("No other provider yet."),
        "{page}"
    );
}
