//! `GET /api/v1/events/stream`: the event log as Server-Sent Events, for subscribers without
//! NATS.
//!
//! Each SSE event is `id: <position>`, `event: <event type>`, `data: <EventEnvelope JSON>`. A
//! client resumes with `Last-Event-ID` (browsers send it on reconnect) or `?after=<position>`;
//! the header wins when both are present because it is the more recent of the two. The stream
//! first catches up from the store, then waits for commits. It reads strictly by `position >
//! last sent`, and positions are gapless and assigned in commit order (see
//! docs/architecture.md), so nothing is skipped or sent twice.
//!
//! Authorization: `ReadModel` on the model when `?model=` names one, otherwise `ReadAudit` for
//! the whole log, as for `GET /api/v1/events`. The right to read is the token's, so the stream
//! ends when the token expires: a last `event: token-expired` says why, and the client
//! reconnects with a fresh token and `Last-Event-ID`, missing nothing.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::CallerAuth;
use crate::api::extract::Q;
use crate::domain::events::EventPayload;
use crate::domain::names::ModelName;
use crate::service::EventQuery;

/// Events read from the store per catch-up query.
const PAGE: i64 = 500;
/// Fallback re-check when no commit wake-up arrives (e.g. a LISTEN reconnect lost one).
const POLL: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Routes nested under `/api/v1`. No timeout layer: the response is meant to stay open.
pub fn routes() -> Router<AppState> {
    Router::new().route("/events/stream", get(stream_events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    after: Option<i64>,
    model: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

#[utoipa::path(
    get,
    path = "/events/stream",
    tag = "event_stream",
    summary = "The event log as Server-Sent Events",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn stream_events(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    headers: HeaderMap,
    Q(params): Q<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let model = params
        .model
        .filter(|m| !m.is_empty())
        .map(ModelName::parse)
        .transpose()?;
    let reader = match &model {
        Some(name) => state.service.model_history(&caller, name).await?,
        None => state.service.audit(&caller, "").await?,
    };
    let event_types: Vec<String> = params
        .event_type
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = event_types
        .iter()
        .find(|t| !EventPayload::TYPES.contains(&t.as_str()))
    {
        return Err(ApiError::invalid(format!("unknown event type '{bad}'")));
    }
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event position"))?,
        ),
        None => None,
    };
    let after = last_event_id.or(params.after).unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after must not be negative"));
    }
    let query = EventQuery {
        model_name: model.map(|m| m.as_str().to_string()),
        event_types,
        limit: PAGE,
        ..Default::default()
    };
    let stopped = state.publish.stopped();
    let expires_at = caller.expires_at;
    let expiry = token_expiry(expires_at);
    let events = async_stream::stream! {
        let mut after = after;
        tokio::pin!(expiry);
        // Subscribed before the first read, so a commit during catch-up still wakes us.
        let mut commits = reader.subscribe();
        tokio::pin!(stopped);
        loop {
            // Also checked here, not only while waiting: a busy log may never leave us idle.
            if expires_at.is_some_and(|at| chrono::Utc::now().timestamp() >= at) {
                yield Ok(token_expired_event());
                break;
            }
            let page = match reader
                .events(&EventQuery { after_position: Some(after), ..query.clone() })
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed; retrying");
                    Vec::new()
                }
            };
            let full = page.len() as i64 == PAGE;
            for event in page {
                after = event.position;
                match serde_json::to_string(&event) {
                    Ok(data) => {
                        yield Ok(Event::default()
                            .id(event.position.to_string())
                            .event(event.event_type.clone())
                            .data(data));
                    }
                    Err(e) => tracing::error!(error = %e, position = event.position, "cannot encode event"),
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                r = commits.recv() => {
                    if matches!(r, Err(RecvError::Closed)) {
                        tokio::time::sleep(POLL).await;
                    }
                }
                () = tokio::time::sleep(POLL) => {}
                () = &mut stopped => break,
                () = &mut expiry => {
                    yield Ok(token_expired_event());
                    break;
                }
            }
            // Coalesce the burst: one read covers every commit queued so far.
            while commits.try_recv().is_ok() {}
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The stream's last event when the caller's token expires.
fn token_expired_event() -> Event {
    Event::default().event("token-expired").data(
        r#"{"error_code":"TOKEN_EXPIRED","message":"the access token expired; reconnect with a fresh token and Last-Event-ID"}"#,
    )
}

/// Resolves when a token expiring at `expires_at` (Unix seconds) has expired; never for
/// credentials without an expiry.
async fn token_expiry(expires_at: Option<i64>) {
    match expires_at {
        Some(at) => {
            let left = at.saturating_sub(chrono::Utc::now().timestamp());
            tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
        }
        None => std::future::pending().await,
    }
}
