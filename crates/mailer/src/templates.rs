//! The emails of the identity flows, each in plain text and in HTML from one template, in English
//! and French, with the sending tenant's name, logo and colour.
//!
//! A mail's template (`templates/<language>/<mail>.mail`, compiled in) fills the blocks `subject`
//! and `body` of its language's `layout.mail`. Each template is rendered twice: once as text
//! (`format` is `"text"`, nothing escaped) and once as HTML (`format` is `"html"`, every value
//! HTML-escaped), so the two renderings cannot say different things. In `body`, paragraphs are
//! separated by a blank line, and `action(link, label)` sets a link apart (a button in HTML, the
//! bare link in text) and `action(code)` a one-time code. A deployment can replace any template
//! with a file of the same name in a folder of its own (`[mail] templates = "<dir>"`, holding
//! `en/…` and `fr/…`): [`MailTemplates::load`] compiles and test-renders every template at
//! startup, so a broken one stops the service with its file named rather than failing a mail.
//!
//! The link or code appears exactly once in the text, and never in the subject (subjects are
//! shown in notifications and kept in relay logs). Names chosen by users (tenant names, inviter
//! names, addresses) are reduced to one line of printable text, so they cannot add lines that
//! imitate the email's own instructions. Times are shown in UTC.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, State};
use time::{OffsetDateTime, UtcOffset};

use crate::Message;

/// The longest user-chosen name shown in an email, in characters.
const MAX_NAME_CHARS: usize = 80;

/// The colour of a mail's frame when its tenant chose none.
pub const DEFAULT_COLOUR: &str = "#2450a6";

/// The name a mail is signed with when no one tenant sends it.
pub const NEUTRAL_NAME: &str = "idstream";

/// A language mails (and pages) are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    /// The language's BCP 47 tag: `en`, `fr`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// The language of a BCP 47 tag (`fr`, `fr-CA`, `EN_gb`), by its primary subtag.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|lang| lang.tag() == primary)
    }

    /// The best language of an `Accept-Language` header (RFC 9110 §12.5.4) that mails are
    /// written in: the highest `q` first, the header's order among equals; `None` when it names
    /// none of them.
    pub fn negotiate(accept_language: &str) -> Option<Lang> {
        let mut offers: Vec<(u16, usize, Lang)> = Vec::new();
        for (order, item) in accept_language.split(',').enumerate().take(32) {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else {
                continue;
            };
            let mut quality = 1000u16;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    quality = value
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .map_or(0, |q| (q * 1000.0).round() as u16);
                }
            }
            if quality > 0 {
                offers.push((quality, order, lang));
            }
        }
        offers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        offers.first().map(|offer| offer.2)
    }
}

/// Who a mail comes from, as its recipient sees it: the tenant's display name, and its logo and
/// colour when it chose them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub name: String,
    /// An `https:` address of an image.
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub colour: Option<String>,
}

impl Branding {
    /// A mail that no one tenant sends (to a person of several, say).
    pub fn neutral() -> Branding {
        Branding {
            name: NEUTRAL_NAME.to_owned(),
            logo_url: None,
            colour: None,
        }
    }

    /// A tenant's name alone.
    pub fn named(name: &str) -> Branding {
        Branding {
            name: name.to_owned(),
            logo_url: None,
            colour: None,
        }
    }
}

/// One mail of the identity flows, with what it says.
#[derive(Debug, Clone, Copy)]
pub enum Mail<'a> {
    /// An invitation to join the branding's tenant; `inviter` is whoever sent it, if known.
    Invitation {
        inviter: Option<&'a str>,
        link: &'a str,
        expires_at: OffsetDateTime,
    },
    /// A link to choose a new password.
    PasswordReset {
        link: &'a str,
        expires_at: OffsetDateTime,
    },
    /// A link that signs in without a password.
    MagicLink {
        link: &'a str,
        expires_at: OffsetDateTime,
    },
    /// A one-time code that proves the recipient reads this mailbox.
    EmailCode {
        code: &'a str,
        expires_at: OffsetDateTime,
    },
    /// A link that confirms the address belongs to the account that gave it.
    EmailVerification {
        link: &'a str,
        expires_at: OffsetDateTime,
    },
    /// To an account's current address: a change to `new_address` was asked for. No link: it
    /// warns the owner and leaves the action to a sign-in they start themselves.
    EmailChangeNotice { new_address: &'a str },
    /// Sign-in is blocked until `until` after repeated failures.
    AccountLocked { until: OffsetDateTime },
}

