//! Properties of the SCIM core over generated input: the parsers never panic, filters print and
//! parse back to the same tree, sorting is a consistent order, and PATCH is idempotent.

use std::cmp::Ordering;

use idstream_scim::{
    AttrPath, CompareOp, Filter, Paging, PatchPath, PatchRequest, Projection, RuleSet, Sort,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223",
        "userName": "bjensen@example.com",
        "displayName": "Babs Jensen",
        "active": true,
        "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "members": [{"value": "m1"}, {"value": "m2", "display": "Two"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"}
    })
}

/// Pieces of filter syntax, glued together in any order to reach deep into the parser.
fn filter_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "userName",
        "emails",
        "name.givenName",
        "type",
        "value",
        ".",
        ":",
        "eq",
        "ne",
        "co",
        "sw",
        "gt",
        "le",
        "pr",
        "and",
        "or",
        "not",
        "(",
        ")",
        "[",
        "]",
        "\"x\"",
        "\"",
        "\\",
        "\\u12",
        "1",
        "-",
        "1.5e3",
        "true",
        "null",
        " ",
        " ",
        "urn:ietf:params:scim:schemas:core:2.0:User:",
        "é",
        "\u{0}",
        "$ref",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

fn leaf_path() -> impl Strategy<Value = AttrPath> {
    prop::sample::select(vec![
        AttrPath::new("userName"),
        AttrPath::with_sub("name", "givenName"),
        AttrPath::new("emails"),
        AttrPath::with_sub("emails", "value"),
        AttrPath::new("employeeNumber").in_schema(ENTERPRISE),
        AttrPath::new("displayName").in_schema("urn:ietf:params:scim:schemas:core:2.0:User"),
        AttrPath::with_sub("meta", "lastModified"),
    ])
}

fn sub_path() -> impl Strategy<Value = AttrPath> {
    prop::sample::select(vec!["type", "value", "display", "$ref"]).prop_map(AttrPath::new)
}

fn literal(ordering: bool) -> BoxedStrategy<Value> {
    let text = any::<String>().prop_map(Value::String);
    let integer = any::<i64>().prop_map(Value::from);
    let decimal = (-1e12f64..1e12).prop_map(Value::from);
    if ordering {
        prop_oneof![text, integer, decimal].boxed()
    } else {
        prop_oneof![
            text,
            integer,
            decimal,
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null)
        ]
        .boxed()
    }
}

fn comparison(paths: BoxedStrategy<AttrPath>) -> impl Strategy<Value = Filter> {
    let op = prop::sample::select(CompareOp::ALL.to_vec());
    (paths, op).prop_flat_map(|(path, op)| {
        literal(op.is_ordering()).prop_map(move |value| Filter::Compare {
            path: path.clone(),
            op,
            value,
        })
    })
}

/// Logical trees of `leaf`.
fn logical(leaf: BoxedStrategy<Filter>) -> impl Strategy<Value = Filter> {
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
            inner.prop_map(|filter| Filter::Not(Box::new(filter))),
        ]
    })
}

fn filter_tree() -> impl Strategy<Value = Filter> {
    let value_filter = logical(
        prop_oneof![
            comparison(sub_path().boxed()),
            sub_path().prop_map(Filter::Present)
        ]
        .boxed(),
    );
    let value_path = (
        prop::sample::select(vec!["emails", "members", "addresses"]),
        value_filter,
    )
        .prop_map(|(name, filter)| Filter::ValuePath {
            path: AttrPath::new(name),
            filter: Box::new(filter),
        });
    let leaf = prop_oneof![
        comparison(leaf_path().boxed()),
        leaf_path().prop_map(Filter::Present),
        value_path
    ];
    logical(leaf.boxed())
}

