//! Time travel: the state of one model, or of every stage, as of a global position, computed by
//! folding the log with [`crate::domain::state::fold`], the one interpreter of history.
//!
//! A name can belong to different streams over time (a model deleted and a new one created
//! with its name, or a rename), so a name is resolved to the stream that carried it, live, at
//! the requested position; never to whichever stream carries it now.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use uuid::Uuid;

use super::{ReportError, scan_events};
use crate::domain::events::{EventEnvelope, EventPayload};
use crate::domain::state::{ModelState, Verification, fold};
use crate::store::{EventQuery, ModelView, Store, VersionView};

/// Every stream's state, advanced one event at a time.
#[derive(Debug, Default)]
pub struct Folder {
    states: HashMap<Uuid, ModelState>,
}

impl Folder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes and applies one event; returns the typed payload for callers that inspect it.
    pub fn apply(&mut self, event: &EventEnvelope) -> Result<EventPayload, ReportError> {
        let payload = decode(event)?;
        let before = self.states.remove(&event.stream_id);
        if let Some(after) = fold(
            before,
            event.stream_id,
            &payload,
            event.occurred_at,
            &event.actor,
        ) {
            self.states.insert(event.stream_id, after);
        }
        Ok(payload)
    }

    pub fn state(&self, stream: &Uuid) -> Option<&ModelState> {
        self.states.get(stream)
    }

    /// The live (not deleted) model that has this name now, in folded time.
    pub fn live_by_name(&self, name: &str) -> Option<&ModelState> {
        self.states
            .values()
            .find(|s| !s.deleted && s.name.as_str() == name)
    }

    pub fn states(&self) -> impl Iterator<Item = &ModelState> {
        self.states.values()
    }
}

/// An event's typed payload, or an error naming its position.
pub fn decode(event: &EventEnvelope) -> Result<EventPayload, ReportError> {
    event.typed_payload().map_err(|e| {
        ReportError::Store(crate::store::StoreError::Corrupt(format!(
            "position {}: payload does not decode: {e}",
            event.position
        )))
    })
}

/// A model as it was at `position`: the same shapes the live API returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAsOf {
    pub as_of_position: i64,
    pub model: ModelView,
    /// Live versions, lowest number first.
    pub versions: Vec<VersionView>,
}

/// The state of the live model called `name` at `position`, or `None` if no live model had that
/// name then. Reads only the candidate streams (those that ever filed an event under the name
/// up to `position`), so the cost is the size of those streams, not of the log.
pub async fn model_as_of(
    store: &dyn Store,
    name: &str,
    position: i64,
) -> Result<Option<ModelAsOf>, ReportError> {
    let mut candidates: Vec<Uuid> = Vec::new();
    scan_events(
        store,
        &EventQuery {
            model_name: Some(name.to_string()),
            before_position: Some(position.saturating_add(1)),
            ..Default::default()
        },
        |e| {
            if !candidates.contains(&e.stream_id) {
                candidates.push(e.stream_id);
            }
            Ok(true)
        },
    )
    .await?;
    // Newest stream first: if several streams carried the name, the live one is usually last.
    for stream in candidates.into_iter().rev() {
        let mut folder = Folder::new();
        scan_events(
            store,
            &EventQuery {
                stream_id: Some(stream),
                before_position: Some(position.saturating_add(1)),
                ..Default::default()
            },
            |e| folder.apply(e).map(|_| true),
        )
        .await?;
        if let Some(state) = folder.state(&stream)
            && !state.deleted
            && state.name.as_str() == name
        {
            return Ok(Some(view_of(state, position)));
        }
    }
    Ok(None)
}

/// The API views of a folded state.
pub fn view_of(state: &ModelState, position: i64) -> ModelAsOf {
    ModelAsOf {
        as_of_position: position,
        model: ModelView::from_state(state),
        versions: state
            .live_versions()
            .filter_map(|v| VersionView::from_state(state, v.version))
            .collect(),
    }
}

/// One version in a stage at the report's position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    pub model: String,
    pub model_id: Uuid,
    pub stage: String,
    pub version: u64,
    /// `not_verified`, `verified` or `failed`.
    pub verification: &'static str,
    pub artifact_digest: Option<String>,
    pub registered_by: String,
}

pub fn verification_status(v: &Verification) -> &'static str {
    match v {
        Verification::NotVerified => "not_verified",
        Verification::Verified { .. } => "verified",
        Verification::Failed { .. } => "failed",
    }
}

/// What was in each stage (other than `None`) for every live model at `position`, sorted by
/// model name, stage and version.
pub async fn stages_as_of(store: &dyn Store, position: i64) -> Result<Vec<StageRow>, ReportError> {
    let mut folder = Folder::new();
    scan_events(
        store,
        &EventQuery {
            before_position: Some(position.saturating_add(1)),
            ..Default::default()
        },
        |e| folder.apply(e).map(|_| true),
    )
    .await?;
    let mut rows: Vec<StageRow> = Vec::new();
    for state in folder.states().filter(|s| !s.deleted) {
        for v in state.live_versions() {
            if v.stage == crate::domain::Stage::None {
                continue;
            }
            rows.push(StageRow {
                model: state.name.to_string(),
                model_id: state.model_id,
                stage: v.stage.to_string(),
                version: v.version,
                verification: verification_status(&v.verification),
                artifact_digest: v.artifact.as_ref().map(|a| a.digest.clone()),
                registered_by: v.created_by.subject.clone(),
            });
        }
    }
    rows.sort_by(|a, b| {
        (a.model.as_str(), a.stage.as_str(), a.version).cmp(&(
            b.model.as_str(),
            b.stage.as_str(),
            b.version,
        ))
    });
    Ok(rows)
}

/// Rows grouped as `{model: {stage: [versions]}}`, for people reading JSON.
pub fn group_stages(rows: &[StageRow]) -> BTreeMap<String, BTreeMap<String, Vec<u64>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for r in rows {
        out.entry(r.model.clone())
            .or_default()
            .entry(r.stage.clone())
            .or_default()
            .push(r.version);
    }
    out
}
