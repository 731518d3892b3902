//! The native REST API under `/api/v1`: models, versions, stages, aliases, resolve, history and
//! the global event feed. Responses are the store's views; errors are [`ApiError`]s.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{CallerAuth, JsonBody, idempotency, request_meta};
use crate::domain::names::{AliasName, ModelName, Stage, TagKey};
use crate::domain::uri::parse_model_uri;
use crate::domain::{Command, events::ManifestFile};
use crate::service::{Caller, Outcome, StoredResponse};
use crate::store::{
    EventQuery, ModelFilter, ModelQuery, ModelView, Paging, SortKey, TextMatch, VersionFilter,
    VersionQuery, VersionView,
};

/// `Path` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models", post(create_model).get(list_models))
        .route(
            "/models/{name}",
            get(get_model).patch(update_model).delete(delete_model),
        )
        .route(
            "/models/{name}/tags/{key}",
            put(set_model_tag).delete(delete_model_tag),
        )
        .route(
            "/models/{name}/versions",
            post(create_version).get(list_versions),
        )
        .route(
            "/models/{name}/versions/{version}",
            get(get_version)
                .patch(update_version)
                .delete(delete_version),
        )
        .route(
            "/models/{name}/versions/{version}/tags/{key}",
            put(set_version_tag).delete(delete_version_tag),
        )
        .route(
            "/models/{name}/versions/{version}/stage",
            post(transition_stage),
        )
        .route(
            "/models/{name}/stages/{stage}/rollback",
            post(rollback_stage),
        )
        .route(
            "/models/{name}/aliases/{alias}",
            put(set_alias).get(get_alias).delete(delete_alias),
        )
        .route("/models/{name}/history", get(history))
        .route("/resolve", get(resolve))
        .route("/events", get(events))
}

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

pub(crate) fn model_name(raw: String) -> Result<ModelName, ApiError> {
    Ok(ModelName::parse(raw)?)
}

pub(crate) fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v >= 1 && *v <= i64::MAX as u64)
        .ok_or_else(|| {
            ApiError::invalid(format!("version must be a positive integer, got '{raw}'"))
        })
}

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {l}"
        ))),
    }
}

fn tags(raw: BTreeMap<String, String>) -> Result<BTreeMap<TagKey, String>, ApiError> {
    raw.into_iter()
        .map(|(k, v)| Ok((TagKey::parse(k)?, v)))
        .collect()
}

