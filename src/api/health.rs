//! `/healthz` (the process answers), `/readyz` (it can serve: database reachable, outbox lag)
//! and `/metrics` (Prometheus text). All three are unauthenticated by design, so orchestrators
//! and scrapers need no token; they reveal only liveness, outbox counts, request metrics per
//! route template, process figures and the version (docs/operations.md lists it all).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use crate::service::DatabaseProbe;

/// The longest one reachability check may take: `/readyz` answers within it, and a check
/// that takes longer counts as "unreachable".
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// The most `/readyz` spends on the database: the check and the outbox figures together.
const READY_BUDGET: Duration = Duration::from_millis(900);

/// How often the database is checked in the background. Short, so requests start failing
/// fast soon after an outage begins and succeed again soon after it ends.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What the answers say about a retry while the database is unreachable (seconds).
const RETRY_AFTER_SECS: &str = "1";

/// Whether the database is reachable, as the last check found it.
///
/// While a check fails, every request except the health routes is answered 503 at once
/// instead of each waiting for the pool's acquire timeout; a successful check clears it.
/// Refusing happens before a handler runs, so it can only turn away writes, never lose one
/// that was acknowledged.
pub struct DbHealth {
    probe: Option<DatabaseProbe>,
    down: AtomicBool,
}

impl DbHealth {
    /// Checks with `probe`; `None` never reports the database down (an API without a store
    /// to watch, in tools and unit tests).
    pub fn new(probe: Option<DatabaseProbe>) -> Self {
        DbHealth {
            probe,
            down: AtomicBool::new(false),
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// One check under [`CHECK_TIMEOUT`]; records and returns whether the database answered.
    pub async fn check(&self) -> bool {
        let Some(probe) = &self.probe else {
            return true;
        };
        let ok = match tokio::time::timeout(CHECK_TIMEOUT, probe.check()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "database check failed");
                false
            }
            Err(_) => false,
        };
        if !probe.is_remote() {
            return ok;
        }
        let was_down = self.down.swap(!ok, Ordering::Relaxed);
        match (was_down, ok) {
            (false, false) => {
                tracing::error!("database unreachable: answering 503 until it is back")
            }
            (true, true) => tracing::info!("database reachable again"),
            _ => {}
        }
        ok
    }

    /// Checks every [`CHECK_INTERVAL`] for as long as the runtime lives.
    pub fn spawn_watch(self: &Arc<Self>) {
        if !self.probe.as_ref().is_some_and(DatabaseProbe::is_remote) {
            return;
        }
        let health = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // Ends with the last state that holds it (a test's server, say).
                let Some(health) = health.upgrade() else {
                    return;
                };
                health.check().await;
            }
        });
    }
}

/// Answers 503 `TEMPORARILY_UNAVAILABLE` with `Retry-After` while the database is known to
/// be unreachable, except on the health routes, which report it themselves.
pub async fn fail_fast(
    State(health): State<Arc<DbHealth>>,
    request: Request,
    next: Next,
) -> Response {
    if health.is_down() && !matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return unavailable().into_response();
    }
    next.run(request).await
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "TEMPORARILY_UNAVAILABLE",
        "the database is unreachable; retry shortly",
    )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers a check of its own within [`CHECK_TIMEOUT`]; the outbox
/// figures are added if they come within [`READY_BUDGET`], so the answer never takes longer
/// than about that, whatever the database does.
async fn readyz(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db_ok = state.db_health.check().await;
    let db: Result<(), ()> = if db_ok { Ok(()) } else { Err(()) };
    let lag = if db_ok {
        let rest = READY_BUDGET.saturating_sub(started.elapsed());
        tokio::time::timeout(rest, state.service.outbox_lag())
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let (pending, oldest) = lag.unwrap_or((0, None));
    let oldest_age_seconds =
        oldest.map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0);
    let body = serde_json::json!({
        "status": if db.is_ok() { "ready" } else { "unavailable" },
        "database": if db.is_ok() { "ok".to_string() } else { "unreachable".to_string() },
        "outbox": { "pending": pending, "oldest_age_seconds": oldest_age_seconds },
        "relay": state.publish.status.snapshot(),
    });
    let mut response = if db.is_ok() {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    if db.is_err() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            // Set here as well as by the relay, so both exist without NATS too (the outbox
            // fills either way; its lag is what an alert on a stuck relay watches).
            if let Ok((pending, oldest)) = state.service.outbox_lag().await {
                metrics::gauge!("model_ledger_outbox_pending").set(pending as f64);
                let age = oldest.map_or(0.0, |t| {
                    (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics::gauge!("model_ledger_outbox_oldest_age_seconds").set(age);
            }
            super::process_metrics::ProcessSample::read().record();
            handle.render().into_response()
        }
        None => ApiError::endpoint_not_found("metrics are disabled").into_response(),
    }
}
