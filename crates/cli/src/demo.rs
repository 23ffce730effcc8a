//! `idstream bootstrap --demo`: after bootstrapping the tenant and its owner, fills it with a
//! small world to try things on: an administrator and two users with different roles, a custom
//! role, an entity with row-level security, a few records with owners, a temporary grant and a
//! local role. Every piece is made through the application's own operations (as the owner), exactly as
//! administrators make them over HTTP; the demo users join through invitations handed over as
//! links, and accept them with generated passwords, which are printed once.

use idstream_app::identity::{AcceptInvitation, InvitationRequest};
use idstream_app::{App, Caller, NewEntityRequest, RoleRequest};
use idstream_domain::access::{EntityName, Permission, RecordAccess, RecordId};
use idstream_domain::events::InvitationDelivery;
use idstream_domain::{RoleName, TenantId, UserId};

/// A demo account: its address, password (shown once) and roles.
pub(crate) struct DemoAccount {
    pub email: String,
    pub password: String,
    pub roles: Vec<&'static str>,
    pub id: UserId,
}

/// A password for a demo account: 144 random bits, with the character classes any policy asks.
fn demo_password() -> String {
    format!(
        "Demo-{}-9",
        idstream_auth::SecretToken::generate(18).reveal()
    )
}

fn parse<T: std::str::FromStr>(text: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>()
        .map_err(|e| anyhow::anyhow!("demo data: {text}: {e}"))
}

fn failed(what: &str) -> impl Fn(idstream_app::AppError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("demo data: {what}: {e}")
}

/// Fills `tenant` (bootstrapped a moment ago, owned by `owner`) with the demo world.
pub(crate) async fn fill(
    app: &App,
    tenant: &TenantId,
    owner: UserId,
    domain: &str,
) -> anyhow::Result<Vec<DemoAccount>> {
    let operator = Caller::system("demo");
    // The custom role: project editors read and update projects.
    let editor: RoleName = parse("editor")?;
    app.access_admin
        .define_role(
            &operator,
            tenant.clone(),
            editor.clone(),
            RoleRequest {
                description: "Reads and updates projects".into(),
                permissions: [
                    parse::<Permission>("entity.project:read")?,
                    parse::<Permission>("entity.project:update")?,
                ]
                .into(),
                global_access: false,
            },
        )
        .await
        .map_err(failed("the editor role"))?;

    let people = [
        ("alan.turing", "Alan", "Turing", vec!["admin"]),
        ("grace.hopper", "Grace", "Hopper", vec!["editor"]),
        ("edsger.dijkstra", "Edsger", "Dijkstra", vec!["user"]),
    ];
    let mut accounts = Vec::new();
    for (name, first, last, roles) in people {
        let email = format!("{name}@{domain}");
        let sent = app
            .identity
            .invite(
                &operator,
                tenant.clone(),
                InvitationRequest {
                    email: email.clone(),
                    first_name: first.into(),
                    last_name: last.into(),
                    roles: roles
                        .iter()
                        .map(|r| parse::<RoleName>(r))
                        .collect::<anyhow::Result<_>>()?,
                    delivery: InvitationDelivery::Link,
                },
            )
            .await
            .map_err(failed("an invitation"))?;
        let link = sent
            .link
            .ok_or_else(|| anyhow::anyhow!("demo data: an invitation by link gave no link"))?;
        let token = link
            .split_once("token=")
            .map(|(_, token)| token.to_owned())
            .ok_or_else(|| anyhow::anyhow!("demo data: no token in {link}"))?;
        let password = demo_password();
        let tokens = app
            .identity
            .accept_invitation(
                &Caller::anonymous(),
                AcceptInvitation {
                    token,
                    password: Some(password.clone()),
                    remember: false,
                },
            )
            .await
            .map_err(failed("accepting an invitation"))?;
        accounts.push(DemoAccount {
            email,
            password,
            roles,
            id: tokens.user,
        });
    }

    // Projects: private unless owned, granted or reached by a local role.
    let project: EntityName = parse("project")?;
    app.access_admin
        .register_entity(
            &operator,
            tenant.clone(),
            project.clone(),
            NewEntityRequest {
                fields: vec![parse("name")?, parse("budget")?, parse("status")?],
                rls: true,
                policy: None,
            },
        )
        .await
        .map_err(failed("the project entity"))?;
    let (grace, edsger) = (accounts[1].id, accounts[2].id);
    let records: [(&str, UserId); 3] = [("apollo", owner), ("gemini", grace), ("mercury", edsger)];
    for (record, by) in records {
        app.access_admin
            .set_record_owner(
                &operator,
                tenant.clone(),
                project.clone(),
                parse::<RecordId>(record)?,
                by,
            )
            .await
            .map_err(failed("a record's owner"))?;
    }
    app.access_admin
        .grant_record_access(
            &operator,
            tenant.clone(),
            project.clone(),
            parse("apollo")?,
            edsger,
            RecordAccess::ReadOnly,
            // Temporary access, as for a contractor: it ends by itself in 30 days.
            Some(time::OffsetDateTime::now_utc() + time::Duration::days(30)),
        )
        .await
        .map_err(failed("a record grant"))?;
    app.access_admin
        .assign_local_role(
            &operator,
            tenant.clone(),
            project,
            parse("mercury")?,
            grace,
            editor,
            None,
        )
        .await
        .map_err(failed("a local role"))?;
    Ok(accounts)
}
