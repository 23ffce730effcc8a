//! The `attributes` and `excludedAttributes` parameters (RFC 7644 §3.4.2.5, §3.9): which
//! attributes of a resource a response returns.
//!
//! - `attributes` keeps only the named attributes (and sub-attributes); `excludedAttributes`
//!   drops them. When both are given, `attributes` wins (the RFC does not combine them).
//! - `schemas`, `id` and every attribute whose rule says [`Returned::Always`] are always kept;
//!   attributes whose rule says [`Returned::Never`] (or [`Mutability::WriteOnly`]), such as
//!   `password`, are never returned; [`Returned::Request`] attributes only when named.
//! - Names may be URN-qualified: an extension attribute is looked up inside its extension's
//!   member, and a bare extension URN names the whole extension.
//! - With `attributes`, values left empty by the selection (`[]`, `{}`, null) are omitted.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::json::{find_key, get_ci, is_unassigned};
use crate::path::{AttrPath, starts_with_urn};
use crate::rules::{AttributeRules, Mutability, Returned, extension_urn};

/// Which attributes a response returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Projection {
    /// Every attribute returned by default.
    #[default]
    Default,
    /// `attributes=…`: only these (plus those always returned).
    Only(Vec<AttrPath>),
    /// `excludedAttributes=…`: all returned by default but these.
    Except(Vec<AttrPath>),
}

impl Projection {
    /// Reads the two comma-separated parameters; a malformed name is a 400 `invalidPath`.
    pub fn parse(
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Projection, ScimError> {
        let only = parse_list(attributes)?;
        if !only.is_empty() {
            return Ok(Projection::Only(only));
        }
        let except = parse_list(excluded_attributes)?;
        Ok(if except.is_empty() {
            Projection::Default
        } else {
            Projection::Except(except)
        })
    }

    /// The resource as the response returns it.
    pub fn apply(&self, resource: &Value, rules: &dyn AttributeRules) -> Value {
        let Some(map) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = match self {
            Projection::Default => map.clone(),
            Projection::Only(paths) => select(resource, paths, rules),
            Projection::Except(paths) => exclude(resource, paths, rules),
        };
        let requested = match self {
            Projection::Only(paths) => paths.iter().map(|path| normalized(path, rules)).collect(),
            _ => Vec::new(),
        };
        strip_hidden(&mut out, &requested, rules);
        if matches!(self, Projection::Only(_)) {
            prune_empty(&mut out);
        }
        Value::Object(out)
    }
}

/// Parses a comma-separated list of attribute paths (empty items ignored).
fn parse_list(text: Option<&str>) -> Result<Vec<AttrPath>, ScimError> {
    let items = text
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty());
    items.map(AttrPath::parse).collect()
}

/// Where a path points in a resource.
enum Place {
    /// A whole extension: the member `key`.
    Extension { key: String },
    /// An attribute `key`, at the top level or inside the extension member `extension`.
    Attribute {
        extension: Option<String>,
        key: String,
        sub: Option<String>,
    },
}

/// Finds what `path` names in `map` (keys as the resource spells them), `None` when absent.
fn locate(map: &Map<String, Value>, path: &AttrPath, rules: &dyn AttributeRules) -> Option<Place> {
    if let Some(urn) = path.as_schema_urn()
        && names_extension(map, &urn, rules)
    {
        return Some(Place::Extension {
            key: find_key(map, &urn)?,
        });
    }
    let extension = match extension_urn(path, rules) {
        Some(urn) => Some(find_key(map, urn)?),
        None => None,
    };
    let container = match &extension {
        Some(key) => map.get(key)?.as_object()?,
        None => map,
    };
    let key = find_key(container, &path.name)?;
    Some(Place::Attribute {
        extension,
        key,
        sub: path.sub_attr.clone(),
    })
}

