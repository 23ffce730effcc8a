//! Provisioning through SCIM 2.0 (RFC 7643, RFC 7644): the users and groups of one tenant as
//! SCIM resources, for the identity providers (Okta, Microsoft Entra ID, OneLogin…) and HR
//! suites that push people to a SCIM endpoint.
//!
//! - **Who.** An API key of the tenant (the key names the tenant: a provisioning client is bound
//!   to one) holding `scim:read` to read and `scim:update` to change. Every change is then made
//!   by the same operation the HTTP API uses, with the same authorization (`users:create`,
//!   `users:update`, `role.<role>:assign`…), the same events (their actor is the key, so the
//!   trail says which provisioning client did it) and the same uniqueness of addresses across
//!   replicas.
//! - **Users** are the tenant's members: `userName` is their email address; `name`,
//!   `displayName`, `emails`, `phoneNumbers`, `preferredLanguage`, `active` (deactivation),
//!   `externalId` (kept per tenant), `groups` (their roles, read-only), the tenant's user
//!   attributes in the extension [`ATTRIBUTES_SCHEMA`] and those named like the enterprise
//!   extension's attributes there ([`ENTERPRISE_ATTRIBUTES`]). A created user gets the tenant's
//!   default role (a member holds at least one role); `DELETE` removes the membership, never the
//!   identity.
//! - **Groups** are the tenant's roles: `id` is the role's name, `displayName` its label,
//!   `members` its holders. A created group is a role without permissions.
//! - `meta.version` is a weak ETag: for users the log position of the last change of the person
//!   or their membership, for groups a digest of what the resource says. `If-Match` is honoured
//!   on every change.
//!
//! The protocol itself (filters, sorting, paging, projections, PATCH) is `idstream_scim`'s; this
//! module maps resources to idstream's read models and changes to its operations.

mod bulk;
mod groups;
mod schemas;
mod users;

use idstream_domain::TenantId;
use idstream_domain::access::Action;
use idstream_scim::{Filter, Paging, Projection, ScimError, Sort};
use serde_json::Value;

use crate::identity::Credential;
use crate::policy::Caller;
use crate::{AppError, service};

pub use bulk::{BulkOperationRequest, BulkRequest, BulkResponse, BulkResult, MAX_BULK_OPERATIONS};
pub use schemas::{ATTRIBUTES_SCHEMA, ENTERPRISE_ATTRIBUTES, MAX_PAYLOAD_BYTES};

service!(
    /// Provisioning through SCIM 2.0.
    Scim
);

pub use idstream_scim::path::ENTERPRISE_USER_SCHEMA as ENTERPRISE_SCHEMA;
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most resources one page of a list holds (`count` above it is lowered to it).
pub const MAX_RESULTS: usize = 1_000;
/// The most members a group's resource lists.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// Where the SCIM endpoints are served, for `meta.location` and `$ref`s: the service's public
/// address followed by `/scim/v2`, without a trailing slash.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: String,
}

impl Endpoint {
    pub fn location(&self, kind: &str, id: &str) -> String {
        format!("{}/{kind}/{id}", self.base)
    }
}

/// The query of a list (`GET /Users`, `GET /Groups`, or a `POST /.search` body), as given.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// A [`ListQuery`] read.
pub(crate) struct Parsed {
    pub filter: Option<Filter>,
    pub sort: Option<Sort>,
    pub paging: Paging,
    pub projection: Projection,
}

impl ListQuery {
    pub(crate) fn parse(&self) -> Result<Parsed, ScimError> {
        let filter = match self.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Filter::parse(text)?),
        };
        Ok(Parsed {
            filter,
            sort: Sort::parse(self.sort_by.as_deref(), self.sort_order.as_deref())?,
            paging: Paging::parse(
                self.start_index.as_deref(),
                self.count.as_deref(),
                MAX_RESULTS,
            )?,
            projection: Projection::parse(
                self.attributes.as_deref(),
                self.excluded_attributes.as_deref(),
            )?,
        })
    }
}

/// `attributes`/`excludedAttributes` of a single resource's answer.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl Shape {
    pub(crate) fn projection(&self) -> Result<Projection, ScimError> {
        Projection::parse(
            self.attributes.as_deref(),
            self.excluded_attributes.as_deref(),
        )
    }
}

/// One resource as answered, with its version (a weak ETag) and location.
#[derive(Debug, Clone)]
pub struct ScimResource {
    pub body: Value,
    pub version: String,
    pub location: String,
}

