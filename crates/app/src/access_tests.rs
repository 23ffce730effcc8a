//! The admin rules of F-AZ-7 and role existence, on the real embedded log and read models, with
//! commands sent by users (sign-in does not exist yet, so these cannot be driven over HTTP).

use std::sync::Arc;

use idstream_domain::access::RecordAccess;
use idstream_domain::{RoleName, TenantId, UserId};

use crate::{App, AppError, Caller, NewUserRequest, RoleRequest, SystemClock};

async fn app(dir: &std::path::Path) -> App {
    app_with_clock(dir, Arc::new(SystemClock)).await
}

async fn app_with_clock(dir: &std::path::Path, clock: Arc<dyn crate::Clock>) -> App {
    let services = crate::IdentityServices::local(dir).await.unwrap();
    crate::tests::app_in(dir, clock, services).await
}

fn system() -> Caller {
    Caller::system("test")
}

fn as_user(user: UserId) -> Caller {
    crate::tests::as_user(user, "acme")
}

fn role(name: &str) -> RoleName {
    name.parse().unwrap()
}

fn acme() -> TenantId {
    "acme".parse().unwrap()
}

/// A tenant `acme` whose members are created by the platform administrator with these roles, in
/// order; returns their ids.
async fn tenant_with(app: &App, members: &[&[&str]]) -> Vec<UserId> {
    app.tenants
        .create(&system(), acme(), "Acme".into())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, roles) in members.iter().enumerate() {
        let request = NewUserRequest {
            email: format!("member{i}@example.com"),
            first_name: "M".into(),
            last_name: String::new(),
            roles: roles.iter().map(|r| role(r)).collect(),
            invite: false,
            phone: None,
            attributes: None,
        };
        let created = app.users.create(&system(), acme(), request).await.unwrap();
        ids.push(created.id.parse().unwrap());
    }
    ids
}

/// Gives `user` custom permissions in acme (as the platform administrator).
async fn grant(app: &App, user: UserId, permissions: &[&str]) {
    app.memberships
        .grant_permissions(
            &system(),
            acme(),
            user,
            permissions.iter().map(|p| p.parse().unwrap()).collect(),
            None,
        )
        .await
        .unwrap();
}

#[track_caller]
fn assert_err(result: Result<crate::Outcome, AppError>, expected: &str) {
    match result {
        Err(e) => assert_eq!(format!("{e:?}"), expected),
        Ok(o) => panic!("expected {expected}, got {o:?}"),
    }
}

#[tokio::test]
async fn only_owners_give_and_take_the_owner_role() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [owner, admin, user] = tenant_with(&app, &[&["owner"], &["admin"], &["user"]]).await[..]
    else {
        unreachable!()
    };

    // An admin may neither give the owner role nor take it from an owner.
    assert_err(
        app.memberships
            .assign_role(&as_user(admin), acme(), user, role("owner"), None)
            .await,
        "OwnerOnly",
    );
    assert_err(
        app.memberships
            .revoke_role(&as_user(admin), acme(), owner, role("owner"))
            .await,
        "OwnerOnly",
    );
    // Nor create a user who is an owner; the address is not even claimed.
    let request = |email: &str| NewUserRequest {
        email: email.into(),
        first_name: String::new(),
        last_name: String::new(),
        roles: vec![role("owner")],
        invite: true,
        phone: None,
        attributes: None,
    };
    assert_err(
        app.users
            .create(&as_user(admin), acme(), request("new@example.com"))
            .await,
        "OwnerOnly",
    );
    // Nor remove an owner from the tenant.
    assert_err(
        app.memberships.remove(&as_user(admin), acme(), owner).await,
        "OwnerOnly",
    );

    // An owner may do all of it.
    app.memberships
        .assign_role(&as_user(owner), acme(), user, role("owner"), None)
        .await
        .unwrap();
    app.users
        .create(&as_user(owner), acme(), request("new@example.com"))
        .await
        .unwrap();
    app.memberships
        .revoke_role(&as_user(owner), acme(), user, role("owner"))
        .await
        .unwrap();
    // Other roles are not the owner's business.
    app.memberships
        .assign_role(&as_user(admin), acme(), user, role("admin"), None)
        .await
        .unwrap();

    // An API key of the administrator, restricted to reading users, gives no role at all.
    let key = Caller::user(crate::Authenticated {
        user: admin,
        tenant: acme(),
        via: crate::Credential::ApiKey {
            id: ulid::Ulid::new(),
            restriction: Some(["users:read".parse().unwrap()].into()),
        },
        must_enrol_second_factor: false,
    });
    assert_err(
        app.memberships
            .assign_role(&key, acme(), user, role("user"), None)
            .await,
        "Forbidden(Permission { text: \"role.user:assign\" })",
    );
}

