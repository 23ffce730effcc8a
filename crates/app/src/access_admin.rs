//! Access administration: roles and their menus, entities with their fields, row-level
//! security, policies and field rules, and records (owners, grants, local roles).
//!
//! Every change is a command run through [`Core::execute`](crate::core::Core) on its
//! aggregate's stream: roles at `<tenant>.role.<name>`, entities at `<tenant>.entity.<name>`,
//! records at `<tenant>.record.<entity>:<record>`. Existence checks of roles and entities read
//! their own streams in the log (authoritative, no read model needed).
//!
//! Nobody gives a permission they do not hold (see `admin_rules`): a role may only be defined
//! or changed with permissions its author holds, a policy may only open to others what its
//! author may do, and a local role is given like a role.

use std::collections::BTreeSet;

use idstream_access::DueLapse;
use idstream_domain::access::entity::{EntityCommand, EntityError};
use idstream_domain::access::record::{RecordCommand, RecordRef};
use idstream_domain::access::role::{self, RoleCommand, RoleError};
use idstream_domain::access::{
    Action, EntityName, EntityPolicy, FieldName, MenuItem, Permission, PseudoRole, RecordAccess,
    RecordId, Resource, ResourceName,
};
use idstream_domain::aggregate::{
    EntityAggregate, MembershipAggregate, RecordAggregate, RoleAggregate, TenantAggregate,
};
use idstream_domain::membership::MembershipCommand;
use idstream_domain::tenant::TenantCommand;
use idstream_domain::{EventEnvelope, RoleName, TenantId, UserId};
use time::OffsetDateTime;

use crate::admin_rules::{entity_key, record_key, role_key};
use crate::core::{internal, membership_key, tenant_key};
use crate::policy::Caller;
use crate::{AppError, Outcome, service};

service!(
    /// Access administration: roles, entities, records.
    AccessAdmin
);

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

fn entity_not_found(e: AppError) -> AppError {
    match e {
        AppError::Entity(EntityError::NotFound) => AppError::EntityNotFound,
        other => other,
    }
}

/// The permissions a policy opens to others than a record's owner: `entity.<entity>:<action>`
/// for every action whose principals include a role or a pseudo-role other than `_CREATOR`.
fn opened_by(entity: &EntityName, policy: &EntityPolicy) -> Result<Vec<Permission>, AppError> {
    let actions = [
        (Action::Read, &policy.read),
        (Action::Create, &policy.create),
        (Action::Update, &policy.update),
        (Action::Delete, &policy.delete),
    ];
    let mut opened = Vec::new();
    for (action, principals) in actions {
        let to_others = principals.iter().any(|p| {
            !matches!(
                p,
                idstream_domain::access::Principal::Pseudo(PseudoRole::Creator)
            )
        });
        if to_others {
            opened.push(Permission::entity(entity, action).map_err(internal)?);
        }
    }
    Ok(opened)
}

/// The access difference a previewed command would make in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDifference {
    pub tenant: TenantId,
    /// The members whose access would change, by user id.
    pub members: Vec<idstream_access::preview::MemberDifference>,
}

