//! Authorisation of commands and the access queries, answered by the access read model.
//!
//! Who may do what:
//! - system actors (the operator token, `idstream bootstrap`) are platform administrators:
//!   everything;
//! - users flagged `platform_admin` may do everything in every tenant;
//! - any other user needs the command's permission in the tenant, decided by the same
//!   [`idstream_domain::access::check`] every check API call uses;
//! - an API key acts for its owner, only in its own tenant, and only within its restriction
//!   (never with the owner's platform-administrator powers).
//!
//! A denial is re-checked once after the read models caught up with the log, so a permission
//! granted a moment ago (maybe on another replica) is honoured.

use std::collections::BTreeSet;

use idstream_access::{Access, EntityPermissions, Explanation, ReadableRecords};
use idstream_domain::access::{
    Action, CheckRequest, Decision, EntityName, MenuItem, Permission, RecordId, Resource, Subject,
};
use idstream_domain::{ActorKind, RoleName, TenantId, UserId};

use crate::{App, AppError, CommandContext};

fn storage(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

/// One check as the API receives it.
#[derive(Debug, Clone)]
pub struct CheckQuery {
    pub tenant: TenantId,
    pub subject: Subject,
    pub permission: Permission,
    pub record: Option<RecordId>,
    /// When an API key asks about its own owner: the key's restriction, which the decision
    /// never exceeds (`key_restriction`).
    pub restriction: Option<BTreeSet<Permission>>,
}

impl App {
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// Whether the actor may use `permission` in `tenant` (see the module documentation).
    fn permitted(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        permission: &Permission,
    ) -> Result<bool, AppError> {
        match ctx.actor.kind {
            ActorKind::System => Ok(true),
            ActorKind::User => {
                let Ok(user) = ctx.actor.id.parse::<UserId>() else {
                    return Ok(false);
                };
                let access = &self.inner.access;
                if access.is_platform_admin(&user).map_err(storage)? {
                    return Ok(true);
                }
                let decision = access
                    .check(CheckRequest {
                        tenant,
                        subject: Subject::User(user),
                        permission,
                        record: None,
                        restriction: None,
                        now: self.inner.clock.now(),
                    })
                    .map_err(storage)?;
                Ok(decision.allowed)
            }
            // A key acts for its owner in its own tenant, within its restriction.
            ActorKind::ApiKey => {
                let Some((owner, key_tenant, restriction)) = self.api_key_actor(&ctx.actor.id)?
                else {
                    return Ok(false);
                };
                if &key_tenant != tenant {
                    return Ok(false);
                }
                let decision = self
                    .inner
                    .access
                    .check(CheckRequest {
                        tenant,
                        subject: Subject::User(owner),
                        permission,
                        record: None,
                        restriction: restriction.as_ref(),
                        now: self.inner.clock.now(),
                    })
                    .map_err(storage)?;
                Ok(decision.allowed)
            }
        }
    }

    /// Refuses the command unless the actor may use `permission` in `tenant`.
    pub async fn authorize(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        permission: &Permission,
    ) -> Result<(), AppError> {
        if self.permitted(ctx, tenant, permission)? {
            return Ok(());
        }
        self.catch_up().await?;
        if self.permitted(ctx, tenant, permission)? {
            return Ok(());
        }
        Err(AppError::Forbidden(permission.clone()))
    }

    /// [`App::authorize`] for a standard, admin or service resource (`users`, `roles`, …).
    pub async fn authorize_named(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        resource: &'static str,
        action: Action,
    ) -> Result<(), AppError> {
        let permission = Permission::new(Resource::Named(resource), action)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        self.authorize(ctx, tenant, &permission).await
    }

    /// [`App::authorize`] for `entity.<entity>:<action>`.
    pub async fn authorize_entity(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        entity: &EntityName,
        action: Action,
    ) -> Result<(), AppError> {
        let permission =
            Permission::entity(entity, action).map_err(|e| AppError::Internal(e.to_string()))?;
        self.authorize(ctx, tenant, &permission).await
    }

    /// [`App::authorize`] for `role.<role>:<assign|revoke>`: giving and taking each role needs
    /// its own permission.
    pub async fn authorize_role(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        role: &RoleName,
        action: Action,
    ) -> Result<(), AppError> {
        let permission = Permission::new(Resource::Role(role.clone()), action)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        self.authorize(ctx, tenant, &permission).await
    }

    /// Users are one identity across tenants, so changing a user's lifecycle (suspend, deactivate,
    /// …) needs `users:update` in *every* tenant the user belongs to (or a platform
    /// administrator): an administrator of one tenant cannot lock someone out of another.
    pub async fn authorize_user_admin(
        &self,
        ctx: &CommandContext,
        user: &UserId,
    ) -> Result<(), AppError> {
        self.authorize_on_user(ctx, user, Action::Update).await
    }

    /// Like [`App::authorize_user_admin`], for erasing a user: `users:delete` in every tenant
    /// the user belongs to, or platform administrator.
    pub async fn authorize_user_deletion(
        &self,
        ctx: &CommandContext,
        user: &UserId,
    ) -> Result<(), AppError> {
        self.authorize_on_user(ctx, user, Action::Delete).await
    }

    async fn authorize_on_user(
        &self,
        ctx: &CommandContext,
        user: &UserId,
        action: Action,
    ) -> Result<(), AppError> {
        if self.authorize_platform_admin(ctx).await.is_ok() {
            return Ok(());
        }
        let tenants = self.user_tenants(user)?;
        if tenants.is_empty() {
            return Err(AppError::Forbidden(
                Permission::new(Resource::Named("users"), action)
                    .map_err(|e| AppError::Internal(e.to_string()))?,
            ));
        }
        for tenant in &tenants {
            self.authorize_named(ctx, tenant, "users", action).await?;
        }
        Ok(())
    }

    /// Only platform administrators create tenants and set system flags. Like [`App::authorize`],
    /// a refusal is re-checked once the read models caught up with the log.
    pub async fn authorize_platform_admin(&self, ctx: &CommandContext) -> Result<(), AppError> {
        if self.is_platform_admin(ctx)? {
            return Ok(());
        }
        if ctx.actor.kind == ActorKind::User {
            self.catch_up().await?;
            if self.is_platform_admin(ctx)? {
                return Ok(());
            }
        }
        Err(AppError::PlatformAdminOnly)
    }

    /// Whether the actor is a platform administrator (system actors, or users with the flag).
    pub fn is_platform_admin(&self, ctx: &CommandContext) -> Result<bool, AppError> {
        match ctx.actor.kind {
            ActorKind::System => Ok(true),
            ActorKind::User => {
                let Ok(user) = ctx.actor.id.parse::<UserId>() else {
                    return Ok(false);
                };
                self.inner.access.is_platform_admin(&user).map_err(storage)
            }
            ActorKind::ApiKey => Ok(false),
        }
    }

    /// The tenant must exist; answered from the access model's cached facts, so a check pays no
    /// read-model lookup for it.
    fn require_known_tenant(&self, tenant: &TenantId) -> Result<(), AppError> {
        if self.inner.access.tenant_exists(tenant).map_err(storage)? {
            Ok(())
        } else {
            Err(AppError::TenantNotFound)
        }
    }

    fn request<'a>(&self, query: &'a CheckQuery) -> CheckRequest<'a> {
        CheckRequest {
            tenant: &query.tenant,
            subject: query.subject,
            permission: &query.permission,
            record: query.record.as_ref(),
            restriction: query.restriction.as_ref(),
            now: self.inner.clock.now(),
        }
    }

    /// Decides one check.
    pub fn check(&self, query: &CheckQuery) -> Result<Decision, AppError> {
        self.require_known_tenant(&query.tenant)?;
        self.inner
            .access
            .check(self.request(query))
            .map_err(storage)
    }

    /// Decides one permission on many records of an entity.
    pub fn check_many(
        &self,
        query: &CheckQuery,
        records: &[RecordId],
    ) -> Result<Vec<Decision>, AppError> {
        self.require_known_tenant(&query.tenant)?;
        let now = self.inner.clock.now();
        records
            .iter()
            .map(|record| {
                self.inner
                    .access
                    .check(CheckRequest {
                        tenant: &query.tenant,
                        subject: query.subject,
                        permission: &query.permission,
                        record: Some(record),
                        restriction: query.restriction.as_ref(),
                        now,
                    })
                    .map_err(storage)
            })
            .collect()
    }

    /// Decides one check and names the facts and events that decided it.
    pub fn explain(&self, query: &CheckQuery) -> Result<Explanation, AppError> {
        self.require_known_tenant(&query.tenant)?;
        self.inner
            .access
            .explain(self.request(query))
            .map_err(storage)
    }

    /// `{"read","create","update","delete"}` of an entity for a subject.
    pub fn entity_permissions(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
    ) -> Result<EntityPermissions, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .entity_permissions(tenant, subject, entity, self.inner.clock.now())
            .map_err(storage)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The records of an entity a subject may read, a page at a time.
    pub fn readable_records(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<ReadableRecords, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .readable_records(
                tenant,
                subject,
                entity,
                after,
                limit,
                self.inner.clock.now(),
            )
            .map_err(storage)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The fields of an entity a subject may see.
    pub fn visible_fields(
        &self,
        tenant: &TenantId,
        subject: Subject,
        entity: &EntityName,
    ) -> Result<Vec<String>, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .visible_fields(tenant, subject, entity, self.inner.clock.now())
            .map_err(storage)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The roles of a tenant.
    pub fn roles(&self, tenant: &TenantId) -> Result<Vec<idstream_access::RoleRecord>, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner.access.roles(tenant).map_err(storage)
    }

    pub fn role(
        &self,
        tenant: &TenantId,
        role: &idstream_domain::RoleName,
    ) -> Result<idstream_access::RoleRecord, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .role_record(tenant, role)
            .map_err(storage)?
            .ok_or_else(|| AppError::UnknownRole(role.clone()))
    }

    /// The entities of a tenant.
    pub fn entities(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<idstream_access::EntityRecord>, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner.access.entities(tenant).map_err(storage)
    }

    pub fn entity(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<idstream_access::EntityRecord, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .entity_record(tenant, entity)
            .map_err(storage)?
            .ok_or(AppError::EntityNotFound)
    }

    /// A member's effective permissions: global access, and the union of role and custom
    /// permissions.
    pub fn effective_permissions(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<(bool, BTreeSet<Permission>), AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .effective_permissions(tenant, user)
            .map_err(storage)
    }

    /// A member's menu, merged from their roles' menus.
    pub fn menu(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<MenuItem>, AppError> {
        self.require_known_tenant(tenant)?;
        self.inner
            .access
            .menu(tenant, user, self.inner.clock.now())
            .map_err(storage)
    }
}
