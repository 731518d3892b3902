//! The one mapping from every module's errors to HTTP: a status and a stable JSON body.
//!
//! Bodies are `{"error_code": "...", "message": "..."}` with MLflow's code names, so the native
//! and MLflow-compatible APIs share one vocabulary. Internal errors are logged with their cause
//! and answered with a request-safe message; nothing here echoes database text to callers.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::DomainError;
use crate::domain::names::NameError;
use crate::service::ServiceError;
use crate::service::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the body (e.g. the deciding policy ids of a denial).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub fn endpoint_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error; see the server log for this request id",
        )
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({ "error_code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(map)) =
            (&self.details, body.as_object_mut())
        {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // A 503 is always "try again soon" here (database or token verification down).
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"model-ledger\""),
            );
        }
        // A body refused for its size or its slowness was not read to the end, so the server
        // drops the connection after answering. Saying so keeps a client from pooling it and
        // sending its next request into a closed socket (seen as IncompleteMessage in reqwest).
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::invalid(e.0)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound(m) => ApiError::not_found(m),
            DomainError::AlreadyExists(m) => {
                ApiError::new(StatusCode::CONFLICT, "RESOURCE_ALREADY_EXISTS", m)
            }
            DomainError::InvalidParameter(m) => ApiError::invalid(m),
            DomainError::Workflow(w) => ApiError::new(
                StatusCode::from_u16(w.status()).unwrap_or(StatusCode::CONFLICT),
                w.code(),
                w.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                "the model changed concurrently; retry",
            ),
            StoreError::Unique(what) => ApiError::new(
                StatusCode::CONFLICT,
                "RESOURCE_ALREADY_EXISTS",
                format!("{what} is already taken"),
            ),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "TEMPORARILY_UNAVAILABLE",
                    "the database is unavailable",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => d.into(),
            ServiceError::Denied(decision) => ApiError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                decision.reason.clone(),
            )
            .with_details(json!({ "policy_ids": decision.policy_ids })),
            e @ ServiceError::PreconditionFailed { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION_FAILED",
                e.to_string(),
            ),
            e @ ServiceError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "CONFLICT", e.to_string())
            }
            e @ ServiceError::IdempotencyMismatch(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                e.to_string(),
            ),
            e @ ServiceError::NotFound(_) => ApiError::not_found(e.to_string()),
            ServiceError::Store(s) => s.into(),
        }
    }
}

impl ApiError {
    /// The answer to a body larger than `--max-body-bytes` (or another configured limit).
    pub fn too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            "request body is larger than the configured limit",
        )
    }

    /// The answer to a body that stopped arriving for longer than `--body-read-timeout`.
    pub fn body_timeout() -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "the request body was not received in time (--body-read-timeout)",
        )
    }
}

/// Whether an error was caused by the body-read timeout ([`tower_http::timeout::TimeoutBody`]),
/// which reaches the extractor wrapped in axum's body errors.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = err.source();
    }
    false
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large()
        } else if is_body_timeout(&e) {
            ApiError::body_timeout()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", e.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::invalid(format!("invalid path parameter: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid(format!("invalid query parameter: {}", e.body_text()))
    }
}
