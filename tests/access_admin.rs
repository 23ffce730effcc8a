//! Access administration over HTTP against a real `idstream` process: tenant settings, roles and
//! menus, entities, records, custom permissions, member removal, user lifecycle and flags.
//!
//! Every caller here is the operator token (a platform administrator), so the admin rules of
//! F-AZ-7 that only bind users are tested at the application level (`crates/app`).

use serde_json::{Value, json};

use crate::support::nats::NatsServer;
use crate::support::service::{Answer, Service};

async fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::embedded(dir.path()).await;
    (dir, service)
}

#[track_caller]
fn assert_status(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{answer:?}");
}

/// Runs a request that must be refused with `code` and checks that nothing was appended.
async fn refused(svc: &Service, answer: impl Future<Output = Answer>, status: u16, code: &str) {
    let before = svc.log_position().await;
    answer.await.assert_problem(status, code);
    assert_eq!(svc.log_position().await, before, "{code}: nothing appended");
}

/// Runs a request that must succeed without appending anything (a repeat), answering with the
/// position of the aggregate's last event, `expected`.
async fn unchanged(svc: &Service, answer: impl Future<Output = Answer>, expected: u64) {
    let before = svc.log_position().await;
    let answer = answer.await;
    assert!(answer.status == 200 || answer.status == 201, "{answer:?}");
    assert_eq!(answer.position(), expected, "{answer:?}");
    assert_eq!(svc.log_position().await, before, "a repeat appends nothing");
}

fn settings(default_role: &str) -> Value {
    json!({
        "self_registration": true,
        "default_role": default_role,
        "require_email_verification": true,
        "password_policy": {
            "min_length": 12, "max_length": 128, "require_lowercase": false,
            "require_uppercase": false, "require_digit": true, "require_symbol": false,
            "deny_common": true
        },
        "invitation_ttl_hours": 72,
        "session_idle_minutes": 30,
        "session_max_hours": 10,
        "magic_link_ttl_minutes": 10,
        "mfa_required": false,
        "remember_days": 14,
        "verify_created_users": false,
        "language": "en",
        "phishing_resistant_admins": false
    })
}

fn role_body(name: &str, permissions: &[&str]) -> Value {
    json!({"name": name, "description": "A role", "permissions": permissions, "global_access": false})
}

#[tokio::test]
async fn tenant_settings_are_read_and_replaced_with_a_default_role_of_the_tenant() {
    let (_dir, svc) = service().await;
    let created = svc.create_tenant("acme").await;
    let path = "/v1/tenants/acme/settings";

    let defaults = svc.get_at(path, created).await;
    assert_status(&defaults, 200);
    assert_eq!(defaults.body["default_role"], "user");
    assert_eq!(defaults.body["self_registration"], false);
    assert_eq!(defaults.body["password_policy"]["min_length"], 8);

    refused(&svc, svc.put(path, settings("editor")), 422, "unknown_role").await;
    refused(
        &svc,
        svc.put(path, settings("owner")),
        422,
        "invalid_default_role",
    )
    .await;
    let mut too_short = settings("user");
    too_short["password_policy"]["min_length"] = json!(6);
    refused(&svc, svc.put(path, too_short), 422, "invalid_settings").await;
    let mut missing = settings("user");
    missing.as_object_mut().unwrap().remove("mfa_required");
    refused(&svc, svc.put(path, missing), 422, "invalid_body").await;
    refused(
        &svc,
        svc.put("/v1/tenants/nope/settings", settings("user")),
        404,
        "tenant_not_found",
    )
    .await;

    let defined = svc
        .post(
            "/v1/tenants/acme/roles",
            role_body("editor", &["files:read"]),
        )
        .await;
    assert_status(&defined, 201);
    let changed = svc.put(path, settings("editor")).await;
    assert_status(&changed, 200);
    let read = svc.get_at(path, changed.position()).await;
    assert_eq!(read.body, settings("editor"));
    unchanged(&svc, svc.put(path, settings("editor")), changed.position()).await;

    // The default role cannot be deleted.
    refused(
        &svc,
        svc.delete("/v1/tenants/acme/roles/editor"),
        409,
        "role_in_use",
    )
    .await;
}

