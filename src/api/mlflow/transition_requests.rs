//! Databricks' transition-request and comment API under `/api/2.0/mlflow` (approval workflow,
//! issue #17), so the Databricks SDK for Python (`WorkspaceClient(...).model_registry`) drives
//! model-ledger's approvals unchanged.
//!
//! Databricks names a request by model, version and target stage (at most one open request per
//! version and stage, which is model-ledger's rule too), and answers with `Activity` objects
//! (`id`, `activity_type`, `user_id`, `from_stage`, `to_stage`, `comment`, `creation_timestamp`,
//! `last_updated_timestamp`, in milliseconds). Comments are named by id alone, so
//! `comments/update` and `comments/delete` find the model that holds the comment first. Every
//! write here is the same command the native API sends (`src/api/v1/requests.rs`), decided by
//! the same policies; `available_actions` come from the service, which asks the authorizer.

use axum::routing::{delete, get, patch, post};
use axum::{Router, extract::State};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::request::{MlflowError, MlflowRequest};
use super::{Reply, execute, model_name, ok, outcome_version_json, with_fallback};
use crate::api::AppState;
use crate::domain::Command;
use crate::domain::approval::RequestStatus;
use crate::domain::events::EventPayload;
use crate::domain::names::Stage;
use crate::service::Outcome;
use crate::service::approvals::{CommentView, RequestView};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/transition-requests/create",
            with_fallback(post(create_request)),
        )
        .route(
            "/transition-requests/list",
            with_fallback(get(list_requests).post(list_requests)),
        )
        .route(
            "/transition-requests/approve",
            with_fallback(post(approve_request)),
        )
        .route(
            "/transition-requests/reject",
            with_fallback(post(reject_request)),
        )
        .route(
            "/transition-requests/delete",
            with_fallback(delete(delete_request)),
        )
        .route("/comments/create", with_fallback(post(create_comment)))
        .route(
            "/comments/update",
            with_fallback(patch(update_comment).post(update_comment)),
        )
        .route("/comments/delete", with_fallback(delete(delete_comment)))
        .route(
            "/databricks/model-versions/transition-stage",
            with_fallback(post(transition_stage)),
        )
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn stage_param(req: &MlflowRequest) -> Result<Stage, MlflowError> {
    let raw = req.params.required("stage")?;
    Stage::parse(&raw).map_err(|_| {
        MlflowError::invalid(format!(
            "Invalid Model Version stage: {raw}. Value must be one of None, Staging, Production, Archived."
        ))
    })
}

fn request_actions(view: &RequestView) -> Vec<&'static str> {
    view.available_actions
        .iter()
        .map(|a| match *a {
            "approve" => "APPROVE_TRANSITION_REQUEST",
            "reject" => "REJECT_TRANSITION_REQUEST",
            _ => "CANCEL_TRANSITION_REQUEST",
        })
        .collect()
}

/// An open request as Databricks lists it.
fn requested_activity(view: &RequestView) -> Value {
    json!({
        "id": view.id,
        "activity_type": "REQUESTED_TRANSITION",
        "user_id": view.requester.subject,
        "from_stage": view.current_stage.as_str(),
        "to_stage": view.to_stage.as_str(),
        "comment": view.comment.clone().unwrap_or_default(),
        "creation_timestamp": millis(view.opened_at),
        "last_updated_timestamp": millis(view.closed_at.unwrap_or(view.opened_at)),
        "available_actions": request_actions(view),
    })
}

