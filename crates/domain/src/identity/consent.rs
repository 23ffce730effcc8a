//! The consent aggregate (tenant-scoped; id `<client id>_<user id>`): what one person allowed one
//! third-party client to receive. The consent screen is skipped while the consent covers what a
//! client asks for; a person takes it back from their account, and the client must ask again.

use std::collections::BTreeSet;

use crate::events::{ConsentGranted, ConsentRevoked};
use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consent {
    /// The scopes consented to; `None` before any consent or after it was revoked.
    pub scopes: Option<BTreeSet<String>>,
}

impl Consent {
    /// Whether the consent covers every scope of `wanted`.
    pub fn covers(&self, wanted: &BTreeSet<String>) -> bool {
        self.scopes
            .as_ref()
            .is_some_and(|granted| wanted.is_subset(granted))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    /// Consents to `scopes` (added to what was consented to before).
    Grant {
        user: UserId,
        client: String,
        scopes: BTreeSet<String>,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentEvent {
    Granted(ConsentGranted),
    Revoked(ConsentRevoked),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("no consent was given to this client")]
    NotFound,
}

/// The stream id of `user`'s consent to `client`.
pub fn consent_id(client: &str, user: &UserId) -> String {
    format!("{client}_{user}")
}

pub fn decide(state: &Consent, command: ConsentCommand) -> Result<Vec<ConsentEvent>, ConsentError> {
    match command {
        ConsentCommand::Grant {
            user,
            client,
            scopes,
        } => {
            if state.covers(&scopes) {
                return Ok(vec![]);
            }
            let mut all = state.scopes.clone().unwrap_or_default();
            all.extend(scopes);
            Ok(vec![ConsentEvent::Granted(ConsentGranted {
                user,
                client,
                scopes: all,
            })])
        }
        ConsentCommand::Revoke => match state.scopes {
            None => Err(ConsentError::NotFound),
            Some(_) => Ok(vec![ConsentEvent::Revoked(ConsentRevoked {})]),
        },
    }
}

pub fn evolve(mut state: Consent, event: &ConsentEvent) -> Consent {
    match event {
        ConsentEvent::Granted(e) => state.scopes = Some(e.scopes.clone()),
        ConsentEvent::Revoked(_) => state.scopes = None,
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn given(
        events: &[ConsentEvent],
        when: ConsentCommand,
    ) -> Result<Vec<ConsentEvent>, ConsentError> {
        decide(&events.iter().fold(Consent::default(), evolve), when)
    }

    fn scopes(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn grant(list: &[&str]) -> ConsentCommand {
        ConsentCommand::Grant {
            user: UserId::new(Ulid::from_parts(1, 1)),
            client: "c".into(),
            scopes: scopes(list),
        }
    }

    #[test]
    fn a_consent_grows_with_new_scopes_and_a_covered_request_records_nothing() {
        let first = given(&[], grant(&["openid", "email"])).unwrap();
        assert_eq!(given(&first, grant(&["openid"])), Ok(vec![]));
        let more = given(&first, grant(&["profile"])).unwrap();
        let [ConsentEvent::Granted(e)] = more.as_slice() else {
            panic!("{more:?}")
        };
        assert_eq!(e.scopes, scopes(&["email", "openid", "profile"]));
    }

    #[test]
    fn a_revoked_consent_covers_nothing_and_cannot_be_revoked_twice() {
        let mut events = given(&[], grant(&["openid"])).unwrap();
        events.extend(given(&events, ConsentCommand::Revoke).unwrap());
        let state = events.iter().fold(Consent::default(), evolve);
        assert!(!state.covers(&scopes(&["openid"])));
        assert_eq!(
            given(&events, ConsentCommand::Revoke),
            Err(ConsentError::NotFound)
        );
    }
}
