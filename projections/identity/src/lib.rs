//! The identity read model: each user's credentials, the signed-in sessions with an index from
//! refresh tokens to sessions, invitations with an index from invitation tokens, and API keys,
//! folded from the event log by [`IdentityProjection`] and queried through [`Identity`].
//!
//! It lives in one sled tree (named [`NAME`]) with a key prefix per table; values are the views'
//! JSON, whose field order is fixed by the structs, so a rebuild gives identical bytes.
//!
//! **The views hold secrets.** A [`CredentialsView`] carries the sealed password hash and TOTP
//! secret, and every view carries blind indexes of bearer tokens (refresh tokens, invitation
//! tokens, recovery codes, API key secrets). They are for the application's checks only: the
//! server must never return them as they are, but map them to response types without those
//! fields.
//!
//! **Invariant:** the fold is deterministic and reads nothing but the event and the tree: no
//! clock, no IO, no logging. A time comes from the event's data where it has one, else from the
//! envelope's `occurred_at`, both of which are in the log. Whatever depends on the time of a query
//! (is the session still live? has the invitation expired?) is answered at query time, e.g.
//! [`SessionView::is_live_at`]. The fold never decides anything: the log already holds decisions,
//! so it applies each event the way the aggregate's `evolve` does, and an event it cannot place (a
//! refresh of an unknown session, an invalid id, a newer event version) is skipped with a note.

mod cache;
mod fold;
mod keys;
mod query;

use std::collections::BTreeSet;

use idstream_domain::access::Permission;
use idstream_domain::identity::session::{RevocationReason, SignInMethod};
use idstream_domain::secret::{BlindIndex, Sealed};
use idstream_domain::{Actor, RoleName, TenantId, UserId};
use idstream_eventlog::Position;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

pub use cache::ViewCache;
pub use fold::IdentityProjection;
pub use query::{Identity, IdentityError};

/// The name of the projection and of its sled tree.
pub const NAME: &str = "identity";

/// What proves who a user is: the credentials aggregate as of its last event, without the
/// outstanding emailed tokens (the write side keeps those in the aggregate's own state).
///
/// Its fields change exactly as `idstream_domain::identity::credentials::evolve` changes the
/// aggregate's fields of the same names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsView {
    pub user: UserId,
    /// The sealed argon2id PHC string.
    pub password: Option<Sealed>,
    /// When the password was last set (that event's `occurred_at`), RFC 3339.
    #[serde(with = "time::serde::rfc3339::option")]
    pub password_set_at: Option<OffsetDateTime>,
    /// TOTP secret waiting for its first code.
    pub totp_pending: Option<Sealed>,
    /// Confirmed TOTP secret: sign-in needs a second step.
    pub totp: Option<Sealed>,
    /// Highest TOTP time step used; a code of that step or earlier is refused.
    pub totp_last_step: u64,
    /// Blind indexes of the unused recovery codes.
    pub recovery_codes: Vec<BlindIndex>,
    /// Registered passkeys, oldest first.
    #[serde(default)]
    pub passkeys: Vec<PasskeyView>,
    /// Consecutive failures since the last success, lock-out or unlock.
    pub failures: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    /// End of the current or last lock-out, RFC 3339; see [`CredentialsView::is_locked_at`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    /// Lock-outs since the last successful sign-in (each doubles the next one).
    pub lockouts: u32,
    /// Log position of the credentials aggregate's last event.
    pub position: Position,
}

impl CredentialsView {
    /// Whether sign-in is refused at `now` because of a lock-out.
    pub fn is_locked_at(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// Whether the user has a confirmed TOTP secret.
    pub fn totp_enabled(&self) -> bool {
        self.totp.is_some()
    }

    /// Whether sign-in with a first factor needs a second step: TOTP or a passkey (the rule of
    /// the domain's `Credentials::has_second_factor`).
    pub fn has_second_factor(&self) -> bool {
        self.totp.is_some() || !self.passkeys.is_empty()
    }

    /// The passkey with this credential id.
    pub fn passkey(&self, credential: &str) -> Option<&PasskeyView> {
        self.passkeys.iter().find(|p| p.credential == credential)
    }
}

/// A registered passkey (WebAuthn credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyView {
    /// The credential id, base64url.
    pub credential: String,
    /// The name its owner gave it. Personal data: stored sealed with the person's key and opened
    /// by [`Identity::credentials`]; empty once the person is erased.
    pub name: String,
    /// The WebAuthn library's serialised passkey (public key and flags) as registered.
    pub public_key: String,
    /// The highest signature counter seen.
    pub counter: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the ceremony of its last use began (a ceremony no later than this cannot use it).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_ceremony: Option<OffsetDateTime>,
}

