//! The hosted pages people use in a browser (issue 16, first part): sign-in (password, remember
//! me, the second factor), the account page, sign-out, and the pages the service's mails link to
//! (`/accept-invitation`, `/reset-password`, `/verify-email`, `/confirm-email`, `/magic-link`).
//! Rendered on the server from templates compiled into the binary (minijinja, escaping HTML);
//! plain HTML forms, no JavaScript, one stylesheet served from `/assets`.
//!
//! Every page calls the same application operations as the API, with a [`Caller`] built from the
//! browser's session: the page layer decides nothing. The browser session is the API's session:
//! signing in here starts the same session (the same events, lifetimes, rotation and revocation),
//! its access and refresh tokens kept in `HttpOnly`, `SameSite=Lax` cookies (`__Host-` prefixed and
//! `Secure` when the public URL is https); an expired access token is refreshed on the next page,
//! rotating the refresh token. A remembered session's cookies outlive the browser; the others end
//! with it.
//!
//! Browser safety: every form carries a CSRF token that must equal the one in its cookie; answers
//! carry a Content-Security-Policy without inline script or style and `frame-ancestors 'none'`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`; a link's secret is moved from the
//! address bar into a short-lived cookie at once; a return address must be a path of this service
//! (no open redirect); failed sign-ins say nothing about whether an address has an account, and
//! the API's budgets per source apply (the operations are the same).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idstream_app::identity::SignIn;
use idstream_app::identity::{AcceptInvitation, AccountOverview};
use idstream_app::{AppError, Caller, Principal, identity::Tokens};
use idstream_domain::{TenantId, UserId};
use minijinja::{Environment, context};
use serde::Deserialize;
use subtle::ConstantTimeEq;

mod console;
mod console_apps;
mod oidc;
mod upstream;

use crate::AppState;
use crate::extract::correlation_id;
use idstream_app::Lang;

/// The product name pages show.
const PRODUCT: &str = "idstream";

tokio::task_local! {
    /// The language of the page being answered: the signed-in person's choice, else the one
    /// the browser's `Accept-Language` prefers among those written, else English.
    static PAGE_LANG: std::cell::Cell<Lang>;
}

/// The language of the page being answered (see [`PAGE_LANG`]).
fn page_lang() -> Lang {
    PAGE_LANG.try_with(|lang| lang.get()).unwrap_or_default()
}

/// The pages a mailed link opens, which do not look for a session themselves.
static LINK_PAGES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    table()
        .into_iter()
        .filter(|route| route.access == PageAccess::Link)
        .map(|route| route.path)
        .collect()
});

/// Answers a page request in the language its browser asks for. A session page switches to
/// the signed-in person's choice once it has the session; a link page does here, when the
/// browser holds a live access token (it refreshes nothing).
///
/// A service of its own rather than a `from_fn` middleware: every other page is handed to the
/// route at once, without the copy of the route and the extra future such a middleware makes
/// for each request.
#[derive(Clone)]
struct InLanguage<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<axum::extract::Request> for InLanguage<S>
where
    S: tower::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let lang = request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .and_then(Lang::negotiate)
            .unwrap_or_default();
        if !LINK_PAGES.contains(&request.uri().path()) {
            return Box::pin(PAGE_LANG.scope(std::cell::Cell::new(lang), self.inner.call(request)));
        }
        // The service that was made ready answers; a fresh copy waits for the next request.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let state = self.state.clone();
        Box::pin(async move {
            let lang = chosen_language(&state, request.headers())
                .await
                .unwrap_or(lang);
            PAGE_LANG
                .scope(
                    std::cell::Cell::new(lang),
                    tower::ServiceExt::oneshot(inner, request),
                )
                .await
        })
    }
}

/// The language the person signed in with this browser's access token chose, if any.
async fn chosen_language(state: &AppState, headers: &HeaderMap) -> Option<Lang> {
    let cookies = Cookies::of(state, headers);
    let auth = state
        .app
        .identity
        .authenticate(cookies.get(ACCESS)?)
        .await
        .ok()?;
    let caller = Caller::new(
        Principal::User(auth),
        String::new(),
        None,
        idstream_app::Client::default(),
    )
    .ok()?;
    state.app.identity.chosen_language(&caller)
}

/// The template function `t`: a text in the page's language (see [`crate::page_text`]).
fn translated(state: &minijinja::State, text: minijinja::Value) -> minijinja::Value {
    let lang = state
        .lookup("lang")
        .and_then(|lang| lang.as_str().and_then(Lang::from_tag))
        .unwrap_or_default();
    match text.as_str() {
        Some(english) if lang != Lang::En => {
            minijinja::Value::from(crate::page_text::translate(lang, english))
        }
        _ => text,
    }
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_function("t", translated);
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("sign_in.html", include_str!("../templates/sign_in.html")),
        (
            "second_factor.html",
            include_str!("../templates/second_factor.html"),
        ),
        (
            "set_password.html",
            include_str!("../templates/set_password.html"),
        ),
        ("confirm.html", include_str!("../templates/confirm.html")),
        ("message.html", include_str!("../templates/message.html")),
        (
            "oidc_consent.html",
            include_str!("../templates/oidc_consent.html"),
        ),
        (
            "oidc_logout.html",
            include_str!("../templates/oidc_logout.html"),
        ),
        (
            "identities.html",
            include_str!("../templates/identities.html"),
        ),
        (
            "admin_applications.html",
            include_str!("../templates/admin_applications.html"),
        ),
        ("account.html", include_str!("../templates/account.html")),
        (
            "admin_user.html",
            include_str!("../templates/admin_user.html"),
        ),
        (
            "admin_users.html",
            include_str!("../templates/admin_users.html"),
        ),
        (
            "admin_roles.html",
            include_str!("../templates/admin_roles.html"),
        ),
        (
            "admin_role.html",
            include_str!("../templates/admin_role.html"),
        ),
        (
            "admin_erase.html",
            include_str!("../templates/admin_erase.html"),
        ),
        (
            "admin_records.html",
            include_str!("../templates/admin_records.html"),
        ),
        (
            "admin_audit.html",
            include_str!("../templates/admin_audit.html"),
        ),
        (
            "admin_time_travel.html",
            include_str!("../templates/admin_time_travel.html"),
        ),
        (
            "console_nav.html",
            include_str!("../templates/console_nav.html"),
        ),
        (
            "admin_settings.html",
            include_str!("../templates/admin_settings.html"),
        ),
        (
            "admin_role_preview.html",
            include_str!("../templates/admin_role_preview.html"),
        ),
        (
            "admin_access_review.html",
            include_str!("../templates/admin_access_review.html"),
        ),
        (
            "admin_platform.html",
            include_str!("../templates/admin_platform.html"),
        ),
        (
            "two_factor_setup.html",
            include_str!("../templates/two_factor_setup.html"),
        ),
        ("passkeys.html", include_str!("../templates/passkeys.html")),
        (
            "two_factor_on.html",
            include_str!("../templates/two_factor_on.html"),
        ),
        ("sessions.html", include_str!("../templates/sessions.html")),
        ("sign_up.html", include_str!("../templates/sign_up.html")),
        ("profile.html", include_str!("../templates/profile.html")),
        (
            "email_code.html",
            include_str!("../templates/email_code.html"),
        ),
        (
            "change_email.html",
            include_str!("../templates/change_email.html"),
        ),
        ("api_keys.html", include_str!("../templates/api_keys.html")),
        (
            "organisation.html",
            include_str!("../templates/organisation.html"),
        ),
        (
            "change_password.html",
            include_str!("../templates/change_password.html"),
        ),
    ] {
        for lang in Lang::ALL {
            env.add_template_owned(
                format!("{}/{name}", lang.tag()),
                crate::page_text::localise(lang, source),
            )
            .expect("the page templates compile");
        }
    }
    env
});

const STYLESHEET: &str = include_str!("../assets/idstream.css");

const PASSKEY_SCRIPT: &str = include_str!("../assets/passkey.js");

/// Who may use a page route. The route-by-route authorization test (`tests/routes.rs`) calls
/// every route of [`table`] as each kind of caller and checks the answer against this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    /// Anyone: the page needs nothing, or is itself a sign-in (whose operation checks the
    /// credentials, with the API's budgets).
    Public,
    /// Anyone holding the secret of a mailed link (`/accept-invitation`, `/reset-password`…);
    /// without it the page says how to get one.
    Link,
    /// A signed-in browser session; anyone else is sent to sign in.
    Session,
    /// The administration console: a signed-in browser session of a person whose
    /// `dashboard_access` flag is on and who holds the permission the screen reads with; anyone
    /// else signed in is refused (403), anyone not signed in is sent to sign in.
    Admin,
    /// The console's platform screen: as [`PageAccess::Admin`], for platform administrators
    /// only (a tenant's administrator is refused too).
    Platform,
}

/// One method of one page route, and who may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub access: PageAccess,
}

/// A route: its path, the access of its GET and of its POST, and its handlers.
type RouteEntry = (
    &'static str,
    Option<PageAccess>,
    Option<PageAccess>,
    axum::routing::MethodRouter<AppState>,
);

fn routes() -> Vec<RouteEntry> {
    use PageAccess::{Admin, Link, Platform, Public, Session};
    use axum::routing::post;
    vec![
        ("/assets/idstream.css", Some(Public), None, get(stylesheet)),
        (
            "/assets/passkey.js",
            Some(Public),
            None,
            get(passkey_script),
        ),
        (
            "/sign-in/passkey",
            None,
            Some(Public),
            post(sign_in_passkey),
        ),
        (
            "/sign-in/second-factor/passkey",
            None,
            Some(Public),
            post(second_factor_passkey),
        ),
        (
            "/account/passkeys",
            Some(Session),
            Some(Session),
            get(passkeys_page).post(add_passkey),
        ),
        (
            "/account/passkeys/remove",
            None,
            Some(Session),
            post(remove_passkey),
        ),
        (
            "/sign-in",
            Some(Public),
            Some(Public),
            get(sign_in_page).post(sign_in),
        ),
        (
            "/sign-in/second-factor",
            None,
            Some(Public),
            post(second_factor),
        ),
        ("/sign-in/link", None, Some(Public), post(sign_in_link)),
        (
            "/sign-in/code-request",
            None,
            Some(Public),
            post(sign_in_code_request),
        ),
        ("/sign-in/code", None, Some(Public), post(sign_in_code)),
        ("/sign-out", None, Some(Session), post(sign_out)),
        (
            "/t/{tenant}/oidc/authorize",
            Some(Public),
            Some(Public),
            get(oidc::authorize_page).post(oidc::consent),
        ),
        (
            "/account/identities",
            Some(Session),
            Some(Session),
            get(upstream::identities_page).post(upstream::change_identity),
        ),
        (
            "/t/{tenant}/sign-in/{provider}",
            Some(Public),
            None,
            get(upstream::start),
        ),
        (
            "/t/{tenant}/sign-in/{provider}/callback",
            Some(Public),
            None,
            get(upstream::callback),
        ),
        (
            "/t/{tenant}/oidc/logout",
            Some(Public),
            Some(Public),
            get(oidc::logout_page).post(oidc::logout),
        ),
        (
            "/sign-up",
            Some(Public),
            Some(Public),
            get(sign_up_page).post(sign_up),
        ),
        ("/account", Some(Session), None, get(account)),
        ("/admin/users", Some(Admin), None, get(admin_users_page)),
        ("/admin/users/invite", None, Some(Admin), post(admin_invite)),
        (
            "/admin/users/bulk",
            None,
            Some(Admin),
            post(console::admin_people_bulk),
        ),
        (
            "/admin/roles",
            Some(Admin),
            Some(Admin),
            get(admin_roles_page).post(console::admin_define_role),
        ),
        (
            "/admin/roles/{role}",
            Some(Admin),
            None,
            get(admin_role_page),
        ),
        (
            "/admin/roles/{role}/members",
            None,
            Some(Admin),
            post(admin_role_members),
        ),
        (
            "/admin/roles/{role}/menu",
            None,
            Some(Admin),
            post(console::admin_role_menu),
        ),
        (
            "/admin/roles/{role}/delete",
            None,
            Some(Admin),
            post(console::admin_delete_role),
        ),
        (
            "/admin/roles/{role}/permissions",
            None,
            Some(Admin),
            post(admin_role_permissions),
        ),
        (
            "/admin/users/{user}",
            Some(Admin),
            None,
            get(admin_user_page),
        ),
        (
            "/admin/users/{user}/roles",
            None,
            Some(Admin),
            post(console::admin_person_change),
        ),
        (
            "/admin/users/{user}/status",
            None,
            Some(Admin),
            post(admin_user_status),
        ),
        (
            "/admin/users/{user}/erase",
            Some(Admin),
            Some(Admin),
            get(admin_erase_page).post(admin_erase),
        ),
        (
            "/admin/records",
            Some(Admin),
            None,
            get(console::admin_records_page),
        ),
        (
            "/admin/entities",
            None,
            Some(Admin),
            post(console::admin_entities),
        ),
        (
            "/admin/records/grants",
            None,
            Some(Admin),
            post(console::admin_record_grants),
        ),
        (
            "/admin/audit",
            Some(Admin),
            None,
            get(console::admin_audit_page),
        ),
        (
            "/admin/platform",
            Some(Platform),
            None,
            get(console::admin_platform_page),
        ),
        (
            "/admin/access-review",
            Some(Admin),
            None,
            get(console::admin_access_review_page),
        ),
        (
            "/admin/settings",
            Some(Admin),
            Some(Admin),
            get(console::admin_settings_page).post(console::admin_save_settings),
        ),
        (
            "/admin/applications",
            Some(Admin),
            Some(Admin),
            get(console_apps::admin_applications_page)
                .post(console_apps::admin_change_applications),
        ),
        (
            "/admin/time-travel",
            Some(Admin),
            None,
            get(console::admin_time_travel_page),
        ),
        (
            ORGANISATION,
            Some(Session),
            Some(Session),
            get(organisation_page).post(choose_organisation),
        ),
        (
            "/account/profile",
            Some(Session),
            Some(Session),
            get(profile_page).post(save_profile),
        ),
        (
            "/account/two-factor",
            Some(Session),
            Some(Session),
            get(two_factor_page).post(two_factor_confirm),
        ),
        (
            "/account/two-factor/off",
            None,
            Some(Session),
            post(two_factor_off),
        ),
        ("/account/sessions", Some(Session), None, get(sessions_page)),
        (
            "/account/sessions/sign-out",
            None,
            Some(Session),
            post(sessions_sign_out),
        ),
        (
            "/account/password",
            Some(Session),
            Some(Session),
            get(password_page).post(change_password),
        ),
        (
            "/account/email",
            Some(Session),
            Some(Session),
            get(email_page).post(change_email),
        ),
        (
            "/account/api-keys",
            Some(Session),
            Some(Session),
            get(api_keys_page).post(issue_api_key),
        ),
        (
            "/account/api-keys/revoke",
            None,
            Some(Session),
            post(revoke_api_key),
        ),
        (
            "/accept-invitation",
            Some(Link),
            Some(Link),
            get(accept_invitation_page).post(accept_invitation),
        ),
        (
            "/reset-password",
            Some(Link),
            Some(Link),
            get(reset_password_page).post(reset_password),
        ),
        (
            "/verify-email",
            Some(Link),
            Some(Link),
            get(verify_email_page).post(verify_email),
        ),
        (
            "/confirm-email",
            Some(Link),
            Some(Link),
            get(confirm_email_page).post(confirm_email),
        ),
        (
            "/magic-link",
            Some(Link),
            Some(Link),
            get(magic_link_page).post(magic_link),
        ),
    ]
}

