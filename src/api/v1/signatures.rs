//! `/api/v1/models/{name}/versions/{v}/signatures`: OpenSSF model signatures as evidence.
//!
//! The body is the signature file `model_signing sign` wrote (a Sigstore bundle), sent as is.
//! The caller's right to record a signature is checked first, before the server spends work on
//! parsing and verifying what a stranger sent. Then [`crate::artifacts::signatures`] decides
//! whether a trusted signer made it (an untrusted or broken signature is refused and nothing is
//! written), and the `RecordSignature` command binds it to the version's files inside the one
//! command path, so the recorded `verified` / `mismatch` is about the manifest the event
//! follows. See docs/artifacts.md.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::run;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, Path, Route, model_name, version_number};
use crate::artifacts::signatures::{MAX_SIGNATURE_BYTES, SignatureError};
use crate::domain::{Action, Command};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/models/{name}/versions/{version}/signatures",
        post(record_signature),
    )
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Malformed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "INVALID_SIGNATURE", e.to_string())
            }
            SignatureError::Unsupported(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED_SIGNATURE",
                e.to_string(),
            ),
            SignatureError::Untrusted(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNTRUSTED_SIGNATURE",
                e.to_string(),
            ),
            SignatureError::Config(_) => {
                tracing::error!(error = %e, "trusted signer configuration");
                ApiError::internal()
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/signatures",
    tag = "versions",
    summary = "Record an OpenSSF model signature (model_signing's bundle, as the body)",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 201, description = "recorded: `status` is `verified` or `mismatch`"),
        (status = 422, description = "`UNTRUSTED_SIGNATURE`: not by a trusted key or CA; nothing recorded"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
pub(crate) async fn record_signature(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    if body.len() > MAX_SIGNATURE_BYTES {
        return Err(ApiError::too_large());
    }
    state
        .service
        .check_current(&caller, Action::RecordSignature, &name, Some(version))
        .await?;
    let claim = state.artifacts.signers.check(&body)?;
    let command = Command::RecordSignature {
        name,
        version,
        claim,
    };
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &body,
        command,
        |outcome| {
            // The event's own payload is the answer: what was recorded, in the log's words.
            let recorded = outcome
                .events
                .iter()
                .find(|e| e.event_type == "SignatureRecorded")
                .map(|e| {
                    let mut body = e.payload.clone();
                    if let Some(map) = body.as_object_mut() {
                        map.insert("position".into(), e.position.into());
                    }
                    body
                });
            match recorded {
                Some(body) => (StatusCode::CREATED, Json(body)).into_response(),
                None => ApiError::internal().into_response(),
            }
        },
    )
    .await
}