/// The weak ETag of a log position.
pub(crate) fn version_of(position: u64) -> String {
    format!("W/\"{position}\"")
}

/// Whether `if_match` (an `If-Match` header's value) lets a change of a resource whose version
/// is `version` go ahead: absent, `*`, or a list holding the version (weak comparison).
pub(crate) fn precondition(if_match: Option<&str>, version: &str) -> Result<(), AppError> {
    let Some(header) = if_match.map(str::trim) else {
        return Ok(());
    };
    let strip = |tag: &str| -> String { tag.trim().trim_start_matches("W/").to_owned() };
    let wanted = strip(version);
    if header == "*" || header.split(',').any(|tag| strip(tag) == wanted) {
        Ok(())
    } else {
        Err(AppError::PreconditionFailed)
    }
}

impl Scim {
    /// The tenant of a provisioning caller: an API key, holding `scim:<action>` in its tenant.
    pub(crate) async fn gate(&self, caller: &Caller, action: Action) -> Result<TenantId, AppError> {
        let Some(auth) = caller.authenticated() else {
            return Err(AppError::Unauthenticated);
        };
        if !matches!(auth.via, Credential::ApiKey { .. }) {
            return Err(AppError::ScimKeyRequired);
        }
        let tenant = auth.tenant.clone();
        self.named_permission(caller, &tenant, "scim", action)
            .await?;
        self.require_tenant(&tenant).await?;
        Ok(tenant)
    }

    /// `GET /ServiceProviderConfig`.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn service_provider_config(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
    ) -> Result<Value, AppError> {
        self.gate(caller, Action::Read).await?;
        Ok(schemas::service_provider_config(endpoint))
    }

    /// `GET /ResourceTypes`.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn resource_types(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
    ) -> Result<Vec<Value>, AppError> {
        self.gate(caller, Action::Read).await?;
        Ok(schemas::resource_types(endpoint))
    }

    /// `GET /Schemas`: the tenant's, with its user attributes.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn schemas(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
    ) -> Result<Vec<Value>, AppError> {
        let tenant = self.gate(caller, Action::Read).await?;
        let view = self.tenant_now(&tenant)?;
        Ok(schemas::schemas(endpoint, &view.attributes))
    }
}

/// The two resource collections, for callers that serve both alike (the HTTP routes, bulk
/// operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Users,
    Groups,
}

impl Collection {
    /// The collection a path segment names (`Users`, `Groups`).
    pub fn named(segment: &str) -> Option<Collection> {
        match segment {
            "Users" => Some(Collection::Users),
            "Groups" => Some(Collection::Groups),
            _ => None,
        }
    }
}

/// The operations on either collection: each calls the collection's own, with its own rules.
impl Scim {
    pub async fn list(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        collection: Collection,
        query: &ListQuery,
    ) -> Result<idstream_scim::ListResponse, AppError> {
        match collection {
            Collection::Users => self.list_users(caller, endpoint, query).await,
            Collection::Groups => self.list_groups(caller, endpoint, query).await,
        }
    }

    pub async fn get(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        collection: Collection,
        id: &str,
        shape: &Shape,
    ) -> Result<ScimResource, AppError> {
        match collection {
            Collection::Users => self.get_user(caller, endpoint, id, shape).await,
            Collection::Groups => self.get_group(caller, endpoint, id, shape).await,
        }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        collection: Collection,
        body: &Value,
    ) -> Result<ScimResource, AppError> {
        match collection {
            Collection::Users => self.create_user(caller, endpoint, body).await,
            Collection::Groups => self.create_group(caller, endpoint, body).await,
        }
    }

    /// PUT (`patch` false) or PATCH (`patch` true) of one resource of `collection`.
    pub async fn change(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        (collection, patch): (Collection, bool),
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<ScimResource, AppError> {
        match (collection, patch) {
            (Collection::Users, false) => {
                self.replace_user(caller, endpoint, id, body, if_match)
                    .await
            }
            (Collection::Users, true) => {
                self.patch_user(caller, endpoint, id, body, if_match).await
            }
            (Collection::Groups, false) => {
                self.replace_group(caller, endpoint, id, body, if_match)
                    .await
            }
            (Collection::Groups, true) => {
                self.patch_group(caller, endpoint, id, body, if_match).await
            }
        }
    }

    pub async fn delete(
        &self,
        caller: &Caller,
        collection: Collection,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), AppError> {
        match collection {
            Collection::Users => self.delete_user(caller, id, if_match).await,
            Collection::Groups => self.delete_group(caller, id, if_match).await,
        }
    }
}
