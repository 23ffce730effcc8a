//! The check API against a real `idstream` process: "grant, then check" with consistency tokens,
//! batch checks, explanations with the deciding event, readable records, visible fields, the
//! entity CRUD summary, roles, entities, effective permissions and menus — on both log backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::nats::NatsServer;
use crate::support::service::{Answer, Service};

async fn put(svc: &Service, path: &str, body: Value) -> Answer {
    svc.send(svc.request(Method::PUT, path).json(&body)).await
}

/// acme with an RLS entity `project` (fields title, budget), a custom role `pm`, an admin and
/// two plain users. Returns (admin, ada, bob, position of the last command).
async fn world(svc: &Service) -> (String, String, String, u64) {
    svc.create_tenant("acme").await;
    let (admin, _) = svc
        .create_user("acme", "admin@example.com", &["admin"])
        .await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let (bob, _) = svc.create_user("acme", "bob@example.com", &["user"]).await;
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title", "budget"], "rls": true}),
        )
        .await;
    assert_eq!(entity.status, 201, "{entity:?}");
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "pm", "description": "Project manager",
                   "permissions": ["entity.project:read", "entity.project:update"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let rules = put(
        svc,
        "/v1/tenants/acme/entities/project/field-rules/user",
        json!({"hidden": ["budget"]}),
    )
    .await;
    assert_eq!(rules.status, 200, "{rules:?}");
    (admin, ada, bob, rules.position())
}

async fn check(
    svc: &Service,
    at: u64,
    subject: &str,
    permission: &str,
    record: Option<&str>,
) -> Answer {
    let mut body = json!({"subject": subject, "permission": permission});
    if let Some(record) = record {
        body["record"] = json!(record);
    }
    let answer = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/access/check")
                .header("x-idstream-min-position", at)
                .json(&body),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
}

async fn grant_then_check(svc: &Service) {
    let (admin, ada, bob, at) = world(svc).await;
    let ada_s = format!("user:{ada}");

    // Private by default: type-level read through `user`? No: `user` has no entity permission.
    let denied = check(svc, at, &ada_s, "entity.project:read", Some("P1")).await;
    assert_eq!(denied.body["allowed"], false);
    assert_eq!(denied.body["reason"]["kind"], "no_permission");

    // Grant, then check at the grant's position: never stale.
    let granted = put(
        svc,
        &format!("/v1/tenants/acme/entities/project/records/P1/grants/{ada}"),
        json!({"access": "read_only"}),
    )
    .await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let at = granted.position();
    let allowed = check(svc, at, &ada_s, "entity.project:read", Some("P1")).await;
    assert_eq!(allowed.body["allowed"], true, "{allowed:?}");
    assert_eq!(
        allowed.body["reason"],
        json!({"kind": "grant", "access": "read_only"})
    );
    let update = check(svc, at, &ada_s, "entity.project:update", Some("P1")).await;
    assert_eq!(update.body["allowed"], false);

    // Explain names the event that created the grant.
    let explained = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/access/explain")
                .header("x-idstream-min-position", at)
                .json(
                    &json!({"subject": ada_s, "permission": "entity.project:read", "record": "P1"}),
                ),
        )
        .await;
    assert_eq!(explained.status, 200, "{explained:?}");
    let source = &explained.body["sources"][0];
    assert_eq!(source["position"], at, "{explained:?}");
    assert_eq!(source["event_type"], "RecordGranted");
    assert_eq!(source["actor"]["type"], "system");
    assert!(source["occurred_at"].as_str().is_some());

    // A local role gives the role's permissions on that record only.
    let local = put(
        svc,
        &format!("/v1/tenants/acme/entities/project/records/P2/local-roles/{bob}/pm"),
        json!({}),
    )
    .await;
    assert_eq!(local.status, 200, "{local:?}");
    let at = local.position();
    let batch = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/access/check-batch")
                .header("x-idstream-min-position", at)
                .json(
                    &json!({"subject": format!("user:{bob}"), "permission": "entity.project:update",
                              "records": ["P1", "P2", "P3"]}),
                ),
        )
        .await;
    assert_eq!(batch.status, 200, "{batch:?}");
    let allowed: Vec<bool> = batch.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(allowed, [false, true, false]);
    assert_eq!(
        batch.body["results"][1]["reason"],
        json!({"kind": "local_role", "role": "pm"})
    );

    // Readable records for filtering responses; admins read everything.
    let readable = svc
        .get_at(
            &format!("/v1/tenants/acme/entities/project/readable-records?subject=user:{ada}"),
            at,
        )
        .await;
    assert_eq!(readable.status, 200, "{readable:?}");
    assert_eq!(readable.body["records"], json!(["P1"]));
    assert_eq!(readable.body["all"], false);
    let everything = svc
        .get_at(
            &format!("/v1/tenants/acme/entities/project/readable-records?subject=user:{admin}"),
            at,
        )
        .await;
    assert_eq!(everything.body["all"], true);

    // Field-level security: `user` does not see budget; system fields always.
    let fields = svc
        .get_at(
            &format!("/v1/tenants/acme/entities/project/visible-fields?subject=user:{ada}"),
            at,
        )
        .await;
    assert_eq!(
        fields.body["fields"],
        json!(["id", "created_at", "updated_at", "title"])
    );
    let admin_fields = svc
        .get_at(
            &format!("/v1/tenants/acme/entities/project/visible-fields?subject=user:{admin}"),
            at,
        )
        .await;
    assert_eq!(
        admin_fields.body["fields"],
        json!(["id", "created_at", "updated_at", "title", "budget"])
    );

    // The CRUD summary in the documented shape.
    let summary = svc
        .get_at(
            &format!("/v1/permissions/entity/project?tenant=acme&subject=user:{admin}"),
            at,
        )
        .await;
    assert_eq!(
        summary.body,
        json!({"read": true, "create": true, "update": true, "delete": true})
    );
    let summary = svc
        .get_at(
            &format!("/v1/permissions/entity/project?tenant=acme&subject=user:{ada}"),
            at,
        )
        .await;
    assert_eq!(
        summary.body,
        json!({"read": false, "create": false, "update": false, "delete": false})
    );

    // Revocation takes effect at once.
    let revoked = svc
        .send(svc.request(
            Method::DELETE,
            &format!("/v1/tenants/acme/entities/project/records/P1/grants/{ada}"),
        ))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let after = check(
        svc,
        revoked.position(),
        &ada_s,
        "entity.project:read",
        Some("P1"),
    )
    .await;
    assert_eq!(after.body["allowed"], false);

    // Suspension denies everything.
    let suspended = svc
        .post(&format!("/v1/users/{bob}/suspend"), json!({}))
        .await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    let denied = check(
        svc,
        suspended.position(),
        &format!("user:{bob}"),
        "entity.project:update",
        Some("P2"),
    )
    .await;
    assert_eq!(
        denied.body["reason"],
        json!({"kind": "account_not_active", "status": "suspended"})
    );
}

