//! What-if previews (issue 15, item 6) against the real binary: an administrative command sent
//! with `?dry_run=true` is authorized and decided as usual, appends nothing, and answers the
//! events it would append and the access difference they would make; carried out, it makes that
//! difference. (The property test that random commands make exactly their preview is in
//! `crates/app/src/preview_tests.rs`.)

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::service::Service;
use crate::support::world::join;

const PASSWORD: &str = "Preview-Test-Passphrase-1";

/// The members of a preview's difference in acme, by user id.
fn members(preview: &Value) -> Vec<Value> {
    let tenants = preview["access"].as_array().unwrap();
    let acme = tenants
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap_or_else(|| panic!("acme in {preview}"));
    acme["members"].as_array().unwrap().clone()
}

fn of<'a>(members: &'a [Value], user: &str) -> &'a Value {
    members
        .iter()
        .find(|m| m["user"] == user)
        .unwrap_or_else(|| panic!("{user} in {members:?}"))
}

#[tokio::test]
async fn a_dry_run_decides_appends_nothing_and_previews_what_the_command_then_does() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let role = json!({"name": "reader", "description": "Reads projects",
                      "permissions": ["entity.project:read"], "global_access": false});
    assert_eq!(svc.post("/v1/tenants/acme/roles", role).await.status, 201);
    let entity = json!({"name": "project", "fields": ["title", "budget"], "rls": true});
    assert_eq!(
        svc.post("/v1/tenants/acme/entities", entity).await.status,
        201
    );
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let (bob, _) = svc
        .create_user("acme", "bob@example.com", &["reader"])
        .await;
    let grant = format!("/v1/tenants/acme/entities/project/records/P1/grants/{bob}");
    let granted = svc.put(&grant, json!({"access": "read_only"})).await;
    assert_eq!(granted.status, 200, "{granted:?}");

    // A role for ada: previewed, nothing appended; then carried out.
    let roles = format!("/v1/tenants/acme/users/{ada}/roles");
    let before = svc.log_position().await;
    let preview = svc
        .post(&format!("{roles}?dry_run=true"), json!({"role": "reader"}))
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(
        svc.log_position().await,
        before,
        "a dry run appends nothing"
    );
    assert_eq!(preview.body["dry_run"], true);
    let events = preview.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{preview:?}");
    assert_eq!(events[0]["type"], "RoleAssigned");
    assert_eq!(events[0]["data"]["role"], "reader");
    let changed = members(&preview.body);
    assert_eq!(changed.len(), 1, "only ada's access changes: {changed:?}");
    assert_eq!(of(&changed, &ada)["gained"], json!(["entity.project:read"]));
    let roles_now = svc.get(&roles).await;
    assert!(
        !roles_now.body.to_string().contains("reader"),
        "not assigned: {roles_now:?}"
    );
    let assigned = svc.post(&roles, json!({"role": "reader"})).await;
    assert!(assigned.status < 300, "{assigned:?}");
    let check = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/access/check")
                .header("x-idstream-min-position", assigned.position())
                .json(&json!({"subject": format!("user:{ada}"),
                              "permission": "entity.project:read"})),
        )
        .await;
    assert_eq!(check.body["allowed"], true, "{check:?}");

    // Row-level security off: the readers read every record; bob no longer needs his grant.
    let rls = "/v1/tenants/acme/entities/project/rls";
    let preview = svc
        .put(&format!("{rls}?dry_run=true"), json!({"enabled": false}))
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    let changed = members(&preview.body);
    let project = &of(&changed, &bob)["entities"][0];
    assert_eq!(project["entity"], "project");
    assert_eq!(project["all_records"], json!([false, true]), "{preview:?}");
    assert_eq!(
        project["records_hidden"],
        json!(["P1"]),
        "listed one by one before"
    );

    // Field rules: budget hidden from readers. A field is hidden from a member only when every
    // role they hold hides it: bob's only role is reader; ada's `user` role still shows it.
    let rules = "/v1/tenants/acme/entities/project/field-rules/reader";
    let preview = svc
        .put(
            &format!("{rules}?dry_run=true"),
            json!({"hidden": ["budget"]}),
        )
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    let changed = members(&preview.body);
    assert_eq!(changed.len(), 1, "{changed:?}");
    let fields = &of(&changed, &bob)["entities"][0]["fields_hidden"];
    assert_eq!(*fields, json!(["budget"]), "{preview:?}");

    // A suspension across the user's tenants: bob loses what he held.
    let preview = svc
        .post(
            &format!("/v1/users/{bob}/suspend?dry_run=true"),
            json!({"reason": "what if"}),
        )
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(
        of(&members(&preview.body), &bob)["lost"],
        json!(["entity.project:read"])
    );
    let user = svc.get(&format!("/v1/users/{bob}")).await;
    assert_eq!(user.body["status"], "active", "not suspended: {user:?}");

    // Creating a user: the address claimed, the user, the role; a new member gains the role's
    // permissions. The address stays free.
    let preview = svc
        .post(
            "/v1/tenants/acme/users?dry_run=true",
            json!({"email": "cyd@example.com", "roles": ["reader"]}),
        )
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    let types: Vec<&str> = preview.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["EmailClaimed", "UserRegistered", "RoleAssigned"],
        "{preview:?}"
    );
    let created = members(&preview.body);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["gained"], json!(["entity.project:read"]));
    let real = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "cyd@example.com", "roles": ["reader"]}),
        )
        .await;
    assert_eq!(real.status, 201, "the address was not taken: {real:?}");

    // A command that would change nothing previews nothing (row-level security is still on);
    // one the rules refuse is refused as it would be.
    svc.post(&format!("{roles}?dry_run=true"), json!({"role": "reader"}))
        .await
        .assert_problem(409, "role_already_assigned");
    let preview = svc
        .put(&format!("{rls}?dry_run=true"), json!({"enabled": true}))
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(preview.body["events"], json!([]));
    assert_eq!(preview.body["access"], json!([]), "{preview:?}");

    // Refused exactly as the command is, appending nothing: a rule of the service, a caller
    // without the permission, another tenant's administrator, nobody.
    let before = svc.log_position().await;
    svc.post(&format!("{roles}?dry_run=true"), json!({"role": "ghost"}))
        .await
        .assert_problem(422, "unknown_role");
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    let stranger = join(&svc, "boss@example.com", "beta", &["admin"], PASSWORD).await;
    let before = before.max(svc.log_position().await);
    let as_who = |token: &str| {
        svc.send(
            svc.request_as(token, Method::POST, &format!("{roles}?dry_run=true"))
                .json(&json!({"role": "user"})),
        )
    };
    as_who(&bare.token).await.assert_problem(403, "forbidden");
    as_who(&stranger.token)
        .await
        .assert_problem(404, "tenant_not_found");
    svc.post_anonymous(&format!("{roles}?dry_run=true"), json!({"role": "user"}))
        .await
        .assert_problem(401, "unauthorized");

    // Operations with effects beyond the log cannot be previewed; a malformed flag is refused.
    svc.post(
        "/v1/tenants/acme/invitations?dry_run=true",
        json!({"email": "new@example.com"}),
    )
    .await
    .assert_problem(400, "dry_run_unsupported");
    svc.post(&format!("/v1/users/{ada}/erase?dry_run=true"), json!({}))
        .await
        .assert_problem(400, "dry_run_unsupported");
    svc.post(&format!("{roles}?dry_run=yes"), json!({"role": "user"}))
        .await
        .assert_problem(400, "invalid_query");
    assert_eq!(svc.log_position().await, before, "nothing appended");
    // `dry_run=false` is the command itself.
    let done = svc.delete(&format!("{roles}/user?dry_run=false")).await;
    assert!(
        done.status < 300 && done.body["position"].as_u64().is_some(),
        "{done:?}"
    );
}
