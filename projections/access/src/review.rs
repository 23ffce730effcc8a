//! Access review (F-AU-6): who holds what in one tenant, each holding with the event that
//! established it. Read from one access tree, so the same code reviews the live read model and a
//! point-in-time replay.

use idstream_domain::access::{
    AccountStatus, EntityName, Permission, RecordAccess, RecordId, live,
};
use idstream_domain::{RoleName, TenantId, UserId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::fold::decode_standing;
use crate::query::AccessError;
use crate::{Access, AccountRecord, MemberRecord, Source, keys};

/// Everything one member holds in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewedMember {
    pub user: UserId,
    /// The account's status (absent if the account is unknown to the read model).
    pub status: Option<AccountStatus>,
    pub roles: Vec<Holding>,
    pub custom_permissions: Vec<Holding>,
    /// Record grants and local roles, per record.
    pub records: Vec<RecordHolding>,
}

/// One role or permission held, and the event that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    pub name: String,
    /// For roles: whether the role bypasses row- and field-level security.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_access: Option<bool>,
    pub source: Option<Source>,
    /// When temporary access ends (absent: held until taken away).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

/// What a member holds on one record: a direct grant, local roles, ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordHolding {
    pub entity: String,
    pub record: String,
    /// `read_only` or `read_write`, with the event that granted it.
    pub grant: Option<(RecordAccess, Option<Source>)>,
    /// When a temporary grant ends.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub grant_expires_at: Option<OffsetDateTime>,
    pub local_roles: Vec<Holding>,
    /// Set when the member owns (created) the record.
    pub owner: Option<Option<Source>>,
}

/// Where a page of the access review starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewFrom {
    /// The first people, in user-id order.
    Start,
    /// The people after this one.
    After(UserId),
    /// The people before this one (the page still lists them in user-id order).
    Before(UserId),
}

/// A page of the access review, and whether people come before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewPage {
    pub review: AccessReview,
    /// Whether there may be people before the page (a page after someone says so without
    /// looking).
    pub earlier: bool,
    /// Whether there are people after the page (before someone: whether anyone, holding
    /// something or not, comes after it).
    pub later: bool,
}

/// The access review of one tenant, members in user-id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReview {
    pub tenant: TenantId,
    pub members: Vec<ReviewedMember>,
}

/// How much one member holds on the records of one tenant: for a summary of their access, with
/// the access review as its detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemberHoldings {
    /// Records on which the member holds a direct grant.
    pub record_grants: u64,
    /// Local roles the member holds, over all records.
    pub local_roles: u64,
    /// Records the member owns.
    pub owned_records: u64,
    /// The same, per entity (entities where the member holds nothing are left out).
    pub entities: Vec<EntityHoldings>,
}

/// [`MemberHoldings`] on one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityHoldings {
    pub entity: EntityName,
    pub record_grants: u64,
    pub local_roles: u64,
    pub owned_records: u64,
}

/// Who holds what on one record: its owner, and each person's grant and local roles, each with
/// the event that established it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordHolders {
    /// The owner (the record's creator, or whoever it was handed to), with its event.
    pub owner: Option<(UserId, Option<Source>)>,
    /// People with a live grant or local role on the record, in user-id order (`entity` and
    /// `record` of each holding repeat the record's).
    pub holders: Vec<(UserId, RecordHolding)>,
}