#[tokio::test]
async fn custom_roles_are_defined_replaced_given_a_menu_and_deleted_when_unused() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let roles = "/v1/tenants/acme/roles";

    let defined = svc
        .post(
            roles,
            role_body("editor", &["entity.invoice:update", "role.editor:assign"]),
        )
        .await;
    assert_status(&defined, 201);
    assert_eq!(defined.body["id"], "editor");
    refused(
        &svc,
        svc.post(roles, role_body("editor", &[])),
        409,
        "role_exists",
    )
    .await;
    refused(
        &svc,
        svc.post(roles, role_body("admin", &[])),
        409,
        "role_exists",
    )
    .await;
    refused(
        &svc,
        svc.post(roles, role_body("viewer", &["widgets:write"])),
        422,
        "invalid_body",
    )
    .await;
    // A well-formed permission on a resource the tenant does not define.
    refused(
        &svc,
        svc.post(roles, role_body("viewer", &["widgets:read"])),
        422,
        "unknown_resource",
    )
    .await;
    refused(
        &svc,
        svc.post(roles, role_body("viewer", &["users:assign"])),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.post(roles, role_body("Not A Role", &[])),
        422,
        "invalid_body",
    )
    .await;
    let mut long = role_body("viewer", &[]);
    long["description"] = json!("x".repeat(501));
    refused(&svc, svc.post(roles, long), 422, "invalid_description").await;
    refused(
        &svc,
        svc.post("/v1/tenants/nope/roles", role_body("viewer", &[])),
        404,
        "tenant_not_found",
    )
    .await;

    let update = json!({"description": "Edits invoices", "permissions": ["entity.invoice:read"], "global_access": false});
    let updated = svc.put(&format!("{roles}/editor"), update.clone()).await;
    assert_status(&updated, 200);
    unchanged(
        &svc,
        svc.put(&format!("{roles}/editor"), update.clone()),
        updated.position(),
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{roles}/admin"), update.clone()),
        422,
        "built_in_role",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{roles}/ghost"), update.clone()),
        404,
        "role_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{roles}/Bad%20Name"), update.clone()),
        400,
        "invalid_path",
    )
    .await;
    // The built-in `user` role's permissions may change.
    let user_role = svc.put(&format!("{roles}/user"), update).await;
    assert_status(&user_role, 200);

    let menu = json!([
        {"id": "invoices", "label": "Invoices", "href": "/invoices", "permission": "entity.invoice:read",
         "children": [{"id": "new", "label": "New invoice"}]}
    ]);
    let set = svc.put(&format!("{roles}/editor/menu"), menu.clone()).await;
    assert_status(&set, 200);
    unchanged(
        &svc,
        svc.put(&format!("{roles}/editor/menu"), menu),
        set.position(),
    )
    .await;
    let duplicate_ids = json!([{"id": "a", "label": "A"}, {"id": "a", "label": "B"}]);
    refused(
        &svc,
        svc.put(&format!("{roles}/editor/menu"), duplicate_ids),
        422,
        "invalid_menu",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{roles}/editor/menu"), json!([{"id": "a"}])),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{roles}/ghost/menu"), json!([])),
        404,
        "role_not_found",
    )
    .await;
    let admin_menu = svc
        .put(
            &format!("{roles}/admin/menu"),
            json!([{"id": "a", "label": "A"}]),
        )
        .await;
    assert_status(&admin_menu, 200);

    // A held role cannot be deleted; once nobody holds it, it can.
    let (ada, _) = svc
        .create_user("acme", "ada@example.com", &["editor"])
        .await;
    refused(
        &svc,
        svc.delete(&format!("{roles}/editor")),
        409,
        "role_in_use",
    )
    .await;
    refused(
        &svc,
        svc.delete(&format!("{roles}/user")),
        422,
        "built_in_role",
    )
    .await;
    refused(
        &svc,
        svc.delete(&format!("{roles}/owner")),
        422,
        "built_in_role",
    )
    .await;
    let revoked = svc
        .delete(&format!("/v1/tenants/acme/users/{ada}/roles/editor"))
        .await;
    assert_status(&revoked, 200);
    let deleted = svc.delete(&format!("{roles}/editor")).await;
    assert_status(&deleted, 200);
    assert!(deleted.position() > revoked.position());
    refused(
        &svc,
        svc.delete(&format!("{roles}/editor")),
        404,
        "role_not_found",
    )
    .await;
    // A deleted role can be assigned no more, and its name can be defined again.
    refused(
        &svc,
        svc.post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "editor"}),
        ),
        422,
        "unknown_role",
    )
    .await;
    assert_status(&svc.post(roles, role_body("editor", &[])).await, 201);
    let assigned = svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "editor"}),
        )
        .await;
    assert_status(&assigned, 200);
}

