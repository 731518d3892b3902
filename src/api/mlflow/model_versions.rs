//! MLflow's `model-versions/*` endpoints: create, get, update, delete, search, stage
//! transitions, tags and the download URI (which follows run evidence and `models:/` copies to
//! where the files are).

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};

use super::filter::{self, Entity, decode_page_token, order_by};
use super::request::{MlflowError, MlflowRequest};
use super::*;
use crate::api::AppState;
use crate::domain::Command;
use crate::domain::names::{Stage, TagKey};
use crate::domain::uri::parse_model_uri;
use crate::service::Caller;
use crate::service::{VersionQuery, VersionView};

pub fn routes() -> Router<AppState> {
    Router::new()
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
}

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
    ok_typed(&wire::ModelVersionReply {
        model_version: wire::VersionJson::new(&view, true),
    })
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
    let page = state
        .service
        .search_versions(
            &req.caller,
            &VersionQuery {
                filters,
                order,
                paging,
                limit,
            },
        )
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
    delete_tolerating_absent(
        &state,
        &req,
        Command::DeleteVersionTag { name, version, key },
    )
    .await
}

/// Where the run evidence recorded at registration says a version's files are, when it
/// resolved the source to somewhere else (`runs:/…` or an MLflow 3 `models:/m-…`). An
/// `mlflow-artifacts:` location is answered as is: the client resolves it against its tracking
/// URI, which is model-ledger, and the pass-through serves it from the upstream.
async fn resolved_source(
    state: &AppState,
    caller: &Caller,
    view: &VersionView,
) -> Result<Option<String>, MlflowError> {
    let created = state.service.version_created_event(caller, view).await?;
    let evidence = created
        .as_ref()
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
        && let Some(resolved) = resolved_source(&state, &req.caller, &view).await?
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
        match state.service.resolve(&req.caller, &uri).await? {
            Some(origin) if origin.model_id != view.model_id || origin.version != view.version => {
                view = origin;
            }
            _ => break,
        }
    }
    ok(json!({ "artifact_uri": wire::download_uri(&view, &base) }))
}
