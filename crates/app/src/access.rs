//! The write side of access control: tenant settings, roles and their menus, entities with
//! their fields, row-level security, policies and field rules, records (owners, grants, local
//! roles), custom permissions, removing members, deactivating users and their flags. It also
//! holds the admin rules of F-AZ-7 that depend on what roles mean.
//!
//! Every change is a command run through [`App::execute`] on its aggregate's stream:
//! roles at `<tenant>.role.<name>`, entities at `<tenant>.entity.<name>`, records at
//! `<tenant>.record.<entity>:<record>`, memberships and users as in `services`.
//!
//! Existence checks read what decides them best:
//! - roles and entities are read from their own streams in the log ([`App::load`]), which is
//!   authoritative and needs no read model;
//! - tenants, users and memberships come from the directory, waiting for it to reach the end of
//!   the log before answering "missing" (see [`App::find`]).
//!
//! **Rules that look at other aggregates.** The last-admin rule depends on every membership and
//! user of a tenant, so no one expected sequence can hold it. Every command that takes an
//! administrator's standing away therefore goes through the tenant's admin guard
//! ([`idstream_domain::access::admin_guard`]): it reserves the removal there first, with the
//! guard's expected sequence, so two such commands racing on two replicas are ordered and the
//! second decides again seeing the first. A role assigned while it is being deleted is caught
//! after the fact by both commands (see [`App::delete_role`] and `assign_role`): whichever of the
//! two events is later in the log, its command sees the other and takes the assignment back.
//!
//! Permission checks ("defining a role needs `roles:create`") are not done here: each service
//! names the permission it needs in a `Needs:` line of its documentation, and the authorization
//! layer checks it before the service runs.

use std::collections::BTreeSet;

use idstream_directory::UserStatus;
use idstream_domain::access::admin_guard::{AdminGuardCommand, RESERVATION_DEADLINE};
use idstream_domain::access::entity::{EntityCommand, EntityError};
use idstream_domain::access::record::{self, RecordCommand, RecordRef};
use idstream_domain::access::role::{self, RoleCommand, RoleError};
use idstream_domain::access::{
    EntityName, EntityPolicy, FieldName, MenuItem, Permission, Principal, RecordAccess, RecordId,
};
use idstream_domain::aggregate::{
    AdminGuardAggregate, EntityAggregate, MembershipAggregate, RecordAggregate, RoleAggregate,
    TenantAggregate, UserAggregate,
};
use idstream_domain::envelope::AggregateType;
use idstream_domain::membership::MembershipCommand;
use idstream_domain::tenant::{TenantCommand, TenantError, TenantSettings};
use idstream_domain::user::{UserCommand, UserFlags};
use idstream_domain::{ActorKind, RoleName, StreamKey, TenantId, UserId};
use idstream_eventlog::Position;

use crate::services::{internal, membership_key, tenant_key, user_key, user_not_found};
use crate::{App, AppError, CommandContext, Outcome};
use idstream_domain::access::Action;

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;

/// How many members one page of a tenant scan reads from the directory.
const MEMBER_PAGE: usize = 500;

/// The definition of a custom role: `POST /v1/tenants/{tenant}/roles`,
/// `PUT /v1/tenants/{tenant}/roles/{role}`.
#[derive(Debug, Clone)]
pub struct RoleRequest {
    pub description: String,
    pub permissions: BTreeSet<Permission>,
    /// Every permission, bypassing row- and field-level security.
    pub global_access: bool,
}

/// `POST /v1/tenants/{tenant}/entities`
#[derive(Debug, Clone)]
pub struct NewEntityRequest {
    pub fields: Vec<FieldName>,
    pub rls: bool,
    /// None: the default policy (owners read, update and delete their own records).
    pub policy: Option<EntityPolicy>,
}

/// A tenant's admin guard: `idstream.events.<tenant>.admin_guard.<tenant>`.
pub(crate) fn admin_guard_key(tenant: &TenantId) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::AdminGuard,
        tenant.as_str(),
    )
}

/// How many times a reservation on the admin guard is decided again after another one came
/// first.
const GUARD_ATTEMPTS: usize = 16;

pub(crate) fn role_key(tenant: &TenantId, role: &RoleName) -> StreamKey {
    StreamKey::new(Some(tenant.clone()), AggregateType::Role, role.as_str())
}

