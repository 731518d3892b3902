//! Transition requests and comments (approval workflow, issue #17).
//!
//! A request asks for a version to move to a stage; someone else approves or rejects it and the
//! requester may cancel it. Every write is a command on the one command path (decided,
//! authorized by policies/approvals.cedar, appended with its decision), and the approval that
//! completes a request executes the transition in the same append. Reads return each request
//! with the caller's `available_actions`, which the service computes by asking the authorizer,
//! so a client shows only buttons that will work. `GET /requests` is the caller's inbox: open
//! requests across every model they may read, oldest first.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::json;

use super::run;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, JsonBody, Path, Q, Route, model_name, version_number};
use crate::domain::approval::RequestStatus;
use crate::domain::events::EventPayload;
use crate::domain::names::Stage;
use crate::domain::{Command, ModelName};
use crate::service::{Caller, Outcome};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", get(inbox))
        .route(
            "/models/{name}/versions/{version}/requests",
            post(create_request).get(list_requests),
        )
        .route(
            "/models/{name}/versions/{version}/requests/{id}",
            get(get_request),
        )
        .route(
            "/models/{name}/versions/{version}/requests/{id}/approve",
            post(approve_request),
        )
        .route(
            "/models/{name}/versions/{version}/requests/{id}/reject",
            post(reject_request),
        )
        .route(
            "/models/{name}/versions/{version}/requests/{id}/cancel",
            post(cancel_request),
        )
        .route(
            "/models/{name}/versions/{version}/comments",
            post(create_comment).get(list_comments),
        )
        .route(
            "/models/{name}/versions/{version}/comments/{id}",
            patch(edit_comment).delete(delete_comment),
        )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    status: Option<String>,
}

fn status(raw: Option<&str>) -> Result<Option<RequestStatus>, ApiError> {
    raw.map(|s| {
        RequestStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "invalid status '{s}': expected one of pending, approved, rejected, cancelled, expired, voided"
            ))
        })
    })
    .transpose()
}

/// Answers with the request the command wrote or decided, as the caller now sees it.
fn request_response(
    state: &AppState,
    caller: &Caller,
    status: StatusCode,
    outcome: &Outcome,
    id: Option<&str>,
) -> Response {
    let id = id.map(str::to_string).or_else(|| {
        outcome.events.iter().find_map(|e| match e.typed_payload() {
            Ok(EventPayload::TransitionRequested { request_id, .. }) => Some(request_id),
            _ => None,
        })
    });
    match id.and_then(|id| outcome.state.requests.get(&id)) {
        Some(r) => (
            status,
            Json(state.service.request_view(caller, &outcome.state, r)),
        )
            .into_response(),
        None => ApiError::internal().into_response(),
    }
}

fn comment_response(
    state: &AppState,
    caller: &Caller,
    status: StatusCode,
    outcome: &Outcome,
    id: Option<&str>,
) -> Response {
    let id = id.map(str::to_string).or_else(|| {
        outcome.events.iter().find_map(|e| match e.typed_payload() {
            Ok(EventPayload::CommentAdded { comment_id, .. }) => Some(comment_id),
            _ => None,
        })
    });
    match id.and_then(|id| outcome.state.comments.get(&id)) {
        Some(c) => (
            status,
            Json(state.service.comment_view(caller, &outcome.state, c)),
        )
            .into_response(),
        None => ApiError::internal().into_response(),
    }
}

