//! API keys: `ids_<key id>_<secret>`, shown once, stored as a blind index, acting for their owner
//! in one tenant with at most the owner's current permissions (and at most their restriction).

use std::collections::BTreeSet;

use idstream_auth::ApiKeySecret;
use idstream_domain::access::{Action, Permission};
use idstream_domain::aggregate::ApiKeyAggregate;
use idstream_domain::identity::api_key::{ApiKeyCommand, ApiKeyError, USE_RECORD_INTERVAL};
use idstream_domain::{ActorKind, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::ApiKeyView;
use time::OffsetDateTime;
use ulid::Ulid;

use super::signin::system_ctx;
use super::{Authenticated, Credential, api_key_key, identity_storage};
use crate::{App, AppError, CommandContext};

/// `POST /v1/tenants/{tenant}/api-keys`
#[derive(Debug, Clone)]
pub struct ApiKeyRequest {
    pub name: String,
    /// Whose permissions the key uses; the caller if absent. Issuing a key for someone else
    /// needs users:update.
    pub owner: Option<UserId>,
    pub expires_at: Option<OffsetDateTime>,
    /// Limits the key to these permissions (each must be held by the owner now).
    pub permissions: Option<BTreeSet<Permission>>,
}

/// A new key: `key` is shown this once. `Debug` redacts it.
#[derive(Clone)]
pub struct IssuedApiKey {
    pub id: Ulid,
    pub key: String,
    pub owner: UserId,
    pub position: Position,
}

/// What an API-key actor stands for: its owner, its tenant and its restriction.
pub(crate) type KeyActor = (UserId, TenantId, Option<BTreeSet<Permission>>);

fn caller_user(ctx: &CommandContext) -> Option<UserId> {
    match ctx.actor.kind {
        ActorKind::User => ctx.actor.id.parse().ok(),
        _ => None,
    }
}

impl App {
    fn api_key_index(&self, canonical: &str) -> idstream_domain::secret::BlindIndex {
        self.id().keys.vault().blind_index("api-key", canonical)
    }

    pub async fn issue_api_key(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        request: ApiKeyRequest,
    ) -> Result<IssuedApiKey, AppError> {
        // API keys cannot mint API keys: a key's holder could otherwise outlive its revocation.
        if ctx.actor.kind == ActorKind::ApiKey {
            return Err(AppError::SessionOnly);
        }
        self.require_tenant(&tenant).await?;
        let caller = caller_user(ctx);
        let owner = match (request.owner, caller) {
            (Some(owner), _) => owner,
            (None, Some(caller)) => caller,
            (None, None) => return Err(AppError::OwnerRequired),
        };
        if caller != Some(owner) {
            self.authorize_named(ctx, &tenant, "users", Action::Update)
                .await?;
        }
        let account = self.require_user(owner).await?;
        if !account.flags.api_access {
            return Err(AppError::ApiAccessDisabled);
        }
        if !self.user_tenants(&owner)?.contains(&tenant) {
            return Err(AppError::NotAMember);
        }
        if let Some(wanted) = &request.permissions {
            let (global, held) = self.effective_permissions(&tenant, &owner)?;
            let beyond: Vec<String> = wanted
                .iter()
                .filter(|p| !global && !held.contains(*p))
                .map(|p| p.to_string())
                .collect();
            if !beyond.is_empty() {
                return Err(AppError::RestrictionBeyondOwner(beyond));
            }
        }
        let id = Ulid::new();
        let secret = ApiKeySecret::generate(id);
        let outcome = self
            .execute::<ApiKeyAggregate>(
                ctx,
                &api_key_key(&tenant, id),
                "",
                ApiKeyCommand::Issue {
                    owner,
                    name: request.name,
                    secret: self.api_key_index(secret.reveal()),
                    expires_at: request.expires_at,
                    restriction: request.permissions,
                    now: self.now(),
                },
            )
            .await?;
        Ok(IssuedApiKey {
            id,
            key: secret.reveal().to_owned(),
            owner,
            position: outcome.position,
        })
    }

    /// Revokes a key at once: its owner, or someone with users:update in its tenant.
    pub async fn revoke_api_key(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        id: Ulid,
    ) -> Result<crate::Outcome, AppError> {
        let view = self
            .find(|app| app.identity().api_key(&id).map_err(identity_storage))
            .await?
            .filter(|k| k.tenant == tenant)
            .ok_or(AppError::ApiKey(ApiKeyError::NotFound))?;
        if caller_user(ctx) != Some(view.owner) {
            self.authorize_named(ctx, &tenant, "users", Action::Update)
                .await?;
        }
        let outcome = self
            .execute::<ApiKeyAggregate>(ctx, &api_key_key(&tenant, id), "", ApiKeyCommand::Revoke)
            .await?;
        // Revocation is immediate: the key stops working on this replica before we answer.
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// A tenant's keys: the caller's own, or everyone's (or `owner`'s) with users:read.
    pub async fn api_keys(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        owner: Option<UserId>,
    ) -> Result<Vec<ApiKeyView>, AppError> {
        let caller = caller_user(ctx);
        if owner.is_none() || owner != caller {
            self.authorize_named(ctx, tenant, "users", Action::Read)
                .await?;
        }
        self.require_tenant(tenant).await?;
        self.identity()
            .api_keys(tenant, owner.as_ref())
            .map_err(identity_storage)
    }

    /// Authenticates `ids_…`: a live key whose owner is active and may use the API.
    pub(crate) async fn authenticate_api_key(
        &self,
        presented: &str,
    ) -> Result<Authenticated, AppError> {
        let presented = ApiKeySecret::parse(presented).ok_or(AppError::Unauthenticated)?;
        let id = presented.key_id();
        let view = self
            .find(|app| app.identity().api_key(&id).map_err(identity_storage))
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let index = self.api_key_index(presented.canonical());
        let now = self.now();
        if !idstream_auth::constant_time_eq(
            index.as_str().as_bytes(),
            view.secret.as_str().as_bytes(),
        ) || !view.is_usable_at(now)
        {
            return Err(AppError::Unauthenticated);
        }
        self.require_active(view.owner, now)?;
        let owner = self.user(&view.owner)?;
        if !owner.flags.api_access {
            return Err(AppError::Unauthenticated);
        }
        if view
            .last_used_at
            .is_none_or(|at| now - at >= USE_RECORD_INTERVAL)
        {
            // Recording the use must not slow the request down or fail it.
            let app = self.clone();
            let (tenant, key) = (view.tenant.clone(), view.id);
            tokio::spawn(async move {
                let _ = app
                    .execute::<ApiKeyAggregate>(
                        &system_ctx("api-key-use"),
                        &api_key_key(&tenant, key),
                        "",
                        ApiKeyCommand::RecordUse { now },
                    )
                    .await;
            });
        }
        Ok(Authenticated {
            user: view.owner,
            tenant: view.tenant,
            via: Credential::ApiKey {
                id: view.id,
                restriction: view.restriction,
            },
            must_enrol_second_factor: false,
        })
    }

    /// The key an API-key actor stands for, if it is usable: (owner, tenant, restriction).
    pub(crate) fn api_key_actor(&self, id: &str) -> Result<Option<KeyActor>, AppError> {
        let Ok(id) = id.parse::<Ulid>() else {
            return Ok(None);
        };
        let now = self.now();
        Ok(self
            .identity()
            .api_key(&id)
            .map_err(identity_storage)?
            .filter(|k| k.is_usable_at(now))
            .map(|k| (k.owner, k.tenant, k.restriction)))
    }
}

impl std::fmt::Debug for IssuedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedApiKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("owner", &self.owner)
            .field("position", &self.position)
            .finish()
    }
}