/// The decision on a request (approval, rejection, cancellation) as an `Activity`.
fn decision_activity(view: &RequestView, activity_type: &str, from: Stage) -> Value {
    let at = view.closed_at.unwrap_or_else(Utc::now);
    let (user, comment) = match view.approvals.last() {
        Some(last) if activity_type == "APPROVED_REQUEST" => {
            (last.by.subject.clone(), last.comment.clone())
        }
        _ => (
            view.closed_by
                .as_ref()
                .map(|a| a.subject.clone())
                .unwrap_or_default(),
            view.closing_comment.clone(),
        ),
    };
    json!({
        "id": view.id,
        "activity_type": activity_type,
        "user_id": user,
        "from_stage": from.as_str(),
        "to_stage": view.to_stage.as_str(),
        "comment": comment.unwrap_or_default(),
        "creation_timestamp": millis(at),
        "last_updated_timestamp": millis(at),
        "available_actions": request_actions(view),
    })
}

fn comment_object(view: &CommentView) -> Value {
    let actions: Vec<&str> = view
        .available_actions
        .iter()
        .map(|a| match *a {
            "edit" => "EDIT_COMMENT",
            _ => "DELETE_COMMENT",
        })
        .collect();
    json!({
        "id": view.id,
        "user_id": view.author.subject,
        "comment": view.comment,
        "creation_timestamp": millis(view.created_at),
        "last_updated_timestamp": millis(view.updated_at),
        "available_actions": actions,
    })
}

/// The open request for `(name, version, stage)`, optionally by one creator.
async fn open_request(
    state: &AppState,
    req: &MlflowRequest,
    creator: Option<&str>,
) -> Result<RequestView, MlflowError> {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let stage = stage_param(req)?;
    let open = state
        .service
        .model_requests(
            &req.caller,
            &name,
            Some(version),
            Some(RequestStatus::Pending),
        )
        .await?;
    open.into_iter()
        .find(|r| r.to_stage == stage && creator.is_none_or(|c| r.requester.subject == c))
        .ok_or_else(|| {
            MlflowError::not_found(format!(
                "No open transition request to {stage} for model version (name={name}, version={version})"
            ))
        })
}

async fn view_after(
    state: &AppState,
    req: &MlflowRequest,
    outcome: &Outcome,
    id: &str,
) -> Result<RequestView, MlflowError> {
    Ok(state
        .service
        .model_request(&req.caller, &outcome.state.name, id)
        .await?)
}

async fn create_request(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let command = Command::RequestTransition {
        name,
        version,
        stage: stage_param(&req)?,
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
    };
    let outcome = execute(&state, &req, command).await?;
    let id = outcome
        .events
        .iter()
        .find_map(|e| match e.typed_payload() {
            Ok(EventPayload::TransitionRequested { request_id, .. }) => Some(request_id),
            _ => None,
        })
        .unwrap_or_default();
    let view = view_after(&state, &req, &outcome, &id).await?;
    ok(json!({ "request": {
        "available_actions": request_actions(&view),
        "comment": view.comment.clone().unwrap_or_default(),
        "creation_timestamp": millis(view.opened_at),
        "to_stage": view.to_stage.as_str(),
        "user_id": view.requester.subject,
    }}))
}

async fn list_requests(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let name = model_name(req.params.required("name")?)?;
    let version = req.params.version()?;
    let open = state
        .service
        .model_requests(
            &req.caller,
            &name,
            Some(version),
            Some(RequestStatus::Pending),
        )
        .await?;
    let requests: Vec<Value> = open.iter().map(requested_activity).collect();
    ok(json!({ "requests": requests }))
}

async fn approve_request(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let open = open_request(&state, &req, None).await?;
    let command = Command::ApproveRequest {
        name: model_name(req.params.required("name")?)?,
        id: open.id.clone(),
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
        archive_existing_versions: req.params.flag("archive_existing_versions")?,
    };
    let outcome = execute(&state, &req, command).await?;
    let view = view_after(&state, &req, &outcome, &open.id).await?;
    ok(json!({ "activity": decision_activity(&view, "APPROVED_REQUEST", open.current_stage) }))
}

async fn reject_request(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let open = open_request(&state, &req, None).await?;
    let command = Command::RejectRequest {
        name: model_name(req.params.required("name")?)?,
        id: open.id.clone(),
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
    };
    let outcome = execute(&state, &req, command).await?;
    let view = view_after(&state, &req, &outcome, &open.id).await?;
    ok(json!({ "activity": decision_activity(&view, "REJECTED_REQUEST", open.current_stage) }))
}

