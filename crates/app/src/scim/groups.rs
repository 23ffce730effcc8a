//! SCIM Groups: the tenant's roles, their holders as members.

use std::collections::BTreeSet;

use idstream_access::RoleRecord;
use idstream_domain::access::Action;
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_scim::{ListResponse, PatchRequest, RuleSet, ScimError, ScimType};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    Endpoint, GROUP_SCHEMA, ListQuery, MAX_GROUP_MEMBERS, Parsed, Scim, ScimResource, Shape,
    precondition,
};
use crate::core::internal;
use crate::policy::Caller;
use crate::{AppError, RoleRequest};

/// A role as a group: its name, label and holders (the first [`MAX_GROUP_MEMBERS`]).
struct Group {
    name: RoleName,
    label: String,
    members: Vec<UserId>,
}

impl Group {
    /// A digest of what the resource says, as a weak ETag.
    fn version(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.name.as_str());
        digest.update([0]);
        digest.update(self.label.as_bytes());
        for member in &self.members {
            digest.update([0]);
            digest.update(member.to_string());
        }
        format!("W/\"{}\"", hex::encode(&digest.finalize()[..10]))
    }

    fn resource(&self, endpoint: &Endpoint) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|user| {
                let id = user.to_string();
                json!({"value": id, "$ref": endpoint.location("Users", &id), "type": "User"})
            })
            .collect();
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": self.name.as_str(),
            "displayName": self.label,
            "members": members,
            "meta": {
                "resourceType": "Group",
                "version": self.version(),
                "location": endpoint.location("Groups", self.name.as_str()),
            },
        })
    }
}

/// A role name made of a display name: lower-case letters, digits, `-` and `_`, starting with a
/// letter (`Sales Team` → `sales-team`); `None` when nothing usable is left.
fn role_name_of(display_name: &str) -> Option<RoleName> {
    let mut name = String::new();
    for c in display_name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let name: String = name.chars().take(64).collect();
    name.trim_end_matches('-').parse().ok()
}

/// What a client wants a group to be.
struct DesiredGroup {
    label: String,
    members: BTreeSet<UserId>,
}

fn desired_group(resource: &Value) -> Result<DesiredGroup, AppError> {
    let invalid = |detail: String| AppError::Scim(ScimError::invalid_value(detail));
    let label = resource
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("displayName is required".into()))?
        .to_owned();
    let mut members = BTreeSet::new();
    match resource.get("members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) => {
            for value in values {
                let id = value
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("each member has a value: a User's id".into()))?;
                let user = id
                    .parse::<UserId>()
                    .map_err(|_| invalid(format!("no User {id} in the tenant")))?;
                members.insert(user);
            }
        }
        Some(_) => return Err(invalid("members is a list".into())),
    }
    Ok(DesiredGroup { label, members })
}

impl Scim {
    fn group(&self, tenant: &TenantId, role: RoleRecord) -> Result<Group, AppError> {
        let members = self.holders(tenant, &role.name, MAX_GROUP_MEMBERS)?;
        Ok(Group {
            label: role.label.unwrap_or_else(|| role.name.to_string()),
            name: role.name,
            members,
        })
    }

    fn require_group(&self, tenant: &TenantId, id: &str) -> Result<Group, AppError> {
        let not_found = || AppError::Scim(ScimError::new(404, None, "no such Group"));
        let name: RoleName = id.parse().map_err(|_| not_found())?;
        let role = self
            .access_view()
            .roles(tenant)
            .map_err(internal)?
            .into_iter()
            .find(|role| role.name == name)
            .ok_or_else(not_found)?;
        self.group(tenant, role)
    }

    fn group_resource(&self, group: &Group, endpoint: &Endpoint) -> ScimResource {
        ScimResource {
            body: group.resource(endpoint),
            version: group.version(),
            location: endpoint.location("Groups", group.name.as_str()),
        }
    }

