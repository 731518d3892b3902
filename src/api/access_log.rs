//! One `info` line per request on the `model_ledger::access` target: method, matched route,
//! status, latency, the authenticated principal's subject and the request id.
//!
//! The route is the template (`/api/v1/models/{name}`), never the raw path, for the same
//! reason the metrics use it: a line per request is fine, but model names and query strings
//! are the caller's data and stay out of the log. The principal is learned where the token is
//! checked, which is inside the handlers; [`RecordingAuth`] writes it into a slot this
//! request's middleware owns (a task-local, because handlers run in the middleware's task).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use super::Authenticate;
use super::error::ApiError;
use crate::service::Caller;

tokio::task_local! {
    static PRINCIPAL: Arc<OnceLock<String>>;
}

/// Wraps an authenticator so the subject it accepts reaches this request's access line.
pub struct RecordingAuth(pub Arc<dyn Authenticate>);

#[async_trait]
impl Authenticate for RecordingAuth {
    async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let caller = self.0.authenticate(authorization).await?;
        // Outside a request (a background task) there is no line to add it to.
        let _ = PRINCIPAL.try_with(|slot| slot.set(caller.actor.subject.clone()));
        Ok(caller)
    }
}

/// Logs the request once the answer's head is ready (a streamed body may run on after).
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = super::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let slot = Arc::new(OnceLock::new());
    let response = PRINCIPAL.scope(slot.clone(), next.run(request)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let principal = slot.get().map(String::as_str).unwrap_or("-");
    tracing::info!(
        target: "model_ledger::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        latency_ms = format_args!("{latency_ms:.1}"),
        principal = %principal,
        request_id = %request_id,
        "{method} {route} {}",
        response.status().as_u16()
    );
    response
}