#[tokio::test]
async fn entities_are_registered_and_their_fields_rls_policy_and_field_rules_changed() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.post("/v1/tenants/acme/roles", role_body("auditor", &[]))
        .await;
    let entities = "/v1/tenants/acme/entities";
    let project = "/v1/tenants/acme/entities/project";

    let registered = svc
        .post(
            entities,
            json!({"name": "project", "fields": ["id", "title", "budget"], "rls": true,
                   "policy": {"read": ["_CREATOR", "auditor"], "create": ["_AUTHENTICATED_USER"]}}),
        )
        .await;
    assert_status(&registered, 201);
    assert_eq!(registered.body["id"], "project");
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "project", "fields": [], "rls": false}),
        ),
        409,
        "entity_exists",
    )
    .await;
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "Bad-Name", "fields": [], "rls": false}),
        ),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "task", "fields": ["a", "a"], "rls": false}),
        ),
        422,
        "invalid_fields",
    )
    .await;
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "task", "fields": ["Title"], "rls": false}),
        ),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "task", "fields": [], "rls": false, "policy": {"read": ["ghost"]}}),
        ),
        422,
        "unknown_role",
    )
    .await;
    refused(
        &svc,
        svc.post(
            entities,
            json!({"name": "task", "fields": [], "rls": false, "policy": {"read": ["_NOBODY"]}}),
        ),
        422,
        "invalid_body",
    )
    .await;
    // The policy may be left out: owners only.
    let task = svc
        .post(
            entities,
            json!({"name": "task", "fields": ["title"], "rls": false}),
        )
        .await;
    assert_status(&task, 201);

    let fields = svc
        .put(
            &format!("{project}/fields"),
            json!({"fields": ["id", "title", "budget", "owner_notes"]}),
        )
        .await;
    assert_status(&fields, 200);
    refused(
        &svc,
        svc.put(&format!("{project}/fields"), json!({"fields": ["x", "x"]})),
        422,
        "invalid_fields",
    )
    .await;

    let rls = svc
        .put(&format!("{project}/rls"), json!({"enabled": false}))
        .await;
    assert_status(&rls, 200);
    unchanged(
        &svc,
        svc.put(&format!("{project}/rls"), json!({"enabled": false})),
        rls.position(),
    )
    .await;

    let policy =
        json!({"read": ["_AUTHENTICATED_USER"], "update": ["_CREATOR", "auditor"], "delete": []});
    let set = svc.put(&format!("{project}/policy"), policy.clone()).await;
    assert_status(&set, 200);
    unchanged(
        &svc,
        svc.put(&format!("{project}/policy"), policy),
        set.position(),
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{project}/policy"), json!({"read": ["ghost"]})),
        422,
        "unknown_role",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{project}/policy"), json!({"share": []})),
        422,
        "invalid_body",
    )
    .await;

    let hidden = svc
        .put(
            &format!("{project}/field-rules/auditor"),
            json!({"hidden": ["budget"]}),
        )
        .await;
    assert_status(&hidden, 200);
    unchanged(
        &svc,
        svc.put(
            &format!("{project}/field-rules/auditor"),
            json!({"hidden": ["budget"]}),
        ),
        hidden.position(),
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{project}/field-rules/auditor"),
            json!({"hidden": ["id"]}),
        ),
        422,
        "invalid_hidden_field",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{project}/field-rules/auditor"),
            json!({"hidden": ["ghost"]}),
        ),
        422,
        "invalid_hidden_field",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{project}/field-rules/ghost"),
            json!({"hidden": ["budget"]}),
        ),
        422,
        "unknown_role",
    )
    .await;
    let shown = svc
        .put(
            &format!("{project}/field-rules/auditor"),
            json!({"hidden": []}),
        )
        .await;
    assert_status(&shown, 200);

    let ghost = "/v1/tenants/acme/entities/ghost";
    refused(
        &svc,
        svc.put(&format!("{ghost}/fields"), json!({"fields": []})),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{ghost}/rls"), json!({"enabled": true})),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{ghost}/policy"), json!({})),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{ghost}/field-rules/auditor"),
            json!({"hidden": []}),
        ),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(
            "/v1/tenants/acme/entities/Bad-Name/rls",
            json!({"enabled": true}),
        ),
        400,
        "invalid_path",
    )
    .await;
    refused(
        &svc,
        svc.put(
            "/v1/tenants/nope/entities/project/rls",
            json!({"enabled": true}),
        ),
        404,
        "tenant_not_found",
    )
    .await;
}

#[tokio::test]
async fn records_get_owners_grants_and_local_roles_for_members_only() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let (bob, _) = svc.create_user("acme", "bob@example.com", &["user"]).await;
    let (outsider, _) = svc
        .create_user("globex", "eve@example.com", &["user"])
        .await;
    svc.post(
        "/v1/tenants/acme/roles",
        role_body("reviewer", &["entity.project:read"]),
    )
    .await;
    let registered = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title"], "rls": true}),
        )
        .await;
    assert_status(&registered, 201);
    let record = "/v1/tenants/acme/entities/project/records/P-1";

    let owned = svc
        .put(&format!("{record}/owner"), json!({"user": ada}))
        .await;
    assert_status(&owned, 200);
    assert_eq!(owned.body["id"], "project:P-1");
    unchanged(
        &svc,
        svc.put(&format!("{record}/owner"), json!({"user": ada})),
        owned.position(),
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{record}/owner"), json!({"user": outsider})),
        422,
        "not_a_member",
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{record}/owner"), json!({"user": "not-a-ulid"})),
        422,
        "invalid_body",
    )
    .await;

    let grant = format!("{record}/grants/{bob}");
    let granted = svc.put(&grant, json!({"access": "read_only"})).await;
    assert_status(&granted, 200);
    unchanged(
        &svc,
        svc.put(&grant, json!({"access": "read_only"})),
        granted.position(),
    )
    .await;
    let upgraded = svc.put(&grant, json!({"access": "read_write"})).await;
    assert_status(&upgraded, 200);
    assert!(upgraded.position() > granted.position());
    refused(
        &svc,
        svc.put(&grant, json!({"access": "everything"})),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{record}/grants/{outsider}"),
            json!({"access": "read_only"}),
        ),
        422,
        "not_a_member",
    )
    .await;
    let withdrawn = svc.delete(&grant).await;
    assert_status(&withdrawn, 200);
    refused(&svc, svc.delete(&grant), 409, "not_granted").await;

    let local = format!("{record}/local-roles/{bob}/reviewer");
    let assigned = svc.put(&local, json!(null)).await;
    assert_status(&assigned, 200);
    unchanged(&svc, svc.put(&local, json!(null)), assigned.position()).await;
    refused(
        &svc,
        svc.put(&format!("{record}/local-roles/{bob}/ghost"), json!(null)),
        422,
        "unknown_role",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{record}/local-roles/{outsider}/reviewer"),
            json!(null),
        ),
        422,
        "not_a_member",
    )
    .await;
    let taken = svc.delete(&local).await;
    assert_status(&taken, 200);
    refused(&svc, svc.delete(&local), 409, "local_role_not_held").await;

    // The entity must be registered; paths must name a valid entity, record and user.
    let ghost = "/v1/tenants/acme/entities/ghost/records/P-1";
    refused(
        &svc,
        svc.put(&format!("{ghost}/owner"), json!({"user": ada})),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{ghost}/grants/{bob}"),
            json!({"access": "read_only"}),
        ),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.delete(&format!("{ghost}/local-roles/{bob}/reviewer")),
        404,
        "entity_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(
            "/v1/tenants/acme/entities/project/records/bad!id/owner",
            json!({"user": ada}),
        ),
        400,
        "invalid_path",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!(
                "/v1/tenants/acme/entities/project/records/{}/owner",
                "x".repeat(129)
            ),
            json!({"user": ada}),
        ),
        400,
        "invalid_path",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{record}/grants/not-a-ulid"),
            json!({"access": "read_only"}),
        ),
        400,
        "invalid_path",
    )
    .await;
}