/// Every method of every page route, with who may use it.
pub fn table() -> Vec<PageRoute> {
    routes()
        .into_iter()
        .flat_map(|(path, get, post, _)| {
            [("GET", get), ("POST", post)]
                .into_iter()
                .filter_map(move |(method, access)| {
                    access.map(|access| PageRoute {
                        method,
                        path,
                        access,
                    })
                })
        })
        .collect()
}

/// The pages' routes (outside `/v1`, not part of the API document).
pub fn router(state: &AppState) -> Router<AppState> {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, _, _, handlers)| {
            router.route(path, handlers)
        })
        .layer(tower::layer::layer_fn({
            let state = state.clone();
            move |inner| InLanguage {
                inner,
                state: state.clone(),
            }
        }))
}

// ----- cookies -----

/// Cookie names and attributes: `__Host-` prefixed and `Secure` when the public URL is https.
struct Cookies {
    secure: bool,
    /// The request's `Cookie` headers, joined by `;`.
    jar: String,
    /// Where the value of each of [`NAMES`] is in `jar` (the last one, if the browser sent
    /// several), found in one pass.
    found: [Option<std::ops::Range<usize>>; NAMES.len()],
}

const ACCESS: &str = "ids_access";
const REFRESH: &str = "ids_session";
const CSRF: &str = "ids_csrf";
const LINK: &str = "ids_link";
/// A sign-in under way at an upstream identity provider (sealed).
const UPSTREAM: &str = "ids_upstream";
/// Every cookie these pages set.
const NAMES: [&str; 5] = [ACCESS, REFRESH, CSRF, LINK, UPSTREAM];

/// The prefix of cookie names when they are `Secure`.
const HOST_PREFIX: &str = "__Host-";

/// Where the value of each of [`NAMES`] (prefixed when `secure`) is in `jar`, `Cookie` pairs
/// separated by `;`: the last one of each name.
fn find_cookies(jar: &str, secure: bool) -> [Option<std::ops::Range<usize>>; NAMES.len()] {
    let prefix = if secure { HOST_PREFIX } else { "" };
    let mut found: [Option<std::ops::Range<usize>>; NAMES.len()] = Default::default();
    let mut at = 0;
    for pair in jar.split(';') {
        if let Some((name, value)) = pair.split_once('=')
            && let Some(base) = name.trim().strip_prefix(prefix)
            && let Some(index) = NAMES.iter().position(|known| *known == base)
        {
            let start = at + name.len() + 1;
            found[index] = Some(start..start + value.trim_end().len());
        }
        at += pair.len() + 1;
    }
    found
}

impl Cookies {
    fn of(state: &AppState, headers: &HeaderMap) -> Cookies {
        let secure = state.app.identity.public_url().starts_with("https://");
        let mut jar = String::new();
        for value in headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            if !jar.is_empty() {
                jar.push(';');
            }
            jar.push_str(text);
        }
        let found = find_cookies(&jar, secure);
        Cookies { secure, jar, found }
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("{HOST_PREFIX}{base}")
        } else {
            base.to_owned()
        }
    }

    /// The value of cookie `base` (one of [`NAMES`]), not empty.
    fn get(&self, base: &str) -> Option<&str> {
        let index = NAMES.iter().position(|known| *known == base)?;
        self.found[index]
            .clone()
            .map(|range| &self.jar[range])
            .filter(|v| !v.is_empty())
    }

    /// A `Set-Cookie` value: `max_age` in seconds, `None` for a cookie that ends with the
    /// browser, `Some(0)` to delete it.
    fn set(&self, base: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let mut cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax",
            self.name(base)
        );
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// 128 random bits, URL-safe, from the thread's cryptographically secure generator (rand's
/// `ThreadRng`: ChaCha12 seeded, and reseeded every 64 KiB, from the operating system), which
/// spares each page a system call.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

// ----- answers -----

/// A page answer: HTML with the browser-safety headers, and cookies to set.
struct Page {
    status: StatusCode,
    body: String,
    cookies: Vec<HeaderValue>,
    location: Option<String>,
    /// Another origin (an OpenID Connect application's) the page's forms may be redirected to,
    /// added to the CSP's `form-action`.
    form_action: Option<String>,
}

impl Page {
    fn html(status: StatusCode, template: &str, ctx: minijinja::Value) -> Page {
        let body = TEMPLATES
            .get_template(&format!("{}/{template}", page_lang().tag()))
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|error| {
                tracing::error!(%error, template, "a page template failed to render");
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()
            });
        Page {
            status,
            body,
            cookies: Vec::new(),
            location: None,
            form_action: None,
        }
    }

    fn redirect(to: &str) -> Page {
        Page {
            status: StatusCode::SEE_OTHER,
            body: String::new(),
            cookies: Vec::new(),
            location: Some(to.to_owned()),
            form_action: None,
        }
    }

    fn cookie(mut self, cookie: HeaderValue) -> Page {
        self.cookies.push(cookie);
        self
    }
}

/// The Content-Security-Policy of every page: nothing but this service's own stylesheet, its
/// one script (the passkey ceremonies, which need the browser's WebAuthn API, calling this
/// service's passkey endpoints) and forms posting to it; nothing inline; never framed.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
    img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        let csp = self
            .form_action
            .as_deref()
            .filter(|origin| {
                origin
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'\'' | b'"'))
            })
            .and_then(|origin| {
                HeaderValue::from_str(&CSP.replace(
                    "form-action 'self'",
                    &format!("form-action 'self' {origin}"),
                ))
                .ok()
            })
            .unwrap_or(HeaderValue::from_static(CSP));
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(page_lang().tag()),
        );
        if let Some(location) = self.location
            && let Ok(value) = HeaderValue::from_str(&location)
        {
            headers.insert(header::LOCATION, value);
        }
        for cookie in self.cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
        response
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn passkey_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PASSKEY_SCRIPT,
    )
        .into_response()
}

/// The page context every template gets.
fn base(title: &str) -> minijinja::Value {
    context! { lang => page_lang().tag(), product => PRODUCT, title => title }
}

/// The CSRF token of the browser: its cookie's, or a new one (and the cookie to set).
fn csrf_of(cookies: &Cookies) -> (String, Option<HeaderValue>) {
    match cookies.get(CSRF) {
        Some(token) => (token.to_owned(), None),
        None => {
            let token = random_token();
            let cookie = cookies.set(CSRF, &token, None);
            (token, Some(cookie))
        }
    }
}

/// A posted form. One that cannot be read (a field missing, such as its CSRF token, or not a
/// form at all) did not come from these pages: it is refused like a form without its token.
struct PageForm<T>(T);

impl<T, S> axum::extract::FromRequest<S> for PageForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Page;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Page> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(form)) => Ok(PageForm(form)),
            Err(_) => Err(refused_form()),
        }
    }
}

/// Whether a posted form's CSRF token is the browser's.
fn csrf_holds(cookies: &Cookies, presented: &str) -> bool {
    cookies
        .get(CSRF)
        .is_some_and(|token| bool::from(token.as_bytes().ct_eq(presented.as_bytes())))
}

fn refused_form() -> Page {
    Page::html(
        StatusCode::FORBIDDEN,
        "message.html",
        context! { ..base("This form has expired"), ..context! {
            message => "The form could not be accepted: it has expired or did not come from this page. Open the page again and retry.",
        }},
    )
}

/// A return address: a path of this service, never another origin (`//host`, `/\host`, a
/// scheme), else the account page.
fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The anonymous caller of a page request (sign-in and the links), with its client address.
fn anonymous(state: &AppState, parts: &Parts) -> Result<Caller, AppError> {
    Caller::new(
        Principal::Anonymous,
        correlation_id(parts),
        None,
        crate::client::client(parts, state),
    )
}

/// Cookies that hold a session's tokens: for good as long as a remembered session may live,
/// else until the browser ends.
fn session_cookies(cookies: &Cookies, tokens: &Tokens) -> [HeaderValue; 2] {
    let lifetime = tokens.remembered.then_some(365 * 24 * 3600);
    [
        cookies.set(ACCESS, &tokens.access_token, lifetime),
        cookies.set(REFRESH, &tokens.refresh_token, lifetime),
    ]
}

/// The signed-in caller of a page: the access token in its cookie, refreshed (rotating the
/// refresh token) once it has expired. `None`: not signed in (or the session ended).
async fn signed_in(
    state: &AppState,
    parts: &Parts,
    cookies: &Cookies,
) -> Result<Option<(Caller, Vec<HeaderValue>)>, AppError> {
    Ok(browser_session(state, parts, cookies)
        .await?
        .map(|session| (session.caller, session.cookies)))
}

/// A browser's signed-in session: its caller, the cookies to set when its tokens were just
/// refreshed, and its refresh token as it is now (after that refresh).
struct BrowserSession {
    caller: Caller,
    cookies: Vec<HeaderValue>,
    refresh_token: Option<String>,
}

/// [`signed_in_session`], and the page then speaks the language the person chose, if any.
async fn browser_session(
    state: &AppState,
    parts: &Parts,
    cookies: &Cookies,
) -> Result<Option<BrowserSession>, AppError> {
    let session = signed_in_session(state, parts, cookies).await?;
    if let Some(lang) = session
        .as_ref()
        .and_then(|session| state.app.identity.chosen_language(&session.caller))
    {
        let _ = PAGE_LANG.try_with(|page| page.set(lang));
    }
    Ok(session)
}

async fn signed_in_session(
    state: &AppState,
    parts: &Parts,
    cookies: &Cookies,
) -> Result<Option<BrowserSession>, AppError> {
    let client = crate::client::client(parts, state);
    let with =
        |principal: Principal| Caller::new(principal, correlation_id(parts), None, client.clone());
    let refresh = cookies.get(REFRESH);
    if let Some(access) = cookies.get(ACCESS) {
        match state.app.identity.authenticate(access).await {
            Ok(auth) => {
                return Ok(Some(BrowserSession {
                    caller: with(Principal::User(auth))?,
                    cookies: Vec::new(),
                    refresh_token: refresh.map(str::to_owned),
                }));
            }
            Err(AppError::Unauthenticated) => {}
            Err(other) => return Err(other),
        }
    }
    let Some(refresh) = refresh else {
        return Ok(None);
    };
    let Some(tokens) = refresh_once(state, cookies, refresh, with(Principal::Anonymous)?).await?
    else {
        return Ok(None);
    };
    let auth = state
        .app
        .identity
        .authenticate(&tokens.access_token)
        .await?;
    Ok(Some(BrowserSession {
        caller: with(Principal::User(auth))?,
        cookies: session_cookies(cookies, &tokens).to_vec(),
        refresh_token: Some(tokens.refresh_token.clone()),
    }))
}

/// How long the tokens of a browser's refresh are handed to that browser's other requests that
/// present the same, now rotated, refresh token.
const REFRESH_LEEWAY: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes in flight or just done, by a hash of (refresh token, CSRF cookie).
type RefreshSlot = Arc<tokio::sync::OnceCell<Option<Tokens>>>;
type Refreshes = HashMap<[u8; 32], (Instant, RefreshSlot)>;
static REFRESHES: LazyLock<std::sync::Mutex<Refreshes>> = LazyLock::new(Default::default);

/// Refreshes the browser's session once, however many of its requests need it at the same time.
///
/// A browser whose access token has expired sends several requests with the same refresh token
/// (a page and its form, two tabs): the first rotates it; without this, the next would present a
/// rotated token, which the service takes for a stolen one and ends the session. So the requests
/// of one browser (the same refresh token *and* the same CSRF cookie, which only that browser
/// holds) that arrive while a refresh is under way or within [`REFRESH_LEEWAY`] after it share
/// its tokens. A request from anywhere else presenting a rotated token still ends the session.
/// The sharing is per process: with several replicas, a load balancer with sticky sessions keeps
/// a browser's requests on one.
async fn refresh_once(
    state: &AppState,
    cookies: &Cookies,
    refresh: &str,
    anonymous: Caller,
) -> Result<Option<Tokens>, AppError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(refresh.as_bytes());
    hasher.update([0]);
    hasher.update(cookies.get(CSRF).unwrap_or("").as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    let slot = {
        let mut refreshes = REFRESHES.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        refreshes.retain(|_, (at, _)| now.duration_since(*at) < REFRESH_LEEWAY);
        refreshes
            .entry(key)
            .or_insert_with(|| (now, Arc::default()))
            .1
            .clone()
    };
    let mut failure = None;
    let tokens = slot
        .get_or_init(|| async {
            match state.app.identity.refresh(&anonymous, refresh).await {
                Ok(tokens) => Some(tokens),
                Err(error) => {
                    failure = Some(error);
                    None
                }
            }
        })
        .await
        .clone();
    match (tokens, failure) {
        (Some(tokens), _) => Ok(Some(tokens)),
        (
            None,
            Some(AppError::InvalidToken | AppError::Unauthenticated | AppError::AccountDisabled),
        )
        | (None, None) => Ok(None),
        (None, Some(other)) => {
            // A failure that may pass (the log unavailable): let the next request try again.
            REFRESHES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            Err(other)
        }
    }
}

/// A failure to show as a page: the API's words for it, without detail that would help an
/// attacker (the operations already keep their refusals generic).
fn failure_page(title: &str, error: &AppError) -> Page {
    let (status, message) = match error {
        AppError::RateLimited(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from here. Wait a minute and try again.".to_owned(),
        ),
        AppError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service cannot complete this right now. Try again in a moment.".to_owned(),
        ),
        AppError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side.".to_owned(),
        ),
        AppError::Forbidden(_)
        | AppError::DashboardAccessDisabled
        | AppError::PlatformAdminOnly => (StatusCode::FORBIDDEN, error.to_string()),
        AppError::UserNotFound
        | AppError::Role(idstream_domain::access::role::RoleError::NotFound) => {
            (StatusCode::NOT_FOUND, error.to_string())
        }
        other => (StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    };
    Page::html(
        status,
        "message.html",
        context! { ..base(title), ..context! { message => message, link => "/sign-in", link_text => "Sign in" } },
    )
}

// ----- sign-in -----

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

#[derive(Deserialize)]
struct SignInQuery {
    return_to: Option<String>,
    /// The organisation to sign in to, for links that name it (else it is chosen afterwards).
    tenant: Option<String>,
    /// The address to fill in (an OpenID Connect application's `login_hint`).
    login_hint: Option<String>,
}

