//! SCIM Users: the tenant's members.

use std::collections::{BTreeMap, BTreeSet};

use idstream_directory::search::{
    EXTERNAL_ID, Field, FieldMatch, FieldOp, FoldedRow, Scope, Search, SearchPage,
    Sort as DirectorySort, SortColumn, USER_NAME, user_name_key,
};
use idstream_directory::{MembershipView, TenantView, UserStatus, UserView};
use idstream_domain::access::Action;
use idstream_domain::attributes::{AttributeDefinition, AttributeType};
use idstream_domain::user::Profile;
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use idstream_scim::{
    AttrPath, CompareOp, Filter, ListResponse, PatchRequest, RuleSet, ScimError, ScimType, Sort,
    SortOrder,
};
use serde_json::{Map, Value, json};

use super::schemas::{enterprise_name, rules};
use super::{
    ATTRIBUTES_SCHEMA, ENTERPRISE_SCHEMA, Endpoint, ListQuery, Parsed, Scim, ScimResource, Shape,
    USER_SCHEMA, precondition, version_of,
};
use crate::core::internal;
use crate::policy::Caller;
use crate::{AppError, NewUserRequest};

/// The most candidates a filter the directory's index cannot answer exactly is checked against,
/// one by one; a broader one is refused (400 `tooMany`) and asks for a narrower filter.
pub const MAX_CANDIDATES: usize = 50_000;

/// Threads that read a page of people at once ([`Scim::members_of`]), each a share of at least
/// [`MIN_PER_READER`] people.
const READERS: usize = 8;
const MIN_PER_READER: usize = 8;

/// A member as the read models have them.
pub(crate) struct Member {
    pub view: UserView,
    pub membership: MembershipView,
}

impl Member {
    fn version(&self) -> String {
        version_of(self.view.position.max(self.membership.position))
    }
}

/// What a client wants a person to be: what a created, replaced or patched resource says.
#[derive(Debug, Clone, PartialEq)]
struct Desired {
    /// The email address: the primary (or first) of `emails`, else `userName`.
    email: String,
    /// `userName` when it is not the address (then it is kept as the tenant's name for them).
    user_name: Option<String>,
    first_name: String,
    last_name: String,
    phone: Option<String>,
    /// One of the service's languages; `None` keeps the person's choice.
    language: Option<String>,
    active: bool,
    external_id: Option<String>,
    /// Every attribute the tenant defines: its value, or `None` for none.
    attributes: BTreeMap<String, Option<Value>>,
}

