//! The metadata lakescore writes into every Delta commit it makes, so `lakescore history`
//! and `lakescore lineage` can answer "what made this version".
//!
//! Keys live under `lakescore.` in the commit info: the run id, the inputs the commit was
//! computed from (tables with versions, or extract files with fingerprints), and anything
//! else the operation wants to record.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::storage::lakehouse::{Lakehouse, TableName};

/// A key lakescore writes into a commit's info, always under `lakescore.`; the same
/// constant writes a value ([`commit_metadata`]) and reads it back ([`CommitKey::get`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitKey(&'static str);

impl CommitKey {
    /// The key as stored, e.g. `lakescore.run_id`.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The value this key holds in a commit's `info`.
    pub fn get(self, info: &HashMap<String, Value>) -> Option<&Value> {
        info.get(self.0)
    }

    /// The text value this key holds in a commit's `info`.
    pub fn text(self, info: &HashMap<String, Value>) -> Option<String> {
        self.get(info).and_then(Value::as_str).map(String::from)
    }
}

/// The id of the lakescore run that made a commit.
pub const RUN_ID: CommitKey = CommitKey("lakescore.run_id");
/// What a commit was computed from: tables with versions, or files with fingerprints.
pub const INPUTS: CommitKey = CommitKey("lakescore.inputs");
/// The SQL model a transform commit built (its name).
pub const MODEL: CommitKey = CommitKey("lakescore.model");
/// The SQL model's file.
pub const MODEL_FILE: CommitKey = CommitKey("lakescore.model_file");
/// The SHA-256 of the SQL model's text, or of the scoring model's artifact.
pub const MODEL_SHA256: CommitKey = CommitKey("lakescore.model_sha256");
/// The model version a score commit scored with, `name:version`.
pub const SCORED_WITH: CommitKey = CommitKey("lakescore.scored_with");
/// The scoring model's training table, `schema.name@version`.
pub const TRAINING_TABLE: CommitKey = CommitKey("lakescore.training_table");
/// The model whose feedback a commit holds (training set or quarantined corrections).
pub const FEEDBACK_FOR: CommitKey = CommitKey("lakescore.feedback_for");
/// The feedback table version a training set was built from, `schema.name@version`.
pub const FEEDBACK: CommitKey = CommitKey("lakescore.feedback");
/// The correction policy a training set was resolved with.
pub const POLICY: CommitKey = CommitKey("lakescore.policy");
/// The model a monitoring commit (drift, realized metrics, retrain requests) is about.
pub const FOR_MODEL: CommitKey = CommitKey("lakescore.for_model");
/// The job a run-history commit belongs to.
pub const JOB: CommitKey = CommitKey("lakescore.job");
/// The table a data-test commit tested.
pub const TABLE: CommitKey = CommitKey("lakescore.table");
/// The source a landing commit landed.
pub const SOURCE: CommitKey = CommitKey("lakescore.source");
/// The id of a landing batch, shared by its quarantine and data commits.
pub const BATCH: CommitKey = CommitKey("lakescore.batch");
/// How a SQL model's table is materialized.
pub const MATERIALIZED: CommitKey = CommitKey("lakescore.materialized");
/// A SQL model's description.
pub const DESCRIPTION: CommitKey = CommitKey("lakescore.description");
/// A SQL model's column descriptions.
pub const COLUMN_DESCRIPTIONS: CommitKey = CommitKey("lakescore.column_descriptions");
/// Rows a commit added.
pub const ROWS: CommitKey = CommitKey("lakescore.rows");
/// Rows a landing quarantined.
pub const QUARANTINED: CommitKey = CommitKey("lakescore.quarantined");
/// Columns a landing added to its table.
pub const NEW_COLUMNS: CommitKey = CommitKey("lakescore.new_columns");
/// Audit entries an audit commit holds.
pub const ENTRIES: CommitKey = CommitKey("lakescore.entries");
/// Prefix of every commit-info key lakescore writes.
pub const PREFIX: &str = "lakescore.";

/// Commit metadata: run id, inputs, and the extra keys the operation records.
pub fn commit_metadata(
    run_id: &str,
    inputs: Value,
    extras: impl IntoIterator<Item = (CommitKey, Value)>,
) -> HashMap<String, Value> {
    let mut metadata = HashMap::from([
        (RUN_ID.0.to_string(), Value::String(run_id.to_string())),
        (INPUTS.0.to_string(), inputs),
    ]);
    for (key, value) in extras {
        metadata.insert(key.0.to_string(), value);
    }
    metadata
}

/// The info of the newest commit of `name`, or None when the table does not exist (or has
/// no commit yet): what "was this already built from these inputs?" reads, without the
/// table's whole history.
pub async fn last_commit_info(
    lakehouse: &Lakehouse,
    name: &TableName,
) -> Result<Option<HashMap<String, Value>>> {
    let Some(table) = lakehouse.open_if_exists(name).await? else {
        return Ok(None);
    };
    let mut last: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .map_err(|source| Error::Delta {
            uri: table.table_url().to_string(),
            source,
        })?;
    Ok(last.pop().map(|commit| commit.info))
}

/// True when every `(key, value)` is recorded in `info`.
pub fn records(info: &HashMap<String, Value>, expected: &[(CommitKey, &Value)]) -> bool {
    expected
        .iter()
        .all(|(key, value)| key.get(info) == Some(*value))
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
        let metadata = commit_metadata("r1", Value::Array(vec![]), [(ROWS, Value::from(3))]);
        assert_eq!(metadata[RUN_ID.as_str()], "r1");
        assert_eq!(metadata["lakescore.rows"], 3);
        assert_eq!(metadata.len(), 3);
        assert_ne!(new_run_id(), new_run_id());
    }
}