impl Mail<'_> {
    /// The template's name.
    pub fn name(&self) -> &'static str {
        match self {
            Mail::Invitation { .. } => "invitation",
            Mail::PasswordReset { .. } => "password_reset",
            Mail::MagicLink { .. } => "magic_link",
            Mail::EmailCode { .. } => "email_code",
            Mail::EmailVerification { .. } => "email_verification",
            Mail::EmailChangeNotice { .. } => "email_change_notice",
            Mail::AccountLocked { .. } => "account_locked",
        }
    }

    /// What the template is given besides the branding.
    fn values(&self, to: &str) -> BTreeMap<&'static str, Value> {
        let mut values = BTreeMap::new();
        let mut put = |name: &'static str, value: String| {
            values.insert(name, Value::from(value));
        };
        match *self {
            Mail::Invitation {
                inviter,
                link,
                expires_at,
            } => {
                if let Some(inviter) = inviter.map(one_line).filter(|name| !name.is_empty()) {
                    put("inviter", inviter);
                }
                put("link", link.to_owned());
                put("expires", utc(expires_at));
            }
            Mail::PasswordReset { link, expires_at }
            | Mail::MagicLink { link, expires_at }
            | Mail::EmailVerification { link, expires_at } => {
                put("link", link.to_owned());
                put("expires", utc(expires_at));
            }
            Mail::EmailCode { code, expires_at } => {
                put("code", code.to_owned());
                put("expires", utc(expires_at));
            }
            Mail::EmailChangeNotice { new_address } => {
                put("old_address", one_line(to));
                put("new_address", one_line(new_address));
            }
            Mail::AccountLocked { until } => put("until", utc(until)),
        }
        values
    }

    /// One of each, with sample values: what [`MailTemplates::load`] test-renders.
    fn samples() -> [Mail<'static>; 7] {
        let at = OffsetDateTime::UNIX_EPOCH;
        let link = "https://id.example.com/sample?token=sample";
        [
            Mail::Invitation {
                inviter: Some("Sample Inviter"),
                link,
                expires_at: at,
            },
            Mail::PasswordReset {
                link,
                expires_at: at,
            },
            Mail::MagicLink {
                link,
                expires_at: at,
            },
            Mail::EmailCode {
                code: "123456",
                expires_at: at,
            },
            Mail::EmailVerification {
                link,
                expires_at: at,
            },
            Mail::EmailChangeNotice {
                new_address: "new@example.com",
            },
            Mail::AccountLocked { until: at },
        ]
    }
}

/// The templates compiled in: (language, name, source).
const EMBEDDED: &[(Lang, &str, &str)] = &[
    (
        Lang::En,
        "layout",
        include_str!("../templates/en/layout.mail"),
    ),
    (
        Lang::En,
        "invitation",
        include_str!("../templates/en/invitation.mail"),
    ),
    (
        Lang::En,
        "password_reset",
        include_str!("../templates/en/password_reset.mail"),
    ),
    (
        Lang::En,
        "magic_link",
        include_str!("../templates/en/magic_link.mail"),
    ),
    (
        Lang::En,
        "email_code",
        include_str!("../templates/en/email_code.mail"),
    ),
    (
        Lang::En,
        "email_verification",
        include_str!("../templates/en/email_verification.mail"),
    ),
    (
        Lang::En,
        "email_change_notice",
        include_str!("../templates/en/email_change_notice.mail"),
    ),
    (
        Lang::En,
        "account_locked",
        include_str!("../templates/en/account_locked.mail"),
    ),
    (
        Lang::Fr,
        "layout",
        include_str!("../templates/fr/layout.mail"),
    ),
    (
        Lang::Fr,
        "invitation",
        include_str!("../templates/fr/invitation.mail"),
    ),
    (
        Lang::Fr,
        "password_reset",
        include_str!("../templates/fr/password_reset.mail"),
    ),
    (
        Lang::Fr,
        "magic_link",
        include_str!("../templates/fr/magic_link.mail"),
    ),
    (
        Lang::Fr,
        "email_code",
        include_str!("../templates/fr/email_code.mail"),
    ),
    (
        Lang::Fr,
        "email_verification",
        include_str!("../templates/fr/email_verification.mail"),
    ),
    (
        Lang::Fr,
        "email_change_notice",
        include_str!("../templates/fr/email_change_notice.mail"),
    ),
    (
        Lang::Fr,
        "account_locked",
        include_str!("../templates/fr/account_locked.mail"),
    ),
];