    /// `GET /Groups/{id}`.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn get_group(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        shape: &Shape,
    ) -> Result<ScimResource, AppError> {
        let tenant = self.gate(caller, Action::Read).await?;
        let projection = shape.projection().map_err(AppError::Scim)?;
        self.catch_up_index().await?;
        let group = self.require_group(&tenant, id)?;
        let mut resource = self.group_resource(&group, endpoint);
        resource.body = projection.apply(&resource.body, &RuleSet::rfc7643());
        Ok(resource)
    }

    /// `GET /Groups` (and `POST /Groups/.search`): the tenant's roles matching the filter.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn list_groups(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        query: &ListQuery,
    ) -> Result<ListResponse, AppError> {
        let tenant = self.gate(caller, Action::Read).await?;
        let Parsed {
            filter,
            sort,
            paging,
            projection,
        } = query.parse().map_err(AppError::Scim)?;
        let rules = RuleSet::rfc7643();
        if let Some(filter) = &filter {
            filter.check(&rules).map_err(AppError::Scim)?;
        }
        self.catch_up_index().await?;
        let mut bodies = Vec::new();
        for role in self.access_view().roles(&tenant).map_err(internal)? {
            let body = self.group(&tenant, role)?.resource(endpoint);
            let keep = match &filter {
                Some(filter) => filter.matches(&body, &rules).map_err(AppError::Scim)?,
                None => true,
            };
            if keep {
                bodies.push(body);
            }
        }
        if let Some(sort) = &sort {
            bodies.sort_by(|a, b| sort.compare(a, b, &rules));
        }
        let bodies = bodies
            .iter()
            .map(|body| projection.apply(body, &rules))
            .collect();
        Ok(ListResponse::page(bodies, paging))
    }

    async fn catch_up_index(&self) -> Result<(), AppError> {
        crate::People(self.0.clone()).index_ready().await
    }

    /// `POST /Groups`: defines a role without permissions, named after the display name
    /// (`Sales Team` → `sales-team`, labelled `Sales Team`), and gives it to the members.
    ///
    /// Who: an API key of the tenant with `scim:update`, `roles:create` (and `roles:update` to
    /// label it), and `role.<role>:assign` for members.
    pub async fn create_group(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        body: &Value,
    ) -> Result<ScimResource, AppError> {
        let tenant = self.gate(caller, Action::Update).await?;
        let wanted = desired_group(body)?;
        let name = role_name_of(&wanted.label).ok_or_else(|| {
            AppError::Scim(ScimError::invalid_value(
                "displayName needs a letter to make the role's name of",
            ))
        })?;
        self.catch_up_index().await?;
        if let Some(user) = self.all_members(&tenant, &wanted.members)? {
            return Err(AppError::Scim(ScimError::invalid_value(format!(
                "no User {user} in the tenant"
            ))));
        }
        let admin = crate::AccessAdmin(self.0.clone());
        let exists = self
            .access_view()
            .roles(&tenant)
            .map_err(internal)?
            .iter()
            .any(|role| role.name == name);
        if exists {
            return Err(AppError::Scim(ScimError::of(
                ScimType::Uniqueness,
                format!("a Group {name} exists"),
            )));
        }
        let request = RoleRequest {
            description: "Provisioned through SCIM".into(),
            permissions: BTreeSet::new(),
            global_access: false,
        };
        let mut last = admin
            .define_role(caller, tenant.clone(), name.clone(), request)
            .await
            .map_err(|error| match error {
                AppError::Role(idstream_domain::access::role::RoleError::AlreadyExists) => {
                    AppError::Scim(ScimError::of(
                        ScimType::Uniqueness,
                        format!("a Group {name} exists"),
                    ))
                }
                other => other,
            })?
            .position;
        if wanted.label != name.as_str() {
            last = last.max(
                admin
                    .relabel_role(
                        &caller.scoped("label"),
                        tenant.clone(),
                        name.clone(),
                        wanted.label.clone(),
                    )
                    .await?
                    .position,
            );
        }
        self.wait_for(last).await?;
        let last = self
            .change_members(caller, &tenant, &name, &wanted.members, &BTreeSet::new())
            .await?;
        self.wait_for(last).await?;
        let group = self.require_group(&tenant, name.as_str())?;
        Ok(self.group_resource(&group, endpoint))
    }

    /// Gives `role` to `add` and takes it from `remove`; refuses users who are not members.
    async fn change_members(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
        add: &BTreeSet<UserId>,
        remove: &BTreeSet<UserId>,
    ) -> Result<Position, AppError> {
        if add.is_empty() && remove.is_empty() {
            return Ok(0);
        }
        if let Some(user) = self.all_members(tenant, add)? {
            return Err(AppError::Scim(ScimError::invalid_value(format!(
                "no User {user} in the tenant"
            ))));
        }
        let add: Vec<UserId> = add.iter().copied().collect();
        let remove: Vec<UserId> = remove.iter().copied().collect();
        let people = crate::People(self.0.clone());
        let mut last = 0;
        for chunk in add.chunks(crate::people::MAX_BULK) {
            let step = self.members_step(&people, caller, tenant, role, chunk, &[]);
            last = last.max(step.await?);
        }
        for chunk in remove.chunks(crate::people::MAX_BULK) {
            let step = self.members_step(&people, caller, tenant, role, &[], chunk);
            last = last.max(step.await?);
        }
        Ok(last)
    }

    async fn members_step(
        &self,
        people: &crate::People,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
        add: &[UserId],
        remove: &[UserId],
    ) -> Result<Position, AppError> {
        let results = people
            .change_role_members(caller, tenant, role, add, remove, None)
            .await?;
        let mut last = 0;
        for result in results {
            match result.outcome {
                Ok(Some(outcome)) => last = last.max(outcome.position),
                Ok(None) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(last)
    }

    /// The group `id`, checked against `if_match`, for a change.
    async fn changing_group(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(TenantId, Group), AppError> {
        let tenant = self.gate(caller, Action::Update).await?;
        self.catch_up_index().await?;
        let group = self.require_group(&tenant, id)?;
        precondition(if_match, &group.version())?;
        Ok((tenant, group))
    }

    async fn make_group(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        tenant: &TenantId,
        group: Group,
        wanted: DesiredGroup,
    ) -> Result<ScimResource, AppError> {
        let mut last = 0;
        if wanted.label != group.label {
            let admin = crate::AccessAdmin(self.0.clone());
            last = admin
                .relabel_role(
                    &caller.scoped("label"),
                    tenant.clone(),
                    group.name.clone(),
                    wanted.label.clone(),
                )
                .await?
                .position;
        }
        let current: BTreeSet<UserId> = group.members.iter().copied().collect();
        let add = wanted.members.difference(&current).copied().collect();
        let remove = current.difference(&wanted.members).copied().collect();
        last = last.max(
            self.change_members(caller, tenant, &group.name, &add, &remove)
                .await?,
        );
        self.wait_for(last).await?;
        let group = self.require_group(tenant, group.name.as_str())?;
        Ok(self.group_resource(&group, endpoint))
    }

    /// `PUT /Groups/{id}`: the role's label and holders become what the resource says.
    ///
    /// Who: an API key of the tenant with `scim:update`, `roles:update` to relabel,
    /// `role.<role>:assign` and `:revoke` for the members.
    pub async fn replace_group(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<ScimResource, AppError> {
        let (tenant, group) = self.changing_group(caller, id, if_match).await?;
        let wanted = desired_group(body)?;
        self.make_group(caller, endpoint, &tenant, group, wanted)
            .await
    }

    /// `PATCH /Groups/{id}`: the operations applied to the group's resource (members added and
    /// removed as Entra ID and Okta send them), then the role made what the result says.
    ///
    /// Who: as [`Scim::replace_group`].
    pub async fn patch_group(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<ScimResource, AppError> {
        let (tenant, group) = self.changing_group(caller, id, if_match).await?;
        let patch = PatchRequest::parse(body).map_err(AppError::Scim)?;
        let patched = patch
            .apply(&group.resource(endpoint), &RuleSet::rfc7643())
            .map_err(AppError::Scim)?;
        let wanted = desired_group(&patched)?;
        self.make_group(caller, endpoint, &tenant, group, wanted)
            .await
    }

    /// `DELETE /Groups/{id}`: takes the role from its holders (a person left without a role
    /// leaves the tenant), then deletes it. Built-in roles and the tenant's default role stay.
    ///
    /// Who: an API key of the tenant with `scim:update`, `role.<role>:revoke` and
    /// `roles:delete`.
    pub async fn delete_group(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), AppError> {
        let (tenant, group) = self.changing_group(caller, id, if_match).await?;
        let admin = crate::AccessAdmin(self.0.clone());
        let role = self
            .access_view()
            .roles(&tenant)
            .map_err(internal)?
            .into_iter()
            .find(|role| role.name == group.name);
        let default_role = self.tenant_now(&tenant)?.settings.default_role;
        if role.as_ref().is_some_and(|role| role.built_in) || group.name == default_role {
            return Err(AppError::Scim(ScimError::mutability(format!(
                "Group {} is a built-in role or the tenant's default role, which stays",
                group.name
            ))));
        }
        if group.members.len() >= MAX_GROUP_MEMBERS {
            return Err(AppError::Scim(ScimError::of(
                ScimType::TooMany,
                format!(
                    "Group {} has too many members to be deleted at once",
                    group.name
                ),
            )));
        }
        let holders: BTreeSet<UserId> = group.members.iter().copied().collect();
        let last = self
            .change_members(caller, &tenant, &group.name, &BTreeSet::new(), &holders)
            .await?;
        self.wait_for(last).await?;
        let outcome = admin
            .delete_role(&caller.scoped("delete"), tenant, group.name)
            .await?;
        self.wait_for(outcome.position).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_becomes_a_role_name() {
        let name = |text: &str| role_name_of(text).map(|n| n.to_string());
        assert_eq!(name("Sales Team").as_deref(), Some("sales-team"));
        assert_eq!(name("  R&D / Europe ").as_deref(), Some("r-d-europe"));
        assert_eq!(name("2024 Interns").as_deref(), Some("interns"));
        assert_eq!(name("ops_oncall").as_deref(), Some("ops_oncall"));
        assert_eq!(name("Équipe").as_deref(), Some("quipe"));
        assert_eq!(name("!!!"), None);
        assert_eq!(name("123"), None);
        assert_eq!(name(&"a".repeat(100)).map(|n| n.len()), Some(64));
    }

    #[test]
    fn a_group_sent_by_a_client_needs_a_display_name_and_user_ids() {
        let user = UserId::new(ulid::Ulid::from_parts(1, 1));
        let wanted = desired_group(&json!({
            "displayName": " Sales ",
            "members": [{"value": user.to_string()}],
        }))
        .unwrap();
        assert_eq!(wanted.label, "Sales");
        assert_eq!(wanted.members, BTreeSet::from([user]));
        for body in [
            json!({"members": []}),
            json!({"displayName": "S", "members": [{"display": "x"}]}),
            json!({"displayName": "S", "members": [{"value": "not-an-id"}]}),
            json!({"displayName": "S", "members": "x"}),
        ] {
            assert!(
                matches!(desired_group(&body), Err(AppError::Scim(e)) if e.status == 400),
                "{body}"
            );
        }
    }

    #[test]
    fn a_group_s_version_changes_with_its_label_or_members() {
        let user = UserId::new(ulid::Ulid::from_parts(1, 1));
        let group = |label: &str, members: Vec<UserId>| Group {
            name: "sales".parse().unwrap(),
            label: label.into(),
            members,
        };
        let base = group("Sales", vec![]).version();
        assert_eq!(base, group("Sales", vec![]).version());
        assert_ne!(base, group("Sales EU", vec![]).version());
        assert_ne!(base, group("Sales", vec![user]).version());
        assert!(base.starts_with("W/\""));
    }
}
