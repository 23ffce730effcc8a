//! The console's screens for records, the audit trail and time travel (issue 17): a record's
//! owner, grants and local roles with a form to grant and revoke; the trail with its filters and
//! cursors, each entry in words with links to its actor, subject and record; and who could use a
//! permission on a record at one moment or two, side by side, with the event behind each answer.
//! Every screen calls the same `app` operations as the API, with the caller's own permissions.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_access::ReviewFrom;
use idstream_app::replay::{AsOf, ExplainedHolder, ReplayInfo, ReviewWindow};
use idstream_app::{AppError, Caller};
use idstream_domain::access::model::SYSTEM_FIELDS;
use idstream_domain::access::role::RoleError;
use idstream_domain::access::{
    Action, EntityName, EntityPolicy, FieldName, Permission, Principal, Reason, RecordAccess,
    RecordId,
};
use idstream_domain::tenant::TenantSettings;
use idstream_domain::{TenantId, UserId};
use minijinja::context;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    Page, PageForm, base, console_tenant, encoded, failure_page, form_caller, page_caller,
    people_query, with_cookies,
};
use crate::AppState;

const RECORDS: &str = "Records";
const TRAIL: &str = "Audit trail";
const TIME_TRAVEL: &str = "Time travel";
/// Entries per page of the trail screen.
const TRAIL_PAGE: usize = 50;

/// `path` with `pairs` as its query string.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

/// A record's page in the console.
fn record_page(entity: &str, record: &str) -> String {
    with_query("/admin/records", &[("entity", entity), ("record", record)])
}

/// A moment as the screens show it.
fn when(time: OffsetDateTime) -> String {
    time.format(&time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
    ))
    .unwrap_or_default()
}

/// Waits until the read models have applied `position` (a change just made), so that the page
/// a form redirects to shows it, also when it is served by another replica's read models.
pub(super) async fn settled(state: &AppState, position: u64, title: &str) -> Result<(), Page> {
    state
        .app
        .operations
        .wait_for_token(position)
        .await
        .map_err(|error| failure_page(title, &error))
}

/// A person as a console link: their address when the caller may read the directory, else
/// their id.
struct People<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    tenant: &'a TenantId,
}

impl People<'_> {
    async fn label(&self, user: UserId) -> String {
        let query = people_query(Some(user.to_string()), 1);
        match self
            .state
            .app
            .people
            .search(self.caller, self.tenant, &query)
            .await
        {
            Ok(found) => found
                .rows
                .into_iter()
                .find(|row| row.user.id == user)
                .map(|row| row.user.email)
                .unwrap_or_else(|| user.to_string()),
            Err(_) => user.to_string(),
        }
    }

    async fn link(&self, user: UserId) -> minijinja::Value {
        context! { id => user.to_string(), label => self.label(user).await }
    }

    /// The member named by `text`: their user id, or their address exactly.
    async fn named(&self, text: &str) -> Result<Option<UserId>, AppError> {
        let text = text.trim();
        if let Ok(id) = text.parse::<UserId>() {
            return Ok(Some(id));
        }
        let query = people_query(Some(text.to_owned()), 5);
        let found = self
            .state
            .app
            .people
            .search(self.caller, self.tenant, &query)
            .await?;
        Ok(found
            .rows
            .iter()
            .find(|row| row.user.email.eq_ignore_ascii_case(text))
            .map(|row| row.user.id))
    }
}

/// What the caller holds in the organisation, to leave out of a screen the buttons and forms
/// they could not use (the operations check again when used).
pub(super) struct Held {
    global: bool,
    permissions: std::collections::BTreeSet<String>,
}

impl Held {
    pub(super) async fn of(state: &AppState, caller: &Caller) -> Held {
        let held = match caller.authenticated() {
            Some(auth) => state
                .app
                .access
                .effective_permissions(caller, &auth.tenant, auth.user)
                .await
                .ok(),
            None => None,
        };
        match held {
            Some((global, permissions)) => Held {
                global,
                permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            },
            None => Held {
                global: false,
                permissions: Default::default(),
            },
        }
    }

    /// Whether the caller holds `permission` (or global access).
    pub(super) fn may(&self, permission: &str) -> bool {
        self.global || self.permissions.contains(permission)
    }

    /// Whether the caller holds `users:<action>` or the same over the members of some role
    /// (`members.<role>:<action>`), which lets them act on some people.
    pub(super) fn may_on_people(&self, action: &str) -> bool {
        self.may(&format!("users:{action}"))
            || self
                .permissions
                .iter()
                .any(|p| p.starts_with("members.") && p.ends_with(&format!(":{action}")))
    }
}

/// The what-if preview of a role's new permission matrix: the same operation decided as a dry
/// run (authorized as usual, appending nothing), and the access difference it would make for
/// each member it changes, with the same form to save it.
pub(super) async fn role_preview(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    name: idstream_domain::RoleName,
    request: idstream_app::RoleRequest,
    fields: &[(String, String)],
) -> Result<Page, Page> {
    const ROLE: &str = "Role";
    let dry = caller
        .clone()
        .with_dry_run(std::sync::Arc::new(idstream_app::DryRun::default()));
    let refused = |error: AppError| failure_page(ROLE, &error);
    state
        .app
        .access_admin
        .update_role(&dry, tenant.clone(), name.clone(), request)
        .await
        .map_err(refused)?;
    let (_, differences) = state
        .app
        .access_admin
        .preview(&dry)
        .await
        .map_err(refused)?;
    let people = People {
        state,
        caller,
        tenant: &tenant,
    };
    let mut changes = Vec::new();
    for difference in differences.iter().filter(|d| d.tenant == tenant) {
        for member in &difference.members {
            let list = |permissions: &[Permission]| {
                permissions
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            changes.push(context! {
                person => people.link(member.user).await,
                gained => list(&member.gained), lost => list(&member.lost),
                global => member.global_access.map(|(before, after)| format!("{before} → {after}")),
            });
        }
    }
    let kept: Vec<minijinja::Value> = fields
        .iter()
        .filter(|(field, _)| field != "intent")
        .map(|(field, value)| context! { name => field, value => value })
        .collect();
    Ok(Page::html(
        StatusCode::OK,
        "admin_role_preview.html",
        context! { ..base("What this change would do"), ..context! {
            wide => true, role => name.as_str(), changes => changes, fields => kept,
        }},
    ))
}

// ----- defining and deleting roles -----

#[derive(Deserialize)]
pub(super) struct DefineRoleForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// Defines a role without permissions from the roles screen (the role definition operation,
/// `roles:create`); its page then gives it permissions.
pub(super) async fn admin_define_role(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<DefineRoleForm>,
) -> Page {
    const ROLES: &str = "Roles";
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, "/admin/roles").await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = async {
        let tenant = console_tenant(&state, &caller, ROLES)?;
        let name: idstream_domain::RoleName = form.name.trim().parse().map_err(|_| {
            failure_page(
                ROLES,
                &AppError::InvalidQuery(
                    "A role's name is lower-case letters, digits, dots, dashes and underscores."
                        .into(),
                ),
            )
        })?;
        let done = state
            .app
            .access_admin
            .define_role(
                &caller,
                tenant,
                name.clone(),
                idstream_app::RoleRequest {
                    description: form.description.trim().to_owned(),
                    permissions: Default::default(),
                    global_access: false,
                },
            )
            .await
            .map_err(|error| failure_page(ROLES, &error))?;
        settled(&state, done.position, ROLES).await?;
        Ok::<_, Page>(Page::redirect(&format!("/admin/roles/{name}")))
    }
    .await;
    with_cookies(page.unwrap_or_else(|page| page), refreshed, None)
}

#[derive(Deserialize)]
pub(super) struct DeleteRoleForm {
    csrf: String,
}

