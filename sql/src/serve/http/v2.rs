//! `/v2`: the Open Inference Protocol (KServe V2), so inference clients written for it
//! score with lakescore unchanged. Each input tensor is one feature (or key column) with
//! one value per row; the outputs are `prediction`, `probability` and `confidence`
//! (classifiers), `prediction_id` and `top_features` (each row's explanation as JSON
//! text). Scoring, limits, tokens and the online table are the same as `/v1`'s;
//! failures answer `{"error": "..."}` as the protocol says.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use lakescore_engine::config::{FeatureKind, Task};
use lakescore_engine::ml::models::registry::{LoadedModel, ModelRef, VersionSelector};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::v1::{Prediction, predictions};
use super::{Api, Exchange, Parsed, ParsedRows, admit, read_body};

/// An inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    /// An id the answer repeats.
    pub id: Option<String>,
    /// Request parameters (ignored).
    #[schema(value_type = Object)]
    pub parameters: Option<Value>,
    /// One tensor per feature (and key column), one value per row.
    pub inputs: Vec<InferInput>,
    /// The outputs wanted, by name (all when absent).
    #[schema(value_type = Vec<Object>)]
    pub outputs: Option<Vec<Value>>,
}

/// An input tensor: a feature's values for every row.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferInput {
    /// The feature or key column.
    pub name: String,
    /// `[rows]` or `[rows, 1]`.
    pub shape: Vec<i64>,
    /// `BOOL`, `INT8`…`INT64`, `UINT8`…`UINT64`, `FP16`…`FP64` or `BYTES` (text).
    pub datatype: String,
    /// The values in row order, flat or one array per row.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// An inference answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    /// The model.
    pub model_name: String,
    /// The version that scored.
    pub model_version: String,
    /// The request's id, or lakescore's.
    pub id: String,
    /// lakescore's request id and the model's lineage.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// The outputs.
    pub outputs: Vec<InferOutput>,
}

/// An output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferOutput {
    /// `prediction`, `probability`, `confidence`, `prediction_id` or `top_features`.
    pub name: String,
    /// `[rows]`.
    pub shape: Vec<usize>,
    /// `FP64` or `BYTES`.
    pub datatype: String,
    /// One value per row.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// A model's inputs and outputs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    /// The model.
    pub name: String,
    /// Its registered versions.
    pub versions: Vec<String>,
    /// `lakescore`.
    pub platform: String,
    /// One per feature, in order.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs of `infer`.
    pub outputs: Vec<TensorMetadata>,
}

/// A tensor's name, type and shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    /// Its name.
    pub name: String,
    /// Its type.
    pub datatype: String,
    /// `[-1]`: one value per row.
    pub shape: Vec<i64>,
}

