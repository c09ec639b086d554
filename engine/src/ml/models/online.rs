//! Scoring rows that arrive as JSON, a request at a time (`lakescore serve`'s HTTP API).
//!
//! Each row's values are read under the model's feature kinds, strictly: a field the
//! model does not know, or a value of the wrong JSON type, is a problem naming the row
//! and field (every problem of a request is reported at once). The rows are then scored
//! by the same code as `predict` ([`score_rows`]), so a row gives the same prediction,
//! probabilities and contributions, bit for bit, as when a table holding it is scored.
//! The result is one batch in the layout of the model's online table (see
//! [`online_table`](crate::storage::system_tables::online_table)): the prediction, the row's key and feature values, and lineage.
//!
//! An online prediction's id is the first 128 bits of the SHA-256 of
//! `model|version|online|request id|row number` in hex: unique per request row, so
//! feedback can name it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::error::DataFusionError;
use serde::Serialize;
use serde_json::Value;

use super::dataset::Converted;
use super::features::RawColumn;
use super::predict::score_rows;
use super::registry::LoadedModel;
use crate::config::FeatureKind;
use crate::storage::hashing::sha256_hex;
use crate::storage::quarantine::timestamp_type;
use crate::storage::system_tables::ONLINE_FEATURES;

/// What `source_table` says of an online prediction.
pub const ONLINE_SOURCE: &str = "online";

/// Most problems one rejection lists; a request with more says how many there were.
const PROBLEMS_LISTED: usize = 20;

/// One thing wrong with a request's rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowProblem {
    /// The row, from 0.
    pub row: usize,
    /// The field, when the problem is one field's.
    pub field: Option<String>,
    /// What is wrong and what to send instead.
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "row {}, field '{field}': {}", self.row, self.message),
            None => write!(f, "row {}: {}", self.row, self.message),
        }
    }
}

/// Why rows were not scored.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The rows themselves are wrong (the client's to fix).
    #[error("{}", listed(.problems, *.total))]
    Rows {
        /// The first problems found.
        problems: Vec<RowProblem>,
        /// How many there were.
        total: usize,
    },
    /// Scoring failed (lakescore's to fix).
    #[error("scoring failed: {0}")]
    Scoring(#[from] DataFusionError),
}

fn listed(problems: &[RowProblem], total: usize) -> String {
    let mut text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if total > problems.len() {
        text.push_str(&format!("; and {} more", total - problems.len()));
    }
    text
}

/// Who asked and when, for the lineage of a request's predictions.
#[derive(Debug, Clone)]
pub struct OnlineRequest {
    /// The request's id (the `run_id` of its rows).
    pub request_id: String,
    /// The client (its token's name).
    pub client: String,
    /// When it was scored.
    pub scored_at: DateTime<Utc>,
    /// How many features each explanation names.
    pub top_features: usize,
    /// The table version the rows' features were read from, when they were looked up by
    /// key (else the rows came in the request, and `source_table` says `online`).
    pub source: Option<(String, u64)>,
}

/// A request's scored rows.
#[derive(Debug, Clone)]
pub struct OnlineScores {
    /// The rows in the online table's layout.
    pub batch: RecordBatch,
    /// Per row, the features that were missing and what scoring used instead.
    pub imputed: Vec<Vec<Imputed>>,
}

/// A feature a row did not give, and what scoring used instead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imputed {
    /// The feature.
    pub feature: String,
    /// What was used, in words.
    pub with: String,
}

/// A request's rows as the model reads them: one column per feature, in the model's
/// order, and one per key column (as text).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineRows {
    /// How many rows.
    pub rows: usize,
    /// The feature values.
    pub features: Vec<RawColumn>,
    /// The key values.
    pub keys: Vec<Vec<Option<String>>>,
}

/// Scores `rows` with `model`.
pub fn score_online_rows(
    model: &LoadedModel,
    rows: &OnlineRows,
    request: &OnlineRequest,
) -> Result<OnlineScores, OnlineError> {
    let arrays: Vec<Converted> = rows.features.iter().map(Converted::from).collect();
    let columns: Vec<_> = arrays.iter().map(Converted::feature_array).collect();
    let scored = score_rows(model, &columns, rows.rows, request.top_features)?;
    let imputed = imputations(model, &rows.features, rows.rows);
    let batch = online_batch(model, rows, &arrays, scored, request)?;
    Ok(OnlineScores { batch, imputed })
}

