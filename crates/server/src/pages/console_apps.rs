//! The console's applications screen (`/admin/applications`): the organisation's OpenID Connect
//! clients (register one, its secret shown once; replace a secret; remove one) and the upstream
//! identity providers people may sign in through (add or change one, remove one). Reading needs
//! `settings:read`; the forms are shown to holders of `settings:update` only, and every change is
//! the same `app` operation as the API's.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_app::oidc::ClientRequest;
use idstream_app::upstream::ProviderRequest;
use idstream_app::{AppError, Caller};
use idstream_domain::identity::client::{ClientKind, ClientSettings, GrantType};
use idstream_domain::identity::upstream::{ClaimMapping, IdentityProviderSettings};
use minijinja::context;
use serde::Deserialize;

use super::console::{Held, settled};
use super::{
    Page, PageForm, base, console_tenant, failure_page, form_caller, page_caller, with_cookies,
};
use crate::AppState;

const APPLICATIONS: &str = "Applications";

/// `GET /admin/applications`.
pub(super) async fn admin_applications_page(State(state): State<AppState>, parts: Parts) -> Page {
    let (caller, refreshed, csrf, set) =
        match page_caller(&state, &parts, "/admin/applications").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let page = match applications_screen(&state, &caller, &csrf, None, None).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

/// A line or comma separated list, trimmed, without empty items.
fn items(text: &str) -> Vec<String> {
    text.split(['\n', ',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn applications_screen(
    state: &AppState,
    caller: &Caller,
    csrf: &str,
    error: Option<String>,
    secret: Option<(String, String)>,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, APPLICATIONS)?;
    let clients = state
        .app
        .oidc
        .clients(caller, &tenant)
        .await
        .map_err(|error| failure_page(APPLICATIONS, &error))?;
    let providers = state
        .app
        .upstream
        .providers(caller, &tenant)
        .await
        .map_err(|error| failure_page(APPLICATIONS, &error))?;
    let editable = Held::of(state, caller).await.may("settings:update");
    let clients: Vec<minijinja::Value> = clients
        .into_iter()
        .map(|c| {
            context! {
                id => c.id.to_string(), name => c.settings.name,
                kind => match c.kind { ClientKind::Confidential => "confidential", ClientKind::Public => "public" },
                redirect_uris => c.settings.redirect_uris,
                grants => c.settings.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", "),
                scopes => c.settings.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                first_party => c.settings.first_party,
                confidential => c.kind == ClientKind::Confidential,
            }
        })
        .collect();
    let providers: Vec<minijinja::Value> = providers
        .into_iter()
        .map(|p| {
            context! {
                id => p.id, name => p.settings.name, issuer => p.settings.issuer,
                client_id => p.settings.client_id,
                domains => p.settings.allowed_email_domains.join(", "),
                provision => p.settings.provision, redirect_uri => p.redirect_uri,
                has_secret => p.has_client_secret,
            }
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(Page::html(
        status,
        "admin_applications.html",
        context! { ..base(APPLICATIONS), ..context! {
            wide => true, csrf => csrf, editable => editable, clients => clients, providers => providers,
            error => error,
            secret_for => secret.as_ref().map(|(name, _)| name.clone()),
            secret => secret.map(|(_, secret)| secret),
        }},
    ))
}

/// Every form of the screen, told apart by `action`.
#[derive(Deserialize)]
pub(super) struct ApplicationsForm {
    csrf: String,
    #[serde(default)]
    action: String,
    // A client.
    #[serde(default)]
    client: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    client_credentials: Option<String>,
    #[serde(default)]
    first_party: Option<String>,
    // A provider.
    #[serde(default)]
    provider: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    provision: Option<String>,
}

impl ApplicationsForm {
    fn client(&self) -> ClientRequest {
        let mut grants = BTreeSet::from([GrantType::AuthorizationCode]);
        if self.refresh.is_some() {
            grants.insert(GrantType::RefreshToken);
        }
        if self.client_credentials.is_some() {
            grants.insert(GrantType::ClientCredentials);
        }
        let mut scopes: BTreeSet<String> = ["openid", "email", "profile"]
            .map(String::from)
            .into_iter()
            .collect();
        if self.refresh.is_some() {
            scopes.insert("offline_access".into());
        }
        ClientRequest {
            kind: if self.kind == "public" {
                ClientKind::Public
            } else {
                ClientKind::Confidential
            },
            settings: ClientSettings {
                name: self.name.clone(),
                redirect_uris: items(&self.redirect_uris),
                post_logout_redirect_uris: Vec::new(),
                grant_types: grants,
                scopes,
                first_party: self.first_party.is_some(),
                backchannel_logout_uri: None,
            },
        }
    }

    fn provider(&self) -> ProviderRequest {
        ProviderRequest {
            settings: IdentityProviderSettings {
                name: self.name.clone(),
                issuer: self.issuer.clone(),
                client_id: self.client_id.trim().to_owned(),
                scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
                claims: ClaimMapping::default(),
                allowed_email_domains: items(&self.domains),
                provision: self.provision.is_some(),
            },
            client_secret: Some(self.client_secret.clone()).filter(|s| !s.trim().is_empty()),
        }
    }
}

/// `POST /admin/applications`: one change, then the screen again (with a new secret shown
/// once), or the screen with what was wrong and nothing changed.
pub(super) async fn admin_change_applications(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<ApplicationsForm>,
) -> Page {
    let (caller, refreshed) =
        match form_caller(&state, &parts, &form.csrf, "/admin/applications").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let page = match change(&state, &caller, &form).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn change(state: &AppState, caller: &Caller, form: &ApplicationsForm) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, APPLICATIONS)?;
    let client_id = || {
        form.client.parse::<ulid::Ulid>().map_err(|_| {
            failure_page(
                APPLICATIONS,
                &AppError::Client(idstream_domain::identity::client::ClientError::NotFound),
            )
        })
    };
    let outcome: Result<(u64, Option<(String, String)>), AppError> = match form.action.as_str() {
        "register_client" => state
            .app
            .oidc
            .register_client(caller, tenant.clone(), form.client())
            .await
            .map(|r| {
                let shown = r.secret.map(|s| (r.client.settings.name.clone(), s));
                (r.position, shown)
            }),
        "rotate_secret" => state
            .app
            .oidc
            .rotate_client_secret(caller, &tenant, client_id()?)
            .await
            .map(|r| {
                let shown = r.secret.map(|s| (r.client.settings.name.clone(), s));
                (r.position, shown)
            }),
        "remove_client" => state
            .app
            .oidc
            .remove_client(caller, &tenant, client_id()?)
            .await
            .map(|o| (o.position, None)),
        "save_provider" => state
            .app
            .upstream
            .configure_provider(
                caller,
                tenant.clone(),
                form.provider.trim(),
                form.provider(),
            )
            .await
            .map(|(_, o)| (o.position, None)),
        "remove_provider" => state
            .app
            .upstream
            .remove_provider(caller, &tenant, form.provider.trim())
            .await
            .map(|o| (o.position, None)),
        _ => return Err(super::refused_form()),
    };
    match outcome {
        Ok((position, secret)) => {
            settled(state, position, APPLICATIONS).await?;
            match secret {
                // The secret is shown on this answer only, never again.
                Some(secret) => {
                    applications_screen(state, caller, &form.csrf, None, Some(secret)).await
                }
                None => Ok(Page::redirect("/admin/applications")),
            }
        }
        Err(error @ (AppError::Forbidden(_) | AppError::DashboardAccessDisabled)) => {
            Err(failure_page(APPLICATIONS, &error))
        }
        Err(error) => {
            applications_screen(state, caller, &form.csrf, Some(error.to_string()), None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_on_lines_commas_and_spaces() {
        assert_eq!(
            items("https://a.example/cb\r\n https://b.example/cb,,c.example"),
            ["https://a.example/cb", "https://b.example/cb", "c.example"]
        );
        assert!(items("  \n ").is_empty());
    }
}