/// Why templates could not be loaded. Names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the mail template folder {path} cannot be read: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the mail template {path} cannot be read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the mail template {origin} does not work: {detail}")]
    Invalid { origin: String, detail: String },
}

/// The mail templates of a deployment: the compiled-in ones, each perhaps replaced by a file of
/// the configured folder.
pub struct MailTemplates {
    env: Environment<'static>,
    /// Where each template came from (for errors): `built-in en/invitation.mail` or a path.
    origins: BTreeMap<String, String>,
}

impl std::fmt::Debug for MailTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailTemplates")
            .field("origins", &self.origins)
            .finish()
    }
}

static BUILT_IN: LazyLock<MailTemplates> = LazyLock::new(|| {
    MailTemplates::load(None).expect("the built-in mail templates compile and render")
});

impl MailTemplates {
    /// The compiled-in templates.
    pub fn built_in() -> &'static MailTemplates {
        &BUILT_IN
    }

    /// The compiled-in templates, each replaced by `<overrides>/<language>/<name>.mail` when
    /// that file exists. Every template of every language is compiled and rendered once with
    /// sample values, so a broken one is reported here, with its file.
    pub fn load(overrides: Option<&Path>) -> Result<MailTemplates, TemplateError> {
        if let Some(dir) = overrides {
            std::fs::read_dir(dir).map_err(|source| TemplateError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.starts_with("html/") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_keep_trailing_newline(true);
        env.add_filter("paragraphs", paragraphs);
        env.add_function("action", action);
        let mut origins = BTreeMap::new();
        for (lang, name, built_in) in EMBEDDED {
            let key = format!("{}/{name}", lang.tag());
            let file = overrides.map(|dir| dir.join(lang.tag()).join(format!("{name}.mail")));
            let (source, origin) = match file.filter(|path| path.is_file()) {
                Some(path) => {
                    let source =
                        std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    (source, path.display().to_string())
                }
                None => (
                    (*built_in).to_owned(),
                    format!("built-in {}/{name}.mail", lang.tag()),
                ),
            };
            for format in ["text", "html"] {
                env.add_template_owned(format!("{format}/{key}"), source.clone())
                    .map_err(|error| TemplateError::Invalid {
                        origin: origin.clone(),
                        detail: error.to_string(),
                    })?;
            }
            origins.insert(key, origin);
        }
        let templates = MailTemplates { env, origins };
        for lang in Lang::ALL {
            for mail in Mail::samples() {
                templates.try_render("sample@example.com", lang, &Branding::neutral(), mail)?;
            }
        }
        Ok(templates)
    }

    /// `mail` to `to`, in `lang`, from `brand`. A template that fails (a replaced one that
    /// renders the sample but not these values) is reported in the log and the built-in one
    /// used instead.
    pub fn render(&self, to: &str, lang: Lang, brand: &Branding, mail: Mail<'_>) -> Message {
        match self.try_render(to, lang, brand, mail) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, "a mail template failed; the built-in one is used");
                BUILT_IN
                    .try_render(to, lang, brand, mail)
                    .unwrap_or_else(|_| Message {
                        to: to.to_owned(),
                        subject: String::new(),
                        text: String::new(),
                        html: None,
                    })
            }
        }
    }

    fn try_render(
        &self,
        to: &str,
        lang: Lang,
        brand: &Branding,
        mail: Mail<'_>,
    ) -> Result<Message, TemplateError> {
        let key = format!("{}/{}", lang.tag(), mail.name());
        let invalid = |error: minijinja::Error| TemplateError::Invalid {
            origin: self
                .origins
                .get(&key)
                .cloned()
                .unwrap_or_else(|| key.clone()),
            detail: format!("{error:#}"),
        };
        let colour = brand
            .colour
            .as_deref()
            .filter(|c| is_colour(c))
            .unwrap_or(DEFAULT_COLOUR);
        let logo_url = brand
            .logo_url
            .as_deref()
            .filter(|url| url.starts_with("https://"));
        let render = |format: &str| -> Result<(String, String), minijinja::Error> {
            let mut values = mail.values(to);
            values.insert("format", Value::from(format));
            values.insert(
                "layout",
                Value::from(format!("{format}/{}/layout", lang.tag())),
            );
            values.insert("lang", Value::from(lang.tag()));
            values.insert("tenant", Value::from(one_line(&brand.name)));
            values.insert("colour", Value::from(colour));
            values.insert("logo_url", Value::from(logo_url));
            let template = self.env.get_template(&format!("{format}/{key}"))?;
            let mut captured = template.render_captured(Value::from(values))?;
            let subject = captured.with_state_mut(|state| state.render_block("subject"))?;
            Ok((captured.into_output(), subject))
        };
        let (text, subject) = render("text").map_err(invalid)?;
        let (html, _) = render("html").map_err(invalid)?;
        let mut text = text.trim().to_owned();
        text.push('\n');
        Ok(Message {
            to: to.to_owned(),
            subject: one_line(&subject),
            text,
            html: Some(html.trim().to_owned() + "\n"),
        })
    }
}

