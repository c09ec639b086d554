//! Features looked up by key: a `[[model]]` with `[model.online] features = "schema.table"`
//! can be scored with `{"keys": [...]}` instead of rows. The table's newest version is
//! held in memory (its key columns indexed), looked at again every `model_refresh`, and
//! replaced when a newer version is committed; a request uses the version that was current
//! when it started, and the answer and the online table name it.
//!
//! Values reach the model as a table column does in batch scoring (the same conversion),
//! so a key scored online gives the same result as its row scored from that table version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lakescore_engine::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, UInt32Array,
};
use lakescore_engine::datafusion::arrow::compute::{cast, concat_batches, take};
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::ml::models::dataset::{Converted, convert};
use lakescore_engine::ml::models::features::RawColumn;
use lakescore_engine::ml::models::online::OnlineRows;
use lakescore_engine::ml::models::registry::LoadedModel;
use lakescore_engine::storage::lakehouse::table_provider;
use lakescore_engine::storage::write::committed_version;
use lakescore_engine::{Lakehouse, Project, TableName};
use parking_lot::Mutex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::errors::ApiError;

/// Unknown keys one 404 lists.
const KEYS_LISTED: usize = 20;

/// Between the parts of a composite key in the index (a control character no key text
/// is expected to hold).
const KEY_SEPARATOR: char = '\u{1f}';

/// One version of a feature table, in memory.
pub struct FeatureSnapshot {
    /// The table.
    pub table: TableName,
    /// Its version.
    pub version: u64,
    columns: RecordBatch,
    rows: HashMap<String, u32>,
}

/// The feature tables of the project's models.
pub struct FeatureTables {
    lakehouse: Arc<Lakehouse>,
    declared: HashMap<String, (TableName, Vec<String>)>,
    loaded: Mutex<HashMap<String, Arc<FeatureSnapshot>>>,
}

