//! Access queries, answered by the access read model: checks, batch checks, explanations,
//! readable records, visible fields, the entity CRUD summary, roles, entities, a member's
//! effective permissions and menu.
//!
//! The subject of a question is a user or `anonymous`; omitted, it is the caller (an API key's
//! owner). Asking about oneself needs standing in the tenant; asking about anyone else needs
//! `permissions:read` there. An API key asking about its own owner asks about itself: checks,
//! batch checks and explanations are narrowed to its restriction.

use std::collections::BTreeSet;

use idstream_access::{EntityPermissions, EntityRecord, Explanation, ReadableRecords, RoleRecord};
use idstream_domain::access::role::RoleError;
use idstream_domain::access::{
    Action, CheckRequest, Decision, EntityName, FieldVisibility, MenuItem, Permission, RecordId,
    Subject,
};
use idstream_domain::{RoleName, TenantId, UserId};

use crate::core::internal;
use crate::policy::{Caller, named};
use crate::{AppError, service};

service!(
    /// Access queries: checks, explanations, roles, entities, effective permissions.
    AccessQueries
);

/// One permission a tenant knows, for a matrix editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub permission: Permission,
    /// `standard`, `admin`, `service`, `entity` or `role`.
    pub kind: &'static str,
    pub description: String,
}

/// What each named resource is about, for the catalogue's descriptions.
fn resource_words(resource: &str) -> &'static str {
    match resource {
        "documentation" => "the documentation pages",
        "entities" => "the entity registry (which entities exist, their fields and policies)",
        "fields" => "entity fields and field rules",
        "workflows" => "workflows",
        "modules" => "modules",
        "files" => "files",
        "menus" => "role menus",
        "roles" => "role definitions",
        "permissions" => "members' custom permissions and effective permissions",
        "users" => "users and memberships (the directory, inviting, suspending, removing)",
        "settings" => "the tenant's settings",
        "audit" => "the audit trail, access reviews and point-in-time replays",
        _ => "this resource",
    }
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::Read => "Read",
        Action::Create => "Create",
        Action::Update => "Update",
        Action::Delete => "Delete",
        Action::Assign => "Give",
        Action::Revoke => "Take",
    }
}

/// One check as the API receives it.
#[derive(Debug, Clone)]
pub struct CheckQuery {
    pub tenant: TenantId,
    /// `None`: the caller (an API key's owner).
    pub subject: Option<Subject>,
    pub permission: Permission,
    pub record: Option<RecordId>,
}

/// A question's subject and the restriction its answer is narrowed to.
struct Asked {
    subject: Subject,
    restriction: Option<BTreeSet<Permission>>,
}

impl AccessQueries {
    /// The subject (the caller when omitted) and the restriction, if the caller may ask.
    async fn asked(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        subject: Option<Subject>,
    ) -> Result<Asked, AppError> {
        self.any_signed_in(caller)?;
        let subject = match subject {
            Some(subject) => subject,
            None => Subject::User(caller.user_id().ok_or(AppError::SubjectRequired)?),
        };
        let restriction = self.subject(caller, tenant, subject).await?.flatten();
        self.require_known_tenant(tenant)?;
        Ok(Asked {
            subject,
            restriction,
        })
    }

    /// The tenant must exist; answered from the access model's cached facts, so a check pays no
    /// read-model lookup for it.
    fn require_known_tenant(&self, tenant: &TenantId) -> Result<(), AppError> {
        if self.access_view().tenant_exists(tenant).map_err(internal)? {
            Ok(())
        } else {
            Err(AppError::TenantNotFound)
        }
    }

