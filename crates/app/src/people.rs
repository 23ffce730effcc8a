//! The user directory: searching and listing a tenant's members (and, for platform
//! administrators, every user), autocomplete for pickers, a role's members and changing them in
//! bulk, and one person's access across their tenants.
//!
//! The searches run on the directory's in-memory index (`idstream_directory::search`), which
//! holds ids only in its answers; each row is then read from the directory tree, the source of
//! truth, so a row always shows the user as the read model has them.

use std::collections::BTreeSet;

use idstream_directory::search::{Cursor, Scope, Search, SearchError, Sort};
use idstream_directory::{Directory, UserStatus, UserView};
use idstream_domain::access::role::RoleError;
use idstream_domain::access::{Action, Permission, Resource, role};
use idstream_domain::{RoleName, TenantId, UserId};
use time::OffsetDateTime;

use crate::core::internal;
use crate::policy::{Caller, TenantScope, named};
use crate::{AppError, Outcome, service};

service!(
    /// The user directory: search, autocomplete, role members, one person's access.
    People
);

/// The most rows of one page.
pub const MAX_ROWS: usize = 500;

/// The most users one bulk change of a role's members names.
pub const MAX_BULK: usize = 500;

/// A search of the directory, as a client asks it. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct PeopleQuery {
    /// Anywhere in the email, first or last name or full name (case-, accent- and
    /// width-insensitive), or a user's exact id.
    pub text: Option<String>,
    /// Any of these roles (a tenant's listing only).
    pub roles: Vec<RoleName>,
    /// Any of these statuses, as in effect now.
    pub statuses: Vec<UserStatus>,
    pub created_from: Option<OffsetDateTime>,
    pub created_to: Option<OffsetDateTime>,
    pub last_sign_in_from: Option<OffsetDateTime>,
    pub last_sign_in_to: Option<OffsetDateTime>,
    pub verified: Option<bool>,
    /// Attribute values, each `(name, value as text)`: only searchable attributes of the
    /// tenant listed, matched exactly (text without regard to case). All must hold.
    pub attributes: Vec<(String, String)>,
    pub sort: Sort,
    /// The `next` of the previous page, as [`Cursor::encode`] made it.
    pub cursor: Option<String>,
    /// 1 to [`MAX_ROWS`].
    pub limit: usize,
}

/// One row of a listing.
#[derive(Debug, Clone)]
pub struct PersonRow {
    pub user: UserView,
    /// The status in effect now (a lapsed timed suspension reads active).
    pub status: UserStatus,
    /// The user's roles in the listed tenant (empty in the platform directory).
    pub roles: BTreeSet<RoleName>,
    /// The user's tenants the caller may see: those where it holds `users:read` (every one, for
    /// platform administrators).
    pub tenants: Vec<TenantId>,
    /// The user's attribute values in the tenant listed, those it defines now (empty in the
    /// platform directory).
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct PeoplePage {
    pub rows: Vec<PersonRow>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
    /// How many users match; a lower bound when `total_exact` is false (see
    /// `idstream_directory::search::EXACT_TOTAL_CHECKS`).
    pub total: u64,
    pub total_exact: bool,
}

/// A picker's suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub id: UserId,
    /// "First Last <email>", or the email alone when the user has no name.
    pub label: String,
}

/// What one bulk change of a role's members did to one user.
#[derive(Debug, Clone)]
pub struct BulkResult {
    pub user: UserId,
    /// `true`: adding; `false`: removing.
    pub add: bool,
    /// The change made (or, when nothing needed changing, `Ok(None)`), or why it was refused.
    pub outcome: Result<Option<Outcome>, AppError>,
}

/// The most operations of one bulk request.
pub const MAX_BULK_OPERATIONS: usize = 1_000;

/// One operation of a bulk request (`POST /v1/tenants/{tenant}/users/bulk`), in that tenant.
#[derive(Debug, Clone)]
pub enum BulkOperation {
    /// Create a user (active, or invited without an email) with roles here.
    Create(crate::NewUserRequest),
    /// Invite someone by email (or by link) with roles here.
    Invite(crate::identity::InvitationRequest),
    AssignRole {
        user: UserId,
        role: RoleName,
        /// Temporary: until then.
        expires_at: Option<time::OffsetDateTime>,
    },
    RevokeRole {
        user: UserId,
        role: RoleName,
    },
    Suspend {
        user: UserId,
        request: crate::SuspendRequest,
    },
    Reinstate {
        user: UserId,
    },
    Deactivate {
        user: UserId,
    },
    /// Set (or, with `None`, clear) attribute values of a member here.
    SetAttributes {
        user: UserId,
        attributes: std::collections::BTreeMap<String, Option<serde_json::Value>>,
    },
}

