//! Reading a model's rows from a table version: key, features and label, streamed batch
//! by batch into columns, sampled when the table has more rows than the model may train
//! on, and split into training and holdout rows.
//!
//! Sampling and the split are decided per row by a SHA-256 of the seed and the row's key
//! (or its position when the model has no key), so the same data version and seed always
//! give the same rows, and a row keeps its side of the split as the table grows. Rows are
//! read in a fixed order, so training is reproducible.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::features::{FeatureArray, RawColumn};
use crate::config::{FeatureKind, ModelConfig, Task};
use crate::error::{Error, Result};
use crate::sql::session::SqlSession;
use crate::storage::lakehouse::quote_identifier;

/// A model's rows, as columns.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Each row's key columns joined with `|` (the row position when there is no key).
    pub keys: Vec<String>,
    /// One column per feature, in feature order.
    pub features: Vec<RawColumn>,
    /// The labels as text (classification) or numbers (regression).
    pub labels: LabelColumn,
    /// Rows in the table version.
    pub table_rows: u64,
    /// Rows skipped because the label was NULL.
    pub rows_without_label: u64,
    /// The features of those rows (they are scored for the prediction profile).
    pub unlabeled: Vec<RawColumn>,
    /// Share of rows kept when the table was sampled (1 when it was not).
    pub sample_fraction: f64,
}

impl Dataset {
    /// Adds `other`'s rows (read for the same model) after this one's.
    pub fn append(&mut self, other: Dataset) {
        self.keys.extend(other.keys);
        for (column, more) in self.features.iter_mut().zip(other.features) {
            match (column, more) {
                (RawColumn::Numbers(values), RawColumn::Numbers(more)) => values.extend(more),
                (RawColumn::Texts(values), RawColumn::Texts(more)) => values.extend(more),
                _ => {}
            }
        }
        match (&mut self.labels, other.labels) {
            (LabelColumn::Texts(labels), LabelColumn::Texts(more)) => labels.extend(more),
            (LabelColumn::Numbers(labels), LabelColumn::Numbers(more)) => labels.extend(more),
            _ => {}
        }
    }
}

/// Labels as read.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelColumn {
    /// Class names.
    Texts(Vec<String>),
    /// Values.
    Numbers(Vec<f64>),
}

/// A number in [0, 1) from the seed, a purpose and a key.
pub fn unit_hash(seed: u64, purpose: &str, key: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(purpose.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// True when the row with `key` is held out for evaluation.
pub fn is_holdout(seed: u64, holdout: f64, key: &str) -> bool {
    unit_hash(seed, "holdout", key) < holdout
}

/// Reads the model's key, features and label from `table` in `session` (whose pins fix
/// the version).
pub async fn read_dataset(
    session: &SqlSession,
    config: &ModelConfig,
    table: &str,
) -> Result<Dataset> {
    let table_rows = session.count_rows(table).await?;
    let sample_fraction = (config.max_training_rows as f64 / table_rows.max(1) as f64).min(1.0);
    let columns: Vec<String> = config
        .key
        .iter()
        .chain(config.features.keys())
        .chain(std::iter::once(&config.label))
        .map(|c| quote_identifier(c))
        .collect();
    // A fixed row order: the learners break ties by position, so the same table version
    // and seed train the same model however the scan's partitions arrive.
    let frame = session
        .sql(&format!(
            "SELECT {columns} FROM {table} ORDER BY {columns}",
            columns = columns.join(", ")
        ))
        .await?;
    let mut stream = frame.execute_stream().await?;
    let empty_columns: Vec<RawColumn> = config
        .features
        .values()
        .map(|kind| match kind {
            FeatureKind::Categorical => RawColumn::Texts(Vec::new()),
            _ => RawColumn::Numbers(Vec::new()),
        })
        .collect();
    let mut dataset = Dataset {
        keys: Vec::new(),
        features: empty_columns.clone(),
        labels: match config.task {
            Task::Classification => LabelColumn::Texts(Vec::new()),
            Task::Regression => LabelColumn::Numbers(Vec::new()),
        },
        table_rows,
        rows_without_label: 0,
        unlabeled: empty_columns,
        sample_fraction,
    };
    let keys = config.key.len();
    let mut position = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let key_columns = (0..keys)
            .map(|i| text_array(batch.column(i)))
            .collect::<Result<Vec<_>>>()?;
        let feature_columns: Vec<ArrayRef> = (0..config.features.len())
            .map(|i| batch.column(keys + i).clone())
            .collect();
        let label = batch.column(keys + config.features.len());
        let (label_texts, label_numbers) = match config.task {
            Task::Classification => (Some(text_array(label)?), None),
            Task::Regression => (None, Some(number_array(label)?)),
        };
        let converted: Vec<Converted> = config
            .features
            .iter()
            .zip(&feature_columns)
            .map(|((name, kind), array)| convert(name, *kind, array))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let key = if keys == 0 {
                position.to_string()
            } else {
                key_columns
                    .iter()
                    .map(|k| if k.is_valid(row) { k.value(row) } else { "" })
                    .collect::<Vec<_>>()
                    .join("|")
            };
            position += 1;
            if sample_fraction < 1.0 && unit_hash(config.seed, "sample", &key) >= sample_fraction {
                continue;
            }
            let label_present = match (&label_texts, &label_numbers) {
                (Some(texts), _) => texts.is_valid(row),
                (_, Some(numbers)) => numbers.is_valid(row) && numbers.value(row).is_finite(),
                _ => false,
            };
            if !label_present {
                dataset.rows_without_label += 1;
                push_features(&mut dataset.unlabeled, &converted, row);
                continue;
            }
            match (&mut dataset.labels, &label_texts, &label_numbers) {
                (LabelColumn::Texts(out), Some(texts), _) => out.push(texts.value(row).to_string()),
                (LabelColumn::Numbers(out), _, Some(numbers)) => out.push(numbers.value(row)),
                _ => {}
            }
            dataset.keys.push(key);
            push_features(&mut dataset.features, &converted, row);
        }
    }
    Ok(dataset)
}

