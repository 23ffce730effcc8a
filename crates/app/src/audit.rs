//! Audit: the audit trail (F-AU-1), point-in-time explanations and holders (F-AU-2), and the
//! access review (F-AU-6).
//!
//! - A tenant's trail, its past and its review need `audit:read` in that tenant. Platform
//!   administrators have it everywhere; an API key has it if its owner does and its restriction
//!   allows it, in its own tenant only.
//! - Every tenant's trail at once and the events without a tenant are for platform
//!   administrators only.
//!
//! What a tenant's trail includes of global events (sign-ins, failures, lock-outs, user
//! lifecycle) is decided by the audit projection: see `idstream_audit`.

use idstream_access::Explanation;
use idstream_audit::{AuditPage, AuditQuery, Scope};
use idstream_directory::Directory;
use idstream_domain::access::{Action, CheckRequest, Permission, RecordId, Subject};
use idstream_domain::{TenantId, UserId};
use idstream_eventlog::Position;
use time::OffsetDateTime;

use crate::core::internal;
use crate::policy::Caller;
use crate::replay::{AsOf, ExplainedHolder, ReplayInfo, Review, ReviewWindow, emails, holders};
use crate::{AppError, service};

service!(
    /// The audit trail, the past and access reviews.
    Audit
);

impl Audit {
    /// The audit read model's query side.
    fn trail(&self) -> idstream_audit::Audit {
        idstream_audit::Audit::new(self.read_models.tree(idstream_audit::NAME))
    }

    /// Honours a consistency token for a query of the audit trail: the audit read model too.
    pub async fn wait_for_token(&self, min: Position) -> Result<(), AppError> {
        self.wait_for_audit_token(min).await
    }

