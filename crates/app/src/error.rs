use idstream_domain::RoleName;
use idstream_domain::access::entity::EntityError;
use idstream_domain::access::record::RecordError;
use idstream_domain::access::role::RoleError;
use idstream_domain::identity::api_key::ApiKeyError;
use idstream_domain::identity::credentials::CredentialsError;
use idstream_domain::identity::invitation::InvitationError;
use idstream_domain::identity::session::SessionError;
use idstream_domain::membership::MembershipError;
use idstream_domain::tenant::TenantError;
use idstream_domain::user::UserError;
use idstream_eventlog::Position;

/// Everything a command or query can fail with. The server maps each variant to one HTTP status
/// and one stable problem code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Entity(#[from] EntityError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    EmailClaim(#[from] idstream_domain::email::EmailClaimError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Invitation(#[from] InvitationError),
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    #[error(transparent)]
    Client(#[from] idstream_domain::identity::client::ClientError),
    #[error(transparent)]
    Consent(#[from] idstream_domain::identity::consent::ConsentError),
    #[error(transparent)]
    IdentityProvider(#[from] idstream_domain::identity::upstream::IdentityProviderError),
    #[error(transparent)]
    ExternalIdentity(#[from] idstream_domain::identity::upstream::ExternalIdentityError),
    /// A sign-in through an upstream provider did not happen.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// An OAuth or OpenID Connect protocol error, answered with its `error` code.
    #[error("{0}")]
    OAuth(crate::oidc::OAuthError),
    /// Unknown account, wrong password or second factor, no password, or locked: one answer.
    #[error("the email address or password is wrong")]
    InvalidCredentials,
    /// A refresh token or sign-in challenge that is unknown, used, expired or revoked.
    #[error("the token is invalid or has expired")]
    InvalidToken,
    /// An emailed link (invitation, password reset) that is unknown, used or expired.
    #[error("the link is invalid, was already used or has expired")]
    InvalidOrExpiredLink,
    /// No usable bearer credential.
    #[error("authentication is required")]
    Unauthenticated,
    #[error("the account is suspended or deactivated")]
    AccountDisabled,
    #[error(
        "this tenant requires two-factor authentication: set up TOTP (/v1/auth/totp/setup, then /v1/auth/totp/confirm) or a passkey (/v1/auth/passkeys/registration/start, then …/finish) first"
    )]
    SecondFactorEnrolmentRequired,
    #[error("a tenant of this user requires two-factor authentication; it cannot be turned off")]
    SecondFactorRequiredByTenant,
    #[error("the email address is not verified yet: follow the link that was sent to it")]
    EmailNotVerified,
    #[error("the password is longer than 4096 bytes")]
    PasswordTooLong,
    #[error("the password does not meet the policy: {}", .0.join("; "))]
    WeakPassword(Vec<String>),
    #[error("a password is required")]
    PasswordRequired,
    #[error("give either a TOTP code or a recovery code")]
    SecondFactorMissing,
    /// A passkey's registration could not be verified (a malformed answer, another origin or
    /// relying party, no user verification) or its answer was not a WebAuthn credential.
    #[error("the passkey's answer could not be verified")]
    PasskeyRefused,
    #[error(
        "name: a passkey's name is 1 to 64 characters showing something, without control or bidirectional formatting characters"
    )]
    InvalidPasskeyName,
    /// Removing the last second factor needs a fresh sign-in.
    #[error("sign in again first: this needs a sign-in of the last 15 minutes")]
    RecentSignInRequired,
    /// The service's public URL cannot be a WebAuthn relying party (browsers take a host name,
    /// never an IP address).
    #[error(
        "passkeys are unavailable: the service's public URL needs a host name, not an IP address"
    )]
    PasskeysUnavailable,
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    #[error("this needs a signed-in session, not an API key")]
    SessionOnly,
    #[error("no such session")]
    SessionNotFound,
    #[error("the user already has an open invitation to this tenant; resend it instead")]
    InvitationPending,
    #[error("the service is bootstrapped already: a tenant exists")]
    AlreadyBootstrapped,
    #[error("an API key needs an owner")]
    OwnerRequired,
    #[error("the user may not use API keys (their api_access flag is off)")]
    ApiAccessDisabled,
    #[error("the user may not use the administration console (their dashboard_access flag is off)")]
    DashboardAccessDisabled,
    /// SCIM is provisioned with an API key of the tenant (not a session's access token).
    #[error("SCIM provisioning uses an API key of the tenant (Authorization: Bearer ids_…)")]
    ScimKeyRequired,
    /// A SCIM protocol error: its status, `scimType` and detail as the SCIM endpoints answer.
    #[error("{}", .0.detail)]
    Scim(idstream_scim::ScimError),
    /// An `If-Match` precondition names another version of the resource.
    #[error("the resource changed: its version is not the one If-Match names")]
    PreconditionFailed,
    #[error("the key would have permissions its owner does not hold: {}", .0.join(", "))]
    RestrictionBeyondOwner(Vec<String>),
    #[error("this email address belongs to another user")]
    EmailTaken,
    #[error("no such tenant")]
    TenantNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error(
        "the tenant defines no resource {0}: define it first (PUT /v1/tenants/{{tenant}}/resources/{0})"
    )]
    UnknownResource(idstream_domain::access::ResourceName),
    #[error("the role {0} does not exist in this tenant")]
    UnknownRole(RoleName),
    #[error("no such entity in this tenant")]
    EntityNotFound,
    #[error("the user is not a member of this tenant")]
    NotAMember,
    #[error("only an owner of this tenant may give or take the owner role")]
    OwnerOnly,
    #[error(
        "nobody can remove, suspend, deactivate or erase themselves, or give up their own owner role"
    )]
    CannotRemoveSelf,
    #[error(
        "this would leave the tenant without an administrator: the last holder of admin or owner cannot be removed, demoted or deactivated"
    )]
    LastAdmin,
    #[error("the role {0} is held by members of this tenant or is its default role")]
    RoleInUse(RoleName),
    #[error("the owner role cannot be the role self-registered users get")]
    ProtectedDefaultRole,
    #[error("only platform administrators may do this")]
    PlatformAdminOnly,
    #[error("the caller lacks the permission {0} in this tenant")]
    Forbidden(idstream_domain::access::Permission),
    /// A change would give someone a permission its caller does not hold.
    #[error(
        "nobody gives a permission they do not hold; the caller lacks: {}",
        .0.join(", ")
    )]
    BeyondCallerPermissions(Vec<String>),
    #[error("the caller is not a user: name the subject (`user:<id>` or `anonymous`)")]
    SubjectRequired,
    #[error("tenant is required when the caller has no tenant (the operator token)")]
    TenantRequired,
    #[error("the Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error(
        "this operation cannot be previewed with dry_run: it has effects beyond the log (mail, keys, secrets) or its own dry run"
    )]
    DryRunUnsupported,
    #[error("the aggregate kept changing while the command was retried; try again")]
    Conflict,
    #[error("the event log is unavailable")]
    Unavailable(String),
    #[error("the read models have not reached position {wanted} yet (at {current})")]
    Stale { wanted: Position, current: Position },
    #[error(
        "position {wanted} is beyond the end of the event log ({end}); it was not issued by this service"
    )]
    PositionBeyondLog { wanted: Position, end: Position },
    /// The directory's search index is being loaded (after a start or a rebuild).
    #[error("the directory's search index is still loading; retry shortly")]
    SearchIndexLoading,
    /// A query the service cannot answer as asked (a cursor it did not issue, a filter that does
    /// not apply); the text says which.
    #[error("{0}")]
    InvalidQuery(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The admin guard's refusal is the last-admin rule; its "look again" is handled by the caller
/// (see `Core::reserve_admin_removal`) and otherwise reads as a lost race.
impl From<idstream_domain::access::admin_guard::AdminGuardError> for AppError {
    fn from(error: idstream_domain::access::admin_guard::AdminGuardError) -> Self {
        use idstream_domain::access::admin_guard::AdminGuardError;
        match error {
            AdminGuardError::LastAdmin => AppError::LastAdmin,
            AdminGuardError::Moved => AppError::Conflict,
        }
    }
}