impl AccessAdmin {
    /// What the caller's dry run decided: the events its command would append, and the access
    /// difference they would make, per tenant they touch (a tenant's own events there, a user's
    /// events in each tenant of the user). Decided on a copy of the access read model once it
    /// holds the whole log, by the fold and the checks of the read model itself.
    ///
    /// Who: the caller of a dry run, after its command was decided (by the command's own rule):
    /// the events are only those it was allowed to decide.
    pub async fn preview(
        &self,
        caller: &Caller,
    ) -> Result<(Vec<EventEnvelope>, Vec<TenantDifference>), AppError> {
        let events = caller
            .ctx()
            .dry_run_events()
            .ok_or_else(|| internal("a preview of a command that was not a dry run"))?;
        self.catch_up().await?;
        let mut tenants = BTreeSet::new();
        for event in &events {
            match &event.tenant {
                Some(tenant) => {
                    tenants.insert(tenant.clone());
                }
                None if event.aggregate.kind == idstream_domain::AggregateType::User => {
                    if let Ok(user) = event.aggregate.id.parse::<UserId>() {
                        tenants.extend(self.user_tenants(&user)?);
                    }
                }
                None => {}
            }
        }
        let now = self.now();
        let mut differences = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let relevant: Vec<EventEnvelope> = events
                .iter()
                .filter(|e| e.tenant.as_ref().is_none_or(|t| *t == tenant))
                .cloned()
                .collect();
            let members = self
                .access_view()
                .preview(&tenant, &relevant, now)
                .map_err(internal)?;
            differences.push(TenantDifference { tenant, members });
        }
        Ok((events, differences))
    }

    /// Defines a custom role in a tenant. Names are unique per tenant, the built-in ones
    /// included; a deleted role's name can be defined again.
    ///
    /// Who: `roles:create`, holding every permission given to the role (and global access to
    /// give it).
    pub async fn define_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: RoleName,
        request: RoleRequest,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "roles", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_held(caller, &tenant, request.global_access, &request.permissions)
            .await?;
        let key = role_key(&tenant, &name);
        // Defining again a name that was deleted: nobody may hold the new role by an assignment
        // of the old one that outlived it.
        let (state, _) = self.load::<RoleAggregate>(&key).await?;
        if state.deleted {
            self.revoke_leftover_holders(caller.ctx(), &tenant, &name)
                .await?;
        }
        let command = RoleCommand::Define {
            name,
            description: request.description,
            permissions: request.permissions,
            global_access: request.global_access,
        };
        self.execute::<RoleAggregate>(caller.ctx(), &key, "", command)
            .await
    }

    /// Replaces a role's definition (`owner` and `admin` cannot change; `user` can).
    ///
    /// Who: `roles:update`, holding every permission given to the role (and global access to
    /// give it): the role's holders get them.
    pub async fn update_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: RoleName,
        request: RoleRequest,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "roles", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_held(caller, &tenant, request.global_access, &request.permissions)
            .await?;
        let key = role_key(&tenant, &name);
        let command = RoleCommand::Update {
            name,
            description: request.description,
            permissions: request.permissions,
            global_access: request.global_access,
        };
        self.execute::<RoleAggregate>(caller.ctx(), &key, "", command)
            .await
    }

    /// Deletes a custom role. Built-in roles are never deleted; a role is refused while any
    /// member holds it or while it is the tenant's default role. Local roles on records, entity
    /// policies and field rules that name it are left as they are: a deleted role grants nothing,
    /// and they start to apply again if a role of that name is defined again.
    ///
    /// Who: roles:delete
    pub async fn delete_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: RoleName,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "roles", Action::Delete)
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
            .execute::<RoleAggregate>(
                caller.ctx(),
                &key,
                "",
                RoleCommand::Delete { name: name.clone() },
            )
            .await?;
        // An assignment that raced this deletion (decided before it, appended after the holders
        // were read above) is taken back now; one appended after the deletion is taken back by
        // its own command, which checks the role still exists.
        let cleaned = self
            .revoke_leftover_holders(caller.ctx(), &tenant, &name)
            .await?;
        Ok(Outcome {
            position: cleaned.map_or(outcome.position, |p| p.max(outcome.position)),
            ..outcome
        })
    }

    /// Sets the label people see for a role (empty: none): renaming a role for people, while
    /// its name, which permissions, policies, field rules and tokens use, stays as it is.
    ///
    /// Who: `roles:update` in the tenant.
    pub async fn relabel_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: RoleName,
        label: String,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "roles", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let key = role_key(&tenant, &name);
        let command = RoleCommand::Relabel { name, label };
        self.execute::<RoleAggregate>(caller.ctx(), &key, "", command)
            .await
    }

    /// Defines a resource of the tenant's own (`invoice_export`), which roles, custom
    /// permissions, API keys and menus may then name with the CRUD actions; defining it again
    /// changes its description.
    ///
    /// Who: `permissions:create` in the tenant.
    pub async fn define_resource(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: ResourceName,
        description: String,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "permissions", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        let command = TenantCommand::DefineResource { name, description };
        self.execute::<TenantAggregate>(caller.ctx(), &tenant_key(&tenant), "", command)
            .await
    }

    /// Removes a resource the tenant defined: its permissions, wherever they are still named,
    /// are denied to everyone from then on (until it is defined again).
    ///
    /// Who: `permissions:delete` in the tenant.
    pub async fn remove_resource(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: ResourceName,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "permissions", Action::Delete)
            .await?;
        self.require_tenant(&tenant).await?;
        let command = TenantCommand::RemoveResource { name };
        self.execute::<TenantAggregate>(caller.ctx(), &tenant_key(&tenant), "", command)
            .await
    }

    /// Copies a role's definition (description, permissions, global access and menu) from
    /// `from` to each tenant of `to`: defined there when the tenant has no role of that name,
    /// replaced when it has one (similar roles across tenants). Each tenant is decided on its
    /// own, with a result per tenant; `owner` and `admin` never change, so they are not copied.
    ///
    /// Who: platform administrators (the copy reaches beyond any one tenant).
    pub async fn copy_role(
        &self,
        caller: &Caller,
        from: &TenantId,
        name: &RoleName,
        to: &[TenantId],
    ) -> Result<Vec<(TenantId, Result<Outcome, AppError>)>, AppError> {
        self.platform_admin(caller).await?;
        self.require_tenant(from).await?;
        if matches!(name.as_str(), role::OWNER | role::ADMIN) {
            return Err(RoleError::BuiltIn.into());
        }
        // The definition as the log has it now: a change made a moment ago is copied too.
        self.catch_up().await?;
        let source = self
            .access_view()
            .role_record(from, name)
            .map_err(internal)?
            .ok_or(AppError::Role(RoleError::NotFound))?;
        let mut results = Vec::with_capacity(to.len());
        for (i, tenant) in to.iter().enumerate() {
            let caller = caller.scoped(&format!("copy{i}"));
            let request = RoleRequest {
                description: source.description.clone(),
                permissions: source.permissions.clone(),
                global_access: source.global_access,
            };
            let copied = async {
                self.require_tenant(tenant).await?;
                let (state, _) = self.load::<RoleAggregate>(&role_key(tenant, name)).await?;
                let mut outcome = if state.current(name).is_some() {
                    self.update_role(&caller, tenant.clone(), name.clone(), request)
                        .await?
                } else {
                    self.define_role(&caller, tenant.clone(), name.clone(), request)
                        .await?
                };
                let menu = self
                    .set_role_menu(
                        &caller.scoped("menu"),
                        tenant.clone(),
                        name.clone(),
                        source.menu.clone(),
                    )
                    .await?;
                outcome.position = outcome.position.max(menu.position);
                Ok(outcome)
            }
            .await;
            results.push((tenant.clone(), copied));
        }
        Ok(results)
    }

    /// Sets the menu of a role (an empty list removes it).
    ///
    /// Who: menus:update
    pub async fn set_role_menu(
        &self,
        caller: &Caller,
        tenant: TenantId,
        name: RoleName,
        menu: Vec<MenuItem>,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "menus", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        let key = role_key(&tenant, &name);
        self.execute::<RoleAggregate>(caller.ctx(), &key, "", RoleCommand::SetMenu { name, menu })
            .await
    }

    /// Registers an entity (a data type) in a tenant. Roles named in the policy must exist.
    ///
    /// Who: `entities:create`; a policy that opens an action to others than a record's owner
    /// needs that action on the entity.
    pub async fn register_entity(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        request: NewEntityRequest,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "entities", Action::Create)
            .await?;
        self.require_tenant(&tenant).await?;
        if let Some(policy) = &request.policy {
            self.require_held(caller, &tenant, false, &opened_by(&entity, policy)?)
                .await?;
            self.require_policy_roles(&tenant, policy).await?;
        }
        let command = EntityCommand::Register {
            fields: request.fields,
            rls: request.rls,
            policy: request.policy,
        };
        self.execute::<EntityAggregate>(caller.ctx(), &entity_key(&tenant, &entity), "", command)
            .await
    }

    /// Replaces an entity's field list; field rules on removed fields lapse.
    ///
    /// Who: fields:update
    pub async fn change_entity_fields(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        fields: Vec<FieldName>,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "fields", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.change_entity(
            caller,
            &tenant,
            &entity,
            EntityCommand::ChangeFields { fields },
        )
        .await
    }

    /// Sends a command to an existing entity of an existing tenant (checked by the caller).
    async fn change_entity(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        entity: &EntityName,
        command: EntityCommand,
    ) -> Result<Outcome, AppError> {
        self.execute::<EntityAggregate>(caller.ctx(), &entity_key(tenant, entity), "", command)
            .await
            .map_err(entity_not_found)
    }

    /// Turns row-level security of an entity on or off.
    ///
    /// Who: entities:update
    pub async fn set_entity_rls(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        enabled: bool,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "entities", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.change_entity(caller, &tenant, &entity, EntityCommand::SetRls { enabled })
            .await
    }

    /// Replaces an entity's policy. Roles named in it must exist.
    ///
    /// Who: `entities:update`; opening an action to others than a record's owner needs that
    /// action on the entity.
    pub async fn set_entity_policy(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        policy: EntityPolicy,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "entities", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_entity(&tenant, &entity).await?;
        self.require_held(caller, &tenant, false, &opened_by(&entity, &policy)?)
            .await?;
        self.require_policy_roles(&tenant, &policy).await?;
        self.change_entity(
            caller,
            &tenant,
            &entity,
            EntityCommand::SetPolicy { policy },
        )
        .await
    }

    /// Sets a role's field rules on an entity: hides exactly `hidden` fields from it and keeps
    /// it from searching or filtering by `unsearchable` ones (empty sets: no rule). The role
    /// must exist to get a rule; clearing the rules of a deleted role is allowed.
    ///
    /// Who: fields:update
    pub async fn set_field_rules(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        role: RoleName,
        hidden: BTreeSet<FieldName>,
        unsearchable: BTreeSet<FieldName>,
    ) -> Result<Outcome, AppError> {
        self.named_permission(caller, &tenant, "fields", Action::Update)
            .await?;
        self.require_tenant(&tenant).await?;
        self.require_entity(&tenant, &entity).await?;
        if !hidden.is_empty() || !unsearchable.is_empty() {
            self.require_role(&tenant, &role).await?;
        }
        let command = EntityCommand::HideFields {
            role,
            hidden,
            unsearchable,
        };
        self.change_entity(caller, &tenant, &entity, command).await
    }

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
    /// Who: entity.<entity>:update
    pub async fn set_record_owner(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        owner: UserId,
    ) -> Result<Outcome, AppError> {
        self.permission(
            caller,
            &tenant,
            &Permission::entity(&entity, Action::Update).map_err(internal)?,
        )
        .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, owner).await?;
        let key = record_key(&tenant, &at);
        self.execute::<RecordAggregate>(
            caller.ctx(),
            &key,
            "",
            RecordCommand::SetOwner { at, owner },
        )
        .await
    }

    /// Records the lapse of temporary access that has ended (roles, custom permissions, record
    /// grants and local roles whose `expires_at` has passed): one `RoleLapsed`,
    /// `PermissionsLapsed`, `RecordGrantLapsed` or `LocalRoleLapsed` per holding, carrying the
    /// exact end. Checks stopped honouring the access at its end already; this is for the trail
    /// and the listings. Safe on several replicas at once: each lapse is decided on its
    /// aggregate, and a replica that comes second finds nothing left to record. Returns how many
    /// aggregates were looked at (at most `limit`).
    ///
    /// Who: the operator (the service's own upkeep task).
    pub async fn record_lapses(&self, caller: &Caller, limit: usize) -> Result<usize, AppError> {
        self.platform_admin(caller).await?;
        let now = self.now();
        let due = self
            .access_view()
            .due_lapses(now, limit)
            .map_err(internal)?;
        for lapse in &due {
            match lapse {
                DueLapse::Membership { tenant, user } => {
                    let command = MembershipCommand::Lapse { user: *user, now };
                    self.execute::<MembershipAggregate>(
                        caller.ctx(),
                        &membership_key(tenant, *user),
                        "",
                        command,
                    )
                    .await?;
                }
                DueLapse::Record {
                    tenant,
                    entity,
                    record,
                } => {
                    let at = RecordRef {
                        entity: entity.clone(),
                        record: record.clone(),
                    };
                    let key = record_key(tenant, &at);
                    self.execute::<RecordAggregate>(
                        caller.ctx(),
                        &key,
                        "",
                        RecordCommand::Lapse { at, now },
                    )
                    .await?;
                }
            }
        }
        Ok(due.len())
    }

    /// Grants a member read-only or read-write access to one record, for good or until
    /// `expires_at` (a repeat changes nothing).
    ///
    /// Who: entity.<entity>:update
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_record_access(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        access: RecordAccess,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Outcome, AppError> {
        self.permission(
            caller,
            &tenant,
            &Permission::entity(&entity, Action::Update).map_err(internal)?,
        )
        .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, user).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::Grant {
            at,
            user,
            access,
            expires_at,
            now: self.now(),
        };
        self.execute::<RecordAggregate>(caller.ctx(), &key, "", command)
            .await
    }

    /// Withdraws a user's grant on one record. The user need not be a member any more: grants of
    /// people who left can be cleaned up.
    ///
    /// Who: entity.<entity>:update
    pub async fn revoke_record_access(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
    ) -> Result<Outcome, AppError> {
        self.permission(
            caller,
            &tenant,
            &Permission::entity(&entity, Action::Update).map_err(internal)?,
        )
        .await?;
        let at = self.record_at(&tenant, entity, record).await?;
        let key = record_key(&tenant, &at);
        self.execute::<RecordAggregate>(caller.ctx(), &key, "", RecordCommand::Revoke { at, user })
            .await
    }

    /// Gives a member a role on one record only (a local role). The role must exist, and only
    /// owners give the owner role, locally too.
    ///
    /// Who: as for giving the role in the tenant: `role.<role>:assign` and every permission
    /// of the role.
    #[allow(clippy::too_many_arguments)]
    pub async fn assign_local_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        role: RoleName,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Outcome, AppError> {
        self.may_give_role(caller, &tenant, &role).await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.require_member(&tenant, user).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::AssignLocalRole {
            at,
            user,
            role,
            expires_at,
            now: self.now(),
        };
        self.execute::<RecordAggregate>(caller.ctx(), &key, "", command)
            .await
    }

    /// Takes a local role from a user on one record. Neither membership nor the role's existence
    /// is required, so that what is left of deleted roles and departed members can be removed;
    /// only owners take the owner role.
    ///
    /// Who: role.<role>:revoke
    pub async fn revoke_local_role(
        &self,
        caller: &Caller,
        tenant: TenantId,
        entity: EntityName,
        record: RecordId,
        user: UserId,
        role: RoleName,
    ) -> Result<Outcome, AppError> {
        let permission =
            Permission::new(Resource::Role(role.clone()), Action::Revoke).map_err(internal)?;
        self.permission(caller, &tenant, &permission).await?;
        let at = self.record_at(&tenant, entity, record).await?;
        self.check_owner_only(caller, &tenant, &role, false).await?;
        let key = record_key(&tenant, &at);
        let command = RecordCommand::RevokeLocalRole { at, user, role };
        self.execute::<RecordAggregate>(caller.ctx(), &key, "", command)
            .await
    }
}
