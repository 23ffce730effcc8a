//! Queries over the identity tree.

use idstream_domain::secret::BlindIndex;
use idstream_domain::{TenantId, UserId};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ulid::Ulid;

use std::sync::Arc;

use idstream_projection_runtime::personal::{open_option, open_text};
use idstream_projection_runtime::{PersonalSeal, SealError};

use crate::keys;
use crate::{
    ApiKeyView, ClientView, ConsentView, CredentialsView, InvitationStatus, InvitationView,
    LinkView, ProviderView, SessionStanding, SessionView,
};

/// Why a query failed: only ever storage.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value does not decode; rebuilding the read model repairs it.
    #[error("identity entry {key} is unreadable ({reason}); rebuild the identity read model")]
    Corrupt { key: String, reason: String },
    /// A person's key, needed to open a session's source, could not be had.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Read access to the identity read model. Cheap to clone.
///
/// Each answer reflects the position the projection had reached when it was read (see
/// `ReadModels::wait_for` for read-your-writes); a query over several entries may straddle a batch.
/// The views hold sealed secrets and blind indexes: never return them to a client as they are.
#[derive(Debug, Clone)]
pub struct Identity {
    tree: sled::Tree,
    seal: Arc<dyn PersonalSeal>,
}

impl Identity {
    /// Queries the tree of the `identity` projection (`ReadModels::tree("identity")`), opening
    /// the sessions' sources (address, user agent) with `seal` (the projection's).
    pub fn new(tree: sled::Tree, seal: Arc<dyn PersonalSeal>) -> Identity {
        Identity { tree, seal }
    }

    /// The user's credentials, their passkeys' names opened; `None` if the credentials aggregate
    /// has no event yet.
    pub fn credentials(&self, user: &UserId) -> Result<Option<CredentialsView>, IdentityError> {
        let Some(mut view) = self.get::<CredentialsView>(&keys::credentials(user))? else {
            return Ok(None);
        };
        let owner = user.to_string();
        for passkey in &mut view.passkeys {
            passkey.name = open_text(self.seal.as_ref(), &owner, "name", &passkey.name)?;
        }
        Ok(Some(view))
    }

    /// The session, its source (address, user agent) opened.
    pub fn session(&self, id: &Ulid) -> Result<Option<SessionView>, IdentityError> {
        let Some(mut view) = self.get::<SessionView>(&keys::session(id))? else {
            return Ok(None);
        };
        let user = view.user.to_string();
        let seal = self.seal.as_ref();
        view.ip = open_option(seal, &user, "ip", view.ip.as_deref())?;
        view.user_agent = open_option(seal, &user, "user_agent", view.user_agent.as_deref())?;
        Ok(Some(view))
    }

    /// What the check of an access token needs of the session (decoding only that).
    pub fn session_standing(&self, id: &Ulid) -> Result<Option<SessionStanding>, IdentityError> {
        self.get(&keys::session(id))
    }

    /// Whether the user has a second factor ([`CredentialsView::has_second_factor`]: TOTP or a
    /// passkey), decoding only that; `None` if the credentials aggregate has no event yet.
    pub fn second_factor(&self, user: &UserId) -> Result<Option<bool>, IdentityError> {
        #[derive(serde::Deserialize)]
        struct Factors {
            #[serde(deserialize_with = "crate::is_some")]
            totp: bool,
            #[serde(default)]
            passkeys: Vec<serde::de::IgnoredAny>,
        }
        Ok(self
            .get::<Factors>(&keys::credentials(user))?
            .map(|view| view.totp || !view.passkeys.is_empty()))
    }