/// Whether `urn` names a whole extension of this resource.
pub(crate) fn names_extension(
    map: &Map<String, Value>,
    urn: &str,
    rules: &dyn AttributeRules,
) -> bool {
    let listed = get_ci(map, "schemas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let in_schemas = listed
        .into_iter()
        .any(|schema| schema.eq_ignore_ascii_case(urn));
    let has_member = find_key(map, urn).is_some_and(|key| map[&key].is_object());
    rules.is_extension(urn) && (rules.is_schema(urn) || in_schemas || has_member)
}

/// `path` with a core-schema URN dropped, for comparing requested paths.
fn normalized(path: &AttrPath, rules: &dyn AttributeRules) -> AttrPath {
    let mut path = path.clone();
    if extension_urn(&path, rules).is_none()
        && path
            .as_schema_urn()
            .is_none_or(|urn| !rules.is_extension(&urn))
    {
        path.urn = None;
    }
    path
}

/// `attributes=…`: the always-returned attributes plus the named ones.
fn select(resource: &Value, paths: &[AttrPath], rules: &dyn AttributeRules) -> Map<String, Value> {
    let map = resource.as_object().cloned().unwrap_or_default();
    let mut out = always_returned(&map, rules);
    for path in paths {
        let Some(place) = locate(&map, path, rules) else {
            continue;
        };
        let (slot, partial) = match place {
            Place::Extension { key } => (vec![key.clone()], map[&key].clone()),
            Place::Attribute {
                extension,
                key,
                sub,
            } => {
                let value = match &extension {
                    Some(ext) => &map[ext][&key],
                    None => &map[&key],
                };
                let partial = match &sub {
                    Some(sub) => reduce_to_sub(value, sub),
                    None => value.clone(),
                };
                (extension.into_iter().chain([key]).collect(), partial)
            }
        };
        insert_union(&mut out, &slot, partial);
    }
    out
}

/// `schemas`, `id` and the attributes (core or extension) whose rule is `Returned::Always`.
fn always_returned(map: &Map<String, Value>, rules: &dyn AttributeRules) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        if is_extension_member(key, value) {
            let kept = value.as_object().into_iter().flatten().filter(|(name, _)| {
                rules
                    .rule(&AttrPath::new(name.as_str()).in_schema(key.as_str()))
                    .returned
                    == Returned::Always
            });
            let kept: Map<String, Value> = kept
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            if !kept.is_empty() {
                out.insert(key.clone(), Value::Object(kept));
            }
        } else if is_protected(key)
            || rules.rule(&AttrPath::new(key.as_str())).returned == Returned::Always
        {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// `schemas` and `id` are returned whatever the request says.
fn is_protected(key: &str) -> bool {
    key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("id")
}

/// Whether a top-level member holds an extension's attributes.
fn is_extension_member(key: &str, value: &Value) -> bool {
    starts_with_urn(key) && value.is_object()
}

/// Only the sub-attribute `sub` of a complex value, or of each value of a multi-valued one.
fn reduce_to_sub(value: &Value, sub: &str) -> Value {
    let reduce_one = |item: &Value| match item.as_object() {
        Some(object) => {
            let kept = find_key(object, sub).map(|key| (key.clone(), object[&key].clone()));
            Value::Object(kept.into_iter().collect())
        }
        None => item.clone(),
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(reduce_one).collect()),
        other => reduce_one(other),
    }
}

/// Merges `partial` into `out` at the member path `slot`, uniting with what earlier selections
/// put there (so `name.givenName,name.familyName` keeps both, and a whole value wins over a
/// part of it).
fn insert_union(out: &mut Map<String, Value>, slot: &[String], partial: Value) {
    let Some((last, parents)) = slot.split_last() else {
        return;
    };
    let mut container = out;
    for key in parents {
        let entry = container
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(object) = entry.as_object_mut() else {
            return;
        };
        container = object;
    }
    match container.get_mut(last) {
        Some(existing) => union(existing, partial),
        None => {
            container.insert(last.clone(), partial);
        }
    }
}

/// Deep union of two selections of the same value.
fn union(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => union(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(into), Value::Array(from)) if into.len() == from.len() => {
            for (existing, value) in into.iter_mut().zip(from) {
                union(existing, value);
            }
        }
        (into, from) => *into = from,
    }
}