/// One signed-in device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: Ulid,
    pub user: UserId,
    /// The tenant the session is in now (a switch moves it).
    pub tenant: TenantId,
    pub method: SignInMethod,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The start, or the last refresh or tenant switch.
    #[serde(with = "time::serde::rfc3339")]
    pub last_active_at: OffsetDateTime,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The session ends after this long without a refresh.
    pub idle_timeout_seconds: i64,
    /// Started with `remember`: `expires_at` is the tenant's remembered lifetime's end.
    pub remembered: bool,
    /// Number of rotations so far.
    pub generation: u32,
    /// Blind index of the live refresh token.
    pub refresh: BlindIndex,
    /// Why the session was revoked, if it was (the first revocation; later ones change nothing).
    pub revoked: Option<RevocationReason>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The IP address the session was started from, if recorded. Personal data: gone once the
    /// user is erased.
    pub ip: Option<String>,
    /// The `User-Agent` of the sign-in, if recorded. Personal data, like `ip`.
    pub user_agent: Option<String>,
    /// Log position of the session's last event.
    pub position: Position,
    /// The OpenID Connect client (application) the session was issued to, by its code; `None`
    /// for a session of idstream's own API and pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The browser session an application's session was issued through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_session: Option<Ulid>,
}

impl SessionView {
    /// Whether the session may still be used at `now`: not revoked, within its absolute lifetime
    /// and within its idle timeout (the rule of the domain's `Session::is_live_at`).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        is_live_at(
            self.revoked.is_some(),
            self.expires_at,
            self.last_active_at,
            self.idle_timeout_seconds,
            now,
        )
    }
}

/// What the check of an access token needs of its session, and nothing else: no refresh-token
/// index, no personal data (IP address, user agent). Small enough to keep in memory for every
/// session in use (see [`ViewCache`]); read with [`Identity::session_standing`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionStanding {
    pub user: UserId,
    /// The tenant the session is in now.
    pub tenant: TenantId,
    pub method: SignInMethod,
    #[serde(with = "time::serde::rfc3339")]
    last_active_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    idle_timeout_seconds: i64,
    #[serde(deserialize_with = "is_some")]
    revoked: bool,
}

impl SessionStanding {
    /// [`SessionView::is_live_at`] of its session.
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        is_live_at(
            self.revoked,
            self.expires_at,
            self.last_active_at,
            self.idle_timeout_seconds,
            now,
        )
    }
}

impl From<&SessionView> for SessionStanding {
    fn from(view: &SessionView) -> SessionStanding {
        SessionStanding {
            user: view.user,
            tenant: view.tenant.clone(),
            method: view.method,
            last_active_at: view.last_active_at,
            expires_at: view.expires_at,
            idle_timeout_seconds: view.idle_timeout_seconds,
            revoked: view.revoked.is_some(),
        }
    }
}

/// Whether a session may be used at `now`: not revoked, within its absolute lifetime and within
/// its idle timeout (the rule of the domain's `Session::is_live_at`).
fn is_live_at(
    revoked: bool,
    expires_at: OffsetDateTime,
    last_active_at: OffsetDateTime,
    idle_timeout_seconds: i64,
    now: OffsetDateTime,
) -> bool {
    let idle_end = last_active_at.checked_add(Duration::seconds(idle_timeout_seconds));
    !revoked
        && now < expires_at
        // A timeout too large to add to a date never runs out; one too negative always has.
        && idle_end.map_or(idle_timeout_seconds > 0, |end| now < end)
}

/// Whether an optional field holds a value, without keeping it.
fn is_some<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Option::<serde::de::IgnoredAny>::deserialize(deserializer).map(|value| value.is_some())
}

/// An invitation's status. Only `sent`, `accepted` and `revoked` are recorded; `expired` is what
/// [`InvitationView::status_at`] answers for a sent invitation read after its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Sent,
    Accepted,
    Revoked,
    Expired,
}