/// Reads `rows` (JSON objects of feature and key values) under the model's feature
/// kinds, collecting every problem.
pub fn read_json_rows(model: &LoadedModel, rows: &[Value]) -> Result<OnlineRows, OnlineError> {
    let manifest = &model.manifest;
    let mut features: Vec<RawColumn> = manifest
        .features
        .iter()
        .map(|feature| match feature.kind {
            FeatureKind::Categorical => RawColumn::Texts(Vec::with_capacity(rows.len())),
            _ => RawColumn::Numbers(Vec::with_capacity(rows.len())),
        })
        .collect();
    let mut keys = vec![Vec::with_capacity(rows.len()); manifest.key.len()];
    let mut problems = Problems::default();
    for (row, value) in rows.iter().enumerate() {
        let Some(object) = value.as_object() else {
            problems.add(row, None, || {
                format!(
                    "a row is an object of feature values, not {}",
                    json_type(value)
                )
            });
            continue;
        };
        for field in object.keys() {
            let known =
                manifest.features.iter().any(|f| &f.name == field) || manifest.key.contains(field);
            if !known {
                problems.add(row, Some(field), || {
                    format!("unknown field; {}", expected_fields(model))
                });
            }
        }
        for (feature, column) in manifest.features.iter().zip(&mut features) {
            let value = object.get(&feature.name).unwrap_or(&Value::Null);
            if let Err(message) = read_feature(feature.kind, value, column) {
                problems.add(row, Some(&feature.name), || message);
            }
        }
        for (key, values) in manifest.key.iter().zip(&mut keys) {
            match object.get(key).map_or(Ok(None), scalar_text) {
                Ok(text) => values.push(text),
                Err(message) => problems.add(row, Some(key), || message),
            }
        }
    }
    if problems.total == 0 {
        return Ok(OnlineRows {
            rows: rows.len(),
            features,
            keys,
        });
    }
    Err(OnlineError::Rows {
        problems: problems.listed,
        total: problems.total,
    })
}

/// The problems of a request's rows: the first [`PROBLEMS_LISTED`] with their messages,
/// the rest only counted (a row of a million unknown fields builds twenty messages).
#[derive(Default)]
struct Problems {
    listed: Vec<RowProblem>,
    total: usize,
}

impl Problems {
    fn add(&mut self, row: usize, field: Option<&str>, message: impl FnOnce() -> String) {
        self.total += 1;
        if self.listed.len() < PROBLEMS_LISTED {
            self.listed.push(RowProblem {
                row,
                field: field.map(str::to_string),
                message: message(),
            });
        }
    }
}

/// Appends `value` to `column` as a feature of `kind` reads it, or says why it cannot.
fn read_feature(kind: FeatureKind, value: &Value, column: &mut RawColumn) -> Result<(), String> {
    match (kind, column) {
        (FeatureKind::Numeric, RawColumn::Numbers(values)) => match value {
            Value::Null => values.push(None),
            Value::Number(number) => values.push(number.as_f64()),
            other => {
                return Err(format!(
                    "the feature is numeric: send a number or null, not {}",
                    json_type(other)
                ));
            }
        },
        (FeatureKind::Boolean, RawColumn::Numbers(values)) => match value {
            Value::Null => values.push(None),
            Value::Bool(flag) => values.push(Some(f64::from(u8::from(*flag)))),
            other => {
                return Err(format!(
                    "the feature is boolean: send true, false or null, not {}",
                    json_type(other)
                ));
            }
        },
        (FeatureKind::Categorical, RawColumn::Texts(values)) => {
            let text = scalar_text(value).map_err(|_| {
                format!(
                    "the feature is categorical: send text (or a number or boolean, read as its JSON text) or null, not {}",
                    json_type(value)
                )
            })?;
            values.push(text);
        }
        _ => return Err(String::from("the feature's kind does not match its column")),
    }
    Ok(())
}