#[tokio::test]
async fn custom_permissions_are_granted_and_revoked_and_repeats_change_nothing() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let grant = format!("/v1/tenants/acme/users/{ada}/permissions");
    let revoke = format!("{grant}/revoke");

    let granted = svc
        .post(
            &grant,
            json!({"permissions": ["users:read", "entity.invoice:update"]}),
        )
        .await;
    assert_status(&granted, 200);
    unchanged(
        &svc,
        svc.post(&grant, json!({"permissions": ["users:read"]})),
        granted.position(),
    )
    .await;
    refused(
        &svc,
        svc.post(&grant, json!({"permissions": ["users:fly"]})),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.post(&grant, json!({"permissions": ["entity.Invoice:read"]})),
        422,
        "invalid_body",
    )
    .await;
    refused(&svc, svc.post(&grant, json!({})), 422, "invalid_body").await;
    refused(
        &svc,
        svc.post(
            "/v1/tenants/acme/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/permissions",
            json!({"permissions": ["users:read"]}),
        ),
        404,
        "user_not_found",
    )
    .await;

    let revoked = svc
        .post(&revoke, json!({"permissions": ["users:read"]}))
        .await;
    assert_status(&revoked, 200);
    assert!(revoked.position() > granted.position());
    unchanged(
        &svc,
        svc.post(
            &revoke,
            json!({"permissions": ["users:read", "roles:read"]}),
        ),
        revoked.position(),
    )
    .await;

    // A user of another tenant becomes a member there by being given a permission.
    svc.create_tenant("globex").await;
    let elsewhere = svc
        .post(
            &format!("/v1/tenants/globex/users/{ada}/permissions"),
            json!({"permissions": ["files:read"]}),
        )
        .await;
    assert_status(&elsewhere, 200);
    let user = svc
        .get_at(&format!("/v1/users/{ada}"), elsewhere.position())
        .await;
    assert_eq!(user.body["tenants"], json!(["acme", "globex"]), "{user:?}");
}

#[tokio::test]
async fn a_removed_member_leaves_the_tenant_but_keeps_their_identity() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let (ada, _) = svc
        .create_user("acme", "ada@example.com", &["admin", "user"])
        .await;
    svc.post(
        &format!("/v1/tenants/globex/users/{ada}/roles"),
        json!({"role": "user"}),
    )
    .await;
    svc.post(
        &format!("/v1/tenants/acme/users/{ada}/permissions"),
        json!({"permissions": ["users:read"]}),
    )
    .await;

    let removed = svc.delete(&format!("/v1/tenants/acme/users/{ada}")).await;
    assert_status(&removed, 200);
    let members = svc
        .get_at("/v1/tenants/acme/users", removed.position())
        .await;
    assert_eq!(members.body["items"], json!([]), "{members:?}");
    let user = svc
        .get_at(&format!("/v1/users/{ada}"), removed.position())
        .await;
    assert_status(&user, 200);
    assert_eq!(user.body["tenants"], json!(["globex"]));
    refused(
        &svc,
        svc.delete(&format!("/v1/tenants/acme/users/{ada}")),
        404,
        "not_a_member",
    )
    .await;
    refused(
        &svc,
        svc.delete(&format!("/v1/tenants/nope/users/{ada}")),
        404,
        "tenant_not_found",
    )
    .await;
    refused(
        &svc,
        svc.delete("/v1/tenants/acme/users/not-a-ulid"),
        400,
        "invalid_path",
    )
    .await;
}

