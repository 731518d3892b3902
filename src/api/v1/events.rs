//! A model's history (`GET /api/v1/models/{name}/history`) and the global event feed
//! (`GET /api/v1/events`), paged by position.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, Path, Q, model_name, page_limit};
use crate::service::EventQuery;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models/{name}/history", get(history))
        .route("/events", get(events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    order: Option<String>,
    /// Position to continue after (oldest-first) or before (newest-first).
    cursor: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/models/{name}/history",
    tag = "events",
    summary = "A model's events",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn history(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(params): Q<HistoryParams>,
) -> Result<Response, ApiError> {
    let name = model_name(name)?;
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
    let query = EventQuery {
        after_position: if descending { None } else { params.cursor },
        before_position: if descending { params.cursor } else { None },
        descending,
        limit,
        ..Default::default()
    };
    let events = state.service.model_events(&caller, &name, query).await?;
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

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    summary = "The global event feed",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn events(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<EventsParams>,
) -> Result<Response, ApiError> {
    let audit = state
        .service
        .audit(&caller, params.model.as_deref().unwrap_or(""))
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
    let events = audit.events(&query).await?;
    let next = events.last().map(|e| e.position).or(params.after);
    Ok(Json(json!({ "events": events, "next_after": next })).into_response())
}
