//! What-if previews (issue 15, item 6), on the real embedded log and read models: for random
//! administrative commands, a dry run appends nothing, refuses exactly what the command refuses,
//! and previews exactly the access difference the command makes once it is carried out (measured
//! between a copy of the access read model taken before and the read model after, which the
//! runner folded from the appended events).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use idstream_access::preview::difference_between;
use idstream_domain::access::{EntityName, FieldName, Permission, RecordAccess, RecordId};
use idstream_domain::{RoleName, TenantId, UserId};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{App, AppError, Caller, DryRun, NewEntityRequest, NewUserRequest, Outcome};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const MEMBERS: usize = 4;
const ROLES: [&str; 4] = ["user", "auditor", "reader", "admin"];
const PERMISSIONS: [&str; 4] = [
    "users:read",
    "roles:read",
    "entity.project:read",
    "entity.project:update",
];
const RECORDS: [&str; 3] = ["P1", "P2", "P3"];
const FIELDS: [&str; 2] = ["title", "budget"];

/// One administrative command of the test, on member indexes.
#[derive(Debug, Clone)]
enum Command {
    Assign(usize, usize),
    Revoke(usize, usize),
    Grant(usize, Vec<usize>),
    RevokePermissions(usize, Vec<usize>),
    UpdateRole(usize, Vec<usize>, bool),
    Rls(bool),
    FieldRules(usize, Vec<usize>),
    GrantRecord(usize, usize, bool),
    RevokeRecord(usize, usize),
    Owner(usize, usize),
    Suspend(usize),
    Reinstate(usize),
    Remove(usize),
    DeleteRole(usize),
}

fn subset(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::btree_set(0..len, 0..=len).prop_map(|s| s.into_iter().collect())
}

fn command() -> impl Strategy<Value = Command> {
    let member = 0..MEMBERS;
    prop_oneof![
        3 => (member.clone(), 0..ROLES.len()).prop_map(|(m, r)| Command::Assign(m, r)),
        2 => (member.clone(), 0..ROLES.len()).prop_map(|(m, r)| Command::Revoke(m, r)),
        2 => (member.clone(), subset(PERMISSIONS.len())).prop_map(|(m, p)| Command::Grant(m, p)),
        1 => (member.clone(), subset(PERMISSIONS.len()))
            .prop_map(|(m, p)| Command::RevokePermissions(m, p)),
        2 => (1..3usize, subset(PERMISSIONS.len()), proptest::bool::weighted(0.2))
            .prop_map(|(r, p, g)| Command::UpdateRole(r, p, g)),
        1 => any::<bool>().prop_map(Command::Rls),
        2 => (0..3usize, subset(FIELDS.len())).prop_map(|(r, f)| Command::FieldRules(r, f)),
        2 => (member.clone(), 0..RECORDS.len(), any::<bool>())
            .prop_map(|(m, r, w)| Command::GrantRecord(m, r, w)),
        1 => (member.clone(), 0..RECORDS.len()).prop_map(|(m, r)| Command::RevokeRecord(m, r)),
        1 => (member.clone(), 0..RECORDS.len()).prop_map(|(m, r)| Command::Owner(m, r)),
        1 => member.clone().prop_map(Command::Suspend),
        1 => member.clone().prop_map(Command::Reinstate),
        1 => member.clone().prop_map(Command::Remove),
        1 => (1..3usize).prop_map(Command::DeleteRole),
    ]
}

fn p<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn acme() -> TenantId {
    p("acme")
}

fn project() -> EntityName {
    p("project")
}

fn permissions(indexes: &[usize]) -> BTreeSet<Permission> {
    indexes.iter().map(|i| p(PERMISSIONS[*i])).collect()
}

/// Runs `command` as `caller` (the platform administrator, perhaps in a dry run).
async fn run(
    app: &App,
    caller: &Caller,
    members: &[UserId],
    command: &Command,
) -> Result<Outcome, AppError> {
    let role = |i: usize| -> RoleName { p(ROLES[i]) };
    match command {
        Command::Assign(m, r) => {
            app.memberships
                .assign_role(caller, acme(), members[*m], role(*r), None)
                .await
        }
        Command::Revoke(m, r) => {
            app.memberships
                .revoke_role(caller, acme(), members[*m], role(*r))
                .await
        }
        Command::Grant(m, ps) => {
            app.memberships
                .grant_permissions(caller, acme(), members[*m], permissions(ps), None)
                .await
        }
        Command::RevokePermissions(m, ps) => {
            app.memberships
                .revoke_permissions(caller, acme(), members[*m], permissions(ps))
                .await
        }
        Command::UpdateRole(r, ps, global) => {
            let request = crate::RoleRequest {
                description: "Changed".into(),
                permissions: permissions(ps),
                global_access: *global,
            };
            app.access_admin
                .update_role(caller, acme(), role(*r), request)
                .await
        }
        Command::Rls(on) => {
            app.access_admin
                .set_entity_rls(caller, acme(), project(), *on)
                .await
        }
        Command::FieldRules(r, fields) => {
            let hidden: BTreeSet<FieldName> = fields.iter().map(|f| p(FIELDS[*f])).collect();
            app.access_admin
                .set_field_rules(caller, acme(), project(), role(*r), hidden, BTreeSet::new())
                .await
        }
        Command::GrantRecord(m, r, write) => {
            let access = if *write {
                RecordAccess::ReadWrite
            } else {
                RecordAccess::ReadOnly
            };
            app.access_admin
                .grant_record_access(
                    caller,
                    acme(),
                    project(),
                    p::<RecordId>(RECORDS[*r]),
                    members[*m],
                    access,
                    None,
                )
                .await
        }
        Command::RevokeRecord(m, r) => {
            app.access_admin
                .revoke_record_access(caller, acme(), project(), p(RECORDS[*r]), members[*m])
                .await
        }
        Command::Owner(m, r) => {
            app.access_admin
                .set_record_owner(caller, acme(), project(), p(RECORDS[*r]), members[*m])
                .await
        }
        Command::Suspend(m) => {
            let request = crate::SuspendRequest {
                until: None,
                reason: None,
            };
            app.users.suspend(caller, members[*m], request).await
        }
        Command::Reinstate(m) => app.users.reinstate(caller, members[*m]).await,
        Command::Remove(m) => app.memberships.remove(caller, acme(), members[*m]).await,
        Command::DeleteRole(r) => app.access_admin.delete_role(caller, acme(), role(*r)).await,
    }
}