/// An invitation of a user to a tenant with roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: Ulid,
    pub tenant: TenantId,
    pub user: UserId,
    /// The roles the user gets on accepting.
    pub roles: BTreeSet<RoleName>,
    /// As recorded: never `expired` here; see [`InvitationView::status_at`].
    pub status: InvitationStatus,
    /// Blind index of the live token (the last one sent).
    pub token: BlindIndex,
    /// When the invitation was first sent (that event's `occurred_at`), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// End of the live token; a resend restarts it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// How many times it was sent again.
    pub resent: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Who sent it: the actor of the first send.
    pub invited_by: Actor,
    /// Log position of the invitation's last event.
    pub position: Position,
    /// Log position of its first send: of two invitations of one user to one tenant sent at
    /// once, the one sent first in the log stands.
    pub sent_position: Position,
    /// How its link reaches the invitee: by email, or handed to the inviter.
    #[serde(default)]
    pub delivery: idstream_domain::events::InvitationDelivery,
}

impl InvitationView {
    /// The status in effect at `now`: a sent invitation past its end has expired.
    pub fn status_at(&self, now: OffsetDateTime) -> InvitationStatus {
        match self.status {
            InvitationStatus::Sent if now >= self.expires_at => InvitationStatus::Expired,
            status => status,
        }
    }
}

/// An API key: acts for its owner in its tenant, optionally restricted to some permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: Ulid,
    pub tenant: TenantId,
    pub owner: UserId,
    pub name: String,
    /// Blind index of the key's secret.
    pub secret: BlindIndex,
    /// The permissions the key is limited to; `None` for the owner's full permissions.
    pub restriction: Option<BTreeSet<Permission>>,
    /// When it was issued (that event's `occurred_at`), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked (the first revocation), RFC 3339.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The last recorded use (recorded at most once a minute), RFC 3339.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Who issued it: the actor of the issuing event.
    pub created_by: Actor,
    /// Log position of the key's last event.
    pub position: Position,
}

/// An OpenID Connect client (application) of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    /// The client id.
    pub id: Ulid,
    pub tenant: TenantId,
    pub kind: idstream_domain::identity::client::ClientKind,
    pub settings: idstream_domain::identity::client::ClientSettings,
    /// Blind index of a confidential client's secret.
    pub secret: Option<BlindIndex>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub secret_rotated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
    /// The last recorded client-credentials grant (at most once a minute).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub created_by: Actor,
    /// Log position of the client's last event.
    pub position: Position,
}

/// What one person consented to one client receiving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    pub tenant: TenantId,
    pub user: UserId,
    pub client: String,
    pub scopes: BTreeSet<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
    pub position: Position,
}

/// An upstream OpenID Connect provider of a tenant (removed ones are not kept). The sealed
/// client secret is here for the sign-in that presents it; nothing answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    pub tenant: TenantId,
    pub id: String,
    pub settings: idstream_domain::identity::upstream::IdentityProviderSettings,
    pub secret: Option<idstream_domain::secret::Sealed>,
    #[serde(with = "time::serde::rfc3339")]
    pub configured_at: OffsetDateTime,
    pub position: Position,
}

/// An upstream identity that signs a user in to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub tenant: TenantId,
    pub user: UserId,
    pub provider: String,
    /// The external identity aggregate's id (a blind index of the provider and the subject).
    pub id: String,
    pub via: idstream_domain::identity::upstream::LinkVia,
    #[serde(with = "time::serde::rfc3339")]
    pub linked_at: OffsetDateTime,
    pub position: Position,
}

impl ApiKeyView {
    /// Whether the key may be used at `now`: not revoked and not expired.
    pub fn is_usable_at(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

#[cfg(test)]
mod tests;

/// The seal every test of this crate shares (the projection and the queries over one tree must
/// use the same keys): keys in memory.
#[cfg(test)]
pub(crate) fn seal() -> std::sync::Arc<dyn idstream_projection_runtime::PersonalSeal> {
    static SEAL: std::sync::OnceLock<
        std::sync::Arc<dyn idstream_projection_runtime::PersonalSeal>,
    > = std::sync::OnceLock::new();
    SEAL.get_or_init(idstream_keys::ReadModelSeal::in_memory)
        .clone()
}