/// PATCH operations grouped by the attribute they touch; one per group is picked.
fn operation_groups() -> Vec<BoxedStrategy<Value>> {
    let word = || {
        prop::sample::select(vec![
            "a", "B", "work", "home", "other", "x@y.org", "X@Y.ORG", "m1", "m3",
        ])
    };
    let kind = || prop::sample::select(vec!["work", "home", "other"]);
    vec![
        prop_oneof![
            word().prop_map(|w| json!({"op": "replace", "path": "displayName", "value": w})),
            word().prop_map(|w| json!({"op": "Add", "value": {"displayName": w}})),
            Just(json!({"op": "remove", "path": "displayName"})),
        ]
        .boxed(),
        prop::sample::select(vec![json!("True"), json!("false"), json!(true)])
            .prop_map(|v| json!({"op": "Replace", "path": "active", "value": v}))
            .boxed(),
        prop_oneof![
            word().prop_map(|w| json!({"op": "add", "value": {"name.givenName": w}})),
            (word(), word()).prop_map(|(a, b)| json!({"op": "replace", "path": "name", "value": {"givenName": a, "familyName": b}})),
            Just(json!({"op": "remove", "path": "name.middleName"})),
            Just(json!({"op": "remove", "path": "name"})),
        ]
        .boxed(),
        prop_oneof![
            (word(), kind(), any::<bool>())
                .prop_map(|(w, k, p)| json!({"op": "add", "path": "emails", "value": [{"value": w, "type": k, "primary": p}]})),
            (kind(), word()).prop_map(|(k, w)| json!({"op": "Add", "path": format!("emails[type eq \"{k}\"].value"), "value": w})),
            (kind(), word()).prop_map(|(k, w)| json!({"op": "Replace", "path": format!("emails[type eq \"{k}\"].value"), "value": w})),
            kind().prop_map(|k| json!({"op": "add", "path": format!("emails[type eq \"{k}\"].primary"), "value": "True"})),
            (kind(), word()).prop_map(|(k, w)| json!({"op": "replace", "path": format!("emails[type eq \"{k}\"]"), "value": {"value": w}})),
            kind().prop_map(|k| json!({"op": "remove", "path": format!("emails[type eq \"{k}\"]")})),
            word().prop_map(|w| json!({"op": "remove", "path": format!("emails[value eq \"{w}\"]")})),
            (word(), kind()).prop_map(|(w, k)| json!({"op": "replace", "path": "emails", "value": [{"value": w, "type": k}]})),
        ]
        .boxed(),
        prop_oneof![
            prop::collection::vec(word(), 0..3).prop_map(|ws| {
                let members: Vec<Value> = ws.into_iter().map(|w| json!({"value": w})).collect();
                json!({"op": "Add", "path": "members", "value": members})
            }),
            word().prop_map(|w| json!({"op": "remove", "path": format!("members[value eq \"{w}\"]")})),
            word().prop_map(|w| json!({"op": "Remove", "path": "members", "value": [{"value": w}]})),
            word().prop_map(|w| json!({"op": "replace", "path": "members", "value": [{"value": w}]})),
        ]
        .boxed(),
        prop_oneof![
            word().prop_map(|w| json!({"op": "Add", "value": {format!("{ENTERPRISE}:department"): w}})),
            word().prop_map(|w| json!({"op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": w})),
            Just(json!({"op": "remove", "path": format!("{ENTERPRISE}:department")})),
            Just(json!({"op": "remove", "path": ENTERPRISE})),
        ]
        .boxed(),
    ]
}

fn patch_body() -> impl Strategy<Value = Value> {
    let groups = operation_groups();
    let count = groups.len();
    prop::sample::subsequence((0..count).collect::<Vec<_>>(), 1..=count)
        .prop_flat_map(move |chosen| chosen.into_iter().map(|index| groups[index].clone()).collect::<Vec<_>>())
        .prop_shuffle()
        .prop_map(|operations| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}))
}