/// `GET /v2`.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "lakescore",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// Scores with the champion of model `name`.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    params(("name" = String, Path, description = "The model; its champion scores")),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The outputs, one value per row", body = InferResponse),
        (status = 400, description = "A tensor is wrong", body = Object),
        (status = 401, description = "No valid token", body = Object),
        (status = 404, description = "No such model", body = Object),
        (status = 429, description = "The queue is full", body = Object),
    ),
    security(("token" = []))
)]
pub async fn infer(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reference = ModelRef {
        name,
        selector: VersionSelector::Alias(String::from("champion")),
    };
    infer_with(api, address, reference, headers, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`: scores with that version.
pub async fn infer_version(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(version) = version.parse() else {
        let refused = ApiError::NotFound(format!("model '{name}' has no version '{version}'"));
        return Exchange::v2("infer", address).finish(&api, Err(refused));
    };
    let reference = ModelRef {
        name,
        selector: VersionSelector::Number(version),
    };
    infer_with(api, address, reference, headers, body).await
}

async fn infer_with(
    api: Arc<Api>,
    address: SocketAddr,
    reference: ModelRef,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut exchange = Exchange::v2("infer", address);
    let result = async {
        let client = api.client(&headers, &mut exchange)?;
        client.check(&reference.name)?;
        let mut body = body;
        let place = admit(&api, &client, &mut body).await?;
        let body = read_body(&api, &headers, body).await?;
        let request: InferRequest = serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body is not an inference request: {error}; send {{\"inputs\": [{{\"name\": FEATURE, \"shape\": [ROWS], \"datatype\": \"FP64\", \"data\": [...]}}]}}"
            ))
        })?;
        let wanted = wanted_outputs(request.outputs.as_deref())?;
        let id = request.id.clone();
        let inputs = request.inputs;
        let parse = move |_: &LoadedModel| {
            Ok(Parsed {
                rows: ParsedRows::Sent(rows(inputs)?),
                source: None,
            })
        };
        let scored = api
            .score(&mut exchange, &client, &reference, place, parse)
            .await?;
        let model = scored.model.clone();
        let predictions = predictions(&model, &scored.scores)?;
        let outputs = outputs(model.manifest.task, &predictions, wanted.as_deref())?;
        Ok(Json(InferResponse {
            model_name: model.manifest.name.clone(),
            model_version: model.manifest.version.to_string(),
            id: id.unwrap_or_else(|| exchange.request_id.clone()),
            parameters: json!({
                "request_id": exchange.request_id,
                "model_sha256": model.manifest.artifact_sha256,
                "training_table": model.manifest.training_table,
                "training_table_version": model.manifest.training_table_version,
            }),
            outputs,
        })
        .into_response())
    }
    .await;
    exchange.finish(&api, result)
}

/// The output names a request asks for.
fn wanted_outputs(outputs: Option<&[Value]>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(outputs) = outputs else {
        return Ok(None);
    };
    outputs
        .iter()
        .map(|output| {
            output["name"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("each requested output needs a \"name\""))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The rows of a request's input tensors: row `i` holds the `i`-th value of each.
fn rows(inputs: Vec<InferInput>) -> Result<Vec<Value>, ApiError> {
    let mut rows: Option<Vec<Map<String, Value>>> = None;
    for input in inputs {
        let values = tensor_values(&input)?;
        let rows = rows.get_or_insert_with(|| vec![Map::new(); values.len()]);
        if rows.len() != values.len() {
            return Err(ApiError::bad_request(format!(
                "input '{}' has {} values but the inputs before it have {}: every input needs one value per row",
                input.name,
                values.len(),
                rows.len()
            )));
        }
        for (row, value) in rows.iter_mut().zip(values) {
            if row.insert(input.name.clone(), value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "input '{}' is given twice",
                    input.name
                )));
            }
        }
    }
    Ok(rows
        .unwrap_or_default()
        .into_iter()
        .map(Value::Object)
        .collect())
}

/// An input's values in row order, checked against its shape.
fn tensor_values(input: &InferInput) -> Result<Vec<Value>, ApiError> {
    let name = &input.name;
    let wrong = |why: String| ApiError::bad_request(format!("input '{name}': {why}"));
    let rows = match input.shape.as_slice() {
        [rows] | [rows, 1] if *rows >= 0 => *rows as usize,
        other => {
            return Err(wrong(format!(
                "shape {other:?} is not [rows] or [rows, 1]: each input is one feature"
            )));
        }
    };
    let values: Vec<Value> = input
        .data
        .iter()
        .flat_map(|value| match value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        })
        .collect();
    if values.len() != rows {
        return Err(wrong(format!(
            "shape says {rows} rows but data holds {} values",
            values.len()
        )));
    }
    let fits = |value: &Value| match input.datatype.as_str() {
        "BOOL" => value.is_boolean() || value.is_null(),
        "BYTES" => value.is_string() || value.is_null(),
        kind if kind.starts_with("INT") || kind.starts_with("UINT") || kind.starts_with("FP") => {
            value.is_number() || value.is_null()
        }
        _ => false,
    };
    if let Some(at) = values.iter().position(|v| !fits(v)) {
        return Err(wrong(format!(
            "value {at} ({}) is not of datatype {}",
            values[at], input.datatype
        )));
    }
    Ok(values)
}

/// The output tensors of `predictions`, those named in `wanted` (all when None).
fn outputs(
    task: Task,
    predictions: &[Prediction],
    wanted: Option<&[String]>,
) -> Result<Vec<InferOutput>, ApiError> {
    let rows = predictions.len();
    let tensor = |name: &str, datatype: &str, data: Vec<Value>| InferOutput {
        name: name.to_string(),
        shape: vec![rows],
        datatype: datatype.to_string(),
        data,
    };
    let mut all = vec![
        tensor(
            "prediction",
            match task {
                Task::Classification => "BYTES",
                Task::Regression => "FP64",
            },
            predictions.iter().map(|p| p.prediction.clone()).collect(),
        ),
        tensor(
            "prediction_id",
            "BYTES",
            predictions
                .iter()
                .map(|p| Value::from(p.prediction_id.clone()))
                .collect(),
        ),
        tensor(
            "top_features",
            "BYTES",
            predictions
                .iter()
                .map(|p| Value::from(json!(p.top_features).to_string()))
                .collect(),
        ),
    ];
    if task == Task::Classification {
        all.push(tensor(
            "probability",
            "FP64",
            predictions.iter().map(|p| json!(p.probability)).collect(),
        ));
        all.push(tensor(
            "confidence",
            "FP64",
            predictions.iter().map(|p| json!(p.confidence)).collect(),
        ));
    }
    let Some(wanted) = wanted else {
        return Ok(all);
    };
    wanted
        .iter()
        .map(|name| {
            let at = all.iter().position(|o| &o.name == name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no output '{name}'; the outputs are prediction, prediction_id, top_features{}",
                    if task == Task::Classification {
                        ", probability, confidence"
                    } else {
                        ""
                    }
                ))
            })?;
            Ok(all.swap_remove(at))
        })
        .collect()
}

/// A model's inputs and outputs (of its champion).
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    params(("name" = String, Path, description = "The model")),
    responses(
        (status = 200, description = "Its inputs and outputs", body = ModelMetadata),
        (status = 404, description = "No such model", body = Object),
    ),
    security(("token" = []))
)]
pub async fn model_metadata(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut exchange = Exchange::v2("model", address);
    let result = async {
        let client = api.client(&headers, &mut exchange)?;
        client.check(&name)?;
        let reference = ModelRef {
            name: name.clone(),
            selector: VersionSelector::Alias(String::from("champion")),
        };
        let model = api.models.get(&reference).await?;
        let manifest = &model.manifest;
        let versions = api
            .models
            .registry()
            .listing(&name)
            .await
            .map(|listing| {
                listing
                    .readable
                    .iter()
                    .map(|m| m.version.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let tensor = |name: &str, datatype: &str| TensorMetadata {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape: vec![-1],
        };
        let inputs = manifest
            .features
            .iter()
            .map(|feature| {
                tensor(
                    &feature.name,
                    match feature.kind {
                        FeatureKind::Numeric => "FP64",
                        FeatureKind::Boolean => "BOOL",
                        FeatureKind::Categorical => "BYTES",
                    },
                )
            })
            .collect();
        let prediction = match manifest.task {
            Task::Classification => "BYTES",
            Task::Regression => "FP64",
        };
        let mut outputs = vec![
            tensor("prediction", prediction),
            tensor("prediction_id", "BYTES"),
            tensor("top_features", "BYTES"),
        ];
        if manifest.task == Task::Classification {
            outputs.push(tensor("probability", "FP64"));
            outputs.push(tensor("confidence", "FP64"));
        }
        Ok(Json(ModelMetadata {
            name: manifest.name.clone(),
            versions,
            platform: String::from("lakescore"),
            inputs,
            outputs,
        })
        .into_response())
    }
    .await;
    exchange.finish(&api, result)
}

/// `GET /v2/models/{name}/ready`: 200 when its champion loads.
pub async fn model_ready(
    State(api): State<Arc<Api>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut exchange = Exchange::v2("model", address);
    let result = async {
        let client = api.client(&headers, &mut exchange)?;
        client.check(&name)?;
        let reference = ModelRef {
            name: name.clone(),
            selector: VersionSelector::Alias(String::from("champion")),
        };
        api.models.get(&reference).await?;
        Ok(Json(json!({"name": name, "ready": true})).into_response())
    }
    .await;
    exchange.finish(&api, result)
}