/// `excludedAttributes=…`: the resource without the named attributes (protected ones kept).
fn exclude(resource: &Value, paths: &[AttrPath], rules: &dyn AttributeRules) -> Map<String, Value> {
    let mut out = resource.as_object().cloned().unwrap_or_default();
    for path in paths {
        let always = rules.rule(&path.parent()).returned == Returned::Always
            || rules.rule(path).returned == Returned::Always;
        let protected = path.urn.is_none() && path.sub_attr.is_none() && is_protected(&path.name);
        if always || protected {
            continue;
        }
        match locate(&out, path, rules) {
            Some(Place::Extension { key }) => {
                out.remove(&key);
            }
            Some(Place::Attribute {
                extension,
                key,
                sub,
            }) => {
                let container = match &extension {
                    Some(ext) => out.get_mut(ext).and_then(Value::as_object_mut),
                    None => Some(&mut out),
                };
                if let Some(container) = container {
                    remove_from(container, &key, sub.as_deref());
                }
            }
            None => {}
        }
    }
    out
}

/// Removes `key`, or only its sub-attribute `sub` (from each value when multi-valued).
fn remove_from(container: &mut Map<String, Value>, key: &str, sub: Option<&str>) {
    let Some(sub) = sub else {
        container.remove(key);
        return;
    };
    let remove_sub = |item: &mut Value| {
        if let Some(object) = item.as_object_mut()
            && let Some(found) = find_key(object, sub)
        {
            object.remove(&found);
        }
    };
    match container.get_mut(key) {
        Some(Value::Array(items)) => items.iter_mut().for_each(remove_sub),
        Some(value) => remove_sub(value),
        None => {}
    }
}

/// Drops what must not be returned: `Returned::Never` and write-only attributes always,
/// `Returned::Request` ones unless `requested` names them; at the top level, inside extensions
/// and among sub-attributes.
fn strip_hidden(out: &mut Map<String, Value>, requested: &[AttrPath], rules: &dyn AttributeRules) {
    let keys: Vec<String> = out.keys().cloned().collect();
    for key in keys {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if is_extension_member(&key, &out[&key]) {
            if let Some(extension) = out.get_mut(&key).and_then(Value::as_object_mut) {
                let names: Vec<String> = extension.keys().cloned().collect();
                for name in names {
                    let path = AttrPath::new(name.as_str()).in_schema(key.as_str());
                    strip_attribute(extension, &name, &path, requested, rules);
                }
            }
            continue;
        }
        strip_attribute(out, &key, &AttrPath::new(key.as_str()), requested, rules);
    }
}

/// Removes `key` from `container` when hidden, else strips its hidden sub-attributes.
fn strip_attribute(
    container: &mut Map<String, Value>,
    key: &str,
    path: &AttrPath,
    requested: &[AttrPath],
    rules: &dyn AttributeRules,
) {
    if is_hidden(path, requested, rules) {
        container.remove(key);
        return;
    }
    let strip_object = |item: &mut Value| {
        if let Some(object) = item.as_object_mut() {
            object.retain(|sub, _| !is_hidden(&path.child(sub), requested, rules));
        }
    };
    match container.get_mut(key) {
        Some(Value::Array(items)) => items.iter_mut().for_each(strip_object),
        Some(value) => strip_object(value),
        None => {}
    }
}

fn is_hidden(path: &AttrPath, requested: &[AttrPath], rules: &dyn AttributeRules) -> bool {
    let rule = rules.rule(path);
    match (rule.returned, rule.mutability) {
        (Returned::Never, _) | (_, Mutability::WriteOnly) => true,
        (Returned::Request, _) => {
            let path = normalized(path, rules);
            !requested
                .iter()
                .any(|wanted| wanted.same_as(&path) || wanted.same_as(&path.parent()))
        }
        _ => false,
    }
}

