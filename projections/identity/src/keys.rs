//! The identity tables: one key prefix each. Ids are restricted to characters without `/` (tenant
//! slugs, ULIDs, hex blind indexes), so `/` separates the parts of a key unambiguously, and
//! fixed-length ULIDs keep keys in id order, which is creation order.

use idstream_domain::secret::BlindIndex;
use idstream_domain::{TenantId, UserId};
use ulid::Ulid;

/// User → [`crate::CredentialsView`].
pub(crate) fn credentials(user: &UserId) -> Vec<u8> {
    format!("credentials/{user}").into_bytes()
}

/// Session id → [`crate::SessionView`].
pub(crate) fn session(id: &Ulid) -> Vec<u8> {
    format!("session/{id}").into_bytes()
}

/// The prefix of one user's sessions, newest first.
pub(crate) fn sessions_of(user: &UserId) -> String {
    format!("user-session/{user}/")
}

/// An entry of a user's sessions (the value is the session id). The id is inverted so that key
/// order is newest first: session ids are ULIDs minted when the session starts.
pub(crate) fn user_session(user: &UserId, id: &Ulid) -> Vec<u8> {
    let inverted = Ulid(u128::MAX - id.0);
    format!("{}{inverted}", sessions_of(user)).into_bytes()
}

/// Refresh token index → session id. Rotated tokens stay, so that reuse can be recognised.
pub(crate) fn refresh(index: &BlindIndex) -> Vec<u8> {
    format!("refresh/{}", index.as_str()).into_bytes()
}

/// User → time of the latest sign-in, RFC 3339.
pub(crate) fn last_sign_in(user: &UserId) -> Vec<u8> {
    format!("last-sign-in/{user}").into_bytes()
}

/// The prefix of one tenant's invitations, in id order.
pub(crate) fn invitations_of(tenant: &TenantId) -> String {
    format!("invitation/{tenant}/")
}

/// (Tenant, invitation id) → [`crate::InvitationView`].
pub(crate) fn invitation(tenant: &TenantId, id: &Ulid) -> Vec<u8> {
    format!("{}{id}", invitations_of(tenant)).into_bytes()
}

/// Invitation token index → `<tenant>/<invitation id>`. Superseded tokens stay.
pub(crate) fn invitation_token(index: &BlindIndex) -> Vec<u8> {
    format!("invitation-token/{}", index.as_str()).into_bytes()
}

/// The prefix of a user's open (sent) invitations in a tenant, in id order.
pub(crate) fn open_invitations_of(tenant: &TenantId, user: &UserId) -> String {
    format!("open-invitation/{tenant}/{user}/")
}

/// An open invitation of a user in a tenant (the value is empty).
pub(crate) fn open_invitation(tenant: &TenantId, user: &UserId, id: &Ulid) -> Vec<u8> {
    format!("{}{id}", open_invitations_of(tenant, user)).into_bytes()
}

/// API key id → [`crate::ApiKeyView`]. Global, because a presented key names only its id.
pub(crate) fn api_key(id: &Ulid) -> Vec<u8> {
    format!("api-key/{id}").into_bytes()
}

/// The prefix of one tenant's API keys, in id order.
pub(crate) fn api_keys_of(tenant: &TenantId) -> String {
    format!("tenant-api-key/{tenant}/")
}

/// An API key of a tenant (the value is empty).
pub(crate) fn tenant_api_key(tenant: &TenantId, id: &Ulid) -> Vec<u8> {
    format!("{}{id}", api_keys_of(tenant)).into_bytes()
}

/// The prefix of one owner's API keys in a tenant, in id order.
pub(crate) fn api_keys_of_owner(tenant: &TenantId, owner: &UserId) -> String {
    format!("owner-api-key/{tenant}/{owner}/")
}

/// An API key of an owner in a tenant (the value is empty).
pub(crate) fn owner_api_key(tenant: &TenantId, owner: &UserId, id: &Ulid) -> Vec<u8> {
    format!("{}{id}", api_keys_of_owner(tenant, owner)).into_bytes()
}

/// Session id → the client and browser session of an application's code not yet exchanged.
pub(crate) fn pending_code(session: &Ulid) -> Vec<u8> {
    format!("pending-code/{session}").into_bytes()
}

/// The prefix of the application sessions issued through one browser session.
pub(crate) fn children_of(browser_session: &Ulid) -> String {
    format!("child-session/{browser_session}/")
}

/// An application session issued through a browser session (the value is the session id).
pub(crate) fn child_session(browser_session: &Ulid, session: &Ulid) -> Vec<u8> {
    format!("{}{session}", children_of(browser_session)).into_bytes()
}

/// The prefix of one tenant's clients, in id order.
pub(crate) fn clients_of(tenant: &TenantId) -> String {
    format!("client/{tenant}/")
}

/// (Tenant, client id) → [`crate::ClientView`].
pub(crate) fn client(tenant: &TenantId, id: &Ulid) -> Vec<u8> {
    format!("{}{id}", clients_of(tenant)).into_bytes()
}

/// The prefix of one person's consents in a tenant.
pub(crate) fn consents_of(tenant: &TenantId, user: &UserId) -> String {
    format!("consent/{tenant}/{user}/")
}

/// (Tenant, user, client) → [`crate::ConsentView`].
pub(crate) fn consent(tenant: &TenantId, user: &UserId, client: &str) -> Vec<u8> {
    format!("{}{client}", consents_of(tenant, user)).into_bytes()
}

/// The prefix of one tenant's upstream identity providers, by name.
pub(crate) fn providers_of(tenant: &TenantId) -> String {
    format!("idp/{tenant}/")
}

/// (Tenant, provider name) → [`crate::ProviderView`].
pub(crate) fn provider(tenant: &TenantId, id: &str) -> Vec<u8> {
    format!("{}{id}", providers_of(tenant)).into_bytes()
}

/// The prefix of the upstream identities linked to one user, in every tenant.
pub(crate) fn links_of(user: &UserId) -> String {
    format!("link/{user}/")
}

/// (User, tenant, provider, external identity's id) → [`crate::LinkView`].
pub(crate) fn link(user: &UserId, tenant: &TenantId, provider: &str, id: &str) -> Vec<u8> {
    format!("{}{tenant}/{provider}/{id}", links_of(user)).into_bytes()
}
