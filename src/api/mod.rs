//! HTTP: the native `/api/v1` API and the MLflow-compatible API over the same [`Service`].
//!
//! Handlers only translate: they parse requests into domain commands or store queries and map
//! results and errors to responses. No SQL and no business rule lives here. Every route is
//! behind request-id, tracing, metrics, panic-catching and body-size layers, and every error,
//! including unknown routes and wrong methods, answers with a JSON body.

pub mod artifacts;
pub mod audit;
pub mod error;
pub mod extract;
pub mod mlflow;
pub mod native;
pub mod tracking;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::service::{AccessDecision, AuthzQuestion, Caller, Service};
use crate::store::SharedStore;
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
    pub store: SharedStore,
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
        let service = Service {
            store: self.service.store.clone(),
            authorizer: self.service.authorizer.clone(),
            tracking: Some(upstream.clone()),
            appender: self.service.appender.clone(),
            states: self.service.states.clone(),
        };
        self.service = Arc::new(service);
        self.tracking = Some(upstream);
        self
    }

    /// Authorizes a read; denials are recorded like write denials.
    pub async fn authorize_read(
        &self,
        caller: &Caller,
        action: &str,
        model_name: &str,
        version: Option<u64>,
    ) -> Result<(), ApiError> {
        let decision: AccessDecision = self.service.authorizer.authorize(&AuthzQuestion {
            caller,
            action,
            model_name,
            model: None,
            version,
            from_stage: None,
            to_stage: None,
            comment: None,
        });
        if decision.allowed {
            return Ok(());
        }
        let denial = crate::store::AccessDenial {
            occurred_at: chrono::Utc::now(),
            actor: caller.actor.clone(),
            action: action.to_string(),
            model_name: model_name.to_string(),
            version: version.map(|v| v as i64),
            decision: decision.record.clone(),
            request_id: None,
        };
        self.store.record_denial(denial).await?;
        Err(crate::service::ServiceError::Denied(decision).into())
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .nest(
            "/api/v1",
            native::routes()
                .merge(crate::publish::stream::routes())
                .merge(artifacts::routes())
                .merge(audit::routes()),
        )
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

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.store.ping().await;
    let lag = state.store.outbox_lag().await.ok();
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
            if let Ok((pending, _)) = state.store.outbox_lag().await {
                metrics::gauge!("model_ledger_outbox_pending").set(pending as f64);
            }
            handle.render().into_response()
        }
        None => ApiError::endpoint_not_found("metrics are disabled").into_response(),
    }
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