#[tokio::test]
async fn grant_then_check_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    grant_then_check(&svc).await;
}

#[tokio::test]
async fn grant_then_check_on_jetstream() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::spawn();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    grant_then_check(&svc).await;
}

#[tokio::test]
async fn roles_entities_permissions_and_menus_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let (_admin, ada, _bob, at) = world(&svc).await;
    let menu = put(
        &svc,
        "/v1/tenants/acme/roles/user/menu",
        json!([{"id": "docs", "label": "Docs", "href": "/docs", "permission": "documentation:read"},
               {"id": "people", "label": "People", "permission": "users:read"}]),
    )
    .await;
    assert_eq!(menu.status, 200, "{menu:?}");
    let at = at.max(menu.position());

    let roles = svc.get_at("/v1/tenants/acme/roles", at).await;
    assert_eq!(roles.status, 200, "{roles:?}");
    let names: Vec<&str> = roles.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "owner", "pm", "user"]);
    let pm = svc.get_at("/v1/tenants/acme/roles/pm", at).await;
    assert_eq!(pm.body["built_in"], false);
    assert_eq!(
        pm.body["permissions"],
        json!(["entity.project:read", "entity.project:update"])
    );
    svc.get_at("/v1/tenants/acme/roles/ghost", at)
        .await
        .assert_problem(404, "role_not_found");

    let entities = svc.get_at("/v1/tenants/acme/entities", at).await;
    assert_eq!(entities.body["items"][0]["name"], "project");
    assert_eq!(entities.body["items"][0]["rls"], true);
    assert_eq!(
        entities.body["items"][0]["hidden"],
        json!({"user": ["budget"]})
    );

    let permissions = svc
        .get_at(&format!("/v1/tenants/acme/users/{ada}/permissions"), at)
        .await;
    assert_eq!(permissions.body["global_access"], false);
    assert!(
        permissions.body["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("files:create"))
    );

    // The `people` item needs users:read, which `user` lacks.
    let menu = svc
        .get_at(&format!("/v1/tenants/acme/users/{ada}/menu"), at)
        .await;
    assert_eq!(menu.status, 200, "{menu:?}");
    assert_eq!(menu.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(menu.body["items"][0]["id"], "docs");
}

#[tokio::test]
async fn bad_checks_get_clear_problems() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let (_admin, ada, _bob, at) = world(&svc).await;
    // Let the read models reach the world first, so each answer below is about its input.
    assert_eq!(svc.get_at("/v1/tenants/acme", at).await.status, 200);
    let ask = |body: Value| {
        let svc = &svc;
        async move { svc.post("/v1/tenants/acme/access/check", body).await }
    };
    ask(json!({"subject": format!("user:{ada}"), "permission": "widgets:write"}))
        .await
        .assert_problem(422, "invalid_body");
    // A resource the tenant does not define is no mistake of form: it is denied to all.
    let undefined =
        ask(json!({"subject": format!("user:{ada}"), "permission": "widgets:read"})).await;
    assert_eq!(undefined.status, 200, "{undefined:?}");
    assert_eq!(undefined.body["allowed"], false);
    assert_eq!(
        undefined.body["reason"]["kind"], "unknown_resource",
        "{undefined:?}"
    );
    ask(json!({"subject": "someone", "permission": "files:read"}))
        .await
        .assert_problem(422, "invalid_body");
    ask(json!({"permission": "files:read"}))
        .await
        .assert_problem(400, "subject_required");
    ask(json!({"subject": format!("user:{ada}"), "permission": "files:read", "record": "R1"}))
        .await
        .assert_problem(422, "invalid_body");
    ask(json!({"subject": format!("user:{ada}"), "permission": "entity.project:read", "record": "bad id!"}))
        .await
        .assert_problem(422, "invalid_body");
    svc.post(
        "/v1/tenants/nope/access/check",
        json!({"subject": "anonymous", "permission": "files:read"}),
    )
    .await
    .assert_problem(404, "tenant_not_found");
    svc.post(
        "/v1/tenants/acme/access/check-batch",
        json!({"subject": "anonymous", "permission": "entity.project:read", "records": []}),
    )
    .await
    .assert_problem(422, "invalid_body");
    svc.get("/v1/tenants/acme/entities/ghost/visible-fields?subject=anonymous")
        .await
        .assert_problem(404, "entity_not_found");
    svc.get("/v1/permissions/entity/project?tenant=acme")
        .await
        .assert_problem(400, "subject_required");
    // An unregistered entity is denied, with the reason.
    let unknown = svc
        .post(
            "/v1/tenants/acme/access/check",
            json!({"subject": format!("user:{ada}"), "permission": "entity.ghost:read"}),
        )
        .await;
    assert_eq!(
        unknown.body["reason"]["kind"], "unknown_entity",
        "{unknown:?}"
    );
    // Without the admin token nothing is answered.
    let anonymous = svc
        .send(
            reqwest::Client::new()
                .post(svc.url("/v1/tenants/acme/access/check"))
                .json(&json!({"subject": "anonymous", "permission": "files:read"})),
        )
        .await;
    anonymous.assert_problem(401, "unauthorized");
}

