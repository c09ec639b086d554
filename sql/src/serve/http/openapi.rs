//! `GET /v1/openapi.json`: the OpenAPI 3 document of the HTTP API, generated from the
//! handlers' and types' own declarations (utoipa), so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::{ErrorBody, ErrorDetail};
use super::v1::{
    Contribution, ImputedFeature, ModelEntry, ModelList, PredictRequest, PredictResponse,
    Prediction, VersionEntry,
};
use super::v2::{
    InferInput, InferOutput, InferRequest, InferResponse, ModelMetadata, TensorMetadata,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lakescore scoring API",
        description = "On-demand predictions from lakescore's model registry, with the explanations and lineage of batch scoring. Every prediction is kept in scored.<model>_online and every request in ops.request_log."
    ),
    paths(
        super::v1::predict,
        super::v1::list_models,
        super::v2::infer,
        super::v2::model_metadata
    ),
    components(schemas(
        PredictRequest,
        PredictResponse,
        Prediction,
        Contribution,
        ImputedFeature,
        ModelList,
        ModelEntry,
        VersionEntry,
        InferRequest,
        InferInput,
        InferResponse,
        InferOutput,
        ModelMetadata,
        TensorMetadata,
        ErrorBody,
        ErrorDetail
    )),
    modifiers(&BearerToken)
)]
struct ApiDocument;

/// Declares the `token` security scheme the paths name: `Authorization: Bearer TOKEN`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDocument::openapi()
}

/// `GET /v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_declares_every_scoring_path_and_the_token_scheme() {
        let document = serde_json::to_value(openapi()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/v1/models/{reference}/predict",
            "/v1/models",
            "/v2/models/{name}/infer",
            "/v2/models/{name}",
        ] {
            assert!(document["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(
            document["components"]["securitySchemes"]["token"]["scheme"],
            "bearer"
        );
        let prediction = &document["components"]["schemas"]["Prediction"]["properties"];
        for field in [
            "prediction_id",
            "probability",
            "top_features",
            "model_sha256",
        ] {
            assert!(prediction[field].is_object(), "{field} missing");
        }
    }
}