/// Deletes a role from its page (the role deletion operation, `roles:delete`; refused while
/// anyone holds it or while it is the default role).
pub(super) async fn admin_delete_role(
    State(state): State<AppState>,
    axum::extract::Path(role): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<DeleteRoleForm>,
) -> Page {
    const ROLE: &str = "Role";
    let here = format!("/admin/roles/{}", encoded(&role));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = async {
        let tenant = console_tenant(&state, &caller, ROLE)?;
        let name: idstream_domain::RoleName = role
            .parse()
            .map_err(|_| failure_page(ROLE, &AppError::Role(RoleError::NotFound)))?;
        let done = state
            .app
            .access_admin
            .delete_role(&caller, tenant, name)
            .await
            .map_err(|error| failure_page(ROLE, &error))?;
        settled(&state, done.position, ROLE).await?;
        Ok::<_, Page>(Page::redirect("/admin/roles"))
    }
    .await;
    with_cookies(page.unwrap_or_else(|page| page), refreshed, None)
}

// ----- a person's roles, sessions and API keys -----

/// What a person's page shows beyond who they are: their roles here with what the caller may
/// take or give, their live sessions and their API keys in this organisation (each section
/// only when the caller may read it).
pub(super) async fn person_sections(
    state: &AppState,
    caller: &Caller,
    user: UserId,
    held: &Held,
) -> minijinja::Value {
    let Some(tenant) = caller.authenticated().map(|auth| auth.tenant.clone()) else {
        return context! {};
    };
    let roles: Vec<minijinja::Value> = state
        .app
        .memberships
        .roles(caller, &tenant, user)
        .await
        .map(|roles| {
            roles
                .iter()
                .map(|role| {
                    context! {
                        name => role.as_str(),
                        may_take => held.may(&format!("role.{role}:revoke")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let givable: Vec<String> = state
        .app
        .access
        .roles(caller, &tenant)
        .await
        .map(|all| {
            all.into_iter()
                .map(|role| role.name.to_string())
                .filter(|name| held.may(&format!("role.{name}:assign")))
                .collect()
        })
        .unwrap_or_default();
    let sessions: Option<Vec<minijinja::Value>> = state
        .app
        .users
        .sessions(caller, user)
        .await
        .ok()
        .map(|sessions| {
            sessions
                .iter()
                .map(|session| {
                    context! {
                        started => when(session.started_at), active => when(session.last_active_at),
                        tenant => session.tenant.as_str(), method => format!("{:?}", session.method).to_lowercase(),
                    }
                })
                .collect()
        });
    let keys: Option<Vec<minijinja::Value>> = state
        .app
        .identity
        .api_keys(caller, &tenant, Some(user))
        .await
        .ok()
        .map(|keys| {
            keys.iter()
                .filter(|key| key.owner == user)
                .map(|key| {
                    context! {
                        id => key.id.to_string(), name => &key.name, created => when(key.created_at),
                        revoked => key.revoked_at.map(when), expires => key.expires_at.map(when),
                    }
                })
                .collect()
        });
    context! {
        roles => roles, givable => givable, sessions => sessions, keys => keys,
        may_revoke_keys => held.may_on_people("update"),
    }
}

#[derive(Deserialize)]
pub(super) struct PersonRoleForm {
    csrf: String,
    /// `give`, `take` or `revoke_key`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    role: String,
    /// The last day of a role given for a time (YYYY-MM-DD, UTC).
    #[serde(default)]
    until: String,
    /// The API key of `revoke_key`.
    #[serde(default)]
    key: String,
}

/// Gives a person a role or takes one (the role assignment operations), or revokes one of their
/// API keys, from their page.
pub(super) async fn admin_person_change(
    State(state): State<AppState>,
    axum::extract::Path(user): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<PersonRoleForm>,
) -> Page {
    const PERSON: &str = "Person";
    let here = format!("/admin/users/{}", encoded(&user));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = async {
        let tenant = console_tenant(&state, &caller, PERSON)?;
        let id: UserId = user
            .parse()
            .map_err(|_| failure_page(PERSON, &AppError::UserNotFound))?;
        let unusable = |text: &str| failure_page(PERSON, &AppError::InvalidQuery(text.into()));
        let done = match form.action.as_str() {
            "give" | "take" => {
                let role: idstream_domain::RoleName = form
                    .role
                    .trim()
                    .parse()
                    .map_err(|_| failure_page(PERSON, &AppError::Role(RoleError::NotFound)))?;
                if form.action == "give" {
                    let until = match form.until.trim() {
                        "" => None,
                        day => Some(day_end(day).ok_or_else(|| {
                            unusable("The last day must be a date (YYYY-MM-DD).")
                        })?),
                    };
                    state
                        .app
                        .memberships
                        .assign_role(&caller, tenant, id, role, until)
                        .await
                } else {
                    state
                        .app
                        .memberships
                        .revoke_role(&caller, tenant, id, role)
                        .await
                }
            }
            "revoke_key" => {
                let key: ulid::Ulid = form
                    .key
                    .trim()
                    .parse()
                    .map_err(|_| unusable("There is no such key."))?;
                state
                    .app
                    .identity
                    .revoke_api_key(&caller, tenant, key)
                    .await
            }
            _ => return Err(unusable("Unknown action.")),
        }
        .map_err(|error| failure_page(PERSON, &error))?;
        settled(&state, done.position, PERSON).await?;
        Ok::<_, Page>(Page::redirect(&format!("/admin/users/{id}")))
    }
    .await;
    with_cookies(page.unwrap_or_else(|page| page), refreshed, None)
}

// ----- a role's menu -----

#[derive(Deserialize)]
pub(super) struct RoleMenuForm {
    csrf: String,
    /// The menu as the API writes it: a JSON list of items.
    #[serde(default)]
    menu: String,
}

/// Sets a role's menu from its page (the role menu operation, `menus:update`); a menu that is not
/// a list of items is refused and nothing changes.
pub(super) async fn admin_role_menu(
    State(state): State<AppState>,
    axum::extract::Path(role): axum::extract::Path<String>,
    parts: Parts,
    PageForm(form): PageForm<RoleMenuForm>,
) -> Page {
    const ROLE: &str = "Role";
    let here = format!("/admin/roles/{}", encoded(&role));
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = async {
        let tenant = console_tenant(&state, &caller, ROLE)?;
        let name: idstream_domain::RoleName = role
            .parse()
            .map_err(|_| failure_page(ROLE, &AppError::Role(RoleError::NotFound)))?;
        let text = form.menu.trim();
        let menu: Vec<idstream_domain::access::MenuItem> =
            serde_json::from_str(if text.is_empty() { "[]" } else { text }).map_err(|error| {
                failure_page(
                    ROLE,
                    &AppError::InvalidQuery(format!("The menu is not a list of items: {error}.")),
                )
            })?;
        let done = state
            .app
            .access_admin
            .set_role_menu(&caller, tenant, name.clone(), menu)
            .await
            .map_err(|error| failure_page(ROLE, &error))?;
        settled(&state, done.position, ROLE).await?;
        Ok::<_, Page>(Page::redirect(&format!("/admin/roles/{name}")))
    }
    .await;
    with_cookies(page.unwrap_or_else(|page| page), refreshed, None)
}

// ----- bulk actions on people -----

/// The most people one bulk form may name (two pages of the people screen).
const BULK_PEOPLE: usize = 100;

/// One status change for every person ticked on the people screen (`user` fields): suspend (with
/// no end), reinstate, deactivate, reactivate or end their sessions, each through the same
/// operation as on a person's page and found in the caller's organisation first. Answers what
/// was not done for whom.
pub(super) async fn admin_people_bulk(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Page {
    const PEOPLE: &str = "People";
    let value = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map_or("", |(_, value)| value.as_str())
    };
    let (caller, refreshed) = match form_caller(&state, &parts, value("csrf"), "/admin/users").await
    {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = async {
        console_tenant(&state, &caller, PEOPLE)?;
        let message = |status: StatusCode, text: String| {
            Page::html(
                status,
                "message.html",
                context! { ..base(PEOPLE), ..context! { message => text, link => "/admin/users", link_text => "People" } },
            )
        };
        if !Held::of(&state, &caller).await.may_on_people("update") {
            return Err(message(
                StatusCode::FORBIDDEN,
                "You may not change people's status in this organisation.".into(),
            ));
        }
        let action = value("action");
        if !["suspend", "reinstate", "deactivate", "reactivate", "end_sessions"].contains(&action) {
            return Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose what to do with the people ticked.".into(),
            ));
        }
        let ticked: Vec<&str> = fields
            .iter()
            .filter(|(field, _)| field == "user")
            .map(|(_, value)| value.as_str())
            .collect();
        if ticked.len() > BULK_PEOPLE {
            return Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Tick at most {BULK_PEOPLE} people at once."),
            ));
        }
        let users = &state.app.users;
        let (mut last, mut refused) = (0, Vec::new());
        for text in ticked {
            let row = match super::console_person(&state, &caller, text).await {
                Ok(row) => row,
                // The caller may not read the organisation's people: nothing is done for anyone.
                Err(page) if page.status == StatusCode::FORBIDDEN => return Err(page),
                Err(_) => {
                    refused.push(format!("{text}: not one of the organisation's people"));
                    continue;
                }
            };
            let id = row.user.id;
            let done = match action {
                "suspend" => {
                    users
                        .suspend(
                            &caller,
                            id,
                            idstream_app::SuspendRequest {
                                until: None,
                                reason: None,
                            },
                        )
                        .await
                }
                "reinstate" => users.reinstate(&caller, id).await,
                "deactivate" => users.deactivate(&caller, id).await,
                "reactivate" => users.reactivate(&caller, id).await,
                _ => users.revoke_sessions(&caller, id).await,
            };
            match done {
                Ok(done) => last = last.max(done.position),
                Err(error) => refused.push(format!("{}: {error}", row.user.email)),
            }
        }
        settled(&state, last, PEOPLE).await?;
        if refused.is_empty() {
            Ok(Page::redirect("/admin/users"))
        } else {
            Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Not done for: {}.", refused.join("; ")),
            ))
        }
    }
    .await;
    with_cookies(page.unwrap_or_else(|page| page), refreshed, None)
}

// ----- records -----

#[derive(Deserialize, Default)]
pub(super) struct RecordQuery {
    #[serde(default)]
    entity: String,
    #[serde(default)]
    record: String,
}

/// `/admin/records`: the organisation's entities, a form to open a record, and with `entity`
/// and `record` that record's owner, grants and local roles. For those who administer entities
/// (`entities:update`); the record's holders also need `entity.<entity>:update`.
pub(super) async fn admin_records_page(
    State(state): State<AppState>,
    Query(query): Query<RecordQuery>,
    parts: Parts,
) -> Page {
    let here = match query.entity.is_empty() {
        true => "/admin/records".to_owned(),
        false => encoded(&record_page(&query.entity, &query.record)),
    };
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, &here).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match records_screen(&state, &caller, &query, &csrf).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn records_screen(
    state: &AppState,
    caller: &Caller,
    query: &RecordQuery,
    csrf: &str,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, RECORDS)?;
    let entities = state
        .app
        .access
        .administered_entities(caller, &tenant)
        .await
        .map_err(|error| failure_page(RECORDS, &error))?;
    let entity_rows: Vec<minijinja::Value> = entities
        .iter()
        .map(|entity| {
            context! {
                name => entity.name.as_str(), rls => entity.rls,
                link => with_query("/admin/records", &[("entity", entity.name.as_str())]),
                fields => entity.fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
            }
        })
        .collect();
    let chosen = entities
        .iter()
        .find(|entity| entity.name.as_str() == query.entity.trim());
    let entity_view = match chosen {
        Some(entity) => Some(entity_section(state, caller, &tenant, entity).await),
        None => None,
    };
    let mut record = None;
    if !query.record.trim().is_empty() {
        let (entity, id) = record_named(&query.entity, &query.record)?;
        let holders = state
            .app
            .access
            .record_holders(caller, &tenant, &entity, &id)
            .await
            .map_err(|error| failure_page(RECORDS, &error))?;
        let people = People {
            state,
            caller,
            tenant: &tenant,
        };
        let owner = match &holders.owner {
            Some((user, source)) => Some(context! {
                person => people.link(*user).await,
                since => source.as_ref().map(|s| when(s.occurred_at)),
            }),
            None => None,
        };
        let mut rows = Vec::with_capacity(holders.holders.len());
        for (user, holding) in &holders.holders {
            let grant = holding.grant.as_ref().map(|(access, source)| {
                context! {
                    access => access_words(*access),
                    since => source.as_ref().map(|s| when(s.occurred_at)),
                    until => holding.grant_expires_at.map(when),
                }
            });
            let local_roles: Vec<String> = holding
                .local_roles
                .iter()
                .map(|role| match role.expires_at {
                    Some(end) => format!("{} (until {})", role.name, when(end)),
                    None => role.name.clone(),
                })
                .collect();
            rows.push(context! {
                person => people.link(*user).await, grant => grant,
                local_roles => local_roles.join(", "),
                local_names => holding.local_roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            });
        }
        let now_text = when(OffsetDateTime::now_utc())
            .trim_end_matches(" UTC")
            .replace(' ', "T");
        let roles: Vec<String> = state
            .app
            .access
            .roles(caller, &tenant)
            .await
            .map(|roles| roles.into_iter().map(|r| r.name.to_string()).collect())
            .unwrap_or_default();
        record = Some(context! {
            entity => entity.as_str(), id => id.as_str(), owner => owner, holders => rows,
            roles => roles,
            travel => with_query("/admin/time-travel", &[
                ("entity", entity.as_str()), ("record", id.as_str()), ("permission", "read"),
                ("at", &now_text),
            ]),
        });
    }
    Ok(Page::html(
        StatusCode::OK,
        "admin_records.html",
        context! { ..base(RECORDS), ..context! {
            wide => true, csrf => csrf, entities => entity_rows, record => record,
            entity => &query.entity, record_id => &query.record, chosen => entity_view,
            system_fields => SYSTEM_FIELDS,
        }},
    ))
}

