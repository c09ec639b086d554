//! Drift results as tables: every metric of every column in `monitoring.drift_metrics`,
//! and a triggered retrain in `monitoring.retrain_requests`, so drift history is SQL.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::json;

use super::compare::ColumnDrift;
use super::run::DriftReport;
use crate::error::Result;
use crate::ml::models::registry::Manifest;
use crate::ml::retrain_requests::{RetrainRequest, raise};
use crate::storage::commit::{FOR_MODEL, commit_metadata};
use crate::storage::lakehouse::{Lakehouse, TableName};
use crate::storage::system_tables::DRIFT_METRICS;
use crate::storage::write::{WriteMode, write_batch};

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

/// Appends one row per column and metric to `monitoring.drift_metrics`.
pub async fn record_metrics(
    lakehouse: &Lakehouse,
    manifest: &Manifest,
    report: &DriftReport,
    current: (&TableName, u64),
) -> Result<()> {
    let columns: Vec<&ColumnDrift> = report.features.iter().chain(&report.prediction).collect();
    let rows: Vec<(&ColumnDrift, &super::compare::MetricValue)> = columns
        .iter()
        .flat_map(|c| c.metrics.iter().map(move |m| (*c, m)))
        .collect();
    let n = rows.len();
    let same = |value: String| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
    let same_int = |value: i64| Arc::new(Int64Array::from(vec![value; n])) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        text("model"),
        Field::new("model_version", DataType::Int64, false),
        text("column_name"),
        text("data_type"),
        text("metric"),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("drifted", DataType::Boolean, false),
        Field::new("column_drifted", DataType::Boolean, false),
        text("baseline_table"),
        Field::new("baseline_version", DataType::Int64, false),
        text("current_table"),
        Field::new("current_version", DataType::Int64, false),
        text("current_rows_selected"),
        Field::new("baseline_rows", DataType::Int64, false),
        Field::new("current_rows", DataType::Int64, false),
        text("run_id"),
        timestamp("computed_at"),
    ]));
    let columns: Vec<ArrayRef> = vec![
        same(manifest.name.clone()),
        same_int(manifest.version as i64),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(c, _)| c.column.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(c, _)| c.data_type),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, m)| m.metric),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter()
                .map(|(_, m)| m.value.is_finite().then_some(m.value)),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|(_, m)| m.threshold),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(_, m)| Some(m.drifted)),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|(c, _)| Some(c.drifted)),
        )),
        same(report.baseline.0.to_string()),
        same_int(report.baseline.1 as i64),
        same(current.0.to_string()),
        same_int(current.1 as i64),
        same(report.current.clone()),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(c, _)| c.baseline_rows as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(c, _)| c.current_rows as i64),
        )),
        same(report.run_id.clone()),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); n])
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema, columns)?;
    let inputs = json!([
        {"table": report.baseline.0.to_string(), "version": report.baseline.1},
        {"table": current.0.to_string(), "version": current.1},
    ]);
    let metadata = commit_metadata(&report.run_id, inputs, [(FOR_MODEL, json!(report.model))]);
    write_batch(
        lakehouse,
        &TableName::parse(DRIFT_METRICS)?,
        batch,
        WriteMode::Append,
        metadata,
    )
    .await?;
    Ok(())
}

/// Raises a pending retrain request for the model version: the drifted metrics are its
/// evidence, the drift run its id.
pub async fn request_retrain(
    lakehouse: &Arc<Lakehouse>,
    manifest: &Manifest,
    report: &DriftReport,
    reason: &str,
) -> Result<()> {
    let drifted: Vec<serde_json::Value> = report
        .features
        .iter()
        .chain(&report.prediction)
        .flat_map(|c| {
            c.metrics
                .iter()
                .filter(|m| m.drifted)
                .map(move |m| json!({"column": c.column, "metric": m.metric, "value": m.value, "threshold": m.threshold}))
        })
        .collect();
    let request = RetrainRequest {
        request_id: format!("drift-{}", report.run_id),
        model: manifest.name.clone(),
        model_version: manifest.version,
        reason: reason.to_string(),
        metrics: serde_json::Value::Array(drifted),
        run_id: report.run_id.clone(),
    };
    raise(lakehouse, &request).await?;
    Ok(())
}
