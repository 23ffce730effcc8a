//! Applying a [`PatchRequest`] to a resource given as JSON.

use serde_json::{Map, Value};

use super::{PatchOpKind, PatchOperation, PatchPath, PatchRequest};
use crate::compare::Comparison;
use crate::error::ScimError;
use crate::eval::{attribute_value, element_matches};
use crate::filter::{CompareOp, Filter};
use crate::json::{find_key, is_unassigned, member};
use crate::path::AttrPath;
use crate::projection::names_extension;
use crate::rules::{AttrKind, AttributeRules, Mutability, extension_urn};

impl PatchRequest {
    /// Applies the operations in order to a copy of `resource` and returns it; on any error the
    /// whole request fails (the input is never modified). Semantics, by RFC 7644 §3.5.2 and what
    /// Okta and Entra ID send:
    ///
    /// - Without `path`, `add`/`replace` take an object whose keys are attribute paths
    ///   (`"name.givenName"`), URN-qualified names, or a whole extension URN with an object.
    /// - `add` to a multi-valued attribute appends the values not already present (compared by
    ///   their `value` sub-attribute; a present one is updated with the given sub-attributes);
    ///   `replace` replaces the list. On a complex single-valued attribute both merge the given
    ///   sub-attributes. A null value unassigns.
    /// - A value filter (`emails[type eq "work"]`, optionally `.value`) selects values:
    ///   `replace` fails with 400 `noTarget` when nothing matches; `add` then adds a value built
    ///   from the filter's `eq` conditions (what Entra ID expects for a first work e-mail);
    ///   `remove` of nothing changes nothing. `replace` of a whole selected value keeps the
    ///   sub-attributes the filter pins with `eq`, so the value still matches.
    /// - `remove` of a multi-valued attribute with a `value` list removes only those values (how
    ///   Entra ID removes group members); without one, the whole attribute.
    /// - Making a value `primary` clears `primary` on the others.
    /// - Strings `"True"`/`"False"` (any case) become booleans for boolean attributes; a plain
    ///   value given for a complex attribute (`manager: "id"`) becomes `{"value": …}`.
    /// - Changing an attribute that is read-only (`id`, `meta`, or by the rules) is 400
    ///   `mutability`, and so is changing an immutable one that has a value; writing the value
    ///   it already has is accepted.
    /// - Adding an extension attribute lists the extension in `schemas`; removing its last
    ///   attribute removes the extension and its entry.
    pub fn apply(&self, resource: &Value, rules: &dyn AttributeRules) -> Result<Value, ScimError> {
        let mut patched = resource.clone();
        if !patched.is_object() {
            return Err(ScimError::invalid_syntax(
                "the resource to patch must be a JSON object",
            ));
        }
        for (index, operation) in self.operations.iter().enumerate() {
            apply_operation(&mut patched, operation, rules).map_err(|error| ScimError {
                detail: format!("Operations[{index}]: {}", error.detail),
                ..error
            })?;
        }
        Ok(patched)
    }
}

fn apply_operation(
    resource: &mut Value,
    operation: &PatchOperation,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    if let Some(path) = &operation.path {
        return apply_path(
            resource,
            operation.op,
            path,
            operation.value.as_ref(),
            rules,
        );
    }
    match (operation.op, &operation.value) {
        (PatchOpKind::Remove, _) => Err(ScimError::no_target("\"remove\" needs a \"path\"")),
        (_, Some(Value::Object(members))) => {
            for (key, value) in members {
                let path = PatchPath::attribute(AttrPath::parse(key)?);
                apply_path(resource, operation.op, &path, Some(value), rules)?;
            }
            Ok(())
        }
        (op, _) => Err(ScimError::invalid_value(format!(
            "\"{}\" without \"path\" needs an object of attributes as \"value\"",
            op.as_str()
        ))),
    }
}

/// What an operation with a path works on.
struct Target<'a> {
    /// The attribute's name as the request spells it.
    name: &'a str,
    /// The attribute's path (URN kept, no sub-attribute), for rule look-ups.
    attr_path: AttrPath,
    filter: Option<&'a Filter>,
    sub: Option<&'a str>,
}

impl<'a> Target<'a> {
    fn new(path: &'a PatchPath) -> Self {
        Target {
            name: &path.attr.name,
            attr_path: path.attr.parent(),
            filter: path.filter.as_ref(),
            sub: path.target_sub_attr(),
        }
    }

    /// The path whose rule applies to the value written.
    fn value_path(&self) -> AttrPath {
        match self.sub {
            Some(sub) => self.attr_path.child(sub),
            None => self.attr_path.clone(),
        }
    }
}

fn apply_path(
    resource: &mut Value,
    op: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    if let Some(urn) = whole_schema(resource, path, rules) {
        return apply_to_schema(resource, op, &urn, value, rules);
    }
    let target = Target::new(path);
    let value = value
        .cloned()
        .map(|value| coerce_booleans(value, &target.value_path(), rules))
        .transpose()?;
    check_mutability(resource, op, path, value.as_ref(), rules)?;
    let extension = extension_urn(&path.attr, rules).map(str::to_string);
    let Some(container) = container_mut(resource, extension.as_deref(), op != PatchOpKind::Remove)
    else {
        return Ok(());
    };
    match (op, value) {
        (PatchOpKind::Remove, value) => remove(container, &target, value.as_ref(), rules)?,
        (_, None | Some(Value::Null)) => remove(container, &target, None, rules)?,
        (PatchOpKind::Add, Some(value)) => add(container, &target, value, rules)?,
        (PatchOpKind::Replace, Some(value)) => replace(container, &target, value, rules)?,
    }
    if let Some(urn) = extension {
        tidy_extension(resource, &urn);
    }
    Ok(())
}