/// The model's stream version as an ETag, for `If-Match` on the next write.
fn etag(stream_version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{stream_version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

fn model_response(status: StatusCode, outcome: &Outcome) -> Response {
    let view = ModelView::from_state(&outcome.state);
    let mut response = (status, Json(view)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(outcome.state.stream_version));
    response
}

fn version_response(status: StatusCode, outcome: &Outcome, version: u64) -> Response {
    let mut response = match VersionView::from_state(&outcome.state, version) {
        Some(view) => (status, Json(view)).into_response(),
        None => (
            status,
            Json(json!({ "name": outcome.state.name, "version": version, "deleted": true })),
        )
            .into_response(),
    };
    response
        .headers_mut()
        .insert(header::ETAG, etag(outcome.state.stream_version));
    response
}

fn stored(response: StoredResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut r = (status, response.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Runs a command, honouring `Idempotency-Key`; `render` builds the success response.
async fn run(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    route: &str,
    raw_body: &[u8],
    command: Command,
    render: impl Fn(&Outcome) -> Response + Send + Sync + 'static,
) -> Result<Response, ApiError> {
    let meta = request_meta(headers)?;
    match idempotency(headers, caller, route, raw_body)? {
        None => {
            let outcome = state.service.execute(caller, &meta, command).await?;
            Ok(render(&outcome))
        }
        Some(request) => {
            let to_stored = move |outcome: &Outcome| {
                let response = render(outcome);
                let status = response.status().as_u16();
                // Rendering is synchronous JSON serialization; re-serialize the body we built.
                let body = futures::executor::block_on(axum::body::to_bytes(
                    response.into_body(),
                    usize::MAX,
                ))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| "{}".into());
                StoredResponse { status, body }
            };
            let response = state
                .service
                .execute_idempotent(caller, &meta, command, request, &to_stored)
                .await?;
            Ok(stored(response))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateModelBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn create_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    body: JsonBody<CreateModelBody>,
) -> Result<Response, ApiError> {
    let JsonBody { value, raw } = body;
    let command = Command::CreateModel {
        name: model_name(value.name)?,
        description: value.description,
        tags: tags(value.tags)?,
    };
    run(
        &state,
        &caller,
        &headers,
        "POST /models",
        &raw,
        command,
        |o| model_response(StatusCode::CREATED, o),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListModelsParams {
    prefix: Option<String>,
    contains: Option<String>,
    /// `key=value`; repeat by comma: `tag=team=fraud,tier=1`.
    tag: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_models(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<ListModelsParams>,
) -> Result<Response, ApiError> {
    state.authorize_read(&caller, "ReadModel", "", None).await?;
    let mut filters = Vec::new();
    if let Some(p) = params.prefix {
        filters.push(ModelFilter::Name(TextMatch::Prefix(p)));
    }
    if let Some(c) = params.contains {
        filters.push(ModelFilter::Name(TextMatch::Contains(c)));
    }
    for pair in params
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ApiError::invalid(format!("tag filter '{pair}' must be key=value")))?;
        filters.push(ModelFilter::Tag {
            key: k.to_string(),
            matcher: TextMatch::Eq(v.to_string()),
        });
    }
    let limit = page_limit(params.limit)?;
    let paging = match params.cursor {
        Some(c) => Paging::After(decode_cursor(&c)?),
        None => Paging::Offset(0),
    };
    let page = state
        .store
        .search_models(&ModelQuery {
            filters,
            order: vec![(SortKey::Name, false)],
            paging,
            limit,
        })
        .await?;
    let next = match page.next {
        Some(Paging::After(k)) => Some(encode_cursor(&k)),
        Some(Paging::Offset(_)) => page.items.last().map(|m| encode_cursor(&m.name)),
        None => None,
    };
    Ok(Json(json!({ "models": page.items, "next_cursor": next })).into_response())
}

fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid("cursor is not one this server issued"))
}

async fn get_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(params): Q<super::audit::AsOfParams>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    if let Some(as_of) = params.as_of.as_deref() {
        // Time travel: the state folded from the log, not the projection.
        return super::audit::model_state_response(&state, &caller, &name, Some(as_of)).await;
    }
    state
        .authorize_read(&caller, "ReadModel", name.as_str(), None)
        .await?;
    let model =
        state.store.get_model(name.as_str()).await?.ok_or_else(|| {
            ApiError::not_found(format!("Registered model '{name}' does not exist"))
        })?;
    let mut response = Json(&model).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(model.stream_version));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateModelBody {
    description: Option<String>,
    /// A new name: renames the model (its history stays with it).
    name: Option<String>,
}

async fn update_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody<UpdateModelBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let JsonBody { value, raw } = body;
    let command = match (value.description, value.name) {
        (Some(description), None) => Command::UpdateModel { name, description },
        (None, Some(new_name)) => Command::RenameModel {
            name,
            new_name: model_name(new_name)?,
        },
        _ => {
            return Err(ApiError::invalid(
                "send exactly one of 'description' or 'name'",
            ));
        }
    };
    run(
        &state,
        &caller,
        &headers,
        "PATCH /models/{name}",
        &raw,
        command,
        |o| model_response(StatusCode::OK, o),
    )
    .await
}

async fn delete_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteModel {
        name: model_name(name)?,
    };
    run(
        &state,
        &caller,
        &headers,
        "DELETE /models/{name}",
        b"",
        command,
        |_| StatusCode::NO_CONTENT.into_response(),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    value: String,
}

async fn set_model_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
    body: JsonBody<TagBody>,
) -> Result<Response, ApiError> {
    let command = Command::SetModelTag {
        name: model_name(name)?,
        key: TagKey::parse(key)?,
        value: body.value.value,
    };
    run(
        &state,
        &caller,
        &headers,
        "PUT /models/{name}/tags/{key}",
        &body.raw,
        command,
        |o| model_response(StatusCode::OK, o),
    )
    .await
}

async fn delete_model_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteModelTag {
        name: model_name(name)?,
        key: TagKey::parse(key)?,
    };
    run(
        &state,
        &caller,
        &headers,
        "DELETE /models/{name}/tags/{key}",
        b"",
        command,
        |o| model_response(StatusCode::OK, o),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateVersionBody {
    source: String,
    run_id: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    signature: Option<serde_json::Value>,
    input_example: Option<serde_json::Value>,
    /// Files already in a configured artifact store to register with the version.
    artifact: Option<ArtifactRequest>,
}

/// Registration of existing files: the server lists and hashes everything under `location`
/// and records that manifest only if it matches the expected `files` and/or `digest`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactRequest {
    location: String,
    files: Option<Vec<ManifestFile>>,
    digest: Option<String>,
}

async fn create_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody<CreateVersionBody>,
) -> Result<Response, ApiError> {
    let JsonBody { value, raw } = body;
    let name = model_name(name)?;
    let artifact = match value.artifact {
        None => None,
        Some(request) => {
            // Hashing a location is expensive: only for callers who may create the version.
            super::artifacts::authorize(&state, &caller, "CreateVersion", &name, None).await?;
            Some(
                state
                    .artifacts
                    .register(&request.location, request.files, request.digest.as_deref())
                    .await?,
            )
        }
    };
    let command = Command::CreateVersion {
        name,
        source: value.source,
        run_id: value.run_id,
        description: value.description,
        tags: tags(value.tags)?,
        metrics: value.metrics,
        signature: value.signature,
        input_example: value.input_example,
        artifact,
        run_evidence: None,
    };
    run(
        &state,
        &caller,
        &headers,
        "POST /models/{name}/versions",
        &raw,
        command,
        |o| version_response(StatusCode::CREATED, o, o.state.last_version),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListVersionsParams {
    stage: Option<String>,
    alias: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_versions(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(params): Q<ListVersionsParams>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    state
        .authorize_read(&caller, "ReadModel", name.as_str(), None)
        .await?;
    if state.store.get_model(name.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "Registered model '{name}' does not exist"
        )));
    }
    let mut filters = vec![VersionFilter::Name(TextMatch::Eq(name.to_string()))];
    if let Some(stage) = params.stage {
        filters.push(VersionFilter::Stage(TextMatch::Eq(
            Stage::parse(&stage)?.as_str().to_string(),
        )));
    }
    if let Some(alias) = params.alias {
        filters.push(VersionFilter::Alias(AliasName::parse(alias)?.to_string()));
    }
    let limit = page_limit(params.limit)?;
    let paging = match params.cursor {
        Some(c) => Paging::After(decode_cursor(&c)?),
        None => Paging::Offset(0),
    };
    let page = state
        .store
        .search_versions(&VersionQuery {
            filters,
            order: vec![(SortKey::Name, false), (SortKey::Version, true)],
            paging,
            limit,
        })
        .await?;
    let next = match page.next {
        Some(Paging::After(k)) => Some(encode_cursor(&k)),
        Some(Paging::Offset(_)) => page
            .items
            .last()
            .map(|v| encode_cursor(&format!("{}\0{}", v.name, v.version))),
        None => None,
    };
    Ok(Json(json!({ "versions": page.items, "next_cursor": next })).into_response())
}

