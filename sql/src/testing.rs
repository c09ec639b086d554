//! Running data tests against a relation, and recording every result in
//! `ops.test_results`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lakescore_engine::TableName;
use lakescore_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use lakescore_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use lakescore_engine::datafusion::arrow::json::LineDelimitedWriter;
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::sql::functions::FunctionWarning;
use lakescore_engine::storage::commit::{MODEL, TABLE, commit_metadata};
use lakescore_engine::storage::system_tables::{TEST_RESULTS, system_table};
use lakescore_engine::storage::write::{WriteMode, write_batch};
use lakescore_engine::{Error as EngineError, Lakehouse};
use serde_json::json;

use crate::data_test::{DataTest, Severity};
use crate::error::Result;

/// How many failing rows a result keeps as examples.
pub const EXAMPLE_ROWS: usize = 5;

/// The table every data test result is appended to.
pub fn test_results_table() -> TableName {
    system_table(TEST_RESULTS)
}

/// The result of one data test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// Its kind (`unique`, `not_null`, ...).
    pub kind: &'static str,
    /// How a failure is treated.
    pub severity: Severity,
    /// Rows that fail it (for `unique`: rows sharing a duplicated value).
    pub failing_rows: u64,
    /// Up to [`EXAMPLE_ROWS`] failing rows, as JSON objects.
    pub examples: Vec<String>,
    /// The query that finds the failing rows.
    pub query: String,
    /// How long it ran.
    pub duration: Duration,
}

impl TestOutcome {
    /// True when no row fails.
    pub fn passed(&self) -> bool {
        self.failing_rows == 0
    }

    /// `passed`, `failed` (severity error) or `warned` (severity warn).
    pub fn status(&self) -> &'static str {
        match (self.passed(), self.severity) {
            (true, _) => "passed",
            (false, Severity::Error) => "failed",
            (false, Severity::Warn) => "warned",
        }
    }

    /// True when the failure stops the model from being committed.
    pub fn blocks_commit(&self) -> bool {
        !self.passed() && self.severity == Severity::Error
    }
}

/// Runs `test` against `relation` (a name `ctx` resolves).
pub async fn run_test(
    ctx: &SessionContext,
    test: &DataTest,
    relation: &str,
) -> Result<TestOutcome> {
    let started = Instant::now();
    let failing = test.check.failing_rows_sql(relation);
    let counted = ctx
        .sql(&test.check.count_sql(&failing))
        .await?
        .collect()
        .await?;
    let failing_rows = counted
        .first()
        .filter(|batch| batch.num_rows() > 0)
        .and_then(|batch| {
            let column = batch.column(0);
            column
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|counts| counts.value(0))
        })
        .unwrap_or(0) as u64;
    let examples = if failing_rows == 0 {
        Vec::new()
    } else {
        let rows = ctx
            .sql(&format!("{failing} LIMIT {EXAMPLE_ROWS}"))
            .await?
            .collect()
            .await?;
        json_rows(&rows)?
    };
    Ok(TestOutcome {
        name: test.name.clone(),
        kind: test.check.kind(),
        severity: test.severity,
        failing_rows,
        examples,
        query: failing,
        duration: started.elapsed(),
    })
}

/// Each row as one JSON object.
fn json_rows(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut buffer = Vec::new();
    let mut writer = LineDelimitedWriter::new(&mut buffer);
    for batch in batches {
        writer.write(batch).map_err(EngineError::from)?;
    }
    writer.finish().map_err(EngineError::from)?;
    Ok(String::from_utf8_lossy(&buffer)
        .lines()
        .map(str::to_string)
        .collect())
}

/// What a test run is recorded with.
pub struct TestRun<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The model tested.
    pub model: &'a str,
    /// Its table.
    pub table: &'a TableName,
    /// When the tests ran.
    pub tested_at: DateTime<Utc>,
}

/// Appends the outcomes and the model's function warnings to `ops.test_results` in one
/// commit (nothing is written when there is neither).
pub async fn record_results(
    lakehouse: &Lakehouse,
    run: &TestRun<'_>,
    outcomes: &[TestOutcome],
    warnings: &[FunctionWarning],
) -> Result<()> {
    if outcomes.is_empty() && warnings.is_empty() {
        return Ok(());
    }
    let rows = outcomes.len() + warnings.len();
    let repeat = |value: &str| Arc::new(StringArray::from(vec![value; rows])) as ArrayRef;
    let texts = |outcome: fn(&TestOutcome) -> String, warning: fn(&FunctionWarning) -> String| {
        Arc::new(StringArray::from_iter_values(
            outcomes
                .iter()
                .map(outcome)
                .chain(warnings.iter().map(warning)),
        )) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        repeat(run.run_id),
        repeat(run.model),
        repeat(&run.table.to_string()),
        texts(|o| o.name.clone(), |w| w.function.to_string()),
        texts(|o| o.kind.to_string(), |_| String::from("function_warning")),
        texts(
            |o| o.severity.as_str().to_string(),
            |_| String::from("warn"),
        ),
        texts(|o| o.status().to_string(), |_| String::from("warned")),
        Arc::new(Int64Array::from_iter_values(
            outcomes
                .iter()
                .map(|o| o.failing_rows as i64)
                .chain(warnings.iter().map(|w| w.count as i64)),
        )),
        texts(
            |o| format!("[{}]", o.examples.join(",")),
            |w| json!([w.example]).to_string(),
        ),
        texts(|o| o.query.clone(), |_| String::new()),
        Arc::new(
            TimestampMicrosecondArray::from(vec![run.tested_at.timestamp_micros(); rows])
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(
            outcomes
                .iter()
                .map(|o| o.duration.as_millis() as i64)
                .chain(warnings.iter().map(|_| 0)),
        )),
    ];
    let batch = RecordBatch::try_new(results_schema(), columns).map_err(EngineError::from)?;
    let metadata = commit_metadata(
        run.run_id,
        json!([]),
        [
            (MODEL, json!(run.model)),
            (TABLE, json!(run.table.to_string())),
        ],
    );
    write_batch(
        lakehouse,
        &test_results_table(),
        batch,
        WriteMode::Append,
        metadata,
    )
    .await?;
    Ok(())
}

fn results_schema() -> Arc<Schema> {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("run_id"),
        text("model"),
        text("table_name"),
        text("test"),
        text("kind"),
        text("severity"),
        text("status"),
        Field::new("failing_rows", DataType::Int64, false),
        text("examples"),
        text("query"),
        Field::new(
            "tested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("duration_ms", DataType::Int64, false),
    ]))
}