#[tokio::test]
async fn users_are_deactivated_reactivated_and_given_flags() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let user = format!("/v1/users/{ada}");

    let deactivated = svc.post(&format!("{user}/deactivate"), json!(null)).await;
    assert_status(&deactivated, 200);
    let read = svc.get_at(&user, deactivated.position()).await;
    assert_eq!(read.body["status"], "inactive");
    unchanged(
        &svc,
        svc.post(&format!("{user}/deactivate"), json!(null)),
        deactivated.position(),
    )
    .await;
    refused(
        &svc,
        svc.post(&format!("{user}/suspend"), json!({})),
        409,
        "user_inactive",
    )
    .await;

    let reactivated = svc.post(&format!("{user}/reactivate"), json!(null)).await;
    assert_status(&reactivated, 200);
    let read = svc.get_at(&user, reactivated.position()).await;
    assert_eq!(read.body["status"], "active");
    refused(
        &svc,
        svc.post(&format!("{user}/reactivate"), json!(null)),
        409,
        "user_not_inactive",
    )
    .await;

    let flags = json!({"dashboard_access": false, "api_access": true, "platform_admin": true});
    let flagged = svc.put(&format!("{user}/flags"), flags.clone()).await;
    assert_status(&flagged, 200);
    unchanged(
        &svc,
        svc.put(&format!("{user}/flags"), flags),
        flagged.position(),
    )
    .await;
    refused(
        &svc,
        svc.put(&format!("{user}/flags"), json!({"dashboard_access": true})),
        422,
        "invalid_body",
    )
    .await;

    let nobody = "/v1/users/01ARZ3NDEKTSV4RRFFQ69G5FAV";
    refused(
        &svc,
        svc.post(&format!("{nobody}/deactivate"), json!(null)),
        404,
        "user_not_found",
    )
    .await;
    refused(
        &svc,
        svc.post(&format!("{nobody}/reactivate"), json!(null)),
        404,
        "user_not_found",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &format!("{nobody}/flags"),
            json!({"dashboard_access": true, "api_access": true, "platform_admin": false}),
        ),
        404,
        "user_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_retried_access_command_with_its_idempotency_key_returns_the_first_result() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let first = svc
        .post_idempotent("/v1/tenants/acme/roles", role_body("editor", &[]), "role-1")
        .await;
    assert_status(&first, 201);
    let before = svc.log_position().await;
    let again = svc
        .post_idempotent("/v1/tenants/acme/roles", role_body("editor", &[]), "role-1")
        .await;
    assert_status(&again, 200);
    assert_eq!(again.position(), first.position());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(svc.log_position().await, before);
}

#[tokio::test]
async fn the_access_administration_endpoints_are_in_the_openapi_document() {
    let (_dir, svc) = service().await;
    let openapi = svc.get("/openapi.json").await;
    assert_status(&openapi, 200);
    for (path, method) in [
        ("/v1/tenants/{tenant}/settings", "get"),
        ("/v1/tenants/{tenant}/settings", "put"),
        ("/v1/tenants/{tenant}/roles", "post"),
        ("/v1/tenants/{tenant}/roles/{role}", "put"),
        ("/v1/tenants/{tenant}/roles/{role}", "delete"),
        ("/v1/tenants/{tenant}/roles/{role}/menu", "put"),
        ("/v1/tenants/{tenant}/entities", "post"),
        ("/v1/tenants/{tenant}/entities/{entity}/fields", "put"),
        ("/v1/tenants/{tenant}/entities/{entity}/rls", "put"),
        ("/v1/tenants/{tenant}/entities/{entity}/policy", "put"),
        (
            "/v1/tenants/{tenant}/entities/{entity}/field-rules/{role}",
            "put",
        ),
        (
            "/v1/tenants/{tenant}/entities/{entity}/records/{record}/owner",
            "put",
        ),
        (
            "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
            "put",
        ),
        (
            "/v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
            "delete",
        ),
        (
            "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
            "put",
        ),
        (
            "/v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
            "delete",
        ),
        ("/v1/tenants/{tenant}/users/{user}", "delete"),
        ("/v1/tenants/{tenant}/users/{user}/permissions", "post"),
        (
            "/v1/tenants/{tenant}/users/{user}/permissions/revoke",
            "post",
        ),
        ("/v1/users/{user}/deactivate", "post"),
        ("/v1/users/{user}/reactivate", "post"),
        ("/v1/users/{user}/flags", "put"),
    ] {
        let operation = &openapi.body["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        assert!(
            operation["responses"]["200"].is_object() || operation["responses"]["201"].is_object(),
            "{method} {path}: no success response"
        );
    }
    let schemas = &openapi.body["components"]["schemas"];
    for schema in [
        "Settings",
        "DefineRoleBody",
        "MenuEntry",
        "Policy",
        "RegisterEntityBody",
        "GrantBody",
        "Flags",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    // The menu's recursion is a reference, not an endless expansion.
    assert_eq!(
        schemas["MenuEntry"]["properties"]["children"]["items"]["$ref"],
        "#/components/schemas/MenuEntry",
        "{}",
        schemas["MenuEntry"]
    );
}

/// A representative flow on JetStream: the same commands over the other log backend, including a
/// repeat that appends nothing and a refusal read from the directory.
#[tokio::test]
async fn access_administration_works_on_jetstream() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    svc.create_tenant("acme").await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;

    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            role_body("reviewer", &["entity.project:read"]),
        )
        .await;
    assert_status(&role, 201);
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title", "budget"], "rls": true}),
        )
        .await;
    assert_status(&entity, 201);
    let hidden = svc
        .put(
            "/v1/tenants/acme/entities/project/field-rules/reviewer",
            json!({"hidden": ["budget"]}),
        )
        .await;
    assert_status(&hidden, 200);

    let grant = format!("/v1/tenants/acme/entities/project/records/P-1/grants/{ada}");
    let granted = svc.put(&grant, json!({"access": "read_only"})).await;
    assert_status(&granted, 200);
    unchanged(
        &svc,
        svc.put(&grant, json!({"access": "read_only"})),
        granted.position(),
    )
    .await;

    let assigned = svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "reviewer"}),
        )
        .await;
    assert_status(&assigned, 200);
    refused(
        &svc,
        svc.delete("/v1/tenants/acme/roles/reviewer"),
        409,
        "role_in_use",
    )
    .await;
    let removed = svc.delete(&format!("/v1/tenants/acme/users/{ada}")).await;
    assert_status(&removed, 200);
    let deleted = svc.delete("/v1/tenants/acme/roles/reviewer").await;
    assert_status(&deleted, 200);
    refused(
        &svc,
        svc.put(&grant, json!({"access": "read_only"})),
        422,
        "not_a_member",
    )
    .await;
}