async fn delete_request(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let creator = req.params.optional("creator").filter(|c| !c.is_empty());
    let open = open_request(&state, &req, creator.as_deref()).await?;
    let command = Command::CancelRequest {
        name: model_name(req.params.required("name")?)?,
        id: open.id.clone(),
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
    };
    let outcome = execute(&state, &req, command).await?;
    let view = view_after(&state, &req, &outcome, &open.id).await?;
    ok(json!({ "activity": decision_activity(&view, "CANCELLED_REQUEST", open.current_stage) }))
}

async fn comment_of(
    state: &AppState,
    req: &MlflowRequest,
    outcome: &Outcome,
    id: &str,
) -> Result<Value, MlflowError> {
    let comments = state
        .service
        .version_comments(
            &req.caller,
            &outcome.state.name,
            outcome
                .state
                .comments
                .get(id)
                .map(|c| c.version)
                .unwrap_or_default(),
        )
        .await?;
    comments
        .iter()
        .find(|c| c.id == id)
        .map(comment_object)
        .ok_or_else(|| MlflowError::not_found(format!("No comment with id '{id}'")))
}

async fn create_comment(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let command = Command::AddComment {
        name: model_name(req.params.required("name")?)?,
        version: req.params.version()?,
        comment: req.params.required("comment")?,
    };
    let outcome = execute(&state, &req, command).await?;
    let id = outcome
        .events
        .iter()
        .find_map(|e| match e.typed_payload() {
            Ok(EventPayload::CommentAdded { comment_id, .. }) => Some(comment_id),
            _ => None,
        })
        .unwrap_or_default();
    ok(json!({ "comment": comment_of(&state, &req, &outcome, &id).await? }))
}

/// The model holding comment `id`, as the caller may see it.
async fn comment_model(
    state: &AppState,
    req: &MlflowRequest,
    id: &str,
) -> Result<crate::domain::ModelName, MlflowError> {
    let found = state.service.find_comment(&req.caller, id).await?;
    let found =
        found.ok_or_else(|| MlflowError::not_found(format!("No comment with id '{id}'")))?;
    model_name(found.name)
}

async fn update_comment(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let id = req.params.required("id")?;
    let command = Command::EditComment {
        name: comment_model(&state, &req, &id).await?,
        id: id.clone(),
        comment: req.params.required("comment")?,
    };
    let outcome = execute(&state, &req, command).await?;
    ok(json!({ "comment": comment_of(&state, &req, &outcome, &id).await? }))
}

async fn delete_comment(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let id = req.params.required("id")?;
    let command = Command::DeleteComment {
        name: comment_model(&state, &req, &id).await?,
        id,
    };
    execute(&state, &req, command).await?;
    ok(json!({}))
}

/// A direct transition with a comment, answered as Databricks' `model_version_databricks`.
async fn transition_stage(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let version = req.params.version()?;
    let command = Command::TransitionStage {
        name: model_name(req.params.required("name")?)?,
        version,
        stage: stage_param(&req)?,
        comment: req.params.optional("comment").filter(|c| !c.is_empty()),
        archive_existing_versions: req.params.flag("archive_existing_versions")?,
    };
    let outcome = execute(&state, &req, command).await?;
    let mut version_json = outcome_version_json(&outcome, version)?;
    let open: Vec<Value> = state
        .service
        .model_requests(
            &req.caller,
            &outcome.state.name,
            Some(version),
            Some(RequestStatus::Pending),
        )
        .await?
        .iter()
        .map(requested_activity)
        .collect();
    if let Value::Object(map) = &mut version_json {
        map.insert("open_requests".into(), Value::Array(open));
    }
    ok(json!({ "model_version_databricks": version_json }))
}
