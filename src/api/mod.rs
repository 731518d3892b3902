//! HTTP: the native `/api/v1` API and the MLflow-compatible API over the same [`Service`].
//!
//! Handlers only translate: they parse requests into domain commands or service queries and
//! map results and errors to responses; they hold a [`Service`], never a store. No SQL and no business rule lives here. Every route is
//! behind request-id, tracing, metrics, panic-catching and body-size layers, and every error,
//! including unknown routes and wrong methods, answers with a JSON body.

pub mod error;
pub mod extract;
pub mod health;
pub mod mlflow;
pub mod tracking;
pub mod v1;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::service::{Caller, Service};
use crate::tracking::Upstream;
use error::ApiError;

/// Authenticates a request's `Authorization` header.
#[async_trait]
pub trait Authenticate: Send + Sync {
    async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError>;
}

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Arc<dyn Authenticate>,
    pub config: Arc<ApiConfig>,
    pub metrics: Option<PrometheusHandle>,
    /// Event publishing: relay status and the stop signal for long-lived event streams.
    pub publish: crate::publish::Runtime,
    /// Artifact stores, uploads and verification (see [`crate::artifacts`]).
    pub artifacts: Arc<crate::artifacts::ArtifactService>,
    /// The MLflow tracking server behind model-ledger, when `--mlflow-upstream` is set.
    pub tracking: Option<Arc<Upstream>>,
}

impl AppState {
    /// Turns on tracking pass-through and run evidence for this state.
    pub fn with_tracking(mut self, upstream: Arc<Upstream>) -> Self {
        self.service = Arc::new(self.service.with_tracking(upstream.clone()));
        self.tracking = Some(upstream);
        self
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(health::routes())
        .nest("/api/v1", v1::routes())
        .nest("/api/2.0/mlflow", mlflow::routes())
        // The MLflow UI calls the same endpoints under this prefix.
        .nest("/ajax-api/2.0/mlflow", mlflow::routes())
        .nest("/api/2.0/mlflow-artifacts", mlflow::artifacts::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(track_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn unknown_route(state: State<AppState>, request: Request) -> Response {
    if tracking::is_forwarded(request.uri().path(), request.uri().query()) {
        return tracking::forward(state, request).await;
    }
    ApiError::endpoint_not_found(format!(
        "no endpoint {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "ENDPOINT_NOT_FOUND",
        format!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts requests and records latency per route template and status, so cardinality stays
/// bounded by the number of routes, not of model names.
async fn track_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("model_ledger_http_requests_total", &labels).increment(1);
    metrics::histogram!("model_ledger_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Latency buckets for the request histogram: sub-millisecond resolution where resolve lives.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Server-side timeout applied to non-streaming routes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
