//! Artifact routes under `/api/v1/models/{name}`: upload sessions (start, stream files,
//! commit into a version, abort), file listing and streamed download, repair of a damaged file,
//! and verification. Bodies stream straight to the store (`Body::into_data_stream`), so the
//! JSON body limit does not apply; the per-file limit is `--max-artifact-file-bytes`.
//!
//! Authorization: every route asks the policy engine before touching a store (uploads and
//! commit: CreateVersion; repair: UpdateVersion; verify: VerifyArtifact; reads: ReadModel).
//! Writes of events still go through [`crate::service::Service::execute`], which authorizes
//! again and records the decision in the event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::Path;
use crate::api::extract::{CallerAuth, JsonBody, request_meta};
use crate::artifacts::ArtifactError;
use crate::artifacts::paths::RelPath;
use crate::domain::Action;
use crate::domain::Command;
use crate::domain::command::VerificationOutcome;
use crate::domain::names::{ModelName, TagKey};
use crate::domain::state::ModelState;
use crate::service::Caller;
use crate::service::VersionView;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models/{name}/uploads", post(start_upload))
        .route(
            "/models/{name}/uploads/{id}",
            axum::routing::delete(abort_upload),
        )
        .route(
            "/models/{name}/uploads/{id}/files/{*path}",
            put(upload_file),
        )
        .route("/models/{name}/uploads/{id}/commit", post(commit_upload))
        .route("/models/{name}/versions/{version}/files", get(list_files))
        .route(
            "/models/{name}/versions/{version}/files/{*path}",
            get(download_file).put(repair_file),
        )
        .route("/models/{name}/versions/{version}/verify", post(verify))
}

/// Header carrying a file's lowercase hex SHA-256 (download) or the expected one (upload).
pub const SHA256_HEADER: &str = "x-content-sha256";

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        let message = e.to_string();
        match e {
            ArtifactError::InvalidPath(_)
            | ArtifactError::OutsideStores(_)
            | ArtifactError::UnknownStore(_)
            | ArtifactError::InvalidManifest(_) => ApiError::invalid(message),
            ArtifactError::ManifestMismatch(diffs) => {
                ApiError::new(StatusCode::BAD_REQUEST, "ARTIFACT_MISMATCH", message)
                    .with_details(json!({ "differences": diffs }))
            }
            ArtifactError::DigestMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_MISMATCH", message)
            }
            ArtifactError::NotFound(_) => ApiError::not_found(message),
            // object_store's own message names the key's absolute location (a local store's
            // is a server path); callers get the fact, the log gets the detail.
            e if e.is_not_found() => {
                tracing::debug!(error = %message, "artifact object not found");
                ApiError::not_found("the file is not in the artifact store")
            }
            ArtifactError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", message),
            ArtifactError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE", message)
            }
            ArtifactError::Body(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", message)
            }
            ArtifactError::Store(_) => {
                tracing::error!(error = %message, "artifact store failure");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "ARTIFACT_STORE_UNAVAILABLE",
                    "the artifact store failed; see the server log for this request id",
                )
            }
            ArtifactError::Model(s) => s.into(),
            ArtifactError::Config(_) | ArtifactError::Io(_) | ArtifactError::Internal(_) => {
                tracing::error!(error = %message, "artifact error");
                ApiError::internal()
            }
        }
    }
}

use crate::api::extract::{model_name, version_number};

fn upload_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(format!("'{raw}' is not an upload id")))
}

/// Checks `action` on the model as it is now (before any artifact store I/O) and returns its
/// state; see [`crate::service::Service::check_current`].
async fn authorize(
    state: &AppState,
    caller: &Caller,
    action: Action,
    name: &ModelName,
    version: Option<u64>,
) -> Result<Option<ModelState>, ApiError> {
    Ok(state
        .service
        .check_current(caller, action, name, version)
        .await?)
}

