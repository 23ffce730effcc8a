//! Sign-in through a tenant's upstream OpenID Connect providers: the sign-in page's buttons lead
//! to `/t/{tenant}/sign-in/{provider}`, which sends the browser to the provider, and the provider
//! sends it back to `…/callback`. What the browser must bring back is sealed by the application
//! and kept in a cookie for ten minutes. Every decision is `idstream_app::upstream`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_app::AppError;
use idstream_app::identity::SignIn;
use idstream_app::upstream::{Finished, PENDING_TTL, UpstreamError};
use idstream_domain::TenantId;
use minijinja::context;
use serde::Deserialize;

use super::{
    Cookies, Page, UPSTREAM, anonymous, base, browser_session, csrf_of, failure_page, local_path,
    signed_in_page,
};
use crate::AppState;

#[derive(Deserialize)]
pub(super) struct StartQuery {
    return_to: Option<String>,
    remember: Option<String>,
}

fn upstream_failure(error: &AppError) -> Page {
    let message = match error {
        AppError::Upstream(UpstreamError::NoAccount) => {
            "No account of this organisation matches this sign-in. Sign in another way, or ask an administrator."
        }
        AppError::Upstream(UpstreamError::Refused(_)) => {
            "The identity provider did not sign you in."
        }
        AppError::Upstream(UpstreamError::NotVerified) => {
            "This sign-in could not be verified. Start again from the sign-in page."
        }
        AppError::Upstream(UpstreamError::Unavailable) => {
            "The identity provider cannot be reached right now. Try again in a moment, or sign in another way."
        }
        AppError::IdentityProvider(_) | AppError::TenantNotFound => {
            "This organisation offers no such sign-in."
        }
        AppError::AccountDisabled => "You cannot sign in to that organisation with this account.",
        AppError::ExternalIdentity(_) => {
            "This identity already signs in another account: unlink it there first."
        }
        other => return failure_page("Sign in", other),
    };
    let status = match error {
        AppError::Upstream(UpstreamError::Unavailable) => StatusCode::BAD_GATEWAY,
        AppError::Upstream(UpstreamError::NotVerified) => StatusCode::BAD_REQUEST,
        // A stale button or a made-up address: the same answer whether or not the organisation
        // exists.
        AppError::IdentityProvider(_) | AppError::TenantNotFound => StatusCode::BAD_REQUEST,
        AppError::ExternalIdentity(_) => StatusCode::CONFLICT,
        _ => StatusCode::FORBIDDEN,
    };
    Page::html(
        status,
        "message.html",
        context! { ..base("Sign in"), ..context! { message => message, link => "/sign-in", link_text => "Sign in" } },
    )
}

/// `GET /t/{tenant}/sign-in/{provider}`: off to the provider.
pub(super) async fn start(
    State(state): State<AppState>,
    parts: Parts,
    Path((tenant, provider)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<StartQuery>,
) -> Page {
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return upstream_failure(&AppError::TenantNotFound);
    };
    let caller = match anonymous(&state, &parts) {
        Ok(caller) => caller,
        Err(error) => return failure_page("Sign in", &error),
    };
    let return_to = local_path(query.return_to.as_deref());
    let remember = query.remember.is_some_and(|r| r == "on");
    match state
        .app
        .upstream
        .begin(&caller, tenant, &provider, return_to, remember, false)
        .await
    {
        Ok(started) => going(&state, &parts, started),
        Err(error) => upstream_failure(&error),
    }
}

