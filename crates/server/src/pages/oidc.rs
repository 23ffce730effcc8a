//! The OpenID Connect provider's pages: the authorization endpoint (which sends the person to
//! the hosted sign-in page, asks for consent, and sends the browser back to the application) and
//! RP-initiated logout. Every decision is `idstream_app::oidc`'s; these handlers only render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_app::oidc::{Authorization, AuthorizeRequest, Logout, LogoutRequest};
use idstream_app::{AppError, Caller};
use idstream_domain::TenantId;
use minijinja::context;
use serde::Deserialize;

use super::{
    ACCESS, BrowserSession, Cookies, PageForm, REFRESH, base, browser_session, csrf_holds, csrf_of,
    encoded, failure_page, refused_form,
};
use super::{Page, anonymous};
use crate::AppState;

/// The page for a request the application got wrong, shown to the person (never a redirect: an
/// unknown client or redirect URI must not turn idstream into an open redirector).
fn bad_request(description: &str) -> Page {
    Page::html(
        StatusCode::BAD_REQUEST,
        "message.html",
        context! { ..base("Sign in"), ..context! {
            message => "The application's sign-in request is not valid. Tell the application's developers:",
            detail => description,
        }},
    )
}

/// The browser's caller: its session's, or anonymous.
async fn browser_caller(
    state: &AppState,
    parts: &Parts,
    cookies: &Cookies,
) -> Result<(Caller, Vec<axum::http::HeaderValue>), AppError> {
    match browser_session(state, parts, cookies).await? {
        Some(BrowserSession {
            caller, cookies, ..
        }) => Ok((caller, cookies)),
        None => Ok((anonymous(state, parts)?, Vec::new())),
    }
}

/// The parameters of a query string (each at most once, as OpenID Connect Core §3.1.2.1 wants)
/// as `T`, or why not.
fn parameters<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, String> {
    let mut found = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if found
            .insert(name.clone().into_owned(), value.into_owned().into())
            .is_some()
        {
            return Err(format!("the parameter {name} was sent more than once"));
        }
    }
    serde_json::from_value(serde_json::Value::Object(found)).map_err(|e| e.to_string())
}

/// The origin a form on the page may be redirected to, for the page's `form-action`.
fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// What the authorization endpoint decided, as a page.
fn answer(
    tenant: &TenantId,
    request: &AuthorizeRequest,
    outcome: Result<Authorization, AppError>,
    csrf: &str,
) -> Page {
    match outcome {
        Ok(Authorization::Redirect(to)) => Page::redirect(&to),
        Ok(Authorization::SignIn {
            login_hint,
            return_to,
        }) => {
            let mut to = format!("/sign-in?tenant={tenant}&return_to={}", encoded(&return_to));
            if let Some(hint) = login_hint.filter(|h| h.len() <= 320) {
                to += &format!("&login_hint={}", encoded(&hint));
            }
            Page::redirect(&to)
        }
        Ok(Authorization::Consent(prompt)) => {
            let redirect = request.redirect_uri.clone().unwrap_or_default();
            let mut page = Page::html(
                StatusCode::OK,
                "oidc_consent.html",
                context! { ..base("Allow access"), ..context! {
                    csrf => csrf,
                    action => format!("/t/{tenant}/oidc/authorize"),
                    client => prompt.client_name,
                    origin => prompt.client_origin,
                    scopes => prompt.scopes,
                    request => request,
                }},
            );
            // The answer redirects to the application: the page's forms may lead there.
            page.form_action = origin_of(&redirect);
            page
        }
        Err(AppError::OAuth(error)) => bad_request(&error.description),
        Err(error) => failure_page("Sign in", &error),
    }
}

/// `GET /t/{tenant}/oidc/authorize`: the authorization endpoint.
pub(super) async fn authorize_page(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Page {
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return bad_request("unknown client_id");
    };
    let request: AuthorizeRequest = match parameters(parts.uri.query()) {
        Ok(request) => request,
        Err(why) => return bad_request(&why),
    };
    let cookies = Cookies::of(&state, &parts.headers);
    let (csrf, set) = csrf_of(&cookies);
    let (caller, refreshed) = match browser_caller(&state, &parts, &cookies).await {
        Ok(found) => found,
        Err(error) => return failure_page("Sign in", &error),
    };
    let outcome = state
        .app
        .oidc
        .authorize(&caller, &tenant, &request, None)
        .await;
    let mut page = answer(&tenant, &request, outcome, &csrf);
    for cookie in refreshed.into_iter().chain(set) {
        page = page.cookie(cookie);
    }
    page
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    csrf: String,
    /// `allow` or `deny`.
    #[serde(default)]
    decision: String,
    #[serde(flatten)]
    request: AuthorizeRequest,
}