#[tokio::test]
async fn the_permission_catalogue_lists_what_the_tenant_knows_to_who_may_read_roles() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    assert_status(
        &svc.post(
            "/v1/tenants/acme/roles",
            role_body("auditor", &["permissions:read"]),
        )
        .await,
        201,
    );
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "invoice", "fields": ["amount"], "rls": false}),
        )
        .await;
    assert_status(&entity, 201);
    let catalogue = svc
        .get_at("/v1/tenants/acme/permissions", entity.position())
        .await;
    assert_status(&catalogue, 200);
    let items: std::collections::BTreeMap<String, (String, String)> = catalogue.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["permission"].as_str().unwrap().to_owned(),
                (
                    i["kind"].as_str().unwrap().to_owned(),
                    i["description"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(items["users:read"].0, "admin");
    assert_eq!(items["files:delete"].0, "standard");
    assert_eq!(items["audit:read"].0, "service");
    assert_eq!(items["entity.invoice:update"].0, "entity");
    assert!(items["entity.invoice:update"].1.contains("invoice"));
    assert_eq!(items["role.auditor:assign"].0, "role");
    assert_eq!(items["role.owner:revoke"].0, "role");
    assert_eq!(items["members.auditor:update"].0, "members");
    assert!(items["members.auditor:delete"].1.contains("auditor"));
    assert_eq!(items["scim:update"].0, "service");
    // 13 named resources × 4, one entity × 4, four roles × (2 + 2).
    assert_eq!(items.len(), 13 * 4 + 4 + 4 * 4, "{items:?}");
    // Every permission listed is one the service accepts: a role may carry them all.
    let all: Vec<&str> = items.keys().map(String::as_str).collect();
    let everything = svc
        .post("/v1/tenants/acme/roles", role_body("everything", &all))
        .await;
    assert_status(&everything, 201);

    // A member holding permissions:read may read it; one holding nothing may not; a member of
    // another tenant finds no tenant.
    let reader = crate::support::world::join(
        &svc,
        "reader@example.com",
        "acme",
        &["auditor"],
        "Catalogue-Reader-Passphrase-1",
    )
    .await;
    let read = svc
        .get_as(&reader.token, "/v1/tenants/acme/permissions")
        .await;
    assert_status(&read, 200);
    let bare = crate::support::world::join(
        &svc,
        "bare@example.com",
        "acme",
        &["user"],
        "Catalogue-Bare-Passphrase-1",
    )
    .await;
    svc.get_as(&bare.token, "/v1/tenants/acme/permissions")
        .await
        .assert_problem(403, "forbidden");
    svc.create_tenant("beta").await;
    let stranger = crate::support::world::join(
        &svc,
        "stranger@example.com",
        "beta",
        &["admin"],
        "Catalogue-Stranger-Passphrase-1",
    )
    .await;
    svc.get_as(&stranger.token, "/v1/tenants/acme/permissions")
        .await
        .assert_problem(404, "tenant_not_found");
}

#[tokio::test]
async fn a_platform_administrator_copies_a_role_to_other_tenants_with_a_result_per_tenant() {
    let (_dir, svc) = service().await;
    for tenant in ["acme", "beta", "gamma"] {
        svc.create_tenant(tenant).await;
    }
    assert_status(
        &svc.post(
            "/v1/tenants/acme/roles",
            role_body("reviewer", &["documentation:read", "files:read"]),
        )
        .await,
        201,
    );
    let menu = json!([{"id": "docs", "label": "Documentation", "href": "/docs"}]);
    assert_status(
        &svc.put("/v1/tenants/acme/roles/reviewer/menu", menu.clone())
            .await,
        200,
    );
    assert_status(
        &svc.post(
            "/v1/tenants/gamma/roles",
            role_body("reviewer", &["files:delete"]),
        )
        .await,
        201,
    );
    let copied = svc
        .post(
            "/v1/tenants/acme/roles/reviewer/copy",
            json!({"to": ["beta", "gamma", "nowhere"]}),
        )
        .await;
    assert_status(&copied, 200);
    let results = copied.body["results"].as_array().unwrap();
    assert_eq!(results[0]["result"], "copied", "{copied:?}");
    assert_eq!(results[1]["result"], "copied");
    assert_eq!(results[2]["result"], "refused");
    assert_eq!(results[2]["problem"]["code"], "tenant_not_found");
    let position = copied.body["position"].as_u64().unwrap();
    let source = svc
        .get_at("/v1/tenants/acme/roles/reviewer", position)
        .await;
    for tenant in ["beta", "gamma"] {
        let role = svc
            .get_at(&format!("/v1/tenants/{tenant}/roles/reviewer"), position)
            .await;
        assert_status(&role, 200);
        assert_eq!(
            role.body["permissions"], source.body["permissions"],
            "{tenant}"
        );
        assert_eq!(role.body["description"], source.body["description"]);
        assert_eq!(role.body["menu"], source.body["menu"], "{tenant}: {role:?}");
    }
    refused(
        &svc,
        svc.post("/v1/tenants/acme/roles/admin/copy", json!({"to": ["beta"]})),
        422,
        "built_in_role",
    )
    .await;
    refused(
        &svc,
        svc.post("/v1/tenants/acme/roles/ghost/copy", json!({"to": ["beta"]})),
        404,
        "role_not_found",
    )
    .await;
    let admin = crate::support::world::join(
        &svc,
        "admin@example.com",
        "acme",
        &["admin"],
        "Copy-Role-Admin-Passphrase-1",
    )
    .await;
    let before = svc.log_position().await;
    svc.post_as(
        &admin.token,
        "/v1/tenants/acme/roles/reviewer/copy",
        json!({"to": ["beta"]}),
    )
    .await
    .assert_problem(403, "platform_admin_only");
    assert_eq!(svc.log_position().await, before);
}

/// Per-role administration rights (issue 15, item 4): `members.<role>:update|delete` lets a
/// helpdesk administer the holders of given roles, and nobody else: not a member who also holds
/// another role, nor one holding a custom permission the helpdesk lacks.
#[tokio::test]
async fn members_permissions_scope_user_administration_to_the_holders_of_given_roles() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let helpdesk = json!({"name": "helpdesk", "description": "Resets members",
        "permissions": ["users:read", "members.user:update", "members.user:delete"],
        "global_access": false});
    assert_status(&svc.post("/v1/tenants/acme/roles", helpdesk).await, 201);
    // A `members` permission takes update and delete only.
    let wrong = json!({"name": "odd", "description": "x", "permissions": ["members.user:read"],
        "global_access": false});
    svc.post("/v1/tenants/acme/roles", wrong)
        .await
        .assert_problem(422, "invalid_body");
    let (desk, _) = svc
        .create_user("acme", "desk@example.com", &["helpdesk"])
        .await;
    let (plain, _) = svc
        .create_user("acme", "plain@example.com", &["user"])
        .await;
    let (admin, _) = svc
        .create_user("acme", "boss@example.com", &["admin"])
        .await;
    let (both, _) = svc
        .create_user("acme", "both@example.com", &["user", "helpdesk"])
        .await;
    let (powerful, _) = svc
        .create_user("acme", "powerful@example.com", &["user"])
        .await;
    let granted = svc
        .post(
            &format!("/v1/tenants/acme/users/{powerful}/permissions"),
            json!({"permissions": ["audit:read"]}),
        )
        .await;
    assert_status(&granted, 200);
    let key = svc
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "desk", "owner": desk}),
        )
        .await;
    assert_status(&key, 201);
    let key = key.body["key"].as_str().unwrap().to_owned();
    let at = svc.log_position().await;
    let as_desk = |method: reqwest::Method, path: String| {
        svc.request_as(&key, method, &path)
            .header("x-idstream-min-position", at)
    };

    // A plain member: suspended, reinstated and removed by the helpdesk.
    let suspended = svc
        .send(as_desk(reqwest::Method::POST, format!("/v1/users/{plain}/suspend")).json(&json!({})))
        .await;
    assert_status(&suspended, 200);
    let reinstated = svc
        .send(as_desk(
            reqwest::Method::POST,
            format!("/v1/users/{plain}/reinstate"),
        ))
        .await;
    assert_status(&reinstated, 200);

    // Anyone holding a role the helpdesk does not cover, or a permission it lacks: refused,
    // naming users:update, and nothing appended.
    for target in [&admin, &both, &powerful] {
        let before = svc.log_position().await;
        svc.send(
            as_desk(reqwest::Method::POST, format!("/v1/users/{target}/suspend")).json(&json!({})),
        )
        .await
        .assert_problem(403, "forbidden");
        svc.send(as_desk(
            reqwest::Method::DELETE,
            format!("/v1/tenants/acme/users/{target}"),
        ))
        .await
        .assert_problem(403, "forbidden");
        assert_eq!(svc.log_position().await, before);
    }
    let removed = svc
        .send(as_desk(
            reqwest::Method::DELETE,
            format!("/v1/tenants/acme/users/{plain}"),
        ))
        .await;
    assert_status(&removed, 200);

    // The catalogue lists the scoped permissions per role.
    let catalogue = svc
        .get_at("/v1/tenants/acme/permissions", removed.position())
        .await;
    assert_status(&catalogue, 200);
    let listed: Vec<&str> = catalogue.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["permission"].as_str())
        .collect();
    assert!(listed.contains(&"members.admin:delete"), "{listed:?}");
    assert!(listed.contains(&"members.helpdesk:update"), "{listed:?}");
}