/// The URN when `path` names a whole schema: an extension of the resource, or a core schema.
fn whole_schema(resource: &Value, path: &PatchPath, rules: &dyn AttributeRules) -> Option<String> {
    let urn = path
        .attr
        .as_schema_urn()
        .filter(|_| path.filter.is_none() && path.sub_attr.is_none())?;
    let core_schema = !rules.is_extension(&urn) && rules.is_schema(&urn);
    (core_schema || names_extension(resource.as_object()?, &urn, rules)).then_some(urn)
}

/// An operation on a whole schema: `remove` drops an extension (a core schema cannot be
/// removed), `add`/`replace` apply to each of the attributes the value object names.
fn apply_to_schema(
    resource: &mut Value,
    op: PatchOpKind,
    urn: &str,
    value: Option<&Value>,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let core = !rules.is_extension(urn);
    if op == PatchOpKind::Remove && core {
        return Err(ScimError::invalid_path(format!(
            "the core schema {urn} cannot be removed"
        )));
    }
    if op == PatchOpKind::Remove {
        if let Some(root) = resource.as_object_mut()
            && let Some(key) = find_key(root, urn)
        {
            root.remove(&key);
            unlist_schema(root, urn);
        }
        return Ok(());
    }
    let Some(Value::Object(members)) = value else {
        return Err(ScimError::invalid_value(format!(
            "{urn} takes an object of its attributes"
        )));
    };
    for (key, value) in members {
        let attr = AttrPath::parse(key)?;
        let attr = if attr.urn.is_some() || core {
            attr
        } else {
            attr.in_schema(urn)
        };
        apply_path(
            resource,
            op,
            &PatchPath::attribute(attr),
            Some(value),
            rules,
        )?;
    }
    Ok(())
}

/// The object holding the target attribute: the resource, or its extension's member (created,
/// and listed in `schemas`, when `create`).
fn container_mut<'a>(
    resource: &'a mut Value,
    extension: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let root = resource.as_object_mut()?;
    let Some(urn) = extension else {
        return Some(root);
    };
    let key = match find_key(root, urn) {
        Some(key) => key,
        None if create => urn.to_string(),
        None => return None,
    };
    if create {
        list_schema(root, urn);
    }
    let slot = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        if !create {
            return None;
        }
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Adds `urn` to the resource's `schemas` list when it has one without it.
fn list_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = find_key(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key)
        && !schemas.iter().any(|schema| {
            schema
                .as_str()
                .is_some_and(|schema| schema.eq_ignore_ascii_case(urn))
        })
    {
        schemas.push(Value::String(urn.to_string()));
    }
}

/// Removes `urn` from the resource's `schemas` list.
fn unlist_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = find_key(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key) {
        schemas.retain(|schema| {
            !schema
                .as_str()
                .is_some_and(|schema| schema.eq_ignore_ascii_case(urn))
        });
    }
}

/// Removes an extension left without attributes, and its `schemas` entry.
fn tidy_extension(resource: &mut Value, urn: &str) {
    let Some(root) = resource.as_object_mut() else {
        return;
    };
    let Some(key) = find_key(root, urn) else {
        return;
    };
    if root.get(&key).is_some_and(is_unassigned) {
        root.remove(&key);
        unlist_schema(root, urn);
    }
}

/// Turns `"True"`/`"False"` (any case) into booleans wherever the rules say boolean, through
/// complex and multi-valued values; another string for a boolean is a 400 `invalidValue`.
fn coerce_booleans(
    value: Value,
    path: &AttrPath,
    rules: &dyn AttributeRules,
) -> Result<Value, ScimError> {
    match value {
        Value::String(text) if rules.rule(path).kind == AttrKind::Boolean => {
            match text.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(ScimError::invalid_value(format!(
                    "{path} is a boolean, not {text:?}"
                ))),
            }
        }
        Value::Array(items) => {
            let items = items
                .into_iter()
                .map(|item| coerce_booleans(item, path, rules));
            Ok(Value::Array(items.collect::<Result<_, _>>()?))
        }
        Value::Object(members) if path.sub_attr.is_none() => {
            let members = members.into_iter().map(|(key, value)| {
                let value = coerce_booleans(value, &path.child(&key), rules)?;
                Ok((key, value))
            });
            Ok(Value::Object(members.collect::<Result<_, ScimError>>()?))
        }
        other => Ok(other),
    }
}

