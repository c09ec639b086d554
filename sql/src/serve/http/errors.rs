//! What the HTTP API answers when a request fails: a status and a JSON body
//! `{"error": {"status", "code", "message", "problems"}}` saying what to change, never a
//! panic or a backtrace.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lakescore_engine::ml::models::online::{OnlineError, RowProblem};
use serde::Serialize;
use utoipa::ToSchema;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or its rows are wrong (400), with every problem found.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// Each row and field that is wrong.
        problems: Vec<RowProblem>,
    },
    /// No valid token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token may not use this model (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such model, version or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The body or its rows are larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// The queue is full (429); try again after `retry_after` seconds.
    #[error("{message}")]
    Overloaded {
        /// What happened.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Not ready, timed out or shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// lakescore failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<OnlineError> for ApiError {
    /// Bad rows are the client's (400, every problem listed); a scoring failure is
    /// lakescore's (500, the details in the server log only).
    fn from(error: OnlineError) -> Self {
        let message = error.to_string();
        match error {
            OnlineError::Rows { problems, .. } => ApiError::BadRequest { message, problems },
            OnlineError::Scoring(_) => {
                tracing::error!("{message}");
                ApiError::Internal(String::from("scoring failed; the server log says why"))
            }
        }
    }
}

impl ApiError {
    /// A 400 without row problems.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The body of a failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The failure.
    pub error: ErrorDetail,
}

/// A failure: its status, a stable code, a message saying what to do, and, for bad
/// rows, each row and field that is wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `too_large`,
    /// `overloaded`, `unavailable` or `internal`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// Each row and field that is wrong (400 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<RowProblem>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let headers = self.headers();
        let message = self.to_string();
        let code = self.code().to_string();
        let problems = match self {
            ApiError::BadRequest { problems, .. } => problems,
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code,
                message,
                problems,
            },
        };
        (status, headers, Json(body)).into_response()
    }
}

impl ApiError {
    /// The response in the Open Inference Protocol's shape: `{"error": "message"}`.
    pub fn into_open_inference_response(self) -> Response {
        let status = self.status();
        let headers = self.headers();
        let body = serde_json::json!({"error": self.to_string()});
        (status, headers, Json(body)).into_response()
    }

    /// `Retry-After` for 429, `WWW-Authenticate` for 401.
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match self {
            ApiError::Overloaded { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        headers
    }
}
