//! Policy what-if: re-decide every recorded decision in a period (the events' decisions and
//! the denials) with a candidate policy set, and list those whose outcome would change.
//!
//! Each request is rebuilt as it was asked: the principal from the event's actor and the
//! decision's recorded request (IdP groups, service-account flag, stages, comment), the model
//! as it was just before the event (folded from the log), and the event's time as `now`.
//! Decisions recorded before `Decision::request` existed carry no groups; they are replayed as
//! a principal without groups (stages and comment then come from the event payload), and each
//! such row is marked `groups_unknown` so a reviewer discounts it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::history::Folder;
use super::kinds::{Period, for_each_denial};
use super::{ReportError, scan_events};
use crate::domain::events::{Actor, EventEnvelope, EventPayload};
use crate::domain::names::Stage;
use crate::domain::state::ModelState;
use crate::policy::{AuthzContext, AuthzRequest, PolicyEngine, PrincipalInfo, RecordedRequest};
use crate::store::{DenialRecord, EventQuery, Store};

/// A decision whose outcome differs under the candidate policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedDecision {
    /// `event` (an allowed write) or `denial` (from the access-decision log).
    pub source: &'static str,
    /// The event's position; `None` for denials.
    pub position: Option<i64>,
    pub occurred_at: DateTime<Utc>,
    pub subject: String,
    pub action: String,
    pub resource: String,
    pub before_allowed: bool,
    pub before_policy_ids: Vec<String>,
    pub after_allowed: bool,
    pub after_policy_ids: Vec<String>,
    pub after_reason: String,
    pub groups_unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySummary {
    pub decisions: u64,
    pub changed: Vec<ChangedDecision>,
    /// Decisions that could not be rebuilt (no action or resource recorded, e.g. the allow-all
    /// test authorizer), skipped.
    pub skipped: u64,
}

/// The model (and version) a recorded Cedar resource uid names: `ModelLedger::ModelVersion::"m/3"`
/// or `ModelLedger::RegisteredModel::"m"`.
fn parse_resource(uid: &str) -> Option<(String, Option<u64>)> {
    let (ty, rest) = uid.split_once("::\"")?;
    let id = rest
        .strip_suffix('"')?
        .replace("\\\"", "\"")
        .replace("\\\\", "\\");
    if ty.ends_with("ModelVersion") {
        let (name, version) = id.rsplit_once('/')?;
        Some((name.to_string(), Some(version.parse().ok()?)))
    } else {
        Some((id, None))
    }
}

struct Recorded {
    allowed: bool,
    action: String,
    resource: String,
    policy_ids: Vec<String>,
    request: Option<RecordedRequest>,
}

fn recorded(decision: &serde_json::Value) -> Option<Recorded> {
    Some(Recorded {
        allowed: decision.get("allowed")?.as_bool()?,
        action: decision.get("action")?.as_str()?.to_string(),
        resource: decision.get("resource")?.as_str()?.to_string(),
        policy_ids: decision
            .get("policy_ids")
            .and_then(|p| p.as_array())
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        request: decision
            .get("request")
            .and_then(|r| serde_json::from_value(r.clone()).ok()),
    })
}

struct Replayer<'a> {
    engine: &'a PolicyEngine,
    summary: ReplaySummary,
}

