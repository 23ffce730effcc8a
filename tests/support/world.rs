//! What the table-driven tests (`routes`, `contract`) build their worlds from: accounts signed
//! in through invitations, and waiting for what happens after an answer.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::service::{Answer, Service};

/// How long a condition that should hold soon (a mail arriving) may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// An account with a session.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub id: String,
    pub email: String,
    /// The session's access token.
    pub token: String,
    pub refresh: String,
    pub session: String,
}

/// Polls `condition` every 20 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(PATIENCE, what, condition).await
}

/// [`eventually`] with a patience of its own, for what a loaded machine may make slow (a
/// cluster electing leaders while the rest of the suite runs).
pub async fn eventually_within<F, Fut>(patience: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Building a world must work: `answer` is a success.
#[track_caller]
pub fn created(answer: &Answer, what: &str) {
    assert!(
        (200..300).contains(&answer.status),
        "building the world: {what}: {answer:?}"
    );
}

/// A JSON string's text.
#[track_caller]
pub fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_owned()
}

/// The latest invitation token mailed to `email`.
pub async fn invitation_token(svc: &Service, email: &str) -> String {
    let mut token = None;
    eventually("the invitation arrives", || {
        token = svc
            .mail()
            .into_iter()
            .rev()
            .find(|m| m.to == email && m.text.contains("idi_"))
            .map(|m| {
                let start = m.text.find("idi_").unwrap();
                m.text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            });
        std::future::ready(token.is_some())
    })
    .await;
    token.unwrap()
}

/// A new member `email` of `tenant` with `roles`: invited by the operator and accepted with
/// `password`, which signs them in.
pub async fn join(
    svc: &Service,
    email: &str,
    tenant: &str,
    roles: &[&str],
    password: &str,
) -> Account {
    let invited = svc
        .post(
            &format!("/v1/tenants/{tenant}/invitations"),
            json!({"email": email, "first_name": "Ada", "last_name": "Lovelace", "roles": roles}),
        )
        .await;
    created(&invited, "an invitation");
    let token = invitation_token(svc, email).await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": password}),
        )
        .await;
    created(&accepted, "an accepted invitation");
    Account {
        id: text(&accepted.body["user"]),
        email: email.to_owned(),
        token: text(&accepted.body["access_token"]),
        refresh: text(&accepted.body["refresh_token"]),
        session: text(&accepted.body["session"]),
    }
}