/// Checks that the request named in the path belongs to the version named in it, so a URL
/// cannot act on another version's request.
async fn request_in_version(
    state: &AppState,
    caller: &Caller,
    name: &ModelName,
    version: u64,
    id: &str,
) -> Result<(), ApiError> {
    let view = state.service.model_request(caller, name, id).await?;
    if view.version != version {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "REQUEST_NOT_FOUND",
            format!("no transition request '{id}' on version {version} of '{name}'"),
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/requests", tag = "requests",
    summary = "The caller's inbox: requests across models, oldest first (default status=pending)",
    params(("status" = Option<String>, Query, description = "pending, approved, rejected, cancelled, expired or voided")),
    responses((status = 200, description = "`{\"requests\": [...]}`"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn inbox(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(query): Q<StatusQuery>,
) -> Result<Response, ApiError> {
    let requests = state
        .service
        .inbox(&caller, status(query.status.as_deref())?)
        .await?;
    Ok(Json(json!({ "requests": requests })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequestBody {
    stage: String,
    comment: Option<String>,
}

#[utoipa::path(post, path = "/models/{name}/versions/{version}/requests", tag = "requests",
    summary = "Ask for a version to move to a stage",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number")),
    responses((status = 201, description = "the request"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn create_request(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: JsonBody<CreateRequestBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let JsonBody { value, raw } = body;
    let command = Command::RequestTransition {
        name: model_name(name)?,
        version,
        stage: Stage::parse(&value.stage)?,
        comment: value.comment,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| request_response(&app, &who, StatusCode::CREATED, o, None),
    )
    .await
}

#[utoipa::path(get, path = "/models/{name}/versions/{version}/requests", tag = "requests",
    summary = "A version's transition requests, oldest first",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("status" = Option<String>, Query, description = "only requests with this status")),
    responses((status = 200, description = "`{\"requests\": [...]}`"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn list_requests(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version)): Path<(String, String)>,
    Q(query): Q<StatusQuery>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    let requests = state
        .service
        .model_requests(
            &caller,
            &name,
            Some(version),
            status(query.status.as_deref())?,
        )
        .await?;
    Ok(Json(json!({ "requests": requests })).into_response())
}

#[utoipa::path(get, path = "/models/{name}/versions/{version}/requests/{id}", tag = "requests",
    summary = "One transition request",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "request id")),
    responses((status = 200, description = "the request"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn get_request(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    request_in_version(&state, &caller, &name, version, &id).await?;
    let view = state.service.model_request(&caller, &name, &id).await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    comment: Option<String>,
    #[serde(default)]
    archive_existing_versions: bool,
}

#[utoipa::path(post, path = "/models/{name}/versions/{version}/requests/{id}/approve", tag = "requests",
    summary = "Approve a request; the completing approval executes the transition",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "request id")),
    responses((status = 200, description = "the request"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn approve_request(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version, id)): Path<(String, String, String)>,
    body: JsonBody<ApproveBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    request_in_version(&state, &caller, &name, version, &id).await?;
    let JsonBody { value, raw } = body;
    let command = Command::ApproveRequest {
        name,
        id: id.clone(),
        comment: value.comment,
        archive_existing_versions: value.archive_existing_versions,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| request_response(&app, &who, StatusCode::OK, o, Some(&id)),
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommentOnlyBody {
    comment: Option<String>,
}

#[utoipa::path(post, path = "/models/{name}/versions/{version}/requests/{id}/reject", tag = "requests",
    summary = "Reject a request",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "request id")),
    responses((status = 200, description = "the request"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn reject_request(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version, id)): Path<(String, String, String)>,
    body: JsonBody<CommentOnlyBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    request_in_version(&state, &caller, &name, version, &id).await?;
    let JsonBody { value, raw } = body;
    let command = Command::RejectRequest {
        name,
        id: id.clone(),
        comment: value.comment,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| request_response(&app, &who, StatusCode::OK, o, Some(&id)),
    )
    .await
}

#[utoipa::path(post, path = "/models/{name}/versions/{version}/requests/{id}/cancel", tag = "requests",
    summary = "Withdraw one's own request",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "request id")),
    responses((status = 200, description = "the request"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn cancel_request(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version, id)): Path<(String, String, String)>,
    body: JsonBody<CommentOnlyBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    request_in_version(&state, &caller, &name, version, &id).await?;
    let JsonBody { value, raw } = body;
    let command = Command::CancelRequest {
        name,
        id: id.clone(),
        comment: value.comment,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| request_response(&app, &who, StatusCode::OK, o, Some(&id)),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    comment: String,
}

#[utoipa::path(post, path = "/models/{name}/versions/{version}/comments", tag = "requests",
    summary = "Comment on a version",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number")),
    responses((status = 201, description = "the comment"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn create_comment(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: JsonBody<CommentBody>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let JsonBody { value, raw } = body;
    let command = Command::AddComment {
        name: model_name(name)?,
        version,
        comment: value.comment,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| comment_response(&app, &who, StatusCode::CREATED, o, None),
    )
    .await
}

#[utoipa::path(get, path = "/models/{name}/versions/{version}/comments", tag = "requests",
    summary = "A version's comments, oldest first",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number")),
    responses((status = 200, description = "`{\"comments\": [...]}`"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn list_comments(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    let version = version_number(&version)?;
    let comments = state
        .service
        .version_comments(&caller, &name, version)
        .await?;
    Ok(Json(json!({ "comments": comments })).into_response())
}

#[utoipa::path(patch, path = "/models/{name}/versions/{version}/comments/{id}", tag = "requests",
    summary = "Edit one's own comment",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "comment id")),
    responses((status = 200, description = "the comment"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn edit_comment(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version, id)): Path<(String, String, String)>,
    body: JsonBody<CommentBody>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    version_number(&version)?;
    let JsonBody { value, raw } = body;
    let command = Command::EditComment {
        name,
        id: id.clone(),
        comment: value.comment,
    };
    let (app, who) = (state.clone(), caller.clone());
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        &raw,
        command,
        move |o| comment_response(&app, &who, StatusCode::OK, o, Some(&id)),
    )
    .await
}

#[utoipa::path(delete, path = "/models/{name}/versions/{version}/comments/{id}", tag = "requests",
    summary = "Delete one's own comment",
    params(("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "version number"),
        ("id" = String, Path, description = "comment id")),
    responses((status = 200, description = "`{\"deleted\": id}`"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`")))]
async fn delete_comment(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    route: Route,
    headers: HeaderMap,
    Path((name, version, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
    version_number(&version)?;
    let command = Command::DeleteComment {
        name,
        id: id.clone(),
    };
    run(
        &state,
        &caller,
        &headers,
        &route.0,
        b"",
        command,
        move |_| Json(json!({ "deleted": id })).into_response(),
    )
    .await
}
