//! `/v1`: lakescore's own API. `POST /v1/models/{reference}/predict` scores rows sent as
//! JSON objects and answers each with its prediction, explanation and lineage;
//! `GET /v1/models` lists the models a client may use, with versions, aliases and
//! metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use lakescore_engine::datafusion::arrow::array::{
    Array, AsArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::ml::models::online::OnlineScores;
use lakescore_engine::ml::models::registry::LoadedModel;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody};
use super::{Api, Exchange, Parsed, ParsedRows, admit, model_reference, read_body, too_many_rows};

/// What `POST /v1/models/{reference}/predict` takes: `rows`, or `keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The rows to score: objects of feature values (numbers for numeric features,
    /// true/false for boolean ones, text for categorical ones), and optionally the
    /// model's key columns, which are echoed back and kept with the prediction. A
    /// missing or null feature is imputed as in training, and the answer says how.
    #[schema(value_type = Option<Vec<Object>>)]
    pub rows: Option<Vec<Value>>,
    /// Keys whose features are looked up in the model's `[model.online] features`
    /// table: key values, or objects of the key columns for a composite key.
    #[schema(value_type = Option<Vec<Object>>)]
    pub keys: Option<Vec<Value>>,
}

/// What `POST /v1/models/{reference}/predict` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    /// The request's id: the `run_id` of its rows in the online table.
    pub request_id: String,
    /// The table the keys' features were read from (requests with `keys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_table: Option<String>,
    /// Its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_table_version: Option<u64>,
    /// One per row, in order.
    pub predictions: Vec<Prediction>,
}

/// One row's prediction, explanation and lineage.
#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    /// The prediction's id (32 hex digits); feedback names it.
    pub prediction_id: String,
    /// The row's key columns, as sent.
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub key: Map<String, Value>,
    /// The predicted class (text) or value (number).
    #[schema(value_type = Object)]
    pub prediction: Value,
    /// Binary: of the positive class; multiclass: of the predicted class; null for
    /// regression.
    pub probability: Option<f64>,
    /// The predicted class's probability; null for regression.
    pub confidence: Option<f64>,
    /// The features that moved this prediction most, largest first.
    pub top_features: Vec<Contribution>,
    /// Features the row did not give, and what scoring used instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imputed: Vec<ImputedFeature>,
    /// The model.
    pub model_name: String,
    /// Its version.
    pub model_version: u64,
    /// SHA-256 of its artifact.
    pub model_sha256: String,
    /// The table it was trained on.
    pub training_table: String,
    /// That table's Delta version.
    pub training_table_version: u64,
    /// When the row was scored (RFC 3339, UTC).
    pub scored_at: String,
}

/// One feature's part in a prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct Contribution {
    /// The feature.
    pub feature: String,
    /// Its value, as text (null when missing).
    pub value: Option<String>,
    /// How far it moved the prediction from the model's baseline.
    pub contribution: f64,
}

/// A feature a row did not give.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImputedFeature {
    /// The feature.
    pub feature: String,
    /// What scoring used instead, in words.
    pub with: String,
}