async fn get_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    state
        .authorize_read(&caller, "ReadModel", name.as_str(), Some(version))
        .await?;
    let view = state
        .store
        .get_version(name.as_str(), version as i64)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Model Version (name={name}, version={version}) not found"
            ))
        })?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateVersionBody {
    description: String,
}

async fn update_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: JsonBody<UpdateVersionBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::UpdateVersion {
        name: model_name(name)?,
        version,
        description: body.value.description,
    };
    run(
        &state,
        &caller,
        &headers,
        "PATCH /models/{name}/versions/{version}",
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

async fn delete_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::DeleteVersion {
        name: model_name(name)?,
        version,
    };
    run(
        &state,
        &caller,
        &headers,
        "DELETE /models/{name}/versions/{version}",
        b"",
        command,
        |_| StatusCode::NO_CONTENT.into_response(),
    )
    .await
}

async fn set_version_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version, key)): Path<(String, String, String)>,
    body: JsonBody<TagBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::SetVersionTag {
        name: model_name(name)?,
        version,
        key: TagKey::parse(key)?,
        value: body.value.value,
    };
    run(
        &state,
        &caller,
        &headers,
        "PUT /models/{name}/versions/{version}/tags/{key}",
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

async fn delete_version_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::DeleteVersionTag {
        name: model_name(name)?,
        version,
        key: TagKey::parse(key)?,
    };
    run(
        &state,
        &caller,
        &headers,
        "DELETE /models/{name}/versions/{version}/tags/{key}",
        b"",
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    stage: String,
    comment: Option<String>,
    #[serde(default)]
    archive_existing_versions: bool,
}

async fn transition_stage(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: JsonBody<TransitionBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let JsonBody { value, raw } = body;
    let command = Command::TransitionStage {
        name: model_name(name)?,
        version,
        stage: Stage::parse(&value.stage)?,
        comment: value.comment,
        archive_existing_versions: value.archive_existing_versions,
    };
    run(
        &state,
        &caller,
        &headers,
        "POST /models/{name}/versions/{version}/stage",
        &raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    comment: Option<String>,
}

async fn rollback_stage(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, stage)): Path<(String, String)>,
    body: JsonBody<RollbackBody>,
) -> Result<Response, ApiError> {
    let stage = Stage::parse(&stage)?;
    let command = Command::RollbackStage {
        name: model_name(name)?,
        stage,
        comment: body.value.comment,
    };
    run(
        &state,
        &caller,
        &headers,
        "POST /models/{name}/stages/{stage}/rollback",
        &body.raw,
        command,
        move |o| match o.state.latest_in_stage(stage) {
            Some(v) => version_response(StatusCode::OK, o, v.version),
            None => model_response(StatusCode::OK, o),
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: serde_json::Value,
}

async fn set_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, alias)): Path<(String, String)>,
    body: JsonBody<AliasBody>,
) -> Result<Response, ApiError> {
    // Accept 3 and "3": MLflow clients send versions as strings.
    let version = match &body.value.version {
        serde_json::Value::Number(n) => version_number(&n.to_string())?,
        serde_json::Value::String(s) => version_number(s)?,
        other => {
            return Err(ApiError::invalid(format!(
                "version must be a positive integer, got {other}"
            )));
        }
    };
    let command = Command::SetAlias {
        name: model_name(name)?,
        alias: AliasName::parse(alias)?,
        version,
    };
    run(
        &state,
        &caller,
        &headers,
        "PUT /models/{name}/aliases/{alias}",
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

async fn get_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let alias = AliasName::parse(alias)?;
    state
        .authorize_read(&caller, "ReadModel", name.as_str(), None)
        .await?;
    let uri = crate::domain::uri::ModelUri {
        name: name.clone(),
        reference: crate::domain::uri::VersionRef::Alias(alias.clone()),
    };
    let view = state.store.resolve(&uri).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "Registered model alias {alias} not found on model '{name}'"
        ))
    })?;
    Ok(Json(view).into_response())
}