/// `POST /t/{tenant}/oidc/authorize`: the person's answer on the consent screen.
pub(super) async fn consent(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    parts: Parts,
    PageForm(form): PageForm<ConsentForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return bad_request("unknown client_id");
    };
    let (caller, refreshed) = match browser_caller(&state, &parts, &cookies).await {
        Ok(found) => found,
        Err(error) => return failure_page("Sign in", &error),
    };
    let decision = match form.decision.as_str() {
        "allow" => Some(true),
        "deny" => Some(false),
        _ => None,
    };
    let outcome = state
        .app
        .oidc
        .authorize(&caller, &tenant, &form.request, decision)
        .await;
    let mut page = answer(&tenant, &form.request, outcome, &form.csrf);
    if let Some(redirect) = &form.request.redirect_uri {
        page.form_action = page.form_action.or_else(|| origin_of(redirect));
    }
    for cookie in refreshed {
        page = page.cookie(cookie);
    }
    page
}

fn logout_answer(
    state: &AppState,
    cookies: &Cookies,
    tenant: &TenantId,
    request: &LogoutRequest,
    outcome: Result<Logout, AppError>,
    csrf: &str,
) -> Page {
    let _ = state;
    match outcome {
        Ok(Logout::Done { redirect }) => {
            let page = match redirect {
                Some(to) => {
                    let mut page = Page::redirect(&to);
                    page.form_action = origin_of(&to);
                    page
                }
                None => Page::html(
                    StatusCode::OK,
                    "message.html",
                    context! { ..base("Signed out"), ..context! {
                        message => "You are signed out.", link => "/sign-in", link_text => "Sign in",
                    }},
                ),
            };
            page.cookie(cookies.set(ACCESS, "", Some(0)))
                .cookie(cookies.set(REFRESH, "", Some(0)))
        }
        Ok(Logout::Confirm { client_name }) => {
            let mut page = Page::html(
                StatusCode::OK,
                "oidc_logout.html",
                context! { ..base("Sign out"), ..context! {
                    csrf => csrf,
                    action => format!("/t/{tenant}/oidc/logout"),
                    client => client_name,
                    request => request,
                }},
            );
            page.form_action = request
                .post_logout_redirect_uri
                .as_deref()
                .and_then(origin_of);
            page
        }
        Err(AppError::OAuth(error)) => bad_request(&error.description),
        Err(error) => failure_page("Sign out", &error),
    }
}

/// `GET /t/{tenant}/oidc/logout`: RP-initiated logout.
pub(super) async fn logout_page(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    parts: Parts,
) -> Page {
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return bad_request("no such issuer");
    };
    let request: LogoutRequest = match parameters(parts.uri.query()) {
        Ok(request) => request,
        Err(why) => return bad_request(&why),
    };
    let cookies = Cookies::of(&state, &parts.headers);
    let (csrf, set) = csrf_of(&cookies);
    let (caller, _) = match browser_caller(&state, &parts, &cookies).await {
        Ok(found) => found,
        Err(error) => return failure_page("Sign out", &error),
    };
    let outcome = state
        .app
        .oidc
        .logout(&caller, &tenant, &request, false)
        .await;
    let page = logout_answer(&state, &cookies, &tenant, &request, outcome, &csrf);
    match set {
        Some(cookie) => page.cookie(cookie),
        None => page,
    }
}

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    csrf: String,
    #[serde(flatten)]
    request: LogoutRequest,
}

/// `POST /t/{tenant}/oidc/logout`: the person confirmed signing out.
pub(super) async fn logout(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    parts: Parts,
    PageForm(form): PageForm<LogoutForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !csrf_holds(&cookies, &form.csrf) {
        return refused_form();
    }
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return bad_request("no such issuer");
    };
    let (caller, _) = match browser_caller(&state, &parts, &cookies).await {
        Ok(found) => found,
        Err(error) => return failure_page("Sign out", &error),
    };
    let outcome = state
        .app
        .oidc
        .logout(&caller, &tenant, &form.request, true)
        .await;
    logout_answer(
        &state,
        &cookies,
        &tenant,
        &form.request,
        outcome,
        &form.csrf,
    )
}

/// The origin of the application an authorization request in `return_to` (a path of this
/// service) sends the browser back to, when its client and redirect URI are registered: the
/// sign-in pages' forms lead there in the end (sign-in, then the authorization endpoint, then the
/// application), so their `form-action` must allow it.
pub(super) fn continuing_to(state: &AppState, return_to: &str) -> Option<String> {
    let (path, query) = return_to.split_once('?')?;
    let tenant = path
        .strip_prefix("/t/")?
        .strip_suffix("/oidc/authorize")?
        .parse::<TenantId>()
        .ok()?;
    let mut client_id = None;
    let mut redirect_uri = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "client_id" => client_id = Some(value.into_owned()),
            "redirect_uri" => redirect_uri = Some(value.into_owned()),
            _ => {}
        }
    }
    let registered = state
        .app
        .oidc
        .registered_redirect(&tenant, &client_id?, &redirect_uri?)?;
    origin_of(&registered)
}
