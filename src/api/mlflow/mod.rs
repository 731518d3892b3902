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
pub mod request;
pub mod wire;

use axum::extract::{OriginalUri, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::extract::request_meta;
use crate::domain::Command;
use crate::domain::names::{AliasName, ModelName, Stage, TagKey};
use crate::domain::uri::{ModelUri, VersionRef, parse_model_uri};
use crate::service::Outcome;
use crate::store::{ModelQuery, ModelView, Paging, VersionQuery, VersionView};
use filter::{Entity, decode_page_token, encode_page_token, model_filters, order_by};
use request::{MlflowError, MlflowRequest};

/// `max_results` limits as MLflow's server applies them.
const MODELS_DEFAULT_PAGE: i64 = 100;
const MODELS_MAX_PAGE: i64 = 1000;
/// What the MLflow client sends by default; MLflow's server caps at 200 000.
const VERSIONS_DEFAULT_PAGE: i64 = 10_000;
const VERSIONS_MAX_PAGE: i64 = 200_000;

/// The path prefix under which artifact downloads are served (MLflow's artifact proxy).
pub const ARTIFACTS_PATH: &str = "/api/2.0/mlflow-artifacts/artifacts";

type Handler = MethodRouter<AppState>;

fn with_fallback(router: Handler) -> Handler {
    router.fallback(wrong_method)
}

/// The registry routes, to be nested under `/api/2.0/mlflow` and `/ajax-api/2.0/mlflow`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/registered-models/create",
            with_fallback(post(create_model)),
        )
        .route(
            "/registered-models/get",
            with_fallback(get(get_model).post(get_model)),
        )
        .route(
            "/registered-models/rename",
            with_fallback(post(rename_model)),
        )
        .route(
            "/registered-models/update",
            with_fallback(patch(update_model).post(update_model)),
        )
        .route(
            "/registered-models/delete",
            with_fallback(delete(delete_model)),
        )
        .route(
            "/registered-models/search",
            with_fallback(get(search_models).post(search_models)),
        )
        .route(
            "/registered-models/get-latest-versions",
            with_fallback(post(latest_versions).get(latest_versions)),
        )
        .route(
            "/registered-models/set-tag",
            with_fallback(post(set_model_tag)),
        )
        .route(
            "/registered-models/delete-tag",
            with_fallback(delete(delete_model_tag)),
        )
        .route(
            "/registered-models/alias",
            with_fallback(post(set_alias).delete(delete_alias).get(get_by_alias)),
        )
        .route(
            "/model-versions/create",
            with_fallback(post(create_version)),
        )
        .route(
            "/model-versions/get",
            with_fallback(get(get_version).post(get_version)),
        )
        .route(
            "/model-versions/update",
            with_fallback(patch(update_version).post(update_version)),
        )
        .route(
            "/model-versions/delete",
            with_fallback(delete(delete_version)),
        )
        .route(
            "/model-versions/search",
            with_fallback(get(search_versions).post(search_versions)),
        )
        .route(
            "/model-versions/transition-stage",
            with_fallback(post(transition_stage)),
        )
        .route(
            "/model-versions/set-tag",
            with_fallback(post(set_version_tag)),
        )
        .route(
            "/model-versions/delete-tag",
            with_fallback(delete(delete_version_tag)),
        )
        .route(
            "/model-versions/get-download-uri",
            with_fallback(get(download_uri).post(download_uri)),
        )
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

type Reply = Result<Response, MlflowError>;

fn ok(body: Value) -> Reply {
    Ok(Json(body).into_response())
}

fn empty() -> Reply {
    ok(json!({}))
}

fn model_name(raw: String) -> Result<ModelName, MlflowError> {
    Ok(ModelName::parse(raw)?)
}

async fn execute(
    state: &AppState,
    req: &MlflowRequest,
    command: Command,
) -> Result<Outcome, MlflowError> {
    let meta = request_meta(&req.headers)?;
    Ok(state.service.execute(&req.caller, &meta, command).await?)
}

fn model_not_found(name: &str) -> MlflowError {
    MlflowError::not_found(format!("Registered Model with name={name} not found"))
}