async fn sign_in_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (csrf, set) = csrf_of(&cookies);
    let tenant = query
        .tenant
        .filter(|t| t.parse::<TenantId>().is_ok())
        .unwrap_or_default();
    let email = query
        .login_hint
        .filter(|hint| hint.len() <= 320 && !hint.chars().any(char::is_control))
        .unwrap_or_default();
    let page = if tenant.is_empty() && query.return_to.is_none() && email.is_empty() {
        // The plain page, the most visited: rendered once per language, then only its token.
        Page {
            status: StatusCode::OK,
            body: plain_sign_in_page(page_lang()).replace(CSRF_SLOT, &csrf),
            cookies: Vec::new(),
            location: None,
            form_action: None,
        }
    } else {
        let return_to = local_path(query.return_to.as_deref());
        let providers = match tenant.parse::<TenantId>() {
            Ok(id) => match anonymous(&state, &parts) {
                Ok(caller) => provider_buttons(&state, &caller, &id, &return_to),
                Err(_) => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        let mut page = sign_in_form(&csrf, &tenant, &return_to, &email, providers);
        page.form_action = oidc::continuing_to(&state, &return_to);
        page
    };
    match set {
        Some(cookie) => page.cookie(cookie),
        None => page,
    }
}

/// The sign-in buttons of the tenant's upstream identity providers: their names and where they
/// lead.
fn provider_buttons(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    return_to: &str,
) -> Vec<minijinja::Value> {
    state
        .app
        .upstream
        .sign_in_options(caller, tenant)
        .into_iter()
        .map(|option| {
            context! {
                name => option.name,
                href => format!("/t/{tenant}/sign-in/{}?return_to={}", option.id, encoded(return_to)),
            }
        })
        .collect()
}

/// The sign-in form with its CSRF token, organisation and return address, and the buttons of
/// the organisation's upstream identity providers.
fn sign_in_form(
    csrf: &str,
    tenant: &str,
    return_to: &str,
    email: &str,
    providers: Vec<minijinja::Value>,
) -> Page {
    Page::html(
        StatusCode::OK,
        "sign_in.html",
        context! { ..base("Sign in"), ..context! {
            csrf => csrf, email => email, tenant => tenant, return_to => return_to,
            providers => providers,
        }},
    )
}

/// Stands for the CSRF token in [`plain_sign_in_page`] (a token is URL-safe base64, which never
/// holds it, and the template holds it nowhere else).
const CSRF_SLOT: &str = "@@csrf@@";

/// The sign-in page without an organisation or a return address, in `lang`, its CSRF token
/// [`CSRF_SLOT`].
fn plain_sign_in_page(lang: Lang) -> &'static str {
    static PAGES: LazyLock<Vec<(Lang, String)>> = LazyLock::new(|| {
        Lang::ALL
            .into_iter()
            .map(|lang| {
                let page = PAGE_LANG.sync_scope(std::cell::Cell::new(lang), || {
                    sign_in_form(CSRF_SLOT, "", &local_path(None), "", Vec::new())
                });
                (lang, page.body)
            })
            .collect()
    });
    PAGES
        .iter()
        .find(|(l, _)| *l == lang)
        .map_or("", |(_, body)| body.as_str())
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    email: String,
    password: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    remember: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

/// Where a completed sign-in goes: its cookies, then the return address, by way of the choice
/// of organisation when the sign-in named none (`choose`; the choice goes straight on for a
/// person who belongs to one).
fn signed_in_page(
    cookies: &Cookies,
    tokens: &Tokens,
    return_to: Option<&str>,
    choose: bool,
) -> Page {
    let [access, refresh] = session_cookies(cookies, tokens);
    let next = local_path(return_to);
    let next = if choose {
        format!("{ORGANISATION}?return_to={}", encoded(&next))
    } else {
        next
    };
    Page::redirect(&next)
        .cookie(access)
        .cookie(refresh)
        .cookie(cookies.set(LINK, "", Some(0)))
}

async fn sign_in(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<SignInForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let again = |error: &str| {
        let return_to = local_path(form.return_to.as_deref());
        let mut page = Page::html(
            StatusCode::UNAUTHORIZED,
            "sign_in.html",
            context! { ..base("Sign in"), ..context! {
                csrf => form.csrf.clone(), email => form.email.clone(), tenant => form.tenant.clone(),
                return_to => &return_to, error => error,
            }},
        );
        page.form_action = oidc::continuing_to(&state, &return_to);
        page
    };
    let tenant = match form.tenant.trim() {
        "" => None,
        text => match text.parse::<TenantId>() {
            Ok(tenant) => Some(tenant),
            Err(_) => return again("The email address or password is wrong."),
        },
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Sign in", &error),
    };
    let remember = form.remember.is_some();
    let named = tenant.is_some();
    match state
        .app
        .identity
        .sign_in(
            &caller,
            &form.email,
            form.password.clone(),
            tenant,
            remember,
        )
        .await
    {
        Ok(SignIn::Complete(tokens)) => {
            signed_in_page(&cookies, &tokens, form.return_to.as_deref(), !named)
        }
        Ok(SignIn::SecondFactorRequired { challenge, .. }) => {
            let return_to = local_path(form.return_to.as_deref());
            let mut page = Page::html(
                StatusCode::OK,
                "second_factor.html",
                context! { ..base("Two-factor sign-in"), ..context! {
                    csrf => form.csrf.clone(), challenge => challenge,
                    return_to => &return_to,
                    remember => if remember { "on" } else { "" },
                    chosen => if named { "on" } else { "" },
                }},
            );
            page.form_action = oidc::continuing_to(&state, &return_to);
            page
        }
        Err(AppError::InvalidCredentials | AppError::AccountDisabled) => {
            again("The email address or password is wrong.")
        }
        Err(error @ AppError::RateLimited(_)) => failure_page("Sign in", &error),
        Err(AppError::TenantNotFound | AppError::NotAMember) => {
            again("You cannot sign in to that organisation with this account.")
        }
        Err(error) => failure_page("Sign in", &error),
    }
}

#[derive(Deserialize)]
struct SecondFactorForm {
    csrf: String,
    challenge: String,
    code: String,
    #[serde(default)]
    remember: Option<String>,
    /// `on` when step one named the organisation (no choice to offer afterwards).
    #[serde(default)]
    chosen: String,
    #[serde(default)]
    return_to: Option<String>,
}

async fn second_factor(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<SecondFactorForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Two-factor sign-in", &error),
    };
    let code = form.code.trim();
    // Six digits are an authenticator code; anything else is taken for a recovery code.
    let (totp, recovery) = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        (Some(code), None)
    } else {
        (None, Some(code))
    };
    let remember = form.remember.as_deref() == Some("on");
    match state
        .app
        .identity
        .sign_in_second_factor(&caller, &form.challenge, totp, recovery, Some(remember))
        .await
    {
        Ok(tokens) => signed_in_page(
            &cookies,
            &tokens,
            form.return_to.as_deref(),
            form.chosen.is_empty(),
        ),
        Err(AppError::InvalidCredentials) => Page::html(
            StatusCode::UNAUTHORIZED,
            "second_factor.html",
            context! { ..base("Two-factor sign-in"), ..context! {
                csrf => form.csrf.clone(), challenge => form.challenge.clone(),
                return_to => local_path(form.return_to.as_deref()),
                remember => if remember { "on" } else { "" },
                chosen => form.chosen.clone(),
                error => "The code is wrong or was used already: enter the next code of your authenticator app, or a recovery code.",
            }},
        ),
        Err(AppError::InvalidToken) => Page::redirect("/sign-in"),
        Err(error) => failure_page("Two-factor sign-in", &error),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<CsrfForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    if let Ok(Some((caller, _))) = signed_in(&state, &parts, &cookies).await
        && let Err(error) = state.app.identity.sign_out(&caller).await
    {
        return failure_page("Sign out", &error);
    }
    Page::redirect("/sign-in")
        .cookie(cookies.set(ACCESS, "", Some(0)))
        .cookie(cookies.set(REFRESH, "", Some(0)))
}

// ----- the account -----

async fn account(State(state): State<AppState>, request: axum::extract::Request) -> Page {
    // The request itself rather than `Parts`, which axum hands over as a copy.
    let (parts, _) = request.into_parts();
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) = match signed_in(&state, &parts, &cookies).await {
        Ok(Some(signed_in)) => signed_in,
        Ok(None) => return Page::redirect("/sign-in?return_to=/account"),
        Err(error) => return failure_page("Your account", &error),
    };
    let overview = match state.app.identity.account_overview(&caller) {
        Ok(overview) => overview,
        Err(error) => return failure_page("Your account", &error),
    };
    let (csrf, set) = csrf_of(&cookies);
    let mut page = Page {
        status: StatusCode::OK,
        body: state
            .account_pages
            .page(&caller, page_lang(), &overview, &csrf),
        cookies: Vec::new(),
        location: None,
        form_action: None,
    };
    for cookie in refreshed.into_iter().chain(set) {
        page = page.cookie(cookie);
    }
    page
}

/// The account page of `overview` with the CSRF token `csrf`.
fn account_page(overview: &AccountOverview, csrf: &str) -> Page {
    let attributes: Vec<minijinja::Value> = overview
        .attributes
        .iter()
        .map(|(label, value)| {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            context! { label => label, value => value }
        })
        .collect();
    let user = &overview.user;
    let name = format!("{} {}", user.first_name, user.last_name);
    Page::html(
        StatusCode::OK,
        "account.html",
        context! { ..base("Your account"), ..context! {
            csrf => csrf, name => name.trim(), email => &user.email, verified => user.email_verified,
            phone => &user.phone, tenant => &overview.organisation,
            several => overview.organisations > 1,
            roles => overview.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            attributes => attributes, two_factor => user.two_factor,
        }},
    )
}

/// Account pages rendered lately, by person, organisation and language, with their CSRF token
/// cut out: the page is answered again, with the browser's token put in, while the application
/// gives the same overview (the same `Arc`: the directory has not moved on since), and rendered
/// anew otherwise. In memory only and bounded; an entry whose overview is gone (a change, an
/// erasure) is never answered again, only left to be replaced or pushed out.
#[derive(Default)]
pub struct AccountPages {
    pages: std::sync::Mutex<HashMap<(UserId, TenantId, Lang), RenderedAccount>>,
}

struct RenderedAccount {
    overview: Arc<AccountOverview>,
    /// The page before and after its CSRF token.
    before: String,
    after: String,
}

/// Account pages kept at most (a few KiB each).
const ACCOUNT_PAGES: usize = 4_096;

impl AccountPages {
    fn page(
        &self,
        caller: &Caller,
        lang: Lang,
        overview: &Arc<AccountOverview>,
        csrf: &str,
    ) -> String {
        let Some(auth) = caller.authenticated() else {
            return account_page(overview, csrf).body;
        };
        let key = (auth.user, auth.tenant.clone(), lang);
        let lock = || {
            self.pages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(kept) = lock().get(&key)
            && Arc::ptr_eq(&kept.overview, overview)
        {
            return [kept.before.as_str(), csrf, kept.after.as_str()].concat();
        }
        // Rendered with a random stand-in for the token, which no field of the person's can
        // hold, so it is cut out at the one place it was put in.
        let slot = random_token();
        let body = account_page(overview, &slot).body;
        let mut parts = body.split(slot.as_str());
        let (Some(before), Some(after), None) = (parts.next(), parts.next(), parts.next()) else {
            return account_page(overview, csrf).body;
        };
        let page = [before, csrf, after].concat();
        let mut pages = lock();
        if pages.len() >= ACCOUNT_PAGES && !pages.contains_key(&key) {
            pages.clear();
        }
        pages.insert(
            key,
            RenderedAccount {
                overview: overview.clone(),
                before: before.to_owned(),
                after: after.to_owned(),
            },
        );
        page
    }
}

// ----- the administration console -----

const PEOPLE: &str = "People";

/// The statuses the people screen filters by: (query value, label); the first is no filter.
const STATUS_CHOICES: [(&str, &str); 6] = [
    ("", "Any status"),
    ("active", "Active"),
    ("invited", "Invited"),
    ("suspended", "Suspended"),
    ("inactive", "Inactive"),
    ("erased", "Erased"),
];

/// The orders the people screen offers: (query value, label); the first is the default.
const SORT_CHOICES: [(&str, &str); 6] = [
    ("email:asc", "Email address"),
    ("first_name:asc", "First name"),
    ("last_name:asc", "Last name"),
    ("created_at:desc", "Newest first"),
    ("created_at:asc", "Oldest first"),
    ("last_sign_in:desc", "Latest sign-in first"),
];

/// The console's people screen: the organisation's directory, searched by name, address or id,
/// filtered by status, sorted, a page at a time; the same search as `GET
/// /v1/tenants/{tenant}/users`, with the same permission (`users:read`).
async fn admin_users_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    // Back here after signing in, with the same search.
    let here = match parts.uri.query() {
        Some(query) => encoded(&format!("/admin/users?{query}")),
        None => "/admin/users".to_owned(),
    };
    let (caller, refreshed) = match session_or_sign_in(&state, &parts, &cookies, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let (csrf, set) = csrf_of(&cookies);
    let query = parts.uri.query().unwrap_or("");
    let page = match people_screen(&state, &caller, query, &csrf).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn people_screen(
    state: &AppState,
    caller: &Caller,
    query: &str,
    csrf: &str,
) -> Result<Page, Page> {
    state
        .app
        .identity
        .console(caller)
        .map_err(|error| failure_page(PEOPLE, &error))?;
    let tenant = caller
        .authenticated()
        .map(|auth| auth.tenant.clone())
        .ok_or_else(|| failure_page(PEOPLE, &AppError::SessionOnly))?;
    // What the form sends, empty fields left out (a field left empty is no filter).
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let value_of = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let unreadable = |detail: String| {
        Page::html(
            StatusCode::BAD_REQUEST,
            "message.html",
            context! { ..base(PEOPLE), ..context! {
                message => format!("The search could not be read: {detail}."),
                link => "/admin/users", link_text => "People",
            }},
        )
    };
    let encoded = |pairs: &[(String, String)]| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            form.append_pair(name, value);
        }
        form.finish()
    };
    let uri: axum::http::Uri = format!("/admin/users?{}", encoded(&pairs))
        .parse()
        .map_err(|_| unreadable("its address".into()))?;
    let search = axum::extract::Query::<crate::routes::people::SearchQuery>::try_from_uri(&uri)
        .map_err(|rejection| unreadable(rejection.body_text()))?;
    let mut people_query = search.0.to_query().map_err(|error| {
        let (_, _, detail) = error.parts();
        unreadable(detail)
    })?;
    if search.0.sort.is_none() {
        people_query.sort = crate::routes::people::sort_of(Some(SORT_CHOICES[0].0))
            .expect("the default order is well-formed");
    }
    let found = state
        .app
        .people
        .search(caller, &tenant, &people_query)
        .await
        .map_err(|error| failure_page(PEOPLE, &error))?;
    let date = |time: time::OffsetDateTime| {
        time.format(&time::macros::format_description!("[year]-[month]-[day]"))
            .unwrap_or_default()
    };
    let rows: Vec<minijinja::Value> = found
        .rows
        .iter()
        .map(|row| {
            let user = &row.user;
            let status = STATUS_CHOICES
                .iter()
                .find(|(value, _)| *value == crate::routes::people::status_name(row.status))
                .map_or("", |(_, label)| label);
            context! {
                id => user.id.to_string(),
                name => format!("{} {}", user.first_name, user.last_name).trim(),
                email => &user.email,
                status => status,
                roles => row.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                created => date(user.created_at),
                last_sign_in => user.last_sign_in.map(date),
            }
        })
        .collect();
    let choices = |choices: &[(&str, &str)], chosen: &str| -> Vec<minijinja::Value> {
        choices
            .iter()
            .map(|(value, label)| {
                context! { value => value, label => label, selected => *value == chosen }
            })
            .collect()
    };
    let next = found.next.map(|cursor| {
        let mut onwards: Vec<(String, String)> = pairs
            .iter()
            .filter(|(n, _)| n != "cursor")
            .cloned()
            .collect();
        onwards.push(("cursor".into(), cursor));
        format!("/admin/users?{}", encoded(&onwards))
    });
    let sort = match value_of("sort") {
        "" => SORT_CHOICES[0].0,
        chosen => chosen,
    };
    let held = console::Held::of(state, caller).await;
    Ok(Page::html(
        StatusCode::OK,
        "admin_users.html",
        context! { ..base(PEOPLE), ..context! {
            wide => true, csrf => csrf, q => value_of("q"),
            statuses => choices(&STATUS_CHOICES, value_of("status")),
            sorts => choices(&SORT_CHOICES, sort),
            rows => rows, total => found.total, exact => found.total_exact, next => next,
            may_invite => held.may_on_people("create"),
            may_change => held.may_on_people("update"),
        }},
    ))
}

