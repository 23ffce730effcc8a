//! Memberships: who belongs to a tenant and with what: roles, custom permissions, removal.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use idstream_domain::access::{Action, Permission, Resource};
use idstream_domain::aggregate::MembershipAggregate;
use idstream_domain::membership::MembershipCommand;
use idstream_domain::{RoleName, TenantId, UserId};

use crate::core::{internal, membership_key};
use crate::policy::{Caller, named};
use crate::{AppError, Outcome, service};

service!(
    /// Memberships of tenants: roles, custom permissions, removal, member listings.
    Memberships
);

impl Memberships {
    /// The roles `user` holds in the tenant (none for anyone who is not a member, whether or not
    /// such a user exists).
    ///
    /// Who: the user themselves, or `users:read` or `permissions:read` in the tenant.
    pub async fn roles(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<BTreeSet<RoleName>, AppError> {
        self.about_member(
            caller,
            tenant,
            user,
            &[
                named("users", Action::Read),
                named("permissions", Action::Read),
            ],
        )
        .await?;
        self.tenant_now(tenant)?;
        Ok(self
            .directory()
            .membership(tenant, &user)
            .map_err(internal)?
            .map(|m| m.roles)
            .unwrap_or_default())
    }

    /// Gives a user a role in a tenant: a built-in role or one defined there. Only owners give
    /// the owner role (a platform administrator too, where the tenant has no owner), and nobody
    /// gives a role with a permission they do not hold (F-AZ-7).
    ///
    /// With `expires_at`, the role is temporary: checks stop honouring it at that moment and
    /// its lapse is recorded afterwards; giving a held role again with another end (or none)
    /// changes its end.
    ///
    /// Who: `role.<role>:assign` in the tenant and every permission of the role.
    pub async fn assign_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        role: RoleName,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Outcome, AppError> {
        self.may_give_role(caller, &tenant, &role).await?;
        self.require_user_exists(user).await?;
        let outcome = self
            .execute::<MembershipAggregate>(
                caller.ctx(),
                &membership_key(&tenant, user),
                "",
                MembershipCommand::Assign {
                    user,
                    role: role.clone(),
                    expires_at,
                    now: self.now(),
                },
            )
            .await?;
        self.confirm_assigned_role(caller.ctx(), &tenant, user, &role)
            .await?;
        Ok(outcome)
    }

    /// Takes a role from a user in a tenant, keeping the admin rules of F-AZ-7: nobody gives up
    /// their own owner role, only owners take it, and the last admin stays one.
    ///
    /// Who: `role.<role>:revoke` in the tenant.
    pub async fn revoke_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        let permission =
            Permission::new(Resource::Role(role.clone()), Action::Revoke).map_err(internal)?;
        self.permission(caller, &tenant, &permission).await?;
        self.require_tenant(&tenant).await?;
        let guarded = if self
            .check_role_revocation(caller, &tenant, user, &role)
            .await?
        {
            vec![tenant.clone()]
        } else {
            Vec::new()
        };
        let key = membership_key(&tenant, user);
        let revocation = self.execute::<MembershipAggregate>(
            caller.ctx(),
            &key,
            "",
            MembershipCommand::Revoke { user, role },
        );
        self.guarded_admin_removal(caller.ctx(), &guarded, user, revocation)
            .await
    }

    /// Gives a user custom permissions in a tenant, on top of their roles (those held already
    /// with the same end are ignored), for good or until `expires_at`. A user who was not a
    /// member becomes one.
    ///
    /// Who: `permissions:create` in the tenant, holding every permission given.
    pub async fn grant_permissions(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        permissions: BTreeSet<Permission>,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "permissions", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_held(caller, &tenant, false, &permissions)
            .await?;
        self.require_user_exists(user).await?;
        self.execute::<MembershipAggregate>(
            caller.ctx(),
            &membership_key(&tenant, user),
            "",
            MembershipCommand::GrantPermissions {
                user,
                permissions,
                expires_at,
                now: self.now(),
            },
        )
        .await
    }

    /// Takes custom permissions from a user in a tenant (those not held are ignored).
    ///
    /// Who: `permissions:delete` in the tenant.
    pub async fn revoke_permissions(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
        permissions: BTreeSet<Permission>,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "permissions", Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_user_exists(user).await?;
        self.execute::<MembershipAggregate>(
            caller.ctx(),
            &membership_key(&tenant, user),
            "",
            MembershipCommand::RevokePermissions { user, permissions },
        )
        .await
    }

    /// Removes a user from a tenant: every role and custom permission there. The user's
    /// identity and their other tenants are untouched. Keeps the admin rules of F-AZ-7.
    ///
    /// Who: `users:delete` in the tenant, or `members.<role>:delete` for every role the user holds
    /// there (and every custom permission they hold there).
    pub async fn remove(
        &self,
        caller: &Caller,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.over_member(caller, &tenant, user, Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        let guarded = if self.check_member_removal(caller, &tenant, user).await? {
            vec![tenant.clone()]
        } else {
            Vec::new()
        };
        let key = membership_key(&tenant, user);
        let removal = self.execute::<MembershipAggregate>(
            caller.ctx(),
            &key,
            "",
            MembershipCommand::Remove { user },
        );
        self.guarded_admin_removal(caller.ctx(), &guarded, user, removal)
            .await
    }
}
