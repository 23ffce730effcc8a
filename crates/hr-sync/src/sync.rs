//! One run: read the tenant at a consistent position, plan, carry the plan out, report.

use serde::Serialize;

use crate::api::{Api, ApiError};
use crate::feed::Employee;
use crate::plan::{self, Action, Current};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub tenant: String,
    /// The marker role of the people the sync manages.
    pub marker: String,
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Accept a feed with nobody in it (which makes every managed member a leaver).
    pub allow_empty: bool,
}

/// One action the service refused (or that could not be sent).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub action: &'static str,
    pub email: String,
    pub status: u16,
    pub code: String,
    pub detail: String,
}

/// What a run did. `changes` counts the changes made (or, in a dry run, planned).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub tenant: String,
    pub dry_run: bool,
    /// The log position the tenant was read at.
    pub read_at: u64,
    pub employees: usize,
    pub members: usize,
    pub changes: u64,
    pub defined_roles: u64,
    pub invited: u64,
    pub invitations_sent: u64,
    pub adopted: u64,
    pub renamed: u64,
    pub invitations_revoked: u64,
    pub deactivated: u64,
    pub removed: u64,
    pub failed: u64,
    /// One line per change made (or planned): `<kind> <email>`.
    pub actions: Vec<String>,
    pub failures: Vec<Failure>,
    /// What was deliberately left alone, and why.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "the feed lists nobody, which would make every managed member a leaver; pass --allow-empty if that is meant"
    )]
    EmptyFeed,
    #[error("cannot read the tenant: {0}")]
    Read(#[from] ApiError),
}

/// Reads the tenant, plans and (unless a dry run) applies the plan.
pub async fn run(api: &mut Api, feed: &[Employee], options: &Options) -> Result<Report, SyncError> {
    if feed.is_empty() && !options.allow_empty {
        return Err(SyncError::EmptyFeed);
    }
    let tenant = options.tenant.as_str();
    // Everything the run reads reflects at least the log as it is now.
    let read_at = api.log_position().await?;
    api.read_at(read_at);
    let caller = api.caller().await?;
    let members = api.members(tenant).await?;
    let invitations = api.invitations(tenant, &members).await?;
    let marker_defined = api.role_exists(tenant, &options.marker).await?;
    let current = Current {
        tenant: tenant.to_owned(),
        members,
        invitations,
        caller,
        marker_defined,
    };
    let plan = plan::plan(feed, &current, &options.marker);
    let mut report = Report {
        tenant: tenant.to_owned(),
        dry_run: options.dry_run,
        read_at,
        employees: feed.len(),
        members: current.members.len(),
        notes: plan.notes,
        ..Report::default()
    };
    for action in &plan.actions {
        if options.dry_run {
            report.count(action);
            continue;
        }
        match apply(api, tenant, &options.marker, action).await {
            Ok(Applied::Done) => report.count(action),
            Ok(Applied::Removed { user, email }) => report.count(&Action::Remove { user, email }),
            Ok(Applied::NotNeeded) => {}
            Err(error) => {
                report.failed += 1;
                report.failures.push(Failure {
                    action: action.kind(),
                    email: action.email().to_owned(),
                    status: error.status,
                    code: error.code,
                    detail: error.detail,
                });
                // Without the marker role nothing else can be done safely.
                if *action == Action::DefineMarker {
                    break;
                }
            }
        }
    }
    Ok(report)
}

impl Report {
    fn count(&mut self, action: &Action) {
        let counter = match action {
            Action::DefineMarker => &mut self.defined_roles,
            Action::Invite { .. } => &mut self.invited,
            Action::SendInvitation { .. } => &mut self.invitations_sent,
            Action::Adopt { .. } => &mut self.adopted,
            Action::Rename { .. } => &mut self.renamed,
            Action::RevokeInvitation { .. } => &mut self.invitations_revoked,
            Action::Deactivate { .. } => &mut self.deactivated,
            Action::Remove { .. } => &mut self.removed,
        };
        *counter += 1;
        self.changes += 1;
        self.actions.push(
            format!("{} {}", action.kind(), action.email())
                .trim_end()
                .to_owned(),
        );
    }
}

/// What carrying out an action did.
enum Applied {
    Done,
    /// The service showed it was not needed after all (an invitation already open).
    NotNeeded,
    /// A leaver whom the caller may not deactivate (they belong to another tenant, which the
    /// service does not show to this tenant's administrators) was removed from this tenant
    /// instead.
    Removed {
        user: String,
        email: String,
    },
}

impl From<bool> for Applied {
    fn from(done: bool) -> Applied {
        if done {
            Applied::Done
        } else {
            Applied::NotNeeded
        }
    }
}

/// Carries out one action.
async fn apply(
    api: &Api,
    tenant: &str,
    marker: &str,
    action: &Action,
) -> Result<Applied, ApiError> {
    match action {
        Action::DefineMarker => {
            api.define_role(
                tenant,
                marker,
                "Managed by idstream-hr-sync: people the HR feed lists. Grants nothing.",
            )
            .await?;
            Ok(Applied::Done)
        }
        Action::Invite {
            email,
            first_name,
            last_name,
            roles,
        } => {
            let created = api
                .create_invited_member(tenant, email, first_name, last_name, roles)
                .await?;
            let sent = api
                .invite(tenant, email, first_name, last_name, roles)
                .await?;
            Ok((created.is_some() || sent).into())
        }
        Action::SendInvitation { email, roles, .. } => {
            Ok(api.invite(tenant, email, "", "", roles).await?.into())
        }
        Action::Adopt { user, .. } => {
            api.assign_role(tenant, user, marker).await?;
            Ok(Applied::Done)
        }
        Action::Rename {
            user,
            first_name,
            last_name,
            ..
        } => {
            api.rename(user, first_name, last_name).await?;
            Ok(Applied::Done)
        }
        Action::RevokeInvitation { invitation, .. } => {
            api.revoke_invitation(tenant, invitation).await?;
            Ok(Applied::Done)
        }
        Action::Deactivate { user, email } => match api.deactivate(user).await {
            Ok(()) => Ok(Applied::Done),
            // Deactivation reaches every tenant of the person, so it needs users:update in all
            // of them: a refusal means they belong to another tenant too, which this tenant's
            // administrators are not shown. They leave this tenant only.
            Err(error) if error.status == 403 && error.code == "forbidden" => {
                api.remove_member(tenant, user).await?;
                Ok(Applied::Removed {
                    user: user.clone(),
                    email: email.clone(),
                })
            }
            Err(error) => Err(error),
        },
        Action::Remove { user, .. } => {
            api.remove_member(tenant, user).await?;
            Ok(Applied::Done)
        }
    }
}