/// What one operation of a bulk request did.
#[derive(Debug, Clone)]
pub enum BulkOutcome {
    /// Carried out: the id of what it created or changed, and the position of its last event.
    Done {
        id: String,
        position: u64,
        /// An invitation by link: its link, given this once.
        link: Option<String>,
    },
    /// Nothing needed doing (the role was held, the user suspended already, …).
    Unchanged,
    /// Refused, as the single operation would have been.
    Refused(AppError),
}

/// Whether a refusal only says that the change is in place already.
fn already(error: &AppError) -> bool {
    use idstream_domain::membership::MembershipError;
    use idstream_domain::user::UserError;
    matches!(
        error,
        AppError::Membership(MembershipError::AlreadyAssigned | MembershipError::NotAssigned)
            | AppError::User(UserError::AlreadySuspended | UserError::NotSuspended)
    )
}

/// What one person holds in one tenant.
#[derive(Debug, Clone)]
pub struct TenantAccess {
    pub tenant: TenantId,
    pub roles: BTreeSet<RoleName>,
    pub custom_permissions: BTreeSet<Permission>,
    pub holdings: idstream_access::MemberHoldings,
}

impl People {
    /// A page of the members of `tenant` matching `query`.
    ///
    /// Who: `users:read` in the tenant.
    pub async fn search(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        query: &PeopleQuery,
    ) -> Result<PeoplePage, AppError> {
        self.named_permission(caller, tenant, "users", Action::Read)
            .await?;
        self.tenant_now(tenant)?;
        self.index_ready().await?;
        let visible = self.tenants_with(caller, &named("users", Action::Read))?;
        self.page(Scope::Tenant(tenant), &query.roles, query, &visible)
    }

    /// A page of the members of `tenant` who hold `role`, matching `query` (whose own roles
    /// are ignored).
    ///
    /// Who: `users:read` in the tenant.
    pub async fn role_members(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
        query: &PeopleQuery,
    ) -> Result<PeoplePage, AppError> {
        self.named_permission(caller, tenant, "users", Action::Read)
            .await?;
        self.tenant_now(tenant)?;
        self.require_role_exists(tenant, role).await?;
        self.index_ready().await?;
        let visible = self.tenants_with(caller, &named("users", Action::Read))?;
        self.page(
            Scope::Tenant(tenant),
            std::slice::from_ref(role),
            query,
            &visible,
        )
    }

    /// A page of every user matching `query` (roles are not a filter here), each with their
    /// tenants.
    ///
    /// Who: platform administrators.
    pub async fn search_everyone(
        &self,
        caller: &Caller,
        query: &PeopleQuery,
    ) -> Result<PeoplePage, AppError> {
        self.platform_admin(caller).await?;
        if !query.roles.is_empty() {
            return Err(AppError::InvalidQuery(
                "`role` filters a tenant's listing; the platform directory has none".into(),
            ));
        }
        self.index_ready().await?;
        self.page(Scope::Everyone, &[], query, &TenantScope::Every)
    }