impl Access {
    /// The owner, grants and local roles of one record at `now` (temporary ones that ended
    /// before `now` are left out): one prefix scan of the record's standings.
    pub fn record_holders(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        record: &RecordId,
        now: OffsetDateTime,
    ) -> Result<RecordHolders, AccessError> {
        let mut answer = RecordHolders::default();
        let owner_key = keys::owner(tenant, entity, record);
        if let Some(owner) = self.tree().get(&owner_key)?
            && let Ok(user) = std::str::from_utf8(&owner).unwrap_or("").parse::<UserId>()
        {
            answer.owner = Some((user, self.source(&keys::provenance(&owner_key, ""))?));
        }
        let mut prefix = keys::standing(tenant, entity, record, &UserId::new(ulid::Ulid::nil()));
        prefix.truncate(prefix.len() - ulid::ULID_LEN);
        for entry in self.tree().scan_prefix(&prefix) {
            let (key, value) = entry?;
            let (Some(user), Some(standing)) = (
                std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|user| user.parse::<UserId>().ok()),
                decode_standing(&value),
            ) else {
                continue;
            };
            let mut holding = empty_holding(entity.as_str(), record.as_str());
            self.add_standing(&mut holding, &key, &standing, now)?;
            if holding.grant.is_some() || !holding.local_roles.is_empty() {
                answer.holders.push((user, holding));
            }
        }
        Ok(answer)
    }

    /// Puts what the standing stored at `key` holds at `now` into `holding`: its grant and its
    /// local roles, each with the event that established it and its end.
    pub(crate) fn add_standing(
        &self,
        holding: &mut RecordHolding,
        key: &[u8],
        standing: &idstream_domain::access::RecordStanding,
        now: OffsetDateTime,
    ) -> Result<(), AccessError> {
        if let Some(access) = standing.grant_at(now) {
            holding.grant = Some((access, self.source(&keys::provenance(key, "grant"))?));
            holding.grant_expires_at = standing.grant_expires;
        }
        for role in standing.local_roles_at(now) {
            let mut local = self.local_role(key, role)?;
            local.expires_at = standing.local_role_expiry.get(role).copied();
            holding.local_roles.push(local);
        }
        Ok(())
    }

    /// How many record grants, local roles and owned records `user` holds in `tenant` at `now`,
    /// read from the per-user record index (no scan of the tenant's other members).
    pub fn member_holdings(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<MemberHoldings, AccessError> {
        let mut holdings = MemberHoldings::default();
        for entity in self.entities(tenant)? {
            let mut counts = EntityHoldings {
                entity: entity.name.clone(),
                record_grants: 0,
                local_roles: 0,
                owned_records: 0,
            };
            let prefix = keys::index_of(tenant, &entity.name, user);
            for key in self.tree().scan_prefix(&prefix).keys() {
                let key = key?;
                let Some(record) = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|r| r.parse::<RecordId>().ok())
                else {
                    continue;
                };
                let standing = keys::standing_key(tenant, &entity.name, &record, user);
                if let Some(standing) = self
                    .tree()
                    .get(&*standing)?
                    .and_then(|value| decode_standing(&value))
                {
                    counts.record_grants += u64::from(standing.grant_at(now).is_some());
                    counts.local_roles += standing.local_roles_at(now).count() as u64;
                }
                let owner = self
                    .tree()
                    .get(keys::owner(tenant, &entity.name, &record))?;
                if owner.is_some_and(|o| o.as_ref() == user.to_string().as_bytes()) {
                    counts.owned_records += 1;
                }
            }
            if counts.record_grants + counts.local_roles + counts.owned_records > 0 {
                holdings.record_grants += counts.record_grants;
                holdings.local_roles += counts.local_roles;
                holdings.owned_records += counts.owned_records;
                holdings.entities.push(counts);
            }
        }
        Ok(holdings)
    }

    /// Who holds which roles, custom permissions, record grants, local roles and record
    /// ownership in `tenant` at `now` (temporary access that ended before `now` is left out,
    /// whether or not its lapse was recorded). Members without any holding are left out.
    ///
    /// The whole tenant at once: for a large one, read it [`access_review_page`] by page.
    ///
    /// [`access_review_page`]: Access::access_review_page
    pub fn access_review(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<AccessReview, AccessError> {
        let mut members = Vec::new();
        let mut from = ReviewFrom::Start;
        loop {
            let page = self.access_review_page(tenant, now, &from, 1_000)?;
            members.extend(page.review.members);
            match (page.later, members.last()) {
                (true, Some(last)) => from = ReviewFrom::After(last.user),
                _ => break,
            }
        }
        Ok(AccessReview {
            tenant: tenant.clone(),
            members,
        })
    }

    /// One page of the [`access_review`](Access::access_review): up to `limit` people with a
    /// holding, in user-id order, after or before a person (who need not hold anything any
    /// more). Reads only the people it shows (and the ones it passes over because they hold
    /// nothing): their membership and, entity by entity, the records the per-user record index
    /// lists for them.
    pub fn access_review_page(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
        from: &ReviewFrom,
        limit: usize,
    ) -> Result<ReviewPage, AccessError> {
        let limit = limit.max(1);
        let mut sources = vec![keys::member_prefix(tenant)];
        sources.extend(self.indexed_entities(tenant)?);
        let (cursor, descending) = match from {
            ReviewFrom::Start => (None, false),
            ReviewFrom::After(user) => (Some(*user), false),
            ReviewFrom::Before(user) => (Some(*user), true),
        };
        let mut heads: Vec<Option<UserId>> = sources
            .iter()
            .map(|prefix| adjacent_user(self.tree(), prefix, cursor.as_ref(), descending))
            .collect::<Result<_, _>>()?;
        let mut members = Vec::new();
        let mut more = false;
        loop {
            let next = if descending {
                heads.iter().flatten().max()
            } else {
                heads.iter().flatten().min()
            };
            let Some(user) = next.copied() else { break };
            if members.len() == limit {
                more = true;
                break;
            }
            for (head, prefix) in heads.iter_mut().zip(&sources) {
                if *head == Some(user) {
                    *head = adjacent_user(self.tree(), prefix, Some(&user), descending)?;
                }
            }
            if let Some(member) = self.review_member(tenant, &user, now, &sources[1..])? {
                members.push(member);
            }
        }
        let (earlier, later) = if descending {
            members.reverse();
            // Someone after the page: anyone at or after the person it was asked before.
            let mut later = false;
            if let Some(last) = members.last() {
                for prefix in &sources {
                    if adjacent_user(self.tree(), prefix, Some(&last.user), false)?.is_some() {
                        later = true;
                        break;
                    }
                }
            }
            (more, later)
        } else {
            (matches!(from, ReviewFrom::After(_)), more)
        };
        Ok(ReviewPage {
            review: AccessReview {
                tenant: tenant.clone(),
                members,
            },
            earlier,
            later,
        })
    }

    /// What one person holds in `tenant` at `now` (as in the [`access_review`]); `None` if
    /// they hold nothing there.
    ///
    /// [`access_review`]: Access::access_review
    pub fn member_review(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Result<Option<ReviewedMember>, AccessError> {
        self.review_member(tenant, user, now, &self.indexed_entities(tenant)?)
    }

    /// [`member_review`](Access::member_review) with the tenant's [`indexed_entities`].
    ///
    /// [`indexed_entities`]: Access::indexed_entities
    fn review_member(
        &self,
        tenant: &TenantId,
        user: &UserId,
        now: OffsetDateTime,
        entities: &[Vec<u8>],
    ) -> Result<Option<ReviewedMember>, AccessError> {
        let mut reviewed = self.blank(*user)?;
        let key = keys::member(tenant, user);
        if let Some(value) = self.tree().get(&key)? {
            let record: MemberRecord = self.decode_value(&key, &value)?;
            for role in &record.roles {
                let end = record.role_expiry.get(role).map(|t| t.0);
                if !live(end.as_ref(), now) {
                    continue;
                }
                let global = self
                    .role_record(tenant, role)?
                    .map(|definition| definition.global_access);
                reviewed.roles.push(Holding {
                    name: role.to_string(),
                    global_access: global,
                    source: self.source(&keys::provenance(&key, &keys::held_role(role)))?,
                    expires_at: end,
                });
            }
            for permission in &record.custom {
                let end = record.custom_expiry.get(permission).map(|t| t.0);
                if live(end.as_ref(), now) {
                    let mut holding = self.permission(&key, permission)?;
                    holding.expires_at = end;
                    reviewed.custom_permissions.push(holding);
                }
            }
        }
        let name = user.to_string();
        for prefix in entities {
            let entity = std::str::from_utf8(&prefix[..prefix.len() - 1])
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("");
            let Ok(entity_name) = entity.parse::<EntityName>() else {
                continue;
            };
            let records = keys::index_of(tenant, &entity_name, user);
            for key in self.tree().scan_prefix(&records).keys() {
                let key = key?;
                let Some(record) = std::str::from_utf8(&key[records.len()..])
                    .ok()
                    .and_then(|r| r.parse::<RecordId>().ok())
                else {
                    continue;
                };
                let mut holding = empty_holding(entity, record.as_str());
                let standing_key = keys::standing(tenant, &entity_name, &record, user);
                if let Some(standing) = self
                    .tree()
                    .get(&standing_key)?
                    .and_then(|value| decode_standing(&value))
                {
                    self.add_standing(&mut holding, &standing_key, &standing, now)?;
                }
                let owner_key = keys::owner(tenant, &entity_name, &record);
                if self
                    .tree()
                    .get(&owner_key)?
                    .is_some_and(|owner| owner.as_ref() == name.as_bytes())
                {
                    holding.owner = Some(self.source(&keys::provenance(&owner_key, ""))?);
                }
                if holding.grant.is_some()
                    || !holding.local_roles.is_empty()
                    || holding.owner.is_some()
                {
                    reviewed.records.push(holding);
                }
            }
        }
        let holds = !(reviewed.roles.is_empty()
            && reviewed.custom_permissions.is_empty()
            && reviewed.records.is_empty());
        Ok(holds.then_some(reviewed))
    }

    /// The prefixes `x/<tenant>/<entity>/` of the per-user record index, one per entity that
    /// has any entry, in order: found by skipping from one entity to the next (one seek each),
    /// so records of an entity no longer registered are still reviewed.
    fn indexed_entities(&self, tenant: &TenantId) -> Result<Vec<Vec<u8>>, AccessError> {
        let all = keys::indexed_prefix(tenant);
        let mut entities = Vec::new();
        let mut start = all.clone();
        while let Some(entry) = self.tree().range(start.clone()..).next() {
            let (key, _) = entry?;
            if !key.starts_with(&all) {
                break;
            }
            let Some(slash) = key[all.len()..].iter().position(|b| *b == b'/') else {
                break;
            };
            let prefix = key[..all.len() + slash + 1].to_vec();
            // The next entity sorts after every key of this one (`0` follows `/`).
            start = prefix.clone();
            if let Some(last) = start.last_mut() {
                *last = b'0';
            }
            entities.push(prefix);
        }
        Ok(entities)
    }

    fn blank(&self, user: UserId) -> Result<ReviewedMember, AccessError> {
        let status = self
            .account_record(&user)?
            .map(|account: AccountRecord| account.status);
        Ok(ReviewedMember {
            user,
            status,
            roles: Vec::new(),
            custom_permissions: Vec::new(),
            records: Vec::new(),
        })
    }

    fn permission(&self, member: &[u8], permission: &Permission) -> Result<Holding, AccessError> {
        Ok(Holding {
            name: permission.to_string(),
            global_access: None,
            source: self.source(&keys::provenance(
                member,
                &keys::held_permission(permission),
            ))?,
            expires_at: None,
        })
    }

    fn local_role(&self, standing: &[u8], role: &RoleName) -> Result<Holding, AccessError> {
        Ok(Holding {
            name: role.to_string(),
            global_access: None,
            source: self.source(&keys::provenance(standing, &keys::local_role(role)))?,
            expires_at: None,
        })
    }
}

fn empty_holding(entity: &str, record: &str) -> RecordHolding {
    RecordHolding {
        entity: entity.to_owned(),
        record: record.to_owned(),
        grant: None,
        grant_expires_at: None,
        local_roles: Vec::new(),
        owner: None,
    }
}

/// The user nearest `from` (after it, or before it when `descending`; the first or last without
/// one) among the keys under `prefix` whose next part is a user id: a membership
/// (`m/<tenant>/<user>`) or an index entry (`x/<tenant>/<entity>/<user>/<record>`). One seek.
fn adjacent_user(
    tree: &sled::Tree,
    prefix: &[u8],
    from: Option<&UserId>,
    descending: bool,
) -> Result<Option<UserId>, AccessError> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        // Past every key under the prefix, which ends with `/`.
        *last += 1;
    }
    let at = |user: &UserId| {
        let mut key = prefix.to_vec();
        key.extend_from_slice(user.to_string().as_bytes());
        key
    };
    let entry = match (from, descending) {
        (None, false) => tree.range(prefix.to_vec()..end).next(),
        (None, true) => tree.range(prefix.to_vec()..end).next_back(),
        (Some(user), false) => {
            // After every key of `user` (a user id is followed by nothing or by `/`).
            let mut start = at(user);
            start.push(0xff);
            tree.range(start..end).next()
        }
        (Some(user), true) => tree.range(prefix.to_vec()..at(user)).next_back(),
    };
    let Some(entry) = entry else {
        return Ok(None);
    };
    let (key, _) = entry?;
    Ok(key
        .get(prefix.len()..prefix.len() + ulid::ULID_LEN)
        .and_then(|user| std::str::from_utf8(user).ok())
        .and_then(|user| user.parse::<UserId>().ok()))
}