fn version_not_found(name: &str, version: u64) -> MlflowError {
    MlflowError::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

async fn read_model(
    state: &AppState,
    req: &MlflowRequest,
    name: &ModelName,
) -> Result<ModelView, MlflowError> {
    state
        .authorize_read(&req.caller, "ReadModel", name.as_str(), None)
        .await?;
    state
        .store
        .get_model(name.as_str())
        .await?
        .ok_or_else(|| model_not_found(name.as_str()))
}

async fn read_version(
    state: &AppState,
    req: &MlflowRequest,
    name: &ModelName,
    version: u64,
) -> Result<VersionView, MlflowError> {
    state
        .authorize_read(&req.caller, "ReadModel", name.as_str(), Some(version))
        .await?;
    state
        .store
        .get_version(name.as_str(), version as i64)
        .await?
        .ok_or_else(|| version_not_found(name.as_str(), version))
}

/// A model as stored, with its latest version per stage.
async fn stored_model_json(state: &AppState, model: &ModelView) -> Result<Value, MlflowError> {
    let latest = state.store.latest_versions(&model.model_id).await?;
    Ok(wire::registered_model(model, &latest))
}

/// A model as a just-executed command left it, without reading back what was written.
fn outcome_model_json(outcome: &Outcome) -> Value {
    let model = ModelView::from_state(&outcome.state);
    let mut latest: Vec<VersionView> = Stage::ALL
        .iter()
        .filter_map(|stage| outcome.state.latest_in_stage(*stage))
        .filter_map(|v| VersionView::from_state(&outcome.state, v.version))
        .collect();
    latest.sort_by_key(|v| v.version);
    wire::registered_model(&model, &latest)
}

fn outcome_version_json(outcome: &Outcome, version: u64) -> Result<Value, MlflowError> {
    VersionView::from_state(&outcome.state, version)
        .map(|v| wire::model_version(&v))
        .ok_or_else(|| version_not_found(outcome.state.name.as_str(), version))
}

fn tag_map(
    tags: Vec<(String, String)>,
) -> Result<std::collections::BTreeMap<TagKey, String>, MlflowError> {
    tags.into_iter()
        .map(|(k, v)| Ok((TagKey::parse(k)?, v)))
        .collect()
}

// ---- registered models ----

async fn create_model(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::CreateModel {
        name: model_name(req.params.required("name")?)?,
        description: req.params.optional("description").unwrap_or_default(),
        tags: tag_map(req.params.tags()?)?,
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "registered_model": outcome_model_json(&outcome) }))
}

async fn get_model(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let model = read_model(&state, &req, &name).await?;
    ok(json!({ "registered_model": stored_model_json(&state, &model).await? }))
}

async fn rename_model(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::RenameModel {
        name: model_name(req.params.required("name")?)?,
        new_name: model_name(req.params.required("new_name")?)?,
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "registered_model": outcome_model_json(&outcome) }))
}

async fn update_model(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::UpdateModel {
        name: model_name(req.params.required("name")?)?,
        description: req.params.optional("description").unwrap_or_default(),
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "registered_model": outcome_model_json(&outcome) }))
}

async fn delete_model(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::DeleteModel {
        name: model_name(req.params.required("name")?)?,
    };
    execute(&state, &req, command).await?;
    empty()
}

fn page_size(req: &MlflowRequest, default: i64, max: i64) -> Result<i64, MlflowError> {
    match req.params.int("max_results")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(MlflowError::invalid(format!(
            "Invalid value \"{n}\" for parameter 'max_results' supplied. It must be at most {max}, and at least 1."
        ))),
    }
}

fn next_token(next: Option<Paging>) -> Option<String> {
    match next {
        Some(Paging::Offset(offset)) => Some(encode_page_token(offset)),
        _ => None,
    }
}

async fn search_models(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let filters = model_filters(req.params.optional("filter").as_deref())?;
    let order = order_by(&req.params.list("order_by")?, Entity::Models)?;
    let limit = page_size(&req, MODELS_DEFAULT_PAGE, MODELS_MAX_PAGE)?;
    let paging = decode_page_token(req.params.optional("page_token").as_deref())?;
    state
        .authorize_read(&req.caller, "ReadModel", "", None)
        .await?;
    let page = state
        .store
        .search_models(&ModelQuery {
            filters,
            order,
            paging,
            limit,
        })
        .await?;
    let mut models = Vec::with_capacity(page.items.len());
    for model in &page.items {
        models.push(stored_model_json(&state, model).await?);
    }
    let mut body = serde_json::Map::new();
    if !models.is_empty() {
        body.insert("registered_models".into(), Value::Array(models));
    }
    if let Some(token) = next_token(page.next) {
        body.insert("next_page_token".into(), Value::String(token));
    }
    ok(Value::Object(body))
}