/// Refuses changes to read-only attributes, and to immutable ones that have a value.
fn check_mutability(
    resource: &Value,
    op: PatchOpKind,
    path: &PatchPath,
    value: Option<&Value>,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let attr_path = path.attr.parent();
    let sub = path.target_sub_attr();
    let attr_mutability = mutability_of(&attr_path, rules);
    let sub_mutability = sub.map(|sub| rules.rule(&attr_path.child(sub)).mutability);
    let current =
        attribute_value(resource, &attr_path, rules).filter(|current| !is_unassigned(current));
    let whole = path.filter.is_none() && sub.is_none();
    let unchanged = whole && op != PatchOpKind::Remove && value.is_some() && value == current;
    let is = |wanted: Mutability| attr_mutability == wanted || sub_mutability == Some(wanted);
    if is(Mutability::ReadOnly) && !unchanged {
        return Err(ScimError::mutability(format!("{} is read-only", path.attr)));
    }
    if is(Mutability::Immutable) && current.is_some() && !unchanged {
        return Err(ScimError::mutability(format!(
            "{} is immutable and already has a value",
            path.attr
        )));
    }
    if let (None, Some(value)) = (sub, value) {
        check_sub_attributes(&attr_path, value, rules)?;
    }
    Ok(())
}

/// The mutability of an attribute: `id` and `meta` are read-only whatever the rules say.
fn mutability_of(path: &AttrPath, rules: &dyn AttributeRules) -> Mutability {
    let core = extension_urn(path, rules).is_none();
    if core && (path.name.eq_ignore_ascii_case("id") || path.name.eq_ignore_ascii_case("meta")) {
        return Mutability::ReadOnly;
    }
    rules.rule(path).mutability
}

/// Refuses a complex value that sets a read-only sub-attribute.
fn check_sub_attributes(
    attr_path: &AttrPath,
    value: &Value,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let objects: Vec<&Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(object) => vec![object],
        _ => Vec::new(),
    };
    for key in objects.into_iter().flat_map(|object| object.keys()) {
        if rules.rule(&attr_path.child(key)).mutability == Mutability::ReadOnly {
            return Err(ScimError::mutability(format!(
                "{} is read-only",
                attr_path.child(key)
            )));
        }
    }
    Ok(())
}

fn add(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    value: Value,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    match (target.filter, target.sub) {
        (None, None) => {
            add_attribute(container, target, value, rules);
            Ok(())
        }
        (None, Some(sub)) => set_sub_attribute(container, target, sub, value, rules),
        (Some(filter), sub) => set_selected(
            container,
            target,
            filter,
            sub,
            value,
            PatchOpKind::Add,
            rules,
        ),
    }
}

fn replace(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    value: Value,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    match (target.filter, target.sub) {
        (None, None) => replace_attribute(container, target, value, rules),
        (None, Some(sub)) => set_sub_attribute(container, target, sub, value, rules),
        (Some(filter), sub) => set_selected(
            container,
            target,
            filter,
            sub,
            value,
            PatchOpKind::Replace,
            rules,
        ),
    }
}

/// Whether the attribute is (or is to be) multi-valued.
fn is_multi_valued(
    container: &Map<String, Value>,
    key: &str,
    target: &Target<'_>,
    value: &Value,
    rules: &dyn AttributeRules,
) -> bool {
    rules.rule(&target.attr_path).multi_valued
        || container.get(key).is_some_and(Value::is_array)
        || value.is_array()
}

/// `add` of a whole attribute: append to lists, merge into complex values, set the rest.
fn add_attribute(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    value: Value,
    rules: &dyn AttributeRules,
) {
    let key = key_for(container, target.name);
    let value = wrap_plain_values(value, &target.attr_path, rules);
    if is_multi_valued(container, &key, target, &value, rules) {
        let comparison = value_comparison(target, rules);
        with_list(container, &key, |list| {
            let touched: Vec<usize> = into_items(value)
                .into_iter()
                .map(|item| merge_or_push(list, item, comparison))
                .collect();
            settle_primary(list, &touched);
        });
        return;
    }
    match (container.get_mut(&key), value) {
        (Some(Value::Object(existing)), Value::Object(new)) => merge_object(existing, new),
        (_, value) => {
            container.insert(key, value);
        }
    }
}

/// `replace` of a whole attribute: a new list for multi-valued ones, a merge for complex ones.
fn replace_attribute(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    value: Value,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let key = key_for(container, target.name);
    let value = wrap_plain_values(value, &target.attr_path, rules);
    if is_multi_valued(container, &key, target, &value, rules) {
        let items = into_items(value);
        if items.iter().filter(|item| is_primary(item)).count() > 1 {
            return Err(ScimError::invalid_value(format!(
                "at most one value of {} may be primary",
                target.attr_path
            )));
        }
        container.insert(key.clone(), Value::Array(items));
        drop_if_unassigned(container, &key);
        return Ok(());
    }
    match (container.get_mut(&key), value) {
        (Some(Value::Object(existing)), Value::Object(new)) => merge_object(existing, new),
        (_, value) => {
            container.insert(key, value);
        }
    }
    Ok(())
}

