//! The audit trail query (F-AU-1): who may read which part of it.
//!
//! - A tenant's trail (`Scope::Tenant`) needs `audit:read` in that tenant. Platform
//!   administrators (and system actors) have it everywhere; an API key has it if its owner does
//!   and its restriction allows it, in its own tenant only (see [`App::authorize`]).
//! - Every tenant at once (`Scope::All`) and the events without a tenant (`Scope::Global`) are
//!   for platform administrators only.
//!
//! What a tenant's trail includes of global events (sign-ins, failures, lock-outs, user
//! lifecycle) is decided by the audit projection: see `idstream_audit`.

use idstream_audit::{Audit, AuditPage, AuditQuery, Scope};

use crate::{App, AppError, CommandContext};

impl App {
    /// The audit read model's query side.
    pub fn audit(&self) -> Audit {
        Audit::new(self.inner.read_models.tree(idstream_audit::NAME))
    }

    /// One page of the audit trail, if the caller may read that part of it.
    ///
    /// Needs: audit:read in the tenant, or platform administrator for every tenant or the global
    /// events.
    pub async fn audit_events(
        &self,
        ctx: &CommandContext,
        query: AuditQuery,
    ) -> Result<AuditPage, AppError> {
        match &query.filter.scope {
            Scope::Tenant(tenant) => {
                // Authorised first, so that nobody learns from the answer which tenants exist.
                self.authorize_audit_read(ctx, tenant).await?;
            }
            Scope::All | Scope::Global => self.authorize_platform_admin(ctx).await?,
        }
        let audit = self.audit();
        // A page may read thousands of index keys: off the async workers.
        tokio::task::spawn_blocking(move || audit.query(&query))
            .await
            .map_err(|e| AppError::Internal(format!("the audit query did not finish: {e}")))?
            .map_err(|e| AppError::Internal(e.to_string()))
    }
}