/// One person of the organisation as the console shows them, read with the directory search
/// (so with `users:read` in the caller's organisation, and only if they belong to it: another
/// organisation's people are not found, whether they exist or not).
async fn console_person(
    state: &AppState,
    caller: &Caller,
    user: &str,
) -> Result<idstream_app::PersonRow, Page> {
    const PERSON: &str = "Person";
    let tenant = console_tenant(state, caller, PERSON)?;
    let not_found = || failure_page(PERSON, &AppError::UserNotFound);
    let id: UserId = user.parse().map_err(|_| not_found())?;
    let query = people_query(Some(id.to_string()), 1);
    let found = state
        .app
        .people
        .search(caller, &tenant, &query)
        .await
        .map_err(|error| failure_page(PERSON, &error))?;
    found
        .rows
        .into_iter()
        .find(|row| row.user.id == id)
        .ok_or_else(not_found)
}

/// The console's page of one person: who they are, their status and roles, and the changes of
/// status the console offers.
async fn admin_user_page(
    State(state): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<String>,
    parts: Parts,
) -> Page {
    let here = encoded(&format!("/admin/users/{user}"));
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match console_person(&state, &caller, &user).await {
        Err(page) => page,
        Ok(row) => {
            let view = &row.user;
            let status = crate::routes::people::status_name(row.status);
            let label = STATUS_CHOICES
                .iter()
                .find(|(value, _)| *value == status)
                .map_or("", |(_, label)| label);
            // What the console offers for each status: (action, button).
            let mut offered = match status {
                "active" => vec![("suspend", "Suspend"), ("deactivate", "Deactivate")],
                "suspended" => vec![("reinstate", "Reinstate"), ("deactivate", "Deactivate")],
                "inactive" => vec![("reactivate", "Reactivate")],
                _ => Vec::new(),
            };
            if status != "erased" {
                offered.push(("end_sessions", "End their sessions"));
                offered.push(("unlock", "Lift a lock-out"));
                offered.push(("reset_factors", "Reset their second factors"));
            }
            // Only what the caller could use.
            let held = console::Held::of(&state, &caller).await;
            if !held.may_on_people("update") {
                offered.clear();
            }
            let trail = match person_trail(&state, &caller, view.id).await {
                Ok(trail) => trail,
                Err(page) => return with_cookies(page, refreshed, set),
            };
            let actions: Vec<minijinja::Value> = offered
                .into_iter()
                .map(|(action, button)| context! { action => action, button => button })
                .collect();
            Page::html(
                StatusCode::OK,
                "admin_user.html",
                context! { ..base("Person"), ..context! {
                    csrf => csrf, id => view.id.to_string(),
                    name => format!("{} {}", view.first_name, view.last_name).trim(),
                    email => &view.email, status => label,
                    roles => row.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                    actions => actions, trail => trail,
                    erasable => status != "erased" && held.may("users:delete"),
                    more => console::person_sections(&state, &caller, view.id, &held).await,
                }},
            )
        }
    };
    with_cookies(page, refreshed, set)
}

/// The latest events about `user` in the caller's organisation, for the person's page: `None`
/// when the caller may not read the audit trail (the section is then left out).
async fn person_trail(
    state: &AppState,
    caller: &Caller,
    user: UserId,
) -> Result<Option<Vec<minijinja::Value>>, Page> {
    let Some(tenant) = caller.authenticated().map(|auth| auth.tenant.clone()) else {
        return Ok(None);
    };
    let query = idstream_audit::AuditQuery {
        filter: idstream_audit::AuditFilter {
            subject: Some(user),
            ..idstream_audit::AuditFilter::scope(idstream_audit::Scope::Tenant(tenant))
        },
        cursor: None,
        order: idstream_audit::Order::NewestFirst,
        limit: 20,
    };
    let page = match state.app.audit.events(caller, query).await {
        Ok(page) => page,
        Err(AppError::Forbidden(_)) => return Ok(None),
        Err(error) => return Err(failure_page("Person", &error)),
    };
    let when = |time: time::OffsetDateTime| {
        time.format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default()
    };
    Ok(Some(
        page.entries
            .iter()
            .map(|entry| {
                context! {
                    time => when(entry.time), summary => &entry.summary,
                    actor => match entry.actor.kind {
                        idstream_domain::envelope::ActorKind::User => {
                            format!("user {}", entry.actor.id)
                        }
                        idstream_domain::envelope::ActorKind::ApiKey => {
                            format!("API key {}", entry.actor.id)
                        }
                        idstream_domain::envelope::ActorKind::System => entry.actor.id.clone(),
                    },
                }
            })
            .collect(),
    ))
}

const ROLES: &str = "Roles";

/// The caller of a console page: its session (anyone without one is sent to sign in, and back to
/// `here`), the refreshed session's cookies, and the browser's CSRF token for the page's forms
/// (with its cookie when it is new).
async fn page_caller(
    state: &AppState,
    parts: &Parts,
    here: &str,
) -> Result<(Caller, Vec<HeaderValue>, String, Option<HeaderValue>), Page> {
    let cookies = Cookies::of(state, &parts.headers);
    let (caller, refreshed) = session_or_sign_in(state, parts, &cookies, here).await?;
    let (csrf, set) = csrf_of(&cookies);
    Ok((caller, refreshed, csrf, set))
}

/// The caller of a console form: its CSRF token checked against the browser's cookie (refused
/// otherwise), then its session (anyone without one is sent to sign in, and back to `here`).
async fn form_caller(
    state: &AppState,
    parts: &Parts,
    csrf: &str,
    here: &str,
) -> Result<(Caller, Vec<HeaderValue>), Page> {
    let cookies = Cookies::of(state, &parts.headers);
    if !csrf_holds(&cookies, csrf) {
        return Err(refused_form());
    }
    session_or_sign_in(state, parts, &cookies, here).await
}

/// A directory search for the console: `text` (if any), `limit` rows, no other filter, the
/// default order.
fn people_query(text: Option<String>, limit: usize) -> idstream_app::PeopleQuery {
    idstream_app::PeopleQuery {
        text,
        roles: Vec::new(),
        statuses: Vec::new(),
        created_from: None,
        created_to: None,
        last_sign_in_from: None,
        last_sign_in_to: None,
        verified: None,
        attributes: Vec::new(),
        sort: idstream_directory::search::Sort::default(),
        cursor: None,
        limit,
    }
}

/// The role named in a console path, or the page saying there is no such role.
fn role_named(role: &str, title: &str) -> Result<idstream_domain::RoleName, Page> {
    role.parse().map_err(|_| {
        failure_page(
            title,
            &AppError::Role(idstream_domain::access::role::RoleError::NotFound),
        )
    })
}

/// The console's gate and the caller's organisation, or the page that refuses.
fn console_tenant(state: &AppState, caller: &Caller, title: &str) -> Result<TenantId, Page> {
    state
        .app
        .identity
        .console(caller)
        .map_err(|error| failure_page(title, &error))?;
    caller
        .authenticated()
        .map(|auth| auth.tenant.clone())
        .ok_or_else(|| failure_page(title, &AppError::SessionOnly))
}

/// How many people hold `role`, when the caller may read the directory (`users:read`).
async fn holders(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    role: &idstream_domain::RoleName,
    limit: usize,
) -> Option<idstream_app::PeoplePage> {
    let query = people_query(None, limit);
    state
        .app
        .people
        .role_members(caller, tenant, role, &query)
        .await
        .ok()
}

/// The console's roles: each with its description, whether it is built in or gives global
/// access, and how many people hold it (with `users:read`).
async fn admin_roles_page(State(state): State<AppState>, parts: Parts) -> Page {
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, "/admin/roles").await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match roles_screen(&state, &caller, &csrf).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn roles_screen(state: &AppState, caller: &Caller, csrf: &str) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, ROLES)?;
    let roles = state
        .app
        .access
        .roles(caller, &tenant)
        .await
        .map_err(|error| failure_page(ROLES, &error))?;
    let mut rows = Vec::with_capacity(roles.len());
    for role in &roles {
        let count = holders(state, caller, &tenant, &role.name, 1)
            .await
            .map(|page| page.total);
        rows.push(context! {
            name => role.name.as_str(), label => role.label.as_deref().unwrap_or(role.name.as_str()),
            description => &role.description, built_in => role.built_in,
            global => role.global_access, members => count,
        });
    }
    Ok(Page::html(
        StatusCode::OK,
        "admin_roles.html",
        context! { ..base(ROLES), ..context! {
            wide => true, roles => rows, csrf => csrf,
            may_define => console::Held::of(state, caller).await.may("roles:create"),
        }},
    ))
}

