//! Personal data at rest in read models: sealed with the person's own key.
//!
//! The log holds personal values (see `idstream_domain::events::PERSONAL_DATA`) encrypted with a
//! key of the person they belong to; erasing the person destroys that key. Read models keep the
//! same promise: a projection that stores a personal value stores it sealed with the person's
//! key through a [`PersonalSeal`], and its queries open it on the way out. Once the person is
//! erased, every copy that might survive on disk (a page sled has not reused yet, a backup of the
//! data directory, a point-in-time replay) is unreadable.
//!
//! Sealing is deterministic (the same value of the same field of the same person under the same
//! key gives the same bytes), so folds stay deterministic and a rebuild from 0 gives
//! byte-identical trees. Looking up a key is IO, which folds otherwise never do: the key is the
//! one the decrypting log just used to open the event, so it is normally in memory.

use std::fmt::Debug;

/// What every value sealed for a read model starts with.
pub const SEALED_PREFIX: &str = "pr1.";

/// The person's key could not be had: the key store did not answer, or does not have the key
/// yet (a replica whose copy of the store is behind). The fold retries; a query fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("personal-data keys unavailable: {0}")]
pub struct SealError(pub String);

/// Seals and opens personal values of read models with their person's key, and computes the keyed
/// blind index that lets a read model look a value up without storing it.
pub trait PersonalSeal: Send + Sync + Debug {
    /// `value` of `field` (`email`, `first_name`, …, `values.<name>` for an attribute) of
    /// `user`, sealed: a [`SEALED_PREFIX`] string. Empty values are kept as they are. Once the
    /// user's key is gone (erased) the value cannot be sealed any more and the answer is the
    /// neutral placeholder of the field (`None` for a nullable one), never the value.
    fn seal(&self, user: &str, field: &str, value: &str) -> Result<Option<String>, SealError>;

    /// The clear value of `stored` (what [`PersonalSeal::seal`] made, or a value that was never
    /// sealed, such as a placeholder, returned as it is). Once the key is gone, or if the value
    /// does not open under this user and field, the field's placeholder (`None`: null).
    fn open(&self, user: &str, field: &str, stored: &str) -> Result<Option<String>, SealError>;

    /// The keyed blind index of `value` for `purpose`, the same on every replica: a read model
    /// indexes a personal value by it without storing the value.
    fn blind(&self, purpose: &str, value: &str) -> String;
}

/// Whether `value` is sealed for a read model.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Seals a required text field (an absent answer, for an erased user, becomes empty).
pub fn seal_text(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    value: &str,
) -> Result<String, SealError> {
    Ok(seal.seal(user, field, value)?.unwrap_or_default())
}

/// Seals an optional text field.
pub fn seal_option(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    value: Option<&str>,
) -> Result<Option<String>, SealError> {
    match value {
        Some(value) => seal.seal(user, field, value),
        None => Ok(None),
    }
}

/// Opens a required text field.
pub fn open_text(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    stored: &str,
) -> Result<String, SealError> {
    if !is_sealed(stored) {
        return Ok(stored.to_owned());
    }
    Ok(seal.open(user, field, stored)?.unwrap_or_default())
}

/// Opens an optional text field.
pub fn open_option(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    stored: Option<&str>,
) -> Result<Option<String>, SealError> {
    match stored {
        Some(stored) if is_sealed(stored) => seal.open(user, field, stored),
        Some(stored) => Ok(Some(stored.to_owned())),
        None => Ok(None),
    }
}

/// Seals a JSON value (an attribute's): its JSON text, sealed as a string. Null stays null.
pub fn seal_json(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    value: &serde_json::Value,
) -> Result<serde_json::Value, SealError> {
    if value.is_null() {
        return Ok(serde_json::Value::Null);
    }
    Ok(seal
        .seal(user, field, &value.to_string())?
        .map_or(serde_json::Value::Null, serde_json::Value::String))
}

/// Opens a JSON value sealed by [`seal_json`] (null once it cannot be read).
pub fn open_json(
    seal: &dyn PersonalSeal,
    user: &str,
    field: &str,
    stored: &serde_json::Value,
) -> Result<serde_json::Value, SealError> {
    match stored {
        serde_json::Value::String(text) if is_sealed(text) => Ok(seal
            .open(user, field, text)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or(serde_json::Value::Null)),
        other => Ok(other.clone()),
    }
}

