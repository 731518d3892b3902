//! The audit API under `/api/v1/audit`: event search and export (streamed JSON, NDJSON or CSV),
//! time travel, the audit reports and the latest signed checkpoint.
//!
//! Everything here is authorized by the `ReadAudit` action, except a model's state as of a
//! point in time, which is the same information as its history and so needs `ReadModel`.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::CallerAuth;
use crate::api::extract::{Path, Q};
use crate::domain::names::ModelName;
use crate::reports::kinds::{self, Period};
use crate::reports::search::{EventFilter, Format, export_stream};
use crate::reports::{AsOf, ReportError, history, parse_time};
use crate::service::{AuditReader, Caller};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(events))
        .route("/audit/models/{name}/state", get(model_state))
        .route("/audit/reports/stages", get(stages))
        .route("/audit/reports/{kind}", get(report))
        .route("/audit/checkpoint", get(checkpoint))
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Store(e) => e.into(),
            ReportError::Invalid(m) => ApiError::invalid(m),
            other => {
                tracing::error!(error = %other, "audit request failed");
                ApiError::internal()
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    format: Option<Format>,
    model: Option<String>,
    version: Option<i64>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    actor: Option<String>,
    group: Option<String>,
    policy_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Cursor: positions after this one (a JSON page's `next_cursor`, or the last position seen).
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/audit/events",
    tag = "audit",
    summary = "Search and export the audit log (JSON, NDJSON, CSV)",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn events(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(p): Q<EventsParams>,
) -> Result<Response, ApiError> {
    let audit = state
        .service
        .audit(&caller, p.model.as_deref().unwrap_or(""))
        .await?;
    let format = p.format.unwrap_or_default();
    let filter = EventFilter {
        model: p.model,
        version: p.version,
        event_types: p
            .event_type
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        actor: p.actor,
        group: p.group,
        policy_id: p.policy_id,
        from: p.from.as_deref().map(parse_time).transpose()?,
        to: p.to.as_deref().map(parse_time).transpose()?,
        after: p.after,
        before: p.before,
        limit: p.limit,
    };
    let exporter = audit.exporter(filter, format)?;
    let body = Body::from_stream(export_stream(exporter));
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsOfParams {
    pub as_of: Option<String>,
}

async fn as_of_position(audit: &AuditReader, raw: Option<&str>) -> Result<i64, ApiError> {
    match raw {
        Some(raw) => Ok(audit.position(Some(&AsOf::parse(raw)?)).await?),
        None => Ok(audit.position(None).await?),
    }
}

/// The model's state as of `as_of`, or 404 if no live model had the name then. Shared with
/// `GET /models/{name}?as_of=`.
pub(crate) async fn model_state_response(
    state: &AppState,
    caller: &Caller,
    name: &ModelName,
    as_of: Option<&str>,
) -> Result<Response, ApiError> {
    let audit = state.service.model_history(caller, name).await?;
    let position = as_of_position(&audit, as_of).await?;
    match audit.model_as_of(name.as_str(), position).await? {
        Some(view) => Ok(axum::Json(view).into_response()),
        None => Err(ApiError::not_found(format!(
            "no live registered model was named '{name}' at position {position}"
        ))),
    }
}

#[utoipa::path(
    get,
    path = "/audit/models/{name}/state",
    tag = "audit",
    summary = "A model's state as of a time or position",
    params(
        ("name" = String, Path, description = "model name"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn model_state(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(name): Path<String>,
    Q(p): Q<AsOfParams>,
) -> Result<Response, ApiError> {
    let name = ModelName::parse(name)?;
    model_state_response(&state, &caller, &name, p.as_of.as_deref()).await
}

#[utoipa::path(
    get,
    path = "/audit/reports/stages",
    tag = "audit",
    summary = "Who held each stage as of a time",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn stages(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(p): Q<AsOfParams>,
) -> Result<Response, ApiError> {
    let audit = state.service.audit(&caller, "").await?;
    let position = as_of_position(&audit, p.as_of.as_deref()).await?;
    let rows = audit.stages_as_of(position).await?;
    Ok(axum::Json(serde_json::json!({
        "as_of_position": position,
        "models": history::group_stages(&rows),
        "rows": rows,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    production_only: bool,
    #[serde(default)]
    violations_only: bool,
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/audit/reports/{kind}",
    tag = "audit",
    summary = "A compliance report",
    params(
        ("kind" = String, Path, description = "report kind (promotions, sod, unverified-production, stage-durations, denials, requests)"),
    ),
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn report(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Path(kind): Path<String>,
    Q(p): Q<ReportParams>,
) -> Result<Response, ApiError> {
    let audit = state.service.audit(&caller, "").await?;
    let period = Period {
        from: p.from.as_deref().map(parse_time).transpose()?,
        to: p.to.as_deref().map(parse_time).transpose()?,
    };
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "format must be 'json' or 'csv', got '{other}'"
            )));
        }
    };
    let rows: serde_json::Value = match kind.as_str() {
        "promotions" => json(audit.promotions(period, p.production_only).await?)?,
        "sod" => {
            let promotions = audit.promotions(period, p.production_only).await?;
            json(kinds::sod_rows(&promotions, p.violations_only))?
        }
        "unverified-production" => json(audit.unverified_in_production().await?)?,
        "stage-durations" => json(audit.stage_durations(period).await?)?,
        "denials" => json(audit.denials(period).await?)?,
        "requests" => json(audit.requests(period).await?)?,
        other => {
            return Err(ApiError::not_found(format!(
                "no report '{other}' (promotions, sod, unverified-production, stage-durations, denials, requests, stages)"
            )));
        }
    };
    if csv {
        let items = rows.as_array().cloned().unwrap_or_default();
        let bytes = kinds::rows_to_csv(&items)?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], bytes).into_response());
    }
    Ok(
        axum::Json(serde_json::json!({ "report": kind, "period": period, "rows": rows }))
            .into_response(),
    )
}

fn json<T: serde::Serialize>(rows: T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(rows).map_err(|_| ApiError::internal())
}

#[utoipa::path(
    get,
    path = "/audit/checkpoint",
    tag = "audit",
    summary = "The latest signed checkpoint (signed-note text)",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn checkpoint(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
) -> Result<Response, ApiError> {
    let audit = state.service.audit(&caller, "").await?;
    match audit.latest_checkpoint().await? {
        Some(c) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            c.note,
        )
            .into_response()),
        None => Err(ApiError::not_found("no checkpoint has been made yet")),
    }
}
