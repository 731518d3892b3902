//! MLflow's `registered-models/*` endpoints: create, get, rename, update, delete, search,
//! latest versions, tags and aliases. Deleting an absent tag or alias succeeds, as in MLflow,
//! but only for a caller allowed to make the change.

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};

use super::filter::{Entity, decode_page_token, model_filters, order_by};
use super::request::{MlflowError, MlflowRequest};
use super::*;
use crate::api::AppState;
use crate::domain::Command;
use crate::domain::names::{AliasName, Stage, TagKey};
use crate::domain::uri::{ModelUri, VersionRef};
use crate::service::ModelQuery;

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
}

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
    let found = state
        .service
        .get_model_with_latest(&req.caller, &name)
        .await?;
    ok_typed(&wire::RegisteredModelReply {
        registered_model: wire::RegisteredModelJson::new(&found.model, &found.latest),
    })
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

async fn search_models(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let filters = model_filters(req.params.optional("filter").as_deref())?;
    let order = order_by(&req.params.list("order_by")?, Entity::Models)?;
    let limit = page_size(&req, MODELS_DEFAULT_PAGE, MODELS_MAX_PAGE)?;
    let paging = decode_page_token(req.params.optional("page_token").as_deref())?;
    let page = state
        .service
        .search_models_with_latest(
            &req.caller,
            &ModelQuery {
                filters,
                order,
                paging,
                limit,
            },
        )
        .await?;
    let models: Vec<Value> = page.items.iter().map(stored_model_json).collect();
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
    let found = state
        .service
        .get_model_with_latest(&req.caller, &name)
        .await?;
    let versions: Vec<wire::VersionJson<'_>> = found
        .latest
        .iter()
        .filter(|v| stages.is_empty() || stages.iter().any(|s| s.as_str() == v.stage))
        .map(|v| wire::VersionJson::new(v, true))
        .collect();
    if versions.is_empty() {
        return empty();
    }
    ok_typed(&wire::ModelVersionsReply {
        model_versions: versions,
    })
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

async fn delete_model_tag(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let key = TagKey::parse(req.params.required("key")?)?;
    delete_tolerating_absent(&state, &req, Command::DeleteModelTag { name, key }).await
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
    delete_tolerating_absent(&state, &req, Command::DeleteAlias { name, alias }).await
}

async fn get_by_alias(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let raw_alias = req.params.required("alias")?;
    state.service.get_model(&req.caller, &name).await?;
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
    let view = state
        .service
        .resolve(&req.caller, &uri)
        .await?
        .ok_or_else(|| {
            MlflowError::invalid(format!("Registered model alias {raw_alias} not found."))
        })?;
    ok_typed(&wire::ModelVersionReply {
        model_version: wire::VersionJson::new(&view, true),
    })
}
