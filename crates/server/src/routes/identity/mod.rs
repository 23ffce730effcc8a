//! Identity (the `Identity` service): sign-in and the signed-in user's own account
//! (`account`), sign-in and sign-up by email (`email`), invitations (`invitations`) and API
//! keys (`api_keys`), passkeys (`passkeys`).

pub mod account;
pub mod api_keys;
pub mod email;
pub mod invitations;
pub mod passkeys;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(account::router())
        .merge(email::router())
        .merge(invitations::router())
        .merge(api_keys::router())
        .merge(passkeys::router())
}