#[tokio::test]
async fn the_owner_role_is_guarded_on_records_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [owner, admin] = tenant_with(&app, &[&["owner"], &["admin"]]).await[..] else {
        unreachable!()
    };
    app.access_admin
        .register_entity(
            &system(),
            acme(),
            "project".parse().unwrap(),
            crate::NewEntityRequest {
                fields: vec!["title".parse().unwrap()],
                rls: true,
                policy: None,
            },
        )
        .await
        .unwrap();
    let local = |ctx: Caller| {
        let app = app.clone();
        async move {
            app.access_admin
                .assign_local_role(
                    &ctx,
                    acme(),
                    "project".parse().unwrap(),
                    "P-1".parse().unwrap(),
                    admin,
                    role("owner"),
                    None,
                )
                .await
        }
    };
    assert_err(local(as_user(admin)).await, "OwnerOnly");
    local(as_user(owner)).await.unwrap();
    // Record grants are no admin-rule matter.
    app.access_admin
        .grant_record_access(
            &as_user(admin),
            acme(),
            "project".parse().unwrap(),
            "P-1".parse().unwrap(),
            owner,
            RecordAccess::ReadOnly,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn nobody_removes_themselves_or_gives_up_their_own_owner_role() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [first, second, user] = tenant_with(&app, &[&["owner"], &["owner"], &["user"]]).await[..]
    else {
        unreachable!()
    };
    // The rules hold even for someone with the permissions.
    grant(&app, user, &["users:delete", "role.user:revoke"]).await;
    assert_err(
        app.memberships
            .revoke_role(&as_user(first), acme(), first, role("owner"))
            .await,
        "CannotRemoveSelf",
    );
    assert_err(
        app.memberships.remove(&as_user(user), acme(), user).await,
        "CannotRemoveSelf",
    );
    assert_err(
        app.memberships.remove(&as_user(first), acme(), first).await,
        "CannotRemoveSelf",
    );
    // Another owner may take it.
    app.memberships
        .revoke_role(&as_user(second), acme(), first, role("owner"))
        .await
        .unwrap();
    // A plain role of one's own may be given up.
    app.memberships
        .revoke_role(&as_user(user), acme(), user, role("user"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_removed_or_deactivated() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [admin, user] = tenant_with(&app, &[&["admin", "user"], &["user"]]).await[..] else {
        unreachable!()
    };
    // The rules hold even for someone with the permissions.
    grant(
        &app,
        user,
        &["users:update", "users:delete", "role.admin:revoke"],
    )
    .await;

    for ctx in [as_user(admin), as_user(user)] {
        assert_err(
            app.memberships
                .revoke_role(&ctx, acme(), admin, role("admin"))
                .await,
            "LastAdmin",
        );
    }
    // Nobody deactivates (or suspends) themselves; nobody else the last administrator.
    assert_err(
        app.users.deactivate(&as_user(admin), admin).await,
        "CannotRemoveSelf",
    );
    assert_err(
        app.users.deactivate(&as_user(user), admin).await,
        "LastAdmin",
    );
    assert_err(
        app.memberships.remove(&as_user(user), acme(), admin).await,
        "LastAdmin",
    );

    // A deactivated admin does not count as another one.
    let other = app
        .users
        .create(
            &system(),
            acme(),
            NewUserRequest {
                email: "other@example.com".into(),
                first_name: String::new(),
                last_name: String::new(),
                roles: vec![role("admin")],
                invite: false,
                phone: None,
                attributes: None,
            },
        )
        .await
        .unwrap();
    let other: UserId = other.id.parse().unwrap();
    app.users.deactivate(&as_user(user), other).await.unwrap();
    assert_err(
        app.memberships
            .revoke_role(&as_user(user), acme(), admin, role("admin"))
            .await,
        "LastAdmin",
    );

    // Once another active admin exists, the first may step down.
    app.users.reactivate(&as_user(user), other).await.unwrap();
    app.memberships
        .revoke_role(&as_user(admin), acme(), admin, role("admin"))
        .await
        .unwrap();
    // Now `other` is the last one. (Asked by `user`, who holds the permission: `admin` just
    // gave up theirs, and whether a refusal reads Forbidden or LastAdmin would depend on how far
    // the read models have got.)
    assert_err(
        app.memberships.remove(&as_user(user), acme(), other).await,
        "LastAdmin",
    );

    // Revoking the admin role from someone who also holds owner leaves them an administrator.
    app.memberships
        .assign_role(&system(), acme(), other, role("owner"), None)
        .await
        .unwrap();
    app.memberships
        .revoke_role(&as_user(other), acme(), other, role("admin"))
        .await
        .unwrap();
}

/// A custom role that edits invoices.
fn editor_definition() -> RoleRequest {
    RoleRequest {
        description: "Edits".into(),
        permissions: ["entity.invoice:update".parse().unwrap()].into(),
        global_access: false,
    }
}

/// Whether `user` holds `role` in acme, read from the membership's stream in the log.
async fn holds(app: &App, user: UserId, name: &str) -> bool {
    app.core()
        .roles_held(&acme(), user)
        .await
        .unwrap()
        .contains(&role(name))
}

#[tokio::test]
async fn concurrent_demotions_of_the_last_two_admins_leave_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [first, second, user] = tenant_with(&app, &[&["admin"], &["admin"], &["user"]]).await[..]
    else {
        unreachable!()
    };
    grant(&app, user, &["role.admin:revoke"]).await;
    let ctx = as_user(user);
    for round in 0..10 {
        // Each demotion, decided alone, would see the other administrator stay.
        let (a, b) = tokio::join!(
            app.memberships
                .revoke_role(&ctx, acme(), first, role("admin")),
            app.memberships
                .revoke_role(&ctx, acme(), second, role("admin")),
        );
        let outcomes = [&a, &b];
        assert_eq!(
            outcomes.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {a:?} {b:?}"
        );
        let refused = outcomes.into_iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(matches!(refused, AppError::LastAdmin), "{refused:?}");
        // The rule holds in the log, not just in the answers.
        let left = [
            holds(&app, first, "admin").await,
            holds(&app, second, "admin").await,
        ];
        assert_eq!(
            left.iter().filter(|held| **held).count(),
            1,
            "round {round}"
        );
        let demoted = if left[0] { second } else { first };
        // The user cannot give back what they do not hold (global access): the operator does.
        app.memberships
            .assign_role(&system(), acme(), demoted, role("admin"), None)
            .await
            .unwrap();
    }
    // Every reservation was settled: nothing is left in flight.
    let (guard, _) = app
        .core()
        .load::<idstream_domain::aggregate::AdminGuardAggregate>(
            &crate::admin_rules::admin_guard_key(&acme()),
        )
        .await
        .unwrap();
    assert!(guard.pending.is_empty(), "{guard:?}");
    assert!(guard.version >= 20, "{guard:?}");
}

#[tokio::test]
async fn a_removal_interrupted_after_its_reservation_counts_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(crate::tests::ShiftedClock::default());
    let app = app_with_clock(dir.path(), clock.clone()).await;
    let [first, second, user] = tenant_with(&app, &[&["admin"], &["admin"], &["user"]]).await[..]
    else {
        unreachable!()
    };
    grant(&app, user, &["role.admin:revoke", "users:update"]).await;
    let ctx = as_user(user);
    // A replica reserved taking `first`'s admin role, then died before revoking it.
    app.core()
        .reserve_admin_removal(ctx.ctx(), &acme(), first)
        .await
        .unwrap();
    assert!(holds(&app, first, "admin").await);
    // Until the reservation expires, `second` is treated as the last administrator...
    assert_err(
        app.memberships
            .revoke_role(&ctx, acme(), second, role("admin"))
            .await,
        "LastAdmin",
    );
    assert_err(app.users.deactivate(&ctx, second).await, "LastAdmin");
    // ...and then `first`, who kept the role, counts again.
    clock.advance(idstream_domain::access::admin_guard::RESERVATION_TTL);
    app.memberships
        .revoke_role(&ctx, acme(), second, role("admin"))
        .await
        .unwrap();
    assert!(holds(&app, first, "admin").await);
    assert!(!holds(&app, second, "admin").await);
}

