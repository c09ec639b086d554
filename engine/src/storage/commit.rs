//! The metadata lakescore writes into every Delta commit it makes, so `lakescore history`
//! and `lakescore lineage` can answer "what made this version".
//!
//! Keys live under `lakescore.` in the commit info: the run id, the inputs the commit was
//! computed from (tables with versions, or extract files with fingerprints), and anything
//! else the operation wants to record.

use std::collections::HashMap;

use serde_json::Value;

/// Commit-info key holding the id of the lakescore run that made a commit.
pub const RUN_ID: &str = "lakescore.run_id";
/// Commit-info key holding what a commit was computed from.
pub const INPUTS: &str = "lakescore.inputs";
/// Prefix of every commit-info key lakescore writes.
pub const PREFIX: &str = "lakescore.";

/// Commit metadata: run id, inputs, and named extras (stored as `lakescore.<name>`).
pub fn commit_metadata(
    run_id: &str,
    inputs: Value,
    extras: impl IntoIterator<Item = (&'static str, Value)>,
) -> HashMap<String, Value> {
    let mut metadata = HashMap::from([
        (RUN_ID.to_string(), Value::String(run_id.to_string())),
        (INPUTS.to_string(), inputs),
    ]);
    for (name, value) in extras {
        metadata.insert(format!("{PREFIX}{name}"), value);
    }
    metadata
}

/// A new run id: time-ordered, unique.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keys_are_namespaced() {
        let metadata = commit_metadata("r1", Value::Array(vec![]), [("rows", Value::from(3))]);
        assert_eq!(metadata[RUN_ID], "r1");
        assert_eq!(metadata["lakescore.rows"], 3);
        assert_eq!(metadata.len(), 3);
        assert_ne!(new_run_id(), new_run_id());
    }
}
