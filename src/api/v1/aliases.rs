//! `/api/v1/models/{name}/aliases/{alias}`: named pointers to versions (`@champion`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;

use super::{run, version_response};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, JsonBody, Path, Route, model_name, version_number};
use crate::domain::Command;
use crate::domain::names::AliasName;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/models/{name}/aliases/{alias}",
        put(set_alias).get(get_alias).delete(delete_alias),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: serde_json::Value,
}

#[utoipa::path(
    put,
    path = "/models/{name}/aliases/{alias}",
    tag = "aliases",
    summary = "Point an alias at a version",
    params(
        ("name" = String, Path, description = "model name"),
        ("alias" = String, Path, description = "alias name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn set_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        &body.raw,
        command,
        move |o| version_response(StatusCode::OK, o, version),
    )
    .await
}

#[utoipa::path(
    get,
    path = "/models/{name}/aliases/{alias}",
    tag = "aliases",
    summary = "The version an alias names",
    params(
        ("name" = String, Path, description = "model name"),
        ("alias" = String, Path, description = "alias name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn get_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let alias = AliasName::parse(alias)?;
    let uri = crate::domain::uri::ModelUri {
        name: name.clone(),
        reference: crate::domain::uri::VersionRef::Alias(alias.clone()),
    };
    let view = state.service.resolve(&caller, &uri).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "Registered model alias {alias} not found on model '{name}'"
        ))
    })?;
    Ok(Json(&*view).into_response())
}

#[utoipa::path(
    delete,
    path = "/models/{name}/aliases/{alias}",
    tag = "aliases",
    summary = "Delete an alias",
    params(
        ("name" = String, Path, description = "model name"),
        ("alias" = String, Path, description = "alias name"),
    ),
    responses(
        (status = 204, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn delete_alias(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteAlias {
        name: model_name(name)?,
        alias: AliasName::parse(alias)?,
    };
    run(&state, &caller, &headers, &route.0, b"", command, |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}
