//! The mails a tenant's people get, from the real binary: in HTML and plain text, signed with the
//! tenant's name, logo and colour, in the language the person's browser asked for (else the
//! tenant's), and with a deployment's own template where its configuration names a folder.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::service::{Answer, Service};
use crate::support::world::{eventually, join};

/// The latest mail to `to` whose subject is `subject`, once it arrives.
async fn mail_to(svc: &Service, to: &str, subject: &str) -> idstream_mailer::ParsedEml {
    let mut found = None;
    eventually(&format!("a mail '{subject}' to {to}"), || {
        found = svc
            .mail()
            .into_iter()
            .rev()
            .find(|m| m.to == to && m.subject == subject);
        std::future::ready(found.is_some())
    })
    .await;
    found.unwrap()
}

/// The settings, read once the log's position `at` is in the read models.
/// A configuration file in `dir` whose `[mail] templates` folder holds one template, `name`
/// (`en/…` or `fr/…`), with `source`.
fn deployment(dir: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    let templates = dir.join("mail-templates");
    let file = templates.join(name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, source).unwrap();
    let config = dir.join("idstream.toml");
    let text = format!(
        "[mail]\ntemplates = {:?}\n",
        templates.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    config
}

async fn settings(svc: &Service, at: u64) -> Value {
    let answer = svc.get_at("/v1/tenants/acme/settings", at).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

async fn reset_request(svc: &Service, email: &str, language: Option<&str>) -> Answer {
    let mut request = svc
        .anonymous(Method::POST, "/v1/auth/password/reset-request")
        .json(&json!({ "email": email }));
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    svc.send(request).await
}

#[tokio::test]
async fn a_tenants_mail_carries_its_brand_and_language_and_a_deployment_replaces_a_template() {
    let dir = tempfile::tempdir().unwrap();
    // The deployment replaces the English reset mail, and only that one.
    let config = deployment(
        dir.path(),
        "en/password_reset.mail",
        "{% extends layout %}\n{% block subject %}{{ tenant }} password help{% endblock %}\n\
         {% block body %}Hello from our help desk.\n\n{{ action(link, \"Reset\") }}\n\n\
         Valid until {{ expires }}.{% endblock %}\n",
    );
    let data = dir.path().join("data");
    let svc =
        Service::embedded_with_env(&data, &[("IDSTREAM_CONFIG", config.to_str().unwrap())]).await;
    let created = svc
        .post("/v1/tenants", json!({"id": "acme", "name": "Acme & Co"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");

    // Branding that is not https, not #rrggbb or not a written language is refused, and
    // changes nothing.
    let before = settings(&svc, created.position()).await;
    assert_eq!(before["language"], "en");
    assert!(before.get("logo_url").is_none(), "{before}");
    for (field, value) in [
        ("logo_url", json!("http://cdn.example.com/acme.png")),
        ("logo_url", json!("javascript:alert(1)")),
        ("brand_colour", json!("crimson")),
        ("language", json!("de")),
    ] {
        let mut bad = before.clone();
        bad[field] = value;
        let answer = svc.put("/v1/tenants/acme/settings", bad).await;
        answer.assert_problem(422, "invalid_settings");
    }
    assert_eq!(settings(&svc, svc.log_position().await).await, before);

    // Acme brands its mails and writes them in French by default.
    let mut branded = before.clone();
    branded["logo_url"] = json!("https://cdn.example.com/acme.png");
    branded["brand_colour"] = json!("#aa3300");
    branded["language"] = json!("fr");
    let changed = svc.put("/v1/tenants/acme/settings", branded.clone()).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let read = svc
        .get_at("/v1/tenants/acme/settings", changed.position())
        .await;
    assert_eq!(read.body, branded);

    // An invitation goes out in the tenant's language (whatever the inviter's browser asks),
    // in text and HTML, with the tenant's name, logo and colour.
    let invited = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/invitations")
                .header("accept-language", "en")
                .json(&json!({"email": "grace@example.com", "first_name": "Grace",
                    "last_name": "Hopper", "roles": ["user"]})),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let invitation = mail_to(
        &svc,
        "grace@example.com",
        "Invitation à rejoindre Acme & Co",
    )
    .await;
    assert!(
        invitation
            .text
            .starts_with("Vous êtes invité à rejoindre Acme & Co."),
        "{}",
        invitation.text
    );
    assert!(invitation.text.contains("/accept-invitation?token=idi_"));
    assert!(invitation.text.contains("Envoyé par Acme & Co."));
    let html = invitation.html.expect("an HTML part");
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
    assert!(html.contains("Acme &amp; Co"), "{html}");
    assert!(html.contains("#aa3300"), "{html}");
    assert!(html.contains("cdn.example.com&#x2f;acme.png"), "{html}");
    assert!(html.contains("/accept-invitation?token=idi_"), "{html}");

    // Password resets: the language the browser asks for, else the tenant's; the deployment's
    // own English template replaces the built-in one.
    join(
        &svc,
        "bob@example.com",
        "acme",
        &["user"],
        "Bobs-Long-Passphrase-42",
    )
    .await;
    join(
        &svc,
        "carol@example.com",
        "acme",
        &["user"],
        "Carols-Long-Passphrase-42",
    )
    .await;
    join(
        &svc,
        "dan@example.com",
        "acme",
        &["user"],
        "Dans-Long-Passphrase-42",
    )
    .await;
    let erin = join(
        &svc,
        "erin@example.com",
        "acme",
        &["user"],
        "Erins-Long-Passphrase-42",
    )
    .await;
    // Erin chooses English in her profile: it wins over her browser and her tenant.
    let profile = |language: Value| json!({"first_name": "Erin", "last_name": "Example", "language": language});
    let path = format!("/v1/users/{}/profile", erin.id);
    let refused = svc
        .send(
            svc.request_as(&erin.token, Method::PUT, &path)
                .json(&profile(json!("de"))),
        )
        .await;
    refused.assert_problem(422, "invalid_language");
    let chosen = svc
        .send(
            svc.request_as(&erin.token, Method::PUT, &path)
                .json(&profile(json!("en"))),
        )
        .await;
    assert_eq!(chosen.status, 200, "{chosen:?}");
    let read = svc
        .get_at(&format!("/v1/users/{}", erin.id), chosen.position())
        .await;
    assert_eq!(read.body["language"], "en", "{read:?}");
    for (email, language) in [
        ("bob@example.com", Some("en-GB,en;q=0.9")),
        ("carol@example.com", Some("de-DE, fr;q=0.5, en;q=0.4")),
        ("dan@example.com", None),
        ("erin@example.com", Some("fr")),
    ] {
        let answer = reset_request(&svc, email, language).await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    let english = mail_to(&svc, "bob@example.com", "Acme & Co password help").await;
    assert!(
        english.text.starts_with("Hello from our help desk.\n\n"),
        "{}",
        english.text
    );
    assert!(english.text.contains("/reset-password?user="));
    assert!(english.html.expect("html").contains(">Reset</a>"));
    let french = mail_to(
        &svc,
        "carol@example.com",
        "Réinitialisez votre mot de passe",
    )
    .await;
    assert!(french.text.contains("/reset-password?user="));
    let by_tenant = mail_to(&svc, "dan@example.com", "Réinitialisez votre mot de passe").await;
    assert!(by_tenant.text.contains("Envoyé par Acme & Co."));
    let by_choice = mail_to(&svc, "erin@example.com", "Acme & Co password help").await;
    assert!(by_choice.text.contains("/reset-password?user="));

    // Invited to a French-speaking organisation, Erin still reads her invitation in English.
    let beta = svc
        .post("/v1/tenants", json!({"id": "beta", "name": "Beta"}))
        .await;
    assert_eq!(beta.status, 201, "{beta:?}");
    let mut french = svc
        .get_at("/v1/tenants/beta/settings", beta.position())
        .await
        .body;
    french["language"] = json!("fr");
    let changed = svc.put("/v1/tenants/beta/settings", french).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    svc.get_at("/v1/tenants/beta/settings", changed.position())
        .await;
    for email in ["erin@example.com", "frank@example.com"] {
        let invited = svc
            .post(
                "/v1/tenants/beta/invitations",
                json!({"email": email, "roles": ["user"]}),
            )
            .await;
        assert_eq!(invited.status, 201, "{invited:?}");
    }
    mail_to(&svc, "erin@example.com", "Invitation to join Beta").await;
    mail_to(&svc, "frank@example.com", "Invitation à rejoindre Beta").await;
}

#[tokio::test]
async fn a_broken_template_in_the_configured_folder_stops_the_service_at_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path(), "fr/magic_link.mail", "{% if %}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .arg("serve")
        .env("IDSTREAM_LISTEN", "127.0.0.1:0")
        .env("IDSTREAM_DATA_DIR", dir.path().join("data"))
        .env("IDSTREAM_CONFIG", &config)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fr/magic_link.mail"), "{stderr}");
    assert!(stderr.contains("mail template"), "{stderr}");
}
