//! `/api/v1/models/{name}/versions`: model versions, their descriptions and tags.
//!
//! A version can be created with files already in a configured artifact store (`artifact`):
//! the server hashes them before the command runs, but only for callers allowed to create the
//! version, since hashing a location is expensive.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::models::TagBody;
use super::{run, version_response};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{
    CallerAuth, JsonBody, Path, Q, Route, decode_cursor, encode_cursor, model_name, page_limit,
    tags, version_number,
};
use crate::domain::names::{AliasName, Stage, TagKey};
use crate::domain::{Action, Command, events::ManifestFile};
use crate::service::{Paging, SortKey, TextMatch, VersionFilter, VersionQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
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
            "/models/{name}/versions/{version}/metrics",
            post(record_metrics),
        )
}

/// Metrics measured after the version was created (an evaluation job after `push`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordMetricsBody {
    metrics: BTreeMap<String, f64>,
}

#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/metrics",
    tag = "versions",
    summary = "Record metrics for a version (quality gates read them)",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success: the version, with its metrics"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn record_metrics(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: JsonBody<RecordMetricsBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::RecordMetrics {
        name: model_name(name)?,
        version,
        metrics: body.value.metrics,
    };
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
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

#[utoipa::path(
    post,
    path = "/models/{name}/versions",
    tag = "versions",
    summary = "Create a version (optionally registering stored files)",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 201, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn create_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
            state
                .service
                .check_current(&caller, Action::CreateVersion, &name, None)
                .await?;
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
    run(&state, &caller, &headers, &route.0, &raw, command, |o| {
        version_response(StatusCode::CREATED, o, o.state.last_version)
    })
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

#[utoipa::path(
    get,
    path = "/models/{name}/versions",
    tag = "versions",
    summary = "List a model's versions",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn list_versions(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(params): Q<ListVersionsParams>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    state.service.get_model(&caller, &name).await?;
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
        .service
        .search_versions(
            &caller,
            &VersionQuery {
                filters,
                order: vec![(SortKey::Name, false), (SortKey::Version, true)],
                paging,
                limit,
            },
        )
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

#[utoipa::path(
    get,
    path = "/models/{name}/versions/{version}",
    tag = "versions",
    summary = "A version",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn get_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    let view = state.service.get_version(&caller, &name, version).await?;
    Ok(Json(&*view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateVersionBody {
    description: String,
}

#[utoipa::path(
    patch,
    path = "/models/{name}/versions/{version}",
    tag = "versions",
    summary = "Describe a version",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn update_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/models/{name}/versions/{version}",
    tag = "versions",
    summary = "Delete a version",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn delete_version(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let command = Command::DeleteVersion {
        name: model_name(name)?,
        version,
    };
    run(&state, &caller, &headers, &route.0, b"", command, |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

#[utoipa::path(
    put,
    path = "/models/{name}/versions/{version}/tags/{key}",
    tag = "versions",
    summary = "Set a version tag",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("key" = String, Path, description = "tag key"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn set_version_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/models/{name}/versions/{version}/tags/{key}",
    tag = "versions",
    summary = "Delete a version tag",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("key" = String, Path, description = "tag key"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn delete_version_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        b"",
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}