fn text(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The value of a multi-valued attribute a client means: the primary one, else the first.
fn primary_value(resource: &Value, name: &str) -> Option<String> {
    let values = resource.get(name)?.as_array()?;
    let chosen = values
        .iter()
        .find(|v| v.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| values.first())?;
    text(chosen.get("value")).map(str::to_owned)
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A value given for a tenant attribute, as its definition's type wants it: SCIM clients send
/// numbers and booleans as text.
fn attribute_value(definition: &AttributeDefinition, value: &Value) -> Value {
    match (definition.kind, value) {
        (AttributeType::Number, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        (AttributeType::Boolean, v) => boolean(v).map_or_else(|| value.clone(), Value::Bool),
        _ => value.clone(),
    }
}

/// Reads a user resource a client sent.
fn desired(
    resource: &Value,
    definitions: &BTreeMap<String, AttributeDefinition>,
) -> Result<Desired, AppError> {
    let invalid = |detail: &str| AppError::Scim(ScimError::invalid_value(detail));
    if !resource.is_object() {
        return Err(AppError::Scim(ScimError::invalid_syntax(
            "a User is a JSON object",
        )));
    }
    let user_name = text(resource.get("userName"))
        .ok_or_else(|| invalid("userName is required"))?
        .to_owned();
    let email = primary_value(resource, "emails").unwrap_or_else(|| user_name.clone());
    let user_name = (!user_name.eq_ignore_ascii_case(&email)).then_some(user_name);
    let name = resource.get("name");
    let mut first_name = text(name.and_then(|n| n.get("givenName"))).unwrap_or_default();
    let last_name = text(name.and_then(|n| n.get("familyName"))).unwrap_or_default();
    if first_name.is_empty() && last_name.is_empty() {
        first_name = text(resource.get("displayName"))
            .or_else(|| text(name.and_then(|n| n.get("formatted"))))
            .unwrap_or_default();
    }
    let active = match resource.get("active") {
        None | Some(Value::Null) => true,
        Some(value) => boolean(value).ok_or_else(|| invalid("active is true or false"))?,
    };
    let external_id = match resource.get("externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.trim().to_owned()).filter(|id| !id.is_empty()),
        Some(_) => return Err(invalid("externalId is a string")),
    };
    let language = text(resource.get("preferredLanguage")).and_then(|tag| {
        let primary = tag.split(['-', '_', ',', ';']).next()?.to_ascii_lowercase();
        idstream_domain::tenant::LANGUAGES
            .contains(&primary.as_str())
            .then_some(primary)
    });
    if let Some(extension) = resource.get(ATTRIBUTES_SCHEMA).and_then(Value::as_object)
        && let Some(unknown) = extension.keys().find(|name| {
            !definitions.contains_key(name.as_str()) || enterprise_name(name).is_some()
        })
    {
        return Err(invalid(&format!(
            "the tenant defines no user attribute {unknown:?} (its attributes are in {ATTRIBUTES_SCHEMA})"
        )));
    }
    let mut attributes = BTreeMap::new();
    for (name, definition) in definitions {
        let (urn, key) = match enterprise_name(name) {
            Some(scim) => (ENTERPRISE_SCHEMA, scim),
            None => (ATTRIBUTES_SCHEMA, name.as_str()),
        };
        let value = resource
            .get(urn)
            .and_then(|extension| extension.get(key))
            .filter(|v| !v.is_null())
            .map(|v| attribute_value(definition, v));
        attributes.insert(name.clone(), value);
    }
    Ok(Desired {
        email,
        user_name,
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        // RFC 7643 §4.1.2 suggests RFC 3966 `tel:` URIs.
        phone: primary_value(resource, "phoneNumbers").map(|phone| {
            phone
                .strip_prefix("tel:")
                .map(|rest| rest.split(';').next().unwrap_or(rest).to_owned())
                .unwrap_or(phone)
        }),
        language,
        active,
        external_id,
        attributes,
    })
}

fn full_name(view: &UserView) -> String {
    match (view.first_name.is_empty(), view.last_name.is_empty()) {
        (false, false) => format!("{} {}", view.first_name, view.last_name),
        (false, true) => view.first_name.clone(),
        (true, false) => view.last_name.clone(),
        (true, true) => view.email.clone(),
    }
}

fn rfc3339(at: time::OffsetDateTime) -> Value {
    at.format(&time::format_description::well_known::Rfc3339)
        .map_or(Value::Null, Value::String)
}

/// The resource of a member.
pub(crate) fn user_resource(
    member: &Member,
    tenant: &TenantView,
    labels: &BTreeMap<RoleName, String>,
    endpoint: &Endpoint,
    now: time::OffsetDateTime,
) -> Value {
    let view = &member.view;
    let id = view.id.to_string();
    let mut resource = Map::new();
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    resource.insert("id".into(), Value::from(id.clone()));
    if let Some(external) = view.external_ids.get(&tenant.id) {
        resource.insert("externalId".into(), Value::from(external.clone()));
    }
    let user_name = view.user_names.get(&tenant.id).unwrap_or(&view.email);
    resource.insert("userName".into(), Value::from(user_name.clone()));
    let mut name = Map::new();
    if !view.first_name.is_empty() || !view.last_name.is_empty() {
        name.insert("formatted".into(), Value::from(full_name(view)));
    }
    if !view.first_name.is_empty() {
        name.insert("givenName".into(), Value::from(view.first_name.clone()));
    }
    if !view.last_name.is_empty() {
        name.insert("familyName".into(), Value::from(view.last_name.clone()));
    }
    if !name.is_empty() {
        resource.insert("name".into(), Value::Object(name));
    }
    resource.insert("displayName".into(), Value::from(full_name(view)));
    resource.insert(
        "emails".into(),
        json!([{"value": view.email, "type": "work", "primary": true}]),
    );
    if let Some(phone) = &view.phone {
        resource.insert(
            "phoneNumbers".into(),
            json!([{"value": phone, "type": "work", "primary": true}]),
        );
    }
    if let Some(language) = &view.language {
        resource.insert("preferredLanguage".into(), Value::from(language.clone()));
    }
    resource.insert(
        "active".into(),
        Value::Bool(view.status_at(now) != UserStatus::Inactive),
    );
    let groups: Vec<Value> = member
        .membership
        .roles
        .iter()
        .map(|role| {
            json!({
                "value": role.as_str(),
                "display": labels.get(role).map_or(role.as_str(), String::as_str),
                "$ref": endpoint.location("Groups", role.as_str()),
            })
        })
        .collect();
    if !groups.is_empty() {
        resource.insert("groups".into(), Value::Array(groups));
    }
    let values = view.attributes.get(&tenant.id);
    let mut enterprise = Map::new();
    let mut extension = Map::new();
    for (name, value) in values.into_iter().flatten() {
        if value.is_null() || !tenant.attributes.contains_key(name) {
            continue;
        }
        match enterprise_name(name) {
            Some(scim) => enterprise.insert(scim.into(), value.clone()),
            None => extension.insert(name.clone(), value.clone()),
        };
    }
    if !enterprise.is_empty() {
        schemas.push(Value::from(ENTERPRISE_SCHEMA));
        resource.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    }
    if !extension.is_empty() {
        schemas.push(Value::from(ATTRIBUTES_SCHEMA));
        resource.insert(ATTRIBUTES_SCHEMA.into(), Value::Object(extension));
    }
    resource.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(view.created_at),
            "lastModified": rfc3339(view.updated_at.unwrap_or(view.created_at)),
            "version": member.version(),
            "location": endpoint.location("Users", &id),
        }),
    );
    resource.insert("schemas".into(), Value::Array(schemas));
    Value::Object(resource)
}

/// What the directory's index can narrow a filter that has no [`lookups`] to: the status and
/// a text search; `exact` when the index answers it alone. `field` when the filter is one
/// comparison of the address, user name or a name (and `active` at most): the index compares
/// that field as SCIM does for everyone whose fields fold to their lower case
/// ([`FieldMatch`]), and narrows the others as the text search does.
#[derive(Debug, Default)]
struct Narrow {
    active: Option<bool>,
    text: Option<String>,
    exact: bool,
    field: Option<(Field, FieldOp, String)>,
}

/// The field and comparison the index makes of `path op value`, if it makes it.
fn field_match(path: &AttrPath, op: CompareOp, value: &str) -> Option<(Field, FieldOp, String)> {
    let field = if is(path, "userName", None) {
        Field::UserName
    } else if is(path, "emails", None) || is(path, "emails", Some("value")) {
        Field::Email
    } else if is(path, "name", Some("givenName")) {
        Field::FirstName
    } else if is(path, "name", Some("familyName")) {
        Field::LastName
    } else {
        return None;
    };
    let op = match op {
        CompareOp::Eq => FieldOp::Equals,
        CompareOp::Sw => FieldOp::StartsWith,
        CompareOp::Co => FieldOp::Contains,
        CompareOp::Ew => FieldOp::EndsWith,
        _ => return None,
    };
    Some((field, op, value.to_owned()))
}

/// A lookup naming a few people at most.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    Id(String),
    /// The provisioned user name, or the address of someone without one.
    UserName(String),
    Email(String),
    ExternalId(String),
}

/// Lookups whose people include every match of `filter`, if it has such a bound: an `eq` on
/// `id`, `userName`, an address or `externalId`; one of the `and`ed conditions that has one; or
/// every branch of an `or` having one.
fn lookups(filter: &Filter) -> Option<Vec<Lookup>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(s),
        } => {
            let lookup = if is(path, "id", None) {
                Lookup::Id(s.clone())
            } else if is(path, "userName", None) {
                Lookup::UserName(s.clone())
            } else if is(path, "externalId", None) {
                Lookup::ExternalId(s.clone())
            } else if is(path, "emails", Some("value")) || is(path, "emails", None) {
                Lookup::Email(s.clone())
            } else {
                return None;
            };
            Some(vec![lookup])
        }
        Filter::ValuePath { path, filter } if is(path, "emails", None) => {
            value_eq(filter).map(|email| vec![Lookup::Email(email)])
        }
        Filter::And(parts) => parts.iter().find_map(lookups),
        Filter::Or(parts) => {
            let mut all = Vec::new();
            for part in parts {
                all.extend(lookups(part)?);
            }
            Some(all)
        }
        _ => None,
    }
}