/// The forms a text can take in a stored file: as it is (UTF-8), lower-cased (addresses are
/// normalised), and JSON-escaped (`\uXXXX` for every non-ASCII character, as some encoders write
/// them), each as bytes.
pub fn stored_forms(text: &str) -> Vec<Vec<u8>> {
    let escaped = |upper: bool| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii() {
                    return c.to_string();
                }
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units)
                    .iter()
                    .map(|unit| {
                        if upper {
                            format!("\\u{unit:04X}")
                        } else {
                            format!("\\u{unit:04x}")
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let mut forms = vec![
        text.as_bytes().to_vec(),
        text.to_lowercase().into_bytes(),
        escaped(false).into_bytes(),
        escaped(true).into_bytes(),
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// Every file under `dir` (recursively) that holds one of `texts` in one of its
/// [`stored_forms`], with the text found: what an auditor searching a copy of the data directory
/// for a person would find. Unreadable entries are skipped.
pub fn files_holding(dir: &std::path::Path, texts: &[&str]) -> Vec<(std::path::PathBuf, String)> {
    let needles: Vec<(String, Vec<u8>)> = texts
        .iter()
        .flat_map(|text| {
            stored_forms(text)
                .into_iter()
                .map(move |form| (text.to_string(), form))
        })
        .collect();
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            for (text, form) in &needles {
                if !form.is_empty() && memchr::memmem::find(&bytes, form).is_some() {
                    found.push((path.clone(), text.clone()));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The phone number (without its `+`) and the IP address of [`events_with_personal_data`]'s
/// person, which hold no canary text of their own.
pub const CANARY_PHONE: &str = "33612340000";
pub const CANARY_IP: &str = "198.51.100.77";

/// What `projection` leaves in its store's files of a person's values: it applies
/// [`events_with_personal_data`] to a fresh sled store in `root`, flushes and closes it, and
/// returns what [`files_holding`] finds there of the canary, the phone number and the IP address.
/// Empty for a projection that keeps no personal value in the clear.
pub fn personal_values_stored_by(
    projection: &dyn crate::Projection,
    root: &std::path::Path,
) -> Vec<(std::path::PathBuf, String)> {
    let canary = "zq9canary";
    let user: idstream_domain::UserId = "01J00000000000000000000CAN"
        .parse()
        .expect("a valid user id");
    let tenant: idstream_domain::TenantId = "canary-co".parse().expect("a valid tenant id");
    let db = sled::Config::new()
        .path(root)
        .open()
        .expect("a fresh sled store");
    let tree = db.open_tree("under-test").expect("a tree");
    let events = events_with_personal_data(user, &tenant, canary);
    let applied = crate::apply_events(projection, &tree, &events).expect("the events apply");
    assert_eq!(
        applied.checkpoint,
        events.len() as u64,
        "every event applied"
    );
    db.flush().expect("the store flushes");
    drop((tree, db));
    files_holding(root, &[canary, CANARY_PHONE, CANARY_IP])
}

/// Events that carry a personal value in every field `PERSONAL_DATA` lists, all of one person
/// (`user`, a member of `tenant`), at positions 1, 2, …: registration, a profile, attribute
/// values, an email change asked and confirmed, a failed and a successful sign-in. Each value
/// contains `canary`, so a raw search of a store for it finds any copy kept in the clear.
pub fn events_with_personal_data(
    user: idstream_domain::UserId,
    tenant: &idstream_domain::TenantId,
    canary: &str,
) -> Vec<crate::RecordedEvent> {
    use idstream_domain::events::{
        EmailChangeRequested, EmailChanged, SessionStarted, SignInFailed, TenantCreated,
        UserAttributesChanged, UserProfileChanged, UserRegistered,
    };
    use idstream_domain::identity::session::SignInMethod;
    use idstream_domain::secret::BlindIndex;
    use idstream_domain::{Actor, AggregateType, DomainEvent, Metadata, StreamKey};

    let at = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a valid time");
    let user_stream = StreamKey::new(None, AggregateType::User, user.to_string());
    let credentials = StreamKey::new(None, AggregateType::Credentials, user.to_string());
    let session = StreamKey::new(
        None,
        AggregateType::Session,
        ulid::Ulid::from_parts(1_780_000_000_000, 1).to_string(),
    );
    let tenant_stream =
        StreamKey::new(Some(tenant.clone()), AggregateType::Tenant, tenant.as_str());
    let mut values = std::collections::BTreeMap::new();
    values.insert(
        "badge".to_owned(),
        serde_json::json!(format!("badge-{canary}")),
    );
    let events = [
        (
            tenant_stream,
            DomainEvent::TenantCreated(TenantCreated {
                name: "Canary tenant".into(),
            }),
        ),
        (
            user_stream.clone(),
            DomainEvent::UserRegistered(UserRegistered {
                email: format!("{canary}@example.com"),
                first_name: format!("First{canary}"),
                last_name: format!("Last{canary}"),
                tenant: tenant.clone(),
            }),
        ),
        (
            user_stream.clone(),
            DomainEvent::UserProfileChanged(UserProfileChanged {
                first_name: format!("First{canary}"),
                last_name: format!("Last{canary}"),
                image_url: Some(format!("https://img.example.com/{canary}.png")),
                notifications: Default::default(),
                phone: Some(format!("+{CANARY_PHONE}")),
                language: None,
            }),
        ),
        (
            user_stream.clone(),
            DomainEvent::UserAttributesChanged(UserAttributesChanged {
                tenant: tenant.clone(),
                values,
            }),
        ),
        (
            user_stream.clone(),
            DomainEvent::EmailChangeRequested(EmailChangeRequested {
                email: format!("new.{canary}@example.com"),
            }),
        ),
        (
            user_stream,
            DomainEvent::EmailChanged(EmailChanged {
                email: format!("new.{canary}@example.com"),
            }),
        ),
        (
            credentials,
            DomainEvent::SignInFailed(SignInFailed {
                failures: 1,
                at,
                ip: Some(CANARY_IP.into()),
                user_agent: Some(format!("Agent/{canary}")),
            }),
        ),
        (
            session,
            DomainEvent::SessionStarted(SessionStarted {
                user,
                tenant: tenant.clone(),
                method: SignInMethod::Password,
                refresh: BlindIndex::from_bytes(&[7; 32]),
                at,
                expires_at: at + time::Duration::hours(10),
                idle_timeout_seconds: 1800,
                ip: Some(CANARY_IP.into()),
                user_agent: Some(format!("Agent/{canary}")),
                remembered: false,
            }),
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, (stream, event))| {
            let position = i as u64 + 1;
            let meta = Metadata {
                actor: Actor::system("canary"),
                occurred_at: at,
                correlation_id: format!("canary-{position}"),
                causation_id: None,
            };
            crate::RecordedEvent {
                position,
                envelope: event.into_envelope(
                    ulid::Ulid::from_parts(1_780_000_000_000 + position, 9),
                    &stream,
                    &meta,
                ),
                msg_id: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_holding_finds_a_text_in_each_stored_form_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nested")).unwrap();
        std::fs::write(dir.path().join("plain"), "…\"Zoë\"…").unwrap();
        std::fs::write(dir.path().join("nested/escaped"), "{\"n\":\"Zo\\u00EB\"}").unwrap();
        std::fs::write(dir.path().join("lower"), "ADA@x ada@example.com").unwrap();
        std::fs::write(dir.path().join("clean"), "nothing to see").unwrap();
        let found = files_holding(dir.path(), &["Zoë", "Ada@Example.com"]);
        let names: Vec<(String, String)> = found
            .into_iter()
            .map(|(path, text)| {
                let path = path.strip_prefix(dir.path()).unwrap().display().to_string();
                (path, text)
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("lower".to_owned(), "Ada@Example.com".to_owned()),
                ("nested/escaped".to_owned(), "Zoë".to_owned()),
                ("plain".to_owned(), "Zoë".to_owned()),
            ]
        );
    }
}