    fn request<'a>(
        &self,
        query: &'a CheckQuery,
        asked: &'a Asked,
        record: Option<&'a RecordId>,
    ) -> CheckRequest<'a> {
        CheckRequest {
            tenant: &query.tenant,
            subject: asked.subject,
            permission: &query.permission,
            record,
            restriction: asked.restriction.as_ref(),
            now: self.now(),
        }
    }

    /// Decides one check.
    ///
    /// Who: see the module documentation.
    pub async fn check(&self, caller: &Caller, query: &CheckQuery) -> Result<Decision, AppError> {
        let asked = self.asked(caller, &query.tenant, query.subject).await?;
        self.access_view()
            .check(self.request(query, &asked, query.record.as_ref()))
            .map_err(internal)
    }

    /// Decides one permission on many records of an entity.
    ///
    /// Who: see the module documentation.
    pub async fn check_many(
        &self,
        caller: &Caller,
        query: &CheckQuery,
        records: &[RecordId],
    ) -> Result<Vec<Decision>, AppError> {
        let asked = self.asked(caller, &query.tenant, query.subject).await?;
        records
            .iter()
            .map(|record| {
                self.access_view()
                    .check(self.request(query, &asked, Some(record)))
                    .map_err(internal)
            })
            .collect()
    }

    /// Decides one check and names the facts and events that decided it.
    ///
    /// Who: see the module documentation.
    pub async fn explain(
        &self,
        caller: &Caller,
        query: &CheckQuery,
    ) -> Result<Explanation, AppError> {
        let asked = self.asked(caller, &query.tenant, query.subject).await?;
        self.access_view()
            .explain(self.request(query, &asked, query.record.as_ref()))
            .map_err(internal)
    }

    /// `{"read","create","update","delete"}` of an entity for a subject. Without a tenant, the
    /// caller's own (a session's or an API key's tenant).
    ///
    /// Who: see the module documentation.
    pub async fn entity_permissions(
        &self,
        caller: &Caller,
        tenant: Option<TenantId>,
        subject: Option<Subject>,
        entity: &EntityName,
    ) -> Result<EntityPermissions, AppError> {
        self.any_signed_in(caller)?;
        let tenant = match tenant {
            Some(tenant) => tenant,
            None => caller
                .authenticated()
                .map(|auth| auth.tenant.clone())
                .ok_or(AppError::TenantRequired)?,
        };
        let asked = self.asked(caller, &tenant, subject).await?;
        self.access_view()
            .entity_permissions(&tenant, asked.subject, entity, self.now())
            .map_err(internal)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The records of an entity a subject may read, a page at a time.
    ///
    /// Who: see the module documentation.
    pub async fn readable_records(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        subject: Option<Subject>,
        entity: &EntityName,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<ReadableRecords, AppError> {
        let asked = self.asked(caller, tenant, subject).await?;
        self.access_view()
            .readable_records(tenant, asked.subject, entity, after, limit, self.now())
            .map_err(internal)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The fields of an entity a subject may see.
    ///
    /// Who: see the module documentation.
    pub async fn visible_fields(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        subject: Option<Subject>,
        entity: &EntityName,
    ) -> Result<Vec<String>, AppError> {
        Ok(self
            .field_visibility(caller, tenant, subject, entity)
            .await?
            .readable)
    }

    /// The fields of an entity the subject may see, and those it may search and filter by.
    ///
    /// Who: as for [`AccessQueries::visible_fields`].
    pub async fn field_visibility(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        subject: Option<Subject>,
        entity: &EntityName,
    ) -> Result<FieldVisibility, AppError> {
        let asked = self.asked(caller, tenant, subject).await?;
        self.access_view()
            .field_visibility(tenant, asked.subject, entity, self.now())
            .map_err(internal)?
            .ok_or(AppError::EntityNotFound)
    }

    /// The roles of a tenant.
    ///
    /// Who: `roles:read` in the tenant.
    pub async fn roles(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<RoleRecord>, AppError> {
        self.named_permission(caller, tenant, "roles", Action::Read)
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view().roles(tenant).map_err(internal)
    }

    /// `roles:read` or `permissions:read` in the tenant, which exists: who reads what
    /// permissions a tenant knows (its resources, the catalogue).
    async fn permission_reader(&self, caller: &Caller, tenant: &TenantId) -> Result<(), AppError> {
        self.any_permission(
            caller,
            tenant,
            &[
                named("roles", Action::Read),
                named("permissions", Action::Read),
            ],
        )
        .await?;
        self.require_known_tenant(tenant)
    }

    /// The resources the tenant defined for its own permissions.
    ///
    /// Who: `roles:read` or `permissions:read` in the tenant.
    pub async fn resources(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<idstream_access::ResourceRecord>, AppError> {
        self.permission_reader(caller, tenant).await?;
        self.access_view().resources(tenant).map_err(internal)
    }

    /// Every permission the tenant knows, for editors of role and permission matrices: the
    /// standard, administrative and service resources and the tenant's own with their CRUD
    /// actions, each registered entity's CRUD, giving and taking each role (built in or defined
    /// here) and administering its holders, each with a description.
    ///
    /// Who: `roles:read` or `permissions:read` in the tenant.
    pub async fn permission_catalogue(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<CatalogueEntry>, AppError> {
        self.permission_reader(caller, tenant).await?;
        use idstream_domain::access::Resource;
        use idstream_domain::access::model::{
            ADMIN_RESOURCES, SERVICE_RESOURCES, STANDARD_RESOURCES,
        };
        let mut entries = Vec::new();
        for (kind, resources) in [
            ("standard", STANDARD_RESOURCES),
            ("admin", ADMIN_RESOURCES),
            ("service", SERVICE_RESOURCES),
        ] {
            for resource in resources {
                for action in Action::CRUD {
                    entries.push(CatalogueEntry {
                        permission: Permission::new(Resource::Named(resource), action)
                            .map_err(internal)?,
                        kind,
                        description: format!(
                            "{} {}",
                            action_words(action),
                            resource_words(resource)
                        ),
                    });
                }
            }
        }
        for resource in self.access_view().resources(tenant).map_err(internal)? {
            for action in Action::CRUD {
                entries.push(CatalogueEntry {
                    permission: Permission::new(Resource::Custom(resource.name.clone()), action)
                        .map_err(internal)?,
                    kind: "custom",
                    description: format!(
                        "{} {} (a resource of this tenant: {})",
                        action_words(action),
                        resource.name,
                        resource.description
                    ),
                });
            }
        }
        for entity in self.access_view().entities(tenant).map_err(internal)? {
            for action in Action::CRUD {
                entries.push(CatalogueEntry {
                    permission: Permission::new(Resource::Entity(entity.name.clone()), action)
                        .map_err(internal)?,
                    kind: "entity",
                    description: format!(
                        "{} records of the entity {} (row- and field-level security apply)",
                        action_words(action),
                        entity.name
                    ),
                });
            }
        }
        for role in self.access_view().roles(tenant).map_err(internal)? {
            for action in [Action::Assign, Action::Revoke] {
                entries.push(CatalogueEntry {
                    permission: Permission::new(Resource::Role(role.name.clone()), action)
                        .map_err(internal)?,
                    kind: "role",
                    description: format!(
                        "{} the role {} {} members (giving it also needs every permission it carries)",
                        action_words(action),
                        role.name,
                        if action == Action::Assign { "to" } else { "from" }
                    ),
                });
            }
            for (action, words) in [
                (
                    Action::Update,
                    "Administer (suspend, reinstate, deactivate, reactivate, end sessions, unlock, edit profiles)",
                ),
                (Action::Delete, "Remove from the tenant or erase"),
            ] {
                entries.push(CatalogueEntry {
                    permission: Permission::new(Resource::Members(role.name.clone()), action)
                        .map_err(internal)?,
                    kind: "members",
                    description: format!(
                        "{words} the members who hold the role {} (those whose every role is covered so, and whose custom permissions the caller holds)",
                        role.name
                    ),
                });
            }
        }
        Ok(entries)
    }

    /// One role of a tenant.
    ///
    /// Who: `roles:read` in the tenant.
    pub async fn role(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<RoleRecord, AppError> {
        self.named_permission(caller, tenant, "roles", Action::Read)
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view()
            .role_record(tenant, role)
            .map_err(internal)?
            .ok_or(AppError::Role(RoleError::NotFound))
    }

    /// The entities of a tenant.
    ///
    /// Who: `entities:read` in the tenant.
    pub async fn entities(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<EntityRecord>, AppError> {
        self.named_permission(caller, tenant, "entities", Action::Read)
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view().entities(tenant).map_err(internal)
    }

    /// The tenant's entities, for those who administer them (the console's records screen,
    /// where their records' access is managed).
    ///
    /// Who: `entities:update` in the tenant.
    pub async fn administered_entities(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<Vec<EntityRecord>, AppError> {
        self.named_permission(caller, tenant, "entities", Action::Update)
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view().entities(tenant).map_err(internal)
    }

    /// Who holds what on one record now: its owner, and each person's grant and local roles,
    /// with the events that established them (for the console's record page).
    ///
    /// Who: entity.<entity>:update (those who manage the record's grants).
    pub async fn record_holders(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
    ) -> Result<idstream_access::RecordHolders, AppError> {
        self.permission(
            caller,
            tenant,
            &Permission::entity(entity, Action::Update).map_err(internal)?,
        )
        .await?;
        self.require_tenant(tenant).await?;
        self.require_entity(tenant, entity).await?;
        self.access_view()
            .record_holders(tenant, entity, record, self.now())
            .map_err(internal)
    }

    /// One entity of a tenant.
    ///
    /// Who: `entities:read` in the tenant.
    pub async fn entity(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        entity: &EntityName,
    ) -> Result<EntityRecord, AppError> {
        self.named_permission(caller, tenant, "entities", Action::Read)
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view()
            .entity_record(tenant, entity)
            .map_err(internal)?
            .ok_or(AppError::EntityNotFound)
    }

    /// A member's effective permissions: global access, and the union of role and custom
    /// permissions (nothing for anyone who is not a member).
    ///
    /// Who: the user themselves, or `permissions:read` or `users:read` in the tenant.
    pub async fn effective_permissions(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<(bool, BTreeSet<Permission>), AppError> {
        self.about_member(caller, tenant, user, &Self::about_members())
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view()
            .effective_permissions(tenant, &user)
            .map_err(internal)
    }

    /// A member's menu, merged from their roles' menus.
    ///
    /// Who: the user themselves, or `permissions:read` or `users:read` in the tenant.
    pub async fn menu(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        user: UserId,
    ) -> Result<Vec<MenuItem>, AppError> {
        self.about_member(caller, tenant, user, &Self::about_members())
            .await?;
        self.require_known_tenant(tenant)?;
        self.access_view()
            .menu(tenant, &user, self.now())
            .map_err(internal)
    }

    fn about_members() -> [Permission; 2] {
        [
            named("permissions", Action::Read),
            named("users", Action::Read),
        ]
    }
}