/// What the records screen shows of one entity: its fields (system fields marked), row-level
/// security, its policy per action, and the fields each role may not see or search.
async fn entity_section(
    state: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    entity: &idstream_access::EntityRecord,
) -> minijinja::Value {
    let principals = |set: &std::collections::BTreeSet<Principal>| {
        set.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let roles: Vec<String> = state
        .app
        .access
        .roles(caller, tenant)
        .await
        .map(|roles| roles.into_iter().map(|r| r.name.to_string()).collect())
        .unwrap_or_default();
    let fields: Vec<&str> = entity.fields.iter().map(FieldName::as_str).collect();
    let rules: Vec<minijinja::Value> = roles
        .iter()
        .map(|role| {
            let named = |map: &std::collections::BTreeMap<idstream_domain::RoleName, std::collections::BTreeSet<FieldName>>| {
                map.iter()
                    .find(|(r, _)| r.as_str() == role)
                    .map(|(_, set)| set.iter().map(|f| f.as_str().to_owned()).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            context! { role => role, hidden => named(&entity.hidden), unsearchable => named(&entity.unsearchable) }
        })
        .collect();
    context! {
        name => entity.name.as_str(), rls => entity.rls,
        fields => fields.iter().filter(|f| !SYSTEM_FIELDS.contains(f)).copied().collect::<Vec<_>>().join(", "),
        own_fields => fields.iter().filter(|f| !SYSTEM_FIELDS.contains(f)).copied().collect::<Vec<_>>(),
        read => principals(&entity.policy.read), create => principals(&entity.policy.create),
        update => principals(&entity.policy.update), delete => principals(&entity.policy.delete),
        rules => rules,
    }
}

/// An entity form: `action` is `register`, `save` (fields, row-level security and policy, each
/// changed through its own operation) or `rules` (one role's field rules: `hidden_<field>` and
/// `unsearchable_<field>` checkboxes).
pub(super) async fn admin_entities(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<std::collections::HashMap<String, String>>,
) -> Page {
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let back = with_query("/admin/records", &[("entity", &field("entity"))]);
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    let (caller, refreshed) = match form_caller(&state, &parts, &csrf, &encoded(&back)).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match change_entity(&state, &caller, &form, &back).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn change_entity(
    state: &AppState,
    caller: &Caller,
    form: &std::collections::HashMap<String, String>,
    back: &str,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, RECORDS)?;
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let unusable = |text: String| {
        Page::html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "message.html",
            context! { ..base(RECORDS), ..context! { message => text, link => back, link_text => "Records" } },
        )
    };
    let entity: EntityName = field("entity")
        .parse()
        .map_err(|_| unusable("The entity is not a valid name.".to_owned()))?;
    let list = |name: &str| -> Vec<String> {
        field(name)
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let fields = || -> Result<Vec<FieldName>, Page> {
        list("fields")
            .iter()
            .filter(|f| !SYSTEM_FIELDS.contains(&f.as_str()))
            .map(|f| {
                f.parse()
                    .map_err(|_| unusable(format!("{f} is not a valid field name.")))
            })
            .collect()
    };
    let policy = || -> Result<EntityPolicy, Page> {
        let principals = |name: &str| {
            list(name)
                .iter()
                .map(|p| {
                    p.parse::<Principal>().map_err(|_| {
                        unusable(format!(
                            "{p} is neither a role nor _EVERYONE, _AUTHENTICATED_USER or _CREATOR."
                        ))
                    })
                })
                .collect::<Result<std::collections::BTreeSet<_>, _>>()
        };
        Ok(EntityPolicy {
            read: principals("read")?,
            create: principals("create")?,
            update: principals("update")?,
            delete: principals("delete")?,
        })
    };
    let admin = &state.app.access_admin;
    let failed = |error: AppError| failure_page(RECORDS, &error);
    let mut last = 0;
    match field("action").as_str() {
        "register" => {
            last = admin
                .register_entity(
                    caller,
                    tenant,
                    entity,
                    idstream_app::NewEntityRequest {
                        fields: fields()?,
                        rls: form.contains_key("rls"),
                        policy: Some(policy()?),
                    },
                )
                .await
                .map_err(failed)?
                .position;
        }
        "save" => {
            let current = state
                .app
                .access
                .entity(caller, &tenant, &entity)
                .await
                .map_err(failed)?;
            let (fields, rls, policy) = (fields()?, form.contains_key("rls"), policy()?);
            let own: Vec<FieldName> = current
                .fields
                .iter()
                .filter(|f| !SYSTEM_FIELDS.contains(&f.as_str()))
                .cloned()
                .collect();
            if fields != own {
                last = admin
                    .change_entity_fields(caller, tenant.clone(), entity.clone(), fields)
                    .await
                    .map_err(failed)?
                    .position;
            }
            if rls != current.rls {
                last = admin
                    .set_entity_rls(caller, tenant.clone(), entity.clone(), rls)
                    .await
                    .map_err(failed)?
                    .position;
            }
            if policy != current.policy {
                last = admin
                    .set_entity_policy(caller, tenant, entity, policy)
                    .await
                    .map_err(failed)?
                    .position;
            }
        }
        "rules" => {
            let role: idstream_domain::RoleName = field("role")
                .parse()
                .map_err(|_| unusable("There is no such role.".to_owned()))?;
            let checked = |prefix: &str| -> std::collections::BTreeSet<FieldName> {
                form.keys()
                    .filter_map(|key| key.strip_prefix(prefix))
                    .filter(|f| !SYSTEM_FIELDS.contains(f))
                    .filter_map(|f| f.parse().ok())
                    .collect()
            };
            last = admin
                .set_field_rules(
                    caller,
                    tenant,
                    entity,
                    role,
                    checked("hidden_"),
                    checked("unsearchable_"),
                )
                .await
                .map_err(failed)?
                .position;
        }
        _ => return Err(unusable("Unknown action.".to_owned())),
    }
    settled(state, last, RECORDS).await?;
    Ok(Page::redirect(back))
}

fn record_named(entity: &str, record: &str) -> Result<(EntityName, RecordId), Page> {
    let unusable = |what: &str| {
        failure_page(
            RECORDS,
            &AppError::InvalidQuery(format!("{what} is not a valid name")),
        )
    };
    let entity = entity
        .trim()
        .parse::<EntityName>()
        .map_err(|_| unusable("the entity"))?;
    let record = record
        .trim()
        .parse::<RecordId>()
        .map_err(|_| unusable("the record"))?;
    Ok((entity, record))
}

fn access_words(access: RecordAccess) -> &'static str {
    match access {
        RecordAccess::ReadOnly => "read only",
        RecordAccess::ReadWrite => "read and write",
    }
}

#[derive(Deserialize)]
pub(super) struct GrantForm {
    csrf: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    record: String,
    /// The member: an address or a user id.
    #[serde(default)]
    person: String,
    /// `grant` or `revoke`.
    #[serde(default)]
    action: String,
    /// `read_only` or `read_write` (for `grant`).
    #[serde(default)]
    access: String,
    /// The last day of a temporary grant or local role (YYYY-MM-DD, UTC); empty: for good.
    #[serde(default)]
    until: String,
    /// The role of `local_role` and `revoke_local_role`.
    #[serde(default)]
    role: String,
}

/// Grants a member access to a record, or takes it back (the record grant operations).
pub(super) async fn admin_record_grants(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<GrantForm>,
) -> Page {
    let back = record_page(form.entity.trim(), form.record.trim());
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, &encoded(&back)).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match change_grant(&state, &caller, &form, &back).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn change_grant(
    state: &AppState,
    caller: &Caller,
    form: &GrantForm,
    back: &str,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, RECORDS)?;
    let (entity, record) = record_named(&form.entity, &form.record)?;
    let message = |status: StatusCode, text: &str| {
        Page::html(
            status,
            "message.html",
            context! { ..base(RECORDS), ..context! { message => text, link => back, link_text => "Record" } },
        )
    };
    let people = People {
        state,
        caller,
        tenant: &tenant,
    };
    let user = people
        .named(&form.person)
        .await
        .map_err(|error| failure_page(RECORDS, &error))?
        .ok_or_else(|| {
            message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Nobody of this organisation has that address or id.",
            )
        })?;
    let admin = &state.app.access_admin;
    let done = match form.action.as_str() {
        "grant" => {
            let access = match form.access.as_str() {
                "read_only" => RecordAccess::ReadOnly,
                "read_write" => RecordAccess::ReadWrite,
                _ => {
                    return Err(message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Choose read only or read and write.",
                    ));
                }
            };
            let until = match form.until.trim() {
                "" => None,
                day => Some(day_end(day).ok_or_else(|| {
                    message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The last day must be a date (YYYY-MM-DD).",
                    )
                })?),
            };
            admin
                .grant_record_access(caller, tenant, entity, record, user, access, until)
                .await
        }
        "revoke" => {
            admin
                .revoke_record_access(caller, tenant, entity, record, user)
                .await
        }
        "local_role" | "revoke_local_role" => {
            let role: idstream_domain::RoleName =
                form.role.trim().parse().map_err(|_| {
                    message(StatusCode::UNPROCESSABLE_ENTITY, "There is no such role.")
                })?;
            if form.action == "local_role" {
                let until = match form.until.trim() {
                    "" => None,
                    day => Some(day_end(day).ok_or_else(|| {
                        message(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "The last day must be a date (YYYY-MM-DD).",
                        )
                    })?),
                };
                admin
                    .assign_local_role(caller, tenant, entity, record, user, role, until)
                    .await
            } else {
                admin
                    .revoke_local_role(caller, tenant, entity, record, user, role)
                    .await
            }
        }
        _ => return Err(message(StatusCode::UNPROCESSABLE_ENTITY, "Unknown action.")),
    };
    let done = done.map_err(|error| failure_page(RECORDS, &error))?;
    settled(state, done.position, RECORDS).await?;
    Ok(Page::redirect(back))
}

