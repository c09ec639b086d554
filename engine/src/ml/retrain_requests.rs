//! `monitoring.retrain_requests`: why a model should be retrained. Drift and realized
//! metrics below their floor raise `pending` rows; `lakescore retrain` resolves the rows
//! pending when it started, marking them `done` with its outcome in one commit.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::kernel::transaction::CommitProperties;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::sql::session::SqlSession;
use crate::storage::commit::{FOR_MODEL, commit_metadata};
use crate::storage::lakehouse::{Lakehouse, TableName, TableVersion, quote_literal};
use crate::storage::quarantine::timestamp_type;
use crate::storage::system_tables::{RETRAIN_REQUESTS, system_table};
use crate::storage::write::{WriteMode, write_batch};

/// A request to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainRequest {
    /// Unique per cause: raising an id that exists already adds nothing.
    pub request_id: String,
    /// The model.
    pub model: String,
    /// The version whose data or results prompted it.
    pub model_version: u64,
    /// Why, in a sentence.
    pub reason: String,
    /// The evidence (drifted metrics, breached floors) as JSON.
    pub metrics: Value,
    /// The run that raised it.
    pub run_id: String,
}

fn table_name() -> TableName {
    system_table(RETRAIN_REQUESTS)
}

async fn exists(lakehouse: &Lakehouse) -> Result<bool> {
    Ok(lakehouse
        .latest_version_if_exists(&table_name())
        .await?
        .is_some())
}

/// Request ids in `monitoring.retrain_requests` matching `condition` (SQL).
async fn request_ids(lakehouse: &Arc<Lakehouse>, condition: &str) -> Result<Vec<String>> {
    if !exists(lakehouse).await? {
        return Ok(Vec::new());
    }
    let session = SqlSession::builder(lakehouse.clone()).build().await?;
    let batches = session
        .sql(&format!(
            "SELECT request_id FROM {} WHERE {condition} ORDER BY requested_at",
            table_name().quoted()
        ))
        .await?
        .collect()
        .await?;
    let mut ids = Vec::new();
    for batch in batches {
        let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        if let Some(texts) = column.as_any().downcast_ref::<StringArray>() {
            ids.extend(
                (0..texts.len())
                    .filter(|i| texts.is_valid(*i))
                    .map(|i| texts.value(i).to_string()),
            );
        }
    }
    Ok(ids)
}

/// The ids of `model`'s pending requests, oldest first.
pub async fn pending(lakehouse: &Arc<Lakehouse>, model: &str) -> Result<Vec<String>> {
    request_ids(
        lakehouse,
        &format!("model = {} AND status = 'pending'", quote_literal(model)),
    )
    .await
}

/// Appends `request` as `pending`; returns false (and writes nothing) when a request
/// with its id exists already.
pub async fn raise(lakehouse: &Arc<Lakehouse>, request: &RetrainRequest) -> Result<bool> {
    let known = request_ids(
        lakehouse,
        &format!("request_id = {}", quote_literal(&request.request_id)),
    )
    .await?;
    if !known.is_empty() {
        return Ok(false);
    }
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let schema = Arc::new(Schema::new(vec![
        text("request_id", true),
        text("model", true),
        Field::new("model_version", DataType::Int64, false),
        text("reason", true),
        text("metrics", true),
        text("status", true),
        Field::new("requested_at", timestamp_type(), false),
        text("run_id", true),
        Field::new("resolved_at", timestamp_type(), true),
        text("resolved_by", true),
        text("outcome", true),
    ]));
    let one = |value: &str| Arc::new(StringArray::from(vec![value])) as ArrayRef;
    let none = || Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        one(&request.request_id),
        one(&request.model),
        Arc::new(Int64Array::from(vec![request.model_version as i64])),
        one(&request.reason),
        one(&request.metrics.to_string()),
        one("pending"),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros()])
                .with_timezone("UTC"),
        ),
        one(&request.run_id),
        Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>]).with_timezone("UTC")),
        none(),
        none(),
    ];
    let batch = RecordBatch::try_new(schema, columns)?;
    let metadata = commit_metadata(
        &request.run_id,
        json!([]),
        [(FOR_MODEL, json!(request.model))],
    );
    write_batch(lakehouse, &table_name(), batch, WriteMode::Append, metadata).await?;
    Ok(true)
}

/// Marks the requests `ids` of `model` `done` with `outcome`, in one commit made by run
/// `run_id`. Requests raised since the ids were read stay pending.
pub async fn resolve(
    lakehouse: &Lakehouse,
    model: &str,
    ids: &[String],
    outcome: &str,
    run_id: &str,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let table = lakehouse
        .open_table(&table_name(), TableVersion::Latest)
        .await?;
    let uri = table.table_url().to_string();
    let predicate = col("model")
        .eq(lit(model))
        .and(col("status").eq(lit("pending")))
        .and(col("request_id").in_list(ids.iter().map(|id| lit(id.as_str())).collect(), false));
    let now =
        ScalarValue::TimestampMicrosecond(Some(Utc::now().timestamp_micros()), Some("UTC".into()));
    let metadata = commit_metadata(run_id, json!([]), [(FOR_MODEL, json!(model))]);
    table
        .update()
        .with_predicate(predicate)
        .with_update("status", lit("done"))
        .with_update("resolved_at", lit(now))
        .with_update("resolved_by", lit(run_id))
        .with_update("outcome", lit(outcome))
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await
        .map_err(|source| Error::Delta { uri, source })?;
    Ok(())
}
