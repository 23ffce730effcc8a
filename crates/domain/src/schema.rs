//! JSON Schemas of the envelope and of every event (type, version), generated from the Rust types.
//!
//! The checked-in copies live in `schemas/` at the repository root. The test below fails when a
//! type changes without its schema; `UPDATE_SCHEMAS=1 cargo test -p idstream-domain schema`
//! rewrites them (and a published version must then be left alone: add a new version instead).

use schemars::{Schema, schema_for};

use crate::envelope::EventEnvelope;
use crate::events::{CATALOGUE, EARLIER_VERSIONS, schema_of};

/// Objects with their keys in sorted order, whatever `serde_json`'s map type: a dependency may
/// turn on its `preserve_order` feature (cedar-policy does, in the benchmarks), which would
/// otherwise change the text of every schema.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn pretty(schema: Schema) -> String {
    let value = sorted(serde_json::to_value(&schema).expect("schemas serialise"));
    let mut text = serde_json::to_string_pretty(&value).expect("schemas serialise");
    text.push('\n');
    text
}

/// (file name, schema text) for the envelope and every catalogued event version, current and
/// earlier (earlier versions are still in logs, so their schemas stay published and unchanged).
pub fn all() -> Vec<(String, String)> {
    let mut out = vec![(
        "envelope.v1.json".to_owned(),
        pretty(schema_for!(EventEnvelope)),
    )];
    let versions = CATALOGUE
        .iter()
        .map(|(name, version, _)| (*name, *version))
        .chain(EARLIER_VERSIONS.iter().copied());
    for (name, version) in versions {
        let schema = schema_of(name, version).expect("every catalogued event has a schema");
        out.push((format!("{name}.v{version}.json"), pretty(schema)));
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