impl FeatureTables {
    /// The feature tables `project`'s models declare (not loaded yet).
    pub fn new(project: &Project, lakehouse: Arc<Lakehouse>) -> Result<Self, String> {
        let mut declared = HashMap::new();
        for model in &project.config.models {
            if let Some(online) = &model.online {
                let table = TableName::parse(&online.features).map_err(|error| {
                    format!(
                        "[[model]] '{}': [model.online] features = \"{}\": {error}",
                        model.name, online.features
                    )
                })?;
                declared.insert(model.name.clone(), (table, model.key.clone()));
            }
        }
        Ok(Self {
            lakehouse,
            declared,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The snapshot `model`'s keys are looked up in now.
    pub fn current(&self, model: &str) -> Result<Arc<FeatureSnapshot>, ApiError> {
        if !self.declared.contains_key(model) {
            return Err(ApiError::bad_request(format!(
                "model '{model}' has no [model.online] features table to look keys up in: send rows instead"
            )));
        }
        self.loaded.lock().get(model).cloned().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "the features of model '{model}' are not loaded yet (the server log says why); try again shortly"
            ))
        })
    }

    /// Loads every declared table whose newest version is not the one held, and keeps
    /// doing so every `refresh` until `stop`.
    pub async fn keep_current(self: Arc<Self>, refresh: Duration, stop: CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(refresh) => {}
            }
        }
    }

    /// Loads the newest version of every declared table that changed.
    pub async fn refresh(&self) {
        for (model, (table, key)) in &self.declared {
            let held = self.loaded.lock().get(model).map(|s| s.version);
            match self.load(table, key, held).await {
                Ok(Some(snapshot)) => {
                    tracing::info!(
                        "model {model} looks keys up in {}@{} ({} keys)",
                        snapshot.table,
                        snapshot.version,
                        snapshot.rows.len()
                    );
                    self.loaded.lock().insert(model.clone(), Arc::new(snapshot));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!("model {model}: features not loaded: {error}"),
            }
        }
    }

    /// `table`'s newest version, indexed by `key`, unless it is version `held`.
    async fn load(
        &self,
        table: &TableName,
        key: &[String],
        held: Option<u64>,
    ) -> Result<Option<FeatureSnapshot>, String> {
        let Some(delta) = self
            .lakehouse
            .open_if_exists(table)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err(format!("{table} does not exist yet"));
        };
        let version = committed_version(&delta).map_err(|e| e.to_string())?;
        if held == Some(version) {
            return Ok(None);
        }
        let provider = table_provider(&delta).await.map_err(|e| e.to_string())?;
        let frame = SessionContext::new()
            .read_table(provider)
            .map_err(|e| e.to_string())?;
        let schema = frame.schema().clone();
        let batches = frame.collect().await.map_err(|e| e.to_string())?;
        let columns = concat_batches(&Arc::new(schema.as_arrow().clone()), &batches)
            .map_err(|e| e.to_string())?;
        let key_texts = key
            .iter()
            .map(|column| {
                let array = columns
                    .column_by_name(column)
                    .ok_or_else(|| format!("{table} has no key column '{column}'"))?;
                cast(array, &DataType::Utf8).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<ArrayRef>, String>>()?;
        let mut rows = HashMap::with_capacity(columns.num_rows());
        let mut repeated = 0_usize;
        for row in 0..columns.num_rows() {
            let parts: Vec<&str> = key_texts
                .iter()
                .map(|k| {
                    let texts = k.as_string::<i32>();
                    if texts.is_valid(row) {
                        texts.value(row)
                    } else {
                        ""
                    }
                })
                .collect();
            let index = u32::try_from(row).map_err(|_| format!("{table} has too many rows"))?;
            if rows
                .insert(parts.join(&KEY_SEPARATOR.to_string()), index)
                .is_some()
            {
                repeated += 1;
            }
        }
        if repeated > 0 {
            tracing::warn!(
                "{table}@{version}: {repeated} keys appear more than once; the last row of each is used"
            );
        }
        Ok(Some(FeatureSnapshot {
            table: table.clone(),
            version,
            columns,
            rows,
        }))
    }
}

impl FeatureSnapshot {
    /// The rows of `keys` (each a key value, or an object of the key columns): the
    /// features `model` reads, converted as batch scoring converts a table's columns, and
    /// the key columns as text; 404 names the keys the table does not hold.
    pub fn rows(&self, model: &LoadedModel, keys: &[Value]) -> Result<OnlineRows, ApiError> {
        let key_columns = &model.manifest.key;
        let mut indices = Vec::with_capacity(keys.len());
        let mut unknown = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            let text = key_text(key, key_columns)
                .map_err(|why| ApiError::bad_request(format!("key {at}: {why}")))?;
            match self.rows.get(&text) {
                Some(row) => indices.push(*row),
                None => unknown.push(key.to_string()),
            }
        }
        if !unknown.is_empty() {
            let total = unknown.len();
            unknown.truncate(KEYS_LISTED);
            return Err(ApiError::NotFound(format!(
                "{} of the keys {} not in {}@{}: {}{}",
                total,
                if total == 1 { "is" } else { "are" },
                self.table,
                self.version,
                unknown.join(", "),
                if total > KEYS_LISTED { ", ..." } else { "" }
            )));
        }
        let indices = UInt32Array::from(indices);
        let mut key_values = Vec::with_capacity(key_columns.len());
        for column in key_columns {
            let values = self.taken(column, &indices)?;
            let values = cast(&values, &DataType::Utf8).map_err(internal)?;
            let texts = values.as_string::<i32>();
            key_values.push(texts.iter().map(|text| text.map(str::to_string)).collect());
        }
        let mut features = Vec::with_capacity(model.manifest.features.len());
        for feature in &model.manifest.features {
            let values = self.taken(&feature.name, &indices)?;
            let converted = convert(&feature.name, feature.kind, &values).map_err(|error| {
                ApiError::Unavailable(format!("{}@{}: {error}", self.table, self.version))
            })?;
            features.push(match converted {
                Converted::Numbers(numbers) => RawColumn::Numbers(numbers.iter().collect()),
                Converted::Texts(texts) => {
                    RawColumn::Texts(texts.iter().map(|t| t.map(str::to_string)).collect())
                }
            });
        }
        Ok(OnlineRows {
            rows: keys.len(),
            features,
            keys: key_values,
        })
    }

    /// The values of `column` at `indices`; 503 when the table lacks the column.
    fn taken(&self, column: &str, indices: &UInt32Array) -> Result<ArrayRef, ApiError> {
        let array = self.columns.column_by_name(column).ok_or_else(|| {
            ApiError::Unavailable(format!(
                "{}@{} has no column '{column}', which the model reads",
                self.table, self.version
            ))
        })?;
        take(array.as_ref(), indices, None).map_err(internal)
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!("feature lookup failed: {error}");
    ApiError::Internal(String::from(
        "the feature lookup failed; the server log says why",
    ))
}

/// The index text of a key: one value for a single key column, or an object of every
/// key column.
fn key_text(key: &Value, columns: &[String]) -> Result<String, String> {
    let scalar = |value: &Value, column: &str| match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("'{column}' must be text or a number")),
    };
    match (key, columns) {
        (Value::Object(parts), _) => {
            if let Some(extra) = parts.keys().find(|k| !columns.contains(k)) {
                return Err(format!(
                    "'{extra}' is not a key column; the key is {}",
                    columns.join(", ")
                ));
            }
            let texts = columns
                .iter()
                .map(|column| {
                    let value = parts
                        .get(column)
                        .ok_or_else(|| format!("the key column '{column}' is missing"))?;
                    scalar(value, column)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join(&KEY_SEPARATOR.to_string()))
        }
        (single, [column]) => scalar(single, column),
        _ => Err(format!(
            "the key has {} columns ({}): send an object of them",
            columns.len(),
            columns.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_one_value_or_an_object_of_every_key_column() {
        let one = [String::from("customer_id")];
        assert_eq!(key_text(&json!("C1"), &one).unwrap(), "C1");
        assert_eq!(key_text(&json!(42), &one).unwrap(), "42");
        assert_eq!(key_text(&json!({"customer_id": "C1"}), &one).unwrap(), "C1");
        let two = [String::from("region"), String::from("id")];
        assert_eq!(
            key_text(&json!({"id": 7, "region": "north"}), &two).unwrap(),
            "north\u{1f}7"
        );
        assert!(
            key_text(&json!("C1"), &two)
                .unwrap_err()
                .contains("send an object")
        );
        assert!(
            key_text(&json!({"id": 7}), &two)
                .unwrap_err()
                .contains("'region' is missing")
        );
        assert!(
            key_text(&json!({"id": 7, "region": "n", "x": 1}), &two)
                .unwrap_err()
                .contains("'x' is not a key column")
        );
        assert!(
            key_text(&json!([1]), &one)
                .unwrap_err()
                .contains("text or a number")
        );
    }
}