/// The user with a generated list of e-mails (types and values repeating, several primaries).
fn patch_base() -> impl Strategy<Value = Value> {
    let email = (
        prop::sample::select(vec!["a", "x@y.org", "X@Y.ORG", "b@c.d"]),
        prop::sample::select(vec!["work", "home", "other"]),
        any::<bool>(),
    )
        .prop_map(
            |(value, kind, primary)| json!({"value": value, "type": kind, "primary": primary}),
        );
    prop::collection::vec(email, 0..4).prop_map(|emails| {
        let mut base = user();
        base["emails"] = Value::Array(emails);
        base
    })
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        prop::sample::select(vec![
            "add",
            "Remove",
            "replace",
            "emails",
            "members[value eq \"m1\"]",
            "name.givenName",
            "",
            "True"
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "op",
                    "path",
                    "value",
                    "Operations",
                    "schemas",
                    "type",
                    "primary",
                    "displayName"
                ])
                .prop_map(str::to_string),
                inner,
                0..4,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn sortable_user() -> impl Strategy<Value = Value> {
    let title = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        any::<i16>().prop_map(|n| Some(Value::from(n))),
        prop::sample::select(vec!["a", "B", "b", "", "2020-01-01T00:00:00Z"])
            .prop_map(|s| Some(Value::from(s))),
    ];
    title.prop_map(|title| match title {
        Some(title) => json!({"title": title}),
        None => json!({}),
    })
}

proptest! {
    #[test]
    fn given_any_string_when_parsed_as_filter_then_no_panic_and_errors_are_invalid_filter(text in any::<String>()) {
        if let Err(error) = Filter::parse(&text) {
            prop_assert_eq!(error.status, 400);
            prop_assert_eq!(error.scim_type, Some(idstream_scim::ScimType::InvalidFilter));
        }
    }

    #[test]
    fn given_filter_like_soup_when_parsed_and_evaluated_then_no_panic(text in filter_soup()) {
        if let Ok(filter) = Filter::parse(&text) {
            let _ = filter.matches(&user(), &RuleSet::rfc7643());
            prop_assert_eq!(Filter::parse(&filter.to_string()), Ok(filter));
        }
    }

    #[test]
    fn given_any_string_when_parsed_as_paths_and_parameters_then_no_panic(text in any::<String>(), soup in filter_soup()) {
        for input in [text.as_str(), soup.as_str()] {
            let _ = AttrPath::parse(input);
            let _ = PatchPath::parse(input);
            let _ = Projection::parse(Some(input), Some(input)).map(|projection| projection.apply(&user(), &RuleSet::rfc7643()));
            let _ = Sort::parse(Some(input), Some(input));
            let _ = Paging::parse(Some(input), Some(input), 100);
        }
    }

    #[test]
    fn given_a_filter_tree_when_printed_then_it_parses_back_to_the_same_tree(filter in filter_tree()) {
        let text = filter.to_string();
        prop_assert_eq!(Filter::parse(&text), Ok(filter.clone()), "{}", text);
    }

    #[test]
    fn given_a_filter_tree_when_evaluated_then_no_panic_and_not_negates(filter in filter_tree()) {
        let rules = RuleSet::rfc7643();
        if let Ok(matched) = filter.matches(&user(), &rules) {
            let negated = Filter::Not(Box::new(filter));
            prop_assert_eq!(negated.matches(&user(), &rules), Ok(!matched));
        }
    }

    #[test]
    fn given_a_patch_when_applied_twice_then_the_same_resource(body in patch_body(), base in patch_base()) {
        let rules = RuleSet::rfc7643();
        let request = PatchRequest::parse(&body).unwrap();
        if let Ok(once) = request.apply(&base, &rules) {
            prop_assert_eq!(request.apply(&once, &rules), Ok(once.clone()), "{}", body);
        }
    }

    #[test]
    fn given_any_json_as_a_patch_body_when_parsed_and_applied_then_no_panic(operations in any_json(), value in any_json()) {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [operations, {"op": "add", "path": "x", "value": value}]});
        let input = user();
        if let Ok(request) = PatchRequest::parse(&body) {
            let _ = request.apply(&input, &RuleSet::rfc7643());
        }
        prop_assert_eq!(input, user());
    }

    #[test]
    fn given_two_resources_when_sorted_then_the_comparator_is_antisymmetric(a in sortable_user(), b in sortable_user(), descending in any::<bool>()) {
        let order = if descending { "descending" } else { "ascending" };
        let sort = Sort::parse(Some("title"), Some(order)).unwrap().unwrap();
        let rules = RuleSet::rfc7643();
        prop_assert_eq!(sort.compare(&a, &b, &rules), sort.compare(&b, &a, &rules).reverse());
        prop_assert_eq!(sort.compare(&a, &a, &rules), Ordering::Equal);
    }
}