/// Appends row `row` of the converted feature arrays to `columns`.
fn push_features(columns: &mut [RawColumn], converted: &[Converted], row: usize) {
    for (column, values) in columns.iter_mut().zip(converted) {
        match (column, values) {
            (RawColumn::Numbers(out), Converted::Numbers(array)) => {
                out.push(array.is_valid(row).then(|| array.value(row)));
            }
            (RawColumn::Texts(out), Converted::Texts(array)) => {
                out.push(array.is_valid(row).then(|| array.value(row).to_string()));
            }
            _ => {}
        }
    }
}

/// A feature column converted for reading.
pub enum Converted {
    /// Numbers (booleans as 0/1).
    Numbers(Float64Array),
    /// Text.
    Texts(StringArray),
}

impl Converted {
    /// The column as scoring reads it.
    pub fn feature_array(&self) -> FeatureArray<'_> {
        match self {
            Converted::Numbers(array) => FeatureArray::Numbers(array),
            Converted::Texts(array) => FeatureArray::Texts(array),
        }
    }
}

impl From<&RawColumn> for Converted {
    fn from(column: &RawColumn) -> Self {
        match column {
            RawColumn::Numbers(values) => Converted::Numbers(values.iter().collect()),
            RawColumn::Texts(values) => {
                Converted::Texts(values.iter().map(Option::as_deref).collect())
            }
        }
    }
}

/// Converts a feature column per its kind; a column that cannot be read that way is an
/// error naming it.
pub fn convert(name: &str, kind: FeatureKind, array: &ArrayRef) -> Result<Converted> {
    let wrong = |wanted: &str| {
        Error::Usage(format!(
            "feature '{name}' is declared {wanted} but the column is {}: change its kind in [model.features] or cast it in a SQL model",
            array.data_type()
        ))
    };
    match kind {
        FeatureKind::Categorical => text_array(array).map(Converted::Texts),
        FeatureKind::Numeric => {
            if !(array.data_type().is_numeric() || matches!(array.data_type(), DataType::Null)) {
                return Err(wrong("numeric"));
            }
            number_array(array).map(Converted::Numbers)
        }
        FeatureKind::Boolean => {
            let booleans = cast(array, &DataType::Boolean).map_err(|_| wrong("boolean"))?;
            let booleans = booleans
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| wrong("boolean"))?;
            Ok(Converted::Numbers(
                booleans
                    .iter()
                    .map(|b| b.map(|b| f64::from(u8::from(b))))
                    .collect(),
            ))
        }
    }
}

fn text_array(array: &ArrayRef) -> Result<StringArray> {
    let text = cast(array, &DataType::Utf8)?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::new_null(array.len())))
}

fn number_array(array: &ArrayRef) -> Result<Float64Array> {
    let numbers: Arc<dyn Array> = cast(array, &DataType::Float64)?;
    Ok(numbers
        .as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .unwrap_or_else(|| Float64Array::new_null(array.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_spread() {
        assert_eq!(
            unit_hash(42, "holdout", "C1"),
            unit_hash(42, "holdout", "C1")
        );
        assert_ne!(
            unit_hash(42, "holdout", "C1"),
            unit_hash(43, "holdout", "C1")
        );
        let held = (0..10_000)
            .filter(|i| is_holdout(7, 0.2, &i.to_string()))
            .count();
        assert!((1_800..2_200).contains(&held), "{held}");
    }
}
