//! The MLflow Model Registry REST API (`/api/2.0/mlflow/…`, mirrored under `/ajax-api/2.0/mlflow/`),
//! so unchanged MLflow clients and scripts can use model-ledger as their registry.
//!
//! Handlers only translate: MLflow parameters become the same [`Command`]s the native API sends
//! through [`crate::service::Service::execute`] (so every MLflow write is evented, policy-gated
//! and published), reads go to the store's projections, and results are rendered in MLflow's
//! wire format ([`wire`]). Search endpoints accept GET and POST; `current_stage` is accepted in
//! model-version filters as a documented superset of MLflow's grammar ([`filter`]). Errors are
//! translated to MLflow's codes and statuses in one place ([`request::MlflowError`]).

pub mod artifacts;
pub mod filter;
pub mod model_versions;
pub mod registered_models;
pub mod request;
pub mod webhooks;
// Approval workflow (#17): Databricks' transition requests and comments.
pub mod transition_requests;
pub mod wire;

use axum::extract::{OriginalUri, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::extract::request_meta;
use crate::domain::Command;
use crate::domain::names::{ModelName, Stage, TagKey};
use crate::service::{ModelView, Paging, VersionView};
use crate::service::{ModelWithLatest, Outcome};
use filter::encode_page_token;
use request::{MlflowError, MlflowRequest};

/// `max_results` limits as MLflow's server applies them.
pub(crate) const MODELS_DEFAULT_PAGE: i64 = 100;
pub(crate) const MODELS_MAX_PAGE: i64 = 1000;
/// What the MLflow client sends by default; MLflow's server caps at 200 000.
pub(crate) const VERSIONS_DEFAULT_PAGE: i64 = 10_000;
pub(crate) const VERSIONS_MAX_PAGE: i64 = 200_000;

/// The path prefix under which artifact downloads are served (MLflow's artifact proxy).
pub const ARTIFACTS_PATH: &str = "/api/2.0/mlflow-artifacts/artifacts";

pub(crate) type Handler = MethodRouter<AppState>;

pub(crate) fn with_fallback(router: Handler) -> Handler {
    router.fallback(wrong_method)
}

/// The registry routes, to be nested under `/api/2.0/mlflow` and `/ajax-api/2.0/mlflow`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(registered_models::routes())
        .merge(model_versions::routes())
        .merge(webhooks::routes())
        .merge(transition_requests::routes())
        .fallback(unknown_endpoint)
}

fn full_path(request: &Request) -> String {
    request
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| request.uri().path().to_string())
}

/// Everything under the MLflow prefixes that is not a registry route goes to the tracking
/// pass-through (which explains itself when no upstream is configured).
async fn unknown_endpoint(state: State<AppState>, request: Request) -> Response {
    let path = full_path(&request);
    if crate::api::tracking::is_forwarded(&path, request.uri().query()) {
        return crate::api::tracking::forward(state, request).await;
    }
    MlflowError::endpoint_not_found(format!(
        "No MLflow endpoint {} {path} in model-ledger's Model Registry API",
        request.method()
    ))
    .into_response()
}

async fn wrong_method(request: Request) -> MlflowError {
    MlflowError(crate::api::error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "ENDPOINT_NOT_FOUND",
        format!(
            "The method {} is not allowed for {}",
            request.method(),
            full_path(&request)
        ),
    ))
}

pub(crate) type Reply = Result<Response, MlflowError>;

pub(crate) fn ok(body: Value) -> Reply {
    Ok(Json(body).into_response())
}

/// An answer serialized straight from a typed shape (see [`wire::VersionJson`]).
pub(crate) fn ok_typed(body: &impl serde::Serialize) -> Reply {
    Ok(Json(body).into_response())
}

pub(crate) fn empty() -> Reply {
    ok(json!({}))
}

pub(crate) fn model_name(raw: String) -> Result<ModelName, MlflowError> {
    Ok(ModelName::parse(raw)?)
}

pub(crate) async fn execute(
    state: &AppState,
    req: &MlflowRequest,
    command: Command,
) -> Result<Outcome, MlflowError> {
    let meta = request_meta(&req.headers)?;
    Ok(state.service.execute(&req.caller, &meta, command).await?)
}

/// Deleting a tag or alias that is not there succeeds in MLflow (see
/// [`crate::service::Service::execute_deletion`]).
pub(crate) async fn delete_tolerating_absent(
    state: &AppState,
    req: &MlflowRequest,
    command: Command,
) -> Reply {
    let meta = request_meta(&req.headers)?;
    state
        .service
        .execute_deletion(&req.caller, &meta, command)
        .await?;
    empty()
}

pub(crate) fn version_not_found(name: &str, version: u64) -> MlflowError {
    MlflowError::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

pub(crate) async fn read_version(
    state: &AppState,
    req: &MlflowRequest,
    name: &ModelName,
    version: u64,
) -> Result<std::sync::Arc<VersionView>, MlflowError> {
    Ok(state
        .service
        .get_version(&req.caller, name, version)
        .await?)
}

/// A model as stored, with its latest version per stage.
pub(crate) fn stored_model_json(found: &ModelWithLatest) -> Value {
    wire::registered_model(&found.model, &found.latest)
}

/// A model as a just-executed command left it, without reading back what was written.
pub(crate) fn outcome_model_json(outcome: &Outcome) -> Value {
    let model = ModelView::from_state(&outcome.state);
    let mut latest: Vec<VersionView> = Stage::ALL
        .iter()
        .filter_map(|stage| outcome.state.latest_in_stage(*stage))
        .filter_map(|v| VersionView::from_state(&outcome.state, v.version))
        .collect();
    latest.sort_by_key(|v| v.version);
    wire::registered_model(&model, &latest)
}

pub(crate) fn outcome_version_json(outcome: &Outcome, version: u64) -> Result<Value, MlflowError> {
    VersionView::from_state(&outcome.state, version)
        .map(|v| wire::model_version(&v))
        .ok_or_else(|| version_not_found(outcome.state.name.as_str(), version))
}

pub(crate) fn tag_map(
    tags: Vec<(String, String)>,
) -> Result<std::collections::BTreeMap<TagKey, String>, MlflowError> {
    tags.into_iter()
        .map(|(k, v)| Ok((TagKey::parse(k)?, v)))
        .collect()
}

pub(crate) fn page_size(req: &MlflowRequest, default: i64, max: i64) -> Result<i64, MlflowError> {
    match req.params.int("max_results")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(MlflowError::invalid(format!(
            "Invalid value \"{n}\" for parameter 'max_results' supplied. It must be at most {max}, and at least 1."
        ))),
    }
}

pub(crate) fn next_token(next: Option<Paging>) -> Option<String> {
    match next {
        Some(Paging::Offset(offset)) => Some(encode_page_token(offset)),
        _ => None,
    }
}