impl Replayer<'_> {
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        source: &'static str,
        position: Option<i64>,
        at: DateTime<Utc>,
        actor: &Actor,
        decision: &serde_json::Value,
        model: Option<&ModelState>,
        fallback_stages: (Option<Stage>, Option<Stage>, Option<String>),
    ) {
        let Some(rec) = recorded(decision) else {
            self.summary.skipped += 1;
            return;
        };
        let Some((model_name, version)) = parse_resource(&rec.resource) else {
            self.summary.skipped += 1;
            return;
        };
        self.summary.decisions += 1;
        let groups_unknown = rec.request.is_none();
        let request = rec.request.unwrap_or_else(|| RecordedRequest {
            groups: Vec::new(),
            is_service_account: decision
                .get("principal")
                .and_then(|p| p.as_str())
                .is_some_and(|p| p.contains("::ServiceAccount::")),
            from_stage: fallback_stages.0,
            to_stage: fallback_stages.1,
            comment: fallback_stages.2,
            rename: None,
            request: None,
        });
        let principal = PrincipalInfo {
            subject: actor.subject.clone(),
            issuer: actor.issuer.clone(),
            groups: request.groups.clone(),
            is_service_account: request.is_service_account,
            display_name: actor.display_name.clone(),
        };
        // Reads are authorized without the model's state (see `AppState::authorize_read`).
        let model = if rec.action.starts_with("Read") {
            None
        } else {
            model
        };
        let after = self.engine.authorize(&AuthzRequest {
            principal: &principal,
            action: &rec.action,
            model_name: &model_name,
            model,
            version,
            context: AuthzContext {
                from_stage: request.from_stage,
                to_stage: request.to_stage,
                comment: request.comment.clone(),
                now: at,
                rename: request.rename.clone(),
                request: request.request.clone(),
            },
        });
        if after.allowed != rec.allowed {
            self.summary.changed.push(ChangedDecision {
                source,
                position,
                occurred_at: at,
                subject: actor.subject.clone(),
                action: rec.action,
                resource: rec.resource,
                before_allowed: rec.allowed,
                before_policy_ids: rec.policy_ids,
                after_allowed: after.allowed,
                after_policy_ids: after.policy_ids,
                after_reason: after.reason,
                groups_unknown,
            });
        }
    }

    fn denial(&mut self, d: &DenialRecord, folder: &Folder) {
        let model = folder.live_by_name(&d.model_name);
        self.decide(
            "denial",
            None,
            d.occurred_at,
            &d.actor,
            &d.decision,
            model,
            (None, None, None),
        );
    }
}

/// Replays the period's decisions against `engine`. The whole log up to the period's end is
/// folded (states are needed from the start); denials are interleaved by time, each seeing the
/// models as they were when it happened.
pub async fn replay(
    store: &dyn Store,
    engine: &PolicyEngine,
    period: Period,
) -> Result<ReplaySummary, ReportError> {
    let mut denials: Vec<DenialRecord> = Vec::new();
    for_each_denial(store, period, |d| {
        denials.push(d);
        Ok(())
    })
    .await?;
    let mut pending = denials.into_iter().peekable();
    let mut replayer = Replayer {
        engine,
        summary: ReplaySummary {
            decisions: 0,
            changed: Vec::new(),
            skipped: 0,
        },
    };
    let mut folder = Folder::new();
    // A command's events share one decision; it was taken against the state before the first.
    let mut last_batch: Option<(uuid::Uuid, Option<String>, Option<serde_json::Value>)> = None;
    scan_events(
        store,
        &EventQuery {
            occurred_before_us: period.to.map(|t| t.timestamp_micros()),
            ..Default::default()
        },
        |e: &EventEnvelope| {
            while let Some(d) = pending.next_if(|d| d.occurred_at < e.occurred_at) {
                replayer.denial(&d, &folder);
            }
            let batch = (e.stream_id, e.request_id.clone(), e.decision.clone());
            let first_of_batch = last_batch.as_ref() != Some(&batch) || e.request_id.is_none();
            if first_of_batch
                && period.contains(e.occurred_at)
                && let Some(decision) = &e.decision
            {
                let fallback = match super::history::decode(e)? {
                    EventPayload::StageTransitioned {
                        from, to, comment, ..
                    } => (Some(from), Some(to), comment),
                    _ => (None, None, None),
                };
                let model = folder.state(&e.stream_id);
                replayer.decide(
                    "event",
                    Some(e.position),
                    e.occurred_at,
                    &e.actor,
                    decision,
                    model,
                    fallback,
                );
            }
            last_batch = Some(batch);
            folder.apply(e)?;
            Ok(true)
        },
    )
    .await?;
    for d in pending {
        replayer.denial(&d, &folder);
    }
    Ok(replayer.summary)
}

#[cfg(test)]
mod tests {
    use super::parse_resource;

    #[test]
    fn resource_uids_name_the_model_and_version() {
        assert_eq!(
            parse_resource("ModelLedger::ModelVersion::\"team/fraud/3\""),
            Some(("team/fraud".into(), Some(3)))
        );
        assert_eq!(
            parse_resource("ModelLedger::RegisteredModel::\"fraud\""),
            Some(("fraud".into(), None))
        );
        assert_eq!(parse_resource("garbage"), None);
    }
}
