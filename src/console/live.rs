//! Live refresh: a Server-Sent Events stream that says "something changed" after each commit,
//! and `console.js` re-reads the open page's `<main>` through htmx when it hears it.
//!
//! The stream carries no registry data (only the log position), so it needs no per-event
//! authorization: the refreshed page is read and authorized like any other. Bursts are
//! coalesced to one notice per [`MIN_INTERVAL`]; the stream ends when the session expires
//! or the server shuts down, and the browser's EventSource reconnects on its own.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::broadcast::error::RecvError;

use super::ConsoleError;
use super::session::SignedIn;
use crate::api::AppState;

/// At most one notice per this interval, however busy the registry is.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/events", get(events))
}

async fn events(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Response, ConsoleError> {
    let mut commits = state.service.watch_registry(&session.caller).await?;
    let stopped = state.publish.stopped();
    let expires_at = session.caller.expires_at.unwrap_or(i64::MAX);
    let stream = async_stream::stream! {
        tokio::pin!(stopped);
        let left = expires_at.saturating_sub(chrono::Utc::now().timestamp());
        let expiry = tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        tokio::pin!(expiry);
        loop {
            let position = tokio::select! {
                r = commits.recv() => match r {
                    Ok(p) => p,
                    // Missed some: still one change to announce.
                    Err(RecvError::Lagged(_)) => 0,
                    Err(RecvError::Closed) => break,
                },
                () = &mut stopped => break,
                () = &mut expiry => break,
            };
            yield Ok::<Event, Infallible>(Event::default().event("changed").data(position.to_string()));
            tokio::time::sleep(MIN_INTERVAL).await;
            while commits.try_recv().is_ok() {}
        }
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