fn is(path: &AttrPath, name: &str, sub: Option<&str>) -> bool {
    let core = path
        .urn
        .as_deref()
        .is_none_or(|urn| urn.eq_ignore_ascii_case(USER_SCHEMA));
    core && path.name.eq_ignore_ascii_case(name)
        && match (sub, &path.sub_attr) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
}

/// An attribute whose text the index's text search covers (anywhere in the email or the name,
/// case- and accent-insensitively).
fn searchable_text(path: &AttrPath) -> bool {
    is(path, "userName", None)
        || is(path, "displayName", None)
        || is(path, "name", Some("givenName"))
        || is(path, "name", Some("familyName"))
        || is(path, "name", Some("formatted"))
        || is(path, "emails", Some("value"))
        || is(path, "emails", None)
}

/// The text a value filter pins `value` to with `eq` (alone or among `and`ed conditions).
fn value_eq(filter: &Filter) -> Option<String> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(s),
        } if path.urn.is_none()
            && path.sub_attr.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            Some(s.clone())
        }
        Filter::And(parts) => parts.iter().find_map(value_eq),
        _ => None,
    }
}

fn narrow(filter: &Filter) -> Narrow {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if is(path, "active", None) && boolean(value).is_some() => Narrow {
            active: boolean(value),
            exact: true,
            ..Narrow::default()
        },
        Filter::Compare {
            path,
            op: op @ (CompareOp::Eq | CompareOp::Sw | CompareOp::Co | CompareOp::Ew),
            value: Value::String(s),
        } if searchable_text(path) && !s.trim().is_empty() => Narrow {
            text: Some(s.trim().to_owned()),
            field: field_match(path, *op, s),
            ..Narrow::default()
        },
        Filter::And(parts) => {
            let mut all = Narrow {
                exact: true,
                ..Narrow::default()
            };
            let mut field = None;
            for part in parts {
                let one = narrow(part);
                // Exact but for its one field comparison, which the index makes.
                all.exact &= one.exact || one.field.is_some();
                if let Some(text) = one.text {
                    if all.text.is_some() {
                        all.exact = false;
                    } else {
                        all.text = Some(text);
                        field = one.field;
                    }
                }
                if let Some(active) = one.active {
                    if all.active.is_some() {
                        all.exact = false;
                    } else {
                        all.active = Some(active);
                    }
                }
            }
            if all.text.is_some() {
                if all.exact {
                    all.field = field;
                }
                all.exact = false;
            }
            all
        }
        _ => Narrow::default(),
    }
}

/// Whether every attribute `filter` names is one [`light_resource`] holds as the full resource
/// does: the address, the names and `active`.
fn light_filter(filter: &Filter) -> bool {
    let light = |path: &AttrPath| {
        is(path, "userName", None)
            || is(path, "displayName", None)
            || is(path, "name", Some("givenName"))
            || is(path, "name", Some("familyName"))
            || is(path, "name", Some("formatted"))
            || is(path, "emails", None)
            || is(path, "emails", Some("value"))
            || is(path, "active", None)
    };
    match filter {
        Filter::Compare { path, .. } | Filter::Present(path) => light(path),
        Filter::And(parts) | Filter::Or(parts) => parts.iter().all(light_filter),
        Filter::Not(inner) => light_filter(inner),
        Filter::ValuePath { .. } => false,
    }
}

/// The attributes of a user resource that [`light_filter`] allows, made of the index's folded
/// fields (the originals' lower case, for a [`FoldedRow::plain`] person without a provisioned
/// user name): a filter on them decides as on the full resource.
fn light_resource(row: &FoldedRow) -> Value {
    let (first, last) = (&*row.first, &*row.last);
    let full = match (first.is_empty(), last.is_empty()) {
        (false, false) => format!("{first} {last}"),
        (false, true) => first.to_owned(),
        (true, false) => last.to_owned(),
        (true, true) => row.email.to_string(),
    };
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "userName": &*row.email,
        "displayName": full,
        "emails": [{"value": &*row.email, "type": "work", "primary": true}],
        "active": row.status != UserStatus::Inactive,
    });
    let mut name = Map::new();
    if !first.is_empty() || !last.is_empty() {
        name.insert("formatted".into(), Value::from(full.clone()));
    }
    if !first.is_empty() {
        name.insert("givenName".into(), Value::from(first));
    }
    if !last.is_empty() {
        name.insert("familyName".into(), Value::from(last));
    }
    if !name.is_empty() {
        resource["name"] = Value::Object(name);
    }
    resource
}

/// The directory order a SCIM `sortBy` maps to, if any.
fn directory_sort(sort: Option<&Sort>) -> Option<DirectorySort> {
    let Some(sort) = sort else {
        return Some(DirectorySort {
            column: SortColumn::CreatedAt,
            descending: false,
        });
    };
    let column = if is(&sort.by, "userName", None)
        || is(&sort.by, "emails", Some("value"))
        || is(&sort.by, "emails", None)
    {
        SortColumn::Email
    } else if is(&sort.by, "name", Some("givenName")) {
        SortColumn::FirstName
    } else if is(&sort.by, "name", Some("familyName")) {
        SortColumn::LastName
    } else if is(&sort.by, "meta", Some("created")) {
        SortColumn::CreatedAt
    } else {
        return None;
    };
    Some(DirectorySort {
        column,
        descending: sort.order == SortOrder::Descending,
    })
}

const LISTED: [UserStatus; 4] = [
    UserStatus::Invited,
    UserStatus::Active,
    UserStatus::Suspended,
    UserStatus::Inactive,
];

