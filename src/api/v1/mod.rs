//! The native REST API under `/api/v1`, one file per resource: each holds its request types,
//! its handlers and its `routes()`, merged here. Writes share [`run`] (idempotency keys,
//! `If-Match`, the response built from the command's outcome); reads call the service's
//! queries. Handlers never reach the store.

pub mod aliases;
pub mod artifacts;
pub mod audit;
pub mod event_stream;
pub mod events;
pub mod models;
pub mod openapi;
// Approval workflow (#17).
pub mod requests;
pub mod resolve;
pub mod signatures;
pub mod stages;
pub mod versions;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{idempotency, request_meta};
use crate::domain::Command;
use crate::service::{Caller, Outcome, StoredResponse};
use crate::service::{ModelView, VersionView};

/// Every `/api/v1` route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(models::routes())
        .merge(versions::routes())
        .merge(stages::routes())
        .merge(requests::routes())
        .merge(aliases::routes())
        .merge(resolve::routes())
        .merge(events::routes())
        .merge(event_stream::routes())
        .merge(artifacts::routes())
        .merge(signatures::routes())
        .merge(audit::routes())
        .merge(openapi::routes())
}

/// The model's stream version as an ETag, for `If-Match` on the next write.
pub(crate) fn etag(stream_version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{stream_version}\""))
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

pub(crate) fn model_response(status: StatusCode, outcome: &Outcome) -> Response {
    let view = ModelView::from_state(&outcome.state);
    let mut response = (status, Json(view)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(outcome.state.stream_version));
    response
}

pub(crate) fn version_response(status: StatusCode, outcome: &Outcome, version: u64) -> Response {
    let mut response = match VersionView::from_state(&outcome.state, version) {
        Some(view) => (status, Json(view)).into_response(),
        None => (
            status,
            Json(json!({ "name": outcome.state.name, "version": version, "deleted": true })),
        )
            .into_response(),
    };
    response
        .headers_mut()
        .insert(header::ETAG, etag(outcome.state.stream_version));
    response
}

fn stored(response: StoredResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut r = (status, response.body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Runs a command, honouring `Idempotency-Key`; `render` builds the success response.
pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    route: &str,
    raw_body: &[u8],
    command: Command,
    render: impl Fn(&Outcome) -> Response + Send + Sync + 'static,
) -> Result<Response, ApiError> {
    let meta = request_meta(headers)?;
    match idempotency(headers, caller, route, raw_body)? {
        None => {
            let outcome = state.service.execute(caller, &meta, command).await?;
            Ok(render(&outcome))
        }
        Some(request) => {
            let to_stored = move |outcome: &Outcome| {
                let response = render(outcome);
                let status = response.status().as_u16();
                // Rendering is synchronous JSON serialization; re-serialize the body we built.
                let body = futures::executor::block_on(axum::body::to_bytes(
                    response.into_body(),
                    usize::MAX,
                ))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| "{}".into());
                StoredResponse { status, body }
            };
            let response = state
                .service
                .execute_idempotent(caller, &meta, command, request, &to_stored)
                .await?;
            Ok(stored(response))
        }
    }
}
