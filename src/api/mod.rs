//! HTTP: the native `/api/v1` API and the MLflow-compatible API over the same [`Service`].
//!
//! Handlers only translate: they parse requests into domain commands or service queries and
//! map results and errors to responses; they hold a [`Service`], never a store. No SQL and no business rule lives here. Every route is
//! behind request-id, tracing, metrics, panic-catching, body-size and body-timeout layers, and
//! every error, including unknown routes and wrong methods, answers with a JSON body.
//!
//! The edge layer ([`edge`]) runs on every request before routing: it drops forwarding headers
//! (`Forwarded`, `X-Forwarded-*`) unless the peer is a configured trusted proxy, adds the
//! response headers a browser-facing API needs, and marks authenticated answers `no-store`.
//! CORS is off unless origins are allow-listed.

pub mod access_log;
pub mod error;
pub mod extract;
pub mod health;
pub mod mlflow;
pub mod process_metrics;
pub mod tracking;
pub mod v1;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutBody;
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
    /// Longest wait for a client to send the complete request head (`--header-read-timeout`);
    /// `None` waits forever. Applied by [`crate::app::serve`], which owns the connections.
    pub header_read_timeout: Option<Duration>,
    /// Longest silence while a request body is being read (`--body-read-timeout`); `None`
    /// waits forever.
    pub body_read_timeout: Option<Duration>,
    /// Peers whose forwarding headers are believed (`--trusted-proxy`); empty: nobody's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins that may call the API from a browser (`--cors-allow-origin`); empty: CORS off.
    pub cors_allow_origins: Vec<HeaderValue>,
    /// Longest wait at shutdown for open connections (`--shutdown-timeout`). Applied by
    /// [`crate::app::serve`].
    pub shutdown_timeout: Duration,
}

impl ApiConfig {
    fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// What every handler reaches: the service and the HTTP layer's collaborators.
///
/// Axum hands each handler (and each `from_fn_with_state` layer) its own copy of the state, so
/// the copy has to be cheap: one reference count on [`AppParts`], instead of one per field,
/// which under tens of thousands of requests a second was a measurable share of a cached read.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// The fields of [`AppState`], assembled before the router is built.
#[derive(Clone)]
pub struct AppParts {
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
    /// Whether the database is reachable (for `/readyz` and failing fast while it is not).
    pub db_health: Arc<health::DbHealth>,
    /// How the web console signs browsers in (see [`crate::console`]).
    pub console: Arc<crate::console::ConsoleSettings>,
}

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl AppState {
    /// The fields, to change while assembling. Once the router holds copies of the state, a
    /// change here copies the parts for this value alone (the router keeps what it was given),
    /// so assemble first, then build the router.
    pub fn parts_mut(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }

    /// Turns on tracking pass-through and run evidence for this state.
    pub fn with_tracking(mut self, upstream: Arc<Upstream>) -> Self {
        let service = Arc::new(
            self.service
                .with_tracking(upstream.clone(), Some(self.artifacts.stores.clone())),
        );
        // Run-pinned versions (issue #16) read their files back through the upstream.
        let _ = self.artifacts.run_upstream.set(upstream.clone());
        crate::service::run_pins::spawn_pinner(service.clone());
        let parts = self.parts_mut();
        parts.service = service;
        parts.tracking = Some(upstream);
        self
    }
}

/// The whole HTTP application.
pub fn router(mut state: AppState) -> Router {
    let recording = Arc::new(access_log::RecordingAuth(state.auth.clone()));
    state.parts_mut().auth = recording;
    let config = state.config.clone();
    let max_body = config.max_body_bytes;
    let mut app = Router::new()
        .merge(health::routes())
        // The web console: HTML pages at `/`, over the same service (#19).
        .merge(crate::console::routes())
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
        .layer(middleware::from_fn_with_state(
            config.body_read_timeout,
            body_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.db_health.clone(),
            health::fail_fast,
        ))
        // Outside the layers that answer on their own (503 while the database is down, 500 on
        // a panic), so every answer gets its line.
        .layer(middleware::from_fn(access_log::log_request));
    if let Some(cors) = cors_layer(&config) {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn_with_state(config, edge))
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

/// Forwarding headers: who the client is and how it reached us, as a proxy reports it. From
/// anyone else they are forgeries that would rewrite the URLs this server hands out.
const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-for",
    "x-real-ip",
];

/// The edge of every request: forwarding headers are dropped unless the peer is a trusted
/// proxy (so nothing behind this layer needs to ask), and every answer gets `nosniff` and
/// `no-referrer`. An answer to a request that carried credentials is `no-store`: it is
/// per-caller and must not sit in a browser or proxy cache.
async fn edge(State(config): State<Arc<ApiConfig>>, mut request: Request, next: Next) -> Response {
    // Without connection info (an in-process call) the peer is unknown, hence untrusted.
    let trusted = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| config.is_trusted_proxy(peer.ip()));
    if !trusted {
        let headers = request.headers_mut();
        for name in FORWARDING_HEADERS {
            headers.remove(*name);
        }
    }
    let authenticated = request.headers().contains_key(header::AUTHORIZATION);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if authenticated {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The CORS layer for the allow-listed origins, or `None` (no CORS headers at all) when none
/// is configured. Credentials travel as a bearer token, not cookies, so credentialed CORS
/// stays off.
fn cors_layer(config: &ApiConfig) -> Option<CorsLayer> {
    if config.cors_allow_origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(config.cors_allow_origins.clone()))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-correlation-id"),
            ])
            .expose_headers([header::ETAG, HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}

/// Bounds the silence between the chunks of a request body: a client that declares a body
/// and stops sending it gets 408 instead of holding its connection. Streaming uploads that
/// keep moving are never cut, however long they take.
async fn body_timeout(
    State(timeout): State<Option<Duration>>,
    request: Request,
    next: Next,
) -> Response {
    match timeout {
        Some(timeout) => {
            let request = request.map(|body| Body::new(TimeoutBody::new(timeout, body)));
            next.run(request).await
        }
        None => next.run(request).await,
    }
}

/// The `method` label: the standard methods by name, anything else as `OTHER`, so a client
/// inventing methods cannot add series to `/metrics`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Counts requests and records latency per route template, method and status, so cardinality
/// stays bounded by the number of routes, not of model names or of whatever a client sends:
/// an unmatched path is `unmatched`, an invented method `OTHER`.
async fn track_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_string()),
        ("status", status),
    ];
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