pub(crate) fn entity_key(tenant: &TenantId, entity: &EntityName) -> StreamKey {
    StreamKey::new(Some(tenant.clone()), AggregateType::Entity, entity.as_str())
}

pub(crate) fn record_key(tenant: &TenantId, at: &RecordRef) -> StreamKey {
    StreamKey::new(
        Some(tenant.clone()),
        AggregateType::Record,
        record::aggregate_id(&at.entity, &at.record),
    )
}

/// Who sends a command, as far as the admin rules are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// A system actor (the operator token, bootstrap): a platform administrator, above the rules.
    Platform,
    /// A signed-in user.
    User(UserId),
    /// An actor the rules cannot tie to a user (an API key, whose actor does not name its owner
    /// yet, or a malformed user id): held to the rules as a caller who holds no role.
    Unknown,
}

fn standing(ctx: &CommandContext) -> Standing {
    match ctx.actor.kind {
        ActorKind::System => Standing::Platform,
        ActorKind::User => ctx
            .actor
            .id
            .parse()
            .map_or(Standing::Unknown, Standing::User),
        ActorKind::ApiKey => Standing::Unknown,
    }
}

/// `admin` and `owner`: the roles that make their holder an administrator of the tenant for the
/// last-admin rule.
fn is_admin_role(role: &RoleName) -> bool {
    matches!(role.as_str(), role::ADMIN | role::OWNER)
}

fn tenant_not_found(e: AppError) -> AppError {
    match e {
        AppError::Tenant(TenantError::NotFound) => AppError::TenantNotFound,
        other => other,
    }
}

fn entity_not_found(e: AppError) -> AppError {
    match e {
        AppError::Entity(EntityError::NotFound) => AppError::EntityNotFound,
        other => other,
    }
}

impl App {
    // ----- existence checks -----