/// Scores rows with a model version.
#[utoipa::path(
    post,
    path = "/v1/models/{reference}/predict",
    params(("reference" = String, Path, description = "`name` (its champion), `name@challenger` or `name:VERSION`")),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "One prediction per row", body = PredictResponse),
        (status = 400, description = "A row or field is wrong; each is named", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not use this model", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
        (status = 413, description = "The body or its rows are over the limits", body = ErrorBody),
        (status = 429, description = "The queue is full; retry after Retry-After seconds", body = ErrorBody),
        (status = 503, description = "Timed out, or predictions cannot be kept right now", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn predict(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut exchange = Exchange::new("predict", address);
    let result = async {
        let client = api.client(&headers, &mut exchange)?;
        let reference = model_reference(&reference)?;
        client.check(&reference.name)?;
        let mut body = body;
        let place = admit(&api, &client, &mut body).await?;
        let body = read_body(&api, &headers, body).await?;
        let lookup = api.features.current(&reference.name);
        let max_rows = api.config.max_rows;
        let parse = move |model: &LoadedModel| {
            let request: PredictRequest = serde_json::from_slice(&body).map_err(|error| {
                ApiError::bad_request(format!(
                    "the body is not a predict request: {error}; send {{\"rows\": [{{\"feature\": value, ...}}]}} or {{\"keys\": [...]}}"
                ))
            })?;
            match (request.rows, request.keys) {
                (Some(rows), None) => Ok(Parsed {
                    rows: ParsedRows::Sent(rows),
                    source: None,
                }),
                (None, Some(keys)) => {
                    // Refused before any lookup work.
                    if keys.len() > max_rows {
                        return Err(too_many_rows(keys.len(), max_rows));
                    }
                    let snapshot = lookup?;
                    Ok(Parsed {
                        rows: ParsedRows::LookedUp(snapshot.rows(model, &keys)?),
                        source: Some((snapshot.table.to_string(), snapshot.version)),
                    })
                }
                _ => Err(ApiError::bad_request(
                    "send either \"rows\" (feature values) or \"keys\" (looked up in the model's [model.online] features table)",
                )),
            }
        };
        let scored = api
            .score(&mut exchange, &client, &reference, place, parse)
            .await?;
        let predictions = predictions(&scored.model, &scored.scores)?;
        let (features_table, features_table_version) = scored.source.unzip();
        Ok(Json(PredictResponse {
            request_id: exchange.request_id.clone(),
            features_table,
            features_table_version,
            predictions,
        })
        .into_response())
    }
    .await;
    exchange.finish(&api, result)
}

/// What `GET /v1/models` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The models the client may use.
    pub models: Vec<ModelEntry>,
}

/// A registered model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelEntry {
    /// Its name.
    pub name: String,
    /// Alias → version.
    #[schema(value_type = Object)]
    pub aliases: Map<String, Value>,
    /// Its versions, oldest first.
    pub versions: Vec<VersionEntry>,
}

/// A registered version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionEntry {
    /// The version.
    pub version: u64,
    /// When it was registered.
    pub created_at: String,
    /// The table it was trained on.
    pub training_table: String,
    /// That table's Delta version.
    pub training_table_version: u64,
    /// SHA-256 of its artifact.
    pub model_sha256: String,
    /// Its features, in order, with their kinds.
    #[schema(value_type = Vec<Object>)]
    pub features: Vec<Value>,
    /// Its holdout metrics.
    #[schema(value_type = Object)]
    pub metrics: Value,
}

