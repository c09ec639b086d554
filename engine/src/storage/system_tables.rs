//! The tables lakescore itself writes, named once: run history, data-test results, model
//! versions, the server's audit log, monitoring, and the per-model tables (`scored.<model>`,
//! `training.<model>_feedback`). Quarantine tables are named by
//! [`crate::storage::quarantine::quarantine_table`].

use crate::storage::lakehouse::TableName;

/// Job runs, one row per run (`lakescore runs`).
pub const JOB_RUNS: &str = "ops.job_runs";
/// Step attempts of job runs.
pub const STEP_RUNS: &str = "ops.step_runs";
/// Data-test results of every transform.
pub const TEST_RESULTS: &str = "ops.test_results";
/// Every registered model version with its metrics and aliases.
pub const MODEL_VERSIONS: &str = "ops.model_versions";
/// The statements `lakescore serve` ran, with who ran them.
pub const QUERY_LOG: &str = "ops.query_log";
/// The requests `lakescore serve`'s HTTP API answered, with who sent them.
pub const REQUEST_LOG: &str = "ops.request_log";
/// Drift metrics per feature and run.
pub const DRIFT_METRICS: &str = "monitoring.drift_metrics";
/// Realized metrics per model version and window.
pub const MODEL_PERFORMANCE: &str = "monitoring.model_performance";
/// Why models should be retrained, and what came of it.
pub const RETRAIN_REQUESTS: &str = "monitoring.retrain_requests";

/// The table of one of the constants above.
pub fn system_table(name: &'static str) -> TableName {
    let (schema, table) = name.split_once('.').unwrap_or(("ops", name));
    TableName {
        schema: schema.to_string(),
        name: table.to_string(),
    }
}

/// Where `lakescore score MODEL` writes by default: `scored.<model>`.
pub fn scored_table(model: &str) -> String {
    format!("scored.{model}")
}

/// The table model `model`'s online predictions (`lakescore serve`'s HTTP API) are kept
/// in: `scored.<model>_online`.
pub fn online_table(model: &str) -> TableName {
    TableName {
        schema: String::from("scored"),
        name: format!("{model}_online"),
    }
}

/// The online table's column holding the features each prediction was scored with (a
/// struct of one field per feature the serving model version read).
pub const ONLINE_FEATURES: &str = "features";

/// The feedback training set of model `model`: `training.<model>_feedback`.
pub fn feedback_training_table(model: &str) -> TableName {
    TableName {
        schema: String::from("training"),
        name: format!("{model}_feedback"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_table_name_parses_as_itself() {
        for name in [
            JOB_RUNS,
            STEP_RUNS,
            TEST_RESULTS,
            MODEL_VERSIONS,
            QUERY_LOG,
            DRIFT_METRICS,
            MODEL_PERFORMANCE,
            RETRAIN_REQUESTS,
        ] {
            assert_eq!(Some(system_table(name)), TableName::parse(name).ok());
        }
        assert_eq!(
            feedback_training_table("churn").to_string(),
            "training.churn_feedback"
        );
        assert_eq!(scored_table("churn"), "scored.churn");
    }
}
