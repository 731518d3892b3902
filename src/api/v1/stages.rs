//! Stage changes: `POST .../versions/{version}/stage` and `POST .../stages/{stage}/rollback`.
//!
//! Both are the `TransitionStage` action, so the same Production rules (role, verified
//! artifact, metric gates, separation of duties) decide them.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;

use super::{model_response, run, version_response};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, JsonBody, Path, Route, model_name, version_number};
use crate::domain::Command;
use crate::domain::names::Stage;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/models/{name}/versions/{version}/stage",
            post(transition_stage),
        )
        .route(
            "/models/{name}/stages/{stage}/rollback",
            post(rollback_stage),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    stage: String,
    comment: Option<String>,
    #[serde(default)]
    archive_existing_versions: bool,
}

#[utoipa::path(
    post,
    path = "/models/{name}/versions/{version}/stage",
    tag = "stages",
    summary = "Move a version to a stage",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn transition_stage(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
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

#[utoipa::path(
    post,
    path = "/models/{name}/stages/{stage}/rollback",
    tag = "stages",
    summary = "Give a stage back to its previous holder",
    params(
        ("name" = String, Path, description = "model name"),
        ("stage" = String, Path, description = "stage (Staging, Production, Archived, None)"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn rollback_stage(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        &body.raw,
        command,
        move |o| match o.state.latest_in_stage(stage) {
            Some(v) => version_response(StatusCode::OK, o, v.version),
            None => model_response(StatusCode::OK, o),
        },
    )
    .await
}