/// The browser sent to the provider, with the sealed sign-in in its cookie.
fn going(state: &AppState, parts: &Parts, started: idstream_app::upstream::Started) -> Page {
    let cookies = Cookies::of(state, &parts.headers);
    Page::redirect(&started.authorization_url).cookie(cookies.set(
        UPSTREAM,
        &started.pending,
        Some(PENDING_TTL.whole_seconds()),
    ))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    #[serde(default)]
    state: String,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /t/{tenant}/sign-in/{provider}/callback`: back from the provider.
pub(super) async fn callback(
    State(state): State<AppState>,
    parts: Parts,
    Path((tenant, provider)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<CallbackQuery>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let forget = cookies.set(UPSTREAM, "", Some(0));
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return upstream_failure(&AppError::TenantNotFound).cookie(forget);
    };
    let Some(pending) = cookies.get(UPSTREAM).map(str::to_owned) else {
        return upstream_failure(&AppError::Upstream(UpstreamError::NotVerified)).cookie(forget);
    };
    // A person linking from their account is signed in; anyone else signs in now.
    let caller = match browser_session(&state, &parts, &cookies).await {
        Ok(Some(session)) => session.caller,
        Ok(None) | Err(_) => match anonymous(&state, &parts) {
            Ok(caller) => caller,
            Err(error) => return failure_page("Sign in", &error).cookie(forget),
        },
    };
    let outcome = state
        .app
        .upstream
        .finish(
            &caller,
            tenant,
            &provider,
            &pending,
            &query.state,
            query.code.as_deref(),
            query.error.as_deref(),
        )
        .await;
    match outcome {
        Ok(Finished::SignIn {
            sign_in: SignIn::Complete(tokens),
            return_to,
        }) => signed_in_page(&cookies, &tokens, Some(&return_to), false).cookie(forget),
        Ok(Finished::SignIn {
            sign_in: SignIn::SecondFactorRequired { challenge, .. },
            return_to,
        }) => {
            let (csrf, set) = csrf_of(&cookies);
            let mut page = Page::html(
                StatusCode::OK,
                "second_factor.html",
                context! { ..base("Two-factor sign-in"), ..context! {
                    csrf => csrf, challenge => challenge,
                    return_to => local_path(Some(&return_to)),
                    remember => "", chosen => "on",
                }},
            )
            .cookie(forget);
            page.form_action = super::oidc::continuing_to(&state, &return_to);
            match set {
                Some(cookie) => page.cookie(cookie),
                None => page,
            }
        }
        Ok(Finished::Linked { return_to }) => {
            Page::redirect(&local_path(Some(&return_to))).cookie(forget)
        }
        Err(error) => upstream_failure(&error).cookie(forget),
    }
}

const IDENTITIES: &str = "Sign-in through other providers";

/// `GET /account/identities`: the organisation's providers, each linked or not.
pub(super) async fn identities_page(State(state): State<AppState>, parts: Parts) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    let (caller, refreshed) =
        match super::session_or_sign_in(&state, &parts, &cookies, "/account/identities").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let links = match state.app.upstream.my_links(&caller) {
        Ok(links) => links,
        Err(error) => return failure_page(IDENTITIES, &error),
    };
    let idstream_app::Principal::User(me) = caller.principal() else {
        return failure_page(IDENTITIES, &AppError::TenantNotFound);
    };
    let tenant = me.tenant.clone();
    let rows: Vec<minijinja::Value> = state
        .app
        .upstream
        .sign_in_options(&caller, &tenant)
        .into_iter()
        .map(|option| {
            let linked = links.iter().any(|l| l.provider == option.id);
            context! { id => option.id, name => option.name, linked => linked }
        })
        .collect();
    let (csrf, set) = csrf_of(&cookies);
    let page = Page::html(
        StatusCode::OK,
        "identities.html",
        context! { ..base(IDENTITIES), ..context! { csrf => csrf, providers => rows } },
    );
    super::with_cookies(page, refreshed, set)
}

#[derive(Deserialize)]
pub(super) struct IdentityForm {
    csrf: String,
    #[serde(default)]
    provider: String,
    /// `link` or `unlink`.
    action: String,
}

/// `POST /account/identities`: link (off to the provider, signed in there) or unlink.
pub(super) async fn change_identity(
    State(state): State<AppState>,
    parts: Parts,
    super::PageForm(form): super::PageForm<IdentityForm>,
) -> Page {
    let cookies = Cookies::of(&state, &parts.headers);
    if !super::csrf_holds(&cookies, &form.csrf) {
        return super::refused_form();
    }
    let (caller, refreshed) =
        match super::session_or_sign_in(&state, &parts, &cookies, "/account/identities").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let idstream_app::Principal::User(me) = caller.principal() else {
        return failure_page(IDENTITIES, &AppError::TenantNotFound);
    };
    let tenant = me.tenant.clone();
    match form.action.as_str() {
        "link" => match state
            .app
            .upstream
            .begin(
                &caller,
                tenant,
                &form.provider,
                "/account/identities".into(),
                false,
                true,
            )
            .await
        {
            Ok(started) => {
                // The form's answer leads to the provider: the page's form-action allows it.
                let mut page = going(&state, &parts, started.clone());
                page.form_action = url::Url::parse(&started.authorization_url)
                    .ok()
                    .map(|u| u.origin().ascii_serialization());
                page
            }
            Err(error) => upstream_failure(&error),
        },
        "unlink" => match state
            .app
            .upstream
            .unlink_mine(&caller, &form.provider)
            .await
        {
            Ok(_) => super::with_cookies(Page::redirect("/account/identities"), refreshed, None),
            Err(error) => failure_page(IDENTITIES, &error),
        },
        _ => super::refused_form(),
    }
}