/// `add`/`replace` of `attr.sub` without filter: on the complex value, or on every value of a
/// multi-valued one; creates the attribute when it has none.
fn set_sub_attribute(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    sub: &str,
    value: Value,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let key = key_for(container, target.name);
    let fresh = Value::Object(Map::from_iter([(sub.to_string(), value.clone())]));
    match container.get_mut(&key) {
        None | Some(Value::Null) => {
            let multi = rules.rule(&target.attr_path).multi_valued;
            container.insert(
                key,
                if multi {
                    Value::Array(vec![fresh])
                } else {
                    fresh
                },
            );
        }
        Some(Value::Object(existing)) => set_member(existing, sub, value),
        Some(Value::Array(items)) if items.is_empty() => items.push(fresh),
        Some(Value::Array(items)) => {
            for object in items.iter_mut().filter_map(Value::as_object_mut) {
                set_member(object, sub, value.clone());
            }
        }
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "{} has no sub-attributes",
                target.attr_path
            )));
        }
    }
    Ok(())
}

/// `add`/`replace` through a value filter.
fn set_selected(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    filter: &Filter,
    sub: Option<&str>,
    value: Value,
    op: PatchOpKind,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let key = key_for(container, target.name);
    let matched = matching(container, &key, target, filter, rules)?;
    if matched.is_empty() {
        if op == PatchOpKind::Replace {
            return Err(ScimError::no_target(format!(
                "no value of {} matches [{filter}]",
                target.attr_path
            )));
        }
        let Some(seed) = seed_from_filter(filter) else {
            return Err(ScimError::no_target(format!(
                "no value of {} matches [{filter}], and the filter does not say what value to add",
                target.attr_path
            )));
        };
        let new_value = fill(seed, sub, value, target)?;
        with_list(container, &key, |list| {
            list.push(Value::Object(new_value));
            let added = list.len() - 1;
            settle_primary(list, &[added]);
        });
        return Ok(());
    }
    with_list(container, &key, |list| {
        for &index in &matched {
            let Some(item) = list.get_mut(index) else {
                continue;
            };
            let base = match (op, sub, item.as_object()) {
                (PatchOpKind::Replace, None, _) => seed_from_filter(filter).unwrap_or_default(),
                (_, _, Some(existing)) => existing.clone(),
                (_, _, None) => Map::new(),
            };
            *item = Value::Object(fill(base, sub, value.clone(), target)?);
        }
        settle_primary(list, &matched);
        Ok(())
    })
}

/// `base` with `value` set at `sub`, or merged into it when there is no sub-attribute.
fn fill(
    mut base: Map<String, Value>,
    sub: Option<&str>,
    value: Value,
    target: &Target<'_>,
) -> Result<Map<String, Value>, ScimError> {
    match (sub, value) {
        (Some(sub), value) => set_member(&mut base, sub, value),
        (None, Value::Object(new)) => merge_object(&mut base, new),
        (None, _) => {
            return Err(ScimError::invalid_value(format!(
                "a value filter on {} selects complex values: give an object, or name a sub-attribute",
                target.attr_path
            )));
        }
    }
    Ok(base)
}

/// The indices of the values of the multi-valued attribute `key` that match `filter`.
fn matching(
    container: &Map<String, Value>,
    key: &str,
    target: &Target<'_>,
    filter: &Filter,
    rules: &dyn AttributeRules,
) -> Result<Vec<usize>, ScimError> {
    let items = match container.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "a value filter needs a multi-valued attribute; {} is not",
                target.attr_path
            )));
        }
    };
    let mut matched = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if element_matches(filter, item, &target.attr_path, rules)? {
            matched.push(index);
        }
    }
    Ok(matched)
}

/// The value a filter's `eq` conditions describe (`type eq "work" and primary eq true` gives
/// `{"type": "work", "primary": true}`); `None` for any other filter.
fn seed_from_filter(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.urn.is_none() && path.sub_attr.is_none() && !value.is_null() => {
            Some(Map::from_iter([(path.name.clone(), value.clone())]))
        }
        Filter::And(parts) => parts.iter().try_fold(Map::new(), |mut seed, part| {
            for (key, value) in seed_from_filter(part)? {
                set_member(&mut seed, &key, value);
            }
            Some(seed)
        }),
        _ => None,
    }
}

fn remove(
    container: &mut Map<String, Value>,
    target: &Target<'_>,
    value: Option<&Value>,
    rules: &dyn AttributeRules,
) -> Result<(), ScimError> {
    let Some(key) = find_key(container, target.name) else {
        return Ok(());
    };
    match (target.filter, target.sub) {
        (None, None) => remove_attribute(container, &key, value, value_comparison(target, rules)),
        (None, Some(sub)) => remove_sub_attribute(container, &key, sub),
        (Some(filter), sub) => {
            let matched = matching(container, &key, target, filter, rules)?;
            with_list(container, &key, |list| match sub {
                None => {
                    let mut index = 0;
                    list.retain(|_| {
                        index += 1;
                        !matched.contains(&(index - 1))
                    });
                }
                Some(sub) => {
                    for index in matched {
                        if let Some(object) = list.get_mut(index).and_then(Value::as_object_mut) {
                            remove_member(object, sub);
                        }
                    }
                    list.retain(|item| !is_unassigned(item));
                }
            });
        }
    }
    Ok(())
}

/// Removes the attribute, or only the given values of a multi-valued one.
fn remove_attribute(
    container: &mut Map<String, Value>,
    key: &str,
    value: Option<&Value>,
    comparison: Comparison,
) {
    let listed = matches!(container.get(key), Some(Value::Array(_)));
    match value {
        Some(value @ (Value::Array(_) | Value::Object(_))) if listed => {
            let doomed = into_items(value.clone());
            with_list(container, key, |list| {
                list.retain(|item| !doomed.iter().any(|gone| same_value(item, gone, comparison)));
            });
        }
        _ => {
            container.remove(key);
        }
    }
}

