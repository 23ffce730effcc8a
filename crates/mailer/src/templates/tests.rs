use time::macros::datetime;

use super::*;

const LINK: &str = "https://id.example.com/flow?token=tok_5ecret-VALUE&x=1";
const CODE: &str = "482913";
const AT: OffsetDateTime = datetime!(2025-03-04 05:06:07 +02:00);

fn acme() -> Branding {
    Branding {
        name: "Acme".into(),
        logo_url: Some("https://cdn.example.com/acme.png".into()),
        colour: Some("#aa3300".into()),
    }
}

fn render(lang: Lang, mail: Mail<'_>) -> Message {
    MailTemplates::built_in().render("a@example.com", lang, &acme(), mail)
}

fn every_mail() -> Vec<(Mail<'static>, Option<&'static str>)> {
    vec![
        (
            Mail::Invitation {
                inviter: Some("Bob"),
                link: LINK,
                expires_at: AT,
            },
            Some(LINK),
        ),
        (
            Mail::PasswordReset {
                link: LINK,
                expires_at: AT,
            },
            Some(LINK),
        ),
        (
            Mail::MagicLink {
                link: LINK,
                expires_at: AT,
            },
            Some(LINK),
        ),
        (
            Mail::EmailCode {
                code: CODE,
                expires_at: AT,
            },
            Some(CODE),
        ),
        (
            Mail::EmailVerification {
                link: LINK,
                expires_at: AT,
            },
            Some(LINK),
        ),
        (
            Mail::EmailChangeNotice {
                new_address: "new@example.com",
            },
            None,
        ),
        (Mail::AccountLocked { until: AT }, None),
    ]
}

#[test]
fn each_mail_carries_its_link_or_code_once_in_text_and_in_html_in_both_languages() {
    for lang in Lang::ALL {
        for (mail, secret) in every_mail() {
            let message = render(lang, mail);
            let html = message.html.as_deref().expect("an HTML rendering");
            assert_eq!(message.to, "a@example.com");
            assert!(!message.subject.is_empty() && !message.subject.contains('\n'));
            assert!(html.starts_with("<!doctype html>"), "{html}");
            assert!(html.contains(&format!("<html lang=\"{}\">", lang.tag())));
            match secret {
                Some(secret) => {
                    assert_eq!(message.text.matches(secret).count(), 1, "{}", message.text);
                    assert!(!message.subject.contains(secret));
                    // In HTML the link is a button's target and shown to copy; `&` escaped.
                    let escaped = secret.replace('&', "&amp;");
                    assert!(html.contains(&escaped), "{html}");
                    let rest = message.text.replacen(secret, "", 1);
                    assert!(!rest.contains("token="), "{rest}");
                    assert!(!rest.contains("https://"), "{rest}");
                }
                None => {
                    assert!(!message.text.contains("://"), "{}", message.text);
                }
            }
            if !matches!(mail, Mail::EmailChangeNotice { .. }) {
                assert!(
                    message.text.contains("2025-03-04 03:06 UTC"),
                    "{}",
                    message.text
                );
            }
            // Signed by the tenant, in its colour, with its logo.
            assert!(message.text.contains("Acme"), "{}", message.text);
            assert!(html.contains("#aa3300"));
            // (minijinja escapes `/` too: `https:&#x2f;&#x2f;…`, which browsers read back.)
            assert!(html.contains("<img src=\"https:"), "{html}");
            assert!(html.contains("cdn.example.com&#x2f;acme.png\""), "{html}");
            // No template syntax left over, and paragraphs apart.
            for rendered in [&message.text, &message.subject, &html.to_owned()] {
                assert!(
                    !rendered.contains("{{") && !rendered.contains("{%"),
                    "{rendered}"
                );
            }
            assert!(message.text.contains("\n\n"));
            assert!(html.contains("<p style="));
        }
    }
}

#[test]
fn an_invitation_names_the_tenant_and_the_inviter_in_each_language() {
    let mail = |inviter| Mail::Invitation {
        inviter,
        link: LINK,
        expires_at: AT,
    };
    let english = render(Lang::En, mail(Some("Bob")));
    assert_eq!(english.subject, "Invitation to join Acme");
    assert!(
        english
            .text
            .starts_with("Bob has invited you to join Acme.\n"),
        "{}",
        english.text
    );
    let french = render(Lang::Fr, mail(Some("Bob")));
    assert_eq!(french.subject, "Invitation à rejoindre Acme");
    assert!(
        french
            .text
            .starts_with("Bob vous invite à rejoindre Acme.\n")
    );
    assert!(french.text.contains("Envoyé par Acme."));
    let anonymous = render(Lang::En, mail(Some(" ")));
    assert!(
        anonymous
            .text
            .starts_with("You have been invited to join Acme.\n")
    );
}

