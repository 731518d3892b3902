//! The audit reports: promotions (with approver, policies, artifact and whether it was verified
//! at that moment), versions in Production that are not verified, time spent in each stage,
//! denied attempts, separation-of-duties evidence, and the signed period report.
//!
//! Event-based reports are scanners fed one event at a time from position 1, so the same code
//! runs over the database and over an NDJSON export; that is what lets an auditor recompute a
//! signed report offline and compare it row for row.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::history::{Folder, verification_status};
use super::verify::{CheckedChain, for_each_export_event};
use super::{ReportError, scan_events};
use crate::domain::chain::{canonical_json_string, canonical_time};
use crate::domain::events::{EventEnvelope, EventPayload, TransitionReason};
use crate::domain::names::Stage;
use crate::store::{DenialQuery, DenialRecord, EventQuery, Store};

/// A half-open time range `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to)
    }
}

/// One requested stage change into Staging or Production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRow {
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
    pub model: String,
    pub model_id: Uuid,
    pub version: u64,
    pub from_stage: String,
    pub to_stage: String,
    /// Who asked for the promotion (the approver: promotions are single-step, so the caller
    /// whose request the policies allowed is the one who approved it).
    pub approver: String,
    pub approver_issuer: String,
    pub comment: Option<String>,
    pub policy_ids: Vec<String>,
    pub policy_set_digest: Option<String>,
    pub artifact_digest: Option<String>,
    /// The version's verification status just before the promotion: `verified`, `failed` or
    /// `not_verified`.
    pub verification_at_promotion: String,
    pub verified_at_promotion: bool,
    /// Who registered the version (separation of duties: compare with `approver`).
    pub registered_by: String,
    pub registered_by_issuer: String,
    pub same_person: bool,
    pub request_id: Option<String>,
    /// The transition request (approval workflow, #17) whose approval executed this promotion;
    /// `None` for a direct transition, so "promotions without a request" is a filter on it.
    pub transition_request: Option<String>,
}

/// Collects promotions while events stream past.
pub struct PromotionScan {
    period: Period,
    production_only: bool,
    folder: Folder,
    rows: Vec<PromotionRow>,
    /// Positions of the first and last event inside the period (any type).
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
}

impl PromotionScan {
    pub fn new(period: Period, production_only: bool) -> Self {
        PromotionScan {
            period,
            production_only,
            folder: Folder::new(),
            rows: Vec::new(),
            first_position: None,
            last_position: None,
        }
    }

    pub fn push(&mut self, event: &EventEnvelope) -> Result<(), ReportError> {
        let in_period = self.period.contains(event.occurred_at);
        if in_period {
            self.first_position.get_or_insert(event.position);
            self.last_position = Some(event.position);
        }
        if in_period && event.event_type == "StageTransitioned" {
            let payload = super::history::decode(event)?;
            if let EventPayload::StageTransitioned {
                version,
                from,
                to,
                comment,
                reason: TransitionReason::Requested,
                request_id: transition_request,
            } = &payload
                && (*to == Stage::Production || (!self.production_only && *to == Stage::Staging))
                && let Some(state) = self.folder.state(&event.stream_id)
                && let Some(v) = state.versions.get(version)
            {
                let decision = event.decision.as_ref();
                let policy_ids = decision
                    .and_then(|d| d.get("policy_ids"))
                    .and_then(|p| p.as_array())
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let status = verification_status(&v.verification);
                self.rows.push(PromotionRow {
                    position: event.position,
                    occurred_at: event.occurred_at,
                    model: event.model_name.clone(),
                    model_id: event.stream_id,
                    version: *version,
                    from_stage: from.to_string(),
                    to_stage: to.to_string(),
                    approver: event.actor.subject.clone(),
                    approver_issuer: event.actor.issuer.clone(),
                    comment: comment.clone(),
                    policy_ids,
                    policy_set_digest: decision
                        .and_then(|d| d.get("policy_set_digest"))
                        .and_then(|d| d.as_str())
                        .map(String::from),
                    artifact_digest: v.artifact.as_ref().map(|a| a.digest.clone()),
                    verification_at_promotion: status.to_string(),
                    verified_at_promotion: status == "verified",
                    registered_by: v.created_by.subject.clone(),
                    registered_by_issuer: v.created_by.issuer.clone(),
                    same_person: v.created_by.subject == event.actor.subject
                        && v.created_by.issuer == event.actor.issuer,
                    request_id: event.request_id.clone(),
                    transition_request: transition_request.clone(),
                });
            }
        }
        self.folder.apply(event)?;
        Ok(())
    }