/// Removes `sub` from the complex value, or from every value of a multi-valued one.
fn remove_sub_attribute(container: &mut Map<String, Value>, key: &str, sub: &str) {
    match container.get_mut(key) {
        Some(Value::Object(object)) => remove_member(object, sub),
        Some(Value::Array(items)) => {
            for object in items.iter_mut().filter_map(Value::as_object_mut) {
                remove_member(object, sub);
            }
            items.retain(|item| !is_unassigned(item));
        }
        _ => {}
    }
    drop_if_unassigned(container, key);
}

/// The key `name` has in `container`, or `name` for a new member.
fn key_for(container: &Map<String, Value>, name: &str) -> String {
    find_key(container, name).unwrap_or_else(|| name.to_string())
}

/// Runs `change` on the list at `key` (created when absent, a single value wrapped), and
/// removes the member if the list ends up empty.
fn with_list<R>(
    container: &mut Map<String, Value>,
    key: &str,
    change: impl FnOnce(&mut Vec<Value>) -> R,
) -> R {
    let slot = container
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        let single = slot.take();
        *slot = Value::Array(if single.is_null() {
            Vec::new()
        } else {
            vec![single]
        });
    }
    let mut scratch = Vec::new();
    let list = match slot {
        Value::Array(items) => items,
        _ => &mut scratch,
    };
    let result = change(list);
    drop_if_unassigned(container, key);
    result
}

fn drop_if_unassigned(container: &mut Map<String, Value>, key: &str) {
    if container.get(key).is_some_and(is_unassigned) {
        container.remove(key);
    }
}

/// A list's items: the array's, or the single value.
fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        single => vec![single],
    }
}

/// A plain value given for a complex attribute (or as an item of a multi-valued complex one)
/// becomes `{"value": …}`, as for Entra ID's `manager`.
fn wrap_plain_values(value: Value, path: &AttrPath, rules: &dyn AttributeRules) -> Value {
    if rules.rule(path).kind != AttrKind::Complex {
        return value;
    }
    let wrap = |item: Value| match item {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            Value::Object(Map::from_iter([("value".to_string(), item)]))
        }
        other => other,
    };
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(wrap).collect()),
        single => wrap(single),
    }
}

/// How the `value` sub-attributes of a multi-valued attribute compare.
fn value_comparison(target: &Target<'_>, rules: &dyn AttributeRules) -> Comparison {
    Comparison {
        case_exact: rules.rule(&target.attr_path.child("value")).case_exact,
        date_time: false,
    }
}

/// Whether two values of a multi-valued attribute are the same value: by `value` when both
/// have one, else by equality.
fn same_value(a: &Value, b: &Value, comparison: Comparison) -> bool {
    match (member(a, "value"), member(b, "value")) {
        (Some(a), Some(b)) => comparison.equal(a, b),
        _ => comparison.equal(a, b),
    }
}

/// Updates the value `item` names if the list has it (returning its index), else appends it.
fn merge_or_push(list: &mut Vec<Value>, item: Value, comparison: Comparison) -> usize {
    let Some(index) = list
        .iter()
        .position(|existing| same_value(existing, &item, comparison))
    else {
        list.push(item);
        return list.len() - 1;
    };
    if let (Some(Value::Object(existing)), Value::Object(new)) = (list.get_mut(index), item) {
        merge_object(existing, new);
    }
    index
}

fn is_primary(item: &Value) -> bool {
    member(item, "primary").and_then(Value::as_bool) == Some(true)
}

/// When one of the `touched` values is now primary, no other value stays primary.
fn settle_primary(list: &mut [Value], touched: &[usize]) {
    let Some(winner) = touched
        .iter()
        .rev()
        .copied()
        .find(|&index| list.get(index).is_some_and(is_primary))
    else {
        return;
    };
    for (index, item) in list.iter_mut().enumerate() {
        if index != winner
            && is_primary(item)
            && let Some(object) = item.as_object_mut()
        {
            set_member(object, "primary", Value::Bool(false));
        }
    }
}

/// Sets the members of `new` on `existing` (names matched case-insensitively; null removes).
fn merge_object(existing: &mut Map<String, Value>, new: Map<String, Value>) {
    for (key, value) in new {
        set_member(existing, &key, value);
    }
}

/// Sets member `name` (matched case-insensitively); a null value removes it.
fn set_member(object: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_for(object, name);
    if value.is_null() {
        object.remove(&key);
    } else {
        object.insert(key, value);
    }
}

