//! The transition-request report (approval workflow, issue #17): every request opened in a
//! period, with its outcome, how long it has been pending or how long it took to decide, and
//! who decided it.
//!
//! It reads only the request events (`TransitionRequested` … `RequestVoided`), in log order,
//! so it costs the number of requests, not the size of the log. Paired with the `promotions`
//! report's `transition_request` column (empty for a direct transition), it answers "which
//! promotions skipped review", "what is waiting and for how long" and "how fast do we decide".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::kinds::Period;
use super::{ReportError, scan_events};
use crate::domain::events::EventPayload;
use crate::store::{EventQuery, Store};

/// One transition request and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    pub request_id: String,
    pub model: String,
    pub version: u64,
    pub to_stage: String,
    pub requester: String,
    pub opened_at: DateTime<Utc>,
    /// `pending`, `approved`, `rejected`, `cancelled`, `expired` or `voided`.
    pub status: String,
    pub approvals: u32,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    /// For a pending request: seconds since it was opened (at report time).
    pub pending_seconds: Option<i64>,
    /// For a closed request: seconds from opening to the decision.
    pub decision_seconds: Option<i64>,
}

const REQUEST_EVENTS: [&str; 6] = [
    "TransitionRequested",
    "RequestApproved",
    "RequestRejected",
    "RequestCancelled",
    "RequestExpired",
    "RequestVoided",
];

/// Every request opened in `period`, oldest first.
pub async fn requests(store: &dyn Store, period: Period) -> Result<Vec<RequestRow>, ReportError> {
    let mut rows: BTreeMap<String, RequestRow> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let query = EventQuery {
        event_types: REQUEST_EVENTS.iter().map(|t| t.to_string()).collect(),
        ..EventQuery::default()
    };
    scan_events(store, &query, |e| {
        let payload = super::history::decode(e)?;
        let who = e.actor.subject.clone();
        let close = |row: &mut RequestRow, status: &str| {
            row.status = status.to_string();
            row.decided_at = Some(e.occurred_at);
            row.decided_by = Some(who.clone());
            row.decision_seconds = Some((e.occurred_at - row.opened_at).num_seconds().max(0));
        };
        match payload {
            EventPayload::TransitionRequested {
                request_id,
                version,
                to_stage,
                ..
            } if period.contains(e.occurred_at) => {
                order.push(request_id.clone());
                rows.insert(
                    request_id.clone(),
                    RequestRow {
                        request_id,
                        model: e.model_name.clone(),
                        version,
                        to_stage: to_stage.to_string(),
                        requester: who.clone(),
                        opened_at: e.occurred_at,
                        status: "pending".into(),
                        approvals: 0,
                        decided_at: None,
                        decided_by: None,
                        pending_seconds: None,
                        decision_seconds: None,
                    },
                );
            }
            EventPayload::RequestApproved {
                request_id,
                approvals,
                completes,
                ..
            } => {
                if let Some(row) = rows.get_mut(&request_id) {
                    row.approvals = approvals;
                    if completes {
                        close(row, "approved");
                    }
                }
            }
            EventPayload::RequestRejected { request_id, .. }
            | EventPayload::RequestCancelled { request_id, .. }
            | EventPayload::RequestExpired { request_id, .. }
            | EventPayload::RequestVoided { request_id, .. } => {
                let status = match e.event_type.as_str() {
                    "RequestRejected" => "rejected",
                    "RequestCancelled" => "cancelled",
                    "RequestExpired" => "expired",
                    _ => "voided",
                };
                if let Some(row) = rows.get_mut(&request_id) {
                    close(row, status);
                }
            }
            _ => {}
        }
        Ok(true)
    })
    .await?;
    let now = Utc::now();
    Ok(order
        .into_iter()
        .filter_map(|id| rows.remove(&id))
        .map(|mut row| {
            if row.status == "pending" {
                row.pending_seconds = Some((now - row.opened_at).num_seconds().max(0));
            }
            row
        })
        .collect())
}