/// Search visibility (issue 15, item 7): per role, the fields it sees but may not search or
/// filter by, answered beside readability; any held role that allows a field wins.
#[tokio::test]
async fn field_rules_keep_fields_from_search_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    let (_, ada, _, _) = world(&svc).await;
    let rules = "/v1/tenants/acme/entities/project/field-rules/user";
    let set = put(
        &svc,
        rules,
        json!({"hidden": ["budget"], "unsearchable": ["title", "budget"]}),
    )
    .await;
    assert_eq!(set.status, 200, "{set:?}");
    let fields = |at: u64| {
        let svc = &svc;
        let ada = ada.clone();
        async move {
            let answer = svc
                .get_at(
                    &format!("/v1/tenants/acme/entities/project/visible-fields?subject=user:{ada}"),
                    at,
                )
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.body
        }
    };
    let seen = fields(set.position()).await;
    assert_eq!(
        seen["fields"],
        json!(["id", "created_at", "updated_at", "title"])
    );
    assert_eq!(
        seen["searchable"],
        json!(["id", "created_at", "updated_at"])
    );
    // Recorded once: budget as hidden (hidden fields are never searchable anyway).
    let entity = svc
        .get_at("/v1/tenants/acme/entities/project", set.position())
        .await;
    assert_eq!(entity.body["hidden"], json!({"user": ["budget"]}));
    assert_eq!(entity.body["unsearchable"], json!({"user": ["title"]}));

    // A second role without rules lets ada see and search everything.
    let assigned = svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "pm"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    let seen = fields(assigned.position()).await;
    assert_eq!(seen["searchable"], seen["fields"]);
    assert_eq!(seen["fields"].as_array().unwrap().len(), 5);

    // Refused plainly, changing nothing: system fields, unknown fields, unknown roles.
    for (path, body, code) in [
        (
            rules,
            json!({"hidden": [], "unsearchable": ["id"]}),
            "invalid_hidden_field",
        ),
        (
            rules,
            json!({"hidden": [], "unsearchable": ["ghost"]}),
            "invalid_hidden_field",
        ),
        (
            "/v1/tenants/acme/entities/project/field-rules/ghost",
            json!({"hidden": [], "unsearchable": ["title"]}),
            "unknown_role",
        ),
    ] {
        let before = svc.log_position().await;
        put(&svc, path, body).await.assert_problem(422, code);
        assert_eq!(svc.log_position().await, before, "{code}");
    }
    let trail = svc
        .get_at(
            "/v1/audit/events?tenant=acme&type=FieldRulesChanged",
            assigned.position(),
        )
        .await;
    let summary = trail.body["items"][0]["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary.contains("and those it may not search by to title"),
        "{summary}"
    );
}