/// The console's page of one role: its permission matrix (resources × read, create, update,
/// delete), its other permissions, and the people who hold it.
async fn admin_role_page(
    State(state): State<AppState>,
    axum::extract::Path(role): axum::extract::Path<String>,
    parts: Parts,
) -> Page {
    let here = encoded(&format!("/admin/roles/{role}"));
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match role_screen(&state, &caller, &role, &csrf).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn role_screen(
    state: &AppState,
    caller: &Caller,
    role: &str,
    csrf: &str,
) -> Result<Page, Page> {
    const ROLE: &str = "Role";
    let tenant = console_tenant(state, caller, ROLE)?;
    let name = role_named(role, ROLE)?;
    let record = state
        .app
        .access
        .role(caller, &tenant, &name)
        .await
        .map_err(|error| failure_page(ROLE, &error))?;
    // Resource → for read, create, update, delete: (whether the catalogue has it, whether the
    // role gives it); every other permission of the role listed as it is.
    let mut matrix: std::collections::BTreeMap<String, [(bool, bool); 4]> = Default::default();
    let catalogue = state
        .app
        .access
        .permission_catalogue(caller, &tenant)
        .await
        .unwrap_or_default();
    let crud = |text: &str| -> Option<(String, usize)> {
        let (resource, action) = text.rsplit_once(':')?;
        let column = CRUD.iter().position(|crud| *crud == action)?;
        Some((resource.to_owned(), column))
    };
    for entry in &catalogue {
        if let Some((resource, column)) = crud(entry.permission.as_str()) {
            matrix.entry(resource).or_default()[column].0 = true;
        }
    }
    let mut other = Vec::new();
    for permission in &record.permissions {
        match crud(permission.as_str()) {
            Some((resource, column)) => {
                matrix.entry(resource).or_default()[column] = (true, true);
            }
            None => other.push(permission.as_str().to_owned()),
        }
    }
    let matrix: Vec<minijinja::Value> = matrix
        .into_iter()
        .map(|(resource, cells)| {
            let cells: Vec<minijinja::Value> = cells
                .iter()
                .zip(CRUD)
                .map(|((known, given), action)| {
                    context! {
                        known => known, given => given,
                        permission => format!("{resource}:{action}"), action => action,
                    }
                })
                .collect();
            context! { resource => resource, cells => cells }
        })
        .collect();
    // Built-in `owner` and `admin` cannot change.
    let held = console::Held::of(state, caller).await;
    let editable = !matches!(name.as_str(), "owner" | "admin") && held.may("roles:update");
    let members = holders(state, caller, &tenant, &name, 50)
        .await
        .map(|page| {
            page.rows
                .iter()
                .map(|row| {
                    context! {
                        id => row.user.id.to_string(), email => &row.user.email,
                        name => format!("{} {}", row.user.first_name, row.user.last_name).trim(),
                    }
                })
                .collect::<Vec<_>>()
        });
    Ok(Page::html(
        StatusCode::OK,
        "admin_role.html",
        context! { ..base(ROLE), ..context! {
            wide => true, csrf => csrf, name => name.as_str(),
            label => record.label.as_deref().unwrap_or(name.as_str()),
            description => &record.description, global => record.global_access,
            built_in => record.built_in, matrix => matrix, other => other, members => members,
            editable => editable,
            may_assign => held.may(&format!("role.{name}:assign")),
            may_delete => held.may("roles:delete") && !record.built_in,
            may_menu => held.may("menus:update"),
            menu => serde_json::to_string_pretty(&record.menu).unwrap_or_default(),
            may_revoke => held.may(&format!("role.{name}:revoke")),
        }},
    ))
}

/// The actions of the permission matrix's columns.
const CRUD: [&str; 4] = ["read", "create", "update", "delete"];

/// Saves a role's permission matrix from its page: the checked permissions, global access and
/// description, the role's other permissions kept; the same operation as `PUT
/// /v1/tenants/{tenant}/roles/{role}` (`roles:update`, holding what is given).
async fn admin_role_permissions(
    State(state): State<AppState>,
    axum::extract::Path(role): axum::extract::Path<String>,
    parts: Parts,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Page {
    let csrf = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map_or("", |(_, value)| value.as_str());
    let here = format!("/admin/roles/{}", encoded(&role));
    let (caller, refreshed) = match form_caller(&state, &parts, csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match save_role_permissions(&state, &caller, &role, &fields).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn save_role_permissions(
    state: &AppState,
    caller: &Caller,
    role: &str,
    fields: &[(String, String)],
) -> Result<Page, Page> {
    const ROLE: &str = "Role";
    let tenant = console_tenant(state, caller, ROLE)?;
    let refused = |error: &AppError| failure_page(ROLE, error);
    let name = role_named(role, ROLE)?;
    let record = state
        .app
        .access
        .role(caller, &tenant, &name)
        .await
        .map_err(|error| refused(&error))?;
    let mut permissions: std::collections::BTreeSet<idstream_domain::access::Permission> = record
        .permissions
        .iter()
        .filter(|p| {
            p.as_str()
                .rsplit_once(':')
                .is_none_or(|(_, action)| !CRUD.contains(&action))
        })
        .cloned()
        .collect();
    let mut description = record.description.clone();
    let mut global_access = false;
    for (field, value) in fields {
        match field.as_str() {
            "permission" => {
                let permission = value.parse().map_err(|_| {
                    Page::html(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "message.html",
                        context! { ..base(ROLE), ..context! {
                            message => format!("Not a permission: {value}."),
                            link => format!("/admin/roles/{name}"), link_text => "Role",
                        }},
                    )
                })?;
                permissions.insert(permission);
            }
            "global_access" => global_access = true,
            "description" => description = value.clone(),
            _ => {}
        }
    }
    let request = idstream_app::RoleRequest {
        description,
        permissions,
        global_access,
    };
    if fields
        .iter()
        .any(|(field, value)| field == "intent" && value == "preview")
    {
        return console::role_preview(state, caller, tenant, name, request, fields).await;
    }
    let saved = state
        .app
        .access_admin
        .update_role(caller, tenant, name.clone(), request)
        .await
        .map_err(|error| refused(&error))?;
    console::settled(state, saved.position, ROLE).await?;
    Ok(Page::redirect(&format!("/admin/roles/{name}")))
}

#[derive(Deserialize)]
struct RoleMembersForm {
    csrf: String,
    /// People to give the role: email addresses or user ids, separated by spaces, commas or
    /// lines.
    #[serde(default)]
    add: String,
    /// One person to take it from (a user id).
    #[serde(default)]
    remove: String,
}

/// The most people one form may name.
const ROLE_MEMBERS_AT_ONCE: usize = 100;

/// Gives a role to the people named, or takes it from one, from the role's page: the same
/// operation as `POST /v1/tenants/{tenant}/roles/{role}/members` (giving the role, or
/// `role.<role>:revoke`), with a result per person. People are named by address or id and found
/// with the directory search, so only the organisation's own people can be named.
async fn admin_role_members(
    State(state): State<AppState>,
    axum::extract::Path(role): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<RoleMembersForm>,
) -> Page {
    let here = format!("/admin/roles/{}", encoded(&role));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match change_role_members(&state, &caller, &role, form).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn change_role_members(
    state: &AppState,
    caller: &Caller,
    role: &str,
    form: RoleMembersForm,
) -> Result<Page, Page> {
    const ROLE: &str = "Role";
    let tenant = console_tenant(state, caller, ROLE)?;
    let name = role_named(role, ROLE)?;
    let back = format!("/admin/roles/{name}");
    let message = |status: StatusCode, text: String| {
        Page::html(
            status,
            "message.html",
            context! { ..base(ROLE), ..context! { message => text, link => &back, link_text => "Role" } },
        )
    };
    let named: Vec<&str> = form
        .add
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|n| !n.is_empty())
        .collect();
    if named.len() > ROLE_MEMBERS_AT_ONCE {
        return Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Name at most {ROLE_MEMBERS_AT_ONCE} people at once."),
        ));
    }
    // Each name found among the organisation's people (by exact id or address), or not.
    let mut add = Vec::new();
    let mut unknown = Vec::new();
    for text in &named {
        let query = people_query(Some((*text).to_owned()), 5);
        let found = state
            .app
            .people
            .search(caller, &tenant, &query)
            .await
            .map_err(|error| failure_page(ROLE, &error))?;
        match found.rows.iter().find(|row| {
            row.user.id.to_string() == *text || row.user.email.eq_ignore_ascii_case(text)
        }) {
            Some(row) => add.push(row.user.id),
            None => unknown.push((*text).to_owned()),
        }
    }
    let remove: Vec<UserId> = match form.remove.trim() {
        "" => Vec::new(),
        id => vec![
            id.parse()
                .map_err(|_| failure_page(ROLE, &AppError::UserNotFound))?,
        ],
    };
    if add.is_empty() && remove.is_empty() && unknown.is_empty() {
        return Ok(Page::redirect(&back));
    }
    let results = if add.is_empty() && remove.is_empty() {
        Vec::new()
    } else {
        state
            .app
            .people
            .change_role_members(caller, &tenant, &name, &add, &remove, None)
            .await
            .map_err(|error| failure_page(ROLE, &error))?
    };
    let refused: Vec<String> = results
        .iter()
        .filter_map(|result| {
            result
                .outcome
                .as_ref()
                .err()
                .map(|error| format!("{}: {error}", result.user))
        })
        .chain(
            unknown
                .iter()
                .map(|text| format!("{text}: not one of the organisation's people")),
        )
        .collect();
    let last = results
        .iter()
        .filter_map(|result| result.outcome.as_ref().ok().and_then(Option::as_ref))
        .map(|outcome| outcome.position)
        .max()
        .unwrap_or(0);
    console::settled(state, last, ROLE).await?;
    if refused.is_empty() {
        return Ok(Page::redirect(&back));
    }
    Ok(message(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Not done for: {}.", refused.join("; ")),
    ))
}

const ERASE: &str = "Erase this person";

/// Erasure's confirmation, which says what it does before anything is done: the person's
/// personal data destroyed for good in every organisation, sign-in ended, the trail kept with
/// them named by id only. Confirmed by typing their address.
async fn admin_erase_page(
    State(state): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<String>,
    parts: Parts,
) -> Page {
    let here = encoded(&format!("/admin/users/{user}/erase"));
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match console_person(&state, &caller, &user).await {
        Err(page) => page,
        Ok(row) => Page::html(
            StatusCode::OK,
            "admin_erase.html",
            context! { ..base(ERASE), ..context! {
                csrf => csrf, id => row.user.id.to_string(), email => &row.user.email,
                name => format!("{} {}", row.user.first_name, row.user.last_name).trim(),
            }},
        ),
    };
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct EraseForm {
    csrf: String,
    /// The person's address, typed again.
    #[serde(default)]
    confirm: String,
}

/// Erases a person once their address is typed again: the same operation as `DELETE
/// /v1/users/{user}` (`users:delete`, and never oneself).
async fn admin_erase(
    State(state): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<EraseForm>,
) -> Page {
    let here = format!("/admin/users/{}/erase", encoded(&user));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match console_person(&state, &caller, &user).await {
        Err(page) => page,
        Ok(row) if !row.user.email.eq_ignore_ascii_case(form.confirm.trim()) => Page::html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.html",
            context! { ..base(ERASE), ..context! {
                message => "The address typed is not this person's: nothing was erased.",
                link => format!("/admin/users/{}/erase", row.user.id), link_text => "Erase this person",
            }},
        ),
        Ok(row) => match state.app.users.erase(&caller, row.user.id).await {
            Ok(done) => match console::settled(&state, done.position, ERASE).await {
                Ok(()) => Page::redirect(&format!("/admin/users/{}", row.user.id)),
                Err(page) => page,
            },
            Err(error) => failure_page(ERASE, &error),
        },
    };
    with_cookies(page, refreshed, None)
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    action: String,
    /// For `suspend`: the day it ends (`YYYY-MM-DD`, at midnight UTC); empty: until reinstated.
    #[serde(default)]
    until: String,
    /// For `suspend`: why, as the trail will say.
    #[serde(default)]
    reason: String,
}

/// The end of a suspension as the console's date field gives it: midnight UTC of that day, or
/// none when the field is empty.
fn suspension_end(day: &str) -> Result<Option<time::OffsetDateTime>, AppError> {
    let day = day.trim();
    if day.is_empty() {
        return Ok(None);
    }
    time::Date::parse(
        day,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map(|date| Some(date.midnight().assume_utc()))
    .map_err(|_| AppError::InvalidQuery("the end of a suspension is a day, YYYY-MM-DD".into()))
}

/// A change of a person's standing from the console: the same operations as the API's
/// (`suspend`, `reinstate`, `deactivate`, `reactivate`, ending every session, lifting a
/// lock-out), with their permissions and guards.
async fn admin_user_status(
    State(state): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<StatusForm>,
) -> Page {
    let here = format!("/admin/users/{}", encoded(&user));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match console_person(&state, &caller, &user).await {
        Err(page) => page,
        Ok(row) => {
            let users = &state.app.users;
            let id = row.user.id;
            let done = match form.action.as_str() {
                "suspend" => match suspension_end(&form.until) {
                    Ok(until) => {
                        let reason = form.reason.trim();
                        users
                            .suspend(
                                &caller,
                                id,
                                idstream_app::SuspendRequest {
                                    until,
                                    reason: (!reason.is_empty()).then(|| reason.to_owned()),
                                },
                            )
                            .await
                    }
                    Err(error) => Err(error),
                },
                "reinstate" => users.reinstate(&caller, id).await,
                "deactivate" => users.deactivate(&caller, id).await,
                "reactivate" => users.reactivate(&caller, id).await,
                "end_sessions" => users.revoke_sessions(&caller, id).await,
                "unlock" => users.unlock(&caller, id).await,
                "reset_factors" => users.reset_factors(&caller, id).await,
                _ => Err(AppError::InvalidQuery(
                    "the action is suspend, reinstate, deactivate, reactivate, end_sessions, \
                     unlock or reset_factors"
                        .into(),
                )),
            };
            match done {
                Ok(done) => match console::settled(&state, done.position, "Person").await {
                    Ok(()) => Page::redirect(&format!("/admin/users/{id}")),
                    Err(page) => page,
                },
                Err(error) => failure_page("Person", &error),
            }
        }
    };
    with_cookies(page, refreshed, None)
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    email: String,
    first_name: String,
    last_name: String,
    /// Blank: the organisation's default role.
    #[serde(default)]
    role: String,
    /// `email` (the service mails the link) or `link` (shown here, once).
    #[serde(default)]
    delivery: String,
}

/// The console's invitation: by email, or as a link shown once for the inviter to pass on; the
/// same operation as `POST /v1/tenants/{tenant}/invitations`, with its permission
/// (`users:create`, and giving the role).
async fn admin_invite(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<InviteForm>,
) -> Page {
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, "/admin/users").await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match invite_from_console(&state, &caller, form).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn invite_from_console(
    state: &AppState,
    caller: &Caller,
    form: InviteForm,
) -> Result<Page, Page> {
    const INVITE: &str = "Invite someone";
    let refused = |error: &AppError| failure_page(INVITE, error);
    state
        .app
        .identity
        .console(caller)
        .map_err(|e| refused(&e))?;
    let tenant = caller
        .authenticated()
        .map(|auth| auth.tenant.clone())
        .ok_or_else(|| refused(&AppError::SessionOnly))?;
    let roles = match form.role.trim() {
        "" => Vec::new(),
        role => vec![role.parse::<idstream_domain::RoleName>().map_err(|_| {
            Page::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "message.html",
                context! { ..base(INVITE), ..context! {
                    message => "There is no such role.", link => "/admin/users", link_text => "People",
                }},
            )
        })?],
    };
    let delivery = match form.delivery.as_str() {
        "link" => idstream_domain::events::InvitationDelivery::Link,
        _ => idstream_domain::events::InvitationDelivery::Email,
    };
    let sent = state
        .app
        .identity
        .invite(
            caller,
            tenant,
            idstream_app::identity::InvitationRequest {
                email: form.email,
                first_name: form.first_name,
                last_name: form.last_name,
                roles,
                delivery,
            },
        )
        .await
        .map_err(|error| refused(&error))?;
    let message = match (&sent.link, sent.email_sent) {
        (Some(_), _) => "Pass this link on to the person invited; it is shown only now.",
        (None, true) => "The invitation is on its way.",
        (None, false) => "The invitation is recorded, but its mail could not be sent yet.",
    };
    Ok(Page::html(
        StatusCode::OK,
        "message.html",
        context! { ..base(INVITE), ..context! {
            message => message, secret => sent.link, link => "/admin/users", link_text => "People",
        }},
    ))
}

// ----- the organisation -----

/// The choice of organisation.
const ORGANISATION: &str = "/account/organisation";

/// `text` as one component of a query string.
fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The organisations the person belongs to, to work in one of them: shown after a sign-in that
/// named none (and passed straight through for a person who belongs to one), and from the
/// account page.
async fn organisation_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<ReturnTo>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let return_to = local_path(query.return_to.as_deref());
    let here = encoded(&format!("{ORGANISATION}?return_to={return_to}"));
    let (caller, refreshed) = match session_or_sign_in(&state, &parts, &cookies, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let tenants = match state.app.identity.my_tenants(&caller) {
        Ok(tenants) => tenants,
        Err(error) => return failure_page("Your organisation", &error),
    };
    if tenants.len() <= 1 {
        return with_cookies(Page::redirect(&return_to), refreshed, None);
    }
    let (csrf, set) = csrf_of(&cookies);
    with_cookies(
        organisation_list(&csrf, &return_to, &tenants, None),
        refreshed,
        set,
    )
}

fn organisation_list(
    csrf: &str,
    return_to: &str,
    tenants: &[idstream_app::identity::MyTenant],
    error: Option<&str>,
) -> Page {
    let tenants: Vec<minijinja::Value> = tenants
        .iter()
        .map(|t| context! { id => t.id.as_str(), name => &t.name, current => t.current })
        .collect();
    Page::html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "organisation.html",
        context! { ..base("Choose an organisation"), ..context! {
            csrf => csrf, return_to => return_to, tenants => tenants, error => error,
        }},
    )
}

#[derive(Deserialize)]
struct OrganisationForm {
    csrf: String,
    tenant: String,
    #[serde(default)]
    return_to: Option<String>,
}

/// Moves the browser's session to the chosen organisation (rotating its refresh token).
async fn choose_organisation(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<OrganisationForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let return_to = local_path(form.return_to.as_deref());
    let session = match browser_session(&state, &parts, &cookies).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return Page::redirect(&format!(
                "/sign-in?return_to={}",
                encoded(&format!("{ORGANISATION}?return_to={return_to}"))
            ));
        }
        Err(error) => return failure_page("Your organisation", &error),
    };
    let switched = match (form.tenant.parse::<TenantId>(), &session.refresh_token) {
        (Ok(tenant), Some(refresh)) => {
            state
                .app
                .identity
                .switch_tenant(&session.caller, tenant, refresh)
                .await
        }
        (Err(_), _) => Err(AppError::NotAMember),
        (_, None) => Err(AppError::InvalidToken),
    };
    match switched {
        Ok(tokens) => {
            let [access, refresh] = session_cookies(&cookies, &tokens);
            Page::redirect(&return_to).cookie(access).cookie(refresh)
        }
        Err(AppError::NotAMember) => {
            let tenants = state
                .app
                .identity
                .my_tenants(&session.caller)
                .unwrap_or_default();
            with_cookies(
                organisation_list(
                    &form.csrf,
                    &return_to,
                    &tenants,
                    Some("You are not a member of that organisation."),
                ),
                session.cookies,
                None,
            )
        }
        Err(AppError::InvalidToken) => Page::redirect("/sign-in"),
        Err(error) => failure_page("Your organisation", &error),
    }
}

// ----- the account's own pages -----

/// The signed-in caller of an account page, or the page to answer instead (sign-in first).
async fn session_or_sign_in(
    state: &AppState,
    parts: &Parts,
    cookies: &Cookies,
    here: &str,
) -> Result<(Caller, Vec<HeaderValue>), Page> {
    match signed_in(state, parts, cookies).await {
        Ok(Some(signed_in)) => Ok(signed_in),
        Ok(None) => Err(Page::redirect(&format!("/sign-in?return_to={here}"))),
        Err(error) => Err(failure_page("Your account", &error)),
    }
}

/// `page` with the refreshed session's cookies, and the CSRF cookie if it was new.
fn with_cookies(mut page: Page, refreshed: Vec<HeaderValue>, csrf: Option<HeaderValue>) -> Page {
    for cookie in refreshed.into_iter().chain(csrf) {
        page = page.cookie(cookie);
    }
    page
}

/// A QR code of `text` as an SVG data URI (the CSP allows `data:` images, nothing inline).
fn qr_code(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build();
            format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(svg)
            )
        }
        Err(_) => String::new(),
    }
}

