//! API keys: `ids_<key id>_<secret>`, shown once, stored as a blind index, acting for their owner
//! in one tenant with at most the owner's current permissions (and at most their restriction).

use std::collections::BTreeSet;

use idstream_auth::ApiKeySecret;
use idstream_domain::access::role;
use idstream_domain::access::{Action, Permission};
use idstream_domain::aggregate::ApiKeyAggregate;
use idstream_domain::identity::api_key::{ApiKeyCommand, ApiKeyError, USE_RECORD_INTERVAL};
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_identity::ApiKeyView;
use time::OffsetDateTime;
use ulid::Ulid;

use super::signin::system_ctx;
use super::{Authenticated, Credential, Identity, api_key_key, identity_storage};
use crate::AppError;
use crate::core::{Core, internal};
use crate::policy::{Caller, Principal};

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

impl Core {
    fn api_key_index(&self, canonical: &str) -> idstream_domain::secret::BlindIndex {
        self.id().keys.vault().blind_index("api-key", canonical)
    }
}

impl Identity {
    /// Issues a key acting for its owner in the tenant, within its restriction (at most what
    /// the owner holds at the time of each request). The key is shown once.
    ///
    /// Who: through a session (a key cannot mint keys, or its holder could outlive its
    /// revocation). A key for oneself: any member whose `api_access` flag is on. A key for
    /// another member: `users:update` in the tenant, holding every permission the key will
    /// carry (an unrestricted key carries its owner's future permissions too, so only a caller
    /// with global access issues one), and never for an owner by a non-owner.
    pub async fn issue_api_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        request: ApiKeyRequest,
    ) -> Result<IssuedApiKey, AppError> {
        let me = match caller.principal() {
            Principal::User(auth) if auth.session().is_some() => Some(auth.user),
            Principal::User(_) => {
                // Another tenant's key learns nothing of this one: not found before refused.
                self.tenant_standing(caller, &tenant).await?;
                return Err(AppError::SessionOnly);
            }
            _ => None,
        };
        let owner = match (request.owner, me) {
            (Some(owner), _) => owner,
            (None, Some(me)) => me,
            (None, None) => {
                self.any_signed_in(caller)?;
                return Err(AppError::OwnerRequired);
            }
        };
        if me == Some(owner) {
            self.tenant_standing(caller, &tenant).await?;
        } else {
            self.named_permission(caller, &tenant, "users", Action::Update)
                .await?;
        }
        self.require_tenant(&tenant).await?;
        let account = self.require_user(owner).await?;
        if !account.flags.api_access {
            return Err(AppError::ApiAccessDisabled);
        }
        if !self.user_tenants(&owner)?.contains(&tenant) {
            return Err(AppError::NotAMember);
        }
        let (owner_global, owner_holds) = self
            .access_view()
            .effective_permissions(&tenant, &owner)
            .map_err(internal)?;
        if let Some(wanted) = &request.permissions {
            let beyond: Vec<String> = wanted
                .iter()
                .filter(|p| !owner_global && !owner_holds.contains(*p))
                .map(|p| p.to_string())
                .collect();
            if !beyond.is_empty() {
                return Err(AppError::RestrictionBeyondOwner(beyond));
            }
        }
        if me != Some(owner) {
            // What the key will carry: its restriction, or everything its owner holds, now and
            // later.
            match &request.permissions {
                Some(wanted) => self.require_held(caller, &tenant, false, wanted).await?,
                None => {
                    self.require_held(caller, &tenant, true, &owner_holds)
                        .await?
                }
            }
            let owner_role: RoleName = role::OWNER.parse().map_err(internal)?;
            let owner_is_owner = self
                .directory()
                .membership(&tenant, &owner)
                .map_err(internal)?
                .is_some_and(|m| m.roles.contains(&owner_role));
            if owner_is_owner {
                self.check_owner_only(caller, &tenant, &owner_role, false)
                    .await?;
            }
        }
        let id = Ulid::new();
        let secret = ApiKeySecret::generate(id);
        let outcome = self
            .execute::<ApiKeyAggregate>(
                caller.ctx(),
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

    /// Revokes a key at once: it stops working on this replica before the answer.
    ///
    /// Who: its owner, or `users:update` in its tenant.
    pub async fn revoke_api_key(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: Ulid,
    ) -> Result<crate::Outcome, AppError> {
        self.tenant_standing(caller, &tenant).await?;
        let view = self
            .find(|core| core.identity().api_key(&id).map_err(identity_storage))
            .await?
            .filter(|k| k.tenant == tenant)
            .ok_or(AppError::ApiKey(ApiKeyError::NotFound))?;
        if caller.user_id() != Some(view.owner) {
            self.named_permission(caller, &tenant, "users", Action::Update)
                .await?;
        }
        let outcome = self
            .execute::<ApiKeyAggregate>(
                caller.ctx(),
                &api_key_key(&tenant, id),
                "",
                ApiKeyCommand::Revoke,
            )
            .await?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// A tenant's keys: everyone's, or `owner`'s.
    ///
    /// Who: `?owner=<the caller>`: any member; anyone else's: `users:read` in the tenant.
    pub async fn api_keys(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        owner: Option<UserId>,
    ) -> Result<Vec<ApiKeyView>, AppError> {
        if owner.is_some() && owner == caller.user_id() {
            self.tenant_standing(caller, tenant).await?;
        } else {
            self.named_permission(caller, tenant, "users", Action::Read)
                .await?;
        }
        self.require_tenant(tenant).await?;
        self.identity()
            .api_keys(tenant, owner.as_ref())
            .map_err(identity_storage)
    }

    /// Authenticates `ids_…`: a live key whose owner is active and may use the API.
    pub(super) async fn authenticate_api_key(
        &self,
        presented: &str,
    ) -> Result<Authenticated, AppError> {
        let presented = ApiKeySecret::parse(presented).ok_or(AppError::Unauthenticated)?;
        let id = presented.key_id();
        let view = self
            .find(|core| core.identity().api_key(&id).map_err(identity_storage))
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
        let owner = self
            .directory()
            .user(&view.owner)
            .map_err(internal)?
            .ok_or(AppError::Unauthenticated)?;
        if !owner.flags.api_access {
            return Err(AppError::Unauthenticated);
        }
        if view
            .last_used_at
            .is_none_or(|at| now - at >= USE_RECORD_INTERVAL)
        {
            // Recording the use must not slow the request down or fail it.
            let core = self.0.clone();
            let (tenant, key) = (view.tenant.clone(), view.id);
            tokio::spawn(async move {
                let _ = core
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