    /// A role exists in a tenant if it is built in, or defined there and not deleted. Read from
    /// the role's stream in the log: authoritative, and no read model is needed.
    pub(crate) async fn require_role(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<(), AppError> {
        if role::builtin(role.as_str()).is_some() {
            return Ok(());
        }
        let (state, _) = self.load::<RoleAggregate>(&role_key(tenant, role)).await?;
        match state.current(role) {
            Some(_) => Ok(()),
            None => Err(AppError::UnknownRole(role.clone())),
        }
    }

    /// Every role named in a policy must exist (pseudo-roles always do).
    async fn require_policy_roles(
        &self,
        tenant: &TenantId,
        policy: &EntityPolicy,
    ) -> Result<(), AppError> {
        let roles: BTreeSet<&RoleName> =
            [&policy.read, &policy.create, &policy.update, &policy.delete]
                .into_iter()
                .flatten()
                .filter_map(|p| match p {
                    Principal::Role(r) => Some(r),
                    Principal::Pseudo(_) => None,
                })
                .collect();
        for role in roles {
            self.require_role(tenant, role).await?;
        }
        Ok(())
    }

    /// The entity is registered in the tenant, read from its stream in the log.
    async fn require_entity(&self, tenant: &TenantId, entity: &EntityName) -> Result<(), AppError> {
        let (state, _) = self
            .load::<EntityAggregate>(&entity_key(tenant, entity))
            .await?;
        if state.registered {
            Ok(())
        } else {
            Err(AppError::EntityNotFound)
        }
    }

    /// The user is a member of the tenant (holds a role or a custom permission there).
    async fn require_member(&self, tenant: &TenantId, user: UserId) -> Result<(), AppError> {
        self.find(|app| {
            app.inner
                .directory
                .membership(tenant, &user)
                .map_err(internal)
        })
        .await?
        .map(|_| ())
        .ok_or(AppError::NotAMember)
    }

    // ----- the admin rules (F-AZ-7) -----

    /// The roles a user holds in a tenant, read from their membership's stream in the log.
    async fn roles_held(
        &self,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<BTreeSet<RoleName>, AppError> {
        let (membership, _) = self
            .load::<MembershipAggregate>(&membership_key(tenant, user))
            .await?;
        Ok(membership.roles)
    }

    /// Up to `limit` members of the tenant other than `except`, not deactivated or erased, who
    /// hold `admin` or `owner`: read from the directory after catching up with the log.
    async fn other_admins(
        &self,
        tenant: &TenantId,
        except: UserId,
        limit: usize,
    ) -> Result<BTreeSet<UserId>, AppError> {
        self.catch_up().await?;
        let mut found = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self
                .inner
                .directory
                .members(tenant, after, MEMBER_PAGE)
                .map_err(internal)?;
            for (user, membership) in &page {
                if user.id != except
                    && !matches!(user.status, UserStatus::Inactive | UserStatus::Erased)
                    && membership.roles.iter().any(is_admin_role)
                {
                    found.insert(user.id);
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
            if page.len() < MEMBER_PAGE {
                return Ok(found);
            }
            after = page.last().map(|(user, _)| user.id);
        }
    }

    /// Reserves taking `user`'s administrator standing away in `tenant` on the tenant's admin
    /// guard, or refuses with [`AppError::LastAdmin`] when no other administrator would stay.
    /// Returns when the reservation was made. The other administrators are read from the
    /// directory after the guard, so every removal reserved before is either still in flight
    /// (and not counted) or settled (and visible in the directory); a reservation that comes
    /// first on another replica makes the append fail, and it is all read and decided again.
    async fn reserve_admin_removal(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<time::OffsetDateTime, AppError> {
        let key = admin_guard_key(tenant);
        for _ in 0..GUARD_ATTEMPTS {
            let (guard, _) = self.load::<AdminGuardAggregate>(&key).await?;
            let now = self.inner.clock.now();
            // One more than are in flight: then at least one of them is staying.
            let limit = guard.in_flight(now).len() + 1;
            let others = self.other_admins(tenant, user, limit).await?;
            let command = AdminGuardCommand::Reserve {
                user,
                now,
                seen: guard.version,
                others,
            };
            match self
                .execute::<AdminGuardAggregate>(ctx, &key, "", command)
                .await
            {
                Ok(_) => return Ok(now),
                Err(AppError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(AppError::Conflict)
    }

    /// Settles a reservation made by [`App::reserve_admin_removal`]. A failure is only logged:
    /// the reservation then expires by itself, and until it does it only makes the rule stricter.
    async fn settle_admin_removal(&self, ctx: &CommandContext, tenant: &TenantId, user: UserId) {
        let command = AdminGuardCommand::Settle { user };
        if let Err(error) = self
            .execute::<AdminGuardAggregate>(ctx, &admin_guard_key(tenant), "", command)
            .await
        {
            tracing::warn!(%tenant, %user, %error, "could not settle a reserved administrator removal; it expires by itself");
        }
    }

    /// Runs `removal`, a command that takes `user`'s administrator standing away in `tenants`
    /// (none: it takes nothing away, and runs as it is), under those tenants' admin guards:
    /// reserves the removal in each, refusing with [`AppError::LastAdmin`] where nobody else
    /// would stay; runs the command, which must append within the reservation's deadline (it is
    /// abandoned otherwise, so a reservation never outlives the command it covers); then settles
    /// every reservation made, whatever the outcome.
    pub(crate) async fn guarded_admin_removal<T>(
        &self,
        ctx: &CommandContext,
        tenants: &[TenantId],
        user: UserId,
        removal: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        if tenants.is_empty() {
            return removal.await;
        }
        let guard_ctx = ctx.without_idempotency();
        let mut reserved = Vec::new();
        let mut first = None;
        let mut refused = None;
        for tenant in tenants {
            match self.reserve_admin_removal(&guard_ctx, tenant, user).await {
                Ok(at) => {
                    first.get_or_insert(at);
                    reserved.push(tenant);
                }
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let result = match (refused, first) {
            (Some(error), _) => Err(error),
            (None, first) => {
                let elapsed = first.map_or(time::Duration::ZERO, |at| self.inner.clock.now() - at);
                let left = std::time::Duration::try_from(RESERVATION_DEADLINE - elapsed)
                    .unwrap_or_default();
                match tokio::time::timeout(left, removal).await {
                    Ok(result) => result,
                    Err(_) => Err(AppError::Unavailable(
                        "the command could not be carried out in time; nothing was changed".into(),
                    )),
                }
            }
        };
        for tenant in reserved {
            self.settle_admin_removal(&guard_ctx, tenant, user).await;
        }
        result
    }

    /// Up to `limit` members of the tenant who hold `role`, from the directory after catching
    /// up with the log.
    async fn holders_of(
        &self,
        tenant: &TenantId,
        role: &RoleName,
        limit: usize,
    ) -> Result<Vec<UserId>, AppError> {
        self.catch_up().await?;
        let mut holders = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .inner
                .directory
                .members(tenant, after, MEMBER_PAGE)
                .map_err(internal)?;
            for (user, membership) in &page {
                if membership.roles.contains(role) {
                    holders.push(user.id);
                    if holders.len() >= limit {
                        return Ok(holders);
                    }
                }
            }
            if page.len() < MEMBER_PAGE {
                return Ok(holders);
            }
            after = page.last().map(|(user, _)| user.id);
        }
    }

    /// Takes a role that no longer exists from every member who still holds it: assignments that
    /// raced its deletion (see [`App::delete_role`]), or that a process stopped before taking
    /// back. Returns the position of the last revocation, if any.
    async fn revoke_leftover_holders(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<Option<Position>, AppError> {
        let mut last = None;
        for user in self.holders_of(tenant, role, usize::MAX).await? {
            let command = MembershipCommand::Revoke {
                user,
                role: role.clone(),
            };
            let step = format!("leftover-{user}");
            match self
                .execute::<MembershipAggregate>(ctx, &membership_key(tenant, user), &step, command)
                .await
            {
                Ok(outcome) => last = last.max(Some(outcome.position)),
                // Taken back meanwhile by the assigner itself.
                Err(AppError::Membership(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(last)
    }

    /// After assigning `role`, which existed when the command was decided: if it was deleted
    /// meanwhile, takes the assignment back and answers that the role is unknown. Together with
    /// the check after a deletion ([`App::delete_role`]) this leaves no member holding a deleted
    /// role, whichever of the two events comes first in the log.
    pub(crate) async fn confirm_assigned_role(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        user: UserId,
        role: &RoleName,
    ) -> Result<(), AppError> {
        match self.require_role(tenant, role).await {
            Err(AppError::UnknownRole(_)) => {
                let command = MembershipCommand::Revoke {
                    user,
                    role: role.clone(),
                };
                match self
                    .execute::<MembershipAggregate>(
                        ctx,
                        &membership_key(tenant, user),
                        "undo",
                        command,
                    )
                    .await
                {
                    Ok(_) | Err(AppError::Membership(_)) => {}
                    Err(error) => return Err(error),
                }
                Err(AppError::UnknownRole(role.clone()))
            }
            other => other,
        }
    }

    /// The owner role is given and taken only by a caller who holds it in the tenant. Other
    /// roles pass. Platform administrators pass.
    pub(crate) async fn check_owner_only(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<(), AppError> {
        if !role::is_protected(role) {
            return Ok(());
        }
        match standing(ctx) {
            Standing::Platform => Ok(()),
            Standing::User(me) if self.roles_held(tenant, me).await?.contains(role) => Ok(()),
            Standing::User(_) | Standing::Unknown => Err(AppError::OwnerOnly),
        }
    }

    /// Taking `role` from `user`: nobody gives up their own owner role; only owners take the
    /// owner role. Returns whether it takes `user`'s administrator standing (`admin` or `owner`)
    /// away, so that the revocation must run under the tenant's admin guard, which keeps the
    /// last administrator ([`App::guarded_admin_removal`]).
    pub(crate) async fn check_role_revocation(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        user: UserId,
        role: &RoleName,
    ) -> Result<bool, AppError> {
        let caller = standing(ctx);
        if caller == Standing::Platform {
            return Ok(false);
        }
        if role::is_protected(role) && caller == Standing::User(user) {
            return Err(AppError::CannotRemoveSelf);
        }
        self.check_owner_only(ctx, tenant, role).await?;
        if is_admin_role(role) {
            let held = self.roles_held(tenant, user).await?;
            let stays_admin = held.iter().any(|r| r != role && is_admin_role(r));
            return Ok(held.contains(role) && !stays_admin);
        }
        Ok(false)
    }

    /// Removing `user` from the tenant: nobody removes themselves; removing an owner takes the
    /// owner role, so only owners do it. Returns whether `user` is an administrator there, so
    /// that the removal must run under the tenant's admin guard.
    async fn check_member_removal(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<bool, AppError> {
        let caller = standing(ctx);
        if caller == Standing::Platform {
            return Ok(false);
        }
        if caller == Standing::User(user) {
            return Err(AppError::CannotRemoveSelf);
        }
        let held = self.roles_held(tenant, user).await?;
        for role in held.iter().filter(|r| role::is_protected(r)) {
            self.check_owner_only(ctx, tenant, role).await?;
        }
        Ok(held.iter().any(is_admin_role))
    }

    /// Deactivating (or erasing) `user`: the tenants where they are an administrator, under
    /// whose admin guards it must run. Refuses at once where no other administrator is listed,
    /// before the command does anything else; the guard decides for good.
    async fn check_deactivation(
        &self,
        ctx: &CommandContext,
        user: UserId,
    ) -> Result<Vec<TenantId>, AppError> {
        if standing(ctx) == Standing::Platform {
            return Ok(Vec::new());
        }
        self.catch_up().await?;
        let mut guarded = Vec::new();
        for tenant in self.inner.directory.user_tenants(&user).map_err(internal)? {
            let held = self.roles_held(&tenant, user).await?;
            if held.iter().any(is_admin_role) {
                if self.other_admins(&tenant, user, 1).await?.is_empty() {
                    return Err(AppError::LastAdmin);
                }
                guarded.push(tenant);
            }
        }
        Ok(guarded)
    }

    // ----- tenant settings -----

    /// A tenant's settings, from the directory.
    ///
    /// Needs: settings:read
    pub fn tenant_settings(&self, tenant: &TenantId) -> Result<TenantSettings, AppError> {
        Ok(self.tenant(tenant)?.settings)
    }

    /// Replaces a tenant's settings. The default role must exist in the tenant and must not be
    /// `owner` (self-registration would hand out the role only owners may give).
    ///
    /// Needs: settings:update
    pub async fn change_tenant_settings(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        settings: TenantSettings,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        settings.validate()?;
        if role::is_protected(&settings.default_role) {
            return Err(AppError::ProtectedDefaultRole);
        }
        self.require_role(&tenant, &settings.default_role).await?;
        self.execute::<TenantAggregate>(
            ctx,
            &tenant_key(&tenant),
            "",
            TenantCommand::ChangeSettings { settings },
        )
        .await
        .map_err(tenant_not_found)
    }

    // ----- roles -----

    /// Defines a custom role in a tenant. Names are unique per tenant, the built-in ones
    /// included; a deleted role's name can be defined again.
    ///
    /// Needs: roles:create
    pub async fn define_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: RoleName,
        request: RoleRequest,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "roles", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        let key = role_key(&tenant, &name);
        // Defining again a name that was deleted: nobody may hold the new role by an assignment
        // of the old one that outlived it.
        let (state, _) = self.load::<RoleAggregate>(&key).await?;
        if state.deleted {
            self.revoke_leftover_holders(ctx, &tenant, &name).await?;
        }
        let command = RoleCommand::Define {
            name,
            description: request.description,
            permissions: request.permissions,
            global_access: request.global_access,
        };
        self.execute::<RoleAggregate>(ctx, &key, "", command).await
    }

    /// Replaces a role's definition (`owner` and `admin` cannot change; `user` can).
    ///
    /// Needs: roles:update
    pub async fn update_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: RoleName,
        request: RoleRequest,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "roles", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let key = role_key(&tenant, &name);
        let command = RoleCommand::Update {
            name,
            description: request.description,
            permissions: request.permissions,
            global_access: request.global_access,
        };
        self.execute::<RoleAggregate>(ctx, &key, "", command).await
    }

    /// Deletes a custom role. Built-in roles are never deleted; a role is refused while any
    /// member holds it or while it is the tenant's default role. Local roles on records, entity
    /// policies and field rules that name it are left as they are: a deleted role grants nothing,
    /// and they start to apply again if a role of that name is defined again.
    ///
    /// Needs: roles:delete
    pub async fn delete_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: RoleName,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "roles", Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        if role::builtin(name.as_str()).is_some() {
            return Err(RoleError::BuiltIn.into());
        }
        let key = role_key(&tenant, &name);
        let (state, _) = self.load::<RoleAggregate>(&key).await?;
        if state.current(&name).is_none() {
            return Err(RoleError::NotFound.into());
        }
        let (settings, _) = self.load::<TenantAggregate>(&tenant_key(&tenant)).await?;
        if settings.settings.default_role == name
            || !self.holders_of(&tenant, &name, 1).await?.is_empty()
        {
            return Err(AppError::RoleInUse(name));
        }
        let outcome = self
            .execute::<RoleAggregate>(ctx, &key, "", RoleCommand::Delete { name: name.clone() })
            .await?;
        // An assignment that raced this deletion (decided before it, appended after the holders
        // were read above) is taken back now; one appended after the deletion is taken back by
        // its own command, which checks the role still exists.
        let cleaned = self.revoke_leftover_holders(ctx, &tenant, &name).await?;
        Ok(Outcome {
            position: cleaned.map_or(outcome.position, |p| p.max(outcome.position)),
            ..outcome
        })
    }

    /// Sets the menu of a role (an empty list removes it).
    ///
    /// Needs: menus:update
    pub async fn set_role_menu(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        name: RoleName,
        menu: Vec<MenuItem>,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "menus", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let key = role_key(&tenant, &name);
        self.execute::<RoleAggregate>(ctx, &key, "", RoleCommand::SetMenu { name, menu })
            .await
    }

    // ----- entities -----

    /// Registers an entity (a data type) in a tenant. Roles named in the policy must exist.
    ///
    /// Needs: entities:create
    pub async fn register_entity(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        request: NewEntityRequest,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "entities", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        if let Some(policy) = &request.policy {
            self.require_policy_roles(&tenant, policy).await?;
        }
        let command = EntityCommand::Register {
            fields: request.fields,
            rls: request.rls,
            policy: request.policy,
        };
        self.execute::<EntityAggregate>(ctx, &entity_key(&tenant, &entity), "", command)
            .await
    }

    /// Replaces an entity's field list; field rules on removed fields lapse.
    ///
    /// Needs: fields:update
    pub async fn change_entity_fields(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        fields: Vec<FieldName>,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "fields", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.change_entity(
            ctx,
            &tenant,
            &entity,
            EntityCommand::ChangeFields { fields },
        )
        .await
    }

    /// Sends a command to an existing entity of an existing tenant (checked by the caller).
    async fn change_entity(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        entity: &EntityName,
        command: EntityCommand,
    ) -> Result<Outcome, AppError> {
        self.execute::<EntityAggregate>(ctx, &entity_key(tenant, entity), "", command)
            .await
            .map_err(entity_not_found)
    }

    /// Turns row-level security of an entity on or off.
    ///
    /// Needs: entities:update
    pub async fn set_entity_rls(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        enabled: bool,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "entities", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.change_entity(ctx, &tenant, &entity, EntityCommand::SetRls { enabled })
            .await
    }

    /// Replaces an entity's policy. Roles named in it must exist.
    ///
    /// Needs: entities:update
    pub async fn set_entity_policy(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        policy: EntityPolicy,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "entities", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_entity(&tenant, &entity).await?;
        self.require_policy_roles(&tenant, &policy).await?;
        self.change_entity(ctx, &tenant, &entity, EntityCommand::SetPolicy { policy })
            .await
    }

    /// Hides exactly `hidden` fields of an entity from a role (an empty set shows them all
    /// again). The role must exist to hide anything; clearing the rules of a deleted role is
    /// allowed.
    ///
    /// Needs: fields:update
    pub async fn set_field_rules(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        role: RoleName,
        hidden: BTreeSet<FieldName>,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "fields", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_entity(&tenant, &entity).await?;
        if !hidden.is_empty() {
            self.require_role(&tenant, &role).await?;
        }
        self.change_entity(
            ctx,
            &tenant,
            &entity,
            EntityCommand::HideFields { role, hidden },
        )
        .await
    }

    // ----- records -----

    /// Checks what every record command needs: the tenant exists and the entity is registered.
    async fn record_at(
        &self,
        tenant: &TenantId,
        entity: EntityName,
        record: RecordId,
    ) -> Result<RecordRef, AppError> {
        self.require_tenant(tenant).await?;
        self.require_entity(tenant, &entity).await?;
        Ok(RecordRef { entity, record })
    }

    /// Sets the owner (`_CREATOR`) of a record; the owner must be a member of the tenant.
    ///
    /// Needs: entity.<entity>:update
    pub async fn set_record_owner(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        owner: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_entity(ctx, &tenant, &entity, Action::Update)
            .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, owner).await?;
        let key = record_key(&tenant, &at);
        self.execute::<RecordAggregate>(ctx, &key, "", RecordCommand::SetOwner { at, owner })
            .await
    }

    /// Grants a member read-only or read-write access to one record (a repeat changes nothing).
    ///
    /// Needs: entity.<entity>:update
    pub async fn grant_record_access(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        access: RecordAccess,
    ) -> Result<Outcome, AppError> {
        self.authorize_entity(ctx, &tenant, &entity, Action::Update)
            .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, user).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::Grant { at, user, access };
        self.execute::<RecordAggregate>(ctx, &key, "", command)
            .await
    }

    /// Withdraws a user's grant on one record. The user need not be a member any more: grants of
    /// people who left can be cleaned up.
    ///
    /// Needs: entity.<entity>:update
    pub async fn revoke_record_access(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_entity(ctx, &tenant, &entity, Action::Update)
            .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        let key = record_key(&tenant, &at);
        self.execute::<RecordAggregate>(ctx, &key, "", RecordCommand::Revoke { at, user })
            .await
    }

    /// Gives a member a role on one record only (a local role). The role must exist, and only
    /// owners give the owner role, locally too.
    ///
    /// Needs: role.<role>:assign
    pub async fn assign_local_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        self.authorize_role(ctx, &tenant, &role, Action::Assign)
            .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, user).await?;
        self.require_role(&tenant, &role).await?;
        self.check_owner_only(ctx, &tenant, &role).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::AssignLocalRole { at, user, role };
        self.execute::<RecordAggregate>(ctx, &key, "", command)
            .await
    }

    /// Takes a local role from a user on one record. Neither membership nor the role's existence
    /// is required, so that what is left of deleted roles and departed members can be removed;
    /// only owners take the owner role.
    ///
    /// Needs: role.<role>:revoke
    pub async fn revoke_local_role(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        self.authorize_role(ctx, &tenant, &role, Action::Revoke)
            .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.check_owner_only(ctx, &tenant, &role).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::RevokeLocalRole { at, user, role };
        self.execute::<RecordAggregate>(ctx, &key, "", command)
            .await
    }

    // ----- custom permissions and membership -----

    /// Gives a user custom permissions in a tenant, on top of their roles (those held already
    /// are ignored). A user who was not a member becomes one.
    ///
    /// Needs: permissions:create
    pub async fn grant_permissions(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        user: UserId,
        permissions: BTreeSet<Permission>,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "permissions", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_user_exists(user).await?;
        self.execute::<MembershipAggregate>(
            ctx,
            &membership_key(&tenant, user),
            "",
            MembershipCommand::GrantPermissions { user, permissions },
        )
        .await
    }

    /// Takes custom permissions from a user in a tenant (those not held are ignored).
    ///
    /// Needs: permissions:delete
    pub async fn revoke_permissions(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        user: UserId,
        permissions: BTreeSet<Permission>,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "permissions", Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_user_exists(user).await?;
        self.execute::<MembershipAggregate>(
            ctx,
            &membership_key(&tenant, user),
            "",
            MembershipCommand::RevokePermissions { user, permissions },
        )
        .await
    }

    /// Removes a user from a tenant: every role and custom permission there. The user's
    /// identity and their other tenants are untouched. Keeps the admin rules of F-AZ-7.
    ///
    /// Needs: users:delete
    pub async fn remove_member(
        &self,
        ctx: &CommandContext,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_named(ctx, &tenant, "users", Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        let guarded = if self.check_member_removal(ctx, &tenant, user).await? {
            vec![tenant.clone()]
        } else {
            Vec::new()
        };
        let key = membership_key(&tenant, user);
        let removal =
            self.execute::<MembershipAggregate>(ctx, &key, "", MembershipCommand::Remove { user });
        self.guarded_admin_removal(ctx, &guarded, user, removal)
            .await
    }

    // ----- user lifecycle and flags -----

    /// Deactivates a user (they left): no sign-in and no access anywhere until reactivated.
    /// The last administrator of a tenant cannot be deactivated. Deactivating an inactive user
    /// changes nothing.
    ///
    /// Needs: users:update
    pub async fn deactivate_user(
        &self,
        ctx: &CommandContext,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_user_admin(ctx, &user).await?;
        let guarded = self.check_deactivation(ctx, user).await?;
        let key = user_key(user);
        let deactivation = self.execute::<UserAggregate>(ctx, &key, "", UserCommand::Deactivate);
        let outcome = self
            .guarded_admin_removal(ctx, &guarded, user, deactivation)
            .await
            .map_err(user_not_found)?;
        // In force on this replica when it answers: the user's credentials stop working at once.
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Makes a deactivated user active again.
    ///
    /// Needs: users:update
    pub async fn reactivate_user(
        &self,
        ctx: &CommandContext,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.authorize_user_admin(ctx, &user).await?;
        let outcome = self
            .execute::<UserAggregate>(ctx, &user_key(user), "", UserCommand::Reactivate)
            .await
            .map_err(user_not_found)?;
        self.wait_for(outcome.position).await?;
        Ok(outcome)
    }

    /// Erases a user (right to erasure, F-AU-4): records `UserErased`, which destroys the user's
    /// personal-data key (see `idstream_keys::PersonalDataLog`), so their email, names,
    /// picture and the sources of their sign-ins can no longer be read in any event, read model,
    /// replay or export; then releases the addresses they held, so they can be used again. The
    /// mail the service still keeps for those addresses (the file transport's spool) is deleted
    /// first, while the addresses can still be read, and once more after the erasure for a
    /// message sent meanwhile. The user's id stays in the log and the audit trail keeps its
    /// structure. Nobody erases themselves, and the last administrator of a tenant cannot be
    /// erased. Erasing an erased user changes nothing.
    ///
    /// Needs: users:delete in every tenant the user belongs to (or platform administrator).
    pub async fn erase_user(
        &self,
        ctx: &CommandContext,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        if ctx.actor.kind == ActorKind::User && ctx.actor.id == user.to_string() {
            return Err(AppError::CannotRemoveSelf);
        }
        self.authorize_user_deletion(ctx, &user).await?;
        let (before, _) = self.load::<UserAggregate>(&user_key(user)).await?;
        if !before.exists() {
            return Err(AppError::UserNotFound);
        }
        let mut spooled = Vec::new();
        let mut guarded = Vec::new();
        if before.status != idstream_domain::user::Status::Erased {
            guarded = self.check_deactivation(ctx, user).await?;
            spooled = self.spooled_addresses(user, &before)?;
            // Without the addresses (gone with the key) this could never be done later.
            self.id()
                .mailer
                .forget(&spooled)
                .await
                .map_err(|e| AppError::Unavailable(format!("the mail spool: {e}")))?;
        }
        let key = user_key(user);
        let erasure = self.execute::<UserAggregate>(ctx, &key, "", UserCommand::Erase);
        let outcome = self
            .guarded_admin_removal(ctx, &guarded, user, erasure)
            .await
            .map_err(user_not_found)?;
        if let Err(error) = self.id().mailer.forget(&spooled).await {
            tracing::warn!(%user, %error, "mail sent to an erased user while they were being erased could not be deleted");
        }
        // Were this interrupted, the claims would still be free: a claim held by an erased user
        // is taken over like one whose user never came to exist.
        let held = [Some(before.email), before.pending_email];
        let mut last = outcome.position;
        for (i, email) in held.into_iter().flatten().enumerate() {
            if !email.is_empty() {
                let released = self
                    .release_email(ctx, user, &email, &format!("release-{i}"))
                    .await?;
                last = last.max(released);
            }
        }
        self.wait_for(last).await?;
        Ok(Outcome {
            position: last,
            ..outcome
        })
    }

    /// The addresses whose kept mail an erasure deletes: the user's address, and the one they
    /// asked to move to unless another user holds it by now (its mail would be theirs).
    fn spooled_addresses(
        &self,
        user: UserId,
        state: &idstream_domain::user::User,
    ) -> Result<Vec<String>, AppError> {
        let mut addresses = Vec::new();
        if !state.email.is_empty() {
            addresses.push(state.email.clone());
        }
        if let Some(pending) = state.pending_email.as_ref().filter(|e| !e.is_empty()) {
            let other = self
                .directory()
                .user_by_email(pending)
                .map_err(internal)?
                .is_some_and(|holder| holder.id != user);
            if !other {
                addresses.push(pending.clone());
            }
        }
        Ok(addresses)
    }

    /// Replaces a user's system-level flags (the same in every tenant).
    ///
    /// Needs: platform administrator (a system actor, or a user with the `platform_admin` flag);
    /// no tenant permission suffices, since the flags reach beyond any one tenant.
    pub async fn set_user_flags(
        &self,
        ctx: &CommandContext,
        user: UserId,
        flags: UserFlags,
    ) -> Result<Outcome, AppError> {
        self.authorize_platform_admin(ctx).await?;
        self.execute::<UserAggregate>(ctx, &user_key(user), "", UserCommand::SetFlags(flags))
            .await
            .map_err(user_not_found)
    }
}