async fn delete_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteAlias {
        name: model_name(name)?,
        alias: AliasName::parse(alias)?,
    };
    run(
        &state,
        &caller,
        &headers,
        "DELETE /models/{name}/aliases/{alias}",
        b"",
        command,
        |_| StatusCode::NO_CONTENT.into_response(),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveParams {
    uri: String,
}

async fn resolve(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<ResolveParams>,
) -> Result<Response, ApiError> {
    let uri = parse_model_uri(&params.uri)?;
    state
        .authorize_read(&caller, "ReadModel", uri.name.as_str(), None)
        .await?;
    let view = state.store.resolve(&uri).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "'{}' does not resolve to a model version",
            params.uri
        ))
    })?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    order: Option<String>,
    /// Position to continue after (oldest-first) or before (newest-first).
    cursor: Option<i64>,
    limit: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(params): Q<HistoryParams>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    state
        .authorize_read(&caller, "ReadModel", name.as_str(), None)
        .await?;
    let model =
        state.store.get_model(name.as_str()).await?.ok_or_else(|| {
            ApiError::not_found(format!("Registered model '{name}' does not exist"))
        })?;
    let descending = match params.order.as_deref() {
        None | Some("desc") | Some("newest") => true,
        Some("asc") | Some("oldest") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "order must be 'asc' or 'desc', got '{other}'"
            )));
        }
    };
    let limit = page_limit(params.limit)?;
    let stream_id = uuid::Uuid::parse_str(&model.model_id).map_err(|_| ApiError::internal())?;
    let query = EventQuery {
        stream_id: Some(stream_id),
        after_position: if descending { None } else { params.cursor },
        before_position: if descending { params.cursor } else { None },
        descending,
        limit,
        ..Default::default()
    };
    let events = state.store.read_events(&query).await?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.position))
        .flatten();
    Ok(Json(json!({ "events": events, "next_cursor": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    after: Option<i64>,
    limit: Option<i64>,
    model: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<EventsParams>,
) -> Result<Response, ApiError> {
    state
        .authorize_read(
            &caller,
            "ReadAudit",
            params.model.as_deref().unwrap_or(""),
            None,
        )
        .await?;
    let limit = page_limit(params.limit)?;
    let event_types: Vec<String> = params
        .event_type
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::to_string)
        .collect();
    if let Some(bad) = event_types
        .iter()
        .find(|t| !crate::domain::events::EventPayload::TYPES.contains(&t.as_str()))
    {
        return Err(ApiError::invalid(format!("unknown event type '{bad}'")));
    }
    let query = EventQuery {
        after_position: Some(params.after.unwrap_or(0)),
        model_name: params.model,
        event_types,
        limit,
        ..Default::default()
    };
    let events = state.store.read_events(&query).await?;
    let next = events.last().map(|e| e.position).or(params.after);
    Ok(Json(json!({ "events": events, "next_after": next })).into_response())
}
