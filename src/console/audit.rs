//! The audit page: the chain's length and, on request, its verification; the latest signed
//! checkpoint; recent denials; downloads of the log (NDJSON, CSV) and of the reports.
//!
//! Everything here needs `ReadAudit` on the registry, asked once through the door
//! (`Service::audit`), which hands back the reader the API's audit endpoints use. Downloads
//! are console routes because a browser sends a cookie, not a bearer token; they stream the
//! same exporter and the same report rows as `/api/v1/audit/...`.

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::history::report_error;
use super::session::SignedIn;
use super::{Chrome, ConsoleError, page, when};
use crate::api::AppState;
use crate::reports::kinds::{self, Period};
use crate::reports::search::{EventFilter, Format, export_stream};

/// Denials listed on the page.
pub const DENIALS_SHOWN: usize = 100;
/// The reports offered for download.
pub const REPORTS: &[&str] = &[
    "promotions",
    "sod",
    "unverified-production",
    "stage-durations",
    "denials",
    "requests",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit/export.ndjson", get(export_ndjson))
        .route("/audit/export.csv", get(export_csv))
        .route("/audit/reports/{file}", get(report_csv))
}

#[derive(Deserialize, Default)]
pub struct AuditParams {
    #[serde(default)]
    verify: Option<String>,
}

pub struct CheckpointView {
    pub position: i64,
    pub hash: String,
    pub created_at: String,
    pub origin: String,
    pub key_id: String,
    pub note: String,
}

pub struct DenialView {
    pub at: String,
    pub who: String,
    pub action: String,
    pub model: String,
    pub reason: String,
    pub policy_ids: Vec<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    head: i64,
    verified: Option<(bool, String)>,
    checkpoint: Option<CheckpointView>,
    reports: &'static [&'static str],
    denials: Vec<DenialView>,
    denials_shown: usize,
}

async fn audit_page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(params): Query<AuditParams>,
) -> Result<Response, ConsoleError> {
    let audit = state.service.audit(&session.caller, "").await?;
    let head = audit.position(None).await.map_err(report_error)?;
    let checkpoint = audit.latest_checkpoint().await?;
    let verified = if params.verify.is_some() {
        let parsed = match &checkpoint {
            // Signed by this server's key; the signature itself is checked offline with the
            // public key (`audit verify --checkpoint`), here the position and hash are.
            Some(c) => crate::reports::checkpoint::Checkpoint::parse(&c.note, None).ok(),
            None => None,
        };
        Some(match audit.verify_chain(parsed).await {
            Ok(v) => (
                true,
                format!(
                    "{} events, head {}{}",
                    v.count,
                    v.head_hash,
                    v.checkpoint_position
                        .map(|p| format!(", matches the checkpoint at {p}"))
                        .unwrap_or_default()
                ),
            ),
            Err(e) => (false, e.to_string()),
        })
    } else {
        None
    };
    let mut denials = audit
        .denials(Period::default())
        .await
        .map_err(report_error)?;
    denials.sort_by_key(|d| std::cmp::Reverse(d.occurred_at));
    denials.truncate(DENIALS_SHOWN);
    page(&AuditPage {
        chrome: session.chrome(),
        head,
        verified,
        checkpoint: checkpoint.map(|c| CheckpointView {
            position: c.position,
            hash: c.hash,
            created_at: when(&c.created_at),
            origin: c.origin,
            key_id: c.key_id,
            note: c.note,
        }),
        reports: REPORTS,
        denials: denials
            .into_iter()
            .map(|d| DenialView {
                at: when(&d.occurred_at),
                who: d.subject,
                action: d.action,
                model: d.model,
                reason: d.reason,
                policy_ids: d.policy_ids,
            })
            .collect(),
        denials_shown: DENIALS_SHOWN,
    })
}

async fn export(
    state: AppState,
    session: super::session::Session,
    format: Format,
    filename: &str,
) -> Result<Response, ConsoleError> {
    let audit = state.service.audit(&session.caller, "").await?;
    let exporter = audit
        .exporter(EventFilter::default(), format)
        .map_err(report_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(export_stream(exporter)),
    )
        .into_response())
}

async fn export_ndjson(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Response, ConsoleError> {
    export(state, session, Format::Ndjson, "model-ledger-events.ndjson").await
}

async fn export_csv(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Response, ConsoleError> {
    export(state, session, Format::Csv, "model-ledger-events.csv").await
}

fn csv<T: serde::Serialize>(rows: &[T]) -> Result<Vec<u8>, ConsoleError> {
    kinds::rows_to_csv(rows).map_err(report_error)
}

async fn report_csv(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(file): Path<String>,
) -> Result<Response, ConsoleError> {
    let kind = file.strip_suffix(".csv").unwrap_or(&file);
    let audit = state.service.audit(&session.caller, "").await?;
    let period = Period::default();
    let e = report_error;
    let bytes = match kind {
        "promotions" => csv(&audit.promotions(period, false).await.map_err(e)?)?,
        "sod" => csv(&kinds::sod_rows(
            &audit.promotions(period, false).await.map_err(e)?,
            false,
        ))?,
        "unverified-production" => csv(&audit.unverified_in_production().await.map_err(e)?)?,
        "stage-durations" => csv(&audit.stage_durations(period).await.map_err(e)?)?,
        "denials" => csv(&audit.denials(period).await.map_err(e)?)?,
        "requests" => csv(&audit.requests(period).await.map_err(e)?)?,
        other => {
            return Err(ConsoleError::BadInput(format!(
                "no report '{other}' ({})",
                REPORTS.join(", ")
            )));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{kind}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
