//! `/api/v1/models` and `/api/v1/models/{name}`: registered models and their tags.
//!
//! Creating, renaming, describing, tagging and deleting a model are commands (see
//! [`crate::service::commands`]); listing and reading are queries, authorized before anything
//! about the model is looked up.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{etag, model_response, run};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{
    CallerAuth, JsonBody, Path, Q, Route, decode_cursor, encode_cursor, model_name, page_limit,
    tags,
};
use crate::domain::Command;
use crate::domain::names::TagKey;
use crate::service::{ModelFilter, ModelQuery, Paging, SortKey, TextMatch};

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

#[utoipa::path(
    post,
    path = "/models",
    tag = "models",
    summary = "Register a model",
    responses(
        (status = 201, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn create_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    body: JsonBody<CreateModelBody>,
) -> Result<Response, ApiError> {
    let JsonBody { value, raw } = body;
    let command = Command::CreateModel {
        name: model_name(value.name)?,
        description: value.description,
        tags: tags(value.tags)?,
    };
    run(&state, &caller, &headers, &route.0, &raw, command, |o| {
        model_response(StatusCode::CREATED, o)
    })
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

#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    summary = "List models (prefix, contains, tag filters; keyset pages)",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn list_models(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<ListModelsParams>,
) -> Result<Response, ApiError> {
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
        .service
        .search_models(
            &caller,
            &ModelQuery {
                filters,
                order: vec![(SortKey::Name, false)],
                paging,
                limit,
            },
        )
        .await?;
    let next = match page.next {
        Some(Paging::After(k)) => Some(encode_cursor(&k)),
        Some(Paging::Offset(_)) => page.items.last().map(|m| encode_cursor(&m.name)),
        None => None,
    };
    Ok(Json(json!({ "models": page.items, "next_cursor": next })).into_response())
}

#[utoipa::path(
    get,
    path = "/models/{name}",
    tag = "models",
    summary = "A model (or its state at `as_of`)",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
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
    let model = state.service.get_model(&caller, &name).await?;
    let mut response = Json(&*model).into_response();
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

#[utoipa::path(
    patch,
    path = "/models/{name}",
    tag = "models",
    summary = "Describe or rename a model",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn update_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
    run(&state, &caller, &headers, &route.0, &raw, command, |o| {
        model_response(StatusCode::OK, o)
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/models/{name}",
    tag = "models",
    summary = "Delete a model",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 204, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn delete_model(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteModel {
        name: model_name(name)?,
    };
    run(&state, &caller, &headers, &route.0, b"", command, |_| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TagBody {
    pub(crate) value: String,
}

#[utoipa::path(
    put,
    path = "/models/{name}/tags/{key}",
    tag = "models",
    summary = "Set a model tag",
    params(
        ("name" = String, Path, description = "model name"),
        ("key" = String, Path, description = "tag key"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn set_model_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
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
        &route.0,
        &body.raw,
        command,
        |o| model_response(StatusCode::OK, o),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/models/{name}/tags/{key}",
    tag = "models",
    summary = "Delete a model tag",
    params(
        ("name" = String, Path, description = "model name"),
        ("key" = String, Path, description = "tag key"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn delete_model_tag(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::DeleteModelTag {
        name: model_name(name)?,
        key: TagKey::parse(key)?,
    };
    run(&state, &caller, &headers, &route.0, b"", command, |o| {
        model_response(StatusCode::OK, o)
    })
    .await
}