    /// Every session of the user, newest first (by session id, a ULID minted at sign-in). Revoked
    /// and ended ones are included; callers filter with [`SessionView::is_live_at`].
    pub fn sessions_of(&self, user: &UserId) -> Result<Vec<SessionView>, IdentityError> {
        let prefix = keys::sessions_of(user);
        let mut sessions = Vec::new();
        for entry in self.tree.scan_prefix(prefix.as_bytes()) {
            let (key, value) = entry?;
            let id = parse_ulid(&key, &value)?;
            // The entry and the view are written in one batch, so the view is there.
            if let Some(session) = self.session(&id)? {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    /// The session a refresh token belongs to, by the token's blind index: its live token or one
    /// it rotated away (rotated indexes stay mapped so that reuse can be detected; compare with
    /// [`SessionView::refresh`]).
    pub fn session_by_refresh(&self, index: &BlindIndex) -> Result<Option<Ulid>, IdentityError> {
        let key = keys::refresh(index);
        self.tree
            .get(&key)?
            .map(|value| parse_ulid(&key, &value))
            .transpose()
    }

    /// When the user last signed in (the latest `SessionStarted`'s time), if ever.
    pub fn last_sign_in(&self, user: &UserId) -> Result<Option<OffsetDateTime>, IdentityError> {
        let key = keys::last_sign_in(user);
        self.tree
            .get(&key)?
            .map(|value| {
                std::str::from_utf8(&value)
                    .ok()
                    .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
                    .ok_or_else(|| corrupt(&key, "not an RFC 3339 time"))
            })
            .transpose()
    }

    pub fn invitation(
        &self,
        tenant: &TenantId,
        id: &Ulid,
    ) -> Result<Option<InvitationView>, IdentityError> {
        self.get(&keys::invitation(tenant, id))
    }

    /// The invitation a token belongs to, by the token's blind index: its live token or one a
    /// resend superseded (compare with [`InvitationView::token`]).
    pub fn invitation_by_token(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<(TenantId, Ulid)>, IdentityError> {
        let key = keys::invitation_token(index);
        let Some(value) = self.tree.get(&key)? else {
            return Ok(None);
        };
        std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.split_once('/'))
            .and_then(|(tenant, id)| Some((tenant.parse().ok()?, Ulid::from_string(id).ok()?)))
            .map(Some)
            .ok_or_else(|| corrupt(&key, "not <tenant>/<invitation id>"))
    }

    /// Up to `limit` of a tenant's invitations with ids after `after`, oldest first (cursor
    /// pagination; ids are ULIDs minted when the invitation is sent).
    pub fn invitations(
        &self,
        tenant: &TenantId,
        after: Option<Ulid>,
        limit: usize,
    ) -> Result<Vec<InvitationView>, IdentityError> {
        let prefix = keys::invitations_of(tenant);
        let start = after.map_or_else(
            || prefix.as_bytes().to_vec(),
            |id| keys::invitation(tenant, &id),
        );
        let mut invitations = Vec::new();
        for entry in self.tree.range(start..) {
            if invitations.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let view: InvitationView = decode(&key, &value)?;
            if Some(view.id) == after {
                continue;
            }
            invitations.push(view);
        }
        Ok(invitations)
    }

    /// The open (recorded status `sent`) invitation of a user in a tenant, the newest if there
    /// are several. It may have expired: see [`InvitationView::status_at`].
    pub fn open_invitation_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<InvitationView>, IdentityError> {
        Ok(self.open_invitations_of(tenant, user)?.pop())
    }

    /// Every open (recorded status `sent`) invitation of a user in a tenant, in id order. There
    /// is one at most, except for a moment when two were sent at once (see `App::invite`).
    pub fn open_invitations_of(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<InvitationView>, IdentityError> {
        let prefix = keys::open_invitations_of(tenant, user);
        let mut open = Vec::new();
        for key in self.tree.scan_prefix(prefix.as_bytes()).keys() {
            let key = key?;
            let id = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|id| Ulid::from_string(id).ok())
                .ok_or_else(|| corrupt(&key, "not an invitation id"))?;
            // The index and the view are written in one batch, but a query may read them on
            // either side of one; the view decides.
            if let Some(view) = self
                .invitation(tenant, &id)?
                .filter(|view| view.status == InvitationStatus::Sent)
            {
                open.push(view);
            }
        }
        Ok(open)
    }

    pub fn api_key(&self, id: &Ulid) -> Result<Option<ApiKeyView>, IdentityError> {
        self.get(&keys::api_key(id))
    }

    /// A tenant's API keys, or only those of `owner`, oldest first (revoked and expired ones
    /// included; see [`ApiKeyView::is_usable_at`]).
    pub fn api_keys(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
    ) -> Result<Vec<ApiKeyView>, IdentityError> {
        let prefix = match owner {
            Some(owner) => keys::api_keys_of_owner(tenant, owner),
            None => keys::api_keys_of(tenant),
        };
        let mut api_keys = Vec::new();
        for key in self.tree.scan_prefix(prefix.as_bytes()).keys() {
            let key = key?;
            let id = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|id| Ulid::from_string(id).ok())
                .ok_or_else(|| corrupt(&key, "not an API key id"))?;
            if let Some(view) = self.api_key(&id)? {
                api_keys.push(view);
            }
        }
        Ok(api_keys)
    }

    /// A client of the tenant (a removed one too; see [`ClientView::removed_at`]).
    pub fn client(
        &self,
        tenant: &TenantId,
        id: &Ulid,
    ) -> Result<Option<ClientView>, IdentityError> {
        self.get(&keys::client(tenant, id))
    }

    /// The tenant's clients, removed ones included, in id order.
    pub fn clients(&self, tenant: &TenantId) -> Result<Vec<ClientView>, IdentityError> {
        self.tree
            .scan_prefix(keys::clients_of(tenant).as_bytes())
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// What `user` consented to `client` receiving, if they did.
    pub fn consent(
        &self,
        tenant: &TenantId,
        user: &UserId,
        client: &str,
    ) -> Result<Option<ConsentView>, IdentityError> {
        self.get(&keys::consent(tenant, user, client))
    }

    /// Everything `user` consented to in `tenant`, by client id.
    pub fn consents(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<ConsentView>, IdentityError> {
        self.tree
            .scan_prefix(keys::consents_of(tenant, user).as_bytes())
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// One upstream identity provider of the tenant.
    pub fn provider(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ProviderView>, IdentityError> {
        self.get(&keys::provider(tenant, id))
    }

    /// The tenant's upstream identity providers, by name.
    pub fn providers(&self, tenant: &TenantId) -> Result<Vec<ProviderView>, IdentityError> {
        self.tree
            .scan_prefix(keys::providers_of(tenant).as_bytes())
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The upstream identities linked to `user`, in every tenant.
    pub fn links(&self, user: &UserId) -> Result<Vec<LinkView>, IdentityError> {
        self.tree
            .scan_prefix(keys::links_of(user).as_bytes())
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// Every consent given in `tenant`, by person and client.
    pub fn tenant_consents(&self, tenant: &TenantId) -> Result<Vec<ConsentView>, IdentityError> {
        self.tree
            .scan_prefix(format!("consent/{tenant}/").as_bytes())
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The application sessions issued through `browser_session`.
    pub fn sessions_issued_through(
        &self,
        browser_session: &Ulid,
    ) -> Result<Vec<SessionView>, IdentityError> {
        let mut sessions = Vec::new();
        for entry in self
            .tree
            .scan_prefix(keys::children_of(browser_session).as_bytes())
        {
            let (key, value) = entry?;
            if let Some(view) = self.session(&parse_ulid(&key, &value)?)? {
                sessions.push(view);
            }
        }
        Ok(sessions)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, IdentityError> {
        self.tree
            .get(key)?
            .map(|value| decode(key, &value))
            .transpose()
    }
}

fn parse_ulid(key: &[u8], value: &[u8]) -> Result<Ulid, IdentityError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| Ulid::from_string(text).ok())
        .ok_or_else(|| corrupt(key, "not a ULID"))
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, IdentityError> {
    serde_json::from_slice(value).map_err(|error| corrupt(key, &error.to_string()))
}

fn corrupt(key: &[u8], reason: &str) -> IdentityError {
    IdentityError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    }
}