/// Custom resources (issue 15, item 10): a tenant defines `invoice_export`, roles and custom
/// permissions name `invoice_export:<crud>`, checks honour them while the resource is defined;
/// nobody gives a permission on a resource the tenant does not define.
#[tokio::test]
async fn a_tenant_defines_its_own_resources_for_its_permissions() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let resource = "/v1/tenants/acme/resources/invoice_export";

    // Not defined yet: giving it is refused, even to the operator, and changes nothing.
    refused(
        &svc,
        svc.post(
            "/v1/tenants/acme/roles",
            role_body("exporter", &["invoice_export:read"]),
        ),
        422,
        "unknown_resource",
    )
    .await;
    refused(
        &svc,
        svc.post(
            &format!("/v1/tenants/acme/users/{ada}/permissions"),
            json!({"permissions": ["invoice_export:read"]}),
        ),
        422,
        "unknown_resource",
    )
    .await;
    // Bad names and descriptions are refused plainly.
    svc.put(
        "/v1/tenants/acme/resources/users",
        json!({"description": "built in"}),
    )
    .await
    .assert_problem(400, "invalid_path");
    refused(
        &svc,
        svc.put(resource, json!({"description": "x".repeat(501)})),
        422,
        "invalid_body",
    )
    .await;
    refused(&svc, svc.delete(resource), 404, "resource_not_found").await;

    let defined = svc
        .put(resource, json!({"description": "Exporting invoices"}))
        .await;
    assert_status(&defined, 200);
    unchanged(
        &svc,
        svc.put(resource, json!({"description": "Exporting invoices"})),
        defined.position(),
    )
    .await;
    let listed = svc
        .get_at("/v1/tenants/acme/resources", defined.position())
        .await;
    assert_eq!(
        listed.body["items"],
        json!([{"name": "invoice_export", "description": "Exporting invoices"}])
    );
    let elsewhere = svc
        .get_at("/v1/tenants/globex/resources", defined.position())
        .await;
    assert_eq!(elsewhere.body["items"], json!([]));

    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            role_body(
                "exporter",
                &["invoice_export:read", "invoice_export:create"],
            ),
        )
        .await;
    assert_status(&role, 201);
    let assigned = svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "exporter"}),
        )
        .await;
    assert_status(&assigned, 200);
    let ask = |permission: &'static str, at: u64| {
        let svc = &svc;
        let ada = ada.clone();
        async move {
            let answer = svc
                .send(
                    svc.request(reqwest::Method::POST, "/v1/tenants/acme/access/check")
                        .header("x-idstream-min-position", at)
                        .json(&json!({"subject": format!("user:{ada}"), "permission": permission})),
                )
                .await;
            assert_status(&answer, 200);
            answer.body
        }
    };
    let allowed = ask("invoice_export:read", assigned.position()).await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["reason"]["role"], "exporter");
    assert_eq!(
        ask("invoice_export:delete", assigned.position()).await["allowed"],
        false
    );
    let catalogue = svc
        .get_at("/v1/tenants/acme/permissions", assigned.position())
        .await;
    let custom: Vec<&Value> = catalogue.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "custom")
        .collect();
    assert_eq!(custom.len(), 4, "{custom:?}");
    assert!(
        custom[0]["description"]
            .as_str()
            .unwrap()
            .contains("Exporting invoices")
    );

    // Removed: denied to all, though the role still names it.
    let removed = svc.delete(resource).await;
    assert_status(&removed, 200);
    let denied = ask("invoice_export:read", removed.position()).await;
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["reason"]["kind"], "unknown_resource");
    let trail = svc
        .get_at(
            "/v1/audit/events?tenant=acme&type=ResourceRemoved",
            removed.position(),
        )
        .await;
    let summary = trail.body["items"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("the resource invoice_export was removed from tenant acme"),
        "{summary}"
    );
}

