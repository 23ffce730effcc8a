//! JSON Schemas of the envelope and of every event (type, version), generated from the Rust types.
//!
//! The checked-in copies live in `schemas/` at the repository root. The test below fails when a
//! type changes without its schema; `UPDATE_SCHEMAS=1 cargo test -p idstream-domain schema`
//! rewrites them (and a published version must then be left alone: add a new version instead).

use schemars::{JsonSchema, schema_for};

use crate::envelope::EventEnvelope;
use crate::events::*;

fn pretty<T: JsonSchema>() -> String {
    let schema = schema_for!(T);
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialise");
    text.push('\n');
    text
}

/// (file name, schema text) for the envelope and every catalogued event version.
pub fn all() -> Vec<(String, String)> {
    let mut out = vec![("envelope.v1.json".to_owned(), pretty::<EventEnvelope>())];
    for (name, version, _) in CATALOGUE {
        let text = match *name {
            "TenantCreated" => pretty::<TenantCreated>(),
            "TenantRenamed" => pretty::<TenantRenamed>(),
            "UserRegistered" => pretty::<UserRegistered>(),
            "UserInvited" => pretty::<UserInvited>(),
            "UserSuspended" => pretty::<UserSuspended>(),
            "UserReinstated" => pretty::<UserReinstated>(),
            "RoleAssigned" => pretty::<RoleAssigned>(),
            "RoleRevoked" => pretty::<RoleRevoked>(),
            "EmailClaimed" => pretty::<EmailClaimed>(),
            other => panic!("catalogued event {other} has no schema generator"),
        };
        out.push((format!("{name}.v{version}.json"), text));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn checked_in_schemas_match_the_event_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        let mut stale = Vec::new();
        for (file, text) in super::all() {
            let path = dir.join(&file);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(file);
            }
        }
        assert!(
            stale.is_empty(),
            "these schemas differ from the Rust types: {stale:?}. If the change is intended and the \
             version is unpublished, run `UPDATE_SCHEMAS=1 cargo test -p idstream-domain schema`; \
             otherwise add a new event version"
        );
    }
}
