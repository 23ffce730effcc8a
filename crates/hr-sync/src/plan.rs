//! Deciding what to change: a pure function from the feed and the tenant as the API shows it to
//! a list of actions. Nothing here talks to the service, so every rule is tested in isolation.
//!
//! # Who the sync manages
//!
//! The sync only ever changes people **it manages**: members of the tenant who hold the
//! *marker role* (`hr_managed` by default; a custom role without permissions that the sync
//! defines on its first run). A person gets the marker role when the sync invites them, or when
//! they are already a member and the feed lists them (adoption). So:
//!
//! - a **joiner** is an address in the feed that is neither a member nor has an open invitation
//!   to the tenant: they are created as an invited member with their roles plus the marker role,
//!   and sent an invitation (an address known from another tenant is only sent the invitation);
//! - a **leaver** is a member holding the marker role whose address the feed no longer lists.
//!   A leaver who belongs to no other tenant is deactivated (deactivation is global); one who also
//!   belongs to another tenant is only removed from this one, because the feed says nothing about
//!   the others. (The member listing shows a member's other tenants only to a caller who may read
//!   users there; when it does not, the deactivation is refused, and the leaver is removed from
//!   this tenant instead: see `sync.rs`.) Their open invitations here are revoked. A leaver already deactivated needs
//!   nothing;
//! - **never touched**: members without the marker role who are not in the feed (administrators,
//!   service accounts, contractors added by hand), and the account the sync runs as, whatever
//!   the feed says about it;
//! - a managed member whom someone deactivated but who is still in the feed is left deactivated
//!   and reported: reactivation is a decision for a person.
//!
//! Names are compared after trimming; roles in the feed apply when inviting only (later role
//! changes are administered in idstream).

use std::collections::{BTreeMap, BTreeSet};

use crate::feed::{Employee, normalize_email};

/// The marker role's default name.
pub const DEFAULT_MARKER: &str = "hr_managed";

/// The roles a joiner gets when the feed names none (besides the marker role).
pub const DEFAULT_ROLE: &str = "user";

/// A member of the tenant, as `GET /v1/tenants/{tenant}/users` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// `invited`, `active`, `suspended` or `inactive`.
    pub status: String,
    /// Roles in this tenant.
    pub roles: BTreeSet<String>,
    /// Every tenant the user belongs to (this one included).
    pub tenants: BTreeSet<String>,
}

/// An invitation to the tenant, as `GET /v1/tenants/{tenant}/invitations` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: String,
    pub user: String,
    pub roles: BTreeSet<String>,
    /// `sent`, `accepted`, `revoked` or `expired`.
    pub status: String,
    /// The invitee's address, when the invitee is not a member (looked up for open ones).
    pub email: Option<String>,
}

/// The tenant as the sync found it.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub tenant: String,
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
    /// The user the credential acts for (`None` for the operator token).
    pub caller: Option<String>,
    pub marker_defined: bool,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Define the marker role (custom role without permissions).
    DefineMarker,
    /// A joiner: create them as an invited member with `roles` (marker included) and send them an
    /// invitation; if the address belongs to a user of another tenant, only invite them.
    Invite {
        email: String,
        first_name: String,
        last_name: String,
        roles: BTreeSet<String>,
    },
    /// A managed member still invited who never got an invitation here (an earlier run stopped
    /// between creating and inviting them).
    SendInvitation {
        user: String,
        email: String,
        roles: BTreeSet<String>,
    },
    /// A member listed in the feed who does not hold the marker role yet.
    Adopt { user: String, email: String },
    /// The feed's names differ from the member's.
    Rename {
        user: String,
        email: String,
        first_name: String,
        last_name: String,
    },
    /// An open invitation of a leaver.
    RevokeInvitation {
        invitation: String,
        user: String,
        email: String,
    },
    /// A leaver who belongs to no other tenant.
    Deactivate { user: String, email: String },
    /// A leaver who also belongs to another tenant: removed from this one only.
    Remove { user: String, email: String },
}

impl Action {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::DefineMarker => "define_marker_role",
            Action::Invite { .. } => "invite",
            Action::SendInvitation { .. } => "send_invitation",
            Action::Adopt { .. } => "adopt",
            Action::Rename { .. } => "rename",
            Action::RevokeInvitation { .. } => "revoke_invitation",
            Action::Deactivate { .. } => "deactivate",
            Action::Remove { .. } => "remove",
        }
    }

    /// The address the action is about (empty for the marker role).
    pub fn email(&self) -> &str {
        match self {
            Action::DefineMarker => "",
            Action::Invite { email, .. }
            | Action::SendInvitation { email, .. }
            | Action::Adopt { email, .. }
            | Action::Rename { email, .. }
            | Action::RevokeInvitation { email, .. }
            | Action::Deactivate { email, .. }
            | Action::Remove { email, .. } => email,
        }
    }
}

/// The actions, in the order they must run (the marker role first, departures last), and notes
/// about what was deliberately left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