#[tokio::test]
async fn a_role_assigned_while_it_is_deleted_is_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [user] = tenant_with(&app, &[&["user"]]).await[..] else {
        unreachable!()
    };
    let definition = editor_definition();
    for round in 0..10 {
        let name = role(&format!("editor{round}"));
        app.access_admin
            .define_role(&system(), acme(), name.clone(), definition.clone())
            .await
            .unwrap();
        let ctx = system();
        let (assigned, deleted) = tokio::join!(
            app.memberships
                .assign_role(&ctx, acme(), user, name.clone(), None),
            app.access_admin.delete_role(&ctx, acme(), name.clone()),
        );
        let exists = app.core().require_role(&acme(), &name).await.is_ok();
        let held = holds(&app, user, name.as_str()).await;
        // Either the deletion was refused because the role is held, or it went through and
        // nobody holds the deleted role, whatever the assignment answered.
        match (&assigned, &deleted) {
            (Ok(_), Err(AppError::RoleInUse(_))) => assert!(exists && held, "round {round}"),
            (_, Ok(_)) => assert!(!exists && !held, "round {round}: {assigned:?}"),
            other => panic!("round {round}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_deleted_role_defined_again_is_not_held_by_a_leftover_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [user] = tenant_with(&app, &[&["user"]]).await[..] else {
        unreachable!()
    };
    let editor = role("editor");
    let definition = editor_definition();
    app.access_admin
        .define_role(&system(), acme(), editor.clone(), definition.clone())
        .await
        .unwrap();
    app.access_admin
        .delete_role(&system(), acme(), editor.clone())
        .await
        .unwrap();
    // An assignment of the old role that outlived it, as a process stopped between appending an
    // assignment that raced the deletion and taking it back leaves it.
    app.core()
        .execute::<idstream_domain::aggregate::MembershipAggregate>(
            system().ctx(),
            &crate::core::membership_key(&acme(), user),
            "",
            idstream_domain::membership::MembershipCommand::Assign {
                user,
                role: editor.clone(),
                expires_at: None,
                now: app.core().now(),
            },
        )
        .await
        .unwrap();
    assert!(holds(&app, user, "editor").await);
    // The new role starts with no holders.
    app.access_admin
        .define_role(&system(), acme(), editor.clone(), definition)
        .await
        .unwrap();
    assert!(!holds(&app, user, "editor").await);
}

#[tokio::test]
async fn the_platform_administrator_is_above_the_admin_rules() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [owner] = tenant_with(&app, &[&["owner"]]).await[..] else {
        unreachable!()
    };
    app.users.deactivate(&system(), owner).await.unwrap();
    app.users.reactivate(&system(), owner).await.unwrap();
    app.memberships
        .revoke_role(&system(), acme(), owner, role("owner"))
        .await
        .unwrap();
    app.memberships
        .assign_role(&system(), acme(), owner, role("owner"), None)
        .await
        .unwrap();
    app.memberships
        .remove(&system(), acme(), owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn custom_roles_exist_between_their_definition_and_their_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [user] = tenant_with(&app, &[&["user"]]).await[..] else {
        unreachable!()
    };
    let editor = role("editor");
    assert_err(
        app.memberships
            .assign_role(&system(), acme(), user, editor.clone(), None)
            .await,
        "UnknownRole(RoleName(\"editor\"))",
    );
    let definition = editor_definition();
    app.access_admin
        .define_role(&system(), acme(), editor.clone(), definition.clone())
        .await
        .unwrap();
    // The role's existence is read from the log, not from a read model that may lag.
    app.memberships
        .assign_role(&system(), acme(), user, editor.clone(), None)
        .await
        .unwrap();
    assert_err(
        app.access_admin
            .delete_role(&system(), acme(), editor.clone())
            .await,
        "RoleInUse(RoleName(\"editor\"))",
    );
    app.memberships
        .revoke_role(&system(), acme(), user, editor.clone())
        .await
        .unwrap();
    app.access_admin
        .delete_role(&system(), acme(), editor.clone())
        .await
        .unwrap();
    assert_err(
        app.memberships
            .assign_role(&system(), acme(), user, editor.clone(), None)
            .await,
        "UnknownRole(RoleName(\"editor\"))",
    );
    // Another tenant never sees it.
    app.access_admin
        .define_role(&system(), acme(), editor.clone(), definition)
        .await
        .unwrap();
    app.tenants
        .create(&system(), "globex".parse().unwrap(), "Globex".into())
        .await
        .unwrap();
    assert_err(
        app.memberships
            .assign_role(&system(), "globex".parse().unwrap(), user, editor, None)
            .await,
        "UnknownRole(RoleName(\"editor\"))",
    );
}

#[tokio::test]
async fn every_command_needs_its_permission_and_each_role_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // 0: a plain user, 1: the target, 2: an admin of another tenant only.
    let ids = tenant_with(&app, &[&["user"], &["user"]]).await;
    let (ada, bob) = (ids[0], ids[1]);
    let perm = |p: &str| -> idstream_domain::access::Permission { p.parse().unwrap() };

    // Without users:create or role.editor:assign, nothing happens.
    let request = NewUserRequest {
        email: "new@example.com".into(),
        first_name: "N".into(),
        last_name: String::new(),
        roles: vec![role("user")],
        invite: false,
        phone: None,
        attributes: None,
    };
    assert_err(
        app.users
            .create(&as_user(ada), acme(), request.clone())
            .await,
        "Forbidden(Permission { text: \"users:create\" })",
    );
    app.access_admin
        .define_role(
            &system(),
            acme(),
            role("editor"),
            RoleRequest {
                description: "Edits".into(),
                permissions: [perm("files:update")].into(),
                global_access: false,
            },
        )
        .await
        .unwrap();
    assert_err(
        app.memberships
            .assign_role(&as_user(ada), acme(), bob, role("editor"), None)
            .await,
        "Forbidden(Permission { text: \"role.editor:assign\" })",
    );

    // Custom permissions open exactly what they name.
    app.memberships
        .grant_permissions(
            &system(),
            acme(),
            ada,
            [
                perm("users:create"),
                perm("role.editor:assign"),
                perm("role.user:assign"),
            ]
            .into(),
            None,
        )
        .await
        .unwrap();
    app.users
        .create(&as_user(ada), acme(), request)
        .await
        .unwrap();
    // Nobody gives a permission they do not hold: the editor role has files:update.
    assert_err(
        app.memberships
            .assign_role(&as_user(ada), acme(), bob, role("editor"), None)
            .await,
        "BeyondCallerPermissions([\"files:update\"])",
    );
    app.memberships
        .grant_permissions(&system(), acme(), ada, [perm("files:update")].into(), None)
        .await
        .unwrap();
    app.memberships
        .assign_role(&as_user(ada), acme(), bob, role("editor"), None)
        .await
        .unwrap();
    // role.editor:assign is not role.admin:assign.
    assert_err(
        app.memberships
            .assign_role(&as_user(ada), acme(), bob, role("admin"), None)
            .await,
        "Forbidden(Permission { text: \"role.admin:assign\" })",
    );
    // Lifecycle changes need users:update; tenants and flags need a platform administrator.
    assert_err(
        app.users.deactivate(&as_user(ada), bob).await,
        "Forbidden(Permission { text: \"users:update\" })",
    );
    assert_err(
        app.tenants
            .create(&as_user(ada), "other".parse().unwrap(), "Other".into())
            .await,
        "PlatformAdminOnly",
    );
    app.users
        .set_flags(
            &system(),
            ada,
            idstream_domain::user::UserFlags {
                platform_admin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    app.tenants
        .create(&as_user(ada), "other".parse().unwrap(), "Other".into())
        .await
        .unwrap();
    app.users.deactivate(&as_user(ada), bob).await.unwrap();
}

#[tokio::test]
async fn a_platform_administrator_gives_the_owner_role_only_in_a_tenant_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // A tenant created through the API has no owner: only administrators.
    let [admin, other, platform] = tenant_with(&app, &[&["admin"], &["user"], &["user"]]).await[..]
    else {
        unreachable!()
    };
    app.users
        .set_flags(
            &system(),
            platform,
            idstream_domain::user::UserFlags {
                platform_admin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A tenant administrator is no owner.
    assert_err(
        app.memberships
            .assign_role(&as_user(admin), acme(), admin, role("owner"), None)
            .await,
        "OwnerOnly",
    );
    // The platform administrator gives it where there is none…
    app.memberships
        .assign_role(&as_user(platform), acme(), admin, role("owner"), None)
        .await
        .unwrap();
    // …and then it is the owners' to give.
    assert_err(
        app.memberships
            .assign_role(&as_user(platform), acme(), other, role("owner"), None)
            .await,
        "OwnerOnly",
    );
    app.memberships
        .assign_role(&as_user(admin), acme(), other, role("owner"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn nobody_suspends_themselves_the_last_administrator_or_an_owner_without_being_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [admin, manager, owner] = tenant_with(&app, &[&["admin"], &["user"], &["owner"]]).await[..]
    else {
        unreachable!()
    };
    grant(&app, manager, &["users:update"]).await;
    let request = || crate::SuspendRequest {
        until: None,
        reason: None,
    };
    assert_err(
        app.users.suspend(&as_user(admin), admin, request()).await,
        "CannotRemoveSelf",
    );
    // The owner is not the manager's to suspend, nor to deactivate or erase.
    assert_err(
        app.users.suspend(&as_user(manager), owner, request()).await,
        "OwnerOnly",
    );
    assert_err(
        app.users.deactivate(&as_user(manager), owner).await,
        "OwnerOnly",
    );
    grant(&app, manager, &["users:delete"]).await;
    assert_err(app.users.erase(&as_user(manager), owner).await, "OwnerOnly");
    // With the owner gone from the tenant, the admin is its last administrator.
    app.memberships
        .remove(&system(), acme(), owner)
        .await
        .unwrap();
    assert_err(
        app.users.suspend(&as_user(manager), admin, request()).await,
        "LastAdmin",
    );
}

#[tokio::test]
async fn a_user_is_shown_with_only_the_tenants_the_caller_may_read_users_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let [admin, plain] = tenant_with(&app, &[&["admin"], &["user"]]).await[..] else {
        unreachable!()
    };
    for tenant in ["beta", "gamma"] {
        app.tenants
            .create(&system(), tenant.parse().unwrap(), tenant.into())
            .await
            .unwrap();
    }
    // Someone in acme and beta, and a stranger in gamma only.
    let both = NewUserRequest {
        email: "both@example.com".into(),
        first_name: "B".into(),
        last_name: String::new(),
        roles: vec![role("user")],
        invite: false,
        phone: None,
        attributes: None,
    };
    let both: UserId = app
        .users
        .create(&system(), acme(), both)
        .await
        .unwrap()
        .id
        .parse()
        .unwrap();
    let assigned = app
        .memberships
        .assign_role(&system(), "beta".parse().unwrap(), both, role("user"), None)
        .await
        .unwrap();
    let stranger = NewUserRequest {
        email: "stranger@example.com".into(),
        first_name: "S".into(),
        last_name: String::new(),
        roles: vec![role("admin")],
        invite: false,
        phone: None,
        attributes: None,
    };
    let stranger: UserId = app
        .users
        .create(&system(), "gamma".parse().unwrap(), stranger)
        .await
        .unwrap()
        .id
        .parse()
        .unwrap();
    app.core().wait_for(assigned.position).await.unwrap();

    let tenants = |caller: Caller| {
        let app = app.clone();
        async move {
            app.users
                .get(&caller, both)
                .await
                .map(|(_, tenants)| tenants.iter().map(|t| t.to_string()).collect::<Vec<_>>())
        }
    };
    // acme's administrator sees acme only; the person themselves and the operator see both.
    assert_eq!(tenants(as_user(admin)).await.unwrap(), ["acme"]);
    assert_eq!(tenants(as_user(both)).await.unwrap(), ["acme", "beta"]);
    assert_eq!(tenants(system()).await.unwrap(), ["acme", "beta"]);
    // A member of acme without users:read is refused; a member of gamma finds no such user.
    assert!(matches!(
        tenants(as_user(plain)).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        tenants(crate::tests::as_user(stranger, "gamma")).await,
        Err(AppError::UserNotFound)
    ));
    // acme's member list shows the same: acme only.
    let query = crate::PeopleQuery {
        limit: 100,
        ..Default::default()
    };
    let members = app
        .people
        .search(&as_user(admin), &acme(), &query)
        .await
        .unwrap();
    let listed = members.rows.iter().find(|m| m.user.id == both).unwrap();
    assert_eq!(listed.tenants, [acme()]);
}
