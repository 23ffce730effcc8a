//! Invitations: `/v1/tenants/{tenant}/invitations`, `…/invitations/{id}`,
//! `…/invitations/{id}/resend`, and `/v1/invitations/accept`.
//!
//! The invitation's token goes to the invitee by email, or, for an invitation sent with
//! `"delivery": "link"`, to the inviter in the answer (once, marked not to be cached).

use std::fmt;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use idstream_app::identity::{AcceptInvitation, InvitationRequest, SentInvitation};
use idstream_domain::events::InvitationDelivery;
use idstream_domain::{RoleName, TenantId};
use idstream_identity::{InvitationStatus, InvitationView};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use super::account::{Positioned, TokensBody, tokens_response};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, MinPosition};
use crate::openapi::formats;
use crate::routes::{CommandAccepted, Page, page_query, rfc3339};

page_query!(
    /// A page of invitations, oldest first.
    InvitationPage,
    Ulid,
    formats::Ulid
);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/invitations",
            post(invite).get(list_invitations),
        )
        .route(
            "/v1/tenants/{tenant}/invitations/{id}",
            delete(revoke_invitation),
        )
        .route(
            "/v1/tenants/{tenant}/invitations/{id}/resend",
            post(resend_invitation),
        )
        .route("/v1/invitations/accept", post(accept_invitation))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    #[schema(value_type = formats::Email)]
    pub email: String,
    /// For a new user; an existing one keeps their name.
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub first_name: String,
    #[serde(default)]
    #[schema(value_type = formats::PersonName)]
    pub last_name: String,
    /// The roles the invitee gets on accepting; absent or empty: the tenant's default role.
    #[serde(default)]
    #[schema(value_type = Vec<formats::RoleName>, example = json!(["user"]))]
    pub roles: Vec<RoleName>,
    /// `email` (default): the service emails the link. `link`: no mail is sent; the answer
    /// carries the link (`link`), once, for the inviter to pass on through their own channels
    /// (a resend answers a new one).
    #[serde(default)]
    pub delivery: DeliveryName,
}

/// How an invitation's link reaches the invitee.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryName {
    #[default]
    Email,
    Link,
}

impl From<DeliveryName> for InvitationDelivery {
    fn from(d: DeliveryName) -> InvitationDelivery {
        match d {
            DeliveryName::Email => InvitationDelivery::Email,
            DeliveryName::Link => InvitationDelivery::Link,
        }
    }
}

/// A sent invitation (the link went to the invitee by email).
#[derive(Debug, Serialize, ToSchema)]
pub struct SentInvitationBody {
    pub id: String,
    /// The invited user (created as `invited` if the address was new).
    pub user: String,
    /// RFC 3339 end of the link.
    pub expires_at: String,
    /// Whether the email went out; if not, resend. Always false for `link` delivery.
    pub email_sent: bool,
    /// The acceptance link of a `link` invitation: shown this once (the service keeps only a
    /// blind index of its token); absent for email delivery and when a retry (same
    /// Idempotency-Key) is answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub position: u64,
}

fn sent(status: StatusCode, sent: SentInvitation) -> Positioned<SentInvitationBody> {
    Positioned {
        status,
        position: Some(sent.position),
        secret: sent.link.is_some(),
        body: SentInvitationBody {
            id: sent.id.to_string(),
            user: sent.user.to_string(),
            expires_at: rfc3339(sent.expires_at),
            email_sent: sent.email_sent,
            link: sent.link,
            position: sent.position,
        },
    }
}

/// Invite someone (a new address, or a user of another tenant) to the tenant. Needs
/// `users:create` and `role.<role>:assign` for every role.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/invitations", request_body = InviteBody, tag = "invitations",
    responses((status = 201, body = SentInvitationBody, description = "sent; a retry with the same Idempotency-Key answers the first result and sends nothing"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:create and role.<role>:assign for each role), `owner_only` (the owner role, by a non-owner), `beyond_caller_permissions` (a role with permissions the caller lacks)"),
        (status = 409, body = Problem, description = "`invitation_pending` (the invitee has an open invitation: resend it), `invitation_revoked` (a retry, by its idempotency key, of an invitation since revoked), `email_taken` (a new address claimed by another a moment ago)"),
        (status = 422, body = Problem, description = "`invalid_email`, `invalid_name`, `unknown_role`")),
    security(("bearer" = [])))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiJson(body): ApiJson<InviteBody>,
) -> Result<Positioned<SentInvitationBody>, ApiError> {
    let request = InvitationRequest {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        roles: body.roles,
        delivery: body.delivery.into(),
    };
    let outcome = state
        .timed(
            "invite",
            state.app.identity.invite(&caller, tenant, request),
        )
        .await?;
    Ok(sent(StatusCode::CREATED, outcome))
}

/// An invitation as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    pub id: String,
    pub user: String,
    pub roles: Vec<String>,
    /// `sent`, `accepted`, `revoked` or `expired`
    pub status: String,
    pub sent_at: String,
    pub expires_at: String,
    /// How many times it was sent again.
    pub resent: u32,
    /// `email` or `link`.
    pub delivery: DeliveryName,
    pub accepted_at: Option<String>,
    pub revoked_at: Option<String>,
    pub position: u64,
}

