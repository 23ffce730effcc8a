//! The admin rules of F-AZ-7 and the escalation rules, shared by the services that change who
//! holds what:
//!
//! - **Owners.** The owner role is given and taken only by owners (a platform administrator may
//!   give it in a tenant that has none); deactivating, suspending, erasing or removing an owner
//!   takes it away, so only owners do that too.
//! - **Nobody removes themselves**: their own membership, owner role, account (suspension,
//!   deactivation, erasure).
//! - **The last administrator stays.** A tenant keeps a holder of `admin` or `owner`, even when
//!   two replicas take two of them away at once: every such command reserves the removal on the
//!   tenant's admin guard first ([`idstream_domain::access::admin_guard`]), with the guard's
//!   expected sequence, so the second decides again seeing the first.
//! - **No escalation.** Nobody gives a permission they do not hold: giving a role needs its
//!   `role.<name>:assign` and every permission of the role (global access if it has it).
//!
//! The operator (a system actor: the operator token, the CLI) is above these rules. Platform
//! administrators pass every permission check, but are held to the rules about owners (except
//! giving the owner role of a tenant that has none), themselves and the last administrator.
//!
//! A role assigned while it is being deleted is caught after the fact by both commands (see
//! `AccessAdmin::delete_role` and `Memberships::assign_role`): whichever of the two events is
//! later in the log, its command sees the other and takes the assignment back.

use std::collections::BTreeSet;

use idstream_directory::UserStatus;
use idstream_domain::access::admin_guard::{AdminGuardCommand, RESERVATION_DEADLINE};
use idstream_domain::access::record::{self, RecordRef};
use idstream_domain::access::role::{self, RoleDefinition};
use idstream_domain::access::{Action, EntityName, EntityPolicy, Permission, Principal, Resource};
use idstream_domain::aggregate::{
    AdminGuardAggregate, EntityAggregate, MembershipAggregate, RoleAggregate,
};
use idstream_domain::envelope::AggregateType;
use idstream_domain::membership::MembershipCommand;
use idstream_domain::{RoleName, StreamKey, TenantId, UserId};
use idstream_eventlog::Position;

use crate::core::{Core, internal, membership_key};
use crate::policy::{self, Caller};
use crate::{AppError, CommandContext};

/// How many members one page of a tenant scan reads from the directory.
const MEMBER_PAGE: usize = 500;

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
    /// A system actor (the operator token, the CLI): above the rules.
    Operator,
    /// A user (through a session, or an API key acting for its owner); `platform` when a
    /// platform administrator through a session.
    User { id: UserId, platform: bool },
}

/// `admin` and `owner`: the roles that make their holder an administrator of the tenant for the
/// last-admin rule.
fn is_admin_role(role: &RoleName) -> bool {
    matches!(role.as_str(), role::ADMIN | role::OWNER)
}