/// Decides what to change. See the module documentation for the rules.
pub fn plan(feed: &[Employee], current: &Current, marker: &str) -> Plan {
    let mut plan = Plan::default();
    if !current.marker_defined {
        plan.actions.push(Action::DefineMarker);
    }
    let in_feed: BTreeSet<&str> = feed.iter().map(|e| e.email.as_str()).collect();
    let members: BTreeMap<String, &Member> = current
        .members
        .iter()
        .map(|m| (normalize_email(&m.email), m))
        .collect();
    let member_ids: BTreeSet<&str> = current.members.iter().map(|m| m.id.as_str()).collect();
    let ever_invited: BTreeSet<&str> = current
        .invitations
        .iter()
        .map(|i| i.user.as_str())
        .collect();
    // Open invitations of people who are not members (yet), by address.
    let pending: BTreeMap<String, &Invitation> = current
        .invitations
        .iter()
        .filter(|i| i.status == "sent" && !member_ids.contains(i.user.as_str()))
        .filter_map(|i| i.email.as_deref().map(|e| (normalize_email(e), i)))
        .collect();
    let is_caller = |id: &str| current.caller.as_deref() == Some(id);

    let mut departures = Vec::new();
    for employee in feed {
        match members.get(&employee.email) {
            Some(member) if is_caller(&member.id) => plan.notes.push(format!(
                "{}: the account the sync runs as is never changed",
                employee.email
            )),
            Some(member) => {
                let managed = member.roles.contains(marker);
                if !managed {
                    plan.actions.push(Action::Adopt {
                        user: member.id.clone(),
                        email: employee.email.clone(),
                    });
                }
                if member.first_name.trim() != employee.first_name
                    || member.last_name.trim() != employee.last_name
                {
                    plan.actions.push(Action::Rename {
                        user: member.id.clone(),
                        email: employee.email.clone(),
                        first_name: employee.first_name.clone(),
                        last_name: employee.last_name.clone(),
                    });
                }
                if member.status == "inactive" {
                    plan.notes.push(format!(
                        "{}: listed in the feed but deactivated; reactivate them by hand if they returned",
                        employee.email
                    ));
                }
                if managed
                    && member.status == "invited"
                    && !ever_invited.contains(member.id.as_str())
                {
                    plan.actions.push(Action::SendInvitation {
                        user: member.id.clone(),
                        email: employee.email.clone(),
                        roles: joiner_roles(employee, marker),
                    });
                }
            }
            None if pending.contains_key(&employee.email) => {}
            None => plan.actions.push(Action::Invite {
                email: employee.email.clone(),
                first_name: employee.first_name.clone(),
                last_name: employee.last_name.clone(),
                roles: joiner_roles(employee, marker),
            }),
        }
    }
    for member in &current.members {
        let email = normalize_email(&member.email);
        if in_feed.contains(email.as_str())
            || !member.roles.contains(marker)
            || is_caller(&member.id)
        {
            continue;
        }
        for invitation in current
            .invitations
            .iter()
            .filter(|i| i.user == member.id && i.status == "sent")
        {
            departures.push(Action::RevokeInvitation {
                invitation: invitation.id.clone(),
                user: member.id.clone(),
                email: email.clone(),
            });
        }
        if member.status == "inactive" {
            continue;
        }
        let elsewhere = member.tenants.iter().any(|t| *t != current.tenant);
        departures.push(if elsewhere {
            Action::Remove {
                user: member.id.clone(),
                email,
            }
        } else {
            Action::Deactivate {
                user: member.id.clone(),
                email,
            }
        });
    }
    // Invited from another tenant by the sync, and gone from the feed before accepting.
    for (email, invitation) in &pending {
        if !in_feed.contains(email.as_str()) && invitation.roles.contains(marker) {
            departures.push(Action::RevokeInvitation {
                invitation: invitation.id.clone(),
                user: invitation.user.clone(),
                email: email.clone(),
            });
        }
    }
    plan.actions.extend(departures);
    plan
}