fn remove_member(object: &mut Map<String, Value>, name: &str) {
    if let Some(key) = find_key(object, name) {
        object.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::patch::PATCH_OP_SCHEMA;
    use crate::path::ENTERPRISE_USER_SCHEMA;
    use crate::rules::{AttributeRule, NoRules, RuleSet};
    use serde_json::json;

    const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "2819c223",
            "externalId": "bjensen",
            "userName": "bjensen@example.com",
            "displayName": "Babs Jensen",
            "active": true,
            "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223", "display": "Babs Jensen"},
                {"value": "902c246b", "display": "Mandy Pepperidge"}
            ]
        })
    }

    fn patch(operations: Value) -> PatchRequest {
        PatchRequest::parse(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations}))
            .unwrap()
    }

    fn applied(resource: &Value, operations: Value) -> Value {
        patch(operations)
            .apply(resource, &RuleSet::rfc7643())
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn refused(resource: &Value, operations: Value) -> ScimError {
        patch(operations)
            .apply(resource, &RuleSet::rfc7643())
            .unwrap_err()
    }

    #[test]
    fn given_entra_boolean_strings_when_replacing_active_then_booleans() {
        let out = applied(
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(out["active"], json!(false));
        let out = applied(
            &out,
            json!([{"op": "Replace", "value": {"active": "True"}}]),
        );
        assert_eq!(out["active"], json!(true));
    }

    #[test]
    fn given_a_boolean_string_that_is_not_true_or_false_when_applied_then_invalid_value() {
        let error = refused(
            &user(),
            json!([{"op": "replace", "path": "active", "value": "yes"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
        assert!(
            error.detail.contains("active is a boolean"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn given_boolean_strings_inside_complex_values_when_added_then_booleans() {
        let out = applied(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "x@y.z", "primary": "TRUE"}]}]),
        );
        assert_eq!(out["emails"][2], json!({"value": "x@y.z", "primary": true}));
    }

    #[test]
    fn given_no_path_and_dotted_keys_when_added_then_sub_attributes_set_and_rest_kept() {
        let out = applied(
            &user(),
            json!([{"op": "Add", "value": {"name.givenName": "Ada", "nickName": "Babs"}}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "Ada", "middleName": "Jane"})
        );
        assert_eq!(out["nickName"], json!("Babs"));
    }

    #[test]
    fn given_no_path_and_urn_qualified_keys_when_replaced_then_extension_set_and_listed() {
        let out = applied(
            &user(),
            json!([{"op": "Replace", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Tour Operations",
                "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Babs"
            }}]),
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"department": "Tour Operations"})
        );
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
        assert_eq!(out["displayName"], json!("Babs"));
    }

    #[test]
    fn given_no_path_and_a_whole_extension_object_when_added_then_its_attributes_set() {
        let out = applied(
            &user(),
            json!([{"op": "add", "value": {ENTERPRISE_USER_SCHEMA: {"employeeNumber": "701984", "manager": {"value": "26"}}}}]),
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "701984", "manager": {"value": "26"}})
        );
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
    }

    #[test]
    fn given_no_path_and_a_core_schema_object_when_replaced_then_top_level_attributes_set() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "value": {USER_SCHEMA: {"displayName": "B", "name.givenName": "Ada"}}}]),
        );
        assert_eq!(out["displayName"], json!("B"));
        assert_eq!(out["name"]["givenName"], json!("Ada"));
        let error = refused(&user(), json!([{"op": "remove", "path": USER_SCHEMA}]));
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn given_entra_manager_as_a_plain_string_when_added_then_a_complex_value() {
        let path = format!("{ENTERPRISE_USER_SCHEMA}:manager");
        let out = applied(
            &user(),
            json!([{"op": "Add", "path": path, "value": "26118915"}]),
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "26118915"})
        );
    }

    #[test]
    fn given_a_simple_path_when_replaced_then_the_attribute_changes_spelt_as_stored() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "DISPLAYNAME", "value": "Barbara J."}]),
        );
        assert_eq!(out["displayName"], json!("Barbara J."));
        assert!(out.get("DISPLAYNAME").is_none());
    }

    #[test]
    fn given_a_sub_attribute_path_when_replaced_then_only_that_sub_attribute_changes() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "name.familyName", "value": "Jansen"}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jansen", "givenName": "Barbara", "middleName": "Jane"})
        );
    }

    #[test]
    fn given_a_sub_attribute_of_a_missing_complex_attribute_when_added_then_created() {
        let out = applied(
            &json!({"schemas": [USER_SCHEMA], "id": "1"}),
            json!([{"op": "add", "path": "name.givenName", "value": "Ada"}]),
        );
        assert_eq!(out["name"], json!({"givenName": "Ada"}));
    }

    #[test]
    fn given_a_complex_value_when_replaced_without_sub_attribute_then_merged() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Ada", "middleName": null}}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "Ada"})
        );
    }

    #[test]
    fn given_a_filtered_sub_attribute_path_when_replaced_then_only_matching_values_change() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@example.com"}]),
        );
        assert_eq!(
            out["emails"],
            json!([
                {"value": "ada@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ])
        );
    }

    #[test]
    fn given_a_filter_matching_nothing_when_replaced_then_no_target() {
        let error = refused(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@y.z"}]),
        );
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(ScimType::NoTarget))
        );
        assert!(
            error
                .detail
                .starts_with("Operations[0]: no value of emails matches"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn given_a_filter_matching_nothing_when_added_then_a_value_built_from_the_filter() {
        let out = applied(
            &user(),
            json!([{"op": "Add", "path": "emails[type eq \"other\"].value", "value": "x@y.z"}]),
        );
        assert_eq!(out["emails"][2], json!({"type": "other", "value": "x@y.z"}));
        let out = applied(
            &json!({"id": "1"}),
            json!([{"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555"}]),
        );
        assert_eq!(
            out["phoneNumbers"],
            json!([{"type": "work", "value": "555"}])
        );
    }

    #[test]
    fn given_a_non_equality_filter_matching_nothing_when_added_then_no_target() {
        let error = refused(
            &user(),
            json!([{"op": "add", "path": "emails[type co \"oth\"].value", "value": "x@y.z"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::NoTarget));
    }

    #[test]
    fn given_a_filtered_whole_value_when_replaced_then_replaced_keeping_the_pinned_type() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@jensen.org"}}]),
        );
        assert_eq!(
            out["emails"][1],
            json!({"type": "home", "value": "new@jensen.org"})
        );
    }

    #[test]
    fn given_a_member_filter_when_removed_then_that_member_only() {
        let out = applied(
            &group(),
            json!([{"op": "remove", "path": "members[value eq \"2819c223\"]"}]),
        );
        assert_eq!(
            out["members"],
            json!([{"value": "902c246b", "display": "Mandy Pepperidge"}])
        );
    }

    #[test]
    fn given_a_member_filter_matching_nothing_when_removed_then_unchanged() {
        let out = applied(
            &group(),
            json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}]),
        );
        assert_eq!(out, group());
        let out = applied(
            &user(),
            json!([{"op": "remove", "path": "phoneNumbers[type eq \"work\"]"}]),
        );
        assert_eq!(out, user());
    }

    #[test]
    fn given_the_last_member_filtered_away_when_removed_then_attribute_unassigned() {
        let once = applied(
            &group(),
            json!([{"op": "remove", "path": "members[value eq \"2819c223\" or value eq \"902c246b\"]"}]),
        );
        assert!(once.get("members").is_none());
    }

    #[test]
    fn given_entra_member_removal_with_a_value_list_when_removed_then_those_members_only() {
        let out = applied(
            &group(),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "902c246b"}]}]),
        );
        assert_eq!(
            out["members"],
            json!([{"value": "2819c223", "display": "Babs Jensen"}])
        );
    }

    #[test]
    fn given_a_whole_multi_valued_attribute_when_removed_then_gone() {
        let out = applied(&group(), json!([{"op": "remove", "path": "members"}]));
        assert!(out.get("members").is_none());
        assert_eq!(out["displayName"], json!("Tour Guides"));
    }

    #[test]
    fn given_members_when_added_then_only_new_values_appended() {
        let out = applied(
            &group(),
            json!([{"op": "add", "path": "members", "value": [{"value": "2819c223"}, {"value": "08e1d05d"}]}]),
        );
        assert_eq!(
            out["members"],
            json!([
                {"value": "2819c223", "display": "Babs Jensen"},
                {"value": "902c246b", "display": "Mandy Pepperidge"},
                {"value": "08e1d05d"}
            ])
        );
    }

    #[test]
    fn given_a_group_without_members_when_members_added_then_list_created() {
        let mut empty = group();
        empty.as_object_mut().unwrap().remove("members");
        let out = applied(
            &empty,
            json!([{"op": "add", "path": "members", "value": {"value": "08e1d05d"}}]),
        );
        assert_eq!(out["members"], json!([{"value": "08e1d05d"}]));
    }

    #[test]
    fn given_members_when_replaced_then_the_list_is_the_new_one() {
        let out = applied(
            &group(),
            json!([{"op": "replace", "path": "members", "value": [{"value": "08e1d05d"}]}]),
        );
        assert_eq!(out["members"], json!([{"value": "08e1d05d"}]));
    }

    #[test]
    fn given_a_new_primary_value_when_added_then_the_old_primary_is_cleared() {
        let out = applied(
            &user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.org", "type": "other", "primary": true}]}]),
        );
        assert_eq!(out["emails"][0]["primary"], json!(false));
        assert_eq!(out["emails"][2]["primary"], json!(true));
    }

    #[test]
    fn given_a_replacement_list_with_two_primaries_when_replaced_then_invalid_value() {
        let error = refused(
            &user(),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn given_sub_attributes_when_removed_then_gone_and_empty_parents_unassigned() {
        let out = applied(
            &user(),
            json!([{"op": "remove", "path": "name.middleName"}, {"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        assert_eq!(
            out["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        let out = applied(
            &json!({"name": {"givenName": "A"}}),
            json!([{"op": "remove", "path": "name.givenName"}]),
        );
        assert_eq!(out, json!({}));
    }

    #[test]
    fn given_remove_without_path_when_applied_then_no_target() {
        let request = PatchRequest {
            operations: vec![PatchOperation {
                op: PatchOpKind::Remove,
                path: None,
                value: None,
            }],
        };
        let error = request.apply(&user(), &NoRules).unwrap_err();
        assert_eq!(
            (error.status, error.scim_type),
            (400, Some(ScimType::NoTarget))
        );
    }

    #[test]
    fn given_read_only_attributes_when_changed_then_mutability() {
        for operations in [
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            json!([{"op": "remove", "path": "id"}]),
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"}]),
            json!([{"op": "add", "value": {"meta": {"version": "W/\"x\""}}}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g1"}]}]),
        ] {
            let error = refused(&user(), operations.clone());
            assert_eq!(
                (error.status, error.scim_type),
                (400, Some(ScimType::Mutability)),
                "{operations}"
            );
        }
    }

    #[test]
    fn given_no_rules_when_id_or_meta_changed_then_still_mutability() {
        let request = patch(json!([{"op": "replace", "path": "meta", "value": {}}]));
        assert_eq!(
            request.apply(&user(), &NoRules).unwrap_err().scim_type,
            Some(ScimType::Mutability)
        );
    }

    #[test]
    fn given_a_read_only_attribute_written_with_its_current_value_when_applied_then_accepted() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "value": {"id": "2819c223", "displayName": "B"}}]),
        );
        assert_eq!(out["id"], json!("2819c223"));
        assert_eq!(out["displayName"], json!("B"));
    }

    #[test]
    fn given_okta_group_rename_carrying_the_id_when_applied_then_renamed() {
        let out = applied(
            &group(),
            json!([{"op": "replace", "value": {"id": "e9e30dba", "displayName": "Guides"}}]),
        );
        assert_eq!(out["displayName"], json!("Guides"));
        assert_eq!(out["id"], json!("e9e30dba"));
    }

    #[test]
    fn given_an_immutable_attribute_when_set_once_then_accepted_and_changed_later_refused() {
        let rules = RuleSet::rfc7643().with(
            AttrPath::new("employeeId"),
            AttributeRule::string().mutability(Mutability::Immutable),
        );
        let first = patch(json!([{"op": "add", "path": "employeeId", "value": "E1"}]))
            .apply(&user(), &rules)
            .unwrap();
        assert_eq!(first["employeeId"], json!("E1"));
        let error = patch(json!([{"op": "replace", "path": "employeeId", "value": "E2"}]))
            .apply(&first, &rules)
            .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn given_a_later_operation_failing_when_applied_then_error_and_input_untouched() {
        let input = user();
        let error = refused(
            &input,
            json!([{"op": "replace", "path": "displayName", "value": "X"}, {"op": "remove", "path": "id"}]),
        );
        assert!(
            error.detail.starts_with("Operations[1]: "),
            "{}",
            error.detail
        );
        assert_eq!(input, user());
    }

    #[test]
    fn given_an_extension_attribute_when_its_last_attribute_is_removed_then_extension_unlisted() {
        let path = format!("{ENTERPRISE_USER_SCHEMA}:department");
        let added = applied(
            &user(),
            json!([{"op": "add", "path": path, "value": "Ops"}]),
        );
        assert_eq!(
            added["schemas"],
            json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA])
        );
        let removed = applied(&added, json!([{"op": "remove", "path": path}]));
        assert_eq!(removed, user());
    }

    #[test]
    fn given_a_whole_extension_path_when_removed_then_extension_gone() {
        let added = applied(
            &user(),
            json!([{"op": "add", "path": ENTERPRISE_USER_SCHEMA, "value": {"department": "Ops"}}]),
        );
        assert_eq!(added[ENTERPRISE_USER_SCHEMA], json!({"department": "Ops"}));
        let removed = applied(
            &added,
            json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA}]),
        );
        assert_eq!(removed, user());
    }

    #[test]
    fn given_a_null_value_when_replaced_then_attribute_unassigned() {
        let out = applied(
            &user(),
            json!([{"op": "replace", "path": "displayName", "value": null}]),
        );
        assert!(out.get("displayName").is_none());
    }

    #[test]
    fn given_a_value_filter_on_a_single_valued_attribute_when_applied_then_invalid_path() {
        let error = refused(
            &user(),
            json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": {"a": 1}}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn given_a_scalar_value_for_a_filtered_whole_value_when_replaced_then_invalid_value() {
        let error = refused(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": "x@y.z"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn given_an_entra_user_update_when_applied_twice_then_same_resource() {
        let request = patch(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"other\"].value", "value": "o@x.org"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "w@x.org"},
            {"op": "Add", "value": {"name.givenName": "Ada", format!("{ENTERPRISE_USER_SCHEMA}:department"): "Ops"}},
            {"op": "Remove", "path": "name.middleName"}
        ]));
        let once = request.apply(&user(), &RuleSet::rfc7643()).unwrap();
        let twice = request.apply(&once, &RuleSet::rfc7643()).unwrap();
        assert_eq!(once, twice);
        assert_eq!(once["emails"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn given_a_group_membership_change_when_applied_twice_then_same_group() {
        let request = patch(json!([
            {"op": "Add", "path": "members", "value": [{"value": "08e1d05d"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "902c246b"}]},
            {"op": "Replace", "path": "displayName", "value": "Guides"}
        ]));
        let once = request.apply(&group(), &RuleSet::rfc7643()).unwrap();
        assert_eq!(request.apply(&once, &RuleSet::rfc7643()).unwrap(), once);
        assert_eq!(
            once["members"],
            json!([{"value": "2819c223", "display": "Babs Jensen"}, {"value": "08e1d05d"}])
        );
    }

    #[test]
    fn given_a_resource_that_is_not_an_object_when_patched_then_invalid_syntax() {
        let error = patch(json!([{"op": "add", "path": "a", "value": 1}]))
            .apply(&json!([]), &NoRules)
            .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidSyntax));
    }
}
