//! What the service says about itself (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`,
//! RFC 7644 §4) and the attribute rules its resources follow.

use std::collections::BTreeMap;

use idstream_domain::attributes::{AttributeDefinition, AttributeType};
use idstream_scim::{AttrKind, AttrPath, AttributeRule, Mutability, RuleSet};
use serde_json::{Value, json};

use super::{ENTERPRISE_SCHEMA, Endpoint, GROUP_SCHEMA, MAX_RESULTS, USER_SCHEMA};

/// The extension schema holding the values of the tenant's user attributes, each under its
/// attribute name.
pub const ATTRIBUTES_SCHEMA: &str =
    "urn:idstream:params:scim:schemas:extension:attributes:2.0:User";

/// The enterprise extension's attributes (RFC 7643 §4.3) that map to a tenant's user attribute,
/// with the attribute name that holds them: a tenant that defines `department` sees and sets it
/// as `urn:…:enterprise:2.0:User:department` (and not in [`ATTRIBUTES_SCHEMA`]).
pub const ENTERPRISE_ATTRIBUTES: [(&str, &str); 5] = [
    ("employeeNumber", "employee_number"),
    ("costCenter", "cost_center"),
    ("organization", "organization"),
    ("division", "division"),
    ("department", "department"),
];

/// The bulk limits the service announces (and enforces).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// The enterprise attribute a tenant attribute appears as, if any.
pub(crate) fn enterprise_name(attribute: &str) -> Option<&'static str> {
    ENTERPRISE_ATTRIBUTES
        .iter()
        .find(|(_, name)| *name == attribute)
        .map(|(scim, _)| *scim)
}

/// The rules of user and group resources in a tenant with these attribute definitions.
pub(crate) fn rules(definitions: &BTreeMap<String, AttributeDefinition>) -> RuleSet {
    let mut rules = RuleSet::rfc7643()
        .with_schema(ATTRIBUTES_SCHEMA)
        .with(
            AttrPath::new("groups"),
            AttributeRule::of_kind(AttrKind::Complex)
                .multi_valued()
                .mutability(Mutability::ReadOnly),
        )
        .with(
            AttrPath::with_sub("emails", "value"),
            AttributeRule::string(),
        );
    for (name, definition) in definitions {
        let kind = match definition.kind {
            AttributeType::Number => AttrKind::Number,
            AttributeType::Boolean => AttrKind::Boolean,
            AttributeType::Text | AttributeType::Date | AttributeType::OneOf => AttrKind::String,
        };
        let path = match enterprise_name(name) {
            Some(scim) => AttrPath::new(scim).in_schema(ENTERPRISE_SCHEMA),
            None => AttrPath::new(name.as_str()).in_schema(ATTRIBUTES_SCHEMA),
        };
        rules.insert(&path, AttributeRule::of_kind(kind));
    }
    rules
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(endpoint: &Endpoint) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": format!("{}/ServiceProviderConfig", endpoint.base),
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": super::MAX_BULK_OPERATIONS,
            "maxPayloadSize": MAX_PAYLOAD_BYTES,
        },
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "API key",
            "description": "An idstream API key of the tenant (Authorization: Bearer ids_…) holding scim:read, and scim:update to make changes",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", endpoint.base),
        },
    })
}

/// `GET /ResourceTypes`: User (with its two extensions) and Group.
pub fn resource_types(endpoint: &Endpoint) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "The tenant's members",
            "schema": USER_SCHEMA,
            "schemaExtensions": [
                {"schema": ENTERPRISE_SCHEMA, "required": false},
                {"schema": ATTRIBUTES_SCHEMA, "required": false},
            ],
            "meta": {"resourceType": "ResourceType", "location": endpoint.location("ResourceTypes", "User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "The tenant's roles",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": endpoint.location("ResourceTypes", "Group")},
        }),
    ]
}

fn attribute(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

fn with(mut attribute: Value, changes: Value) -> Value {
    if let (Some(target), Some(changes)) = (attribute.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            target.insert(key.clone(), value.clone());
        }
    }
    attribute
}

fn complex(name: &str, description: &str, multi: bool, subs: Vec<Value>) -> Value {
    with(
        attribute(name, "complex", description),
        json!({"multiValued": multi, "subAttributes": subs}),
    )
}