#[derive(Deserialize)]
struct WrongCode {
    wrong: Option<String>,
}

const TWO_FACTOR: &str = "Two-factor sign-in";

// ----- passkeys -----

const PASSKEYS: &str = "Passkeys";

/// What the browser's script posts: the ceremony and the authenticator's answer (JSON text;
/// empty when the browser ran no script).
#[derive(Deserialize)]
struct PasskeyAnswer {
    csrf: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

/// The authenticator's answer, or `None` when the browser sent none (no script).
fn passkey_answer(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text)
        .ok()
        .filter(serde_json::Value::is_object)
}

const NEEDS_SCRIPT: &str =
    "Passkeys need JavaScript: turn it on for this site, or sign in another way.";

#[derive(Deserialize)]
struct PasskeySignInForm {
    #[serde(flatten)]
    answer: PasskeyAnswer,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    return_to: Option<String>,
}

async fn sign_in_passkey(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<PasskeySignInForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.answer.csrf) {
        return refused_form();
    }
    let again = |error: &str| {
        Page::html(
            StatusCode::UNAUTHORIZED,
            "sign_in.html",
            context! { ..base("Sign in"), ..context! {
                csrf => form.answer.csrf.clone(), email => "", tenant => form.tenant.clone(),
                return_to => local_path(form.return_to.as_deref()), error => error,
            }},
        )
    };
    let Some(credential) = passkey_answer(&form.answer.credential) else {
        return again(NEEDS_SCRIPT);
    };
    let tenant = form.tenant.trim().parse::<TenantId>().ok();
    let named = tenant.is_some();
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Sign in", &error),
    };
    match state
        .app
        .identity
        .finish_passkey_sign_in(&caller, &form.answer.ceremony, &credential, tenant, false)
        .await
    {
        Ok(tokens) => signed_in_page(&cookies, &tokens, form.return_to.as_deref(), !named),
        Err(AppError::InvalidCredentials | AppError::InvalidToken | AppError::AccountDisabled) => {
            again("Your passkey could not sign you in.")
        }
        Err(AppError::TenantNotFound | AppError::NotAMember) => {
            again("You cannot sign in to that organisation with this account.")
        }
        Err(error) => failure_page("Sign in", &error),
    }
}

#[derive(Deserialize)]
struct PasskeySecondFactorForm {
    #[serde(flatten)]
    answer: PasskeyAnswer,
    challenge: String,
    #[serde(default)]
    remember: Option<String>,
    #[serde(default)]
    chosen: String,
    #[serde(default)]
    return_to: Option<String>,
}

async fn second_factor_passkey(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<PasskeySecondFactorForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.answer.csrf) {
        return refused_form();
    }
    let remember = form.remember.as_deref() == Some("on");
    let again = |error: &str| {
        Page::html(
            StatusCode::UNAUTHORIZED,
            "second_factor.html",
            context! { ..base("Two-factor sign-in"), ..context! {
                csrf => form.answer.csrf.clone(), challenge => form.challenge.clone(),
                return_to => local_path(form.return_to.as_deref()),
                remember => if remember { "on" } else { "" },
                chosen => form.chosen.clone(), error => error,
            }},
        )
    };
    let Some(credential) = passkey_answer(&form.answer.credential) else {
        return again(NEEDS_SCRIPT);
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Two-factor sign-in", &error),
    };
    match state
        .app
        .identity
        .finish_passkey_second_factor(&caller, &form.answer.ceremony, &credential, Some(remember))
        .await
    {
        Ok(tokens) => signed_in_page(
            &cookies,
            &tokens,
            form.return_to.as_deref(),
            form.chosen.is_empty(),
        ),
        Err(AppError::InvalidCredentials) => again("Your passkey could not sign you in."),
        Err(AppError::InvalidToken) => Page::redirect("/sign-in"),
        Err(error) => failure_page("Two-factor sign-in", &error),
    }
}

#[derive(Deserialize)]
struct PasskeysQuery {
    added: Option<String>,
    removed: Option<String>,
}

/// The passkeys page: the caller's passkeys and a new registration ceremony (`codes`: recovery
/// codes to show once; `error`, `notice`: what the last step said).
async fn render_passkeys(
    state: &AppState,
    caller: &Caller,
    csrf: &str,
    status: StatusCode,
    codes: Vec<String>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Page {
    let passkeys = match state.app.identity.passkeys(caller).await {
        Ok(passkeys) => passkeys,
        Err(error) => return failure_page(PASSKEYS, &error),
    };
    // Without a relying party (a public URL without a host name) the page lists what there
    // is and says why none can be added.
    let (ceremony, error) = match state.app.identity.start_passkey_registration(caller).await {
        Ok(ceremony) => (Some(ceremony), error),
        Err(AppError::PasskeysUnavailable) => (
            None,
            Some("Passkeys are unavailable here: the service's public address needs a host name."),
        ),
        Err(error) => return failure_page(PASSKEYS, &error),
    };
    let day = |at: time::OffsetDateTime| at.date().to_string();
    let passkeys: Vec<_> = passkeys
        .into_iter()
        .map(|p| {
            context! {
                credential => p.credential, name => p.name, created_at => day(p.created_at),
                last_used_at => p.last_used_at.map(day),
            }
        })
        .collect();
    Page::html(
        status,
        "passkeys.html",
        context! { ..base(PASSKEYS), ..context! {
            csrf => csrf, passkeys => passkeys, codes => codes,
            options => ceremony.as_ref().map(|c| c.options.to_string()),
            ceremony => ceremony.map(|c| c.ceremony),
            error => error, notice => notice,
        }},
    )
}

async fn passkeys_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<PasskeysQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/passkeys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (csrf, set) = csrf_of(&cookies);
    let notice = if query.added.is_some() {
        Some("The passkey was added.")
    } else if query.removed.is_some() {
        Some("The passkey was removed.")
    } else {
        None
    };
    let page = render_passkeys(
        &state,
        &caller,
        &csrf,
        StatusCode::OK,
        Vec::new(),
        None,
        notice,
    )
    .await;
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct AddPasskeyForm {
    #[serde(flatten)]
    answer: PasskeyAnswer,
    #[serde(default)]
    name: String,
}

async fn add_passkey(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<AddPasskeyForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.answer.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/passkeys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let csrf = form.answer.csrf.clone();
    let again = |error: &'static str| {
        let state = state.clone();
        let caller = caller.clone();
        let csrf = csrf.clone();
        async move {
            render_passkeys(
                &state,
                &caller,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                Vec::new(),
                Some(error),
                None,
            )
            .await
        }
    };
    let Some(credential) = passkey_answer(&form.answer.credential) else {
        return with_cookies(again(NEEDS_SCRIPT).await, refreshed, None);
    };
    let page = match state
        .app
        .identity
        .finish_passkey_registration(&caller, &form.answer.ceremony, &form.name, &credential)
        .await
    {
        Ok(registered) if registered.recovery_codes.is_empty() => {
            Page::redirect("/account/passkeys?added=1")
        }
        Ok(registered) => {
            render_passkeys(
                &state,
                &caller,
                &csrf,
                StatusCode::OK,
                registered.recovery_codes,
                None,
                Some("The passkey was added."),
            )
            .await
        }
        Err(AppError::InvalidPasskeyName) => {
            again("Give the passkey a name of 1 to 64 characters.").await
        }
        Err(
            AppError::PasskeyRefused
            | AppError::InvalidToken
            | AppError::Credentials(
                idstream_domain::identity::credentials::CredentialsError::PasskeyAlreadyRegistered,
            ),
        ) => again("The passkey could not be added.").await,
        Err(error) => failure_page(PASSKEYS, &error),
    };
    with_cookies(page, refreshed, None)
}

#[derive(Deserialize)]
struct RemovePasskeyForm {
    csrf: String,
    #[serde(default)]
    credential: String,
}

async fn remove_passkey(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<RemovePasskeyForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/passkeys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let refusal = match state
        .app
        .identity
        .remove_passkey(&caller, &form.credential)
        .await
    {
        Ok(_) => {
            return with_cookies(
                Page::redirect("/account/passkeys?removed=1"),
                refreshed,
                None,
            );
        }
        Err(AppError::RecentSignInRequired) => {
            "To remove your last second factor, sign out and sign in again first (within 15 minutes)."
        }
        Err(AppError::SecondFactorRequiredByTenant) => {
            "An organisation you belong to requires a second factor: add another before removing this one."
        }
        Err(error) => return failure_page(PASSKEYS, &error),
    };
    let page = render_passkeys(
        &state,
        &caller,
        &form.csrf,
        StatusCode::FORBIDDEN,
        Vec::new(),
        Some(refusal),
        None,
    )
    .await;
    with_cookies(page, refreshed, None)
}

async fn two_factor_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<WrongCode>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/two-factor").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (csrf, set) = csrf_of(&cookies);
    let me = match state.app.identity.me(&caller) {
        Ok(me) => me,
        Err(error) => return failure_page(TWO_FACTOR, &error),
    };
    if me.user.two_factor {
        let page = Page::html(
            StatusCode::OK,
            "two_factor_on.html",
            context! { ..base(TWO_FACTOR), ..context! { csrf => csrf } },
        );
        return with_cookies(page, refreshed, set);
    }
    // Each visit starts a set-up with a new key: a key is shown once.
    let setup = match state.app.identity.start_totp(&caller).await {
        Ok(setup) => setup,
        Err(error) => return failure_page(TWO_FACTOR, &error),
    };
    let error = query.wrong.is_some().then_some(
        "That code did not match. Here is a new key: scan it again and enter the code it shows.",
    );
    // The key in groups of four, for typing it in by hand.
    let grouped = setup
        .secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let page = Page::html(
        StatusCode::OK,
        "two_factor_setup.html",
        context! { ..base(TWO_FACTOR), ..context! {
            csrf => csrf, qr => qr_code(&setup.uri), secret => grouped, error => error,
        }},
    );
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn two_factor_confirm(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<CodeForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/two-factor").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    match state
        .app
        .identity
        .confirm_totp(&caller, form.code.trim())
        .await
    {
        Ok((codes, _)) => {
            let page = Page::html(
                StatusCode::OK,
                "two_factor_on.html",
                context! { ..base(TWO_FACTOR), ..context! { csrf => form.csrf.clone(), codes => codes } },
            );
            with_cookies(page, refreshed, None)
        }
        Err(AppError::InvalidCredentials | AppError::InvalidToken) => with_cookies(
            Page::redirect("/account/two-factor?wrong=1"),
            refreshed,
            None,
        ),
        Err(error) => failure_page(TWO_FACTOR, &error),
    }
}

#[derive(Deserialize)]
struct PasswordOnly {
    csrf: String,
    password: String,
}

async fn two_factor_off(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<PasswordOnly>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/two-factor").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    match state
        .app
        .identity
        .disable_totp(&caller, form.password)
        .await
    {
        Ok(_) => with_cookies(Page::redirect("/account"), refreshed, None),
        Err(error) => failure_page(TWO_FACTOR, &error),
    }
}

const SESSIONS: &str = "Your sessions";

async fn sessions_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/sessions").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let sessions = match state.app.identity.my_sessions(&caller) {
        Ok(sessions) => sessions,
        Err(error) => return failure_page(SESSIONS, &error),
    };
    let current = caller.session();
    let rows: Vec<minijinja::Value> = sessions
        .iter()
        .map(|s| {
            let started = s
                .started_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            context! {
                id => s.id.to_string(), started_at => started,
                ip => s.ip.clone().unwrap_or_default(),
                user_agent => s.user_agent.clone().unwrap_or_default(),
                current => current == Some(s.id),
            }
        })
        .collect();
    let (csrf, set) = csrf_of(&cookies);
    let page = Page::html(
        StatusCode::OK,
        "sessions.html",
        context! { ..base(SESSIONS), ..context! { csrf => csrf, sessions => rows } },
    );
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct SessionForm {
    csrf: String,
    session: String,
}

async fn sessions_sign_out(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<SessionForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/sessions").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let Ok(session) = form.session.parse::<ulid::Ulid>() else {
        return failure_page(SESSIONS, &AppError::InvalidToken);
    };
    match state.app.identity.revoke_my_session(&caller, session).await {
        // Signing out this very session ends the page's session too.
        Ok(_) if caller.session() == Some(session) => Page::redirect("/sign-in")
            .cookie(cookies.set(ACCESS, "", Some(0)))
            .cookie(cookies.set(REFRESH, "", Some(0))),
        Ok(_) => with_cookies(Page::redirect("/account/sessions"), refreshed, None),
        Err(error) => failure_page(SESSIONS, &error),
    }
}

const PASSWORD: &str = "Change your password";

async fn password_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (_, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/password").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (csrf, set) = csrf_of(&cookies);
    let page = Page::html(
        StatusCode::OK,
        "change_password.html",
        context! { ..base(PASSWORD), ..context! { csrf => csrf } },
    );
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct ChangePasswordForm {
    csrf: String,
    current: String,
    password: String,
    confirm: String,
}

async fn change_password(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<ChangePasswordForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/password").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let again = |error: &str| {
        with_cookies(
            Page::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "change_password.html",
                context! { ..base(PASSWORD), ..context! { csrf => form.csrf.clone(), error => error } },
            ),
            refreshed.clone(),
            None,
        )
    };
    if form.password != form.confirm {
        return again("The two new passwords differ.");
    }
    match state
        .app
        .identity
        .change_password(&caller, form.current.clone(), form.password.clone())
        .await
    {
        Ok(_) => with_cookies(
            Page::html(
                StatusCode::OK,
                "message.html",
                context! { ..base(PASSWORD), ..context! {
                    message => "Your password was changed. Your other sessions were ended.",
                    link => "/account", link_text => "Back to your account",
                }},
            ),
            refreshed.clone(),
            None,
        ),
        Err(AppError::InvalidCredentials) => again("The current password is wrong."),
        Err(error @ AppError::WeakPassword(_)) => again(&error.to_string()),
        Err(error) => failure_page(PASSWORD, &error),
    }
}

// ----- sign-up, links by mail, the profile -----

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

const SIGN_UP: &str = "Create an account";

fn sign_up_form(csrf: &str, tenant: &str, form: Option<&SignUpForm>, error: Option<&str>) -> Page {
    Page::html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "sign_up.html",
        context! { ..base(SIGN_UP), ..context! {
            csrf => csrf, tenant => tenant, error => error,
            email => form.map_or("", |f| f.email.as_str()),
            first_name => form.map_or("", |f| f.first_name.as_str()),
            last_name => form.map_or("", |f| f.last_name.as_str()),
        }},
    )
}

async fn sign_up_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<TenantQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let Some(tenant) = query.tenant.filter(|t| t.parse::<TenantId>().is_ok()) else {
        return Page::html(
            StatusCode::BAD_REQUEST,
            "message.html",
            context! { ..base(SIGN_UP), ..context! {
                message => "Sign up through your organisation's link (it names the organisation).",
                link => "/sign-in", link_text => "Sign in",
            }},
        );
    };
    let (csrf, set) = csrf_of(&cookies);
    with_cookies(sign_up_form(&csrf, &tenant, None, None), Vec::new(), set)
}

