//! A model's history: its events as a timeline (who, when, what, under which decision and
//! policy set), filterable by type, and the stage timeline: which version held each stage
//! at the start of a chosen day (time travel, `as_of`, as in docs/reporting.md).
//!
//! Both read the event log through the door (`model_events`, `model_history`), so they
//! answer exactly what the API's history and time-travel endpoints answer.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::session::SignedIn;
use super::{Chrome, ConsoleError, page, segment, when};
use crate::api::AppState;
use crate::domain::ModelName;
use crate::reports::{AsOf, ReportError};
use crate::service::EventQuery;

/// Events shown per page, newest first.
pub const EVENTS_SHOWN: i64 = 200;

pub fn routes() -> Router<AppState> {
    Router::new().route("/models/{name}/history", get(history_page))
}

#[derive(Deserialize, Default)]
pub struct HistoryParams {
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    as_of: String,
}

pub struct EventRow {
    pub position: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub detail: String,
    pub version: String,
    pub policy_ids: Vec<String>,
    pub policy_set: String,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    chrome: Chrome,
    name: String,
    name_path: String,
    event_type: String,
    types: &'static [&'static str],
    as_of: String,
    position: i64,
    stages: Vec<(u64, String, String)>,
    events: Vec<EventRow>,
    limit: i64,
}

pub fn report_error(e: ReportError) -> ConsoleError {
    match e {
        ReportError::Invalid(m) => ConsoleError::BadInput(m),
        ReportError::Store(s) => crate::service::ServiceError::Store(s).into(),
        other => {
            tracing::error!(error = %other, "console report failed");
            ConsoleError::BadInput("the report could not be produced; see the server log".into())
        }
    }
}

/// A few words on what an event changed, from its payload.
fn detail(payload: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "from_stage",
        "to_stage",
        "stage",
        "alias",
        "comment",
        "status",
    ] {
        if let Some(v) = payload[key].as_str() {
            parts.push(format!("{key}: {v}"));
        }
    }
    parts.join(" · ")
}

async fn history_page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ConsoleError> {
    let name = ModelName::parse(name)?;
    let caller = &session.caller;
    let event_type = params.event_type.trim().to_string();
    if !event_type.is_empty() && !crate::domain::EventPayload::TYPES.contains(&event_type.as_str())
    {
        return Err(ConsoleError::BadInput(format!(
            "'{event_type}' is not an event type"
        )));
    }
    let events = state
        .service
        .model_events(
            caller,
            &name,
            EventQuery {
                event_types: if event_type.is_empty() {
                    Vec::new()
                } else {
                    vec![event_type.clone()]
                },
                descending: true,
                limit: EVENTS_SHOWN,
                ..Default::default()
            },
        )
        .await?;
    let reader = state.service.model_history(caller, &name).await?;
    let as_of = params.as_of.trim().to_string();
    let position = if as_of.is_empty() {
        reader.position(None).await
    } else {
        let parsed = AsOf::parse(&as_of).map_err(report_error)?;
        reader.position(Some(&parsed)).await
    }
    .map_err(report_error)?;
    let then = reader
        .model_as_of(name.as_str(), position)
        .await
        .map_err(report_error)?;
    let stages = then
        .map(|m| {
            m.versions
                .into_iter()
                .filter(|v| v.stage != "None")
                .map(|v| {
                    let words = super::model::verification_words(&v.verification).1;
                    (v.version, v.stage, words)
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = events
        .iter()
        .map(|e| {
            let decision = e.decision.clone().unwrap_or_default();
            EventRow {
                position: e.position,
                at: when(&e.occurred_at),
                actor: e.actor.subject.clone(),
                kind: e.event_type.clone(),
                detail: detail(&e.payload),
                version: e.payload["version"]
                    .as_u64()
                    .map(|v| format!("v{v}"))
                    .unwrap_or_default(),
                policy_ids: decision["policy_ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                policy_set: decision["policy_set_digest"]
                    .as_str()
                    .map(|d| d.chars().take(12).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    page(&HistoryPage {
        chrome: session.chrome(),
        name: name.to_string(),
        name_path: segment(name.as_str()),
        event_type,
        types: &crate::domain::EventPayload::TYPES,
        as_of,
        position,
        stages,
        events: rows,
        limit: EVENTS_SHOWN,
    })
}