    pub fn finish(self) -> Vec<PromotionRow> {
        self.rows
    }
}

/// Promotions into Staging or Production (or only Production) in a period.
pub async fn promotions(
    store: &dyn Store,
    period: Period,
    production_only: bool,
) -> Result<Vec<PromotionRow>, ReportError> {
    let mut scan = PromotionScan::new(period, production_only);
    scan_events(store, &EventQuery::default(), |e| {
        scan.push(e).map(|_| true)
    })
    .await?;
    Ok(scan.finish())
}

/// Separation-of-duties evidence: who registered each promoted version and who promoted it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SodRow {
    pub position: i64,
    pub occurred_at: DateTime<Utc>,
    pub model: String,
    pub version: u64,
    pub to_stage: String,
    pub registered_by: String,
    pub promoted_by: String,
    pub same_person: bool,
    pub policy_ids: Vec<String>,
}

pub fn sod_rows(promotions: &[PromotionRow], violations_only: bool) -> Vec<SodRow> {
    promotions
        .iter()
        .filter(|p| !violations_only || p.same_person)
        .map(|p| SodRow {
            position: p.position,
            occurred_at: p.occurred_at,
            model: p.model.clone(),
            version: p.version,
            to_stage: p.to_stage.clone(),
            registered_by: p.registered_by.clone(),
            promoted_by: p.approver.clone(),
            same_person: p.same_person,
            policy_ids: p.policy_ids.clone(),
        })
        .collect()
}

/// A version in Production now that was never verified or whose latest verification failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnverifiedRow {
    pub model: String,
    pub version: u64,
    pub verification: &'static str,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub failures: usize,
    pub artifact_digest: Option<String>,
}

pub async fn unverified_in_production(
    store: &dyn Store,
) -> Result<Vec<UnverifiedRow>, ReportError> {
    use crate::domain::state::Verification;
    let mut folder = Folder::new();
    scan_events(store, &EventQuery::default(), |e| {
        folder.apply(e).map(|_| true)
    })
    .await?;
    let mut rows = Vec::new();
    for state in folder.states().filter(|s| !s.deleted) {
        for v in state
            .live_versions()
            .filter(|v| v.stage == Stage::Production)
        {
            let (last_checked_at, failures) = match &v.verification {
                Verification::Verified { .. } => continue,
                Verification::NotVerified => (None, 0),
                Verification::Failed { at, failures } => (Some(*at), failures.len()),
            };
            rows.push(UnverifiedRow {
                model: state.name.to_string(),
                version: v.version,
                verification: verification_status(&v.verification),
                last_checked_at,
                failures,
                artifact_digest: v.artifact.as_ref().map(|a| a.digest.clone()),
            });
        }
    }
    rows.sort_by(|a, b| (a.model.as_str(), a.version).cmp(&(b.model.as_str(), b.version)));
    Ok(rows)
}

/// One continuous stay of a version in a stage (`None` is not reported).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStay {
    pub model: String,
    pub model_id: Uuid,
    pub version: u64,
    pub stage: String,
    pub entered_at: DateTime<Utc>,
    pub entered_position: i64,
    /// `None` while the version is still in the stage.
    pub left_at: Option<DateTime<Utc>>,
    /// Until `left_at`, or until the report's end (`to`, else now) for an open stay.
    pub seconds: f64,
}