fn joiner_roles(employee: &Employee, marker: &str) -> BTreeSet<String> {
    let mut roles = employee
        .roles
        .clone()
        .unwrap_or_else(|| [DEFAULT_ROLE.to_owned()].into());
    roles.insert(marker.to_owned());
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = DEFAULT_MARKER;

    fn employee(email: &str, first: &str, last: &str) -> Employee {
        Employee {
            email: email.into(),
            first_name: first.into(),
            last_name: last.into(),
            roles: None,
        }
    }

    fn member(id: &str, email: &str, roles: &[&str], status: &str) -> Member {
        Member {
            id: id.into(),
            email: email.into(),
            first_name: "First".into(),
            last_name: "Last".into(),
            status: status.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenants: ["acme".to_owned()].into(),
        }
    }

    fn current(members: Vec<Member>) -> Current {
        Current {
            tenant: "acme".into(),
            members,
            invitations: vec![],
            caller: Some("ADMIN".into()),
            marker_defined: true,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_run_defines_the_marker_role_and_invites_every_joiner_with_it() {
        let mut now = current(vec![member(
            "ADMIN",
            "admin@x.io",
            &["owner", "admin"],
            "active",
        )]);
        now.marker_defined = false;
        let mut ada = employee("ada@x.io", "Ada", "L");
        ada.roles = Some(set(&["admin"]));
        let plan = plan(&[ada, employee("bob@x.io", "Bob", "B")], &now, M);
        assert_eq!(
            plan.actions,
            vec![
                Action::DefineMarker,
                Action::Invite {
                    email: "ada@x.io".into(),
                    first_name: "Ada".into(),
                    last_name: "L".into(),
                    roles: set(&["admin", M]),
                },
                Action::Invite {
                    email: "bob@x.io".into(),
                    first_name: "Bob".into(),
                    last_name: "B".into(),
                    roles: set(&["user", M]),
                },
            ]
        );
    }

    #[test]
    fn a_feed_that_matches_the_tenant_changes_nothing() {
        let mut ada = member("A", "ada@x.io", &["user", M], "active");
        ada.first_name = "Ada".into();
        ada.last_name = "L".into();
        let now = Current {
            invitations: vec![Invitation {
                id: "I".into(),
                user: "A".into(),
                roles: set(&["user", M]),
                status: "accepted".into(),
                email: None,
            }],
            ..current(vec![
                member("ADMIN", "admin@x.io", &["owner"], "active"),
                ada,
                member("C", "contractor@x.io", &["user"], "active"),
            ])
        };
        assert_eq!(
            plan(&[employee("ada@x.io", "Ada", "L")], &now, M),
            Plan::default()
        );
    }

    #[test]
    fn leavers_are_only_the_managed_members_missing_from_the_feed() {
        let now = current(vec![
            member("ADMIN", "admin@x.io", &["owner", M], "active"),
            member("C", "contractor@x.io", &["user"], "active"),
            member("B", "bob@x.io", &["user", M], "active"),
            member("D", "dora@x.io", &[M], "inactive"),
        ]);
        let plan = plan(&[], &now, M);
        // Not the caller (even with the marker), not the contractor, not someone already gone.
        assert_eq!(
            plan.actions,
            vec![Action::Deactivate {
                user: "B".into(),
                email: "bob@x.io".into()
            }]
        );
    }

    #[test]
    fn a_leaver_who_belongs_to_another_tenant_is_only_removed_from_this_one() {
        let mut bob = member("B", "bob@x.io", &["user", M], "invited");
        bob.tenants.insert("beta".into());
        let now = Current {
            invitations: vec![Invitation {
                id: "I".into(),
                user: "B".into(),
                roles: set(&["user", M]),
                status: "sent".into(),
                email: None,
            }],
            ..current(vec![bob])
        };
        assert_eq!(
            plan(&[], &now, M).actions,
            vec![
                Action::RevokeInvitation {
                    invitation: "I".into(),
                    user: "B".into(),
                    email: "bob@x.io".into()
                },
                Action::Remove {
                    user: "B".into(),
                    email: "bob@x.io".into()
                }
            ]
        );
    }

    #[test]
    fn members_in_the_feed_are_adopted_renamed_and_never_reactivated() {
        let now = current(vec![
            member("C", "Carol@X.io", &["user"], "active"),
            member("D", "dora@x.io", &[M], "inactive"),
            member("ADMIN", "admin@x.io", &["owner"], "active"),
        ]);
        let feed = [
            employee("carol@x.io", "First", "Last"),
            employee("dora@x.io", "Dora", "Last"),
            employee("admin@x.io", "Someone", "Else"),
        ];
        let plan = plan(&feed, &now, M);
        assert_eq!(
            plan.actions,
            vec![
                Action::Adopt {
                    user: "C".into(),
                    email: "carol@x.io".into()
                },
                Action::Rename {
                    user: "D".into(),
                    email: "dora@x.io".into(),
                    first_name: "Dora".into(),
                    last_name: "Last".into()
                },
            ]
        );
        assert_eq!(plan.notes.len(), 2, "{:?}", plan.notes);
    }

    #[test]
    fn open_invitations_are_neither_repeated_nor_left_open_for_leavers() {
        let open = |id: &str, user: &str, email: &str| Invitation {
            id: id.into(),
            user: user.into(),
            roles: set(&["user", M]),
            status: "sent".into(),
            email: Some(email.into()),
        };
        let now = Current {
            invitations: vec![open("I1", "E", "erin@x.io"), open("I2", "F", "frank@x.io")],
            ..current(vec![])
        };
        let plan = plan(&[employee("erin@x.io", "Erin", "E")], &now, M);
        assert_eq!(
            plan.actions,
            vec![Action::RevokeInvitation {
                invitation: "I2".into(),
                user: "F".into(),
                email: "frank@x.io".into()
            }]
        );
    }

    #[test]
    fn a_managed_invitee_without_an_invitation_gets_one() {
        let now = current(vec![member("E", "erin@x.io", &["user", M], "invited")]);
        let mut erin = employee("erin@x.io", "First", "Last");
        erin.roles = Some(set(&["user"]));
        assert_eq!(
            plan(&[erin], &now, M).actions,
            vec![Action::SendInvitation {
                user: "E".into(),
                email: "erin@x.io".into(),
                roles: set(&["user", M])
            }]
        );
    }
}