/// Drops values a selection left empty: `{}` items of arrays, then unassigned members (at the
/// top level and inside extensions); `schemas` and `id` stay.
fn prune_empty(out: &mut Map<String, Value>) {
    for value in out.values_mut() {
        if let Value::Array(items) = value {
            items.retain(|item| !matches!(item, Value::Object(object) if object.is_empty()));
        }
        if let Value::Object(inner) = value {
            for inner_value in inner.values_mut() {
                if let Value::Array(items) = inner_value {
                    items
                        .retain(|item| !matches!(item, Value::Object(object) if object.is_empty()));
                }
            }
            inner.retain(|_, inner_value| !is_unassigned(inner_value));
        }
    }
    out.retain(|key, value| is_protected(key) || !is_unassigned(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::path::ENTERPRISE_USER_SCHEMA;
    use crate::rules::{AttributeRule, NoRules, RuleSet};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
            "id": "2819c223",
            "externalId": "bjensen",
            "userName": "bjensen@example.com",
            "password": "t1meMa$heen",
            "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"resourceType": "User", "version": "W/\"1\""},
            ENTERPRISE_USER_SCHEMA: {
                "employeeNumber": "701984",
                "department": "Tour Operations",
                "manager": {"value": "26118915", "displayName": "John Smith"}
            }
        })
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        Projection::parse(attributes, excluded)
            .unwrap()
            .apply(&user(), &RuleSet::rfc7643())
    }

    #[test]
    fn given_no_parameters_when_projected_then_all_but_password() {
        let mut expected = user();
        expected.as_object_mut().unwrap().remove("password");
        assert_eq!(project(None, None), expected);
        assert_eq!(
            Projection::parse(Some(" "), Some("")).unwrap(),
            Projection::Default
        );
    }

    #[test]
    fn given_attributes_when_projected_then_only_those_plus_id_and_schemas() {
        let out = project(Some("userName,name.givenName"), None);
        assert_eq!(
            out,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
                "id": "2819c223",
                "userName": "bjensen@example.com",
                "name": {"givenName": "Barbara"}
            })
        );
    }

    #[test]
    fn given_two_sub_attributes_of_one_attribute_when_projected_then_both_kept() {
        let out = project(Some("name.givenName, name.familyName"), None);
        assert_eq!(
            out["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen"})
        );
    }

    #[test]
    fn given_a_sub_attribute_of_a_multi_valued_attribute_when_projected_then_each_value_reduced() {
        let out = project(Some("emails.value"), None);
        assert_eq!(
            out["emails"],
            json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
        );
        let out = project(Some("emails.type,emails.value"), None);
        assert_eq!(
            out["emails"],
            json!([{"value": "bjensen@example.com", "type": "work"}, {"value": "babs@jensen.org", "type": "home"}])
        );
    }

    #[test]
    fn given_a_whole_attribute_and_one_of_its_parts_when_projected_then_whole_kept() {
        let out = project(Some("name.givenName,name"), None);
        assert_eq!(out["name"], user()["name"]);
        let out = project(Some("emails,emails.type"), None);
        assert_eq!(out["emails"], user()["emails"]);
    }

    #[test]
    fn given_attribute_names_in_other_case_when_projected_then_found_and_spelt_as_stored() {
        let out = project(Some("USERNAME,Name.GivenName"), None);
        assert_eq!(out["userName"], json!("bjensen@example.com"));
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
    }

    #[test]
    fn given_extension_attributes_when_projected_then_under_their_urn() {
        let out = project(
            Some(&format!(
                "{ENTERPRISE_USER_SCHEMA}:employeeNumber,{ENTERPRISE_USER_SCHEMA}:manager.displayName"
            )),
            None,
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "701984", "manager": {"displayName": "John Smith"}})
        );
        assert!(out.get("userName").is_none());
    }

    #[test]
    fn given_a_whole_extension_urn_when_projected_then_the_whole_extension() {
        let out = project(Some(ENTERPRISE_USER_SCHEMA), None);
        assert_eq!(out[ENTERPRISE_USER_SCHEMA], user()[ENTERPRISE_USER_SCHEMA]);
        let out = project(
            Some(&format!(
                "{ENTERPRISE_USER_SCHEMA},{ENTERPRISE_USER_SCHEMA}:manager.value"
            )),
            None,
        );
        assert_eq!(out[ENTERPRISE_USER_SCHEMA], user()[ENTERPRISE_USER_SCHEMA]);
    }

    #[test]
    fn given_core_urn_qualified_attributes_when_projected_then_top_level() {
        let out = project(
            Some("urn:ietf:params:scim:schemas:core:2.0:User:userName"),
            None,
        );
        assert_eq!(out["userName"], json!("bjensen@example.com"));
    }

    #[test]
    fn given_password_requested_when_projected_then_never_returned() {
        let out = project(Some("password,userName"), None);
        assert!(out.get("password").is_none());
        assert_eq!(out["userName"], json!("bjensen@example.com"));
    }

    #[test]
    fn given_excluded_attributes_when_projected_then_dropped_and_rest_kept() {
        let out = project(None, Some("emails,name.middleName,meta"));
        let map = out.as_object().unwrap();
        assert!(map.get("emails").is_none());
        assert!(map.get("meta").is_none());
        assert!(map.get("password").is_none());
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        assert_eq!(out["userName"], json!("bjensen@example.com"));
    }

    #[test]
    fn given_excluded_id_and_schemas_when_projected_then_still_returned() {
        let out = project(None, Some("id,schemas,ID"));
        assert_eq!(out["id"], json!("2819c223"));
        assert_eq!(out["schemas"], user()["schemas"]);
    }

    #[test]
    fn given_excluded_extension_or_its_attribute_when_projected_then_removed_there() {
        let out = project(
            None,
            Some(&format!(
                "{ENTERPRISE_USER_SCHEMA}:department,{ENTERPRISE_USER_SCHEMA}:manager.displayName"
            )),
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "701984", "manager": {"value": "26118915"}})
        );
        let out = project(None, Some(ENTERPRISE_USER_SCHEMA));
        assert!(out.get(ENTERPRISE_USER_SCHEMA).is_none());
    }

    #[test]
    fn given_excluded_sub_attribute_of_multi_valued_when_projected_then_removed_from_each_value() {
        let out = project(None, Some("emails.primary"));
        assert_eq!(
            out["emails"],
            json!([{"value": "bjensen@example.com", "type": "work"}, {"value": "babs@jensen.org", "type": "home"}])
        );
    }

    #[test]
    fn given_both_parameters_when_parsed_then_attributes_win() {
        let projection = Projection::parse(Some("userName"), Some("userName")).unwrap();
        assert_eq!(
            projection,
            Projection::Only(vec![AttrPath::new("userName")])
        );
    }

    #[test]
    fn given_a_malformed_name_when_parsed_then_invalid_path() {
        let error = Projection::parse(Some("userName,na..me"), None).unwrap_err();
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(ScimType::InvalidPath))
        );
    }

    #[test]
    fn given_always_and_request_rules_when_projected_then_honoured() {
        let rules = RuleSet::rfc7643()
            .with(
                AttrPath::new("userName"),
                AttributeRule::string().returned(Returned::Always),
            )
            .with(
                AttrPath::new("nickName"),
                AttributeRule::string().returned(Returned::Request),
            )
            .with(
                AttrPath::with_sub("name", "middleName"),
                AttributeRule::string().returned(Returned::Never),
            );
        let mut resource = user();
        resource["nickName"] = json!("Babs");
        let default = Projection::Default.apply(&resource, &rules);
        assert!(default.get("nickName").is_none());
        assert_eq!(
            default["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        let only = Projection::parse(Some("nickName"), None)
            .unwrap()
            .apply(&resource, &rules);
        assert_eq!(only["nickName"], json!("Babs"));
        assert_eq!(only["userName"], json!("bjensen@example.com"));
        let except = Projection::parse(None, Some("userName"))
            .unwrap()
            .apply(&resource, &rules);
        assert_eq!(except["userName"], json!("bjensen@example.com"));
    }

    #[test]
    fn given_absent_attributes_requested_when_projected_then_nothing_added() {
        let out = project(Some("nickName,name.honorificPrefix,emails.display"), None);
        assert_eq!(out, json!({"schemas": user()["schemas"], "id": "2819c223"}));
    }

    #[test]
    fn given_an_extension_only_in_schemas_when_named_then_treated_as_whole_extension() {
        let urn = "urn:example:custom:1.0:User";
        let resource = json!({"schemas": [urn], "id": "1", urn: {"badge": "7"}, "userName": "x"});
        let out = Projection::parse(Some(urn), None)
            .unwrap()
            .apply(&resource, &NoRules);
        assert_eq!(
            out,
            json!({"schemas": [urn], "id": "1", urn: {"badge": "7"}})
        );
    }

    #[test]
    fn given_a_non_object_resource_when_projected_then_returned_unchanged() {
        assert_eq!(
            Projection::Only(vec![AttrPath::new("a")]).apply(&json!([1]), &NoRules),
            json!([1])
        );
    }
}
