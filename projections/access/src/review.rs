//! Access review (F-AU-6): who holds what in one tenant, each holding with the event that
//! established it. Read from one access tree, so the same code reviews the live read model and a
//! point-in-time replay.

use std::collections::BTreeMap;

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
    fn add_standing(
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
    pub fn access_review(
        &self,
        tenant: &TenantId,
        now: OffsetDateTime,
    ) -> Result<AccessReview, AccessError> {
        let mut members: BTreeMap<UserId, ReviewedMember> = BTreeMap::new();
        let member_prefix = keys::member_prefix(tenant);
        for entry in self.tree().scan_prefix(&member_prefix) {
            let (key, value) = entry?;
            let Some(user) = last_part(&key).and_then(|u| u.parse::<UserId>().ok()) else {
                continue;
            };
            let record: MemberRecord = self.decode_value(&key, &value)?;
            let mut reviewed = self.blank(user)?;
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
            members.insert(user, reviewed);
        }

        let mut records: BTreeMap<(UserId, String, String), RecordHolding> = BTreeMap::new();
        for entry in self.tree().scan_prefix(keys::standings_prefix(tenant)) {
            let (key, value) = entry?;
            let parts: Vec<&str> = std::str::from_utf8(&key).unwrap_or("").split('/').collect();
            let [_, _, entity, record, user] = parts[..] else {
                continue;
            };
            let (Ok(user), Some(standing)) = (user.parse::<UserId>(), decode_standing(&value))
            else {
                continue;
            };
            let holding = records
                .entry((user, entity.to_owned(), record.to_owned()))
                .or_insert_with(|| empty_holding(entity, record));
            self.add_standing(holding, &key, &standing, now)?;
        }
        for entry in self.tree().scan_prefix(keys::owners_prefix(tenant)) {
            let (key, value) = entry?;
            let parts: Vec<&str> = std::str::from_utf8(&key).unwrap_or("").split('/').collect();
            let [_, _, entity, record] = parts[..] else {
                continue;
            };
            let Ok(user) = std::str::from_utf8(&value).unwrap_or("").parse::<UserId>() else {
                continue;
            };
            let source = self.source(&keys::provenance(&key, ""))?;
            records
                .entry((user, entity.to_owned(), record.to_owned()))
                .or_insert_with(|| empty_holding(entity, record))
                .owner = Some(source);
        }
        for ((user, _, _), holding) in records {
            if holding.grant.is_none() && holding.local_roles.is_empty() && holding.owner.is_none()
            {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = members.entry(user) {
                slot.insert(self.blank(user)?);
            }
            if let Some(member) = members.get_mut(&user) {
                member.records.push(holding);
            }
        }
        members.retain(|_, m| {
            !(m.roles.is_empty() && m.custom_permissions.is_empty() && m.records.is_empty())
        });
        Ok(AccessReview {
            tenant: tenant.clone(),
            members: members.into_values().collect(),
        })
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

fn last_part(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok()?.rsplit('/').next()
}