impl Core {
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
    pub(crate) async fn require_policy_roles(
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
    pub(crate) async fn require_entity(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<(), AppError> {
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
    pub(crate) async fn require_member(
        &self,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<(), AppError> {
        self.find(|core| core.directory().membership(tenant, &user).map_err(internal))
            .await?
            .map(|_| ())
            .ok_or(AppError::NotAMember)
    }

    // ----- the admin rules (F-AZ-7) -----

    /// The roles a user holds in a tenant, read from their membership's stream in the log.
    pub(crate) async fn roles_held(
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
                .directory()
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
    pub(crate) async fn reserve_admin_removal(
        &self,
        ctx: &CommandContext,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<time::OffsetDateTime, AppError> {
        let key = admin_guard_key(tenant);
        for _ in 0..GUARD_ATTEMPTS {
            let (guard, _) = self.load::<AdminGuardAggregate>(&key).await?;
            let now = self.clock.now();
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

    /// Settles a reservation made by [`Core::reserve_admin_removal`]. A failure is only logged:
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
                let elapsed = first.map_or(time::Duration::ZERO, |at| self.clock.now() - at);
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
    pub(crate) async fn holders_of(
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
                .directory()
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
    /// raced its deletion (see [`Core::delete_role`]), or that a process stopped before taking
    /// back. Returns the position of the last revocation, if any.
    pub(crate) async fn revoke_leftover_holders(
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
    /// the check after a deletion ([`Core::delete_role`]) this leaves no member holding a deleted
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

    /// The caller as the admin rules see it.
    fn standing(&self, caller: &Caller) -> Result<Standing, AppError> {
        match caller.principal() {
            policy::Principal::Operator => Ok(Standing::Operator),
            policy::Principal::User(auth) => Ok(Standing::User {
                id: auth.user,
                platform: auth.session().is_some()
                    && self
                        .access_view()
                        .is_platform_admin(&auth.user)
                        .map_err(internal)?,
            }),
            policy::Principal::Anonymous | policy::Principal::Refused => {
                Err(AppError::Unauthenticated)
            }
        }
    }

    /// The owner role is given and taken only by a caller who holds it in the tenant; a
    /// platform administrator may also give it in a tenant that has no owner (one created
    /// through the API). Other roles pass; the operator passes.
    pub(crate) async fn check_owner_only(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
        giving: bool,
    ) -> Result<(), AppError> {
        if !role::is_protected(role) {
            return Ok(());
        }
        match self.standing(caller)? {
            Standing::Operator => Ok(()),
            Standing::User { id, .. } if self.roles_held(tenant, id).await?.contains(role) => {
                Ok(())
            }
            Standing::User { platform: true, .. }
                if giving && self.holders_of(tenant, role, 1).await?.is_empty() =>
            {
                Ok(())
            }
            Standing::User { .. } => Err(AppError::OwnerOnly),
        }
    }

    /// The definition of a role of the tenant (built in or defined there), read from the log.
    pub(crate) async fn role_definition(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<RoleDefinition, AppError> {
        let (state, _) = self.load::<RoleAggregate>(&role_key(tenant, role)).await?;
        state
            .current(role)
            .ok_or_else(|| AppError::UnknownRole(role.clone()))
    }

    /// Whether the caller may give `role` in the tenant (globally, locally on a record, as the
    /// role of an invitation or of self-registration): `role.<role>:assign`, the role exists,
    /// the owner rule, and the caller holds every permission of the role (global access if it
    /// has it), so that nobody gives a permission they do not hold.
    pub(crate) async fn may_give_role(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<(), AppError> {
        let permission =
            Permission::new(Resource::Role(role.clone()), Action::Assign).map_err(internal)?;
        self.permission(caller, tenant, &permission).await?;
        self.require_tenant(tenant).await?;
        let definition = self.role_definition(tenant, role).await?;
        self.check_owner_only(caller, tenant, role, true).await?;
        self.require_held(
            caller,
            tenant,
            definition.global_access,
            &definition.permissions,
        )
        .await
    }

    /// Taking `role` from `user`: nobody gives up their own owner role; only owners take the
    /// owner role. Returns whether it takes `user`'s administrator standing (`admin` or `owner`)
    /// away, so that the revocation must run under the tenant's admin guard, which keeps the
    /// last administrator ([`Core::guarded_admin_removal`]).
    pub(crate) async fn check_role_revocation(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
        role: &RoleName,
    ) -> Result<bool, AppError> {
        let me = match self.standing(caller)? {
            Standing::Operator => return Ok(false),
            Standing::User { id, .. } => id,
        };
        if role::is_protected(role) && me == user {
            return Err(AppError::CannotRemoveSelf);
        }
        self.check_owner_only(caller, tenant, role, false).await?;
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
    pub(crate) async fn check_member_removal(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<bool, AppError> {
        let me = match self.standing(caller)? {
            Standing::Operator => return Ok(false),
            Standing::User { id, .. } => id,
        };
        if me == user {
            return Err(AppError::CannotRemoveSelf);
        }
        let held = self.roles_held(tenant, user).await?;
        for role in held.iter().filter(|r| role::is_protected(r)) {
            self.check_owner_only(caller, tenant, role, false).await?;
        }
        Ok(held.iter().any(is_admin_role))
    }

    /// Suspending, deactivating or erasing `user`, which takes their standing away in every
    /// tenant: nobody does it to themselves; where they are an owner, only owners do it; and the
    /// tenants where they are an administrator, under whose admin guards it must run, are
    /// returned. Refuses at once where no other administrator is listed, before the command
    /// does anything else; the guard decides for good.
    pub(crate) async fn check_deactivation(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Vec<TenantId>, AppError> {
        let me = match self.standing(caller)? {
            Standing::Operator => return Ok(Vec::new()),
            Standing::User { id, .. } => id,
        };
        if me == user {
            return Err(AppError::CannotRemoveSelf);
        }
        self.catch_up().await?;
        let mut guarded = Vec::new();
        for tenant in self.directory().user_tenants(&user).map_err(internal)? {
            let held = self.roles_held(&tenant, user).await?;
            for role in held.iter().filter(|r| role::is_protected(r)) {
                self.check_owner_only(caller, &tenant, role, false).await?;
            }
            if held.iter().any(is_admin_role) {
                if self.other_admins(&tenant, user, 1).await?.is_empty() {
                    return Err(AppError::LastAdmin);
                }
                guarded.push(tenant);
            }
        }
        Ok(guarded)
    }
}