/// A scalar as text, as a table's column cast to text writes it: text as it is, numbers
/// and booleans as JSON writes them, null as missing.
fn scalar_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        other => Err(format!(
            "send text, a number or null, not {}",
            json_type(other)
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected_fields(model: &LoadedModel) -> String {
    let manifest = &model.manifest;
    let features: Vec<&str> = manifest.features.iter().map(|f| f.name.as_str()).collect();
    let mut text = format!(
        "model {}:{} reads the features {}",
        manifest.name,
        manifest.version,
        features.join(", ")
    );
    if !manifest.key.is_empty() {
        text.push_str(&format!(" and the key {}", manifest.key.join(", ")));
    }
    text
}

/// Per row, the features it did not give and what the model used instead.
fn imputations(model: &LoadedModel, features: &[RawColumn], rows: usize) -> Vec<Vec<Imputed>> {
    let encoders = &model.artifact.preprocessing.encoders;
    (0..rows)
        .map(|row| {
            encoders
                .iter()
                .zip(features)
                .filter(|(_, column)| match column {
                    RawColumn::Numbers(values) => !values[row].is_some_and(f64::is_finite),
                    RawColumn::Texts(values) => values[row].is_none(),
                })
                .map(|(encoder, _)| Imputed {
                    feature: encoder.name().to_string(),
                    with: encoder.when_missing(),
                })
                .collect()
        })
        .collect()
}

/// The scored rows in the online table's layout: `prediction_id`, the key columns (as
/// text), `prediction`, `probability`, `confidence`, `top_features`, `features` (a struct
/// of the values scored), then the lineage columns of a batch scoring (`source_table` is
/// the feature table and version the rows were looked up in, or `online` with a NULL
/// version for rows sent in the request; `run_id` is the request's id) and `client`.
/// `features` are the values as they were scored.
fn online_batch(
    model: &LoadedModel,
    read: &OnlineRows,
    features: &[Converted],
    scored: ArrayRef,
    request: &OnlineRequest,
) -> Result<RecordBatch, DataFusionError> {
    let manifest = &model.manifest;
    let rows = scored.len();
    let scored = scored
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| DataFusionError::Internal(String::from("predict returned no struct")))?;
    let prefix = format!(
        "{}|{}|{ONLINE_SOURCE}|{}",
        manifest.name, manifest.version, request.request_id
    );
    let ids: StringArray = (0..rows)
        .map(|row| Some(sha256_hex(format!("{prefix}|{row}").as_bytes())[..32].to_string()))
        .collect();
    let mut fields = vec![Field::new("prediction_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids)];
    for (key, values) in manifest.key.iter().zip(&read.keys) {
        fields.push(Field::new(key, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(values.clone())));
    }
    for (field, column) in scored.fields().iter().zip(scored.columns()) {
        fields.push(field.as_ref().clone());
        columns.push(column.clone());
    }
    let features = feature_struct(model, features);
    fields.push(Field::new(
        ONLINE_FEATURES,
        features.data_type().clone(),
        false,
    ));
    columns.push(Arc::new(features));
    let text = |name: &str, value: &str| {
        (
            Field::new(name, DataType::Utf8, true),
            Arc::new(StringArray::from(vec![value; rows])) as ArrayRef,
        )
    };
    let number = |name: &str, value: Option<u64>| {
        (
            Field::new(name, DataType::Int64, true),
            Arc::new(Int64Array::from(vec![value.map(|v| v as i64); rows])) as ArrayRef,
        )
    };
    let scored_at =
        TimestampMicrosecondArray::from(vec![request.scored_at.timestamp_micros(); rows])
            .with_timezone("UTC");
    for (field, column) in [
        text("model_name", &manifest.name),
        number("model_version", Some(manifest.version)),
        text("model_sha256", &manifest.artifact_sha256),
        text("training_table", &manifest.training_table),
        number(
            "training_table_version",
            Some(manifest.training_table_version),
        ),
        text(
            "source_table",
            request
                .source
                .as_ref()
                .map_or(ONLINE_SOURCE, |(table, _)| table),
        ),
        number(
            "source_table_version",
            request.source.as_ref().map(|(_, version)| *version),
        ),
        text("run_id", &request.request_id),
        text("client", &request.client),
        (
            Field::new("scored_at", timestamp_type(), true),
            Arc::new(scored_at) as ArrayRef,
        ),
    ] {
        fields.push(field);
        columns.push(column);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The values scored, one struct field per feature: numbers as sent, booleans as
/// booleans, categories as text.
fn feature_struct(model: &LoadedModel, features: &[Converted]) -> StructArray {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = model
        .manifest
        .features
        .iter()
        .zip(features)
        .map(|(feature, column)| match (feature.kind, column) {
            (FeatureKind::Boolean, Converted::Numbers(values)) => (
                Field::new(&feature.name, DataType::Boolean, true),
                Arc::new(
                    values
                        .iter()
                        .map(|v| v.map(|v| v != 0.0))
                        .collect::<BooleanArray>(),
                ) as ArrayRef,
            ),
            (_, Converted::Numbers(values)) => (
                Field::new(&feature.name, DataType::Float64, true),
                Arc::new(values.clone()) as ArrayRef,
            ),
            (_, Converted::Texts(values)) => (
                Field::new(&feature.name, DataType::Utf8, true),
                Arc::new(values.clone()) as ArrayRef,
            ),
        })
        .unzip();
    StructArray::new(Fields::from(fields), arrays, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_read_strictly_by_feature_kind() {
        let mut numbers = RawColumn::Numbers(Vec::new());
        for value in [
            json!(1.5),
            json!(null),
            json!(-3),
            json!(9007199254740993_u64),
        ] {
            read_feature(FeatureKind::Numeric, &value, &mut numbers).unwrap();
        }
        assert_eq!(
            numbers,
            RawColumn::Numbers(vec![
                Some(1.5),
                None,
                Some(-3.0),
                Some(9007199254740993_u64 as f64)
            ])
        );
        for (value, named) in [
            (json!("12"), "not text"),
            (json!(true), "not a boolean"),
            (json!([1]), "not an array"),
        ] {
            let refused = read_feature(FeatureKind::Numeric, &value, &mut numbers).unwrap_err();
            assert!(
                refused.starts_with("the feature is numeric: send a number or null")
                    && refused.ends_with(named),
                "{refused}"
            );
        }

        let mut flags = RawColumn::Numbers(Vec::new());
        for value in [json!(true), json!(false), json!(null)] {
            read_feature(FeatureKind::Boolean, &value, &mut flags).unwrap();
        }
        assert_eq!(flags, RawColumn::Numbers(vec![Some(1.0), Some(0.0), None]));
        assert!(read_feature(FeatureKind::Boolean, &json!(1), &mut flags).is_err());

        let mut texts = RawColumn::Texts(Vec::new());
        for value in [
            json!("monthly"),
            json!(3),
            json!(2.5),
            json!(false),
            json!(null),
        ] {
            read_feature(FeatureKind::Categorical, &value, &mut texts).unwrap();
        }
        assert_eq!(
            texts,
            RawColumn::Texts(vec![
                Some("monthly".into()),
                Some("3".into()),
                Some("2.5".into()),
                Some("false".into()),
                None
            ])
        );
        let refused =
            read_feature(FeatureKind::Categorical, &json!({"a": 1}), &mut texts).unwrap_err();
        assert!(refused.ends_with("not an object"), "{refused}");
    }

    #[test]
    fn problems_past_the_listed_ones_are_counted_without_building_their_messages() {
        let mut problems = Problems::default();
        for row in 0..100_000 {
            problems.add(row, Some("colour"), || {
                assert!(row < PROBLEMS_LISTED, "message of problem {row} built");
                format!("problem {row}")
            });
        }
        assert_eq!(problems.total, 100_000);
        assert_eq!(problems.listed.len(), PROBLEMS_LISTED);
        assert_eq!(problems.listed[19].message, "problem 19");
    }

    #[test]
    fn a_rejection_lists_its_first_problems_and_counts_the_rest() {
        let problems: Vec<RowProblem> = (0..3)
            .map(|row| RowProblem {
                row,
                field: (row > 0).then(|| String::from("logins")),
                message: String::from("wrong"),
            })
            .collect();
        let error = OnlineError::Rows { problems, total: 5 };
        assert_eq!(
            error.to_string(),
            "row 0: wrong; row 1, field 'logins': wrong; row 2, field 'logins': wrong; and 2 more"
        );
    }
}