/// Every stay that overlaps the period, in order of entry.
pub async fn stage_durations(
    store: &dyn Store,
    period: Period,
) -> Result<Vec<StageStay>, ReportError> {
    let mut folder = Folder::new();
    let mut open: HashMap<(Uuid, u64), StageStay> = HashMap::new();
    let mut closed: Vec<StageStay> = Vec::new();
    let end = period.to.unwrap_or_else(Utc::now);
    scan_events(store, &EventQuery::default(), |e| {
        let payload = folder.apply(e)?;
        let mut close = |key: (Uuid, u64), open: &mut HashMap<(Uuid, u64), StageStay>| {
            if let Some(mut stay) = open.remove(&key) {
                stay.left_at = Some(e.occurred_at);
                closed.push(stay);
            }
        };
        match payload {
            EventPayload::StageTransitioned { version, to, .. } => {
                close((e.stream_id, version), &mut open);
                if to != Stage::None {
                    let model = folder
                        .state(&e.stream_id)
                        .map(|s| s.name.to_string())
                        .unwrap_or_else(|| e.model_name.clone());
                    open.insert(
                        (e.stream_id, version),
                        StageStay {
                            model,
                            model_id: e.stream_id,
                            version,
                            stage: to.to_string(),
                            entered_at: e.occurred_at,
                            entered_position: e.position,
                            left_at: None,
                            seconds: 0.0,
                        },
                    );
                }
            }
            EventPayload::VersionDeleted { version } => close((e.stream_id, version), &mut open),
            EventPayload::ModelDeleted {} => {
                let keys: Vec<(Uuid, u64)> = open
                    .keys()
                    .filter(|k| k.0 == e.stream_id)
                    .copied()
                    .collect();
                for key in keys {
                    close(key, &mut open);
                }
            }
            _ => {}
        }
        Ok(true)
    })
    .await?;
    let mut stays: Vec<StageStay> = closed.into_iter().chain(open.into_values()).collect();
    stays.retain(|s| {
        period.to.is_none_or(|to| s.entered_at < to)
            && period
                .from
                .is_none_or(|from| s.left_at.is_none_or(|l| l >= from))
    });
    for s in &mut stays {
        let until = s.left_at.unwrap_or(end);
        s.seconds = (until - s.entered_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    }
    stays.sort_by_key(|s| s.entered_position);
    Ok(stays)
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenialRow {
    pub occurred_at: DateTime<Utc>,
    pub subject: String,
    pub issuer: String,
    pub action: String,
    pub model: String,
    pub version: Option<i64>,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub policy_set_digest: Option<String>,
    pub request_id: Option<String>,
    /// Identical refusals this row stands for (repeats are coalesced, see docs/security.md).
    pub repeats: i64,
    pub last_at: Option<DateTime<Utc>>,
}

impl From<DenialRecord> for DenialRow {
    fn from(d: DenialRecord) -> Self {
        let text = |k: &str| d.decision.get(k).and_then(|v| v.as_str()).map(String::from);
        DenialRow {
            occurred_at: d.occurred_at,
            policy_ids: d
                .decision
                .get("policy_ids")
                .and_then(|p| p.as_array())
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| i.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            reason: text("reason").unwrap_or_default(),
            policy_set_digest: text("policy_set_digest"),
            subject: d.actor.subject,
            issuer: d.actor.issuer,
            action: d.action,
            model: d.model_name,
            version: d.version,
            request_id: d.request_id,
            repeats: d.repeats,
            last_at: d.last_at,
        }
    }
}

/// Every denial recorded in the period, oldest first, read in pages.
pub async fn for_each_denial<F>(
    store: &dyn Store,
    period: Period,
    mut visit: F,
) -> Result<(), ReportError>
where
    F: FnMut(DenialRecord) -> Result<(), ReportError>,
{
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store
            .read_denials(&DenialQuery {
                occurred_from_us: period.from.map(|t| t.timestamp_micros()),
                occurred_before_us: period.to.map(|t| t.timestamp_micros()),
                after: after.clone(),
                limit: super::PAGE,
            })
            .await?;
        let full = page.len() as i64 == super::PAGE;
        if let Some(last) = page.last() {
            after = Some((last.occurred_at.timestamp_micros(), last.id.clone()));
        }
        for d in page {
            visit(d)?;
        }
        if !full {
            return Ok(());
        }
    }
}

pub async fn denials(store: &dyn Store, period: Period) -> Result<Vec<DenialRow>, ReportError> {
    let mut rows = Vec::new();
    for_each_denial(store, period, |d| {
        rows.push(d.into());
        Ok(())
    })
    .await?;
    Ok(rows)
}

pub const REPORT_FORMAT: &str = "model-ledger-report/1";

/// What a signed promotions report states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    pub format: String,
    pub kind: String,
    pub origin: String,
    pub period: Period,
    pub production_only: bool,
    /// First and last position of the events that occurred in the period.
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// The rows were computed from events 1..=through_position, whose chain ends in
    /// `through_hash`.
    pub through_position: i64,
    pub through_hash: String,
    pub generated_at: DateTime<Utc>,
    pub rows: Vec<PromotionRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSignature {
    pub algorithm: String,
    /// Hex key id (see `checkpoint::key_id`).
    pub key_id: String,
    /// Base64 Ed25519 signature over the canonical JSON of `body`.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    pub body: ReportBody,
    pub signature: ReportSignature,
}

fn body_bytes(body: &ReportBody) -> Result<Vec<u8>, ReportError> {
    let value = serde_json::to_value(body)
        .map_err(|e| ReportError::Invalid(format!("cannot encode report: {e}")))?;
    Ok(canonical_json_string(&value).into_bytes())
}

/// Computes the promotions report over the whole log as it is now and signs it.
pub async fn signed_promotions(
    store: &dyn Store,
    period: Period,
    production_only: bool,
    key: &SigningKey,
    origin: &str,
) -> Result<SignedReport, ReportError> {
    let mut scan = PromotionScan::new(period, production_only);
    let mut chain = CheckedChain::new(None);
    scan_events(store, &EventQuery::default(), |e| {
        chain.push(e)?;
        scan.push(e).map(|_| true)
    })
    .await?;
    let body = ReportBody {
        format: REPORT_FORMAT.into(),
        kind: "promotions".into(),
        origin: origin.into(),
        period,
        production_only,
        first_position: scan.first_position,
        last_position: scan.last_position,
        through_position: chain.count() as i64,
        through_hash: chain.head_hash().to_string(),
        generated_at: crate::domain::chain::truncate_to_micros(Utc::now()),
        rows: scan.finish(),
    };
    let signature = key.sign(&body_bytes(&body)?);
    use base64::Engine;
    Ok(SignedReport {
        signature: ReportSignature {
            algorithm: "ed25519".into(),
            key_id: hex::encode(super::checkpoint::key_id(origin, &key.verifying_key())),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        },
        body,
    })
}

/// What an offline check of a signed report established.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportCheck {
    pub rows: usize,
    pub through_position: i64,
    pub through_hash: String,
    pub export_events: u64,
}

