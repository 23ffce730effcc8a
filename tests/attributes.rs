//! Custom user attributes (issue 15, item 3) against the real binary: a tenant defines its own
//! typed attributes; administrators and (for user-editable ones) the users themselves set
//! values, which are checked, shown in the directory and `/v1/auth/me`, searchable when the
//! tenant says so, given at creation, by bulk requests and by CSV imports (with phone numbers).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::service::{Answer, Service};
use crate::support::world::join;

const PASSWORD: &str = "Attribute-Test-Passphrase-1";

/// Runs a request that must be refused with `code`, appending nothing.
async fn refused(svc: &Service, answer: impl Future<Output = Answer>, status: u16, code: &str) {
    let before = svc.log_position().await;
    answer.await.assert_problem(status, code);
    assert_eq!(svc.log_position().await, before, "{code}: nothing appended");
}

fn define(kind: &str) -> Value {
    json!({"label": "An attribute", "type": kind})
}

async fn listing(svc: &Service, query: &str, at: u64) -> Vec<Value> {
    let answer = svc
        .get_at(&format!("/v1/tenants/acme/users?{query}"), at)
        .await;
    assert_eq!(answer.status, 200, "{query}: {answer:?}");
    answer.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn tenants_define_typed_attributes_that_members_hold_find_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let attrs = "/v1/tenants/acme/attributes";

    // Definitions: checked, refused plainly.
    let department = json!({"label": "Department", "type": "text",
                            "user_editable": true, "searchable": true});
    let employee_no = json!({"label": "Employee number", "type": "number", "required": true,
                             "searchable": true});
    let shift = json!({"label": "Shift", "type": "one_of", "options": ["Early", "Late"],
                       "user_editable": true});
    for (name, body) in [
        ("department", &department),
        ("employee_no", &employee_no),
        ("shift", &shift),
        ("remote", &define("boolean")),
        ("start_date", &define("date")),
    ] {
        let defined = svc.put(&format!("{attrs}/{name}"), body.clone()).await;
        assert_eq!(defined.status, 200, "{name}: {defined:?}");
    }
    let again = svc
        .put(&format!("{attrs}/department"), department.clone())
        .await;
    assert_eq!(
        again.status, 200,
        "defining it again as it is changes nothing"
    );
    for body in [
        json!({"label": "Shift", "type": "one_of"}),
        json!({"label": "Shift", "type": "one_of", "options": ["A", "A"]}),
        json!({"label": "Nr", "type": "number", "options": ["1"]}),
        json!({"label": " ", "type": "text"}),
    ] {
        let path = format!("{attrs}/broken");
        refused(
            &svc,
            svc.put(&path, body),
            422,
            "invalid_attribute_definition",
        )
        .await;
    }
    let path = format!("{attrs}/Broken");
    refused(&svc, svc.put(&path, define("text")), 400, "invalid_path").await;
    let path = format!("{attrs}/broken");
    let colour = json!({"label": "x", "type": "colour"});
    refused(&svc, svc.put(&path, colour), 422, "invalid_body").await;
    let path = format!("{attrs}/never_defined");
    refused(&svc, svc.delete(&path), 404, "attribute_not_found").await;
    let listed = svc.get(attrs).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let names: Vec<&str> = listed.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["department", "employee_no", "remote", "shift", "start_date"]
    );
    assert_eq!(
        listed.body["attributes"][3]["options"],
        json!(["Early", "Late"])
    );

    // Creating a user: required attributes must be given, values must fit; nothing is taken
    // by a refusal (the address stays free).
    let users = "/v1/tenants/acme/users";
    let ada = json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
                     "roles": ["user"]});
    refused(
        &svc,
        svc.post(users, ada.clone()),
        422,
        "attribute_required",
    )
    .await;
    let mut bad = ada.clone();
    bad["attributes"] = json!({"employee_no": "forty-two"});
    refused(&svc, svc.post(users, bad), 422, "invalid_attribute_value").await;
    let mut bad = ada.clone();
    bad["attributes"] = json!({"employee_no": 42, "badge": "x"});
    refused(&svc, svc.post(users, bad), 422, "unknown_attribute").await;
    let mut ada = ada;
    ada["phone"] = json!("+44 7700 900123");
    ada["attributes"] = json!({"employee_no": 42, "department": " Research ",
                               "start_date": "2026-03-01"});
    let created = svc.post(users, ada).await;
    assert_eq!(created.status, 201, "{created:?}");
    let ada_id = created.body["id"].as_str().unwrap().to_owned();
    let ada_attrs = format!("/v1/tenants/acme/users/{ada_id}/attributes");
    let shown = svc.get_at(&ada_attrs, created.position()).await;
    assert_eq!(
        shown.body["attributes"],
        json!({"employee_no": 42, "department": "Research", "start_date": "2026-03-01"})
    );
    let row = listing(&svc, "q=ada%40", created.position()).await;
    assert_eq!(row[0]["phone"], "+447700900123", "{row:?}");
    assert_eq!(row[0]["attributes"]["department"], "Research", "{row:?}");

    // A member sets their own user-editable attributes, not the others; clearing a required
    // one is refused to anyone.
    let grace = join(&svc, "grace@example.com", "acme", &["user"], PASSWORD).await;
    let grace_attrs = format!("/v1/tenants/acme/users/{}/attributes", grace.id);
    let as_grace = |method: Method, body: Value| {
        svc.send(
            svc.request_as(&grace.token, method, &grace_attrs)
                .json(&body),
        )
    };
    let own = as_grace(Method::PATCH, json!({"department": "Ops", "shift": "late"})).await;
    assert_eq!(own.status, 422, "options are exact in a body: {own:?}");
    let own = as_grace(Method::PATCH, json!({"department": "Ops", "shift": "Late"})).await;
    assert_eq!(own.status, 200, "{own:?}");
    refused(
        &svc,
        as_grace(Method::PATCH, json!({"employee_no": 7})),
        403,
        "attribute_not_editable",
    )
    .await;
    let set = svc
        .patch(&grace_attrs, json!({"employee_no": 7, "remote": true}))
        .await;
    assert_eq!(set.status, 200, "an administrator sets any: {set:?}");
    refused(
        &svc,
        svc.patch(&grace_attrs, json!({"employee_no": null})),
        422,
        "attribute_required",
    )
    .await;
    refused(
        &svc,
        svc.patch(&grace_attrs, json!({"remote": "yes"})),
        422,
        "invalid_attribute_value",
    )
    .await;
    let me = svc
        .send(
            svc.request_as(&grace.token, Method::GET, "/v1/auth/me")
                .header("x-idstream-min-position", set.position()),
        )
        .await;
    assert_eq!(
        me.body["user"]["attributes"],
        json!({"department": "Ops", "shift": "Late", "employee_no": 7, "remote": true}),
        "{me:?}"
    );
    // Other members do not read someone else's values; another tenant does not see them exist.
    let peek = svc
        .send(svc.request_as(&grace.token, Method::GET, &ada_attrs))
        .await;
    peek.assert_problem(403, "forbidden");
    let beta_admin = join(&svc, "boss@example.com", "beta", &["admin"], PASSWORD).await;
    let peek = svc
        .send(svc.request_as(&beta_admin.token, Method::GET, &ada_attrs))
        .await;
    peek.assert_problem(404, "tenant_not_found");
    let stranger = svc
        .get(&format!("/v1/tenants/beta/users/{ada_id}/attributes"))
        .await;
    stranger.assert_problem(404, "user_not_found");

    // The directory filters by searchable attributes (text without regard to case), every
    // filter holding; not by the others.
    let found = listing(&svc, "attribute=department:ops", set.position()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["email"], "grace@example.com");
    let found = listing(
        &svc,
        "attribute=department:research&attribute=employee_no:42",
        set.position(),
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    let none = listing(
        &svc,
        "attribute=department:research&attribute=employee_no:7",
        set.position(),
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    svc.get("/v1/tenants/acme/users?attribute=remote:true")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/tenants/acme/users?attribute=employee_no:many")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/users?attribute=department:ops")
        .await
        .assert_problem(400, "invalid_query");

    // A changed type hides the values that no longer fit; removing hides them all; defining
    // again shows those that fit.
    let retyped = svc.put(&format!("{attrs}/remote"), define("date")).await;
    assert_eq!(retyped.status, 200);
    let shown = svc.get_at(&grace_attrs, retyped.position()).await;
    assert!(
        shown.body["attributes"].get("remote").is_none(),
        "{shown:?}"
    );
    let removed = svc.delete(&format!("{attrs}/department")).await;
    assert_eq!(removed.status, 200);
    let row = listing(&svc, "q=grace", removed.position()).await;
    assert!(row[0]["attributes"].get("department").is_none(), "{row:?}");
    svc.get("/v1/tenants/acme/users?attribute=department:ops")
        .await
        .assert_problem(400, "invalid_query");
    let back = svc.put(&format!("{attrs}/department"), department).await;
    let shown = svc.get_at(&grace_attrs, back.position()).await;
    assert_eq!(shown.body["attributes"]["department"], "Ops", "{shown:?}");

    // Bulk: set_attributes per member, create with attributes.
    let bulk = svc
        .post(
            "/v1/tenants/acme/users/bulk",
            json!({"operations": [
                {"op": "set_attributes", "user": grace.id, "attributes": {"shift": "Early"}},
                {"op": "set_attributes", "user": grace.id, "attributes": {"shift": "Night"}},
                {"op": "create", "email": "lin@example.com", "attributes": {"employee_no": 9}},
                {"op": "create", "email": "max@example.com"},
            ]}),
        )
        .await;
    assert_eq!(bulk.status, 200, "{bulk:?}");
    let results = bulk.body["results"].as_array().unwrap();
    assert_eq!(results[0]["result"], "done", "{bulk:?}");
    assert_eq!(
        results[1]["problem"]["code"], "invalid_attribute_value",
        "{bulk:?}"
    );
    assert_eq!(results[2]["result"], "done", "{bulk:?}");
    assert_eq!(
        results[3]["problem"]["code"], "attribute_required",
        "{bulk:?}"
    );

    // CSV import: phone numbers and attributes for new users; attributes for existing ones; an
    // existing user's other phone number makes the row invalid.
    let csv = "email,first_name,last_name,roles,phone,attributes\n\
               kim@example.com,Kim,Lee,user,+1 415 555 0199,employee_no=11;shift=late;remote=2026-05-01\n\
               grace@example.com,,,user,,department=Sales;shift=\n\
               ada@example.com,,,,+1 415 555 0100,\n\
               zoe@example.com,Zoe,,user,,employee_no=twelve\n\
               yan@example.com,Yan,,user,,\n";
    let plan = svc
        .post(
            "/v1/tenants/acme/users/import",
            json!({"csv": csv, "dry_run": true}),
        )
        .await;
    assert_eq!(plan.status, 200, "{plan:?}");
    let rows = plan.body["rows"].as_array().unwrap();
    assert_eq!(rows[0]["action"], "create", "{plan:?}");
    assert_eq!(
        rows[0]["attributes"],
        json!({"employee_no": 11, "shift": "Late", "remote": "2026-05-01"})
    );
    assert_eq!(rows[1]["action"], "update", "{plan:?}");
    assert_eq!(
        rows[1]["attributes"],
        json!({"department": "Sales", "shift": null})
    );
    assert_eq!(rows[2]["action"], "invalid", "{plan:?}");
    assert_eq!(
        rows[3]["problem"]["code"], "invalid_attribute_value",
        "{plan:?}"
    );
    assert_eq!(rows[4]["problem"]["code"], "attribute_required", "{plan:?}");
    let imported = svc
        .post(
            "/v1/tenants/acme/users/import",
            json!({"csv": csv, "dry_run": false}),
        )
        .await;
    assert_eq!(imported.status, 200, "{imported:?}");
    let at = imported.position();
    let kim = listing(&svc, "q=kim%40", at).await;
    assert_eq!(kim[0]["phone"], "+14155550199", "{kim:?}");
    assert_eq!(kim[0]["attributes"]["shift"], "Late", "{kim:?}");
    let grace_now = svc.get_at(&grace_attrs, at).await;
    assert_eq!(
        grace_now.body["attributes"],
        json!({"department": "Sales", "employee_no": 7}),
        "the import set and cleared; the retyped remote stays hidden: {grace_now:?}"
    );
    assert!(listing(&svc, "q=zoe%40", at).await.is_empty());
    // The filter follows changed values.
    assert!(
        listing(&svc, "attribute=department:ops", at)
            .await
            .is_empty()
    );
    let sales = listing(&svc, "attribute=department:SALES", at).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(sales[0]["email"], "grace@example.com");
}