/// A tenant with an owner (so an administrator always stays), four members with the `user`
/// role, two custom roles and an entity with row-level security and three records.
async fn world(app: &App) -> Vec<UserId> {
    let system = Caller::system("test");
    app.tenants
        .create(&system, acme(), "Acme".into())
        .await
        .unwrap();
    let mut members = Vec::new();
    for i in 0..=MEMBERS {
        let request = NewUserRequest {
            email: format!("member{i}@example.com"),
            first_name: "M".into(),
            last_name: String::new(),
            roles: vec![p(if i == MEMBERS { "owner" } else { "user" })],
            invite: false,
            phone: None,
            attributes: None,
        };
        let created = app.users.create(&system, acme(), request).await.unwrap();
        members.push(created.id.parse().unwrap());
    }
    for (name, permission) in [("auditor", "users:read"), ("reader", "entity.project:read")] {
        let request = crate::RoleRequest {
            description: name.into(),
            permissions: [p(permission)].into(),
            global_access: false,
        };
        app.access_admin
            .define_role(&system, acme(), p(name), request)
            .await
            .unwrap();
    }
    let entity = NewEntityRequest {
        fields: FIELDS.iter().map(|f| p(f)).collect(),
        rls: true,
        policy: None,
    };
    app.access_admin
        .register_entity(&system, acme(), project(), entity)
        .await
        .unwrap();
    members.truncate(MEMBERS);
    members
}

/// Checks one command: previewed, refused or not as for real, nothing appended, then carried out
/// and its difference compared with the preview.
async fn check_one(app: &App, members: &[UserId], command: &Command) -> Result<(), String> {
    let log_end = || async { app.access_admin.log().last_position().await.unwrap() };
    let before_end = log_end().await;
    let dry_run = Arc::new(DryRun::default());
    let dry = Caller::system("test").with_dry_run(dry_run);
    let decided = run(app, &dry, members, command).await;
    if log_end().await != before_end {
        return Err(format!("{command:?}: the dry run appended"));
    }
    let preview = match &decided {
        Ok(_) => Some(
            app.access_admin
                .preview(&dry)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Err(_) => None,
    };
    // The state the command meets, copied before it is carried out.
    app.access_admin.catch_up().await.unwrap();
    let users: BTreeSet<UserId> = members.iter().copied().collect();
    let (_db, before) = app
        .access_admin
        .access_view()
        .copy_tenant(&acme(), &users)
        .unwrap();
    let real = run(app, &Caller::system("test"), members, command).await;
    match (&decided, &real, preview) {
        (Err(a), Err(b), _) if a.to_string() == b.to_string() => Ok(()),
        (Ok(_), Ok(outcome), Some((events, previewed))) => {
            app.access_admin.wait_for(outcome.position).await.unwrap();
            let actual = difference_between(
                &before,
                &app.access_admin.access_view(),
                &acme(),
                &users,
                app.access_admin.now(),
            )
            .unwrap();
            let previewed: BTreeMap<TenantId, _> = previewed
                .into_iter()
                .map(|t| (t.tenant, t.members))
                .collect();
            let expected = previewed.get(&acme()).cloned().unwrap_or_default();
            if expected != actual {
                return Err(format!(
                    "{command:?} (events {:?}): previewed {expected:?}, made {actual:?}",
                    events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
                ));
            }
            let appended = log_end().await > before_end;
            let previewed_some = !events.is_empty();
            if appended != previewed_some {
                return Err(format!(
                    "{command:?}: previewed {} events, appended: {appended}",
                    events.len()
                ));
            }
            Ok(())
        }
        (decided, real, _) => Err(format!(
            "{command:?}: the dry run answered {decided:?}, the command {real:?}"
        )),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn a_preview_is_exactly_the_difference_the_command_then_makes(
        commands in proptest::collection::vec(command(), 12..20)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let failures = Mutex::new(Vec::new());
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(crate::tests::FixedClock(T0));
            let services = crate::IdentityServices::local(dir.path()).await.unwrap();
            let app = crate::tests::app_in(dir.path(), clock, services).await;
            let members = world(&app).await;
            for command in &commands {
                if let Err(failure) = check_one(&app, &members, command).await {
                    failures.lock().unwrap().push(failure);
                }
            }
        });
        let failures = failures.into_inner().unwrap();
        prop_assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
