//! Queries over the directory tree.

use std::sync::Arc;

use idstream_domain::{TenantId, UserId};
use serde::de::DeserializeOwned;

use idstream_projection_runtime::{PersonalSeal, SealError};

use crate::keys::{self, normalize_email};
use crate::search::PeopleIndex;
use crate::{IdempotencyRecord, MembershipView, TenantView, UserView, open_user};

/// Why a query failed: only ever storage.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value does not decode; rebuilding the read model repairs it.
    #[error("directory entry {key} is unreadable ({reason}); rebuild the directory read model")]
    Corrupt { key: String, reason: String },
    /// A person's key, needed to open their personal fields, could not be had.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Read access to the directory read model. Cheap to clone.
///
/// Each answer reflects the position the projection had reached when it was read (see
/// `ReadModels::wait_for` for read-your-writes); a query over several entries may straddle a batch.
#[derive(Debug, Clone)]
pub struct Directory {
    tree: sled::Tree,
    people: Arc<PeopleIndex>,
    seal: Arc<dyn PersonalSeal>,
}

impl Directory {
    /// Queries the tree of the `directory` projection (`ReadModels::tree("directory")`) and the
    /// search index its projection keeps ([`DirectoryProjection::new`](crate::DirectoryProjection::new)),
    /// opening personal fields with `seal` (the projection's).
    pub fn new(
        tree: sled::Tree,
        people: Arc<PeopleIndex>,
        seal: Arc<dyn PersonalSeal>,
    ) -> Directory {
        Directory { tree, people, seal }
    }

    /// The search index over users and memberships.
    pub fn people(&self) -> &PeopleIndex {
        &self.people
    }

    pub fn tenant(&self, id: &TenantId) -> Result<Option<TenantView>, DirectoryError> {
        self.get(&keys::tenant(id))
    }

    /// Up to `limit` tenants with ids after `after`, in id order (cursor pagination).
    pub fn tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantView>, DirectoryError> {
        let start = after.map_or_else(|| keys::TENANTS.as_bytes().to_vec(), keys::tenant);
        let mut tenants = Vec::new();
        for entry in self.tree.range(start..) {
            if tenants.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            if !key.starts_with(keys::TENANTS.as_bytes()) {
                break;
            }
            let view: TenantView = decode(&key, &value)?;
            if after.is_some_and(|after| &view.id == after) {
                continue;
            }
            tenants.push(view);
        }
        Ok(tenants)
    }

    /// The log position of the last erasure (0 if nobody was ever erased): anything derived
    /// from the log before it (a point-in-time replay) may hold personal data it shredded.
    pub fn last_erasure(&self) -> Result<u64, DirectoryError> {
        Ok(self.get::<u64>(keys::LAST_ERASURE)?.unwrap_or(0))
    }

    /// The user, personal fields opened.
    pub fn user(&self, id: &UserId) -> Result<Option<UserView>, DirectoryError> {
        match self.user_sealed(id)? {
            Some(view) => Ok(Some(self.open(view)?)),
            None => Ok(None),
        }
    }

    /// The user as stored, personal fields still sealed: what may be kept in memory past an
    /// erasure without keeping anything readable. [`Directory::open`] opens it.
    pub fn user_sealed(&self, id: &UserId) -> Result<Option<UserView>, DirectoryError> {
        self.get::<UserView>(&keys::user(id))
    }

    /// A view read by [`Directory::user_sealed`], personal fields opened.
    pub fn open(&self, view: UserView) -> Result<UserView, DirectoryError> {
        Ok(open_user(self.seal.as_ref(), view)?)
    }

    /// The user with this email address (compared normalised: trimmed, lower-case).
    pub fn user_by_email(&self, email: &str) -> Result<Option<UserView>, DirectoryError> {
        let email = normalize_email(email);
        let key = keys::email(&crate::fold::email_index(self.seal.as_ref(), &email));
        let Some(owner) = self.tree.get(&key)? else {
            return Ok(None);
        };
        let id: UserId = std::str::from_utf8(&owner)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(&key, "not a user id"))?;
        // The index and the view are written in one batch, but a query may read them on either
        // side of one; the view decides.
        Ok(self.user(&id)?.filter(|user| user.email == email))
    }

    pub fn membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<MembershipView>, DirectoryError> {
        self.get(&keys::member(tenant, user))
    }

    /// Up to `limit` members of `tenant` with user ids after `after`, in user id order (cursor
    /// pagination), each with their user.
    pub fn members(
        &self,
        tenant: &TenantId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<(UserView, MembershipView)>, DirectoryError> {
        let prefix = keys::members_of(tenant);
        let start = after.map_or_else(
            || prefix.as_bytes().to_vec(),
            |user| keys::member(tenant, &user),
        );
        let mut members = Vec::new();
        for entry in self.tree.range(start..) {
            if members.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let membership: MembershipView = decode(&key, &value)?;
            if Some(membership.user) == after {
                continue;
            }
            // A role can be assigned to a user whose creation this replica has not applied yet
            // only if the log orders it so; such a member is listed once the user is known.
            if let Some(user) = self.user(&membership.user)? {
                members.push((user, membership));
            }
        }
        Ok(members)
    }

    /// The tenants in which the user holds at least one role, in id order.
    pub fn user_tenants(&self, user: &UserId) -> Result<Vec<TenantId>, DirectoryError> {
        let prefix = keys::tenants_of(user);
        self.tree
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|key| {
                let key = key?;
                std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|tenant| tenant.parse().ok())
                    .ok_or_else(|| corrupt(&key, "not a tenant id"))
            })
            .collect()
    }

    /// What the append made with this idempotency key produced, if the directory has seen it.
    pub fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, DirectoryError> {
        self.get(&keys::idempotency(key))
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, DirectoryError> {
        self.tree
            .get(key)?
            .map(|value| decode(key, &value))
            .transpose()
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, DirectoryError> {
    serde_json::from_slice(value).map_err(|error| corrupt(key, &error.to_string()))
}

fn corrupt(key: &[u8], reason: &str) -> DirectoryError {
    DirectoryError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    }
}
