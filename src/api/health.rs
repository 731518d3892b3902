//! `/healthz` (the process answers), `/readyz` (it can serve: database reachable, outbox lag)
//! and `/metrics` (Prometheus text). All three are unauthenticated by design, so orchestrators
//! and scrapers need no token; they reveal only liveness, outbox counts and request metrics.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.service.ping().await;
    let lag = state.service.outbox_lag().await.ok();
    let (pending, oldest) = lag.unwrap_or((0, None));
    let oldest_age_seconds =
        oldest.map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0);
    let body = serde_json::json!({
        "status": if db.is_ok() { "ready" } else { "unavailable" },
        "database": if db.is_ok() { "ok".to_string() } else { "unreachable".to_string() },
        "outbox": { "pending": pending, "oldest_age_seconds": oldest_age_seconds },
        "relay": state.publish.status.snapshot(),
    });
    let status = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            if let Ok((pending, _)) = state.service.outbox_lag().await {
                metrics::gauge!("model_ledger_outbox_pending").set(pending as f64);
            }
            handle.render().into_response()
        }
        None => ApiError::endpoint_not_found("metrics are disabled").into_response(),
    }
}