/// The end of day `day` (YYYY-MM-DD) in UTC.
fn day_end(day: &str) -> Option<OffsetDateTime> {
    let date = time::Date::parse(
        day,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date.next_day()?.midnight().assume_utc())
}

// ----- the audit trail -----

#[derive(Deserialize, Default)]
pub(super) struct TrailQuery {
    /// An event type (`RecordGranted`).
    #[serde(default, rename = "type")]
    event_type: String,
    /// The person the events are about: an address or a user id.
    #[serde(default)]
    person: String,
    /// The person who caused them (a user id or an address).
    #[serde(default)]
    actor: String,
    /// First and last day (YYYY-MM-DD, UTC).
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// `oldest` for the oldest first.
    #[serde(default)]
    order: String,
    #[serde(default)]
    cursor: String,
}

/// `/admin/audit`: the organisation's trail, newest first, with its filters and cursors.
pub(super) async fn admin_audit_page(
    State(state): State<AppState>,
    Query(query): Query<TrailQuery>,
    parts: Parts,
) -> Page {
    let (caller, refreshed, _csrf, set) = match page_caller(&state, &parts, "/admin/audit").await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match trail_screen(&state, &caller, &query).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn trail_screen(state: &AppState, caller: &Caller, query: &TrailQuery) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, TRAIL)?;
    let unusable = |text: &str| failure_page(TRAIL, &AppError::InvalidQuery(text.to_owned()));
    let people = People {
        state,
        caller,
        tenant: &tenant,
    };
    let mut filter =
        idstream_audit::AuditFilter::scope(idstream_audit::Scope::Tenant(tenant.clone()));
    if !query.event_type.trim().is_empty() {
        filter
            .event_types
            .insert(query.event_type.trim().to_owned());
    }
    for (text, slot) in [(&query.person, 0), (&query.actor, 1)] {
        if text.trim().is_empty() {
            continue;
        }
        let user = people
            .named(text)
            .await
            .map_err(|error| failure_page(TRAIL, &error))?
            .ok_or_else(|| unusable("Nobody of this organisation has that address or id."))?;
        match slot {
            0 => filter.subject = Some(user),
            _ => {
                filter.actor = Some(idstream_domain::Actor {
                    kind: idstream_domain::envelope::ActorKind::User,
                    id: user.to_string(),
                })
            }
        }
    }
    let day = |text: &str, end: bool| -> Result<Option<OffsetDateTime>, Page> {
        match text.trim() {
            "" => Ok(None),
            day => {
                let date = time::Date::parse(
                    day,
                    &time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| unusable("A day must be a date (YYYY-MM-DD)."))?;
                let date = if end {
                    date.next_day().unwrap_or(date)
                } else {
                    date
                };
                Ok(Some(date.midnight().assume_utc()))
            }
        }
    };
    filter.from = day(&query.from, false)?;
    filter.to = day(&query.to, true)?;
    filter
        .validate()
        .map_err(|error| unusable(&error.to_string()))?;
    let cursor = match query.cursor.trim() {
        "" => None,
        text => Some(
            text.parse::<idstream_audit::Cursor>()
                .map_err(|_| unusable("This page of the trail cannot be found again."))?,
        ),
    };
    let order = if query.order == "oldest" {
        idstream_audit::Order::OldestFirst
    } else {
        idstream_audit::Order::NewestFirst
    };
    let page = state
        .app
        .audit
        .events(
            caller,
            idstream_audit::AuditQuery {
                filter,
                cursor,
                order,
                limit: TRAIL_PAGE,
            },
        )
        .await
        .map_err(|error| failure_page(TRAIL, &error))?;
    let mut entries = Vec::with_capacity(page.entries.len());
    for entry in &page.entries {
        let actor = match entry.actor.kind {
            idstream_domain::envelope::ActorKind::User => match entry.actor.id.parse::<UserId>() {
                Ok(user) => context! { person => people.link(user).await },
                Err(_) => context! { text => &entry.actor.id },
            },
            idstream_domain::envelope::ActorKind::ApiKey => {
                let owner = match entry.actor_owner {
                    Some(user) => Some(people.link(user).await),
                    None => None,
                };
                context! { text => format!("API key {}", entry.actor.id), person => owner }
            }
            idstream_domain::envelope::ActorKind::System => context! { text => &entry.actor.id },
        };
        let subject = match entry.subject {
            Some(user) => Some(people.link(user).await),
            None => None,
        };
        let record = match (entry.details.get("entity"), entry.details.get("record")) {
            (Some(entity), Some(record)) => Some(context! {
                entity => entity, id => record,
                link => record_page(entity, record),
                travel => with_query("/admin/time-travel", &[
                    ("entity", entity), ("record", record), ("permission", "read"),
                    ("at", &entry.position.saturating_sub(1).to_string()),
                    ("compare", &entry.position.to_string()),
                ]),
            }),
            _ => None,
        };
        entries.push(context! {
            time => when(entry.time), position => entry.position, summary => &entry.summary,
            event_type => &entry.event_type, actor => actor, subject => subject, record => record,
            aggregate => format!("{:?} {}", entry.aggregate_type, entry.aggregate_id.as_deref().unwrap_or("")),
        });
    }
    let onwards = |cursor: &Option<idstream_audit::Cursor>| {
        cursor.as_ref().map(|cursor| {
            let cursor = cursor.to_string();
            let pairs: Vec<(&str, &str)> = [
                ("type", query.event_type.as_str()),
                ("person", query.person.as_str()),
                ("actor", query.actor.as_str()),
                ("from", query.from.as_str()),
                ("to", query.to.as_str()),
                ("order", query.order.as_str()),
                ("cursor", cursor.as_str()),
            ]
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
            with_query("/admin/audit", &pairs)
        })
    };
    Ok(Page::html(
        StatusCode::OK,
        "admin_audit.html",
        context! { ..base(TRAIL), ..context! {
            wide => true, entries => entries, partial => page.partial,
            next => onwards(&page.next), prev => onwards(&page.prev),
            event_type => &query.event_type, person => &query.person, actor => &query.actor,
            from => &query.from, to => &query.to, oldest => query.order == "oldest",
        }},
    ))
}