impl From<InvitationView> for InvitationBody {
    fn from(v: InvitationView) -> Self {
        InvitationBody {
            id: v.id.to_string(),
            user: v.user.to_string(),
            roles: v.roles.into_iter().map(String::from).collect(),
            status: match v.status {
                InvitationStatus::Sent => "sent",
                InvitationStatus::Accepted => "accepted",
                InvitationStatus::Revoked => "revoked",
                InvitationStatus::Expired => "expired",
            }
            .to_owned(),
            sent_at: rfc3339(v.sent_at),
            expires_at: rfc3339(v.expires_at),
            resent: v.resent,
            delivery: match v.delivery {
                InvitationDelivery::Email => DeliveryName::Email,
                InvitationDelivery::Link => DeliveryName::Link,
            },
            accepted_at: v.accepted_at.map(rfc3339),
            revoked_at: v.revoked_at.map(rfc3339),
            position: v.position,
        }
    }
}

/// The tenant's invitations with their status now, oldest first (needs `users:read`).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/invitations", tag = "invitations", params(InvitationPage),
    responses((status = 200, body = Page<InvitationBody>),
        (status = 403, body = Problem, description = "`forbidden` (needs users:read)")),
    security(("bearer" = [])))]
pub async fn list_invitations(
    State(state): State<AppState>,
    caller: Caller,
    min: MinPosition,
    ApiPath(tenant): ApiPath<TenantId>,
    ApiQuery(query): ApiQuery<InvitationPage>,
) -> Result<Json<Page<InvitationBody>>, ApiError> {
    state.consistent(min).await?;
    let limit = query.limit();
    let after = query.after;
    let items: Vec<InvitationBody> = state
        .app
        .identity
        .invitations(&caller, &tenant, after, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let next = if items.len() == limit {
        items.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

/// Send an open invitation again with a new link (the old one dies) and a new expiry. Needs
/// `users:create`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/invitations/{id}/resend", tag = "invitations",
    responses((status = 200, body = SentInvitationBody),
        (status = 403, body = Problem, description = "`forbidden` (needs users:create)"),
        (status = 404, body = Problem, description = "`invitation_not_found`"),
        (status = 409, body = Problem, description = "`invitation_accepted`, `invitation_revoked`")),
    security(("bearer" = [])))]
pub async fn resend_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<Positioned<SentInvitationBody>, ApiError> {
    let outcome = state
        .timed(
            "resend_invitation",
            state.app.identity.resend_invitation(&caller, tenant, id),
        )
        .await?;
    Ok(sent(StatusCode::OK, outcome))
}

/// Withdraw an open invitation (needs `users:create`).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/invitations/{id}", tag = "invitations",
    responses((status = 200, body = CommandAccepted, description = "revoked, or already so (nothing appended)"),
        (status = 403, body = Problem, description = "`forbidden` (needs users:create)"),
        (status = 404, body = Problem, description = "`invitation_not_found`"),
        (status = 409, body = Problem, description = "`invitation_accepted`")),
    security(("bearer" = [])))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(TenantId, Ulid)>,
) -> Result<CommandAccepted, ApiError> {
    let outcome = state
        .timed(
            "revoke_invitation",
            state.app.identity.revoke_invitation(&caller, tenant, id),
        )
        .await?;
    Ok(CommandAccepted::ok(outcome))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The `token` of the emailed link (`idi_…`).
    pub token: String,
    /// The new account's password (at most 4096 bytes of UTF-8, and what the tenant's policy
    /// asks); not needed (and ignored) when the invitee already has one.
    #[schema(max_length = 4096)]
    pub password: Option<String>,
    /// Remember the session the acceptance starts, as at `POST /v1/auth/sign-in`.
    #[serde(default)]
    pub remember: bool,
}

impl fmt::Debug for AcceptBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptBody")
            .field("token", &"<redacted>")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Accept an invitation with its emailed token: sets the password of a new account, verifies the
/// address, gives the roles and signs the invitee in. Works at most once.
#[utoipa::path(post, path = "/v1/invitations/accept", request_body = AcceptBody, tag = "invitations",
    responses((status = 200, body = TokensBody),
        (status = 400, body = Problem, description = "`invalid_or_expired_link`"),
        (status = 403, body = Problem, description = "`account_disabled`"),
        (status = 422, body = Problem, description = "`password_required`, `weak_password`, `password_too_long`"),
        (status = 429, body = Problem, description = "`rate_limited`; see Retry-After")))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Positioned<TokensBody>, ApiError> {
    let request = AcceptInvitation {
        token: body.token,
        password: body.password,
        remember: body.remember,
    };
    let tokens = state
        .timed(
            "accept_invitation",
            state.app.identity.accept_invitation(&caller, request),
        )
        .await?;
    Ok(tokens_response(tokens))
}