/// `#rrggbb`.
pub fn is_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `paragraphs` filter: the body's paragraphs (separated by blank lines) trimmed; in HTML,
/// each in a `<p>` with its line breaks kept.
fn paragraphs(state: &State, body: String) -> Value {
    let html = state.lookup("format").as_ref().and_then(Value::as_str) == Some("html");
    let mut found: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                found.push(current.join(if html { "<br>\n" } else { "\n" }));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        found.push(current.join(if html { "<br>\n" } else { "\n" }));
    }
    if html {
        Value::from_safe_string(
            found
                .iter()
                .map(|p| format!("<p style=\"margin:0 0 16px 0;\">{p}</p>"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Value::from(found.join("\n\n"))
    }
}

/// The `action` function: `action(link, label)` sets a link apart (in HTML, a button and the
/// address to copy); `action(code)` a one-time code.
fn action(state: &State, text: String, label: Option<String>) -> Value {
    if state.lookup("format").as_ref().and_then(Value::as_str) != Some("html") {
        return Value::from(text);
    }
    let colour = state
        .lookup("colour")
        .and_then(|c| c.as_str().filter(|c| is_colour(c)).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_COLOUR.to_owned());
    Value::from_safe_string(match label {
        Some(label) => format!(
            "<a href=\"{href}\" style=\"display:inline-block;padding:10px 20px;background:{colour};\
             color:#ffffff;text-decoration:none;border-radius:4px;font-weight:600;\">{label}</a><br>\
             <span style=\"font-size:13px;color:#5b6372;word-break:break-all;\">{shown}</span>",
            href = escape(&text),
            label = escape(&label),
            shown = escape(&text),
        ),
        None => format!(
            "<strong style=\"font-size:28px;letter-spacing:6px;font-family:monospace;\">{}</strong>",
            escape(&text)
        ),
    })
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `2025-01-02 03:04 UTC`. Written by hand rather than with a format description, which can fail.
fn utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// A user-chosen name as one line of at most [`MAX_NAME_CHARS`] printable characters: control
/// and direction-changing characters become spaces and runs of white space collapse.
fn one_line(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi { ' ' } else { c }
        })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= MAX_NAME_CHARS {
        joined
    } else {
        let mut cut: String = joined.chars().take(MAX_NAME_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests;