/// Renaming a role for people (issue 15, item 10): a label shown beside the name, which stays
/// the identifier permissions, policies and tokens use.
#[tokio::test]
async fn a_role_is_labelled_for_people_and_keeps_its_name() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    assert_status(
        &svc.post(
            "/v1/tenants/acme/roles",
            role_body("helpdesk", &["users:read"]),
        )
        .await,
        201,
    );
    let path = "/v1/tenants/acme/roles/helpdesk/label";
    let set = svc.put(path, json!({"label": "Help desk"})).await;
    assert_status(&set, 200);
    unchanged(
        &svc,
        svc.put(path, json!({"label": " Help desk "})),
        set.position(),
    )
    .await;
    let role = svc
        .get_at("/v1/tenants/acme/roles/helpdesk", set.position())
        .await;
    assert_eq!(role.body["name"], "helpdesk");
    assert_eq!(role.body["label"], "Help desk");
    assert_eq!(role.body["permissions"], json!(["users:read"]));
    let listed = svc.get_at("/v1/tenants/acme/roles", set.position()).await;
    let labels: Vec<&Value> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["label"].is_string())
        .collect();
    assert_eq!(labels.len(), 1, "{listed:?}");
    // Built-in roles take a label too.
    assert_status(
        &svc.put(
            "/v1/tenants/acme/roles/admin/label",
            json!({"label": "Administrators"}),
        )
        .await,
        200,
    );
    refused(
        &svc,
        svc.put(path, json!({"label": "x".repeat(101)})),
        422,
        "invalid_body",
    )
    .await;
    refused(
        &svc,
        svc.put(path, json!({"label": "bad\u{202E}label"})),
        422,
        "invalid_label",
    )
    .await;
    refused(
        &svc,
        svc.put(
            "/v1/tenants/acme/roles/ghost/label",
            json!({"label": "Ghosts"}),
        ),
        404,
        "role_not_found",
    )
    .await;
    let cleared = svc.put(path, json!({"label": ""})).await;
    assert_status(&cleared, 200);
    let role = svc
        .get_at("/v1/tenants/acme/roles/helpdesk", cleared.position())
        .await;
    assert!(role.body.get("label").is_none(), "{role:?}");
    let trail = svc
        .get_at(
            "/v1/audit/events?tenant=acme&type=RoleRelabelled&order=oldest",
            cleared.position(),
        )
        .await;
    let summary = trail.body["items"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("was labelled \"Help desk\""), "{summary}");
}