impl Scim {
    /// The member `id` of `tenant`, if it is one (an erased person is none).
    pub(crate) fn member(&self, tenant: &TenantId, id: &str) -> Result<Option<Member>, AppError> {
        let Ok(user) = id.parse::<UserId>() else {
            return Ok(None);
        };
        let Some(membership) = self
            .directory()
            .membership(tenant, &user)
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let Some(view) = self.directory().user(&user).map_err(internal)? else {
            return Ok(None);
        };
        if view.status == UserStatus::Erased {
            return Ok(None);
        }
        Ok(Some(Member { view, membership }))
    }

    /// The members of `tenant` among `ids`, in their order (those who are not are left out).
    /// A page of people is read [`READERS`] at a time on threads of their own: for people read
    /// for the first time, each is a few reads from disk (their view, their membership, their
    /// key), which then overlap instead of following one another.
    fn members_of(&self, tenant: &TenantId, ids: &[UserId]) -> Result<Vec<Member>, AppError> {
        let read = |ids: &[UserId]| -> Result<Vec<Member>, AppError> {
            let mut members = Vec::with_capacity(ids.len());
            for id in ids {
                members.extend(self.member(tenant, &id.to_string())?);
            }
            Ok(members)
        };
        let per_reader = ids.len().div_ceil(READERS).max(MIN_PER_READER);
        if ids.len() <= per_reader {
            return read(ids);
        }
        // The readers see the service's runtime, as the calling thread does, for a key store
        // that must be waited on (`PersonalKeys::for_reading_now`).
        let runtime = tokio::runtime::Handle::try_current().ok();
        let parts = std::thread::scope(|scope| {
            let readers: Vec<_> = ids
                .chunks(per_reader)
                .map(|part| {
                    let runtime = runtime.clone();
                    scope.spawn(move || {
                        let _entered = runtime.as_ref().map(|runtime| runtime.enter());
                        read(part)
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|reader| {
                    reader
                        .join()
                        .unwrap_or_else(|_| Err(internal("a reader of the page stopped")))
                })
                .collect::<Vec<_>>()
        });
        let mut members = Vec::with_capacity(ids.len());
        for part in parts {
            members.extend(part?);
        }
        Ok(members)
    }

    fn require_member(&self, tenant: &TenantId, id: &str) -> Result<Member, AppError> {
        self.member(tenant, id)?
            .ok_or_else(|| AppError::Scim(ScimError::new(404, None, "no such User")))
    }

    /// The labels of the tenant's roles (their names when they have none).
    pub(crate) fn role_labels(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<RoleName, String>, AppError> {
        Ok(self
            .access_view()
            .roles(tenant)
            .map_err(internal)?
            .into_iter()
            .map(|role| {
                let label = role.label.unwrap_or_else(|| role.name.to_string());
                (role.name, label)
            })
            .collect())
    }

    fn resource_of(
        &self,
        member: &Member,
        tenant: &TenantView,
        endpoint: &Endpoint,
    ) -> Result<ScimResource, AppError> {
        let labels = self.role_labels(&tenant.id)?;
        Ok(ScimResource {
            body: user_resource(member, tenant, &labels, endpoint, self.now()),
            version: member.version(),
            location: endpoint.location("Users", &member.view.id.to_string()),
        })
    }

    /// `GET /Users/{id}`.
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn get_user(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        shape: &Shape,
    ) -> Result<ScimResource, AppError> {
        let tenant = self.gate(caller, Action::Read).await?;
        let projection = shape.projection().map_err(AppError::Scim)?;
        let view = self.tenant_now(&tenant)?;
        let member = self.require_member(&tenant, id)?;
        let mut resource = self.resource_of(&member, &view, endpoint)?;
        resource.body = projection.apply(&resource.body, &rules(&view.attributes));
        Ok(resource)
    }

    /// `GET /Users` (and `POST /Users/.search`): the members matching the filter, sorted and
    /// paged. Filters on `id`, `userName`, `externalId` and `active` (and `and`s of them) are
    /// answered by the directory's index alone, and so is one `eq`, `sw`, `co` or `ew` of the
    /// user name, address, given or family name (with `active` at most) when everyone it finds
    /// has fields that fold to their lower case ([`FieldMatch`]); other text comparisons of the
    /// name and address (and the people such a comparison leaves undecided) are narrowed by
    /// its text search and checked one by one; anything else is checked against every member,
    /// up to [`MAX_CANDIDATES`].
    ///
    /// Who: an API key of the tenant with `scim:read`.
    pub async fn list_users(
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
        let view = self.tenant_now(&tenant)?;
        let rules = rules(&view.attributes);
        if let Some(filter) = &filter {
            filter.check(&rules).map_err(AppError::Scim)?;
        }
        let labels = self.role_labels(&tenant)?;
        let now = self.now();
        let resource = |member: &Member| user_resource(member, &view, &labels, endpoint, now);
        let narrow = filter.as_ref().map(narrow).unwrap_or(Narrow {
            exact: true,
            ..Narrow::default()
        });
        let matches = |body: &Value| -> Result<bool, AppError> {
            match &filter {
                Some(filter) => filter.matches(body, &rules).map_err(AppError::Scim),
                None => Ok(true),
            }
        };
        let shaped = |bodies: Vec<Value>| -> Vec<Value> {
            bodies
                .iter()
                .map(|body| projection.apply(body, &rules))
                .collect()
        };

        // A few people at most: by id, user name, address or external id.
        if let Some(lookups) = filter.as_ref().and_then(lookups) {
            self.directory_ready().await?;
            let mut found: Vec<Member> = Vec::new();
            for lookup in &lookups {
                for member in self.looked_up(&tenant, lookup)? {
                    if !found.iter().any(|f| f.view.id == member.view.id) {
                        found.push(member);
                    }
                }
            }
            let mut bodies = Vec::new();
            for member in found {
                let body = resource(&member);
                if matches(&body)? {
                    bodies.push(body);
                }
            }
            if let Some(sort) = &sort {
                bodies.sort_by(|a, b| sort.compare(a, b, &rules));
            }
            return Ok(ListResponse::page(shaped(bodies), paging));
        }

        self.directory_ready().await?;
        let statuses: Vec<UserStatus> = match narrow.active {
            Some(true) => LISTED[..3].to_vec(),
            Some(false) => vec![UserStatus::Inactive],
            None => LISTED.to_vec(),
        };
        let order = directory_sort(sort.as_ref());
        let field = narrow.field.as_ref().map(|(field, op, value)| FieldMatch {
            field: *field,
            op: *op,
            value,
        });
        let search = |limit: usize| Search {
            scope: Scope::Tenant(&tenant),
            text: if field.is_some() {
                None
            } else {
                narrow.text.as_deref()
            },
            roles: &[],
            statuses: &statuses,
            created: (None, None),
            last_sign_in: (None, None),
            verified: None,
            attributes: &[],
            field,
            sort: order.unwrap_or_default(),
            after: None,
            limit,
            now,
        };
        let directory = self.directory();
        let people = directory.people();
        let window_end = paging.start_index.saturating_sub(1) + paging.count;
        // The page of an answer the index gave alone, with its total: only the page is read.
        let answered = |page: SearchPage| -> Result<ListResponse, AppError> {
            let window: Vec<UserId> = page
                .users
                .iter()
                .skip(paging.start_index.saturating_sub(1))
                .take(paging.count)
                .copied()
                .collect();
            let bodies = self
                .members_of(&tenant, &window)?
                .iter()
                .map(resource)
                .collect();
            Ok(ListResponse::new(
                usize::try_from(page.total).unwrap_or(usize::MAX),
                paging.start_index,
                shaped(bodies),
            ))
        };
        if narrow.exact
            && narrow.text.is_none()
            && let Some(_) = order
        {
            // The index answers the filter.
            let page = people
                .search(&search(window_end.max(1)))
                .map_err(|e| internal(e.to_string()))?;
            return answered(page);
        }
        if field.is_some() && order.is_some() {
            // One field comparison: the index answers it when it decided everyone it found.
            let page = people
                .search(&search(window_end.max(1)))
                .map_err(|e| internal(e.to_string()))?;
            if page.undecided == 0 {
                return answered(page);
            }
        }

        // Checked one by one.
        let page = people
            .search(&search(MAX_CANDIDATES + 1))
            .map_err(|e| internal(e.to_string()))?;
        if page.users.len() > MAX_CANDIDATES {
            return Err(AppError::Scim(ScimError::of(
                ScimType::TooMany,
                format!(
                    "the filter would be checked against more than {MAX_CANDIDATES} people; narrow it with userName, externalId, active or a name"
                ),
            )));
        }
        let window = paging.start_index.saturating_sub(1)..;
        let mut total = 0usize;
        let mut bodies = Vec::new();
        // A filter on the address, names and status alone is checked on the index's folded
        // fields for the people whose fields fold to their lower case: no view is read but
        // those of the page. The others are read and checked as resources.
        let light = order.is_some() && filter.as_ref().is_some_and(light_filter);
        let rows = if light {
            people.folded_rows(&tenant, &page.users)
        } else {
            Vec::new()
        };
        for (at, id) in page.users.iter().enumerate() {
            if let Some(Some(row)) = rows.get(at)
                && row.plain
                && !row.provisioned_name
            {
                // Under a field comparison the index found such a person because they match.
                if field.is_none() && !matches(&light_resource(row))? {
                    continue;
                }
                if window.contains(&total) && bodies.len() < paging.count {
                    let Some(member) = self.member(&tenant, &id.to_string())? else {
                        continue;
                    };
                    bodies.push(resource(&member));
                }
                total += 1;
                continue;
            }
            let Some(member) = self.member(&tenant, &id.to_string())? else {
                continue;
            };
            let body = resource(&member);
            if !matches(&body)? {
                continue;
            }
            if order.is_none() || (window.contains(&total) && bodies.len() < paging.count) {
                bodies.push(body);
            }
            total += 1;
        }
        if order.is_none() {
            if let Some(sort) = &sort {
                bodies.sort_by(|a, b| sort.compare(a, b, &rules));
            }
            return Ok(ListResponse::page(shaped(bodies), paging));
        }
        Ok(ListResponse::new(total, paging.start_index, shaped(bodies)))
    }

    async fn directory_ready(&self) -> Result<(), AppError> {
        crate::People(self.0.clone()).index_ready().await
    }

    /// The members of `tenant` a lookup names.
    fn looked_up(&self, tenant: &TenantId, lookup: &Lookup) -> Result<Vec<Member>, AppError> {
        Ok(match lookup {
            Lookup::Id(id) => self.member(tenant, id)?.into_iter().collect(),
            Lookup::UserName(name) => self.named(tenant, name)?,
            Lookup::Email(email) => self.member_by_email(tenant, email)?.into_iter().collect(),
            Lookup::ExternalId(external) => {
                let wanted = [(EXTERNAL_ID.to_owned(), external.clone())];
                let mut found = Vec::new();
                for user in self.members_with(tenant, &[], &wanted, 10)? {
                    found.extend(self.member(tenant, &user.to_string())?);
                }
                found
            }
        })
    }

    /// The member of `tenant` with this address, if any.
    fn member_by_email(&self, tenant: &TenantId, email: &str) -> Result<Option<Member>, AppError> {
        match self.directory().user_by_email(email).map_err(internal)? {
            Some(user) => self.member(tenant, &user.id.to_string()),
            None => Ok(None),
        }
    }

    /// The members of `tenant` whose SCIM `userName` is `name` (case aside): their provisioned
    /// name, or the address of one who has none.
    fn named(&self, tenant: &TenantId, name: &str) -> Result<Vec<Member>, AppError> {
        let wanted = [(USER_NAME.to_owned(), user_name_key(name))];
        let users = self.members_with(tenant, &[], &wanted, 10)?;
        let mut found = Vec::new();
        for user in users {
            if let Some(member) = self.member(tenant, &user.to_string())? {
                found.push(member);
            }
        }
        if let Some(member) = self.member_by_email(tenant, name)?
            && !member.view.user_names.contains_key(tenant)
            && !found.iter().any(|f| f.view.id == member.view.id)
        {
            found.push(member);
        }
        Ok(found)
    }

    /// Refuses a user name another member of the tenant goes by.
    fn unique_user_name(
        &self,
        tenant: &TenantId,
        name: &str,
        except: Option<UserId>,
    ) -> Result<(), AppError> {
        if self
            .named(tenant, name)?
            .iter()
            .any(|member| Some(member.view.id) != except)
        {
            return Err(AppError::Scim(ScimError::of(
                ScimType::Uniqueness,
                "another User of the tenant has this userName",
            )));
        }
        Ok(())
    }

    /// Refuses an external id another member of the tenant holds.
    fn unique_external_id(
        &self,
        tenant: &TenantId,
        external_id: Option<&str>,
        except: Option<UserId>,
    ) -> Result<(), AppError> {
        let Some(external_id) = external_id else {
            return Ok(());
        };
        let wanted = [(EXTERNAL_ID.to_owned(), external_id.to_owned())];
        let holders = self.members_with(tenant, &[], &wanted, 2)?;
        if holders.iter().any(|user| Some(*user) != except) {
            return Err(AppError::Scim(ScimError::of(
                ScimType::Uniqueness,
                "another User of the tenant has this externalId",
            )));
        }
        Ok(())
    }

    /// `POST /Users`: creates the person as a member of the tenant with its default role (or,
    /// for a person this tenant created and later removed, makes them a member again), then
    /// gives them what the resource says.
    ///
    /// Who: an API key of the tenant with `scim:update`, and what creating a user with the
    /// default role needs (`users:create`, `role.<default>:assign`), then what each change
    /// needs.
    pub async fn create_user(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        body: &Value,
    ) -> Result<ScimResource, AppError> {
        let tenant = self.gate(caller, Action::Update).await?;
        let view = self.tenant_now(&tenant)?;
        let wanted = desired(body, &view.attributes)?;
        self.directory_ready().await?;
        self.unique_external_id(&tenant, wanted.external_id.as_deref(), None)?;
        if let Some(name) = &wanted.user_name {
            self.unique_user_name(&tenant, name, None)?;
        }
        let default_role = view.settings.default_role.clone();
        let users = crate::Users(self.0.clone());
        let attributes: BTreeMap<String, Option<Value>> = wanted
            .attributes
            .iter()
            .filter(|(_, value)| value.is_some())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let request = NewUserRequest {
            email: wanted.email.clone(),
            first_name: wanted.first_name.clone(),
            last_name: wanted.last_name.clone(),
            roles: vec![default_role.clone()],
            invite: false,
            phone: wanted.phone.clone(),
            attributes: Some(attributes),
        };
        let (user, position) = match users.create(caller, tenant.clone(), request).await {
            Ok(created) => (
                created.id.parse::<UserId>().map_err(internal)?,
                created.position,
            ),
            Err(AppError::EmailTaken) => {
                self.rejoin(caller, &tenant, &wanted.email, &default_role)
                    .await?
            }
            Err(error) => return Err(error),
        };
        self.wait_for(position).await?;
        let member = self.require_member(&tenant, &user.to_string())?;
        let last = self
            .apply_desired(caller, &tenant, &member, &wanted)
            .await?;
        self.wait_for(last.max(position)).await?;
        let member = self.require_member(&tenant, &user.to_string())?;
        self.resource_of(&member, &self.tenant_now(&tenant)?, endpoint)
    }

    /// A person whose address is taken: a member already (409 `uniqueness`), or someone this
    /// tenant created and removed, who becomes a member again. Anyone else's address is as
    /// taken as a member's: nothing says whether they exist elsewhere.
    async fn rejoin(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        email: &str,
        role: &RoleName,
    ) -> Result<(UserId, Position), AppError> {
        let taken = || {
            AppError::Scim(ScimError::of(
                ScimType::Uniqueness,
                "a User with this userName exists",
            ))
        };
        let Some(user) = self.directory().user_by_email(email).map_err(internal)? else {
            return Err(taken());
        };
        let member = self
            .directory()
            .membership(tenant, &user.id)
            .map_err(internal)?;
        if member.is_some() || user.created_in != *tenant || user.status == UserStatus::Erased {
            return Err(taken());
        }
        let memberships = crate::Memberships(self.0.clone());
        let outcome = memberships
            .assign_role(caller, tenant.clone(), user.id, role.clone(), None)
            .await?;
        Ok((user.id, outcome.position))
    }

    /// Makes the member what `wanted` says, one operation per difference (each with its own
    /// authorization); returns the position of the last change (0 when none was needed).
    async fn apply_desired(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        member: &Member,
        wanted: &Desired,
    ) -> Result<Position, AppError> {
        let view = &member.view;
        let user = view.id;
        if !wanted.email.trim().eq_ignore_ascii_case(&view.email) {
            return Err(AppError::Scim(ScimError::mutability(
                "the email address is the person's to change, with a confirmation from the new address",
            )));
        }
        let users = crate::Users(self.0.clone());
        let mut last: Position = 0;
        let phone = wanted.phone.clone();
        let phone_changes = match (&phone, &view.phone) {
            (None, None) => false,
            (Some(new), Some(old)) => {
                idstream_domain::user::normalize_phone(new).ok().as_deref() != Some(old.as_str())
            }
            _ => true,
        };
        let language_changes = wanted.language.is_some() && wanted.language != view.language;
        if wanted.first_name != view.first_name
            || wanted.last_name != view.last_name
            || phone_changes
            || language_changes
        {
            let profile = Profile {
                first_name: wanted.first_name.clone(),
                last_name: wanted.last_name.clone(),
                image_url: view.image_url.clone(),
                notifications: view.notifications.clone(),
                phone: Some(phone),
                language: wanted.language.clone().map(Some),
            };
            last = last.max(
                users
                    .change_profile(&caller.scoped("profile"), user, profile)
                    .await?
                    .position,
            );
        }
        let current_external = view.external_ids.get(tenant).cloned();
        let current_name = view.user_names.get(tenant).cloned();
        if wanted.external_id != current_external || wanted.user_name != current_name {
            if wanted.external_id != current_external {
                self.unique_external_id(tenant, wanted.external_id.as_deref(), Some(user))?;
            }
            if let Some(name) = wanted
                .user_name
                .as_ref()
                .filter(|_| wanted.user_name != current_name)
            {
                self.unique_user_name(tenant, name, Some(user))?;
            }
            last = last.max(
                users
                    .change_provisioning_ids(
                        &caller.scoped("provisioning-ids"),
                        tenant.clone(),
                        user,
                        wanted.external_id.clone(),
                        wanted.user_name.clone(),
                    )
                    .await?
                    .position,
            );
        }
        let held = view.attributes.get(tenant);
        let change: BTreeMap<String, Option<Value>> = wanted
            .attributes
            .iter()
            .filter(|(name, value)| {
                let current = held
                    .and_then(|values| values.get(*name))
                    .filter(|v| !v.is_null());
                current != value.as_ref()
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        if !change.is_empty() {
            last = last.max(
                users
                    .change_attributes(&caller.scoped("attributes"), tenant.clone(), user, change)
                    .await?
                    .position,
            );
        }
        let inactive = view.status == UserStatus::Inactive;
        if wanted.active == inactive {
            let scoped = caller.scoped("active");
            let outcome = if wanted.active {
                users.reactivate(&scoped, user).await?
            } else {
                users.deactivate(&scoped, user).await?
            };
            last = last.max(outcome.position);
        }
        Ok(last)
    }

    /// The member `id` and the tenant's view, for a change checked against `if_match`.
    async fn changing(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(TenantId, TenantView, Member), AppError> {
        let tenant = self.gate(caller, Action::Update).await?;
        let view = self.tenant_now(&tenant)?;
        let member = self.require_member(&tenant, id)?;
        precondition(if_match, &member.version())?;
        Ok((tenant, view, member))
    }

    /// `PUT /Users/{id}`: the person becomes what the resource says (what it leaves out is
    /// cleared, `active` absent is true).
    ///
    /// Who: an API key of the tenant with `scim:update`, and what each change needs
    /// (`users:update` in every tenant of the person for their profile and deactivation,
    /// `users:update` here for the external id and attributes).
    pub async fn replace_user(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<ScimResource, AppError> {
        let (tenant, view, member) = self.changing(caller, id, if_match).await?;
        let wanted = desired(body, &view.attributes)?;
        self.directory_ready().await?;
        self.finish(caller, endpoint, &tenant, member, &wanted)
            .await
    }

    async fn finish(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        tenant: &TenantId,
        member: Member,
        wanted: &Desired,
    ) -> Result<ScimResource, AppError> {
        let id = member.view.id.to_string();
        let last = self.apply_desired(caller, tenant, &member, wanted).await?;
        self.wait_for(last).await?;
        let member = self.require_member(tenant, &id)?;
        self.resource_of(&member, &self.tenant_now(tenant)?, endpoint)
    }

    /// `PATCH /Users/{id}`: the operations applied to the person's resource, then the person
    /// made what the result says. A PATCH that changes nothing appends nothing.
    ///
    /// Who: as [`Scim::replace_user`].
    pub async fn patch_user(
        &self,
        caller: &Caller,
        endpoint: &Endpoint,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<ScimResource, AppError> {
        let (tenant, view, member) = self.changing(caller, id, if_match).await?;
        let patch = PatchRequest::parse(body).map_err(AppError::Scim)?;
        let rules: RuleSet = rules(&view.attributes);
        let labels = self.role_labels(&tenant)?;
        let current = user_resource(&member, &view, &labels, endpoint, self.now());
        let patched = patch.apply(&current, &rules).map_err(AppError::Scim)?;
        let wanted = desired(&patched, &view.attributes)?;
        self.directory_ready().await?;
        self.finish(caller, endpoint, &tenant, member, &wanted)
            .await
    }

    /// `DELETE /Users/{id}`: removes the person from the tenant (every role and custom
    /// permission); the identity, its other tenants and its trail remain.
    ///
    /// Who: an API key of the tenant with `scim:update`, and `users:delete` here (or
    /// `members.<role>:delete` over the person).
    pub async fn delete_user(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), AppError> {
        let (tenant, _, member) = self.changing(caller, id, if_match).await?;
        let memberships = crate::Memberships(self.0.clone());
        let outcome = memberships.remove(caller, tenant, member.view.id).await?;
        self.wait_for(outcome.position).await
    }

    /// The ids of the members of `tenant` holding `role` (at most `limit`), for groups.
    pub(crate) fn holders(
        &self,
        tenant: &TenantId,
        role: &RoleName,
        limit: usize,
    ) -> Result<Vec<UserId>, AppError> {
        self.members_with(tenant, std::slice::from_ref(role), &[], limit)
    }

    /// Up to `limit` members of `tenant` (erased people aside) holding any of `roles` (any role
    /// when none is named) and every `(name, key)` of `attributes`, oldest first.
    fn members_with(
        &self,
        tenant: &TenantId,
        roles: &[RoleName],
        attributes: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<UserId>, AppError> {
        let page = self
            .directory()
            .people()
            .search(&Search {
                scope: Scope::Tenant(tenant),
                text: None,
                roles,
                statuses: &LISTED,
                created: (None, None),
                last_sign_in: (None, None),
                verified: None,
                attributes,
                field: None,
                sort: DirectorySort {
                    column: SortColumn::CreatedAt,
                    descending: false,
                },
                after: None,
                limit,
                now: self.now(),
            })
            .map_err(|e| internal(e.to_string()))?;
        Ok(page.users)
    }

    /// Whether `users` are all members of `tenant` (unknown ids are not).
    pub(crate) fn all_members(
        &self,
        tenant: &TenantId,
        users: &BTreeSet<UserId>,
    ) -> Result<Option<UserId>, AppError> {
        for user in users {
            if self.member(tenant, &user.to_string())?.is_none() {
                return Ok(Some(*user));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definitions() -> BTreeMap<String, AttributeDefinition> {
        let text = AttributeDefinition {
            label: "Department".into(),
            kind: AttributeType::Text,
            options: vec![],
            required: false,
            user_editable: false,
            searchable: true,
        };
        let number = AttributeDefinition {
            label: "Badge".into(),
            kind: AttributeType::Number,
            ..text.clone()
        };
        BTreeMap::from([
            ("department".to_owned(), text),
            ("badge".to_owned(), number),
        ])
    }

    #[test]
    fn a_resource_sent_by_a_client_is_read_with_its_extensions_and_lenient_types() {
        let resource = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA, ATTRIBUTES_SCHEMA],
            "userName": " ada@example.com ",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "phoneNumbers": [{"value": "+44 20 7946 0000", "type": "mobile"}, {"value": "tel:+33-1-23-45-67-89;ext=1", "primary": true}],
            "active": "False",
            "externalId": "00u1",
            "preferredLanguage": "fr-CA",
            ENTERPRISE_SCHEMA: {"department": "Sales", "manager": {"value": "x"}},
            ATTRIBUTES_SCHEMA: {"badge": "42"},
        });
        let wanted = desired(&resource, &definitions()).unwrap();
        assert_eq!(wanted.email, "ada@example.com");
        assert_eq!(
            (wanted.first_name.as_str(), wanted.last_name.as_str()),
            ("Ada", "Lovelace")
        );
        assert_eq!(wanted.phone.as_deref(), Some("+33-1-23-45-67-89"));
        assert!(!wanted.active);
        assert_eq!(wanted.external_id.as_deref(), Some("00u1"));
        assert_eq!(wanted.language.as_deref(), Some("fr"));
        assert_eq!(wanted.attributes["department"], Some(json!("Sales")));
        assert_eq!(wanted.attributes["badge"], Some(json!(42.0)));

        // Without a name, the display name is the first name; a language the service does not
        // write in keeps the person's.
        let plain =
            json!({"userName": "bob@example.com", "displayName": "Bob", "preferredLanguage": "de"});
        let wanted = desired(&plain, &definitions()).unwrap();
        assert_eq!(wanted.first_name, "Bob");
        assert!(wanted.active);
        assert_eq!(wanted.language, None);
        assert_eq!(wanted.attributes["department"], None);
    }

    #[test]
    fn a_resource_without_user_name_or_with_unknown_attributes_is_refused() {
        for (resource, words) in [
            (json!({"name": {"givenName": "A"}}), "userName"),
            (json!("text"), "JSON object"),
            (json!({"userName": "a@example.com", "active": 3}), "active"),
            (
                json!({"userName": "a@example.com", "externalId": 3}),
                "externalId",
            ),
            (
                json!({"userName": "a@example.com", ATTRIBUTES_SCHEMA: {"shoe_size": 9}}),
                "shoe_size",
            ),
            (
                json!({"userName": "a@example.com", ATTRIBUTES_SCHEMA: {"department": "x"}}),
                "department",
            ),
        ] {
            match desired(&resource, &definitions()) {
                Err(AppError::Scim(error)) => {
                    assert_eq!(error.status, 400);
                    assert!(error.detail.contains(words), "{}", error.detail);
                }
                other => panic!("{resource} gave {other:?}"),
            }
        }
    }

    #[test]
    fn filters_the_index_answers_alone_are_told_apart_from_those_it_only_narrows() {
        let parse = |text: &str| Filter::parse(text).unwrap();
        let plan = |text: &str| narrow(&parse(text));
        let looked = |text: &str| lookups(&parse(text));
        assert_eq!(
            looked(r#"userName eq "a@example.com""#),
            Some(vec![Lookup::UserName("a@example.com".into())])
        );
        assert_eq!(
            looked(r#"id eq "x" or (externalId eq "e" and active eq true)"#),
            Some(vec![Lookup::Id("x".into()), Lookup::ExternalId("e".into())])
        );
        assert_eq!(
            looked(r#"emails[type eq "work" and value eq "a@example.com"]"#),
            Some(vec![Lookup::Email("a@example.com".into())])
        );
        assert_eq!(
            looked(r#"active eq true and emails.value eq "b@example.com""#),
            Some(vec![Lookup::Email("b@example.com".into())])
        );
        for unbounded in [
            r#"userName eq "a" or active eq true"#,
            r#"not (userName eq "a")"#,
            r#"userName sw "a""#,
            r#"title pr"#,
        ] {
            assert_eq!(looked(unbounded), None, "{unbounded}");
        }
        assert_eq!(
            looked(r#"externalId eq "x1" and active eq true"#),
            Some(vec![Lookup::ExternalId("x1".into())])
        );
        let active = plan("active eq true");
        assert!(active.exact);
        assert_eq!(active.active, Some(true));
        let text = plan(r#"name.familyName sw "Lov""#);
        assert!(!text.exact);
        assert_eq!(text.text.as_deref(), Some("Lov"));
        assert_eq!(
            text.field,
            Some((Field::LastName, FieldOp::StartsWith, "Lov".into()))
        );
        // One field comparison, with `active` at most, is the index's to answer; the value as
        // given (SCIM does not trim it).
        let both = plan(r#"userName co " lov" and active eq true"#);
        assert_eq!(both.active, Some(true));
        assert_eq!(
            both.field,
            Some((Field::UserName, FieldOp::Contains, " lov".into()))
        );
        assert_eq!(
            plan(r#"emails.value ew "@example.com""#).field,
            Some((Field::Email, FieldOp::EndsWith, "@example.com".into()))
        );
        assert_eq!(
            plan(r#"name.givenName eq "Ada""#).field,
            Some((Field::FirstName, FieldOp::Equals, "Ada".into()))
        );
        for unanswered in [
            r#"displayName co "ada""#,
            r#"name.formatted sw "ada""#,
            r#"userName co "a" and name.givenName sw "b""#,
            r#"userName co "a" and title pr"#,
            r#"userName co "a" and active eq true and active eq false"#,
            r#"userName co "a" or active eq true"#,
            r#"not (userName co "a")"#,
            r#"userName gt "a""#,
        ] {
            assert_eq!(plan(unanswered).field, None, "{unanswered}");
        }
        for broad in [
            r#"userName eq "a" or userName eq "b""#,
            r#"not (active eq true)"#,
            r#"title pr"#,
            r#"userName gt "m""#,
        ] {
            let plan = plan(broad);
            assert!(!plan.exact, "{broad}");
            assert!(plan.text.is_none(), "{broad}");
        }
    }

    #[test]
    fn if_match_accepts_the_current_version_weak_or_strong_a_list_or_any() {
        let version = version_of(42);
        for header in [
            None,
            Some("*"),
            Some("W/\"42\""),
            Some("\"42\""),
            Some("W/\"1\", W/\"42\""),
        ] {
            assert!(precondition(header, &version).is_ok(), "{header:?}");
        }
        for header in [Some("W/\"41\""), Some(""), Some("42x")] {
            assert!(
                matches!(
                    precondition(header, &version),
                    Err(AppError::PreconditionFailed)
                ),
                "{header:?}"
            );
        }
    }
}