/// A multi-valued attribute of which the service keeps one value (`type` work, primary).
fn multi_value(name: &str, description: &str) -> Value {
    let read_only = json!({"mutability": "readOnly"});
    complex(
        name,
        description,
        true,
        vec![
            attribute("value", "string", "The value"),
            with(
                attribute("type", "string", "work: the service keeps one value"),
                read_only.clone(),
            ),
            with(
                attribute("primary", "boolean", "true: the service keeps one value"),
                read_only,
            ),
        ],
    )
}

fn reference(name: &str, description: &str, to: &str) -> Value {
    with(
        attribute(name, "reference", description),
        json!({"referenceTypes": [to], "caseExact": true}),
    )
}

fn schema(
    id: &str,
    name: &str,
    description: &str,
    attributes: Vec<Value>,
    endpoint: &Endpoint,
) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": endpoint.location("Schemas", id)},
    })
}

/// `GET /Schemas`: the User, Group, enterprise and attribute-extension schemas of the tenant.
pub fn schemas(
    endpoint: &Endpoint,
    definitions: &BTreeMap<String, AttributeDefinition>,
) -> Vec<Value> {
    let read_only = json!({"mutability": "readOnly"});
    let user = vec![
        with(
            attribute(
                "userName",
                "string",
                "The name the provisioning client gives the person (their email address unless it gives another), unique in the tenant",
            ),
            json!({"required": true, "uniqueness": "server"}),
        ),
        complex(
            "name",
            "The person's name",
            false,
            vec![
                with(
                    attribute(
                        "formatted",
                        "string",
                        "The full name, made of the two others",
                    ),
                    read_only.clone(),
                ),
                attribute("givenName", "string", "The first name"),
                attribute("familyName", "string", "The last name"),
            ],
        ),
        with(
            attribute(
                "displayName",
                "string",
                "The full name, or the address without one",
            ),
            read_only.clone(),
        ),
        with(
            multi_value(
                "emails",
                "The person's email address, unique across the service; the person changes it themselves",
            ),
            json!({"required": true}),
        ),
        multi_value(
            "phoneNumbers",
            "The phone number in international form (+ and the country code, or a tel: URI), kept as E.164",
        ),
        with(
            attribute(
                "preferredLanguage",
                "string",
                "The language of mails and pages",
            ),
            json!({"canonicalValues": idstream_domain::tenant::LANGUAGES}),
        ),
        attribute(
            "active",
            "boolean",
            "false: deactivated (no sign-in and no access)",
        ),
        with(
            complex(
                "groups",
                "The person's roles in the tenant",
                true,
                vec![
                    attribute("value", "string", "The role's name"),
                    attribute("display", "string", "The role's label"),
                    reference("$ref", "The group", "Group"),
                ],
            ),
            read_only.clone(),
        ),
        with(
            attribute(
                "password",
                "string",
                "Not accepted: people set their password themselves",
            ),
            json!({"mutability": "writeOnly", "returned": "never"}),
        ),
    ];
    let group = vec![
        with(
            attribute("displayName", "string", "The role's label"),
            json!({"required": true}),
        ),
        complex(
            "members",
            "The role's holders",
            true,
            vec![
                with(
                    attribute("value", "string", "A user's id"),
                    json!({"mutability": "immutable"}),
                ),
                with(
                    reference("$ref", "The user", "User"),
                    json!({"mutability": "immutable"}),
                ),
                with(
                    attribute("type", "string", "User"),
                    json!({"mutability": "immutable", "canonicalValues": ["User"]}),
                ),
            ],
        ),
    ];
    let mut enterprise = Vec::new();
    let mut extension = Vec::new();
    for (name, definition) in definitions {
        let kind = match definition.kind {
            AttributeType::Number => "decimal",
            AttributeType::Boolean => "boolean",
            AttributeType::Text | AttributeType::Date | AttributeType::OneOf => "string",
        };
        let mut described = with(
            attribute(
                enterprise_name(name).unwrap_or(name),
                kind,
                &definition.label,
            ),
            json!({"required": definition.required}),
        );
        if !definition.options.is_empty() {
            described = with(described, json!({"canonicalValues": definition.options}));
        }
        match enterprise_name(name) {
            Some(_) => enterprise.push(described),
            None => extension.push(described),
        }
    }
    vec![
        schema(
            USER_SCHEMA,
            "User",
            "A member of the tenant",
            user,
            endpoint,
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            "A role of the tenant",
            group,
            endpoint,
        ),
        schema(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "The enterprise attributes the tenant defines as user attributes",
            enterprise,
            endpoint,
        ),
        schema(
            ATTRIBUTES_SCHEMA,
            "Attributes",
            "The tenant's other user attributes",
            extension,
            endpoint,
        ),
    ]
}