fn require_model(model: Option<ModelState>, name: &ModelName) -> Result<ModelState, ApiError> {
    model
        .filter(|m| !m.deleted)
        .ok_or_else(|| ApiError::not_found(format!("Registered model '{name}' does not exist")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartUploadBody {
    /// A named artifact store; the default one when absent.
    #[serde(rename = "store")]
    artifact_store: Option<String>,
}

#[utoipa::path(
    post,
    path = "/models/{name}/uploads",
    tag = "artifacts",
    summary = "Open an upload session",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 201, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn start_upload(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    body: JsonBody<StartUploadBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let model = authorize(&state, &caller, Action::CreateVersion, &name, None).await?;
    let model = require_model(model, &name)?;
    let info = state
        .artifacts
        .start_upload(
            model.name.as_str(),
            &caller.actor,
            body.value.artifact_store.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(
    put,
    path = "/models/{name}/uploads/{id}/files/{path}",
    tag = "artifacts",
    summary = "Upload one file (path may contain /)",
    params(
        ("name" = String, Path, description = "model name"),
        ("id" = String, Path, description = "upload session id"),
        ("path" = String, Path, description = "file path inside the version (may contain /)"),
    ),
    responses(
        (status = 201, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn upload_file(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, id, path)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let id = upload_id(&id)?;
    let path = RelPath::parse(&path)?;
    let expected = headers.get(SHA256_HEADER).and_then(|v| v.to_str().ok());
    authorize(&state, &caller, Action::CreateVersion, &name, None).await?;
    let (body, timed_out) = watch_for_body_timeout(body);
    let file = state
        .artifacts
        .upload_file(id, name.as_str(), &caller.actor, &path, body, expected)
        .await
        .map_err(|e| body_error(e, &timed_out))?;
    Ok((StatusCode::CREATED, Json(file)).into_response())
}

/// The body as a stream of chunks, and a flag set when it failed because it stopped arriving
/// for `--body-read-timeout`. The artifact layer only sees "the body failed" (it knows nothing
/// of HTTP), so the answer's status is picked here: 408 for a stall, 400 for anything else.
fn watch_for_body_timeout(
    body: Body,
) -> (
    impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
    Arc<AtomicBool>,
) {
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let stream = body.into_data_stream().inspect_err(move |e| {
        if crate::api::error::is_body_timeout(e) {
            flag.fetch_or(true, Ordering::Relaxed);
        }
    });
    (stream, timed_out)
}

fn body_error(e: ArtifactError, timed_out: &AtomicBool) -> ApiError {
    match e {
        ArtifactError::Body(_) if timed_out.load(Ordering::Relaxed) => ApiError::body_timeout(),
        other => other.into(),
    }
}

#[utoipa::path(
    delete,
    path = "/models/{name}/uploads/{id}",
    tag = "artifacts",
    summary = "Abort an upload session",
    params(
        ("name" = String, Path, description = "model name"),
        ("id" = String, Path, description = "upload session id"),
    ),
    responses(
        (status = 204, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn abort_upload(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let id = upload_id(&id)?;
    state
        .artifacts
        .abort_upload(id, name.as_str(), &caller.actor)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    /// Recorded as the version's source; the upload location when absent.
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    metrics: std::collections::BTreeMap<String, f64>,
    signature: Option<serde_json::Value>,
    input_example: Option<serde_json::Value>,
    /// The manifest digest the client computed; the commit fails if the server's differs.
    expected_digest: Option<String>,
}

#[utoipa::path(
    post,
    path = "/models/{name}/uploads/{id}/commit",
    tag = "artifacts",
    summary = "Create a version from an upload",
    params(
        ("name" = String, Path, description = "model name"),
        ("id" = String, Path, description = "upload session id"),
    ),
    responses(
        (status = 201, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn commit_upload(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    body: JsonBody<CommitBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let id = upload_id(&id)?;
    let meta = request_meta(&headers)?;
    let value = body.value;
    let tags = value
        .tags
        .into_iter()
        .map(|(k, v)| Ok((TagKey::parse(k)?, v)))
        .collect::<Result<_, ApiError>>()?;
    let manifest = state
        .artifacts
        .begin_commit(id, name.as_str(), &caller.actor)
        .await?;
    if let Some(expected) = &value.expected_digest
        && *expected != manifest.digest
    {
        state.artifacts.finish_commit(id, false).await?;
        return Err(ArtifactError::ManifestMismatch(vec![format!(
            "expected manifest digest {expected}, the uploaded files give {}",
            manifest.digest
        )])
        .into());
    }
    let command = Command::CreateVersion {
        name: name.clone(),
        source: value.source.unwrap_or_else(|| manifest.location.clone()),
        run_id: value.run_id,
        description: value.description,
        tags,
        metrics: value.metrics,
        signature: value.signature,
        input_example: value.input_example,
        artifact: Some(manifest),
        run_evidence: None,
    };
    let outcome = state.service.execute(&caller, &meta, command).await;
    // Whatever the command's outcome, the session must not stay frozen; the outcome's own error
    // is the one worth reporting.
    let finished = state.artifacts.finish_commit(id, outcome.is_ok()).await;
    let outcome = outcome?;
    finished?;
    let version = outcome.state.last_version;
    let view = VersionView::from_state(&outcome.state, version).ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get,
    path = "/models/{name}/versions/{version}/files",
    tag = "artifacts",
    summary = "A version's file manifest",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn list_files(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    authorize(&state, &caller, Action::ReadModel, &name, Some(version)).await?;
    let v = state.artifacts.version(name.as_str(), version).await?;
    let manifest = v.artifact.clone().ok_or_else(|| {
        ApiError::not_found(format!(
            "model version {name}/{version} has no artifact manifest"
        ))
    })?;
    Ok(Json(json!({
        "name": name,
        "version": version,
        "location": manifest.location,
        "digest": manifest.digest,
        "files": manifest.files,
        "artifact_verified": v.artifact_verified(),
        "verification": v.verification,
    }))
    .into_response())
}

/// `sha-256=:<base64>:` (RFC 9530 `Repr-Digest`) from a hex SHA-256.
fn digest_headers(sha256_hex: &str) -> Vec<(&'static str, String)> {
    let b64 = hex::decode(sha256_hex)
        .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
        .unwrap_or_default();
    vec![
        (SHA256_HEADER, sha256_hex.to_string()),
        ("repr-digest", format!("sha-256=:{b64}:")),
        ("digest", format!("SHA-256={b64}")),
        ("etag", format!("\"{sha256_hex}\"")),
    ]
}

#[utoipa::path(
    get,
    path = "/models/{name}/versions/{version}/files/{path}",
    tag = "artifacts",
    summary = "Download one file, digest-checked while streaming",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("path" = String, Path, description = "file path inside the version (may contain /)"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn download_file(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    RelPath::parse(&path)?;
    authorize(&state, &caller, Action::ReadModel, &name, Some(version)).await?;
    let file = state.artifacts.open(name.as_str(), version, &path).await?;
    let mut response = Body::from_stream(file.stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (k, v) in digest_headers(&file.sha256) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&file.size.to_string()) {
        // The manifest size, not Content-Length: a damaged object may differ, and a wrong
        // Content-Length would break the connection instead of letting the client detect it.
        h.insert("x-content-size", v);
    }
    Ok(response)
}

#[utoipa::path(
    put,
    path = "/models/{name}/versions/{version}/files/{path}",
    tag = "artifacts",
    summary = "Replace a damaged file with its registered content",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("path" = String, Path, description = "file path inside the version (may contain /)"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn repair_file(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version, path)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    let path = RelPath::parse(&path)?;
    authorize(&state, &caller, Action::UpdateVersion, &name, Some(version)).await?;
    let (body, timed_out) = watch_for_body_timeout(body);
    let file = state
        .artifacts
        .repair(name.as_str(), version, &path, body)
        .await
        .map_err(|e| body_error(e, &timed_out))?;
    Ok(Json(file).into_response())
}

#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/verify",
    tag = "artifacts",
    summary = "Re-hash a version's files and record the outcome",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn verify(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    let meta = request_meta(&headers)?;
    authorize(
        &state,
        &caller,
        Action::VerifyArtifact,
        &name,
        Some(version),
    )
    .await?;
    let mut v = state.artifacts.version(name.as_str(), version).await?;
    // A run-based version whose pin is still pending (issue #16) is pinned first, so the
    // verification compares against the run's files as they are pinned now.
    if v.run_pin.as_deref() == Some(crate::domain::events::RunEvidence::PENDING)
        && let Some(location) = v.run_location.clone()
    {
        if let Err(e) = state
            .service
            .pin_pending(name.as_str(), version, &location, 0)
            .await
        {
            tracing::info!(error = %e, "run pin still pending at verify");
        }
        v = state.artifacts.version(name.as_str(), version).await?;
    }
    let started = std::time::Instant::now();
    let outcome = state.artifacts.verify(&v).await?;
    let bytes: u64 = v
        .artifact
        .as_ref()
        .map(|a| a.files.iter().map(|f| f.size).sum())
        .unwrap_or(0);
    let seconds = started.elapsed().as_secs_f64();
    let command = Command::RecordVerification {
        name: name.clone(),
        version,
        outcome: outcome.clone(),
    };
    state.service.execute(&caller, &meta, command).await?;
    let body = match outcome {
        VerificationOutcome::Verified { digest, files } => json!({
            "name": name, "version": version, "verified": true, "digest": digest,
            "files": files, "bytes": bytes, "seconds": seconds, "failures": [],
        }),
        VerificationOutcome::Failed { failures } => json!({
            "name": name, "version": version, "verified": false,
            "bytes": bytes, "seconds": seconds, "failures": failures,
        }),
    };
    Ok(Json(body).into_response())
}