async fn latest_versions(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let stages = req
        .params
        .list("stages")?
        .iter()
        .map(|s| Stage::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let model = read_model(&state, &req, &name).await?;
    let versions: Vec<Value> = state
        .store
        .latest_versions(&model.model_id)
        .await?
        .iter()
        .filter(|v| stages.is_empty() || stages.iter().any(|s| s.as_str() == v.stage))
        .map(wire::model_version)
        .collect();
    if versions.is_empty() {
        return empty();
    }
    ok(json!({ "model_versions": versions }))
}

async fn set_model_tag(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::SetModelTag {
        name: model_name(req.params.required("name")?)?,
        key: TagKey::parse(req.params.required("key")?)?,
        value: req.params.optional("value").unwrap_or_default(),
    };
    execute(&state, &req, command).await?;
    empty()
}

/// Deleting what is not there is a no-op in MLflow, but still needs the caller's permission
/// (a denial is recorded like any other).
async fn authorize_noop(
    state: &AppState,
    req: &MlflowRequest,
    action: &str,
    name: &ModelName,
    version: Option<u64>,
) -> Reply {
    state
        .authorize_read(&req.caller, action, name.as_str(), version)
        .await?;
    empty()
}

async fn delete_model_tag(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let key = TagKey::parse(req.params.required("key")?)?;
    let model = state
        .store
        .get_model(name.as_str())
        .await?
        .ok_or_else(|| model_not_found(name.as_str()))?;
    if !model.tags.contains_key(key.as_str()) {
        return authorize_noop(&state, &req, "UpdateModel", &name, None).await;
    }
    execute(&state, &req, Command::DeleteModelTag { name, key }).await?;
    empty()
}

async fn set_alias(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::SetAlias {
        name: model_name(req.params.required("name")?)?,
        alias: AliasName::parse(req.params.required("alias")?)?,
        version: req.params.version()?,
    };
    execute(&state, &req, command).await?;
    empty()
}

async fn delete_alias(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let alias = AliasName::parse(req.params.required("alias")?)?;
    let model = state
        .store
        .get_model(name.as_str())
        .await?
        .ok_or_else(|| model_not_found(name.as_str()))?;
    if !model.aliases.contains_key(alias.as_str()) {
        return authorize_noop(&state, &req, "DeleteAlias", &name, None).await;
    }
    execute(&state, &req, Command::DeleteAlias { name, alias }).await?;
    empty()
}

async fn get_by_alias(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let raw_alias = req.params.required("alias")?;
    read_model(&state, &req, &name).await?;
    // `latest` is reserved for setting but means the newest version when reading.
    let reference = if raw_alias.eq_ignore_ascii_case("latest") {
        VersionRef::Latest
    } else {
        VersionRef::Alias(AliasName::parse(raw_alias.clone())?)
    };
    let uri = ModelUri {
        name: name.clone(),
        reference,
    };
    let view = state.store.resolve(&uri).await?.ok_or_else(|| {
        MlflowError::invalid(format!("Registered model alias {raw_alias} not found."))
    })?;
    ok(json!({ "model_version": wire::model_version(&view) }))
}

// ---- model versions ----

async fn create_version(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::CreateVersion {
        name: model_name(req.params.required("name")?)?,
        source: req.params.required("source")?,
        run_id: req.params.optional("run_id").filter(|r| !r.is_empty()),
        description: req.params.optional("description").unwrap_or_default(),
        tags: tag_map(req.params.tags()?)?,
        metrics: Default::default(),
        signature: None,
        input_example: None,
        artifact: None,
        run_evidence: None,
    };
    let outcome = execute(&state, &req, command).await?;
    let version = outcome.state.last_version;
    ok(json!({ "model_version": outcome_version_json(&outcome, version)? }))
}

async fn get_version(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let view = read_version(&state, &req, &name, version).await?;
    ok(json!({ "model_version": wire::model_version(&view) }))
}

async fn update_version(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let version = req.params.version()?;
    let command = Command::UpdateVersion {
        name: model_name(req.params.required("name")?)?,
        version,
        description: req.params.optional("description").unwrap_or_default(),
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "model_version": outcome_version_json(&outcome, version)? }))
}

async fn delete_version(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::DeleteVersion {
        name: model_name(req.params.required("name")?)?,
        version: req.params.version()?,
    };
    execute(&state, &req, command).await?;
    empty()
}