/// Checks a signed report against the key and an NDJSON export that starts at position 1:
/// the signature, the chain of the export, the chain hash at `through_position`, and that
/// recomputing the report from the export's first `through_position` events gives the same rows.
pub fn verify_report<R: std::io::BufRead>(
    report: &SignedReport,
    key: &VerifyingKey,
    export: R,
) -> Result<ReportCheck, ReportError> {
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&report.signature.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| {
            ReportError::Signature("the report's signature is not base64 Ed25519".into())
        })?;
    key.verify(&body_bytes(&report.body)?, &sig).map_err(|_| {
        ReportError::Signature(
            "the report's signature does not verify with this key (altered, or another key)".into(),
        )
    })?;
    let body = &report.body;
    let mut chain = CheckedChain::new(None);
    let mut scan = PromotionScan::new(body.period, body.production_only);
    let mut hash_at_through: Option<String> = None;
    for_each_export_event(export, |e| {
        chain.push(e)?;
        if e.position <= body.through_position {
            scan.push(e)?;
            if e.position == body.through_position {
                hash_at_through = Some(e.hash.clone());
            }
        }
        Ok(())
    })?;
    let export_events = chain.count();
    chain.finish()?;
    if body.through_position > 0 && hash_at_through.as_deref() != Some(body.through_hash.as_str()) {
        return Err(ReportError::Checkpoint(match hash_at_through {
            None => format!(
                "the export ends at position {export_events}, before the report's position {}",
                body.through_position
            ),
            Some(h) => format!(
                "position {}: the export's hash {h} differs from the report's {}",
                body.through_position, body.through_hash
            ),
        }));
    }
    let recomputed =
        serde_json::to_value(scan.finish()).map_err(|e| ReportError::Invalid(e.to_string()))?;
    let stated =
        serde_json::to_value(&body.rows).map_err(|e| ReportError::Invalid(e.to_string()))?;
    if recomputed != stated {
        return Err(ReportError::Checkpoint(
            "the report's rows differ from the rows recomputed from the export".into(),
        ));
    }
    Ok(ReportCheck {
        rows: body.rows.len(),
        through_position: body.through_position,
        through_hash: body.through_hash.clone(),
        export_events,
    })
}

/// Renders serializable rows as CSV with the given columns (values taken from each row's JSON
/// by key; nested values are written as JSON).
pub fn rows_to_csv<T: Serialize>(rows: &[T]) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ReportError::Invalid(e.to_string()))?;
    let Some(first) = values.first().and_then(|v| v.as_object()) else {
        return Ok(out);
    };
    let columns: Vec<String> = first.keys().cloned().collect();
    super::search::write_csv_fields(&columns, &mut out);
    for v in &values {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| match v.get(c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_string()) => {
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(";")
                }
                Some(other) => other.to_string(),
            })
            .collect();
        super::search::write_csv_fields(&fields, &mut out);
    }
    Ok(out)
}

/// Canonical time text, re-exported for report renderers.
pub fn time_text(t: &DateTime<Utc>) -> String {
    canonical_time(t)
}