// ----- access review -----

const REVIEW: &str = "Access review";

#[derive(Deserialize, Default)]
pub(super) struct ReviewQuery {
    /// A past moment (a time or a log position); empty: now.
    #[serde(default)]
    at: String,
    /// `csv` for the download.
    #[serde(default)]
    format: String,
    /// The people after this one (a user id), [`REVIEW_PAGE`] at a time; anything but a user
    /// id is the first page.
    #[serde(default)]
    after: String,
    /// The people before this one (a user id).
    #[serde(default)]
    before: String,
}

/// Members per page of the access review screen: the whole review of a large organisation
/// would be a page of many megabytes (its CSV download holds everyone).
const REVIEW_PAGE: usize = 100;

/// `/admin/access-review`: who holds which roles, custom permissions, record grants, local roles
/// and records in the organisation, now or at a past moment (`audit:read`), as a table or as the
/// API's CSV download.
pub(super) async fn admin_access_review_page(
    State(state): State<AppState>,
    Query(query): Query<ReviewQuery>,
    parts: Parts,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (caller, refreshed, _csrf, set) =
        match page_caller(&state, &parts, "/admin/access-review").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page.into_response(),
        };
    let (body, tenant) = match review_screen(&state, &caller, &query).await {
        Ok(ReviewScreen::Page(page)) | Err(page) => {
            return with_cookies(page, refreshed, set).into_response();
        }
        Ok(ReviewScreen::Download(body, tenant)) => (body, tenant),
    };
    // The download: the session's cookies (a refreshed session) on the streamed CSV.
    let empty = Page {
        status: StatusCode::OK,
        body: String::new(),
        cookies: Vec::new(),
        location: None,
        form_action: None,
    };
    let mut response = with_cookies(empty, refreshed, set).into_response();
    *response.body_mut() = body;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.remove(axum::http::header::CONTENT_LENGTH);
    if let Ok(disposition) = axum::http::HeaderValue::from_str(&format!(
        "attachment; filename=\"access-review-{tenant}.csv\""
    )) {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// The access review screen's answer: a page, or the CSV download (streamed) of a tenant.
enum ReviewScreen {
    Page(Page),
    Download(axum::body::Body, TenantId),
}

/// The screen, or the CSV download of the whole review.
async fn review_screen(
    state: &AppState,
    caller: &Caller,
    query: &ReviewQuery,
) -> Result<ReviewScreen, Page> {
    let tenant = console_tenant(state, caller, REVIEW)?;
    let as_of = match query.at.trim() {
        "" => None,
        text => Some(moment(text).ok_or_else(|| {
            failure_page(
                REVIEW,
                &AppError::InvalidQuery(
                    "A moment is a log position or a time (YYYY-MM-DDTHH:MM:SS, UTC).".into(),
                ),
            )
        })?),
    };
    if query.format == "csv" {
        let body = crate::routes::audit::past::review_csv_body(
            state.app.audit.clone(),
            caller.clone(),
            as_of,
            tenant.clone(),
        )
        .await
        .map_err(|error| failure_page(REVIEW, &error))?;
        return Ok(ReviewScreen::Download(body, tenant));
    }
    let from = match (
        query.after.trim().parse::<UserId>(),
        query.before.trim().parse::<UserId>(),
    ) {
        (Ok(after), _) => ReviewFrom::After(after),
        (_, Ok(before)) => ReviewFrom::Before(before),
        _ => ReviewFrom::Start,
    };
    let window = ReviewWindow::Page {
        from,
        limit: REVIEW_PAGE,
    };
    let (info, review) = state
        .app
        .audit
        .access_review(caller, as_of, tenant.clone(), window)
        .await
        .map_err(|error| failure_page(REVIEW, &error))?;
    let holding = |h: &idstream_access::Holding| match h.expires_at {
        Some(end) => format!("{} (until {})", h.name, when(end)),
        None => h.name.clone(),
    };
    let rows: Vec<minijinja::Value> = review
        .review
        .members
        .iter()
        .map(|member| {
            let records: Vec<String> = member
                .records
                .iter()
                .map(|r| {
                    let mut parts = Vec::new();
                    if let Some((access, _)) = &r.grant {
                        parts.push(access_words(*access).to_owned());
                    }
                    parts.extend(r.local_roles.iter().map(|l| format!("local role {}", holding(l))));
                    if r.owner.is_some() {
                        parts.push("owner".to_owned());
                    }
                    format!("{} ({}): {}", r.record, r.entity, parts.join(", "))
                })
                .collect();
            context! {
                id => member.user.to_string(),
                label => review.emails.get(&member.user).filter(|e| !e.is_empty()).cloned().unwrap_or_else(|| member.user.to_string()),
                status => member.status.map(|s| format!("{s:?}").to_lowercase()),
                roles => member.roles.iter().map(holding).collect::<Vec<_>>().join(", "),
                custom => member.custom_permissions.iter().map(holding).collect::<Vec<_>>().join(", "),
                records => records,
            }
        })
        .collect();
    let download = match query.at.trim() {
        "" => "/admin/access-review?format=csv".to_owned(),
        at => with_query("/admin/access-review", &[("at", at), ("format", "csv")]),
    };
    let page_from = |edge: &str, user: Option<&UserId>| {
        let user = user.map(UserId::to_string).unwrap_or_default();
        let mut pairs = Vec::new();
        if !query.at.trim().is_empty() {
            pairs.push(("at", query.at.trim()));
        }
        if !user.is_empty() {
            pairs.push((edge, user.as_str()));
        }
        with_query("/admin/access-review", &pairs)
    };
    let members = &review.review.members;
    let prev = review
        .earlier
        .then(|| members.first())
        .flatten()
        .map(|first| page_from("before", Some(&first.user)));
    let next = review
        .later
        .then(|| members.last())
        .flatten()
        .map(|last| page_from("after", Some(&last.user)));
    let first_page = prev.is_some().then(|| page_from("", None));
    let page = Page::html(
        StatusCode::OK,
        "admin_access_review.html",
        context! { ..base(REVIEW), ..context! {
            wide => true, rows => rows, at => &query.at, download => download,
            first_page => first_page, prev => prev, next => next,
            position => info.as_ref().map(|i| i.position), time => info.as_ref().and_then(|i| i.time).map(when),
        }},
    );
    Ok(ReviewScreen::Page(page))
}

// ----- the platform -----

const PLATFORM: &str = "Platform";

#[derive(Deserialize, Default)]
pub(super) struct PlatformQuery {
    /// Search the platform directory.
    #[serde(default)]
    q: String,
    /// One person's access across tenants.
    #[serde(default)]
    person: String,
    /// `1`: the read models' digests too, which read every tree (seconds to minutes for a
    /// large organisation: not on every visit).
    #[serde(default)]
    digests: String,
}

/// `/admin/platform` (platform administrators): the tenants, the read models' positions and lag
/// (and their digests when asked for), the tamper-evidence chain's verification (`Operations::chain_status`, moved on to the log's
/// end by each visit), the platform directory (every user with their tenants) and one person's
/// access across tenants. Anyone else is refused (403) by the operations themselves.
pub(super) async fn admin_platform_page(
    State(state): State<AppState>,
    Query(query): Query<PlatformQuery>,
    parts: Parts,
) -> Page {
    let (caller, refreshed, _csrf, set) = match page_caller(&state, &parts, "/admin/platform").await
    {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match platform_screen(&state, &caller, &query).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn platform_screen(
    state: &AppState,
    caller: &Caller,
    query: &PlatformQuery,
) -> Result<Page, Page> {
    console_tenant(state, caller, PLATFORM)?;
    let failed = |error: AppError| failure_page(PLATFORM, &error);
    // First, as it refuses everyone but platform administrators.
    let chain = state
        .app
        .operations
        .chain_status(caller)
        .await
        .map_err(failed)?;
    let with_digests = query.digests == "1";
    let digests = match with_digests {
        true => Some(
            state
                .app
                .operations
                .read_models(caller)
                .await
                .map_err(failed)?
                .read_models,
        ),
        false => None,
    };
    let end = state
        .app
        .operations
        .log_position(caller, std::time::Duration::from_secs(1))
        .await;
    let models: Vec<minijinja::Value> = state
        .app
        .operations
        .positions(caller)
        .into_iter()
        .map(|(name, position)| {
            let digest = digests
                .as_ref()
                .and_then(|all| all.get(&name))
                .map(|model| model.digest.get(..12).unwrap_or(&model.digest).to_owned());
            context! {
                name => name, position => position,
                lag => end.map(|end| end.saturating_sub(position)),
                digest => digest,
            }
        })
        .collect();
    let chain = context! {
        verifies => chain.verifies(), running => chain.running,
        verified => chain.verified, log_end => chain.log_end,
        checkpoints => chain.checkpoints, covered_to => chain.covered_to,
        uncovered => chain.uncovered(),
        last_checkpoint => chain.last_checkpoint.as_ref().map(|(at, _)| *at),
        key => chain.last_checkpoint.as_ref().map(|(_, key)| key),
        checked_at => chain.checked_at.map(when),
        pass_started => chain.pass_started.map(when),
        broken_at => chain.broken.as_ref().map(|found| found.position),
        broken => chain.broken.as_ref().map(|found| &found.reason),
        unreadable => chain.unreadable,
    };
    let tenants: Vec<minijinja::Value> = state
        .app
        .tenants
        .list(caller, None, 200)
        .map_err(failed)?
        .iter()
        .map(|tenant| context! { id => tenant.id.as_str(), name => &tenant.name })
        .collect();
    let mut found = None;
    if !query.q.trim().is_empty() {
        let page = state
            .app
            .people
            .search_everyone(caller, &people_query(Some(query.q.trim().to_owned()), 50))
            .await
            .map_err(failed)?;
        found = Some(
            page.rows
                .iter()
                .map(|row| {
                    context! {
                        id => row.user.id.to_string(), email => &row.user.email,
                        name => format!("{} {}", row.user.first_name, row.user.last_name).trim().to_owned(),
                        tenants => row.tenants.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "),
                        link => with_query("/admin/platform", &[("person", &row.user.id.to_string())]),
                    }
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut person = None;
    if !query.person.trim().is_empty() {
        let user: UserId = query
            .person
            .trim()
            .parse()
            .map_err(|_| failure_page(PLATFORM, &AppError::UserNotFound))?;
        let access = state
            .app
            .people
            .access(caller, user)
            .await
            .map_err(failed)?;
        person = Some(context! {
            id => user.to_string(),
            tenants => access.iter().map(|t| context! {
                tenant => t.tenant.as_str(),
                roles => t.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                custom => t.custom_permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                grants => t.holdings.record_grants, local_roles => t.holdings.local_roles,
                owned => t.holdings.owned_records,
            }).collect::<Vec<_>>(),
        });
    }
    Ok(Page::html(
        StatusCode::OK,
        "admin_platform.html",
        context! { ..base(PLATFORM), ..context! {
            wide => true, backend => state.app.operations.log().backend(), log_position => end,
            models => models, with_digests => with_digests,
            chain => chain,
            tenants => tenants, q => &query.q, found => found, person => person,
        }},
    ))
}

// ----- time travel -----

#[derive(Deserialize, Default)]
pub(super) struct TravelQuery {
    #[serde(default)]
    entity: String,
    #[serde(default)]
    record: String,
    /// `read`, `create`, `update` or `delete`.
    #[serde(default)]
    permission: String,
    /// A moment: a log position, or a time (YYYY-MM-DDTHH:MM[:SS], UTC).
    #[serde(default)]
    at: String,
    /// A second moment to compare with.
    #[serde(default)]
    compare: String,
}

/// `/admin/time-travel`: who could use a permission on a record at a moment (and at a second
/// one, side by side), each answer with the role, grant, ownership or local role behind it and
/// the event that established it (point-in-time replay of the log).
pub(super) async fn admin_time_travel_page(
    State(state): State<AppState>,
    Query(query): Query<TravelQuery>,
    parts: Parts,
) -> Page {
    let (caller, refreshed, _csrf, set) =
        match page_caller(&state, &parts, "/admin/time-travel").await {
            Ok(signed_in) => signed_in,
            Err(page) => return page,
        };
    let page = match travel_screen(&state, &caller, &query).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn travel_screen(
    state: &AppState,
    caller: &Caller,
    query: &TravelQuery,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, TIME_TRAVEL)?;
    // The screen needs the trail's permission even before anything is asked.
    state
        .app
        .audit
        .events(
            caller,
            idstream_audit::AuditQuery {
                filter: idstream_audit::AuditFilter::scope(idstream_audit::Scope::Tenant(
                    tenant.clone(),
                )),
                cursor: None,
                order: idstream_audit::Order::NewestFirst,
                limit: 1,
            },
        )
        .await
        .map_err(|error| failure_page(TIME_TRAVEL, &error))?;
    let unusable = |text: &str| failure_page(TIME_TRAVEL, &AppError::InvalidQuery(text.to_owned()));
    let action = match query.permission.as_str() {
        "" | "read" => Action::Read,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        _ => return Err(unusable("Choose read, create, update or delete.")),
    };
    let mut moments = Vec::new();
    if !query.entity.trim().is_empty() && !query.at.trim().is_empty() {
        let (entity, record) = record_named(&query.entity, &query.record)?;
        let permission =
            Permission::entity(&entity, action).map_err(|error| unusable(&error.to_string()))?;
        let people = People {
            state,
            caller,
            tenant: &tenant,
        };
        for text in [&query.at, &query.compare] {
            if text.trim().is_empty() {
                continue;
            }
            let moment = moment(text).ok_or_else(|| {
                unusable("A moment is a log position or a time (YYYY-MM-DDTHH:MM:SS, UTC).")
            })?;
            let (info, holders) = state
                .app
                .audit
                .holders_as_of(
                    caller,
                    moment,
                    tenant.clone(),
                    permission.clone(),
                    record.clone(),
                )
                .await
                .map_err(|error| failure_page(TIME_TRAVEL, &error))?;
            moments.push(moment_view(&people, &info, &holders).await);
        }
    }
    Ok(Page::html(
        StatusCode::OK,
        "admin_time_travel.html",
        context! { ..base(TIME_TRAVEL), ..context! {
            wide => true, moments => moments,
            entity => &query.entity, record => &query.record,
            permission => if query.permission.is_empty() { "read" } else { query.permission.as_str() },
            at => &query.at, compare => &query.compare,
        }},
    ))
}

/// A log position (digits) or a time (`YYYY-MM-DDTHH:MM[:SS]`, read as UTC; RFC 3339 too).
fn moment(text: &str) -> Option<AsOf> {
    let text = text.trim();
    if let Ok(position) = text.parse::<u64>() {
        return Some(AsOf::Position(position));
    }
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(AsOf::Time(at));
    }
    let text = text.trim_end_matches(" UTC").replace(' ', "T");
    [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ]
    .iter()
    .find_map(|format| time::PrimitiveDateTime::parse(&text, format).ok())
    .map(|at| AsOf::Time(at.assume_utc()))
}

async fn moment_view(
    people: &People<'_>,
    info: &ReplayInfo,
    holders: &[ExplainedHolder],
) -> minijinja::Value {
    let mut rows = Vec::with_capacity(holders.len());
    for holder in holders {
        let because: Vec<minijinja::Value> = holder
            .explanation
            .sources
            .iter()
            .map(|source| {
                context! {
                    fact => &source.fact, position => source.source.position,
                    event_type => &source.source.event_type, time => when(source.source.occurred_at),
                }
            })
            .collect();
        rows.push(context! {
            person => people.link(holder.user).await,
            reason => reason_words(&holder.explanation.decision.reason),
            because => because,
        });
    }
    context! {
        position => info.position, time => info.time.map(when),
        decided_at => info.decided_at.map(when), holders => rows,
    }
}

/// Why someone could, in words.
fn reason_words(reason: &Reason) -> String {
    match reason {
        Reason::GlobalAccess { role } => format!("global access through role {role}"),
        Reason::Role { role } => format!("role {role}"),
        Reason::CustomPermission => "a custom permission".to_owned(),
        Reason::Policy { principal } => format!("the entity's policy for {principal:?}"),
        Reason::Grant { access } => format!("a grant ({})", access_words(*access)),
        Reason::Owner => "owns the record".to_owned(),
        Reason::LocalRole { role } => format!("local role {role} on the record"),
        other => format!("{other:?}"),
    }
}

// ----- tenant settings -----

const SETTINGS: &str = "Settings";

/// `/admin/settings`: the organisation's settings (`settings:read`), as a form its holders of
/// `settings:update` can save; for the others the fields are shown read-only, without the button.
pub(super) async fn admin_settings_page(State(state): State<AppState>, parts: Parts) -> Page {
    let (caller, refreshed, csrf, set) = match page_caller(&state, &parts, "/admin/settings").await
    {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match settings_screen(&state, &caller, &csrf, None, None).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, set)
}

async fn settings_screen(
    state: &AppState,
    caller: &Caller,
    csrf: &str,
    shown: Option<&TenantSettings>,
    error: Option<String>,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, SETTINGS)?;
    let settings = state
        .app
        .tenants
        .settings(caller, &tenant)
        .await
        .map_err(|error| failure_page(SETTINGS, &error))?;
    let editable = Held::of(state, caller).await.may("settings:update");
    let roles: Vec<String> = state
        .app
        .access
        .roles(caller, &tenant)
        .await
        .map(|roles| roles.into_iter().map(|r| r.name.to_string()).collect())
        .unwrap_or_else(|_| vec![settings.default_role.to_string()]);
    let shown = shown.unwrap_or(&settings);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(Page::html(
        status,
        "admin_settings.html",
        context! { ..base(SETTINGS), ..context! {
            csrf => csrf, editable => editable, s => shown, roles => roles, error => error,
            languages => idstream_domain::tenant::LANGUAGES,
        }},
    ))
}

/// The settings form: every setting (a checkbox left out is off).
#[derive(Deserialize)]
pub(super) struct SettingsForm {
    csrf: String,
    #[serde(default)]
    self_registration: Option<String>,
    #[serde(default)]
    default_role: String,
    #[serde(default)]
    require_email_verification: Option<String>,
    #[serde(default)]
    verify_created_users: Option<String>,
    #[serde(default)]
    mfa_required: Option<String>,
    #[serde(default)]
    phishing_resistant_admins: Option<String>,
    #[serde(default)]
    min_length: String,
    #[serde(default)]
    max_length: String,
    #[serde(default)]
    require_lowercase: Option<String>,
    #[serde(default)]
    require_uppercase: Option<String>,
    #[serde(default)]
    require_digit: Option<String>,
    #[serde(default)]
    require_symbol: Option<String>,
    #[serde(default)]
    deny_common: Option<String>,
    #[serde(default)]
    invitation_ttl_hours: String,
    #[serde(default)]
    session_idle_minutes: String,
    #[serde(default)]
    session_max_hours: String,
    #[serde(default)]
    magic_link_ttl_minutes: String,
    #[serde(default)]
    remember_days: String,
    #[serde(default)]
    logo_url: String,
    #[serde(default)]
    brand_colour: String,
    #[serde(default)]
    language: String,
}

impl SettingsForm {
    /// The settings the form asks for; `Err` names the first field that is not a number.
    fn settings(&self) -> Result<TenantSettings, String> {
        let number = |text: &str, what: &str| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| format!("{what} must be a whole number."))
        };
        let default_role = self
            .default_role
            .trim()
            .parse()
            .map_err(|_| "The default role is not a role name.".to_owned())?;
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(TenantSettings {
            self_registration: self.self_registration.is_some(),
            default_role,
            require_email_verification: self.require_email_verification.is_some(),
            password_policy: idstream_domain::tenant::PasswordPolicySettings {
                min_length: number(&self.min_length, "The shortest password")?,
                max_length: number(&self.max_length, "The longest password")?,
                require_lowercase: self.require_lowercase.is_some(),
                require_uppercase: self.require_uppercase.is_some(),
                require_digit: self.require_digit.is_some(),
                require_symbol: self.require_symbol.is_some(),
                deny_common: self.deny_common.is_some(),
            },
            invitation_ttl_hours: number(&self.invitation_ttl_hours, "The invitation lifetime")?,
            session_idle_minutes: number(&self.session_idle_minutes, "The idle timeout")?,
            session_max_hours: number(&self.session_max_hours, "The session lifetime")?,
            magic_link_ttl_minutes: number(&self.magic_link_ttl_minutes, "The link lifetime")?,
            mfa_required: self.mfa_required.is_some(),
            remember_days: number(&self.remember_days, "Remember me")?,
            verify_created_users: self.verify_created_users.is_some(),
            logo_url: optional(&self.logo_url),
            brand_colour: optional(&self.brand_colour),
            language: self.language.trim().to_owned(),
            phishing_resistant_admins: self.phishing_resistant_admins.is_some(),
        })
    }
}

/// Saves the settings (the settings operation: `settings:update`, and the default role's rules).
/// A refused form is shown again as it was typed, with what was wrong; nothing changes.
pub(super) async fn admin_save_settings(
    State(state): State<AppState>,
    parts: Parts,
    PageForm(form): PageForm<SettingsForm>,
) -> Page {
    let (caller, refreshed) = match form_caller(&state, &parts, &form.csrf, "/admin/settings").await
    {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let page = match save_settings(&state, &caller, &form).await {
        Ok(page) | Err(page) => page,
    };
    with_cookies(page, refreshed, None)
}

async fn save_settings(
    state: &AppState,
    caller: &Caller,
    form: &SettingsForm,
) -> Result<Page, Page> {
    let tenant = console_tenant(state, caller, SETTINGS)?;
    let settings = match form.settings() {
        Ok(settings) => settings,
        Err(error) => {
            let current = state
                .app
                .tenants
                .settings(caller, &tenant)
                .await
                .map_err(|error| failure_page(SETTINGS, &error))?;
            return settings_screen(state, caller, &form.csrf, Some(&current), Some(error)).await;
        }
    };
    match state
        .app
        .tenants
        .change_settings(caller, tenant, settings.clone())
        .await
    {
        Ok(done) => {
            settled(state, done.position, SETTINGS).await?;
            Ok(Page::redirect("/admin/settings"))
        }
        Err(error @ (AppError::Forbidden(_) | AppError::DashboardAccessDisabled)) => {
            Err(failure_page(SETTINGS, &error))
        }
        Err(error) => {
            settings_screen(
                state,
                caller,
                &form.csrf,
                Some(&settings),
                Some(error.to_string()),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_a_log_position_or_a_time_read_as_utc() {
        assert_eq!(moment("42"), Some(AsOf::Position(42)));
        let at = time::macros::datetime!(2026-12-05 14:30:15 UTC);
        for text in [
            "2026-12-05T14:30:15",
            "2026-12-05 14:30:15",
            "2026-12-05 14:30:15 UTC",
            "2026-12-05T14:30:15Z",
            "2026-12-05T15:30:15+01:00",
        ] {
            assert_eq!(moment(text), Some(AsOf::Time(at)), "{text}");
        }
        assert_eq!(
            moment("2026-12-05T14:30"),
            Some(AsOf::Time(time::macros::datetime!(2026-12-05 14:30 UTC)))
        );
        for text in ["", "yesterday", "-1", "2026-13-05T14:30"] {
            assert_eq!(moment(text), None, "{text}");
        }
    }

    #[test]
    fn a_last_day_ends_at_the_next_midnight_utc() {
        assert_eq!(
            day_end("2026-12-31"),
            Some(time::macros::datetime!(2027-01-01 00:00 UTC))
        );
        assert_eq!(day_end("31/12/2026"), None);
    }
}