#[derive(Deserialize)]
struct SignUpForm {
    csrf: String,
    tenant: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    email: String,
    password: String,
    confirm: String,
}

async fn sign_up(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<SignUpForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let again = |error: &str| sign_up_form(&form.csrf, &form.tenant, Some(&form), Some(error));
    if form.password != form.confirm {
        return again("The two passwords differ.");
    }
    let closed = || {
        Page::html(
            StatusCode::NOT_FOUND,
            "message.html",
            context! { ..base(SIGN_UP), ..context! {
                message => "Sign-up is not open here. Ask your organisation for an invitation.",
                link => "/sign-in", link_text => "Sign in",
            }},
        )
    };
    let Ok(tenant) = form.tenant.parse::<TenantId>() else {
        return closed();
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(SIGN_UP, &error),
    };
    let registration = idstream_app::identity::Registration {
        email: form.email.clone(),
        password: form.password.clone(),
        first_name: form.first_name.clone(),
        last_name: form.last_name.clone(),
    };
    match state
        .app
        .identity
        .register(&caller, tenant, registration)
        .await
    {
        // The same answer whether or not the address had an account already.
        Ok(()) => Page::html(
            StatusCode::OK,
            "message.html",
            context! { ..base(SIGN_UP), ..context! {
                message => "Thank you. Check your mail: when the organisation asks for it, follow the link we sent to confirm your address, then sign in.",
                link => "/sign-in", link_text => "Sign in",
            }},
        ),
        Err(AppError::TenantNotFound) => closed(),
        Err(error @ (AppError::WeakPassword(_) | AppError::User(_))) => again(&error.to_string()),
        Err(error) => failure_page(SIGN_UP, &error),
    }
}

#[derive(Deserialize)]
struct EmailForm {
    csrf: String,
    email: String,
}

async fn sign_in_link(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<EmailForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Sign in", &error),
    };
    match state.app.identity.request_magic_link(&caller, &form.email) {
        Ok(()) => Page::html(
            StatusCode::OK,
            "message.html",
            context! { ..base("Check your mail"), ..context! {
                message => "If this address has an account, a sign-in link is on its way. It works once, for a few minutes.",
            }},
        ),
        Err(error) => failure_page("Sign in", &error),
    }
}

const CHANGE_EMAIL: &str = "Change your email address";

async fn email_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/email").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let me = match state.app.identity.me(&caller) {
        Ok(me) => me,
        Err(error) => return failure_page(CHANGE_EMAIL, &error),
    };
    let (csrf, set) = csrf_of(&cookies);
    let page = Page::html(
        StatusCode::OK,
        "change_email.html",
        context! { ..base(CHANGE_EMAIL), ..context! { csrf => csrf, email => &me.user.email } },
    );
    with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
struct ChangeEmailForm {
    csrf: String,
    email: String,
    #[serde(default)]
    password: String,
}

async fn change_email(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<ChangeEmailForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/email").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let password = (!form.password.is_empty()).then(|| form.password.clone());
    let again = |error: &str| {
        let email = state
            .app
            .identity
            .me(&caller)
            .map(|me| me.user.email)
            .unwrap_or_default();
        with_cookies(
            Page::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "change_email.html",
                context! { ..base(CHANGE_EMAIL), ..context! {
                    csrf => form.csrf.clone(), email => email, error => error,
                }},
            ),
            refreshed.clone(),
            None,
        )
    };
    match state
        .app
        .identity
        .request_email_change(&caller, &form.email, password)
        .await
    {
        Ok(_) => with_cookies(
            Page::html(
                StatusCode::OK,
                "message.html",
                context! { ..base(CHANGE_EMAIL), ..context! {
                    message => "Check the new address: follow the link we sent there to start using it.",
                    link => "/account", link_text => "Back to your account",
                }},
            ),
            refreshed.clone(),
            None,
        ),
        Err(AppError::InvalidCredentials) => again("The password is wrong."),
        Err(error @ (AppError::User(_) | AppError::EmailTaken)) => again(&error.to_string()),
        Err(error) => failure_page(CHANGE_EMAIL, &error),
    }
}

const API_KEYS: &str = "API keys";

/// The API-key page of the signed-in person in their current tenant, with a key just issued.
async fn api_keys_view(
    state: &AppState,
    caller: &Caller,
    csrf: &str,
    issued: Option<&str>,
    error: Option<&str>,
    permissions: &str,
) -> Result<Page, AppError> {
    let me = state.app.identity.me(caller)?;
    let keys = state
        .app
        .identity
        .api_keys(caller, &me.tenant, Some(me.user.id))
        .await?;
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<minijinja::Value> = keys
        .iter()
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|end| end > now))
        .map(|k| {
            let restriction = match &k.restriction {
                Some(set) => set
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "everything you may do".to_owned(),
            };
            let last_used = k
                .last_used_at
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| "never".to_owned());
            context! {
                id => k.id.to_string(), name => &k.name, restriction => restriction,
                last_used => last_used,
            }
        })
        .collect();
    Ok(Page::html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "api_keys.html",
        context! { ..base(API_KEYS), ..context! {
            csrf => csrf, keys => rows, tenant => me.tenant.as_str(), issued => issued,
            error => error, permissions => permissions,
        }},
    ))
}

async fn api_keys_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/api-keys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (csrf, set) = csrf_of(&cookies);
    match api_keys_view(&state, &caller, &csrf, None, None, "").await {
        Ok(page) => with_cookies(page, refreshed, set),
        Err(error) => failure_page(API_KEYS, &error),
    }
}

#[derive(Deserialize)]
struct NewKeyForm {
    csrf: String,
    name: String,
    #[serde(default)]
    permissions: String,
}

async fn issue_api_key(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<NewKeyForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/api-keys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let shown = |issued: Option<&str>, error: Option<&str>| {
        let state = &state;
        let caller = &caller;
        let csrf = form.csrf.clone();
        let permissions = form.permissions.clone();
        let refreshed = refreshed.clone();
        let issued = issued.map(str::to_owned);
        let error = error.map(str::to_owned);
        async move {
            let page = api_keys_view(
                state,
                caller,
                &csrf,
                issued.as_deref(),
                error.as_deref(),
                &permissions,
            );
            match page.await {
                Ok(page) => with_cookies(page, refreshed, None),
                Err(error) => failure_page(API_KEYS, &error),
            }
        }
    };
    let mut restriction = std::collections::BTreeSet::new();
    for text in form
        .permissions
        .split([' ', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match text.parse() {
            Ok(permission) => {
                restriction.insert(permission);
            }
            Err(_) => {
                let error = format!("{text:?} is not a permission (resource:action).");
                return shown(None, Some(&error)).await;
            }
        }
    }
    let me = match state.app.identity.me(&caller) {
        Ok(me) => me,
        Err(error) => return failure_page(API_KEYS, &error),
    };
    let request = idstream_app::identity::ApiKeyRequest {
        name: form.name.clone(),
        owner: None,
        expires_at: None,
        permissions: (!restriction.is_empty()).then_some(restriction),
    };
    match state
        .app
        .identity
        .issue_api_key(&caller, me.tenant.clone(), request)
        .await
    {
        Ok(issued) => {
            // The list below shows the new key.
            if let Err(error) = state.app.operations.wait_for_token(issued.position).await {
                return failure_page(API_KEYS, &error);
            }
            shown(Some(&issued.key), None).await
        }
        Err(
            error @ (AppError::ApiKey(_)
            | AppError::Forbidden(_)
            | AppError::BeyondCallerPermissions(_)
            | AppError::ApiAccessDisabled),
        ) => shown(None, Some(&error.to_string())).await,
        Err(error) => failure_page(API_KEYS, &error),
    }
}

#[derive(Deserialize)]
struct RevokeKeyForm {
    csrf: String,
    key: String,
}

async fn revoke_api_key(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<RevokeKeyForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/api-keys").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let Ok(id) = form.key.parse::<ulid::Ulid>() else {
        return failure_page(API_KEYS, &AppError::InvalidToken);
    };
    let me = match state.app.identity.me(&caller) {
        Ok(me) => me,
        Err(error) => return failure_page(API_KEYS, &error),
    };
    match state
        .app
        .identity
        .revoke_api_key(&caller, me.tenant.clone(), id)
        .await
    {
        Ok(_) => with_cookies(Page::redirect("/account/api-keys"), refreshed, None),
        Err(error) => failure_page(API_KEYS, &error),
    }
}

const EMAIL_CODE: &str = "Sign in with a code";

async fn sign_in_code_request(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<EmailForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(EMAIL_CODE, &error),
    };
    match state.app.identity.request_email_code(&caller, &form.email) {
        Ok(()) => Page::html(
            StatusCode::OK,
            "email_code.html",
            context! { ..base(EMAIL_CODE), ..context! { csrf => form.csrf.clone(), email => form.email.clone() } },
        ),
        Err(error) => failure_page(EMAIL_CODE, &error),
    }
}

#[derive(Deserialize)]
struct EmailCodeForm {
    csrf: String,
    email: String,
    code: String,
    #[serde(default)]
    remember: Option<String>,
}

async fn sign_in_code(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<EmailCodeForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(EMAIL_CODE, &error),
    };
    let remember = form.remember.is_some();
    match state
        .app
        .identity
        .sign_in_email_code(&caller, &form.email, &form.code, None, remember)
        .await
    {
        Ok(SignIn::Complete(tokens)) => signed_in_page(&cookies, &tokens, None, true),
        Ok(SignIn::SecondFactorRequired { challenge, .. }) => Page::html(
            StatusCode::OK,
            "second_factor.html",
            context! { ..base("Two-factor sign-in"), ..context! {
                csrf => form.csrf.clone(), challenge => challenge, return_to => "/account",
                remember => if remember { "on" } else { "" },
            }},
        ),
        Err(AppError::InvalidCredentials | AppError::InvalidOrExpiredLink) => Page::html(
            StatusCode::UNAUTHORIZED,
            "email_code.html",
            context! { ..base(EMAIL_CODE), ..context! {
                csrf => form.csrf.clone(), email => form.email.clone(),
                error => "The code is wrong or has expired. Ask for a new one if it keeps failing.",
            }},
        ),
        Err(error) => failure_page(EMAIL_CODE, &error),
    }
}

const PROFILE: &str = "Your profile";

async fn profile_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/profile").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (csrf, set) = csrf_of(&cookies);
    match profile_form(&state, &caller, &csrf, None, None).await {
        Ok(page) => with_cookies(page, refreshed, set),
        Err(error) => failure_page(PROFILE, &error),
    }
}

/// The profile form: names, phone, and the attributes the person may set, filled from `given`
/// (a refused form) or from what they hold.
async fn profile_form(
    state: &AppState,
    caller: &Caller,
    csrf: &str,
    given: Option<&HashMap<String, String>>,
    error: Option<&str>,
) -> Result<Page, AppError> {
    use idstream_domain::attributes::AttributeType;
    let me = state.app.identity.me(caller)?;
    let definitions = state.app.tenants.attributes(caller, &me.tenant).await?;
    let value = |key: &str, held: String| given.and_then(|g| g.get(key).cloned()).unwrap_or(held);
    let attributes: Vec<minijinja::Value> = definitions
        .iter()
        .filter(|(_, d)| d.user_editable)
        .map(|(name, d)| {
            let held = match me.attributes.get(name) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let options = match d.kind {
                AttributeType::OneOf => d.options.clone(),
                AttributeType::Boolean => vec!["true".into(), "false".into()],
                _ => Vec::new(),
            };
            let input = match d.kind {
                AttributeType::Number => "number",
                AttributeType::Date => "date",
                _ => "text",
            };
            context! {
                name => name, label => &d.label, options => options, input => input,
                value => value(&format!("attr.{name}"), held),
            }
        })
        .collect();
    Ok(Page::html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "profile.html",
        context! { ..base(PROFILE), ..context! {
            csrf => csrf, error => error, attributes => attributes,
            first_name => value("first_name", me.user.first_name.clone()),
            last_name => value("last_name", me.user.last_name.clone()),
            phone => value("phone", me.user.phone.clone().unwrap_or_default()),
            language => value("language", me.user.language.clone().unwrap_or_default()),
        }},
    ))
}

async fn save_profile(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Page {
    let fields: HashMap<String, String> = fields.into_iter().collect();
    let cookies = Cookies::of(&state, &parts.headers);
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    if !csrf_holds(&cookies, &csrf) {
        return refused_form();
    }
    let (caller, refreshed) =
        match session_or_sign_in(&state, &parts, &cookies, "/account/profile").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let (state_ref, caller_ref, csrf_ref, fields_ref, refreshed_ref) =
        (&state, &caller, &csrf, &fields, &refreshed);
    let refused = |error: &AppError| {
        let message = error.to_string();
        async move {
            let page = profile_form(
                state_ref,
                caller_ref,
                csrf_ref,
                Some(fields_ref),
                Some(&message),
            );
            match page.await {
                Ok(page) => with_cookies(page, refreshed_ref.clone(), None),
                Err(error) => failure_page(PROFILE, &error),
            }
        }
    };
    let me = match state.app.identity.me(&caller) {
        Ok(me) => me,
        Err(error) => return failure_page(PROFILE, &error),
    };
    let definitions = match state.app.tenants.attributes(&caller, &me.tenant).await {
        Ok(definitions) => definitions,
        Err(error) => return failure_page(PROFILE, &error),
    };
    // The attributes first: a value of the wrong form is refused before anything changes.
    let mut change = std::collections::BTreeMap::new();
    for (name, definition) in definitions.iter().filter(|(_, d)| d.user_editable) {
        let Some(text) = fields.get(&format!("attr.{name}")) else {
            continue;
        };
        let value = if text.trim().is_empty() {
            None
        } else {
            match definition.parse(name, text) {
                Ok(value) => Some(value),
                Err(error) => {
                    return refused(&AppError::User(error.into())).await;
                }
            }
        };
        let held = me.attributes.get(name).cloned();
        if held != value {
            change.insert(name.clone(), value);
        }
    }
    let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
    // The phone number's form too, before anything changes.
    let phone = field("phone");
    if !phone.trim().is_empty()
        && let Err(error) = idstream_domain::user::normalize_phone(&phone)
    {
        return refused(&AppError::User(error)).await;
    }
    let profile = idstream_domain::user::Profile {
        first_name: field("first_name"),
        last_name: field("last_name"),
        image_url: me.user.image_url.clone(),
        notifications: me.user.notifications.clone(),
        phone: Some(Some(field("phone"))),
        language: Some(Some(field("language"))),
    };
    let mut last = 0;
    if !change.is_empty() {
        match state
            .app
            .users
            .change_attributes(&caller, me.tenant.clone(), me.user.id, change)
            .await
        {
            Ok(outcome) => last = outcome.position,
            Err(error) => return refused(&error).await,
        }
    }
    match state
        .app
        .users
        .change_profile(&caller, me.user.id, profile)
        .await
    {
        Ok(outcome) => last = last.max(outcome.position),
        Err(error) => return refused(&error).await,
    }
    // The account page shows what was just saved.
    if let Err(error) = state.app.operations.wait_for_token(last).await {
        return failure_page(PROFILE, &error);
    }
    with_cookies(Page::redirect("/account"), refreshed.clone(), None)
}

// ----- the links in mails -----

/// A link's query: the secret token and, for most, the user it is for.
#[derive(Deserialize)]
struct LinkQuery {
    token: Option<String>,
    user: Option<String>,
}

/// What a link page does with its secret.
struct LinkPage {
    path: &'static str,
    title: &'static str,
}

/// The first step of every link page: a link arriving with its secret has it moved into a
/// short-lived cookie and the browser sent to the same page without it, so the secret leaves the
/// address bar (and history, and any `Referer`) before the page is shown.
fn moved_from_address(cookies: &Cookies, link: &LinkPage, query: &LinkQuery) -> Option<Page> {
    let token = query.token.as_deref()?;
    let value = match &query.user {
        Some(user) => format!("{user}.{token}"),
        None => token.to_owned(),
    };
    // Only URL-safe characters are kept: the cookie holds nothing else.
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Some(Page::redirect(link.path).cookie(cookies.set(LINK, "", Some(0))));
    }
    Some(Page::redirect(link.path).cookie(cookies.set(LINK, &value, Some(30 * 60))))
}

