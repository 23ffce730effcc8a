//! Tenants: creating and renaming them, reading them, and their settings.

use std::collections::BTreeMap;

use idstream_directory::TenantView;
use idstream_domain::TenantId;
use idstream_domain::access::Action;
use idstream_domain::access::role;
use idstream_domain::aggregate::TenantAggregate;
use idstream_domain::attributes::AttributeDefinition;
use idstream_domain::tenant::{TenantCommand, TenantError, TenantSettings};

use crate::core::{internal, tenant_key};
use crate::policy::{Caller, TenantScope};
use crate::{AppError, Outcome, service};

service!(
    /// Tenants (the seed systems' projects or organisations) and their settings.
    Tenants
);

pub(crate) fn tenant_not_found(e: AppError) -> AppError {
    match e {
        AppError::Tenant(TenantError::NotFound) => AppError::TenantNotFound,
        other => other,
    }
}

impl Tenants {
    /// Creates a tenant with the built-in roles.
    ///
    /// Who: platform administrators.
    pub async fn create(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: String,
    ) -> Result<Outcome, AppError> {
        self.platform_admin(caller).await?;
        self.execute::<TenantAggregate>(
            caller.ctx(),
            &tenant_key(&tenant),
            "",
            TenantCommand::Create { name },
        )
        .await
    }

    /// Renames a tenant.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn rename(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: String,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.execute::<TenantAggregate>(
            caller.ctx(),
            &tenant_key(&tenant),
            "",
            TenantCommand::Rename { name },
        )
        .await
        .map_err(tenant_not_found)
    }

    /// A tenant.
    ///
    /// Who: anyone with standing in it (its members, its API keys, platform administrators).
    pub async fn get(&self, caller: &Caller, tenant: &TenantId) -> Result<TenantView, AppError> {
        self.tenant_standing(caller, tenant).await?;
        self.tenant_now(tenant)
    }

    /// Up to `limit` tenants after `after`, in id order: the caller's own (an API key's: its
    /// tenant), every tenant for platform administrators.
    ///
    /// Who: anyone signed in.
    pub fn list(
        &self,
        caller: &Caller,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantView>, AppError> {
        match self.tenant_scope(caller)? {
            TenantScope::Every => self.directory().tenants(after, limit).map_err(internal),
            TenantScope::Only(mut tenants) => {
                tenants.sort();
                tenants
                    .into_iter()
                    .filter(|t| after.is_none_or(|after| t > after))
                    .take(limit)
                    .map(|t| self.tenant_now(&t))
                    .collect()
            }
        }
    }

    /// The user attributes the tenant defines, by name.
    ///
    /// Who: anyone with standing in the tenant (members see what they may fill in).
    pub async fn attributes(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<BTreeMap<String, AttributeDefinition>, AppError> {
        self.tenant_standing(caller, tenant).await?;
        Ok(self.tenant_now(tenant)?.attributes)
    }

    /// Defines a user attribute of the tenant's own, or replaces its definition. Values already
    /// held stay; those that do not fit a changed definition are no longer shown.
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn define_attribute(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: String,
        definition: AttributeDefinition,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let command = TenantCommand::DefineAttribute { name, definition };
        self.execute::<TenantAggregate>(caller.ctx(), &tenant_key(&tenant), "", command)
            .await
            .map_err(tenant_not_found)
    }

    /// Removes a user attribute: its values are no longer shown or searched anywhere (they stay
    /// in the log, and show again if it is defined again with a type they fit).
    ///
    /// Who: `settings:update` in the tenant.
    pub async fn remove_attribute(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: String,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let command = TenantCommand::RemoveAttribute { name };
        self.execute::<TenantAggregate>(caller.ctx(), &tenant_key(&tenant), "", command)
            .await
            .map_err(tenant_not_found)
    }

    /// A tenant's settings.
    ///
    /// Who: `settings:read` in the tenant.
    pub async fn settings(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<TenantSettings, AppError> {
        self.named_permission(caller, tenant, "settings", Action::Read)
            .await?;
        Ok(self.tenant_now(tenant)?.settings)
    }

    /// Replaces a tenant's settings. The default role must exist in the tenant, must not be
    /// `owner` (self-registration would hand out the role only owners may give), and must be a
    /// role the caller could give: self-registration hands it to anyone.
    ///
    /// Who: `settings:update` in the tenant, and `role.<default role>:assign` with every
    /// permission of that role when the default role changes.
    pub async fn change_settings(
        &self,
        caller: &Caller,
        tenant: TenantId,
        settings: TenantSettings,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "settings", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        settings.validate()?;
        if role::is_protected(&settings.default_role) {
            return Err(AppError::ProtectedDefaultRole);
        }
        self.require_role(&tenant, &settings.default_role).await?;
        let (current, _) = self.load::<TenantAggregate>(&tenant_key(&tenant)).await?;
        if current.settings.default_role != settings.default_role {
            self.may_give_role(caller, &tenant, &settings.default_role)
                .await?;
        }
        self.execute::<TenantAggregate>(
            caller.ctx(),
            &tenant_key(&tenant),
            "",
            TenantCommand::ChangeSettings { settings },
        )
        .await
        .map_err(tenant_not_found)
    }
}