/// Lists the models the client may use.
#[utoipa::path(
    get,
    path = "/v1/models",
    responses(
        (status = 200, description = "The models the token may use", body = ModelList),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn list_models(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let mut exchange = Exchange::new("models", address);
    let result = async {
        let client = api.client(&headers, &mut exchange)?;
        let registry = api.models.registry();
        let names = registry.model_names().await.map_err(internal)?;
        let mut models = Vec::new();
        for name in names.into_iter().filter(|n| client.may_use(n)) {
            let listing = registry.listing(&name).await.map_err(internal)?;
            let aliases = registry.aliases(&name).await.map_err(internal)?;
            let versions = listing
                .readable
                .iter()
                .map(|manifest| VersionEntry {
                    version: manifest.version,
                    created_at: manifest.created_at.to_rfc3339(),
                    training_table: manifest.training_table.clone(),
                    training_table_version: manifest.training_table_version,
                    model_sha256: manifest.artifact_sha256.clone(),
                    features: manifest
                        .features
                        .iter()
                        .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
                        .collect(),
                    metrics: serde_json::to_value(&manifest.metrics).unwrap_or(Value::Null),
                })
                .collect();
            let aliases = aliases
                .current
                .into_iter()
                .map(|(alias, version)| (alias, Value::from(version)))
                .collect();
            models.push(ModelEntry {
                name,
                aliases,
                versions,
            });
        }
        Ok(Json(ModelList { models }).into_response())
    }
    .await;
    exchange.finish(&api, result)
}

fn internal(error: lakescore_engine::Error) -> ApiError {
    tracing::error!("could not read the model registry: {error}");
    ApiError::Unavailable(String::from(
        "the model registry could not be read; the server log says why",
    ))
}

/// Each scored row as the API answers it.
pub fn predictions(
    model: &LoadedModel,
    scores: &OnlineScores,
) -> Result<Vec<Prediction>, ApiError> {
    let batch = &scores.batch;
    let manifest = &model.manifest;
    let texts = |name: &str| -> Result<&StringArray, ApiError> {
        column(batch, name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| layout(name))
    };
    let numbers = |name: &str| -> Result<&Float64Array, ApiError> {
        column(batch, name)?
            .as_primitive_opt()
            .ok_or_else(|| layout(name))
    };
    let ids = texts("prediction_id")?;
    let keys = manifest
        .key
        .iter()
        .map(|key| Ok((key, texts(key)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let prediction = column(batch, "prediction")?;
    let probability = numbers("probability")?;
    let confidence = numbers("confidence")?;
    let tops: &ListArray = column(batch, "top_features")?
        .as_list_opt::<i32>()
        .ok_or_else(|| layout("top_features"))?;
    let scored_at = scores_time(batch)?;
    let optional = |array: &Float64Array, row: usize| array.is_valid(row).then(|| array.value(row));
    (0..batch.num_rows())
        .map(|row| {
            let key = keys
                .iter()
                .map(|(name, values)| {
                    let value = if values.is_valid(row) {
                        Value::from(values.value(row))
                    } else {
                        Value::Null
                    };
                    (name.to_string(), value)
                })
                .collect();
            Ok(Prediction {
                prediction_id: ids.value(row).to_string(),
                key,
                prediction: prediction_value(prediction, row),
                probability: optional(probability, row),
                confidence: optional(confidence, row),
                top_features: contributions(tops, row)?,
                imputed: scores.imputed[row]
                    .iter()
                    .map(|i| ImputedFeature {
                        feature: i.feature.clone(),
                        with: i.with.clone(),
                    })
                    .collect(),
                model_name: manifest.name.clone(),
                model_version: manifest.version,
                model_sha256: manifest.artifact_sha256.clone(),
                training_table: manifest.training_table.clone(),
                training_table_version: manifest.training_table_version,
                scored_at: scored_at.clone(),
            })
        })
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, ApiError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| layout(name))
}

fn layout(name: &str) -> ApiError {
    ApiError::Internal(format!("the scored rows have no usable column '{name}'"))
}

fn prediction_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Float64 => Value::from(
            array
                .as_primitive::<lakescore_engine::datafusion::arrow::datatypes::Float64Type>()
                .value(row),
        ),
        _ => array
            .as_string_opt::<i32>()
            .map_or(Value::Null, |texts| Value::from(texts.value(row))),
    }
}

fn contributions(tops: &ListArray, row: usize) -> Result<Vec<Contribution>, ApiError> {
    if tops.is_null(row) {
        return Ok(Vec::new());
    }
    let items = tops.value(row);
    let items: &StructArray = items
        .as_struct_opt()
        .ok_or_else(|| layout("top_features"))?;
    let features = items
        .column(0)
        .as_string_opt::<i32>()
        .ok_or_else(|| layout("feature"))?;
    let values = items
        .column(1)
        .as_string_opt::<i32>()
        .ok_or_else(|| layout("value"))?;
    let amounts: &Float64Array = items
        .column(2)
        .as_primitive_opt()
        .ok_or_else(|| layout("contribution"))?;
    Ok((0..items.len())
        .map(|i| Contribution {
            feature: features.value(i).to_string(),
            value: values.is_valid(i).then(|| values.value(i).to_string()),
            contribution: amounts.value(i),
        })
        .collect())
}

fn scores_time(batch: &RecordBatch) -> Result<String, ApiError> {
    use lakescore_engine::datafusion::arrow::datatypes::TimestampMicrosecondType;
    let times = column(batch, "scored_at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| layout("scored_at"))?;
    let micros = if times.is_empty() { 0 } else { times.value(0) };
    Ok(chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}