    /// One page of the audit trail.
    ///
    /// Who: `audit:read` in the tenant; platform administrators for every tenant or the
    /// global events.
    pub async fn events(&self, caller: &Caller, query: AuditQuery) -> Result<AuditPage, AppError> {
        match &query.filter.scope {
            Scope::Tenant(tenant) => self.auditor(caller, tenant).await?,
            Scope::All | Scope::Global => self.platform_admin(caller).await?,
        }
        let audit = self.trail();
        // A page may read thousands of index keys: off the async workers.
        tokio::task::spawn_blocking(move || audit.query(&query))
            .await
            .map_err(|e| AppError::Internal(format!("the audit query did not finish: {e}")))?
            .map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Auditors hold `audit:read` in the tenant; a tenant that does not exist is not found.
    async fn auditor(&self, caller: &Caller, tenant: &TenantId) -> Result<(), AppError> {
        self.named_permission(caller, tenant, "audit", Action::Read)
            .await?;
        self.require_tenant(tenant).await
    }

    /// The replay of the read models at `as_of` (rebuilt only when not already at hand, or when
    /// an erasure came after it), and the moment it stands for.
    async fn past(
        &self,
        as_of: AsOf,
    ) -> Result<(std::sync::Arc<crate::replay::Replay>, OffsetDateTime), AppError> {
        let replay = self
            .replays
            .at(as_of, self.last_erasure().await?, |_, _| {})
            .await?;
        let at = replay.moment(as_of);
        Ok((replay, at))
    }

    /// The position of the last erasure in the log (the read models catch up with the log
    /// first, so an erasure just made is never missed).
    async fn last_erasure(&self) -> Result<Position, AppError> {
        self.catch_up().await?;
        self.directory().last_erasure().map_err(internal)
    }

    /// Explains a check as it would have been decided at `as_of`.
    ///
    /// Who: `audit:read` in the tenant.
    pub async fn explain_as_of(
        &self,
        caller: &Caller,
        as_of: AsOf,
        tenant: TenantId,
        user: UserId,
        permission: Permission,
        record: Option<RecordId>,
    ) -> Result<(ReplayInfo, Explanation), AppError> {
        self.auditor(caller, &tenant).await?;
        let (replay, at) = self.past(as_of).await?;
        let explanation = replay
            .access
            .explain(CheckRequest {
                tenant: &tenant,
                subject: Subject::User(user),
                permission: &permission,
                record: record.as_ref(),
                restriction: None,
                now: at,
            })
            .map_err(internal)?;
        Ok((replay.info_at(at), explanation))
    }

    /// Who could use `permission` (of an entity) on `record` at `as_of`, each with the
    /// decision's explanation (the role, grant, ownership, local role or global access, and the
    /// event that established it). Everyone holding anything in the tenant then is considered.
    ///
    /// Who: `audit:read` in the tenant.
    pub async fn holders_as_of(
        &self,
        caller: &Caller,
        as_of: AsOf,
        tenant: TenantId,
        permission: Permission,
        record: RecordId,
    ) -> Result<(ReplayInfo, Vec<ExplainedHolder>), AppError> {
        self.auditor(caller, &tenant).await?;
        let (replay, at) = self.past(as_of).await?;
        let holders = holders(&replay, at, &tenant, &permission, &record)?;
        Ok((replay.info_at(at), holders))
    }

    /// The access review of a tenant now (the live read models, caught up with the log) or at
    /// `as_of`: everyone, a page of it, or one person.
    ///
    /// Who: `audit:read` in the tenant.
    pub async fn access_review(
        &self,
        caller: &Caller,
        as_of: Option<AsOf>,
        tenant: TenantId,
        window: ReviewWindow,
    ) -> Result<(Option<ReplayInfo>, Review), AppError> {
        self.auditor(caller, &tenant).await?;
        let read = |access: &idstream_access::Access,
                    directory: &Directory,
                    at: OffsetDateTime|
         -> Result<Review, AppError> {
            let (review, earlier, later) = match &window {
                ReviewWindow::Everyone => (
                    access.access_review(&tenant, at).map_err(internal)?,
                    false,
                    false,
                ),
                ReviewWindow::Page { from, limit } => {
                    let page = access
                        .access_review_page(&tenant, at, from, *limit)
                        .map_err(internal)?;
                    (page.review, page.earlier, page.later)
                }
                ReviewWindow::Person(user) => {
                    let member = access.member_review(&tenant, user, at).map_err(internal)?;
                    let review = idstream_access::AccessReview {
                        tenant: tenant.clone(),
                        members: member.into_iter().collect(),
                    };
                    (review, false, false)
                }
            };
            let emails = emails(directory, &review)?;
            Ok(Review {
                review,
                emails,
                earlier,
                later,
            })
        };
        match as_of {
            None => {
                self.catch_up().await?;
                let review = read(&self.access_view(), &self.directory(), self.now())?;
                Ok((None, review))
            }
            Some(as_of) => {
                let (replay, at) = self.past(as_of).await?;
                let review = read(&replay.access, &replay.directory, at)?;
                Ok((Some(replay.info_at(at)), review))
            }
        }
    }

    /// The tenant's OpenID Connect applications (clients, removed ones with their removal), the
    /// consents people gave them, and the upstream providers people sign in through (never a
    /// secret), now or as they were at a past moment.
    ///
    /// Who: `audit:read` in the tenant.
    pub async fn applications(
        &self,
        caller: &Caller,
        as_of: Option<AsOf>,
        tenant: TenantId,
    ) -> Result<(Option<ReplayInfo>, Applications), AppError> {
        self.auditor(caller, &tenant).await?;
        let read = |identity: &idstream_identity::Identity| -> Result<Applications, AppError> {
            let storage = crate::identity::identity_storage;
            Ok(Applications {
                clients: identity.clients(&tenant).map_err(storage)?,
                consents: identity.tenant_consents(&tenant).map_err(storage)?,
                providers: identity
                    .providers(&tenant)
                    .map_err(storage)?
                    .into_iter()
                    .map(|mut p| {
                        p.secret = None;
                        p
                    })
                    .collect(),
            })
        };
        match as_of {
            None => {
                self.catch_up().await?;
                Ok((None, read(&self.identity())?))
            }
            Some(as_of) => {
                let (replay, at) = self.past(as_of).await?;
                Ok((Some(replay.info_at(at)), read(&replay.identity)?))
            }
        }
    }
}

/// A tenant's applications, consents and upstream providers at one moment.
#[derive(Debug, Clone)]
pub struct Applications {
    pub clients: Vec<idstream_identity::ClientView>,
    pub consents: Vec<idstream_identity::ConsentView>,
    /// Their secrets left out.
    pub providers: Vec<idstream_identity::ProviderView>,
}