#[test]
fn names_are_escaped_in_html_and_left_as_they_are_in_text() {
    let brand = Branding {
        name: "Müller & <Söhne>".into(),
        logo_url: Some("javascript:alert(1)".into()),
        colour: Some("red;background:url(x)".into()),
    };
    let message = MailTemplates::built_in().render(
        "a@example.com",
        Lang::En,
        &brand,
        Mail::Invitation {
            inviter: Some("<b>Zoë</b>"),
            link: LINK,
            expires_at: AT,
        },
    );
    let html = message.html.expect("html");
    assert!(
        message
            .text
            .starts_with("<b>Zoë</b> has invited you to join Müller & <Söhne>.")
    );
    assert!(
        html.contains("&lt;b&gt;Zoë&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;Zoë&lt;/b&gt;"),
        "{html}"
    );
    assert!(html.contains("Müller &amp; &lt;Söhne&gt;"), "{html}");
    assert!(!html.contains("<b>") && !html.contains("<Söhne>"));
    // Only https logos and #rrggbb colours reach the HTML.
    assert!(!html.contains("javascript:"));
    assert!(!html.contains("url(x)"));
    assert!(html.contains(DEFAULT_COLOUR));
}

#[test]
fn user_chosen_names_cannot_add_lines_or_reverse_text() {
    let message = MailTemplates::built_in().render(
        "a@example.com",
        Lang::En,
        &Branding::named("Acme\n\nUrgent: open https://evil.example\u{202e}now"),
        Mail::Invitation {
            inviter: Some("Bob\r\nBcc: x"),
            link: LINK,
            expires_at: AT,
        },
    );
    let first = message.text.lines().next().expect("a first line");
    assert_eq!(
        first,
        "Bob Bcc: x has invited you to join Acme Urgent: open https://evil.example now."
    );
    assert!(!message.subject.contains('\n'));
    assert_eq!(one_line(&"x".repeat(200)).chars().count(), MAX_NAME_CHARS);
}

#[test]
fn the_change_notice_goes_to_the_old_address_and_has_no_link() {
    let message = MailTemplates::built_in().render(
        "old@example.com",
        Lang::En,
        &Branding::neutral(),
        Mail::EmailChangeNotice {
            new_address: "new@example.com",
        },
    );
    assert_eq!(message.to, "old@example.com");
    assert!(
        message
            .text
            .contains("from old@example.com to new@example.com")
    );
    assert!(message.text.contains("Sent by idstream."));
    assert!(!message.text.contains("://"));
}

#[test]
fn the_lockout_notice_says_until_when_and_has_no_link() {
    let message = render(Lang::En, Mail::AccountLocked { until: AT });
    assert!(message.text.contains("after 2025-03-04 03:06 UTC"));
    assert!(!message.text.contains("://"));
}

#[test]
fn accept_language_chooses_the_best_language_written() {
    assert_eq!(Lang::negotiate("fr-CH, fr;q=0.9, en;q=0.8"), Some(Lang::Fr));
    assert_eq!(
        Lang::negotiate("de-DE, en-GB;q=0.7, fr;q=0.5"),
        Some(Lang::En)
    );
    assert_eq!(Lang::negotiate("en;q=0.4, fr;q=0.6"), Some(Lang::Fr));
    assert_eq!(Lang::negotiate("fr;q=0, en"), Some(Lang::En));
    assert_eq!(Lang::negotiate("de, *;q=0.1"), None);
    assert_eq!(Lang::negotiate(""), None);
    assert_eq!(Lang::negotiate("fr;q=abc"), None);
    assert_eq!(Lang::from_tag("FR_ca"), Some(Lang::Fr));
    assert_eq!(Lang::from_tag("english"), None);
}

#[test]
fn a_deployment_replaces_a_template_from_its_folder_and_a_broken_one_is_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("fr")).expect("fr");
    std::fs::write(
        dir.path().join("fr/magic_link.mail"),
        "{% extends layout %}{% block subject %}Connexion à {{ tenant }}{% endblock %}\
         {% block body %}Bonjour !\n\n{{ action(link, \"Entrer\") }}{% endblock %}",
    )
    .expect("written");
    let templates = MailTemplates::load(Some(dir.path())).expect("loaded");
    let mail = Mail::MagicLink {
        link: LINK,
        expires_at: AT,
    };
    let replaced = templates.render("a@example.com", Lang::Fr, &acme(), mail);
    assert_eq!(replaced.subject, "Connexion à Acme");
    assert!(
        replaced.text.starts_with("Bonjour !\n\n"),
        "{}",
        replaced.text
    );
    assert!(replaced.html.expect("html").contains(">Entrer</a>"));
    // The others stay built in.
    let english = templates.render("a@example.com", Lang::En, &acme(), mail);
    assert_eq!(english.subject, "Your sign-in link");

    std::fs::write(
        dir.path().join("fr/magic_link.mail"),
        "{% extends layout %}{% block body %}{{ link | nonexistent_filter }}{% endblock %}",
    )
    .expect("written");
    let error = MailTemplates::load(Some(dir.path())).expect_err("a broken template");
    assert!(error.to_string().contains("fr/magic_link.mail"), "{error}");
    std::fs::write(dir.path().join("fr/magic_link.mail"), "{% if %}").expect("written");
    let error = MailTemplates::load(Some(dir.path())).expect_err("a syntax error");
    assert!(error.to_string().contains("fr/magic_link.mail"), "{error}");
    let missing = MailTemplates::load(Some(&dir.path().join("nowhere"))).expect_err("no folder");
    assert!(missing.to_string().contains("nowhere"), "{missing}");
}