async fn search_versions(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let filters = filter::version_filters(req.params.optional("filter").as_deref())?;
    let order = order_by(&req.params.list("order_by")?, Entity::Versions)?;
    let limit = page_size(&req, VERSIONS_DEFAULT_PAGE, VERSIONS_MAX_PAGE)?;
    let paging = decode_page_token(req.params.optional("page_token").as_deref())?;
    state
        .authorize_read(&req.caller, "ReadModel", "", None)
        .await?;
    let page = state
        .store
        .search_versions(&VersionQuery {
            filters,
            order,
            paging,
            limit,
        })
        .await?;
    let mut body = serde_json::Map::new();
    if !page.items.is_empty() {
        body.insert(
            "model_versions".into(),
            Value::Array(page.items.iter().map(wire::model_version).collect()),
        );
    }
    if let Some(token) = next_token(page.next) {
        body.insert("next_page_token".into(), Value::String(token));
    }
    ok(Value::Object(body))
}

async fn transition_stage(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let version = req.params.version()?;
    let raw_stage = req.params.required("stage")?;
    let stage = Stage::parse(&raw_stage).map_err(|_| {
        MlflowError::invalid(format!(
            "Invalid Model Version stage: {raw_stage}. Value must be one of None, Staging, Production, Archived."
        ))
    })?;
    let command = Command::TransitionStage {
        name: model_name(req.params.required("name")?)?,
        version,
        stage,
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
        archive_existing_versions: req.params.flag("archive_existing_versions")?,
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "model_version": outcome_version_json(&outcome, version)? }))
}

async fn set_version_tag(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::SetVersionTag {
        name: model_name(req.params.required("name")?)?,
        version: req.params.version()?,
        key: TagKey::parse(req.params.required("key")?)?,
        value: req.params.optional("value").unwrap_or_default(),
    };
    execute(&state, &req, command).await?;
    empty()
}

async fn delete_version_tag(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let key = TagKey::parse(req.params.required("key")?)?;
    let view = state
        .store
        .get_version(name.as_str(), version as i64)
        .await?
        .ok_or_else(|| version_not_found(name.as_str(), version))?;
    if !view.tags.contains_key(key.as_str()) {
        return authorize_noop(&state, &req, "UpdateVersion", &name, Some(version)).await;
    }
    execute(
        &state,
        &req,
        Command::DeleteVersionTag { name, version, key },
    )
    .await?;
    empty()
}

/// Where the run evidence recorded at registration says a version's files are, when it
/// resolved the source to somewhere else (`runs:/…` or an MLflow 3 `models:/m-…`). An
/// `mlflow-artifacts:` location is answered as is: the client resolves it against its tracking
/// URI, which is model-ledger, and the pass-through serves it from the upstream.
async fn resolved_source(
    state: &AppState,
    view: &VersionView,
) -> Result<Option<String>, MlflowError> {
    let Ok(stream_id) = uuid::Uuid::parse_str(&view.model_id) else {
        return Ok(None);
    };
    let events = state
        .store
        .read_events(&crate::store::EventQuery {
            stream_id: Some(stream_id),
            version: Some(view.version as i64),
            event_types: vec!["VersionCreated".into()],
            limit: 1,
            ..Default::default()
        })
        .await?;
    let evidence = events
        .first()
        .and_then(|e| e.typed_payload().ok())
        .and_then(|p| match p {
            crate::domain::events::EventPayload::VersionCreated { run_evidence, .. } => {
                run_evidence
            }
            _ => None,
        });
    Ok(evidence
        .map(|e| e.resolved_source)
        .filter(|resolved| resolved != &view.source))
}

/// `models:/` sources point at another version; follow them this many hops at most, so a
/// cycle of copies cannot loop.
const MAX_SOURCE_HOPS: usize = 8;

async fn download_uri(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let mut view = read_version(&state, &req, &name, version).await?;
    let base = wire::public_base_url(&req.headers);
    if view.artifact.is_none()
        && let Some(resolved) = resolved_source(&state, &view).await?
    {
        return ok(json!({ "artifact_uri": resolved }));
    }
    // A copied version (source `models:/NAME/V`) downloads what its origin downloads, as in
    // MLflow's storage-location resolution.
    for _ in 0..MAX_SOURCE_HOPS {
        if view.artifact.is_some() || !view.source.starts_with("models:/") {
            break;
        }
        let Ok(uri) = parse_model_uri(&view.source) else {
            break;
        };
        match state.store.resolve(&uri).await? {
            Some(origin) if origin.model_id != view.model_id || origin.version != view.version => {
                view = origin;
            }
            _ => break,
        }
    }
    ok(json!({ "artifact_uri": wire::download_uri(&view, &base) }))
}
