use idstream_domain::RoleName;
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
    #[error("this email address belongs to another user")]
    EmailTaken,
    #[error("no such tenant")]
    TenantNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error("the role {0} does not exist in this tenant")]
    UnknownRole(RoleName),
    #[error("the Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
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
    #[error("internal error: {0}")]
    Internal(String),
}
