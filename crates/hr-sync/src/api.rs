//! The few idstream HTTP endpoints the sync uses, with a bearer credential (an API key or an
//! access token). Every read carries the consistency token taken at the start of the run
//! (`X-Idstream-Min-Position`), so the sync never decides on read models older than the log was
//! when it started, whichever replica answers.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::plan::{Invitation, Member};

/// What the service answered when it refused (its problem document), or why it could not be
/// asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} {path}: {status} {code}: {detail}")]
pub struct ApiError {
    pub method: String,
    pub path: String,
    /// HTTP status; 0 when the service could not be reached.
    pub status: u16,
    /// The problem's stable `code` (`unreachable`, `bad_response` when there is none).
    pub code: String,
    pub detail: String,
}

/// A client for one service and credential.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    min_position: Option<u64>,
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// A row of `GET /v1/tenants/{tenant}/users`.
#[derive(Deserialize)]
struct MemberBody {
    id: String,
    email: String,
    first_name: String,
    last_name: String,
    status: String,
    roles: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

#[derive(Deserialize)]
struct InvitationBody {
    id: String,
    user: String,
    roles: Vec<String>,
    status: String,
}

/// Page size of listings (the service's maximum).
const PAGE: usize = 500;

impl Api {
    /// `base` is the service's URL, such as `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client without TLS builds"),
            min_position: None,
        }
    }

    /// Reads from now on wait until the read models hold at least `position`.
    pub fn read_at(&mut self, position: u64) {
        self.min_position = Some(position);
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        match self.min_position {
            Some(position) => request.header("x-idstream-min-position", position),
            None => request,
        }
    }

    /// Sends a request; `Ok((status, body))` for 2xx, the problem otherwise.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let mut request = self.request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let failed = |status: u16, code: &str, detail: String| ApiError {
            method: method.to_string(),
            path: path.to_owned(),
            status,
            code: code.to_owned(),
            detail,
        };
        let response = request
            .send()
            .await
            .map_err(|e| failed(0, "unreachable", e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed(status.as_u16(), "unreachable", e.to_string()))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(failed(
                status.as_u16(),
                body["code"].as_str().unwrap_or("bad_response"),
                body["detail"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            ))
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(path: &str, body: Value) -> Result<T, ApiError> {
        serde_json::from_value(body).map_err(|e| ApiError {
            method: "GET".into(),
            path: path.to_owned(),
            status: 200,
            code: "bad_response".into(),
            detail: e.to_string(),
        })
    }

    /// The log's last position (`GET /readyz`): the consistency token of this run.
    pub async fn log_position(&self) -> Result<u64, ApiError> {
        let (_, body) = self.send(Method::GET, "/readyz", None).await?;
        body["log_position"].as_u64().ok_or_else(|| ApiError {
            method: "GET".into(),
            path: "/readyz".into(),
            status: 200,
            code: "bad_response".into(),
            detail: "no log_position (is the event log reachable?)".into(),
        })
    }

    /// The user the credential acts for; `None` for the operator token, which is nobody.
    pub async fn caller(&self) -> Result<Option<String>, ApiError> {
        match self.send(Method::GET, "/v1/auth/me", None).await {
            Ok((_, body)) => Ok(body["user"]["id"].as_str().map(str::to_owned)),
            Err(e) if e.code == "session_required" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every member of the tenant.
    pub async fn members(&self, tenant: &str) -> Result<Vec<Member>, ApiError> {
        let mut members = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            // The listing pages by a cursor (any sort would do; the default is by email).
            let path = match &cursor {
                Some(cursor) => format!("/v1/tenants/{tenant}/users?limit={PAGE}&cursor={cursor}"),
                None => format!("/v1/tenants/{tenant}/users?limit={PAGE}"),
            };
            let (_, body) = self.send(Method::GET, &path, None).await?;
            let page: Page<MemberBody> = Self::parse(&path, body)?;
            members.extend(page.items.into_iter().map(|m| Member {
                id: m.id,
                email: m.email,
                first_name: m.first_name,
                last_name: m.last_name,
                status: m.status,
                roles: m.roles.into_iter().collect(),
                tenants: m.tenants.into_iter().collect(),
            }));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(members),
            }
        }
    }

    /// Every invitation to the tenant, with the invitee's address looked up for the open ones of
    /// people who are not in `members`.
    pub async fn invitations(
        &self,
        tenant: &str,
        members: &[Member],
    ) -> Result<Vec<Invitation>, ApiError> {
        let member_ids: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let mut invitations = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = page_path(
                &format!("/v1/tenants/{tenant}/invitations"),
                after.as_deref(),
            );
            let (_, body) = self.send(Method::GET, &path, None).await?;
            let page: Page<InvitationBody> = Self::parse(&path, body)?;
            for item in page.items {
                let email = if item.status == "sent" && !member_ids.contains(item.user.as_str()) {
                    let path = format!("/v1/users/{}", item.user);
                    let (_, body) = self.send(Method::GET, &path, None).await?;
                    body["email"].as_str().map(str::to_owned)
                } else {
                    None
                };
                invitations.push(Invitation {
                    id: item.id,
                    user: item.user,
                    roles: item.roles.into_iter().collect(),
                    status: item.status,
                    email,
                });
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(invitations),
            }
        }
    }

    /// Whether the tenant has a role of this name.
    pub async fn role_exists(&self, tenant: &str, role: &str) -> Result<bool, ApiError> {
        match self
            .send(
                Method::GET,
                &format!("/v1/tenants/{tenant}/roles/{role}"),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Defines a custom role without permissions.
    pub async fn define_role(
        &self,
        tenant: &str,
        role: &str,
        description: &str,
    ) -> Result<(), ApiError> {
        self.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/roles"),
            Some(json!({"name": role, "description": description, "permissions": []})),
        )
        .await
        .map(drop)
    }

    /// Creates a user as an invited member with `roles`. `Ok(None)` when the address belongs to
    /// an existing user already (`email_taken`).
    pub async fn create_invited_member(
        &self,
        tenant: &str,
        email: &str,
        first_name: &str,
        last_name: &str,
        roles: &BTreeSet<String>,
    ) -> Result<Option<String>, ApiError> {
        let body = json!({"email": email, "first_name": first_name, "last_name": last_name,
                          "roles": roles, "invite": true});
        match self
            .send(
                Method::POST,
                &format!("/v1/tenants/{tenant}/users"),
                Some(body),
            )
            .await
        {
            Ok((_, body)) => Ok(body["id"].as_str().map(str::to_owned)),
            Err(e) if e.code == "email_taken" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends an invitation (an email with a single-use link). `Ok(false)` when one is open
    /// already (`invitation_pending`).
    pub async fn invite(
        &self,
        tenant: &str,
        email: &str,
        first_name: &str,
        last_name: &str,
        roles: &BTreeSet<String>,
    ) -> Result<bool, ApiError> {
        let body = json!({"email": email, "first_name": first_name, "last_name": last_name,
                          "roles": roles});
        match self
            .send(
                Method::POST,
                &format!("/v1/tenants/{tenant}/invitations"),
                Some(body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == "invitation_pending" => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn assign_role(&self, tenant: &str, user: &str, role: &str) -> Result<(), ApiError> {
        self.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/users/{user}/roles"),
            Some(json!({"role": role})),
        )
        .await
        .map(drop)
    }

    /// Replaces the user's names. The profile endpoint replaces the whole profile, so the
    /// picture URL and notification choices are read first and sent back unchanged.
    pub async fn rename(
        &self,
        user: &str,
        first_name: &str,
        last_name: &str,
    ) -> Result<(), ApiError> {
        let (_, current) = self
            .send(Method::GET, &format!("/v1/users/{user}"), None)
            .await?;
        let mut profile = json!({"first_name": first_name, "last_name": last_name});
        if let Some(url) = current.get("image_url").filter(|v| v.is_string()) {
            profile["image_url"] = url.clone();
        }
        if let Some(notifications) = current.get("notifications").filter(|v| v.is_object()) {
            profile["notifications"] = notifications.clone();
        }
        self.send(
            Method::PUT,
            &format!("/v1/users/{user}/profile"),
            Some(profile),
        )
        .await
        .map(drop)
    }

    pub async fn deactivate(&self, user: &str) -> Result<(), ApiError> {
        self.send(Method::POST, &format!("/v1/users/{user}/deactivate"), None)
            .await
            .map(drop)
    }

    pub async fn remove_member(&self, tenant: &str, user: &str) -> Result<(), ApiError> {
        self.send(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/users/{user}"),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn revoke_invitation(&self, tenant: &str, invitation: &str) -> Result<(), ApiError> {
        self.send(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/invitations/{invitation}"),
            None,
        )
        .await
        .map(drop)
    }
}

fn page_path(path: &str, after: Option<&str>) -> String {
    match after {
        Some(after) => format!("{path}?limit={PAGE}&after={after}"),
        None => format!("{path}?limit={PAGE}"),
    }
}
