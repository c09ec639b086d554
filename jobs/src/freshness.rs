//! Freshness: whether tables are as recent as `[freshness]` says they must be.
//!
//! A rule applies to a table name or a pattern (`raw.*`); the first rule matching a table
//! is its rule. `max_age` bounds the age of the table's newest commit: an extract that
//! stops arriving leaves its raw table's last commit behind. `max_input_lag` bounds how
//! long a table may lag behind a newer version of a table it was computed from (read from
//! its last commit's lineage): a scored table that was not refreshed after its input
//! changed. A stale table's finding names the table, how old it is, and the job run that
//! last wrote it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lakescore_engine::config::FreshnessRule;
use lakescore_engine::datafusion::arrow::array::{Array, AsArray};
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::run::{DataMoved, Report};
use lakescore_engine::storage::inspect::{HistoryEntry, table_history};
use lakescore_engine::storage::lakehouse::quote_literal;
use lakescore_engine::storage::system_tables::JOB_RUNS;
use lakescore_engine::{Lakehouse, Project, SqlSession, TableName};
use serde_json::Value;

use crate::error::{Error, Result};

/// The freshness of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// The table.
    pub table: String,
    /// The rule's key in `[freshness.tables]`.
    pub rule: String,
    /// Its newest version (None when the table does not exist).
    pub version: Option<u64>,
    /// When that version was committed.
    pub last_commit: Option<DateTime<Utc>>,
    /// Why the table is stale, with who last wrote it; None when fresh.
    pub problem: Option<String>,
}

impl Freshness {
    /// True when the table breaks its rule.
    pub fn is_stale(&self) -> bool {
        self.problem.is_some()
    }
}

/// Checks the `[freshness]` rules at `now`: of every table with a rule, or of `only` when
/// given (each must be covered by a rule).
pub async fn check_freshness(
    project: &Project,
    lakehouse: &Arc<Lakehouse>,
    only: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<Freshness>> {
    let rules = &project.config.freshness.tables;
    let existing: Vec<String> = lakehouse
        .list_tables()
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut targets: Vec<(String, &str, FreshnessRule)> = Vec::new();
    let rule_for = |table: &str| {
        rules
            .iter()
            .find(|(pattern, _)| glob::Pattern::new(pattern).is_ok_and(|p| p.matches(table)))
    };
    if only.is_empty() {
        for (pattern, rule) in rules {
            let matching: Vec<&String> = existing
                .iter()
                .filter(|t| rule_for(t).is_some_and(|(p, _)| p == pattern))
                .collect();
            if matching.is_empty() && !pattern.contains(['*', '?', '[']) {
                targets.push((pattern.clone(), pattern, *rule));
            }
            targets.extend(
                matching
                    .into_iter()
                    .map(|t| (t.clone(), pattern.as_str(), *rule)),
            );
        }
    } else {
        for table in only {
            let name = TableName::parse(table)?.to_string();
            let (pattern, rule) = rule_for(&name).ok_or_else(|| {
                lakescore_engine::Error::Usage(format!(
                    "no [freshness.tables] rule covers {name}: add e.g. \"{name}\" = {{ max_age = \"26h\" }}"
                ))
            })?;
            targets.push((name, pattern, *rule));
        }
    }
    let mut results = Vec::with_capacity(targets.len());
    for (table, pattern, rule) in targets {
        let mut freshness = check_table(lakehouse, &table, rule, now).await?;
        freshness.rule = pattern.to_string();
        results.push(freshness);
    }
    Ok(results)
}

/// The freshness of the tables a `check` step looked at, as a job step reports it.
pub struct FreshnessReport(pub Vec<Freshness>);

impl Report for FreshnessReport {
    fn data_moved(&self) -> DataMoved {
        DataMoved {
            tables_read: self
                .0
                .iter()
                .filter_map(|f| f.version.map(|v| format!("{}@{v}", f.table)))
                .collect(),
            ..DataMoved::default()
        }
    }

    fn summary(&self) -> String {
        format!("{} tables fresh", self.0.len())
    }
}

/// One line per table: fresh at its version, or why it is stale.
impl std::fmt::Display for FreshnessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|table| match (&table.problem, table.version) {
                (Some(problem), _) => format!("{}: {problem}", table.table),
                (None, Some(version)) => format!("{}@{version}: fresh", table.table),
                (None, None) => format!("{}: fresh", table.table),
            })
            .collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// Fails with [`Error::Stale`] when any of `results` is stale.
pub fn stale_error(results: &[Freshness]) -> Option<Error> {
    let stale: Vec<String> = results
        .iter()
        .filter_map(|f| f.problem.as_ref().map(|p| format!("  {}: {p}", f.table)))
        .collect();
    (!stale.is_empty()).then_some(Error::Stale { stale })
}