/// The link's secret from its cookie: the user (if the link names one) and the token.
fn link_secret(cookies: &Cookies) -> Option<(Option<UserId>, String)> {
    let value = cookies.get(LINK)?;
    match value.split_once('.') {
        Some((user, token)) => Some((user.parse().ok(), token.to_owned())),
        None => Some((None, value.to_owned())),
    }
}

fn link_missing(link: &LinkPage) -> Page {
    Page::html(
        StatusCode::BAD_REQUEST,
        "message.html",
        context! { ..base(link.title), ..context! {
            message => "This page opens from the link in your email. Open the link again; if it has expired, ask for a new one.",
            link => "/sign-in", link_text => "Sign in",
        }},
    )
}

/// GET of a page that asks for a new password (invitation, reset).
fn password_form(
    cookies: &Cookies,
    link: &LinkPage,
    intro: &str,
    button: &str,
    remember_offered: bool,
    error: Option<&str>,
) -> Page {
    let (csrf, set) = csrf_of(cookies);
    let page = Page::html(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "set_password.html",
        context! { ..base(link.title), ..context! {
            csrf => csrf, action => link.path, intro => intro, button => button,
            remember_offered => remember_offered, error => error,
        }},
    );
    match set {
        Some(cookie) => page.cookie(cookie),
        None => page,
    }
}

/// GET of a page that asks to confirm with one button (verification, email change, magic link):
/// opening a link never changes anything by itself (mail scanners open links too).
fn confirm_form(cookies: &Cookies, link: &LinkPage, intro: &str, button: &str) -> Page {
    let (csrf, set) = csrf_of(cookies);
    let page = Page::html(
        StatusCode::OK,
        "confirm.html",
        context! { ..base(link.title), ..context! {
            csrf => csrf, action => link.path, intro => intro, button => button,
        }},
    );
    match set {
        Some(cookie) => page.cookie(cookie),
        None => page,
    }
}

fn done(cookies: &Cookies, title: &str, message: &str, link: &str, link_text: &str) -> Page {
    Page::html(
        StatusCode::OK,
        "message.html",
        context! { ..base(title), ..context! { message => message, link => link, link_text => link_text } },
    )
    .cookie(cookies.set(LINK, "", Some(0)))
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    password: String,
    confirm: String,
    #[serde(default)]
    remember: Option<String>,
}

const ACCEPT: LinkPage = LinkPage {
    path: "/accept-invitation",
    title: "Accept the invitation",
};

async fn accept_invitation_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if let Some(moved) = moved_from_address(&cookies, &ACCEPT, &query) {
        return moved;
    }
    if link_secret(&cookies).is_none() {
        return link_missing(&ACCEPT);
    }
    password_form(
        &cookies,
        &ACCEPT,
        "Choose a password for your account. (If you have one already, enter it here.)",
        "Accept and sign in",
        true,
        None,
    )
}

async fn accept_invitation(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<PasswordForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Some((_, token)) = link_secret(&cookies) else {
        return link_missing(&ACCEPT);
    };
    let retry = |error: &str| {
        password_form(
            &cookies,
            &ACCEPT,
            "Choose a password for your account.",
            "Accept and sign in",
            true,
            Some(error),
        )
    };
    if form.password != form.confirm {
        return retry("The two passwords differ.");
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(ACCEPT.title, &error),
    };
    let request = AcceptInvitation {
        token,
        password: Some(form.password),
        remember: form.remember.is_some(),
    };
    match state.app.identity.accept_invitation(&caller, request).await {
        Ok(tokens) => signed_in_page(&cookies, &tokens, Some("/account"), false),
        Err(error @ (AppError::WeakPassword(_) | AppError::InvalidCredentials)) => {
            retry(&error.to_string())
        }
        Err(error) => failure_page(ACCEPT.title, &error),
    }
}

const RESET: LinkPage = LinkPage {
    path: "/reset-password",
    title: "Choose a new password",
};

async fn reset_password_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if let Some(moved) = moved_from_address(&cookies, &RESET, &query) {
        return moved;
    }
    if link_secret(&cookies).is_none() {
        return link_missing(&RESET);
    }
    password_form(&cookies, &RESET, "", "Change the password", false, None)
}

async fn reset_password(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<PasswordForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Some((Some(user), token)) = link_secret(&cookies) else {
        return link_missing(&RESET);
    };
    if form.password != form.confirm {
        let error = Some("The two passwords differ.");
        return password_form(&cookies, &RESET, "", "Change the password", false, error);
    }
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(RESET.title, &error),
    };
    match state
        .app
        .identity
        .reset_password(&caller, user, &token, form.password)
        .await
    {
        Ok(_) => done(
            &cookies,
            RESET.title,
            "Your password was changed, and every session of your account was ended.",
            "/sign-in",
            "Sign in",
        ),
        Err(error @ AppError::WeakPassword(_)) => password_form(
            &cookies,
            &RESET,
            "",
            "Change the password",
            false,
            Some(&error.to_string()),
        ),
        Err(error) => failure_page(RESET.title, &error),
    }
}

const VERIFY: LinkPage = LinkPage {
    path: "/verify-email",
    title: "Verify your email address",
};

async fn verify_email_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if let Some(moved) = moved_from_address(&cookies, &VERIFY, &query) {
        return moved;
    }
    if link_secret(&cookies).is_none() {
        return link_missing(&VERIFY);
    }
    confirm_form(
        &cookies,
        &VERIFY,
        "Confirm that this address is yours.",
        "Verify my address",
    )
}

async fn verify_email(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<CsrfForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Some((Some(user), token)) = link_secret(&cookies) else {
        return link_missing(&VERIFY);
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(VERIFY.title, &error),
    };
    match state.app.identity.verify_email(&caller, user, &token).await {
        Ok(_) => done(
            &cookies,
            VERIFY.title,
            "Your email address is verified.",
            "/sign-in",
            "Sign in",
        ),
        Err(error) => failure_page(VERIFY.title, &error),
    }
}

const CONFIRM: LinkPage = LinkPage {
    path: "/confirm-email",
    title: "Confirm your new email address",
};

async fn confirm_email_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if let Some(moved) = moved_from_address(&cookies, &CONFIRM, &query) {
        return moved;
    }
    if link_secret(&cookies).is_none() {
        return link_missing(&CONFIRM);
    }
    confirm_form(
        &cookies,
        &CONFIRM,
        "Confirm that your account should use this address from now on.",
        "Use this address",
    )
}

async fn confirm_email(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<CsrfForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Some((Some(user), token)) = link_secret(&cookies) else {
        return link_missing(&CONFIRM);
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(CONFIRM.title, &error),
    };
    match state
        .app
        .identity
        .confirm_email_change(&caller, user, &token)
        .await
    {
        Ok(_) => done(
            &cookies,
            CONFIRM.title,
            "Your account uses the new address from now on.",
            "/account",
            "Your account",
        ),
        Err(error) => failure_page(CONFIRM.title, &error),
    }
}

const MAGIC: LinkPage = LinkPage {
    path: "/magic-link",
    title: "Sign in with your link",
};

async fn magic_link_page(
    State(state): State<AppState>,
    parts: Parts,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if let Some(moved) = moved_from_address(&cookies, &MAGIC, &query) {
        return moved;
    }
    if link_secret(&cookies).is_none() {
        return link_missing(&MAGIC);
    }
    confirm_form(&cookies, &MAGIC, "Sign in on this device?", "Sign in")
}

async fn magic_link(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<CsrfForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Some((Some(user), token)) = link_secret(&cookies) else {
        return link_missing(&MAGIC);
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page(MAGIC.title, &error),
    };
    match state
        .app
        .identity
        .sign_in_magic_link(&caller, user, &token, None, false)
        .await
    {
        Ok(SignIn::Complete(tokens)) => signed_in_page(&cookies, &tokens, None, true),
        Ok(SignIn::SecondFactorRequired { challenge, .. }) => Page::html(
            StatusCode::OK,
            "second_factor.html",
            context! { ..base("Two-factor sign-in"), ..context! {
                csrf => form.csrf.clone(), challenge => challenge, return_to => "/account", remember => "",
            }},
        )
        .cookie(cookies.set(LINK, "", Some(0))),
        Err(error) => failure_page(MAGIC.title, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_return_addresses_when_checked_then_only_paths_of_this_service_are_kept() {
        for kept in ["/account", "/account?tab=sessions", "/"] {
            assert_eq!(local_path(Some(kept)), kept);
        }
        for foreign in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "javascript:alert(1)",
            "account",
            "/a\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(local_path(Some(foreign)), "/account", "{foreign:?}");
        }
        assert_eq!(local_path(None), "/account");
    }

    fn overview(first_name: &str) -> Arc<AccountOverview> {
        let user = serde_json::from_value(serde_json::json!({
            "id": "01J00000000000000000000000",
            "email": "ada@example.com",
            "first_name": first_name,
            "last_name": "Lovelace",
            "status": "active",
            "suspended_until": null,
            "suspension_reason": null,
            "flags": { "dashboard_access": true, "api_access": true, "platform_admin": false },
            "created_at": "2026-01-01T00:00:00Z",
            "created_in": "acme",
            "position": 7,
        }))
        .unwrap();
        Arc::new(AccountOverview {
            user,
            organisation: "Acme".into(),
            organisations: 1,
            roles: ["admin".parse().unwrap()].into(),
            attributes: Vec::new(),
        })
    }

    fn signed_in(user: &AccountOverview, tenant: &str) -> Caller {
        Caller::user(idstream_app::identity::Authenticated {
            user: user.user.id,
            tenant: tenant.parse().unwrap(),
            via: idstream_app::identity::Credential::Session(ulid::Ulid::new()),
            must_enrol_second_factor: false,
        })
    }

    /// Given an account page kept, when it is asked again with the same overview it is the page
    /// rendered afresh with the browser's token; a new overview (the directory moved on), another
    /// organisation or another language renders anew.
    #[test]
    fn a_kept_account_page_is_the_page_rendered_afresh_until_its_overview_changes() {
        let pages = AccountPages::default();
        let ada = overview("Ada");
        let caller = signed_in(&ada, "acme");
        let fresh = |overview: &AccountOverview, csrf: &str| account_page(overview, csrf).body;
        let first = pages.page(&caller, Lang::En, &ada, "tok-1");
        assert_eq!(first, fresh(&ada, "tok-1"));
        let again = pages.page(&caller, Lang::En, &ada, "tok-2");
        assert_eq!(again, fresh(&ada, "tok-2"));
        assert!(again.contains("value=\"tok-2\"") && !again.contains("tok-1"));

        let renamed = overview("Augusta");
        let page = pages.page(&caller, Lang::En, &renamed, "tok-2");
        assert!(
            page.contains("Augusta") && !page.contains(">Ada "),
            "{page}"
        );
        assert_eq!(page, fresh(&renamed, "tok-2"));

        let french = PAGE_LANG.sync_scope(std::cell::Cell::new(Lang::Fr), || {
            pages.page(&caller, Lang::Fr, &renamed, "tok-3")
        });
        let expected =
            PAGE_LANG.sync_scope(std::cell::Cell::new(Lang::Fr), || fresh(&renamed, "tok-3"));
        assert_eq!(french, expected);
        assert_ne!(french, fresh(&renamed, "tok-3"));

        // A name that holds what looks like a token is left as it is.
        let odd = overview("tok-4");
        let page = pages.page(&signed_in(&odd, "beta"), Lang::En, &odd, "tok-4");
        assert_eq!(page, fresh(&odd, "tok-4"));
    }

    #[test]
    fn cookies_are_found_by_their_name_here_the_last_of_each_name_winning() {
        let jar = "ids_csrf=one; other=x;ids_access=tok.en=;  ids_csrf=two ;__Host-ids_link=l";
        let value = |found: &[Option<std::ops::Range<usize>>; NAMES.len()], name: &str| {
            let index = NAMES.iter().position(|n| *n == name).unwrap();
            found[index].clone().map(|range| &jar[range])
        };
        let plain = find_cookies(jar, false);
        assert_eq!(value(&plain, CSRF), Some("two"));
        assert_eq!(value(&plain, ACCESS), Some("tok.en="));
        assert_eq!(value(&plain, REFRESH), None);
        assert_eq!(value(&plain, LINK), None);
        let secure = find_cookies(jar, true);
        assert_eq!(value(&secure, LINK), Some("l"));
        assert_eq!(value(&secure, CSRF), None);
        assert!(find_cookies("", false).iter().all(Option::is_none));
        assert!(
            find_cookies("garbage;;=;x", true)
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn the_plain_sign_in_page_rendered_once_is_the_page_rendered_each_time() {
        for lang in Lang::ALL {
            let cached = plain_sign_in_page(lang).replace(CSRF_SLOT, "tok-EN_123");
            let fresh = PAGE_LANG.sync_scope(std::cell::Cell::new(lang), || {
                sign_in_form("tok-EN_123", "", &local_path(None), "", Vec::new()).body
            });
            assert_eq!(cached, fresh);
            assert_eq!(cached.matches("tok-EN_123").count(), 3, "{cached}");
            assert!(cached.contains(&format!("<html lang=\"{}\">", lang.tag())));
        }
    }

    #[test]
    fn every_template_renders() {
        for name in [
            "sign_in.html",
            "second_factor.html",
            "set_password.html",
            "confirm.html",
            "message.html",
            "account.html",
            "two_factor_setup.html",
            "two_factor_on.html",
            "passkeys.html",
            "sessions.html",
            "change_password.html",
            "sign_up.html",
            "profile.html",
            "email_code.html",
            "change_email.html",
            "api_keys.html",
            "organisation.html",
        ] {
            for lang in Lang::ALL {
                let html = TEMPLATES
                    .get_template(&format!("{}/{name}", lang.tag()))
                    .unwrap()
                    .render(context! {
                        lang => lang.tag(), product => PRODUCT, title => "T",
                        csrf => "c", error => "<b>x</b>",
                    })
                    .unwrap();
                assert!(html.contains("<h1 id=\"page-title\">T</h1>"), "{name}");
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", lang.tag())),
                    "{name}"
                );
                assert!(
                    html.contains("&lt;b&gt;x"),
                    "{name}: errors are escaped: {html}"
                );
                assert!(!html.contains("t(\""), "{name}: {html}");
            }
        }
    }
}
