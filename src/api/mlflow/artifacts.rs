//! MLflow's artifact proxy protocol (`/api/2.0/mlflow-artifacts/artifacts`) for the files of
//! versions whose artifacts model-ledger stores, so `mlflow.pyfunc.load_model("models:/…")`
//! downloads them from here.
//!
//! `get-download-uri` hands out `…/mlflow-artifacts/artifacts/models/<model id>/<version>`
//! ([`super::wire::artifact_path`]); the client lists that directory (`?path=`), then fetches
//! each file. Every byte served is hashed on the way out and compared with the manifest: a file
//! that no longer matches is cut off mid-stream, so the client fails instead of loading it.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri, Query, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::request::MlflowError;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::CallerAuth;
use crate::domain::Action;
use crate::service::{Caller, Resource};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/artifacts", any(dispatch))
        .route("/artifacts/{*path}", any(dispatch))
}

/// Model-ledger's own version files are served here; every other artifact path (run artifacts,
/// uploads) belongs to the MLflow tracking server and goes through the pass-through.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let full = request
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| request.uri().clone());
    if crate::api::tracking::is_forwarded(full.path(), full.query()) {
        return crate::api::tracking::forward(State(state), request).await;
    }
    if request.method() != Method::GET {
        return MlflowError(ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "ENDPOINT_NOT_FOUND",
            format!(
                "model-ledger's stored model files are read-only; {} is not allowed",
                request.method()
            ),
        ))
        .into_response();
    }
    let (mut parts, _) = request.into_parts();
    let caller = match CallerAuth::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return MlflowError(e).into_response(),
    };
    let result = match full.path().split_once("/mlflow-artifacts/artifacts/") {
        Some((_, path)) => {
            let decoded = percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .into_owned();
            download(state, caller, decoded).await
        }
        None => {
            let params = Query::<ListParams>::try_from_uri(&full)
                .map(|q| q.0)
                .unwrap_or(ListParams { path: None });
            list(state, caller, params).await
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `models/<model id>/<version>[/<path inside the version>]`, resolved to the model's current name.
struct VersionPath {
    name: String,
    version: u64,
    inner: String,
}

async fn resolve_path(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<VersionPath, MlflowError> {
    let raw = raw.trim_matches('/');
    let mut parts = raw.splitn(4, '/');
    let (Some("models"), Some(model_id), Some(version)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(MlflowError::endpoint_not_found(format!(
            "'{raw}' is not a model-ledger model artifact path; run artifacts are served by the MLflow tracking server (see --mlflow-upstream)"
        )));
    };
    let version: u64 = version
        .parse()
        .map_err(|_| MlflowError::invalid(format!("invalid version in artifact path '{raw}'")))?;
    let name = state
        .service
        .model_name_by_id(caller, model_id)
        .await?
        .ok_or_else(|| {
            MlflowError::not_found(format!("no registered model with id '{model_id}'"))
        })?;
    Ok(VersionPath {
        name,
        version,
        inner: parts.next().unwrap_or("").to_string(),
    })
}

#[derive(Deserialize)]
struct ListParams {
    path: Option<String>,
}

async fn list(
    state: AppState,
    CallerAuth(caller): CallerAuth,
    params: ListParams,
) -> Result<Response, MlflowError> {
    let target = resolve_path(&state, &caller, params.path.as_deref().unwrap_or("")).await?;
    state
        .service
        .check(
            &caller,
            Action::ReadModel,
            Resource::version(&target.name, target.version),
        )
        .await?;
    let manifest = state
        .artifacts
        .list(&target.name, target.version)
        .await
        .map_err(ApiError::from)?;
    let prefix = if target.inner.is_empty() {
        String::new()
    } else {
        format!("{}/", target.inner)
    };
    // Immediate children only, as MLflow lists one directory level at a time.
    let mut entries: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for file in &manifest.files {
        let Some(rest) = file.path.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((dir, _)) => {
                entries.entry(dir.to_string()).or_insert(None);
            }
            None => {
                entries.insert(rest.to_string(), Some(file.size));
            }
        }
    }
    if entries.is_empty() {
        // MLflow answers an empty or missing directory with an empty object.
        return Ok(Json(json!({})).into_response());
    }
    let files: Vec<_> = entries
        .into_iter()
        .map(|(path, size)| match size {
            Some(size) => json!({"path": path, "is_dir": false, "file_size": size}),
            None => json!({"path": path, "is_dir": true}),
        })
        .collect();
    Ok(Json(json!({ "files": files })).into_response())
}

async fn download(
    state: AppState,
    CallerAuth(caller): CallerAuth,
    path: String,
) -> Result<Response, MlflowError> {
    let target = resolve_path(&state, &caller, &path).await?;
    state
        .service
        .check(
            &caller,
            Action::ReadModel,
            Resource::version(&target.name, target.version),
        )
        .await?;
    let opened = state
        .artifacts
        .open(&target.name, target.version, &target.inner)
        .await
        .map_err(ApiError::from)?;
    let expected = opened.sha256.clone();
    let file_name = opened
        .path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .to_string();
    let mut hasher = Some(Sha256::new());
    let mut inner = opened.stream;
    // The last chunk is held back until the whole file is hashed: on a mismatch it is never
    // sent, so the body ends short of Content-Length and the client fails instead of loading it.
    let checked = async_stream::stream! {
        let mut held: Option<bytes::Bytes> = None;
        while let Some(chunk) = inner.next().await {
            match chunk {
                Ok(bytes) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&bytes);
                    }
                    if let Some(previous) = held.replace(bytes) {
                        yield Ok(previous);
                    }
                }
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
        let actual = hasher.take().map(|h| hex::encode(h.finalize())).unwrap_or_default();
        if actual != expected {
            tracing::error!(expected = %expected, actual = %actual, "artifact changed since registration; download aborted");
            yield Err(std::io::Error::other("artifact digest mismatch"));
            return;
        }
        if let Some(last) = held {
            yield Ok(last);
        }
    };
    let mut response = Body::from_stream(checked).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&opened.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        file_name.replace('"', "")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&opened.sha256) {
        headers.insert("x-content-sha256", v);
    }
    Ok(response)
}