async fn check_table(
    lakehouse: &Arc<Lakehouse>,
    table: &str,
    rule: FreshnessRule,
    now: DateTime<Utc>,
) -> Result<Freshness> {
    let name = TableName::parse(table)?;
    let mut freshness = Freshness {
        table: table.to_string(),
        rule: String::new(),
        version: None,
        last_commit: None,
        problem: None,
    };
    let newest = match table_history(lakehouse, &name, Some(1)).await {
        Ok(mut entries) if !entries.is_empty() => entries.remove(0),
        Ok(_) | Err(lakescore_engine::Error::UnknownTable { .. }) => {
            freshness.problem = Some(String::from(
                "does not exist: nothing has written it yet (has its source or job ever run?)",
            ));
            return Ok(freshness);
        }
        Err(other) => return Err(other.into()),
    };
    freshness.version = Some(newest.version);
    freshness.last_commit = newest.committed_at;
    let mut problems = Vec::new();
    if let (Some(max_age), Some(committed)) = (rule.max_age, newest.committed_at) {
        let age = elapsed(committed, now);
        if age > max_age {
            problems.push(format!(
                "last commit {} ago (version {} at {}), but max_age is {}",
                human_duration(age),
                newest.version,
                committed.format("%Y-%m-%d %H:%M:%S UTC"),
                human_duration(max_age)
            ));
        }
    }
    if let Some(max_lag) = rule.max_input_lag {
        problems.extend(input_lags(lakehouse, &newest, max_lag, now).await?);
    }
    if !problems.is_empty() {
        let writer = last_writer(lakehouse, newest.run_id.as_deref()).await;
        freshness.problem = Some(format!("{}; {writer}", problems.join("; ")));
    }
    Ok(freshness)
}

/// The inputs of `newest` that have had a newer version for longer than `max_lag`.
async fn input_lags(
    lakehouse: &Lakehouse,
    newest: &HistoryEntry,
    max_lag: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let inputs: Vec<Value> = newest
        .inputs
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for input in inputs {
        let (Some(table), Some(read)) = (
            input.get("table").and_then(Value::as_str),
            input.get("version").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let input_name = TableName::parse(table)?;
        let Some(latest) = lakehouse.latest_version_if_exists(&input_name).await? else {
            continue;
        };
        if latest <= read {
            continue;
        }
        let newer = table_history(lakehouse, &input_name, Some((latest - read) as usize)).await?;
        let Some(first_newer) = newer
            .iter()
            .find(|e| e.version == read + 1)
            .and_then(|e| e.committed_at)
        else {
            continue;
        };
        let lag = elapsed(first_newer, now);
        if lag > max_lag {
            problems.push(format!(
                "computed from {table}@{read}, but {table} has had version {} for {} (now at version {latest}), more than max_input_lag {}",
                read + 1,
                human_duration(lag),
                human_duration(max_lag)
            ));
        }
    }
    Ok(problems)
}

/// Who made a table's newest commit: the job and run, as far as run history knows.
async fn last_writer(lakehouse: &Arc<Lakehouse>, run_id: Option<&str>) -> String {
    let Some(run_id) = run_id else {
        return String::from("its last commit was not made by lakescore");
    };
    match job_of_run(lakehouse, run_id).await {
        Some(job) => format!("last written by job '{job}' (run {run_id})"),
        None => format!("last written by run {run_id}, outside any job"),
    }
}

/// The job that ran `run_id`, from `ops.job_runs` (None when unknown).
pub async fn job_of_run(lakehouse: &Arc<Lakehouse>, run_id: &str) -> Option<String> {
    let session = SqlSession::builder(lakehouse.clone()).build().await.ok()?;
    let sql = format!(
        "select job from {JOB_RUNS} where run_id = {} limit 1",
        quote_literal(run_id)
    );
    let batches = session.sql(&sql).await.ok()?.collect().await.ok()?;
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let jobs = cast(batch.column(0), &DataType::Utf8).ok()?;
    let jobs = jobs.as_string_opt::<i32>()?;
    (!jobs.is_null(0)).then(|| jobs.value(0).to_string())
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

/// A duration the way people say it: `2d 3h`, `5h 10m`, `4m 30s`, `12s`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) if secs == 0 => format!("{minutes}m"),
        (0, 0, _) => format!("{minutes}m {secs}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_speech() {
        let text = |s: u64| human_duration(Duration::from_secs(s));
        assert_eq!(text(12), "12s");
        assert_eq!(text(270), "4m 30s");
        assert_eq!(text(600), "10m");
        assert_eq!(text(26 * 3600), "1d 2h");
        assert_eq!(text(5 * 3600 + 600), "5h 10m");
        assert_eq!(text(3 * 3600), "3h");
        assert_eq!(text(2 * 86_400 + 59), "2d");
    }
}