    /// The best `limit` members of `tenant` for `text`, for a picker: a word of theirs starting
    /// with the text first, then those containing it; each group by full name.
    ///
    /// Who: `users:read` in the tenant.
    pub async fn autocomplete(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        text: &str,
        limit: usize,
    ) -> Result<Vec<Suggestion>, AppError> {
        self.named_permission(caller, tenant, "users", Action::Read)
            .await?;
        self.tenant_now(tenant)?;
        self.index_ready().await?;
        let ids = self.directory().people().autocomplete(tenant, text, limit);
        let mut suggestions = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(user) = self.directory().user(&id).map_err(internal)? {
                suggestions.push(Suggestion {
                    id,
                    label: label(&user),
                });
            }
        }
        Ok(suggestions)
    }

    /// Adds `add` to the members holding `role` and takes it from `remove`, one user at a time,
    /// each with the rules of a single assignment or revocation (the owner rule, the last
    /// administrator, nobody gives a permission they do not hold). A user who holds it already
    /// (or does not hold it) is left as they are. The whole request is refused when the caller
    /// may not give (or take) the role at all, and then changes nothing.
    ///
    /// With `expires_at`, the role is given to `add` until then (temporary access).
    ///
    /// Who: `role.<role>:assign` in the tenant and every permission of the role to add,
    /// `role.<role>:revoke` to remove.
    pub async fn change_role_members(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        role: &RoleName,
        add: &[UserId],
        remove: &[UserId],
        expires_at: Option<time::OffsetDateTime>,
    ) -> Result<Vec<BulkResult>, AppError> {
        // Authorized first: a caller who may not do this learns nothing about the request.
        // (An empty request is judged as adding.)
        if !add.is_empty() || remove.is_empty() {
            self.may_give_role(caller, tenant, role).await?;
        }
        if !remove.is_empty() {
            let permission =
                Permission::new(Resource::Role(role.clone()), Action::Revoke).map_err(internal)?;
            self.permission(caller, tenant, &permission).await?;
            self.require_tenant(tenant).await?;
            self.require_role_exists(tenant, role).await?;
        }
        if add.len() + remove.len() > MAX_BULK {
            return Err(AppError::InvalidQuery(format!(
                "at most {MAX_BULK} users per request"
            )));
        }
        let both: BTreeSet<&UserId> = add.iter().collect();
        if let Some(user) = remove.iter().find(|u| both.contains(u)) {
            return Err(AppError::InvalidQuery(format!(
                "user {user} is both added and removed"
            )));
        }
        let memberships = crate::Memberships(self.0.clone());
        let mut results = Vec::with_capacity(add.len() + remove.len());
        let mut seen = BTreeSet::new();
        for (&user, adding) in add
            .iter()
            .map(|u| (u, true))
            .chain(remove.iter().map(|u| (u, false)))
        {
            if !seen.insert(user) {
                continue;
            }
            // Each user's change has its own idempotency key, derived from the request's.
            let scoped =
                caller.scoped(&format!("{}-{user}", if adding { "add" } else { "remove" }));
            let outcome = if adding {
                match memberships
                    .assign_role(&scoped, tenant.clone(), user, role.clone(), expires_at)
                    .await
                {
                    Err(AppError::Membership(
                        idstream_domain::membership::MembershipError::AlreadyAssigned,
                    )) => Ok(None),
                    other => other.map(Some),
                }
            } else {
                match memberships
                    .revoke_role(&scoped, tenant.clone(), user, role.clone())
                    .await
                {
                    Err(AppError::Membership(
                        idstream_domain::membership::MembershipError::NotAssigned,
                    )) => Ok(None),
                    other => other.map(Some),
                }
            };
            results.push(BulkResult {
                user,
                add: adding,
                outcome,
            });
        }
        if let Some(last) = results
            .iter()
            .filter_map(|r| match &r.outcome {
                Ok(Some(outcome)) => Some(outcome.position),
                _ => None,
            })
            .max()
        {
            self.wait_for(last).await?;
        }
        Ok(results)
    }

    /// Carries out up to [`MAX_BULK_OPERATIONS`] operations in `tenant`, one after the other,
    /// each authorized and decided on its own exactly as the single operation is (its
    /// permission, the admin rules, nobody gives what they do not hold), with a result per
    /// operation in order. Each operation's idempotency key is the request's, extended by its
    /// index, so a retry of the whole request with the same key repeats nothing.
    ///
    /// Who: `users:update` in the tenant to send a batch at all, then each operation's own rule.
    pub async fn bulk(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        operations: Vec<BulkOperation>,
    ) -> Result<Vec<BulkOutcome>, AppError> {
        self.named_permission(caller, tenant, "users", Action::Update)
            .await?;
        self.require_tenant(tenant).await?;
        if operations.len() > MAX_BULK_OPERATIONS {
            return Err(AppError::InvalidQuery(format!(
                "at most {MAX_BULK_OPERATIONS} operations per request"
            )));
        }
        let app_users = crate::Users(self.0.clone());
        let memberships = crate::Memberships(self.0.clone());
        let identity = crate::Identity(self.0.clone());
        let mut outcomes = Vec::with_capacity(operations.len());
        for (index, operation) in operations.into_iter().enumerate() {
            let caller = caller.scoped(&format!("op{index}"));
            let done = |outcome: Result<crate::Outcome, AppError>| match outcome {
                Ok(outcome) => BulkOutcome::Done {
                    id: outcome.id,
                    position: outcome.position,
                    link: None,
                },
                Err(error) if already(&error) => BulkOutcome::Unchanged,
                Err(error) => BulkOutcome::Refused(error),
            };
            let outcome = match operation {
                BulkOperation::Create(request) => {
                    done(app_users.create(&caller, tenant.clone(), request).await)
                }
                BulkOperation::Invite(request) => {
                    match identity.invite(&caller, tenant.clone(), request).await {
                        Ok(sent) => BulkOutcome::Done {
                            id: sent.id.to_string(),
                            position: sent.position,
                            link: sent.link,
                        },
                        Err(error) => BulkOutcome::Refused(error),
                    }
                }
                BulkOperation::AssignRole {
                    user,
                    role,
                    expires_at,
                } => done(
                    memberships
                        .assign_role(&caller, tenant.clone(), user, role, expires_at)
                        .await,
                ),
                BulkOperation::RevokeRole { user, role } => done(
                    memberships
                        .revoke_role(&caller, tenant.clone(), user, role)
                        .await,
                ),
                BulkOperation::Suspend { user, request } => done(
                    self.in_tenant(tenant, user, app_users.suspend(&caller, user, request))
                        .await,
                ),
                BulkOperation::Reinstate { user } => done(
                    self.in_tenant(tenant, user, app_users.reinstate(&caller, user))
                        .await,
                ),
                BulkOperation::Deactivate { user } => done(
                    self.in_tenant(tenant, user, app_users.deactivate(&caller, user))
                        .await,
                ),
                BulkOperation::SetAttributes { user, attributes } => done(
                    app_users
                        .change_attributes(&caller, tenant.clone(), user, attributes)
                        .await,
                ),
            };
            outcomes.push(outcome);
        }
        if let Some(last) = outcomes
            .iter()
            .filter_map(|o| match o {
                BulkOutcome::Done { position, .. } => Some(*position),
                _ => None,
            })
            .max()
        {
            self.wait_for(last).await?;
        }
        Ok(outcomes)
    }

    /// A lifecycle operation of a bulk request in `tenant`: only on a member of it (the batch
    /// is about this tenant's people), then as the single operation.
    async fn in_tenant(
        &self,
        tenant: &TenantId,
        user: UserId,
        operation: impl std::future::Future<Output = Result<crate::Outcome, AppError>>,
    ) -> Result<crate::Outcome, AppError> {
        if self
            .directory()
            .membership(tenant, &user)
            .map_err(internal)?
            .is_none()
        {
            return Err(AppError::NotAMember);
        }
        operation.await
    }

    /// Every tenant `user` belongs to that the caller may see (all of them for platform
    /// administrators and the user themselves through a session; else those where the caller
    /// holds `users:read`), each with the roles, custom permissions, record grants and local
    /// roles the user holds there.
    ///
    /// Who: the user themselves, platform administrators, `users:read` in a tenant of the user.
    pub async fn access(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<Vec<TenantAccess>, AppError> {
        let scope = self.user_scope(caller, user).await?;
        self.user_now(&user)?;
        let mut tenants = self.user_tenants(&user)?;
        if let TenantScope::Only(visible) = &scope {
            tenants.retain(|t| visible.contains(t));
        }
        let mut answer = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let membership = self
                .directory()
                .membership(&tenant, &user)
                .map_err(internal)?;
            let (roles, custom_permissions) = membership
                .map(|m| (m.roles, m.custom_permissions))
                .unwrap_or_default();
            let holdings = self
                .access_view()
                .member_holdings(&tenant, &user, self.now())
                .map_err(internal)?;
            answer.push(TenantAccess {
                tenant,
                roles,
                custom_permissions,
                holdings,
            });
        }
        Ok(answer)
    }

    /// Waits (up to the consistency timeout) until the directory's search index is loaded.
    pub(crate) async fn index_ready(&self) -> Result<(), AppError> {
        let deadline = tokio::time::Instant::now() + self.consistency_timeout;
        while !self.directory().people().is_loaded() {
            if tokio::time::Instant::now() >= deadline {
                return Err(AppError::SearchIndexLoading);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// One page from the index, with the tenants of `visible`.
    fn page(
        &self,
        scope: Scope<'_>,
        roles: &[RoleName],
        query: &PeopleQuery,
        visible: &TenantScope,
    ) -> Result<PeoplePage, AppError> {
        let visible = match visible {
            TenantScope::Every => None,
            TenantScope::Only(tenants) => Some(tenants.as_slice()),
        };
        search_page(&self.directory(), scope, roles, query, visible, self.now())
    }

    /// A role that exists in the tenant (built in, or defined there), looking again after
    /// catching up with the log before answering that it does not.
    async fn require_role_exists(
        &self,
        tenant: &TenantId,
        role: &RoleName,
    ) -> Result<(), AppError> {
        if role::builtin(role.as_str()).is_some() {
            return Ok(());
        }
        self.find(|core| {
            core.access_view()
                .role_record(tenant, role)
                .map_err(internal)
        })
        .await?
        .map(|_| ())
        .ok_or(AppError::Role(RoleError::NotFound))
    }
}

/// One page of `query` among `scope` (with `roles`, any of them) from the directory's index, each
/// row read from the directory tree, with the tenants of `visible` (`None`: every one). For the
/// service's own operations (which authorize first) and for operators' tools.
pub fn search_page(
    directory: &Directory,
    scope: Scope<'_>,
    roles: &[RoleName],
    query: &PeopleQuery,
    visible: Option<&[TenantId]>,
    now: OffsetDateTime,
) -> Result<PeoplePage, AppError> {
    let cursor = match &query.cursor {
        Some(token) => Some(Cursor::decode(token).map_err(search_error)?),
        None => None,
    };
    let text = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let definitions = match scope {
        Scope::Tenant(tenant) => directory
            .tenant(tenant)
            .map_err(internal)?
            .map(|view| view.attributes)
            .unwrap_or_default(),
        Scope::Everyone => Default::default(),
    };
    if matches!(scope, Scope::Everyone) && !query.attributes.is_empty() {
        return Err(AppError::InvalidQuery(
            "`attribute` filters a tenant's listing; the platform directory has none".into(),
        ));
    }
    let mut attribute_keys = Vec::with_capacity(query.attributes.len());
    for (name, text) in &query.attributes {
        let definition = definitions
            .get(name)
            .filter(|d| d.searchable)
            .ok_or_else(|| {
                AppError::InvalidQuery(format!(
                    "`attribute={name}:…`: the tenant defines no searchable attribute `{name}`"
                ))
            })?;
        let value = definition
            .parse(name, text)
            .map_err(|e| AppError::InvalidQuery(format!("`attribute={name}:…`: {e}")))?;
        attribute_keys.push((
            name.clone(),
            idstream_domain::attributes::search_key(&value),
        ));
    }
    let page = directory
        .people()
        .search(&Search {
            scope,
            text,
            roles,
            statuses: &query.statuses,
            created: (query.created_from, query.created_to),
            last_sign_in: (query.last_sign_in_from, query.last_sign_in_to),
            verified: query.verified,
            attributes: &attribute_keys,
            field: None,
            sort: query.sort,
            after: cursor.as_ref(),
            limit: query.limit.clamp(1, MAX_ROWS),
            now,
        })
        .map_err(search_error)?;
    let mut rows = Vec::with_capacity(page.users.len());
    for id in page.users {
        let Some(user) = directory.user(&id).map_err(internal)? else {
            continue;
        };
        let roles = match scope {
            Scope::Tenant(tenant) => directory
                .membership(tenant, &id)
                .map_err(internal)?
                .map(|m| m.roles)
                .unwrap_or_default(),
            Scope::Everyone => BTreeSet::new(),
        };
        let mut tenants = directory.user_tenants(&id).map_err(internal)?;
        if let Some(visible) = visible {
            tenants.retain(|t| visible.contains(t));
        }
        let attributes = match scope {
            Scope::Tenant(tenant) => user
                .attributes
                .get(tenant)
                .map(|values| idstream_domain::attributes::visible(&definitions, values))
                .unwrap_or_default(),
            Scope::Everyone => Default::default(),
        };
        rows.push(PersonRow {
            status: user.status_at(now),
            user,
            roles,
            tenants,
            attributes,
        });
    }
    Ok(PeoplePage {
        rows,
        next: page.next.map(|c| c.encode()),
        total: page.total,
        total_exact: page.total_exact,
    })
}

/// A picker's label for a user.
fn label(user: &UserView) -> String {
    let name = format!("{} {}", user.first_name, user.last_name);
    let name = name.trim();
    match (name.is_empty(), user.email.is_empty()) {
        (true, _) => user.email.clone(),
        (false, true) => name.to_owned(),
        (false, false) => format!("{name} <{}>", user.email),
    }
}

fn search_error(error: SearchError) -> AppError {
    AppError::InvalidQuery(match error {
        SearchError::CursorOfAnotherSort => {
            "`cursor` belongs to another sort order: start again without it".into()
        }
        SearchError::MalformedCursor => {
            "`cursor` is not one this service issued (use the `next` of the previous page)".into()
        }
    })
}
